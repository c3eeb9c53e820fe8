//! MSRP (RFC 4975, relays RFC 4976), sans-IO: URIs, chunks and their
//! printer, the incremental parser, and the session core that splits
//! outgoing messages into chunks, reassembles incoming ones, answers
//! transactions and makes and reads REPORTs.

pub mod auth;
pub mod message;
pub mod parse;
pub mod session;
pub mod uri;

#[cfg(test)]
mod tests;

pub use message::{reason_phrase, ByteRange, ChunkHead, ContFlag, ReportMode, StartLine, Status};
pub use parse::{ChunkParser, FramingError, ParserLimits, Piece};
pub use uri::{parse_path, path_to_string, MsrpUri};

/// A random identifier of `n` characters from `[0-9a-z]` (transaction,
/// message and session ids), drawn from `rng` (SplitMix64 state).
pub fn random_ident(rng: &mut u64, n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| {
            ALPHABET[(crate::proto::ua::splitmix(rng) % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// What is wrong with an MSRP element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsrpError {
    #[error("MSRP URI: {0}")]
    Uri(String),
    #[error("MSRP header: {0}")]
    Header(String),
}
