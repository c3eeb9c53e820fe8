//! Audio figures for the README's performance table:
//!
//! 1. CPU per audio stream and 20 ms frame, both directions: encode, RTP,
//!    SRTP protect (sending) and SRTP unprotect, RTP parse, jitter buffer,
//!    decode (receiving), for Opus and PCMU, next to the bare codec
//!    (encode + decode of the same frames) measured in the same run; and
//!    from it how many streams one core carries (20 ms of audio per frame
//!    and direction pair);
//! 2. the delay a call adds between the sender's input and the receiver's
//!    output over loopback, from a real call between two applications in
//!    this process: one frame of packetization, half the RTCP round trip,
//!    and how long packets waited in the receiver's jitter buffer before
//!    their frame was played (its own mean, over 4 s).
//!
//!   cargo run --release --example audio_bench
//!
//! Figures are medians of 5 rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sipsimple::proto::codec::CodecKind;
use sipsimple::proto::rtp::jitter::{JitterBuffer, Playout};
use sipsimple::proto::rtp::srtp::{MasterKey, SrtpContext, SrtpProfile};
use sipsimple::proto::rtp::{RtpHeader, RtpPacket};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    MediaStreamRegistry, MemoryStorage, Notification, NotificationCenter, SIPApplication,
    SessionState, Storage,
};

const FRAMES: usize = 3000;
const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `FRAMES` frames of a 440 Hz tone with some noise, at the codec's rate.
fn signal(kind: CodecKind) -> Vec<Vec<i16>> {
    let n = kind.frame_samples();
    let rate = f64::from(kind.sample_rate());
    let mut x: u32 = 12345;
    (0..FRAMES)
        .map(|f| {
            (0..n)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let t = (f * n + i) as f64 / rate;
                    let noise = f64::from((x >> 16) as u16 as i16) / 32768.0 * 300.0;
                    (8000.0 * (std::f64::consts::TAU * 440.0 * t).sin() + noise) as i16
                })
                .collect()
        })
        .collect()
}

/// Microseconds per frame: encode + decode only.
fn bare(kind: CodecKind, frames: &[Vec<i16>]) -> f64 {
    let mut c = kind.open(false).unwrap();
    let mut payload = Vec::with_capacity(1500);
    let mut pcm = Vec::with_capacity(kind.frame_samples());
    let t = Instant::now();
    for f in frames {
        payload.clear();
        c.encode(f, &mut payload);
        pcm.clear();
        assert!(c.decode(&payload, &mut pcm));
    }
    t.elapsed().as_secs_f64() * 1e6 / frames.len() as f64
}

/// Microseconds per frame through everything a stream does with it.
fn pipeline(kind: CodecKind, frames: &[Vec<i16>]) -> f64 {
    let key = MasterKey::from_bytes(&[7u8; 30]).unwrap();
    let profile = SrtpProfile::ALL[0];
    let mut tx = SrtpContext::new(profile, &key);
    let mut rx = SrtpContext::new(profile, &key);
    let mut enc = kind.open(false).unwrap();
    let mut dec = kind.open(false).unwrap();
    let mut jb = JitterBuffer::new(kind.clock_rate(), kind.frame_ticks(), 1, 10);
    let mut payload = Vec::with_capacity(1500);
    let mut packet = Vec::with_capacity(1500);
    let mut pcm = Vec::with_capacity(kind.frame_samples());
    let t0 = Instant::now();
    let t = Instant::now();
    for (i, f) in frames.iter().enumerate() {
        payload.clear();
        enc.encode(f, &mut payload);
        packet.clear();
        RtpHeader {
            marker: i == 0,
            payload_type: kind.payload_type(),
            sequence: i as u16,
            timestamp: (i as u32).wrapping_mul(kind.frame_ticks()),
            ssrc: 0x1234_5678,
        }
        .write(&payload, &mut packet);
        let wire = tx.protect(&packet).unwrap();
        let clear = rx.unprotect(&wire).unwrap();
        let p = RtpPacket::parse(&clear).unwrap();
        // Arrival times as if paced: the buffer's arithmetic, not sleeping.
        jb.push(
            t0 + Duration::from_millis(20 * i as u64),
            p.header.sequence,
            p.header.timestamp,
            p.payload,
        );
        pcm.clear();
        match jb.pop(t0 + Duration::from_millis(20 * i as u64)) {
            Playout::Packet(v) => assert!(dec.decode(&v, &mut pcm)),
            other => panic!("unexpected {other:?}"),
        }
    }
    t.elapsed().as_secs_f64() * 1e6 / frames.len() as f64
}

fn app(user: &str, codec: &str, input: &str) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({
            "sip": {"transport_list": ["udp"]},
            "audio": {"input_device": input, "output_device": "null"},
            "rtp": {"audio_codec_list": [codec], "rtcp_interval": 1},
            "accounts": {format!("{user}@example.com"): {"registration": {"enabled": false}}},
        })
        .as_object()
        .unwrap(),
    )
    .unwrap();
    let app = SIPApplication::new();
    app.start(Arc::new(s)).unwrap();
    let account = app
        .account_manager()
        .unwrap()
        .get_account(&format!("{user}@example.com"))
        .unwrap();
    app.session_manager()
        .unwrap()
        .set_default_account(Some(account));
    app
}

/// (packetization + half RTT + mean jitter-buffer wait) in ms, and its parts.
fn call_delay(codec: &str) -> (f64, f64, f64) {
    let alice = app("alice", codec, "tone:440");
    let bob = app("bob", codec, "null");
    let bob2 = bob.clone();
    let tok = NotificationCenter::default().add_observer(
        Some("SIPSessionNewIncoming"),
        None,
        move |n: &Notification| {
            if let Some(s) = bob2.session_manager().unwrap().session(n.sender.id) {
                s.accept(s.proposed_streams()).unwrap();
            }
        },
    );
    let account = alice
        .account_manager()
        .unwrap()
        .get_account("alice@example.com")
        .unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    a.connect(
        &format!("sip:bob@127.0.0.1:{port}"),
        &[],
        vec![MediaStreamRegistry::default().create("audio").unwrap()],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.state() != SessionState::Established {
        assert!(Instant::now() < deadline, "call not established");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let b = bob.session_manager().unwrap().sessions()[0].clone();
    std::thread::sleep(Duration::from_secs(4));
    let stats = b.info_json()["streams"][0]["info"]["statistics"].clone();
    let wait = stats["jitter_buffer_delay_ms"].as_f64().unwrap();
    let rtt = stats["rtt_ms"].as_f64().unwrap_or(0.0);
    a.end().unwrap();
    while b.state() != SessionState::Terminated {
        std::thread::sleep(Duration::from_millis(10));
    }
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
    (20.0 + rtt / 2.0 + wait, rtt / 2.0, wait)
}

fn main() {
    for (kind, name) in [(CodecKind::Opus, "Opus"), (CodecKind::Pcmu, "PCMU")] {
        let frames = signal(kind);
        let mut b = Vec::new();
        let mut p = Vec::new();
        for _ in 0..ROUNDS {
            b.push(bare(kind, &frames));
            p.push(pipeline(kind, &frames));
        }
        let (b, p) = (median(b), median(p));
        println!(
            "{name}: stream {p:.2} µs per 20 ms frame (both directions, SRTP, jitter buffer), \
             bare codec {b:.2} µs: ×{:.2}; {:.0} streams per core ({:.3}% of a core each)",
            p / b,
            20_000.0 / p,
            p / 20_000.0 * 100.0
        );
    }
    for codec in ["opus", "PCMU"] {
        let (total, net, wait) = call_delay(codec);
        println!(
            "{codec}: input to output over loopback {total:.1} ms = 20 ms packetization \
             + {net:.2} ms network (RTT/2) + {wait:.1} ms in the jitter buffer"
        );
    }
}
