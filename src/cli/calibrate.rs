//! `emoarc calibrate`: measures which of a head's encoder products can run in int8 (see
//! `emoarc::train::int8`), writes the calibration beside the model (`int8-HEAD.safetensors`), names it in
//! `emoarc.json` and records the folder's new hashes in the weights manifest. With `--grid` it first puts the
//! head's own fine-tuned layers on the int8 grid in a temporary copy of the model folder, reports how far that
//! moved the model's outputs and chooses on that copy; the layers' file in the folder is rewritten only with
//! the calibration (a dry run writes nothing there).

use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use emoarc::data::{Corpus, Split};
use emoarc::backend::int16::Alpha;
use emoarc::train::int8::{calibrate_int8, int8_grid, CalibrationOptions, Quality};
use emoarc::model::ModelSpec;
use emoarc::{weights, Estimator, Precision};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The data folder: the corpus's train split gives the activation ranges, its dev split the quality the
    /// choice is made on (the test split is left for `tests/quantized.rs`).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// SmoothQuant's migration strength, 0 to 1: one value for every product, optionally followed by other
    /// values for some kinds (qkv, attention_output, intermediate, output), as in `0.8,output=0.5`.
    #[arg(long, default_value_t = CalibrationOptions::default().alpha)]
    alpha: Alpha,
    /// Input channels per product computed in f32 (the ones with the largest ranges).
    #[arg(long, default_value_t = CalibrationOptions::default().outliers)]
    outliers: usize,
    /// Worst cosine to f32 allowed on the dev split.
    #[arg(long, default_value_t = CalibrationOptions::default().min_cosine)]
    min_cosine: f64,
    /// Worst intensity difference to f32 allowed on the dev split.
    #[arg(long, default_value_t = CalibrationOptions::default().max_difference)]
    max_difference: f32,
    /// First put every product of the head's own fine-tuned layers on the int8 grid (their weights move to the
    /// values int8 stores; the f32 and int16 paths then read the same), and choose on the model that gives.
    #[arg(long)]
    grid: bool,
    /// Measure and report only; write nothing into the model folder.
    #[arg(long)]
    dry_run: bool,
    /// The manifest to record the model folder in.
    #[arg(long = "record-in", default_value = "weights-manifest")]
    record_in: PathBuf,
    /// The model and head to calibrate (its --precision is ignored: the reference is f32).
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: CalibrateArgs) -> Result<ExitCode> {
    let corpus = Corpus::load_dir(&args.data.join("corpus"))?;
    if let Some(p) = corpus.problems.first() {
        bail!("the corpus has {} bad lines, the first: {p} (run emoarc data check)", corpus.problems.len());
    }
    let f32_model = |model: &ModelArgs| ModelArgs {
        precision: Precision::F32,
        ..model.clone()
    };
    let reference = f32_model(&args.model).load()?;
    let texts = |split: Split| -> Vec<String> { corpus.split(split).iter().map(|e| e.text.clone()).collect() };
    let (train, dev) = (texts(Split::Train), texts(Split::Dev));
    let options = CalibrationOptions {
        alpha: args.alpha,
        outliers: args.outliers,
        min_cosine: args.min_cosine,
        max_difference: args.max_difference,
    };
    eprintln!(
        "calibrating head {:?}: ranges from {} train lines, choice on {} dev lines",
        reference.head_name(),
        train.len(),
        dev.len()
    );
    let (train_refs, dev_refs): (Vec<&str>, Vec<&str>) =
        (train.iter().map(String::as_str).collect(), dev.iter().map(String::as_str).collect());
    // With --grid the choice is made on a temporary copy of the folder whose layers are moved, and the folder
    // itself is written only once the choice is made: a failure on the way leaves it as it was. Removed when
    // the command ends.
    let mut staging = None;
    let grid = if args.grid {
        let grid = int8_grid(&reference, &train_refs, &options)?;
        eprintln!(
            "put {} products on the int8 grid (the largest weight move: {:.3}% of its output channel's largest weight)",
            grid.products,
            grid.largest_move * 100.0
        );
        let stage = Staging::copy(&reference.source().dir, &reference.spec().files())?;
        let file = stage.model.join(grid.file.file_name().context("the override file has no name")?);
        weights::write_atomically(&file, &grid.bytes)?;
        record(reference.spec(), &reference, &stage.model, &stage.manifest())?;
        let moved = f32_model(&ModelArgs {
            model: Some(stage.model.display().to_string()),
            manifest: Some(stage.manifest()),
            ..args.model.clone()
        })
        .load()?;
        staging = Some(stage);
        let (before, after) = (reference.estimate(&dev_refs)?, moved.estimate(&dev_refs)?);
        let changes: Vec<f32> = before.iter().zip(&after).map(|(a, b)| a.max_abs_diff(b)).collect();
        eprintln!(
            "the model's f32 outputs moved on the dev split: worst intensity change {:.4}, mean {:.5}",
            changes.iter().fold(0f32, |m, c| m.max(*c)),
            changes.iter().sum::<f32>() / changes.len().max(1) as f32
        );
        Some((grid, moved))
    } else {
        None
    };
    let chooser = grid.as_ref().map_or(&reference, |(_, moved)| moved);
    let report = calibrate_int8(chooser, &train_refs, &dev_refs, &options, grid.as_ref().map(|(g, _)| &g.calibration))?;
    let show = |q: &Quality| format!("worst cosine {:.5}, worst intensity difference {:.4}", q.worst_cosine, q.worst_difference);
    eprintln!("all int16: {}", show(&report.int16));
    for ((layer, product), q) in &report.alone {
        eprintln!("  layer {layer} {:<16} alone in int8: {}", product.name(), show(q));
    }
    let chosen = report.calibration.products();
    eprintln!(
        "chosen: {} of {} products in int8 ({}): {}",
        chosen.len(),
        report.total_products,
        chosen.iter().map(|(l, p)| format!("{l}.{}", p.name())).collect::<Vec<_>>().join(", "),
        show(&report.chosen)
    );
    if args.dry_run {
        drop(staging);
        return Ok(ExitCode::SUCCESS);
    }
    let source = reference.source();
    if let Some((grid, _)) = &grid {
        weights::write_atomically(&grid.file, &grid.bytes)?;
    }
    let mut spec = reference.spec().clone();
    let head = reference.head_name().to_string();
    let file = format!("int8-{head}.safetensors");
    let mut calibration = report.calibration;
    calibration.note("head", head.clone());
    if args.grid {
        calibration.note("grid", "the head's own layers' weights were put on the int8 grid before the choice");
    }
    weights::write_atomically(&source.dir.join(&file), &calibration.to_bytes()?)?;
    spec.heads.get_mut(&head).context("the head vanished from the spec")?.int8 = Some(file.clone());
    spec.save(&source.dir)?;
    record(&spec, &reference, &source.dir, &args.record_in)?;
    eprintln!("wrote {} and recorded {} in {}", source.dir.join(&file).display(), spec.name, args.record_in.display());
    Ok(ExitCode::SUCCESS)
}

/// Records the model folder `dir` (the files `spec` names) in `manifest`, with `reference`'s entry otherwise.
fn record(spec: &ModelSpec, reference: &Estimator, dir: &Path, manifest: &Path) -> Result<()> {
    let template = weights::ModelEntry {
        name: spec.name.clone(),
        ..reference.source().entry.clone()
    };
    weights::record_model(manifest, dir, &spec.files(), template)?;
    Ok(())
}

/// A temporary copy of a model folder (under the same folder name, which names it in a manifest) beside a
/// manifest of its own, all removed when dropped.
struct Staging {
    root: PathBuf,
    model: PathBuf,
}

impl Staging {
    fn copy(from: &Path, files: &[String]) -> Result<Staging> {
        let root = std::env::temp_dir().join(format!("emoarc-calibrate-{}", std::process::id()));
        let name = from.file_name().with_context(|| format!("{} has no folder name", from.display()))?;
        let stage = Staging {
            model: root.join(name),
            root,
        };
        std::fs::create_dir_all(&stage.model).with_context(|| format!("creating {}", stage.model.display()))?;
        std::fs::write(stage.manifest(), "# emoarc calibrate --dry-run: the staged copy only\n")
            .with_context(|| format!("writing {}", stage.manifest().display()))?;
        for f in files {
            std::fs::copy(from.join(f), stage.model.join(f))
                .with_context(|| format!("copying {f} to {}", stage.model.display()))?;
        }
        Ok(stage)
    }

    fn manifest(&self) -> PathBuf {
        self.root.join("weights-manifest")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
