//! Two session cores talking through an in-memory network that plays the
//! transaction layer's part (CANCEL answered 200, ACK of non-2xx implicit,
//! Timer B/F and H as scheduled failures), all in virtual time.

use std::collections::{HashMap, VecDeque};

use super::*;
use crate::proto::sdp::{Direction, MediaDescription};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    fn i(self) -> usize {
        self as usize
    }
}

enum Msg {
    Request {
        from: Side,
        id: ReqId,
        req: SipMessage,
    },
    Response {
        to: Side,
        id: ReqId,
        resp: SipMessage,
    },
    Ack {
        from: Side,
        ack: SipMessage,
    },
}

struct Net {
    now: Instant,
    s: [Option<InviteSession>; 2],
    cfg_b: SessionConfig,
    queue: VecDeque<Msg>,
    next_key: u64,
    /// Server transaction key -> (requester, its ReqId, request).
    server_tx: HashMap<u64, (Side, ReqId, SipMessage)>,
    /// Lose everything a side sends.
    mute: [bool; 2],
    /// Lose requests of this method from this side.
    drop_method: Option<(Side, &'static str)>,
    /// (when, side, id): a client transaction times out (Timer B/F).
    timeouts: Vec<(Instant, Side, ReqId)>,
    /// (when, side): a 2xx got no ACK (Timer H/L).
    ack_timeouts: Vec<(Instant, Side, u32)>,
    acked: Vec<(Side, u32)>,
    events: [Vec<Event>; 2],
    wire: Vec<String>,
}

fn sdp(ports: &[(&str, u16)], dir: Direction) -> SessionDescription {
    let mut s = SessionDescription::new("-", 1, [127, 0, 0, 1].into(), "test");
    for (m, p) in ports {
        let mut md = MediaDescription::new(m, *p, "RTP/AVP", &["0"]);
        md.set_direction(dir);
        s.media.push(md);
    }
    s
}

fn cfg(name: &str, port: u16, seed: u64) -> SessionConfig {
    SessionConfig {
        local_identity: format!("<sip:{name}@127.0.0.1>"),
        contact: format!("<sip:{name}@127.0.0.1:{port}>"),
        via: format!("SIP/2.0/UDP 127.0.0.1:{port}"),
        seed,
        ..SessionConfig::default()
    }
}

impl Net {
    fn new(cfg_a: SessionConfig, cfg_b: SessionConfig) -> Net {
        Net {
            now: Instant::now(),
            s: [Some(InviteSession::outgoing(cfg_a)), None],
            cfg_b,
            queue: VecDeque::new(),
            next_key: 1,
            server_tx: HashMap::new(),
            mute: [false; 2],
            drop_method: None,
            timeouts: Vec::new(),
            ack_timeouts: Vec::new(),
            acked: Vec::new(),
            events: [Vec::new(), Vec::new()],
            wire: Vec::new(),
        }
    }

    fn pair() -> Net {
        Net::new(cfg("alice", 5060, 1), cfg("bob", 5070, 2))
    }

    fn a(&mut self) -> &mut InviteSession {
        self.s[0].as_mut().unwrap()
    }
    fn b(&mut self) -> &mut InviteSession {
        self.s[1].as_mut().expect("bob has a session")
    }

    fn call(&mut self) {
        let now = self.now;
        let target = Uri::parse("sip:bob@127.0.0.1:5070").unwrap();
        self.a()
            .connect(
                now,
                target,
                "<sip:bob@127.0.0.1>",
                vec![],
                sdp(&[("audio", 4000)], Direction::SendRecv),
            )
            .unwrap();
        self.pump();
    }

    fn established() -> Net {
        let mut n = Net::pair();
        n.call();
        let now = n.now;
        n.b()
            .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
            .unwrap();
        n.pump();
        assert_eq!(n.a().state(), State::Established);
        assert_eq!(n.b().state(), State::Established);
        n.events = [Vec::new(), Vec::new()];
        n.wire.clear();
        n
    }

    /// Collect actions and events from both sides, deliver queued
    /// messages, until nothing moves.
    fn pump(&mut self) {
        loop {
            for side in [Side::A, Side::B] {
                let Some(s) = self.s[side.i()].as_mut() else {
                    continue;
                };
                let mut acts = Vec::new();
                while let Some(a) = s.poll_action() {
                    acts.push(a);
                }
                while let Some(e) = s.poll_event() {
                    self.events[side.i()].push(e);
                }
                for a in acts {
                    self.out(side, a);
                }
            }
            let Some(m) = self.queue.pop_front() else {
                break;
            };
            self.deliver(m);
        }
    }

    fn out(&mut self, side: Side, a: Action) {
        match a {
            Action::Send { id, request, .. } => {
                let method = request.method().unwrap().to_string();
                let lost = self.mute[side.i()] || self.drop_method == Some((side, leak(&method)));
                self.wire.push(format!(
                    "{side:?} {method}{}",
                    if lost { " (lost)" } else { "" }
                ));
                if lost {
                    self.timeouts
                        .push((self.now + Duration::from_secs(32), side, id));
                } else {
                    self.queue.push_back(Msg::Request {
                        from: side,
                        id,
                        req: request,
                    });
                }
            }
            Action::Respond { key, response } => {
                let (to, id, req) = self.server_tx[&key.0].clone();
                let code = response.status().unwrap().0;
                self.wire
                    .push(format!("{side:?} {code} {}", req.method().unwrap()));
                if req.method() == Some("INVITE") && (200..300).contains(&code) {
                    let seq = req.cseq().unwrap().0;
                    self.ack_timeouts
                        .push((self.now + Duration::from_secs(32), side, seq));
                }
                if !self.mute[side.i()] {
                    self.queue.push_back(Msg::Response {
                        to,
                        id,
                        resp: response,
                    });
                } else if code >= 200 {
                    // Lost final response: the requester's transaction
                    // times out.
                    self.timeouts
                        .push((self.now + Duration::from_secs(32), to, id));
                }
            }
            Action::SendAck { ack, .. } => {
                self.wire.push(format!("{side:?} ACK"));
                let lost = self.mute[side.i()] || self.drop_method == Some((side, "ACK"));
                if !lost {
                    self.queue.push_back(Msg::Ack { from: side, ack });
                }
            }
        }
    }

    fn deliver(&mut self, m: Msg) {
        let now = self.now;
        match m {
            Msg::Request { from, id, req } => {
                let to = from.other();
                let key = TxKey(self.next_key);
                self.next_key += 1;
                if req.method() == Some("CANCEL") {
                    // The transaction layer answers CANCEL itself and tells
                    // the TU which INVITE went.
                    let mut ok = build_response(&req, 200, "OK", None).unwrap();
                    ok.remove_header(HeaderName::Contact);
                    self.queue.push_back(Msg::Response {
                        to: from,
                        id,
                        resp: ok,
                    });
                    let branch = req.top_via().unwrap().branch().unwrap().to_string();
                    let invite_key = self.server_tx.iter().find_map(|(k, (_, _, r))| {
                        (r.method() == Some("INVITE")
                            && r.top_via().unwrap().branch() == Some(branch.as_str()))
                        .then_some(TxKey(*k))
                    });
                    if let (Some(k), Some(s)) = (invite_key, self.s[to.i()].as_mut()) {
                        s.handle_cancel(now, k);
                    }
                    return;
                }
                self.server_tx.insert(key.0, (from, id, req.clone()));
                if to == Side::B && self.s[1].is_none() {
                    match InviteSession::incoming(self.cfg_b.clone(), key, req) {
                        Ok(s) => self.s[1] = Some(s),
                        Err(resp) => {
                            let code = resp.status().unwrap().0;
                            self.wire.push(format!("B {code} INVITE"));
                            self.queue.push_back(Msg::Response { to: from, id, resp })
                        }
                    }
                    return;
                }
                if let Some(s) = self.s[to.i()].as_mut() {
                    s.handle_request(now, Some(key), req);
                }
            }
            Msg::Response { to, id, resp } => {
                if let Some(s) = self.s[to.i()].as_mut() {
                    s.handle_response(now, id, Outcome::Response(resp));
                }
            }
            Msg::Ack { from, ack } => {
                let to = from.other();
                self.acked.push((to, ack.cseq().unwrap().0));
                if let Some(s) = self.s[to.i()].as_mut() {
                    s.handle_request(now, None, ack);
                }
            }
        }
    }

    /// Advance virtual time to `until`, firing timers on the way.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.pump();
            let mut next = until;
            for s in self.s.iter().flatten() {
                if let Some(t) = s.poll_timeout() {
                    next = next.min(t);
                }
            }
            for (t, _, _) in &self.timeouts {
                next = next.min(*t);
            }
            for (t, _, _) in &self.ack_timeouts {
                next = next.min(*t);
            }
            if next > until || (next == until && self.now == until) {
                self.now = until;
                self.pump();
                return;
            }
            self.now = next.max(self.now);
            let now = self.now;
            let due: Vec<_> = self
                .timeouts
                .iter()
                .filter(|t| t.0 <= now)
                .cloned()
                .collect();
            self.timeouts.retain(|t| t.0 > now);
            for (_, side, id) in due {
                if let Some(s) = self.s[side.i()].as_mut() {
                    s.handle_response(
                        now,
                        id,
                        Outcome::Failed {
                            code: 408,
                            reason: "Request Timeout".into(),
                        },
                    );
                }
            }
            let due: Vec<_> = self
                .ack_timeouts
                .iter()
                .filter(|t| t.0 <= now)
                .cloned()
                .collect();
            self.ack_timeouts.retain(|t| t.0 > now);
            for (_, side, seq) in due {
                if !self.acked.contains(&(side, seq)) {
                    if let Some(s) = self.s[side.i()].as_mut() {
                        s.handle_ack_timeout(now);
                    }
                }
            }
            for s in self.s.iter_mut().flatten() {
                s.handle_timeout(now);
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    fn names(&self, side: Side) -> Vec<String> {
        self.events[side.i()]
            .iter()
            .filter(|e| !matches!(e, Event::StateChanged { .. }))
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn ended(&self, side: Side) -> Option<(Originator, u16, String)> {
        self.events[side.i()].iter().find_map(|e| match e {
            Event::Ended {
                originator,
                code,
                reason,
            } => Some((*originator, *code, reason.clone())),
            _ => None,
        })
    }

    fn failed(&self, side: Side) -> Option<(Originator, u16)> {
        self.events[side.i()].iter().find_map(|e| match e {
            Event::Failed {
                originator, code, ..
            } => Some((*originator, *code)),
            _ => None,
        })
    }

    fn sent(&self, what: &str) -> usize {
        self.wire.iter().filter(|w| w.as_str() == what).count()
    }
}

fn leak(s: &str) -> &'static str {
    match s {
        "INVITE" => "INVITE",
        "ACK" => "ACK",
        "BYE" => "BYE",
        "PRACK" => "PRACK",
        "UPDATE" => "UPDATE",
        "CANCEL" => "CANCEL",
        _ => "OTHER",
    }
}

#[test]
fn call_ring_answer_hang_up() {
    let mut n = Net::pair();
    n.call();
    assert_eq!(n.a().state(), State::Connecting);
    assert_eq!(n.b().state(), State::Incoming);
    assert_eq!(n.b().remote_sdp().unwrap().media[0].port, 4000);
    let now = n.now;
    n.b().ring(now).unwrap();
    n.pump();
    // Both support 100rel: the 180 is reliable and PRACKed.
    assert_eq!(n.sent("A PRACK"), 1);
    assert_eq!(n.sent("B 200 PRACK"), 1);
    assert!(n.events[0].contains(&Event::Provisional {
        code: 180,
        reason: "Ringing".into()
    }));
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    n.pump();
    assert_eq!(n.names(Side::A), ["Provisional", "Answered", "Confirmed"]);
    assert_eq!(n.names(Side::B), ["Answered", "Confirmed"]);
    assert_eq!(n.a().remote_sdp().unwrap().media[0].port, 5000);
    let call_id = n.b().call_id().to_string();
    assert_eq!(n.a().dialog_id().unwrap().call_id, call_id);
    // The reliable 180 is not retransmitted once PRACKed.
    n.advance(Duration::from_secs(10));
    assert_eq!(n.sent("B 180 INVITE"), 1);
    let now = n.now;
    n.a().end(now).unwrap();
    n.pump();
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.b().state(), State::Terminated);
    assert_eq!(n.ended(Side::A).unwrap().0, Originator::Local);
    assert_eq!(n.ended(Side::B).unwrap().0, Originator::Remote);
    assert!(n.failed(Side::A).is_none());
    // Every command now says no and changes nothing.
    let now = n.now;
    assert!(n.a().end(now).is_err());
    assert!(n
        .b()
        .accept(now, sdp(&[("audio", 1)], Direction::SendRecv))
        .is_err());
    assert_eq!(n.a().state(), State::Terminated);
}

#[test]
fn commands_in_the_wrong_state_are_refused() {
    let mut n = Net::pair();
    let now = n.now;
    let s = sdp(&[("audio", 1)], Direction::SendRecv);
    assert!(matches!(
        n.a().end(now),
        Err(SessionError::InvalidState { .. })
    ));
    assert!(n.a().accept(now, s.clone()).is_err());
    assert!(n.a().ring(now).is_err());
    assert!(n.a().propose(now, s.clone()).is_err());
    assert!(n.a().reject(now, 486, "Busy").is_err());
    assert!(n.a().accept_proposal(now, s.clone()).is_err());
    assert!(n.a().reject_proposal(now, 488, "No").is_err());
    assert_eq!(n.a().state(), State::Null);
    assert!(n.a().poll_action().is_none());
    n.call();
    let target = Uri::parse("sip:x@127.0.0.1").unwrap();
    assert!(n
        .a()
        .connect(now, target, "<sip:x@127.0.0.1>", vec![], s.clone())
        .is_err());
    assert!(n.a().propose(now, s.clone()).is_err());
    assert!(n.b().propose(now, s.clone()).is_err());
    assert!(
        n.b().reject(now, 200, "OK").is_err(),
        "a 2xx is not a rejection"
    );
    // An answer with the wrong shape is refused and the call stays.
    assert!(n
        .b()
        .accept(now, sdp(&[("audio", 1), ("audio", 2)], Direction::SendRecv))
        .is_err());
    assert_eq!(n.b().state(), State::Incoming);
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut n = Net::pair();
    n.call();
    let now = n.now;
    n.a().end(now).unwrap();
    n.pump();
    assert_eq!(
        n.sent("A CANCEL"),
        0,
        "no CANCEL before a provisional (RFC 3261 9.1)"
    );
    assert_eq!(n.a().state(), State::Terminating);
    n.b().ring(now).unwrap();
    n.pump();
    assert_eq!(n.sent("A CANCEL"), 1);
    assert_eq!(n.sent("B 487 INVITE"), 1);
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.b().state(), State::Terminated);
    assert_eq!(n.failed(Side::A), Some((Originator::Local, 487)));
    assert_eq!(n.failed(Side::B), Some((Originator::Remote, 487)));
    assert_eq!(n.names(Side::B), ["Failed", "Ended"]);
}

#[test]
fn cancel_after_ringing() {
    let mut n = Net::pair();
    n.call();
    let now = n.now;
    n.b().ring(now).unwrap();
    n.pump();
    n.a().end(now).unwrap();
    n.pump();
    assert_eq!(n.sent("A CANCEL"), 1);
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.ended(Side::B).unwrap().0, Originator::Remote);
}

#[test]
fn cancel_crossing_the_2xx_gets_ack_then_bye() {
    let mut n = Net::pair();
    n.call();
    let now = n.now;
    n.b().ring(now).unwrap();
    n.pump();
    // Bob answers and Alice hangs up before the 200 reaches her.
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    n.a().end(now).unwrap();
    n.pump();
    assert_eq!(n.sent("A CANCEL"), 1);
    assert_eq!(n.sent("A ACK"), 1);
    assert_eq!(n.sent("A BYE"), 1);
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.b().state(), State::Terminated);
}

#[test]
fn busy_and_decline() {
    let mut n = Net::pair();
    n.call();
    let now = n.now;
    n.b().reject(now, 486, "Busy Here").unwrap();
    n.pump();
    assert_eq!(n.failed(Side::A), Some((Originator::Remote, 486)));
    assert_eq!(n.failed(Side::B), Some((Originator::Local, 486)));
    assert_eq!(n.names(Side::A), ["Failed", "Ended"]);
}

#[test]
fn unanswered_invite_times_out() {
    let mut n = Net::pair();
    n.drop_method = Some((Side::A, "INVITE"));
    n.call();
    n.advance(Duration::from_secs(40));
    assert_eq!(n.failed(Side::A), Some((Originator::Local, 408)));
    assert_eq!(n.a().state(), State::Terminated);
}

#[test]
fn hold_and_unhold_by_reinvite_bump_versions() {
    let mut n = Net::established();
    let v0 = n.a().local_sdp().unwrap().origin.session_version;
    let now = n.now;
    n.a()
        .propose(now, sdp(&[("audio", 4000)], Direction::SendOnly))
        .unwrap();
    assert_eq!(n.a().state(), State::Proposing);
    n.pump();
    assert_eq!(n.b().state(), State::ReceivedProposal);
    // The state changes before the proposal is announced, so that whoever
    // hears of it can answer at once.
    let state_at = n.events[1].iter().position(|e| {
        matches!(
            e,
            Event::StateChanged {
                new: State::ReceivedProposal,
                ..
            }
        )
    });
    let proposal_at = n.events[1]
        .iter()
        .position(|e| matches!(e, Event::GotProposal { .. }));
    assert!(state_at.is_some() && state_at < proposal_at);
    let offer = n.b().pending_offer().unwrap();
    assert_eq!(offer.media_direction(0), Direction::SendOnly);
    assert_eq!(offer.origin.session_version, v0 + 1);
    n.b()
        .accept_proposal(now, sdp(&[("audio", 5000)], Direction::RecvOnly))
        .unwrap();
    n.pump();
    assert_eq!(n.a().state(), State::Established);
    assert_eq!(n.b().state(), State::Established);
    assert!(n.events[0].iter().any(|e| matches!(
        e,
        Event::ProposalAccepted {
            proposer: Originator::Local,
            ..
        }
    )));
    assert!(n.events[1].iter().any(|e| matches!(
        e,
        Event::ProposalAccepted {
            proposer: Originator::Remote,
            ..
        }
    )));
    assert_eq!(
        n.a().remote_sdp().unwrap().media_direction(0),
        Direction::RecvOnly
    );
    n.a()
        .propose(now, sdp(&[("audio", 4000)], Direction::SendRecv))
        .unwrap();
    n.pump();
    assert_eq!(
        n.b().pending_offer().unwrap().origin.session_version,
        v0 + 2
    );
    n.b()
        .reject_proposal(now, 488, "Not Acceptable Here")
        .unwrap();
    n.pump();
    assert!(n.events[0]
        .iter()
        .any(|e| matches!(e, Event::ProposalRejected { code: 488, .. })));
    assert_eq!(n.a().state(), State::Established);
    // The rejected offer left the agreed descriptions alone.
    assert_eq!(
        n.b().remote_sdp().unwrap().media_direction(0),
        Direction::SendOnly
    );
}

#[test]
fn glare_both_get_491_and_retry_in_their_windows() {
    let mut n = Net::established();
    let now = n.now;
    n.a()
        .propose(now, sdp(&[("audio", 4000)], Direction::SendOnly))
        .unwrap();
    n.b()
        .propose(now, sdp(&[("audio", 5000)], Direction::SendOnly))
        .unwrap();
    // Both re-INVITEs cross on the wire.
    n.pump();
    assert_eq!(n.sent("A 491 INVITE"), 1);
    assert_eq!(n.sent("B 491 INVITE"), 1);
    assert_eq!(n.a().state(), State::Proposing);
    assert_eq!(n.b().state(), State::Proposing);
    // Bob did not make the Call-ID: he retries within 0-2 s, Alice waits
    // 2.1-4 s, so Bob's proposal arrives first and Alice must answer it.
    n.advance(Duration::from_millis(2050));
    assert_eq!(n.a().state(), State::ReceivedProposal);
    let now = n.now;
    n.a()
        .accept_proposal(now, sdp(&[("audio", 4000)], Direction::RecvOnly))
        .unwrap();
    n.pump();
    assert_eq!(
        n.a().state(),
        State::Proposing,
        "Alice's own proposal still waits"
    );
    n.advance(Duration::from_secs(2));
    let now = n.now;
    assert_eq!(n.b().state(), State::ReceivedProposal);
    n.b()
        .accept_proposal(now, sdp(&[("audio", 5000)], Direction::Inactive))
        .unwrap();
    n.pump();
    assert_eq!(n.a().state(), State::Established);
    assert_eq!(n.b().state(), State::Established);
    assert_eq!(n.sent("A INVITE"), 2, "glared, retried");
}

#[test]
fn session_refresh_keeps_the_call_and_expiry_ends_it() {
    let mut a = cfg("alice", 5060, 1);
    a.timers = Some(SessionTimers {
        interval: 120,
        min_se: 90,
        refresh_with_update: true,
    });
    let mut b = cfg("bob", 5070, 2);
    b.timers = Some(SessionTimers {
        interval: 1800,
        min_se: 90,
        refresh_with_update: true,
    });
    let mut n = Net::new(a, b);
    n.call();
    let now = n.now;
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    n.pump();
    // Alice asked for 120 s and supports timer: she refreshes.
    assert_eq!(n.a().session_timer(), Some((120, true)));
    assert_eq!(n.b().session_timer(), Some((120, false)));
    n.advance(Duration::from_secs(3600));
    assert_eq!(n.a().state(), State::Established);
    assert_eq!(n.b().state(), State::Established);
    // Refreshes every 60 s, by UPDATE since Bob allows it.
    let updates = n.sent("A UPDATE");
    assert!((59..=61).contains(&updates), "{updates} refreshes");
    // Alice vanishes: Bob ends the call at 120 - 32 s after the last refresh.
    n.mute[0] = true;
    n.advance(Duration::from_secs(150));
    assert_eq!(n.b().state(), State::Terminated);
    assert_eq!(
        n.ended(Side::B).unwrap(),
        (Originator::Local, 408, "Session timer expired".into())
    );
}

#[test]
fn refresh_by_reinvite_when_update_is_not_wanted() {
    let mut a = cfg("alice", 5060, 1);
    a.timers = Some(SessionTimers {
        interval: 100,
        min_se: 90,
        refresh_with_update: false,
    });
    let mut n = Net::new(a, cfg("bob", 5070, 2));
    n.call();
    let now = n.now;
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    n.pump();
    let v = n.b().remote_sdp().unwrap().origin.session_version;
    n.advance(Duration::from_secs(500));
    assert!(n.sent("A INVITE") >= 10);
    // A refresh re-INVITE repeats the description: same version, no
    // proposal event at Bob.
    assert_eq!(n.b().remote_sdp().unwrap().origin.session_version, v);
    assert!(!n.events[1]
        .iter()
        .any(|e| matches!(e, Event::GotProposal { .. })));
    assert_eq!(n.b().state(), State::Established);
}

#[test]
fn small_session_interval_gets_422_and_a_retry() {
    let mut a = cfg("alice", 5060, 1);
    a.timers = Some(SessionTimers {
        interval: 90,
        min_se: 90,
        refresh_with_update: true,
    });
    let mut b = cfg("bob", 5070, 2);
    b.timers = Some(SessionTimers {
        interval: 1800,
        min_se: 600,
        refresh_with_update: true,
    });
    let mut n = Net::new(a, b);
    n.call();
    assert_eq!(n.sent("B 422 INVITE"), 1);
    assert_eq!(n.sent("A INVITE"), 2);
    let now = n.now;
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    n.pump();
    assert_eq!(n.a().session_timer(), Some((600, true)));
}

#[test]
fn reliable_provisional_retransmits_then_gives_up() {
    let mut n = Net::pair();
    n.drop_method = Some((Side::A, "PRACK"));
    n.call();
    let now = n.now;
    n.b().ring(now).unwrap();
    n.advance(Duration::from_secs(40));
    // 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: seven sends before 64*T1.
    assert_eq!(n.sent("B 180 INVITE"), 7);
    assert_eq!(n.sent("B 504 INVITE"), 1);
    assert_eq!(n.b().state(), State::Terminated);
    assert_eq!(n.failed(Side::A), Some((Originator::Remote, 504)));
}

#[test]
fn missing_ack_ends_the_call_with_bye() {
    let mut n = Net::pair();
    n.drop_method = Some((Side::A, "ACK"));
    n.call();
    let now = n.now;
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    n.advance(Duration::from_secs(40));
    assert_eq!(n.sent("B BYE"), 1);
    assert_eq!(n.failed(Side::B), Some((Originator::Remote, 408)));
    assert_eq!(n.b().state(), State::Terminated);
    assert_eq!(n.a().state(), State::Terminated);
}

#[test]
fn end_while_accepting_waits_for_the_ack() {
    let mut n = Net::pair();
    n.call();
    let now = n.now;
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    // Take the 200 out of Bob without delivering it yet.
    let mut acts = Vec::new();
    while let Some(a) = n.b().poll_action() {
        acts.push(a);
    }
    n.b().end(now).unwrap();
    assert!(n.b().poll_action().is_none(), "no BYE before the ACK");
    for a in acts {
        n.out(Side::B, a);
    }
    n.pump();
    assert_eq!(n.sent("B BYE"), 1);
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.b().state(), State::Terminated);
    assert_eq!(n.ended(Side::A).unwrap().0, Originator::Remote);
}

fn raw_invite(body: &str, content_type: &str) -> SipMessage {
    let text = format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:5999>\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    SipMessage::parse_datagram(text.as_bytes(), &Default::default()).unwrap()
}

#[test]
fn malformed_offers_are_refused_with_the_reason() {
    let bad = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n";
    let r = InviteSession::incoming(
        cfg("bob", 5070, 2),
        TxKey(1),
        raw_invite(bad, "application/sdp"),
    )
    .err()
    .unwrap();
    let (code, reason) = r.status().unwrap();
    assert_eq!(code, 400);
    assert!(
        reason.contains("line 5") && reason.contains("port"),
        "{reason}"
    );
    let r = InviteSession::incoming(
        cfg("bob", 5070, 2),
        TxKey(1),
        raw_invite("hello", "text/plain"),
    )
    .err()
    .unwrap();
    assert_eq!(r.status().unwrap().0, 415);
    let ok = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let s = InviteSession::incoming(
        cfg("bob", 5070, 2),
        TxKey(1),
        raw_invite(ok, "application/sdp"),
    )
    .unwrap();
    assert_eq!(s.state(), State::Incoming);
    assert_eq!(s.remote_identity(), Some("<sip:x@127.0.0.1>;tag=1"));
}

#[test]
fn reoffer_with_fewer_streams_gets_488_and_the_call_stays() {
    let mut n = Net::established();
    // Build a re-INVITE by hand from Alice's dialog with a bad offer.
    let now = n.now;
    n.a()
        .propose(now, sdp(&[("audio", 4000)], Direction::SendRecv))
        .unwrap();
    let Some(Action::Send {
        id, mut request, ..
    }) = n.a().poll_action()
    else {
        panic!()
    };
    let bad =
        SessionDescription::parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n").unwrap();
    request.set_body(bad.to_bytes());
    n.queue.push_back(Msg::Request {
        from: Side::A,
        id,
        req: request,
    });
    n.pump();
    assert_eq!(n.sent("B 488 INVITE"), 1);
    assert_eq!(n.b().state(), State::Established);
    assert_eq!(n.a().state(), State::Established);
}

#[test]
fn bye_and_reinvite_for_a_finished_dialog_get_481() {
    let mut n = Net::established();
    let now = n.now;
    n.b().end(now).unwrap();
    n.pump();
    assert_eq!(n.a().state(), State::Terminated);
    // A late re-INVITE from Bob's side of the old dialog.
    let mut late = n.s[1].take().unwrap();
    late.state = State::Established;
    late.end_reason = None;
    n.s[1] = Some(late);
    n.b()
        .propose(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    n.pump();
    assert_eq!(n.sent("A 481 INVITE"), 1);
}

#[test]
fn an_observer_may_end_the_session_when_it_starts() {
    let mut n = Net::pair();
    n.call();
    let now = n.now;
    n.b()
        .accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    // Deliver until Alice reports Confirmed, then end from "inside" it.
    n.pump();
    assert!(n.events[0]
        .iter()
        .any(|e| matches!(e, Event::Confirmed { .. })));
    n.a().end(now).unwrap();
    n.pump();
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.b().state(), State::Terminated);
}

#[test]
fn offerless_invite_gets_the_answer_in_the_ack() {
    let mut n = Net::pair();
    let now = n.now;
    // Alice's INVITE without a body, built from a connect() then stripped.
    let target = Uri::parse("sip:bob@127.0.0.1:5070").unwrap();
    n.a()
        .connect(
            now,
            target,
            "<sip:bob@127.0.0.1>",
            vec![],
            sdp(&[("audio", 4000)], Direction::SendRecv),
        )
        .unwrap();
    let Some(Action::Send { request, .. }) = n.a().poll_action() else {
        panic!()
    };
    let mut req = request;
    req.set_body(Vec::new());
    req.remove_header(HeaderName::ContentType);
    let mut b = InviteSession::incoming(cfg("bob", 5070, 2), TxKey(9), req).unwrap();
    assert!(b.remote_sdp().is_none());
    b.accept(now, sdp(&[("audio", 5000)], Direction::SendRecv))
        .unwrap();
    while b.poll_action().is_some() {}
    let inv = String::from_utf8(b.initial_request().unwrap().to_bytes()).unwrap();
    let text = inv
        .replacen("INVITE sip", "ACK sip", 1)
        .replace(" INVITE\r\n", " ACK\r\n");
    let mut ack = SipMessage::parse_datagram(text.as_bytes(), &Default::default()).unwrap();
    ack.push_header("Content-Type", "application/sdp").unwrap();
    ack.set_body(sdp(&[("audio", 4000)], Direction::SendRecv).to_bytes());
    b.handle_request(now, None, ack);
    assert_eq!(b.state(), State::Established);
    assert_eq!(b.remote_sdp().unwrap().media[0].port, 4000);
}

#[test]
fn ending_in_every_remaining_state() {
    // Incoming: the callee ends before answering: 603, both sides end.
    let mut n = Net::pair();
    n.call();
    let now = n.now;
    n.b().end(now).unwrap();
    n.pump();
    assert_eq!(n.sent("B 603 INVITE"), 1);
    assert_eq!(n.failed(Side::A), Some((Originator::Remote, 603)));
    assert_eq!(n.b().state(), State::Terminated);

    // Proposing: our re-INVITE is out; BYE goes anyway.
    let mut n = Net::established();
    let now = n.now;
    n.a()
        .propose(now, sdp(&[("audio", 4000)], Direction::SendOnly))
        .unwrap();
    n.a().end(now).unwrap();
    n.pump();
    assert_eq!(n.sent("A BYE"), 1);
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.b().state(), State::Terminated);

    // ReceivedProposal: the pending re-INVITE gets 487, then BYE.
    let mut n = Net::established();
    let now = n.now;
    n.a()
        .propose(now, sdp(&[("audio", 4000)], Direction::SendOnly))
        .unwrap();
    n.pump();
    assert_eq!(n.b().state(), State::ReceivedProposal);
    n.b().end(now).unwrap();
    n.pump();
    assert_eq!(n.sent("B 487 INVITE"), 1);
    assert_eq!(n.sent("B BYE"), 1);
    assert!(n.events[0]
        .iter()
        .any(|e| matches!(e, Event::ProposalRejected { code: 487, .. })));
    assert_eq!(n.a().state(), State::Terminated);
    assert_eq!(n.b().state(), State::Terminated);

    // Terminating: a second end is refused.
    let mut n = Net::established();
    let now = n.now;
    n.a().end(now).unwrap();
    assert!(n.a().end(now).is_err());
}

/// The INVITE the session wants sent now.
fn sent_invite(s: &mut InviteSession) -> (ReqId, SipMessage) {
    while let Some(a) = s.poll_action() {
        if let Action::Send { id, request, .. } = a {
            if request.method() == Some("INVITE") {
                return (id, request);
            }
        }
    }
    panic!("no INVITE sent");
}

fn challenge(req: &SipMessage, code: u16, nonce: &str) -> SipMessage {
    let (reason, header) = if code == 407 {
        ("Proxy Authentication Required", "Proxy-Authenticate")
    } else {
        ("Unauthorized", "WWW-Authenticate")
    };
    let mut r =
        crate::proto::sip::screen::build_response(req, code, reason, Some("proxy")).unwrap();
    r.push_header(
        header,
        &format!("Digest realm=\"example.com\", nonce=\"{nonce}\", qop=\"auth\""),
    )
    .unwrap();
    r
}

#[test]
fn challenged_invite_is_sent_again_with_the_answer() {
    let mut c = cfg("alice", 5060, 7);
    c.credentials = Some(crate::proto::sip::auth::Credentials {
        realm: None,
        username: "alice".into(),
        password: "s3cret".into(),
    });
    let mut s = InviteSession::outgoing(c);
    let now = Instant::now();
    s.connect(
        now,
        Uri::parse("sip:bob@example.com").unwrap(),
        "<sip:bob@example.com>",
        vec!["<sip:proxy.example.com;lr>".into()],
        sdp(&[("audio", 4000)], Direction::SendRecv),
    )
    .unwrap();
    let (id1, inv1) = sent_invite(&mut s);
    s.handle_response(now, id1, Outcome::Response(challenge(&inv1, 407, "n1")));
    let (id2, inv2) = sent_invite(&mut s);
    // The same INVITE (dialog identifiers, route, offer), the next CSeq,
    // a new branch, and the answer for the proxy's realm.
    assert_eq!(inv2.cseq().unwrap(), (2, "INVITE"));
    assert_eq!(
        inv2.header(HeaderName::CallId),
        inv1.header(HeaderName::CallId)
    );
    assert_eq!(inv2.header(HeaderName::From), inv1.header(HeaderName::From));
    assert_eq!(
        inv2.header(HeaderName::Route),
        inv1.header(HeaderName::Route)
    );
    assert_eq!(inv2.body(), inv1.body());
    assert_ne!(inv2.header(HeaderName::Via), inv1.header(HeaderName::Via));
    assert_eq!(inv2.header_items(HeaderName::Contact).len(), 1);
    let auth = inv2.header(HeaderName::ProxyAuthorization).unwrap();
    assert!(
        auth.contains("username=\"alice\"") && auth.contains("nonce=\"n1\""),
        "{auth}"
    );
    assert_eq!(s.state(), State::Connecting);
    // The callee asks too (401): answered once more.
    s.handle_response(now, id2, Outcome::Response(challenge(&inv2, 401, "n2")));
    let (id3, inv3) = sent_invite(&mut s);
    assert_eq!(inv3.cseq().unwrap(), (3, "INVITE"));
    assert!(inv3.header(HeaderName::Authorization).is_some());
    // A third challenge means the answer is not accepted: the call fails
    // with it, no loop.
    s.handle_response(now, id3, Outcome::Response(challenge(&inv3, 407, "n3")));
    assert!(s.poll_action().is_none());
    let failed =
        std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Failed { code: 407, .. }));
    assert!(failed);
}

#[test]
fn challenged_invite_without_credentials_fails() {
    let mut s = InviteSession::outgoing(cfg("alice", 5060, 8));
    let now = Instant::now();
    s.connect(
        now,
        Uri::parse("sip:bob@example.com").unwrap(),
        "<sip:bob@example.com>",
        vec![],
        sdp(&[("audio", 4000)], Direction::SendRecv),
    )
    .unwrap();
    let (id, inv) = sent_invite(&mut s);
    s.handle_response(now, id, Outcome::Response(challenge(&inv, 401, "n1")));
    assert!(s.poll_action().is_none());
    let failed =
        std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Failed { code: 401, .. }));
    assert!(failed);
}
