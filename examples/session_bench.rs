//! Session figures for the README's performance table:
//!
//! 1. setup+teardown between two applications in this process over UDP
//!    loopback, one session at a time (INVITE, 200, ACK, BYE, 200): sessions
//!    per second and setup latency (connect to established), next to a
//!    baseline in the same run: the same five datagrams, of the same sizes,
//!    bounced between two bare UDP sockets;
//! 2. memory per established session without media: live heap (counted by
//!    a global allocator wrapper) and RSS for 1,000 sessions held open;
//! 3. calls per second a UAS on this API answers from SIPp's built-in UAC
//!    (`sipp -sn uac`) with no failed call, stepping the rate up.
//!
//!   cargo run --release --example session_bench [-- --no-sipp]
//!   cargo run --release --example session_bench -- --audio-memory
//!       (2. with a PCMU audio stream per session, null audio devices)
//!
//! Sessions carry one stream of a type defined here that has no media (an
//! `m=audio` line and nothing behind it), so the figures are signalling.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    Account, HostStreamHandler, HostStreamType, MediaStreamRegistry, MemoryStorage,
    NotificationCenter, SIPApplication, Session, SessionState, Storage,
};

struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// An audio m= line with nothing behind it. It answers its own offers
/// (marked a=x-nomedia), and with `any_audio` every audio offer (SIPp's).
struct NoMedia {
    any_audio: bool,
}

impl HostStreamHandler for NoMedia {
    fn new_from_sdp(&self, _: u64, sdp: &str, index: u32) -> bool {
        let Some(section) = sdp.split("\r\nm=").nth(index as usize + 1) else {
            return false;
        };
        section.starts_with("audio ") && (self.any_audio || section.contains("a=x-nomedia"))
    }
    fn new_outgoing(&self, _: u64) -> Result<(), String> {
        Ok(())
    }
    fn initialize(&self, _: u64, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn get_local_media(&self, _: u64, _: Option<&str>) -> Result<String, String> {
        Ok("m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=x-nomedia\r\n".into())
    }
    fn start(&self, _: u64, _: &str, _: &str, _: u32) -> Result<(), String> {
        Ok(())
    }
    fn update(&self, _: u64, _: &str, _: &str, _: u32) {}
    fn hold(&self, _: u64) {}
    fn unhold(&self, _: u64) {}
    fn end(&self, _: u64) {}
}

fn app(port: u16) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({"sip": {"transport_list": ["udp"], "udp_port": port, "max_transactions": 2_000_000,
                       "session_timer": false}})
        .as_object()
        .unwrap(),
    )
    .unwrap();
    let a = SIPApplication::new();
    a.start(Arc::new(s)).expect("application starts");
    a
}

fn auto_answer(app: &SIPApplication) -> sipsimple::ObserverToken {
    let app = app.clone();
    NotificationCenter::default().add_observer(Some("SIPSessionNewIncoming"), None, move |n| {
        if let Ok(m) = app.session_manager() {
            if let Some(s) = m.session(n.sender.id) {
                let _ = s.accept(s.proposed_streams());
            }
        }
    })
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn spin_until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn baseline_round_trips(sizes: &[usize], n: usize) -> Duration {
    // Two sockets play caller and callee: each datagram is sent and read
    // by the other side before the next one goes, like the SIP exchange.
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let mut buf = vec![0u8; 4096];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        for (i, &len) in sizes.iter().enumerate() {
            let msg = vec![b'x'; len];
            if i % 2 == 0 {
                a.send_to(&msg, ba).unwrap();
                b.recv_from(&mut buf).unwrap();
            } else {
                b.send_to(&msg, aa).unwrap();
                a.recv_from(&mut buf).unwrap();
            }
        }
        times.push(t.elapsed());
    }
    median(&mut times)
}

fn setup_teardown(alice: &SIPApplication, bob: &SIPApplication, n: usize) {
    let account = Account::new("alice@example.com", None).unwrap();
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    let to = format!("sip:bob@127.0.0.1:{port}");
    let mut setups = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let s = alice.session_manager().unwrap().new_session(&account);
        let t = Instant::now();
        s.connect(
            &to,
            &[],
            vec![MediaStreamRegistry::default().create("nomedia").unwrap()],
        )
        .unwrap();
        spin_until(|| s.state() == SessionState::Established);
        setups.push(t.elapsed());
        s.end().unwrap();
        spin_until(|| {
            s.state() == SessionState::Terminated
                && bob.session_manager().unwrap().sessions().is_empty()
        });
    }
    let total = t0.elapsed();
    let med = median(&mut setups);
    let p99 = setups[setups.len() * 99 / 100];
    // INVITE ~560 bytes, 200 with SDP ~620, ACK ~330, BYE ~340, 200 ~300.
    let base = baseline_round_trips(&[560, 620, 330, 340, 300], n);
    println!(
        "setup+teardown, in process, UDP loopback: {:.0} sessions/s ({n} in {:.2} s); \
         setup median {:.0} us, p99 {:.0} us; baseline (5 bare datagrams) median {:.0} us; \
         setup+teardown / baseline = {:.1}",
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        med.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        base.as_secs_f64() * 1e6,
        (total.as_secs_f64() / n as f64) / base.as_secs_f64(),
    );
}

fn memory_per_session(alice: &SIPApplication, bob: &SIPApplication, n: usize, stream: &str) {
    let account = Account::new("alice@example.com", None).unwrap();
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    let to = format!("sip:bob@127.0.0.1:{port}");
    // Quiet first: no transaction of the previous part still running.
    std::thread::sleep(Duration::from_secs(1));
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss_kb());
    let mut held: Vec<Session> = Vec::with_capacity(n);
    for _ in 0..n {
        let s = alice.session_manager().unwrap().new_session(&account);
        s.connect(
            &to,
            &[],
            vec![MediaStreamRegistry::default().create(stream).unwrap()],
        )
        .unwrap();
        held.push(s);
    }
    spin_until(|| held.iter().all(|s| s.state() == SessionState::Established));
    spin_until(|| bob.session_manager().unwrap().sessions().len() == n);
    // Let the INVITE transactions finish (64*T1 with T1 = 50 ms here), so
    // what is left is what an established session holds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while alice.engine_statistics().unwrap().live_transactions
        + bob.engine_statistics().unwrap().live_transactions
        > 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss_kb());
    let what = if stream == "audio" {
        "with a PCMU audio stream (null devices)"
    } else {
        "without media"
    };
    println!(
        "memory per established session {what} (both ends in this process, {n} sessions): \
         {:.1} KB live heap per session per side, {:.1} KB RSS per session per side",
        (heap1 - heap0) as f64 / (2 * n) as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / (2 * n) as f64,
    );
    for s in &held {
        let _ = s.end();
    }
    spin_until(|| held.iter().all(|s| s.state() == SessionState::Terminated));
}

fn sipp_cps(rates: &[u32]) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uas = app(port);
    let tok = auto_answer(&uas);
    let mut best = 0;
    for &rate in rates {
        let calls = rate * 5;
        let sipp_port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("session_bench_{rate}"));
        let _ = std::fs::create_dir_all(&dir);
        let t0 = Instant::now();
        let status = Command::new("sipp")
            .current_dir(&dir)
            .args([
                "-sn",
                "uac",
                "-i",
                "127.0.0.1",
                "-p",
                &sipp_port.to_string(),
            ])
            .args([
                "-r",
                &rate.to_string(),
                "-m",
                &calls.to_string(),
                "-l",
                "100000",
            ])
            .args([
                "-nostdin",
                "-timeout",
                "120s",
                "-t",
                "u1",
                "-trace_stat",
                "-fd",
                "1",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let took = t0.elapsed().as_secs_f64();
        let failed = failed_calls(&dir);
        let ok = matches!(status, Ok(s) if s.success()) && failed == Some(0);
        // SIPp falls behind the asked rate when it (or we) cannot keep up;
        // what counts is what it achieved.
        let achieved = calls as f64 / took;
        println!(
            "SIPp uac asked for {rate} calls/s, {calls} calls in {took:.2} s = {achieved:.0} calls/s: {}",
            if ok {
                "all answered, none failed".to_string()
            } else {
                format!("{} failed calls", failed.map_or("?".into(), |f| f.to_string()))
            }
        );
        if !ok {
            break;
        }
        best = best.max(achieved as u32);
        if achieved < rate as f64 * 0.9 {
            // Saturated: a higher asked rate would not go faster.
            break;
        }
        // Let the finished transactions (Timer L/J, 32 s at T1 = 500 ms) drain.
        std::thread::sleep(Duration::from_secs(3));
    }
    println!("calls per second answered from SIPp's uac with no failed call: {best}");
    NotificationCenter::default().remove_observer(tok);
    uas.stop();
}

/// The FailedCall(C) column of the last line of SIPp's -trace_stat file.
fn failed_calls(dir: &std::path::Path) -> Option<u64> {
    let f = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".csv"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())?;
    let text = std::fs::read_to_string(&f).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.rfind(|l| !l.trim().is_empty())?.split(';').collect();
    let col = header.iter().position(|h| *h == "FailedCall(C)")?;
    let v = last.get(col)?.parse().ok();
    let _ = std::fs::remove_file(&f);
    v
}

fn main() {
    let register = |any_audio| {
        MediaStreamRegistry::default()
            .register(Arc::new(HostStreamType::new(
                "nomedia",
                100,
                false,
                Arc::new(NoMedia { any_audio }),
            )))
            .unwrap()
    };
    register(false);
    let no_sipp = std::env::args().any(|a| a == "--no-sipp");
    if std::env::args().any(|a| a == "--audio-memory") {
        // In a fresh process, so RSS says something too.
        let alice = app_t1(50);
        let bob = app_t1(50);
        let tok = auto_answer(&bob);
        memory_per_session(&alice, &bob, 1000, "audio");
        NotificationCenter::default().remove_observer(tok);
        alice.stop();
        bob.stop();
        return;
    }
    let alice = app(0);
    let bob = app(0);
    let tok = auto_answer(&bob);
    // Warm up the sockets, runtime and allocator.
    setup_teardown_quiet(&alice, &bob, 200);
    setup_teardown(&alice, &bob, 2000);
    alice.stop();
    bob.stop();
    NotificationCenter::default().remove_observer(tok);
    // Memory: short timers so finished transactions leave quickly.
    let alice = app_t1(50);
    let bob = app_t1(50);
    let tok = auto_answer(&bob);
    memory_per_session(&alice, &bob, 1000, "nomedia");
    alice.stop();
    bob.stop();
    NotificationCenter::default().remove_observer(tok);
    if !no_sipp {
        // SIPp offers plain m=audio: answer it without media.
        register(true);
        sipp_cps(&[1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000]);
    }
}

fn app_t1(t1: u64) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({"sip": {"transport_list": ["udp"], "timer_t1": t1, "timer_t2": t1 * 8,
                       "timer_t4": t1 * 10, "session_timer": false}})
        .as_object()
        .unwrap(),
    )
    .unwrap();
    let a = SIPApplication::new();
    a.start(Arc::new(s)).expect("application starts");
    a
}

fn setup_teardown_quiet(alice: &SIPApplication, bob: &SIPApplication, n: usize) {
    let account = Account::new("alice@example.com", None).unwrap();
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    let to = format!("sip:bob@127.0.0.1:{port}");
    for _ in 0..n {
        let s = alice.session_manager().unwrap().new_session(&account);
        s.connect(
            &to,
            &[],
            vec![MediaStreamRegistry::default().create("nomedia").unwrap()],
        )
        .unwrap();
        spin_until(|| s.state() == SessionState::Established);
        s.end().unwrap();
        spin_until(|| s.state() == SessionState::Terminated);
    }
}
