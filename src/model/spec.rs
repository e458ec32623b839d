//! The model folder's format: `emoarc.json`, described by [`ModelSpec`] (one encoder and one or more named
//! heads, so a trained head and the zero-shot one share the encoder's weights on disk), and the one answer to
//! "which files does this head need".

use crate::error::{Error, Result};
use crate::taxonomy::{Category, NUM_CATEGORIES, TAXONOMY_VERSION};
use crate::weights::VerifiedModel;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The newest version of the `emoarc.json` format this build reads. Version 2 added lexical heads
/// ([`HeadSpec::lexical`]); a build that reads only version 1 refuses such a folder instead of dropping the
/// lexical part without a word. [`ModelSpec::save`] writes the oldest version that describes the folder.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest `emoarc.json` format this build still reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The file every model folder has.
pub const SPEC_FILE: &str = "emoarc.json";

/// How token vectors become one utterance vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum Activation {
    /// The exact (erf-based) GELU; `"gelu"` in `emoarc.json`.
    Gelu,
    /// `max(0, x)`; `"relu"` in `emoarc.json`.
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
    /// The int8 calibration of this head's encoder (safetensors, see
    /// [`crate::backend::int16::Int8Calibration`]): which products run in int8 on CPUs with AVX-512 VNNI.
    /// Readers that predate it ignore it and run int16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<String>,
    /// `zero-shot` (prototype similarities) or `trained`; informational.
    pub kind: String,
    /// Input width (the encoder's hidden size).
    pub inputs: usize,
    /// Widths of hidden layers; empty for a linear head.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Applied after each hidden layer (not after the output layer, which goes through a sigmoid); unused by a
    /// linear head.
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
    /// Whether the head also holds a lexicon (`lexical.*`, see [`crate::model::lexical`]): a TF-IDF model over
    /// the encoder's wordpieces whose logits are added to the network's, trained with it. Needs format 2.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lexical: bool,
    /// Whether the head was trained to read a text together with the message it answers (`[CLS] text [SEP]
    /// message [SEP]`, pooled over the text only; [`crate::InContext`]). Heads without it read every text alone,
    /// and a message given with a text is not used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reads_context: bool,
}

/// `emoarc.json`: everything needed to run a model folder, besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Version of this file's format; loading fails with [`Error::ModelFormat`] unless it is
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The model's name, used in error messages; normally the same as its manifest entry and folder.
    pub name: String,
    /// The taxonomy the head columns follow; must be this build's [`TAXONOMY_VERSION`] (`emonet-40-v1`).
    pub taxonomy: String,
    /// The 40 category names in head column order; must equal the crate's canonical order.
    pub categories: Vec<String>,
    /// How token vectors are pooled into one vector per input.
    pub pooling: Pooling,
    /// Maximum tokens per input, special tokens included.
    pub max_length: usize,
    /// The encoder's files, shared by every head.
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

    /// The encoder weight files the head `name` runs on, in load order: the shared encoder, then the head's own
    /// fine-tuned layers (whose tensors replace the shared ones).
    pub fn encoder_weights(&self, model: &VerifiedModel, head: &HeadSpec) -> Result<Vec<PathBuf>> {
        let mut files = vec![model.file(&self.encoder.weights)?];
        if let Some(extra) = &head.encoder_override {
            files.push(model.file(extra)?);
        }
        Ok(files)
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
            files.extend(h.int8.clone());
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

    /// The oldest format that describes this spec: 2 when a head is lexical, else 1, so that a folder without
    /// lexical heads stays readable by builds that know only format 1.
    pub fn required_format(&self) -> u32 {
        if self.heads.values().any(|h| h.lexical) {
            2
        } else {
            OLDEST_FORMAT_VERSION
        }
    }

    /// Writes `emoarc.json` into a folder atomically, with `format` set to [`required_format`](Self::required_format).
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        let spec = ModelSpec {
            format: self.required_format(),
            ..self.clone()
        };
        crate::weights::write_atomically(&dir.join(SPEC_FILE), serde_json::to_string_pretty(&spec)?.as_bytes())
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
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.format) {
            return fail(format!(
                "format {} is not supported (this build reads {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                self.format
            ));
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
            if head.lexical && self.format < 2 {
                return fail(format!("head {name:?} is lexical, which needs format 2 (the file says {})", self.format));
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
