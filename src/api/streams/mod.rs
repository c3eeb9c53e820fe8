//! The stream types built into the SDK, registered in the
//! MediaStreamRegistry at first use.

pub mod audio;
pub mod chat;
pub(crate) mod msrp_base;

pub use audio::{AudioStatistics, AudioStream};
pub use chat::{ChatConfig, ChatFactory, ChatStream};
