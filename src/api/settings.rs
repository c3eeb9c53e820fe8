//! Settings like the SDK's configuration API: global settings
//! (SIPSimpleSettings) and per-account settings, addressed by dotted names
//! (`sip.udp_port`, `registration.expires`), typed and checked, persisted
//! through the storage. Values of names we do not know are kept as they
//! were loaded. `save()` posts CFGSettingsObjectDidChange with `modified`,
//! the names changed since the last save.
//!
//! The document: global settings at the top level (flat dotted keys or
//! nested objects), accounts under `accounts` by id, the default account
//! id under `default_account`.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use super::storage::Storage;

pub const DID_CHANGE: &str = "CFGSettingsObjectDidChange";

/// What a setting holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    Port,
    /// An unsigned number within bounds.
    Number(u64, u64),
    Text,
    /// Text or null.
    OptText,
    /// A SIP URI or null.
    OptUri,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A list of text, or null (inherit).
    List,
}

/// A known setting: name, kind, default, one line of help.
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub default: fn() -> Value,
    pub help: &'static str,
}

macro_rules! defs {
    ($( $name:literal, $kind:expr, $default:expr, $help:literal; )*) => {
        &[ $( Def { name: $name, kind: $kind, default: || $default, help: $help }, )* ]
    };
}

/// SIPSimpleSettings.
pub static GLOBAL: &[Def] = defs! {
    "user_agent", Kind::OptText, Value::Null, "User-Agent/Server header (default sipsimple/<version>)";
    "sip.transport_list", Kind::List, serde_json::json!(["udp", "tcp"]), "transports to listen on (udp, tcp, tls)";
    "sip.udp_port", Kind::Port, Value::from(0), "UDP port (0: any free port)";
    "sip.tcp_port", Kind::Port, Value::from(0), "TCP port (0: any free port)";
    "sip.tls_port", Kind::Port, Value::from(0), "TLS port (0: any free port)";
    "sip.timer_t1", Kind::Number(10, 600_000), Value::from(500), "RFC 3261 T1 in ms";
    "sip.timer_t2", Kind::Number(10, 600_000), Value::from(4000), "RFC 3261 T2 in ms";
    "sip.timer_t4", Kind::Number(10, 600_000), Value::from(5000), "RFC 3261 T4 in ms";
    "sip.max_transactions", Kind::Number(16, 10_000_000), Value::from(100_000), "transactions kept before 503";
    "sip.session_timer", Kind::Bool, Value::Bool(true), "RFC 4028 session timer";
    "sip.session_expires", Kind::Number(90, 86_400), Value::from(1800), "session interval, s";
    "sip.min_se", Kind::Number(90, 86_400), Value::from(90), "smallest session interval accepted, s";
    "sip.enable_100rel", Kind::Bool, Value::Bool(true), "reliable provisional responses (RFC 3262)";
    "dns.nameservers", Kind::List, serde_json::json!([]), "DNS servers as ip or ip:port (empty: the system's)";
    "bonjour.interfaces", Kind::List, serde_json::json!([]), "network interfaces the Bonjour account advertises and browses on (empty: all)";
    "tls.ca_list", Kind::OptText, Value::Null, "extra CA certificates (PEM file)";
    "tls.certificate", Kind::OptText, Value::Null, "our certificate chain and key (PEM file)";
    "tls.verify_server", Kind::Bool, Value::Bool(true), "verify TLS server certificates";
    "audio.input_device", Kind::Text, Value::from("null"), "null, tone:<Hz>, wav:<path>, system (the default device) or system:<id>";
    "audio.output_device", Kind::Text, Value::from("null"), "null, wav:<path>, system or system:<id>";
    "rtp.audio_codec_list", Kind::List, serde_json::json!(["opus", "G722", "PCMU", "PCMA"]), "audio codecs in order (opus, G722, PCMU, PCMA)";
    "audio.alert_device", Kind::Text, Value::from("null"), "where incoming sessions ring: null (the application rings), wav:<path>, system or system:<id>";
    "audio.ring_tone", Kind::Text, Value::from("tone:425"), "what rings: tone:<Hz> or wav:<path>";
    "audio.no_audio_timeout", Kind::Number(0, 3600), Value::from(5), "seconds without audio before SIPSessionGotNoAudio (0: never)";
    "rtp.rtcp_interval", Kind::Number(1, 60), Value::from(5), "mean seconds between RTCP reports (RFC 3550: 5)";
    "rtp.rx_drop_percent", Kind::Number(0, 100), Value::from(0), "share of received RTP packets dropped on purpose, to test loss";
    "audio.recordings_directory", Kind::OptText, Value::Null, "where recordings go when no file is named";
    "logs.trace_sip", Kind::Bool, Value::Bool(false), "post SIPEngineSIPTrace";
    "logs.trace_msrp", Kind::Bool, Value::Bool(false), "post MSRPTransportTrace for MSRP streams' connections";
    "chat.max_message_size", Kind::Number(1, 1 << 40), Value::from(16 * 1024 * 1024), "largest incoming chat message, bytes";
    "chat.disposition_notifications", Kind::List, serde_json::json!([]), "IMDN asked for on sent chat messages (positive-delivery, negative-delivery, display)";
    "chat.send_delivery_notifications", Kind::Bool, Value::Bool(true), "answer IMDN positive-delivery requests";
    "file_transfer.directory", Kind::OptText, Value::Null, "where received files go (default: the user's download directory)";
    "file_transfer.hashes", Kind::List, serde_json::json!(["sha-1"]), "hashes a sent file's selector carries (sha-1, sha-256)";
    "file_transfer.max_rate", Kind::Number(0, 1 << 40), Value::from(0), "bytes per second a file is sent at most (0: no limit)";
};

/// Per-account settings.
pub static ACCOUNT: &[Def] = defs! {
    "enabled", Kind::Bool, Value::Bool(true), "use this account (bonjour@local: off until set; on, it advertises and browses the LAN)";
    "display_name", Kind::OptText, Value::Null, "name shown to others";
    "auth.username", Kind::OptText, Value::Null, "digest user name (default: the id's user)";
    "auth.password", Kind::Text, Value::from(""), "digest password";
    "registration.enabled", Kind::Bool, Value::Bool(true), "register this account";
    "registration.expires", Kind::Number(0, 86_400), Value::from(600), "registration lifetime asked, s";
    "registration.retry_base", Kind::Number(1, 3_600), Value::from(10), "first retry delay after a failure, s";
    "registration.retry_max", Kind::Number(1, 86_400), Value::from(600), "longest retry delay, s";
    "sip.outbound_proxy", Kind::OptUri, Value::Null, "send everything through this proxy";
    "sip.register_uri", Kind::OptUri, Value::Null, "registrar (default: the id's domain)";
    "sip.transport_list", Kind::List, serde_json::json!(["udp", "tcp", "tls"]), "transports to use, in order";
    "nat_traversal.use_ice", Kind::Bool, Value::Bool(false), "ICE for media";
    "nat_traversal.stun_server_list", Kind::List, Value::Null, "STUN servers (host:port)";
    "msrp.relay", Kind::OptUri, Value::Null, "MSRP relay (RFC 4976)";
    "msrp.transport", Kind::Choice(&["tcp", "tls"]), Value::from("tls"), "MSRP transport";
    "rtp.srtp_encryption", Kind::Choice(&["disabled", "optional", "mandatory"]), Value::from("optional"), "SRTP (SDES) policy";
    "rtp.audio_codec_list", Kind::List, Value::Null, "audio codecs (null: the global list)";
    "tls.verify_server", Kind::Bool, Value::Bool(true), "verify this account's TLS servers";
};

/// Settings that never appear in logs or traces.
pub fn is_secret(name: &str) -> bool {
    name.ends_with("password")
}

fn def<'a>(table: &'a [Def], name: &str) -> Option<&'a Def> {
    table.iter().find(|d| d.name == name)
}

/// Check `value` for setting `name` of `table`; null resets to the default.
pub fn check(table: &[Def], name: &str, value: &Value) -> Result<()> {
    let d = def(table, name).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unknown setting {name:?} (see sip-settings --help)"
        ))
    })?;
    if value.is_null() {
        return Ok(());
    }
    let bad = |what: &str| {
        Err(Error::InvalidArgument(format!(
            "{name} must be {what}, not {value}"
        )))
    };
    match d.kind {
        Kind::Bool if value.is_boolean() => Ok(()),
        Kind::Bool => bad("true or false"),
        Kind::Port => match value.as_u64() {
            Some(p) if p <= 65535 => Ok(()),
            _ => bad("a port number"),
        },
        Kind::Number(lo, hi) => match value.as_u64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => bad(&format!("a number from {lo} to {hi}")),
        },
        Kind::Text | Kind::OptText => match value.as_str() {
            Some(s) if !s.contains(['\r', '\n', '\0']) => Ok(()),
            _ => bad("text on one line"),
        },
        Kind::OptUri => match value.as_str() {
            Some(s) if crate::proto::sip::Uri::parse(s).is_ok() => Ok(()),
            _ => bad("a SIP URI"),
        },
        Kind::Choice(words) => match value.as_str() {
            Some(s) if words.contains(&s) => Ok(()),
            _ => bad(&format!("one of {}", words.join(", "))),
        },
        Kind::List => match value.as_array() {
            Some(a) if a.iter().all(|v| v.is_string()) => Ok(()),
            _ => bad("a list of text"),
        },
    }
}

/// Turn command-line text into a value for `name` ("true", "600",
/// "udp,tcp", "none" for null).
pub fn parse_value(table: &[Def], name: &str, text: &str) -> Result<Value> {
    let d = def(table, name)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown setting {name:?}")))?;
    if text == "none" || text == "null" {
        return Ok(Value::Null);
    }
    let v = match d.kind {
        Kind::Bool => match text {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{name}: {text:?} is not true or false"
                )))
            }
        },
        Kind::Port | Kind::Number(..) => Value::from(
            text.parse::<u64>()
                .map_err(|_| Error::InvalidArgument(format!("{name}: {text:?} is not a number")))?,
        ),
        Kind::List => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Value::from)
                .collect(),
        ),
        _ => Value::from(text),
    };
    check(table, name, &v)?;
    Ok(v)
}

/// Read a dotted name from a document holding it flat or nested.
pub fn lookup<'a>(doc: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// Write a dotted name as nested objects (a flat key of that name goes).
pub fn store(doc: &mut Map<String, Value>, path: &str, value: Value) {
    doc.remove(path);
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = doc;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = entry.as_object_mut().expect("made an object just above");
    }
    let last = parts[parts.len() - 1];
    if value.is_null() {
        cur.remove(last);
    } else {
        cur.insert(last.to_string(), value);
    }
}

/// The value of a known setting: stored, else the default.
pub fn value_of(table: &[Def], doc: &Map<String, Value>, name: &str) -> Value {
    match lookup(doc, name) {
        Some(v) if !v.is_null() => v.clone(),
        _ => def(table, name)
            .map(|d| (d.default)())
            .unwrap_or(Value::Null),
    }
}

/// Defaults of the Bonjour account that differ from [`ACCOUNT`]'s: once
/// active it multicasts on the LAN, so it is off until the user turns it on.
fn bonjour_default(name: &str) -> Option<Value> {
    match name {
        "enabled" => Some(Value::Bool(false)),
        _ => None,
    }
}

/// Account `id`'s setting `name` from its stored section, else its default
/// (the Bonjour account's own where it has one).
pub fn account_value(id: &str, section: &Map<String, Value>, name: &str) -> Value {
    match lookup(section, name) {
        Some(v) if !v.is_null() => v.clone(),
        _ => (id == super::account::BONJOUR_ID)
            .then(|| bonjour_default(name))
            .flatten()
            .unwrap_or_else(|| value_of(ACCOUNT, section, name)),
    }
}

/// The whole settings document of a running application, shared by the
/// subsystems. Readers take a snapshot; writers replace it.
pub struct SettingsStore {
    storage: Arc<dyn Storage>,
    doc: RwLock<Arc<Map<String, Value>>>,
    /// Serialises read-modify-write of the document.
    write: Mutex<()>,
}

impl SettingsStore {
    pub fn new(storage: Arc<dyn Storage>, doc: Map<String, Value>) -> SettingsStore {
        SettingsStore {
            storage,
            doc: RwLock::new(Arc::new(doc)),
            write: Mutex::new(()),
        }
    }

    pub fn snapshot(&self) -> Arc<Map<String, Value>> {
        self.doc.read().clone()
    }

    /// Change the document with `f` and write it to the storage.
    pub fn update(&self, f: impl FnOnce(&mut Map<String, Value>)) -> Result<()> {
        let _w = self.write.lock();
        let mut doc = (**self.doc.read()).clone();
        f(&mut doc);
        self.storage.save(&doc)?;
        *self.doc.write() = Arc::new(doc);
        Ok(())
    }
}

/// SIPSimpleSettings: the global settings of a running application.
/// Changes are kept until `save()`; most take effect at the next start,
/// audio and codec settings with the next stream.
#[derive(Clone)]
pub struct SIPSimpleSettings {
    store: Arc<SettingsStore>,
    sender: Sender,
    pending: Arc<Mutex<Vec<(String, Value)>>>,
}

impl SIPSimpleSettings {
    pub(crate) fn new(store: Arc<SettingsStore>, id: ObjectId) -> SIPSimpleSettings {
        SIPSimpleSettings {
            store,
            sender: Sender {
                id,
                kind: "SIPSimpleSettings",
            },
            pending: Arc::default(),
        }
    }

    pub fn id(&self) -> ObjectId {
        self.sender.id
    }

    /// The value (unsaved changes included), or the default.
    pub fn get(&self, name: &str) -> Result<Value> {
        if def(GLOBAL, name).is_none() {
            return Err(Error::InvalidArgument(format!("unknown setting {name:?}")));
        }
        if let Some((_, v)) = self.pending.lock().iter().rev().find(|(n, _)| n == name) {
            return Ok(if v.is_null() {
                def(GLOBAL, name)
                    .map(|d| (d.default)())
                    .unwrap_or(Value::Null)
            } else {
                v.clone()
            });
        }
        Ok(value_of(GLOBAL, &self.store.snapshot(), name))
    }

    /// Change a setting (checked now, written by `save`). Null resets it.
    pub fn set(&self, name: &str, value: Value) -> Result<()> {
        check(GLOBAL, name, &value)?;
        self.pending.lock().push((name.to_string(), value));
        Ok(())
    }

    /// Write the changes and post CFGSettingsObjectDidChange.
    pub fn save(&self) -> Result<Vec<String>> {
        let changes = std::mem::take(&mut *self.pending.lock());
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let before = self.store.snapshot();
        let mut modified: Vec<String> = Vec::new();
        self.store.update(|doc| {
            for (n, v) in &changes {
                if value_of(GLOBAL, &before, n) != value_of_after(n, v) && !modified.contains(n) {
                    modified.push(n.clone());
                }
                store(doc, n, v.clone());
            }
        })?;
        if !modified.is_empty() {
            NotificationCenter::default().post_notification(
                DID_CHANGE,
                &self.sender,
                NotificationData::new().with("modified", modified.clone()),
            );
        }
        Ok(modified)
    }
}

fn value_of_after(name: &str, v: &Value) -> Value {
    if v.is_null() {
        def(GLOBAL, name)
            .map(|d| (d.default)())
            .unwrap_or(Value::Null)
    } else {
        v.clone()
    }
}

/// Add an account section (enabled, with a password if given).
pub(crate) fn doc_add_account(doc: &mut Map<String, Value>, id: &str, password: Option<&str>) {
    let accounts = doc
        .entry("accounts".to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !accounts.is_object() {
        *accounts = Value::Object(Map::new());
    }
    let mut sec = Map::new();
    if let Some(p) = password {
        sec.insert("auth".into(), serde_json::json!({ "password": p }));
    }
    if let Some(m) = accounts.as_object_mut() {
        m.insert(id.to_string(), Value::Object(sec));
    }
}

/// Remove an account section (and the default if it was this one).
pub(crate) fn doc_delete_account(doc: &mut Map<String, Value>, id: &str) {
    if let Some(m) = doc.get_mut("accounts").and_then(Value::as_object_mut) {
        m.remove(id);
    }
    if doc.get("default_account").and_then(Value::as_str) == Some(id) {
        doc.remove("default_account");
    }
}

pub(crate) fn doc_account_ids(doc: &Map<String, Value>) -> Vec<String> {
    doc.get("accounts")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The settings document of a configuration directory, edited without
/// starting an application (what `sip-settings` uses). A running
/// application reads the document at start.
pub struct Configuration {
    store: Arc<SettingsStore>,
}

impl Configuration {
    /// Load the document (a corrupt file is an error naming it; nothing
    /// is overwritten).
    pub fn open(storage: Arc<dyn Storage>) -> Result<Configuration> {
        let doc = storage.load()?;
        Ok(Configuration {
            store: Arc::new(SettingsStore::new(storage, doc)),
        })
    }

    pub fn settings(&self) -> SIPSimpleSettings {
        SIPSimpleSettings::new(self.store.clone(), ObjectId::new())
    }

    /// Stored account ids (the Bonjour account only once configured).
    pub fn account_ids(&self) -> Vec<String> {
        doc_account_ids(&self.store.snapshot())
    }

    /// An account's settings object (get/set/save).
    pub fn account(&self, id: &str) -> Result<super::account::Account> {
        if id != super::account::BONJOUR_ID && !self.account_ids().iter().any(|a| a == id) {
            return Err(Error::NotFound(format!("no account {id:?}")));
        }
        super::account::Account::managed(id, self.store.clone())
    }

    pub fn add_account(&self, id: &str, password: Option<&str>) -> Result<()> {
        super::account::check_id(id)?;
        if self.account_ids().iter().any(|a| a == id) {
            return Err(Error::InvalidArgument(format!("account {id:?} exists")));
        }
        self.store.update(|doc| doc_add_account(doc, id, password))
    }

    pub fn delete_account(&self, id: &str) -> Result<()> {
        if !self.account_ids().iter().any(|a| a == id) {
            return Err(Error::NotFound(format!("no account {id:?}")));
        }
        self.store.update(|doc| doc_delete_account(doc, id))
    }

    /// The stored default account id, if any.
    pub fn default_account(&self) -> Option<String> {
        self.store
            .snapshot()
            .get("default_account")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    pub fn set_default_account(&self, id: &str) -> Result<()> {
        if id != super::account::BONJOUR_ID && !self.account_ids().iter().any(|a| a == id) {
            return Err(Error::NotFound(format!("no account {id:?}")));
        }
        self.store.update(|doc| {
            doc.insert("default_account".into(), Value::from(id));
        })
    }

    /// A copy of the document for one run, kept in memory (the file is not
    /// changed): global settings in `overrides` (checked) replace the
    /// stored ones, and with `only_account` that account alone is enabled
    /// and registers.
    pub fn run_copy(
        &self,
        overrides: &[(&str, Value)],
        only_account: Option<&str>,
    ) -> Result<Arc<dyn Storage>> {
        let mut doc = (*self.store.snapshot()).clone();
        for (name, v) in overrides {
            check(GLOBAL, name, v)?;
            store(&mut doc, name, v.clone());
        }
        if let Some(id) = only_account {
            if id == super::account::BONJOUR_ID {
                // The Bonjour account has a section only once configured.
                if !doc.get("accounts").is_some_and(Value::is_object) {
                    doc.insert("accounts".into(), Value::Object(Map::new()));
                }
                if let Some(accounts) = doc.get_mut("accounts").and_then(Value::as_object_mut) {
                    accounts
                        .entry(id.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                }
            }
            if let Some(accounts) = doc.get_mut("accounts").and_then(Value::as_object_mut) {
                for (other, sec) in accounts.iter_mut() {
                    if let Some(sec) = sec.as_object_mut() {
                        let on = other == id;
                        store(sec, "enabled", Value::Bool(on));
                        if on {
                            store(sec, "registration.enabled", Value::Bool(true));
                        }
                    }
                }
            }
        }
        let mem = super::storage::MemoryStorage::new();
        mem.save(&doc)?;
        Ok(Arc::new(mem))
    }

    /// Every known setting name of a table, with its help line.
    pub fn known(account: bool) -> Vec<(&'static str, &'static str)> {
        let t = if account { ACCOUNT } else { GLOBAL };
        t.iter().map(|d| (d.name, d.help)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_and_parsing() {
        assert!(check(GLOBAL, "sip.udp_port", &json!(5060)).is_ok());
        assert!(check(GLOBAL, "sip.udp_port", &json!(70000)).is_err());
        assert!(check(GLOBAL, "sip.nope", &json!(1)).is_err());
        assert!(check(ACCOUNT, "rtp.srtp_encryption", &json!("mandatory")).is_ok());
        assert!(check(ACCOUNT, "rtp.srtp_encryption", &json!("always")).is_err());
        assert!(check(
            ACCOUNT,
            "sip.outbound_proxy",
            &json!("sip:proxy.example.com;transport=tcp")
        )
        .is_ok());
        assert!(check(ACCOUNT, "sip.outbound_proxy", &json!("not a uri")).is_err());
        assert_eq!(
            parse_value(ACCOUNT, "registration.expires", "600").unwrap(),
            json!(600)
        );
        assert_eq!(parse_value(ACCOUNT, "enabled", "no").unwrap(), json!(false));
        assert_eq!(
            parse_value(GLOBAL, "sip.transport_list", "udp, tls").unwrap(),
            json!(["udp", "tls"])
        );
        assert_eq!(
            parse_value(ACCOUNT, "display_name", "none").unwrap(),
            Value::Null
        );
        assert!(parse_value(ACCOUNT, "registration.expires", "soon").is_err());
        assert!(is_secret("auth.password"));
    }

    #[test]
    fn nested_store_and_flat_lookup() {
        let mut doc = json!({"sip.udp_port": 5060, "other": {"kept": 1}})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(lookup(&doc, "sip.udp_port"), Some(&json!(5060)));
        store(&mut doc, "sip.udp_port", json!(5070));
        assert_eq!(doc.get("sip.udp_port"), None);
        assert_eq!(lookup(&doc, "sip.udp_port"), Some(&json!(5070)));
        assert_eq!(doc["other"]["kept"], 1);
        store(&mut doc, "sip.udp_port", Value::Null);
        assert_eq!(value_of(GLOBAL, &doc, "sip.udp_port"), json!(0));
    }
}
