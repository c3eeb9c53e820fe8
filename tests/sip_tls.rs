//! SIP over TLS between two engines on 127.0.0.1, with a private CA made for
//! the test: verification against a CA file, refusal of an unknown issuer or
//! a wrong name, the per-request switch that turns verification off, a full
//! call over TLS, and start-up errors for a TLS listener without a usable
//! certificate.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pki::make_pki;
use common::{call, serve_uas, via};
use sipsimple::driver::engine::{ClientEvent, Engine, EngineConfig, SendOptions, StartError};
use sipsimple::driver::ids::{new_call_id, new_tag};
use sipsimple::driver::tls::TlsSettings;
use sipsimple::proto::sip::transaction::{Peer, TransportKind};
use sipsimple::proto::sip::{SipMessage, Uri};
use tokio::sync::mpsc;

fn lo() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn engine(
    tls: TlsSettings,
    listen: bool,
) -> Result<
    (
        Engine,
        mpsc::UnboundedReceiver<sipsimple::driver::engine::EngineEvent>,
    ),
    StartError,
> {
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg = EngineConfig {
        udp: None,
        tcp: Some(lo()),
        tls: listen.then(lo),
        tls_settings: tls,
        ..EngineConfig::default()
    };
    Engine::start(cfg, tx).await.map(|e| (e, rx))
}

fn options(local: SocketAddr, remote: SocketAddr) -> SipMessage {
    let target = Uri::parse(&format!("sips:ua@{remote}")).unwrap();
    let mut m = SipMessage::request("OPTIONS", &target).unwrap();
    m.push_header("Via", &via(TransportKind::Tls, local))
        .unwrap();
    m.push_header("Max-Forwards", "70").unwrap();
    m.push_header("From", &format!("<sips:a@{local}>;tag={}", new_tag()))
        .unwrap();
    m.push_header("To", &format!("<{target}>")).unwrap();
    m.push_header("Call-ID", &new_call_id()).unwrap();
    m.push_header("CSeq", "1 OPTIONS").unwrap();
    m
}

async fn ping(a: &Engine, remote: SocketAddr, opts: SendOptions) -> Result<u16, String> {
    let local = a.local_addr(TransportKind::Tcp).unwrap();
    let mut rx = a.send_request_with(
        options(local, remote),
        Peer {
            transport: TransportKind::Tls,
            addr: remote,
        },
        opts,
    );
    match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        Ok(Some(ClientEvent::Response(r))) => Ok(r.status().unwrap().0),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tls_verification_and_the_per_request_switch() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, server_file) = make_pki(dir.path());
    let (server, sev) = engine(
        TlsSettings {
            certificate_file: Some(server_file),
            ..TlsSettings::default()
        },
        true,
    )
    .await
    .unwrap();
    let remote = server.local_addr(TransportKind::Tls).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let uas = tokio::spawn(serve_uas(server.clone(), sev, stop_rx));

    // Trusting our CA: the name "localhost" and the address both verify.
    let (trusting, _e1) = engine(
        TlsSettings {
            ca_file: Some(ca_file.clone()),
            use_system_roots: false,
            ..TlsSettings::default()
        },
        false,
    )
    .await
    .unwrap();
    let by_name = SendOptions {
        tls_server_name: Some("localhost".into()),
        tls_verify: None,
    };
    assert_eq!(ping(&trusting, remote, by_name).await, Ok(200));
    assert_eq!(
        ping(&trusting, remote, SendOptions::default()).await,
        Ok(200)
    );

    // Not trusting it (system roots only): the handshake is refused...
    let (strict, _e2) = engine(TlsSettings::default(), false).await.unwrap();
    let err = ping(&strict, remote, SendOptions::default())
        .await
        .unwrap_err();
    assert!(err.contains("TransportError"), "{err}");
    // ...unless the request turns verification off (the account switch).
    let lax = SendOptions {
        tls_server_name: None,
        tls_verify: Some(false),
    };
    let (strict2, _e3) = engine(TlsSettings::default(), false).await.unwrap();
    assert_eq!(ping(&strict2, remote, lax).await, Ok(200));

    // Trusting the CA but asking for a name the certificate does not carry.
    let (wrong, _e4) = engine(
        TlsSettings {
            ca_file: Some(ca_file),
            use_system_roots: false,
            ..TlsSettings::default()
        },
        false,
    )
    .await
    .unwrap();
    let other = SendOptions {
        tls_server_name: Some("sip.example.com".into()),
        tls_verify: None,
    };
    let err = ping(&wrong, remote, other).await.unwrap_err();
    assert!(err.contains("TransportError"), "{err}");

    // A whole call over TLS: INVITE, 200, ACK, BYE, 200.
    let local = trusting.local_addr(TransportKind::Tcp).unwrap();
    call(&trusting, TransportKind::Tls, local, remote)
        .await
        .unwrap();
    let _ = stop_tx.send(());
    uas.await.unwrap();
    assert_eq!(server.stats().parse_errors, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn tls_listener_needs_a_usable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = engine(TlsSettings::default(), true).await.err().unwrap();
    assert!(matches!(missing, StartError::Tls(_)), "{missing}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let bad = engine(
        TlsSettings {
            certificate_file: Some(junk.clone()),
            ..TlsSettings::default()
        },
        true,
    )
    .await
    .err()
    .unwrap();
    assert!(bad.to_string().contains("junk.pem"), "{bad}");
    let bad_ca = engine(
        TlsSettings {
            ca_file: Some(junk),
            ..TlsSettings::default()
        },
        false,
    )
    .await
    .err()
    .unwrap();
    assert!(bad_ca.to_string().contains("junk.pem"), "{bad_ca}");
}
