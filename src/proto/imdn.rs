//! Instant Message Disposition Notification (RFC 5438): the CPIM headers a
//! sender uses to ask for notifications, and the `message/imdn+xml`
//! document a recipient answers with.
//!
//! ```text
//! NS: imdn <urn:ietf:params:imdn>
//! imdn.Message-ID: 34jk324j
//! DateTime: 2008-04-04T12:16:49-05:00
//! imdn.Disposition-Notification: positive-delivery, display
//! ```
//!
//! ```text
//! <imdn xmlns="urn:ietf:params:xml:ns:imdn">
//!   <message-id>34jk324j</message-id>
//!   <datetime>2008-04-04T12:16:49-05:00</datetime>
//!   <delivery-notification><status><delivered/></status></delivery-notification>
//! </imdn>
//! ```

use super::cpim::{check_datetime, CpimAddress, CpimMessage};
use super::xml;

pub const CONTENT_TYPE: &str = "message/imdn+xml";
/// The XML namespace of the notification document.
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:imdn";
/// The CPIM header namespace (`imdn.Message-ID`, ...).
pub const CPIM_NAMESPACE: &str = "urn:ietf:params:imdn";
/// Larger documents are refused before parsing.
pub(crate) const MAX_SIZE: usize = 16 * 1024;
const MAX_ID: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IMDN: {0}")]
pub struct ImdnError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, ImdnError> {
    Err(ImdnError(why.into()))
}

/// What a sender asks for in `imdn.Disposition-Notification` (section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disposition {
    PositiveDelivery,
    NegativeDelivery,
    Display,
    Processing,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::PositiveDelivery => "positive-delivery",
            Disposition::NegativeDelivery => "negative-delivery",
            Disposition::Display => "display",
            Disposition::Processing => "processing",
        }
    }

    pub fn parse(s: &str) -> Option<Disposition> {
        [
            Disposition::PositiveDelivery,
            Disposition::NegativeDelivery,
            Disposition::Display,
            Disposition::Processing,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// A header value's dispositions, in order, without repeats. Unknown
    /// values are extensions a recipient ignores (section 6.3).
    pub fn parse_list(s: &str) -> Vec<Disposition> {
        let mut out: Vec<Disposition> = Vec::new();
        for d in s.split(',').filter_map(Disposition::parse) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    pub fn list_to_string(list: &[Disposition]) -> String {
        list.iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Which notification a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Delivery,
    Display,
    Processing,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Delivery => "delivery",
            Kind::Display => "display",
            Kind::Processing => "processing",
        }
    }

    fn element(self) -> &'static str {
        match self {
            Kind::Delivery => "delivery-notification",
            Kind::Display => "display-notification",
            Kind::Processing => "processing-notification",
        }
    }

    /// The statuses section 7.2.1 allows for this kind.
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            Kind::Delivery => &["delivered", "failed", "forbidden", "error"],
            Kind::Display => &["displayed", "forbidden", "error"],
            Kind::Processing => &["processed", "stored", "forbidden", "error"],
        }
    }
}

/// One notification document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imdn {
    /// The imdn.Message-ID of the message it is about.
    pub message_id: String,
    /// That message's DateTime.
    pub datetime: String,
    pub recipient_uri: Option<String>,
    pub original_recipient_uri: Option<String>,
    pub subject: Option<String>,
    pub kind: Kind,
    /// One of `kind.statuses()`.
    pub status: String,
}

fn check_id(id: &str) -> Result<(), ImdnError> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return err(format!("bad message id {id:?}"));
    }
    Ok(())
}

fn check_text(what: &str, v: &str) -> Result<(), ImdnError> {
    if v.len() > 1024 || v.chars().any(|c| c.is_control() && c != '\t') {
        return err(format!("bad {what}"));
    }
    Ok(())
}

impl Imdn {
    pub fn new(message_id: &str, datetime: &str, kind: Kind, status: &str) -> Imdn {
        Imdn {
            message_id: message_id.to_string(),
            datetime: datetime.to_string(),
            recipient_uri: None,
            original_recipient_uri: None,
            subject: None,
            kind,
            status: status.to_string(),
        }
    }

    pub fn parse(input: &[u8]) -> Result<Imdn, ImdnError> {
        let root = xml::parse(
            input,
            xml::Limits {
                max_size: MAX_SIZE,
                ..xml::Limits::default()
            },
        )
        .map_err(|e| ImdnError(e.0))?;
        if !root.is(NAMESPACE, "imdn") {
            return err(format!(
                "root element {:?} is not imdn in {NAMESPACE}",
                root.name
            ));
        }
        let (mut id, mut dt, mut rcpt, mut orig, mut subject) = (None, None, None, None, None);
        let mut notification: Option<(Kind, String)> = None;
        for el in root.children_in(NAMESPACE) {
            let once = |slot: &Option<String>| -> Result<String, ImdnError> {
                if slot.is_some() {
                    return err(format!("more than one {}", el.name));
                }
                if !el.children.is_empty() {
                    return err(format!("elements inside {}", el.name));
                }
                Ok(el.text.trim().to_string())
            };
            match el.name.as_str() {
                "message-id" => {
                    let v = once(&id)?;
                    check_id(&v)?;
                    id = Some(v);
                }
                "datetime" => {
                    let v = once(&dt)?;
                    check_datetime(&v).map_err(|e| ImdnError(e.0))?;
                    dt = Some(v);
                }
                "recipient-uri" => {
                    let v = once(&rcpt)?;
                    check_text(&el.name, &v)?;
                    rcpt = Some(v);
                }
                "original-recipient-uri" => {
                    let v = once(&orig)?;
                    check_text(&el.name, &v)?;
                    orig = Some(v);
                }
                "subject" => {
                    let v = once(&subject)?;
                    check_text(&el.name, &v)?;
                    subject = Some(v);
                }
                name => {
                    let Some(kind) = [Kind::Delivery, Kind::Display, Kind::Processing]
                        .into_iter()
                        .find(|k| k.element() == name)
                    else {
                        return err(format!("unknown element {name:?}"));
                    };
                    if notification.is_some() {
                        return err("more than one notification");
                    }
                    let mut status = el.children_in(NAMESPACE).filter(|c| c.name == "status");
                    let (Some(s), None) = (status.next(), status.next()) else {
                        return err(format!("{name} needs exactly one status"));
                    };
                    let mut values = s.children_in(NAMESPACE);
                    let (Some(v), None) = (values.next(), values.next()) else {
                        return err("a status needs exactly one value");
                    };
                    if !kind.statuses().contains(&v.name.as_str()) {
                        return err(format!("{:?} is not a {} status", v.name, kind.as_str()));
                    }
                    notification = Some((kind, v.name.clone()));
                }
            }
        }
        let (kind, status) = notification.ok_or_else(|| ImdnError("no notification".into()))?;
        Ok(Imdn {
            message_id: id.ok_or_else(|| ImdnError("no message-id".into()))?,
            datetime: dt.ok_or_else(|| ImdnError("no datetime".into()))?,
            recipient_uri: rcpt,
            original_recipient_uri: orig,
            subject,
            kind,
            status,
        })
    }

    pub fn to_xml(&self) -> String {
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<imdn xmlns=\"{NAMESPACE}\">\n  <message-id>{}</message-id>\n  <datetime>{}</datetime>\n",
            xml::escape(&self.message_id),
            xml::escape(&self.datetime)
        );
        for (name, v) in [
            ("recipient-uri", &self.recipient_uri),
            ("original-recipient-uri", &self.original_recipient_uri),
            ("subject", &self.subject),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("  <{name}>{}</{name}>\n", xml::escape(v)));
            }
        }
        s.push_str(&format!(
            "  <{e}><status><{st}/></status></{e}>\n</imdn>\n",
            e = self.kind.element(),
            st = self.status
        ));
        s
    }
}

/// Ask for `dispositions` on `m`, whose imdn.Message-ID is `message_id`.
/// `m` must carry a DateTime (the notification refers to it).
pub fn request(m: &mut CpimMessage, message_id: &str, dispositions: &[Disposition]) {
    let p = m.declare_namespace("imdn", CPIM_NAMESPACE);
    m.headers
        .push((format!("{p}.Message-ID"), message_id.to_string()));
    if !dispositions.is_empty() {
        m.headers.push((
            format!("{p}.Disposition-Notification"),
            Disposition::list_to_string(dispositions),
        ));
    }
}

/// What an incoming message asks for: its imdn.Message-ID, DateTime and
/// dispositions. None when it asks for nothing we can answer (no id, no
/// DateTime, or no known disposition).
pub fn requested(m: &CpimMessage) -> Option<(String, String, Vec<Disposition>)> {
    let id = m.extension(CPIM_NAMESPACE, "Message-ID")?.trim();
    check_id(id).ok()?;
    let dt = m.datetime()?;
    let list = Disposition::parse_list(m.extension(CPIM_NAMESPACE, "Disposition-Notification")?);
    (!list.is_empty()).then(|| (id.to_string(), dt.to_string(), list))
}

/// The CPIM message carrying `doc` from `from` to `to` (section 7.1.1.1):
/// its own imdn.Message-ID, no notification requested for it.
pub fn notification_message(
    from: &CpimAddress,
    to: &CpimAddress,
    datetime: &str,
    own_id: &str,
    doc: &Imdn,
) -> CpimMessage {
    let mut m = CpimMessage::new(
        from,
        to,
        Some(datetime),
        CONTENT_TYPE,
        doc.to_xml().into_bytes(),
    );
    request(&mut m, own_id, &[]);
    m.content_headers
        .push(("Content-Disposition".into(), "notification".into()));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_DELIVERY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="urn:ietf:params:xml:ns:imdn">
  <message-id>34jk324j</message-id>
  <datetime>2008-04-04T12:16:49-05:00</datetime>
  <recipient-uri>im:bob@example.com</recipient-uri>
  <original-recipient-uri>im:bob@example.com</original-recipient-uri>
  <delivery-notification>
    <status>
      <delivered/>
    </status>
  </delivery-notification>
</imdn>"#;

    #[test]
    fn parses_the_rfc_example_and_round_trips() {
        let d = Imdn::parse(RFC_DELIVERY.as_bytes()).unwrap();
        assert_eq!(d.message_id, "34jk324j");
        assert_eq!(d.datetime, "2008-04-04T12:16:49-05:00");
        assert_eq!(d.recipient_uri.as_deref(), Some("im:bob@example.com"));
        assert_eq!(d.kind, Kind::Delivery);
        assert_eq!(d.status, "delivered");
        assert_eq!(Imdn::parse(d.to_xml().as_bytes()).unwrap(), d);
        let mut e = Imdn::new("a<&>b", "2026-12-01T10:00:00Z", Kind::Display, "displayed");
        e.subject = Some("\"quoted\" & <more>".into());
        assert_eq!(Imdn::parse(e.to_xml().as_bytes()).unwrap(), e);
        // Extensions in other namespaces are skipped.
        let ext = RFC_DELIVERY.replace(
            "<delivery-notification>",
            "<x:ext xmlns:x=\"urn:example\"><x:y/></x:ext><delivery-notification>",
        );
        assert_eq!(Imdn::parse(ext.as_bytes()).unwrap(), d);
    }

    #[test]
    fn malformed_documents_are_errors() {
        let doc = |body: &str| {
            format!("<imdn xmlns=\"{NAMESPACE}\"><message-id>x1</message-id><datetime>2026-12-01T10:00:00Z</datetime>{body}</imdn>")
        };
        let ok = "<display-notification><status><displayed/></status></display-notification>";
        assert!(Imdn::parse(doc(ok).as_bytes()).is_ok());
        let bad: Vec<String> = vec![
            String::new(),
            "<imdn/>".into(),
            doc(""),
            doc(&format!("{ok}{ok}")),
            doc("<display-notification><status><delivered/></status></display-notification>"),
            doc("<display-notification><status/></display-notification>"),
            doc("<display-notification/>"),
            doc("<display-notification><status><displayed/><error/></status></display-notification>"),
            doc(&format!("<bogus/>{ok}")),
            doc(&format!("<message-id>again</message-id>{ok}")),
            format!("<imdn xmlns=\"{NAMESPACE}\"><datetime>2026-12-01T10:00:00Z</datetime>{ok}</imdn>"),
            format!("<imdn xmlns=\"{NAMESPACE}\"><message-id>x</message-id>{ok}</imdn>"),
            format!("<imdn xmlns=\"{NAMESPACE}\"><message-id>x</message-id><datetime>soon</datetime>{ok}</imdn>"),
            format!("<imdn xmlns=\"{NAMESPACE}\"><message-id>has space</message-id><datetime>2026-12-01T10:00:00Z</datetime>{ok}</imdn>"),
            format!("<imdn xmlns=\"{NAMESPACE}\"><message-id>{}</message-id><datetime>2026-12-01T10:00:00Z</datetime>{ok}</imdn>", "x".repeat(300)),
            format!("<imdn xmlns=\"urn:other\"><message-id>x</message-id><datetime>2026-12-01T10:00:00Z</datetime>{ok}</imdn>"),
            doc(&format!("<subject>{}</subject>{ok}", "s".repeat(MAX_SIZE))),
        ];
        for b in bad {
            assert!(Imdn::parse(b.as_bytes()).is_err(), "{b}");
        }
    }

    #[test]
    fn requests_are_read_whatever_the_prefix() {
        let from = CpimAddress::new(None, "sip:a@example.com");
        let to = CpimAddress::new(None, "sip:b@example.com");
        let mut m = CpimMessage::new(
            &from,
            &to,
            Some("2026-12-01T10:00:00Z"),
            "text/plain",
            b"hi".to_vec(),
        );
        request(
            &mut m,
            "m1",
            &[Disposition::PositiveDelivery, Disposition::Display],
        );
        let parsed = CpimMessage::parse(&m.to_bytes()).unwrap();
        assert_eq!(
            requested(&parsed),
            Some((
                "m1".into(),
                "2026-12-01T10:00:00Z".into(),
                vec![Disposition::PositiveDelivery, Disposition::Display]
            ))
        );
        let other = b"From: <sip:a@example.com>\r\nNS: q <urn:ietf:params:imdn>\r\nq.Message-ID: z9\r\nDateTime: 2026-12-01T10:00:00Z\r\nq.Disposition-Notification: display, future-thing, display\r\n\r\nContent-Type: text/plain\r\n\r\nx";
        let parsed = CpimMessage::parse(other).unwrap();
        assert_eq!(
            requested(&parsed).map(|r| r.2),
            Some(vec![Disposition::Display])
        );
        // No DateTime, or nothing known asked for: nothing to answer.
        let no_dt = b"NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: z9\r\nimdn.Disposition-Notification: display\r\n\r\nContent-Type: text/plain\r\n\r\nx";
        assert_eq!(requested(&CpimMessage::parse(no_dt).unwrap()), None);
        let unknown = b"NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: z9\r\nDateTime: 2026-12-01T10:00:00Z\r\nimdn.Disposition-Notification: later\r\n\r\nContent-Type: text/plain\r\n\r\nx";
        assert_eq!(requested(&CpimMessage::parse(unknown).unwrap()), None);

        let doc = Imdn::new("m1", "2026-12-01T10:00:00Z", Kind::Delivery, "delivered");
        let n = notification_message(&to, &from, "2026-12-01T10:00:01Z", "n1", &doc);
        let parsed = CpimMessage::parse(&n.to_bytes()).unwrap();
        assert_eq!(parsed.content_type(), Some(CONTENT_TYPE));
        assert_eq!(requested(&parsed), None);
        assert_eq!(parsed.extension(CPIM_NAMESPACE, "Message-ID"), Some("n1"));
        assert_eq!(Imdn::parse(&parsed.content).unwrap(), doc);
    }
}
