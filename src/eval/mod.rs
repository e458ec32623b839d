//! Evaluation of a head against labelled data.
//!
//! - This file: the original own-data report ([`evaluate`]: per-category Spearman, Pearson and MAE on the test
//!   split, pair ordering, neutral false positives, calibration table) and [`apply_head`], kept for training.
//! - [`metrics`]: ROC-AUC, average precision, F1 and dev-chosen thresholds, calibration slope, the seeded
//!   bootstrap; plain functions over slices, checked on hand-computed numbers.
//! - [`labelmap`]: `data/label-maps/*.tsv`, a public dataset's labels mapped to EmoNet categories.
//! - [`datasets`]: readers for the public human-labelled dev/train sets (GoEmotions, EmoBank, XED, Empathic
//!   Reactions) in their published formats.
//! - [`tfidf`]: the TF-IDF + linear-model baseline fitted on each dataset's own train split.
//! - [`suite`]: everything `emoarc eval` reports, per dataset, for the model, a comparison head, text length
//!   and TF-IDF, with bootstrap intervals.
//! - [`arcs`]: trivial baselines for the conversation pairs of `emoarc eval-arcs`.
//!
//! Nothing here prints; the CLI does.

pub mod arcs;
pub mod datasets;
pub mod labelmap;
pub mod metrics;
pub mod suite;
pub mod tfidf;

use std::path::PathBuf;

/// What can go wrong reading evaluation data (or scoring it, in [`suite`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// One line of a file is wrong; `line` is 1-based.
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, counting from 1 (for CSV, the line the record starts on).
        line: usize,
        /// What is wrong with it.
        problem: LineProblem,
    },
    /// A file as a whole is wrong (empty, no header).
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, for a person to read.
        reason: String,
    },
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] crate::Error),
}

/// Why a line of an evaluation file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LineProblem {
    /// A name that is not one of the 40 EmoNet categories (as [`Category::from_name`] reads names).
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
    /// A value that does not parse or is out of range.
    #[error("bad {field} {value:?}: {reason}")]
    BadValue {
        /// The column or field it is in (a label map's `primary`, a dataset's rating column).
        field: String,
        /// The offending text, as found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The line has the wrong number of tab-separated columns.
    #[error("expected {expected} tab-separated columns, found {found}")]
    Columns {
        /// How many the format has.
        expected: usize,
        /// How many the line has.
        found: usize,
    },
    /// A label map lists the same dataset label twice.
    #[error("label {label:?} already on line {first}")]
    DuplicateLabel {
        /// The repeated label.
        label: String,
        /// The line (1-based) that first mapped it.
        first: usize,
    },
    /// A dataset line uses a label id its label list does not define.
    #[error("unknown label id {0:?}")]
    UnknownLabel(String),
    /// Anything else about the line's form (a broken CSV quote, a wrong header, an empty label), described.
    #[error("{0}")]
    Malformed(String),
}

use crate::data::{Example, IntensityPair, SCALE};
use crate::error::Result;
use crate::intensities::Intensities;
use crate::model::Head;
use crate::taxonomy::{Category, NUM_CATEGORIES};
use candle_core::{Device, Tensor};
use serde::Serialize;

pub use crate::stats::{pearson, ranks, spearman};

/// Mean absolute error.
pub fn mae(x: &[f32], y: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().zip(y).map(|(a, b)| f64::from((a - b).abs())).sum::<f64>() / x.len() as f64
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// One category's agreement with the labels of the test split, as [`evaluate`] measures it.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryMetrics {
    /// The category measured.
    pub category: Category,
    /// Test examples where the category is present.
    pub positives: usize,
    /// Spearman's rank correlation of predictions with labels over every test example, `-1..=1`; `None` when
    /// no test example carries the category (the labels are constant).
    pub spearman: Option<f64>,
    /// Pearson's correlation of predictions with labels, `-1..=1`; `None` as for `spearman`.
    pub pearson: Option<f64>,
    /// Mean absolute error of the predicted intensity, on the 0 to 1 scale.
    pub mae: f64,
}

/// One level of the calibration table: what the model predicts, on average, where the label is that level.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationRow {
    /// The labelled level (0, 0.25, 0.5, 0.75, 1).
    pub label: f32,
    /// (utterance, category) cells at that level.
    pub cells: usize,
    /// Mean predicted intensity over those cells, 0 to 1 (NaN when there are none); a calibrated model's is
    /// close to `label`.
    pub mean_prediction: f64,
}

/// Everything `emoarc eval` reports for one head.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The name of the head evaluated.
    pub head: String,
    /// Examples in the test split.
    pub test_examples: usize,
    /// Every category's metrics, in canonical order.
    pub per_category: Vec<CategoryMetrics>,
    /// Mean of the defined per-category Spearman coefficients (NaN when none is).
    pub macro_spearman: f64,
    /// What a perfect model scores on this test split when absent categories get tiny distinct values, as any
    /// continuous output does: most labels are tied zeros, so this, not 1, is the attainable ceiling.
    pub ceiling_macro_spearman: f64,
    /// Mean of the defined per-category Pearson coefficients (NaN when none is).
    pub macro_pearson: f64,
    /// Mean of the per-category mean absolute errors.
    pub macro_mae: f64,
    /// Share of intensity pairs whose stronger utterance scores higher on the pair's category.
    pub pair_accuracy: f64,
    /// Intensity pairs scored.
    pub pairs: usize,
    /// Share of neutral utterances with any intensity above 0.5.
    pub neutral_false_positive_rate: f64,
    /// Neutral utterances scored.
    pub neutral: usize,
    /// One row per level of the annotation scale, 0 to 1.
    pub calibration: Vec<CalibrationRow>,
}

/// The texts an evaluation needs, in the order [`evaluate`] expects their predictions.
pub fn eval_texts<'a>(test: &[&'a Example], pairs: &'a [IntensityPair], neutral: &'a [String]) -> Vec<&'a str> {
    test.iter()
        .map(|e| e.text.as_str())
        .chain(pairs.iter().flat_map(|p| [p.weaker.as_str(), p.stronger.as_str()]))
        .chain(neutral.iter().map(String::as_str))
        .collect()
}

/// Scores a head from its predictions on [`eval_texts`] (same order).
pub fn evaluate(
    head: &str,
    predictions: &[Intensities],
    test: &[&Example],
    pairs: &[IntensityPair],
    neutral: &[String],
) -> EvalReport {
    let (on_test, rest) = predictions.split_at(test.len());
    let (on_pairs, on_neutral) = rest.split_at(pairs.len() * 2);
    let per_category: Vec<CategoryMetrics> = Category::ALL
        .iter()
        .map(|&c| {
            let pred: Vec<f32> = on_test.iter().map(|p| p[c]).collect();
            let gold: Vec<f32> = test.iter().map(|e| e.labels[c]).collect();
            CategoryMetrics {
                category: c,
                positives: gold.iter().filter(|&&g| g > 0.0).count(),
                spearman: spearman(&pred, &gold),
                pearson: pearson(&pred, &gold),
                mae: mae(&pred, &gold),
            }
        })
        .collect();
    let ordered = pairs
        .iter()
        .zip(on_pairs.chunks(2))
        .filter(|(p, s)| s[1][p.category] > s[0][p.category])
        .count();
    let false_positives = on_neutral
        .iter()
        .filter(|p| p.as_slice().iter().any(|&v| v > 0.5))
        .count();
    let calibration = SCALE
        .iter()
        .map(|&level| {
            let cells: Vec<f64> = test
                .iter()
                .zip(on_test)
                .flat_map(|(e, p)| {
                    (0..NUM_CATEGORIES)
                        .filter(move |&k| e.labels.as_slice()[k] == level)
                        .map(move |k| f64::from(p.as_slice()[k]))
                })
                .collect();
            CalibrationRow {
                label: level,
                cells: cells.len(),
                mean_prediction: mean(cells.iter().copied()).unwrap_or(f64::NAN),
            }
        })
        .collect();
    let ceiling = mean(Category::ALL.iter().filter_map(|&c| {
        let gold: Vec<f32> = test.iter().map(|e| e.labels[c]).collect();
        let oracle: Vec<f32> = gold.iter().enumerate().map(|(i, g)| g + jitter(i, c)).collect();
        spearman(&oracle, &gold)
    }))
    .unwrap_or(f64::NAN);
    EvalReport {
        head: head.to_string(),
        ceiling_macro_spearman: ceiling,
        test_examples: test.len(),
        macro_spearman: mean(per_category.iter().filter_map(|m| m.spearman)).unwrap_or(f64::NAN),
        macro_pearson: mean(per_category.iter().filter_map(|m| m.pearson)).unwrap_or(f64::NAN),
        macro_mae: mean(per_category.iter().map(|m| m.mae)).unwrap_or(f64::NAN),
        per_category,
        pair_accuracy: ordered as f64 / pairs.len().max(1) as f64,
        pairs: pairs.len(),
        neutral_false_positive_rate: false_positives as f64 / neutral.len().max(1) as f64,
        neutral: neutral.len(),
        calibration,
    }
}

/// A deterministic value in `[0, 0.01)` per (utterance, category): the oracle's "tiny but not equal" output.
fn jitter(i: usize, c: Category) -> f32 {
    let mut h = (i as u64) << 8 | c.index() as u64;
    h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    (h % 10_000) as f32 * 1e-6
}

/// Runs a head over pooled embeddings (so several heads can share one pass of the encoder).
pub fn apply_head(head: &Head, embeddings: &[Vec<f32>]) -> Result<Vec<Intensities>> {
    if embeddings.is_empty() {
        return Ok(Vec::new());
    }
    let dim = embeddings[0].len();
    let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
    let x = Tensor::from_vec(flat, (embeddings.len(), dim), &Device::Cpu)?;
    let out = head.forward(&x)?.to_vec2::<f32>()?;
    Ok(out
        .iter()
        .map(|row| Intensities::from_slice(row).expect("the head has 40 outputs"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
    }

    #[test]
    fn spearman_on_hand_checked_numbers() {
        // Perfectly monotone but not linear: Spearman 1, Pearson below 1.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 4.0, 9.0, 16.0, 100.0];
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        assert!(pearson(&x, &y).unwrap() < 0.95);
        // Reversed: -1.
        let r = [5.0, 4.0, 3.0, 2.0, 1.0];
        assert!((spearman(&x, &r).unwrap() + 1.0).abs() < 1e-12);
        // By hand: x = [1,2,3,4,5], y = [2,1,4,3,5]; d = [1,1,1,1,0]; rho = 1 - 6*4/(5*24) = 0.8.
        let y = [2.0, 1.0, 4.0, 3.0, 5.0];
        assert!((spearman(&x, &y).unwrap() - 0.8).abs() < 1e-12);
        // With ties (average ranks): x ranks [1, 2.5, 2.5, 4], y ranks [1, 2, 3, 4]; Pearson of those = 0.9486833.
        let xt = [0.0, 0.5, 0.5, 1.0];
        let yt = [0.1, 0.2, 0.3, 0.4];
        assert!((spearman(&xt, &yt).unwrap() - 0.9486833).abs() < 1e-6);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn mae_and_pearson_by_hand() {
        assert!((mae(&[0.0, 0.5, 1.0], &[0.25, 0.5, 0.5]) - 0.25).abs() < 1e-12);
        // x = [1,2,3], y = [2,4,7]: cov = 5/3... r = 5 / sqrt(2 * 12.6667) = 0.99339927.
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]).unwrap() - 0.993399).abs() < 1e-6);
    }
}
