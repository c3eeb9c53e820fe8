//! URIs: SIP and SIPS (RFC 3261 section 19.1, IPv6 references per RFC 5118),
//! tel (RFC 3966), and any other absolute URI kept as text.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a URI was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URI: {0}")]
pub struct UriError(pub &'static str);

/// The host part of a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A host as found in the text, not yet copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostRef<'a> {
    Domain(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostRef<'_> {
    pub(crate) fn to_host(self) -> Host {
        match self {
            HostRef::Domain(d) => Host::Domain(d.to_ascii_lowercase()),
            HostRef::V4(a) => Host::V4(a),
            HostRef::V6(a) => Host::V6(a),
        }
    }
}

/// Validate a host (`[v6]`, dotted IPv4, or a hostname) without copying it.
pub(crate) fn scan_host(s: &str) -> Result<HostRef<'_>, UriError> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(UriError("unterminated IPv6 reference"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(HostRef::V6)
            .map_err(|_| UriError("bad IPv6 address"));
    }
    if s.is_empty() {
        return Err(UriError("empty host"));
    }
    if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return s
            .parse::<Ipv4Addr>()
            .map(HostRef::V4)
            .map_err(|_| UriError("bad IPv4 address"));
    }
    let ok = s.split('.').enumerate().all(|(i, label)| {
        // A trailing dot (fully qualified) leaves one empty last label.
        (label.is_empty() && i > 0 && s.ends_with('.'))
            || (!label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-'))
    });
    if ok {
        Ok(HostRef::Domain(s))
    } else {
        Err(UriError("bad hostname"))
    }
}

impl Host {
    /// Parse a host: `[v6]`, dotted IPv4, or a hostname.
    pub fn parse(s: &str) -> Result<Host, UriError> {
        scan_host(s).map(HostRef::to_host)
    }
}

/// Print `;name[=value]` parameters.
fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, Option<String>)]) -> fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// The user part as written (escapes kept).
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order, names as written.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` headers.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        super::values::find_param(&self.params, name)
    }

    /// The user part with %HH escapes decoded (bytes, since %00 is allowed).
    pub fn user_decoded(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(|u| unescape(u.as_bytes()))
    }

    /// The `transport` parameter, lowercased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// A `tel:` URI (RFC 3966): the number and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: String,
    pub params: Vec<(String, Option<String>)>,
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}", self.number)?;
        write_params(f, &self.params)?;
        Ok(())
    }
}

/// Any URI we carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    Tel(TelUri),
    /// Another scheme (http:, isbn:, urn:, ...): kept as written.
    Other {
        scheme: String,
        rest: String,
    },
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl Uri {
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// Parse an absolute URI. Whitespace and control characters are errors.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        Ok(match scan(s)? {
            UriRef::Sip(p) => Uri::Sip(p.build()?),
            UriRef::Tel { number, params } => Uri::Tel(TelUri {
                number: number.to_owned(),
                params: parse_params(params)?,
            }),
            UriRef::Other { scheme, rest } => Uri::Other {
                scheme: scheme.to_ascii_lowercase(),
                rest: rest.to_owned(),
            },
        })
    }

    /// Validate an absolute URI exactly as `parse` would, without building
    /// it. Returns whether a sip/sips URI carries `?headers`.
    pub fn check(s: &str) -> Result<bool, UriError> {
        Ok(match scan(s)? {
            UriRef::Sip(p) => p.headers.is_some(),
            _ => false,
        })
    }
}

/// The pieces of a validated URI, borrowed from the text.
enum UriRef<'a> {
    Sip(SipParts<'a>),
    Tel { number: &'a str, params: &'a str },
    Other { scheme: &'a str, rest: &'a str },
}

/// Position of an ASCII byte: a plain scan beats the generic char search on
/// the short strings URIs are made of.
#[inline]
fn find_byte(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

#[inline]
fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    find_byte(s, b).map(|i| (&s[..i], &s[i + 1..]))
}

fn scan(s: &str) -> Result<UriRef<'_>, UriError> {
    if s.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return Err(UriError("whitespace or control character"));
    }
    let colon = find_byte(s, b':').ok_or(UriError("no scheme"))?;
    let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
    let scheme_ok = scheme
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(UriError("bad scheme"));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        scan_sip(scheme.eq_ignore_ascii_case("sips"), rest).map(UriRef::Sip)
    } else if scheme.eq_ignore_ascii_case("tel") {
        let (number, params) = scan_tel(rest)?;
        Ok(UriRef::Tel { number, params })
    } else {
        if rest.is_empty() || rest.contains(['<', '>', '"']) {
            return Err(UriError("bad absolute URI"));
        }
        Ok(UriRef::Other { scheme, rest })
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Check that every byte is allowed by `extra` or unreserved, and every % is
/// followed by two hex digits.
fn check_escaped(s: &str, extra: &[u8], what: &'static str) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if i + 2 >= b.len() {
                return Err(UriError(what));
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return Err(UriError(what));
            }
            i += 3;
            continue;
        }
        if !(is_unreserved(c) || extra.contains(&c) || c >= 0x80) {
            return Err(UriError(what));
        }
        i += 1;
    }
    Ok(())
}

/// Decode %HH escapes.
pub fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Validate `name[=value]` parameters separated by ';', calling `f` for each.
fn scan_params<'a>(
    s: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(), UriError> {
    if s.is_empty() {
        return Ok(());
    }
    for p in s.split(';') {
        let (n, v) = match split_at_byte(p, b'=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if n.is_empty() {
            return Err(UriError("empty parameter"));
        }
        check_escaped(n, b"[]/:&+$", "bad parameter name")?;
        if let Some(v) = v {
            check_escaped(v, b"[]/:&+$", "bad parameter value")?;
        }
        f(n, v);
    }
    Ok(())
}

fn parse_params(s: &str) -> Result<Vec<(String, Option<String>)>, UriError> {
    let mut params = Vec::new();
    scan_params(s, |n, v| params.push((n.to_owned(), v.map(str::to_owned))))?;
    Ok(params)
}

/// Validate `?name=value&...` URI headers, calling `f` for each.
fn scan_headers<'a>(h: &'a str, mut f: impl FnMut(&'a str, &'a str)) -> Result<(), UriError> {
    for pair in h.split('&') {
        let (n, v) = pair.split_once('=').ok_or(UriError("bad URI header"))?;
        if n.is_empty() {
            return Err(UriError("bad URI header"));
        }
        check_escaped(n, b"[]/?:+$", "bad URI header")?;
        check_escaped(v, b"[]/?:+$", "bad URI header")?;
        f(n, v);
    }
    Ok(())
}

/// A validated sip/sips URI, borrowed from the text.
struct SipParts<'a> {
    secure: bool,
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: HostRef<'a>,
    port: Option<u16>,
    params: &'a str,
    headers: Option<&'a str>,
}

impl SipParts<'_> {
    fn build(&self) -> Result<SipUri, UriError> {
        let mut headers = Vec::new();
        if let Some(h) = self.headers {
            scan_headers(h, |n, v| headers.push((n.to_owned(), v.to_owned())))?;
        }
        Ok(SipUri {
            secure: self.secure,
            user: self.user.map(str::to_owned),
            password: self.password.map(str::to_owned),
            host: self.host.to_host(),
            port: self.port,
            params: parse_params(self.params)?,
            headers,
        })
    }
}

fn scan_sip(secure: bool, rest: &str) -> Result<SipParts<'_>, UriError> {
    // A raw '@' can only end the userinfo (parameters and headers cannot
    // contain one), while the user part may contain '?', ';' and '/'.
    let (userinfo, after) = match find_byte(rest, b'@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (hostpart, headers) = match split_at_byte(after, b'?') {
        Some((m, h)) => (m, Some(h)),
        None => (after, None),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match split_at_byte(ui, b':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            if u.is_empty() {
                return Err(UriError("empty user"));
            }
            check_escaped(u, b"&=+$,;?/", "bad user part")?;
            if let Some(p) = p {
                check_escaped(p, b"&=+$,", "bad password")?;
            }
            (Some(u), p)
        }
    };
    let (hostport, params) = match find_byte(hostpart, b';') {
        Some(i) => (&hostpart[..i], &hostpart[i + 1..]),
        None => (hostpart, ""),
    };
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport
            .find(']')
            .ok_or(UriError("unterminated IPv6 reference"))?;
        let host = scan_host(&hostport[..=end])?;
        let after = &hostport[end + 1..];
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':')
                    .ok_or(UriError("junk after IPv6 reference"))?,
            )?),
        };
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (scan_host(h)?, Some(parse_port(p)?)),
            None => (scan_host(hostport)?, None),
        }
    };
    scan_params(params, |_, _| {})?;
    if let Some(h) = headers {
        scan_headers(h, |_, _| {})?;
    }
    Ok(SipParts {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

fn parse_port(p: &str) -> Result<u16, UriError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
        return Err(UriError("bad port"));
    }
    p.parse::<u16>().map_err(|_| UriError("port out of range"))
}

fn scan_tel(rest: &str) -> Result<(&str, &str), UriError> {
    let (number, params) = match rest.split_once(';') {
        Some((n, p)) => (n, p),
        None => (rest, ""),
    };
    let digits = number.strip_prefix('+').unwrap_or(number);
    let ok = !digits.is_empty()
        && digits
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, b'-' | b'.' | b'(' | b')' | b'*' | b'#'));
    if !ok {
        return Err(UriError("bad telephone number"));
    }
    scan_params(params, |_, _| {})?;
    Ok((number, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sip_uris() {
        let u = sip("sip:alice:pw@Atlanta.COM:5061;transport=TCP;lr?subject=hi&x=y");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, Host::Domain("atlanta.com".into()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(
            u.headers,
            vec![("subject".into(), "hi".into()), ("x".into(), "y".into())]
        );
        assert_eq!(
            u.to_string(),
            "sip:alice:pw@atlanta.com:5061;transport=TCP;lr?subject=hi&x=y"
        );
    }

    #[test]
    fn ipv6_references() {
        let u = sip("sip:a@[2001:db8::1]:5060");
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5060));
        assert_eq!(u.to_string(), "sip:a@[2001:db8::1]:5060");
        let u = sip("sips:[::1];maddr=[::2]");
        assert_eq!(u.host, Host::V6("::1".parse().unwrap()));
        assert!(Uri::parse("sip:[2001:db8::1").is_err());
        assert!(Uri::parse("sip:[2001:db8::g]").is_err());
        assert!(Uri::parse("sip:[::1]x").is_err());
    }

    #[test]
    fn escapes_and_semicolon_users() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user_decoded().unwrap(), b"null-\0-null");
        let u = sip("sip:%61lice@example.com");
        assert_eq!(u.user_decoded().unwrap(), b"alice");
        assert!(Uri::parse("sip:a%4@example.com").is_err());
        assert!(Uri::parse("sip:a%zz@example.com").is_err());
    }

    #[test]
    fn tel_and_other_schemes() {
        match Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap() {
            Uri::Tel(t) => {
                assert_eq!(t.number, "+1-201-555-0123");
                assert_eq!(t.params.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Uri::parse("isbn:2983792873").unwrap().scheme(), "isbn");
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002").unwrap().scheme(),
            "soap.beep"
        );
        assert!(Uri::parse("tel:").is_err());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "sip:",
            "nocolon",
            "sip:a b@c",
            "sip:host:99999",
            "sip:host:",
            "sip:-bad-.com",
            "sip:a@b;;x",
            "1sip:x",
            "sip:a@host?x",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }
}
