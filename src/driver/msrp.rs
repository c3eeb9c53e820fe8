//! MSRP over TCP and TLS on tokio, in the shape of the documented msrplib:
//! connectors and acceptors that set up a connection ([`ConnectorDirect`],
//! [`AcceptorDirect`], [`MSRPServer`] for one port shared by many sessions),
//! the low-level [`MSRPTransport`] (`make_chunk`, `write_chunk`,
//! `read_chunk`), and [`MSRPSession`], which runs a
//! [`SessionCore`](crate::proto::msrp::session::SessionCore) on a task:
//! messages of any size go out in chunks read from their source as the
//! socket takes them, and incoming data comes out as events through a
//! bounded channel, so a slow reader slows the sender down instead of
//! filling memory.
//!
//! Binding (RFC 4975 section 5.4): the side that connects sends an empty
//! SEND at once; the side that accepts checks its To-Path and From-Path
//! against the paths from SDP and answers 200. Only then is the transport
//! handed out.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::proto::msrp::auth::{AuthClient, AuthOutcome};
use crate::proto::msrp::session::{Event, OutgoingMessage, SessionConfig, SessionCore};
use crate::proto::msrp::{
    random_ident, ByteRange, ChunkHead, ChunkParser, ContFlag, MsrpUri, ParserLimits, Piece,
    ReportMode,
};
use crate::proto::sdp::Fingerprint;

/// A byte stream MSRP runs over: TCP, or TLS on TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// How long binding and the first response may take.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);

mod share;
pub use share::{MsrpConnectionPool, SharedConn};

/// What went wrong with an MSRP connection.
#[derive(Debug, thiserror::Error)]
pub enum MsrpIoError {
    #[error("MSRP I/O: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Framing(#[from] crate::proto::msrp::FramingError),
    #[error("MSRP TLS: {0}")]
    Tls(String),
    #[error("MSRP: timed out {0}")]
    Timeout(&'static str),
    #[error("MSRP: refused with {code} {comment}")]
    Refused { code: u16, comment: String },
    #[error("MSRP: {0}")]
    Protocol(String),
    #[error("MSRP: the connection closed")]
    Closed,
}

/// TLS for msrps: a client configuration for connecting, a server one for
/// accepting. The SIP TLS settings make both (same certificate policy).
#[derive(Clone, Default)]
pub struct MsrpTls {
    pub client: Option<Arc<rustls::ClientConfig>>,
    pub server: Option<Arc<rustls::ServerConfig>>,
    /// Our certificate and key: presented when a peer with our
    /// a=fingerprint asks for a client certificate.
    pub identity: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl MsrpTls {
    /// Our a=fingerprint (SHA-256 of our certificate), when we have one.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.identity
            .as_deref()
            .and_then(super::tls::identity_fingerprint)
    }
}

/// RFC 8122 / RFC 4975 section 14.1: when the peer's SDP gave a
/// fingerprint, the certificate it presented over TLS must have it.
fn check_fingerprint(
    secure: bool,
    expected: Option<&Fingerprint>,
    peer: Option<&[u8]>,
) -> Result<(), MsrpIoError> {
    match (expected, peer) {
        _ if !secure => Ok(()),
        (None, _) => Ok(()),
        (Some(f), Some(cert)) if f.matches(cert) => Ok(()),
        (Some(_), Some(_)) => Err(MsrpIoError::Tls(
            "the peer's certificate does not match its a=fingerprint".into(),
        )),
        (Some(_), None) => Err(MsrpIoError::Tls(
            "the peer presented no certificate for its a=fingerprint".into(),
        )),
    }
}

/// A chunk with its body in memory (msrplib's `MSRPData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MSRPData {
    pub head: ChunkHead,
    pub data: Vec<u8>,
    pub contflag: ContFlag,
}

impl MSRPData {
    pub fn transaction_id(&self) -> &str {
        &self.head.transaction_id
    }
    pub fn method(&self) -> Option<&str> {
        self.head.method()
    }
    pub fn code(&self) -> Option<u16> {
        self.head.code()
    }
    pub fn message_id(&self) -> Option<&str> {
        self.head.message_id()
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.head.to_bytes(&self.data, self.contflag)
    }
}

/// The parameters of [`MSRPTransport::make_chunk`], as documented; every
/// field has the documented default.
#[derive(Debug, Clone)]
pub struct ChunkSpec<'a> {
    pub transaction_id: Option<&'a str>,
    pub method: &'a str,
    /// A response code makes a response instead of a request.
    pub code: Option<u16>,
    pub comment: Option<&'a str>,
    pub data: &'a [u8],
    /// `$` unless the chunk is a partial SEND (then `+`).
    pub contflag: Option<ContFlag>,
    pub start: u64,
    pub end: Option<u64>,
    pub length: Option<u64>,
    pub message_id: Option<&'a str>,
}

impl Default for ChunkSpec<'_> {
    fn default() -> Self {
        ChunkSpec {
            transaction_id: None,
            method: "SEND",
            code: None,
            comment: None,
            data: b"",
            contflag: None,
            start: 1,
            end: None,
            length: None,
            message_id: None,
        }
    }
}

fn seed() -> u64 {
    super::ids::random_u64()
}

/// A new session id for a local MSRP URI.
pub fn new_session_id() -> String {
    random_ident(&mut seed(), 20)
}

/// A bound MSRP connection (msrplib's `MSRPTransport`).
/// Which way traced bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceDirection {
    Incoming,
    Outgoing,
}

impl TraceDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceDirection::Incoming => "incoming",
            TraceDirection::Outgoing => "outgoing",
        }
    }
}

/// Called with the bytes of every read from and write to the connection
/// (the session's task calls it; keep it quick).
pub type MsrpTrace = Arc<dyn Fn(TraceDirection, &[u8]) + Send + Sync>;

pub struct MSRPTransport {
    /// The wire trace, when asked for.
    trace: Option<MsrpTrace>,
    reader: ReadHalf<Box<dyn Io>>,
    writer: WriteHalf<Box<dyn Io>>,
    parser: ChunkParser,
    local_path: Vec<MsrpUri>,
    remote_path: Vec<MsrpUri>,
    rng: u64,
    /// Set when the connection goes to our relay: the AUTH client a
    /// session renews the grant with.
    relay_auth: Option<AuthClient>,
}

const READ_SIZE: usize = 256 * 1024;

impl MSRPTransport {
    fn new(io: Box<dyn Io>, local_path: Vec<MsrpUri>, remote_path: Vec<MsrpUri>) -> Self {
        let (reader, writer) = tokio::io::split(io);
        MSRPTransport {
            trace: None,
            reader,
            writer,
            parser: ChunkParser::new(ParserLimits::default()),
            local_path,
            remote_path,
            rng: seed(),
            relay_auth: None,
        }
    }

    /// Our full path as the peer sees it (ours last).
    pub fn local_path(&self) -> &[MsrpUri] {
        &self.local_path
    }

    /// Have every read and write of this connection (and of the session
    /// made from it) passed to `trace`, or stop with None.
    pub fn set_trace(&mut self, trace: Option<MsrpTrace>) {
        self.trace = trace;
    }

    fn traced(&self, dir: TraceDirection, bytes: &[u8]) {
        if let Some(t) = &self.trace {
            t(dir, bytes);
        }
    }

    /// The peer's full path (its URI last).
    pub fn remote_path(&self) -> &[MsrpUri] {
        &self.remote_path
    }

    /// A chunk with From-Path, To-Path, Byte-Range and Message-ID set from
    /// this transport's paths and `spec`; random transaction and message
    /// ids where `spec` gives none.
    pub fn make_chunk(&mut self, spec: ChunkSpec<'_>) -> MSRPData {
        let tid = match spec.transaction_id {
            Some(t) => t.to_string(),
            None => random_ident(&mut self.rng, 12),
        };
        let mut head = match spec.code {
            Some(code) => ChunkHead::response(&tid, code, spec.comment),
            None => ChunkHead::request(&tid, spec.method),
        };
        head.set_request_paths(&self.local_path, &self.remote_path);
        let mut contflag = spec.contflag;
        if spec.code.is_none() {
            let mid = match spec.message_id {
                Some(m) => m.to_string(),
                None => random_ident(&mut self.rng, 16),
            };
            head.push_header("Message-ID", &mid);
            if spec.method == "SEND" {
                let len = spec.data.len() as u64;
                let end = spec.end.unwrap_or(spec.start + len - 1);
                let total = spec.length.or(if spec.start == 1 && spec.end.is_none() {
                    Some(len)
                } else {
                    None
                });
                head.push_header(
                    "Byte-Range",
                    &ByteRange {
                        start: spec.start,
                        end: Some(end),
                        total,
                    }
                    .to_string(),
                );
                if contflag.is_none() && total.is_some_and(|t| end < t) {
                    contflag = Some(ContFlag::More);
                }
            }
        }
        MSRPData {
            head,
            data: spec.data.to_vec(),
            contflag: contflag.unwrap_or(ContFlag::End),
        }
    }

    /// Write one chunk. A Content-Type is needed for a body; a chunk whose
    /// data holds its own end-line is refused.
    pub async fn write_chunk(&mut self, chunk: &MSRPData) -> Result<(), MsrpIoError> {
        let endl = format!("-------{}", chunk.head.transaction_id);
        if memchr::memmem::find(&chunk.data, endl.as_bytes()).is_some() {
            return Err(MsrpIoError::Protocol(
                "the data holds the chunk's end-line; use another transaction id".into(),
            ));
        }
        let bytes = chunk.to_bytes();
        self.traced(TraceDirection::Outgoing, &bytes);
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Read the next whole chunk; a body above `max_size` is an error (use
    /// [`MSRPSession`] for large messages).
    pub async fn read_chunk(&mut self, max_size: usize) -> Result<MSRPData, MsrpIoError> {
        let mut head: Option<ChunkHead> = None;
        let mut data = Vec::new();
        loop {
            while let Some(piece) = self.parser.next_piece()? {
                match piece {
                    Piece::Head { head: h, defect } => {
                        if let Some(d) = defect {
                            return Err(MsrpIoError::Protocol(d));
                        }
                        head = Some(h);
                    }
                    Piece::Data(d) => {
                        if data.len() + d.len() > max_size {
                            return Err(MsrpIoError::Protocol(format!(
                                "chunk body above {max_size} bytes"
                            )));
                        }
                        data.extend_from_slice(d);
                    }
                    Piece::End(flag) => {
                        let head = head.take().ok_or(MsrpIoError::Closed)?;
                        return Ok(MSRPData {
                            head,
                            data,
                            contflag: flag,
                        });
                    }
                }
            }
            let n = self
                .reader
                .read_buf(self.parser.read_buffer(16 * 1024))
                .await?;
            if n == 0 {
                return Err(MsrpIoError::Closed);
            }
            if let Some(t) = &self.trace {
                t(TraceDirection::Incoming, self.parser.recent(n));
            }
        }
    }

    /// Answer a request chunk.
    pub async fn respond(
        &mut self,
        request: &MSRPData,
        code: u16,
        comment: &str,
    ) -> Result<(), MsrpIoError> {
        let mut r = ChunkHead::response(&request.head.transaction_id, code, Some(comment));
        r.set_response_paths(request.head.previous_hop().as_ref(), &self.local_path);
        let bytes = r.to_bytes(b"", ContFlag::End);
        self.traced(TraceDirection::Outgoing, &bytes);
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// The active side's bind: an empty SEND, then its 200.
    async fn bind_active(&mut self) -> Result<(), MsrpIoError> {
        let chunk = self.make_chunk(ChunkSpec::default());
        self.write_chunk(&chunk).await?;
        let r = tokio::time::timeout(BIND_TIMEOUT, self.read_chunk(64 * 1024))
            .await
            .map_err(|_| MsrpIoError::Timeout("waiting for the bind response"))??;
        match r.code() {
            Some(200) if r.transaction_id() == chunk.transaction_id() => Ok(()),
            Some(code) => Err(MsrpIoError::Refused {
                code,
                comment: r.head.comment().unwrap_or("").to_string(),
            }),
            None => Err(MsrpIoError::Protocol(
                "a request came before the bind response".into(),
            )),
        }
    }

    /// The passive side's bind: the first chunk must come from the peer we
    /// expect, to us.
    async fn bind_passive(&mut self) -> Result<(), MsrpIoError> {
        let first = tokio::time::timeout(BIND_TIMEOUT, self.read_chunk(64 * 1024))
            .await
            .map_err(|_| MsrpIoError::Timeout("waiting for the first chunk"))??;
        check_first_chunk(&first, &self.local_path, &self.remote_path)?;
        self.respond(&first, 200, "OK").await
    }

    /// Run a session on this transport.
    pub fn into_session(self, config: SessionConfig) -> MSRPSession {
        MSRPSession::new(self, config)
    }
}

/// RFC 4975 section 5.4: the first chunk's To-Path names us and its
/// From-Path's last URI is the peer from SDP.
fn check_first_chunk(
    first: &MSRPData,
    local: &[MsrpUri],
    remote: &[MsrpUri],
) -> Result<(), MsrpIoError> {
    let to = first
        .head
        .to_path()
        .map_err(|e| MsrpIoError::Protocol(e.to_string()))?;
    let from = first
        .head
        .from_path()
        .map_err(|e| MsrpIoError::Protocol(e.to_string()))?;
    let me = local.last();
    if !to.first().zip(me).is_some_and(|(a, b)| a.matches(b)) {
        return Err(MsrpIoError::Protocol("first chunk is not for us".into()));
    }
    if !from
        .last()
        .zip(remote.last())
        .is_some_and(|(a, b)| a.matches(b))
    {
        return Err(MsrpIoError::Protocol(
            "first chunk is not from the peer in SDP".into(),
        ));
    }
    Ok(())
}

/// A socket bound to `host` (port 0: any), to connect from later: the port
/// can go into a=path before the connection exists, and a relay or peer
/// that reuses connections by address finds ours (RFC 4975 section 6).
fn bound_socket(host: &str, port: u16) -> Result<(TcpSocket, u16), MsrpIoError> {
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| MsrpIoError::Protocol(format!("{host} is not an IP address to bind")))?;
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(ip, port))?;
    let port = socket.local_addr()?.port();
    Ok((socket, port))
}

async fn connect_io(
    uri: &MsrpUri,
    tls: &MsrpTls,
    from: Option<TcpSocket>,
    fingerprint: Option<&Fingerprint>,
) -> Result<Box<dyn Io>, MsrpIoError> {
    let connect = async {
        match from {
            Some(socket) => {
                let addr = tokio::net::lookup_host(uri.host_port())
                    .await?
                    .next()
                    .ok_or_else(|| io::Error::other("no address for the host"))?;
                socket.connect(addr).await
            }
            None => TcpStream::connect(uri.host_port()).await,
        }
    };
    let tcp = tokio::time::timeout(BIND_TIMEOUT, connect)
        .await
        .map_err(|_| MsrpIoError::Timeout("connecting"))??;
    tcp.set_nodelay(true)?;
    if !uri.secure {
        return Ok(Box::new(tcp));
    }
    let config = match fingerprint {
        // The certificate SDP named, whoever signed it.
        Some(f) => super::tls::pinned_client_config(f.clone(), tls.identity.clone())
            .map_err(|e| MsrpIoError::Tls(e.to_string()))?,
        None => tls
            .client
            .clone()
            .ok_or_else(|| MsrpIoError::Tls("no TLS client configuration".into()))?,
    };
    let name = super::tls::server_name(&uri.host).map_err(|e| MsrpIoError::Tls(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tls_socket(tcp))
        .await
        .map_err(|e| MsrpIoError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

/// What a TLS stream reads through: the TLS layer reads the socket a
/// record at a time or less (4 KiB reads), which is a system call for
/// every few KiB of a large transfer; reading the socket in large pieces
/// and serving the TLS layer from them costs a copy and saves most of
/// those calls. Writes go to the socket unchanged.
const TLS_READ_BUFFER: usize = 256 * 1024;

fn tls_socket(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp)
}

/// Accept TLS when `secure`; returns the connection and the client's
/// certificate (DER) if it presented one.
async fn accept_io(
    tcp: TcpStream,
    secure: bool,
    tls: &MsrpTls,
) -> Result<(Box<dyn Io>, Option<Vec<u8>>), MsrpIoError> {
    tcp.set_nodelay(true)?;
    if !secure {
        return Ok((Box::new(tcp), None));
    }
    let config = tls
        .server
        .clone()
        .ok_or_else(|| MsrpIoError::Tls("no TLS certificate to accept with".into()))?;
    let stream = tokio::time::timeout(
        BIND_TIMEOUT,
        tokio_rustls::TlsAcceptor::from(config).accept(tls_socket(tcp)),
    )
    .await
    .map_err(|_| MsrpIoError::Timeout("in the TLS handshake"))?
    .map_err(|e| MsrpIoError::Tls(e.to_string()))?;
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    Ok((Box::new(stream), peer))
}

fn with_session_id(mut uri: MsrpUri) -> MsrpUri {
    if uri.session_id.is_none() {
        uri.session_id = Some(new_session_id());
    }
    uri
}

/// Calling endpoint, no relay: connects to the peer.
pub struct ConnectorDirect {
    tls: MsrpTls,
    local_path: Vec<MsrpUri>,
    socket: Option<TcpSocket>,
    fingerprint: Option<Fingerprint>,
    pool: Option<MsrpConnectionPool>,
}

impl ConnectorDirect {
    pub fn new(tls: MsrpTls) -> Self {
        ConnectorDirect {
            tls,
            local_path: Vec::new(),
            socket: None,
            fingerprint: None,
            pool: None,
        }
    }

    /// A connector that shares connections (RFC 4975 connection reuse):
    /// `complete` uses an open connection of `pool` to the same peer
    /// authority (and a=fingerprint) when there is one, and puts a new
    /// connection in the pool for later sessions. Sessions on a shared
    /// connection each see only their own chunks; the connection closes
    /// with its last session.
    pub fn with_pool(tls: MsrpTls, pool: MsrpConnectionPool) -> Self {
        ConnectorDirect {
            pool: Some(pool),
            ..ConnectorDirect::new(tls)
        }
    }

    /// The peer's a=fingerprint: over msrps its certificate must have it
    /// (and then need not be signed by a CA we trust).
    pub fn set_remote_fingerprint(&mut self, fingerprint: Option<Fingerprint>) {
        self.fingerprint = fingerprint;
    }

    /// The full local path for a=path. The URI gets a session id if it has
    /// none. Its host must be a local IP address: the socket the connection
    /// will come from is bound there now (port 0 or none: any free port),
    /// and the URI carries that port.
    pub async fn prepare(&mut self, local_uri: MsrpUri) -> Result<Vec<MsrpUri>, MsrpIoError> {
        let mut uri = with_session_id(local_uri);
        let (socket, port) = bound_socket(&uri.host, uri.port.unwrap_or(0))?;
        uri.port = Some(port);
        self.socket = Some(socket);
        self.local_path = vec![uri];
        Ok(self.local_path.clone())
    }

    /// Connect to the first hop of the peer's path and bind.
    pub async fn complete(self, remote_path: Vec<MsrpUri>) -> Result<MSRPTransport, MsrpIoError> {
        let first = remote_path
            .first()
            .ok_or_else(|| MsrpIoError::Protocol("empty remote path".into()))?;
        if self.local_path.is_empty() {
            return Err(MsrpIoError::Protocol("complete() before prepare()".into()));
        }
        if let Some(pool) = &self.pool {
            let key = MsrpConnectionPool::key(first, self.fingerprint.as_ref());
            let sid = self
                .local_path
                .last()
                .and_then(|u| u.session_id.clone())
                .unwrap_or_default();
            let conn = match pool.get(&key) {
                Some(c) => c,
                None => {
                    let io = connect_io(first, &self.tls, self.socket, self.fingerprint.as_ref())
                        .await?;
                    let c = SharedConn::start(io, None);
                    pool.insert(key, c.clone());
                    c
                }
            };
            let mut t = conn.attach(&sid, self.local_path, remote_path)?;
            t.bind_active().await?;
            return Ok(t);
        }
        let io = connect_io(first, &self.tls, self.socket, self.fingerprint.as_ref()).await?;
        let mut t = MSRPTransport::new(io, self.local_path, remote_path);
        t.bind_active().await?;
        Ok(t)
    }
}

/// Answering endpoint, no relay: listens on its own port for the one
/// connection of this session (use [`MSRPServer`] to share a port).
pub struct AcceptorDirect {
    tls: MsrpTls,
    listener: Option<TcpListener>,
    local_path: Vec<MsrpUri>,
    fingerprint: Option<Fingerprint>,
}

impl AcceptorDirect {
    pub fn new(tls: MsrpTls) -> Self {
        AcceptorDirect {
            tls,
            listener: None,
            local_path: Vec::new(),
            fingerprint: None,
        }
    }

    /// The peer's a=fingerprint: over msrps it must connect with a client
    /// certificate that has it; other connections are dropped.
    pub fn set_remote_fingerprint(&mut self, fingerprint: Option<Fingerprint>) {
        self.fingerprint = fingerprint;
    }

    /// Listen on the URI's host and port (0 or none: any free port) and
    /// return the full local path with the real port.
    pub async fn prepare(&mut self, local_uri: MsrpUri) -> Result<Vec<MsrpUri>, MsrpIoError> {
        let mut uri = with_session_id(local_uri);
        let host = if uri.host.contains(':') {
            format!("[{}]", uri.host)
        } else {
            uri.host.clone()
        };
        let listener = TcpListener::bind(format!("{host}:{}", uri.port.unwrap_or(0))).await?;
        uri.port = Some(listener.local_addr()?.port());
        self.listener = Some(listener);
        self.local_path = vec![uri];
        Ok(self.local_path.clone())
    }

    /// Wait for the peer's connection and bind it; connections that do not
    /// bind to this session are dropped and waited past.
    pub async fn complete(self, remote_path: Vec<MsrpUri>) -> Result<MSRPTransport, MsrpIoError> {
        let listener = self
            .listener
            .ok_or_else(|| MsrpIoError::Protocol("complete() before prepare()".into()))?;
        let secure = self.local_path.last().is_some_and(|u| u.secure);
        let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
        loop {
            let (tcp, _) = tokio::time::timeout_at(deadline, listener.accept())
                .await
                .map_err(|_| MsrpIoError::Timeout("waiting for the peer to connect"))??;
            let accepted = accept_io(tcp, secure, &self.tls)
                .await
                .and_then(|(io, peer)| {
                    check_fingerprint(secure, self.fingerprint.as_ref(), peer.as_deref())?;
                    Ok(io)
                });
            let io = match accepted {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!("MSRP: dropped an incoming connection: {e}");
                    continue;
                }
            };
            let mut t = MSRPTransport::new(io, self.local_path.clone(), remote_path.clone());
            match t.bind_passive().await {
                Ok(()) => return Ok(t),
                Err(e) => tracing::debug!("MSRP: a connection did not bind: {e}"),
            }
        }
    }
}

struct ServerSlot {
    local_path: Vec<MsrpUri>,
    remote_path: Option<Vec<MsrpUri>>,
    fingerprint: Option<Fingerprint>,
    done: Option<oneshot::Sender<MSRPTransport>>,
}

/// The sessions prepared on a server port, by session id.
#[derive(Default)]
struct Slots {
    map: Mutex<HashMap<String, ServerSlot>>,
    /// Woken when a prepared session starts waiting in `complete`.
    completing: tokio::sync::Notify,
}

impl Slots {
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<String, ServerSlot>> {
        self.map.lock()
    }

    /// The slot for `sid` once its session waits for the peer. A peer can
    /// connect as soon as it has our a=path, before our side has the
    /// answer and calls `complete`: a prepared session is waited for (up
    /// to the bind timeout); an unknown one is `None` at once.
    async fn take_when_ready(&self, sid: &str) -> Option<ServerSlot> {
        let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
        loop {
            let woken = self.completing.notified();
            tokio::pin!(woken);
            // Registered before the check, so a wake-up in between counts.
            woken.as_mut().enable();
            {
                let mut map = self.lock();
                match map.get(sid) {
                    None => return None,
                    Some(s) if s.remote_path.is_some() && s.done.is_some() => {
                        return map.remove(sid)
                    }
                    Some(_) => {}
                }
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return None;
            }
        }
    }
}

/// One listening port shared by many sessions: incoming connections are
/// handed to the session their first chunk's To-Path names.
pub struct MSRPServer {
    addr: SocketAddr,
    secure: bool,
    slots: Arc<Slots>,
    task: tokio::task::JoinHandle<()>,
    /// Binds refused (unknown session, bad first chunk) and connections
    /// that failed before any chunk (TLS).
    refused: Arc<std::sync::atomic::AtomicU64>,
    /// Connections accepted.
    accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl MSRPServer {
    /// Listen on `addr` (TLS when `secure`; then `tls.server` is needed).
    pub async fn bind(addr: SocketAddr, secure: bool, tls: MsrpTls) -> Result<Self, MsrpIoError> {
        if secure && tls.server.is_none() {
            return Err(MsrpIoError::Tls("no TLS certificate to accept with".into()));
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let slots: Arc<Slots> = Arc::default();
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(Self::accept_loop(
            listener,
            secure,
            tls,
            slots.clone(),
            [refused.clone(), accepted.clone()],
        ));
        Ok(MSRPServer {
            addr,
            secure,
            slots,
            task,
            refused,
            accepted,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Binds and connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections accepted so far (sessions that share one count once).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn accept_loop(
        listener: TcpListener,
        secure: bool,
        tls: MsrpTls,
        slots: Arc<Slots>,
        [refused, accepted]: [Arc<std::sync::atomic::AtomicU64>; 2],
    ) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tls = tls.clone();
            let slots = slots.clone();
            let refused = refused.clone();
            tokio::spawn(async move {
                if let Err(e) = Self::serve(tcp, secure, &tls, &slots, &refused).await {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!("MSRP server: refused a connection: {e}");
                }
            });
        }
    }

    /// A connection accepted on the port: every session it carries binds
    /// with its own first chunk (see [`SharedConn`]).
    async fn serve(
        tcp: TcpStream,
        secure: bool,
        tls: &MsrpTls,
        slots: &Arc<Slots>,
        refused: &Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<(), MsrpIoError> {
        let (io, peer_cert) = accept_io(tcp, secure, tls).await?;
        SharedConn::start(
            io,
            Some(share::ServerSide {
                slots: slots.clone(),
                refused: refused.clone(),
                secure,
                peer_cert,
            }),
        );
        Ok(())
    }

    /// The full local path for a new session on this port. `host` is the
    /// address the peer should connect to.
    pub fn prepare(&self, host: &str) -> Vec<MsrpUri> {
        let uri = MsrpUri::new(self.secure, host, self.addr.port(), &new_session_id());
        let sid = uri.session_id.clone().unwrap_or_default();
        self.slots.lock().insert(
            sid,
            ServerSlot {
                local_path: vec![uri.clone()],
                remote_path: None,
                fingerprint: None,
                done: None,
            },
        );
        vec![uri]
    }

    /// Wait for the peer of the session prepared with `local_path`.
    pub async fn complete(
        &self,
        local_path: &[MsrpUri],
        remote_path: Vec<MsrpUri>,
    ) -> Result<MSRPTransport, MsrpIoError> {
        self.complete_with_fingerprint(local_path, remote_path, None)
            .await
    }

    /// [`Self::complete`] for a peer whose SDP gave an a=fingerprint: over
    /// msrps its client certificate must have it.
    pub async fn complete_with_fingerprint(
        &self,
        local_path: &[MsrpUri],
        remote_path: Vec<MsrpUri>,
        fingerprint: Option<Fingerprint>,
    ) -> Result<MSRPTransport, MsrpIoError> {
        let sid = local_path
            .last()
            .and_then(|u| u.session_id.clone())
            .ok_or_else(|| MsrpIoError::Protocol("no session id in the local path".into()))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut slots = self.slots.lock();
            let slot = slots
                .get_mut(&sid)
                .ok_or_else(|| MsrpIoError::Protocol("session not prepared here".into()))?;
            slot.remote_path = Some(remote_path);
            slot.fingerprint = fingerprint;
            slot.done = Some(tx);
        }
        self.slots.completing.notify_waiters();
        let r = tokio::time::timeout(BIND_TIMEOUT, rx).await;
        self.slots.lock().remove(&sid);
        match r {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(_)) => Err(MsrpIoError::Closed),
            Err(_) => Err(MsrpIoError::Timeout("waiting for the peer to connect")),
        }
    }

    /// Forget a prepared session that will not complete.
    pub fn cancel(&self, local_path: &[MsrpUri]) {
        if let Some(sid) = local_path.last().and_then(|u| u.session_id.as_deref()) {
            self.slots.lock().remove(sid);
            // A connection waiting for this session gets its 481 now.
            self.slots.completing.notify_waiters();
        }
    }
}

impl Drop for MSRPServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An MSRP relay to go through (RFC 4976) and the credentials for it.
#[derive(Clone)]
pub struct RelaySettings {
    /// `msrps://relay.example.com:2855;tcp` (or msrp for a plain TCP hop).
    pub uri: MsrpUri,
    pub username: String,
    pub password: String,
    /// The Expires to ask for; the relay's answer wins.
    pub expires: Option<u32>,
}

impl std::fmt::Debug for RelaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("RelaySettings")
            .field("uri", &self.uri.to_string())
            .field("username", &self.username)
            .field("expires", &self.expires)
            .finish()
    }
}

/// A connection to our relay after AUTH: the transport on it, the relay's
/// Use-Path, and how long the relay keeps it.
struct RelayLeg {
    transport: MSRPTransport,
    expires: u32,
}

/// Connect to the relay and AUTH (RFC 4976 section 5): digest on 401, the
/// relay's bounds on 423, Use-Path and Expires from the 200. The AUTH
/// client goes with the transport, so the session renews the grant.
async fn relay_auth(
    relay: &RelaySettings,
    tls: &MsrpTls,
    local_host: &str,
) -> Result<RelayLeg, MsrpIoError> {
    let (socket, port) = bound_socket(local_host, 0)?;
    let io = connect_io(&relay.uri, tls, Some(socket), None).await?;
    let me = MsrpUri::new(relay.uri.secure, local_host, port, &new_session_id());
    let relay_uri = MsrpUri {
        session_id: None,
        ..relay.uri.clone()
    };
    let mut t = MSRPTransport::new(io, vec![me.clone()], vec![relay_uri.clone()]);
    let mut client = AuthClient::new(
        me.clone(),
        relay_uri,
        &relay.username,
        &relay.password,
        relay.expires,
        seed(),
    );
    let first = client.request(Instant::now());
    t.traced(TraceDirection::Outgoing, &first);
    t.writer.write_all(&first).await?;
    t.writer.flush().await?;
    loop {
        let r = tokio::time::timeout(BIND_TIMEOUT, t.read_chunk(64 * 1024))
            .await
            .map_err(|_| MsrpIoError::Timeout("waiting for the relay's AUTH response"))??;
        match client.handle_response(&r.head) {
            AuthOutcome::NotOurs => {}
            AuthOutcome::Send(next) => {
                t.traced(TraceDirection::Outgoing, &next);
                t.writer.write_all(&next).await?;
                t.writer.flush().await?;
            }
            AuthOutcome::Granted { use_path, expires } => {
                let use_path = use_path
                    .ok_or_else(|| MsrpIoError::Protocol("AUTH 200 without Use-Path".into()))?;
                let mut local = use_path;
                local.push(me);
                t.local_path = local;
                t.relay_auth = Some(client);
                return Ok(RelayLeg {
                    transport: t,
                    expires,
                });
            }
            AuthOutcome::Failed { code, comment } => {
                return Err(MsrpIoError::Refused { code, comment })
            }
        }
    }
}

/// Either end, through our relay: `prepare` connects to the relay and
/// authenticates; the local path is the relay's Use-Path followed by our
/// URI. The calling side binds by sending through the relay; the answering
/// side waits on the relay connection for the peer's first chunk.
pub struct ConnectorRelay {
    tls: MsrpTls,
    relay: RelaySettings,
    leg: Option<RelayLeg>,
    active: bool,
}

/// The answering side's relay connector (see [`ConnectorRelay`]).
pub type AcceptorRelay = ConnectorRelay;

impl ConnectorRelay {
    pub fn new(tls: MsrpTls, relay: RelaySettings, active: bool) -> Self {
        ConnectorRelay {
            tls,
            relay,
            leg: None,
            active,
        }
    }

    /// AUTH to the relay; returns the full local path for a=path. The URI's
    /// host is the local address to connect from.
    pub async fn prepare(&mut self, local_uri: MsrpUri) -> Result<Vec<MsrpUri>, MsrpIoError> {
        let leg = relay_auth(&self.relay, &self.tls, &local_uri.host).await?;
        let path = leg.transport.local_path.clone();
        self.leg = Some(leg);
        Ok(path)
    }

    /// Seconds the relay keeps our path, from its AUTH answer.
    pub fn expires(&self) -> Option<u32> {
        self.leg.as_ref().map(|l| l.expires)
    }

    pub async fn complete(self, remote_path: Vec<MsrpUri>) -> Result<MSRPTransport, MsrpIoError> {
        let leg = self
            .leg
            .ok_or_else(|| MsrpIoError::Protocol("complete() before prepare()".into()))?;
        let mut t = leg.transport;
        t.remote_path = remote_path;
        if self.active {
            t.bind_active().await?;
        } else {
            t.bind_passive().await?;
        }
        Ok(t)
    }
}

/// How the calling side connects: directly, or through its relay.
pub enum Connector {
    Direct(ConnectorDirect),
    Relay(Box<ConnectorRelay>),
}

/// How the answering side connects: directly, or through its relay.
pub enum Acceptor {
    Direct(AcceptorDirect),
    Relay(Box<AcceptorRelay>),
}

impl Connector {
    /// The peer's a=fingerprint, checked on a direct msrps connection. A
    /// relay ends TLS, so through one there is no peer certificate to check.
    pub fn set_remote_fingerprint(&mut self, fingerprint: Option<Fingerprint>) {
        if let Connector::Direct(c) = self {
            c.set_remote_fingerprint(fingerprint);
        }
    }

    pub async fn prepare(&mut self, local_uri: MsrpUri) -> Result<Vec<MsrpUri>, MsrpIoError> {
        match self {
            Connector::Direct(c) => c.prepare(local_uri).await,
            Connector::Relay(c) => c.prepare(local_uri).await,
        }
    }
    pub async fn complete(self, remote_path: Vec<MsrpUri>) -> Result<MSRPTransport, MsrpIoError> {
        match self {
            Connector::Direct(c) => c.complete(remote_path).await,
            Connector::Relay(c) => c.complete(remote_path).await,
        }
    }
}

impl Acceptor {
    /// See [`Connector::set_remote_fingerprint`].
    pub fn set_remote_fingerprint(&mut self, fingerprint: Option<Fingerprint>) {
        if let Acceptor::Direct(c) = self {
            c.set_remote_fingerprint(fingerprint);
        }
    }

    pub async fn prepare(&mut self, local_uri: MsrpUri) -> Result<Vec<MsrpUri>, MsrpIoError> {
        match self {
            Acceptor::Direct(c) => c.prepare(local_uri).await,
            Acceptor::Relay(c) => c.prepare(local_uri).await,
        }
    }
    pub async fn complete(self, remote_path: Vec<MsrpUri>) -> Result<MSRPTransport, MsrpIoError> {
        match self {
            Acceptor::Direct(c) => c.complete(remote_path).await,
            Acceptor::Relay(c) => c.complete(remote_path).await,
        }
    }
}

/// The connector for the calling side (msrplib's `get_connector`): through
/// the relay when one is given, else direct.
pub fn get_connector(tls: MsrpTls, relay: Option<RelaySettings>) -> Connector {
    match relay {
        Some(r) => Connector::Relay(Box::new(ConnectorRelay::new(tls, r, true))),
        None => Connector::Direct(ConnectorDirect::new(tls)),
    }
}

/// The acceptor for the answering side (msrplib's `get_acceptor`): through
/// the relay when one is given, else listening directly.
pub fn get_acceptor(tls: MsrpTls, relay: Option<RelaySettings>) -> Acceptor {
    match relay {
        Some(r) => Acceptor::Relay(Box::new(ConnectorRelay::new(tls, r, false))),
        None => Acceptor::Direct(AcceptorDirect::new(tls)),
    }
}

// ----- sessions -----

/// Where an outgoing message's bytes come from.
pub enum MessageSource {
    Bytes(Vec<u8>),
    /// Read as the socket takes the data; with `size: None` in the options,
    /// the message ends where the reader does.
    Reader(Box<dyn AsyncRead + Send + Unpin>),
    /// Owned blocks from a producer (a file read ahead on its own thread),
    /// taken as the socket takes the data; a block as large as a chunk
    /// goes out without being copied. The message ends where the blocks do.
    Blocks(BlockSource),
}

/// See [`MessageSource::Blocks`].
pub struct BlockSource {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    block: Vec<u8>,
    pos: usize,
    back: Option<std::sync::mpsc::Sender<Vec<u8>>>,
}

impl BlockSource {
    pub fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> BlockSource {
        BlockSource {
            rx,
            block: Vec::new(),
            pos: 0,
            back: None,
        }
    }

    /// As [`BlockSource::new`], and spent buffers go back to the producer
    /// on `back` for its next blocks: memory that stays mapped, where a
    /// fresh buffer per block would fault in (and zero) every page of it.
    pub fn with_returns(
        rx: mpsc::Receiver<io::Result<Vec<u8>>>,
        back: std::sync::mpsc::Sender<Vec<u8>>,
    ) -> BlockSource {
        BlockSource {
            back: Some(back),
            ..BlockSource::new(rx)
        }
    }

    /// The next block from the producer, the spent one going back.
    async fn next_block(&mut self) -> io::Result<bool> {
        let b = match self.rx.recv().await {
            None => return Ok(false),
            Some(r) => r?,
        };
        let spent = std::mem::replace(&mut self.block, b);
        self.pos = 0;
        if let Some(back) = self.back.as_ref().filter(|_| spent.capacity() > 0) {
            // A producer that has ended frees it.
            let _ = back.send(spent);
        }
        Ok(true)
    }

    /// Up to `max` bytes into `buf` (emptied first); true when the blocks
    /// ended.
    async fn fill(&mut self, max: usize, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        while buf.len() < max {
            if self.pos == self.block.len() {
                if !self.next_block().await? {
                    return Ok(true);
                }
                if buf.is_empty() && self.block.len() <= max {
                    // The whole block is the chunk: hand it over.
                    std::mem::swap(buf, &mut self.block);
                    self.block.clear();
                    self.pos = 0;
                    continue;
                }
            }
            let n = (self.block.len() - self.pos).min(max - buf.len());
            buf.extend_from_slice(&self.block[self.pos..self.pos + n]);
            self.pos += n;
        }
        Ok(false)
    }
}

/// How to send a message.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub content_type: String,
    /// Needed for readers unless the size is unknown; bytes know their own.
    pub size: Option<u64>,
    pub success_report: ReportMode,
    pub failure_report: ReportMode,
    pub headers: Vec<(String, String)>,
    /// A Message-ID of the caller's choosing; random when `None`.
    pub message_id: Option<String>,
    /// Where to start sending (0-based): the peer has what comes before (a
    /// resumed file transfer). A reader yields the bytes from here on;
    /// bytes hold the whole message; `size` is the whole message's size.
    pub start: u64,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            content_type: "text/plain".into(),
            size: None,
            success_report: ReportMode::No,
            failure_report: ReportMode::Yes,
            headers: Vec::new(),
            message_id: None,
            start: 0,
        }
    }
}

/// What an [`MSRPSession`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Body bytes of an incoming message at `offset` (0-based).
    Data {
        message_id: String,
        offset: u64,
        data: Vec<u8>,
    },
    /// Everything else the session core reports.
    Core(Event),
    /// The session is over (the peer closed, an error, or shutdown).
    Closed { error: Option<String> },
}

enum Cmd {
    Send(OutgoingMessage, MessageSource),
    Abort(String),
    Complete(String, u16, Option<String>),
    Shutdown,
}

/// Counters of a running session.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub bytes_sent: std::sync::atomic::AtomicU64,
    pub bytes_received: std::sync::atomic::AtomicU64,
    pub chunks_refused: std::sync::atomic::AtomicU64,
}

/// A session on a bound transport (msrplib's `MSRPSession`), run by a task
/// on the current tokio runtime.
pub struct MSRPSession {
    cmd: mpsc::UnboundedSender<Cmd>,
    events: tokio::sync::Mutex<mpsc::Receiver<SessionEvent>>,
    local_path: Vec<MsrpUri>,
    remote_path: Vec<MsrpUri>,
    rng: Mutex<u64>,
    stats: Arc<SessionStats>,
}

/// Events waiting to be taken, at most; with data events of up to
/// `READ_SIZE` bytes this bounds what a slow reader makes us hold.
const EVENT_QUEUE: usize = 16;

impl MSRPSession {
    pub fn new(t: MSRPTransport, config: SessionConfig) -> MSRPSession {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let local_path = t.local_path.clone();
        let remote_path = t.remote_path.clone();
        let stats = Arc::new(SessionStats::default());
        let mut core = SessionCore::new(local_path.clone(), remote_path.clone(), config, seed());
        let mut t = t;
        if let Some(client) = t.relay_auth.take() {
            core.set_relay_auth(client);
        }
        tokio::spawn(run_session(t, core, cmd_rx, ev_tx, stats.clone()));
        MSRPSession {
            cmd: cmd_tx,
            events: tokio::sync::Mutex::new(ev_rx),
            local_path,
            remote_path,
            rng: Mutex::new(seed()),
            stats,
        }
    }

    pub fn local_path(&self) -> &[MsrpUri] {
        &self.local_path
    }

    pub fn remote_path(&self) -> &[MsrpUri] {
        &self.remote_path
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Queue a message; returns its Message-ID. Messages go out in order.
    pub fn send_message(
        &self,
        source: MessageSource,
        options: SendOptions,
    ) -> Result<String, MsrpIoError> {
        let size = match &source {
            MessageSource::Bytes(b) => Some(b.len() as u64),
            MessageSource::Reader(_) | MessageSource::Blocks(_) => options.size,
        };
        let message_id = options
            .message_id
            .clone()
            .unwrap_or_else(|| random_ident(&mut self.rng.lock(), 16));
        let msg = OutgoingMessage {
            message_id: message_id.clone(),
            content_type: options.content_type,
            size,
            success_report: options.success_report,
            failure_report: options.failure_report,
            headers: options.headers,
            start: options.start,
        };
        self.cmd
            .send(Cmd::Send(msg, source))
            .map_err(|_| MsrpIoError::Closed)?;
        Ok(message_id)
    }

    /// Stop sending a message: an empty chunk ending in `#` tells the peer.
    pub fn abort_message(&self, message_id: &str) -> Result<(), MsrpIoError> {
        self.cmd
            .send(Cmd::Abort(message_id.to_string()))
            .map_err(|_| MsrpIoError::Closed)
    }

    /// The verdict on a complete incoming message when the session runs
    /// with `defer_completion`: 200 accepts it, another code refuses it.
    pub fn complete_message(
        &self,
        message_id: &str,
        code: u16,
        comment: Option<&str>,
    ) -> Result<(), MsrpIoError> {
        self.cmd
            .send(Cmd::Complete(
                message_id.to_string(),
                code,
                comment.map(str::to_string),
            ))
            .map_err(|_| MsrpIoError::Closed)
    }

    /// The next event; `None` once the session is over and all were taken.
    pub async fn next_event(&self) -> Option<SessionEvent> {
        self.events.lock().await.recv().await
    }

    /// Close the connection; unfinished messages are reported as failed.
    pub fn shutdown(&self) {
        let _ = self.cmd.send(Cmd::Shutdown);
    }
}

impl Drop for MSRPSession {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Shutdown);
    }
}

/// Read up to `max` bytes of a source into `buf` (emptied first); true
/// when the source ended.
async fn fill(
    source: &mut MessageSource,
    offset: u64,
    max: usize,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    buf.clear();
    match source {
        MessageSource::Bytes(b) => {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            let end = start.saturating_add(max).min(b.len());
            buf.extend_from_slice(&b[start..end]);
            Ok(end == b.len())
        }
        MessageSource::Blocks(b) => b.fill(max, buf).await,
        MessageSource::Reader(r) => {
            buf.reserve(max);
            while buf.len() < max {
                // read_buf appends without zeroing the buffer first.
                let mut limited = (&mut *r).take((max - buf.len()) as u64);
                if limited.read_buf(buf).await? == 0 {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// A session's error when its writing task stopped.
const BROKE: &str = "the connection broke";

async fn run_session(
    t: MSRPTransport,
    mut core: SessionCore,
    mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    ev_tx: mpsc::Sender<SessionEvent>,
    stats: Arc<SessionStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let MSRPTransport {
        mut reader,
        writer,
        mut parser,
        trace,
        ..
    } = t;
    let write_trace = trace.clone();
    // Writing runs on its own task so reading never waits for it; the small
    // channel between them is the send-side backpressure.
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(4);
    // Written data buffers come back for the next chunks: no allocation
    // (and no page faults) per chunk. At most the frames in flight exist.
    let (pool_tx, mut pool_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer_task = tokio::spawn(async move {
        let mut writer = writer;
        while let Some(buf) = frames_rx.recv().await {
            if let Some(t) = &write_trace {
                t(TraceDirection::Outgoing, &buf);
            }
            writer.write_all(&buf).await?;
            if buf.capacity() >= 64 * 1024 {
                let _ = pool_tx.send(buf);
            }
            // A TLS stream takes bytes it cannot put on a full socket yet
            // and keeps them until it is written or flushed again: with
            // nothing more queued, push them out now, or the end of a
            // message waits for the next one.
            if frames_rx.is_empty() {
                writer.flush().await?;
            }
        }
        let _ = writer.shutdown().await;
        Ok::<(), io::Error>(())
    });
    let mut sources: HashMap<String, MessageSource> = HashMap::new();
    let mut error: Option<String> = None;
    let mut open = true;
    'outer: while open {
        // Control traffic first: responses and reports are small.
        while let Some(b) = core.poll_transmit() {
            if frames_tx.send(b).await.is_err() {
                error = Some(BROKE.into());
                break 'outer;
            }
        }
        while let Some(e) = core.poll_event() {
            if let Event::MessageSent { message_id } = &e {
                sources.remove(message_id);
            }
            if ev_tx.send(SessionEvent::Core(e)).await.is_err() {
                // Nobody listens any more: end.
                break 'outer;
            }
        }
        stats.chunks_refused.store(core.refused, Relaxed);
        let want = core.next_chunk();
        let deadline = core.poll_timeout();
        tokio::select! {
            // Straight into the parser's buffer (cancel-safe: an unfinished
            // read appends nothing).
            r = reader.read_buf(parser.read_buffer(READ_SIZE)) => {
                let n = match r {
                    Ok(0) => { open = false; continue; }
                    Ok(n) => n,
                    Err(e) => { error = Some(e.to_string()); open = false; continue; }
                };
                stats.bytes_received.fetch_add(n as u64, Relaxed);
                if let Some(t) = &trace {
                    t(TraceDirection::Incoming, parser.recent(n));
                }
                loop {
                    let piece = match parser.next_piece() {
                        Ok(Some(p)) => p,
                        Ok(None) => break,
                        Err(e) => { error = Some(e.to_string()); open = false; break; }
                    };
                    let ev = match piece {
                        Piece::Head { head, defect } => {
                            core.handle_head(head, defect);
                            // A new message is announced before its bytes.
                            while let Some(e) = core.poll_event() {
                                if let Event::MessageSent { message_id } = &e {
                                    sources.remove(message_id);
                                }
                                if ev_tx.send(SessionEvent::Core(e)).await.is_err() {
                                    break 'outer;
                                }
                            }
                            None
                        }
                        Piece::Data(d) => core.handle_data(d.len()).map(|to| SessionEvent::Data {
                            message_id: to.message_id,
                            offset: to.offset,
                            data: d.to_vec(),
                        }),
                        Piece::End(flag) => { core.handle_end(flag); None }
                    };
                    if let Some(ev) = ev {
                        if ev_tx.send(ev).await.is_err() {
                            break 'outer;
                        }
                    }
                }
            }
            permit = frames_tx.reserve(), if want.is_some() => {
                let Ok(permit) = permit else {
                    error = Some(BROKE.into());
                    break 'outer;
                };
                let Some(req) = want else { continue };
                let mut data = pool_rx.try_recv().unwrap_or_default();
                let last = if req.abort {
                    data.clear();
                    true
                } else {
                    match sources.get_mut(&req.message_id) {
                        Some(src) => match fill(src, req.offset, req.max_len, &mut data).await {
                            Ok(last) => last,
                            Err(e) => {
                                tracing::debug!("MSRP: message source failed: {e}");
                                core.abort_message(&req.message_id);
                                data.clear();
                                true
                            }
                        },
                        None => {
                            data.clear();
                            true
                        }
                    }
                };
                let Some((head, tail)) = core.frame_chunk(Instant::now(), &data, last) else {
                    continue;
                };
                let n = (head.len() + data.len() + tail.len()) as u64;
                permit.send(head);
                if !data.is_empty() && frames_tx.send(data).await.is_err() {
                    error = Some(BROKE.into());
                    break 'outer;
                }
                if frames_tx.send(tail).await.is_err() {
                    error = Some(BROKE.into());
                    break 'outer;
                }
                stats.bytes_sent.fetch_add(n, Relaxed);
            }
            cmd = cmd_rx.recv() => match cmd {
                Some(Cmd::Send(msg, src)) => {
                    sources.insert(msg.message_id.clone(), src);
                    core.send_message(msg);
                }
                Some(Cmd::Abort(mid)) => { core.abort_message(&mid); }
                Some(Cmd::Complete(mid, code, comment)) => {
                    core.complete_message(&mid, code, comment.as_deref());
                }
                Some(Cmd::Shutdown) | None => { open = false; }
            },
            _ = tokio::time::sleep_until(deadline.map(tokio::time::Instant::from_std).unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                core.handle_timeout(Instant::now());
            }
        }
    }
    drop(frames_tx);
    if let Ok(Err(e)) = writer_task.await {
        // Say why writing failed (reset by the peer, broken pipe, ...).
        error = Some(match error {
            Some(x) if x == BROKE => format!("{BROKE}: {e}"),
            Some(x) => x,
            None => e.to_string(),
        });
    }
    // No new messages from here on (send_message now says Closed); the ones
    // already queued are reported as not sent with the rest.
    cmd_rx.close();
    while let Ok(cmd) = cmd_rx.try_recv() {
        if let Cmd::Send(msg, _) = cmd {
            core.send_message(msg);
        }
    }
    core.handle_closed();
    while let Some(e) = core.poll_event() {
        if ev_tx.send(SessionEvent::Core(e)).await.is_err() {
            return;
        }
    }
    let _ = ev_tx.send(SessionEvent::Closed { error }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, ReadBuf};

    /// A stream that keeps what is written until it is flushed, as a TLS
    /// stream does with bytes the socket could not take yet.
    struct HoldsUntilFlush {
        inner: tokio::io::DuplexStream,
        held: Vec<u8>,
    }

    impl AsyncRead for HoldsUntilFlush {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for HoldsUntilFlush {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            while !self.held.is_empty() {
                let this = &mut *self;
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.held))?;
                this.held.drain(..n);
            }
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            ready!(self.as_mut().poll_flush(cx))?;
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    use std::task::ready;

    /// The session's writer flushes once nothing more is queued: a message
    /// written to a stream that buffers (TLS with a full socket) reaches
    /// the peer without waiting for a next one.
    #[test]
    fn a_message_on_a_buffering_stream_is_flushed_out() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (x, y) = tokio::io::duplex(1 << 20);
            let a_uri = MsrpUri::new(false, "127.0.0.1", 1, "alice");
            let b_uri = MsrpUri::new(false, "127.0.0.1", 2, "bob");
            let alice = MSRPTransport::new(
                Box::new(HoldsUntilFlush {
                    inner: x,
                    held: Vec::new(),
                }),
                vec![a_uri.clone()],
                vec![b_uri.clone()],
            )
            .into_session(SessionConfig::default());
            let bob = MSRPTransport::new(Box::new(y), vec![b_uri], vec![a_uri])
                .into_session(SessionConfig::default());
            alice
                .send_message(
                    MessageSource::Bytes(b"hello".to_vec()),
                    SendOptions {
                        content_type: "text/plain".into(),
                        ..SendOptions::default()
                    },
                )
                .unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), async {
                let mut body = Vec::new();
                while let Some(ev) = bob.next_event().await {
                    match ev {
                        SessionEvent::Data { data, .. } => body.extend_from_slice(&data),
                        SessionEvent::Core(Event::MessageComplete { .. }) => return body,
                        _ => {}
                    }
                }
                body
            })
            .await
            .expect("the message arrives without a second one behind it");
            assert_eq!(got, b"hello");
        });
    }

    /// Blocks come out split to the chunk size or handed over whole, in
    /// order, and the spent buffers go back to the producer.
    #[test]
    fn block_source_splits_in_order_and_returns_spent_buffers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Fill chunks of at most `max` the way the session does (one
        // buffer, reused), from `blocks`; returns the chunk sizes, the
        // bytes, and the buffers that came back to the producer.
        let run = |blocks: Vec<Vec<u8>>, max: usize| {
            rt.block_on(async {
                let (tx, rx) = mpsc::channel(8);
                let (back_tx, back) = std::sync::mpsc::channel();
                let mut src = BlockSource::with_returns(rx, back_tx);
                for b in blocks {
                    tx.send(Ok(b)).await.unwrap();
                }
                drop(tx);
                let (mut sizes, mut out, mut buf) = (Vec::new(), Vec::new(), Vec::new());
                loop {
                    let ended = src.fill(max, &mut buf).await.unwrap();
                    sizes.push(buf.len());
                    out.extend_from_slice(&buf);
                    if ended {
                        break;
                    }
                }
                (sizes, out, back.try_iter().collect::<Vec<Vec<u8>>>())
            })
        };
        let block = |n: u8, from: u8| (from..from + n).collect::<Vec<u8>>();

        // Blocks larger and smaller than a chunk: split and joined.
        let blocks = vec![block(10, 0), block(4, 50), block(7, 100)];
        let (sizes, out, back) = run(blocks.clone(), 6);
        assert_eq!(out, blocks.concat());
        assert_eq!(sizes, [6, 6, 6, 3]);
        // The first two went back once read out; the last was still the
        // source's when the producer ended.
        assert_eq!(back, blocks[..2]);

        // Blocks of a chunk each (a file read ahead in chunk-sized blocks)
        // go out without a copy, and the buffer of one sent chunk goes
        // back once the next block replaces it.
        let blocks = vec![block(6, 0), block(6, 50), block(6, 100)];
        let (first, all) = (blocks[0].as_ptr(), blocks.concat());
        let (sizes, out, back) = run(blocks, 6);
        assert_eq!(out, all);
        assert_eq!(sizes, [6, 6, 6, 0]);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ptr(), first, "the first block's own buffer");
        assert!(back[0].is_empty() && back[0].capacity() >= 6);
    }
}
