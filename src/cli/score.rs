//! `emoarc score`: streams utterances from a file or stdin through the estimator, in chunks so memory stays
//! flat on any input size, and writes JSONL or CSV in input order, atomically when writing to a file.

use super::output::AtomicOutput;
use super::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use emoarc::{Category, Estimate, Estimator, InputProblem, OnLong, NUM_CATEGORIES};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Lines scored per estimator call: enough to fill several encoder batches, small enough to keep memory flat.
const CHUNK_LINES: usize = 2048;

/// Non-blank lines read ahead to decide the input format (and to recognise CSV).
const SNIFF_LINES: usize = 6;

/// Column names that make a comma- or tab-separated first line a CSV header.
const CSV_COLUMNS: &[&str] = &[
    "id", "text", "utterance", "sentence", "content", "message", "body", "comment", "review", "tweet", "label",
    "labels", "emotion", "emotions", "category", "speaker", "role", "turn", "score",
];

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// JSONL when the first non-blank line starts with '{', else plain text; CSV is refused.
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
    /// How many top categories to list per utterance in JSONL (at most 40).
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Largest text accepted, in bytes, with --on-long error or chunk (default and most: 1048576); larger texts
    /// are bad lines.
    #[arg(long, value_name = "N")]
    max_text_bytes: Option<usize>,
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

pub fn run(mut args: ScoreArgs) -> Result<ExitCode> {
    if args.top > NUM_CATEGORIES {
        eprintln!("emoarc: note: --top {} is more than the {NUM_CATEGORIES} categories; listing all {NUM_CATEGORIES}", args.top);
        args.top = NUM_CATEGORIES;
    }
    if let Some(n) = args.max_text_bytes {
        if n == 0 {
            bail!("--max-text-bytes must be at least 1");
        }
        if args.model.on_long == OnLong::Truncate {
            eprintln!("emoarc: note: --max-text-bytes applies with --on-long error or chunk; truncation cuts long texts instead");
        }
    }
    let input = super::input::open(&args.input, "utterances")?;
    let total_bytes = input.size;
    let mut lines = Lines::new(input.reader, input.name);
    let format = decide_format(&mut lines, args.input_format)?;
    let mut builder = args.model.builder()?;
    if let Some(n) = args.max_text_bytes {
        builder = builder.max_text_bytes(n);
    }
    let estimator = builder.build()?;
    args.model.warn_if_uncalibrated(&estimator);
    let mut sink = AtomicOutput::create(args.output.as_deref())?;
    let outcome = score_stream(&estimator, &mut lines, format, total_bytes, &args, &mut sink);
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

/// Raw input lines, numbered from 1, with some lines read ahead (a leading byte-order mark is gone already:
/// [`super::input`]).
struct Lines<R> {
    reader: R,
    name: String,
    line_no: usize,
    ahead: VecDeque<(usize, Vec<u8>)>,
    done: bool,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R, name: String) -> Self {
        Lines {
            reader,
            name,
            line_no: 0,
            ahead: VecDeque::new(),
            done: false,
        }
    }

    /// The next line (with its terminator) and its number, read ahead or from the input.
    fn next_line(&mut self) -> Result<Option<(usize, Vec<u8>)>> {
        if let Some(l) = self.ahead.pop_front() {
            return Ok(Some(l));
        }
        self.read_line()
    }

    fn read_line(&mut self) -> Result<Option<(usize, Vec<u8>)>> {
        if self.done {
            return Ok(None);
        }
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", self.name))?;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        self.line_no += 1;
        Ok(Some((self.line_no, buf)))
    }

    /// Reads ahead until `n` non-blank lines are buffered (or the input ends); returns them, without their
    /// terminators, as text.
    fn sniff(&mut self, n: usize) -> Result<Vec<(usize, String)>> {
        let text = |raw: &[u8]| String::from_utf8_lossy(raw).trim_end_matches(['\n', '\r']).to_string();
        let mut seen: Vec<(usize, String)> = self
            .ahead
            .iter()
            .map(|(no, raw)| (*no, text(raw)))
            .filter(|(_, t)| !t.trim().is_empty())
            .collect();
        while seen.len() < n {
            let Some((no, raw)) = self.read_line()? else { break };
            let t = text(&raw);
            if !t.trim().is_empty() {
                seen.push((no, t));
            }
            self.ahead.push_back((no, raw));
        }
        Ok(seen)
    }
}

/// Decides the input format from the first non-blank lines: JSONL when the first starts with '{' (auto), else
/// plain text; input that looks like CSV or a JSON array is refused under auto and scored with a warning under
/// text.
/// Whether the first non-blank lines look like a JSON array (of objects or strings), not text that happens to
/// start with a bracket ("[laughs] that's funny"): one line that parses as an array, or a line holding `[` alone
/// (or `[` then an object or string) followed by an object or a string.
fn json_array(texts: &[&str]) -> bool {
    let Some(first) = texts.first().map(|t| t.trim()) else { return false };
    if serde_json::from_str::<Value>(first).is_ok_and(|v| v.is_array()) {
        return true;
    }
    let opens = |t: &str| t.starts_with('{') || t.starts_with('"');
    match first.strip_prefix('[').map(str::trim_start) {
        Some("") => texts.get(1).is_some_and(|t| opens(t.trim_start())),
        Some(rest) => opens(rest),
        None => false,
    }
}

fn decide_format<R: BufRead>(lines: &mut Lines<R>, asked: InputFormat) -> Result<InputFormat> {
    if asked == InputFormat::Jsonl {
        return Ok(InputFormat::Jsonl);
    }
    let sample = lines.sniff(SNIFF_LINES)?;
    if asked == InputFormat::Auto && sample.first().is_some_and(|(_, t)| t.trim_start().starts_with('{')) {
        // A line holding `{` alone cannot be a JSONL record: the objects are spread over lines.
        if let Some((line, _)) = sample.first().filter(|(_, t)| t.trim() == "{") {
            bail!(
                "{} looks like pretty-printed JSON (line {line} opens an object and ends); emoarc score reads JSONL, \
                 one whole object per line, so convert it (e.g. jq -c .)",
                lines.name
            );
        }
        return Ok(InputFormat::Jsonl);
    }
    let texts: Vec<&str> = sample.iter().map(|(_, t)| t.as_str()).collect();
    if json_array(&texts) {
        if asked == InputFormat::Auto {
            bail!(
                "{} looks like a JSON array (line 1: {:?}); emoarc score reads JSONL, one object with a \"text\" \
                 field per line, or plain text, so convert it (e.g. jq -c '.[]'), or pass --input-format text to \
                 score each line as text anyway",
                lines.name,
                texts[0]
            );
        }
        eprintln!("emoarc: warning: {} looks like a JSON array; scoring each line as text as --input-format text asks", lines.name);
    }
    if let (Some(sep), Some((line, header))) = (csv_separator(&texts), sample.first()) {
        let what = if sep == '\t' { "tab-separated" } else { "CSV" };
        if asked == InputFormat::Auto {
            bail!(
                "{} looks like {what}: line {line} is a header ({header:?}) and the lines after it have as many \
                 separators; emoarc score reads plain text (one utterance per line) or JSONL (one object with a \
                 \"text\" field per line), so convert it, or pass --input-format text to score each line, header \
                 included, as text anyway",
                lines.name
            );
        }
        eprintln!(
            "emoarc: warning: {} looks like {what} (header on line {line}: {header:?}); scoring each whole line, \
             header included, as text as --input-format text asks",
            lines.name
        );
    }
    Ok(InputFormat::Text)
}

/// The separator (',' or tab) when the first line is a CSV header — short names without spaces, one of them a
/// usual column name such as `text` or `id` — and every later sampled line has as many separators outside
/// quotes; `None` otherwise, as for sentences with commas.
fn csv_separator(lines: &[&str]) -> Option<char> {
    let (header, rest) = lines.split_first()?;
    if rest.is_empty() {
        return None;
    }
    [',', '\t'].into_iter().find(|&sep| {
        let fields = split_unquoted(header, sep);
        if fields.len() < 2 {
            return false;
        }
        let names: Vec<String> = fields.iter().map(|f| f.trim_matches('"').to_ascii_lowercase()).collect();
        let name_like = |n: &String| {
            !n.is_empty() && n.len() <= 40 && n.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        names.iter().all(name_like)
            && names.iter().any(|n| CSV_COLUMNS.contains(&n.as_str()))
            && rest.iter().all(|l| split_unquoted(l, sep).len() == fields.len())
    })
}

/// Splits a line at `sep` outside double quotes.
fn split_unquoted(line: &str, sep: char) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            fields.push(&line[start..i]);
            start = i + c.len_utf8();
        }
    }
    fields.push(&line[start..]);
    fields
}

struct Summary {
    scored: usize,
    skipped: usize,
    truncated: usize,
    blank: usize,
    seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scored {} utterances in {:.2} s ({:.1} utterances/s), {} truncated, {} skipped, {} blank",
            self.scored,
            self.seconds,
            self.scored as f64 / self.seconds.max(1e-9),
            self.truncated,
            self.skipped,
            self.blank
        )
    }
}

fn score_stream<R: BufRead>(
    estimator: &Estimator,
    lines: &mut Lines<R>,
    format: InputFormat,
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
        blank: 0,
        seconds: 0.0,
    };
    if args.format == OutputFormat::Csv {
        let header: Vec<String> = std::iter::once("id".to_string())
            .chain(Category::ALL.iter().map(|c| csv_field(c.name())))
            .collect();
        writeln!(sink, "{}", header.join(","))?;
    }
    let mut chunk: Vec<Item> = Vec::with_capacity(CHUNK_LINES);
    loop {
        let next = lines.next_line()?;
        let end = next.is_none();
        if let Some((line_no, raw)) = next {
            progress.inc(raw.len() as u64);
            match parse_line(&raw, line_no, format) {
                Ok(None) => summary.blank += 1,
                // The estimator refuses texts over --max-text-bytes itself (unless truncating), per line.
                Ok(Some(item)) => chunk.push(item),
                Err(bad) => reject(bad, args.skip_bad, &mut summary)?,
            }
        }
        if chunk.len() >= CHUNK_LINES || (end && !chunk.is_empty()) {
            score_chunk(estimator, std::mem::take(&mut chunk), args, sink, &mut summary)?;
            progress.set_message(format!("{} scored", summary.scored));
        }
        if end {
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

/// Why the library refused a text, with the flag that changes it.
fn describe(problem: &InputProblem) -> String {
    match problem {
        InputProblem::TooLong { tokens, max } => format!(
            "{tokens} tokens exceed the maximum length of {max} (pass --on-long truncate or --on-long chunk to score it)"
        ),
        InputProblem::TooLarge { bytes, max } => format!(
            "the text is {bytes} bytes, over the limit of {max} bytes (raise it with --max-text-bytes or pass --on-long truncate)"
        ),
        other => other.to_string(),
    }
}

/// Parses one raw line in the decided format; `None` for a blank line: an empty one, or in JSONL one of only
/// white space. (A plain-text line of only white space is still a bad line, as tests/cli.rs expects.)
fn parse_line(raw: &[u8], line: usize, format: InputFormat) -> Result<Option<Item>, BadLine> {
    let bad = |reason: String| BadLine { line, reason };
    let text = std::str::from_utf8(raw).map_err(|e| bad(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    // Blank lines (empty or white space only) carry no utterance in either format: skipped and counted.
    if text.trim().is_empty() {
        return Ok(None);
    }
    if format != InputFormat::Jsonl {
        return Ok(Some(Item {
            id: Value::from(line),
            text: text.to_string(),
            line,
        }));
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
    Ok(Some(Item { id, text, line }))
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
            let record = emoarc::records::score_record(&item.id, estimate, args.top);
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

