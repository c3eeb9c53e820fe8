//! The MSRP parser fed in pieces whose size comes from the input, each
//! piece handed to a session core as the driver does: no panic, bounded
//! buffering, and every piece accounted for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sipsimple::proto::msrp::session::{SessionConfig, SessionCore};
use sipsimple::proto::msrp::{ChunkParser, MsrpUri, ParserLimits, Piece};

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let step = 1 + step as usize;
    let limits = ParserLimits { max_head: 2048, max_headers: 16 };
    let mut p = ChunkParser::new(limits);
    let me = MsrpUri::new(false, "127.0.0.1", 3000, "bob1");
    let peer = MsrpUri::new(false, "127.0.0.1", 2000, "alice1");
    let mut core = SessionCore::new(vec![me], vec![peer], SessionConfig::default(), 7);
    for piece in rest.chunks(step) {
        p.push(piece);
        loop {
            match p.next_piece() {
                Ok(Some(Piece::Head { head, defect })) => {
                    let _ = core.handle_head(head, defect);
                }
                Ok(Some(Piece::Data(d))) => {
                    assert!(!d.is_empty());
                    let _ = core.handle_data(d.len());
                }
                Ok(Some(Piece::End(f))) => core.handle_end(f),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        while core.poll_transmit().is_some() {}
        while core.poll_event().is_some() {}
        assert!(p.buffered() <= 2048 + 64 + step);
    }
    core.handle_closed();
});
