//! The stream framer fed in pieces whose sizes come from the input: no panic,
//! bounded buffering.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::sip::{Limits, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let step = 1 + step as usize;
    let limits = Limits { max_stream_message: 4096, ..Limits::default() };
    let mut f = StreamFramer::new(limits);
    for piece in rest.chunks(step) {
        f.push(piece);
        loop {
            match f.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(f.buffered() <= 4096 + step);
    }
});
