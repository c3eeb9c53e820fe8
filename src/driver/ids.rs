//! Random identifiers: Via branches, tags, Call-IDs and cnonces, from the
//! operating system's generator.

/// Fill `b` from the OS generator. getrandom only fails when the OS has no
/// entropy source at all; a clock-derived fallback keeps identifiers unique
/// within the process.
fn random_bytes(b: &mut [u8]) {
    if getrandom::fill(b).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    random_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A random 64-bit number: the seed of a sans-IO core's generator, an SSRC.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    u64::from_le_bytes(b)
}

/// A Via branch with the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_hex(12))
}

pub fn new_tag() -> String {
    random_hex(8)
}

pub fn new_call_id() -> String {
    random_hex(16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_well_formed() {
        let a = super::new_branch();
        let b = super::new_branch();
        assert_ne!(a, b);
        assert!(a.starts_with("z9hG4bK") && a.len() == 7 + 24);
        assert!(super::new_tag().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
