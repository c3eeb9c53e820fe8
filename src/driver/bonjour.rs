//! Bonjour (DNS-SD over multicast DNS, RFC 6762/6763) for the P2P account:
//! advertise our SIP contact on the LAN and browse for the neighbours that
//! advertise theirs.
//!
//! Each listening transport is one service: UDP as `_sipuri._udp.local.`,
//! TCP and TLS as `_sipuri._tcp.local.` (TLS told apart by its TXT
//! `transport`). The TXT record carries `txtvers=1`, `user` (the contact's
//! user part), `name` (the display name), `transport` and `instance_id`.
//! A neighbour is one such service of someone else; its URI is built from
//! the address it was found at, its port, user and transport.
//!
//! The multicast DNS work (probing, announcing, caching, goodbyes) is the
//! mdns-sd crate's, on its own thread; `NeighbourTable` is the pure part:
//! what a resolved or removed service means for the neighbour list.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use parking_lot::Mutex;

use crate::proto::sip::transaction::TransportKind;

/// The service types we advertise and browse.
pub const SERVICE_UDP: &str = "_sipuri._udp.local.";
pub const SERVICE_TCP: &str = "_sipuri._tcp.local.";

/// Someone on the LAN who can take SIP requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// The service's full name, unique on the link.
    pub id: String,
    pub display_name: Option<String>,
    /// The address it was found at.
    pub host: IpAddr,
    /// `sip:user@host:port` (with `;transport=` for TCP and TLS).
    pub uri: String,
    pub transport: TransportKind,
    /// Its RFC 5626 instance id, shared by its transports.
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeighbourEvent {
    Added(Neighbour),
    Updated(Neighbour),
    Removed(Neighbour),
}

/// A resolved service as the table needs it.
#[derive(Debug, Clone, Default)]
pub struct Advert {
    pub fullname: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    pub txt: BTreeMap<String, String>,
}

/// The neighbours seen, without our own services.
#[derive(Default)]
pub struct NeighbourTable {
    own: HashSet<String>,
    known: BTreeMap<String, Neighbour>,
}

/// The address to call: a non-loopback IPv4 address first, then loopback.
fn pick_address(addrs: &[IpAddr]) -> Option<IpAddr> {
    let mut v4: Vec<Ipv4Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v) if !v.is_unspecified() && !v.is_multicast() => Some(*v),
            _ => None,
        })
        .collect();
    // Sorted, so the choice does not depend on the set's order.
    v4.sort();
    v4.iter()
        .find(|a| !a.is_loopback())
        .or_else(|| v4.first())
        .map(|a| IpAddr::V4(*a))
}

/// A SIP user part we accept from the network: unreserved characters only,
/// so nothing odd reaches a URI.
fn clean_user(u: &str) -> Option<&str> {
    let ok = !u.is_empty()
        && u.len() <= 64
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b));
    ok.then_some(u)
}

impl NeighbourTable {
    /// Our own services' full names, never reported.
    pub fn set_own(&mut self, names: impl IntoIterator<Item = String>) {
        self.own = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
    }

    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.known.values().cloned().collect()
    }

    /// A service resolved (or resolved again).
    pub fn resolved(&mut self, ad: &Advert) -> Option<NeighbourEvent> {
        let key = ad.fullname.to_ascii_lowercase();
        if self.own.contains(&key) {
            return None;
        }
        let n = Self::neighbour(ad)?;
        match self.known.insert(key, n.clone()) {
            None => Some(NeighbourEvent::Added(n)),
            Some(old) if old != n => Some(NeighbourEvent::Updated(n)),
            Some(_) => None,
        }
    }

    /// A service went away (goodbye or expiry).
    pub fn removed(&mut self, fullname: &str) -> Option<NeighbourEvent> {
        self.known
            .remove(&fullname.to_ascii_lowercase())
            .map(NeighbourEvent::Removed)
    }

    fn neighbour(ad: &Advert) -> Option<Neighbour> {
        let user = clean_user(ad.txt.get("user")?)?;
        let udp_type = ad.fullname.to_ascii_lowercase().ends_with(SERVICE_UDP);
        let transport = match ad.txt.get("transport").map(|t| t.to_ascii_lowercase()) {
            Some(t) if t == "tls" && !udp_type => TransportKind::Tls,
            Some(t) if t == "tcp" && !udp_type => TransportKind::Tcp,
            Some(t) if t == "udp" && udp_type => TransportKind::Udp,
            None if udp_type => TransportKind::Udp,
            None => TransportKind::Tcp,
            // A TXT record contradicting its service type.
            Some(_) => return None,
        };
        if ad.port == 0 {
            return None;
        }
        let host = pick_address(&ad.addresses)?;
        let tparam = match transport {
            TransportKind::Udp => String::new(),
            t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        let display_name = ad
            .txt
            .get("name")
            .map(|s| s.chars().filter(|c| !c.is_control()).collect::<String>())
            .filter(|s| !s.is_empty());
        let instance_id = ad
            .txt
            .get("instance_id")
            .filter(|s| s.starts_with("urn:uuid:") && s.len() < 100)
            .cloned();
        Some(Neighbour {
            id: ad.fullname.clone(),
            display_name,
            host,
            uri: format!("sip:{user}@{host}:{}{tparam}", ad.port),
            transport,
            instance_id,
        })
    }
}

/// What to advertise.
#[derive(Debug, Clone)]
pub struct BonjourConfig {
    /// Our contact's user part.
    pub user: String,
    pub display_name: Option<String>,
    pub instance_id: String,
    /// The transports we listen on and their ports.
    pub services: Vec<(TransportKind, u16)>,
    /// Interface names to use (empty: all).
    pub interfaces: Vec<String>,
}

/// Advertising and browsing, until `stop`.
pub struct Bonjour {
    daemon: ServiceDaemon,
    own: Vec<String>,
    table: Arc<Mutex<NeighbourTable>>,
}

fn advert_of(r: &mdns_sd::ResolvedService) -> Advert {
    Advert {
        fullname: r.fullname.clone(),
        port: r.port,
        addresses: r.addresses.iter().map(|a| a.to_ip_addr()).collect(),
        txt: r
            .txt_properties
            .iter()
            .map(|p| (p.key().to_ascii_lowercase(), p.val_str().to_string()))
            .collect(),
    }
}

/// An instance name from the display name and user: printable, and short
/// enough for a DNS label (63 bytes).
fn instance_name(cfg: &BonjourConfig, transport: TransportKind) -> String {
    let base: String = cfg
        .display_name
        .as_deref()
        .unwrap_or("SIP")
        .chars()
        .filter(|c| !c.is_control() && *c != '.' && *c != '\\')
        .collect();
    let suffix = match transport {
        TransportKind::Tls => format!(" ({}, tls)", cfg.user),
        _ => format!(" ({})", cfg.user),
    };
    let mut name = base.trim().to_string();
    while name.len() + suffix.len() > 63 {
        name.pop();
    }
    format!("{name}{suffix}")
}

impl Bonjour {
    /// Start advertising `cfg` and browsing; `on_event` hears of every
    /// neighbour that comes, changes or goes (on the discovery threads).
    pub fn start(
        cfg: BonjourConfig,
        on_event: impl Fn(NeighbourEvent) + Send + Sync + 'static,
    ) -> Result<Bonjour, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
        let table = Arc::new(Mutex::new(NeighbourTable::default()));
        match Self::advertise_and_browse(&daemon, &cfg, &table, Arc::new(on_event)) {
            Ok(own) => Ok(Bonjour { daemon, own, table }),
            Err(e) => {
                // Nothing half-started stays behind.
                let _ = daemon.shutdown();
                Err(e)
            }
        }
    }

    fn advertise_and_browse(
        daemon: &ServiceDaemon,
        cfg: &BonjourConfig,
        table: &Arc<Mutex<NeighbourTable>>,
        on_event: Arc<dyn Fn(NeighbourEvent) + Send + Sync>,
    ) -> Result<Vec<String>, String> {
        if !cfg.interfaces.is_empty() {
            let _ = daemon.disable_interface(IfKind::All);
            for i in &cfg.interfaces {
                let _ = daemon.enable_interface(IfKind::Name(i.clone()));
            }
        }
        let host = format!("{}.local.", cfg.user);
        let mut own = Vec::new();
        for (transport, port) in &cfg.services {
            let ty = match transport {
                TransportKind::Udp => SERVICE_UDP,
                _ => SERVICE_TCP,
            };
            let t = transport.as_str().to_ascii_lowercase();
            let name = cfg.display_name.clone().unwrap_or_default();
            let props = [
                ("txtvers", "1"),
                ("user", cfg.user.as_str()),
                ("name", name.as_str()),
                ("transport", t.as_str()),
                ("instance_id", cfg.instance_id.as_str()),
            ];
            let info = ServiceInfo::new(
                ty,
                &instance_name(cfg, *transport),
                &host,
                "",
                *port,
                &props[..],
            )
            .map_err(|e| format!("mDNS service: {e}"))?
            .enable_addr_auto();
            own.push(info.get_fullname().to_string());
            daemon
                .register(info)
                .map_err(|e| format!("mDNS register: {e}"))?;
        }
        table.lock().set_own(own.clone());
        for ty in [SERVICE_UDP, SERVICE_TCP] {
            let rx = daemon.browse(ty).map_err(|e| format!("mDNS browse: {e}"))?;
            let table = table.clone();
            let on_event = on_event.clone();
            std::thread::Builder::new()
                .name("sipsimple-bonjour".into())
                .spawn(move || {
                    // Ends when the daemon shuts down and drops the sender.
                    while let Ok(ev) = rx.recv() {
                        let out = match ev {
                            ServiceEvent::ServiceResolved(r) => {
                                table.lock().resolved(&advert_of(&r))
                            }
                            ServiceEvent::ServiceRemoved(_, fullname) => {
                                table.lock().removed(&fullname)
                            }
                            ServiceEvent::SearchStopped(_) => break,
                            _ => None,
                        };
                        if let Some(e) = out {
                            on_event(e);
                        }
                    }
                })
                .map_err(|e| format!("mDNS thread: {e}"))?;
        }
        Ok(own)
    }

    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.table.lock().neighbours()
    }

    /// Say goodbye for our services (so neighbours drop us at once), then
    /// shut the daemon down. Bounded: about a second at most.
    pub fn stop(self) {
        let waits: Vec<_> = self
            .own
            .iter()
            .filter_map(|n| self.daemon.unregister(n).ok())
            .collect();
        for w in waits {
            let _ = w.recv_timeout(Duration::from_secs(1));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(name: &str, ty: &str, port: u16, ip: &str, txt: &[(&str, &str)]) -> Advert {
        Advert {
            fullname: format!("{name}.{ty}"),
            port,
            addresses: vec![ip.parse().unwrap()],
            txt: txt
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn added_updated_removed_and_ourselves_ignored() {
        let mut t = NeighbourTable::default();
        t.set_own(["Me (abc).".to_string() + SERVICE_UDP]);
        let me = advert(
            "Me (abc)",
            SERVICE_UDP,
            5060,
            "10.0.0.1",
            &[("user", "abc")],
        );
        assert_eq!(t.resolved(&me), None);
        let txt = [
            ("user", "bob"),
            ("name", "Bob"),
            ("transport", "tls"),
            ("instance_id", "urn:uuid:1"),
        ];
        let bob = advert("Bob (bob, tls)", SERVICE_TCP, 5061, "10.0.0.2", &txt);
        let Some(NeighbourEvent::Added(n)) = t.resolved(&bob) else {
            panic!("bob not added");
        };
        assert_eq!(n.uri, "sip:bob@10.0.0.2:5061;transport=tls");
        assert_eq!(n.display_name.as_deref(), Some("Bob"));
        assert_eq!(n.transport, TransportKind::Tls);
        assert_eq!(n.instance_id.as_deref(), Some("urn:uuid:1"));
        // The same again is no news; a new address is.
        assert_eq!(t.resolved(&bob), None);
        let mut moved = bob.clone();
        moved.addresses = vec!["10.0.0.9".parse().unwrap()];
        assert!(
            matches!(t.resolved(&moved), Some(NeighbourEvent::Updated(n)) if n.host.to_string() == "10.0.0.9")
        );
        assert_eq!(t.neighbours().len(), 1);
        assert!(matches!(
            t.removed(&bob.fullname.to_uppercase()),
            Some(NeighbourEvent::Removed(_))
        ));
        assert_eq!(t.removed(&bob.fullname), None);
        assert!(t.neighbours().is_empty());
    }

    #[test]
    fn a_routable_address_is_preferred_to_loopback() {
        let mut t = NeighbourTable::default();
        let mut a = advert("A (a)", SERVICE_UDP, 5060, "127.0.0.1", &[("user", "a")]);
        a.addresses.push("192.168.1.5".parse().unwrap());
        a.addresses.push("fe80::1".parse().unwrap());
        let Some(NeighbourEvent::Added(n)) = t.resolved(&a) else {
            panic!()
        };
        assert_eq!(n.uri, "sip:a@192.168.1.5:5060");
        assert_eq!(n.transport, TransportKind::Udp);
    }

    #[test]
    fn bad_adverts_are_ignored() {
        let mut t = NeighbourTable::default();
        let bad = [
            // No user, a user that would break the URI, no port.
            advert("x", SERVICE_UDP, 5060, "10.0.0.3", &[]),
            advert("y", SERVICE_UDP, 5060, "10.0.0.3", &[("user", "a@b>")]),
            advert("z", SERVICE_UDP, 0, "10.0.0.3", &[("user", "z")]),
            // TCP claimed on the UDP service type, and IPv6 only.
            advert(
                "w",
                SERVICE_UDP,
                5060,
                "10.0.0.3",
                &[("user", "w"), ("transport", "tcp")],
            ),
            advert("v", SERVICE_UDP, 5060, "fe80::2", &[("user", "v")]),
        ];
        for b in &bad {
            assert_eq!(t.resolved(b), None, "{b:?}");
        }
        // Control characters leave the display name.
        let c = advert(
            "c",
            SERVICE_UDP,
            5060,
            "10.0.0.4",
            &[("user", "c"), ("name", "Ca\r\nrol")],
        );
        let Some(NeighbourEvent::Added(n)) = t.resolved(&c) else {
            panic!()
        };
        assert_eq!(n.display_name.as_deref(), Some("Carol"));
    }

    #[test]
    fn instance_names_fit_a_label() {
        let cfg = BonjourConfig {
            user: "abcdefgh".into(),
            display_name: Some("A very long name. With dots\\ and more text than fits".into()),
            instance_id: "urn:uuid:x".into(),
            services: vec![],
            interfaces: vec![],
        };
        let n = instance_name(&cfg, TransportKind::Tls);
        assert!(n.len() <= 63, "{n}");
        assert!(n.ends_with(" (abcdefgh, tls)"));
        assert!(!n.contains('.') && !n.contains('\\'));
    }
}
