//! The int16 backend: the same BERT as [`super::candle::Encoder`], run by emoarc's own code instead of
//! candle's so that the linear layers compute in 16-bit integers (AVX-512 VNNI where the CPU has it) and
//! sequences are packed end to end with no padding. Weights are quantized per output channel when the model
//! loads and activations per token as they flow, so an utterance's result never depends on what else is in its
//! batch. Attention, layer norm, GELU and pooling stay in f32. This module owns that forward pass and nothing
//! else: the model folder, the head and batching are [`crate::model`]'s and [`crate::estimator`]'s.
//!
//! The kernel is chosen by [`Kernel::detect`] or [`Kernel::portable`] only: a fast kernel cannot be asked for on
//! a CPU without its instructions, so the `unsafe` calls into it below are sound by construction.

mod gemm;
mod ops;

pub use gemm::Kernel;
use gemm::{QuantLinear, QuantRows};

use super::{Batching, EncoderBackend, TokenBatch};
use crate::error::{Error, Result};
use super::config::EncoderConfig;
use candle_core::safetensors::MmapedSafetensors;
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

/// Layer-norm parameters.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// One transformer layer; queries, keys and values are one product with three times the outputs.
struct Layer {
    qkv: QuantLinear,
    attn_out: QuantLinear,
    attn_norm: Norm,
    up: QuantLinear,
    down: QuantLinear,
    out_norm: Norm,
}

/// Buffers reused from layer to layer within one batch.
#[derive(Default)]
struct Scratch {
    quant: QuantRows,
    qkv: Vec<f32>,
    context: Vec<f32>,
    wide: Vec<f32>,
    attention: Vec<f32>,
}

/// A BERT encoder whose linear layers compute in 16-bit integers; see the module docs.
pub struct QuantizedEncoder {
    kernel: Kernel,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    eps: f32,
    word: Vec<f32>,
    position: Vec<f32>,
    max_positions: usize,
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

impl QuantizedEncoder {
    /// Loads the first `layers` layers (all when `None`) from `weights` (later files' tensors replace earlier
    /// ones', as for the candle encoder) and quantizes them for `kernel` (None: the best this CPU has).
    pub fn load(config: &EncoderConfig, weights: &[PathBuf], layers: Option<usize>, kernel: Option<Kernel>) -> Result<Self> {
        let shape = config.shape();
        let unsupported = |reason: String| Error::Backend {
            backend: "int16".into(),
            reason,
        };
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
        // SAFETY: the files were verified against the manifest and are not modified while mapped.
        let tensors = unsafe { MmapedSafetensors::multi(weights)? };
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
        let linear = |prefix: &str, outputs: usize, inputs: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                read(&format!("{prefix}.weight"), &[outputs, inputs])?,
                read(&format!("{prefix}.bias"), &[outputs])?,
            ))
        };
        let quantized = |prefix: &str, outputs: usize, inputs: usize| -> Result<QuantLinear> {
            let (w, b) = linear(prefix, outputs, inputs)?;
            Ok(QuantLinear::new(&w, &b, outputs, inputs))
        };
        // The vocabulary size and the number of token types come from the files' headers (no tensor is read).
        let rows = |name: &str| -> Result<usize> { Ok(tensors.get(name)?.shape().first().copied().unwrap_or(0)) };
        let word = read("embeddings.word_embeddings.weight", &[rows("embeddings.word_embeddings.weight")?, h])?;
        let mut built = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = format!("encoder.layer.{i}");
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                let (w, b) = linear(&format!("{p}.attention.self.{part}"), h, h)?;
                qkv_w.extend(w);
                qkv_b.extend(b);
            }
            built.push(Layer {
                qkv: QuantLinear::new(&qkv_w, &qkv_b, 3 * h, h),
                attn_out: quantized(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{p}.attention.output"))?,
                up: quantized(&format!("{p}.intermediate.dense"), shape.intermediate_size, h)?,
                down: quantized(&format!("{p}.output.dense"), h, shape.intermediate_size)?,
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
            kernel: kernel.unwrap_or_else(Kernel::detect),
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
        // Whole sequences are shared out between threads, each running every layer on its own share: no
        // hand-over between threads inside a layer, and an utterance's arithmetic is the same in any share.
        let threads = rayon::current_num_threads().max(1);
        let tokens: usize = seqs.iter().map(|s| s.len()).sum();
        let shares = split_by_tokens(seqs, threads.min(tokens / MIN_SHARE_TOKENS).max(1));
        if shares.len() == 1 {
            return Ok(self.embed_share(seqs, threads > 1));
        }
        use rayon::prelude::*;
        let pooled: Vec<Vec<f32>> = shares.par_iter().map(|share| self.embed_share(share, false)).collect();
        Ok(pooled.concat())
    }

    /// Embeds one share of a batch on the calling thread (`parallel`: let the products use rayon's threads).
    fn embed_share(&self, seqs: &[&[u32]], parallel: bool) -> Vec<f32> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let mut x = self.embeddings(seqs);
        #[cfg(target_arch = "x86_64")]
        if self.kernel.is_vnni() {
            // SAFETY: a VNNI kernel exists only where `Kernel::detect` found AVX-512 VNNI (its constructor is
            // private).
            unsafe { self.layers_avx512(&mut x, &lens, parallel) };
            return self.mean_pool(&x, &lens);
        } else if self.kernel.is_avx2() {
            // SAFETY: an AVX2 kernel exists only where `Kernel::detect` found AVX2 and FMA.
            unsafe { self.layers_avx2(&mut x, &lens, parallel) };
            return self.mean_pool(&x, &lens);
        }
        self.layers(&mut x, &lens, parallel);
        self.mean_pool(&x, &lens)
    }

    fn embeddings(&self, seqs: &[&[u32]]) -> Vec<f32> {
        let h = self.hidden;
        let mut x = Vec::with_capacity(seqs.iter().map(|s| s.len()).sum::<usize>() * h);
        for s in seqs {
            for (pos, &id) in s.iter().enumerate() {
                let word = &self.word[id as usize * h..][..h];
                let position = &self.position[pos * h..][..h];
                x.extend(word.iter().zip(position).zip(&self.token_type).map(|((w, p), t)| w + p + t));
            }
        }
        ops::add_layer_norm(&mut x, &[], &self.embed_norm.gamma, &self.embed_norm.beta, self.eps);
        x
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn layers_avx512(&self, x: &mut Vec<f32>, lens: &[usize], parallel: bool) {
        self.layers(x, lens, parallel)
    }

    /// The same layers compiled for AVX2 (attention, layer norm and GELU vectorise 8 wide).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn layers_avx2(&self, x: &mut Vec<f32>, lens: &[usize], parallel: bool) {
        self.layers(x, lens, parallel)
    }

    #[inline(always)]
    fn layers(&self, x: &mut Vec<f32>, lens: &[usize], parallel: bool) {
        let (h, k) = (self.hidden, self.kernel);
        let tokens = x.len() / h;
        let mut s = Scratch::default();
        for layer in &self.layers {
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
            layer.attn_out.quantize(&s.context, &mut s.quant, k);
            layer.attn_out.forward(&s.quant, &mut s.context, k, parallel);
            ops::add_layer_norm(&mut s.context, x, &layer.attn_norm.gamma, &layer.attn_norm.beta, self.eps);
            layer.up.quantize(&s.context, &mut s.quant, k);
            s.wide.resize(tokens * self.intermediate, 0.0);
            layer.up.forward(&s.quant, &mut s.wide, k, parallel);
            ops::gelu(&mut s.wide);
            layer.down.quantize(&s.wide, &mut s.quant, k);
            layer.down.forward(&s.quant, x, k, parallel);
            ops::add_layer_norm(x, &s.context, &layer.out_norm.gamma, &layer.out_norm.beta, self.eps);
        }
    }

    fn mean_pool(&self, x: &[f32], lens: &[usize]) -> Vec<f32> {
        let h = self.hidden;
        let mut pooled = vec![0f32; lens.len() * h];
        let mut start = 0;
        for (out, &len) in pooled.chunks_exact_mut(h).zip(lens) {
            for row in x[start * h..(start + len) * h].chunks_exact(h) {
                for (o, v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            let inv = 1.0 / len as f32;
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
        QuantizedEncoder::embed(self, batch.seqs)
    }

    fn describe(&self) -> String {
        format!("int16 ({})", self.kernel)
    }

    fn on_cpu(&self) -> bool {
        true
    }
}
