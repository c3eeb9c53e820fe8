//! A 1 GiB MSRP message over loopback, plain and over TLS, with every byte
//! checked at the receiver and the process's peak heap measured: sender and
//! receiver stream the message and hold a few MiB, never the message. Then
//! a reader that stops reading: the sender stops too, memory stays flat.
//!
//! One test at a time in this binary (the heap counter is process-wide).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use common::pattern::{block, matches_pattern, Pattern};
use common::pki::msrp_tls;
use sipsimple::api::msrp::*;

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn local(secure: bool) -> MsrpUri {
    MsrpUri::parse(if secure {
        "msrps://127.0.0.1:0;tcp"
    } else {
        "msrp://127.0.0.1:0;tcp"
    })
    .unwrap()
}

async fn pair(tls: MsrpTls, secure: bool, chunk_size: usize) -> (MSRPSession, MSRPSession) {
    let mut acceptor = get_acceptor(tls.clone(), None);
    let answer_path = acceptor.prepare(local(secure)).await.unwrap();
    let mut connector = get_connector(tls, None);
    let offer_path = connector.prepare(local(secure)).await.unwrap();
    let (a, b) = tokio::join!(
        connector.complete(answer_path),
        acceptor.complete(offer_path)
    );
    let cfg = SessionConfig {
        chunk_size,
        ..SessionConfig::default()
    };
    (
        a.unwrap().into_session(cfg.clone()),
        b.unwrap().into_session(cfg),
    )
}

const GIB: u64 = 1 << 30;

fn one_gib(secure: bool, tls: MsrpTls) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = common::runtime();
    rt.block_on(async {
        let (a, b) = pair(tls, secure, 1 << 20).await;
        let before = NOW.load(Relaxed);
        PEAK.store(before, Relaxed);
        let blk = block();
        let mid = a
            .send_message(
                MessageSource::Reader(Box::new(Pattern::new(blk.clone(), GIB))),
                SendOptions {
                    content_type: "application/octet-stream".into(),
                    size: Some(GIB),
                    success_report: ReportMode::Yes,
                    failure_report: ReportMode::Partial,
                    ..SendOptions::default()
                },
            )
            .unwrap();
        let mut got = 0u64;
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(120), b.next_event())
                .await
                .unwrap()
                .unwrap();
            match ev {
                SessionEvent::Data {
                    message_id,
                    offset,
                    data,
                } => {
                    assert_eq!(message_id, mid);
                    assert_eq!(offset, got);
                    assert!(
                        matches_pattern(&blk, offset, &data),
                        "bad bytes at {offset}"
                    );
                    got += data.len() as u64;
                }
                SessionEvent::Core(MsrpEvent::MessageComplete { size, .. }) => {
                    assert_eq!(size, GIB);
                    break;
                }
                SessionEvent::Core(MsrpEvent::IncomingMessage { total, .. }) => {
                    assert_eq!(total, Some(GIB))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, GIB);
        // The success report comes back to the sender.
        loop {
            match tokio::time::timeout(Duration::from_secs(20), a.next_event())
                .await
                .unwrap()
                .unwrap()
            {
                SessionEvent::Core(MsrpEvent::Report { code, range, .. }) => {
                    assert_eq!(code, 200);
                    assert_eq!(range.and_then(|r| r.end), Some(GIB));
                    break;
                }
                SessionEvent::Core(MsrpEvent::MessageSent { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let peak = PEAK.load(Relaxed).saturating_sub(before);
        eprintln!(
            "1 GiB {}: peak heap above the start {:.1} MiB",
            if secure { "TLS" } else { "TCP" },
            peak as f64 / 1048576.0
        );
        assert!(
            peak < 64 << 20,
            "peak heap {peak} bytes for a 1 GiB message"
        );
    });
}

#[test]
fn one_gib_over_tcp_in_bounded_memory() {
    one_gib(false, MsrpTls::default());
}

#[test]
fn one_gib_over_tls_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let tls = msrp_tls(dir.path());
    one_gib(true, tls);
}

#[test]
fn a_reader_that_stops_stops_the_sender() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = common::runtime();
    rt.block_on(async {
        let (a, b) = pair(MsrpTls::default(), false, 64 * 1024).await;
        let before = NOW.load(Relaxed);
        PEAK.store(before, Relaxed);
        a.send_message(
            MessageSource::Reader(Box::new(Pattern::new(block(), GIB))),
            SendOptions {
                content_type: "application/octet-stream".into(),
                size: Some(GIB),
                failure_report: ReportMode::No,
                ..SendOptions::default()
            },
        )
        .unwrap();
        // Nobody reads Bob's events: after the queues and socket buffers
        // fill, Alice's sending stops.
        let mut last = 0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let sent = a.stats().bytes_sent.load(Relaxed);
            if sent == last && sent > 0 {
                break;
            }
            last = sent;
        }
        let sent = a.stats().bytes_sent.load(Relaxed);
        assert!(
            sent < 64 << 20,
            "sent {sent} bytes to a reader that does not read"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            a.stats().bytes_sent.load(Relaxed),
            sent,
            "the sender kept going"
        );
        let peak = PEAK.load(Relaxed).saturating_sub(before);
        assert!(peak < 64 << 20, "peak heap {peak}");
        // Reading again lets it go on.
        for _ in 0..200 {
            let _ = tokio::time::timeout(Duration::from_secs(5), b.next_event())
                .await
                .unwrap();
        }
        assert!(a.stats().bytes_sent.load(Relaxed) > sent);
        b.shutdown();
        a.shutdown();
    });
}
