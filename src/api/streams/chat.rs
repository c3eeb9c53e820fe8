//! ChatStream (type `chat`): instant messaging over MSRP (RFC 4975) with
//! CPIM envelopes (RFC 3862), is-composing indications (RFC 3994) and
//! delivery reports.
//!
//! SDP: `m=message <port> TCP/MSRP *` (or `TCP/TLS/MSRP`), `a=path`,
//! `a=accept-types`, `a=accept-wrapped-types`, `a=setup` (RFC 6135; the
//! offerer connects), `a=fingerprint` over TLS, and whatever attributes
//! the host adds (`a=features:...`).
//!
//! Messages go out with `Success-Report: yes` and `Failure-Report:
//! partial`, as the SDK documents: the receiver reports delivery end to
//! end and hops only speak up on failure. Every message id
//! [`ChatStream::send_message`] returns ends in exactly one of
//! ChatStreamDidDeliverMessage or ChatStreamDidNotDeliverMessage; a
//! session that ends first reports what was not confirmed as not
//! delivered.
//!
//! | notification | data |
//! |---|---|
//! | ChatStreamGotMessage | `message_id`, `content`, `content_type`, `cpim_headers` (name to list of values), `sender` (CPIM From), `timestamp` (CPIM DateTime), `disposition_notification` (what the sender asked for), `private` (from a chat room, addressed to us alone) |
//! | ChatStreamDidSendMessage | `message_id` |
//! | ChatStreamDidDeliverMessage | `message_id`, `code`, `reason` |
//! | ChatStreamDidNotDeliverMessage | `message_id`, `code`, `reason` |
//! | ChatStreamGotComposingIndication | `state`, `refresh`, `content_type`, `last_active`, `sender` |
//! | ChatStreamGotDispositionNotification | `message_id`, `kind` (delivery, display, processing), `status` (delivered, displayed, failed, error, forbidden, ...), `sender`, `datetime`, `recipient_uri` |
//!
//! Disposition notifications (IMDN, RFC 5438) are an option: with
//! `chat.disposition_notifications` set (e.g. `["positive-delivery",
//! "display"]`), every message sent in CPIM asks for them, with its
//! message id as `imdn.Message-ID`. An incoming message that asks for
//! `positive-delivery` is answered with a delivery notification once it is
//! accepted (unless `chat.send_delivery_notifications` is false); one that
//! asks for `display` is answered when the application calls
//! [`ChatStream::send_display_notification`] with its message id.
//! ChatStreamGotMessage says what the sender asked for in
//! `disposition_notification`.
//!
//! Incoming messages the stream cannot use are refused with an MSRP error
//! response (400 for a broken CPIM envelope or is-composing document, 415
//! for a type we did not accept or a charset we cannot read), logged at
//! warn level with the reason, and counted in `info()["refused"]`.
//!
//! Account settings: `msrp.transport` (`tcp` or `tls`) and `msrp.relay`
//! with the account's credentials. Application settings:
//! `chat.max_message_size` (bytes, default 16 MiB).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::msrp_base::{complete, is_msrp_proto, remote_msrp, Link};
use crate::api::engine::setting;
use crate::api::error::{Error, Result};
use crate::api::im::{self, ImdnRequest, CPIM};
use crate::api::msrp::{
    new_session_id, path_to_string, MSRPSession, MessageSource, ReportMode, SendOptions,
    SessionConfig, SessionEvent,
};
use crate::api::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use crate::api::stream::{MediaStream, MediaStreamFactory, StreamContext, StreamFuture};
use crate::proto::cpim::{format_datetime, CpimAddress, CpimMessage};
use crate::proto::imdn::{self, Disposition, Imdn, Kind as ImdnKind};
use crate::proto::iscomposing::{self, ComposingState, ComposingTracker, IsComposing};
use crate::proto::msrp::session::{media_type_accepted, Event as CoreEvent};
use crate::proto::sdp::{Attribute, MediaDescription, SessionDescription, Setup};

pub const TYPE: &str = "chat";
pub const GOT_MESSAGE: &str = "ChatStreamGotMessage";
pub const DID_SEND_MESSAGE: &str = "ChatStreamDidSendMessage";
pub const DID_DELIVER_MESSAGE: &str = "ChatStreamDidDeliverMessage";
pub const DID_NOT_DELIVER_MESSAGE: &str = "ChatStreamDidNotDeliverMessage";
pub const GOT_COMPOSING_INDICATION: &str = "ChatStreamGotComposingIndication";
pub const GOT_DISPOSITION_NOTIFICATION: &str = "ChatStreamGotDispositionNotification";

/// Received messages kept for a later display notification, at most.
const MAX_DISPLAYABLE: usize = 10_000;

/// What a chat stream accepts unless told otherwise.
pub fn default_accept_types() -> Vec<String> {
    vec![
        "message/cpim".into(),
        "text/*".into(),
        iscomposing::CONTENT_TYPE.into(),
    ]
}

const DEFAULT_MAX_MESSAGE: u64 = 16 * 1024 * 1024;

/// The parts of a chat stream a host can change (the "subclass" side of
/// the SDK's ChatStream and MSRPStreamBase): the registered type name, the
/// m= media, accepted types and extra SDP attributes. The ODF editing
/// extension, for one, either adds `application/odf+xml` and
/// `a=features:odf-editor` to `chat`, or registers its own `odf` type.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The registered stream type (default `chat`).
    pub stream_type: String,
    /// The m= line's media (default `message`).
    pub media: String,
    pub accept_types: Vec<String>,
    pub accept_wrapped_types: Vec<String>,
    /// Added to our m= section (e.g. `a=features:odf-editor`).
    pub extra_attributes: Vec<Attribute>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            stream_type: TYPE.into(),
            media: "message".into(),
            accept_types: default_accept_types(),
            accept_wrapped_types: vec!["*".into()],
            extra_attributes: Vec::new(),
        }
    }
}

fn is_media_range(t: &str) -> bool {
    let token = |x: &str| {
        !x.is_empty()
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&b))
    };
    t == "*" || t.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

impl ChatConfig {
    /// [`ChatConfig::new`] with the chat defaults for what is None: media
    /// `message`, the default accept types, accept-wrapped-types `*`.
    pub fn with_defaults(
        stream_type: &str,
        media: Option<&str>,
        accept_types: Option<Vec<String>>,
        accept_wrapped_types: Option<Vec<String>>,
        attributes: &[String],
    ) -> Result<ChatConfig> {
        let d = ChatConfig::default();
        ChatConfig::new(
            stream_type,
            media.unwrap_or(&d.media),
            accept_types.unwrap_or(d.accept_types),
            accept_wrapped_types.unwrap_or(d.accept_wrapped_types),
            attributes,
        )
    }

    /// A checked configuration. `attributes` are SDP attribute texts
    /// (`features:odf-editor`, `name` for a flag). Media types must be
    /// `type/subtype`, `type/*` or `*`; `message/cpim` in `accept_types`
    /// is what lets the peer send CPIM-wrapped messages.
    pub fn new(
        stream_type: &str,
        media: &str,
        accept_types: Vec<String>,
        accept_wrapped_types: Vec<String>,
        attributes: &[String],
    ) -> Result<ChatConfig> {
        if media.is_empty()
            || !media
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::InvalidArgument(format!(
                "m= media {media:?} must be letters, digits or '-'"
            )));
        }
        if accept_types.is_empty() {
            return Err(Error::InvalidArgument("accept_types is empty".into()));
        }
        for t in accept_types.iter().chain(&accept_wrapped_types) {
            if !is_media_range(t) {
                return Err(Error::InvalidArgument(format!(
                    "{t:?} is not a media type (type/subtype, type/* or *)"
                )));
            }
        }
        let reserved = [
            "path",
            "accept-types",
            "accept-wrapped-types",
            "setup",
            "fingerprint",
        ];
        let mut extra = Vec::new();
        for a in attributes {
            let (name, value) = match a.split_once(':') {
                Some((n, v)) => (n, Some(v)),
                None => (a.as_str(), None),
            };
            let ok_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok_name || a.contains(['\r', '\n', '\0']) {
                return Err(Error::InvalidArgument(format!(
                    "{a:?} is not an SDP attribute (name or name:value on one line)"
                )));
            }
            if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(Error::InvalidArgument(format!(
                    "a={name} is the stream's own to set"
                )));
            }
            extra.push(match value {
                Some(v) => Attribute::value(name, v),
                None => Attribute::flag(name),
            });
        }
        let config = ChatConfig {
            stream_type: stream_type.to_string(),
            media: media.to_ascii_lowercase(),
            accept_types,
            accept_wrapped_types,
            extra_attributes: extra,
        };
        Ok(config)
    }
}

/// A message waiting for the stream to start.
struct Pending {
    message_id: String,
    content: Vec<u8>,
    content_type: String,
    recipients: Option<Vec<String>>,
    timestamp: Option<String>,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Initialized,
    Started,
    Ended,
}

struct State {
    phase: Phase,
    /// msrps and the peer's a=setup, when the peer offered the stream.
    offer: Option<(bool, Option<Setup>)>,
    /// Our end of the MSRP connection, from initialize on.
    link: Option<Link>,
    local_identity: Option<CpimAddress>,
    remote_identity: Option<CpimAddress>,
    remote_accept_types: Vec<String>,
    remote_accept_wrapped: Vec<String>,
    private_messages: bool,
    remote_fingerprint: Option<String>,
    queue: Vec<Pending>,
    session: Option<Arc<MSRPSession>>,
    max_message: u64,
    runtime: Option<tokio::runtime::Handle>,
    /// What every message we send asks for (RFC 5438).
    request_notifications: Vec<Disposition>,
    /// The peer's m= attributes as `name` or `name:value`.
    remote_attributes: Vec<String>,
}

/// Messages sent and waiting for their delivery report.
#[derive(Default)]
struct Tracking {
    /// Message id to whether the last chunk went out.
    waiting: HashMap<String, bool>,
}

/// A received message whose sender asked for a display notification.
struct Displayable {
    request: ImdnRequest,
    /// Its CPIM From: where the notification goes.
    sender: Option<CpimAddress>,
}

/// Received messages that asked for a display notification, oldest
/// first, bounded by [`MAX_DISPLAYABLE`].
#[derive(Default)]
struct DisplayQueue {
    by_id: HashMap<String, Displayable>,
    order: std::collections::VecDeque<String>,
}

impl DisplayQueue {
    fn insert(&mut self, message_id: String, d: Displayable) {
        if self.by_id.insert(message_id.clone(), d).is_none() {
            self.order.push_back(message_id);
        }
        while self.order.len() > MAX_DISPLAYABLE {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    fn take(&mut self, message_id: &str) -> Option<Displayable> {
        let d = self.by_id.remove(message_id)?;
        self.order.retain(|x| x != message_id);
        Some(d)
    }
}

struct Shared {
    sender: Sender,
    tracking: Mutex<Tracking>,
    sent: AtomicU64,
    received: AtomicU64,
    refused: AtomicU64,
    ended_locally: std::sync::atomic::AtomicBool,
    displayable: Mutex<DisplayQueue>,
    /// Answer positive-delivery requests (`chat.send_delivery_notifications`).
    send_delivery: std::sync::atomic::AtomicBool,
    /// Our CPIM address, for the notifications we send.
    local_identity: Mutex<Option<CpimAddress>>,
    stream_type: String,
}

impl Shared {
    fn post(&self, name: &str, data: NotificationData) {
        NotificationCenter::default().post_notification(name, &self.sender, data);
    }

    fn not_delivered(&self, message_id: &str, code: u16, reason: &str) {
        if self.tracking.lock().waiting.remove(message_id).is_some() {
            self.post(
                DID_NOT_DELIVER_MESSAGE,
                NotificationData::new()
                    .with("message_id", message_id)
                    .with("code", code)
                    .with("reason", reason),
            );
        }
    }
}

/// The chat stream of a session.
pub struct ChatStream {
    id: ObjectId,
    config: ChatConfig,
    state: Mutex<State>,
    shared: Arc<Shared>,
}

impl ChatStream {
    pub fn new(config: ChatConfig) -> ChatStream {
        let id = ObjectId::new();
        let stream_type = config.stream_type.clone();
        ChatStream {
            id,
            config,
            state: Mutex::new(State {
                phase: Phase::New,
                offer: None,
                link: None,
                local_identity: None,
                remote_identity: None,
                remote_accept_types: Vec::new(),
                remote_accept_wrapped: Vec::new(),
                private_messages: false,
                remote_fingerprint: None,
                queue: Vec::new(),
                session: None,
                max_message: DEFAULT_MAX_MESSAGE,
                runtime: None,
                request_notifications: Vec::new(),
                remote_attributes: Vec::new(),
            }),
            shared: Arc::new(Shared {
                sender: Sender {
                    id,
                    kind: "MediaStream",
                },
                tracking: Mutex::new(Tracking::default()),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                ended_locally: std::sync::atomic::AtomicBool::new(false),
                displayable: Mutex::new(DisplayQueue::default()),
                send_delivery: std::sync::atomic::AtomicBool::new(true),
                local_identity: Mutex::new(None),
                stream_type,
            }),
        }
    }

    /// The chat stream behind a session's stream handle, if it is one.
    pub fn of(handle: &crate::api::stream::StreamHandle) -> Option<&ChatStream> {
        handle
            .implementation()
            .as_any()?
            .downcast_ref::<ChatStream>()
    }

    pub fn accept_types(&self) -> &[String] {
        &self.config.accept_types
    }

    pub fn accept_wrapped_types(&self) -> &[String] {
        &self.config.accept_wrapped_types
    }

    /// The values of the peer's `a=name` attributes on this stream (an
    /// empty string for a flag), e.g. `features` to see whether the peer
    /// offers a host's extension.
    pub fn remote_attribute_values(&self, name: &str) -> Vec<String> {
        self.state
            .lock()
            .remote_attributes
            .iter()
            .filter_map(|a| {
                let (n, v) = a.split_once(':').unwrap_or((a.as_str(), ""));
                n.eq_ignore_ascii_case(name).then(|| v.to_string())
            })
            .collect()
    }

    /// Whether the peer takes messages for one participant only
    /// (`a=chatroom:private-messages`).
    pub fn private_messages_allowed(&self) -> bool {
        self.state.lock().private_messages
    }

    /// Send a message; returns its id. Before the stream starts, messages
    /// queue and go out in order once it has. `recipients` (CPIM To) other
    /// than the peer need the peer's private-messages support.
    pub fn send_message(
        &self,
        content: Vec<u8>,
        content_type: &str,
        recipients: Option<Vec<String>>,
        timestamp: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<String> {
        let content_type = content_type.trim();
        if !content_type.contains('/') || content_type.contains(['\r', '\n']) {
            return Err(Error::InvalidArgument(format!(
                "content type {content_type:?} is not type/subtype"
            )));
        }
        if let Some(t) = &timestamp {
            crate::proto::cpim::check_datetime(t)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        for (n, v) in &headers {
            if n.is_empty() || n.contains([':', '\r', '\n', ' ']) || v.contains(['\r', '\n']) {
                return Err(Error::InvalidArgument(format!("bad CPIM header {n:?}")));
            }
        }
        if let Some(r) = &recipients {
            if r.is_empty() {
                return Err(Error::InvalidArgument("an empty recipient list".into()));
            }
            for x in r {
                CpimAddress::parse(x).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            }
        }
        let message_id = new_session_id();
        let p = Pending {
            message_id: message_id.clone(),
            content,
            content_type: content_type.to_string(),
            recipients,
            timestamp,
            headers,
        };
        let mut st = self.state.lock();
        match st.phase {
            Phase::Ended => Err(Error::InvalidState("the chat stream has ended".into())),
            Phase::Started => {
                let session = st.session.clone();
                let wire = encode(&st, &p)?;
                drop(st);
                self.submit(session, &p.message_id, wire)?;
                Ok(message_id)
            }
            _ => {
                st.queue.push(p);
                Ok(message_id)
            }
        }
    }

    /// Tell the sender of received message `message_id` (the id
    /// ChatStreamGotMessage gave) that it was displayed (RFC 5438). Only
    /// for messages that asked for it (`display` in their
    /// `disposition_notification`), once each.
    pub fn send_display_notification(&self, message_id: &str) -> Result<()> {
        let session = {
            let st = self.state.lock();
            if st.phase != Phase::Started {
                return Err(Error::InvalidState(
                    "display notifications need a started chat stream".into(),
                ));
            }
            st.session.clone()
        }
        .ok_or_else(|| Error::InvalidState("the chat stream has no session".into()))?;
        let d = self
            .shared
            .displayable
            .lock()
            .take(message_id)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no received message {message_id:?} waits for a display notification"
                ))
            })?;
        let doc = Imdn::new(
            &d.request.message_id,
            &d.request.datetime,
            ImdnKind::Display,
            "displayed",
        );
        send_notification(&session, &self.shared, d.sender, &doc)
    }

    /// Tell the peer we are (or stopped) composing (RFC 3994). `refresh`:
    /// seconds until we send `active` again (default 60 for `active`).
    pub fn send_composing_indication(
        &self,
        state: &str,
        refresh: Option<u32>,
        last_active: Option<String>,
    ) -> Result<()> {
        let s = ComposingState::parse(state).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "composing state {state:?} is neither active nor idle"
            ))
        })?;
        if let Some(t) = &last_active {
            crate::proto::cpim::check_datetime(t)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        let mut doc = IsComposing::new(s);
        doc.content_type = Some("text/plain".into());
        doc.refresh = match s {
            ComposingState::Active => Some(refresh.unwrap_or(60).max(1)),
            ComposingState::Idle => None,
        };
        doc.last_active = last_active;
        let st = self.state.lock();
        if st.phase != Phase::Started {
            return Err(Error::InvalidState(
                "composing indications need a started chat stream".into(),
            ));
        }
        let p = Pending {
            message_id: new_session_id(),
            content: doc.to_xml().into_bytes(),
            content_type: iscomposing::CONTENT_TYPE.into(),
            recipients: None,
            timestamp: None,
            headers: Vec::new(),
        };
        let wire = encode(&st, &p)?;
        let session = st.session.clone();
        drop(st);
        let session =
            session.ok_or_else(|| Error::InvalidState("the chat stream has no session".into()))?;
        let (ct, body) = wire;
        session
            .send_message(
                MessageSource::Bytes(body),
                SendOptions {
                    content_type: ct,
                    success_report: ReportMode::No,
                    failure_report: ReportMode::Partial,
                    message_id: Some(p.message_id),
                    ..SendOptions::default()
                },
            )
            .map_err(|e| Error::InvalidState(format!("the chat stream is closed: {e}")))?;
        Ok(())
    }

    /// Hand one encoded message to the MSRP session and track it.
    fn submit(
        &self,
        session: Option<Arc<MSRPSession>>,
        message_id: &str,
        (content_type, body): (String, Vec<u8>),
    ) -> Result<()> {
        let session =
            session.ok_or_else(|| Error::InvalidState("the chat stream has no session".into()))?;
        self.shared
            .tracking
            .lock()
            .waiting
            .insert(message_id.to_string(), false);
        let r = session.send_message(
            MessageSource::Bytes(body),
            SendOptions {
                content_type,
                success_report: ReportMode::Yes,
                failure_report: ReportMode::Partial,
                message_id: Some(message_id.to_string()),
                ..SendOptions::default()
            },
        );
        if let Err(e) = r {
            self.shared.tracking.lock().waiting.remove(message_id);
            return Err(Error::InvalidState(format!(
                "the chat stream is closed: {e}"
            )));
        }
        self.shared.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The content type and bytes on the wire for `p`: CPIM when the peer
/// takes it, the bare content when the peer takes that type and no CPIM.
fn encode(st: &State, p: &Pending) -> Result<(String, Vec<u8>)> {
    let private = p.recipients.as_ref().is_some_and(|r| {
        let remote = st.remote_identity.as_ref().map(|a| a.uri.as_str());
        r.len() != 1
            || CpimAddress::parse(&r[0])
                .ok()
                .is_none_or(|a| Some(a.uri.as_str()) != remote)
    });
    if private && !st.private_messages {
        return Err(Error::InvalidState(
            "the peer does not take private messages (no a=chatroom:private-messages)".into(),
        ));
    }
    let cpim_ok = media_type_accepted(&st.remote_accept_types, CPIM)
        && media_type_accepted(&st.remote_accept_wrapped, &p.content_type);
    if cpim_ok {
        let from = st
            .local_identity
            .clone()
            .unwrap_or_else(|| CpimAddress::new(None, "sip:anonymous@anonymous.invalid"));
        let to: Vec<CpimAddress> = match &p.recipients {
            Some(r) => r
                .iter()
                .filter_map(|x| CpimAddress::parse(x).ok())
                .collect(),
            None => st.remote_identity.clone().into_iter().collect(),
        };
        let first = to
            .first()
            .cloned()
            .unwrap_or_else(|| CpimAddress::new(None, "sip:anonymous@anonymous.invalid"));
        let ts = p
            .timestamp
            .clone()
            .unwrap_or_else(|| format_datetime(SystemTime::now()));
        let mut m = CpimMessage::new(&from, &first, Some(&ts), &p.content_type, p.content.clone());
        for extra in to.iter().skip(1) {
            m.headers.insert(2, ("To".into(), extra.to_string()));
        }
        for (n, v) in &p.headers {
            m.headers.push((n.clone(), v.clone()));
        }
        if !st.request_notifications.is_empty() && asks_for_notifications(&p.content_type) {
            imdn::request(&mut m, &p.message_id, &st.request_notifications);
        }
        return Ok((CPIM.into(), m.to_bytes()));
    }
    if media_type_accepted(&st.remote_accept_types, &p.content_type) && !private {
        return Ok((p.content_type.clone(), p.content.clone()));
    }
    Err(Error::InvalidArgument(format!(
        "the peer accepts neither {} nor message/cpim wrapping it",
        p.content_type
    )))
}

/// Whether a message of this type may ask for disposition notifications:
/// not notifications or composing indications themselves.
fn asks_for_notifications(content_type: &str) -> bool {
    let base = content_type.split(';').next().unwrap_or("").trim();
    !base.eq_ignore_ascii_case(imdn::CONTENT_TYPE)
        && !base.eq_ignore_ascii_case(iscomposing::CONTENT_TYPE)
}

/// Send a disposition notification to `to` (the peer when None). It asks
/// for no report of its own: a notification is not notified.
fn send_notification(
    session: &MSRPSession,
    shared: &Shared,
    to: Option<CpimAddress>,
    doc: &Imdn,
) -> Result<()> {
    let from = shared
        .local_identity
        .lock()
        .clone()
        .unwrap_or_else(|| CpimAddress::new(None, "sip:anonymous@anonymous.invalid"));
    let to = to.unwrap_or_else(|| CpimAddress::new(None, "sip:anonymous@anonymous.invalid"));
    let own_id = new_session_id();
    let m = imdn::notification_message(
        &from,
        &to,
        &format_datetime(SystemTime::now()),
        &own_id,
        doc,
    );
    session
        .send_message(
            MessageSource::Bytes(m.to_bytes()),
            SendOptions {
                content_type: CPIM.into(),
                success_report: ReportMode::No,
                failure_report: ReportMode::Partial,
                message_id: Some(own_id),
                ..SendOptions::default()
            },
        )
        .map(|_| ())
        .map_err(|e| Error::InvalidState(format!("the chat stream is closed: {e}")))
}

/// The name-addr part of a From/To value (tag and other parameters off).
fn address_of(identity: &str) -> Option<CpimAddress> {
    let s = identity.trim();
    let s = match s.find('>') {
        Some(i) => &s[..=i],
        None => s.split(';').next().unwrap_or(s),
    };
    CpimAddress::parse(s).ok()
}

impl MediaStream for ChatStream {
    fn stream_type(&self) -> &str {
        &self.config.stream_type
    }

    fn object_id(&self) -> Option<ObjectId> {
        Some(self.id)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }

    fn initialize<'a>(&'a self, ctx: &'a StreamContext) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            let offer = {
                let st = self.state.lock();
                if st.phase != Phase::New {
                    return Err(Error::InvalidState(
                        "the chat stream was initialized".into(),
                    ));
                }
                if ctx.direction == "incoming" {
                    Some(st.offer.unwrap_or((false, None)))
                } else {
                    None
                }
            };
            let max_message = match setting(&ctx.settings, "chat.max_message_size") {
                None | Some(Value::Null) => DEFAULT_MAX_MESSAGE,
                Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "chat.max_message_size must be a positive number, not {v}"
                    ))
                })?,
            };
            let request_notifications = match setting(&ctx.settings, "chat.disposition_notifications") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str().and_then(Disposition::parse).ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "chat.disposition_notifications: {v} is not positive-delivery, negative-delivery, display or processing"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                Some(v) => {
                    return Err(Error::InvalidArgument(format!(
                        "chat.disposition_notifications must be a list, not {v}"
                    )))
                }
            };
            let send_delivery = match setting(&ctx.settings, "chat.send_delivery_notifications") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(Error::InvalidArgument(format!(
                        "chat.send_delivery_notifications must be true or false, not {v}"
                    )))
                }
            };
            let link = Link::prepare(ctx, offer).await?;
            let mut st = self.state.lock();
            st.link = Some(link);
            st.max_message = max_message;
            st.runtime = Some(ctx.runtime.clone());
            st.local_identity = ctx.local_identity.as_deref().and_then(address_of);
            st.remote_identity = ctx.remote_identity.as_deref().and_then(address_of);
            st.request_notifications = request_notifications;
            *self.shared.local_identity.lock() = st.local_identity.clone();
            self.shared
                .send_delivery
                .store(send_delivery, Ordering::Relaxed);
            st.phase = Phase::Initialized;
            Ok(())
        })
    }

    fn get_local_media(&self, _remote: Option<&MediaDescription>) -> Result<MediaDescription> {
        let st = self.state.lock();
        let mut m = st
            .link
            .as_ref()
            .ok_or_else(|| Error::InvalidState("the chat stream is not initialized".into()))?
            .media(&self.config.media)?;
        m.push_attribute(Attribute::value(
            "accept-types",
            self.config.accept_types.join(" "),
        ));
        m.push_attribute(Attribute::value(
            "accept-wrapped-types",
            self.config.accept_wrapped_types.join(" "),
        ));
        for a in &self.config.extra_attributes {
            m.push_attribute(a.clone());
        }
        Ok(m)
    }

    fn start<'a>(
        &'a self,
        _local_sdp: &'a SessionDescription,
        remote_sdp: &'a SessionDescription,
        index: usize,
    ) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            let (endpoint, remote, max_message) = {
                let mut st = self.state.lock();
                let initialized = st.phase == Phase::Initialized;
                let Some(link) = st.link.as_mut().filter(|_| initialized) else {
                    return Err(Error::InvalidState(
                        "the chat stream is not initialized".into(),
                    ));
                };
                let (remote, rm) = remote_msrp(remote_sdp, index, link.offered_connect())?;
                let endpoint = link.take_endpoint();
                st.remote_accept_types = rm
                    .list_attribute("accept-types")
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                st.remote_accept_wrapped = rm
                    .list_attribute("accept-wrapped-types")
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                st.private_messages = rm.attribute_values("chatroom").any(|v| {
                    v.split_ascii_whitespace()
                        .any(|x| x.eq_ignore_ascii_case("private-messages"))
                });
                st.remote_fingerprint = remote.fingerprint.as_ref().map(|f| f.to_string());
                st.remote_attributes = rm
                    .attributes
                    .iter()
                    .map(|a| match &a.value {
                        Some(v) => format!("{}:{v}", a.name),
                        None => a.name.clone(),
                    })
                    .collect();
                (endpoint, remote, st.max_message)
            };
            let endpoint = endpoint
                .ok_or_else(|| Error::InvalidState("the chat stream has no connection".into()))?;
            let transport = complete(endpoint, remote).await?;
            let config = SessionConfig {
                accept_types: Some(self.config.accept_types.clone()),
                defer_completion: true,
                max_incoming_message: Some(max_message),
                ..SessionConfig::default()
            };
            let session = Arc::new(transport.into_session(config));
            let mut st = self.state.lock();
            if st.phase == Phase::Ended {
                session.shutdown();
                return Err(Error::InvalidState(
                    "the chat stream ended while starting".into(),
                ));
            }
            st.session = Some(session.clone());
            st.phase = Phase::Started;
            let queue = std::mem::take(&mut st.queue);
            let mut encoded = Vec::with_capacity(queue.len());
            for p in &queue {
                encoded.push((p.message_id.clone(), encode(&st, p)));
            }
            let reading = Reading {
                accept_wrapped: self.config.accept_wrapped_types.clone(),
                room: st
                    .private_messages
                    .then(|| st.remote_identity.as_ref().map(|a| a.uri.clone()))
                    .flatten(),
            };
            let runtime = st.runtime.clone();
            drop(st);
            let pump = pump(session.clone(), self.shared.clone(), reading, max_message);
            match runtime {
                Some(rt) => {
                    rt.spawn(pump);
                }
                None => {
                    tokio::spawn(pump);
                }
            }
            for (mid, wire) in encoded {
                let sent = wire.and_then(|w| self.submit(Some(session.clone()), &mid, w));
                if let Err(e) = sent {
                    // Queued before we knew what the peer takes: it is
                    // reported, not dropped.
                    self.shared
                        .tracking
                        .lock()
                        .waiting
                        .insert(mid.clone(), false);
                    self.shared.not_delivered(&mid, 415, &e.to_string());
                }
            }
            Ok(())
        })
    }

    fn end(&self) {
        let mut st = self.state.lock();
        let was = st.phase;
        st.phase = Phase::Ended;
        if let Some(l) = st.link.as_mut() {
            l.take_endpoint();
        }
        self.shared
            .ended_locally
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let queue = std::mem::take(&mut st.queue);
        let session = st.session.take();
        drop(st);
        for p in queue {
            self.shared
                .tracking
                .lock()
                .waiting
                .insert(p.message_id.clone(), false);
            let why = if was == Phase::Started {
                "the chat stream ended"
            } else {
                "the chat stream ended before it started"
            };
            self.shared.not_delivered(&p.message_id, 487, why);
        }
        if let Some(s) = session {
            // The pump reports what was not delivered when the session
            // task closes.
            s.shutdown();
        }
    }

    fn info(&self) -> Value {
        let st = self.state.lock();
        json!({
            "local_path": st.link.as_ref().map(|l| path_to_string(&l.local_path)),
            "secure": st.link.as_ref().map(|l| l.secure).or(st.offer.map(|o| o.0)),
            "setup": st.link.as_ref().map(|l| l.setup.as_str()),
            "accept_types": self.config.accept_types,
            "accept_wrapped_types": self.config.accept_wrapped_types,
            "remote_accept_types": st.remote_accept_types,
            "private_messages": st.private_messages,
            "remote_attributes": st.remote_attributes,
            "remote_fingerprint": st.remote_fingerprint,
            "queued": st.queue.len(),
            "sent": self.shared.sent.load(Ordering::Relaxed),
            "received": self.shared.received.load(Ordering::Relaxed),
            "refused": self.shared.refused.load(Ordering::Relaxed),
            "awaiting_report": self.shared.tracking.lock().waiting.len(),
        })
    }
}

/// An incoming message being received.
struct InMsg {
    content_type: Option<String>,
    data: Vec<u8>,
    too_big: bool,
}

/// What to answer an incoming message with, what to post, and what its
/// sender asked to be told (with the sender's address).
enum Verdict {
    Accept(
        Option<(&'static str, NotificationData)>,
        Option<(ImdnRequest, Option<CpimAddress>)>,
    ),
    Refuse(u16, String),
}

/// What the pump needs to read incoming messages.
struct Reading {
    accept_wrapped: Vec<String>,
    /// The peer's URI when it is a chat room (it offered
    /// a=chatroom:private-messages): messages addressed to anyone else
    /// (us) are private.
    room: Option<String>,
}

fn judge(
    content_type: &str,
    data: Vec<u8>,
    reading: &Reading,
    tracker: &mut ComposingTracker,
    message_id: &str,
) -> Verdict {
    let m = match im::read(content_type, data, &reading.accept_wrapped) {
        Ok(m) => m,
        Err((code, why)) => return Verdict::Refuse(code, why),
    };
    if let im::Body::Composing(doc) = &m.body {
        tracker.received(Instant::now(), doc);
        return Verdict::Accept(
            Some((
                GOT_COMPOSING_INDICATION,
                composing_data(
                    doc.state,
                    doc.refresh,
                    doc.content_type.as_deref(),
                    doc.last_active.as_deref(),
                    m.sender.as_deref(),
                ),
            )),
            None,
        );
    }
    let opt = |v: Option<String>| v.map(Value::from).unwrap_or(Value::Null);
    if let im::Body::Imdn(doc) = &m.body {
        return Verdict::Accept(
            Some((
                GOT_DISPOSITION_NOTIFICATION,
                NotificationData::new()
                    .with("message_id", doc.message_id.as_str())
                    .with("kind", doc.kind.as_str())
                    .with("status", doc.status.as_str())
                    .with("sender", opt(m.sender.clone()))
                    .with("datetime", doc.datetime.as_str())
                    .with("recipient_uri", opt(doc.recipient_uri.clone())),
            )),
            None,
        );
    }
    let asked: Vec<Value> = m
        .imdn_request
        .iter()
        .flat_map(|r| r.dispositions.iter().map(|d| Value::from(d.as_str())))
        .collect();
    let private = reading.room.as_deref().is_some_and(|room| {
        m.cpim_headers
            .get("To")
            .and_then(|to| to.first())
            .and_then(|to| CpimAddress::parse(to).ok())
            .is_some_and(|to| to.uri != room)
    });
    let request = m.imdn_request.clone().map(|r| {
        let sender = m.sender.as_deref().and_then(|s| CpimAddress::parse(s).ok());
        (r, sender)
    });
    Verdict::Accept(
        Some((
            GOT_MESSAGE,
            NotificationData::new()
                .with("message_id", message_id)
                .with("content", m.content_value())
                .with("cpim_headers", m.cpim_headers_value())
                .with("content_type", m.content_type)
                .with("sender", opt(m.sender))
                .with("timestamp", opt(m.timestamp))
                .with("disposition_notification", Value::Array(asked))
                .with("private", private),
        )),
        request,
    )
}

fn composing_data(
    state: ComposingState,
    refresh: Option<u32>,
    content_type: Option<&str>,
    last_active: Option<&str>,
    sender: Option<&str>,
) -> NotificationData {
    let opt = |v: Option<&str>| v.map(Value::from).unwrap_or(Value::Null);
    NotificationData::new()
        .with("state", state.as_str())
        .with("refresh", refresh.map(Value::from).unwrap_or(Value::Null))
        .with("content_type", opt(content_type))
        .with("last_active", opt(last_active))
        .with("sender", opt(sender))
}

/// Act on what an accepted message's sender asked for: a delivery
/// notification now, a display notification kept for the application.
fn answer_request(
    session: &MSRPSession,
    shared: &Shared,
    message_id: &str,
    request: ImdnRequest,
    sender: Option<CpimAddress>,
) {
    if request
        .dispositions
        .contains(&Disposition::PositiveDelivery)
        && shared.send_delivery.load(Ordering::Relaxed)
    {
        let doc = Imdn::new(
            &request.message_id,
            &request.datetime,
            ImdnKind::Delivery,
            "delivered",
        );
        if let Err(e) = send_notification(session, shared, sender.clone(), &doc) {
            tracing::warn!(target: "sipsimple::chat", "no delivery notification for {message_id}: {e}");
        }
    }
    if request.dispositions.contains(&Disposition::Display) {
        shared
            .displayable
            .lock()
            .insert(message_id.to_string(), Displayable { request, sender });
    }
}

/// Turn the MSRP session's events into chat notifications until it ends.
async fn pump(session: Arc<MSRPSession>, shared: Arc<Shared>, reading: Reading, max_message: u64) {
    let mut incoming: HashMap<String, InMsg> = HashMap::new();
    let mut tracker = ComposingTracker::default();
    loop {
        let deadline = tracker.poll_timeout();
        let ev = tokio::select! {
            ev = session.next_event() => ev,
            _ = tokio::time::sleep_until(deadline.map(tokio::time::Instant::from_std).unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                if tracker.handle_timeout(Instant::now()) {
                    shared.post(GOT_COMPOSING_INDICATION, composing_data(ComposingState::Idle, None, None, None, None));
                }
                continue;
            }
        };
        let Some(ev) = ev else { break };
        match ev {
            SessionEvent::Data {
                message_id,
                offset,
                data,
            } => {
                let Some(m) = incoming.get_mut(&message_id) else {
                    continue;
                };
                let end = offset.saturating_add(data.len() as u64);
                if m.too_big || end > max_message {
                    m.too_big = true;
                    m.data = Vec::new();
                    continue;
                }
                let (off, end) = (offset as usize, end as usize);
                if m.data.len() < end {
                    m.data.resize(end, 0);
                }
                m.data[off..end].copy_from_slice(&data);
            }
            SessionEvent::Core(CoreEvent::IncomingMessage {
                message_id,
                content_type,
                ..
            }) => {
                incoming.insert(
                    message_id,
                    InMsg {
                        content_type,
                        data: Vec::new(),
                        too_big: false,
                    },
                );
            }
            SessionEvent::Core(CoreEvent::MessageComplete { message_id, .. }) => {
                let Some(m) = incoming.remove(&message_id) else {
                    let _ = session.complete_message(&message_id, 200, None);
                    continue;
                };
                let verdict = if m.too_big {
                    Verdict::Refuse(413, format!("larger than {max_message} bytes"))
                } else {
                    match m.content_type.as_deref() {
                        // The empty SEND that binds a connection.
                        None if m.data.is_empty() => Verdict::Accept(None, None),
                        None => Verdict::Refuse(400, "a message without Content-Type".into()),
                        Some(ct) => judge(ct, m.data, &reading, &mut tracker, &message_id),
                    }
                };
                match verdict {
                    Verdict::Accept(post, request) => {
                        let _ = session.complete_message(&message_id, 200, None);
                        if let Some((request, sender)) = request {
                            answer_request(&session, &shared, &message_id, request, sender);
                        }
                        if let Some((name, data)) = post {
                            if name == GOT_MESSAGE {
                                shared.received.fetch_add(1, Ordering::Relaxed);
                                if tracker.message_received() {
                                    shared.post(
                                        GOT_COMPOSING_INDICATION,
                                        composing_data(
                                            ComposingState::Idle,
                                            None,
                                            None,
                                            None,
                                            None,
                                        ),
                                    );
                                }
                            }
                            shared.post(name, data);
                        }
                    }
                    Verdict::Refuse(code, why) => {
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "sipsimple::chat", "refused incoming message {message_id}: {code} {why}");
                        let _ = session.complete_message(&message_id, code, Some(&why));
                    }
                }
            }
            SessionEvent::Core(CoreEvent::MessageAborted { message_id, .. }) => {
                incoming.remove(&message_id);
            }
            SessionEvent::Core(CoreEvent::MessageSent { message_id }) => {
                let known = match shared.tracking.lock().waiting.get_mut(&message_id) {
                    Some(sent) => {
                        *sent = true;
                        true
                    }
                    None => false,
                };
                if known {
                    shared.post(
                        DID_SEND_MESSAGE,
                        NotificationData::new().with("message_id", message_id),
                    );
                }
            }
            SessionEvent::Core(CoreEvent::ChunkResponse {
                message_id,
                code,
                comment,
                ..
            }) if code != 200 => {
                let reason = comment.unwrap_or_else(|| "failed".into());
                shared.not_delivered(&message_id, code, &reason);
            }
            SessionEvent::Core(CoreEvent::Report {
                message_id,
                code,
                comment,
                ..
            }) => {
                let reason = comment.unwrap_or_default();
                if code == 200 {
                    if shared.tracking.lock().waiting.remove(&message_id).is_some() {
                        shared.post(
                            DID_DELIVER_MESSAGE,
                            NotificationData::new()
                                .with("message_id", message_id)
                                .with("code", code)
                                .with("reason", reason),
                        );
                    }
                } else {
                    shared.not_delivered(&message_id, code, &reason);
                }
            }
            SessionEvent::Core(_) => {}
            SessionEvent::Closed { error } => {
                let mut left: Vec<(String, bool)> = shared
                    .tracking
                    .lock()
                    .waiting
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                left.sort();
                for (mid, sent) in left {
                    let why = if sent {
                        "the session ended before the delivery report came"
                    } else {
                        "the session ended before the message was sent"
                    };
                    shared.not_delivered(&mid, 408, why);
                }
                if !shared
                    .ended_locally
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    let reason =
                        error.unwrap_or_else(|| "the peer closed the MSRP connection".into());
                    shared.post(
                        crate::api::stream::DID_FAIL,
                        NotificationData::new()
                            .with("type", shared.stream_type.as_str())
                            .with("reason", reason),
                    );
                }
                break;
            }
        }
    }
}

/// Makes chat streams for `m=message` sections that are not file
/// transfers (or for the m= media of the configuration).
#[derive(Default)]
pub struct ChatFactory {
    pub config: ChatConfig,
}

impl ChatFactory {
    /// Register (or replace) an MSRP message stream type in the process's
    /// registry: `chat` itself with more types and attributes, or a type
    /// of the host's own with its own m= media.
    pub fn register(config: ChatConfig) -> Result<()> {
        crate::api::stream::MediaStreamRegistry::default()
            .register(Arc::new(ChatFactory { config }))
    }
}

impl MediaStreamFactory for ChatFactory {
    fn stream_type(&self) -> &str {
        &self.config.stream_type
    }

    fn new_from_sdp(&self, sdp: &SessionDescription, index: usize) -> Option<Arc<dyn MediaStream>> {
        let m = sdp.media.get(index)?;
        if !m.media.eq_ignore_ascii_case(&self.config.media) || m.port == 0 {
            return None;
        }
        let secure = is_msrp_proto(&m.proto)?;
        if m.has_attribute("file-selector") || m.attribute("path").is_none() {
            return None;
        }
        let s = ChatStream::new(self.config.clone());
        {
            let mut st = s.state.lock();
            st.offer = Some((secure, m.setup()));
        }
        Some(Arc::new(s))
    }

    fn new_outgoing(&self) -> Result<Arc<dyn MediaStream>> {
        Ok(Arc::new(ChatStream::new(self.config.clone())))
    }
}
