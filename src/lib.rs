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

/// The system's audio devices that can run (listed but unusable ones, like
/// the default device of a machine without a sound card, are left out);
/// use one as `audio.input_device` / `audio.output_device` `system:<name>`.
pub fn audio_devices() -> Vec<driver::audio_device::SystemDevice> {
    driver::audio_device::system_devices()
}
