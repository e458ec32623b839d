//! Readers for the public, human-labelled datasets `emoarc eval` scores on (`../shared/datasets` by default;
//! see its README): GoEmotions, EmoBank, XED (English) and Empathic Reactions, in the formats they are
//! published in. Category labels become a [`PresenceSet`] through the source's [`LabelMap`]; continuous ratings
//! a [`RatingSet`]. Rows with no text are dropped and counted. Bad lines are [`EvalError::Line`] errors.

use super::labelmap::{LabelMap, Presence};
use super::{EvalError, LineProblem};
use crate::data::Example;
use crate::taxonomy::Category;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Rows with presence labels for some categories.
#[derive(Debug, Clone)]
pub struct PresenceSet {
    /// For reports, such as "GoEmotions dev".
    pub name: String,
    /// The file(s) read.
    pub source: String,
    /// The rows' texts (never empty), in file order.
    pub texts: Vec<String>,
    /// The scored categories, in canonical order.
    pub categories: Vec<Category>,
    /// `labels[row][k]` is what row `row` says about `categories[k]`.
    pub labels: Vec<Vec<Presence>>,
    /// Rows whose only label is the dataset's neutral one (the map's `neutral` line): real text its
    /// annotators found no emotion in, on which any high output is a false positive.
    pub neutral: Vec<bool>,
    /// Rows left out because their text was empty.
    pub dropped: usize,
}

impl PresenceSet {
    /// The authored corpus's examples: all 40 categories, present when labelled above 0.
    pub fn from_examples(name: &str, source: &str, examples: &[&Example]) -> PresenceSet {
        PresenceSet {
            name: name.into(),
            source: source.into(),
            texts: examples.iter().map(|e| e.text.clone()).collect(),
            categories: Category::ALL.to_vec(),
            // The corpus's neutral lines are data/neutral.txt, reported on their own.
            neutral: vec![false; examples.len()],
            labels: examples
                .iter()
                .map(|e| {
                    e.labels
                        .as_slice()
                        .iter()
                        .map(|&v| if v > 0.0 { Presence::Positive } else { Presence::Negative })
                        .collect()
                })
                .collect(),
            dropped: 0,
        }
    }

    /// Rows positive for `categories[k]`.
    pub fn positives(&self, k: usize) -> usize {
        self.labels.iter().filter(|r| r[k] == Presence::Positive).count()
    }

    /// Rows negative for `categories[k]`.
    pub fn negatives(&self, k: usize) -> usize {
        self.labels.iter().filter(|r| r[k] == Presence::Negative).count()
    }
}

/// One continuous rating per row.
#[derive(Debug, Clone)]
pub struct RatingTarget {
    /// The rating's name in the source ("V", "empathy").
    pub name: String,
    /// The category the label map gives it, when it has one.
    pub category: Option<Category>,
    /// The rating of each row, in the order of [`RatingSet::texts`], on the source's own scale (EmoBank's V
    /// and A 1 to 5, Empathic Reactions' 1 to 7).
    pub gold: Vec<f64>,
}

/// Rows with continuous ratings.
#[derive(Debug, Clone)]
pub struct RatingSet {
    /// For reports, such as "EmoBank dev".
    pub name: String,
    /// The file(s) read.
    pub source: String,
    /// The rows' texts (never empty), in file order.
    pub texts: Vec<String>,
    /// Every rating the source gives, each with one value per row.
    pub targets: Vec<RatingTarget>,
    /// Rows left out because their text was empty.
    pub dropped: usize,
}

impl RatingSet {
    /// The rating called `name` (as in [`RatingTarget::name`]), if the source has it.
    pub fn target(&self, name: &str) -> Option<&RatingTarget> {
        self.targets.iter().find(|t| t.name == name)
    }
}

pub(super) fn read(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn line_err(path: &Path, line: usize, problem: LineProblem) -> EvalError {
    EvalError::Line {
        path: path.to_path_buf(),
        line,
        problem,
    }
}

fn bad_value(field: &str, value: &str, reason: &str) -> LineProblem {
    LineProblem::BadValue {
        field: field.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Labels that the map has no line for (reported, not an error: the map leaves them unmapped).
fn unmapped_labels<'a>(map: &LabelMap, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names.into_iter().filter(|n| map.get(n).is_none()).map(String::from).collect()
}

/// GoEmotions `{split}.tsv` (`text<TAB>ids<TAB>comment id`, ids comma-separated indices into `emotions.txt`).
pub fn goemotions(dir: &Path, split: &str, map: &LabelMap) -> Result<(PresenceSet, Vec<String>), EvalError> {
    let names_path = dir.join("emotions.txt");
    let names: Vec<String> = read(&names_path)?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if names.is_empty() {
        return Err(EvalError::File {
            path: names_path,
            reason: "no label names".into(),
        });
    }
    let path = dir.join(format!("{split}.tsv"));
    let text = read(&path)?;
    let categories = map.scored();
    let mut set = PresenceSet {
        name: format!("GoEmotions {split}"),
        source: path.display().to_string(),
        texts: Vec::new(),
        categories,
        labels: Vec::new(),
        neutral: Vec::new(),
        dropped: 0,
    };
    for row in tsv_rows(&text, &path, 3) {
        let (line, cols) = row?;
        let mut present = Vec::new();
        for id in cols[1].split(',') {
            let name = id
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|k| names.get(k))
                .ok_or_else(|| line_err(&path, line, LineProblem::UnknownLabel(id.trim().into())))?;
            present.push(name.as_str());
        }
        if cols[0].trim().is_empty() {
            set.dropped += 1;
            continue;
        }
        set.labels.push(map.presence(&present, &set.categories));
        set.neutral.push(map.is_neutral(&present));
        set.texts.push(cols[0].to_string());
    }
    Ok((set, unmapped_labels(map, names.iter().map(String::as_str))))
}

/// GoEmotions' comments of one split by comment id (the third column), for the relabelled comments
/// (`data/relabels`), which name them by id and keep no text.
pub fn goemotions_comments(dir: &Path, split: &str) -> Result<HashMap<String, String>, EvalError> {
    let path = dir.join(format!("{split}.tsv"));
    let text = read(&path)?;
    let mut comments = HashMap::new();
    for row in tsv_rows(&text, &path, 3) {
        let (_, cols) = row?;
        comments.insert(cols[2].to_string(), cols[0].to_string());
    }
    Ok(comments)
}

/// The non-empty lines of a tab-separated file's `text` as (line number, columns); a line without exactly
/// `columns` columns is an error naming it.
fn tsv_rows<'a>(
    text: &'a str,
    path: &'a Path,
    columns: usize,
) -> impl Iterator<Item = Result<(usize, Vec<&'a str>), EvalError>> + 'a {
    text.lines().enumerate().filter_map(move |(i, raw)| {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.is_empty() {
            return None;
        }
        let cols: Vec<&str> = raw.split('\t').collect();
        Some(if cols.len() == columns {
            Ok((i + 1, cols))
        } else {
            Err(line_err(path, i + 1, LineProblem::Columns { expected: columns, found: cols.len() }))
        })
    })
}

/// XED's label ids: 1-8 (Plutchik, alphabetical), 9 = the neutral file.
pub const XED_LABELS: [&str; 10] =
    ["", "anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust", "neutral"];

/// Undoes XED's tokenisation the way `scripts/train.py` does (`normalise_xed`): white space before
/// `. , ! ? ; : % ) ] }` and before `n't 's 're 'm 'll 've 'd` (case-insensitive, at a word end) is removed,
/// white space after `( [ {` too, and the ends are trimmed. Applied to the emotional and the neutral lines alike.
pub fn normalise_xed(text: &str) -> String {
    const CONTRACTIONS: [&str; 7] = ["n't", "'s", "'re", "'m", "'ll", "'ve", "'d"];
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    // 1. contractions
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let joins = CONTRACTIONS.iter().any(|c| {
                let n = c.chars().count();
                j + n <= chars.len()
                    && chars[j..j + n].iter().zip(c.chars()).all(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
                    && chars.get(j + n).map_or(true, |&next| !is_word(next))
            });
            if !joins {
                out.extend(&chars[i..j]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    // 2. white space before closing punctuation; 3. after opening brackets.
    let mut joined: Vec<char> = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if out[i].is_whitespace() {
            let mut j = i;
            while j < out.len() && out[j].is_whitespace() {
                j += 1;
            }
            let before_close = j < out.len() && ".,!?;:%)]}".contains(out[j]);
            let after_open = joined.last().is_some_and(|&c| "([{".contains(c));
            if !before_close && !after_open {
                joined.extend(&out[i..j]);
            }
            i = j;
        } else {
            joined.push(out[i]);
            i += 1;
        }
    }
    joined.into_iter().collect::<String>().trim().to_string()
}

/// XED English: `en-annotated.{split}.tsv` (`text<TAB>ids`, ids like `1, 4`) and `neu_en.{split}.txt`
/// (`9<TAB>text`, neutral), both normalised with [`normalise_xed`].
pub fn xed(dir: &Path, split: &str, map: &LabelMap) -> Result<(PresenceSet, Vec<String>), EvalError> {
    let annotated = dir.join(format!("en-annotated.{split}.tsv"));
    let neutral = dir.join(format!("neu_en.{split}.txt"));
    let categories = map.scored();
    let mut set = PresenceSet {
        name: format!("XED {split}"),
        source: format!("{} + {}", annotated.display(), neutral.display()),
        texts: Vec::new(),
        categories,
        labels: Vec::new(),
        neutral: Vec::new(),
        dropped: 0,
    };
    for (i, raw) in read(&annotated)?.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let Some((text, ids)) = raw.rsplit_once('\t') else {
            return Err(line_err(&annotated, i + 1, LineProblem::Columns { expected: 2, found: 1 }));
        };
        let mut present = Vec::new();
        for id in ids.split(',') {
            let name = id
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=8).contains(k))
                .map(|k| XED_LABELS[k])
                .ok_or_else(|| line_err(&annotated, i + 1, LineProblem::UnknownLabel(id.trim().into())))?;
            present.push(name);
        }
        let text = normalise_xed(text);
        if text.is_empty() {
            set.dropped += 1;
            continue;
        }
        set.labels.push(map.presence(&present, &set.categories));
        set.neutral.push(map.is_neutral(&present));
        set.texts.push(text);
    }
    for (i, raw) in read(&neutral)?.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let (label, text) = raw.split_once('\t').unwrap_or((raw, ""));
        if label.trim() != "9" {
            return Err(line_err(&neutral, i + 1, LineProblem::UnknownLabel(label.trim().into())));
        }
        let text = normalise_xed(text);
        if text.is_empty() {
            set.dropped += 1;
            continue;
        }
        set.labels.push(map.presence(&["neutral"], &set.categories));
        set.neutral.push(map.is_neutral(&["neutral"]));
        set.texts.push(text);
    }
    Ok((set, unmapped_labels(map, XED_LABELS[1..].iter().copied())))
}

/// Parses CSV text (RFC 4180: quoted fields, doubled quotes, line breaks inside quotes, CRLF or LF) into
/// records, each with the 1-based line it starts on.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, (usize, LineProblem)> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let (mut line, mut start) = (1usize, 1usize);
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut field_started = false; // anything read for the current record
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    quoted = false;
                    match chars.peek() {
                        None | Some(',') | Some('\n') | Some('\r') => {}
                        Some(other) => {
                            return Err((line, LineProblem::Malformed(format!("{other:?} after a closing quote"))))
                        }
                    }
                }
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                quoted = true;
                field_started = true;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                field_started = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if field_started || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    records.push((start, std::mem::take(&mut fields)));
                }
                field_started = false;
                line += 1;
                start = line;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if quoted {
        return Err((start, LineProblem::Malformed("unterminated quoted field".into())));
    }
    if field_started || !field.is_empty() {
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}

/// A CSV file with a header: the records as maps from column name to value.
struct Csv {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Csv {
    fn load(path: &Path) -> Result<Csv, EvalError> {
        let text = read(path)?;
        let mut records = parse_csv(&text).map_err(|(line, p)| line_err(path, line, p))?.into_iter();
        let (_, header) = records.next().ok_or_else(|| EvalError::File {
            path: path.to_path_buf(),
            reason: "empty file".into(),
        })?;
        let rows: Vec<(usize, Vec<String>)> = records.collect();
        for (line, r) in &rows {
            if r.len() != header.len() {
                return Err(line_err(
                    path,
                    *line,
                    LineProblem::Malformed(format!("{} fields, the header has {}", r.len(), header.len())),
                ));
            }
        }
        Ok(Csv {
            path: path.to_path_buf(),
            header: header.into_iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_string()).collect(),
            rows,
        })
    }

    fn column(&self, name: &str) -> Result<usize, EvalError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| EvalError::File {
            path: self.path.clone(),
            reason: format!("no column {name:?} in the header"),
        })
    }

    fn number(&self, line: usize, field: &str, value: &str, range: (f64, f64)) -> Result<f64, EvalError> {
        match value.trim().parse::<f64>() {
            Ok(v) if v >= range.0 && v <= range.1 => Ok(v),
            _ => Err(line_err(
                &self.path,
                line,
                bad_value(field, value, &format!("expected a number in [{}, {}]", range.0, range.1)),
            )),
        }
    }
}

/// EmoBank `emobank_train_dev.csv` (`id,split,V,A,D,text`, V/A/D in 1-5): the rows of one split, with targets
/// `V` and `A`.
pub fn emobank(dir: &Path, split: &str) -> Result<RatingSet, EvalError> {
    let path = dir.join("emobank_train_dev.csv");
    let csv = Csv::load(&path)?;
    let (cs, cv, ca, ct) = (csv.column("split")?, csv.column("V")?, csv.column("A")?, csv.column("text")?);
    let mut set = RatingSet {
        name: format!("EmoBank {split}"),
        source: path.display().to_string(),
        texts: Vec::new(),
        targets: vec![
            RatingTarget { name: "V".into(), category: None, gold: Vec::new() },
            RatingTarget { name: "A".into(), category: None, gold: Vec::new() },
        ],
        dropped: 0,
    };
    for (line, r) in &csv.rows {
        if r[cs].trim() != split {
            continue;
        }
        let v = csv.number(*line, "V", &r[cv], (1.0, 5.0))?;
        let a = csv.number(*line, "A", &r[ca], (1.0, 5.0))?;
        if r[ct].trim().is_empty() {
            set.dropped += 1;
            continue;
        }
        set.texts.push(r[ct].clone());
        set.targets[0].gold.push(v);
        set.targets[1].gold.push(a);
    }
    Ok(set)
}

/// Empathic Reactions `messages.{split}.csv`: the essays with the writer's `empathy` and `distress` (1-7),
/// each tied to the category its label map names as primary.
pub fn empathic(dir: &Path, split: &str, map: &LabelMap) -> Result<RatingSet, EvalError> {
    let path = dir.join(format!("messages.{split}.csv"));
    let csv = Csv::load(&path)?;
    let ce = csv.column("essay")?;
    let mut set = RatingSet {
        name: format!("Empathic Reactions {split}"),
        source: path.display().to_string(),
        texts: Vec::new(),
        targets: Vec::new(),
        dropped: 0,
    };
    let mut columns = Vec::new();
    for name in ["empathy", "distress"] {
        let category = map.get(name).and_then(|m| m.primary.first()).map(|(c, _)| *c).ok_or_else(|| {
            EvalError::File {
                path: map.path.clone(),
                reason: format!("no primary category for {name:?}"),
            }
        })?;
        columns.push(csv.column(name)?);
        set.targets.push(RatingTarget { name: name.into(), category: Some(category), gold: Vec::new() });
    }
    for (line, r) in &csv.rows {
        let values = columns
            .iter()
            .zip(["empathy", "distress"])
            .map(|(&c, name)| csv.number(*line, name, &r[c], (1.0, 7.0)))
            .collect::<Result<Vec<f64>, _>>()?;
        if r[ce].trim().is_empty() {
            set.dropped += 1;
            continue;
        }
        set.texts.push(r[ce].clone());
        for (t, v) in set.targets.iter_mut().zip(values) {
            t.gold.push(v);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xed_normalisation_matches_the_training_script() {
        assert_eq!(normalise_xed("About time !"), "About time!");
        assert_eq!(normalise_xed("I do n't know , really ."), "I don't know, really.");
        assert_eq!(normalise_xed("It 's what we 'd do ( maybe ) ."), "It's what we'd do (maybe).");
        assert_eq!(normalise_xed("You 'll see I 'M right : 100 %"), "You'll see I'M right: 100%");
        // Not a contraction at a word end: kept.
        assert_eq!(normalise_xed("the 'dog' said"), "the 'dog' said");
        // Already clean (the neutral file) stays as it is.
        assert_eq!(normalise_xed("  Where you been?  "), "Where you been?");
        assert_eq!(normalise_xed("[PERSON] , come here ."), "[PERSON], come here.");
    }

    #[test]
    fn csv_handles_quotes_and_line_breaks() {
        let text = "a,b,c\r\n1,\"x, \"\"y\"\"\",3\n2,\"two\nlines\",\n\n4,,\"\"\n";
        let r = parse_csv(text).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0], (1, vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(r[1], (2, vec!["1".into(), "x, \"y\"".into(), "3".into()]));
        assert_eq!(r[2], (3, vec!["2".into(), "two\nlines".into(), "".into()]));
        assert_eq!(r[3], (6, vec!["4".into(), "".into(), "".into()]));
        assert!(matches!(parse_csv("a,\"b\n"), Err((1, LineProblem::Malformed(_)))));
        assert!(matches!(parse_csv("a\n\"b\"c\n"), Err((2, LineProblem::Malformed(_)))));
    }
}
