//! Dialogs (RFC 3261 section 12): state, route set, requests inside a
//! dialog with loose and strict routing, CSeq rules and target refresh, and
//! a table that sends requests to their dialog or answers 481.

use std::collections::HashMap;

use super::header::HeaderName;
use super::message::SipMessage;
use super::uri::Uri;
use super::values::{parse_name_addr, split_list};

/// Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The id of the dialog an incoming request belongs to (our tag is in To).
    pub fn of_incoming(req: &SipMessage) -> Option<DialogId> {
        Some(DialogId {
            call_id: req.call_id()?.to_string(),
            local_tag: req.to()?.tag()?.to_string(),
            remote_tag: req.from()?.tag()?.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("message lacks {0}")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Our From (UAC) / To (UAS) header value, with our tag.
    pub local: String,
    /// The peer's header value, with its tag.
    pub remote: String,
    /// The peer's Contact URI: where in-dialog requests go.
    pub remote_target: String,
    /// Route set in the order requests carry it.
    pub route_set: Vec<String>,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    pub secure: bool,
}

fn contact_uri(msg: &SipMessage) -> Result<String, DialogError> {
    let c = msg
        .header_items(HeaderName::Contact)
        .first()
        .copied()
        .ok_or(DialogError::Missing("Contact"))?;
    let na = parse_name_addr(c).map_err(|_| DialogError::Malformed("Contact"))?;
    Ok(na.uri.to_string())
}

fn record_route(msg: &SipMessage) -> Result<Vec<String>, DialogError> {
    let mut v = Vec::new();
    for h in msg.header_all(HeaderName::RecordRoute) {
        for item in split_list(h, 1024).map_err(|_| DialogError::Malformed("Record-Route"))? {
            parse_name_addr(item).map_err(|_| DialogError::Malformed("Record-Route"))?;
            v.push(item.to_string());
        }
    }
    Ok(v)
}

/// What an incoming in-dialog request means for the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestCheck {
    Ok,
    /// CSeq lower than one already seen: answer 500 (12.2.2).
    CSeqOutOfOrder,
}

impl Dialog {
    /// The UAC's dialog from a response with a To tag to `request` (12.1.2).
    pub fn from_uac(request: &SipMessage, response: &SipMessage) -> Result<Dialog, DialogError> {
        let code = response.status().ok_or(DialogError::Missing("status"))?.0;
        let from = request
            .header(HeaderName::From)
            .ok_or(DialogError::Missing("From"))?;
        let to = response
            .header(HeaderName::To)
            .ok_or(DialogError::Missing("To"))?;
        let id = DialogId {
            call_id: request
                .call_id()
                .ok_or(DialogError::Missing("Call-ID"))?
                .to_string(),
            local_tag: request
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .ok_or(DialogError::Missing("From tag"))?,
            remote_tag: response
                .to()
                .and_then(|t| t.tag().map(str::to_string))
                .ok_or(DialogError::Missing("To tag"))?,
        };
        let mut route_set = record_route(response)?;
        route_set.reverse();
        let secure = request
            .request_uri()
            .is_some_and(|u| u.starts_with("sips:"));
        Ok(Dialog {
            id,
            state: if code < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local: from.to_string(),
            remote: to.to_string(),
            remote_target: contact_uri(response)?,
            route_set,
            local_seq: request.cseq().ok_or(DialogError::Missing("CSeq"))?.0,
            remote_seq: None,
            secure,
        })
    }

    /// The UAS's dialog from a request, answered with `local_tag` (12.1.1).
    pub fn from_uas(request: &SipMessage, local_tag: &str) -> Result<Dialog, DialogError> {
        let to = request
            .header(HeaderName::To)
            .ok_or(DialogError::Missing("To"))?;
        let from = request
            .header(HeaderName::From)
            .ok_or(DialogError::Missing("From"))?;
        let id = DialogId {
            call_id: request
                .call_id()
                .ok_or(DialogError::Missing("Call-ID"))?
                .to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: request
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .ok_or(DialogError::Missing("From tag"))?,
        };
        let local = if request.to().is_some_and(|t| t.tag().is_some()) {
            to.to_string()
        } else {
            format!("{to};tag={local_tag}")
        };
        Ok(Dialog {
            id,
            state: DialogState::Confirmed,
            local,
            remote: from.to_string(),
            remote_target: contact_uri(request)?,
            route_set: record_route(request)?,
            local_seq: 0,
            remote_seq: Some(request.cseq().ok_or(DialogError::Missing("CSeq"))?.0),
            secure: request
                .request_uri()
                .is_some_and(|u| u.starts_with("sips:")),
        })
    }

    /// A 2xx confirmed an early dialog; it may also refresh the target and,
    /// for the UAC, carries the final route set.
    pub fn confirm(&mut self, response: &SipMessage) -> Result<(), DialogError> {
        self.state = DialogState::Confirmed;
        if let Ok(t) = contact_uri(response) {
            self.remote_target = t;
        }
        let mut rs = record_route(response)?;
        rs.reverse();
        self.route_set = rs;
        Ok(())
    }

    /// Check an incoming request inside this dialog and apply target
    /// refresh (12.2.2).
    pub fn handle_request(&mut self, req: &SipMessage) -> RequestCheck {
        let Some((seq, method)) = req.cseq() else {
            return RequestCheck::CSeqOutOfOrder;
        };
        if method != "ACK" && method != "CANCEL" {
            if let Some(r) = self.remote_seq {
                if seq < r {
                    return RequestCheck::CSeqOutOfOrder;
                }
            }
            self.remote_seq = Some(seq);
        }
        if matches!(method, "INVITE" | "UPDATE" | "SUBSCRIBE" | "NOTIFY") {
            if let Ok(t) = contact_uri(req) {
                self.remote_target = t;
            }
        }
        RequestCheck::Ok
    }

    /// The Request-URI, Route values and next hop of a request in this
    /// dialog (12.2.1.1): loose routing when the first route has `lr`,
    /// otherwise strict routing with the remote target appended.
    pub fn routing(&self) -> (String, Vec<String>, String) {
        match self.route_set.first() {
            None => (
                self.remote_target.clone(),
                Vec::new(),
                self.remote_target.clone(),
            ),
            Some(first) => {
                let na = parse_name_addr(first).ok();
                let first_uri = na.as_ref().map(|n| n.uri.to_string()).unwrap_or_default();
                let loose = na
                    .as_ref()
                    .and_then(|n| n.uri.as_sip().map(|s| s.param("lr").is_some()))
                    .unwrap_or(false);
                if loose {
                    (
                        self.remote_target.clone(),
                        self.route_set.clone(),
                        first_uri,
                    )
                } else {
                    let mut routes: Vec<String> = self.route_set[1..].to_vec();
                    routes.push(format!("<{}>", self.remote_target));
                    (first_uri.clone(), routes, first_uri)
                }
            }
        }
    }

    /// A new request in the dialog with the next local CSeq. `via` is the
    /// top Via value (with a fresh branch). ACK and CANCEL do not count.
    pub fn create_request(&mut self, method: &str, via: &str) -> Result<SipMessage, DialogError> {
        let seq = if method == "ACK" || method == "CANCEL" {
            self.local_seq
        } else {
            self.local_seq = self.local_seq.wrapping_add(1).max(1);
            self.local_seq
        };
        self.build(method, seq, via)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (13.2.2.4).
    pub fn create_ack(&self, invite_seq: u32, via: &str) -> Result<SipMessage, DialogError> {
        self.build("ACK", invite_seq, via)
    }

    fn build(&self, method: &str, seq: u32, via: &str) -> Result<SipMessage, DialogError> {
        let (ruri, routes, _) = self.routing();
        let uri = Uri::parse(&ruri).map_err(|_| DialogError::Malformed("remote target"))?;
        let mut m =
            SipMessage::request(method, &uri).map_err(|_| DialogError::Malformed("method"))?;
        let push = |m: &mut SipMessage, n: &str, v: &str| {
            m.push_header(n, v)
                .map_err(|_| DialogError::Malformed("header value"))
        };
        push(&mut m, "Via", via)?;
        push(&mut m, "Max-Forwards", "70")?;
        for r in &routes {
            push(&mut m, "Route", r)?;
        }
        push(&mut m, "From", &self.local)?;
        push(&mut m, "To", &self.remote)?;
        push(&mut m, "Call-ID", &self.id.call_id)?;
        push(&mut m, "CSeq", &format!("{seq} {method}"))?;
        Ok(m)
    }

    /// Where the next request goes: the first Route or the Request-URI.
    pub fn next_hop(&self) -> Result<Uri, DialogError> {
        let (_, _, hop) = self.routing();
        Uri::parse(&hop).map_err(|_| DialogError::Malformed("next hop"))
    }
}

/// Where an incoming request belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// No To tag: a new dialog or a standalone request.
    OutOfDialog,
    InDialog(DialogId),
    /// A To tag for no dialog we know: 481 (12.2.2).
    NoSuchDialog,
    /// Inside a dialog but CSeq went backwards: 500.
    OutOfOrder(DialogId),
}

/// The dialogs of a UA.
#[derive(Debug, Default)]
pub struct Dialogs {
    map: HashMap<DialogId, Dialog>,
}

impl Dialogs {
    pub fn insert(&mut self, d: Dialog) {
        self.map.insert(d.id.clone(), d);
    }
    pub fn remove(&mut self, id: &DialogId) -> Option<Dialog> {
        self.map.remove(id)
    }
    pub fn get(&self, id: &DialogId) -> Option<&Dialog> {
        self.map.get(id)
    }
    pub fn get_mut(&mut self, id: &DialogId) -> Option<&mut Dialog> {
        self.map.get_mut(id)
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Route an incoming request, applying the dialog's CSeq and target
    /// refresh rules when it belongs to one.
    pub fn route(&mut self, req: &SipMessage) -> Routing {
        let has_to_tag = req.to().is_some_and(|t| t.tag().is_some());
        if !has_to_tag {
            return Routing::OutOfDialog;
        }
        let Some(id) = DialogId::of_incoming(req) else {
            return Routing::NoSuchDialog;
        };
        match self.map.get_mut(&id) {
            None => Routing::NoSuchDialog,
            Some(d) => match d.handle_request(req) {
                RequestCheck::Ok => Routing::InDialog(id),
                RequestCheck::CSeqOutOfOrder => Routing::OutOfOrder(id),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sip::Limits;

    fn parse(s: &str) -> SipMessage {
        SipMessage::parse_datagram(s.replace('\n', "\r\n").as_bytes(), &Limits::default()).unwrap()
    }

    fn invite() -> SipMessage {
        parse(
            "INVITE sip:bob@b.example SIP/2.0\n\
             Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\n\
             From: \"Alice\" <sip:alice@a.example>;tag=at\n\
             To: <sip:bob@b.example>\n\
             Call-ID: c1\n\
             CSeq: 10 INVITE\n\
             Contact: <sip:alice@10.0.0.1:5060>\n\
             Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\n\
             Content-Length: 0\n\n",
        )
    }

    fn ok() -> SipMessage {
        parse(
            "SIP/2.0 200 OK\n\
             Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\n\
             From: \"Alice\" <sip:alice@a.example>;tag=at\n\
             To: <sip:bob@b.example>;tag=bt\n\
             Call-ID: c1\n\
             CSeq: 10 INVITE\n\
             Contact: <sip:bob@10.0.0.2:5062;transport=tcp>\n\
             Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\n\
             Content-Length: 0\n\n",
        )
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_loose_routes() {
        let mut d = Dialog::from_uac(&invite(), &ok()).unwrap();
        assert_eq!(d.id.local_tag, "at");
        assert_eq!(d.id.remote_tag, "bt");
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        let bye = d
            .create_request("BYE", "SIP/2.0/UDP a.example;branch=z9hG4bK2")
            .unwrap();
        assert_eq!(
            bye.request_uri(),
            Some("sip:bob@10.0.0.2:5062;transport=tcp")
        );
        assert_eq!(
            bye.header_all(HeaderName::Route).collect::<Vec<_>>(),
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        assert_eq!(bye.cseq(), Some((11, "BYE")));
        assert_eq!(bye.to().unwrap().tag(), Some("bt"));
        assert_eq!(d.next_hop().unwrap().to_string(), "sip:p1.example;lr");
        let ack = d
            .create_ack(10, "SIP/2.0/UDP a.example;branch=z9hG4bK3")
            .unwrap();
        assert_eq!(ack.cseq(), Some((10, "ACK")));
    }

    #[test]
    fn strict_route_puts_the_target_last() {
        let mut d = Dialog::from_uac(&invite(), &ok()).unwrap();
        d.route_set = vec!["<sip:strict.example>".into(), "<sip:p2.example;lr>".into()];
        let m = d
            .create_request("INFO", "SIP/2.0/UDP a;branch=z9hG4bK9")
            .unwrap();
        assert_eq!(m.request_uri(), Some("sip:strict.example"));
        assert_eq!(
            m.header_all(HeaderName::Route).collect::<Vec<_>>(),
            vec![
                "<sip:p2.example;lr>",
                "<sip:bob@10.0.0.2:5062;transport=tcp>"
            ]
        );
    }

    #[test]
    fn uas_dialog_cseq_and_target_refresh() {
        let inv = invite();
        let d = Dialog::from_uas(&inv, "bt").unwrap();
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        assert!(d.local.ends_with(";tag=bt"));
        let mut dialogs = Dialogs::default();
        dialogs.insert(d);
        let reinvite = parse(
            "INVITE sip:bob@10.0.0.2 SIP/2.0\n\
             Via: SIP/2.0/UDP a.example;branch=z9hG4bK5\n\
             From: <sip:alice@a.example>;tag=at\n\
             To: <sip:bob@b.example>;tag=bt\n\
             Call-ID: c1\n\
             CSeq: 11 INVITE\n\
             Contact: <sip:alice@10.0.0.7>\n\
             Content-Length: 0\n\n",
        );
        let Routing::InDialog(id) = dialogs.route(&reinvite) else {
            panic!()
        };
        assert_eq!(
            dialogs.get(&id).unwrap().remote_target,
            "sip:alice@10.0.0.7"
        );
        let old = parse(
            "BYE sip:bob@10.0.0.2 SIP/2.0\n\
             Via: SIP/2.0/UDP a.example;branch=z9hG4bK6\n\
             From: <sip:alice@a.example>;tag=at\n\
             To: <sip:bob@b.example>;tag=bt\n\
             Call-ID: c1\n\
             CSeq: 5 BYE\n\
             Content-Length: 0\n\n",
        );
        assert!(matches!(dialogs.route(&old), Routing::OutOfOrder(_)));
        let stranger = parse(
            "BYE sip:bob@10.0.0.2 SIP/2.0\n\
             Via: SIP/2.0/UDP a.example;branch=z9hG4bK7\n\
             From: <sip:alice@a.example>;tag=zz\n\
             To: <sip:bob@b.example>;tag=bt\n\
             Call-ID: c1\n\
             CSeq: 50 BYE\n\
             Content-Length: 0\n\n",
        );
        assert_eq!(dialogs.route(&stranger), Routing::NoSuchDialog);
        assert_eq!(dialogs.route(&invite()), Routing::OutOfDialog);
    }

    #[test]
    fn missing_pieces_are_errors() {
        let mut resp = ok();
        resp.remove_header(HeaderName::Contact);
        assert_eq!(
            Dialog::from_uac(&invite(), &resp).unwrap_err(),
            DialogError::Missing("Contact")
        );
        let mut resp = ok();
        resp.set_header(HeaderName::To, "<sip:bob@b.example>")
            .unwrap();
        assert!(Dialog::from_uac(&invite(), &resp).is_err());
    }
}
