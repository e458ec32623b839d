//! The accommodation guard: does the other side sound brighter than the speaker's state warrants? Language
//! models trained on momentary approval show an "emotional rebound" (negative prompts get neutral-to-positive
//! replies) and a "tone floor" (replies rarely go negative even when warranted); a reply that soothes without
//! helping scores well turn by turn and leaves the person where they were. For every reply the guard measures
//! how far its own valence runs above the speaker's valence just before it, so an RL loop can penalise
//! soothing separately from rewarding help.

use super::RewardFn;
use crate::error::{Error, Result};
use crate::trajectory::Trajectory;
use serde::{Deserialize, Serialize};

/// For each turn not by the speaker that follows a speaker turn (a reply):
/// `excess_j = max(0, v_j − v_s(j) − margin)`, with `v_j` the reply's valence and `v_s(j)` the speaker's valence
/// at their latest turn before it. The conversation's accommodation is the mean excess over its replies, in
/// `[0, 2]`; as a reward term it counts as `−mean`, a penalty whose weight is set in the composition.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccommodationGuard {
    /// How far a reply may run above the speaker before it counts, in valence units (default 0: any rebound
    /// counts, in proportion to its size).
    pub margin: f32,
}

impl Default for AccommodationGuard {
    fn default() -> Self {
        AccommodationGuard { margin: 0.0 }
    }
}

/// One reply's measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReplyAccommodation {
    /// The reply's position in the conversation (0-based).
    pub turn: usize,
    /// The reply's valence, `-1..=1`.
    pub reply_valence: f32,
    /// The speaker's valence at their latest turn before the reply.
    pub speaker_valence: f32,
    /// `max(0, reply_valence - speaker_valence - margin)`, in `[0, 2]`.
    pub excess: f32,
}

/// The guard's findings for one conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccommodationReport {
    /// Mean excess over replies (0 when there is no reply).
    pub mean: f32,
    /// Largest excess and the reply where it was.
    pub max: f32,
    /// The conversation turn (0-based) of the largest excess, the first on a tie; `None` without replies.
    pub max_turn: Option<usize>,
    /// Every reply's measurement, in conversation order.
    pub replies: Vec<ReplyAccommodation>,
}

impl AccommodationGuard {
    pub(crate) fn check(&self) -> Result<()> {
        if self.margin.is_finite() && self.margin >= 0.0 {
            Ok(())
        } else {
            Err(Error::Config(format!("accommodation: margin must be a non-negative number, not {}", self.margin)))
        }
    }

    /// Measures every reply of a trajectory.
    pub fn assess(&self, t: &Trajectory) -> AccommodationReport {
        let mut speaker_valence = None;
        let mut replies = Vec::new();
        for (turn, scored) in t.turns().iter().enumerate() {
            let valence = scored.affect.valence;
            if scored.role == t.speaker {
                speaker_valence = Some(valence);
            } else if let Some(before) = speaker_valence {
                replies.push(ReplyAccommodation {
                    turn,
                    reply_valence: valence,
                    speaker_valence: before,
                    excess: (valence - before - self.margin).max(0.0),
                });
            }
        }
        let mean = if replies.is_empty() {
            0.0
        } else {
            replies.iter().map(|r| r.excess).sum::<f32>() / replies.len() as f32
        };
        let worst = replies.iter().max_by(|a, b| a.excess.total_cmp(&b.excess));
        AccommodationReport {
            mean,
            max: worst.map_or(0.0, |r| r.excess),
            max_turn: worst.map(|r| r.turn),
            replies,
        }
    }
}

impl RewardFn for AccommodationGuard {
    fn name(&self) -> &str {
        "accommodation"
    }
    fn reward(&self, t: &Trajectory) -> f32 {
        -self.assess(t).mean
    }
}
