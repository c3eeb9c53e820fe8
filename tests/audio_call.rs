//! Audio calls between two applications over 127.0.0.1 with the built-in
//! AudioStream: each side sends a tone and records what it hears to WAV;
//! the recordings are checked for the other side's frequency and level.
//! Hold stops sending; unhold resumes. SRTP (SDES) by each side's
//! `rtp.srtp_encryption`: best effort by default, RTP/SAVP when
//! mandatory, refused when one side demands what the other disabled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;
use sipsimple::driver::audio_device::{level_dbfs, tone_ratio, tone_share};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    MediaStreamRegistry, MemoryStorage, Notification, NotificationCenter, ObserverToken,
    SIPApplication, Session, SessionState, Storage,
};

/// An application whose account `user@example.com` has SRTP `srtp`
/// (disabled, optional, mandatory); it is also the account incoming
/// sessions get.
fn app(user: &str, input: &str, output: &str, codecs: &[&str], srtp: &str) -> SIPApplication {
    app_dropping(user, input, output, codecs, srtp, 0)
}

/// The same, dropping `drop_percent` of the RTP packets it receives.
fn app_dropping(
    user: &str,
    input: &str,
    output: &str,
    codecs: &[&str],
    srtp: &str,
    drop_percent: u32,
) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({
            "sip": {"transport_list": ["udp"]},
            "audio": {"input_device": input, "output_device": output},
            "rtp": {"audio_codec_list": codecs, "rx_drop_percent": drop_percent, "rtcp_interval": 1},
            "accounts": {format!("{user}@example.com"): {
                "registration": {"enabled": false},
                "rtp": {"srtp_encryption": srtp},
            }},
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

fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Bob answers every incoming session with all it proposes; Alice calls
/// him with an audio stream. Her session once established, and Bob's
/// answering observer (remove it when done).
fn alice_calls_bob(alice: &SIPApplication, bob: &SIPApplication) -> (Session, ObserverToken) {
    let bob2 = bob.clone();
    let tok = NotificationCenter::default().add_observer(
        Some("SIPSessionNewIncoming"),
        None,
        move |n: &Notification| {
            // Other tests' sessions come by too: only Bob's are answered.
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
    wait("established", || a.state() == SessionState::Established);
    (a, tok)
}

/// A recording's samples and rate.
fn read_wav(path: &std::path::Path) -> (Vec<i16>, u32) {
    let r = hound::WavReader::open(path).unwrap();
    let rate = r.spec().sample_rate;
    (r.into_samples::<i16>().map(|s| s.unwrap()).collect(), rate)
}

fn audio_info(s: &Session) -> serde_json::Value {
    s.info_json()["streams"][0]["info"].clone()
}

fn call_and_check(codecs_a: &[&str], codecs_b: &[&str], expect: &str) {
    call_with_srtp(
        codecs_a,
        codecs_b,
        expect,
        ["optional", "optional"],
        Some("AES_CM_128_HMAC_SHA1_80"),
    );
}

/// A call with each side's SRTP policy; `srtp` is the suite both must
/// report (None: plain RTP).
fn call_with_srtp(
    codecs_a: &[&str],
    codecs_b: &[&str],
    expect: &str,
    policies: [&str; 2],
    srtp: Option<&str>,
) {
    let rate = match expect {
        "opus" => 48_000,
        "G722" => 16_000,
        _ => 8000,
    };
    call_checked(codecs_a, codecs_b, expect, rate, policies, srtp);
}

fn call_checked(
    codecs_a: &[&str],
    codecs_b: &[&str],
    expect: &str,
    expect_rate: u32,
    policies: [&str; 2],
    srtp: Option<&str>,
) {
    let dir = tempfile::tempdir().unwrap();
    let wav_a = dir.path().join("alice-hears.wav");
    let wav_b = dir.path().join("bob-hears.wav");
    let alice = app(
        "alice",
        "tone:440",
        &format!("wav:{}", wav_a.display()),
        codecs_a,
        policies[0],
    );
    let bob = app(
        "bob",
        "tone:1000",
        &format!("wav:{}", wav_b.display()),
        codecs_b,
        policies[1],
    );
    let dtmf: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let d2 = dtmf.clone();
    let dtok = NotificationCenter::default().add_observer(
        Some("SIPSessionGotDTMF"),
        None,
        move |n: &Notification| {
            d2.lock().push((
                n.sender.id.0,
                n.data.get_str("digit").unwrap_or("?").to_string(),
            ));
        },
    );
    let (a, tok) = alice_calls_bob(&alice, &bob);
    let b = bob.session_manager().unwrap().sessions()[0].clone();
    assert_eq!(audio_info(&a)["codec"], expect);
    assert_eq!(audio_info(&b)["codec"], expect);
    for s in [&a, &b] {
        let info = audio_info(s);
        assert_eq!(info["srtp_active"], srtp.is_some(), "{info}");
        assert_eq!(info["srtp_profile"].as_str(), srtp, "{info}");
    }
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
    // DTMF both ways, each digit once, in order.
    a.send_dtmf("123#").unwrap();
    b.send_dtmf("*0D").unwrap();
    assert!(a.send_dtmf("12x").is_err());
    let digits = |s: &Session| -> String {
        dtmf.lock()
            .iter()
            .filter(|(id, _)| *id == s.id().0)
            .map(|(_, d)| d.as_str())
            .collect()
    };
    wait("DTMF both ways", || {
        digits(&b) == "123#" && digits(&a) == "*0D"
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(digits(&b), "123#");
    assert_eq!(digits(&a), "*0D");
    let info = audio_info(&b);
    assert!(
        info["statistics"]["packets_received"].as_u64().unwrap() >= 70,
        "{info}"
    );
    assert_eq!(info["statistics"]["packets_lost"], 0, "{info}");
    assert_eq!(info["statistics"]["srtp_auth_failures"], 0, "{info}");
    assert_eq!(info["statistics"]["srtp_replays"], 0, "{info}");
    a.end().unwrap();
    wait("ended", || {
        a.state() == SessionState::Terminated && b.state() == SessionState::Terminated
    });
    NotificationCenter::default().remove_observer(tok);
    NotificationCenter::default().remove_observer(dtok);
    alice.stop();
    bob.stop();
    // The recordings carry the other side's tone at about its level.
    for (path, freq, other) in [(&wav_b, 440.0, 1000.0), (&wav_a, 1000.0, 440.0)] {
        let (samples, rate) = read_wav(path);
        assert_eq!(rate, expect_rate, "{}", path.display());
        let r0 = rate as usize / 10;
        assert!(
            samples.len() >= r0 + rate as usize,
            "{} samples in {}",
            samples.len(),
            path.display()
        );
        // Skip the first 100 ms, analyse one second.
        let win = &samples[r0..r0 + rate as usize];
        let r = tone_share(win, rate, freq);
        assert!(r > 0.9, "{}: {freq} Hz ratio {r}", path.display());
        assert!(
            tone_share(win, rate, other) < 0.01,
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

#[test]
fn srtp_mandatory_on_one_side_gives_rtp_savp_both_ways() {
    call_with_srtp(
        &["PCMU"],
        &["PCMU"],
        "PCMU",
        ["mandatory", "optional"],
        Some("AES_CM_128_HMAC_SHA1_80"),
    );
    call_with_srtp(
        &["PCMA"],
        &["PCMA"],
        "PCMA",
        ["optional", "mandatory"],
        Some("AES_CM_128_HMAC_SHA1_80"),
    );
}

#[test]
fn plain_rtp_when_either_side_disables_srtp() {
    call_with_srtp(&["PCMU"], &["PCMU"], "PCMU", ["disabled", "optional"], None);
    call_with_srtp(&["PCMU"], &["PCMU"], "PCMU", ["optional", "disabled"], None);
}

/// Demanding SRTP of a peer that disabled it fails the call, either way
/// round, with the reason in the failure.
#[test]
fn mandatory_against_disabled_fails_the_call() {
    for policies in [["mandatory", "disabled"], ["disabled", "mandatory"]] {
        let alice = app("alice", "tone:440", "null", &["PCMU"], policies[0]);
        let bob = app("bob", "tone:1000", "null", &["PCMU"], policies[1]);
        let failed: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
        let slot = failed.clone();
        let bob2 = bob.clone();
        let tok =
            NotificationCenter::default().add_observer(None, None, move |n: &Notification| {
                if n.name == "SIPSessionNewIncoming" {
                    if let Some(s) = bob2.session_manager().unwrap().session(n.sender.id) {
                        let _ = s.accept(s.proposed_streams());
                    }
                }
                if n.name == "SIPSessionDidFail" {
                    slot.lock()
                        .get_or_insert(serde_json::from_str(&n.data.to_json()).unwrap());
                }
            });
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
        wait("the call to fail", || a.state() == SessionState::Terminated);
        let f = failed.lock().clone().expect("SIPSessionDidFail");
        assert!(f["code"].as_u64().unwrap() >= 400, "{policies:?}: {f}");
        NotificationCenter::default().remove_observer(tok);
        alice.stop();
        bob.stop();
    }
}

/// Recording a call: a 2-channel WAV with what we send and what we hear,
/// announced before and after each step; the file is complete when
/// stop returns.
#[test]
fn recording_holds_both_sides_of_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let alice = app("alice", "tone:440", "null", &["PCMU"], "optional");
    let bob = app("bob", "tone:1000", "null", &["PCMU"], "optional");
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let s2 = seen.clone();
    let bob2 = bob.clone();
    let tok = NotificationCenter::default().add_observer(None, None, move |n: &Notification| {
        if n.name == "SIPSessionNewIncoming" {
            if let Some(s) = bob2.session_manager().unwrap().session(n.sender.id) {
                let _ = s.accept(s.proposed_streams());
            }
        }
        if n.name.contains("RecordingAudio") {
            s2.lock().push((
                n.name.clone(),
                n.data.get_str("file_name").unwrap_or("").to_string(),
            ));
        }
    });
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
    wait("established", || a.state() == SessionState::Established);
    let path = dir.path().join("call.wav");
    let used = a
        .start_recording_audio(Some(path.to_str().unwrap()))
        .unwrap();
    assert_eq!(used, path.to_str().unwrap());
    assert!(
        a.start_recording_audio(None).is_err(),
        "one recording at a time"
    );
    assert_eq!(audio_info(&a)["recording_file_name"], used.as_str());
    std::thread::sleep(Duration::from_millis(1500));
    a.stop_recording_audio().unwrap();
    assert!(a.stop_recording_audio().is_err());
    // A second recording without a name goes to the recordings directory.
    let dir2 = tempfile::tempdir().unwrap();
    let settings = alice.settings().unwrap();
    settings
        .set(
            "audio.recordings_directory",
            json!(dir2.path().display().to_string()),
        )
        .unwrap();
    settings.save().unwrap();
    let auto = a.start_recording_audio(None).unwrap();
    assert!(
        auto.starts_with(dir2.path().to_str().unwrap()) && auto.ends_with(".wav"),
        "{auto}"
    );
    a.end().unwrap();
    wait("ended", || a.state() == SessionState::Terminated);
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
    let names: Vec<String> = seen
        .lock()
        .iter()
        .filter(|(_, f)| f == &used)
        .map(|(n, _)| n.clone())
        .collect();
    for step in [
        "WillStartRecordingAudio",
        "DidStartRecordingAudio",
        "WillStopRecordingAudio",
        "DidStopRecordingAudio",
    ] {
        assert!(names.contains(&format!("SIPSession{step}")), "{names:?}");
        assert!(names.contains(&format!("AudioStream{step}")), "{names:?}");
    }
    let mut r = hound::WavReader::open(&path).unwrap();
    assert_eq!(r.spec().channels, 2);
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    let ours: Vec<i16> = all.iter().step_by(2).copied().collect();
    let heard: Vec<i16> = all.iter().skip(1).step_by(2).copied().collect();
    assert!(ours.len() >= 8000, "{} frames", ours.len());
    let tail = |v: &[i16]| v[v.len() - 8000..].to_vec();
    assert!(tone_ratio(&tail(&ours), 8000, 440.0) > 0.9);
    assert!(tone_share(&tail(&heard), 8000, 1000.0) > 0.9);
    // Ending the call finished the unnamed recording too.
    assert!(hound::WavReader::open(&auto).is_ok());
}

#[test]
fn opus_call_carries_both_tones_at_48_khz() {
    call_and_check(&["opus", "PCMU"], &["opus", "G722", "PCMU"], "opus");
}

#[test]
fn g722_call_carries_both_tones_at_16_khz() {
    call_and_check(&["G722", "PCMU"], &["opus", "G722", "PCMU"], "G722");
}

/// Bob loses `percent` of what Alice sends: the tone still comes through
/// (concealment fills the gaps), and the statistics show the loss and
/// what was done about it.
fn lossy_call(codec: &str, percent: u32, secs: u64) -> (serde_json::Value, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("bob-hears.wav");
    let alice = app("alice", "tone:1000", "null", &[codec], "optional");
    let bob = app_dropping(
        "bob",
        "null",
        &format!("wav:{}", wav.display()),
        &[codec],
        "optional",
        percent,
    );
    let (a, tok) = alice_calls_bob(&alice, &bob);
    std::thread::sleep(Duration::from_secs(secs));
    let b = bob.session_manager().unwrap().sessions()[0].clone();
    let info = audio_info(&b);
    let alice_info = audio_info(&a);
    a.end().unwrap();
    wait("ended", || b.state() == SessionState::Terminated);
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
    let st = &info["statistics"];
    let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{k} in {info}"));
    let (received, lost) = (n("packets_received"), n("packets_lost"));
    let share = lost as f64 / (received + lost) as f64;
    let want = f64::from(percent) / 100.0;
    // About 150 packets each dropped with probability `want`: at 10% the
    // count is 15 ± 3.7, so 0.3 to 1.9 times the rate leaves one run in
    // a thousand outside by chance.
    assert!(
        (want * 0.3..want * 1.9).contains(&share),
        "lost {share:.3} of packets, dropped {want}: {info}"
    );
    // Every lost frame was made up for (a loss at the very end may not
    // have been played yet).
    assert!(n("concealed_frames") + 2 >= lost, "{info}");
    let (samples, rate) = read_wav(&wav);
    let win = &samples[rate as usize / 2..rate as usize * 5 / 2];
    // 20 ms at a time: made-up frames need not keep the tone's phase.
    let block = rate as usize / 50;
    let r = win
        .chunks(block)
        .map(|b| tone_ratio(b, rate, 1000.0))
        .sum::<f64>()
        / (win.len() / block) as f64;
    let l = level_dbfs(win);
    eprintln!("{codec} at {percent}% loss: tone ratio {r:.3}, level {l:.1} dBFS, {st}");
    // The tone dominates what Bob heard, at close to its level.
    assert!(
        r > if percent > 20 { 0.6 } else { 0.8 },
        "{codec} {percent}%: ratio {r}"
    );
    assert!(l > -18.0, "{codec} {percent}%: level {l} dBFS");
    (alice_info, info)
}

#[test]
fn ten_percent_loss_is_concealed_pcmu_and_reported_by_rtcp() {
    let (alice, bob) = lossy_call("PCMU", 10, 5);
    // Bob's receiver reports tell Alice what he lost; both have a
    // round-trip time (loopback: well under 100 ms).
    let (a, b) = (&alice["statistics"], &bob["statistics"]);
    for st in [a, b] {
        assert!(st["rtcp_sent"].as_u64().unwrap() >= 1, "{st}");
        assert!(st["rtcp_received"].as_u64().unwrap() >= 1, "{st}");
        assert_eq!(st["rtcp_malformed"], 0, "{st}");
        let rtt = st["rtt_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("no RTT: {st}"));
        assert!((0.0..100.0).contains(&rtt), "{st}");
    }
    let told = a["remote_packets_lost"].as_i64().unwrap();
    let lost = b["packets_lost"].as_i64().unwrap();
    // Reports lag: Alice knows at most what Bob lost by his last one.
    assert!(
        told > 0 && told <= lost,
        "Alice was told {told}, Bob lost {lost}"
    );
    eprintln!("RTT alice {} ms, bob {} ms", a["rtt_ms"], b["rtt_ms"]);
}

#[test]
fn thirty_percent_loss_is_concealed_pcmu() {
    lossy_call("PCMU", 30, 3);
}

#[test]
fn opus_recovers_lost_frames_from_in_band_fec() {
    for percent in [10, 30] {
        let (_, info) = lossy_call("opus", percent, 3);
        let st = &info["statistics"];
        assert!(st["fec_recovered"].as_u64().unwrap() > 0, "{info}");
    }
}

/// A stranger sends garbage, foreign payload types and a second SSRC to
/// Bob's RTP and RTCP ports mid-call: each datagram is dropped and counted,
/// Bob keeps sending to Alice, and what he hears is still her tone.
fn garbage_on_the_media_ports(srtp: &str) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("bob-hears.wav");
    let alice = app("alice", "tone:1000", "null", &["PCMU"], srtp);
    let bob = app(
        "bob",
        "null",
        &format!("wav:{}", wav.display()),
        &["PCMU"],
        srtp,
    );
    let (a, tok) = alice_calls_bob(&alice, &bob);
    std::thread::sleep(Duration::from_millis(500));
    let b = bob.session_manager().unwrap().sessions()[0].clone();
    let info = audio_info(&b);
    let rtp: std::net::SocketAddr = info["local_rtp_address"].as_str().unwrap().parse().unwrap();
    let rtcp = std::net::SocketAddr::new(rtp.ip(), rtp.port() + 1);
    let latched = info["remote_rtp_address_received"].clone();
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_packet = |pt: u8, ssrc: u32| {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend(std::iter::repeat_n(0x55u8, 160));
        p
    };
    let garbage: Vec<Vec<u8>> = vec![
        vec![1, 2, 3, 4, 5],
        // Version 1.
        {
            let mut p = rtp_packet(0, 7);
            p[0] = 0x40;
            p
        },
        // Fifteen CSRCs announced, none there.
        vec![0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7],
        // Padding longer than the packet.
        {
            let mut p = rtp_packet(0, 7);
            p[0] |= 0x20;
            *p.last_mut().unwrap() = 255;
            p
        },
    ];
    for _ in 0..3 {
        for g in &garbage {
            stranger.send_to(g, rtp).unwrap();
        }
        stranger.send_to(&rtp_packet(99, 7), rtp).unwrap();
        stranger.send_to(&rtp_packet(0, 0x1234_5678), rtp).unwrap();
        // RTCP: garbage, an SDES not after a report, RTP on the RTCP port.
        stranger.send_to(&[0x80, 201, 0, 9, 1, 2], rtcp).unwrap();
        stranger
            .send_to(&[0x81, 202, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0], rtcp)
            .unwrap();
        stranger.send_to(&rtp_packet(0, 7), rtcp).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let info = audio_info(&b);
    let st = &info["statistics"];
    let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{k} in {info}"));
    if srtp == "mandatory" {
        // Nothing of the stranger's authenticates.
        assert!(n("srtp_auth_failures") + n("malformed") >= 18, "{info}");
        assert_eq!(
            n("unknown_payload_type") + n("unexpected_ssrc"),
            0,
            "{info}"
        );
    } else {
        assert_eq!(n("malformed"), 12, "{info}");
        assert_eq!(n("unknown_payload_type"), 3, "{info}");
        assert_eq!(n("unexpected_ssrc"), 3, "{info}");
        assert_eq!(n("srtp_auth_failures"), 0, "{info}");
    }
    assert_eq!(n("rtcp_malformed"), 9, "{info}");
    // Symmetric RTP did not latch onto the stranger.
    assert_eq!(info["remote_rtp_address_received"], latched, "{info}");
    // Bob still sends to Alice.
    let sent = n("packets_sent");
    let alice_got = audio_info(&a)["statistics"]["packets_received"]
        .as_u64()
        .unwrap();
    assert!(
        alice_got + 5 >= sent,
        "Bob sent {sent}, Alice got {alice_got}"
    );
    a.end().unwrap();
    wait("ended", || b.state() == SessionState::Terminated);
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
    let (samples, rate) = read_wav(&wav);
    let win = &samples[samples.len() - rate as usize..];
    let r = tone_share(win, rate, 1000.0);
    assert!(r > 0.9, "{srtp}: ratio {r}");
}

#[test]
fn garbage_on_the_media_ports_is_dropped_and_counted() {
    garbage_on_the_media_ports("disabled");
}

#[test]
fn garbage_on_srtp_media_ports_fails_authentication() {
    garbage_on_the_media_ports("mandatory");
}

/// System devices: one that cannot run (the default device of a machine
/// without a sound card) gives way to the null device with
/// AudioStreamDeviceDidFail and the call goes on; one that runs (ALSA's
/// null device, where present) carries the call without complaint.
#[test]
fn system_devices_run_or_fall_back_to_null() {
    use sipsimple::driver::audio_device::system_devices;
    let devices = system_devices();
    let has_default_input = devices.iter().any(|d| d.default_input);
    let null_out = devices
        .iter()
        .find(|d| d.output && d.name.ends_with(":null"))
        .map(|d| format!("system:{}", d.name));
    let failures: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let f2 = failures.clone();
    let tok = NotificationCenter::default().add_observer(
        Some("AudioStreamDeviceDidFail"),
        None,
        move |n: &Notification| {
            f2.lock().push((
                n.data.get_str("direction").unwrap_or("").to_string(),
                n.data.get_str("device").unwrap_or("").to_string(),
            ));
        },
    );
    let alice = app("alice", "system", "null", &["PCMU"], "optional");
    let bob = app(
        "bob",
        "tone:1000",
        null_out.as_deref().unwrap_or("null"),
        &["PCMU"],
        "optional",
    );
    let (a, itok) = alice_calls_bob(&alice, &bob);
    std::thread::sleep(Duration::from_millis(1500));
    let b = bob.session_manager().unwrap().sessions()[0].clone();
    let (ia, ib) = (audio_info(&a), audio_info(&b));
    a.end().unwrap();
    wait("ended", || b.state() == SessionState::Terminated);
    NotificationCenter::default().remove_observer(itok);
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
    let failures = failures.lock().clone();
    if !has_default_input {
        assert!(
            failures.contains(&("input".to_string(), "system".to_string())),
            "{failures:?}"
        );
    }
    assert!(
        !failures.iter().any(|(d, _)| d == "output"),
        "{null_out:?} ran: {failures:?}"
    );
    // The call went on both ways whatever the devices did.
    for i in [&ia, &ib] {
        assert!(
            i["statistics"]["packets_sent"].as_u64().unwrap() > 40,
            "{i}"
        );
        assert!(
            i["statistics"]["packets_received"].as_u64().unwrap() > 40,
            "{i}"
        );
    }
}

/// With `audio.alert_device` set, an incoming session rings there (the
/// ring tone 1 s on, 3 s off) until it is answered, and not after.
#[test]
fn incoming_sessions_ring_on_the_alert_device_until_answered() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("ring.wav");
    let alice = app("alice", "tone:1000", "null", &["PCMU"], "optional");
    let s = MemoryStorage::new();
    s.save(
        json!({
            "sip": {"transport_list": ["udp"]},
            "audio": {"alert_device": format!("wav:{}", ring.display()), "ring_tone": "tone:425"},
            "accounts": {"bob@example.com": {"registration": {"enabled": false}}},
        })
        .as_object()
        .unwrap(),
    )
    .unwrap();
    let bob = SIPApplication::new();
    bob.start(Arc::new(s)).unwrap();
    let incoming: Arc<Mutex<Option<Session>>> = Arc::default();
    let (slot, bob2) = (incoming.clone(), bob.clone());
    let tok = NotificationCenter::default().add_observer(
        Some("SIPSessionNewIncoming"),
        None,
        move |n: &Notification| {
            // Other tests' sessions come by too: only Bob's count.
            if let Some(s) = bob2.session_manager().unwrap().session(n.sender.id) {
                *slot.lock() = Some(s);
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
    wait("incoming", || incoming.lock().is_some());
    // Ring for 2.5 s, then answer and talk for 1.5 s.
    std::thread::sleep(Duration::from_millis(2500));
    let b = incoming.lock().clone().unwrap();
    b.accept(b.proposed_streams()).unwrap();
    wait("established", || a.state() == SessionState::Established);
    std::thread::sleep(Duration::from_millis(1500));
    a.end().unwrap();
    wait("ended", || b.state() == SessionState::Terminated);
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
    let (samples, rate) = read_wav(&ring);
    assert_eq!(rate, 8000);
    let secs = samples.len() as f64 / f64::from(rate);
    // Rang while incoming, stopped when answered (not through the call).
    assert!((2.0..3.2).contains(&secs), "rang {secs:.2} s");
    let on = &samples[..7200];
    assert!(tone_share(on, rate, 425.0) > 0.9, "the ring tone");
    let off = &samples[8400..16_000];
    assert!(
        level_dbfs(off) < -60.0,
        "the pause: {} dBFS",
        level_dbfs(off)
    );
}
