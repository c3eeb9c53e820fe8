//! Registration against SIPp registrars on 127.0.0.1 (scenarios in
//! tests/sipp/): failover from a registrar answering 503 to the next route
//! of an RFC 3263 lookup (served by a DNS responder the test runs), 423
//! then digest then a grant shorter than asked (refreshed to match), 503
//! with growing backoff then Retry-After, and the faults without any
//! registrar: nobody listening, nobody answering, a domain DNS does not
//! know.

mod common;

use std::time::Duration;

use common::accounts::{app_with, Log};
use common::dns::{a, dns_server, srv};
use common::sipp::{free_port, run_sipp, sipp_available, Sipp};
use serde_json::{json, Value};
use sipsimple::NotificationCenter;

fn scenario(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// SIPp as a UAS on a free port running one call of `name`.
fn registrar(name: &str) -> (Sipp, u16) {
    let port = free_port();
    let s = run_sipp(port, &["-t", "u1", "-m", "1"], Some(&scenario(name)));
    std::thread::sleep(Duration::from_millis(300));
    (s, port)
}

fn account(extra: Value) -> Value {
    let mut a = json!({
        "auth": {"password": "s3cret"},
        "registration": {"retry_base": 1, "retry_max": 8},
        "sip": {"transport_list": ["udp"]},
    });
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

fn sipp_passed(s: Sipp, what: &str) {
    let (code, errors) = s.wait();
    assert_eq!(code, 0, "{what}: SIPp failed: {errors}");
}

#[test]
fn failover_from_503_to_the_next_srv_target() {
    if !sipp_available() {
        return;
    }
    let (busy, busy_port) = registrar("registrar_busy.xml");
    let (good, good_port) = registrar("registrar_digest.xml");
    let rt = common::runtime();
    let ns = rt.block_on(dns_server(vec![
        srv(
            "_sip._udp.failover.test",
            10,
            0,
            busy_port,
            "busy.failover.test",
        ),
        srv(
            "_sip._udp.failover.test",
            20,
            0,
            good_port,
            "good.failover.test",
        ),
        a("busy.failover.test"),
        a("good.failover.test"),
    ]));
    let (log, tok) = Log::start();
    let alice = "alice@failover.test";
    let app = app_with(
        json!({"dns.nameservers": [ns.to_string()]}),
        json!({ alice: account(json!({})) }),
    );
    let ok = log.wait("SIPAccountRegistrationDidSucceed", alice, 1, 15);
    let fails = log.all("SIPAccountRegistrationDidFail", alice);
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert_eq!(fails[0]["code"], 503);
    assert_eq!(
        fails[0]["next_route"],
        json!(format!("udp:127.0.0.1:{good_port}"))
    );
    assert_eq!(fails[0]["delay"], 0.0);
    assert_eq!(ok[0]["code"], 200);
    assert_eq!(ok[0]["expires"], 600);
    app.stop();
    let end = log.wait("SIPAccountRegistrationDidEnd", alice, 1, 5);
    assert_eq!(end[0]["code"], 200);
    NotificationCenter::default().remove_observer(tok);
    sipp_passed(busy, "the busy registrar");
    sipp_passed(good, "the registrar that answers");
}

#[test]
fn interval_too_brief_then_a_short_grant_is_refreshed_in_time() {
    if !sipp_available() {
        return;
    }
    let (sipp, port) = registrar("registrar_min_expires.xml");
    let (log, tok) = Log::start();
    let alice = "alice@127.0.0.2";
    let app = app_with(
        json!({}),
        json!({ alice: account(json!({
            "registration": {"expires": 2, "retry_base": 1, "retry_max": 8},
            "sip": {"register_uri": format!("sip:127.0.0.1:{port}"), "transport_list": ["udp"]},
        })) }),
    );
    let ok = log.wait("SIPAccountRegistrationDidSucceed", alice, 1, 10);
    assert_eq!(ok[0]["expires"], 2, "{}", ok[0]);
    let first = std::time::Instant::now();
    // Granted 2 s: refreshed after about 1 s, again and again.
    log.wait("SIPAccountRegistrationDidSucceed", alice, 3, 6);
    let took = first.elapsed();
    // Each refresh came before the 2 s grant ran out (the 6 s asked for
    // would have put the first one 3 s out).
    assert!(
        took < Duration::from_secs(4),
        "two refreshes of a 2 s grant took {took:?}: the registration lapsed"
    );
    assert!(log.all("SIPAccountRegistrationDidFail", alice).is_empty());
    app.stop();
    let end = log.wait("SIPAccountRegistrationDidEnd", alice, 1, 5);
    assert_eq!(end[0]["code"], 200);
    NotificationCenter::default().remove_observer(tok);
    sipp_passed(sipp, "423, digest and refreshes");
}

#[test]
fn overloaded_registrar_backoff_grows_then_retry_after_is_obeyed() {
    if !sipp_available() {
        return;
    }
    let (sipp, port) = registrar("registrar_overloaded.xml");
    let (log, tok) = Log::start();
    let alice = "alice@127.0.0.3";
    let app = app_with(
        json!({}),
        json!({ alice: account(json!({
            "sip": {"register_uri": format!("sip:127.0.0.1:{port}"), "transport_list": ["udp"]},
        })) }),
    );
    let ok = log.wait("SIPAccountRegistrationDidSucceed", alice, 1, 20);
    assert_eq!(ok[0]["code"], 200);
    let fails = log.all("SIPAccountRegistrationDidFail", alice);
    assert_eq!(fails.len(), 3, "{fails:?}");
    for f in &fails {
        assert_eq!(f["code"], 503, "{f}");
        assert_eq!(f["next_route"], Value::Null, "{f}");
    }
    let d: Vec<f64> = fails.iter().map(|f| f["delay"].as_f64().unwrap()).collect();
    // 1 s doubled per failure, 80-100 % of it; then the server's word.
    assert!((1.6..=2.0).contains(&d[0]), "{d:?}");
    assert!((3.2..=4.0).contains(&d[1]), "{d:?}");
    assert_eq!(d[2], 2.0, "{d:?}");
    app.stop();
    log.wait("SIPAccountRegistrationDidEnd", alice, 1, 5);
    NotificationCenter::default().remove_observer(tok);
    sipp_passed(sipp, "503, 503, 503 with Retry-After, 200");
}

#[test]
fn unreachable_registrar_fails_with_a_reason_and_retries() {
    // Nobody listens on the TCP port: refused at once.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A UDP socket that never answers: the transaction times out
    // (64 x T1, with T1 at 20 ms here).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (log, tok) = Log::start();
    let tcp = "refused@127.0.0.4";
    let udp = "unanswered@127.0.0.4";
    let app = app_with(
        json!({"sip.timer_t1": 20}),
        json!({
            tcp: account(json!({"sip": {
                "register_uri": format!("sip:127.0.0.1:{dead};transport=tcp"),
                "transport_list": ["tcp"]}})),
            udp: account(json!({"sip": {
                "register_uri": format!("sip:127.0.0.1:{silent_port}"),
                "transport_list": ["udp"]}})),
        }),
    );
    for who in [tcp, udp] {
        let fails = log.wait("SIPAccountRegistrationDidFail", who, 2, 15);
        for f in &fails {
            let reason = f["reason"].as_str().unwrap();
            assert!(!reason.is_empty(), "{f}");
            assert_eq!(f["next_route"], Value::Null, "{f}");
        }
        let d: Vec<f64> = fails.iter().map(|f| f["delay"].as_f64().unwrap()).collect();
        assert!(d[0] >= 1.6 && d[1] > d[0], "{who}: {d:?}");
        assert!(log.all("SIPAccountRegistrationDidSucceed", who).is_empty());
    }
    let udp_fail = &log.all("SIPAccountRegistrationDidFail", udp)[0];
    assert_eq!(udp_fail["code"], 408, "{udp_fail}");
    app.stop();
    drop(silent);
    NotificationCenter::default().remove_observer(tok);
}

#[test]
fn unknown_domain_fails_with_the_lookup_named_and_retries() {
    let rt = common::runtime();
    // A DNS server that knows nothing: NXDOMAIN for every name.
    let ns = rt.block_on(dns_server(Vec::new()));
    let (log, tok) = Log::start();
    let who = "carol@nowhere.test";
    let app = app_with(
        json!({"dns.nameservers": [ns.to_string()]}),
        json!({ who: account(json!({})) }),
    );
    let fails = log.wait("SIPAccountRegistrationDidFail", who, 2, 15);
    let reason = fails[0]["reason"].as_str().unwrap();
    assert!(reason.contains("nowhere.test"), "{}", fails[0]);
    let d: Vec<f64> = fails.iter().map(|f| f["delay"].as_f64().unwrap()).collect();
    assert!(d[1] > d[0], "{d:?}");
    app.stop();
    NotificationCenter::default().remove_observer(tok);
}

#[test]
fn deleting_an_account_while_it_registers_ends_it_cleanly() {
    // A registrar that takes the REGISTER and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = silent.local_addr().unwrap().port();
    let (log, tok) = Log::start();
    let who = "dora@127.0.0.5";
    let app = app_with(
        json!({}),
        json!({ who: account(json!({"sip": {
            "register_uri": format!("sip:127.0.0.1:{port}"),
            "transport_list": ["udp"]}})) }),
    );
    let mut buf = [0u8; 4096];
    let (n, _) = silent.recv_from(&mut buf).expect("the REGISTER arrives");
    assert!(buf[..n].starts_with(b"REGISTER "));
    let m = app.account_manager().unwrap();
    m.delete_account(who).unwrap();
    log.wait("SIPAccountManagerDidRemoveAccount", who, 1, 5);
    assert!(!m.has_account(who));
    assert!(!m.is_active(who));
    // Never registered: nothing to unregister, and nothing more is said.
    std::thread::sleep(Duration::from_millis(600));
    for name in [
        "SIPAccountRegistrationDidSucceed",
        "SIPAccountRegistrationDidFail",
        "SIPAccountRegistrationDidEnd",
    ] {
        assert!(log.all(name, who).is_empty(), "{name}");
    }
    app.stop();
    NotificationCenter::default().remove_observer(tok);
}
