//! Connection sharing (RFC 4975 section 6 and 8.1): several sessions
//! between the same two endpoints may use one TCP or TLS connection, each
//! chunk going to the session its To-Path names.
//!
//! A [`SharedConn`] owns the socket. Every session on it gets a pipe of its
//! own (a `tokio::io::duplex`) and a normal [`MSRPTransport`] over that pipe,
//! so the session's task is the same as on a connection of its own. One task
//! reads the socket and copies each chunk into the pipe of the session its
//! To-Path names; per session, a forwarder reads what the session writes and
//! puts it on the socket a whole chunk at a time, so chunks of different
//! sessions never interleave. The cost is a parse more each way and the
//! pipe's copy in and out; body bytes go from the parser's buffer to the
//! pipe or the socket without another. Every connection an [`MSRPServer`]
//! accepts pays it (a session may bind on it later); a connector's own
//! connection pays it only when it comes from a pool.
//!
//! On an [`MSRPServer`] connection the first chunk of an unknown session is
//! its bind (RFC 4975 section 5.4), checked like the first chunk of a
//! connection; anything else for a session that is not here gets 481. A
//! [`MsrpConnectionPool`] lets connectors reuse an open connection to the
//! same peer authority. A session that ends closes its pipe; the connection
//! closes with its last session, and a connection that fails closes every
//! session on it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::DuplexStream;
use tokio::sync::Notify;

use super::*;

/// Bytes a session's pipe holds each way.
const PIPE: usize = 256 * 1024;

type Route = Arc<tokio::sync::Mutex<WriteHalf<DuplexStream>>>;

/// What a server-side connection needs to bind new sessions.
pub(super) struct ServerSide {
    pub slots: Arc<Slots>,
    pub refused: Arc<AtomicU64>,
    pub secure: bool,
    /// The client's certificate (DER), for a=fingerprint checks.
    pub peer_cert: Option<Vec<u8>>,
}

/// A connection that sessions share. See the module documentation.
pub struct SharedConn {
    routes: Mutex<HashMap<String, Route>>,
    writer: tokio::sync::Mutex<WriteHalf<Box<dyn Io>>>,
    closed: AtomicBool,
    closing: Notify,
    /// Sessions attached so far, ever.
    attached: AtomicU64,
}

impl SharedConn {
    /// Take over `io`; `server` when it was accepted by an MSRPServer.
    pub(super) fn start(io: Box<dyn Io>, server: Option<ServerSide>) -> Arc<SharedConn> {
        let (reader, writer) = tokio::io::split(io);
        let conn = Arc::new(SharedConn {
            routes: Mutex::new(HashMap::new()),
            writer: tokio::sync::Mutex::new(writer),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
            attached: AtomicU64::new(0),
        });
        tokio::spawn(conn.clone().demux(reader, server));
        conn
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sessions on the connection now.
    pub fn sessions(&self) -> usize {
        self.routes.lock().len()
    }

    /// A transport for the session whose URI (the last of `local`) has
    /// session id `sid`, over a pipe of its own on this connection.
    pub(super) fn attach(
        self: &Arc<Self>,
        sid: &str,
        local: Vec<MsrpUri>,
        remote: Vec<MsrpUri>,
    ) -> Result<MSRPTransport, MsrpIoError> {
        if self.is_closed() {
            return Err(MsrpIoError::Closed);
        }
        let (session_end, mux_end) = tokio::io::duplex(PIPE);
        let (from_session, to_session) = tokio::io::split(mux_end);
        {
            let mut routes = self.routes.lock();
            if routes.contains_key(sid) {
                return Err(MsrpIoError::Protocol(format!(
                    "session {sid} is already on this connection"
                )));
            }
            routes.insert(
                sid.to_string(),
                Arc::new(tokio::sync::Mutex::new(to_session)),
            );
        }
        self.attached.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(self.clone().forward(sid.to_string(), from_session));
        Ok(MSRPTransport::new(Box::new(session_end), local, remote))
    }

    /// Write whole bytes to the socket (a response from the connection
    /// itself).
    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await?;
        w.flush().await
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.closing.notify_one();
        }
    }

    /// What a session writes, onto the socket a whole chunk at a time.
    async fn forward(self: Arc<Self>, sid: String, mut from: ReadHalf<DuplexStream>) {
        let mut parser = ChunkParser::new(ParserLimits::default());
        let mut chunk = Reprint::default();
        let mut held: Option<tokio::sync::MutexGuard<'_, WriteHalf<Box<dyn Io>>>> = None;
        'outer: loop {
            match from.read_buf(parser.read_buffer(64 * 1024)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                let piece = match parser.next_piece() {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    // Our own session wrote it: cannot happen, but the
                    // connection must not carry half a chunk.
                    Err(_) => break 'outer,
                };
                // The socket is ours from a chunk's head to its end-line.
                // Body bytes go out from the parser's buffer, uncopied,
                // after the blank line when it has not gone yet.
                let (printed, prefix, body, end): (Vec<u8>, &[u8], &[u8], bool) = match piece {
                    Piece::Head { head, .. } => {
                        if held.is_none() {
                            held = Some(self.writer.lock().await);
                        }
                        (chunk.head(&head), &[], &[], false)
                    }
                    Piece::Data(d) => (Vec::new(), chunk.data_prefix(), d, false),
                    Piece::End(flag) => (chunk.end(flag), &[], &[], true),
                };
                let Some(w) = held.as_mut() else { continue };
                let mut ok = true;
                for b in [&printed[..], prefix, body] {
                    if !b.is_empty() && w.write_all(b).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    self.close();
                    break 'outer;
                }
                if end {
                    let _ = w.flush().await;
                    held = None;
                }
            }
        }
        drop(held);
        // The session has gone (or the connection broke).
        let last = {
            let mut routes = self.routes.lock();
            routes.remove(&sid);
            routes.is_empty()
        };
        if last {
            self.close();
        }
    }

    /// Read the socket; each chunk goes to its session's pipe.
    async fn demux(self: Arc<Self>, mut reader: ReadHalf<Box<dyn Io>>, server: Option<ServerSide>) {
        enum Dest {
            /// The pipe of the session the chunk is for.
            Session(Route),
            /// A bind for a session prepared on the server (its head).
            Bind(ChunkHead),
            /// Nowhere (answered already, or a response nobody waits for).
            Drop,
        }
        let mut parser = ChunkParser::new(ParserLimits::default());
        let mut chunk = Reprint::default();
        let mut dest = Dest::Drop;
        let started = tokio::time::Instant::now();
        'outer: loop {
            // A server connection that binds nothing is dropped in time.
            let deadline = (server.is_some() && self.attached.load(Ordering::SeqCst) == 0)
                .then_some(started + BIND_TIMEOUT);
            let read = tokio::select! {
                r = reader.read_buf(parser.read_buffer(READ_SIZE)) => r,
                _ = self.closing.notified() => break,
                _ = tokio::time::sleep_until(deadline.unwrap_or(started)), if deadline.is_some() => {
                    tracing::debug!("MSRP: a shared connection bound no session in time");
                    break;
                }
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                let piece = match parser.next_piece() {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("MSRP: framing error on a shared connection: {e}");
                        break 'outer;
                    }
                };
                match piece {
                    Piece::Head { head, defect } => {
                        let sid = head
                            .to_path()
                            .ok()
                            .and_then(|p| p.into_iter().next())
                            .and_then(|u| u.session_id);
                        let route = sid
                            .as_ref()
                            .and_then(|s| self.routes.lock().get(s).cloned());
                        dest = match (route, &defect) {
                            (Some(r), None) => {
                                let bytes = chunk.head(&head);
                                if write_all(&r, &[&bytes]).await {
                                    Dest::Session(r)
                                } else {
                                    // The session has gone: as if unknown.
                                    if let Some(sid) = &sid {
                                        self.routes.lock().remove(sid);
                                    }
                                    if head.method().is_some_and(|m| m != "REPORT")
                                        && self
                                            .send(&response(&head, 481, "Session Does Not Exist"))
                                            .await
                                            .is_err()
                                    {
                                        break 'outer;
                                    }
                                    Dest::Drop
                                }
                            }
                            _ if head.method().is_none() => Dest::Drop,
                            (_, Some(d)) => {
                                tracing::debug!("MSRP: bad chunk on a shared connection: {d}");
                                if self
                                    .send(&response(&head, 400, "Bad Request"))
                                    .await
                                    .is_err()
                                {
                                    break 'outer;
                                }
                                Dest::Drop
                            }
                            (None, None) if server.is_some() && head.method() == Some("SEND") => {
                                Dest::Bind(head)
                            }
                            (None, None) => {
                                if let Some(s) = &server {
                                    s.refused.fetch_add(1, Ordering::Relaxed);
                                }
                                if head.method() != Some("REPORT")
                                    && self
                                        .send(&response(&head, 481, "Session Does Not Exist"))
                                        .await
                                        .is_err()
                                {
                                    break 'outer;
                                }
                                if self.attached.load(Ordering::SeqCst) == 0 {
                                    // Nothing else will come of it.
                                    break 'outer;
                                }
                                Dest::Drop
                            }
                        };
                    }
                    Piece::Data(d) => {
                        if let Dest::Session(r) = &dest {
                            // Straight from the parser's buffer to the pipe.
                            if !write_all(r, &[chunk.data_prefix(), d]).await {
                                dest = Dest::Drop;
                            }
                        }
                    }
                    Piece::End(flag) => match std::mem::replace(&mut dest, Dest::Drop) {
                        Dest::Session(r) => {
                            let bytes = chunk.end(flag);
                            let _ = write_all(&r, &[&bytes]).await;
                        }
                        Dest::Bind(head) => {
                            let Some(s) = &server else { continue };
                            let first = MSRPData {
                                head,
                                data: Vec::new(),
                                contflag: flag,
                            };
                            if !self.bind(first, s).await
                                && self.attached.load(Ordering::SeqCst) == 0
                            {
                                break 'outer;
                            }
                        }
                        Dest::Drop => {}
                    },
                }
            }
        }
        // Every session on the connection sees it close.
        self.close();
        let routes: Vec<Route> = self.routes.lock().drain().map(|(_, r)| r).collect();
        for r in routes {
            let _ = r.lock().await.shutdown().await;
        }
        let _ = self.writer.lock().await.shutdown().await;
    }

    /// A new session's first chunk on a server connection: hand it a
    /// transport if a session was prepared for it and the chunk is from
    /// its peer. False when refused.
    async fn bind(self: &Arc<Self>, first: MSRPData, server: &ServerSide) -> bool {
        let sid = first
            .head
            .to_path()
            .ok()
            .and_then(|p| p.into_iter().next())
            .and_then(|u| u.session_id)
            .unwrap_or_default();
        let Some(mut slot) = server.slots.take_when_ready(&sid).await else {
            server.refused.fetch_add(1, Ordering::Relaxed);
            let _ = self
                .send(&response(&first.head, 481, "Session Does Not Exist"))
                .await;
            return false;
        };
        let remote = slot.remote_path.take().unwrap_or_default();
        let checked = check_first_chunk(&first, &slot.local_path, &remote).and_then(|()| {
            check_fingerprint(
                server.secure,
                slot.fingerprint.as_ref(),
                server.peer_cert.as_deref(),
            )
        });
        if let Err(e) = checked {
            tracing::debug!("MSRP server: refused a bind: {e}");
            server.refused.fetch_add(1, Ordering::Relaxed);
            let _ = self.send(&response(&first.head, 403, "Forbidden")).await;
            return false;
        }
        let t = match self.attach(&sid, slot.local_path.clone(), remote) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("MSRP server: refused a bind: {e}");
                let _ = self.send(&response(&first.head, 403, "Forbidden")).await;
                return false;
            }
        };
        if self.send(&response(&first.head, 200, "OK")).await.is_err() {
            return false;
        }
        if let Some(done) = slot.done.take() {
            let _ = done.send(t);
        }
        true
    }
}

async fn write_all(r: &Route, parts: &[&[u8]]) -> bool {
    let mut w = r.lock().await;
    for p in parts.iter().filter(|p| !p.is_empty()) {
        if w.write_all(p).await.is_err() {
            return false;
        }
    }
    true
}

/// A response from the connection to a request it read.
fn response(request: &ChunkHead, code: u16, comment: &str) -> Vec<u8> {
    let mut r = ChunkHead::response(&request.transaction_id, code, Some(comment));
    let local: Vec<MsrpUri> = request
        .to_path()
        .unwrap_or_default()
        .into_iter()
        .take(1)
        .collect();
    r.set_response_paths(request.previous_hop().as_ref(), &local);
    r.to_bytes(b"", ContFlag::End)
}

/// Prints a chunk again from the parser's pieces, as
/// [`ChunkHead::to_bytes`] would have: the blank line and the CRLF before
/// the end-line when it has a Content-Type or a body.
#[derive(Default)]
struct Reprint {
    head: Option<ChunkHead>,
    body: bool,
}

impl Reprint {
    fn head(&mut self, head: &ChunkHead) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        head.write_head(&mut out);
        // A Content-Type means a body follows, maybe empty: the blank line
        // goes now, so the session has the whole head before any body byte
        // (and when the connection breaks before one).
        self.body = head.content_type().is_some();
        if self.body {
            out.extend_from_slice(b"\r\n");
        }
        self.head = Some(head.clone());
        out
    }

    /// What goes before body bytes: the blank line, when the head did not
    /// end with it. The bytes themselves follow as they are.
    fn data_prefix(&mut self) -> &'static [u8] {
        if self.body {
            b""
        } else {
            self.body = true;
            b"\r\n"
        }
    }

    fn end(&mut self, flag: ContFlag) -> Vec<u8> {
        let Some(head) = self.head.take() else {
            return Vec::new();
        };
        let mut v = Vec::with_capacity(64);
        if self.body {
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(&head.end_line(flag));
        self.body = false;
        v
    }
}

/// Open connections that connectors may reuse, by the peer's authority
/// (scheme, host, port) and the certificate its a=fingerprint pins.
/// Clones share the pool. Give the same pool to the connectors of sessions
/// that may share a connection ([`ConnectorDirect::with_pool`]).
#[derive(Clone, Default)]
pub struct MsrpConnectionPool {
    conns: Arc<Mutex<HashMap<String, Arc<SharedConn>>>>,
}

impl MsrpConnectionPool {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn key(uri: &MsrpUri, fingerprint: Option<&Fingerprint>) -> String {
        format!(
            "{}://{}|{}",
            if uri.secure { "msrps" } else { "msrp" },
            uri.host_port().to_ascii_lowercase(),
            fingerprint.map(|f| f.to_string()).unwrap_or_default()
        )
    }

    /// An open connection for `key`.
    pub(super) fn get(&self, key: &str) -> Option<Arc<SharedConn>> {
        let mut conns = self.conns.lock();
        conns.retain(|_, c| !c.is_closed());
        conns.get(key).cloned()
    }

    pub(super) fn insert(&self, key: String, conn: Arc<SharedConn>) {
        self.conns.lock().insert(key, conn);
    }

    /// Sessions on the pool's open connections.
    pub fn sessions(&self) -> usize {
        let conns = self.conns.lock();
        conns
            .values()
            .filter(|c| !c.is_closed())
            .map(|c| c.sessions())
            .sum()
    }

    /// Open connections in the pool.
    pub fn connections(&self) -> usize {
        let mut conns = self.conns.lock();
        conns.retain(|_, c| !c.is_closed());
        conns.len()
    }
}
