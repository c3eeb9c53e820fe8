//! The runtime thread: one OS thread running a single-threaded tokio runtime that
//! owns every socket and timer of a running `SIPApplication`.

use std::cell::Cell;
use std::io;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio::sync::oneshot;

use super::waiter::Waiter;

thread_local! {
    /// Set on runtime threads: lets `shutdown` avoid joining itself without
    /// asking std for the current thread (which allocates on host threads).
    static ON_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// A running runtime thread. Dropping it asks the thread to stop without waiting
/// for it (so a drop on any thread never blocks); `shutdown` stops and joins.
pub struct RuntimeThread {
    handle: tokio::runtime::Handle,
    stop_tx: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl RuntimeThread {
    /// Spawn the thread and wait until its runtime is ready.
    pub fn spawn(name: &str) -> io::Result<RuntimeThread> {
        let ready = Waiter::<io::Result<tokio::runtime::Handle>>::new();
        let ready_tx = ready.clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let join = thread::Builder::new().name(name.into()).spawn(move || {
            ON_RUNTIME_THREAD.with(|f| f.set(true));
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    ready_tx.put(Err(e));
                    return;
                }
            };
            ready_tx.put(Ok(rt.handle().clone()));
            // Runs every spawned task until asked to stop (or the owner vanished).
            let _ = rt.block_on(stop_rx);
            // Tasks get a bounded grace period; a stuck task cannot hang stop().
            rt.shutdown_timeout(Duration::from_secs(2));
        })?;
        let handle = ready
            .wait(Duration::from_secs(30))
            .ok_or_else(|| io::Error::other("the runtime thread did not start"))??;
        Ok(RuntimeThread {
            handle,
            stop_tx: Some(stop_tx),
            join: Some(join),
        })
    }

    /// The handle used to spawn tasks onto the runtime thread.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// True when called from a runtime thread (this one, or another
    /// application's: either way joining from there could wait forever).
    pub fn is_current(&self) -> bool {
        ON_RUNTIME_THREAD.with(Cell::get)
    }

    /// Stop the runtime and join its thread. From the runtime thread itself the
    /// join is skipped (it would wait for itself); the thread still ends.
    pub fn shutdown(mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(join) = self.join.take() {
            if !self.is_current() {
                let _ = join.join();
            }
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        // Not joined: a drop may happen on any thread and must never block.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_tasks_and_joins() {
        let rt = RuntimeThread::spawn("test-rt").unwrap();
        let (tx, rx) = mpsc::channel();
        rt.handle().spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(thread::current().name().map(str::to_owned))
                .unwrap();
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap().as_deref(),
            Some("test-rt")
        );
        assert!(!rt.is_current());
        rt.shutdown();
    }

    #[test]
    fn drop_does_not_block() {
        let rt = RuntimeThread::spawn("test-rt-drop").unwrap();
        rt.handle().spawn(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        drop(rt);
    }
}
