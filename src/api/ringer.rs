//! Ringing on the alert device while a session is incoming: with
//! `audio.alert_device` set (`null` by default: the application rings
//! itself), an incoming session plays `audio.ring_tone` (`tone:<Hz>` or
//! `wav:<path>`, default `tone:425`) there in a 1 s on, 3 s off cadence,
//! from SIPSessionNewIncoming until it is accepted, rejected or
//! cancelled. A device that cannot be opened is logged and skipped: the
//! call itself never depends on the alert device.

use std::time::Duration;

use serde_json::Value;

use super::engine::setting;
use super::session::{Session, SessionState};
use crate::driver::audio_device::{open_sink, open_source};

/// The cadence in 20 ms frames: on, then off.
const ON: u32 = 50;
const PERIOD: u32 = 200;
const RATE: u32 = 8000;

fn text(settings: &serde_json::Map<String, Value>, name: &str, default: &str) -> String {
    setting(settings, name)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string()
}

/// Start ringing for `session` when the settings ask for it.
pub(crate) fn ring_if_asked(
    runtime: &tokio::runtime::Handle,
    settings: &serde_json::Map<String, Value>,
    session: Session,
) {
    let device = text(settings, "audio.alert_device", "null");
    if device == "null" || device.is_empty() {
        return;
    }
    let tone = text(settings, "audio.ring_tone", "tone:425");
    runtime.spawn(async move {
        // Opening a system device waits for its thread: off the runtime.
        let opened = tokio::task::spawn_blocking(move || {
            Ok::<_, String>((
                open_sink(&device, RATE).map_err(|e| format!("alert device {device}: {e}"))?,
                open_source(&tone, RATE).map_err(|e| format!("ring tone {tone}: {e}"))?,
            ))
        })
        .await;
        let (mut sink, mut source) = match opened {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::warn!(target: "sipsimple::audio", "no ringing: {e}");
                return;
            }
            Err(_) => return,
        };
        let mut frame = vec![0i16; (RATE / 50) as usize];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n = 0u32;
        while session.state() == SessionState::Incoming && sink.failure().is_none() {
            tick.tick().await;
            if n % PERIOD < ON {
                source.read(&mut frame);
            } else {
                frame.fill(0);
            }
            sink.write(&frame);
            n += 1;
        }
        sink.finish();
    });
}
