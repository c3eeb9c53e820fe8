//! sip-settings and sip-register as a user runs them, against Kamailio on
//! 127.0.0.1: add an account, set its settings, make it the default,
//! register twice and exit (unregistering), register until SIGTERM, and a
//! corrupt settings file reported by name and left untouched.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kamailio::{kamailio_available, start};
use common::sipp::free_port;
use serde_json::Value;

fn settings(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sip-settings"))
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("sip-settings runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn configure(dir: &Path, kport: u16) {
    let (ok, out, err) = settings(dir, &["--account", "add", "carol@127.0.0.1", "carolpass"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = settings(
        dir,
        &[
            "--account",
            "carol@127.0.0.1",
            "registration.expires=10",
            &format!("sip.register_uri=sip:127.0.0.1:{kport}"),
            "sip.transport_list=udp",
            "display_name=Carol",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("registration.expires"), "{out}");
    let (ok, out, _) = settings(dir, &["--account", "default"]);
    assert!(ok && out.contains("carol@127.0.0.1"), "{out}");
    let (ok, out, _) = settings(dir, &["--account", "carol@127.0.0.1", "auth.password"]);
    assert!(
        ok && out.contains("********") && !out.contains("carolpass"),
        "{out}"
    );
    let (ok, out, _) = settings(dir, &["--account", "list"]);
    assert!(
        ok && out.contains("carol@127.0.0.1 [default] (enabled)"),
        "{out}"
    );
    // Bad names and values are refused with a message.
    let (ok, _, err) = settings(
        dir,
        &["--account", "carol@127.0.0.1", "registration.expires=soon"],
    );
    assert!(!ok && err.contains("registration.expires"), "{err}");
    let (ok, _, err) = settings(dir, &["no.such.setting=1"]);
    assert!(!ok && err.contains("unknown setting"), "{err}");
    let (ok, _, err) = settings(dir, &["--account", "add", "not-an-id"]);
    assert!(!ok && err.contains("user@domain"), "{err}");
    // Global settings too.
    let (ok, out, err) = settings(dir, &["sip.udp_port=0", "rtp.audio_codec_list=PCMA,PCMU"]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = settings(dir, &["rtp.audio_codec_list"]);
    assert!(ok && out.contains("[\"PCMA\",\"PCMU\"]"), "{out}");
}

/// Run sip-register --json; collect its notification lines.
fn register(
    dir: &Path,
    extra: &[&str],
    until: impl Fn(&[Value]) -> bool,
) -> (std::process::Child, Vec<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sip-register"))
        .arg("--config-dir")
        .arg(dir)
        .arg("--json")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sip-register runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !until(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => seen.push(v),
            Err(_) => break,
        }
    }
    // Whatever else it prints until it exits.
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(v) = rx.try_recv() {
        seen.push(v);
    }
    (child, seen)
}

fn names(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn count(seen: &[Value], name: &str) -> usize {
    seen.iter().filter(|v| v["name"] == name).count()
}

#[test]
fn settings_then_register_twice_then_until_sigterm() {
    if !kamailio_available() {
        return;
    }
    let k = start("registrar.cfg", free_port());
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), k.port);
    // Two successful registrations (the first and a refresh 5 s later),
    // then it unregisters and exits 0.
    let (mut child, seen) = register(dir.path(), &["--max-registers", "2"], |s| {
        count(s, "SIPAccountRegistrationDidEnd") >= 1
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}; saw {:?}", names(&seen));
    assert_eq!(
        count(&seen, "SIPAccountRegistrationDidSucceed"),
        2,
        "{:?}",
        names(&seen)
    );
    let end = seen
        .iter()
        .find(|v| v["name"] == "SIPAccountRegistrationDidEnd")
        .unwrap();
    assert_eq!(end["data"]["code"], 200);
    // Until SIGTERM: registered, then the signal, then unregistered.
    let (mut child, seen) = register(dir.path(), &[], |s| {
        count(s, "SIPAccountRegistrationDidSucceed") >= 1
    });
    assert_eq!(count(&seen, "SIPAccountRegistrationDidSucceed"), 1);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "sip-register did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(status.success(), "{status}");
    // The instance id was kept in the file, the same for both runs.
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert!(doc["accounts"]["carol@127.0.0.1"]["instance_id"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
}

#[test]
fn corrupt_settings_are_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, b"{\"accounts\": oops").unwrap();
    let (ok, _, err) = settings(dir.path(), &["--account", "list"]);
    assert!(!ok);
    assert!(err.contains("config.json"), "{err}");
    let (ok, _, err) = settings(dir.path(), &["--account", "add", "x@y.z", "p"]);
    assert!(!ok, "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"accounts\": oops");
    let out = Command::new(env!("CARGO_BIN_EXE_sip-register"))
        .arg("--config-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
}
