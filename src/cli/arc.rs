//! `emoarc arc`: conversations in, one emotion arc per conversation out (JSONL), and with `--plot DIR` an SVG
//! per conversation. It also owns what the conversation commands share: the input options, reading and
//! scoring conversations in chunks with `--skip-bad`, the arc's JSON form, and atomic output.

use super::output::AtomicOutput;
use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
pub use emoarc::records::rounded;
use emoarc::trajectory::{read_conversations, score_conversations, ArcOptions, TurnReading};
use emoarc::{Category, Conversation, EmotionArc, Estimator, Trajectory};
use plotters::prelude::*;
use serde_json::Value;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
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
    /// How a turn is read: clauses (weighted toward where the turn ends) or whole (one text, as score does).
    #[arg(long, default_value = "clauses")]
    pub reading: TurnReading,
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
        let reader: Box<dyn Read> = if self.input.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(File::open(&self.input).with_context(|| format!("cannot open {}", self.input.display()))?)
        };
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
        let mut conversations = read_conversations(BufReader::with_capacity(1 << 16, reader)).peekable();
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
            plot(&trajectory, args.plot_categories, &path)?;
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

/// The categories that moved most over the arc (largest range), strongest mover first.
fn top_movers(arc: &EmotionArc, k: usize) -> Vec<(Category, Vec<f32>)> {
    let mut movers: Vec<(Category, Vec<f32>, f32)> = Category::ALL
        .iter()
        .map(|&c| {
            let series = arc.category(c);
            let (lo, hi) = series.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            (c, series, hi - lo)
        })
        .collect();
    movers.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    movers.into_iter().take(k).map(|(c, s, _)| (c, s)).collect()
}

/// Two stacked charts against the conversation's turn numbers: well-being (0–100) on top, the most moving
/// categories' intensities (0–1) below. Written through a temporary file like every other output.
fn plot(trajectory: &Trajectory, categories: usize, path: &Path) -> Result<()> {
    let arc = trajectory.arc();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (upper, lower) = root.split_vertically(320);
        let turns = arc.turns();
        let x_end = turns.last().copied().unwrap_or(0).max(1) as f32;
        let x_range = -0.25f32..x_end + 0.25;
        let points = |ys: &[f32]| -> Vec<(f32, f32)> { turns.iter().map(|&t| t as f32).zip(ys.iter().copied()).collect() };

        let mut chart = ChartBuilder::on(&upper)
            .caption(format!("{}: well-being of {}", trajectory.id, trajectory.speaker), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(x_range.clone(), 0f32..100f32)
            .map_err(draw_error)?;
        configure_axes(&mut chart, x_end, "well-being")?;
        chart
            .draw_series(LineSeries::new(points(arc.wellbeing()), BLUE.stroke_width(2)).point_size(4))
            .map_err(draw_error)?;

        let mut chart = ChartBuilder::on(&lower)
            .caption("most moving categories", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(x_range, 0f32..1f32)
            .map_err(draw_error)?;
        configure_axes(&mut chart, x_end, "intensity")?;
        for (i, (category, series)) in top_movers(arc, categories).into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points(&series), color.stroke_width(2)).point_size(3))
                .map_err(draw_error)?
                .label(category.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    let tmp = emoarc::weights::temp_path_for(path);
    std::fs::write(&tmp, svg).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move the plot into {}", path.display()))?;
    Ok(())
}

/// Grid and labels; the x axis counts conversation turns, so only whole numbers are labelled.
fn configure_axes<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf32, plotters::coord::types::RangedCoordf32>>,
    x_end: f32,
    y_desc: &str,
) -> Result<()> {
    let whole = |x: &f32| {
        if (x - x.round()).abs() < 1e-3 {
            format!("{}", x.round() as i64)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(x_end as usize + 1)
        .x_label_formatter(&whole)
        .x_desc("turn")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| anyhow::anyhow!("drawing the arc: {e}"))
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the arc: {e}")
}
