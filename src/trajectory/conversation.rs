//! [`Conversation`] and [`Turn`]: the input side of arcs. One conversation per JSONL line, either
//! `{"id": ..., "turns": [{"role": ..., "text": ...}]}` or the chat convention
//! `{"id": ..., "messages": [{"role": ..., "content": ...}]}`. Every rejection is a typed
//! [`ConversationProblem`] located by [`ConversationAt`] (id, line, turn), so a caller can skip one bad
//! conversation and report exactly where it was.

pub use crate::error::{ConversationAt, ConversationProblem};
use crate::error::Result;
use serde_json::{Map, Value};
use std::io::BufRead;

/// One utterance of a conversation. Roles are free strings (`user`, `assistant`, `therapist`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who speaks (`user`, `assistant`, ...); the arc follows one role, [`ArcOptions::speaker`](super::ArcOptions).
    pub role: String,
    /// What they say. [`Conversation::new`] and the readers refuse blank texts.
    pub text: String,
}

impl Turn {
    /// A turn; nothing is checked here (a conversation checks its turns when built or read).
    pub fn new(role: impl Into<String>, text: impl Into<String>) -> Turn {
        Turn {
            role: role.into(),
            text: text.into(),
        }
    }
}

/// A conversation: an id, its turns in order, and any other top-level fields of its JSON line (for example
/// `pair` and `outcome` in the evaluation pairs), kept so they can travel with the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// The conversation's id (from the JSON line's `id`), used in errors and output.
    pub id: String,
    /// The turns, in the order they were spoken.
    pub turns: Vec<Turn>,
    /// Every other top-level field of the JSON line, untouched (empty for a conversation built in code).
    pub meta: Map<String, Value>,
}

impl Conversation {
    /// Builds a conversation, checking that it has turns and that no text is blank.
    pub fn new(id: impl Into<String>, turns: Vec<Turn>) -> Result<Conversation> {
        let conversation = Conversation {
            id: id.into(),
            turns,
            meta: Map::new(),
        };
        conversation.validate(&ConversationAt::id(conversation.id.clone()))?;
        Ok(conversation)
    }

    /// Parses one JSONL line; `line` is its 1-based number, used in errors and as the id when there is none.
    pub fn from_json_line(text: &str, line: usize) -> Result<Conversation> {
        let at = ConversationAt {
            line: Some(line),
            ..ConversationAt::default()
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| at.error(ConversationProblem::Malformed(format!("{e}{}", not_jsonl_hint(text)))))?;
        Conversation::from_value(value, at)
    }

    /// Builds a conversation from a parsed JSON value; `at` says where it came from (for errors).
    pub fn from_value(value: Value, mut at: ConversationAt) -> Result<Conversation> {
        let shape = |what: String| ConversationProblem::Shape(what);
        let Value::Object(mut obj) = value else {
            return Err(at.error(shape(format!(
                "expected an object with \"turns\" or \"messages\", found {}",
                found_value(&value)
            ))));
        };
        let id = match obj.remove("id") {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) => match at.line {
                Some(line) => line.to_string(),
                None => return Err(at.error(shape("missing \"id\"".into()))),
            },
            Some(other) => {
                return Err(at.error(shape(format!("\"id\" must be a string or number, found {}", found_value(&other)))))
            }
        };
        at.id = Some(id.clone());
        // The two accepted shapes differ only in the list's name and the text field's name.
        let (list, text_key) = match (obj.remove("turns"), obj.remove("messages")) {
            (Some(turns), None) => (turns, "text"),
            (None, Some(messages)) => (messages, "content"),
            (Some(_), Some(_)) => return Err(at.error(shape("has both \"turns\" and \"messages\"; give one".into()))),
            (None, None) => {
                return Err(at.error(shape("expected a \"turns\" (role, text) or \"messages\" (role, content) list".into())))
            }
        };
        let Value::Array(items) = list else {
            return Err(at.error(shape(format!("the turn list must be an array, found {}", found_value(&list)))));
        };
        let turns = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| parse_turn(item, text_key).map_err(|p| at.turn(i).error(p)))
            .collect::<Result<Vec<Turn>>>()?;
        let conversation = Conversation { id, turns, meta: obj };
        conversation.validate(&at)?;
        Ok(conversation)
    }

    fn validate(&self, at: &ConversationAt) -> Result<()> {
        if self.turns.is_empty() {
            return Err(at.error(ConversationProblem::NoTurns));
        }
        match self.turns.iter().position(|t| t.text.trim().is_empty()) {
            Some(i) => Err(at.turn(i).error(ConversationProblem::EmptyText)),
            None => Ok(()),
        }
    }

    /// The text of the last turn by `role`, if it has one.
    pub fn last_text_of(&self, role: &str) -> Option<&str> {
        self.turns.iter().rev().find(|t| t.role == role).map(|t| t.text.as_str())
    }

    /// Where this conversation is, for errors raised after parsing.
    pub fn at(&self) -> ConversationAt {
        ConversationAt::id(self.id.clone())
    }

    /// Checks that `speaker` has at least one turn, naming the roles present when not.
    pub fn require_speaker(&self, speaker: &str) -> Result<()> {
        require_role(&self.id, speaker, self.turns.iter().map(|t| t.role.as_str()))
    }
}

/// Errors unless `speaker` is among `roles`; the error lists the roles that are there.
pub(crate) fn require_role<'r>(id: &str, speaker: &str, roles: impl Iterator<Item = &'r str> + Clone) -> Result<()> {
    if roles.clone().any(|r| r == speaker) {
        return Ok(());
    }
    let mut present: Vec<&str> = roles.collect();
    present.sort_unstable();
    present.dedup();
    Err(ConversationAt::id(id).error(ConversationProblem::NoSpeakerTurn {
        speaker: speaker.to_string(),
        present: present.join(", "),
    }))
}

fn parse_turn(item: Value, text_key: &str) -> std::result::Result<Turn, ConversationProblem> {
    let shape = ConversationProblem::Shape;
    let Value::Object(mut obj) = item else {
        return Err(shape(format!("expected an object with \"role\" and \"{text_key}\", found {}", found_value(&item))));
    };
    let mut string_field = |key: &str| match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(shape(format!("\"{key}\" must be a string, found {}", found_value(&other)))),
        None => Err(shape(format!("missing \"{key}\""))),
    };
    let role = string_field("role")?;
    let text = string_field(text_key)?;
    if text.trim().is_empty() {
        return Err(ConversationProblem::EmptyText);
    }
    Ok(Turn { role, text })
}

/// A found value as the error shows it: the JSON itself, cut short (a bad value may be megabytes), so the
/// reader sees what was there. Shared with the server's request errors.
pub(crate) fn found_value(v: &Value) -> String {
    const SHOWN: usize = 40;
    let text = v.to_string();
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Advice for a line that cannot parse because the file is not JSONL: a line holding `{` alone is the start of
/// pretty-printed JSON, and one that opens with `[` the start of a JSON array spread over lines.
fn not_jsonl_hint(line: &str) -> &'static str {
    match line.trim() {
        "{" => " (a line holding `{` alone: the file looks like pretty-printed JSON, and JSONL needs one whole \
                conversation per line; convert it, e.g. jq -c .)",
        t if t.starts_with('[') => " (the file looks like a JSON array, and JSONL needs one conversation per line; \
                convert it, e.g. jq -c '.[]')",
        _ => "",
    }
}

/// Reads conversations from JSONL, one result per non-blank line, lazily (memory stays flat on large files).
/// A line that cannot be read as UTF-8 text is an error at that line; blank lines are skipped, and so is a
/// UTF-8 byte-order mark at the start.
pub fn read_conversations<R: BufRead>(reader: R) -> impl Iterator<Item = Result<Conversation>> {
    reader.split(b'\n').enumerate().filter_map(|(i, raw)| {
        let line = i + 1;
        let at = || ConversationAt {
            line: Some(line),
            ..ConversationAt::default()
        };
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => return Some(Err(at().error(ConversationProblem::Malformed(e.to_string())))),
        };
        // A UTF-8 byte-order mark before the first line is not part of the JSON (RFC 8259 lets a reader skip it).
        let raw = if line == 1 { raw.strip_prefix(crate::UTF8_BOM).unwrap_or(&raw) } else { &raw };
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                return Some(Err(at().error(ConversationProblem::Malformed(format!(
                    "invalid UTF-8 at byte {}",
                    e.valid_up_to()
                )))))
            }
        };
        if text.trim().is_empty() {
            return None;
        }
        Some(Conversation::from_json_line(text, line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn problem(line: &str) -> (ConversationAt, ConversationProblem) {
        match Conversation::from_json_line(line, 7) {
            Err(Error::Conversation { at, problem }) => (at, problem),
            other => panic!("expected a conversation error, got {other:?}"),
        }
    }

    #[test]
    fn both_shapes_parse_and_keep_extra_fields() {
        let a = Conversation::from_json_line(
            r#"{"id": "a", "pair": "p1", "turns": [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}]}"#,
            1,
        )
        .unwrap();
        let b = Conversation::from_json_line(
            r#"{"id": "a", "pair": "p1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#,
            1,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.meta["pair"], "p1");
        let numbered = Conversation::from_json_line(r#"{"turns": [{"role": "user", "text": "x"}]}"#, 12).unwrap();
        assert_eq!(numbered.id, "12");
    }

    #[test]
    fn bad_input_names_the_conversation_and_turn() {
        let (at, p) = problem(r#"{"id": "c9", "turns": [{"role": "user", "text": "ok"}, {"role": "assistant", "text": "  "}]}"#);
        assert_eq!((at.id.as_deref(), at.line, at.turn), (Some("c9"), Some(7), Some(1)));
        assert_eq!(p, ConversationProblem::EmptyText);
        let (at, p) = problem(r#"{"id": "c9", "turns": [{"role": "user"}]}"#);
        assert_eq!(at.turn, Some(0));
        assert!(matches!(p, ConversationProblem::Shape(s) if s.contains("missing \"text\"")));
        let (_, p) = problem(r#"{"id": "c9", "turns": []}"#);
        assert_eq!(p, ConversationProblem::NoTurns);
        let (_, p) = problem(r#"{"id": "c9", "dialogue": []}"#);
        assert!(matches!(p, ConversationProblem::Shape(_)));
        let (at, p) = problem("{not json");
        assert_eq!((at.id, at.line), (None, Some(7)));
        assert!(matches!(p, ConversationProblem::Malformed(_)));
        let message = Conversation::from_json_line(r#"{"id": "c9", "turns": [{"role": "user", "text": ""}]}"#, 3)
            .unwrap_err()
            .to_string();
        assert_eq!(message, "conversation \"c9\" (line 3), turn 0: empty or whitespace-only text");
    }

    #[test]
    fn a_missing_speaker_is_reported_with_the_roles_present() {
        let c = Conversation::new("x", vec![Turn::new("assistant", "hello"), Turn::new("bot", "hi")]).unwrap();
        let e = c.require_speaker("user").unwrap_err().to_string();
        assert_eq!(e, "conversation \"x\": no turn by speaker \"user\" (roles present: assistant, bot)");
    }

    #[test]
    fn json_that_is_not_jsonl_gets_advice() {
        let (_, p) = problem("{");
        assert!(p.to_string().contains("pretty-printed JSON") && p.to_string().contains("jq -c ."), "{p}");
        let (_, p) = problem("[");
        assert!(p.to_string().contains("JSON array") && p.to_string().contains("jq -c '.[]'"), "{p}");
        let (_, p) = problem("{\"id\": 1, \"turns\": [");
        assert!(!p.to_string().contains("jq"), "a truncated line is just malformed: {p}");
    }

    #[test]
    fn reader_skips_a_leading_byte_order_mark_only() {
        let line = "{\"id\": \"a\", \"turns\": [{\"role\": \"user\", \"text\": \"x\"}]}";
        let input = format!("\u{feff}{line}\n\u{feff}{line}\n");
        let out: Vec<_> = read_conversations(input.as_bytes()).collect();
        assert_eq!(out[0].as_ref().unwrap().id, "a");
        assert!(out[1].as_ref().unwrap_err().to_string().contains("(line 2)"), "a mark inside the file is not skipped");
    }

    #[test]
    fn reader_numbers_lines_and_skips_blank_ones() {
        let input = "{\"id\": \"a\", \"turns\": [{\"role\": \"user\", \"text\": \"x\"}]}\n\n{bad\n";
        let out: Vec<_> = read_conversations(input.as_bytes()).collect();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap().id, "a");
        assert!(out[1].as_ref().unwrap_err().to_string().contains("(line 3)"));
    }
}
