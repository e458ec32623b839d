//! Everything `emoarc eval` reports: per dataset, one block of metrics with a column per scorer (the model,
//! optionally a comparison head, text length, and TF-IDF + a linear model fitted on that dataset's own train
//! split), bootstrap 95% intervals for the first column's headline numbers.
//!
//! Datasets:
//! - **own test** (`data/corpus`, test split; labels 0.25-1): presence ROC-AUC and average precision (present =
//!   label > 0), macro-F1 at per-category thresholds chosen on the corpus dev split, Spearman among present
//!   cells, macro Spearman over all cells (with its ceiling), ordering of the rungs of the test split's
//!   ladders (lines sharing a `group`), of its neighbour sets, of its closing sets (by the well-being their
//!   labels give) and of `data/intensity-pairs.jsonl`,
//!   calibration (mean output per labelled level, least-squares slopes), false positives on `data/neutral.txt`;
//! - **relabelled GoEmotions test** (`data/relabels`: GoEmotions train comments labelled on all 40 categories
//!   at the corpus's levels, test split by id): the own test's metrics, without pairs and neutral lines;
//! - **GoEmotions dev**, **XED dev** (mapped by `data/label-maps/`): AUC, AP, and macro-F1 with two-fold
//!   thresholds (chosen on one half of the rows, a fixed hash of the row index, reported on the other, and
//!   vice versa, averaged); and the share of rows labelled only neutral with any of the 40 outputs above 0.5;
//! - **EmoBank dev**: valence and arousal Pearson, from the model's learned affect output when it has one and
//!   from the documented table ([`AffectModel`]) over its intensities;
//! - **Empathic Reactions dev**: Pearson of the mapped categories (Affection, Distress) with the writers'
//!   empathy and distress ratings.
//!
//! Macro averages leave out categories with fewer than [`MIN_POSITIVES`] positives and say how many they used.
//! Own data files are required; a missing public dataset folder is a warning and the dataset is skipped.

use super::datasets::{self, PresenceSet, RatingSet};
use super::labelmap::{LabelMap, Presence};
use super::metrics::{
    average_precision_sorted, best_threshold, fold_of, least_squares_slope, mean_of, pearson_weighted,
    roc_auc_sorted, Bootstrap, Confusion,
};
use super::tfidf::{fit_logistic, fit_ridge, SgdConfig, SparseVec, Tfidf};
use super::{spearman, EvalError};
use crate::data::{self, Corpus, Example, IntensityPair, Split, SCALE};
use crate::estimator::{Estimate, Estimator, InContext};
use crate::intensities::Intensities;
use crate::taxonomy::{Category, NUM_CATEGORIES};
use crate::trajectory::{Affect, AffectModel};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Categories with fewer positives in a set are left out of macro averages.
pub const MIN_POSITIVES: usize = 10;
/// Spearman given presence needs at least this many present cells (and more than one level) per category.
pub const MIN_PRESENT_CELLS: usize = 8;
/// Terms must appear in this many train documents to become TF-IDF features.
pub const TFIDF_MIN_DF: usize = 2;
/// Ridge penalty of the TF-IDF regressions.
pub const RIDGE_ALPHA: f64 = 1.0;
const RIDGE_MAX_ITER: usize = 300;
/// The first part of a neighbour set's group name (`rnb-q1-hostile-3`); other groups are ladders.
pub const NEIGHBOUR_SET_KIND: &str = "rnb";
/// The first part of a closing set's group name (`rcs-c1-4`): the last words of one situation's support
/// conversation, some where it helped and some where the speaker gave up politely (`data/GUIDE.md`).
pub const CLOSING_SET_KIND: &str = "rcs";
/// Two closings of a set make a pair when the well-being of their labels (the documented table, 0-100)
/// differs by at least this much: the row asks what `terminal` asks of the last turn, which one reads better.
pub const CLOSING_MIN_GAP: f32 = 10.0;

/// The folder of the exchange sets under the data folder: texts labelled as read after the message they answer.
pub const EXCHANGES_DIR: &str = "exchanges";

/// One text's outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The 40 category intensities, each 0 to 1.
    pub intensities: Intensities,
    /// The model's learned valence/arousal output, when it has one.
    pub affect: Option<Affect>,
}

/// Anything that turns texts into intensities (a loaded head, usually).
pub trait TextScorer {
    /// Scores `texts`, one [`Scored`] per text in the same order; an error stops the evaluation.
    fn score(&self, texts: &[&str]) -> Result<Vec<Scored>, EvalError>;

    /// Scores each text read after the message it answers; scorers that cannot read context score the texts
    /// alone (the default).
    fn score_in_context(&self, items: &[InContext]) -> Result<Vec<Scored>, EvalError> {
        self.score(&items.iter().map(|i| i.text).collect::<Vec<_>>())
    }
}

/// The learned affect output of an estimate (`None` for heads without one).
fn learned_affect(e: &Estimate) -> Option<Affect> {
    e.affect
}

impl TextScorer for Estimator {
    fn score(&self, texts: &[&str]) -> Result<Vec<Scored>, EvalError> {
        Ok(self
            .estimate_detailed(texts)?
            .into_iter()
            .map(|e| Scored {
                intensities: e.intensities,
                affect: learned_affect(&e),
            })
            .collect())
    }

    fn score_in_context(&self, items: &[InContext]) -> Result<Vec<Scored>, EvalError> {
        self.estimate_in_context(items)?
            .into_iter()
            .enumerate()
            .map(|(index, r)| match r {
                Ok(e) => Ok(Scored {
                    intensities: e.intensities,
                    affect: learned_affect(&e),
                }),
                Err(reason) => Err(crate::Error::BadInput { index, reason }.into()),
            })
            .collect()
    }
}

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The project's data folder (corpus/, intensity-pairs.jsonl, neutral.txt, label-maps/).
    pub data: PathBuf,
    /// The public datasets' folder (goemotions/, emobank/, xed/, empathic_reactions/).
    pub datasets: PathBuf,
    /// Resamples and seed of the 95% intervals (`resamples` 0 reports no intervals).
    pub bootstrap: Bootstrap,
    /// Fit and report the TF-IDF baseline.
    pub tfidf: bool,
}

/// Something worth telling the user while the suite runs. More kinds may come, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// What is being done now.
    Step(&'a str),
    /// A dataset was skipped or a label is not in its map.
    Warning(&'a str),
}

/// One value of one column, with its interval when bootstrapped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// The column (one of [`SuiteReport::columns`]).
    pub column: String,
    /// The metric's value; `None` when it is undefined for this column (no positives, a constant output).
    pub value: Option<f64>,
    /// The bootstrap 95% percentile interval `[low, high]`, for the first column's headline metrics only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<[f64; 2]>,
}

/// One metric across the columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    /// Stable name for machines (`auc`, `f1`, `pair_order`, ...).
    pub key: String,
    /// What the row measures, for people.
    pub metric: String,
    /// How many categories, cells or rows it rests on, and how it was computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// One cell per column, in the order of [`SuiteReport::columns`].
    pub values: Vec<Cell>,
}

impl MetricRow {
    /// The cell of a column.
    pub fn cell(&self, column: &str) -> Option<&Cell> {
        self.values.iter().find(|c| c.column == column)
    }
}

/// Per category and column: AUC, AP and F1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryCell {
    /// The column (one of [`SuiteReport::columns`]).
    pub column: String,
    /// Presence ROC-AUC, 0 to 1 (0.5 is chance); `None` without both positives and negatives.
    pub auc: Option<f64>,
    /// Average precision, 0 to 1 (chance is the share of positives); `None` without positives.
    pub ap: Option<f64>,
    /// F1 at the chosen threshold (dev-chosen, or two-fold where the dataset has no dev split), 0 to 1;
    /// `None` without positives.
    pub f1: Option<f64>,
}

/// One scored category of a presence dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryRow {
    /// The scored category.
    pub category: Category,
    /// Rows where it is present ([`Presence::Positive`]).
    pub positives: usize,
    /// Rows where it is absent ([`Presence::Negative`]); skipped rows count in neither.
    pub negatives: usize,
    /// Whether it counts in the macro averages (enough positives).
    pub in_macro: bool,
    /// One cell per column, in the order of [`SuiteReport::columns`].
    pub values: Vec<CategoryCell>,
}

/// One dataset's block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetReport {
    /// "own test", "GoEmotions dev", ...
    pub name: String,
    /// The file(s) read.
    pub source: String,
    /// Rows (texts) evaluated.
    pub rows: usize,
    /// Facts a reader needs to interpret the block (label scale, threshold method, rows dropped).
    pub notes: Vec<String>,
    /// The dataset's metrics, one row each.
    pub metrics: Vec<MetricRow>,
    /// Per category metrics, for presence datasets only (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_category: Vec<CategoryRow>,
}

impl DatasetReport {
    /// The metric row with this [`MetricRow::key`], if the dataset has it.
    pub fn metric(&self, key: &str) -> Option<&MetricRow> {
        self.metrics.iter().find(|m| m.key == key)
    }
}

/// Everything `emoarc eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteReport {
    /// Column names, in order: the scorers, then `length`, then `tf-idf` when fitted.
    pub columns: Vec<String>,
    /// Bootstrap resamples behind the intervals (0: none).
    pub bootstrap_resamples: usize,
    /// The bootstrap's seed, so the intervals can be reproduced.
    pub bootstrap_seed: u64,
    /// Datasets skipped and labels missing from a label map, as reported through [`Event::Warning`].
    pub warnings: Vec<String>,
    /// One block per dataset evaluated, own test first.
    pub datasets: Vec<DatasetReport>,
}

/// The relabelled GoEmotions comments, under the data folder.
pub const RELABELS_FILE: &str = "relabels/goemotions-train.jsonl";

/// Length baseline's column name.
pub const LENGTH: &str = "length";
/// TF-IDF baseline's column name.
pub const TFIDF: &str = "tf-idf";

/// Runs every evaluation. `scorers` are the model columns, the first one bootstrapped (names must be
/// distinct and differ from [`LENGTH`] and [`TFIDF`]).
pub fn run(
    cfg: &SuiteConfig,
    scorers: &[(&str, &dyn TextScorer)],
    on_event: &mut dyn FnMut(Event),
) -> Result<SuiteReport, EvalError> {
    let mut columns: Vec<String> = scorers.iter().map(|(n, _)| n.to_string()).collect();
    columns.push(LENGTH.into());
    if cfg.tfidf {
        columns.push(TFIDF.into());
    }
    let mut report = SuiteReport {
        columns,
        bootstrap_resamples: cfg.bootstrap.resamples,
        bootstrap_seed: cfg.bootstrap.seed,
        warnings: Vec::new(),
        datasets: Vec::new(),
    };
    let warn = |report: &mut SuiteReport, on_event: &mut dyn FnMut(Event), w: String| {
        on_event(Event::Warning(&w));
        report.warnings.push(w);
    };

    // Own data: required.
    let own = OwnData::load(&cfg.data)?;
    report.datasets.push(own_block(cfg, &own, scorers, on_event)?);
    let exchanges = cfg.data.join(EXCHANGES_DIR);
    if exchanges.is_dir() {
        report.datasets.push(exchange_block(cfg, &exchanges, scorers, on_event)?);
    } else {
        warn(&mut report, on_event, format!("{} not found: exchange sets skipped", exchanges.display()));
    }

    // Public datasets: skipped with a warning when their folder is missing.
    let folder = |name: &str| cfg.datasets.join(name);
    let map = |name: &str| LabelMap::load(&cfg.data.join("label-maps").join(format!("{name}.tsv")));
    for (dir_name, title) in [
        ("goemotions", "GoEmotions"),
        ("emobank", "EmoBank"),
        ("xed", "XED"),
        ("empathic_reactions", "Empathic Reactions"),
    ] {
        let dir = folder(dir_name);
        if !dir.is_dir() {
            warn(&mut report, on_event, format!("{} not found: {title} dev skipped", dir.display()));
            continue;
        }
        let block = match dir_name {
            "goemotions" | "xed" => {
                let m = map(dir_name)?;
                let load = |split: &str| {
                    if dir_name == "xed" {
                        datasets::xed(&dir, split, &m)
                    } else {
                        datasets::goemotions(&dir, split, &m)
                    }
                };
                let (dev, unmapped) = load("dev")?;
                for label in unmapped {
                    warn(&mut report, on_event, format!("{title}: label {label:?} has no line in {}", m.path.display()));
                }
                let train = if cfg.tfidf { Some(load("train")?.0) } else { None };
                presence_dataset_block(cfg, &dev, train.as_ref(), scorers, on_event)?
            }
            "emobank" => {
                let dev = datasets::emobank(&dir, "dev")?;
                let train = if cfg.tfidf { Some(datasets::emobank(&dir, "train")?) } else { None };
                emobank_block(cfg, &dev, train.as_ref(), scorers, on_event)?
            }
            _ => {
                let m = map(dir_name)?;
                let dev = datasets::empathic(&dir, "dev", &m)?;
                let train = if cfg.tfidf { Some(datasets::empathic(&dir, "train", &m)?) } else { None };
                empathic_block(cfg, &dev, train.as_ref(), scorers, on_event)?
            }
        };
        report.datasets.push(block);
        let relabels = cfg.data.join(RELABELS_FILE);
        if dir_name == "goemotions" && relabels.is_file() {
            let relabelled = OwnData::relabelled(&cfg.data, &dir)?;
            report.datasets.push(own_block(cfg, &relabelled, scorers, on_event)?);
        } else if dir_name == "goemotions" {
            warn(&mut report, on_event, format!("{} not found: relabelled GoEmotions test skipped", relabels.display()));
        }
    }
    Ok(report)
}

// ------------------------------------------------------------------------------------------- exchange sets

/// Every line of the `*.jsonl` files of `dir`; a line that does not parse is an error naming it.
fn load_clean(dir: &Path) -> Result<Corpus, EvalError> {
    clean(Corpus::load_dir(dir)?, dir, " (run emoarc data check)")
}

/// The corpus read from `path` if none of its lines failed, else an error naming the first bad line.
fn clean(corpus: Corpus, path: &Path, advice: &str) -> Result<Corpus, EvalError> {
    match corpus.problems.first() {
        Some(p) => Err(EvalError::File {
            path: path.to_path_buf(),
            reason: format!("{} bad lines, the first: {p}{advice}", corpus.problems.len()),
        }),
        None => Ok(corpus),
    }
}

/// The exchange sets' test split (`data/exchanges`, `data/GUIDE.md`): in each set one situation, a helpful and a
/// poor reply, and closings labelled as read after the reply they answer, among them one polite line labelled
/// twice. Pairs are ordered by the well-being their labels give through the affect table, as `terminal` reads a
/// last turn (gap at least [`CLOSING_MIN_GAP`]). Each model column is read twice: with the reply, and the text
/// alone (which cannot order the same words after two replies: those pairs tie, and a tie is not right).
fn exchange_block(
    cfg: &SuiteConfig,
    dir: &Path,
    scorers: &[(&str, &dyn TextScorer)],
    on_event: &mut dyn FnMut(Event),
) -> Result<DatasetReport, EvalError> {
    let corpus = load_clean(dir)?;
    let test = corpus.split(Split::Test);
    let affect = AffectModel::default();
    let gold_wb: Vec<f32> = test.iter().map(|e| affect.affect(&e.labels).wellbeing).collect();
    let mut sets: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in test.iter().enumerate() {
        sets.entry(e.group.as_deref().unwrap_or(&e.id)).or_default().push(i);
    }
    // (reads worse, reads better) by the labels; `same` marks pairs of one text after two messages.
    let mut pairs: Vec<(usize, usize, bool)> = Vec::new();
    for lines in sets.values() {
        for &a in lines {
            for &b in lines {
                if gold_wb[b] - gold_wb[a] >= CLOSING_MIN_GAP {
                    pairs.push((a, b, test[a].text == test[b].text));
                }
            }
        }
    }
    let same: Vec<(usize, usize)> = pairs.iter().filter(|p| p.2).map(|&(a, b, _)| (a, b)).collect();
    let all: Vec<(usize, usize)> = pairs.iter().map(|&(a, b, _)| (a, b)).collect();
    let items: Vec<InContext> = test.iter().map(|e| InContext::new(&e.text, e.after.as_deref())).collect();
    let texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let wellbeing = |scored: Vec<Scored>| -> Vec<f64> {
        scored.iter().map(|s| f64::from(affect.affect(&s.intensities).wellbeing)).collect()
    };
    // Per column: well-being read with the reply, and read alone.
    let mut read: Vec<(String, bool, Vec<f64>, Vec<f64>)> = Vec::new();
    for (k, (name, scorer)) in scorers.iter().enumerate() {
        on_event(Event::Step(&format!("exchange sets: scoring {} texts with {name}, with and without the reply", test.len())));
        read.push((name.to_string(), k == 0, wellbeing(scorer.score_in_context(&items)?), wellbeing(scorer.score(&texts)?)));
    }
    let length: Vec<f64> = texts.iter().map(|t| chars(t)).collect();
    read.push((LENGTH.into(), false, length.clone(), length));
    let share = |pairs: &[(usize, usize)], wb: &[f64], w: Option<&[u32]>| -> Option<f64> {
        let wt = |i: usize| w.map_or(1.0, |w| f64::from(w[i]));
        let n: f64 = (0..pairs.len()).map(wt).sum();
        // A fold from +0.0: an empty float sum is -0.0, which would print as "-0.000".
        (n > 0.0).then(|| (0..pairs.len()).filter(|&i| wb[pairs[i].1] > wb[pairs[i].0]).fold(0.0, |s, i| s + wt(i)) / n)
    };
    let boot = &cfg.bootstrap;
    let row = |key: &str, metric: &str, pairs: &[(usize, usize)], with_reply: bool| MetricRow {
        key: key.into(),
        metric: metric.into(),
        detail: Some(format!("{} pairs in {} sets", pairs.len(), sets.len())),
        values: read
            .iter()
            .map(|(name, ci, with, alone)| {
                let wb = if with_reply { with } else { alone };
                Cell {
                    column: name.clone(),
                    value: share(pairs, wb, None),
                    ci: (*ci && with_reply).then(|| boot.interval(pairs.len(), |w| share(pairs, wb, Some(w)))).flatten(),
                }
            })
            .collect(),
    };
    // TF-IDF reads a text alone, like the alone rows: not fitted here, its cells are empty.
    let row = |key: &str, metric: &str, pairs: &[(usize, usize)], with_reply: bool| {
        let mut r = row(key, metric, pairs, with_reply);
        if cfg.tfidf {
            r.values.push(Cell { column: TFIDF.into(), value: None, ci: None });
        }
        r
    };
    let metrics = vec![
        row("context_pairs", "one text after two replies: it reads better after the one its labels say", &same, true),
        row("context_pairs_alone", "the same pairs, the text read alone (ties are wrong)", &same, false),
        row("exchange_order", "all closings of a set: the one whose labels read better scores higher", &all, true),
        row("exchange_order_alone", "the same pairs, each closing read alone", &all, false),
    ];
    Ok(DatasetReport {
        name: "exchange sets".into(),
        source: format!("{} (test split)", dir.display()),
        rows: test.len(),
        notes: vec![
            format!(
                "{} test, {} dev, {} train lines; each closing read after the reply it answers",
                test.len(),
                corpus.split(Split::Dev).len(),
                corpus.split(Split::Train).len()
            ),
            "ordered by the well-being (affect table) the labels give; tf-idf is not fitted here (it reads a text alone)"
                .into(),
        ],
        metrics,
        per_category: Vec::new(),
    })
}

// ------------------------------------------------------------------------------------------------ own data

/// The project's own evaluation data, or the relabelled comments read the same way.
pub struct OwnData {
    /// The block's name in the report: "own test".
    pub name: String,
    /// What progress messages call it: "own data".
    pub label: String,
    /// The authored corpus (`corpus/*.jsonl`): its test split is scored, dev chooses thresholds, train fits
    /// the TF-IDF baseline.
    pub corpus: Corpus,
    /// `intensity-pairs.jsonl` (none for the relabelled comments).
    pub pairs: Vec<IntensityPair>,
    /// `neutral.txt`, one utterance per entry (none for the relabelled comments).
    pub neutral: Vec<String>,
    /// Where the corpus was read from, for the report's `source`.
    pub corpus_dir: PathBuf,
    /// Where the pairs were read from.
    pub pairs_path: PathBuf,
    /// Where the neutral utterances were read from.
    pub neutral_path: PathBuf,
}

impl OwnData {
    /// Loads `corpus/`, `intensity-pairs.jsonl` and `neutral.txt` from `data`; any missing file or bad line is
    /// an error.
    pub fn load(data: &Path) -> Result<OwnData, EvalError> {
        let corpus_dir = data.join("corpus");
        let corpus = load_clean(&corpus_dir)?;
        let pairs_path = data.join("intensity-pairs.jsonl");
        let neutral_path = data.join("neutral.txt");
        Ok(OwnData {
            name: "own test".into(),
            label: "own data".into(),
            pairs: data::load_pairs(&pairs_path)?,
            neutral: data::load_lines(&neutral_path)?,
            corpus,
            corpus_dir,
            pairs_path,
            neutral_path,
        })
    }
}

impl OwnData {
    /// The relabelled GoEmotions comments (`data/relabels/goemotions-train.jsonl`, `data/GUIDE.md`) joined with
    /// their texts from `goemotions` (the dataset's folder): real comments labelled on all 40 categories at the
    /// corpus's levels, split by their ids as training splits them. No pairs and no neutral lines of their own.
    pub fn relabelled(data: &Path, goemotions: &Path) -> Result<OwnData, EvalError> {
        let path = data.join(RELABELS_FILE);
        let bytes = datasets::read(&path)?;
        let texts = datasets::goemotions_comments(goemotions, "train")?;
        let corpus = clean(Corpus::relabelled(&path.display().to_string(), bytes.as_bytes(), &texts), &path, "")?;
        Ok(OwnData {
            name: "relabelled GoEmotions test".into(),
            label: "relabelled GoEmotions".into(),
            corpus,
            pairs: Vec::new(),
            neutral: Vec::new(),
            corpus_dir: path,
            pairs_path: PathBuf::new(),
            neutral_path: PathBuf::new(),
        })
    }
}

/// A column's outputs on the own data.
struct OwnColumn {
    name: String,
    ci: bool,
    /// Outputs are intensities on the labels' scale (calibration and the neutral rate make sense).
    calibrated: bool,
    /// Presence scores [category][row] on test and dev.
    presence_test: Vec<Vec<f64>>,
    presence_dev: Vec<Vec<f64>>,
    /// Intensity outputs [category][row] on test.
    intensity_test: Vec<Vec<f64>>,
    /// (weaker, stronger) on each pair's category.
    pairs: Vec<(f64, f64)>,
    /// Largest output per neutral line.
    neutral_max: Vec<f64>,
}

fn by_category(rows: &[Intensities]) -> Vec<Vec<f64>> {
    (0..NUM_CATEGORIES)
        .map(|k| rows.iter().map(|r| f64::from(r.as_slice()[k])).collect())
        .collect()
}

fn chars(text: &str) -> f64 {
    text.chars().count() as f64
}

fn own_block(
    cfg: &SuiteConfig,
    own: &OwnData,
    scorers: &[(&str, &dyn TextScorer)],
    on_event: &mut dyn FnMut(Event),
) -> Result<DatasetReport, EvalError> {
    let test = own.corpus.split(Split::Test);
    let dev = own.corpus.split(Split::Dev);
    let texts: Vec<&str> = test
        .iter()
        .chain(&dev)
        .map(|e| e.text.as_str())
        .chain(own.pairs.iter().flat_map(|p| [p.weaker.as_str(), p.stronger.as_str()]))
        .chain(own.neutral.iter().map(String::as_str))
        .collect();
    let (nt, nd, np) = (test.len(), dev.len(), own.pairs.len());
    let mut columns = Vec::new();
    for (k, (name, scorer)) in scorers.iter().enumerate() {
        on_event(Event::Step(&format!("{}: scoring {} texts with {name}", own.label, texts.len())));
        let out: Vec<Intensities> = scorer.score(&texts)?.into_iter().map(|s| s.intensities).collect();
        let (t, rest) = out.split_at(nt);
        let (d, rest) = rest.split_at(nd);
        let (p, n) = rest.split_at(np * 2);
        let test_scores = by_category(t);
        columns.push(OwnColumn {
            name: name.to_string(),
            ci: k == 0,
            calibrated: true,
            presence_test: test_scores.clone(),
            presence_dev: by_category(d),
            intensity_test: test_scores,
            pairs: own
                .pairs
                .iter()
                .zip(p.chunks(2))
                .map(|(pair, s)| (f64::from(s[0][pair.category]), f64::from(s[1][pair.category])))
                .collect(),
            neutral_max: n.iter().map(|r| f64::from(r.max().1)).collect(),
        });
    }
    let len_rows = |rows: &[&Example]| -> Vec<Vec<f64>> {
        let l: Vec<f64> = rows.iter().map(|e| chars(&e.text)).collect();
        vec![l; NUM_CATEGORIES]
    };
    columns.push(OwnColumn {
        name: LENGTH.into(),
        ci: false,
        calibrated: false,
        presence_test: len_rows(&test),
        presence_dev: len_rows(&dev),
        intensity_test: len_rows(&test),
        pairs: own.pairs.iter().map(|p| (chars(&p.weaker), chars(&p.stronger))).collect(),
        neutral_max: Vec::new(),
    });
    if cfg.tfidf {
        on_event(Event::Step(&format!("{}: fitting TF-IDF baselines on the train split", own.label)));
        let train = own.corpus.split(Split::Train);
        let train_texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
        let v = Tfidf::fit(&train_texts, TFIDF_MIN_DF);
        let x = v.transform_all(&train_texts);
        let all = v.transform_all(&texts);
        let (xt, rest) = all.split_at(nt);
        let (xd, rest) = rest.split_at(nd);
        let (xp, xn) = rest.split_at(np * 2);
        let fitted: Vec<(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)> = (0..NUM_CATEGORIES)
            .into_par_iter()
            .map(|k| {
                let present: Vec<bool> = train.iter().map(|e| e.labels.as_slice()[k] > 0.0).collect();
                let level: Vec<f64> = train.iter().map(|e| f64::from(e.labels.as_slice()[k])).collect();
                let logistic = fit_logistic(&x, &present, v.dim(), &SgdConfig::default());
                let ridge = fit_ridge(&x, &level, v.dim(), RIDGE_ALPHA, RIDGE_MAX_ITER);
                let prob = |rows: &[SparseVec]| rows.iter().map(|r| f64::from(logistic.probability(r))).collect();
                let reg = |rows: &[SparseVec]| rows.iter().map(|r| f64::from(ridge.decision(r))).collect();
                (prob(xt), prob(xd), reg(xt), reg(xp), reg(xn))
            })
            .collect();
        let mut neutral_max = vec![f64::NEG_INFINITY; xn.len()];
        for f in &fitted {
            for (m, v) in neutral_max.iter_mut().zip(&f.4) {
                *m = m.max(*v);
            }
        }
        columns.push(OwnColumn {
            name: TFIDF.into(),
            ci: false,
            calibrated: true,
            presence_test: fitted.iter().map(|f| f.0.clone()).collect(),
            presence_dev: fitted.iter().map(|f| f.1.clone()).collect(),
            intensity_test: fitted.iter().map(|f| f.2.clone()).collect(),
            pairs: own
                .pairs
                .iter()
                .enumerate()
                .map(|(i, p)| (fitted[p.category.index()].3[2 * i], fitted[p.category.index()].3[2 * i + 1]))
                .collect(),
            neutral_max,
        });
    }
    on_event(Event::Step(&format!("{}: metrics and bootstrap", own.label)));
    let test_set = PresenceSet::from_examples(&own.name, &own.corpus_dir.display().to_string(), &test);
    let dev_set = PresenceSet::from_examples("dev", "", &dev);
    let presence_cols: Vec<PresenceColumn> = columns
        .iter()
        .map(|c| PresenceColumn {
            name: c.name.clone(),
            ci: c.ci,
            scores: c.presence_test.clone(),
            dev_scores: Some(c.presence_dev.clone()),
        })
        .collect();
    let (mut metrics, per_category) = presence_metrics(
        &test_set,
        Some(&dev_set),
        &presence_cols,
        &cfg.bootstrap,
        "thresholds per category chosen on the dev split",
    );
    metrics.extend(intensity_metrics(own, &test, &columns, &cfg.bootstrap));
    let longer = own.pairs.iter().filter(|p| chars(&p.stronger) > chars(&p.weaker)).count();
    let mut notes =
        vec![format!("{} test, {} dev, {} train texts", test.len(), dev.len(), own.corpus.split(Split::Train).len())];
    if !own.pairs.is_empty() {
        notes.push(format!(
            "{} intensity pairs ({}): the stronger text is the longer one in {longer}",
            own.pairs.len(),
            own.pairs_path.display()
        ));
    }
    if !own.neutral.is_empty() {
        notes.push(format!("{} neutral lines ({})", own.neutral.len(), own.neutral_path.display()));
    }
    Ok(DatasetReport {
        name: own.name.clone(),
        source: format!("{} (test split; thresholds from the dev split)", own.corpus_dir.display()),
        rows: test.len(),
        notes,
        metrics,
        per_category,
    })
}

/// Spearman given presence, all-cells Spearman, pair ordering, calibration and the neutral rate.
fn intensity_metrics(own: &OwnData, test: &[&Example], cols: &[OwnColumn], boot: &Bootstrap) -> Vec<MetricRow> {
    let gold: Vec<Vec<f32>> = (0..NUM_CATEGORIES)
        .map(|k| test.iter().map(|e| e.labels.as_slice()[k]).collect())
        .collect();
    // Categories where Spearman given presence is defined: enough present cells at more than one level.
    let present_rows: Vec<Vec<usize>> = gold
        .iter()
        .map(|g| (0..g.len()).filter(|&i| g[i] > 0.0).collect())
        .collect();
    let qualified: Vec<usize> = (0..NUM_CATEGORIES)
        .filter(|&k| {
            let rows = &present_rows[k];
            rows.len() >= MIN_PRESENT_CELLS && rows.iter().any(|&i| gold[k][i] != gold[k][rows[0]])
        })
        .collect();
    let spearman_present = |scores: &[Vec<f64>], w: Option<&[u32]>| -> Option<f64> {
        mean_of(qualified.iter().map(|&k| {
            let (mut p, mut g) = (Vec::new(), Vec::new());
            for &i in &present_rows[k] {
                for _ in 0..w.map_or(1, |w| w[i]) {
                    p.push(scores[k][i] as f32);
                    g.push(gold[k][i]);
                }
            }
            spearman(&p, &g)
        }))
    };
    let ceiling = mean_of((0..NUM_CATEGORIES).map(|k| {
        let oracle: Vec<f32> = gold[k]
            .iter()
            .enumerate()
            .map(|(i, g)| g + super::jitter(i, Category::ALL[k]))
            .collect();
        spearman(&oracle, &gold[k])
    }));
    let pair_share = |pairs: &[(f64, f64)], w: Option<&[u32]>| -> Option<f64> {
        let wt = |i: usize| w.map_or(1.0, |w| f64::from(w[i]));
        let n: f64 = (0..pairs.len()).map(wt).sum();
        (n > 0.0).then(|| (0..pairs.len()).filter(|&i| pairs[i].1 > pairs[i].0).map(wt).sum::<f64>() / n)
    };
    // The share of (weaker, stronger) pairs a column orders right, with an interval for the first column.
    let ordered_share = |c: &OwnColumn, pairs: &[(f64, f64)]| {
        let ci = c.ci.then(|| boot.interval(pairs.len(), |w| pair_share(pairs, Some(w)))).flatten();
        (pair_share(pairs, None), ci)
    };
    let mut rows = Vec::new();
    let mut row = |key: &str, metric: &str, detail: Option<String>, f: &dyn Fn(&OwnColumn) -> (Option<f64>, Option<[f64; 2]>)| {
        rows.push(MetricRow {
            key: key.into(),
            metric: metric.into(),
            detail,
            values: cols
                .iter()
                .map(|c| {
                    let (value, ci) = f(c);
                    Cell { column: c.name.clone(), value, ci }
                })
                .collect(),
        });
    };
    row(
        "spearman_present",
        "Spearman among present cells, macro",
        Some(format!(
            "{} of 40 categories with >= {MIN_PRESENT_CELLS} present cells at > 1 level",
            qualified.len()
        )),
        &|c| {
            let v = spearman_present(&c.intensity_test, None);
            let ci = c.ci.then(|| boot.interval(test.len(), |w| spearman_present(&c.intensity_test, Some(w)))).flatten();
            (v, ci)
        },
    );
    row(
        "spearman_all",
        "Spearman over all cells, macro (mostly presence)",
        Some(format!("ceiling for continuous output {:.3}", ceiling.unwrap_or(f64::NAN))),
        &|c| {
            let v = mean_of((0..NUM_CATEGORIES).map(|k| {
                let p: Vec<f32> = c.intensity_test[k].iter().map(|&v| v as f32).collect();
                spearman(&p, &gold[k])
            }));
            (v, None)
        },
    );
    // Lines that tell one situation several times share a `group`. Ladders tell it at several levels of one
    // category; neighbour sets (groups named `rnb-...`, `data/GUIDE.md`) tell it so that a different category
    // dominates each time. Every two lines of a group whose labels of a category differ make a pair on that
    // category; only the feeling differs within a group, so topic and length cannot order them.
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in test.iter().enumerate() {
        if let Some(g) = &e.group {
            groups.entry(g).or_default().push(i);
        }
    }
    fn kind_of(group: &str) -> &str {
        group.split('-').next().unwrap_or_default()
    }
    let (neighbours, rest): (Vec<_>, Vec<_>) = groups.iter().partition(|(g, _)| kind_of(g) == NEIGHBOUR_SET_KIND);
    let (closings, ladders): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(g, _)| kind_of(g) == CLOSING_SET_KIND);
    for (key, label, what, sets) in [
        ("ladder_order", "ladder rungs: the higher-labelled of two scores higher", "ladders", &ladders),
        ("neighbour_order", "neighbour sets: the higher-labelled of two scores higher", "sets", &neighbours),
    ] {
        // (weaker line, stronger line, category) for every ordered pair of lines that a category's labels separate.
        let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
        for (_, lines) in sets.iter() {
            for &a in lines.iter() {
                for &b in lines.iter() {
                    pairs.extend((0..NUM_CATEGORIES).filter(|&k| gold[k][b] > gold[k][a]).map(|k| (a, b, k)));
                }
            }
        }
        if !pairs.is_empty() {
            row(key, label, Some(format!("{} pairs in {} {what}", pairs.len(), sets.len())), &|c| {
                let scored: Vec<(f64, f64)> =
                    pairs.iter().map(|&(a, b, k)| (c.intensity_test[k][a], c.intensity_test[k][b])).collect();
                ordered_share(c, &scored)
            });
        }
    }
    // Closing sets are ordered by the well-being their labels give through the affect table (the reading
    // `terminal` rewards), not per category: a helped closing may name a residual worry, a resigned one may thank.
    let affect = AffectModel::default();
    let mut closing_pairs: Vec<(usize, usize)> = Vec::new();
    for (_, lines) in &closings {
        let gold_wb = |i: usize| affect.affect(&test[i].labels).wellbeing;
        for &a in lines.iter() {
            for &b in lines.iter() {
                if gold_wb(b) - gold_wb(a) >= CLOSING_MIN_GAP {
                    closing_pairs.push((a, b));
                }
            }
        }
    }
    if !closing_pairs.is_empty() {
        row(
            "closing_order",
            "closing sets: the closing whose labels read better scores higher well-being",
            Some(format!("{} pairs in {} sets", closing_pairs.len(), closings.len())),
            &|c| {
                let wb = |i: usize| {
                    let x = Intensities::new(std::array::from_fn(|k| c.intensity_test[k][i] as f32));
                    f64::from(affect.affect(&x).wellbeing)
                };
                ordered_share(c, &closing_pairs.iter().map(|&(a, b)| (wb(a), wb(b))).collect::<Vec<_>>())
            },
        );
    }
    if !own.pairs.is_empty() {
        row(
            "pair_order",
            "intensity pairs: stronger text scores higher",
            Some(format!("{} pairs", own.pairs.len())),
            &|c| ordered_share(c, &c.pairs),
        );
    }
    // Calibration: output on label, over all cells and over present cells.
    let cells = |c: &OwnColumn, present_only: bool| -> (Vec<f64>, Vec<f64>) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for k in 0..NUM_CATEGORIES {
            for (i, &g) in gold[k].iter().enumerate() {
                if !present_only || g > 0.0 {
                    x.push(f64::from(g));
                    y.push(c.intensity_test[k][i]);
                }
            }
        }
        (x, y)
    };
    let n_cells = test.len() * NUM_CATEGORIES;
    let n_present: usize = present_rows.iter().map(Vec::len).sum();
    row(
        "slope_all",
        "calibration slope (output on label), all cells",
        Some(format!("{n_cells} cells")),
        &|c| (c.calibrated.then(|| { let (x, y) = cells(c, false); least_squares_slope(&x, &y) }).flatten(), None),
    );
    row(
        "slope_present",
        "calibration slope, present cells",
        Some(format!("{n_present} cells")),
        &|c| (c.calibrated.then(|| { let (x, y) = cells(c, true); least_squares_slope(&x, &y) }).flatten(), None),
    );
    for level in SCALE {
        let n = gold.iter().flatten().filter(|&&g| g == level).count();
        row(
            &format!("mean_at_{level}"),
            &format!("mean output where label = {level}"),
            Some(format!("{n} cells")),
            &|c| {
                if !c.calibrated {
                    return (None, None);
                }
                let mut values = Vec::new();
                for k in 0..NUM_CATEGORIES {
                    for (i, &g) in gold[k].iter().enumerate() {
                        if g == level {
                            values.push(Some(c.intensity_test[k][i]));
                        }
                    }
                }
                (mean_of(values), None)
            },
        );
    }
    if own.neutral.is_empty() {
        return rows;
    }
    row(
        "neutral_fp",
        "neutral lines with any output > 0.5",
        Some(format!("{} lines", own.neutral.len())),
        &|c| {
            let v = (c.calibrated && !c.neutral_max.is_empty())
                .then(|| c.neutral_max.iter().filter(|&&m| m > 0.5).count() as f64 / c.neutral_max.len() as f64);
            (v, None)
        },
    );
    rows
}

// ------------------------------------------------------------------------------------------- presence sets

/// A column's presence scores [category][row] (categories as the set scores them), and on the dev set
/// when thresholds come from one.
struct PresenceColumn {
    name: String,
    ci: bool,
    scores: Vec<Vec<f64>>,
    dev_scores: Option<Vec<Vec<f64>>>,
}

/// One category's data for one column, ready for (bootstrapped) metrics.
struct CategoryEval<'a> {
    scores: &'a [f64],
    labels: Vec<bool>,
    /// Rows that are not skipped, ascending by score.
    order: Vec<usize>,
    /// Thresholded prediction per row.
    predicted: Vec<bool>,
}

impl CategoryEval<'_> {
    fn auc(&self, w: Option<&[u32]>) -> Option<f64> {
        roc_auc_sorted(&self.order, self.scores, &self.labels, w)
    }

    fn ap(&self, w: Option<&[u32]>) -> Option<f64> {
        average_precision_sorted(&self.order, self.scores, &self.labels, w)
    }

    /// F1 over the rows (one fold), or the mean over the two folds' F1s.
    fn f1(&self, folds: Option<&[usize]>, w: Option<&[u32]>) -> Option<f64> {
        let mut c = [Confusion::default(), Confusion::default()];
        for &i in &self.order {
            let f = folds.map_or(0, |f| f[i]);
            c[f].add(self.predicted[i], self.labels[i], w.map_or(1.0, |w| f64::from(w[i])));
        }
        match folds {
            None => c[0].f1(),
            Some(_) => mean_of([c[0].f1(), c[1].f1()]),
        }
    }
}

/// Labels, sorted order and thresholded predictions of every scored category for one column.
fn prepare_column<'a>(
    set: &PresenceSet,
    dev: Option<&PresenceSet>,
    folds: Option<&[usize]>,
    c: &'a PresenceColumn,
) -> Vec<CategoryEval<'a>> {
    let n = set.texts.len();
    (0..set.categories.len())
        .into_par_iter()
        .map(|k| {
            let scores = &c.scores[k][..];
            let labels: Vec<bool> = set.labels.iter().map(|r| r[k] == Presence::Positive).collect();
            let kept: Vec<usize> = (0..n).filter(|&i| set.labels[i][k] != Presence::Skipped).collect();
            let mut order = kept.clone();
            order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
            let predicted = match (dev, &c.dev_scores, folds) {
                (Some(dev), Some(ds), _) => {
                    let dk: Vec<usize> =
                        (0..dev.texts.len()).filter(|&i| dev.labels[i][k] != Presence::Skipped).collect();
                    let s: Vec<f64> = dk.iter().map(|&i| ds[k][i]).collect();
                    let l: Vec<bool> = dk.iter().map(|&i| dev.labels[i][k] == Presence::Positive).collect();
                    let t = best_threshold(&s, &l);
                    scores.iter().map(|&v| v >= t).collect()
                }
                (_, _, Some(folds)) => {
                    let threshold_of_fold = |f: usize| {
                        let rows: Vec<usize> = kept.iter().copied().filter(|&i| folds[i] == f).collect();
                        let s: Vec<f64> = rows.iter().map(|&i| scores[i]).collect();
                        let l: Vec<bool> = rows.iter().map(|&i| labels[i]).collect();
                        best_threshold(&s, &l)
                    };
                    // Each half is judged with the threshold chosen on the other.
                    let t = [threshold_of_fold(1), threshold_of_fold(0)];
                    scores.iter().zip(folds).map(|(&v, &f)| v >= t[f]).collect()
                }
                _ => vec![false; n],
            };
            CategoryEval { scores, labels, order, predicted }
        })
        .collect()
}

fn presence_metrics(
    set: &PresenceSet,
    dev: Option<&PresenceSet>,
    cols: &[PresenceColumn],
    boot: &Bootstrap,
    threshold_note: &str,
) -> (Vec<MetricRow>, Vec<CategoryRow>) {
    let n = set.texts.len();
    let folds: Option<Vec<usize>> = dev.is_none().then(|| (0..n).map(fold_of).collect());
    let positives: Vec<usize> = (0..set.categories.len()).map(|k| set.positives(k)).collect();
    let negatives: Vec<usize> = (0..set.categories.len()).map(|k| set.negatives(k)).collect();
    let in_macro: Vec<usize> = (0..set.categories.len())
        .filter(|&k| positives[k] >= MIN_POSITIVES && negatives[k] > 0)
        .collect();
    let used = in_macro.len();
    let scored = set.categories.len();
    let prepared: Vec<Vec<CategoryEval>> = cols.iter().map(|c| prepare_column(set, dev, folds.as_deref(), c)).collect();
    let folds_ref = folds.as_deref();
    type Stat = fn(&CategoryEval, Option<&[usize]>, Option<&[u32]>) -> Option<f64>;
    let stats: [(&str, &str, Stat); 3] = [
        ("auc", "presence ROC-AUC, macro", |c, _, w| c.auc(w)),
        ("ap", "average precision, macro", |c, _, w| c.ap(w)),
        ("f1", "F1 at a per-category threshold, macro", |c, f, w| c.f1(f, w)),
    ];
    let mut rows = Vec::new();
    for (key, metric, stat) in stats {
        let macro_of = |evals: &[CategoryEval], w: Option<&[u32]>| mean_of(in_macro.iter().map(|&k| stat(&evals[k], folds_ref, w)));
        let detail = if key == "f1" {
            format!("{used} of {scored} categories; {threshold_note}")
        } else {
            format!("{used} of {scored} categories (>= {MIN_POSITIVES} positives)")
        };
        rows.push(MetricRow {
            key: key.into(),
            metric: metric.into(),
            detail: Some(detail),
            values: cols
                .iter()
                .zip(&prepared)
                .map(|(c, evals)| Cell {
                    column: c.name.clone(),
                    value: macro_of(evals, None),
                    ci: c.ci.then(|| boot.interval(n, |w| macro_of(evals, Some(w)))).flatten(),
                })
                .collect(),
        });
    }
    let per_category = (0..scored)
        .map(|k| CategoryRow {
            category: set.categories[k],
            positives: positives[k],
            negatives: negatives[k],
            in_macro: in_macro.contains(&k),
            values: cols
                .iter()
                .zip(&prepared)
                .map(|(c, evals)| CategoryCell {
                    column: c.name.clone(),
                    auc: evals[k].auc(None),
                    ap: evals[k].ap(None),
                    f1: evals[k].f1(folds_ref, None),
                })
                .collect(),
        })
        .collect();
    (rows, per_category)
}

/// Fits one TF-IDF logistic regression per scored category on a train set (skipped rows left out) and
/// returns the probabilities on `texts` [category][row].
fn tfidf_presence(train: &PresenceSet, texts: &[&str]) -> Vec<Vec<f64>> {
    let v = Tfidf::fit(&train.texts, TFIDF_MIN_DF);
    let x = v.transform_all(&train.texts);
    let target = v.transform_all(texts);
    (0..train.categories.len())
        .into_par_iter()
        .map(|k| {
            let rows: Vec<usize> = (0..x.len()).filter(|&i| train.labels[i][k] != Presence::Skipped).collect();
            let xs: Vec<SparseVec> = rows.iter().map(|&i| x[i].clone()).collect();
            let ys: Vec<bool> = rows.iter().map(|&i| train.labels[i][k] == Presence::Positive).collect();
            let m = fit_logistic(&xs, &ys, v.dim(), &SgdConfig::default());
            target.iter().map(|r| f64::from(m.probability(r))).collect()
        })
        .collect()
}

fn presence_dataset_block(
    cfg: &SuiteConfig,
    dev: &PresenceSet,
    train: Option<&PresenceSet>,
    scorers: &[(&str, &dyn TextScorer)],
    on_event: &mut dyn FnMut(Event),
) -> Result<DatasetReport, EvalError> {
    let texts: Vec<&str> = dev.texts.iter().map(String::as_str).collect();
    let mut cols = Vec::new();
    // Per scorer, each row's largest output over all 40 categories (for the neutral rows' false positives).
    let mut row_max: Vec<Vec<f32>> = Vec::new();
    for (k, (name, scorer)) in scorers.iter().enumerate() {
        on_event(Event::Step(&format!("{}: scoring {} texts with {name}", dev.name, texts.len())));
        let out: Vec<Intensities> = scorer.score(&texts)?.into_iter().map(|s| s.intensities).collect();
        row_max.push(out.iter().map(|r| r.max().1).collect());
        cols.push(PresenceColumn {
            name: name.to_string(),
            ci: k == 0,
            scores: dev.categories.iter().map(|c| out.iter().map(|r| f64::from(r[*c])).collect()).collect(),
            dev_scores: None,
        });
    }
    let lengths: Vec<f64> = texts.iter().map(|t| chars(t)).collect();
    cols.push(PresenceColumn {
        name: LENGTH.into(),
        ci: false,
        scores: vec![lengths; dev.categories.len()],
        dev_scores: None,
    });
    let mut notes = vec![format!(
        "{} rows; {} scored categories (primary for some label in the map)",
        dev.texts.len(),
        dev.categories.len()
    )];
    if dev.dropped > 0 {
        notes.push(format!("{} rows without text left out", dev.dropped));
    }
    if let Some(train) = train.filter(|_| cfg.tfidf) {
        on_event(Event::Step(&format!("{}: fitting TF-IDF baselines on {} train rows", dev.name, train.texts.len())));
        cols.push(PresenceColumn {
            name: TFIDF.into(),
            ci: false,
            scores: tfidf_presence(train, &texts),
            dev_scores: None,
        });
        notes.push(format!("tf-idf fitted on {} ({} rows)", train.name, train.texts.len()));
    }
    on_event(Event::Step(&format!("{}: metrics and bootstrap", dev.name)));
    let (mut metrics, per_category) = presence_metrics(
        dev,
        None,
        &cols,
        &cfg.bootstrap,
        "2-fold: thresholds chosen on one half of the rows, F1 on the other, averaged",
    );
    if let Some(row) = neutral_row(dev, &cols, &row_max, &cfg.bootstrap) {
        metrics.push(row);
    }
    Ok(DatasetReport {
        name: dev.name.clone(),
        source: dev.source.clone(),
        rows: dev.texts.len(),
        notes,
        metrics,
        per_category,
    })
}

/// The share of a set's neutral rows (only the neutral label) with any of the 40 outputs above 0.5, for the
/// scorers that give all 40 (`row_max`, in column order); `None` when the set has no neutral rows. Why: a
/// model can steepen its calibration on the authored corpus by raising every output, and the authored neutral
/// lines are few; thousands of real comments that annotators called neutral show what that costs.
fn neutral_row(set: &PresenceSet, cols: &[PresenceColumn], row_max: &[Vec<f32>], boot: &Bootstrap) -> Option<MetricRow> {
    let rows: Vec<usize> = (0..set.texts.len()).filter(|&i| set.neutral[i]).collect();
    if rows.is_empty() {
        return None;
    }
    let share = |max: &[f32], w: Option<&[u32]>| {
        let weight = |i: usize| w.map_or(1.0, |w| f64::from(w[i]));
        let total: f64 = rows.iter().map(|&i| weight(i)).sum();
        let lit: f64 = rows.iter().filter(|&&i| max[i] > 0.5).map(|&i| weight(i)).sum();
        (total > 0.0).then(|| lit / total)
    };
    let values = cols
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let max = row_max.get(k);
            Cell {
                column: c.name.clone(),
                value: max.and_then(|m| share(m, None)),
                ci: max.filter(|_| c.ci).and_then(|m| boot.interval(set.texts.len(), |w| share(m, Some(w)))),
            }
        })
        .collect();
    Some(MetricRow {
        key: "neutral_fp".into(),
        metric: "rows labelled only neutral with any output > 0.5".into(),
        detail: Some(format!("{} rows", rows.len())),
        values,
    })
}

// ---------------------------------------------------------------------------------------------- rating sets

/// A Pearson row: per column an optional prediction vector against `gold`.
fn pearson_row(
    key: &str,
    metric: &str,
    detail: Option<String>,
    gold: &[f64],
    cols: &[(String, bool, Option<Vec<f64>>)],
    boot: &Bootstrap,
) -> MetricRow {
    MetricRow {
        key: key.into(),
        metric: metric.into(),
        detail,
        values: cols
            .iter()
            .map(|(name, ci, pred)| Cell {
                column: name.clone(),
                value: pred.as_ref().and_then(|p| pearson_weighted(p, gold, None)),
                ci: pred
                    .as_ref()
                    .filter(|_| *ci)
                    .and_then(|p| boot.interval(gold.len(), |w| pearson_weighted(p, gold, Some(w)))),
            })
            .collect(),
    }
}

/// Ridge regressions of each target on TF-IDF features of the train set; predictions on `texts`.
fn tfidf_ratings(train: &RatingSet, texts: &[&str]) -> Vec<Vec<f64>> {
    let v = Tfidf::fit(&train.texts, TFIDF_MIN_DF);
    let x = v.transform_all(&train.texts);
    let target = v.transform_all(texts);
    train
        .targets
        .par_iter()
        .map(|t| {
            let m = fit_ridge(&x, &t.gold, v.dim(), RIDGE_ALPHA, RIDGE_MAX_ITER);
            target.iter().map(|r| f64::from(m.decision(r))).collect()
        })
        .collect()
}

fn emobank_block(
    cfg: &SuiteConfig,
    dev: &RatingSet,
    train: Option<&RatingSet>,
    scorers: &[(&str, &dyn TextScorer)],
    on_event: &mut dyn FnMut(Event),
) -> Result<DatasetReport, EvalError> {
    let texts: Vec<&str> = dev.texts.iter().map(String::as_str).collect();
    let table = AffectModel::default();
    // Per scorer: (learned V, learned A) when it has an affect output; (table V, table A).
    let mut learned: Vec<(String, bool, Option<[Vec<f64>; 2]>)> = Vec::new();
    let mut tabled: Vec<(String, bool, [Vec<f64>; 2])> = Vec::new();
    let mut notes = vec![format!("{} rows; gold V and A on 1-5", dev.texts.len())];
    for (k, (name, scorer)) in scorers.iter().enumerate() {
        on_event(Event::Step(&format!("{}: scoring {} texts with {name}", dev.name, texts.len())));
        let out = scorer.score(&texts)?;
        let has = out.iter().all(|s| s.affect.is_some());
        if !has {
            notes.push(format!("{name}: no learned affect output; the table row is its only reading"));
        }
        learned.push((
            name.to_string(),
            k == 0,
            has.then(|| {
                [
                    out.iter().map(|s| f64::from(s.affect.unwrap_or_default().valence)).collect(),
                    out.iter().map(|s| f64::from(s.affect.unwrap_or_default().arousal)).collect(),
                ]
            }),
        ));
        let t: Vec<Affect> = out.iter().map(|s| table.affect(&s.intensities)).collect();
        tabled.push((
            name.to_string(),
            k == 0,
            [t.iter().map(|a| f64::from(a.valence)).collect(), t.iter().map(|a| f64::from(a.arousal)).collect()],
        ));
    }
    let lengths: Vec<f64> = texts.iter().map(|t| chars(t)).collect();
    let tfidf = train.filter(|_| cfg.tfidf).map(|train| {
        on_event(Event::Step(&format!("{}: fitting TF-IDF ridge on {} train rows", dev.name, train.texts.len())));
        notes.push(format!("tf-idf: ridge fitted on {} ({} rows)", train.name, train.texts.len()));
        tfidf_ratings(train, &texts)
    });
    on_event(Event::Step(&format!("{}: metrics and bootstrap", dev.name)));
    let mut metrics = Vec::new();
    for (t, (target, word)) in [("V", "valence"), ("A", "arousal")].into_iter().enumerate() {
        let gold = &dev.target(target).expect("EmoBank has V and A").gold;
        let baselines = |cols: &mut Vec<(String, bool, Option<Vec<f64>>)>| {
            cols.push((LENGTH.into(), false, Some(lengths.clone())));
            if let Some(p) = &tfidf {
                cols.push((TFIDF.into(), false, Some(p[t].clone())));
            }
        };
        let mut cols: Vec<(String, bool, Option<Vec<f64>>)> =
            learned.iter().map(|(n, ci, p)| (n.clone(), *ci, p.as_ref().map(|p| p[t].clone()))).collect();
        baselines(&mut cols);
        metrics.push(pearson_row(
            &format!("{word}_learned"),
            &format!("{word} Pearson, learned affect output"),
            None,
            gold,
            &cols,
            &cfg.bootstrap,
        ));
        let mut cols: Vec<(String, bool, Option<Vec<f64>>)> =
            tabled.iter().map(|(n, ci, p)| (n.clone(), *ci, Some(p[t].clone()))).collect();
        baselines(&mut cols);
        metrics.push(pearson_row(
            &format!("{word}_table"),
            &format!("{word} Pearson, table from intensities"),
            Some("AffectModel::default()".into()),
            gold,
            &cols,
            &cfg.bootstrap,
        ));
    }
    Ok(DatasetReport {
        name: dev.name.clone(),
        source: dev.source.clone(),
        rows: dev.texts.len(),
        notes,
        metrics,
        per_category: Vec::new(),
    })
}

fn empathic_block(
    cfg: &SuiteConfig,
    dev: &RatingSet,
    train: Option<&RatingSet>,
    scorers: &[(&str, &dyn TextScorer)],
    on_event: &mut dyn FnMut(Event),
) -> Result<DatasetReport, EvalError> {
    let texts: Vec<&str> = dev.texts.iter().map(String::as_str).collect();
    let mut outputs = Vec::new();
    for (name, scorer) in scorers {
        on_event(Event::Step(&format!("{}: scoring {} texts with {name}", dev.name, texts.len())));
        outputs.push(scorer.score(&texts)?);
    }
    let mut notes = vec![format!("{} essays; writers' own ratings, 1-7", dev.texts.len())];
    let tfidf = train.filter(|_| cfg.tfidf).map(|train| {
        on_event(Event::Step(&format!("{}: fitting TF-IDF ridge on {} train rows", dev.name, train.texts.len())));
        notes.push(format!("tf-idf: ridge fitted on {} ({} rows)", train.name, train.texts.len()));
        tfidf_ratings(train, &texts)
    });
    let lengths: Vec<f64> = texts.iter().map(|t| chars(t)).collect();
    let mut metrics = Vec::new();
    for (t, target) in dev.targets.iter().enumerate() {
        let category = target.category.expect("Empathic Reactions targets are mapped");
        let mut cols: Vec<(String, bool, Option<Vec<f64>>)> = scorers
            .iter()
            .zip(&outputs)
            .enumerate()
            .map(|(k, ((name, _), out))| {
                (name.to_string(), k == 0, Some(out.iter().map(|s| f64::from(s.intensities[category])).collect()))
            })
            .collect();
        cols.push((LENGTH.into(), false, Some(lengths.clone())));
        if let Some(p) = &tfidf {
            cols.push((TFIDF.into(), false, Some(p[t].clone())));
        }
        metrics.push(pearson_row(
            &target.name,
            &format!("{category} vs {} rating, Pearson", target.name),
            None,
            &target.gold,
            &cols,
            &cfg.bootstrap,
        ));
    }
    Ok(DatasetReport {
        name: dev.name.clone(),
        source: dev.source.clone(),
        rows: dev.texts.len(),
        notes,
        metrics,
        per_category: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scorer that reads one cue word per category: perfect presence, a fixed intensity.
    struct Cue;

    impl TextScorer for Cue {
        fn score(&self, texts: &[&str]) -> Result<Vec<Scored>, EvalError> {
            Ok(texts
                .iter()
                .map(|t| {
                    let mut x = Intensities::default();
                    if t.contains("furious") {
                        x[Category::Anger] = 0.9;
                    }
                    Scored { intensities: x, affect: None }
                })
                .collect())
        }
    }

    #[test]
    fn presence_metrics_two_fold_and_bootstrap() {
        // 40 rows: Anger positive in every 4th row; the cue scorer is perfect.
        let texts: Vec<String> =
            (0..40).map(|i| if i % 4 == 0 { format!("so furious {i}") } else { format!("calm {i}") }).collect();
        let set = PresenceSet {
            name: "t".into(),
            source: "t".into(),
            texts: texts.clone(),
            categories: vec![Category::Anger, Category::Fear],
            labels: (0..40)
                .map(|i| {
                    vec![
                        if i % 4 == 0 { Presence::Positive } else { Presence::Negative },
                        if i == 1 { Presence::Skipped } else { Presence::Negative },
                    ]
                })
                .collect(),
            neutral: (0..40).map(|i| i % 4 == 3).collect(),
            dropped: 0,
        };
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = Cue.score(&refs).unwrap();
        let col = PresenceColumn {
            name: "cue".into(),
            ci: true,
            scores: set.categories.iter().map(|c| out.iter().map(|s| f64::from(s.intensities[*c])).collect()).collect(),
            dev_scores: None,
        };
        let boot = Bootstrap { resamples: 200, seed: 1 };
        let (rows, per) = presence_metrics(&set, None, std::slice::from_ref(&col), &boot, "2-fold");
        let auc = rows[0].cell("cue").unwrap();
        assert_eq!(auc.value, Some(1.0));
        assert_eq!(auc.ci, Some([1.0, 1.0]));
        assert_eq!(rows[2].cell("cue").unwrap().value, Some(1.0), "F1 with two-fold thresholds");
        // Fear has no positives: reported, not averaged.
        assert_eq!(rows[0].detail.as_deref(), Some("1 of 2 categories (>= 10 positives)"));
        assert!(!per[1].in_macro);
        assert_eq!(per[1].negatives, 39);

        // Neutral rows (every 4th from 3: ten) with any output over 0.5: every 8th from 7, five of them. A
        // column without all 40 outputs (length, TF-IDF) has no value.
        let row_max: Vec<f32> = (0..40).map(|i| if i % 8 == 7 { 0.9 } else { 0.5 }).collect();
        let length = PresenceColumn { name: "length".into(), ci: false, scores: vec![], dev_scores: None };
        let row = neutral_row(&set, &[col, length], &[row_max], &boot).unwrap();
        assert_eq!(row.detail.as_deref(), Some("10 rows"));
        let cue = row.cell("cue").unwrap();
        assert_eq!(cue.value, Some(0.5), "exactly 0.5 is not over it");
        let [lo, hi] = cue.ci.unwrap();
        assert!(lo < 0.5 && hi > 0.5, "{lo} {hi}");
        assert_eq!(row.cell("length").unwrap().value, None);
        let none = PresenceSet { neutral: vec![false; 40], ..set };
        assert!(neutral_row(&none, &[], &[], &boot).is_none(), "no neutral rows, no row");
    }
}
