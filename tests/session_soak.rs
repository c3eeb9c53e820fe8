//! 1,000 sessions set up and torn down in a loop between two applications
//! in this process, with the built-in audio stream: no growth in threads,
//! file descriptors or heap once warmed up, and nothing left behind in the
//! session manager or the transaction tables. Heap is counted by a global
//! allocator wrapper (live bytes), which unlike RSS does not depend on how
//! the system allocator keeps freed pages. T1 is 50 ms so finished
//! transactions (64*T1, T4) go away within a few seconds. (Its own test
//! binary, so the process figures are this test's alone.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    Account, MediaStreamRegistry, MemoryStorage, NotificationCenter, SIPApplication, SessionState,
    Storage,
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

fn app() -> SIPApplication {
    let s = MemoryStorage::new();
    s.save(
        json!({"sip": {"transport_list": ["udp"], "timer_t1": 50, "timer_t2": 400, "timer_t4": 500}})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    let a = SIPApplication::new();
    a.start(Arc::new(s)).unwrap();
    a
}

fn status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn one_call(alice: &SIPApplication, bob: &SIPApplication, account: &Account, to: &str) {
    let s = alice.session_manager().unwrap().new_session(account);
    s.connect(
        to,
        &[],
        vec![MediaStreamRegistry::default().create("audio").unwrap()],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.state() != SessionState::Established {
        assert!(Instant::now() < deadline, "state {}", s.state());
        std::thread::sleep(Duration::from_micros(200));
    }
    s.end().unwrap();
    while s.state() != SessionState::Terminated
        || !bob.session_manager().unwrap().sessions().is_empty()
        || !alice.session_manager().unwrap().sessions().is_empty()
    {
        assert!(Instant::now() < deadline, "teardown");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Wait until neither engine has a live transaction (bounded).
fn quiet(alice: &SIPApplication, bob: &SIPApplication) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = |a: &SIPApplication| a.engine_statistics().unwrap().live_transactions;
    while live(alice) + live(bob) > 0 {
        assert!(Instant::now() < deadline, "transactions did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The session tasks and stream tasks wind down right after, and every
    // notification posted so far is delivered.
    std::thread::sleep(Duration::from_millis(300));
    assert!(NotificationCenter::default().flush(Duration::from_secs(10)));
}

#[test]
fn a_thousand_sessions_leave_nothing_behind() {
    let alice = app();
    let bob = app();
    let bob2 = bob.clone();
    let tok =
        NotificationCenter::default().add_observer(Some("SIPSessionNewIncoming"), None, move |n| {
            if let Some(s) = bob2.session_manager().unwrap().session(n.sender.id) {
                let _ = s.accept(s.proposed_streams());
            }
        });
    let account = Account::new("alice@example.com", None).unwrap();
    let to = format!(
        "sip:bob@127.0.0.1:{}",
        bob.sip_local_address(TransportKind::Udp).unwrap().port()
    );
    for _ in 0..100 {
        one_call(&alice, &bob, &account, &to);
    }
    // Let the transactions of the warm-up finish (64*T1 = 3.2 s).
    quiet(&alice, &bob);
    let heap0 = LIVE.load(Ordering::Relaxed);
    let (threads0, rss0, fds0) = (status_field("Threads:"), status_field("VmRSS:"), fds());
    // SOAK_N sets the count after the warm-up (default 900).
    let n: usize = std::env::var("SOAK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    for i in 0..n {
        one_call(&alice, &bob, &account, &to);
        if i % 300 == 299 && std::env::var_os("SOAK_TRACE").is_some() {
            eprintln!("{i}: RSS {} kB", status_field("VmRSS:"));
        }
    }
    quiet(&alice, &bob);
    let heap1 = LIVE.load(Ordering::Relaxed);
    let (threads1, rss1, fds1) = (status_field("Threads:"), status_field("VmRSS:"), fds());
    eprintln!(
        "threads {threads0} -> {threads1}, heap {heap0} -> {heap1} bytes, \
         RSS {rss0} -> {rss1} kB, fds {fds0} -> {fds1}"
    );
    if std::env::var_os("SOAK_EXIT").is_some() {
        // For heap profilers: stop here with everything as measured.
        std::process::exit(0);
    }
    assert_eq!(threads1, threads0, "threads grew");
    assert_eq!(fds1, fds0, "file descriptors grew");
    // A leak of even 100 bytes per session would show as 90 kB.
    assert!(
        heap1 - heap0 < 32 * 1024,
        "live heap grew by {} bytes over {n} sessions",
        heap1 - heap0
    );
    NotificationCenter::default().remove_observer(tok);
    alice.stop();
    bob.stop();
}
