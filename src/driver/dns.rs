//! RFC 3263 server location over hickory-resolver: `DNSLookup` gives the
//! ordered routes for a SIP URI (NAPTR, SRV, A/AAAA as the URI needs), and
//! `send_with_failover` tries them in turn on transport error, timeout or
//! 503.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

use super::engine::{ClientEvent, Engine, SendOptions};
use crate::proto::sip::locate::{self, Naptr, Plan, Srv};
use crate::proto::sip::transaction::{Peer, TransportKind};
use crate::proto::sip::{SipMessage, Uri};

/// One place to send a request: address, transport, and the name a TLS
/// certificate must carry there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub address: SocketAddr,
    pub transport: TransportKind,
    pub tls_name: String,
}

impl Route {
    pub fn peer(&self) -> Peer {
        Peer {
            transport: self.transport,
            addr: self.address,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Locate(#[from] locate::LocateError),
    #[error("cannot set up DNS: {0}")]
    Setup(String),
    #[error("no SIP server found for {0}")]
    NotFound(String),
}

/// The SDK's DNSLookup.
#[derive(Clone)]
pub struct DNSLookup {
    resolver: TokioResolver,
}

/// A number in 0..=n for the RFC 2782 weighted choice.
fn rand_upto(n: u32) -> u32 {
    getrandom::u32().unwrap_or(0) % n.saturating_add(1)
}

impl DNSLookup {
    /// Resolve through the system's configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<DNSLookup, DnsError> {
        let resolver = TokioResolver::builder_tokio()
            .map_err(|e| DnsError::Setup(e.to_string()))?
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(DNSLookup { resolver })
    }

    /// Resolve through these name servers only (UDP, then TCP for large
    /// answers), e.g. a local server in tests or a corporate resolver.
    pub fn with_nameservers(servers: &[SocketAddr]) -> Result<DNSLookup, DnsError> {
        let ns = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(ns),
            TokioRuntimeProvider::default(),
        );
        builder.options_mut().timeout = Duration::from_secs(2);
        builder.options_mut().attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(DNSLookup { resolver })
    }

    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(l) => l.iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn srv(&self, name: &str) -> Vec<Srv> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let Ok(l) = self.resolver.lookup(fqdn.as_str(), RecordType::SRV).await else {
            return Vec::new();
        };
        let records = l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii().trim_end_matches('.').to_string(),
                }),
                _ => None,
            })
            .collect();
        locate::order_srv(records, &mut rand_upto)
    }

    async fn naptr(&self, domain: &str) -> Vec<Naptr> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let Ok(l) = self.resolver.lookup(fqdn.as_str(), RecordType::NAPTR).await else {
            return Vec::new();
        };
        l.answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    service: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: n.replacement.to_ascii(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Expand SRV targets to routes.
    async fn srv_routes(&self, t: TransportKind, name: &str, tls_name: &str, out: &mut Vec<Route>) {
        for s in self.srv(name).await {
            for ip in self.addresses(&s.target).await {
                out.push(Route {
                    address: SocketAddr::new(ip, s.port),
                    transport: t,
                    tls_name: tls_name.to_string(),
                });
            }
        }
    }

    /// SRV per NAPTR target (or per transport without NAPTR), then the
    /// domain's own addresses at the default port with the first transport
    /// when no SRV exists (RFC 3263 4.2).
    async fn srv_then_a(
        &self,
        domain: &str,
        transports: &[TransportKind],
        naptr: Vec<(TransportKind, String)>,
        routes: &mut Vec<Route>,
    ) {
        if naptr.is_empty() {
            for t in transports {
                let name = locate::srv_name(*t, domain);
                self.srv_routes(*t, &name, domain, routes).await;
            }
        } else {
            for (t, name) in naptr {
                self.srv_routes(t, &name, domain, routes).await;
            }
        }
        if let (true, Some(&t)) = (routes.is_empty(), transports.first()) {
            for ip in self.addresses(domain).await {
                routes.push(Route {
                    address: SocketAddr::new(ip, locate::default_port(t)),
                    transport: t,
                    tls_name: domain.to_string(),
                });
            }
        }
    }

    /// The ordered routes for `uri` over the transports we support (in our
    /// order of preference), per RFC 3263.
    pub async fn lookup_sip_proxy(
        &self,
        uri: &Uri,
        transports: &[TransportKind],
    ) -> Result<Vec<Route>, DnsError> {
        let mut routes = Vec::new();
        match locate::plan(uri, transports)? {
            Plan::Address {
                ip,
                port,
                transport,
            } => routes.push(Route {
                address: SocketAddr::new(ip, port),
                transport,
                tls_name: ip.to_string(),
            }),
            Plan::HostPort {
                host,
                port,
                transport,
            } => {
                for ip in self.addresses(&host).await {
                    routes.push(Route {
                        address: SocketAddr::new(ip, port),
                        transport,
                        tls_name: host.clone(),
                    });
                }
            }
            Plan::Naptr { domain, transports } => {
                let naptr = locate::naptr_targets(self.naptr(&domain).await, &transports);
                self.srv_then_a(&domain, &transports, naptr, &mut routes)
                    .await;
            }
            Plan::Srv { domain, transports } => {
                self.srv_then_a(&domain, &transports, Vec::new(), &mut routes)
                    .await;
            }
        }
        if routes.is_empty() {
            return Err(DnsError::NotFound(uri.to_string()));
        }
        let mut seen = std::collections::HashSet::new();
        routes.retain(|r| seen.insert((r.address, r.transport)));
        Ok(routes)
    }
}

/// Why every route failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("all {tried} routes failed; last: {last}")]
pub struct FailoverError {
    pub tried: usize,
    pub last: String,
}

/// Send a request built per route (`build` gets each route: a fresh Via and
/// branch are its job) until one answers with something other than 503;
/// transport errors and timeouts move on too (RFC 3263 section 4.3). The
/// route that answered and its final response come back.
pub async fn send_with_failover(
    engine: &Engine,
    routes: &[Route],
    tls_verify: Option<bool>,
    mut build: impl FnMut(&Route) -> SipMessage,
) -> Result<(Route, SipMessage), FailoverError> {
    let mut last = String::from("no routes");
    for route in routes {
        let opts = SendOptions {
            tls_server_name: Some(route.tls_name.clone()),
            tls_verify,
        };
        let mut rx = engine.send_request_with(build(route), route.peer(), opts);
        let mut outcome = None;
        while let Some(ev) = rx.recv().await {
            match ev {
                ClientEvent::Response(r) => {
                    let code = r.status().map(|s| s.0).unwrap_or(0);
                    if code >= 200 {
                        outcome = Some(r);
                        break;
                    }
                }
                ClientEvent::Timeout => {
                    last = format!("{} timed out", route.address);
                    break;
                }
                ClientEvent::TransportError => {
                    last = format!("{} transport error", route.address);
                    break;
                }
                ClientEvent::Rejected(e) => {
                    last = e.to_string();
                    break;
                }
            }
        }
        match outcome {
            Some(r) if r.status().map(|s| s.0) == Some(503) => {
                last = format!("{} answered 503", route.address);
            }
            Some(r) => return Ok((route.clone(), r)),
            None => {}
        }
    }
    Err(FailoverError {
        tried: routes.len(),
        last,
    })
}
