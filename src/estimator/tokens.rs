//! From text to the token sequences the model runs: tokenization in parallel, the long-input policy
//! ([`OnLong`]: truncate, refuse, or overlapping windows) and the one truncation routine that frames every window
//! with the special tokens.

use super::Estimator;
use crate::error::{Error, InputProblem, Result};
use std::str::FromStr;

/// What to do with an input longer than the model's maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnLong {
    /// Keep the first `max_length` tokens and count the input as truncated.
    #[default]
    Truncate,
    /// Refuse the input with [`InputProblem::TooLong`].
    Error,
    /// Score overlapping windows and take the maximum per category.
    Chunk,
}

impl FromStr for OnLong {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "truncate" => Ok(OnLong::Truncate),
            "error" => Ok(OnLong::Error),
            "chunk" => Ok(OnLong::Chunk),
            _ => Err(Error::Config(format!("on-long must be truncate, error or chunk, not {s:?}"))),
        }
    }
}

/// One input after tokenization: the token sequences to run (one, or several windows) and what was done.
pub(super) struct Prepared {
    pub(super) windows: Vec<Vec<u32>>,
    pub(super) tokens: usize,
    pub(super) truncated: bool,
    /// For a text read with the message it answers (one window, `[CLS] text [SEP] message [SEP]`): how many
    /// leading tokens are the text's, the ones pooled; `None` when the window is the text alone.
    pub(super) pooled: Option<usize>,
}

impl Prepared {
    /// The pooled length of each window: the text's tokens, not the context's.
    pub(super) fn pooled_len(&self, window: usize) -> usize {
        self.pooled.unwrap_or(self.windows[window].len())
    }

    /// Tokens of context the window holds (0 when the text was read alone).
    pub(super) fn context_tokens(&self) -> usize {
        self.pooled.map_or(0, |n| self.windows[0].len() - n - 1)
    }
}

/// A text to score and, optionally, the message it answers: in a conversation, the turn before it by someone
/// else (the assistant's reply a user's turn responds to). A head trained for it
/// ([`HeadSpec::reads_context`](crate::model::HeadSpec::reads_context)) reads `[CLS] text [SEP] message [SEP]`
/// and pools the text's tokens only, so the message changes how the text reads without being scored itself;
/// other heads read the text alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InContext<'a> {
    /// The text scored.
    pub text: &'a str,
    /// The message it answers, if any.
    pub after: Option<&'a str>,
}

impl<'a> InContext<'a> {
    /// `text` read after `after`.
    pub fn new(text: &'a str, after: Option<&'a str>) -> Self {
        InContext { text, after }
    }
}

impl Estimator {
    /// The token ids the model runs for a text: special tokens included and, past the maximum length, truncated
    /// as [`OnLong::Truncate`] does (the frame kept, the content cut). Training uses this so that it sees what
    /// scoring sees.
    pub fn model_token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        if enc.get_ids().len() <= self.max_length {
            return Ok(enc.get_ids().to_vec());
        }
        Ok(Framed::new(enc.get_ids(), enc.get_special_tokens_mask(), self.max_length).window(0))
    }

    /// Validates and tokenizes all texts (in parallel), applying the long-input policy; each input gets its
    /// own verdict.
    pub(super) fn prepare<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<std::result::Result<Prepared, InputProblem>>> {
        // Truncation needs at most max_length tokens; cutting absurdly long text first keeps tokenization bounded.
        let cut_at = self.max_length * 64;
        let mut verdicts: Vec<std::result::Result<bool, InputProblem>> = Vec::with_capacity(texts.len());
        let mut inputs: Vec<&str> = Vec::with_capacity(texts.len());
        for text in texts {
            let text = text.as_ref();
            let verdict = if text.trim().is_empty() {
                Err(InputProblem::Empty)
            } else if self.on_long == OnLong::Truncate && text.len() > cut_at {
                inputs.push(cut_text(text, cut_at));
                Ok(true)
            } else if text.len() > self.max_text_bytes {
                Err(InputProblem::TooLarge {
                    bytes: text.len(),
                    max: self.max_text_bytes,
                })
            } else {
                inputs.push(text);
                Ok(false)
            };
            verdicts.push(verdict);
        }
        let mut encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .into_iter();
        Ok(verdicts
            .into_iter()
            .map(|v| {
                let was_cut = v?;
                let enc = encodings.next().expect("one encoding per accepted input");
                self.apply_policy(enc.get_ids(), enc.get_special_tokens_mask(), was_cut)
            })
            .collect())
    }

    /// Like [`prepare`](Self::prepare), for texts with the message each answers: a text that fits in one
    /// window gets as much of its message appended as room allows (its end, the part the text answers), when
    /// the head reads context. The message is context only: blank, long or odd ones never refuse the text.
    pub(super) fn prepare_in_context(
        &self,
        items: &[InContext],
    ) -> Result<Vec<std::result::Result<Prepared, InputProblem>>> {
        let texts: Vec<&str> = items.iter().map(|i| i.text).collect();
        let mut prepared = self.prepare(&texts)?;
        if !self.model.head_spec().reads_context {
            return Ok(prepared);
        }
        // Only the end of a message can be used: cutting it first keeps tokenization bounded.
        let keep_bytes = self.max_length * 64;
        let mut wanted = Vec::new();
        let mut messages = Vec::new();
        for (i, (item, p)) in items.iter().zip(&prepared).enumerate() {
            let room = match p {
                Ok(p) if p.windows.len() == 1 && !p.truncated => self.max_length.saturating_sub(p.windows[0].len() + 1),
                _ => 0,
            };
            if let Some(after) = item.after.map(str::trim).filter(|a| !a.is_empty() && room > 0) {
                wanted.push((i, room));
                messages.push(tail_text(after, keep_bytes));
            }
        }
        if messages.is_empty() {
            return Ok(prepared);
        }
        let encodings = self
            .tokenizer
            .encode_batch(messages, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        for ((i, room), enc) in wanted.into_iter().zip(encodings) {
            let ids = enc.get_ids();
            let Ok(p) = &mut prepared[i] else { continue };
            let window = &mut p.windows[0];
            let (Some(&sep), false) = (window.last(), ids.is_empty()) else { continue };
            let text_len = window.len();
            window.extend_from_slice(&ids[ids.len().saturating_sub(room)..]);
            window.push(sep);
            p.pooled = Some(text_len);
        }
        Ok(prepared)
    }

    fn apply_policy(&self, ids: &[u32], special: &[u32], was_cut: bool) -> std::result::Result<Prepared, InputProblem> {
        let tokens = ids.len();
        if tokens <= self.max_length && !was_cut {
            return Ok(Prepared {
                windows: vec![ids.to_vec()],
                tokens,
                truncated: false,
                pooled: None,
            });
        }
        let framed = Framed::new(ids, special, self.max_length);
        match self.on_long {
            OnLong::Error => Err(InputProblem::TooLong {
                tokens,
                max: self.max_length,
            }),
            OnLong::Truncate => Ok(Prepared {
                windows: vec![framed.window(0)],
                tokens,
                truncated: true,
                pooled: None,
            }),
            OnLong::Chunk => {
                // A quarter of each window overlaps the next, so a feeling split at a boundary is seen whole once.
                let stride = (framed.width - framed.width / 4).max(1);
                let mut windows = Vec::new();
                let mut start = 0;
                loop {
                    windows.push(framed.window(start));
                    if start + framed.width >= framed.content.len() {
                        break;
                    }
                    start += stride;
                }
                Ok(Prepared {
                    windows,
                    tokens,
                    truncated: false,
                    pooled: None,
                })
            }
        }
    }
}

/// A token sequence split into its framing special tokens (`[CLS]` ... `[SEP]`) and its content, for cutting
/// windows of at most `max_length` tokens that each keep the frame: the one truncation routine.
pub(super) struct Framed<'a> {
    prefix: &'a [u32],
    content: &'a [u32],
    suffix: &'a [u32],
    /// Content tokens per window.
    width: usize,
}

impl<'a> Framed<'a> {
    fn new(ids: &'a [u32], special: &[u32], max_length: usize) -> Self {
        let lead = special.iter().take_while(|&&s| s == 1).count();
        let trail = special[lead..].iter().rev().take_while(|&&s| s == 1).count();
        let (prefix, rest) = ids.split_at(lead);
        let (content, suffix) = rest.split_at(rest.len() - trail);
        Framed {
            prefix,
            content,
            suffix,
            width: max_length.saturating_sub(prefix.len() + suffix.len()).max(1),
        }
    }

    /// The frame around up to `width` content tokens from `start`.
    fn window(&self, start: usize) -> Vec<u32> {
        let start = start.min(self.content.len());
        let end = (start + self.width).min(self.content.len());
        self.prefix.iter().chain(&self.content[start..end]).chain(self.suffix).copied().collect()
    }
}

/// The longest suffix of `text` of at most `max_bytes` that starts at a character boundary, preferably after
/// white space so no word is split.
fn tail_text(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    match tail.find(char::is_whitespace) {
        Some(ws) if ws < tail.len() / 2 => tail[ws..].trim_start(),
        _ => tail,
    }
}

/// The longest prefix of `text` of at most `max_bytes` that ends at a character boundary, preferably at white
/// space so no word is split.
fn cut_text(text: &str, max_bytes: usize) -> &str {
    let mut end = max_bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    match head.rfind(char::is_whitespace) {
        Some(ws) if ws > end / 2 => &head[..ws],
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_char_boundaries() {
        let t = "héllo wörld ".repeat(10);
        for n in 0..t.len() {
            let c = cut_text(&t, n);
            assert!(c.len() <= n);
            assert!(t.starts_with(c));
        }
    }

    #[test]
    fn tail_respects_char_boundaries() {
        let t = "héllo wörld ".repeat(10);
        for n in 0..t.len() {
            let c = tail_text(&t, n);
            assert!(c.len() <= n, "{n}");
            assert!(t.ends_with(c));
        }
        assert_eq!(tail_text("short", 10), "short");
        assert_eq!(tail_text("one two three", 9), "three");
    }

    #[test]
    fn parses_options() {
        use crate::backend::DeviceChoice;
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert_eq!("metal".parse::<DeviceChoice>().unwrap(), DeviceChoice::Metal(0));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cudax".parse::<DeviceChoice>().is_err());
        assert_eq!("chunk".parse::<OnLong>().unwrap(), OnLong::Chunk);
        assert!("drop".parse::<OnLong>().is_err());
    }
}
