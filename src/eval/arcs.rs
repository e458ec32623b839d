//! Trivial baselines for the better/worse conversation pairs of `emoarc eval-arcs`: rules that read no
//! emotion, scored on the same pairs as the rewards, so a reward's pair accuracy can be read against what
//! surface cues alone achieve.

use crate::reward::ConversationPair;
use crate::trajectory::Conversation;
use serde::Serialize;
use std::collections::BTreeMap;

/// How a rule does on some pairs: right when it scores the better conversation strictly higher, wrong when
/// strictly lower, a tie otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RuleAgreement {
    /// Pairs scored.
    pub pairs: usize,
    /// Pairs where the better conversation scores strictly higher.
    pub right: usize,
    /// Pairs where the worse conversation scores strictly higher.
    pub wrong: usize,
    /// Pairs where both score the same (common for the 0/1 "thank" rule).
    pub ties: usize,
    /// `right / pairs` (0 without pairs).
    pub share: f64,
}

impl RuleAgreement {
    fn count(&mut self, better: f64, worse: f64) {
        self.pairs += 1;
        if better > worse {
            self.right += 1;
        } else if worse > better {
            self.wrong += 1;
        } else {
            self.ties += 1;
        }
        self.share = self.right as f64 / self.pairs as f64;
    }
}

/// One rule's results: overall, on the halves `eval-arcs` reports (A: 1st, 3rd, ... pair), per failure kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrivialBaseline {
    /// What the rule is, for a person to read (as [`rules`] names it).
    pub rule: String,
    /// Over every pair.
    pub all: RuleAgreement,
    /// Over the 1st, 3rd, 5th ... pair.
    pub half_a: RuleAgreement,
    /// Over the 2nd, 4th, 6th ... pair.
    pub half_b: RuleAgreement,
    /// Per failure kind of the worse conversation (its `meta.failure`; `unspecified` without one).
    pub by_failure: BTreeMap<String, RuleAgreement>,
}

/// The three rules, each a score per conversation (higher means "better"):
/// - the final `speaker` turn says "thank" (any case): 1, else 0;
/// - more characters in all other roles' turns (the assistant's replies);
/// - a longer final `speaker` turn.
pub fn rules(speaker: &str) -> Vec<(String, Box<dyn Fn(&Conversation) -> f64 + '_>)> {
    vec![
        (
            format!("final {speaker} turn says \"thank\""),
            Box::new(move |c: &Conversation| {
                f64::from(u8::from(c.last_text_of(speaker).is_some_and(|t| t.to_lowercase().contains("thank"))))
            }),
        ),
        (
            format!("more characters in non-{speaker} turns"),
            Box::new(move |c: &Conversation| {
                c.turns.iter().filter(|t| t.role != speaker).map(|t| t.text.chars().count()).sum::<usize>() as f64
            }),
        ),
        (
            format!("longer final {speaker} turn"),
            Box::new(move |c: &Conversation| c.last_text_of(speaker).map_or(0, |t| t.chars().count()) as f64),
        ),
    ]
}

/// Scores every pair with every rule of [`rules`].
pub fn trivial_baselines(pairs: &[ConversationPair], conversations: &[Conversation], speaker: &str) -> Vec<TrivialBaseline> {
    rules(speaker)
        .into_iter()
        .map(|(rule, score)| {
            let mut b = TrivialBaseline {
                rule,
                all: RuleAgreement::default(),
                half_a: RuleAgreement::default(),
                half_b: RuleAgreement::default(),
                by_failure: BTreeMap::new(),
            };
            for (k, p) in pairs.iter().enumerate() {
                let (better, worse) = (score(&conversations[p.better]), score(&conversations[p.worse]));
                b.all.count(better, worse);
                if k % 2 == 0 { &mut b.half_a } else { &mut b.half_b }.count(better, worse);
                let failure = p.failure.clone().unwrap_or_else(|| "unspecified".into());
                b.by_failure.entry(failure).or_default().count(better, worse);
            }
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trajectory::Turn;

    fn conv(id: &str, turns: &[(&str, &str)]) -> Conversation {
        Conversation {
            id: id.into(),
            turns: turns.iter().map(|(r, t)| Turn::new(*r, *t)).collect(),
            meta: Default::default(),
        }
    }

    #[test]
    fn rules_count_right_wrong_and_ties() {
        let conversations = vec![
            conv("1b", &[("user", "help"), ("assistant", "sure, here is a long answer"), ("user", "Thanks a lot")]),
            conv("1w", &[("user", "help"), ("assistant", "no"), ("user", "ok whatever then")]),
            conv("2b", &[("user", "hi"), ("assistant", "hey"), ("user", "thank you")]),
            conv("2w", &[("user", "hi"), ("assistant", "hello there"), ("user", "THANK you!!")]),
        ];
        let pairs = vec![
            ConversationPair { pair: "1".into(), failure: Some("dismissed".into()), better: 0, worse: 1 },
            ConversationPair { pair: "2".into(), failure: None, better: 2, worse: 3 },
        ];
        let b = trivial_baselines(&pairs, &conversations, "user");
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].rule, "final user turn says \"thank\"");
        // Pair 1: better thanks, worse does not -> right; pair 2: both thank -> tie.
        assert_eq!((b[0].all.right, b[0].all.wrong, b[0].all.ties), (1, 0, 1));
        assert_eq!(b[0].all.share, 0.5);
        // Assistant characters: pair 1 better longer (right), pair 2 worse longer (wrong).
        assert_eq!((b[1].all.right, b[1].all.wrong, b[1].all.ties), (1, 1, 0));
        // Final user turn: "Thanks a lot" (12) < "ok whatever then" (16): wrong; "thank you" (9) < 11: wrong.
        assert_eq!((b[2].all.right, b[2].all.wrong), (0, 2));
        assert_eq!(b[0].half_a.pairs, 1);
        assert_eq!(b[0].half_b.ties, 1);
        assert_eq!(b[0].by_failure["dismissed"].right, 1);
        assert_eq!(b[0].by_failure["unspecified"].ties, 1);
    }
}
