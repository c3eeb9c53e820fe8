//! The C ABI for accounts, sessions and host-defined stream types.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Arc;

use super::handles::{self, Kind};
use super::{
    app, guard, handle_err, in_str, opt_str, out_ptr, out_string, FfiError, SipsimpleApplication,
    UserData,
};
use crate::api::streams::{ChatConfig, ChatFactory};
use crate::api::{
    Account, HostStreamHandler, HostStreamType, MediaStreamRegistry, ObjectId, Session,
};
use crate::ffi::{parse_type_list, streams_for_types, SipsimpleStatus};

/// An account (`Account` or the Bonjour account). Opaque.
pub struct SipsimpleAccount {
    _private: [u8; 0],
}

/// A session (`Session`). Opaque.
pub struct SipsimpleSession {
    _private: [u8; 0],
}

fn account(h: *const SipsimpleAccount) -> Result<Arc<Account>, FfiError> {
    handles::get(h, Kind::Account).map_err(handle_err("account"))
}

fn session(h: *const SipsimpleSession) -> Result<Arc<Session>, FfiError> {
    handles::get(h, Kind::Session).map_err(handle_err("session"))
}

fn new_account(a: Account, out: *mut *mut SipsimpleAccount) -> Result<(), FfiError> {
    let out = out_ptr(out, "out")?;
    *out = handles::insert(Kind::Account, Arc::new(a));
    Ok(())
}

/// An account for `id` (user@domain); `display_name` may be NULL.
#[no_mangle]
pub extern "C" fn sipsimple_account_new(
    id: *const c_char,
    display_name: *const c_char,
    out: *mut *mut SipsimpleAccount,
) -> SipsimpleStatus {
    guard(|| {
        let id = in_str(id, "id")?;
        let dn = opt_str(display_name, "display_name")?;
        new_account(Account::new(id, dn)?, out)
    })
}

/// The P2P account `bonjour@local`; `display_name` may be NULL.
#[no_mangle]
pub extern "C" fn sipsimple_account_new_bonjour(
    display_name: *const c_char,
    out: *mut *mut SipsimpleAccount,
) -> SipsimpleStatus {
    guard(|| {
        let dn = opt_str(display_name, "display_name")?;
        new_account(Account::bonjour(dn)?, out)
    })
}

/// Free an account handle (sessions keep their own reference).
#[no_mangle]
pub extern "C" fn sipsimple_account_free(account: *mut SipsimpleAccount) -> SipsimpleStatus {
    guard(|| {
        handles::remove(account, Kind::Account).map_err(handle_err("account"))?;
        Ok(())
    })
}

/// The account that incoming sessions belong to (default: Bonjour). NULL
/// resets to the default.
#[no_mangle]
pub extern "C" fn sipsimple_application_set_default_account(
    application: *mut SipsimpleApplication,
    account_handle: *mut SipsimpleAccount,
) -> SipsimpleStatus {
    guard(|| {
        let a = app(application)?;
        let acc = if account_handle.is_null() {
            None
        } else {
            Some((*account(account_handle)?).clone())
        };
        a.session_manager()?.set_default_account(acc);
        Ok(())
    })
}

/// While `busy` is non-zero, new incoming sessions are answered 486 Busy
/// Here without a session being made.
#[no_mangle]
pub extern "C" fn sipsimple_application_set_busy(
    application: *mut SipsimpleApplication,
    busy: i32,
) -> SipsimpleStatus {
    guard(|| {
        app(application)?.session_manager()?.set_busy(busy != 0);
        Ok(())
    })
}

/// A new outgoing session (state "NULL") of a running application.
#[no_mangle]
pub extern "C" fn sipsimple_session_new(
    application: *mut SipsimpleApplication,
    account_handle: *mut SipsimpleAccount,
    out: *mut *mut SipsimpleSession,
) -> SipsimpleStatus {
    guard(|| {
        let a = app(application)?;
        let acc = account(account_handle)?;
        let out = out_ptr(out, "out")?;
        let s = a.session_manager()?.new_session(&acc);
        *out = handles::insert(Kind::Session, Arc::new(s));
        Ok(())
    })
}

/// A handle to the live session whose notifications carry `session_id` as
/// sender id (e.g. from SIPSessionNewIncoming). SIPSIMPLE_STATUS_NOT_FOUND
/// when it has ended. Free the handle with `sipsimple_session_free`.
#[no_mangle]
pub extern "C" fn sipsimple_application_get_session(
    application: *mut SipsimpleApplication,
    session_id: u64,
    out: *mut *mut SipsimpleSession,
) -> SipsimpleStatus {
    guard(|| {
        let a = app(application)?;
        let out = out_ptr(out, "out")?;
        let s = a
            .session_manager()?
            .session(ObjectId(session_id))
            .ok_or_else(|| {
                FfiError::new(
                    SipsimpleStatus::NotFound,
                    format!("no live session with id {session_id}"),
                )
            })?;
        *out = handles::insert(Kind::Session, Arc::new(s));
        Ok(())
    })
}

/// Free a session handle. The session itself goes on until it ends.
#[no_mangle]
pub extern "C" fn sipsimple_session_free(s: *mut SipsimpleSession) -> SipsimpleStatus {
    guard(|| {
        handles::remove(s, Kind::Session).map_err(handle_err("session"))?;
        Ok(())
    })
}

/// The session's id (the sender id of its notifications).
#[no_mangle]
pub extern "C" fn sipsimple_session_id(s: *mut SipsimpleSession, out: *mut u64) -> SipsimpleStatus {
    guard(|| {
        let id = session(s)?.id().0;
        *out_ptr(out, "out")? = id;
        Ok(())
    })
}

/// The state: "NULL", "connecting", "incoming", "accepting", "established",
/// "proposing", "received_proposal", "terminating", "terminated". Free with
/// `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_session_state(
    s: *mut SipsimpleSession,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| out_string(out, session(s)?.state().as_str()))
}

/// Every attribute as a JSON object: id, account, state, direction,
/// start_time, stop_time, on_hold_by_local, on_hold_by_remote, on_hold,
/// remote_user_agent, local_identity, remote_identity, route, streams,
/// proposed_streams. Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_session_info(
    s: *mut SipsimpleSession,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| out_string(out, &session(s)?.info_json().to_string()))
}

/// Call `uri` with new streams of the comma-separated registered
/// `stream_types`; `routes` is NULL or a comma-separated list of proxy URIs.
#[no_mangle]
pub extern "C" fn sipsimple_session_connect(
    s: *mut SipsimpleSession,
    uri: *const c_char,
    routes: *const c_char,
    stream_types: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let uri = in_str(uri, "uri")?;
        let routes = opt_str(routes, "routes")?
            .map(parse_type_list)
            .unwrap_or_default();
        let types = parse_type_list(in_str(stream_types, "stream_types")?);
        let streams = streams_for_types(&types)?;
        sess.connect(uri, &routes, streams)?;
        Ok(())
    })
}

/// Send 180 Ringing on an incoming session.
#[no_mangle]
pub extern "C" fn sipsimple_session_send_ring_indication(
    s: *mut SipsimpleSession,
) -> SipsimpleStatus {
    guard(|| Ok(session(s)?.send_ring_indication()?))
}

/// Accept an incoming session with the proposed streams of the listed
/// types (comma-separated; NULL: all proposed streams).
#[no_mangle]
pub extern "C" fn sipsimple_session_accept(
    s: *mut SipsimpleSession,
    stream_types: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let types = opt_str(stream_types, "stream_types")?.map(parse_type_list);
        let streams = sess.proposed_streams_of_types(types.as_deref());
        Ok(sess.accept(streams)?)
    })
}

/// Refuse an incoming session with `code` (300-699, e.g. 486, 603).
#[no_mangle]
pub extern "C" fn sipsimple_session_reject(s: *mut SipsimpleSession, code: u32) -> SipsimpleStatus {
    guard(|| {
        let code = u16::try_from(code).unwrap_or(0);
        Ok(session(s)?.reject(code, None)?)
    })
}

/// End the session (CANCEL, decline or BYE as the state needs).
#[no_mangle]
pub extern "C" fn sipsimple_session_end(s: *mut SipsimpleSession) -> SipsimpleStatus {
    guard(|| Ok(session(s)?.end()?))
}

#[no_mangle]
pub extern "C" fn sipsimple_session_hold(s: *mut SipsimpleSession) -> SipsimpleStatus {
    guard(|| Ok(session(s)?.hold()?))
}

#[no_mangle]
pub extern "C" fn sipsimple_session_unhold(s: *mut SipsimpleSession) -> SipsimpleStatus {
    guard(|| Ok(session(s)?.unhold()?))
}

/// Propose a new stream of a registered type (re-INVITE).
#[no_mangle]
pub extern "C" fn sipsimple_session_add_stream(
    s: *mut SipsimpleSession,
    stream_type: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let t = in_str(stream_type, "stream_type")?;
        let stream = MediaStreamRegistry::default().create(t)?;
        Ok(sess.add_stream(stream)?)
    })
}

/// Send DTMF `digits` (0-9, *, #, A-D) on the session's audio stream as
/// RFC 4733 telephone events. The peer's session posts SIPSessionGotDTMF
/// (`digit`) for each.
#[no_mangle]
pub extern "C" fn sipsimple_session_send_dtmf(
    s: *mut SipsimpleSession,
    digits: *const c_char,
) -> SipsimpleStatus {
    guard(|| Ok(session(s)?.send_dtmf(in_str(digits, "digits")?)?))
}

/// Record the call's audio to `file` (NULL: a file named after the time
/// and the peer in `audio.recordings_directory`): a 2-channel WAV, what
/// we send and what we hear. `out_file` (may be NULL) gets the file used.
#[no_mangle]
pub extern "C" fn sipsimple_session_start_recording_audio(
    s: *mut SipsimpleSession,
    file: *const c_char,
    out_file: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let used = sess.start_recording_audio(opt_str(file, "file")?)?;
        if out_file.is_null() {
            Ok(())
        } else {
            out_string(out_file, &used)
        }
    })
}

/// Stop recording; the file is complete when this returns.
#[no_mangle]
pub extern "C" fn sipsimple_session_stop_recording_audio(
    s: *mut SipsimpleSession,
) -> SipsimpleStatus {
    guard(|| Ok(session(s)?.stop_recording_audio()?))
}

/// Call `uri` (`routes` as for sipsimple_session_connect) to send it the
/// file at `path` (push). The transfer's notifications come from the
/// stream: FileTransferStreamDidChangeProgress and, once, DidFinish.
#[no_mangle]
pub extern "C" fn sipsimple_session_connect_file(
    s: *mut SipsimpleSession,
    uri: *const c_char,
    routes: *const c_char,
    path: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let uri = in_str(uri, "uri")?;
        let routes = opt_str(routes, "routes")?
            .map(parse_type_list)
            .unwrap_or_default();
        sess.connect_file(uri, &routes, in_str(path, "path")?)?;
        Ok(())
    })
}

/// Call `uri` to fetch the file `file_selector` names (RFC 5547 text:
/// `name:"report.pdf" size:1234 hash:sha1:..`); it is saved in
/// `file_transfer.directory`.
#[no_mangle]
pub extern "C" fn sipsimple_session_connect_pull(
    s: *mut SipsimpleSession,
    uri: *const c_char,
    routes: *const c_char,
    file_selector: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let uri = in_str(uri, "uri")?;
        let routes = opt_str(routes, "routes")?
            .map(parse_type_list)
            .unwrap_or_default();
        sess.connect_pull(uri, &routes, in_str(file_selector, "file_selector")?)?;
        Ok(())
    })
}

/// Offer the file at `path` on this established session (a new file
/// transfer stream, proposed by re-INVITE).
#[no_mangle]
pub extern "C" fn sipsimple_session_send_file(
    s: *mut SipsimpleSession,
    path: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        session(s)?.send_file(in_str(path, "path")?)?;
        Ok(())
    })
}

/// Answer the peer's request for a file (an incoming session or proposal
/// with a pull) with the file at `path`, before accepting. It must be the
/// file asked for (checked by name, size and hash).
#[no_mangle]
pub extern "C" fn sipsimple_session_set_file_source(
    s: *mut SipsimpleSession,
    path: *const c_char,
) -> SipsimpleStatus {
    guard(|| Ok(session(s)?.set_file_source(in_str(path, "path")?)?))
}

/// Send `length` bytes of `content` (`content_type`, NULL: "text/plain";
/// text must be UTF-8) on the session's chat stream; before the stream
/// starts the message queues. `out_message_id` (may be NULL) receives the
/// id that ChatStreamDidDeliverMessage or ChatStreamDidNotDeliverMessage
/// carries later.
#[no_mangle]
pub extern "C" fn sipsimple_session_send_message(
    s: *mut SipsimpleSession,
    content: *const u8,
    length: usize,
    content_type: *const c_char,
    out_message_id: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let data: &[u8] = if length == 0 {
            &[]
        } else if content.is_null() {
            return Err(FfiError::new(
                SipsimpleStatus::NullArgument,
                "content is NULL with a non-zero length",
            ));
        } else {
            // SAFETY: the caller passes `length` readable bytes at `content`.
            unsafe { std::slice::from_raw_parts(content, length) }
        };
        let ct = opt_str(content_type, "content_type")?.unwrap_or("text/plain");
        let id = sess.send_message(data, ct)?;
        if out_message_id.is_null() {
            Ok(())
        } else {
            out_string(out_message_id, &id)
        }
    })
}

/// Tell the sender of received chat message `message_id` (the
/// `message_id` of its ChatStreamGotMessage) that it was displayed
/// (RFC 5438). Only for messages whose `disposition_notification` asked
/// for `display`, once each; otherwise SIPSIMPLE_STATUS_NOT_FOUND.
#[no_mangle]
pub extern "C" fn sipsimple_session_send_display_notification(
    s: *mut SipsimpleSession,
    message_id: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let id = in_str(message_id, "message_id")?;
        Ok(sess.send_display_notification(id)?)
    })
}

/// Tell the peer on the session's chat stream that we are composing
/// (`state` "active", refreshed within `refresh` seconds, 0: 60) or stopped
/// ("idle").
#[no_mangle]
pub extern "C" fn sipsimple_session_send_composing_indication(
    s: *mut SipsimpleSession,
    state: *const c_char,
    refresh: u32,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let state = in_str(state, "state")?;
        Ok(sess.send_composing_indication(state, (refresh > 0).then_some(refresh))?)
    })
}

/// Remove the session's (first) stream of `stream_type`.
#[no_mangle]
pub extern "C" fn sipsimple_session_remove_stream(
    s: *mut SipsimpleSession,
    stream_type: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let t = in_str(stream_type, "stream_type")?;
        Ok(sess.remove_stream_of_type(t)?)
    })
}

/// Accept the peer's proposal with the proposed streams of the listed
/// types (NULL: all).
#[no_mangle]
pub extern "C" fn sipsimple_session_accept_proposal(
    s: *mut SipsimpleSession,
    stream_types: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let sess = session(s)?;
        let types = opt_str(stream_types, "stream_types")?.map(parse_type_list);
        let streams = sess.proposed_streams_of_types(types.as_deref());
        Ok(sess.accept_proposal(streams)?)
    })
}

/// Refuse the peer's proposal with `code` (300-699, usually 488).
#[no_mangle]
pub extern "C" fn sipsimple_session_reject_proposal(
    s: *mut SipsimpleSession,
    code: u32,
) -> SipsimpleStatus {
    guard(|| {
        let code = u16::try_from(code).unwrap_or(0);
        Ok(session(s)?.reject_proposal(code, None)?)
    })
}

// ---------------------------------------------------------------- host streams

/// Callbacks of a stream type defined by the application. Every callback
/// gets the stream's id (its notification sender id) and the `user_data`
/// given at registration. Return 0 for success from the int32_t ones.
/// `initialize` and `start` run on a worker thread and may block; the
/// others run on the runtime thread and must return quickly. Strings passed
/// in are valid until the callback returns.
#[repr(C)]
pub struct SipsimpleStreamCallbacks {
    /// Whether the type takes media section `index` of the offer `sdp`:
    /// non-zero makes a stream with `stream_id`.
    pub new_from_sdp: Option<
        unsafe extern "C" fn(
            stream_id: u64,
            sdp: *const c_char,
            index: u32,
            user_data: *mut c_void,
        ) -> i32,
    >,
    /// A stream the application asked for (connect, add_stream).
    pub new_outgoing: Option<unsafe extern "C" fn(stream_id: u64, user_data: *mut c_void) -> i32>,
    /// Prepare local resources; `direction` is "outgoing" or "incoming".
    pub initialize: Option<
        unsafe extern "C" fn(
            stream_id: u64,
            local_ip: *const c_char,
            direction: *const c_char,
            user_data: *mut c_void,
        ) -> i32,
    >,
    /// The media section (from "m=" on, lines ending in CRLF) for an offer
    /// (`remote_media` NULL) or the answer to `remote_media`. The returned
    /// string must stay valid until the next callback for this stream; the
    /// library copies it. NULL refuses.
    pub get_local_media: Option<
        unsafe extern "C" fn(
            stream_id: u64,
            remote_media: *const c_char,
            user_data: *mut c_void,
        ) -> *const c_char,
    >,
    /// Both descriptions are known: start the media.
    pub start: Option<
        unsafe extern "C" fn(
            stream_id: u64,
            local_sdp: *const c_char,
            remote_sdp: *const c_char,
            index: u32,
            user_data: *mut c_void,
        ) -> i32,
    >,
    /// A renegotiated description (may be NULL).
    pub update: Option<
        unsafe extern "C" fn(
            stream_id: u64,
            local_sdp: *const c_char,
            remote_sdp: *const c_char,
            index: u32,
            user_data: *mut c_void,
        ),
    >,
    /// Hold and unhold (may be NULL).
    pub hold: Option<unsafe extern "C" fn(stream_id: u64, user_data: *mut c_void)>,
    pub unhold: Option<unsafe extern "C" fn(stream_id: u64, user_data: *mut c_void)>,
    /// The stream is over; called exactly once per stream made.
    pub end: Option<unsafe extern "C" fn(stream_id: u64, user_data: *mut c_void)>,
}

struct CStreamHandler {
    new_from_sdp: unsafe extern "C" fn(u64, *const c_char, u32, *mut c_void) -> i32,
    new_outgoing: unsafe extern "C" fn(u64, *mut c_void) -> i32,
    initialize: unsafe extern "C" fn(u64, *const c_char, *const c_char, *mut c_void) -> i32,
    get_local_media: unsafe extern "C" fn(u64, *const c_char, *mut c_void) -> *const c_char,
    start: unsafe extern "C" fn(u64, *const c_char, *const c_char, u32, *mut c_void) -> i32,
    update: Option<unsafe extern "C" fn(u64, *const c_char, *const c_char, u32, *mut c_void)>,
    hold: Option<unsafe extern "C" fn(u64, *mut c_void)>,
    unhold: Option<unsafe extern "C" fn(u64, *mut c_void)>,
    end: unsafe extern "C" fn(u64, *mut c_void),
    user_data: UserData,
}

fn cs(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

fn code(what: &str, rc: i32) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("{what} returned {rc}"))
    }
}

// SAFETY (all calls below): the function pointers were checked non-NULL at
// registration, the strings passed are NUL-terminated and live across the
// call, and the C side promised (header contract) that the callbacks and
// user_data may be used from any library thread.
impl HostStreamHandler for CStreamHandler {
    fn new_from_sdp(&self, stream_id: u64, sdp: &str, index: u32) -> bool {
        let sdp = cs(sdp);
        unsafe { (self.new_from_sdp)(stream_id, sdp.as_ptr(), index, self.user_data.0) != 0 }
    }

    fn new_outgoing(&self, stream_id: u64) -> Result<(), String> {
        code("new_outgoing", unsafe {
            (self.new_outgoing)(stream_id, self.user_data.0)
        })
    }

    fn initialize(&self, stream_id: u64, local_ip: &str, direction: &str) -> Result<(), String> {
        let (ip, dir) = (cs(local_ip), cs(direction));
        code("initialize", unsafe {
            (self.initialize)(stream_id, ip.as_ptr(), dir.as_ptr(), self.user_data.0)
        })
    }

    fn get_local_media(&self, stream_id: u64, remote: Option<&str>) -> Result<String, String> {
        let remote = remote.map(cs);
        let p = unsafe {
            (self.get_local_media)(
                stream_id,
                remote.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
                self.user_data.0,
            )
        };
        if p.is_null() {
            return Err("get_local_media returned NULL".into());
        }
        // SAFETY: non-NULL and, per the contract, a NUL-terminated string
        // valid until the next callback for this stream.
        unsafe { CStr::from_ptr(p) }
            .to_str()
            .map(str::to_string)
            .map_err(|_| "get_local_media returned a string that is not UTF-8".to_string())
    }

    fn start(&self, stream_id: u64, local: &str, remote: &str, index: u32) -> Result<(), String> {
        let (l, r) = (cs(local), cs(remote));
        code("start", unsafe {
            (self.start)(stream_id, l.as_ptr(), r.as_ptr(), index, self.user_data.0)
        })
    }

    fn update(&self, stream_id: u64, local: &str, remote: &str, index: u32) {
        if let Some(f) = self.update {
            let (l, r) = (cs(local), cs(remote));
            unsafe { f(stream_id, l.as_ptr(), r.as_ptr(), index, self.user_data.0) }
        }
    }

    fn hold(&self, stream_id: u64) {
        if let Some(f) = self.hold {
            unsafe { f(stream_id, self.user_data.0) }
        }
    }

    fn unhold(&self, stream_id: u64) {
        if let Some(f) = self.unhold {
            unsafe { f(stream_id, self.user_data.0) }
        }
    }

    fn end(&self, stream_id: u64) {
        unsafe { (self.end)(stream_id, self.user_data.0) }
    }
}

/// Register a stream type implemented by the application, under `name`
/// (1-64 letters, digits, '-', '_', '.'). Higher `priority` is asked first
/// for an incoming m= line; `hold_supported` non-zero makes the session set
/// the direction attribute on its media section for hold. `callbacks` is
/// copied; new_from_sdp, new_outgoing, initialize, get_local_media, start
/// and end are required. A type registered again replaces the old one.
#[no_mangle]
pub extern "C" fn sipsimple_stream_type_register(
    name: *const c_char,
    priority: i32,
    hold_supported: i32,
    callbacks: *const SipsimpleStreamCallbacks,
    user_data: *mut c_void,
) -> SipsimpleStatus {
    guard(|| {
        let name = in_str(name, "name")?;
        // SAFETY: the caller passes a pointer to a filled struct, or NULL.
        let cb = unsafe { callbacks.as_ref() }
            .ok_or_else(|| FfiError::new(SipsimpleStatus::NullArgument, "callbacks is NULL"))?;
        let missing = |what: &str| {
            FfiError::new(
                SipsimpleStatus::NullArgument,
                format!("callbacks->{what} is NULL"),
            )
        };
        let handler = CStreamHandler {
            new_from_sdp: cb.new_from_sdp.ok_or_else(|| missing("new_from_sdp"))?,
            new_outgoing: cb.new_outgoing.ok_or_else(|| missing("new_outgoing"))?,
            initialize: cb.initialize.ok_or_else(|| missing("initialize"))?,
            get_local_media: cb
                .get_local_media
                .ok_or_else(|| missing("get_local_media"))?,
            start: cb.start.ok_or_else(|| missing("start"))?,
            update: cb.update,
            hold: cb.hold,
            unhold: cb.unhold,
            end: cb.end.ok_or_else(|| missing("end"))?,
            user_data: UserData(user_data),
        };
        MediaStreamRegistry::default().register(Arc::new(HostStreamType::new(
            name,
            priority,
            hold_supported != 0,
            Arc::new(handler),
        )))?;
        Ok(())
    })
}

/// Register (or replace) an MSRP message stream type built on the chat
/// stream: `name` "chat" changes the built-in chat type, another name adds
/// a type of the application's own. `media` is the m= media (NULL:
/// "message"); `accept_types` and `accept_wrapped_types` are
/// comma-separated media types (NULL: the chat defaults,
/// message/cpim, text/(any) and application/im-iscomposing+xml, and "*");
/// `attributes` holds extra SDP attributes for the stream's m= section,
/// one `name` or `name:value` per line (NULL: none), e.g.
/// "features:odf-editor". Messages go out with
/// sipsimple_session_send_message and arrive as ChatStreamGotMessage.
#[no_mangle]
pub extern "C" fn sipsimple_msrp_stream_type_register(
    name: *const c_char,
    media: *const c_char,
    accept_types: *const c_char,
    accept_wrapped_types: *const c_char,
    attributes: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let name = in_str(name, "name")?;
        let list =
            |p: *const c_char, what: &'static str| -> Result<Option<Vec<String>>, FfiError> {
                Ok(opt_str(p, what)?.map(parse_type_list))
            };
        let attributes: Vec<String> = opt_str(attributes, "attributes")?
            .map(|a| {
                a.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let config = ChatConfig::with_defaults(
            name,
            opt_str(media, "media")?,
            list(accept_types, "accept_types")?,
            list(accept_wrapped_types, "accept_wrapped_types")?,
            &attributes,
        )?;
        Ok(ChatFactory::register(config)?)
    })
}

/// Remove a stream type; running sessions keep their streams.
/// SIPSIMPLE_STATUS_NOT_FOUND if no such type is registered.
#[no_mangle]
pub extern "C" fn sipsimple_stream_type_unregister(name: *const c_char) -> SipsimpleStatus {
    guard(|| {
        let name = in_str(name, "name")?;
        if MediaStreamRegistry::default().unregister(name) {
            Ok(())
        } else {
            Err(FfiError::new(
                SipsimpleStatus::NotFound,
                format!("no stream type {name:?} is registered"),
            ))
        }
    })
}

// ---------------------------------------------------------------- accounts and settings

fn write_json(out: *mut *mut c_char, v: &serde_json::Value) -> Result<(), FfiError> {
    out_string(out, &v.to_string())
}

/// A handle to the stored account `id` of a running application
/// (SIPSIMPLE_STATUS_NOT_FOUND if there is none). Free it with
/// `sipsimple_account_free`.
#[no_mangle]
pub extern "C" fn sipsimple_application_get_account(
    application: *mut SipsimpleApplication,
    id: *const c_char,
    out: *mut *mut SipsimpleAccount,
) -> SipsimpleStatus {
    guard(|| {
        let a = app(application)?;
        let id = in_str(id, "id")?;
        let acc = a.account_manager()?.get_account(id)?;
        new_account(acc, out)
    })
}

/// Add and store an account (enabled; `password` may be NULL). It
/// activates (and registers) at its first `sipsimple_account_save`, or at
/// the next start. Returns its handle in `out`.
#[no_mangle]
pub extern "C" fn sipsimple_application_add_account(
    application: *mut SipsimpleApplication,
    id: *const c_char,
    password: *const c_char,
    out: *mut *mut SipsimpleAccount,
) -> SipsimpleStatus {
    guard(|| {
        let a = app(application)?;
        let id = in_str(id, "id")?;
        let pw = opt_str(password, "password")?;
        let acc = a.account_manager()?.add_account(id, pw)?;
        new_account(acc, out)
    })
}

/// Delete a stored account (it unregisters first, waiting up to 4 s).
#[no_mangle]
pub extern "C" fn sipsimple_application_delete_account(
    application: *mut SipsimpleApplication,
    id: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let a = app(application)?;
        let id = in_str(id, "id")?;
        Ok(a.account_manager()?.delete_account(id)?)
    })
}

/// The ids of every account, as a JSON list.
#[no_mangle]
pub extern "C" fn sipsimple_application_account_ids(
    application: *mut SipsimpleApplication,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let ids: Vec<String> = app(application)?
            .account_manager()?
            .get_accounts()
            .iter()
            .map(|a| a.id().to_string())
            .collect();
        write_json(out, &serde_json::json!(ids))
    })
}

/// The default account's id (NULL in `*out` when there is none).
#[no_mangle]
pub extern "C" fn sipsimple_application_default_account_id(
    application: *mut SipsimpleApplication,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let d = app(application)?.account_manager()?.default_account();
        match d {
            Some(a) => out_string(out, a.id()),
            None => {
                *out_ptr(out, "out")? = std::ptr::null_mut();
                Ok(())
            }
        }
    })
}

/// Make stored account `id` the default (posts
/// SIPAccountManagerDidChangeDefaultAccount).
#[no_mangle]
pub extern "C" fn sipsimple_application_set_default_account_id(
    application: *mut SipsimpleApplication,
    id: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let id = in_str(id, "id")?;
        Ok(app(application)?
            .account_manager()?
            .set_default_account(id)?)
    })
}

/// The network changed: every active account registers again now.
#[no_mangle]
pub extern "C" fn sipsimple_application_network_changed(
    application: *mut SipsimpleApplication,
) -> SipsimpleStatus {
    guard(|| Ok(app(application)?.network_changed()?))
}

/// An account's id. Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_account_id(
    account_handle: *mut SipsimpleAccount,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| out_string(out, account(account_handle)?.id()))
}

/// An account setting by dotted name (e.g. "registration.expires"), as
/// JSON. Passwords are returned as stored: keep them out of logs.
#[no_mangle]
pub extern "C" fn sipsimple_account_get(
    account_handle: *mut SipsimpleAccount,
    name: *const c_char,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let v = account(account_handle)?.get(in_str(name, "name")?)?;
        write_json(out, &v)
    })
}

/// Change an account setting; `value_json` is JSON ("600", "true",
/// "\"text\"", "[\"udp\"]", "null" to reset). Written by
/// `sipsimple_account_save`.
#[no_mangle]
pub extern "C" fn sipsimple_account_set(
    account_handle: *mut SipsimpleAccount,
    name: *const c_char,
    value_json: *const c_char,
) -> SipsimpleStatus {
    guard(|| {
        let v = crate::ffi::parse_json_value(in_str(value_json, "value_json")?)?;
        Ok(account(account_handle)?.set(in_str(name, "name")?, v)?)
    })
}

/// Write the account's changes; `*out` gets the JSON list of the names
/// that changed (CFGSettingsObjectDidChange is posted when not empty).
#[no_mangle]
pub extern "C" fn sipsimple_account_save(
    account_handle: *mut SipsimpleAccount,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let changed = account(account_handle)?.save()?;
        write_json(out, &serde_json::json!(changed))
    })
}

/// A global setting (SIPSimpleSettings) by dotted name, as JSON.
#[no_mangle]
pub extern "C" fn sipsimple_application_setting_get(
    application: *mut SipsimpleApplication,
    name: *const c_char,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let v = app(application)?.settings()?.get(in_str(name, "name")?)?;
        write_json(out, &v)
    })
}

/// Change a global setting and save it at once; `*out` gets the JSON list
/// of the names that changed. Most take effect at the next start.
#[no_mangle]
pub extern "C" fn sipsimple_application_setting_set(
    application: *mut SipsimpleApplication,
    name: *const c_char,
    value_json: *const c_char,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let s = app(application)?.settings()?;
        let v = crate::ffi::parse_json_value(in_str(value_json, "value_json")?)?;
        s.set(in_str(name, "name")?, v)?;
        let changed = s.save()?;
        write_json(out, &serde_json::json!(changed))
    })
}
