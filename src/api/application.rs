//! `SIPApplication`: starts and stops the subsystems of a SIP user agent.
//!
//! `start(storage)` loads the configuration, spawns the runtime thread that owns
//! all I/O, and starts the remaining subsystems in order; `stop()` stops them in
//! reverse order and joins the runtime thread. Notifications, all from the
//! application as sender:
//!
//! | name | data |
//! |---|---|
//! | SIPApplicationWillStart | |
//! | SIPApplicationDidStart | |
//! | SIPApplicationDidFail | `reason` (string): why starting failed; followed by SIPApplicationDidEnd |
//! | SIPApplicationWillEnd | |
//! | SIPApplicationDidEnd | |

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use super::storage::Storage;
use crate::driver::runtime::RuntimeThread;

/// Lifecycle state of a `SIPApplication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationState {
    Stopped,
    Starting,
    Started,
    Stopping,
}

impl ApplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationState::Stopped => "stopped",
            ApplicationState::Starting => "starting",
            ApplicationState::Started => "started",
            ApplicationState::Stopping => "stopping",
        }
    }
}

impl fmt::Display for ApplicationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What subsystems get while starting and stopping.
pub(crate) struct AppContext {
    pub storage: Arc<dyn Storage>,
    pub configuration: Map<String, Value>,
    /// The live settings document (after the configuration subsystem).
    pub settings: Option<Arc<super::settings::SettingsStore>>,
    pub runtime: Option<RuntimeThread>,
    pub engine: Option<super::engine::EngineHandle>,
    pub accounts: Option<super::accounts::AccountManager>,
}

/// One part of the application that starts in order and stops in reverse.
pub(crate) trait Subsystem: Send {
    fn name(&self) -> &'static str;
    fn start(&mut self, ctx: &mut AppContext) -> Result<()>;
    fn stop(&mut self, ctx: &mut AppContext);
}

/// Loads the configuration document from the storage.
struct ConfigurationSubsystem;

impl Subsystem for ConfigurationSubsystem {
    fn name(&self) -> &'static str {
        "configuration"
    }
    fn start(&mut self, ctx: &mut AppContext) -> Result<()> {
        ctx.configuration = ctx.storage.load()?;
        ctx.settings = Some(Arc::new(super::settings::SettingsStore::new(
            ctx.storage.clone(),
            ctx.configuration.clone(),
        )));
        Ok(())
    }
    fn stop(&mut self, ctx: &mut AppContext) {
        ctx.configuration.clear();
        ctx.settings = None;
    }
}

/// The runtime thread that owns sockets and timers.
struct RuntimeSubsystem;

impl Subsystem for RuntimeSubsystem {
    fn name(&self) -> &'static str {
        "runtime"
    }
    fn start(&mut self, ctx: &mut AppContext) -> Result<()> {
        let rt = RuntimeThread::spawn("sipsimple-runtime")
            .map_err(|e| Error::io("cannot start the runtime thread", e))?;
        ctx.runtime = Some(rt);
        Ok(())
    }
    fn stop(&mut self, ctx: &mut AppContext) {
        if let Some(rt) = ctx.runtime.take() {
            rt.shutdown();
        }
    }
}

fn default_subsystems() -> Vec<Box<dyn Subsystem>> {
    vec![
        Box::new(ConfigurationSubsystem),
        Box::new(RuntimeSubsystem),
        Box::new(super::engine::EngineSubsystem),
        Box::new(super::accounts::AccountSubsystem),
    ]
}

struct Running {
    ctx: AppContext,
    /// Started subsystems, in start order.
    started: Vec<Box<dyn Subsystem>>,
}

struct Inner {
    sender: Sender,
    /// The sender id of SIPSimpleSettings notifications.
    settings_id: ObjectId,
    /// Serialises start and stop. Never held while waiting for notifications
    /// to be delivered, so observers may call start/stop.
    lifecycle: Mutex<()>,
    state: Mutex<ApplicationState>,
    running: Mutex<Option<Running>>,
    subsystem_factory: fn() -> Vec<Box<dyn Subsystem>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle went away while running (e.g. a foreign GC thread):
        // stop without blocking. The runtime thread is told to stop and not joined.
        if let Some(mut running) = self.running.get_mut().take() {
            // Dropping the runtime first signals it without a join; the engine's
            // stop then finds nothing left to join.
            drop(running.ctx.runtime.take());
            for mut s in running.started.drain(..).rev() {
                s.stop(&mut running.ctx);
            }
        }
    }
}

/// The application: owns the runtime thread and the subsystems. Cheap to clone
/// (clones share the same application); all methods take `&self` and may be
/// called from any thread, including from inside an observer.
#[derive(Clone)]
pub struct SIPApplication {
    inner: Arc<Inner>,
}

impl Default for SIPApplication {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SIPApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SIPApplication")
            .field("id", &self.inner.sender.id.0)
            .field("state", &self.state())
            .finish()
    }
}

/// How long `stop()` waits for SIPApplicationDidEnd to reach observers.
const STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl SIPApplication {
    pub const WILL_START: &'static str = "SIPApplicationWillStart";
    pub const DID_START: &'static str = "SIPApplicationDidStart";
    pub const DID_FAIL: &'static str = "SIPApplicationDidFail";
    pub const WILL_END: &'static str = "SIPApplicationWillEnd";
    pub const DID_END: &'static str = "SIPApplicationDidEnd";

    /// A new, stopped application.
    pub fn new() -> Self {
        Self::with_subsystems(default_subsystems)
    }

    pub(crate) fn with_subsystems(factory: fn() -> Vec<Box<dyn Subsystem>>) -> Self {
        SIPApplication {
            inner: Arc::new(Inner {
                sender: Sender {
                    id: ObjectId::new(),
                    kind: "SIPApplication",
                },
                settings_id: ObjectId::new(),
                lifecycle: Mutex::new(()),
                state: Mutex::new(ApplicationState::Stopped),
                running: Mutex::new(None),
                subsystem_factory: factory,
            }),
        }
    }

    /// The sender id of this application's notifications.
    pub fn id(&self) -> ObjectId {
        self.inner.sender.id
    }

    pub fn state(&self) -> ApplicationState {
        *self.inner.state.lock()
    }

    pub fn is_running(&self) -> bool {
        self.state() == ApplicationState::Started
    }

    /// A copy of the configuration document loaded at start (empty when stopped).
    pub fn configuration(&self) -> Map<String, Value> {
        self.inner
            .running
            .lock()
            .as_ref()
            .map(|r| r.ctx.configuration.clone())
            .unwrap_or_default()
    }

    /// The storage given to `start`, while running.
    pub fn storage(&self) -> Option<Arc<dyn Storage>> {
        self.inner
            .running
            .lock()
            .as_ref()
            .map(|r| r.ctx.storage.clone())
    }

    /// A handle to the runtime thread, while running (for the engine's layers).
    #[allow(dead_code)]
    pub(crate) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.inner
            .running
            .lock()
            .as_ref()
            .and_then(|r| r.ctx.runtime.as_ref().map(|rt| rt.handle().clone()))
    }

    fn engine(&self) -> Option<super::engine::EngineHandle> {
        self.inner
            .running
            .lock()
            .as_ref()
            .and_then(|r| r.ctx.engine.clone())
    }

    /// The SIP engine's counters, while running.
    pub fn engine_statistics(&self) -> Option<crate::driver::engine::EngineStats> {
        self.engine().map(|e| e.stats())
    }

    /// Where a SIP transport listens (with the port chosen for port 0), while running.
    pub fn sip_local_address(
        &self,
        transport: crate::proto::sip::transaction::TransportKind,
    ) -> Option<std::net::SocketAddr> {
        self.engine().and_then(|e| e.local_address(transport))
    }

    /// Turn SIPEngineSIPTrace notifications on or off (initially from
    /// `logs.trace_sip`). An error when not running.
    pub fn set_sip_trace(&self, on: bool) -> Result<()> {
        let e = self
            .engine()
            .ok_or_else(|| Error::InvalidState("SIPApplication is not running".into()))?;
        e.set_trace(on);
        Ok(())
    }

    /// The sender id of the engine's notifications (SIPEngineSIPTrace), while running.
    /// The AccountManager of the running application.
    pub fn account_manager(&self) -> Result<super::accounts::AccountManager> {
        self.inner
            .running
            .lock()
            .as_ref()
            .and_then(|r| r.ctx.accounts.clone())
            .ok_or_else(|| Error::InvalidState("SIPApplication is not running".into()))
    }

    /// SIPSimpleSettings of the running application.
    pub fn settings(&self) -> Result<super::settings::SIPSimpleSettings> {
        let r = self.inner.running.lock();
        let store = r
            .as_ref()
            .and_then(|r| r.ctx.settings.clone())
            .ok_or_else(|| Error::InvalidState("SIPApplication is not running".into()))?;
        Ok(super::settings::SIPSimpleSettings::new(
            store,
            self.inner.settings_id,
        ))
    }

    /// Tell the running application the network changed (new address,
    /// interface up): accounts register again at once.
    pub fn network_changed(&self) -> Result<()> {
        self.account_manager()?.network_changed();
        Ok(())
    }

    /// The SessionManager of the running application.
    pub fn session_manager(&self) -> Result<super::session::SessionManager> {
        self.engine()
            .map(|e| super::session::SessionManager::new(e.sessions))
            .ok_or_else(|| Error::InvalidState("SIPApplication is not running".into()))
    }

    pub fn engine_id(&self) -> Option<ObjectId> {
        self.engine().map(|e| e.sender.id)
    }

    fn post(&self, name: &str, data: NotificationData) {
        NotificationCenter::default().post_notification(name, &self.inner.sender, data);
    }

    fn set_state(&self, s: ApplicationState) {
        *self.inner.state.lock() = s;
    }

    /// Start every subsystem in order. Posts SIPApplicationWillStart, then
    /// SIPApplicationDidStart, or SIPApplicationDidFail (reason) and
    /// SIPApplicationDidEnd after undoing what had started. Starting an
    /// application that is not stopped is an `InvalidState` error.
    pub fn start(&self, storage: Arc<dyn Storage>) -> Result<()> {
        let result = {
            let _lifecycle = self.inner.lifecycle.lock();
            let state = self.state();
            if state != ApplicationState::Stopped {
                return Err(Error::InvalidState(format!(
                    "SIPApplication is {state}; start() needs it stopped"
                )));
            }
            self.set_state(ApplicationState::Starting);
            self.post(Self::WILL_START, NotificationData::new());
            let mut ctx = AppContext {
                storage,
                configuration: Map::new(),
                settings: None,
                runtime: None,
                engine: None,
                accounts: None,
            };
            let mut started: Vec<Box<dyn Subsystem>> = Vec::new();
            let mut failure = None;
            for mut sub in (self.inner.subsystem_factory)() {
                match sub.start(&mut ctx) {
                    Ok(()) => {
                        tracing::debug!(target: "sipsimple::application", "started {}", sub.name());
                        started.push(sub);
                    }
                    Err(e) => {
                        failure = Some((format!("{} failed to start: {e}", sub.name()), e));
                        break;
                    }
                }
            }
            match failure {
                None => {
                    *self.inner.running.lock() = Some(Running { ctx, started });
                    self.set_state(ApplicationState::Started);
                    self.post(Self::DID_START, NotificationData::new());
                    Ok(())
                }
                Some((reason, error)) => {
                    for mut sub in started.into_iter().rev() {
                        sub.stop(&mut ctx);
                    }
                    tracing::error!(target: "sipsimple::application", "{reason}");
                    self.set_state(ApplicationState::Stopped);
                    self.post(
                        Self::DID_FAIL,
                        NotificationData::new().with("reason", reason.clone()),
                    );
                    self.post(Self::DID_END, NotificationData::new());
                    Err(error)
                }
            }
        };
        // Failed starts wait like stop() does, so DidFail has been seen on return.
        if result.is_err() {
            NotificationCenter::default().flush(STOP_FLUSH_TIMEOUT);
        }
        result
    }

    /// Stop every subsystem in reverse order and join the runtime thread.
    /// A no-op when not started. Posts SIPApplicationWillEnd and
    /// SIPApplicationDidEnd; called outside an observer, it returns after
    /// SIPApplicationDidEnd has been delivered (to a bounded wait).
    pub fn stop(&self) {
        let stopped = {
            let _lifecycle = self.inner.lifecycle.lock();
            if self.state() != ApplicationState::Started {
                false
            } else {
                self.set_state(ApplicationState::Stopping);
                self.post(Self::WILL_END, NotificationData::new());
                let running = self.inner.running.lock().take();
                if let Some(Running {
                    mut ctx,
                    mut started,
                }) = running
                {
                    while let Some(mut sub) = started.pop() {
                        sub.stop(&mut ctx);
                        tracing::debug!(target: "sipsimple::application", "stopped {}", sub.name());
                    }
                }
                self.set_state(ApplicationState::Stopped);
                self.post(Self::DID_END, NotificationData::new());
                true
            }
        };
        if stopped {
            NotificationCenter::default().flush(STOP_FLUSH_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::storage::{FileStorage, MemoryStorage};
    use std::sync::mpsc;

    fn record(
        app: &SIPApplication,
    ) -> (
        super::super::notification::ObserverToken,
        mpsc::Receiver<String>,
    ) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let t = NotificationCenter::default().add_observer(None, Some(app.id()), move |n| {
            let _ = tx.lock().send(n.name.clone());
        });
        (t, rx)
    }

    #[test]
    fn start_stop_notifications_in_order() {
        let app = SIPApplication::new();
        let (t, rx) = record(&app);
        app.stop(); // no-op
        app.start(Arc::new(MemoryStorage::new())).unwrap();
        assert!(app.is_running());
        assert!(app.runtime().is_some());
        assert_eq!(
            app.start(Arc::new(MemoryStorage::new()))
                .unwrap_err()
                .kind(),
            crate::api::error::ErrorKind::InvalidState
        );
        app.stop();
        app.stop();
        assert_eq!(app.state(), ApplicationState::Stopped);
        let names: Vec<String> = rx.try_iter().collect();
        assert_eq!(
            names,
            [
                "SIPApplicationWillStart",
                "SIPApplicationDidStart",
                "SIPApplicationWillEnd",
                "SIPApplicationDidEnd"
            ]
        );
        NotificationCenter::default().remove_observer(t);
    }

    #[test]
    fn corrupt_storage_fails_start_with_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), b"{oops").unwrap();
        let app = SIPApplication::new();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let t = NotificationCenter::default().add_observer(None, Some(app.id()), move |n| {
            let _ = tx
                .lock()
                .send((n.name.clone(), n.data.get_str("reason").map(str::to_owned)));
        });
        let err = app
            .start(Arc::new(FileStorage::new(dir.path())))
            .unwrap_err();
        assert!(err.to_string().contains("config.json"));
        assert_eq!(err.kind(), crate::api::error::ErrorKind::Storage);
        assert_eq!(app.state(), ApplicationState::Stopped);
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got[0].0, "SIPApplicationWillStart");
        assert_eq!(got[1].0, "SIPApplicationDidFail");
        assert!(got[1].1.as_deref().unwrap().contains("config.json"));
        assert_eq!(got[2].0, "SIPApplicationDidEnd");
        assert_eq!(
            std::fs::read(dir.path().join("config.json")).unwrap(),
            b"{oops"
        );
        NotificationCenter::default().remove_observer(t);
    }

    struct Recorder(&'static str);
    static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());
    impl Subsystem for Recorder {
        fn name(&self) -> &'static str {
            self.0
        }
        fn start(&mut self, _: &mut AppContext) -> Result<()> {
            ORDER.lock().push(format!("start {}", self.0));
            if self.0 == "fails" {
                return Err(Error::Internal("injected".into()));
            }
            Ok(())
        }
        fn stop(&mut self, _: &mut AppContext) {
            ORDER.lock().push(format!("stop {}", self.0));
        }
    }

    #[test]
    fn subsystems_start_in_order_and_stop_in_reverse() {
        let app = SIPApplication::with_subsystems(|| {
            vec![
                Box::new(Recorder("a")),
                Box::new(Recorder("b")),
                Box::new(Recorder("c")),
            ]
        });
        app.start(Arc::new(MemoryStorage::new())).unwrap();
        app.stop();
        let failing = SIPApplication::with_subsystems(|| {
            vec![
                Box::new(Recorder("x")),
                Box::new(Recorder("fails")),
                Box::new(Recorder("never")),
            ]
        });
        assert!(failing.start(Arc::new(MemoryStorage::new())).is_err());
        assert_eq!(
            *ORDER.lock(),
            [
                "start a",
                "start b",
                "start c",
                "stop c",
                "stop b",
                "stop a",
                "start x",
                "start fails",
                "stop x"
            ]
        );
    }

    #[test]
    fn stop_from_inside_an_observer() {
        let app = SIPApplication::new();
        let app2 = app.clone();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let t = NotificationCenter::default().add_observer(
            Some(SIPApplication::DID_START),
            Some(app.id()),
            move |_| {
                app2.stop();
                let _ = tx.lock().send(app2.state());
            },
        );
        app.start(Arc::new(MemoryStorage::new())).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            ApplicationState::Stopped
        );
        NotificationCenter::default().remove_observer(t);
    }

    #[test]
    fn dropping_a_running_application_does_not_block() {
        let app = SIPApplication::new();
        app.start(Arc::new(MemoryStorage::new())).unwrap();
        drop(app);
    }
}
