//! sip-audio-session as a user runs it: two processes on 127.0.0.1, one
//! answering, the other calling with a tone from one and DTMF typed on
//! stdin, for each codec with and without SRTP; each side's recording of
//! what it heard is checked for the other side's tone and level.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use sipsimple::driver::audio_device::{level_dbfs, tone_share};

struct Run {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: mpsc::Receiver<u16>,
}

fn start(name: &'static str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sip-audio-session"))
        .args(["--transport", "udp"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sip-audio-session runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    // stdin stays open (kept by the thread) until the process ends.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        drop(input);
    });
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, port) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let keep = lines.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{name}] {line}");
                if let Some(p) = line.strip_prefix("listening on UDP port ") {
                    let _ = tx.send(p.trim().parse::<u16>().unwrap());
                }
                keep.lock().unwrap().push(line);
            }
        });
    }
    Run { child, lines, port }
}

impl Run {
    /// Wait for the process to exit; its status and what it printed.
    fn finish(mut self, within: Duration) -> (bool, Vec<String>) {
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running: {:?}", self.lines.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status.success(), self.lines.lock().unwrap().clone())
    }
}

fn check_tone(path: &std::path::Path, freq: f64) {
    let r = hound::WavReader::open(path).unwrap();
    let rate = r.spec().sample_rate;
    let s: Vec<i16> = r.into_samples::<i16>().map(|s| s.unwrap()).collect();
    assert!(
        s.len() >= rate as usize * 21 / 10,
        "{}: {} samples",
        path.display(),
        s.len()
    );
    // After the DTMF typed ahead (audio pauses while the digits go).
    let win = &s[rate as usize * 8 / 10..rate as usize * 21 / 10];
    let ratio = tone_share(win, rate, freq);
    let level = level_dbfs(win);
    assert!(ratio > 0.9, "{}: {freq} Hz ratio {ratio}", path.display());
    assert!(
        (-14.5..-11.5).contains(&level),
        "{}: level {level}",
        path.display()
    );
}

fn call(codec: &str, srtp: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let (bob_hears, alice_hears) = (d("bob-hears.wav"), d("alice-hears.wav"));
    let bob = start(
        "bob",
        &[
            "--config-dir",
            &d("bob"),
            "--account",
            "bonjour",
            "--sip-port",
            "0",
            "--input",
            "tone:1000",
            "--output",
            &bob_hears,
            "--codecs",
            codec,
            "--srtp",
            srtp,
            "--auto-answer",
        ],
        None,
    );
    let port = bob
        .port
        .recv_timeout(Duration::from_secs(20))
        .expect("bob listens");
    let uri = format!("sip:bob@127.0.0.1:{port}");
    let alice = start(
        "alice",
        &[
            "--config-dir",
            &d("alice"),
            "--account",
            "bonjour",
            "--input",
            "tone:440",
            "--output",
            &alice_hears,
            "--codecs",
            codec,
            "--srtp",
            srtp,
            "--duration",
            "2.5",
            "--record",
            &d("call.wav"),
            &uri,
        ],
        Some("12#\n"),
    );
    let (alice_ok, alice_said) = alice.finish(Duration::from_secs(30));
    let (bob_ok, bob_said) = bob.finish(Duration::from_secs(10));
    assert!(
        alice_ok && bob_ok,
        "exit status: alice {alice_ok}, bob {bob_ok}"
    );
    for said in [&alice_said, &bob_said] {
        let up = said
            .iter()
            .find(|l| l.starts_with("call established"))
            .expect("the call was established");
        assert!(up.contains(&format!("codec {codec} ")), "{up}");
        if srtp == "disabled" {
            assert!(up.contains("SRTP off"), "{up}");
        } else {
            assert!(up.contains("SRTP AES_CM_128_HMAC_SHA1_80"), "{up}");
        }
        assert!(
            said.iter().any(|l| l.starts_with("statistics: sent")),
            "{said:?}"
        );
    }
    assert!(
        alice_said.iter().any(|l| l == "call ended by local"),
        "{alice_said:?}"
    );
    assert!(
        bob_said.iter().any(|l| l == "call ended by remote"),
        "{bob_said:?}"
    );
    let digits: Vec<&str> = bob_said
        .iter()
        .filter_map(|l| l.strip_prefix("got DTMF "))
        .collect();
    assert_eq!(digits, ["1", "2", "#"], "{bob_said:?}");
    check_tone(std::path::Path::new(&bob_hears), 440.0);
    check_tone(std::path::Path::new(&alice_hears), 1000.0);
    // The recording has both sides.
    let rec = hound::WavReader::open(d("call.wav")).unwrap();
    assert_eq!(rec.spec().channels, 2);
}

#[test]
fn opus_plain() {
    call("opus", "disabled");
}

#[test]
fn opus_srtp() {
    call("opus", "mandatory");
}

#[test]
fn g722_plain() {
    call("G722", "disabled");
}

#[test]
fn g722_srtp() {
    call("G722", "mandatory");
}

#[test]
fn pcmu_plain() {
    call("PCMU", "disabled");
}

#[test]
fn pcmu_srtp() {
    call("PCMU", "mandatory");
}

#[test]
fn refused_call_exits_with_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    // Nobody listens on the port: the call fails and the tool says so.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    drop(sock);
    let alice = start(
        "alice",
        &[
            "--config-dir",
            &d("alice"),
            "--account",
            "bonjour",
            &format!("sip:bob@127.0.0.1:{port};transport=tcp"),
        ],
        None,
    );
    let (ok, said) = alice.finish(Duration::from_secs(40));
    assert!(!ok, "{said:?}");
    assert!(
        said.iter().any(|l| l.starts_with("call failed")),
        "{said:?}"
    );
}

/// SIGTERM mid-call: the tool hangs up first (the peer sees the call
/// ended by the remote), then exits successfully.
#[test]
fn sigterm_hangs_up_before_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let bob = start(
        "bob",
        &[
            "--config-dir",
            &d("bob"),
            "--account",
            "bonjour",
            "--sip-port",
            "0",
            "--auto-answer",
        ],
        None,
    );
    let port = bob
        .port
        .recv_timeout(Duration::from_secs(20))
        .expect("bob listens");
    let alice = start(
        "alice",
        &[
            "--config-dir",
            &d("alice"),
            "--account",
            "bonjour",
            &format!("sip:bob@127.0.0.1:{port}"),
        ],
        None,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bob
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("call established"))
    {
        assert!(std::time::Instant::now() < deadline, "no call");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &bob.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (bob_ok, bob_said) = bob.finish(Duration::from_secs(15));
    let (alice_ok, alice_said) = alice.finish(Duration::from_secs(15));
    assert!(bob_ok, "{bob_said:?}");
    assert!(bob_said.iter().any(|l| l == "hanging up"), "{bob_said:?}");
    assert!(
        bob_said.iter().any(|l| l == "call ended by local"),
        "{bob_said:?}"
    );
    assert!(alice_ok, "{alice_said:?}");
    assert!(
        alice_said.iter().any(|l| l == "call ended by remote"),
        "{alice_said:?}"
    );
}
