//! Opus (RFC 6716) through the `opus` crate (libopus): mono at 48 kHz in
//! 20 ms frames, RTP as RFC 7587 describes (clock 48000, `opus/48000/2`
//! whatever the channels), in-band FEC when the peer asks for it
//! (`useinbandfec=1`), and libopus' own concealment for lost frames.

use opus::{Application, Bitrate, Channels, Decoder, Encoder};

use super::{AudioCodec, CodecError, CodecKind};

/// Largest Opus packet (RFC 6716 3.2.1).
const MAX_PACKET: usize = 1275;

pub struct Opus {
    enc: Encoder,
    dec: Decoder,
    /// A frame of PCM for the decoder to write into.
    buf: Vec<i16>,
}

impl Opus {
    /// `fec`: send in-band FEC (the peer said `useinbandfec=1`).
    pub fn new(fec: bool) -> Result<Opus, CodecError> {
        let err = |e: opus::Error| CodecError(format!("opus: {e}"));
        let mut enc = Encoder::new(48_000, Channels::Mono, Application::Voip).map_err(err)?;
        enc.set_bitrate(Bitrate::Bits(32_000)).map_err(err)?;
        if fec {
            enc.set_inband_fec(true).map_err(err)?;
            // FEC needs the encoder to expect some loss to spend bits on it.
            enc.set_packet_loss_perc(10).map_err(err)?;
        }
        let dec = Decoder::new(48_000, Channels::Mono).map_err(err)?;
        Ok(Opus {
            enc,
            dec,
            buf: vec![0; CodecKind::Opus.frame_samples() * 6],
        })
    }
}

impl AudioCodec for Opus {
    fn kind(&self) -> CodecKind {
        CodecKind::Opus
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + MAX_PACKET, 0);
        let n = self.enc.encode(pcm, &mut out[start..]).unwrap_or(0);
        out.truncate(start + n);
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> bool {
        if payload.is_empty() {
            return false;
        }
        match self.dec.decode(payload, &mut self.buf, false) {
            Ok(n) => {
                out.extend_from_slice(&self.buf[..n]);
                true
            }
            Err(_) => false,
        }
    }

    fn conceal(&mut self, out: &mut Vec<i16>) {
        let frame = CodecKind::Opus.frame_samples();
        match self.dec.decode(&[], &mut self.buf[..frame], false) {
            Ok(n) => out.extend_from_slice(&self.buf[..n]),
            Err(_) => out.resize(out.len() + frame, 0),
        }
    }

    fn recover(&mut self, next: &[u8], out: &mut Vec<i16>) -> bool {
        let frame = CodecKind::Opus.frame_samples();
        match self.dec.decode(next, &mut self.buf[..frame], true) {
            Ok(n) if n > 0 => {
                out.extend_from_slice(&self.buf[..n]);
                true
            }
            _ => false,
        }
    }
}
