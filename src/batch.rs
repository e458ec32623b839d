//! Batching: turns token sequences of mixed lengths into padded encoder batches. Sequences are sorted by
//! length (ties by position, so the plan is deterministic), cut into batches bounded by a padded-token budget
//! and a sequence cap, and each batch is padded only to its own longest member. Padding never changes a
//! result: padded positions are masked out of attention and pooling.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// Bounds on one encoder batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most padded tokens (`batch size x padded length`) in one batch.
    pub token_budget: usize,
    /// Most sequences in one batch.
    pub max_batch: usize,
}

impl BatchLimits {
    pub fn check(&self, max_length: usize) -> Result<()> {
        if self.max_batch == 0 {
            return Err(Error::Config("max batch must be at least 1".into()));
        }
        if self.token_budget < max_length {
            return Err(Error::Config(format!(
                "token budget {} is smaller than the maximum length {max_length}: a long input would fit no batch",
                self.token_budget
            )));
        }
        Ok(())
    }
}

/// One planned batch: positions into the caller's sequences, shortest first, and the length to pad to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub items: Vec<usize>,
    pub padded_len: usize,
}

/// Plans batches for sequences of the given lengths. Every position appears in exactly one batch.
pub fn plan(lengths: &[usize], limits: BatchLimits) -> Vec<PlannedBatch> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut batches = Vec::new();
    let mut current = PlannedBatch {
        items: Vec::new(),
        padded_len: 0,
    };
    for i in order {
        // Sorted ascending, so adding item i makes the padded length lengths[i].
        let len = lengths[i].max(1);
        let would_be = (current.items.len() + 1) * len;
        if !current.items.is_empty()
            && (would_be > limits.token_budget || current.items.len() >= limits.max_batch)
        {
            batches.push(std::mem::replace(
                &mut current,
                PlannedBatch {
                    items: Vec::new(),
                    padded_len: 0,
                },
            ));
        }
        current.items.push(i);
        current.padded_len = len;
    }
    if !current.items.is_empty() {
        batches.push(current);
    }
    batches
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
    fn every_item_once_and_budget_respected() {
        let lengths = [5, 300, 7, 7, 12, 1, 64, 64, 64, 3];
        let limits = BatchLimits {
            token_budget: 140,
            max_batch: 3,
        };
        let batches = plan(&lengths, limits);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.items.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            assert!(b.items.len() <= 3);
            assert_eq!(b.padded_len, b.items.iter().map(|&i| lengths[i]).max().unwrap());
            // A single item longer than the budget still gets its own batch.
            assert!(b.items.len() == 1 || b.items.len() * b.padded_len <= 140);
        }
        // Shortest first: the first batch holds the three shortest.
        assert_eq!(batches[0].items, vec![5, 9, 0]);
    }

    #[test]
    fn padding_masks_only_real_tokens() {
        let a = [101u32, 7, 102];
        let b = [101u32, 102];
        let (ids, mask) = pad(&[&a, &b], 4, 0, &Device::Cpu).unwrap();
        assert_eq!(ids.to_vec2::<u32>().unwrap(), vec![vec![101, 7, 102, 0], vec![101, 102, 0, 0]]);
        assert_eq!(mask.to_vec2::<u32>().unwrap(), vec![vec![1, 1, 1, 0], vec![1, 1, 0, 0]]);
    }
}
