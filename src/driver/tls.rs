//! TLS for SIP (and later MSRP) with rustls on the ring provider: client
//! configurations that verify against the system roots plus an optional CA
//! file (or, when an account turns verification off, check only the
//! handshake signatures), and a server configuration from a PEM file holding
//! the certificate chain and its private key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// How TLS is set up.
#[derive(Debug, Clone)]
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

pub fn client_configs(s: &TlsSettings) -> Result<ClientConfigs, TlsError> {
    let mut roots = RootCertStore::empty();
    if s.use_system_roots {
        // Unreadable system certificates are skipped; a system without any
        // still works with a CA file.
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    }
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
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(cert_file)
        .map_err(|e| TlsError(format!("no private key in {}: {e}", cert_file.display())))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("{}: {e}", cert_file.display())))?;
    Ok(Arc::new(cfg))
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
