//! Logging. The library logs with `tracing`; Rust hosts install any subscriber
//! they like. Hosts behind an FFI call `set_log_sink` to receive log records
//! through a callback at a chosen level. Log callbacks run on the notification
//! thread, like notifications, so they never run while a library lock is held.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use once_cell::sync::OnceCell;
use parking_lot::RwLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::driver::dispatch;

/// Log levels, most severe first. `Off` disables the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl LogLevel {
    fn from_tracing(l: &Level) -> LogLevel {
        match *l {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        }
    }
    pub fn from_u8(v: u8) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Off,
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Receives log records: level, target (module path) and message.
pub type LogSink = Arc<dyn Fn(LogLevel, &str, &str) + Send + Sync + 'static>;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Off as u8);
static SINK: RwLock<Option<LogSink>> = RwLock::new(None);
static INSTALLED: OnceCell<bool> = OnceCell::new();

struct SinkLayer;

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

fn level_enabled(meta: &Metadata<'_>) -> bool {
    let max = LEVEL.load(Ordering::Relaxed);
    meta.target().starts_with("sipsimple") && (LogLevel::from_tracing(meta.level()) as u8) <= max
}

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change at run time, so ask `enabled` every time.
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        level_enabled(meta)
    }
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !level_enabled(meta) {
            return;
        }
        let Some(sink) = SINK.read().clone() else {
            return;
        };
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        let level = LogLevel::from_tracing(meta.level());
        let target = meta.target().to_owned();
        let message = v.0;
        dispatch::submit(move || sink(level, &target, &message));
    }
}

/// Send the library's log records at `level` and above to `sink` (None removes
/// it). Installs the forwarding subscriber as the process's global `tracing`
/// subscriber on first use; returns false if another global subscriber was
/// already installed (the host then receives logs through that one).
pub fn set_log_sink(sink: Option<LogSink>, level: LogLevel) -> bool {
    let installed = *INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(SinkLayer);
        tracing::subscriber::set_global_default(subscriber).is_ok()
    });
    let (start, stop) = {
        let mut current = SINK.write();
        let had = current.is_some();
        let has = sink.is_some() && level != LogLevel::Off;
        *current = if has { sink } else { None };
        (has && !had, had && !has)
    };
    if start {
        dispatch::acquire();
    }
    if stop {
        dispatch::release();
    }
    LEVEL.store(level as u8, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
    installed
}

/// The level set by the last `set_log_sink`.
pub fn log_level() -> LogLevel {
    LogLevel::from_u8(LEVEL.load(Ordering::Relaxed)).unwrap_or(LogLevel::Off)
}
