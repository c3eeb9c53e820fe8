//! is-composing documents: no panic on any input, and a parsed document
//! prints to XML that parses back to the same document.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::iscomposing::IsComposing;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = IsComposing::parse(data) {
        let _ = d.valid_for();
        let again = IsComposing::parse(d.to_xml().as_bytes()).expect("a printed document parses");
        assert_eq!(again, d);
    }
});
