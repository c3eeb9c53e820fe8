//! Pager-mode instant messages (RFC 3428), sans-IO: one MESSAGE request
//! with digest authentication on 401/407, and the outcome from its final
//! response.

use super::splitmix;
use crate::proto::sip::auth::{Credentials, DigestClient};
use crate::proto::sip::{SipMessage, Uri};

/// Larger bodies belong in a session (RFC 3428 section 8: MESSAGE bodies
/// over about 1300 bytes risk UDP fragmentation; 64 KiB is a hard limit).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// What one MESSAGE needs.
#[derive(Debug, Clone)]
pub struct PagerConfig {
    /// The Request-URI (the recipient).
    pub target: Uri,
    /// From name-addr (no tag) and To name-addr.
    pub from: String,
    pub to: String,
    /// `SIP/2.0/<T> host:port` of the local transport.
    pub via: String,
    /// A Route header value (outbound proxy), if any.
    pub route: Option<String>,
    pub user_agent: String,
    pub credentials: Option<Credentials>,
    pub seed: u64,
}

/// How a MESSAGE ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagerOutcome {
    /// A 2xx: the recipient (or its server) took it.
    Delivered { code: u16, reason: String },
    /// Anything else, the code 408 for a timeout and 503 for a transport
    /// error.
    Failed { code: u16, reason: String },
}

/// Whether a MESSAGE can carry `body` of `content_type`.
pub fn check_message(content_type: &str, body: &[u8]) -> Result<(), String> {
    if body.len() > MAX_BODY {
        return Err(format!(
            "{} bytes is more than a MESSAGE carries ({MAX_BODY}); use a chat session",
            body.len()
        ));
    }
    if !content_type.contains('/') || content_type.contains(['\r', '\n']) {
        return Err(format!("content type {content_type:?} is not type/subtype"));
    }
    Ok(())
}

/// One outgoing MESSAGE.
pub struct PagerRequest {
    cfg: PagerConfig,
    content_type: String,
    body: Vec<u8>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    rng: u64,
    auth: DigestClient,
    auth_tries: u32,
    current: Option<SipMessage>,
}

impl PagerRequest {
    pub fn new(cfg: PagerConfig, content_type: &str, body: Vec<u8>) -> Result<Self, String> {
        check_message(content_type, &body)?;
        let mut rng = cfg.seed;
        let call_id = format!(
            "{:016x}{:08x}",
            splitmix(&mut rng),
            splitmix(&mut rng) as u32
        );
        let from_tag = format!("{:012x}", splitmix(&mut rng) & 0xffff_ffff_ffff);
        Ok(PagerRequest {
            auth: DigestClient::new(cfg.credentials.clone().into_iter().collect()),
            cfg,
            content_type: content_type.to_string(),
            body,
            call_id,
            from_tag,
            cseq: 0,
            rng,
            auth_tries: 0,
            current: None,
        })
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The request to send first.
    pub fn request(&mut self) -> Result<SipMessage, String> {
        self.cseq += 1;
        let mut m = SipMessage::request("MESSAGE", &self.cfg.target).map_err(|e| e.to_string())?;
        let branch = format!("z9hG4bK{:016x}", splitmix(&mut self.rng));
        let headers: Vec<(&str, String)> = vec![
            ("Via", format!("{};branch={branch};rport", self.cfg.via)),
            ("Max-Forwards", "70".into()),
            ("From", format!("{};tag={}", self.cfg.from, self.from_tag)),
            ("To", self.cfg.to.clone()),
            ("Call-ID", self.call_id.clone()),
            ("CSeq", format!("{} MESSAGE", self.cseq)),
            ("User-Agent", self.cfg.user_agent.clone()),
            ("Content-Type", self.content_type.clone()),
        ];
        for (n, v) in headers {
            m.push_header(n, &v).map_err(|e| e.to_string())?;
        }
        if let Some(r) = &self.cfg.route {
            m.push_header("Route", r).map_err(|e| e.to_string())?;
        }
        m.set_body(self.body.clone());
        let mut rng = self.rng;
        let mut cn = || format!("{:016x}", splitmix(&mut rng));
        let _ = self.auth.authorize(&mut m, &mut cn);
        self.rng = rng;
        self.current = Some(m.clone());
        Ok(m)
    }

    /// A final response to the request last sent. `Ok(Some(request))`: send
    /// this one next (authorized); `Err(outcome)`: done.
    pub fn handle_response(&mut self, response: &SipMessage) -> Result<SipMessage, PagerOutcome> {
        let (code, reason) = response
            .status()
            .map(|(c, r)| (c, r.to_string()))
            .unwrap_or((500, "bad response".into()));
        if (200..300).contains(&code) {
            return Err(PagerOutcome::Delivered { code, reason });
        }
        if (code == 401 || code == 407) && self.auth_tries < 2 {
            self.auth_tries += 1;
            if let Some(mut req) = self.current.take() {
                let mut rng = self.rng;
                let mut cn = || format!("{:016x}", splitmix(&mut rng));
                let r = self.auth.handle_challenge(response, &mut req, &mut cn);
                self.rng = rng;
                if r.is_ok() {
                    // Same message, new transaction: fresh branch and CSeq,
                    // with the authorization the challenge taught.
                    return self.request().map_err(|e| PagerOutcome::Failed {
                        code: 500,
                        reason: e,
                    });
                }
            }
        }
        Err(PagerOutcome::Failed { code, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(credentials: Option<Credentials>) -> PagerConfig {
        PagerConfig {
            target: Uri::parse("sip:bob@example.com").unwrap(),
            from: "\"Alice\" <sip:alice@example.com>".into(),
            to: "<sip:bob@example.com>".into(),
            via: "SIP/2.0/UDP 127.0.0.1:5060".into(),
            route: Some("<sip:127.0.0.1:5070;lr>".into()),
            user_agent: "test".into(),
            credentials,
            seed: 42,
        }
    }

    fn response_to(req: &SipMessage, code: u16, extra: &[(&str, &str)]) -> SipMessage {
        let mut r = crate::proto::sip::screen::build_response(req, code, "X", Some("t1")).unwrap();
        for (n, v) in extra {
            r.push_header(n, v).unwrap();
        }
        r
    }

    #[test]
    fn a_message_request_and_its_outcomes() {
        let mut p = PagerRequest::new(cfg(None), "text/plain", b"hi".to_vec()).unwrap();
        let req = p.request().unwrap();
        assert_eq!(req.method(), Some("MESSAGE"));
        assert_eq!(req.body(), b"hi");
        assert_eq!(req.header_by_name("Content-Type"), Some("text/plain"));
        assert!(req.header_by_name("Route").is_some());
        assert!(req.header_by_name("From").unwrap().contains(";tag="));
        assert_eq!(
            p.handle_response(&response_to(&req, 202, &[])).unwrap_err(),
            PagerOutcome::Delivered {
                code: 202,
                reason: "X".into()
            }
        );
        let mut p = PagerRequest::new(cfg(None), "text/plain", b"hi".to_vec()).unwrap();
        let req = p.request().unwrap();
        assert!(matches!(
            p.handle_response(&response_to(&req, 404, &[])),
            Err(PagerOutcome::Failed { code: 404, .. })
        ));
        // A challenge without credentials is a failure with its code.
        let mut p = PagerRequest::new(cfg(None), "text/plain", b"hi".to_vec()).unwrap();
        let req = p.request().unwrap();
        let ch = [(
            "Proxy-Authenticate",
            "Digest realm=\"example.com\", nonce=\"abc\"",
        )];
        assert!(matches!(
            p.handle_response(&response_to(&req, 407, &ch)),
            Err(PagerOutcome::Failed { code: 407, .. })
        ));
        assert!(PagerRequest::new(cfg(None), "plain", vec![]).is_err());
        assert!(PagerRequest::new(cfg(None), "text/plain", vec![0; MAX_BODY + 1]).is_err());
    }

    #[test]
    fn a_challenge_is_answered_once_then_a_repeat_fails() {
        let creds = Credentials {
            realm: None,
            username: "alice".into(),
            password: "secret".into(),
        };
        let mut p = PagerRequest::new(cfg(Some(creds)), "text/plain", b"hi".to_vec()).unwrap();
        let first = p.request().unwrap();
        let ch = [(
            "Proxy-Authenticate",
            "Digest realm=\"example.com\", nonce=\"abc\", qop=\"auth\"",
        )];
        let second = p.handle_response(&response_to(&first, 407, &ch)).unwrap();
        let auth = second
            .header_by_name("Proxy-Authorization")
            .expect("authorized");
        assert!(auth.contains("username=\"alice\"") && auth.contains("nonce=\"abc\""));
        assert_ne!(
            second.header_by_name("Via"),
            first.header_by_name("Via"),
            "a new branch"
        );
        assert_eq!(second.header_by_name("CSeq"), Some("2 MESSAGE"));
        assert_eq!(
            second.header_by_name("Call-ID"),
            first.header_by_name("Call-ID")
        );
        // The same nonce again: the password is wrong; no loop.
        assert!(matches!(
            p.handle_response(&response_to(&second, 407, &ch)),
            Err(PagerOutcome::Failed { code: 407, .. })
        ));
    }
}
