//! DTMF as RTP telephone events (RFC 4733): the 4-byte event payload, a
//! sender that turns queued digits into the packets of each event (the
//! first with the marker bit, the duration growing every packet, the end
//! sent three times), and a receiver that reports each event once however
//! many of its packets arrive.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     event     |E|R| volume    |          duration             |
//! ```

use std::collections::VecDeque;

/// The SDP encoding name and its usual format parameter.
pub const ENCODING: &str = "telephone-event";
pub const FMTP_EVENTS: &str = "0-15";
/// The payload type we offer (dynamic).
pub const DEFAULT_PAYLOAD_TYPE: u8 = 101;

/// The event code of a DTMF digit (0-9, *, #, A-D).
pub fn event_of(digit: char) -> Option<u8> {
    Some(match digit.to_ascii_uppercase() {
        c @ '0'..='9' => c as u8 - b'0',
        '*' => 10,
        '#' => 11,
        c @ 'A'..='D' => 12 + (c as u8 - b'A'),
        _ => return None,
    })
}

/// The digit of an event code.
pub fn digit_of(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// 0 to 63: -dBm0.
    pub volume: u8,
    /// In timestamp units since the event's start.
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        if payload.len() < 4 {
            return None;
        }
        Some(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3f,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// One packet the sender wants out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: [u8; 4],
    /// Set on the first packet of an event.
    pub marker: bool,
    /// The event's start: the RTP timestamp of all its packets.
    pub timestamp: u32,
}

struct Current {
    event: u8,
    start: u32,
    /// Packets sent so far.
    sent: u16,
    /// Repeats of the end packet still to send.
    end_left: u8,
}

/// Queued digits, one event at a time, one packet per frame.
pub struct DtmfSender {
    queue: VecDeque<u8>,
    current: Option<Current>,
    /// Frames (packets) an event lasts before its end packets.
    frames: u16,
    frame_samples: u16,
    volume: u8,
}

impl DtmfSender {
    /// Events of `duration_ms` in frames of `frame_samples` timestamp
    /// units of a `clock` Hz clock.
    pub fn new(duration_ms: u32, frame_samples: u16, clock: u32) -> DtmfSender {
        let frames =
            (u64::from(duration_ms) * u64::from(clock) / 1000 / u64::from(frame_samples).max(1))
                .clamp(2, 400) as u16;
        DtmfSender {
            queue: VecDeque::new(),
            current: None,
            frames,
            frame_samples,
            volume: 10,
        }
    }

    /// Queue digits; false (and nothing queued) if one is not a DTMF
    /// digit.
    pub fn push(&mut self, digits: &str) -> bool {
        let events: Option<Vec<u8>> = digits.chars().map(event_of).collect();
        match events {
            Some(e) if !e.is_empty() && self.queue.len() + e.len() <= 256 => {
                self.queue.extend(e);
                true
            }
            _ => false,
        }
    }

    /// Whether an event is being sent (audio waits meanwhile).
    pub fn busy(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// The packet for the frame whose timestamp is `now_ts`, if an event
    /// is on.
    pub fn next(&mut self, now_ts: u32) -> Option<EventPacket> {
        if self.current.is_none() {
            let event = self.queue.pop_front()?;
            self.current = Some(Current {
                event,
                start: now_ts,
                sent: 0,
                end_left: 3,
            });
        }
        let c = self.current.as_mut()?;
        c.sent += 1;
        let ending = c.sent >= self.frames;
        let duration = c.sent.min(self.frames).saturating_mul(self.frame_samples);
        let p = EventPacket {
            payload: TelephoneEvent {
                event: c.event,
                end: ending,
                volume: self.volume,
                duration,
            }
            .to_bytes(),
            marker: c.sent == 1,
            timestamp: c.start,
        };
        if ending {
            c.end_left -= 1;
            if c.end_left == 0 {
                self.current = None;
            }
        }
        Some(p)
    }
}

/// Reports each received event once (RFC 4733 2.5.1: an event is its
/// timestamp; retransmissions and the repeated end share it).
#[derive(Default)]
pub struct DtmfReceiver {
    last: Option<(u32, u8)>,
}

impl DtmfReceiver {
    /// The digit of a packet that starts a new event.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let e = TelephoneEvent::parse(payload)?;
        let digit = digit_of(e.event)?;
        if self.last == Some((timestamp, e.event)) {
            return None;
        }
        self.last = Some((timestamp, e.event));
        Some(digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_events_map_both_ways() {
        for (d, e) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('d', 15),
        ] {
            assert_eq!(event_of(d), Some(e));
            assert_eq!(digit_of(e), Some(d.to_ascii_uppercase()));
        }
        assert_eq!(event_of('x'), None);
        assert_eq!(digit_of(16), None);
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Some(e));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn an_event_is_marker_growing_durations_and_three_ends() {
        let mut s = DtmfSender::new(100, 160, 8000);
        assert!(s.push("1#"));
        assert!(!s.push("12x"), "a bad digit queues nothing");
        let mut ts = 1000u32;
        let mut packets = Vec::new();
        while let Some(p) = s.next(ts) {
            packets.push(p);
            ts += 160;
        }
        assert!(!s.busy());
        // Two events of 5 packets each, the last one the end, which goes
        // out twice more: 7 packets an event.
        assert_eq!(packets.len(), 14);
        let first: Vec<_> = packets[..7]
            .iter()
            .map(|p| TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        assert!(packets[0].marker && !packets[1].marker);
        assert!(packets[..7].iter().all(|p| p.timestamp == 1000));
        assert_eq!(first[0].duration, 160);
        assert_eq!(first[3].duration, 640);
        assert!(!first[3].end && first[4].end && first[5].end && first[6].end);
        assert_eq!(first[6].duration, 800);
        assert_eq!(packets[7].timestamp, 1000 + 7 * 160);
        assert!(packets[7].marker);
        assert_eq!(
            TelephoneEvent::parse(&packets[7].payload).unwrap().event,
            11
        );

        // The receiver reports each event once.
        let mut r = DtmfReceiver::default();
        let got: Vec<char> = packets
            .iter()
            .filter_map(|p| r.on_packet(p.timestamp, &p.payload))
            .collect();
        assert_eq!(got, ['1', '#']);
        assert_eq!(r.on_packet(5, &[99, 0, 0, 0]), None);
        assert_eq!(r.on_packet(5, &[1]), None);
    }
}
