//! The SDP attributes of file transfer over MSRP (RFC 5547):
//! `a=file-selector` (name, type, size, hash), `a=file-transfer-id`,
//! `a=file-disposition`, `a=file-date`, `a=file-icon` and `a=file-range`,
//! parsed from and added to a media description; and the rules that turn
//! a name from the network into one safe to create in a directory.
//!
//! ```text
//! a=file-selector:name:"reblink.pdf" type:com.adobe.pdf size:268759 hash:sha1:60:A1:BE:...
//! a=file-transfer-id:vBnG916bdberum2fFEABR1FR3ExZMUrd
//! a=file-range:1001-*
//! ```
//!
//! Hashes print as the SDK does (`sha1`, as in its SDP example) and parse
//! in either spelling (`sha1` or RFC 5547's `sha-1`; `sha-256`).

use std::fmt;

use super::model::{Attribute, MediaDescription};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file transfer SDP: {0}")]
pub struct FileSdpError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, FileSdpError> {
    Err(FileSdpError(why.into()))
}

/// Longest file name we accept from the network, in bytes (before
/// sanitising; typical file systems take 255).
const MAX_NAME: usize = 1024;

/// A hash function of `hash:` selectors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
    /// One we cannot compute; kept so the selector prints back.
    Other(String),
}

impl HashAlgorithm {
    pub fn parse(s: &str) -> HashAlgorithm {
        match s.to_ascii_lowercase().as_str() {
            "sha1" | "sha-1" => HashAlgorithm::Sha1,
            "sha256" | "sha-256" => HashAlgorithm::Sha256,
            _ => HashAlgorithm::Other(s.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha256 => "sha-256",
            HashAlgorithm::Other(s) => s,
        }
    }

    /// Digest length in bytes, for the ones we know.
    pub fn digest_len(&self) -> Option<usize> {
        match self {
            HashAlgorithm::Sha1 => Some(20),
            HashAlgorithm::Sha256 => Some(32),
            HashAlgorithm::Other(_) => None,
        }
    }
}

/// One `hash:<algorithm>:<XX:XX:...>` selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    pub algorithm: HashAlgorithm,
    pub value: Vec<u8>,
}

impl fmt::Display for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.algorithm.as_str())?;
        for (i, b) in self.value.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl FileHash {
    fn parse(s: &str) -> Result<FileHash, FileSdpError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| FileSdpError(format!("hash selector {s:?} has no value")))?;
        let token = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
        };
        if !token(alg) {
            return err(format!("bad hash algorithm {alg:?}"));
        }
        let mut value = Vec::new();
        for pair in hex.split(':') {
            if pair.len() != 2 {
                return err(format!("bad hash value {hex:?}"));
            }
            value.push(
                u8::from_str_radix(pair, 16)
                    .map_err(|_| FileSdpError(format!("bad hash value {hex:?}")))?,
            );
            if value.len() > 64 {
                return err("hash value too long");
            }
        }
        let algorithm = HashAlgorithm::parse(alg);
        if algorithm.digest_len().is_some_and(|n| n != value.len()) {
            return err(format!(
                "a {} hash has {} bytes, not {}",
                algorithm.as_str(),
                algorithm.digest_len().unwrap_or(0),
                value.len()
            ));
        }
        Ok(FileHash { algorithm, value })
    }
}

/// A running hash of file bytes, for the algorithms we can compute.
#[derive(Clone)]
pub enum FileHasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl FileHasher {
    /// None for algorithms we do not know.
    pub fn new(algorithm: &HashAlgorithm) -> Option<FileHasher> {
        use sha2::Digest;
        match algorithm {
            HashAlgorithm::Sha1 => Some(FileHasher::Sha1(sha1::Sha1::new())),
            HashAlgorithm::Sha256 => Some(FileHasher::Sha256(sha2::Sha256::new())),
            HashAlgorithm::Other(_) => None,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            FileHasher::Sha1(h) => h.update(data),
            FileHasher::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> FileHash {
        use sha2::Digest;
        match self {
            FileHasher::Sha1(h) => FileHash {
                algorithm: HashAlgorithm::Sha1,
                value: h.finalize().to_vec(),
            },
            FileHasher::Sha256(h) => FileHash {
                algorithm: HashAlgorithm::Sha256,
                value: h.finalize().to_vec(),
            },
        }
    }
}

/// `a=file-selector`: what identifies the file (RFC 5547 section 5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSelector {
    /// The name as the sender gave it (not yet safe to use as a path).
    pub name: Option<String>,
    /// `type/subtype` (parameters kept), or a bare type token as some
    /// clients send (`com.adobe.pdf` in the SDK's example).
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub hashes: Vec<FileHash>,
}

fn percent_encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' | '%' | '\r' | '\n' | '\0' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, FileSdpError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| FileSdpError("bad percent-encoding in the file name".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| FileSdpError("the file name is not UTF-8".into()))
}

impl FileSelector {
    pub fn parse(value: &str) -> Result<FileSelector, FileSdpError> {
        let mut sel = FileSelector::default();
        let mut rest = value.trim();
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once(':')
                .ok_or_else(|| FileSdpError(format!("selector without a value at {rest:?}")))?;
            let (val, next) = if key == "name" {
                let inner = after
                    .strip_prefix('"')
                    .ok_or_else(|| FileSdpError("the name is not quoted".into()))?;
                let end = inner
                    .find('"')
                    .ok_or_else(|| FileSdpError("the name's closing quote is missing".into()))?;
                (&inner[..end], &inner[end + 1..])
            } else {
                // Type parameters are quoted and may hold spaces.
                let mut in_quote = false;
                let end = after
                    .char_indices()
                    .find(|&(_, c)| {
                        if c == '"' {
                            in_quote = !in_quote;
                        }
                        c == ' ' && !in_quote
                    })
                    .map(|(i, _)| i)
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            match key {
                "name" => {
                    if sel.name.is_some() {
                        return err("more than one name selector");
                    }
                    // Encoded, a name may be three times its length.
                    if val.len() > 3 * MAX_NAME {
                        return err("the file name is too long");
                    }
                    let name = percent_decode(val)?;
                    if name.is_empty() {
                        return err("an empty file name");
                    }
                    if name.len() > MAX_NAME {
                        return err("the file name is too long");
                    }
                    sel.name = Some(name);
                }
                "type" => {
                    if sel.content_type.is_some() {
                        return err("more than one type selector");
                    }
                    // An unclosed quote would swallow the selectors after it.
                    let quotes = val.matches('"').count();
                    if val.is_empty()
                        || val.len() > 255
                        || val.chars().any(char::is_control)
                        || quotes % 2 != 0
                    {
                        return err(format!("bad type selector {val:?}"));
                    }
                    sel.content_type = Some(val.to_string());
                }
                "size" => {
                    if sel.size.is_some() {
                        return err("more than one size selector");
                    }
                    if val.is_empty() || !val.bytes().all(|b| b.is_ascii_digit()) {
                        return err(format!("bad size {val:?}"));
                    }
                    sel.size = Some(
                        val.parse()
                            .map_err(|_| FileSdpError(format!("size {val:?} is too large")))?,
                    );
                }
                "hash" => {
                    if sel.hashes.len() >= 8 {
                        return err("too many hash selectors");
                    }
                    sel.hashes.push(FileHash::parse(val)?);
                }
                other => return err(format!("unknown selector {other:?}")),
            }
            if !next.is_empty() && !next.starts_with(' ') {
                return err(format!("selectors must be separated by spaces at {next:?}"));
            }
            rest = next.trim_start();
        }
        Ok(sel)
    }

    /// The hash of `algorithm`, if the selector has one.
    pub fn hash(&self, algorithm: &HashAlgorithm) -> Option<&FileHash> {
        self.hashes.iter().find(|h| &h.algorithm == algorithm)
    }

    /// Whether `other` (an offer's selector, say) names the same file as
    /// far as both say: every selector present in both must match.
    pub fn matches(&self, other: &FileSelector) -> bool {
        fn same<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        same(&self.name, &other.name)
            && same(&self.size, &other.size)
            && self
                .hashes
                .iter()
                .all(|h| other.hash(&h.algorithm).is_none_or(|o| o.value == h.value))
    }
}

impl FileSelector {
    /// The hash to check a received file against: the strongest one we
    /// can compute.
    pub fn check_hash(&self) -> Option<&FileHash> {
        self.hash(&HashAlgorithm::Sha256)
            .or_else(|| self.hash(&HashAlgorithm::Sha1))
    }
}

impl fmt::Display for FileSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(n) = &self.name {
            parts.push(format!("name:\"{}\"", percent_encode_name(n)));
        }
        if let Some(t) = &self.content_type {
            parts.push(format!("type:{t}"));
        }
        if let Some(s) = self.size {
            parts.push(format!("size:{s}"));
        }
        for h in &self.hashes {
            parts.push(format!("hash:{h}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// `a=file-range:<start>-<stop|*>`: 1-based and inclusive, as RFC 5547
/// section 7 has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    pub start: u64,
    /// None: to the end (`*`).
    pub stop: Option<u64>,
}

impl FileRange {
    pub fn parse(value: &str) -> Result<FileRange, FileSdpError> {
        let (a, b) = value
            .trim()
            .split_once('-')
            .ok_or_else(|| FileSdpError(format!("bad file-range {value:?}")))?;
        let num = |x: &str| -> Result<u64, FileSdpError> {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return err(format!("bad file-range {value:?}"));
            }
            x.parse()
                .map_err(|_| FileSdpError(format!("bad file-range {value:?}")))
        };
        let start = num(a)?;
        let stop = if b == "*" { None } else { Some(num(b)?) };
        if start == 0 || stop.is_some_and(|s| s < start) {
            return err(format!("file-range {value:?} is empty or starts at 0"));
        }
        Ok(FileRange { start, stop })
    }

    /// The 0-based offset of the first byte.
    pub fn offset(&self) -> u64 {
        self.start - 1
    }
}

impl fmt::Display for FileRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stop {
            Some(s) => write!(f, "{}-{s}", self.start),
            None => write!(f, "{}-*", self.start),
        }
    }
}

/// Everything RFC 5547 puts on a file transfer's m= line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileTransferSdp {
    pub selector: FileSelector,
    pub transfer_id: Option<String>,
    pub disposition: Option<String>,
    /// `a=file-date` parameters: (creation|modification|read, date).
    pub dates: Vec<(String, String)>,
    pub icon: Option<String>,
    pub range: Option<FileRange>,
    pub description: Option<String>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
}

fn parse_dates(value: &str) -> Result<Vec<(String, String)>, FileSdpError> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let (kind, after) = rest
            .split_once(':')
            .ok_or_else(|| FileSdpError(format!("bad file-date {value:?}")))?;
        if !["creation", "modification", "read"].contains(&kind) {
            return err(format!("unknown file-date parameter {kind:?}"));
        }
        let inner = after
            .strip_prefix('"')
            .ok_or_else(|| FileSdpError("a file-date value is not quoted".into()))?;
        let end = inner
            .find('"')
            .ok_or_else(|| FileSdpError("a file-date value is not closed".into()))?;
        out.push((kind.to_string(), inner[..end].to_string()));
        rest = inner[end + 1..].trim_start();
    }
    Ok(out)
}

impl FileTransferSdp {
    /// Whether a media description is a file transfer (it has
    /// `a=file-selector`).
    pub fn is_file_transfer(m: &MediaDescription) -> bool {
        m.has_attribute("file-selector")
    }

    pub fn from_media(m: &MediaDescription) -> Result<FileTransferSdp, FileSdpError> {
        let mut sel = m.attribute_values("file-selector");
        let selector = match (sel.next(), sel.next()) {
            (Some(v), None) => FileSelector::parse(v)?,
            (None, _) => return err("no a=file-selector"),
            (Some(_), Some(_)) => return err("more than one a=file-selector"),
        };
        let one = |name: &str| -> Result<Option<String>, FileSdpError> {
            let mut v = m.attribute_values(name);
            match (v.next(), v.next()) {
                (a, None) => Ok(a.map(|s| s.trim().to_string())),
                _ => err(format!("more than one a={name}")),
            }
        };
        let transfer_id = one("file-transfer-id")?;
        if let Some(t) = &transfer_id {
            if !is_token(t) {
                return err(format!("bad file-transfer-id {t:?}"));
            }
        }
        let disposition = one("file-disposition")?;
        if let Some(d) = &disposition {
            if !is_token(d) {
                return err(format!("bad file-disposition {d:?}"));
            }
        }
        let dates = match one("file-date")? {
            Some(d) => parse_dates(&d)?,
            None => Vec::new(),
        };
        let range = one("file-range")?
            .map(|r| FileRange::parse(&r))
            .transpose()?;
        if let (Some(r), Some(size)) = (range, selector.size) {
            // RFC 5547: the range lies within the file.
            if r.start > size.max(1) || r.stop.is_some_and(|s| s > size) {
                return err(format!("file-range {r} is outside a file of {size} bytes"));
            }
        }
        Ok(FileTransferSdp {
            selector,
            transfer_id,
            disposition,
            dates,
            icon: one("file-icon")?,
            range,
            description: m.attribute("i").map(str::to_string),
        })
    }

    /// Add our attributes to `m`.
    pub fn add_to(&self, m: &mut MediaDescription) {
        m.push_attribute(Attribute::value("file-selector", self.selector.to_string()));
        if let Some(t) = &self.transfer_id {
            m.push_attribute(Attribute::value("file-transfer-id", t.clone()));
        }
        if let Some(d) = &self.disposition {
            m.push_attribute(Attribute::value("file-disposition", d.clone()));
        }
        if !self.dates.is_empty() {
            let v: Vec<String> = self
                .dates
                .iter()
                .map(|(k, d)| format!("{k}:\"{}\"", d.replace('"', "")))
                .collect();
            m.push_attribute(Attribute::value("file-date", v.join(" ")));
        }
        if let Some(i) = &self.icon {
            m.push_attribute(Attribute::value("file-icon", i.clone()));
        }
        if let Some(r) = self.range {
            m.push_attribute(Attribute::value("file-range", r.to_string()));
        }
    }
}

/// Longest name we create, in bytes.
pub const MAX_SAFE_NAME: usize = 200;

/// A name from the network made safe to create inside a directory: only
/// its last path component (either separator), no control characters, no
/// leading dots (no `.`, `..` or hidden files), no characters file systems
/// refuse, at most [`MAX_SAFE_NAME`] bytes with the extension kept, and
/// `file` when nothing is left.
pub fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c => c,
        })
        .collect();
    let trimmed = cleaned
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' ']);
    let mut out = if trimmed.is_empty() {
        "file".to_string()
    } else {
        trimmed.to_string()
    };
    if out.len() > MAX_SAFE_NAME {
        // Keep a short extension; cut the stem on a character boundary.
        let ext = out
            .rfind('.')
            .map(|i| out[i..].to_string())
            .filter(|e| e.len() <= 16)
            .unwrap_or_default();
        let mut cut = MAX_SAFE_NAME - ext.len();
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out = format!("{}{ext}", &out[..cut]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDK_EXAMPLE: &str = "name:\"reblink.pdf\" type:com.adobe.pdf size:268759 hash:sha1:60:A1:BE:8D:71:DB:E3:8E:84:C9:2C:62:9E:F2:99:78:9D:68:79:F6";

    #[test]
    fn the_sdk_example_parses_and_prints_back() {
        let s = FileSelector::parse(SDK_EXAMPLE).unwrap();
        assert_eq!(s.name.as_deref(), Some("reblink.pdf"));
        assert_eq!(s.content_type.as_deref(), Some("com.adobe.pdf"));
        assert_eq!(s.size, Some(268_759));
        assert_eq!(s.hashes[0].algorithm, HashAlgorithm::Sha1);
        assert_eq!(s.hashes[0].value[0], 0x60);
        assert_eq!(s.to_string(), SDK_EXAMPLE);
    }

    #[test]
    fn rfc_5547_forms() {
        let s = FileSelector::parse(
            "name:\"My cool picture.jpg\" type:image/jpeg size:32349 hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E",
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("My cool picture.jpg"));
        assert_eq!(s.hashes[0].algorithm, HashAlgorithm::Sha1);
        let t = FileSelector::parse("type:text/plain;charset=\"utf 8\" size:0").unwrap();
        assert_eq!(
            t.content_type.as_deref(),
            Some("text/plain;charset=\"utf 8\"")
        );
        assert_eq!(t.size, Some(0));
        // Quotes, percent signs and line breaks in names are encoded.
        let u = FileSelector {
            name: Some("a \"b\" 100% ü\r\n.txt".into()),
            hashes: vec![FileHash {
                algorithm: HashAlgorithm::Sha256,
                value: vec![7; 32],
            }],
            ..FileSelector::default()
        };
        assert!(!u.to_string().contains('\n'));
        assert_eq!(FileSelector::parse(&u.to_string()).unwrap(), u);
        assert_eq!(FileRange::parse("1001-*").unwrap().offset(), 1000);
        assert_eq!(FileRange::parse("1-10").unwrap().to_string(), "1-10");
    }

    #[test]
    fn malformed_selectors_and_ranges_are_errors() {
        for bad in [
            "name:noquotes",
            "name:\"unterminated",
            "name:\"\"",
            "name:\"a\" name:\"b\"",
            "size:-1",
            "size:12x",
            "size:99999999999999999999999",
            "hash:sha1",
            "hash:sha1:ZZ",
            "hash:sha1:60:A1",
            "hash:sha-256:00",
            "hash:bad alg:00",
            "colour:red",
            "name:\"a\"size:1",
            "name:\"%zz\"",
            "name:\"%ff\"",
            "type:",
            // Found by the fuzz target: an unclosed quote took the rest.
            "type:a\" hash:sha1:60:A1 size:1",
        ] {
            assert!(FileSelector::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "0-5", "5-4", "-5", "1-", "a-b", "1-2-3", "1*"] {
            assert!(FileRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_round_trip_and_checks() {
        let mut m = MediaDescription::new("message", 7654, "TCP/MSRP", &["*"]);
        let ft = FileTransferSdp {
            selector: FileSelector::parse(SDK_EXAMPLE).unwrap(),
            transfer_id: Some("vBnG916bdberum2fFEABR1FR3ExZMUrd".into()),
            disposition: Some("attachment".into()),
            dates: vec![("creation".into(), "Mon, 15 May 2006 15:01:31 +0300".into())],
            icon: None,
            range: Some(FileRange {
                start: 1001,
                stop: None,
            }),
            description: None,
        };
        ft.add_to(&mut m);
        assert!(FileTransferSdp::is_file_transfer(&m));
        assert_eq!(FileTransferSdp::from_media(&m).unwrap(), ft);
        let mut bad = m.clone();
        bad.push_attribute(Attribute::value("file-range", "1-2"));
        assert!(FileTransferSdp::from_media(&bad).is_err());
        let mut outside = MediaDescription::new("message", 7654, "TCP/MSRP", &["*"]);
        outside.push_attribute(Attribute::value("file-selector", "size:10"));
        outside.push_attribute(Attribute::value("file-range", "5-11"));
        assert!(FileTransferSdp::from_media(&outside).is_err());
        let plain = MediaDescription::new("message", 7654, "TCP/MSRP", &["*"]);
        assert!(FileTransferSdp::from_media(&plain).is_err());
    }

    #[test]
    fn hashers_match_known_digests() {
        // FIPS 180 "abc" vectors.
        let mut h = FileHasher::new(&HashAlgorithm::Sha1).unwrap();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(
            h.finish().to_string(),
            "sha1:A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D"
        );
        let mut h = FileHasher::new(&HashAlgorithm::Sha256).unwrap();
        h.update(b"abc");
        assert!(h.finish().to_string().starts_with("sha-256:BA:78:16:BF"));
        assert!(FileHasher::new(&HashAlgorithm::Other("md5".into())).is_none());
    }

    #[test]
    fn names_from_the_network_are_made_safe() {
        let cases = [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("..\\..\\windows\\system.ini", "system.ini"),
            ("/abs/path/x.txt", "x.txt"),
            ("..", "file"),
            (".", "file"),
            (".hidden", "hidden"),
            ("a\u{0}b\u{7}c\r\n.txt", "abc.txt"),
            ("con:out?.txt", "con_out_.txt"),
            ("", "file"),
            ("dir/", "file"),
            ("  spaced  ", "spaced"),
            ("trailing.", "trailing"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_file_name(input), want, "{input:?}");
        }
        let long = format!("{}.tar.gz", "é".repeat(400));
        let s = sanitize_file_name(&long);
        assert!(s.len() <= MAX_SAFE_NAME && s.ends_with(".gz"), "{s}");
        for input in ["x/../../y", "\\\\server\\share\\f", "a/b/c/..", "..."] {
            let s = sanitize_file_name(input);
            assert!(
                !s.contains(['/', '\\']) && !s.starts_with('.') && !s.is_empty(),
                "{s}"
            );
        }
    }
}
