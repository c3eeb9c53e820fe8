//! sip-register: register an account and print each outcome.
//!
//!   sip-register [--config-dir DIR] [--account ID] [--max-registers N] [--json]
//!
//! Registers the default account (or ID) and keeps the registration
//! refreshed; prints every registration outcome. With --max-registers N it
//! stops after N successful registrations (refreshes count). On Ctrl-C or
//! SIGTERM it unregisters before exiting. With --json every notification
//! is one JSON object per line on stdout. Other accounts of the
//! configuration do not register while it runs (the file is not changed).
//!
//! With `--account bonjour` it registers nothing: the Bonjour account
//! advertises this endpoint on the LAN (multicast DNS) and every neighbour
//! that comes, changes or goes is printed, until Ctrl-C or SIGTERM.

#[path = "common/tool.rs"]
mod tool;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use sipsimple::{Configuration, FileStorage, NotificationCenter, SIPApplication, Storage};

const USAGE: &str =
    "usage: sip-register [--config-dir DIR] [--account ID] [--max-registers N] [--json]";

enum Why {
    Enough,
    Signal(i32),
}

fn run() -> Result<(), String> {
    let mut dir = tool::default_config_dir();
    let mut account: Option<String> = None;
    let mut max: Option<u64> = None;
    let mut json_out = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--config-dir" => dir = args.next().ok_or("--config-dir needs a directory")?.into(),
            "--account" => account = Some(args.next().ok_or("--account needs an id")?),
            "--max-registers" => {
                max = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or("--max-registers needs a positive number")?,
                )
            }
            "--json" => json_out = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::new(&dir));
    let cfg = Configuration::open(storage).map_err(|e| e.to_string())?;
    let bonjour_id = sipsimple::api::account::BONJOUR_ID;
    let account = account.map(|a| {
        if a == "bonjour" {
            bonjour_id.to_string()
        } else {
            a
        }
    });
    let id = match account.or_else(|| cfg.default_account()) {
        Some(id) => id,
        None => cfg
            .account_ids()
            .into_iter()
            .find(|i| i != "bonjour@local")
            .ok_or_else(|| {
                format!(
                    "no account in {} (add one with sip-settings)",
                    dir.display()
                )
            })?,
    };
    let bonjour = id == bonjour_id;
    if bonjour && max.is_some() {
        return Err("--max-registers does not apply to the Bonjour account".into());
    }
    let acc = cfg.account(&id).map_err(|e| e.to_string())?;
    if !bonjour && acc.credentials().is_none() {
        eprintln!("sip-register: {id} has no auth.password; registering without credentials");
    }
    // The instance id stays the same from run to run: made (and stored in
    // the file) now, before the run's copy of the document is taken.
    let _ = acc.instance_id();
    // Run on an in-memory copy where only this account is enabled.
    let run = cfg.run_copy(&[], Some(&id)).map_err(|e| e.to_string())?;

    let (tx, rx) = mpsc::channel::<Why>();
    let successes = Arc::new(AtomicU64::new(0));
    let s2 = successes.clone();
    let tx2 = tx.clone();
    let token = NotificationCenter::default().add_observer(None, None, move |n| {
        if n.name == "SIPEngineSIPTrace" {
            return;
        }
        if json_out {
            tool::print_line(&tool::json_line(n));
        } else if n.name.starts_with("BonjourAccount") {
            let d = &n.data;
            let who = format!(
                "{}<{}> ({})",
                d.get_str("display_name")
                    .map(|s| format!("{s} "))
                    .unwrap_or_default(),
                d.get_str("uri").unwrap_or(""),
                d.get_str("neighbour").unwrap_or("")
            );
            let line = match n.name.as_str() {
                "BonjourAccountDidAddNeighbour" => format!("neighbour {who}"),
                "BonjourAccountDidUpdateNeighbour" => format!("neighbour changed {who}"),
                "BonjourAccountDidRemoveNeighbour" => format!("neighbour gone {who}"),
                _ => format!(
                    "Bonjour discovery failed: {}",
                    d.get_str("reason").unwrap_or("")
                ),
            };
            tool::print_line(&line);
        } else if n.name.starts_with("SIPAccountRegistration") {
            let d = &n.data;
            let line = match n.name.as_str() {
                "SIPAccountRegistrationDidSucceed" => format!(
                    "registered {} as {} for {} s ({} {})",
                    d.get_str("registration").unwrap_or(""),
                    d.get_str("contact_uri").unwrap_or(""),
                    d.get_i64("expires").unwrap_or(0),
                    d.get_i64("code").unwrap_or(0),
                    d.get_str("reason").unwrap_or("")
                ),
                "SIPAccountRegistrationDidFail" => format!(
                    "registration of {} failed: {} {}; next attempt in {:.1} s{}",
                    d.get_str("registration").unwrap_or(""),
                    d.get_i64("code").unwrap_or(0),
                    d.get_str("reason").unwrap_or(""),
                    d.get_f64("delay").unwrap_or(0.0),
                    d.get_str("next_route")
                        .map(|r| format!(" via {r}"))
                        .unwrap_or_default()
                ),
                _ => format!(
                    "unregistered {} ({})",
                    d.get_str("registration").unwrap_or(""),
                    d.get_str("reason").unwrap_or("")
                ),
            };
            tool::print_line(&line);
        }
        if n.name == "SIPAccountRegistrationDidSucceed" {
            let done = s2.fetch_add(1, Ordering::SeqCst) + 1;
            if max.is_some_and(|m| done >= m) {
                let _ = tx2.send(Why::Enough);
            }
        }
    });
    let sig_handle = tool::on_signal(move |s| {
        let _ = tx.send(Why::Signal(s));
    })?;
    let app = SIPApplication::new();
    app.start(run).map_err(|e| e.to_string())?;
    let why = rx.recv().unwrap_or(Why::Enough);
    // stop() deactivates the account: it unregisters (bounded wait).
    app.stop();
    NotificationCenter::default().flush(std::time::Duration::from_secs(5));
    NotificationCenter::default().remove_observer(token);
    sig_handle.close();
    if let Why::Signal(s) = why {
        if !json_out {
            tool::print_line(&format!("stopped by signal {s}"));
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("sip-register: {e}");
        std::process::exit(1);
    }
}
