//! The SIP engine inside SIPApplication: transports from the settings,
//! default answers, SIPEngineSIPTrace notifications, counters, bind errors.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{ErrorKind, MemoryStorage, NotificationCenter, SIPApplication, Storage};

fn storage(cfg: serde_json::Value) -> Arc<dyn Storage> {
    let s = MemoryStorage::new();
    s.save(cfg.as_object().unwrap()).unwrap();
    Arc::new(s)
}

fn request(method: &str, me: SocketAddr, extra: &str) -> String {
    format!(
        "{method} sip:app@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}1;rport\r\n\
         From: <sip:t@127.0.0.1>;tag=f1\r\nTo: <sip:app@127.0.0.1>{extra}\r\nCall-ID: {method}-c1\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn exchange(sock: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn engine_answers_and_traces() {
    let app = SIPApplication::new();
    app.start(storage(
        json!({"sip": {"transport_list": ["udp"]}, "logs": {"trace_sip": true}}),
    ))
    .unwrap();
    let udp = app.sip_local_address(TransportKind::Udp).unwrap();
    assert!(app.sip_local_address(TransportKind::Tcp).is_none());
    let engine = app.engine_id().unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let obs = NotificationCenter::default().add_observer(
        Some("SIPEngineSIPTrace"),
        Some(engine),
        move |n| {
            let _ = tx.lock().send((
                n.data.get_bool("received").unwrap(),
                n.data.get_str("data").unwrap().to_owned(),
                n.data.get_i64("destination_port").unwrap(),
            ));
        },
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], udp.port()));

    let ok = exchange(&sock, to, &request("OPTIONS", me, ""));
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert!(
        ok.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE"),
        "{ok}"
    );
    let no_dialog = exchange(&sock, to, &request("BYE", me, ";tag=nope"));
    assert!(no_dialog.starts_with("SIP/2.0 481 "), "{no_dialog}");
    let unknown = exchange(&sock, to, &request("FOO", me, ""));
    assert!(unknown.starts_with("SIP/2.0 501 "), "{unknown}");
    let unserved = exchange(&sock, to, &request("SUBSCRIBE", me, ""));
    assert!(unserved.starts_with("SIP/2.0 405 "), "{unserved}");

    // In and out, with addresses.
    let first: Vec<_> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert!(first[0].0 && first[0].1.starts_with("OPTIONS "));
    assert_eq!(first[0].2, i64::from(udp.port()));
    assert!(!first[1].0 && first[1].1.starts_with("SIP/2.0 200"));
    assert_eq!(first[1].2, i64::from(me.port()));

    // Counters already include a message by the time it is on the wire.
    let st = app.engine_statistics().unwrap();
    assert_eq!(st.transactions.requests_in, 4);
    assert_eq!(st.transactions.messages_out, 4);
    assert_eq!(st.parse_errors, 0);

    // Tracing off: no more notifications.
    app.set_sip_trace(false).unwrap();
    NotificationCenter::default().flush(Duration::from_secs(5));
    while rx.try_recv().is_ok() {}
    exchange(
        &sock,
        to,
        &request("OPTIONS", me, ";tag=x").replace("OPTIONS1", "OPTIONS2"),
    );
    NotificationCenter::default().flush(Duration::from_secs(5));
    assert!(rx.try_recv().is_err());
    NotificationCenter::default().remove_observer(obs);
    app.stop();
    assert!(app.engine_statistics().is_none());
    assert_eq!(
        app.set_sip_trace(true).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
}

#[test]
fn a_taken_port_fails_start_with_an_io_error() {
    let taken = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let app = SIPApplication::new();
    let err = app
        .start(storage(
            json!({"sip": {"udp_port": port, "transport_list": ["udp"]}}),
        ))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(!app.is_running());
    // And a bad setting is an InvalidArgument.
    let err = app
        .start(storage(json!({"sip": {"udp_port": "five"}})))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}
