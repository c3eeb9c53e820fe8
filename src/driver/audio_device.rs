//! Audio sources and sinks for streams: silence, a tone generator, WAV
//! files in and out. They work in 16-bit mono frames at the stream's rate
//! and are paced by the stream's own 20 ms clock, so a machine without a
//! sound card runs calls exactly like one with.
//!
//! Device names (settings `audio.input_device`, `audio.output_device`):
//! `null` (silence / discard), `tone:<Hz>` (input: a sine at -10 dBFS),
//! `wav:<path>` (input: the file, looped, resampled; output: a new file,
//! `name-2.wav` and so on when the name is taken), `system` (the system's
//! default device) and `system:<name>` (see `driver::system_audio`).

use std::f64::consts::TAU;

pub use super::system_audio::{system_devices, SystemDevice, SystemSink, SystemSource};

pub use crate::proto::codec::dsp::{level_dbfs, resample, tone_ratio, tone_share};
use std::fs::File;
use std::io::BufWriter;

/// Where a stream's outgoing audio comes from.
pub trait AudioSource: Send {
    /// Fill `frame` with the next samples.
    fn read(&mut self, frame: &mut [i16]);
    /// Why the device stopped working (unplugged, say), if it did.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// Where a stream's incoming audio goes.
pub trait AudioSink: Send {
    fn write(&mut self, frame: &[i16]);
    /// Flush and close (a WAV file gets its final header).
    fn finish(&mut self) {}
    /// Why the device stopped working, if it did.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// Why a device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown audio device {0:?} (null, tone:<Hz>, wav:<path>, system, system:<name>)")]
    Unknown(String),
    /// A system device that is missing or cannot run.
    #[error("audio device unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Wav {
        path: String,
        #[source]
        source: hound::Error,
    },
}

pub struct Silence;

impl AudioSource for Silence {
    fn read(&mut self, frame: &mut [i16]) {
        frame.fill(0);
    }
}

pub struct Discard;

impl AudioSink for Discard {
    fn write(&mut self, _frame: &[i16]) {}
}

/// A sine at a fixed frequency.
pub struct Tone {
    step: f64,
    phase: f64,
    amplitude: f64,
}

impl Tone {
    /// `amplitude` in full-scale units (1.0 = 0 dBFS).
    pub fn new(freq: f64, rate: u32, amplitude: f64) -> Tone {
        Tone {
            step: TAU * freq / rate as f64,
            phase: 0.0,
            amplitude: amplitude.clamp(0.0, 1.0) * 32767.0,
        }
    }
}

impl AudioSource for Tone {
    fn read(&mut self, frame: &mut [i16]) {
        for s in frame.iter_mut() {
            *s = (self.phase.sin() * self.amplitude).round() as i16;
            self.phase = (self.phase + self.step) % TAU;
        }
    }
}

/// A WAV file's first channel, resampled to the stream rate, looped.
pub struct WavSource {
    samples: Vec<i16>,
    pos: usize,
}

impl WavSource {
    pub fn open(path: &str, rate: u32) -> Result<WavSource, DeviceError> {
        let wav_err = |source| DeviceError::Wav {
            path: path.into(),
            source,
        };
        let reader = hound::WavReader::open(path).map_err(wav_err)?;
        let spec = reader.spec();
        if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
            return Err(DeviceError::Invalid(format!(
                "{path}: only 16-bit PCM WAV files are supported"
            )));
        }
        // Bounded: an hour of 48 kHz stereo is 345 MB; refuse more.
        if reader.duration() as u64 * spec.channels as u64 > 48_000 * 2 * 3600 {
            return Err(DeviceError::Invalid(format!("{path}: longer than an hour")));
        }
        let ch = spec.channels.max(1) as usize;
        let all: Vec<i16> = reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(wav_err)?;
        let mono: Vec<i16> = all.chunks(ch).map(|c| c[0]).collect();
        let samples = resample(&mono, spec.sample_rate, rate);
        if samples.is_empty() {
            return Err(DeviceError::Invalid(format!("{path}: no samples")));
        }
        Ok(WavSource { samples, pos: 0 })
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, frame: &mut [i16]) {
        for s in frame.iter_mut() {
            *s = self.samples[self.pos];
            self.pos = (self.pos + 1) % self.samples.len();
        }
    }
}

/// Writes what it gets into a 16-bit WAV file (mono unless made with
/// [`WavSink::create_channels`]; frames are then interleaved).
pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    path: String,
}

impl WavSink {
    /// A new file at `path`; if it exists (another stream records there,
    /// or an earlier call did), `name-2.wav`, `name-3.wav`, ... instead:
    /// nothing is overwritten.
    pub fn create(path: &str, rate: u32) -> Result<WavSink, DeviceError> {
        WavSink::create_channels(path, rate, 1)
    }

    /// [`WavSink::create`] with `channels` interleaved channels.
    pub fn create_channels(path: &str, rate: u32, channels: u16) -> Result<WavSink, DeviceError> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let (stem, ext) = match path.rsplit_once('.') {
            Some((s, e)) if !e.contains('/') => (s.to_string(), format!(".{e}")),
            _ => (path.to_string(), String::new()),
        };
        let mut n = 1;
        let (file, chosen) = loop {
            let candidate = if n == 1 {
                path.to_string()
            } else {
                format!("{stem}-{n}{ext}")
            };
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&candidate)
            {
                Ok(f) => break (f, candidate),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => {
                    return Err(DeviceError::Wav {
                        path: candidate,
                        source: hound::Error::IoError(e),
                    })
                }
            }
        };
        let w = hound::WavWriter::new(BufWriter::new(file), spec).map_err(|source| {
            DeviceError::Wav {
                path: path.into(),
                source,
            }
        })?;
        Ok(WavSink {
            writer: Some(w),
            path: chosen,
        })
    }

    /// The file actually written (the name asked for, or `name-N.wav`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl AudioSink for WavSink {
    fn write(&mut self, frame: &[i16]) {
        if let Some(w) = self.writer.as_mut() {
            for s in frame {
                if w.write_sample(*s).is_err() {
                    // Disk full or similar: stop writing, keep the call.
                    self.writer = None;
                    return;
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.finalize();
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        self.finish();
    }
}

pub fn open_source(name: &str, rate: u32) -> Result<Box<dyn AudioSource>, DeviceError> {
    match name.split_once(':') {
        _ if name == "null" || name.is_empty() => Ok(Box::new(Silence)),
        Some(("tone", f)) => {
            let freq: f64 = f
                .parse()
                .ok()
                .filter(|f: &f64| *f > 0.0 && *f < rate as f64 / 2.0)
                .ok_or_else(|| {
                    DeviceError::Invalid(format!(
                        "tone frequency {f:?} must be between 0 and {} Hz",
                        rate / 2
                    ))
                })?;
            // -10 dBFS.
            Ok(Box::new(Tone::new(freq, rate, 0.316)))
        }
        Some(("wav", path)) => Ok(Box::new(WavSource::open(path, rate)?)),
        _ if name == "system" => Ok(Box::new(SystemSource::open(None, rate)?)),
        Some(("system", device)) => Ok(Box::new(SystemSource::open(Some(device), rate)?)),
        _ => Err(DeviceError::Unknown(name.into())),
    }
}

pub fn open_sink(name: &str, rate: u32) -> Result<Box<dyn AudioSink>, DeviceError> {
    match name.split_once(':') {
        _ if name == "null" || name.is_empty() => Ok(Box::new(Discard)),
        Some(("wav", path)) => Ok(Box::new(WavSink::create(path, rate)?)),
        _ if name == "system" => Ok(Box::new(SystemSink::open(None, rate)?)),
        Some(("system", device)) => Ok(Box::new(SystemSink::open(Some(device), rate)?)),
        _ => Err(DeviceError::Unknown(name.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_has_its_frequency_and_level() {
        let mut t = Tone::new(440.0, 8000, 0.316);
        let mut buf = vec![0i16; 8000];
        t.read(&mut buf);
        assert!(tone_ratio(&buf, 8000, 440.0) > 0.95);
        assert!(tone_ratio(&buf, 8000, 1000.0) < 0.01);
        let l = level_dbfs(&buf);
        assert!((-14.0..-12.0).contains(&l), "{l}");
    }

    #[test]
    fn wav_out_and_back_in() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        let p = p.to_str().unwrap();
        let mut sink = open_sink(&format!("wav:{p}"), 16000).unwrap();
        let mut t = Tone::new(1000.0, 16000, 0.5);
        let mut buf = vec![0i16; 1600];
        for _ in 0..10 {
            t.read(&mut buf);
            sink.write(&buf);
        }
        sink.finish();
        // Read back at 8 kHz: still a 1 kHz tone.
        let mut src = open_source(&format!("wav:{p}"), 8000).unwrap();
        let mut back = vec![0i16; 4000];
        src.read(&mut back);
        assert!(tone_ratio(&back, 8000, 1000.0) > 0.9);
        for bad in [
            "speaker",
            "tone:0",
            "tone:5000",
            "tone:x",
            "wav:/nonexistent/x.wav",
        ] {
            assert!(open_source(bad, 8000).is_err(), "{bad}");
        }
        assert!(open_sink("wav:/nonexistent/dir/x.wav", 8000).is_err());
        // An existing recording is never overwritten.
        let mut again = open_sink(&format!("wav:{p}"), 8000).unwrap();
        again.write(&[1, 2, 3]);
        again.finish();
        assert!(dir.path().join("t-2.wav").exists());
        let kept = hound::WavReader::open(p).unwrap();
        assert_eq!(kept.spec().sample_rate, 16000);
    }
}
