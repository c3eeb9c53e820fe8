//! SRTP and SRTCP from the network and a=crypto values from SDP: no panic
//! on any input; whatever unprotects is a packet that protects again under
//! the same key to bytes that unprotect to it; a parsed a=crypto prints
//! to a value that parses back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::rtp::srtp::{CryptoAttribute, MasterKey, SrtpContext, SrtpProfile};

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_bytes(&[7u8; 30]).expect("30 bytes");
    for profile in SrtpProfile::ALL {
        let mut rx = SrtpContext::new(profile, &key);
        if let Ok(clear) = rx.unprotect(data) {
            let mut tx = SrtpContext::new(profile, &key);
            let again = tx.protect(&clear).expect("a packet that unprotected protects");
            let mut rx2 = SrtpContext::new(profile, &key);
            assert_eq!(rx2.unprotect(&again).expect("it unprotects"), clear);
        }
        let _ = rx.unprotect_rtcp(data);
        // Our own protection of arbitrary input never panics either.
        let mut tx = SrtpContext::new(profile, &key);
        let _ = tx.protect(data);
        let _ = tx.protect_rtcp(data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(a) = CryptoAttribute::parse(text) {
            assert_eq!(CryptoAttribute::parse(&a.to_value()), Some(a));
        }
    }
});
