//! Checking rewards against authored evidence: conversation pairs that share an opening, one where the person
//! ends better off and one where they end worse. A good arc reward ranks the better one higher; the
//! accommodation guard should read higher on the worse one when its failure is false reassurance. Pairs are
//! split into two fixed halves (odd and even positions in the file) so that anything tuned on one half can be
//! checked on the other.

use super::guard::AccommodationGuard;
use super::RewardFn;
use crate::error::Result;
use crate::trajectory::{Conversation, ConversationProblem, Trajectory};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A better/worse pair: indices into the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPair {
    /// The pair's name: the conversations' shared `pair` field.
    pub pair: String,
    /// How the worse conversation fails (`dismissed`, `lectured`, ...), when the data says.
    pub failure: Option<String>,
    /// Index of the conversation with `"outcome": "better"`.
    pub better: usize,
    /// Index of the conversation with `"outcome": "worse"`.
    pub worse: usize,
}

/// Groups conversations by their `pair` field (conversations without one are left out) using `outcome`
/// (`better` or `worse`); a pair must have exactly one of each. Pairs come in order of first appearance.
pub fn find_pairs(conversations: &[Conversation]) -> Result<Vec<ConversationPair>> {
    let mut order: Vec<String> = Vec::new();
    let mut slots: BTreeMap<String, (Option<usize>, Option<usize>)> = BTreeMap::new();
    for (i, c) in conversations.iter().enumerate() {
        let pairing = |what: String| c.at().error(ConversationProblem::Pairing(what));
        let pair = match c.meta.get("pair") {
            None | Some(Value::Null) => continue,
            Some(Value::String(p)) => p.clone(),
            Some(other) => return Err(pairing(format!("\"pair\" must be a string, found {other}"))),
        };
        let slot = slots.entry(pair.clone()).or_insert_with(|| {
            order.push(pair.clone());
            (None, None)
        });
        let place = match c.meta.get("outcome").and_then(Value::as_str) {
            Some("better") => &mut slot.0,
            Some("worse") => &mut slot.1,
            _ => return Err(pairing(format!("pair {pair:?}: \"outcome\" must be \"better\" or \"worse\""))),
        };
        if let Some(other) = place.replace(i) {
            let outcome = c.meta["outcome"].as_str().unwrap_or_default();
            let first = &conversations[other].id;
            return Err(pairing(format!("pair {pair:?} has a second {outcome} conversation (the first is {first:?})")));
        }
    }
    order
        .into_iter()
        .map(|pair| match slots[&pair] {
            (Some(better), Some(worse)) => Ok(ConversationPair {
                failure: conversations[worse].meta.get("failure").and_then(Value::as_str).map(str::to_string),
                pair,
                better,
                worse,
            }),
            (Some(i), None) | (None, Some(i)) => Err(conversations[i]
                .at()
                .error(ConversationProblem::Pairing(format!("pair {pair:?} has only one conversation")))),
            (None, None) => unreachable!("a pair is created with its first conversation"),
        })
        .collect()
}

/// How often the better conversation scored strictly higher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Agreement {
    /// Pairs scored.
    pub pairs: usize,
    /// Pairs where the better conversation's reward is strictly higher.
    pub better_higher: usize,
    /// Pairs where both rewards are equal (counted as not agreeing).
    pub ties: usize,
    /// `better_higher / pairs` (0 when there are no pairs).
    pub share: f64,
}

impl Agreement {
    fn count(&mut self, better: f32, worse: f32) {
        self.pairs += 1;
        self.better_higher += usize::from(better > worse);
        self.ties += usize::from(better == worse);
        self.share = self.better_higher as f64 / self.pairs as f64;
    }
}

/// One reward's agreement with the pairs: overall, on each half, and per failure kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardAgreement {
    /// The reward's [`RewardFn::name`].
    pub reward: String,
    /// Over every pair.
    pub all: Agreement,
    /// Pairs at odd positions in the file (1st, 3rd, ...).
    pub half_a: Agreement,
    /// Pairs at even positions (2nd, 4th, ...).
    pub half_b: Agreement,
    /// Per failure kind of the worse conversation ([`ConversationPair::failure`]; `unspecified` without one).
    pub by_failure: BTreeMap<String, Agreement>,
}

/// The guard's mean accommodation on better and worse conversations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct GuardMeans {
    /// Mean accommodation ([`AccommodationReport::mean`](super::AccommodationReport::mean)) of the better
    /// conversations, `0..=2`.
    pub better: f32,
    /// Mean accommodation of the worse conversations, `0..=2`.
    pub worse: f32,
    /// Pairs where the worse conversation's accommodation is strictly higher.
    pub worse_higher: usize,
    /// Pairs measured.
    pub pairs: usize,
}

/// The guard's means overall and per failure kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardComparison {
    /// Over every pair.
    pub all: GuardMeans,
    /// Per failure kind of the worse conversation (`unspecified` without one).
    pub by_failure: BTreeMap<String, GuardMeans>,
}

/// One pair's rewards: what a share in [`RewardAgreement`] is made of, so a miss can be looked up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairScores {
    /// The pair's name ([`ConversationPair::pair`]).
    pub pair: String,
    /// How the worse conversation fails, when the data says.
    pub failure: Option<String>,
    /// The better conversation's id (its trajectory's, which is the conversation's when scored from it).
    pub better: String,
    /// The worse conversation's id.
    pub worse: String,
    /// Per reward name: `[better's reward, worse's reward]`.
    pub rewards: BTreeMap<String, [f32; 2]>,
}

impl PairScores {
    /// Whether `reward` scored the better conversation strictly higher (`None` for a reward not scored).
    pub fn ranked_right(&self, reward: &str) -> Option<bool> {
        self.rewards.get(reward).map(|[b, w]| b > w)
    }
}

/// Everything `emoarc eval-arcs` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairReport {
    /// Pairs scored.
    pub pairs: usize,
    /// One row per reward, in the order they were given.
    pub rewards: Vec<RewardAgreement>,
    /// How the accommodation guard reads the better and the worse conversations.
    pub guard: GuardComparison,
    /// Every pair's rewards, in the pairs' order.
    pub per_pair: Vec<PairScores>,
}

/// Scores every pair with every reward and the guard; `trajectories[i]` belongs to the conversation that the
/// pairs' indices call `i`.
pub fn evaluate_pairs(
    pairs: &[ConversationPair],
    trajectories: &[Trajectory],
    rewards: &[&dyn RewardFn],
    guard: &AccommodationGuard,
) -> PairReport {
    let failure = |p: &ConversationPair| p.failure.clone().unwrap_or_else(|| "unspecified".into());
    let mut per_pair: Vec<PairScores> = pairs
        .iter()
        .map(|p| PairScores {
            pair: p.pair.clone(),
            failure: p.failure.clone(),
            better: trajectories[p.better].id.clone(),
            worse: trajectories[p.worse].id.clone(),
            rewards: BTreeMap::new(),
        })
        .collect();
    let rewards = rewards
        .iter()
        .map(|r| {
            let mut agreement = RewardAgreement {
                reward: r.name().to_string(),
                all: Agreement::default(),
                half_a: Agreement::default(),
                half_b: Agreement::default(),
                by_failure: BTreeMap::new(),
            };
            for (k, p) in pairs.iter().enumerate() {
                let (b, w) = (r.reward(&trajectories[p.better]), r.reward(&trajectories[p.worse]));
                per_pair[k].rewards.insert(agreement.reward.clone(), [b, w]);
                agreement.all.count(b, w);
                if k % 2 == 0 { &mut agreement.half_a } else { &mut agreement.half_b }.count(b, w);
                agreement.by_failure.entry(failure(p)).or_default().count(b, w);
            }
            agreement
        })
        .collect();
    let mut sums: BTreeMap<Option<String>, GuardMeans> = BTreeMap::new();
    for p in pairs {
        let (b, w) = (guard.assess(&trajectories[p.better]).mean, guard.assess(&trajectories[p.worse]).mean);
        for key in [None, Some(failure(p))] {
            let m = sums.entry(key).or_default();
            m.pairs += 1;
            m.better += b;
            m.worse += w;
            m.worse_higher += usize::from(w > b);
        }
    }
    let mut means = sums.into_iter().map(|(k, mut m)| {
        m.better /= m.pairs as f32;
        m.worse /= m.pairs as f32;
        (k, m)
    });
    let all = means.next().map(|(_, m)| m).unwrap_or_default();
    PairReport {
        pairs: pairs.len(),
        rewards,
        guard: GuardComparison {
            all,
            by_failure: means.map(|(k, m)| (k.unwrap_or_default(), m)).collect(),
        },
        per_pair,
    }
}
