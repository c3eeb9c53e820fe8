//! Shared pieces of the engine integration tests: a minimal UAS and UAC
//! built from the library's dialog, screening and digest parts.
#![allow(dead_code)]

/// Whether a peer program runs (`program arg` starts). Without it a test
/// says so and passes, except under CI (`CI` set), where it must be there.
pub fn peer_available(program: &str, arg: &str, package: &str) -> bool {
    let ok = std::process::Command::new(program)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} (Debian package {package}) is required under CI"
        );
        eprintln!("{program} not installed: skipping");
    }
    ok
}

/// A two-thread runtime for tests that drive the async MSRP library.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until something on UDP `port` of 127.0.0.1 answers an OPTIONS
/// (any response: it parses SIP and listens); panics naming `what` after
/// 15 s. Peers started by a test are called only once they are up.
pub fn wait_for_sip_udp(port: u16, what: &str) {
    use std::time::{Duration, Instant};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    for n in 0u32.. {
        let msg = format!(
            "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKping{n}\r\n\
             From: <sip:t@127.0.0.1>;tag=p\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: ping{port}\r\n\
             CSeq: {} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            n + 1
        );
        let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", port));
        if sock.recv_from(&mut buf).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not come up on UDP port {port}"
        );
    }
}

pub mod accounts;
pub mod apps;
pub mod dns;
pub mod kamailio;
pub mod media;
pub mod pattern;
pub mod pki;
pub mod sipp;

use std::net::SocketAddr;

use sipsimple::driver::engine::{numeric_peer, ClientEvent, Engine, EngineConfig, EngineEvent};
use sipsimple::driver::ids::{new_branch, new_call_id, new_tag};
use sipsimple::proto::sip::dialog::{Dialog, Dialogs, Routing};
use sipsimple::proto::sip::screen::{
    build_rejection, build_response, screen_request, Capabilities,
};
use sipsimple::proto::sip::transaction::{Peer, TransportKind};
use sipsimple::proto::sip::{SipMessage, Uri};
use tokio::sync::mpsc;

/// An engine on 127.0.0.1 with UDP and TCP on free ports.
pub async fn local_engine() -> (Engine, mpsc::UnboundedReceiver<EngineEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let cfg = EngineConfig {
        udp: Some(any),
        tcp: Some(any),
        ..EngineConfig::default()
    };
    (Engine::start(cfg, tx).await.expect("engine starts"), rx)
}

pub async fn start_engine(
    transport: TransportKind,
) -> (Engine, mpsc::UnboundedReceiver<EngineEvent>, SocketAddr) {
    let (engine, rx) = local_engine().await;
    let local = engine.local_addr(transport).unwrap();
    (engine, rx, local)
}

/// An out-of-dialog request from `local` to `remote` (IPv4 or IPv6).
pub fn request(
    method: &str,
    t: TransportKind,
    local: SocketAddr,
    remote: SocketAddr,
) -> SipMessage {
    let target = Uri::parse(&format!("sip:bob@{remote}")).unwrap();
    let mut m = SipMessage::request(method, &target).unwrap();
    m.push_header("Via", &via(t, local)).unwrap();
    m.push_header("Max-Forwards", "70").unwrap();
    m.push_header(
        "From",
        &format!("\"Alice\" <sip:alice@{local}>;tag={}", new_tag()),
    )
    .unwrap();
    m.push_header("To", &format!("<{target}>")).unwrap();
    m.push_header("Call-ID", &new_call_id()).unwrap();
    m.push_header("CSeq", &format!("1 {method}")).unwrap();
    m.push_header("User-Agent", "sipsimple-test").unwrap();
    m
}

/// Send a request and return the final status (bounded wait).
pub async fn send(engine: &Engine, m: SipMessage, t: TransportKind, remote: SocketAddr) -> u16 {
    let mut rx = engine.send_request(
        m,
        Peer {
            transport: t,
            addr: remote,
        },
    );
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await {
            Ok(Some(ClientEvent::Response(r))) if r.status().unwrap().0 < 200 => continue,
            Ok(Some(ClientEvent::Response(r))) => return r.status().unwrap().0,
            other => panic!("{other:?}"),
        }
    }
}

pub fn via(transport: TransportKind, local: SocketAddr) -> String {
    format!(
        "SIP/2.0/{} {local};branch={};rport",
        transport.as_str(),
        new_branch()
    )
}

pub fn contact(transport: TransportKind, local: SocketAddr) -> String {
    match transport {
        TransportKind::Udp => format!("<sip:ua@{local}>"),
        t => format!("<sip:ua@{local};transport={}>", t.as_str().to_lowercase()),
    }
}

pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A UAS good enough for SIPp's uac scenario: 180 and 200 for INVITE, 200
/// for BYE inside a dialog, 481 outside, and the UA-level rejections.
/// Returns (calls answered, ACKs seen, BYEs answered) when `stop` fires.
pub async fn serve_uas(
    engine: Engine,
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
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
            EngineEvent::Request {
                key,
                request,
                source,
            } => {
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
                            // Contact for the transport the INVITE came over.
                            let t = source.transport;
                            let here = engine.local_addr(t).unwrap();
                            ok.push_header("Contact", &contact(t, here)).unwrap();
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

/// One call from our UAC: INVITE, 2xx, ACK, BYE, 200.
pub async fn call(
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
