//! MSRP chunks (RFC 4975 section 7): the start line, the headers with typed
//! access, and the printer. The body is not part of [`ChunkHead`]: it
//! streams through the parser and the writer in pieces.

use std::fmt::Write as _;

use super::uri::{parse_path, path_to_string, MsrpUri};
use super::MsrpError;

/// The continuation flag that ends a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContFlag {
    /// `$`: the last chunk of the message.
    End,
    /// `+`: more chunks follow.
    More,
    /// `#`: the sender gave up on the message.
    Abort,
}

impl ContFlag {
    pub fn from_byte(b: u8) -> Option<ContFlag> {
        match b {
            b'$' => Some(ContFlag::End),
            b'+' => Some(ContFlag::More),
            b'#' => Some(ContFlag::Abort),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            ContFlag::End => b'$',
            ContFlag::More => b'+',
            ContFlag::Abort => b'#',
        }
    }
}

/// A request method or a response status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String },
    Response { code: u16, comment: Option<String> },
}

/// `Byte-Range: start-end/total`, where `end` and `total` may be `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// 1-based offset of the chunk's first byte in the message.
    pub start: u64,
    pub end: Option<u64>,
    pub total: Option<u64>,
}

impl ByteRange {
    pub fn parse(s: &str) -> Result<ByteRange, MsrpError> {
        let bad = || MsrpError::Header(format!("bad Byte-Range {s:?}"));
        let (range, total) = s.trim().split_once('/').ok_or_else(bad)?;
        let (start, end) = range.split_once('-').ok_or_else(bad)?;
        let num = |t: &str| -> Result<Option<u64>, MsrpError> {
            if t == "*" {
                Ok(None)
            } else if !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse::<u64>().map(Some).map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let start = num(start)?.ok_or_else(bad)?;
        let end = num(end)?;
        let total = num(total)?;
        let r = ByteRange { start, end, total };
        r.check()
            .map_err(|why| MsrpError::Header(format!("Byte-Range {s:?}: {why}")))?;
        Ok(r)
    }

    /// The rules a range must keep whatever the body is.
    fn check(&self) -> Result<(), &'static str> {
        if self.start == 0 {
            return Err("start is 1-based");
        }
        if let Some(e) = self.end {
            // An empty chunk is start-(start-1).
            if e + 1 < self.start {
                return Err("end before start");
            }
        }
        if let Some(t) = self.total {
            if self.start > t.saturating_add(1) {
                return Err("start beyond the total");
            }
            if self.end.is_some_and(|e| e > t) {
                return Err("end beyond the total");
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for ByteRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-", self.start)?;
        match self.end {
            Some(e) => write!(f, "{e}")?,
            None => f.write_str("*")?,
        }
        match self.total {
            Some(t) => write!(f, "/{t}"),
            None => f.write_str("/*"),
        }
    }
}

/// Success-Report / Failure-Report values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    Yes,
    No,
    /// Failure-Report only: negative responses and reports only.
    Partial,
}

impl ReportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportMode::Yes => "yes",
            ReportMode::No => "no",
            ReportMode::Partial => "partial",
        }
    }
}

/// `Status: 000 200 OK` in a REPORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub namespace: u16,
    pub code: u16,
    pub comment: Option<String>,
}

impl Status {
    pub fn parse(s: &str) -> Result<Status, MsrpError> {
        let bad = || MsrpError::Header(format!("bad Status {s:?}"));
        let mut it = s.trim().splitn(3, ' ');
        let three = |t: Option<&str>| -> Result<u16, MsrpError> {
            match t {
                Some(t) if t.len() == 3 && t.bytes().all(|b| b.is_ascii_digit()) => {
                    t.parse().map_err(|_| bad())
                }
                _ => Err(bad()),
            }
        };
        let namespace = three(it.next())?;
        let code = three(it.next())?;
        let comment = it.next().map(str::to_string).filter(|c| !c.is_empty());
        Ok(Status {
            namespace,
            code,
            comment,
        })
    }
}

/// Everything of a chunk but its body and end-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHead {
    pub transaction_id: String,
    pub start: StartLine,
    /// Headers in order, names as received.
    pub headers: Vec<(String, String)>,
}

/// The reason phrase used for a response code when none is given.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Message Too Large",
        415 => "Unsupported Media Type",
        423 => "Interval Out-of-Bounds",
        481 => "Session Does Not Exist",
        501 => "Not Implemented",
        506 => "Wrong Connection",
        _ => "Error",
    }
}

impl ChunkHead {
    pub fn request(transaction_id: &str, method: &str) -> ChunkHead {
        ChunkHead {
            transaction_id: transaction_id.into(),
            start: StartLine::Request {
                method: method.into(),
            },
            headers: Vec::new(),
        }
    }

    pub fn response(transaction_id: &str, code: u16, comment: Option<&str>) -> ChunkHead {
        ChunkHead {
            transaction_id: transaction_id.into(),
            start: StartLine::Response {
                code,
                comment: comment.map(|c| c.replace(['\r', '\n'], " ")),
            },
            headers: Vec::new(),
        }
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn comment(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { comment, .. } => comment.as_deref(),
            StartLine::Request { .. } => None,
        }
    }

    /// The first header of that name (names compare without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Append a header. Values lose CR and LF so no header can be injected.
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.headers
            .push((name.to_string(), value.replace(['\r', '\n'], " ")));
    }

    /// Replace (or add) a header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.push_header(name, value);
    }

    pub fn to_path(&self) -> Result<Vec<MsrpUri>, MsrpError> {
        parse_path(
            self.header("To-Path")
                .ok_or_else(|| MsrpError::Header("no To-Path".into()))?,
        )
    }

    pub fn from_path(&self) -> Result<Vec<MsrpUri>, MsrpError> {
        parse_path(
            self.header("From-Path")
                .ok_or_else(|| MsrpError::Header("no From-Path".into()))?,
        )
    }

    pub fn use_path(&self) -> Result<Option<Vec<MsrpUri>>, MsrpError> {
        self.header("Use-Path").map(parse_path).transpose()
    }

    pub fn message_id(&self) -> Option<&str> {
        self.header("Message-ID").map(str::trim)
    }

    pub fn byte_range(&self) -> Result<Option<ByteRange>, MsrpError> {
        self.header("Byte-Range").map(ByteRange::parse).transpose()
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type").map(str::trim)
    }

    pub fn status(&self) -> Result<Option<Status>, MsrpError> {
        self.header("Status").map(Status::parse).transpose()
    }

    fn report_header(&self, name: &str, default: ReportMode) -> Result<ReportMode, MsrpError> {
        match self.header(name).map(str::trim) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("yes") => Ok(ReportMode::Yes),
            Some(v) if v.eq_ignore_ascii_case("no") => Ok(ReportMode::No),
            Some(v) if v.eq_ignore_ascii_case("partial") && name == "Failure-Report" => {
                Ok(ReportMode::Partial)
            }
            Some(v) => Err(MsrpError::Header(format!("bad {name} {v:?}"))),
        }
    }

    /// Success-Report, `no` when absent.
    pub fn success_report(&self) -> Result<ReportMode, MsrpError> {
        self.report_header("Success-Report", ReportMode::No)
    }

    /// Failure-Report, `yes` when absent.
    pub fn failure_report(&self) -> Result<ReportMode, MsrpError> {
        self.report_header("Failure-Report", ReportMode::Yes)
    }

    /// A numeric header such as Expires, Min-Expires or Max-Expires.
    pub fn header_u32(&self, name: &str) -> Result<Option<u32>, MsrpError> {
        self.header(name)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| MsrpError::Header(format!("bad {name} {v:?}")))
            })
            .transpose()
    }

    /// Print the start line and headers, each line ending in CRLF.
    pub fn write_head(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(256);
        match &self.start {
            StartLine::Request { method } => {
                let _ = write!(s, "MSRP {} {}\r\n", self.transaction_id, method);
            }
            StartLine::Response { code, comment } => {
                let _ = write!(s, "MSRP {} {:03}", self.transaction_id, code);
                if let Some(c) = comment {
                    let _ = write!(s, " {c}");
                }
                s.push_str("\r\n");
            }
        }
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// The end-line that closes this chunk.
    pub fn end_line(&self, flag: ContFlag) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.transaction_id.len() + 10);
        v.extend_from_slice(b"-------");
        v.extend_from_slice(self.transaction_id.as_bytes());
        v.push(flag.as_byte());
        v.extend_from_slice(b"\r\n");
        v
    }

    /// A whole chunk: head, body (when there is a Content-Type or data),
    /// end-line.
    pub fn to_bytes(&self, body: &[u8], flag: ContFlag) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + body.len());
        self.write_head(&mut out);
        if !body.is_empty() || self.content_type().is_some() {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.end_line(flag));
        out
    }

    /// Paths of a new request (RFC 4975 section 7.1, RFC 4976 section 5):
    /// To-Path is our own relays (our full path but its last URI, nearest
    /// first) then `dest`; From-Path is our URI alone (relays add
    /// themselves on the way).
    pub fn set_request_paths(&mut self, local: &[MsrpUri], dest: &[MsrpUri]) {
        let n = local.len().saturating_sub(1);
        let mut to: Vec<MsrpUri> = local[..n].iter().rev().cloned().collect();
        to.extend(dest.iter().cloned());
        let from: Vec<MsrpUri> = local.last().cloned().into_iter().collect();
        self.set_paths(&to, &from);
    }

    /// Paths of a response (RFC 4975 section 7.2): to the previous hop of
    /// the request, from our URI (the last of our full path).
    pub fn set_response_paths(&mut self, previous_hop: Option<&MsrpUri>, local: &[MsrpUri]) {
        let to: Vec<MsrpUri> = previous_hop.cloned().into_iter().collect();
        let from: Vec<MsrpUri> = local.last().cloned().into_iter().collect();
        self.set_paths(&to, &from);
    }

    /// The hop a request came from: the first URI of its From-Path.
    pub fn previous_hop(&self) -> Option<MsrpUri> {
        self.from_path().ok().and_then(|p| p.into_iter().next())
    }

    /// Set To-Path and From-Path as the first two headers.
    pub fn set_paths(&mut self, to: &[MsrpUri], from: &[MsrpUri]) {
        self.headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("To-Path") && !n.eq_ignore_ascii_case("From-Path")
        });
        self.headers
            .insert(0, ("To-Path".into(), path_to_string(to)));
        self.headers
            .insert(1, ("From-Path".into(), path_to_string(from)));
    }
}

/// Whether `tid` is a valid transaction id (RFC 4975 `ident`).
pub fn valid_ident(tid: &str) -> bool {
    let b = tid.as_bytes();
    (4..=32).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b".-+%=".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        let r = ByteRange::parse("1-*/245347").unwrap();
        assert_eq!((r.start, r.end, r.total), (1, None, Some(245347)));
        assert_eq!(r.to_string(), "1-*/245347");
        assert_eq!(ByteRange::parse("1-0/0").unwrap().end, Some(0));
        assert_eq!(ByteRange::parse("11-20/*").unwrap().total, None);
        for bad in [
            "",
            "0-5/10",
            "5-3/10",
            "12-*/10",
            "1-11/10",
            "-1-5/10",
            "1-5",
            "a-5/10",
            "1-5/99999999999999999999999",
            "18446744073709551615-*/*x",
            "1--5/10",
        ] {
            assert!(ByteRange::parse(bad).is_err(), "{bad:?} accepted");
        }
        // The largest numbers still parse; arithmetic on them must not overflow.
        let r = ByteRange::parse("18446744073709551615-*/*").unwrap();
        assert_eq!(r.start, u64::MAX);
    }

    #[test]
    fn head_prints_paths_first() {
        let to = vec![MsrpUri::parse("msrp://b:2/y;tcp").unwrap()];
        let from = vec![MsrpUri::parse("msrp://a:1/x;tcp").unwrap()];
        let mut h = ChunkHead::request("a786hjs2", "SEND");
        h.push_header("Message-ID", "87652491");
        h.set_paths(&to, &from);
        h.push_header("Content-Type", "text/plain");
        let bytes = h.to_bytes(b"Hey Bob", ContFlag::End);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "MSRP a786hjs2 SEND\r\nTo-Path: msrp://b:2/y;tcp\r\nFrom-Path: msrp://a:1/x;tcp\r\n\
             Message-ID: 87652491\r\nContent-Type: text/plain\r\n\r\nHey Bob\r\n-------a786hjs2$\r\n"
        );
        let r = ChunkHead::response("a786hjs2", 200, Some("OK\r\nX: y"));
        let bytes = r.to_bytes(b"", ContFlag::End);
        assert_eq!(bytes, b"MSRP a786hjs2 200 OK  X: y\r\n-------a786hjs2$\r\n");
    }

    #[test]
    fn report_headers_and_status() {
        let mut h = ChunkHead::request("abcd", "REPORT");
        assert_eq!(h.success_report().unwrap(), ReportMode::No);
        assert_eq!(h.failure_report().unwrap(), ReportMode::Yes);
        h.push_header("Failure-Report", "partial");
        h.push_header("Success-Report", "partial");
        assert_eq!(h.failure_report().unwrap(), ReportMode::Partial);
        assert!(h.success_report().is_err());
        let s = Status::parse("000 413 Message Too Large").unwrap();
        assert_eq!((s.namespace, s.code), (0, 413));
        assert_eq!(s.comment.as_deref(), Some("Message Too Large"));
        assert!(Status::parse("0 200").is_err());
        assert!(Status::parse("000 2000").is_err());
        assert!(valid_ident("a786hjs2"));
        assert!(!valid_ident("ab"));
        assert!(!valid_ident("-abc"));
        assert!(!valid_ident("abc def"));
    }
}
