//! How one turn's text becomes the intensities an arc records for it ([`TurnReading`]): the whole turn as one
//! text (the default), or clause by clause weighted toward where the turn ends up. It also owns the cache of
//! clause vectors that lets [`ArcTracker`](super::ArcTracker) and the batch path encode each distinct text once.
//!
//! The whole-turn reading is the default because it ranks conversations better where the choice was made:
//! on the first 24 development pairs (`data/conversations/pairs-dev.jsonl`) the `terminal` reward ranked 19 right
//! read whole and 12 read by clauses, and on all 48 of them 33 and 22. A turn that ends politely ("... ok. thanks anyway") puts its last and
//! heaviest clause on the thanks, so the clause reading scores a resigned ending like a grateful one.

use crate::error::{InputProblem, Result};
use super::affect::Affect;
use crate::estimator::{Estimate, Estimator, InContext};
use crate::intensities::Intensities;
use crate::taxonomy::NUM_CATEGORIES;
use std::collections::{HashMap, HashSet};

/// How a turn is read. More readings may come, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TurnReading {
    /// Split into clauses (sentences, and at a contrastive "but"), score each, and take a weighted mean:
    /// clause `k` of `n` (0-based) weighs `k + 1`, so later clauses count more; a clause that opens with "but"
    /// weighs 1.5 times more and every clause before it half as much (the contrast rule of the VADER sentiment
    /// analyser: what follows "but" is what the speaker means). Follows a change of state inside a turn
    /// ("still scared but it feels less like a sentence now"), and over-weights a closing formula.
    Clauses,
    /// Score the whole turn as one text, as `emoarc score` does (the default; see the module doc for why).
    #[default]
    Whole,
}

impl std::fmt::Display for TurnReading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TurnReading {
    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            TurnReading::Clauses => "clauses",
            TurnReading::Whole => "whole",
        }
    }
}

impl std::str::FromStr for TurnReading {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "clauses" => Ok(TurnReading::Clauses),
            "whole" => Ok(TurnReading::Whole),
            _ => Err(crate::Error::Config(format!("turn reading must be clauses or whole, not {s:?}"))),
        }
    }
}

/// What a speaker's turn is read with, besides its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TurnContext {
    /// The turn just before it, when someone else wrote it (the reply the speaker answers), if the model was
    /// trained to read context ([`Estimator::reads_context`]); alone otherwise. The default: a polite closing
    /// ("Yes, you're right. I'll tell them. Thank you.") reads as thanks after help and as giving in after a
    /// lecture, and only the reply says which. Whole-turn reading only; clauses are read alone.
    #[default]
    Previous,
    /// Every turn alone.
    Alone,
}

impl TurnContext {
    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            TurnContext::Previous => "previous",
            TurnContext::Alone => "alone",
        }
    }

    /// The message turn `i` of `turns` (`(role, text)` in order) is read after: the previous turn when this
    /// context applies (see [`TurnContext::Previous`]), the turn is the speaker's and the previous one is not.
    pub(crate) fn message_before<'t>(
        self,
        reading: TurnReading,
        estimator: &Estimator,
        speaker: &str,
        turn: (&str, &str),
        previous: Option<(&str, &'t str)>,
    ) -> Option<&'t str> {
        let applies = self == TurnContext::Previous && reading == TurnReading::Whole && estimator.reads_context();
        match previous {
            Some((role, text)) if applies && turn.0 == speaker && role != speaker => Some(text),
            _ => None,
        }
    }
}

impl std::fmt::Display for TurnContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TurnContext {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "previous" => Ok(TurnContext::Previous),
            "alone" => Ok(TurnContext::Alone),
            _ => Err(crate::Error::Config(format!("turn context must be previous or alone, not {s:?}"))),
        }
    }
}

/// One piece of a turn to encode, with its weight in the turn's mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause<'a> {
    /// The clause, a slice of the turn's text (the whole text for [`TurnReading::Whole`]).
    pub text: &'a str,
    /// Its positive weight: the k-th clause weighs k, the one after "but" 1.5 times that, those before it half.
    pub weight: f32,
}

/// Contrast rule weights (VADER): the clause after "but" is emphasised, everything before it damped.
const AFTER_BUT: f32 = 1.5;
const BEFORE_BUT: f32 = 0.5;

impl TurnReading {
    /// The clauses of a turn with their weights (weights sum to anything positive; the mean normalises).
    pub fn clauses(self, text: &str) -> Vec<Clause<'_>> {
        if self == TurnReading::Whole {
            return vec![Clause { text, weight: 1.0 }];
        }
        let mut out: Vec<Clause> = Vec::new();
        for sentence in sentences(text) {
            for (piece, contrast) in split_on_but(sentence) {
                if contrast {
                    for earlier in &mut out {
                        earlier.weight *= BEFORE_BUT;
                    }
                }
                let position = out.len() as f32 + 1.0;
                out.push(Clause {
                    text: piece,
                    weight: position * if contrast { AFTER_BUT } else { 1.0 },
                });
            }
        }
        if out.is_empty() {
            // Nothing but a connective ("but"): the text itself is all there is to read.
            out.push(Clause { text, weight: 1.0 });
        }
        out
    }

    /// Combines the clauses' intensities (same order as [`clauses`](Self::clauses)) into the turn's.
    pub fn combine_scores(clauses: &[Clause], scores: &[ClauseScore]) -> ClauseScore {
        let intensities: Vec<Intensities> = scores.iter().map(|s| s.intensities).collect();
        let total: f32 = clauses.iter().map(|c| c.weight).sum();
        // Learned affect is combined with the same weights as the intensities; it exists for all or none.
        let affect = scores.iter().zip(clauses).try_fold([0.0f32; 2], |acc, (s, c)| {
            s.affect.map(|a| [acc[0] + c.weight * a.valence / total, acc[1] + c.weight * a.arousal / total])
        });
        ClauseScore {
            intensities: TurnReading::combine(clauses, &intensities),
            affect: affect.filter(|_| !scores.is_empty()).map(|[v, a]| Affect::new(v, a)),
        }
    }

    /// The weighted mean of the clauses' intensities (same order as [`clauses`](Self::clauses)): the turn's
    /// intensities, each still 0 to 1.
    pub fn combine(clauses: &[Clause], intensities: &[Intensities]) -> Intensities {
        let mut sum = [0.0f32; NUM_CATEGORIES];
        let total: f32 = clauses.iter().map(|c| c.weight).sum();
        for (clause, x) in clauses.iter().zip(intensities) {
            for (s, v) in sum.iter_mut().zip(x.as_slice()) {
                *s += clause.weight * v / total;
            }
        }
        Intensities::new(sum)
    }
}

/// Sentences: a run of text ending in `.`, `!`, `?` or `;` followed by white space, or a line. Terminators
/// without a following space ("3.5", "e.g.x") do not split.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_space = chars.peek().is_some_and(|&(_, n)| n.is_whitespace());
        let end = if c == '\n' {
            Some(i)
        } else if matches!(c, '.' | '!' | '?' | ';') && next_is_space {
            Some(i + c.len_utf8())
        } else {
            None
        };
        if let Some(end) = end {
            pieces.push(&text[start..end]);
            start = end;
        }
    }
    pieces.push(&text[start..]);
    pieces.into_iter().map(str::trim).filter(|s| !s.is_empty())
}

/// Splits a sentence at each whole word "but" (any case). Each piece comes with whether it follows a "but";
/// the connective and a comma before it are dropped.
fn split_on_but(sentence: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut contrast = false;
    for (at, word) in words(sentence) {
        if word.trim_end_matches(',').eq_ignore_ascii_case("but") {
            let before = sentence[start..at].trim().trim_end_matches(',').trim_end();
            if !before.is_empty() {
                out.push((before, contrast));
            }
            start = at + word.len();
            contrast = true;
        }
    }
    let rest = sentence[start..].trim();
    if !rest.is_empty() {
        out.push((rest, contrast));
    }
    out
}

/// White-space separated words with their byte offsets.
fn words(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.split_whitespace()
        .map(move |w| (w.as_ptr() as usize - s.as_ptr() as usize, w))
}

/// What the model gives for one clause (or a whole turn): intensities and, from heads that learned it,
/// valence and arousal.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClauseScore {
    /// The 40 intensities, each 0 to 1.
    pub intensities: Intensities,
    /// The learned valence and arousal; `None` when the head has no affect output (the table is used then).
    pub affect: Option<Affect>,
}

impl From<&Estimate> for ClauseScore {
    fn from(e: &Estimate) -> Self {
        ClauseScore {
            intensities: e.intensities,
            affect: e.affect,
        }
    }
}

/// Clause scores by text and the message it was read after. Bounded: when a fill would pass the capacity the
/// cache starts over, which is safe because scored turns keep their own intensities and the cache only saves
/// re-encoding repeats.
#[derive(Debug, Clone)]
pub(crate) struct ClauseCache {
    map: HashMap<(Option<String>, String), ClauseScore>,
    capacity: usize,
}

fn key(item: InContext) -> (Option<String>, String) {
    (item.after.map(str::to_string), item.text.to_string())
}

impl ClauseCache {
    pub(crate) fn new(capacity: usize) -> ClauseCache {
        ClauseCache {
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, item: InContext) -> Option<&ClauseScore> {
        self.map.get(&key(item))
    }

    /// Encodes, in one estimator call, the texts (each after its message) not cached yet; returns why each
    /// refused text was refused.
    pub(crate) fn fill<'t>(
        &mut self,
        estimator: &Estimator,
        items: impl IntoIterator<Item = InContext<'t>>,
    ) -> Result<HashMap<InContext<'t>, InputProblem>> {
        let mut seen = HashSet::new();
        let requested: Vec<InContext> = items.into_iter().filter(|t| seen.insert(*t)).collect();
        let mut missing: Vec<InContext> = requested.iter().copied().filter(|t| !self.map.contains_key(&key(*t))).collect();
        if missing.is_empty() {
            return Ok(HashMap::new());
        }
        if self.map.len() + missing.len() > self.capacity {
            // Starting over drops texts this very call needs too, so they are encoded again with the new ones.
            self.map.clear();
            missing = requested;
        }
        let mut refused = HashMap::new();
        for (item, result) in missing.iter().zip(estimator.estimate_in_context(&missing)?) {
            match result {
                Ok(estimate) => {
                    self.map.insert(key(*item), ClauseScore::from(&estimate));
                }
                Err(problem) => {
                    refused.insert(*item, problem);
                }
            }
        }
        Ok(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxonomy::Category;

    fn read(text: &str) -> Vec<(&str, f32)> {
        TurnReading::Clauses.clauses(text).into_iter().map(|c| (c.text, c.weight)).collect()
    }

    #[test]
    fn learned_affect_combines_with_the_clause_weights() {
        let clauses = TurnReading::Clauses.clauses("awful day. but better now");
        assert_eq!(clauses.iter().map(|c| c.weight).collect::<Vec<_>>(), [0.5, 3.0]);
        let score = |v: f32, a: f32| ClauseScore { intensities: Intensities::default(), affect: Some(Affect::from_unit(v, a)) };
        // valence -0.8 and +0.4 on [-1, 1], weights 0.5 and 3: (-0.4 + 1.2) / 3.5.
        let turn = TurnReading::combine_scores(&clauses, &[score(0.1, 0.8), score(0.7, 0.3)]);
        let a = turn.affect.unwrap();
        assert!((a.valence - 0.8 / 3.5).abs() < 1e-6, "{a:?}");
        assert!((a.arousal - (0.4 + 0.9) / 3.5).abs() < 1e-6, "{a:?}");
        // A clause without learned affect: the turn has none (the table reads it instead).
        let mixed = [score(0.1, 0.8), ClauseScore::default()];
        assert_eq!(TurnReading::combine_scores(&clauses, &mixed).affect, None);
    }

    #[test]
    fn clauses_follow_sentences_and_contrast() {
        assert_eq!(read("ok. i'm going to bed at 11 tonight"), vec![("ok.", 1.0), ("i'm going to bed at 11 tonight", 2.0)]);
        // "but" damps everything before it and lifts what follows.
        assert_eq!(
            read("home now. still scared, but it feels doable. thank you"),
            vec![("home now.", 0.5), ("still scared", 1.0), ("it feels doable.", 4.5), ("thank you", 4.0)]
        );
        assert_eq!(read("But i feel better"), vec![("i feel better", 1.5)]);
        assert_eq!(read("version 3.5 works\nyes!!  really?"), vec![("version 3.5 works", 1.0), ("yes!!", 2.0), ("really?", 3.0)]);
        assert_eq!(read("butter is not a contrast"), vec![("butter is not a contrast", 1.0)]);
        assert_eq!(read("but"), vec![("but", 1.0)]);
        assert_eq!(TurnReading::Whole.clauses("a. b").len(), 1);
    }

    #[test]
    fn combine_is_the_weighted_mean() {
        let mut a = Intensities::default();
        a[Category::Fear] = 0.8;
        let mut b = Intensities::default();
        b[Category::Relief] = 0.6;
        let clauses = [Clause { text: "a", weight: 1.0 }, Clause { text: "b", weight: 3.0 }];
        let x = TurnReading::combine(&clauses, &[a, b]);
        assert!((x[Category::Fear] - 0.2).abs() < 1e-6);
        assert!((x[Category::Relief] - 0.45).abs() < 1e-6);
    }
}
