//! Grammar of the header values the core must understand: comma lists, Via,
//! CSeq, name-addr / addr-spec (From, To, Contact, Route, Record-Route) and
//! generic `;name=value` parameters, all strict per RFC 3261 section 25.

use super::header::{is_token, is_token_char};
use super::uri::{scan_host, Host, HostRef, Uri};

/// Why a header value was rejected.
pub type ValueError = &'static str;

fn is_lws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Split a list header value at commas outside quoted strings and `<...>`.
/// Empty items (`a,,b`, leading or trailing commas) and unbalanced quotes or
/// brackets are errors.
pub fn split_list(value: &str, max_items: usize) -> Result<Vec<&str>, ValueError> {
    let b = value.as_bytes();
    let mut items = Vec::new();
    let (mut start, mut i) = (0, 0);
    let (mut in_quote, mut in_angle) = (false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_quote => i += 1,
            b'"' if !in_angle => in_quote = !in_quote,
            b'<' if !in_quote => in_angle = true,
            b'>' if !in_quote => in_angle = false,
            b',' if !in_quote && !in_angle => {
                let item = value[start..i].trim_matches([' ', '\t']);
                if item.is_empty() {
                    return Err("empty list item");
                }
                items.push(item);
                if items.len() > max_items {
                    return Err("too many list items");
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_quote {
        return Err("unterminated quoted string");
    }
    if in_angle {
        return Err("unterminated <");
    }
    let item = value[start..].trim_matches([' ', '\t']);
    if item.is_empty() {
        return Err("empty list item");
    }
    items.push(item);
    if items.len() > max_items {
        return Err("too many list items");
    }
    Ok(items)
}

/// Validate a quoted string at the start of `s` (which starts with '"')
/// without copying it: the index just past the closing quote.
fn quoted_end(s: &str) -> Result<usize, ValueError> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Ok(i + 1),
            b'\\' => {
                if i + 1 >= b.len() || b[i + 1] == b'\r' || b[i + 1] == b'\n' {
                    return Err("bad escape in quoted string");
                }
                let ch = s[i + 1..]
                    .chars()
                    .next()
                    .ok_or("bad escape in quoted string")?;
                i += 1 + ch.len_utf8();
            }
            _ => i += 1,
        }
    }
    Err("unterminated quoted string")
}

/// Parse a quoted string at the start of `s` (which starts with '"').
/// Returns the unescaped content and the rest after the closing quote.
fn quoted(s: &str) -> Result<(String, &str), ValueError> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 1;
    let mut run = 1;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(&s[run..i]);
                return Ok((out, &s[i + 1..]));
            }
            b'\\' => {
                if i + 1 >= b.len() || b[i + 1] == b'\r' || b[i + 1] == b'\n' {
                    return Err("bad escape in quoted string");
                }
                out.push_str(&s[run..i]);
                // The escaped char may be multi-byte UTF-8: copy the whole char.
                let ch = s[i + 1..]
                    .chars()
                    .next()
                    .ok_or("bad escape in quoted string")?;
                out.push(ch);
                i += 1 + ch.len_utf8();
                run = i;
            }
            _ => i += 1,
        }
    }
    Err("unterminated quoted string")
}

/// A parameter value as written: a token or host, or a quoted string
/// (still quoted and escaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawValue<'a> {
    Token(&'a str),
    Quoted(&'a str),
}

/// Validate generic parameters, `;name[=value]` repeated with LWS allowed
/// around `;` and `=`, calling `f` for each without copying anything.
/// Values are tokens, hosts (IPv6 references included) or quoted strings.
pub(crate) fn scan_params<'a>(
    mut s: &'a str,
    mut f: impl FnMut(&'a str, Option<RawValue<'a>>) -> Result<(), ValueError>,
) -> Result<(), ValueError> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if s.is_empty() {
            return Ok(());
        }
        s = s
            .strip_prefix(';')
            .ok_or("junk where a parameter should be")?;
        s = s.trim_start_matches([' ', '\t']);
        let name_end = s.bytes().position(|c| !is_token_char(c)).unwrap_or(s.len());
        if name_end == 0 {
            return Err("empty parameter name");
        }
        let name = &s[..name_end];
        s = s[name_end..].trim_start_matches([' ', '\t']);
        let value = if let Some(rest) = s.strip_prefix('=') {
            let rest = rest.trim_start_matches([' ', '\t']);
            if rest.starts_with('"') {
                let end = quoted_end(rest)?;
                s = &rest[end..];
                Some(RawValue::Quoted(&rest[..end]))
            } else {
                let end = rest
                    .bytes()
                    .position(|c| !(is_token_char(c) || matches!(c, b'[' | b']' | b':')))
                    .unwrap_or(rest.len());
                if end == 0 {
                    return Err("empty parameter value");
                }
                s = &rest[end..];
                Some(RawValue::Token(&rest[..end]))
            }
        } else {
            None
        };
        f(name, value)?;
    }
}

/// Generic parameters, copied out. Quoted values are kept quoted, with only
/// the escapes they need.
pub fn parse_params(s: &str) -> Result<Vec<(String, Option<String>)>, ValueError> {
    let mut params = Vec::new();
    scan_params(s, |name, value| {
        let value = match value {
            None => None,
            Some(RawValue::Token(t)) => Some(t.to_owned()),
            Some(RawValue::Quoted(q)) => {
                let (v, _) = quoted(q)?;
                Some(format!(
                    "\"{}\"",
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                ))
            }
        };
        params.push((name.to_owned(), value));
        Ok(())
    })?;
    Ok(params)
}

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Uppercased: UDP, TCP, TLS, SCTP, WS, or anything else that is a token.
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

/// Look a parameter up by name, case-insensitively: None if absent,
/// Some(None) for a parameter without value.
pub fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

impl Via {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }
}

fn skip_lws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// A validated Via value, borrowed.
pub(crate) struct ViaRef<'a> {
    pub transport: &'a str,
    pub host: HostRef<'a>,
    pub port: Option<u16>,
    pub params: &'a str,
}

/// Validate one Via value: `SIP / 2.0 / transport sent-by *(; param)`.
pub(crate) fn scan_via(item: &str) -> Result<ViaRef<'_>, ValueError> {
    let mut s = skip_lws(item);
    let proto_end = s.bytes().position(|c| !is_token_char(c)).unwrap_or(s.len());
    if !s[..proto_end].eq_ignore_ascii_case("SIP") {
        return Err("Via protocol is not SIP");
    }
    s = skip_lws(&s[proto_end..])
        .strip_prefix('/')
        .ok_or("bad Via protocol")?;
    s = skip_lws(s);
    let v_end = s.bytes().position(|c| !is_token_char(c)).unwrap_or(s.len());
    if &s[..v_end] != "2.0" {
        return Err("bad Via version");
    }
    s = skip_lws(&s[v_end..])
        .strip_prefix('/')
        .ok_or("bad Via protocol")?;
    s = skip_lws(s);
    let t_end = s.bytes().position(|c| !is_token_char(c)).unwrap_or(s.len());
    if t_end == 0 {
        return Err("missing Via transport");
    }
    let transport = &s[..t_end];
    s = &s[t_end..];
    if !s.starts_with([' ', '\t']) {
        return Err("missing space before Via sent-by");
    }
    s = skip_lws(s);
    let hp_end = s
        .bytes()
        .position(|c| is_lws(c) || c == b';')
        .unwrap_or(s.len());
    let (host, port) = scan_hostport(&s[..hp_end])?;
    let params = &s[hp_end..];
    scan_params(params, |_, _| Ok(()))?;
    Ok(ViaRef {
        transport,
        host,
        port,
        params,
    })
}

/// Parse one Via value: `SIP / 2.0 / transport sent-by *(; param)`.
pub fn parse_via(item: &str) -> Result<Via, ValueError> {
    let v = scan_via(item)?;
    Ok(Via {
        transport: v.transport.to_ascii_uppercase(),
        host: v.host.to_host(),
        port: v.port,
        params: parse_params(v.params)?,
    })
}

/// `host[:port]` with IPv6 references, validated in place.
pub(crate) fn scan_hostport(hp: &str) -> Result<(HostRef<'_>, Option<u16>), ValueError> {
    let (h, p) = if hp.starts_with('[') {
        let end = hp.find(']').ok_or("unterminated IPv6 reference")?;
        match &hp[end + 1..] {
            "" => (&hp[..=end], None),
            rest => (
                &hp[..=end],
                Some(rest.strip_prefix(':').ok_or("junk after host")?),
            ),
        }
    } else {
        match hp.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    let host = scan_host(h).map_err(|e| e.0)?;
    let port = match p {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
        Some(_) => return Err("bad port"),
    };
    Ok((host, port))
}

/// `host[:port]` with IPv6 references.
pub fn split_hostport(hp: &str) -> Result<(Host, Option<u16>), ValueError> {
    scan_hostport(hp).map(|(h, p)| (h.to_host(), p))
}

/// Parse a decimal number of at most `max`, digits only (no sign, no space).
pub fn parse_number(s: &str, max: u64) -> Result<u64, ValueError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("not a number");
    }
    match s.parse::<u64>() {
        Ok(v) if v <= max => Ok(v),
        _ => Err("number too large"),
    }
}

/// CSeq: sequence number (< 2^31) and method.
pub fn parse_cseq(value: &str) -> Result<(u32, &str), ValueError> {
    let value = value.trim_matches([' ', '\t']);
    let split = value.find([' ', '\t']).ok_or("CSeq without method")?;
    let num = parse_number(&value[..split], (1 << 31) - 1)? as u32;
    let method = skip_lws(&value[split..]);
    if !is_token(method) {
        return Err("bad CSeq method");
    }
    Ok((num, method))
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display_name: Option<String>,
    pub uri: Uri,
    /// True if the URI was written inside `<...>`.
    pub angle: bool,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }
}

/// A validated name-addr / addr-spec, borrowed.
pub(crate) struct NameAddrRef<'a> {
    /// Quoted (with its quotes) or a run of tokens; None if absent.
    pub display: Option<&'a str>,
    pub uri: &'a str,
    pub angle: bool,
    pub params: &'a str,
}

/// Validate one name-addr / addr-spec item without copying it.
pub(crate) fn scan_name_addr(item: &str) -> Result<NameAddrRef<'_>, ValueError> {
    let s = item.trim_matches([' ', '\t']);
    let (display, rest) = if s.starts_with('"') {
        let end = quoted_end(s)?;
        let rest = skip_lws(&s[end..]);
        if !rest.starts_with('<') {
            return Err("quoted display name without <URI>");
        }
        (Some(&s[..end]), rest)
    } else if let Some(lt) = s.find('<') {
        let d = s[..lt].trim_matches([' ', '\t']);
        // Unquoted display names are tokens separated by LWS.
        if !d.split([' ', '\t']).filter(|w| !w.is_empty()).all(is_token) {
            return Err("display name must be tokens or a quoted string");
        }
        (if d.is_empty() { None } else { Some(d) }, &s[lt..])
    } else {
        (None, s)
    };
    if let Some(inner) = rest.strip_prefix('<') {
        let gt = inner.find('>').ok_or("unterminated <")?;
        let uri = &inner[..gt];
        Uri::check(uri).map_err(|e| e.0)?;
        let params = &inner[gt + 1..];
        scan_params(params, |_, _| Ok(()))?;
        return Ok(NameAddrRef {
            display,
            uri,
            angle: true,
            params,
        });
    }
    // addr-spec: the URI ends at the first ';' (those are header parameters),
    // and cannot carry ',' '?' (RFC 3261 section 20.10).
    let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
    let uri = &rest[..end];
    if uri.contains(['?', ',']) {
        return Err("URI with '?' or ',' must be enclosed in <>");
    }
    Uri::check(uri).map_err(|e| e.0)?;
    let params = &rest[end..];
    scan_params(params, |_, _| Ok(()))?;
    Ok(NameAddrRef {
        display,
        uri,
        angle: false,
        params,
    })
}

/// Parse one name-addr / addr-spec item.
pub fn parse_name_addr(item: &str) -> Result<NameAddr, ValueError> {
    let n = scan_name_addr(item)?;
    let display_name = match n.display {
        Some(d) if d.starts_with('"') => Some(quoted(d)?.0),
        Some(d) => Some(d.to_owned()),
        None => None,
    };
    Ok(NameAddr {
        display_name,
        uri: Uri::parse(n.uri).map_err(|e| e.0)?,
        angle: n.angle,
        params: parse_params(n.params)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(split_list("a, b ,c", 10).unwrap(), vec!["a", "b", "c"]);
        assert_eq!(
            split_list("\"x, y\" <sip:a@b>, <sip:c,d@e>", 10)
                .unwrap()
                .len(),
            2
        );
        assert!(split_list("a,,b", 10).is_err());
        assert!(split_list(";;,;,,", 10).is_err());
        assert!(split_list("\"open", 10).is_err());
        assert!(split_list("a,b,c", 2).is_err());
    }

    #[test]
    fn vias() {
        let v = parse_via("SIP  /   2.0  / UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = parse_via("SIP/2.0/TCP spindle.example.com   ;  branch  =   z9hG4bK9ikj8").unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        let v =
            parse_via("SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];rport").unwrap();
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.param("rport"), Some(None));
        assert_eq!(v.param("received"), Some(Some("[2001:db8::9:255]")));
        assert!(parse_via("SIP/2.0/UDP host;;x").is_err());
        assert!(parse_via("SIP/3.0/UDP host").is_err());
        assert!(parse_via("SIP/2.0/UDP").is_err());
        assert!(parse_via("SIP/2.0/UDP host:notaport").is_err());
    }

    #[test]
    fn cseq_and_numbers() {
        assert_eq!(
            parse_cseq("0009\r\n  INVITE".replace("\r\n", "  ").as_str()).unwrap(),
            (9, "INVITE")
        );
        assert!(parse_cseq("36893488147419103232 REGISTER").is_err());
        assert!(parse_cseq("-1 INVITE").is_err());
        assert!(parse_cseq("1").is_err());
        assert_eq!(parse_number("0068", 255), Ok(68));
        assert!(parse_number("300", 255).is_err());
    }

    #[test]
    fn name_addrs() {
        let n = parse_name_addr(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display_name.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = parse_name_addr("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("caller"));
        let n = parse_name_addr("sip:user@example.com;tag=1").unwrap();
        assert!(!n.angle);
        assert_eq!(n.tag(), Some("1"));
        assert!(parse_name_addr("Bell, Alexander <sip:a.g.bell@example.com>").is_err());
        assert!(parse_name_addr("\"Watson\" < sip:t.watson@example.org >").is_err());
        assert!(parse_name_addr("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(parse_name_addr("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(parse_name_addr("<isbn:2983792873>").is_ok());
    }
}
