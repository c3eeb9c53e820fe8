//! Account tests' shared pieces: a log of account notifications and an
//! application started on in-memory settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use sipsimple::{
    MemoryStorage, Notification, NotificationCenter, ObserverToken, SIPApplication, Storage,
};

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<(String, String, Value)>>>);

impl Log {
    /// Record account notifications: (name, account id, data).
    pub fn start() -> (Log, ObserverToken) {
        let log = Log::default();
        let l = log.clone();
        let tok =
            NotificationCenter::default().add_observer(None, None, move |n: &Notification| {
                if n.name.starts_with("SIPAccount") || n.name == "CFGSettingsObjectDidChange" {
                    let data: Value =
                        serde_json::from_str(&n.data.to_json()).unwrap_or(Value::Null);
                    let who = data["registration"]
                        .as_str()
                        .or(data["account"].as_str())
                        .unwrap_or("")
                        .to_string();
                    l.0.lock().push((n.name.clone(), who, data));
                }
            });
        (log, tok)
    }

    pub fn all(&self, name: &str, who: &str) -> Vec<Value> {
        self.0
            .lock()
            .iter()
            .filter(|(n, w, _)| n == name && w == who)
            .map(|(_, _, d)| d.clone())
            .collect()
    }

    pub fn wait(&self, name: &str, who: &str, count: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.all(name, who);
            if v.len() >= count {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {count} x {name} for {who} in {secs} s; saw {:?}",
                self.0
                    .lock()
                    .iter()
                    .map(|(n, w, _)| format!("{n} {w}"))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An application listening on UDP and TCP with these accounts.
pub fn app(accounts: Value) -> SIPApplication {
    app_with(json!({}), accounts)
}

/// An application with these global settings (on top of UDP and TCP)
/// and accounts.
pub fn app_with(global: Value, accounts: Value) -> SIPApplication {
    let mut doc = json!({"sip": {"transport_list": ["udp", "tcp"]}, "accounts": accounts});
    if let (Some(d), Some(g)) = (doc.as_object_mut(), global.as_object()) {
        for (k, v) in g {
            d.insert(k.clone(), v.clone());
        }
    }
    let s = MemoryStorage::new();
    s.save(doc.as_object().unwrap()).unwrap();
    let a = SIPApplication::new();
    a.start(Arc::new(s)).unwrap();
    a
}
