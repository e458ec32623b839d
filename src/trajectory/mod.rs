//! Conversations as emotion arcs. This module owns everything between a conversation's text and the numbers a
//! reward reads: parsing conversations ([`Conversation`], [`Turn`]), reading a turn clause by clause
//! ([`TurnReading`]), the documented valence/arousal table and well-being scale ([`AffectModel`],
//! [`AFFECT_TABLE`]), the speaker's [`EmotionArc`] with its [`ArcSummary`], the whole scored [`Trajectory`], and
//! the two ways to score: incrementally with [`ArcTracker`] or in bulk with [`score_conversations`]; and reading
//! chat-templated strings back into turns ([`Template`]).

mod affect;
mod arc;
mod conversation;
mod reading;
mod template;
mod tracker;

pub use affect::{
    category_affect, family_prior, Affect, AffectModel, CategoryAffect, AFFECT_TABLE, DEFAULT_NEUTRAL_MASS,
};
pub use arc::{ArcSummary, EmotionArc, ScoredTurn, Trajectory, DEFAULT_TREND_WINDOW};
pub(crate) use arc::{slope, tail, volatility};
#[cfg(feature = "server")]
pub(crate) use conversation::found_value;
pub use conversation::{read_conversations, Conversation, ConversationAt, ConversationProblem, Turn};
pub use reading::{Clause, ClauseScore, TurnContext, TurnReading};
pub use template::{read_rollout, turns_after_prompt, Template, TemplateError};
pub use tracker::{score_conversations, ArcOptions, ArcTracker, DEFAULT_CACHE_CAPACITY};
