//! SIP (RFC 3261): the message layer and, as it grows, transactions, dialogs
//! and digest authentication. Sans-IO: bytes and time in, bytes and events out.

pub mod auth;
pub mod dialog;
pub mod header;
pub mod locate;
pub mod message;
pub mod screen;
pub mod transaction;
pub mod uri;
pub mod values;

pub use header::HeaderName;
pub use message::{
    BuildError, Limits, ParseError, ParseErrorKind, SipMessage, StreamEvent, StreamFramer,
};
pub use uri::{Host, SipUri, TelUri, Uri, UriError};
