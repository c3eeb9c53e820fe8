//! The incremental MSRP parser: bytes from a connection in, pieces out.
//!
//! A chunk comes out as a [`Piece::Head`], then its body as any number of
//! [`Piece::Data`] slices as they arrive, then [`Piece::End`] with the
//! continuation flag. The body is never buffered whole: the parser keeps
//! back only the few bytes that could be the start of the end-line.
//!
//! The end-line is CRLF, seven dashes, this chunk's transaction id and a
//! flag (`$`, `+`, `#`), then CRLF (RFC 4975 section 7.1). Anything else in a
//! body, including an end-line with another transaction id or with a bad
//! flag, is data: the sender must choose a transaction id that does not
//! occur in the body (section 7.1.1), so only the exact line ends a chunk.
//!
//! A head that cannot be framed (no start line, a head longer than the
//! limit) is a [`FramingError`]: the connection cannot go on. A head that
//! frames but is wrong inside (a header line without a colon) comes out as a
//! head with a `defect`, so the transaction can still be answered with 400.

use memchr::memmem;

use super::message::{valid_ident, ChunkHead, ContFlag, StartLine};

/// Limits on what one connection may make us hold.
#[derive(Debug, Clone, Copy)]
pub struct ParserLimits {
    /// Largest head (start line and headers).
    pub max_head: usize,
    /// Most header lines in one head.
    pub max_headers: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_head: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// The stream cannot be framed any more; close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MSRP framing: {0}")]
pub struct FramingError(pub String);

/// One piece of a chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// The head; `defect` says what is wrong inside it, if anything.
    Head {
        head: ChunkHead,
        defect: Option<String>,
    },
    /// Body bytes, in order.
    Data(&'a [u8]),
    /// The end-line.
    End(ContFlag),
}

enum State {
    Head,
    /// In a body: `marker` is CRLF, dashes and the transaction id.
    Body {
        marker: Vec<u8>,
    },
    /// The end-line of a chunk with no body: `marker` without the CRLF.
    Ended {
        flag: ContFlag,
        len: usize,
    },
    Broken,
}

/// See the module documentation.
pub struct ChunkParser {
    buf: Vec<u8>,
    pos: usize,
    state: State,
    limits: ParserLimits,
    /// Where to resume the end-line search in the body.
    scanned: usize,
}

impl Default for ChunkParser {
    fn default() -> Self {
        ChunkParser::new(ParserLimits::default())
    }
}

impl ChunkParser {
    pub fn new(limits: ParserLimits) -> ChunkParser {
        ChunkParser {
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            state: State::Head,
            limits,
            scanned: 0,
        }
    }

    /// The last `n` bytes appended (what one read added, for a trace).
    pub fn recent(&self, n: usize) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(n)..]
    }

    /// Bytes held and not yet given out.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether the parser sits between chunks (nothing half-parsed).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Head) && self.buffered() == 0
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.scanned = self.scanned.saturating_sub(self.pos);
            self.pos = 0;
        }
    }

    /// The buffer to append what was read to, with room for `min` more
    /// bytes: reading straight into it saves a copy (e.g. tokio's
    /// `read_buf`, which appends without zeroing).
    pub fn read_buffer(&mut self, min: usize) -> &mut Vec<u8> {
        self.compact();
        self.buf.reserve(min);
        &mut self.buf
    }

    /// Copy bytes in.
    pub fn push(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// The next piece, `None` when more bytes are needed.
    pub fn next_piece(&mut self) -> Result<Option<Piece<'_>>, FramingError> {
        match &self.state {
            State::Broken => Err(FramingError("the stream is broken".into())),
            State::Head => self.head(),
            State::Ended { flag, len } => {
                let (flag, len) = (*flag, *len);
                self.pos += len;
                self.state = State::Head;
                Ok(Some(Piece::End(flag)))
            }
            State::Body { .. } => self.body(),
        }
    }

    fn fail(&mut self, why: String) -> Result<Option<Piece<'_>>, FramingError> {
        self.state = State::Broken;
        Err(FramingError(why))
    }

    fn head(&mut self) -> Result<Option<Piece<'_>>, FramingError> {
        let data = &self.buf[self.pos..];
        if data.is_empty() {
            return Ok(None);
        }
        let Some(line_end) = memmem::find(data, b"\r\n") else {
            if data.len() > self.limits.max_head {
                return self.fail("start line too long".into());
            }
            // Check what we have so far, to close on garbage early.
            if !b"MSRP ".starts_with(&data[..data.len().min(5)]) {
                return self.fail("not an MSRP start line".into());
            }
            return Ok(None);
        };
        let first = &data[..line_end];
        let Some((tid, start)) = parse_start_line(first) else {
            let shown = String::from_utf8_lossy(&first[..first.len().min(80)]).into_owned();
            return self.fail(format!("bad start line {shown:?}"));
        };
        // The head ends at an empty line (a body follows) or at the end-line.
        let mut marker = Vec::with_capacity(tid.len() + 9);
        marker.extend_from_slice(b"\r\n-------");
        marker.extend_from_slice(tid.as_bytes());
        let search = &data[line_end..];
        let blank = memmem::find(search, b"\r\n\r\n").map(|i| i + line_end);
        let endl = memmem::find(search, &marker).map(|i| i + line_end);
        // (end of the header lines, where the end-line starts if no body)
        let (lines_end, no_body_at) = match (blank, endl) {
            // "Content-Type: x CRLF CRLF -------tid$": an empty body
            // written without its CRLF.
            (Some(b), Some(e)) if e == b + 2 => (b, Some(e)),
            (Some(b), Some(e)) if b < e => (b, None),
            (Some(b), None) => (b, None),
            (_, Some(e)) => (e, Some(e)),
            (None, None) => {
                if data.len() > self.limits.max_head {
                    return self.fail("head too long".into());
                }
                return Ok(None);
            }
        };
        if lines_end > self.limits.max_head {
            return self.fail("head too long".into());
        }
        if no_body_at.is_none() {
            // The end-line may follow the blank line at once (an empty body
            // written without its CRLF): wait until that can be told.
            let after = &data[lines_end + 4..];
            let dashes = &marker[2..];
            if after.len() < dashes.len() && dashes.starts_with(after) {
                return Ok(None);
            }
        }
        if let Some(e) = no_body_at {
            if data.len() < e + marker.len() + 3 {
                return Ok(None);
            }
        }
        let mut defect = None;
        let mut headers = Vec::new();
        if lines_end > line_end {
            for line in data[line_end + 2..lines_end].split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if headers.len() >= self.limits.max_headers {
                    defect.get_or_insert_with(|| "too many headers".to_string());
                    break;
                }
                match parse_header(line) {
                    Some(h) => headers.push(h),
                    None => {
                        let shown = String::from_utf8_lossy(&line[..line.len().min(60)]);
                        defect.get_or_insert_with(|| format!("bad header line {shown:?}"));
                    }
                }
            }
        }
        let head = ChunkHead {
            transaction_id: tid,
            start,
            headers,
        };
        match no_body_at {
            None => {
                // The body starts after the blank line; an empty body's
                // CRLF is the first two bytes of the marker.
                self.pos += lines_end + 4;
                self.scanned = self.pos;
                self.state = State::Body { marker };
            }
            Some(e) => {
                let flag_at = e + marker.len();
                let crlf_ok = &data[flag_at + 1..flag_at + 3] == b"\r\n";
                let Some(flag) = ContFlag::from_byte(data[flag_at]).filter(|_| crlf_ok) else {
                    return self.fail("bad end-line".into());
                };
                self.pos += e;
                self.state = State::Ended {
                    flag,
                    len: marker.len() + 3,
                };
            }
        }
        Ok(Some(Piece::Head { head, defect }))
    }

    fn body(&mut self) -> Result<Option<Piece<'_>>, FramingError> {
        let State::Body { marker } = &self.state else {
            return Ok(None);
        };
        let mlen = marker.len();
        let data_end = self.buf.len();
        let mut from = self.scanned.max(self.pos);
        while let Some(at) = memmem::find(&self.buf[from..data_end], marker).map(|i| i + from) {
            if data_end < at + mlen + 3 {
                // Cannot tell yet: give out what precedes it.
                self.scanned = at;
                if at > self.pos {
                    let start = self.pos;
                    self.pos = at;
                    return Ok(Some(Piece::Data(&self.buf[start..at])));
                }
                return Ok(None);
            }
            let crlf_ok = &self.buf[at + mlen + 1..at + mlen + 3] == b"\r\n";
            match ContFlag::from_byte(self.buf[at + mlen]).filter(|_| crlf_ok) {
                Some(flag) => {
                    if at > self.pos {
                        let start = self.pos;
                        self.pos = at;
                        self.scanned = at;
                        return Ok(Some(Piece::Data(&self.buf[start..at])));
                    }
                    self.pos = at + mlen + 3;
                    self.scanned = self.pos;
                    self.state = State::Head;
                    return Ok(Some(Piece::End(flag)));
                }
                // Looks like an end-line but is not one: data.
                None => from = at + 1,
            }
        }
        // No end-line yet: give out all but what could be its beginning.
        let safe = data_end.saturating_sub(mlen).max(from.min(data_end));
        self.scanned = safe.max(self.pos);
        if safe > self.pos {
            let start = self.pos;
            self.pos = safe;
            return Ok(Some(Piece::Data(&self.buf[start..safe])));
        }
        Ok(None)
    }
}

/// `MSRP <tid> <METHOD>` or `MSRP <tid> <code>[ <comment>]`.
fn parse_start_line(line: &[u8]) -> Option<(String, StartLine)> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("MSRP ")?;
    let (tid, rest) = rest.split_once(' ')?;
    if !valid_ident(tid) {
        return None;
    }
    let (word, comment) = match rest.split_once(' ') {
        Some((w, c)) => (w, Some(c)),
        None => (rest, None),
    };
    if word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) {
        let code: u16 = word.parse().ok()?;
        if !(100..=999).contains(&code) {
            return None;
        }
        Some((
            tid.to_string(),
            StartLine::Response {
                code,
                comment: comment.map(str::to_string).filter(|c| !c.is_empty()),
            },
        ))
    } else if !word.is_empty() && word.bytes().all(|b| b.is_ascii_uppercase()) && comment.is_none()
    {
        Some((
            tid.to_string(),
            StartLine::Request {
                method: word.to_string(),
            },
        ))
    } else {
        None
    }
}

fn parse_header(line: &[u8]) -> Option<(String, String)> {
    let line = std::str::from_utf8(line).ok()?;
    let (name, value) = line.split_once(':')?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
    {
        return None;
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return None;
    }
    Some((name.to_string(), value.trim().to_string()))
}
