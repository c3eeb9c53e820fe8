//! Sessions between two applications in one process over 127.0.0.1: call,
//! ring, answer, hold, add and remove streams, end; reject, busy, cancel,
//! 488 and 400 for offers we cannot take; an observer that ends the session
//! from SIPSessionDidStart.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::apps::{incoming_session, start_app, Recorder};
use common::media::{TestFactory, TYPE};
use parking_lot::Mutex;
use serde_json::json;
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    Account, MediaStreamRegistry, Notification, NotificationCenter, SIPApplication, Session,
    SessionState,
};

fn factory() -> Arc<TestFactory> {
    static F: once_cell::sync::Lazy<Arc<TestFactory>> = once_cell::sync::Lazy::new(|| {
        let f = Arc::new(TestFactory::default());
        MediaStreamRegistry::default().register(f.clone()).unwrap();
        f
    });
    F.clone()
}

fn app() -> SIPApplication {
    factory();
    start_app(json!({"sip": {"transport_list": ["udp", "tcp"]}}))
}

fn uri(app: &SIPApplication, user: &str) -> String {
    let a = app.sip_local_address(TransportKind::Udp).unwrap();
    format!("sip:{user}@127.0.0.1:{}", a.port())
}

fn call(alice: &SIPApplication, bob: &SIPApplication) -> Session {
    let account = Account::new("alice@example.com", Some("Alice")).unwrap();
    let s = alice.session_manager().unwrap().new_session(&account);
    let stream = MediaStreamRegistry::default().create(TYPE).unwrap();
    s.connect(&uri(bob, "bob"), &[], vec![stream]).unwrap();
    s
}

#[test]
fn call_hold_add_remove_end() {
    let (rec, tok) = Recorder::start();
    let alice = app();
    let bob = app();
    let a = call(&alice, &bob);
    let b = incoming_session(&bob, &rec);
    assert_eq!(b.state(), SessionState::Incoming);
    assert_eq!(b.direction(), Some("incoming"));
    assert!(b.remote_identity().unwrap().contains("alice@example.com"));
    b.send_ring_indication().unwrap();
    rec.wait("SIPSessionGotRingIndication", Some(a.id().0));
    let proposed = b.proposed_streams();
    assert_eq!(proposed.len(), 1);
    b.accept(proposed).unwrap();
    // A second accept is refused and changes nothing.
    assert!(b.accept(b.proposed_streams()).is_err());
    rec.wait("SIPSessionDidStart", Some(a.id().0));
    rec.wait("SIPSessionDidStart", Some(b.id().0));
    assert_eq!(a.state(), SessionState::Established);
    assert!(a.start_time().is_some());
    assert!(a.remote_user_agent().unwrap().starts_with("sipsimple/"));
    assert_eq!(
        rec.names(a.id().0),
        [
            "SIPSessionNewOutgoing",
            "SIPSessionGotProvisionalResponse",
            "SIPSessionGotRingIndication",
            "SIPSessionWillStart",
            "SIPSessionDidStart"
        ]
    );
    assert_eq!(
        rec.names(b.id().0),
        [
            "SIPSessionNewIncoming",
            "SIPSessionWillStart",
            "SIPSessionDidStart"
        ]
    );
    // Each side's stream reached the other's socket.
    let f = factory();
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = || {
        f.made
            .lock()
            .iter()
            .filter(|s| s.log.lock().received.iter().any(|r| r == b"media"))
            .count()
    };
    while got() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(got() >= 2, "media datagrams went to the SDP addresses");

    // Hold and unhold.
    a.hold().unwrap();
    assert!(a.hold().is_err(), "a proposal is already pending");
    rec.wait("SIPSessionDidChangeHoldState", Some(a.id().0));
    rec.wait("SIPSessionDidChangeHoldState", Some(b.id().0));
    assert!(a.on_hold_by_local() && !a.on_hold_by_remote());
    assert!(b.on_hold_by_remote() && b.on_hold());
    a.unhold().unwrap();
    rec.wait_count("SIPSessionDidChangeHoldState", b.id().0, 2);
    assert!(!b.on_hold());

    // Add a stream; Bob is asked and accepts.
    let extra = MediaStreamRegistry::default().create(TYPE).unwrap();
    while a.state() != SessionState::Established {
        std::thread::sleep(Duration::from_millis(5));
    }
    a.add_stream(extra.clone()).unwrap();
    let p = rec.wait("SIPSessionGotProposal", Some(b.id().0));
    assert_eq!(p.data.get_str("originator"), Some("remote"));
    assert_eq!(b.state(), SessionState::ReceivedProposal);
    b.accept_proposal(b.proposed_streams()).unwrap();
    rec.wait("SIPSessionProposalAccepted", Some(a.id().0));
    rec.wait("SIPSessionDidRenegotiateStreams", Some(b.id().0));
    assert_eq!(a.streams().len(), 2);
    assert_eq!(b.streams().len(), 2);

    // Remove it again (no question for Bob).
    while a.state() != SessionState::Established {
        std::thread::sleep(Duration::from_millis(5));
    }
    a.remove_stream(extra).unwrap();
    rec.wait_count("SIPSessionDidRenegotiateStreams", a.id().0, 2);
    rec.wait_count("SIPSessionDidRenegotiateStreams", b.id().0, 2);
    assert_eq!(a.streams().len(), 1);

    while a.state() != SessionState::Established {
        std::thread::sleep(Duration::from_millis(5));
    }
    a.end().unwrap();
    let end_a = rec.wait("SIPSessionDidEnd", Some(a.id().0));
    let end_b = rec.wait("SIPSessionDidEnd", Some(b.id().0));
    assert_eq!(end_a.data.get_str("originator"), Some("local"));
    assert_eq!(end_b.data.get_str("originator"), Some("remote"));
    assert!(rec.find("SIPSessionDidFail", Some(a.id().0)).is_none());
    assert_eq!(a.state(), SessionState::Terminated);
    assert!(a.end().is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(alice.session_manager().unwrap().sessions().is_empty()
        && bob.session_manager().unwrap().sessions().is_empty())
    {
        assert!(Instant::now() < deadline, "sessions leave the manager");
        std::thread::sleep(Duration::from_millis(5));
    }
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
}

#[test]
fn reject_busy_and_cancel() {
    let (rec, tok) = Recorder::start();
    let alice = app();
    let bob = app();
    // Reject with 486.
    let a = call(&alice, &bob);
    let b = incoming_session(&bob, &rec);
    b.reject(486, None).unwrap();
    let f = rec.wait("SIPSessionDidFail", Some(a.id().0));
    assert_eq!(f.data.get_i64("code"), Some(486));
    assert_eq!(f.data.get_str("originator"), Some("remote"));
    rec.wait("SIPSessionDidEnd", Some(a.id().0));
    assert_eq!(
        rec.names(b.id().0),
        [
            "SIPSessionNewIncoming",
            "SIPSessionDidFail",
            "SIPSessionDidEnd"
        ]
    );

    // Busy flag: 486 without a session at Bob.
    bob.session_manager().unwrap().set_busy(true);
    let a2 = call(&alice, &bob);
    let f = rec.wait("SIPSessionDidFail", Some(a2.id().0));
    assert_eq!(f.data.get_i64("code"), Some(486));
    bob.session_manager().unwrap().set_busy(false);

    // Cancel after ringing.
    rec.seen.lock().clear();
    let a3 = call(&alice, &bob);
    let b3 = incoming_session(&bob, &rec);
    b3.send_ring_indication().unwrap();
    rec.wait("SIPSessionGotRingIndication", Some(a3.id().0));
    a3.end().unwrap();
    let f = rec.wait("SIPSessionDidFail", Some(b3.id().0));
    assert_eq!(f.data.get_i64("code"), Some(487));
    assert_eq!(f.data.get_str("originator"), Some("remote"));
    let f = rec.wait("SIPSessionDidFail", Some(a3.id().0));
    assert_eq!(f.data.get_str("originator"), Some("local"));
    rec.wait("SIPSessionDidEnd", Some(a3.id().0));
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
}

#[test]
fn observer_ends_the_session_from_did_start() {
    let (rec, tok) = Recorder::start();
    let alice = app();
    let bob = app();
    // End from inside an observer callback of the session's own DidStart.
    let slot: Arc<Mutex<Option<Session>>> = Arc::default();
    let inside_slot = slot.clone();
    let inside = NotificationCenter::default().add_observer(
        Some("SIPSessionDidStart"),
        None,
        move |n: &Notification| {
            if let Some(s) = inside_slot.lock().as_ref() {
                if s.id() == n.sender.id {
                    s.end().unwrap();
                }
            }
        },
    );
    let account = Account::new("alice@example.com", None).unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    *slot.lock() = Some(a.clone());
    a.connect(
        &uri(&bob, "bob"),
        &[],
        vec![MediaStreamRegistry::default().create(TYPE).unwrap()],
    )
    .unwrap();
    let b = incoming_session(&bob, &rec);
    b.accept(b.proposed_streams()).unwrap();
    let e = rec.wait("SIPSessionDidEnd", Some(a.id().0));
    assert_eq!(e.data.get_str("originator"), Some("local"));
    let e = rec.wait("SIPSessionDidEnd", Some(b.id().0));
    assert_eq!(e.data.get_str("originator"), Some("remote"));
    NotificationCenter::default().remove_observer(inside);
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
}

fn raw_invite(to: SocketAddr, me: SocketAddr, call_id: &str, sdp: &str) -> String {
    format!(
        "INVITE sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id};rport\r\n\
         From: <sip:x@127.0.0.1>;tag=f{call_id}\r\nTo: <sip:bob@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:x@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The final status of the answer to `msg`, skipping 1xx.
fn final_status(sock: &UdpSocket, to: SocketAddr, msg: &str) -> (u16, String) {
    sock.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let line = text.lines().next().unwrap().to_string();
        let code: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        if code >= 200 {
            return (code, line);
        }
    }
}

#[test]
fn offers_we_cannot_take() {
    let bob = app();
    let to = bob.sip_local_address(TransportKind::Udp).unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], to.port()));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let video = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n";
    let (code, _) = final_status(&sock, to, &raw_invite(to, me, "c488", video));
    assert_eq!(code, 488);
    let bad = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n";
    let (code, line) = final_status(&sock, to, &raw_invite(to, me, "c400", bad));
    assert_eq!(code, 400);
    assert!(
        line.contains("SDP line 6") && line.contains("port"),
        "{line}"
    );
    // A BYE for a dialog nobody has.
    let bye = format!(
        "BYE sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye1;rport\r\n\
         From: <sip:x@127.0.0.1>;tag=a\r\nTo: <sip:bob@{to}>;tag=nope\r\nCall-ID: nodialog\r\n\
         CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(final_status(&sock, to, &bye).0, 481);
    assert!(bob.session_manager().unwrap().sessions().is_empty());
    bob.stop();
}
