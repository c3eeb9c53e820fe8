//! The SIP engine: one task on the runtime thread that owns the transaction
//! layer and the transports, feeds them time and bytes, and hands results to
//! the layers above through channels. Commands are plain channel sends, so
//! any thread may issue them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::tls::{self, ClientConfigs, TlsSettings};
use super::transport::{
    self, Outgoing, StreamSettings, TlsMode, TransportCounters, TransportInput,
};
use crate::proto::sip::screen::build_response;
use crate::proto::sip::transaction::{
    response_peer, Peer, Timer, TimerConfig, TransactionLayer, Transmit, TransportKind, TxError,
    TxEvent, TxKey, TxStats,
};
use crate::proto::sip::{Limits, SipMessage};

/// How the engine listens and behaves.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// UDP bind address; port 0 picks a free port. None: no UDP.
    pub udp: Option<SocketAddr>,
    /// TCP bind address; port 0 picks a free port. None: no TCP.
    pub tcp: Option<SocketAddr>,
    /// TLS bind address (needs `tls_settings.certificate_file`). None: no
    /// TLS listener; outgoing TLS works either way.
    pub tls: Option<SocketAddr>,
    pub tls_settings: TlsSettings,
    pub timers: TimerConfig,
    pub limits: Limits,
    pub max_transactions: usize,
    pub max_connections: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// CRLF keep-alive on TCP/TLS connections we open (RFC 5626 4.4.1):
    /// ping interval (None: off) and how long to wait for the pong.
    pub keepalive_interval: Option<Duration>,
    pub pong_timeout: Duration,
    /// Report every message sent and received as [`EngineEvent::Trace`].
    pub trace: bool,
    /// Where traces go instead of the event channel: called on the runtime
    /// thread before a message is sent and as one is received, so a trace
    /// is out before the peer can answer.
    pub trace_sink: Option<TraceSink>,
}

/// A callback for [`WireTrace`]s (see [`EngineConfig::trace_sink`]).
#[derive(Clone)]
pub struct TraceSink(pub Arc<dyn Fn(WireTrace) + Send + Sync>);

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceSink")
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            udp: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            tls: None,
            tls_settings: TlsSettings::default(),
            timers: TimerConfig::default(),
            limits: Limits::default(),
            max_transactions: 100_000,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            // RFC 5626 4.4.1 recommends 95 to 120 s for connection-oriented flows.
            keepalive_interval: Some(Duration::from_secs(110)),
            pong_timeout: Duration::from_secs(10),
            trace: false,
            trace_sink: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// One message on the wire, for SIP trace notifications.
#[derive(Debug, Clone)]
pub struct WireTrace {
    pub direction: Direction,
    pub peer: Peer,
    pub local: Option<SocketAddr>,
    pub timestamp: SystemTime,
    pub data: Vec<u8>,
}

/// What the engine reports to the layer above (the UA core).
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A new request with its server transaction; answer with `respond`.
    Request {
        key: TxKey,
        request: SipMessage,
        source: Peer,
    },
    /// An ACK outside any transaction (the ACK of a 2xx).
    Ack {
        request: SipMessage,
        source: Peer,
    },
    /// The INVITE `invite` was cancelled by the peer; answer it 487.
    Cancelled {
        invite: TxKey,
    },
    /// A response matching no transaction.
    StrayResponse {
        response: SipMessage,
        source: Peer,
    },
    /// A server INVITE transaction got no ACK (Timer H or L).
    AckTimeout {
        key: TxKey,
        timer: Timer,
    },
    /// A server transaction's response could not be sent.
    ServerTransportError {
        key: TxKey,
    },
    Trace(WireTrace),
}

/// What a client transaction reports. The channel closes when the
/// transaction ends.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    Response(SipMessage),
    /// Timer B or F: no final response.
    Timeout,
    TransportError,
    /// The request was refused before anything was sent.
    Rejected(TxError),
}

/// Counters across the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    pub transactions: TxStats,
    pub live_transactions: usize,
    /// Messages that did not parse (each one dropped, or answered 400/505).
    pub parse_errors: u64,
    pub bad_requests_answered: u64,
    pub send_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_open: usize,
    pub connections_refused: u64,
    pub connections_idle_closed: u64,
    /// CRLFCRLF pings we answered.
    pub keepalive_pings: u64,
    /// Pongs to our pings, and flows closed because none came.
    pub keepalive_pongs: u64,
    pub keepalive_failures: u64,
}

/// Per-request transport options.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// The name a TLS server certificate must match (the domain the request
    /// is for, before DNS); defaults to the peer's IP address.
    pub tls_server_name: Option<String>,
    /// Verify the TLS server certificate (None: the engine's default). This
    /// is the per-account switch.
    pub tls_verify: Option<bool>,
}

enum Cmd {
    SendRequest {
        request: SipMessage,
        peer: Peer,
        options: SendOptions,
        events: mpsc::UnboundedSender<ClientEvent>,
    },
    Respond {
        key: TxKey,
        response: SipMessage,
    },
    Stateless {
        msg: SipMessage,
        peer: Peer,
    },
    Stop,
}

struct Shared {
    local_udp: Option<SocketAddr>,
    local_tcp: Option<SocketAddr>,
    local_tls: Option<SocketAddr>,
    counters: Arc<TransportCounters>,
    stats: Mutex<EngineStats>,
}

impl Shared {
    fn local(&self, transport: TransportKind) -> Option<SocketAddr> {
        match transport {
            TransportKind::Udp => self.local_udp,
            TransportKind::Tcp => self.local_tcp,
            TransportKind::Tls => self.local_tls,
        }
    }
}

/// A handle to the running engine. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Engine {
    cmd: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
}

/// Failure to start the engine.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl Engine {
    /// Bind the transports and start the engine task. Must run inside the
    /// tokio runtime that will own it.
    pub async fn start(
        cfg: EngineConfig,
        events: mpsc::UnboundedSender<EngineEvent>,
    ) -> Result<Engine, StartError> {
        let client_tls = tls::client_configs(&cfg.tls_settings)?;
        let server_tls = match (cfg.tls, &cfg.tls_settings.certificate_file) {
            (None, _) => None,
            (Some(_), Some(file)) => Some(tls::server_config(file)?),
            (Some(_), None) => {
                return Err(
                    tls::TlsError("listening on TLS needs a certificate file".into()).into(),
                )
            }
        };
        let udp = match cfg.udp {
            Some(addr) => Some(Arc::new(UdpSocket::bind(addr).await.map_err(|source| {
                StartError::Bind {
                    transport: "UDP",
                    addr,
                    source,
                }
            })?)),
            None => None,
        };
        let bind_stream = |transport: &'static str, addr: Option<SocketAddr>| async move {
            match addr {
                Some(addr) => {
                    TcpListener::bind(addr)
                        .await
                        .map(Some)
                        .map_err(|source| StartError::Bind {
                            transport,
                            addr,
                            source,
                        })
                }
                None => Ok(None),
            }
        };
        let tcp = bind_stream("TCP", cfg.tcp).await?;
        let tls_listener = bind_stream("TLS", cfg.tls).await?;
        let counters = Arc::new(TransportCounters::default());
        counters.trace.store(cfg.trace, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            local_udp: udp.as_ref().and_then(|s| s.local_addr().ok()),
            local_tcp: tcp.as_ref().and_then(|s| s.local_addr().ok()),
            local_tls: tls_listener.as_ref().and_then(|s| s.local_addr().ok()),
            counters: counters.clone(),
            stats: Mutex::new(EngineStats::default()),
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let settings = StreamSettings {
            limits: cfg.limits,
            idle_timeout: cfg.idle_timeout,
            max_connections: cfg.max_connections,
            connect_timeout: cfg.connect_timeout,
            keepalive: cfg.keepalive_interval,
            pong_timeout: cfg.pong_timeout,
        };
        let mut tasks = Vec::new();
        if let Some(sock) = &udp {
            tasks.push(tokio::spawn(transport::udp_reader(
                sock.clone(),
                cfg.limits,
                in_tx.clone(),
                counters.clone(),
            )));
        }
        for (listener, server) in [(tcp, None), (tls_listener, server_tls)] {
            if let Some(listener) = listener {
                tasks.push(tokio::spawn(transport::tcp_acceptor(
                    listener,
                    server,
                    settings.clone(),
                    in_tx.clone(),
                    counters.clone(),
                )));
            }
        }
        let mut layer = TransactionLayer::new(cfg.timers);
        layer.set_max_transactions(cfg.max_transactions);
        let task = EngineTask {
            layer,
            udp,
            conns: HashMap::new(),
            clients: HashMap::new(),
            client_tls,
            tls_targets: HashMap::new(),
            events,
            trace_sink: cfg.trace_sink.clone(),
            in_tx,
            settings,
            shared: shared.clone(),
            parse_errors: 0,
            bad_requests_answered: 0,
            send_errors: 0,
            tasks,
        };
        tokio::spawn(task.run(cmd_rx, in_rx));
        Ok(Engine {
            cmd: cmd_tx,
            shared,
        })
    }

    /// The address a transport listens on (with the port picked for port 0).
    pub fn local_addr(&self, transport: TransportKind) -> Option<SocketAddr> {
        self.shared.local(transport)
    }

    /// Start a client transaction. Responses, timeout or errors arrive on
    /// the returned channel, which closes when the transaction ends.
    pub fn send_request(
        &self,
        request: SipMessage,
        peer: Peer,
    ) -> mpsc::UnboundedReceiver<ClientEvent> {
        self.send_request_with(request, peer, SendOptions::default())
    }

    /// `send_request` with transport options (TLS server name, verification).
    pub fn send_request_with(
        &self,
        request: SipMessage,
        peer: Peer,
        options: SendOptions,
    ) -> mpsc::UnboundedReceiver<ClientEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.cmd.send(Cmd::SendRequest {
            request,
            peer,
            options,
            events: tx,
        });
        rx
    }

    /// Answer a server transaction.
    pub fn respond(&self, key: TxKey, response: SipMessage) {
        let _ = self.cmd.send(Cmd::Respond { key, response });
    }

    /// Send outside any transaction (the ACK of a 2xx).
    pub fn send_stateless(&self, msg: SipMessage, peer: Peer) {
        let _ = self.cmd.send(Cmd::Stateless { msg, peer });
    }

    /// Takes effect before it returns: every message handled after the
    /// call is traced (a command through the runtime would leave a window
    /// in which an incoming request goes untraced but its answer does not).
    pub fn set_trace(&self, on: bool) {
        self.shared.counters.trace.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = *self.shared.stats.lock();
        let c = &self.shared.counters;
        s.bytes_in = c.bytes_in.load(Ordering::Relaxed);
        s.bytes_out = c.bytes_out.load(Ordering::Relaxed);
        s.connections_open = c.connections_open.load(Ordering::Relaxed);
        s.connections_refused = c.connections_refused.load(Ordering::Relaxed);
        s.connections_idle_closed = c.connections_idle_closed.load(Ordering::Relaxed);
        s.keepalive_pings = c.keepalive_pings.load(Ordering::Relaxed);
        s.keepalive_pongs = c.keepalive_pongs.load(Ordering::Relaxed);
        s.keepalive_failures = c.keepalive_failures.load(Ordering::Relaxed);
        s
    }

    /// Close every socket and connection; pending transactions are dropped
    /// (their channels close).
    pub fn stop(&self) {
        let _ = self.cmd.send(Cmd::Stop);
    }

    pub fn is_running(&self) -> bool {
        !self.cmd.is_closed()
    }
}

struct EngineTask {
    layer: TransactionLayer,
    udp: Option<Arc<UdpSocket>>,
    /// Open stream connections by (transport, remote address).
    conns: HashMap<(TransportKind, SocketAddr), (u64, mpsc::Sender<Outgoing>)>,
    clients: HashMap<TxKey, mpsc::UnboundedSender<ClientEvent>>,
    client_tls: ClientConfigs,
    /// TLS name and verification wanted for connections we will open.
    tls_targets: HashMap<SocketAddr, SendOptions>,
    events: mpsc::UnboundedSender<EngineEvent>,
    trace_sink: Option<TraceSink>,
    in_tx: mpsc::UnboundedSender<TransportInput>,
    settings: StreamSettings,
    shared: Arc<Shared>,
    parse_errors: u64,
    bad_requests_answered: u64,
    send_errors: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl EngineTask {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
        mut in_rx: mpsc::UnboundedReceiver<TransportInput>,
    ) {
        loop {
            let deadline = self.layer.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(Cmd::Stop) => break,
                    Some(c) => self.handle_cmd(c),
                },
                input = in_rx.recv() => {
                    // in_tx lives in self, so the channel never closes here.
                    if let Some(i) = input {
                        self.handle_input(i);
                    }
                    // Take what else is already queued before polling again.
                    while let Ok(i) = in_rx.try_recv() {
                        self.handle_input(i);
                        self.flush().await;
                    }
                }
                _ = sleep => self.layer.handle_timeout(Instant::now()),
            }
            self.flush().await;
        }
        for t in &self.tasks {
            t.abort();
        }
        self.conns.clear();
    }

    fn handle_cmd(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::SendRequest {
                request,
                peer,
                options,
                events,
            } => {
                if peer.transport == TransportKind::Tls {
                    self.tls_targets.insert(peer.addr, options);
                }
                match self.layer.send_request(now, request, peer) {
                    Ok(key) => {
                        self.clients.insert(key, events);
                    }
                    Err(e) => {
                        let _ = events.send(ClientEvent::Rejected(e));
                    }
                }
            }
            Cmd::Respond { key, response } => {
                // A late answer to a transaction that is gone (cancelled,
                // timed out) is not an error worth more than a count.
                if self.layer.send_response(now, key, response).is_err() {
                    self.send_errors += 1;
                }
            }
            Cmd::Stateless { msg, peer } => self.layer.send_stateless(peer, &msg),
            Cmd::Stop => {}
        }
    }

    fn handle_input(&mut self, input: TransportInput) {
        let now = Instant::now();
        match input {
            TransportInput::Message { msg, peer, raw } => {
                if let Some(data) = raw {
                    self.trace(Direction::Incoming, peer, data);
                }
                self.layer.handle_message(now, msg, peer);
            }
            TransportInput::Bad { err, peer } => {
                self.parse_errors += 1;
                if let (Some(code), Some(partial)) = (err.response_code(), err.partial.as_deref()) {
                    let reason = if code == 505 {
                        "Version Not Supported"
                    } else {
                        "Bad Request"
                    };
                    if let Ok(mut r) = build_response(partial, code, reason, None) {
                        let _ = r.push_header("Warning", &format!("399 - \"{err}\""));
                        self.bad_requests_answered += 1;
                        let dest = match partial.top_via() {
                            Some(v) => response_peer(&v, peer),
                            None => peer,
                        };
                        self.layer.send_stateless(dest, &r);
                    }
                }
            }
            TransportInput::Opened { peer, conn, writer } => {
                self.conns
                    .insert((peer.transport, peer.addr), (conn, writer));
            }
            TransportInput::Closed { peer, conn } => {
                let k = (peer.transport, peer.addr);
                if self.conns.get(&k).is_some_and(|(c, _)| *c == conn) {
                    self.conns.remove(&k);
                }
            }
            TransportInput::SendFailed { keys } => {
                self.send_errors += keys.len() as u64;
                for k in keys {
                    self.layer.handle_transport_error(now, k);
                }
            }
        }
    }

    fn trace(&self, direction: Direction, peer: Peer, data: Vec<u8>) {
        let local = self.shared.local(peer.transport);
        let t = WireTrace {
            direction,
            peer,
            local,
            timestamp: SystemTime::now(),
            data,
        };
        match &self.trace_sink {
            Some(sink) => (sink.0)(t),
            None => {
                let _ = self.events.send(EngineEvent::Trace(t));
            }
        }
    }

    /// Carry out transmissions and deliver events.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.layer.poll_transmit() {
                progressed = true;
                // Counters first, so whoever sees the message sees its count.
                self.publish_stats();
                self.transmit(t).await;
            }
            while let Some(ev) = self.layer.poll_event() {
                progressed = true;
                self.publish_stats();
                self.deliver(ev);
            }
            if !progressed {
                break;
            }
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        let mut s = self.shared.stats.lock();
        s.transactions = self.layer.stats();
        s.live_transactions = self.layer.len();
        s.parse_errors = self.parse_errors;
        s.bad_requests_answered = self.bad_requests_answered;
        s.send_errors = self.send_errors;
    }

    async fn transmit(&mut self, t: Transmit) {
        if self.shared.counters.trace.load(Ordering::Relaxed) {
            self.trace(Direction::Outgoing, t.peer, t.data.clone());
        }
        let len = t.data.len() as u64;
        let sent = match t.peer.transport {
            TransportKind::Udp => match &self.udp {
                Some(sock) => sock.send_to(&t.data, t.peer.addr).await.is_ok(),
                None => false,
            },
            TransportKind::Tcp | TransportKind::Tls => self.queue_on_stream(t.peer, t.data, t.key),
        };
        if sent {
            if t.peer.transport == TransportKind::Udp {
                // Stream bytes are counted by the connection task once written.
                self.shared
                    .counters
                    .bytes_out
                    .fetch_add(len, Ordering::Relaxed);
            }
        } else {
            self.send_errors += 1;
            if let Some(k) = t.key {
                self.layer.handle_transport_error(Instant::now(), k);
            }
        }
    }

    /// Hand bytes to the connection for `peer`, opening it if needed. False
    /// when that cannot be done (no TLS name, connection cap, queue full).
    fn queue_on_stream(&mut self, peer: Peer, data: Vec<u8>, key: Option<TxKey>) -> bool {
        let k = (peer.transport, peer.addr);
        if !self.conns.contains_key(&k) {
            let Ok(mode) = self.tls_mode(peer) else {
                return false;
            };
            let Some(c) = transport::stream_connect(
                peer,
                mode,
                self.settings.clone(),
                self.in_tx.clone(),
                self.shared.counters.clone(),
            ) else {
                return false;
            };
            self.conns.insert(k, c);
        }
        self.conns
            .get(&k)
            .is_some_and(|(_, writer)| writer.try_send(Outgoing { data, key }).is_ok())
    }

    /// How to open a new connection to `peer`.
    fn tls_mode(&self, peer: Peer) -> Result<TlsMode, tls::TlsError> {
        if peer.transport != TransportKind::Tls {
            return Ok(TlsMode::None);
        }
        let opts = self
            .tls_targets
            .get(&peer.addr)
            .cloned()
            .unwrap_or_default();
        let name = match &opts.tls_server_name {
            Some(n) => tls::server_name(n)?,
            None => rustls::pki_types::ServerName::IpAddress(peer.addr.ip().into()),
        };
        Ok(TlsMode::Client(
            self.client_tls.choose(opts.tls_verify),
            name,
        ))
    }

    fn deliver(&mut self, ev: TxEvent) {
        let to_client = |this: &mut Self, key: TxKey, e: ClientEvent| {
            if let Some(tx) = this.clients.get(&key) {
                let _ = tx.send(e);
                true
            } else {
                false
            }
        };
        let up = match ev {
            TxEvent::Request {
                key,
                request,
                source,
            } => Some(EngineEvent::Request {
                key,
                request,
                source,
            }),
            TxEvent::Ack { request, source } => Some(EngineEvent::Ack { request, source }),
            TxEvent::Cancelled { invite } => Some(EngineEvent::Cancelled { invite }),
            TxEvent::StrayResponse { response, source } => {
                Some(EngineEvent::StrayResponse { response, source })
            }
            TxEvent::Response { key, response } => {
                to_client(self, key, ClientEvent::Response(response));
                None
            }
            TxEvent::Timeout { key, timer } => {
                if to_client(self, key, ClientEvent::Timeout) {
                    None
                } else {
                    Some(EngineEvent::AckTimeout { key, timer })
                }
            }
            TxEvent::TransportError { key } => {
                if to_client(self, key, ClientEvent::TransportError) {
                    None
                } else {
                    Some(EngineEvent::ServerTransportError { key })
                }
            }
            TxEvent::Terminated { key } => {
                self.clients.remove(&key);
                crate::proto::sip::transaction::shrink(&mut self.clients);
                None
            }
        };
        if let Some(e) = up {
            let _ = self.events.send(e);
        }
    }
}

/// The peer of a SIP URI whose host is an IP address (no DNS needed):
/// transport from `;transport=`, else UDP (TLS for sips:), port from the
/// URI or the transport's default.
pub fn numeric_peer(uri: &crate::proto::sip::Uri) -> Option<Peer> {
    use crate::proto::sip::locate::{plan, Plan};
    let all = [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls];
    match plan(uri, &all).ok()? {
        Plan::Address {
            ip,
            port,
            transport,
        } => Some(Peer {
            transport,
            addr: SocketAddr::new(ip, port),
        }),
        _ => None,
    }
}

/// The local address the OS would use to reach `dest` (no packet is sent).
pub fn local_ip_towards(dest: IpAddr) -> IpAddr {
    let bind: SocketAddr = if dest.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(SocketAddr::new(dest, 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(if dest.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        })
}
