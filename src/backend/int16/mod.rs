//! The int16 backend: the same BERT as [`super::candle::Encoder`], run by emoarc's own code instead of
//! candle's so that the linear layers compute in 16-bit integers (AVX-512 VNNI where the CPU has it) and
//! sequences are packed end to end with no padding. Weights are quantized per output channel when the model
//! loads and activations per token as they flow, so an utterance's result never depends on what else is in its
//! batch. Attention, layer norm, GELU and pooling stay in f32. This module owns that forward pass and nothing
//! else: the model folder, the head and batching are [`crate::model`]'s and [`crate::estimator`]'s.
//!
//! The kernel is chosen by [`Kernel::detect`] or [`Kernel::portable`] only: a fast kernel cannot be asked for on
//! a CPU without its instructions, so the `unsafe` calls into it below are sound by construction.

mod aligned;
mod amx;
mod calibration;
mod gemm;
mod gemm8;
mod ops;

pub use calibration::{ActivationRanges, Alpha, Int8Calibration, Product};
pub use gemm::{Kernel, QuantLinear, QuantRows};
pub use gemm8::{Int8Linear, Rows8};

use super::{Batching, EncoderBackend, TokenBatch};
use crate::error::{Error, Result};
use super::config::EncoderConfig;
use crate::weights::{Int8Rows, TensorStore};
use candle_core::{DType, Device};
use std::path::PathBuf;

/// Fewer tokens than this per thread are not worth a thread of their own.
const MIN_SHARE_TOKENS: usize = 128;

/// Splits `seqs` into at most `n` consecutive shares of about equal token counts.
fn split_by_tokens<'a, 'b>(seqs: &'b [&'a [u32]], n: usize) -> Vec<&'b [&'a [u32]]> {
    let total: usize = seqs.iter().map(|s| s.len()).sum();
    let mut shares = Vec::with_capacity(n);
    let (mut start, mut seen) = (0, 0);
    for (i, s) in seqs.iter().enumerate() {
        seen += s.len();
        // Close a share once it holds its fraction of the tokens.
        if seen * n >= total * (shares.len() + 1) && shares.len() + 1 < n {
            shares.push(&seqs[start..=i]);
            start = i + 1;
        }
    }
    if start < seqs.len() {
        shares.push(&seqs[start..]);
    }
    shares
}

/// The word-embedding table as the file stores it. The shipped model stores it as int8 rows with a scale each
/// (f16 before): 30,522 rows of which a batch reads a few dozen, so rows are widened to f32 as tokens read them
/// instead of the whole table at load (which took about a third of `emoarc score`'s start-up, and 47 MB).
enum WordTable {
    F16(Vec<u16>),
    F32(Vec<f32>),
    Int8(Int8Rows),
}

impl WordTable {
    /// Values in the table (rows x hidden).
    fn len(&self) -> usize {
        match self {
            WordTable::F16(v) => v.len(),
            WordTable::F32(v) => v.len(),
            WordTable::Int8(q) => q.values.len(),
        }
    }

    /// Appends `row id + position + token_type`, summed in that order (the order the whole-table f32 code
    /// used, so the sums are the same floats).
    fn push_sum(&self, id: usize, position: &[f32], token_type: &[f32], x: &mut Vec<f32>) {
        let h = position.len();
        let rest = position.iter().zip(token_type);
        match self {
            WordTable::F16(v) => x.extend(v[id * h..(id + 1) * h].iter().zip(rest).map(|(&w, (p, t))| half::f16::from_bits(w).to_f32() + p + t)),
            WordTable::F32(v) => x.extend(v[id * h..(id + 1) * h].iter().zip(rest).map(|(w, (p, t))| w + p + t)),
            WordTable::Int8(q) => x.extend(q.row(id).zip(rest).map(|(w, (p, t))| w + p + t)),
        }
    }
}

/// Layer-norm parameters.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// A linear layer in 16-bit integers, or in 8 where a calibration chose it.
enum Linear {
    Int16(QuantLinear),
    Int8(Int8Linear),
}

/// Quantized activations for either kind of product.
#[derive(Default)]
struct Quantized {
    int16: QuantRows,
    int8: Rows8,
}

impl Linear {
    fn quantize(&self, x: &[f32], q: &mut Quantized, kernel: Kernel) {
        match self {
            Linear::Int16(l) => l.quantize(x, &mut q.int16, kernel),
            Linear::Int8(l) => l.quantize(x, &mut q.int8, kernel),
        }
    }

    fn forward(&self, q: &Quantized, out: &mut [f32], kernel: Kernel, parallel: bool) {
        match self {
            Linear::Int16(l) => l.forward(&q.int16, out, kernel, parallel),
            Linear::Int8(l) => l.forward(&q.int8, out, kernel, parallel),
        }
    }
}

/// One transformer layer; queries, keys and values are one product with three times the outputs.
struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// Buffers reused from layer to layer, and from batch to batch on the same thread.
#[derive(Default)]
struct Scratch {
    quant: Quantized,
    qkv: Vec<f32>,
    context: Vec<f32>,
    wide: Vec<f32>,
    attention: Vec<f32>,
}

/// Rows the feed-forward block takes at a time (see `QuantizedEncoder::layers`): 1,536 f32 a row, so 768 KB of
/// widened rows. Measured with AMX (10,000 peer lines, CPU time, alternating): 6 layers 17.0-17.5 s against
/// 18.1-18.8 s for all rows at once, the default 8.3-8.6 s against 9.1-9.3 s, output identical; 256 rows
/// measured the same as 128 and 64 worse. Running a share's layers on chunks of 256 tokens at a time, to keep
/// the attention's inputs in L2 as well, measured no faster.
const FFN_ROWS: usize = 128;

/// The largest [`Scratch`] a thread keeps between batches (the default CPU token budget needs about 14 MiB
/// per thread): one huge batch must not hold its buffers for the rest of a server's life.
const KEEP_SCRATCH_BYTES: usize = 64 << 20;

impl Scratch {
    fn bytes(&self) -> usize {
        let floats = self.qkv.capacity() + self.context.capacity() + self.wide.capacity() + self.attention.capacity();
        floats * 4 + self.quant.int16.bytes() + self.quant.int8.bytes()
    }
}

/// A BERT encoder whose linear layers compute in 16-bit integers; see the module docs.
pub struct QuantizedEncoder {
    kernel: Kernel,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    eps: f32,
    word: WordTable,
    position: Vec<f32>,
    max_positions: usize,
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
    /// How many products run in int8.
    int8_products: usize,
}

impl QuantizedEncoder {
    /// Loads the first `layers` layers (all when `None`) from `weights` (later files' tensors replace earlier
    /// ones', as for the candle encoder) and quantizes them for `kernel` (None: the best this CPU has).
    pub fn load(config: &EncoderConfig, weights: &[PathBuf], layers: Option<usize>, kernel: Option<Kernel>) -> Result<Self> {
        Self::load_calibrated(config, weights, layers, kernel, None)
    }

    /// [`QuantizedEncoder::load`] with the products `int8` lists in 8-bit integers (see [`Int8Calibration`]).
    /// Int8 runs on the AVX-512 VNNI kernel or the portable one; the AVX2 kernel has no exact int8 form
    /// (`vpmaddubsw` saturates), so asking for both is refused.
    pub fn load_calibrated(
        config: &EncoderConfig,
        weights: &[PathBuf],
        layers: Option<usize>,
        kernel: Option<Kernel>,
        int8: Option<&Int8Calibration>,
    ) -> Result<Self> {
        let shape = config.shape();
        let kernel = kernel.unwrap_or_else(Kernel::detect);
        let unsupported = |reason: String| Error::Backend {
            backend: if int8.is_some() { "int8" } else { "int16" }.into(),
            reason,
        };
        if int8.is_some() && kernel.is_fast() && !kernel.is_vnni() {
            return Err(unsupported(format!(
                "int8 products need AVX-512 VNNI (vpdpbusd); this CPU runs the {kernel} kernel: use int16"
            )));
        }
        if shape.hidden_act != "gelu" {
            return Err(unsupported(format!("implements BERT's erf GELU, not {:?}", shape.hidden_act)));
        }
        // Attention is compiled for these head widths (MiniLM's and BERT-base's).
        if ![32, 64].contains(&(shape.hidden_size / shape.num_attention_heads)) {
            return Err(unsupported(format!(
                "runs heads of 32 or 64 values, not {} split into {} heads",
                shape.hidden_size, shape.num_attention_heads
            )));
        }
        let depth = config.depth(layers)?;
        let tensors = TensorStore::open(weights)?;
        let h = shape.hidden_size;
        let read = |name: &str, dims: &[usize]| -> Result<Vec<f32>> {
            let t = tensors.load(name, &Device::Cpu)?;
            if t.dims() != dims {
                return Err(Error::TensorShape {
                    tensor: name.to_string(),
                    expected: dims.to_vec(),
                    actual: t.dims().to_vec(),
                });
            }
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let norm = |prefix: &str| -> Result<Norm> {
            Ok(Norm {
                gamma: read(&format!("{prefix}.LayerNorm.weight"), &[h])?,
                beta: read(&format!("{prefix}.LayerNorm.bias"), &[h])?,
            })
        };
        // One product of a layer: its linear layers (`rows` outputs each, stacked as `Product::linear_layers`
        // lists them), in int8 where the calibration chose it, else int16.
        let mut int8_products = 0;
        let mut product = |layer: usize, product: Product, rows: usize, inputs: usize| -> Result<Linear> {
            let (mut w, mut b) = (Vec::new(), Vec::new());
            for name in product.linear_layers(layer) {
                w.extend(read(&format!("{name}.weight"), &[rows, inputs])?);
                b.extend(read(&format!("{name}.bias"), &[rows])?);
            }
            let outputs = b.len();
            let plan = match int8 {
                Some(c) => c.plan(layer, product, &w, inputs)?,
                None => None,
            };
            Ok(match plan {
                Some(plan) => {
                    int8_products += 1;
                    Linear::Int8(Int8Linear::new(&w, &b, outputs, inputs, &plan.smooth, &plan.outliers))
                }
                None => Linear::Int16(QuantLinear::new(&w, &b, outputs, inputs)),
            })
        };
        // The vocabulary size and the number of token types come from the files' headers (no tensor is read).
        let rows = |name: &str| -> Result<usize> { Ok(tensors.dims(name)?.first().copied().unwrap_or(0)) };
        const WORD: &str = "embeddings.word_embeddings.weight";
        // Kept as stored (int8 rows or f16); rows are widened when a token reads them (see `WordTable`).
        let word = match tensors.int8_rows(WORD)? {
            Some(q) if q.cols == h => WordTable::Int8(q),
            Some(q) => {
                return Err(Error::TensorShape { tensor: WORD.into(), expected: vec![q.rows, h], actual: vec![q.rows, q.cols] })
            }
            None => match tensors.view(WORD)? {
                v if v.dtype() == safetensors::Dtype::F16 && v.shape().len() == 2 && v.shape()[1] == h => {
                    WordTable::F16(v.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
                }
                _ => WordTable::F32(read(WORD, &[rows(WORD)?, h])?),
            },
        };
        let mut built = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = format!("encoder.layer.{i}");
            let wide = shape.intermediate_size;
            built.push(Layer {
                qkv: product(i, Product::Qkv, h, h)?,
                attn_out: product(i, Product::AttentionOutput, h, h)?,
                attn_norm: norm(&format!("{p}.attention.output"))?,
                up: product(i, Product::Intermediate, wide, h)?,
                down: product(i, Product::Output, h, wide)?,
                out_norm: norm(&format!("{p}.output"))?,
            });
        }
        let type_rows = rows("embeddings.token_type_embeddings.weight")?;
        let token_type = read("embeddings.token_type_embeddings.weight", &[type_rows, h])?
            .get(..h)
            .ok_or_else(|| Error::TensorShape {
                tensor: "embeddings.token_type_embeddings.weight".into(),
                expected: vec![1, h],
                actual: vec![0, h],
            })?
            .to_vec();
        Ok(QuantizedEncoder {
            kernel,
            hidden: h,
            heads: shape.num_attention_heads,
            intermediate: shape.intermediate_size,
            eps: shape.layer_norm_eps as f32,
            word,
            position: read(
                "embeddings.position_embeddings.weight",
                &[shape.max_position_embeddings, h],
            )?,
            max_positions: shape.max_position_embeddings,
            token_type,
            embed_norm: norm("embeddings")?,
            layers: built,
            int8_products,
        })
    }

    /// Width of the pooled vectors.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The kernel the linear layers run on.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Mean-pooled last-layer vectors, `[seqs.len() * hidden]` row-major, for token sequences of any lengths.
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        self.embed_pooling(seqs, None)
    }

    /// Like [`embed`](Self::embed), but sequence `i` pools only its first `pooled[i]` tokens (clamped to 1 ..=
    /// its length) while attending to all of them: a text read with the context that follows it.
    pub fn embed_pooling(&self, seqs: &[&[u32]], pooled: Option<&[usize]>) -> Result<Vec<f32>> {
        self.check(seqs)?;
        if let Some(p) = pooled {
            if p.len() != seqs.len() {
                return Err(Error::Config(format!("{} pooled lengths for {} sequences", p.len(), seqs.len())));
            }
        }
        let pool: Vec<usize> = match pooled {
            Some(p) => seqs.iter().zip(p).map(|(s, &n)| n.clamp(1, s.len())).collect(),
            None => seqs.iter().map(|s| s.len()).collect(),
        };
        // Whole sequences are shared out between threads, each running every layer on its own share: no
        // hand-over between threads inside a layer, and an utterance's arithmetic is the same in any share.
        let threads = rayon::current_num_threads().max(1);
        let tokens: usize = seqs.iter().map(|s| s.len()).sum();
        let shares = split_by_tokens(seqs, threads.min(tokens / MIN_SHARE_TOKENS).max(1));
        if shares.len() == 1 {
            return Ok(self.embed_share(seqs, &pool, threads > 1));
        }
        use rayon::prelude::*;
        // Shares are consecutive runs of `seqs`, so each takes the next run of pooled lengths.
        let mut starts = Vec::with_capacity(shares.len());
        let mut at = 0;
        for share in &shares {
            starts.push(at);
            at += share.len();
        }
        let pooled: Vec<Vec<f32>> = shares
            .par_iter()
            .zip(starts)
            .map(|(share, start)| self.embed_share(share, &pool[start..start + share.len()], false))
            .collect();
        Ok(pooled.concat())
    }

    /// Embeds one share of a batch on the calling thread (`parallel`: let the products use rayon's threads).
    fn embed_share(&self, seqs: &[&[u32]], pool: &[usize], parallel: bool) -> Vec<f32> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let mut x = self.embeddings(seqs);
        self.run_layers(&mut x, &lens, parallel, None);
        self.mean_pool(&x, &lens, pool)
    }

    /// The layers, compiled for the widest vector instructions the kernel's CPU has.
    fn run_layers(&self, x: &mut [f32], lens: &[usize], parallel: bool, ranges: Option<&mut ActivationRanges>) {
        #[cfg(target_arch = "x86_64")]
        if self.kernel.is_vnni() {
            // SAFETY: a VNNI kernel exists only where `Kernel::detect` found AVX-512 VNNI (its constructor is
            // private).
            return unsafe { self.layers_avx512(x, lens, parallel, ranges) };
        } else if self.kernel.is_avx2() {
            // SAFETY: an AVX2 kernel exists only where `Kernel::detect` found AVX2 and FMA.
            return unsafe { self.layers_avx2(x, lens, parallel, ranges) };
        }
        self.layers(x, lens, parallel, ranges)
    }

    /// Refuses empty or over-long sequences and ids outside the vocabulary.
    fn check(&self, seqs: &[&[u32]]) -> Result<()> {
        let vocab = self.word.len() / self.hidden;
        for s in seqs {
            if s.is_empty() || s.len() > self.max_positions {
                return Err(Error::SequenceLength {
                    tokens: s.len(),
                    max: self.max_positions,
                });
            }
            if let Some(bad) = s.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::Tokenizer(format!("token id {bad} is outside the vocabulary of {vocab}")));
            }
        }
        Ok(())
    }

    fn embeddings(&self, seqs: &[&[u32]]) -> Vec<f32> {
        let h = self.hidden;
        let mut x = Vec::with_capacity(seqs.iter().map(|s| s.len()).sum::<usize>() * h);
        for s in seqs {
            for (pos, &id) in s.iter().enumerate() {
                self.word.push_sum(id as usize, &self.position[pos * h..][..h], &self.token_type, &mut x);
            }
        }
        ops::add_layer_norm(&mut x, &[], &self.embed_norm.gamma, &self.embed_norm.beta, self.eps);
        x
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn layers_avx512(&self, x: &mut [f32], lens: &[usize], parallel: bool, ranges: Option<&mut ActivationRanges>) {
        self.layers(x, lens, parallel, ranges)
    }

    /// The same layers compiled for AVX2 (attention, layer norm and GELU vectorise 8 wide).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn layers_avx2(&self, x: &mut [f32], lens: &[usize], parallel: bool, ranges: Option<&mut ActivationRanges>) {
        self.layers(x, lens, parallel, ranges)
    }

    #[inline(always)]
    fn layers(&self, x: &mut [f32], lens: &[usize], parallel: bool, mut ranges: Option<&mut ActivationRanges>) {
        let (h, k) = (self.hidden, self.kernel);
        let tokens = x.len() / h;
        // Each thread keeps its buffers for the next batch (up to KEEP_SCRATCH_BYTES): fresh ones cost page
        // faults and the kernel's zeroing on every batch, 6% of `emoarc score`'s samples in `perf record`, and
        // keeping them measured 1.15-1.19x end to end (10,000 peer lines, three alternating runs) for 10-20 MB
        // more peak RSS. Taking the buffers out of the cell leaves an empty one there, so a nested call (none
        // today) would only allocate its own.
        thread_local! {
            static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
        }
        let mut s = SCRATCH.take();
        // With `ranges`, each product's input is measured before it is quantized (calibration only).
        let mut observe = |layer: usize, product: Product, input: &[f32]| {
            if let Some(r) = ranges.as_deref_mut() {
                let max = &mut r.layers[layer][product.index()];
                for row in input.chunks_exact(max.len()) {
                    max.iter_mut().zip(row).for_each(|(m, v)| *m = ops::larger(*m, v.abs()));
                }
            }
        };
        for (i, layer) in self.layers.iter().enumerate() {
            observe(i, Product::Qkv, x);
            layer.qkv.quantize(x, &mut s.quant, k);
            s.qkv.resize(tokens * 3 * h, 0.0);
            layer.qkv.forward(&s.quant, &mut s.qkv, k, parallel);
            s.context.resize(tokens * h, 0.0);
            let mut start = 0;
            for &len in lens {
                let qkv = &s.qkv[start * 3 * h..(start + len) * 3 * h];
                let context = &mut s.context[start * h..(start + len) * h];
                match h / self.heads {
                    32 => ops::attention::<32>(qkv, context, h, &mut s.attention),
                    _ => ops::attention::<64>(qkv, context, h, &mut s.attention),
                }
                start += len;
            }
            observe(i, Product::AttentionOutput, &s.context);
            layer.attn_out.quantize(&s.context, &mut s.quant, k);
            layer.attn_out.forward(&s.quant, &mut s.context, k, parallel);
            ops::add_layer_norm(&mut s.context, x, &layer.attn_norm.gamma, &layer.attn_norm.beta, self.eps);
            // The feed-forward block a chunk of rows at a time (each row's arithmetic is its own, so the result
            // is the same): the widened rows then stay in L2 between the product that writes them, GELU and the
            // quantization that reads them, instead of going out to L3 and back three times.
            for (context, x) in s.context.chunks(FFN_ROWS * h).zip(x.chunks_mut(FFN_ROWS * h)) {
                observe(i, Product::Intermediate, context);
                layer.up.quantize(context, &mut s.quant, k);
                s.wide.resize(context.len() / h * self.intermediate, 0.0);
                layer.up.forward(&s.quant, &mut s.wide, k, parallel);
                ops::gelu(&mut s.wide);
                observe(i, Product::Output, &s.wide);
                layer.down.quantize(&s.wide, &mut s.quant, k);
                layer.down.forward(&s.quant, x, k, parallel);
            }
            ops::add_layer_norm(x, &s.context, &layer.out_norm.gamma, &layer.out_norm.beta, self.eps);
        }
        if s.bytes() <= KEEP_SCRATCH_BYTES {
            SCRATCH.set(s);
        }
    }

    /// The largest absolute input of every channel of every product over `seqs` (the data an
    /// [`Int8Calibration`] keeps), measured on this encoder's own forward pass.
    pub fn activation_ranges(&self, seqs: &[&[u32]]) -> Result<ActivationRanges> {
        self.check(seqs)?;
        let (h, w) = (self.hidden, self.intermediate);
        let mut ranges = ActivationRanges {
            layers: self.layers.iter().map(|_| [h, h, h, w].map(|n| vec![0.0; n])).collect(),
        };
        for chunk in seqs.chunks(64) {
            let lens: Vec<usize> = chunk.iter().map(|s| s.len()).collect();
            let mut x = self.embeddings(chunk);
            self.run_layers(&mut x, &lens, true, Some(&mut ranges));
        }
        Ok(ranges)
    }

    /// How many of the encoder's products run in int8 (the rest in int16).
    pub fn int8_products(&self) -> usize {
        self.int8_products
    }

    /// The mean of each packed sequence's first `pool[i]` rows (sequence `i` holds `lens[i]` rows of `x`).
    fn mean_pool(&self, x: &[f32], lens: &[usize], pool: &[usize]) -> Vec<f32> {
        let h = self.hidden;
        let mut pooled = vec![0f32; lens.len() * h];
        let mut start = 0;
        for ((out, &len), &n) in pooled.chunks_exact_mut(h).zip(lens).zip(pool) {
            for row in x[start * h..(start + n) * h].chunks_exact(h) {
                for (o, v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            let inv = 1.0 / n as f32;
            out.iter_mut().for_each(|v| *v *= inv);
            start += len;
        }
        pooled
    }
}

impl EncoderBackend for QuantizedEncoder {
    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn batching(&self) -> Batching {
        Batching::Packed
    }

    fn embed(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        QuantizedEncoder::embed_pooling(self, batch.seqs, batch.pooled)
    }

    fn describe(&self) -> String {
        match self.int8_products {
            0 => format!("int16 ({})", self.kernel),
            n => format!("int8 ({}; {n} of {} products int8, the rest int16)", self.kernel, 4 * self.layers.len()),
        }
    }

    fn on_cpu(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rows_widen_exactly() {
        // 1.0, -2.0, the smallest subnormal and the largest finite f16, each summed with position and type.
        let table = WordTable::F16(vec![0x3c00, 0xc000, 0x0001, 0x7bff]);
        let mut row = Vec::new();
        table.push_sum(1, &[1.0, 1.0], &[0.5, 0.5], &mut row);
        assert_eq!(row, [5.960_464_5e-8 + 1.0 + 0.5, 65504.0 + 1.0 + 0.5]);
        assert_eq!(table.len(), 4);
    }
}
