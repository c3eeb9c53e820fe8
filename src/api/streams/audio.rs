//! AudioStream (type `audio`): RTP over UDP with Opus (48 kHz), G.722 (16
//! kHz) and G.711 (PCMU, PCMA, 8 kHz) in 20 ms packets, the audio devices
//! running at the negotiated codec's rate; symmetric RTP, hold without
//! sending, statistics, and SRTP keyed by SDES (RFC 4568:
//! AES_CM_128_HMAC_SHA1_80 and _32).
//!
//! Settings: `audio.input_device` and `audio.output_device` (see
//! `driver::audio_device`: `null`, `tone:<Hz>`, `wav:<path>`, `system`,
//! `system:<id>`; a system device that cannot run, or stops, gives way to
//! the null device with AudioStreamDeviceDidFail: `direction`, `device`,
//! `reason`),
//! `rtp.audio_codec_list` (names in order of preference, default
//! `["opus", "G722", "PCMU", "PCMA"]`; the account's own list wins),
//! `rtp.port_range` (`[min, max]`, default any); the account's
//! `rtp.srtp_encryption`:
//!
//! - `disabled`: RTP/AVP, no a=crypto; an RTP/SAVP offer is refused;
//! - `optional` (default): offers RTP/AVP with a=crypto (best effort), so
//!   peers that know SDES encrypt and the rest still talk; answers with
//!   SRTP when the offer has a usable a=crypto;
//! - `mandatory`: offers RTP/SAVP; an offer or answer without a usable
//!   a=crypto fails the stream.
//!
//! Packets that fail SRTP authentication or replay checks are dropped and
//! counted (`srtp_auth_failures`, `srtp_replays`).
//!
//! DTMF as RTP telephone events (RFC 4733, `telephone-event/8000` offered
//! as payload type 101): [`AudioStream::send_dtmf`] sends 100 ms events
//! (audio pauses meanwhile); each received event posts AudioStreamGotDTMF
//! from the stream and SIPSessionGotDTMF from the session, `digit` in the
//! data.
//!
//! Recording: [`AudioStream::start_recording`] writes the call to a
//! 2-channel WAV file at 8 kHz (channel 1: what we send, channel 2: what
//! we hear), nothing while on hold, with AudioStream{Will,Did}StartRecordingAudio
//! and {Will,Did}StopRecordingAudio (`file_name`), and the same as
//! SIPSession... from the session. No packet within `audio.no_audio_timeout`
//! seconds of the start (default 5; 0: never) posts SIPSessionGotNoAudio.
//!
//! Received audio goes through an adaptive jitter buffer
//! (`proto::rtp::jitter`, 20 to 200 ms) played on the stream's 20 ms
//! clock; lost frames are concealed by the codec (Opus: recovered from the
//! next packet's in-band FEC when the peer sends it, else libopus' PLC;
//! G.711/G.722: a fading repeat), then silence. Packets of payload types
//! not negotiated, from a second SSRC while the first still sends, late or
//! duplicated are dropped and counted in the statistics; a new SSRC takes
//! over after the old one was quiet for a second. `rtp.rx_drop_percent`
//! (0 to 100, default 0) drops that share of received packets before
//! anything looks at them, to hear how a call copes with loss.
//!
//! RTCP (RFC 3550) on the next port (or the peer's a=rtcp), SRTCP with
//! SRTP: a compound SR (RR while we send nothing) with a report block
//! about the source we hear and our CNAME every `rtp.rtcp_interval`
//! seconds (default 5, randomized by 0.5 to 1.5, the first after half);
//! the peer's reports give `rtt_ms` and its view of our stream
//! (`remote_fraction_lost`, `remote_packets_lost`, `remote_jitter_ms`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use crate::api::engine::{number_setting, setting};
use crate::api::error::{Error, Result};
use crate::api::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use crate::api::stream::{MediaStream, MediaStreamFactory, StreamContext, StreamFuture};
use crate::driver::audio_device::{
    open_sink, open_source, AudioSink, AudioSource, Discard, Silence, WavSink,
};
use crate::driver::ids::random_u64;
use crate::proto::codec::{AudioCodec, CodecKind, PTIME_MS};
use crate::proto::rtp::dtmf::{self, DtmfReceiver, DtmfSender};
use crate::proto::rtp::jitter::{JitterBuffer, Playout};
use crate::proto::rtp::rtcp::{self, ReportBlock, RtcpPacket, SenderInfo};
use crate::proto::rtp::srtp::{CryptoAttribute, MasterKey, SrtpContext, SrtpError, SrtpProfile};
use crate::proto::rtp::{ReceiveStats, RtpHeader, RtpPacket};
use crate::proto::sdp::{Attribute, MediaDescription, SessionDescription};
use crate::proto::ua::splitmix;

pub const TYPE: &str = "audio";
pub const GOT_DTMF: &str = "AudioStreamGotDTMF";
pub const SESSION_GOT_DTMF: &str = "SIPSessionGotDTMF";
pub const SESSION_GOT_NO_AUDIO: &str = "SIPSessionGotNoAudio";
/// A system audio device could not be opened, or stopped working: the
/// stream goes on with the null device.
pub const DEVICE_DID_FAIL: &str = "AudioStreamDeviceDidFail";

fn is_system_device(name: &str) -> bool {
    name == "system" || name.starts_with("system:")
}

fn device_failed(stream: &Sender, direction: &str, device: &str, reason: &str) {
    tracing::warn!(target: "sipsimple::audio", "{direction} device {device} failed ({reason}); using the null device");
    NotificationCenter::default().post_notification(
        DEVICE_DID_FAIL,
        stream,
        NotificationData::new()
            .with("direction", direction)
            .with("device", device)
            .with("reason", reason),
    );
}

/// The input device `name`; a system device that cannot run gives way to
/// silence (said with AudioStreamDeviceDidFail), other names must open.
fn open_input(name: &str, rate: u32, stream: &Sender) -> Result<Box<dyn AudioSource>> {
    match open_source(name, rate) {
        Ok(s) => Ok(s),
        Err(e) if is_system_device(name) => {
            device_failed(stream, "input", name, &e.to_string());
            Ok(Box::new(Silence))
        }
        Err(e) => Err(Error::InvalidArgument(e.to_string())),
    }
}

/// The output device `name`, the same way.
fn open_output(name: &str, rate: u32, stream: &Sender) -> Result<Box<dyn AudioSink>> {
    match open_sink(name, rate) {
        Ok(s) => Ok(s),
        Err(e) if is_system_device(name) => {
            device_failed(stream, "output", name, &e.to_string());
            Ok(Box::new(Discard))
        }
        Err(e) => Err(Error::InvalidArgument(e.to_string())),
    }
}
const RECORDING: [&str; 4] = [
    "WillStartRecordingAudio",
    "DidStartRecordingAudio",
    "WillStopRecordingAudio",
    "DidStopRecordingAudio",
];
/// How long each DTMF digit lasts.
const DTMF_MS: u32 = 100;
/// Codecs in order of preference unless the settings say otherwise.
const DEFAULT_CODECS: [CodecKind; 4] = [
    CodecKind::Opus,
    CodecKind::G722,
    CodecKind::Pcmu,
    CodecKind::Pcma,
];

/// The codec a payload type of `m` stands for.
fn codec_of(m: &MediaDescription, fmt: &str) -> Option<CodecKind> {
    let by_map = m
        .rtpmaps()
        .into_iter()
        .find(|r| r.payload_type.to_string() == fmt);
    match by_map {
        Some(r) => CodecKind::parse(&r.encoding).filter(|k| k.clock_rate() == r.clock_rate),
        // Static payload types need no rtpmap (RFC 3551).
        None => match fmt {
            "0" => Some(CodecKind::Pcmu),
            "8" => Some(CodecKind::Pcma),
            "9" => Some(CodecKind::G722),
            _ => None,
        },
    }
}

/// The first format of `m` (its sender's preference) we run and want,
/// with its payload type.
fn first_common(m: &MediaDescription, prefs: &[CodecKind]) -> Option<(u8, CodecKind)> {
    m.formats.iter().find_map(|f| {
        let kind = codec_of(m, f)?;
        let pt: u8 = f.parse().ok().filter(|p| *p < 128)?;
        prefs.contains(&kind).then_some((pt, kind))
    })
}

/// Whether the peer asks for Opus in-band FEC on payload type `pt`.
fn wants_fec(m: &MediaDescription, pt: u8) -> bool {
    let prefix = format!("{pt} ");
    m.attribute_values("fmtp")
        .filter_map(|v| v.strip_prefix(&prefix))
        .any(|params| {
            params
                .split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("useinbandfec=1"))
        })
}

fn codec_prefs(settings: &serde_json::Map<String, Value>) -> Result<Vec<CodecKind>> {
    match setting(settings, "rtp.audio_codec_list") {
        None | Some(Value::Null) => Ok(DEFAULT_CODECS.to_vec()),
        Some(Value::Array(a)) => {
            let v: Vec<CodecKind> = a
                .iter()
                .filter_map(|c| CodecKind::parse(c.as_str()?))
                .collect();
            if v.is_empty() {
                Err(Error::InvalidArgument(
                    "rtp.audio_codec_list names no codec this build has (opus, G722, PCMU, PCMA)"
                        .into(),
                ))
            } else {
                Ok(v)
            }
        }
        Some(v) => Err(Error::InvalidArgument(format!(
            "rtp.audio_codec_list must be a list, not {v}"
        ))),
    }
}

fn device(settings: &serde_json::Map<String, Value>, name: &str) -> String {
    setting(settings, name)
        .and_then(Value::as_str)
        .unwrap_or("null")
        .to_string()
}

/// Counters of one stream.
#[derive(Debug, Clone, Default)]
pub struct AudioStatistics {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub packets_lost: u64,
    pub jitter_ms: f64,
    pub malformed: u64,
    /// SRTP packets whose authentication tag did not check.
    pub srtp_auth_failures: u64,
    /// SRTP packets seen before (or too old to tell).
    pub srtp_replays: u64,
    /// Packets of a payload type not negotiated.
    pub unknown_payload_type: u64,
    /// Packets from a second source while the first one still talks.
    pub unexpected_ssrc: u64,
    /// The jitter buffer's target delay and what it holds now.
    pub jitter_buffer_ms: u32,
    pub jitter_buffer_depth_ms: u32,
    /// How long played packets waited in it, on average.
    pub jitter_buffer_delay_ms: f64,
    /// Packets that arrived after their time was played.
    pub late_packets: u64,
    /// Frames made up for lost packets (codec concealment or, for Opus,
    /// recovered from the next packet's FEC).
    pub concealed_frames: u64,
    pub fec_recovered: u64,
    /// Ticks with nothing to play while the call was up.
    pub underruns: u64,
    /// Frames dropped to bring the delay down (clock drift, spikes gone).
    pub discarded_frames: u64,
    pub duplicates: u64,
    /// Round-trip time from the peer's RTCP reports (RFC 3550 6.4.1).
    pub rtt_ms: Option<f64>,
    /// What the peer's reports say of what we send: the share lost in the
    /// last interval (percent), lost in all, and jitter.
    pub remote_fraction_lost: f64,
    pub remote_packets_lost: i64,
    pub remote_jitter_ms: f64,
    pub rtcp_sent: u64,
    pub rtcp_received: u64,
    /// RTCP datagrams that did not parse (or unprotect).
    pub rtcp_malformed: u64,
}

/// The account's `rtp.srtp_encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum SrtpPolicy {
    Disabled,
    #[default]
    Optional,
    Mandatory,
}

fn srtp_policy(ctx: &StreamContext) -> Result<SrtpPolicy> {
    let v = ctx
        .account
        .as_ref()
        .map(|a| a.get("rtp.srtp_encryption"))
        .transpose()?
        .unwrap_or(Value::Null);
    match v.as_str() {
        None | Some("optional") => Ok(SrtpPolicy::Optional),
        Some("disabled") => Ok(SrtpPolicy::Disabled),
        Some("mandatory") => Ok(SrtpPolicy::Mandatory),
        Some(other) => Err(Error::InvalidArgument(format!(
            "rtp.srtp_encryption {other:?} is not disabled, optional or mandatory"
        ))),
    }
}

/// The a=crypto lines of a media section we can run, in order.
fn usable_crypto(m: &MediaDescription) -> Vec<CryptoAttribute> {
    m.attribute_values("crypto")
        .filter_map(CryptoAttribute::parse)
        .collect()
}

/// Both directions' SRTP: ours to send, the peer's to receive.
struct Srtp {
    profile: SrtpProfile,
    /// The peer's key, to keep the receive state across re-offers of the
    /// same key.
    remote_key: MasterKey,
    tx: SrtpContext,
    rx: SrtpContext,
}

#[derive(Default)]
struct State {
    rtp: Option<Arc<UdpSocket>>,
    rtcp: Option<Arc<UdpSocket>>,
    local: Option<SocketAddr>,
    prefs: Vec<CodecKind>,
    /// The negotiated codec, its payload type, and whether the peer asked
    /// for Opus in-band FEC.
    codec: Option<(u8, CodecKind, bool)>,
    remote_sdp_addr: Option<SocketAddr>,
    input: String,
    output: String,
    task: Option<tokio::task::JoinHandle<()>>,
    policy: SrtpPolicy,
    /// Our SRTP master key (none when SRTP is disabled).
    key: Option<MasterKey>,
    /// The session the stream belongs to (for SIPSessionGotDTMF).
    session: Option<ObjectId>,
    no_audio_after: Option<Duration>,
    rx_drop_percent: u32,
    rtcp_interval: Duration,
}

/// A call being recorded: the file, and what we heard since the last
/// frame we sent.
struct Recorder {
    sink: WavSink,
    heard: std::collections::VecDeque<i16>,
    rate: u32,
}

impl Recorder {
    /// One frame: ours, and as much of what we heard (silence if nothing).
    fn frame(&mut self, ours: &[i16]) {
        let mut both = Vec::with_capacity(ours.len() * 2);
        for s in ours {
            both.push(*s);
            both.push(self.heard.pop_front().unwrap_or(0));
        }
        self.sink.write(&both);
    }

    fn heard(&mut self, pcm: &[i16]) {
        self.heard.extend(pcm);
        // Bounded: a peer sending faster than we play is not recorded ahead.
        let excess = self.heard.len().saturating_sub(self.rate as usize / 5);
        self.heard.drain(..excess);
    }
}

/// The telephone-event payload type of a media section at `clock`.
fn telephone_event(m: &MediaDescription, clock: u32) -> Option<u8> {
    m.rtpmaps().into_iter().find_map(|r| {
        (r.encoding.eq_ignore_ascii_case(dtmf::ENCODING) && r.clock_rate == clock)
            .then_some(r.payload_type)
    })
}

/// The telephone-event payload types we offer, by clock.
const DTMF_OFFER: [(u8, u32); 2] = [(dtmf::DEFAULT_PAYLOAD_TYPE, 8000), (102, 48_000)];

/// The audio stream of a session.
pub struct AudioStream {
    state: Mutex<State>,
    /// Not sending: on hold, or the negotiated direction forbids it.
    muted: Arc<AtomicBool>,
    held: AtomicBool,
    stats: Arc<Mutex<(AudioStatistics, ReceiveStats)>>,
    remote_received: Arc<Mutex<Option<SocketAddr>>>,
    remote_target: Arc<Mutex<Option<SocketAddr>>>,
    srtp: Arc<Mutex<Option<Srtp>>>,
    id: ObjectId,
    dtmf: Arc<Mutex<DtmfSender>>,
    /// The peer's telephone-event payload type (None: no DTMF).
    dtmf_pt: Arc<Mutex<Option<u8>>>,
    recorder: Arc<Mutex<Option<Recorder>>>,
    /// Where RTCP goes: from the SDP, then where the peer's comes from.
    remote_rtcp: Arc<Mutex<Option<SocketAddr>>>,
    remote_rtcp_received: Arc<Mutex<Option<SocketAddr>>>,
}

impl AudioStream {
    pub fn new() -> AudioStream {
        AudioStream {
            remote_rtcp: Arc::default(),
            remote_rtcp_received: Arc::default(),
            id: ObjectId::new(),
            dtmf: Arc::new(Mutex::new(DtmfSender::new(DTMF_MS, 160, 8000))),
            dtmf_pt: Arc::default(),
            recorder: Arc::default(),
            state: Mutex::new(State::default()),
            muted: Arc::new(AtomicBool::new(false)),
            held: AtomicBool::new(false),
            stats: Arc::default(),
            remote_received: Arc::default(),
            remote_target: Arc::default(),
            srtp: Arc::default(),
        }
    }

    /// Send DTMF `digits` (0-9, *, #, A-D) as RFC 4733 events, one after
    /// the other.
    pub fn send_dtmf(&self, digits: &str) -> Result<()> {
        if self.state.lock().task.is_none() {
            return Err(Error::InvalidState(
                "the audio stream has not started".into(),
            ));
        }
        if self.dtmf_pt.lock().is_none() {
            return Err(Error::InvalidState(
                "the peer did not offer or accept telephone-event".into(),
            ));
        }
        if !self.dtmf.lock().push(digits) {
            return Err(Error::InvalidArgument(format!(
                "{digits:?} is not a string of DTMF digits (0-9, *, #, A-D)"
            )));
        }
        Ok(())
    }

    fn post_recording(&self, which: usize, file: &str) {
        let nc = NotificationCenter::default();
        let data = || NotificationData::new().with("file_name", file);
        let stream = Sender {
            id: self.id,
            kind: "MediaStream",
        };
        nc.post_notification(&format!("AudioStream{}", RECORDING[which]), &stream, data());
        if let Some(id) = self.state.lock().session {
            let session = Sender {
                id,
                kind: "Session",
            };
            nc.post_notification(&format!("SIPSession{}", RECORDING[which]), &session, data());
        }
    }

    /// Record the call to a 2-channel WAV file at `path` (an existing file
    /// is not overwritten: `name-2.wav` follows); returns the file used.
    pub fn start_recording(&self, path: &str) -> Result<String> {
        if self.state.lock().task.is_none() {
            return Err(Error::InvalidState(
                "the audio stream has not started".into(),
            ));
        }
        if self.recorder.lock().is_some() {
            return Err(Error::InvalidState(
                "the call is being recorded already".into(),
            ));
        }
        self.post_recording(0, path);
        let rate = self.sample_rate();
        let sink = WavSink::create_channels(path, rate, 2)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let file = sink.path().to_string();
        *self.recorder.lock() = Some(Recorder {
            sink,
            heard: std::collections::VecDeque::new(),
            rate,
        });
        self.post_recording(1, &file);
        Ok(file)
    }

    /// Stop recording; the file is complete when this returns.
    pub fn stop_recording(&self) -> Result<()> {
        let Some(mut r) = self.recorder.lock().take() else {
            return Err(Error::InvalidState("the call is not being recorded".into()));
        };
        let file = r.sink.path().to_string();
        self.post_recording(2, &file);
        r.sink.finish();
        self.post_recording(3, &file);
        Ok(())
    }

    /// The file being recorded to.
    pub fn recording_file_name(&self) -> Option<String> {
        self.recorder
            .lock()
            .as_ref()
            .map(|r| r.sink.path().to_string())
    }

    /// Whether media is encrypted (SRTP negotiated).
    pub fn srtp_active(&self) -> bool {
        self.srtp.lock().is_some()
    }

    /// The SRTP crypto suite in use.
    pub fn srtp_profile(&self) -> Option<&'static str> {
        self.srtp.lock().as_ref().map(|s| s.profile.name())
    }

    pub fn codec(&self) -> Option<&'static str> {
        self.state.lock().codec.map(|(_, k, _)| k.name())
    }

    /// The sample rate of the negotiated codec's audio (8000 before one is).
    pub fn sample_rate(&self) -> u32 {
        self.state
            .lock()
            .codec
            .map(|(_, k, _)| k.sample_rate())
            .unwrap_or(8000)
    }

    fn clock_rate(&self) -> u32 {
        self.state
            .lock()
            .codec
            .map(|(_, k, _)| k.clock_rate())
            .unwrap_or(8000)
    }

    pub fn local_rtp_address(&self) -> Option<SocketAddr> {
        self.state.lock().local
    }

    /// Where the remote SDP said to send.
    pub fn remote_rtp_address_sdp(&self) -> Option<SocketAddr> {
        self.state.lock().remote_sdp_addr
    }

    /// Where media actually comes from (symmetric RTP latches onto it).
    pub fn remote_rtp_address_received(&self) -> Option<SocketAddr> {
        *self.remote_received.lock()
    }

    pub fn statistics(&self) -> AudioStatistics {
        let g = self.stats.lock();
        let mut s = g.0.clone();
        s.packets_received = g.1.packets;
        s.bytes_received = g.1.bytes;
        s.packets_lost = g.1.lost();
        drop(g);
        s.jitter_ms = self.stats.lock().1.jitter() as f64 * 1000.0 / self.clock_rate() as f64;
        s
    }

    fn apply(
        &self,
        local: &SessionDescription,
        remote: &SessionDescription,
        index: usize,
    ) -> Result<()> {
        let (Some(lm), Some(rm)) = (local.media.get(index), remote.media.get(index)) else {
            return Err(Error::InvalidArgument("no such media section".into()));
        };
        let mut st = self.state.lock();
        let (pt, kind) = first_common(rm, &st.prefs)
            .or_else(|| first_common(lm, &st.prefs))
            .ok_or_else(|| Error::InvalidArgument("no common audio codec".into()))?;
        let codec = (pt, kind, wants_fec(rm, pt));
        let ip: IpAddr = remote
            .media_connection(index)
            .and_then(|c| c.ip())
            .ok_or_else(|| Error::InvalidArgument("the remote SDP has no IP address".into()))?;
        let target = SocketAddr::new(ip, rm.port);
        self.negotiate_srtp(&st, lm, rm)?;
        // telephone-event at the codec's clock, else at 8000 as many peers
        // use it beside any codec (event durations then count in its own
        // clock).
        let dtmf = [kind.clock_rate(), 8000].into_iter().find_map(|clock| {
            let pt = telephone_event(rm, clock)?;
            telephone_event(lm, clock).map(|_| (pt, clock))
        });
        let dtmf_pt = dtmf.map(|(pt, _)| pt);
        if dtmf_pt != *self.dtmf_pt.lock() {
            let clock = dtmf.map_or(8000, |(_, c)| c);
            let frame = (clock * PTIME_MS / 1000) as u16;
            *self.dtmf.lock() = DtmfSender::new(DTMF_MS, frame, clock);
        }
        *self.dtmf_pt.lock() = dtmf_pt;
        st.codec = Some(codec);
        st.remote_sdp_addr = Some(target);
        // a=rtcp (RFC 3605) or the next port.
        let rtcp_port = rm
            .attribute_values("rtcp")
            .next()
            .and_then(|v| v.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(rm.port.saturating_add(1));
        if self.remote_rtcp_received.lock().is_none() {
            *self.remote_rtcp.lock() = Some(SocketAddr::new(ip, rtcp_port));
        }
        // Latched address wins once media arrived from elsewhere.
        if self.remote_received.lock().is_none() {
            *self.remote_target.lock() = Some(target);
        }
        let sending = local.media_direction(index).sends()
            && remote.media_direction(index).receives()
            && !ip.is_unspecified();
        self.muted.store(
            !sending || self.held.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

impl AudioStream {
    /// SRTP from our m= line and the peer's: the suite both named (by the
    /// answer's tag), our key to send, theirs to receive.
    fn negotiate_srtp(
        &self,
        st: &State,
        lm: &MediaDescription,
        rm: &MediaDescription,
    ) -> Result<()> {
        let ours = usable_crypto(lm);
        let theirs = usable_crypto(rm);
        let pair = ours.iter().find_map(|o| {
            theirs
                .iter()
                .find(|t| t.tag == o.tag && t.profile == o.profile)
                .map(|t| (o, t))
        });
        let (Some(key), Some((o, t))) = (st.key.as_ref(), pair) else {
            if st.policy == SrtpPolicy::Mandatory {
                return Err(Error::InvalidArgument(
                    "SRTP is mandatory and the peer gave no usable a=crypto".into(),
                ));
            }
            *self.srtp.lock() = None;
            return Ok(());
        };
        let mut g = self.srtp.lock();
        let same = g
            .as_ref()
            .is_some_and(|s| s.profile == o.profile && s.remote_key == t.key);
        if !same {
            *g = Some(Srtp {
                profile: o.profile,
                remote_key: t.key.clone(),
                tx: SrtpContext::new(o.profile, key),
                rx: SrtpContext::new(o.profile, &t.key),
            });
        }
        Ok(())
    }
}

impl Default for AudioStream {
    fn default() -> Self {
        Self::new()
    }
}

/// Bind an RTP socket on an even port and RTCP on the next one.
fn bind_pair(ip: IpAddr) -> std::io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
    let mut last = None;
    for _ in 0..64 {
        let rtp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        match std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
            Ok(rtcp) => return Ok((rtp, rtcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free even/odd port pair")))
}

impl MediaStream for AudioStream {
    fn stream_type(&self) -> &str {
        TYPE
    }

    fn object_id(&self) -> Option<ObjectId> {
        Some(self.id)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn hold_supported(&self) -> bool {
        true
    }

    fn initialize<'a>(&'a self, ctx: &'a StreamContext) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            // The account's own list wins over the global one.
            let account_list = ctx
                .account
                .as_ref()
                .map(|a| a.get("rtp.audio_codec_list"))
                .transpose()?
                .filter(|v| !v.is_null());
            let prefs = match account_list {
                Some(list) => {
                    let mut m = serde_json::Map::new();
                    m.insert("rtp.audio_codec_list".into(), list);
                    codec_prefs(&m)?
                }
                None => codec_prefs(&ctx.settings)?,
            };
            let policy = srtp_policy(ctx)?;
            let key = match policy {
                SrtpPolicy::Disabled => None,
                _ => Some(
                    MasterKey::random()
                        .map_err(|e| Error::Internal(format!("no random SRTP key: {e}")))?,
                ),
            };
            let input = device(&ctx.settings, "audio.input_device");
            let output = device(&ctx.settings, "audio.output_device");
            // Fail now, not mid-call, if a device cannot be opened (system
            // devices fall back to null instead).
            if !is_system_device(&input) {
                open_source(&input, 8000).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            }
            let (rtp, rtcp) =
                bind_pair(ctx.local_ip).map_err(|e| Error::io("cannot bind RTP ports", e))?;
            rtp.set_nonblocking(true)
                .map_err(|e| Error::io("RTP socket", e))?;
            rtcp.set_nonblocking(true)
                .map_err(|e| Error::io("RTCP socket", e))?;
            let local = rtp.local_addr().map_err(|e| Error::io("RTP socket", e))?;
            let rtp = UdpSocket::from_std(rtp).map_err(|e| Error::io("RTP socket", e))?;
            let rtcp = UdpSocket::from_std(rtcp).map_err(|e| Error::io("RTCP socket", e))?;
            let mut st = self.state.lock();
            st.rtp = Some(Arc::new(rtp));
            st.rtcp = Some(Arc::new(rtcp));
            st.local = Some(local);
            st.prefs = prefs;
            st.input = input;
            st.output = output;
            st.policy = policy;
            st.key = key;
            st.session = Some(ctx.session);
            let cfg = &ctx.settings;
            st.no_audio_after = match number_setting(cfg, "audio.no_audio_timeout", 0..=3600, 5)? {
                0 => None,
                n => Some(Duration::from_secs(n)),
            };
            st.rtcp_interval =
                Duration::from_secs(number_setting(cfg, "rtp.rtcp_interval", 1..=60, 5)?);
            st.rx_drop_percent = number_setting(cfg, "rtp.rx_drop_percent", 0..=100, 0)? as u32;
            Ok(())
        })
    }

    fn get_local_media(&self, remote: Option<&MediaDescription>) -> Result<MediaDescription> {
        let st = self.state.lock();
        let port = st.local.map(|a| a.port()).unwrap_or(0);
        let codecs: Vec<(u8, CodecKind)> = match remote {
            None => st.prefs.iter().map(|k| (k.payload_type(), *k)).collect(),
            Some(r) => vec![first_common(r, &st.prefs)
                .ok_or_else(|| Error::InvalidArgument("no common audio codec".into()))?],
        };
        // The crypto lines to put in, and the transport.
        let (proto, crypto): (&str, Vec<CryptoAttribute>) =
            match (remote, &st.key) {
                (None, None) => ("RTP/AVP", Vec::new()),
                (None, Some(key)) => (
                    if st.policy == SrtpPolicy::Mandatory {
                        "RTP/SAVP"
                    } else {
                        "RTP/AVP"
                    },
                    SrtpProfile::ALL
                        .iter()
                        .enumerate()
                        .map(|(i, p)| CryptoAttribute {
                            tag: i as u32 + 1,
                            profile: *p,
                            key: key.clone(),
                        })
                        .collect(),
                ),
                (Some(r), key) => {
                    let savp = r.proto.eq_ignore_ascii_case("RTP/SAVP");
                    let offered = usable_crypto(r);
                    match (key, offered.first()) {
                        (Some(key), Some(c)) => (
                            if savp { "RTP/SAVP" } else { "RTP/AVP" },
                            vec![CryptoAttribute {
                                tag: c.tag,
                                profile: c.profile,
                                key: key.clone(),
                            }],
                        ),
                        _ if savp => return Err(Error::InvalidArgument(
                            "the RTP/SAVP offer has no a=crypto we can run, or SRTP is disabled"
                                .into(),
                        )),
                        _ if st.policy == SrtpPolicy::Mandatory => {
                            return Err(Error::InvalidArgument(
                                "SRTP is mandatory and the offer has no usable a=crypto".into(),
                            ))
                        }
                        _ => ("RTP/AVP", Vec::new()),
                    }
                }
            };
        // DTMF: offered as 101 at 8000, and 102 at 48000 with Opus;
        // answered with the offer's payload type at the chosen codec's
        // clock, else at 8000.
        let dtmf: Vec<(u8, u32)> = match remote {
            // 8000 always (what most peers send DTMF at beside any codec),
            // 48000 too when Opus is offered.
            None => DTMF_OFFER
                .iter()
                .filter(|(_, clock)| {
                    *clock == 8000 || codecs.iter().any(|(_, k)| k.clock_rate() == *clock)
                })
                .copied()
                .collect(),
            Some(r) => {
                let clock = codecs.first().map(|(_, k)| k.clock_rate()).unwrap_or(8000);
                [clock, 8000]
                    .into_iter()
                    .find_map(|c| telephone_event(r, c).map(|pt| (pt, c)))
                    .into_iter()
                    .collect()
            }
        };
        let mut fmts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
        fmts.extend(dtmf.iter().map(|(pt, _)| pt.to_string()));
        let fmt_refs: Vec<&str> = fmts.iter().map(String::as_str).collect();
        let mut m = MediaDescription::new("audio", port, proto, &fmt_refs);
        for (pt, kind) in &codecs {
            m.push_attribute(Attribute::value(
                "rtpmap",
                format!("{pt} {}", kind.rtpmap()),
            ));
            if let Some(f) = kind.fmtp() {
                m.push_attribute(Attribute::value("fmtp", format!("{pt} {f}")));
            }
        }
        for (pt, clock) in &dtmf {
            m.push_attribute(Attribute::value(
                "rtpmap",
                format!("{pt} {}/{clock}", dtmf::ENCODING),
            ));
            m.push_attribute(Attribute::value(
                "fmtp",
                format!("{pt} {}", dtmf::FMTP_EVENTS),
            ));
        }
        m.push_attribute(Attribute::value("ptime", PTIME_MS.to_string()));
        m.push_attribute(Attribute::value("rtcp", (port + 1).to_string()));
        for c in crypto {
            m.push_attribute(Attribute::value("crypto", c.to_value()));
        }
        Ok(m)
    }

    fn start<'a>(
        &'a self,
        local_sdp: &'a SessionDescription,
        remote_sdp: &'a SessionDescription,
        index: usize,
    ) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            self.apply(local_sdp, remote_sdp, index)?;
            let mut st = self.state.lock();
            let (Some(sock), Some(rtcp), Some((pt, kind, fec))) =
                (st.rtp.clone(), st.rtcp.clone(), st.codec)
            else {
                return Err(Error::InvalidState(
                    "the audio stream was not initialized".into(),
                ));
            };
            let rate = kind.sample_rate();
            let codec = kind.open(fec).map_err(|e| Error::Internal(e.to_string()))?;
            let stream = Sender {
                id: self.id,
                kind: "MediaStream",
            };
            let source = open_input(&st.input, rate, &stream)?;
            let sink = open_output(&st.output, rate, &stream)?;
            let media = Media {
                sock,
                rtcp,
                rtcp_to: self.remote_rtcp.clone(),
                rtcp_from: self.remote_rtcp_received.clone(),
                last_sr: None,
                rtcp_interval: st.rtcp_interval,
                octets_sent: 0,
                sent_since_report: false,
                pt,
                codec,
                devices: Devices {
                    source,
                    sink,
                    input: st.input.clone(),
                    output: st.output.clone(),
                },
                muted: self.muted.clone(),
                stats: self.stats.clone(),
                received_from: self.remote_received.clone(),
                target: self.remote_target.clone(),
                srtp: self.srtp.clone(),
                dtmf: self.dtmf.clone(),
                dtmf_pt: self.dtmf_pt.clone(),
                dtmf_in: DtmfReceiver::default(),
                stream: Sender {
                    id: self.id,
                    kind: "MediaStream",
                },
                session: st.session.map(|id| Sender {
                    id,
                    kind: "Session",
                }),
                recorder: self.recorder.clone(),
                no_audio_after: st.no_audio_after,
                drop: (st.rx_drop_percent > 0).then(|| (st.rx_drop_percent, random_u64())),
                jitter: JitterBuffer::new(kind.clock_rate(), kind.frame_ticks(), 1, 10),
                playback: std::collections::VecDeque::new(),
                concealing: 0,
                source_ssrc: None,
            };
            st.task = Some(tokio::spawn(media.run()));
            Ok(())
        })
    }

    fn update(&self, local: &SessionDescription, remote: &SessionDescription, index: usize) {
        let _ = self.apply(local, remote, index);
    }

    fn hold(&self) {
        self.held.store(true, Ordering::Relaxed);
        self.muted.store(true, Ordering::Relaxed);
    }

    fn unhold(&self) {
        self.held.store(false, Ordering::Relaxed);
        self.muted.store(false, Ordering::Relaxed);
    }

    fn end(&self) {
        if self.recorder.lock().is_some() {
            let _ = self.stop_recording();
        }
        let mut st = self.state.lock();
        if let Some(t) = st.task.take() {
            t.abort();
        }
        st.rtp = None;
        st.rtcp = None;
    }

    fn info(&self) -> Value {
        let s = self.statistics();
        json!({
            "codec": self.codec(),
            "sample_rate": self.sample_rate(),
            "clock_rate": self.clock_rate(),
            "local_rtp_address": self.local_rtp_address().map(|a| a.to_string()),
            "remote_rtp_address_sdp": self.remote_rtp_address_sdp().map(|a| a.to_string()),
            "remote_rtp_address_received": self.remote_rtp_address_received().map(|a| a.to_string()),
            "srtp_active": self.srtp_active(),
            "dtmf_payload_type": *self.dtmf_pt.lock(),
            "recording_file_name": self.recording_file_name(),
            "srtp_profile": self.srtp_profile(),
            "on_hold": self.held.load(Ordering::Relaxed),
            "statistics": {
                "packets_sent": s.packets_sent,
                "bytes_sent": s.bytes_sent,
                "packets_received": s.packets_received,
                "bytes_received": s.bytes_received,
                "packets_lost": s.packets_lost,
                "jitter_ms": s.jitter_ms,
                "malformed": s.malformed,
                "srtp_auth_failures": s.srtp_auth_failures,
                "srtp_replays": s.srtp_replays,
                "unknown_payload_type": s.unknown_payload_type,
                "unexpected_ssrc": s.unexpected_ssrc,
                "jitter_buffer_ms": s.jitter_buffer_ms,
                "jitter_buffer_depth_ms": s.jitter_buffer_depth_ms,
                "jitter_buffer_delay_ms": s.jitter_buffer_delay_ms,
                "late_packets": s.late_packets,
                "concealed_frames": s.concealed_frames,
                "fec_recovered": s.fec_recovered,
                "underruns": s.underruns,
                "discarded_frames": s.discarded_frames,
                "duplicates": s.duplicates,
                "rtt_ms": s.rtt_ms,
                "remote_fraction_lost": s.remote_fraction_lost,
                "remote_packets_lost": s.remote_packets_lost,
                "remote_jitter_ms": s.remote_jitter_ms,
                "rtcp_sent": s.rtcp_sent,
                "rtcp_received": s.rtcp_received,
                "rtcp_malformed": s.rtcp_malformed,
            },
        })
    }
}

/// The running media of one stream: a 20 ms clock for sending, the socket
/// for receiving.
struct Media {
    sock: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    rtcp_to: Arc<Mutex<Option<SocketAddr>>>,
    rtcp_from: Arc<Mutex<Option<SocketAddr>>>,
    /// The middle of the NTP time of the peer's last SR, and when it came.
    last_sr: Option<(u32, Instant)>,
    rtcp_interval: Duration,
    /// Payload octets sent (for SR).
    octets_sent: u32,
    sent_since_report: bool,
    pt: u8,
    codec: Box<dyn AudioCodec>,
    devices: Devices,
    muted: Arc<AtomicBool>,
    stats: Arc<Mutex<(AudioStatistics, ReceiveStats)>>,
    received_from: Arc<Mutex<Option<SocketAddr>>>,
    target: Arc<Mutex<Option<SocketAddr>>>,
    srtp: Arc<Mutex<Option<Srtp>>>,
    dtmf: Arc<Mutex<DtmfSender>>,
    dtmf_pt: Arc<Mutex<Option<u8>>>,
    dtmf_in: DtmfReceiver,
    stream: Sender,
    session: Option<Sender>,
    recorder: Arc<Mutex<Option<Recorder>>>,
    no_audio_after: Option<Duration>,
    /// `rtp.rx_drop_percent` and the state of the generator choosing.
    drop: Option<(u32, u64)>,
    jitter: JitterBuffer,
    /// Decoded audio waiting for the output clock.
    playback: std::collections::VecDeque<i16>,
    /// Frames concealed in a row (after a few, silence).
    concealing: u32,
    /// The source we listen to and when it last sent.
    source_ssrc: Option<(u32, Instant)>,
}

/// An RTCP interval randomized by a factor of 0.5 to 1.5 (RFC 3550 6.2).
fn randomized(interval: Duration, rng: &mut u64) -> Duration {
    interval / 2 + interval.mul_f64((splitmix(rng) % 1000) as f64 / 1000.0)
}

/// Concealed frames in a row before the output goes silent.
const MAX_CONCEAL: u32 = 5;
/// How long a source must be quiet before another SSRC replaces it.
const SSRC_SWITCH: Duration = Duration::from_secs(1);

impl Media {
    /// Whether a packet from `ssrc` arriving `now` is from the source we
    /// listen to (latching onto a new one when the old fell silent).
    fn accept_ssrc(&mut self, ssrc: u32, now: Instant) -> bool {
        match self.source_ssrc {
            Some((s, last)) if s != ssrc && now.duration_since(last) < SSRC_SWITCH => {
                self.stats.lock().0.unexpected_ssrc += 1;
                false
            }
            Some((s, _)) if s == ssrc => {
                self.source_ssrc = Some((s, now));
                true
            }
            _ => {
                if self.source_ssrc.is_some() {
                    self.jitter.reset();
                }
                self.source_ssrc = Some((ssrc, now));
                true
            }
        }
    }

    /// Our compound RTCP packet: SR when we sent since the last report,
    /// else RR; a report block about the source we hear; our CNAME.
    fn rtcp_report(&mut self, ssrc: u32, ts: u32, cname: &str) -> Vec<u8> {
        let now = Instant::now();
        let reports: Vec<ReportBlock> = match self.source_ssrc {
            Some((src, _)) => {
                let (lsr, dlsr) = self
                    .last_sr
                    .map(|(m, at)| (m, rtcp::to_dlsr(now.duration_since(at))))
                    .unwrap_or((0, 0));
                vec![self.stats.lock().1.report_block(src, lsr, dlsr)]
            }
            None => Vec::new(),
        };
        let report = if self.sent_since_report {
            RtcpPacket::SenderReport {
                ssrc,
                info: SenderInfo {
                    ntp: rtcp::ntp_time(SystemTime::now()),
                    rtp_timestamp: ts,
                    packets: self.stats.lock().0.packets_sent as u32,
                    octets: self.octets_sent,
                },
                reports,
            }
        } else {
            RtcpPacket::ReceiverReport { ssrc, reports }
        };
        self.sent_since_report = false;
        let mut out = Vec::new();
        rtcp::write(&report, &mut out);
        rtcp::write(
            &RtcpPacket::SourceDescription(vec![(ssrc, Some(cname.to_string()))]),
            &mut out,
        );
        out
    }

    /// A datagram on the RTCP port: reports about what we send give the
    /// round-trip time and the peer's view of loss and jitter.
    fn on_rtcp(&mut self, data: &[u8], from: SocketAddr, ssrc: u32) {
        let clear = match self.srtp.lock().as_mut() {
            None => None,
            Some(s) => match s.rx.unprotect_rtcp(data) {
                Ok(p) => Some(p),
                Err(_) => {
                    self.stats.lock().0.rtcp_malformed += 1;
                    return;
                }
            },
        };
        let packets = match rtcp::parse(clear.as_deref().unwrap_or(data)) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(target: "sipsimple::audio", "RTCP from {from} dropped: {e}");
                self.stats.lock().0.rtcp_malformed += 1;
                return;
            }
        };
        let now = Instant::now();
        let now_ntp = rtcp::ntp_time(SystemTime::now());
        let clock = self.codec.kind().clock_rate();
        let mut st = self.stats.lock();
        st.0.rtcp_received += 1;
        for p in packets {
            let (sender, reports) = match p {
                RtcpPacket::SenderReport {
                    ssrc: s,
                    info,
                    reports,
                } => {
                    self.last_sr = Some((rtcp::middle32(info.ntp), now));
                    (s, reports)
                }
                RtcpPacket::ReceiverReport { ssrc: s, reports } => (s, reports),
                _ => continue,
            };
            if self.source_ssrc.is_some_and(|(s, _)| s != sender) {
                continue;
            }
            for b in reports.iter().filter(|b| b.ssrc == ssrc) {
                if let Some(rtt) = b.round_trip(now_ntp) {
                    st.0.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
                st.0.remote_fraction_lost = f64::from(b.fraction_lost) * 100.0 / 256.0;
                st.0.remote_packets_lost = i64::from(b.cumulative_lost);
                st.0.remote_jitter_ms = f64::from(b.jitter) * 1000.0 / f64::from(clock);
            }
        }
        drop(st);
        let mut rf = self.rtcp_from.lock();
        if *rf != Some(from) {
            *rf = Some(from);
            *self.rtcp_to.lock() = Some(from);
        }
    }

    /// One frame from the jitter buffer to the output device (nothing
    /// before the first packet).
    fn play(&mut self, frame_samples: usize) {
        let mut pcm = Vec::with_capacity(frame_samples * 2);
        let now = Instant::now();
        let (mut concealed, mut recovered, mut malformed) = (0, 0, 0);
        while self.playback.len() < frame_samples {
            pcm.clear();
            match self.jitter.pop(now) {
                Playout::Buffering => break,
                Playout::Packet(p) => {
                    if self.codec.decode(&p, &mut pcm) {
                        self.concealing = 0;
                    } else {
                        malformed += 1;
                        self.codec.conceal(&mut pcm);
                        concealed += 1;
                    }
                }
                Playout::Lost { next } => {
                    if next.is_some_and(|n| self.codec.recover(n, &mut pcm)) {
                        recovered += 1;
                    } else {
                        self.codec.conceal(&mut pcm);
                    }
                    concealed += 1;
                }
                Playout::Underrun => {
                    self.concealing += 1;
                    if self.concealing <= MAX_CONCEAL {
                        self.codec.conceal(&mut pcm);
                        concealed += 1;
                    } else {
                        pcm.resize(frame_samples, 0);
                    }
                    self.playback.extend(&pcm);
                    break;
                }
            }
            self.playback.extend(&pcm);
        }
        {
            let j = self.jitter.stats();
            let mut st = self.stats.lock();
            let s = &mut st.0;
            s.malformed += malformed;
            s.concealed_frames += concealed;
            s.fec_recovered += recovered;
            s.jitter_buffer_ms = self.jitter.target_ms();
            s.jitter_buffer_depth_ms = self.jitter.depth_ms();
            s.jitter_buffer_delay_ms = j.mean_wait_ms();
            s.late_packets = j.late;
            s.underruns = j.underruns;
            s.discarded_frames = j.discarded;
            s.duplicates = j.duplicates;
        }
        if self.playback.len() < frame_samples {
            return;
        }
        let out: Vec<i16> = self.playback.drain(..frame_samples).collect();
        if let Some((device, why)) = self.devices.write(&out) {
            device_failed(&self.stream, "output", &device, &why);
        }
        if let Some(r) = self.recorder.lock().as_mut() {
            r.heard(&out);
        }
    }

    fn got_dtmf(&self, digit: char) {
        let nc = NotificationCenter::default();
        let data = || NotificationData::new().with("digit", digit.to_string());
        nc.post_notification(GOT_DTMF, &self.stream, data());
        if let Some(s) = &self.session {
            nc.post_notification(SESSION_GOT_DTMF, s, data());
        }
    }

    async fn run(mut self) {
        let kind = self.codec.kind();
        let frame_samples = kind.frame_samples();
        let ticks = kind.frame_ticks();
        let clock = kind.clock_rate();
        let mut tick = tokio::time::interval(Duration::from_millis(u64::from(PTIME_MS)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let ssrc = random_u64() as u32;
        let mut seq: u16 = (ssrc >> 16) as u16;
        let mut ts: u32 = ssrc.rotate_left(7);
        let mut frame = vec![0i16; frame_samples];
        let mut payload = Vec::with_capacity(frame_samples * 2);
        let mut packet = Vec::with_capacity(12 + frame_samples * 2);
        let mut buf = vec![0u8; 2048];
        let mut first = true;
        let started = Instant::now();
        let mut heard_any = false;
        let mut no_audio_told = false;
        let cname = format!("{}@sipsimple", crate::driver::ids::random_hex(8));
        let mut rng = random_u64();
        // The first report after half the interval (RFC 3550 6.2).
        let mut next_rtcp = started + randomized(self.rtcp_interval, &mut rng) / 2;
        let mut rbuf = vec![0u8; 1500];
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_rtcp.into()) => {
                    next_rtcp = Instant::now() + randomized(self.rtcp_interval, &mut rng);
                    let report = self.rtcp_report(ssrc, ts, &cname);
                    let out = match self.srtp.lock().as_mut() {
                        None => Some(report),
                        Some(s) => s.tx.protect_rtcp(&report).ok(),
                    };
                    let to = *self.rtcp_to.lock();
                    if let (Some(out), Some(to)) = (out, to) {
                        if self.rtcp.send_to(&out, to).await.is_ok() {
                            self.stats.lock().0.rtcp_sent += 1;
                        }
                    }
                }
                r = self.rtcp.recv_from(&mut rbuf) => {
                    if let Ok((n, from)) = r {
                        let data = rbuf[..n].to_vec();
                        self.on_rtcp(&data, from, ssrc);
                    }
                }
                _ = tick.tick() => {
                    if let Some((device, why)) = self.devices.read(&mut frame) {
                        device_failed(&self.stream, "input", &device, &why);
                    }
                    if !heard_any && !no_audio_told && self.no_audio_after.is_some_and(|t| started.elapsed() >= t) {
                        no_audio_told = true;
                        if let Some(s) = &self.session {
                            tracing::info!(target: "sipsimple::audio", "no audio within {:?}", self.no_audio_after);
                            NotificationCenter::default().post_notification(SESSION_GOT_NO_AUDIO, s, NotificationData::new());
                        }
                    }
                    if !self.muted.load(Ordering::Relaxed) {
                        if let Some(r) = self.recorder.lock().as_mut() {
                            r.frame(&frame);
                        }
                    }
                    let target = *self.target.lock();
                    if let (false, Some(to)) = (self.muted.load(Ordering::Relaxed), target) {
                        let dtmf_pt = *self.dtmf_pt.lock();
                        let event = dtmf_pt.and_then(|pt| self.dtmf.lock().next(ts).map(|e| (pt, e)));
                        packet.clear();
                        match event {
                            // A telephone event replaces the frame's audio.
                            Some((pt, e)) => RtpHeader { marker: e.marker, payload_type: pt, sequence: seq, timestamp: e.timestamp, ssrc }
                                .write(&e.payload, &mut packet),
                            None => {
                                payload.clear();
                                self.codec.encode(&frame, &mut payload);
                                RtpHeader { marker: first, payload_type: self.pt, sequence: seq, timestamp: ts, ssrc }
                                    .write(&payload, &mut packet);
                            }
                        }
                        first = false;
                        if let Some(s) = self.srtp.lock().as_mut() {
                            match s.tx.protect(&packet) {
                                Ok(p) => packet = p,
                                Err(_) => continue,
                            }
                        }
                        if self.sock.send_to(&packet, to).await.is_ok() {
                            let mut s = self.stats.lock();
                            s.0.packets_sent += 1;
                            s.0.bytes_sent += packet.len() as u64;
                            self.octets_sent = self.octets_sent.wrapping_add(packet.len().saturating_sub(12) as u32);
                            self.sent_since_report = true;
                        }
                        seq = seq.wrapping_add(1);
                    }
                    // The clock runs on while muted: timestamps stay real time.
                    ts = ts.wrapping_add(ticks);
                    self.play(frame_samples);
                }
                r = self.sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    if let Some((percent, rng)) = self.drop.as_mut() {
                        // As if the network lost the packet.
                        if splitmix(rng) % 100 < u64::from(*percent) {
                            continue;
                        }
                    }
                    let clear = match self.srtp.lock().as_mut() {
                        None => None,
                        Some(s) => match s.rx.unprotect(&buf[..n]) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                let mut st = self.stats.lock();
                                match e {
                                    SrtpError::AuthenticationFailed => st.0.srtp_auth_failures += 1,
                                    SrtpError::Replayed | SrtpError::TooOld => st.0.srtp_replays += 1,
                                    SrtpError::TooShort | SrtpError::Malformed => st.0.malformed += 1,
                                }
                                continue;
                            }
                        },
                    };
                    let data: &[u8] = clear.as_deref().unwrap_or(&buf[..n]);
                    let dtmf_pt = *self.dtmf_pt.lock();
                    let now = Instant::now();
                    let p = match RtpPacket::parse(data) {
                        Ok(p) => p,
                        Err(_) => {
                            self.stats.lock().0.malformed += 1;
                            continue;
                        }
                    };
                    let pt = p.header.payload_type;
                    if pt != self.pt && Some(pt) != dtmf_pt {
                        self.stats.lock().0.unknown_payload_type += 1;
                        continue;
                    }
                    if !self.accept_ssrc(p.header.ssrc, now) {
                        continue;
                    }
                    if Some(pt) == dtmf_pt {
                        self.jitter.skip(p.header.sequence);
                        self.stats.lock().1.on_event_packet(now, p.header.sequence, data.len());
                        if let Some(d) = self.dtmf_in.on_packet(p.header.timestamp, p.payload) {
                            self.got_dtmf(d);
                        }
                    } else {
                        self.stats.lock().1.on_packet(now, p.header.sequence, p.header.timestamp, clock, data.len());
                        heard_any = true;
                        self.jitter.push(now, p.header.sequence, p.header.timestamp, p.payload);
                    }
                    // Symmetric RTP: answer where media comes from.
                    let mut rf = self.received_from.lock();
                    if *rf != Some(from) {
                        *rf = Some(from);
                        *self.target.lock() = Some(from);
                    }
                }
            }
        }
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.devices.sink.finish();
    }
}

/// A stream's input and output devices. One that fails (unplugged) gives
/// way to the null device; `read` and `write` say so once, with the
/// device's name and why, for AudioStreamDeviceDidFail.
struct Devices {
    source: Box<dyn AudioSource>,
    sink: Box<dyn AudioSink>,
    input: String,
    output: String,
}

impl Devices {
    fn read(&mut self, frame: &mut [i16]) -> Option<(String, String)> {
        self.source.read(frame);
        let why = self.source.failure()?;
        self.source = Box::new(Silence);
        frame.fill(0);
        Some((std::mem::replace(&mut self.input, "null".into()), why))
    }

    fn write(&mut self, pcm: &[i16]) -> Option<(String, String)> {
        self.sink.write(pcm);
        let why = self.sink.failure()?;
        self.sink.finish();
        self.sink = Box::new(Discard);
        Some((std::mem::replace(&mut self.output, "null".into()), why))
    }
}

/// Registers `audio` for m=audio RTP/AVP offers with a G.711 format.
pub struct AudioFactory;

impl MediaStreamFactory for AudioFactory {
    fn stream_type(&self) -> &str {
        TYPE
    }

    fn new_from_sdp(&self, sdp: &SessionDescription, index: usize) -> Option<Arc<dyn MediaStream>> {
        let m = sdp.media.get(index)?;
        if m.media != "audio" || !["RTP/AVP", "RTP/SAVP"].contains(&m.proto.as_str()) {
            return None;
        }
        first_common(m, &CodecKind::ALL)?;
        Some(Arc::new(AudioStream::new()))
    }

    fn new_outgoing(&self) -> Result<Arc<dyn MediaStream>> {
        Ok(Arc::new(AudioStream::new()))
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    /// A device that works for `left` frames, then is gone.
    struct Vanishing {
        left: u32,
        written: Arc<Mutex<usize>>,
    }

    impl AudioSource for Vanishing {
        fn read(&mut self, frame: &mut [i16]) {
            self.left = self.left.saturating_sub(1);
            frame.fill(1000);
        }
        fn failure(&self) -> Option<String> {
            (self.left == 0).then(|| "device unplugged".to_string())
        }
    }

    impl AudioSink for Vanishing {
        fn write(&mut self, frame: &[i16]) {
            self.left = self.left.saturating_sub(1);
            *self.written.lock() += frame.len();
        }
        fn failure(&self) -> Option<String> {
            (self.left == 0).then(|| "device unplugged".to_string())
        }
    }

    #[test]
    fn a_device_that_vanishes_gives_way_to_null_and_says_so_once() {
        let written = Arc::new(Mutex::new(0));
        let mut d = Devices {
            source: Box::new(Vanishing {
                left: 3,
                written: Arc::default(),
            }),
            sink: Box::new(Vanishing {
                left: 2,
                written: written.clone(),
            }),
            input: "system:alsa:hw:CARD=USB".into(),
            output: "system".into(),
        };
        let mut frame = vec![0i16; 160];
        let mut said = Vec::new();
        for _ in 0..10 {
            if let Some(f) = d.read(&mut frame) {
                said.push(("input", f));
            }
            if let Some(f) = d.write(&[5; 160]) {
                said.push(("output", f));
            }
        }
        assert_eq!(
            said,
            vec![
                ("output", ("system".into(), "device unplugged".into())),
                (
                    "input",
                    ("system:alsa:hw:CARD=USB".into(), "device unplugged".into())
                ),
            ]
        );
        // Silence from then on; nothing more reaches the gone sink.
        assert!(frame.iter().all(|s| *s == 0));
        assert_eq!(*written.lock(), 2 * 160);
        assert_eq!((d.input.as_str(), d.output.as_str()), ("null", "null"));
    }
}
