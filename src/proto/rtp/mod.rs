//! RTP (RFC 3550): packets, the receive statistics of one source, and
//! SRTP (RFC 3711).

pub mod dtmf;
pub mod jitter;
pub mod packet;
pub mod rtcp;
pub mod srtp;
pub mod stats;

pub use packet::{RtpError, RtpHeader, RtpPacket};
pub use stats::ReceiveStats;
