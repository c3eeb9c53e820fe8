//! What every MSRP media stream (chat, file transfer, a host's own types)
//! does the same way, the SDK's MSRPStreamBase: msrp or msrps from the
//! account, the account's relay, who opens the connection (a=setup), the
//! local path, the MSRP part of the m= line, and binding the connection
//! once the peer's SDP is known. With `logs.trace_msrp` on, every read
//! and write of the session's connection is posted as MSRPTransportTrace
//! from the session: `direction` (incoming, outgoing), `local_path`,
//! `remote_path`, `size` and `data` (the bytes as text, the first
//! [`TRACE_MAX`] of them; `truncated` says whether there were more).

use std::sync::Arc;

use crate::api::engine::bool_setting;
use crate::api::error::{Error, Result};
use crate::api::msrp::{
    get_acceptor, get_connector, new_session_id, parse_path, path_to_string, Acceptor, Connector,
    MSRPTransport, MsrpIoError, MsrpTls, MsrpTrace, MsrpUri, RelaySettings, TraceDirection,
};
use crate::api::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use crate::api::stream::StreamContext;
use crate::proto::sdp::offer_answer::{answer_setup, opens_connection};
use crate::proto::sdp::{Attribute, Fingerprint, MediaDescription, SessionDescription, Setup};

pub const MSRP_TRACE: &str = "MSRPTransportTrace";
/// Bytes of one read or write a trace notification carries at most.
pub const TRACE_MAX: usize = 16 * 1024;

/// The side of the connection we take.
pub(crate) enum Side {
    Connect(Connector),
    Accept(Acceptor),
}

/// Our side, and the session to post the wire trace from (when on).
pub(crate) struct Endpoint {
    side: Side,
    trace_from: Option<ObjectId>,
}

/// A trace posting MSRPTransportTrace from `session`.
fn session_trace(session: ObjectId, local: &[MsrpUri], remote: &[MsrpUri]) -> MsrpTrace {
    let (local, remote) = (path_to_string(local), path_to_string(remote));
    Arc::new(move |dir: TraceDirection, bytes: &[u8]| {
        let shown = &bytes[..bytes.len().min(TRACE_MAX)];
        NotificationCenter::default().post_notification(
            MSRP_TRACE,
            &Sender {
                id: session,
                kind: "Session",
            },
            NotificationData::new()
                .with("direction", dir.as_str())
                .with("local_path", local.as_str())
                .with("remote_path", remote.as_str())
                .with("size", bytes.len() as i64)
                .with("data", String::from_utf8_lossy(shown).into_owned())
                .with("truncated", bytes.len() > TRACE_MAX),
        );
    })
}

/// An MSRP link between `initialize` and `start`: our role, our path, the
/// TLS identity, and the connector or acceptor waiting for the peer.
pub(crate) struct Link {
    pub secure: bool,
    pub setup: Setup,
    pub local_path: Vec<MsrpUri>,
    pub tls: MsrpTls,
    /// Our a=setup was an offer (we connect unless the answer says so).
    offered: bool,
    endpoint: Option<Endpoint>,
}

/// `TCP/MSRP` (false) or `TCP/TLS/MSRP` (true); None for anything else.
pub(crate) fn is_msrp_proto(proto: &str) -> Option<bool> {
    match proto.to_ascii_uppercase().as_str() {
        "TCP/MSRP" => Some(false),
        "TCP/TLS/MSRP" => Some(true),
        _ => None,
    }
}

/// A text setting of the stream's account, when set and not empty.
pub(crate) fn account_text(ctx: &StreamContext, name: &str) -> Option<String> {
    ctx.account
        .as_ref()
        .and_then(|a| a.get(name).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
}

/// The account's `msrp.relay`, with its credentials.
pub(crate) fn relay_settings(ctx: &StreamContext) -> Result<Option<RelaySettings>> {
    let Some(uri) = account_text(ctx, "msrp.relay") else {
        return Ok(None);
    };
    let uri =
        MsrpUri::parse(&uri).map_err(|e| Error::InvalidArgument(format!("msrp.relay: {e}")))?;
    let creds = ctx.account.as_ref().and_then(|a| a.credentials());
    let (username, password) = creds.map(|c| (c.username, c.password)).unwrap_or_default();
    Ok(Some(RelaySettings {
        uri,
        username,
        password,
        expires: None,
    }))
}

pub(crate) fn msrp_err(e: MsrpIoError) -> Error {
    Error::Internal(format!("MSRP: {e}"))
}

impl Link {
    /// Prepare our end. Outgoing (`offer` None): msrps when the account's
    /// `msrp.transport` is tls, and we offer to connect. Incoming: the
    /// peer's offer gives msrp or msrps and its a=setup.
    pub async fn prepare(
        ctx: &StreamContext,
        offer: Option<(bool, Option<Setup>)>,
    ) -> Result<Link> {
        let incoming = offer.is_some();
        let (secure, setup, offered_setup) = match offer {
            Some((secure, theirs)) => (secure, answer_setup(theirs), theirs),
            None => (
                account_text(ctx, "msrp.transport").as_deref() == Some("tls"),
                Setup::Active,
                None,
            ),
        };
        let tls = if secure {
            let s = crate::api::engine::tls_settings(&ctx.settings)?;
            ctx.msrp_tls
                .get(&s)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?
        } else {
            MsrpTls::default()
        };
        let relay = relay_settings(ctx)?;
        let local = MsrpUri::new(secure, &ctx.local_ip.to_string(), 0, &new_session_id());
        let (side, local_path) = if opens_connection(Some(setup), offered_setup, incoming) {
            let mut c = get_connector(tls.clone(), relay);
            let p = c.prepare(local).await.map_err(msrp_err)?;
            (Side::Connect(c), p)
        } else {
            let mut a = get_acceptor(tls.clone(), relay);
            let p = a.prepare(local).await.map_err(msrp_err)?;
            (Side::Accept(a), p)
        };
        let trace = bool_setting(&ctx.settings, "logs.trace_msrp", false)?;
        let endpoint = Endpoint {
            side,
            trace_from: trace.then_some(ctx.session),
        };
        Ok(Link {
            secure,
            setup,
            local_path,
            tls,
            offered: !incoming,
            endpoint: Some(endpoint),
        })
    }

    /// Our m= line for `media` with its MSRP attributes: a=path, a=setup
    /// and, over TLS, a=fingerprint. The stream adds its own.
    pub fn media(&self, media: &str) -> Result<MediaDescription> {
        let last = self
            .local_path
            .last()
            .ok_or_else(|| Error::InvalidState("the MSRP stream is not initialized".into()))?;
        let proto = if self.secure {
            "TCP/TLS/MSRP"
        } else {
            "TCP/MSRP"
        };
        let mut m = MediaDescription::new(media, last.port.unwrap_or(9), proto, &["*"]);
        m.push_attribute(Attribute::value("path", path_to_string(&self.local_path)));
        m.push_attribute(Attribute::value("setup", self.setup.as_str()));
        if self.secure {
            if let Some(f) = self.tls.fingerprint() {
                m.push_attribute(Attribute::value("fingerprint", f.to_string()));
            }
        }
        Ok(m)
    }

    /// Take the connector or acceptor for [`complete`] (once).
    pub fn take_endpoint(&mut self) -> Option<Endpoint> {
        self.endpoint.take()
    }
}

/// The peer's MSRP media section `index`: its path and fingerprint,
/// checked against our role before anything connects.
pub(crate) struct RemoteMsrp {
    pub path: Vec<MsrpUri>,
    pub fingerprint: Option<Fingerprint>,
}

/// Read and check the peer's side. `we_offered_connect`: our offer said we
/// connect (an answer that also says active leaves nobody listening).
pub(crate) fn remote_msrp(
    remote_sdp: &SessionDescription,
    index: usize,
    we_offered_connect: bool,
) -> Result<(RemoteMsrp, &MediaDescription)> {
    let rm = remote_sdp
        .media
        .get(index)
        .ok_or_else(|| Error::InvalidArgument("no such media section".into()))?;
    let path_attr = rm.attribute("path").ok_or_else(|| {
        Error::InvalidArgument(format!("the peer's m={} has no a=path", rm.media))
    })?;
    let path = parse_path(path_attr)
        .map_err(|e| Error::InvalidArgument(format!("the peer's a=path: {e}")))?;
    let fingerprint = match rm
        .attribute("fingerprint")
        .or(remote_sdp.attribute("fingerprint"))
    {
        Some(f) => Some(
            Fingerprint::parse(f)
                .map_err(|e| Error::InvalidArgument(format!("a=fingerprint: {e}")))?,
        ),
        None => None,
    };
    if we_offered_connect && rm.setup() == Some(Setup::Active) {
        return Err(Error::InvalidArgument(
            "both sides want to open the MSRP connection (a=setup:active)".into(),
        ));
    }
    Ok((RemoteMsrp { path, fingerprint }, rm))
}

impl Link {
    /// Whether our offer said we open the connection.
    pub fn offered_connect(&self) -> bool {
        self.offered
            && matches!(
                self.endpoint,
                Some(Endpoint {
                    side: Side::Connect(_),
                    ..
                })
            )
    }
}

/// Connect or accept, and bind the session (RFC 4975 section 5.4).
pub(crate) async fn complete(endpoint: Endpoint, remote: RemoteMsrp) -> Result<MSRPTransport> {
    let mut t = match endpoint.side {
        Side::Connect(mut c) => {
            c.set_remote_fingerprint(remote.fingerprint);
            c.complete(remote.path).await
        }
        Side::Accept(mut a) => {
            a.set_remote_fingerprint(remote.fingerprint);
            a.complete(remote.path).await
        }
    }
    .map_err(msrp_err)?;
    if let Some(session) = endpoint.trace_from {
        let trace = session_trace(session, t.local_path(), t.remote_path());
        t.set_trace(Some(trace));
    }
    Ok(t)
}
