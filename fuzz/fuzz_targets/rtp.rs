//! RTP parsing: no panic on any datagram; a parsed packet written back
//! (fixed header and payload) parses to the same header and payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::rtp::RtpPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let mut out = Vec::new();
        p.header.write(p.payload, &mut out);
        let again = RtpPacket::parse(&out).expect("written packet parses");
        assert_eq!(again.header, p.header);
        assert_eq!(again.payload, p.payload);
    }
});
