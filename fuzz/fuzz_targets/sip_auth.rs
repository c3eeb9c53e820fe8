//! Digest challenges: parsing never panics, and any challenge that parses
//! can be answered or refused with an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::sip::auth::{answer, parse_auth_params, Challenge, DigestInput};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = parse_auth_params(s);
    if let Ok(ch) = Challenge::parse(s) {
        let _ = answer(
            &ch,
            &DigestInput {
                username: "alice",
                password: "secret",
                method: "REGISTER",
                uri: "sip:example.org",
                body: b"",
                nc: 1,
                cnonce: "0a4f113b",
            },
        );
    }
});
