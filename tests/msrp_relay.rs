//! MSRP through Kamailio's msrp module as an RFC 4976 relay on 127.0.0.1
//! (tests/kamailio/msrp_relay.cfg): AUTH with digest and Use-Path, the
//! answering side behind the relay with the caller connecting to the relay,
//! the calling side behind the relay with the answerer connecting directly,
//! a message each way with success reports, wrong credentials refused, a
//! session renewing its 2 s grant while a path without one expires, and a
//! 1 GiB message streamed through the relay in 8 KiB chunks, every byte
//! checked, a slow reader behind the relay holding the sender back with
//! partial success REPORTs, and msrps to the relay with its certificate
//! verified.

mod common;

use std::time::Duration;

use common::kamailio::{kamailio_available, start, start_with};
use common::sipp::free_port;
use sipsimple::api::msrp::*;

fn rt() -> tokio::runtime::Runtime {
    common::runtime()
}

fn local() -> MsrpUri {
    MsrpUri::parse("msrp://127.0.0.1:0;tcp").unwrap()
}

fn relay(port: u16, user: &str, password: &str) -> RelaySettings {
    RelaySettings {
        uri: MsrpUri::parse(&format!("msrp://127.0.0.1:{port};tcp")).unwrap(),
        username: user.into(),
        password: password.into(),
        expires: None,
    }
}

/// Until `message_id` is complete at `s`; returns its bytes.
async fn receive(s: &MSRPSession, message_id: &str) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .expect("an event in time")
            .expect("session open");
        match ev {
            SessionEvent::Data {
                message_id: m,
                data: d,
                ..
            } if m == message_id => data.extend_from_slice(&d),
            SessionEvent::Core(MsrpEvent::MessageComplete { message_id: m, .. })
                if m == message_id =>
            {
                return data
            }
            SessionEvent::Closed { error } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
}

/// Until the success report for `message_id` comes back to `s`.
async fn delivered(s: &MSRPSession, message_id: &str) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .expect("a report in time")
            .expect("session open");
        match ev {
            SessionEvent::Core(MsrpEvent::Report {
                message_id: m,
                code,
                ..
            }) if m == message_id => {
                assert_eq!(code, 200);
                return;
            }
            SessionEvent::Core(MsrpEvent::ChunkResponse { code, comment, .. }) => {
                assert_eq!(code, 200, "a chunk refused on the way: {comment:?}")
            }
            SessionEvent::Closed { error } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
}

async fn both_ways(a: &MSRPSession, b: &MSRPSession) {
    let opts = SendOptions {
        success_report: ReportMode::Yes,
        ..SendOptions::default()
    };
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    // The sender takes its events while the receiver takes its own: a
    // session whose events nobody takes pauses (that is its backpressure).
    let m1 = a
        .send_message(MessageSource::Bytes(big.clone()), opts.clone())
        .unwrap();
    let (got, ()) = tokio::join!(receive(b, &m1), delivered(a, &m1));
    assert_eq!(got, big);
    let m2 = b
        .send_message(MessageSource::Bytes(b"and back".to_vec()), opts)
        .unwrap();
    let (got, ()) = tokio::join!(receive(a, &m2), delivered(b, &m2));
    assert_eq!(got, b"and back");
}

/// Alice answers behind the relay in `settings`; Bob calls directly and
/// connects to the first hop of her path (the relay). Returns Alice's
/// transport, Bob's, and Alice's full path.
async fn answerer_behind_relay(
    tls: MsrpTls,
    settings: RelaySettings,
) -> (MSRPTransport, MSRPTransport, Vec<MsrpUri>) {
    let mut alice = get_acceptor(tls.clone(), Some(settings));
    let alice_path = alice.prepare(local()).await.unwrap();
    let mut bob = get_connector(tls, None);
    let bob_path = bob.prepare(local()).await.unwrap();
    let (a, b) = tokio::join!(alice.complete(bob_path), bob.complete(alice_path.clone()));
    (a.unwrap(), b.unwrap(), alice_path)
}

/// Both ends of [`answerer_behind_relay`] as sessions.
async fn sessions_behind_relay(
    tls: MsrpTls,
    settings: RelaySettings,
) -> (MSRPSession, MSRPSession, Vec<MsrpUri>) {
    let (a, b, path) = answerer_behind_relay(tls, settings).await;
    (
        a.into_session(SessionConfig::default()),
        b.into_session(SessionConfig::default()),
        path,
    )
}

#[test]
fn answering_side_behind_the_relay() {
    if !kamailio_available() {
        return;
    }
    let k = start("msrp_relay.cfg", free_port());
    rt().block_on(async {
        // Alice answers through the relay; Bob calls and connects to it.
        let (a, b, alice_path) =
            sessions_behind_relay(MsrpTls::default(), relay(k.port, "alice", "alicepass")).await;
        assert_eq!(alice_path.len(), 2, "{alice_path:?}");
        assert_eq!(alice_path[0].port, Some(k.port));
        assert!(alice_path[0].session_id.is_some());
        assert_eq!(b.remote_path(), &alice_path[..]);
        both_ways(&b, &a).await;
    });
}

#[test]
fn calling_side_behind_the_relay() {
    if !kamailio_available() {
        return;
    }
    let k = start("msrp_relay.cfg", free_port());
    rt().block_on(async {
        let mut bob = get_connector(MsrpTls::default(), Some(relay(k.port, "bob", "bobpass")));
        let bob_path = bob.prepare(local()).await.unwrap();
        assert_eq!(bob_path.len(), 2, "{bob_path:?}");
        let mut alice = get_acceptor(MsrpTls::default(), None);
        let alice_path = alice.prepare(local()).await.unwrap();
        let (b, a) = tokio::join!(bob.complete(alice_path), alice.complete(bob_path));
        let a = a.unwrap().into_session(SessionConfig::default());
        let b = b.unwrap().into_session(SessionConfig::default());
        both_ways(&b, &a).await;
    });
}

#[test]
fn wrong_credentials_are_refused() {
    if !kamailio_available() {
        return;
    }
    let k = start("msrp_relay.cfg", free_port());
    rt().block_on(async {
        let mut c = get_acceptor(MsrpTls::default(), Some(relay(k.port, "alice", "wrong")));
        match c.prepare(local()).await {
            Err(MsrpIoError::Refused { code: 401, .. }) => {}
            other => panic!("expected 401, got {other:?}"),
        }
        let mut c = get_acceptor(MsrpTls::default(), Some(relay(k.port, "mallory", "x")));
        assert!(matches!(
            c.prepare(local()).await,
            Err(MsrpIoError::Refused { code: 401, .. })
        ));
    });
}

/// Takes `s`'s events for `d`; returns the relay renewals seen.
async fn renewals_during(s: &MSRPSession, d: Duration) -> Vec<u32> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + d;
    while let Ok(ev) = tokio::time::timeout_at(end, s.next_event()).await {
        match ev.expect("session open") {
            SessionEvent::Core(MsrpEvent::RelayAuthRenewed { expires }) => seen.push(expires),
            SessionEvent::Core(MsrpEvent::RelayAuthFailed { code, comment }) => {
                panic!("renewal failed: {code} {comment:?}")
            }
            SessionEvent::Closed { error } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
    seen
}

#[test]
fn the_session_renews_its_grant_and_an_unrenewed_path_expires() {
    if !kamailio_available() {
        return;
    }
    let k = start("msrp_relay.cfg", free_port());
    rt().block_on(async {
        // Alice's relay grants 2 s at a time; the session renews it.
        let mut settings = relay(k.port, "alice", "alicepass");
        settings.expires = Some(2);
        let (a, b, _) = sessions_behind_relay(MsrpTls::default(), settings.clone()).await;
        let renewed = renewals_during(&a, Duration::from_millis(4500)).await;
        assert!(renewed.len() >= 3, "renewals: {renewed:?}");
        assert!(renewed.iter().all(|&e| e == 2), "{renewed:?}");
        // 4.5 s into a 2 s grant: the path is still there, both ways.
        both_ways(&b, &a).await;

        // Without a session nothing renews: after the grant the relay
        // refuses what comes for the path.
        let (_carol, mut d, _) = answerer_behind_relay(MsrpTls::default(), settings).await;
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let chunk = d.make_chunk(ChunkSpec {
            data: b"late",
            ..ChunkSpec::default()
        });
        d.write_chunk(&chunk).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), d.read_chunk(64 * 1024))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(r.transaction_id(), chunk.transaction_id());
        assert_eq!(r.code(), Some(481), "{r:?}");
    });
}

#[test]
fn a_large_message_streams_through_the_relay() {
    use common::pattern::{block, matches_pattern, Pattern};
    if !kamailio_available() {
        return;
    }
    const SIZE: u64 = 1 << 30;
    let k = start("msrp_relay.cfg", free_port());
    rt().block_on(async {
        let (a, b, _) =
            sessions_behind_relay(MsrpTls::default(), relay(k.port, "alice", "alicepass")).await;
        let blk = block();
        let started = std::time::Instant::now();
        let mid = b
            .send_message(
                MessageSource::Reader(Box::new(Pattern::new(blk.clone(), SIZE))),
                SendOptions {
                    content_type: "application/octet-stream".into(),
                    size: Some(SIZE),
                    success_report: ReportMode::Yes,
                    ..SendOptions::default()
                },
            )
            .unwrap();
        // Bob's events (chunk responses) are taken while Alice reads.
        let sender = async {
            loop {
                match b.next_event().await.expect("open") {
                    SessionEvent::Core(MsrpEvent::ChunkResponse { code, comment, .. }) => {
                        assert_eq!(code, 200, "{comment:?}")
                    }
                    SessionEvent::Core(MsrpEvent::Report { code, .. }) => {
                        assert_eq!(code, 200);
                        return;
                    }
                    SessionEvent::Closed { error } => panic!("closed: {error:?}"),
                    _ => {}
                }
            }
        };
        let receiver = async {
            let mut got = 0u64;
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(30), a.next_event())
                    .await
                    .expect("data in time")
                    .expect("open");
                match ev {
                    SessionEvent::Data { offset, data, .. } => {
                        assert!(
                            matches_pattern(&blk, offset, &data),
                            "bad bytes at {offset}"
                        );
                        got += data.len() as u64;
                    }
                    SessionEvent::Core(MsrpEvent::MessageComplete { message_id, size }) => {
                        assert_eq!((message_id.as_str(), size), (mid.as_str(), SIZE));
                        return got;
                    }
                    SessionEvent::Closed { error } => panic!("closed: {error:?}"),
                    _ => {}
                }
            }
        };
        let ((), got) = tokio::join!(sender, receiver);
        assert_eq!(got, SIZE);
        eprintln!(
            "{} MiB through the relay in {:.1} s",
            SIZE >> 20,
            started.elapsed().as_secs_f64()
        );
    });
}

#[test]
fn a_slow_reader_behind_the_relay_holds_the_sender_back() {
    use common::pattern::{block, matches_pattern, Pattern};
    if !kamailio_available() {
        return;
    }
    // The relay answers every chunk itself and queues what Alice does not
    // read yet, up to 16 MiB (tcp_conn_wq_max), then drops her connection.
    // Alice reads at most about 50 MB/s here; Bob could send ten times
    // that. Only her partial success REPORTs hold him back.
    const SIZE: u64 = 96 << 20;
    let k = start("msrp_relay.cfg", free_port());
    rt().block_on(async {
        let (a, b, _) =
            sessions_behind_relay(MsrpTls::default(), relay(k.port, "alice", "alicepass")).await;
        let blk = block();
        let mid = b
            .send_message(
                MessageSource::Reader(Box::new(Pattern::new(blk.clone(), SIZE))),
                SendOptions {
                    content_type: "application/octet-stream".into(),
                    size: Some(SIZE),
                    success_report: ReportMode::Yes,
                    ..SendOptions::default()
                },
            )
            .unwrap();
        // Payload bytes the relay has taken from Bob: its 200s come at once.
        let relay_took = std::cell::Cell::new(0u64);
        let sender = async {
            loop {
                match b.next_event().await.expect("open") {
                    SessionEvent::Core(MsrpEvent::ChunkResponse { code, range, .. }) => {
                        assert_eq!(code, 200);
                        relay_took.set(relay_took.get().max(range.1));
                    }
                    SessionEvent::Core(MsrpEvent::Report { code, range, .. }) => {
                        // Only the final report is an event.
                        assert_eq!(code, 200);
                        assert_eq!(range.and_then(|r| r.end), Some(SIZE));
                        return;
                    }
                    SessionEvent::Closed { error } => panic!("closed: {error:?}"),
                    _ => {}
                }
            }
        };
        let receiver = async {
            let (mut got, mut ahead_max) = (0u64, 0u64);
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(30), a.next_event())
                    .await
                    .expect("data in time")
                    .expect("open");
                match ev {
                    SessionEvent::Data { offset, data, .. } => {
                        assert!(matches_pattern(&blk, offset, &data), "bad at {offset}");
                        let before = got;
                        got += data.len() as u64;
                        if got >> 20 != before >> 20 {
                            // What the relay holds for Alice, or has in
                            // its sockets.
                            ahead_max = ahead_max.max(relay_took.get().saturating_sub(got));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    SessionEvent::Core(MsrpEvent::MessageComplete { message_id, size }) => {
                        assert_eq!((message_id.as_str(), size), (mid.as_str(), SIZE));
                        return (got, ahead_max);
                    }
                    SessionEvent::Closed { error } => panic!("closed: {error:?}"),
                    _ => {}
                }
            }
        };
        let ((), (got, ahead_max)) = tokio::join!(sender, receiver);
        assert_eq!(got, SIZE);
        // The send window (8 MiB), a report step (1 MiB) and Alice's event
        // queue; without pacing Bob ran the relay's 16 MiB queue over.
        assert!(ahead_max < 10 << 20, "the relay held {ahead_max} bytes");
        eprintln!(
            "the relay held at most {:.1} MiB for Alice",
            ahead_max as f64 / 1048576.0
        );
    });
}

#[test]
fn msrps_to_the_relay_with_its_certificate_verified() {
    if !kamailio_available()
        || !std::path::Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = common::pki::make_pki(dir.path());
    let tls_port = free_port();
    let k = start_with(
        "msrp_relay.cfg",
        free_port(),
        &[
            "-l".into(),
            format!("tls:127.0.0.1:{tls_port}"),
            "-A".into(),
            "WITH_TLS".into(),
            "-A".into(),
            format!("TLS_CERT=\"{}\"", cert.display()),
        ],
    );
    // Both ends trust the CA that signed the relay's certificate.
    let tls = tls_from_settings(&sipsimple::driver::tls::TlsSettings {
        ca_file: Some(ca),
        use_system_roots: false,
        verify_server: true,
        certificate_file: None,
    })
    .unwrap();
    rt().block_on(async {
        let settings = RelaySettings {
            uri: MsrpUri::parse(&format!("msrps://127.0.0.1:{tls_port};tcp")).unwrap(),
            ..relay(k.port, "alice", "alicepass")
        };
        // Bob connects to the relay over TLS too: the first hop of the path.
        let (a, b, alice_path) = sessions_behind_relay(tls, settings).await;
        assert!(alice_path[0].secure, "{alice_path:?}");
        assert_eq!(alice_path[0].port, Some(tls_port));
        both_ways(&b, &a).await;
    });
}
