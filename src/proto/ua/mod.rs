//! User-agent cores built on the transaction and dialog layers: the INVITE
//! session (RFC 3261 13-15, RFC 3262, RFC 3264, RFC 4028), registration
//! and pager-mode MESSAGE (RFC 3428).

pub mod pager;
pub mod registration;
pub mod session;

/// SplitMix64: the cores' source of tags, branches, Call-IDs and retry
/// jitter, seeded by the driver (sans-IO: no randomness of their own).
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
