//! The engine's transports on 127.0.0.1 (and ::1 where the machine has it):
//! bad input, limits, keep-alive, idle timeout, bind errors, IPv6, traces.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{request, send, serve_uas, start_engine};
use sipsimple::driver::engine::{ClientEvent, Direction, Engine, EngineConfig, EngineEvent};
use sipsimple::proto::sip::transaction::{Peer, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn engine_with(cfg: EngineConfig) -> (Engine, mpsc::UnboundedReceiver<EngineEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Engine::start(cfg, tx).await.unwrap(), rx)
}

fn local_cfg() -> EngineConfig {
    EngineConfig {
        udp: Some(lo(0)),
        tcp: Some(lo(0)),
        ..EngineConfig::default()
    }
}

/// Wait (bounded) until `f` holds on the engine's counters.
async fn until(engine: &Engine, f: impl Fn(&sipsimple::driver::engine::EngineStats) -> bool) {
    for _ in 0..200 {
        if f(&engine.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached: {:?}", engine.stats());
}

#[tokio::test(flavor = "current_thread")]
async fn bad_datagrams_are_answered_400_or_counted() {
    let (engine, _ev) = engine_with(local_cfg()).await;
    let target = engine.local_addr(TransportKind::Udp).unwrap();
    let sock = UdpSocket::bind(lo(0)).await.unwrap();
    let me = sock.local_addr().unwrap();
    // A request whose Content-Length is negative: recoverable Via, so 400.
    let bad = format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbad;rport\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: bad1\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: -5\r\n\r\n"
    );
    sock.send_to(bad.as_bytes(), target).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer comes")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 400 "), "{text}");
    assert!(text.contains("Call-ID: bad1"));
    // Garbage and a broken response: silent, counted drops.
    sock.send_to(b"\x00\x01garbage\xff\r\n\r\n", target)
        .await
        .unwrap();
    sock.send_to(b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n", target)
        .await
        .unwrap();
    until(&engine, |s| s.parse_errors == 3).await;
    let st = engine.stats();
    assert_eq!(st.bad_requests_answered, 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing answers a drop"
    );
    engine.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn endless_header_closes_the_connection_within_the_limit() {
    let (engine, _ev) = engine_with(local_cfg()).await;
    let target = engine.local_addr(TransportKind::Tcp).unwrap();
    let mut s = TcpStream::connect(target).await.unwrap();
    s.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nX-Long: ")
        .await
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    // Keep writing until the engine hangs up; it must do so soon after the
    // 1 MiB stream limit, not buffer without end.
    let closed = loop {
        match s.write_all(&chunk).await {
            Ok(()) => sent += chunk.len(),
            Err(_) => break true,
        }
        if sent > 8 << 20 {
            break false;
        }
    };
    assert!(closed, "connection still open after {sent} bytes");
    assert!(sent <= 4 << 20, "engine read {sent} bytes before closing");
    until(&engine, |s| s.parse_errors == 1 && s.connections_open == 0).await;
    engine.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn connection_cap_refuses_the_extra_ones() {
    let cfg = EngineConfig {
        max_connections: 3,
        ..local_cfg()
    };
    let (engine, _ev) = engine_with(cfg).await;
    let target = engine.local_addr(TransportKind::Tcp).unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(target).await.unwrap());
    }
    until(&engine, |s| s.connections_open == 3).await;
    let mut extra = TcpStream::connect(target).await.unwrap();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut b))
        .await
        .expect("the extra connection is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)));
    until(&engine, |s| s.connections_refused == 1).await;
    assert_eq!(engine.stats().connections_open, 3);
    drop(held);
    until(&engine, |s| s.connections_open == 0).await;
    engine.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn crlf_keepalive_is_answered_and_idle_connections_close() {
    let cfg = EngineConfig {
        idle_timeout: Duration::from_millis(400),
        ..local_cfg()
    };
    let (engine, _ev) = engine_with(cfg).await;
    let target = engine.local_addr(TransportKind::Tcp).unwrap();
    let mut s = TcpStream::connect(target).await.unwrap();
    s.write_all(b"\r\n\r\n").await.unwrap();
    let mut b = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b[..n], b"\r\n");
    // Then silence: the engine closes the connection after the idle time.
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .expect("closed by the idle timeout");
    assert!(matches!(n, Ok(0) | Err(_)));
    until(&engine, |s| {
        s.connections_idle_closed == 1 && s.keepalive_pings == 1
    })
    .await;
    engine.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind(lo(0)).unwrap();
    let addr = taken.local_addr().unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let cfg = EngineConfig {
        udp: Some(addr),
        tcp: None,
        ..EngineConfig::default()
    };
    let err = Engine::start(cfg, tx).await.err().expect("bind fails");
    let msg = err.to_string();
    assert!(
        msg.contains("UDP") && msg.contains(&addr.to_string()),
        "{msg}"
    );
}

async fn ping(engine: &Engine, t: TransportKind, local: SocketAddr, remote: SocketAddr) -> u16 {
    send(engine, request("OPTIONS", t, local, remote), t, remote).await
}

#[tokio::test(flavor = "current_thread")]
async fn options_over_ipv4_and_ipv6_udp_and_tcp() {
    let mut families = vec![lo(0)];
    if std::net::UdpSocket::bind("[::1]:0").is_ok() {
        families.push("[::1]:0".parse().unwrap());
    } else {
        eprintln!("no IPv6 loopback here: IPv4 only");
    }
    for any in families {
        let cfg = EngineConfig {
            udp: Some(any),
            tcp: Some(any),
            ..EngineConfig::default()
        };
        let (a, _aev) = engine_with(cfg.clone()).await;
        let (b, bev) = engine_with(cfg).await;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let uas = tokio::spawn(serve_uas(b.clone(), bev, stop_rx));
        for t in [TransportKind::Udp, TransportKind::Tcp] {
            let code = ping(&a, t, a.local_addr(t).unwrap(), b.local_addr(t).unwrap()).await;
            assert_eq!(code, 200, "{t:?} over {any}");
        }
        let _ = stop_tx.send(());
        uas.await.unwrap();
        a.stop();
        b.stop();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn wire_traces_show_both_directions() {
    let (a, mut aev) = engine_with(EngineConfig {
        trace: true,
        ..local_cfg()
    })
    .await;
    let (b, bev, ub) = start_engine(TransportKind::Udp).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let uas = tokio::spawn(serve_uas(b.clone(), bev, stop_rx));
    let la = a.local_addr(TransportKind::Udp).unwrap();
    assert_eq!(ping(&a, TransportKind::Udp, la, ub).await, 200);
    let mut seen = Vec::new();
    while let Ok(Some(EngineEvent::Trace(t))) =
        tokio::time::timeout(Duration::from_millis(500), aev.recv()).await
    {
        seen.push((t.direction, String::from_utf8_lossy(&t.data).to_string()));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen[0].0, Direction::Outgoing);
    assert!(seen[0].1.starts_with("OPTIONS "));
    assert_eq!(seen[1].0, Direction::Incoming);
    assert!(seen[1].1.starts_with("SIP/2.0 200 OK"));
    let _ = stop_tx.send(());
    uas.await.unwrap();
    // Nothing was dropped on either side.
    assert_eq!(a.stats().parse_errors + b.stats().parse_errors, 0);
    assert_eq!(a.stats().transactions.messages_out, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_tcp_peer_is_a_transport_error() {
    let (a, _ev) = engine_with(local_cfg()).await;
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind(lo(0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let la = a.local_addr(TransportKind::Tcp).unwrap();
    let mut rx = a.send_request(
        request("OPTIONS", TransportKind::Tcp, la, lo(port)),
        Peer {
            transport: TransportKind::Tcp,
            addr: lo(port),
        },
    );
    let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    assert!(matches!(ev, Some(ClientEvent::TransportError)), "{ev:?}");
    assert_eq!(a.stats().transactions.transport_errors, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn our_flows_send_crlf_pings_and_drop_a_silent_peer() {
    let cfg = EngineConfig {
        keepalive_interval: Some(Duration::from_millis(150)),
        pong_timeout: Duration::from_millis(300),
        ..local_cfg()
    };
    let (a, _aev) = engine_with(cfg).await;
    let (b, bev, _) = start_engine(TransportKind::Tcp).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let uas = tokio::spawn(serve_uas(b.clone(), bev, stop_rx));
    let la = a.local_addr(TransportKind::Tcp).unwrap();
    let lb = b.local_addr(TransportKind::Tcp).unwrap();
    assert_eq!(ping(&a, TransportKind::Tcp, la, lb).await, 200);
    // The peer answers each ping; the flow stays up.
    until(&a, |s| s.keepalive_pongs >= 3).await;
    assert!(b.stats().keepalive_pings >= 3);
    assert_eq!(a.stats().keepalive_failures, 0);
    assert_eq!(a.stats().connections_open, 1);
    let _ = stop_tx.send(());
    uas.await.unwrap();

    // A peer that reads but never answers: the flow is closed.
    let silent = tokio::net::TcpListener::bind(lo(0)).await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut s, _) = silent.accept().await.unwrap();
        let mut b = vec![0u8; 4096];
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 {
                break;
            }
        }
    });
    let _rx = a.send_request(
        request("OPTIONS", TransportKind::Tcp, la, silent_addr),
        Peer {
            transport: TransportKind::Tcp,
            addr: silent_addr,
        },
    );
    until(&a, |s| s.keepalive_failures == 1 && s.connections_open == 1).await;
    sink.await.unwrap();
}
