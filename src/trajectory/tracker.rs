//! Scoring conversations into [`Trajectory`]s with a model: [`ArcTracker`] one turn at a time, as an RL rollout
//! produces them, and [`score_conversations`] for many finished conversations at once. Both go through the same
//! clause cache, so a text is encoded once however often it recurs, and a turn is never encoded twice.
//!
//! This module knows nothing of rewards: [`ArcTracker::reward`], the reward of the conversation so far, is
//! defined with the rewards in [`crate::reward`], which depends on trajectories and not the other way round.

use super::affect::AffectModel;
use super::arc::{EmotionArc, ScoredTurn, Trajectory};
use super::conversation::{Conversation, ConversationAt, ConversationProblem};
use super::reading::{ClauseCache, ClauseScore, TurnContext, TurnReading};
use crate::error::{InputProblem, Result};
use crate::estimator::{Estimator, InContext};
use std::collections::HashMap;
use std::sync::Arc;

/// What an arc follows and how turns are read.
#[derive(Debug, Clone, PartialEq)]
pub struct ArcOptions {
    /// Whose turns form the arc (default `user`).
    pub speaker: String,
    /// Whether a turn is read as one text (default) or clause by clause.
    pub reading: TurnReading,
    /// What a speaker's turn is read with: by default the reply before it, when the model reads context.
    pub context: TurnContext,
    /// How intensities become valence, arousal and well-being (default: the documented table).
    pub affect: AffectModel,
}

impl Default for ArcOptions {
    fn default() -> Self {
        ArcOptions {
            speaker: "user".into(),
            reading: TurnReading::default(),
            context: TurnContext::default(),
            affect: AffectModel::default(),
        }
    }
}

/// One turn as it is encoded: its clauses and the message they are read after.
pub(crate) type TurnPieces<'c> = (Vec<super::reading::Clause<'c>>, Option<&'c str>);

impl ArcOptions {
    /// Every turn of `conversation` as these options read it with `estimator`: the one place bulk scoring (here
    /// and in the reward server) decides clauses and context, as [`ArcTracker::push`] does turn by turn.
    pub(crate) fn turn_pieces<'c>(&self, estimator: &Estimator, conversation: &'c Conversation) -> Vec<TurnPieces<'c>> {
        let turns = &conversation.turns;
        turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let previous = i.checked_sub(1).map(|p| (turns[p].role.as_str(), turns[p].text.as_str()));
                let turn = (t.role.as_str(), t.text.as_str());
                let after = self.context.message_before(self.reading, estimator, &self.speaker, turn, previous);
                (self.reading.clauses(&t.text), after)
            })
            .collect()
    }
}

/// Clause texts cached by a tracker before it starts over (about 13 MB of vectors).
pub const DEFAULT_CACHE_CAPACITY: usize = 65_536;

/// Builds a trajectory turn by turn. Scoring turn `t` encodes only the clauses of turn `t` that are not already
/// cached: earlier turns keep their scores, and a text seen before (in this conversation, or in an earlier one
/// since the last [`reset`](Self::reset)) is served from the cache.
///
/// ```no_run
/// use emoarc::{ArcOptions, ArcTracker, Estimator, reward::Terminal};
///
/// let estimator = Estimator::new()?;
/// let mut tracker = ArcTracker::new(&estimator, ArcOptions::default(), "rollout-1");
/// tracker.push("user", "i failed the exam and i feel useless")?;
/// tracker.push("assistant", "That sounds rough. What happened?")?;
/// tracker.push("user", "i ran out of time. but i know what to fix now, thanks")?;
/// println!("reward so far: {:?}", tracker.reward(&Terminal));
/// # Ok::<(), emoarc::Error>(())
/// ```
pub struct ArcTracker<'e> {
    estimator: EstimatorRef<'e>,
    options: ArcOptions,
    cache: ClauseCache,
    trajectory: Trajectory,
    /// The last turn pushed, `(role, text)`: what the next turn may be read after.
    previous: Option<(String, String)>,
}

/// The estimator a tracker scores with: borrowed from the caller, or shared with it.
enum EstimatorRef<'e> {
    Borrowed(&'e Estimator),
    Shared(Arc<Estimator>),
}

impl std::ops::Deref for EstimatorRef<'_> {
    type Target = Estimator;

    fn deref(&self) -> &Estimator {
        match self {
            EstimatorRef::Borrowed(estimator) => estimator,
            EstimatorRef::Shared(estimator) => estimator,
        }
    }
}

impl<'e> ArcTracker<'e> {
    /// An empty conversation `id` scored with `estimator`, with a clause cache of [`DEFAULT_CACHE_CAPACITY`].
    pub fn new(estimator: &'e Estimator, options: ArcOptions, id: impl Into<String>) -> ArcTracker<'e> {
        Self::with_estimator(EstimatorRef::Borrowed(estimator), options, id)
    }

    fn with_estimator(estimator: EstimatorRef<'e>, options: ArcOptions, id: impl Into<String>) -> ArcTracker<'e> {
        let trajectory = Trajectory::new(id, options.speaker.clone());
        ArcTracker {
            estimator,
            options,
            cache: ClauseCache::new(DEFAULT_CACHE_CAPACITY),
            trajectory,
            previous: None,
        }
    }

    /// A tracker that shares ownership of its estimator, for callers that cannot keep a borrow alive (a
    /// Python object, a task moved between threads).
    pub fn shared(estimator: Arc<Estimator>, options: ArcOptions, id: impl Into<String>) -> ArcTracker<'static> {
        ArcTracker::with_estimator(EstimatorRef::Shared(estimator), options, id)
    }

    /// How many distinct clause texts the cache may hold before it starts over.
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = ClauseCache::new(capacity);
        self
    }

    /// Scores the next turn and appends it. A refused text (blank, or too long under `OnLong::Error`) is an
    /// error naming this conversation and turn, and leaves the trajectory unchanged.
    pub fn push(&mut self, role: &str, text: &str) -> Result<&ScoredTurn> {
        let at = ConversationAt::id(self.trajectory.id.clone()).turn(self.trajectory.turns().len());
        if text.trim().is_empty() {
            return Err(at.error(ConversationProblem::EmptyText));
        }
        let clauses = self.options.reading.clauses(text);
        let previous = self.previous.as_ref().map(|(r, t)| (r.as_str(), t.as_str()));
        let o = &self.options;
        let after = o.context.message_before(o.reading, &self.estimator, &o.speaker, (role, text), previous);
        let refused = self.cache.fill(&self.estimator, clauses.iter().map(|c| InContext::new(c.text, after)))?;
        if let Some(problem) = refused.into_values().next() {
            return Err(at.error(ConversationProblem::Input(problem)));
        }
        let score = combine_cached(&self.cache, &clauses, after);
        self.previous = Some((role.to_string(), text.to_string()));
        Ok(self.trajectory.push_scored(role, score, &self.options.affect))
    }

    /// The conversation so far.
    pub fn trajectory(&self) -> &Trajectory {
        &self.trajectory
    }

    /// The speaker's arc so far.
    pub fn arc(&self) -> &EmotionArc {
        self.trajectory.arc()
    }

    /// Starts a new conversation, keeping the cache (rollouts often share their opening).
    pub fn reset(&mut self, id: impl Into<String>) {
        self.trajectory = Trajectory::new(id, self.options.speaker.clone());
        self.previous = None;
    }

    /// Distinct clause texts cached.
    pub fn cached_texts(&self) -> usize {
        self.cache.len()
    }
}

/// A turn's reading from its clauses (each read after `after`), all of which must be cached.
fn combine_cached(cache: &ClauseCache, clauses: &[super::reading::Clause], after: Option<&str>) -> ClauseScore {
    let scores: Vec<ClauseScore> = clauses
        .iter()
        .map(|c| *cache.get(InContext::new(c.text, after)).expect("every clause was just encoded"))
        .collect();
    TurnReading::combine_scores(clauses, &scores)
}

/// Scores finished conversations, encoding every distinct clause of all of them in one estimator call (sorted
/// and batched by the estimator). The outer error is a model failure; each conversation gets its own result, so
/// one conversation without the speaker, or with a refused text, never costs the others.
pub fn score_conversations(
    estimator: &Estimator,
    conversations: &[Conversation],
    options: &ArcOptions,
) -> Result<Vec<Result<Trajectory>>> {
    let readings: Vec<Vec<TurnPieces>> = conversations.iter().map(|c| options.turn_pieces(estimator, c)).collect();
    let usable: Vec<Result<()>> = conversations.iter().map(|c| c.require_speaker(&options.speaker)).collect();
    let mut cache = ClauseCache::new(usize::MAX);
    let items = readings
        .iter()
        .zip(&usable)
        .filter(|(_, ok)| ok.is_ok())
        .flat_map(|(turns, _)| turns.iter().flat_map(|(clauses, after)| clauses.iter().map(|c| InContext::new(c.text, *after))));
    let refused: HashMap<InContext, InputProblem> = cache.fill(estimator, items)?;
    Ok(conversations
        .iter()
        .zip(&readings)
        .zip(usable)
        .map(|((conversation, turns), usable)| {
            usable?;
            let mut trajectory = Trajectory::new(conversation.id.clone(), options.speaker.clone());
            for (i, (turn, (clauses, after))) in conversation.turns.iter().zip(turns).enumerate() {
                if let Some(problem) = clauses.iter().find_map(|c| refused.get(&InContext::new(c.text, *after))) {
                    return Err(conversation.at().turn(i).error(ConversationProblem::Input(problem.clone())));
                }
                trajectory.push_scored(turn.role.clone(), combine_cached(&cache, clauses, *after), &options.affect);
            }
            Ok(trajectory)
        })
        .collect())
}
