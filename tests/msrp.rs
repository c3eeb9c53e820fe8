//! MSRP between two endpoints on 127.0.0.1: connector and acceptor binding
//! with a message each way and success reports, MSRPServer sharing one port
//! between sessions and refusing strangers, sessions sharing one connection
//! (msrp and msrps), the low-level transport with
//! make_chunk, misbehaving peers (garbage, a disconnect mid-chunk, unknown
//! methods), and msrps with certificate checks.

mod common;

use std::time::Duration;

use common::pki::{make_pki, msrp_tls};
use sipsimple::api::msrp::*;
use sipsimple::driver::tls::TlsSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn rt() -> tokio::runtime::Runtime {
    common::runtime()
}

fn local(secure: bool) -> MsrpUri {
    MsrpUri::parse(if secure {
        "msrps://127.0.0.1:0;tcp"
    } else {
        "msrp://127.0.0.1:0;tcp"
    })
    .unwrap()
}

/// A connected pair: (caller's session, answerer's session).
async fn pair(tls: MsrpTls, secure: bool) -> (MSRPSession, MSRPSession) {
    let mut acceptor = get_acceptor(tls.clone(), None);
    let answer_path = acceptor.prepare(local(secure)).await.unwrap();
    let mut connector = get_connector(tls, None);
    // The connector binds the port it will connect from; a=path carries it.
    let offer_path = connector.prepare(local(secure)).await.unwrap();
    assert_ne!(offer_path[0].port, Some(0));
    let (a, b) = tokio::join!(
        connector.complete(answer_path.clone()),
        acceptor.complete(offer_path.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.remote_path(), &answer_path[..]);
    assert_eq!(b.remote_path(), &offer_path[..]);
    (
        a.into_session(SessionConfig::default()),
        b.into_session(SessionConfig::default()),
    )
}

/// Collect events until `done` says stop; returns the data of each message.
async fn events_until(
    s: &MSRPSession,
    mut done: impl FnMut(&SessionEvent) -> bool,
) -> (
    Vec<SessionEvent>,
    std::collections::HashMap<String, Vec<u8>>,
) {
    let mut evs = Vec::new();
    let mut data: std::collections::HashMap<String, Vec<u8>> = Default::default();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), s.next_event())
            .await
            .expect("an event in time")
            .expect("session open");
        if let SessionEvent::Data {
            message_id,
            offset,
            data: d,
        } = &ev
        {
            let buf = data.entry(message_id.clone()).or_default();
            assert_eq!(*offset as usize, buf.len(), "in order on one connection");
            buf.extend_from_slice(d);
        }
        let stop = done(&ev);
        if !matches!(ev, SessionEvent::Data { .. }) {
            evs.push(ev);
        }
        if stop {
            return (evs, data);
        }
    }
}

fn exchange_both_ways(secure: bool, tls: MsrpTls) {
    rt().block_on(async {
        let (a, b) = pair(tls, secure).await;
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let m1 = a
            .send_message(
                MessageSource::Bytes(b"Hello Bob".to_vec()),
                SendOptions {
                    success_report: ReportMode::Yes,
                    ..SendOptions::default()
                },
            )
            .unwrap();
        let m2 = a
            .send_message(
                MessageSource::Bytes(big.clone()),
                SendOptions {
                    content_type: "application/octet-stream".into(),
                    success_report: ReportMode::Yes,
                    failure_report: ReportMode::Partial,
                    ..SendOptions::default()
                },
            )
            .unwrap();
        let m3 = b
            .send_message(MessageSource::Bytes(b"Hi Alice".to_vec()), SendOptions::default())
            .unwrap();
        let (m2c, m1c) = (m2.clone(), m1.clone());
        let mut completes = 0;
        let mut got_m3_response = false;
        let mut b_events = Vec::new();
        let (_evs, data) = events_until(&b, |e| {
            if let SessionEvent::Core(MsrpEvent::MessageComplete { message_id, .. }) = e {
                assert!(*message_id == m1c || *message_id == m2c);
                completes += 1;
            }
            if let SessionEvent::Core(MsrpEvent::ChunkResponse { code: 200, .. }) = e {
                got_m3_response = true;
            }
            b_events.push(e.clone());
            completes == 2 && got_m3_response
        })
        .await;
        assert_eq!(data[&m1], b"Hello Bob");
        assert_eq!(data[&m2], big);
        // The content type of the first message came through.
        assert!(b_events.iter().any(|e| matches!(
            e,
            SessionEvent::Core(MsrpEvent::IncomingMessage { content_type: Some(ct), message_id, .. })
                if ct == "text/plain" && *message_id == m1
        )));
        // Alice gets Bob's message and success reports for both of hers.
        let mut reports = Vec::new();
        let mut m3_done = false;
        let (_, adata) = events_until(&a, |e| {
            match e {
                SessionEvent::Core(MsrpEvent::Report {
                    message_id, code, ..
                }) => {
                    assert_eq!(*code, 200);
                    reports.push(message_id.clone());
                }
                SessionEvent::Core(MsrpEvent::MessageComplete { message_id, .. }) => {
                    m3_done = *message_id == m3;
                }
                _ => {}
            }
            reports.len() == 2 && m3_done
        })
        .await;
        assert_eq!(adata[&m3], b"Hi Alice");
        reports.sort();
        let mut want = vec![m1, m2];
        want.sort();
        assert_eq!(reports, want);
        a.shutdown();
        let (evs, _) = events_until(&b, |e| matches!(e, SessionEvent::Closed { .. })).await;
        assert!(matches!(evs.last(), Some(SessionEvent::Closed { .. })));
    });
}

#[test]
fn messages_both_ways_with_reports() {
    exchange_both_ways(false, MsrpTls::default());
}

#[test]
fn messages_over_tls_with_a_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = msrp_tls(dir.path());
    exchange_both_ways(true, tls);
}

#[test]
fn tls_to_an_unknown_issuer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, cert) = make_pki(dir.path());
    // The acceptor has a certificate; the connector trusts nothing.
    let server_side = tls_from_settings(&TlsSettings {
        ca_file: None,
        use_system_roots: false,
        verify_server: true,
        certificate_file: Some(cert),
    })
    .unwrap();
    let client_side = tls_from_settings(&TlsSettings {
        ca_file: None,
        use_system_roots: false,
        verify_server: true,
        certificate_file: None,
    })
    .unwrap();
    rt().block_on(async {
        let mut acceptor = get_acceptor(server_side, None);
        let answer_path = acceptor.prepare(local(true)).await.unwrap();
        let mut connector = get_connector(client_side, None);
        let offer_path = connector.prepare(local(true)).await.unwrap();
        let accept = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(2), acceptor.complete(offer_path)).await
        });
        let r = connector.complete(answer_path).await;
        assert!(matches!(r, Err(MsrpIoError::Tls(_))), "{:?}", r.err());
        // The acceptor never binds.
        assert!(accept.await.unwrap().is_err());
    });
}

#[test]
fn one_server_port_for_many_sessions_and_strangers_get_481() {
    rt().block_on(async {
        let server = MSRPServer::bind("127.0.0.1:0".parse().unwrap(), false, MsrpTls::default())
            .await
            .unwrap();
        let mut pairs = Vec::new();
        for i in 0..3 {
            let answer_path = server.prepare("127.0.0.1");
            let mut c = get_connector(MsrpTls::default(), None);
            let offer_path = c.prepare(local(false)).await.unwrap();
            let (a, b) = tokio::join!(
                c.complete(answer_path.clone()),
                server.complete(&answer_path, offer_path)
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(answer_path[0].port, Some(server.local_addr().port()), "{i}");
            pairs.push((
                a.into_session(SessionConfig::default()),
                b.into_session(SessionConfig::default()),
            ));
        }
        for (i, (a, b)) in pairs.iter().enumerate() {
            let text = format!("to session {i}");
            let mid = a
                .send_message(
                    MessageSource::Bytes(text.clone().into_bytes()),
                    SendOptions::default(),
                )
                .unwrap();
            let (_, data) = events_until(b, |e| {
                matches!(e, SessionEvent::Core(MsrpEvent::MessageComplete { .. }))
            })
            .await;
            assert_eq!(data[&mid], text.as_bytes());
        }
        // A connection for a session nobody prepared: 481 and closed.
        let mut c = get_connector(MsrpTls::default(), None);
        c.prepare(local(false)).await.unwrap();
        let mut stranger = server.prepare("127.0.0.1");
        server.cancel(&stranger);
        stranger[0].session_id = Some("nosuchsession".into());
        match c.complete(stranger).await {
            Err(MsrpIoError::Refused { code: 481, .. }) => {}
            other => panic!("expected 481, got {:?}", other.err()),
        }
        // The server counts the refusal once its 481 is written, which
        // may be just after the client has read it.
        let counted = tokio::time::Instant::now() + Duration::from_secs(5);
        while server.refused() == 0 && tokio::time::Instant::now() < counted {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(server.refused(), 1);
    });
}

/// Until `s` has the success report for `sent` and a whole message from
/// its peer, which must be `expect`.
async fn both_done(name: (&str, usize), s: &MSRPSession, sent: String, expect: Vec<u8>) {
    let (name, i) = name;
    let (mut report, mut got) = (false, false);
    let mut data: Vec<u8> = Vec::new();
    while !(report && got) {
        let ev = tokio::time::timeout(Duration::from_secs(20), s.next_event())
            .await
            .unwrap_or_else(|_| panic!("{name}{i}: an event in time"))
            .expect("open");
        match ev {
            SessionEvent::Data {
                message_id,
                offset,
                data: d,
            } => {
                assert_ne!(message_id, sent, "{name}{i}: its own message");
                assert_eq!(offset as usize, data.len());
                data.extend_from_slice(&d);
            }
            SessionEvent::Core(MsrpEvent::MessageComplete { .. }) => got = true,
            SessionEvent::Core(MsrpEvent::Report {
                message_id, code, ..
            }) => {
                assert_eq!((message_id.as_str(), code), (sent.as_str(), 200));
                report = true;
            }
            SessionEvent::Closed { error } => panic!("{name}{i}: closed {error:?}"),
            _ => {}
        }
    }
    assert!(data == expect, "{name}{i}: not the bytes its peer sent");
}

/// Sessions from one pool to one MSRPServer, over msrp or msrps.
async fn shared_sessions(
    server: &MSRPServer,
    pool: &MsrpConnectionPool,
    tls: &MsrpTls,
    secure: bool,
    n: usize,
) -> Vec<(MSRPSession, MSRPSession)> {
    let mut pairs = Vec::new();
    for _ in 0..n {
        let answer_path = server.prepare("127.0.0.1");
        let mut c = ConnectorDirect::with_pool(tls.clone(), pool.clone());
        let offer_path = c.prepare(local(secure)).await.unwrap();
        let (a, b) = tokio::join!(
            c.complete(answer_path.clone()),
            server.complete(&answer_path, offer_path)
        );
        pairs.push((
            a.unwrap().into_session(SessionConfig::default()),
            b.unwrap().into_session(SessionConfig::default()),
        ));
    }
    pairs
}

#[test]
fn sessions_share_one_connection_and_each_sees_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let tls = msrp_tls(dir.path());
    for secure in [false, true] {
        rt().block_on(async {
            let server = MSRPServer::bind("127.0.0.1:0".parse().unwrap(), secure, tls.clone())
                .await
                .unwrap();
            let pool = MsrpConnectionPool::new();
            let mut pairs = shared_sessions(&server, &pool, &tls, secure, 3).await;
            // Three sessions, one connection.
            assert_eq!(server.accepted(), 1, "secure {secure}");
            assert_eq!(pool.connections(), 1);
            // Every session sends a message of many chunks each way at the
            // same time; each arrives whole at its own peer, and only there.
            let body = |i: usize, dir: u8| -> Vec<u8> {
                (0..300_000u32)
                    .map(|k| (k as usize * 31 + i * 7 + dir as usize) as u8)
                    .collect()
            };
            let send = |s: &MSRPSession, data: Vec<u8>| {
                s.send_message(
                    MessageSource::Bytes(data),
                    SendOptions {
                        success_report: ReportMode::Yes,
                        ..SendOptions::default()
                    },
                )
                .unwrap()
            };
            let mut ids = Vec::new();
            for (i, (a, b)) in pairs.iter().enumerate() {
                ids.push((send(a, body(i, 0)), send(b, body(i, 1))));
            }
            // Each session's events are taken at the same time, as an
            // application does: a chunk for a session whose reader waits
            // holds up the connection for all (one TCP stream).
            let [(a0, b0), (a1, b1), (a2, b2)] = &pairs[..] else {
                unreachable!()
            };
            let [(m0, n0), (m1, n1), (m2, n2)] = &ids[..] else {
                unreachable!()
            };
            tokio::join!(
                both_done(("a", 0), a0, m0.clone(), body(0, 1)),
                both_done(("b", 0), b0, n0.clone(), body(0, 0)),
                both_done(("a", 1), a1, m1.clone(), body(1, 1)),
                both_done(("b", 1), b1, n1.clone(), body(1, 0)),
                both_done(("a", 2), a2, m2.clone(), body(2, 1)),
                both_done(("b", 2), b2, n2.clone(), body(2, 0)),
            );
            // One session ends; the others go on over the same connection.
            // Nothing on the wire says a session ended (SIP does): the
            // peer's chunks for it now get 481 from our end.
            let (a0, b0) = pairs.remove(0);
            a0.shutdown();
            let gone = tokio::time::Instant::now() + Duration::from_secs(5);
            while pool.sessions() > 2 && tokio::time::Instant::now() < gone {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(pool.sessions(), 2);
            send(&b0, b"anyone?".to_vec());
            events_until(&b0, |e| {
                matches!(
                    e,
                    SessionEvent::Core(MsrpEvent::ChunkResponse { code: 481, .. })
                )
            })
            .await;
            b0.shutdown();
            for (a, b) in &pairs {
                let mid = send(b, b"still here".to_vec());
                let (_, data) = events_until(a, |e| {
                    matches!(e, SessionEvent::Core(MsrpEvent::MessageComplete { .. }))
                })
                .await;
                assert_eq!(data[&mid], b"still here");
            }
            // A new session joins the open connection.
            pairs.extend(shared_sessions(&server, &pool, &tls, secure, 1).await);
            assert_eq!(server.accepted(), 1);
            // The last session to end closes the connection.
            for (a, _) in &pairs {
                a.shutdown();
            }
            for (_, b) in &pairs {
                events_until(b, |e| matches!(e, SessionEvent::Closed { .. })).await;
            }
            let closed = tokio::time::Instant::now() + Duration::from_secs(5);
            while pool.connections() > 0 && tokio::time::Instant::now() < closed {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(pool.connections(), 0);
            // The next session opens a new one.
            let again = shared_sessions(&server, &pool, &tls, secure, 1).await;
            assert_eq!(server.accepted(), 2);
            let mid = send(&again[0].0, b"new connection".to_vec());
            let (_, data) = events_until(&again[0].1, |e| {
                matches!(e, SessionEvent::Core(MsrpEvent::MessageComplete { .. }))
            })
            .await;
            assert_eq!(data[&mid], b"new connection");
            assert_eq!(server.refused(), 0);
        });
    }
}

#[test]
fn a_shared_connection_answers_chunks_for_unknown_sessions_with_481() {
    rt().block_on(async {
        let server = MSRPServer::bind("127.0.0.1:0".parse().unwrap(), false, MsrpTls::default())
            .await
            .unwrap();
        // A hand-driven peer binds one session, then sends for another.
        let answer_path = server.prepare("127.0.0.1");
        let mut c = get_connector(MsrpTls::default(), None);
        let offer_path = c.prepare(local(false)).await.unwrap();
        let (t, b) = tokio::join!(
            c.complete(answer_path.clone()),
            server.complete(&answer_path, offer_path.clone())
        );
        let (mut t, b) = (
            t.unwrap(),
            b.unwrap().into_session(SessionConfig::default()),
        );
        let mut stranger = answer_path.clone();
        stranger[0].session_id = Some("notpreparedhere".into());
        let mut chunk = t.make_chunk(ChunkSpec {
            data: b"for nobody",
            ..ChunkSpec::default()
        });
        chunk.head.set_paths(&stranger, &offer_path);
        t.write_chunk(&chunk).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), t.read_chunk(4096))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.transaction_id(), r.code()),
            (chunk.transaction_id(), Some(481))
        );
        // The bound session is unharmed.
        let good = t.make_chunk(ChunkSpec {
            data: b"for b",
            ..ChunkSpec::default()
        });
        t.write_chunk(&good).await.unwrap();
        let (_, data) = events_until(&b, |e| {
            matches!(e, SessionEvent::Core(MsrpEvent::MessageComplete { .. }))
        })
        .await;
        assert_eq!(data.values().next().map(Vec::as_slice), Some(&b"for b"[..]));
        assert_eq!(server.refused(), 1);
    });
}

#[test]
fn a_shared_connection_that_breaks_closes_its_sessions_and_the_port_goes_on() {
    rt().block_on(async {
        let server = MSRPServer::bind("127.0.0.1:0".parse().unwrap(), false, MsrpTls::default())
            .await
            .unwrap();
        let half = format!(
            "MSRP half0001 SEND\r\nTo-Path: TO\r\nFrom-Path: FROM\r\nMessage-ID: halfway\r\nByte-Range: 1-5000/5000\r\nContent-Type: text/plain\r\n\r\n{}",
            "x".repeat(1000)
        );
        // A disconnect in the middle of a chunk, and garbage.
        for (i, tail) in [half, "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into()]
            .into_iter()
            .enumerate()
        {
            let answer_path = server.prepare("127.0.0.1");
            let from = format!("msrp://127.0.0.1:9/rawpeer{i};tcp");
            let to = path_to_string(&answer_path);
            let peer = MsrpUri::parse(&from).unwrap();
            let raw_side = async {
                let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
                let bind = format!(
                    "MSRP bind0001 SEND\r\nTo-Path: {to}\r\nFrom-Path: {from}\r\nMessage-ID: b{i}\r\nByte-Range: 1-0/0\r\n-------bind0001$\r\n"
                );
                tcp.write_all(bind.as_bytes()).await.unwrap();
                let mut got = Vec::new();
                // All of it: a socket closed with unread data resets.
                while !String::from_utf8_lossy(&got).contains("-------bind0001$\r\n") {
                    let mut buf = [0u8; 512];
                    let n = tcp.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed before the bind's answer");
                    got.extend_from_slice(&buf[..n]);
                }
                assert!(String::from_utf8_lossy(&got).starts_with("MSRP bind0001 200"));
                tcp
            };
            let (b, mut tcp) = tokio::join!(server.complete(&answer_path, vec![peer]), raw_side);
            let b = b.unwrap().into_session(SessionConfig::default());
            let tail = tail.replace("TO", &to).replace("FROM", &from);
            tcp.write_all(tail.as_bytes()).await.unwrap();
            drop(tcp);
            let (evs, _) = events_until(&b, |e| matches!(e, SessionEvent::Closed { .. })).await;
            if i == 0 {
                assert!(evs.iter().any(|e| matches!(
                    e,
                    SessionEvent::Core(MsrpEvent::MessageAborted { message_id, by_sender: false })
                        if message_id == "halfway"
                )), "{evs:?}");
            }
        }
        // The port goes on serving.
        let answer_path = server.prepare("127.0.0.1");
        let mut c = get_connector(MsrpTls::default(), None);
        let offer_path = c.prepare(local(false)).await.unwrap();
        let (t2, b2) = tokio::join!(
            c.complete(answer_path.clone()),
            server.complete(&answer_path, offer_path)
        );
        assert!(t2.is_ok() && b2.is_ok());
    });
}

#[test]
fn low_level_transport_make_chunk_write_and_read() {
    rt().block_on(async {
        let mut acceptor = get_acceptor(MsrpTls::default(), None);
        let answer_path = acceptor.prepare(local(false)).await.unwrap();
        let mut connector = get_connector(MsrpTls::default(), None);
        let offer_path = connector.prepare(local(false)).await.unwrap();
        let (a, b) = tokio::join!(
            connector.complete(answer_path),
            acceptor.complete(offer_path)
        );
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        let chunk = a.make_chunk(ChunkSpec {
            data: b"part one ",
            start: 1,
            length: Some(17),
            message_id: Some("msg1"),
            ..ChunkSpec::default()
        });
        // A partial SEND gets `+` and a proper Byte-Range.
        assert_eq!(chunk.contflag, ContFlag::More);
        assert_eq!(chunk.head.header("Byte-Range"), Some("1-9/17"));
        assert_eq!(chunk.head.to_path().unwrap(), b.local_path());
        let mut chunk = chunk;
        chunk.head.push_header("Content-Type", "text/plain");
        a.write_chunk(&chunk).await.unwrap();
        let got = b.read_chunk(1024).await.unwrap();
        assert_eq!(got.data, b"part one ");
        assert_eq!(got.message_id(), Some("msg1"));
        assert_eq!(got.contflag, ContFlag::More);
        b.respond(&got, 200, "OK").await.unwrap();
        let r = a.read_chunk(1024).await.unwrap();
        assert_eq!(r.code(), Some(200));
        assert_eq!(r.transaction_id(), chunk.transaction_id());
        // Data holding the chunk's own end-line is refused before writing.
        let tid = "abcd1234";
        let bad = a.make_chunk(ChunkSpec {
            transaction_id: Some(tid),
            data: b"xx-------abcd1234$\r\n",
            ..ChunkSpec::default()
        });
        assert!(matches!(
            a.write_chunk(&bad).await,
            Err(MsrpIoError::Protocol(_))
        ));
    });
}

/// A raw TCP peer that binds by hand, then misbehaves.
async fn raw_peer_session(script: &'static [u8]) -> Vec<SessionEvent> {
    let mut acceptor = get_acceptor(MsrpTls::default(), None);
    let answer_path = acceptor.prepare(local(false)).await.unwrap();
    let port = answer_path[0].port.unwrap();
    let offer = MsrpUri::parse("msrp://127.0.0.1:9/rawpeer1;tcp").unwrap();
    let accept = tokio::spawn(async move { acceptor.complete(vec![offer]).await });
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let sid = answer_path[0].session_id.clone().unwrap();
    let bind = format!(
        "MSRP bind0001 SEND\r\nTo-Path: msrp://127.0.0.1:{port}/{sid};tcp\r\nFrom-Path: msrp://127.0.0.1:9/rawpeer1;tcp\r\nMessage-ID: b1\r\nByte-Range: 1-0/0\r\n-------bind0001$\r\n"
    );
    tcp.write_all(bind.as_bytes()).await.unwrap();
    let t = accept.await.unwrap().unwrap();
    let mut resp = vec![0u8; 4096];
    let n = tcp.read(&mut resp).await.unwrap();
    assert!(resp[..n].starts_with(b"MSRP bind0001 200"));
    let s = t.into_session(SessionConfig::default());
    let script = String::from_utf8_lossy(script)
        .replace("PORT", &port.to_string())
        .replace("SID", &sid);
    tcp.write_all(script.as_bytes()).await.unwrap();
    // Read whatever the session answers, then hang up.
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    let answers = reader.await.unwrap();
    let (mut evs, _) = events_until(&s, |e| matches!(e, SessionEvent::Closed { .. })).await;
    evs.push(SessionEvent::Data {
        message_id: "wire".into(),
        offset: 0,
        data: answers,
    });
    evs
}

fn wire_of(evs: &[SessionEvent]) -> String {
    match evs.last() {
        Some(SessionEvent::Data { data, .. }) => String::from_utf8_lossy(data).into_owned(),
        _ => String::new(),
    }
}

#[test]
fn unknown_methods_get_501_and_the_session_goes_on() {
    let evs = rt().block_on(raw_peer_session(
        b"MSRP frob0001 FROB\r\nTo-Path: msrp://127.0.0.1:PORT/SID;tcp\r\nFrom-Path: msrp://127.0.0.1:9/rawpeer1;tcp\r\n-------frob0001$\r\n\
MSRP send0001 SEND\r\nTo-Path: msrp://127.0.0.1:PORT/SID;tcp\r\nFrom-Path: msrp://127.0.0.1:9/rawpeer1;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\nok\r\n-------send0001$\r\n",
    ));
    let wire = wire_of(&evs);
    assert!(wire.contains("MSRP frob0001 501"), "{wire}");
    assert!(wire.contains("MSRP send0001 200"), "{wire}");
    assert!(evs.iter().any(|e| matches!(
        e,
        SessionEvent::Core(MsrpEvent::MessageComplete { size: 2, .. })
    )));
}

#[test]
fn garbage_closes_the_connection() {
    let evs = rt().block_on(raw_peer_session(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    match &evs[evs.len() - 2] {
        SessionEvent::Closed { error: Some(e) } => assert!(e.contains("framing"), "{e}"),
        other => panic!("expected a framing error, got {other:?}"),
    }
}

#[test]
fn a_peer_gone_mid_chunk_aborts_the_message() {
    let evs = rt().block_on(raw_peer_session(
        b"MSRP send0002 SEND\r\nTo-Path: msrp://127.0.0.1:PORT/SID;tcp\r\nFrom-Path: msrp://127.0.0.1:9/rawpeer1;tcp\r\nMessage-ID: half\r\nByte-Range: 1-100/100\r\nContent-Type: text/plain\r\n\r\nonly part of it",
    ));
    assert!(evs.iter().any(|e| matches!(
        e,
        SessionEvent::Core(MsrpEvent::MessageAborted { message_id, by_sender: false }) if message_id == "half"
    )));
    assert!(!evs
        .iter()
        .any(|e| matches!(e, SessionEvent::Core(MsrpEvent::MessageComplete { .. }))));
}

#[test]
fn sending_to_a_closed_peer_reports_not_delivered() {
    rt().block_on(async {
        let (a, b) = pair(MsrpTls::default(), false).await;
        b.shutdown();
        drop(b);
        // Wait for Alice to see the close, then try to send.
        let (evs, _) = events_until(&a, |e| matches!(e, SessionEvent::Closed { .. })).await;
        assert!(matches!(evs.last(), Some(SessionEvent::Closed { .. })));
        assert!(matches!(
            a.send_message(
                MessageSource::Bytes(b"late".to_vec()),
                SendOptions::default()
            ),
            Err(MsrpIoError::Closed)
        ));
    });
}

/// msrps settings with a self-signed certificate and no trusted CA at all:
/// only a=fingerprint can make a connection work.
fn fingerprint_only(cert: std::path::PathBuf) -> MsrpTls {
    tls_from_settings(&TlsSettings {
        ca_file: None,
        use_system_roots: false,
        verify_server: true,
        certificate_file: Some(cert),
    })
    .unwrap()
}

/// Connector and acceptor, each told the other's a=fingerprint (or a
/// wrong one); returns both ends' results.
async fn bind_with_fingerprints(
    caller: MsrpTls,
    callee: MsrpTls,
    callee_expects: Option<Fingerprint>,
    caller_expects: Option<Fingerprint>,
) -> (
    Result<MSRPTransport, MsrpIoError>,
    Result<MSRPTransport, MsrpIoError>,
) {
    let mut acceptor = get_acceptor(callee, None);
    acceptor.set_remote_fingerprint(callee_expects);
    let answer_path = acceptor.prepare(local(true)).await.unwrap();
    let mut connector = get_connector(caller, None);
    connector.set_remote_fingerprint(caller_expects);
    let offer_path = connector.prepare(local(true)).await.unwrap();
    let accept = async {
        match tokio::time::timeout(Duration::from_secs(2), acceptor.complete(offer_path)).await {
            Ok(r) => r,
            Err(_) => Err(MsrpIoError::Timeout("test: nothing bound")),
        }
    };
    tokio::join!(connector.complete(answer_path), accept)
}

#[test]
fn a_fingerprint_stands_in_for_a_ca_and_is_checked_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let alice = fingerprint_only(common::pki::self_signed(dir.path(), "alice"));
    let bob = fingerprint_only(common::pki::self_signed(dir.path(), "bob"));
    let carol = fingerprint_only(common::pki::self_signed(dir.path(), "carol"));
    let (fa, fb, fc) = (
        alice.fingerprint().unwrap(),
        bob.fingerprint().unwrap(),
        carol.fingerprint().unwrap(),
    );
    assert_eq!(fa.hash, HashFunction::Sha256);
    assert_ne!(fa, fb);
    // What goes into SDP reads back the same.
    assert_eq!(Fingerprint::parse(&fa.to_string()).unwrap(), fa);
    rt().block_on(async {
        // Both fingerprints right: bound, and messages flow.
        let (a, b) = bind_with_fingerprints(
            alice.clone(),
            bob.clone(),
            Some(fa.clone()),
            Some(fb.clone()),
        )
        .await;
        let (a, b) = (
            a.unwrap().into_session(SessionConfig::default()),
            b.unwrap().into_session(SessionConfig::default()),
        );
        let mid = a
            .send_message(
                MessageSource::Bytes(b"pinned".to_vec()),
                SendOptions::default(),
            )
            .unwrap();
        let (_, data) = events_until(&b, |e| {
            matches!(e, SessionEvent::Core(MsrpEvent::MessageComplete { .. }))
        })
        .await;
        assert_eq!(data[&mid], b"pinned");

        // Without a fingerprint the self-signed certificate is refused.
        let (a, b) = bind_with_fingerprints(alice.clone(), bob.clone(), None, None).await;
        assert!(matches!(a, Err(MsrpIoError::Tls(_))), "{:?}", a.err());
        assert!(b.is_err());

        // The caller expects carol's certificate but finds bob's.
        let (a, b) = bind_with_fingerprints(
            alice.clone(),
            bob.clone(),
            Some(fa.clone()),
            Some(fc.clone()),
        )
        .await;
        assert!(matches!(a, Err(MsrpIoError::Tls(_))), "{:?}", a.err());
        assert!(b.is_err());

        // Carol calls with bob's fingerprint right, but bob's SDP said the
        // caller is alice: bob drops the connection, nothing binds.
        let (a, b) = bind_with_fingerprints(carol.clone(), bob.clone(), Some(fa), Some(fb)).await;
        assert!(a.is_err(), "the caller bound");
        assert!(b.is_err(), "the callee bound");
    });
}

#[test]
fn the_shared_server_port_checks_fingerprints_per_session() {
    let dir = tempfile::tempdir().unwrap();
    let alice = fingerprint_only(common::pki::self_signed(dir.path(), "alice"));
    let bob = fingerprint_only(common::pki::self_signed(dir.path(), "bob"));
    let carol = fingerprint_only(common::pki::self_signed(dir.path(), "carol"));
    let (fa, fb) = (alice.fingerprint().unwrap(), bob.fingerprint().unwrap());
    rt().block_on(async {
        let server = MSRPServer::bind("127.0.0.1:0".parse().unwrap(), true, bob)
            .await
            .unwrap();
        for (caller, ok) in [(alice, true), (carol, false)] {
            let answer_path = server.prepare("127.0.0.1");
            let mut c = get_connector(caller, None);
            c.set_remote_fingerprint(Some(fb.clone()));
            let offer_path = c.prepare(local(true)).await.unwrap();
            let accept = async {
                tokio::time::timeout(
                    Duration::from_secs(2),
                    server.complete_with_fingerprint(&answer_path, offer_path, Some(fa.clone())),
                )
                .await
            };
            let (a, b) = tokio::join!(c.complete(answer_path.clone()), accept);
            if ok {
                a.unwrap();
                b.unwrap().unwrap();
            } else {
                match a {
                    Err(MsrpIoError::Refused { code: 403, .. }) => {}
                    other => panic!("expected 403, got {:?}", other.err()),
                }
                assert!(!matches!(b, Ok(Ok(_))));
                assert_eq!(server.refused(), 1);
            }
        }
    });
}

#[test]
fn a_peer_that_connects_before_our_side_completes_is_waited_for() {
    rt().block_on(async {
        let server = MSRPServer::bind("127.0.0.1:0".parse().unwrap(), false, MsrpTls::default())
            .await
            .unwrap();
        let answer_path = server.prepare("127.0.0.1");
        let mut c = get_connector(MsrpTls::default(), None);
        let offer_path = c.prepare(local(false)).await.unwrap();
        // The peer has our a=path and connects at once; our side calls
        // complete() only when it has the peer's path, later.
        let caller = tokio::spawn(c.complete(answer_path.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = server.complete(&answer_path, offer_path).await.unwrap();
        let a = caller.await.unwrap().unwrap();
        assert_eq!(a.remote_path(), &answer_path[..]);
        assert_eq!(b.local_path(), &answer_path[..]);
        assert_eq!(server.refused(), 0);

        // Prepared, then cancelled while the peer waits: 481 at once.
        let answer_path = server.prepare("127.0.0.1");
        let mut c = get_connector(MsrpTls::default(), None);
        c.prepare(local(false)).await.unwrap();
        let caller = tokio::spawn(c.complete(answer_path.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.cancel(&answer_path);
        let r = tokio::time::timeout(Duration::from_secs(5), caller)
            .await
            .expect("refused without waiting for the bind timeout")
            .unwrap();
        assert!(
            matches!(r, Err(MsrpIoError::Refused { code: 481, .. })),
            "{:?}",
            r.err()
        );
    });
}
