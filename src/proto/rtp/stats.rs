//! What RFC 3550 (6.4.1, A.1, A.3, A.8) keeps per source we receive from:
//! the extended highest sequence number, expected and lost packets, and
//! interarrival jitter. Arrival times are passed in (sans-IO).

use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    pub packets: u64,
    pub bytes: u64,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    started: bool,
    /// Out-of-order or duplicate packets (counted, not lost).
    pub reordered: u64,
    /// Interarrival jitter in timestamp units (A.8), scaled by 16.
    jitter_q4: u64,
    last_transit: Option<i64>,
    first_arrival: Option<Instant>,
    /// Expected and received at the previous report (A.3).
    expected_prior: u64,
    received_prior: u64,
}

impl ReceiveStats {
    /// Account for a packet with `seq` and RTP `timestamp` that arrived at
    /// `now`, for a clock of `rate` Hz.
    pub fn on_packet(&mut self, now: Instant, seq: u16, timestamp: u32, rate: u32, bytes: usize) {
        self.count(now, seq, bytes);
        // Jitter (A.8): transit time differences in timestamp units.
        let first = self.first_arrival.unwrap_or(now);
        let arrival = (now.duration_since(first).as_secs_f64() * rate as f64) as i64;
        let transit = arrival - timestamp as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, in Q4.
            let j = self.jitter_q4 as i64;
            self.jitter_q4 = (j + d as i64 - ((j + 8) >> 4)).max(0) as u64;
        }
        self.last_transit = Some(transit);
    }

    /// Account for a packet whose timestamp says nothing of its arrival
    /// time (an RFC 4733 telephone event keeps its event's start): it
    /// counts for loss, not for jitter.
    pub fn on_event_packet(&mut self, now: Instant, seq: u16, bytes: usize) {
        self.count(now, seq, bytes);
    }

    fn count(&mut self, now: Instant, seq: u16, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
        if !self.started {
            self.started = true;
            self.base_seq = seq as u32;
            self.max_seq = seq;
            self.first_arrival = Some(now);
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta == 0 || delta >= 0x8000 {
                self.reordered += 1;
            } else {
                if seq < self.max_seq {
                    self.cycles += 1;
                }
                self.max_seq = seq;
            }
        }
    }

    /// The extended highest sequence number received (A.1).
    pub fn extended_max(&self) -> u32 {
        (self.cycles << 16) | self.max_seq as u32
    }

    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (self.extended_max() - self.base_seq) as u64 + 1
    }

    /// Packets expected but not received (never negative here; duplicates
    /// are counted separately).
    pub fn lost(&self) -> u64 {
        self.expected()
            .saturating_sub(self.packets.saturating_sub(self.reordered))
    }

    /// Jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// A report block about source `ssrc` (A.3: the fraction lost since
    /// the previous call), with `lsr`/`dlsr` about its last SR.
    pub fn report_block(&mut self, ssrc: u32, lsr: u32, dlsr: u32) -> super::rtcp::ReportBlock {
        let expected = self.expected();
        let received = self.packets.saturating_sub(self.reordered);
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        super::rtcp::ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().min(0x7f_ffff) as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn loss_wraparound_and_jitter() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::default();
        let mut seq: u16 = 65530;
        let mut ts: u32 = 0;
        for i in 0..100u64 {
            if i % 10 != 3 {
                s.on_packet(t0 + Duration::from_millis(20 * i), seq, ts, 8000, 172);
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
        }
        assert_eq!(s.expected(), 100);
        assert_eq!(s.lost(), 10);
        assert_eq!(s.extended_max(), (1 << 16) | 93);
        // Perfectly paced arrivals: no jitter.
        assert_eq!(s.jitter(), 0);
        // One late packet raises jitter.
        s.on_packet(t0 + Duration::from_millis(2000 + 50), seq, ts, 8000, 172);
        assert!(s.jitter() > 0);
        let b = s.report_block(9, 0, 0);
        assert_eq!((b.ssrc, b.cumulative_lost), (9, 10));
        // 10 lost of 101 expected, in 1/256.
        assert_eq!(b.fraction_lost, (10 * 256 / 101) as u8);
        assert_eq!(b.highest_seq, s.extended_max());
        // Nothing new since: nothing lost in the interval.
        assert_eq!(s.report_block(9, 0, 0).fraction_lost, 0);
    }
}
