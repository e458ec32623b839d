//! `emoarc eval-arcs`: checks the arc rewards against the authored better/worse conversation pairs and prints,
//! per reward, the share of pairs where the better conversation scores higher (overall, per half, per failure
//! kind), and the accommodation guard's mean on better and worse conversations. Beside the rewards, trivial
//! baselines that read no emotion are scored on the same pairs (the final user turn says "thank", more
//! assistant characters, a longer final user turn), so each accuracy has its context. `--json` for machines.

use super::arc::{rounded, ArcFlags};
use super::reward::load_config;
use super::ModelArgs;
use anyhow::{Context, Result};
use clap::Args;
use emoarc::eval::arcs::{trivial_baselines, RuleAgreement, TrivialBaseline};
use emoarc::reward::{evaluate_pairs, find_pairs, Agreement, ConversationPair, PairReport, RewardFn, TermName};
use emoarc::trajectory::{read_conversations, score_conversations, TurnContext, TurnReading};
use emoarc::Conversation;
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct EvalArcsArgs {
    /// Conversation pairs: JSONL conversations with "pair", "outcome" (better or worse) and "failure" fields.
    /// Default: data/conversations/pairs.jsonl here, else in the emoarc checkout.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Reward parameters (and, with [terms], a weighted reward to evaluate too).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A weighted reward to evaluate besides the built-ins, such as terminal=1,accommodation=0.5.
    #[arg(long)]
    reward: Option<String>,
    /// After the tables, list the pairs a reward does not rank right (default terminal), with both rewards and
    /// the speaker's last turn of each conversation (the JSON report always has every pair's rewards).
    #[arg(long, value_name = "REWARD", num_args = 0..=1, default_missing_value = "terminal")]
    misses: Option<String>,
    #[command(flatten)]
    arc: ArcFlags,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: EvalArcsArgs) -> Result<ExitCode> {
    let config = load_config(args.config.as_deref(), args.reward.as_deref())?;
    let weighted = (!config.terms.is_empty()).then(|| config.build()).transpose()?;
    let data = super::repo_path(args.data.clone(), "data/conversations/pairs.jsonl", "data")?;
    let conversations = read_conversations(super::input::open(&data, "conversation pairs (JSONL)")?.reader)
        .collect::<emoarc::Result<Vec<Conversation>>>()
        .with_context(|| format!("reading {}", data.display()))?;
    let pairs = find_pairs(&conversations)?;
    let builtins: Vec<Box<dyn RewardFn>> = TermName::ALL
        .into_iter()
        .filter(|&t| t != TermName::Accommodation)
        .map(|t| config.term(t))
        .collect();
    let mut rewards: Vec<&dyn RewardFn> = builtins.iter().map(|b| b.as_ref() as &dyn RewardFn).collect();
    if let Some(w) = &weighted {
        rewards.push(w);
    }
    if let Some(reward) = args.misses.as_deref().filter(|m| !rewards.iter().any(|r| r.name() == *m)) {
        let known: Vec<&str> = rewards.iter().map(|r| r.name()).collect();
        anyhow::bail!("--misses: no reward named {reward:?} is evaluated (these are: {})", known.join(", "));
    }
    let estimator = args.model.load()?;
    let options = args.arc.options();
    let trajectories = score_conversations(&estimator, &conversations, &options)?
        .into_iter()
        .collect::<emoarc::Result<Vec<_>>>()?;
    let report = evaluate_pairs(&pairs, &trajectories, &rewards, &config.accommodation);
    let baselines = trivial_baselines(&pairs, &conversations, &options.speaker);
    let model = format!("{} (head {})", estimator.spec().name, estimator.head_name());
    // What the speaker's turns were read with, as it happened: the reply before them only where the model reads it.
    let context = match options.context {
        TurnContext::Previous if options.reading == TurnReading::Whole && estimator.reads_context() => "the reply before",
        _ => "alone",
    };
    if args.json {
        let doc = json!({"data": data, "model": model, "reading": options.reading.name(), "context": context, "speaker": options.speaker, "report": report, "baselines": baselines});
        println!("{}", serde_json::to_string_pretty(&rounded(doc))?);
    } else {
        let heading = format!(
            "{} pairs in {}; model {model}, {} reading, turns read {context}, speaker {}",
            report.pairs,
            data.display(),
            options.reading.name(),
            options.speaker
        );
        print!("{}", table(&report, &baselines, &heading));
        if let Some(reward) = &args.misses {
            print!("{}", misses(&report, &pairs, reward, &conversations, &options.speaker));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The pairs `reward` ranks wrong or ties, each with both rewards and the speaker's last turns: what to read
/// when a share falls short. `report.per_pair` is in the order of `pairs`.
fn misses(report: &PairReport, pairs: &[ConversationPair], reward: &str, conversations: &[Conversation], speaker: &str) -> String {
    let last_turn = |i: usize| conversations[i].last_text_of(speaker).unwrap_or_default().replace('\n', " ");
    let missed: Vec<_> =
        report.per_pair.iter().zip(pairs).filter(|(scores, _)| scores.ranked_right(reward) == Some(false)).collect();
    let mut s = format!("\npairs `{reward}` does not rank right: {} of {}\n", missed.len(), report.pairs);
    for (scores, pair) in missed {
        let [b, w] = scores.rewards[reward];
        let _ = writeln!(s, "\n{} ({}): better {b:.4}, worse {w:.4}", scores.pair, scores.failure.as_deref().unwrap_or("unspecified"));
        let _ = writeln!(s, "  better {}: {}", scores.better, last_turn(pair.better));
        let _ = writeln!(s, "  worse  {}: {}", scores.worse, last_turn(pair.worse));
    }
    s
}

/// The report as two Markdown tables (ready to paste into the README).
fn table(report: &PairReport, baselines: &[TrivialBaseline], heading: &str) -> String {
    let failures: Vec<&String> = report.guard.by_failure.keys().collect();
    let mut s = format!("eval-arcs: {heading}\n\n");
    let share = |a: &Agreement| format!("{:.2}", a.share);
    let _ = writeln!(
        s,
        "| reward | better ranked higher | half A | half B | {} |\n|---|---|---|---|{}",
        failures.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(failures.len())
    );
    for r in &report.rewards {
        let per_failure: Vec<String> = failures.iter().map(|f| r.by_failure.get(*f).map_or("-".into(), share)).collect();
        let _ = writeln!(
            s,
            "| {} | {} ({}/{}{}) | {} | {} | {} |",
            r.reward,
            share(&r.all),
            r.all.better_higher,
            r.all.pairs,
            if r.all.ties > 0 { format!(", {} ties", r.all.ties) } else { String::new() },
            share(&r.half_a),
            share(&r.half_b),
            per_failure.join(" | ")
        );
    }
    // The trivial baselines on the same pairs, as rows of the same table.
    let rule = |a: &RuleAgreement| format!("{:.2}", a.share);
    for b in baselines {
        let per_failure: Vec<String> = failures.iter().map(|f| b.by_failure.get(*f).map_or("-".into(), rule)).collect();
        let _ = writeln!(
            s,
            "| baseline: {} | {} ({}/{}, {} wrong, {} ties) | {} | {} | {} |",
            b.rule,
            rule(&b.all),
            b.all.right,
            b.all.pairs,
            b.all.wrong,
            b.all.ties,
            rule(&b.half_a),
            rule(&b.half_b),
            per_failure.join(" | ")
        );
    }
    let _ = writeln!(
        s,
        "\n(baselines read no emotion: a reward should beat them; right = the better conversation strictly higher)"
    );
    let g = &report.guard;
    let column = |f: &dyn Fn(&emoarc::reward::GuardMeans) -> String| -> String {
        failures.iter().map(|k| f(&g.by_failure[*k])).collect::<Vec<_>>().join(" | ")
    };
    let _ = writeln!(
        s,
        "\naccommodation guard (mean excess of reply valence over the speaker's):\n\n| | all | {} |\n|---|---|{}",
        failures.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(failures.len())
    );
    let _ = writeln!(s, "| better | {:.3} | {} |", g.all.better, column(&|m| format!("{:.3}", m.better)));
    let _ = writeln!(s, "| worse | {:.3} | {} |", g.all.worse, column(&|m| format!("{:.3}", m.worse)));
    let _ = writeln!(
        s,
        "| worse higher | {}/{} | {} |",
        g.all.worse_higher,
        g.all.pairs,
        column(&|m| format!("{}/{}", m.worse_higher, m.pairs))
    );
    s
}
