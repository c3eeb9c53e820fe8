//! An independent decoder checks what we put on the wire: tshark captures a
//! call, a registration with digest credentials, a MESSAGE and OPTIONS
//! between two engines on the loopback interface, over UDP and TCP, then
//! decodes the capture. Every message must decode as SIP and nothing may be
//! reported malformed or flagged by the SIP dissector.
//!
//! Capturing needs tshark (Debian package `tshark`) and the right to capture
//! on `lo` (root here). Without either the test says so and passes, except
//! under CI, where it fails.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{call, local_engine, request, send, serve_uas};
use sipsimple::proto::sip::auth::{answer, Challenge, DigestInput};
use sipsimple::proto::sip::transaction::TransportKind;

fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("{why}: skipping");
}

#[tokio::test(flavor = "current_thread")]
async fn tshark_decodes_our_traffic_cleanly() {
    if Command::new("tshark").arg("-v").output().is_err() {
        return skip_or_fail("tshark (Debian package tshark) is not installed");
    }
    let (a, _aev) = local_engine().await;
    let (b, bev) = local_engine().await;
    let ports: Vec<u16> = [&a, &b]
        .iter()
        .flat_map(|e| {
            [TransportKind::Udp, TransportKind::Tcp].map(|t| e.local_addr(t).unwrap().port())
        })
        .collect();
    let filter = ports
        .iter()
        .map(|p| format!("port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("capture.pcapng");
    let mut cap = Command::new("tshark")
        .args(["-i", "lo", "-q", "-f", &filter, "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) for the capture to start.
    let stderr = cap.stderr.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let ok = lines
            .by_ref()
            .take(20)
            .map_while(Result::ok)
            .any(|l| l.contains("Capturing on"));
        // Keep draining so tshark never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ok
    });
    let started = tokio::time::timeout(Duration::from_secs(20), started)
        .await
        .map(|r| r.unwrap_or(false))
        .unwrap_or(false);
    if !started {
        let _ = cap.kill();
        let _ = cap.wait();
        return skip_or_fail("cannot capture on the loopback interface");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let uas = tokio::spawn(serve_uas(b.clone(), bev, stop_rx));
    let mut expected = 0;
    for t in [TransportKind::Udp, TransportKind::Tcp] {
        let la = a.local_addr(t).unwrap();
        let lb = b.local_addr(t).unwrap();
        // INVITE, 100, 180, 200, ACK, BYE, 200.
        call(&a, t, la, lb).await.unwrap();
        expected += 7;
        // OPTIONS and MESSAGE with a body.
        assert_eq!(send(&a, request("OPTIONS", t, la, lb), t, lb).await, 200);
        let mut msg = request("MESSAGE", t, la, lb);
        msg.push_header("Content-Type", "text/plain;charset=utf-8")
            .unwrap();
        msg.set_body("hello, w\u{f6}rld".as_bytes().to_vec());
        assert_eq!(send(&a, msg, t, lb).await, 200);
        // REGISTER carrying a digest answer, as after a 401.
        let mut reg = request("REGISTER", t, la, lb);
        let ch = Challenge::parse(
            "Digest realm=\"example.org\", nonce=\"abc\", qop=\"auth\", algorithm=SHA-256",
        )
        .unwrap();
        let ans = answer(
            &ch,
            &DigestInput {
                username: "alice",
                password: "secret",
                method: "REGISTER",
                uri: reg.request_uri().unwrap(),
                body: b"",
                nc: 1,
                cnonce: "0a4f113b",
            },
        )
        .unwrap();
        reg.push_header("Authorization", &ans.header_value).unwrap();
        reg.push_header("Contact", &format!("<sip:alice@{la}>"))
            .unwrap();
        reg.push_header("Expires", "600").unwrap();
        assert_eq!(send(&a, reg, t, lb).await, 200);
        expected += 6;
    }
    let _ = stop_tx.send(());
    uas.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGINT lets tshark finish the file.
    let _ = Command::new("kill")
        .args(["-INT", &cap.id().to_string()])
        .status();
    let waited = tokio::task::spawn_blocking(move || cap.wait()).await;
    assert!(waited.is_ok());

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "sip",
            "-T",
            "fields",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .output()
        .unwrap();
    let decoded = String::from_utf8_lossy(&out.stdout);
    let n = decoded.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(n, expected, "decoded SIP messages:\n{decoded}");
    for method in ["INVITE", "ACK", "BYE", "OPTIONS", "MESSAGE", "REGISTER"] {
        assert!(decoded.contains(method), "{method} missing:\n{decoded}");
    }
    let bad = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "_ws.malformed || (sip && _ws.expert.severity >= warning)",
        ])
        .output()
        .unwrap();
    let bad = String::from_utf8_lossy(&bad.stdout);
    assert!(bad.trim().is_empty(), "tshark flags:\n{bad}");
    a.stop();
    b.stop();
}
