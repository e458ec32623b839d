//! `emoarc arc`: conversations in, one emotion arc per conversation out (JSONL), and with `--plot DIR` an SVG
//! per conversation. It also owns what the conversation commands share: the input options, reading and
//! scoring conversations in chunks with `--skip-bad`, the arc's JSON form, and atomic output.

use super::output::AtomicOutput;
use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
pub use emoarc::records::rounded;
use emoarc::trajectory::{read_conversations, score_conversations, ArcOptions, TurnContext, TurnReading};
use emoarc::{Conversation, Estimator, Trajectory};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Conversations scored per estimator call: many turns per batch plan, bounded memory on any input size.
const CHUNK_CONVERSATIONS: usize = 256;

/// Input and arc options shared by the conversation commands.
#[derive(Args, Debug)]
pub struct ConversationArgs {
    /// Conversations, JSONL: {"id", "turns": [{"role", "text"}]} or {"id", "messages": [{"role", "content"}]}
    /// per line; - for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Output file (written atomically); standard output when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub arc: ArcFlags,
    /// Skip bad conversations (reported on stderr) instead of stopping at the first; fails only if all are bad.
    #[arg(long)]
    pub skip_bad: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// What an arc follows and how turns are read, for every command that builds arcs.
#[derive(Args, Debug, Clone)]
pub struct ArcFlags {
    /// Whose turns form the arc.
    #[arg(long, default_value = "user")]
    pub speaker: String,
    /// How a turn is read: whole (one text, as score does) or clauses (weighted toward where the turn ends).
    #[arg(long, default_value_t = TurnReading::default())]
    pub reading: TurnReading,
    /// What a speaker's turn is read with: previous (the other party's turn before it, the reply it answers,
    /// when the model was trained to read context; whole reading only) or alone.
    #[arg(long, default_value_t = TurnContext::default())]
    pub context: TurnContext,
    /// Where valence and arousal come from: the documented table of the 40 categories (default: it ranks the
    /// conversation pairs better), or the head's own, learned from human ratings (the table for heads without).
    #[arg(long, value_enum, default_value_t = AffectFrom::Table)]
    pub affect: AffectFrom,
}

/// `--affect`: see [`ArcFlags::affect`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffectFrom {
    Learned,
    Table,
}

impl ArcFlags {
    pub fn options(&self) -> ArcOptions {
        let mut options = ArcOptions {
            speaker: self.speaker.clone(),
            reading: self.reading,
            context: self.context,
            ..ArcOptions::default()
        };
        options.affect.learned = self.affect == AffectFrom::Learned;
        options
    }
}

impl ConversationArgs {
    /// Reads, scores and hands every good conversation to `each` in input order; returns how many were
    /// scored. A bad conversation stops the run, or with `--skip-bad` is reported and skipped.
    pub fn for_each_trajectory(
        &self,
        estimator: &Estimator,
        mut each: impl FnMut(&Conversation, Trajectory) -> Result<()>,
    ) -> Result<ExitCode> {
        let input = super::input::open(&self.input, "conversations (JSONL)")?;
        let options = self.arc.options();
        let (mut scored, mut skipped) = (0usize, 0usize);
        let mut skip = |e: emoarc::Error| -> Result<()> {
            if !self.skip_bad {
                bail!("{e} (use --skip-bad to skip such conversations)");
            }
            eprintln!("emoarc: skipped {e}");
            skipped += 1;
            Ok(())
        };
        let mut conversations = read_conversations(input.reader).peekable();
        while conversations.peek().is_some() {
            let mut chunk = Vec::with_capacity(CHUNK_CONVERSATIONS);
            for parsed in conversations.by_ref().take(CHUNK_CONVERSATIONS) {
                match parsed {
                    Ok(c) => chunk.push(c),
                    Err(e) => skip(e)?,
                }
            }
            for (conversation, result) in chunk.iter().zip(score_conversations(estimator, &chunk, &options)?) {
                match result {
                    Ok(trajectory) => {
                        each(conversation, trajectory)?;
                        scored += 1;
                    }
                    Err(e) => skip(e)?,
                }
            }
        }
        eprintln!("conversations: {scored} scored, {skipped} skipped");
        if scored == 0 && skipped > 0 {
            eprintln!("emoarc: error: every conversation was bad");
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes one JSON record per line, numbers rounded for reading.
pub fn write_line(out: &mut AtomicOutput, record: Value) -> Result<()> {
    serde_json::to_writer(&mut *out, &rounded(record))?;
    out.write_all(b"\n")?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct ArcArgs {
    #[command(flatten)]
    conversations: ConversationArgs,
    /// Also draw each conversation's arc as DIR/<id>.svg.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// How many of the most moving categories to draw under the well-being line.
    #[arg(long, default_value_t = 4)]
    plot_categories: usize,
}

pub fn run(args: ArcArgs) -> Result<ExitCode> {
    let estimator = args.conversations.model.load()?;
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut out = AtomicOutput::create(args.conversations.output.as_deref())?;
    let mut names = HashSet::new();
    let code = args.conversations.for_each_trajectory(&estimator, |conversation, trajectory| {
        if let Some(dir) = &args.plot {
            let path = dir.join(format!("{}.svg", file_stem(&conversation.id, &mut names)));
            plot(conversation, &trajectory, args.plot_categories, &path)?;
        }
        write_line(&mut out, emoarc::records::arc_record(&conversation.id, &trajectory))
    })?;
    out.commit()?;
    Ok(code)
}

/// A file name from a conversation id: unsafe characters become `_`, and a name already used gets a suffix.
fn file_stem(id: &str, used: &mut HashSet<String>) -> String {
    let base: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let base = if base.trim_matches('.').is_empty() { "conversation".to_string() } else { base };
    let mut name = base.clone();
    let mut n = 1;
    while !used.insert(name.clone()) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Writes one conversation's chart through a temporary file, like every other output.
fn plot(conversation: &Conversation, trajectory: &Trajectory, categories: usize, path: &Path) -> Result<()> {
    let svg = super::plot::arc_svg(conversation, trajectory, categories)?;
    let tmp = emoarc::weights::temp_path_for(path);
    std::fs::write(&tmp, svg).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move the plot into {}", path.display()))?;
    Ok(())
}
