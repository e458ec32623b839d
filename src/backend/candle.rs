//! The candle backend: candle-transformers' BERT in f32, f16 or bf16 on the CPU, CUDA or Metal, with mean
//! pooling over the attention mask. Batches are padded to their longest member; padding is masked out of
//! attention and pooling, so it never changes a result.

use super::config::EncoderConfig;
use super::{Batching, EncoderBackend, TokenBatch};
use crate::error::Result;
use crate::weights::TensorStore;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use std::path::PathBuf;

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
    device: Device,
    hidden_size: usize,
}

impl Encoder {
    /// Loads the first `layers` layers (all when `None`) from `weights`, converting them to `dtype`. Tensors of
    /// later files in `weights` replace those of earlier ones (fine-tuned layers over the shared encoder).
    pub fn load(
        config: &EncoderConfig,
        weights: &[PathBuf],
        layers: Option<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let depth = config.depth(layers)?;
        // Mapped, so nothing is read until a tensor is touched, which keeps start-up cheap; the store also
        // reads tensors kept as int8 rows (the word embeddings).
        let vb = VarBuilder::from_backend(Box::new(TensorStore::open(weights)?), dtype, device.clone());
        let bert = BertModel::load(vb, &config.candle(depth)?)?;
        Ok(Encoder {
            bert,
            dtype,
            device: device.clone(),
            hidden_size: config.shape().hidden_size,
        })
    }

    /// Width of the pooled vectors.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// The last loaded layer's token vectors `[b, s, hidden]` for a padded batch (`ids`, `mask`: `[b, s]` u32).
    pub fn hidden_states(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let type_ids = ids.zeros_like()?;
        Ok(self.bert.forward(ids, &type_ids, Some(mask))?)
    }

    /// Pooled utterance vectors `[b, hidden]` in f32 for a padded batch: `ids` and `mask` are `[b, s]` u32.
    pub fn embed_padded(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let pooled = mean_pool(&self.hidden_states(ids, mask)?, mask)?;
        Ok(pooled.to_dtype(DType::F32)?)
    }

    /// The dtype the encoder computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

impl EncoderBackend for Encoder {
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn batching(&self) -> Batching {
        Batching::Padded
    }

    fn embed(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let (ids, mask) = pad(batch.seqs, batch.max_len(), batch.pad_id, &self.device)?;
        let pooled = match batch.pooled {
            None => self.embed_padded(&ids, &mask)?,
            Some(_) => {
                // Attend to every token, pool only each sequence's leading `pooled_len` (the text, not its context).
                let lens: Vec<usize> = (0..batch.seqs.len()).map(|i| batch.pooled_len(i)).collect();
                let pool_mask = prefix_mask(&lens, batch.max_len(), &self.device)?;
                mean_pool(&self.hidden_states(&ids, &mask)?, &pool_mask)?.to_dtype(DType::F32)?
            }
        };
        Ok(pooled.flatten_all()?.to_vec1::<f32>()?)
    }

    fn describe(&self) -> String {
        let device = match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        format!("candle {:?} on {device}", self.dtype).to_lowercase()
    }

    fn on_cpu(&self) -> bool {
        self.device.is_cpu()
    }
}

/// `[n, padded_len]` u32: 1 on the first `lens[i]` positions of row `i`, 0 after.
fn prefix_mask(lens: &[usize], padded_len: usize, device: &Device) -> Result<Tensor> {
    let mut mask = vec![0u32; lens.len() * padded_len];
    for (row, &len) in mask.chunks_exact_mut(padded_len.max(1)).zip(lens) {
        row[..len.min(padded_len)].fill(1);
    }
    Ok(Tensor::from_vec(mask, (lens.len(), padded_len), device)?)
}

/// Pads sequences to `padded_len` with `pad_id`; returns `(ids, mask)`, both `[n, padded_len]` u32.
pub fn pad(seqs: &[&[u32]], padded_len: usize, pad_id: u32, device: &Device) -> Result<(Tensor, Tensor)> {
    let n = seqs.len();
    let mut ids = vec![pad_id; n * padded_len];
    let mut mask = vec![0u32; n * padded_len];
    for (row, seq) in seqs.iter().enumerate() {
        debug_assert!(seq.len() <= padded_len);
        let start = row * padded_len;
        ids[start..start + seq.len()].copy_from_slice(seq);
        mask[start..start + seq.len()].fill(1);
    }
    Ok((
        Tensor::from_vec(ids, (n, padded_len), device)?,
        Tensor::from_vec(mask, (n, padded_len), device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_masks_only_real_tokens() {
        let a = [101u32, 7, 102];
        let b = [101u32, 102];
        let (ids, mask) = pad(&[&a, &b], 4, 0, &Device::Cpu).unwrap();
        assert_eq!(ids.to_vec2::<u32>().unwrap(), vec![vec![101, 7, 102, 0], vec![101, 102, 0, 0]]);
        assert_eq!(mask.to_vec2::<u32>().unwrap(), vec![vec![1, 1, 1, 0], vec![1, 1, 0, 0]]);
    }

    #[test]
    fn prefix_masks_cover_the_pooled_tokens() {
        let mask = prefix_mask(&[2, 4, 1], 4, &Device::Cpu).unwrap();
        assert_eq!(mask.to_vec2::<u32>().unwrap(), vec![vec![1, 1, 0, 0], vec![1, 1, 1, 1], vec![1, 0, 0, 0]]);
    }
}
