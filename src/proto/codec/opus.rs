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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::codec::dsp::{level_dbfs, tone_ratio};

    /// Frames of a 1 kHz tone through an encoder with FEC, every fifth
    /// one lost and made up for by `fill`; returns the made-up frames.
    fn made_up(fill: impl Fn(&mut Opus, &[u8], &[u8], &mut Vec<i16>)) -> Vec<i16> {
        let n = CodecKind::Opus.frame_samples();
        let mut c = Opus::new(true).unwrap();
        let packets: Vec<Vec<u8>> = (0..100)
            .map(|f| {
                let pcm: Vec<i16> = (f * n..(f + 1) * n)
                    .map(|i| {
                        (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin())
                            as i16
                    })
                    .collect();
                let mut out = Vec::new();
                c.encode(&pcm, &mut out);
                out
            })
            .collect();
        let mut got = Vec::new();
        for f in 0..99 {
            let mut out = Vec::new();
            if f % 5 == 4 && f > 20 {
                fill(&mut c, &packets[f], &packets[f + 1], &mut out);
                got.extend(out);
            } else {
                assert!(c.decode(&packets[f], &mut out));
            }
        }
        got
    }

    #[test]
    fn fec_recovers_a_lost_frame_better_than_plc() {
        let rate = CodecKind::Opus.sample_rate();
        let fec = made_up(|c, _, next, out| assert!(c.recover(next, out)));
        let plc = made_up(|c, _, _, out| c.conceal(out));
        let good = made_up(|c, this, _, out| assert!(c.decode(this, out)));
        // Frame by frame: made-up frames need not keep the tone's phase.
        let ratio = |v: &[i16]| {
            let n = CodecKind::Opus.frame_samples();
            v.chunks(n)
                .map(|f| tone_ratio(f, rate, 1000.0))
                .sum::<f64>()
                / (v.len() / n) as f64
        };
        let (rf, rp) = (ratio(&fec), ratio(&plc));
        let (lf, lp) = (level_dbfs(&fec), level_dbfs(&plc));
        // Decoded normally the tone is all there; the low-rate redundancy
        // keeps more of it, at a level closer to the original, than
        // concealment from the past alone.
        assert!(ratio(&good) > 0.99);
        assert!(rf > rp + 0.05, "FEC {rf:.3} vs PLC {rp:.3}");
        assert!(lf > lp, "FEC {lf:.1} dBFS vs PLC {lp:.1} dBFS");
    }
}
