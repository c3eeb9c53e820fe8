//! Parse and print throughput of the SIP message layer on three typical
//! messages, against a baseline measured in the same run: bare framing (find
//! the blank line, read nothing, copy the bytes), the least any parser must do.
//!
//!   cargo bench --bench sip_parse
//!
//! Messages per second = 1 / time per iteration; the README's table gives the
//! ratio to the baseline.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipsimple::proto::sip::{Limits, SipMessage};

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n\
Supported: replaces, timer\r\n\
User-Agent: libsipsimple\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 142\r\n\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const REGISTER: &str = "REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1\r\n\
Authorization: Digest username=\"bob\", realm=\"biloxi.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:registrar.biloxi.example.com\", response=\"245f23415f11432b3434341c022\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

const OK200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8;received=192.0.2.101;rport=5060\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Length: 0\r\n\r\n";

fn bare_framing(data: &[u8]) -> Vec<u8> {
    let end = memchr::memmem::find(data, b"\r\n\r\n").map_or(data.len(), |p| p + 4);
    data[..end].to_vec()
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("sip");
    for (name, msg) in [
        ("invite_sdp", INVITE),
        ("register_auth", REGISTER),
        ("ok200", OK200),
    ] {
        let bytes = msg.as_bytes();
        assert!(
            SipMessage::parse_datagram(bytes, &limits).is_ok(),
            "{name} must parse"
        );
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}/baseline_bare_framing"), |b| {
            b.iter(|| black_box(bare_framing(black_box(bytes))))
        });
        g.bench_function(format!("{name}/parse"), |b| {
            b.iter(|| black_box(SipMessage::parse_datagram(black_box(bytes), &limits).ok()))
        });
        let parsed = SipMessage::parse_datagram(bytes, &limits).unwrap();
        g.bench_function(format!("{name}/print"), |b| {
            b.iter(|| black_box(parsed.to_bytes()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
