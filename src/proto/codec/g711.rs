//! G.711 (ITU-T G.711): mu-law (PCMU, payload type 0) and A-law (PCMA,
//! payload type 8), 8 kHz, one byte per sample. The segment encoding
//! follows the recommendation: mu-law biases the magnitude by 0x84 and
//! clips at 32635; A-law uses 13-bit magnitudes with segment 0 linear.

const MU_BIAS: i32 = 0x84;
const MU_CLIP: i32 = 32635;

/// The segment (exponent) of a biased magnitude: position of its highest
/// set bit above bit 7, 0-7.
fn segment(mag: i32) -> i32 {
    let mut seg = 0;
    let mut v = mag >> 8;
    while v > 0 && seg < 7 {
        seg += 1;
        v >>= 1;
    }
    seg
}

pub fn linear_to_ulaw(sample: i16) -> u8 {
    let s = sample as i32;
    let sign = if s < 0 { 0x80 } else { 0 };
    let mag = (if s < 0 { -s } else { s }).min(MU_CLIP) + MU_BIAS;
    let seg = segment(mag);
    let mantissa = (mag >> (seg + 3)) & 0x0f;
    !((sign | (seg << 4) | mantissa) as u8)
}

pub fn ulaw_to_linear(code: u8) -> i16 {
    let c = !code as i32;
    let seg = (c >> 4) & 0x07;
    let mantissa = c & 0x0f;
    let mag = (((mantissa << 3) + MU_BIAS) << seg) - MU_BIAS;
    (if c & 0x80 != 0 { -mag } else { mag }) as i16
}

pub fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let s = (sample as i32) >> 3;
    let (sign, mag) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let mag = mag.min(0x0fff);
    let code = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let mut seg = 1;
        let mut v = mag >> 5;
        while v > 1 && seg < 7 {
            seg += 1;
            v >>= 1;
        }
        ((seg << 4) | ((mag >> seg) & 0x0f)) as u8
    };
    (code | sign) ^ 0x55
}

pub fn alaw_to_linear(code: u8) -> i16 {
    let c = (code ^ 0x55) as i32;
    let seg = (c >> 4) & 0x07;
    let mantissa = c & 0x0f;
    let mag = if seg == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (seg - 1)
    };
    (if c & 0x80 != 0 { mag } else { -mag }) as i16
}

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Mu,
    A,
}

impl Law {
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Law::Mu => "PCMU",
            Law::A => "PCMA",
        }
    }

    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|&s| match self {
            Law::Mu => linear_to_ulaw(s),
            Law::A => linear_to_alaw(s),
        }));
    }

    pub fn decode(self, data: &[u8], out: &mut Vec<i16>) {
        out.extend(data.iter().map(|&c| match self {
            Law::Mu => ulaw_to_linear(c),
            Law::A => alaw_to_linear(c),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        // Silence and full scale per G.711's tables.
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(32767), 0xaa);
        assert_eq!(linear_to_alaw(-32768), 0x2a);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
    }

    #[test]
    fn every_code_decodes_and_reencodes_to_itself() {
        for c in 0..=255u8 {
            // 0x7f and 0xff are both zero in mu-law (negative and positive zero).
            let u = linear_to_ulaw(ulaw_to_linear(c));
            assert!(u == c || (c == 0x7f && u == 0xff), "mu {c:#x} -> {u:#x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A {c:#x}");
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_segment_step() {
        for s in (-32768i32..=32767).step_by(7) {
            let s = s as i16;
            for law in [Law::Mu, Law::A] {
                let mut e = Vec::new();
                law.encode(&[s], &mut e);
                let mut d = Vec::new();
                law.decode(&e, &mut d);
                let err = (d[0] as i32 - s as i32).abs();
                // The largest step is 1024 (mu-law top segment) or 1024 (A).
                let bound = ((s as i32).abs() / 16).max(16) + 16;
                assert!(err <= bound.min(1100), "{law:?} {s} -> {} err {err}", d[0]);
            }
        }
    }
}
