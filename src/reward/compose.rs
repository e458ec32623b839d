//! Composition: a reward is a weighted sum of terms, `R = Σ_i w_i · r_i`, configured from a small TOML file
//! ([`RewardConfig`]) or a command-line list such as `terminal=1,accommodation=0.5`.

use super::builtin::{check_weights, Delta, Discounted, Target, Terminal, Trend};
use super::guard::AccommodationGuard;
use super::RewardFn;
use crate::error::{Error, Result};
use crate::trajectory::Trajectory;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in terms by name: the keys of `[terms]` in a [`RewardConfig`] and of a `--reward` list. More
/// built-ins may come, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TermName {
    /// `terminal`: [`Terminal`], the final well-being.
    Terminal,
    /// `delta`: [`Delta`], the change in well-being from first to last turn.
    Delta,
    /// `discounted`: [`Discounted`], the discounted sum of per-turn changes.
    Discounted,
    /// `trend`: [`Trend`], level plus recent slope minus volatility.
    Trend,
    /// `target`: [`Target`], named categories moved the wanted way.
    Target,
    /// `accommodation`: the [`AccommodationGuard`] penalty for soothing without helping.
    Accommodation,
}

impl TermName {
    /// Every built-in term, in the order of the variants.
    pub const ALL: [TermName; 6] = [
        TermName::Terminal,
        TermName::Delta,
        TermName::Discounted,
        TermName::Trend,
        TermName::Target,
        TermName::Accommodation,
    ];

    /// The lower-case name used in TOML, on the command line and as [`RewardFn::name`].
    pub const fn name(self) -> &'static str {
        match self {
            TermName::Terminal => "terminal",
            TermName::Delta => "delta",
            TermName::Discounted => "discounted",
            TermName::Trend => "trend",
            TermName::Target => "target",
            TermName::Accommodation => "accommodation",
        }
    }
}

impl std::str::FromStr for TermName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        TermName::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            let names: Vec<&str> = TermName::ALL.iter().map(|t| t.name()).collect();
            Error::Config(format!("unknown reward {s:?}; use one of {}", names.join(", ")))
        })
    }
}

/// A weighted sum of reward terms.
#[derive(Default)]
pub struct WeightedReward {
    terms: Vec<(f32, Box<dyn RewardFn>)>,
}

impl WeightedReward {
    /// A reward with no terms, worth 0 until terms are added with [`with`](Self::with).
    pub fn new() -> WeightedReward {
        WeightedReward::default()
    }

    /// Adds a term with its weight (negative weights subtract).
    pub fn with(mut self, weight: f32, term: impl RewardFn + 'static) -> WeightedReward {
        self.terms.push((weight, Box::new(term)));
        self
    }

    /// Each term's own (unweighted) value, in the order they were added.
    pub fn terms(&self, t: &Trajectory) -> Vec<(&str, f32)> {
        self.terms.iter().map(|(_, f)| (f.name(), f.reward(t))).collect()
    }

    /// The weights, in the same order as [`terms`](Self::terms).
    pub fn weights(&self) -> impl Iterator<Item = (&str, f32)> {
        self.terms.iter().map(|(w, f)| (f.name(), *w))
    }
}

impl RewardFn for WeightedReward {
    fn name(&self) -> &str {
        "weighted"
    }
    fn reward(&self, t: &Trajectory) -> f32 {
        self.terms.iter().map(|(w, f)| w * f.reward(t)).sum()
    }
}

/// A reward configuration: which terms with which weights, and each built-in's parameters. As TOML (every
/// table and key optional; unknown keys are errors, so a typo never silently falls back to a default):
///
/// ```toml
/// [terms]                 # R = sum of weight * term; default: terminal = 1
/// terminal = 1.0
/// accommodation = 0.5     # the guard's term is already negative: a positive weight penalises
///
/// [discounted]
/// gamma = 0.9
///
/// [trend]
/// window = 3
/// level = 1.0
/// trend = 1.0
/// volatility = 0.5
///
/// [target]
/// down = ["Distress", "Helplessness"]
/// up = []
///
/// [accommodation]
/// margin = 0.0
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// Each term's weight (finite; negative subtracts); empty means `terminal = 1`.
    pub terms: BTreeMap<TermName, f32>,
    /// Parameters of the `discounted` term (used only if it is listed in `terms`).
    pub discounted: Discounted,
    /// Parameters of the `trend` term.
    pub trend: Trend,
    /// Parameters of the `target` term.
    pub target: Target,
    /// Parameters of the `accommodation` term.
    pub accommodation: AccommodationGuard,
}

impl RewardConfig {
    /// Parses a TOML configuration; a syntax error or unknown key is an [`Error::Config`]. Parameters are
    /// checked by [`build`](Self::build), not here.
    pub fn from_toml(text: &str) -> Result<RewardConfig> {
        parse_toml(text, "reward config")
    }

    /// Reads and parses a TOML file, as [`from_toml`](Self::from_toml); the error names the file.
    pub fn load(path: &Path) -> Result<RewardConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        parse_toml(&text, &path.display().to_string())
    }

    /// Replaces the terms with a list like `terminal` or `terminal=1,accommodation=0.5` (weight 1 when absent);
    /// a term listed twice is an error.
    pub fn set_terms(&mut self, spec: &str) -> Result<()> {
        let mut terms = BTreeMap::new();
        for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
            let (name, weight) = match item.split_once('=') {
                Some((name, w)) => {
                    let w: f32 = w
                        .trim()
                        .parse()
                        .map_err(|_| Error::Config(format!("reward weight {w:?} for {name:?} is not a number")))?;
                    (name, w)
                }
                None => (item, 1.0),
            };
            // A repeated term would otherwise keep only its last weight, silently.
            if terms.insert(name.parse()?, weight).is_some() {
                return Err(Error::Config(format!("reward term {:?} is listed twice", name.trim())));
            }
        }
        if terms.is_empty() {
            return Err(Error::Config("empty reward list".into()));
        }
        self.terms = terms;
        Ok(())
    }

    /// The configured built-in for one name.
    pub fn term(&self, name: TermName) -> Box<dyn RewardFn> {
        match name {
            TermName::Terminal => Box::new(Terminal),
            TermName::Delta => Box::new(Delta),
            TermName::Discounted => Box::new(self.discounted),
            TermName::Trend => Box::new(self.trend),
            TermName::Target => Box::new(self.target.clone()),
            TermName::Accommodation => Box::new(self.accommodation),
        }
    }

    /// Checks every parameter, then builds the weighted sum (`terminal` alone when no term is listed).
    pub fn build(&self) -> Result<WeightedReward> {
        self.discounted.check()?;
        self.trend.check()?;
        self.target.check()?;
        self.accommodation.check()?;
        check_weights("terms", &self.terms.values().copied().collect::<Vec<_>>())?;
        let terms: Vec<(TermName, f32)> = if self.terms.is_empty() {
            vec![(TermName::Terminal, 1.0)]
        } else {
            self.terms.iter().map(|(&n, &w)| (n, w)).collect()
        };
        Ok(WeightedReward {
            terms: terms.into_iter().map(|(n, w)| (w, self.term(n))).collect(),
        })
    }
}

fn parse_toml(text: &str, origin: &str) -> Result<RewardConfig> {
    toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().trim_end())))
}
