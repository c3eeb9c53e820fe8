//! RFC 5547 file-selector and file-range values, and file names from the
//! network: no panic on any input, a parsed selector or range prints to
//! text that parses back the same, and a sanitised name is always safe to
//! create inside a directory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::sdp::file_transfer::{sanitize_file_name, FileRange, FileSelector, MAX_SAFE_NAME};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = FileSelector::parse(&text) {
        let again = FileSelector::parse(&s.to_string()).expect("a printed selector parses");
        assert_eq!(again, s);
    }
    if let Ok(r) = FileRange::parse(&text) {
        assert_eq!(FileRange::parse(&r.to_string()).expect("a printed range parses"), r);
    }
    let safe = sanitize_file_name(&text);
    assert!(!safe.is_empty() && safe.len() <= MAX_SAFE_NAME);
    assert!(!safe.contains(['/', '\\']) && !safe.starts_with('.'));
    assert!(!safe.chars().any(char::is_control));
});
