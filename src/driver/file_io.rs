//! Files for file transfer: hashing a file to offer it, writing a received
//! file on its own thread while hashing the bytes as they arrive (so the
//! file is read at most once more, and only to resume), partial files kept
//! for resume, and placing a finished file under a name that overwrites
//! nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::proto::sdp::file_transfer::{FileHash, FileHasher, HashAlgorithm};

const READ_BLOCK: usize = 1 << 20;

/// Hash the first `limit` bytes of `file` (all of it when None) with each
/// of `algorithms` we can compute, in one pass. Returns the bytes read.
pub fn hash_reader(
    file: &mut impl Read,
    algorithms: &[HashAlgorithm],
    limit: Option<u64>,
) -> io::Result<(u64, Vec<FileHash>)> {
    let mut hashers: Vec<FileHasher> = algorithms.iter().filter_map(FileHasher::new).collect();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut total = 0u64;
    loop {
        let want = match limit {
            Some(l) => usize::try_from(l - total)
                .unwrap_or(usize::MAX)
                .min(buf.len()),
            None => buf.len(),
        };
        if want == 0 {
            break;
        }
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        for h in &mut hashers {
            h.update(&buf[..n]);
        }
        total += n as u64;
    }
    Ok((total, hashers.into_iter().map(FileHasher::finish).collect()))
}

/// Size and hashes of the file at `path`.
pub fn hash_file(path: &Path, algorithms: &[HashAlgorithm]) -> io::Result<(u64, Vec<FileHash>)> {
    let mut f = File::open(path)?;
    hash_reader(&mut f, algorithms, None)
}

/// Where received files go unless the application says otherwise:
/// `$XDG_DOWNLOAD_DIR`, else `~/Downloads` when it exists, else the home
/// directory, else the temporary directory.
pub fn default_download_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DOWNLOAD_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let d = PathBuf::from(home).join("Downloads");
        if d.is_dir() {
            return d;
        }
        return PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    }
    std::env::temp_dir()
}

/// The hidden partial file for `safe_name` in `dir`: named after the
/// file's hash when it has one, so a second offer of the same file finds
/// it (resume), else unique to this transfer.
pub fn partial_path(dir: &Path, safe_name: &str, hash: Option<&FileHash>, unique: &str) -> PathBuf {
    let tag = match hash {
        Some(h) => h
            .value
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        None => unique.to_string(),
    };
    dir.join(format!(".{safe_name}.{tag}.part"))
}

/// `name`, `name (1).ext`, `name (2).ext`, ...
fn candidate(safe_name: &str, n: u32) -> String {
    if n == 0 {
        return safe_name.to_string();
    }
    match safe_name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{} ({n}){}", &safe_name[..i], &safe_name[i..]),
        None => format!("{safe_name} ({n})"),
    }
}

/// Move the finished `partial` to `dir/safe_name`, or the first free
/// `safe_name (N).ext`: an existing file is never replaced (a hard link
/// fails when the name exists; where links do not work, the name is
/// checked first).
pub fn place_file(partial: &Path, dir: &Path, safe_name: &str) -> io::Result<PathBuf> {
    for n in 0..10_000 {
        let target = dir.join(candidate(safe_name, n));
        match std::fs::hard_link(partial, &target) {
            Ok(()) => {
                std::fs::remove_file(partial)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                if target.symlink_metadata().is_ok() {
                    continue;
                }
                std::fs::rename(partial, &target)?;
                return Ok(target);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {safe_name} in {}", dir.display()),
    ))
}

/// Starts the disk write of what a file writer has written, every
/// [`WriteBehind::STEP`] bytes, without waiting for it: the disk works
/// while the transfer goes on, so the flush at the end finds little left
/// to write and a large file does not pile up in memory as dirty pages
/// first. (Linux; elsewhere the final flush writes it all, as before.)
#[derive(Debug, Clone)]
pub struct WriteBehind {
    /// Writeback has been started for everything before this offset.
    started: u64,
}

impl WriteBehind {
    /// How much is written between two starts.
    pub const STEP: u64 = 8 << 20;

    /// For a file whose first `from` bytes are already written (a resume).
    pub fn new(from: u64) -> WriteBehind {
        WriteBehind { started: from }
    }

    /// The range whose writeback to start now that the file has been
    /// written up to `end`: (offset, length), once `STEP` bytes have
    /// gathered since the last start.
    pub fn due(&mut self, end: u64) -> Option<(u64, u64)> {
        if end < self.started.saturating_add(Self::STEP) {
            return None;
        }
        let range = (self.started, end - self.started);
        self.started = end;
        Some(range)
    }

    /// Note that `file` has been written up to `end` and start the
    /// writeback that is due. A failure here is only a lost head start:
    /// an error writing the bytes surfaces at the final flush.
    pub fn wrote(&mut self, file: &File, end: u64) {
        if let Some((offset, len)) = self.due(end) {
            let _ = start_writeback(file, offset, len);
        }
    }
}

/// Ask the kernel to start writing `len` bytes of `file` from `offset` to
/// disk, without waiting for them.
#[cfg(target_os = "linux")]
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed;
    // the call reads no memory of ours.
    let r = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere there is no such call: the final flush writes everything.
#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

enum Job {
    Data(u64, Arc<Vec<u8>>),
    Finish(oneshot::Sender<io::Result<u64>>),
}

/// What the writer made of the file.
#[derive(Debug, Clone)]
pub struct WriterResult {
    /// Bytes in the file.
    pub size: u64,
    /// The hash over the whole file, when asked for.
    pub hash: Option<FileHash>,
}

/// Writes a received file on one thread while another hashes the bytes
/// in order as they come (the two overlap: neither waits for the other).
/// Bytes that arrive out of order are written where they belong and the
/// file is hashed again at the end (rare: one sender writes in order).
/// Dropping the writer without `finish` leaves the partial file as far as
/// it got, for a later resume.
pub struct FileWriter {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    hash_tx: Option<mpsc::Sender<Arc<Vec<u8>>>>,
    hasher: Option<std::thread::JoinHandle<Option<FileHash>>>,
    algorithm: Option<HashAlgorithm>,
    /// Where the next in-order byte goes; hashing stops at the first gap.
    next: u64,
    in_order: bool,
    path: PathBuf,
}

/// Chunks waiting for the disk (and for the hasher), at most: with the
/// MSRP session's bounded event queue this keeps a slow disk from filling
/// memory.
const QUEUE: usize = 8;

impl FileWriter {
    /// Open (or create) `partial`, keep its first `resume_from` bytes (and
    /// hash them), drop anything after them, and start the threads.
    pub fn open(
        partial: &Path,
        resume_from: u64,
        algorithm: Option<HashAlgorithm>,
    ) -> io::Result<FileWriter> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(partial)?;
        let have = file.metadata()?.len();
        if have < resume_from {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} has {have} bytes, not the {resume_from} to resume from",
                    partial.display()
                ),
            ));
        }
        file.set_len(resume_from)?;
        let mut hasher = algorithm.as_ref().and_then(FileHasher::new);
        if let Some(h) = hasher.as_mut() {
            file.seek(SeekFrom::Start(0))?;
            let mut buf = vec![0u8; READ_BLOCK];
            let mut left = resume_from;
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                file.read_exact(&mut buf[..want])?;
                h.update(&buf[..want]);
                left -= want as u64;
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("sipsimple-file".into())
            .spawn(move || write_loop(file, rx, resume_from))?;
        let (hash_tx, hasher_thread) = match hasher {
            Some(mut h) => {
                let (htx, mut hrx) = mpsc::channel::<Arc<Vec<u8>>>(QUEUE);
                let t = std::thread::Builder::new()
                    .name("sipsimple-hash".into())
                    .spawn(move || {
                        while let Some(d) = hrx.blocking_recv() {
                            h.update(&d);
                        }
                        Some(h.finish())
                    })?;
                (Some(htx), Some(t))
            }
            None => (None, None),
        };
        Ok(FileWriter {
            tx: Some(tx),
            thread: Some(thread),
            hash_tx,
            hasher: hasher_thread,
            algorithm,
            next: resume_from,
            in_order: true,
            path: partial.to_path_buf(),
        })
    }

    /// Queue `data` for `offset`; waits while the disk or the hash is
    /// behind.
    pub async fn write(&mut self, offset: u64, data: Vec<u8>) -> io::Result<()> {
        let data = Arc::new(data);
        let end = offset + data.len() as u64;
        if self.in_order && offset == self.next {
            if let Some(h) = &self.hash_tx {
                // A hasher that stopped is noticed at finish.
                let _ = h.send(data.clone()).await;
            }
            self.next = end;
        } else {
            // A gap: the hash is made again from the file at the end.
            self.in_order = false;
            self.hash_tx.take();
        }
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.send(Job::Data(offset, data)).await.map_err(|_| closed())
    }

    /// Write everything queued, flush to disk, and hash.
    pub async fn finish(mut self) -> io::Result<WriterResult> {
        let tx = self.tx.take().ok_or_else(closed)?;
        let (done, wait) = oneshot::channel();
        tx.send(Job::Finish(done)).await.map_err(|_| closed())?;
        drop(tx);
        let size = wait.await.map_err(|_| closed())??;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        self.hash_tx.take();
        let in_order = self.in_order;
        let hasher = self.hasher.take();
        let algorithm = self.algorithm.clone();
        let file = self.file_for_rehash();
        let hash = tokio::task::spawn_blocking(move || -> io::Result<Option<FileHash>> {
            let joined = hasher.and_then(|t| t.join().ok()).flatten();
            match (in_order, joined, algorithm, file) {
                (true, Some(h), _, _) => Ok(Some(h)),
                (_, _, Some(a), Some(path)) => {
                    Ok(hash_file(&path, std::slice::from_ref(&a))?.1.pop())
                }
                _ => Ok(None),
            }
        })
        .await
        .map_err(|_| closed())??;
        Ok(WriterResult { size, hash })
    }

    /// Write what is queued and stop, keeping the partial file (for a
    /// resume); returns once the threads are done with it.
    pub async fn stop(mut self) {
        self.tx.take();
        self.hash_tx.take();
        let (t, h) = (self.thread.take(), self.hasher.take());
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(t) = t {
                let _ = t.join();
            }
            if let Some(h) = h {
                let _ = h.join();
            }
        })
        .await;
    }

    fn file_for_rehash(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // The threads end when the channels close; they are not joined
        // here (a drop never blocks the runtime).
        self.tx.take();
        self.hash_tx.take();
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the file writer has stopped")
}

fn write_loop(file: File, mut rx: mpsc::Receiver<Job>, start: u64) {
    let mut size = start;
    let mut error: Option<io::Error> = None;
    let mut behind = WriteBehind::new(start);
    while let Some(job) = rx.blocking_recv() {
        match job {
            Job::Data(offset, data) => {
                if error.is_some() {
                    continue;
                }
                if let Err(e) = file.write_all_at(&data, offset) {
                    error = Some(e);
                    continue;
                }
                size = size.max(offset + data.len() as u64);
                behind.wrote(&file, size);
            }
            Job::Finish(done) => {
                let r = match error.take() {
                    Some(e) => Err(e),
                    None => file.sync_data().map(|()| size),
                };
                let _ = done.send(r);
                return;
            }
        }
    }
    let _ = (&file).flush();
}

/// The blocks of `file` from its current position, read ahead on a
/// thread of its own a few at a time: the sender of a file never waits on
/// the disk while the socket has room, and each block goes out without
/// another copy. With `max_rate` (bytes per second) the blocks come no
/// faster than that, in blocks small enough to keep the pace smooth.
pub fn read_ahead(
    file: File,
    max_rate: Option<u64>,
) -> io::Result<crate::driver::msrp::BlockSource> {
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(4);
    // Buffers the socket is done with come back for later blocks.
    let (back_tx, back) = std::sync::mpsc::channel::<Vec<u8>>();
    let block = match max_rate {
        // About ten blocks a second, between 4 KiB and a full block.
        Some(r) => usize::try_from(r / 10)
            .unwrap_or(READ_BLOCK)
            .clamp(4096, READ_BLOCK),
        None => READ_BLOCK,
    };
    std::thread::Builder::new()
        .name("sipsimple-read".into())
        .spawn(move || {
            let mut file = file;
            let start = std::time::Instant::now();
            let mut sent = 0u64;
            loop {
                // Read into spare capacity: nothing is zeroed first.
                let mut buf = std::iter::from_fn(|| back.try_recv().ok())
                    .find(|b| b.capacity() >= block)
                    .unwrap_or_else(|| Vec::with_capacity(block));
                buf.clear();
                let r = match (&mut file).take(block as u64).read_to_end(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        sent += n as u64;
                        Ok(buf)
                    }
                    Err(e) => Err(e),
                };
                let stop = r.is_err();
                if tx.blocking_send(r).is_err() || stop {
                    return;
                }
                if let Some(rate) = max_rate.filter(|r| *r > 0) {
                    let due = std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        })?;
    Ok(crate::driver::msrp::BlockSource::with_returns(rx, back_tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn expected(data: &[u8]) -> FileHash {
        let mut h = FileHasher::new(&HashAlgorithm::Sha1).unwrap();
        h.update(data);
        h.finish()
    }

    #[test]
    fn writes_hashes_resumes_and_reorders() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let p = dir.path().join(".x.part");
        let rt = runtime();
        // In order, in pieces.
        let mut w = FileWriter::open(&p, 0, Some(HashAlgorithm::Sha1)).unwrap();
        let r = rt.block_on(async {
            for (i, piece) in data.chunks(100_000).enumerate() {
                w.write((i * 100_000) as u64, piece.to_vec()).await.unwrap();
            }
            w.finish().await.unwrap()
        });
        assert_eq!(r.size, data.len() as u64);
        assert_eq!(r.hash, Some(expected(&data)));
        assert_eq!(std::fs::read(&p).unwrap(), data);

        // Interrupted after 1,234,567 bytes (with garbage after them),
        // resumed from there: the hash covers the whole file.
        std::fs::write(&p, [&data[..1_234_567], b"garbage"].concat()).unwrap();
        let mut w = FileWriter::open(&p, 1_234_567, Some(HashAlgorithm::Sha1)).unwrap();
        let r = rt.block_on(async {
            w.write(1_234_567, data[1_234_567..].to_vec())
                .await
                .unwrap();
            w.finish().await.unwrap()
        });
        assert_eq!(r.hash, Some(expected(&data)));
        assert_eq!(std::fs::read(&p).unwrap(), data);

        // Out of order: still right, by a second pass.
        std::fs::remove_file(&p).unwrap();
        let mut w = FileWriter::open(&p, 0, Some(HashAlgorithm::Sha1)).unwrap();
        let r = rt.block_on(async {
            w.write(2_000_000, data[2_000_000..].to_vec())
                .await
                .unwrap();
            w.write(0, data[..2_000_000].to_vec()).await.unwrap();
            w.finish().await.unwrap()
        });
        assert_eq!(r.hash, Some(expected(&data)));
        // A partial shorter than the resume point is an error.
        std::fs::write(&p, b"short").unwrap();
        assert!(FileWriter::open(&p, 100, None).is_err());
    }

    #[test]
    fn writeback_starts_every_step_and_the_kernel_takes_it() {
        let step = WriteBehind::STEP;
        let mut w = WriteBehind::new(100);
        assert_eq!(w.due(100 + step - 1), None);
        assert_eq!(w.due(100 + step), Some((100, step)));
        assert_eq!(w.due(100 + step + 10), None);
        // A big write starts everything since the last start at once.
        assert_eq!(w.due(100 + 4 * step), Some((100 + step, 3 * step)));
        // The call itself, on a real file (a wrong argument would fail).
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("w")).unwrap();
        f.write_all_at(&vec![7u8; 1 << 20], 0).unwrap();
        start_writeback(&f, 0, 1 << 20).unwrap();
        f.sync_data().unwrap();
        #[cfg(target_os = "linux")]
        assert!(start_writeback(&f, u64::MAX, 1).is_err());
    }

    #[test]
    fn placing_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"mine").unwrap();
        std::fs::write(dir.path().join("a (1).txt"), b"mine too").unwrap();
        let p = dir.path().join(".a.txt.part");
        std::fs::write(&p, b"theirs").unwrap();
        let placed = place_file(&p, dir.path(), "a.txt").unwrap();
        assert_eq!(placed, dir.path().join("a (2).txt"));
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"mine");
        assert_eq!(std::fs::read(&placed).unwrap(), b"theirs");
        assert!(!p.exists());
        assert_eq!(candidate("noext", 3), "noext (3)");
        assert_eq!(candidate(".hidden", 1), ".hidden (1)");
        let h = expected(b"x");
        let pp = partial_path(dir.path(), "f.bin", Some(&h), "u1");
        assert!(pp
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".f.bin."));
        assert_ne!(pp, partial_path(dir.path(), "f.bin", None, "u1"));
    }
}
