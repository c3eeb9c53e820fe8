//! SIP transactions (RFC 3261 section 17, updated by RFC 6026), sans-IO.
//!
//! [`TransactionLayer`] holds every client and server transaction of an
//! endpoint. Feed it what arrives (`handle_message`), what the transaction
//! user decides (`send_request`, `send_response`), the passing of time
//! (`handle_timeout`) and transport failures (`handle_transport_error`); then
//! drain `poll_transmit`, `poll_event` and `poll_timeout`. Nothing here reads
//! a clock or touches a socket, so the unit tests below run the whole
//! retransmission schedule in virtual time.

pub mod timer;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use timer::{Timer, TimerConfig};

use super::header::HeaderName;
use super::message::SipMessage;
use super::screen::build_response;
use super::uri::Uri;
use super::values::Via;

/// The RFC 3261 branch prefix that makes a branch globally unique (8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
    /// The name in a Via header.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }
    pub fn parse(s: &str) -> Option<TransportKind> {
        Some(match s.to_ascii_uppercase().as_str() {
            "UDP" => TransportKind::Udp,
            "TCP" => TransportKind::Tcp,
            "TLS" => TransportKind::Tls,
            _ => return None,
        })
    }
}

/// The far end of a message: transport and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub addr: SocketAddr,
}

/// Names one transaction for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxKey(pub u64);

/// Bytes to put on the wire. `key` names the transaction that sent them, so a
/// failure to send can be reported back with `handle_transport_error`.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub peer: Peer,
    pub data: Vec<u8>,
    pub key: Option<TxKey>,
    pub retransmission: bool,
}

/// What the transaction user learns.
#[derive(Debug, Clone)]
pub enum TxEvent {
    /// A new request (not ACK, not a retransmission): a server transaction
    /// exists; answer it with `send_response(key, ...)`. The top Via already
    /// carries `received` / `rport` as RFC 3261 18.2.1 and RFC 3581 ask.
    Request {
        key: TxKey,
        request: SipMessage,
        source: Peer,
    },
    /// An ACK that belongs to no transaction: the ACK for a 2xx (13.3.1.4),
    /// for the dialog layer.
    Ack { request: SipMessage, source: Peer },
    /// A CANCEL matched the INVITE server transaction `invite`; the CANCEL
    /// itself was answered 200. The UA should now answer the INVITE with 487.
    Cancelled { invite: TxKey },
    /// A response for a client transaction: provisional, final, or (INVITE in
    /// Accepted) a retransmitted 2xx, which the UA answers with a new ACK.
    Response { key: TxKey, response: SipMessage },
    /// A response that matches no transaction. A 2xx to an INVITE may still
    /// interest the dialog layer (a retransmission after Timer M).
    StrayResponse { response: SipMessage, source: Peer },
    /// Client: no final response in time (Timer B or F). Server INVITE: no
    /// ACK came for the final response (Timer H, or Timer L after a 2xx).
    Timeout { key: TxKey, timer: Timer },
    /// The transport could not deliver for this transaction.
    TransportError { key: TxKey },
    /// The transaction is gone; its key will not be seen again.
    Terminated { key: TxKey },
}

/// Why a command from the transaction user was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no such transaction")]
    NoTransaction,
    #[error("the transaction is not in a state where this is allowed")]
    WrongState,
    #[error("invalid message: {0}")]
    Invalid(&'static str),
    #[error("too many transactions")]
    TooMany,
}

/// Counters for the engine's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TxStats {
    pub requests_in: u64,
    pub responses_in: u64,
    pub messages_out: u64,
    /// Retransmissions we sent (requests or responses).
    pub retransmissions_sent: u64,
    /// Retransmissions we received and absorbed.
    pub retransmissions_received: u64,
    pub stray_responses: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    /// Requests refused with 503 because the transaction table was full.
    pub overload_rejections: u64,
    /// Messages dropped because they lacked what matching needs.
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the four kinds of RFC 3261 17
enum Kind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

const TIMERS: usize = 12;

fn timer_index(t: Timer) -> usize {
    t as usize
}

struct Tx {
    kind: Kind,
    state: TxState,
    peer: Peer,
    request: SipMessage,
    /// The request as sent (client) for retransmission.
    request_bytes: Vec<u8>,
    /// The last response sent (server) for retransmission.
    last_response: Option<Vec<u8>>,
    /// The ACK sent for a non-2xx final (INVITE client).
    ack_bytes: Option<Vec<u8>>,
    timers: [Option<Instant>; TIMERS],
    /// Current retransmission interval of Timer A, E or G.
    interval: Duration,
    /// Index keys to remove when the transaction ends.
    match_key: String,
    accepted_key: Option<(String, u32)>,
}

#[derive(Default)]
struct Out {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    stats: TxStats,
    /// Transactions that reached Terminated, to be removed.
    terminated: Vec<u64>,
}

impl Tx {
    fn arm(&mut self, id: u64, timer: Timer, at: Instant, out: &mut Out) {
        self.timers[timer_index(timer)] = Some(at);
        out.heap.push(Reverse((at, id, timer)));
    }
    fn terminate(&mut self, id: u64, out: &mut Out) {
        if self.state != TxState::Terminated {
            self.state = TxState::Terminated;
            out.terminated.push(id);
        }
    }
    fn disarm(&mut self, timer: Timer) {
        self.timers[timer_index(timer)] = None;
    }
    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
    fn send(&self, id: u64, data: Vec<u8>, retransmission: bool, out: &mut Out) {
        out.stats.messages_out += 1;
        if retransmission {
            out.stats.retransmissions_sent += 1;
        }
        out.transmits.push_back(Transmit {
            peer: self.peer,
            data,
            key: Some(TxKey(id)),
            retransmission,
        });
    }
}

/// Every transaction of one endpoint.
pub struct TransactionLayer {
    cfg: TimerConfig,
    max_transactions: usize,
    next_id: u64,
    txs: HashMap<u64, Tx>,
    client_index: HashMap<String, u64>,
    server_index: HashMap<String, u64>,
    /// INVITE server transactions that sent a 2xx, by (Call-ID, CSeq number),
    /// so the ACK for the 2xx (which has its own branch) can stop the 2xx
    /// retransmissions.
    accepted_index: HashMap<(String, u32), u64>,
    out: Out,
}

impl Default for TransactionLayer {
    fn default() -> Self {
        Self::new(TimerConfig::default())
    }
}

/// The RFC 3261 (branch) or RFC 2543 (fallback) key of a request for
/// server-side matching (17.2.3). ACK matches the INVITE it acknowledges.
fn server_match_key(req: &SipMessage, method: &str) -> Option<String> {
    let via_raw = *req.header_items(HeaderName::Via).first()?;
    let via = super::values::parse_via(via_raw).ok()?;
    let method = if method == "ACK" { "INVITE" } else { method };
    match via.branch() {
        Some(b) if b.starts_with(MAGIC_COOKIE) => {
            let sent_by = match via.port {
                Some(p) => format!("{}:{p}", via.host),
                None => via.host.to_string(),
            };
            Some(format!(
                "3261|{b}|{}|{method}",
                sent_by.to_ascii_lowercase()
            ))
        }
        _ => {
            let (cseq, _) = req.cseq()?;
            let from_tag = req.from()?.tag().unwrap_or_default().to_string();
            Some(format!(
                "2543|{}|{from_tag}|{}|{cseq}|{via_raw}|{method}",
                req.request_uri()?,
                req.call_id()?
            ))
        }
    }
}

/// The client-side key of a request or response: top Via branch and CSeq
/// method (17.1.3).
fn client_match_key(msg: &SipMessage) -> Option<String> {
    let via = msg.top_via()?;
    let branch = via.branch()?;
    let (_, method) = msg.cseq()?;
    Some(format!("{branch}|{method}"))
}

/// Where responses to a request go (RFC 3261 18.2.2, RFC 3581): back on the
/// connection for reliable transports; to the source address when the
/// client asked for rport; otherwise to the source IP at the Via port.
pub fn response_peer(via: &Via, source: Peer) -> Peer {
    if source.transport.is_reliable() || via.param("rport").is_some() {
        return source;
    }
    let port = via.port.unwrap_or(5060);
    Peer {
        transport: source.transport,
        addr: SocketAddr::new(source.addr.ip(), port),
    }
}

/// Add `received` (and fill `rport`) to the top Via of a request that came
/// from `source`.
fn stamp_via(req: &mut SipMessage, via: &Via, source: Peer) {
    let ip = source.addr.ip();
    let wants_rport = via.param("rport").is_some();
    let host_is_source = match &via.host {
        super::uri::Host::V4(a) => std::net::IpAddr::V4(*a) == ip,
        super::uri::Host::V6(a) => std::net::IpAddr::V6(*a) == ip,
        _ => false,
    };
    if host_is_source && !wants_rport {
        return;
    }
    let mut v = format!("SIP/2.0/{} {}", via.transport, via.host);
    if let Some(p) = via.port {
        v.push_str(&format!(":{p}"));
    }
    for (n, val) in &via.params {
        if n.eq_ignore_ascii_case("received") || n.eq_ignore_ascii_case("rport") {
            continue;
        }
        v.push(';');
        v.push_str(n);
        if let Some(val) = val {
            v.push('=');
            v.push_str(val);
        }
    }
    v.push_str(&format!(";received={ip}"));
    if wants_rport {
        v.push_str(&format!(";rport={}", source.addr.port()));
    }
    // The value was printed from a parsed Via, so it is a valid list item.
    let _ = req.replace_first_item(HeaderName::Via, &v);
}

/// The ACK for a non-2xx final response (17.1.1.3).
fn build_ack(invite: &SipMessage, response: &SipMessage) -> Option<SipMessage> {
    let uri = Uri::parse(invite.request_uri()?).ok()?;
    let mut ack = SipMessage::request("ACK", &uri).ok()?;
    let via = *invite.header_items(HeaderName::Via).first()?;
    ack.push_header("Via", via).ok()?;
    for r in invite.header_all(HeaderName::Route) {
        ack.push_header("Route", r).ok()?;
    }
    ack.push_header("Max-Forwards", "70").ok()?;
    ack.push_header("From", invite.header(HeaderName::From)?)
        .ok()?;
    ack.push_header("To", response.header(HeaderName::To)?)
        .ok()?;
    ack.push_header("Call-ID", invite.call_id()?).ok()?;
    let (num, _) = invite.cseq()?;
    ack.push_header("CSeq", &format!("{num} ACK")).ok()?;
    Some(ack)
}

/// A CANCEL for a pending INVITE (RFC 3261 9.1): same Request-URI, Call-ID,
/// From, To, CSeq number and top Via (so the same branch) and Route set.
pub fn build_cancel(invite: &SipMessage) -> Option<SipMessage> {
    let uri = Uri::parse(invite.request_uri()?).ok()?;
    let mut c = SipMessage::request("CANCEL", &uri).ok()?;
    let via = *invite.header_items(HeaderName::Via).first()?;
    c.push_header("Via", via).ok()?;
    for r in invite.header_all(HeaderName::Route) {
        c.push_header("Route", r).ok()?;
    }
    c.push_header("Max-Forwards", "70").ok()?;
    c.push_header("From", invite.header(HeaderName::From)?)
        .ok()?;
    c.push_header("To", invite.header(HeaderName::To)?).ok()?;
    c.push_header("Call-ID", invite.call_id()?).ok()?;
    let (num, _) = invite.cseq()?;
    c.push_header("CSeq", &format!("{num} CANCEL")).ok()?;
    Some(c)
}

impl TransactionLayer {
    pub fn new(cfg: TimerConfig) -> Self {
        TransactionLayer {
            cfg,
            max_transactions: 100_000,
            next_id: 1,
            txs: HashMap::new(),
            client_index: HashMap::new(),
            server_index: HashMap::new(),
            accepted_index: HashMap::new(),
            out: Out::default(),
        }
    }

    /// Cap the number of live transactions; past it new requests get 503.
    pub fn set_max_transactions(&mut self, max: usize) {
        self.max_transactions = max.max(1);
    }

    pub fn config(&self) -> TimerConfig {
        self.cfg
    }

    pub fn stats(&self) -> TxStats {
        self.out.stats
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn state(&self, key: TxKey) -> Option<TxState> {
        self.txs.get(&key.0).map(|t| t.state)
    }

    /// The request that created the transaction.
    pub fn request(&self, key: TxKey) -> Option<&SipMessage> {
        self.txs.get(&key.0).map(|t| &t.request)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    /// The earliest armed timer.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop stale heap entries (disarmed or re-armed timers) from the top.
        while let Some(Reverse((at, id, t))) = self.out.heap.peek().copied() {
            let live = self
                .txs
                .get(&id)
                .is_some_and(|tx| tx.timers[timer_index(t)] == Some(at));
            if live {
                return Some(at);
            }
            self.out.heap.pop();
        }
        None
    }

    /// Send a request statelessly (the ACK for a 2xx, or a response outside
    /// any transaction).
    pub fn send_stateless(&mut self, peer: Peer, msg: &SipMessage) {
        self.out.stats.messages_out += 1;
        self.out.transmits.push_back(Transmit {
            peer,
            data: msg.to_bytes(),
            key: None,
            retransmission: false,
        });
    }

    /// Start a client transaction. The request must carry a top Via with a
    /// branch starting with the magic cookie, and a CSeq.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: SipMessage,
        peer: Peer,
    ) -> Result<TxKey, TxError> {
        let method = request
            .method()
            .ok_or(TxError::Invalid("not a request"))?
            .to_string();
        if method == "ACK" {
            return Err(TxError::Invalid("ACK is sent without a transaction"));
        }
        let via = request.top_via().ok_or(TxError::Invalid("no Via"))?;
        if !via.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE)) {
            return Err(TxError::Invalid("Via branch lacks the z9hG4bK cookie"));
        }
        match request.cseq() {
            Some((_, m)) if m == method => {}
            _ => return Err(TxError::Invalid("CSeq missing or method differs")),
        }
        let key = client_match_key(&request).ok_or(TxError::Invalid("unmatchable request"))?;
        if self.client_index.contains_key(&key) {
            return Err(TxError::Invalid("a transaction with this branch exists"));
        }
        if self.txs.len() >= self.max_transactions {
            return Err(TxError::TooMany);
        }
        let id = self.next_id;
        self.next_id += 1;
        let invite = method == "INVITE";
        let bytes = request.to_bytes();
        let mut tx = Tx {
            kind: if invite {
                Kind::ClientInvite
            } else {
                Kind::ClientNonInvite
            },
            state: if invite {
                TxState::Calling
            } else {
                TxState::Trying
            },
            peer,
            request,
            request_bytes: bytes,
            last_response: None,
            ack_bytes: None,
            timers: [None; TIMERS],
            interval: self.cfg.t1,
            match_key: key.clone(),
            accepted_key: None,
        };
        tx.send(id, tx.request_bytes.clone(), false, &mut self.out);
        if invite {
            if !tx.reliable() {
                tx.arm(id, Timer::A, now + self.cfg.t1, &mut self.out);
            }
            tx.arm(id, Timer::B, now + self.cfg.t1x64(), &mut self.out);
        } else {
            if !tx.reliable() {
                tx.arm(id, Timer::E, now + self.cfg.t1, &mut self.out);
            }
            tx.arm(id, Timer::F, now + self.cfg.t1x64(), &mut self.out);
        }
        self.client_index.insert(key, id);
        self.txs.insert(id, tx);
        Ok(TxKey(id))
    }

    /// Answer a server transaction.
    pub fn send_response(
        &mut self,
        now: Instant,
        key: TxKey,
        response: SipMessage,
    ) -> Result<(), TxError> {
        let (code, _) = response
            .status()
            .ok_or(TxError::Invalid("not a response"))?;
        let id = key.0;
        let cfg = self.cfg;
        let tx = self.txs.get_mut(&id).ok_or(TxError::NoTransaction)?;
        let bytes = response.to_bytes();
        match (tx.kind, tx.state) {
            (Kind::ServerNonInvite, TxState::Trying | TxState::Proceeding) => {
                tx.send(id, bytes.clone(), false, &mut self.out);
                tx.last_response = Some(bytes);
                if code < 200 {
                    tx.state = TxState::Proceeding;
                } else {
                    tx.state = TxState::Completed;
                    let j = if tx.reliable() {
                        Duration::ZERO
                    } else {
                        cfg.t1x64()
                    };
                    tx.arm(id, Timer::J, now + j, &mut self.out);
                }
            }
            (Kind::ServerInvite, TxState::Proceeding) => {
                tx.send(id, bytes.clone(), false, &mut self.out);
                tx.last_response = Some(bytes);
                if code < 200 {
                    // stays in Proceeding
                } else if code < 300 {
                    tx.state = TxState::Accepted;
                    tx.interval = cfg.t1;
                    if !tx.reliable() {
                        tx.arm(id, Timer::G, now + cfg.t1, &mut self.out);
                    }
                    tx.arm(id, Timer::L, now + cfg.t1x64(), &mut self.out);
                    if let (Some(cid), Some((num, _))) = (tx.request.call_id(), tx.request.cseq()) {
                        let k = (cid.to_string(), num);
                        tx.accepted_key = Some(k.clone());
                        self.accepted_index.insert(k, id);
                    }
                } else {
                    tx.state = TxState::Completed;
                    tx.interval = cfg.t1;
                    if !tx.reliable() {
                        tx.arm(id, Timer::G, now + cfg.t1, &mut self.out);
                    }
                    tx.arm(id, Timer::H, now + cfg.t1x64(), &mut self.out);
                }
            }
            (Kind::ServerInvite, TxState::Accepted) if (200..300).contains(&code) => {
                // The TU retransmitting the 2xx itself: send it, keep state.
                tx.send(id, bytes.clone(), true, &mut self.out);
                tx.last_response = Some(bytes);
            }
            (Kind::ClientInvite | Kind::ClientNonInvite, _) => {
                return Err(TxError::Invalid("client transactions send no responses"))
            }
            _ => return Err(TxError::WrongState),
        }
        self.drain_terminated();
        Ok(())
    }

    /// The transport failed to deliver for `key` (RFC 3261 17.1.4, 17.2.4).
    pub fn handle_transport_error(&mut self, _now: Instant, key: TxKey) {
        let Some(tx) = self.txs.get_mut(&key.0) else {
            return;
        };
        self.out.stats.transport_errors += 1;
        tx.terminate(key.0, &mut self.out);
        self.out.events.push_back(TxEvent::TransportError { key });
        self.drain_terminated();
    }

    /// A parsed message arrived from `source`.
    pub fn handle_message(&mut self, now: Instant, msg: SipMessage, source: Peer) {
        if msg.is_request() {
            self.out.stats.requests_in += 1;
            self.handle_request(now, msg, source);
        } else {
            self.out.stats.responses_in += 1;
            self.handle_response(now, msg, source);
        }
        self.drain_terminated();
    }

    fn handle_response(&mut self, now: Instant, resp: SipMessage, source: Peer) {
        let cfg = self.cfg;
        let Some(code) = resp.status().map(|s| s.0) else {
            return;
        };
        let Some(id) = client_match_key(&resp).and_then(|k| self.client_index.get(&k).copied())
        else {
            self.out.stats.stray_responses += 1;
            self.out.events.push_back(TxEvent::StrayResponse {
                response: resp,
                source,
            });
            return;
        };
        // The index only holds live transactions.
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        let key = TxKey(id);
        match tx.kind {
            Kind::ClientNonInvite => match tx.state {
                TxState::Trying | TxState::Proceeding => {
                    if code < 200 {
                        tx.state = TxState::Proceeding;
                    } else {
                        tx.state = TxState::Completed;
                        tx.disarm(Timer::E);
                        tx.disarm(Timer::F);
                        let k = if tx.reliable() {
                            Duration::ZERO
                        } else {
                            cfg.t4
                        };
                        tx.arm(id, Timer::K, now + k, &mut self.out);
                    }
                    self.out.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                }
                _ => self.out.stats.retransmissions_received += 1,
            },
            Kind::ClientInvite => match tx.state {
                TxState::Calling | TxState::Proceeding => {
                    tx.disarm(Timer::A);
                    if code < 200 {
                        tx.state = TxState::Proceeding;
                        tx.disarm(Timer::B);
                    } else if code < 300 {
                        tx.state = TxState::Accepted;
                        tx.disarm(Timer::B);
                        tx.arm(id, Timer::M, now + cfg.t1x64(), &mut self.out);
                    } else {
                        tx.state = TxState::Completed;
                        tx.disarm(Timer::B);
                        match build_ack(&tx.request, &resp) {
                            Some(ack) => {
                                let bytes = ack.to_bytes();
                                tx.send(id, bytes.clone(), false, &mut self.out);
                                tx.ack_bytes = Some(bytes);
                            }
                            None => self.out.stats.dropped += 1,
                        }
                        let d = if tx.reliable() {
                            Duration::ZERO
                        } else {
                            cfg.timer_d()
                        };
                        tx.arm(id, Timer::D, now + d, &mut self.out);
                    }
                    self.out.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                }
                TxState::Completed => {
                    self.out.stats.retransmissions_received += 1;
                    if code >= 300 {
                        if let Some(ack) = tx.ack_bytes.clone() {
                            tx.send(id, ack, true, &mut self.out);
                        }
                    }
                }
                TxState::Accepted if (200..300).contains(&code) => {
                    self.out.stats.retransmissions_received += 1;
                    self.out.events.push_back(TxEvent::Response {
                        key,
                        response: resp,
                    });
                }
                _ => {}
            },
            Kind::ServerInvite | Kind::ServerNonInvite => {}
        }
    }

    fn handle_request(&mut self, now: Instant, mut req: SipMessage, source: Peer) {
        let cfg = self.cfg;
        let Some(method) = req.method().map(str::to_string) else {
            return;
        };
        let Some(via) = req.top_via() else {
            self.out.stats.dropped += 1;
            return;
        };
        let Some(mkey) = server_match_key(&req, &method) else {
            self.out.stats.dropped += 1;
            return;
        };
        if let Some(&id) = self.server_index.get(&mkey) {
            // Known transaction: a retransmission, or the ACK of a non-2xx.
            let Some(tx) = self.txs.get_mut(&id) else {
                return;
            };
            if method == "ACK" {
                match tx.state {
                    TxState::Completed => {
                        tx.state = TxState::Confirmed;
                        tx.disarm(Timer::G);
                        tx.disarm(Timer::H);
                        let i = if tx.reliable() {
                            Duration::ZERO
                        } else {
                            cfg.t4
                        };
                        tx.arm(id, Timer::I, now + i, &mut self.out);
                    }
                    TxState::Accepted => {
                        // An RFC 2543 peer reusing the INVITE's branch for
                        // the 2xx ACK: the dialog layer wants it.
                        tx.disarm(Timer::G);
                        stamp_via(&mut req, &via, source);
                        self.out.events.push_back(TxEvent::Ack {
                            request: req,
                            source,
                        });
                    }
                    _ => self.out.stats.retransmissions_received += 1,
                }
                return;
            }
            self.out.stats.retransmissions_received += 1;
            match (tx.kind, tx.state) {
                (Kind::ServerInvite, TxState::Proceeding | TxState::Completed)
                | (Kind::ServerNonInvite, TxState::Proceeding | TxState::Completed) => {
                    if let Some(r) = tx.last_response.clone() {
                        tx.send(id, r, true, &mut self.out);
                    }
                }
                // Trying (no response yet), Accepted (RFC 6026: absorb),
                // Confirmed: nothing to send.
                _ => {}
            }
            return;
        }
        if method == "ACK" {
            if let (Some(cid), Some((num, _))) = (req.call_id(), req.cseq()) {
                if let Some(&id) = self.accepted_index.get(&(cid.to_string(), num)) {
                    if let Some(tx) = self.txs.get_mut(&id) {
                        tx.disarm(Timer::G);
                    }
                }
            }
            stamp_via(&mut req, &via, source);
            self.out.events.push_back(TxEvent::Ack {
                request: req,
                source,
            });
            return;
        }
        let peer = response_peer(&via, source);
        stamp_via(&mut req, &via, source);
        if self.txs.len() >= self.max_transactions {
            self.out.stats.overload_rejections += 1;
            if let Ok(mut r) = build_response(&req, 503, "Service Unavailable", None) {
                let _ = r.push_header("Retry-After", "5");
                self.send_stateless(peer, &r);
            }
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let invite = method == "INVITE";
        let mut tx = Tx {
            kind: if invite {
                Kind::ServerInvite
            } else {
                Kind::ServerNonInvite
            },
            state: if invite {
                TxState::Proceeding
            } else {
                TxState::Trying
            },
            peer,
            request: req.clone(),
            request_bytes: Vec::new(),
            last_response: None,
            ack_bytes: None,
            timers: [None; TIMERS],
            interval: cfg.t1,
            match_key: mkey.clone(),
            accepted_key: None,
        };
        if invite {
            // 100 Trying at once: the UA decides later (17.2.1).
            if let Ok(trying) = build_response(&req, 100, "Trying", None) {
                let bytes = trying.to_bytes();
                tx.send(id, bytes.clone(), false, &mut self.out);
                tx.last_response = Some(bytes);
            }
        }
        self.server_index.insert(mkey, id);
        self.txs.insert(id, tx);
        let key = TxKey(id);
        if method == "CANCEL" {
            let target = server_match_key(&req, "INVITE")
                .and_then(|k| self.server_index.get(&k).copied())
                .filter(|i| {
                    self.txs
                        .get(i)
                        .is_some_and(|t| t.kind == Kind::ServerInvite)
                });
            let (code, reason) = if target.is_some() {
                (200, "OK")
            } else {
                (481, "Call/Transaction Does Not Exist")
            };
            if let Ok(r) = build_response(&req, code, reason, None) {
                let _ = self.send_response(now, key, r);
            }
            if let Some(inv) = target {
                let pending = self
                    .txs
                    .get(&inv)
                    .is_some_and(|t| t.state == TxState::Proceeding);
                if pending {
                    self.out
                        .events
                        .push_back(TxEvent::Cancelled { invite: TxKey(inv) });
                }
            }
            return;
        }
        self.out.events.push_back(TxEvent::Request {
            key,
            request: req,
            source,
        });
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let cfg = self.cfg;
        while let Some(Reverse((at, id, timer))) = self.out.heap.peek().copied() {
            if at > now {
                break;
            }
            self.out.heap.pop();
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if tx.timers[timer_index(timer)] != Some(at) {
                continue; // disarmed or re-armed since
            }
            tx.disarm(timer);
            let key = TxKey(id);
            match timer {
                Timer::A | Timer::E => {
                    let resend = matches!(
                        (timer, tx.state),
                        (Timer::A, TxState::Calling)
                            | (Timer::E, TxState::Trying | TxState::Proceeding)
                    );
                    if resend {
                        tx.send(id, tx.request_bytes.clone(), true, &mut self.out);
                        tx.interval = match (timer, tx.state) {
                            (Timer::A, _) => tx.interval * 2,
                            (_, TxState::Proceeding) => cfg.t2,
                            _ => (tx.interval * 2).min(cfg.t2),
                        };
                        let next = now + tx.interval;
                        tx.arm(id, timer, next, &mut self.out);
                    }
                }
                Timer::G => {
                    if matches!(tx.state, TxState::Completed | TxState::Accepted) {
                        if let Some(r) = tx.last_response.clone() {
                            tx.send(id, r, true, &mut self.out);
                        }
                        tx.interval = (tx.interval * 2).min(cfg.t2);
                        let next = now + tx.interval;
                        tx.arm(id, Timer::G, next, &mut self.out);
                    }
                }
                Timer::B | Timer::F | Timer::H => {
                    self.out.stats.timeouts += 1;
                    tx.terminate(id, &mut self.out);
                    self.out.events.push_back(TxEvent::Timeout { key, timer });
                }
                Timer::L => {
                    // Timer G still armed means no ACK came for the 2xx.
                    if tx.timers[timer_index(Timer::G)].is_some() {
                        self.out.stats.timeouts += 1;
                        self.out.events.push_back(TxEvent::Timeout { key, timer });
                    }
                    tx.terminate(id, &mut self.out);
                }
                Timer::D | Timer::I | Timer::J | Timer::K | Timer::M => {
                    tx.terminate(id, &mut self.out);
                }
            }
        }
        self.drain_terminated();
    }

    fn drain_terminated(&mut self) {
        let done = std::mem::take(&mut self.out.terminated);
        for id in done {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(tx) = self.txs.remove(&id) else {
            return;
        };
        match tx.kind {
            Kind::ClientInvite | Kind::ClientNonInvite => {
                self.client_index.remove(&tx.match_key);
            }
            Kind::ServerInvite | Kind::ServerNonInvite => {
                if self.server_index.get(&tx.match_key) == Some(&id) {
                    self.server_index.remove(&tx.match_key);
                }
            }
        }
        if let Some(k) = tx.accepted_key {
            if self.accepted_index.get(&k) == Some(&id) {
                self.accepted_index.remove(&k);
            }
        }
        self.out
            .events
            .push_back(TxEvent::Terminated { key: TxKey(id) });
        // Stale timer entries (of finished transactions, or re-armed
        // timers) leave the heap only when they reach its top; purge them
        // when they outnumber what live transactions can have armed.
        let live_bound = 64 + self.txs.len() * 4;
        if self.out.heap.len() > live_bound * 2 {
            let txs = &self.txs;
            self.out.heap.retain(|Reverse((at, id, t))| {
                txs.get(id)
                    .is_some_and(|tx| tx.timers[timer_index(*t)] == Some(*at))
            });
        }
        if self.out.heap.capacity() > 256 && self.out.heap.len() * 8 <= self.out.heap.capacity() {
            self.out.heap.shrink_to(self.out.heap.len() * 2);
        }
        // Give back what a burst of transactions made the tables grow to,
        // once they are mostly empty (amortised: only at 1/8 occupancy).
        shrink(&mut self.txs);
        shrink(&mut self.client_index);
        shrink(&mut self.server_index);
        shrink(&mut self.accepted_index);
    }
}

/// Halve-or-more a map that is at most 1/8 full and above a small size.
pub(crate) fn shrink<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if m.capacity() > 64 && m.len() * 8 <= m.capacity() {
        m.shrink_to(m.len() * 2);
    }
}

#[cfg(test)]
mod tests;
