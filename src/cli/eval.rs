//! `emoarc eval`: scores the model's head on the own test split, the intensity pairs and the neutral set, and on
//! the public human-labelled dev sets (GoEmotions, EmoBank, XED, Empathic Reactions) and the test split of the
//! relabelled GoEmotions comments (`data/relabels`), next to a comparison head
//! (the zero-shot one by default), text length, and TF-IDF + a linear model fitted on each dataset's own train
//! split. One block per dataset; bootstrap 95% intervals for the model's headline numbers; `--json` for machines.

use super::ModelArgs;
use anyhow::Result;
use clap::Args;
use emoarc::eval::metrics::{Bootstrap, DEFAULT_BOOTSTRAP_SEED};
use emoarc::eval::suite::{self, DatasetReport, Event, SuiteConfig, SuiteReport, TextScorer};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The data folder (corpus/ for the test and dev splits, intensity-pairs.jsonl, neutral.txt, label-maps/, relabels/);
    /// default: data/ here, else in the emoarc checkout.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The public datasets' folder (goemotions/, emobank/, xed/, empathic_reactions/); a missing dataset is
    /// skipped with a warning. Default: ../shared/datasets from here, else from the emoarc checkout.
    #[arg(long)]
    datasets: Option<PathBuf>,
    /// A head to compare with (another column); "none" for no comparison.
    #[arg(long, default_value = "zero-shot")]
    baseline: String,
    /// Bootstrap resamples for the 95% intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = DEFAULT_BOOTSTRAP_SEED)]
    seed: u64,
    /// Skip fitting the TF-IDF baselines.
    #[arg(long)]
    no_tfidf: bool,
    /// Also print AUC, AP and F1 per category.
    #[arg(long)]
    per_category: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// The main column's name.
const MODEL: &str = "model";

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let estimator = args.model.load()?;
    let head = estimator.head_name().to_string();
    let baseline = if args.baseline != "none" && args.baseline != head {
        let mut baseline_args = args.model.clone();
        baseline_args.head = Some(args.baseline.clone());
        Some(baseline_args.load()?)
    } else {
        None
    };
    let mut scorers: Vec<(&str, &dyn TextScorer)> = vec![(MODEL, &estimator)];
    if let Some(b) = &baseline {
        scorers.push((args.baseline.as_str(), b));
    }
    let cfg = SuiteConfig {
        data: super::repo_path(args.data.clone(), "data", "data")?,
        // Not found anywhere: each dataset is then reported as skipped, with the path it was looked for at.
        datasets: super::repo_path(args.datasets.clone(), "../shared/datasets", "datasets")
            .unwrap_or_else(|_| PathBuf::from("../shared/datasets")),
        bootstrap: Bootstrap {
            resamples: args.bootstrap,
            seed: args.seed,
        },
        tfidf: !args.no_tfidf,
    };
    let report = suite::run(&cfg, &scorers, &mut |event| match event {
        Event::Step(s) => eprintln!("[{:>6.1}s] {s}", started.elapsed().as_secs_f64()),
        Event::Warning(w) => eprintln!("warning: {w}"),
        // Events added later are progress detail this command does not show.
        _ => {}
    })?;
    let model = format!("{} (head {head})", estimator.spec().name);
    if args.json {
        let doc = serde_json::json!({"model": model, "report": report});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&report, &model, args.per_category));
    }
    eprintln!("eval took {:.1} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// The report as plain-text tables, one block per dataset.
fn render(report: &SuiteReport, model: &str, per_category: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "emoarc eval: {MODEL} = {model}");
    let _ = writeln!(
        s,
        "columns: {}; [95% bootstrap interval, {} resamples of rows, seed {}]",
        report.columns.join(", "),
        report.bootstrap_resamples,
        report.bootstrap_seed
    );
    let _ = writeln!(
        s,
        "length: character count as the score of every category; tf-idf: word 1-2-grams + logistic (presence) or ridge \
         (intensity, ratings) fitted on the dataset's own train split"
    );
    for w in &report.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for d in &report.datasets {
        s.push('\n');
        block(&mut s, d, &report.columns);
        if per_category && !d.per_category.is_empty() {
            categories(&mut s, d, &report.columns);
        }
    }
    s
}

fn block(s: &mut String, d: &DatasetReport, columns: &[String]) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "== {} ({} rows): {}", d.name, d.rows, d.source);
    for n in &d.notes {
        let _ = writeln!(s, "   {n}");
    }
    let width = d.metrics.iter().map(|m| m.metric.chars().count()).max().unwrap_or(6).max(6);
    let first = format!("{} [95% CI]", columns[0]);
    let _ = write!(s, "{:<width$}  {:<22}", "metric", first);
    for c in &columns[1..] {
        let _ = write!(s, " {c:>9}");
    }
    let _ = writeln!(s, "  detail");
    for m in &d.metrics {
        let _ = write!(s, "{:<width$}", m.metric);
        for (i, c) in columns.iter().enumerate() {
            let cell = m.cell(c);
            let v = num(cell.and_then(|c| c.value));
            if i == 0 {
                let ci = cell
                    .and_then(|c| c.ci)
                    .map_or(String::new(), |[lo, hi]| format!(" [{lo:.3}, {hi:.3}]"));
                let _ = write!(s, "  {:<22}", format!("{v}{ci}"));
            } else {
                let _ = write!(s, " {v:>9}");
            }
        }
        let _ = writeln!(s, "  {}", m.detail.as_deref().unwrap_or(""));
    }
}

fn categories(s: &mut String, d: &DatasetReport, columns: &[String]) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "   per category: ROC-AUC by column (* = in the macro averages)");
    let _ = write!(s, "   {:<46} {:>5} {:>6}", "category", "pos", "neg");
    for c in columns {
        let _ = write!(s, " {c:>9}");
    }
    s.push('\n');
    for r in &d.per_category {
        let name = format!("{}{}", r.category.name(), if r.in_macro { " *" } else { "" });
        let _ = write!(s, "   {name:<46} {:>5} {:>6}", r.positives, r.negatives);
        for c in columns {
            let v = r.values.iter().find(|v| &v.column == c).and_then(|v| v.auc);
            let _ = write!(s, " {:>9}", num(v));
        }
        s.push('\n');
    }
}
