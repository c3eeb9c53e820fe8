//! Signal arithmetic shared by the audio path and its checks: linear
//! resampling, the Goertzel measure of one frequency (whole, and by
//! blocks), RMS level.

use std::f64::consts::TAU;

/// Linear interpolation from one rate to another.
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() || from == 0 {
        return input.to_vec();
    }
    let n = (input.len() as u64 * to as u64 / from as u64) as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 * from as f64 / to as f64;
            let j = x as usize;
            let f = x - j as f64;
            let a = input[j.min(input.len() - 1)] as f64;
            let b = input[(j + 1).min(input.len() - 1)] as f64;
            (a + (b - a) * f).round() as i16
        })
        .collect()
}

/// The strongest frequency component near `freq` by the Goertzel
/// algorithm: the power of `freq` relative to the total power (0..1).
pub fn tone_ratio(samples: &[i16], rate: u32, freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = TAU * freq / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut total = 0.0;
    for &x in samples {
        let x = x as f64;
        total += x * x;
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if total == 0.0 {
        0.0
    } else {
        // A pure tone concentrates N/2 * total in its bin.
        (power / (total * samples.len() as f64 / 2.0)).min(1.0)
    }
}

/// [`tone_ratio`] over 100 ms blocks, averaged: what a listener hears of
/// `freq` when the signal went through a jitter buffer, whose concealed
/// or stretched frames keep the tone but not its phase.
pub fn tone_share(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let block = (rate as usize / 10).max(1);
    let n = samples.len() / block;
    if n == 0 {
        return tone_ratio(samples, rate, freq);
    }
    samples
        .chunks_exact(block)
        .map(|b| tone_ratio(b, rate, freq))
        .sum::<f64>()
        / n as f64
}

/// RMS level in dBFS.
pub fn level_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let ms = samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64;
    10.0 * (ms.sqrt() / 32768.0).powi(2).log10()
}
