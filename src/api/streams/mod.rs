//! The stream types built into the SDK, registered in the
//! MediaStreamRegistry at first use.

pub mod audio;

pub use audio::{AudioStatistics, AudioStream};
