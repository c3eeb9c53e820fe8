//! `Session` and `SessionManager`: INVITE sessions with media streams from
//! the registry.
//!
//! Each session runs as one task on the runtime thread that owns its
//! [`InviteSession`] core and its streams. Methods check the state at once
//! (a call that is not allowed returns `InvalidState` and changes nothing),
//! then hand the work to the task. Notifications, with the session as
//! sender:
//!
//! | name | data |
//! |---|---|
//! | SIPSessionNewIncoming | `streams` (list of {type, id}) |
//! | SIPSessionNewOutgoing | `streams` |
//! | SIPSessionGotProvisionalResponse | `code`, `reason` |
//! | SIPSessionGotRingIndication | |
//! | SIPSessionWillStart | |
//! | SIPSessionDidStart | `streams` |
//! | SIPSessionDidFail | `originator`, `code`, `reason`, `failure_reason` |
//! | SIPSessionWillEnd | `originator` |
//! | SIPSessionDidEnd | `originator`, `end_reason`, `code` |
//! | SIPSessionDidChangeState | `prev_state`, `state` |
//! | SIPSessionDidChangeHoldState | `originator`, `on_hold`, `partial` |
//! | SIPSessionGotProposal | `originator`, `streams` |
//! | SIPSessionProposalAccepted | `originator`, `accepted_streams`, `proposed_streams` |
//! | SIPSessionProposalRejected | `originator`, `code`, `reason`, `streams` |
//! | SIPSessionDidRenegotiateStreams | `originator`, `added_streams`, `removed_streams` |
//!
//! Every session ends with exactly one SIPSessionDidEnd; a session that
//! never started posts SIPSessionDidFail just before it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use super::account::Account;
use super::error::{Error, Result};
use super::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use super::stream::{self, MediaStreamRegistry, StreamContext, StreamHandle};
pub(crate) use crate::driver::engine::local_ip_towards;
use crate::driver::engine::{numeric_peer, ClientEvent, Engine, SendOptions};
use crate::proto::sdp::offer_answer::{answer_direction, hold_direction, refuse};
use crate::proto::sdp::{Direction, MediaDescription, SessionDescription};
use crate::proto::sip::transaction::{Peer, TransportKind, TxKey};
use crate::proto::sip::{SipMessage, Uri};
use crate::proto::ua::session::{
    Action, Event, Hop, InviteSession, Originator, Outcome, ReqId, SessionConfig, SessionTimers,
    State,
};

pub const NEW_INCOMING: &str = "SIPSessionNewIncoming";
pub const NEW_OUTGOING: &str = "SIPSessionNewOutgoing";
pub const GOT_PROVISIONAL: &str = "SIPSessionGotProvisionalResponse";
pub const GOT_RING: &str = "SIPSessionGotRingIndication";
pub const WILL_START: &str = "SIPSessionWillStart";
pub const DID_START: &str = "SIPSessionDidStart";
pub const DID_FAIL: &str = "SIPSessionDidFail";
pub const WILL_END: &str = "SIPSessionWillEnd";
pub const DID_END: &str = "SIPSessionDidEnd";
pub const DID_CHANGE_STATE: &str = "SIPSessionDidChangeState";
pub const DID_CHANGE_HOLD: &str = "SIPSessionDidChangeHoldState";
pub const GOT_PROPOSAL: &str = "SIPSessionGotProposal";
pub const PROPOSAL_ACCEPTED: &str = "SIPSessionProposalAccepted";
pub const PROPOSAL_REJECTED: &str = "SIPSessionProposalRejected";
pub const DID_RENEGOTIATE: &str = "SIPSessionDidRenegotiateStreams";

pub use crate::proto::ua::session::State as SessionState;

/// What the engine routes to a session task.
pub(crate) enum Input {
    Cmd(Command),
    Request {
        key: Option<TxKey>,
        request: SipMessage,
    },
    Cancel(TxKey),
    AckTimeout,
    Response {
        id: ReqId,
        outcome: Outcome,
    },
    /// A 2xx that matched no transaction (a retransmission).
    Stray(SipMessage),
}

pub(crate) enum Command {
    Connect { target: Uri, routes: Vec<Uri> },
    Ring,
    Accept(Vec<StreamHandle>),
    Reject(u16, String),
    End,
    Hold(bool),
    Add(Vec<StreamHandle>),
    Remove(Vec<StreamHandle>),
    AcceptProposal(Vec<StreamHandle>),
    RejectProposal(u16, String),
}

/// Sessions by dialog key and by server transaction, for the engine's
/// dispatcher; and the list SessionManager shows.
#[derive(Default)]
pub(crate) struct SessionTable {
    routes: Mutex<HashMap<(String, String), mpsc::UnboundedSender<Input>>>,
    keys: Mutex<HashMap<TxKey, mpsc::UnboundedSender<Input>>>,
    sessions: Mutex<Vec<Session>>,
    busy: AtomicBool,
    default_account: Mutex<Option<Account>>,
}

impl SessionTable {
    /// Route an in-dialog request, ACK or stray response by (Call-ID, our
    /// tag). False when no session has that dialog.
    pub fn route(&self, call_id: &str, local_tag: &str, input: Input) -> bool {
        let tx = self
            .routes
            .lock()
            .get(&(call_id.to_string(), local_tag.to_string()))
            .cloned();
        match tx {
            Some(tx) => tx.send(input).is_ok(),
            None => false,
        }
    }

    /// Let `key` (a re-INVITE's server transaction) reach the session
    /// that has dialog (call_id, local_tag).
    pub fn register_key(&self, call_id: &str, local_tag: &str, key: TxKey) {
        let tx = self
            .routes
            .lock()
            .get(&(call_id.to_string(), local_tag.to_string()))
            .cloned();
        if let Some(tx) = tx {
            self.keys.lock().insert(key, tx);
        }
    }

    /// The account incoming sessions get (the AccountManager keeps it).
    pub fn default_account_slot(&self) -> &Mutex<Option<Account>> {
        &self.default_account
    }

    pub fn route_key(&self, key: TxKey, input: Input) -> bool {
        let tx = self.keys.lock().get(&key).cloned();
        match tx {
            Some(tx) => tx.send(input).is_ok(),
            None => false,
        }
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.sessions.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    fn remove(&self, s: &Session, dialog: Option<(String, String)>, keys: &[TxKey]) {
        if let Some(d) = dialog {
            self.routes.lock().remove(&d);
        }
        let mut k = self.keys.lock();
        for key in keys {
            k.remove(key);
        }
        drop(k);
        self.sessions
            .lock()
            .retain(|x| !Arc::ptr_eq(&x.inner, &s.inner));
    }
}

/// What a session needs from the running application.
#[derive(Clone)]
pub(crate) struct SessionEnv {
    pub engine: Engine,
    pub runtime: tokio::runtime::Handle,
    pub table: Arc<SessionTable>,
    pub user_agent: String,
    pub timers: Option<SessionTimers>,
    pub rel100: bool,
    /// RFC 3261 T1 (the engine's), for reliable provisional retransmits.
    pub t1: std::time::Duration,
    pub settings: Arc<super::settings::SettingsStore>,
    /// The system resolver, made on first use and kept (with its cache).
    pub dns: Arc<once_cell::sync::OnceCell<crate::driver::dns::DNSLookup>>,
    /// msrps configurations for the streams, made on first use.
    pub msrp_tls: crate::api::msrp::MsrpTlsCache,
}

#[derive(Debug, Clone, Default)]
struct Info {
    state: Option<State>,
    direction: Option<&'static str>,
    start_time: Option<SystemTime>,
    stop_time: Option<SystemTime>,
    on_hold_by_local: bool,
    on_hold_by_remote: bool,
    remote_user_agent: Option<String>,
    local_identity: Option<String>,
    remote_identity: Option<String>,
    route: Option<String>,
    streams: Vec<StreamHandle>,
    proposed_streams: Vec<StreamHandle>,
}

struct Inner {
    sender: Sender,
    account: Account,
    env: SessionEnv,
    info: Mutex<Info>,
    input: Mutex<Option<mpsc::UnboundedSender<Input>>>,
    will_end_posted: AtomicBool,
}

/// An INVITE session with its media streams.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.sender.id.0)
            .field("state", &self.state())
            .finish()
    }
}

fn post(sender: &Sender, name: &str, data: NotificationData) {
    NotificationCenter::default().post_notification(name, sender, data);
}

fn streams_json(s: &[StreamHandle]) -> Value {
    Value::Array(s.iter().map(StreamHandle::to_json).collect())
}

fn contains(list: &[StreamHandle], s: &StreamHandle) -> bool {
    list.iter().any(|x| x.id() == s.id())
}

impl Session {
    /// A new outgoing session for `account` (state NULL until connect).
    pub(crate) fn new(env: SessionEnv, account: Account) -> Session {
        Session {
            inner: Arc::new(Inner {
                sender: Sender {
                    id: ObjectId::new(),
                    kind: "Session",
                },
                account,
                env,
                info: Mutex::new(Info {
                    state: Some(State::Null),
                    ..Info::default()
                }),
                input: Mutex::new(None),
                will_end_posted: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> ObjectId {
        self.inner.sender.id
    }

    pub fn account(&self) -> &Account {
        &self.inner.account
    }

    pub fn state(&self) -> State {
        self.inner.info.lock().state.unwrap_or(State::Null)
    }

    /// "outgoing", "incoming", or None before connect.
    pub fn direction(&self) -> Option<&'static str> {
        self.inner.info.lock().direction
    }

    pub fn start_time(&self) -> Option<SystemTime> {
        self.inner.info.lock().start_time
    }

    pub fn stop_time(&self) -> Option<SystemTime> {
        self.inner.info.lock().stop_time
    }

    pub fn on_hold_by_local(&self) -> bool {
        self.inner.info.lock().on_hold_by_local
    }

    pub fn on_hold_by_remote(&self) -> bool {
        self.inner.info.lock().on_hold_by_remote
    }

    pub fn on_hold(&self) -> bool {
        let i = self.inner.info.lock();
        i.on_hold_by_local || i.on_hold_by_remote
    }

    pub fn remote_user_agent(&self) -> Option<String> {
        self.inner.info.lock().remote_user_agent.clone()
    }

    pub fn local_identity(&self) -> Option<String> {
        self.inner.info.lock().local_identity.clone()
    }

    pub fn remote_identity(&self) -> Option<String> {
        self.inner.info.lock().remote_identity.clone()
    }

    /// The route (outbound proxy or target) of an outgoing session.
    pub fn route(&self) -> Option<String> {
        self.inner.info.lock().route.clone()
    }

    pub fn streams(&self) -> Vec<StreamHandle> {
        self.inner.info.lock().streams.clone()
    }

    pub fn proposed_streams(&self) -> Vec<StreamHandle> {
        self.inner.info.lock().proposed_streams.clone()
    }

    /// The proposed streams whose type is listed (None: all of them).
    pub fn proposed_streams_of_types(&self, types: Option<&[String]>) -> Vec<StreamHandle> {
        self.proposed_streams()
            .into_iter()
            .filter(|s| types.is_none_or(|t| t.iter().any(|x| x == s.stream_type())))
            .collect()
    }

    /// The session's chat stream: a started one, else one still being set
    /// up (messages sent to it queue until it starts). A stream of type
    /// `chat` comes before other MSRP message types a host registered.
    pub fn chat_stream(&self) -> Option<StreamHandle> {
        let is_msrp = |h: &&StreamHandle| super::streams::ChatStream::of(h).is_some();
        let mut all: Vec<StreamHandle> = self.streams();
        all.extend(self.proposed_streams());
        let chat = all
            .iter()
            .filter(is_msrp)
            .find(|h| h.stream_type() == super::streams::chat::TYPE);
        chat.or_else(|| all.iter().find(is_msrp)).cloned()
    }

    /// Send a message on the session's chat stream (the SDK's
    /// `Session.send_message`); returns its message id, which comes back in
    /// ChatStreamDidDeliverMessage or ChatStreamDidNotDeliverMessage.
    pub fn send_message(&self, content: &[u8], content_type: &str) -> Result<String> {
        let h = self
            .chat_stream()
            .ok_or_else(|| Error::InvalidState("the session has no chat stream".into()))?;
        let chat = super::streams::ChatStream::of(&h)
            .ok_or_else(|| Error::Internal("not a chat stream".into()))?;
        chat.send_message(content.to_vec(), content_type, None, None, Vec::new())
    }

    /// Call `to` (through `routes`, as [`Self::connect`]) to send it the
    /// file at `path`: a session with one file transfer stream (push).
    pub fn connect_file(
        &self,
        to: &str,
        routes: &[String],
        path: impl AsRef<std::path::Path>,
    ) -> Result<StreamHandle> {
        let s = super::streams::FileTransferStream::push(path)?;
        self.connect(to, routes, vec![s.clone()])?;
        Ok(s)
    }

    /// Call `to` to fetch the file `selector` names (RFC 5547 file-selector
    /// text: `name:"report.pdf" size:1234 hash:sha1:...`): a session with
    /// one file transfer stream (pull).
    pub fn connect_pull(
        &self,
        to: &str,
        routes: &[String],
        selector: &str,
    ) -> Result<StreamHandle> {
        let sel = crate::proto::sdp::file_transfer::FileSelector::parse(selector)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let s = super::streams::FileTransferStream::pull(sel)?;
        self.connect(to, routes, vec![s.clone()])?;
        Ok(s)
    }

    /// The session's (built-in) audio stream.
    fn audio_stream(&self) -> Result<StreamHandle> {
        self.streams()
            .into_iter()
            .find(|h| {
                h.implementation()
                    .as_any()
                    .is_some_and(|a| a.is::<super::streams::AudioStream>())
            })
            .ok_or_else(|| Error::InvalidState("the session has no audio stream".into()))
    }

    fn with_audio<T>(
        &self,
        f: impl FnOnce(&super::streams::AudioStream) -> Result<T>,
    ) -> Result<T> {
        let h = self.audio_stream()?;
        let a = h
            .implementation()
            .as_any()
            .and_then(|a| a.downcast_ref::<super::streams::AudioStream>())
            .ok_or_else(|| Error::Internal("not an audio stream".into()))?;
        f(a)
    }

    /// Send DTMF `digits` (0-9, *, #, A-D) on the session's audio stream
    /// (RFC 4733 telephone events).
    pub fn send_dtmf(&self, digits: &str) -> Result<()> {
        self.with_audio(|a| a.send_dtmf(digits))
    }

    /// Record the call's audio to `file` (a 2-channel WAV: what we send,
    /// what we hear), or to a file named after the time and the peer in
    /// `audio.recordings_directory` (default `~/sipsimple-recordings`).
    /// Returns the file written.
    pub fn start_recording_audio(&self, file: Option<&str>) -> Result<String> {
        let path = match file {
            Some(f) => f.to_string(),
            None => {
                let settings = self.inner.env.settings.snapshot();
                let dir = match super::engine::setting(&settings, "audio.recordings_directory") {
                    Some(Value::String(d)) if !d.is_empty() => std::path::PathBuf::from(d),
                    _ => std::env::var_os("HOME")
                        .filter(|h| !h.is_empty())
                        .map(|h| std::path::PathBuf::from(h).join("sipsimple-recordings"))
                        .unwrap_or_else(std::env::temp_dir),
                };
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
                let peer = self
                    .remote_identity()
                    .and_then(|r| {
                        crate::proto::cpim::CpimAddress::parse(r.split(';').next().unwrap_or(&r))
                            .ok()
                    })
                    .map(|a| a.uri)
                    .unwrap_or_else(|| "call".into());
                let when = crate::proto::cpim::format_datetime(SystemTime::now());
                let name = crate::proto::sdp::file_transfer::sanitize_file_name(&format!(
                    "{}-{}.wav",
                    when.replace(':', "-"),
                    peer.replace([':', '@'], "-")
                ));
                dir.join(name).display().to_string()
            }
        };
        self.with_audio(|a| a.start_recording(&path))
    }

    /// Stop recording the call.
    pub fn stop_recording_audio(&self) -> Result<()> {
        self.with_audio(|a| a.stop_recording())
    }

    /// Offer the file at `path` to the peer of this established session:
    /// a new file transfer stream (push), proposed like any added stream.
    pub fn send_file(&self, path: impl AsRef<std::path::Path>) -> Result<StreamHandle> {
        let s = super::streams::FileTransferStream::push(path)?;
        self.add_stream(s.clone())?;
        Ok(s)
    }

    /// The session's file transfer streams that ask us for a file (the
    /// peer pulls), still waiting for [`Self::set_file_source`].
    fn pull_requests(&self) -> Vec<StreamHandle> {
        self.proposed_streams()
            .into_iter()
            .filter(|h| {
                super::streams::FileTransferStream::of(h)
                    .is_some_and(|f| f.is_pull() && f.direction() == "send")
            })
            .collect()
    }

    /// Answer the peer's pull request(s) with the file at `path` (before
    /// accepting): the file must be the one asked for.
    pub fn set_file_source(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let requests = self.pull_requests();
        if requests.is_empty() {
            return Err(Error::InvalidState(
                "the session has no pull request for a file".into(),
            ));
        }
        for h in requests {
            if let Some(f) = super::streams::FileTransferStream::of(&h) {
                f.set_source(path.as_ref())?;
            }
        }
        Ok(())
    }

    /// Tell the sender of received chat message `message_id` that it was
    /// displayed (RFC 5438), when it asked for that.
    pub fn send_display_notification(&self, message_id: &str) -> Result<()> {
        let h = self
            .chat_stream()
            .ok_or_else(|| Error::InvalidState("the session has no chat stream".into()))?;
        super::streams::ChatStream::of(&h)
            .ok_or_else(|| Error::Internal("not a chat stream".into()))?
            .send_display_notification(message_id)
    }

    /// An is-composing indication on the session's chat stream.
    pub fn send_composing_indication(&self, state: &str, refresh: Option<u32>) -> Result<()> {
        let h = self
            .chat_stream()
            .ok_or_else(|| Error::InvalidState("the session has no chat stream".into()))?;
        super::streams::ChatStream::of(&h)
            .ok_or_else(|| Error::Internal("not a chat stream".into()))?
            .send_composing_indication(state, refresh, None)
    }

    /// Remove the session's first stream of `stream_type`.
    pub fn remove_stream_of_type(&self, stream_type: &str) -> Result<()> {
        let s = self
            .streams()
            .into_iter()
            .find(|x| x.stream_type() == stream_type)
            .ok_or_else(|| Error::NotFound(format!("the session has no {stream_type} stream")))?;
        self.remove_stream(s)
    }

    /// Every attribute as one JSON object (times in seconds since the Unix
    /// epoch), the form the C ABI returns.
    pub fn info_json(&self) -> Value {
        let i = self.inner.info.lock();
        let secs = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
        };
        serde_json::json!({
            "id": self.inner.sender.id.0,
            "account": self.inner.account.id(),
            "state": i.state.unwrap_or(State::Null).as_str(),
            "direction": i.direction,
            "start_time": secs(i.start_time),
            "stop_time": secs(i.stop_time),
            "on_hold_by_local": i.on_hold_by_local,
            "on_hold_by_remote": i.on_hold_by_remote,
            "on_hold": i.on_hold_by_local || i.on_hold_by_remote,
            "remote_user_agent": i.remote_user_agent,
            "local_identity": i.local_identity,
            "remote_identity": i.remote_identity,
            "route": i.route,
            "streams": Value::Array(i.streams.iter().map(StreamHandle::describe).collect()),
            "proposed_streams": streams_json(&i.proposed_streams),
        })
    }

    /// Check the state and move to `next` atomically; posts the change.
    fn transition(&self, what: &str, allowed: &[State], next: Option<State>) -> Result<()> {
        let prev = {
            let mut i = self.inner.info.lock();
            let cur = i.state.unwrap_or(State::Null);
            if !allowed.contains(&cur) {
                return Err(Error::InvalidState(format!(
                    "{what} is not allowed in state {cur}"
                )));
            }
            match next {
                Some(n) if n != cur => {
                    i.state = Some(n);
                    Some(cur)
                }
                _ => None,
            }
        };
        if let (Some(p), Some(n)) = (prev, next) {
            post(
                &self.inner.sender,
                DID_CHANGE_STATE,
                NotificationData::new()
                    .with("prev_state", p.as_str())
                    .with("state", n.as_str()),
            );
        }
        Ok(())
    }

    fn send(&self, cmd: Command) {
        if let Some(tx) = self.inner.input.lock().as_ref() {
            let _ = tx.send(Input::Cmd(cmd));
        }
    }

    /// Start an outgoing session to `to` through `routes` (outbound proxy
    /// first; empty: the account's `sip.outbound_proxy` when it has one,
    /// else straight to the target) with `streams`.
    pub fn connect(&self, to: &str, routes: &[String], streams: Vec<StreamHandle>) -> Result<()> {
        self.transition("connect", &[State::Null], None)?;
        let target = Uri::parse(to.trim())
            .map_err(|e| Error::InvalidArgument(format!("target {to:?}: {e}")))?;
        if target.as_sip().is_none() {
            return Err(Error::InvalidArgument(format!(
                "target {to:?} must be a sip: or sips: URI"
            )));
        }
        let routes = routes
            .iter()
            .map(|r| {
                Uri::parse(r.trim().trim_start_matches('<').trim_end_matches('>'))
                    .map_err(|e| Error::InvalidArgument(format!("route {r:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let routes = match self.inner.account.outbound_proxy()? {
            Some(proxy) if routes.is_empty() => vec![proxy],
            _ => routes,
        };
        check_streams(&streams)?;
        self.transition("connect", &[State::Null], Some(State::Connecting))?;
        {
            let mut i = self.inner.info.lock();
            i.direction = Some("outgoing");
            i.proposed_streams = streams.clone();
            i.route = Some(routes.first().unwrap_or(&target).to_string());
        }
        post(
            &self.inner.sender,
            NEW_OUTGOING,
            NotificationData::new().with("streams", streams_json(&streams)),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.input.lock() = Some(tx.clone());
        self.inner.env.table.sessions.lock().push(self.clone());
        let _ = tx.send(Input::Cmd(Command::Connect { target, routes }));
        let task = Task::new(self.clone(), tx, None);
        self.inner.env.runtime.spawn(task.run(rx, streams));
        Ok(())
    }

    /// Send 180 Ringing on an incoming session.
    pub fn send_ring_indication(&self) -> Result<()> {
        self.transition("send_ring_indication", &[State::Incoming], None)?;
        self.send(Command::Ring);
        Ok(())
    }

    /// Accept an incoming session with some of the proposed streams.
    pub fn accept(&self, streams: Vec<StreamHandle>) -> Result<()> {
        self.transition("accept", &[State::Incoming], None)?;
        let proposed = self.proposed_streams();
        if streams.is_empty() {
            return Err(Error::InvalidArgument(
                "accept needs at least one stream".into(),
            ));
        }
        if let Some(s) = streams.iter().find(|s| !contains(&proposed, s)) {
            return Err(Error::InvalidArgument(format!(
                "stream {} ({}) was not proposed",
                s.id().0,
                s.stream_type()
            )));
        }
        self.transition("accept", &[State::Incoming], Some(State::Accepting))?;
        self.send(Command::Accept(streams));
        Ok(())
    }

    /// Refuse an incoming session with a 3xx-6xx status (486 busy, 603
    /// decline, 488 not acceptable...).
    pub fn reject(&self, code: u16, reason: Option<&str>) -> Result<()> {
        crate::proto::ua::session::check_refusal(code)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.transition("reject", &[State::Incoming], Some(State::Terminating))?;
        self.send(Command::Reject(
            code,
            reason
                .map(str::to_string)
                .unwrap_or_else(|| default_reason(code).into()),
        ));
        Ok(())
    }

    /// End the session in any active state.
    pub fn end(&self) -> Result<()> {
        let started = matches!(
            self.state(),
            State::Accepting | State::Established | State::Proposing | State::ReceivedProposal
        );
        self.transition(
            "end",
            &[
                State::Connecting,
                State::Incoming,
                State::Accepting,
                State::Established,
                State::Proposing,
                State::ReceivedProposal,
            ],
            Some(State::Terminating),
        )?;
        if started && !self.inner.will_end_posted.swap(true, Ordering::SeqCst) {
            post(
                &self.inner.sender,
                WILL_END,
                NotificationData::new().with("originator", "local"),
            );
        }
        self.send(Command::End);
        Ok(())
    }

    /// Put the session on hold (re-INVITE with sendonly media).
    pub fn hold(&self) -> Result<()> {
        self.hold_change(true)
    }

    pub fn unhold(&self) -> Result<()> {
        self.hold_change(false)
    }

    fn hold_change(&self, on: bool) -> Result<()> {
        let what = if on { "hold" } else { "unhold" };
        {
            let i = self.inner.info.lock();
            if i.state == Some(State::Established) && !i.streams.iter().any(|s| s.hold_supported())
            {
                return Err(Error::InvalidState(format!(
                    "{what}: no stream of this session supports hold"
                )));
            }
        }
        self.transition(what, &[State::Established], Some(State::Proposing))?;
        self.send(Command::Hold(on));
        Ok(())
    }

    /// Propose new streams to the peer (re-INVITE).
    pub fn add_streams(&self, streams: Vec<StreamHandle>) -> Result<()> {
        self.transition("add_stream", &[State::Established], None)?;
        check_streams(&streams)?;
        let current = self.streams();
        if let Some(s) = streams.iter().find(|s| contains(&current, s)) {
            return Err(Error::InvalidArgument(format!(
                "stream {} is already in the session",
                s.id().0
            )));
        }
        self.transition("add_stream", &[State::Established], Some(State::Proposing))?;
        self.inner.info.lock().proposed_streams = streams.clone();
        self.send(Command::Add(streams));
        Ok(())
    }

    pub fn add_stream(&self, stream: StreamHandle) -> Result<()> {
        self.add_streams(vec![stream])
    }

    /// Remove streams (re-INVITE with their port set to 0).
    pub fn remove_streams(&self, streams: Vec<StreamHandle>) -> Result<()> {
        self.transition("remove_stream", &[State::Established], None)?;
        let current = self.streams();
        if streams.is_empty() {
            return Err(Error::InvalidArgument("no stream to remove".into()));
        }
        if let Some(s) = streams.iter().find(|s| !contains(&current, s)) {
            return Err(Error::InvalidArgument(format!(
                "stream {} is not in the session",
                s.id().0
            )));
        }
        if streams.len() == current.len() {
            return Err(Error::InvalidArgument(
                "removing every stream would leave an empty session; use end()".into(),
            ));
        }
        self.transition(
            "remove_stream",
            &[State::Established],
            Some(State::Proposing),
        )?;
        self.send(Command::Remove(streams));
        Ok(())
    }

    pub fn remove_stream(&self, stream: StreamHandle) -> Result<()> {
        self.remove_streams(vec![stream])
    }

    /// Accept some of the streams the peer proposed.
    pub fn accept_proposal(&self, streams: Vec<StreamHandle>) -> Result<()> {
        self.transition("accept_proposal", &[State::ReceivedProposal], None)?;
        let proposed = self.proposed_streams();
        if streams.is_empty() {
            return Err(Error::InvalidArgument(
                "accept_proposal needs at least one stream (or use reject_proposal)".into(),
            ));
        }
        if let Some(s) = streams.iter().find(|s| !contains(&proposed, s)) {
            return Err(Error::InvalidArgument(format!(
                "stream {} was not proposed",
                s.id().0
            )));
        }
        self.transition("accept_proposal", &[State::ReceivedProposal], None)?;
        self.send(Command::AcceptProposal(streams));
        Ok(())
    }

    pub fn reject_proposal(&self, code: u16, reason: Option<&str>) -> Result<()> {
        crate::proto::ua::session::check_refusal(code)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.transition("reject_proposal", &[State::ReceivedProposal], None)?;
        self.send(Command::RejectProposal(
            code,
            reason
                .map(str::to_string)
                .unwrap_or_else(|| default_reason(code).into()),
        ));
        Ok(())
    }
}

fn check_streams(streams: &[StreamHandle]) -> Result<()> {
    if streams.is_empty() {
        return Err(Error::InvalidArgument(
            "a session needs at least one stream".into(),
        ));
    }
    for (i, s) in streams.iter().enumerate() {
        if streams[..i].iter().any(|x| x.id() == s.id()) {
            return Err(Error::InvalidArgument(format!(
                "stream {} is listed twice",
                s.id().0
            )));
        }
    }
    Ok(())
}

fn default_reason(code: u16) -> &'static str {
    match code {
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Rejected",
    }
}

fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

/// Our `host:port` as a peer at `peer_ip` sees it on `transport` (the UDP
/// port when that transport does not listen): Via sent-by and Contact.
pub(crate) fn local_host_port(
    engine: &Engine,
    peer_ip: IpAddr,
    transport: TransportKind,
) -> String {
    let port = engine
        .local_addr(transport)
        .or_else(|| engine.local_addr(TransportKind::Udp))
        .map(|a| a.port())
        .unwrap_or(5060);
    host_port(local_ip_towards(peer_ip), port)
}

/// A Route header value for a next hop, loose-routing (`;lr`) added.
pub(crate) fn route_value(hop: &Uri) -> String {
    let mut s = hop.to_string();
    if hop.as_sip().is_some_and(|sip| sip.param("lr").is_none()) {
        s.push_str(";lr");
    }
    format!("<{s}>")
}

/// What our pending re-INVITE is for.
enum LocalProposal {
    Add(Vec<StreamHandle>),
    /// The streams and the media sections they had.
    Remove(Vec<(usize, StreamHandle)>),
    Hold(bool),
}

/// The session task: the core, the streams, and the I/O for them.
struct Task {
    session: Session,
    tx: mpsc::UnboundedSender<Input>,
    core: Option<InviteSession>,
    /// Streams by media section index (None: refused or removed).
    slots: Vec<Option<StreamHandle>>,
    local_ip: IpAddr,
    transport: TransportKind,
    peers: HashMap<ReqId, Peer>,
    local_proposal: Option<LocalProposal>,
    /// Streams the peer proposed, by media index.
    remote_proposal: Vec<(usize, StreamHandle)>,
    remote_offer: Option<SessionDescription>,
    failed: bool,
    ctx: Option<StreamContext>,
    /// Streams accepted from the peer's proposal, started when the core
    /// confirms the answer.
    pending_added: Vec<StreamHandle>,
    pending_removed: Vec<(usize, StreamHandle)>,
    /// Whether the pending remote proposal had new streams for the
    /// application to decide on.
    explicit_proposal: bool,
    keys: Vec<TxKey>,
}

impl Task {
    fn new(
        session: Session,
        tx: mpsc::UnboundedSender<Input>,
        core: Option<InviteSession>,
    ) -> Task {
        Task {
            session,
            tx,
            core,
            slots: Vec::new(),
            local_ip: IpAddr::from([127, 0, 0, 1]),
            transport: TransportKind::Udp,
            peers: HashMap::new(),
            local_proposal: None,
            remote_proposal: Vec::new(),
            remote_offer: None,
            failed: false,
            ctx: None,
            pending_added: Vec::new(),
            pending_removed: Vec::new(),
            explicit_proposal: false,
            keys: Vec::new(),
        }
    }

    fn sender(&self) -> &Sender {
        &self.session.inner.sender
    }

    fn env(&self) -> &SessionEnv {
        &self.session.inner.env
    }

    fn set_info(&self, f: impl FnOnce(&mut Info)) {
        f(&mut self.session.inner.info.lock());
    }

    fn config(&self, transport: TransportKind) -> SessionConfig {
        let env = self.env();
        let port = env
            .engine
            .local_addr(transport)
            .map(|a| a.port())
            .unwrap_or(5060);
        let hp = host_port(self.local_ip, port);
        let account = &self.session.inner.account;
        let tparam = match transport {
            TransportKind::Udp => String::new(),
            t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        SessionConfig {
            local_identity: account.identity(&hp),
            contact: format!("<sip:{}@{hp}{tparam}>", account.contact_user()),
            via: format!("SIP/2.0/{} {hp}", transport.as_str()),
            user_agent: env.user_agent.clone(),
            timers: env.timers,
            rel100: env.rel100,
            t1: env.t1,
            seed: crate::driver::ids::random_u64(),
            credentials: account.credentials(),
        }
    }

    fn stream_ctx(&mut self, direction: &'static str) -> StreamContext {
        let (local_identity, remote_identity) = {
            let i = self.session.inner.info.lock();
            (i.local_identity.clone(), i.remote_identity.clone())
        };
        let c = StreamContext {
            session: self.session.id(),
            direction,
            local_ip: self.local_ip,
            runtime: self.env().runtime.clone(),
            settings: self.env().settings.snapshot(),
            account: Some(self.session.inner.account.clone()),
            local_identity,
            remote_identity,
            msrp_tls: self.env().msrp_tls.clone(),
        };
        self.ctx = Some(c.clone());
        c
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>, initial: Vec<StreamHandle>) {
        let mut initial = Some(initial);
        loop {
            let deadline = self.core.as_ref().and_then(|c| c.poll_timeout());
            let input = match deadline {
                Some(d) => {
                    let d = tokio::time::Instant::from_std(d);
                    tokio::select! {
                        i = rx.recv() => i,
                        _ = tokio::time::sleep_until(d) => {
                            if let Some(c) = self.core.as_mut() {
                                c.handle_timeout(Instant::now());
                            }
                            self.drain().await;
                            if self.finished() { break; }
                            continue;
                        }
                    }
                }
                None => rx.recv().await,
            };
            let Some(input) = input else { break };
            let now = Instant::now();
            match input {
                Input::Cmd(Command::Connect { target, routes }) => {
                    let streams = initial.take().unwrap_or_default();
                    self.connect(target, routes, streams).await;
                }
                Input::Cmd(cmd) => self.command(now, cmd).await,
                Input::Request { key, request } => {
                    if let Some(k) = key.filter(|_| request.method() == Some("INVITE")) {
                        self.keys.push(k);
                    }
                    if let Some(c) = self.core.as_mut() {
                        c.handle_request(now, key, request);
                    }
                }
                Input::Cancel(key) => {
                    if let Some(c) = self.core.as_mut() {
                        c.handle_cancel(now, key);
                    }
                }
                Input::AckTimeout => {
                    if let Some(c) = self.core.as_mut() {
                        c.handle_ack_timeout(now);
                    }
                }
                Input::Response { id, outcome } => {
                    if let Some(c) = self.core.as_mut() {
                        c.handle_response(now, id, outcome);
                    }
                }
                Input::Stray(r) => {
                    if let Some(c) = self.core.as_mut() {
                        c.handle_response(now, ReqId(0), Outcome::Response(r));
                    }
                }
            }
            self.drain().await;
            if self.finished() {
                break;
            }
        }
        // Whatever ended the task, nothing stays registered.
        self.unregister();
    }

    fn finished(&self) -> bool {
        self.session.state() == State::Terminated
    }

    fn unregister(&self) {
        let dialog = self
            .core
            .as_ref()
            .map(|c| (c.call_id().to_string(), c.local_tag().to_string()));
        let mut keys = self
            .core
            .as_ref()
            .map(|c| c.server_keys())
            .unwrap_or_default();
        keys.extend(self.keys.iter().copied());
        self.env().table.remove(&self.session, dialog, &keys);
        *self.session.inner.input.lock() = None;
    }

    /// Fail a session that never got to the network.
    fn fail_early(&mut self, code: u16, reason: &str) {
        self.failed = true;
        post(
            self.sender(),
            DID_FAIL,
            NotificationData::new()
                .with("originator", "local")
                .with("code", code)
                .with("reason", reason)
                .with("failure_reason", reason),
        );
        self.end_streams();
        self.finish_state(Originator::Local, code, reason);
    }

    fn finish_state(&mut self, originator: Originator, code: u16, reason: &str) {
        let prev = self.session.state();
        self.set_info(|i| {
            i.state = Some(State::Terminated);
            i.stop_time = Some(SystemTime::now());
        });
        if prev != State::Terminated {
            post(
                self.sender(),
                DID_CHANGE_STATE,
                NotificationData::new()
                    .with("prev_state", prev.as_str())
                    .with("state", State::Terminated.as_str()),
            );
        }
        post(
            self.sender(),
            DID_END,
            NotificationData::new()
                .with("originator", originator.as_str())
                .with("end_reason", reason)
                .with("code", code),
        );
    }

    async fn initialize(
        &mut self,
        streams: &[StreamHandle],
        direction: &'static str,
    ) -> Result<()> {
        let ctx = self.stream_ctx(direction);
        for s in streams {
            match s.imp.initialize(&ctx).await {
                Ok(()) => post(
                    &s.sender,
                    stream::DID_INITIALIZE,
                    NotificationData::new().with("type", s.stream_type()),
                ),
                Err(e) => {
                    post(
                        &s.sender,
                        stream::DID_FAIL,
                        NotificationData::new()
                            .with("type", s.stream_type())
                            .with("reason", e.to_string()),
                    );
                    return Err(Error::Internal(format!(
                        "the {} stream failed to initialize: {e}",
                        s.stream_type()
                    )));
                }
            }
        }
        Ok(())
    }

    fn end_stream(s: &StreamHandle) {
        post(
            &s.sender,
            stream::WILL_END,
            NotificationData::new().with("type", s.stream_type()),
        );
        s.imp.end();
        post(
            &s.sender,
            stream::DID_END,
            NotificationData::new().with("type", s.stream_type()),
        );
    }

    fn end_streams(&mut self) {
        let mut all: Vec<StreamHandle> = self.slots.iter().flatten().cloned().collect();
        for (_, s) in self.remote_proposal.drain(..) {
            all.push(s);
        }
        if let Some(LocalProposal::Add(v)) = self.local_proposal.take() {
            all.extend(v);
        }
        let proposed = std::mem::take(&mut self.session.inner.info.lock().proposed_streams);
        for s in proposed {
            if !contains(&all, &s) {
                all.push(s);
            }
        }
        self.slots.clear();
        for s in &all {
            Self::end_stream(s);
        }
        self.set_info(|i| i.streams.clear());
    }

    fn publish_streams(&self) {
        let streams: Vec<StreamHandle> = self.slots.iter().flatten().cloned().collect();
        self.set_info(|i| i.streams = streams);
    }

    fn base_sdp(&self) -> SessionDescription {
        SessionDescription::new("-", 0, self.local_ip, "sipsimple")
    }

    /// Our description for the current slots; `offer` is the peer's offer
    /// when we answer.
    fn local_sdp(&self, offer: Option<&SessionDescription>) -> Result<SessionDescription> {
        let (local_hold, remote_hold) = {
            let i = self.session.inner.info.lock();
            (i.on_hold_by_local, i.on_hold_by_remote)
        };
        let previous = self.core.as_ref().and_then(|c| c.local_sdp().cloned());
        let mut sd = self.base_sdp();
        for (i, slot) in self.slots.iter().enumerate() {
            let remote_m = offer.and_then(|o| o.media.get(i));
            let m = match slot {
                Some(s) => {
                    let mut m = s.imp.get_local_media(remote_m)?;
                    if s.hold_supported() {
                        let d = match offer {
                            Some(o) => answer_direction(
                                o.media_direction(i),
                                hold_direction(local_hold, false),
                            ),
                            None => hold_direction(local_hold, remote_hold),
                        };
                        m.set_direction(d);
                    }
                    m
                }
                None => match (remote_m, previous.as_ref().and_then(|p| p.media.get(i))) {
                    (Some(r), _) => refuse(r),
                    (None, Some(p)) => refuse(p),
                    (None, None) => MediaDescription::new("application", 0, "RTP/AVP", &["0"]),
                },
            };
            sd.media.push(m);
        }
        Ok(sd)
    }

    async fn connect(&mut self, target: Uri, routes: Vec<Uri>, streams: Vec<StreamHandle>) {
        let hop = routes.first().cloned().unwrap_or_else(|| target.clone());
        let peer = match resolve(self.env(), &hop).await {
            Ok(p) => p,
            Err(e) => return self.fail_early(503, &e),
        };
        self.transport = peer.transport;
        self.local_ip = local_ip_towards(peer.addr.ip());
        let cfg = self.config(peer.transport);
        let to = format!("<{target}>");
        // Streams learn who talks to whom (chat's CPIM From and To).
        self.set_info(|i| {
            i.local_identity = Some(cfg.local_identity.clone());
            i.remote_identity = Some(to.clone());
        });
        if let Err(e) = self.initialize(&streams, "outgoing").await {
            return self.fail_early(500, &e.to_string());
        }
        self.slots = streams.iter().cloned().map(Some).collect();
        let offer = match self.local_sdp(None) {
            Ok(o) => o,
            Err(e) => return self.fail_early(500, &e.to_string()),
        };
        let mut core = InviteSession::outgoing(cfg);
        let route_values: Vec<String> = routes.iter().map(route_value).collect();
        if let Err(e) = core.connect(Instant::now(), target.clone(), &to, route_values, offer) {
            return self.fail_early(500, &e.to_string());
        }
        self.env().table.routes.lock().insert(
            (core.call_id().to_string(), core.local_tag().to_string()),
            self.tx.clone(),
        );
        self.core = Some(core);
    }

    async fn command(&mut self, now: Instant, cmd: Command) {
        let Some(core) = self.core.as_mut() else {
            if matches!(cmd, Command::End) {
                // Ended before the INVITE went out (still resolving or
                // initializing): nothing on the wire to undo.
                self.fail_early(487, "Cancelled by the user");
            }
            return;
        };
        let result = match cmd {
            Command::Connect { .. } => Ok(()),
            Command::Ring => core.ring(now),
            Command::Reject(code, reason) => core.reject(now, code, &reason),
            Command::End => core.end(now),
            Command::RejectProposal(code, reason) => core.reject_proposal(now, code, &reason),
            Command::Accept(streams) => return self.accept(now, streams).await,
            Command::AcceptProposal(streams) => return self.accept_proposal(now, streams).await,
            Command::Hold(on) => {
                self.set_info(|i| i.on_hold_by_local = on);
                self.local_proposal = Some(LocalProposal::Hold(on));
                return self.propose(now).await;
            }
            Command::Add(streams) => {
                if let Err(e) = self.initialize(&streams, "outgoing").await {
                    for s in &streams {
                        Self::end_stream(s);
                    }
                    self.proposal_rejected(Originator::Local, 500, &e.to_string(), streams);
                    return;
                }
                // Reuse a refused slot or append (RFC 3264 8.1).
                for s in &streams {
                    match self.slots.iter().position(Option::is_none) {
                        Some(i) => self.slots[i] = Some(s.clone()),
                        None => self.slots.push(Some(s.clone())),
                    }
                }
                self.local_proposal = Some(LocalProposal::Add(streams));
                return self.propose(now).await;
            }
            Command::Remove(streams) => {
                let mut taken = Vec::new();
                for (i, slot) in self.slots.iter_mut().enumerate() {
                    if slot.as_ref().is_some_and(|s| contains(&streams, s)) {
                        if let Some(s) = slot.take() {
                            taken.push((i, s));
                        }
                    }
                }
                self.local_proposal = Some(LocalProposal::Remove(taken));
                return self.propose(now).await;
            }
        };
        if let Err(e) = result {
            tracing::debug!(target: "sipsimple::session", "command refused by the session core: {e}");
        }
    }

    async fn propose(&mut self, now: Instant) {
        let offer = match self.local_sdp(None) {
            Ok(o) => o,
            Err(e) => {
                self.undo_local_proposal();
                self.proposal_rejected(Originator::Local, 500, &e.to_string(), Vec::new());
                return;
            }
        };
        let Some(core) = self.core.as_mut() else {
            return;
        };
        if let Err(e) = core.propose(now, offer) {
            self.undo_local_proposal();
            self.proposal_rejected(Originator::Local, 500, &e.to_string(), Vec::new());
        }
    }

    /// Put the slots back as they were before our proposal.
    fn undo_local_proposal(&mut self) -> Vec<StreamHandle> {
        match self.local_proposal.take() {
            Some(LocalProposal::Add(streams)) => {
                for slot in self.slots.iter_mut() {
                    if slot.as_ref().is_some_and(|s| contains(&streams, s)) {
                        *slot = None;
                    }
                }
                for s in &streams {
                    Self::end_stream(s);
                }
                streams
            }
            Some(LocalProposal::Remove(taken)) => {
                // The streams stay, in the sections they had.
                let mut streams = Vec::new();
                for (i, s) in taken {
                    if let Some(slot) = self.slots.get_mut(i) {
                        *slot = Some(s.clone());
                    }
                    streams.push(s);
                }
                streams
            }
            Some(LocalProposal::Hold(on)) => {
                self.set_info(|i| i.on_hold_by_local = !on);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn proposal_rejected(
        &mut self,
        originator: Originator,
        code: u16,
        reason: &str,
        streams: Vec<StreamHandle>,
    ) {
        self.set_info(|i| i.proposed_streams.clear());
        self.settle_state();
        post(
            self.sender(),
            PROPOSAL_REJECTED,
            NotificationData::new()
                .with("originator", originator.as_str())
                .with("code", code)
                .with("reason", reason)
                .with("streams", streams_json(&streams)),
        );
    }

    async fn accept(&mut self, now: Instant, streams: Vec<StreamHandle>) {
        let Some(offer) = self.core.as_ref().and_then(|c| c.remote_sdp().cloned()) else {
            return;
        };
        let proposed: Vec<(usize, StreamHandle)> = std::mem::take(&mut self.remote_proposal);
        for (_, s) in &proposed {
            if !contains(&streams, s) {
                Self::end_stream(s);
            }
        }
        if let Err(e) = self.initialize(&streams, "incoming").await {
            if let Some(c) = self.core.as_mut() {
                let _ = c.reject(now, 500, "Stream Initialization Failed");
            }
            tracing::debug!(target: "sipsimple::session", "{e}");
            return;
        }
        self.slots = (0..offer.media.len()).map(|_| None).collect();
        for (i, s) in proposed {
            if contains(&streams, &s) {
                self.slots[i] = Some(s);
            }
        }
        self.set_info(|i| i.proposed_streams.clear());
        let answer = match self.local_sdp(Some(&offer)) {
            Ok(a) => a,
            Err(e) => {
                if let Some(c) = self.core.as_mut() {
                    let _ = c.reject(now, 500, "Cannot Build the Answer");
                }
                tracing::debug!(target: "sipsimple::session", "{e}");
                return;
            }
        };
        if let Some(c) = self.core.as_mut() {
            if let Err(e) = c.accept(now, answer) {
                tracing::debug!(target: "sipsimple::session", "accept refused: {e}");
            }
        }
    }

    async fn accept_proposal(&mut self, now: Instant, streams: Vec<StreamHandle>) {
        let Some(offer) = self.remote_offer.clone() else {
            return;
        };
        let proposed = std::mem::take(&mut self.remote_proposal);
        let (take, drop): (Vec<_>, Vec<_>) = proposed
            .into_iter()
            .partition(|(_, s)| contains(&streams, s));
        for (_, s) in &drop {
            Self::end_stream(s);
        }
        let new: Vec<StreamHandle> = take.iter().map(|(_, s)| s.clone()).collect();
        if let Err(e) = self.initialize(&new, "incoming").await {
            for s in &new {
                Self::end_stream(s);
            }
            if let Some(c) = self.core.as_mut() {
                let _ = c.reject_proposal(now, 500, "Stream Initialization Failed");
            }
            tracing::debug!(target: "sipsimple::session", "{e}");
            return;
        }
        while self.slots.len() < offer.media.len() {
            self.slots.push(None);
        }
        for (i, s) in take {
            self.slots[i] = Some(s);
        }
        match self.local_sdp(Some(&offer)) {
            Ok(answer) => {
                if let Some(c) = self.core.as_mut() {
                    let _ = c.accept_proposal(now, answer);
                }
                self.pending_added = new;
            }
            Err(e) => {
                if let Some(c) = self.core.as_mut() {
                    let _ = c.reject_proposal(now, 500, "Cannot Build the Answer");
                }
                tracing::debug!(target: "sipsimple::session", "{e}");
            }
        }
    }
}

impl Task {
    /// Carry out what the core asked for and report what it said, until it
    /// is quiet.
    async fn drain(&mut self) {
        loop {
            let Some(core) = self.core.as_mut() else {
                return;
            };
            let mut actions = Vec::new();
            while let Some(a) = core.poll_action() {
                actions.push(a);
            }
            let mut events = Vec::new();
            while let Some(e) = core.poll_event() {
                events.push(e);
            }
            if actions.is_empty() && events.is_empty() {
                return;
            }
            let (ua, local, remote) = (
                core.remote_user_agent().map(str::to_string),
                core.local_identity().map(str::to_string),
                core.remote_identity().map(str::to_string),
            );
            self.set_info(|i| {
                if ua.is_some() {
                    i.remote_user_agent = ua;
                }
                if local.is_some() {
                    i.local_identity = local;
                }
                if remote.is_some() {
                    i.remote_identity = remote;
                }
            });
            for a in actions {
                self.execute(a).await;
            }
            for e in events {
                self.on_event(e).await;
            }
        }
    }

    async fn peer_for(&mut self, hop: &Hop) -> std::result::Result<Peer, String> {
        match hop {
            Hop::SameAs(id) => self
                .peers
                .get(id)
                .copied()
                .ok_or_else(|| "no route of the original request".to_string()),
            Hop::Uri(u) => resolve(self.env(), u).await,
        }
    }

    async fn execute(&mut self, a: Action) {
        let engine = self.env().engine.clone();
        match a {
            Action::Send {
                id,
                request,
                next_hop,
            } => {
                let peer = match self.peer_for(&next_hop).await {
                    Ok(p) => p,
                    Err(e) => {
                        if let Some(c) = self.core.as_mut() {
                            c.handle_response(
                                Instant::now(),
                                id,
                                Outcome::Failed {
                                    code: 503,
                                    reason: e,
                                },
                            );
                        }
                        return;
                    }
                };
                self.peers.insert(id, peer);
                let rx = engine.send_request_with(request, peer, SendOptions::default());
                forward_outcomes(&self.env().runtime, rx, self.tx.clone(), move |outcome| {
                    Input::Response { id, outcome }
                });
            }
            Action::SendAck { ack, next_hop } => {
                if let Ok(peer) = resolve(self.env(), &next_hop).await {
                    engine.send_stateless(ack, peer);
                }
            }
            Action::Respond { key, response } => engine.respond(key, response),
        }
    }

    /// Follow the core's state, except Terminated, which SIPSessionDidEnd
    /// reports together with the end reason.
    /// After a proposal's outcome: the streams are in place, so the state
    /// may now say what the core says, before the outcome is announced (a
    /// callback may propose again at once and sees the new streams).
    fn settle_state(&self) {
        if let Some(state) = self.core.as_ref().map(|c| c.state()) {
            self.sync_state(state);
        }
    }

    fn sync_state(&self, new: State) {
        if new == State::Terminated {
            return;
        }
        let prev = {
            let mut i = self.session.inner.info.lock();
            let p = i.state.unwrap_or(State::Null);
            if p == new || p == State::Terminated {
                return;
            }
            i.state = Some(new);
            p
        };
        post(
            self.sender(),
            DID_CHANGE_STATE,
            NotificationData::new()
                .with("prev_state", prev.as_str())
                .with("state", new.as_str()),
        );
    }

    async fn start_streams(
        &mut self,
        local: &SessionDescription,
        remote: &SessionDescription,
        only: Option<&[StreamHandle]>,
    ) -> usize {
        let mut started = 0;
        for i in 0..self.slots.len() {
            let Some(s) = self.slots[i].clone() else {
                continue;
            };
            if only.is_some_and(|o| !contains(o, &s)) {
                continue;
            }
            if remote.media.get(i).is_none_or(|m| m.is_rejected()) {
                Self::end_stream(&s);
                self.slots[i] = None;
                continue;
            }
            match s.imp.start(local, remote, i).await {
                Ok(()) => {
                    started += 1;
                    post(
                        &s.sender,
                        stream::DID_START,
                        NotificationData::new().with("type", s.stream_type()),
                    );
                }
                Err(e) => {
                    post(
                        &s.sender,
                        stream::DID_FAIL,
                        NotificationData::new()
                            .with("type", s.stream_type())
                            .with("reason", e.to_string()),
                    );
                    Self::end_stream(&s);
                    self.slots[i] = None;
                }
            }
        }
        self.publish_streams();
        started
    }

    async fn on_event(&mut self, e: Event) {
        let now = Instant::now();
        match e {
            Event::StateChanged { new, .. } => self.sync_state(new),
            Event::Provisional { code, reason } => {
                post(
                    self.sender(),
                    GOT_PROVISIONAL,
                    NotificationData::new()
                        .with("code", code)
                        .with("reason", reason),
                );
                if code == 180 {
                    post(self.sender(), GOT_RING, NotificationData::new());
                }
            }
            Event::Answered { remote, .. } => {
                post(self.sender(), WILL_START, NotificationData::new());
                if let Some(r) = remote {
                    // Streams the answer refused end now.
                    for i in 0..self.slots.len() {
                        if r.media.get(i).is_none_or(|m| m.is_rejected()) {
                            if let Some(s) = self.slots[i].take() {
                                Self::end_stream(&s);
                            }
                        }
                    }
                }
                self.set_info(|i| i.proposed_streams.clear());
                self.publish_streams();
            }
            Event::Confirmed { remote } => {
                let local = self.core.as_ref().and_then(|c| c.local_sdp().cloned());
                let (Some(local), Some(remote)) = (local, remote) else {
                    return;
                };
                let started = self.start_streams(&local, &remote, None).await;
                if started == 0 {
                    self.failed = true;
                    post(
                        self.sender(),
                        DID_FAIL,
                        NotificationData::new()
                            .with("originator", "local")
                            .with("code", 0)
                            .with("reason", "no media stream could start")
                            .with("failure_reason", "no media stream could start"),
                    );
                    if let Some(c) = self.core.as_mut() {
                        let _ = c.end(now);
                    }
                    return;
                }
                self.set_info(|i| i.start_time = Some(SystemTime::now()));
                let streams = self.session.streams();
                post(
                    self.sender(),
                    DID_START,
                    NotificationData::new().with("streams", streams_json(&streams)),
                );
            }
            Event::GotProposal { offer } => self.remote_proposal_arrived(now, offer).await,
            Event::ProposalAccepted {
                proposer: Originator::Local,
                local,
                remote,
            } => {
                let mut added = Vec::new();
                let mut removed = Vec::new();
                let mut proposed = None;
                let mut hold = None;
                match self.local_proposal.take() {
                    Some(LocalProposal::Add(streams)) => {
                        self.start_streams(&local, &remote, Some(&streams)).await;
                        let now_in: Vec<StreamHandle> =
                            self.slots.iter().flatten().cloned().collect();
                        added = streams
                            .iter()
                            .filter(|s| contains(&now_in, s))
                            .cloned()
                            .collect();
                        proposed = Some(streams);
                    }
                    Some(LocalProposal::Remove(taken)) => {
                        for (_, s) in &taken {
                            Self::end_stream(s);
                        }
                        removed = taken.into_iter().map(|(_, s)| s).collect();
                    }
                    Some(LocalProposal::Hold(on)) => hold = Some(on),
                    None => {}
                }
                self.update_streams(&local, &remote, &added);
                self.set_info(|i| i.proposed_streams.clear());
                self.publish_streams();
                self.settle_state();
                if let Some(on) = hold {
                    self.hold_streams(on, Originator::Local);
                }
                if let Some(streams) = proposed {
                    post(
                        self.sender(),
                        PROPOSAL_ACCEPTED,
                        NotificationData::new()
                            .with("originator", "local")
                            .with("accepted_streams", streams_json(&added))
                            .with("proposed_streams", streams_json(&streams)),
                    );
                }
                self.renegotiated(Originator::Local, &added, &removed);
            }
            Event::ProposalAccepted {
                proposer: Originator::Remote,
                local,
                remote,
            } => {
                let added = std::mem::take(&mut self.pending_added);
                let removed: Vec<StreamHandle> = std::mem::take(&mut self.pending_removed)
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect();
                for s in &removed {
                    Self::end_stream(s);
                }
                if !added.is_empty() {
                    self.start_streams(&local, &remote, Some(&added)).await;
                }
                self.update_streams(&local, &remote, &added);
                let proposed = self.session.proposed_streams();
                self.set_info(|i| i.proposed_streams.clear());
                self.publish_streams();
                self.settle_state();
                self.remote_hold_from(&remote);
                if self.explicit_proposal {
                    post(
                        self.sender(),
                        PROPOSAL_ACCEPTED,
                        NotificationData::new()
                            .with("originator", "remote")
                            .with("accepted_streams", streams_json(&added))
                            .with("proposed_streams", streams_json(&proposed)),
                    );
                }
                self.explicit_proposal = false;
                self.renegotiated(Originator::Remote, &added, &removed);
            }
            Event::ProposalRejected {
                proposer,
                code,
                reason,
            } => {
                let streams = match proposer {
                    Originator::Local => self.undo_local_proposal(),
                    Originator::Remote => {
                        let v: Vec<StreamHandle> =
                            self.remote_proposal.drain(..).map(|(_, s)| s).collect();
                        for s in &v {
                            Self::end_stream(s);
                        }
                        // Slots cleared for removal go back.
                        for (i, s) in std::mem::take(&mut self.pending_removed) {
                            if let Some(slot) = self.slots.get_mut(i) {
                                *slot = Some(s);
                            }
                        }
                        v
                    }
                };
                self.explicit_proposal = false;
                self.remote_offer = None;
                self.proposal_rejected(proposer, code, &reason, streams);
            }
            Event::Failed {
                originator,
                code,
                reason,
            } => {
                self.failed = true;
                post(
                    self.sender(),
                    DID_FAIL,
                    NotificationData::new()
                        .with("originator", originator.as_str())
                        .with("code", code)
                        .with("reason", reason.clone())
                        .with("failure_reason", reason),
                );
            }
            Event::Ended {
                originator,
                code,
                reason,
            } => {
                if !self.failed
                    && !self
                        .session
                        .inner
                        .will_end_posted
                        .swap(true, Ordering::SeqCst)
                {
                    post(
                        self.sender(),
                        WILL_END,
                        NotificationData::new().with("originator", originator.as_str()),
                    );
                }
                self.end_streams();
                self.finish_state(originator, code, &reason);
            }
        }
    }

    /// Hold or unhold every stream that supports it and say so.
    fn hold_streams(&self, on: bool, originator: Originator) {
        for s in self.slots.iter().flatten() {
            if s.hold_supported() {
                if on {
                    s.imp.hold()
                } else {
                    s.imp.unhold()
                }
            }
        }
        post(
            self.sender(),
            DID_CHANGE_HOLD,
            NotificationData::new()
                .with("originator", originator.as_str())
                .with("on_hold", on)
                .with("partial", false),
        );
    }

    fn update_streams(
        &self,
        local: &SessionDescription,
        remote: &SessionDescription,
        skip: &[StreamHandle],
    ) {
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                if !contains(skip, s) {
                    s.imp.update(local, remote, i);
                }
            }
        }
    }

    fn renegotiated(
        &self,
        originator: Originator,
        added: &[StreamHandle],
        removed: &[StreamHandle],
    ) {
        if added.is_empty() && removed.is_empty() {
            return;
        }
        post(
            self.sender(),
            DID_RENEGOTIATE,
            NotificationData::new()
                .with("originator", originator.as_str())
                .with("added_streams", streams_json(added))
                .with("removed_streams", streams_json(removed)),
        );
    }

    /// Whether the peer's latest offer puts us on hold, and tell if that
    /// changed.
    fn remote_hold_from(&self, remote: &SessionDescription) {
        let mut any = false;
        let mut held = true;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                if s.hold_supported() {
                    any = true;
                    let d = remote.media_direction(i);
                    held &= matches!(d, Direction::SendOnly | Direction::Inactive);
                }
            }
        }
        let held = any && held;
        let changed = {
            let mut i = self.session.inner.info.lock();
            let c = i.on_hold_by_remote != held;
            i.on_hold_by_remote = held;
            c
        };
        if changed {
            self.hold_streams(held, Originator::Remote);
        }
    }

    async fn remote_proposal_arrived(&mut self, now: Instant, offer: Option<SessionDescription>) {
        let Some(offer) = offer else {
            // A re-INVITE without an offer: offer what we have.
            match self.local_sdp(None) {
                Ok(sdp) => {
                    if let Some(c) = self.core.as_mut() {
                        let _ = c.accept_proposal(now, sdp);
                    }
                }
                Err(_) => {
                    if let Some(c) = self.core.as_mut() {
                        let _ = c.reject_proposal(now, 500, "Cannot Build an Offer");
                    }
                }
            }
            return;
        };
        self.remote_offer = Some(offer.clone());
        let mut new = Vec::new();
        let mut removed = Vec::new();
        for i in 0..offer.media.len() {
            let m = &offer.media[i];
            match self.slots.get(i).cloned().flatten() {
                Some(s) if m.is_rejected() => removed.push((i, s)),
                Some(_) => {}
                None if !m.is_rejected() => {
                    if let Some(s) = MediaStreamRegistry::default().stream_for(&offer, i) {
                        new.push((i, s));
                    }
                }
                None => {}
            }
        }
        for (i, s) in removed {
            self.slots[i] = None;
            self.pending_removed.push((i, s));
        }
        if new.is_empty() {
            // Hold, unhold, removal or a change of existing streams: no
            // question for the application.
            self.explicit_proposal = false;
            match self.local_sdp(Some(&offer)) {
                Ok(answer) => {
                    if let Some(c) = self.core.as_mut() {
                        let _ = c.accept_proposal(now, answer);
                    }
                }
                Err(_) => {
                    if let Some(c) = self.core.as_mut() {
                        let _ = c.reject_proposal(now, 488, "Not Acceptable Here");
                    }
                }
            }
            return;
        }
        self.explicit_proposal = true;
        let streams: Vec<StreamHandle> = new.iter().map(|(_, s)| s.clone()).collect();
        self.remote_proposal = new;
        self.set_info(|i| i.proposed_streams = streams.clone());
        post(
            self.sender(),
            GOT_PROPOSAL,
            NotificationData::new()
                .with("originator", "remote")
                .with("streams", streams_json(&streams)),
        );
    }
}

/// What a client transaction reported, as the session and registration
/// cores take it: a response, or a failure with the status it stands for.
pub(crate) fn outcome_of(ev: ClientEvent) -> Outcome {
    match ev {
        ClientEvent::Response(r) => Outcome::Response(r),
        ClientEvent::Timeout => Outcome::Failed {
            code: 408,
            reason: "Request Timeout".into(),
        },
        ClientEvent::TransportError => Outcome::Failed {
            code: 503,
            reason: "Transport Error".into(),
        },
        ClientEvent::Rejected(e) => Outcome::Failed {
            code: 503,
            reason: e.to_string(),
        },
    }
}

/// Forward a client transaction's events to a task's input channel, each
/// wrapped by `wrap`, until the transaction ends or the task is gone.
pub(crate) fn forward_outcomes<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    mut rx: mpsc::UnboundedReceiver<ClientEvent>,
    tx: mpsc::UnboundedSender<T>,
    wrap: impl Fn(Outcome) -> T + Send + 'static,
) {
    runtime.spawn(async move {
        while let Some(ev) = rx.recv().await {
            if tx.send(wrap(outcome_of(ev))).is_err() {
                break;
            }
        }
    });
}

/// The engine's system resolver, made on first use.
pub(crate) fn system_dns(
    cell: &once_cell::sync::OnceCell<crate::driver::dns::DNSLookup>,
) -> std::result::Result<&crate::driver::dns::DNSLookup, String> {
    cell.get_or_try_init(crate::driver::dns::DNSLookup::system)
        .map_err(|e| e.to_string())
}

/// The peer for a next-hop URI: an IP address directly, else RFC 3263.
pub(crate) async fn resolve(env: &SessionEnv, uri: &Uri) -> std::result::Result<Peer, String> {
    if let Some(p) = numeric_peer(uri) {
        return Ok(p);
    }
    let dns = system_dns(&env.dns)?;
    let all = [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls];
    let routes = dns
        .lookup_sip_proxy(uri, &all)
        .await
        .map_err(|e| e.to_string())?;
    routes
        .first()
        .map(|r| r.peer())
        .ok_or_else(|| format!("no route to {uri}"))
}

/// Start an incoming session for an INVITE outside any dialog. Returns
/// the response to send when no session is made.
pub(crate) fn incoming(env: &SessionEnv, key: TxKey, request: SipMessage, source: Peer) {
    let engine = env.engine.clone();
    if env.table.busy.load(Ordering::Relaxed) {
        if let Ok(r) = crate::proto::sip::screen::build_response(
            &request,
            486,
            "Busy Here",
            Some(&crate::driver::ids::new_tag()),
        ) {
            engine.respond(key, r);
        }
        return;
    }
    let account = match env.table.default_account.lock().clone() {
        Some(a) => a,
        None => match Account::bonjour(None) {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    let session = Session::new(env.clone(), account);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut task = Task::new(session.clone(), tx.clone(), None);
    task.local_ip = local_ip_towards(source.addr.ip());
    task.transport = source.transport;
    let cfg = task.config(source.transport);
    let now = Instant::now();
    let mut core = match InviteSession::incoming(cfg, key, request) {
        Ok(c) => c,
        Err(resp) => {
            engine.respond(key, resp);
            return;
        }
    };
    let mut candidates = Vec::new();
    match core.remote_sdp() {
        Some(offer) => {
            for i in 0..offer.media.len() {
                if !offer.media[i].is_rejected() {
                    if let Some(s) = MediaStreamRegistry::default().stream_for(offer, i) {
                        candidates.push((i, s));
                    }
                }
            }
        }
        None => {
            let _ = core.reject(now, 488, "Not Acceptable Here (an SDP offer is required)");
        }
    }
    if candidates.is_empty() {
        let _ = core.reject(now, 488, "Not Acceptable Here");
        while let Some(a) = core.poll_action() {
            if let Action::Respond { key, response } = a {
                engine.respond(key, response);
            }
        }
        return;
    }
    while core.poll_event().is_some() {}
    let streams: Vec<StreamHandle> = candidates.iter().map(|(_, s)| s.clone()).collect();
    {
        let mut i = session.inner.info.lock();
        i.state = Some(State::Incoming);
        i.direction = Some("incoming");
        i.proposed_streams = streams.clone();
        i.remote_user_agent = core.remote_user_agent().map(str::to_string);
        i.remote_identity = core.remote_identity().map(str::to_string);
        i.local_identity = core.local_identity().map(str::to_string);
    }
    env.table.routes.lock().insert(
        (core.call_id().to_string(), core.local_tag().to_string()),
        tx.clone(),
    );
    env.table.keys.lock().insert(key, tx.clone());
    task.keys.push(key);
    env.table.sessions.lock().push(session.clone());
    *session.inner.input.lock() = Some(tx);
    task.remote_proposal = candidates;
    task.core = Some(core);
    post(
        &session.inner.sender,
        NEW_INCOMING,
        NotificationData::new().with("streams", streams_json(&streams)),
    );
    super::ringer::ring_if_asked(&env.runtime, &env.settings.snapshot(), session.clone());
    env.runtime.spawn(task.run(rx, Vec::new()));
}

/// All sessions of a running application, incoming dispatch settings.
#[derive(Clone)]
pub struct SessionManager {
    env: SessionEnv,
}

impl SessionManager {
    pub(crate) fn new(env: SessionEnv) -> SessionManager {
        SessionManager { env }
    }

    pub(crate) fn env(&self) -> &SessionEnv {
        &self.env
    }

    /// Sessions not yet terminated.
    pub fn sessions(&self) -> Vec<Session> {
        self.env.table.sessions()
    }

    /// The live session with this id (the sender id of its notifications).
    pub fn session(&self, id: ObjectId) -> Option<Session> {
        self.sessions().into_iter().find(|s| s.id() == id)
    }

    /// A new outgoing session (state NULL) for `account`.
    pub fn new_session(&self, account: &Account) -> Session {
        Session::new(self.env.clone(), account.clone())
    }

    /// Answer every new incoming session 486 Busy Here while set.
    pub fn set_busy(&self, busy: bool) {
        self.env.table.busy.store(busy, Ordering::Relaxed);
    }

    pub fn is_busy(&self) -> bool {
        self.env.table.busy.load(Ordering::Relaxed)
    }

    /// The account incoming sessions are given (default: Bonjour).
    pub fn set_default_account(&self, account: Option<Account>) {
        *self.env.table.default_account.lock() = account;
    }

    /// End every session and wait (bounded) until they are gone.
    pub fn end_all(&self, timeout: std::time::Duration) {
        for s in self.sessions() {
            let _ = s.end();
        }
        let deadline = Instant::now() + timeout;
        while self.env.table.len() > 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
