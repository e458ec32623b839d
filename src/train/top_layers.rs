//! Fine-tuning the top encoder layers together with the head. The frozen lower layers run once per example and
//! their token vectors are cached, so an epoch runs only the trainable layers (a plain-op BERT layer whose
//! every step has a gradient in candle), mean pooling and the head. The result is kept only if it beats the
//! head-only model on dev, and is stored as a small override file of the fine-tuned layers.

use super::{macro_spearman, BestEpoch, soft_bce_with_logits, EpochLog, SeededRng, TrainOptions, Trained};
use crate::batch::{self, BatchLimits};
use crate::data::Example;
use crate::estimator::Estimator;
use crate::error::{Error, Result};
use crate::intensities::Intensities;
use crate::model::{mean_pool, Encoder, EncoderConfig, Head};
use crate::taxonomy::NUM_CATEGORIES;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Linear, Optimizer, ParamsAdamW};
use std::collections::HashMap;

/// The tensor names of one BERT layer, relative to `encoder.layer.{i}.`, in a fixed order.
const LAYER_TENSORS: [&str; 16] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

/// One BERT layer built from elementary ops with trainable weights: the layer's 16 tensors (attention query,
/// key, value and output, their layer norm, the feed-forward pair and its layer norm, each weight and bias).
pub struct TrainableLayer {
    index: usize,
    vars: Vec<Var>,
    heads: usize,
    eps: f64,
}

fn linear(x: &Tensor, w: &Var, b: &Var) -> candle_core::Result<Tensor> {
    x.broadcast_matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())
}

fn layer_norm(x: &Tensor, w: &Var, b: &Var, eps: f64) -> candle_core::Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(w.as_tensor())?
        .broadcast_add(b.as_tensor())
}

impl TrainableLayer {
    /// Reads layer `index` from the encoder's safetensors (any dtype; trained in f32).
    pub fn load(weights: &[std::path::PathBuf], index: usize, heads: usize, eps: f64) -> Result<Self> {
        let st = crate::weights::TensorStore::open(weights)?;
        let vars = LAYER_TENSORS
            .iter()
            .map(|name| {
                let t = st.load(&format!("encoder.layer.{index}.{name}"), &Device::Cpu)?;
                Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TrainableLayer { index, vars, heads, eps })
    }

    /// `x [b, s, h]`, `mask_bias [b, 1, 1, s]` (0 for tokens, a large negative number for padding).
    pub fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> candle_core::Result<Tensor> {
        let v = &self.vars;
        let (b, s, h) = x.dims3()?;
        let d = h / self.heads;
        let split = |t: Tensor| t.reshape((b, s, self.heads, d))?.transpose(1, 2)?.contiguous();
        let q = split(linear(x, &v[0], &v[1])?)?;
        let k = split(linear(x, &v[2], &v[3])?)?;
        let val = split(linear(x, &v[4], &v[5])?)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? / (d as f64).sqrt())?.broadcast_add(mask_bias)?;
        // Softmax from plain ops (each has a gradient); the max is a constant shift, so it is detached.
        let shifted = scores.broadcast_sub(&scores.max_keepdim(D::Minus1)?.detach())?.exp()?;
        let probs = shifted.broadcast_div(&shifted.sum_keepdim(D::Minus1)?)?;
        let ctx = probs.matmul(&val)?.transpose(1, 2)?.reshape((b, s, h))?;
        let attended = layer_norm(&(linear(&ctx, &v[6], &v[7])? + x)?, &v[8], &v[9], self.eps)?;
        let inner = linear(&attended, &v[10], &v[11])?.gelu_erf()?;
        layer_norm(&(linear(&inner, &v[12], &v[13])? + attended)?, &v[14], &v[15], self.eps)
    }

    /// The layer's tensors under their encoder names, in `dtype`, for an override file.
    pub fn tensors(&self, dtype: DType) -> Result<Vec<(String, Tensor)>> {
        LAYER_TENSORS
            .iter()
            .zip(&self.vars)
            .map(|(name, v)| Ok((format!("encoder.layer.{}.{name}", self.index), v.as_tensor().to_dtype(dtype)?)))
            .collect()
    }
}

/// Options of a fine-tuning run on top of [`TrainOptions`] (which set the head's learning rate, batch size,
/// patience, seed and loss weighting).
#[derive(Debug, Clone, PartialEq)]
pub struct FineTuneOptions {
    /// How many top encoder layers to train.
    pub layers: usize,
    /// Learning rate of the encoder layers (the head keeps its own).
    pub encoder_learning_rate: f64,
    /// Most epochs to run (the [`TrainOptions`] epochs are not used); early stopping may end sooner.
    pub epochs: usize,
}

/// One example's token vectors after the frozen layers, `[len, hidden]`.
struct CachedStates(Tensor);

fn cache_states(lower: &Encoder, sequences: &[Vec<u32>], pad_id: u32) -> Result<Vec<CachedStates>> {
    let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
    let mut out: Vec<Option<CachedStates>> = (0..sequences.len()).map(|_| None).collect();
    let limits = BatchLimits {
        token_budget: 2048,
        max_batch: 64,
        batching: crate::backend::Batching::Padded,
    };
    for planned in batch::plan(&lengths, limits) {
        let seqs: Vec<&[u32]> = planned.items.iter().map(|&i| sequences[i].as_slice()).collect();
        let (ids, mask) = crate::backend::candle::pad(&seqs, planned.padded_len, pad_id, &Device::Cpu)?;
        let hidden = lower.hidden_states(&ids, &mask)?.to_dtype(DType::F32)?;
        for (row, &i) in planned.items.iter().enumerate() {
            out[i] = Some(CachedStates(hidden.get(row)?.narrow(0, 0, lengths[i])?.contiguous()?));
        }
    }
    Ok(out.into_iter().map(|s| s.expect("every sequence is planned")).collect())
}

/// Pads cached states of a minibatch: `(x [b, L, h], mask [b, L] u32, mask_bias [b, 1, 1, L])`.
fn pad_states(states: &[&CachedStates]) -> Result<(Tensor, Tensor, Tensor)> {
    let max = states.iter().map(|s| s.0.dim(0)).collect::<candle_core::Result<Vec<_>>>()?;
    let len = max.iter().copied().max().unwrap_or(1);
    let mut rows = Vec::with_capacity(states.len());
    let mut mask = Vec::with_capacity(states.len() * len);
    for (s, &n) in states.iter().zip(&max) {
        rows.push(s.0.pad_with_zeros(0, 0, len - n)?);
        mask.extend((0..len).map(|j| u32::from(j < n)));
    }
    let mask = Tensor::from_vec(mask, (states.len(), len), &Device::Cpu)?;
    let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.unsqueeze(1)?.unsqueeze(1)?;
    Ok((Tensor::stack(&rows, 0)?, mask, bias))
}

/// What fine-tuning produced: the head, the fine-tuned layers' tensors (f16, encoder names) and the history.
pub struct FineTuned {
    /// The head of the best epoch, with the run's history.
    pub trained: Trained,
    /// The fine-tuned layers' tensors of the best epoch, in f16, named as in the encoder file
    /// (`encoder.layer.{i}.*`) so they can replace those of the shipped encoder.
    pub layer_tensors: HashMap<String, Tensor>,
}

/// Everything fine-tuning reads: token sequences (already truncated) and labels of both splits, the frozen
/// lower encoder, the encoder files to take the top layers from, and the warm-start head.
pub struct FineTuneData<'a> {
    /// The train split: token ids (special tokens included) and the labels, one per sequence.
    pub train: (&'a [Vec<u32>], &'a [Intensities]),
    /// The dev split, as `train`; it decides the best epoch.
    pub dev: (&'a [Vec<u32>], &'a [Intensities]),
    /// The encoder's frozen lower layers (embeddings up to `first_trainable`), run once per sequence.
    pub lower: &'a Encoder,
    /// The safetensors file(s) holding the full encoder, from which the trainable layers are loaded.
    pub encoder_weights: &'a [std::path::PathBuf],
    /// Index (from 0) of the lowest layer to train: the fine-tuned layers are `first_trainable..` to the top.
    pub first_trainable: usize,
    /// Attention heads per layer, from the encoder's config.
    pub heads: usize,
    /// The layer norms' epsilon, from the encoder's config.
    pub layer_norm_eps: f64,
    /// The tokenizer's padding id.
    pub pad_id: u32,
    /// The head to start from (`layers.{i}.weight/bias`), usually the one trained on frozen embeddings.
    pub warm_head: &'a HashMap<String, Tensor>,
}

/// Fine-tunes the top layers and the head; keeps the epoch with the best dev macro Spearman.
pub fn fine_tune(data: FineTuneData, opts: &TrainOptions, ft: &FineTuneOptions) -> Result<FineTuned> {
    if ft.layers == 0 || data.train.0.is_empty() || data.dev.0.is_empty() {
        return Err(Error::Config("fine-tuning needs at least one layer and non-empty train and dev sets".into()));
    }
    let train_states = cache_states(data.lower, data.train.0, data.pad_id)?;
    let dev_states = cache_states(data.lower, data.dev.0, data.pad_id)?;
    let layers: Vec<TrainableLayer> = (data.first_trainable..data.first_trainable + ft.layers)
        .map(|i| TrainableLayer::load(data.encoder_weights, i, data.heads, data.layer_norm_eps))
        .collect::<Result<_>>()?;
    let head_count = data.warm_head.len() / 2;
    let head_vars: Vec<(Var, Var)> = (0..head_count)
        .map(|i| {
            let get = |k: &str| -> Result<Var> {
                let t = data.warm_head.get(&format!("layers.{i}.{k}")).ok_or_else(|| {
                    Error::Config(format!("warm-start head lacks layers.{i}.{k}"))
                })?;
                Ok(Var::from_tensor(t)?)
            };
            Ok((get("weight")?, get("bias")?))
        })
        .collect::<Result<_>>()?;
    let head_of = |vars: &[(Var, Var)]| {
        let linears = vars
            .iter()
            .map(|(w, b)| Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())))
            .collect();
        Head::from_layers(linears, opts.activation, opts.normalize)
    };
    let forward = |states: &[&CachedStates], vars: &[(Var, Var)]| -> Result<Tensor> {
        let (mut x, mask, bias) = pad_states(states)?;
        for layer in &layers {
            x = layer.forward(&x, &bias)?;
        }
        Ok(head_of(vars).logits(&mean_pool(&x, &mask)?)?)
    };
    let encoder_vars: Vec<Var> = layers.iter().flat_map(|l| l.vars.clone()).collect();
    let mut encoder_opt = AdamW::new(
        encoder_vars,
        ParamsAdamW {
            lr: ft.encoder_learning_rate,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut head_opt = AdamW::new(
        head_vars.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect(),
        ParamsAdamW {
            lr: opts.learning_rate * 0.25,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let targets = |labels: &[Intensities], idx: &[usize]| -> Result<Tensor> {
        let flat: Vec<f32> = idx.iter().flat_map(|&i| labels[i].as_slice().iter().copied()).collect();
        Ok(Tensor::from_vec(flat, (idx.len(), NUM_CATEGORIES), &Device::Cpu)?)
    };
    let dev_refs: Vec<&CachedStates> = dev_states.iter().collect();
    let dev_all: Vec<usize> = (0..dev_refs.len()).collect();
    let dev_targets = targets(data.dev.1, &dev_all)?;
    let evaluate = |vars: &[(Var, Var)]| -> Result<(f64, f64)> {
        let mut logits = Vec::new();
        for chunk in dev_refs.chunks(64) {
            logits.push(forward(chunk, vars)?.detach());
        }
        let logits = Tensor::cat(&logits, 0)?;
        let loss = f64::from(soft_bce_with_logits(&logits, &dev_targets, opts.positive_weight)?.to_scalar::<f32>()?);
        let pred: Vec<Intensities> = candle_nn::ops::sigmoid(&logits)?
            .to_vec2::<f32>()?
            .iter()
            .map(|r| Intensities::from_slice(r).expect("40 outputs"))
            .collect();
        Ok((loss, macro_spearman(&pred, data.dev.1)))
    };
    let snapshot = |vars: &[(Var, Var)]| -> Result<(Vec<Vec<(String, Tensor)>>, Vec<(Tensor, Tensor)>)> {
        let l = layers.iter().map(|l| l.tensors(DType::F16)).collect::<Result<_>>()?;
        let h = vars
            .iter()
            .map(|(w, b)| Ok((w.as_tensor().copy()?, b.as_tensor().copy()?)))
            .collect::<Result<_>>()?;
        Ok((l, h))
    };
    let (start_loss, start_score) = evaluate(&head_vars)?;
    let mut history = vec![EpochLog {
        epoch: 0,
        train_loss: f64::NAN,
        dev_loss: start_loss,
        dev_macro_spearman: start_score,
    }];
    let mut best = BestEpoch { score: start_score, epoch: 0, state: snapshot(&head_vars)? };
    let mut rng = SeededRng::new(opts.seed ^ 0xF1E7_u64);
    let mut order: Vec<usize> = (0..train_states.len()).collect();
    for epoch in 1..=ft.epochs {
        rng.shuffle(&mut order);
        let (mut total, mut batches) = (0.0, 0usize);
        for idx in order.chunks(opts.batch_size.min(32)) {
            let states: Vec<&CachedStates> = idx.iter().map(|&i| &train_states[i]).collect();
            let loss = soft_bce_with_logits(&forward(&states, &head_vars)?, &targets(data.train.1, idx)?, opts.positive_weight)?;
            let grads = loss.backward()?;
            encoder_opt.step(&grads)?;
            head_opt.step(&grads)?;
            total += f64::from(loss.to_scalar::<f32>()?);
            batches += 1;
        }
        let (dev_loss, score) = evaluate(&head_vars)?;
        let log = EpochLog {
            epoch,
            train_loss: total / batches as f64,
            dev_loss,
            dev_macro_spearman: score,
        };
        if best.observe(&mut history, log, opts.patience, || snapshot(&head_vars))? {
            break;
        }
    }
    let (best_epoch, (layer_tensors, head_weights)) = (best.epoch, best.state);
    Ok(FineTuned {
        trained: Trained::from_weights(head_weights, opts, best_epoch, history),
        layer_tensors: layer_tensors.into_iter().flatten().collect(),
    })
}

/// Fine-tunes the top `ft.layers` layers of an estimator's encoder on labelled examples, with a head
/// warm-started from `warm_head` (a head trained on the frozen encoder). Inputs are truncated by the estimator's
/// own routine ([`Estimator::model_token_ids`]).
pub fn fine_tune_estimator(
    estimator: &Estimator,
    train: &[&Example],
    dev: &[&Example],
    warm_head: &HashMap<String, Tensor>,
    opts: &TrainOptions,
    ft: &FineTuneOptions,
) -> Result<FineTuned> {
    let spec = estimator.spec();
    let source = estimator.source();
    let config = EncoderConfig::read(&source.file(&spec.encoder.config)?)?;
    let depth = estimator.model().encoder_layers();
    if ft.layers >= depth {
        return Err(Error::Config(format!("{} fine-tuned layers must be fewer than the encoder's {depth}", ft.layers)));
    }
    let weights = vec![source.file(&spec.encoder.weights)?];
    let lower = Encoder::load(&config, &weights, Some(depth - ft.layers), DType::F32, &Device::Cpu)?;
    let tokens = |examples: &[&Example]| -> Result<(Vec<Vec<u32>>, Vec<Intensities>)> {
        let mut seqs = Vec::with_capacity(examples.len());
        for e in examples {
            let ids = estimator.model_token_ids(&e.text)?;
            seqs.push(ids);
        }
        Ok((seqs, examples.iter().map(|e| e.labels).collect()))
    };
    let (train_ids, train_y) = tokens(train)?;
    let (dev_ids, dev_y) = tokens(dev)?;
    let data = FineTuneData {
        train: (&train_ids, &train_y),
        dev: (&dev_ids, &dev_y),
        lower: &lower,
        encoder_weights: &weights,
        first_trainable: depth - ft.layers,
        heads: config.shape().num_attention_heads,
        layer_norm_eps: config.shape().layer_norm_eps,
        pad_id: estimator.pad_id(),
        warm_head,
    };
    fine_tune(data, opts, ft)
}
