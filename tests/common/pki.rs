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
