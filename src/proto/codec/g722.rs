//! G.722 (ITU-T, 64 kbit/s sub-band ADPCM) at 16 kHz, from the
//! `audio-codec` crate's implementation of the reference algorithm. RTP
//! carries it as payload type 9 with an 8000 Hz clock (RFC 3551 4.5.2).

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder, Encoder};

use super::{fade_repeat, AudioCodec, CodecKind};

pub struct G722 {
    enc: G722Encoder,
    dec: G722Decoder,
    last: Vec<i16>,
}

impl G722 {
    pub fn new() -> G722 {
        G722 {
            enc: G722Encoder::new(),
            dec: G722Decoder::new(),
            last: Vec::new(),
        }
    }
}

impl Default for G722 {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioCodec for G722 {
    fn kind(&self) -> CodecKind {
        CodecKind::G722
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.enc.max_encode_bytes(pcm.len()), 0);
        let n = self.enc.encode_into(pcm, &mut out[start..]).unwrap_or(0);
        out.truncate(start + n);
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> bool {
        let start = out.len();
        out.resize(start + self.dec.max_decode_samples(payload.len()), 0);
        match self.dec.decode_into(payload, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                self.last.clear();
                self.last.extend_from_slice(&out[start..]);
                true
            }
            Err(_) => {
                out.truncate(start);
                false
            }
        }
    }

    fn conceal(&mut self, out: &mut Vec<i16>) {
        if self.last.is_empty() {
            self.last = vec![0; CodecKind::G722.frame_samples()];
        }
        fade_repeat(&mut self.last, out);
    }
}
