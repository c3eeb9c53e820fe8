//! The engine against SIPp on 127.0.0.1: SIPp's built-in UAC calling our
//! UAS, SIPp's built-in UAS answering our UAC, over UDP and TCP, and a
//! registrar scenario that challenges with 401 and checks our digest.
//!
//! SIPp is the Debian package `sip-tester`. Without it these tests say so
//! and pass, except under CI (`CI` set), where its absence is a failure.

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::sipp::{free_port, run_sipp, sipp_available};
use common::{call, contact, serve_uas, start_engine, via};
use sipsimple::driver::engine::{ClientEvent, Engine};
use sipsimple::driver::ids::{new_call_id, new_tag};
use sipsimple::proto::sip::auth::{Credentials, DigestClient};
use sipsimple::proto::sip::transaction::{Peer, TransportKind};
use sipsimple::proto::sip::{SipMessage, Uri};

async fn sipp_calls_us(transport: TransportKind) {
    if !sipp_available() {
        return;
    }
    let (engine, events, local) = start_engine(transport).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let uas = tokio::spawn(serve_uas(engine.clone(), events, stop_rx));
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
