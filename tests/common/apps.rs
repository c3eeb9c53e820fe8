//! Applications in one process for session tests: a recorder of
//! session, stream and chat notifications, and the next incoming session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sipsimple::{
    MemoryStorage, Notification, NotificationCenter, ObserverToken, SIPApplication, Session,
    Storage,
};

/// Every session and stream notification, in delivery order.
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Notification>>>,
    pub taken: Arc<Mutex<Vec<u64>>>,
}

impl Recorder {
    pub fn start() -> (Recorder, ObserverToken) {
        let r = Recorder::default();
        let seen = r.seen.clone();
        let t = NotificationCenter::default().add_observer(None, None, move |n| {
            if n.name.starts_with("SIPSession")
                || n.name.starts_with("MediaStream")
                || n.name.starts_with("ChatStream")
                || n.name.starts_with("FileTransferStream")
                || n.name.starts_with("MSRPTransport")
            {
                seen.lock().push(n.clone());
            }
        });
        (r, t)
    }

    pub fn names(&self, sender: u64) -> Vec<String> {
        self.seen
            .lock()
            .iter()
            .filter(|n| n.sender.id.0 == sender)
            .map(|n| n.name.clone())
            .filter(|n| n != "SIPSessionDidChangeState")
            .collect()
    }

    pub fn find(&self, name: &str, sender: Option<u64>) -> Option<Notification> {
        self.seen
            .lock()
            .iter()
            .find(|n| n.name == name && sender.is_none_or(|s| n.sender.id.0 == s))
            .cloned()
    }

    pub fn count(&self, name: &str, sender: u64) -> usize {
        self.seen
            .lock()
            .iter()
            .filter(|n| n.name == name && n.sender.id.0 == sender)
            .count()
    }

    pub fn wait(&self, name: &str, sender: Option<u64>) -> Notification {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(n) = self.find(name, sender) {
                return n;
            }
            assert!(Instant::now() < deadline, "no {name} within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_count(&self, name: &str, sender: u64, count: usize) {
        self.wait_count_for(name, sender, count, Duration::from_secs(10));
    }

    pub fn wait_count_for(&self, name: &str, sender: u64, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count(name, sender) < count {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} {name} within {limit:?} (have {})",
                self.count(name, sender)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every notification `name` from `sender`, in order.
    pub fn all(&self, name: &str, sender: u64) -> Vec<Notification> {
        self.seen
            .lock()
            .iter()
            .filter(|n| n.name == name && n.sender.id.0 == sender)
            .cloned()
            .collect()
    }
}

/// The next new incoming session of `app` (tests run in parallel, so the
/// recorder also sees other applications' sessions).
pub fn incoming_session(app: &SIPApplication, rec: &Recorder) -> Session {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mine = app.session_manager().unwrap().sessions();
        let taken = rec.taken.lock().clone();
        let found = rec.seen.lock().iter().find_map(|n| {
            (n.name == "SIPSessionNewIncoming" && !taken.contains(&n.sender.id.0))
                .then(|| mine.iter().find(|s| s.id() == n.sender.id).cloned())
                .flatten()
        });
        if let Some(s) = found {
            rec.taken.lock().push(s.id().0);
            return s;
        }
        assert!(Instant::now() < deadline, "no incoming session within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running application whose settings document is `doc`, kept in memory.
pub fn start_app(doc: serde_json::Value) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(doc.as_object().expect("a settings object")).unwrap();
    let app = SIPApplication::new();
    app.start(Arc::new(s)).unwrap();
    app
}
