//! MSRP URIs (RFC 4975 section 9):
//! `msrp[s]://[user@]host[:port][/session-id];transport[;param[=value]]*`.
//!
//! Comparison follows section 6.1: scheme, host and transport without
//! regard to case, the port as a number (2855 when absent), the session-id
//! exactly; the user part is ignored.

use std::fmt;

use super::MsrpError;

/// The port MSRP uses when a URI names none (RFC 4975 section 15.4).
pub const DEFAULT_PORT: u16 = 2855;

/// An MSRP or MSRPS URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsrpUri {
    /// `msrps`: the hop runs over TLS.
    pub secure: bool,
    pub user: Option<String>,
    /// Host name, IPv4 address, or IPv6 address without brackets.
    pub host: String,
    pub port: Option<u16>,
    pub session_id: Option<String>,
    /// `tcp` in practice; kept as written.
    pub transport: String,
    /// Further `;name[=value]` parameters, in order.
    pub params: Vec<(String, Option<String>)>,
}

fn unreserved_or_escape(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%".contains(&b)
}

impl MsrpUri {
    /// A URI for `host:port` with a session id, over TCP.
    pub fn new(secure: bool, host: &str, port: u16, session_id: &str) -> MsrpUri {
        MsrpUri {
            secure,
            user: None,
            host: host.to_string(),
            port: Some(port),
            session_id: Some(session_id.to_string()),
            transport: "tcp".into(),
            params: Vec::new(),
        }
    }

    pub fn parse(s: &str) -> Result<MsrpUri, MsrpError> {
        let bad = |why: &str| MsrpError::Uri(format!("{why}: {s:?}"));
        let (secure, rest) = if let Some(r) = strip_prefix_ci(s, "msrps://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(s, "msrp://") {
            (false, r)
        } else {
            return Err(bad("not an msrp or msrps URI"));
        };
        // The authority ends at '/' (session-id) or ';' (transport).
        let auth_end = rest.find(['/', ';']).ok_or_else(|| bad("no transport"))?;
        let (authority, after) = rest.split_at(auth_end);
        let (user, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        if let Some(u) = user {
            if u.is_empty() || !u.bytes().all(unreserved_or_escape) {
                return Err(bad("bad user part"));
            }
        }
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("bad host or port"))?;
        let (session_id, params) = match after.strip_prefix('/') {
            Some(r) => {
                let end = r.find(';').ok_or_else(|| bad("no transport"))?;
                let sid = &r[..end];
                if sid.is_empty() || !sid.bytes().all(|b| unreserved_or_escape(b) && b != b';') {
                    return Err(bad("bad session-id"));
                }
                (Some(sid.to_string()), &r[end..])
            }
            None => (None, after),
        };
        let mut parts = params
            .strip_prefix(';')
            .ok_or_else(|| bad("no transport"))?
            .split(';');
        let transport = parts.next().unwrap_or("");
        if transport.is_empty() || !transport.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("bad transport"));
        }
        let mut out = Vec::new();
        for p in parts {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (p, None),
            };
            if name.is_empty() || !name.bytes().all(unreserved_or_escape) {
                return Err(bad("bad parameter"));
            }
            if value
                .as_deref()
                .is_some_and(|v| !v.bytes().all(unreserved_or_escape))
            {
                return Err(bad("bad parameter value"));
            }
            out.push((name.to_string(), value));
        }
        Ok(MsrpUri {
            secure,
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            session_id,
            transport: transport.to_string(),
            params: out,
        })
    }

    /// The port to connect to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// `host:port` for a socket address (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port_or_default())
        } else {
            format!("{}:{}", self.host, self.port_or_default())
        }
    }

    /// Equality by RFC 4975 section 6.1.
    pub fn matches(&self, other: &MsrpUri) -> bool {
        self.secure == other.secure
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port_or_default() == other.port_or_default()
            && self.session_id == other.session_id
            && self.transport.eq_ignore_ascii_case(&other.transport)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let end = r.find(']')?;
        let host = &r[..end];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        let rest = &r[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (host, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    Some((host, port))
}

impl fmt::Display for MsrpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "msrps://" } else { "msrp://" })?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(s) = &self.session_id {
            write!(f, "/{s}")?;
        }
        write!(f, ";{}", self.transport)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Parse a path header or an SDP a=path value: URIs separated by spaces.
pub fn parse_path(s: &str) -> Result<Vec<MsrpUri>, MsrpError> {
    let uris: Vec<MsrpUri> = s
        .split_ascii_whitespace()
        .map(MsrpUri::parse)
        .collect::<Result<_, _>>()?;
    if uris.is_empty() {
        return Err(MsrpError::Uri("empty path".into()));
    }
    Ok(uris)
}

/// Print a path: URIs separated by one space.
pub fn path_to_string(path: &[MsrpUri]) -> String {
    let mut s = String::new();
    for (i, u) in path.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&u.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_documented_forms() {
        for s in [
            "msrps://192.168.1.6:2855/ca7940f12ddef14c3c32;tcp",
            "msrp://atlanta.example.com:7654/jshA7weztas;tcp",
            "msrps://bob@relay.example.com;tcp",
            "msrp://[2001:db8::1]:9000/abc;tcp;x=1;flag",
        ] {
            let u = MsrpUri::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
        }
        let u = MsrpUri::parse("MSRPS://Relay.Example.com/s1;TCP").unwrap();
        assert!(u.secure);
        assert_eq!(u.port_or_default(), 2855);
        assert_eq!(u.host_port(), "Relay.Example.com:2855");
    }

    #[test]
    fn comparison_follows_section_6_1() {
        let a = MsrpUri::parse("msrp://alice@Example.COM:2855/abc;tcp").unwrap();
        let b = MsrpUri::parse("msrp://example.com/abc;TCP").unwrap();
        assert!(a.matches(&b));
        let c = MsrpUri::parse("msrp://example.com/ABC;tcp").unwrap();
        assert!(!a.matches(&c));
        let d = MsrpUri::parse("msrps://example.com/abc;tcp").unwrap();
        assert!(!a.matches(&d));
    }

    #[test]
    fn malformed_uris_are_errors() {
        for s in [
            "",
            "sip:alice@example.com",
            "msrp://",
            "msrp://host/abc",
            "msrp://host:99999/abc;tcp",
            "msrp://host:/abc;tcp",
            "msrp://host:12a/abc;tcp",
            "msrp://[::1/abc;tcp",
            "msrp://[zz::1]/abc;tcp",
            "msrp://ho st/abc;tcp",
            "msrp://host//x;tcp",
            "msrp://host/abc;",
            "msrp://host/abc;tcp;",
            "msrp://@host/abc;tcp",
            "msrpé://host/abc;tcp",
        ] {
            assert!(MsrpUri::parse(s).is_err(), "{s:?} accepted");
        }
        assert!(parse_path("  ").is_err());
        let p = parse_path("msrp://a:1/x;tcp  msrp://b:2/y;tcp").unwrap();
        assert_eq!(path_to_string(&p), "msrp://a:1/x;tcp msrp://b:2/y;tcp");
    }
}
