//! What a UAS checks before processing a well-formed request (RFC 3261
//! section 8.2), and how a response to a request is built (section 8.2.6).

use super::header::HeaderName;
use super::message::{BuildError, SipMessage};
use super::uri::Uri;

/// What this user agent supports.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub methods: Vec<String>,
    pub uri_schemes: Vec<String>,
    /// Option tags for Require/Supported.
    pub extensions: Vec<String>,
    /// Body types it understands (type/subtype, lowercase).
    pub content_types: Vec<String>,
    /// What it would put in a response body to INVITE/OPTIONS.
    pub answer_types: Vec<String>,
}

impl Default for Capabilities {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Capabilities {
            methods: s(&[
                "INVITE",
                "ACK",
                "BYE",
                "CANCEL",
                "OPTIONS",
                "REGISTER",
                "MESSAGE",
                "SUBSCRIBE",
                "NOTIFY",
                "PUBLISH",
                "REFER",
                "PRACK",
                "UPDATE",
                "INFO",
            ]),
            uri_schemes: s(&["sip", "sips", "tel"]),
            extensions: s(&[
                "100rel",
                "timer",
                "replaces",
                "norefersub",
                "path",
                "outbound",
                "gruu",
            ]),
            content_types: s(&[
                "application/sdp",
                "text/plain",
                "message/cpim",
                "application/im-iscomposing+xml",
                "message/sipfrag",
                "application/pidf+xml",
                "application/watcherinfo+xml",
                "application/rlmi+xml",
                "multipart/related",
                "multipart/mixed",
                "multipart/alternative",
                "application/conference-info+xml",
                "application/simple-message-summary",
                "message/imdn+xml",
            ]),
            answer_types: s(&["application/sdp"]),
        }
    }
}

/// Why a request is refused, and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: &'static str,
    /// Extra headers for the response (Allow, Unsupported, Accept).
    pub headers: Vec<(&'static str, String)>,
}

fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn matches_range(range: &str, ty: &str) -> bool {
    match range.split_once('/') {
        Some(("*", "*")) => true,
        Some((t, "*")) => ty.split('/').next() == Some(t),
        _ => range == ty,
    }
}

/// Check a parsed request against what we support; None means process it.
pub fn screen_request(req: &SipMessage, caps: &Capabilities) -> Option<Rejection> {
    let method = req.method()?;
    if !caps.methods.iter().any(|m| m == method) {
        return Some(Rejection {
            code: 501,
            reason: "Not Implemented",
            headers: vec![("Allow", caps.methods.join(", "))],
        });
    }
    let scheme = req
        .request_uri()
        .and_then(|u| Uri::parse(u).ok())
        .map(|u| u.scheme().to_owned())
        .unwrap_or_default();
    if !caps.uri_schemes.contains(&scheme) {
        return Some(Rejection {
            code: 416,
            reason: "Unsupported URI Scheme",
            headers: vec![],
        });
    }
    if method != "ACK" && method != "CANCEL" {
        let unsupported: Vec<&str> = req
            .header_items(HeaderName::Require)
            .into_iter()
            .filter(|t| !caps.extensions.iter().any(|e| e.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            return Some(Rejection {
                code: 420,
                reason: "Bad Extension",
                headers: vec![("Unsupported", unsupported.join(", "))],
            });
        }
    }
    if !req.body().is_empty() || req.header(HeaderName::ContentType).is_some() {
        let ty = media_type(req.header(HeaderName::ContentType).unwrap_or(""));
        let encoding_ok = req
            .header(HeaderName::ContentEncoding)
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
        if !req.body().is_empty() && (!caps.content_types.contains(&ty) || !encoding_ok) {
            return Some(Rejection {
                code: 415,
                reason: "Unsupported Media Type",
                headers: vec![("Accept", caps.content_types.join(", "))],
            });
        }
    }
    if method == "INVITE" || method == "OPTIONS" {
        let accept = req.header_items(HeaderName::Accept);
        if req.header(HeaderName::Accept).is_some() && !accept.is_empty() {
            let ok = accept
                .iter()
                .map(|a| media_type(a))
                .any(|range| caps.answer_types.iter().any(|t| matches_range(&range, t)));
            if !ok {
                return Some(Rejection {
                    code: 406,
                    reason: "Not Acceptable",
                    headers: vec![("Accept", caps.answer_types.join(", "))],
                });
            }
        }
    }
    None
}

/// A response to `req` (RFC 3261 section 8.2.6): Via, From, To, Call-ID and
/// CSeq copied; `to_tag` added to To if it has none (not for 100).
pub fn build_response(
    req: &SipMessage,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> Result<SipMessage, BuildError> {
    let mut r = SipMessage::response(code, reason)?;
    for h in req.headers() {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                r.push_header(h.name.as_str(), h.value)?
            }
            HeaderName::RecordRoute if (101..300).contains(&code) => {
                r.push_header(h.name.as_str(), h.value)?
            }
            HeaderName::To => {
                let has_tag = req.to().is_some_and(|t| t.tag().is_some());
                match to_tag {
                    Some(tag) if !has_tag && code != 100 => {
                        r.push_header("To", &format!("{};tag={tag}", h.value))?
                    }
                    _ => r.push_header("To", h.value)?,
                }
            }
            HeaderName::Timestamp if code == 100 => r.push_header("Timestamp", h.value)?,
            _ => {}
        }
    }
    Ok(r)
}

/// The response for a rejection, with its extra headers.
pub fn build_rejection(
    req: &SipMessage,
    rej: &Rejection,
    to_tag: Option<&str>,
) -> Result<SipMessage, BuildError> {
    let mut r = build_response(req, rej.code, rej.reason, to_tag)?;
    for (n, v) in &rej.headers {
        r.push_header(n, v)?;
    }
    Ok(r)
}
