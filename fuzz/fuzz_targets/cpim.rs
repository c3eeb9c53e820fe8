//! message/cpim parsing: no panic on any input, every accessor works on
//! what parses, and a parsed message prints to bytes that parse back to
//! the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::cpim::CpimMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = CpimMessage::parse(data) {
        let _ = m.from();
        let _ = m.subjects();
        let _ = m.content_type();
        if let Ok(ns) = m.namespaces() {
            for (_, uri) in ns {
                let _ = m.extension(&uri, "Message-ID");
            }
        }
        let printed = m.to_bytes();
        let again = CpimMessage::parse(&printed).expect("a printed message parses");
        assert_eq!(again, m);
    }
});
