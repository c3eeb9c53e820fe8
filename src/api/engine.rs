//! The SIP engine as a SIPApplication subsystem: transports bound from the
//! settings, SIP trace notifications, counters, and the UA core's default
//! answers for requests no higher layer has claimed yet.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::application::{AppContext, Subsystem};
use super::error::{Error, Result};
use super::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use super::session::{self, Input, SessionEnv, SessionTable};
use crate::driver::engine::{
    Direction, Engine, EngineConfig, EngineEvent, EngineStats, StartError,
};
use crate::driver::ids::new_tag;
use crate::driver::tls::TlsSettings;
use crate::driver::waiter::Waiter;
use crate::proto::sip::dialog::{Dialogs, Routing};
use crate::proto::sip::screen::{build_rejection, build_response, screen_request, Capabilities};
use crate::proto::sip::transaction::{TimerConfig, TransportKind};
use crate::proto::sip::SipMessage;

/// The notification carrying every SIP message sent or received while
/// `logs.trace_sip` is on.
pub const SIP_TRACE: &str = "SIPEngineSIPTrace";

/// A setting by dotted name, flat or nested (the settings module's reader).
pub(crate) use super::settings::lookup as setting;

fn port_setting(cfg: &Map<String, Value>, path: &str) -> Result<u16> {
    match setting(cfg, path) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{path} must be a port number, not {v}"))
            }),
    }
}

/// A whole-number setting within `range`, `default` when unset.
pub(crate) fn number_setting(
    cfg: &Map<String, Value>,
    path: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64> {
    match setting(cfg, path) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{path} must be a whole number from {} to {}, not {v}",
                range.start(),
                range.end()
            ))
        }),
    }
}

pub(crate) fn bool_setting(cfg: &Map<String, Value>, path: &str, default: bool) -> Result<bool> {
    match setting(cfg, path) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(Error::InvalidArgument(format!(
            "{path} must be true or false, not {v}"
        ))),
    }
}

/// `dns.nameservers`: the servers to ask instead of the system's (each
/// `ip` or `ip:port`, port 53 by default). The cell stays empty, and the
/// system resolver is made on first use, when the list is empty.
fn dns_setting(
    cfg: &Map<String, Value>,
    rt: &tokio::runtime::Handle,
) -> Result<once_cell::sync::OnceCell<crate::driver::dns::DNSLookup>> {
    let cell = once_cell::sync::OnceCell::new();
    let list = match setting(cfg, "dns.nameservers") {
        None | Some(Value::Null) => return Ok(cell),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => {
            return Err(Error::InvalidArgument(format!(
                "dns.nameservers must be a list of addresses, not {v}"
            )))
        }
    };
    let mut servers = Vec::new();
    for v in &list {
        let text = v.as_str().unwrap_or_default();
        let addr = text
            .parse::<std::net::SocketAddr>()
            .or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| std::net::SocketAddr::new(ip, 53))
            })
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "dns.nameservers: {v} is not an IP address or IP:port"
                ))
            })?;
        servers.push(addr);
    }
    if servers.is_empty() {
        return Ok(cell);
    }
    let _in_runtime = rt.enter();
    let dns = crate::driver::dns::DNSLookup::with_nameservers(&servers)
        .map_err(|e| Error::InvalidArgument(format!("dns.nameservers: {e}")))?;
    let _ = cell.set(dns);
    Ok(cell)
}

/// `sip.timer_t1`, `sip.timer_t2`, `sip.timer_t4` in milliseconds (RFC 3261
/// table 4; defaults 500, 4000, 5000). A smaller T1 suits a LAN or tests; every
/// transaction timeout scales with it.
fn timer_config(cfg: &Map<String, Value>) -> Result<TimerConfig> {
    let ms = |path: &str, default: u64, min: u64| -> Result<Duration> {
        match setting(cfg, path) {
            None | Some(Value::Null) => Ok(Duration::from_millis(default)),
            Some(v) => v
                .as_u64()
                .filter(|n| (min..=600_000).contains(n))
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{path} must be milliseconds between {min} and 600000, not {v}"
                    ))
                }),
        }
    };
    let t = TimerConfig {
        t1: ms("sip.timer_t1", 500, 10)?,
        t2: ms("sip.timer_t2", 4000, 10)?,
        t4: ms("sip.timer_t4", 5000, 10)?,
    };
    if t.t2 < t.t1 {
        return Err(Error::InvalidArgument(
            "sip.timer_t2 must not be below sip.timer_t1".into(),
        ));
    }
    Ok(t)
}

/// Engine settings from the configuration document.
/// The TLS policy from the settings (`tls.ca_list`, `tls.certificate`,
/// `tls.verify_server`): SIP over TLS and msrps share it.
pub(crate) fn tls_settings(cfg: &Map<String, Value>) -> Result<TlsSettings> {
    let path = |name: &str| -> Result<Option<std::path::PathBuf>> {
        match setting(cfg, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.into())),
            Some(v) => Err(Error::InvalidArgument(format!(
                "{name} must be a file path, not {v}"
            ))),
        }
    };
    Ok(TlsSettings {
        ca_file: path("tls.ca_list")?,
        certificate_file: path("tls.certificate")?,
        verify_server: bool_setting(cfg, "tls.verify_server", true)?,
        use_system_roots: true,
    })
}

pub(crate) fn engine_config(cfg: &Map<String, Value>) -> Result<(EngineConfig, bool)> {
    let transports: Vec<String> = match setting(cfg, "sip.transport_list") {
        None | Some(Value::Null) => vec!["udp".into(), "tcp".into()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_ascii_lowercase)
                    .filter(|t| t == "udp" || t == "tcp" || t == "tls")
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "sip.transport_list: {t} is not a supported transport (udp, tcp, tls)"
                        ))
                    })
            })
            .collect::<Result<_>>()?,
        Some(v) => {
            return Err(Error::InvalidArgument(format!(
                "sip.transport_list must be a list, not {v}"
            )))
        }
    };
    let any = |port| Some(SocketAddr::from(([0, 0, 0, 0], port)));
    let udp_port = port_setting(cfg, "sip.udp_port")?;
    let tcp_port = port_setting(cfg, "sip.tcp_port")?;
    let tls_port = port_setting(cfg, "sip.tls_port")?;
    let tls_settings = tls_settings(cfg)?;
    // TLS is listened on only when it is listed and we have a certificate;
    // outgoing TLS needs neither.
    let listen_tls =
        transports.iter().any(|t| t == "tls") && tls_settings.certificate_file.is_some();
    let trace = bool_setting(cfg, "logs.trace_sip", false)?;
    let timers = timer_config(cfg)?;
    let max_transactions = match setting(cfg, "sip.max_transactions") {
        None | Some(Value::Null) => EngineConfig::default().max_transactions,
        Some(v) => v
            .as_u64()
            .filter(|n| (16..=10_000_000).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "sip.max_transactions must be between 16 and 10000000, not {v}"
                ))
            })?,
    };
    let config = EngineConfig {
        udp: transports
            .iter()
            .any(|t| t == "udp")
            .then(|| any(udp_port))
            .flatten(),
        tcp: transports
            .iter()
            .any(|t| t == "tcp")
            .then(|| any(tcp_port))
            .flatten(),
        tls: listen_tls.then(|| any(tls_port)).flatten(),
        tls_settings,
        trace,
        timers,
        max_transactions,
        ..EngineConfig::default()
    };
    Ok((config, trace))
}

/// How long stop() waits for sessions to end before closing transports.
const SESSION_END_TIMEOUT: Duration = Duration::from_secs(3);

fn user_agent(cfg: &Map<String, Value>) -> String {
    setting(cfg, "user_agent")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.contains(['\r', '\n']))
        .map(str::to_string)
        .unwrap_or_else(|| concat!("sipsimple/", env!("CARGO_PKG_VERSION")).to_string())
}

/// `sip.session_timer`: false turns our own timer off; `sip.session_expires`
/// and `sip.min_se` set the intervals (RFC 4028).
fn session_timers(
    cfg: &Map<String, Value>,
) -> Result<Option<crate::proto::ua::session::SessionTimers>> {
    if !bool_setting(cfg, "sip.session_timer", true)? {
        return Ok(None);
    }
    let num = |path: &str, default: u32| -> Result<u32> {
        match setting(cfg, path) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 90)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{path} must be a number of seconds >= 90, not {v}"
                    ))
                }),
        }
    };
    let interval = num("sip.session_expires", 1800)?;
    let min_se = num("sip.min_se", 90)?;
    if min_se > interval {
        return Err(Error::InvalidArgument(
            "sip.min_se must not exceed sip.session_expires".into(),
        ));
    }
    Ok(Some(crate::proto::ua::session::SessionTimers {
        interval,
        min_se,
        refresh_with_update: true,
    }))
}

/// The running engine as the application sees it.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    pub engine: Engine,
    pub trace: Arc<AtomicBool>,
    pub sender: Sender,
    pub sessions: SessionEnv,
}

impl EngineHandle {
    pub fn set_trace(&self, on: bool) {
        self.trace.store(on, Ordering::Relaxed);
        self.engine.set_trace(on);
    }
    pub fn stats(&self) -> EngineStats {
        self.engine.stats()
    }
    pub fn local_address(&self, t: TransportKind) -> Option<SocketAddr> {
        self.engine.local_addr(t)
    }
}

/// Binds the SIP transports on the runtime thread.
pub(crate) struct EngineSubsystem;

impl Subsystem for EngineSubsystem {
    fn name(&self) -> &'static str {
        "sip engine"
    }

    fn start(&mut self, ctx: &mut AppContext) -> Result<()> {
        let rt = ctx
            .runtime
            .as_ref()
            .ok_or_else(|| Error::InvalidState("the runtime thread is not running".into()))?;
        let (mut config, trace_on) = engine_config(&ctx.configuration)?;
        let t1 = config.timers.t1;
        let trace = Arc::new(AtomicBool::new(trace_on));
        let sender = Sender {
            id: ObjectId::new(),
            kind: "Engine",
        };
        // Traces are posted on the runtime thread as the engine sends or
        // receives, so an observer has each one before the peer can answer.
        let (t, s) = (trace.clone(), sender.clone());
        config.trace_sink = Some(crate::driver::engine::TraceSink(Arc::new(move |w| {
            if t.load(Ordering::Relaxed) {
                NotificationCenter::default().post_notification(SIP_TRACE, &s, trace_data(&w));
            }
        })));
        let (tx, rx) = mpsc::unbounded_channel();
        let started = Waiter::new();
        let put = started.clone();
        rt.handle().spawn(async move {
            put.put(Engine::start(config, tx).await);
        });
        let engine = started
            // Local work only (binding sockets, TLS set-up), but a machine
            // under load (or valgrind) can take seconds.
            .wait(Duration::from_secs(30))
            .ok_or_else(|| Error::Internal("the SIP engine did not start in time".into()))?
            .map_err(|e| match e {
                StartError::Bind {
                    transport,
                    addr,
                    source,
                } => Error::io(format!("cannot listen on {transport} {addr}"), source),
                StartError::Tls(t) => Error::InvalidArgument(t.to_string()),
            })?;
        let handle = EngineHandle {
            engine: engine.clone(),
            trace,
            sender,
            sessions: SessionEnv {
                engine: engine.clone(),
                runtime: rt.handle().clone(),
                table: Arc::new(SessionTable::default()),
                user_agent: user_agent(&ctx.configuration),
                timers: session_timers(&ctx.configuration)?,
                rel100: bool_setting(&ctx.configuration, "sip.enable_100rel", true)?,
                t1,
                dns: Arc::new(dns_setting(&ctx.configuration, rt.handle())?),
                msrp_tls: Default::default(),
                settings: ctx.settings.clone().ok_or_else(|| {
                    Error::InvalidState("the configuration was not loaded".into())
                })?,
            },
        };
        rt.handle().spawn(ua_core(handle.clone(), rx));
        ctx.engine = Some(handle);
        Ok(())
    }

    fn stop(&mut self, ctx: &mut AppContext) {
        if let Some(h) = ctx.engine.take() {
            // Sessions end first, each with its BYE or CANCEL answered or
            // given up on, before the transports close.
            session::SessionManager::new(h.sessions.clone()).end_all(SESSION_END_TIMEOUT);
            h.engine.stop();
        }
    }
}

fn trace_data(t: &crate::driver::engine::WireTrace) -> NotificationData {
    let (src, dst) = match t.direction {
        Direction::Incoming => (Some(t.peer.addr), t.local),
        Direction::Outgoing => (t.local, Some(t.peer.addr)),
    };
    let ip = |a: Option<SocketAddr>| a.map(|a| a.ip().to_string()).unwrap_or_default();
    let port = |a: Option<SocketAddr>| a.map(|a| a.port()).unwrap_or(0);
    NotificationData::new()
        .with("received", t.direction == Direction::Incoming)
        .with("transport", t.peer.transport.as_str().to_ascii_lowercase())
        .with("source_ip", ip(src))
        .with("source_port", port(src))
        .with("destination_ip", ip(dst))
        .with("destination_port", port(dst))
        .with("data", String::from_utf8_lossy(&t.data).into_owned())
}

/// The answer for a request nothing above has taken: the RFC 3261 8.2
/// screening, 481 for a dialog we do not have, 200 to OPTIONS (with Allow,
/// Accept and Supported), and 405 for methods no layer serves yet.
pub(crate) fn default_answer(
    req: &SipMessage,
    caps: &Capabilities,
    dialogs: &mut Dialogs,
) -> Option<SipMessage> {
    let tag = new_tag();
    if let Some(rej) = screen_request(req, caps) {
        return build_rejection(req, &rej, Some(&tag)).ok();
    }
    match dialogs.route(req) {
        Routing::NoSuchDialog | Routing::OutOfOrder(_) | Routing::InDialog(_) => {
            return build_response(req, 481, "Call/Transaction Does Not Exist", Some(&tag)).ok()
        }
        Routing::OutOfDialog => {}
    }
    let served = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE"];
    let mut r = if req.method() == Some("OPTIONS") {
        build_response(req, 200, "OK", Some(&tag)).ok()?
    } else {
        build_response(req, 405, "Method Not Allowed", Some(&tag)).ok()?
    };
    r.push_header("Allow", &served.join(", ")).ok()?;
    if req.method() == Some("OPTIONS") {
        r.push_header("Accept", &caps.answer_types.join(", "))
            .ok()?;
        r.push_header("Supported", &caps.extensions.join(", "))
            .ok()?;
    }
    Some(r)
}

/// The tag of a header value's name-addr (To or From).
fn tag_of(v: Option<crate::proto::sip::values::NameAddr>) -> Option<String> {
    v.and_then(|n| n.tag().map(str::to_string))
}

async fn ua_core(h: EngineHandle, mut rx: mpsc::UnboundedReceiver<EngineEvent>) {
    let caps = Capabilities::default();
    let mut dialogs = Dialogs::default();
    let table = h.sessions.table.clone();
    while let Some(ev) = rx.recv().await {
        match ev {
            EngineEvent::Request {
                key,
                request,
                source,
            } => {
                let call_id = request.call_id().unwrap_or("").to_string();
                let to_tag = tag_of(request.to());
                let screened = screen_request(&request, &caps).is_some();
                match (request.method(), to_tag) {
                    (Some(_), Some(tag)) if !screened => {
                        let is_invite = request.method() == Some("INVITE");
                        let input = Input::Request {
                            key: Some(key),
                            request: request.clone(),
                        };
                        if table.route(&call_id, &tag, input) {
                            if is_invite {
                                // A re-INVITE may be cancelled or miss its ACK.
                                table.register_key(&call_id, &tag, key);
                            }
                            continue;
                        }
                    }
                    (Some("INVITE"), None) if !screened => {
                        session::incoming(&h.sessions, key, request, source);
                        continue;
                    }
                    (Some("MESSAGE"), None) if !screened => {
                        super::message::incoming(&h.sessions, &h.sender, key, request);
                        continue;
                    }
                    _ => {}
                }
                if let Some(r) = default_answer(&request, &caps, &mut dialogs) {
                    h.engine.respond(key, r);
                }
            }
            EngineEvent::Ack { request, .. } => {
                let call_id = request.call_id().unwrap_or("").to_string();
                if let Some(tag) = tag_of(request.to()) {
                    table.route(&call_id, &tag, Input::Request { key: None, request });
                }
            }
            EngineEvent::Cancelled { invite } => {
                table.route_key(invite, Input::Cancel(invite));
            }
            EngineEvent::AckTimeout { key, .. } => {
                table.route_key(key, Input::AckTimeout);
            }
            EngineEvent::StrayResponse { response, .. } => {
                let call_id = response.call_id().unwrap_or("").to_string();
                if let Some(tag) = tag_of(response.from()) {
                    table.route(&call_id, &tag, Input::Stray(response));
                }
            }
            // Traces reach observers through the engine's trace sink (set
            // at start), not through this channel.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_by_dotted_name_flat_or_nested() {
        let flat = json!({"sip.udp_port": 5070, "logs.trace_sip": true});
        let (c, t) = engine_config(flat.as_object().unwrap()).unwrap();
        assert_eq!(c.udp.unwrap().port(), 5070);
        assert!(t);
        let nested = json!({"sip": {"tcp_port": 5071, "transport_list": ["tcp"]}});
        let (c, t) = engine_config(nested.as_object().unwrap()).unwrap();
        assert!(c.udp.is_none());
        assert_eq!(c.tcp.unwrap().port(), 5071);
        assert!(!t);
        for bad in [
            json!({"sip": {"udp_port": 70000}}),
            json!({"sip": {"udp_port": "x"}}),
            json!({"sip": {"transport_list": ["sctp"]}}),
            json!({"sip": {"transport_list": "udp"}}),
            json!({"logs": {"trace_sip": "yes"}}),
        ] {
            let e = engine_config(bad.as_object().unwrap()).unwrap_err();
            assert_eq!(e.kind(), crate::api::ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
