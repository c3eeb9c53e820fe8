//! Parser and session core tests: RFC 4975 examples, pieces of any size,
//! bodies that look like end-lines, malformed input, and two session cores
//! talking through parsers in virtual time.

use std::time::{Duration, Instant};

use super::session::{media_type_accepted, Event, OutgoingMessage, SessionConfig, SessionCore};
use super::*;

/// Parse `input` fed in pieces of `step` bytes; returns (head, defect,
/// body, flag) per chunk.
type Parsed = Vec<(ChunkHead, Option<String>, Vec<u8>, ContFlag)>;

fn parse_all(input: &[u8], step: usize) -> Result<Parsed, FramingError> {
    let mut p = ChunkParser::default();
    let mut out: Parsed = Vec::new();
    let mut cur: Option<(ChunkHead, Option<String>, Vec<u8>)> = None;
    for piece in input.chunks(step.max(1)) {
        p.push(piece);
        while let Some(x) = p.next_piece()? {
            match x {
                Piece::Head { head, defect } => {
                    assert!(cur.is_none());
                    cur = Some((head, defect, Vec::new()));
                }
                Piece::Data(d) => {
                    assert!(!d.is_empty());
                    cur.as_mut()
                        .expect("data after a head")
                        .2
                        .extend_from_slice(d);
                }
                Piece::End(f) => {
                    let (h, d, b) = cur.take().expect("end after a head");
                    out.push((h, d, b, f));
                }
            }
        }
    }
    assert!(cur.is_none(), "a chunk left open");
    assert!(p.at_boundary());
    Ok(out)
}

const RFC_SEND: &[u8] = b"MSRP a786hjs2 SEND\r\n\
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
Message-ID: 87652491\r\n\
Byte-Range: 1-25/25\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hey Bob, are you there?\r\n\
-------a786hjs2$\r\n";

const RFC_200: &[u8] = b"MSRP a786hjs2 200 OK\r\n\
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
-------a786hjs2$\r\n";

#[test]
fn rfc_example_in_any_piece_size() {
    let mut both = RFC_SEND.to_vec();
    both.extend_from_slice(RFC_200);
    for step in [1, 2, 3, 7, 16, 50, 1000] {
        let chunks = parse_all(&both, step).unwrap();
        assert_eq!(chunks.len(), 2, "step {step}");
        let (h, defect, body, flag) = &chunks[0];
        assert!(defect.is_none());
        assert_eq!(h.method(), Some("SEND"));
        assert_eq!(h.transaction_id, "a786hjs2");
        assert_eq!(body, b"Hey Bob, are you there?");
        assert_eq!(*flag, ContFlag::End);
        assert_eq!(h.message_id(), Some("87652491"));
        let r = h.byte_range().unwrap().unwrap();
        assert_eq!((r.start, r.end, r.total), (1, Some(25), Some(25)));
        assert_eq!(
            h.to_path().unwrap()[0].session_id.as_deref(),
            Some("kjhd37s2s20w2a")
        );
        let (r, _, body, _) = &chunks[1];
        assert_eq!(r.code(), Some(200));
        assert_eq!(r.comment(), Some("OK"));
        assert!(body.is_empty());
        // The printer gives the same bytes back.
        assert_eq!(
            h.to_bytes(b"Hey Bob, are you there?", ContFlag::End),
            RFC_SEND
        );
        assert_eq!(r.to_bytes(b"", ContFlag::End), RFC_200);
    }
}

#[test]
fn bodies_that_look_like_end_lines_are_data() {
    let body: &[u8] = b"a\r\n-------a786hjs2x\r\nb\r\n-------other99$\r\nc\r\n-------a786hjs2$ \r\n-------a786hjs2";
    let mut h = ChunkHead::request("a786hjs2", "SEND");
    h.push_header("To-Path", "msrp://b:1/s;tcp");
    h.push_header("Content-Type", "text/plain");
    let mut wire = h.to_bytes(body, ContFlag::More);
    wire.extend_from_slice(&h.to_bytes(b"", ContFlag::Abort));
    for step in [1, 5, 13, 4096] {
        let chunks = parse_all(&wire, step).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].2, body, "step {step}");
        assert_eq!(chunks[0].3, ContFlag::More);
        assert!(chunks[1].2.is_empty());
        assert_eq!(chunks[1].3, ContFlag::Abort);
    }
}

#[test]
fn empty_bodies_both_ways() {
    let with_crlf = b"MSRP abcd SEND\r\nTo-Path: msrp://b:1/s;tcp\r\nContent-Type: text/plain\r\n\r\n\r\n-------abcd$\r\n";
    let without = b"MSRP abcd SEND\r\nTo-Path: msrp://b:1/s;tcp\r\nContent-Type: text/plain\r\n\r\n-------abcd$\r\n";
    let bare = b"MSRP abcd SEND\r\n-------abcd+\r\n";
    for w in [&with_crlf[..], &without[..], &bare[..]] {
        for step in [1, 3, 100] {
            let c = parse_all(w, step).unwrap();
            assert_eq!(c.len(), 1);
            assert!(c[0].2.is_empty());
            assert!(c[0].1.is_none());
        }
    }
}

#[test]
fn a_large_body_streams_with_bounded_buffering() {
    let mut p = ChunkParser::default();
    let mut h = ChunkHead::request("bigbody1", "SEND");
    h.push_header("Content-Type", "application/octet-stream");
    let mut head = Vec::new();
    h.write_head(&mut head);
    head.extend_from_slice(b"\r\n");
    p.push(&head);
    // Nothing after the blank line yet: it could still be an empty body.
    assert!(p.next_piece().unwrap().is_none());
    let piece = vec![0x2du8; 65536]; // all dashes: the worst case for the search
    let mut got = 0usize;
    let mut heads = 0;
    for _ in 0..160 {
        p.push(&piece);
        while let Some(x) = p.next_piece().unwrap() {
            match x {
                Piece::Data(d) => got += d.len(),
                Piece::Head { .. } => heads += 1,
                Piece::End(_) => panic!("no end yet"),
            }
        }
        assert!(p.buffered() < 64);
    }
    assert_eq!(heads, 1);
    p.push(b"\r\n-------bigbody1$\r\n");
    loop {
        match p.next_piece().unwrap() {
            Some(Piece::Data(d)) => got += d.len(),
            Some(Piece::End(f)) => {
                assert_eq!(f, ContFlag::End);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, 160 * 65536);
}

#[test]
fn framing_violations_and_defects() {
    for bad in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"MSRP x SEND\r\n",
        b"MSRP abcd send\r\n",
        b"MSRP abcd 20 OK\r\n",
        b"MSRP abcd 099\r\n",
        b"MSRP abcd SEND extra\r\n",
        b"MSRP abcd SEND\r\n-------abcd!\r\n",
        b"\r\n",
    ] {
        assert!(
            parse_all(bad, 1).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A head longer than the limit.
    let mut long = b"MSRP abcd SEND\r\nX: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 20_000));
    let mut p = ChunkParser::default();
    p.push(&long);
    assert!(p.next_piece().is_err());
    // A header without a colon frames, with a defect.
    let c = parse_all(
        b"MSRP abcd SEND\r\nTo-Path msrp://x;tcp\r\n-------abcd$\r\n",
        4,
    )
    .unwrap();
    assert!(c[0].1.as_deref().unwrap().contains("bad header"));
    // Too many headers.
    let mut many = b"MSRP abcd SEND\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"-------abcd$\r\n");
    let c = parse_all(&many, 64).unwrap();
    assert_eq!(c[0].1.as_deref(), Some("too many headers"));
}

// ----- session cores -----

fn uri(host: &str, port: u16, sid: &str) -> MsrpUri {
    MsrpUri::new(false, host, port, sid)
}

struct Pair {
    a: SessionCore,
    b: SessionCore,
    pa: ChunkParser,
    pb: ChunkParser,
    /// Data received by each side: (message id, offset, bytes).
    got: [Vec<(String, u64, Vec<u8>)>; 2],
    events: [Vec<Event>; 2],
    now: Instant,
}

impl Pair {
    fn new(chunk_size: usize) -> Pair {
        Pair::with(SessionConfig {
            chunk_size,
            ..SessionConfig::default()
        })
    }

    /// Both sides with `cfg`.
    fn with(cfg: SessionConfig) -> Pair {
        let ua = uri("127.0.0.1", 2000, "alice1");
        let ub = uri("127.0.0.1", 3000, "bob1");
        Pair {
            a: SessionCore::new(vec![ua.clone()], vec![ub.clone()], cfg.clone(), 1),
            b: SessionCore::new(vec![ub], vec![ua], cfg, 2),
            pa: ChunkParser::default(),
            pb: ChunkParser::default(),
            got: [Vec::new(), Vec::new()],
            events: [Vec::new(), Vec::new()],
            now: Instant::now(),
        }
    }

    fn feed(
        core: &mut SessionCore,
        p: &mut ChunkParser,
        got: &mut Vec<(String, u64, Vec<u8>)>,
        wire: &[u8],
    ) {
        p.push(wire);
        let mut dest = None;
        while let Some(piece) = p.next_piece().unwrap() {
            match piece {
                Piece::Head { head, defect } => dest = core.handle_head(head, defect),
                Piece::Data(d) => {
                    if let Some(to) = core.handle_data(d.len()) {
                        got.push((to.message_id, to.offset, d.to_vec()));
                    }
                    let _ = &dest;
                }
                Piece::End(f) => core.handle_end(f),
            }
        }
    }

    /// Send everything side A has for `data` (one message), then deliver
    /// all control traffic both ways.
    fn send_from_a(&mut self, data: &[u8]) {
        while let Some(req) = self.a.next_chunk() {
            let off = req.offset as usize;
            let end = (off + req.max_len).min(data.len());
            let slice = if req.abort { &[][..] } else { &data[off..end] };
            let (head, tail) = self.a.frame_chunk(self.now, slice, false).unwrap();
            let mut wire = head;
            wire.extend_from_slice(slice);
            wire.extend_from_slice(&tail);
            Self::feed(&mut self.b, &mut self.pb, &mut self.got[1], &wire);
        }
        self.exchange();
    }

    fn exchange(&mut self) {
        loop {
            let mut moved = false;
            while let Some(w) = self.b.poll_transmit() {
                Self::feed(&mut self.a, &mut self.pa, &mut self.got[0], &w);
                moved = true;
            }
            while let Some(w) = self.a.poll_transmit() {
                Self::feed(&mut self.b, &mut self.pb, &mut self.got[1], &w);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = self.a.poll_event() {
            self.events[0].push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.events[1].push(e);
        }
    }
}

fn message(id: &str, size: usize, success: ReportMode, failure: ReportMode) -> OutgoingMessage {
    OutgoingMessage {
        message_id: id.into(),
        content_type: "application/octet-stream".into(),
        size: Some(size as u64),
        success_report: success,
        failure_report: failure,
        headers: Vec::new(),
        start: 0,
    }
}

fn reassemble(got: &[(String, u64, Vec<u8>)], mid: &str, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    for (m, off, d) in got {
        if m == mid {
            out[*off as usize..*off as usize + d.len()].copy_from_slice(d);
        }
    }
    out
}

#[test]
fn a_chunked_message_with_responses_and_a_success_report() {
    let mut n = Pair::new(1000);
    let data: Vec<u8> = (0..10_500u32).map(|i| (i * 7 % 251) as u8).collect();
    n.a.send_message(message("m1", data.len(), ReportMode::Yes, ReportMode::Yes));
    n.send_from_a(&data);
    assert_eq!(reassemble(&n.got[1], "m1", data.len()), data);
    assert!(n.events[1].contains(&Event::MessageComplete {
        message_id: "m1".into(),
        size: 10_500
    }));
    let oks = n.events[0]
        .iter()
        .filter(|e| matches!(e, Event::ChunkResponse { code: 200, .. }))
        .count();
    assert_eq!(oks, 11);
    assert!(n.events[0].iter().any(|e| matches!(
        e,
        Event::Report { message_id, code: 200, range: Some(r), .. }
            if message_id == "m1" && r.end == Some(10_500)
    )));
    assert_eq!(n.a.pending_transactions(), 0);
    assert_eq!(n.b.incoming_in_progress(), 0);
}

#[test]
fn failure_report_partial_and_no_send_no_200() {
    for fr in [ReportMode::Partial, ReportMode::No] {
        let mut n = Pair::new(100);
        n.a.send_message(message("m2", 450, ReportMode::No, fr));
        n.send_from_a(&[b'x'; 450]);
        assert!(!n.events[0]
            .iter()
            .any(|e| matches!(e, Event::ChunkResponse { .. })));
        assert!(n.events[1]
            .iter()
            .any(|e| matches!(e, Event::MessageComplete { .. })));
    }
}

#[test]
fn out_of_order_chunks_and_unknown_total() {
    let mut n = Pair::new(100);
    // Hand-made chunks: 101-200 first, then 1-100, then 201-250 with `$`.
    let mut chunk = |range: &str, body: &[u8], flag: ContFlag| {
        let mut h = n.a.request_head("SEND");
        h.push_header("Message-ID", "m3");
        h.push_header("Byte-Range", range);
        h.push_header("Content-Type", "text/plain");
        h.to_bytes(body, flag)
    };
    let w1 = chunk("101-200/*", &[2u8; 100], ContFlag::More);
    let w2 = chunk("1-100/*", &[1u8; 100], ContFlag::More);
    let w3 = chunk("201-250/*", &[3u8; 50], ContFlag::End);
    for w in [w1, w2, w3] {
        Pair::feed(&mut n.b, &mut n.pb, &mut n.got[1], &w);
    }
    n.exchange();
    assert!(n.events[1].contains(&Event::MessageComplete {
        message_id: "m3".into(),
        size: 250
    }));
    let all = reassemble(&n.got[1], "m3", 250);
    assert_eq!(&all[..100], &[1u8; 100]);
    assert_eq!(&all[100..200], &[2u8; 100]);
    assert_eq!(&all[200..], &[3u8; 50]);
}

#[test]
fn a_resumed_message_sends_only_the_rest_and_completes() {
    // The receiver kept the first 4,000 bytes of an earlier attempt.
    let mut n = Pair::with(SessionConfig {
        chunk_size: 1000,
        incoming_offset: 4000,
        ..SessionConfig::default()
    });
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let mut m = message("m5", data.len(), ReportMode::Yes, ReportMode::Yes);
    m.start = 4000;
    n.a.send_message(m);
    n.send_from_a(&data);
    assert!(n.events[1].contains(&Event::MessageComplete {
        message_id: "m5".into(),
        size: 10_000
    }));
    // Only bytes from 4,000 on crossed, at their offsets in the message.
    assert_eq!(n.got[1].first().map(|g| g.1), Some(4000));
    let sent: usize = n.got[1].iter().map(|g| g.2.len()).sum();
    assert_eq!(sent, 6000);
    assert_eq!(&reassemble(&n.got[1], "m5", 10_000)[4000..], &data[4000..]);
    assert!(n.events[0].iter().any(|e| matches!(
        e,
        Event::Report { message_id, code: 200, .. } if message_id == "m5"
    )));
    // Without the receiver's prefix the same chunks never complete.
    let mut n = Pair::new(1000);
    let mut m = message("m6", data.len(), ReportMode::No, ReportMode::Yes);
    m.start = 4000;
    n.a.send_message(m);
    n.send_from_a(&data);
    assert!(!n.events[1]
        .iter()
        .any(|e| matches!(e, Event::MessageComplete { .. })));
    // A start past the end sends one empty last chunk.
    let mut n = Pair::new(1000);
    let mut m = message("m7", 10, ReportMode::No, ReportMode::Yes);
    m.start = 50;
    n.a.send_message(m);
    n.send_from_a(&data[..10]);
    assert_eq!(n.a.queued(), 0);
}

#[test]
fn an_aborted_message_is_reported_as_such() {
    let mut n = Pair::new(100);
    n.a.send_message(message("m4", 1000, ReportMode::Yes, ReportMode::Yes));
    // Two chunks, then abort.
    for _ in 0..2 {
        let (head, tail) = n.a.frame_chunk(n.now, &[9u8; 100], false).unwrap();
        let mut w = head;
        w.extend_from_slice(&[9u8; 100]);
        w.extend_from_slice(&tail);
        Pair::feed(&mut n.b, &mut n.pb, &mut n.got[1], &w);
    }
    assert!(n.a.abort_message("m4"));
    n.send_from_a(&[]);
    assert!(n.events[1].contains(&Event::MessageAborted {
        message_id: "m4".into(),
        by_sender: true
    }));
    assert_eq!(n.b.incoming_in_progress(), 0);
    assert_eq!(n.a.queued(), 0);
}

fn response_code(core: &mut SessionCore) -> Option<(u16, String)> {
    let w = core.poll_transmit()?;
    let mut p = ChunkParser::default();
    p.push(&w);
    match p.next_piece().unwrap() {
        Some(Piece::Head { head, .. }) => {
            Some((head.code()?, head.comment().unwrap_or("").to_string()))
        }
        _ => None,
    }
}

#[test]
fn bad_requests_get_400_class_responses() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // Unknown method.
        (b"MSRP t0001 FROB\r\nTo-Path: msrp://127.0.0.1:3000/bob1;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\n-------t0001$\r\n".to_vec(), 501),
        // Not our session.
        (b"MSRP t0002 SEND\r\nTo-Path: msrp://127.0.0.1:3000/other;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\nMessage-ID: x\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------t0002$\r\n".to_vec(), 481),
        // No Message-ID.
        (b"MSRP t0003 SEND\r\nTo-Path: msrp://127.0.0.1:3000/bob1;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------t0003$\r\n".to_vec(), 400),
        // Byte-Range start beyond total.
        (b"MSRP t0004 SEND\r\nTo-Path: msrp://127.0.0.1:3000/bob1;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\nMessage-ID: y\r\nByte-Range: 50-60/10\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------t0004$\r\n".to_vec(), 400),
        // Overflowing numbers.
        (b"MSRP t0005 SEND\r\nTo-Path: msrp://127.0.0.1:3000/bob1;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\nMessage-ID: y\r\nByte-Range: 1-99999999999999999999999/*\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------t0005$\r\n".to_vec(), 400),
        // More data than the total says.
        (b"MSRP t0006 SEND\r\nTo-Path: msrp://127.0.0.1:3000/bob1;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\nMessage-ID: z\r\nByte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\nhello\r\n-------t0006$\r\n".to_vec(), 400),
        // A malformed header line.
        (b"MSRP t0007 SEND\r\nTo-Path: msrp://127.0.0.1:3000/bob1;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\nbroken\r\n-------t0007$\r\n".to_vec(), 400),
        // A bad To-Path.
        (b"MSRP t0008 SEND\r\nTo-Path: http://x\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\n-------t0008$\r\n".to_vec(), 400),
    ];
    for (wire, code) in cases {
        let mut n = Pair::new(100);
        let mut sink = Vec::new();
        Pair::feed(&mut n.b, &mut n.pb, &mut sink, &wire);
        let (got, comment) = response_code(&mut n.b).expect("a response");
        assert_eq!(got, code, "{comment}");
        assert!(!n
            .b
            .poll_event()
            .is_some_and(|e| matches!(e, Event::MessageComplete { .. })));
        assert_eq!(n.b.refused, 1);
        assert!(sink.is_empty() || code == 400);
    }
    // A REPORT never gets a response, even a bad one.
    let mut n = Pair::new(100);
    let mut sink = Vec::new();
    Pair::feed(&mut n.b, &mut n.pb, &mut sink, b"MSRP r0001 REPORT\r\nTo-Path: msrp://127.0.0.1:3000/bob1;tcp\r\nFrom-Path: msrp://127.0.0.1:2000/alice1;tcp\r\nMessage-ID: q\r\nStatus: 000 200 OK\r\n-------r0001$\r\n");
    assert!(n.b.poll_transmit().is_none());
}

#[test]
fn content_types_outside_accept_types_get_415() {
    let mut n = Pair::with(SessionConfig {
        accept_types: Some(vec!["message/cpim".into(), "text/*".into()]),
        ..SessionConfig::default()
    });
    for (ct, ok) in [
        ("text/plain", true),
        ("Text/HTML; charset=utf-8", true),
        ("message/CPIM", true),
        ("image/png", false),
        ("textual/plain", false),
        ("garbage", false),
    ] {
        let mut m = message(ct, 10, ReportMode::No, ReportMode::Yes);
        m.content_type = ct.into();
        n.a.send_message(m);
        n.send_from_a(&[b'a'; 10]);
        let code = n.events[0].iter().find_map(|e| match e {
            Event::ChunkResponse {
                message_id, code, ..
            } if message_id == ct => Some(*code),
            _ => None,
        });
        assert_eq!(code, Some(if ok { 200 } else { 415 }), "{ct}");
        let complete = n.events[1]
            .iter()
            .any(|e| matches!(e, Event::MessageComplete { message_id, .. } if message_id == ct));
        assert_eq!(complete, ok, "{ct}");
    }
    assert!(media_type_accepted(&["*".into()], "a/b"));
    assert!(!media_type_accepted(&[], "a/b"));
}

#[test]
fn a_verdict_by_report_answers_the_chunk_at_once() {
    let mut n = Pair::with(SessionConfig {
        chunk_size: 100,
        defer_completion: true,
        verdict_by_report: true,
        ..SessionConfig::default()
    });
    let codes = |n: &Pair, mid: &str| -> Vec<u16> {
        n.events[0]
            .iter()
            .filter_map(|e| match e {
                Event::ChunkResponse {
                    message_id, code, ..
                } if message_id == mid => Some(*code),
                _ => None,
            })
            .collect()
    };
    let reports = |n: &Pair, mid: &str| -> Vec<u16> {
        n.events[0]
            .iter()
            .filter_map(|e| match e {
                Event::Report {
                    message_id, code, ..
                } if message_id == mid => Some(*code),
                _ => None,
            })
            .collect()
    };
    n.a.send_message(message("file", 250, ReportMode::Yes, ReportMode::Yes));
    n.send_from_a(&[b'f'; 250]);
    // Every chunk answered, the verdict still pending: no REPORT, and no
    // transaction left to time out.
    assert_eq!(codes(&n, "file"), vec![200, 200, 200]);
    assert_eq!(n.a.pending_transactions(), 0);
    assert!(reports(&n, "file").is_empty());
    assert!(n.b.complete_message("file", 200, None));
    n.exchange();
    assert_eq!(reports(&n, "file"), vec![200]);
    // A refusal comes as a failure REPORT with the reason.
    n.a.send_message(message("bad", 10, ReportMode::Yes, ReportMode::Yes));
    n.send_from_a(&[b'b'; 10]);
    assert!(n.b.complete_message("bad", 400, Some("hash mismatch")));
    n.exchange();
    assert_eq!(codes(&n, "bad"), vec![200]);
    assert_eq!(reports(&n, "bad"), vec![400]);
    assert!(n.events[0].iter().any(|e| matches!(
        e,
        Event::Report { message_id, comment: Some(c), .. } if message_id == "bad" && c.contains("hash")
    )));
}

#[test]
fn deferred_completion_waits_for_the_verdict() {
    let mut n = Pair::with(SessionConfig {
        chunk_size: 100,
        defer_completion: true,
        ..SessionConfig::default()
    });
    n.a.send_message(message("good", 250, ReportMode::Yes, ReportMode::Yes));
    n.send_from_a(&[b'g'; 250]);
    // Two chunks answered, the last one held, no REPORT yet.
    let codes = |n: &Pair, mid: &str| -> Vec<u16> {
        n.events[0]
            .iter()
            .filter_map(|e| match e {
                Event::ChunkResponse {
                    message_id, code, ..
                } if message_id == mid => Some(*code),
                _ => None,
            })
            .collect()
    };
    assert_eq!(codes(&n, "good"), vec![200, 200]);
    assert!(n.events[1].contains(&Event::MessageComplete {
        message_id: "good".into(),
        size: 250
    }));
    assert_eq!(n.b.held_messages(), 1);
    assert!(n.b.complete_message("good", 200, None));
    assert!(!n.b.complete_message("good", 200, None));
    n.exchange();
    assert_eq!(codes(&n, "good"), vec![200, 200, 200]);
    assert!(n.events[0]
        .iter()
        .any(|e| matches!(e, Event::Report { message_id, code: 200, .. } if message_id == "good")));

    n.a.send_message(message("bad", 10, ReportMode::Yes, ReportMode::Yes));
    n.send_from_a(&[b'b'; 10]);
    assert!(n.b.complete_message("bad", 400, Some("broken CPIM")));
    n.exchange();
    assert_eq!(codes(&n, "bad"), vec![400]);
    assert!(!n.events[0]
        .iter()
        .any(|e| matches!(e, Event::Report { message_id, .. } if message_id == "bad")));
    // A closed connection forgets held messages.
    n.a.send_message(message("late", 10, ReportMode::No, ReportMode::Yes));
    n.send_from_a(&[b'l'; 10]);
    assert_eq!(n.b.held_messages(), 1);
    n.b.handle_closed();
    assert_eq!(n.b.held_messages(), 0);
}

#[test]
fn unanswered_chunks_time_out_and_a_closed_connection_fails_everything() {
    let mut n = Pair::new(100);
    n.a.send_message(message("m5", 300, ReportMode::No, ReportMode::Yes));
    let (_h, _t) = n.a.frame_chunk(n.now, &[1u8; 100], false).unwrap();
    assert_eq!(n.a.poll_timeout(), Some(n.now + Duration::from_secs(30)));
    n.a.handle_timeout(n.now + Duration::from_secs(29));
    assert!(n.a.poll_event().is_none());
    n.a.handle_timeout(n.now + Duration::from_secs(30));
    assert!(matches!(
        n.a.poll_event(),
        Some(Event::ChunkResponse {
            code: 408,
            range: (1, 100),
            ..
        })
    ));
    // The rest of the message is still queued; the connection drops.
    n.a.handle_closed();
    assert!(matches!(
        n.a.poll_event(),
        Some(Event::ChunkResponse { code: 408, .. })
    ));
    assert_eq!(n.a.queued(), 0);
    // The receiver half way through a message reports it aborted.
    let mut h = n.a.request_head("SEND");
    h.push_header("Message-ID", "m6");
    h.push_header("Byte-Range", "1-10/20");
    h.push_header("Content-Type", "text/plain");
    Pair::feed(
        &mut n.b,
        &mut n.pb,
        &mut n.got[1],
        &h.to_bytes(&[0u8; 10], ContFlag::More),
    );
    n.b.handle_closed();
    let evs: Vec<Event> = std::iter::from_fn(|| n.b.poll_event()).collect();
    assert!(evs.contains(&Event::MessageAborted {
        message_id: "m6".into(),
        by_sender: false
    }));
}

#[test]
fn the_transaction_id_never_occurs_in_the_data() {
    let mut n = Pair::new(1000);
    n.a.send_message(message("m7", 30, ReportMode::No, ReportMode::No));
    // Find out the id the core would use by framing once, then craft data
    // holding it: the core must pick another.
    let mut probe = SessionCore::new(
        vec![uri("h", 1, "a")],
        vec![uri("h", 2, "b")],
        SessionConfig::default(),
        1,
    );
    let tid = probe.request_head("SEND").transaction_id;
    let mut data = b"-------".to_vec();
    data.extend_from_slice(tid.as_bytes());
    data.resize(30, b'$');
    let (head, tail) = n.a.frame_chunk(n.now, &data, false).unwrap();
    let mut w = head;
    w.extend_from_slice(&data);
    w.extend_from_slice(&tail);
    let c = parse_all(&w, 3).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].2, data);
    assert_ne!(c[0].0.transaction_id, tid);
}

#[test]
fn relay_paths_follow_rfc_4976() {
    // Alice's local path is [her relay, alice]; Bob's path [bob].
    let relay = MsrpUri::parse("msrps://relay.example.com:2855/r1;tcp").unwrap();
    let alice = uri("127.0.0.1", 2000, "alice1");
    let bob = uri("127.0.0.1", 3000, "bob1");
    let mut a = SessionCore::new(
        vec![relay.clone(), alice.clone()],
        vec![bob.clone()],
        SessionConfig::default(),
        5,
    );
    let h = a.request_head("SEND");
    assert_eq!(h.to_path().unwrap(), vec![relay, bob]);
    assert_eq!(h.from_path().unwrap(), vec![alice]);
}

/// Pacing: side A frames chunks for B until its window is full, B's
/// REPORTs not yet delivered; returns the bytes A sent in that burst.
fn burst_from_a(n: &mut Pair, data: &[u8]) -> usize {
    let mut sent = 0;
    while let Some(req) = n.a.next_chunk() {
        let off = req.offset as usize;
        let end = (off + req.max_len).min(data.len());
        let (head, tail) = n.a.frame_chunk(n.now, &data[off..end], false).unwrap();
        let mut wire = head;
        wire.extend_from_slice(&data[off..end]);
        wire.extend_from_slice(&tail);
        Pair::feed(&mut n.b, &mut n.pb, &mut n.got[1], &wire);
        sent += end - off;
    }
    sent
}

fn paced_config() -> SessionConfig {
    SessionConfig {
        chunk_size: 1000,
        report_step: 4000,
        send_window: 10_000,
        ..SessionConfig::default()
    }
}

#[test]
fn a_large_message_is_paced_by_partial_success_reports() {
    let mut n = Pair::with(paced_config());
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
    n.a.send_message(message("big", data.len(), ReportMode::Yes, ReportMode::Yes));
    let mut bursts = Vec::new();
    loop {
        let sent = burst_from_a(&mut n, &data);
        if sent == 0 {
            break;
        }
        bursts.push(sent);
        // B's partial REPORTs (and responses) reach A: the window opens.
        n.exchange();
    }
    // Never more than the window ahead of what B reported.
    assert_eq!(bursts[0], 10_000, "{bursts:?}");
    assert!(bursts.iter().all(|&b| b <= 10_000), "{bursts:?}");
    assert!(bursts.len() >= 5, "{bursts:?}");
    assert_eq!(reassemble(&n.got[1], "big", data.len()), data);
    assert!(n.events[1].contains(&Event::MessageComplete {
        message_id: "big".into(),
        size: 50_000
    }));
    // Partial reports are not verdicts: A sees one REPORT, the final one.
    let reports: Vec<_> = n.events[0]
        .iter()
        .filter_map(|e| match e {
            Event::Report { range, code, .. } => Some((*code, range.map(|r| r.end))),
            _ => None,
        })
        .collect();
    assert_eq!(reports, vec![(200, Some(Some(50_000)))]);
}

#[test]
fn partial_reports_go_out_after_the_first_chunk_and_then_each_step() {
    let mut n = Pair::with(paced_config());
    let data = vec![7u8; 9_500];
    n.a.send_message(message("p", data.len(), ReportMode::Yes, ReportMode::No));
    burst_from_a(&mut n, &data);
    let mut ranges = Vec::new();
    while let Some(w) = n.b.poll_transmit() {
        let chunks = parse_all(&w, w.len()).unwrap();
        let (h, _, _, _) = &chunks[0];
        assert_eq!(h.method(), Some("REPORT"));
        assert_eq!(h.status().unwrap().unwrap().code, 200);
        let r = h.byte_range().unwrap().unwrap();
        ranges.push((r.start, r.end, r.total));
    }
    assert_eq!(
        ranges,
        vec![
            (1, Some(1000), Some(9_500)),
            (1, Some(5000), Some(9_500)),
            (1, Some(9_000), Some(9_500)),
            (1, Some(9_500), Some(9_500)),
        ]
    );
}

#[test]
fn a_peer_that_sends_no_partial_reports_is_sent_to_after_the_probe() {
    let mut n = Pair::with(paced_config());
    // B sends only final reports.
    n.b = SessionCore::new(
        vec![uri("127.0.0.1", 3000, "bob1")],
        vec![uri("127.0.0.1", 2000, "alice1")],
        SessionConfig {
            report_step: 0,
            ..paced_config()
        },
        2,
    );
    let data = vec![3u8; 30_000];
    n.a.send_message(message("q", data.len(), ReportMode::Yes, ReportMode::No));
    assert_eq!(burst_from_a(&mut n, &data), 10_000);
    n.exchange();
    assert!(n.a.next_chunk().is_none(), "still waiting for a report");
    let probe = n.a.poll_timeout().expect("the probe's deadline");
    assert_eq!(probe, n.now + session::PROGRESS_PROBE);
    n.a.handle_timeout(probe - Duration::from_millis(1));
    assert!(n.a.next_chunk().is_none());
    n.now = probe;
    n.a.handle_timeout(probe);
    // From now on the session sends without the window.
    assert_eq!(burst_from_a(&mut n, &data), 20_000);
    n.exchange();
    assert_eq!(reassemble(&n.got[1], "q", data.len()), data);
    assert!(n.a.poll_timeout().is_none());
}

#[test]
fn messages_without_success_reports_are_not_paced() {
    let mut n = Pair::with(paced_config());
    let data = vec![5u8; 30_000];
    n.a.send_message(message("r", data.len(), ReportMode::No, ReportMode::Yes));
    assert_eq!(burst_from_a(&mut n, &data), 30_000);
    n.exchange();
    assert!(n.b.poll_transmit().is_none());
    assert!(!n.events[0]
        .iter()
        .any(|e| matches!(e, Event::Report { .. })));
}

#[test]
fn a_partial_report_with_unknown_total_is_progress_and_a_whole_one_a_verdict() {
    // Reports A gets from B for a message of unknown size in progress.
    let mut n = Pair::with(paced_config());
    let mut m = message("u", 0, ReportMode::Yes, ReportMode::No);
    m.size = None;
    n.a.send_message(m);
    let report = |n: &mut Pair, range: &str, status: &str| {
        let mut h = n.b.request_head("REPORT");
        h.push_header("Message-ID", "u");
        h.push_header("Byte-Range", range);
        h.push_header("Status", status);
        let w = h.to_bytes(b"", ContFlag::End);
        Pair::feed(&mut n.a, &mut n.pa, &mut n.got[0], &w);
        n.exchange();
    };
    report(&mut n, "1-500/*", "000 200 OK");
    report(&mut n, "1-800/800", "000 200 OK");
    report(&mut n, "1-100/*", "000 413 Too Large");
    let reports: Vec<_> = n.events[0]
        .iter()
        .filter_map(|e| match e {
            Event::Report { code, range, .. } => Some((*code, range.and_then(|r| r.end))),
            _ => None,
        })
        .collect();
    assert_eq!(reports, vec![(200, Some(800)), (413, Some(100))]);
}
