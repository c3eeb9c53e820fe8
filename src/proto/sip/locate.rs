//! Locating SIP servers (RFC 3263), the decisions without the I/O: which
//! lookups a URI needs, how NAPTR records map to SRV names, and the RFC 2782
//! order of SRV targets. The driver runs the DNS queries in between.

use super::transaction::TransportKind;
use super::uri::{Host, Uri};

/// Where to start for a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// An IP address: no DNS at all.
    Address {
        ip: std::net::IpAddr,
        port: u16,
        transport: TransportKind,
    },
    /// A name with an explicit port: A/AAAA only (RFC 3263 4.2).
    HostPort {
        host: String,
        port: u16,
        transport: TransportKind,
    },
    /// A name with a transport but no port: SRV for that transport, then
    /// A/AAAA at the default port.
    Srv {
        domain: String,
        transports: Vec<TransportKind>,
    },
    /// A name alone: NAPTR, then SRV per transport, then A/AAAA (4.1).
    Naptr {
        domain: String,
        transports: Vec<TransportKind>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("{0} is not a SIP URI")]
    NotSip(String),
    #[error("transport {0} is not supported here")]
    UnsupportedTransport(String),
    #[error("no supported transport for {0}")]
    NoTransport(String),
}

pub fn default_port(t: TransportKind) -> u16 {
    if t == TransportKind::Tls {
        5061
    } else {
        5060
    }
}

/// Decide what a URI needs. `supported` lists our transports in order of
/// preference; a sips: URI only ever uses TLS.
pub fn plan(uri: &Uri, supported: &[TransportKind]) -> Result<Plan, LocateError> {
    let sip = uri
        .as_sip()
        .ok_or_else(|| LocateError::NotSip(uri.to_string()))?;
    let usable: Vec<TransportKind> = supported
        .iter()
        .copied()
        .filter(|t| !sip.secure || *t == TransportKind::Tls)
        .collect();
    if usable.is_empty() {
        return Err(LocateError::NoTransport(uri.to_string()));
    }
    let explicit = match sip.transport() {
        Some(t) => {
            let k = TransportKind::parse(&t)
                .filter(|k| usable.contains(k))
                .ok_or(LocateError::UnsupportedTransport(t))?;
            Some(if sip.secure { TransportKind::Tls } else { k })
        }
        None => None,
    };
    // The default when nothing else says: UDP for sip (TCP if UDP is not
    // ours), TLS for sips.
    let fallback = || {
        explicit.unwrap_or(if sip.secure {
            TransportKind::Tls
        } else if usable.contains(&TransportKind::Udp) {
            TransportKind::Udp
        } else {
            usable[0]
        })
    };
    match &sip.host {
        Host::V4(a) => {
            let t = fallback();
            Ok(Plan::Address {
                ip: (*a).into(),
                port: sip.port.unwrap_or(default_port(t)),
                transport: t,
            })
        }
        Host::V6(a) => {
            let t = fallback();
            Ok(Plan::Address {
                ip: (*a).into(),
                port: sip.port.unwrap_or(default_port(t)),
                transport: t,
            })
        }
        Host::Domain(n) => {
            if let Some(port) = sip.port {
                Ok(Plan::HostPort {
                    host: n.clone(),
                    port,
                    transport: fallback(),
                })
            } else if let Some(t) = explicit {
                Ok(Plan::Srv {
                    domain: n.clone(),
                    transports: vec![t],
                })
            } else {
                Ok(Plan::Naptr {
                    domain: n.clone(),
                    transports: usable,
                })
            }
        }
    }
}

/// The SRV prefix for a transport (RFC 3263 4.1).
pub fn srv_name(t: TransportKind, domain: &str) -> String {
    let d = domain.trim_end_matches('.');
    match t {
        TransportKind::Udp => format!("_sip._udp.{d}"),
        TransportKind::Tcp => format!("_sip._tcp.{d}"),
        TransportKind::Tls => format!("_sips._tcp.{d}"),
    }
}

/// One NAPTR record as the driver read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub service: String,
    pub replacement: String,
}

fn service_transport(service: &str) -> Option<TransportKind> {
    match service.to_ascii_uppercase().as_str() {
        "SIP+D2U" => Some(TransportKind::Udp),
        "SIP+D2T" => Some(TransportKind::Tcp),
        "SIPS+D2T" => Some(TransportKind::Tls),
        _ => None,
    }
}

/// SRV names to query, in order, from NAPTR records: only "s" flag records
/// for services we support, sorted by order then preference (servers such
/// as dnsmasq return them unsorted).
pub fn naptr_targets(
    mut records: Vec<Naptr>,
    usable: &[TransportKind],
) -> Vec<(TransportKind, String)> {
    records.sort_by_key(|r| (r.order, r.preference));
    records
        .into_iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter_map(|r| {
            let t = service_transport(&r.service)?;
            usable
                .contains(&t)
                .then(|| (t, r.replacement.trim_end_matches('.').to_string()))
        })
        .collect()
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// RFC 2782 order: ascending priority; within a priority, repeatedly pick a
/// record with probability proportional to its weight (zero-weight records
/// get a small chance, placed first as the RFC suggests). `rand(n)` returns
/// a number in 0..=n.
pub fn order_srv(mut records: Vec<Srv>, rand: &mut dyn FnMut(u32) -> u32) -> Vec<Srv> {
    // "." as target means: no service here.
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let p = records[0].priority;
        let mut group: Vec<Srv> = Vec::new();
        records.retain(|r| {
            if r.priority == p {
                group.push(r.clone());
                false
            } else {
                true
            }
        });
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rand(total);
            let mut running = 0u32;
            let mut idx = group.len() - 1;
            for (i, r) in group.iter().enumerate() {
                running += u32::from(r.weight);
                if running >= pick {
                    idx = i;
                    break;
                }
            }
            out.push(group.remove(idx));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransportKind::*;

    fn u(s: &str) -> Uri {
        Uri::parse(s).unwrap()
    }

    #[test]
    fn plans_follow_rfc3263() {
        let all = [Udp, Tcp, Tls];
        assert_eq!(
            plan(&u("sip:10.0.0.1"), &all).unwrap(),
            Plan::Address {
                ip: "10.0.0.1".parse().unwrap(),
                port: 5060,
                transport: Udp
            }
        );
        assert_eq!(
            plan(&u("sips:[2001:db8::1]"), &all).unwrap(),
            Plan::Address {
                ip: "2001:db8::1".parse().unwrap(),
                port: 5061,
                transport: Tls
            }
        );
        assert_eq!(
            plan(&u("sip:example.com:5070"), &all).unwrap(),
            Plan::HostPort {
                host: "example.com".into(),
                port: 5070,
                transport: Udp
            }
        );
        assert_eq!(
            plan(&u("sip:example.com;transport=tcp"), &all).unwrap(),
            Plan::Srv {
                domain: "example.com".into(),
                transports: vec![Tcp]
            }
        );
        assert_eq!(
            plan(&u("sips:example.com"), &all).unwrap(),
            Plan::Naptr {
                domain: "example.com".into(),
                transports: vec![Tls]
            }
        );
        assert_eq!(
            plan(&u("sip:10.0.0.1"), &[Tcp]).unwrap(),
            Plan::Address {
                ip: "10.0.0.1".parse().unwrap(),
                port: 5060,
                transport: Tcp
            }
        );
        assert!(matches!(
            plan(&u("sip:a.com;transport=sctp"), &all),
            Err(LocateError::UnsupportedTransport(_))
        ));
        assert!(matches!(
            plan(&u("sips:a.com"), &[Udp]),
            Err(LocateError::NoTransport(_))
        ));
        assert!(matches!(
            plan(&u("tel:+1234"), &all),
            Err(LocateError::NotSip(_))
        ));
    }

    #[test]
    fn naptr_sorted_and_filtered() {
        let n = |order, preference, service: &str, r: &str| Naptr {
            order,
            preference,
            flags: "s".into(),
            service: service.into(),
            replacement: r.into(),
        };
        let recs = vec![
            n(20, 10, "SIP+D2U", "_sip._udp.example.com."),
            n(10, 20, "SIP+D2T", "_sip._tcp.example.com."),
            n(10, 10, "SIPS+D2T", "_sips._tcp.example.com."),
            n(5, 5, "SIP+D2S", "_sip._sctp.example.com."),
        ];
        assert_eq!(
            naptr_targets(recs.clone(), &[Udp, Tcp, Tls]),
            vec![
                (Tls, "_sips._tcp.example.com".to_string()),
                (Tcp, "_sip._tcp.example.com".to_string()),
                (Udp, "_sip._udp.example.com".to_string()),
            ]
        );
        assert_eq!(naptr_targets(recs, &[Udp]).len(), 1);
    }

    #[test]
    fn srv_priority_then_weight() {
        let s = |priority, weight, target: &str| Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        };
        let recs = vec![
            s(20, 0, "backup"),
            s(10, 60, "a"),
            s(10, 40, "b"),
            s(5, 0, "."),
        ];
        // rand returning 0 picks the first non-exhausted weight each time.
        let got = order_srv(recs.clone(), &mut |_| 0);
        let names: Vec<_> = got.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["a", "b", "backup"]);
        // rand returning the maximum picks the last of the group.
        let got = order_srv(recs.clone(), &mut |n| n);
        let names: Vec<_> = got.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["b", "a", "backup"]);
        // Over many draws the 60/40 split shows.
        let mut seed = 12345u64;
        let mut first_a = 0;
        for _ in 0..2000 {
            let mut rnd = |n: u32| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) % (u64::from(n) + 1)) as u32
            };
            if order_srv(recs.clone(), &mut rnd)[0].target == "a" {
                first_a += 1;
            }
        }
        assert!((1050..1350).contains(&first_a), "{first_a}");
    }
}
