//! The datagram parser, the UA screening and the printer: no panic, and what
//! parses prints to something that parses again to the same start line and body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::sip::screen::{build_response, screen_request, Capabilities};
use sipsimple::proto::sip::{Limits, SipMessage};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match SipMessage::parse_datagram(data, &limits) {
        Ok(m) => {
            let again = SipMessage::parse_datagram(&m.to_bytes(), &limits).expect("printed message parses");
            assert_eq!(again.start_line(), m.start_line());
            assert_eq!(again.body(), m.body());
            if m.is_request() {
                let _ = screen_request(&m, &Capabilities::default());
                let _ = m.vias();
                let _ = (m.from(), m.to(), m.cseq());
            }
        }
        Err(e) => {
            if let (Some(code), Some(p)) = (e.response_code(), e.partial.as_ref()) {
                let _ = build_response(p, code, "Bad Request", Some("x"));
            }
        }
    }
});
