//! Accounts against Kamailio as registrar (digest, no database) on
//! 127.0.0.1: register with 423 then success, refresh with a short expiry,
//! wrong password and unknown user with growing retry delays, unregister
//! at stop, deletion while registered, and a call between two registered
//! accounts routed by Kamailio's location lookup.

mod common;

use std::time::{Duration, Instant};

use common::accounts::{app, app_with, Log};
use common::kamailio::{kamailio_available, start};
use common::sipp::free_port;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sipsimple::{MediaStreamRegistry, Notification, NotificationCenter, SessionState};
use std::sync::Arc;

/// Account settings registering at Kamailio on `kport` (each test uses
/// its own users: the notification log sees every test's accounts).
fn account(password: &str, kport: u16, expires: u32) -> Value {
    json!({
        "auth": {"password": password},
        "registration": {"expires": expires, "retry_base": 1, "retry_max": 8},
        "sip": {"register_uri": format!("sip:127.0.0.1:{kport}"), "transport_list": ["udp"]},
    })
}

#[test]
fn register_refresh_and_unregister() {
    if !kamailio_available() {
        return;
    }
    let k = start("registrar.cfg", free_port());
    let (log, tok) = Log::start();
    // 5 s is below Kamailio's min_expires (10): 423 first, then 10 s.
    let alice = "alice@127.0.0.1";
    let app = app(json!({ alice: account("alicepass", k.port, 5) }));

    let ok = log.wait("SIPAccountRegistrationDidSucceed", alice, 1, 10);
    assert_eq!(ok[0]["code"], 200);
    assert_eq!(ok[0]["expires"], 10, "{}", ok[0]);
    let contact = ok[0]["contact_uri"].as_str().unwrap().to_string();
    assert!(ok[0]["contact_uri_list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().starts_with(&contact)));
    // Refreshed before it expires (half of 10 s).
    log.wait("SIPAccountRegistrationDidSucceed", alice, 2, 12);
    assert!(log.all("SIPAccountRegistrationDidFail", alice).is_empty());
    let m = app.account_manager().unwrap();
    assert!(m.has_account(alice));
    assert!(m.is_active(alice));
    assert_eq!(m.default_account().unwrap().id(), alice);
    assert_eq!(m.find_account(&contact).unwrap().id(), alice);
    app.stop();
    let end = log.wait("SIPAccountRegistrationDidEnd", alice, 1, 5);
    assert_eq!(end[0]["code"], 200);
    NotificationCenter::default().remove_observer(tok);
}

#[test]
fn wrong_password_and_unknown_user_retry_with_growing_delays() {
    if !kamailio_available() {
        return;
    }
    let k = start("registrar.cfg", free_port());
    let (log, tok) = Log::start();
    let bob = "bob@127.0.0.1";
    let eve = "eve@127.0.0.1";
    let app = app(json!({ bob: account("wrong", k.port, 60), eve: account("x", k.port, 60) }));
    let fails = log.wait("SIPAccountRegistrationDidFail", bob, 3, 20);
    for f in &fails {
        assert_eq!(f["code"], 401, "{f}");
    }
    let d: Vec<f64> = fails.iter().map(|f| f["delay"].as_f64().unwrap()).collect();
    assert!(d[0] > 0.5 && d[1] > d[0] && d[2] > d[1], "{d:?}");
    let f = log.wait("SIPAccountRegistrationDidFail", eve, 1, 10);
    assert_eq!(f[0]["code"], 403);
    assert!(log.all("SIPAccountRegistrationDidSucceed", bob).is_empty());
    // The fix: the right password, saved, registers at once.
    let m = app.account_manager().unwrap();
    let acc = m.get_account(bob).unwrap();
    acc.set("auth.password", json!("bobpass")).unwrap();
    assert_eq!(acc.save().unwrap(), vec!["auth.password"]);
    log.wait("SIPAccountRegistrationDidSucceed", bob, 1, 10);
    let changed = log.all("CFGSettingsObjectDidChange", "");
    assert!(changed
        .iter()
        .any(|c| c["modified"] == json!(["auth.password"])));
    // Deleting a registered account unregisters it and removes it.
    m.delete_account(bob).unwrap();
    let end = log.wait("SIPAccountRegistrationDidEnd", bob, 1, 5);
    assert_eq!(end[0]["code"], 200);
    assert!(!m.has_account(bob));
    log.wait("SIPAccountManagerDidRemoveAccount", bob, 1, 5);
    app.stop();
    NotificationCenter::default().remove_observer(tok);
}

#[test]
fn registered_accounts_call_each_other_through_kamailio() {
    if !kamailio_available() {
        return;
    }
    let k = start("registrar.cfg", free_port());
    let (log, tok) = Log::start();
    let carol = "carol@127.0.0.1";
    let dave = "dave@127.0.0.1";
    // Kamailio challenges a known caller's INVITE (407): seen in the trace.
    let wire: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
    let w = wire.clone();
    let trace = NotificationCenter::default().add_observer(
        Some("SIPEngineSIPTrace"),
        None,
        move |n: &Notification| {
            let d: Value = serde_json::from_str(&n.data.to_json()).unwrap_or(Value::Null);
            let text = d["data"].as_str().unwrap_or("").to_string();
            if text.contains("sip:carol@127.0.0.1") {
                w.lock().push((d["received"] == true, text));
            }
        },
    );
    let a = app_with(
        json!({"logs.trace_sip": true}),
        json!({ carol: account("carolpass", k.port, 60) }),
    );
    let b = app(json!({ dave: account("davepass", k.port, 60) }));
    log.wait("SIPAccountRegistrationDidSucceed", carol, 1, 10);
    log.wait("SIPAccountRegistrationDidSucceed", dave, 1, 10);
    let b2 = b.clone();
    let answer = NotificationCenter::default().add_observer(
        Some("SIPSessionNewIncoming"),
        None,
        move |n: &Notification| {
            if let Some(s) = b2.session_manager().unwrap().session(n.sender.id) {
                s.accept(s.proposed_streams()).unwrap();
            }
        },
    );
    let acc = a.account_manager().unwrap().get_account(carol).unwrap();
    let s = a.session_manager().unwrap().new_session(&acc);
    s.connect(
        "sip:dave@127.0.0.1",
        &[format!("sip:127.0.0.1:{}", k.port)],
        vec![MediaStreamRegistry::default().create("audio").unwrap()],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.state() != SessionState::Established {
        assert!(
            Instant::now() < deadline,
            "call through kamailio: {}",
            s.state()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    {
        let seen = wire.lock();
        let challenged = seen
            .iter()
            .any(|(rx, t)| *rx && t.starts_with("SIP/2.0 407") && t.contains("INVITE"));
        let answered = seen.iter().any(|(rx, t)| {
            !*rx && t.starts_with("INVITE ") && t.contains("Proxy-Authorization: Digest")
        });
        assert!(challenged && answered, "no 407 answered in the trace");
    }
    NotificationCenter::default().remove_observer(trace);
    // Bob's session is his account's, and Kamailio stays in the path.
    let bs = b.session_manager().unwrap().sessions();
    assert_eq!(bs.len(), 1);
    assert_eq!(bs[0].account().id(), dave);
    s.end().unwrap();
    while s.state() != SessionState::Terminated {
        std::thread::sleep(Duration::from_millis(20));
    }
    NotificationCenter::default().remove_observer(answer);
    NotificationCenter::default().remove_observer(tok);
    a.stop();
    b.stop();
}
