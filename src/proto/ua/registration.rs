//! Registration of one account (RFC 3261 10, RFC 5626 for the instance
//! id), sans-IO: REGISTER with digest authentication, 423 Min-Expires,
//! refresh before expiry, failover along the routes the driver resolved
//! (RFC 3263), backoff after failures, and unregistration.
//!
//! The driver gives the routes (`set_routes`), sends what `poll_action`
//! asks for to the route named there, reports outcomes with
//! `handle_response`, and fires `handle_timeout`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::proto::sip::auth::{Credentials, DigestClient};
use crate::proto::sip::values::parse_name_addr;
use crate::proto::sip::{HeaderName, SipMessage, Uri};

use super::session::{Outcome, ReqId};
use super::splitmix;

/// What registering needs to know.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The address of record, e.g. `sip:alice@example.com`.
    pub aor: Uri,
    /// The registrar's Request-URI, e.g. `sip:example.com`.
    pub registrar: Uri,
    pub display_name: Option<String>,
    pub user_agent: String,
    pub expires: u32,
    pub credentials: Option<Credentials>,
    /// RFC 5626 `+sip.instance` (a `urn:uuid:`), and `reg-id`.
    pub instance_id: Option<String>,
    pub reg_id: Option<u32>,
    /// Outbound proxy, as a Route value, if any.
    pub route: Option<String>,
    /// Backoff after a failure with no further route: base, doubling to max.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub seed: u64,
}

/// One route to the registrar (the driver knows what it means).
pub type RouteIndex = usize;

/// How we appear on one route: the Via sent-by part
/// (`SIP/2.0/UDP 192.0.2.1:5060`) and our Contact URI there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    pub via: String,
    pub contact: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationEvent {
    Succeeded {
        code: u16,
        reason: String,
        contact: String,
        /// Every contact the registrar has for the AOR.
        contacts: Vec<String>,
        expires: u32,
    },
    Failed {
        code: u16,
        reason: String,
        /// The route tried next (None: all failed, a new lookup follows).
        next_route: Option<RouteIndex>,
        /// Seconds until the next attempt.
        delay: f64,
    },
    /// Unregistered (code None when no REGISTER was needed or none came back).
    Ended { code: Option<u16>, reason: String },
}

#[derive(Debug, Clone)]
pub enum RegistrationAction {
    Send {
        id: ReqId,
        request: SipMessage,
        route: RouteIndex,
    },
    /// Resolve the registrar again (all routes failed or none known).
    Lookup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    Idle,
    Registering,
    Registered,
    Waiting,
    Unregistering,
    Ended,
}

pub struct Registration {
    cfg: RegistrationConfig,
    state: RegState,
    auth: DigestClient,
    call_id: String,
    from_tag: String,
    cseq: u32,
    rng: u64,
    routes: Vec<LocalAddress>,
    route: RouteIndex,
    pending: Option<(ReqId, SipMessage)>,
    auth_tries: u32,
    next_id: u64,
    failures: u32,
    /// The Retry-After of the last failure, if it had one.
    retry_after: Option<Duration>,
    expires_asked: u32,
    registered: bool,
    timer: Option<Instant>,
    actions: VecDeque<RegistrationAction>,
    events: VecDeque<RegistrationEvent>,
}

impl Registration {
    pub fn new(cfg: RegistrationConfig) -> Registration {
        let mut rng = cfg.seed;
        let call_id = format!("{:016x}{:016x}", splitmix(&mut rng), splitmix(&mut rng));
        let from_tag = format!("{:016x}", splitmix(&mut rng));
        let auth = DigestClient::new(cfg.credentials.clone().into_iter().collect());
        let expires_asked = cfg.expires;
        Registration {
            cfg,
            state: RegState::Idle,
            auth,
            call_id,
            from_tag,
            cseq: 0,
            rng,
            routes: Vec::new(),
            route: 0,
            pending: None,
            auth_tries: 0,
            next_id: 1,
            failures: 0,
            retry_after: None,
            expires_asked,
            registered: false,
            timer: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> RegState {
        self.state
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    pub fn poll_action(&mut self) -> Option<RegistrationAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    pub fn current_route(&self) -> RouteIndex {
        self.route
    }

    /// Register (or re-register at once, e.g. after a network change).
    pub fn start(&mut self, now: Instant) {
        if matches!(self.state, RegState::Unregistering | RegState::Ended) {
            return;
        }
        self.timer = None;
        if self.routes.is_empty() {
            self.state = RegState::Registering;
            self.actions.push_back(RegistrationAction::Lookup);
            return;
        }
        self.send_register(now, self.expires_asked);
    }

    /// The routes the driver resolved for the registrar, with our address
    /// on each; registration starts on the first.
    pub fn set_routes(&mut self, now: Instant, routes: Vec<LocalAddress>) {
        self.routes = routes;
        self.route = 0;
        if self.routes.is_empty() {
            self.fail(now, 0, "no route to the registrar".into(), false);
            return;
        }
        if matches!(self.state, RegState::Registering | RegState::Idle) {
            self.send_register(now, self.expires_asked);
        }
    }

    /// DNS failed: treat as a failure with backoff.
    pub fn lookup_failed(&mut self, now: Instant, reason: String) {
        self.fail(now, 0, reason, false);
    }

    /// Unregister (Expires: 0) if registered; Ended follows.
    pub fn stop(&mut self, now: Instant) {
        self.timer = None;
        match self.state {
            RegState::Ended | RegState::Unregistering => {}
            _ if self.registered && !self.routes.is_empty() => {
                self.state = RegState::Unregistering;
                self.send_register(now, 0);
            }
            _ => {
                self.pending = None;
                self.state = RegState::Ended;
                self.events.push_back(RegistrationEvent::Ended {
                    code: None,
                    reason: "not registered".into(),
                });
            }
        }
    }

    fn local(&self) -> LocalAddress {
        self.routes
            .get(self.route)
            .cloned()
            .unwrap_or(LocalAddress {
                via: "SIP/2.0/UDP 0.0.0.0:5060".into(),
                contact: "sip:0.0.0.0".into(),
            })
    }

    /// Our Contact URI on the current route.
    pub fn contact(&self) -> String {
        self.local().contact
    }

    fn via(&mut self) -> String {
        format!(
            "{};branch=z9hG4bK{:016x};rport",
            self.local().via,
            splitmix(&mut self.rng)
        )
    }

    fn send_register(&mut self, _now: Instant, expires: u32) {
        let Ok(mut m) = SipMessage::request("REGISTER", &self.cfg.registrar) else {
            return;
        };
        self.cseq += 1;
        let via = self.via();
        let aor = self.cfg.aor.to_string();
        let who = match &self.cfg.display_name {
            Some(d) => format!("\"{d}\" <{aor}>"),
            None => format!("<{aor}>"),
        };
        let mut contact = format!("<{}>", self.local().contact);
        if let Some(i) = &self.cfg.instance_id {
            contact.push_str(&format!(";+sip.instance=\"<{i}>\""));
            if let Some(r) = self.cfg.reg_id {
                contact.push_str(&format!(";reg-id={r}"));
            }
        }
        let headers: Vec<(&str, String)> = vec![
            ("Via", via),
            ("Max-Forwards", "70".into()),
            ("From", format!("{who};tag={}", self.from_tag)),
            ("To", who.clone()),
            ("Call-ID", self.call_id.clone()),
            ("CSeq", format!("{} REGISTER", self.cseq)),
            ("Contact", contact),
            ("Expires", expires.to_string()),
            ("Supported", "path, outbound, gruu".into()),
            ("User-Agent", self.cfg.user_agent.clone()),
        ];
        for (n, v) in headers {
            if m.push_header(n, &v).is_err() {
                return;
            }
        }
        if let Some(r) = &self.cfg.route {
            if m.push_header("Route", r).is_err() {
                return;
            }
        }
        // Pre-emptive authorization with what the last challenge taught.
        let mut cn = || format!("{:016x}", splitmix(&mut self.rng));
        let _ = self.auth.authorize(&mut m, &mut cn);
        let id = ReqId(self.next_id);
        self.next_id += 1;
        if self.state != RegState::Unregistering {
            self.state = RegState::Registering;
        }
        self.pending = Some((id, m.clone()));
        self.actions.push_back(RegistrationAction::Send {
            id,
            request: m,
            route: self.route,
        });
    }

    pub fn handle_response(&mut self, now: Instant, id: ReqId, outcome: Outcome) {
        let Some((pid, req)) = self.pending.clone() else {
            return;
        };
        if pid != id {
            return;
        }
        let resp = match outcome {
            Outcome::Failed { code, reason } => {
                self.pending = None;
                self.auth_tries = 0;
                if self.state == RegState::Unregistering {
                    return self.ended(None, reason);
                }
                // A transport failure or timeout: the next route.
                return self.fail(now, code, reason, true);
            }
            Outcome::Response(r) => r,
        };
        let (code, reason) = match resp.status() {
            Some((c, r)) => (c, r.to_string()),
            None => return,
        };
        if code < 200 {
            return;
        }
        self.pending = None;
        match code {
            200..=299 => {
                self.auth_tries = 0;
                self.failures = 0;
                if self.state == RegState::Unregistering {
                    return self.ended(Some(code), reason);
                }
                let (expires, contacts) = self.granted(&resp);
                if expires == 0 {
                    // The registrar kept nothing for us.
                    return self.fail(now, code, "registrar granted no expiry".into(), false);
                }
                self.registered = true;
                self.state = RegState::Registered;
                // Refresh ahead of expiry: half way for short ones, a
                // minute before for long ones.
                let e = expires as f64;
                let refresh = (e / 2.0).max(e - 60.0);
                self.timer = Some(now + Duration::from_secs_f64(refresh));
                self.events.push_back(RegistrationEvent::Succeeded {
                    code,
                    reason,
                    contact: self.local().contact,
                    contacts,
                    expires,
                });
            }
            401 | 407 => {
                self.auth_tries += 1;
                let mut retry = req;
                let mut cn = || format!("{:016x}", splitmix(&mut self.rng));
                let answerable = self.auth_tries <= 2
                    && self
                        .auth
                        .handle_challenge(&resp, &mut retry, &mut cn)
                        .is_ok();
                if !answerable {
                    self.auth_tries = 0;
                    if self.state == RegState::Unregistering {
                        return self.ended(Some(code), reason);
                    }
                    // Wrong credentials: no tight loop, a growing delay.
                    return self.fail(now, code, reason, false);
                }
                self.resend(retry);
            }
            423 => {
                let min = resp
                    .header(HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|m| *m > self.expires_asked);
                match min {
                    Some(m) if self.state != RegState::Unregistering => {
                        self.expires_asked = m;
                        let expires = m;
                        self.send_register(now, expires);
                    }
                    _ => self.fail(now, code, reason, false),
                }
            }
            _ => {
                self.auth_tries = 0;
                if self.state == RegState::Unregistering {
                    return self.ended(Some(code), reason);
                }
                // 5xx and 6xx may go better elsewhere; 4xx will not.
                let other_route = code >= 500;
                // A server that says when to come back (RFC 3261 20.33)
                // is believed when no other route is left.
                self.retry_after = resp
                    .header(HeaderName::RetryAfter)
                    .and_then(|v| {
                        let digits: String = v
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_digit())
                            .collect();
                        digits.parse::<u64>().ok()
                    })
                    .map(|s| Duration::from_secs(s.clamp(1, 86_400)));
                self.fail(now, code, reason, other_route);
            }
        }
    }

    /// Send `req` again with a new CSeq and branch (after a challenge).
    fn resend(&mut self, mut req: SipMessage) {
        self.cseq += 1;
        let via = self.via();
        let _ = req.set_header(HeaderName::Via, &via);
        let _ = req.set_header(HeaderName::CSeq, &format!("{} REGISTER", self.cseq));
        let id = ReqId(self.next_id);
        self.next_id += 1;
        self.pending = Some((id, req.clone()));
        self.actions.push_back(RegistrationAction::Send {
            id,
            request: req,
            route: self.route,
        });
    }

    /// Our contact's expiry from the 2xx (its Contact parameter, else the
    /// Expires header, else what we asked), and every contact listed.
    fn granted(&self, resp: &SipMessage) -> (u32, Vec<String>) {
        let ours = Uri::parse(&self.local().contact).ok();
        let mut mine = None;
        let mut all = Vec::new();
        for item in resp.header_items(HeaderName::Contact) {
            let Ok(na) = parse_name_addr(item) else {
                continue;
            };
            all.push(na.uri.to_string());
            let same = ours.as_ref().is_some_and(|o| *o == na.uri);
            if same {
                mine = na
                    .params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("expires"))
                    .and_then(|(_, v)| v.as_deref()?.parse::<u32>().ok());
            }
        }
        let header = resp
            .header(HeaderName::Expires)
            .and_then(|v| v.trim().parse::<u32>().ok());
        let expires = mine.or(header).unwrap_or(self.expires_asked);
        (expires, all)
    }

    fn backoff(&mut self) -> Duration {
        let exp = self.failures.min(16);
        let base = self.cfg.retry_base.as_secs_f64() * 2f64.powi(exp as i32);
        let capped = base.min(self.cfg.retry_max.as_secs_f64());
        // 80-100 % of it, so many clients do not retry in step.
        let jitter = 0.8 + (splitmix(&mut self.rng) % 1000) as f64 / 5000.0;
        Duration::from_secs_f64(capped * jitter)
    }

    fn fail(&mut self, now: Instant, code: u16, reason: String, try_next_route: bool) {
        self.registered = false;
        self.pending = None;
        let next = (try_next_route && self.route + 1 < self.routes.len()).then(|| self.route + 1);
        let delay = match next {
            Some(r) => {
                self.route = r;
                Duration::ZERO
            }
            None => {
                self.failures += 1;
                self.route = 0;
                let backoff = self.backoff();
                self.retry_after.take().unwrap_or(backoff)
            }
        };
        self.retry_after = None;
        self.state = RegState::Waiting;
        self.timer = Some(now + delay);
        self.events.push_back(RegistrationEvent::Failed {
            code,
            reason,
            next_route: next,
            delay: delay.as_secs_f64(),
        });
    }

    fn ended(&mut self, code: Option<u16>, reason: String) {
        self.registered = false;
        self.state = RegState::Ended;
        self.timer = None;
        self.events
            .push_back(RegistrationEvent::Ended { code, reason });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(t) = self.timer else { return };
        if t > now {
            return;
        }
        self.timer = None;
        match self.state {
            RegState::Registered => self.send_register(now, self.expires_asked),
            RegState::Waiting => {
                if self.route == 0 && self.failures > 0 {
                    // Every route failed: look the registrar up again.
                    self.state = RegState::Registering;
                    self.actions.push_back(RegistrationAction::Lookup);
                } else {
                    self.send_register(now, self.expires_asked);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
