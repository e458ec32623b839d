//! Rewards from emotion arcs. This module owns the [`RewardFn`] trait, the built-in rewards ([`Terminal`],
//! [`Delta`], [`Discounted`], [`Trend`], [`Target`]), the [`AccommodationGuard`] that tells soothing from
//! helping, their weighted composition and its TOML configuration ([`WeightedReward`], [`RewardConfig`]), and
//! the check of rewards against authored better/worse conversation pairs ([`evaluate_pairs`]).
//!
//! ```
//! use emoarc::reward::{AccommodationGuard, RewardFn, Terminal, WeightedReward};
//! use emoarc::trajectory::{AffectModel, Trajectory};
//! use emoarc::{Category, Intensities};
//!
//! let mut sad = Intensities::default();
//! sad[Category::Sadness] = 0.8;
//! let mut cheerful = Intensities::default();
//! cheerful[Category::Elation] = 0.9;
//! let turns = [("user", sad), ("assistant", cheerful), ("user", sad)];
//! let t = Trajectory::from_turns("demo", "user", turns.map(|(r, x)| (r.to_string(), x)), &AffectModel::default())?;
//! let reward = WeightedReward::new().with(1.0, Terminal).with(0.5, AccommodationGuard::default());
//! assert!(reward.reward(&t) < Terminal.reward(&t)); // the cheerful reply to a sad user costs
//! # Ok::<(), emoarc::Error>(())
//! ```

mod builtin;
mod compose;
mod guard;
mod pairs;

use crate::trajectory::{ArcTracker, Trajectory};

pub use builtin::{Delta, Discounted, Target, Terminal, Trend};
pub use compose::{RewardConfig, TermName, WeightedReward};
pub use guard::{AccommodationGuard, AccommodationReport, ReplyAccommodation};
pub use pairs::{
    evaluate_pairs, find_pairs, Agreement, ConversationPair, GuardComparison, GuardMeans, PairReport, PairScores,
    RewardAgreement,
};

/// A reward computed from a scored conversation. Implementations are pure functions of the trajectory, so
/// they can be evaluated on any prefix (an RL rollout in progress) and shared across threads.
pub trait RewardFn: Send + Sync {
    /// The name used in configuration and output.
    fn name(&self) -> &str;
    /// The reward of the conversation so far.
    fn reward(&self, trajectory: &Trajectory) -> f32;
}

impl<R: RewardFn + ?Sized> RewardFn for Box<R> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn reward(&self, trajectory: &Trajectory) -> f32 {
        (**self).reward(trajectory)
    }
}

/// Rewards of a conversation in progress. Defined here rather than in [`crate::trajectory`] so that the
/// trajectory side does not depend on rewards.
impl ArcTracker<'_> {
    /// The reward of the conversation so far; `None` until the speaker has a turn.
    pub fn reward(&self, reward: &dyn RewardFn) -> Option<f32> {
        (!self.arc().is_empty()).then(|| reward.reward(self.trajectory()))
    }
}
