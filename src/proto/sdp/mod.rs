//! SDP (RFC 8866): the session description model, a strict parser that says
//! what is wrong and where, a printer, and the RFC 3264 offer/answer rules.
//!
//! Values we do not interpret (attributes, bandwidth types, formats) are kept
//! verbatim and in order, so a description printed after parsing says the
//! same thing it said on the way in.

pub mod file_transfer;
mod fingerprint;
mod model;
pub mod offer_answer;
mod parse;

pub use fingerprint::{Fingerprint, FingerprintError, HashFunction};
pub use model::{
    AddrType, Attribute, Bandwidth, Connection, Direction, MediaDescription, Origin, RtpMap,
    SessionDescription, Setup, Timing,
};
pub use parse::SdpError;

/// Limits that bound what one description may hold.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// More media sections than any real offer carries.
pub const MAX_MEDIA: usize = 64;
