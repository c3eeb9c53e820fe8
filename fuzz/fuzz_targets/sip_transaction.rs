//! The transaction layer fed arbitrary datagrams from two peers, interleaved
//! with time passing and with our own requests and responses: no panic, and
//! every timer eventually settles (no endless re-arming).
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sipsimple::proto::sip::screen::build_response;
use sipsimple::proto::sip::transaction::{Peer, TransactionLayer, TransportKind, TxEvent};
use sipsimple::proto::sip::{Limits, SipMessage, Uri};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut layer = TransactionLayer::default();
    let peers = [
        Peer { transport: TransportKind::Udp, addr: SocketAddr::from(([127, 0, 0, 1], 5060)) },
        Peer { transport: TransportKind::Tcp, addr: SocketAddr::from(([127, 0, 0, 1], 5061)) },
    ];
    let limits = Limits::default();
    // Records separated by 0xff: the first byte of a record picks an action.
    for (i, rec) in data.split(|&b| b == 0xff).enumerate() {
        let Some((&op, rest)) = rec.split_first() else { continue };
        let peer = peers[(op & 1) as usize];
        match op >> 1 {
            0..=63 => {
                if let Ok(m) = SipMessage::parse_datagram(rest, &limits) {
                    layer.handle_message(now, m, peer);
                }
            }
            64..=95 => now += Duration::from_millis(u64::from(op) * 37),
            96..=111 => {
                let uri = Uri::parse("sip:fuzz@127.0.0.1").expect("static URI");
                let method = ["INVITE", "OPTIONS", "MESSAGE", "BYE"][(op & 3) as usize];
                let mut r = SipMessage::request(method, &uri).expect("static request");
                let _ = r.push_header("Via", &format!("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKf{}", rest.len()));
                let _ = r.push_header("CSeq", &format!("{i} {method}"));
                let _ = r.push_header("Call-ID", "fuzz");
                let _ = layer.send_request(now, r, peer);
            }
            _ => {}
        }
        while let Some(ev) = layer.poll_event() {
            if let TxEvent::Request { key, request, .. } = ev {
                let code = [100u16, 180, 200, 486][(op & 3) as usize];
                if let Ok(r) = build_response(&request, code, "R", Some("t")) {
                    let _ = layer.send_response(now, key, r);
                }
            }
        }
        while layer.poll_transmit().is_some() {}
        if let Some(t) = layer.poll_timeout() {
            if t <= now {
                layer.handle_timeout(now);
            }
        }
    }
    // Answer whatever is still waiting, then let time run out.
    let mut guard = 0;
    while let Some(t) = layer.poll_timeout() {
        now = now.max(t);
        layer.handle_timeout(now);
        while layer.poll_event().is_some() {}
        while layer.poll_transmit().is_some() {}
        guard += 1;
        assert!(guard < 100_000, "timers never settle");
    }
});
