//! What chat (MSRP) and pager mode (SIP MESSAGE) both do with an incoming
//! instant message: unwrap CPIM (RFC 3862), check the wrapped type and the
//! charset, and parse is-composing documents (RFC 3994). A refusal comes
//! with the status code and reason to answer with.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::proto::cpim::CpimMessage;
use crate::proto::imdn::{self, Disposition, Imdn};
use crate::proto::iscomposing::{self, IsComposing};
use crate::proto::msrp::session::media_type_accepted;

pub(crate) const CPIM: &str = "message/cpim";

/// The content of an accepted message.
pub(crate) enum Body {
    /// Text (any `text/*`), valid in its charset.
    Text(String),
    /// A type of the host's own (the ODF extension's XML, ...).
    Bytes(Vec<u8>),
    Composing(IsComposing),
    /// A disposition notification (RFC 5438) about a message we sent.
    Imdn(Imdn),
}

/// The notifications a message's sender asked for (RFC 5438).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImdnRequest {
    pub message_id: String,
    pub datetime: String,
    pub dispositions: Vec<Disposition>,
}

/// An accepted incoming message.
pub(crate) struct Incoming {
    /// The type of the content (inside CPIM if it was wrapped), with its
    /// parameters.
    pub content_type: String,
    pub body: Body,
    /// CPIM headers, name to values in order (empty without CPIM).
    pub cpim_headers: BTreeMap<String, Vec<String>>,
    /// CPIM From and DateTime.
    pub sender: Option<String>,
    pub timestamp: Option<String>,
    /// What the sender asked to be told about this message.
    pub imdn_request: Option<ImdnRequest>,
}

impl Incoming {
    /// The body as a notification value: a string for text, a byte list
    /// otherwise.
    pub fn content_value(&self) -> Value {
        match &self.body {
            Body::Text(t) => Value::from(t.as_str()),
            Body::Bytes(b) => Value::from(b.clone()),
            Body::Composing(d) => Value::from(d.to_xml()),
            Body::Imdn(d) => Value::from(d.to_xml()),
        }
    }

    pub fn cpim_headers_value(&self) -> Value {
        json!(self.cpim_headers)
    }
}

fn base_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Text must be readable: UTF-8 (or US-ASCII, a subset), the only
/// charsets RFC 3428 and the chat peers we know send.
fn check_charset(content_type: &str, data: &[u8]) -> Result<(), (u16, String)> {
    let lower = content_type.to_ascii_lowercase();
    let charset = lower
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .map(|c| c.trim_matches('"').to_string())
        .next();
    match charset.as_deref() {
        None | Some("utf-8") | Some("utf8") | Some("us-ascii") => {
            if std::str::from_utf8(data).is_err() {
                return Err((400, "text that is not valid UTF-8".into()));
            }
            if charset.as_deref() == Some("us-ascii") && !data.is_ascii() {
                return Err((400, "non-ASCII bytes in us-ascii text".into()));
            }
            Ok(())
        }
        Some(other) => Err((415, format!("charset {other} is not supported (UTF-8 is)"))),
    }
}

/// Read a message of `content_type` (already accepted at the outer level)
/// whose CPIM payload may be any of `accept_wrapped`.
pub(crate) fn read(
    content_type: &str,
    data: Vec<u8>,
    accept_wrapped: &[String],
) -> Result<Incoming, (u16, String)> {
    let mut m = Incoming {
        content_type: content_type.trim().to_string(),
        body: Body::Bytes(Vec::new()),
        cpim_headers: BTreeMap::new(),
        sender: None,
        timestamp: None,
        imdn_request: None,
    };
    let content = if base_type(content_type) == CPIM {
        let cpim =
            CpimMessage::parse(&data).map_err(|e| (400, format!("invalid CPIM: {}", e.0)))?;
        let inner = cpim
            .content_type_header()
            .ok_or((400, "invalid CPIM: no Content-Type".to_string()))?;
        if !media_type_accepted(accept_wrapped, inner) {
            return Err((415, format!("{inner} is not accepted inside CPIM")));
        }
        m.content_type = inner.to_string();
        for (n, v) in &cpim.headers {
            m.cpim_headers.entry(n.clone()).or_default().push(v.clone());
        }
        m.sender = cpim.from().ok().map(|a| a.to_string());
        m.timestamp = cpim.datetime().map(str::to_string);
        m.imdn_request =
            imdn::requested(&cpim).map(|(message_id, datetime, dispositions)| ImdnRequest {
                message_id,
                datetime,
                dispositions,
            });
        cpim.content
    } else {
        data
    };
    let base = base_type(&m.content_type);
    m.body = if base == iscomposing::CONTENT_TYPE {
        Body::Composing(IsComposing::parse(&content).map_err(|e| (400, e.to_string()))?)
    } else if base == imdn::CONTENT_TYPE {
        Body::Imdn(Imdn::parse(&content).map_err(|e| (400, e.to_string()))?)
    } else if base.starts_with("text/") {
        check_charset(&m.content_type, &content)?;
        Body::Text(
            String::from_utf8(content)
                .map_err(|_| (400, "text that is not valid UTF-8".to_string()))?,
        )
    } else {
        Body::Bytes(content)
    };
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpim(inner: &str, body: &str) -> Vec<u8> {
        format!("From: <sip:a@example.com>\r\nDateTime: 2026-11-21T10:00:00Z\r\n\r\nContent-Type: {inner}\r\n\r\n{body}")
            .into_bytes()
    }

    #[test]
    fn reads_and_refuses_with_reasons() {
        let any = ["*".to_string()];
        let m = read(CPIM, cpim("text/plain;charset=utf-8", "héllo"), &any).unwrap();
        assert!(matches!(&m.body, Body::Text(t) if t == "héllo"));
        assert_eq!(m.content_type, "text/plain;charset=utf-8");
        assert_eq!(m.sender.as_deref(), Some("<sip:a@example.com>"));
        assert_eq!(m.timestamp.as_deref(), Some("2026-11-21T10:00:00Z"));
        assert_eq!(m.cpim_headers["From"], ["<sip:a@example.com>"]);
        let m = read("application/x-own", vec![0, 1, 2], &any).unwrap();
        assert!(matches!(&m.body, Body::Bytes(b) if b == &[0, 1, 2]));
        let doc = "<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>active</state></isComposing>";
        assert!(matches!(
            read(CPIM, cpim(iscomposing::CONTENT_TYPE, doc), &any)
                .unwrap()
                .body,
            Body::Composing(_)
        ));
        let code = |ct: &str, data: Vec<u8>, wrapped: &[String]| {
            read(ct, data, wrapped).err().map(|e| e.0)
        };
        assert_eq!(code(CPIM, b"no blank line".to_vec(), &any), Some(400));
        assert_eq!(
            code(CPIM, cpim("text/plain;charset=iso-8859-1", "x"), &any),
            Some(415)
        );
        assert_eq!(
            code(CPIM, cpim("image/png", "x"), &["text/*".into()]),
            Some(415)
        );
        assert_eq!(code("text/plain", vec![0xff], &any), Some(400));
        assert_eq!(
            code("text/plain; charset=us-ascii", "é".into(), &any),
            Some(400)
        );
        assert_eq!(
            code(iscomposing::CONTENT_TYPE, b"<x/>".to_vec(), &any),
            Some(400)
        );
        assert_eq!(
            code(CPIM, cpim(imdn::CONTENT_TYPE, "<imdn/>"), &any),
            Some(400)
        );
        let mut req = cpim("text/plain", "x").into_iter().collect::<Vec<u8>>();
        let head = b"NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: q1\r\nimdn.Disposition-Notification: display\r\n";
        req.splice(0..0, head.iter().copied());
        let m = read(CPIM, req, &any).unwrap();
        assert_eq!(
            m.imdn_request,
            Some(ImdnRequest {
                message_id: "q1".into(),
                datetime: "2026-11-21T10:00:00Z".into(),
                dispositions: vec![Disposition::Display],
            })
        );
    }
}
