//! Malformed input of the kinds that hurt other SIP stacks. Each case must give
//! a 400 (a request whose Via could be read), or a drop, never a panic, a hang
//! or an unbounded allocation. A deterministic mutation run over the torture
//! messages checks the same properties on many more inputs.

use sipsimple::proto::sip::{Limits, ParseErrorKind, SipMessage, StreamEvent, StreamFramer};

const BASE: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: 3848276298220188511@example.com\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

/// Some(code) for an answer, None for a drop; panics on success.
fn verdict(bytes: &[u8]) -> Option<u16> {
    match SipMessage::parse_datagram(bytes, &Limits::default()) {
        Ok(m) => panic!("accepted a malformed message: {m:?}"),
        Err(e) => e.response_code(),
    }
}

fn with(header: &str) -> String {
    BASE.replace(
        "Content-Length: 0\r\n",
        &format!("{header}\r\nContent-Length: 0\r\n"),
    )
}

#[test]
fn content_length_attacks() {
    assert_eq!(
        verdict(
            BASE.replace("Content-Length: 0", "Content-Length: -1")
                .as_bytes()
        ),
        Some(400)
    );
    assert_eq!(
        verdict(
            BASE.replace(
                "Content-Length: 0",
                "Content-Length: 99999999999999999999999"
            )
            .as_bytes()
        ),
        Some(400)
    );
    assert_eq!(
        verdict(
            BASE.replace("Content-Length: 0", "Content-Length: 4294967296")
                .as_bytes()
        ),
        Some(400)
    );
    assert_eq!(
        verdict(
            BASE.replace("Content-Length: 0", "Content-Length: 10")
                .as_bytes()
        ),
        Some(400)
    );
    assert_eq!(
        verdict(
            BASE.replace("Content-Length: 0", "Content-Length: 0x10")
                .as_bytes()
        ),
        Some(400)
    );
    assert_eq!(
        verdict(
            BASE.replace("Content-Length: 0", "Content-Length: 0\r\nl: 0")
                .as_bytes()
        ),
        Some(400)
    );
    // A huge declared length on a stream is refused at once, not buffered for.
    let mut f = StreamFramer::new(Limits::default());
    f.push(
        BASE.replace("Content-Length: 0", "Content-Length: 4000000000")
            .as_bytes(),
    );
    assert_eq!(f.next_event().unwrap_err().kind, ParseErrorKind::TooLarge);
}

#[test]
fn control_bytes_and_bad_utf8() {
    for bad in [
        "X-Bad\0Name: v",
        "X-Bad: va\0lue",
        "X-Bad: va\x07lue",
        "X-B\x01d: v",
        "X-Bad: v\x7f",
    ] {
        assert_eq!(verdict(with(bad).as_bytes()), None, "{bad:?}");
    }
    let mut bytes = with("Subject: caf").into_bytes();
    let at = bytes.windows(4).position(|w| w == b"caf\r").unwrap() + 3;
    bytes.insert(at, 0xff);
    assert_eq!(verdict(&bytes), None);
    // A NUL in the request line.
    assert_eq!(
        verdict(BASE.replacen("OPTIONS", "OPT\0IONS", 1).as_bytes()),
        None
    );
    // Bad UTF-8 in the body is fine: bodies are bytes.
    let mut b = BASE
        .replace("Content-Length: 0", "Content-Length: 3")
        .into_bytes();
    b.extend_from_slice(&[0xff, 0x00, 0xfe]);
    assert_eq!(
        SipMessage::parse_datagram(&b, &Limits::default())
            .unwrap()
            .body(),
        &[0xff, 0, 0xfe]
    );
}

#[test]
fn oversized_input() {
    let line = format!("X-Long: {}", "a".repeat(1 << 20));
    assert_eq!(
        verdict(with(&line).as_bytes()),
        None,
        "1 MiB header line in a datagram"
    );
    let mut f = StreamFramer::new(Limits::default());
    f.push(with(&line).as_bytes());
    assert_eq!(f.next_event().unwrap_err().kind, ParseErrorKind::TooLarge);
    // An endless header on a stream: refused once the limit is passed.
    let mut f = StreamFramer::new(Limits::default());
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\nX: ");
    let chunk = vec![b'a'; 64 * 1024];
    let mut refused = false;
    for _ in 0..20 {
        f.push(&chunk);
        match f.next_event() {
            Ok(None) => {}
            Err(e) => {
                assert_eq!(e.kind, ParseErrorKind::TooLarge);
                refused = true;
                break;
            }
            Ok(Some(ev)) => panic!("{ev:?}"),
        }
    }
    assert!(refused);
    assert!(f.buffered() <= (1 << 20) + 64 * 1024);
    // Thousands of Via values: 400 at the list cap, not a 2000-entry parse.
    let vias = vec!["SIP/2.0/UDP h;branch=z9hG4bKx"; 2000].join(",");
    assert!(vias.len() < 65_000);
    assert_eq!(verdict(with(&format!("Via: {vias}")).as_bytes()), Some(400));
    // Thousands of header lines: dropped at the header limit.
    let many: Vec<String> = (0..2000).map(|i| format!("X-H{i}: v")).collect();
    assert_eq!(verdict(with(&many.join("\r\n")).as_bytes()), None);
}

#[test]
fn truncation_and_trailing_garbage() {
    for cut in [0, 1, 10, BASE.len() / 2, BASE.len() - 4, BASE.len() - 1] {
        assert_eq!(verdict(&BASE.as_bytes()[..cut]), None, "cut at {cut}");
    }
    // Garbage after the body: ignored on UDP (Content-Length rules).
    let mut b = BASE.as_bytes().to_vec();
    b.extend_from_slice(b"\x00\x01garbage");
    assert!(SipMessage::parse_datagram(&b, &Limits::default())
        .unwrap()
        .body()
        .is_empty());
    // On a stream the garbage is the next "message": an error, close the connection.
    let mut f = StreamFramer::new(Limits::default());
    f.push(&b);
    f.push(b"\r\n\r\n");
    assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Message(_)))));
    assert!(f.next_event().is_err());
}

#[test]
fn header_grammar() {
    for bad in [
        "Via: SIP/2.0/UDP",
        "Via: SIP/2.0/UDP host;;branch=x",
        "Via: ,SIP/2.0/UDP h",
        "Route: sip:no-brackets@example.com",
        "Contact: <sip:a@b",
        "Contact: \"unterminated <sip:a@b>",
        "Max-Forwards: 256",
        "Expires: -1",
    ] {
        let msg = if bad.starts_with("Via") {
            BASE.replace(
                "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9",
                &format!("{bad}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa"),
            )
        } else if bad.starts_with("Max-Forwards") {
            BASE.replace("Max-Forwards: 70", bad)
        } else {
            with(bad)
        };
        assert_eq!(verdict(msg.as_bytes()), Some(400), "{bad}");
    }
    for missing in ["Call-ID", "CSeq", "From", "To"] {
        let msg: String = BASE
            .split("\r\n")
            .filter(|l| !l.starts_with(missing))
            .collect::<Vec<_>>()
            .join("\r\n");
        assert_eq!(verdict(msg.as_bytes()), Some(400), "missing {missing}");
    }
    let no_via: String = BASE
        .split("\r\n")
        .filter(|l| !l.starts_with("Via"))
        .collect::<Vec<_>>()
        .join("\r\n");
    assert_eq!(verdict(no_via.as_bytes()), None, "nothing to answer along");
}

/// xorshift: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutations_never_panic() {
    let dir = [
        "../shared/testdata/rfc4475",
        "../../shared/testdata/rfc4475",
    ]
    .iter()
    .map(|d| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(d))
    .find(|p| p.is_dir())
    .expect("torture messages");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let interesting = [
        b"\r\n".as_slice(),
        b":",
        b";",
        b",",
        b"<",
        b">",
        b"\"",
        b"\\",
        b"%",
        b"@",
        b"[",
        b"]",
        b" ",
        b"\0",
        b"\xff",
        b"SIP/2.0",
        b"\r\n ",
    ];
    let mut parsed = 0usize;
    for i in 0..40_000 {
        let mut m = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len() + 1);
            match rng.below(4) {
                0 if !m.is_empty() => {
                    let end = (at + rng.below(8)).min(m.len());
                    m.drain(at.min(end)..end);
                }
                1 => {
                    let ins = interesting[rng.below(interesting.len())];
                    m.splice(at..at, ins.iter().copied());
                }
                2 if at < m.len() => m[at] = rng.next() as u8,
                _ => m.truncate(at),
            }
        }
        if let Ok(msg) = SipMessage::parse_datagram(&m, &Limits::default()) {
            parsed += 1;
            // What we accept, we print, and re-parse to the same thing.
            let again = SipMessage::parse_datagram(&msg.to_bytes(), &Limits::default())
                .expect("printed message parses");
            assert_eq!(again.start_line(), msg.start_line());
            assert_eq!(again.body(), msg.body());
        }
        let mut f = StreamFramer::new(Limits::default());
        for piece in m.chunks(1 + rng.below(64)) {
            f.push(piece);
            if f.next_event().is_err() {
                break;
            }
        }
    }
    assert!(
        parsed > 1000,
        "mutations too destructive to be useful: {parsed}"
    );
}
