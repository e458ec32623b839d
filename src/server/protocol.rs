//! The request bodies and how they are read. Bodies are parsed to a JSON value and walked by hand rather than
//! derived, so that every refusal names the exact field (`texts[3]`, `conversations[1].turns[2].text`) and
//! says whether it is malformed (400) or well-formed but over a limit or unusable (422 for the request, or an
//! item error for one conversation or query of a batch, see `items`). It also owns how an OpenRLHF
//! `/get_reward` query string is read back into turns ([`read_rollout`], the library's reader).

use super::error::ApiError;
use super::Limits;
use crate::reward::WeightedReward;
use crate::taxonomy::NUM_CATEGORIES;

use super::items::{self, Item, ItemIssue};
use crate::trajectory::{
    found_value, read_rollout, turns_after_prompt, ArcOptions, Conversation, ConversationAt, ConversationProblem, Template, TemplateError, TurnContext, TurnReading,
};
use crate::RewardConfig;
use serde_json::{Map, Value};

/// `POST /v1/score`: `{"texts": [string, ...], "top": k}`.
pub(crate) struct ScoreRequest {
    pub(crate) texts: Vec<String>,
    pub(crate) top: usize,
}

/// `POST /v1/reward`: `{"conversations": [...], "reward": "terminal=1,accommodation=0.5", "speaker": "user",
/// "reading": "clauses", "context": "alone"}`; everything but the conversations is optional and defaults to the
/// server's settings.
pub(crate) struct RewardRequest {
    pub(crate) items: Vec<Item>,
    pub(crate) reward: WeightedReward,
    pub(crate) options: ArcOptions,
}

/// `POST /get_reward` (OpenRLHF): `{"query": [string, ...], "prompts": [string, ...]}`; other fields (OpenRLHF
/// sends `labels`) are ignored, as OpenRLHF's own server does.
pub(crate) struct GetRewardRequest {
    pub(crate) items: Vec<Item>,
    /// `speaker_turn_in_reply` warnings: a turn by the speaker after the prompt (see [`reply_warning`]).
    pub(crate) warnings: Vec<ItemIssue>,
}

/// The server-wide defaults a request starts from.
pub(crate) struct Defaults<'a> {
    pub(crate) limits: &'a Limits,
    pub(crate) top: usize,
    pub(crate) reward: &'a RewardConfig,
    pub(crate) arc: &'a ArcOptions,
    pub(crate) template: Option<Template>,
}

impl ScoreRequest {
    pub(crate) fn parse(body: Value, d: &Defaults) -> Result<ScoreRequest, ApiError> {
        let mut obj = body_object(body, &["texts", "top"])?;
        let items = required_array(&mut obj, "texts")?;
        check_count("texts", items.len(), d.limits.max_items)?;
        let texts = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let field = format!("texts[{i}]");
                let text = string_value(item, &field)?;
                check_text(&text, &field, d.limits)?;
                Ok(text)
            })
            .collect::<Result<Vec<String>, ApiError>>()?;
        let top = match obj.remove("top") {
            None | Some(Value::Null) => d.top,
            Some(v) => match v.as_u64() {
                Some(k) if k as usize <= NUM_CATEGORIES => k as usize,
                _ => return Err(ApiError::field("top", format!("must be an integer from 0 to {NUM_CATEGORIES}"))),
            },
        };
        Ok(ScoreRequest { texts, top })
    }
}

impl RewardRequest {
    pub(crate) fn parse(body: Value, d: &Defaults) -> Result<RewardRequest, ApiError> {
        let mut obj = body_object(body, &["conversations", "reward", "speaker", "reading", "context"])?;
        let mut options = d.arc.clone();
        if let Some(speaker) = optional_string(&mut obj, "speaker")? {
            if speaker.trim().is_empty() {
                return Err(ApiError::unprocessable("speaker", "must not be empty"));
            }
            options.speaker = speaker;
        }
        if let Some(reading) = optional_string(&mut obj, "reading")? {
            options.reading = reading
                .parse::<TurnReading>()
                .map_err(|_| ApiError::unprocessable("reading", "must be \"clauses\" or \"whole\""))?;
        }
        if let Some(context) = optional_string(&mut obj, "context")? {
            options.context = context
                .parse::<TurnContext>()
                .map_err(|_| ApiError::unprocessable("context", "must be \"previous\" or \"alone\""))?;
        }
        let mut config = d.reward.clone();
        if let Some(spec) = optional_string(&mut obj, "reward")? {
            config.set_terms(&spec).map_err(|e| ApiError::unprocessable("reward", config_message(e)))?;
        }
        let reward = config.build().map_err(|e| ApiError::unprocessable("reward", config_message(e)))?;
        let items = required_array(&mut obj, "conversations")?;
        check_count("conversations", items.len(), d.limits.max_items)?;
        let items = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| conversation(item, i))
            .collect::<Result<Vec<_>, _>>()?;
        check_turn_count(&items, d.limits)?;
        let items = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                item.and_then(|c| {
                    items::check_conversation(i, c, &options.speaker, d.limits, |turn| match turn {
                        Some(t) => format!("conversations[{i}].turns[{t}]"),
                        None => format!("conversations[{i}]"),
                    })
                })
            })
            .collect();
        Ok(RewardRequest {
            items,
            reward,
            options,
        })
    }
}

impl GetRewardRequest {
    pub(crate) fn parse(body: Value, d: &Defaults) -> Result<GetRewardRequest, ApiError> {
        let mut obj = object(body)?;
        let queries = required_array(&mut obj, "query")?;
        check_count("query", queries.len(), d.limits.max_items)?;
        let prompts = match obj.remove("prompts") {
            None | Some(Value::Null) => None,
            Some(Value::Array(p)) if p.len() == queries.len() => Some(p),
            Some(Value::Array(p)) => {
                return Err(ApiError::field(
                    "prompts",
                    format!("has {} items but query has {}; give one prompt per query", p.len(), queries.len()),
                ))
            }
            Some(other) => return Err(ApiError::field("prompts", format!("must be an array, found {}", found_value(&other)))),
        };
        let mut prompts = prompts.map(Vec::into_iter);
        let mut warnings = Vec::new();
        let items = queries
            .into_iter()
            .enumerate()
            .map(|(i, query)| {
                let query = string_value(query, &format!("query[{i}]"))?;
                let prompt = match prompts.as_mut().and_then(Iterator::next) {
                    Some(p) => Some(string_value(p, &format!("prompts[{i}]"))?),
                    None => None,
                };
                let item = query_item(i, &query, prompt.as_deref(), d);
                if let (Ok(conversation), Some(prompt)) = (&item, prompt.as_deref()) {
                    warnings.extend(reply_warning(i, conversation, &query, prompt, d));
                }
                Ok(item)
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        check_turn_count(&items, d.limits)?;
        Ok(GetRewardRequest { items, warnings })
    }
}

/// The body as an object, refusing fields other than `allowed` (a misspelt option must not silently fall back
/// to its default).
fn body_object(body: Value, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let obj = object(body)?;
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::field(unknown.clone(), format!("unknown field; expected one of {}", allowed.join(", "))));
    }
    Ok(obj)
}

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(obj) => Ok(obj),
        other => Err(ApiError::field("body", format!("expected a JSON object, found {}", found_value(&other)))),
    }
}

fn required_array(obj: &mut Map<String, Value>, key: &str) -> Result<Vec<Value>, ApiError> {
    match obj.remove(key) {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ApiError::field(key, format!("must be an array, found {}", found_value(&other)))),
        None => Err(ApiError::field(key, "missing")),
    }
}

fn optional_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string_value(v, key).map(Some),
    }
}

fn string_value(v: Value, field: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(ApiError::field(field, format!("must be a string, found {}", found_value(&other)))),
    }
}

fn check_count(field: &str, count: usize, max: usize) -> Result<(), ApiError> {
    if count > max {
        return Err(ApiError::TooManyItems {
            field: field.into(),
            count,
            max,
        });
    }
    Ok(())
}

fn check_text(text: &str, field: &str, limits: &Limits) -> Result<(), ApiError> {
    if text.len() > limits.max_text_bytes {
        return Err(ApiError::TextTooLong {
            field: field.into(),
            bytes: text.len(),
            max: limits.max_text_bytes,
        });
    }
    if text.trim().is_empty() {
        return Err(ApiError::unprocessable(field, "empty or whitespace-only text"));
    }
    Ok(())
}

/// Query `i` read into a checked conversation, or why it cannot be rewarded.
fn query_item(i: usize, query: &str, prompt: Option<&str>, d: &Defaults) -> Item {
    let field = format!("query[{i}]");
    items::check_text(i, query, &field, d.limits)?;
    let turns = read_rollout(query, prompt, d.template).map_err(|e| {
        let code = match e {
            TemplateError::Unrecognised => "unrecognised_template",
            _ => "no_turns",
        };
        ItemIssue::new(i, code, field.clone(), e.to_string())
    })?;
    let conversation = Conversation::new(i.to_string(), turns)
        .map_err(|_| ItemIssue::new(i, "no_turns", field.clone(), "no text to score in this query"))?;
    if !conversation.turns.iter().any(|t| t.role == "assistant") {
        let message = "no reply after the prompt (an empty completion)";
        return Err(ItemIssue::new(i, "empty_response", field, message));
    }
    items::check_conversation(i, conversation, &d.arc.speaker, d.limits, |_| field.clone())
}

/// The warning for a query whose part after the prompt holds a turn by the speaker. A multi-turn environment
/// may have appended it; a policy may also have written it, spelling a turn marker out in its reply so that its
/// own words enter the user's arc. The string cannot tell which, so the item is scored and the warning (counted
/// in the metrics and in `extra_logs`) lets the trainer watch for the second.
fn reply_warning(i: usize, conversation: &Conversation, query: &str, prompt: &str, d: &Defaults) -> Option<ItemIssue> {
    let after = turns_after_prompt(&conversation.turns, query, prompt, d.template)?;
    let n = after.iter().filter(|t| t.role == d.arc.speaker).count();
    (n > 0).then(|| {
        let message = format!(
            "{n} turn(s) by the speaker {:?} after the prompt: appended by an environment, or written by the policy \
             as turn markers inside its reply (then its own words are scored as the user's)",
            d.arc.speaker
        );
        ItemIssue::new(i, "speaker_turn_in_reply", format!("query[{i}]"), message)
    })
}

/// Conversation `i` of a reward request, with its position as the id when it has none. A malformed or
/// mis-shapen conversation fails the request (400: the client is broken); one that is well-formed but unusable
/// (a blank text) is an item error.
fn conversation(item: Value, i: usize) -> Result<Item, ApiError> {
    let item = match item {
        Value::Object(mut obj) => {
            obj.entry("id").or_insert_with(|| Value::from(i));
            Value::Object(obj)
        }
        other => other,
    };
    match Conversation::from_value(item, ConversationAt::default()) {
        Ok(c) => Ok(Ok(c)),
        Err(crate::Error::Conversation { at, problem }) => {
            let turn = at.turn.map_or(String::new(), |t| format!(".turns[{t}]"));
            let field = format!("conversations[{i}]{turn}");
            match problem {
                ConversationProblem::Malformed(m) | ConversationProblem::Shape(m) => Err(ApiError::field(field, m)),
                other => Ok(Err(ItemIssue::new(i, "unprocessable", field, other.to_string()))),
            }
        }
        Err(other) => Err(ApiError::field(format!("conversations[{i}]"), other.to_string())),
    }
}

/// The turn limit across a request's usable items: it bounds the request's work, so it refuses the request.
fn check_turn_count(items: &[Item], limits: &Limits) -> Result<(), ApiError> {
    let turns: usize = items.iter().flatten().map(|c| c.turns.len()).sum();
    if turns > limits.max_turns {
        return Err(ApiError::TooManyItems {
            field: "turns (all conversations together)".into(),
            count: turns,
            max: limits.max_turns,
        });
    }
    Ok(())
}

/// The message of a reward configuration error without the crate's "invalid configuration: " prefix.
fn config_message(e: crate::Error) -> String {
    match e {
        crate::Error::Config(m) => m,
        other => other.to_string(),
    }
}
