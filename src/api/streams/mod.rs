//! The stream types built into the SDK, registered in the
//! MediaStreamRegistry at first use.

pub mod audio;
pub mod chat;
pub mod file_transfer;
pub(crate) mod msrp_base;

pub use audio::{AudioStatistics, AudioStream};
pub use chat::{ChatConfig, ChatFactory, ChatStream};
pub use file_transfer::{FileTransferFactory, FileTransferStream};
