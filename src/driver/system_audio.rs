//! The machine's own audio devices through cpal: listing, and a source and
//! a sink that bridge a device's callback thread and the stream's 20 ms
//! clock through a bounded ring of samples, resampling between the
//! device's rate and the stream's and mixing to or from mono.
//!
//! Names: `system` (the system's default device at the time the stream
//! opens it) and `system:<id>` with the backend's device identifier
//! (`system:alsa:default`; the part after the backend, `system:default`,
//! works too). A device that is listed but
//! cannot run (no sound card behind ALSA's `default`, for instance) is an
//! error when opened, which the audio stream treats as "no device": it runs
//! on the null device and says so. A device that fails while running
//! (unplugged) marks the source or sink failed, and the stream moves to
//! the null device with a notification.
//!
//! cpal's streams may not cross threads, so each lives on a thread of its
//! own that holds it until the source or sink is dropped.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use parking_lot::Mutex;

use super::audio_device::{AudioSink, AudioSource, DeviceError};

/// One device the system offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemDevice {
    /// The backend's identifier (`alsa:default`, `alsa:hw:CARD=PCH,DEV=0`),
    /// what `system:<name>` names.
    pub name: String,
    /// What the system calls it, for people.
    pub description: String,
    pub input: bool,
    pub output: bool,
    pub default_input: bool,
    pub default_output: bool,
}

/// The devices that can run: those whose default configuration can be
/// read (cpal lists ALSA's `default` even without a sound card).
pub fn system_devices() -> Vec<SystemDevice> {
    let host = cpal::default_host();
    let name_of = |d: Option<cpal::Device>| d.and_then(|d| d.id().ok()).map(|i| i.to_string());
    let (def_in, def_out) = (
        name_of(host.default_input_device()),
        name_of(host.default_output_device()),
    );
    let mut out: Vec<SystemDevice> = Vec::new();
    let Ok(devices) = host.devices() else {
        return out;
    };
    for d in devices {
        let Ok(name) = d.id().map(|i| i.to_string()) else {
            continue;
        };
        let description = d
            .description()
            .map(|x| x.name().to_string())
            .unwrap_or_else(|_| name.clone());
        let input = d.default_input_config().is_ok();
        let output = d.default_output_config().is_ok();
        if !input && !output {
            continue;
        }
        if out.iter().any(|o| o.name == name) {
            continue;
        }
        out.push(SystemDevice {
            default_input: input && def_in.as_deref() == Some(name.as_str()),
            default_output: output && def_out.as_deref() == Some(name.as_str()),
            name,
            description,
            input,
            output,
        });
    }
    out
}

fn find(name: Option<&str>, input: bool) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    let unavailable = |why: String| DeviceError::Unavailable(why);
    match name {
        None => {
            let d = if input {
                host.default_input_device()
            } else {
                host.default_output_device()
            };
            d.ok_or_else(|| unavailable("the system has no default audio device".into()))
        }
        Some(n) => {
            let mut all = if input {
                host.input_devices()
            } else {
                host.output_devices()
            }
            .map_err(|e| unavailable(e.to_string()))?;
            all.find(|d| d.id().is_ok_and(|x| x.to_string() == n || x.id() == n))
                .ok_or_else(|| unavailable(format!("no audio device named {n:?}")))
        }
    }
}

/// Linear interpolation from one rate to another across calls.
struct Resampler {
    step: f64,
    pos: f64,
    prev: f32,
}

impl Resampler {
    fn new(from: u32, to: u32) -> Resampler {
        Resampler {
            step: f64::from(from.max(1)) / f64::from(to.max(1)),
            pos: 0.0,
            prev: 0.0,
        }
    }

    /// Resample `input`, appending to `out`. Positions are measured from
    /// the sample before `input[0]` (the last one of the previous call).
    fn run(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let n = input.len() as f64;
        while self.pos < n {
            let i = self.pos.floor();
            let f = (self.pos - i) as f32;
            let a = if i == 0.0 {
                self.prev
            } else {
                input[i as usize - 1]
            };
            let b = input[i as usize];
            out.push(a + (b - a) * f);
            self.pos += self.step;
        }
        self.pos -= n;
        if let Some(&l) = input.last() {
            self.prev = l;
        }
    }
}

/// Samples between the device thread and the stream, at most `cap`.
struct Ring {
    q: Mutex<VecDeque<i16>>,
    cap: usize,
    failed: Mutex<Option<String>>,
}

impl Ring {
    fn new(cap: usize) -> Arc<Ring> {
        Arc::new(Ring {
            q: Mutex::new(VecDeque::with_capacity(cap)),
            cap,
            failed: Mutex::new(None),
        })
    }

    /// Append, dropping the oldest beyond the bound.
    fn push(&self, s: impl Iterator<Item = i16>) {
        let mut q = self.q.lock();
        q.extend(s);
        let excess = q.len().saturating_sub(self.cap);
        q.drain(..excess);
    }

    /// Fill `out`, with silence for what is missing.
    fn pop(&self, out: &mut [i16]) {
        let mut q = self.q.lock();
        for s in out.iter_mut() {
            *s = q.pop_front().unwrap_or(0);
        }
    }

    fn fail(&self, why: String) {
        let mut f = self.failed.lock();
        if f.is_none() {
            *f = Some(why);
        }
    }
}

fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// Keeps a device's stream alive on its own thread until dropped.
struct Holder {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Build a stream on a thread of its own with `build`, play it, and keep
/// it until the holder is dropped; errors in building come back here.
fn hold<F>(build: F) -> Result<Holder, DeviceError>
where
    F: FnOnce() -> Result<cpal::Stream, DeviceError> + Send + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), DeviceError>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sipsimple-audio-device".into())
        .spawn(move || {
            let stream = match build() {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            if let Err(e) = stream.play() {
                let _ = ready_tx.send(Err(DeviceError::Unavailable(e.to_string())));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            // Until the holder goes.
            let _ = stop_rx.recv();
            drop(stream);
        })
        .map_err(|e| DeviceError::Unavailable(format!("no device thread: {e}")))?;
    let mut holder = Holder {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(holder),
        Ok(Err(e)) => {
            holder.stop = None;
            Err(e)
        }
        Err(_) => Err(DeviceError::Unavailable("the device thread ended".into())),
    }
}

fn config_of(
    d: &cpal::Device,
    input: bool,
) -> Result<(cpal::StreamConfig, cpal::SampleFormat), DeviceError> {
    let c = if input {
        d.default_input_config()
    } else {
        d.default_output_config()
    }
    .map_err(|e| DeviceError::Unavailable(e.to_string()))?;
    Ok((c.config(), c.sample_format()))
}

fn unsupported(format: cpal::SampleFormat) -> DeviceError {
    DeviceError::Unavailable(format!("sample format {format} is not supported"))
}

/// An input stream of samples `T`, each callback's first channel handed to
/// `take` as f32.
fn input_stream<T>(
    d: &cpal::Device,
    config: cpal::StreamConfig,
    mut take: impl FnMut(&mut dyn Iterator<Item = f32>) + Send + 'static,
    err: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, cpal::Error>
where
    T: cpal::SizedSample,
    f32: cpal::FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    d.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            take(&mut data.chunks(channels).map(|c| c[0].to_sample::<f32>()))
        },
        err,
        None,
    )
}

/// An output stream of samples `T`: `fill` gives one mono f32 sample per
/// device frame, copied to every channel.
fn output_stream<T>(
    d: &cpal::Device,
    config: cpal::StreamConfig,
    mut fill: impl FnMut(&mut [f32]) + Send + 'static,
    err: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, cpal::Error>
where
    T: cpal::SizedSample + cpal::FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    let mut mono: Vec<f32> = Vec::new();
    d.build_output_stream(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            mono.resize(data.len() / channels, 0.0);
            fill(&mut mono);
            for (frame, x) in data.chunks_mut(channels).zip(mono.iter()) {
                frame.fill(T::from_sample(*x));
            }
        },
        err,
        None,
    )
}

/// A system input device, as the stream's mono source at `rate`.
pub struct SystemSource {
    ring: Arc<Ring>,
    _holder: Holder,
}

impl SystemSource {
    pub fn open(name: Option<&str>, rate: u32) -> Result<SystemSource, DeviceError> {
        let name = name.map(str::to_string);
        // 200 ms at most wait between the device and the stream.
        let ring = Ring::new(rate as usize / 5);
        let r2 = ring.clone();
        let holder = hold(move || {
            let d = find(name.as_deref(), true)?;
            let (config, format) = config_of(&d, true)?;
            let mut rs = Resampler::new(config.sample_rate, rate);
            let (mut mono, mut out) = (Vec::new(), Vec::new());
            let r3 = r2.clone();
            let err = move |e: cpal::Error| r3.fail(e.to_string());
            let take = move |frames: &mut dyn Iterator<Item = f32>| {
                mono.clear();
                mono.extend(frames);
                out.clear();
                rs.run(&mono, &mut out);
                r2.push(out.iter().map(|x| to_i16(*x)));
            };
            let built = match format {
                cpal::SampleFormat::F32 => input_stream::<f32>(&d, config, take, err),
                cpal::SampleFormat::I16 => input_stream::<i16>(&d, config, take, err),
                cpal::SampleFormat::I32 => input_stream::<i32>(&d, config, take, err),
                cpal::SampleFormat::U16 => input_stream::<u16>(&d, config, take, err),
                other => return Err(unsupported(other)),
            };
            built.map_err(|e| DeviceError::Unavailable(e.to_string()))
        })?;
        Ok(SystemSource {
            ring,
            _holder: holder,
        })
    }
}

impl AudioSource for SystemSource {
    fn read(&mut self, frame: &mut [i16]) {
        self.ring.pop(frame);
    }

    fn failure(&self) -> Option<String> {
        self.ring.failed.lock().clone()
    }
}

/// A system output device, fed mono at `rate` by the stream.
pub struct SystemSink {
    ring: Arc<Ring>,
    _holder: Holder,
}

impl SystemSink {
    pub fn open(name: Option<&str>, rate: u32) -> Result<SystemSink, DeviceError> {
        let name = name.map(str::to_string);
        let ring = Ring::new(rate as usize / 5);
        let r2 = ring.clone();
        let holder = hold(move || {
            let d = find(name.as_deref(), false)?;
            let (config, format) = config_of(&d, false)?;
            let device_rate = config.sample_rate;
            let mut rs = Resampler::new(rate, device_rate);
            let (mut mono, mut out) = (Vec::new(), VecDeque::<f32>::new());
            let r3 = r2.clone();
            let err = move |e: cpal::Error| r3.fail(e.to_string());
            let mut chunk: Vec<i16> = Vec::new();
            let mut resampled: Vec<f32> = Vec::new();
            // Fill `dest` (device frames) with stream samples, resampled;
            // the buffers are kept: this runs on the device's thread.
            let fill = move |dest: &mut [f32]| {
                let want = dest.len() * rate as usize / device_rate.max(1) as usize + 2;
                chunk.resize(want, 0);
                while out.len() < dest.len() {
                    r2.pop(&mut chunk);
                    mono.clear();
                    mono.extend(chunk.iter().map(|s| f32::from(*s) / 32768.0));
                    resampled.clear();
                    rs.run(&mono, &mut resampled);
                    out.extend(resampled.iter());
                }
                let n = dest.len();
                for (d, x) in dest.iter_mut().zip(out.drain(..n)) {
                    *d = x;
                }
            };
            let built = match format {
                cpal::SampleFormat::F32 => output_stream::<f32>(&d, config, fill, err),
                cpal::SampleFormat::I16 => output_stream::<i16>(&d, config, fill, err),
                cpal::SampleFormat::I32 => output_stream::<i32>(&d, config, fill, err),
                cpal::SampleFormat::U16 => output_stream::<u16>(&d, config, fill, err),
                other => return Err(unsupported(other)),
            };
            built.map_err(|e| DeviceError::Unavailable(e.to_string()))
        })?;
        Ok(SystemSink {
            ring,
            _holder: holder,
        })
    }
}

impl AudioSink for SystemSink {
    fn write(&mut self, frame: &[i16]) {
        self.ring.push(frame.iter().copied());
    }

    fn failure(&self) -> Option<String> {
        self.ring.failed.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampler_keeps_a_tone_across_calls() {
        use crate::proto::codec::dsp::tone_ratio;
        let mut rs = Resampler::new(44_100, 8000);
        let input: Vec<f32> = (0..44_100)
            .map(|i| (std::f64::consts::TAU * 440.0 * f64::from(i) / 44_100.0).sin() as f32 * 0.5)
            .collect();
        let mut out = Vec::new();
        // In odd-sized pieces, as device callbacks come.
        for c in input.chunks(441 + 7) {
            rs.run(c, &mut out);
        }
        assert!((7990..=8010).contains(&out.len()), "{}", out.len());
        let pcm: Vec<i16> = out.iter().map(|x| to_i16(*x)).collect();
        assert!(tone_ratio(&pcm, 8000, 440.0) > 0.95);
    }

    #[test]
    fn ring_is_bounded_and_pads_with_silence() {
        let r = Ring::new(10);
        r.push((1..=15).map(|x| x as i16));
        let mut out = [0i16; 12];
        r.pop(&mut out);
        assert_eq!(&out[..10], &[6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(&out[10..], &[0, 0]);
        r.fail("gone".into());
        r.fail("again".into());
        assert_eq!(r.failed.lock().as_deref(), Some("gone"));
    }

    /// This machine may have no sound card: opening then fails cleanly
    /// (an error, not a hang or a panic), and when something opens, it
    /// runs and reads.
    #[test]
    fn system_devices_open_or_fail_cleanly() {
        for d in system_devices() {
            assert!(d.input || d.output);
        }
        match SystemSource::open(None, 8000) {
            Ok(mut s) => {
                let mut f = [0i16; 160];
                s.read(&mut f);
            }
            Err(e) => assert!(matches!(e, DeviceError::Unavailable(_)), "{e}"),
        }
        match SystemSink::open(Some("no such device, surely"), 8000) {
            Ok(_) => panic!("a device that does not exist opened"),
            Err(e) => assert!(e.to_string().contains("no audio device named"), "{e}"),
        }
    }
}
