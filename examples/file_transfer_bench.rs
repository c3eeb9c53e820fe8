//! File transfer throughput over loopback next to two baselines measured
//! in the same run on the same file:
//!
//! - a raw socket copy: one thread reads the file and writes a TCP
//!   socket, another reads the socket and writes a new file, starting its
//!   disk writes as it goes and flushing it at the end, as the receiver of
//!   a transfer does ([`WriteBehind`]);
//! - the hash alone (SHA-1, what the SDK's file-selector carries) over the
//!   same file.
//!
//! A third line, "least work", is the raw copy with its receiver also
//! hashing what arrives on a thread of its own: what any transfer with a
//! hash check must do at the least, with no MSRP, SIP or SDK in it. Its
//! ratio says what this machine allows; the transfer's ratio to it says
//! what the SDK costs on top. "Least work over TLS" is the same through a
//! rustls stream, for msrps.
//!
//! The transfer is a FileTransferStream push between two SIPApplications
//! (msrp, then msrps): "transfer" counts from the session's start to the
//! receiver's FileTransferStreamDidFinish (bytes moved, written, hashed
//! and checked); "end to end" adds the sender's hashing of the file for
//! its offer, before the INVITE. Peak heap is counted by the allocator.
//!
//! cargo run --release --example file_transfer_bench [-- SIZE_MIB [msrp|msrps]]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/tls.rs"]
mod tls;
use tls::tls_configs;

use parking_lot::Mutex;
use serde_json::json;
use sipsimple::api::streams::FileTransferStream;
use sipsimple::driver::file_io::{hash_file, WriteBehind};
use sipsimple::proto::sdp::file_transfer::{FileHasher, HashAlgorithm};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{MemoryStorage, NotificationCenter, SIPApplication, Storage};

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

fn make_file(dir: &Path, size: usize) -> PathBuf {
    let block: Vec<u8> = (0..1_048_573u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let p = dir.join("bench.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
    // On disk before anything is timed: no writeback of it competes with
    // the runs below.
    f.get_ref().sync_all().unwrap();
    p
}

/// CPU time (user and system, all threads) this process has used, in
/// seconds: what each stage costs the machine's cores, whatever the disk
/// does meanwhile.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 here,
    // counted in clock ticks.
    // SAFETY: sysconf reads a constant of the system, no memory of ours.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / per_second
}

/// File -> socket -> file, the receiving file flushed to disk. With
/// `hashed`, the receiver also hashes what it gets, on a thread of its own
/// as the SDK's receiver does: the least work any transfer must do, with
/// nothing of MSRP, SIP or the SDK in it.
/// With `tls`, the bytes go through a rustls stream (the handshake is
/// timed too, as a session's is).
/// Returns the whole time and the part of it the final flush took.
fn raw_copy(
    src: &Path,
    dst: &Path,
    hashed: bool,
    tls: Option<&TlsConfigs>,
) -> (Duration, Duration) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dst = dst.to_path_buf();
    let server = tls.map(|t| t.1.clone());
    let t0 = Instant::now();
    let receiver = std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let mut s: Box<dyn Read> = match server {
            None => Box::new(tcp),
            Some(config) => {
                let conn = rustls::ServerConnection::new(config).unwrap();
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        let mut out = std::fs::File::create(dst).unwrap();
        let mut behind = WriteBehind::new(0);
        let mut written = 0u64;
        // Read buffers go to the hasher and come back for later reads.
        let (to_hash, hash_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (back_tx, back) = std::sync::mpsc::channel::<Vec<u8>>();
        let hasher = hashed.then(|| {
            std::thread::spawn(move || {
                let mut h = FileHasher::new(&HashAlgorithm::Sha1).unwrap();
                for b in hash_rx {
                    h.update(&b);
                    let _ = back_tx.send(b);
                }
                h.finish()
            })
        });
        let mut buf = vec![0u8; 1 << 20];
        loop {
            // A TLS stream reads a record or so at a time: fill the buffer
            // before writing, as the SDK's receiver writes whole chunks.
            let mut n = 0;
            while n < buf.len() {
                match s.read(&mut buf[n..]).unwrap() {
                    0 => break,
                    k => n += k,
                }
            }
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).unwrap();
            written += n as u64;
            behind.wrote(&out, written);
            if hashed {
                let mut spare = back.try_recv().unwrap_or_default();
                spare.resize(1 << 20, 0);
                buf.truncate(n);
                to_hash.send(std::mem::replace(&mut buf, spare)).unwrap();
            }
        }
        drop(to_hash);
        if let Some(h) = hasher {
            h.join().unwrap();
        }
        let t = Instant::now();
        out.sync_data().unwrap();
        t.elapsed()
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let mut s: Box<dyn Write> = match tls {
        None => Box::new(tcp),
        Some((client, _)) => {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(client.clone(), name).unwrap();
            Box::new(ClosingTls(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    let mut f = std::fs::File::open(src).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).unwrap();
    }
    s.flush().unwrap();
    drop(s);
    let flush = receiver.join().unwrap();
    (t0.elapsed(), flush)
}

type TlsConfigs = (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>);

/// A rustls client stream that ends with close_notify when dropped: the
/// receiver sees a clean end, not a truncation. What the server sent and
/// nobody read (its session tickets) is drained first: a socket closed on
/// unread bytes resets the connection, and the receiver would lose its
/// last bytes.
struct ClosingTls(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Write for ClosingTls {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for ClosingTls {
    fn drop(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
        let _ = self.0.sock.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut self.0.sock, &mut std::io::sink());
    }
}

fn app(user: &str, dir: &Path, transport: &str) -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({
            "sip": {"transport_list": ["udp"]},
            "file_transfer": {"directory": dir.display().to_string()},
            "accounts": {format!("{user}@example.com"): {
                "registration": {"enabled": false},
                "msrp": {"transport": transport},
            }},
        })
        .as_object()
        .unwrap(),
    )
    .unwrap();
    let a = SIPApplication::new();
    a.start(Arc::new(s)).unwrap();
    a
}

/// One transfer: its times, the CPU it used and the heap it held.
struct Transfer {
    /// From `connect()`, counting the sender's hashing for its offer.
    end_to_end: Duration,
    /// From the session's start to the receiver's finish.
    transfer: Duration,
    /// CPU seconds over `transfer`, both ends.
    cpu: f64,
    /// Peak heap above the start, in bytes.
    peak: usize,
}

fn transfer(file: &Path, dst: &Path, transport: &str) -> Transfer {
    let src_dir = file.parent().unwrap();
    let alice = app("alice", src_dir, transport);
    let bob = app("bob", dst, transport);
    // (notification, sender, when, CPU seconds so far)
    type Seen = Vec<(String, u64, Instant, f64)>;
    let times: Arc<Mutex<Seen>> = Arc::default();
    let t = times.clone();
    // The last progress either side reported: a transfer that stops moving
    // says which side stopped, while it waits.
    let progress = Arc::new(Mutex::new((Instant::now(), String::new(), 0i64)));
    let p = progress.clone();
    let bob_manager = bob.session_manager().unwrap();
    let token =
        NotificationCenter::default().add_observer(None, None, move |n| match n.name.as_str() {
            "SIPSessionNewIncoming" => {
                if let Some(s) = bob_manager.session(n.sender.id) {
                    let _ = s.accept(s.proposed_streams());
                }
            }
            "FileTransferStreamDidDeliverChunk" | "FileTransferStreamGotChunk" => {
                let bytes = n.data.get_i64("transferred_bytes").unwrap_or(0);
                *p.lock() = (Instant::now(), n.name.clone(), bytes);
            }
            "SIPSessionDidStart" | "FileTransferStreamDidFinish" | "SIPSessionDidFail" => {
                // A failure ends the wait below with what it said.
                let name = if n.data.get_bool("error") == Some(true) || n.name.ends_with("Fail") {
                    format!("{}: {}", n.name, n.data.to_json())
                } else {
                    n.name.clone()
                };
                t.lock()
                    .push((name, n.sender.id.0, Instant::now(), cpu_seconds()));
            }
            _ => {}
        });
    let before = NOW.load(Relaxed);
    PEAK.store(before, Relaxed);
    let account = alice
        .account_manager()
        .unwrap()
        .get_account("alice@example.com")
        .unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    let push = FileTransferStream::push(file).unwrap();
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    let t0 = Instant::now();
    a.connect(
        &format!("sip:bob@127.0.0.1:{port}"),
        &[],
        vec![push.clone()],
    )
    .unwrap();
    let mut stalled = false;
    let (started, done) = loop {
        std::thread::sleep(Duration::from_millis(5));
        let seen = times.lock();
        let started = seen
            .iter()
            .find(|(n, s, _, _)| n == "SIPSessionDidStart" && *s == a.id().0)
            .map(|x| (x.2, x.3));
        let done = seen
            .iter()
            .find(|(n, s, _, _)| n == "FileTransferStreamDidFinish" && *s != push.id().0)
            .map(|x| (x.2, x.3));
        if let (Some(s), Some(d)) = (started, done) {
            break (s, d);
        }
        if let Some((failure, _, _, _)) = seen.iter().find(|x| x.0.contains(": ")) {
            panic!("the transfer failed: {failure}");
        }
        let (at, what, bytes) = progress.lock().clone();
        if at.elapsed() > Duration::from_secs(10) && !stalled {
            stalled = true;
            eprintln!(
                "stalled (process {}): no progress for 10 s; last {what} at {bytes} bytes",
                std::process::id()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "no end in sight");
    };
    let peak = PEAK.load(Relaxed).saturating_sub(before);
    let _ = a.end();
    std::thread::sleep(Duration::from_millis(200));
    NotificationCenter::default().remove_observer(token);
    alice.stop();
    bob.stop();
    Transfer {
        end_to_end: done.0 - t0,
        transfer: done.0 - started.0,
        cpu: done.1 - started.1,
        peak,
    }
}

const RUNS: usize = 5;

/// One measured stage of a round.
#[derive(Clone, Copy)]
enum Stage {
    Hash,
    Raw,
    /// The least work, over TLS when true.
    Least(bool),
    /// A transfer: the account's MSRP transport, and its name.
    Transfer(&'static str, &'static str),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    // A second argument, msrp or msrps, runs only that transport (for a
    // profile of one).
    let only = std::env::args().nth(2);
    let transports: Vec<(&str, &str)> = [("tcp", "msrp"), ("tls", "msrps")]
        .into_iter()
        .filter(|(_, name)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    let size = mib << 20;
    let gib = size as f64 / (1u64 << 30) as f64;
    let work = tempfile::tempdir().unwrap();
    let file = make_file(work.path(), size);
    let mbs = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    // Page cache warm for everyone: the first hash reads the file in.
    let _ = hash_file(&file, &[HashAlgorithm::Sha1]).unwrap();
    // The disk's speed varies from minute to minute on a shared machine,
    // so every round measures the baselines next to the transfers and the
    // ratios are taken per round; the figures are the rounds' medians.
    // Each stage's CPU time (both cores, per GiB) says what it costs
    // whatever the disk does.
    //
    // The first stage of a round was seen to pay for what the round before
    // left behind (1 GiB files just deleted): a raw copy run first went at
    // 370-960 MB/s and one run straight after it at about 2,200. So the
    // order of the stages turns by one each round, and no stage is first
    // in more than one of the rounds the medians are taken over.
    let mut rows: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut peak = 0usize;
    let tls = tls_configs();
    let copy_dst = work.path().join("copy.bin");
    let mut stages = vec![Stage::Hash, Stage::Raw, Stage::Least(false)];
    if transports.iter().any(|(t, _)| *t == "tls") {
        stages.push(Stage::Least(true));
    }
    stages.extend(transports.iter().map(|&(t, name)| Stage::Transfer(t, name)));
    for round in 0..RUNS {
        let mut order = stages.clone();
        order.rotate_left(round % stages.len());
        // This round's figures by name; the ratios come once all ran.
        let mut got: BTreeMap<String, f64> = BTreeMap::new();
        for stage in order {
            let c = cpu_seconds();
            match stage {
                Stage::Hash => {
                    let t = Instant::now();
                    let _ = hash_file(&file, &[HashAlgorithm::Sha1]).unwrap();
                    got.insert("hash".into(), mbs(t.elapsed()));
                    got.insert("hash cpu".into(), (cpu_seconds() - c) / gib);
                }
                Stage::Raw => {
                    let (took, flush) = raw_copy(&file, &copy_dst, false, None);
                    got.insert("raw cpu".into(), (cpu_seconds() - c) / gib);
                    got.insert("raw flush".into(), flush.as_secs_f64() / took.as_secs_f64());
                    got.insert("raw".into(), mbs(took));
                    std::fs::remove_file(&copy_dst).unwrap();
                }
                Stage::Least(secure) => {
                    let (took, _) = raw_copy(&file, &copy_dst, true, secure.then_some(&tls));
                    let k = if secure { "least tls" } else { "least" };
                    got.insert(format!("{k} cpu"), (cpu_seconds() - c) / gib);
                    got.insert(k.into(), mbs(took));
                    std::fs::remove_file(&copy_dst).unwrap();
                }
                Stage::Transfer(transport, name) => {
                    let dst = tempfile::tempdir_in(work.path()).unwrap();
                    let r = transfer(&file, dst.path(), transport);
                    got.insert(format!("{name} transfer"), mbs(r.transfer));
                    got.insert(format!("{name} e2e"), mbs(r.end_to_end));
                    got.insert(format!("{name} cpu"), r.cpu / gib);
                    peak = peak.max(r.peak);
                }
            }
        }
        let slower = got["hash"].min(got["raw"]);
        let mut ratios = Vec::new();
        for k in ["least", "least tls"] {
            if let Some(v) = got.get(k) {
                ratios.push((format!("{k} ratio"), v / slower));
            }
        }
        for &(transport, name) in &transports {
            let t = got[&format!("{name} transfer")];
            let least = got[if transport == "tls" {
                "least tls"
            } else {
                "least"
            }];
            ratios.push((format!("{name} ratio"), t / slower));
            ratios.push((format!("{name} of least"), t / least));
        }
        for (k, v) in got.into_iter().chain(ratios) {
            rows.entry(k).or_default().push(v);
        }
    }
    let m = |k: &str| median(rows[k].clone());
    println!("file: {mib} MiB, medians of {RUNS} rounds; CPU in core-seconds per GiB");
    println!(
        "baseline: SHA-1 alone        {:6.0} MB/s, CPU {:.2}",
        m("hash"),
        m("hash cpu")
    );
    println!(
        "baseline: raw socket copy    {:6.0} MB/s, CPU {:.2}, the final flush {:.0}% of its time",
        m("raw"),
        m("raw cpu"),
        m("raw flush") * 100.0
    );
    println!(
        "least work: copy and hash   {:6.0} MB/s (ratio {:.2} to the slower baseline), CPU {:.2}",
        m("least"),
        m("least ratio"),
        m("least cpu")
    );
    if rows.contains_key("least tls") {
        println!(
            "least work over TLS         {:6.0} MB/s (ratio {:.2} to the slower baseline), CPU {:.2}",
            m("least tls"),
            m("least tls ratio"),
            m("least tls cpu")
        );
    }
    for &(_, name) in &transports {
        let k = |what: &str| format!("{name} {what}");
        println!(
            "file transfer over {name:5}: transfer {:6.0} MB/s (ratio {:.2} to the slower baseline, {:.2} to the least work over the same transport), CPU {:.2}; end to end with the sender's hash {:6.0} MB/s",
            m(&k("transfer")),
            m(&k("ratio")),
            m(&k("of least")),
            m(&k("cpu")),
            m(&k("e2e"))
        );
    }
    println!(
        "peak heap during a transfer: {:.1} MiB",
        peak as f64 / (1 << 20) as f64
    );
}
