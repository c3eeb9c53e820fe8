//! File transfer (RFC 5547) between two applications in one process over
//! 127.0.0.1: push and pull, msrp and msrps, 0-byte, 1-byte, odd-sized
//! and multi-chunk files with the hash verified at the receiver, a
//! rejected transfer, cancelling from either side, an interrupted
//! transfer that leaves no file under the final name and then resumes
//! with only the missing bytes, a hash that does not match, names from
//! the network that try to leave the download directory, and a push
//! through the Kamailio MSRP relay.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::apps::{incoming_session, start_app, Recorder};
use serde_json::{json, Value};
use sipsimple::api::streams::FileTransferStream;
use sipsimple::proto::sdp::file_transfer::{FileSelector, HashAlgorithm};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{Notification, NotificationCenter, SIPApplication, Session, StreamHandle};

fn app(user: &str, dir: &Path, msrp: Value) -> SIPApplication {
    app_sending_at(user, dir, msrp, 0)
}

/// An application that sends files at `max_rate` bytes per second at
/// most (0: no limit).
fn app_sending_at(user: &str, dir: &Path, msrp: Value, max_rate: u64) -> SIPApplication {
    start_app(json!({
        "sip": {"transport_list": ["udp"]},
        "file_transfer": {"directory": dir.display().to_string(), "max_rate": max_rate},
        "accounts": {format!("{user}@example.com"): {
            "registration": {"enabled": false},
            "msrp": msrp,
        }},
    }))
}

fn uri(app: &SIPApplication, user: &str) -> String {
    let a = app.sip_local_address(TransportKind::Udp).unwrap();
    format!("sip:{user}@127.0.0.1:{}", a.port())
}

/// Deterministic bytes for a file of `size`.
fn pattern(size: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha1_hex(data: &[u8]) -> String {
    let mut h =
        sipsimple::proto::sdp::file_transfer::FileHasher::new(&HashAlgorithm::Sha1).unwrap();
    h.update(data);
    h.finish().to_string()
}

struct Pair {
    alice: SIPApplication,
    bob: SIPApplication,
    rec: Recorder,
    token: sipsimple::ObserverToken,
    /// Alice's and Bob's download directories, and a directory for files
    /// to send.
    dirs: [tempfile::TempDir; 3],
}

impl Pair {
    fn new(msrp: Value) -> Pair {
        Pair::sending_at(msrp, 0)
    }

    /// Alice sends files at `max_rate` bytes per second at most: slow
    /// enough for a test to act while a transfer runs.
    fn sending_at(msrp: Value, max_rate: u64) -> Pair {
        let (rec, token) = Recorder::start();
        let dirs = [
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        ];
        Pair {
            alice: app_sending_at("alice", dirs[0].path(), msrp.clone(), max_rate),
            bob: app("bob", dirs[1].path(), msrp),
            rec,
            token,
            dirs,
        }
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dirs[2].path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn session(&self) -> Session {
        let account = self
            .alice
            .account_manager()
            .unwrap()
            .get_account("alice@example.com")
            .unwrap();
        self.alice.session_manager().unwrap().new_session(&account)
    }

    /// Alice connects to Bob with `streams`; Bob's side of the session
    /// and its proposed streams.
    fn call(&self, streams: Vec<StreamHandle>) -> (Session, Session, Vec<StreamHandle>) {
        let a = self.session();
        a.connect(&uri(&self.bob, "bob"), &[], streams).unwrap();
        let b = incoming_session(&self.bob, &self.rec);
        let proposed = b.proposed_streams();
        (a, b, proposed)
    }

    fn finished(&self, stream: &StreamHandle) -> Notification {
        self.wait_for(
            "FileTransferStreamDidFinish",
            stream,
            Duration::from_secs(60),
        )
    }

    fn wait_for(&self, name: &str, stream: &StreamHandle, limit: Duration) -> Notification {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(n) = self.rec.find(name, Some(stream.id().0)) {
                return n;
            }
            assert!(Instant::now() < deadline, "no {name} within {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn end(&self, a: &Session, b: &Session) {
        if a.end().is_ok() {
            self.rec.wait("SIPSessionDidEnd", Some(b.id().0));
        }
    }

    fn stop(self) {
        NotificationCenter::default().remove_observer(self.token);
        self.alice.stop();
        self.bob.stop();
    }
}

/// Only the finished files, no partial ones, in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Push `data` as `name` from Alice to Bob; Bob accepts. Returns Bob's
/// DidFinish and the path it names.
fn push(p: &Pair, name: &str, data: &[u8]) -> (Notification, PathBuf) {
    let path = p.file(name, data);
    let push = FileTransferStream::push(&path).unwrap();
    let (a, b, proposed) = p.call(vec![push.clone()]);
    assert_eq!(proposed.len(), 1);
    assert_eq!(proposed[0].stream_type(), "file-transfer");
    let incoming = FileTransferStream::of(&proposed[0]).unwrap();
    assert_eq!(incoming.direction(), "receive");
    let sel = incoming.file_selector();
    assert_eq!(sel.name.as_deref(), Some(name));
    assert_eq!(sel.size, Some(data.len() as u64));
    b.accept(proposed.clone()).unwrap();
    let got = p.finished(&proposed[0]);
    let sent = p.finished(&push);
    assert_eq!(
        got.data.get_bool("error"),
        Some(false),
        "{}",
        got.data.to_json()
    );
    assert_eq!(
        sent.data.get_bool("error"),
        Some(false),
        "{}",
        sent.data.to_json()
    );
    assert_eq!(got.data.get_bool("hash_verified"), Some(true));
    assert_eq!(got.data.get_str("hash"), Some(sha1_hex(data).as_str()));
    let saved = PathBuf::from(got.data.get_str("file_path").unwrap());
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    p.end(&a, &b);
    (got, saved)
}

#[test]
fn push_files_of_every_size_with_the_hash_checked() {
    let p = Pair::new(json!({"transport": "tcp"}));
    for (i, size) in [0usize, 1, 100_003, 5 * 1024 * 1024 + 17]
        .into_iter()
        .enumerate()
    {
        let name = format!("file{i}.bin");
        let data = pattern(size, i as u32);
        let (done, saved) = push(&p, &name, &data);
        assert_eq!(saved, p.dirs[1].path().join(&name));
        assert_eq!(done.data.get_i64("total_bytes"), Some(size as i64));
        assert_eq!(done.data.get_i64("resumed_from"), Some(0));
    }
    // The same name again: saved next to the first, nothing overwritten.
    let (_, saved) = push(&p, "file1.bin", b"x");
    assert_eq!(saved, p.dirs[1].path().join("file1 (1).bin"));
    assert_eq!(
        std::fs::read(p.dirs[1].path().join("file1.bin")).unwrap(),
        pattern(1, 1)
    );
    // Progress was reported, the last at 100%.
    let progress: Vec<i64> = p
        .rec
        .seen
        .lock()
        .iter()
        .filter(|n| n.name == "FileTransferStreamDidChangeProgress")
        .filter_map(|n| n.data.get_i64("percent"))
        .collect();
    assert!(progress.contains(&100), "{progress:?}");
    assert!(files_in(p.dirs[1].path())
        .iter()
        .all(|f| !f.starts_with('.')));
    p.stop();
}

#[test]
fn push_over_tls_and_pull_a_file_the_peer_has() {
    // msrps, the account default, with fingerprints.
    let p = Pair::new(json!({}));
    let data = pattern(3 * 1024 * 1024 + 5, 9);
    push(&p, "secure.dat", &data);

    // Alice pulls a file Bob has, naming it by name, size and hash.
    let source = p.file("shared.pdf", &data);
    let wanted = FileSelector::parse(&format!(
        "name:\"shared.pdf\" size:{} hash:{}",
        data.len(),
        sha1_hex(&data)
    ))
    .unwrap();
    let pull = FileTransferStream::pull(wanted).unwrap();
    let (a, b, proposed) = p.call(vec![pull.clone()]);
    let req = FileTransferStream::of(&proposed[0]).unwrap();
    assert!(req.is_pull());
    assert_eq!(req.direction(), "send");
    // A file that is not the one asked for fails the stream when Bob
    // accepts (its hash is checked then).
    let wrong = p.file("other.pdf", &pattern(data.len(), 1));
    b.set_file_source(&wrong).unwrap();
    b.accept(proposed.clone()).unwrap();
    let failed = p.rec.wait("SIPSessionDidFail", Some(a.id().0));
    assert_eq!(failed.data.get_i64("code"), Some(500));
    assert_eq!(
        failed.data.get_str("reason"),
        Some("Stream Initialization Failed")
    );
    assert_eq!(p.finished(&pull).data.get_bool("error"), Some(true));

    let pull = FileTransferStream::pull(
        FileSelector::parse(&format!("name:\"shared.pdf\" hash:{}", sha1_hex(&data))).unwrap(),
    )
    .unwrap();
    let (a, b, proposed) = p.call(vec![pull.clone()]);
    b.set_file_source(&source).unwrap();
    b.accept(proposed.clone()).unwrap();
    let got = p.finished(&pull);
    assert_eq!(
        got.data.get_bool("error"),
        Some(false),
        "{}",
        got.data.to_json()
    );
    assert_eq!(got.data.get_bool("hash_verified"), Some(true));
    let saved = PathBuf::from(got.data.get_str("file_path").unwrap());
    assert_eq!(saved, p.dirs[0].path().join("shared.pdf"));
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    let sent = p.finished(&proposed[0]);
    assert_eq!(sent.data.get_bool("error"), Some(false));
    p.end(&a, &b);
    p.stop();
}

#[test]
fn rejected_and_cancelled_transfers_say_so() {
    // 32 MiB at 8 MB/s: four seconds in which to cancel.
    let p = Pair::sending_at(json!({"transport": "tcp"}), 8_000_000);
    let data = pattern(32 * 1024 * 1024, 3);
    let path = p.file("big.bin", &data);

    // Rejected: the sender's transfer finishes with an error.
    let push = FileTransferStream::push(&path).unwrap();
    let (_a, b, _) = p.call(vec![push.clone()]);
    b.reject(603, None).unwrap();
    let done = p.finished(&push);
    assert_eq!(done.data.get_bool("error"), Some(true));
    assert!(files_in(p.dirs[1].path()).is_empty());

    // The receiver cancels mid-transfer (ends the session).
    let push = FileTransferStream::push(&path).unwrap();
    let (a, b, proposed) = p.call(vec![push.clone()]);
    b.accept(proposed.clone()).unwrap();
    p.wait_for(
        "FileTransferStreamGotChunk",
        &proposed[0],
        Duration::from_secs(20),
    );
    b.end().unwrap();
    let got = p.finished(&proposed[0]);
    let sent = p.finished(&push);
    assert_eq!(got.data.get_bool("error"), Some(true));
    assert_eq!(
        sent.data.get_bool("error"),
        Some(true),
        "{}",
        sent.data.to_json()
    );
    p.rec.wait("SIPSessionDidEnd", Some(a.id().0));
    // Nothing under the final name.
    assert!(!p.dirs[1].path().join("big.bin").exists());

    // The sender cancels mid-transfer.
    let push = FileTransferStream::push(&path).unwrap();
    let (a, b, proposed) = p.call(vec![push.clone()]);
    b.accept(proposed.clone()).unwrap();
    p.wait_for(
        "FileTransferStreamGotChunk",
        &proposed[0],
        Duration::from_secs(20),
    );
    a.end().unwrap();
    let got = p.finished(&proposed[0]);
    assert_eq!(got.data.get_bool("error"), Some(true));
    assert_eq!(p.finished(&push).data.get_bool("error"), Some(true));
    p.rec.wait("SIPSessionDidEnd", Some(b.id().0));
    assert!(!p.dirs[1].path().join("big.bin").exists());
    p.stop();
}

#[test]
fn an_interrupted_transfer_resumes_with_only_the_missing_bytes() {
    // 24 MiB at 8 MB/s: cut after 4 MiB, the rest in about 2.5 s.
    let p = Pair::sending_at(json!({"transport": "tcp"}), 8_000_000);
    let data = pattern(24 * 1024 * 1024 + 3, 11);
    let path = p.file("movie.mp4", &data);
    let push = FileTransferStream::push(&path).unwrap();
    let (a, b, proposed) = p.call(vec![push.clone()]);
    b.accept(proposed.clone()).unwrap();
    // Cut the transfer once some megabytes arrived: the sender hangs up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while FileTransferStream::of(&proposed[0]).unwrap().progress().0 < 4 * 1024 * 1024 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    a.end().unwrap();
    let got = p.finished(&proposed[0]);
    assert_eq!(got.data.get_bool("error"), Some(true));
    p.rec.wait("SIPSessionDidEnd", Some(b.id().0));
    assert!(!p.dirs[1].path().join("movie.mp4").exists());
    let partial: Vec<String> = files_in(p.dirs[1].path());
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert!(partial[0].starts_with(".movie.mp4.") && partial[0].ends_with(".part"));
    let kept = std::fs::metadata(p.dirs[1].path().join(&partial[0]))
        .unwrap()
        .len();
    assert!(kept > 0 && kept < data.len() as u64);

    // The same file again: Bob's answer asks only for the rest.
    let push = FileTransferStream::push(&path).unwrap();
    let (a, b, proposed) = p.call(vec![push.clone()]);
    b.accept(proposed.clone()).unwrap();
    let got = p.finished(&proposed[0]);
    assert_eq!(
        got.data.get_bool("error"),
        Some(false),
        "{}",
        got.data.to_json()
    );
    let resumed = got.data.get_i64("resumed_from").unwrap() as u64;
    assert!(
        resumed > 0 && resumed <= kept,
        "resumed from {resumed}, kept {kept}"
    );
    assert_eq!(got.data.get_bool("hash_verified"), Some(true));
    let sent = p.finished(&push);
    assert_eq!(sent.data.get_i64("resumed_from"), Some(resumed as i64));
    let saved = PathBuf::from(got.data.get_str("file_path").unwrap());
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    assert_eq!(files_in(p.dirs[1].path()), ["movie.mp4"]);
    p.end(&a, &b);
    p.stop();
}

/// A hand-driven sender's offer of `promised` (name, size, SHA-1) to a
/// receiving stream that saves into `download`; the started stream and
/// the sender's bound transport.
async fn offer_by_hand(
    download: &Path,
    name: &str,
    promised: &[u8],
    peer_id: &str,
) -> (
    Arc<dyn sipsimple::MediaStream>,
    sipsimple::api::msrp::MSRPTransport,
) {
    use sipsimple::api::msrp::{get_connector, MsrpTls, MsrpUri};
    use sipsimple::api::streams::FileTransferFactory;
    use sipsimple::proto::sdp::{Attribute, MediaDescription, SessionDescription};
    use sipsimple::{MediaStreamFactory, StreamContext};

    let ip: std::net::IpAddr = [127, 0, 0, 1].into();
    let mut peer = get_connector(MsrpTls::default(), None);
    let peer_path = peer
        .prepare(MsrpUri::new(false, "127.0.0.1", 0, peer_id))
        .await
        .unwrap();
    let mut offer = SessionDescription::new("-", 1, ip, "peer");
    let mut m = MediaDescription::new("message", peer_path[0].port.unwrap(), "TCP/MSRP", &["*"]);
    m.push_attribute(Attribute::value("path", peer_path[0].to_string()));
    m.push_attribute(Attribute::flag("sendonly"));
    m.push_attribute(Attribute::value("accept-types", "*"));
    m.push_attribute(Attribute::value("setup", "active"));
    let sel = FileSelector {
        name: Some(name.to_string()),
        content_type: Some("application/octet-stream".into()),
        size: Some(promised.len() as u64),
        hashes: vec![{
            let mut h = sipsimple::proto::sdp::file_transfer::FileHasher::new(&HashAlgorithm::Sha1)
                .unwrap();
            h.update(promised);
            h.finish()
        }],
    };
    m.push_attribute(Attribute::value("file-selector", sel.to_string()));
    offer.media.push(m);
    let stream = FileTransferFactory.new_from_sdp(&offer, 0).unwrap();
    let ctx = StreamContext {
        session: sipsimple::ObjectId::new(),
        direction: "incoming",
        local_ip: ip,
        runtime: tokio::runtime::Handle::current(),
        settings: Arc::new(
            json!({"file_transfer": {"directory": download.display().to_string()}})
                .as_object()
                .unwrap()
                .clone(),
        ),
        account: None,
        local_identity: None,
        remote_identity: None,
        msrp_tls: Default::default(),
    };
    stream.initialize(&ctx).await.unwrap();
    let local_m = stream.get_local_media(offer.media.first()).unwrap();
    assert_eq!(
        local_m.own_direction().map(|d| d.as_str()),
        Some("recvonly")
    );
    let mut answer = SessionDescription::new("-", 2, ip, "bob");
    let path = sipsimple::api::msrp::parse_path(local_m.attribute("path").unwrap()).unwrap();
    answer.media.push(local_m);
    let (started, transport) = tokio::join!(stream.start(&answer, &offer, 0), peer.complete(path));
    started.unwrap();
    (stream, transport.unwrap())
}

/// A hand-driven sender: names from the network that try to leave the
/// download directory, and bytes that do not match the offered hash.
#[test]
fn hostile_names_and_wrong_bytes_from_a_hand_driven_peer() {
    use sipsimple::api::msrp::ChunkSpec;

    let (rec, token) = Recorder::start();
    let download = tempfile::tempdir().unwrap();
    let rt = common::runtime();
    // (name offered, bytes the hash promises, bytes sent, name saved)
    type Case<'a> = (String, Vec<u8>, Vec<u8>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "../../escape.txt".into(),
            b"one".to_vec(),
            b"one".to_vec(),
            Some("escape.txt"),
        ),
        (
            "/etc/passwd".into(),
            b"two".to_vec(),
            b"two".to_vec(),
            Some("passwd"),
        ),
        (
            "..\\..\\win.ini".into(),
            b"3".to_vec(),
            b"3".to_vec(),
            Some("win.ini"),
        ),
        (
            "bell\u{7}\u{1b}[2J.txt".into(),
            b"4".to_vec(),
            b"4".to_vec(),
            Some("bell[2J.txt"),
        ),
        ("..".into(), b"5".to_vec(), b"5".to_vec(), Some("file")),
        (
            format!("{}.txt", "n".repeat(900)),
            b"6".to_vec(),
            b"6".to_vec(),
            None,
        ),
        // The bytes differ from what the hash promises.
        (
            "liar.bin".into(),
            b"promised".to_vec(),
            b"tampered".to_vec(),
            None,
        ),
    ];
    for (i, (name, promised, sent, want)) in cases.iter().enumerate() {
        rt.block_on(async {
            let (stream, mut t) =
                offer_by_hand(download.path(), name, promised, &format!("peer{i}")).await;
            let mut chunk = t.make_chunk(ChunkSpec {
                data: sent,
                message_id: Some("file1"),
                ..ChunkSpec::default()
            });
            chunk
                .head
                .push_header("Content-Type", "application/octet-stream");
            t.write_chunk(&chunk).await.unwrap();
            let r = tokio::time::timeout(Duration::from_secs(5), t.read_chunk(1 << 16))
                .await
                .expect("a response")
                .unwrap();
            let sid = stream.object_id().unwrap().0;
            let done = rec.wait("FileTransferStreamDidFinish", Some(sid));
            match want {
                Some(safe) => {
                    assert_eq!(r.code(), Some(200), "case {i}");
                    let p = PathBuf::from(done.data.get_str("file_path").unwrap());
                    assert_eq!(p, download.path().join(safe), "case {i}");
                    assert_eq!(std::fs::read(&p).unwrap(), *sent);
                }
                None if promised == sent => {
                    assert_eq!(r.code(), Some(200), "case {i}");
                    let p = PathBuf::from(done.data.get_str("file_path").unwrap());
                    assert_eq!(p.parent(), Some(download.path()));
                    assert!(p.file_name().unwrap().len() <= 200);
                }
                None => {
                    // The chunk is taken, then the file refused on the wire
                    // by a failure REPORT with the reason; nothing saved.
                    assert_eq!(r.code(), Some(200), "case {i}");
                    let report =
                        tokio::time::timeout(Duration::from_secs(5), t.read_chunk(1 << 16))
                            .await
                            .expect("a REPORT")
                            .unwrap();
                    assert_eq!(report.method(), Some("REPORT"));
                    let status = report.head.status().unwrap().unwrap();
                    assert_eq!(status.code, 400);
                    assert!(status.comment.unwrap_or_default().contains("hash"));
                    assert_eq!(done.data.get_bool("error"), Some(true));
                    assert_eq!(done.data.get_bool("hash_verified"), Some(false));
                    assert!(!download.path().join("liar.bin").exists());
                }
            }
            stream.end();
        });
    }
    // Nothing was written outside the download directory, and no partial
    // file was left behind.
    let parent = download.path().parent().unwrap();
    assert!(!parent.join("escape.txt").exists());
    for f in files_in(download.path()) {
        assert!(!f.starts_with('.'), "{f}");
    }
    NotificationCenter::default().remove_observer(token);
}

/// The sender's connection closes in the middle of the file: a clear
/// failure, nothing under the final name, the partial file kept for a
/// resume.
#[test]
fn a_sender_that_vanishes_mid_file_leaves_only_a_partial_file() {
    use sipsimple::api::msrp::ChunkSpec;
    let (rec, token) = Recorder::start();
    let download = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 4);
    common::runtime().block_on(async {
        let (stream, mut t) = offer_by_hand(download.path(), "cut.bin", &data, "vanishing").await;
        let mut chunk = t.make_chunk(ChunkSpec {
            data: &data[..100_000],
            message_id: Some("file1"),
            contflag: Some(sipsimple::api::msrp::ContFlag::More),
            start: 1,
            end: Some(100_000),
            length: Some(data.len() as u64),
            ..ChunkSpec::default()
        });
        chunk
            .head
            .push_header("Content-Type", "application/octet-stream");
        t.write_chunk(&chunk).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), t.read_chunk(1 << 16))
            .await
            .expect("a response")
            .unwrap();
        assert_eq!(r.code(), Some(200));
        // The socket closes with two thirds of the file missing.
        drop(t);
        let sid = stream.object_id().unwrap().0;
        let done = rec.wait("FileTransferStreamDidFinish", Some(sid));
        assert_eq!(done.data.get_bool("error"), Some(true));
        assert!(
            done.data.get_str("reason").unwrap().contains("closed"),
            "{}",
            done.data.to_json()
        );
        assert_eq!(done.data.get("file_path"), Some(&Value::Null));
        stream.end();
    });
    assert!(!download.path().join("cut.bin").exists());
    let left = files_in(download.path());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".cut.bin.") && left[0].ends_with(".part"));
    assert_eq!(
        std::fs::read(download.path().join(&left[0])).unwrap(),
        &data[..100_000]
    );
    NotificationCenter::default().remove_observer(token);
}

#[test]
fn push_through_the_kamailio_msrp_relay() {
    use common::kamailio::{kamailio_available, start};
    if !kamailio_available() {
        return;
    }
    let k = start("msrp_relay.cfg", common::sipp::free_port());
    let (rec, token) = Recorder::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let alice = app("alice", dirs[0].path(), json!({"transport": "tcp"}));
    let bob = start_app(json!({
        "sip": {"transport_list": ["udp"]},
        "file_transfer": {"directory": dirs[1].path().display().to_string()},
        "accounts": {"bob@example.com": {
            "registration": {"enabled": false},
            "auth": {"password": "bobpass"},
            "msrp": {"transport": "tcp", "relay": format!("msrp://127.0.0.1:{};tcp", k.port)},
        }},
    }));
    let data = pattern(2 * 1024 * 1024 + 7, 5);
    let path = dirs[0].path().join("relayed.bin");
    std::fs::write(&path, &data).unwrap();
    let account = alice
        .account_manager()
        .unwrap()
        .get_account("alice@example.com")
        .unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    let push = FileTransferStream::push(&path).unwrap();
    a.connect(&uri(&bob, "bob"), &[], vec![push.clone()])
        .unwrap();
    let b = incoming_session(&bob, &rec);
    let proposed = b.proposed_streams();
    b.accept(proposed.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        if let Some(n) = rec.find("FileTransferStreamDidFinish", Some(proposed[0].id().0)) {
            break n;
        }
        assert!(Instant::now() < deadline, "no DidFinish through the relay");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        got.data.get_bool("error"),
        Some(false),
        "{}",
        got.data.to_json()
    );
    assert_eq!(got.data.get_bool("hash_verified"), Some(true));
    let saved = PathBuf::from(got.data.get_str("file_path").unwrap());
    assert_eq!(std::fs::read(saved).unwrap(), data);
    rec.wait("FileTransferStreamDidFinish", Some(push.id().0));
    if a.end().is_ok() {
        rec.wait("SIPSessionDidEnd", Some(b.id().0));
    }
    NotificationCenter::default().remove_observer(token);
    alice.stop();
    bob.stop();
}
