//! File transfer throughput over loopback next to two baselines measured
//! in the same run on the same file:
//!
//! - a raw socket copy: one thread reads the file and writes a TCP
//!   socket, another reads the socket and writes a new file (flushed to
//!   disk at the end, as the receiver of a transfer does);
//! - the hash alone (SHA-1, what the SDK's file-selector carries) over the
//!   same file.
//!
//! The transfer is a FileTransferStream push between two SIPApplications
//! (msrp, then msrps): "transfer" counts from the session's start to the
//! receiver's FileTransferStreamDidFinish (bytes moved, written, hashed
//! and checked); "end to end" adds the sender's hashing of the file for
//! its offer, before the INVITE. Peak heap is counted by the allocator.
//!
//! cargo run --release --example file_transfer_bench [-- SIZE_MIB]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;
use sipsimple::api::streams::FileTransferStream;
use sipsimple::driver::file_io::hash_file;
use sipsimple::proto::sdp::file_transfer::HashAlgorithm;
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

/// File -> socket -> file, the receiving file flushed to disk.
fn raw_copy(src: &Path, dst: &Path) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dst = dst.to_path_buf();
    let t0 = Instant::now();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut out = std::fs::File::create(dst).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).unwrap();
        }
        out.sync_data().unwrap();
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let mut f = std::fs::File::open(src).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).unwrap();
    }
    drop(s);
    receiver.join().unwrap();
    t0.elapsed()
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

/// (end to end, transfer, peak heap above the start).
fn transfer(file: &Path, dst: &Path, transport: &str) -> (Duration, Duration, usize) {
    let src_dir = file.parent().unwrap();
    let alice = app("alice", src_dir, transport);
    let bob = app("bob", dst, transport);
    let times: Arc<Mutex<Vec<(String, u64, Instant)>>> = Arc::default();
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
                t.lock().push((name, n.sender.id.0, Instant::now()));
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
            .find(|(n, s, _)| n == "SIPSessionDidStart" && *s == a.id().0)
            .map(|x| x.2);
        let done = seen
            .iter()
            .find(|(n, s, _)| n == "FileTransferStreamDidFinish" && *s != push.id().0)
            .map(|x| x.2);
        if let (Some(s), Some(d)) = (started, done) {
            break (s, d);
        }
        if let Some((failure, _, _)) = seen.iter().find(|x| x.0.contains(": ")) {
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
    (done - t0, done - started, peak)
}

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let size = mib << 20;
    let work = tempfile::tempdir().unwrap();
    let file = make_file(work.path(), size);
    let mbs = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    // Page cache warm for everyone: the first hash reads the file in.
    let _ = hash_file(&file, &[HashAlgorithm::Sha1]).unwrap();
    // The disk's speed varies from minute to minute on a shared machine,
    // so every round measures the baselines next to the transfers and the
    // ratios are taken per round; the figures are the rounds' medians.
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); 9];
    for _ in 0..RUNS {
        let t = Instant::now();
        let _ = hash_file(&file, &[HashAlgorithm::Sha1]).unwrap();
        let hash = mbs(t.elapsed());
        let copy_dst = work.path().join("copy.bin");
        let raw = mbs(raw_copy(&file, &copy_dst));
        std::fs::remove_file(&copy_dst).unwrap();
        let slower = hash.min(raw);
        rows[0].push(hash);
        rows[1].push(raw);
        for (i, transport) in ["tcp", "tls"].into_iter().enumerate() {
            let dst = tempfile::tempdir_in(work.path()).unwrap();
            let (e2e, xfer, peak) = transfer(&file, dst.path(), transport);
            rows[2 + i * 3].push(mbs(xfer));
            rows[3 + i * 3].push(mbs(xfer) / slower);
            rows[4 + i * 3].push(mbs(e2e));
            rows[8].push(peak as f64 / (1 << 20) as f64);
        }
    }
    let peak = rows[8].iter().cloned().fold(0.0, f64::max);
    let m: Vec<f64> = rows.into_iter().map(median).collect();
    println!("file: {mib} MiB, medians of {RUNS} rounds");
    println!("baseline: SHA-1 alone        {:8.0} MB/s", m[0]);
    println!("baseline: raw socket copy    {:8.0} MB/s", m[1]);
    for (i, name) in ["msrp ", "msrps"].into_iter().enumerate() {
        println!(
            "file transfer over {name}: transfer {:6.0} MB/s (ratio {:.2} to the slower baseline), end to end with the sender's hash {:6.0} MB/s",
            m[2 + i * 3],
            m[3 + i * 3],
            m[4 + i * 3]
        );
    }
    println!("peak heap during a transfer: {peak:.1} MiB");
}
