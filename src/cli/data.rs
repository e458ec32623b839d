//! `emoarc data check`: validates the labelled corpus and the evaluation sets (see `emoarc::data::check`) and
//! prints counts per split and per category; exits non-zero when anything must be fixed.

use anyhow::Result;
use clap::{Args, Subcommand};
use emoarc::data::{self, Corpus, Requirements};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Check the corpus: duplicates across splits, unknown categories, off-scale values, coverage.
    Check {
        /// The data folder (corpus/, intensity-pairs.jsonl, neutral.txt); default: data/ here, else in the
        /// emoarc checkout.
        #[arg(long)]
        data: Option<PathBuf>,
        /// How many within-split near-duplicate warnings to print.
        #[arg(long, default_value_t = 10)]
        show_warnings: usize,
    },
}

pub fn run(args: DataArgs) -> Result<ExitCode> {
    let DataCommand::Check { data, show_warnings } = args.command;
    let data = super::repo_path(data, "data", "data")?;
    let corpus = Corpus::load_dir(&data.join("corpus"))?;
    let pairs = data::load_pairs(&data.join("intensity-pairs.jsonl"))?;
    let neutral = data::load_lines(&data.join("neutral.txt"))?;
    let held_out: Vec<(String, String)> = pairs
        .iter()
        .flat_map(|p| {
            [
                (format!("intensity-pairs.jsonl {} (weaker)", p.id), p.weaker.clone()),
                (format!("intensity-pairs.jsonl {} (stronger)", p.id), p.stronger.clone()),
            ]
        })
        .chain(neutral.iter().enumerate().map(|(i, t)| (format!("neutral.txt #{}", i + 1), t.clone())))
        .collect();
    let report = data::check(&corpus, Requirements::default(), &held_out);
    println!("examples: {} ({})", report.examples, fmt_splits(&report.per_split));
    println!(
        "situations (groups, and lines without one; the split draws these): {} ({})",
        report.situations_per_split.values().sum::<usize>(),
        fmt_splits(&report.situations_per_split)
    );
    println!(
        "neutral or nearly: {:.1}%   two or more categories: {:.1}%",
        report.neutral_share * 100.0,
        report.multi_share * 100.0
    );
    println!("intensity pairs: {}   neutral evaluation lines: {}", pairs.len(), neutral.len());
    println!("{:<46} {:>8} {:>6} {:>6} {:>6} {:>6}", "category", "examples", "0.25", "0.5", "0.75", "1.0");
    for (c, n) in &report.per_category {
        println!(
            "{:<46} {:>8} {:>6} {:>6} {:>6} {:>6}",
            c.name(),
            n.examples,
            n.levels[0],
            n.levels[1],
            n.levels[2],
            n.levels[3]
        );
    }
    println!("length vs strongest label (Pearson r; files written before the rule are marked *):");
    for lc in &report.length_correlation {
        let name = std::path::Path::new(&lc.file).file_name().and_then(|n| n.to_str()).unwrap_or(&lc.file);
        let mark = if data::LENGTH_TIED_FILES.contains(&name) { "*" } else { " " };
        let r = lc.r.map_or("-".into(), |r| format!("{r:+.3}"));
        println!("  {mark} {:<40} {:>6} lines  r = {r}", name, lc.examples);
    }
    if !report.warnings.is_empty() {
        println!("{} near-duplicates within a split (not errors):", report.warnings.len());
        for w in report.warnings.iter().take(show_warnings) {
            println!("  {w}");
        }
    }
    // The exchange sets: lines read after the message they answer (optional folder).
    let mut errors = report.errors.clone();
    let exchanges_dir = data.join("exchanges");
    if exchanges_dir.is_dir() {
        let exchanges = Corpus::load_dir(&exchanges_dir)?;
        let splits = exchanges.examples.iter().fold(std::collections::BTreeMap::new(), |mut m, e| {
            *m.entry(e.split.name()).or_insert(0usize) += 1;
            m
        });
        println!("exchange lines: {} ({})", exchanges.examples.len(), fmt_splits(&splits));
        for lc in data::length_correlations(&exchanges.examples) {
            let r = lc.r.map_or("-".into(), |r| format!("{r:+.3}"));
            println!("    {:<40} {:>6} lines  r = {r} (length vs strongest label)", lc.file, lc.examples);
        }
        errors.extend(data::check_exchanges(&exchanges, Requirements::default().max_length_correlation));
    }
    if errors.is_empty() {
        println!("data check: ok");
        return Ok(ExitCode::SUCCESS);
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    eprintln!("data check: {} errors", errors.len());
    Ok(ExitCode::FAILURE)
}

fn fmt_splits(per_split: &std::collections::BTreeMap<&str, usize>) -> String {
    per_split.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}
