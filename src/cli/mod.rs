//! Command-line parsing and dispatch: one submodule per subcommand. Shared model options live here so every
//! command that loads a model takes the same flags.

mod arc;
mod calibrate;
mod data;
mod eval;
mod eval_arcs;
mod input;
mod output;
mod plot;
mod reward;
mod score;
mod serve;
mod train;
mod zero_shot;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use emoarc::{DeviceChoice, Estimator, OnLong, Precision};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "emoarc", version, about = "40 continuous EmoNet emotion intensities per utterance, emotion arcs and rewards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score utterances: one per line (plain text) or JSONL with a "text" field.
    Score(score::ScoreArgs),
    /// Train a head on the labelled corpus and write it into a model folder.
    Train(train::TrainArgs),
    /// Evaluate a head on the test split, intensity pairs and neutral text, next to a baseline head.
    Eval(eval::EvalArgs),
    /// Work with the labelled data (check it).
    Data(data::DataArgs),
    /// Measure which encoder products of a head can run in int8 and store that calibration beside the model.
    Calibrate(calibrate::CalibrateArgs),
    /// Build (or refresh) a model folder's zero-shot head from the base encoder and record it in the weights manifest.
    ZeroShot(zero_shot::ZeroShotArgs),
    /// Emotion arcs of conversations (JSONL), optionally drawn as SVG.
    Arc(arc::ArcArgs),
    /// Rewards of conversations (JSONL) from their emotion arcs.
    Reward(reward::RewardArgs),
    /// Check the arc rewards against the authored better/worse conversation pairs.
    EvalArcs(eval_arcs::EvalArcsArgs),
    /// Serve scores and rewards over HTTP, with dynamic batching, for RL loops.
    Serve(serve::ServeArgs),
}

/// Options for loading a model, shared by every command that scores text.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model folder, or hf:ORG/REPO[@REVISION]; defaults to the shipped model.
    #[arg(long)]
    pub model: Option<String>,
    /// Which head of the model to use (for example zero-shot); default: the model's default head.
    #[arg(long)]
    pub head: Option<String>,
    /// Weights manifest to verify the model against (default: the one beside the model, else built in).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// auto, cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Encoder precision: auto (the fastest measured for this machine: f16 on a GPU; int8 where the head has
    /// an int8 calibration and the CPU AVX-512 VNNI, int16 on other CPUs with integer dot products, else f32),
    /// f32, f16, bf16, int16 (CPU only) or int8 (CPU with AVX-512 VNNI).
    #[arg(long, alias = "dtype", default_value = "auto")]
    pub precision: Precision,
    /// Run only the first K encoder layers (for training a head for a first-k-layers model).
    #[arg(long, value_name = "K")]
    pub encoder_layers: Option<usize>,
    /// Maximum tokens per input (at most the model's).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Most padded tokens per encoder batch (default: 2048 on CPU, 16384 on GPU).
    #[arg(long)]
    pub token_budget: Option<usize>,
    /// Most sequences per encoder batch.
    #[arg(long, default_value_t = 256)]
    pub max_batch: usize,
    /// What to do with inputs longer than the maximum length: truncate, error or chunk.
    #[arg(long, default_value = "truncate")]
    pub on_long: OnLong,
}

impl ModelArgs {
    /// The estimator builder these options describe (a command may add its own options before building).
    pub fn builder(&self) -> Result<emoarc::EstimatorBuilder> {
        let mut b = Estimator::builder()
            .device(self.device)
            .precision(self.precision)
            .max_batch(self.max_batch)
            .on_long(self.on_long);
        if let Some(m) = &self.model {
            b = b.model_str(m)?;
        }
        if let Some(h) = &self.head {
            b = b.head(h);
        }
        if let Some(m) = &self.manifest {
            b = b.manifest(m);
        }
        if let Some(k) = self.encoder_layers {
            b = b.encoder_layers(k);
        }
        if let Some(n) = self.token_budget {
            b = b.token_budget(n);
        }
        if let Some(n) = self.max_length {
            b = b.max_length(n);
        }
        Ok(b)
    }

    /// Builds the estimator these options describe.
    pub fn load(&self) -> Result<Estimator> {
        let estimator = self.builder()?.build()?;
        self.warn_if_uncalibrated(&estimator);
        Ok(estimator)
    }

    /// `--precision int8` on a head without an int8 calibration runs int16: say so.
    pub fn warn_if_uncalibrated(&self, estimator: &Estimator) {
        if self.precision == Precision::Int8 && !estimator.backend_name().starts_with("int8") {
            eprintln!(
                "warning: head {:?} has no int8 calibration, so every product runs in int16 \
                 (`emoarc calibrate --head {}` makes one)",
                estimator.head_name(),
                estimator.head_name()
            );
        }
    }
}

/// A file or folder of the repository (`data`, `data/conversations/pairs.jsonl`, `../shared/datasets`): the
/// path given with `--FLAG`, else `relative` under the working directory, else under the checkout this binary
/// was built from; when neither has it, an error that names both places and the flag.
pub fn repo_path(given: Option<PathBuf>, relative: &str, flag: &str) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let here = PathBuf::from(relative);
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    for candidate in [&here, &checkout] {
        if candidate.exists() {
            return Ok(candidate.clone());
        }
    }
    anyhow::bail!(
        "{relative} is neither under the working directory nor in the emoarc checkout ({}); pass --{flag} PATH",
        checkout.display()
    )
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Score(args) => {
            output::remove_on_signal()?;
            score::run(args)
        }
        Command::ZeroShot(args) => zero_shot::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Data(args) => data::run(args),
        Command::Arc(args) => {
            output::remove_on_signal()?;
            arc::run(args)
        }
        Command::Reward(args) => {
            output::remove_on_signal()?;
            reward::run(args)
        }
        Command::EvalArcs(args) => eval_arcs::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
