//! Pager-mode instant messages (RFC 3428): SIP MESSAGE sent through an
//! account, and MESSAGE requests received outside any dialog.
//!
//! | notification | sender | data |
//! |---|---|---|
//! | SIPMessageDidSucceed | the message | `message_id`, `code`, `reason`, `to` |
//! | SIPMessageDidFail | the message | `message_id`, `code`, `reason`, `to` |
//! | SIPEngineGotMessage | the engine | `from`, `to`, `request_uri`, `content_type`, `content`, `cpim_headers`, `account` |
//!
//! Every message [`SessionManager::send_message`] accepts ends in exactly
//! one of SIPMessageDidSucceed (a 2xx) or SIPMessageDidFail (any other
//! final response, 408 on timeout, 503 when no route or transport works).
//!
//! Incoming: text/* (UTF-8), message/cpim around those, and
//! application/im-iscomposing+xml are taken (200); other types get 415,
//! a broken CPIM envelope or bad UTF-8 gets 400 with the reason.

use std::time::SystemTime;

use serde_json::Value;

use super::account::Account;
use super::error::{Error, Result};
use super::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use super::session::{local_host_port, resolve, route_value, SessionEnv, SessionManager};
use crate::driver::engine::{ClientEvent, Engine};
use crate::proto::cpim::{format_datetime, CpimAddress, CpimMessage};
use crate::proto::msrp::session::media_type_accepted;
use crate::proto::sip::screen::build_response;
use crate::proto::sip::transaction::{Peer, TxKey};
use crate::proto::sip::{SipMessage, Uri};
use crate::proto::ua::pager::{check_message, PagerConfig, PagerOutcome, PagerRequest};

pub const DID_SUCCEED: &str = "SIPMessageDidSucceed";
pub const DID_FAIL: &str = "SIPMessageDidFail";
pub const GOT_MESSAGE: &str = "SIPEngineGotMessage";

fn post(sender: &Sender, name: &str, data: NotificationData) {
    NotificationCenter::default().post_notification(name, sender, data);
}

impl SessionManager {
    /// Send `content` to `to` in a SIP MESSAGE from `account` (through its
    /// `sip.outbound_proxy` when set), wrapped in CPIM when `cpim` is true.
    /// Returns the message id that SIPMessageDidSucceed or
    /// SIPMessageDidFail carries.
    pub fn send_message(
        &self,
        account: &Account,
        to: &str,
        content: &[u8],
        content_type: &str,
        cpim: bool,
    ) -> Result<String> {
        let target = Uri::parse(to.trim().trim_start_matches('<').trim_end_matches('>'))
            .map_err(|e| Error::InvalidArgument(format!("{to:?} is not a SIP URI: {e}")))?;
        if target.as_sip().is_none() {
            return Err(Error::InvalidArgument(format!(
                "{to:?} is not a sip: or sips: URI"
            )));
        }
        let proxy = account.outbound_proxy()?;
        let env = self.env().clone();
        let account = account.clone();
        let sender = Sender {
            id: ObjectId::new(),
            kind: "Message",
        };
        let message_id = format!("{:x}", sender.id.0) + &crate::driver::ids::random_hex(8);
        let (content_type, body) = if cpim {
            let from = CpimAddress::new(account.display_name().as_deref(), &account.uri());
            let to_addr = CpimAddress::new(None, &target.to_string());
            let now = format_datetime(SystemTime::now());
            let m = CpimMessage::new(&from, &to_addr, Some(&now), content_type, content.to_vec());
            ("message/cpim".to_string(), m.to_bytes())
        } else {
            (content_type.to_string(), content.to_vec())
        };
        // Checked now, so a bad call is an error and not a notification.
        check_message(&content_type, &body).map_err(Error::InvalidArgument)?;
        let id = message_id.clone();
        let to_text = target.to_string();
        env.runtime.clone().spawn(async move {
            let outcome = deliver(&env, &account, target, proxy, &content_type, body).await;
            let (name, code, reason) = match outcome {
                PagerOutcome::Delivered { code, reason } => (DID_SUCCEED, code, reason),
                PagerOutcome::Failed { code, reason } => (DID_FAIL, code, reason),
            };
            post(
                &sender,
                name,
                NotificationData::new()
                    .with("message_id", id)
                    .with("code", code)
                    .with("reason", reason)
                    .with("to", to_text),
            );
        });
        Ok(message_id)
    }
}

async fn deliver(
    env: &SessionEnv,
    account: &Account,
    target: Uri,
    proxy: Option<Uri>,
    content_type: &str,
    body: Vec<u8>,
) -> PagerOutcome {
    let hop = proxy.clone().unwrap_or_else(|| target.clone());
    let peer = match resolve(env, &hop).await {
        Ok(p) => p,
        Err(e) => {
            return PagerOutcome::Failed {
                code: 503,
                reason: format!("no route to {hop}: {e}"),
            }
        }
    };
    let hp = local_host_port(&env.engine, peer.addr.ip(), peer.transport);
    let cfg = PagerConfig {
        from: account.identity(&hp),
        to: format!("<{target}>"),
        target,
        via: format!("SIP/2.0/{} {hp}", peer.transport.as_str()),
        route: proxy.as_ref().map(route_value),
        user_agent: env.user_agent.clone(),
        credentials: account.credentials(),
        seed: crate::driver::ids::random_u64(),
    };
    let mut p = match PagerRequest::new(cfg, content_type, body) {
        Ok(p) => p,
        Err(e) => {
            return PagerOutcome::Failed {
                code: 400,
                reason: e,
            }
        }
    };
    let mut req = match p.request() {
        Ok(r) => r,
        Err(e) => {
            return PagerOutcome::Failed {
                code: 500,
                reason: e,
            }
        }
    };
    loop {
        match final_response(&env.engine, req, peer).await {
            Ok(resp) => match p.handle_response(&resp) {
                Ok(next) => req = next,
                Err(outcome) => return outcome,
            },
            Err(outcome) => return outcome,
        }
    }
}

async fn final_response(
    engine: &Engine,
    req: SipMessage,
    peer: Peer,
) -> std::result::Result<SipMessage, PagerOutcome> {
    let mut rx = engine.send_request(req, peer);
    while let Some(ev) = rx.recv().await {
        match ev {
            ClientEvent::Response(r) if r.status().is_some_and(|(c, _)| c >= 200) => return Ok(r),
            ClientEvent::Response(_) => {}
            ClientEvent::Timeout => {
                return Err(PagerOutcome::Failed {
                    code: 408,
                    reason: "Request Timeout".into(),
                })
            }
            ClientEvent::TransportError => {
                return Err(PagerOutcome::Failed {
                    code: 503,
                    reason: "transport error".into(),
                })
            }
            ClientEvent::Rejected(e) => {
                return Err(PagerOutcome::Failed {
                    code: 503,
                    reason: e.to_string(),
                })
            }
        }
    }
    Err(PagerOutcome::Failed {
        code: 503,
        reason: "the transaction ended without a final response".into(),
    })
}

/// What pager mode takes: text, CPIM around text, is-composing.
fn pager_types() -> Vec<String> {
    vec![
        "text/*".into(),
        crate::api::im::CPIM.into(),
        crate::proto::iscomposing::CONTENT_TYPE.into(),
    ]
}

/// What an incoming MESSAGE carries, or why it is refused.
fn read_incoming(req: &SipMessage) -> std::result::Result<NotificationData, (u16, String)> {
    let ct = req
        .header_by_name("Content-Type")
        .map(str::trim)
        .unwrap_or("text/plain");
    let types = pager_types();
    if !media_type_accepted(&types, ct) {
        return Err((415, format!("{ct} is not accepted")));
    }
    let wrapped = [types[0].clone(), types[2].clone()];
    let m = crate::api::im::read(ct, req.body().to_vec(), &wrapped)?;
    Ok(NotificationData::new()
        .with("from", req.header_by_name("From").unwrap_or("").to_string())
        .with("to", req.header_by_name("To").unwrap_or("").to_string())
        .with(
            "request_uri",
            req.request_uri().map(|u| u.to_string()).unwrap_or_default(),
        )
        .with("content", m.content_value())
        .with("cpim_headers", m.cpim_headers_value())
        .with("content_type", m.content_type))
}

/// A MESSAGE outside any dialog: answer it and tell the application.
pub(crate) fn incoming(env: &SessionEnv, engine_sender: &Sender, key: TxKey, req: SipMessage) {
    let tag = crate::driver::ids::new_tag();
    let (code, reason, data) = match read_incoming(&req) {
        Ok(d) => (200, "OK".to_string(), Some(d)),
        Err((c, r)) => (c, r, None),
    };
    if let Ok(mut r) = build_response(&req, code, &reason, Some(&tag)) {
        if code == 415 {
            let _ = r.push_header(
                "Accept",
                "text/plain, message/cpim, application/im-iscomposing+xml",
            );
        }
        env.engine.respond(key, r);
    }
    match data {
        Some(d) => {
            // The account incoming sessions are given takes messages too.
            let account = env
                .table
                .default_account_slot()
                .lock()
                .as_ref()
                .map(|a| Value::from(a.id()))
                .unwrap_or(Value::Null);
            post(engine_sender, GOT_MESSAGE, d.with("account", account));
        }
        None => tracing::warn!(target: "sipsimple::message", "refused a MESSAGE: {code} {reason}"),
    }
}
