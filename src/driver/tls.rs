//! TLS for SIP (and later MSRP) with rustls on the ring provider: client
//! configurations that verify against the system roots plus an optional CA
//! file (or, when an account turns verification off, check only the
//! handshake signatures), and a server configuration from a PEM file holding
//! the certificate chain and its private key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::proto::sdp::{Fingerprint, HashFunction};

/// How TLS is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Extra trusted CAs (PEM), e.g. a private CA.
    pub ca_file: Option<PathBuf>,
    /// Trust the operating system's root store too.
    pub use_system_roots: bool,
    /// Verify server certificates by default (accounts may override).
    pub verify_server: bool,
    /// PEM file with our certificate chain and private key, needed to accept
    /// TLS connections.
    pub certificate_file: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            ca_file: None,
            use_system_roots: true,
            verify_server: true,
            certificate_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("bad certificate in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// The two client configurations: verifying, and signature-only.
#[derive(Clone)]
pub struct ClientConfigs {
    pub verifying: Arc<ClientConfig>,
    pub unverified: Arc<ClientConfig>,
    pub verify_by_default: bool,
}

impl ClientConfigs {
    pub fn choose(&self, verify: Option<bool>) -> Arc<ClientConfig> {
        if verify.unwrap_or(self.verify_by_default) {
            self.verifying.clone()
        } else {
            self.unverified.clone()
        }
    }
}

/// The system's trusted roots, read and parsed once per process: every
/// application start (and every msrps setup) used to read and parse the
/// whole certificate directory again, seconds under valgrind with several
/// applications starting at once. Unreadable certificates are skipped; a
/// system without any still works with a CA file.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: once_cell::sync::OnceCell<RootCertStore> = once_cell::sync::OnceCell::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

pub fn client_configs(s: &TlsSettings) -> Result<ClientConfigs, TlsError> {
    let mut roots = if s.use_system_roots {
        system_roots().clone()
    } else {
        RootCertStore::empty()
    };
    if let Some(ca) = &s.ca_file {
        let (added, _) = roots.add_parsable_certificates(read_certs(ca)?);
        if added == 0 {
            return Err(TlsError(format!("no usable CA in {}", ca.display())));
        }
    }
    let p = provider();
    let verifying = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let unverified = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignatureOnly(p)))
        .with_no_client_auth();
    Ok(ClientConfigs {
        verifying: Arc::new(verifying),
        unverified: Arc::new(unverified),
        verify_by_default: s.verify_server,
    })
}

pub fn server_config(cert_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = read_cert_and_key(cert_file)?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("{}: {e}", cert_file.display())))?;
    Ok(Arc::new(cfg))
}

/// The certificate chain and key in a PEM file.
fn read_cert_and_key(
    cert_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(cert_file)
        .map_err(|e| TlsError(format!("no private key in {}: {e}", cert_file.display())))?;
    Ok((certs, key))
}

/// A certificate and key made for this process (RFC 8122 section 5 allows
/// self-signed ones): for msrps without a configured `tls.certificate`,
/// where the peer checks it against our a=fingerprint. Made once.
fn own_certificate() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    static MADE: once_cell::sync::OnceCell<(CertificateDer<'static>, Vec<u8>)> =
        once_cell::sync::OnceCell::new();
    let (cert, key) = MADE.get_or_try_init(|| {
        let c = rcgen::generate_simple_self_signed(vec!["sipsimple.invalid".to_string()])
            .map_err(|e| TlsError(format!("cannot make a certificate: {e}")))?;
        Ok::<_, TlsError>((c.cert.der().clone(), c.signing_key.serialize_der()))
    })?;
    let key = PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(key.clone()));
    Ok((vec![cert.clone()], key))
}

/// Our identity for a=fingerprint, presented when a peer asks for a
/// client certificate, and a server configuration with the same
/// certificate that asks the client for one (without requiring it, and
/// without a CA check: the caller compares it with the peer's
/// a=fingerprint when it has one). From `cert_file` (PEM certificate and
/// key), else from the process's own self-signed certificate.
pub fn fingerprint_identity(
    cert_file: Option<&Path>,
) -> Result<(Arc<CertifiedKey>, Arc<ServerConfig>), TlsError> {
    let (certs, key) = match cert_file {
        Some(f) => read_cert_and_key(f)?,
        None => own_certificate()?,
    };
    let named = |e: rustls::Error| match cert_file {
        Some(f) => TlsError(format!("{}: {e}", f.display())),
        None => TlsError(e.to_string()),
    };
    let p = provider();
    let signing = p
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(named)?;
    let id = Arc::new(CertifiedKey::new(certs.clone(), signing));
    let cfg = ServerConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(Arc::new(SignatureOnly(p)))
        .with_single_cert(certs, key)
        .map_err(named)?;
    Ok((id, Arc::new(cfg)))
}

/// The a=fingerprint (SHA-256) of an identity's certificate.
pub fn identity_fingerprint(id: &CertifiedKey) -> Option<Fingerprint> {
    id.cert
        .first()
        .map(|c| Fingerprint::of(HashFunction::Sha256, c.as_ref()))
}

/// A client configuration that accepts exactly the server certificate with
/// `expected` fingerprint (RFC 8122), whoever signed it, and presents
/// `identity` when the server asks for a certificate.
pub fn pinned_client_config(
    expected: Fingerprint,
    identity: Option<Arc<CertifiedKey>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let p = provider();
    let b = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            expected,
            signatures: SignatureOnly(p),
        }));
    let cfg = match identity {
        Some(id) => b.with_client_cert_resolver(Arc::new(Identity(id))),
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct Identity(Arc<CertifiedKey>);

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The server certificate must have the fingerprint from SDP.
#[derive(Debug)]
struct Pinned {
    expected: Fingerprint,
    signatures: SignatureOnly,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.expected.matches(end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(&self.signatures, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(&self.signatures, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(&self.signatures)
    }
}

/// Client certificates: asked for, not required, signatures checked; who
/// signed them is for the caller to judge (by fingerprint).
impl ClientCertVerifier for SignatureOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

/// The name to verify: a DNS name, or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|_| TlsError(format!("{host} is not a valid TLS server name")))
}

/// Accepts any certificate but still checks that the peer signed the
/// handshake with the key in it: used only when verification is turned off.
#[derive(Debug)]
struct SignatureOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
