//! SIP messages: a strict RFC 3261 front end (framing, unfolding, compact
//! names, validation), accessors, a builder and a printer.
//!
//! A parsed message keeps its start line and headers as one unfolded text
//! buffer with spans into it, and its body as bytes: parsing is one scan with
//! memchr, one copy and one vector of spans.

use std::fmt;
use std::ops::Range;

use memchr::memmem;

use super::header::{is_token, HeaderName};
use super::uri::Uri;
use super::values::{self, NameAddr, Via};

/// Size limits applied while parsing (defaults per the issue: datagram 64 KiB,
/// stream message 1 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_datagram: usize,
    pub max_stream_message: usize,
    pub max_headers: usize,
    /// Values in one list header (Via, Route, Contact...).
    pub max_list_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_datagram: 65_535,
            max_stream_message: 1 << 20,
            max_headers: 256,
            max_list_items: 128,
        }
    }
}

/// What is wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No blank line ends the headers, or the body is shorter than declared
    /// (on a stream: wait for more bytes).
    Incomplete,
    TooLarge,
    TooManyHeaders,
    BadUtf8,
    ControlCharacter,
    BadStartLine(&'static str),
    /// Not SIP/2.0: a request gets 505.
    UnsupportedVersion,
    BadStatusCode,
    BadHeaderLine,
    BadHeader(&'static str, &'static str),
    DuplicateHeader(&'static str),
    MissingHeader(&'static str),
    /// Content-Length larger than the datagram's body.
    BodyTooShort,
    /// Stream messages must carry Content-Length.
    MissingContentLength,
    CSeqMethodMismatch,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::Incomplete => f.write_str("incomplete message"),
            ParseErrorKind::TooLarge => f.write_str("message too large"),
            ParseErrorKind::TooManyHeaders => f.write_str("too many headers"),
            ParseErrorKind::BadUtf8 => f.write_str("headers are not UTF-8"),
            ParseErrorKind::ControlCharacter => f.write_str("control character in headers"),
            ParseErrorKind::BadStartLine(w) => write!(f, "bad start line: {w}"),
            ParseErrorKind::UnsupportedVersion => f.write_str("SIP version not supported"),
            ParseErrorKind::BadStatusCode => f.write_str("bad status code"),
            ParseErrorKind::BadHeaderLine => f.write_str("bad header line"),
            ParseErrorKind::BadHeader(h, w) => write!(f, "bad {h} header: {w}"),
            ParseErrorKind::DuplicateHeader(h) => write!(f, "more than one {h} header"),
            ParseErrorKind::MissingHeader(h) => write!(f, "missing {h} header"),
            ParseErrorKind::BodyTooShort => f.write_str("body shorter than Content-Length"),
            ParseErrorKind::MissingContentLength => {
                f.write_str("missing Content-Length on a stream")
            }
            ParseErrorKind::CSeqMethodMismatch => {
                f.write_str("CSeq method differs from the request method")
            }
        }
    }
}

/// A message that could not be accepted. `partial` holds what could be read
/// when the start line and header lines split cleanly, so a request can be
/// answered (400, 505) with its Via, From, To, Call-ID and CSeq.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub partial: Option<Box<SipMessage>>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn bare(kind: ParseErrorKind) -> Self {
        ParseError {
            kind,
            partial: None,
        }
    }

    /// The response a UAS sends, or None to drop silently (responses, and
    /// requests too broken to answer).
    pub fn response_code(&self) -> Option<u16> {
        let partial = self.partial.as_ref()?;
        if !partial.is_request() {
            return None;
        }
        // A reply needs at least a Via to go back along.
        partial.header(HeaderName::Via)?;
        Some(match self.kind {
            ParseErrorKind::UnsupportedVersion => 505,
            _ => 400,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(r: Range<usize>) -> Span {
        Span {
            start: r.start as u32,
            end: r.end as u32,
        }
    }
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Request {
        method: Span,
        uri: Span,
    },
    Response {
        code: u16,
        reason: Span,
    },
    /// Only in `ParseError::partial`: a request line that did not parse.
    Malformed,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: HeaderName,
    name_span: Span,
    value: Span,
}

/// A SIP request or response.
#[derive(Clone)]
pub struct SipMessage {
    head: String,
    start: Start,
    headers: Vec<Entry>,
    body: Vec<u8>,
}

impl fmt::Debug for SipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipMessage")
            .field("start", &self.start_line())
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A header as it appears in a message: its identity, its name as written
/// (`Other` headers), and its unfolded, trimmed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub name: HeaderName,
    pub raw_name: &'a str,
    pub value: &'a str,
}

impl HeaderRef<'_> {
    /// The name to print: canonical for known headers, as written otherwise.
    pub fn print_name(&self) -> &str {
        match self.name {
            HeaderName::Other => self.raw_name,
            n => n.as_str(),
        }
    }
}

#[inline]
fn is_ctl(c: u8) -> bool {
    (c < 0x20 && c != b'\t') || c == 0x7f
}

/// A control character that is not escaped as a quoted-pair (`\` followed by
/// any byte but CR and LF, RFC 3261 section 25.1).
fn has_bare_ctl(line: &[u8]) -> bool {
    // Nearly every line has no control character at all: one quick pass
    // (a fold without early exit, which the compiler vectorizes).
    if !line.iter().fold(false, |acc, &c| {
        acc | (c < 0x20 && c != b'\t') | (c == 0x7f)
    }) {
        return false;
    }
    line.iter()
        .enumerate()
        .any(|(i, &c)| is_ctl(c) && !(i > 0 && line[i - 1] == b'\\'))
}

/// Replace folding (CRLF followed by SP/HT) with two spaces, in place.
fn unfold(head: &mut [u8]) {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\r', &head[i..]) {
        let at = i + p;
        if at + 2 < head.len()
            && head[at + 1] == b'\n'
            && (head[at + 2] == b' ' || head[at + 2] == b'\t')
        {
            head[at] = b' ';
            head[at + 1] = b' ';
        }
        i = at + 1;
    }
}

fn trim_span(s: &[u8], mut a: usize, mut b: usize) -> (usize, usize) {
    while a < b && (s[a] == b' ' || s[a] == b'\t') {
        a += 1;
    }
    while b > a && (s[b - 1] == b' ' || s[b - 1] == b'\t') {
        b -= 1;
    }
    (a, b)
}

/// Where the header section ends in `data`: (offset of the blank line's CRLF
/// + 2 = end of the last header line incl. CRLF, offset of the body).
fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    memmem::find(data, b"\r\n\r\n").map(|p| (p + 2, p + 4))
}

/// The first CRLF in `b` (a byte search for CR, cheaper than a substring
/// search on short lines).
fn find_crlf(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\r', &b[i..]) {
        let at = i + p;
        if b.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Split and unfold the head (start line and headers, without the blank
/// line). Validates UTF-8, control characters and header-line structure.
fn split_head(raw: &[u8], limits: &Limits) -> Result<SipMessage, ParseError> {
    let mut buf = raw.to_vec();
    unfold(&mut buf);
    let head = String::from_utf8(buf).map_err(|_| ParseError::bare(ParseErrorKind::BadUtf8))?;
    let b = head.as_bytes();
    let first_end = find_crlf(b).ok_or(ParseError::bare(ParseErrorKind::Incomplete))?;
    if b[..first_end].iter().any(|&c| is_ctl(c)) {
        return Err(ParseError::bare(ParseErrorKind::ControlCharacter));
    }
    let mut msg = SipMessage {
        start: Start::Malformed,
        headers: Vec::with_capacity(16),
        body: Vec::new(),
        head: String::new(),
    };
    let mut line_error = None;
    let mut pos = first_end + 2;
    while pos < b.len() {
        let end = pos + find_crlf(&b[pos..]).ok_or(ParseError::bare(ParseErrorKind::Incomplete))?;
        let line = &b[pos..end];
        if has_bare_ctl(line) {
            return Err(ParseError::bare(ParseErrorKind::ControlCharacter));
        }
        match memchr::memchr(b':', line) {
            Some(colon) => {
                let (ns, ne) = trim_span(b, pos, pos + colon);
                let name = &head[ns..ne];
                // A header line cannot start with whitespace (that would be a
                // fold, already joined) and its name must be a token.
                if ns != pos || !is_token(name) {
                    line_error.get_or_insert(ParseErrorKind::BadHeaderLine);
                } else {
                    let (vs, ve) = trim_span(b, pos + colon + 1, end);
                    msg.headers.push(Entry {
                        name: HeaderName::parse(name),
                        name_span: Span::of(ns..ne),
                        value: Span::of(vs..ve),
                    });
                    if msg.headers.len() > limits.max_headers {
                        return Err(ParseError::bare(ParseErrorKind::TooManyHeaders));
                    }
                }
            }
            None => {
                line_error.get_or_insert(ParseErrorKind::BadHeaderLine);
            }
        }
        pos = end + 2;
    }
    msg.head = head;
    match parse_start(&msg.head, first_end) {
        Ok(start) => msg.start = start,
        // A broken request line still leaves a request to answer with 400;
        // a broken status line is a response: dropped.
        Err(kind) => {
            let partial = (!msg.head.starts_with("SIP/")).then(|| Box::new(msg));
            return Err(ParseError { kind, partial });
        }
    }
    if let Some(kind) = line_error {
        return Err(ParseError {
            kind,
            partial: Some(Box::new(msg)),
        });
    }
    Ok(msg)
}

fn parse_start(head: &str, end: usize) -> Result<Start, ParseErrorKind> {
    let line = &head[..end];
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        if !rest.starts_with("2.0 ") {
            return Err(ParseErrorKind::UnsupportedVersion);
        }
        let rest = &rest[4..];
        let code_end = rest.find(' ').ok_or(ParseErrorKind::BadStatusCode)?;
        let code = &rest[..code_end];
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ParseErrorKind::BadStatusCode);
        }
        let code: u16 = code.parse().map_err(|_| ParseErrorKind::BadStatusCode)?;
        if !(100..=699).contains(&code) {
            return Err(ParseErrorKind::BadStatusCode);
        }
        let rs = 4 + 4 + code_end + 1;
        return Ok(Start::Response {
            code,
            reason: Span::of(rs..end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces.
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseErrorKind::BadStartLine(
            "expected METHOD SP URI SP SIP/2.0",
        ));
    };
    if !is_token(method) {
        return Err(ParseErrorKind::BadStartLine("bad method"));
    }
    if uri.is_empty() || uri.starts_with('<') {
        return Err(ParseErrorKind::BadStartLine("bad Request-URI"));
    }
    if version != "SIP/2.0" {
        return Err(if version.starts_with("SIP/") {
            ParseErrorKind::UnsupportedVersion
        } else {
            ParseErrorKind::BadStartLine("bad version")
        });
    }
    let m = 0..method.len();
    let u = method.len() + 1..method.len() + 1 + uri.len();
    Ok(Start::Request {
        method: Span::of(m),
        uri: Span::of(u),
    })
}

impl SipMessage {
    /// Parse one datagram (UDP). Content-Length, if present, must not exceed the
    /// bytes after the headers; bytes past it are discarded. Without it the body
    /// runs to the end of the datagram.
    pub fn parse_datagram(data: &[u8], limits: &Limits) -> Result<SipMessage, ParseError> {
        if data.len() > limits.max_datagram {
            return Err(ParseError::bare(ParseErrorKind::TooLarge));
        }
        let data = skip_leading_crlf(data);
        let (head_end, body_start) =
            find_head_end(data).ok_or(ParseError::bare(ParseErrorKind::Incomplete))?;
        let mut msg = split_head(&data[..head_end], limits)?;
        let rest = &data[body_start..];
        let body_len = match msg.content_length() {
            Err(kind) => return Err(msg.into_error(kind)),
            Ok(Some(cl)) if cl > rest.len() => {
                return Err(msg.into_error(ParseErrorKind::BodyTooShort))
            }
            Ok(Some(cl)) => cl,
            Ok(None) => rest.len(),
        };
        msg.body = rest[..body_len].to_vec();
        msg.validate()
    }

    fn into_error(self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            kind,
            partial: Some(Box::new(self)),
        }
    }

    /// The one Content-Length value, if any.
    fn content_length(&self) -> Result<Option<usize>, ParseErrorKind> {
        let mut found = None;
        for h in self
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::ContentLength)
        {
            if found.is_some() {
                return Err(ParseErrorKind::DuplicateHeader("Content-Length"));
            }
            let v = &self.head[h.value.range()];
            found = Some(
                values::parse_number(v, u32::MAX as u64)
                    .map_err(|w| ParseErrorKind::BadHeader("Content-Length", w))?
                    as usize,
            );
        }
        Ok(found)
    }

    /// Semantic checks on a split message (strict RFC 3261).
    fn validate(self) -> Result<SipMessage, ParseError> {
        match self.check() {
            Ok(()) => Ok(self),
            Err(kind) => Err(self.into_error(kind)),
        }
    }

    fn check(&self) -> Result<(), ParseErrorKind> {
        // Validation only: the borrowed scanners check the full grammar
        // without building owned URIs and parameter lists.
        if let Start::Request { uri, .. } = self.start {
            let has_headers = Uri::check(&self.head[uri.range()])
                .map_err(|_| ParseErrorKind::BadStartLine("bad Request-URI"))?;
            if has_headers {
                return Err(ParseErrorKind::BadStartLine("headers in the Request-URI"));
            }
        }
        let mut counts = [0u8; 6];
        for h in &self.headers {
            let v = &self.head[h.value.range()];
            let bad = |w| ParseErrorKind::BadHeader(h.name.as_str(), w);
            match h.name {
                HeaderName::Via => {
                    counts[0] = counts[0].saturating_add(1);
                    for_each_item(v, 128, |item| values::scan_via(item).map(|_| ()))
                        .map_err(bad)?;
                }
                HeaderName::From | HeaderName::To => {
                    counts[if h.name == HeaderName::From { 1 } else { 2 }] += 1;
                    values::scan_name_addr(v).map_err(bad)?;
                }
                HeaderName::CallId => {
                    counts[3] = counts[3].saturating_add(1);
                    if v.is_empty() || v.bytes().any(|c| c == b' ' || c == b'\t') {
                        return Err(bad("not a single word"));
                    }
                }
                HeaderName::CSeq => {
                    counts[4] = counts[4].saturating_add(1);
                    let (_, method) = values::parse_cseq(v).map_err(bad)?;
                    if let Some(m) = self.method() {
                        if m != method {
                            return Err(ParseErrorKind::CSeqMethodMismatch);
                        }
                    }
                }
                HeaderName::MaxForwards => {
                    counts[5] = counts[5].saturating_add(1);
                    values::parse_number(v, 255).map_err(bad)?;
                }
                HeaderName::Expires | HeaderName::MinExpires => {
                    values::parse_number(v, u32::MAX as u64).map_err(bad)?;
                }
                HeaderName::Contact if v != "*" => {
                    for_each_item(v, 128, |item| {
                        let na = values::scan_name_addr(item)?;
                        values::scan_params(na.params, |name, value| {
                            match value {
                                Some(values::RawValue::Token(e))
                                    if name.eq_ignore_ascii_case("expires") =>
                                {
                                    values::parse_number(e, u32::MAX as u64)?;
                                }
                                Some(values::RawValue::Quoted(_))
                                    if name.eq_ignore_ascii_case("expires") =>
                                {
                                    return Err("not a number");
                                }
                                _ => {}
                            }
                            Ok(())
                        })
                    })
                    .map_err(bad)?;
                }
                HeaderName::Route | HeaderName::RecordRoute | HeaderName::Path => {
                    for_each_item(v, 128, |item| {
                        if values::scan_name_addr(item)?.angle {
                            Ok(())
                        } else {
                            Err("route entries must be <URI>")
                        }
                    })
                    .map_err(bad)?;
                }
                _ => {}
            }
        }
        let names = ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"];
        for (i, n) in counts.iter().enumerate() {
            if i > 0 && *n > 1 {
                return Err(ParseErrorKind::DuplicateHeader(names[i]));
            }
        }
        for (i, name) in names.iter().enumerate().take(5) {
            if counts[i] == 0 {
                return Err(ParseErrorKind::MissingHeader(name));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ accessors

    pub fn is_request(&self) -> bool {
        !matches!(self.start, Start::Response { .. })
    }

    /// The request method, or None for a response.
    pub fn method(&self) -> Option<&str> {
        match self.start {
            Start::Request { method, .. } => Some(&self.head[method.range()]),
            _ => None,
        }
    }

    /// The Request-URI as written.
    pub fn request_uri(&self) -> Option<&str> {
        match self.start {
            Start::Request { uri, .. } => Some(&self.head[uri.range()]),
            _ => None,
        }
    }

    /// Status code and reason phrase of a response.
    pub fn status(&self) -> Option<(u16, &str)> {
        match self.start {
            Start::Response { code, reason } => Some((code, &self.head[reason.range()])),
            _ => None,
        }
    }

    /// The start line as printed.
    pub fn start_line(&self) -> String {
        match self.start {
            Start::Request { method, uri } => {
                format!(
                    "{} {} SIP/2.0",
                    &self.head[method.range()],
                    &self.head[uri.range()]
                )
            }
            Start::Response { code, reason } => {
                format!("SIP/2.0 {code} {}", &self.head[reason.range()])
            }
            Start::Malformed => String::new(),
        }
    }

    fn entry(&self, e: &Entry) -> HeaderRef<'_> {
        HeaderRef {
            name: e.name,
            raw_name: &self.head[e.name_span.range()],
            value: &self.head[e.value.range()],
        }
    }

    /// Every header, in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'_>> {
        self.headers.iter().map(|e| self.entry(e))
    }

    /// The first value of a known header.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers
            .iter()
            .find(|e| e.name == name)
            .map(|e| &self.head[e.value.range()])
    }

    /// Every header line of a known header (list values not split).
    pub fn header_all(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |e| e.name == name)
            .map(|e| &self.head[e.value.range()])
    }

    /// The first value of any header by name (case-insensitive, compact forms too).
    pub fn header_by_name(&self, name: &str) -> Option<&str> {
        let known = HeaderName::parse(name);
        self.headers()
            .find(|h| {
                if known == HeaderName::Other {
                    h.name == HeaderName::Other && h.raw_name.eq_ignore_ascii_case(name)
                } else {
                    h.name == known
                }
            })
            .map(|h| h.value)
    }

    /// All values of a list header, split at commas.
    pub fn header_items(&self, name: HeaderName) -> Vec<&str> {
        self.header_all(name)
            .filter_map(|v| values::split_list(v, usize::MAX).ok())
            .flatten()
            .collect()
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The Via values, topmost first.
    pub fn vias(&self) -> Vec<Via> {
        self.header_items(HeaderName::Via)
            .into_iter()
            .filter_map(|v| values::parse_via(v).ok())
            .collect()
    }

    pub fn top_via(&self) -> Option<Via> {
        self.header_items(HeaderName::Via)
            .first()
            .and_then(|v| values::parse_via(v).ok())
    }

    pub fn from(&self) -> Option<NameAddr> {
        self.header(HeaderName::From)
            .and_then(|v| values::parse_name_addr(v).ok())
    }

    pub fn to(&self) -> Option<NameAddr> {
        self.header(HeaderName::To)
            .and_then(|v| values::parse_name_addr(v).ok())
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header(HeaderName::CallId)
    }

    pub fn cseq(&self) -> Option<(u32, &str)> {
        self.header(HeaderName::CSeq)
            .and_then(|v| values::parse_cseq(v).ok())
    }

    // ------------------------------------------------------------ building

    fn new(start_line: &str, start: impl FnOnce(usize) -> Start) -> SipMessage {
        let mut head = String::with_capacity(512);
        head.push_str(start_line);
        let start = start(head.len());
        head.push_str("\r\n");
        SipMessage {
            head,
            start,
            headers: Vec::with_capacity(16),
            body: Vec::new(),
        }
    }

    /// A new request. `method` must be a token and `uri` a valid URI.
    pub fn request(method: &str, uri: &Uri) -> Result<SipMessage, BuildError> {
        if !is_token(method) {
            return Err(BuildError("method is not a token"));
        }
        let uri = uri.to_string();
        let line = format!("{method} {uri} SIP/2.0");
        let m = method.len();
        Ok(SipMessage::new(&line, |_| Start::Request {
            method: Span::of(0..m),
            uri: Span::of(m + 1..m + 1 + uri.len()),
        }))
    }

    /// A new response.
    pub fn response(code: u16, reason: &str) -> Result<SipMessage, BuildError> {
        if !(100..=699).contains(&code) {
            return Err(BuildError("status code out of range"));
        }
        if reason
            .bytes()
            .any(|c| c == b'\r' || c == b'\n' || is_ctl(c))
        {
            return Err(BuildError("control character in reason phrase"));
        }
        let line = format!("SIP/2.0 {code} {reason}");
        Ok(SipMessage::new(&line, |end| Start::Response {
            code,
            reason: Span::of(12..end),
        }))
    }

    /// Append a header. The name must be a token; the value must not contain
    /// CR, LF or other control characters (no header injection).
    pub fn push_header(&mut self, name: &str, value: &str) -> Result<(), BuildError> {
        if !is_token(name) {
            return Err(BuildError("header name is not a token"));
        }
        if value.bytes().any(|c| c == b'\r' || c == b'\n') || has_bare_ctl(value.as_bytes()) {
            return Err(BuildError("control character in header value"));
        }
        let value = value.trim_matches([' ', '\t']);
        let ns = self.head.len();
        self.head.push_str(name);
        let ne = self.head.len();
        self.head.push_str(": ");
        let vs = self.head.len();
        self.head.push_str(value);
        let ve = self.head.len();
        self.head.push_str("\r\n");
        self.headers.push(Entry {
            name: HeaderName::parse(name),
            name_span: Span::of(ns..ne),
            value: Span::of(vs..ve),
        });
        Ok(())
    }

    /// Remove every header with this identity.
    pub fn remove_header(&mut self, name: HeaderName) {
        self.headers.retain(|e| e.name != name);
    }

    /// Replace every header with this identity by one with `value`.
    pub fn set_header(&mut self, name: HeaderName, value: &str) -> Result<(), BuildError> {
        self.remove_header(name);
        self.push_header(name.as_str(), value)
    }

    /// Replace the first list item of the first `name` header, e.g. the top
    /// Via when a server adds `received` and `rport` (RFC 3261 18.2.1,
    /// RFC 3581). Fails if there is no such header or its value is not a
    /// well-formed list.
    pub fn replace_first_item(&mut self, name: HeaderName, item: &str) -> Result<(), BuildError> {
        if item.bytes().any(|c| c == b'\r' || c == b'\n') || has_bare_ctl(item.as_bytes()) {
            return Err(BuildError("control character in header value"));
        }
        let idx = self
            .headers
            .iter()
            .position(|e| e.name == name)
            .ok_or(BuildError("no such header"))?;
        let value = &self.head[self.headers[idx].value.range()];
        let items =
            values::split_list(value, usize::MAX).map_err(|_| BuildError("malformed list"))?;
        // split_list returns subslices of `value`: the first item ends here.
        let first_end = items[0].as_ptr() as usize - value.as_ptr() as usize + items[0].len();
        let rest = value[first_end..].to_string();
        let vs = self.head.len();
        self.head.push_str(item);
        self.head.push_str(&rest);
        let ve = self.head.len();
        self.headers[idx].value = Span::of(vs..ve);
        Ok(())
    }

    pub fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }

    /// Print the message: canonical names for known headers, one header per
    /// line, and a Content-Length that matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.body.len() + 32);
        self.write_to(&mut out);
        out
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.start_line().as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in self.headers() {
            if h.name == HeaderName::ContentLength {
                continue;
            }
            out.extend_from_slice(h.print_name().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(self.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// Run `f` on each item of a comma list without collecting them.
fn for_each_item(
    value: &str,
    max_items: usize,
    mut f: impl FnMut(&str) -> Result<(), values::ValueError>,
) -> Result<(), values::ValueError> {
    if !value.contains([',', '"', '<']) {
        // The common case: one plain item.
        let item = value.trim_matches([' ', '\t']);
        if item.is_empty() {
            return Err("empty list item");
        }
        return f(item);
    }
    for item in values::split_list(value, max_items)? {
        f(item)?;
    }
    Ok(())
}

/// A message could not be built as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build SIP message: {0}")]
pub struct BuildError(pub &'static str);

fn skip_leading_crlf(mut data: &[u8]) -> &[u8] {
    while let Some(rest) = data.strip_prefix(b"\r\n") {
        data = rest;
    }
    data
}

/// Output of the stream framer.
#[derive(Debug)]
pub enum StreamEvent {
    Message(SipMessage),
    /// A CRLFCRLF keep-alive ping (RFC 5626 section 4.4.1): answer with CRLF.
    Ping,
    /// A lone CRLF: a keep-alive pong.
    Pong,
}

/// Frames SIP messages out of a byte stream (TCP, TLS) by Content-Length,
/// which is mandatory there. Bounded: a header section or message larger than
/// the limits is an error (the connection should be closed).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: Limits,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: Vec::new(),
            limits,
        }
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Add received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message or keep-alive, None if more bytes are needed.
    /// After an error the stream cannot be resynchronised: close it.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.drain(..4);
            return Ok(Some(StreamEvent::Ping));
        }
        if self.buf == b"\r\n\r" {
            return Ok(None); // a ping still arriving
        }
        if self.buf.starts_with(b"\r\n") {
            // A lone CRLF: a pong, or the blank line RFC 3261 section 7.5 allows
            // before a message.
            self.buf.drain(..2);
            return Ok(Some(StreamEvent::Pong));
        }
        let Some((head_end, body_start)) = find_head_end(&self.buf) else {
            if self.buf.len() > self.limits.max_stream_message {
                return Err(ParseError::bare(ParseErrorKind::TooLarge));
            }
            return Ok(None);
        };
        if body_start > self.limits.max_stream_message {
            return Err(ParseError::bare(ParseErrorKind::TooLarge));
        }
        let mut msg = split_head(&self.buf[..head_end], &self.limits)?;
        let cl = match msg.content_length() {
            Ok(Some(cl)) => cl,
            Ok(None) => return Err(msg.into_error(ParseErrorKind::MissingContentLength)),
            Err(kind) => return Err(msg.into_error(kind)),
        };
        if body_start + cl > self.limits.max_stream_message {
            return Err(msg.into_error(ParseErrorKind::TooLarge));
        }
        if self.buf.len() < body_start + cl {
            return Ok(None);
        }
        msg.body = self.buf[body_start..body_start + cl].to_vec();
        self.buf.drain(..body_start + cl);
        msg.validate().map(|m| Some(StreamEvent::Message(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\r\n";

    fn parse(s: &str) -> Result<SipMessage, ParseError> {
        SipMessage::parse_datagram(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_and_prints_equivalently() {
        let m = parse(INVITE).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.call_id(), Some("a84b4c76e66710@pc33.atlanta.example.com"));
        assert_eq!(m.cseq(), Some((314159, "INVITE")));
        assert_eq!(m.body(), b"v=0\r");
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
        let printed = m.to_bytes();
        let again = SipMessage::parse_datagram(&printed, &Limits::default()).unwrap();
        assert_eq!(again.start_line(), m.start_line());
        assert_eq!(
            again.headers().collect::<Vec<_>>(),
            m.headers().collect::<Vec<_>>()
        );
        assert_eq!(again.body(), m.body());
        assert_eq!(again.to_bytes(), printed);
    }

    #[test]
    fn compact_forms_and_folding() {
        let s = "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: x@y\r\nf: <sip:a@b>;tag=1\r\nt:\r\n <sip:c@d>\r\nCSeq: 1\r\n\tOPTIONS\r\nl: 0\r\n\r\n";
        let m = parse(s).unwrap();
        assert_eq!(m.header(HeaderName::To), Some("<sip:c@d>"));
        assert_eq!(m.cseq(), Some((1, "OPTIONS")));
        let printed = String::from_utf8(m.to_bytes()).unwrap();
        assert!(printed.contains("\r\nCall-ID: x@y\r\n"), "{printed}");
        assert!(printed.contains("\r\nTo: <sip:c@d>\r\n"));
    }

    #[test]
    fn responses() {
        let s = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: x@y\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
        let m = parse(s).unwrap();
        assert_eq!(m.status(), Some((180, "Ringing")));
        assert!(!m.is_request());
        let bad = s.replace("180", "1800");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadStatusCode);
        assert_eq!(e.response_code(), None);
    }

    #[test]
    fn builder_refuses_injection() {
        let uri = Uri::parse("sip:bob@example.com").unwrap();
        let mut m = SipMessage::request("MESSAGE", &uri).unwrap();
        assert!(m.push_header("Subject", "hi\r\nVia: evil").is_err());
        assert!(m.push_header("Bad Name", "x").is_err());
        assert!(SipMessage::request("BAD METHOD", &uri).is_err());
        assert!(SipMessage::response(99, "x").is_err());
        m.push_header("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")
            .unwrap();
        for (n, v) in [
            ("From", "<sip:a@b>;tag=1"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "c"),
            ("CSeq", "1 MESSAGE"),
        ] {
            m.push_header(n, v).unwrap();
        }
        m.set_body(b"hello".to_vec());
        let p = parse(std::str::from_utf8(&m.to_bytes()).unwrap()).unwrap();
        assert_eq!(p.body(), b"hello");
        let r = SipMessage::response(200, "OK").unwrap();
        assert_eq!(r.start_line(), "SIP/2.0 200 OK");
    }

    #[test]
    fn stream_framing() {
        let mut f = StreamFramer::new(Limits::default());
        let bytes = INVITE.as_bytes();
        f.push(b"\r\n\r\n");
        assert!(matches!(f.next_event().unwrap(), Some(StreamEvent::Ping)));
        for chunk in bytes.chunks(7) {
            f.push(chunk);
        }
        f.push(&bytes[..20]);
        match f.next_event().unwrap() {
            Some(StreamEvent::Message(m)) => assert_eq!(m.body(), b"v=0\r"),
            other => panic!("{other:?}"),
        }
        // The extra bytes ("\n" after the 4-byte body, then 20 bytes) remain.
        assert_eq!(f.buffered(), 1 + 20);
        let mut f = StreamFramer::new(Limits::default());
        f.push(INVITE.replace("Content-Length: 4\r\n", "").as_bytes());
        assert_eq!(
            f.next_event().unwrap_err().kind,
            ParseErrorKind::MissingContentLength
        );
        let mut f = StreamFramer::new(Limits {
            max_stream_message: 1000,
            ..Limits::default()
        });
        f.push(&vec![b'a'; 1001]);
        assert_eq!(f.next_event().unwrap_err().kind, ParseErrorKind::TooLarge);
    }
}
