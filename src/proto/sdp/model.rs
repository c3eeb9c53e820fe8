//! The session description and its parts, with the typed views a session
//! needs (direction, connection address, rtpmap, setup, MSRP path).

use std::fmt::{self, Write as _};
use std::net::IpAddr;

/// `o=`: who made the description and which version of it this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    /// Digits, kept as text: RFC 8866 does not bound its length.
    pub session_id: String,
    pub session_version: u64,
    pub addr_type: AddrType,
    pub address: String,
}

/// The address types of `IN` connection data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrType {
    Ip4,
    Ip6,
}

impl AddrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    pub fn of(ip: IpAddr) -> AddrType {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }
}

/// `c=IN IP4 192.0.2.1` (multicast TTL and count suffixes kept in `address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub addr_type: AddrType,
    pub address: String,
}

impl Connection {
    pub fn new(ip: IpAddr) -> Connection {
        Connection {
            addr_type: AddrType::of(ip),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, when it is one (not a host name, no `/ttl`).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

/// `b=AS:64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    pub bwtype: String,
    pub value: u64,
}

/// `t=` with its `r=` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
    pub repeats: Vec<String>,
}

/// `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    pub fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.into(),
            value: None,
        }
    }

    pub fn value(name: &str, value: impl Into<String>) -> Attribute {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// The media direction attributes (RFC 3264 5.1, RFC 8866 6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    pub fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The same stream seen from the other end.
    pub fn reverse(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }
}

/// `a=setup` (RFC 4145, used by MSRP per RFC 6135).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Setup {
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }

    pub fn parse(s: &str) -> Option<Setup> {
        Some(match s {
            "active" => Setup::Active,
            "passive" => Setup::Passive,
            "actpass" => Setup::ActPass,
            "holdconn" => Setup::HoldConn,
            _ => return None,
        })
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: String,
    pub formats: Vec<String>,
    pub information: Option<String>,
    pub connections: Vec<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    pub key: Option<String>,
    pub attributes: Vec<Attribute>,
}

fn attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().rev().find_map(|a| {
        a.value
            .is_none()
            .then(|| Direction::parse(&a.name))
            .flatten()
    })
}

impl MediaDescription {
    pub fn new(media: &str, port: u16, proto: &str, formats: &[&str]) -> MediaDescription {
        MediaDescription {
            media: media.into(),
            port,
            port_count: None,
            proto: proto.into(),
            formats: formats.iter().map(|f| f.to_string()).collect(),
            information: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        }
    }

    /// A stream refused or removed: port 0 (RFC 3264 6 and 8.2).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// The first value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attr(&self.attributes, name).and_then(|a| a.value.as_deref())
    }

    pub fn has_attribute(&self, name: &str) -> bool {
        attr(&self.attributes, name).is_some()
    }

    /// Every value of an attribute, in order.
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes
            .iter()
            .filter(move |a| a.name.eq_ignore_ascii_case(name))
            .filter_map(|a| a.value.as_deref())
    }

    pub fn push_attribute(&mut self, a: Attribute) {
        self.attributes.push(a);
    }

    pub fn remove_attribute(&mut self, name: &str) {
        self.attributes
            .retain(|a| !a.name.eq_ignore_ascii_case(name));
    }

    /// The direction written in this section, if any.
    pub fn own_direction(&self) -> Option<Direction> {
        direction_of(&self.attributes)
    }

    /// Replace any direction attribute with `d`.
    pub fn set_direction(&mut self, d: Direction) {
        self.attributes
            .retain(|a| a.value.is_some() || Direction::parse(&a.name).is_none());
        self.attributes.push(Attribute::flag(d.as_str()));
    }

    pub fn setup(&self) -> Option<Setup> {
        self.attribute("setup").and_then(Setup::parse)
    }

    /// The `a=rtpmap` lines that parse.
    pub fn rtpmaps(&self) -> Vec<RtpMap> {
        self.attribute_values("rtpmap")
            .filter_map(parse_rtpmap)
            .collect()
    }

    /// `a=fmtp` parameters of one payload type.
    pub fn fmtp(&self, payload_type: &str) -> Option<&str> {
        self.attribute_values("fmtp").find_map(|v| {
            let (pt, rest) = v.split_once(' ')?;
            (pt == payload_type).then_some(rest.trim())
        })
    }

    /// MSRP `a=path` URIs, in order (RFC 4975 8.2).
    pub fn msrp_path(&self) -> Vec<&str> {
        self.attribute("path")
            .map(|p| p.split_ascii_whitespace().collect())
            .unwrap_or_default()
    }

    /// `a=accept-types` (and similar space-separated lists).
    pub fn list_attribute(&self, name: &str) -> Vec<&str> {
        self.attribute(name)
            .map(|p| p.split_ascii_whitespace().collect())
            .unwrap_or_default()
    }
}

/// `96 opus/48000/2` → RtpMap.
pub fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_string();
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    if encoding.is_empty() || parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        payload_type: pt.parse().ok().filter(|p| *p < 128)?,
        encoding,
        clock_rate,
        channels,
    })
}

/// A whole description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub information: Option<String>,
    pub uri: Option<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    pub timing: Vec<Timing>,
    pub zone: Option<String>,
    pub key: Option<String>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// A description with `o=`, `s=`, `c=` and `t=0 0` for `ip`.
    pub fn new(username: &str, session_id: u64, ip: IpAddr, session_name: &str) -> Self {
        SessionDescription {
            origin: Origin {
                username: username.into(),
                session_id: session_id.to_string(),
                session_version: session_id,
                addr_type: AddrType::of(ip),
                address: ip.to_string(),
            },
            session_name: session_name.into(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: Some(Connection::new(ip)),
            bandwidths: Vec::new(),
            timing: vec![Timing {
                start: 0,
                stop: 0,
                repeats: Vec::new(),
            }],
            zone: None,
            key: None,
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    pub fn parse(data: &[u8]) -> Result<SessionDescription, super::SdpError> {
        super::parse::parse(data)
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        attr(&self.attributes, name).and_then(|a| a.value.as_deref())
    }

    /// The connection address that applies to media section `index`.
    pub fn media_connection(&self, index: usize) -> Option<&Connection> {
        self.media
            .get(index)
            .and_then(|m| m.connections.first())
            .or(self.connection.as_ref())
    }

    /// The direction of media section `index`: its own attribute, else the
    /// session-level one, else sendrecv. RFC 2543-style hold (`c=0.0.0.0`)
    /// counts as sendonly from the sender of this description.
    pub fn media_direction(&self, index: usize) -> Direction {
        let Some(m) = self.media.get(index) else {
            return Direction::Inactive;
        };
        let d = m
            .own_direction()
            .or_else(|| direction_of(&self.attributes))
            .unwrap_or_default();
        let zero = self
            .media_connection(index)
            .is_some_and(|c| c.address == "0.0.0.0");
        if zero && d.receives() {
            Direction::from_flags(d.sends(), false)
        } else {
            d
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

fn line(f: &mut fmt::Formatter<'_>, t: char, v: &str) -> fmt::Result {
    f.write_char(t)?;
    f.write_char('=')?;
    f.write_str(v)?;
    f.write_str("\r\n")
}

fn conn(c: &Connection) -> String {
    format!("IN {} {}", c.addr_type.as_str(), c.address)
}

fn attrs(f: &mut fmt::Formatter<'_>, list: &[Attribute]) -> fmt::Result {
    for a in list {
        match &a.value {
            Some(v) => write!(f, "a={}:{}\r\n", a.name, v)?,
            None => write!(f, "a={}\r\n", a.name)?,
        }
    }
    Ok(())
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        f.write_str("v=0\r\n")?;
        write!(
            f,
            "o={} {} {} IN {} {}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.addr_type.as_str(),
            o.address
        )?;
        line(
            f,
            's',
            if self.session_name.is_empty() {
                " "
            } else {
                &self.session_name
            },
        )?;
        if let Some(i) = &self.information {
            line(f, 'i', i)?;
        }
        if let Some(u) = &self.uri {
            line(f, 'u', u)?;
        }
        for e in &self.emails {
            line(f, 'e', e)?;
        }
        for p in &self.phones {
            line(f, 'p', p)?;
        }
        if let Some(c) = &self.connection {
            line(f, 'c', &conn(c))?;
        }
        for b in &self.bandwidths {
            write!(f, "b={}:{}\r\n", b.bwtype, b.value)?;
        }
        for t in &self.timing {
            write!(f, "t={} {}\r\n", t.start, t.stop)?;
            for r in &t.repeats {
                line(f, 'r', r)?;
            }
        }
        if let Some(z) = &self.zone {
            line(f, 'z', z)?;
        }
        if let Some(k) = &self.key {
            line(f, 'k', k)?;
        }
        attrs(f, &self.attributes)?;
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    /// The section from its `m=` line on, each line ending in CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self;
        write!(f, "m={} {}", m.media, m.port)?;
        if let Some(n) = m.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", m.proto)?;
        for fmt in &m.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        if let Some(i) = &m.information {
            line(f, 'i', i)?;
        }
        for c in &m.connections {
            line(f, 'c', &conn(c))?;
        }
        for b in &m.bandwidths {
            write!(f, "b={}:{}\r\n", b.bwtype, b.value)?;
        }
        if let Some(k) = &m.key {
            line(f, 'k', k)?;
        }
        attrs(f, &m.attributes)
    }
}

impl MediaDescription {
    /// One media section as text (from `m=` on), as a host application
    /// writes it for its own stream type.
    pub fn parse_section(text: &str) -> Result<MediaDescription, super::SdpError> {
        let trimmed = text.trim_start();
        if !trimmed.starts_with("m=") {
            return Err(super::SdpError {
                line: 1,
                reason: "a media section starts with m=".into(),
            });
        }
        let mut body = trimmed.replace("\r\n", "\n");
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let wrapped = format!("v=0\no=- 0 0 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n{body}");
        let mut sd = super::parse::parse(wrapped.as_bytes()).map_err(|e| super::SdpError {
            line: e.line.saturating_sub(5),
            reason: e.reason,
        })?;
        if sd.media.len() != 1 {
            return Err(super::SdpError {
                line: 0,
                reason: format!("expected one media section, got {}", sd.media.len()),
            });
        }
        Ok(sd.media.remove(0))
    }
}
