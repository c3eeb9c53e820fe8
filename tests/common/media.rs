//! A media stream for tests: a real UDP socket per stream, PCMU in SDP,
//! one datagram each way at start so a test can see that the addresses in
//! the SDP were right, and a log of every lifecycle call.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sipsimple::proto::sdp::{Attribute, MediaDescription, SessionDescription};
use sipsimple::{Error, MediaStream, MediaStreamFactory, Result, StreamContext, StreamFuture};

pub const TYPE: &str = "test-audio";

#[derive(Default)]
pub struct Log {
    pub calls: Vec<String>,
    /// What arrived on the socket after start.
    pub received: Vec<Vec<u8>>,
}

pub struct TestStream {
    pub log: Arc<Mutex<Log>>,
    socket: Mutex<Option<UdpSocket>>,
}

impl TestStream {
    pub fn new() -> Arc<TestStream> {
        Arc::new(TestStream {
            log: Arc::default(),
            socket: Mutex::new(None),
        })
    }

    fn note(&self, what: &str) {
        self.log.lock().calls.push(what.to_string());
    }

    fn port(&self) -> u16 {
        self.socket
            .lock()
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(0)
    }
}

impl MediaStream for TestStream {
    fn stream_type(&self) -> &str {
        TYPE
    }

    fn hold_supported(&self) -> bool {
        true
    }

    fn initialize<'a>(&'a self, ctx: &'a StreamContext) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            let s = UdpSocket::bind(SocketAddr::new(ctx.local_ip, 0))
                .map_err(|e| Error::InvalidState(format!("bind: {e}")))?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            *self.socket.lock() = Some(s);
            self.note("initialize");
            Ok(())
        })
    }

    fn get_local_media(&self, remote: Option<&MediaDescription>) -> Result<MediaDescription> {
        if let Some(r) = remote {
            if !r.formats.iter().any(|f| f == "0") {
                return Err(Error::InvalidArgument("no common codec".into()));
            }
        }
        let mut m = MediaDescription::new("audio", self.port(), "RTP/AVP", &["0"]);
        m.push_attribute(Attribute::value("rtpmap", "0 PCMU/8000"));
        Ok(m)
    }

    fn start<'a>(
        &'a self,
        _local: &'a SessionDescription,
        remote: &'a SessionDescription,
        index: usize,
    ) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            self.note("start");
            let ip = remote
                .media_connection(index)
                .and_then(|c| c.ip())
                .ok_or_else(|| Error::InvalidArgument("no remote address".into()))?;
            let port = remote.media[index].port;
            let sock = self.socket.lock().as_ref().and_then(|s| s.try_clone().ok());
            if let Some(sock) = sock {
                let _ = sock.send_to(b"media", SocketAddr::new(ip, port));
                let log = self.log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    if let Ok((n, _)) = sock.recv_from(&mut buf) {
                        log.lock().received.push(buf[..n].to_vec());
                    }
                });
            }
            Ok(())
        })
    }

    fn update(&self, _l: &SessionDescription, _r: &SessionDescription, _i: usize) {
        self.note("update");
    }

    fn hold(&self) {
        self.note("hold");
    }

    fn unhold(&self) {
        self.note("unhold");
    }

    fn end(&self) {
        self.note("end");
        self.socket.lock().take();
    }
}

/// Makes TestStreams for m=audio RTP/AVP offers and keeps every one made.
#[derive(Default)]
pub struct TestFactory {
    pub made: Mutex<Vec<Arc<TestStream>>>,
}

impl MediaStreamFactory for TestFactory {
    fn stream_type(&self) -> &str {
        TYPE
    }

    /// Ahead of the built-in audio stream for the same m= lines.
    fn priority(&self) -> i32 {
        10
    }

    fn new_from_sdp(&self, sdp: &SessionDescription, index: usize) -> Option<Arc<dyn MediaStream>> {
        let m = sdp.media.get(index)?;
        if m.media != "audio" || !m.proto.starts_with("RTP/AVP") {
            return None;
        }
        let s = TestStream::new();
        self.made.lock().push(s.clone());
        Some(s)
    }

    fn new_outgoing(&self) -> Result<Arc<dyn MediaStream>> {
        let s = TestStream::new();
        self.made.lock().push(s.clone());
        Ok(s)
    }
}
