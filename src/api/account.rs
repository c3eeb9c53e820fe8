//! Accounts: the SIP identity, the Contact user, and (for accounts kept by
//! the AccountManager) their settings.
//!
//! `Account::bonjour()` is the P2P account (`bonjour@local`) that needs no
//! server; `Account::new("alice@example.com")` names a SIP account that is
//! not stored anywhere (handy for tests and one-off calls). Accounts from
//! the AccountManager read and write their settings by dotted name and
//! post CFGSettingsObjectDidChange on `save()`.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use super::settings::{account_value, check, store, value_of, SettingsStore, ACCOUNT, DID_CHANGE};
use crate::driver::ids::random_hex;
use crate::proto::sip::auth::Credentials;
use crate::proto::sip::Uri;

/// The id of the P2P account.
pub const BONJOUR_ID: &str = "bonjour@local";

/// Called after a save changed the named settings.
pub(crate) type ChangeHook = Box<dyn Fn(&Account, &[String]) + Send + Sync>;

/// Where a managed account's settings live.
pub(crate) struct Backing {
    pub store: Arc<SettingsStore>,
    pending: Mutex<Vec<(String, Value)>>,
    /// Told after a save that changed something (the manager re-applies).
    pub on_change: Mutex<Option<ChangeHook>>,
}

struct Inner {
    sender: Sender,
    id: String,
    display_name: Option<String>,
    contact_user: String,
    backing: Option<Backing>,
}

/// A SIP account (user@domain) or the Bonjour account.
#[derive(Clone)]
pub struct Account {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl PartialEq for Account {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Eight lowercase letters, like the SDK's contact user names.
fn contact_user() -> String {
    random_hex(8)
        .bytes()
        .take(8)
        .map(|b| (b'a' + (b % 26)) as char)
        .collect()
}

/// Check an account id: user@domain (or the Bonjour id).
pub fn check_id(id: &str) -> Result<Uri> {
    let uri = Uri::parse(&format!("sip:{id}"))
        .map_err(|e| Error::InvalidArgument(format!("account id {id:?}: {e}")))?;
    let user_ok = uri.as_sip().is_some_and(|s| s.user.is_some());
    if !user_ok || id.contains(['<', '>', ';', '?', ' ', ',', '"']) {
        return Err(Error::InvalidArgument(format!(
            "account id {id:?} must be user@domain"
        )));
    }
    Ok(uri)
}

fn check_display_name(d: &str) -> Result<()> {
    if d.contains(['"', '\\', '\r', '\n']) {
        return Err(Error::InvalidArgument(
            "display name must not contain quotes, backslashes or line breaks".into(),
        ));
    }
    Ok(())
}

impl Account {
    /// An account for `id` (user@domain) kept nowhere.
    pub fn new(id: &str, display_name: Option<&str>) -> Result<Account> {
        check_id(id)?;
        if let Some(d) = display_name {
            check_display_name(d)?;
        }
        Ok(Account {
            inner: Arc::new(Inner {
                sender: Sender {
                    id: ObjectId::new(),
                    kind: "Account",
                },
                id: id.to_string(),
                display_name: display_name.map(str::to_string),
                contact_user: contact_user(),
                backing: None,
            }),
        })
    }

    /// The P2P account, `bonjour@local`.
    pub fn bonjour(display_name: Option<&str>) -> Result<Account> {
        Account::new(BONJOUR_ID, display_name)
    }

    /// An account whose settings live in `store` under `accounts.<id>`.
    pub(crate) fn managed(id: &str, store: Arc<SettingsStore>) -> Result<Account> {
        check_id(id)?;
        Ok(Account {
            inner: Arc::new(Inner {
                sender: Sender {
                    id: ObjectId::new(),
                    kind: if id == BONJOUR_ID {
                        "BonjourAccount"
                    } else {
                        "Account"
                    },
                },
                id: id.to_string(),
                display_name: None,
                contact_user: contact_user(),
                backing: Some(Backing {
                    store,
                    pending: Mutex::new(Vec::new()),
                    on_change: Mutex::new(None),
                }),
            }),
        })
    }

    pub(crate) fn backing(&self) -> Option<&Backing> {
        self.inner.backing.as_ref()
    }

    pub(crate) fn sender(&self) -> &Sender {
        &self.inner.sender
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn object_id(&self) -> ObjectId {
        self.inner.sender.id
    }

    /// The address of record, `sip:user@domain`.
    pub fn uri(&self) -> String {
        format!("sip:{}", self.inner.id)
    }

    pub fn is_bonjour(&self) -> bool {
        self.inner.id == BONJOUR_ID
    }

    /// The Contact user part (eight random lowercase letters).
    pub fn contact_user(&self) -> &str {
        &self.inner.contact_user
    }

    fn section(&self) -> Map<String, Value> {
        match &self.inner.backing {
            Some(b) => b
                .store
                .snapshot()
                .get("accounts")
                .and_then(|a| a.get(&self.inner.id))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            None => Map::new(),
        }
    }

    /// A setting by dotted name (unsaved changes included), or its default.
    pub fn get(&self, name: &str) -> Result<Value> {
        check(ACCOUNT, name, &Value::Null)?;
        if let Some(b) = &self.inner.backing {
            if let Some((_, v)) = b.pending.lock().iter().rev().find(|(n, _)| n == name) {
                if !v.is_null() {
                    return Ok(v.clone());
                }
            }
        } else if name == "display_name" {
            return Ok(self
                .inner
                .display_name
                .clone()
                .map(Value::from)
                .unwrap_or(Value::Null));
        }
        Ok(self.value_in(&self.section(), name))
    }

    /// A setting's value in a stored section, else its default. Accounts
    /// made without a manager have the table's defaults (they are in use
    /// by construction).
    fn value_in(&self, section: &Map<String, Value>, name: &str) -> Value {
        match self.inner.backing {
            Some(_) => account_value(&self.inner.id, section, name),
            None => value_of(ACCOUNT, section, name),
        }
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.get(name)
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    pub(crate) fn number(&self, name: &str) -> u64 {
        self.get(name).ok().and_then(|v| v.as_u64()).unwrap_or(0)
    }

    /// Change a setting (checked now, written by `save`); null resets it.
    /// Accounts made with `Account::new` have nowhere to keep settings.
    pub fn set(&self, name: &str, value: Value) -> Result<()> {
        let b = self.inner.backing.as_ref().ok_or_else(|| {
            Error::InvalidState(format!(
                "account {} is not kept by the AccountManager; its settings cannot change",
                self.inner.id
            ))
        })?;
        check(ACCOUNT, name, &value)?;
        if name == "display_name" {
            if let Some(d) = value.as_str() {
                check_display_name(d)?;
            }
        }
        b.pending.lock().push((name.to_string(), value));
        Ok(())
    }

    /// Write the changes; posts CFGSettingsObjectDidChange (`modified`) when
    /// something changed, and applies the settings (activation,
    /// registration) in any case.
    pub fn save(&self) -> Result<Vec<String>> {
        let Some(b) = &self.inner.backing else {
            return Ok(Vec::new());
        };
        let changes = std::mem::take(&mut *b.pending.lock());
        if changes.is_empty() {
            // Nothing to write; an enabled account not yet active starts.
            if let Some(cb) = b.on_change.lock().as_ref() {
                cb(self, &[]);
            }
            return Ok(Vec::new());
        }
        let before = self.section();
        let id = self.inner.id.clone();
        b.store.update(|doc| {
            let accounts = doc
                .entry("accounts".to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !accounts.is_object() {
                *accounts = Value::Object(Map::new());
            }
            let accounts = accounts.as_object_mut().expect("made an object above");
            let sec = accounts
                .entry(id.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !sec.is_object() {
                *sec = Value::Object(Map::new());
            }
            let sec = sec.as_object_mut().expect("made an object above");
            for (n, v) in &changes {
                store(sec, n, v.clone());
            }
        })?;
        let after = self.section();
        let mut modified: Vec<String> = Vec::new();
        for (n, _) in &changes {
            if self.value_in(&before, n) != self.value_in(&after, n) && !modified.contains(n) {
                modified.push(n.clone());
            }
        }
        if !modified.is_empty() {
            NotificationCenter::default().post_notification(
                DID_CHANGE,
                &self.inner.sender,
                NotificationData::new().with("modified", modified.clone()),
            );
        }
        if let Some(cb) = b.on_change.lock().as_ref() {
            cb(self, &modified);
        }
        Ok(modified)
    }

    pub fn display_name(&self) -> Option<String> {
        self.text("display_name")
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.backing.is_none() || self.flag("enabled")
    }

    /// `sip.outbound_proxy`: where every request of this account goes
    /// first (None: straight to the target).
    pub fn outbound_proxy(&self) -> Result<Option<Uri>> {
        self.text("sip.outbound_proxy")
            .map(|s| {
                Uri::parse(&s)
                    .map_err(|e| Error::InvalidArgument(format!("sip.outbound_proxy {s:?}: {e}")))
            })
            .transpose()
    }

    /// The digest credentials: `auth.username` (default: the id's user)
    /// and `auth.password`. The Bonjour account has none.
    pub fn credentials(&self) -> Option<Credentials> {
        if self.is_bonjour() {
            return None;
        }
        let password = self.text("auth.password")?;
        let username = self.text("auth.username").unwrap_or_else(|| {
            self.inner
                .id
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string()
        });
        Some(Credentials {
            realm: None,
            username,
            password,
        })
    }

    /// A stable RFC 5626 instance id for this device and account (kept in
    /// the account's settings under `instance_id` once made).
    pub fn instance_id(&self) -> String {
        if let Some(Value::String(s)) = self.section().get("instance_id") {
            if s.starts_with("urn:uuid:") {
                return s.clone();
            }
        }
        let h = random_hex(16);
        let uuid = format!(
            "urn:uuid:{}-{}-4{}-8{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        );
        if let Some(b) = &self.inner.backing {
            let id = self.inner.id.clone();
            let u = uuid.clone();
            let _ = b.store.update(|doc| {
                if let Some(sec) = doc
                    .get_mut("accounts")
                    .and_then(|a| a.get_mut(&id))
                    .and_then(Value::as_object_mut)
                {
                    sec.insert("instance_id".into(), Value::from(u));
                }
            });
        }
        uuid
    }

    /// The From/To name-addr of this account. The Bonjour account has no
    /// domain of its own, so it speaks as its contact address.
    pub fn identity(&self, contact_host: &str) -> String {
        let uri = if self.is_bonjour() {
            format!("sip:{}@{contact_host}", self.inner.contact_user)
        } else {
            format!("sip:{}", self.inner.id)
        };
        match self.display_name() {
            Some(d) => format!("\"{d}\" <{uri}>"),
            None => format!("<{uri}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::storage::MemoryStorage;
    use serde_json::json;

    #[test]
    fn ids_and_identities() {
        let a = Account::new("alice@example.com", Some("Alice")).unwrap();
        assert_eq!(a.identity("10.0.0.1"), "\"Alice\" <sip:alice@example.com>");
        assert_eq!(a.contact_user().len(), 8);
        assert!(a.contact_user().bytes().all(|b| b.is_ascii_lowercase()));
        let b = Account::bonjour(None).unwrap();
        assert!(b.is_bonjour());
        assert!(b.identity("127.0.0.1").starts_with("<sip:"));
        for bad in ["alice", "", "a b@c", "<x@y>", "x@y;z"] {
            assert!(Account::new(bad, None).is_err(), "{bad}");
        }
        assert!(Account::new("a@b", Some("x\"y")).is_err());
        assert!(a.set("enabled", json!(false)).is_err(), "unmanaged");
    }

    #[test]
    fn managed_settings_round_trip_and_keep_unknown_keys() {
        let storage = Arc::new(MemoryStorage::new());
        let doc = json!({"accounts": {"alice@example.com": {"x-unknown": {"kept": true}}}});
        let store = Arc::new(SettingsStore::new(
            storage.clone(),
            doc.as_object().unwrap().clone(),
        ));
        let a = Account::managed("alice@example.com", store.clone()).unwrap();
        assert_eq!(a.get("registration.expires").unwrap(), json!(600));
        a.set("registration.expires", json!(300)).unwrap();
        a.set("auth.password", json!("s3cret")).unwrap();
        assert!(a.set("registration.expires", json!("soon")).is_err());
        assert!(a.set("no.such", json!(1)).is_err());
        let modified = a.save().unwrap();
        assert_eq!(modified, vec!["registration.expires", "auth.password"]);
        let saved = crate::api::storage::Storage::load(&*storage).unwrap();
        let sec = &saved["accounts"]["alice@example.com"];
        assert_eq!(sec["registration"]["expires"], 300);
        assert_eq!(sec["x-unknown"]["kept"], true);
        assert_eq!(a.credentials().unwrap().username, "alice");
        // Saving the same value again changes nothing.
        a.set("registration.expires", json!(300)).unwrap();
        assert!(a.save().unwrap().is_empty());
        let iid = a.instance_id();
        assert!(iid.starts_with("urn:uuid:") && iid.len() == 45, "{iid}");
        assert_eq!(a.instance_id(), iid, "stable");
    }

    #[test]
    fn the_bonjour_account_is_off_until_enabled() {
        let storage = Arc::new(MemoryStorage::new());
        let store = Arc::new(SettingsStore::new(storage, Map::new()));
        let b = Account::managed(BONJOUR_ID, store.clone()).unwrap();
        assert!(!b.is_enabled());
        assert_eq!(b.get("enabled").unwrap(), json!(false));
        // Other accounts stay on by default; an unmanaged Bonjour account
        // (sessions without an AccountManager) is usable.
        assert!(Account::managed("a@b.c", store).unwrap().is_enabled());
        assert!(Account::bonjour(None).unwrap().is_enabled());
        b.set("enabled", json!(true)).unwrap();
        assert_eq!(b.save().unwrap(), vec!["enabled"]);
        assert!(b.is_enabled());
        b.set("enabled", json!(null)).unwrap();
        assert_eq!(b.save().unwrap(), vec!["enabled"]);
        assert!(!b.is_enabled());
    }
}
