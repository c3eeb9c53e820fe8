//! Audio codecs (sans-IO: samples in, bytes out): G.711 (PCMU, PCMA)
//! written here, G.722 and Opus from well-kept implementations, behind
//! one interface the audio stream drives at 20 ms frames.

pub mod dsp;
pub mod g711;
pub mod g722;
pub mod opus;

use g711::Law;

/// Frame length the audio stream sends, in milliseconds.
pub const PTIME_MS: u32 = 20;

/// A codec we can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    Opus,
    G722,
    Pcmu,
    Pcma,
}

impl CodecKind {
    pub const ALL: [CodecKind; 4] = [
        CodecKind::Opus,
        CodecKind::G722,
        CodecKind::Pcmu,
        CodecKind::Pcma,
    ];

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Opus => "opus",
            CodecKind::G722 => "G722",
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
        }
    }

    /// A name from settings or SDP, case-insensitively.
    pub fn parse(name: &str) -> Option<CodecKind> {
        CodecKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// The RTP timestamp rate (G.722 keeps 8000 for historical reasons,
    /// RFC 3551 4.5.2; Opus always says 48000, RFC 7587).
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            _ => 8_000,
        }
    }

    /// The sample rate of the audio it carries.
    pub fn sample_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::G722 => 16_000,
            _ => 8_000,
        }
    }

    /// Samples in one frame of PCM.
    pub fn frame_samples(self) -> usize {
        (self.sample_rate() * PTIME_MS / 1000) as usize
    }

    /// RTP timestamp units in one frame.
    pub fn frame_ticks(self) -> u32 {
        self.clock_rate() * PTIME_MS / 1000
    }

    /// The static payload type (RFC 3551), or the dynamic one we offer.
    pub fn payload_type(self) -> u8 {
        match self {
            CodecKind::Pcmu => 0,
            CodecKind::Pcma => 8,
            CodecKind::G722 => 9,
            CodecKind::Opus => 111,
        }
    }

    /// Whether the payload type needs no a=rtpmap.
    pub fn is_static(self) -> bool {
        !matches!(self, CodecKind::Opus)
    }

    /// The a=rtpmap value after the payload type.
    pub fn rtpmap(self) -> String {
        match self {
            CodecKind::Opus => "opus/48000/2".into(),
            k => format!("{}/{}", k.name(), k.clock_rate()),
        }
    }

    /// The a=fmtp we add (after the payload type), if any.
    pub fn fmtp(self) -> Option<&'static str> {
        match self {
            CodecKind::Opus => Some("useinbandfec=1; minptime=10"),
            _ => None,
        }
    }

    /// A codec instance. `fec`: the peer asked for Opus in-band FEC.
    pub fn open(self, fec: bool) -> Result<Box<dyn AudioCodec>, CodecError> {
        Ok(match self {
            CodecKind::Pcmu => Box::new(G711 {
                law: Law::Mu,
                last: Vec::new(),
            }),
            CodecKind::Pcma => Box::new(G711 {
                law: Law::A,
                last: Vec::new(),
            }),
            CodecKind::G722 => Box::new(g722::G722::new()),
            CodecKind::Opus => Box::new(opus::Opus::new(fec)?),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(pub String);

/// One codec instance: an encoder and a decoder with their state.
pub trait AudioCodec: Send {
    fn kind(&self) -> CodecKind;

    /// Encode one frame of [`CodecKind::frame_samples`] samples.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>);

    /// Decode one payload; false (and nothing appended) when it is not
    /// one this codec can read.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> bool;

    /// A frame for one that was lost: the codec's concealment where it
    /// has one, else a fading repeat of the last frame.
    fn conceal(&mut self, out: &mut Vec<i16>);

    /// Recover the frame before `next` from `next`'s redundancy (Opus
    /// in-band FEC); false when there is none.
    fn recover(&mut self, _next: &[u8], _out: &mut Vec<i16>) -> bool {
        false
    }
}

/// Repeats the last good frame at half the level each time (RFC 3550's
/// simplest concealment), for codecs with none of their own.
pub(crate) fn fade_repeat(last: &mut [i16], out: &mut Vec<i16>) {
    for s in last.iter_mut() {
        *s /= 2;
    }
    out.extend_from_slice(last);
}

struct G711 {
    law: Law,
    last: Vec<i16>,
}

impl AudioCodec for G711 {
    fn kind(&self) -> CodecKind {
        match self.law {
            Law::Mu => CodecKind::Pcmu,
            Law::A => CodecKind::Pcma,
        }
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        self.law.encode(pcm, out);
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> bool {
        let start = out.len();
        self.law.decode(payload, out);
        self.last.clear();
        self.last.extend_from_slice(&out[start..]);
        true
    }

    fn conceal(&mut self, out: &mut Vec<i16>) {
        if self.last.is_empty() {
            self.last = vec![0; self.kind().frame_samples()];
        }
        fade_repeat(&mut self.last, out);
    }
}

#[cfg(test)]
mod tests {
    use super::dsp::tone_ratio;
    use super::*;

    fn sine(freq: f64, rate: u32, n: usize, from: usize) -> Vec<i16> {
        (from..from + n)
            .map(|i| {
                ((std::f64::consts::TAU * freq * i as f64 / rate as f64).sin() * 9830.0) as i16
            })
            .collect()
    }

    /// Every codec carries a tone through encode and decode at its own
    /// rate: the decoded signal is that tone, at about its level.
    #[test]
    fn every_codec_carries_a_tone() {
        for kind in CodecKind::ALL {
            let rate = kind.sample_rate();
            let mut tx = kind.open(false).unwrap();
            let mut rx = kind.open(false).unwrap();
            let mut heard = Vec::new();
            let n = kind.frame_samples();
            for i in 0..50 {
                let frame = sine(1000.0, rate, n, i * n);
                let mut bytes = Vec::new();
                tx.encode(&frame, &mut bytes);
                assert!(!bytes.is_empty(), "{kind:?}");
                assert!(rx.decode(&bytes, &mut heard), "{kind:?}");
            }
            assert_eq!(heard.len(), 50 * kind.frame_samples(), "{kind:?}");
            let tail = &heard[heard.len() / 2..];
            let r = tone_ratio(tail, rate, 1000.0);
            assert!(r > 0.9, "{kind:?}: 1 kHz ratio {r}");
            // Concealment produces a frame's worth.
            let before = heard.len();
            rx.conceal(&mut heard);
            assert_eq!(heard.len() - before, kind.frame_samples(), "{kind:?}");
        }
    }

    #[test]
    fn names_rates_and_sdp() {
        assert_eq!(CodecKind::parse("OPUS"), Some(CodecKind::Opus));
        assert_eq!(CodecKind::parse("g722"), Some(CodecKind::G722));
        assert_eq!(CodecKind::parse("speex"), None);
        assert_eq!(CodecKind::G722.frame_ticks(), 160);
        assert_eq!(CodecKind::G722.frame_samples(), 320);
        assert_eq!(CodecKind::Opus.frame_ticks(), 960);
        assert_eq!(CodecKind::Opus.rtpmap(), "opus/48000/2");
        assert_eq!(CodecKind::Pcma.rtpmap(), "PCMA/8000");
    }
}
