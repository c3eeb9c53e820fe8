//! Pager-mode MESSAGE (RFC 3428) between applications on 127.0.0.1:
//! text/plain and CPIM, Unicode, what the receiver refuses, a peer that
//! is not there, and MESSAGE routed by Kamailio to a registered user
//! (Kamailio challenges a known sender with 407; the answer goes through).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kamailio::{kamailio_available, start};
use common::sipp::free_port;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{Account, NotificationCenter, ObserverToken, SIPApplication, Storage};

/// Every message notification as (name, data).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Value)>>>);

impl Seen {
    fn start() -> (Seen, ObserverToken) {
        let s = Seen::default();
        let l = s.clone();
        let t = NotificationCenter::default().add_observer(None, None, move |n| {
            if n.name.starts_with("SIPMessage")
                || n.name == "SIPEngineGotMessage"
                || n.name == "SIPAccountRegistrationDidSucceed"
            {
                let d: Value = serde_json::from_str(&n.data.to_json()).unwrap();
                l.0.lock().push((n.name.clone(), d));
            }
        });
        (s, t)
    }

    /// The first notification `name` whose data has `key` equal to `value`.
    fn wait(&self, name: &str, key: &str, value: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .0
                .lock()
                .iter()
                .find(|(n, d)| n == name && d[key].as_str().is_some_and(|v| v.contains(value)))
                .map(|(_, d)| d.clone());
            if let Some(d) = found {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no {name} with {key} ~ {value:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

use common::apps::start_app as app;

fn plain_app() -> SIPApplication {
    app(json!({"sip": {"transport_list": ["udp", "tcp"]}}))
}

#[test]
fn messages_p2p_plain_and_cpim_with_outcomes() {
    let (seen, tok) = Seen::start();
    let alice = plain_app();
    let bob = plain_app();
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    let to = format!("sip:bob@127.0.0.1:{port}");
    let me = Account::new("alice@example.com", Some("Alice")).unwrap();
    let m = alice.session_manager().unwrap();

    let id = m
        .send_message(&me, &to, "hello bob ✓".as_bytes(), "text/plain", false)
        .unwrap();
    let ok = seen.wait("SIPMessageDidSucceed", "message_id", &id);
    assert_eq!(ok["code"], 200);
    let got = seen.wait("SIPEngineGotMessage", "content", "hello bob");
    assert_eq!(got["content"], "hello bob ✓");
    assert_eq!(got["content_type"], "text/plain");
    assert!(got["from"].as_str().unwrap().contains("alice@example.com"));

    let id = m
        .send_message(&me, &to, b"wrapped", "text/plain", true)
        .unwrap();
    seen.wait("SIPMessageDidSucceed", "message_id", &id);
    let got = seen.wait("SIPEngineGotMessage", "content", "wrapped");
    assert_eq!(got["content_type"], "text/plain");
    assert!(got["cpim_headers"]["From"][0]
        .as_str()
        .unwrap()
        .contains("\"Alice\" <sip:alice@example.com>"));
    assert!(got["cpim_headers"]["DateTime"][0]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    // What the receiver cannot take is refused with the reason.
    let id = m
        .send_message(&me, &to, b"\x89PNG", "image/png", false)
        .unwrap();
    let f = seen.wait("SIPMessageDidFail", "message_id", &id);
    assert_eq!(f["code"], 415);
    let id = m
        .send_message(&me, &to, b"\xff\xfe", "text/plain", false)
        .unwrap();
    assert_eq!(
        seen.wait("SIPMessageDidFail", "message_id", &id)["code"],
        400
    );

    // Nobody on the other end (TCP: refused at once) is a failure too.
    let dead = free_port();
    let id = m
        .send_message(
            &me,
            &format!("sip:nobody@127.0.0.1:{dead};transport=tcp"),
            b"anyone?",
            "text/plain",
            false,
        )
        .unwrap();
    let f = seen.wait("SIPMessageDidFail", "message_id", &id);
    assert_eq!(f["code"], 503, "{f}");

    // Bad calls are errors now, not notifications later.
    assert!(m
        .send_message(&me, "not a uri", b"x", "text/plain", false)
        .is_err());
    assert!(m.send_message(&me, &to, b"x", "plain", false).is_err());
    assert!(m
        .send_message(&me, &to, &vec![b'a'; 70_000], "text/plain", false)
        .is_err());
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
}

/// Alice and Bob register at Kamailio; Alice's MESSAGE to Bob's address
/// of record goes through it (outbound proxy) and reaches Bob's contact.
#[test]
fn message_routed_by_kamailio_to_a_registered_user() {
    if !kamailio_available() {
        return;
    }
    let k = start("registrar.cfg", free_port());
    let (seen, tok) = Seen::start();
    let acc = |pw: &str| {
        json!({
            "auth": {"password": pw},
            "registration": {"expires": 60},
            "sip": {"register_uri": format!("sip:127.0.0.1:{}", k.port),
                    "outbound_proxy": format!("sip:127.0.0.1:{}", k.port),
                    "transport_list": ["udp"]},
        })
    };
    let alice = app(
        json!({"sip": {"transport_list": ["udp"]}, "accounts": {"alice@127.0.0.1": acc("alicepass")}}),
    );
    let bob = app(
        json!({"sip": {"transport_list": ["udp"]}, "accounts": {"bob@127.0.0.1": acc("bobpass")}}),
    );
    for id in ["alice@127.0.0.1", "bob@127.0.0.1"] {
        seen.wait("SIPAccountRegistrationDidSucceed", "registration", id);
    }
    let me = alice
        .account_manager()
        .unwrap()
        .get_account("alice@127.0.0.1")
        .unwrap();
    let id = alice
        .session_manager()
        .unwrap()
        .send_message(
            &me,
            "sip:bob@127.0.0.1",
            b"via the registrar",
            "text/plain",
            true,
        )
        .unwrap();
    seen.wait("SIPMessageDidSucceed", "message_id", &id);
    let got = seen.wait("SIPEngineGotMessage", "content", "via the registrar");
    assert_eq!(got["account"], "bob@127.0.0.1");
    assert!(got["from"].as_str().unwrap().contains("alice@127.0.0.1"));
    // An unregistered user: Kamailio's 404 comes back as a failure.
    let id = alice
        .session_manager()
        .unwrap()
        .send_message(&me, "sip:carol@127.0.0.1", b"hello?", "text/plain", false)
        .unwrap();
    assert_eq!(
        seen.wait("SIPMessageDidFail", "message_id", &id)["code"],
        404
    );
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
}

/// The sip-message tool: a listener registered at Kamailio gets what a
/// second sip-message sends to its address of record.
#[test]
fn sip_message_tool_delivers_through_kamailio_to_a_listener() {
    use sipsimple::FileStorage;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    if !kamailio_available() {
        return;
    }
    let k = start("registrar.cfg", free_port());
    let config = |user: &str, pw: &str| {
        let dir = tempfile::tempdir().unwrap();
        FileStorage::new(dir.path())
            .save(
                json!({
                    "sip": {"transport_list": ["udp"], "udp_port": 0},
                    "accounts": {format!("{user}@127.0.0.1"): {
                        "auth": {"password": pw},
                        "sip": {"register_uri": format!("sip:127.0.0.1:{}", k.port),
                                "outbound_proxy": format!("sip:127.0.0.1:{}", k.port)},
                    }},
                })
                .as_object()
                .unwrap(),
            )
            .unwrap();
        dir
    };
    let (a, b) = (config("alice", "alicepass"), config("bob", "bobpass"));
    let tool = env!("CARGO_BIN_EXE_sip-message");
    let mut listener = Command::new(tool)
        .args([
            "--config-dir",
            b.path().to_str().unwrap(),
            "--max-messages",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = listener.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("[listener] {line}");
            let _ = tx.send(line);
        }
    });
    let wait_line = |prefix: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the listener printed no {prefix:?} line"));
            if line.starts_with(prefix) || line.contains(prefix) {
                return line;
            }
        }
    };
    wait_line("registered bob@127.0.0.1");
    let sent = Command::new(tool)
        .args([
            "--config-dir",
            a.path().to_str().unwrap(),
            "--cpim",
            "sip:bob@127.0.0.1",
            "hello from the other tool ✓",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(stdout.contains("delivered (200"), "{stdout}");
    let line = wait_line("hello from the other tool");
    assert!(
        line.contains("alice@127.0.0.1") && line.ends_with("hello from the other tool ✓"),
        "{line}"
    );
    // --max-messages 1: the listener unregisters and exits by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = listener.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener exits after its message"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Sending to a user nobody registered fails with exit status 1.
    let missed = Command::new(tool)
        .args([
            "--config-dir",
            a.path().to_str().unwrap(),
            "sip:carol@127.0.0.1",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(missed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missed.stdout).contains("not delivered (404"));
    let usage = Command::new(tool).args(["only-a-uri"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
