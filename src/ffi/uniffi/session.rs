//! Accounts, sessions and host-defined stream types for Python, Swift and
//! Kotlin. Thin adapters over `crate::api`.

use std::sync::Arc;

use super::{SIPApplication, SipSimpleError};
use crate::api::{self, HostStreamHandler, HostStreamType, MediaStreamRegistry, ObjectId};
use crate::ffi::streams_for_types;

/// A SIP account (user@domain) or the Bonjour account.
#[derive(uniffi::Object)]
pub struct Account {
    inner: api::Account,
}

#[uniffi::export]
impl Account {
    #[uniffi::constructor]
    pub fn new(id: String, display_name: Option<String>) -> Result<Arc<Self>, SipSimpleError> {
        Ok(Arc::new(Account {
            inner: api::Account::new(&id, display_name.as_deref())?,
        }))
    }

    /// The P2P account `bonjour@local`.
    #[uniffi::constructor]
    pub fn bonjour(display_name: Option<String>) -> Result<Arc<Self>, SipSimpleError> {
        Ok(Arc::new(Account {
            inner: api::Account::bonjour(display_name.as_deref())?,
        }))
    }

    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// A setting by dotted name, as JSON text.
    pub fn get(&self, name: String) -> Result<String, SipSimpleError> {
        Ok(self.inner.get(&name)?.to_string())
    }

    /// Change a setting (JSON text; "null" resets it); `save` writes it.
    pub fn set(&self, name: String, value_json: String) -> Result<(), SipSimpleError> {
        let v = crate::ffi::parse_json_value(&value_json)?;
        Ok(self.inner.set(&name, v)?)
    }

    /// Write the changes; the names that changed.
    pub fn save(&self) -> Result<Vec<String>, SipSimpleError> {
        Ok(self.inner.save()?)
    }
}

/// An INVITE session with its media streams.
#[derive(uniffi::Object)]
pub struct Session {
    inner: api::Session,
}

fn wrap(s: api::Session) -> Arc<Session> {
    Arc::new(Session { inner: s })
}

#[uniffi::export]
impl SIPApplication {
    /// A new outgoing session (state "NULL") for `account`.
    pub fn new_session(&self, account: Arc<Account>) -> Result<Arc<Session>, SipSimpleError> {
        Ok(wrap(
            self.inner.session_manager()?.new_session(&account.inner),
        ))
    }

    /// The live session with this id (a notification's sender id).
    pub fn get_session(&self, session_id: u64) -> Result<Option<Arc<Session>>, SipSimpleError> {
        Ok(self
            .inner
            .session_manager()?
            .session(ObjectId(session_id))
            .map(wrap))
    }

    /// Sessions not yet terminated.
    pub fn sessions(&self) -> Result<Vec<Arc<Session>>, SipSimpleError> {
        Ok(self
            .inner
            .session_manager()?
            .sessions()
            .into_iter()
            .map(wrap)
            .collect())
    }

    /// A stored account of the running application.
    pub fn get_account(&self, id: String) -> Result<Arc<Account>, SipSimpleError> {
        Ok(Arc::new(Account {
            inner: self.inner.account_manager()?.get_account(&id)?,
        }))
    }

    /// Add and store an account; it activates (and registers) at its first
    /// `save()` or the next start.
    pub fn add_account(
        &self,
        id: String,
        password: Option<String>,
    ) -> Result<Arc<Account>, SipSimpleError> {
        Ok(Arc::new(Account {
            inner: self
                .inner
                .account_manager()?
                .add_account(&id, password.as_deref())?,
        }))
    }

    /// Delete a stored account (it unregisters first).
    pub fn delete_account(&self, id: String) -> Result<(), SipSimpleError> {
        Ok(self.inner.account_manager()?.delete_account(&id)?)
    }

    pub fn account_ids(&self) -> Result<Vec<String>, SipSimpleError> {
        Ok(self
            .inner
            .account_manager()?
            .get_accounts()
            .iter()
            .map(|a| a.id().to_string())
            .collect())
    }

    pub fn default_account_id(&self) -> Result<Option<String>, SipSimpleError> {
        Ok(self
            .inner
            .account_manager()?
            .default_account()
            .map(|a| a.id().to_string()))
    }

    pub fn set_default_account_id(&self, id: String) -> Result<(), SipSimpleError> {
        Ok(self.inner.account_manager()?.set_default_account(&id)?)
    }

    /// Every active account registers again now.
    pub fn network_changed(&self) -> Result<(), SipSimpleError> {
        Ok(self.inner.network_changed()?)
    }

    /// A global setting by dotted name, as JSON text.
    pub fn setting_get(&self, name: String) -> Result<String, SipSimpleError> {
        Ok(self.inner.settings()?.get(&name)?.to_string())
    }

    /// Change a global setting and save it; the names that changed.
    pub fn setting_set(
        &self,
        name: String,
        value_json: String,
    ) -> Result<Vec<String>, SipSimpleError> {
        let s = self.inner.settings()?;
        s.set(&name, crate::ffi::parse_json_value(&value_json)?)?;
        Ok(s.save()?)
    }

    /// Answer new incoming sessions 486 Busy Here while set.
    pub fn set_busy(&self, busy: bool) -> Result<(), SipSimpleError> {
        self.inner.session_manager()?.set_busy(busy);
        Ok(())
    }

    /// The account incoming sessions belong to (None: Bonjour).
    pub fn set_default_account(&self, account: Option<Arc<Account>>) -> Result<(), SipSimpleError> {
        self.inner
            .session_manager()?
            .set_default_account(account.map(|a| a.inner.clone()));
        Ok(())
    }
}

#[uniffi::export]
impl Session {
    /// The sender id of this session's notifications.
    pub fn id(&self) -> u64 {
        self.inner.id().0
    }

    /// "NULL", "connecting", "incoming", "accepting", "established",
    /// "proposing", "received_proposal", "terminating" or "terminated".
    pub fn state(&self) -> String {
        self.inner.state().as_str().to_string()
    }

    /// Every attribute as one JSON object.
    pub fn info_json(&self) -> String {
        self.inner.info_json().to_string()
    }

    /// Types of the streams the peer proposed (incoming session or proposal).
    pub fn proposed_stream_types(&self) -> Vec<String> {
        self.inner
            .proposed_streams()
            .iter()
            .map(|s| s.stream_type().to_string())
            .collect()
    }

    pub fn stream_types(&self) -> Vec<String> {
        self.inner
            .streams()
            .iter()
            .map(|s| s.stream_type().to_string())
            .collect()
    }

    /// Call `uri` through `routes` (outbound proxies, may be empty) with
    /// new streams of the registered `stream_types`.
    pub fn connect(
        &self,
        uri: String,
        routes: Vec<String>,
        stream_types: Vec<String>,
    ) -> Result<(), SipSimpleError> {
        let streams = streams_for_types(&stream_types)?;
        Ok(self.inner.connect(&uri, &routes, streams)?)
    }

    pub fn send_ring_indication(&self) -> Result<(), SipSimpleError> {
        Ok(self.inner.send_ring_indication()?)
    }

    /// Accept with the proposed streams of these types (None: all).
    pub fn accept(&self, stream_types: Option<Vec<String>>) -> Result<(), SipSimpleError> {
        let streams = self
            .inner
            .proposed_streams_of_types(stream_types.as_deref());
        Ok(self.inner.accept(streams)?)
    }

    pub fn reject(&self, code: u16) -> Result<(), SipSimpleError> {
        Ok(self.inner.reject(code, None)?)
    }

    pub fn end(&self) -> Result<(), SipSimpleError> {
        Ok(self.inner.end()?)
    }

    pub fn hold(&self) -> Result<(), SipSimpleError> {
        Ok(self.inner.hold()?)
    }

    pub fn unhold(&self) -> Result<(), SipSimpleError> {
        Ok(self.inner.unhold()?)
    }

    pub fn add_stream(&self, stream_type: String) -> Result<(), SipSimpleError> {
        let s = MediaStreamRegistry::default().create(&stream_type)?;
        Ok(self.inner.add_stream(s)?)
    }

    /// Send DTMF `digits` (0-9, *, #, A-D) on the audio stream.
    pub fn send_dtmf(&self, digits: String) -> Result<(), SipSimpleError> {
        Ok(self.inner.send_dtmf(&digits)?)
    }

    /// Record the call's audio (None: a file named after the time and the
    /// peer); returns the file used.
    pub fn start_recording_audio(&self, file: Option<String>) -> Result<String, SipSimpleError> {
        Ok(self.inner.start_recording_audio(file.as_deref())?)
    }

    /// Stop recording the call.
    pub fn stop_recording_audio(&self) -> Result<(), SipSimpleError> {
        Ok(self.inner.stop_recording_audio()?)
    }

    /// Call `uri` through `routes` to send it the file at `path` (push).
    pub fn connect_file(
        &self,
        uri: String,
        routes: Vec<String>,
        path: String,
    ) -> Result<(), SipSimpleError> {
        self.inner.connect_file(&uri, &routes, &path)?;
        Ok(())
    }

    /// Call `uri` to fetch the file `file_selector` names (RFC 5547 text).
    pub fn connect_pull(
        &self,
        uri: String,
        routes: Vec<String>,
        file_selector: String,
    ) -> Result<(), SipSimpleError> {
        self.inner.connect_pull(&uri, &routes, &file_selector)?;
        Ok(())
    }

    /// Offer the file at `path` on this established session.
    pub fn send_file(&self, path: String) -> Result<(), SipSimpleError> {
        self.inner.send_file(&path)?;
        Ok(())
    }

    /// Answer the peer's request for a file with the file at `path`
    /// (before accepting).
    pub fn set_file_source(&self, path: String) -> Result<(), SipSimpleError> {
        Ok(self.inner.set_file_source(&path)?)
    }

    /// Send a message on the session's chat stream (queued until it
    /// starts); returns the id the delivery notifications carry.
    pub fn send_message(
        &self,
        content: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<String, SipSimpleError> {
        Ok(self
            .inner
            .send_message(&content, content_type.as_deref().unwrap_or("text/plain"))?)
    }

    /// Tell the sender of received chat message `message_id` that it was
    /// displayed (RFC 5438), when it asked for that.
    pub fn send_display_notification(&self, message_id: String) -> Result<(), SipSimpleError> {
        Ok(self.inner.send_display_notification(&message_id)?)
    }

    /// An is-composing indication ("active" or "idle") on the chat stream.
    pub fn send_composing_indication(
        &self,
        state: String,
        refresh: Option<u32>,
    ) -> Result<(), SipSimpleError> {
        Ok(self.inner.send_composing_indication(&state, refresh)?)
    }

    /// Remove the session's (first) stream of `stream_type`.
    pub fn remove_stream(&self, stream_type: String) -> Result<(), SipSimpleError> {
        Ok(self.inner.remove_stream_of_type(&stream_type)?)
    }

    pub fn accept_proposal(&self, stream_types: Option<Vec<String>>) -> Result<(), SipSimpleError> {
        let streams = self
            .inner
            .proposed_streams_of_types(stream_types.as_deref());
        Ok(self.inner.accept_proposal(streams)?)
    }

    pub fn reject_proposal(&self, code: u16) -> Result<(), SipSimpleError> {
        Ok(self.inner.reject_proposal(code, None)?)
    }
}

/// A stream type implemented by the application. `initialize` and `start`
/// run on a worker thread; the others on the runtime thread and must return
/// quickly. `stream_id` is the stream's notification sender id. SDP is text;
/// media sections run from "m=" on with CRLF line ends.
#[uniffi::export(with_foreign)]
pub trait StreamHandler: Send + Sync {
    /// Whether this type takes media section `index` of the offer.
    fn new_from_sdp(&self, stream_id: u64, sdp: String, index: u32) -> bool;
    fn new_outgoing(&self, stream_id: u64) -> Result<(), SipSimpleError>;
    fn initialize(
        &self,
        stream_id: u64,
        local_ip: String,
        direction: String,
    ) -> Result<(), SipSimpleError>;
    /// The media section for an offer (`remote_media` None) or the answer.
    fn get_local_media(
        &self,
        stream_id: u64,
        remote_media: Option<String>,
    ) -> Result<String, SipSimpleError>;
    fn start(
        &self,
        stream_id: u64,
        local_sdp: String,
        remote_sdp: String,
        index: u32,
    ) -> Result<(), SipSimpleError>;
    fn update(&self, stream_id: u64, local_sdp: String, remote_sdp: String, index: u32);
    fn hold(&self, stream_id: u64);
    fn unhold(&self, stream_id: u64);
    /// Called once for every stream made.
    fn end(&self, stream_id: u64);
}

struct Adapter(Arc<dyn StreamHandler>);

impl HostStreamHandler for Adapter {
    fn new_from_sdp(&self, stream_id: u64, sdp: &str, index: u32) -> bool {
        self.0.new_from_sdp(stream_id, sdp.to_string(), index)
    }
    fn new_outgoing(&self, stream_id: u64) -> Result<(), String> {
        self.0.new_outgoing(stream_id).map_err(|e| e.to_string())
    }
    fn initialize(&self, stream_id: u64, local_ip: &str, direction: &str) -> Result<(), String> {
        self.0
            .initialize(stream_id, local_ip.to_string(), direction.to_string())
            .map_err(|e| e.to_string())
    }
    fn get_local_media(&self, stream_id: u64, remote: Option<&str>) -> Result<String, String> {
        self.0
            .get_local_media(stream_id, remote.map(str::to_string))
            .map_err(|e| e.to_string())
    }
    fn start(&self, stream_id: u64, local: &str, remote: &str, index: u32) -> Result<(), String> {
        self.0
            .start(stream_id, local.to_string(), remote.to_string(), index)
            .map_err(|e| e.to_string())
    }
    fn update(&self, stream_id: u64, local: &str, remote: &str, index: u32) {
        self.0
            .update(stream_id, local.to_string(), remote.to_string(), index)
    }
    fn hold(&self, stream_id: u64) {
        self.0.hold(stream_id)
    }
    fn unhold(&self, stream_id: u64) {
        self.0.unhold(stream_id)
    }
    fn end(&self, stream_id: u64) {
        self.0.end(stream_id)
    }
}

/// Register a stream type implemented by the application (replaces one of
/// the same name).
#[uniffi::export]
pub fn register_stream_type(
    name: String,
    priority: i32,
    hold_supported: bool,
    handler: Arc<dyn StreamHandler>,
) -> Result<(), SipSimpleError> {
    Ok(
        MediaStreamRegistry::default().register(Arc::new(HostStreamType::new(
            &name,
            priority,
            hold_supported,
            Arc::new(Adapter(handler)),
        )))?,
    )
}

/// Register (or replace) an MSRP message stream type built on the chat
/// stream: `name` "chat" changes the built-in chat type, another name adds
/// one of the application's own. `media`: the m= media (None: "message");
/// `accept_types` / `accept_wrapped_types` (None: the chat defaults);
/// `attributes`: extra SDP attributes as "name" or "name:value" (e.g.
/// "features:odf-editor").
#[uniffi::export]
pub fn register_msrp_stream_type(
    name: String,
    media: Option<String>,
    accept_types: Option<Vec<String>>,
    accept_wrapped_types: Option<Vec<String>>,
    attributes: Vec<String>,
) -> Result<(), SipSimpleError> {
    let config = crate::api::streams::ChatConfig::with_defaults(
        &name,
        media.as_deref(),
        accept_types,
        accept_wrapped_types,
        &attributes,
    )?;
    Ok(crate::api::streams::ChatFactory::register(config)?)
}

/// Remove a stream type; false if none was registered under `name`.
#[uniffi::export]
pub fn unregister_stream_type(name: String) -> bool {
    MediaStreamRegistry::default().unregister(&name)
}

/// The registered stream types, highest priority first.
#[uniffi::export]
pub fn stream_types() -> Vec<String> {
    MediaStreamRegistry::default().types()
}
