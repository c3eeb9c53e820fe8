//! Audio calls between two applications over 127.0.0.1 with the built-in
//! AudioStream: each side sends a tone and records what it hears to WAV;
//! the recordings are checked for the other side's frequency and level.
//! Hold stops sending; unhold resumes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;
use sipsimple::driver::audio_device::{level_dbfs, tone_ratio};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    Account, MediaStreamRegistry, MemoryStorage, Notification, NotificationCenter, SIPApplication,
    Session, SessionState, Storage,
};

fn app(input: &str, output: &str, codecs: &[&str]) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({
            "sip": {"transport_list": ["udp"]},
            "audio": {"input_device": input, "output_device": output},
            "rtp": {"audio_codec_list": codecs},
        })
        .as_object()
        .unwrap(),
    )
    .unwrap();
    let app = SIPApplication::new();
    app.start(Arc::new(s)).unwrap();
    app
}

fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_wav(path: &std::path::Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .unwrap()
        .into_samples::<i16>()
        .map(|s| s.unwrap())
        .collect()
}

fn audio_info(s: &Session) -> serde_json::Value {
    s.info_json()["streams"][0]["info"].clone()
}

fn call_and_check(codecs_a: &[&str], codecs_b: &[&str], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let wav_a = dir.path().join("alice-hears.wav");
    let wav_b = dir.path().join("bob-hears.wav");
    let alice = app("tone:440", &format!("wav:{}", wav_a.display()), codecs_a);
    let bob = app("tone:1000", &format!("wav:{}", wav_b.display()), codecs_b);
    let incoming: Arc<Mutex<Option<u64>>> = Arc::default();
    let slot = incoming.clone();
    let bob2 = bob.clone();
    let tok = NotificationCenter::default().add_observer(
        Some("SIPSessionNewIncoming"),
        None,
        move |n: &Notification| {
            if let Some(s) = bob2.session_manager().unwrap().session(n.sender.id) {
                *slot.lock() = Some(s.id().0);
                s.accept(s.proposed_streams()).unwrap();
            }
        },
    );
    let account = Account::new("alice@example.com", None).unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    a.connect(
        &format!("sip:bob@127.0.0.1:{port}"),
        &[],
        vec![MediaStreamRegistry::default().create("audio").unwrap()],
    )
    .unwrap();
    wait("established", || a.state() == SessionState::Established);
    let b = {
        let id = incoming.lock().unwrap();
        bob.session_manager()
            .unwrap()
            .session(sipsimple::ObjectId(id))
            .unwrap()
    };
    assert_eq!(audio_info(&a)["codec"], expect);
    assert_eq!(audio_info(&b)["codec"], expect);
    std::thread::sleep(Duration::from_millis(1500));
    // Hold: Alice stops sending, and Bob (held) stops too.
    a.hold().unwrap();
    wait("held", || {
        b.on_hold_by_remote() && a.state() == SessionState::Established
    });
    std::thread::sleep(Duration::from_millis(100));
    let sent = audio_info(&a)["statistics"]["packets_sent"]
        .as_u64()
        .unwrap();
    let sent_b = audio_info(&b)["statistics"]["packets_sent"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        audio_info(&a)["statistics"]["packets_sent"]
            .as_u64()
            .unwrap(),
        sent
    );
    assert_eq!(
        audio_info(&b)["statistics"]["packets_sent"]
            .as_u64()
            .unwrap(),
        sent_b
    );
    a.unhold().unwrap();
    wait("unheld", || {
        !b.on_hold() && a.state() == SessionState::Established
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        audio_info(&a)["statistics"]["packets_sent"]
            .as_u64()
            .unwrap()
            > sent
    );
    let info = audio_info(&b);
    assert!(
        info["statistics"]["packets_received"].as_u64().unwrap() >= 70,
        "{info}"
    );
    assert_eq!(info["statistics"]["packets_lost"], 0, "{info}");
    a.end().unwrap();
    wait("ended", || {
        a.state() == SessionState::Terminated && b.state() == SessionState::Terminated
    });
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
    // The recordings carry the other side's tone at about its level.
    for (path, freq, other) in [(&wav_b, 440.0, 1000.0), (&wav_a, 1000.0, 440.0)] {
        let samples = read_wav(path);
        assert!(
            samples.len() >= 8000,
            "{} samples in {}",
            samples.len(),
            path.display()
        );
        // Skip the first 100 ms, analyse one second.
        let win = &samples[800..8800];
        let r = tone_ratio(win, 8000, freq);
        assert!(r > 0.9, "{}: {freq} Hz ratio {r}", path.display());
        assert!(
            tone_ratio(win, 8000, other) < 0.01,
            "{}: own tone leaked",
            path.display()
        );
        let l = level_dbfs(win);
        assert!(
            (-14.5..-11.5).contains(&l),
            "{}: level {l} dBFS",
            path.display()
        );
    }
}

#[test]
fn pcmu_call_carries_both_tones() {
    call_and_check(&["PCMU", "PCMA"], &["PCMU", "PCMA"], "PCMU");
}

#[test]
fn pcma_when_the_offer_lists_it_first() {
    // The offer lists PCMA first; the answer keeps the offerer's order.
    call_and_check(&["PCMA", "PCMU"], &["PCMU", "PCMA"], "PCMA");
}
