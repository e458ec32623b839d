//! `emoarc score`: streams utterances from a file or stdin through the estimator, in chunks so memory stays
//! flat on any input size, and writes JSONL or CSV in input order, atomically when writing to a file.

use super::output::AtomicOutput;
use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use emoarc::{Category, Estimate, Estimator, InputProblem, Intensities};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Lines scored per estimator call: enough to fill several encoder batches, small enough to keep memory flat.
const CHUNK_LINES: usize = 2048;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// JSONL when the first non-blank line starts with '{', else plain text.
    Auto,
    /// One utterance per line.
    Text,
    /// One JSON object per line with a "text" field and an optional "id".
    Jsonl,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Input file, or - for standard input.
    #[arg(default_value = "-")]
    input: PathBuf,
    /// Output file (written atomically); standard output when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "jsonl")]
    format: OutputFormat,
    #[arg(long, value_enum, default_value = "auto")]
    input_format: InputFormat,
    /// Skip bad lines (reported on stderr) instead of stopping at the first; fails only if every line is bad.
    #[arg(long)]
    skip_bad: bool,
    /// How many top categories to list per utterance in JSONL.
    #[arg(long, default_value_t = 3)]
    top: usize,
    #[command(flatten)]
    model: ModelArgs,
}

/// One input line, parsed.
struct Item {
    id: Value,
    text: String,
    line: usize,
}

/// Why a line could not be scored.
struct BadLine {
    line: usize,
    reason: String,
}

pub fn run(args: ScoreArgs) -> Result<ExitCode> {
    let estimator = args.model.load()?;
    let (reader, total_bytes): (Box<dyn Read>, Option<u64>) = if args.input.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let mut sink = AtomicOutput::create(args.output.as_deref())?;
    let outcome = score_stream(&estimator, BufReader::with_capacity(1 << 16, reader), total_bytes, &args, &mut sink);
    match outcome {
        Ok(summary) => {
            sink.commit()?;
            eprintln!("{summary} [{}]", estimator.backend_name());
            if summary.scored == 0 && summary.skipped > 0 {
                eprintln!("emoarc: error: every line was bad");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        // The uncommitted output removes its temporary file as it drops.
        Err(e) => Err(e),
    }
}

struct Summary {
    scored: usize,
    skipped: usize,
    truncated: usize,
    seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scored {} utterances in {:.2} s ({:.1} utterances/s), {} truncated, {} skipped",
            self.scored,
            self.seconds,
            self.scored as f64 / self.seconds.max(1e-9),
            self.truncated,
            self.skipped
        )
    }
}

fn score_stream(
    estimator: &Estimator,
    mut reader: impl BufRead,
    total_bytes: Option<u64>,
    args: &ScoreArgs,
    sink: &mut AtomicOutput,
) -> Result<Summary> {
    let start = Instant::now();
    let progress = progress_bar(total_bytes);
    let mut summary = Summary {
        scored: 0,
        skipped: 0,
        truncated: 0,
        seconds: 0.0,
    };
    let mut format: Option<InputFormat> = match args.input_format {
        InputFormat::Auto => None,
        f => Some(f),
    };
    if args.format == OutputFormat::Csv {
        let header: Vec<String> = std::iter::once("id".to_string())
            .chain(Category::ALL.iter().map(|c| csv_field(c.name())))
            .collect();
        writeln!(sink, "{}", header.join(","))?;
    }
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut chunk: Vec<Item> = Vec::with_capacity(CHUNK_LINES);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).context("reading input")?;
        if n > 0 {
            line_no += 1;
            progress.inc(n as u64);
            let parsed = parse_line(&buf, line_no, &mut format);
            match parsed {
                Ok(item) => chunk.push(item),
                Err(bad) => reject(bad, args.skip_bad, &mut summary)?,
            }
        }
        if chunk.len() >= CHUNK_LINES || (n == 0 && !chunk.is_empty()) {
            score_chunk(estimator, std::mem::take(&mut chunk), args, sink, &mut summary)?;
            progress.set_message(format!("{} scored", summary.scored));
        }
        if n == 0 {
            break;
        }
    }
    progress.finish_and_clear();
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

fn reject(bad: BadLine, skip: bool, summary: &mut Summary) -> Result<()> {
    if !skip {
        bail!("line {}: {} (use --skip-bad to skip such lines)", bad.line, bad.reason);
    }
    eprintln!("emoarc: skipped line {}: {}", bad.line, bad.reason);
    summary.skipped += 1;
    Ok(())
}

fn score_chunk(estimator: &Estimator, chunk: Vec<Item>, args: &ScoreArgs, sink: &mut AtomicOutput, summary: &mut Summary) -> Result<()> {
    let texts: Vec<&str> = chunk.iter().map(|i| i.text.as_str()).collect();
    let results = estimator.estimate_each(&texts)?;
    for (item, result) in chunk.iter().zip(results) {
        match result {
            Ok(estimate) => {
                write_record(sink, args, item, &estimate)?;
                summary.scored += 1;
                summary.truncated += usize::from(estimate.truncated);
            }
            Err(problem) => reject(
                BadLine {
                    line: item.line,
                    reason: describe(&problem),
                },
                args.skip_bad,
                summary,
            )?,
        }
    }
    Ok(())
}

fn describe(problem: &InputProblem) -> String {
    problem.to_string()
}

/// Parses one raw line; decides the input format on the first non-blank line when it is `auto`.
fn parse_line(raw: &[u8], line: usize, format: &mut Option<InputFormat>) -> Result<Item, BadLine> {
    let bad = |reason: String| BadLine { line, reason };
    let text = std::str::from_utf8(raw).map_err(|e| bad(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let fmt = *format.get_or_insert_with(|| {
        if text.trim_start().starts_with('{') {
            InputFormat::Jsonl
        } else {
            InputFormat::Text
        }
    });
    if fmt != InputFormat::Jsonl {
        if text.trim().is_empty() {
            return Err(bad("empty or whitespace-only text".into()));
        }
        return Ok(Item {
            id: Value::from(line),
            text: text.to_string(),
            line,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad("expected a JSON object with a \"text\" field".into()));
    };
    let text = match obj.remove("text") {
        Some(Value::String(s)) if s.trim().is_empty() => return Err(bad("empty or whitespace-only text".into())),
        Some(Value::String(s)) => s,
        Some(other) => return Err(bad(format!("\"text\" must be a string, found {}", json_kind(&other)))),
        None => return Err(bad("missing \"text\" field".into())),
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => Value::from(line),
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(other) => return Err(bad(format!("\"id\" must be a string or number, found {}", json_kind(&other)))),
    };
    Ok(Item { id, text, line })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn write_record(sink: &mut AtomicOutput, args: &ScoreArgs, item: &Item, estimate: &Estimate) -> Result<()> {
    match args.format {
        OutputFormat::Jsonl => {
            let record = Record {
                id: &item.id,
                intensities: &estimate.intensities,
                top: estimate
                    .intensities
                    .top(args.top)
                    .into_iter()
                    .map(|(c, v)| (c.name(), (f64::from(v) * 1e4).round() / 1e4))
                    .collect(),
                valence: estimate.affect.map(|a| round4(a.valence)),
                arousal: estimate.affect.map(|a| round4(a.arousal)),
            };
            serde_json::to_writer(&mut *sink, &record)?;
            sink.write_all(b"\n")?;
        }
        OutputFormat::Csv => {
            let id = match &item.id {
                Value::String(s) => csv_field(s),
                other => other.to_string(),
            };
            write!(sink, "{id}")?;
            for v in estimate.intensities.as_slice() {
                write!(sink, ",{v:.4}")?;
            }
            sink.write_all(b"\n")?;
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Record<'a> {
    id: &'a Value,
    intensities: &'a Intensities,
    top: Vec<(&'static str, f64)>,
    /// The head's learned valence (`[-1, 1]`) and arousal (`[0, 1]`); absent for heads without them.
    #[serde(skip_serializing_if = "Option::is_none")]
    valence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arousal: Option<f64>,
}

fn round4(v: f32) -> f64 {
    (f64::from(v) * 1e4).round() / 1e4
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn progress_bar(total_bytes: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total_bytes {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                .expect("static template"),
        ),
        None => ProgressBar::new_spinner(),
    }
}

