//! Calibrating the int8 path for one head of a model: measure every product's input ranges on calibration
//! text, then choose which products run in int8 by their effect on held-out text, against the f32 reference.
//! The result ([`Int8Calibration`]) is what `emoarc calibrate` stores beside the model, so nothing is measured
//! at load.
//!
//! The choice is greedy and measured, not assumed: each product is first tried alone in int8 (the others in
//! int16), then products are added from the least harmful per multiply-add (the feed-forward products hold
//! two thirds of them) while the whole encoder stays within a margin of the quality bar on the check text (worst cosine of pooled vectors to f32, worst intensity difference). A
//! product that would break the margin stays int16.

use crate::backend::int16::{ActivationRanges, Int8Calibration, Kernel, Product, QuantizedEncoder};
use crate::error::{Error, Result};
use crate::estimator::Estimator;
use crate::model::EncoderConfig;
use candle_core::{Device, Tensor};

/// What the calibration aims for.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationOptions {
    /// SmoothQuant's migration strength (default 0.5).
    pub alpha: f32,
    /// Input channels per product computed in f32 (default 8), those with the largest ranges.
    pub outliers: usize,
    /// Worst cosine of pooled vectors to f32 allowed on the check text (default 0.995: a margin over the 0.99
    /// bar, which is checked on other text).
    pub min_cosine: f64,
    /// Worst intensity difference to f32 allowed on the check text (default 0.015, a margin under the 0.02 bar).
    pub max_difference: f32,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            alpha: 0.5,
            outliers: 8,
            min_cosine: 0.995,
            max_difference: 0.015,
        }
    }
}

/// Quality against f32 on the check text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Lowest cosine of pooled vectors over the check text.
    pub worst_cosine: f64,
    /// Largest intensity difference over the check text.
    pub worst_difference: f32,
}

/// The outcome: the calibration, each product's effect alone, and the whole encoder's quality.
#[derive(Debug, Clone)]
pub struct CalibrationReport {
    /// What to store beside the model.
    pub calibration: Int8Calibration,
    /// Each product in int8 alone, the rest int16.
    pub alone: Vec<((usize, Product), Quality)>,
    /// All int16 (the starting point).
    pub int16: Quality,
    /// With the chosen products in int8.
    pub chosen: Quality,
    /// Products in the encoder.
    pub total_products: usize,
}

/// Calibrates the int8 path of `reference`'s head. `reference` must run in f32 (it is the bar);
/// `calibration` gives the activation ranges, `check` the quality the choice is made on.
pub fn calibrate_int8(
    reference: &Estimator,
    calibration: &[&str],
    check: &[&str],
    options: &CalibrationOptions,
) -> Result<CalibrationReport> {
    if calibration.is_empty() || check.is_empty() {
        return Err(Error::Config("int8 calibration needs calibration and check text".into()));
    }
    let ran = reference.backend_name();
    if !ran.starts_with("candle f32") {
        return Err(Error::Config(format!("int8 calibration measures against f32, but the reference runs {ran}")));
    }
    let model = reference.model();
    let spec = reference.spec();
    let weights = spec.encoder_weights(reference.source(), model.head_spec())?;
    let config = EncoderConfig::read(&reference.source().file(&spec.encoder.config)?)?;
    let layers = model.encoder_layers();
    // The products are the same integers on either kernel; the VNNI one is only faster.
    let kernel = Some(Kernel::detect()).filter(|k| k.is_vnni()).unwrap_or_else(Kernel::portable);
    let ids = |texts: &[&str]| -> Result<Vec<Vec<u32>>> { texts.iter().map(|t| reference.token_ids(t)).collect() };
    let (calibration_ids, check_ids) = (ids(calibration)?, ids(check)?);
    let calibration_seqs: Vec<&[u32]> = calibration_ids.iter().map(Vec::as_slice).collect();
    let check_seqs: Vec<&[u32]> = check_ids.iter().map(Vec::as_slice).collect();

    let int16 = QuantizedEncoder::load(&config, &weights, Some(layers), Some(kernel))?;
    let ranges: ActivationRanges = int16.activation_ranges(&calibration_seqs)?;
    // Both sides through the same head code, from pooled vectors: the f32 encoder's and each candidate's.
    let h = model.hidden_size();
    let head = |pooled: &[f32]| -> Result<Vec<Vec<f32>>> {
        let input = Tensor::from_slice(pooled, (check_seqs.len(), h), &Device::Cpu)?;
        Ok(model.head().forward_all(&input, &check_seqs)?.intensities.to_vec2()?)
    };
    let gold_pooled: Vec<f32> = reference.embed(check)?.concat();
    let gold = head(&gold_pooled)?;
    let measure = |int8: Option<&Int8Calibration>| -> Result<Quality> {
        let encoder = QuantizedEncoder::load_calibrated(&config, &weights, Some(layers), Some(kernel), int8)?;
        let pooled = encoder.embed(&check_seqs)?;
        let intensities = head(&pooled)?;
        let mut q = Quality {
            worst_cosine: 1.0,
            worst_difference: 0.0,
        };
        for ((row, gold_row), (got, want)) in pooled.chunks_exact(h).zip(gold_pooled.chunks_exact(h)).zip(intensities.iter().zip(&gold)) {
            q.worst_cosine = q.worst_cosine.min(cosine(row, gold_row));
            let d = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            q.worst_difference = q.worst_difference.max(d);
        }
        Ok(q)
    };
    let with = |chosen: &[(usize, Product)]| -> Result<Quality> {
        measure(Some(&Int8Calibration::new(&ranges, chosen, options.alpha, options.outliers)?))
    };
    // How far a quality is from the margin, as a fraction of it (below 1 passes).
    let badness = |q: &Quality| -> f64 {
        ((1.0 - q.worst_cosine) / (1.0 - options.min_cosine)).max(q.worst_difference as f64 / options.max_difference as f64)
    };

    let all: Vec<(usize, Product)> = (0..layers).flat_map(|l| Product::ALL.map(|p| (l, p))).collect();
    let mut alone = Vec::with_capacity(all.len());
    for &p in &all {
        alone.push((p, with(&[p])?));
    }
    // Larger products first where their harm is alike: the order is harm per multiply-add saved.
    let work = |p: Product| match p {
        Product::Qkv => 3.0,
        Product::AttentionOutput => 1.0,
        Product::Intermediate | Product::Output => 4.0,
    };
    let mut order = alone.clone();
    order.sort_by(|a, b| (badness(&a.1) / work(a.0 .1)).total_cmp(&(badness(&b.1) / work(b.0 .1))));
    let mut chosen: Vec<(usize, Product)> = Vec::new();
    let mut quality = measure(None)?;
    let int16_quality = quality;
    for (p, q) in &order {
        if badness(q) >= 1.0 {
            continue;
        }
        let mut trial = chosen.clone();
        trial.push(*p);
        let got = with(&trial)?;
        if badness(&got) < 1.0 {
            chosen = trial;
            quality = got;
        }
    }
    chosen.sort();
    let mut calibration = Int8Calibration::new(&ranges, &chosen, options.alpha, options.outliers)?;
    calibration.note("calibration_texts", calibration_seqs.len().to_string());
    calibration.note("check_texts", check_seqs.len().to_string());
    calibration.note("check_worst_cosine", format!("{:.5}", quality.worst_cosine));
    calibration.note("check_worst_intensity_difference", format!("{:.4}", quality.worst_difference));
    Ok(CalibrationReport {
        calibration,
        alone,
        int16: int16_quality,
        chosen: quality,
        total_products: all.len(),
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}
