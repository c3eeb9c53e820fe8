//! An adaptive jitter buffer (sans-IO: arrival times are passed in).
//!
//! Packets go in by RTP timestamp as they arrive ([`JitterBuffer::push`]);
//! the player takes one frame's worth out on each tick of its own clock
//! ([`JitterBuffer::pop`]). What comes out is either a payload to decode,
//! a gap to conceal (with the next payload when it is here, for Opus
//! in-band FEC), or nothing yet.
//!
//! - Delay adapts between `min_frames` and `max_frames` (20 to 200 ms at
//!   20 ms frames): the target is the spread of the packets' transit
//!   times over the last [`WINDOW`] packets plus one packet time, so it
//!   grows as soon as arrivals get irregular and shrinks as the spikes
//!   leave the window.
//! - Playout starts once the target is buffered. When the buffer runs dry
//!   the playout point waits (an underrun: the player conceals), which
//!   adds one frame of delay; when more than the target plus two packets
//!   has been buffered for half a second, the oldest frame is dropped.
//!   Between the two the buffer follows a sender whose clock runs faster
//!   or slower than ours (clock drift).
//! - Late packets (their time has been played), duplicates and packets far
//!   from the timeline are dropped and counted; three far packets in a
//!   row start a new timeline (the sender restarted its clock).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Packets over which transit-time spread is measured.
pub const WINDOW: usize = 100;
/// Pops with too much buffered before a frame is dropped.
const DEEP_POPS: u32 = 25;
/// Packets further than this (in packet times) from the playout point
/// are not on the timeline.
const FAR_PACKETS: i64 = 250;
/// Far packets in a row that start a new timeline.
const NEW_TIMELINE: u32 = 3;

/// What the player does for one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// Decode this payload.
    Packet(Vec<u8>),
    /// The frame at the playout point was lost: conceal it. `next` is the
    /// payload that follows, when here (its redundancy may recover the
    /// lost one).
    Lost { next: Option<&'a [u8]> },
    /// Nothing to play at the playout point yet (the buffer ran dry, or
    /// the next packet may still come): conceal, the playout point waits.
    Underrun,
    /// Nothing received yet, or still filling to the target delay.
    Buffering,
}

/// Counters of one buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Payloads handed to the player.
    pub played: u64,
    /// Gaps the player was told to conceal.
    pub lost: u64,
    /// Ticks on which the buffer was empty.
    pub underruns: u64,
    /// Packets that came after their time was played.
    pub late: u64,
    pub duplicates: u64,
    /// Frames dropped to bring the delay back down (a sender running fast,
    /// or a delay spike that passed).
    pub discarded: u64,
    /// Packets dropped as far off the timeline.
    pub out_of_range: u64,
    /// New timelines started.
    pub resets: u64,
    /// Time the played packets waited here in all, in microseconds.
    pub waited_us: u64,
}

impl JitterStats {
    /// How long a played packet waited between arrival and playout, on
    /// average, in milliseconds.
    pub fn mean_wait_ms(&self) -> f64 {
        if self.played == 0 {
            0.0
        } else {
            self.waited_us as f64 / self.played as f64 / 1000.0
        }
    }
}

pub struct JitterBuffer {
    clock_rate: u32,
    frame_ticks: i64,
    min_ticks: i64,
    max_ticks: i64,
    /// Packet duration in timestamp units, learnt from consecutive
    /// sequence numbers.
    ptime: i64,
    /// Sequence numbers, arrival times and payloads by extended timestamp.
    slots: BTreeMap<i64, (u16, Instant, Vec<u8>)>,
    /// The sequence number of the last frame played or given up.
    played_seq: Option<u16>,
    /// Sequence numbers of packets without audio (telephone events) not
    /// played past yet: they are not lost frames.
    skipped: VecDeque<u16>,
    /// The last timestamp received and its extended value.
    last: Option<(u32, i64, u16)>,
    /// The extended timestamp to play next (None: not started).
    playout: Option<i64>,
    /// Whether the target delay was reached once since (re)starting.
    playing: bool,
    transits: VecDeque<i64>,
    epoch: Option<Instant>,
    target: i64,
    deep_pops: u32,
    far_run: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer for frames of `frame_ticks` timestamp units at
    /// `clock_rate` Hz, holding between `min_frames` and `max_frames`.
    pub fn new(clock_rate: u32, frame_ticks: u32, min_frames: u32, max_frames: u32) -> Self {
        let frame_ticks = i64::from(frame_ticks.max(1));
        let min_ticks = frame_ticks * i64::from(min_frames.max(1));
        JitterBuffer {
            clock_rate: clock_rate.max(1),
            frame_ticks,
            min_ticks,
            max_ticks: (frame_ticks * i64::from(max_frames)).max(min_ticks),
            ptime: frame_ticks,
            slots: BTreeMap::new(),
            last: None,
            playout: None,
            playing: false,
            played_seq: None,
            skipped: VecDeque::new(),
            transits: VecDeque::with_capacity(WINDOW),
            epoch: None,
            target: min_ticks,
            deep_pops: 0,
            far_run: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The delay aimed at, in milliseconds.
    pub fn target_ms(&self) -> u32 {
        (self.target * 1000 / i64::from(self.clock_rate)) as u32
    }

    /// What is buffered ahead of the playout point, in milliseconds.
    pub fn depth_ms(&self) -> u32 {
        (self.depth().max(0) * 1000 / i64::from(self.clock_rate)) as u32
    }

    fn depth(&self) -> i64 {
        match (self.playout, self.slots.last_key_value()) {
            (Some(p), Some((ts, _))) => ts + self.ptime - p,
            _ => 0,
        }
    }

    /// Forget everything buffered and start a new timeline with the next
    /// packet.
    pub fn reset(&mut self) {
        self.slots.clear();
        self.last = None;
        self.playout = None;
        self.playing = false;
        self.played_seq = None;
        self.skipped.clear();
        self.transits.clear();
        self.epoch = None;
        self.target = self.min_ticks;
        self.deep_pops = 0;
        self.far_run = 0;
    }

    /// A packet with sequence number `seq` and RTP `timestamp` arrived at
    /// `now`.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, payload: &[u8]) {
        let ext = match self.last {
            None => i64::from(timestamp),
            Some((ts, ext, _)) => ext + i64::from(timestamp.wrapping_sub(ts) as i32),
        };
        let reference = self.playout.or(self.last.map(|l| l.1));
        if let Some(r) = reference {
            if (ext - r).abs() > FAR_PACKETS * self.ptime {
                self.far_run += 1;
                if self.far_run < NEW_TIMELINE {
                    self.stats.out_of_range += 1;
                    return;
                }
                self.reset();
                self.stats.resets += 1;
                return self.push(now, seq, timestamp, payload);
            }
        }
        self.far_run = 0;
        if let Some((ts, _, last_seq)) = self.last {
            // Consecutive packets tell the packet time.
            let step = i64::from(timestamp.wrapping_sub(ts) as i32);
            if seq == last_seq.wrapping_add(1) && step > 0 && step <= i64::from(self.clock_rate) / 8
            {
                self.ptime = step;
            }
        }
        if self.last.is_none_or(|(_, last_ext, _)| ext > last_ext) {
            self.last = Some((timestamp, ext, seq));
        }
        if self.slots.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        // Late packets count most for the delay to aim at.
        self.measure(now, ext);
        if self.playout.is_some_and(|p| ext + self.ptime <= p) {
            self.stats.late += 1;
            return;
        }
        if self.playout.is_none() {
            self.playout = Some(ext);
        }
        // Bounded however the peer sends: four times the largest delay.
        let cap = (4 * self.max_ticks / self.ptime.max(1)).max(4) as usize;
        if self.slots.len() >= cap {
            self.slots.pop_first();
            self.stats.discarded += 1;
        }
        self.slots.insert(ext, (seq, now, payload.to_vec()));
    }

    /// A packet of the stream that carries no audio (an RFC 4733 event)
    /// took sequence number `seq`: the gap it leaves is not loss.
    pub fn skip(&mut self, seq: u16) {
        if self.skipped.len() == 64 {
            self.skipped.pop_front();
        }
        self.skipped.push_back(seq);
    }

    /// Transit time spread over the window sets the target.
    fn measure(&mut self, now: Instant, ext: i64) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.saturating_duration_since(epoch).as_secs_f64()
            * f64::from(self.clock_rate)) as i64;
        if self.transits.len() == WINDOW {
            self.transits.pop_front();
        }
        self.transits.push_back(arrival - ext);
        let (lo, hi) = self
            .transits
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        let spread = hi - lo;
        // Round up to whole frames.
        let want = spread + self.ptime;
        let frames = (want + self.frame_ticks - 1) / self.frame_ticks;
        self.target = (frames * self.frame_ticks).clamp(self.min_ticks, self.max_ticks);
    }

    /// The next frame for the player, whose clock says `now`.
    pub fn pop(&mut self, now: Instant) -> Playout<'_> {
        let Some(mut playout) = self.playout else {
            return Playout::Buffering;
        };
        if !self.playing {
            if self.depth() < self.target {
                return Playout::Buffering;
            }
            self.playing = true;
        }
        // Whatever ended before the playout point came too late.
        while let Some((&first, _)) = self.slots.first_key_value() {
            if first + self.ptime > playout {
                break;
            }
            self.slots.pop_first();
            self.stats.late += 1;
        }
        let Some((&first, &(first_seq, _, _))) = self.slots.first_key_value() else {
            self.stats.underruns += 1;
            return Playout::Underrun;
        };
        // Too much buffered for a while: drop the oldest frame.
        if self.depth() > self.target + 2 * self.ptime {
            self.deep_pops += 1;
            if self.deep_pops >= DEEP_POPS && self.slots.len() > 1 {
                self.deep_pops = 0;
                self.slots.pop_first();
                self.stats.discarded += 1;
                if let Some((&next, _)) = self.slots.first_key_value() {
                    self.playout = Some(next.max(playout));
                }
                return self.pop(now);
            }
        } else {
            self.deep_pops = 0;
        }
        // Sequence numbers tell a pause in sending (the timestamp moved
        // on, nothing is missing) from loss: after a pause play on from
        // the packets missing before `first`, if any.
        if first > playout {
            let missing = match self.played_seq {
                Some(s) => match first_seq.wrapping_sub(s).wrapping_sub(1) {
                    m if m < 0x8000 => {
                        let not_audio = self
                            .skipped
                            .iter()
                            .filter(|k| k.wrapping_sub(s).wrapping_sub(1) < m)
                            .count();
                        i64::from(m) - not_audio as i64
                    }
                    _ => 0,
                },
                None => 0,
            };
            playout = playout.max(first - missing * self.ptime);
        }
        // Less than a frame away: that packet is the next frame.
        if first - playout < self.frame_ticks {
            let Some((_, (seq, arrived, payload))) = self.slots.pop_first() else {
                return Playout::Underrun;
            };
            self.stats.waited_us += now.saturating_duration_since(arrived).as_micros() as u64;
            self.playout = Some(first + self.ptime);
            self.played_seq = Some(seq);
            // Forget the events played past.
            self.skipped.retain(|k| {
                let ahead = k.wrapping_sub(seq);
                ahead != 0 && ahead < 0x8000
            });
            self.stats.played += 1;
            return Playout::Packet(payload);
        }
        self.playout = Some(playout);
        // A gap: wait for it while less than the target is buffered (the
        // missing packet may be late), then give it up.
        if self.depth() < self.target {
            self.stats.underruns += 1;
            return Playout::Underrun;
        }
        self.playout = Some(playout + self.frame_ticks);
        self.played_seq = self.played_seq.map(|s| s.wrapping_add(1));
        self.stats.lost += 1;
        let next = (first - playout <= self.ptime).then(|| {
            self.slots
                .first_key_value()
                .map(|(_, (_, _, p))| p.as_slice())
                .unwrap_or_default()
        });
        Playout::Lost { next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FRAME: u32 = 160;

    fn jb() -> JitterBuffer {
        JitterBuffer::new(8000, FRAME, 1, 10)
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Which packet (by its first payload byte) each pop gives: Some(n),
    /// or None for a gap, underrun or buffering.
    fn played(p: Playout<'_>) -> Option<u8> {
        match p {
            Playout::Packet(v) => Some(v[0]),
            _ => None,
        }
    }

    #[test]
    fn in_order_stream_plays_each_packet_once() {
        let t0 = Instant::now();
        let mut b = jb();
        let mut out = Vec::new();
        for i in 0..50u32 {
            b.push(
                at(t0, 20 * u64::from(i)),
                i as u16,
                1000 + i * FRAME,
                &[i as u8],
            );
            out.push(played(b.pop(t0)));
        }
        let got: Vec<u8> = out.into_iter().flatten().collect();
        assert_eq!(got, (0..50).collect::<Vec<u8>>());
        assert_eq!(b.stats().lost, 0);
        assert_eq!(b.target_ms(), 20);
    }

    #[test]
    fn reordered_packets_come_out_in_order_and_loss_is_a_gap() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(8000, FRAME, 3, 10);
        // 0 1 3 2 5 6 ... (4 lost) arriving 20 ms apart, then played.
        for (n, i) in [0u32, 1, 3, 2, 5, 6, 7].iter().enumerate() {
            b.push(at(t0, 20 * n as u64), *i as u16, i * FRAME, &[*i as u8]);
        }
        let mut got = Vec::new();
        for _ in 0..8 {
            match b.pop(t0) {
                Playout::Packet(v) => got.push(Some(v[0])),
                Playout::Lost { next } => {
                    // The next payload is offered for FEC.
                    assert_eq!(next, Some(&[5u8][..]));
                    got.push(None)
                }
                p => panic!("unexpected {p:?}"),
            }
        }
        assert_eq!(
            got,
            vec![
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                None,
                Some(5),
                Some(6),
                Some(7)
            ]
        );
        assert_eq!(b.stats().lost, 1);
        assert!(matches!(b.pop(t0), Playout::Underrun));
    }

    #[test]
    fn jitter_raises_the_delay_and_late_packets_are_counted() {
        let t0 = Instant::now();
        let mut b = jb();
        // Every fifth packet arrives 90 ms late.
        let mut events: Vec<(u64, u32)> = (0..200u32)
            .map(|i| (20 * u64::from(i) + if i % 5 == 4 { 90 } else { 0 }, i))
            .collect();
        events.sort();
        let mut ev = events.into_iter().peekable();
        let mut gaps_late = 0;
        for tick in 0..260u64 {
            while let Some(&(t, i)) = ev.peek() {
                if t > tick * 20 {
                    break;
                }
                b.push(at(t0, t), i as u16, i * FRAME, &[i as u8]);
                ev.next();
            }
            let p = b.pop(t0);
            if tick > 150 && !matches!(p, Playout::Packet(_)) && tick < 200 {
                gaps_late += 1;
            }
        }
        // The delay grew to cover the 90 ms spikes...
        assert!(b.target_ms() >= 100, "target {} ms", b.target_ms());
        // ...so once adapted nothing more is missed.
        assert_eq!(gaps_late, 0);
        assert!(b.stats().late > 0 || b.stats().underruns > 0);
    }

    #[test]
    fn fast_sender_is_followed_by_discarding() {
        let t0 = Instant::now();
        let mut b = jb();
        // The sender's clock runs 2% fast: 51 frames per our 50 ticks.
        let mut sent = 0u32;
        for tick in 0..3000u64 {
            while u64::from(sent) * 20 * 50 <= tick * 20 * 51 {
                b.push(at(t0, tick * 20), sent as u16, sent * FRAME, &[0]);
                sent += 1;
            }
            b.pop(t0);
            assert!(b.depth_ms() <= 200, "depth {} at tick {tick}", b.depth_ms());
        }
        assert!(b.stats().discarded > 30, "{:?}", b.stats());
        assert_eq!(b.stats().underruns, 0);
    }

    #[test]
    fn slow_sender_gives_underruns_not_losses() {
        let t0 = Instant::now();
        let mut b = jb();
        let mut sent = 0u32;
        for tick in 0..1000u64 {
            // 49 frames per our 50 ticks.
            while u64::from(sent) * 50 <= tick * 49 {
                b.push(at(t0, tick * 20), sent as u16, sent * FRAME, &[0]);
                sent += 1;
            }
            b.pop(t0);
        }
        let s = b.stats();
        assert_eq!(s.lost, 0, "{s:?}");
        assert!(s.underruns >= 15, "{s:?}");
        assert_eq!(s.played, u64::from(sent) - b.slots.len() as u64);
    }

    #[test]
    fn timestamp_wrap_and_new_timeline() {
        let t0 = Instant::now();
        let mut b = jb();
        let start = u32::MAX - 5 * FRAME;
        for i in 0..20u32 {
            b.push(
                at(t0, 20 * u64::from(i)),
                i as u16,
                start.wrapping_add(i * FRAME),
                &[i as u8],
            );
            assert_eq!(played(b.pop(t0)), Some(i as u8), "across the wrap");
        }
        // One wild timestamp is dropped...
        b.push(at(t0, 400), 20, 0x4000_0000, &[99]);
        assert_eq!(b.stats().out_of_range, 1);
        b.push(at(t0, 400), 20, start.wrapping_add(20 * FRAME), &[20]);
        assert_eq!(played(b.pop(t0)), Some(20));
        // ...three in a row start a new timeline.
        for i in 0..3u32 {
            b.push(
                at(t0, 420 + 20 * u64::from(i)),
                21 + i as u16,
                0x4000_0000 + i * FRAME,
                &[50 + i as u8],
            );
        }
        assert_eq!(b.stats().resets, 1);
        assert_eq!(played(b.pop(t0)), Some(52));
    }

    #[test]
    fn duplicates_and_packets_already_played() {
        let t0 = Instant::now();
        let mut b = jb();
        for i in 0..5u32 {
            b.push(at(t0, 20 * u64::from(i)), i as u16, i * FRAME, &[i as u8]);
            b.push(at(t0, 20 * u64::from(i)), i as u16, i * FRAME, &[i as u8]);
            b.pop(t0);
        }
        b.push(at(t0, 100), 1, FRAME, &[1]);
        let s = b.stats();
        assert_eq!(s.duplicates, 5);
        assert_eq!(s.late, 1);
        assert_eq!(s.played, 5);
    }

    #[test]
    fn pause_in_sending_resumes_without_a_run_of_losses() {
        let t0 = Instant::now();
        let mut b = jb();
        for i in 0..10u32 {
            b.push(at(t0, 20 * u64::from(i)), i as u16, i * FRAME, &[i as u8]);
            b.pop(t0);
        }
        // 2 s of nothing (hold), the timestamp moving on in real time.
        for _ in 0..100 {
            assert_eq!(b.pop(t0), Playout::Underrun);
        }
        for i in 110..120u32 {
            b.push(
                at(t0, 20 * u64::from(i)),
                (i - 100) as u16,
                i * FRAME,
                &[i as u8],
            );
            assert_eq!(played(b.pop(t0)), Some(i as u8));
        }
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn telephone_events_in_between_are_not_loss() {
        let t0 = Instant::now();
        let mut b = jb();
        for i in 0..5u32 {
            b.push(at(t0, 20 * u64::from(i)), i as u16, i * FRAME, &[i as u8]);
            assert_eq!(played(b.pop(t0)), Some(i as u8));
        }
        // Five event packets (seq 5-9) replace 100 ms of audio.
        for i in 5..10u32 {
            b.skip(i as u16);
            b.pop(t0);
        }
        for i in 10..20u32 {
            b.push(at(t0, 20 * u64::from(i)), i as u16, i * FRAME, &[i as u8]);
            assert_eq!(played(b.pop(t0)), Some(i as u8));
        }
        assert_eq!(b.stats().lost, 0);
    }

    #[test]
    fn thirty_ms_packets_play_without_false_gaps() {
        let t0 = Instant::now();
        let mut b = jb();
        let mut played_n = 0;
        for i in 0..40u32 {
            b.push(at(t0, 30 * u64::from(i)), i as u16, i * 240, &[i as u8]);
            if let Playout::Packet(_) = b.pop(t0) {
                played_n += 1;
            }
        }
        assert_eq!(b.stats().lost, 0);
        assert!(played_n >= 38);
    }
}
