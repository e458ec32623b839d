//! The built-in arc rewards. Each reads the speaker's well-being series `W_0 .. W_T` (0–100, see
//! [`AffectModel`](crate::trajectory::AffectModel)) or their intensities, and its rustdoc gives its formula.
//! Every reward of an empty arc is 0.

use super::RewardFn;
use crate::error::{Error, Result};
use crate::taxonomy::Category;
use crate::trajectory::{slope, tail, volatility, EmotionArc, Trajectory, DEFAULT_TREND_WINDOW};
use serde::Deserialize;

/// RLVER's reward: the final well-being on a 0–1 scale, `R = W_T / 100`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terminal;

impl RewardFn for Terminal {
    fn name(&self) -> &str {
        "terminal"
    }
    fn reward(&self, t: &Trajectory) -> f32 {
        t.arc().wellbeing().last().map_or(0.0, |w| w / 100.0)
    }
}

/// How much better off the speaker ends than they started, `R = (W_T - W_0) / 100`, in `[-1, 1]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Delta;

impl RewardFn for Delta {
    fn name(&self) -> &str {
        "delta"
    }
    fn reward(&self, t: &Trajectory) -> f32 {
        match t.arc().wellbeing() {
            [first, .., last] => (last - first) / 100.0,
            _ => 0.0,
        }
    }
}

/// Potential-based shaping with well-being as the potential: each speaker turn earns the change it brought,
/// `F_t = (W_t - W_{t-1}) / 100`, and the reward is their discounted sum
/// `R = Σ_{t=1..T} γ^(t-1) F_t`. With `γ = 1` it telescopes to [`Delta`]; with `γ < 1` getting better sooner
/// is worth more than getting better late, and an early drop costs more than a late one.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Discounted {
    /// `γ` in `(0, 1]`.
    pub gamma: f32,
}

impl Default for Discounted {
    /// `γ = 0.9`: a gain five turns later is still worth about two thirds of an immediate one.
    fn default() -> Self {
        Discounted { gamma: 0.9 }
    }
}

impl Discounted {
    /// A discounted reward with factor `gamma`; [`Error::Config`] unless `gamma` is in `(0, 1]`.
    pub fn new(gamma: f32) -> Result<Discounted> {
        let d = Discounted { gamma };
        d.check()?;
        Ok(d)
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.gamma > 0.0 && self.gamma <= 1.0 {
            Ok(())
        } else {
            Err(Error::Config(format!("discounted: gamma must be in (0, 1], not {}", self.gamma)))
        }
    }

    /// The undiscounted shaping terms `F_1 .. F_T`, one per speaker turn after the first: the dense per-turn
    /// rewards an RL loop can hand out as the conversation goes.
    pub fn shaping_terms(arc: &EmotionArc) -> Vec<f32> {
        arc.wellbeing().windows(2).map(|w| (w[1] - w[0]) / 100.0).collect()
    }
}

impl RewardFn for Discounted {
    fn name(&self) -> &str {
        "discounted"
    }
    fn reward(&self, t: &Trajectory) -> f32 {
        Discounted::shaping_terms(t.arc())
            .iter()
            .zip(std::iter::successors(Some(1.0f32), |g| Some(g * self.gamma)))
            .map(|(f, g)| g * f)
            .sum()
    }
}

/// Where the speaker is, where they are heading and how bumpy the ride was:
/// `R = clip(a · W_T/100 + b · slope_k/100 − c · vol/100, 0, 1)`, where `slope_k` is the least-squares slope
/// of well-being per speaker turn over the last `k` points and `vol` the standard deviation of the
/// turn-to-turn changes (both as in [`ArcSummary`](crate::trajectory::ArcSummary)).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trend {
    /// `k`, at least 2.
    pub window: usize,
    /// `a`.
    pub level: f32,
    /// `b`.
    pub trend: f32,
    /// `c`.
    pub volatility: f32,
}

impl Default for Trend {
    /// `k = 3, a = 1, b = 1, c = 0.5`: the level dominates, a rise of 10 points a turn adds 0.1, and a swing
    /// of 10 points costs 0.05.
    fn default() -> Self {
        Trend {
            window: DEFAULT_TREND_WINDOW,
            level: 1.0,
            trend: 1.0,
            volatility: 0.5,
        }
    }
}

impl Trend {
    pub(crate) fn check(&self) -> Result<()> {
        if self.window < 2 {
            return Err(Error::Config(format!("trend: window must be at least 2, not {}", self.window)));
        }
        check_weights("trend", &[self.level, self.trend, self.volatility])
    }
}

impl RewardFn for Trend {
    fn name(&self) -> &str {
        "trend"
    }
    fn reward(&self, t: &Trajectory) -> f32 {
        let w = t.arc().wellbeing();
        let Some(last) = w.last() else { return 0.0 };
        let raw = self.level * last / 100.0 + self.trend * slope(tail(w, self.window)) / 100.0
            - self.volatility * volatility(w) / 100.0;
        raw.clamp(0.0, 1.0)
    }
}

/// Moves chosen categories: `R = (1/|C|) (Σ_{c∈up} (x_c,T − x_c,0) + Σ_{c∈down} (x_c,0 − x_c,T))`, in `[-1, 1]`,
/// with `x_c,t` the speaker's intensity of category `c` at arc point `t`. The default asks for Distress and
/// Helplessness to go down.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    /// Categories the speaker's intensity should fall in (a fall counts positive).
    pub down: Vec<Category>,
    /// Categories the speaker's intensity should rise in.
    pub up: Vec<Category>,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            down: vec![Category::Distress, Category::Helplessness],
            up: Vec::new(),
        }
    }
}

impl Target {
    /// A target reward; [`Error::Config`] when both lists are empty or a category is in both.
    pub fn new(down: Vec<Category>, up: Vec<Category>) -> Result<Target> {
        let t = Target { down, up };
        t.check()?;
        Ok(t)
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.down.is_empty() && self.up.is_empty() {
            return Err(Error::Config("target: name at least one category to move down or up".into()));
        }
        if let Some(c) = self.down.iter().find(|c| self.up.contains(c)) {
            return Err(Error::Config(format!("target: {c} is asked to go both down and up")));
        }
        Ok(())
    }
}

impl RewardFn for Target {
    fn name(&self) -> &str {
        "target"
    }
    fn reward(&self, t: &Trajectory) -> f32 {
        let (Some(first), Some(last)) = (t.arc().intensities().first(), t.arc().intensities().last()) else {
            return 0.0;
        };
        let n = (self.down.len() + self.up.len()).max(1) as f32;
        let rise: f32 = self.up.iter().map(|&c| last[c] - first[c]).sum();
        let fall: f32 = self.down.iter().map(|&c| first[c] - last[c]).sum();
        (rise + fall) / n
    }
}

/// Weights must be finite numbers; a NaN would silently poison every reward.
pub(crate) fn check_weights(what: &str, weights: &[f32]) -> Result<()> {
    match weights.iter().find(|w| !w.is_finite()) {
        Some(w) => Err(Error::Config(format!("{what}: weight {w} is not a finite number"))),
        None => Ok(()),
    }
}
