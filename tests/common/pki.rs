//! A private CA and a server certificate made for a test.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA and a server certificate for localhost and 127.0.0.1; returns the
/// CA file and the server's chain+key file.
pub fn make_pki(dir: &Path) -> (PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let server_file = dir.join("server.pem");
    std::fs::write(
        &server_file,
        format!("{}{}{}", leaf.pem(), ca.pem(), key.serialize_pem()),
    )
    .unwrap();
    (ca_file, server_file)
}

/// msrps with a private CA: a certificate to accept with and the CA to
/// verify it (the directory must outlive the configuration's use).
pub fn msrp_tls(dir: &Path) -> sipsimple::api::msrp::MsrpTls {
    let (ca, cert) = make_pki(dir);
    sipsimple::api::msrp::tls_from_settings(&sipsimple::driver::tls::TlsSettings {
        ca_file: Some(ca),
        use_system_roots: false,
        verify_server: true,
        certificate_file: Some(cert),
    })
    .unwrap()
}

/// A self-signed certificate for 127.0.0.1 (chain+key PEM file), as an
/// endpoint that proves itself by a=fingerprint instead of a CA has.
pub fn self_signed(dir: &Path, name: &str) -> PathBuf {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let file = dir.join(format!("{name}.pem"));
    std::fs::write(&file, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    file
}
