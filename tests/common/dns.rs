//! A small authoritative DNS responder on 127.0.0.1 for tests (built on
//! hickory's message codec) and helpers to write its zone.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

pub fn name(s: &str) -> Name {
    Name::from_ascii(format!("{s}.")).unwrap()
}

pub fn naptr(owner: &str, order: u16, pref: u16, service: &str, repl: &str) -> Record {
    Record::from_rdata(
        name(owner),
        60,
        RData::NAPTR(NAPTR::new(
            order,
            pref,
            b"s".to_vec().into_boxed_slice(),
            service.as_bytes().to_vec().into_boxed_slice(),
            Vec::new().into_boxed_slice(),
            name(repl),
        )),
    )
}

pub fn srv(owner: &str, prio: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        60,
        RData::SRV(SRV::new(prio, weight, port, name(target))),
    )
}

pub fn a(owner: &str) -> Record {
    Record::from_rdata(name(owner), 60, RData::A(A(Ipv4Addr::LOCALHOST)))
}

/// Answer queries from `zone`: matching records, NOERROR with no answer for
/// a known name and another type, NXDOMAIN otherwise.
pub async fn dns_server(zone: Vec<Record>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let zone = Arc::new(zone);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.authoritative = true;
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            let mut known = false;
            for query in &q.queries {
                r.add_query(query.clone());
                for rec in zone.iter() {
                    if rec.name.to_lowercase() == query.name.to_lowercase() {
                        known = true;
                        if rec.record_type() == query.query_type
                            || query.query_type == RecordType::ANY
                        {
                            r.add_answer(rec.clone());
                        }
                    }
                }
            }
            if !known {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from).await;
            }
        }
    });
    addr
}
