//! The MSRP session core, sans-IO: one local path talking to one remote
//! path.
//!
//! Incoming: the driver feeds the parser's pieces in ([`SessionCore::
//! handle_head`], [`SessionCore::handle_data`], [`SessionCore::handle_end`]).
//! The core checks each request (To-Path, method, Message-ID, Byte-Range),
//! tells the driver where each body byte belongs (message and offset), keeps
//! per message only the list of byte intervals received (never the data, so
//! a 4 GiB message costs a few numbers), answers transactions by the
//! Failure-Report rules, and sends a success REPORT when a message is
//! complete and its sender asked for one (RFC 4975 sections 7.1, 7.2).
//!
//! Outgoing: messages are queued with [`SessionCore::send_message`]; the
//! driver asks [`SessionCore::next_chunk`] what to send, reads that much of
//! the message's data, and has [`SessionCore::frame_chunk`] frame it with a
//! transaction id that does not occur in the data (section 7.1.1). Responses
//! to our chunks and REPORTs from the peer come out as events; a chunk whose
//! response does not come within the transaction timeout is a 408.
//!
//! Pacing: transaction responses are hop by hop, so behind a relay that
//! answers every chunk itself and queues what the next hop will not take,
//! the sender learns nothing of a slow reader until the relay gives up on
//! the connection. The receiver therefore sends partial success REPORTs
//! (RFC 4975 section 7.1.2 lets a success report cover part of a message,
//! by its Byte-Range) as a message that asked for reports arrives, and the
//! sender keeps such a message at most [`SessionConfig::send_window`] bytes
//! ahead of what the peer reported. A peer that never sends a partial
//! report is found out when the window first fills and stays full for
//! [`PROGRESS_PROBE`]; the session then sends without the window.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use memchr::memmem;

use super::auth::{AuthClient, AuthOutcome};
use super::message::{reason_phrase, ByteRange, ChunkHead, ContFlag, ReportMode, StartLine};
use super::random_ident;
use super::uri::MsrpUri;

/// RFC 4975 section 7.1.3 suggests 30 s for a transaction response.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a full send window waits for a first partial success REPORT
/// before the session decides that the peer sends none.
pub const PROGRESS_PROBE: Duration = Duration::from_secs(3);

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Largest body of one outgoing chunk on a direct connection (64 KiB;
    /// bulk transfers go faster with 1 MiB).
    pub chunk_size: usize,
    /// Largest body of one outgoing chunk when a relay is on the path
    /// (8 KiB). Relays read whole chunks into fixed buffers: Kamailio's
    /// msrp module fails on frames above about 11 KiB.
    pub relay_chunk_size: usize,
    /// Largest incoming message we accept (413 beyond); `None`: no limit.
    pub max_incoming_message: Option<u64>,
    /// Messages being received at the same time, at most.
    pub max_incoming_messages: usize,
    pub transaction_timeout: Duration,
    /// Media types a SEND may carry (`type/subtype`, `type/*` or `*`, as
    /// in a=accept-types); others get 415. `None`: any.
    pub accept_types: Option<Vec<String>>,
    /// Hold the response to a message's last chunk (and its success
    /// REPORT) until the application has looked at the whole message and
    /// called [`SessionCore::complete_message`]: a chat stream refuses a
    /// broken CPIM envelope with an error response this way.
    pub defer_completion: bool,
    /// Bytes before this 0-based offset of every incoming message are
    /// already here: a resumed file transfer (RFC 5547 a=file-range),
    /// whose sender starts there.
    pub incoming_offset: u64,
    /// With `defer_completion`: answer the last chunk at once and hold only
    /// the REPORT, which then carries the verdict (200, or the refusal as
    /// a failure REPORT). For verdicts that take long (a file's hash
    /// checked and flushed to disk) and must not run into the sender's
    /// transaction timeout.
    pub verdict_by_report: bool,
    /// Incoming: for a message whose sender asked for success reports,
    /// send a partial success REPORT after its first chunk and then each
    /// time this many more bytes have arrived in order (1 MiB). 0: only
    /// the final report.
    pub report_step: u64,
    /// Outgoing: a message that asks for success reports is sent at most
    /// this many bytes ahead of the peer's partial success reports (8 MiB),
    /// which bounds what a relay between us must queue for a slow reader.
    /// 0: no window.
    pub send_window: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_size: 64 * 1024,
            relay_chunk_size: 8 * 1024,
            max_incoming_message: None,
            max_incoming_messages: 32,
            transaction_timeout: TRANSACTION_TIMEOUT,
            accept_types: None,
            defer_completion: false,
            incoming_offset: 0,
            verdict_by_report: false,
            report_step: 1 << 20,
            send_window: 8 << 20,
        }
    }
}

/// Whether `content_type` (parameters allowed) is one of `accepted`
/// (`type/subtype`, `type/*`, `*`), compared without regard to case.
pub fn media_type_accepted(accepted: &[String], content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((ty, _)) = ct.split_once('/') else {
        return false;
    };
    accepted.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        a == "*" || a == ct || a.strip_suffix("/*").is_some_and(|t| t == ty)
    })
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub message_id: String,
    pub content_type: String,
    /// Total size, `None` when the data streams in with no known end.
    pub size: Option<u64>,
    pub success_report: ReportMode,
    pub failure_report: ReportMode,
    /// Further headers for every chunk of the message.
    pub headers: Vec<(String, String)>,
    /// 0-based offset of the first byte to send: the peer has the bytes
    /// before it (a resumed file transfer, RFC 5547 a=file-range). The
    /// chunks' Byte-Range counts from the start of the whole message.
    pub start: u64,
}

/// What the driver should send next for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    pub message_id: String,
    /// 0-based offset of the first byte to send.
    pub offset: u64,
    /// Most bytes to put in this chunk.
    pub max_len: usize,
    /// The sender asked to abort the message: send an empty `#` chunk.
    pub abort: bool,
}

/// Where body bytes of an incoming chunk go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    /// 0-based offset of these bytes in the message.
    pub offset: u64,
}

/// Things the session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new incoming message (its first chunk's head).
    IncomingMessage {
        message_id: String,
        content_type: Option<String>,
        total: Option<u64>,
        head: ChunkHead,
    },
    /// Every byte of the message arrived and the last chunk ended with `$`.
    MessageComplete { message_id: String, size: u64 },
    /// The sender aborted the message (`#`, `by_sender`) or the session
    /// ended first.
    MessageAborted { message_id: String, by_sender: bool },
    /// One of our chunks got its transaction response (or timed out: 408).
    ChunkResponse {
        message_id: String,
        transaction_id: String,
        code: u16,
        comment: Option<String>,
        /// The byte range the chunk carried.
        range: (u64, u64),
    },
    /// The last chunk of one of our messages went out.
    MessageSent { message_id: String },
    /// A REPORT from the peer about one of our messages.
    Report {
        message_id: String,
        code: u16,
        comment: Option<String>,
        range: Option<ByteRange>,
    },
    /// A request we do not handle here (AUTH, or a method a host added).
    OtherRequest { head: ChunkHead },
    /// The relay renewed our path (a new AUTH succeeded) for `expires` s.
    RelayAuthRenewed { expires: u32 },
    /// Renewing our path on the relay failed; it drops the path when the
    /// last grant expires unless a retry succeeds first.
    RelayAuthFailed { code: u16, comment: Option<String> },
}

/// Renewal of our path on a relay: the AUTH client and when to act next.
struct Renewal {
    client: AuthClient,
    /// When to send the next AUTH (none while one is in flight).
    next: Option<Instant>,
    /// When the AUTH in flight times out.
    deadline: Option<Instant>,
}

/// How long to wait before retrying a failed renewal.
const AUTH_RETRY: Duration = Duration::from_secs(5);

/// A chunk the peer sent that we are reading.
struct InChunk {
    transaction_id: String,
    /// `None`: a REPORT or other request without a message to fill.
    message: Option<String>,
    start: u64,
    received: u64,
    /// Response to send when the chunk ends.
    code: u16,
    comment: Option<String>,
    failure_report: ReportMode,
    respond: bool,
    /// The previous hop (first URI of the From-Path), where a response goes.
    reply_to: Option<MsrpUri>,
}

/// A message the peer is sending us.
struct InMessage {
    total: Option<u64>,
    /// Byte intervals received, 0-based, half open, merged.
    have: BTreeMap<u64, u64>,
    ended: bool,
    success_report: ReportMode,
    from_path: Vec<MsrpUri>,
    /// The end of the in-order bytes the last partial REPORT covered.
    reported: u64,
}

impl InMessage {
    fn add(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Merge with every interval that touches [s, e).
        let touching: Vec<(u64, u64)> = self
            .have
            .range(..=e)
            .rev()
            .take_while(|(_, &ie)| ie >= s)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in touching {
            self.have.remove(&a);
            s = s.min(a);
            e = e.max(b);
        }
        self.have.insert(s, e);
    }

    /// Bytes received in order from the start.
    fn prefix(&self) -> u64 {
        match self.have.iter().next() {
            Some((&0, &e)) => e,
            _ => 0,
        }
    }

    fn complete(&self) -> Option<u64> {
        let total = self.total?;
        if total == 0 {
            return Some(0);
        }
        match self.have.iter().next() {
            Some((&0, &e)) if e >= total && self.have.len() == 1 => Some(total),
            _ => None,
        }
    }
}

/// A complete message waiting for the application's verdict.
struct Held {
    /// The last chunk's transaction: (id, reply-to hop, failure report).
    transaction: Option<(String, Option<MsrpUri>, ReportMode)>,
    success_report: ReportMode,
    /// The message's Failure-Report, for a verdict that comes as a REPORT.
    failure_report: ReportMode,
    from_path: Vec<MsrpUri>,
    size: u64,
}

struct OutState {
    msg: OutgoingMessage,
    sent: u64,
    /// The end of the bytes the peer's partial REPORTs say arrived.
    acked: u64,
    /// The data ended (known size reached or the source said so).
    finished: bool,
    abort: bool,
}

struct Pending {
    message_id: String,
    range: (u64, u64),
    deadline: Option<Instant>,
}

/// See the module documentation.
pub struct SessionCore {
    local: Vec<MsrpUri>,
    remote: Vec<MsrpUri>,
    config: SessionConfig,
    rng: u64,
    outq: VecDeque<OutState>,
    pending: HashMap<String, Pending>,
    incoming: HashMap<String, InMessage>,
    current: Option<InChunk>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    renewal: Option<Renewal>,
    held: HashMap<String, Held>,
    /// Whether the peer sends partial success REPORTs: unknown until one
    /// comes or the window has waited [`PROGRESS_PROBE`] in vain.
    peer_reports_progress: Option<bool>,
    /// When the send window last filled with the peer's habit unknown.
    window_full_since: Option<Instant>,
    /// Requests refused, for statistics.
    pub refused: u64,
}

impl SessionCore {
    /// `local`: our full path as the peer sees it (the last URI is ours);
    /// `remote`: the peer's full path from its a=path.
    pub fn new(
        local: Vec<MsrpUri>,
        remote: Vec<MsrpUri>,
        config: SessionConfig,
        seed: u64,
    ) -> SessionCore {
        SessionCore {
            local,
            remote,
            config,
            rng: seed,
            outq: VecDeque::new(),
            pending: HashMap::new(),
            incoming: HashMap::new(),
            current: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            renewal: None,
            held: HashMap::new(),
            peer_reports_progress: None,
            window_full_since: None,
            refused: 0,
        }
    }

    /// Keep our path on the relay alive: `client` got the grant in force
    /// on this connection; AUTH again before it ends.
    pub fn set_relay_auth(&mut self, client: AuthClient) {
        self.renewal = Some(Renewal {
            next: client.renew_at(),
            client,
            deadline: None,
        });
    }

    /// The relay grant in force (sent at, seconds), if a relay is kept.
    pub fn relay_grant(&self) -> Option<(Instant, u32)> {
        self.renewal.as_ref().and_then(|r| r.client.granted())
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Our own URI (the last of the local path).
    pub fn local_uri(&self) -> Option<&MsrpUri> {
        self.local.last()
    }

    /// A random identifier of `n` characters from `[0-9a-z]`.
    pub fn random_id(&mut self, n: usize) -> String {
        random_ident(&mut self.rng, n)
    }

    /// The head of a new request with the paths set (RFC 4975 section 7.1,
    /// RFC 4976 section 5): To-Path is our own relays, nearest first, then
    /// the peer's path; From-Path is our URI alone (relays add themselves).
    pub fn request_head(&mut self, method: &str) -> ChunkHead {
        let remote = self.remote.clone();
        self.request_head_to(method, &remote)
    }

    fn request_head_to(&mut self, method: &str, dest: &[MsrpUri]) -> ChunkHead {
        let tid = self.random_id(12);
        let mut h = ChunkHead::request(&tid, method);
        h.set_request_paths(&self.local, dest);
        h
    }

    // ----- outgoing -----

    /// Queue a message; its data is asked for through [`Self::next_chunk`].
    pub fn send_message(&mut self, msg: OutgoingMessage) {
        // A start beyond the end sends from the end: an empty last chunk.
        let start = msg.size.map_or(msg.start, |s| msg.start.min(s));
        self.outq.push_back(OutState {
            finished: msg.size == Some(0),
            msg,
            sent: start,
            acked: start,
            abort: false,
        });
    }

    /// Give up on a queued or partly sent message: its next chunk is an
    /// empty one ending in `#`. False when no such message is queued.
    pub fn abort_message(&mut self, message_id: &str) -> bool {
        match self
            .outq
            .iter_mut()
            .find(|o| o.msg.message_id == message_id)
        {
            Some(o) => {
                o.abort = true;
                true
            }
            None => false,
        }
    }

    /// Messages waiting to be sent, the one in progress first.
    pub fn queued(&self) -> usize {
        self.outq.len()
    }

    /// What to send next, if anything.
    pub fn next_chunk(&self) -> Option<ChunkRequest> {
        let o = self.outq.front()?;
        if !o.abort && self.window_full(o) {
            return None;
        }
        let mut max_len = if self.local.len() > 1 || self.remote.len() > 1 {
            self.config.chunk_size.min(self.config.relay_chunk_size)
        } else {
            self.config.chunk_size
        };
        if let Some(size) = o.msg.size {
            max_len = max_len.min(usize::try_from(size - o.sent).unwrap_or(usize::MAX));
        }
        Some(ChunkRequest {
            message_id: o.msg.message_id.clone(),
            offset: o.sent,
            max_len,
            abort: o.abort,
        })
    }

    /// Whether `o` waits for the peer's partial REPORTs to catch up.
    fn window_full(&self, o: &OutState) -> bool {
        self.config.send_window > 0
            && o.msg.success_report == ReportMode::Yes
            && self.peer_reports_progress != Some(false)
            && o.sent.saturating_sub(o.acked) >= self.config.send_window
    }

    /// Frame the next chunk of the front message around `data` (the bytes
    /// at the offset [`Self::next_chunk`] gave). `last`: the data source
    /// ended with these bytes (for messages of unknown size). Returns the
    /// head (with its blank line) and the tail (CRLF and end-line); the
    /// driver writes head, data, tail.
    pub fn frame_chunk(
        &mut self,
        now: Instant,
        data: &[u8],
        last: bool,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let o = self.outq.front_mut()?;
        let start = o.sent + 1;
        let end = o.sent + data.len() as u64;
        let flag = if o.abort {
            ContFlag::Abort
        } else if last || o.msg.size.is_some_and(|s| end >= s) {
            ContFlag::End
        } else {
            ContFlag::More
        };
        let msg = o.msg.clone();
        o.sent = end;
        if flag != ContFlag::More {
            o.finished = true;
        }
        if flag == ContFlag::More
            && self.peer_reports_progress.is_none()
            && self.window_full_since.is_none()
        {
            let o = self.outq.front().expect("the message framed");
            if self.window_full(o) {
                self.window_full_since = Some(now);
            }
        }
        // A transaction id that does not occur in the data.
        let mut head = self.request_head("SEND");
        while memmem::find(data, format!("-------{}", head.transaction_id).as_bytes()).is_some() {
            head.transaction_id = self.random_id(16);
        }
        head.push_header("Message-ID", &msg.message_id);
        let range = ByteRange {
            start,
            end: Some(end),
            total: if flag == ContFlag::End {
                Some(msg.size.unwrap_or(end))
            } else {
                msg.size
            },
        };
        head.push_header("Byte-Range", &range.to_string());
        if msg.success_report != ReportMode::No {
            head.push_header("Success-Report", msg.success_report.as_str());
        }
        if msg.failure_report != ReportMode::Yes {
            head.push_header("Failure-Report", msg.failure_report.as_str());
        }
        for (n, v) in &msg.headers {
            head.push_header(n, v);
        }
        head.push_header("Content-Type", &msg.content_type);
        let mut bytes = Vec::with_capacity(512);
        head.write_head(&mut bytes);
        bytes.extend_from_slice(b"\r\n");
        let mut tail = Vec::with_capacity(48);
        tail.extend_from_slice(b"\r\n");
        tail.extend_from_slice(&head.end_line(flag));
        if msg.failure_report == ReportMode::Yes {
            self.pending.insert(
                head.transaction_id.clone(),
                Pending {
                    message_id: msg.message_id.clone(),
                    range: (start, end),
                    deadline: Some(now + self.config.transaction_timeout),
                },
            );
        } else if msg.failure_report == ReportMode::Partial {
            // Only failures come back; no deadline.
            self.pending.insert(
                head.transaction_id.clone(),
                Pending {
                    message_id: msg.message_id.clone(),
                    range: (start, end),
                    deadline: None,
                },
            );
        }
        if flag != ContFlag::More {
            self.outq.pop_front();
            if flag == ContFlag::End {
                self.events.push_back(Event::MessageSent {
                    message_id: msg.message_id,
                });
            }
        }
        Some((bytes, tail))
    }

    // ----- incoming -----

    /// A chunk head from the parser. Returns where its body goes, if
    /// anywhere.
    pub fn handle_head(&mut self, head: ChunkHead, defect: Option<String>) -> Option<Delivery> {
        self.current = None;
        let method = match &head.start {
            StartLine::Response { code, comment } => {
                let ours = self
                    .renewal
                    .as_ref()
                    .and_then(|r| r.client.transaction_id());
                if ours == Some(head.transaction_id.as_str()) {
                    self.handle_auth_response(&head);
                } else {
                    self.handle_response(&head.transaction_id, *code, comment.clone());
                }
                return None;
            }
            StartLine::Request { method } => method.clone(),
        };
        let mut chunk = InChunk {
            transaction_id: head.transaction_id.clone(),
            message: None,
            start: 1,
            received: 0,
            code: 200,
            comment: None,
            failure_report: ReportMode::Yes,
            respond: method != "REPORT",
            reply_to: head.previous_hop(),
        };
        let refuse = |chunk: &mut InChunk, code: u16, why: String| {
            chunk.code = code;
            chunk.comment = Some(why);
        };
        if let Some(d) = defect {
            refuse(&mut chunk, 400, d);
        } else if let Err(e) = head.failure_report() {
            refuse(&mut chunk, 400, e.to_string());
        } else {
            chunk.failure_report = head.failure_report().unwrap_or(ReportMode::Yes);
            match head.to_path() {
                Err(e) => refuse(&mut chunk, 400, e.to_string()),
                Ok(to) => {
                    let ours = to.first().zip(self.local.last());
                    if !ours.is_some_and(|(a, b)| a.matches(b)) {
                        refuse(&mut chunk, 481, "no such session".into());
                    } else if let Err(e) = head.from_path() {
                        refuse(&mut chunk, 400, e.to_string());
                    }
                }
            }
        }
        if chunk.code == 200 {
            match method.as_str() {
                "SEND" => self.incoming_send(&head, &mut chunk),
                "REPORT" => self.incoming_report(&head),
                "AUTH" | "NICKNAME" => self.events.push_back(Event::OtherRequest { head }),
                _ => refuse(&mut chunk, 501, "unknown method".into()),
            }
        }
        if chunk.code != 200 {
            self.refused += 1;
            chunk.message = None;
        }
        let delivery = chunk.message.clone().map(|m| Delivery {
            message_id: m,
            offset: chunk.start - 1,
        });
        self.current = Some(chunk);
        delivery
    }

    fn incoming_send(&mut self, head: &ChunkHead, chunk: &mut InChunk) {
        let Some(mid) = head.message_id().filter(|m| !m.is_empty()) else {
            chunk.code = 400;
            chunk.comment = Some("no Message-ID".into());
            return;
        };
        let range = match head.byte_range() {
            Ok(r) => r.unwrap_or(ByteRange {
                start: 1,
                end: None,
                total: None,
            }),
            Err(e) => {
                chunk.code = 400;
                chunk.comment = Some(e.to_string());
                return;
            }
        };
        let success_report = match head.success_report() {
            Ok(s) => s,
            Err(e) => {
                chunk.code = 400;
                chunk.comment = Some(e.to_string());
                return;
            }
        };
        if let (Some(limit), Some(total)) = (self.config.max_incoming_message, range.total) {
            if total > limit {
                chunk.code = 413;
                chunk.comment = Some("Message Too Large".into());
                return;
            }
        }
        if !self.incoming.contains_key(mid) {
            if let (Some(accepted), Some(ct)) = (&self.config.accept_types, head.content_type()) {
                if !media_type_accepted(accepted, ct) {
                    chunk.code = 415;
                    chunk.comment = Some(format!("{ct} is not accepted here"));
                    return;
                }
            }
            if self.incoming.len() >= self.config.max_incoming_messages {
                chunk.code = 413;
                chunk.comment = Some("too many messages in progress".into());
                return;
            }
            let mut have = BTreeMap::new();
            if self.config.incoming_offset > 0 {
                have.insert(0, self.config.incoming_offset);
            }
            self.incoming.insert(
                mid.to_string(),
                InMessage {
                    total: range.total,
                    have,
                    ended: false,
                    success_report,
                    from_path: head.from_path().unwrap_or_default(),
                    reported: 0,
                },
            );
            self.events.push_back(Event::IncomingMessage {
                message_id: mid.to_string(),
                content_type: head.content_type().map(str::to_string),
                total: range.total,
                head: head.clone(),
            });
        } else if let Some(m) = self.incoming.get_mut(mid) {
            if m.total.is_none() {
                m.total = range.total;
            } else if range.total.is_some() && range.total != m.total {
                chunk.code = 400;
                chunk.comment = Some("total size changed".into());
                return;
            }
        }
        chunk.message = Some(mid.to_string());
        chunk.start = range.start;
    }

    fn incoming_report(&mut self, head: &ChunkHead) {
        let Some(mid) = head.message_id() else {
            return;
        };
        let Ok(Some(status)) = head.status() else {
            return;
        };
        let range = head.byte_range().ok().flatten();
        if let Some(r) = range.filter(|r| status.code == 200 && r.start == 1) {
            let end = r.end.unwrap_or(0);
            if r.total.is_none_or(|t| end < t) {
                // Partial: how far the peer has the message, not a verdict.
                self.peer_reports_progress = Some(true);
                self.window_full_since = None;
                if let Some(o) = self.outq.iter_mut().find(|o| o.msg.message_id == mid) {
                    o.acked = o.acked.max(end.min(o.sent));
                }
                return;
            }
        }
        self.events.push_back(Event::Report {
            message_id: mid.to_string(),
            code: status.code,
            comment: status.comment,
            range,
        });
    }

    /// Body bytes of the current chunk. Returns where they go, or `None`
    /// to drop them (a refused chunk, or bytes beyond the message's size).
    pub fn handle_data(&mut self, len: usize) -> Option<Delivery> {
        let c = self.current.as_mut()?;
        let offset = c.start - 1 + c.received;
        c.received += len as u64;
        let mid = c.message.clone()?;
        let m = self.incoming.get(&mid)?;
        if m.total
            .is_some_and(|t| offset.saturating_add(len as u64) > t)
        {
            c.code = 400;
            c.comment = Some("data beyond the Byte-Range total".into());
            c.message = None;
            self.refused += 1;
            return None;
        }
        Some(Delivery {
            message_id: mid,
            offset,
        })
    }

    /// The chunk's end-line.
    pub fn handle_end(&mut self, flag: ContFlag) {
        let Some(c) = self.current.take() else {
            return;
        };
        if let Some(mid) = &c.message {
            if let Some(m) = self.incoming.get_mut(mid) {
                let start = c.start - 1;
                m.add(start, start.saturating_add(c.received));
                match flag {
                    ContFlag::Abort => {
                        self.incoming.remove(mid);
                        self.events.push_back(Event::MessageAborted {
                            message_id: mid.clone(),
                            by_sender: true,
                        });
                    }
                    ContFlag::End => {
                        m.ended = true;
                        if m.total.is_none() {
                            m.total = Some(start.saturating_add(c.received));
                        }
                    }
                    ContFlag::More => {}
                }
            }
        }
        let done = c.message.as_ref().and_then(|mid| {
            self.incoming
                .get(mid)
                .filter(|m| m.ended)
                .and_then(|m| m.complete())
        });
        if let (Some(size), true, Some(mid)) = (done, self.config.defer_completion, &c.message) {
            // The application decides how this message is answered.
            let m = self.incoming.remove(mid).expect("checked just above");
            let by_report = self.config.verdict_by_report;
            if by_report && c.respond {
                self.respond(
                    &c.transaction_id,
                    c.reply_to.as_ref(),
                    c.failure_report,
                    c.code,
                    c.comment.as_deref(),
                );
            }
            self.held.insert(
                mid.clone(),
                Held {
                    transaction: (c.respond && !by_report).then(|| {
                        (
                            c.transaction_id.clone(),
                            c.reply_to.clone(),
                            c.failure_report,
                        )
                    }),
                    success_report: m.success_report,
                    failure_report: c.failure_report,
                    from_path: m.from_path,
                    size,
                },
            );
            self.events.push_back(Event::MessageComplete {
                message_id: mid.clone(),
                size,
            });
            return;
        }
        if c.respond {
            self.respond(
                &c.transaction_id,
                c.reply_to.as_ref(),
                c.failure_report,
                c.code,
                c.comment.as_deref(),
            );
        }
        let Some(mid) = c.message else {
            return;
        };
        if let Some(size) = done {
            let m = self.incoming.remove(&mid).expect("checked just above");
            if m.success_report == ReportMode::Yes {
                self.send_report(&mid, &m.from_path, 200, "OK", size);
            }
            self.events.push_back(Event::MessageComplete {
                message_id: mid,
                size,
            });
        } else {
            self.report_progress(&mid);
        }
    }

    /// A partial success REPORT for `mid` if its in-order bytes have grown
    /// enough since the last one (see [`SessionConfig::report_step`]).
    fn report_progress(&mut self, mid: &str) {
        let step = self.config.report_step;
        let Some(m) = self.incoming.get_mut(mid) else {
            return;
        };
        let prefix = m.prefix();
        if step == 0
            || m.success_report != ReportMode::Yes
            || prefix <= m.reported
            || (m.reported > 0 && prefix - m.reported < step)
        {
            return;
        }
        m.reported = prefix;
        let (total, from_path) = (m.total, m.from_path.clone());
        let range = ByteRange {
            start: 1,
            end: Some(prefix),
            total,
        };
        self.send_report_range(mid, &from_path, 200, "OK", range);
    }

    /// Answer a chunk by the Failure-Report rules (RFC 4975 section 7.1.2):
    /// `no` never, `partial` only on failure, `yes` always.
    fn respond(
        &mut self,
        tid: &str,
        reply_to: Option<&MsrpUri>,
        failure_report: ReportMode,
        code: u16,
        comment: Option<&str>,
    ) {
        if (code != 200 || failure_report == ReportMode::Yes) && failure_report != ReportMode::No {
            // Always with a comment: some relays read a bare code as a method.
            let comment = comment.unwrap_or(reason_phrase(code));
            let mut r = ChunkHead::response(tid, code, Some(comment));
            r.set_response_paths(reply_to.or(self.remote.first()), &self.local);
            self.transmit.push_back(r.to_bytes(b"", ContFlag::End));
        }
    }

    /// The verdict on a complete message held by `defer_completion`: 200
    /// answers its last chunk and sends the success REPORT if asked for;
    /// any other code refuses it (the sender sees that code). False when
    /// no such message waits.
    pub fn complete_message(&mut self, message_id: &str, code: u16, comment: Option<&str>) -> bool {
        let Some(h) = self.held.remove(message_id) else {
            return false;
        };
        if let Some((tid, reply_to, fr)) = &h.transaction {
            self.respond(tid, reply_to.as_ref(), *fr, code, comment);
        } else if code != 200 && h.failure_report != ReportMode::No {
            // The chunk was answered already: the refusal is a failure
            // REPORT (RFC 4975 section 7.1.2).
            let comment = comment.unwrap_or(reason_phrase(code)).to_string();
            self.send_report(message_id, &h.from_path, code, &comment, h.size);
        }
        if code == 200 && h.success_report == ReportMode::Yes {
            self.send_report(message_id, &h.from_path, 200, "OK", h.size);
        }
        true
    }

    /// Messages waiting for [`Self::complete_message`].
    pub fn held_messages(&self) -> usize {
        self.held.len()
    }

    fn send_report(
        &mut self,
        mid: &str,
        from_path: &[MsrpUri],
        code: u16,
        comment: &str,
        size: u64,
    ) {
        let range = ByteRange {
            start: 1,
            end: Some(size),
            total: Some(size),
        };
        self.send_report_range(mid, from_path, code, comment, range);
    }

    fn send_report_range(
        &mut self,
        mid: &str,
        from_path: &[MsrpUri],
        code: u16,
        comment: &str,
        range: ByteRange,
    ) {
        // Back along the path the message came: its From-Path, which holds
        // every relay between us already, ours included.
        let mut h = if from_path.is_empty() {
            self.request_head("REPORT")
        } else {
            let me = self.local.len().saturating_sub(1);
            let mut h = ChunkHead::request(&self.random_id(12), "REPORT");
            h.set_request_paths(&self.local[me..], from_path);
            h
        };
        h.push_header("Message-ID", mid);
        h.push_header("Byte-Range", &range.to_string());
        h.push_header("Status", &format!("000 {code} {comment}"));
        self.transmit.push_back(h.to_bytes(b"", ContFlag::End));
    }

    fn handle_response(&mut self, tid: &str, code: u16, comment: Option<String>) {
        let Some(p) = self.pending.remove(tid) else {
            return;
        };
        self.events.push_back(Event::ChunkResponse {
            message_id: p.message_id,
            transaction_id: tid.to_string(),
            code,
            comment,
            range: p.range,
        });
    }

    // ----- relay renewal -----

    fn renewal_outcome(&mut self, now: Instant, outcome: AuthOutcome) {
        let timeout = self.config.transaction_timeout;
        let Some(r) = self.renewal.as_mut() else {
            return;
        };
        match outcome {
            AuthOutcome::Send(bytes) => {
                r.deadline = Some(now + timeout);
                self.transmit.push_back(bytes);
            }
            AuthOutcome::Granted { expires, .. } => {
                r.deadline = None;
                r.next = r.client.renew_at();
                self.events.push_back(Event::RelayAuthRenewed { expires });
            }
            AuthOutcome::Failed { code, comment } => {
                r.deadline = None;
                // Try again while the grant lasts.
                let retry = now + AUTH_RETRY;
                r.next = r.client.expiry().filter(|e| retry < *e).map(|_| retry);
                self.events.push_back(Event::RelayAuthFailed {
                    code,
                    comment: Some(comment),
                });
            }
            AuthOutcome::NotOurs => {}
        }
    }

    fn handle_auth_response(&mut self, head: &ChunkHead) {
        let Some(r) = self.renewal.as_mut() else {
            return;
        };
        // Responses carry no time of their own; the request's send time is
        // the safe side for the new deadline.
        let Some(now) = r.client.sent_at() else {
            return;
        };
        let outcome = r.client.handle_response(head);
        self.renewal_outcome(now, outcome);
    }

    // ----- time and output -----

    pub fn poll_timeout(&self) -> Option<Instant> {
        let renewal = self.renewal.as_ref().and_then(|r| r.deadline.or(r.next));
        let probe = self.window_full_since.map(|t| t + PROGRESS_PROBE);
        self.pending
            .values()
            .filter_map(|p| p.deadline)
            .chain(renewal)
            .chain(probe)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self
            .window_full_since
            .is_some_and(|t| t + PROGRESS_PROBE <= now)
        {
            // No partial REPORT in all that time: the peer sends none.
            self.window_full_since = None;
            self.peer_reports_progress = Some(false);
        }
        if let Some(r) = self.renewal.as_mut() {
            if r.deadline.is_some_and(|d| d <= now) {
                let outcome = r.client.timed_out();
                self.renewal_outcome(now, outcome);
            } else if r.deadline.is_none() && r.next.is_some_and(|n| n <= now) {
                r.next = None;
                let bytes = r.client.request(now);
                self.renewal_outcome(now, AuthOutcome::Send(bytes));
            }
        }
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(t, _)| t.clone())
            .collect();
        for tid in expired {
            self.handle_response(&tid, 408, Some("Request Timeout".into()));
        }
    }

    /// The connection is gone: every unfinished message in either direction
    /// fails.
    pub fn handle_closed(&mut self) {
        let tids: Vec<String> = self.pending.keys().cloned().collect();
        for tid in tids {
            self.handle_response(&tid, 408, Some("connection closed".into()));
        }
        for o in std::mem::take(&mut self.outq) {
            self.events.push_back(Event::ChunkResponse {
                message_id: o.msg.message_id,
                transaction_id: String::new(),
                code: 408,
                comment: Some("connection closed".into()),
                range: (o.sent + 1, o.sent),
            });
        }
        let mut mids: Vec<String> = self.incoming.keys().cloned().collect();
        mids.sort();
        self.incoming.clear();
        self.held.clear();
        self.current = None;
        for mid in mids {
            self.events.push_back(Event::MessageAborted {
                message_id: mid,
                by_sender: false,
            });
        }
    }

    /// Responses and REPORTs to write (whole chunks).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Transactions waiting for a response.
    pub fn pending_transactions(&self) -> usize {
        self.pending.len()
    }

    /// Incoming messages partly received.
    pub fn incoming_in_progress(&self) -> usize {
        self.incoming.len()
    }
}
