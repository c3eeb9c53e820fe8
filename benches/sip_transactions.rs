//! Non-INVITE transactions per second through the engine over UDP loopback:
//! a client engine sends OPTIONS, a server engine on its own runtime thread
//! answers each one 200 statefully (server transaction, Timer J kept), with
//! 64 transactions in flight. Baseline in the same run: the same datagrams
//! bounced by a bare UDP echo thread, no parsing, same window.
//!
//!   cargo bench --bench sip_transactions
//!
//! Transactions per second = 256 / time per iteration.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipsimple::driver::engine::{ClientEvent, Engine, EngineConfig};
use sipsimple::driver::ids::{new_call_id, new_tag};
use sipsimple::proto::sip::transaction::{Peer, TransportKind};
use sipsimple::proto::sip::{SipMessage, Uri};
use tokio::sync::mpsc;

const BATCH: u64 = 256;
const WINDOW: usize = 64;

fn lo() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn cfg() -> EngineConfig {
    EngineConfig {
        udp: Some(lo()),
        tcp: None,
        // Criterion runs long enough for hundreds of thousands of server
        // transactions to sit in Timer J (32 s) at once.
        max_transactions: 2_000_000,
        ..EngineConfig::default()
    }
}

/// A server engine answering on its own runtime thread, like a separate
/// process would.
fn start_server() -> SocketAddr {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let engine = Engine::start(cfg(), tx).await.unwrap();
            addr_tx
                .send(engine.local_addr(TransportKind::Udp).unwrap())
                .unwrap();
            let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
            common::serve_uas(engine, rx, stop_rx).await;
        });
    });
    addr_rx.recv().unwrap()
}

fn options(local: SocketAddr, remote: SocketAddr) -> SipMessage {
    let target = Uri::parse(&format!("sip:bench@{remote}")).unwrap();
    let mut m = SipMessage::request("OPTIONS", &target).unwrap();
    m.push_header("Via", &common::via(TransportKind::Udp, local))
        .unwrap();
    m.push_header("Max-Forwards", "70").unwrap();
    m.push_header("From", &format!("<sip:bench@{local}>;tag={}", new_tag()))
        .unwrap();
    m.push_header("To", &format!("<{target}>")).unwrap();
    m.push_header("Call-ID", &new_call_id()).unwrap();
    m.push_header("CSeq", "1 OPTIONS").unwrap();
    m
}

fn bench(c: &mut Criterion) {
    let server = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = rt.block_on(Engine::start(cfg(), tx)).unwrap();
    let local = client.local_addr(TransportKind::Udp).unwrap();
    let peer = Peer {
        transport: TransportKind::Udp,
        addr: server,
    };
    let sample = options(local, server).to_bytes();

    let mut g = c.benchmark_group("sip_transactions");
    g.throughput(Throughput::Elements(BATCH));
    g.measurement_time(Duration::from_secs(8));

    g.bench_function("engine OPTIONS/200 over UDP (stateful both ends)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let mut pending = Vec::with_capacity(WINDOW);
                    let mut sent = 0;
                    let mut done = 0;
                    while done < BATCH {
                        while sent < BATCH && pending.len() < WINDOW {
                            pending.push(client.send_request(options(local, server), peer));
                            sent += 1;
                        }
                        let mut rx = pending.remove(0);
                        match rx.recv().await {
                            Some(ClientEvent::Response(r)) if r.status().unwrap().0 == 200 => {}
                            other => panic!("transaction failed: {other:?}"),
                        }
                        done += 1;
                    }
                }
                t0.elapsed()
            })
        })
    });

    // Baseline: a bare UDP echo with the same datagram and window.
    let echo = UdpSocket::bind(lo()).unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let sock = UdpSocket::bind(lo()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    g.bench_function("baseline: bare UDP echo", |b| {
        let mut buf = vec![0u8; 65536];
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let mut in_flight = 0;
                let mut sent = 0;
                let mut done = 0;
                while done < BATCH {
                    while sent < BATCH && in_flight < WINDOW {
                        sock.send_to(&sample, echo_addr).unwrap();
                        sent += 1;
                        in_flight += 1;
                    }
                    sock.recv_from(&mut buf).expect("echo answers");
                    in_flight -= 1;
                    done += 1;
                }
            }
            t0.elapsed()
        })
    });
    g.finish();
    let st = client.stats();
    eprintln!(
        "client: {} transactions, {} retransmissions sent, {} timeouts",
        st.transactions.messages_out,
        st.transactions.retransmissions_sent,
        st.transactions.timeouts
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
