//! `a=fingerprint` (RFC 8122): the hash of the certificate an endpoint
//! will present in TLS, so a self-signed certificate can be checked
//! against what the signalling said.

use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// Hash functions RFC 8122 names (MD5 and MD2 are not accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFunction {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashFunction {
    pub fn as_str(self) -> &'static str {
        match self {
            HashFunction::Sha1 => "sha-1",
            HashFunction::Sha224 => "sha-224",
            HashFunction::Sha256 => "sha-256",
            HashFunction::Sha384 => "sha-384",
            HashFunction::Sha512 => "sha-512",
        }
    }

    pub fn parse(s: &str) -> Option<HashFunction> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sha-1" => HashFunction::Sha1,
            "sha-224" => HashFunction::Sha224,
            "sha-256" => HashFunction::Sha256,
            "sha-384" => HashFunction::Sha384,
            "sha-512" => HashFunction::Sha512,
            _ => return None,
        })
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashFunction::Sha1 => Sha1::digest(data).to_vec(),
            HashFunction::Sha224 => Sha224::digest(data).to_vec(),
            HashFunction::Sha256 => Sha256::digest(data).to_vec(),
            HashFunction::Sha384 => Sha384::digest(data).to_vec(),
            HashFunction::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            HashFunction::Sha1 => 20,
            HashFunction::Sha224 => 28,
            HashFunction::Sha256 => 32,
            HashFunction::Sha384 => 48,
            HashFunction::Sha512 => 64,
        }
    }
}

/// A certificate fingerprint: `sha-256 AB:CD:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub hash: HashFunction,
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a=fingerprint: {0}")]
pub struct FingerprintError(pub &'static str);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(hash: HashFunction, certificate_der: &[u8]) -> Fingerprint {
        Fingerprint {
            hash,
            digest: hash.digest(certificate_der),
        }
    }

    /// Whether `certificate_der` has this fingerprint.
    pub fn matches(&self, certificate_der: &[u8]) -> bool {
        self.hash.digest(certificate_der) == self.digest
    }

    /// Parse an attribute value: a hash function name, one space or tab,
    /// and the digest as colon-separated hex pairs of the function's length.
    pub fn parse(value: &str) -> Result<Fingerprint, FingerprintError> {
        let (name, hex) = value
            .trim()
            .split_once([' ', '\t'])
            .ok_or(FingerprintError("no digest"))?;
        let hash = HashFunction::parse(name).ok_or(FingerprintError("unknown hash function"))?;
        let mut digest = Vec::with_capacity(hash.len());
        for pair in hex.trim().split(':') {
            let b = pair.as_bytes();
            if b.len() != 2 || !b.iter().all(u8::is_ascii_hexdigit) {
                return Err(FingerprintError("digest is not colon-separated hex pairs"));
            }
            if digest.len() == hash.len() {
                return Err(FingerprintError("digest too long for its hash function"));
            }
            digest.push(u8::from_str_radix(pair, 16).map_err(|_| FingerprintError("bad hex"))?);
        }
        if digest.len() != hash.len() {
            return Err(FingerprintError("digest too short for its hash function"));
        }
        Ok(Fingerprint { hash, digest })
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hash.as_str())?;
        for (i, b) in self.digest.iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_matching() {
        let cert = b"not really DER, but any bytes hash the same way";
        for h in [
            HashFunction::Sha1,
            HashFunction::Sha224,
            HashFunction::Sha256,
            HashFunction::Sha384,
            HashFunction::Sha512,
        ] {
            let f = Fingerprint::of(h, cert);
            let text = f.to_string();
            assert!(text.starts_with(h.as_str()));
            assert_eq!(Fingerprint::parse(&text).unwrap(), f);
            assert_eq!(Fingerprint::parse(&text.to_lowercase()).unwrap(), f);
            assert!(f.matches(cert));
            assert!(!f.matches(b"another certificate"));
        }
        // SHA-256 of the empty string, a known value.
        let f = Fingerprint::of(HashFunction::Sha256, b"");
        assert_eq!(
            f.to_string(),
            "sha-256 E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:\
             27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        let good = Fingerprint::of(HashFunction::Sha1, b"x").to_string();
        let hex = good.split_once(' ').unwrap().1;
        for bad in [
            "".to_string(),
            "sha-256".to_string(),
            format!("md5 {hex}"),
            format!("sha-256 {hex}"),
            format!("sha-1 {hex}:00"),
            format!("sha-1 {}", &hex[3..]),
            format!("sha-1 {}", hex.replace(':', "")),
            format!("sha-1 {}", hex.replacen(':', "::", 1)),
            format!("sha-1 {}", hex.replacen('0', "G", 1).replacen('A', "G", 1)),
            "sha-1 +1:2".to_string(),
            "sha-1 \u{e9}\u{e9}".to_string(),
        ] {
            assert!(Fingerprint::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
