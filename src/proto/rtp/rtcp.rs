//! RTCP (RFC 3550 6): compound packets of sender reports (SR), receiver
//! reports (RR), source descriptions (SDES), BYE and anything else
//! (skipped by its length); a checked parser, a writer, and the round-trip
//! time from a report block (6.4.1). Wall-clock times are NTP timestamps
//! passed in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a datagram is not a compound RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("shorter than an RTCP header")]
    TooShort,
    #[error("RTCP version {0}, not 2")]
    Version(u8),
    #[error("a packet's length runs past the datagram")]
    Truncated,
    #[error("a compound packet starts with SR or RR, not {0}")]
    NotAReport(u8),
    #[error("the report count does not fit the packet")]
    BadCount,
}

pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;
const CNAME: u8 = 1;

/// What a receiver says about one source (6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Lost since the start (24-bit signed).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP time of the last SR received from
    /// the source (0: none yet).
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    /// The round-trip time seen by the source of `self` when it arrived at
    /// NTP time `now` (RFC 3550 6.4.1: A - LSR - DLSR); None without an SR
    /// to refer to or when the figures do not add up.
    pub fn round_trip(&self, now_ntp: u64) -> Option<Duration> {
        if self.lsr == 0 {
            return None;
        }
        let a = middle32(now_ntp);
        let rtt = a.wrapping_sub(self.lsr).wrapping_sub(self.dlsr);
        // More than a minute is a clock or arithmetic fault, not a path.
        (rtt < 60 << 16).then(|| Duration::from_micros((u64::from(rtt) * 1_000_000) >> 16))
    }
}

/// The sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    /// SSRCs with their CNAME, when given.
    SourceDescription(Vec<(u32, Option<String>)>),
    Bye {
        ssrcs: Vec<u32>,
        reason: Option<String>,
    },
    /// A type we do not read (APP, feedback, XR, ...).
    Other { packet_type: u8 },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn parse_block(b: &[u8]) -> ReportBlock {
    // 24-bit two's complement.
    let lost = (be32(&b[4..]) & 0x00ff_ffff) as i32;
    ReportBlock {
        ssrc: be32(b),
        fraction_lost: b[4],
        cumulative_lost: (lost << 8) >> 8,
        highest_seq: be32(&b[8..]),
        jitter: be32(&b[12..]),
        lsr: be32(&b[16..]),
        dlsr: be32(&b[20..]),
    }
}

fn blocks(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    if body.len() < count * 24 {
        return Err(RtcpError::BadCount);
    }
    Ok(body.chunks_exact(24).take(count).map(parse_block).collect())
}

fn parse_sdes(body: &[u8], count: usize) -> Result<Vec<(u32, Option<String>)>, RtcpError> {
    let mut out = Vec::new();
    let mut pos = 0;
    for _ in 0..count {
        if body.len() < pos + 4 {
            return Err(RtcpError::BadCount);
        }
        let ssrc = be32(&body[pos..]);
        pos += 4;
        let mut cname = None;
        // Items until a zero type, then padding to a 32-bit boundary.
        loop {
            let Some(&kind) = body.get(pos) else {
                return Err(RtcpError::Truncated);
            };
            if kind == 0 {
                pos = (pos + 4) & !3;
                break;
            }
            let len = *body.get(pos + 1).ok_or(RtcpError::Truncated)? as usize;
            let text = body
                .get(pos + 2..pos + 2 + len)
                .ok_or(RtcpError::Truncated)?;
            if kind == CNAME {
                cname = Some(String::from_utf8_lossy(text).into_owned());
            }
            pos += 2 + len;
        }
        out.push((ssrc, cname));
    }
    Ok(out)
}

/// Parse a compound RTCP packet (RFC 3550 A.2's checks: version 2, the
/// first packet a report, lengths adding up to the datagram).
pub fn parse(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::TooShort);
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let padding = rest[0] & 0x20 != 0;
        let count = (rest[0] & 0x1f) as usize;
        let pt = rest[1];
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        if rest.len() < len {
            return Err(RtcpError::Truncated);
        }
        if out.is_empty() && pt != SR && pt != RR {
            return Err(RtcpError::NotAReport(pt));
        }
        let mut body = &rest[4..len];
        if padding {
            let n = *body.last().ok_or(RtcpError::Truncated)? as usize;
            if n == 0 || n > body.len() {
                return Err(RtcpError::Truncated);
            }
            body = &body[..body.len() - n];
        }
        let packet = match pt {
            SR => {
                if body.len() < 24 {
                    return Err(RtcpError::Truncated);
                }
                RtcpPacket::SenderReport {
                    ssrc: be32(body),
                    info: SenderInfo {
                        ntp: u64::from(be32(&body[4..])) << 32 | u64::from(be32(&body[8..])),
                        rtp_timestamp: be32(&body[12..]),
                        packets: be32(&body[16..]),
                        octets: be32(&body[20..]),
                    },
                    reports: blocks(&body[24..], count)?,
                }
            }
            RR => {
                if body.len() < 4 {
                    return Err(RtcpError::Truncated);
                }
                RtcpPacket::ReceiverReport {
                    ssrc: be32(body),
                    reports: blocks(&body[4..], count)?,
                }
            }
            SDES => RtcpPacket::SourceDescription(parse_sdes(body, count)?),
            BYE => {
                if body.len() < count * 4 {
                    return Err(RtcpError::BadCount);
                }
                let ssrcs = body.chunks_exact(4).take(count).map(be32).collect();
                let tail = &body[count * 4..];
                let reason = tail.first().and_then(|&n| {
                    tail.get(1..1 + n as usize)
                        .map(|t| String::from_utf8_lossy(t).into_owned())
                });
                RtcpPacket::Bye { ssrcs, reason }
            }
            other => RtcpPacket::Other { packet_type: other },
        };
        out.push(packet);
        rest = &rest[len..];
    }
    if out.is_empty() {
        return Err(RtcpError::TooShort);
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: usize, pt: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0x80 | (count as u8 & 0x1f), pt, 0, 0]);
    at
}

/// Pad to 32 bits and fill in the length of the packet started at `at`.
fn finish(out: &mut Vec<u8>, at: usize) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
    let words = ((out.len() - at) / 4 - 1) as u16;
    out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
}

fn write_block(b: &ReportBlock, out: &mut Vec<u8>) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
    out.extend_from_slice(&(u32::from(b.fraction_lost) << 24 | lost).to_be_bytes());
    for v in [b.highest_seq, b.jitter, b.lsr, b.dlsr] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Write one packet (SR, RR, SDES with CNAMEs, BYE) to `out`; `Other`
/// writes nothing.
pub fn write(p: &RtcpPacket, out: &mut Vec<u8>) {
    match p {
        RtcpPacket::SenderReport {
            ssrc,
            info,
            reports,
        } => {
            let reports = &reports[..reports.len().min(31)];
            let at = header(out, reports.len(), SR);
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&info.ntp.to_be_bytes());
            for v in [info.rtp_timestamp, info.packets, info.octets] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            reports.iter().for_each(|b| write_block(b, out));
            finish(out, at);
        }
        RtcpPacket::ReceiverReport { ssrc, reports } => {
            let reports = &reports[..reports.len().min(31)];
            let at = header(out, reports.len(), RR);
            out.extend_from_slice(&ssrc.to_be_bytes());
            reports.iter().for_each(|b| write_block(b, out));
            finish(out, at);
        }
        RtcpPacket::SourceDescription(chunks) => {
            let chunks = &chunks[..chunks.len().min(31)];
            let at = header(out, chunks.len(), SDES);
            for (ssrc, cname) in chunks {
                out.extend_from_slice(&ssrc.to_be_bytes());
                if let Some(c) = cname {
                    let c = &c.as_bytes()[..c.len().min(255)];
                    out.extend_from_slice(&[CNAME, c.len() as u8]);
                    out.extend_from_slice(c);
                }
                // The end item and padding to the next word.
                out.push(0);
                while out.len() % 4 != 0 {
                    out.push(0);
                }
            }
            finish(out, at);
        }
        RtcpPacket::Bye { ssrcs, reason } => {
            let ssrcs = &ssrcs[..ssrcs.len().min(31)];
            let at = header(out, ssrcs.len(), BYE);
            ssrcs
                .iter()
                .for_each(|s| out.extend_from_slice(&s.to_be_bytes()));
            if let Some(r) = reason {
                let r = &r.as_bytes()[..r.len().min(255)];
                out.push(r.len() as u8);
                out.extend_from_slice(r);
            }
            finish(out, at);
        }
        RtcpPacket::Other { .. } => {}
    }
}

/// The middle 32 bits of an NTP timestamp (LSR, 6.4.1).
pub fn middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A system time as an NTP timestamp (seconds since 1900 in 32.32).
pub fn ntp_time(t: SystemTime) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs().wrapping_add(UNIX_TO_NTP);
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    secs << 32 | frac
}

/// A duration in 1/65536 s (DLSR).
pub fn to_dlsr(d: Duration) -> u32 {
    ((d.as_micros() << 16) / 1_000_000).min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 0x0001_0010,
            jitter: 80,
            lsr: 0x1234_5678,
            dlsr: 0x0001_8000,
        }
    }

    #[test]
    fn compound_round_trip() {
        let packets = vec![
            RtcpPacket::SenderReport {
                ssrc: 0xdead_beef,
                info: SenderInfo {
                    ntp: 0x0102_0304_0506_0708,
                    rtp_timestamp: 160,
                    packets: 50,
                    octets: 8000,
                },
                reports: vec![block(7), block(8)],
            },
            RtcpPacket::SourceDescription(vec![
                (0xdead_beef, Some("alice@example.com".into())),
                (9, None),
            ]),
            RtcpPacket::Bye {
                ssrcs: vec![0xdead_beef],
                reason: Some("done".into()),
            },
        ];
        let mut out = Vec::new();
        for p in &packets {
            write(p, &mut out);
        }
        assert_eq!(out.len() % 4, 0);
        assert_eq!(parse(&out).unwrap(), packets);
        let rr = RtcpPacket::ReceiverReport {
            ssrc: 1,
            reports: vec![],
        };
        let mut out = Vec::new();
        write(&rr, &mut out);
        assert_eq!(out.len(), 8);
        assert_eq!(parse(&out).unwrap(), vec![rr]);
    }

    /// RFC 3550 6.4.1's example: A 0xb710:8000 (46864.500 s), LSR
    /// 0xb705:2000 (46853.125 s), DLSR 0x0005:4000 (5.250 s): 6.125 s.
    #[test]
    fn round_trip_time_from_the_rfc_example() {
        let b = ReportBlock {
            lsr: 0xb705_2000,
            dlsr: 0x0005_4000,
            ..block(1)
        };
        let now = 0xb710_8000u64 << 16;
        assert_eq!(b.round_trip(now), Some(Duration::from_millis(6125)));
        assert_eq!(ReportBlock { lsr: 0, ..b }.round_trip(now), None);
        // DLSR longer than the time passed: nonsense, not a huge RTT.
        assert_eq!(
            ReportBlock {
                dlsr: 0x00ff_0000,
                ..b
            }
            .round_trip(now),
            None
        );
    }

    #[test]
    fn malformed_compounds_are_errors() {
        let mut good = Vec::new();
        write(
            &RtcpPacket::ReceiverReport {
                ssrc: 1,
                reports: vec![block(2)],
            },
            &mut good,
        );
        assert_eq!(parse(&[]), Err(RtcpError::TooShort));
        assert_eq!(parse(&good[..3]), Err(RtcpError::TooShort));
        assert_eq!(parse(&good[..good.len() - 4]), Err(RtcpError::Truncated));
        let mut v1 = good.clone();
        v1[0] = (v1[0] & 0x3f) | 0x40;
        assert_eq!(parse(&v1), Err(RtcpError::Version(1)));
        // Claims three blocks, holds one.
        let mut count = good.clone();
        count[0] = 0x83;
        assert_eq!(parse(&count), Err(RtcpError::BadCount));
        // SDES first is not a valid compound packet.
        let mut sdes = Vec::new();
        write(&RtcpPacket::SourceDescription(vec![(1, None)]), &mut sdes);
        assert_eq!(parse(&sdes), Err(RtcpError::NotAReport(SDES)));
        // An SDES item running past its packet.
        let mut bad = good.clone();
        bad.extend_from_slice(&[0x81, SDES, 0, 2, 0, 0, 0, 1, CNAME, 200, b'a', b'b']);
        assert_eq!(parse(&bad), Err(RtcpError::Truncated));
        // Unknown packet types after a report are skipped by length.
        let mut app = good.clone();
        app.extend_from_slice(&[0x80, 204, 0, 1, 0, 0, 0, 1]);
        assert_eq!(
            parse(&app).unwrap()[1],
            RtcpPacket::Other { packet_type: 204 }
        );
    }

    #[test]
    fn ntp_conversion() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let n = ntp_time(t);
        assert_eq!(n >> 32, 2_208_988_801);
        assert_eq!((n & 0xffff_ffff) >> 16, 0x8000);
        assert_eq!(to_dlsr(Duration::from_millis(5250)), 0x0005_4000);
    }
}
