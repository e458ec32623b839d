//! `emoarc eval`: scores a head on the test split, the intensity pairs and the neutral set, next to a baseline
//! head (the zero-shot one by default), from one pass of the encoder.

use super::ModelArgs;
use anyhow::{bail, Result};
use clap::Args;
use emoarc::data::{self, Corpus, Split};
use emoarc::eval::{self, EvalReport};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The data folder (corpus/ for the test split, intensity-pairs.jsonl, neutral.txt).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// The head to compare with; "none" for no comparison.
    #[arg(long, default_value = "zero-shot")]
    baseline: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let corpus = Corpus::load_dir(&args.data.join("corpus"))?;
    if let Some(p) = corpus.problems.first() {
        bail!("the corpus has {} bad lines, the first: {p} (run emoarc data check)", corpus.problems.len());
    }
    let test = corpus.split(Split::Test);
    let pairs = data::load_pairs(&args.data.join("intensity-pairs.jsonl"))?;
    let neutral = data::load_lines(&args.data.join("neutral.txt"))?;
    let estimator = args.model.load()?;
    let texts = eval::eval_texts(&test, &pairs, &neutral);
    let embeddings = estimator.embed(&texts)?;
    let mut reports = vec![eval::evaluate(
        &estimator.model().head_name,
        &eval::apply_head(&estimator.model().head, &embeddings)?,
        &test,
        &pairs,
        &neutral,
    )];
    if args.baseline != "none" && args.baseline != estimator.model().head_name {
        let mut baseline_args = args.model.clone();
        baseline_args.head = Some(args.baseline.clone());
        let baseline = baseline_args.load()?;
        // Heads reading the same encoder (depth and weights) share the embeddings; others need their own pass.
        let encoder_of = |e: &emoarc::Estimator| {
            let h = e.model().head_spec();
            (h.encoder_layers, h.encoder_override.clone())
        };
        let base_embeddings = if encoder_of(&baseline) == encoder_of(&estimator) {
            embeddings
        } else {
            baseline.embed(&texts)?
        };
        reports.push(eval::evaluate(
            &args.baseline,
            &eval::apply_head(&baseline.model().head, &base_embeddings)?,
            &test,
            &pairs,
            &neutral,
        ));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_tables(&reports);
    }
    Ok(ExitCode::SUCCESS)
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn print_tables(reports: &[EvalReport]) {
    let main = &reports[0];
    println!("head {:?} on the test split ({} utterances)", main.head, main.test_examples);
    println!("{:<46} {:>5} {:>8} {:>8} {:>7}", "category", "n", "spearman", "pearson", "mae");
    for m in &main.per_category {
        println!(
            "{:<46} {:>5} {:>8} {:>8} {:>7.3}",
            m.category.name(),
            m.positives,
            opt(m.spearman),
            opt(m.pearson),
            m.mae
        );
    }
    println!();
    println!(
        "{:<12} {:>9} {:>9} {:>7} {:>12} {:>12}",
        "head", "spearman", "pearson", "mae", "pair order", "neutral fp"
    );
    for r in reports {
        println!(
            "{:<12} {:>9.3} {:>9.3} {:>7.3} {:>11.1}% {:>11.1}%",
            r.head,
            r.macro_spearman,
            r.macro_pearson,
            r.macro_mae,
            r.pair_accuracy * 100.0,
            r.neutral_false_positive_rate * 100.0
        );
    }
    println!(
        "(macro Spearman ceiling on this split: {:.3}, what a perfect continuous-output model scores)",
        main.ceiling_macro_spearman
    );
    println!();
    println!("calibration: mean predicted intensity by labelled level (cells = utterance x category)");
    print!("{:<12}", "label");
    for row in &main.calibration {
        print!(" {:>14}", format!("{} (n={})", row.label, row.cells));
    }
    println!();
    for r in reports {
        print!("{:<12}", r.head);
        for row in &r.calibration {
            print!(" {:>14.3}", row.mean_prediction);
        }
        println!();
    }
}
