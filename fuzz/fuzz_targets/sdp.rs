//! SDP parsing: no panic on any input, and a parsed description prints to
//! text that parses back to the same value; the same for a=fingerprint.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::sdp::{Fingerprint, SessionDescription};

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = SessionDescription::parse(data) {
        let printed = sd.to_bytes();
        let again = SessionDescription::parse(&printed).expect("printed SDP parses");
        assert_eq!(again, sd, "{}", String::from_utf8_lossy(&printed));
        for i in 0..sd.media.len() {
            let _ = sd.media_direction(i);
            let _ = sd.media[i].rtpmaps();
            let _ = sd.media[i].setup();
            // a=fingerprint values parse or fail cleanly, and what parses
            // prints back to itself.
            for v in sd.media[i].attribute_values("fingerprint") {
                if let Ok(f) = Fingerprint::parse(v) {
                    assert_eq!(Fingerprint::parse(&f.to_string()), Ok(f));
                }
            }
        }
    }
});
