//! A one-value hand-off between threads with a timed wait. Used where a thread
//! of the host application waits for the library's threads: unlike std's mpsc,
//! a parking_lot wait allocates no per-thread state on the host's thread (which
//! would otherwise live until process exit).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

pub struct Waiter<T> {
    value: Mutex<Option<T>>,
    cv: Condvar,
}

impl<T> Waiter<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Waiter {
            value: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    /// Hand over the value and wake the waiter.
    pub fn put(&self, v: T) {
        *self.value.lock() = Some(v);
        self.cv.notify_all();
    }

    /// Wait for the value, at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<T> {
        let mut guard = self.value.lock();
        if guard.is_none() {
            let _ = self.cv.wait_while_for(&mut guard, |v| v.is_none(), timeout);
        }
        guard.take()
    }

    /// Wait until a value is there, at most `timeout`, leaving it for other
    /// waiters; true when it is there.
    pub fn wait_present(&self, timeout: Duration) -> bool {
        let mut guard = self.value.lock();
        if guard.is_none() {
            let _ = self.cv.wait_while_for(&mut guard, |v| v.is_none(), timeout);
        }
        guard.is_some()
    }
}
