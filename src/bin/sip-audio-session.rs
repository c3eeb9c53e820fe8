//! sip-audio-session: one audio call, placed or answered, then exit.
//!
//!   sip-audio-session [OPTIONS] [URI]
//!
//! With URI it calls URI; without, it waits for one incoming call (answered
//! at once with --auto-answer, else by typing `a`; `r` rejects it).
//!
//! Options:
//!   --config-dir DIR     settings in DIR/config.json (default: the user's
//!                        configuration directory)
//!   --account ID         call as ID (an account of the configuration) or
//!                        `bonjour` (default: the default account)
//!   --sip-port N         listen for SIP on port N (UDP and TCP)
//!   --transport T        udp, tcp or tls for the listening list
//!   --input FILE.wav     send the file's audio (looped); also a device name
//!                        (null, tone:<Hz>, wav:<path>, system,
//!                        system:<name>)
//!   --output FILE.wav    write what the peer sends to FILE.wav (or a device)
//!   --record FILE.wav    record both sides of the call to FILE.wav
//!   --codecs LIST        audio codecs in order, e.g. opus,G722,PCMU
//!   --srtp POLICY        disabled, optional or mandatory (the account's
//!                        rtp.srtp_encryption for this run)
//!   --auto-answer        answer an incoming call at once
//!   --duration SECONDS   hang up that long after the call starts
//!   --json               every notification as one JSON object per line
//!   --list-devices       print the system's audio devices and exit
//!
//! Lines on stdin: DTMF digits (0-9, *, #, A-D) are sent as DTMF; `a`
//! answers, `r` rejects, `h` toggles hold, `s` prints statistics, `q` hangs
//! up. Ctrl-C or SIGTERM hangs up cleanly before exiting. The exit status
//! is 0 when a call took place, 1 when none did.

#[path = "common/tool.rs"]
mod tool;

use std::io::BufRead;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use sipsimple::{
    Account, MediaStreamRegistry, NotificationCenter, SIPApplication, Session, SessionState,
};

struct Options {
    config_dir: Option<String>,
    account: Option<String>,
    sip_port: Option<u16>,
    transport: Option<String>,
    input: Option<String>,
    output: Option<String>,
    record: Option<String>,
    codecs: Option<Vec<String>>,
    srtp: Option<String>,
    auto_answer: bool,
    duration: Option<f64>,
    json: bool,
    list_devices: bool,
    target: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: sip-audio-session [--config-dir DIR] [--account ID|bonjour] [--sip-port N] \
         [--transport udp|tcp|tls] [--input FILE.wav] [--output FILE.wav] [--record FILE.wav] \
         [--codecs LIST] [--srtp disabled|optional|mandatory] [--auto-answer] \
         [--duration SECONDS] [--json] [--list-devices] [URI]"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Options {
        config_dir: None,
        account: None,
        sip_port: None,
        transport: None,
        input: None,
        output: None,
        record: None,
        codecs: None,
        srtp: None,
        auto_answer: false,
        duration: None,
        json: false,
        list_devices: false,
        target: None,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("config-dir") => o.config_dir = Some(p.value()?.string()?),
            Long("account") => o.account = Some(p.value()?.string()?),
            Long("sip-port") => o.sip_port = Some(p.value()?.parse()?),
            Long("transport") => o.transport = Some(p.value()?.string()?.to_ascii_lowercase()),
            Long("input") => o.input = Some(p.value()?.string()?),
            Long("output") => o.output = Some(p.value()?.string()?),
            Long("record") => o.record = Some(p.value()?.string()?),
            Long("codecs") => {
                o.codecs = Some(
                    p.value()?
                        .string()?
                        .split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty())
                        .collect(),
                )
            }
            Long("srtp") => o.srtp = Some(p.value()?.string()?),
            Long("auto-answer") => o.auto_answer = true,
            Long("duration") => o.duration = Some(p.value()?.parse()?),
            Long("json") => o.json = true,
            Long("list-devices") => o.list_devices = true,
            Long("help") | Short('h') => usage(),
            Value(v) if o.target.is_none() => o.target = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(o)
}

/// A file name is a WAV device; anything else is a device name already.
fn device(name: &str) -> String {
    let known = ["null", "system"].contains(&name)
        || ["tone:", "wav:", "system:"]
            .iter()
            .any(|p| name.starts_with(p));
    if known {
        name.to_string()
    } else {
        format!("wav:{name}")
    }
}

/// What the main thread waits for.
enum Event {
    Started(Session),
    Ended { ok: bool, reason: String },
    Signal,
    HangUp,
}

/// Prints the tool's messages to stdout (stderr with --json, where stdout
/// carries the notifications).
#[derive(Clone)]
struct Out {
    json: bool,
}

impl Out {
    fn say(&self, msg: &str) {
        if self.json {
            eprintln!("{msg}");
        } else {
            tool::print_line(msg);
        }
    }
}

fn audio_info(s: &Session) -> Option<Value> {
    let info = s.info_json();
    info["streams"]
        .as_array()?
        .iter()
        .find(|st| st["type"] == "audio")
        .map(|st| st["info"].clone())
}

/// `codec PCMU at 8000 Hz, SRTP AES_CM_128_HMAC_SHA1_80, RTP 127.0.0.1:4000 <-> 127.0.0.1:4002`
fn describe(info: &Value) -> String {
    let srtp = match info["srtp_profile"].as_str() {
        Some(p) if info["srtp_active"] == true => format!("SRTP {p}"),
        _ => "SRTP off".to_string(),
    };
    format!(
        "codec {} at {} Hz, {srtp}, RTP {} <-> {}",
        info["codec"].as_str().unwrap_or("?"),
        info["sample_rate"],
        info["local_rtp_address"].as_str().unwrap_or("?"),
        info["remote_rtp_address_received"]
            .as_str()
            .or(info["remote_rtp_address_sdp"].as_str())
            .unwrap_or("?"),
    )
}

/// `statistics: sent 250 packets, received 249, lost 1 (0.4%), jitter 0.6 ms, RTT 0.8 ms, ...`
fn statistics(info: &Value) -> String {
    let s = &info["statistics"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let received = n("packets_received");
    let lost = n("packets_lost");
    let share = if received + lost == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / (received + lost) as f64
    };
    format!(
        "statistics: sent {} packets, received {received}, lost {lost} ({share:.1}%), \
         jitter {:.1} ms, RTT {}, jitter buffer {} ms, concealed {} frames, \
         peer lost {}% of ours",
        n("packets_sent"),
        s["jitter_ms"].as_f64().unwrap_or(0.0),
        s["rtt_ms"]
            .as_f64()
            .map_or("unknown".to_string(), |r| format!("{r:.1} ms")),
        n("jitter_buffer_ms"),
        n("concealed_frames"),
        s["remote_fraction_lost"]
            .as_f64()
            .map_or("?".to_string(), |f| format!("{f:.1}")),
    )
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sip-audio-session: {e}");
            usage();
        }
    };
    if o.list_devices {
        for d in sipsimple::driver::audio_device::system_devices() {
            let mut what = Vec::new();
            if d.input {
                what.push(if d.default_input {
                    "input (default)"
                } else {
                    "input"
                });
            }
            if d.output {
                what.push(if d.default_output {
                    "output (default)"
                } else {
                    "output"
                });
            }
            println!("system:{}  {}", d.name, what.join(", "));
        }
        return;
    }
    std::process::exit(match run(o) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("sip-audio-session: {e}");
            1
        }
    })
}

/// One call; Ok(true) when it took place.
fn run(o: Options) -> Result<bool, String> {
    let out = Out { json: o.json };
    let mut overrides: Vec<(&str, Value)> = Vec::new();
    if let Some(p) = o.sip_port {
        overrides.push(("sip.udp_port", json!(p)));
        overrides.push(("sip.tcp_port", json!(p)));
    }
    if let Some(t) = &o.transport {
        overrides.push(("sip.transport_list", json!([t])));
    }
    if let Some(d) = &o.input {
        overrides.push(("audio.input_device", json!(device(d))));
    }
    if let Some(d) = &o.output {
        overrides.push(("audio.output_device", json!(device(d))));
    }
    let config_dir = o
        .config_dir
        .clone()
        .unwrap_or_else(|| tool::default_config_dir().display().to_string());
    let (storage, account_id) =
        tool::run_settings(Some(&config_dir), o.account.as_deref(), &overrides)?;
    let app = SIPApplication::new();
    let printer = out.clone();
    let token = NotificationCenter::default().add_observer(None, None, move |n| {
        if printer.json && n.name != "SIPEngineSIPTrace" {
            tool::print_line(&tool::json_line(n));
        }
    });
    let result = app
        .start(storage)
        .map_err(|e| e.to_string())
        .and_then(|()| call(&app, &o, account_id.as_deref(), &out));
    app.stop();
    NotificationCenter::default().remove_observer(token);
    result
}

fn call(
    app: &SIPApplication,
    o: &Options,
    account_id: Option<&str>,
    out: &Out,
) -> Result<bool, String> {
    let manager = app.session_manager().map_err(|e| e.to_string())?;
    let account = match account_id {
        Some(id) => app
            .account_manager()
            .and_then(|m| m.get_account(id))
            .map_err(|e| e.to_string())?,
        // The manager's own Bonjour account, whose settings can change.
        None => app
            .account_manager()
            .and_then(|m| m.get_account(sipsimple::api::account::BONJOUR_ID))
            .or_else(|_| Account::bonjour(None))
            .map_err(|e| e.to_string())?,
    };
    // This run's media policy, in memory only.
    if let Some(p) = &o.srtp {
        account
            .set("rtp.srtp_encryption", json!(p))
            .map_err(|e| e.to_string())?;
    }
    if let Some(c) = &o.codecs {
        account
            .set("rtp.audio_codec_list", json!(c))
            .map_err(|e| e.to_string())?;
    }
    manager.set_default_account(Some(account.clone()));
    for t in [
        sipsimple::proto::sip::transaction::TransportKind::Udp,
        sipsimple::proto::sip::transaction::TransportKind::Tcp,
        sipsimple::proto::sip::transaction::TransportKind::Tls,
    ] {
        if let Some(a) = app.sip_local_address(t) {
            out.say(&format!("listening on {} port {}", t.as_str(), a.port()));
        }
    }
    let (tx, rx) = mpsc::channel::<Event>();
    // The one call of this run; later incoming ones are refused as busy.
    let current: Arc<Mutex<Option<Session>>> = Arc::default();
    let pending: Arc<Mutex<Option<Session>>> = Arc::default();
    let (m2, c2, p2, tx2, out2) = (
        manager.clone(),
        current.clone(),
        pending.clone(),
        tx.clone(),
        out.clone(),
    );
    let auto = o.auto_answer;
    let observer = NotificationCenter::default().add_observer(None, None, move |n| {
        // The call's own notifications (an ended session may have left the
        // manager already).
        let cur = c2.lock().clone();
        let ours = cur.as_ref().map(|c| c.id()) == Some(n.sender.id);
        if n.name == "SIPSessionNewIncoming" {
            let Some(s) = m2.session(n.sender.id) else {
                return;
            };
            if c2.lock().is_some() {
                let _ = s.reject(486, Some("Busy Here"));
                return;
            }
            *c2.lock() = Some(s.clone());
            let from = s.remote_identity().unwrap_or_default();
            let audio: Vec<_> = s
                .proposed_streams()
                .into_iter()
                .filter(|st| st.stream_type() == "audio")
                .collect();
            if audio.is_empty() {
                let _ = s.reject(488, Some("Not Acceptable Here"));
                return;
            }
            if auto {
                out2.say(&format!("answering {from}"));
                let _ = s.accept(audio);
            } else {
                out2.say(&format!(
                    "incoming call from {from}: `a` answers, `r` rejects"
                ));
                *p2.lock() = Some(s.clone());
            }
            return;
        }
        let Some(s) = cur.filter(|_| ours) else {
            return;
        };
        match n.name.as_str() {
            "SIPSessionDidStart" => {
                let _ = tx2.send(Event::Started(s.clone()));
            }
            "SIPSessionGotDTMF" => {
                out2.say(&format!(
                    "got DTMF {}",
                    n.data.get_str("digit").unwrap_or("?")
                ));
            }
            "SIPSessionDidChangeHoldState" => {
                let held = n.data.get_bool("on_hold").unwrap_or(false);
                let by = n.data.get_str("originator").unwrap_or("?");
                out2.say(&format!(
                    "{} by {by}",
                    if held { "on hold" } else { "off hold" }
                ));
            }
            "SIPSessionDidEnd" => {
                let by = n.data.get_str("originator").unwrap_or("?");
                let _ = tx2.send(Event::Ended {
                    ok: true,
                    reason: format!("call ended by {by}"),
                });
            }
            "SIPSessionDidFail" => {
                let _ = tx2.send(Event::Ended {
                    ok: false,
                    reason: format!(
                        "call failed: {} {}",
                        n.data.get_i64("code").unwrap_or(0),
                        n.data.get_str("reason").unwrap_or("")
                    ),
                });
            }
            _ => {}
        }
    });
    let tx_sig = tx.clone();
    let signals = tool::on_signal(move |_| {
        let _ = tx_sig.send(Event::Signal);
    })?;
    if let Some(uri) = &o.target {
        let s = manager.new_session(&account);
        *current.lock() = Some(s.clone());
        let audio = MediaStreamRegistry::default()
            .create("audio")
            .map_err(|e| e.to_string())?;
        s.connect(uri, &[], vec![audio])
            .map_err(|e| e.to_string())?;
        out.say(&format!("calling {uri}"));
    } else {
        out.say("waiting for a call");
    }
    // Keyboard: DTMF and call control.
    let (c3, p3, tx3, out3) = (current.clone(), pending.clone(), tx.clone(), out.clone());
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            let s = c3.lock().clone();
            let r = match (line, s) {
                ("", _) => Ok(()),
                ("q", _) => {
                    let _ = tx3.send(Event::HangUp);
                    Ok(())
                }
                ("a", _) => match p3.lock().take() {
                    Some(s) => {
                        let audio: Vec<_> = s
                            .proposed_streams()
                            .into_iter()
                            .filter(|st| st.stream_type() == "audio")
                            .collect();
                        s.accept(audio).map_err(|e| e.to_string())
                    }
                    None => Err("no incoming call to answer".to_string()),
                },
                ("r", _) => match p3.lock().take() {
                    Some(s) => s.reject(603, Some("Decline")).map_err(|e| e.to_string()),
                    None => Err("no incoming call to reject".to_string()),
                },
                (_, None) => Err("no call".to_string()),
                ("h", Some(s)) => if s.info_json()["on_hold_by_local"] == true {
                    s.unhold()
                } else {
                    s.hold()
                }
                .map_err(|e| e.to_string()),
                ("s", Some(s)) => {
                    match audio_info(&s) {
                        Some(i) => out3.say(&statistics(&i)),
                        None => out3.say("no audio yet"),
                    }
                    Ok(())
                }
                (digits, Some(s)) => {
                    // Digits typed ahead wait for the call to be up.
                    while matches!(
                        s.state(),
                        SessionState::Null
                            | SessionState::Connecting
                            | SessionState::Incoming
                            | SessionState::Accepting
                    ) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    s.send_dtmf(digits).map_err(|e| e.to_string())
                }
            };
            if let Err(e) = r {
                out3.say(&format!("error: {e}"));
            }
        }
    });
    let mut took_place = false;
    let mut last_info: Option<Value> = None;
    let mut hangup_at: Option<Instant> = None;
    let mut ending = false;
    loop {
        let ev = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => Some(ev),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let session = current.lock().clone();
        if let Some(s) = &session {
            if let Some(i) = audio_info(s) {
                last_info = Some(i);
            }
        }
        let hang_up = |s: &Option<Session>, ending: &mut bool| {
            if let Some(s) = s {
                if !*ending && s.state() != SessionState::Terminated {
                    *ending = true;
                    if let Err(e) = s.end() {
                        eprintln!("sip-audio-session: cannot hang up: {e}");
                        return false;
                    }
                    return true;
                }
            }
            false
        };
        match ev {
            Some(Event::Started(s)) => {
                took_place = true;
                let info = audio_info(&s).unwrap_or(Value::Null);
                out.say(&format!(
                    "call established with {}: {}",
                    s.remote_identity().unwrap_or_default(),
                    describe(&info)
                ));
                if let Some(r) = &o.record {
                    match s.start_recording_audio(Some(r)) {
                        Ok(f) => out.say(&format!("recording to {f}")),
                        Err(e) => out.say(&format!("error: cannot record: {e}")),
                    }
                }
                hangup_at = o
                    .duration
                    .map(|d| Instant::now() + Duration::from_secs_f64(d.max(0.0)));
            }
            Some(Event::Ended { ok, reason }) => {
                if let Some(i) = &last_info {
                    out.say(&statistics(i));
                }
                out.say(&reason);
                took_place &= ok;
                break;
            }
            Some(Event::Signal) | Some(Event::HangUp) => {
                out.say("hanging up");
                if !hang_up(&session, &mut ending) {
                    break;
                }
            }
            None => {
                if hangup_at.is_some_and(|t| Instant::now() >= t) {
                    hangup_at = None;
                    hang_up(&session, &mut ending);
                }
            }
        }
    }
    signals.close();
    NotificationCenter::default().remove_observer(observer);
    manager.end_all(Duration::from_secs(5));
    Ok(took_place)
}
