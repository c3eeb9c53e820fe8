//! IMediaStream and the MediaStreamRegistry.
//!
//! A stream type registers a [`MediaStreamFactory`] under its type name
//! ("audio", "chat", or a host's own); a session builds streams from an
//! incoming offer through the registry (`new_from_sdp`) or from types the
//! application asks for (`new_outgoing`). The session drives each stream's
//! lifecycle and posts its notifications with the stream as sender:
//!
//! | name | data |
//! |---|---|
//! | MediaStreamDidInitialize | `type` |
//! | MediaStreamDidStart | `type` |
//! | MediaStreamDidFail | `type`, `reason` |
//! | MediaStreamWillEnd | `type` |
//! | MediaStreamDidEnd | `type` |

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use once_cell::sync::Lazy;
use parking_lot::RwLock;

use super::error::{Error, Result};
use super::notification::{ObjectId, Sender};
use crate::proto::sdp::{MediaDescription, SessionDescription};

pub const DID_INITIALIZE: &str = "MediaStreamDidInitialize";
pub const DID_START: &str = "MediaStreamDidStart";
pub const DID_FAIL: &str = "MediaStreamDidFail";
pub const WILL_END: &str = "MediaStreamWillEnd";
pub const DID_END: &str = "MediaStreamDidEnd";

/// A stream operation that may take network time.
pub type StreamFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a stream learns when the session initializes it.
#[derive(Debug, Clone)]
pub struct StreamContext {
    /// The session the stream belongs to.
    pub session: ObjectId,
    /// "outgoing" or "incoming": who offered the stream.
    pub direction: &'static str,
    /// The local address the session signals from (for c= and a=path).
    pub local_ip: IpAddr,
    /// The runtime that owns the session (for streams with their own I/O).
    pub runtime: tokio::runtime::Handle,
    /// The application's settings (e.g. `audio.input_device`).
    pub settings: Arc<serde_json::Map<String, serde_json::Value>>,
    /// The session's account (its `msrp.*` settings, credentials).
    pub account: Option<super::account::Account>,
    /// Our From/To name-addr in this session.
    pub local_identity: Option<String>,
    /// The peer's name-addr.
    pub remote_identity: Option<String>,
    /// msrps configurations made from the application's TLS settings.
    pub msrp_tls: crate::api::msrp::MsrpTlsCache,
}

/// One media stream of a session (IMediaStream).
pub trait MediaStream: Send + Sync + 'static {
    /// The registered type name.
    fn stream_type(&self) -> &str;

    /// Whether hold and unhold mean something for this stream.
    fn hold_supported(&self) -> bool {
        false
    }

    /// Prepare local resources (sockets, listeners) before SDP is built.
    fn initialize<'a>(&'a self, ctx: &'a StreamContext) -> StreamFuture<'a, ()>;

    /// The m= section for an offer (`remote` None) or for the answer to
    /// `remote`. The session sets the direction attribute for streams that
    /// support hold.
    fn get_local_media(&self, remote: Option<&MediaDescription>) -> Result<MediaDescription>;

    /// Start media once both descriptions are known.
    fn start<'a>(
        &'a self,
        local_sdp: &'a SessionDescription,
        remote_sdp: &'a SessionDescription,
        index: usize,
    ) -> StreamFuture<'a, ()>;

    /// Whether a new offer for this stream can be taken without a new stream.
    fn validate_update(&self, _remote_sdp: &SessionDescription, _index: usize) -> bool {
        true
    }

    /// Apply a renegotiated description.
    fn update(
        &self,
        _local_sdp: &SessionDescription,
        _remote_sdp: &SessionDescription,
        _index: usize,
    ) {
    }

    fn hold(&self) {}

    fn unhold(&self) {}

    /// Release everything; called once.
    fn end(&self);

    /// What the stream wants to show about itself (codec, addresses,
    /// statistics), as JSON.
    fn info(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The id the stream wants as a notification sender (host streams know
    /// theirs before the session sees them).
    fn object_id(&self) -> Option<ObjectId> {
        None
    }

    /// The stream as `Any`, for streams with calls of their own
    /// (`ChatStream::of`).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// Makes streams of one type (the class side of IMediaStream).
pub trait MediaStreamFactory: Send + Sync + 'static {
    fn stream_type(&self) -> &str;

    /// Higher goes first when several types could take the same m= line.
    fn priority(&self) -> i32 {
        0
    }

    /// A stream for media section `index` of an incoming offer, or None if
    /// this type does not handle it.
    fn new_from_sdp(
        &self,
        remote_sdp: &SessionDescription,
        index: usize,
    ) -> Option<Arc<dyn MediaStream>>;

    /// A stream for a session or proposal we start.
    fn new_outgoing(&self) -> Result<Arc<dyn MediaStream>>;
}

/// A stream inside a session: the implementation plus its identity as a
/// notification sender.
#[derive(Clone)]
pub struct StreamHandle {
    pub(crate) sender: Sender,
    pub(crate) imp: Arc<dyn MediaStream>,
    pub(crate) type_name: String,
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle")
            .field("id", &self.sender.id.0)
            .field("type", &self.type_name)
            .finish()
    }
}

impl StreamHandle {
    pub fn new(imp: Arc<dyn MediaStream>) -> StreamHandle {
        StreamHandle {
            sender: Sender {
                id: imp.object_id().unwrap_or_default(),
                kind: "MediaStream",
            },
            type_name: imp.stream_type().to_string(),
            imp,
        }
    }

    pub fn id(&self) -> ObjectId {
        self.sender.id
    }

    pub fn stream_type(&self) -> &str {
        &self.type_name
    }

    pub fn hold_supported(&self) -> bool {
        self.imp.hold_supported()
    }

    /// The implementation, for stream-specific calls (downcast by the
    /// stream's own module).
    pub fn implementation(&self) -> &Arc<dyn MediaStream> {
        &self.imp
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"type": self.type_name, "id": self.sender.id.0})
    }

    /// Type, id and the stream's own information.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({"type": self.type_name, "id": self.sender.id.0, "info": self.imp.info()})
    }
}

/// The process-wide registry of stream types.
pub struct MediaStreamRegistry {
    factories: RwLock<Vec<Arc<dyn MediaStreamFactory>>>,
}

static REGISTRY: Lazy<MediaStreamRegistry> = Lazy::new(|| MediaStreamRegistry {
    factories: RwLock::new(vec![
        Arc::new(super::streams::audio::AudioFactory),
        Arc::new(super::streams::chat::ChatFactory::default()),
        Arc::new(super::streams::file_transfer::FileTransferFactory),
    ]),
});

fn valid_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl MediaStreamRegistry {
    /// The process-wide registry (like NotificationCenter::default()).
    #[allow(clippy::should_implement_trait)]
    pub fn default() -> &'static MediaStreamRegistry {
        &REGISTRY
    }

    /// Register a stream type; an existing registration of the same name is
    /// replaced (a host can override a built-in type).
    pub fn register(&self, factory: Arc<dyn MediaStreamFactory>) -> Result<()> {
        let name = factory.stream_type().to_string();
        if !valid_type_name(&name) {
            return Err(Error::InvalidArgument(format!(
                "stream type {name:?} must be 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        let mut f = self.factories.write();
        f.retain(|x| x.stream_type() != name);
        f.push(factory);
        f.sort_by_key(|x| std::cmp::Reverse(x.priority()));
        Ok(())
    }

    /// Remove a type; sessions keep the streams they have.
    pub fn unregister(&self, stream_type: &str) -> bool {
        let mut f = self.factories.write();
        let before = f.len();
        f.retain(|x| x.stream_type() != stream_type);
        f.len() != before
    }

    pub fn types(&self) -> Vec<String> {
        self.factories
            .read()
            .iter()
            .map(|f| f.stream_type().to_string())
            .collect()
    }

    pub fn get(&self, stream_type: &str) -> Option<Arc<dyn MediaStreamFactory>> {
        self.factories
            .read()
            .iter()
            .find(|f| f.stream_type() == stream_type)
            .cloned()
    }

    /// A new outgoing stream of a registered type.
    pub fn create(&self, stream_type: &str) -> Result<StreamHandle> {
        let f = self.get(stream_type).ok_or_else(|| {
            Error::NotFound(format!("no stream type {stream_type:?} is registered"))
        })?;
        Ok(StreamHandle::new(f.new_outgoing()?))
    }

    /// The first type, by priority, that takes media section `index`.
    pub fn stream_for(&self, sdp: &SessionDescription, index: usize) -> Option<StreamHandle> {
        // Factories are called outside the lock: a host factory may call
        // back into the registry.
        let factories: Vec<_> = self.factories.read().clone();
        factories
            .iter()
            .find_map(|f| f.new_from_sdp(sdp, index))
            .map(StreamHandle::new)
    }
}

/// A stream type implemented by the host application (C, Python, Swift,
/// Kotlin): SDP travels as text, calls block. `initialize` and `start` run
/// on a blocking-pool thread; the others on the runtime thread and must
/// return quickly. `stream_id` is the stream's notification sender id.
pub trait HostStreamHandler: Send + Sync + 'static {
    /// Whether this type takes media section `index` of `sdp`; if so a
    /// stream with `stream_id` now exists.
    fn new_from_sdp(&self, stream_id: u64, sdp: &str, index: u32) -> bool;
    /// A stream the application asked for (outgoing offer or proposal).
    fn new_outgoing(&self, stream_id: u64) -> std::result::Result<(), String>;
    fn initialize(
        &self,
        stream_id: u64,
        local_ip: &str,
        direction: &str,
    ) -> std::result::Result<(), String>;
    /// The media section (from `m=` on) for an offer (`remote_media` None)
    /// or the answer to `remote_media`.
    fn get_local_media(
        &self,
        stream_id: u64,
        remote_media: Option<&str>,
    ) -> std::result::Result<String, String>;
    fn start(
        &self,
        stream_id: u64,
        local_sdp: &str,
        remote_sdp: &str,
        index: u32,
    ) -> std::result::Result<(), String>;
    fn update(&self, stream_id: u64, local_sdp: &str, remote_sdp: &str, index: u32);
    fn hold(&self, stream_id: u64);
    fn unhold(&self, stream_id: u64);
    fn end(&self, stream_id: u64);
}

struct HostStream {
    id: ObjectId,
    type_name: String,
    hold_supported: bool,
    handler: Arc<dyn HostStreamHandler>,
    ended: std::sync::atomic::AtomicBool,
}

fn host_err(type_name: &str, what: &str, e: String) -> Error {
    Error::Internal(format!("{type_name} stream: {what} failed: {e}"))
}

impl MediaStream for HostStream {
    fn stream_type(&self) -> &str {
        &self.type_name
    }

    fn hold_supported(&self) -> bool {
        self.hold_supported
    }

    fn object_id(&self) -> Option<ObjectId> {
        Some(self.id)
    }

    fn initialize<'a>(&'a self, ctx: &'a StreamContext) -> StreamFuture<'a, ()> {
        let h = self.handler.clone();
        let (id, ip, dir) = (self.id.0, ctx.local_ip.to_string(), ctx.direction);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || h.initialize(id, &ip, dir))
                .await
                .map_err(|e| Error::Internal(format!("host callback panicked: {e}")))?
                .map_err(|e| host_err(&self.type_name, "initialize", e))
        })
    }

    fn get_local_media(&self, remote: Option<&MediaDescription>) -> Result<MediaDescription> {
        let remote = remote.map(|m| m.to_string());
        let text = self
            .handler
            .get_local_media(self.id.0, remote.as_deref())
            .map_err(|e| host_err(&self.type_name, "get_local_media", e))?;
        MediaDescription::parse_section(&text).map_err(|e| {
            Error::InvalidArgument(format!(
                "{} stream: get_local_media returned a bad media section: {e}",
                self.type_name
            ))
        })
    }

    fn start<'a>(
        &'a self,
        local_sdp: &'a SessionDescription,
        remote_sdp: &'a SessionDescription,
        index: usize,
    ) -> StreamFuture<'a, ()> {
        let h = self.handler.clone();
        let (id, l, r) = (self.id.0, local_sdp.to_string(), remote_sdp.to_string());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || h.start(id, &l, &r, index as u32))
                .await
                .map_err(|e| Error::Internal(format!("host callback panicked: {e}")))?
                .map_err(|e| host_err(&self.type_name, "start", e))
        })
    }

    fn update(
        &self,
        local_sdp: &SessionDescription,
        remote_sdp: &SessionDescription,
        index: usize,
    ) {
        self.handler.update(
            self.id.0,
            &local_sdp.to_string(),
            &remote_sdp.to_string(),
            index as u32,
        );
    }

    fn hold(&self) {
        self.handler.hold(self.id.0);
    }

    fn unhold(&self) {
        self.handler.unhold(self.id.0);
    }

    fn end(&self) {
        if !self.ended.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.handler.end(self.id.0);
        }
    }
}

impl Drop for HostStream {
    fn drop(&mut self) {
        // A stream made but never used (a proposal nobody accepted) still
        // gets its end call, so the host can free what it keeps per stream.
        MediaStream::end(self);
    }
}

/// The factory of a host-defined stream type.
pub struct HostStreamType {
    name: String,
    priority: i32,
    hold_supported: bool,
    handler: Arc<dyn HostStreamHandler>,
}

impl HostStreamType {
    pub fn new(
        name: &str,
        priority: i32,
        hold_supported: bool,
        handler: Arc<dyn HostStreamHandler>,
    ) -> HostStreamType {
        HostStreamType {
            name: name.to_string(),
            priority,
            hold_supported,
            handler,
        }
    }

    fn make(&self) -> HostStream {
        HostStream {
            id: ObjectId::new(),
            type_name: self.name.clone(),
            hold_supported: self.hold_supported,
            handler: self.handler.clone(),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl MediaStreamFactory for HostStreamType {
    fn stream_type(&self) -> &str {
        &self.name
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    fn new_from_sdp(&self, sdp: &SessionDescription, index: usize) -> Option<Arc<dyn MediaStream>> {
        let s = self.make();
        if self
            .handler
            .new_from_sdp(s.id.0, &sdp.to_string(), index as u32)
        {
            Some(Arc::new(s))
        } else {
            // Not taken: no stream exists, so no end call either.
            s.ended.store(true, std::sync::atomic::Ordering::SeqCst);
            None
        }
    }

    fn new_outgoing(&self) -> Result<Arc<dyn MediaStream>> {
        let s = self.make();
        match self.handler.new_outgoing(s.id.0) {
            Ok(()) => Ok(Arc::new(s)),
            Err(e) => {
                s.ended.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(host_err(&self.name, "new_outgoing", e))
            }
        }
    }
}
