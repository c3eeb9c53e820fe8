//! libsipsimple: a SIP SIMPLE client SDK.
//!
//! Layers, top to bottom (arrows point down only):
//! - [`ffi`]: the C ABI (`include/sipsimple.h`) and the uniffi bindings;
//! - [`api`]: the Rust facade (`SIPApplication`, notifications, storage, ...);
//! - [`driver`]: the runtime thread, the notification thread and all I/O;
//! - [`proto`]: sans-IO protocol cores.
#![allow(clippy::upper_case_acronyms)]

pub mod api;
pub mod driver;
pub mod ffi;
pub mod proto;

pub use api::*;

uniffi::setup_scaffolding!("sipsimple");

/// The library version.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
