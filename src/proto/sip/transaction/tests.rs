//! Transaction state machines in virtual time: no test here sleeps.

use super::*;
use crate::proto::sip::Limits;

fn udp(port: u16) -> Peer {
    Peer {
        transport: TransportKind::Udp,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

fn tcp(port: u16) -> Peer {
    Peer {
        transport: TransportKind::Tcp,
        ..udp(port)
    }
}

fn request(method: &str, branch: &str) -> SipMessage {
    let text = format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: call-{branch}\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    SipMessage::parse_datagram(text.as_bytes(), &Limits::default()).unwrap()
}

fn reply(req: &SipMessage, code: u16) -> SipMessage {
    build_response(req, code, "Reason", Some("b1")).unwrap()
}

/// Drain transmissions, returning (seconds since t0, first line).
fn sent(layer: &mut TransactionLayer, t0: Instant) -> Vec<String> {
    let _ = t0;
    let mut v = Vec::new();
    while let Some(t) = layer.poll_transmit() {
        let text = String::from_utf8_lossy(&t.data).to_string();
        v.push(text.lines().next().unwrap_or_default().to_string());
    }
    v
}

fn events(layer: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

/// Run timers until `until`, returning the instants (ms from t0) at which
/// something was transmitted.
fn run_until(layer: &mut TransactionLayer, t0: Instant, until: Duration) -> Vec<u128> {
    let mut at = Vec::new();
    while let Some(next) = layer.poll_timeout() {
        if next > t0 + until {
            break;
        }
        layer.handle_timeout(next);
        while layer.poll_transmit().is_some() {
            at.push((next - t0).as_millis());
        }
    }
    at
}

#[test]
fn non_invite_client_retransmits_on_the_rfc_schedule_then_times_out() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let key = l
        .send_request(t0, request("OPTIONS", "z9hG4bK1"), udp(5060))
        .unwrap();
    assert_eq!(sent(&mut l, t0).len(), 1);
    let at = run_until(&mut l, t0, Duration::from_secs(40));
    // E: 500 ms doubling up to T2 = 4 s, until F = 64*T1 = 32 s.
    assert_eq!(
        at,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    let ev = events(&mut l);
    assert!(matches!(ev[0], TxEvent::Timeout { key: k, timer: Timer::F } if k == key));
    assert!(matches!(ev[1], TxEvent::Terminated { key: k } if k == key));
    assert!(l.is_empty());
    assert_eq!(l.stats().retransmissions_sent, 10);
    assert_eq!(l.stats().timeouts, 1);
}

#[test]
fn non_invite_client_in_proceeding_retransmits_every_t2() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request("REGISTER", "z9hG4bK2");
    l.send_request(t0, req.clone(), udp(5060)).unwrap();
    sent(&mut l, t0);
    l.handle_message(t0 + Duration::from_millis(100), reply(&req, 100), udp(5060));
    // Timer E armed at 500 ms still fires once, then every T2.
    let at = run_until(&mut l, t0, Duration::from_secs(10));
    assert_eq!(at, vec![500, 4500, 8500]);
    l.handle_message(t0 + Duration::from_secs(9), reply(&req, 200), udp(5060));
    let ev = events(&mut l);
    let codes: Vec<u16> = ev
        .iter()
        .filter_map(|e| match e {
            TxEvent::Response { response, .. } => response.status().map(|s| s.0),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![100, 200]);
    // A retransmitted 200 in Completed is absorbed; K (T4) then ends it.
    l.handle_message(t0 + Duration::from_secs(10), reply(&req, 200), udp(5060));
    assert!(events(&mut l).is_empty());
    assert_eq!(l.stats().retransmissions_received, 1);
    assert_eq!(
        l.poll_timeout(),
        Some(t0 + Duration::from_secs(9) + Duration::from_secs(5))
    );
    run_until(&mut l, t0, Duration::from_secs(20));
    assert!(l.is_empty());
}

#[test]
fn invite_client_timer_a_doubles_without_cap_and_b_ends_it() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    l.send_request(t0, request("INVITE", "z9hG4bK3"), udp(5060))
        .unwrap();
    sent(&mut l, t0);
    let at = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
    let ev = events(&mut l);
    assert!(matches!(
        ev[0],
        TxEvent::Timeout {
            timer: Timer::B,
            ..
        }
    ));
}

#[test]
fn invite_client_acks_non_2xx_and_reacks_retransmissions() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let mut inv = request("INVITE", "z9hG4bK4");
    inv.push_header("Route", "<sip:proxy.example;lr>").unwrap();
    l.send_request(t0, inv.clone(), udp(5060)).unwrap();
    sent(&mut l, t0);
    let t1 = t0 + Duration::from_millis(200);
    l.handle_message(t1, reply(&inv, 180), udp(5060));
    l.handle_message(t1, reply(&inv, 486), udp(5060));
    let mut ack = None;
    while let Some(t) = l.poll_transmit() {
        ack = Some(SipMessage::parse_datagram(&t.data, &Limits::default()).unwrap());
    }
    let ack = ack.expect("ACK sent");
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(ack.cseq(), Some((1, "ACK")));
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bK4"));
    assert_eq!(ack.to().unwrap().tag(), Some("b1"));
    assert_eq!(
        ack.header(HeaderName::Route),
        Some("<sip:proxy.example;lr>")
    );
    // A retransmitted 486 gets the same ACK again, and is not passed up.
    events(&mut l);
    l.handle_message(t1, reply(&inv, 486), udp(5060));
    assert_eq!(sent(&mut l, t0), vec!["ACK sip:bob@127.0.0.1 SIP/2.0"]);
    assert!(events(&mut l).is_empty());
    // Timer D: 32 s.
    assert_eq!(l.poll_timeout(), Some(t1 + Duration::from_secs(32)));
    run_until(&mut l, t0, Duration::from_secs(40));
    assert!(l.is_empty());
}

#[test]
fn invite_client_accepted_passes_2xx_retransmissions_up_until_m() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bK5");
    let key = l.send_request(t0, inv.clone(), udp(5060)).unwrap();
    sent(&mut l, t0);
    l.handle_message(t0, reply(&inv, 200), udp(5060));
    l.handle_message(t0 + Duration::from_millis(500), reply(&inv, 200), udp(5060));
    let n = events(&mut l)
        .iter()
        .filter(|e| matches!(e, TxEvent::Response { key: k, .. } if *k == key))
        .count();
    assert_eq!(n, 2);
    // No ACK from the transaction for a 2xx: that is the UA's.
    assert!(sent(&mut l, t0).is_empty());
    assert_eq!(l.state(key), Some(TxState::Accepted));
    run_until(&mut l, t0, Duration::from_secs(33));
    assert!(l.is_empty());
    // After M a 2xx is stray, for the dialog layer.
    l.handle_message(t0 + Duration::from_secs(40), reply(&inv, 200), udp(5060));
    assert!(matches!(
        events(&mut l).last(),
        Some(TxEvent::StrayResponse { .. })
    ));
}

#[test]
fn invite_server_sends_trying_retransmits_final_and_stops_on_ack() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bK6");
    l.handle_message(t0, inv.clone(), udp(5070));
    assert_eq!(sent(&mut l, t0), vec!["SIP/2.0 100 Trying"]);
    let ev = events(&mut l);
    let TxEvent::Request {
        key, request: got, ..
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    // rport filled and received added (RFC 3581).
    let via = got.top_via().unwrap();
    assert_eq!(via.param("rport"), Some(Some("5070")));
    assert_eq!(via.param("received"), Some(Some("127.0.0.1")));
    let key = *key;
    // A retransmitted INVITE gets the 100 again.
    l.handle_message(t0, inv.clone(), udp(5070));
    assert_eq!(sent(&mut l, t0), vec!["SIP/2.0 100 Trying"]);
    l.send_response(t0, key, reply(&inv, 486)).unwrap();
    assert_eq!(sent(&mut l, t0), vec!["SIP/2.0 486 Reason"]);
    let at = run_until(&mut l, t0, Duration::from_millis(4000));
    assert_eq!(at, vec![500, 1500, 3500]);
    // ACK: Confirmed, no more retransmissions; Timer I (T4) ends it.
    let mut ack = request("ACK", "z9hG4bK6");
    ack.set_header(HeaderName::CSeq, "1 ACK").unwrap();
    l.handle_message(t0 + Duration::from_millis(4000), ack, udp(5070));
    assert_eq!(l.state(key), Some(TxState::Confirmed));
    let at = run_until(&mut l, t0, Duration::from_secs(20));
    assert!(at.is_empty());
    assert!(l.is_empty());
}

#[test]
fn invite_server_without_ack_times_out_with_h() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bK7");
    l.handle_message(t0, inv.clone(), udp(5070));
    let TxEvent::Request { key, .. } = events(&mut l).remove(0) else {
        panic!()
    };
    l.send_response(t0, key, reply(&inv, 603)).unwrap();
    sent(&mut l, t0);
    let at = run_until(&mut l, t0, Duration::from_secs(40));
    // G: 0.5, 1, 2, 4, 4, ... until H at 32 s.
    assert_eq!(
        at,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(events(&mut l).iter().any(|e| matches!(
        e,
        TxEvent::Timeout {
            timer: Timer::H,
            ..
        }
    )));
}

#[test]
fn invite_server_2xx_is_retransmitted_until_the_dialog_ack() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bK8");
    l.handle_message(t0, inv.clone(), udp(5070));
    let TxEvent::Request { key, .. } = events(&mut l).remove(0) else {
        panic!()
    };
    sent(&mut l, t0);
    l.send_response(t0, key, reply(&inv, 200)).unwrap();
    sent(&mut l, t0);
    let at = run_until(&mut l, t0, Duration::from_millis(2000));
    assert_eq!(at, vec![500, 1500]);
    // RFC 6026: a retransmitted INVITE in Accepted is absorbed.
    l.handle_message(t0 + Duration::from_millis(1600), inv.clone(), udp(5070));
    assert!(sent(&mut l, t0).is_empty());
    // The ACK for the 2xx has its own branch.
    let mut ack = request("ACK", "z9hG4bKack");
    ack.set_header(HeaderName::CallId, "call-z9hG4bK8").unwrap();
    ack.set_header(HeaderName::CSeq, "1 ACK").unwrap();
    l.handle_message(t0 + Duration::from_millis(1700), ack, udp(5070));
    assert!(matches!(events(&mut l)[0], TxEvent::Ack { .. }));
    let at = run_until(&mut l, t0, Duration::from_secs(40));
    assert!(at.is_empty());
    let ev = events(&mut l);
    assert!(!ev.iter().any(|e| matches!(e, TxEvent::Timeout { .. })));
    assert!(l.is_empty());
}

#[test]
fn invite_server_2xx_without_ack_reports_timer_l() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bK9");
    l.handle_message(t0, inv.clone(), udp(5070));
    let TxEvent::Request { key, .. } = events(&mut l).remove(0) else {
        panic!()
    };
    l.send_response(t0, key, reply(&inv, 200)).unwrap();
    run_until(&mut l, t0, Duration::from_secs(40));
    assert!(events(&mut l).iter().any(|e| matches!(
        e,
        TxEvent::Timeout {
            timer: Timer::L,
            ..
        }
    )));
}

#[test]
fn non_invite_server_absorbs_and_replays() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request("MESSAGE", "z9hG4bK10");
    l.handle_message(t0, req.clone(), udp(5070));
    let TxEvent::Request { key, .. } = events(&mut l).remove(0) else {
        panic!()
    };
    // Retransmission before any response: absorbed silently.
    l.handle_message(t0, req.clone(), udp(5070));
    assert!(sent(&mut l, t0).is_empty());
    assert!(events(&mut l).is_empty());
    l.send_response(t0, key, reply(&req, 200)).unwrap();
    assert_eq!(sent(&mut l, t0).len(), 1);
    l.handle_message(t0 + Duration::from_secs(1), req.clone(), udp(5070));
    assert_eq!(sent(&mut l, t0), vec!["SIP/2.0 200 Reason"]);
    // A second final is refused.
    assert_eq!(
        l.send_response(t0, key, reply(&req, 500)),
        Err(TxError::WrongState)
    );
    // J = 64*T1 on UDP.
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    run_until(&mut l, t0, Duration::from_secs(33));
    assert!(l.is_empty());
}

#[test]
fn reliable_transports_do_not_retransmit_and_end_at_once() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bK11");
    l.send_request(t0, req.clone(), tcp(5060)).unwrap();
    sent(&mut l, t0);
    // Only F is armed.
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    l.handle_message(t0, reply(&req, 200), tcp(5060));
    // K = 0.
    assert_eq!(l.poll_timeout(), Some(t0));
    l.handle_timeout(t0);
    assert!(l.is_empty());
}

#[test]
fn cancel_matches_the_invite_and_unknown_cancel_gets_481() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bK12");
    l.handle_message(t0, inv.clone(), udp(5070));
    let TxEvent::Request { key, .. } = events(&mut l).remove(0) else {
        panic!()
    };
    sent(&mut l, t0);
    let cancel = build_cancel(&inv).unwrap();
    let cancel = SipMessage::parse_datagram(&cancel.to_bytes(), &Limits::default()).unwrap();
    l.handle_message(t0, cancel, udp(5070));
    assert_eq!(sent(&mut l, t0), vec!["SIP/2.0 200 OK"]);
    assert!(matches!(events(&mut l)[0], TxEvent::Cancelled { invite } if invite == key));
    l.send_response(t0, key, reply(&inv, 487)).unwrap();
    assert_eq!(sent(&mut l, t0), vec!["SIP/2.0 487 Reason"]);
    let stray = build_cancel(&request("INVITE", "z9hG4bKnone")).unwrap();
    let stray = SipMessage::parse_datagram(&stray.to_bytes(), &Limits::default()).unwrap();
    l.handle_message(t0, stray, udp(5070));
    assert_eq!(
        sent(&mut l, t0),
        vec!["SIP/2.0 481 Call/Transaction Does Not Exist"]
    );
}

#[test]
fn rfc2543_requests_match_without_a_cookie() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request("OPTIONS", "oldstyle1");
    l.handle_message(t0, req.clone(), udp(5070));
    assert_eq!(events(&mut l).len(), 1);
    l.handle_message(t0, req.clone(), udp(5070));
    assert!(events(&mut l).is_empty());
    assert_eq!(l.stats().retransmissions_received, 1);
    // Outgoing requests must carry the cookie.
    assert!(matches!(
        l.send_request(t0, request("OPTIONS", "oldstyle2"), udp(1)),
        Err(TxError::Invalid(_))
    ));
}

#[test]
fn responses_route_per_via_without_rport() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let text = "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.9:5099;branch=z9hG4bKx\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n";
    let req = SipMessage::parse_datagram(text.as_bytes(), &Limits::default()).unwrap();
    l.handle_message(t0, req, udp(40000));
    let TxEvent::Request { key, request, .. } = events(&mut l).remove(0) else {
        panic!()
    };
    assert_eq!(
        request.top_via().unwrap().param("received"),
        Some(Some("127.0.0.1"))
    );
    l.send_response(t0, key, reply(&request, 200)).unwrap();
    let t = l.poll_transmit().unwrap();
    assert_eq!(t.peer.addr, SocketAddr::from(([127, 0, 0, 1], 5099)));
}

#[test]
fn transport_error_is_reported_and_ends_the_transaction() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let key = l
        .send_request(t0, request("OPTIONS", "z9hG4bK13"), tcp(5060))
        .unwrap();
    l.handle_transport_error(t0, key);
    let ev = events(&mut l);
    assert!(matches!(ev[0], TxEvent::TransportError { key: k } if k == key));
    assert!(l.is_empty());
    // A late error for a dead key does nothing.
    l.handle_transport_error(t0, key);
    assert!(events(&mut l).is_empty());
}

#[test]
fn a_full_table_answers_503() {
    let mut l = TransactionLayer::default();
    l.set_max_transactions(2);
    let t0 = Instant::now();
    for i in 0..3 {
        l.handle_message(t0, request("OPTIONS", &format!("z9hG4bKf{i}")), udp(5070));
    }
    assert_eq!(sent(&mut l, t0), vec!["SIP/2.0 503 Service Unavailable"]);
    assert_eq!(l.stats().overload_rejections, 1);
    assert_eq!(
        l.send_request(t0, request("OPTIONS", "z9hG4bKg"), udp(1))
            .unwrap_err(),
        TxError::TooMany
    );
}

#[test]
fn configurable_t1_scales_the_schedule() {
    let mut l = TransactionLayer::new(TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_millis(500),
    });
    let t0 = Instant::now();
    l.send_request(t0, request("OPTIONS", "z9hG4bK14"), udp(5060))
        .unwrap();
    sent(&mut l, t0);
    let at = run_until(&mut l, t0, Duration::from_secs(10));
    assert_eq!(&at[..5], &[100, 300, 700, 1100, 1500]);
    assert_eq!(*at.last().unwrap(), 6300);
    assert!(events(&mut l).iter().any(|e| matches!(
        e,
        TxEvent::Timeout {
            timer: Timer::F,
            ..
        }
    )));
}
