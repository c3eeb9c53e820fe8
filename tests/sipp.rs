//! The engine against SIPp on 127.0.0.1: SIPp's built-in UAC calling our
//! UAS, SIPp's built-in UAS answering our UAC, over UDP and TCP, and a
//! registrar scenario that challenges with 401 and checks our digest.
//!
//! SIPp is the Debian package `sip-tester`. Without it these tests say so
//! and pass, except under CI (`CI` set), where its absence is a failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sipsimple::driver::engine::{numeric_peer, ClientEvent, Engine, EngineConfig, EngineEvent};
use sipsimple::driver::ids::{new_branch, new_call_id, new_tag};
use sipsimple::proto::sip::auth::{Credentials, DigestClient};
use sipsimple::proto::sip::dialog::{Dialog, Dialogs, Routing};
use sipsimple::proto::sip::screen::{
    build_rejection, build_response, screen_request, Capabilities,
};
use sipsimple::proto::sip::transaction::{Peer, TransportKind};
use sipsimple::proto::sip::{SipMessage, Uri};
use tokio::sync::mpsc;

fn sipp_available() -> bool {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "sipp (Debian package sip-tester) is required under CI"
        );
        eprintln!("sipp not installed: skipping");
    }
    ok
}

fn free_port() -> u16 {
    // Bind both UDP and TCP on the same port so SIPp can use either.
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Sipp {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// Start SIPp bound to 127.0.0.1:`port` with the given arguments; its
/// screen output is discarded and its error log kept for the report.
fn run_sipp(port: u16, args: &[&str], scenario: Option<&str>) -> Sipp {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir.path())
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-nostdin", "-trace_err", "-timeout", "60s"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(xml) = scenario {
        let p: PathBuf = dir.path().join("scenario.xml");
        std::fs::write(&p, xml).unwrap();
        cmd.arg("-sf").arg(&p);
    }
    Sipp {
        child: cmd.spawn().expect("sipp starts"),
        _dir: dir,
    }
}

impl Sipp {
    /// Wait for SIPp to finish (bounded); return its exit code and errors.
    async fn finish(mut self) -> (i32, String) {
        let dir = self._dir.path().to_path_buf();
        let code = tokio::task::spawn_blocking(move || {
            for _ in 0..900 {
                if let Ok(Some(st)) = self.child.try_wait() {
                    return st.code().unwrap_or(-1);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            -100
        })
        .await
        .unwrap();
        let mut errors = String::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with("_errors.log") {
                    errors.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        (code, errors)
    }
}

async fn start_engine(
    transport: TransportKind,
) -> (Engine, mpsc::UnboundedReceiver<EngineEvent>, SocketAddr) {
    let (tx, rx) = mpsc::unbounded_channel();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let cfg = EngineConfig {
        udp: Some(any),
        tcp: Some(any),
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, tx).await.expect("engine starts");
    let local = engine.local_addr(transport).unwrap();
    (engine, rx, local)
}

fn via(transport: TransportKind, local: SocketAddr) -> String {
    format!(
        "SIP/2.0/{} {local};branch={};rport",
        transport.as_str(),
        new_branch()
    )
}

fn contact(transport: TransportKind, local: SocketAddr) -> String {
    match transport {
        TransportKind::Udp => format!("<sip:ua@{local}>"),
        t => format!("<sip:ua@{local};transport={}>", t.as_str().to_lowercase()),
    }
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A UAS good enough for SIPp's uac scenario: 180 and 200 for INVITE, 200
/// for BYE inside a dialog, 481 outside, and the UA-level rejections.
/// Returns (calls answered, ACKs seen, BYEs answered) when `stop` fires.
async fn serve_uas(
    engine: Engine,
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
    transport: TransportKind,
    local: SocketAddr,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (u32, u32, u32) {
    let mut dialogs = Dialogs::default();
    let caps = Capabilities::default();
    let (mut answered, mut acks, mut byes) = (0, 0, 0);
    loop {
        let ev = tokio::select! {
            _ = &mut stop => return (answered, acks, byes),
            ev = events.recv() => match ev { Some(e) => e, None => return (answered, acks, byes) },
        };
        match ev {
            EngineEvent::Request { key, request, .. } => {
                if let Some(rej) = screen_request(&request, &caps) {
                    engine.respond(
                        key,
                        build_rejection(&request, &rej, Some(&new_tag())).unwrap(),
                    );
                    continue;
                }
                let method = request.method().unwrap_or_default().to_string();
                match dialogs.route(&request) {
                    Routing::NoSuchDialog => {
                        let r =
                            build_response(&request, 481, "Call/Transaction Does Not Exist", None);
                        engine.respond(key, r.unwrap());
                    }
                    Routing::OutOfOrder(_) => {
                        let r = build_response(&request, 500, "Server Internal Error", None);
                        engine.respond(key, r.unwrap());
                    }
                    Routing::InDialog(id) => {
                        engine.respond(key, build_response(&request, 200, "OK", None).unwrap());
                        if method == "BYE" {
                            dialogs.remove(&id);
                            byes += 1;
                        }
                    }
                    Routing::OutOfDialog => match method.as_str() {
                        "INVITE" => {
                            let tag = new_tag();
                            let ringing =
                                build_response(&request, 180, "Ringing", Some(&tag)).unwrap();
                            engine.respond(key, ringing);
                            let mut ok = build_response(&request, 200, "OK", Some(&tag)).unwrap();
                            ok.push_header("Contact", &contact(transport, local))
                                .unwrap();
                            ok.push_header("Content-Type", "application/sdp").unwrap();
                            ok.set_body(SDP.as_bytes().to_vec());
                            engine.respond(key, ok);
                            dialogs.insert(Dialog::from_uas(&request, &tag).unwrap());
                            answered += 1;
                        }
                        _ => {
                            let r = build_response(&request, 200, "OK", Some(&new_tag())).unwrap();
                            engine.respond(key, r);
                        }
                    },
                }
            }
            EngineEvent::Ack { .. } => acks += 1,
            EngineEvent::Cancelled { invite } => {
                let _ = invite;
            }
            _ => {}
        }
    }
}

async fn sipp_calls_us(transport: TransportKind) {
    if !sipp_available() {
        return;
    }
    let (engine, events, local) = start_engine(transport).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let uas = tokio::spawn(serve_uas(engine.clone(), events, transport, local, stop_rx));
    let t = if transport == TransportKind::Udp {
        "u1"
    } else {
        "t1"
    };
    let calls = 20;
    let sipp = run_sipp(
        free_port(),
        &[
            "-sn",
            "uac",
            "-t",
            t,
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-d",
            "200",
            &local.to_string(),
        ],
        None,
    );
    let (code, errors) = sipp.finish().await;
    let _ = stop_tx.send(());
    let (answered, acks, byes) = uas.await.unwrap();
    assert_eq!(code, 0, "sipp uac failed over {transport:?}: {errors}");
    assert_eq!((answered, acks, byes), (calls, calls, calls));
    let st = engine.stats();
    assert_eq!(st.parse_errors, 0);
    engine.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn sipp_uac_calls_our_uas_over_udp() {
    sipp_calls_us(TransportKind::Udp).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sipp_uac_calls_our_uas_over_tcp() {
    sipp_calls_us(TransportKind::Tcp).await;
}

/// One call from our UAC: INVITE, 2xx, ACK, BYE, 200.
async fn call(
    engine: &Engine,
    transport: TransportKind,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<(), String> {
    let peer = Peer {
        transport,
        addr: remote,
    };
    let target = Uri::parse(&format!("sip:service@{remote}")).unwrap();
    let mut inv = SipMessage::request("INVITE", &target).unwrap();
    inv.push_header("Via", &via(transport, local)).unwrap();
    inv.push_header("Max-Forwards", "70").unwrap();
    inv.push_header("From", &format!("<sip:ua@{local}>;tag={}", new_tag()))
        .unwrap();
    inv.push_header("To", &format!("<{target}>")).unwrap();
    inv.push_header("Call-ID", &new_call_id()).unwrap();
    inv.push_header("CSeq", "1 INVITE").unwrap();
    inv.push_header("Contact", &contact(transport, local))
        .unwrap();
    inv.push_header("Content-Type", "application/sdp").unwrap();
    inv.set_body(SDP.as_bytes().to_vec());
    let mut rx = engine.send_request(inv.clone(), peer);
    let mut dialog = None;
    while let Some(ev) = rx.recv().await {
        match ev {
            ClientEvent::Response(r) => {
                let code = r.status().unwrap().0;
                if (200..300).contains(&code) {
                    let mut d = Dialog::from_uac(&inv, &r).map_err(|e| e.to_string())?;
                    let ack = d.create_ack(1, &via(transport, local)).unwrap();
                    let hop = numeric_peer(&d.next_hop().unwrap()).ok_or("next hop not numeric")?;
                    // The Contact's transport decides; SIPp answers with ours.
                    engine.send_stateless(ack, Peer { transport, ..hop });
                    let bye = d.create_request("BYE", &via(transport, local)).unwrap();
                    dialog = Some((bye, hop));
                    break;
                } else if code >= 300 {
                    return Err(format!("INVITE answered {code}"));
                }
            }
            other => return Err(format!("INVITE: {other:?}")),
        }
    }
    let (bye, hop) = dialog.ok_or("INVITE transaction ended without 2xx")?;
    let mut rx = engine.send_request(bye, Peer { transport, ..hop });
    match rx.recv().await {
        Some(ClientEvent::Response(r)) if r.status().unwrap().0 == 200 => Ok(()),
        other => Err(format!("BYE: {other:?}")),
    }
}

async fn we_call_sipp(transport: TransportKind) {
    if !sipp_available() {
        return;
    }
    let (engine, _events, local) = start_engine(transport).await;
    let port = free_port();
    let t = if transport == TransportKind::Udp {
        "u1"
    } else {
        "t1"
    };
    let calls = 10;
    let sipp = run_sipp(
        port,
        &["-sn", "uas", "-t", t, "-m", &calls.to_string()],
        None,
    );
    // Give SIPp a moment to bind before the first INVITE (UDP would be
    // retransmitted anyway; TCP needs the listener).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let remote = SocketAddr::from(([127, 0, 0, 1], port));
    for i in 0..calls {
        if let Err(e) = call(&engine, transport, local, remote).await {
            panic!("call {i} over {transport:?}: {e}");
        }
    }
    let (code, errors) = sipp.finish().await;
    assert_eq!(code, 0, "sipp uas over {transport:?}: {errors}");
    assert_eq!(engine.stats().parse_errors, 0);
    engine.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn our_uac_calls_sipp_uas_over_udp() {
    we_call_sipp(TransportKind::Udp).await;
}

#[tokio::test(flavor = "current_thread")]
async fn our_uac_calls_sipp_uas_over_tcp() {
    we_call_sipp(TransportKind::Tcp).await;
}

/// A registrar that challenges, then verifies our answer with SIPp's own
/// digest check; a wrong answer makes the call (and SIPp) fail.
const REGISTRAR_401: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="registrar with digest">
  <recv request="REGISTER" />
  <send><![CDATA[
SIP/2.0 401 Unauthorized
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
[last_CSeq:]
WWW-Authenticate: Digest realm="sipp.test", nonce="n[pid]x[call_number]", algorithm=MD5
Content-Length: 0

]]></send>
  <recv request="REGISTER">
    <action>
      <verifyauth assign_to="authvalid" username="alice" password="s3cret" />
    </action>
  </recv>
  <nop test="authvalid" next="good" />
  <send><![CDATA[
SIP/2.0 403 Forbidden
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="NEVER" timeout="100" />
  <label id="good" />
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Contact:];expires=600
Content-Length: 0

]]></send>
</scenario>
"#;

async fn register(
    engine: &Engine,
    transport: TransportKind,
    local: SocketAddr,
    remote: SocketAddr,
    password: &str,
) -> u16 {
    let peer = Peer {
        transport,
        addr: remote,
    };
    let registrar = Uri::parse(&format!("sip:{remote}")).unwrap();
    let mut digest = DigestClient::new(vec![Credentials {
        realm: None,
        username: "alice".into(),
        password: password.into(),
    }]);
    let call_id = new_call_id();
    let tag = new_tag();
    let mut cseq = 1;
    loop {
        let mut reg = SipMessage::request("REGISTER", &registrar).unwrap();
        reg.push_header("Via", &via(transport, local)).unwrap();
        reg.push_header("Max-Forwards", "70").unwrap();
        reg.push_header("From", &format!("<sip:alice@{remote}>;tag={tag}"))
            .unwrap();
        reg.push_header("To", &format!("<sip:alice@{remote}>"))
            .unwrap();
        reg.push_header("Call-ID", &call_id).unwrap();
        reg.push_header("CSeq", &format!("{cseq} REGISTER"))
            .unwrap();
        reg.push_header("Contact", &contact(transport, local))
            .unwrap();
        reg.push_header("Expires", "600").unwrap();
        let mut cn = || sipsimple::driver::ids::random_hex(8);
        digest.authorize(&mut reg, &mut cn).unwrap();
        let mut rx = engine.send_request(reg.clone(), peer);
        let mut last = 0;
        while let Some(ev) = rx.recv().await {
            if let ClientEvent::Response(r) = ev {
                last = r.status().unwrap().0;
                if last == 401 || last == 407 {
                    if digest.handle_challenge(&r, &mut reg, &mut cn).is_err() {
                        return last;
                    }
                    cseq += 1;
                    break;
                } else if last >= 200 {
                    return last;
                }
            } else {
                return 0;
            }
        }
        if !(last == 401 || last == 407) {
            return last;
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn digest_answer_is_accepted_by_sipp_registrar() {
    if !sipp_available() {
        return;
    }
    let transport = TransportKind::Udp;
    let (engine, _events, local) = start_engine(transport).await;
    let port = free_port();
    let sipp = run_sipp(port, &["-t", "u1", "-m", "1"], Some(REGISTRAR_401));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let remote = SocketAddr::from(([127, 0, 0, 1], port));
    let code = register(&engine, transport, local, remote, "s3cret").await;
    assert_eq!(code, 200);
    let (code, errors) = sipp.finish().await;
    assert_eq!(code, 0, "{errors}");

    // The wrong password is refused by SIPp's check and we get 403.
    let port = free_port();
    let sipp = run_sipp(port, &["-t", "u1", "-m", "1"], Some(REGISTRAR_401));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let remote = SocketAddr::from(([127, 0, 0, 1], port));
    let code = register(&engine, transport, local, remote, "wrong").await;
    assert_eq!(code, 403);
    let (code, _) = sipp.finish().await;
    assert_ne!(
        code, 0,
        "sipp saw the failed authentication as a failed call"
    );
    engine.stop();
}
