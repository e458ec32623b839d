//! The network: a BERT encoder (candle-transformers' `BertModel`), mean pooling over the attention mask, and a
//! head that maps the pooled vector to 40 intensities in `[0, 1]`. This module owns the model folder's format
//! (`emoarc.json`, described by [`ModelSpec`]: one encoder and one or more named heads, so a trained head and
//! the zero-shot one share the encoder's weights on disk) and loading it from verified files; it knows nothing
//! about batching or text.

use crate::error::{Error, Result};
use crate::quantized::QuantizedEncoder;
use crate::taxonomy::{Category, NUM_CATEGORIES, TAXONOMY_VERSION};
use crate::weights::VerifiedModel;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::{Deserialize, Serialize};

/// The current version of the `emoarc.json` format.
pub const FORMAT_VERSION: u32 = 1;

/// The file every model folder has.
pub const SPEC_FILE: &str = "emoarc.json";

/// How token vectors become one utterance vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the last layer's token vectors over the attention mask (what all-MiniLM-L6-v2 was trained for).
    Mean,
}

/// The encoder part of a model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// Architecture; only `bert` today.
    pub arch: String,
    /// BERT `config.json`.
    pub config: String,
    /// `tokenizer.json` (Hugging Face tokenizers format).
    pub tokenizer: String,
    /// Encoder weights (safetensors, tensor names without a `bert.` prefix).
    pub weights: String,
}

/// The activation between hidden layers of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Gelu,
    Relu,
}

/// The head: `[l2-normalise] -> (Linear -> act)* -> Linear -> sigmoid`, tensors `layers.{i}.weight/bias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Head weights (safetensors).
    pub weights: String,
    /// How many encoder layers feed this head; fewer than the encoder has is a "first k layers" model.
    pub encoder_layers: usize,
    /// Safetensors whose tensors replace the encoder's for this head (its fine-tuned top layers), so heads
    /// with and without fine-tuning share one encoder file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_override: Option<String>,
    /// `zero-shot` (prototype similarities) or `trained`; informational.
    pub kind: String,
    /// Input width (the encoder's hidden size).
    pub inputs: usize,
    /// Widths of hidden layers; empty for a linear head.
    #[serde(default)]
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Whether the pooled vector is L2-normalised first (a cosine head).
    pub normalize: bool,
    /// Output width; always 40.
    pub outputs: usize,
    /// Whether the head also predicts valence and arousal (`affect.weight` `[2, width]` and `affect.bias`, read
    /// from the last hidden layer, each through a sigmoid), learned from human ratings (EmoBank). Heads without
    /// it leave affect to the documented table (`trajectory::affect`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub affect: bool,
}

/// `emoarc.json`: everything needed to run a model folder, besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub format: u32,
    pub name: String,
    pub taxonomy: String,
    /// The 40 category names in head column order; must equal the crate's canonical order.
    pub categories: Vec<String>,
    pub pooling: Pooling,
    /// Maximum tokens per input, special tokens included.
    pub max_length: usize,
    pub encoder: EncoderSpec,
    /// Heads by name; each reads the pooled output of its own number of encoder layers.
    pub heads: std::collections::BTreeMap<String, HeadSpec>,
    /// The head used when none is asked for.
    pub default_head: String,
}

impl ModelSpec {
    /// Reads and checks `emoarc.json` from a verified model folder.
    pub fn load(model: &VerifiedModel) -> Result<Self> {
        let path = model.file(SPEC_FILE)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let spec: ModelSpec = serde_json::from_str(&text).map_err(|e| Error::ModelFormat {
            model: model.entry.name.clone(),
            reason: format!("{SPEC_FILE}: {e}"),
        })?;
        spec.check()?;
        Ok(spec)
    }

    /// The head called `name`, or the default head; a typed error lists the heads there are.
    pub fn head(&self, name: Option<&str>) -> Result<(&str, &HeadSpec)> {
        let name = name.unwrap_or(&self.default_head);
        self.heads
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| Error::ModelFormat {
                model: self.name.clone(),
                reason: format!(
                    "no head {name:?}; this model has {}",
                    self.heads.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
    }

    /// Every file of the model folder: what the manifest must list.
    pub fn files(&self) -> Vec<String> {
        let mut files = vec![
            SPEC_FILE.to_string(),
            self.encoder.config.clone(),
            self.encoder.tokenizer.clone(),
            self.encoder.weights.clone(),
        ];
        for h in self.heads.values() {
            files.push(h.weights.clone());
            files.extend(h.encoder_override.clone());
        }
        files.sort();
        files.dedup();
        files
    }

    /// Reads `emoarc.json` from a folder being built or updated (unverified: only writers use this).
    pub fn read_unverified(dir: &std::path::Path) -> Result<Option<Self>> {
        let path = dir.join(SPEC_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let spec: ModelSpec = serde_json::from_str(&text)?;
                spec.check()?;
                Ok(Some(spec))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Writes `emoarc.json` into a folder atomically.
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        crate::weights::write_atomically(&dir.join(SPEC_FILE), serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// The category names in canonical order, as the spec records them.
    pub fn canonical_categories() -> Vec<String> {
        Category::ALL.iter().map(|c| c.name().to_string()).collect()
    }

    fn check(&self) -> Result<()> {
        let fail = |reason: String| {
            Err(Error::ModelFormat {
                model: self.name.clone(),
                reason,
            })
        };
        if self.format != FORMAT_VERSION {
            return fail(format!("format {} is not supported (this build reads {FORMAT_VERSION})", self.format));
        }
        if self.taxonomy != TAXONOMY_VERSION || self.categories != Self::canonical_categories() {
            return fail(format!(
                "taxonomy {:?} with {} categories does not match this build's {TAXONOMY_VERSION}",
                self.taxonomy,
                self.categories.len()
            ));
        }
        if !self.heads.contains_key(&self.default_head) {
            return fail(format!("default head {:?} is not among the heads", self.default_head));
        }
        for (name, head) in &self.heads {
            if head.outputs != NUM_CATEGORIES {
                return fail(format!("head {name:?} has {} outputs, expected {NUM_CATEGORIES}", head.outputs));
            }
        }
        if self.encoder.arch != "bert" {
            return fail(format!("encoder architecture {:?} is not supported", self.encoder.arch));
        }
        if self.max_length < 8 {
            return fail(format!("max_length {} is too small", self.max_length));
        }
        Ok(())
    }
}

/// The head network (see [`HeadSpec`]).
#[derive(Debug, Clone)]
pub struct Head {
    layers: Vec<Linear>,
    activation: Activation,
    normalize: bool,
    /// Valence and arousal from the last hidden layer's activations (see [`HeadSpec::affect`]).
    affect: Option<Linear>,
}

/// What the head gives for a batch: intensities `[b, 40]` in `[0, 1]` and, when the head has learned affect,
/// `[b, 2]` valence and arousal, each in `[0, 1]` (valence 0.5 is neutral).
pub struct HeadOutput {
    pub intensities: Tensor,
    pub affect: Option<Tensor>,
}

impl Head {
    /// Loads the head's layers; `vb` must hold `layers.{i}.weight` and `layers.{i}.bias`.
    pub fn load(vb: VarBuilder, spec: &HeadSpec) -> candle_core::Result<Self> {
        let widths: Vec<usize> = std::iter::once(spec.inputs)
            .chain(spec.hidden.iter().copied())
            .chain(std::iter::once(spec.outputs))
            .collect();
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let trunk_width = widths[widths.len() - 2];
        let affect = if spec.affect {
            Some(candle_nn::linear(trunk_width, 2, vb.pp("affect"))?)
        } else {
            None
        };
        Ok(Head {
            layers,
            activation: spec.activation,
            normalize: spec.normalize,
            affect,
        })
    }

    /// Builds a head from layers already in memory (training and the zero-shot fit use this).
    pub fn from_layers(layers: Vec<Linear>, activation: Activation, normalize: bool) -> Self {
        Head {
            layers,
            activation,
            normalize,
            affect: None,
        }
    }

    /// The activations the last layer reads: the pooled vector (normalised if so specified) through every
    /// hidden layer.
    fn trunk(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = if self.normalize {
            l2_normalize(pooled)?
        } else {
            pooled.clone()
        };
        for layer in &self.layers[..self.layers.len() - 1] {
            xs = layer.forward(&xs)?;
            xs = match self.activation {
                Activation::Gelu => xs.gelu_erf()?,
                Activation::Relu => xs.relu()?,
            };
        }
        Ok(xs)
    }

    /// Pre-sigmoid scores, `[batch, 40]`.
    pub fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        self.layers[self.layers.len() - 1].forward(&self.trunk(pooled)?)
    }

    /// Intensities in `[0, 1]`, `[batch, 40]`.
    pub fn forward(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::sigmoid(&self.logits(pooled)?)
    }

    /// Intensities and, when the head has them, learned valence and arousal, from one pass of the trunk.
    pub fn forward_all(&self, pooled: &Tensor) -> candle_core::Result<HeadOutput> {
        let trunk = self.trunk(pooled)?;
        let logits = self.layers[self.layers.len() - 1].forward(&trunk)?;
        let affect = match &self.affect {
            Some(linear) => Some(candle_nn::ops::sigmoid(&linear.forward(&trunk)?)?),
            None => None,
        };
        Ok(HeadOutput {
            intensities: candle_nn::ops::sigmoid(&logits)?,
            affect,
        })
    }

    /// Whether the head predicts valence and arousal itself.
    pub fn has_affect(&self) -> bool {
        self.affect.is_some()
    }
}

/// Divides each row by its L2 norm (with a floor, so a zero row stays zero instead of NaN).
pub fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norm)
}

/// Mean of token vectors over the mask: `hidden [b, s, h]`, `mask [b, s]` (1 for real tokens) -> `[b, h]`.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

/// The BERT encoder with mean pooling, loaded from a model folder.
pub struct Encoder {
    bert: BertModel,
    /// The dtype the encoder computes in; pooled vectors are always returned as f32.
    dtype: DType,
    hidden_size: usize,
}

impl Encoder {
    /// Loads `config.json` and the weights of the first `layers` layers, converting them to `dtype`. Tensors of
    /// later files in `weights` replace those of earlier ones (fine-tuned layers over the shared encoder).
    pub fn load(
        config_path: &std::path::Path,
        weights: &[std::path::PathBuf],
        layers: Option<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let text = std::fs::read_to_string(config_path).map_err(|e| Error::io(config_path, e))?;
        let mut config: BertConfig = serde_json::from_str(&text)?;
        if let Some(k) = layers {
            if k == 0 || k > config.num_hidden_layers {
                return Err(Error::Config(format!(
                    "encoder layers {k} must be between 1 and {}",
                    config.num_hidden_layers
                )));
            }
            // BertEncoder::load reads layers 0..num_hidden_layers, so this runs only the first k.
            config.num_hidden_layers = k;
        }
        // mmap: nothing is read until a tensor is touched, which keeps start-up cheap.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, dtype, device)? };
        let bert = BertModel::load(vb, &config)?;
        Ok(Encoder {
            bert,
            dtype,
            hidden_size: config.hidden_size,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// The last loaded layer's token vectors `[b, s, hidden]` for a padded batch (`ids`, `mask`: `[b, s]` u32).
    pub fn hidden_states(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let type_ids = ids.zeros_like()?;
        Ok(self.bert.forward(ids, &type_ids, Some(mask))?)
    }

    /// Pooled utterance vectors `[b, hidden]` in f32 for a padded batch: `ids` and `mask` are `[b, s]` u32.
    pub fn embed(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let pooled = mean_pool(&self.hidden_states(ids, mask)?, mask)?;
        Ok(pooled.to_dtype(DType::F32)?)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

/// The precision the encoder computes in. The head always runs in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
    BF16,
    /// Linear layers in 16-bit integers on the CPU ([`crate::quantized`]); the fast CPU path.
    Int16,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::BF16),
            "int16" => Ok(Precision::Int16),
            _ => Err(Error::Config(format!("precision must be f32, f16, bf16 or int16, not {s:?}"))),
        }
    }
}

/// What runs the encoder: candle (any device and float dtype) or emoarc's quantized CPU code.
pub enum EncoderBackend {
    Candle(Encoder),
    Quantized(QuantizedEncoder),
}

impl EncoderBackend {
    pub fn hidden_size(&self) -> usize {
        match self {
            EncoderBackend::Candle(e) => e.hidden_size(),
            EncoderBackend::Quantized(e) => e.hidden_size(),
        }
    }

    /// Pooled f32 vectors `[b, hidden]` for a batch of token sequences: candle pads them to `padded_len` with
    /// `pad_id`; the quantized encoder packs them with no padding at all.
    pub fn embed_tokens(&self, seqs: &[&[u32]], padded_len: usize, pad_id: u32, device: &Device) -> Result<Tensor> {
        match self {
            EncoderBackend::Candle(e) => {
                let (ids, mask) = crate::batch::pad(seqs, padded_len, pad_id, device)?;
                e.embed(&ids, &mask)
            }
            EncoderBackend::Quantized(e) => Ok(Tensor::from_vec(e.embed(seqs)?, (seqs.len(), e.hidden_size()), device)?),
        }
    }
}

/// A whole model: the encoder (only as many layers as the head reads), one head, and the spec.
pub struct EmotionModel {
    pub spec: ModelSpec,
    /// The name of the head in use.
    pub head_name: String,
    pub encoder: EncoderBackend,
    /// Encoder layers run: the head's own number unless the caller asked for another.
    pub encoder_layers: usize,
    pub head: Head,
}

impl EmotionModel {
    /// Loads a verified model folder onto `device` with the named head (or the default one), computing the
    /// encoder in `precision` and the head in f32. Int16 runs on the CPU only. `layers` runs another number of
    /// encoder layers than the head was made for (training a head for a first-k-layers model needs this).
    pub fn load(
        model: &VerifiedModel,
        head: Option<&str>,
        precision: Precision,
        device: &Device,
        layers: Option<usize>,
    ) -> Result<Self> {
        let spec = ModelSpec::load(model)?;
        let (head_name, head_spec) = spec.head(head)?;
        let mut weights = vec![model.file(&spec.encoder.weights)?];
        if let Some(extra) = &head_spec.encoder_override {
            weights.push(model.file(extra)?);
        }
        let config = model.file(&spec.encoder.config)?;
        let encoder_layers = layers.unwrap_or(head_spec.encoder_layers);
        let layers = Some(encoder_layers);
        let encoder = match precision {
            Precision::Int16 if !device.is_cpu() => {
                return Err(Error::Config("int16 precision runs on the CPU only; use --device cpu".into()))
            }
            Precision::Int16 => EncoderBackend::Quantized(QuantizedEncoder::load(&config, &weights, layers, None)?),
            Precision::F32 => EncoderBackend::Candle(Encoder::load(&config, &weights, layers, DType::F32, device)?),
            Precision::F16 => EncoderBackend::Candle(Encoder::load(&config, &weights, layers, DType::F16, device)?),
            Precision::BF16 => EncoderBackend::Candle(Encoder::load(&config, &weights, layers, DType::BF16, device)?),
        };
        if encoder.hidden_size() != head_spec.inputs {
            return Err(Error::ModelFormat {
                model: spec.name.clone(),
                reason: format!(
                    "head {head_name:?} expects {} inputs but the encoder's hidden size is {}",
                    head_spec.inputs,
                    encoder.hidden_size()
                ),
            });
        }
        let head_path = model.file(&head_spec.weights)?;
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[head_path], DType::F32, device)? };
        let loaded = Head::load(vb, head_spec).map_err(|e| Error::ModelFormat {
            model: spec.name.clone(),
            reason: format!("head {head_name:?} weights: {e}"),
        })?;
        let head_name = head_name.to_string();
        Ok(EmotionModel {
            spec,
            head_name,
            encoder,
            encoder_layers,
            head: loaded,
        })
    }

    /// The spec of the head in use.
    pub fn head_spec(&self) -> &HeadSpec {
        &self.spec.heads[&self.head_name]
    }

    /// `(pooled [b, hidden], head outputs)` for a batch of token sequences (see
    /// [`EncoderBackend::embed_tokens`]).
    pub fn forward(&self, seqs: &[&[u32]], padded_len: usize, pad_id: u32, device: &Device) -> Result<(Tensor, HeadOutput)> {
        let pooled = self.encoder.embed_tokens(seqs, padded_len, pad_id, device)?;
        let out = self.head.forward_all(&pooled)?;
        Ok((pooled, out))
    }
}
