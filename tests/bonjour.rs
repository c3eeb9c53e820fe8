//! Two hosts on one LAN find and call each other with the Bonjour account:
//! two network namespaces joined by a veth pair (made and removed by the
//! test; multicast DNS never leaves them). On host A `sip-register
//! --account bonjour` browses; on host B `sip-message` listens as the
//! Bonjour account. Each sees the other as a neighbour with its veth
//! address; A sends B a MESSAGE at the URI discovery gave; when B exits
//! its goodbye removes it from A's neighbours.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces joined by veth, removed on drop.
struct Lan {
    a: String,
    b: String,
}

const ADDR_A: &str = "10.231.7.1";
const ADDR_B: &str = "10.231.7.2";

impl Lan {
    /// None when this machine cannot make namespaces (not root, no
    /// iproute2); under CI that is a failure.
    fn make() -> Option<Lan> {
        let pid = std::process::id();
        let lan = Lan {
            a: format!("sipsA{pid}"),
            b: format!("sipsB{pid}"),
        };
        let (va, vb) = (format!("vA{pid}"), format!("vB{pid}"));
        let ok = ip(&["netns", "add", &lan.a])
            && ip(&["netns", "add", &lan.b])
            && ip(&[
                "link", "add", &va, "netns", &lan.a, "type", "veth", "peer", "name", &vb, "netns",
                &lan.b,
            ])
            && ip(&[
                "-n",
                &lan.a,
                "addr",
                "add",
                &format!("{ADDR_A}/24"),
                "dev",
                &va,
            ])
            && ip(&[
                "-n",
                &lan.b,
                "addr",
                "add",
                &format!("{ADDR_B}/24"),
                "dev",
                &vb,
            ])
            && ip(&["-n", &lan.a, "link", "set", &va, "up"])
            && ip(&["-n", &lan.b, "link", "set", &vb, "up"])
            && ip(&["-n", &lan.a, "link", "set", "lo", "up"])
            && ip(&["-n", &lan.b, "link", "set", "lo", "up"]);
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "network namespaces (root, Debian package iproute2) are required under CI"
            );
            eprintln!("cannot make network namespaces here: skipping");
            return None;
        }
        Some(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

/// A tool running in a namespace, its JSON lines read on a thread.
struct Tool {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Tool {
    fn start(ns: &str, bin: &str, args: &[&str]) -> Tool {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, bin])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip netns exec runs");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Tool {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first notification named `name` whose data satisfies `pred`.
    fn wait(&mut self, name: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = self
                .seen
                .iter()
                .find(|v| v["name"] == name && pred(&v["data"]))
            {
                return v["data"].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "no {name} in {secs} s; saw {:?}",
                    self.seen
                        .iter()
                        .map(|v| v["name"].to_string())
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn terminate(&self) {
        // The tool's own pid: `ip netns exec` execs it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn config(dir: &Path, name: &str) {
    std::fs::write(
        dir.join("config.json"),
        json!({
            "accounts": {"bonjour@local": {"enabled": true, "display_name": name}},
            "default_account": "bonjour@local",
        })
        .to_string(),
    )
    .unwrap();
}

fn host_is(addr: &'static str, name: &'static str) -> impl Fn(&Value) -> bool {
    move |d: &Value| d["host"] == addr && d["display_name"] == name
}

#[test]
fn two_hosts_find_each_other_and_talk() {
    let Some(lan) = Lan::make() else {
        return;
    };
    let (da, db, dsend) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    config(da.path(), "Alice");
    config(db.path(), "Bob");
    let dir = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_string();
    let (sa, sb, ss) = (dir(&da), dir(&db), dir(&dsend));
    let mut alice = Tool::start(
        &lan.a,
        env!("CARGO_BIN_EXE_sip-register"),
        &["--config-dir", &sa, "--account", "bonjour", "--json"],
    );
    let mut bob = Tool::start(
        &lan.b,
        env!("CARGO_BIN_EXE_sip-message"),
        &["--config-dir", &sb, "--json", "--max-messages", "1"],
    );

    // Each finds the other at its veth address, on UDP and on TCP.
    let found = alice.wait("BonjourAccountDidAddNeighbour", 20, host_is(ADDR_B, "Bob"));
    let bob_udp = alice.wait("BonjourAccountDidAddNeighbour", 10, |d| {
        host_is(ADDR_B, "Bob")(d) && d["transport"] == "udp"
    });
    alice.wait("BonjourAccountDidAddNeighbour", 10, |d| {
        host_is(ADDR_B, "Bob")(d) && d["transport"] == "tcp"
    });
    assert!(found["instance_id"]
        .as_str()
        .is_some_and(|i| i.starts_with("urn:uuid:")));
    bob.wait(
        "BonjourAccountDidAddNeighbour",
        20,
        host_is(ADDR_A, "Alice"),
    );
    // Nobody lists themselves.
    assert!(!alice
        .seen
        .iter()
        .any(|v| v["name"] == "BonjourAccountDidAddNeighbour" && v["data"]["host"] == ADDR_A));

    // A third process on A (a plain Bonjour account, not advertising)
    // sends B a MESSAGE at the discovered URI.
    let uri = bob_udp["uri"].as_str().unwrap().to_string();
    assert!(
        uri.starts_with("sip:") && uri.contains(&format!("@{ADDR_B}:")),
        "{uri}"
    );
    let send = Command::new("ip")
        .args(["netns", "exec", &lan.a, env!("CARGO_BIN_EXE_sip-message")])
        .args(["--config-dir", &ss, &uri, "hello over bonjour"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "{}{}",
        String::from_utf8_lossy(&send.stdout),
        String::from_utf8_lossy(&send.stderr)
    );
    let got = bob.wait("SIPEngineGotMessage", 10, |_| true);
    assert_eq!(got["content"], "hello over bonjour", "{got}");
    // One message was asked for: B exits, saying goodbye on the way out.
    assert_eq!(bob.exit_code(15), Some(0));
    let gone = alice.wait(
        "BonjourAccountDidRemoveNeighbour",
        10,
        host_is(ADDR_B, "Bob"),
    );
    assert!(gone["uri"].as_str().unwrap().contains(ADDR_B), "{gone}");
    alice.terminate();
    assert_eq!(alice.exit_code(15), Some(0));
    drop(lan);
}
