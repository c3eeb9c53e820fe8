//! message/cpim (RFC 3862): the envelope chat messages travel in. A block
//! of message headers (From, To, cc, DateTime, Subject, NS, Require and
//! namespaced extension headers), a blank line, the MIME headers of the
//! content, a blank line, and the content.
//!
//! Headers are kept verbatim and in order, so a message printed after
//! parsing says what it said; accessors interpret them. Extension headers
//! are found by namespace URI, not by the prefix a sender happened to pick.

use std::fmt::Write as _;

/// Message headers, at most (a real message carries a handful).
pub(crate) const MAX_HEADERS: usize = 64;
/// Longest header line, in bytes.
pub(crate) const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message/cpim: {0}")]
pub struct CpimError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, CpimError> {
    Err(CpimError(s.into()))
}

/// A From, To or cc value: `"Display Name" <uri>` or `<uri>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimAddress {
    pub display_name: Option<String>,
    pub uri: String,
}

impl CpimAddress {
    pub fn new(display_name: Option<&str>, uri: &str) -> CpimAddress {
        CpimAddress {
            display_name: display_name.map(str::to_string),
            uri: uri.to_string(),
        }
    }

    pub fn parse(value: &str) -> Result<CpimAddress, CpimError> {
        let v = value.trim();
        let open = v
            .rfind('<')
            .ok_or_else(|| CpimError(format!("no <uri> in {v:?}")))?;
        let uri = v[open + 1..]
            .strip_suffix('>')
            .ok_or_else(|| CpimError(format!("no closing > in {v:?}")))?;
        if uri.is_empty() || uri.contains(['<', '>', ' ']) {
            return err(format!("bad URI in {v:?}"));
        }
        let name = v[..open].trim();
        let display_name = if name.is_empty() {
            None
        } else if let Some(q) = name.strip_prefix('"') {
            let inner = q
                .strip_suffix('"')
                .ok_or_else(|| CpimError(format!("unclosed quote in {v:?}")))?;
            Some(unescape(inner)?)
        } else {
            Some(name.to_string())
        };
        Ok(CpimAddress {
            display_name,
            uri: uri.to_string(),
        })
    }
}

impl std::fmt::Display for CpimAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = &self.display_name {
            f.write_char('"')?;
            for c in n.chars() {
                if c == '"' || c == '\\' {
                    f.write_char('\\')?;
                }
                f.write_char(c)?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)
    }
}

fn unescape(s: &str) -> Result<String, CpimError> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => out.push(
                it.next()
                    .ok_or_else(|| CpimError("dangling backslash".into()))?,
            ),
            '"' => return err("unescaped quote in a display name"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A parsed message/cpim body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpimMessage {
    /// Message headers, verbatim, in order.
    pub headers: Headers,
    /// The content's MIME headers (Content-Type, Content-ID, ...).
    pub content_headers: Headers,
    pub content: Vec<u8>,
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
}

type Headers = Vec<(String, String)>;

/// Header lines up to the blank line that ends the block; returns them and
/// the rest of the input.
fn header_block(mut input: &[u8]) -> Result<(Headers, &[u8]), CpimError> {
    let mut out: Headers = Vec::new();
    loop {
        let end = memchr::memmem::find(input, b"\r\n")
            .ok_or_else(|| CpimError("a header block without its blank line".into()))?;
        let line = &input[..end];
        input = &input[end + 2..];
        if line.is_empty() {
            return Ok((out, input));
        }
        if line.len() > MAX_LINE {
            return err("header line too long");
        }
        if out.len() == MAX_HEADERS {
            return err("too many headers");
        }
        let line =
            std::str::from_utf8(line).map_err(|_| CpimError("header is not UTF-8".into()))?;
        if line.starts_with([' ', '\t']) {
            // RFC 3862 has no folding; a continuation line is an error.
            return err("folded header lines are not allowed");
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| CpimError(format!("no colon in header {line:?}")))?;
        if !is_token(name) {
            return err(format!("bad header name {name:?}"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return err(format!("control character in header {name}"));
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
}

impl CpimMessage {
    /// A message with From and To, a DateTime, and `content` of `content_type`.
    pub fn new(
        from: &CpimAddress,
        to: &CpimAddress,
        datetime: Option<&str>,
        content_type: &str,
        content: Vec<u8>,
    ) -> CpimMessage {
        let mut m = CpimMessage::default();
        m.headers.push(("From".into(), from.to_string()));
        m.headers.push(("To".into(), to.to_string()));
        if let Some(d) = datetime {
            m.headers.push(("DateTime".into(), d.to_string()));
        }
        m.content_headers
            .push(("Content-Type".into(), content_type.to_string()));
        m.content = content;
        m
    }

    pub fn parse(input: &[u8]) -> Result<CpimMessage, CpimError> {
        let (headers, rest) = header_block(input)?;
        let (content_headers, content) = header_block(rest)?;
        let m = CpimMessage {
            headers,
            content_headers,
            content: content.to_vec(),
        };
        // What the accessors interpret must be well formed.
        if m.header("From").is_some() {
            m.from()?;
        }
        m.to()?;
        m.cc()?;
        if let Some(d) = m.header("DateTime") {
            check_datetime(d)?;
        }
        m.namespaces()?;
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.content.len());
        for block in [&self.headers, &self.content_headers] {
            for (n, v) in block {
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.content);
        out
    }

    /// The first message header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn addresses(&self, name: &str) -> Result<Vec<CpimAddress>, CpimError> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| CpimAddress::parse(v))
            .collect()
    }

    pub fn from(&self) -> Result<CpimAddress, CpimError> {
        self.addresses("From")?
            .into_iter()
            .next()
            .ok_or_else(|| CpimError("no From".into()))
    }

    pub fn to(&self) -> Result<Vec<CpimAddress>, CpimError> {
        self.addresses("To")
    }

    pub fn cc(&self) -> Result<Vec<CpimAddress>, CpimError> {
        self.addresses("cc")
    }

    pub fn datetime(&self) -> Option<&str> {
        self.header("DateTime")
    }

    /// Subjects with their language (`Subject:;lang=fr Bonjour`).
    pub fn subjects(&self) -> Vec<(Option<String>, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Subject"))
            .map(|(_, v)| match v.strip_prefix(";lang=") {
                Some(rest) => {
                    let (lang, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    (Some(lang.to_string()), text.trim().to_string())
                }
                None => (None, v.clone()),
            })
            .collect()
    }

    /// NS declarations: (prefix, namespace URI); the prefix may be empty.
    pub fn namespaces(&self) -> Result<Vec<(String, String)>, CpimError> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("NS"))
            .map(|(_, v)| {
                let open = v
                    .find('<')
                    .ok_or_else(|| CpimError(format!("bad NS {v:?}")))?;
                let uri = v[open + 1..]
                    .strip_suffix('>')
                    .ok_or_else(|| CpimError(format!("bad NS {v:?}")))?;
                let prefix = v[..open].trim();
                if !prefix.is_empty() && !is_token(prefix) {
                    return err(format!("bad NS prefix {prefix:?}"));
                }
                Ok((prefix.to_string(), uri.to_string()))
            })
            .collect()
    }

    /// Declare a namespace (when not yet declared) and return its prefix.
    pub fn declare_namespace(&mut self, prefix: &str, uri: &str) -> String {
        if let Ok(ns) = self.namespaces() {
            if let Some((p, _)) = ns.into_iter().find(|(_, u)| u == uri) {
                return p;
            }
        }
        self.headers
            .push(("NS".into(), format!("{prefix} <{uri}>")));
        prefix.to_string()
    }

    /// An extension header by namespace URI and name, whatever prefix the
    /// sender declared for it.
    pub fn extension(&self, namespace: &str, name: &str) -> Option<&str> {
        let prefixes: Vec<String> = self
            .namespaces()
            .ok()?
            .into_iter()
            .filter(|(_, u)| u == namespace)
            .map(|(p, _)| p)
            .collect();
        self.headers.iter().find_map(|(n, v)| {
            let (p, local) = n.rsplit_once('.')?;
            (local.eq_ignore_ascii_case(name) && prefixes.iter().any(|x| x == p))
                .then_some(v.as_str())
        })
    }

    /// The content's type, without parameters.
    /// The content's whole Content-Type value, parameters (the charset)
    /// included.
    pub fn content_type_header(&self) -> Option<&str> {
        self.content_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The content's media type without parameters.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type_header()
            .map(|v| v.split(';').next().unwrap_or("").trim())
    }
}

/// `t` as an RFC 3339 date-time in UTC with milliseconds, as CPIM's
/// DateTime and is-composing's lastactive want it.
pub fn format_datetime(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
pub fn check_datetime(s: &str) -> Result<(), CpimError> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let ok = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !ok {
        return err(format!("bad DateTime {s:?}"));
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return err(format!("bad DateTime fraction {s:?}"));
        }
    }
    let zone_ok = match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3)
                && b.get(i + 3) == Some(&b':')
                && digits(i + 4..i + 6)
                && i + 6 == b.len()
        }
        _ => false,
    };
    let field = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(99);
    let ranges_ok = (1..=12).contains(&field(5..7))
        && (1..=31).contains(&field(8..10))
        && field(11..13) <= 23
        && field(14..16) <= 59
        && field(17..19) <= 60;
    if zone_ok && ranges_ok {
        Ok(())
    } else {
        err(format!("bad DateTime {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_print_in_rfc_3339() {
        use std::time::{Duration, UNIX_EPOCH};
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_250, "2000-02-29T00:00:00.250Z"),
            (1_043_664_180_000, "2003-01-27T10:43:00.000Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        ];
        for (ms, text) in cases {
            let s = format_datetime(UNIX_EPOCH + Duration::from_millis(ms));
            assert_eq!(s, text);
            check_datetime(&s).unwrap();
        }
    }

    /// RFC 3862 section 6's example, with CRLF line ends.
    const RFC_EXAMPLE: &str = "From: MR SANDERS <im:piglet@100akerwood.com>\r\n\
To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n\
DateTime: 2000-12-13T13:40:00-08:00\r\n\
Subject: the weather will be fine today\r\n\
Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n\
NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n\
Require: MyFeatures.VitalMessageOption\r\n\
MyFeatures.VitalMessageOption: Confirmation-requested\r\n\
MyFeatures.WackyMessageOption: Use-silly-font\r\n\
\r\n\
Content-type: text/xml; charset=utf-8\r\n\
Content-ID: <1234567890@foo.com>\r\n\
\r\n\
<body>\r\nHere is the text of my message.\r\n</body>";

    #[test]
    fn the_rfc_example_parses_and_prints_back() {
        let m = CpimMessage::parse(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            m.from().unwrap(),
            CpimAddress::new(Some("MR SANDERS"), "im:piglet@100akerwood.com")
        );
        assert_eq!(m.to().unwrap()[0].uri, "im:eeyore@100akerwood.com");
        assert_eq!(m.datetime(), Some("2000-12-13T13:40:00-08:00"));
        let subjects = m.subjects();
        assert_eq!(subjects.len(), 2);
        assert_eq!(subjects[1].0.as_deref(), Some("fr"));
        assert_eq!(
            m.extension("mid:MessageFeatures@id.foo.com", "VitalMessageOption"),
            Some("Confirmation-requested")
        );
        assert_eq!(m.extension("mid:other", "VitalMessageOption"), None);
        assert_eq!(m.content_type(), Some("text/xml"));
        assert!(m.content.starts_with(b"<body>"));
        // Printed, it says the same (one space after every colon).
        assert_eq!(CpimMessage::parse(&m.to_bytes()).unwrap(), m);
        assert_eq!(
            m.to_bytes(),
            RFC_EXAMPLE.replace("Subject:;", "Subject: ;").as_bytes()
        );
    }

    #[test]
    fn built_messages_round_trip_with_unicode_and_quotes() {
        let from = CpimAddress::new(Some("Zoë \"the\" \\ Tester"), "sip:zoe@example.com");
        let to = CpimAddress::new(None, "sip:bob@example.com");
        let mut m = CpimMessage::new(
            &from,
            &to,
            Some("2026-11-21T10:00:00.123Z"),
            "text/plain",
            "héllo → wörld\r\n\r\nwith blank lines".as_bytes().to_vec(),
        );
        let p = m.declare_namespace("imdn", "urn:ietf:params:imdn");
        m.headers
            .push((format!("{p}.Message-ID"), "34jk324j".into()));
        assert_eq!(m.declare_namespace("other", "urn:ietf:params:imdn"), "imdn");
        let back = CpimMessage::parse(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.from().unwrap(), from);
        assert_eq!(back.to().unwrap(), vec![to]);
        assert_eq!(
            back.extension("urn:ietf:params:imdn", "Message-ID"),
            Some("34jk324j")
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let ok = "From: <sip:a@x>\r\nTo: <sip:b@x>\r\n\r\nContent-Type: text/plain\r\n\r\nhi";
        assert!(CpimMessage::parse(ok.as_bytes()).is_ok());
        let long = format!("X: {}\r\n\r\n\r\n", "a".repeat(MAX_LINE));
        let many = format!("{}\r\n\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        for bad in [
            "",
            "From: <sip:a@x>\r\n",
            "From: <sip:a@x>\r\n\r\nContent-Type: text/plain\r\n",
            "From sip:a@x\r\n\r\n\r\n",
            "From: sip:a@x\r\n\r\n\r\n",
            "From: <sip:a@x\r\n\r\n\r\n",
            "From: \"unclosed <sip:a@x>\r\n\r\n\r\n",
            "To: <>\r\n\r\n\r\n",
            "Bad Name: x\r\n\r\n\r\n",
            ": x\r\n\r\n\r\n",
            "From: <sip:a@x>\r\n folded\r\n\r\n\r\n",
            "DateTime: yesterday\r\n\r\n\r\n",
            "DateTime: 2000-13-13T13:40:00Z\r\n\r\n\r\n",
            "DateTime: 2000-12-13T13:40:00\r\n\r\n\r\n",
            "DateTime: 2000-12-13T13:40:00.Z\r\n\r\n\r\n",
            "DateTime: 2000-12-13T13:40:00+0800\r\n\r\n\r\n",
            "NS: <no-close\r\n\r\n\r\n",
            "NS: bad prefix <urn:x>\r\n\r\n\r\n",
            "X: a\u{1}b\r\n\r\n\r\n",
            long.as_str(),
            many.as_str(),
        ] {
            assert!(CpimMessage::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(CpimMessage::parse(b"X: \xff\r\n\r\n\r\n").is_err());
        for good in [
            "2000-12-13T13:40:00Z",
            "2000-12-13t13:40:00.5+01:00",
            "2016-12-31T23:59:60-00:00",
        ] {
            assert!(check_datetime(good).is_ok(), "{good}");
        }
    }
}
