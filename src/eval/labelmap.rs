//! Label maps (`data/label-maps/*.tsv`): each label of a public dataset mapped to EmoNet categories, and what
//! that makes a row's labels mean for evaluation.
//!
//! The file format is documented in `data/label-maps/README.md`: `#` comment lines, a header
//! `label<TAB>primary<TAB>secondary<TAB>reason`, then one line per source label, where `primary` and
//! `secondary` are comma-separated `Category:value` entries (value in `(0, 1]`) and `primary` = `neutral` marks
//! the neutral label. Any problem is an [`EvalError::Line`] naming the file and the 1-based line.
//!
//! For evaluation, the *scored* categories of a source are those that are primary for at least one label; for
//! a row, a scored category is [`Presence::Positive`] when a present label lists it as primary,
//! [`Presence::Negative`] when no present label lists it at all, and [`Presence::Skipped`] when only a
//! secondary mapping reaches it. Neutral rows are negative for every scored category.

use super::{EvalError, LineProblem};
use crate::taxonomy::Category;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a row's labels say about one scored category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Presence {
    /// A present label maps to the category as primary: the row counts as a positive for it.
    Positive,
    /// No present label maps to the category at all (or the row is neutral): the row counts as a negative.
    Negative,
    /// The row says nothing reliable about it (only a secondary mapping reaches it): left out.
    Skipped,
}

/// One line of a label map.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMapping {
    /// The dataset's own label, as its files spell it (`joy`, `admiration`).
    pub label: String,
    /// Categories the label names directly, with their training target.
    pub primary: Vec<(Category, f32)>,
    /// Categories it implies more weakly.
    pub secondary: Vec<(Category, f32)>,
    /// The neutral label (`primary` = `neutral`): every scored category is 0.
    pub neutral: bool,
    /// Why the label is mapped this way, for a person reviewing the map.
    pub reason: String,
    /// 1-based line in the file.
    pub line: usize,
}

/// A whole label map, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// One mapping per line, each label once.
    pub labels: Vec<LabelMapping>,
}

const HEADER: [&str; 4] = ["label", "primary", "secondary", "reason"];

impl LabelMap {
    /// Reads and checks a label map file.
    pub fn load(path: &Path) -> Result<LabelMap, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        LabelMap::parse(path, &text)
    }

    /// Parses label-map text; `path` is used in errors only.
    pub fn parse(path: &Path, text: &str) -> Result<LabelMap, EvalError> {
        let err = |line: usize, problem: LineProblem| EvalError::Line {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let mut labels: Vec<LabelMapping> = Vec::new();
        let mut seen_header = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.trim().is_empty() || raw.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = raw.split('\t').collect();
            if !seen_header {
                if cols.iter().map(|c| c.trim()).ne(HEADER) {
                    return Err(err(line, LineProblem::Malformed(format!("expected the header {:?}", HEADER.join("\t")))));
                }
                seen_header = true;
                continue;
            }
            if cols.len() != HEADER.len() {
                return Err(err(
                    line,
                    LineProblem::Columns {
                        expected: HEADER.len(),
                        found: cols.len(),
                    },
                ));
            }
            let label = cols[0].trim();
            if label.is_empty() {
                return Err(err(line, LineProblem::Malformed("empty label".into())));
            }
            if let Some(first) = labels.iter().find(|m| m.label == label) {
                return Err(err(line, LineProblem::DuplicateLabel { label: label.into(), first: first.line }));
            }
            let neutral = cols[1].trim() == "neutral";
            let primary = if neutral { Vec::new() } else { parse_entries(cols[1], "primary").map_err(|p| err(line, p))? };
            let secondary = parse_entries(cols[2], "secondary").map_err(|p| err(line, p))?;
            if neutral && !secondary.is_empty() {
                return Err(err(line, LineProblem::Malformed("a neutral label has no secondary categories".into())));
            }
            if let Some((c, _)) = secondary.iter().find(|(c, _)| primary.iter().any(|(p, _)| p == c)) {
                return Err(err(line, LineProblem::Malformed(format!("{c} is both primary and secondary"))));
            }
            labels.push(LabelMapping {
                label: label.into(),
                primary,
                secondary,
                neutral,
                reason: cols[3].trim().into(),
                line,
            });
        }
        if !seen_header {
            return Err(EvalError::File {
                path: path.to_path_buf(),
                reason: "no header line and no labels".into(),
            });
        }
        Ok(LabelMap {
            path: path.to_path_buf(),
            labels,
        })
    }

    /// The mapping of a label, if the file has a line for it.
    pub fn get(&self, label: &str) -> Option<&LabelMapping> {
        self.labels.iter().find(|m| m.label == label)
    }

    /// Whether a row with these present labels says only "neutral" (every label is the map's neutral line).
    pub fn is_neutral(&self, present: &[&str]) -> bool {
        !present.is_empty() && present.iter().all(|l| self.get(l).is_some_and(|m| m.neutral))
    }

    /// The categories scored for this source: primary for at least one label, in canonical order.
    pub fn scored(&self) -> Vec<Category> {
        Category::ALL
            .into_iter()
            .filter(|c| self.labels.iter().any(|m| m.primary.iter().any(|(p, _)| p == c)))
            .collect()
    }

    /// What a row with these present labels says about each of `scored` (in that order). A label without a
    /// line in the map says nothing (like an unmapped one).
    pub fn presence(&self, present: &[&str], scored: &[Category]) -> Vec<Presence> {
        let mappings: Vec<&LabelMapping> = present.iter().filter_map(|l| self.get(l)).collect();
        scored
            .iter()
            .map(|c| {
                if mappings.iter().any(|m| m.primary.iter().any(|(p, _)| p == c)) {
                    Presence::Positive
                } else if mappings.iter().any(|m| m.secondary.iter().any(|(s, _)| s == c)) {
                    Presence::Skipped
                } else {
                    Presence::Negative
                }
            })
            .collect()
    }
}

/// `"Anger:0.75, Impatience and Irritability:0.5"` -> entries; empty -> none.
fn parse_entries(field: &str, column: &str) -> Result<Vec<(Category, f32)>, LineProblem> {
    let mut out: Vec<(Category, f32)> = Vec::new();
    for part in field.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.rsplit_once(':') else {
            return Err(LineProblem::BadValue {
                field: column.into(),
                value: part.into(),
                reason: "expected Category:value".into(),
            });
        };
        let category = Category::from_name(name).ok_or_else(|| LineProblem::UnknownCategory(name.trim().into()))?;
        let v: f32 = value.trim().parse().map_err(|_| LineProblem::BadValue {
            field: column.into(),
            value: part.into(),
            reason: "the value is not a number".into(),
        })?;
        if !(v > 0.0 && v <= 1.0) {
            return Err(LineProblem::BadValue {
                field: column.into(),
                value: part.into(),
                reason: "the value must be in (0, 1]".into(),
            });
        }
        if out.iter().any(|(c, _)| *c == category) {
            return Err(LineProblem::BadValue {
                field: column.into(),
                value: part.into(),
                reason: format!("{category} is listed twice"),
            });
        }
        out.push((category, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "# a comment\nlabel\tprimary\tsecondary\treason\n\
anger\tAnger:0.75\tImpatience and Irritability:0.5, Bitterness:0.25\tdirect\n\
annoyance\tImpatience and Irritability:0.75\tAnger:0.25\tirritation\n\
approval\t\t\tnot an emotion\n\
fear\tFear:0.75\tDistress:0.5\tdirect\n\
neutral\tneutral\t\tno emotion\n";

    fn parse(text: &str) -> Result<LabelMap, EvalError> {
        LabelMap::parse(Path::new("maps/t.tsv"), text)
    }

    #[test]
    fn parses_primary_secondary_and_neutral() {
        let m = parse(MAP).unwrap();
        assert_eq!(m.labels.len(), 5);
        let anger = m.get("anger").unwrap();
        assert_eq!(anger.primary, vec![(Category::Anger, 0.75)]);
        assert_eq!(
            anger.secondary,
            vec![(Category::ImpatienceIrritability, 0.5), (Category::Bitterness, 0.25)]
        );
        assert_eq!(anger.line, 3);
        assert!(m.get("approval").unwrap().primary.is_empty());
        assert!(m.get("neutral").unwrap().neutral);
        // Scored: primary somewhere, canonical order (Impatience comes before Fear and Anger).
        assert_eq!(m.scored(), vec![Category::ImpatienceIrritability, Category::Fear, Category::Anger]);
    }

    #[test]
    fn presence_follows_primary_secondary_and_absence() {
        let m = parse(MAP).unwrap();
        let scored = m.scored(); // Impatience, Fear, Anger
        use Presence::*;
        // anger: Anger primary, Impatience only secondary -> skipped, Fear not listed -> negative.
        assert_eq!(m.presence(&["anger"], &scored), vec![Skipped, Negative, Positive]);
        // anger + annoyance: Impatience is primary for annoyance, so positive; Anger primary via anger.
        assert_eq!(m.presence(&["anger", "annoyance"], &scored), vec![Positive, Negative, Positive]);
        // annoyance alone: Anger only secondary -> skipped.
        assert_eq!(m.presence(&["annoyance"], &scored), vec![Positive, Negative, Skipped]);
        // Neutral and unmapped rows are negative everywhere.
        assert_eq!(m.presence(&["neutral"], &scored), vec![Negative; 3]);
        assert!(m.is_neutral(&["neutral"]) && m.is_neutral(&["neutral", "neutral"]));
        assert!(!m.is_neutral(&[]) && !m.is_neutral(&["neutral", "joy"]) && !m.is_neutral(&["unmapped"]));
        assert_eq!(m.presence(&["approval"], &scored), vec![Negative; 3]);
        // fear: Distress is secondary but not scored here; Fear positive.
        assert_eq!(m.presence(&["fear"], &scored), vec![Negative, Positive, Negative]);
    }

    fn line_problem(text: &str) -> (usize, LineProblem) {
        match parse(text) {
            Err(EvalError::Line { path, line, problem }) => {
                assert_eq!(path, Path::new("maps/t.tsv"));
                (line, problem)
            }
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_file_line_and_problem() {
        let head = "label\tprimary\tsecondary\treason\n";
        let (line, p) = line_problem(&format!("{head}joy\tElation:0.75\t\tok\nrage\tAngr:0.75\t\ttypo\n"));
        assert_eq!((line, p.clone()), (3, LineProblem::UnknownCategory("Angr".into())));
        let e = parse(&format!("{head}joy\tElation:0.75\t\tok\nrage\tAngr:0.75\t\ttypo\n")).unwrap_err();
        assert_eq!(e.to_string(), "maps/t.tsv:3: unknown category \"Angr\"");

        let (line, p) = line_problem(&format!("# c\n{head}joy\tElation:high\t\tx\n"));
        assert_eq!(line, 3);
        assert!(matches!(p, LineProblem::BadValue { ref field, .. } if field == "primary"), "{p:?}");
        assert!(matches!(line_problem(&format!("{head}joy\tElation:1.5\t\tx\n")).1, LineProblem::BadValue { .. }));
        assert!(matches!(line_problem(&format!("{head}joy\tElation:0\t\tx\n")).1, LineProblem::BadValue { .. }));
        assert!(matches!(line_problem(&format!("{head}joy\tElation\t\tx\n")).1, LineProblem::BadValue { .. }));
        assert!(matches!(line_problem(&format!("{head}joy\t\tSadnes:0.5\tx\n")).1, LineProblem::UnknownCategory(ref n) if n == "Sadnes"));
        assert_eq!(
            line_problem(&format!("{head}joy\tElation:0.75\n")),
            (2, LineProblem::Columns { expected: 4, found: 2 })
        );
        assert_eq!(
            line_problem(&format!("{head}joy\tElation:0.75\t\tx\njoy\tElation:0.5\t\ty\n")),
            (3, LineProblem::DuplicateLabel { label: "joy".into(), first: 2 })
        );
        assert!(matches!(line_problem("joy\tElation:0.75\t\tx\n"), (1, LineProblem::Malformed(_))));
        assert!(matches!(parse("# only comments\n"), Err(EvalError::File { .. })));
    }

    #[test]
    fn the_shipped_maps_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/label-maps");
        for name in ["goemotions", "xed", "empathic_reactions"] {
            let path = dir.join(format!("{name}.tsv"));
            if path.exists() {
                let m = LabelMap::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!m.scored().is_empty(), "{name}");
            }
        }
    }
}
