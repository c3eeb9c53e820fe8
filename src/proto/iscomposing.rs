//! is-composing indications (RFC 3994): the `application/im-iscomposing+xml`
//! document, parsed and printed, and the timers both sides keep.
//!
//! ```text
//! <?xml version="1.0" encoding="UTF-8"?>
//! <isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">
//!   <state>active</state>
//!   <contenttype>text/plain</contenttype>
//!   <refresh>60</refresh>
//! </isComposing>
//! ```
//!
//! A receiver that saw `active` falls back to `idle` when no refresh comes
//! within the refresh interval (120 s when the sender gave none; section
//! 4.3); a sender goes `idle` after 15 s without typing (section 3.2).

use std::time::{Duration, Instant};

use super::cpim::check_datetime;
use super::xml;

pub const CONTENT_TYPE: &str = "application/im-iscomposing+xml";
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:im-iscomposing";
/// How long a receiver keeps `active` without a refresh interval.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(120);
/// How long a sender stays `active` after the last keystroke.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Larger documents are refused before parsing.
pub(crate) const MAX_SIZE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposingState {
    Active,
    Idle,
}

impl ComposingState {
    pub fn as_str(self) -> &'static str {
        match self {
            ComposingState::Active => "active",
            ComposingState::Idle => "idle",
        }
    }

    pub fn parse(s: &str) -> Option<ComposingState> {
        match s {
            "active" => Some(ComposingState::Active),
            "idle" => Some(ComposingState::Idle),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid is-composing document: {0}")]
pub struct IsComposingError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, IsComposingError> {
    Err(IsComposingError(why.into()))
}

/// One is-composing document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsComposing {
    pub state: ComposingState,
    /// What is being composed (`text/plain` when absent).
    pub content_type: Option<String>,
    /// Seconds until the sender refreshes an active state.
    pub refresh: Option<u32>,
    /// RFC 3339 time of the last activity.
    pub last_active: Option<String>,
}

impl IsComposing {
    pub fn new(state: ComposingState) -> IsComposing {
        IsComposing {
            state,
            content_type: None,
            refresh: None,
            last_active: None,
        }
    }

    pub fn parse(input: &[u8]) -> Result<IsComposing, IsComposingError> {
        let root = xml::parse(
            input,
            xml::Limits {
                max_size: MAX_SIZE,
                ..xml::Limits::default()
            },
        )
        .map_err(|e| IsComposingError(e.0))?;
        if !root.is(NAMESPACE, "isComposing") {
            return err(format!(
                "root element {:?} is not isComposing in {NAMESPACE}",
                root.name
            ));
        }
        let (mut state, mut ctype, mut refresh, mut last) = (None, None, None, None);
        // Elements of other namespaces are extensions and skipped whole.
        for el in root.children_in(NAMESPACE) {
            if let Some(c) = el.children.first() {
                return err(format!("unexpected element {:?}", c.name));
            }
            store(
                &el.name,
                el.text.trim(),
                &mut state,
                &mut ctype,
                &mut refresh,
                &mut last,
            )?;
        }
        Ok(IsComposing {
            state: state.ok_or_else(|| IsComposingError("no state".into()))?,
            content_type: ctype,
            refresh,
            last_active: last,
        })
    }

    pub fn to_xml(&self) -> String {
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<isComposing xmlns=\"{NAMESPACE}\">\n  <state>{}</state>\n",
            self.state.as_str()
        );
        if let Some(t) = &self.last_active {
            s.push_str(&format!("  <lastactive>{}</lastactive>\n", xml::escape(t)));
        }
        if let Some(c) = &self.content_type {
            s.push_str(&format!(
                "  <contenttype>{}</contenttype>\n",
                xml::escape(c)
            ));
        }
        if let Some(r) = self.refresh {
            s.push_str(&format!("  <refresh>{r}</refresh>\n"));
        }
        s.push_str("</isComposing>\n");
        s
    }

    /// How long the receiver keeps this state before assuming `idle`.
    pub fn valid_for(&self) -> Option<Duration> {
        match self.state {
            ComposingState::Idle => None,
            ComposingState::Active => Some(
                self.refresh
                    .map(|r| Duration::from_secs(u64::from(r)))
                    .unwrap_or(DEFAULT_REFRESH),
            ),
        }
    }
}

fn store(
    name: &str,
    v: &str,
    state: &mut Option<ComposingState>,
    ctype: &mut Option<String>,
    refresh: &mut Option<u32>,
    last: &mut Option<String>,
) -> Result<(), IsComposingError> {
    match name {
        "state" => {
            if state.is_some() {
                return err("more than one state");
            }
            *state = Some(ComposingState::parse(v).ok_or_else(|| {
                IsComposingError(format!("state {v:?} is neither active nor idle"))
            })?);
        }
        "contenttype" => {
            // RFC 3994's own example says just "audio": a media type or a
            // top-level type.
            if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
                return err(format!("bad contenttype {v:?}"));
            }
            *ctype = Some(v.to_string());
        }
        "refresh" => {
            let n: u32 = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                IsComposingError(format!("refresh {v:?} is not a positive integer"))
            })?;
            *refresh = Some(n);
        }
        "lastactive" => {
            check_datetime(v).map_err(|e| IsComposingError(e.0))?;
            *last = Some(v.to_string());
        }
        other => return err(format!("unknown element {other:?}")),
    }
    Ok(())
}

/// What a receiver believes about the peer, with the refresh timeout.
#[derive(Debug, Default)]
pub struct ComposingTracker {
    active_until: Option<Instant>,
}

impl ComposingTracker {
    /// A document arrived: its state now counts.
    pub fn received(&mut self, now: Instant, doc: &IsComposing) {
        self.active_until = doc.valid_for().map(|d| now + d);
    }

    pub fn state(&self) -> ComposingState {
        if self.active_until.is_some() {
            ComposingState::Active
        } else {
            ComposingState::Idle
        }
    }

    /// A real message arrived: the peer stopped composing (section 4.3).
    pub fn message_received(&mut self) -> bool {
        self.active_until.take().is_some()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active_until
    }

    /// True when the peer just went idle by timeout.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.active_until.is_some_and(|t| t <= now) {
            self.active_until = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"\n\
  xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n\
  xsi:schemaLocation=\"urn:ietf:params:xml:ns:im-composing iscomposing.xsd\">\n\
  <state>idle</state>\n\
  <lastactive>2003-01-27T10:43:00Z</lastactive>\n\
  <contenttype>audio</contenttype>\n\
</isComposing>\n";

    #[test]
    fn parses_the_rfc_examples_and_round_trips() {
        let d = IsComposing::parse(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(d.state, ComposingState::Idle);
        assert_eq!(d.last_active.as_deref(), Some("2003-01-27T10:43:00Z"));
        assert_eq!(d.content_type.as_deref(), Some("audio"));
        assert_eq!(IsComposing::parse(d.to_xml().as_bytes()).unwrap(), d);

        let prefixed = "<ic:isComposing xmlns:ic=\"urn:ietf:params:xml:ns:im-iscomposing\"><ic:state>active</ic:state><ic:refresh>60</ic:refresh><x:ext xmlns:x=\"urn:example\"><x:deep/></x:ext></ic:isComposing>";
        let d = IsComposing::parse(prefixed.as_bytes()).unwrap();
        assert_eq!(d.state, ComposingState::Active);
        assert_eq!(d.refresh, Some(60));
        assert_eq!(d.valid_for(), Some(Duration::from_secs(60)));
        let mut e = IsComposing::new(ComposingState::Active);
        e.content_type = Some("text/plain; a=\"<&>\"".into());
        assert_eq!(IsComposing::parse(e.to_xml().as_bytes()).unwrap(), e);
        assert_eq!(e.valid_for(), Some(DEFAULT_REFRESH));
    }

    #[test]
    fn malformed_documents_are_errors() {
        let ns = NAMESPACE;
        let bad: Vec<String> = vec![
            String::new(),
            "not xml".into(),
            "<isComposing><state>active</state></isComposing>".into(),
            format!("<isComposing xmlns=\"{ns}\"></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>typing</state></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state><state>idle</state></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state><refresh>0</refresh></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state><refresh>-5</refresh></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state><lastactive>yesterday</lastactive></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state><contenttype></contenttype></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state><bogus>1</bogus></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state>"),
            format!("<isComposing xmlns=\"{ns}\"><state>active</state></isComposing><isComposing xmlns=\"{ns}\"/>"),
            format!("<!DOCTYPE x [<!ENTITY a \"b\">]><isComposing xmlns=\"{ns}\"><state>&a;</state></isComposing>"),
            format!("<isComposing xmlns=\"{ns}\"><state>act&bogus;ive</state></isComposing>"),
            format!("<other xmlns=\"{ns}\"><state>active</state></other>"),
            format!("<isComposing xmlns=\"{ns}\"><state>{}</state></isComposing>", "a".repeat(MAX_SIZE)),
            format!("<isComposing xmlns=\"{ns}\">{}</isComposing>", "<x>".repeat(40)),
        ];
        for b in bad {
            assert!(IsComposing::parse(b.as_bytes()).is_err(), "{b}");
        }
        assert!(IsComposing::parse(&[0xff, 0xfe, b'<']).is_err());
    }

    #[test]
    fn the_receiver_goes_idle_when_no_refresh_comes() {
        let t0 = Instant::now();
        let mut t = ComposingTracker::default();
        let mut doc = IsComposing::new(ComposingState::Active);
        doc.refresh = Some(10);
        t.received(t0, &doc);
        assert_eq!(t.state(), ComposingState::Active);
        assert!(!t.handle_timeout(t0 + Duration::from_secs(9)));
        t.received(t0 + Duration::from_secs(9), &doc);
        assert!(!t.handle_timeout(t0 + Duration::from_secs(12)));
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(19)));
        assert!(t.handle_timeout(t0 + Duration::from_secs(19)));
        assert_eq!(t.state(), ComposingState::Idle);
        t.received(t0, &doc);
        assert!(t.message_received());
        assert!(!t.message_received());
        t.received(t0, &IsComposing::new(ComposingState::Idle));
        assert_eq!(t.poll_timeout(), None);
    }
}
