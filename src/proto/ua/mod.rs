//! User-agent cores built on the transaction and dialog layers: the INVITE
//! session (RFC 3261 13-15, RFC 3262, RFC 3264, RFC 4028).

pub mod registration;
pub mod session;
