//! Accounts as sessions see them: the SIP identity and the Contact user.
//!
//! `Account::bonjour()` is the P2P account (`bonjour@local`) that needs no
//! server; `Account::new("alice@example.com")` names a SIP account. Settings,
//! registration and the AccountManager build on this type.

use std::sync::Arc;

use super::error::{Error, Result};
use super::notification::{ObjectId, Sender};
use crate::driver::ids::random_hex;
use crate::proto::sip::Uri;

/// The id of the P2P account.
pub const BONJOUR_ID: &str = "bonjour@local";

struct Inner {
    sender: Sender,
    id: String,
    display_name: Option<String>,
    contact_user: String,
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

impl Account {
    /// An account for `id` (user@domain).
    pub fn new(id: &str, display_name: Option<&str>) -> Result<Account> {
        let uri = Uri::parse(&format!("sip:{id}"))
            .map_err(|e| Error::InvalidArgument(format!("account id {id:?}: {e}")))?;
        let user_ok = uri.as_sip().is_some_and(|s| s.user.is_some());
        if !user_ok || id.contains(['<', '>', ';', '?', ' ']) {
            return Err(Error::InvalidArgument(format!(
                "account id {id:?} must be user@domain"
            )));
        }
        if let Some(d) = display_name {
            if d.contains(['"', '\\', '\r', '\n']) {
                return Err(Error::InvalidArgument(
                    "display name must not contain quotes, backslashes or line breaks".into(),
                ));
            }
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
            }),
        })
    }

    /// The P2P account, `bonjour@local`.
    pub fn bonjour(display_name: Option<&str>) -> Result<Account> {
        Account::new(BONJOUR_ID, display_name)
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn object_id(&self) -> ObjectId {
        self.inner.sender.id
    }

    pub fn display_name(&self) -> Option<&str> {
        self.inner.display_name.as_deref()
    }

    pub fn is_bonjour(&self) -> bool {
        self.inner.id == BONJOUR_ID
    }

    /// The Contact user part (eight random lowercase letters).
    pub fn contact_user(&self) -> &str {
        &self.inner.contact_user
    }

    /// The From/To name-addr of this account. The Bonjour account has no
    /// domain of its own, so it speaks as its contact address.
    pub fn identity(&self, contact_host: &str) -> String {
        let uri = if self.is_bonjour() {
            format!("sip:{}@{contact_host}", self.inner.contact_user)
        } else {
            format!("sip:{}", self.inner.id)
        };
        match &self.inner.display_name {
            Some(d) => format!("\"{d}\" <{uri}>"),
            None => format!("<{uri}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
