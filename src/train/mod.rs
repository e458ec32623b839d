//! Training heads. [`train_head`] fits a head on pooled encoder embeddings: a seeded initialisation,
//! minibatch AdamW (candle-nn) on a soft-label binary cross-entropy (the labelled intensity is the target
//! probability of each sigmoid), and early stopping on the dev split's macro Spearman. Embeddings are computed
//! once per run by the caller, so an epoch costs only the head. The same seed and data give bit-identical
//! weights. [`top_layers`] goes further and fine-tunes the encoder's top layers with the head.

pub mod int8;
pub mod top_layers;

use crate::error::{Error, Result};
use crate::eval;
use crate::intensities::Intensities;
use crate::model::{Activation, Head};
use crate::taxonomy::{Category, NUM_CATEGORIES};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Linear, Optimizer, ParamsAdamW};
use std::collections::HashMap;

/// Hyper-parameters of one training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Hidden layer widths; empty for a linear head.
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer (default GELU); unused by a linear head.
    pub activation: Activation,
    /// L2-normalise the pooled vector first (what the zero-shot head does too).
    pub normalize: bool,
    /// Most epochs to run (default 200); early stopping usually ends sooner.
    pub epochs: usize,
    /// Examples per AdamW step (default 64).
    pub batch_size: usize,
    /// AdamW's learning rate for the head (default 2e-3).
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay (default 1e-2).
    pub weight_decay: f64,
    /// Epochs without a better dev score before stopping.
    pub patience: usize,
    /// Seed of the initialisation and of the minibatch order (default 42): the same seed and data give the same
    /// weights.
    pub seed: u64,
    /// Loss weight of cells where the category is present, relative to absent ones. Almost all cells are
    /// absent (a category is in ~3% of utterances), so without it the head learns to say "absent" quietly
    /// everywhere and under-reads strong emotions. The optimum of each cell stays at its labelled value.
    pub positive_weight: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            hidden: vec![256],
            activation: Activation::Gelu,
            normalize: true,
            epochs: 200,
            batch_size: 64,
            learning_rate: 2e-3,
            weight_decay: 1e-2,
            patience: 20,
            seed: 42,
            positive_weight: 4.0,
        }
    }
}

/// One epoch's record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochLog {
    /// The epoch, counting from 1.
    pub epoch: usize,
    /// Mean over the epoch's minibatches of the weighted soft-label loss ([`soft_bce_with_logits`]).
    pub train_loss: f64,
    /// The same loss over the whole dev split after the epoch.
    pub dev_loss: f64,
    /// Mean per-category Spearman correlation on the dev split, `-1..=1`: what early stopping maximises.
    pub dev_macro_spearman: f64,
}

/// Early stopping: keeps the state of the epoch with the best dev score and says when patience has run out.
pub(crate) struct BestEpoch<T> {
    pub score: f64,
    pub epoch: usize,
    pub state: T,
}

impl<T> BestEpoch<T> {
    /// Records an epoch in `history`; takes a snapshot only when it is the best so far. Returns whether to stop.
    pub(crate) fn observe(
        &mut self,
        history: &mut Vec<EpochLog>,
        log: EpochLog,
        patience: usize,
        snapshot: impl FnOnce() -> Result<T>,
    ) -> Result<bool> {
        history.push(log);
        if log.dev_macro_spearman > self.score {
            *self = BestEpoch {
                score: log.dev_macro_spearman,
                epoch: log.epoch,
                state: snapshot()?,
            };
            return Ok(false);
        }
        Ok(log.epoch - self.epoch >= patience)
    }
}

/// A trained head: its tensors by name (`layers.{i}.weight/bias`) and the run's history.
pub struct Trained {
    /// The best epoch's weights by name, ready to be saved as the head's safetensors.
    pub tensors: HashMap<String, Tensor>,
    /// The same weights as a head that can score embeddings.
    pub head: Head,
    /// The epoch (from 1) whose weights were kept: the one with the best dev macro Spearman.
    pub best_epoch: usize,
    /// Every epoch run, in order, including those after the best.
    pub history: Vec<EpochLog>,
}

/// A small deterministic generator (SplitMix64): initialisation and shuffling must not depend on anything
/// but the seed, on any platform.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator whose stream is fixed by `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// The next 64 uniformly distributed bits of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            xs.swap(i, j);
        }
    }
}

/// Soft-label binary cross-entropy on logits, numerically stable (`max(z,0) - z*y + ln(1 + e^-|z|)`), with
/// cells where the target is present weighted by `positive_weight`; a weighted mean over all cells.
pub fn soft_bce_with_logits(logits: &Tensor, targets: &Tensor, positive_weight: f64) -> candle_core::Result<Tensor> {
    let pos = logits.relu()?;
    let log_term = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let cell = ((pos - logits.mul(targets)?)? + log_term)?;
    let weights = ((targets.gt(0.0)?.to_dtype(DType::F32)? * (positive_weight - 1.0))? + 1.0)?;
    cell.mul(&weights)?.sum_all()?.div(&weights.sum_all()?)
}

fn matrix(rows: &[Vec<f32>], device: &Device) -> Result<Tensor> {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), cols), device)?)
}

fn targets(labels: &[Intensities], device: &Device) -> Result<Tensor> {
    let flat: Vec<f32> = labels.iter().flat_map(|l| l.as_slice().iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (labels.len(), NUM_CATEGORIES), device)?)
}

/// Uniform Kaiming-style initialisation of a `[out, in]` layer from the seeded generator; bias zero.
fn init_layer(rng: &mut SeededRng, inputs: usize, outputs: usize, device: &Device) -> Result<(Var, Var)> {
    let bound = (6.0 / inputs as f64).sqrt() * 0.5;
    let w: Vec<f32> = (0..inputs * outputs).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
    Ok((
        Var::from_tensor(&Tensor::from_vec(w, (outputs, inputs), device)?)?,
        Var::zeros(outputs, DType::F32, device)?,
    ))
}

fn build_head(vars: &[(Var, Var)], opts: &TrainOptions) -> Head {
    let layers = vars
        .iter()
        .map(|(w, b)| Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())))
        .collect();
    Head::from_layers(layers, opts.activation, opts.normalize)
}

/// Macro Spearman of predictions against labels over the categories where both vary.
pub fn macro_spearman(pred: &[Intensities], gold: &[Intensities]) -> f64 {
    let values: Vec<f64> = Category::ALL
        .iter()
        .filter_map(|&c| {
            let p: Vec<f32> = pred.iter().map(|x| x[c]).collect();
            let g: Vec<f32> = gold.iter().map(|x| x[c]).collect();
            eval::spearman(&p, &g)
        })
        .collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Trains a head on `(embedding, labels)` pairs, keeping the weights of the epoch with the best dev macro
/// Spearman. Runs on CPU: the head is tiny, and CPU keeps runs bit-reproducible.
pub fn train_head(
    train: (&[Vec<f32>], &[Intensities]),
    dev: (&[Vec<f32>], &[Intensities]),
    opts: &TrainOptions,
) -> Result<Trained> {
    let (train_x, train_y) = train;
    let (dev_x, dev_y) = dev;
    if train_x.is_empty() || train_x.len() != train_y.len() || dev_x.len() != dev_y.len() || dev_x.is_empty() {
        return Err(Error::Config("training needs non-empty train and dev sets with one label per embedding".into()));
    }
    if opts.batch_size == 0 || opts.epochs == 0 {
        return Err(Error::Config("epochs and batch size must be at least 1".into()));
    }
    let device = Device::Cpu;
    let dim = train_x[0].len();
    let mut rng = SeededRng::new(opts.seed);
    let widths: Vec<usize> = std::iter::once(dim)
        .chain(opts.hidden.iter().copied())
        .chain(std::iter::once(NUM_CATEGORIES))
        .collect();
    let vars: Vec<(Var, Var)> = widths
        .windows(2)
        .map(|w| init_layer(&mut rng, w[0], w[1], &device))
        .collect::<Result<_>>()?;
    let params = ParamsAdamW {
        lr: opts.learning_rate,
        weight_decay: opts.weight_decay,
        ..ParamsAdamW::default()
    };
    let mut optimizer = AdamW::new(vars.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect(), params)?;
    let xs = matrix(train_x, &device)?;
    let ys = targets(train_y, &device)?;
    let dev_xs = matrix(dev_x, &device)?;
    let dev_ys = targets(dev_y, &device)?;
    let snapshot = |vars: &[(Var, Var)]| -> Result<Vec<(Tensor, Tensor)>> {
        vars.iter()
            .map(|(w, b)| Ok((w.as_tensor().copy()?, b.as_tensor().copy()?)))
            .collect()
    };
    let mut best = BestEpoch { score: f64::NEG_INFINITY, epoch: 0, state: snapshot(&vars)? };
    let mut history = Vec::new();
    let mut order: Vec<u32> = (0..train_x.len() as u32).collect();
    for epoch in 1..=opts.epochs {
        rng.shuffle(&mut order);
        let mut total = 0.0;
        let mut batches = 0usize;
        for chunk in order.chunks(opts.batch_size) {
            let idx = Tensor::from_slice(chunk, chunk.len(), &device)?;
            let head = build_head(&vars, opts);
            let loss = soft_bce_with_logits(
                &head.logits(&xs.index_select(&idx, 0)?)?,
                &ys.index_select(&idx, 0)?,
                opts.positive_weight,
            )?;
            optimizer.backward_step(&loss)?;
            total += f64::from(loss.to_scalar::<f32>()?);
            batches += 1;
        }
        let head = build_head(&vars, opts);
        let dev_logits = head.logits(&dev_xs)?;
        let dev_loss = f64::from(soft_bce_with_logits(&dev_logits, &dev_ys, opts.positive_weight)?.to_scalar::<f32>()?);
        let dev_pred: Vec<Intensities> = candle_nn::ops::sigmoid(&dev_logits)?
            .to_vec2::<f32>()?
            .iter()
            .map(|r| Intensities::from_slice(r).expect("40 outputs"))
            .collect();
        let score = macro_spearman(&dev_pred, dev_y);
        let log = EpochLog {
            epoch,
            train_loss: total / batches as f64,
            dev_loss,
            dev_macro_spearman: score,
        };
        if best.observe(&mut history, log, opts.patience, || snapshot(&vars))? {
            break;
        }
    }
    let (best_epoch, weights) = (best.epoch, best.state);
    Ok(Trained::from_weights(weights, opts, best_epoch, history))
}

impl Trained {
    /// Wraps a head's `(weight, bias)` per layer, as kept from the best epoch, with its run's history.
    pub(crate) fn from_weights(
        weights: Vec<(Tensor, Tensor)>,
        opts: &TrainOptions,
        best_epoch: usize,
        history: Vec<EpochLog>,
    ) -> Self {
        let mut tensors = HashMap::new();
        for (i, (w, b)) in weights.iter().enumerate() {
            tensors.insert(format!("layers.{i}.weight"), w.clone());
            tensors.insert(format!("layers.{i}.bias"), b.clone());
        }
        let layers = weights.into_iter().map(|(w, b)| Linear::new(w, Some(b))).collect();
        Trained {
            head: Head::from_layers(layers, opts.activation, opts.normalize),
            tensors,
            best_epoch,
            history,
        }
    }
}
