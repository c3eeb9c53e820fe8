//! sip-session: the interactive client of the SDK, scriptable for tests.
//!
//!   sip-session [OPTIONS] [URI [STREAM_TYPE...]]
//!
//! Options:
//!   --config-dir DIR       keep settings in DIR/config.json (default: memory)
//!   --account ID           call as ID (user@domain, an account of the
//!                          configuration: it registers when it has a
//!                          registrar, and calls go through its
//!                          sip.outbound_proxy), or `bonjour` (default: the
//!                          configuration's default account, else bonjour)
//!   --sip-port N           listen for SIP on port N (UDP and TCP)
//!   --transport T          udp, tcp or tls for the listening list (default udp,tcp)
//!   --auto-answer          accept incoming sessions and proposals at once
//!   --json                 every notification as one JSON object per line
//!   --input-device D       audio.input_device (null, tone:<Hz>, wav:<path>)
//!   --output-device D      audio.output_device (null, wav:<path>)
//!   --download-dir DIR     save received files in DIR (file_transfer.directory)
//!
//! Commands on stdin, one per line (the current session is the newest):
//!   /call URI [TYPE...]    new outgoing session (default stream: audio;
//!                          `chat` for instant messaging)
//!   /accept [TYPE...]      accept the incoming session or proposal
//!   /reject [CODE]         reject it (default 603, or 488 for a proposal)
//!   /hold, /unhold         put the current session on hold and back
//!   /add TYPE, /remove TYPE   propose or remove a stream
//!   /chat TEXT             send TEXT on the current session's chat stream
//!                          (any line not starting with `/` does the same
//!                          when the session has a chat stream)
//!   /composing [active|idle]  tell the peer we are typing (or stopped)
//!   /dtmf DIGITS           send DTMF (0-9, *, #, A-D) on the audio stream
//!   /send FILE             send FILE to the current session's peer (a file
//!                          transfer stream added to the session)
//!   /send URI FILE         send FILE to URI in a new session
//!   /end                   end the current session
//!   /sessions              list sessions;  /switch ID  make one current
//!   /sleep SECONDS         pause reading commands (for scripts)
//!   /quit                  end every session, stop, exit 0
//!
//! Without --json, messages go to stdout as text (incoming chat as
//! `<sender> TEXT`, file transfers as a progress bar and where the file
//! was saved); with --json, stdout has only notifications and stderr
//! carries the tool's own messages and the progress bar.

#[path = "common/tool.rs"]
mod tool;

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{
    Account, MediaStreamRegistry, Notification, NotificationCenter, SIPApplication, Session,
    SessionManager, SessionState, Storage,
};

struct Options {
    config_dir: Option<String>,
    account: Option<String>,
    sip_port: Option<u16>,
    transport: Option<String>,
    auto_answer: bool,
    json: bool,
    input: Option<String>,
    output: Option<String>,
    download_dir: Option<String>,
    target: Option<String>,
    types: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: sip-session [--config-dir DIR] [--account ID|bonjour] [--sip-port N] \
         [--transport udp|tcp|tls] [--auto-answer] [--json] [--input-device D] \
         [--output-device D] [--download-dir DIR] [URI [STREAM_TYPE...]]"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Options {
        config_dir: None,
        account: None,
        sip_port: None,
        transport: None,
        auto_answer: false,
        json: false,
        input: None,
        output: None,
        download_dir: None,
        target: None,
        types: Vec::new(),
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("config-dir") => o.config_dir = Some(p.value()?.string()?),
            Long("account") => o.account = Some(p.value()?.string()?),
            Long("sip-port") => o.sip_port = Some(p.value()?.parse()?),
            Long("transport") => o.transport = Some(p.value()?.string()?.to_ascii_lowercase()),
            Long("auto-answer") => o.auto_answer = true,
            Long("json") => o.json = true,
            Long("input-device") => o.input = Some(p.value()?.string()?),
            Long("output-device") => o.output = Some(p.value()?.string()?),
            Long("download-dir") => o.download_dir = Some(p.value()?.string()?),
            Long("help") | Short('h') => usage(),
            Value(v) if o.target.is_none() => o.target = Some(v.string()?),
            Value(v) => o.types.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(o)
}

/// Prints the tool's own messages: stdout in text mode, stderr with --json.
#[derive(Clone)]
struct Out {
    json: bool,
    lock: Arc<Mutex<()>>,
}

impl Out {
    fn say(&self, msg: &str) {
        let _g = self.lock.lock();
        if self.json {
            eprintln!("{msg}");
        } else {
            println!("{msg}");
            let _ = std::io::stdout().flush();
        }
    }

    /// A file transfer's progress bar, on the terminal side of the output.
    fn progress(&self, n: &Notification) {
        let d = &n.data;
        let (done, total) = (
            d.get_i64("transferred_bytes").unwrap_or(0).max(0) as u64,
            d.get_i64("total_bytes").unwrap_or(0).max(0) as u64,
        );
        let line = progress_bar(
            d.get_str("direction").unwrap_or(""),
            d.get_i64("percent").unwrap_or(0).clamp(0, 100) as u64,
            done,
            total,
        );
        self.say(&line);
    }

    fn notification(&self, n: &Notification) {
        if n.name == "FileTransferStreamDidChangeProgress" {
            self.progress(n);
            if !self.json {
                return;
            }
        }
        let _g = self.lock.lock();
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{}", tool::json_line(n));
        } else if n.name == "ChatStreamGotMessage" {
            let _ = writeln!(
                out,
                "{} {}",
                n.data.get_str("sender").unwrap_or("<peer>"),
                n.data.get_str("content").unwrap_or("(binary content)")
            );
        } else if n.name == "FileTransferStreamDidFinish" {
            let d = &n.data;
            let name = d.get_str("file_name").unwrap_or("file");
            let line = match (d.get_bool("error"), d.get_str("file_path")) {
                (Some(false), Some(p)) => format!(
                    "received {name}: saved as {p} ({} bytes, hash {})",
                    d.get_i64("total_bytes").unwrap_or(0),
                    if d.get_bool("hash_verified") == Some(true) {
                        "checked"
                    } else {
                        "not given"
                    }
                ),
                (Some(false), None) => format!("sent {name}"),
                _ => format!(
                    "transfer of {name} failed: {}",
                    d.get_str("reason").unwrap_or("?")
                ),
            };
            let _ = writeln!(out, "{line}");
        } else if n.name == "FileTransferStreamDidChangeProgress" {
            // Shown by progress() below.
        } else if n.name == "ChatStreamGotComposingIndication" {
            let _ = writeln!(
                out,
                "(peer is {})",
                match n.data.get_str("state") {
                    Some("active") => "typing",
                    _ => "idle",
                }
            );
        } else {
            let _ = writeln!(
                out,
                "{} {}#{} {}",
                n.name,
                n.sender.kind,
                n.sender.id.0,
                n.data.to_json()
            );
        }
        let _ = out.flush();
    }
}

/// `[#########           ]  45%  4.5 MB / 10.0 MB (send)`
fn progress_bar(direction: &str, percent: u64, done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (percent * WIDTH / 100) as usize;
    let mb = |b: u64| b as f64 / 1e6;
    format!(
        "[{}{}] {percent:3}% {:.1} MB / {:.1} MB ({direction})",
        "#".repeat(filled),
        " ".repeat(WIDTH as usize - filled),
        mb(done),
        mb(total)
    )
}

/// Sessions by the order they appeared; the last one is current unless
/// /switch picked another.
struct Sessions {
    manager: SessionManager,
    current: Mutex<Option<Session>>,
}

impl Sessions {
    fn current(&self) -> Result<Session, String> {
        let cur = self.current.lock().clone();
        match cur {
            Some(s) if s.state() != SessionState::Terminated => Ok(s),
            _ => self
                .manager
                .sessions()
                .into_iter()
                .last()
                .ok_or_else(|| "no session".to_string()),
        }
    }
}

/// The settings for this run and the account to use (None: Bonjour).
fn settings(o: &Options) -> Result<(Arc<dyn Storage>, Option<String>), String> {
    // Command-line options override the stored settings for this run only.
    let mut overrides: Vec<(&str, Value)> = Vec::new();
    if let Some(p) = o.sip_port {
        overrides.push(("sip.udp_port", json!(p)));
        overrides.push(("sip.tcp_port", json!(p)));
    }
    if let Some(t) = &o.transport {
        overrides.push(("sip.transport_list", json!([t])));
    }
    if let Some(d) = &o.input {
        overrides.push(("audio.input_device", json!(d)));
    }
    if let Some(d) = &o.output {
        overrides.push(("audio.output_device", json!(d)));
    }
    if let Some(d) = &o.download_dir {
        overrides.push(("file_transfer.directory", json!(d)));
    }
    tool::run_settings(o.config_dir.as_deref(), o.account.as_deref(), &overrides)
}

fn send_chat(s: &Sessions, text: &str, out: &Out) -> Result<(), String> {
    let id = s
        .current()?
        .send_message(text.as_bytes(), "text/plain")
        .map_err(|e| e.to_string())?;
    out.say(&format!("sent message {id}"));
    Ok(())
}

fn command(line: &str, s: &Sessions, account: &Account, out: &Out) -> Result<bool, String> {
    if !line.is_empty() && !line.starts_with('/') {
        send_chat(s, line, out)?;
        return Ok(true);
    }
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else {
        return Ok(true);
    };
    let rest: Vec<String> = words.map(str::to_string).collect();
    let err = |e: sipsimple::Error| e.to_string();
    match cmd {
        "/call" => {
            let uri = rest.first().ok_or("usage: /call URI [TYPE...]")?;
            let mut types: Vec<String> = rest[1..].to_vec();
            if types.is_empty() {
                types.push("audio".into());
            }
            let streams = types
                .iter()
                .map(|t| MediaStreamRegistry::default().create(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            let session = s.manager.new_session(account);
            session.connect(uri, &[], streams).map_err(err)?;
            out.say(&format!("calling {uri} (session {})", session.id().0));
            *s.current.lock() = Some(session);
        }
        "/accept" => {
            let cur = s.current()?;
            let picked = cur.proposed_streams_of_types((!rest.is_empty()).then_some(&rest[..]));
            if cur.state() == SessionState::ReceivedProposal {
                cur.accept_proposal(picked).map_err(err)?;
            } else {
                cur.accept(picked).map_err(err)?;
            }
        }
        "/reject" => {
            let cur = s.current()?;
            let proposal = cur.state() == SessionState::ReceivedProposal;
            let code = match rest.first() {
                Some(c) => c.parse().map_err(|_| format!("bad status code {c}"))?,
                None if proposal => 488,
                None => 603,
            };
            if proposal {
                cur.reject_proposal(code, None).map_err(err)?;
            } else {
                cur.reject(code, None).map_err(err)?;
            }
        }
        "/hold" => s.current()?.hold().map_err(err)?,
        "/unhold" => s.current()?.unhold().map_err(err)?,
        "/add" => {
            let t = rest.first().ok_or("usage: /add TYPE")?;
            let st = MediaStreamRegistry::default().create(t).map_err(err)?;
            s.current()?.add_stream(st).map_err(err)?;
        }
        "/remove" => {
            let t = rest.first().ok_or("usage: /remove TYPE")?;
            s.current()?.remove_stream_of_type(t).map_err(err)?;
        }
        "/chat" => {
            let text = line["/chat".len()..].trim();
            if text.is_empty() {
                return Err("usage: /chat TEXT".into());
            }
            send_chat(s, text, out)?;
        }
        "/dtmf" => {
            let digits = rest.concat();
            if digits.is_empty() {
                return Err("usage: /dtmf DIGITS".into());
            }
            s.current()?.send_dtmf(&digits).map_err(err)?;
        }
        "/send" => {
            // The file name is the rest of the line (it may hold spaces);
            // a first word that is a SIP URI names a new peer.
            let text = line["/send".len()..].trim();
            let (uri, file) = match text.split_once(' ') {
                Some((u, f)) if u.starts_with("sip:") || u.starts_with("sips:") => {
                    (Some(u), f.trim())
                }
                _ => (None, text),
            };
            if file.is_empty() {
                return Err("usage: /send [URI] FILE".into());
            }
            match uri {
                Some(uri) => {
                    let session = s.manager.new_session(account);
                    session.connect_file(uri, &[], file).map_err(err)?;
                    out.say(&format!(
                        "sending {file} to {uri} (session {})",
                        session.id().0
                    ));
                    *s.current.lock() = Some(session);
                }
                None => {
                    s.current()?.send_file(file).map_err(err)?;
                    out.say(&format!("offering {file}"));
                }
            }
        }
        "/composing" => {
            let state = rest.first().map(String::as_str).unwrap_or("active");
            s.current()?
                .send_composing_indication(state, None)
                .map_err(err)?;
        }
        "/end" => s.current()?.end().map_err(err)?,
        "/sessions" => {
            for x in s.manager.sessions() {
                out.say(&format!(
                    "{} {} {} {}",
                    x.id().0,
                    x.state(),
                    x.direction().unwrap_or("-"),
                    x.remote_identity().unwrap_or_default()
                ));
            }
        }
        "/switch" => {
            let id: u64 = rest
                .first()
                .and_then(|i| i.parse().ok())
                .ok_or("usage: /switch ID")?;
            let x = s
                .manager
                .session(sipsimple::ObjectId(id))
                .ok_or_else(|| format!("no session {id}"))?;
            *s.current.lock() = Some(x);
        }
        "/sleep" => {
            let secs: f64 = rest
                .first()
                .and_then(|i| i.parse().ok())
                .filter(|s: &f64| *s >= 0.0 && *s < 3600.0)
                .ok_or("usage: /sleep SECONDS")?;
            std::thread::sleep(Duration::from_secs_f64(secs));
        }
        "/quit" => return Ok(false),
        other => return Err(format!("unknown command {other} (see --help)")),
    }
    Ok(true)
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sip-session: {e}");
            usage();
        }
    };
    let out = Out {
        json: o.json,
        lock: Arc::default(),
    };
    let (storage, account_id) = match settings(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sip-session: {e}");
            std::process::exit(1);
        }
    };
    let app = SIPApplication::new();
    let printer = out.clone();
    let token = NotificationCenter::default().add_observer(None, None, move |n| {
        if n.name != "SIPEngineSIPTrace" {
            printer.notification(n)
        }
    });
    if let Err(e) = app.start(storage) {
        eprintln!("sip-session: {e}");
        NotificationCenter::default().remove_observer(token);
        std::process::exit(1);
    }
    let found = match &account_id {
        Some(id) => app.account_manager().and_then(|m| m.get_account(id)),
        None => Account::bonjour(None),
    };
    let (manager, account) = match app.session_manager().and_then(|m| Ok((m, found?))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sip-session: {e}");
            app.stop();
            NotificationCenter::default().remove_observer(token);
            std::process::exit(1);
        }
    };
    manager.set_default_account(Some(account.clone()));
    for t in [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls] {
        if let Some(a) = app.sip_local_address(t) {
            out.say(&format!("listening on {} port {}", t.as_str(), a.port()));
        }
    }
    let sessions = Arc::new(Sessions {
        manager: manager.clone(),
        current: Mutex::new(None),
    });
    // Incoming sessions become current; --auto-answer takes them and any
    // proposal with every stream offered.
    let auto = o.auto_answer;
    let m2 = manager.clone();
    let s2 = sessions.clone();
    let answerer = NotificationCenter::default().add_observer(None, None, move |n| {
        let incoming = n.name == "SIPSessionNewIncoming";
        let proposal = n.name == "SIPSessionGotProposal";
        if !incoming && !proposal {
            return;
        }
        let Some(sess) = m2.session(n.sender.id) else {
            return;
        };
        if incoming {
            *s2.current.lock() = Some(sess.clone());
        }
        if auto {
            let streams = sess.proposed_streams();
            let _ = if incoming {
                sess.accept(streams)
            } else {
                sess.accept_proposal(streams)
            };
        }
    });
    if let Some(t) = &o.target {
        let line = format!("/call {t} {}", o.types.join(" "));
        if let Err(e) = command(&line, &sessions, &account, &out) {
            out.say(&format!("error: {e}"));
        }
    }
    let stdin = std::io::stdin();
    let mut quit = false;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match command(line.trim(), &sessions, &account, &out) {
            Ok(true) => {}
            Ok(false) => {
                quit = true;
                break;
            }
            Err(e) => out.say(&format!("error: {e}")),
        }
    }
    if !quit {
        // stdin closed without /quit: keep serving (e.g. --auto-answer
        // with no terminal) until killed.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    manager.end_all(Duration::from_secs(5));
    app.stop();
    NotificationCenter::default().remove_observer(answerer);
    NotificationCenter::default().remove_observer(token);
    out.say("bye");
}
