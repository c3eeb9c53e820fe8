//! The registration core against scripted registrar answers, in virtual
//! time.

use super::*;
use crate::proto::sip::screen::build_response;

fn cfg() -> RegistrationConfig {
    RegistrationConfig {
        aor: Uri::parse("sip:alice@example.com").unwrap(),
        registrar: Uri::parse("sip:example.com").unwrap(),
        display_name: Some("Alice".into()),
        user_agent: "test".into(),
        expires: 600,
        credentials: Some(Credentials {
            realm: None,
            username: "alice".into(),
            password: "secret".into(),
        }),
        instance_id: Some("urn:uuid:00000000-0000-4000-8000-000000000001".into()),
        reg_id: Some(1),
        route: None,
        retry_base: Duration::from_secs(10),
        retry_max: Duration::from_secs(600),
        seed: 3,
    }
}

/// Take the one REGISTER the core wants sent.
fn sent(r: &mut Registration) -> (ReqId, SipMessage, RouteIndex) {
    let mut out = None;
    while let Some(a) = r.poll_action() {
        if let RegistrationAction::Send { id, request, route } = a {
            assert!(out.is_none(), "one REGISTER at a time");
            out = Some((id, request, route));
        }
    }
    out.expect("a REGISTER was sent")
}

fn events(r: &mut Registration) -> Vec<RegistrationEvent> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn routes(n: usize) -> Vec<LocalAddress> {
    (0..n)
        .map(|_| LocalAddress {
            via: "SIP/2.0/UDP 192.0.2.1:5060".into(),
            contact: "sip:abcdefgh@192.0.2.1:5060".into(),
        })
        .collect()
}

fn challenge(req: &SipMessage, nonce: &str) -> SipMessage {
    let mut resp = build_response(req, 401, "Unauthorized", Some("reg")).unwrap();
    resp.push_header(
        "WWW-Authenticate",
        &format!("Digest realm=\"example.com\", nonce=\"{nonce}\", qop=\"auth\""),
    )
    .unwrap();
    resp
}

fn ok(req: &SipMessage, contact_expires: Option<u32>) -> SipMessage {
    let mut resp = build_response(req, 200, "OK", Some("reg")).unwrap();
    let c = match contact_expires {
        Some(e) => format!(
            "<sip:abcdefgh@192.0.2.1:5060>;expires={e}, <sip:other@198.51.100.7>;expires=99"
        ),
        None => "<sip:other@198.51.100.7>;expires=99".into(),
    };
    resp.push_header("Contact", &c).unwrap();
    resp
}

fn registered(r: &mut Registration, now: Instant) {
    r.start(now);
    assert!(matches!(r.poll_action(), Some(RegistrationAction::Lookup)));
    r.set_routes(now, routes(1));
    let (id, req, _) = sent(r);
    r.handle_response(now, id, Outcome::Response(challenge(&req, "n1")));
    let (id, req, _) = sent(r);
    r.handle_response(now, id, Outcome::Response(ok(&req, Some(600))));
}

#[test]
fn challenge_then_success_then_refresh() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    assert!(matches!(r.poll_action(), Some(RegistrationAction::Lookup)));
    r.set_routes(now, routes(1));
    let (id, req, route) = sent(&mut r);
    assert_eq!(route, 0);
    assert_eq!(req.request_uri(), Some("sip:example.com"));
    let contact = req.header(HeaderName::Contact).unwrap();
    assert!(contact.contains("+sip.instance=\"<urn:uuid:"), "{contact}");
    assert!(contact.contains("reg-id=1"));
    assert_eq!(req.header(HeaderName::Expires), Some("600"));
    assert!(req.header(HeaderName::Authorization).is_none());
    r.handle_response(now, id, Outcome::Response(challenge(&req, "n1")));
    let (id, req2, _) = sent(&mut r);
    assert!(req2
        .header(HeaderName::Authorization)
        .unwrap()
        .contains("username=\"alice\""));
    assert_eq!(req2.cseq().unwrap().0, req.cseq().unwrap().0 + 1);
    assert_eq!(req2.call_id(), req.call_id());
    r.handle_response(now, id, Outcome::Response(ok(&req2, Some(600))));
    let ev = events(&mut r);
    match &ev[..] {
        [RegistrationEvent::Succeeded {
            code: 200,
            expires: 600,
            contacts,
            ..
        }] => {
            assert_eq!(contacts.len(), 2)
        }
        other => panic!("{other:?}"),
    }
    assert!(r.is_registered());
    // Refresh a minute before expiry, authorized at once (nc counts on).
    assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(540)));
    r.handle_timeout(now + Duration::from_secs(540));
    let (_, req3, _) = sent(&mut r);
    let auth = req3.header(HeaderName::Authorization).unwrap();
    assert!(auth.contains("nc=00000002"), "{auth}");
}

#[test]
fn shorter_expiry_granted_is_refreshed_sooner() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(1));
    let (id, req, _) = sent(&mut r);
    r.handle_response(now, id, Outcome::Response(ok(&req, Some(60))));
    assert!(matches!(
        events(&mut r)[..],
        [RegistrationEvent::Succeeded { expires: 60, .. }]
    ));
    assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(30)));
    // No contact of ours listed: the Expires header counts.
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(1));
    let (id, req, _) = sent(&mut r);
    let mut resp = ok(&req, None);
    resp.push_header("Expires", "120").unwrap();
    r.handle_response(now, id, Outcome::Response(resp));
    assert!(matches!(
        events(&mut r)[..],
        [RegistrationEvent::Succeeded { expires: 120, .. }]
    ));
}

#[test]
fn interval_too_brief_retries_with_min_expires() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(1));
    let (id, req, _) = sent(&mut r);
    let mut resp = build_response(&req, 423, "Interval Too Brief", Some("x")).unwrap();
    resp.push_header("Min-Expires", "1200").unwrap();
    r.handle_response(now, id, Outcome::Response(resp));
    let (_, req2, _) = sent(&mut r);
    assert_eq!(req2.header(HeaderName::Expires), Some("1200"));
    assert!(events(&mut r).is_empty());
}

#[test]
fn wrong_password_fails_with_a_growing_delay() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(1));
    let mut t = now;
    let mut delays = Vec::new();
    let mut sends = 0;
    for round in 0..5 {
        // Each round: the registrar challenges every answer with a new
        // nonce, as one does when the password is wrong.
        loop {
            let (id, req, _) = sent(&mut r);
            sends += 1;
            r.handle_response(
                t,
                id,
                Outcome::Response(challenge(&req, &format!("n{sends}"))),
            );
            let ev = events(&mut r);
            if let Some(RegistrationEvent::Failed {
                code,
                delay,
                next_route,
                ..
            }) = ev.first()
            {
                assert_eq!(*code, 401);
                assert_eq!(*next_route, None);
                delays.push(*delay);
                break;
            }
            assert!(sends < 100, "a tight loop");
        }
        t = r.poll_timeout().unwrap();
        r.handle_timeout(t);
        assert!(
            matches!(r.poll_action(), Some(RegistrationAction::Lookup)),
            "round {round}"
        );
        r.set_routes(t, routes(1));
    }
    // Three REGISTERs per round at most (first, and two answers).
    assert!(sends <= 15, "{sends} REGISTERs");
    for w in delays.windows(2) {
        assert!(w[1] > w[0] * 1.4, "{delays:?}");
    }
    assert!(delays[0] >= 8.0);
}

#[test]
fn failover_along_routes_then_lookup_again() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(3));
    let (id, _, route) = sent(&mut r);
    assert_eq!(route, 0);
    r.handle_response(
        now,
        id,
        Outcome::Failed {
            code: 408,
            reason: "Request Timeout".into(),
        },
    );
    assert!(matches!(
        events(&mut r)[..],
        [RegistrationEvent::Failed {
            next_route: Some(1),
            ..
        }]
    ));
    r.handle_timeout(now);
    let (id, req, route) = sent(&mut r);
    assert_eq!(route, 1);
    let resp = build_response(&req, 503, "Service Unavailable", Some("x")).unwrap();
    r.handle_response(now, id, Outcome::Response(resp));
    r.handle_timeout(now);
    let (id, req, route) = sent(&mut r);
    assert_eq!(route, 2);
    let _ = events(&mut r);
    // The last route refuses too: backoff, then a new lookup.
    let resp = build_response(&req, 500, "Server Error", Some("x")).unwrap();
    r.handle_response(now, id, Outcome::Response(resp));
    let ev = events(&mut r);
    assert!(
        matches!(
            ev[..],
            [RegistrationEvent::Failed {
                next_route: None,
                ..
            }]
        ),
        "{ev:?}"
    );
    let t = r.poll_timeout().unwrap();
    assert!(t > now);
    r.handle_timeout(t);
    assert!(matches!(r.poll_action(), Some(RegistrationAction::Lookup)));
    r.set_routes(t, routes(2));
    let (id, req, route) = sent(&mut r);
    assert_eq!(route, 0);
    r.handle_response(t, id, Outcome::Response(ok(&req, Some(600))));
    assert!(r.is_registered());
}

#[test]
fn a_4xx_other_than_auth_does_not_fail_over() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(2));
    let (id, req, _) = sent(&mut r);
    let resp = build_response(&req, 403, "Forbidden", Some("x")).unwrap();
    r.handle_response(now, id, Outcome::Response(resp));
    assert!(matches!(
        events(&mut r)[..],
        [RegistrationEvent::Failed {
            code: 403,
            next_route: None,
            ..
        }]
    ));
}

#[test]
fn unregister_when_registered_and_when_not() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    registered(&mut r, now);
    let _ = events(&mut r);
    r.stop(now);
    let (id, req, _) = sent(&mut r);
    assert_eq!(req.header(HeaderName::Expires), Some("0"));
    // Still authorized without another round trip.
    assert!(req.header(HeaderName::Authorization).is_some());
    r.handle_response(now, id, Outcome::Response(ok(&req, None)));
    assert_eq!(
        events(&mut r),
        vec![RegistrationEvent::Ended {
            code: Some(200),
            reason: "OK".into()
        }]
    );
    assert_eq!(r.state(), RegState::Ended);
    assert_eq!(r.poll_timeout(), None);
    // Never registered: nothing to send.
    let mut r = Registration::new(cfg());
    r.start(now);
    r.stop(now);
    assert!(matches!(
        events(&mut r)[..],
        [RegistrationEvent::Ended { code: None, .. }]
    ));
    // The registrar gone while unregistering: Ended without a code.
    let mut r = Registration::new(cfg());
    registered(&mut r, now);
    let _ = events(&mut r);
    r.stop(now);
    let (id, _, _) = sent(&mut r);
    r.handle_response(
        now,
        id,
        Outcome::Failed {
            code: 408,
            reason: "Request Timeout".into(),
        },
    );
    assert!(matches!(
        events(&mut r)[..],
        [RegistrationEvent::Ended { code: None, .. }]
    ));
}

#[test]
fn stale_responses_are_ignored() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(1));
    let (id, req, _) = sent(&mut r);
    r.handle_response(
        now,
        ReqId(id.0 + 100),
        Outcome::Response(ok(&req, Some(600))),
    );
    assert!(!r.is_registered());
    assert!(events(&mut r).is_empty());
}

#[test]
fn retry_after_of_the_last_route_sets_the_delay() {
    let now = Instant::now();
    let mut r = Registration::new(cfg());
    r.start(now);
    r.set_routes(now, routes(1));
    let (id, req, _) = sent(&mut r);
    let mut resp = build_response(&req, 503, "Service Unavailable", Some("x")).unwrap();
    resp.push_header("Retry-After", "30 (maintenance);duration=60")
        .unwrap();
    r.handle_response(now, id, Outcome::Response(resp));
    let ev = events(&mut r);
    assert!(
        matches!(
            ev[..],
            [RegistrationEvent::Failed {
                code: 503,
                next_route: None,
                delay,
                ..
            }] if delay == 30.0
        ),
        "{ev:?}"
    );
    assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(30)));
    // The next failure without one backs off as usual (10 s base, doubled).
    r.handle_timeout(now + Duration::from_secs(30));
    assert!(matches!(r.poll_action(), Some(RegistrationAction::Lookup)));
    let later = now + Duration::from_secs(30);
    r.set_routes(later, routes(1));
    let (id, req, _) = sent(&mut r);
    let resp = build_response(&req, 503, "Service Unavailable", Some("x")).unwrap();
    r.handle_response(later, id, Outcome::Response(resp));
    let ev = events(&mut r);
    assert!(
        matches!(ev[..], [RegistrationEvent::Failed { delay, .. }] if (32.0..=40.0).contains(&delay)),
        "{ev:?}"
    );
}
