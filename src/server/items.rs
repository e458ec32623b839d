//! Per-item outcomes of a batch request. One bad item (an empty completion, a query no template reads, a
//! conversation without the speaker, a reward that overflows) must not fail the other items of the batch, since
//! trainers such as verl do not retry a 4xx and one bad sample would cost the whole batch. This module owns
//! what counts as an item problem, its stable `code`, and the [`Outcomes`] that collect the errors (the item
//! gets the configured invalid reward) and warnings of one request, count them in the metrics and log the
//! single-turn caveat.

use super::log::Log;
use super::metrics::Metrics;
use super::Limits;
use crate::trajectory::Conversation;
use serde::Serialize;

/// One problem with one item of a batch.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ItemIssue {
    /// The item's position in the request.
    pub(crate) index: usize,
    /// A stable, machine-readable name.
    pub(crate) code: &'static str,
    /// The part of the request to blame (`query[3]`, `conversations[1].turns[2]`).
    pub(crate) field: String,
    /// What is wrong, for a person.
    pub(crate) message: String,
}

impl ItemIssue {
    pub(crate) fn new(index: usize, code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        ItemIssue {
            index,
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An item as parsed: a conversation to score, or why it cannot be.
pub(crate) type Item = Result<Conversation, ItemIssue>;

/// The text of a turn or query, checked: not blank, within the byte limit.
pub(crate) fn check_text(index: usize, text: &str, field: &str, limits: &Limits) -> Result<(), ItemIssue> {
    if text.len() > limits.max_text_bytes {
        let message = format!("{} bytes exceed the limit of {} bytes per text", text.len(), limits.max_text_bytes);
        return Err(ItemIssue::new(index, "text_too_long", field, message));
    }
    if text.trim().is_empty() {
        return Err(ItemIssue::new(index, "empty_text", field, "empty or whitespace-only text"));
    }
    Ok(())
}

/// Item `index`'s conversation, checked: every turn within the limits, at least one turn by the speaker.
/// `field(turn)` names the item, or one of its turns.
pub(crate) fn check_conversation(
    index: usize,
    conversation: Conversation,
    speaker: &str,
    limits: &Limits,
    field: impl Fn(Option<usize>) -> String,
) -> Item {
    for (t, turn) in conversation.turns.iter().enumerate() {
        check_text(index, &turn.text, &field(Some(t)), limits)?;
    }
    if let Err(e) = conversation.require_speaker(speaker) {
        let message = match e {
            crate::Error::Conversation { problem, .. } => problem.to_string(),
            other => other.to_string(),
        };
        return Err(ItemIssue::new(index, "no_speaker_turn", field(None), message));
    }
    Ok(conversation)
}

/// Whether the conversation ends with a reply the speaker never reacts to: the speaker's arc cannot show that
/// reply's effect, so no reward that reads the arc can tell a kind reply from a rude one.
pub(crate) fn single_turn(conversation: &Conversation, speaker: &str) -> bool {
    let last_speaker = conversation.turns.iter().rposition(|t| t.role == speaker);
    let last_reply = conversation.turns.iter().rposition(|t| t.role != speaker && t.role != "system");
    matches!((last_speaker, last_reply), (Some(s), Some(r)) if r > s)
}

/// The warning for [`single_turn`].
pub(crate) fn single_turn_warning(index: usize, field: String) -> ItemIssue {
    ItemIssue::new(
        index,
        "single_turn",
        field,
        "the last reply has no turn by the speaker after it, so the reward cannot see its effect (a kind and a \
         rude reply score the same); send multi-turn rollouts in which a simulated user reacts",
    )
}

/// The errors and warnings of one request, in item order.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Outcomes {
    pub(crate) errors: Vec<ItemIssue>,
    pub(crate) warnings: Vec<ItemIssue>,
}

impl Outcomes {
    pub(crate) fn error(&mut self, issue: ItemIssue) {
        self.errors.push(issue);
    }

    pub(crate) fn warn(&mut self, issue: ItemIssue) {
        self.warnings.push(issue);
    }

    /// Whether item `index` has an error.
    pub(crate) fn failed(&self, index: usize) -> bool {
        self.errors.iter().any(|e| e.index == index)
    }

    /// Whether item `index` has a warning with `code`.
    pub(crate) fn warned(&self, index: usize, code: &str) -> bool {
        self.warnings.iter().any(|w| w.index == index && w.code == code)
    }

    /// Sorts both lists by item, counts every entry in the metrics and logs (throttled) the single-turn
    /// items of `endpoint`.
    pub(crate) fn finish(&mut self, endpoint: &str, metrics: &Metrics, log: &Log) {
        self.errors.sort_by_key(|e| e.index);
        self.warnings.sort_by_key(|w| w.index);
        for issue in &self.errors {
            metrics.record_item(true, issue.code);
        }
        for issue in &self.warnings {
            metrics.record_item(false, issue.code);
        }
        let single = self.warnings.iter().filter(|w| w.code == "single_turn").count() as u64;
        log.note("single_turn", single, |n| {
            format!(
                "warning: {n} single-turn item(s) ({endpoint} and others, since the last note): the reward cannot \
                 see a reply the user never reacts to; use multi-turn rollouts with a simulated user"
            )
        });
    }
}
