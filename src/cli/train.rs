//! `emoarc train`: trains a head on the corpus's train split (early stopping on dev), writes it into a model
//! folder next to the encoder it was trained on, and records the folder in the weights manifest.

use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use emoarc::data::{Corpus, Split};
use emoarc::model::{HeadSpec, ModelSpec};
use emoarc::train::{self, top_layers, TrainOptions};
use emoarc::{weights, Intensities};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The data folder; training reads corpus/*.jsonl (train split; dev for early stopping).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Model folder to write the head into; created from the source model's files if it does not exist.
    #[arg(long)]
    out: PathBuf,
    /// Name of the new head.
    #[arg(long, default_value = "trained")]
    head_name: String,
    /// Make the new head the folder's default.
    #[arg(long)]
    set_default: bool,
    /// Hidden layer widths, comma-separated; empty for a linear head.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    hidden: Vec<usize>,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    lr: f64,
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = TrainOptions::default().patience)]
    patience: usize,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Also fine-tune this many top encoder layers (0: head only); kept only if dev improves.
    #[arg(long, default_value_t = 0)]
    finetune_layers: usize,
    /// Epochs of fine-tuning.
    #[arg(long, default_value_t = 8)]
    finetune_epochs: usize,
    /// Learning rate of the fine-tuned encoder layers.
    #[arg(long, default_value_t = 5e-5)]
    encoder_lr: f64,
    /// Loss weight of present-category cells relative to absent ones.
    #[arg(long, default_value_t = TrainOptions::default().positive_weight)]
    positive_weight: f64,
    /// The manifest to record the model in.
    #[arg(long = "record-in", default_value = "weights-manifest")]
    record_in: PathBuf,
    /// The model whose encoder embeds the corpus (its heads are kept in --out).
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let corpus = Corpus::load_dir(&args.data.join("corpus"))?;
    if let Some(p) = corpus.problems.first() {
        bail!("the corpus has {} bad lines, the first: {p} (run emoarc data check)", corpus.problems.len());
    }
    let estimator = args.model.load()?;
    let embed = |split: Split| -> Result<(Vec<Vec<f32>>, Vec<Intensities>)> {
        let examples = corpus.split(split);
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        eprintln!("embedding {} {} examples", texts.len(), split.name());
        Ok((estimator.embed(&texts)?, examples.iter().map(|e| e.labels).collect()))
    };
    let (train_x, train_y) = embed(Split::Train)?;
    let (dev_x, dev_y) = embed(Split::Dev)?;
    let opts = TrainOptions {
        hidden: args.hidden.clone(),
        epochs: args.epochs,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        batch_size: args.batch_size,
        patience: args.patience,
        seed: args.seed,
        positive_weight: args.positive_weight,
        ..TrainOptions::default()
    };
    let head_only = train::train_head((&train_x, &train_y), (&dev_x, &dev_y), &opts)?;
    report("head only", &head_only);
    let dev_pred = emoarc::eval::apply_head(&head_only.head, &dev_x)?;
    eprintln!("dev calibration (mean prediction by labelled level): {}", calibration_line(&dev_pred, &dev_y));
    let (trained, fine_tuned_layers) = match args.finetune_layers {
        0 => (head_only, None),
        k => {
            eprintln!("fine-tuning the top {k} encoder layers ({} epochs at most)", args.finetune_epochs);
            let ft_opts = top_layers::FineTuneOptions {
                layers: k,
                encoder_learning_rate: args.encoder_lr,
                epochs: args.finetune_epochs,
            };
            let (train_ex, dev_ex) = (corpus.split(Split::Train), corpus.split(Split::Dev));
            let ft = top_layers::fine_tune_estimator(&estimator, &train_ex, &dev_ex, &head_only.tensors, &opts, &ft_opts)?;
            report(&format!("fine-tuned top {k} layers"), &ft.trained);
            let (before, after) = (best_score(&head_only), best_score(&ft.trained));
            if after > before {
                eprintln!("fine-tuning helps on dev ({after:.4} > {before:.4}): keeping it");
                (ft.trained, Some(ft.layer_tensors))
            } else {
                eprintln!("fine-tuning does not help on dev ({after:.4} <= {before:.4}): keeping the head-only model");
                (head_only, None)
            }
        }
    };
    let source = estimator.source();
    let mut spec = estimator.spec().clone();
    prepare_out_dir(&source.dir, &args.out, &spec)?;
    let encoder_override = match fine_tuned_layers {
        Some(tensors) => {
            let file = format!("encoder-{}.safetensors", args.head_name);
            emoarc::zero_shot::save_tensors(&args.out.join(&file), &tensors)?;
            Some(file)
        }
        None => None,
    };
    let head = HeadSpec {
        weights: format!("head-{}.safetensors", args.head_name),
        encoder_layers: estimator.model().encoder_layers(),
        encoder_override,
        int8: None,
        kind: "trained".into(),
        inputs: estimator.model().hidden_size(),
        hidden: opts.hidden.clone(),
        activation: opts.activation,
        normalize: opts.normalize,
        outputs: emoarc::NUM_CATEGORIES,
        affect: false,
        lexical: false,
        reads_context: false,
    };
    emoarc::zero_shot::save_tensors(&args.out.join(&head.weights), &trained.tensors)?;
    spec.name = folder_name(&args.out)?;
    spec.heads.insert(args.head_name.clone(), head);
    if args.set_default {
        spec.default_head = args.head_name.clone();
    }
    spec.save(&args.out)?;
    let template = weights::ModelEntry {
        name: spec.name.clone(),
        ..source.entry.clone()
    };
    weights::record_model(&args.record_in, &args.out, &spec.files(), template)?;
    eprintln!(
        "wrote head {:?} into {} and recorded it in {}",
        args.head_name,
        args.out.display(),
        args.record_in.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn best_score(t: &train::Trained) -> f64 {
    t.history.iter().find(|e| e.epoch == t.best_epoch).map_or(f64::NAN, |e| e.dev_macro_spearman)
}

fn report(what: &str, t: &train::Trained) {
    if let Some(best) = t.history.iter().find(|e| e.epoch == t.best_epoch) {
        eprintln!(
            "{what}: best epoch {} of {}: train loss {:.4}, dev loss {:.4}, dev macro Spearman {:.4}",
            best.epoch,
            t.history.len() - usize::from(t.history[0].epoch == 0),
            best.train_loss,
            best.dev_loss,
            best.dev_macro_spearman
        );
    }
}

fn calibration_line(pred: &[Intensities], gold: &[Intensities]) -> String {
    emoarc::data::SCALE
        .iter()
        .map(|&level| {
            let cells: Vec<f32> = pred
                .iter()
                .zip(gold)
                .flat_map(|(p, g)| p.iter().zip(g.iter()).filter(|(_, (_, gv))| *gv == level).map(|((_, pv), _)| pv))
                .collect();
            let mean = cells.iter().sum::<f32>() / cells.len().max(1) as f32;
            format!("{level}: {mean:.3}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn folder_name(dir: &Path) -> Result<String> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .context("--out must end in a folder name")
}

/// Makes `out` hold the source model's files; nothing to do when it is the source folder itself.
fn prepare_out_dir(source: &Path, out: &Path, spec: &ModelSpec) -> Result<()> {
    if out.exists() && std::fs::canonicalize(out)? == std::fs::canonicalize(source)? {
        return Ok(());
    }
    std::fs::create_dir_all(out)?;
    for f in spec.files() {
        std::fs::copy(source.join(&f), out.join(&f)).with_context(|| format!("copying {f} into {}", out.display()))?;
    }
    Ok(())
}
