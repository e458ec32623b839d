//! The model: a model folder's format ([`spec`]), the head ([`head`], with its optional [`lexical`] part) and
//! [`EmotionModel`], which puts an encoder backend ([`crate::backend`]) and a head together from verified files.
//! It knows nothing about batching or text.

pub mod head;
pub mod lexical;
pub mod spec;

pub use crate::backend::config::{BertShape, EncoderConfig};
pub use head::{l2_normalize, Head, HeadOutput};
pub use lexical::Lexicon;
pub use spec::{
    Activation, EncoderSpec, HeadSpec, ModelSpec, Pooling, FORMAT_VERSION, OLDEST_FORMAT_VERSION, SPEC_FILE,
};
// Training builds on the candle encoder directly (it needs gradients through its layers).
pub use crate::backend::candle::{mean_pool, Encoder};

use crate::backend::{self, Backend, Batching, EncoderBackend, TokenBatch};
use crate::error::{Error, Result};
use crate::weights::VerifiedModel;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// A whole model: the encoder (only as many layers as the head reads) on its backend, one head, and the spec.
pub struct EmotionModel {
    spec: ModelSpec,
    head_name: String,
    encoder: Box<dyn EncoderBackend>,
    encoder_layers: usize,
    head: Head,
}

impl EmotionModel {
    /// Loads a verified model folder with the named head (or the default one) on `backend`; the head runs in f32
    /// on the CPU. `layers` runs another number of encoder layers than the head was made for (training a head
    /// for a first-k-layers model needs this).
    pub fn load(model: &VerifiedModel, head: Option<&str>, backend: Backend, layers: Option<usize>) -> Result<Self> {
        let spec = ModelSpec::load(model)?;
        let (head_name, head_spec) = spec.head(head)?;
        let weights = spec.encoder_weights(model, head_spec)?;
        let config = EncoderConfig::read(&model.file(&spec.encoder.config)?)?;
        let encoder_layers = config.depth(Some(layers.unwrap_or(head_spec.encoder_layers)))?;
        let int8 = head_spec.int8.as_deref().map(|f| model.file(f)).transpose()?;
        let encoder = backend::load(backend, &config, &weights, encoder_layers, int8.as_deref())?;
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
        // SAFETY: the file was verified against the manifest and is not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[head_path], DType::F32, &Device::Cpu)? };
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

    /// The model folder's `emoarc.json`.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The name of the head in use.
    pub fn head_name(&self) -> &str {
        &self.head_name
    }

    /// The spec of the head in use.
    pub fn head_spec(&self) -> &HeadSpec {
        &self.spec.heads[&self.head_name]
    }

    /// The head network (candle, f32, CPU).
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Encoder layers run: the head's own number unless the caller asked for another.
    pub fn encoder_layers(&self) -> usize {
        self.encoder_layers
    }

    /// Width of the pooled vectors.
    pub fn hidden_size(&self) -> usize {
        self.encoder.hidden_size()
    }

    /// What runs the encoder, for reports (`int16 (avx512-vnni)`, `candle f32 on cpu`).
    pub fn backend_name(&self) -> String {
        self.encoder.describe()
    }

    pub(crate) fn batching(&self) -> Batching {
        self.encoder.batching()
    }

    pub(crate) fn encoder_on_cpu(&self) -> bool {
        self.encoder.on_cpu()
    }

    /// `(pooled, head outputs)` for a batch of token sequences: the pooled vectors row-major (`b × hidden`),
    /// as the backend returned them, so the caller reads them without another copy out of a tensor.
    pub(crate) fn forward(&self, batch: &TokenBatch) -> Result<(Vec<f32>, HeadOutput)> {
        let pooled = self.encoder.embed(batch)?;
        let input = Tensor::from_slice(&pooled, (batch.seqs.len(), self.encoder.hidden_size()), &Device::Cpu)?;
        // A lexicon reads a text read alone; a text read in context is the network's alone (model::lexical).
        let read: Vec<Option<&[u32]>> =
            (0..batch.seqs.len()).map(|i| (!batch.has_context(i)).then(|| batch.seqs[i])).collect();
        let out = self.head.forward_all(&input, &read)?;
        Ok((pooled, out))
    }
}
