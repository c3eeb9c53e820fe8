//! The sip-session tool as a user drives it: two processes on 127.0.0.1,
//! one auto-answering, commands piped to stdin, notifications read as JSON
//! lines from stdout.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

struct Tool {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    port: u16,
    /// The tool's own messages (stderr with --json).
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Tool {
    fn start(args: &[&str]) -> Tool {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sip-session"))
            .args(["--json", "--sip-port", "0", "--transport", "udp"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sip-session runs");
        let stdin = child.stdin.take().unwrap();
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let (ptx, prx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line.clone());
                if let Some(p) = line.strip_prefix("listening on UDP port ") {
                    let _ = ptx.send(p.trim().parse::<u16>().unwrap());
                }
                eprintln!("[sip-session] {line}");
            }
        });
        let port = prx
            .recv_timeout(Duration::from_secs(20))
            .expect("the tool says its port");
        Tool {
            child,
            stdin,
            events,
            seen: Vec::new(),
            port,
            said,
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Wait for the `count`-th notification `name`; returns it.
    fn wait(&mut self, name: &str, count: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found: Vec<&Value> = self.seen.iter().filter(|v| v["name"] == name).collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!("no {name} #{count}; saw {:?}", self.names()),
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|v| v["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn quit(mut self) {
        self.send("/quit");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "sip-session exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sip-session did not exit after /quit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn two_tools_call_hold_and_hang_up_with_audio() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("bob.wav");
    let mut bob = Tool::start(&[
        "--auto-answer",
        "--input-device",
        "tone:1000",
        "--output-device",
        &format!("wav:{}", wav.display()),
    ]);
    let mut alice = Tool::start(&["--input-device", "tone:440"]);
    alice.send(&format!("/call sip:bob@127.0.0.1:{} audio", bob.port));
    let started = alice.wait("SIPSessionDidStart", 1);
    assert_eq!(started["data"]["streams"][0]["type"], "audio");
    bob.wait("SIPSessionDidStart", 1);
    std::thread::sleep(Duration::from_millis(1200));
    alice.send("/dtmf 12#");
    let d = bob.wait("SIPSessionGotDTMF", 3);
    assert_eq!(d["data"]["digit"], "#");
    alice.send("/hold");
    let h = bob.wait("SIPSessionDidChangeHoldState", 1);
    assert_eq!(h["data"]["on_hold"], true);
    assert_eq!(h["data"]["originator"], "remote");
    alice.wait("SIPSessionDidChangeHoldState", 1);
    alice.send("/unhold");
    bob.wait("SIPSessionDidChangeHoldState", 2);
    // A second session at the same time.
    alice.send(&format!("/call sip:bob@127.0.0.1:{} audio", bob.port));
    alice.wait("SIPSessionDidStart", 2);
    bob.wait("SIPSessionDidStart", 2);
    alice.send("/end");
    alice.wait("SIPSessionDidEnd", 1);
    bob.wait("SIPSessionDidEnd", 1);
    // The first one is still up; /quit ends it.
    alice.quit();
    bob.wait("SIPSessionDidEnd", 2);
    bob.quit();
    // Opus, the first codec both prefer: the recording is at 48 kHz.
    let reader = hound::WavReader::open(&wav).unwrap();
    let rate = reader.spec().sample_rate;
    assert_eq!(rate, 48_000);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    let r0 = rate as usize / 10;
    assert!(samples.len() > r0 + rate as usize);
    let win = &samples[r0..r0 + rate as usize];
    let r = sipsimple::driver::audio_device::tone_share(win, rate, 440.0);
    assert!(r > 0.9, "bob heard alice's 440 Hz tone (ratio {r})");
}

#[test]
fn rejected_and_unknown_commands() {
    let mut bob = Tool::start(&[]);
    let mut alice = Tool::start(&[]);
    alice.send(&format!("/call sip:bob@127.0.0.1:{} audio", bob.port));
    bob.wait("SIPSessionNewIncoming", 1);
    bob.send("/reject 486");
    let f = alice.wait("SIPSessionDidFail", 1);
    assert_eq!(f["data"]["code"], 486);
    alice.send("/frobnicate");
    alice.send("/hold");
    alice.send("/call not-a-uri");
    alice.send("/call sip:x@127.0.0.1:9 nosuchtype");
    alice.quit();
    bob.quit();
}

#[test]
fn two_tools_chat_both_ways() {
    let mut bob = Tool::start(&["--auto-answer"]);
    let mut alice = Tool::start(&[]);
    alice.send(&format!("/call sip:bob@127.0.0.1:{} chat", bob.port));
    let started = alice.wait("SIPSessionDidStart", 1);
    assert_eq!(started["data"]["streams"][0]["type"], "chat");
    bob.wait("SIPSessionDidStart", 1);
    alice.send("/composing");
    let c = bob.wait("ChatStreamGotComposingIndication", 1);
    assert_eq!(c["data"]["state"], "active");
    alice.send("/chat hello bob");
    alice.send("a plain line is chat too: ünïcödé");
    let m = bob.wait("ChatStreamGotMessage", 1);
    assert_eq!(m["data"]["content"], "hello bob");
    let m = bob.wait("ChatStreamGotMessage", 2);
    assert_eq!(m["data"]["content"], "a plain line is chat too: ünïcödé");
    alice.wait("ChatStreamDidDeliverMessage", 2);
    bob.send("/chat hi alice");
    let m = alice.wait("ChatStreamGotMessage", 1);
    assert_eq!(m["data"]["content"], "hi alice");
    bob.wait("ChatStreamDidDeliverMessage", 1);
    alice.send("/end");
    bob.wait("SIPSessionDidEnd", 1);
    // No chat stream now: the line is an error, not a crash.
    alice.send("/chat anyone?");
    alice.quit();
    bob.quit();
}

/// Two sip-session processes with accounts registered at Kamailio: alice
/// calls bob's address of record through her outbound proxy, Kamailio
/// finds bob's registered contact, and they chat (MSRP straight between
/// them, msrps with fingerprints, the account default).
#[test]
fn two_tools_chat_through_kamailio() {
    use common::kamailio::{kamailio_available, start};
    use sipsimple::{FileStorage, Storage};
    if !kamailio_available() {
        return;
    }
    let k = start("registrar.cfg", common::sipp::free_port());
    let config = |user: &str, pw: &str| {
        let dir = tempfile::tempdir().unwrap();
        let id = format!("{user}@127.0.0.1");
        FileStorage::new(dir.path())
            .save(
                serde_json::json!({
                    "accounts": {&id: {
                        "auth": {"password": pw},
                        "registration": {"expires": 60},
                        "sip": {"register_uri": format!("sip:127.0.0.1:{}", k.port),
                                "outbound_proxy": format!("sip:127.0.0.1:{}", k.port),
                                "transport_list": ["udp"]},
                    }},
                    "default_account": &id,
                })
                .as_object()
                .unwrap(),
            )
            .unwrap();
        dir
    };
    let (a, b) = (config("alice", "alicepass"), config("bob", "bobpass"));
    let mut bob = Tool::start(&["--auto-answer", "--config-dir", b.path().to_str().unwrap()]);
    let mut alice = Tool::start(&[
        "--config-dir",
        a.path().to_str().unwrap(),
        "--account",
        "alice@127.0.0.1",
    ]);
    let r = bob.wait("SIPAccountRegistrationDidSucceed", 1);
    assert_eq!(r["data"]["registration"], "bob@127.0.0.1");
    alice.wait("SIPAccountRegistrationDidSucceed", 1);
    alice.send("/call sip:bob@127.0.0.1 chat");
    alice.wait("SIPSessionDidStart", 1);
    let started = bob.wait("SIPSessionDidStart", 1);
    assert_eq!(started["data"]["streams"][0]["type"], "chat");
    alice.send("/chat hello bob, via the registrar");
    let m = bob.wait("ChatStreamGotMessage", 1);
    assert_eq!(m["data"]["content"], "hello bob, via the registrar");
    assert!(m["data"]["sender"]
        .as_str()
        .unwrap()
        .contains("alice@127.0.0.1"));
    alice.wait("ChatStreamDidDeliverMessage", 1);
    bob.send("and back ✓");
    let m = alice.wait("ChatStreamGotMessage", 1);
    assert_eq!(m["data"]["content"], "and back ✓");
    bob.wait("ChatStreamDidDeliverMessage", 1);
    alice.send("/end");
    bob.wait("SIPSessionDidEnd", 1);
    // An account the configuration does not have is an error at start.
    let out = Command::new(env!("CARGO_BIN_EXE_sip-session"))
        .args([
            "--config-dir",
            a.path().to_str().unwrap(),
            "--account",
            "nobody@127.0.0.1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));
    alice.quit();
    bob.quit();
}

/// Two sip-session processes send each other a file on one session, each
/// way, with the hash checked by the receiver and the sender's progress
/// shown as a bar.
#[test]
fn two_tools_transfer_files_both_ways() {
    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let arg = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_string();
    let mut bob = Tool::start(&["--auto-answer", "--download-dir", &arg(&dirs[1])]);
    let mut alice = Tool::start(&["--auto-answer", "--download-dir", &arg(&dirs[0])]);
    let make = |name: &str, size: usize| {
        let p = dirs[2].path().join(name);
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        (p, data)
    };
    let (to_bob, to_bob_data) = make("for bob.bin", 3_000_017);
    let (to_alice, to_alice_data) = make("for-alice.txt", 2_000_003);
    alice.send(&format!("/call sip:bob@127.0.0.1:{} chat", bob.port));
    alice.wait("SIPSessionDidStart", 1);
    bob.wait("SIPSessionDidStart", 1);
    alice.send(&format!("/send {}", to_bob.display()));
    let got = bob.wait("FileTransferStreamDidFinish", 1);
    assert_eq!(got["data"]["error"], false, "{got}");
    assert_eq!(got["data"]["hash_verified"], true);
    let saved = std::path::PathBuf::from(got["data"]["file_path"].as_str().unwrap());
    assert_eq!(saved, dirs[1].path().join("for bob.bin"));
    assert_eq!(std::fs::read(&saved).unwrap(), to_bob_data);
    let sent = alice.wait("FileTransferStreamDidFinish", 1);
    assert_eq!(sent["data"]["error"], false);
    alice.wait("FileTransferStreamDidChangeProgress", 1);
    // The other way, on the same session.
    bob.send(&format!("/send {}", to_alice.display()));
    let got = alice.wait("FileTransferStreamDidFinish", 2);
    assert_eq!(got["data"]["direction"], "receive", "{got}");
    assert_eq!(got["data"]["hash_verified"], true);
    let saved = std::path::PathBuf::from(got["data"]["file_path"].as_str().unwrap());
    assert_eq!(std::fs::read(&saved).unwrap(), to_alice_data);
    bob.wait("FileTransferStreamDidFinish", 2);
    // The progress bar ends at 100%.
    let said = alice.said.lock().unwrap().clone();
    assert!(
        said.iter()
            .any(|l| l.starts_with('[') && l.contains("100%") && l.contains("send")),
        "{said:?}"
    );
    // A file that is not there is an error, not a crash.
    alice.send("/send /nonexistent/file");
    alice.send("/send");
    alice.send("/end");
    bob.wait("SIPSessionDidEnd", 1);
    alice.quit();
    bob.quit();
}
