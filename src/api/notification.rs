//! The notification bus, as in the SDK's NotificationCenter: every object posts
//! named notifications with typed data; observers register for a name (or all)
//! and a sender (or any).
//!
//! Threading contract:
//! - delivery happens on the one notification thread (`driver::dispatch`), in
//!   the order of posting, so in order per sender;
//! - no library lock is held while an observer runs, and observers may call any
//!   API, including `remove_observer` (for themselves or others) and
//!   `SIPApplication::stop`;
//! - once `remove_observer` returns, no new callback for that observer starts
//!   (a call already running on the notification thread is waited for, unless
//!   `remove_observer` is itself called from the notification thread).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::driver::dispatch;

/// Identity of a notification sender (an application, account, session, stream...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub u64);

static NEXT_OBJECT_ID: AtomicU64 = AtomicU64::new(1);

impl ObjectId {
    /// A new process-unique id (never 0, never reused).
    pub fn new() -> ObjectId {
        ObjectId(NEXT_OBJECT_ID.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for ObjectId {
    fn default() -> Self {
        ObjectId::new()
    }
}

/// Who posted a notification: the object's id and its class name
/// ("SIPApplication", "Session", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub id: ObjectId,
    pub kind: &'static str,
}

/// The data of a notification: named fields with JSON-typed values
/// (null, bool, integer, float, string, list, map). The same fields are
/// readable from C with typed accessors or as one JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationData(BTreeMap<String, Value>);

impl NotificationData {
    pub fn new() -> Self {
        Self::default()
    }
    /// Builder-style insert.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(Value::as_i64)
    }
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(Value::as_f64)
    }
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.0.get(key).and_then(Value::as_bool)
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The data as one JSON object, keys sorted.
    pub fn to_json(&self) -> String {
        // Serialising a map of `Value`s cannot fail (no non-string keys, no I/O).
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".into())
    }
}

/// One notification.
#[derive(Debug, Clone)]
pub struct Notification {
    pub name: String,
    pub sender: Sender,
    pub timestamp: SystemTime,
    pub data: NotificationData,
}

impl Notification {
    /// Microseconds since the Unix epoch.
    pub fn timestamp_micros(&self) -> i64 {
        self.timestamp
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from {}#{} {}",
            self.name,
            self.sender.kind,
            self.sender.id.0,
            self.data.to_json()
        )
    }
}

/// Returned by `add_observer`; pass it to `remove_observer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserverToken(pub u64);

type Callback = Box<dyn Fn(&Notification) + Send + Sync + 'static>;

struct Slot {
    token: ObserverToken,
    name: Option<String>,
    sender: Option<ObjectId>,
    active: AtomicBool,
    /// Held while this observer's callback runs; `remove_observer` takes it to
    /// wait out a running call. Only this observer's removal ever contends on it.
    running: Mutex<()>,
    callback: Callback,
}

impl Slot {
    fn matches(&self, n: &Notification) -> bool {
        self.name.as_deref().is_none_or(|name| name == n.name)
            && self.sender.is_none_or(|s| s == n.sender.id)
    }
}

/// The notification bus. One process-wide instance: `NotificationCenter::default()`.
pub struct NotificationCenter {
    observers: RwLock<Vec<Arc<Slot>>>,
    next_token: AtomicU64,
}

static DEFAULT_CENTER: Lazy<NotificationCenter> = Lazy::new(|| NotificationCenter {
    observers: RwLock::new(Vec::new()),
    next_token: AtomicU64::new(1),
});

impl NotificationCenter {
    /// The process-wide notification center.
    #[allow(clippy::should_implement_trait)]
    pub fn default() -> &'static NotificationCenter {
        &DEFAULT_CENTER
    }

    /// Register `callback` for notifications named `name` (None: all names) from
    /// `sender` (None: any sender).
    pub fn add_observer(
        &self,
        name: Option<&str>,
        sender: Option<ObjectId>,
        callback: impl Fn(&Notification) + Send + Sync + 'static,
    ) -> ObserverToken {
        let token = ObserverToken(self.next_token.fetch_add(1, Ordering::Relaxed));
        let slot = Arc::new(Slot {
            token,
            name: name.map(str::to_owned),
            sender,
            active: AtomicBool::new(true),
            running: Mutex::new(()),
            callback: Box::new(callback),
        });
        self.observers.write().push(slot);
        dispatch::acquire();
        token
    }

    /// Unregister an observer. Returns false if the token is unknown (already
    /// removed). After this returns no new callback for it starts.
    pub fn remove_observer(&self, token: ObserverToken) -> bool {
        let slot = {
            let mut observers = self.observers.write();
            match observers.iter().position(|s| s.token == token) {
                Some(i) => observers.remove(i),
                None => return false,
            }
        };
        slot.active.store(false, Ordering::SeqCst);
        if !dispatch::is_dispatch_thread() {
            // Wait for a callback of this observer that is running right now.
            drop(slot.running.lock());
        }
        dispatch::release();
        true
    }

    /// Number of registered observers.
    pub fn observer_count(&self) -> usize {
        self.observers.read().len()
    }

    /// Post a notification; it is delivered asynchronously on the notification
    /// thread (and goes nowhere when no observer is registered).
    pub fn post_notification(&'static self, name: &str, sender: &Sender, data: NotificationData) {
        let n = Notification {
            name: name.to_owned(),
            sender: sender.clone(),
            timestamp: SystemTime::now(),
            data,
        };
        tracing::trace!(target: "sipsimple::notification", "post {}", n);
        dispatch::submit(move || self.deliver(&n));
    }

    fn deliver(&self, n: &Notification) {
        let targets: Vec<Arc<Slot>> = self
            .observers
            .read()
            .iter()
            .filter(|s| s.matches(n))
            .cloned()
            .collect();
        // The observer list lock is released here: callbacks run lock-free.
        for slot in targets {
            let _running = slot.running.lock();
            if !slot.active.load(Ordering::SeqCst) {
                continue;
            }
            if catch_unwind(AssertUnwindSafe(|| (slot.callback)(n))).is_err() {
                tracing::error!(target: "sipsimple::notification",
                    "observer for {} panicked; it stays registered", n.name);
            }
        }
    }

    /// Wait until every notification posted before this call has been delivered
    /// (or `timeout` passed; returns false then). Returns at once when called
    /// from inside an observer.
    pub fn flush(&self, timeout: Duration) -> bool {
        dispatch::flush(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn sender() -> Sender {
        Sender {
            id: ObjectId::new(),
            kind: "Test",
        }
    }

    #[test]
    fn filters_by_name_and_sender_and_keeps_order() {
        let nc = NotificationCenter::default();
        let (a, b) = (sender(), sender());
        let (tx, rx) = mpsc::channel();
        let t = nc.add_observer(Some("TestTick"), Some(a.id), move |n| {
            tx.send(n.data.get_i64("i").unwrap()).unwrap();
        });
        for i in 0..50 {
            nc.post_notification("TestTick", &a, NotificationData::new().with("i", i));
            nc.post_notification("TestTick", &b, NotificationData::new().with("i", 1000));
            nc.post_notification("TestOther", &a, NotificationData::new().with("i", 2000));
        }
        assert!(nc.flush(Duration::from_secs(10)));
        let got: Vec<i64> = rx.try_iter().collect();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert!(nc.remove_observer(t));
        assert!(!nc.remove_observer(t));
    }

    #[test]
    fn observer_can_remove_itself_and_others_while_firing() {
        let nc = NotificationCenter::default();
        let s = sender();
        let count = Arc::new(AtomicU64::new(0));
        let other_count = Arc::new(AtomicU64::new(0));
        let oc = other_count.clone();
        let other = nc.add_observer(None, Some(s.id), move |_| {
            oc.fetch_add(1, Ordering::SeqCst);
        });
        let token_cell = Arc::new(Mutex::new(None::<ObserverToken>));
        let (c, tc) = (count.clone(), token_cell.clone());
        // Registered after `other`, so it runs after it for the first notification.
        let me = nc.add_observer(None, Some(s.id), move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(t) = *tc.lock() {
                NotificationCenter::default().remove_observer(t);
            }
            NotificationCenter::default().remove_observer(other);
        });
        *token_cell.lock() = Some(me);
        for _ in 0..10 {
            nc.post_notification("TestSelfRemove", &s, NotificationData::new());
        }
        assert!(nc.flush(Duration::from_secs(10)));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(other_count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn no_callback_starts_after_remove_returns() {
        let nc = NotificationCenter::default();
        let s = sender();
        let removed = Arc::new(AtomicBool::new(false));
        let violated = Arc::new(AtomicBool::new(false));
        let (r, v) = (removed.clone(), violated.clone());
        let t = nc.add_observer(None, Some(s.id), move |_| {
            if r.load(Ordering::SeqCst) {
                v.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_micros(200));
        });
        for _ in 0..200 {
            nc.post_notification("TestRace", &s, NotificationData::new());
        }
        std::thread::sleep(Duration::from_millis(5));
        nc.remove_observer(t);
        removed.store(true, Ordering::SeqCst);
        assert!(nc.flush(Duration::from_secs(10)));
        assert!(!violated.load(Ordering::SeqCst));
    }

    #[test]
    fn data_accessors_and_json() {
        let d = NotificationData::new()
            .with("reason", "boom")
            .with("code", 500)
            .with("ok", false)
            .with("delay", 1.5)
            .with("list", serde_json::json!(["a", "b"]));
        assert_eq!(d.get_str("reason"), Some("boom"));
        assert_eq!(d.get_i64("code"), Some(500));
        assert_eq!(d.get_bool("ok"), Some(false));
        assert_eq!(d.get_f64("delay"), Some(1.5));
        assert_eq!(d.get_str("code"), None);
        assert_eq!(
            d.to_json(),
            r#"{"code":500,"delay":1.5,"list":["a","b"],"ok":false,"reason":"boom"}"#
        );
    }
}
