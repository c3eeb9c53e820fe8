//! Audio codecs implemented in the crate (sans-IO: samples in, bytes out).

pub mod g711;
