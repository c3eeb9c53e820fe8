//! The INVITE session state machine, sans-IO.
//!
//! It speaks SIP messages, not bytes: requests go out as [`Action::Send`]
//! (the driver runs the client transaction and reports back with
//! [`InviteSession::handle_response`]), responses as [`Action::Respond`] on a
//! server transaction key, ACKs for 2xx as [`Action::SendAck`]. SDP goes in
//! and out as parsed descriptions; deciding what to offer or answer belongs
//! to the layer that owns the media streams. This core numbers `o=`, checks
//! the shape of answers and new offers, and runs the timers: 491 retry
//! (RFC 3261 14.1), session refresh and expiry (RFC 4028), reliable
//! provisional retransmission (RFC 3262), and the wait after CANCEL.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::splitmix;
use crate::proto::sdp::offer_answer::{check_answer, check_reoffer, same_content, Versioner};
use crate::proto::sdp::SessionDescription;
use crate::proto::sip::dialog::{Dialog, DialogId, RequestCheck};
use crate::proto::sip::screen::build_response;
use crate::proto::sip::transaction::{build_cancel, TxKey};
use crate::proto::sip::values::parse_params;
use crate::proto::sip::{HeaderName, SipMessage, Uri};

/// The methods a session answers inside its dialog.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, MESSAGE";

/// RFC 4028 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimers {
    /// The Session-Expires we ask for, seconds.
    pub interval: u32,
    /// The smallest interval we accept (Min-SE), at least 90.
    pub min_se: u32,
    /// Refresh with UPDATE when the peer allows it (else re-INVITE).
    pub refresh_with_update: bool,
}

impl Default for SessionTimers {
    fn default() -> Self {
        SessionTimers {
            interval: 1800,
            min_se: 90,
            refresh_with_update: true,
        }
    }
}

/// Who we are in this session and how we talk.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The From of our requests (name-addr, no tag).
    pub local_identity: String,
    /// The Contact value (name-addr).
    pub contact: String,
    /// The Via value before `;branch` (e.g. `SIP/2.0/UDP 192.0.2.1:5060`).
    pub via: String,
    pub user_agent: String,
    /// None: no session timer of our own (we still honour the peer's).
    pub timers: Option<SessionTimers>,
    /// Offer and honour reliable provisional responses (RFC 3262).
    pub rel100: bool,
    pub t1: Duration,
    /// Seeds tags, branches, Call-ID, `o=` and the 491 retry delays.
    pub seed: u64,
    /// What answers a 401/407 to our INVITE (the account's credentials).
    pub credentials: Option<crate::proto::sip::auth::Credentials>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            local_identity: "<sip:anonymous@anonymous.invalid>".into(),
            contact: "<sip:anonymous@127.0.0.1>".into(),
            via: "SIP/2.0/UDP 127.0.0.1:5060".into(),
            user_agent: concat!("sipsimple/", env!("CARGO_PKG_VERSION")).into(),
            timers: Some(SessionTimers::default()),
            rel100: true,
            t1: Duration::from_millis(500),
            seed: 0x5eed,
            credentials: None,
        }
    }
}

/// The session states (SipMiddlewareApi Session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Null,
    Connecting,
    Incoming,
    Accepting,
    Established,
    Proposing,
    ReceivedProposal,
    Terminating,
    Terminated,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Null => "NULL",
            State::Connecting => "connecting",
            State::Incoming => "incoming",
            State::Accepting => "accepting",
            State::Established => "established",
            State::Proposing => "proposing",
            State::ReceivedProposal => "received_proposal",
            State::Terminating => "terminating",
            State::Terminated => "terminated",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Originator {
    Local,
    Remote,
}

impl Originator {
    pub fn as_str(self) -> &'static str {
        match self {
            Originator::Local => "local",
            Originator::Remote => "remote",
        }
    }
}

/// Identifies one request we asked the driver to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId(pub u64);

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    Uri(Uri),
    /// Where request `ReqId` went (CANCEL follows its INVITE).
    SameAs(ReqId),
}

/// Work for the driver.
#[derive(Debug, Clone)]
pub enum Action {
    Send {
        id: ReqId,
        request: SipMessage,
        next_hop: Hop,
    },
    SendAck {
        ack: SipMessage,
        next_hop: Uri,
    },
    Respond {
        key: TxKey,
        response: SipMessage,
    },
}

/// What a client transaction ended with, as the driver saw it.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response(SipMessage),
    /// No response: timeout (408) or transport failure (503).
    Failed {
        code: u16,
        reason: String,
    },
}

/// What happened, for the layer above.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StateChanged {
        old: State,
        new: State,
    },
    /// An outgoing session got a provisional response.
    Provisional {
        code: u16,
        reason: String,
    },
    /// The INVITE was answered (2xx sent or received): SIPSessionWillStart.
    Answered {
        local: SessionDescription,
        remote: Option<SessionDescription>,
    },
    /// ACK sent or received: SIPSessionDidStart.
    Confirmed {
        remote: Option<SessionDescription>,
    },
    /// The peer offers a change (None: it asks us for an offer).
    GotProposal {
        offer: Option<SessionDescription>,
    },
    ProposalAccepted {
        proposer: Originator,
        local: SessionDescription,
        remote: SessionDescription,
    },
    ProposalRejected {
        proposer: Originator,
        code: u16,
        reason: String,
    },
    /// A session that never started failed (always followed by Ended).
    Failed {
        originator: Originator,
        code: u16,
        reason: String,
    },
    Ended {
        originator: Originator,
        code: u16,
        reason: String,
    },
}

/// A status a refusal may carry: a final non-2xx (300-699).
pub fn check_refusal(code: u16) -> Result<(), SessionError> {
    if (300..700).contains(&code) {
        Ok(())
    } else {
        Err(SessionError::InvalidArgument(format!(
            "{code} is not a final error status (300-699)"
        )))
    }
}

/// A command refused in the current state; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{what} is not allowed in state {state}")]
    InvalidState { what: &'static str, state: State },
    #[error("{0}")]
    InvalidArgument(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// RFC 3261 14.1: resend a re-INVITE refused with 491.
    Retry491,
    /// RFC 4028 10: refresh at half the interval (we are the refresher).
    Refresh,
    /// RFC 4028 10: BYE when no refresh came (interval minus min(32, SE/3)).
    Expire,
    /// RFC 3262 3: retransmit the reliable provisional (T1, doubling).
    Rel1xx,
    /// RFC 3262 3: no PRACK within 64*T1: reject the INVITE.
    Rel1xxGiveUp,
    /// RFC 3261 9.1: no final response 64*T1 after CANCEL: give up.
    CancelGiveUp,
}

#[derive(Debug, Clone)]
enum Pending {
    InitialInvite,
    ReInvite { refresh: bool },
    Update,
    Bye,
    Cancel,
    Prack,
    Other,
}

/// Our reliable provisional response waiting for its PRACK.
#[derive(Debug, Clone)]
struct Reliable {
    rseq: u32,
    response: SipMessage,
    interval: Duration,
}

/// A request from the peer we have not answered yet.
#[derive(Debug, Clone)]
struct ServerRequest {
    key: TxKey,
    request: SipMessage,
}

/// The negotiated session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ActiveTimer {
    interval: u32,
    we_refresh: bool,
}

pub struct InviteSession {
    cfg: SessionConfig,
    state: State,
    direction: Option<Originator>,
    rng: u64,
    call_id: String,
    local_tag: String,
    dialog: Option<Dialog>,
    versioner: Versioner,
    local_sdp: Option<SessionDescription>,
    remote_sdp: Option<SessionDescription>,
    remote_user_agent: Option<String>,
    remote_allows_update: bool,
    // Client side of INVITEs.
    invite: Option<(ReqId, SipMessage)>,
    route: Vec<String>,
    first_hop: Option<Uri>,
    got_provisional: bool,
    cancel_wanted: bool,
    cancel_sent: bool,
    prack_seen: HashMap<String, u32>,
    last_ack: Option<(u32, SipMessage, Uri)>,
    se_retry: bool,
    /// Answers challenges to the initial INVITE; how many were answered.
    auth: crate::proto::sip::auth::DigestClient,
    auth_tries: u32,
    // Server side.
    server_invite: Option<ServerRequest>,
    reliable: Option<Reliable>,
    next_rseq: u32,
    awaiting_ack: Option<u32>,
    bye_after_ack: bool,
    offer_in_ack: bool,
    remote_proposal: Option<ServerRequest>,
    // Our proposals.
    proposal: Option<(ReqId, SessionDescription)>,
    deferred: Option<SessionDescription>,
    retries_491: u32,
    // RFC 4028.
    session_timer: Option<ActiveTimer>,
    timers: Vec<(Instant, Timer)>,
    pending: HashMap<ReqId, Pending>,
    next_id: u64,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    end_reason: Option<(Originator, u16, String)>,
}

fn has_option(msg: &SipMessage, name: HeaderName, tag: &str) -> bool {
    msg.header_items(name)
        .iter()
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// `Session-Expires: 1800;refresher=uac` → (1800, Some("uac")).
fn session_expires(msg: &SipMessage) -> Option<(u32, Option<String>)> {
    let v = msg.header(HeaderName::SessionExpires)?;
    let (n, params) = v.split_once(';').unwrap_or((v, ""));
    let n: u32 = n.trim().parse().ok()?;
    let refresher = parse_params(params).ok().and_then(|ps| {
        ps.into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("refresher"))
            .and_then(|(_, v)| v.map(|v| v.to_ascii_lowercase()))
    });
    Some((n, refresher))
}

fn min_se(msg: &SipMessage) -> Option<u32> {
    let v = msg.header(HeaderName::MinSE)?;
    v.split(';').next()?.trim().parse().ok()
}

fn is_sdp(msg: &SipMessage) -> bool {
    msg.header(HeaderName::ContentType).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    })
}

/// The SDP body of a message: None without a body, Err with the 4xx to send.
fn sdp_body(msg: &SipMessage) -> Result<Option<SessionDescription>, (u16, String)> {
    if msg.body().is_empty() {
        return Ok(None);
    }
    if !is_sdp(msg) {
        return Err((415, "Unsupported Media Type".into()));
    }
    SessionDescription::parse(msg.body())
        .map(Some)
        .map_err(|e| (400, format!("Bad SDP ({e})")))
}

impl InviteSession {
    fn new(cfg: SessionConfig, direction: Originator) -> InviteSession {
        let auth = crate::proto::sip::auth::DigestClient::new(
            cfg.credentials.clone().into_iter().collect(),
        );
        let mut rng = cfg.seed;
        let call_id = format!("{:016x}{:016x}", splitmix(&mut rng), splitmix(&mut rng));
        let local_tag = format!("{:016x}", splitmix(&mut rng));
        let versioner = Versioner::new(splitmix(&mut rng) >> 34);
        InviteSession {
            cfg,
            state: State::Null,
            direction: Some(direction),
            rng,
            call_id,
            local_tag,
            dialog: None,
            versioner,
            local_sdp: None,
            remote_sdp: None,
            remote_user_agent: None,
            remote_allows_update: false,
            invite: None,
            route: Vec::new(),
            first_hop: None,
            got_provisional: false,
            cancel_wanted: false,
            cancel_sent: false,
            prack_seen: HashMap::new(),
            last_ack: None,
            se_retry: false,
            auth,
            auth_tries: 0,
            server_invite: None,
            reliable: None,
            next_rseq: 1,
            awaiting_ack: None,
            bye_after_ack: false,
            offer_in_ack: false,
            remote_proposal: None,
            proposal: None,
            deferred: None,
            retries_491: 0,
            session_timer: None,
            timers: Vec::new(),
            pending: HashMap::new(),
            next_id: 1,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            end_reason: None,
        }
    }

    /// A session we will start with [`connect`](Self::connect).
    pub fn outgoing(cfg: SessionConfig) -> InviteSession {
        InviteSession::new(cfg, Originator::Local)
    }

    /// A session for an INVITE outside any dialog. On Err, send the
    /// response on `key` and forget the request.
    pub fn incoming(
        cfg: SessionConfig,
        key: TxKey,
        request: SipMessage,
    ) -> Result<InviteSession, SipMessage> {
        let mut s = InviteSession::new(cfg, Originator::Remote);
        let refuse =
            |code: u16, reason: &str, s: &InviteSession| s.response_to(&request, code, reason);
        let offer = match sdp_body(&request) {
            Ok(o) => o,
            Err((code, reason)) => return Err(refuse(code, &reason, &s)),
        };
        if has_option(&request, HeaderName::Require, "100rel") && !s.cfg.rel100 {
            let mut r = refuse(420, "Bad Extension", &s);
            let _ = r.push_header("Unsupported", "100rel");
            return Err(r);
        }
        if let Err(min) = s.check_interval(&request) {
            let mut r = refuse(422, "Session Interval Too Small", &s);
            let _ = r.push_header("Min-SE", &min.to_string());
            return Err(r);
        }
        let Some(call_id) = request.call_id().map(str::to_string) else {
            return Err(refuse(400, "Missing Call-ID", &s));
        };
        s.call_id = call_id;
        match Dialog::from_uas(&request, &s.local_tag) {
            Ok(d) => s.dialog = Some(d),
            Err(e) => return Err(refuse(400, &format!("Bad Request ({e})"), &s)),
        }
        s.remote_user_agent = request.header(HeaderName::UserAgent).map(str::to_string);
        s.remote_allows_update = has_option(&request, HeaderName::Allow, "UPDATE");
        s.remote_sdp = offer;
        s.server_invite = Some(ServerRequest { key, request });
        s.set_state(State::Incoming);
        Ok(s)
    }

    // ----- accessors -----

    pub fn state(&self) -> State {
        self.state
    }

    pub fn direction(&self) -> Option<Originator> {
        self.direction
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    pub fn dialog_id(&self) -> Option<&DialogId> {
        self.dialog.as_ref().map(|d| &d.id)
    }

    pub fn local_sdp(&self) -> Option<&SessionDescription> {
        self.local_sdp.as_ref()
    }

    pub fn remote_sdp(&self) -> Option<&SessionDescription> {
        self.remote_sdp.as_ref()
    }

    /// The offer in the peer's pending proposal.
    pub fn pending_offer(&self) -> Option<SessionDescription> {
        self.remote_proposal
            .as_ref()
            .and_then(|p| sdp_body(&p.request).ok().flatten())
    }

    pub fn remote_user_agent(&self) -> Option<&str> {
        self.remote_user_agent.as_deref()
    }

    /// The peer's identity (the From of an incoming INVITE, the To of
    /// ours), as written.
    pub fn remote_identity(&self) -> Option<&str> {
        self.dialog.as_ref().map(|d| d.remote.as_str())
    }

    pub fn local_identity(&self) -> Option<&str> {
        self.dialog.as_ref().map(|d| d.local.as_str())
    }

    /// The negotiated session interval and whether we refresh.
    pub fn session_timer(&self) -> Option<(u32, bool)> {
        self.session_timer.map(|t| (t.interval, t.we_refresh))
    }

    /// The first INVITE of an incoming session.
    pub fn initial_request(&self) -> Option<&SipMessage> {
        self.server_invite.as_ref().map(|s| &s.request)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().map(|(t, _)| *t).min()
    }

    /// The server transaction keys this session answers (for routing a
    /// CANCEL or an ACK timeout to it).
    pub fn server_keys(&self) -> Vec<TxKey> {
        self.server_invite
            .iter()
            .chain(self.remote_proposal.iter())
            .map(|s| s.key)
            .collect()
    }

    // ----- commands -----

    fn refuse(&self, what: &'static str) -> SessionError {
        SessionError::InvalidState {
            what,
            state: self.state,
        }
    }

    /// Send the INVITE. `to` is the To name-addr, `routes` Route values
    /// (outbound proxy first).
    pub fn connect(
        &mut self,
        _now: Instant,
        target: Uri,
        to: &str,
        routes: Vec<String>,
        mut offer: SessionDescription,
    ) -> Result<(), SessionError> {
        if self.state != State::Null || self.direction != Some(Originator::Local) {
            return Err(self.refuse("connect"));
        }
        let first_hop = match routes.first() {
            Some(r) => crate::proto::sip::values::parse_name_addr(r)
                .map(|n| n.uri)
                .map_err(|_| SessionError::InvalidArgument(format!("bad route {r}")))?,
            None => target.clone(),
        };
        self.versioner.stamp(&mut offer);
        let mut m = SipMessage::request("INVITE", &target)
            .map_err(|e| SessionError::InvalidArgument(e.to_string()))?;
        let from = format!("{};tag={}", self.cfg.local_identity, self.local_tag);
        let via = self.via();
        let push = |m: &mut SipMessage, n: &str, v: &str| {
            m.push_header(n, v)
                .map_err(|e| SessionError::InvalidArgument(format!("{n}: {e}")))
        };
        push(&mut m, "Via", &via)?;
        push(&mut m, "Max-Forwards", "70")?;
        for r in &routes {
            push(&mut m, "Route", r)?;
        }
        push(&mut m, "From", &from)?;
        push(&mut m, "To", to)?;
        push(&mut m, "Call-ID", &self.call_id.clone())?;
        push(&mut m, "CSeq", "1 INVITE")?;
        self.route = routes;
        self.first_hop = Some(first_hop);
        self.local_sdp = Some(offer.clone());
        self.finish_invite(m, Some(&offer), false)?;
        self.set_state(State::Connecting);
        Ok(())
    }

    /// Common INVITE headers, body, and sending.
    fn finish_invite(
        &mut self,
        mut m: SipMessage,
        sdp: Option<&SessionDescription>,
        refresh: bool,
    ) -> Result<(), SessionError> {
        self.common_headers(&mut m, true)
            .map_err(SessionError::InvalidArgument)?;
        if let Some(t) = self.cfg.timers {
            let interval = self.session_timer.map(|s| s.interval).unwrap_or(t.interval);
            let se = match self.session_timer {
                Some(st) if self.dialog.is_some() => format!(
                    "{interval};refresher={}",
                    if st.we_refresh { "uac" } else { "uas" }
                ),
                _ => interval.to_string(),
            };
            let _ = m.push_header("Session-Expires", &se);
            let _ = m.push_header("Min-SE", &t.min_se.to_string());
        }
        if let Some(sdp) = sdp {
            let _ = m.push_header("Content-Type", "application/sdp");
            m.set_body(sdp.to_bytes());
        }
        let id = self.next_req();
        let hop = if self.dialog.is_some() && self.state != State::Connecting {
            self.dialog_hop()
        } else {
            self.first_hop.clone()
        };
        let Some(hop) = hop else {
            return Err(SessionError::InvalidArgument("no next hop".into()));
        };
        self.pending.insert(
            id,
            if self.state == State::Null || self.state == State::Connecting {
                Pending::InitialInvite
            } else {
                Pending::ReInvite { refresh }
            },
        );
        self.invite = Some((id, m.clone()));
        self.actions.push_back(Action::Send {
            id,
            request: m,
            next_hop: Hop::Uri(hop),
        });
        Ok(())
    }

    fn common_headers(&self, m: &mut SipMessage, contact: bool) -> Result<(), String> {
        if contact {
            m.push_header("Contact", &self.cfg.contact)
                .map_err(|e| e.to_string())?;
        }
        m.push_header("Allow", ALLOW).map_err(|e| e.to_string())?;
        let mut supported = vec!["timer"];
        if self.cfg.rel100 {
            supported.push("100rel");
        }
        m.push_header("Supported", &supported.join(", "))
            .map_err(|e| e.to_string())?;
        let ua = if m.is_request() {
            "User-Agent"
        } else {
            "Server"
        };
        m.push_header(ua, &self.cfg.user_agent)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Send 180 Ringing (reliably when the peer supports 100rel).
    pub fn ring(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.state != State::Incoming {
            return Err(self.refuse("send_ring_indication"));
        }
        if self.reliable.is_some() {
            // The previous reliable provisional is not acknowledged yet
            // (RFC 3262 3): one at a time.
            return Ok(());
        }
        let Some(si) = self.server_invite.clone() else {
            return Err(self.refuse("send_ring_indication"));
        };
        let mut r = self.response_to(&si.request, 180, "Ringing");
        let rel = self.cfg.rel100
            && (has_option(&si.request, HeaderName::Supported, "100rel")
                || has_option(&si.request, HeaderName::Require, "100rel"));
        if rel {
            let rseq = self.next_rseq;
            self.next_rseq += 1;
            let _ = r.push_header("Require", "100rel");
            let _ = r.push_header("RSeq", &rseq.to_string());
            self.reliable = Some(Reliable {
                rseq,
                response: r.clone(),
                interval: self.cfg.t1,
            });
            self.arm(now + self.cfg.t1, Timer::Rel1xx);
            self.arm(now + self.cfg.t1 * 64, Timer::Rel1xxGiveUp);
        }
        self.actions.push_back(Action::Respond {
            key: si.key,
            response: r,
        });
        Ok(())
    }

    /// Answer an incoming session with `sdp` (the answer, or our offer if
    /// the INVITE had none).
    pub fn accept(
        &mut self,
        now: Instant,
        mut sdp: SessionDescription,
    ) -> Result<(), SessionError> {
        if self.state != State::Incoming {
            return Err(self.refuse("accept"));
        }
        if let Some(offer) = &self.remote_sdp {
            check_answer(offer, &sdp).map_err(|e| SessionError::InvalidArgument(e.reason))?;
        }
        let Some(si) = self.server_invite.clone() else {
            return Err(self.refuse("accept"));
        };
        self.versioner.stamp(&mut sdp);
        let mut r = self.response_to(&si.request, 200, "OK");
        self.negotiate_timer_as_uas(now, &si.request, &mut r);
        let _ = r.push_header("Content-Type", "application/sdp");
        r.set_body(sdp.to_bytes());
        self.offer_in_ack = self.remote_sdp.is_none();
        self.local_sdp = Some(sdp.clone());
        self.stop_timer(Timer::Rel1xx);
        self.stop_timer(Timer::Rel1xxGiveUp);
        self.reliable = None;
        self.awaiting_ack = si.request.cseq().map(|c| c.0);
        self.actions.push_back(Action::Respond {
            key: si.key,
            response: r,
        });
        self.set_state(State::Accepting);
        self.events.push_back(Event::Answered {
            local: sdp,
            remote: self.remote_sdp.clone(),
        });
        Ok(())
    }

    /// Refuse an incoming session (486, 488, 603, ...).
    pub fn reject(&mut self, _now: Instant, code: u16, reason: &str) -> Result<(), SessionError> {
        if self.state != State::Incoming {
            return Err(self.refuse("reject"));
        }
        check_refusal(code)?;
        let Some(si) = self.server_invite.take() else {
            return Err(self.refuse("reject"));
        };
        self.respond(si.key, &si.request, code, reason);
        self.fail(Originator::Local, code, reason);
        Ok(())
    }

    /// End the session in whatever state it is (RFC 3261 9.1 and 15).
    pub fn end(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.state {
            State::Null | State::Terminating | State::Terminated => Err(self.refuse("end")),
            State::Connecting => {
                self.cancel_wanted = true;
                self.end_reason = Some((Originator::Local, 487, "Cancelled by the user".into()));
                if self.got_provisional {
                    self.send_cancel(now);
                }
                self.set_state(State::Terminating);
                Ok(())
            }
            State::Incoming => {
                let Some(si) = self.server_invite.take() else {
                    return Err(self.refuse("end"));
                };
                self.respond(si.key, &si.request, 603, "Decline");
                self.fail(Originator::Local, 603, "Decline");
                Ok(())
            }
            State::Accepting => {
                // No BYE before the ACK (RFC 3261 15).
                self.bye_after_ack = true;
                self.end_reason =
                    Some((Originator::Local, 200, "Session ended by the user".into()));
                self.set_state(State::Terminating);
                Ok(())
            }
            State::Established | State::Proposing | State::ReceivedProposal => {
                if let Some(rp) = self.remote_proposal.take() {
                    self.respond(rp.key, &rp.request, 487, "Request Terminated");
                }
                self.end_reason =
                    Some((Originator::Local, 200, "Session ended by the user".into()));
                self.send_bye();
                Ok(())
            }
        }
    }

    /// Offer a change (add, remove, hold): a re-INVITE.
    pub fn propose(
        &mut self,
        _now: Instant,
        offer: SessionDescription,
    ) -> Result<(), SessionError> {
        if self.state != State::Established || self.proposal.is_some() || self.deferred.is_some() {
            return Err(self.refuse("a proposal"));
        }
        if let Some(prev) = &self.local_sdp {
            let mut o = offer.clone();
            o.origin = prev.origin.clone();
            check_reoffer(prev, &o).map_err(|e| SessionError::InvalidArgument(e.reason))?;
        }
        self.retries_491 = 0;
        self.send_proposal(offer)?;
        self.set_state(State::Proposing);
        Ok(())
    }

    fn send_proposal(&mut self, mut offer: SessionDescription) -> Result<(), SessionError> {
        self.versioner.stamp(&mut offer);
        let via = self.via();
        let d = self.dialog.as_mut().ok_or(SessionError::InvalidState {
            what: "a proposal",
            state: self.state,
        })?;
        let m = d
            .create_request("INVITE", &via)
            .map_err(|e| SessionError::InvalidArgument(e.to_string()))?;
        self.finish_invite(m, Some(&offer), false)?;
        if let Some((id, _)) = &self.invite {
            self.proposal = Some((*id, offer));
        }
        Ok(())
    }

    /// Accept the peer's proposal with our answer (or our offer, when the
    /// re-INVITE had none).
    pub fn accept_proposal(
        &mut self,
        now: Instant,
        mut sdp: SessionDescription,
    ) -> Result<(), SessionError> {
        if self.state != State::ReceivedProposal {
            return Err(self.refuse("accept_proposal"));
        }
        let Some(rp) = self.remote_proposal.clone() else {
            return Err(self.refuse("accept_proposal"));
        };
        let offer = sdp_body(&rp.request).ok().flatten();
        if let Some(o) = &offer {
            check_answer(o, &sdp).map_err(|e| SessionError::InvalidArgument(e.reason))?;
        }
        self.remote_proposal = None;
        self.versioner.stamp(&mut sdp);
        let mut r = self.response_to(&rp.request, 200, "OK");
        self.negotiate_timer_as_uas(now, &rp.request, &mut r);
        let _ = r.push_header("Content-Type", "application/sdp");
        r.set_body(sdp.to_bytes());
        self.actions.push_back(Action::Respond {
            key: rp.key,
            response: r,
        });
        self.local_sdp = Some(sdp.clone());
        if rp.request.method() == Some("INVITE") {
            self.awaiting_ack = rp.request.cseq().map(|c| c.0);
            self.offer_in_ack = offer.is_none();
        }
        if let Some(o) = offer {
            self.remote_sdp = Some(o.clone());
            self.events.push_back(Event::ProposalAccepted {
                proposer: Originator::Remote,
                local: sdp,
                remote: o,
            });
        }
        self.after_proposal(now);
        Ok(())
    }

    /// Refuse the peer's proposal (488 by default); the session goes on.
    pub fn reject_proposal(
        &mut self,
        now: Instant,
        code: u16,
        reason: &str,
    ) -> Result<(), SessionError> {
        if self.state != State::ReceivedProposal {
            return Err(self.refuse("reject_proposal"));
        }
        check_refusal(code)?;
        let Some(rp) = self.remote_proposal.take() else {
            return Err(self.refuse("reject_proposal"));
        };
        self.respond(rp.key, &rp.request, code, reason);
        // The offer did not take: the previous remote description stands.
        self.events.push_back(Event::ProposalRejected {
            proposer: Originator::Remote,
            code,
            reason: reason.into(),
        });
        self.after_proposal(now);
        Ok(())
    }

    // ----- network input -----

    /// A request the dispatcher routed to this session (ACK: key None).
    pub fn handle_request(&mut self, now: Instant, key: Option<TxKey>, req: SipMessage) {
        let method = req.method().unwrap_or("").to_string();
        if method == "ACK" {
            self.handle_ack(now, &req);
            return;
        }
        let Some(key) = key else { return };
        let ordered = match self.dialog.as_mut() {
            Some(d) => matches!(d.handle_request(&req), RequestCheck::Ok),
            None => false,
        };
        if !ordered {
            let mut r = self.response_to(&req, 500, "Server Internal Error");
            let _ = r.push_header("Retry-After", "1");
            self.actions.push_back(Action::Respond { key, response: r });
            return;
        }
        if self.state == State::Terminated {
            self.respond(key, &req, 481, "Call/Transaction Does Not Exist");
            return;
        }
        match method.as_str() {
            "BYE" => self.handle_bye(key, &req),
            "INVITE" => self.handle_reinvite(now, key, req),
            "UPDATE" => self.handle_update(now, key, req),
            "PRACK" => self.handle_prack(now, key, &req),
            "OPTIONS" | "INFO" => {
                self.respond(key, &req, 200, "OK");
            }
            _ => {
                let mut r = self.response_to(&req, 405, "Method Not Allowed");
                let _ = r.push_header("Allow", ALLOW);
                self.actions.push_back(Action::Respond { key, response: r });
            }
        }
    }

    /// The peer cancelled the INVITE on server transaction `key`.
    pub fn handle_cancel(&mut self, now: Instant, key: TxKey) {
        if self.server_invite.as_ref().is_some_and(|s| s.key == key)
            && self.state == State::Incoming
        {
            let si = self.server_invite.take().expect("checked above");
            self.respond(si.key, &si.request, 487, "Request Terminated");
            self.fail(Originator::Remote, 487, "Cancelled by the caller");
        } else if self.remote_proposal.as_ref().is_some_and(|s| s.key == key) {
            let rp = self.remote_proposal.take().expect("checked above");
            self.respond(rp.key, &rp.request, 487, "Request Terminated");
            self.events.push_back(Event::ProposalRejected {
                proposer: Originator::Remote,
                code: 487,
                reason: "Proposal cancelled".into(),
            });
            self.after_proposal(now);
        }
    }

    /// Our 2xx to an INVITE got no ACK (Timer L/H): end the session with
    /// a BYE (RFC 3261 13.3.1.4).
    pub fn handle_ack_timeout(&mut self, _now: Instant) {
        if self.awaiting_ack.take().is_none() {
            return;
        }
        match self.state {
            State::Accepting => {
                self.events.push_back(Event::Failed {
                    originator: Originator::Remote,
                    code: 408,
                    reason: "No ACK received".into(),
                });
                self.end_reason = Some((Originator::Remote, 408, "No ACK received".into()));
                self.send_bye();
            }
            State::Terminating if self.bye_after_ack => {
                self.bye_after_ack = false;
                self.send_bye();
            }
            State::Terminated => {}
            _ => {
                self.end_reason = Some((Originator::Remote, 408, "No ACK received".into()));
                self.send_bye();
            }
        }
    }

    /// A response (or the lack of one) to request `id`.
    pub fn handle_response(&mut self, now: Instant, id: ReqId, outcome: Outcome) {
        let Some(kind) = self.pending.get(&id).cloned() else {
            // A 2xx retransmission (or a forked 2xx) after the first final
            // response: ACK it again, or ACK and BYE the other branch.
            if let Outcome::Response(r) = &outcome {
                let is_2xx = r.status().is_some_and(|(c, _)| (200..300).contains(&c));
                if is_2xx && r.cseq().is_some_and(|(_, m)| m == "INVITE") {
                    self.on_invite_2xx(now, id, r);
                }
            }
            return;
        };
        let (code, reason, resp) = match &outcome {
            Outcome::Response(r) => {
                let (c, reason) = r.status().unwrap_or((500, "Bad Response"));
                (c, reason.to_string(), Some(r))
            }
            Outcome::Failed { code, reason } => (*code, reason.clone(), None),
        };
        if code >= 200 {
            self.pending.remove(&id);
        }
        match kind {
            Pending::InitialInvite => self.on_invite_response(now, id, code, &reason, resp),
            Pending::ReInvite { refresh } => {
                self.on_reinvite_response(now, id, refresh, code, &reason, resp)
            }
            Pending::Update => {
                if (200..300).contains(&code) {
                    if let Some(r) = resp {
                        self.timer_from_response(now, r);
                    }
                } else if code == 408 || code == 481 {
                    self.dialog_gone(code, &reason);
                }
            }
            Pending::Bye => {
                if code >= 200 {
                    self.terminated();
                }
            }
            Pending::Cancel | Pending::Prack | Pending::Other => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let Some(i) = self.timers.iter().position(|(t, _)| *t <= now) else {
                return;
            };
            let (_, timer) = self.timers.swap_remove(i);
            match timer {
                Timer::Retry491 => {
                    if let Some(offer) = self.deferred.take() {
                        if self.state == State::Proposing && self.remote_proposal.is_none() {
                            if self.send_proposal(offer.clone()).is_err() {
                                self.proposal_failed(500, "Cannot retry the proposal");
                            }
                        } else {
                            // Busy with the peer's proposal: try again later.
                            self.deferred = Some(offer);
                            let d = self.glare_delay();
                            self.arm(now + d, Timer::Retry491);
                        }
                    }
                }
                Timer::Refresh => self.refresh(now),
                Timer::Expire => {
                    if !matches!(self.state, State::Terminating | State::Terminated) {
                        self.end_reason =
                            Some((Originator::Local, 408, "Session timer expired".into()));
                        if let Some(rp) = self.remote_proposal.take() {
                            self.respond(rp.key, &rp.request, 487, "Request Terminated");
                        }
                        self.send_bye();
                    }
                }
                Timer::Rel1xx => {
                    let again = match (self.reliable.as_mut(), &self.server_invite) {
                        (Some(rel), Some(si)) => {
                            rel.interval *= 2;
                            Some((si.key, rel.response.clone(), rel.interval))
                        }
                        _ => None,
                    };
                    if let Some((key, response, next)) = again {
                        self.actions.push_back(Action::Respond { key, response });
                        self.arm(now + next, Timer::Rel1xx);
                    }
                }
                Timer::Rel1xxGiveUp => {
                    if self.reliable.take().is_some() && self.state == State::Incoming {
                        if let Some(si) = self.server_invite.take() {
                            self.respond(si.key, &si.request, 504, "No PRACK Received");
                        }
                        self.fail(Originator::Remote, 504, "No PRACK received");
                    }
                }
                Timer::CancelGiveUp => {
                    if self.state == State::Terminating && self.cancel_sent {
                        self.terminated();
                    }
                }
            }
        }
    }

    // ----- internals -----

    fn next_req(&mut self) -> ReqId {
        let id = ReqId(self.next_id);
        self.next_id += 1;
        id
    }

    fn via(&mut self) -> String {
        format!(
            "{};branch=z9hG4bK{:016x};rport",
            self.cfg.via,
            splitmix(&mut self.rng)
        )
    }

    fn arm(&mut self, at: Instant, t: Timer) {
        self.stop_timer(t);
        self.timers.push((at, t));
    }

    fn stop_timer(&mut self, t: Timer) {
        self.timers.retain(|(_, x)| *x != t);
    }

    fn set_state(&mut self, new: State) {
        if new != self.state {
            let old = self.state;
            self.state = new;
            self.events.push_back(Event::StateChanged { old, new });
        }
    }

    fn dialog_hop(&self) -> Option<Uri> {
        self.dialog.as_ref().and_then(|d| d.next_hop().ok())
    }

    fn response_to(&self, req: &SipMessage, code: u16, reason: &str) -> SipMessage {
        let reason = reason.replace(['\r', '\n'], " ");
        let mut r = build_response(req, code, &reason, Some(&self.local_tag))
            .or_else(|_| build_response(req, code, "Error", Some(&self.local_tag)))
            .unwrap_or_else(|_| unreachable_response());
        let method = req.method().unwrap_or("");
        let contact = (method == "INVITE" && (101..300).contains(&code))
            || (method == "UPDATE" && (200..300).contains(&code));
        let _ = self.common_headers(&mut r, contact);
        r
    }

    fn respond(&mut self, key: TxKey, req: &SipMessage, code: u16, reason: &str) {
        let r = self.response_to(req, code, reason);
        self.actions.push_back(Action::Respond { key, response: r });
    }

    /// The session is over: Failed (if it never started) and Ended.
    fn fail(&mut self, originator: Originator, code: u16, reason: &str) {
        self.events.push_back(Event::Failed {
            originator,
            code,
            reason: reason.into(),
        });
        self.end_reason = Some((originator, code, reason.into()));
        self.terminated();
    }

    fn terminated(&mut self) {
        if self.state == State::Terminated {
            return;
        }
        self.timers.clear();
        self.reliable = None;
        self.deferred = None;
        self.set_state(State::Terminated);
        let (originator, code, reason) =
            self.end_reason
                .take()
                .unwrap_or((Originator::Local, 200, "Session ended".into()));
        self.events.push_back(Event::Ended {
            originator,
            code,
            reason,
        });
    }

    fn send_bye(&mut self) {
        let via = self.via();
        let Some(d) = self.dialog.as_mut() else {
            self.terminated();
            return;
        };
        let Ok(mut m) = d.create_request("BYE", &via) else {
            self.terminated();
            return;
        };
        let _ = m.push_header("User-Agent", &self.cfg.user_agent);
        let Some(hop) = self.dialog_hop() else {
            self.terminated();
            return;
        };
        let id = self.next_req();
        self.pending.insert(id, Pending::Bye);
        self.actions.push_back(Action::Send {
            id,
            request: m,
            next_hop: Hop::Uri(hop),
        });
        self.timers.clear();
        self.set_state(State::Terminating);
    }

    fn send_cancel(&mut self, now: Instant) {
        if self.cancel_sent {
            return;
        }
        let Some((invite_id, invite)) = self.invite.clone() else {
            return;
        };
        let Some(c) = build_cancel(&invite) else {
            return;
        };
        self.cancel_sent = true;
        let id = self.next_req();
        self.pending.insert(id, Pending::Cancel);
        self.actions.push_back(Action::Send {
            id,
            request: c,
            next_hop: Hop::SameAs(invite_id),
        });
        self.arm(now + self.cfg.t1 * 64, Timer::CancelGiveUp);
    }

    /// Send the ACK for a 2xx to INVITE CSeq `seq` and remember it.
    fn send_ack(&mut self, seq: u32) {
        let via = self.via();
        let Some(d) = self.dialog.as_ref() else {
            return;
        };
        let Ok(ack) = d.create_ack(seq, &via) else {
            return;
        };
        let Ok(hop) = d.next_hop() else { return };
        self.last_ack = Some((seq, ack.clone(), hop.clone()));
        self.actions
            .push_back(Action::SendAck { ack, next_hop: hop });
    }

    /// A 2xx we already acknowledged came again: the same ACK again.
    fn resend_ack(&mut self, r: &SipMessage) {
        let ok = r.status().is_some_and(|(c, _)| (200..300).contains(&c));
        let seq = r.cseq().filter(|(_, m)| *m == "INVITE").map(|c| c.0);
        if let (true, Some(seq), Some((s, ack, hop))) = (ok, seq, &self.last_ack) {
            if seq == *s {
                self.actions.push_back(Action::SendAck {
                    ack: ack.clone(),
                    next_hop: hop.clone(),
                });
            }
        }
    }

    /// Session-Expires below our Min-SE: Err(our Min-SE) for a 422.
    fn check_interval(&self, req: &SipMessage) -> Result<(), u32> {
        match (self.cfg.timers, session_expires(req)) {
            (Some(t), Some((se, _))) if se < t.min_se => Err(t.min_se),
            (None, Some((se, _))) if se < 90 => Err(90),
            _ => Ok(()),
        }
    }

    /// Pick the session timer for our 2xx to `req` (RFC 4028 9) and put
    /// Session-Expires (and Require: timer) on `r`.
    fn negotiate_timer_as_uas(&mut self, now: Instant, req: &SipMessage, r: &mut SipMessage) {
        let peer_supports = has_option(req, HeaderName::Supported, "timer")
            || has_option(req, HeaderName::Require, "timer");
        let chosen = match (session_expires(req), self.cfg.timers) {
            (Some((se, refresher)), _) => {
                let uac_refreshes = match refresher.as_deref() {
                    Some("uas") => false,
                    Some("uac") => true,
                    _ => peer_supports,
                };
                Some((se, uac_refreshes))
            }
            (None, Some(t)) => Some((
                self.session_timer.map(|s| s.interval).unwrap_or(t.interval),
                peer_supports,
            )),
            (None, None) => None,
        };
        let Some((se, uac_refreshes)) = chosen else {
            self.session_timer = None;
            self.stop_timer(Timer::Refresh);
            self.stop_timer(Timer::Expire);
            return;
        };
        let refresher = if uac_refreshes { "uac" } else { "uas" };
        let _ = r.push_header("Session-Expires", &format!("{se};refresher={refresher}"));
        if peer_supports {
            let _ = r.push_header("Require", "timer");
        }
        self.start_session_timer(now, se, !uac_refreshes);
    }

    fn timer_from_response(&mut self, now: Instant, r: &SipMessage) {
        match session_expires(r) {
            Some((se, refresher)) if se > 0 => {
                let we = refresher.as_deref() != Some("uas");
                self.start_session_timer(now, se, we);
            }
            _ => {
                self.session_timer = None;
                self.stop_timer(Timer::Refresh);
                self.stop_timer(Timer::Expire);
            }
        }
    }

    fn start_session_timer(&mut self, now: Instant, interval: u32, we_refresh: bool) {
        let interval = interval.max(1);
        self.session_timer = Some(ActiveTimer {
            interval,
            we_refresh,
        });
        self.stop_timer(Timer::Refresh);
        self.stop_timer(Timer::Expire);
        let secs = Duration::from_secs(interval as u64);
        if we_refresh {
            self.arm(now + secs / 2, Timer::Refresh);
        }
        // The refresher's side also guards the session: if its refreshes
        // keep failing the session ends at expiry.
        let margin = Duration::from_secs((interval / 3).min(32) as u64);
        self.arm(now + secs - margin, Timer::Expire);
    }

    fn refresh(&mut self, now: Instant) {
        if self.state != State::Established {
            // A proposal is on the way and refreshes by itself; look again.
            self.arm(now + Duration::from_secs(5), Timer::Refresh);
            return;
        }
        let use_update =
            self.remote_allows_update && self.cfg.timers.is_some_and(|t| t.refresh_with_update);
        let via = self.via();
        let interval = self.session_timer.map(|t| t.interval).unwrap_or(1800);
        if use_update {
            let Some(d) = self.dialog.as_mut() else {
                return;
            };
            let Ok(mut m) = d.create_request("UPDATE", &via) else {
                return;
            };
            let _ = self.common_headers(&mut m, true);
            let _ = m.push_header("Session-Expires", &format!("{interval};refresher=uac"));
            let Some(hop) = self.dialog_hop() else { return };
            let id = self.next_req();
            self.pending.insert(id, Pending::Update);
            self.actions.push_back(Action::Send {
                id,
                request: m,
                next_hop: Hop::Uri(hop),
            });
        } else {
            let Some(sdp) = self.local_sdp.clone() else {
                return;
            };
            let Some(d) = self.dialog.as_mut() else {
                return;
            };
            let Ok(m) = d.create_request("INVITE", &via) else {
                return;
            };
            let mut sdp = sdp;
            self.versioner.stamp(&mut sdp);
            // A refresh that cannot be built or gets no answer leaves the
            // Expire timer to end the session.
            let _ = self.finish_invite(m, Some(&sdp), true);
        }
    }

    fn glare_delay(&mut self) -> Duration {
        let r = splitmix(&mut self.rng);
        // RFC 3261 14.1, in units of 10 ms.
        let ms = if self.direction == Some(Originator::Local) {
            2100 + (r % 191) * 10
        } else {
            (r % 201) * 10
        };
        Duration::from_millis(ms)
    }

    fn handle_ack(&mut self, _now: Instant, req: &SipMessage) {
        let seq = req.cseq().map(|c| c.0);
        if seq.is_none() || seq != self.awaiting_ack {
            return;
        }
        self.awaiting_ack = None;
        if self.offer_in_ack {
            self.offer_in_ack = false;
            match sdp_body(req) {
                Ok(Some(answer)) => self.remote_sdp = Some(answer),
                _ => {
                    // The ACK had to carry the answer (RFC 3261 13.2.1).
                    self.end_reason =
                        Some((Originator::Remote, 400, "ACK without the SDP answer".into()));
                    if self.state == State::Accepting {
                        self.events.push_back(Event::Failed {
                            originator: Originator::Remote,
                            code: 400,
                            reason: "ACK without the SDP answer".into(),
                        });
                    }
                    self.send_bye();
                    return;
                }
            }
        }
        match self.state {
            State::Accepting => {
                self.set_state(State::Established);
                self.events.push_back(Event::Confirmed {
                    remote: self.remote_sdp.clone(),
                });
            }
            State::Terminating if self.bye_after_ack => {
                self.bye_after_ack = false;
                self.send_bye();
            }
            _ => {}
        }
    }

    fn handle_bye(&mut self, key: TxKey, req: &SipMessage) {
        self.respond(key, req, 200, "OK");
        for pending in [self.server_invite.take(), self.remote_proposal.take()]
            .into_iter()
            .flatten()
        {
            if self.state == State::Incoming || self.state == State::ReceivedProposal {
                self.respond(pending.key, &pending.request, 487, "Request Terminated");
            }
        }
        let started = !matches!(self.state, State::Incoming | State::Connecting);
        if !started {
            self.events.push_back(Event::Failed {
                originator: Originator::Remote,
                code: 487,
                reason: "Ended by the peer before it started".into(),
            });
        }
        if self.end_reason.is_none() {
            self.end_reason = Some((Originator::Remote, 200, "Session ended by the peer".into()));
        }
        self.terminated();
    }

    fn handle_reinvite(&mut self, now: Instant, key: TxKey, req: SipMessage) {
        if self.proposal.is_some()
            || self.awaiting_ack.is_some()
            || matches!(self.state, State::Connecting | State::Accepting)
        {
            // Glare (RFC 3261 14.2).
            self.respond(key, &req, 491, "Request Pending");
            return;
        }
        if self.remote_proposal.is_some() || self.state == State::Incoming {
            let mut r = self.response_to(&req, 500, "Server Internal Error");
            let d = self.glare_delay().as_secs().max(1);
            let _ = r.push_header("Retry-After", &d.to_string());
            self.actions.push_back(Action::Respond { key, response: r });
            return;
        }
        if matches!(self.state, State::Terminating) {
            self.respond(key, &req, 481, "Call/Transaction Does Not Exist");
            return;
        }
        if let Err(min) = self.check_interval(&req) {
            let mut r = self.response_to(&req, 422, "Session Interval Too Small");
            let _ = r.push_header("Min-SE", &min.to_string());
            self.actions.push_back(Action::Respond { key, response: r });
            return;
        }
        let offer = match sdp_body(&req) {
            Ok(o) => o,
            Err((code, reason)) => {
                self.respond(key, &req, code, &reason);
                return;
            }
        };
        if let (Some(o), Some(prev)) = (&offer, &self.remote_sdp) {
            if let Err(e) = check_reoffer(prev, o) {
                self.respond(
                    key,
                    &req,
                    488,
                    &format!("Not Acceptable Here ({})", e.reason),
                );
                return;
            }
        }
        self.remote_allows_update = has_option(&req, HeaderName::Allow, "UPDATE");
        // Same description as before: a session refresh, answered with
        // ours unchanged.
        if let (Some(o), Some(prev), Some(local)) = (&offer, &self.remote_sdp, &self.local_sdp) {
            if same_content(prev, o) && o.origin.session_version == prev.origin.session_version {
                let local = local.clone();
                let mut r = self.response_to(&req, 200, "OK");
                self.negotiate_timer_as_uas(now, &req, &mut r);
                let _ = r.push_header("Content-Type", "application/sdp");
                r.set_body(local.to_bytes());
                self.awaiting_ack = req.cseq().map(|c| c.0);
                self.actions.push_back(Action::Respond { key, response: r });
                return;
            }
        }
        self.remote_proposal = Some(ServerRequest { key, request: req });
        // The state first: whoever learns of the proposal may answer it at
        // once, and accept_proposal checks the state.
        self.set_state(State::ReceivedProposal);
        // Kept aside until accepted: remote_sdp is what we last agreed.
        self.events.push_back(Event::GotProposal { offer });
    }

    fn handle_update(&mut self, now: Instant, key: TxKey, req: SipMessage) {
        let offer = match sdp_body(&req) {
            Ok(o) => o,
            Err((code, reason)) => {
                self.respond(key, &req, code, &reason);
                return;
            }
        };
        if let Err(min) = self.check_interval(&req) {
            let mut r = self.response_to(&req, 422, "Session Interval Too Small");
            let _ = r.push_header("Min-SE", &min.to_string());
            self.actions.push_back(Action::Respond { key, response: r });
            return;
        }
        if offer.is_none() {
            // A refresh (RFC 4028) or a target refresh.
            let mut r = self.response_to(&req, 200, "OK");
            if matches!(
                self.state,
                State::Established | State::Proposing | State::ReceivedProposal
            ) {
                self.negotiate_timer_as_uas(now, &req, &mut r);
            }
            self.actions.push_back(Action::Respond { key, response: r });
            return;
        }
        if self.state != State::Established || self.proposal.is_some() {
            self.respond(key, &req, 491, "Request Pending");
            return;
        }
        if let (Some(o), Some(prev)) = (&offer, &self.remote_sdp) {
            if let Err(e) = check_reoffer(prev, o) {
                self.respond(
                    key,
                    &req,
                    488,
                    &format!("Not Acceptable Here ({})", e.reason),
                );
                return;
            }
        }
        self.remote_proposal = Some(ServerRequest { key, request: req });
        self.set_state(State::ReceivedProposal);
        self.events.push_back(Event::GotProposal { offer });
    }

    fn handle_prack(&mut self, _now: Instant, key: TxKey, req: &SipMessage) {
        let rack = req.header(HeaderName::RAck).unwrap_or("");
        let mut parts = rack.split_ascii_whitespace();
        let rseq: Option<u32> = parts.next().and_then(|s| s.parse().ok());
        let matches = match (&self.reliable, rseq) {
            (Some(rel), Some(n)) => n == rel.rseq,
            _ => false,
        };
        if matches {
            self.reliable = None;
            self.stop_timer(Timer::Rel1xx);
            self.stop_timer(Timer::Rel1xxGiveUp);
            self.respond(key, req, 200, "OK");
        } else {
            self.respond(key, req, 481, "Call/Transaction Does Not Exist");
        }
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        id: ReqId,
        code: u16,
        reason: &str,
        resp: Option<&SipMessage>,
    ) {
        if let Some(r) = resp {
            if self.remote_user_agent.is_none() {
                self.remote_user_agent = r
                    .header(HeaderName::Server)
                    .or_else(|| r.header(HeaderName::UserAgent))
                    .map(str::to_string);
            }
            if code >= 101 {
                self.remote_allows_update |= has_option(r, HeaderName::Allow, "UPDATE");
            }
        }
        match code {
            100 => {}
            101..=199 => {
                let Some(r) = resp else { return };
                self.got_provisional = true;
                if self.cancel_wanted {
                    self.send_cancel(now);
                    return;
                }
                if r.to().and_then(|t| t.tag().map(str::to_string)).is_some() {
                    if self.dialog.is_none() {
                        if let Some((_, inv)) = &self.invite {
                            self.dialog = Dialog::from_uac(inv, r).ok();
                        }
                    }
                    self.prack(r);
                }
                if self.state == State::Connecting {
                    self.events.push_back(Event::Provisional {
                        code,
                        reason: reason.into(),
                    });
                }
            }
            200..=299 => {
                let Some(r) = resp else { return };
                self.on_invite_2xx(now, id, r);
            }
            422 if !self.se_retry && self.state == State::Connecting => {
                // RFC 4028 6: try again with at least the peer's Min-SE.
                self.se_retry = true;
                let want = resp.and_then(min_se).unwrap_or(1800);
                if let Some(t) = self.cfg.timers.as_mut() {
                    t.interval = t.interval.max(want);
                    t.min_se = t.min_se.max(want);
                }
                let Some(m) = self.next_initial_invite() else {
                    return;
                };
                let offer = self.local_sdp.clone();
                if self.finish_invite(m, offer.as_ref(), false).is_err() {
                    self.fail(Originator::Remote, 422, reason);
                }
            }
            401 | 407
                if self.state == State::Connecting
                    && !self.cancel_wanted
                    && self.auth_tries < 2
                    && resp.is_some() =>
            {
                // A registrar-less proxy or the callee asks who we are:
                // the same INVITE with our answer (RFC 3261 22.2), at
                // most twice (a second challenge may carry a new nonce).
                self.auth_tries += 1;
                let Some(mut m) = self.next_initial_invite() else {
                    return;
                };
                let mut cn = || format!("{:016x}", splitmix(&mut self.rng));
                let answered =
                    resp.is_some_and(|r| self.auth.handle_challenge(r, &mut m, &mut cn).is_ok());
                let offer = self.local_sdp.clone();
                if !answered || self.finish_invite(m, offer.as_ref(), false).is_err() {
                    self.fail(Originator::Remote, code, reason);
                }
            }
            _ => {
                if self.cancel_wanted || self.state == State::Terminating {
                    let (o, c, r) =
                        self.end_reason
                            .clone()
                            .unwrap_or((Originator::Local, code, reason.into()));
                    self.fail(o, c, &r);
                } else {
                    let originator = if resp.is_some() {
                        Originator::Remote
                    } else {
                        Originator::Local
                    };
                    self.fail(originator, code, reason);
                }
            }
        }
    }

    /// The initial INVITE again, to be finished anew: next CSeq, new
    /// branch, the headers `finish_invite` adds taken off.
    fn next_initial_invite(&mut self) -> Option<SipMessage> {
        let (_, inv) = self.invite.clone()?;
        let mut m = inv.clone();
        for h in [
            HeaderName::SessionExpires,
            HeaderName::MinSE,
            HeaderName::Contact,
            HeaderName::Allow,
            HeaderName::Supported,
            HeaderName::UserAgent,
            HeaderName::ContentType,
        ] {
            m.remove_header(h);
        }
        let seq = inv.cseq().map(|c| c.0).unwrap_or(1) + 1;
        let via = self.via();
        let _ = m.set_header(HeaderName::CSeq, &format!("{seq} INVITE"));
        let _ = m.set_header(HeaderName::Via, &via);
        Some(m)
    }

    fn prack(&mut self, r: &SipMessage) {
        if !has_option(r, HeaderName::Require, "100rel") {
            return;
        }
        let Some(rseq) = r
            .header(HeaderName::RSeq)
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            return;
        };
        let tag = r
            .to()
            .and_then(|t| t.tag().map(str::to_string))
            .unwrap_or_default();
        // Retransmissions and out-of-order reliable provisionals are not
        // acknowledged again (RFC 3262 4).
        if self.prack_seen.get(&tag).is_some_and(|last| rseq <= *last) {
            return;
        }
        self.prack_seen.insert(tag.clone(), rseq);
        let Some((_, inv)) = self.invite.clone() else {
            return;
        };
        let (seq, _) = inv.cseq().unwrap_or((1, "INVITE"));
        // PRACK goes in the early dialog of this tag.
        let same = self.dialog.as_ref().is_some_and(|d| d.id.remote_tag == tag);
        let mut temp = if same {
            None
        } else {
            Dialog::from_uac(&inv, r).ok()
        };
        let via = self.via();
        let d = match (&mut temp, self.dialog.as_mut()) {
            (Some(t), _) => t,
            (None, Some(d)) => d,
            (None, None) => return,
        };
        let Ok(mut m) = d.create_request("PRACK", &via) else {
            return;
        };
        let _ = m.push_header("RAck", &format!("{rseq} {seq} INVITE"));
        let Ok(hop) = d.next_hop() else { return };
        let id = self.next_req();
        self.pending.insert(id, Pending::Prack);
        self.actions.push_back(Action::Send {
            id,
            request: m,
            next_hop: Hop::Uri(hop),
        });
    }

    fn on_invite_2xx(&mut self, now: Instant, _id: ReqId, r: &SipMessage) {
        let seq = r.cseq().map(|c| c.0).unwrap_or(0);
        let tag = r.to().and_then(|t| t.tag().map(str::to_string));
        let confirmed = self
            .dialog
            .as_ref()
            .is_some_and(|d| d.state == crate::proto::sip::dialog::DialogState::Confirmed);
        if confirmed {
            if self.dialog.as_ref().map(|d| Some(&d.id.remote_tag)) == Some(tag.as_ref()) {
                self.resend_ack(r);
            } else {
                self.ack_and_bye_fork(r);
            }
            return;
        }
        let early_same = self
            .dialog
            .as_ref()
            .is_some_and(|d| Some(&d.id.remote_tag) == tag.as_ref());
        if early_same {
            if let Some(d) = self.dialog.as_mut() {
                let _ = d.confirm(r);
            }
        } else {
            let Some((_, inv)) = &self.invite else { return };
            match Dialog::from_uac(inv, r) {
                Ok(d) => self.dialog = Some(d),
                Err(_) => {
                    // A 2xx we cannot even ACK: nothing to keep.
                    self.fail(Originator::Remote, 502, "Malformed 2xx response");
                    return;
                }
            }
        }
        self.send_ack(seq);
        if self.cancel_wanted || self.state == State::Terminating {
            // The 2xx crossed our CANCEL: ACK it, then BYE (RFC 3261 9.1).
            self.send_bye();
            return;
        }
        let answer = match sdp_body(r) {
            Ok(Some(a)) => Some(a),
            Ok(None) => None,
            Err((_, why)) => {
                self.end_reason = Some((Originator::Remote, 400, why.clone()));
                self.events.push_back(Event::Failed {
                    originator: Originator::Remote,
                    code: 400,
                    reason: why,
                });
                self.send_bye();
                return;
            }
        };
        let answer = answer.or_else(|| self.remote_sdp.clone());
        let Some(answer) = answer else {
            self.end_reason = Some((Originator::Remote, 400, "No SDP answer".into()));
            self.events.push_back(Event::Failed {
                originator: Originator::Remote,
                code: 400,
                reason: "No SDP answer".into(),
            });
            self.send_bye();
            return;
        };
        if let Some(offer) = &self.local_sdp {
            if let Err(e) = check_answer(offer, &answer) {
                self.end_reason = Some((Originator::Remote, 488, e.reason.clone()));
                self.events.push_back(Event::Failed {
                    originator: Originator::Remote,
                    code: 488,
                    reason: e.reason,
                });
                self.send_bye();
                return;
            }
        }
        self.remote_sdp = Some(answer.clone());
        self.timer_from_response(now, r);
        self.events.push_back(Event::Answered {
            local: self.local_sdp.clone().unwrap_or_else(|| answer.clone()),
            remote: Some(answer.clone()),
        });
        self.set_state(State::Established);
        self.events.push_back(Event::Confirmed {
            remote: Some(answer),
        });
    }

    /// A second dialog from a forked INVITE: ACK and BYE it.
    fn ack_and_bye_fork(&mut self, r: &SipMessage) {
        let Some((_, inv)) = self.invite.clone() else {
            return;
        };
        let Ok(mut d) = Dialog::from_uac(&inv, r) else {
            return;
        };
        let seq = r.cseq().map(|c| c.0).unwrap_or(0);
        let via = self.via();
        let Ok(hop) = d.next_hop() else { return };
        if let Ok(ack) = d.create_ack(seq, &via) {
            self.actions.push_back(Action::SendAck {
                ack,
                next_hop: hop.clone(),
            });
        }
        let via = self.via();
        if let Ok(bye) = d.create_request("BYE", &via) {
            let id = self.next_req();
            self.pending.insert(id, Pending::Other);
            self.actions.push_back(Action::Send {
                id,
                request: bye,
                next_hop: Hop::Uri(hop),
            });
        }
    }

    fn on_reinvite_response(
        &mut self,
        now: Instant,
        id: ReqId,
        refresh: bool,
        code: u16,
        reason: &str,
        resp: Option<&SipMessage>,
    ) {
        if code < 200 {
            if let Some(r) = resp {
                if code > 100 {
                    self.prack(r);
                }
            }
            return;
        }
        let is_proposal = self.proposal.as_ref().is_some_and(|(p, _)| *p == id);
        if (200..300).contains(&code) {
            let Some(r) = resp else { return };
            let seq = r.cseq().map(|c| c.0).unwrap_or(0);
            self.send_ack(seq);
            self.timer_from_response(now, r);
            if self.state == State::Terminating || self.state == State::Terminated {
                return;
            }
            if is_proposal {
                let (_, offer) = self.proposal.take().expect("checked above");
                let answer = match sdp_body(r) {
                    Ok(Some(a)) => a,
                    _ => {
                        self.end_reason =
                            Some((Originator::Remote, 400, "No usable SDP answer".into()));
                        self.send_bye();
                        return;
                    }
                };
                if let Err(e) = check_answer(&offer, &answer) {
                    self.end_reason = Some((Originator::Remote, 488, e.reason));
                    self.send_bye();
                    return;
                }
                self.local_sdp = Some(offer.clone());
                self.remote_sdp = Some(answer.clone());
                self.events.push_back(Event::ProposalAccepted {
                    proposer: Originator::Local,
                    local: offer,
                    remote: answer,
                });
                self.after_proposal(now);
            } else if let Ok(Some(a)) = sdp_body(r) {
                if !refresh {
                    self.remote_sdp = Some(a);
                }
            }
            return;
        }
        if code == 408 || code == 481 {
            if is_proposal {
                self.proposal = None;
                self.events.push_back(Event::ProposalRejected {
                    proposer: Originator::Local,
                    code,
                    reason: reason.into(),
                });
            }
            self.dialog_gone(code, reason);
            return;
        }
        if !is_proposal {
            if code == 491 && refresh {
                let d = self.glare_delay();
                self.arm(now + d, Timer::Refresh);
            }
            return;
        }
        let (_, offer) = self.proposal.take().expect("checked above");
        if code == 491 && self.retries_491 < 5 && self.state == State::Proposing {
            self.retries_491 += 1;
            self.deferred = Some(offer);
            let d = self.glare_delay();
            self.arm(now + d, Timer::Retry491);
            return;
        }
        self.events.push_back(Event::ProposalRejected {
            proposer: Originator::Local,
            code,
            reason: reason.into(),
        });
        // Our o= version went up with the refused offer; the next one must
        // still be higher, which the versioner guarantees.
        self.after_proposal(now);
    }

    fn proposal_failed(&mut self, code: u16, reason: &str) {
        self.proposal = None;
        self.deferred = None;
        self.events.push_back(Event::ProposalRejected {
            proposer: Originator::Local,
            code,
            reason: reason.into(),
        });
        if self.state == State::Proposing {
            self.set_state(State::Established);
        }
    }

    /// Back to established, or to proposing if our own deferred proposal
    /// still waits for its retry.
    fn after_proposal(&mut self, _now: Instant) {
        if matches!(self.state, State::Terminating | State::Terminated) {
            return;
        }
        if self.deferred.is_some() || self.proposal.is_some() {
            self.set_state(State::Proposing);
        } else {
            self.set_state(State::Established);
        }
    }

    /// 408 or 481 to a request in the dialog: the peer no longer has it
    /// (RFC 3261 12.2.1.2).
    fn dialog_gone(&mut self, code: u16, reason: &str) {
        if matches!(self.state, State::Terminated) {
            return;
        }
        self.end_reason = Some((Originator::Remote, code, reason.into()));
        if code == 481 {
            self.terminated();
        } else {
            self.send_bye();
        }
    }
}

/// A response for the impossible case where even a bare 500 cannot be
/// built (the status line is fixed text, so it cannot fail).
fn unreachable_response() -> SipMessage {
    // The literal is a valid status line; SipMessage::response only fails
    // on codes outside 100-699 or reasons with CR/LF.
    SipMessage::response(500, "Server Internal Error").expect("fixed valid status line")
}

#[cfg(test)]
mod tests;
