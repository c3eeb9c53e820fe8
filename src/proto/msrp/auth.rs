//! AUTH to an MSRP relay (RFC 4976 section 5), sans-IO: the first AUTH
//! that gets us a path on the relay and the renewals that keep it.
//!
//! The caller sends what [`AuthClient::request`] gives, feeds the response
//! to [`AuthClient::handle_response`], and sends again when told. A digest
//! challenge (401) is answered once per attempt unless it says the nonce
//! was stale; a 423 moves the asked Expires to the relay's bound. The last
//! challenge is kept, so a renewal answers it with the next nonce count
//! and usually takes one round trip.

use std::time::{Duration, Instant};

use super::message::{ChunkHead, ContFlag};
use super::random_ident;
use super::uri::MsrpUri;
use crate::proto::sip::auth;

/// Requests in one attempt, at most (first try, digest answer, a 423 retry
/// and a stale-nonce answer).
const MAX_REQUESTS: u8 = 4;

/// How the relay answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Send this request (a digest answer or a new Expires).
    Send(Vec<u8>),
    /// Granted for `expires` seconds; the 200's Use-Path when it had one.
    Granted {
        use_path: Option<Vec<MsrpUri>>,
        expires: u32,
    },
    /// Refused or failed; the attempt is over.
    Failed { code: u16, comment: String },
    /// Not a response to our AUTH.
    NotOurs,
}

struct Attempt {
    transaction_id: String,
    sent_at: Instant,
    requests: u8,
    /// The last request answered a challenge received in this attempt.
    answered_fresh: bool,
}

/// See the module documentation.
pub struct AuthClient {
    me: MsrpUri,
    relay: MsrpUri,
    username: String,
    password: String,
    /// The Expires to ask for; `None`: let the relay choose.
    expires: Option<u32>,
    challenge: Option<String>,
    nc: u32,
    rng: u64,
    attempt: Option<Attempt>,
    granted: Option<(Instant, u32)>,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("AuthClient")
            .field("me", &self.me.to_string())
            .field("relay", &self.relay.to_string())
            .field("username", &self.username)
            .field("expires", &self.expires)
            .finish()
    }
}

impl AuthClient {
    /// `me`: our URI on the connection to the relay; `relay`: the relay's
    /// URI (To-Path of AUTH).
    pub fn new(
        me: MsrpUri,
        relay: MsrpUri,
        username: &str,
        password: &str,
        expires: Option<u32>,
        seed: u64,
    ) -> AuthClient {
        AuthClient {
            me,
            relay,
            username: username.to_string(),
            password: password.to_string(),
            expires,
            challenge: None,
            nc: 0,
            rng: seed,
            attempt: None,
            granted: None,
        }
    }

    pub fn me(&self) -> &MsrpUri {
        &self.me
    }

    /// The transaction id of the AUTH in flight.
    pub fn transaction_id(&self) -> Option<&str> {
        self.attempt.as_ref().map(|a| a.transaction_id.as_str())
    }

    /// When the AUTH in flight was sent.
    pub fn sent_at(&self) -> Option<Instant> {
        self.attempt.as_ref().map(|a| a.sent_at)
    }

    /// The last grant: when its AUTH was sent (the safe side) and for how
    /// many seconds.
    pub fn granted(&self) -> Option<(Instant, u32)> {
        self.granted
    }

    /// When to renew the grant: half-way, or 60 s before it ends if that is
    /// later.
    pub fn renew_at(&self) -> Option<Instant> {
        let (at, e) = self.granted?;
        let e = u64::from(e);
        Some(at + Duration::from_secs((e / 2).max(e.saturating_sub(60))))
    }

    /// When the grant ends.
    pub fn expiry(&self) -> Option<Instant> {
        let (at, e) = self.granted?;
        Some(at + Duration::from_secs(u64::from(e)))
    }

    /// Start an attempt: the AUTH to send. A kept challenge is answered
    /// with the next nonce count.
    pub fn request(&mut self, now: Instant) -> Vec<u8> {
        let authorization = self.challenge.clone().and_then(|c| self.answer(&c));
        self.attempt = None;
        self.build(now, authorization, 1, false)
    }

    fn build(
        &mut self,
        now: Instant,
        authorization: Option<String>,
        requests: u8,
        answered_fresh: bool,
    ) -> Vec<u8> {
        let tid = random_ident(&mut self.rng, 12);
        let mut h = ChunkHead::request(&tid, "AUTH");
        h.set_request_paths(
            std::slice::from_ref(&self.me),
            std::slice::from_ref(&self.relay),
        );
        if let Some(a) = &authorization {
            h.push_header("Authorization", a);
        }
        if let Some(e) = self.expires {
            h.push_header("Expires", &e.to_string());
        }
        let sent_at = self.attempt.as_ref().map_or(now, |a| a.sent_at);
        self.attempt = Some(Attempt {
            transaction_id: tid,
            sent_at,
            requests,
            answered_fresh,
        });
        h.to_bytes(b"", ContFlag::End)
    }

    fn answer(&mut self, challenge: &str) -> Option<String> {
        let ch = auth::Challenge::parse(challenge).ok()?;
        self.nc += 1;
        let cnonce = random_ident(&mut self.rng, 16);
        let uri = self.relay.to_string();
        auth::answer(
            &ch,
            &auth::DigestInput {
                username: &self.username,
                password: &self.password,
                method: "AUTH",
                uri: &uri,
                body: b"",
                nc: self.nc,
                cnonce: &cnonce,
            },
        )
        .ok()
        .map(|a| a.header_value)
    }

    fn fail(&mut self, code: u16, comment: &str) -> AuthOutcome {
        self.attempt = None;
        AuthOutcome::Failed {
            code,
            comment: comment.to_string(),
        }
    }

    /// The AUTH in flight got no answer in time.
    pub fn timed_out(&mut self) -> AuthOutcome {
        self.fail(408, "Request Timeout")
    }

    /// A response; anything not for the AUTH in flight is `NotOurs`.
    pub fn handle_response(&mut self, head: &ChunkHead) -> AuthOutcome {
        let Some(code) = head.code() else {
            return AuthOutcome::NotOurs;
        };
        let Some(attempt) = self
            .attempt
            .as_ref()
            .filter(|a| a.transaction_id == head.transaction_id)
        else {
            return AuthOutcome::NotOurs;
        };
        let (sent_at, requests, answered_fresh) =
            (attempt.sent_at, attempt.requests, attempt.answered_fresh);
        let comment = head.comment().unwrap_or("").to_string();
        let more = requests < MAX_REQUESTS;
        match code {
            200 => {
                let use_path = match head.use_path() {
                    Ok(p) => p,
                    Err(e) => return self.fail(code, &format!("bad Use-Path: {e}")),
                };
                let expires = head
                    .header_u32("Expires")
                    .ok()
                    .flatten()
                    .or(self.expires)
                    .unwrap_or(1800);
                self.expires = Some(expires);
                self.granted = Some((sent_at, expires));
                self.attempt = None;
                AuthOutcome::Granted { use_path, expires }
            }
            401 if more => {
                let Some(www) = head.header("WWW-Authenticate").map(str::to_string) else {
                    return self.fail(code, "401 without a challenge");
                };
                let Ok(ch) = auth::Challenge::parse(&www) else {
                    return self.fail(code, "a challenge we cannot read");
                };
                if answered_fresh && !ch.stale {
                    return self.fail(code, "the relay refused the credentials");
                }
                self.challenge = Some(www.clone());
                self.nc = 0;
                let Some(a) = self.answer(&www) else {
                    return self.fail(code, "a challenge we cannot answer");
                };
                AuthOutcome::Send(self.build(sent_at, Some(a), requests + 1, true))
            }
            423 if more => {
                // The relay's bound; when it gives none we can use, or the
                // same value again, ask without Expires and take its choice.
                let bound = head
                    .header_u32("Min-Expires")
                    .ok()
                    .flatten()
                    .or_else(|| head.header_u32("Max-Expires").ok().flatten());
                if bound.is_none() && self.expires.is_none() {
                    return self.fail(code, &comment);
                }
                self.expires = bound.filter(|b| Some(*b) != self.expires);
                let authorization = self.challenge.clone().and_then(|c| self.answer(&c));
                AuthOutcome::Send(self.build(sent_at, authorization, requests + 1, answered_fresh))
            }
            _ => self.fail(code, &comment),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::msrp::session::{Event, SessionConfig, SessionCore};
    use crate::proto::msrp::{ChunkParser, Piece};
    use md5::{Digest, Md5};

    const CHALLENGE: &str = r#"Digest realm="relay.test", nonce="n0nce", qop="auth""#;

    fn head_of(bytes: &[u8]) -> ChunkHead {
        let mut p = ChunkParser::default();
        p.push(bytes);
        match p.next_piece() {
            Ok(Some(Piece::Head { head, defect: None })) => head,
            other => panic!("not a clean head: {other:?}"),
        }
    }

    fn hex(d: impl AsRef<[u8]>) -> String {
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What a relay checks: the digest in `authorization` is right for
    /// `password` and nonce `nonce`; returns the nonce count.
    fn verify(authorization: &str, password: &str, nonce: &str) -> Option<u32> {
        let params = auth::parse_auth_params(authorization.strip_prefix("Digest ")?).ok()?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("nonce")? != nonce {
            return None;
        }
        let ha1 = hex(Md5::digest(format!(
            "{}:relay.test:{password}",
            get("username")?
        )));
        let ha2 = hex(Md5::digest(format!("AUTH:{}", get("uri")?)));
        let (nc, cnonce) = (get("nc")?, get("cnonce")?);
        let want = hex(Md5::digest(format!(
            "{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"
        )));
        (get("response")? == want).then(|| u32::from_str_radix(&nc, 16).ok())?
    }

    fn client(expires: Option<u32>) -> AuthClient {
        AuthClient::new(
            MsrpUri::new(false, "127.0.0.1", 4000, "me1"),
            MsrpUri::parse("msrp://127.0.0.1:2855;tcp").unwrap(),
            "alice",
            "alicepass",
            expires,
            7,
        )
    }

    fn reply(req: &ChunkHead, code: u16, headers: &[(&str, &str)]) -> ChunkHead {
        let mut r = ChunkHead::response(&req.transaction_id, code, Some("x"));
        for (n, v) in headers {
            r.push_header(n, v);
        }
        head_of(&r.to_bytes(b"", ContFlag::End))
    }

    const USE_PATH: (&str, &str) = ("Use-Path", "msrp://127.0.0.1:2855/r1;tcp");

    /// 401, a digest answer, 200: the grant and its renewal time.
    fn granted(c: &mut AuthClient, t0: Instant, expires: &str) {
        let first = head_of(&c.request(t0));
        assert_eq!(first.method(), Some("AUTH"));
        assert!(first.header("Authorization").is_none());
        let AuthOutcome::Send(b) =
            c.handle_response(&reply(&first, 401, &[("WWW-Authenticate", CHALLENGE)]))
        else {
            panic!("no digest answer")
        };
        let second = head_of(&b);
        let a = second.header("Authorization").unwrap();
        assert_eq!(verify(a, "alicepass", "n0nce"), Some(1));
        let out = c.handle_response(&reply(&second, 200, &[USE_PATH, ("Expires", expires)]));
        let AuthOutcome::Granted { use_path, .. } = out else {
            panic!("not granted: {out:?}")
        };
        assert_eq!(use_path.unwrap()[0].session_id.as_deref(), Some("r1"));
    }

    #[test]
    fn digest_then_grant_and_renewal_time() {
        let t0 = Instant::now();
        let mut c = client(None);
        granted(&mut c, t0, "600");
        assert_eq!(c.granted(), Some((t0, 600)));
        assert_eq!(c.renew_at(), Some(t0 + Duration::from_secs(540)));
        // Short grants renew half-way.
        let mut c = client(None);
        granted(&mut c, t0, "4");
        assert_eq!(c.renew_at(), Some(t0 + Duration::from_secs(2)));
        // A response for another transaction is not ours.
        let other = ChunkHead::request("zzzzzz", "AUTH");
        assert_eq!(
            c.handle_response(&reply(&other, 200, &[])),
            AuthOutcome::NotOurs
        );
    }

    #[test]
    fn wrong_password_fails_after_one_answer() {
        let mut c = client(None);
        let first = head_of(&c.request(Instant::now()));
        let ch = [("WWW-Authenticate", CHALLENGE)];
        let AuthOutcome::Send(b) = c.handle_response(&reply(&first, 401, &ch)) else {
            panic!()
        };
        let second = head_of(&b);
        match c.handle_response(&reply(&second, 401, &ch)) {
            AuthOutcome::Failed { code: 401, .. } => {}
            o => panic!("{o:?}"),
        }
        assert!(c.transaction_id().is_none());
    }

    #[test]
    fn interval_too_brief_moves_to_the_bound() {
        let mut c = client(Some(10));
        let first = head_of(&c.request(Instant::now()));
        assert_eq!(first.header("Expires"), Some("10"));
        let AuthOutcome::Send(b) = c.handle_response(&reply(&first, 423, &[("Min-Expires", "60")]))
        else {
            panic!()
        };
        let second = head_of(&b);
        assert_eq!(second.header("Expires"), Some("60"));
        // The same bound again: ask without Expires, take the relay's.
        let AuthOutcome::Send(b) =
            c.handle_response(&reply(&second, 423, &[("Min-Expires", "60")]))
        else {
            panic!()
        };
        let third = head_of(&b);
        assert!(third.header("Expires").is_none());
        let AuthOutcome::Granted { expires, .. } =
            c.handle_response(&reply(&third, 200, &[USE_PATH, ("Expires", "90")]))
        else {
            panic!()
        };
        assert_eq!(expires, 90);
    }

    fn core_with(c: AuthClient) -> SessionCore {
        let me = c.me().clone();
        let relay = MsrpUri::parse("msrp://127.0.0.1:2855/r1;tcp").unwrap();
        let peer = MsrpUri::new(false, "127.0.0.1", 5000, "peer");
        let mut core = SessionCore::new(
            vec![relay, me],
            vec![peer],
            SessionConfig {
                transaction_timeout: Duration::from_secs(30),
                ..SessionConfig::default()
            },
            3,
        );
        core.set_relay_auth(c);
        core
    }

    fn sent_auth(core: &mut SessionCore) -> ChunkHead {
        let h = head_of(&core.poll_transmit().expect("an AUTH"));
        assert_eq!(h.method(), Some("AUTH"));
        assert_eq!(
            h.to_path().unwrap()[0].to_string(),
            "msrp://127.0.0.1:2855;tcp"
        );
        h
    }

    #[test]
    fn the_session_renews_before_expiry_in_virtual_time() {
        let t0 = Instant::now();
        let mut c = client(None);
        granted(&mut c, t0, "600");
        let mut core = core_with(c);
        let renew = t0 + Duration::from_secs(540);
        assert_eq!(core.poll_timeout(), Some(renew));
        core.handle_timeout(renew - Duration::from_secs(1));
        assert!(core.poll_transmit().is_none(), "too early");
        core.handle_timeout(renew);
        // The kept challenge is answered with the next nonce count.
        let auth = sent_auth(&mut core);
        assert_eq!(auth.header("Expires"), Some("600"));
        assert_eq!(
            verify(auth.header("Authorization").unwrap(), "alicepass", "n0nce"),
            Some(2)
        );
        core.handle_head(reply(&auth, 200, &[USE_PATH, ("Expires", "600")]), None);
        assert_eq!(
            core.poll_event(),
            Some(Event::RelayAuthRenewed { expires: 600 })
        );
        assert_eq!(core.relay_grant(), Some((renew, 600)));
        let renew2 = renew + Duration::from_secs(540);
        assert_eq!(core.poll_timeout(), Some(renew2));

        // A stale nonce: answered again with the fresh one.
        core.handle_timeout(renew2);
        let auth = sent_auth(&mut core);
        let stale = r#"Digest realm="relay.test", nonce="fresh", qop="auth", stale=true"#;
        core.handle_head(reply(&auth, 401, &[("WWW-Authenticate", stale)]), None);
        let auth = sent_auth(&mut core);
        assert_eq!(
            verify(auth.header("Authorization").unwrap(), "alicepass", "fresh"),
            Some(1)
        );
        core.handle_head(reply(&auth, 200, &[USE_PATH, ("Expires", "100")]), None);
        assert_eq!(
            core.poll_event(),
            Some(Event::RelayAuthRenewed { expires: 100 })
        );
        // 100 s: renewed at 50 s.
        assert_eq!(core.poll_timeout(), Some(renew2 + Duration::from_secs(50)));
    }

    #[test]
    fn a_failed_renewal_is_reported_and_retried_while_the_grant_lasts() {
        let t0 = Instant::now();
        let mut c = client(None);
        granted(&mut c, t0, "100");
        let mut core = core_with(c);
        let renew = t0 + Duration::from_secs(50);
        core.handle_timeout(renew);
        let auth = sent_auth(&mut core);
        // No answer within the transaction timeout.
        let deadline = renew + Duration::from_secs(30);
        assert_eq!(core.poll_timeout(), Some(deadline));
        core.handle_timeout(deadline);
        assert!(matches!(
            core.poll_event(),
            Some(Event::RelayAuthFailed { code: 408, .. })
        ));
        // A late answer to the dead transaction changes nothing.
        core.handle_head(reply(&auth, 200, &[USE_PATH]), None);
        assert!(core.poll_event().is_none());
        let retry = deadline + AUTH_RETRY_FOR_TESTS;
        assert_eq!(core.poll_timeout(), Some(retry));
        core.handle_timeout(retry);
        let auth = sent_auth(&mut core);
        core.handle_head(reply(&auth, 403, &[]), None);
        assert!(matches!(
            core.poll_event(),
            Some(Event::RelayAuthFailed { code: 403, .. })
        ));
        // 85 + 5 = 90 < 100: once more; after that the grant is over.
        let retry = retry + AUTH_RETRY_FOR_TESTS;
        assert_eq!(core.poll_timeout(), Some(retry));
        core.handle_timeout(retry);
        let auth = sent_auth(&mut core);
        core.handle_head(reply(&auth, 500, &[]), None);
        assert!(matches!(
            core.poll_event(),
            Some(Event::RelayAuthFailed { code: 500, .. })
        ));
        let retry = retry + AUTH_RETRY_FOR_TESTS;
        assert_eq!(core.poll_timeout(), Some(retry));
        core.handle_timeout(retry);
        let auth = sent_auth(&mut core);
        core.handle_head(reply(&auth, 500, &[]), None);
        core.poll_event();
        assert_eq!(core.poll_timeout(), None, "no retry past the grant");
    }

    const AUTH_RETRY_FOR_TESTS: Duration = Duration::from_secs(5);
}
