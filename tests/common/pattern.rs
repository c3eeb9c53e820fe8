//! Test message bodies: a prime-length random block repeated (chunk
//! borders never line up with it, so any misplaced byte shows), streamed
//! by a reader and checked piece by piece at the receiver.
#![allow(dead_code)]

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The message's bytes: a prime-length random block repeated, so chunk
/// borders never line up with it and any misplaced byte shows.
pub const BLOCK: usize = 65_521;

pub fn block() -> Vec<u8> {
    let mut s = 0x1234_5678_9abc_def0u64;
    (0..BLOCK)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// An endless reader of the block pattern, `left` bytes long.
pub struct Pattern {
    block: Vec<u8>,
    pos: usize,
    left: u64,
}

impl AsyncRead for Pattern {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while buf.remaining() > 0 && self.left > 0 {
            let pos = self.pos;
            let n = (BLOCK - pos).min(buf.remaining()).min(self.left as usize);
            buf.put_slice(&self.block[pos..pos + n]);
            self.pos = (pos + n) % BLOCK;
            self.left -= n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

/// Whether `data` is the pattern at `offset`.
pub fn matches_pattern(block: &[u8], offset: u64, data: &[u8]) -> bool {
    let mut pos = (offset % BLOCK as u64) as usize;
    let mut rest = data;
    while !rest.is_empty() {
        let n = (BLOCK - pos).min(rest.len());
        if rest[..n] != block[pos..pos + n] {
            return false;
        }
        rest = &rest[n..];
        pos = (pos + n) % BLOCK;
    }
    true
}

impl Pattern {
    /// `left` bytes of the pattern from its start.
    pub fn new(block: Vec<u8>, left: u64) -> Pattern {
        Pattern {
            block,
            pos: 0,
            left,
        }
    }
}
