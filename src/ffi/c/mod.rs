//! The C ABI. Every function:
//! - returns a `SipsimpleStatus`, with results in out-parameters;
//! - runs inside a panic guard, so no panic crosses the boundary;
//! - sets the thread's last error message, read with `sipsimple_last_error`.
//!
//! Threading contract (also in the generated header):
//! - every function may be called from any thread, including from inside a
//!   notification or log callback;
//! - callbacks run on the library's one notification thread, never while a
//!   library lock is held; `user_data` is passed back untouched and must be
//!   usable from that thread;
//! - once `sipsimple_notification_center_remove_observer` returns, no new
//!   callback for that observer starts;
//! - freeing a handle never blocks on the runtime thread.

// Out-parameters are written through caller-provided pointers (checked for NULL)
// as the header documents; handles are never dereferenced at all. Marking every
// exported function `unsafe` would change nothing for C callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod handles;
mod session;

pub use session::{SipsimpleAccount, SipsimpleSession, SipsimpleStreamCallbacks};

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use handles::Kind;

use crate::api::{
    self, FileStorage, LogLevel, MemoryStorage, Notification, NotificationCenter, ObjectId,
    ObserverToken, SIPApplication, Storage,
};
use crate::ffi::{status_for_kind, SipsimpleStatus};

/// An application (`SIPApplication`). Opaque.
pub struct SipsimpleApplication {
    _private: [u8; 0],
}

/// A configuration storage backend. Opaque.
pub struct SipsimpleStorage {
    _private: [u8; 0],
}

/// A notification. Opaque; valid only during the callback that received it.
pub struct SipsimpleNotification {
    _private: [u8; 0],
}

/// The type of a notification data field.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipsimpleValueType {
    Null = 0,
    Bool = 1,
    Int = 2,
    Float = 3,
    String = 4,
    /// A list or a map: read it with `sipsimple_notification_get_json`.
    Json = 5,
}

/// Called for each notification an observer registered for. `notification` is
/// valid until the callback returns.
pub type SipsimpleNotificationCallback = Option<
    unsafe extern "C" fn(notification: *const SipsimpleNotification, user_data: *mut c_void),
>;

/// Called for each log record at or above the level set. `level`: 1 error,
/// 2 warn, 3 info, 4 debug, 5 trace. The strings are valid until it returns.
pub type SipsimpleLogCallback = Option<
    unsafe extern "C" fn(
        level: u32,
        target: *const c_char,
        message: *const c_char,
        user_data: *mut c_void,
    ),
>;

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

struct FfiError {
    status: SipsimpleStatus,
    message: String,
}

impl FfiError {
    fn new(status: SipsimpleStatus, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }
}

impl From<api::Error> for FfiError {
    fn from(e: api::Error) -> Self {
        FfiError::new(status_for_kind(e.kind()), e.to_string())
    }
}

/// Handle lookup errors, named after the argument.
fn handle_err(arg: &'static str) -> impl Fn(SipsimpleStatus) -> FfiError {
    move |status| {
        let what = match status {
            SipsimpleStatus::NullArgument => "is NULL",
            SipsimpleStatus::InvalidHandle => "is not a live handle (freed or never issued)",
            SipsimpleStatus::WrongHandleType => "is a handle of another type",
            _ => "is invalid",
        };
        FfiError::new(status, format!("{arg} {what}"))
    }
}

/// The panic guard every exported function runs in.
fn guard(f: impl FnOnce() -> Result<(), FfiError>) -> SipsimpleStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            LAST_ERROR.with(|e| *e.borrow_mut() = None);
            SipsimpleStatus::Ok
        }
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal panic caught at the C boundary: {msg}"));
            SipsimpleStatus::Panic
        }
    }
}

fn out_ptr<'a, T>(p: *mut T, arg: &'static str) -> Result<&'a mut T, FfiError> {
    // SAFETY: the caller passes a pointer to writable storage for one T, or NULL,
    // which is rejected here.
    unsafe { p.as_mut() }
        .ok_or_else(|| FfiError::new(SipsimpleStatus::NullArgument, format!("{arg} is NULL")))
}

fn in_str<'a>(p: *const c_char, arg: &'static str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(FfiError::new(
            SipsimpleStatus::NullArgument,
            format!("{arg} is NULL"),
        ));
    }
    // SAFETY: the caller passes a NUL-terminated string that outlives the call.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|e| {
        FfiError::new(
            SipsimpleStatus::InvalidUtf8,
            format!("{arg} is not UTF-8: {e}"),
        )
    })
}

fn opt_str<'a>(p: *const c_char, arg: &'static str) -> Result<Option<&'a str>, FfiError> {
    if p.is_null() {
        Ok(None)
    } else {
        in_str(p, arg).map(Some)
    }
}

fn out_string(out: *mut *mut c_char, s: &str) -> Result<(), FfiError> {
    let out = out_ptr(out, "out")?;
    // Interior NULs cannot appear in a C string; they are escaped.
    let c = CString::new(s.replace('\0', "\\0")).unwrap_or_default();
    *out = c.into_raw();
    Ok(())
}

/// Wraps a C `void *` so it can travel to the notification thread. The C caller
/// promises (header contract) that it may be used from that thread.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the pointer is never dereferenced by the library, only passed back to
// the caller's callback; the caller's documented contract makes that thread-safe.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

/// The library version, e.g. "0.1.0". Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_version(out: *mut *mut c_char) -> SipsimpleStatus {
    guard(|| out_string(out, crate::version()))
}

/// The system's audio devices that can run, as a JSON array of objects
/// with `name` (use as `system:<name>` in audio.input_device /
/// audio.output_device), `description`, `input`, `output`,
/// `default_input`, `default_output`. Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_audio_devices(out: *mut *mut c_char) -> SipsimpleStatus {
    guard(|| {
        let list: Vec<serde_json::Value> = crate::audio_devices()
            .into_iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name,
                    "description": d.description,
                    "input": d.input,
                    "output": d.output,
                    "default_input": d.default_input,
                    "default_output": d.default_output,
                })
            })
            .collect();
        out_string(out, &serde_json::Value::Array(list).to_string())
    })
}

/// The message of the last failed call on this thread, or NULL in `*out` if the
/// last call succeeded. Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_last_error(out: *mut *mut c_char) -> SipsimpleStatus {
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in out_ptr; checked for NULL.
        let Some(out) = (unsafe { out.as_mut() }) else {
            return SipsimpleStatus::NullArgument;
        };
        *out = LAST_ERROR
            .with(|e| e.borrow().clone())
            .map_or(std::ptr::null_mut(), CString::into_raw);
        SipsimpleStatus::Ok
    }));
    r.unwrap_or(SipsimpleStatus::Panic)
}

/// Free a string returned by the library. NULL is allowed and ignored.
///
/// # Safety
/// `s` must be NULL or a string returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn sipsimple_string_free(s: *mut c_char) -> SipsimpleStatus {
    guard(|| {
        if !s.is_null() {
            // SAFETY: per the contract, `s` came from CString::into_raw here.
            drop(unsafe { CString::from_raw(s) });
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- storage

fn new_storage(st: Arc<dyn Storage>, out: *mut *mut SipsimpleStorage) -> Result<(), FfiError> {
    let out = out_ptr(out, "out")?;
    *out = handles::insert(Kind::Storage, Arc::new(st));
    Ok(())
}

/// A storage that keeps the configuration in `<directory>/config.json`.
#[no_mangle]
pub extern "C" fn sipsimple_storage_new_file(
    directory: *const c_char,
    out: *mut *mut SipsimpleStorage,
) -> SipsimpleStatus {
    guard(|| {
        let dir = in_str(directory, "directory")?;
        if dir.is_empty() {
            return Err(FfiError::new(
                SipsimpleStatus::InvalidArgument,
                "directory is empty",
            ));
        }
        new_storage(Arc::new(FileStorage::new(dir)), out)
    })
}

/// A storage that keeps the configuration in memory only.
#[no_mangle]
pub extern "C" fn sipsimple_storage_new_memory(out: *mut *mut SipsimpleStorage) -> SipsimpleStatus {
    guard(|| new_storage(Arc::new(MemoryStorage::new()), out))
}

/// Free a storage handle. An application started with it keeps its own reference.
#[no_mangle]
pub extern "C" fn sipsimple_storage_free(storage: *mut SipsimpleStorage) -> SipsimpleStatus {
    guard(|| {
        handles::remove(storage, Kind::Storage).map_err(handle_err("storage"))?;
        Ok(())
    })
}

// ---------------------------------------------------------------- application

fn app(h: *const SipsimpleApplication) -> Result<Arc<SIPApplication>, FfiError> {
    handles::get(h, Kind::Application).map_err(handle_err("application"))
}

/// Create a stopped application.
#[no_mangle]
pub extern "C" fn sipsimple_application_new(
    out: *mut *mut SipsimpleApplication,
) -> SipsimpleStatus {
    guard(|| {
        let out = out_ptr(out, "out")?;
        *out = handles::insert(Kind::Application, Arc::new(SIPApplication::new()));
        Ok(())
    })
}

/// Start the application with `storage`. Posts SIPApplicationWillStart and
/// SIPApplicationDidStart, or SIPApplicationDidFail and SIPApplicationDidEnd
/// (then returns an error). SIPSIMPLE_STATUS_INVALID_STATE if already started.
#[no_mangle]
pub extern "C" fn sipsimple_application_start(
    application: *mut SipsimpleApplication,
    storage: *mut SipsimpleStorage,
) -> SipsimpleStatus {
    guard(|| {
        let a = app(application)?;
        let st: Arc<Arc<dyn Storage>> =
            handles::get(storage, Kind::Storage).map_err(handle_err("storage"))?;
        a.start(Arc::clone(&st))?;
        Ok(())
    })
}

/// Stop the application: ends everything and joins the runtime thread. A no-op
/// if not started. Allowed from inside a callback. Called outside a callback, it
/// returns after SIPApplicationDidEnd has been delivered.
#[no_mangle]
pub extern "C" fn sipsimple_application_stop(
    application: *mut SipsimpleApplication,
) -> SipsimpleStatus {
    guard(|| {
        app(application)?.stop();
        Ok(())
    })
}

/// The state: "stopped", "starting", "started" or "stopping". Free with
/// `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_application_state(
    application: *mut SipsimpleApplication,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| out_string(out, app(application)?.state().as_str()))
}

/// The sender id of the application's notifications (for observer filters).
#[no_mangle]
pub extern "C" fn sipsimple_application_id(
    application: *mut SipsimpleApplication,
    out: *mut u64,
) -> SipsimpleStatus {
    guard(|| {
        let id = app(application)?.id().0;
        *out_ptr(out, "out")? = id;
        Ok(())
    })
}

/// The SIP engine's counters as a JSON object (messages, retransmissions,
/// parse errors, connections, ...). InvalidState when not running. Free with
/// `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_application_engine_statistics(
    application: *mut SipsimpleApplication,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let stats = app(application)?.engine_statistics().ok_or_else(|| {
            FfiError::new(
                SipsimpleStatus::InvalidState,
                "SIPApplication is not running",
            )
        })?;
        out_string(out, &super::engine_stats_json(&stats))
    })
}

/// The port a SIP transport ("udp", "tcp") listens on. NotFound when that
/// transport is not listening (not running, or not in sip.transport_list).
#[no_mangle]
pub extern "C" fn sipsimple_application_sip_local_port(
    application: *mut SipsimpleApplication,
    transport: *const c_char,
    out: *mut u32,
) -> SipsimpleStatus {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let t = super::parse_transport(in_str(transport, "transport")?)?;
        let addr = app(application)?.sip_local_address(t).ok_or_else(|| {
            FfiError::new(SipsimpleStatus::NotFound, "that transport is not listening")
        })?;
        *out = u32::from(addr.port());
        Ok(())
    })
}

/// Turn SIPEngineSIPTrace notifications on (non-zero) or off (0).
/// InvalidState when not running.
#[no_mangle]
pub extern "C" fn sipsimple_application_set_sip_trace(
    application: *mut SipsimpleApplication,
    on: i32,
) -> SipsimpleStatus {
    guard(|| Ok(app(application)?.set_sip_trace(on != 0)?))
}

/// The sender id of the engine's notifications (SIPEngineSIPTrace).
/// InvalidState when not running.
#[no_mangle]
pub extern "C" fn sipsimple_application_engine_id(
    application: *mut SipsimpleApplication,
    out: *mut u64,
) -> SipsimpleStatus {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let id = app(application)?.engine_id().ok_or_else(|| {
            FfiError::new(
                SipsimpleStatus::InvalidState,
                "SIPApplication is not running",
            )
        })?;
        *out = id.0;
        Ok(())
    })
}

/// Free the handle. A running application is stopped without waiting (use
/// `sipsimple_application_stop` first for an orderly stop).
#[no_mangle]
pub extern "C" fn sipsimple_application_free(
    application: *mut SipsimpleApplication,
) -> SipsimpleStatus {
    guard(|| {
        handles::remove(application, Kind::Application).map_err(handle_err("application"))?;
        Ok(())
    })
}

// ---------------------------------------------------------------- notifications

/// Register `callback` for notifications named `name` (NULL: every name) from the
/// sender with id `sender_id` (0: any sender). `*out_token` identifies the
/// registration for `sipsimple_notification_center_remove_observer`.
#[no_mangle]
pub extern "C" fn sipsimple_notification_center_add_observer(
    name: *const c_char,
    sender_id: u64,
    callback: SipsimpleNotificationCallback,
    user_data: *mut c_void,
    out_token: *mut u64,
) -> SipsimpleStatus {
    guard(|| {
        let name = opt_str(name, "name")?;
        let out_token = out_ptr(out_token, "out_token")?;
        let cb = callback
            .ok_or_else(|| FfiError::new(SipsimpleStatus::NullArgument, "callback is NULL"))?;
        let ud = UserData(user_data);
        let sender = (sender_id != 0).then_some(ObjectId(sender_id));
        let token = NotificationCenter::default().add_observer(name, sender, move |n| {
            let ud = ud;
            let h: *mut SipsimpleNotification =
                handles::insert(Kind::Notification, Arc::new(n.clone()));
            // SAFETY: `cb` is the caller's function; the handle is valid during the call.
            unsafe { cb(h, ud.0) };
            let _ = handles::remove(h, Kind::Notification);
        });
        *out_token = token.0;
        Ok(())
    })
}

/// Remove a registration. SIPSIMPLE_STATUS_NOT_FOUND if the token is unknown.
/// After this returns no new callback for it starts.
#[no_mangle]
pub extern "C" fn sipsimple_notification_center_remove_observer(token: u64) -> SipsimpleStatus {
    guard(|| {
        if NotificationCenter::default().remove_observer(ObserverToken(token)) {
            Ok(())
        } else {
            Err(FfiError::new(
                SipsimpleStatus::NotFound,
                format!("no observer with token {token}"),
            ))
        }
    })
}

/// Wait up to `timeout_ms` until every notification posted so far has been
/// delivered. SIPSIMPLE_STATUS_IO on timeout. Returns at once inside a callback.
#[no_mangle]
pub extern "C" fn sipsimple_notification_center_flush(timeout_ms: u64) -> SipsimpleStatus {
    guard(|| {
        if NotificationCenter::default().flush(Duration::from_millis(timeout_ms)) {
            Ok(())
        } else {
            Err(FfiError::new(
                SipsimpleStatus::Io,
                "timed out waiting for notifications",
            ))
        }
    })
}

fn notification(h: *const SipsimpleNotification) -> Result<Arc<Notification>, FfiError> {
    handles::get(h, Kind::Notification).map_err(handle_err("notification"))
}

fn field(n: &Notification, key: *const c_char) -> Result<&serde_json::Value, FfiError> {
    let key = in_str(key, "key")?;
    n.data.get(key).ok_or_else(|| {
        FfiError::new(
            SipsimpleStatus::NotFound,
            format!("{} has no field '{key}'", n.name),
        )
    })
}

fn mismatch(n: &Notification, key: *const c_char, want: &str) -> FfiError {
    let key = in_str(key, "key").unwrap_or("?");
    FfiError::new(
        SipsimpleStatus::TypeMismatch,
        format!("{}.{key} is not {want}", n.name),
    )
}

/// Read field `key` of `n` with `extract`, writing it to `out`; a field of
/// another type is SIPSIMPLE_STATUS_TYPE_MISMATCH naming `want`.
fn typed_field<T>(
    n: *const SipsimpleNotification,
    key: *const c_char,
    out: *mut T,
    want: &str,
    extract: impl Fn(&serde_json::Value) -> Option<T>,
) -> SipsimpleStatus {
    guard(|| {
        let n = notification(n)?;
        let v = extract(field(&n, key)?).ok_or_else(|| mismatch(&n, key, want))?;
        *out_ptr(out, "out")? = v;
        Ok(())
    })
}

/// The notification's name, e.g. "SIPApplicationDidStart". Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_notification_name(
    n: *const SipsimpleNotification,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| out_string(out, &notification(n)?.name))
}

/// The sender's id (as from `sipsimple_application_id`).
#[no_mangle]
pub extern "C" fn sipsimple_notification_sender_id(
    n: *const SipsimpleNotification,
    out: *mut u64,
) -> SipsimpleStatus {
    guard(|| {
        let id = notification(n)?.sender.id.0;
        *out_ptr(out, "out")? = id;
        Ok(())
    })
}

/// The sender's class, e.g. "SIPApplication". Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_notification_sender_kind(
    n: *const SipsimpleNotification,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| out_string(out, notification(n)?.sender.kind))
}

/// When the notification was posted, in microseconds since the Unix epoch.
#[no_mangle]
pub extern "C" fn sipsimple_notification_timestamp(
    n: *const SipsimpleNotification,
    out: *mut i64,
) -> SipsimpleStatus {
    guard(|| {
        let ts = notification(n)?.timestamp_micros();
        *out_ptr(out, "out")? = ts;
        Ok(())
    })
}

/// All data fields as one JSON object (keys sorted). Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_notification_data_json(
    n: *const SipsimpleNotification,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| out_string(out, &notification(n)?.data.to_json()))
}

/// The type of field `key`; SIPSIMPLE_STATUS_NOT_FOUND if there is none.
#[no_mangle]
pub extern "C" fn sipsimple_notification_field_type(
    n: *const SipsimpleNotification,
    key: *const c_char,
    out: *mut SipsimpleValueType,
) -> SipsimpleStatus {
    use serde_json::Value;
    guard(|| {
        let n = notification(n)?;
        let t = match field(&n, key)? {
            Value::Null => SipsimpleValueType::Null,
            Value::Bool(_) => SipsimpleValueType::Bool,
            Value::Number(x) if x.is_f64() => SipsimpleValueType::Float,
            Value::Number(_) => SipsimpleValueType::Int,
            Value::String(_) => SipsimpleValueType::String,
            Value::Array(_) | Value::Object(_) => SipsimpleValueType::Json,
        };
        *out_ptr(out, "out")? = t;
        Ok(())
    })
}

/// A string field. Free `*out` with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_notification_get_string(
    n: *const SipsimpleNotification,
    key: *const c_char,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let n = notification(n)?;
        let s = field(&n, key)?
            .as_str()
            .ok_or_else(|| mismatch(&n, key, "a string"))?;
        out_string(out, s)
    })
}

/// An integer field.
#[no_mangle]
pub extern "C" fn sipsimple_notification_get_int(
    n: *const SipsimpleNotification,
    key: *const c_char,
    out: *mut i64,
) -> SipsimpleStatus {
    typed_field(n, key, out, "an integer", serde_json::Value::as_i64)
}

/// A number field (integers convert).
#[no_mangle]
pub extern "C" fn sipsimple_notification_get_float(
    n: *const SipsimpleNotification,
    key: *const c_char,
    out: *mut f64,
) -> SipsimpleStatus {
    typed_field(n, key, out, "a number", serde_json::Value::as_f64)
}

/// A boolean field, as 0 or 1.
#[no_mangle]
pub extern "C" fn sipsimple_notification_get_bool(
    n: *const SipsimpleNotification,
    key: *const c_char,
    out: *mut i32,
) -> SipsimpleStatus {
    typed_field(n, key, out, "a boolean", |v| v.as_bool().map(i32::from))
}

/// Any field (lists and maps included) as JSON. Free with `sipsimple_string_free`.
#[no_mangle]
pub extern "C" fn sipsimple_notification_get_json(
    n: *const SipsimpleNotification,
    key: *const c_char,
    out: *mut *mut c_char,
) -> SipsimpleStatus {
    guard(|| {
        let n = notification(n)?;
        let v = field(&n, key)?;
        out_string(out, &v.to_string())
    })
}

// ---------------------------------------------------------------- logging

/// Send log records at `level` and above (0 off, 1 error ... 5 trace) to
/// `callback`, on the notification thread. A NULL callback removes it.
#[no_mangle]
pub extern "C" fn sipsimple_set_log_callback(
    callback: SipsimpleLogCallback,
    user_data: *mut c_void,
    level: u32,
) -> SipsimpleStatus {
    guard(|| {
        let lvl = u8::try_from(level)
            .ok()
            .and_then(LogLevel::from_u8)
            .ok_or_else(|| {
                FfiError::new(
                    SipsimpleStatus::InvalidArgument,
                    format!("log level {level} is not 0..5"),
                )
            })?;
        let ud = UserData(user_data);
        let sink = callback.map(|cb| -> api::LogSink {
            Arc::new(move |level: LogLevel, target: &str, message: &str| {
                let ud = ud;
                let t = CString::new(target.replace('\0', "\\0")).unwrap_or_default();
                let m = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
                // SAFETY: the caller's function, with strings valid for the call.
                unsafe { cb(level as u32, t.as_ptr(), m.as_ptr(), ud.0) };
            })
        });
        api::set_log_sink(sink, lvl);
        Ok(())
    })
}
