//! The MSRP library (RFC 4975), in the shape of the documented msrplib:
//! `protocol` (URIs, chunks, the parser), `transport` ([`MSRPTransport`]
//! with `make_chunk`, `write_chunk`, `read_chunk`), `connect`
//! ([`get_connector`], [`get_acceptor`], [`ConnectorDirect`],
//! [`AcceptorDirect`], [`MSRPServer`]) and `session` ([`MSRPSession`]).
//!
//! Everything here is async and runs on the caller's tokio runtime; the
//! SDK's streams (chat, file transfer) run it on the engine's runtime.
//!
//! ```text
//! let mut c = get_connector(tls);
//! let local_path = c.prepare(local_uri).await?;   // -> SDP a=path
//! // ... offer/answer carries the paths ...
//! let transport = c.complete(remote_path).await?; // bound
//! let session = transport.into_session(SessionConfig::default());
//! ```

use std::sync::Arc;

pub use crate::driver::msrp::{
    get_acceptor, get_connector, new_session_id, Acceptor, AcceptorDirect, AcceptorRelay,
    BlockSource, ChunkSpec, Connector, ConnectorDirect, ConnectorRelay, MSRPData, MSRPServer,
    MSRPSession, MSRPTransport, MessageSource, MsrpConnectionPool, MsrpIoError, MsrpTls, MsrpTrace,
    RelaySettings, SendOptions, SessionEvent, SessionStats, TraceDirection,
};
pub use crate::proto::msrp::auth::{AuthClient, AuthOutcome};
pub use crate::proto::msrp::session::{Event as MsrpEvent, SessionConfig};
pub use crate::proto::msrp::{
    parse_path, path_to_string, ByteRange, ChunkHead, ChunkParser, ContFlag, MsrpError, MsrpUri,
    ReportMode, Status,
};

pub use crate::proto::sdp::{Fingerprint, HashFunction};

use crate::driver::tls::{client_configs, fingerprint_identity, TlsError, TlsSettings};

/// TLS for msrps with the same policy as SIP over TLS: the same trusted
/// CAs and verification setting, and the same certificate to accept with.
/// That certificate is also our identity for a=fingerprint: presented when
/// a peer asks for a client certificate. Accepting asks for one (without
/// requiring it) so a peer's a=fingerprint can be checked. Without
/// `certificate_file` the process makes a self-signed certificate once and
/// uses that: peers pin it through our a=fingerprint.
pub fn tls_from_settings(s: &TlsSettings) -> Result<MsrpTls, TlsError> {
    let client = client_configs(s)?.choose(None);
    let (identity, server) = fingerprint_identity(s.certificate_file.as_deref())?;
    Ok(MsrpTls {
        client: Some(client),
        server: Some(server),
        identity: Some(identity),
    })
}

/// [`tls_from_settings`], made once per distinct settings and kept by
/// the application while it runs: loading the system's root certificates
/// takes milliseconds, which every chat or file transfer stream would
/// otherwise pay again. Owned by the running engine (not the process), so
/// stopping the application frees it.
#[derive(Clone, Default)]
pub struct MsrpTlsCache(Arc<parking_lot::Mutex<Option<(TlsSettings, MsrpTls)>>>);

impl MsrpTlsCache {
    pub fn get(&self, s: &TlsSettings) -> Result<MsrpTls, TlsError> {
        let mut last = self.0.lock();
        if let Some((settings, tls)) = last.as_ref() {
            if settings == s {
                return Ok(tls.clone());
            }
        }
        let tls = tls_from_settings(s)?;
        *last = Some((s.clone(), tls.clone()));
        Ok(tls)
    }
}

impl std::fmt::Debug for MsrpTlsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MsrpTlsCache")
    }
}

/// TLS with explicit rustls configurations.
pub fn tls_with(
    client: Option<Arc<rustls::ClientConfig>>,
    server: Option<Arc<rustls::ServerConfig>>,
) -> MsrpTls {
    MsrpTls {
        client,
        server,
        identity: None,
    }
}
