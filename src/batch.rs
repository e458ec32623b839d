//! Batching: turns token sequences of mixed lengths into encoder batches the way the backend wants them
//! ([`Batching`]). Sequences are sorted by length (ties by position, so the plan is deterministic) and cut into
//! batches bounded by a token budget and a sequence cap. For a padded backend the budget counts padded tokens
//! (each batch is padded only to its own longest member); for a packed one it counts real tokens. Neither
//! changes a result: padded positions are masked out of attention and pooling, and packed sequences never see
//! each other.

use crate::backend::Batching;
use crate::error::{Error, Result};

/// Bounds on one encoder batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most tokens in one batch: padded tokens (`batch size x padded length`) for a padded backend, real
    /// tokens for a packed one.
    pub token_budget: usize,
    /// Most sequences in one batch.
    pub max_batch: usize,
    /// How the backend takes its batches.
    pub batching: Batching,
}

impl BatchLimits {
    /// Checks that every input of up to `max_length` tokens fits some batch. Returns [`Error::Config`] when
    /// `max_batch` is 0 or `token_budget` is smaller than `max_length`.
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

/// One planned batch: positions into the caller's sequences, shortest first, and its longest length (what a
/// padded backend pads to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    /// Indices into the `lengths` passed to [`plan`], in ascending order of length (ties by index); never empty.
    pub items: Vec<usize>,
    /// Length in tokens of the longest member (at least 1): the length a padded backend pads every member to.
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
    let mut real_tokens = 0;
    for i in order {
        // Sorted ascending, so adding item i makes the padded length lengths[i].
        let len = lengths[i].max(1);
        let would_be = match limits.batching {
            Batching::Padded => (current.items.len() + 1) * len,
            Batching::Packed => real_tokens + len,
        };
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
            real_tokens = 0;
        }
        real_tokens += len;
        current.items.push(i);
        current.padded_len = len;
    }
    if !current.items.is_empty() {
        batches.push(current);
    }
    batches
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
            batching: Batching::Padded,
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
    fn packed_budget_counts_real_tokens() {
        let lengths = [10, 10, 10, 40, 40, 100];
        let limits = BatchLimits {
            token_budget: 100,
            max_batch: 8,
            batching: Batching::Packed,
        };
        let batches = plan(&lengths, limits);
        let items: Vec<Vec<usize>> = batches.iter().map(|b| b.items.clone()).collect();
        // 10+10+10+40 = 70 fits and adding the next 40 would not; padded, 4 x 40 = 160 would already split.
        assert_eq!(items, vec![vec![0, 1, 2, 3], vec![4], vec![5]]);
        let padded = plan(&lengths, BatchLimits { batching: Batching::Padded, ..limits });
        assert_eq!(padded[0].items, vec![0, 1, 2]);
    }

}
