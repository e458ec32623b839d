//! Calibrating the int8 path for one head of a model: measure every product's input ranges on calibration
//! text, then choose which products run in int8 by their effect on held-out text, against the f32 reference.
//! The result ([`Int8Calibration`]) is what `emoarc calibrate` stores beside the model, so nothing is measured
//! at load.
//!
//! The choice is greedy and measured, not assumed: each product is first tried alone in int8 (the others in
//! int16); then, step by step, every product left is tried beside those chosen and the one that costs least
//! per multiply-add saved (the feed-forward products hold two thirds of them) is added, while the whole encoder
//! stays within a margin of the quality bar on the check text (worst cosine of pooled vectors to f32, worst
//! intensity difference). A product that would break the margin stays int16.
//!
//! Before choosing, a head's own fine-tuned layers may be put on the int8 grid ([`int8_grid`]): each product's
//! weights are moved to the values its int8 integers stand for, so int8 loses nothing on the weight side and
//! only the activations' rounding separates it from f32. That changes the model (measured, like any retraining,
//! by its evaluation), not the bar: the f32 reference is then the model with the moved weights.

use crate::backend::int16::{ActivationRanges, Alpha, Int8Calibration, Kernel, Product, QuantizedEncoder};
use crate::error::{Error, Result};
use crate::estimator::Estimator;
use crate::model::EncoderConfig;
use candle_core::{Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the calibration aims for.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationOptions {
    /// SmoothQuant's migration strength per product kind (default 0.5 for all).
    pub alpha: Alpha,
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
            alpha: Alpha::default(),
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
/// `calibration` gives the activation ranges, `check` the quality the choice is made on. With `grid` (from
/// [`int8_grid`], whose moved weights `reference` must already read), the products' ranges and fixed smoothing
/// factors come from it instead of being measured.
pub fn calibrate_int8(
    reference: &Estimator,
    calibration: &[&str],
    check: &[&str],
    options: &CalibrationOptions,
    grid: Option<&Int8Calibration>,
) -> Result<CalibrationReport> {
    if calibration.is_empty() || check.is_empty() {
        return Err(Error::Config("int8 calibration needs calibration and check text".into()));
    }
    let run = Run::new(reference)?;
    let check_ids = run.token_ids(check)?;
    let check_seqs: Vec<&[u32]> = check_ids.iter().map(Vec::as_slice).collect();
    let all = run.products();
    let full = match grid {
        Some(g) => g.clone(),
        None => Int8Calibration::new(&run.ranges(&run.token_ids(calibration)?)?, &all, options.alpha, options.outliers)?,
    };
    let (model, config, weights, kernel) = (reference.model(), &run.config, &run.weights, run.kernel);
    let layers = model.encoder_layers();
    // Both sides through the same head code, from pooled vectors: the f32 encoder's and each candidate's.
    let h = model.hidden_size();
    let head = |pooled: &[f32]| -> Result<Vec<Vec<f32>>> {
        let input = Tensor::from_slice(pooled, (check_seqs.len(), h), &Device::Cpu)?;
        let texts: Vec<Option<&[u32]>> = check_seqs.iter().map(|s| Some(*s)).collect();
        Ok(model.head().forward_all(&input, &texts)?.intensities.to_vec2()?)
    };
    let gold_pooled: Vec<f32> = reference.embed(check)?.concat();
    let gold = head(&gold_pooled)?;
    let measure = |int8: Option<&Int8Calibration>| -> Result<Quality> {
        let encoder = QuantizedEncoder::load_calibrated(config, weights, Some(layers), Some(kernel), int8)?;
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
    let with = |chosen: &[(usize, Product)]| -> Result<Quality> { measure(Some(&full.only(chosen)?)) };
    // How far a quality is from the margin, as a fraction of it (below 1 passes).
    let badness = |q: &Quality| -> f64 {
        ((1.0 - q.worst_cosine) / (1.0 - options.min_cosine)).max(q.worst_difference as f64 / options.max_difference as f64)
    };

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
    // Forward selection: each step adds the product whose addition raises the worst case least per multiply-add
    // (ties to the larger product), until none fits. A fixed order measured alone, tried once, ended where an
    // early small product spent the margin a larger one needed (5 or 6 of 12 where this finds 7 or 8).
    let mut remaining: Vec<(usize, Product)> = alone.iter().filter(|(_, q)| badness(q) < 1.0).map(|(p, _)| *p).collect();
    let mut chosen: Vec<(usize, Product)> = Vec::new();
    let mut quality = measure(None)?;
    let int16_quality = quality;
    loop {
        let mut best: Option<(f64, usize, Quality)> = None;
        for (i, p) in remaining.iter().enumerate() {
            let mut trial = chosen.clone();
            trial.push(*p);
            let got = with(&trial)?;
            if badness(&got) >= 1.0 {
                continue;
            }
            let cost = (badness(&got) - badness(&quality)).max(0.0) / work(p.1);
            let better = match &best {
                None => true,
                Some((c, j, _)) => cost < *c || (cost == *c && work(p.1) > work(remaining[*j].1)),
            };
            if better {
                best = Some((cost, i, got));
            }
        }
        let Some((_, i, got)) = best else { break };
        chosen.push(remaining.remove(i));
        quality = got;
    }
    chosen.sort();
    let mut result = full.only(&chosen)?;
    result.note("calibration_texts", calibration.len().to_string());
    result.note("check_texts", check_seqs.len().to_string());
    result.note("check_worst_cosine", format!("{:.5}", quality.worst_cosine));
    result.note("check_worst_intensity_difference", format!("{:.4}", quality.worst_difference));
    Ok(CalibrationReport {
        calibration: result,
        alone,
        int16: int16_quality,
        chosen: quality,
        total_products: all.len(),
    })
}

/// A head's own fine-tuned layers with every product's weight on the int8 grid (see the module docs).
#[derive(Debug, Clone)]
pub struct Int8Grid {
    /// Every product the head reads, with its ranges; those of the fine-tuned layers with their smoothing
    /// factors fixed: what [`calibrate_int8`] chooses from once the model reads [`Int8Grid::bytes`].
    pub calibration: Int8Calibration,
    /// The head's encoder override file, which the grid replaces.
    pub file: PathBuf,
    /// That file's new bytes: the products' weights moved, every other tensor as it was, in its dtype.
    pub bytes: Vec<u8>,
    /// Products moved.
    pub products: usize,
    /// The largest move of a weight, as a fraction of its output channel's largest weight.
    pub largest_move: f32,
}

/// Puts every product of `reference`'s own fine-tuned layers (its encoder override) on the int8 grid, with
/// smoothing factors from input ranges measured on `calibration` and the weights as they are. Writes nothing.
pub fn int8_grid(reference: &Estimator, calibration: &[&str], options: &CalibrationOptions) -> Result<Int8Grid> {
    if calibration.is_empty() {
        return Err(Error::Config("putting weights on the int8 grid needs calibration text".into()));
    }
    let run = Run::new(reference)?;
    let model = reference.model();
    let name = model.head_spec().encoder_override.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "head {:?} reads the shared encoder's weights; only a head's own fine-tuned layers can be put on the \
             int8 grid",
            reference.head_name()
        ))
    })?;
    let file = reference.source().file(name)?;
    let ranges = run.ranges(&run.token_ids(calibration)?)?;
    let mut cal = Int8Calibration::new(&ranges, &run.products(), options.alpha, options.outliers)?;
    let held = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let bad = |why: String| Error::Config(format!("{}: {why}", file.display()));
    let read = safetensors::SafeTensors::deserialize(&held).map_err(|e| bad(e.to_string()))?;
    let mut tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> =
        read.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    let (mut products, mut largest_move) = (0, 0f32);
    for (layer, product) in run.products() {
        let names: Vec<String> = product.linear_layers(layer).iter().map(|l| format!("{l}.weight")).collect();
        if !names.iter().all(|n| tensors.contains_key(n)) {
            continue; // a layer the override does not hold: the shared encoder's, left as it is
        }
        let mut before = Vec::new();
        let mut inputs = 0;
        for n in &names {
            let (dtype, shape, data) = &tensors[n];
            match shape[..] {
                [_, k] if inputs == 0 || k == inputs => inputs = k,
                _ => return Err(bad(format!("{n} has shape {shape:?}, not [outputs, {inputs}]"))),
            }
            before.extend(to_f32(*dtype, data).ok_or_else(|| bad(format!("{n} is {dtype:?}, not f32, f16 or bf16")))?);
        }
        let mut after = before.clone();
        cal.put_on_grid(layer, product, &mut after, inputs)?;
        for (old, new) in before.chunks_exact(inputs).zip(after.chunks_exact(inputs)) {
            let top = old.iter().fold(0f32, |m, w| m.max(w.abs())).max(f32::MIN_POSITIVE);
            let moved = old.iter().zip(new).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            largest_move = largest_move.max(moved / top);
        }
        let mut rest = after.as_slice();
        for n in &names {
            let (dtype, shape, data) = tensors.get_mut(n).expect("checked above");
            let (part, tail) = rest.split_at(shape[0] * shape[1]);
            *data = from_f32(*dtype, part);
            rest = tail;
        }
        products += 1;
    }
    if products == 0 {
        return Err(bad("it holds none of the head's products".into()));
    }
    let views = tensors
        .iter()
        .map(|(n, (dtype, shape, data))| Ok((n, TensorView::new(*dtype, shape.clone(), data).map_err(|e| bad(e.to_string()))?)))
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| bad(e.to_string()))?;
    Ok(Int8Grid {
        calibration: cal,
        file,
        bytes,
        products,
        largest_move,
    })
}

/// What both steps read from the reference: its encoder files and configuration, and the kernel to run on.
struct Run<'a> {
    reference: &'a Estimator,
    config: EncoderConfig,
    weights: Vec<PathBuf>,
    kernel: Kernel,
}

impl<'a> Run<'a> {
    fn new(reference: &'a Estimator) -> Result<Self> {
        let ran = reference.backend_name();
        if !ran.starts_with("candle f32") {
            return Err(Error::Config(format!("int8 calibration measures against f32, but the reference runs {ran}")));
        }
        let spec = reference.spec();
        Ok(Run {
            reference,
            config: EncoderConfig::read(&reference.source().file(&spec.encoder.config)?)?,
            weights: spec.encoder_weights(reference.source(), reference.model().head_spec())?,
            // The products are the same integers on either kernel; the VNNI one is only faster.
            kernel: Some(Kernel::detect()).filter(|k| k.is_vnni()).unwrap_or_else(Kernel::portable),
        })
    }

    fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.reference.token_ids(t)).collect()
    }

    /// Every product of the layers the head reads, in running order.
    fn products(&self) -> Vec<(usize, Product)> {
        (0..self.reference.model().encoder_layers()).flat_map(|l| Product::ALL.map(|p| (l, p))).collect()
    }

    /// Every product's input ranges over `seqs`, on the int16 encoder.
    fn ranges(&self, seqs: &[Vec<u32>]) -> Result<ActivationRanges> {
        let layers = self.reference.model().encoder_layers();
        let int16 = QuantizedEncoder::load(&self.config, &self.weights, Some(layers), Some(self.kernel))?;
        let seqs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        int16.activation_ranges(&seqs)
    }
}

/// A stored float tensor's values (`None` for other dtypes).
fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => return None,
    })
}

/// `values` stored as `dtype` (one [`to_f32`] reads), rounding to nearest.
fn from_f32(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        Dtype::BF16 => values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}
