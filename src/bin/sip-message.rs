//! sip-message: send one instant message (SIP MESSAGE, RFC 3428), or
//! listen and print the ones that arrive.
//!
//!   sip-message [--config-dir DIR] [--account ID] [--sip-port N] [--cpim]
//!               [--max-messages N] [--json] [URI TEXT]
//!
//! With URI and TEXT it sends TEXT from the account (default: the
//! configuration's default account, else the Bonjour account) through its
//! outbound proxy, prints whether it was delivered and exits 0 if so, 1 if
//! not. Without them it registers the account (when it has a registrar)
//! and prints each incoming message as `FROM: TEXT` until Ctrl-C, SIGTERM
//! or --max-messages N messages. --cpim wraps the message in message/cpim.
//! With --json every notification is one JSON object per line on stdout.

#[path = "common/tool.rs"]
mod tool;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::json;
use sipsimple::{Account, Configuration, FileStorage, NotificationCenter, SIPApplication, Storage};

const USAGE: &str = "usage: sip-message [--config-dir DIR] [--account ID] [--sip-port N] [--cpim] \
                     [--max-messages N] [--json] [URI TEXT]";

enum Done {
    Sent(bool),
    Enough,
    Signal(i32),
}

fn run() -> Result<bool, String> {
    let mut dir = tool::default_config_dir();
    let mut account: Option<String> = None;
    let mut port: Option<u16> = None;
    let mut cpim = false;
    let mut max: Option<u64> = None;
    let mut json_out = false;
    let mut positional: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(true);
            }
            "--config-dir" => dir = args.next().ok_or("--config-dir needs a directory")?.into(),
            "--account" => account = Some(args.next().ok_or("--account needs an id")?),
            "--sip-port" => {
                port = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .ok_or("--sip-port needs a port number")?,
                )
            }
            "--cpim" => cpim = true,
            "--max-messages" => {
                max = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or("--max-messages needs a positive number")?,
                )
            }
            "--json" => json_out = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s:?}\n{USAGE}")),
            _ => positional.push(a),
        }
    }
    let send = match positional.as_slice() {
        [] => None,
        [uri, text] => Some((uri.clone(), text.clone())),
        _ => {
            return Err(format!(
                "give URI and TEXT to send, or neither to listen\n{USAGE}"
            ))
        }
    };
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::new(&dir));
    let cfg = Configuration::open(storage).map_err(|e| e.to_string())?;
    let id = account
        .or_else(|| cfg.default_account())
        .or_else(|| cfg.account_ids().into_iter().find(|i| i != "bonjour@local"));
    let mut overrides = Vec::new();
    if let Some(p) = port {
        overrides.push(("sip.udp_port", json!(p)));
        overrides.push(("sip.tcp_port", json!(p)));
    }
    let run = cfg
        .run_copy(&overrides, id.as_deref())
        .map_err(|e| e.to_string())?;

    let (tx, rx) = mpsc::channel::<Done>();
    let wanted: Arc<parking_lot::Mutex<Option<String>>> = Arc::default();
    let w2 = wanted.clone();
    let got = Arc::new(AtomicU64::new(0));
    let g2 = got.clone();
    let tx2 = tx.clone();
    let token = NotificationCenter::default().add_observer(None, None, move |n| {
        if n.name == "SIPEngineSIPTrace" {
            return;
        }
        if json_out {
            tool::print_line(&tool::json_line(n));
        }
        let d = &n.data;
        match n.name.as_str() {
            "SIPEngineGotMessage" => {
                if !json_out {
                    tool::print_line(&format!(
                        "{}: {}",
                        d.get_str("from").unwrap_or("?"),
                        d.get_str("content").unwrap_or("")
                    ));
                }
                let k = g2.fetch_add(1, Ordering::SeqCst) + 1;
                if max.is_some_and(|m| k >= m) {
                    let _ = tx2.send(Done::Enough);
                }
            }
            "SIPAccountRegistrationDidSucceed" if !json_out => tool::print_line(&format!(
                "registered {} as {}",
                d.get_str("registration").unwrap_or(""),
                d.get_str("contact_uri").unwrap_or("")
            )),
            "SIPMessageDidSucceed" | "SIPMessageDidFail" => {
                if w2.lock().as_deref() != d.get_str("message_id") {
                    return;
                }
                let ok = n.name == "SIPMessageDidSucceed";
                if !json_out {
                    tool::print_line(&format!(
                        "{} ({} {})",
                        if ok { "delivered" } else { "not delivered" },
                        d.get_i64("code").unwrap_or(0),
                        d.get_str("reason").unwrap_or("")
                    ));
                }
                let _ = tx2.send(Done::Sent(ok));
            }
            _ => {}
        }
    });
    let sig_handle = tool::on_signal(move |s| {
        let _ = tx.send(Done::Signal(s));
    })?;
    let app = SIPApplication::new();
    app.start(run).map_err(|e| e.to_string())?;
    let result = (|| {
        if let Some((uri, text)) = send {
            let acc = match &id {
                Some(i) => app.account_manager().and_then(|m| m.get_account(i)),
                None => Account::bonjour(None),
            }
            .map_err(|e| e.to_string())?;
            // The id is known before any outcome can be posted: the
            // observer waits on the same lock.
            let mut w = wanted.lock();
            let mid = app
                .session_manager()
                .and_then(|m| m.send_message(&acc, &uri, text.as_bytes(), "text/plain", cpim))
                .map_err(|e| e.to_string())?;
            *w = Some(mid);
        } else if !json_out {
            for t in ["udp", "tcp"] {
                let kind = if t == "udp" {
                    sipsimple::proto::sip::transaction::TransportKind::Udp
                } else {
                    sipsimple::proto::sip::transaction::TransportKind::Tcp
                };
                if let Some(a) = app.sip_local_address(kind) {
                    tool::print_line(&format!("listening on {t} port {}", a.port()));
                }
            }
        }
        Ok::<(), String>(())
    })();
    let ok = match result {
        Err(e) => Err(e),
        Ok(()) => Ok(match rx.recv() {
            Ok(Done::Sent(ok)) => ok,
            Ok(Done::Enough) => true,
            Ok(Done::Signal(s)) => {
                if !json_out {
                    tool::print_line(&format!("stopped by signal {s}"));
                }
                true
            }
            Err(_) => false,
        }),
    };
    app.stop();
    NotificationCenter::default().flush(Duration::from_secs(5));
    NotificationCenter::default().remove_observer(token);
    sig_handle.close();
    ok
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("sip-message: {e}");
            std::process::exit(2);
        }
    }
}
