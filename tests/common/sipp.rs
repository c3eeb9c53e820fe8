//! Running SIPp (Debian package sip-tester) from tests: bound to
//! 127.0.0.1, screen output discarded, error log kept for the report.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn sipp_available() -> bool {
    super::peer_available("sipp", "-v", "sip-tester")
}

pub fn free_port() -> u16 {
    // Bind both UDP and TCP on the same port so SIPp can use either.
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Sipp {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// Start SIPp bound to 127.0.0.1:`port` with the given arguments; its
/// screen output is discarded and its error log kept for the report.
pub fn run_sipp(port: u16, args: &[&str], scenario: Option<&str>) -> Sipp {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir.path())
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-nostdin", "-trace_err", "-timeout", "60s"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(xml) = scenario {
        let p: PathBuf = dir.path().join("scenario.xml");
        std::fs::write(&p, xml).unwrap();
        cmd.arg("-sf").arg(&p);
    }
    Sipp {
        child: cmd.spawn().expect("sipp starts"),
        _dir: dir,
    }
}

impl Sipp {
    /// Wait for SIPp to finish (bounded, 90 s); return its exit code and
    /// the contents of its error log.
    pub fn wait(mut self) -> (i32, String) {
        let mut code = -100;
        for _ in 0..900 {
            if let Ok(Some(st)) = self.child.try_wait() {
                code = st.code().unwrap_or(-1);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if code == -100 {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut errors = String::new();
        if let Ok(rd) = std::fs::read_dir(self._dir.path()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with("_errors.log") {
                    errors.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        (code, errors)
    }

    /// `wait` from async code.
    pub async fn finish(self) -> (i32, String) {
        tokio::task::spawn_blocking(move || self.wait())
            .await
            .unwrap_or((-101, "the waiting thread panicked".into()))
    }
}
