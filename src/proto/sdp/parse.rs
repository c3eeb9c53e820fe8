//! The SDP parser (RFC 8866 section 9 grammar). Lines end in CRLF or a bare
//! LF; everything else is checked, and an error names the line and the rule
//! it broke, which is what goes into the reason phrase of a 400.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::model::*;
use super::{MAX_MEDIA, MAX_SDP_BYTES};

/// Why a description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {reason}")]
pub struct SdpError {
    /// 1-based line number (0: the description as a whole).
    pub line: usize,
    pub reason: String,
}

fn err<T>(line: usize, reason: impl Into<String>) -> Result<T, SdpError> {
    Err(SdpError {
        line,
        reason: reason.into(),
    })
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Text fields (`s=`, `i=`, attribute values): any byte but NUL, CR, LF,
/// and valid UTF-8 (we checked the whole description already).
fn text_ok(s: &str) -> bool {
    !s.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n')
}

fn number<T: std::str::FromStr>(n: usize, what: &str, s: &str) -> Result<T, SdpError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return err(n, format!("{what} must be a number, not {s:?}"));
    }
    s.parse()
        .or_else(|_| err(n, format!("{what} {s} is out of range")))
}

fn addr_type(n: usize, s: &str) -> Result<AddrType, SdpError> {
    match s {
        "IP4" => Ok(AddrType::Ip4),
        "IP6" => Ok(AddrType::Ip6),
        _ => err(n, format!("unknown address type {s:?} (IP4 or IP6)")),
    }
}

fn is_fqdn(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
        // The top label starts with a letter (RFC 1123 2.1), which keeps
        // a mistyped dotted quad from passing as a name.
        && s
            .trim_end_matches('.')
            .rsplit('.')
            .next()
            .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// A unicast address, an FQDN, or multicast with `/ttl[/count]`.
fn check_address(n: usize, t: AddrType, a: &str) -> Result<(), SdpError> {
    let base = a.split('/').next().unwrap_or(a);
    let suffix_ok = a
        .split('/')
        .skip(1)
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 5);
    let ok = match t {
        AddrType::Ip4 => base.parse::<Ipv4Addr>().is_ok() || is_fqdn(base),
        AddrType::Ip6 => base.parse::<Ipv6Addr>().is_ok() || is_fqdn(base),
    };
    if !ok || !suffix_ok || a.split('/').count() > 3 {
        return err(n, format!("{a:?} is not an {} address", t.as_str()));
    }
    Ok(())
}

fn connection(n: usize, v: &str) -> Result<Connection, SdpError> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() != 3 {
        return err(n, "c= needs <nettype> <addrtype> <address>");
    }
    if f[0] != "IN" {
        return err(n, format!("unknown network type {:?}", f[0]));
    }
    let t = addr_type(n, f[1])?;
    check_address(n, t, f[2])?;
    Ok(Connection {
        addr_type: t,
        address: f[2].to_string(),
    })
}

fn origin(n: usize, v: &str) -> Result<Origin, SdpError> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() != 6 {
        return err(
            n,
            "o= needs <username> <sess-id> <sess-version> <nettype> <addrtype> <address>",
        );
    }
    if f[0].is_empty() || !f[0].bytes().all(|b| b > 0x20 && b != 0x7f) {
        return err(n, "o= username is empty or has spaces");
    }
    if f[1].is_empty() || !f[1].bytes().all(|b| b.is_ascii_digit()) || f[1].len() > 64 {
        return err(n, format!("o= session id must be digits, not {:?}", f[1]));
    }
    let version = number(n, "o= session version", f[2])?;
    if f[3] != "IN" {
        return err(n, format!("unknown network type {:?}", f[3]));
    }
    let t = addr_type(n, f[4])?;
    check_address(n, t, f[5])?;
    Ok(Origin {
        username: f[0].into(),
        session_id: f[1].into(),
        session_version: version,
        addr_type: t,
        address: f[5].into(),
    })
}

fn bandwidth(n: usize, v: &str) -> Result<Bandwidth, SdpError> {
    let Some((t, val)) = v.split_once(':') else {
        return err(n, "b= needs <bwtype>:<bandwidth>");
    };
    if !is_token(t) {
        return err(n, format!("bad bandwidth type {t:?}"));
    }
    Ok(Bandwidth {
        bwtype: t.into(),
        value: number(n, "bandwidth", val)?,
    })
}

fn attribute(n: usize, v: &str) -> Result<Attribute, SdpError> {
    let (name, value) = match v.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    if !is_token(name) {
        return err(n, format!("bad attribute name {name:?}"));
    }
    if let Some(val) = value {
        if !text_ok(val) {
            return err(n, "attribute value has control characters");
        }
    }
    Ok(Attribute {
        name: name.into(),
        value: value.map(Into::into),
    })
}

fn media(n: usize, v: &str) -> Result<MediaDescription, SdpError> {
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() < 3 {
        return err(n, "m= needs <media> <port> <proto> <fmt> ...");
    }
    if !is_token(f[0]) {
        return err(n, format!("bad media type {:?}", f[0]));
    }
    let (port, count) = match f[1].split_once('/') {
        Some((p, c)) => (
            number::<u16>(n, "port", p)?,
            Some(number::<u16>(n, "port count", c)?),
        ),
        None => (number::<u16>(n, "port", f[1])?, None),
    };
    if !f[2].split('/').all(is_token) {
        return err(n, format!("bad transport protocol {:?}", f[2]));
    }
    let formats: Vec<String> = f[3..].iter().map(|s| s.to_string()).collect();
    if formats.iter().any(|s| !is_token(s)) {
        return err(n, "empty or bad media format");
    }
    // RFC 8866 wants at least one format; an answer that refuses a stream
    // with none is common enough to accept when the port says "refused".
    if formats.is_empty() && port != 0 {
        return err(n, "m= has no media formats");
    }
    let mut m = MediaDescription::new(f[0], port, f[2], &[]);
    m.port_count = count;
    m.formats = formats;
    Ok(m)
}

/// Where a line may appear; each section's lines come in this order.
#[derive(PartialEq, PartialOrd, Clone, Copy)]
enum Pos {
    Start,
    V,
    O,
    S,
    I,
    U,
    E,
    P,
    C,
    B,
    T,
    Z,
    K,
    A,
}

pub(super) fn parse(data: &[u8]) -> Result<SessionDescription, SdpError> {
    if data.len() > MAX_SDP_BYTES {
        return err(0, format!("description longer than {MAX_SDP_BYTES} bytes"));
    }
    let text = std::str::from_utf8(data).or_else(|e| {
        let line = data[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        err(line + 1, "not valid UTF-8")
    })?;
    let mut sd: Option<SessionDescription> = None;
    let mut pos = Pos::Start;
    // The session part's fields until `o=` gives us a place to put them.
    let mut orig: Option<Origin> = None;
    let mut session_name: Option<String> = None;
    let mut in_media = false;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.is_empty() {
            // Only a final empty line (the text ended with a newline).
            if lines.peek().is_none() || lines.clone().all(|(_, r)| r.trim().is_empty()) {
                break;
            }
            return err(n, "empty line");
        }
        let b = l.as_bytes();
        if b.len() < 2 || b[1] != b'=' {
            return err(n, "a line must be <type>=<value>");
        }
        let t = b[0] as char;
        let v = &l[2..];
        if !text_ok(v) {
            return err(n, "control character in line");
        }
        let at = |p: Pos, pos: &mut Pos| -> Result<(), SdpError> {
            if p < *pos || (p == *pos && !matches!(p, Pos::E | Pos::P | Pos::B | Pos::T | Pos::A)) {
                return err(n, format!("{t}= out of order or repeated"));
            }
            *pos = p;
            Ok(())
        };
        if in_media {
            let sd = sd
                .as_mut()
                .expect("in_media implies the session part was built");
            if t == 'm' {
                if sd.media.len() >= MAX_MEDIA {
                    return err(n, format!("more than {MAX_MEDIA} media sections"));
                }
                sd.media.push(media(n, v)?);
                pos = Pos::S;
                continue;
            }
            let m = sd.media.last_mut().expect("in_media implies one m= line");
            match t {
                'i' => {
                    at(Pos::I, &mut pos)?;
                    m.information = Some(v.into());
                }
                'c' => {
                    // Several c= are allowed in a media section.
                    if pos > Pos::C {
                        return err(n, "c= out of order");
                    }
                    pos = Pos::C;
                    m.connections.push(connection(n, v)?);
                }
                'b' => {
                    at(Pos::B, &mut pos)?;
                    m.bandwidths.push(bandwidth(n, v)?);
                }
                'k' => {
                    at(Pos::K, &mut pos)?;
                    m.key = Some(v.into());
                }
                'a' => {
                    at(Pos::A, &mut pos)?;
                    m.attributes.push(attribute(n, v)?);
                }
                'v' | 'o' | 's' | 'u' | 'e' | 'p' | 't' | 'r' | 'z' => {
                    return err(n, format!("{t}= is not allowed in a media section"))
                }
                _ => return err(n, format!("unknown line type {t:?}")),
            }
            continue;
        }
        if pos == Pos::Start && t != 'v' {
            return err(n, "a description starts with v=0");
        }
        match t {
            'o' if pos != Pos::V => return err(n, "o= must follow v="),
            _ if pos == Pos::V && t != 'o' => return err(n, "o= must follow v="),
            's' if pos != Pos::O => return err(n, "s= must follow o="),
            'v' => {
                at(Pos::V, &mut pos)?;
                if v != "0" {
                    return err(n, format!("unsupported SDP version {v:?}"));
                }
            }
            'o' => {
                at(Pos::O, &mut pos)?;
                orig = Some(origin(n, v)?);
            }
            's' => {
                at(Pos::S, &mut pos)?;
                if v.is_empty() {
                    return err(n, "s= is empty (use s=-)");
                }
                session_name = Some(v.into());
            }
            _ if pos < Pos::S => {
                return err(
                    n,
                    match pos {
                        Pos::Start => "a description starts with v=0",
                        Pos::V => "o= must follow v=",
                        _ => "s= must follow o=",
                    },
                )
            }
            _ => {
                let s = sd.get_or_insert_with(|| {
                    let o = orig.take().expect("pos >= S implies o= was parsed");
                    let mut s = SessionDescription::new("-", 0, [0, 0, 0, 0].into(), "");
                    s.origin = o;
                    s.session_name = session_name.take().unwrap_or_default();
                    s.connection = None;
                    s.timing.clear();
                    s
                });
                match t {
                    'i' => {
                        at(Pos::I, &mut pos)?;
                        s.information = Some(v.into());
                    }
                    'u' => {
                        at(Pos::U, &mut pos)?;
                        s.uri = Some(v.into());
                    }
                    'e' => {
                        at(Pos::E, &mut pos)?;
                        s.emails.push(v.into());
                    }
                    'p' => {
                        at(Pos::P, &mut pos)?;
                        s.phones.push(v.into());
                    }
                    'c' => {
                        at(Pos::C, &mut pos)?;
                        s.connection = Some(connection(n, v)?);
                    }
                    'b' => {
                        at(Pos::B, &mut pos)?;
                        s.bandwidths.push(bandwidth(n, v)?);
                    }
                    't' => {
                        at(Pos::T, &mut pos)?;
                        let Some((a, b)) = v.split_once(' ') else {
                            return err(n, "t= needs <start-time> <stop-time>");
                        };
                        s.timing.push(Timing {
                            start: number(n, "start time", a)?,
                            stop: number(n, "stop time", b)?,
                            repeats: Vec::new(),
                        });
                    }
                    'r' => {
                        if pos != Pos::T {
                            return err(n, "r= must follow t=");
                        }
                        if let Some(last) = s.timing.last_mut() {
                            last.repeats.push(v.into());
                        }
                    }
                    'z' => {
                        at(Pos::Z, &mut pos)?;
                        s.zone = Some(v.into());
                    }
                    'k' => {
                        at(Pos::K, &mut pos)?;
                        s.key = Some(v.into());
                    }
                    'a' => {
                        at(Pos::A, &mut pos)?;
                        s.attributes.push(attribute(n, v)?);
                    }
                    'm' => {
                        if s.timing.is_empty() {
                            return err(n, "t= is missing before the first m=");
                        }
                        s.media.push(media(n, v)?);
                        in_media = true;
                        // A media section runs i= c=* b=* k= a=*.
                        pos = Pos::S;
                    }
                    _ => return err(n, format!("unknown line type {t:?}")),
                }
            }
        }
    }
    let Some(sd) = sd else {
        if pos == Pos::S {
            return err(0, "t= is missing");
        }
        return err(0, "incomplete description: v=, o=, s= and t= are required");
    };
    if sd.timing.is_empty() {
        return err(0, "t= is missing");
    }
    // Every media section needs a connection address, its own or the
    // session's (RFC 8866 5.7), unless it is refused.
    if sd.connection.is_none() {
        if let Some(i) = sd
            .media
            .iter()
            .position(|m| m.connections.is_empty() && m.port != 0)
        {
            return err(0, format!("media section {} has no c= line", i + 1));
        }
    }
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "v=0\r\no=- 3467525214 3467525214 IN IP4 192.168.1.6\r\ns=blink-0.10.7-beta\r\nc=IN IP4 192.168.1.6\r\nt=0 0\r\nm=message 2855 TCP/TLS/MSRP *\r\na=path:msrps://192.168.1.6:2855/ca7940f12ddef14c3c32;tcp\r\na=accept-types:message/cpim text/* application/im-iscomposing+xml\r\na=accept-wrapped-types:*\r\n";

    const AUDIO: &str = "v=0\r\no=- 3467525278 3467525278 IN IP4 192.168.1.6\r\ns=blink-0.10.7-beta\r\nc=IN IP4 80.101.96.20\r\nt=0 0\r\nm=audio 55328 RTP/AVP 104 103 102 3 9 0 8 101\r\na=rtcp:55329 IN IP4 80.101.96.20\r\na=rtpmap:104 speex/32000\r\na=rtpmap:103 speex/16000\r\na=rtpmap:102 speex/8000\r\na=rtpmap:3 GSM/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:esI6DbLY1+Aceu0JNswN9Z10DcFx5cZwqJcu91jb\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:SHuEMm1BYJqOF4udKl73EaCwnsI57pO86bYKsg70\r\na=ice-ufrag:2701ed80\r\na=ice-pwd:6f8f8281\r\na=candidate:S 1 UDP 31 80.101.96.20 55328 typ srflx raddr 192.168.1.6 rport 55328\r\na=candidate:H 1 UDP 23 192.168.1.6 55328 typ host\r\na=sendrecv\r\n";

    const FILE: &str = "v=0\r\no=- 3467525166 3467525166 IN IP4 192.168.1.6\r\ns=blink-0.10.7-beta\r\nc=IN IP4 192.168.1.6\r\nt=0 0\r\nm=message 2855 TCP/TLS/MSRP *\r\na=path:msrps://192.168.1.6:2855/e593357dc9abe90754bd;tcp\r\na=sendonly\r\na=accept-types:*\r\na=accept-wrapped-types:*\r\na=file-selector:name:\"reblink.pdf\" type:com.adobe.pdf size:268759 hash:sha1:60:A1:BE:8D:71:DB:E3:8E:84:C9:2C:62:9E:F2:99:78:9D:68:79:F6\r\n";

    #[test]
    fn documented_examples_round_trip_byte_for_byte() {
        for text in [CHAT, AUDIO, FILE] {
            let sd = parse(text.as_bytes()).unwrap();
            assert_eq!(sd.to_string(), text);
        }
    }

    #[test]
    fn typed_views() {
        let sd = parse(AUDIO.as_bytes()).unwrap();
        let m = &sd.media[0];
        assert_eq!(m.port, 55328);
        assert_eq!(m.formats.len(), 8);
        let maps = m.rtpmaps();
        assert_eq!(maps[0].encoding, "speex");
        assert_eq!(maps[0].clock_rate, 32000);
        assert_eq!(m.fmtp("101"), Some("0-15"));
        assert_eq!(sd.media_direction(0), Direction::SendRecv);
        assert_eq!(
            sd.media_connection(0).unwrap().ip(),
            Some("80.101.96.20".parse().unwrap())
        );
        assert_eq!(sd.origin.session_version, 3467525278);
        let chat = parse(CHAT.as_bytes()).unwrap();
        assert_eq!(
            chat.media[0].msrp_path(),
            vec!["msrps://192.168.1.6:2855/ca7940f12ddef14c3c32;tcp"]
        );
        assert_eq!(chat.media[0].list_attribute("accept-types").len(), 3);
        assert_eq!(chat.media[0].formats, vec!["*"]);
        let file = parse(FILE.as_bytes()).unwrap();
        assert_eq!(file.media_direction(0), Direction::SendOnly);
    }

    #[test]
    fn bare_lf_and_old_hold_and_session_level_direction() {
        let text = "v=0\no=- 1 2 IN IP6 ::1\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\na=recvonly\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\na=sendrecv\n";
        let sd = parse(text.as_bytes()).unwrap();
        // c=0.0.0.0 is RFC 2543 hold: the sender will not receive.
        assert_eq!(sd.media_direction(0), Direction::Inactive);
        assert_eq!(sd.media_direction(1), Direction::SendOnly);
        assert_eq!(sd.origin.addr_type, AddrType::Ip6);
    }

    #[test]
    fn malformed_descriptions_say_why() {
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(parse(base.as_bytes()).is_ok());
        let cases: &[(&str, &str)] = &[
            ("", "incomplete"),
            ("v=1\r\n", "version"),
            ("o=- 1 1 IN IP4 1.2.3.4\r\n", "starts with v=0"),
            ("v=0\r\ns=-\r\n", "o= must follow"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nt=0 0\r\n", "s= must follow"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n", "t= is missing"),
            ("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", "session id"),
            ("v=0\r\no=- 1 99999999999999999999999 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", "out of range"),
            ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\nt=0 0\r\n", "o= needs"),
            ("v=0\r\no=- 1 1 XX IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n", "network type"),
            ("v=0\r\no=- 1 1 IN IP5 1.2.3.4\r\ns=-\r\nt=0 0\r\n", "address type"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\r\nt=0 0\r\n", "s= is empty"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 999.1.1.1x\r\nt=0 0\r\n", "not an IP4"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP6 ::zz\r\nt=0 0\r\n", "not an IP6"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\nc=IN IP4 1.1.1.1\r\n", "out of range"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio -1 RTP/AVP 0\r\n", "port must be a number"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP\r\n", "no media formats"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000\r\n", "m= needs"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", "no c= line"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\ns=x\r\n", "not allowed in a media"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nq=1\r\n", "unknown line type"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nc=IN IP4 1.1.1.1\r\n", "out of order"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\na=a b:c\r\n", "attribute name"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nb=AS:x\r\n", "out of order"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nb=AS\r\nt=0 0\r\n", "b= needs"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0\r\n", "t= needs"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n\r\nt=0 0\r\n", "empty line"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nxyz\r\n", "<type>=<value>"),
            ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\na=x:\u{0}\r\n", "control character"),
        ];
        for (text, why) in cases {
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
        let e = parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\nt=0 0\r\n").unwrap_err();
        assert_eq!(e.line, 3);
        let big = "a=x\r\n".repeat(MAX_SDP_BYTES / 5 + 1);
        assert!(parse(big.as_bytes()).is_err());
        let many = format!(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n{}",
            "m=audio 1 RTP/AVP 0\r\n".repeat(MAX_MEDIA + 1)
        );
        assert!(parse(many.as_bytes())
            .unwrap_err()
            .reason
            .contains("media sections"));
    }

    #[test]
    fn refused_stream_without_formats_is_accepted() {
        let text = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP\r\n";
        let sd = parse(text.as_bytes()).unwrap();
        assert!(sd.media[0].is_rejected());
    }
}
