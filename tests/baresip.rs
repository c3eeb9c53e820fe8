//! Interoperability with baresip (Debian package baresip-core), headless on
//! 127.0.0.1: baresip calls us, we call baresip (auto-answer). Each side
//! sends a tone; each recording must carry the other side's tone. baresip
//! plays a WAV file as its microphone and dumps what it decodes to WAV
//! (its sndfile module), so both directions are checked as signal. The
//! same with SRTP mandatory on both sides (SDES, RTP/SAVP). Speech too: a
//! phrase made by espeak-ng goes both ways and each recording must
//! correlate with it once aligned.
//!
//! Without baresip these tests say so and pass, except under CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sipsimple::driver::audio_device::{resample, tone_share, AudioSource, Tone};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    MediaStreamRegistry, MemoryStorage, NotificationCenter, SIPApplication, SessionState, Storage,
};

fn baresip_available() -> bool {
    common::peer_available("baresip", "-h", "baresip-core")
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A codec both sides run: baresip's name for it, ours, its audio rate.
#[derive(Clone, Copy)]
struct Codec {
    baresip: &'static str,
    ours: &'static str,
    rate: u32,
}

const PCMU: Codec = Codec {
    baresip: "PCMU",
    ours: "PCMU",
    rate: 8000,
};
const G722: Codec = Codec {
    baresip: "G722",
    ours: "G722",
    rate: 16_000,
};
const OPUS: Codec = Codec {
    baresip: "opus/48000/2",
    ours: "opus",
    rate: 48_000,
};

/// A baresip configuration in `dir`: mono at the codec's rate, only that
/// codec, a 600 Hz WAV as microphone, decoded audio dumped into `dir`;
/// `mediaenc` (such as `srtp-mand`) for its account.
fn baresip_dir(dir: &Path, port: u16, mediaenc: Option<&str>, codec: Codec) {
    let mut t = Tone::new(600.0, codec.rate, 0.3);
    let mut buf = vec![0i16; codec.rate as usize * 6];
    t.read(&mut buf);
    baresip_dir_with_source(dir, port, mediaenc, codec, &buf);
}

/// The same with `source` (at the codec's rate) as baresip's microphone.
fn baresip_dir_with_source(
    dir: &Path,
    port: u16,
    mediaenc: Option<&str>,
    codec: Codec,
    source: &[i16],
) {
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{port}\nsip_transports udp\n\
         audio_player aubridge,nil\naudio_source aufile,{d}/tone.wav\naudio_alert aubridge,nil\n\
         ausrc_srate {rate}\nauplay_srate {rate}\nausrc_channels 1\nauplay_channels 1\n\
         module_path /usr/lib/baresip/modules\nmodule stdio.so\nmodule g711.so\nmodule aufile.so\n\
         module aubridge.so\nmodule sndfile.so\nmodule srtp.so\nmodule g722.so\nmodule opus.so\n\
         module_app account.so\n\
         module_app menu.so\n\
         snd_path {d}\n",
        d = dir.display(),
        rate = codec.rate
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:baresip@127.0.0.1>;regint=0;answermode=auto;audio_codecs={}{}\n",
            codec.baresip,
            mediaenc
                .map(|m| format!(";mediaenc={m}"))
                .unwrap_or_default()
        ),
    )
    .unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: codec.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.join("tone.wav"), spec).unwrap();
    for s in source {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

fn baresip(dir: &Path, seconds: u32, dial: Option<&str>) -> Child {
    let mut cmd = Command::new("baresip");
    cmd.arg("-f")
        .arg(dir)
        .args(["-v", "-t", &seconds.to_string()]);
    if let Some(uri) = dial {
        cmd.args(["-e", &format!("/dial {uri}")]);
    }
    // What it prints (the DTMF it received, among the rest) goes to a file
    // the test reads.
    let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
    cmd.stdin(Stdio::piped())
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip starts")
}

fn wait_exit(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("baresip did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Our endpoint; its account `us@example.com` (also the one incoming
/// sessions get) has `rtp.srtp_encryption` `srtp`.
fn app(wav: &Path, srtp: &str, codec: Codec) -> SIPApplication {
    app_with_input(wav, srtp, codec, "tone:1000")
}

/// The same with another input device.
fn app_with_input(wav: &Path, srtp: &str, codec: Codec, input: &str) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({
            "sip": {"transport_list": ["udp"]},
            "audio": {"input_device": input, "output_device": format!("wav:{}", wav.display())},
            "rtp": {"audio_codec_list": [codec.ours]},
            "accounts": {"us@example.com": {
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
        .get_account("us@example.com")
        .unwrap();
    app.session_manager()
        .unwrap()
        .set_default_account(Some(account));
    app
}

/// Our account calls baresip on `port` with audio; the session once
/// baresip answered.
fn call_baresip(us: &SIPApplication, port: u16) -> sipsimple::Session {
    let account = us
        .account_manager()
        .unwrap()
        .get_account("us@example.com")
        .unwrap();
    let s = us.session_manager().unwrap().new_session(&account);
    s.connect(
        &format!("sip:baresip@127.0.0.1:{port}"),
        &[],
        vec![MediaStreamRegistry::default().create("audio").unwrap()],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.state() != SessionState::Established {
        assert!(
            Instant::now() < deadline,
            "baresip answered; state {}",
            s.state()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

/// The audio stream's info of `s`.
fn audio_info(s: &sipsimple::Session) -> serde_json::Value {
    s.info_json()["streams"][0]["info"].clone()
}

fn baresip_decoded(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip dumped what it decoded")
}

fn check_tone(path: &Path, freq: f64) {
    let r = hound::WavReader::open(path).unwrap();
    let rate = r.spec().sample_rate as usize;
    // baresip decodes Opus to stereo: the first channel.
    let channels = r.spec().channels as usize;
    let s: Vec<i16> = r
        .into_samples::<i16>()
        .map(|s| s.unwrap())
        .step_by(channels)
        .collect();
    assert!(
        s.len() >= rate * 3 / 2,
        "{}: {} samples",
        path.display(),
        s.len()
    );
    // The last second before the end (skips ringing and start-up).
    let win = &s[s.len() - rate * 5 / 4..s.len() - rate / 4];
    let ratio = tone_share(win, rate as u32, freq);
    assert!(ratio > 0.9, "{}: {freq} Hz ratio {ratio}", path.display());
}

fn baresip_calls_us(srtp: bool, codec: Codec) {
    if !baresip_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("we-hear.wav");
    let us = app(&ours, if srtp { "mandatory" } else { "optional" }, codec);
    let port = us.sip_local_address(TransportKind::Udp).unwrap().port();
    let us2 = us.clone();
    let seen: Arc<parking_lot::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen2 = seen.clone();
    let tok =
        NotificationCenter::default().add_observer(Some("SIPSessionNewIncoming"), None, move |n| {
            if let Some(s) = us2.session_manager().unwrap().session(n.sender.id) {
                s.accept(s.proposed_streams()).unwrap();
                let s2 = s.clone();
                let seen3 = seen2.clone();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while s2.state() != SessionState::Established && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    seen3.lock().push(audio_info(&s2));
                });
            }
        });
    baresip_dir(
        dir.path(),
        free_udp_port(),
        srtp.then_some("srtp-mand"),
        codec,
    );
    let b = baresip(dir.path(), 4, Some(&format!("sip:us@127.0.0.1:{port}")));
    wait_exit(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !us.session_manager().unwrap().sessions().is_empty() {
        assert!(Instant::now() < deadline, "baresip's BYE ended the session");
        std::thread::sleep(Duration::from_millis(20));
    }
    NotificationCenter::default().remove_observer(tok);
    us.stop();
    let info = seen
        .lock()
        .first()
        .cloned()
        .expect("the session's audio info");
    assert_eq!(info["srtp_active"], srtp, "{info}");
    assert_eq!(info["codec"], codec.ours, "{info}");
    if srtp {
        assert_eq!(info["statistics"]["srtp_auth_failures"], 0, "{info}");
    }
    check_tone(&ours, 600.0);
    check_tone(&baresip_decoded(dir.path()), 1000.0);
}

#[test]
fn baresip_calls_us_pcmu() {
    baresip_calls_us(false, PCMU);
}

#[test]
fn baresip_calls_us_g722() {
    baresip_calls_us(false, G722);
}

#[test]
fn baresip_calls_us_opus() {
    baresip_calls_us(false, OPUS);
}

#[test]
fn baresip_calls_us_with_mandatory_srtp() {
    baresip_calls_us(true, OPUS);
}

#[test]
fn we_call_baresip_pcmu() {
    we_call_baresip(false, PCMU);
}

#[test]
fn we_call_baresip_g722() {
    we_call_baresip(false, G722);
}

#[test]
fn we_call_baresip_opus() {
    we_call_baresip(false, OPUS);
}

#[test]
fn we_call_baresip_with_mandatory_srtp() {
    we_call_baresip(true, G722);
}

fn we_call_baresip(srtp: bool, codec: Codec) {
    if !baresip_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("we-hear.wav");
    let us = app(&ours, if srtp { "mandatory" } else { "optional" }, codec);
    let bport = free_udp_port();
    baresip_dir(dir.path(), bport, srtp.then_some("srtp-mand"), codec);
    let mut b = baresip(dir.path(), 8, None);
    common::wait_for_sip_udp(bport, "baresip");
    let s = call_baresip(&us, bport);
    assert!(s
        .remote_user_agent()
        .unwrap_or_default()
        .contains("baresip"));
    // DTMF both ways: we send 4 and 7; baresip sends what is typed on its
    // terminal during a call.
    let got: Arc<parking_lot::Mutex<String>> = Arc::default();
    let g2 = got.clone();
    let sid = s.id();
    let dtok = NotificationCenter::default().add_observer(
        Some("SIPSessionGotDTMF"),
        Some(sid),
        move |n| g2.lock().push_str(n.data.get_str("digit").unwrap_or("?")),
    );
    s.send_dtmf("47").unwrap();
    {
        use std::io::Write;
        let stdin = b.stdin.as_mut().unwrap();
        stdin.write_all(b"159").unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    NotificationCenter::default().remove_observer(dtok);
    assert_eq!(got.lock().as_str(), "159", "baresip's DTMF reached us");
    let info = audio_info(&s);
    assert_eq!(info["srtp_active"], srtp, "{info}");
    assert_eq!(info["codec"], codec.ours, "{info}");
    if srtp {
        assert!(
            info["statistics"]["packets_received"].as_u64().unwrap() > 50,
            "{info}"
        );
        assert_eq!(info["statistics"]["srtp_auth_failures"], 0, "{info}");
    }
    s.end().unwrap();
    while s.state() != SessionState::Terminated {
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_exit(b);
    us.stop();
    // baresip heard our DTMF (it says so with -v).
    let log = std::fs::read_to_string(dir.path().join("baresip.log")).unwrap();
    for d in ['4', '7'] {
        assert!(
            log.contains(&format!("received event: '{d}' (end=1)")),
            "baresip did not get DTMF {d}: {log}"
        );
    }
    check_tone(&ours, 600.0);
    check_tone(&baresip_decoded(dir.path()), 1000.0);
}

/// Runs sip-audio-session with `args` (headless, Bonjour account, UDP)
/// until it exits; its success and its lines.
fn audio_tool(dir: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sip-audio-session"))
        .arg("--config-dir")
        .arg(dir.join("tool"))
        .args(["--account", "bonjour", "--transport", "udp"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sip-audio-session runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    // Kept open while the call runs: EOF is not a hang-up.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        drop(input);
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sip-audio-session did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("[sip-audio-session] {text}");
    (out.status.success(), text)
}

/// The tool calls baresip with mandatory SRTP and G.722, sends DTMF typed
/// on its stdin; both recordings carry the other side's tone.
#[test]
fn sip_audio_session_calls_baresip_with_srtp() {
    if !baresip_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("we-hear.wav");
    let bport = free_udp_port();
    baresip_dir(dir.path(), bport, Some("srtp-mand"), G722);
    let b = baresip(dir.path(), 8, None);
    common::wait_for_sip_udp(bport, "baresip");
    let (ok, said) = audio_tool(
        dir.path(),
        &[
            "--input",
            "tone:1000",
            "--output",
            &ours.display().to_string(),
            "--codecs",
            "G722",
            "--srtp",
            "mandatory",
            "--duration",
            "3",
            &format!("sip:baresip@127.0.0.1:{bport}"),
        ],
        "47\n",
    );
    assert!(ok, "{said}");
    assert!(
        said.contains("codec G722 at 16000 Hz, SRTP AES_CM_128_HMAC_SHA1_80"),
        "{said}"
    );
    assert!(said.contains("call ended by local"), "{said}");
    wait_exit(b);
    let log = std::fs::read_to_string(dir.path().join("baresip.log")).unwrap();
    for d in ['4', '7'] {
        assert!(
            log.contains(&format!("received event: '{d}' (end=1)")),
            "baresip did not get DTMF {d}: {log}"
        );
    }
    check_tone(&ours, 600.0);
    check_tone(&baresip_decoded(dir.path()), 1000.0);
}

/// baresip calls the tool (auto-answer) with Opus; the tool exits when
/// baresip hangs up.
#[test]
fn baresip_calls_sip_audio_session_opus() {
    if !baresip_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("we-hear.wav");
    let port = free_udp_port();
    baresip_dir(dir.path(), free_udp_port(), None, OPUS);
    let d = dir.path().to_path_buf();
    let ours2 = ours.display().to_string();
    let tool = std::thread::spawn(move || {
        audio_tool(
            &d,
            &[
                "--sip-port",
                &port.to_string(),
                "--input",
                "tone:1000",
                "--output",
                &ours2,
                "--codecs",
                "opus",
                "--auto-answer",
            ],
            "",
        )
    });
    common::wait_for_sip_udp(port, "sip-audio-session");
    let b = baresip(dir.path(), 4, Some(&format!("sip:us@127.0.0.1:{port}")));
    wait_exit(b);
    let (ok, said) = tool.join().unwrap();
    assert!(ok, "{said}");
    assert!(said.contains("codec opus at 48000 Hz"), "{said}");
    assert!(said.contains("call ended by remote"), "{said}");
    check_tone(&ours, 600.0);
    check_tone(&baresip_decoded(dir.path()), 1000.0);
}

/// A phrase spoken by espeak-ng, as samples at `rate` (its 22,050 Hz
/// resampled), and the WAV file espeak-ng wrote.
fn phrase(dir: &Path, rate: u32) -> Option<(Vec<i16>, PathBuf)> {
    if !common::peer_available("espeak-ng", "--version", "espeak-ng") {
        return None;
    }
    let path = dir.join("phrase.wav");
    let ok = Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg(
            "Please call me back when you get this message. The meeting moved to Thursday at four.",
        )
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "espeak-ng wrote the phrase");
    let r = hound::WavReader::open(&path).unwrap();
    let from = r.spec().sample_rate;
    let s: Vec<i16> = r.into_samples::<i16>().map(|s| s.unwrap()).collect();
    Some((resample(&s, from, rate), path))
}

/// The best normalized correlation of `heard` with a 2-second stretch of
/// the phrase (from 0.5 s in), after finding where it is: a coarse search
/// on 1 ms energy envelopes, then sample by sample within ±3 ms, both at
/// 8 kHz.
fn speech_correlation(original: &[i16], orig_rate: u32, heard: &[i16], heard_rate: u32) -> f64 {
    let a = resample(original, orig_rate, 8000);
    let b = resample(heard, heard_rate, 8000);
    let t = &a[4000..20_000];
    let env = |x: &[i16]| -> Vec<f64> {
        x.chunks(8)
            .map(|c| c.iter().map(|s| f64::from(*s).abs()).sum::<f64>())
            .collect()
    };
    let (te, be) = (env(t), env(&b));
    let ncc = |x: &[f64], y: &[f64]| {
        let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
        let (mx, my) = (
            x.iter().sum::<f64>() / x.len() as f64,
            y.iter().sum::<f64>() / y.len() as f64,
        );
        for (p, q) in x.iter().zip(y) {
            xy += (p - mx) * (q - my);
            xx += (p - mx) * (p - mx);
            yy += (q - my) * (q - my);
        }
        if xx == 0.0 || yy == 0.0 {
            0.0
        } else {
            xy / (xx * yy).sqrt()
        }
    };
    let coarse = (0..be.len().saturating_sub(te.len()))
        .max_by(|&i, &j| ncc(&te, &be[i..i + te.len()]).total_cmp(&ncc(&te, &be[j..j + te.len()])))
        .expect("the recording is longer than the stretch");
    let tf: Vec<f64> = t.iter().map(|s| f64::from(*s)).collect();
    let bf: Vec<f64> = b.iter().map(|s| f64::from(*s)).collect();
    let centre = coarse * 8;
    (centre.saturating_sub(24)..(centre + 24).min(bf.len() - tf.len()))
        .map(|i| ncc(&tf, &bf[i..i + tf.len()]))
        .fold(f64::MIN, f64::max)
}

/// We call baresip; each side speaks the phrase (ours from a WAV device,
/// baresip's from its aufile source); each recording must correlate with
/// the phrase once aligned.
fn speech_both_ways(codec: Codec) {
    if !baresip_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some((spoken, wav)) = phrase(dir.path(), codec.rate) else {
        return;
    };
    let ours = dir.path().join("we-hear.wav");
    let us = app_with_input(&ours, "optional", codec, &format!("wav:{}", wav.display()));
    let bport = free_udp_port();
    baresip_dir_with_source(dir.path(), bport, None, codec, &spoken);
    let b = baresip(dir.path(), 9, None);
    common::wait_for_sip_udp(bport, "baresip");
    let s = call_baresip(&us, bport);
    // The phrase lasts about 5 s; it loops on our side, and baresip hangs
    // up when its file ends.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline && s.state() == SessionState::Established {
        std::thread::sleep(Duration::from_millis(20));
    }
    if s.state() != SessionState::Terminated {
        let _ = s.end();
    }
    while s.state() != SessionState::Terminated {
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_exit(b);
    us.stop();
    let read = |p: &Path| {
        let r = hound::WavReader::open(p).unwrap();
        let (rate, ch) = (r.spec().sample_rate, r.spec().channels as usize);
        let v: Vec<i16> = r
            .into_samples::<i16>()
            .map(|s| s.unwrap())
            .step_by(ch)
            .collect();
        (v, rate)
    };
    let (heard, rate) = read(&ours);
    let c_us = speech_correlation(&spoken, codec.rate, &heard, rate);
    let (theirs, trate) = read(&baresip_decoded(dir.path()));
    let c_them = speech_correlation(&spoken, codec.rate, &theirs, trate);
    eprintln!(
        "{}: speech correlation, we heard {c_us:.3}, baresip heard {c_them:.3}",
        codec.ours
    );
    // The measure tells speech from other speech: the phrase backwards,
    // same voice, same spectrum, does not match.
    let reversed: Vec<i16> = spoken.iter().rev().copied().collect();
    let control = speech_correlation(&reversed, codec.rate, &heard, rate);
    eprintln!(
        "{}: the phrase backwards against what we heard: {control:.3}",
        codec.ours
    );
    assert!(control < 0.4, "{}: control {control}", codec.ours);
    assert!(c_us > SPEECH_MIN, "{}: we heard {c_us}", codec.ours);
    assert!(
        c_them > SPEECH_MIN,
        "{}: baresip heard {c_them}",
        codec.ours
    );
}

/// Aligned sample correlation a speech codec keeps at least (a tone of
/// another frequency, or the phrase at another time, scores near 0).
const SPEECH_MIN: f64 = 0.75;

#[test]
fn speech_both_ways_pcmu() {
    speech_both_ways(PCMU);
}

#[test]
fn speech_both_ways_g722() {
    speech_both_ways(G722);
}

#[test]
fn speech_both_ways_opus() {
    speech_both_ways(OPUS);
}
