//! AccountManager and account activation with registration.
//!
//! Notifications:
//!
//! | name | sender | data |
//! |---|---|---|
//! | SIPAccountManagerDidAddAccount | manager | `account` (id) |
//! | SIPAccountManagerDidRemoveAccount | manager | `account` |
//! | SIPAccountManagerDidChangeDefaultAccount | manager | `old_account`, `account` |
//! | SIPAccountDidActivate / SIPAccountDidDeactivate | account | |
//! | SIPAccountRegistrationDidSucceed | account | `code`, `reason`, `contact_uri`, `contact_uri_list`, `expires`, `registration` |
//! | SIPAccountRegistrationDidFail | account | `code`, `reason`, `registration`, `next_route`, `delay` |
//! | SIPAccountRegistrationDidEnd | account | `code` (when a response came), `reason`, `registration` |
//!
//! `registration` is the account id. An account registers when it and
//! `registration.enabled` are on and the engine runs; it unregisters when
//! disabled, deleted, or when the application stops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use super::account::{Account, BONJOUR_ID};
use super::application::{AppContext, Subsystem};
use super::error::{Error, Result};
use super::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use super::session::forward_outcomes;
use super::settings::SettingsStore;
use crate::driver::dns::Route;
use crate::driver::engine::{numeric_peer, Engine, SendOptions};
use crate::proto::sip::transaction::TransportKind;
use crate::proto::sip::Uri;
use crate::proto::ua::registration::{
    LocalAddress, Registration, RegistrationAction, RegistrationConfig, RegistrationEvent,
};
use crate::proto::ua::session::{Outcome, ReqId};

pub const DID_ADD: &str = "SIPAccountManagerDidAddAccount";
pub const DID_REMOVE: &str = "SIPAccountManagerDidRemoveAccount";
pub const DID_CHANGE_DEFAULT: &str = "SIPAccountManagerDidChangeDefaultAccount";
pub const DID_ACTIVATE: &str = "SIPAccountDidActivate";
pub const DID_DEACTIVATE: &str = "SIPAccountDidDeactivate";
pub const REG_SUCCEED: &str = "SIPAccountRegistrationDidSucceed";
pub const REG_FAIL: &str = "SIPAccountRegistrationDidFail";
pub const REG_END: &str = "SIPAccountRegistrationDidEnd";
pub const BONJOUR_ADD: &str = "BonjourAccountDidAddNeighbour";
pub const BONJOUR_UPDATE: &str = "BonjourAccountDidUpdateNeighbour";
pub const BONJOUR_REMOVE: &str = "BonjourAccountDidRemoveNeighbour";
/// Discovery could not start (e.g. no multicast); the account stays usable.
pub const BONJOUR_FAIL: &str = "BonjourAccountDiscoveryDidFail";

/// How long stop and delete wait for an unregistration.
const UNREGISTER_WAIT: Duration = Duration::from_secs(4);

enum Ctl {
    /// Unregister and end; the sender is told when done.
    Stop(std::sync::mpsc::Sender<()>),
    /// Register again now (network change, settings change).
    Refresh,
}

enum Input {
    Ctl(Ctl),
    Response { id: ReqId, outcome: Outcome },
}

/// What registration needs from the running engine.
#[derive(Clone)]
pub(crate) struct AccountEnv {
    pub engine: Engine,
    pub runtime: tokio::runtime::Handle,
    pub user_agent: String,
    pub dns: Arc<once_cell::sync::OnceCell<crate::driver::dns::DNSLookup>>,
}

struct Active {
    account: Account,
    registration: Option<mpsc::UnboundedSender<Input>>,
    /// The Bonjour account's advertising and browsing.
    bonjour: Option<crate::driver::bonjour::Bonjour>,
}

struct Inner {
    sender: Sender,
    store: Arc<SettingsStore>,
    env: AccountEnv,
    accounts: Mutex<BTreeMap<String, Account>>,
    active: Mutex<BTreeMap<String, Active>>,
    sessions: Arc<super::session::SessionTable>,
    running: AtomicBool,
}

/// Keeps the accounts of the running application (AccountManager).
#[derive(Clone)]
pub struct AccountManager {
    inner: Arc<Inner>,
}

fn post(sender: &Sender, name: &str, data: NotificationData) {
    NotificationCenter::default().post_notification(name, sender, data);
}

impl AccountManager {
    fn new(
        store: Arc<SettingsStore>,
        env: AccountEnv,
        sessions: Arc<super::session::SessionTable>,
    ) -> Self {
        AccountManager {
            inner: Arc::new(Inner {
                sender: Sender {
                    id: ObjectId::new(),
                    kind: "AccountManager",
                },
                store,
                env,
                accounts: Mutex::new(BTreeMap::new()),
                active: Mutex::new(BTreeMap::new()),
                sessions,
                running: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> ObjectId {
        self.inner.sender.id
    }

    fn make(&self, id: &str) -> Result<Account> {
        let a = Account::managed(id, self.inner.store.clone())?;
        let weak = Arc::downgrade(&self.inner);
        if let Some(b) = a.backing() {
            *b.on_change.lock() = Some(Box::new(move |acc: &Account, modified: &[String]| {
                if let Some(inner) = weak.upgrade() {
                    AccountManager { inner }.apply(acc, modified);
                }
            }));
        }
        Ok(a)
    }

    /// Load the accounts of the settings (and the Bonjour account), post
    /// DidAddAccount for each, activate the enabled ones.
    fn start(&self) -> Result<()> {
        let doc = self.inner.store.snapshot();
        let mut ids = super::settings::doc_account_ids(&doc);
        if !ids.iter().any(|i| i == BONJOUR_ID) {
            ids.insert(0, BONJOUR_ID.to_string());
        }
        for id in ids {
            let Ok(a) = self.make(&id) else {
                tracing::warn!(target: "sipsimple::accounts", "ignoring account {id:?}: not user@domain");
                continue;
            };
            self.inner.accounts.lock().insert(id.clone(), a.clone());
            post(
                &self.inner.sender,
                DID_ADD,
                NotificationData::new().with("account", id),
            );
        }
        self.inner.running.store(true, Ordering::SeqCst);
        for a in self.get_accounts() {
            if a.is_enabled() {
                self.activate(&a);
            }
        }
        self.sync_session_default();
        Ok(())
    }

    /// Deactivate every account (unregistering, bounded wait).
    fn stop(&self) {
        self.inner.running.store(false, Ordering::SeqCst);
        let ids: Vec<String> = self.inner.active.lock().keys().cloned().collect();
        let deadline = Instant::now() + UNREGISTER_WAIT;
        let mut waits = Vec::new();
        for id in ids {
            if let Some(w) = self.deactivate_start(&id) {
                waits.push(w);
            }
        }
        for w in waits {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = w.recv_timeout(left);
        }
    }

    pub fn has_account(&self, id: &str) -> bool {
        self.inner.accounts.lock().contains_key(id)
    }

    pub fn get_account(&self, id: &str) -> Result<Account> {
        self.inner
            .accounts
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no account {id:?}")))
    }

    /// Every account, Bonjour first, then by id.
    pub fn get_accounts(&self) -> Vec<Account> {
        let mut v: Vec<Account> = self.inner.accounts.lock().values().cloned().collect();
        v.sort_by_key(|a| (!a.is_bonjour(), a.id().to_string()));
        v
    }

    /// The enabled account `contact_uri` (a Contact or address of record)
    /// belongs to.
    pub fn find_account(&self, contact_uri: &str) -> Option<Account> {
        let uri = Uri::parse(contact_uri.trim_matches(['<', '>'])).ok()?;
        let sip = uri.as_sip()?;
        let user = sip.user.clone()?;
        let host = sip.host.to_string();
        self.get_accounts().into_iter().find(|a| {
            a.is_enabled() && (a.contact_user() == user || a.id() == format!("{user}@{host}"))
        })
    }

    /// The default account: the one set, else the first enabled SIP
    /// account, else Bonjour.
    pub fn default_account(&self) -> Option<Account> {
        let doc = self.inner.store.snapshot();
        if let Some(id) = doc.get("default_account").and_then(Value::as_str) {
            if let Ok(a) = self.get_account(id) {
                return Some(a);
            }
        }
        let all = self.get_accounts();
        all.iter()
            .find(|a| !a.is_bonjour() && a.is_enabled())
            .or_else(|| all.iter().find(|a| a.is_bonjour()))
            .cloned()
    }

    pub fn set_default_account(&self, id: &str) -> Result<()> {
        let new = self.get_account(id)?;
        let old = self.default_account();
        self.inner.store.update(|doc| {
            doc.insert("default_account".into(), Value::from(id));
        })?;
        self.sync_session_default();
        if old.as_ref().map(|a| a.id()) != Some(new.id()) {
            post(
                &self.inner.sender,
                DID_CHANGE_DEFAULT,
                NotificationData::new()
                    .with("old_account", old.map(|a| a.id().to_string()))
                    .with("account", id),
            );
        }
        Ok(())
    }

    fn sync_session_default(&self) {
        *self.inner.sessions.default_account_slot().lock() = self.default_account();
    }

    /// Add an account (stored at once, enabled). It activates, and
    /// registers, at its first `save()` or the next start.
    pub fn add_account(&self, id: &str, password: Option<&str>) -> Result<Account> {
        if self.has_account(id) {
            return Err(Error::InvalidArgument(format!("account {id:?} exists")));
        }
        let a = self.make(id)?;
        self.inner
            .store
            .update(|doc| super::settings::doc_add_account(doc, id, password))?;
        self.inner.accounts.lock().insert(id.to_string(), a.clone());
        post(
            &self.inner.sender,
            DID_ADD,
            NotificationData::new().with("account", id),
        );
        // Like a new account object of the SDK, it activates when first
        // saved (so its settings can be set before anything is sent), or
        // at the next start.
        self.sync_session_default();
        Ok(a)
    }

    /// Delete an account: it unregisters (bounded wait) and goes away.
    pub fn delete_account(&self, id: &str) -> Result<()> {
        if id == BONJOUR_ID {
            return Err(Error::InvalidArgument(
                "the Bonjour account cannot be deleted; disable it instead".into(),
            ));
        }
        let a = self.get_account(id)?;
        if let Some(w) = self.deactivate_start(id) {
            let _ = w.recv_timeout(UNREGISTER_WAIT);
        }
        self.inner
            .store
            .update(|doc| super::settings::doc_delete_account(doc, id))?;
        self.inner.accounts.lock().remove(id);
        post(
            &self.inner.sender,
            DID_REMOVE,
            NotificationData::new().with("account", a.id()),
        );
        self.sync_session_default();
        Ok(())
    }

    /// Every active account registers again now.
    pub fn network_changed(&self) {
        for a in self.inner.active.lock().values() {
            if let Some(tx) = &a.registration {
                let _ = tx.send(Input::Ctl(Ctl::Refresh));
            }
        }
    }

    /// Whether an account is active (enabled while the engine runs).
    pub fn is_active(&self, id: &str) -> bool {
        self.inner.active.lock().contains_key(id)
    }

    /// A save changed `modified`: activate, deactivate or re-register.
    fn apply(&self, a: &Account, modified: &[String]) {
        if !self.inner.running.load(Ordering::SeqCst) || !self.has_account(a.id()) {
            return;
        }
        let active = self.is_active(a.id());
        let registration_changed = modified.iter().any(|m| {
            m.starts_with("registration.")
                || m.starts_with("auth.")
                || m.starts_with("sip.")
                || m == "display_name"
        });
        match (a.is_enabled(), active) {
            (true, false) => self.activate(a),
            (false, true) => {
                if let Some(w) = self.deactivate_start(a.id()) {
                    // Not waited for: save() may run on the notification
                    // thread, which the unregistration's notifications need.
                    drop(w);
                }
            }
            (true, true) if registration_changed => {
                // Restart registration with the new settings.
                if let Some(w) = self.deactivate_start(a.id()) {
                    drop(w);
                }
                self.activate(a);
            }
            _ => {}
        }
    }

    fn activate(&self, a: &Account) {
        let mut active = self.inner.active.lock();
        if active.contains_key(a.id()) {
            return;
        }
        post(a.sender(), DID_ACTIVATE, NotificationData::new());
        let registration = (!a.is_bonjour() && a.flag("registration.enabled"))
            .then(|| spawn_registration(a.clone(), self.inner.env.clone()));
        let bonjour = if a.is_bonjour() {
            self.start_bonjour(a)
        } else {
            None
        };
        active.insert(
            a.id().to_string(),
            Active {
                account: a.clone(),
                registration,
                bonjour,
            },
        );
    }

    /// Advertise the Bonjour account's contact on every listening transport
    /// and browse for neighbours (`bonjour.interfaces` limits where).
    fn start_bonjour(&self, a: &Account) -> Option<crate::driver::bonjour::Bonjour> {
        use crate::driver::bonjour::{Bonjour, BonjourConfig, NeighbourEvent};
        let engine = &self.inner.env.engine;
        let services: Vec<(TransportKind, u16)> =
            [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls]
                .into_iter()
                .filter_map(|t| engine.local_addr(t).map(|l| (t, l.port())))
                .collect();
        let doc = self.inner.store.snapshot();
        let interfaces = super::settings::lookup(&doc, "bonjour.interfaces")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let cfg = BonjourConfig {
            user: a.contact_user().to_string(),
            display_name: a.display_name(),
            instance_id: a.instance_id(),
            services,
            interfaces,
        };
        let sender = a.sender().clone();
        let started = Bonjour::start(cfg, move |e| {
            let (name, n) = match e {
                NeighbourEvent::Added(n) => (BONJOUR_ADD, n),
                NeighbourEvent::Updated(n) => (BONJOUR_UPDATE, n),
                NeighbourEvent::Removed(n) => (BONJOUR_REMOVE, n),
            };
            post(
                &sender,
                name,
                NotificationData::new()
                    .with("neighbour", n.id)
                    .with("display_name", n.display_name)
                    .with("host", n.host.to_string())
                    .with("uri", n.uri)
                    .with("transport", n.transport.as_str().to_ascii_lowercase())
                    .with("instance_id", n.instance_id),
            );
        });
        match started {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(target: "sipsimple::accounts", "Bonjour discovery did not start: {e}");
                post(
                    a.sender(),
                    BONJOUR_FAIL,
                    NotificationData::new().with("reason", e),
                );
                None
            }
        }
    }

    /// The neighbours the active Bonjour account sees now.
    pub fn bonjour_neighbours(&self) -> Vec<crate::driver::bonjour::Neighbour> {
        self.inner
            .active
            .lock()
            .get(BONJOUR_ID)
            .and_then(|a| a.bonjour.as_ref())
            .map(|b| b.neighbours())
            .unwrap_or_default()
    }

    /// Stop an active account; returns where to wait for its unregistration.
    fn deactivate_start(&self, id: &str) -> Option<std::sync::mpsc::Receiver<()>> {
        let act = self.inner.active.lock().remove(id)?;
        post(
            act.account.sender(),
            DID_DEACTIVATE,
            NotificationData::new(),
        );
        if let Some(b) = act.bonjour {
            // Goodbyes take up to a second: not on the caller's thread.
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                b.stop();
                let _ = done_tx.send(());
            });
            return Some(done_rx);
        }
        let tx = act.registration?;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        tx.send(Input::Ctl(Ctl::Stop(done_tx))).ok()?;
        Some(done_rx)
    }
}

fn spawn_registration(account: Account, env: AccountEnv) -> mpsc::UnboundedSender<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = RegTask {
        account,
        env: env.clone(),
        tx: tx.clone(),
        routes: Vec::new(),
        was_registered: false,
    };
    env.runtime.spawn(task.run(rx));
    tx
}

struct RegTask {
    account: Account,
    env: AccountEnv,
    tx: mpsc::UnboundedSender<Input>,
    routes: Vec<Route>,
    /// DidEnd is for registrations that existed.
    was_registered: bool,
}

/// Our address toward a route, as Via sent-by and Contact.
fn local_for(route: &Route, engine: &Engine, user: &str) -> LocalAddress {
    let hp = super::session::local_host_port(engine, route.address.ip(), route.transport);
    let tparam = match route.transport {
        TransportKind::Udp => String::new(),
        t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
    };
    LocalAddress {
        via: format!("SIP/2.0/{} {hp}", route.transport.as_str()),
        contact: format!("sip:{user}@{hp}{tparam}"),
    }
}

impl RegTask {
    fn config(&self) -> Result<(RegistrationConfig, Uri)> {
        let a = &self.account;
        let id_uri = Uri::parse(&a.uri()).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let domain = a.id().split('@').nth(1).unwrap_or_default().to_string();
        let registrar = match a.get("sip.register_uri")?.as_str() {
            Some(u) => Uri::parse(u).map_err(|e| Error::InvalidArgument(e.to_string()))?,
            None => Uri::parse(&format!("sip:{domain}"))
                .map_err(|e| Error::InvalidArgument(e.to_string()))?,
        };
        let proxy = a.get("sip.outbound_proxy")?;
        let target = match proxy.as_str() {
            Some(p) => Uri::parse(p).map_err(|e| Error::InvalidArgument(e.to_string()))?,
            None => registrar.clone(),
        };
        let route = proxy.as_str().map(|p| {
            if p.contains(";lr") {
                format!("<{p}>")
            } else {
                format!("<{p};lr>")
            }
        });
        let seed = crate::driver::ids::random_u64();
        Ok((
            RegistrationConfig {
                aor: id_uri,
                registrar,
                display_name: a.display_name(),
                user_agent: self.env.user_agent.clone(),
                expires: a.number("registration.expires") as u32,
                credentials: a.credentials(),
                instance_id: Some(a.instance_id()),
                reg_id: Some(1),
                route,
                retry_base: Duration::from_secs(a.number("registration.retry_base").max(1)),
                retry_max: Duration::from_secs(a.number("registration.retry_max").max(1)),
                seed,
            },
            target,
        ))
    }

    fn transports(&self) -> Vec<TransportKind> {
        let wanted: Vec<TransportKind> = self
            .account
            .get("sip.transport_list")
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.as_str().and_then(TransportKind::parse))
            .collect();
        let wanted = if wanted.is_empty() {
            vec![TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls]
        } else {
            wanted
        };
        // TLS needs no listener to connect out; UDP and TCP need theirs
        // for the Contact to be reachable.
        wanted
            .into_iter()
            .filter(|t| *t == TransportKind::Tls || self.env.engine.local_addr(*t).is_some())
            .collect()
    }

    async fn lookup(&self, target: &Uri) -> std::result::Result<Vec<Route>, String> {
        let transports = self.transports();
        if let Some(p) = numeric_peer(target) {
            if !transports.contains(&p.transport) {
                return Err(format!(
                    "{} is not among the usable transports",
                    p.transport.as_str()
                ));
            }
            return Ok(vec![Route {
                address: p.addr,
                transport: p.transport,
                tls_name: p.addr.ip().to_string(),
            }]);
        }
        let dns = super::session::system_dns(&self.env.dns)?;
        dns.lookup_sip_proxy(target, &transports)
            .await
            .map_err(|e| e.to_string())
    }

    fn notify(&mut self, e: RegistrationEvent) {
        match &e {
            RegistrationEvent::Succeeded { .. } => self.was_registered = true,
            RegistrationEvent::Ended { .. } if !self.was_registered => return,
            _ => {}
        }
        let sender = self.account.sender();
        let reg = self.account.id().to_string();
        match e {
            RegistrationEvent::Succeeded {
                code,
                reason,
                contact,
                contacts,
                expires,
            } => post(
                sender,
                REG_SUCCEED,
                NotificationData::new()
                    .with("code", code)
                    .with("reason", reason)
                    .with("contact_uri", contact)
                    .with("contact_uri_list", contacts)
                    .with("expires", expires)
                    .with("registration", reg),
            ),
            RegistrationEvent::Failed {
                code,
                reason,
                next_route,
                delay,
            } => {
                let next = next_route.and_then(|i| self.routes.get(i)).map(|r| {
                    format!(
                        "{}:{}",
                        r.transport.as_str().to_ascii_lowercase(),
                        r.address
                    )
                });
                post(
                    sender,
                    REG_FAIL,
                    NotificationData::new()
                        .with("code", code)
                        .with("reason", reason)
                        .with("registration", reg)
                        .with("next_route", next)
                        .with("delay", delay),
                )
            }
            RegistrationEvent::Ended { code, reason } => post(
                sender,
                REG_END,
                NotificationData::new()
                    .with("code", code)
                    .with("reason", reason)
                    .with("registration", reg),
            ),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        let (cfg, target) = match self.config() {
            Ok(c) => c,
            Err(e) => {
                self.notify(RegistrationEvent::Failed {
                    code: 0,
                    reason: e.to_string(),
                    next_route: None,
                    delay: 0.0,
                });
                // Nothing to unregister; wait for the stop and say so.
                while let Some(i) = rx.recv().await {
                    if let Input::Ctl(Ctl::Stop(done)) = i {
                        let _ = done.send(());
                        return;
                    }
                }
                return;
            }
        };
        let verify = self.account.flag("tls.verify_server");
        let mut core = Registration::new(cfg);
        core.start(Instant::now());
        let mut stop_ack: Option<std::sync::mpsc::Sender<()>> = None;
        loop {
            // Carry out what the core asked for.
            while let Some(a) = core.poll_action() {
                match a {
                    RegistrationAction::Lookup => match self.lookup(&target).await {
                        Ok(r) => {
                            let user = self.account.contact_user().to_string();
                            let locals = r
                                .iter()
                                .map(|x| local_for(x, &self.env.engine, &user))
                                .collect();
                            self.routes = r;
                            core.set_routes(Instant::now(), locals);
                        }
                        Err(e) => core.lookup_failed(Instant::now(), e),
                    },
                    RegistrationAction::Send { id, request, route } => {
                        let Some(r) = self.routes.get(route).cloned() else {
                            core.handle_response(
                                Instant::now(),
                                id,
                                Outcome::Failed {
                                    code: 503,
                                    reason: "no such route".into(),
                                },
                            );
                            continue;
                        };
                        let opts = SendOptions {
                            tls_server_name: Some(r.tls_name.clone()),
                            tls_verify: Some(verify),
                        };
                        let crx = self.env.engine.send_request_with(request, r.peer(), opts);
                        forward_outcomes(&self.env.runtime, crx, self.tx.clone(), move |outcome| {
                            Input::Response { id, outcome }
                        });
                    }
                }
            }
            while let Some(e) = core.poll_event() {
                self.notify(e);
            }
            if core.state() == crate::proto::ua::registration::RegState::Ended {
                if let Some(done) = stop_ack.take() {
                    let _ = done.send(());
                }
                return;
            }
            let deadline = core.poll_timeout();
            let input = match deadline {
                Some(d) => {
                    tokio::select! {
                        i = rx.recv() => i,
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(d)) => {
                            core.handle_timeout(Instant::now());
                            continue;
                        }
                    }
                }
                None => rx.recv().await,
            };
            let now = Instant::now();
            match input {
                None => {
                    core.stop(now);
                }
                Some(Input::Ctl(Ctl::Stop(done))) => {
                    stop_ack = Some(done);
                    core.stop(now);
                }
                Some(Input::Ctl(Ctl::Refresh)) => core.start(now),
                Some(Input::Response { id, outcome }) => core.handle_response(now, id, outcome),
            }
        }
    }
}

/// Loads the accounts after the engine starts; unregisters them first at stop.
pub(crate) struct AccountSubsystem;

impl Subsystem for AccountSubsystem {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn start(&mut self, ctx: &mut AppContext) -> Result<()> {
        let store = ctx
            .settings
            .clone()
            .ok_or_else(|| Error::InvalidState("the configuration was not loaded".into()))?;
        let engine = ctx
            .engine
            .as_ref()
            .ok_or_else(|| Error::InvalidState("the SIP engine is not running".into()))?;
        let env = AccountEnv {
            engine: engine.engine.clone(),
            runtime: engine.sessions.runtime.clone(),
            user_agent: engine.sessions.user_agent.clone(),
            dns: engine.sessions.dns.clone(),
        };
        let m = AccountManager::new(store, env, engine.sessions.table.clone());
        m.start()?;
        ctx.accounts = Some(m);
        Ok(())
    }

    fn stop(&mut self, ctx: &mut AppContext) {
        if let Some(m) = ctx.accounts.take() {
            m.stop();
        }
    }
}
