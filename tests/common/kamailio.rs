//! Running Kamailio (Debian package kamailio) from tests, on 127.0.0.1 with
//! a config from tests/kamailio/, in the foreground, killed on drop.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn kamailio_available() -> bool {
    super::peer_available("kamailio", "-v", "kamailio")
}

pub struct Kamailio {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Kamailio runs in its own process group. SIGTERM first; a child
        // that does not go makes the main process wait up to 60 s
        // (its kill timeout), so after 2 s the whole group gets SIGKILL.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Start Kamailio with `tests/kamailio/<config>` on UDP and TCP `port`
/// and wait until it answers.
pub fn start(config: &str, port: u16) -> Kamailio {
    start_with(config, port, &[])
}

/// [`start`] with further command-line arguments (more `-l` listeners,
/// `-A NAME=VALUE` defines for the config).
pub fn start_with(config: &str, port: u16, extra: &[String]) -> Kamailio {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!("{}/tests/kamailio/{config}", env!("CARGO_MANIFEST_DIR"));
    let listen_udp = format!("udp:127.0.0.1:{port}");
    let listen_tcp = format!("tcp:127.0.0.1:{port}");
    let child = Command::new("kamailio")
        .args([
            "-f",
            &cfg,
            "-L",
            "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        ])
        .arg("-Y")
        .arg(dir.path())
        .args(["-l", &listen_udp, "-l", &listen_tcp])
        .args(extra)
        .args(["-DD", "-E", "-w"])
        .arg(dir.path())
        .stdout(Stdio::null())
        // SIPSIMPLE_TEST_KAMAILIO_LOG=FILE keeps Kamailio's log for debugging.
        .stderr(
            std::env::var_os("SIPSIMPLE_TEST_KAMAILIO_LOG")
                .and_then(|f| std::fs::File::create(f).ok())
                .map(Stdio::from)
                .unwrap_or_else(Stdio::null),
        )
        .process_group(0)
        .spawn()
        .expect("kamailio starts");
    let k = Kamailio {
        child,
        _dir: dir,
        port,
    };
    // Up when it answers anything to an OPTIONS.
    super::wait_for_sip_udp(port, "kamailio");
    k
}
