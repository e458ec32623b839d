//! [`Estimator`]: the public entry point from text to [`Intensities`]. It owns tokenization (in parallel),
//! the long-input policy (truncate, refuse, or score overlapping windows), the batching plan and the model
//! call, and returns one result per input in input order. The same text gives the same vector whatever else
//! is in its batch. [`builder`] finds and loads the model; [`tokens`] turns text into the token sequences the
//! model runs (the long-input policy and the one truncation routine).

mod builder;
mod tokens;

pub use crate::backend::DeviceChoice;
pub use builder::{EstimatorBuilder, CPU_TOKEN_BUDGET, DEFAULT_MODEL_NAME, GPU_TOKEN_BUDGET, MODEL_ENV};
pub use tokens::{InContext, OnLong};
use tokens::Prepared;
use crate::backend::TokenBatch;
use crate::batch::{self, BatchLimits};
use crate::error::{Error, InputProblem, Result};
use crate::intensities::Intensities;
use crate::model::{EmotionModel, ModelSpec};
use crate::taxonomy::NUM_CATEGORIES;
use crate::intensities::Affect;
use crate::weights::VerifiedModel;
use std::sync::atomic::{AtomicU64, Ordering};
use tokenizers::Tokenizer;

/// The full result for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// The 40 category intensities, each in `[0, 1]`; for a chunked input, the maximum over its windows.
    pub intensities: Intensities,
    /// Tokens in the input (special tokens included), before any truncation.
    pub tokens: usize,
    /// Whether tokens were dropped (only with [`OnLong::Truncate`]).
    pub truncated: bool,
    /// How many windows were scored (1 unless chunked).
    pub windows: usize,
    /// Tokens of the answered message read with the text ([`Estimator::estimate_in_context`]); 0 when the text
    /// was read alone (no message, a head that does not read context, or a text that fills its window).
    pub context_tokens: usize,
    /// Valence and arousal as the head learned them from human ratings (mean over windows); `None` for heads
    /// without learned affect, where arcs use the documented table instead.
    pub affect: Option<Affect>,
}

/// Counters of work done, for callers that check caching (for example that a tracker never re-encodes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EstimatorStats {
    /// Token sequences run through the encoder.
    pub sequences: u64,
    /// Encoder batches run.
    pub batches: u64,
}

/// Turns text into intensities. Cheap to share across threads (`&self` everywhere).
pub struct Estimator {
    verified: VerifiedModel,
    model: EmotionModel,
    tokenizer: Tokenizer,
    max_length: usize,
    limits: BatchLimits,
    on_long: OnLong,
    max_text_bytes: usize,
    pad_id: u32,
    sequences: AtomicU64,
    batches: AtomicU64,
}

impl Estimator {
    /// A builder with every option at its default (the shipped model, [`Backend::Auto`], truncation); finish
    /// with [`EstimatorBuilder::build`].
    pub fn builder() -> EstimatorBuilder {
        EstimatorBuilder::default()
    }

    /// The shipped model with default options.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// Intensities for each text, in input order.
    pub fn estimate<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Intensities>> {
        Ok(self.estimate_detailed(texts)?.into_iter().map(|e| e.intensities).collect())
    }

    /// Intensities plus token counts and truncation, for each text in input order. The first bad input fails
    /// the call with [`Error::BadInput`] naming its position.
    pub fn estimate_detailed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Estimate>> {
        self.estimate_each(texts)?
            .into_iter()
            .enumerate()
            .map(|(index, r)| r.map_err(|reason| Error::BadInput { index, reason }))
            .collect()
    }

    /// Like [`estimate_detailed`](Self::estimate_detailed), but a bad input only fails its own slot: the outer
    /// error is a model failure, the inner one says why that input was refused. Good inputs are always scored.
    pub fn estimate_each<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<std::result::Result<Estimate, InputProblem>>> {
        let prepared = self.prepare(texts)?;
        self.score_prepared(prepared)
    }

    /// Like [`estimate_each`](Self::estimate_each), each text read with the message it answers when the head
    /// was trained to ([`reads_context`](Self::reads_context)); otherwise the messages are not used. Only the
    /// text is scored: a blank or refused text fails its slot, a message never does.
    pub fn estimate_in_context(&self, items: &[InContext]) -> Result<Vec<std::result::Result<Estimate, InputProblem>>> {
        let prepared = self.prepare_in_context(items)?;
        self.score_prepared(prepared)
    }

    /// Whether the head reads a text with the message it answers ([`InContext`]).
    pub fn reads_context(&self) -> bool {
        self.model.head_spec().reads_context
    }

    fn score_prepared(
        &self,
        prepared: Vec<std::result::Result<Prepared, InputProblem>>,
    ) -> Result<Vec<std::result::Result<Estimate, InputProblem>>> {
        let good: Vec<&Prepared> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let (_, scores) = self.run(&good)?;
        let mut scores = scores.into_iter();
        Ok(prepared
            .into_iter()
            .map(|p| {
                let p = p?;
                let score = scores.next().expect("one score per good input");
                Ok(Estimate {
                    intensities: score.intensities,
                    tokens: p.tokens,
                    truncated: p.truncated,
                    windows: p.windows.len(),
                    context_tokens: p.context_tokens(),
                    affect: score.affect,
                })
            })
            .collect())
    }

    /// The encoder's mean-pooled embedding of each text (before the head), in input order. Chunked inputs get
    /// the mean of their windows' embeddings.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        let prepared = self
            .prepare(texts)?
            .into_iter()
            .enumerate()
            .map(|(index, r)| r.map_err(|reason| Error::BadInput { index, reason }))
            .collect::<Result<Vec<_>>>()?;
        let (embeddings, _) = self.run(&prepared.iter().collect::<Vec<_>>())?;
        Ok(embeddings)
    }

    /// The token ids the model sees for a text (special tokens included, before any truncation).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The token id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The verified model folder this estimator was loaded from, and its manifest entry.
    pub fn source(&self) -> &VerifiedModel {
        &self.verified
    }

    /// The model's `emoarc.json`.
    pub fn spec(&self) -> &ModelSpec {
        self.model.spec()
    }

    /// The loaded model: its head (a candle network), head name and encoder depth, for training and evaluation
    /// code that needs them directly.
    pub fn model(&self) -> &EmotionModel {
        &self.model
    }

    /// The name of the head in use.
    pub fn head_name(&self) -> &str {
        self.model.head_name()
    }

    /// What runs the encoder, for reports: `int16 (avx512-vnni)`, `candle f32 on cpu`, `candle f16 on cuda:0`.
    pub fn backend_name(&self) -> String {
        self.model.backend_name()
    }

    /// Maximum tokens per input (special tokens included).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Work done so far by this estimator.
    pub fn stats(&self) -> EstimatorStats {
        EstimatorStats {
            sequences: self.sequences.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }

    /// Runs every window of every prepared input through the model in planned batches; returns per input the
    /// pooled embedding and learned affect (means over windows) and intensities (max over windows), in input
    /// order.
    fn run(&self, prepared: &[&Prepared]) -> Result<(Vec<Vec<f32>>, Vec<WindowScores>)> {
        let mut owners = Vec::new();
        let mut seqs: Vec<&[u32]> = Vec::new();
        let mut pooled: Vec<usize> = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            for (k, w) in p.windows.iter().enumerate() {
                owners.push(i);
                seqs.push(w);
                pooled.push(p.pooled_len(k));
            }
        }
        let hidden = self.model.hidden_size();
        let mut embeddings = vec![vec![0f32; hidden]; prepared.len()];
        let mut scores = vec![WindowScores::default(); prepared.len()];
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        for planned in batch::plan(&lengths, self.limits) {
            let batch_seqs: Vec<&[u32]> = planned.items.iter().map(|&i| seqs[i]).collect();
            let batch_pooled: Vec<usize> = planned.items.iter().map(|&i| pooled[i]).collect();
            let with_context = batch_pooled.iter().zip(&batch_seqs).any(|(&n, s)| n < s.len());
            let (pooled, out) = self.model.forward(&TokenBatch {
                seqs: &batch_seqs,
                pad_id: self.pad_id,
                pooled: with_context.then_some(&batch_pooled[..]),
            })?;
            let intensities = out.intensities.to_vec2::<f32>()?;
            let affect = out.affect.map(|a| a.to_vec2::<f32>()).transpose()?;
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.sequences.fetch_add(planned.items.len() as u64, Ordering::Relaxed);
            for (k, ((&item, emb), row)) in planned.items.iter().zip(pooled.chunks_exact(hidden)).zip(intensities).enumerate() {
                let row: [f32; NUM_CATEGORIES] = row.try_into().map_err(|r: Vec<f32>| Error::TensorShape {
                    tensor: "head output".into(),
                    expected: vec![NUM_CATEGORIES],
                    actual: vec![r.len()],
                })?;
                let s = &mut scores[owners[item]];
                s.intensities = if s.windows == 0 { Intensities::new(row) } else { s.intensities.max_with(&Intensities::new(row)) };
                if let Some(a) = &affect {
                    let sum = s.affect_sum.get_or_insert([0.0; 2]);
                    sum[0] += a[k][0];
                    sum[1] += a[k][1];
                }
                s.windows += 1;
                for (a, v) in embeddings[owners[item]].iter_mut().zip(emb) {
                    *a += v;
                }
            }
        }
        for (emb, s) in embeddings.iter_mut().zip(&mut scores) {
            let inv = 1.0 / s.windows.max(1) as f32;
            if s.windows > 1 {
                emb.iter_mut().for_each(|v| *v *= inv);
            }
            s.affect = s.affect_sum.map(|[v, a]| Affect::from_unit(v * inv, a * inv));
        }
        Ok((embeddings, scores))
    }
}

/// One input's scores, accumulated over its windows.
#[derive(Debug, Clone, Copy, Default)]
struct WindowScores {
    intensities: Intensities,
    windows: usize,
    /// Sums of the head's sigmoid valence and arousal over windows.
    affect_sum: Option<[f32; 2]>,
    affect: Option<Affect>,
}
