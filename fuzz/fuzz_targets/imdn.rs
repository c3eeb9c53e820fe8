//! IMDN documents (RFC 5438) and the XML reader under them: no panic on
//! any input, and a parsed document prints to XML that parses back to the
//! same document. The same bytes read as a CPIM message exercise the
//! disposition request reader.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::cpim::CpimMessage;
use sipsimple::proto::imdn::{requested, Imdn};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Imdn::parse(data) {
        let again = Imdn::parse(d.to_xml().as_bytes()).expect("a printed document parses");
        assert_eq!(again, d);
    }
    let _ = sipsimple::proto::xml::parse(data, Default::default());
    if let Ok(m) = CpimMessage::parse(data) {
        let _ = requested(&m);
    }
});
