//! RTP (RFC 3550): packets and the receive statistics of one source.

pub mod packet;
pub mod stats;

pub use packet::{RtpError, RtpHeader, RtpPacket};
pub use stats::ReceiveStats;
