//! `emoarc calibrate`: measures which of a head's encoder products can run in int8 (see
//! `emoarc::train::int8`), writes the calibration beside the model (`int8-HEAD.safetensors`), names it in
//! `emoarc.json` and records the folder's new hashes in the weights manifest.

use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use emoarc::data::{Corpus, Split};
use emoarc::train::int8::{calibrate_int8, CalibrationOptions, Quality};
use emoarc::{weights, Precision};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The data folder: the corpus's train split gives the activation ranges, its dev split the quality the
    /// choice is made on (the test split is left for `tests/quantized.rs`).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// SmoothQuant's migration strength, 0 to 1.
    #[arg(long, default_value_t = CalibrationOptions::default().alpha)]
    alpha: f32,
    /// Input channels per product computed in f32 (the ones with the largest ranges).
    #[arg(long, default_value_t = CalibrationOptions::default().outliers)]
    outliers: usize,
    /// Worst cosine to f32 allowed on the dev split.
    #[arg(long, default_value_t = CalibrationOptions::default().min_cosine)]
    min_cosine: f64,
    /// Worst intensity difference to f32 allowed on the dev split.
    #[arg(long, default_value_t = CalibrationOptions::default().max_difference)]
    max_difference: f32,
    /// Measure and report only; write nothing.
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
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha must be between 0 and 1, not {}", args.alpha);
    }
    let corpus = Corpus::load_dir(&args.data.join("corpus"))?;
    if let Some(p) = corpus.problems.first() {
        bail!("the corpus has {} bad lines, the first: {p} (run emoarc data check)", corpus.problems.len());
    }
    let reference = ModelArgs {
        precision: Precision::F32,
        ..args.model.clone()
    }
    .load()?;
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
    let report = calibrate_int8(&reference, &train_refs, &dev_refs, &options)?;
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
        return Ok(ExitCode::SUCCESS);
    }
    let source = reference.source();
    let mut spec = reference.spec().clone();
    let head = reference.head_name().to_string();
    let file = format!("int8-{head}.safetensors");
    let mut calibration = report.calibration;
    calibration.note("head", head.clone());
    weights::write_atomically(&source.dir.join(&file), &calibration.to_bytes()?)?;
    spec.heads.get_mut(&head).context("the head vanished from the spec")?.int8 = Some(file.clone());
    spec.save(&source.dir)?;
    let template = weights::ModelEntry {
        name: spec.name.clone(),
        ..source.entry.clone()
    };
    weights::record_model(&args.record_in, &source.dir, &spec.files(), template)?;
    eprintln!("wrote {} and recorded {} in {}", source.dir.join(&file).display(), spec.name, args.record_in.display());
    Ok(ExitCode::SUCCESS)
}
