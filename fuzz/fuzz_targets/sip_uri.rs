//! URI parsing: no panic, and printing a parsed URI gives one that parses to
//! the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::sip::Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(u) = Uri::parse(s) {
        let printed = u.to_string();
        let again = Uri::parse(&printed).expect("printed URI parses");
        assert_eq!(again, u, "{printed}");
    }
});
