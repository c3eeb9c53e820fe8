//! The two FFI layers: `c` (the C ABI behind `include/sipsimple.h`) and
//! `uniffi` (Python, Swift, Kotlin). Both are thin adapters over `crate::api`;
//! conversions both need live here once.

pub mod c;
pub mod uniffi;

use crate::api::{Error, ErrorKind};
use crate::proto::sip::transaction::TransportKind;

/// Status codes of the C ABI. Numbers are append-only: a retired code stays
/// reserved and is never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipsimpleStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// The handle is not (or no longer) a live object: freed, or never issued.
    InvalidHandle = 2,
    /// The handle is live but of another type than the function takes.
    WrongHandleType = 3,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 4,
    /// An argument is malformed or out of range.
    InvalidArgument = 5,
    /// The object's state does not allow the call; nothing changed.
    InvalidState = 6,
    /// The named thing does not exist.
    NotFound = 7,
    /// A notification field exists but has another type than asked for.
    TypeMismatch = 8,
    /// A storage backend failed, or its file is corrupt.
    Storage = 9,
    /// A local I/O error.
    Io = 10,
    /// An internal error; the message says what.
    Internal = 11,
    /// A panic was caught at the boundary; the library is still usable.
    Panic = 12,
}

/// The one mapping from the crate's public error kinds to C status codes.
pub fn status_for_kind(kind: ErrorKind) -> SipsimpleStatus {
    match kind {
        ErrorKind::InvalidArgument => SipsimpleStatus::InvalidArgument,
        ErrorKind::InvalidState => SipsimpleStatus::InvalidState,
        ErrorKind::NotFound => SipsimpleStatus::NotFound,
        ErrorKind::Storage => SipsimpleStatus::Storage,
        ErrorKind::Io => SipsimpleStatus::Io,
        _ => SipsimpleStatus::Internal,
    }
}

/// A transport named by the caller: "udp", "tcp" or "tls" (any case).
pub fn parse_transport(name: &str) -> Result<TransportKind, Error> {
    TransportKind::parse(name).ok_or_else(|| {
        Error::InvalidArgument(format!("unknown SIP transport {name:?} (udp, tcp, tls)"))
    })
}

/// The engine counters as a JSON object (the C ABI's form).
pub fn engine_stats_json(s: &crate::driver::engine::EngineStats) -> String {
    // Serializing plain integer fields cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

/// A comma-separated list of stream types ("audio,chat"), trimmed, with
/// empty items dropped.
pub fn parse_type_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// New outgoing streams of the named registered types.
pub fn streams_for_types(types: &[String]) -> Result<Vec<crate::api::StreamHandle>, Error> {
    if types.is_empty() {
        return Err(Error::InvalidArgument(
            "name at least one stream type".into(),
        ));
    }
    types
        .iter()
        .map(|t| crate::api::MediaStreamRegistry::default().create(t))
        .collect()
}

/// A setting value given as JSON text by a foreign caller.
pub fn parse_json_value(text: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::InvalidArgument(format!("value is not JSON ({e}): {text:?}")))
}
