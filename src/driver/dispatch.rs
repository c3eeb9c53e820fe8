//! The notification thread: one dedicated thread that runs callbacks into the
//! host application (notification observers, the log sink) one at a time, in
//! the order they were submitted.
//!
//! Submitting never blocks and never takes a lock the callbacks could need, so
//! any library call may be made from inside a callback.
//!
//! The thread runs only while it has clients (registered observers or a log
//! sink): `acquire` starts it, and the `release` of the last client lets it
//! drain its queue and joins it, so a host that removed its observers has no
//! library thread left behind (clean exits, clean leak checks). Jobs submitted
//! while no thread runs have nobody to reach and are dropped. A restarted
//! thread first joins its predecessor, so delivery never overlaps or reorders.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;

use super::waiter::Waiter;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    tx: Option<mpsc::Sender<Job>>,
    /// The running (or last, still draining) thread, not yet joined.
    thread: Option<JoinHandle<()>>,
    /// Set when the latest thread has run its last job. A new thread waits
    /// for it even when another caller took the handle to join it.
    done: Option<Arc<Waiter<()>>>,
    clients: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    tx: None,
    thread: None,
    done: None,
    clients: 0,
});

thread_local! {
    static ON_DISPATCH_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn run(
    rx: mpsc::Receiver<Job>,
    previous: Option<JoinHandle<()>>,
    previous_done: Option<Arc<Waiter<()>>>,
    done: Arc<Waiter<()>>,
) {
    ON_DISPATCH_THREAD.with(|f| f.set(true));
    // Never overlap the previous thread's last jobs.
    if let Some(prev) = previous {
        let _ = prev.join();
    } else if let Some(d) = previous_done {
        while !d.wait_present(Duration::from_secs(3600)) {}
    }
    while let Ok(job) = rx.recv() {
        // A panicking callback must not take the thread down with it: every
        // later notification would be lost.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!(target: "sipsimple::dispatch", "a notification callback panicked");
        }
    }
    done.put(());
}

/// Register a client; starts the thread if needed.
pub fn acquire() {
    let mut st = STATE.lock();
    st.clients += 1;
    if st.tx.is_none() {
        let (tx, rx) = mpsc::channel::<Job>();
        let previous = st.thread.take();
        let previous_done = st.done.clone();
        let done = Waiter::new();
        let d = done.clone();
        let spawned = thread::Builder::new()
            .name("sipsimple-notify".into())
            .spawn(move || run(rx, previous, previous_done, d));
        match spawned {
            Ok(handle) => {
                st.tx = Some(tx);
                st.thread = Some(handle);
                st.done = Some(done);
            }
            // Without a thread nothing can be delivered; say so loudly. The
            // client stays counted so a later acquire retries the spawn.
            Err(e) => tracing::error!(target: "sipsimple::dispatch",
                "cannot start the notification thread: {e}"),
        }
    }
}

/// Unregister a client. The last one stops the thread once its queue is drained,
/// and waits for that unless called from the notification thread itself.
pub fn release() {
    let join = {
        let mut st = STATE.lock();
        st.clients = st.clients.saturating_sub(1);
        if st.clients > 0 {
            return;
        }
        // Dropping the sender ends the thread after the queued jobs.
        st.tx = None;
        if is_dispatch_thread() {
            None // joined by the next thread started, or never needed
        } else {
            st.thread.take()
        }
    };
    if let Some(handle) = join {
        let _ = handle.join();
    }
}

/// Queue `job` to run on the notification thread after everything queued before
/// it. Dropped when no thread runs (no client could receive it).
pub fn submit(job: impl FnOnce() + Send + 'static) {
    let st = STATE.lock();
    if let Some(tx) = &st.tx {
        let _ = tx.send(Box::new(job));
    }
}

/// True when called from the notification thread (i.e. from inside a callback).
pub fn is_dispatch_thread() -> bool {
    ON_DISPATCH_THREAD.with(Cell::get)
}

/// Wait until everything submitted before this call has run, or `timeout` passed.
/// Returns immediately (true) on the notification thread itself, where waiting
/// would deadlock, and when no thread runs. Returns false on timeout.
pub fn flush(timeout: Duration) -> bool {
    if is_dispatch_thread() {
        return true;
    }
    let done = Waiter::new();
    {
        let st = STATE.lock();
        let Some(q) = &st.tx else {
            // No thread takes jobs; the last one may still be draining.
            let last = st.done.clone();
            drop(st);
            return last.is_none_or(|d| d.wait_present(timeout));
        };
        let d = done.clone();
        let _ = q.send(Box::new(move || d.put(())));
    }
    done.wait(timeout).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    #[test]
    fn jobs_run_in_order_and_survive_panics() {
        acquire();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        for i in 0..100 {
            let seen = seen.clone();
            submit(move || {
                if i == 50 {
                    panic!("observer bug");
                }
                seen.lock().unwrap().push(i);
            });
        }
        assert!(flush(Duration::from_secs(10)));
        let expected: Vec<i32> = (0..100).filter(|i| *i != 50).collect();
        assert_eq!(*seen.lock().unwrap(), expected);
        release();
    }

    #[test]
    fn flush_from_dispatch_thread_does_not_deadlock() {
        acquire();
        let (tx, rx) = mpsc::channel();
        submit(move || {
            tx.send((is_dispatch_thread(), flush(Duration::from_secs(1))))
                .unwrap();
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            (true, true)
        );
        assert!(!is_dispatch_thread());
        release();
    }

    #[test]
    fn release_from_inside_a_callback_then_restart_keeps_order() {
        acquire();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let s = seen.clone();
        submit(move || {
            // The last client leaves and a new one arrives from inside a callback.
            release();
            acquire();
            let s2 = s.clone();
            submit(move || s2.lock().unwrap().push(2));
            thread::sleep(Duration::from_millis(20));
            s.lock().unwrap().push(1);
        });
        // Wait for the callback itself: a flush queued before it ends may
        // run on the old thread before the restarted one takes job 2, and
        // flush promises only what was submitted before the flush.
        let t0 = std::time::Instant::now();
        while seen.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(flush(Duration::from_secs(10)));
        let got = seen.lock().unwrap().clone();
        // Other tests may hold clients concurrently, so the restart may not have
        // happened; either way 1 (in the callback) precedes 2 (queued after it).
        assert_eq!(got, vec![1, 2]);
        release();
    }
}
