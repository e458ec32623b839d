//! [`EstimatorBuilder`]: the estimator's options, finding and verifying the model (the explicit source, else
//! `EMOARC_MODEL`, else the shipped model's usual places), and loading it on the chosen backend.

use super::{Estimator, OnLong};
use crate::backend::{Backend, DeviceChoice, Precision};
use crate::batch::BatchLimits;
use crate::error::{Error, Result};
use crate::model::EmotionModel;
use crate::weights::{ModelSource, Resolver, VerifiedModel};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use tokenizers::Tokenizer;

/// The name of the model shipped in `models/`.
pub const DEFAULT_MODEL_NAME: &str = "emoarc-minilm";

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
