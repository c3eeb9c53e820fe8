//! sip-settings: show and change the SDK's settings and accounts.
//!
//!   sip-settings [--config-dir DIR] [NAME ...]              show global settings
//!   sip-settings [--config-dir DIR] NAME=VALUE ...          change global settings
//!   sip-settings --account list                             list accounts
//!   sip-settings --account add ID [PASSWORD]                add an account
//!   sip-settings --account delete ID                        delete an account
//!   sip-settings --account default [ID]                     show or set the default account
//!   sip-settings --account ID [NAME ...]                    show an account's settings
//!   sip-settings --account ID NAME=VALUE ...                change an account's settings
//!
//! VALUE: true/false, numbers, text, comma-separated lists, `none` to reset.
//! Passwords are shown as `********`. The default DIR is the user's
//! configuration directory (`~/.config/sipsimple`).

#[path = "common/tool.rs"]
mod tool;

use std::sync::Arc;

use serde_json::Value;
use sipsimple::{Configuration, FileStorage};

const USAGE: &str = "usage: sip-settings [--config-dir DIR] [NAME ... | NAME=VALUE ...]
       sip-settings [--config-dir DIR] --account list | add ID [PASSWORD] | delete ID | default [ID]
       sip-settings [--config-dir DIR] --account ID [NAME ... | NAME=VALUE ...]
       sip-settings --help";

fn show(name: &str, v: &Value) -> String {
    if name.ends_with("password") && v.as_str().is_some_and(|s| !s.is_empty()) {
        return format!("{name} = ********");
    }
    format!(
        "{name} = {}",
        if v.is_null() {
            "none".to_string()
        } else {
            v.to_string()
        }
    )
}

/// Show the named settings (all known ones when none is named), or set
/// NAME=VALUE pairs and save.
fn show_or_set(
    rest: &[String],
    account: bool,
    get: impl Fn(&str) -> Result<Value, String>,
    set: impl Fn(&str, Value) -> Result<(), String>,
    save: impl Fn() -> Result<Vec<String>, String>,
) -> Result<(), String> {
    let (sets, names): (Vec<&String>, Vec<&String>) = rest.iter().partition(|a| a.contains('='));
    if !sets.is_empty() && !names.is_empty() {
        return Err("either show names or set NAME=VALUE, not both".into());
    }
    if sets.is_empty() {
        let all: Vec<String> = if names.is_empty() {
            Configuration::known(account)
                .iter()
                .map(|(n, _)| n.to_string())
                .collect()
        } else {
            names.iter().map(|s| s.to_string()).collect()
        };
        for n in all {
            println!("{}", show(&n, &get(&n)?));
        }
        return Ok(());
    }
    let table = if account {
        sipsimple::api::settings::ACCOUNT
    } else {
        sipsimple::api::settings::GLOBAL
    };
    for a in sets {
        let (n, v) = a.split_once('=').unwrap_or((a, ""));
        let v = sipsimple::api::settings::parse_value(table, n.trim(), v.trim())
            .map_err(|e| e.to_string())?;
        set(n.trim(), v)?;
    }
    let changed = save()?;
    println!(
        "changed: {}",
        if changed.is_empty() {
            "nothing".into()
        } else {
            changed.join(", ")
        }
    );
    Ok(())
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut dir = tool::default_config_dir();
    let mut account: Option<Vec<String>> = None;
    let mut rest: Vec<String> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}\n\nGlobal settings:");
                for (n, h) in Configuration::known(false) {
                    println!("  {n:28} {h}");
                }
                println!("\nAccount settings:");
                for (n, h) in Configuration::known(true) {
                    println!("  {n:28} {h}");
                }
                return Ok(());
            }
            "--config-dir" => dir = it.next().ok_or("--config-dir needs a directory")?.into(),
            "--account" => account = Some(Vec::new()),
            _ => match account.as_mut() {
                Some(acc) if rest.is_empty() && acc.is_empty() => acc.push(a),
                _ => rest.push(a),
            },
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cfg = Configuration::open(Arc::new(FileStorage::new(&dir))).map_err(|e| e.to_string())?;
    let err = |e: sipsimple::Error| e.to_string();
    match account {
        None => {
            let s = cfg.settings();
            show_or_set(
                &rest,
                false,
                |n| s.get(n).map_err(err),
                |n, v| s.set(n, v).map_err(err),
                || s.save().map_err(err),
            )?;
        }
        Some(acc) => {
            let what = acc.first().map(String::as_str).unwrap_or("list");
            match what {
                "list" => {
                    let default = cfg.default_account();
                    for id in cfg.account_ids() {
                        let a = cfg.account(&id).map_err(err)?;
                        println!(
                            "{}{} ({})",
                            id,
                            if default.as_deref() == Some(id.as_str()) {
                                " [default]"
                            } else {
                                ""
                            },
                            if a.is_enabled() {
                                "enabled"
                            } else {
                                "disabled"
                            }
                        );
                    }
                }
                "add" => {
                    let id = rest.first().ok_or("usage: --account add ID [PASSWORD]")?;
                    cfg.add_account(id, rest.get(1).map(String::as_str))
                        .map_err(err)?;
                    if cfg.default_account().is_none() {
                        cfg.set_default_account(id).map_err(err)?;
                    }
                    println!("added {id}");
                }
                "delete" => {
                    let id = rest.first().ok_or("usage: --account delete ID")?;
                    cfg.delete_account(id).map_err(err)?;
                    println!("deleted {id}");
                }
                "default" => match rest.first() {
                    Some(id) => {
                        cfg.set_default_account(id).map_err(err)?;
                        println!("default account: {id}");
                    }
                    None => println!(
                        "default account: {}",
                        cfg.default_account().unwrap_or_else(|| "none".into())
                    ),
                },
                id => {
                    let a = cfg.account(id).map_err(err)?;
                    show_or_set(
                        &rest,
                        true,
                        |n| a.get(n).map_err(err),
                        |n, v| a.set(n, v).map_err(err),
                        || a.save().map_err(err),
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(args) {
        eprintln!("sip-settings: {e}");
        std::process::exit(1);
    }
}
