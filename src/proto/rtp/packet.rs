//! RTP packets (RFC 3550 5.1): a checked parser that borrows the payload,
//! and a writer.

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    TooShort,
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("CSRC list or header extension runs past the end")]
    Truncated,
    #[error("padding longer than the payload")]
    BadPadding,
    #[error("an RTCP packet (payload type {0}) on the RTP port")]
    Rtcp(u8),
}

/// The fixed header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed packet; the payload borrows the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub csrc: Vec<u32>,
    pub payload: &'a [u8],
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> RtpPacket<'a> {
    pub fn parse(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if data.len() < 12 {
            return Err(RtpError::TooShort);
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        // RFC 5761 4: a second byte of 192-223 is an RTCP packet type.
        let pt = data[1] & 0x7f;
        if (192..=223).contains(&data[1]) {
            return Err(RtpError::Rtcp(data[1]));
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let cc = (data[0] & 0x0f) as usize;
        let mut pos = 12 + cc * 4;
        if data.len() < pos {
            return Err(RtpError::Truncated);
        }
        let csrc = (0..cc).map(|i| be32(&data[12 + i * 4..])).collect();
        if extension {
            if data.len() < pos + 4 {
                return Err(RtpError::Truncated);
            }
            let words = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
            pos += 4 + words * 4;
            if data.len() < pos {
                return Err(RtpError::Truncated);
            }
        }
        let mut end = data.len();
        if padding {
            let n = data[end - 1] as usize;
            if n == 0 || n > end - pos {
                return Err(RtpError::BadPadding);
            }
            end -= n;
        }
        Ok(RtpPacket {
            header: RtpHeader {
                marker: data[1] & 0x80 != 0,
                payload_type: pt,
                sequence: u16::from_be_bytes([data[2], data[3]]),
                timestamp: be32(&data[4..]),
                ssrc: be32(&data[8..]),
            },
            csrc,
            payload: &data[pos..end],
        })
    }
}

impl RtpHeader {
    /// Write the 12-byte header (no CSRC, no extension) and the payload.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.push(0x80);
        out.push((self.payload_type & 0x7f) | if self.marker { 0x80 } else { 0 });
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 42,
        };
        let mut b = Vec::new();
        h.write(&[1, 2, 3], &mut b);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.payload, &[1, 2, 3]);
    }

    #[test]
    fn csrc_extension_and_padding() {
        let mut b = vec![0xb1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&7u32.to_be_bytes()); // CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // one-word extension
        b.extend_from_slice(&[5, 6, 0, 0, 3]); // payload + 3 bytes padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.csrc, vec![7]);
        assert_eq!(p.payload, &[5, 6]);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::TooShort));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        assert_eq!(
            RtpPacket::parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Truncated)
        );
        let mut ext = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::Truncated));
        ext.truncate(13);
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::Truncated));
        let pad = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        let zero_pad = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(RtpPacket::parse(&zero_pad), Err(RtpError::BadPadding));
        let rtcp = [0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(RtpPacket::parse(&rtcp), Err(RtpError::Rtcp(200)));
    }
}
