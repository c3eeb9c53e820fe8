//! The I/O side: the tokio runtime thread, the notification thread, and (as the
//! engine grows) sockets, DNS, TLS, timers, audio devices and file I/O. It feeds
//! bytes and time into `proto/` and carries out what `proto/` asks for.

pub mod audio_device;
pub mod bonjour;
pub mod dispatch;
pub mod dns;
pub mod engine;
pub mod file_io;
pub mod ids;
pub mod msrp;
pub mod runtime;
pub mod system_audio;
pub mod tls;
pub(crate) mod transport;
pub mod waiter;
