//! The uniffi facade behind the Python, Swift and Kotlin bindings: the same API
//! as the C ABI, as objects, records, errors and foreign traits. Thin adapters
//! over `crate::api` only.

mod session;

use std::sync::Arc;
use std::time::Duration;

pub use session::{Account, Session, StreamHandler};

use crate::api::{
    self, LogLevel as CoreLogLevel, Notification as CoreNotification, ObjectId, ObserverToken,
};

/// Errors raised to Python/Swift/Kotlin: one variant per public error kind,
/// carrying the message (a flat error, so each language sees its own native
/// exception message).
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum SipSimpleError {
    #[error("{message}")]
    InvalidArgument { message: String },
    #[error("{message}")]
    InvalidState { message: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("{message}")]
    Storage { message: String },
    #[error("{message}")]
    Io { message: String },
    #[error("{message}")]
    Internal { message: String },
}

impl From<api::Error> for SipSimpleError {
    fn from(e: api::Error) -> Self {
        let message = e.to_string();
        match e.kind() {
            api::ErrorKind::InvalidArgument => SipSimpleError::InvalidArgument { message },
            api::ErrorKind::InvalidState => SipSimpleError::InvalidState { message },
            api::ErrorKind::NotFound => SipSimpleError::NotFound { message },
            api::ErrorKind::Storage => SipSimpleError::Storage { message },
            api::ErrorKind::Io => SipSimpleError::Io { message },
            _ => SipSimpleError::Internal { message },
        }
    }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for SipSimpleError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        SipSimpleError::Internal {
            message: format!("callback failed: {}", e.reason),
        }
    }
}

/// The library version.
#[uniffi::export]
pub fn version() -> String {
    crate::version().to_owned()
}

/// A system audio device that can run.
#[derive(Debug, Clone, uniffi::Record)]
pub struct AudioDevice {
    /// Use as `system:<name>` in audio.input_device / audio.output_device.
    pub name: String,
    pub description: String,
    pub input: bool,
    pub output: bool,
    pub default_input: bool,
    pub default_output: bool,
}

/// The system's audio devices that can run.
#[uniffi::export]
pub fn audio_devices() -> Vec<AudioDevice> {
    crate::audio_devices()
        .into_iter()
        .map(|d| AudioDevice {
            name: d.name,
            description: d.description,
            input: d.input,
            output: d.output,
            default_input: d.default_input,
            default_output: d.default_output,
        })
        .collect()
}

/// Where the configuration is kept: `Storage.file(directory)` or `Storage.memory()`.
#[derive(uniffi::Object)]
pub struct Storage {
    inner: Arc<dyn api::Storage>,
}

#[uniffi::export]
impl Storage {
    /// Keep the configuration as JSON in `<directory>/config.json` (atomic writes).
    #[uniffi::constructor]
    pub fn file(directory: String) -> Result<Arc<Self>, SipSimpleError> {
        if directory.is_empty() {
            return Err(SipSimpleError::InvalidArgument {
                message: "directory is empty".into(),
            });
        }
        Ok(Arc::new(Storage {
            inner: Arc::new(api::FileStorage::new(directory)),
        }))
    }

    /// Keep the configuration in memory only.
    #[uniffi::constructor]
    pub fn memory() -> Arc<Self> {
        Arc::new(Storage {
            inner: Arc::new(api::MemoryStorage::new()),
        })
    }

    /// Where the data lives ("memory" or a file path).
    pub fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// The application: starts and stops the SIP user agent's subsystems.
#[derive(uniffi::Object)]
pub struct SIPApplication {
    inner: api::SIPApplication,
}

#[uniffi::export]
impl SIPApplication {
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(SIPApplication {
            inner: api::SIPApplication::new(),
        })
    }

    /// Start with `storage`; SIPApplicationWillStart, SIPApplicationDidStart
    /// (or SIPApplicationDidFail and SIPApplicationDidEnd, and an error).
    pub fn start(&self, storage: Arc<Storage>) -> Result<(), SipSimpleError> {
        Ok(self.inner.start(storage.inner.clone())?)
    }

    /// Stop everything and join the runtime thread; a no-op when not started.
    pub fn stop(&self) {
        self.inner.stop()
    }

    /// "stopped", "starting", "started" or "stopping".
    pub fn state(&self) -> String {
        self.inner.state().as_str().to_owned()
    }

    /// The sender id of this application's notifications.
    pub fn id(&self) -> u64 {
        self.inner.id().0
    }

    /// The SIP engine's counters, while running.
    pub fn engine_statistics(&self) -> Option<EngineStatistics> {
        self.inner.engine_statistics().map(EngineStatistics::from)
    }

    /// The port a SIP transport ("udp", "tcp") listens on, while running.
    pub fn sip_local_port(&self, transport: String) -> Result<Option<u16>, SipSimpleError> {
        let t = crate::ffi::parse_transport(&transport)?;
        Ok(self.inner.sip_local_address(t).map(|a| a.port()))
    }

    /// Turn SIPEngineSIPTrace notifications on or off.
    pub fn set_sip_trace(&self, on: bool) -> Result<(), SipSimpleError> {
        Ok(self.inner.set_sip_trace(on)?)
    }

    /// The sender id of the engine's notifications, while running.
    pub fn engine_id(&self) -> Option<u64> {
        self.inner.engine_id().map(|i| i.0)
    }
}

/// Counters of the SIP engine.
#[derive(Debug, Clone, uniffi::Record)]
pub struct EngineStatistics {
    pub requests_in: u64,
    pub responses_in: u64,
    pub messages_out: u64,
    pub retransmissions_sent: u64,
    pub retransmissions_received: u64,
    pub stray_responses: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    pub live_transactions: u64,
    pub parse_errors: u64,
    pub bad_requests_answered: u64,
    pub send_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_open: u64,
    pub connections_refused: u64,
    pub keepalive_pongs: u64,
    pub keepalive_failures: u64,
}

impl From<crate::driver::engine::EngineStats> for EngineStatistics {
    fn from(s: crate::driver::engine::EngineStats) -> Self {
        EngineStatistics {
            requests_in: s.transactions.requests_in,
            responses_in: s.transactions.responses_in,
            messages_out: s.transactions.messages_out,
            retransmissions_sent: s.transactions.retransmissions_sent,
            retransmissions_received: s.transactions.retransmissions_received,
            stray_responses: s.transactions.stray_responses,
            timeouts: s.transactions.timeouts,
            transport_errors: s.transactions.transport_errors,
            live_transactions: s.live_transactions as u64,
            parse_errors: s.parse_errors,
            bad_requests_answered: s.bad_requests_answered,
            send_errors: s.send_errors,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            connections_open: s.connections_open as u64,
            connections_refused: s.connections_refused,
            keepalive_pongs: s.keepalive_pongs,
            keepalive_failures: s.keepalive_failures,
        }
    }
}

/// A notification: name, sender, timestamp and named data fields.
#[derive(uniffi::Object)]
pub struct Notification {
    inner: CoreNotification,
}

#[uniffi::export]
impl Notification {
    pub fn name(&self) -> String {
        self.inner.name.clone()
    }
    pub fn sender_id(&self) -> u64 {
        self.inner.sender.id.0
    }
    /// The sender's class, e.g. "SIPApplication".
    pub fn sender_kind(&self) -> String {
        self.inner.sender.kind.to_owned()
    }
    /// Microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> i64 {
        self.inner.timestamp_micros()
    }
    /// All data fields as one JSON object (keys sorted).
    pub fn data_json(&self) -> String {
        self.inner.data.to_json()
    }
    pub fn keys(&self) -> Vec<String> {
        self.inner.data.keys().map(str::to_owned).collect()
    }
    pub fn get_string(&self, key: String) -> Option<String> {
        self.inner.data.get_str(&key).map(str::to_owned)
    }
    pub fn get_int(&self, key: String) -> Option<i64> {
        self.inner.data.get_i64(&key)
    }
    pub fn get_float(&self, key: String) -> Option<f64> {
        self.inner.data.get_f64(&key)
    }
    pub fn get_bool(&self, key: String) -> Option<bool> {
        self.inner.data.get_bool(&key)
    }
    /// Any field (lists and maps included) as JSON.
    pub fn get_json(&self, key: String) -> Option<String> {
        self.inner.data.get(&key).map(|v| v.to_string())
    }
}

/// Implemented by the application to receive notifications. Called on the
/// library's notification thread.
#[uniffi::export(with_foreign)]
pub trait NotificationObserver: Send + Sync {
    fn handle_notification(&self, notification: Arc<Notification>);
}

/// The notification bus (one per process; every instance is the same bus).
#[derive(uniffi::Object)]
pub struct NotificationCenter;

#[uniffi::export]
impl NotificationCenter {
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(NotificationCenter)
    }

    /// Register `observer` for `name` (None: all) from `sender_id` (None: any).
    /// Returns a token for `remove_observer`.
    pub fn add_observer(
        &self,
        observer: Arc<dyn NotificationObserver>,
        name: Option<String>,
        sender_id: Option<u64>,
    ) -> u64 {
        api::NotificationCenter::default()
            .add_observer(name.as_deref(), sender_id.map(ObjectId), move |n| {
                observer.handle_notification(Arc::new(Notification { inner: n.clone() }))
            })
            .0
    }

    /// Remove a registration; false if the token is unknown. After it returns
    /// no new callback for that observer starts.
    pub fn remove_observer(&self, token: u64) -> bool {
        api::NotificationCenter::default().remove_observer(ObserverToken(token))
    }

    /// Wait up to `timeout_ms` for every notification posted so far to be delivered.
    pub fn flush(&self, timeout_ms: u64) -> bool {
        api::NotificationCenter::default().flush(Duration::from_millis(timeout_ms))
    }
}

#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for CoreLogLevel {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Off => CoreLogLevel::Off,
            LogLevel::Error => CoreLogLevel::Error,
            LogLevel::Warn => CoreLogLevel::Warn,
            LogLevel::Info => CoreLogLevel::Info,
            LogLevel::Debug => CoreLogLevel::Debug,
            LogLevel::Trace => CoreLogLevel::Trace,
        }
    }
}

impl From<CoreLogLevel> for LogLevel {
    fn from(l: CoreLogLevel) -> Self {
        match l {
            CoreLogLevel::Off => LogLevel::Off,
            CoreLogLevel::Error => LogLevel::Error,
            CoreLogLevel::Warn => LogLevel::Warn,
            CoreLogLevel::Info => LogLevel::Info,
            CoreLogLevel::Debug => LogLevel::Debug,
            CoreLogLevel::Trace => LogLevel::Trace,
        }
    }
}

/// Receives the library's log records, on the notification thread.
#[uniffi::export(with_foreign)]
pub trait LogSink: Send + Sync {
    fn log(&self, level: LogLevel, target: String, message: String);
}

/// Send log records at `level` and above to `sink` (None removes it).
#[uniffi::export]
pub fn set_log_sink(sink: Option<Arc<dyn LogSink>>, level: LogLevel) {
    let sink = sink.map(|s| -> api::LogSink {
        Arc::new(move |l: CoreLogLevel, t: &str, m: &str| {
            s.log(l.into(), t.to_owned(), m.to_owned())
        })
    });
    api::set_log_sink(sink, level.into());
}
