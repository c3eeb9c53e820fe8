//! FileTransferStream (type `file-transfer`): files over MSRP as RFC 5547
//! describes, push (we offer a file, `a=sendonly`) and pull (we ask for a
//! file the peer has, `a=recvonly`), with the SDK's SDP:
//!
//! ```text
//! m=message 2855 TCP/TLS/MSRP *
//! a=path:msrps://192.168.1.6:2855/e593357dc9abe90754bd;tcp
//! a=sendonly
//! a=accept-types:*
//! a=accept-wrapped-types:*
//! a=file-selector:name:"reblink.pdf" type:com.adobe.pdf size:268759 hash:sha1:60:A1:...
//! a=file-transfer-id:...
//! ```
//!
//! Files stream from and to disk in chunks (1 MiB direct, 8 KiB through
//! a relay); nothing holds a whole file in memory. The receiver writes to
//! a hidden partial file in the download directory, hashing the bytes as
//! they arrive, and moves it to its final name (never over an existing
//! file) only when the hash from the file-selector matches; a mismatch is
//! refused on the wire (the sender hears it) and the partial file removed.
//! An interrupted transfer keeps its partial file: the next offer of the
//! same file (same name, size and hash) is answered with `a=file-range`
//! so only the missing bytes move, and the final hash still covers the
//! whole file.
//!
//! | notification | data |
//! |---|---|
//! | FileTransferStreamDidDeliverChunk | `transferred_bytes`, `total_bytes` (sender; at most 10 a second, and the last) |
//! | FileTransferStreamDidNotDeliverChunk | `code`, `reason` (sender) |
//! | FileTransferStreamGotChunk | `transferred_bytes`, `total_bytes` (receiver; at most 10 a second, and the last) |
//! | FileTransferStreamDidChangeProgress | `direction` (send, receive), `transferred_bytes`, `total_bytes`, `percent` (at most 4 a second, and 100) |
//! | FileTransferStreamDidFinish | `error` (bool), `reason`, `direction`, `file_name`, `file_path` (receiver, when saved), `transferred_bytes`, `total_bytes`, `hash`, `hash_verified`, `resumed_from` |
//!
//! Every transfer that was offered or accepted ends in exactly one
//! FileTransferStreamDidFinish.
//!
//! Settings: `file_transfer.directory` (where received files go; default
//! the user's download directory), `file_transfer.hashes` (what a pushed
//! file's selector carries: `sha-1`, the SDK's, and/or `sha-256`),
//! `file_transfer.max_rate` (bytes per second a sender keeps to; 0: no
//! limit). A relay may need a rate: hop-by-hop responses do not say that
//! the far end keeps up, and a relay that queues what the receiver does
//! not take may drop the connection when its queue fills.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::msrp_base::{complete, is_msrp_proto, remote_msrp, Link};
use crate::api::engine::setting;
use crate::api::error::{Error, Result};
use crate::api::msrp::{
    new_session_id, path_to_string, MSRPSession, MessageSource, ReportMode, SendOptions,
    SessionConfig, SessionEvent,
};
use crate::api::notification::{NotificationCenter, NotificationData, ObjectId, Sender};
use crate::api::stream::{
    MediaStream, MediaStreamFactory, StreamContext, StreamFuture, StreamHandle,
};
use crate::driver::file_io::{self, FileWriter};
use crate::proto::msrp::session::Event as CoreEvent;
use crate::proto::sdp::file_transfer::{
    sanitize_file_name, FileHash, FileRange, FileSelector, FileTransferSdp, HashAlgorithm,
};
use crate::proto::sdp::{Attribute, MediaDescription, SessionDescription, Setup};

pub const TYPE: &str = "file-transfer";
pub const DID_DELIVER_CHUNK: &str = "FileTransferStreamDidDeliverChunk";
pub const DID_NOT_DELIVER_CHUNK: &str = "FileTransferStreamDidNotDeliverChunk";
pub const GOT_CHUNK: &str = "FileTransferStreamGotChunk";
pub const DID_CHANGE_PROGRESS: &str = "FileTransferStreamDidChangeProgress";
pub const DID_FINISH: &str = "FileTransferStreamDidFinish";

/// Chunk size on a direct connection: bulk moves faster in large chunks.
const CHUNK_SIZE: usize = 1024 * 1024;
const CHUNK_EVERY: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Which way the file goes, and who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// We offer a file (push).
    Push { path: PathBuf },
    /// We ask the peer for a file (pull).
    Pull,
    /// The peer offers a file: we receive.
    IncomingPush,
    /// The peer asks for a file: we send the one the application gives.
    IncomingPull,
}

impl Role {
    fn sends(&self) -> bool {
        matches!(self, Role::Push { .. } | Role::IncomingPull)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Initialized,
    Started,
    Ended,
}

struct State {
    phase: Phase,
    role: Role,
    /// Ours (push, incoming pull: the file we send) or the one we want.
    sdp: FileTransferSdp,
    /// The peer's offer: msrps and its a=setup.
    offer: Option<(bool, Option<Setup>)>,
    link: Option<Link>,
    /// The file we send (push, incoming pull).
    source: Option<PathBuf>,
    /// Where a received file goes.
    directory: Option<PathBuf>,
    partial: Option<PathBuf>,
    /// Bytes the receiver already has (resume), 0-based.
    resume_from: u64,
    session: Option<Arc<MSRPSession>>,
    /// Bytes per second we send at most (`file_transfer.max_rate`).
    max_rate: Option<u64>,
}

/// What the event pump and the application share.
struct Shared {
    sender: Sender,
    transferred: AtomicU64,
    total: AtomicU64,
    last_chunk_note: Mutex<Option<Instant>>,
    last_progress: Mutex<Option<Instant>>,
    finished: AtomicBool,
    ended_locally: AtomicBool,
    file_path: Mutex<Option<PathBuf>>,
    result: Mutex<Option<Value>>,
}

impl Shared {
    fn post(&self, name: &str, data: NotificationData) {
        NotificationCenter::default().post_notification(name, &self.sender, data);
    }

    /// Bytes moved so far: chunk and progress notifications, rate-limited.
    fn moved(&self, transferred: u64, sending: bool) {
        self.transferred.fetch_max(transferred, Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let last = transferred >= total;
        let due = |slot: &Mutex<Option<Instant>>, every: Duration| {
            let mut l = slot.lock();
            let now = Instant::now();
            if last || l.is_none_or(|t| now.duration_since(t) >= every) {
                *l = Some(now);
                true
            } else {
                false
            }
        };
        let counts = || {
            NotificationData::new()
                .with("transferred_bytes", transferred)
                .with("total_bytes", total)
        };
        if due(&self.last_chunk_note, CHUNK_EVERY) {
            self.post(
                if sending {
                    DID_DELIVER_CHUNK
                } else {
                    GOT_CHUNK
                },
                counts(),
            );
        }
        if due(&self.last_progress, PROGRESS_EVERY) {
            let percent = transferred
                .saturating_mul(100)
                .checked_div(total)
                .map_or(100, |p| p.min(100));
            self.post(
                DID_CHANGE_PROGRESS,
                counts()
                    .with("direction", if sending { "send" } else { "receive" })
                    .with("percent", percent),
            );
        }
    }

    /// The one DidFinish of this transfer.
    fn finish(&self, data: NotificationData) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.result.lock() = serde_json::from_str(&data.to_json()).ok();
        self.post(DID_FINISH, data);
    }
}

/// A file transfer stream.
pub struct FileTransferStream {
    id: ObjectId,
    state: Mutex<State>,
    shared: Arc<Shared>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

fn hash_hex(h: &FileHash) -> String {
    h.to_string()
}

impl FileTransferStream {
    fn new(role: Role, sdp: FileTransferSdp) -> FileTransferStream {
        let id = ObjectId::new();
        FileTransferStream {
            id,
            state: Mutex::new(State {
                phase: Phase::New,
                role,
                sdp,
                offer: None,
                link: None,
                source: None,
                directory: None,
                partial: None,
                resume_from: 0,
                session: None,
                max_rate: None,
            }),
            shared: Arc::new(Shared {
                sender: Sender {
                    id,
                    kind: "MediaStream",
                },
                transferred: AtomicU64::new(0),
                total: AtomicU64::new(0),
                last_chunk_note: Mutex::new(None),
                last_progress: Mutex::new(None),
                finished: AtomicBool::new(false),
                ended_locally: AtomicBool::new(false),
                file_path: Mutex::new(None),
                result: Mutex::new(None),
            }),
        }
    }

    /// A stream that offers the file at `path` (push). The file's size,
    /// type and hash go in the offer when the session starts it.
    pub fn push(path: impl AsRef<Path>) -> Result<StreamHandle> {
        let path = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&path).map_err(|e| io_err("cannot read", &path, e))?;
        if !meta.is_file() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{} has no file name", path.display()))
            })?;
        let sdp = FileTransferSdp {
            selector: FileSelector {
                name: Some(name),
                content_type: Some(guess_type(&path).into()),
                size: Some(meta.len()),
                hashes: Vec::new(),
            },
            transfer_id: Some(new_session_id()),
            disposition: Some("attachment".into()),
            ..FileTransferSdp::default()
        };
        let s = FileTransferStream::new(Role::Push { path: path.clone() }, sdp);
        s.state.lock().source = Some(path);
        Ok(StreamHandle::new(Arc::new(s)))
    }

    /// A stream that asks the peer for the file `selector` names (pull);
    /// it is saved like a pushed file.
    pub fn pull(selector: FileSelector) -> Result<StreamHandle> {
        if selector.name.is_none() && selector.hashes.is_empty() {
            return Err(Error::InvalidArgument(
                "a pull needs the file's name or hash".into(),
            ));
        }
        let sdp = FileTransferSdp {
            selector,
            transfer_id: Some(new_session_id()),
            ..FileTransferSdp::default()
        };
        Ok(StreamHandle::new(Arc::new(FileTransferStream::new(
            Role::Pull,
            sdp,
        ))))
    }

    /// The file transfer stream behind a session's stream handle.
    pub fn of(handle: &StreamHandle) -> Option<&FileTransferStream> {
        handle
            .implementation()
            .as_any()?
            .downcast_ref::<FileTransferStream>()
    }

    /// The file as the offer describes it (for an incoming stream: what
    /// the peer offers or asks for).
    pub fn file_selector(&self) -> FileSelector {
        self.state.lock().sdp.selector.clone()
    }

    /// "send" or "receive".
    pub fn direction(&self) -> &'static str {
        if self.state.lock().role.sends() {
            "send"
        } else {
            "receive"
        }
    }

    /// Whether this stream asks for a file (ours) or was asked for one.
    pub fn is_pull(&self) -> bool {
        matches!(self.state.lock().role, Role::Pull | Role::IncomingPull)
    }

    /// Save a received file in `dir` instead of `file_transfer.directory`
    /// (before the stream is accepted or started).
    pub fn set_destination(&self, dir: impl AsRef<Path>) -> Result<()> {
        let mut st = self.state.lock();
        if st.role.sends() {
            return Err(Error::InvalidState("this stream sends a file".into()));
        }
        if st.phase != Phase::New {
            return Err(Error::InvalidState(
                "the destination is set before the stream starts".into(),
            ));
        }
        st.directory = Some(dir.as_ref().to_path_buf());
        Ok(())
    }

    /// The file to send when the peer pulls one (before accepting): it
    /// must match what the peer asked for (name, size and hash where the
    /// request gives them; the hash is checked when the stream starts).
    pub fn set_source(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref().to_path_buf();
        let meta = std::fs::metadata(&path).map_err(|e| io_err("cannot read", &path, e))?;
        let mut st = self.state.lock();
        if st.role != Role::IncomingPull {
            return Err(Error::InvalidState(
                "only a pull request takes a source file".into(),
            ));
        }
        if st.phase != Phase::New {
            return Err(Error::InvalidState(
                "the source is set before the stream is accepted".into(),
            ));
        }
        if !meta.is_file() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        if st.sdp.selector.size.is_some_and(|s| s != meta.len()) {
            return Err(Error::InvalidArgument(format!(
                "{} has {} bytes; the peer asks for {}",
                path.display(),
                meta.len(),
                st.sdp.selector.size.unwrap_or(0)
            )));
        }
        st.source = Some(path);
        Ok(())
    }

    /// Where the received file was saved, once it was.
    pub fn file_path(&self) -> Option<PathBuf> {
        self.shared.file_path.lock().clone()
    }

    /// Bytes moved so far and the file's size.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.shared.transferred.load(Ordering::Relaxed),
            self.shared.total.load(Ordering::Relaxed),
        )
    }

    fn finish_data(&self, error: Option<&str>) -> NotificationData {
        self.snapshot().finish_data(&self.shared, error, None)
    }
}

impl Snapshot {
    /// FileTransferStreamDidFinish's data.
    fn finish_data(
        &self,
        shared: &Shared,
        error: Option<&str>,
        hash: Option<(&FileHash, bool)>,
    ) -> NotificationData {
        finish_data(self, shared, error, hash)
    }
}

fn finish_data(
    st: &Snapshot,
    shared: &Shared,
    error: Option<&str>,
    hash: Option<(&FileHash, bool)>,
) -> NotificationData {
    let path = shared.file_path.lock().clone();
    NotificationData::new()
        .with("error", error.is_some())
        .with("reason", error.map(Value::from).unwrap_or(Value::Null))
        .with("direction", if st.sends { "send" } else { "receive" })
        .with(
            "file_name",
            st.selector
                .name
                .clone()
                .map(Value::from)
                .unwrap_or(Value::Null),
        )
        .with(
            "file_path",
            path.map(|p| Value::from(p.display().to_string()))
                .unwrap_or(Value::Null),
        )
        .with(
            "transferred_bytes",
            shared.transferred.load(Ordering::Relaxed),
        )
        .with("total_bytes", shared.total.load(Ordering::Relaxed))
        .with(
            "hash",
            hash.map(|(h, _)| Value::from(hash_hex(h)))
                .unwrap_or(Value::Null),
        )
        .with("hash_verified", hash.is_some_and(|(_, ok)| ok))
        .with("resumed_from", st.resume_from)
}

/// A MIME type from the file name, for the selector and Content-Type.
fn guess_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "zip" => "application/zip",
        "json" => "application/json",
        "odt" => "application/vnd.oasis.opendocument.text",
        _ => "application/octet-stream",
    }
}

/// The hash algorithms a pushed file's selector carries.
fn hash_settings(ctx: &StreamContext) -> Result<Vec<HashAlgorithm>> {
    match setting(&ctx.settings, "file_transfer.hashes") {
        None | Some(Value::Null) => Ok(vec![HashAlgorithm::Sha1]),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| match v.as_str().map(HashAlgorithm::parse) {
                Some(h @ (HashAlgorithm::Sha1 | HashAlgorithm::Sha256)) => Ok(h),
                _ => Err(Error::InvalidArgument(format!(
                    "file_transfer.hashes: {v} is neither sha-1 nor sha-256"
                ))),
            })
            .collect(),
        Some(v) => Err(Error::InvalidArgument(format!(
            "file_transfer.hashes must be a list of sha-1 / sha-256, not {v}"
        ))),
    }
}

fn download_dir(ctx: &StreamContext, chosen: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match chosen {
        Some(d) => d,
        None => match setting(&ctx.settings, "file_transfer.directory") {
            Some(Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            None | Some(Value::Null) | Some(Value::String(_)) => file_io::default_download_dir(),
            Some(v) => {
                return Err(Error::InvalidArgument(format!(
                    "file_transfer.directory must be a path, not {v}"
                )))
            }
        },
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
    Ok(dir)
}

/// The partial file of an earlier attempt at the same file, and how many
/// of its bytes can be kept. Only files with a size and a hash resume.
fn find_partial(dir: &Path, sel: &FileSelector, unique: &str) -> (PathBuf, u64) {
    let safe = sanitize_file_name(sel.name.as_deref().unwrap_or("file"));
    let hash = sel.check_hash();
    let p = file_io::partial_path(dir, &safe, hash, unique);
    let have = match (hash, sel.size) {
        (Some(_), Some(size)) => std::fs::metadata(&p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .filter(|&l| l > 0 && l < size)
            .unwrap_or(0),
        _ => 0,
    };
    (p, have)
}

impl MediaStream for FileTransferStream {
    fn stream_type(&self) -> &str {
        TYPE
    }

    fn object_id(&self) -> Option<ObjectId> {
        Some(self.id)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }

    fn initialize<'a>(&'a self, ctx: &'a StreamContext) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            let (role, offer, source, chosen_dir, selector) = {
                let st = self.state.lock();
                if st.phase != Phase::New {
                    return Err(Error::InvalidState(
                        "the file transfer stream was initialized".into(),
                    ));
                }
                (
                    st.role.clone(),
                    st.offer,
                    st.source.clone(),
                    st.directory.clone(),
                    st.sdp.selector.clone(),
                )
            };
            let incoming = ctx.direction == "incoming";
            let hashes = hash_settings(ctx)?;
            let max_rate = match setting(&ctx.settings, "file_transfer.max_rate") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(0) => None,
                    Some(r) => Some(r),
                    None => {
                        return Err(Error::InvalidArgument(format!(
                            "file_transfer.max_rate must be bytes per second, not {v}"
                        )))
                    }
                },
            };
            // The sender hashes its file now, for the selector (or to check
            // it is the one the peer asked for).
            let mut selector = selector;
            if role.sends() {
                let path = source.ok_or_else(|| {
                    Error::InvalidState(
                        "the peer asks for a file: give it with set_source before accepting".into(),
                    )
                })?;
                let wanted = if matches!(role, Role::IncomingPull) {
                    let mut w: Vec<HashAlgorithm> = selector
                        .hashes
                        .iter()
                        .map(|h| h.algorithm.clone())
                        .collect();
                    w.retain(|a| a.digest_len().is_some());
                    if w.is_empty() {
                        w = hashes.clone();
                    }
                    w
                } else {
                    hashes.clone()
                };
                let p = path.clone();
                let (size, found) =
                    tokio::task::spawn_blocking(move || file_io::hash_file(&p, &wanted))
                        .await
                        .map_err(|e| Error::Internal(format!("hashing: {e}")))?
                        .map_err(|e| io_err("cannot read", &path, e))?;
                if matches!(role, Role::IncomingPull) {
                    let mine = FileSelector {
                        name: selector.name.clone(),
                        content_type: selector.content_type.clone(),
                        size: Some(size),
                        hashes: found.clone(),
                    };
                    if !mine.matches(&selector) {
                        return Err(Error::InvalidArgument(format!(
                            "{} is not the file the peer asks for",
                            path.display()
                        )));
                    }
                }
                selector.size = Some(size);
                selector.hashes = found;
                if selector.name.is_none() {
                    selector.name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                }
                self.shared.total.store(size, Ordering::Relaxed);
            }
            // The receiver picks its directory and looks for an earlier
            // attempt to resume.
            let mut receive_at = None;
            if !role.sends() {
                let dir = download_dir(ctx, chosen_dir)?;
                let (partial, have) = find_partial(&dir, &selector, &new_session_id());
                // A push that starts later than what we have cannot be
                // assembled; one that starts earlier is answered with
                // where we want it to start.
                let offered_start = {
                    let st = self.state.lock();
                    st.sdp.range.map(|r| r.offset()).unwrap_or(0)
                };
                if offered_start > have {
                    return Err(Error::InvalidArgument(format!(
                        "the peer offers the file from byte {} on and we have {have}",
                        offered_start + 1
                    )));
                }
                receive_at = Some((dir, partial, have));
                self.shared
                    .total
                    .store(selector.size.unwrap_or(0), Ordering::Relaxed);
            }
            let link_offer = if incoming {
                Some(offer.unwrap_or((false, None)))
            } else {
                None
            };
            let link = Link::prepare(ctx, link_offer).await?;
            let mut st = self.state.lock();
            st.max_rate = max_rate;
            st.sdp.selector = selector;
            if let Some((dir, partial, have)) = receive_at {
                st.directory = Some(dir);
                st.partial = Some(partial);
                st.resume_from = have;
                self.shared.transferred.store(have, Ordering::Relaxed);
                if have > 0 {
                    st.sdp.range = Some(FileRange {
                        start: have + 1,
                        stop: st.sdp.selector.size,
                    });
                }
            }
            st.link = Some(link);
            st.phase = Phase::Initialized;
            Ok(())
        })
    }

    fn get_local_media(&self, _remote: Option<&MediaDescription>) -> Result<MediaDescription> {
        let st = self.state.lock();
        let mut m = st
            .link
            .as_ref()
            .ok_or_else(|| {
                Error::InvalidState("the file transfer stream is not initialized".into())
            })?
            .media("message")?;
        m.push_attribute(Attribute::flag(if st.role.sends() {
            "sendonly"
        } else {
            "recvonly"
        }));
        m.push_attribute(Attribute::value("accept-types", "*"));
        m.push_attribute(Attribute::value("accept-wrapped-types", "*"));
        st.sdp.add_to(&mut m);
        Ok(m)
    }

    fn start<'a>(
        &'a self,
        _local_sdp: &'a SessionDescription,
        remote_sdp: &'a SessionDescription,
        index: usize,
    ) -> StreamFuture<'a, ()> {
        Box::pin(async move {
            let (endpoint, remote, role) = {
                let mut st = self.state.lock();
                let initialized = st.phase == Phase::Initialized;
                let Some(link) = st.link.as_mut().filter(|_| initialized) else {
                    return Err(Error::InvalidState(
                        "the file transfer stream is not initialized".into(),
                    ));
                };
                let (remote, rm) = remote_msrp(remote_sdp, index, link.offered_connect())?;
                let endpoint = link.take_endpoint();
                let theirs = FileTransferSdp::from_media(rm)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let role = st.role.clone();
                match role {
                    // The answer's range says where the receiver wants us
                    // to start.
                    Role::Push { .. } => {
                        st.resume_from = theirs.range.map(|r| r.offset()).unwrap_or(0);
                    }
                    // The peer's offer said where to start.
                    Role::IncomingPull => {
                        st.resume_from = st.sdp.range.map(|r| r.offset()).unwrap_or(0);
                    }
                    // The sender's selector is the whole truth about the
                    // file we pull (size, hash).
                    Role::Pull => {
                        if !theirs.selector.matches(&st.sdp.selector) {
                            return Err(Error::InvalidArgument(
                                "the peer offers another file than the one asked for".into(),
                            ));
                        }
                        st.sdp.selector = theirs.selector;
                        self.shared
                            .total
                            .store(st.sdp.selector.size.unwrap_or(0), Ordering::Relaxed);
                    }
                    Role::IncomingPush => {}
                }
                (endpoint, remote, role)
            };
            let endpoint = endpoint.ok_or_else(|| {
                Error::InvalidState("the file transfer stream has no connection".into())
            })?;
            let transport = complete(endpoint, remote).await?;
            let (resume_from, total) = {
                let st = self.state.lock();
                (st.resume_from, st.sdp.selector.size)
            };
            let config = SessionConfig {
                chunk_size: CHUNK_SIZE,
                defer_completion: true,
                // Checking the hash and flushing a large file to disk may
                // take longer than the sender's transaction timeout.
                verdict_by_report: true,
                max_incoming_message: total,
                max_incoming_messages: 4,
                // A chunk's response waits behind everything in flight
                // before it (our queues, both socket buffers, the
                // receiver's disk): a receiver whose disk is flushing
                // gigabytes can take longer than MSRP's usual 30 s.
                transaction_timeout: std::time::Duration::from_secs(120),
                incoming_offset: if role.sends() { 0 } else { resume_from },
                ..SessionConfig::default()
            };
            let session = Arc::new(transport.into_session(config));
            let writer = if role.sends() {
                None
            } else {
                let (partial, algorithm) = {
                    let st = self.state.lock();
                    (
                        st.partial.clone(),
                        st.sdp.selector.check_hash().map(|h| h.algorithm.clone()),
                    )
                };
                let partial = partial.ok_or_else(|| {
                    Error::InvalidState("the receiver has no partial file".into())
                })?;
                let p = partial.clone();
                let w = tokio::task::spawn_blocking(move || {
                    FileWriter::open(&p, resume_from, algorithm)
                })
                .await
                .map_err(|e| Error::Internal(format!("file writer: {e}")))?
                .map_err(|e| io_err("cannot write", &partial, e))?;
                Some(w)
            };
            let source = if role.sends() {
                let path = {
                    let st = self.state.lock();
                    st.source.clone()
                }
                .ok_or_else(|| Error::InvalidState("no file to send".into()))?;
                let p = path.clone();
                let max_rate = self.state.lock().max_rate;
                let reader = tokio::task::spawn_blocking(move || {
                    let mut f = std::fs::File::open(&p)?;
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(resume_from))?;
                    file_io::read_ahead(f, max_rate)
                })
                .await
                .map_err(|e| Error::Internal(format!("file reader: {e}")))?
                .map_err(|e| io_err("cannot read", &path, e))?;
                Some(reader)
            } else {
                None
            };
            {
                let mut st = self.state.lock();
                if st.phase == Phase::Ended {
                    session.shutdown();
                    return Err(Error::InvalidState(
                        "the file transfer stream ended while starting".into(),
                    ));
                }
                st.session = Some(session.clone());
                st.phase = Phase::Started;
            }
            if let Some(f) = source {
                let (ct, size) = {
                    let st = self.state.lock();
                    let ct = st
                        .sdp
                        .selector
                        .content_type
                        .clone()
                        .filter(|t| t.contains('/'))
                        .unwrap_or_else(|| "application/octet-stream".into());
                    (ct, st.sdp.selector.size.unwrap_or(0))
                };
                self.shared
                    .transferred
                    .store(resume_from, Ordering::Relaxed);
                session
                    .send_message(
                        MessageSource::Blocks(f),
                        SendOptions {
                            content_type: ct,
                            size: Some(size),
                            success_report: ReportMode::Yes,
                            failure_report: ReportMode::Yes,
                            start: resume_from,
                            ..SendOptions::default()
                        },
                    )
                    .map_err(|e| Error::InvalidState(format!("the MSRP session closed: {e}")))?;
            }
            let pump = Pump {
                session: session.clone(),
                shared: self.shared.clone(),
                writer,
                file: None,
                stream: self.snapshot(),
            };
            tokio::spawn(pump.run());
            Ok(())
        })
    }

    fn end(&self) {
        let mut st = self.state.lock();
        let was = st.phase;
        st.phase = Phase::Ended;
        if let Some(l) = st.link.as_mut() {
            l.take_endpoint();
        }
        self.shared.ended_locally.store(true, Ordering::SeqCst);
        let session = st.session.take();
        drop(st);
        match session {
            // The pump reports how it ended when the session closes.
            Some(s) => s.shutdown(),
            None => {
                let why = if was == Phase::New {
                    "the transfer did not start"
                } else {
                    "the transfer was cancelled before it started"
                };
                self.shared.finish(self.finish_data(Some(why)));
            }
        }
    }

    fn info(&self) -> Value {
        let st = self.state.lock();
        json!({
            "direction": if st.role.sends() { "send" } else { "receive" },
            "pull": matches!(st.role, Role::Pull | Role::IncomingPull),
            "file_selector": st.sdp.selector.to_string(),
            "file_name": st.sdp.selector.name,
            "file_size": st.sdp.selector.size,
            "transfer_id": st.sdp.transfer_id,
            "local_path": st.link.as_ref().map(|l| path_to_string(&l.local_path)),
            "secure": st.link.as_ref().map(|l| l.secure).or(st.offer.map(|o| o.0)),
            "transferred_bytes": self.shared.transferred.load(Ordering::Relaxed),
            "total_bytes": self.shared.total.load(Ordering::Relaxed),
            "resumed_from": st.resume_from,
            "file_path": self.shared.file_path.lock().as_ref().map(|p| p.display().to_string()),
            "result": self.shared.result.lock().clone(),
        })
    }
}

/// What the pump needs of the stream's state once it runs.
#[derive(Clone)]
struct Snapshot {
    sends: bool,
    selector: FileSelector,
    directory: Option<PathBuf>,
    partial: Option<PathBuf>,
    resume_from: u64,
}

impl FileTransferStream {
    fn snapshot(&self) -> Snapshot {
        let st = self.state.lock();
        Snapshot {
            sends: st.role.sends(),
            selector: st.sdp.selector.clone(),
            directory: st.directory.clone(),
            partial: st.partial.clone(),
            resume_from: st.resume_from,
        }
    }
}

struct Pump {
    session: Arc<MSRPSession>,
    shared: Arc<Shared>,
    writer: Option<FileWriter>,
    /// The incoming message that is the file.
    file: Option<String>,
    stream: Snapshot,
}

impl Pump {
    fn data(&self, error: Option<&str>, hash: Option<(&FileHash, bool)>) -> NotificationData {
        self.stream.finish_data(&self.shared, error, hash)
    }

    fn fail(&self, why: &str) {
        self.shared.finish(self.data(Some(why), None));
    }

    async fn run(mut self) {
        while let Some(ev) = self.session.next_event().await {
            match ev {
                SessionEvent::Data {
                    message_id,
                    offset,
                    data,
                } => {
                    if self.file.as_deref() != Some(message_id.as_str()) {
                        continue;
                    }
                    let end = offset + data.len() as u64;
                    let written = match &mut self.writer {
                        Some(w) => w.write(offset, data).await,
                        None => Ok(()),
                    };
                    if let Err(e) = written {
                        let why = format!("cannot write the file: {e}");
                        let _ = self.session.abort_message(&message_id);
                        self.fail(&why);
                        self.session.shutdown();
                        continue;
                    }
                    self.shared.moved(end, false);
                }
                SessionEvent::Core(CoreEvent::IncomingMessage {
                    message_id,
                    content_type,
                    total,
                    ..
                }) => {
                    // The empty SEND that binds the connection has no type.
                    let bind = content_type.is_none() && total.unwrap_or(0) == 0;
                    if self.stream.sends || bind || self.file.is_some() {
                        continue;
                    }
                    self.file = Some(message_id);
                }
                SessionEvent::Core(CoreEvent::MessageComplete { message_id, size }) => {
                    if self.file.as_deref() != Some(message_id.as_str()) {
                        // Not the file (the binding SEND): taken as is.
                        let _ = self.session.complete_message(&message_id, 200, None);
                        continue;
                    }
                    let (code, comment) = self.received(size).await;
                    let _ = self
                        .session
                        .complete_message(&message_id, code, comment.as_deref());
                }
                SessionEvent::Core(CoreEvent::MessageAborted {
                    message_id,
                    by_sender,
                }) => {
                    if self.file.as_deref() == Some(message_id.as_str()) {
                        if let Some(w) = self.writer.take() {
                            w.stop().await;
                        }
                        // A closed connection is told by Closed, next.
                        if by_sender {
                            self.fail("the sender cancelled the transfer");
                        }
                    }
                }
                SessionEvent::Core(CoreEvent::ChunkResponse {
                    code,
                    comment,
                    range,
                    ..
                }) if self.stream.sends => {
                    if code == 200 {
                        self.shared.moved(range.1, true);
                    } else {
                        let reason = comment.unwrap_or_else(|| "failed".into());
                        self.shared.post(
                            DID_NOT_DELIVER_CHUNK,
                            NotificationData::new()
                                .with("code", code)
                                .with("reason", reason.as_str()),
                        );
                        self.fail(&format!("{code} {reason}"));
                    }
                }
                SessionEvent::Core(CoreEvent::Report { code, comment, .. })
                    if self.stream.sends =>
                {
                    if code == 200 {
                        let total = self.shared.total.load(Ordering::Relaxed);
                        self.shared.moved(total, true);
                        let hash = self.stream.selector.check_hash().cloned();
                        self.shared
                            .finish(self.data(None, hash.as_ref().map(|h| (h, true))));
                    } else {
                        let reason = comment.unwrap_or_default();
                        self.fail(&format!("{code} {reason}"));
                    }
                }
                SessionEvent::Core(_) => {}
                SessionEvent::Closed { error } => {
                    // Whatever was written stays for a resume, complete
                    // on disk before anyone hears the transfer ended.
                    if let Some(w) = self.writer.take() {
                        w.stop().await;
                    }
                    let why = if self.shared.ended_locally.load(Ordering::SeqCst) {
                        "the transfer was cancelled".to_string()
                    } else {
                        error.unwrap_or_else(|| "the connection closed before the end".into())
                    };
                    self.fail(&why);
                    if !self.shared.ended_locally.load(Ordering::SeqCst)
                        && !self.shared.finished.load(Ordering::SeqCst)
                    {
                        self.shared.post(
                            crate::api::stream::DID_FAIL,
                            NotificationData::new()
                                .with("type", TYPE)
                                .with("reason", why),
                        );
                    }
                    break;
                }
            }
        }
    }

    /// The whole file arrived: check it and put it in place. Returns the
    /// answer for its last chunk.
    async fn received(&mut self, size: u64) -> (u16, Option<String>) {
        let Some(writer) = self.writer.take() else {
            return (500, Some("no file writer".into()));
        };
        let result = match writer.finish().await {
            Ok(r) => r,
            Err(e) => {
                let why = format!("cannot write the file: {e}");
                self.fail(&why);
                return (500, Some(why));
            }
        };
        let expected = self.stream.selector.check_hash().cloned();
        let partial = self.stream.partial.clone();
        let dir = self.stream.directory.clone();
        let (Some(partial), Some(dir)) = (partial, dir) else {
            return (500, Some("no destination".into()));
        };
        if self.stream.selector.size.is_some_and(|s| s != size) || result.size != size {
            let _ = std::fs::remove_file(&partial);
            let why = format!(
                "got {size} bytes, not the {:?} offered",
                self.stream.selector.size
            );
            self.fail(&why);
            return (400, Some(why));
        }
        let verified = match (&expected, &result.hash) {
            (Some(e), Some(got)) if e.value == got.value => true,
            (Some(_), _) => {
                // Corrupt: never presented as complete, not kept either.
                let _ = std::fs::remove_file(&partial);
                let why = "the file's hash does not match the offer".to_string();
                self.shared
                    .finish(self.data(Some(&why), result.hash.as_ref().map(|h| (h, false))));
                return (400, Some(why));
            }
            (None, _) => false,
        };
        let safe = sanitize_file_name(self.stream.selector.name.as_deref().unwrap_or("file"));
        let placed =
            tokio::task::spawn_blocking(move || file_io::place_file(&partial, &dir, &safe)).await;
        match placed {
            Ok(Ok(path)) => {
                *self.shared.file_path.lock() = Some(path);
                self.shared.moved(size, false);
                self.shared
                    .finish(self.data(None, result.hash.as_ref().map(|h| (h, verified))));
                (200, None)
            }
            Ok(Err(e)) => {
                let why = format!("cannot save the file: {e}");
                self.fail(&why);
                (500, Some(why))
            }
            Err(e) => {
                let why = format!("cannot save the file: {e}");
                self.fail(&why);
                (500, Some(why))
            }
        }
    }
}

/// Makes file transfer streams for offers with `a=file-selector`.
#[derive(Default)]
pub struct FileTransferFactory;

impl MediaStreamFactory for FileTransferFactory {
    fn stream_type(&self) -> &str {
        TYPE
    }

    fn priority(&self) -> i32 {
        // Before chat, which would otherwise see an m=message line.
        10
    }

    fn new_from_sdp(&self, sdp: &SessionDescription, index: usize) -> Option<Arc<dyn MediaStream>> {
        let m = sdp.media.get(index)?;
        if !m.media.eq_ignore_ascii_case("message") || m.port == 0 {
            return None;
        }
        let secure = is_msrp_proto(&m.proto)?;
        if !FileTransferSdp::is_file_transfer(m) {
            return None;
        }
        let theirs = match FileTransferSdp::from_media(m) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(target: "sipsimple::file_transfer", "refused a file transfer offer: {e}");
                return None;
            }
        };
        let role = match m.own_direction() {
            Some(crate::proto::sdp::Direction::SendOnly) => Role::IncomingPush,
            Some(crate::proto::sdp::Direction::RecvOnly) => Role::IncomingPull,
            _ => {
                tracing::warn!(target: "sipsimple::file_transfer", "refused a file transfer offer that is neither sendonly nor recvonly");
                return None;
            }
        };
        let mut sdp_ours = theirs;
        if role == Role::IncomingPush {
            // Our answer echoes the selector; the range is ours to set.
            sdp_ours.range = sdp_ours.range.filter(|r| r.start > 1);
        }
        let s = FileTransferStream::new(role, sdp_ours);
        s.state.lock().offer = Some((secure, m.setup()));
        Some(Arc::new(s))
    }

    fn new_outgoing(&self) -> Result<Arc<dyn MediaStream>> {
        Err(Error::InvalidArgument(
            "a file transfer stream needs a file: FileTransferStream::push(path) or ::pull(selector)"
                .into(),
        ))
    }
}
