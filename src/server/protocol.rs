//! The request bodies and how they are read. Bodies are parsed to a JSON value and walked by hand rather than
//! derived, so that every refusal names the exact field (`texts[3]`, `conversations[1].turns[2].text`) and
//! says whether it is malformed (400) or well-formed but over a limit or unusable (422). It also owns how an
//! OpenRLHF `/get_reward` query string is read back into turns ([`read_query`]).

use super::error::ApiError;
use super::Limits;
use crate::reward::WeightedReward;
use crate::taxonomy::NUM_CATEGORIES;

use crate::trajectory::{found_value, ArcOptions, Conversation, ConversationAt, ConversationProblem, Turn, TurnReading};
use crate::RewardConfig;
use serde_json::{Map, Value};

/// `POST /v1/score`: `{"texts": [string, ...], "top": k}`.
pub(crate) struct ScoreRequest {
    pub(crate) texts: Vec<String>,
    pub(crate) top: usize,
}

/// `POST /v1/reward`: `{"conversations": [...], "reward": "terminal=1,accommodation=0.5", "speaker": "user",
/// "reading": "clauses"}`; everything but the conversations is optional and defaults to the server's settings.
pub(crate) struct RewardRequest {
    pub(crate) conversations: Vec<Conversation>,
    pub(crate) reward: WeightedReward,
    pub(crate) options: ArcOptions,
}

/// `POST /get_reward` (OpenRLHF): `{"query": [string, ...], "prompts": [string, ...]}`; other fields (OpenRLHF
/// sends `labels`) are ignored, as OpenRLHF's own server does.
pub(crate) struct GetRewardRequest {
    pub(crate) conversations: Vec<Conversation>,
}

/// The server-wide defaults a request starts from.
pub(crate) struct Defaults<'a> {
    pub(crate) limits: &'a Limits,
    pub(crate) top: usize,
    pub(crate) reward: &'a RewardConfig,
    pub(crate) arc: &'a ArcOptions,
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
        let mut obj = body_object(body, &["conversations", "reward", "speaker", "reading"])?;
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
        let mut config = d.reward.clone();
        if let Some(spec) = optional_string(&mut obj, "reward")? {
            config.set_terms(&spec).map_err(|e| ApiError::unprocessable("reward", config_message(e)))?;
        }
        let reward = config.build().map_err(|e| ApiError::unprocessable("reward", config_message(e)))?;
        let items = required_array(&mut obj, "conversations")?;
        check_count("conversations", items.len(), d.limits.max_items)?;
        let conversations = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| conversation(item, i))
            .collect::<Result<Vec<_>, _>>()?;
        check_conversations(&conversations, &options.speaker, d.limits, |i, turn| match turn {
            Some(t) => format!("conversations[{i}].turns[{t}]"),
            None => format!("conversations[{i}]"),
        })?;
        Ok(RewardRequest {
            conversations,
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
        let conversations = queries
            .into_iter()
            .enumerate()
            .map(|(i, query)| {
                let query = string_value(query, &format!("query[{i}]"))?;
                let prompt = match prompts.as_mut().and_then(Iterator::next) {
                    Some(p) => Some(string_value(p, &format!("prompts[{i}]"))?),
                    None => None,
                };
                let turns = read_query(&query, prompt.as_deref());
                Conversation::new(i.to_string(), turns)
                    .map_err(|_| ApiError::unprocessable(format!("query[{i}]"), "no text to score in this query"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_conversations(&conversations, &d.arc.speaker, d.limits, |i, _| format!("query[{i}]"))?;
        Ok(GetRewardRequest { conversations })
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

/// Conversation `i` of a reward request, with its position as the id when it has none.
fn conversation(item: Value, i: usize) -> Result<Conversation, ApiError> {
    let item = match item {
        Value::Object(mut obj) => {
            obj.entry("id").or_insert_with(|| Value::from(i));
            Value::Object(obj)
        }
        other => other,
    };
    Conversation::from_value(item, ConversationAt::default()).map_err(|e| match e {
        crate::Error::Conversation { at, problem } => {
            let turn = at.turn.map_or(String::new(), |t| format!(".turns[{t}]"));
            let field = format!("conversations[{i}]{turn}");
            match problem {
                ConversationProblem::Malformed(m) | ConversationProblem::Shape(m) => ApiError::field(field, m),
                other => ApiError::unprocessable(field, other.to_string()),
            }
        }
        other => ApiError::field(format!("conversations[{i}]"), other.to_string()),
    })
}

/// Limits across a request's conversations (total turns, text length) and that each has the speaker.
/// `field(i, turn)` names conversation `i`, or one of its turns.
fn check_conversations(
    conversations: &[Conversation],
    speaker: &str,
    limits: &Limits,
    field: impl Fn(usize, Option<usize>) -> String,
) -> Result<(), ApiError> {
    let turns: usize = conversations.iter().map(|c| c.turns.len()).sum();
    if turns > limits.max_turns {
        return Err(ApiError::TooManyItems {
            field: "turns (all conversations together)".into(),
            count: turns,
            max: limits.max_turns,
        });
    }
    for (i, c) in conversations.iter().enumerate() {
        for (t, turn) in c.turns.iter().enumerate() {
            check_text(&turn.text, &field(i, Some(t)), limits)?;
        }
        c.require_speaker(speaker).map_err(|e| match e {
            crate::Error::Conversation { problem, .. } => ApiError::unprocessable(field(i, None), problem.to_string()),
            other => ApiError::unprocessable(field(i, None), other.to_string()),
        })?;
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

/// A chat template's turn markers: what opens a turn, what ends its role name, what closes it.
struct Template {
    open: &'static str,
    role_end: &'static str,
    close: &'static str,
}

/// The templates recognised in `/get_reward` queries: ChatML (Qwen and many others), Llama 3, Gemma.
const TEMPLATES: [Template; 3] = [
    Template {
        open: "<|im_start|>",
        role_end: "\n",
        close: "<|im_end|>",
    },
    Template {
        open: "<|start_header_id|>",
        role_end: "<|end_header_id|>",
        close: "<|eot_id|>",
    },
    Template {
        open: "<start_of_turn>",
        role_end: "\n",
        close: "<end_of_turn>",
    },
];

/// Sequence markers a rendered query may still carry at either end.
const SEQUENCE_MARKERS: [&str; 8] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<bos>",
    "<eos>",
    "<s>",
    "</s>",
    "<pad>",
];

/// Reads an OpenRLHF query (the prompt and the response rendered through the policy's chat template) back
/// into turns:
/// 1. If it contains ChatML, Llama 3 or Gemma turn markers, each marked turn becomes a turn with its role
///    (lower-cased; Gemma's `model` reads as `assistant`); the text runs to the closing marker, or to the end
///    for a response cut off mid-generation. System turns are kept but are not the speaker's, so they never
///    enter the arc. Empty turns (the open `assistant` header that ends a prompt) are dropped.
/// 2. Otherwise, if the query starts with its prompt, the prompt is the `user` turn and the rest the
///    `assistant` turn.
/// 3. Otherwise the whole query is one `user` turn.
pub fn read_query(query: &str, prompt: Option<&str>) -> Vec<Turn> {
    if let Some(template) = TEMPLATES.iter().find(|t| query.contains(t.open)) {
        return query
            .split(template.open)
            .skip(1)
            .filter_map(|segment| {
                let (role, rest) = segment.split_once(template.role_end).unwrap_or((segment, ""));
                let text = strip_markers(rest.split(template.close).next().unwrap_or_default());
                let role = match role.trim().to_lowercase() {
                    r if r == "model" => "assistant".to_string(),
                    r => r,
                };
                (!text.is_empty() && !role.is_empty()).then(|| Turn::new(role, text))
            })
            .collect();
    }
    let query = strip_markers(query);
    let split = prompt
        .map(strip_markers)
        .filter(|p| !p.is_empty())
        .and_then(|p| query.strip_prefix(p).map(|rest| (p, strip_markers(rest))));
    let turns = match split {
        Some((prompt, response)) => vec![Turn::new("user", prompt), Turn::new("assistant", response)],
        None => vec![Turn::new("user", query)],
    };
    turns.into_iter().filter(|t| !t.text.is_empty()).collect()
}

/// Trims white space and sequence markers from both ends.
fn strip_markers(text: &str) -> &str {
    let mut text = text.trim();
    loop {
        let before = text.len();
        for marker in SEQUENCE_MARKERS {
            text = text.strip_prefix(marker).unwrap_or(text);
            text = text.strip_suffix(marker).unwrap_or(text).trim();
        }
        if text.len() == before {
            return text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles_and_texts(turns: &[Turn]) -> Vec<(&str, &str)> {
        turns.iter().map(|t| (t.role.as_str(), t.text.as_str())).collect()
    }

    #[test]
    fn reads_chat_templates() {
        let chatml = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\ni feel awful<|im_end|>\n\
                      <|im_start|>assistant\nWhat happened?<|im_end|>\n<|im_start|>user\nbetter now, thanks<|im_end|>";
        assert_eq!(
            roles_and_texts(&read_query(chatml, None)),
            vec![("system", "Be kind."), ("user", "i feel awful"), ("assistant", "What happened?"), ("user", "better now, thanks")]
        );
        let llama = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\ni failed<|eot_id|>\
                     <|start_header_id|>assistant<|end_header_id|>\n\nThat is hard. What now?";
        assert_eq!(
            roles_and_texts(&read_query(llama, None)),
            vec![("user", "i failed"), ("assistant", "That is hard. What now?")]
        );
        let gemma = "<bos><start_of_turn>user\nso tired<end_of_turn>\n<start_of_turn>model\nRest a bit.<end_of_turn><eos>";
        assert_eq!(roles_and_texts(&read_query(gemma, None)), vec![("user", "so tired"), ("assistant", "Rest a bit.")]);
        // The open assistant header that ends a prompt is not a turn.
        let open = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(roles_and_texts(&read_query(open, None)), vec![("user", "hello")]);
    }

    #[test]
    fn reads_plain_queries_with_and_without_a_prompt() {
        assert_eq!(
            roles_and_texts(&read_query("i am sad. I'm sorry to hear that.</s>", Some("i am sad."))),
            vec![("user", "i am sad."), ("assistant", "I'm sorry to hear that.")]
        );
        assert_eq!(roles_and_texts(&read_query("<s> just me </s>", Some("other"))), vec![("user", "just me")]);
        assert_eq!(roles_and_texts(&read_query("just me", None)), vec![("user", "just me")]);
        assert!(read_query("</s><pad>", None).is_empty());
    }
}
