//! Sessions against SIPp on 127.0.0.1: SIPp's built-in UAC calling us
//! (20 calls), our sessions calling SIPp's built-in UAS, and scenarios in
//! tests/sipp/: a re-INVITE to hold (our answer must be recvonly), CANCEL
//! after 180 (200, 487, ACK), and 491 glare with the RFC 3261 14.1 retry.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sipp::{free_port, run_sipp, sipp_available};
use parking_lot::Mutex;
use serde_json::json;
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    Account, MediaStreamRegistry, MemoryStorage, Notification, NotificationCenter, ObserverToken,
    SIPApplication, Session, SessionState, Storage,
};

fn app() -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({"sip": {"transport_list": ["udp", "tcp"]}, "audio": {"no_audio_timeout": 1}})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    let app = SIPApplication::new();
    app.start(Arc::new(s)).unwrap();
    app
}

fn scenario(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Counts of this application's session notifications by name.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<Vec<Seen>>>);

/// (name, sender id, data "code").
type Seen = (String, u64, Option<i64>);

impl Counts {
    fn count(&self, name: &str) -> usize {
        self.0.lock().iter().filter(|(n, _, _)| n == name).count()
    }
    fn codes(&self, name: &str) -> Vec<i64> {
        self.0
            .lock()
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, _, c)| *c)
            .collect()
    }
}

/// Record `app`'s session notifications; with `answer`, accept incoming
/// sessions with every proposed stream, else ring only.
fn observe(app: &SIPApplication, answer: bool) -> (Counts, ObserverToken) {
    let counts = Counts::default();
    let c = counts.clone();
    let app = app.clone();
    let tok = NotificationCenter::default().add_observer(None, None, move |n: &Notification| {
        let Ok(m) = app.session_manager() else { return };
        // Only this application's sessions (ended ones are no longer in
        // the manager; their ids were seen before).
        let mine = m.session(n.sender.id).is_some()
            || c.0.lock().iter().any(|(_, id, _)| *id == n.sender.id.0);
        if !n.name.starts_with("SIPSession") || !mine {
            return;
        }
        c.0.lock()
            .push((n.name.clone(), n.sender.id.0, n.data.get_i64("code")));
        if n.name == "SIPSessionNewIncoming" {
            if let Some(s) = m.session(n.sender.id) {
                if answer {
                    s.accept(s.proposed_streams()).unwrap();
                } else {
                    s.send_ring_indication().unwrap();
                }
            }
        }
    });
    (counts, tok)
}

fn wait(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn target(app: &SIPApplication) -> String {
    let port = app.sip_local_address(TransportKind::Udp).unwrap().port();
    format!("127.0.0.1:{port}")
}

#[test]
fn sipp_uac_calls_our_sessions() {
    if !sipp_available() {
        return;
    }
    let us = app();
    let (counts, tok) = observe(&us, true);
    let sipp = run_sipp(
        free_port(),
        &[
            "-sn",
            "uac",
            "-m",
            "20",
            "-r",
            "20",
            "-d",
            "300",
            "-t",
            "u1",
            &target(&us),
        ],
        None,
    );
    let (code, errors) = sipp.wait();
    assert_eq!(code, 0, "SIPp uac: {errors}");
    wait("20 sessions ended", 10, || {
        counts.count("SIPSessionDidEnd") == 20
    });
    assert_eq!(counts.count("SIPSessionDidStart"), 20);
    assert_eq!(counts.count("SIPSessionDidFail"), 0);
    NotificationCenter::default().remove_observer(tok);
    us.stop();
}

fn call(app: &SIPApplication, to: &str) -> Session {
    let account = Account::new("alice@example.com", None).unwrap();
    let s = app.session_manager().unwrap().new_session(&account);
    s.connect(
        to,
        &[],
        vec![MediaStreamRegistry::default().create("audio").unwrap()],
    )
    .unwrap();
    s
}

#[test]
fn our_sessions_call_sipp_uas() {
    if !sipp_available() {
        return;
    }
    let us = app();
    let port = free_port();
    let sipp = run_sipp(port, &["-sn", "uas", "-m", "3", "-t", "u1"], None);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let s = call(&us, &format!("sip:service@127.0.0.1:{port}"));
        wait("established", 10, || s.state() == SessionState::Established);
        s.end().unwrap();
        wait("terminated", 10, || s.state() == SessionState::Terminated);
    }
    let (code, errors) = sipp.wait();
    assert_eq!(code, 0, "SIPp uas: {errors}");
    us.stop();
}

/// SIPp's built-in UAS answers with SDP but sends no RTP: after
/// `audio.no_audio_timeout` (1 s here) the session says so, once.
#[test]
fn silence_from_the_peer_gives_got_no_audio() {
    if !sipp_available() {
        return;
    }
    let us = app();
    let port = free_port();
    let sipp = run_sipp(port, &["-sn", "uas", "-m", "1", "-t", "u1"], None);
    std::thread::sleep(Duration::from_millis(500));
    let (counts, tok) = observe(&us, false);
    let s = call(&us, &format!("sip:service@127.0.0.1:{port}"));
    wait("established", 10, || s.state() == SessionState::Established);
    wait("SIPSessionGotNoAudio", 5, || {
        counts.count("SIPSessionGotNoAudio") == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(counts.count("SIPSessionGotNoAudio"), 1, "said once");
    s.end().unwrap();
    wait("terminated", 10, || s.state() == SessionState::Terminated);
    let (code, errors) = sipp.wait();
    assert_eq!(code, 0, "SIPp uas: {errors}");
    NotificationCenter::default().remove_observer(tok);
    us.stop();
}

#[test]
fn sipp_holds_us_with_a_reinvite() {
    if !sipp_available() {
        return;
    }
    let us = app();
    let (counts, tok) = observe(&us, true);
    let sipp = run_sipp(
        free_port(),
        &["-m", "1", "-t", "u1", &target(&us)],
        Some(&scenario("reinvite_uac.xml")),
    );
    let (code, errors) = sipp.wait();
    assert_eq!(code, 0, "re-INVITE scenario: {errors}");
    wait("ended", 10, || counts.count("SIPSessionDidEnd") == 1);
    assert_eq!(counts.count("SIPSessionDidChangeHoldState"), 1);
    NotificationCenter::default().remove_observer(tok);
    us.stop();
}

#[test]
fn sipp_cancels_after_ringing() {
    if !sipp_available() {
        return;
    }
    let us = app();
    let (counts, tok) = observe(&us, false);
    let sipp = run_sipp(
        free_port(),
        &["-m", "1", "-t", "u1", &target(&us)],
        Some(&scenario("cancel_uac.xml")),
    );
    let (code, errors) = sipp.wait();
    assert_eq!(code, 0, "CANCEL scenario: {errors}");
    wait("ended", 10, || counts.count("SIPSessionDidEnd") == 1);
    assert_eq!(counts.codes("SIPSessionDidFail"), vec![487]);
    NotificationCenter::default().remove_observer(tok);
    us.stop();
}

#[test]
fn glare_on_reinvite_gets_491_and_our_retry() {
    if !sipp_available() {
        return;
    }
    let us = app();
    let port = free_port();
    let sipp = run_sipp(
        port,
        &["-m", "1", "-t", "u1"],
        Some(&scenario("glare_uas.xml")),
    );
    std::thread::sleep(Duration::from_millis(500));
    let s = call(&us, &format!("sip:service@127.0.0.1:{port}"));
    wait("established", 10, || s.state() == SessionState::Established);
    let t0 = Instant::now();
    s.hold().unwrap();
    // SIPp sends its own re-INVITE (we answer 491), answers ours 491, and
    // takes our retry 2.1-4 s later.
    wait("held", 15, || {
        s.on_hold_by_local() && s.state() == SessionState::Established
    });
    let took = t0.elapsed();
    let (code, errors) = sipp.wait();
    assert_eq!(code, 0, "glare scenario: {errors}");
    assert!(
        took >= Duration::from_millis(2000),
        "the retry waited {took:?}"
    );
    wait("ended by SIPp's BYE", 10, || {
        s.state() == SessionState::Terminated
    });
    us.stop();
}
