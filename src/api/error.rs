//! The crate error and the small public set of kinds both FFIs expose.

use std::path::PathBuf;

/// What a caller can act on. Both FFI layers map these, and only these, to
/// their status codes and exception types (`src/ffi/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument was malformed or out of range.
    InvalidArgument,
    /// The object is in a state where the call is not allowed; nothing changed.
    InvalidState,
    /// The named thing does not exist.
    NotFound,
    /// A storage backend could not read or write, or its data is corrupt.
    Storage,
    /// A local I/O error (sockets, files, threads).
    Io,
    /// Something that should not happen did; the message says what.
    Internal,
}

/// Errors from the storage backends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({reason}); it is left untouched")]
    Corrupt { path: PathBuf, reason: String },
}

/// The crate error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::InvalidState(_) => ErrorKind::InvalidState,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Storage(_) => ErrorKind::Storage,
            Error::Io { .. } => ErrorKind::Io,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
