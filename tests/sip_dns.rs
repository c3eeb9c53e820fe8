//! RFC 3263 server location against a DNS server the test runs on
//! 127.0.0.1 (a small authoritative responder built on hickory's message
//! codec), and failover across the routes it gives: a dead TCP target, a
//! server answering 503, then one that answers.

mod common;

use std::net::SocketAddr;

use common::dns::{a, dns_server, naptr, srv};
use common::{local_engine, serve_uas, via};
use sipsimple::driver::dns::{send_with_failover, DNSLookup, DnsError, Route};
use sipsimple::driver::engine::{Engine, EngineEvent};
use sipsimple::driver::ids::{new_call_id, new_tag};
use sipsimple::proto::sip::screen::build_response;
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::proto::sip::{SipMessage, Uri};
use tokio::sync::mpsc;

fn port_nobody_listens_on() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server that is up but overloaded: 503 to everything.
async fn answer_503(engine: Engine, mut rx: mpsc::UnboundedReceiver<EngineEvent>) {
    while let Some(ev) = rx.recv().await {
        if let EngineEvent::Request { key, request, .. } = ev {
            let r = build_response(&request, 503, "Service Unavailable", Some("t")).unwrap();
            engine.respond(key, r);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn rfc3263_lookup_and_failover() {
    use TransportKind::*;
    let (busy, busy_rx) = local_engine().await;
    let (good, good_rx) = local_engine().await;
    tokio::spawn(answer_503(busy.clone(), busy_rx));
    let (_stop, stop_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve_uas(good.clone(), good_rx, stop_rx));
    let dead = port_nobody_listens_on();
    let busy_tcp = busy.local_addr(Tcp).unwrap().port();
    let good_udp = good.local_addr(Udp).unwrap().port();

    let zone = vec![
        // Unsorted, as some servers return them; one service we lack.
        naptr("example.test", 20, 10, "SIP+D2U", "_sip._udp.example.test"),
        naptr("example.test", 5, 10, "SIP+D2S", "_sip._sctp.example.test"),
        naptr("example.test", 10, 10, "SIP+D2T", "_sip._tcp.example.test"),
        srv("_sip._tcp.example.test", 10, 0, dead, "dead.example.test"),
        srv(
            "_sip._tcp.example.test",
            20,
            0,
            busy_tcp,
            "busy.example.test",
        ),
        srv(
            "_sip._udp.example.test",
            10,
            0,
            good_udp,
            "good.example.test",
        ),
        a("dead.example.test"),
        a("busy.example.test"),
        a("good.example.test"),
        srv(
            "_sip._udp.nonaptr.test",
            10,
            0,
            good_udp,
            "good.example.test",
        ),
        a("plain.test"),
    ];
    let ns = dns_server(zone).await;
    let dns = DNSLookup::with_nameservers(&[ns]).unwrap();
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let uri = |s: &str| Uri::parse(s).unwrap();

    // NAPTR (sorted by order), then SRV by priority, then A.
    let routes = dns
        .lookup_sip_proxy(&uri("sip:example.test"), &[Udp, Tcp])
        .await
        .unwrap();
    let got: Vec<_> = routes.iter().map(|r| (r.transport, r.address)).collect();
    assert_eq!(
        got,
        vec![(Tcp, lo(dead)), (Tcp, lo(busy_tcp)), (Udp, lo(good_udp))]
    );
    assert!(routes.iter().all(|r| r.tls_name == "example.test"));
    // Without NAPTR support for the listed transports only UDP is kept.
    let routes = dns
        .lookup_sip_proxy(&uri("sip:example.test"), &[Udp])
        .await
        .unwrap();
    assert_eq!(routes.len(), 1);
    // transport= skips NAPTR and asks SRV for that transport.
    let routes = dns
        .lookup_sip_proxy(&uri("sip:example.test;transport=tcp"), &[Udp, Tcp])
        .await
        .unwrap();
    assert_eq!(routes[0].address, lo(dead));
    // No NAPTR: SRV per transport.
    let routes = dns
        .lookup_sip_proxy(&uri("sip:nonaptr.test"), &[Tcp, Udp])
        .await
        .unwrap();
    assert_eq!(routes[0].transport, Udp);
    assert_eq!(routes[0].address, lo(good_udp));
    // No NAPTR nor SRV: the A record at 5060 over UDP.
    let routes = dns
        .lookup_sip_proxy(&uri("sip:plain.test"), &[Udp, Tcp])
        .await
        .unwrap();
    assert_eq!((routes[0].transport, routes[0].address), (Udp, lo(5060)));
    // Explicit port: A only. Numeric host: no DNS at all.
    let routes = dns
        .lookup_sip_proxy(&uri("sip:plain.test:5099"), &[Udp])
        .await
        .unwrap();
    assert_eq!(routes[0].address, lo(5099));
    let routes = dns
        .lookup_sip_proxy(&uri("sip:127.0.0.1:7000;transport=tcp"), &[Udp, Tcp])
        .await
        .unwrap();
    assert_eq!(
        routes,
        vec![Route {
            address: lo(7000),
            transport: Tcp,
            tls_name: "127.0.0.1".into()
        }]
    );
    assert!(matches!(
        dns.lookup_sip_proxy(&uri("sip:nowhere.test"), &[Udp]).await,
        Err(DnsError::NotFound(_))
    ));

    // Failover: the dead TCP target (transport error), the 503 server, then
    // the one that answers.
    let client = local_engine().await.0;
    let routes = dns
        .lookup_sip_proxy(&uri("sip:example.test"), &[Udp, Tcp])
        .await
        .unwrap();
    let (used, resp) = send_with_failover(&client, &routes, None, |r: &Route| {
        let local = client.local_addr(r.transport).unwrap();
        let target = Uri::parse("sip:example.test").unwrap();
        let mut m = SipMessage::request("OPTIONS", &target).unwrap();
        m.push_header("Via", &via(r.transport, local)).unwrap();
        m.push_header("Max-Forwards", "70").unwrap();
        m.push_header("From", &format!("<sip:a@{local}>;tag={}", new_tag()))
            .unwrap();
        m.push_header("To", "<sip:example.test>").unwrap();
        m.push_header("Call-ID", &new_call_id()).unwrap();
        m.push_header("CSeq", "1 OPTIONS").unwrap();
        m
    })
    .await
    .unwrap();
    assert_eq!(resp.status().unwrap().0, 200);
    assert_eq!((used.transport, used.address), (Udp, lo(good_udp)));
    let st = client.stats();
    assert_eq!(st.transactions.transport_errors, 1);
    assert!(busy.stats().transactions.requests_in >= 1);
}
