//! What the command-line tools share: the configuration directory and the
//! notification printer.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use sipsimple::{Configuration, FileStorage, MemoryStorage, Notification, Storage};

/// The user's configuration directory for the SDK:
/// `$XDG_CONFIG_HOME/sipsimple`, else `~/.config/sipsimple`.
pub fn default_config_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("sipsimple");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".config").join("sipsimple")
}

/// One notification as the JSON line of `--json`.
pub fn json_line(n: &Notification) -> String {
    let data: Value = serde_json::from_str(&n.data.to_json()).unwrap_or(Value::Null);
    json!({
        "name": n.name,
        "sender": n.sender.id.0,
        "sender_kind": n.sender.kind,
        "timestamp": n.timestamp_micros() as f64 / 1e6,
        "data": data,
    })
    .to_string()
}

pub fn print_line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// Call `on` with the number of the first SIGINT or SIGTERM (on a thread
/// of its own); close the returned handle when done watching.
pub fn on_signal(
    on: impl FnOnce(i32) + Send + 'static,
) -> Result<signal_hook::iterator::Handle, String> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot watch signals: {e}"))?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(s) = signals.forever().next() {
            on(s);
        }
    });
    Ok(handle)
}

/// The settings of one run: the configuration in `config_dir` (None: an
/// empty one in memory) with the global `overrides` applied in memory,
/// and the account to use: `account` (`bonjour` or an id of the
/// configuration), else the configuration's default; None means Bonjour.
pub fn run_settings(
    config_dir: Option<&str>,
    account: Option<&str>,
    overrides: &[(&str, Value)],
) -> Result<(Arc<dyn Storage>, Option<String>), String> {
    let storage: Arc<dyn Storage> = match config_dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{d}: {e}"))?;
            Arc::new(FileStorage::new(d))
        }
        None => Arc::new(MemoryStorage::new()),
    };
    let cfg = Configuration::open(storage).map_err(|e| e.to_string())?;
    let bonjour = |id: &str| id == "bonjour" || id == sipsimple::api::account::BONJOUR_ID;
    let id = match account {
        Some(id) if bonjour(id) => None,
        Some(id) => {
            if !cfg.account_ids().iter().any(|a| a == id) {
                return Err(format!(
                    "no account {id:?} in the configuration (add it with sip-settings)"
                ));
            }
            Some(id.to_string())
        }
        None => cfg.default_account().filter(|id| !bonjour(id)),
    };
    let run = cfg
        .run_copy(overrides, id.as_deref())
        .map_err(|e| e.to_string())?;
    Ok((run, id))
}
