//! The public Rust facade. Everything here is `Send + Sync`, takes `&self`, and
//! never blocks the caller on network I/O. Both FFI layers are thin adapters
//! over this module.

pub mod account;
pub mod accounts;
pub mod application;
pub mod engine;
pub mod error;
pub(crate) mod im;
pub mod logging;
pub mod message;
pub mod msrp;
pub mod notification;
mod ringer;
pub mod session;
pub mod settings;
pub mod storage;
pub mod stream;
pub mod streams;

pub use account::Account;
pub use accounts::AccountManager;
pub use application::{ApplicationState, SIPApplication};
pub use error::{Error, ErrorKind, Result, StorageError};
pub use logging::{set_log_sink, LogLevel, LogSink};
pub use notification::{
    Notification, NotificationCenter, NotificationData, ObjectId, ObserverToken, Sender,
};
pub use session::{Session, SessionManager, SessionState};
pub use settings::{Configuration, SIPSimpleSettings};
pub use storage::{FileStorage, MemoryStorage, Storage};
pub use stream::{
    HostStreamHandler, HostStreamType, MediaStream, MediaStreamFactory, MediaStreamRegistry,
    StreamContext, StreamFuture, StreamHandle,
};
