//! [`Estimator`]: the public entry point from text to [`Intensities`]. It owns tokenization (in parallel),
//! the long-input policy (truncate, refuse, or score overlapping windows), the batching plan and the model
//! call, and returns one result per input in input order. The same text gives the same vector whatever else
//! is in its batch.

pub use crate::backend::DeviceChoice;
use crate::backend::{Backend, Precision, TokenBatch};
use crate::batch::{self, BatchLimits};
use crate::error::{Error, InputProblem, Result};
use crate::intensities::Intensities;
use crate::model::{EmotionModel, ModelSpec};
use crate::taxonomy::NUM_CATEGORIES;
use crate::intensities::Affect;
use crate::weights::{ModelSource, Resolver, VerifiedModel};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use tokenizers::Tokenizer;

/// The name of the model shipped in `models/`.
pub const DEFAULT_MODEL_NAME: &str = "emoarc-minilm";

/// What to do with an input longer than the model's maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnLong {
    /// Keep the first `max_length` tokens and count the input as truncated.
    #[default]
    Truncate,
    /// Refuse the input with [`InputProblem::TooLong`].
    Error,
    /// Score overlapping windows and take the maximum per category.
    Chunk,
}

impl FromStr for OnLong {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "truncate" => Ok(OnLong::Truncate),
            "error" => Ok(OnLong::Error),
            "chunk" => Ok(OnLong::Chunk),
            _ => Err(Error::Config(format!("on-long must be truncate, error or chunk, not {s:?}"))),
        }
    }
}

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

/// Builder for [`Estimator`]; every option has a sensible default.
#[derive(Debug, Clone)]
pub struct EstimatorBuilder {
    source: Option<ModelSource>,
    head: Option<String>,
    manifest: Option<PathBuf>,
    hub_cache: Option<PathBuf>,
    allow_download: Option<bool>,
    backend: Option<Backend>,
    device: DeviceChoice,
    precision: Precision,
    encoder_layers: Option<usize>,
    max_length: Option<usize>,
    token_budget: Option<usize>,
    max_batch: usize,
    on_long: OnLong,
    max_text_bytes: usize,
}

/// Padded tokens per batch on CPU: measured on 2 cores, 2,048 beats 8,192 by about 30% (cache-sized batches).
pub const CPU_TOKEN_BUDGET: usize = 2048;
/// Padded tokens per batch on GPUs, where large batches are what keeps the device busy.
pub const GPU_TOKEN_BUDGET: usize = 16384;

impl Default for EstimatorBuilder {
    fn default() -> Self {
        EstimatorBuilder {
            source: None,
            head: None,
            manifest: None,
            hub_cache: None,
            allow_download: None,
            backend: None,
            device: DeviceChoice::Auto,
            precision: Precision::Auto,
            encoder_layers: None,
            max_length: None,
            token_budget: None,
            max_batch: 256,
            on_long: OnLong::Truncate,
            max_text_bytes: 1 << 20,
        }
    }
}

impl EstimatorBuilder {
    /// The model: a folder, or `hf:ORG/REPO[@REVISION]`. Defaults to the shipped model.
    pub fn model(mut self, source: ModelSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Parses and sets the model source.
    pub fn model_str(self, source: &str) -> Result<Self> {
        Ok(self.model(source.parse()?))
    }

    /// Which of the model's heads to use (for example `zero-shot`); defaults to the model's default head.
    pub fn head(mut self, name: impl Into<String>) -> Self {
        self.head = Some(name.into());
        self
    }

    /// A weights manifest to verify against instead of the one beside the model (or the built-in one).
    pub fn manifest(mut self, path: impl Into<PathBuf>) -> Self {
        self.manifest = Some(path.into());
        self
    }

    /// The hub cache folder for `hf:` sources (default: hf-hub's, from `HF_HOME`).
    pub fn hub_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.hub_cache = Some(path.into());
        self
    }

    /// Whether `hf:` files missing from the cache may be downloaded (default: yes, unless `HF_HUB_OFFLINE` is set).
    pub fn allow_download(mut self, allow: bool) -> Self {
        self.allow_download = Some(allow);
        self
    }

    /// What runs the encoder (default [`Backend::Auto`]: the fastest measured for this machine). Wins over
    /// [`device`](Self::device) and [`precision`](Self::precision).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Shorthand with [`precision`](Self::precision) for the CLI's `--device`: the two make a [`Backend`] with
    /// [`Backend::from_flags`] when no backend is set.
    pub fn device(mut self, device: DeviceChoice) -> Self {
        self.device = device;
        self
    }

    /// Shorthand with [`device`](Self::device) for the CLI's `--precision` (default `Auto`).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Runs only the first `k` encoder layers instead of the head's own number: for training a head for a
    /// first-k-layers model (a head made for another depth gives meaningless intensities).
    pub fn encoder_layers(mut self, k: usize) -> Self {
        self.encoder_layers = Some(k);
        self
    }

    /// Maximum tokens per input (special tokens included); at most the model's own maximum.
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.max_length = Some(max_length);
        self
    }

    /// Most padded tokens per encoder batch (default: 2,048 on CPU, 16,384 on GPUs).
    pub fn token_budget(mut self, tokens: usize) -> Self {
        self.token_budget = Some(tokens);
        self
    }

    /// Most sequences per encoder batch (default 256).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }

    /// What to do with an input longer than [`max_length`](Self::max_length) tokens (default
    /// [`OnLong::Truncate`]).
    pub fn on_long(mut self, policy: OnLong) -> Self {
        self.on_long = policy;
        self
    }

    /// Largest input accepted in bytes when chunking or refusing long inputs (truncation cuts instead).
    pub fn max_text_bytes(mut self, bytes: usize) -> Self {
        self.max_text_bytes = bytes;
        self
    }

    /// Finds and verifies the model. An explicit source (the builder's, else `EMOARC_MODEL`) is the only one
    /// tried. Otherwise the shipped model is looked for in `./models/emoarc-minilm`, then in the checkout this
    /// crate was built from, then on the hub; a place is used only if the model there verifies, and when none
    /// does the error lists every place tried and why it was passed over.
    fn resolve_model(&self) -> Result<VerifiedModel> {
        let resolver = |source: ModelSource| {
            let mut r = Resolver::new(source);
            r.manifest = self.manifest.clone();
            r.hub_cache = self.hub_cache.clone();
            if let Some(allow) = self.allow_download {
                r.allow_download = allow;
            }
            r
        };
        let explicit = match (&self.source, std::env::var(MODEL_ENV)) {
            (Some(s), _) => Some(s.clone()),
            (None, Ok(v)) if !v.trim().is_empty() => Some(v.parse()?),
            _ => None,
        };
        if let Some(source) = explicit {
            return resolver(source).resolve();
        }
        let mut tried = Vec::new();
        for source in default_sources() {
            if let ModelSource::Dir(dir) = &source {
                if !dir.join(crate::model::SPEC_FILE).is_file() {
                    let why = if dir.is_dir() { "no emoarc.json there" } else { "not there" };
                    tried.push(format!("{source}: {why}"));
                    continue;
                }
            }
            match resolver(source.clone()).resolve() {
                Ok(verified) => return Ok(verified),
                Err(e) => tried.push(format!("{source}: {e}")),
            }
        }
        Err(Error::ModelNotFound { tried })
    }

    /// Resolves and verifies the model, then loads it.
    pub fn build(self) -> Result<Estimator> {
        let backend = match self.backend {
            Some(b) => b,
            None => Backend::from_flags(self.precision, self.device)?,
        };
        let verified = self.resolve_model()?;
        let model = EmotionModel::load(&verified, self.head.as_deref(), backend, self.encoder_layers)?;
        let model_max = model.spec().max_length;
        let max_length = match self.max_length {
            None => model_max,
            Some(n) if (8..=model_max).contains(&n) => n,
            Some(n) => return Err(Error::Config(format!("max length {n} must be between 8 and the model's {model_max}"))),
        };
        let limits = BatchLimits {
            token_budget: self.token_budget.unwrap_or(if model.encoder_on_cpu() {
                CPU_TOKEN_BUDGET
            } else {
                GPU_TOKEN_BUDGET
            }),
            max_batch: self.max_batch,
            batching: model.batching(),
        };
        limits.check(max_length)?;
        let tokenizer_path = verified.file(&model.spec().encoder.tokenizer)?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        // The shipped tokenizer.json pads and truncates to 128; batching and the long-input policy do both here.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let pad_id = tokenizer
            .token_to_id("[PAD]")
            .unwrap_or(0);
        Ok(Estimator {
            verified,
            model,
            tokenizer,
            max_length,
            limits,
            on_long: self.on_long,
            max_text_bytes: self.max_text_bytes,
            pad_id,
            sequences: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        })
    }
}

/// The environment variable naming the model when the builder (or `--model`) does not.
pub const MODEL_ENV: &str = "EMOARC_MODEL";

/// Where the shipped model is looked for, in order: `models/emoarc-minilm` under the working directory, the
/// same under the checkout this crate was built from (when that is another folder), then (with the `hub`
/// feature) its hub repository.
fn default_sources() -> Vec<ModelSource> {
    let relative = PathBuf::from("models").join(DEFAULT_MODEL_NAME);
    let in_checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&relative);
    let here = std::env::current_dir().map(|d| d.join(&relative)).ok();
    let mut sources = vec![ModelSource::Dir(relative)];
    if here.as_ref() != Some(&in_checkout) {
        sources.push(ModelSource::Dir(in_checkout));
    }
    if cfg!(feature = "hub") {
        sources.push(ModelSource::Hub {
            repo: format!("emoarc/{DEFAULT_MODEL_NAME}"),
            revision: "main".into(),
        });
    }
    sources
}

/// One input after tokenization: the token sequences to run (one, or several windows) and what was done.
struct Prepared {
    windows: Vec<Vec<u32>>,
    tokens: usize,
    truncated: bool,
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

    /// The token ids the model runs for a text: special tokens included and, past the maximum length, truncated
    /// as [`OnLong::Truncate`] does (the frame kept, the content cut). Training uses this so that it sees what
    /// scoring sees.
    pub fn model_token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        if enc.get_ids().len() <= self.max_length {
            return Ok(enc.get_ids().to_vec());
        }
        Ok(Framed::new(enc.get_ids(), enc.get_special_tokens_mask(), self.max_length).window(0))
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

    /// Validates and tokenizes all texts (in parallel), applying the long-input policy; each input gets its
    /// own verdict.
    fn prepare<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<std::result::Result<Prepared, InputProblem>>> {
        // Truncation needs at most max_length tokens; cutting absurdly long text first keeps tokenization bounded.
        let cut_at = self.max_length * 64;
        let mut verdicts: Vec<std::result::Result<bool, InputProblem>> = Vec::with_capacity(texts.len());
        let mut inputs: Vec<&str> = Vec::with_capacity(texts.len());
        for text in texts {
            let text = text.as_ref();
            let verdict = if text.trim().is_empty() {
                Err(InputProblem::Empty)
            } else if self.on_long == OnLong::Truncate && text.len() > cut_at {
                inputs.push(cut_text(text, cut_at));
                Ok(true)
            } else if text.len() > self.max_text_bytes {
                Err(InputProblem::TooLarge {
                    bytes: text.len(),
                    max: self.max_text_bytes,
                })
            } else {
                inputs.push(text);
                Ok(false)
            };
            verdicts.push(verdict);
        }
        let mut encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .into_iter();
        Ok(verdicts
            .into_iter()
            .map(|v| {
                let was_cut = v?;
                let enc = encodings.next().expect("one encoding per accepted input");
                self.apply_policy(enc.get_ids(), enc.get_special_tokens_mask(), was_cut)
            })
            .collect())
    }

    fn apply_policy(&self, ids: &[u32], special: &[u32], was_cut: bool) -> std::result::Result<Prepared, InputProblem> {
        let tokens = ids.len();
        if tokens <= self.max_length && !was_cut {
            return Ok(Prepared {
                windows: vec![ids.to_vec()],
                tokens,
                truncated: false,
            });
        }
        let framed = Framed::new(ids, special, self.max_length);
        match self.on_long {
            OnLong::Error => Err(InputProblem::TooLong {
                tokens,
                max: self.max_length,
            }),
            OnLong::Truncate => Ok(Prepared {
                windows: vec![framed.window(0)],
                tokens,
                truncated: true,
            }),
            OnLong::Chunk => {
                // A quarter of each window overlaps the next, so a feeling split at a boundary is seen whole once.
                let stride = (framed.width - framed.width / 4).max(1);
                let mut windows = Vec::new();
                let mut start = 0;
                loop {
                    windows.push(framed.window(start));
                    if start + framed.width >= framed.content.len() {
                        break;
                    }
                    start += stride;
                }
                Ok(Prepared {
                    windows,
                    tokens,
                    truncated: false,
                })
            }
        }
    }

    /// Runs every window of every prepared input through the model in planned batches; returns per input the
    /// pooled embedding and learned affect (means over windows) and intensities (max over windows), in input
    /// order.
    fn run(&self, prepared: &[&Prepared]) -> Result<(Vec<Vec<f32>>, Vec<WindowScores>)> {
        let mut owners = Vec::new();
        let mut seqs: Vec<&[u32]> = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            for w in &p.windows {
                owners.push(i);
                seqs.push(w);
            }
        }
        let hidden = self.model.hidden_size();
        let mut embeddings = vec![vec![0f32; hidden]; prepared.len()];
        let mut scores = vec![WindowScores::default(); prepared.len()];
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        for planned in batch::plan(&lengths, self.limits) {
            let batch_seqs: Vec<&[u32]> = planned.items.iter().map(|&i| seqs[i]).collect();
            let (pooled, out) = self.model.forward(&TokenBatch {
                seqs: &batch_seqs,
                pad_id: self.pad_id,
            })?;
            let pooled = pooled.to_vec2::<f32>()?;
            let intensities = out.intensities.to_vec2::<f32>()?;
            let affect = out.affect.map(|a| a.to_vec2::<f32>()).transpose()?;
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.sequences.fetch_add(planned.items.len() as u64, Ordering::Relaxed);
            for (k, ((&item, emb), row)) in planned.items.iter().zip(pooled).zip(intensities).enumerate() {
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

/// A token sequence split into its framing special tokens (`[CLS]` ... `[SEP]`) and its content, for cutting
/// windows of at most `max_length` tokens that each keep the frame: the one truncation routine.
struct Framed<'a> {
    prefix: &'a [u32],
    content: &'a [u32],
    suffix: &'a [u32],
    /// Content tokens per window.
    width: usize,
}

impl<'a> Framed<'a> {
    fn new(ids: &'a [u32], special: &[u32], max_length: usize) -> Self {
        let lead = special.iter().take_while(|&&s| s == 1).count();
        let trail = special[lead..].iter().rev().take_while(|&&s| s == 1).count();
        let (prefix, rest) = ids.split_at(lead);
        let (content, suffix) = rest.split_at(rest.len() - trail);
        Framed {
            prefix,
            content,
            suffix,
            width: max_length.saturating_sub(prefix.len() + suffix.len()).max(1),
        }
    }

    /// The frame around up to `width` content tokens from `start`.
    fn window(&self, start: usize) -> Vec<u32> {
        let start = start.min(self.content.len());
        let end = (start + self.width).min(self.content.len());
        self.prefix.iter().chain(&self.content[start..end]).chain(self.suffix).copied().collect()
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

/// The longest prefix of `text` of at most `max_bytes` that ends at a character boundary, preferably at white
/// space so no word is split.
fn cut_text(text: &str, max_bytes: usize) -> &str {
    let mut end = max_bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    match head.rfind(char::is_whitespace) {
        Some(ws) if ws > end / 2 => &head[..ws],
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_char_boundaries() {
        let t = "héllo wörld ".repeat(10);
        for n in 0..t.len() {
            let c = cut_text(&t, n);
            assert!(c.len() <= n);
            assert!(t.starts_with(c));
        }
    }

    #[test]
    fn parses_options() {
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert_eq!("metal".parse::<DeviceChoice>().unwrap(), DeviceChoice::Metal(0));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cudax".parse::<DeviceChoice>().is_err());
        assert_eq!("chunk".parse::<OnLong>().unwrap(), OnLong::Chunk);
        assert!("drop".parse::<OnLong>().is_err());
    }
}
