//! SIP transports on the runtime thread: UDP, and TCP with one task per
//! connection. They turn bytes into parsed messages for the engine and carry
//! out its transmissions. Bounded: a cap on connections, a per-connection
//! framing limit (the stream framer refuses a message or header section over
//! the stream limit), an idle timeout, and a bounded write queue per
//! connection.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::proto::sip::transaction::{Peer, TransportKind, TxKey};
use crate::proto::sip::{Limits, ParseError, SipMessage, StreamEvent, StreamFramer};

/// What transports tell the engine.
pub(crate) enum TransportInput {
    Message {
        msg: SipMessage,
        peer: Peer,
        /// The bytes as received, only while wire tracing is on.
        raw: Option<Vec<u8>>,
    },
    /// A message that did not parse (UDP: the datagram; streams: the
    /// connection is closed after this).
    Bad {
        err: ParseError,
        peer: Peer,
    },
    /// A connection is up (accepted or connected); writes for `peer` go here.
    Opened {
        peer: Peer,
        conn: u64,
        writer: mpsc::Sender<Outgoing>,
    },
    Closed {
        peer: Peer,
        conn: u64,
    },
    /// Bytes for these transactions could not be sent.
    SendFailed {
        keys: Vec<TxKey>,
    },
}

/// One message to write on a connection.
pub(crate) struct Outgoing {
    pub data: Vec<u8>,
    pub key: Option<TxKey>,
}

/// Transport-level counters, shared with the engine's statistics.
#[derive(Default)]
pub(crate) struct TransportCounters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_open: AtomicUsize,
    pub connections_refused: AtomicU64,
    pub connections_idle_closed: AtomicU64,
    pub keepalive_pings: AtomicU64,
    /// Pongs that answered our pings, and flows closed for want of one.
    pub keepalive_pongs: AtomicU64,
    pub keepalive_failures: AtomicU64,
    /// Wire tracing on: transports keep the raw bytes of what they read.
    pub trace: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub(crate) struct StreamSettings {
    pub limits: Limits,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// On connections we open: send a CRLFCRLF ping this often and close the
    /// flow when no CRLF pong comes within `pong_timeout` (RFC 5626 4.4.1).
    pub keepalive: Option<Duration>,
    pub pong_timeout: Duration,
}

/// The TLS side of a connection, if any.
pub(crate) enum TlsMode {
    None,
    Client(Arc<rustls::ClientConfig>, ServerName<'static>),
    Server(Arc<rustls::ServerConfig>),
}

/// Read datagrams until the socket fails or the engine goes away.
pub(crate) async fn udp_reader(
    socket: Arc<UdpSocket>,
    limits: Limits,
    to_engine: mpsc::UnboundedSender<TransportInput>,
    counters: Arc<TransportCounters>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(v) => v,
            // ICMP port unreachable surfaces here on some systems as
            // ConnectionReset; it says nothing about the next datagram.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(_) => return,
        };
        counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let data = &buf[..n];
        // Keep-alive CRLFs on UDP (RFC 5626 uses STUN there, but CRLF is
        // common): ignore whitespace-only datagrams.
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ' | 0)) {
            continue;
        }
        let peer = Peer {
            transport: TransportKind::Udp,
            addr: from,
        };
        let input = match SipMessage::parse_datagram(data, &limits) {
            Ok(msg) => TransportInput::Message {
                msg,
                peer,
                raw: counters
                    .trace
                    .load(Ordering::Relaxed)
                    .then(|| data.to_vec()),
            },
            Err(err) => TransportInput::Bad { err, peer },
        };
        if to_engine.send(input).is_err() {
            return;
        }
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Accept TCP connections up to the cap; each gets its own task.
pub(crate) async fn tcp_acceptor(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    settings: StreamSettings,
    to_engine: mpsc::UnboundedSender<TransportInput>,
    counters: Arc<TransportCounters>,
) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            // Out of descriptors and similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if to_engine.is_closed() {
            return;
        }
        if counters.connections_open.load(Ordering::Relaxed) >= settings.max_connections {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let peer = Peer {
            transport: if tls.is_some() {
                TransportKind::Tls
            } else {
                TransportKind::Tcp
            },
            addr: from,
        };
        let (tx, rx) = mpsc::channel(256);
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        if to_engine
            .send(TransportInput::Opened {
                peer,
                conn,
                writer: tx,
            })
            .is_err()
        {
            return;
        }
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        let mode = match &tls {
            Some(cfg) => TlsMode::Server(cfg.clone()),
            None => TlsMode::None,
        };
        tokio::spawn(run_connection(
            Some(stream),
            mode,
            peer,
            conn,
            rx,
            settings.clone(),
            to_engine.clone(),
            counters.clone(),
        ));
    }
}

/// Open an outgoing TCP or TLS connection: returns the writer at once; the
/// task connects (and handshakes), then writes what was queued meanwhile.
pub(crate) fn stream_connect(
    peer: Peer,
    mode: TlsMode,
    settings: StreamSettings,
    to_engine: mpsc::UnboundedSender<TransportInput>,
    counters: Arc<TransportCounters>,
) -> Option<(u64, mpsc::Sender<Outgoing>)> {
    if counters.connections_open.load(Ordering::Relaxed) >= settings.max_connections {
        counters.connections_refused.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let (tx, rx) = mpsc::channel(256);
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    counters.connections_open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(run_connection(
        None, mode, peer, conn, rx, settings, to_engine, counters,
    ));
    Some((conn, tx))
}

#[allow(clippy::too_many_arguments)]
async fn run_connection(
    stream: Option<TcpStream>,
    mode: TlsMode,
    peer: Peer,
    conn: u64,
    mut rx: mpsc::Receiver<Outgoing>,
    settings: StreamSettings,
    to_engine: mpsc::UnboundedSender<TransportInput>,
    counters: Arc<TransportCounters>,
) {
    let outgoing = stream.is_none();
    let stream = match stream {
        Some(s) => Some(s),
        None => {
            match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(peer.addr))
                .await
            {
                Ok(Ok(s)) => Some(s),
                _ => None,
            }
        }
    };
    if let Some(stream) = stream {
        let _ = stream.set_nodelay(true);
        let limit = settings.connect_timeout;
        // Only the side that opened a flow keeps it alive.
        let keepalive = match mode {
            TlsMode::Server(_) => None,
            _ if outgoing => settings.keepalive,
            _ => None,
        };
        let io = (&mut rx, &settings, &to_engine, &*counters, keepalive);
        match mode {
            TlsMode::None => serve(stream, peer, io).await,
            TlsMode::Client(cfg, name) => {
                let c = tokio_rustls::TlsConnector::from(cfg);
                if let Ok(Ok(s)) = tokio::time::timeout(limit, c.connect(name, stream)).await {
                    serve(s, peer, io).await;
                }
            }
            TlsMode::Server(cfg) => {
                let a = tokio_rustls::TlsAcceptor::from(cfg);
                if let Ok(Ok(s)) = tokio::time::timeout(limit, a.accept(stream)).await {
                    serve(s, peer, io).await;
                }
            }
        }
    }
    counters.connections_open.fetch_sub(1, Ordering::Relaxed);
    let _ = to_engine.send(TransportInput::Closed { peer, conn });
    // Whatever is still queued was not sent.
    rx.close();
    let mut keys = Vec::new();
    while let Ok(o) = rx.try_recv() {
        keys.extend(o.key);
    }
    if !keys.is_empty() {
        let _ = to_engine.send(TransportInput::SendFailed { keys });
    }
}

type ConnIo<'a> = (
    &'a mut mpsc::Receiver<Outgoing>,
    &'a StreamSettings,
    &'a mpsc::UnboundedSender<TransportInput>,
    &'a TransportCounters,
    Option<Duration>,
);

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, peer: Peer, io: ConnIo<'_>) {
    let (rx, settings, to_engine, counters, keepalive) = io;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = StreamFramer::new(settings.limits);
    let mut buf = vec![0u8; 16 * 1024];
    let start = tokio::time::Instant::now();
    let mut next_ping = keepalive.map(|k| start + k);
    let mut pong_due: Option<tokio::time::Instant> = None;
    loop {
        let wake = pong_due.or(next_ping);
        let keepalive_timer = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = keepalive_timer => {
                let now = tokio::time::Instant::now();
                if pong_due.is_some_and(|d| d <= now) {
                    counters.keepalive_failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if wr.write_all(b"\r\n\r\n").await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                pong_due = Some(now + settings.pong_timeout);
                next_ping = keepalive.map(|k| now + k);
            }
            out = rx.recv() => {
                let Some(out) = out else { return };
                if wr.write_all(&out.data).await.is_err() || wr.flush().await.is_err() {
                    let _ = to_engine.send(TransportInput::SendFailed { keys: out.key.into_iter().collect() });
                    return;
                }
                counters.bytes_out.fetch_add(out.data.len() as u64, Ordering::Relaxed);
            }
            r = tokio::time::timeout(settings.idle_timeout, rd.read(&mut buf)) => {
                let n = match r {
                    Err(_) => {
                        counters.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(n)) => n,
                };
                counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                framer.push(&buf[..n]);
                loop {
                    match framer.next_event() {
                        Ok(None) => break,
                        Ok(Some(StreamEvent::Ping)) => {
                            counters.keepalive_pings.fetch_add(1, Ordering::Relaxed);
                            if wr.write_all(b"\r\n").await.is_err() || wr.flush().await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(StreamEvent::Pong)) => {
                            if pong_due.take().is_some() {
                                counters.keepalive_pongs.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Some(StreamEvent::Message(msg))) => {
                            let raw = counters.trace.load(Ordering::Relaxed).then(|| msg.to_bytes());
                            if to_engine.send(TransportInput::Message { msg, peer, raw }).is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            let _ = to_engine.send(TransportInput::Bad { err, peer });
                            return;
                        }
                    }
                }
            }
        }
    }
}
