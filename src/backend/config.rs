//! The encoder's `config.json` (BERT's Hugging Face format): read once per load, checked once, and handed to
//! whichever backend runs the encoder and to training, so every reader agrees on the shape.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The fields of a BERT `config.json` that emoarc's own code uses (candle reads the rest itself).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertShape {
    /// Width of every token vector and of the pooled utterance vector.
    pub hidden_size: usize,
    /// Attention heads per layer; `hidden_size` is split evenly between them.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block's inner layer.
    pub intermediate_size: usize,
    /// Layers in the weights file (a head may read only the first few).
    pub num_hidden_layers: usize,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Layer-norm epsilon (BERT's default 1e-12 when absent).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Feed-forward activation (BERT's default `gelu` when absent).
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

/// A parsed `config.json` and where it came from.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    path: PathBuf,
    text: String,
    shape: BertShape,
}

impl EncoderConfig {
    /// Reads and parses `path`; a file that is not a BERT config is an [`Error::EncoderConfig`] naming it.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, text)
    }

    fn parse(path: &Path, text: String) -> Result<Self> {
        let bad = |reason: String| Error::EncoderConfig {
            path: path.to_path_buf(),
            reason,
        };
        let shape: BertShape = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if shape.hidden_size == 0 || shape.num_attention_heads == 0 || shape.hidden_size % shape.num_attention_heads != 0 {
            return Err(bad(format!(
                "hidden_size {} does not split into {} attention heads",
                shape.hidden_size, shape.num_attention_heads
            )));
        }
        if shape.num_hidden_layers == 0 {
            return Err(bad("num_hidden_layers is 0".into()));
        }
        Ok(EncoderConfig {
            path: path.to_path_buf(),
            text,
            shape,
        })
    }

    /// The shape fields.
    pub fn shape(&self) -> &BertShape {
        &self.shape
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of layers to run: `layers` if it is between 1 and the file's layer count, else all of them.
    pub fn depth(&self, layers: Option<usize>) -> Result<usize> {
        let all = self.shape.num_hidden_layers;
        match layers {
            None => Ok(all),
            Some(k) if (1..=all).contains(&k) => Ok(k),
            Some(k) => Err(Error::Config(format!("encoder layers {k} must be between 1 and {all}"))),
        }
    }

    /// candle-transformers' config for the first `layers` layers (its loader reads layers `0..num_hidden_layers`).
    pub(crate) fn candle(&self, layers: usize) -> Result<candle_transformers::models::bert::Config> {
        let mut value: serde_json::Value = serde_json::from_str(&self.text)?;
        value["num_hidden_layers"] = layers.into();
        serde_json::from_value(value).map_err(|e| Error::EncoderConfig {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EncoderConfig> {
        EncoderConfig::parse(Path::new("config.json"), text.to_string())
    }

    const MINILM: &str = r#"{"hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536,
        "num_hidden_layers": 6, "max_position_embeddings": 512, "vocab_size": 30522, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "position_embedding_type": "absolute", "model_type": "bert"}"#;

    #[test]
    fn reads_shape_and_depth() {
        let c = parse(MINILM).unwrap();
        assert_eq!(c.shape().hidden_size, 384);
        assert_eq!(c.depth(None).unwrap(), 6);
        assert_eq!(c.depth(Some(3)).unwrap(), 3);
        assert!(c.depth(Some(0)).is_err());
        assert!(c.depth(Some(7)).unwrap_err().to_string().contains("between 1 and 6"));
        c.candle(3).unwrap();
    }

    #[test]
    fn names_the_file_when_it_is_not_a_bert_config() {
        let err = parse(r#"{"architectures": ["GPT2"]}"#).unwrap_err();
        assert!(matches!(err, Error::EncoderConfig { .. }), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
        let err = parse(&MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7")).unwrap_err();
        assert!(err.to_string().contains("attention heads"), "{err}");
    }
}
