//! The crate's error type. Every fallible call in the library returns [`Error`]; each variant names the thing
//! that was wrong (the file, the item, the field) so that a caller can report it without guessing, and the
//! binary maps them to messages and exit codes.

use std::fmt;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside emoarc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder that could not be read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A model file listed in the manifest is not where the model says it is.
    #[error("model file missing: {path}")]
    MissingFile {
        /// Where the file (or, for a folder source, the model folder itself) was expected.
        path: PathBuf,
    },
    /// A model file's bytes do not match the sha256 recorded in the weights manifest.
    #[error("sha256 mismatch for {path}: manifest says {expected}, file has {actual}")]
    ChecksumMismatch {
        /// The file whose contents differ.
        path: PathBuf,
        /// The sha256 the manifest records, 64 lower-case hex digits.
        expected: String,
        /// The sha256 of the file on disk, 64 lower-case hex digits.
        actual: String,
    },
    /// A model file's size does not match the manifest (checked before hashing: cheaper and clearer).
    #[error("size mismatch for {path}: manifest says {expected} bytes, file has {actual}")]
    SizeMismatch {
        /// The file whose size differs.
        path: PathBuf,
        /// The size the manifest records, in bytes.
        expected: u64,
        /// The size of the file on disk, in bytes.
        actual: u64,
    },
    /// The weights manifest could not be parsed or is inconsistent.
    #[error("weights manifest {path}: {reason}")]
    Manifest {
        /// The manifest file (`<built-in weights-manifest>` for the one compiled in).
        path: PathBuf,
        /// The TOML parse error, or which entry breaks which rule (a name listed twice, a sha256 that is not
        /// 64 lower-case hex digits, a file path that leaves the model folder).
        reason: String,
    },
    /// No model was named and the shipped one was found nowhere; `tried` says, per place, why it was passed over.
    #[error("no model found; tried:\n  {}\npass --model DIR (or set EMOARC_MODEL, or call EstimatorBuilder::model)", tried.join("\n  "))]
    ModelNotFound {
        /// One line per place looked in, in search order: the source (folder or `hf:` repository) and why it
        /// was not used (not there, no `emoarc.json`, or the error its verification gave).
        tried: Vec<String>,
    },
    /// The model is not listed in the weights manifest, so its files cannot be verified.
    #[error("model {model:?} is not listed in the weights manifest {manifest}; add it (emoarc train does) or pass --manifest")]
    UnlistedModel {
        /// The name looked up: the model folder's name, the explicitly given name, or `hf:ORG/REPO` for a hub
        /// source.
        model: String,
        /// The manifest that was searched (`<built-in weights-manifest>` for the one compiled in).
        manifest: PathBuf,
    },
    /// A file of the model folder is listed in the manifest but the model folder does not use it, or vice versa.
    #[error("model {model:?}: {reason}")]
    ModelFormat {
        /// The model's name (from its manifest entry or its `emoarc.json`).
        model: String,
        /// What is wrong: an `emoarc.json` that does not parse or fails its checks (format version, taxonomy,
        /// heads, architecture, max length), an unknown head, a head whose input width is not the encoder's
        /// hidden size, head weights that do not load, or a file asked for that the manifest does not list.
        reason: String,
    },
    /// A model source string (`DIR` or `hf:ORG/REPO[@REVISION]`) could not be understood.
    #[error("bad model source {source_spec:?}: {reason}")]
    BadSource {
        /// The source string as given.
        source_spec: String,
        /// What is wrong with it (empty, empty revision after `@`, or not `hf:ORG/REPO[@REVISION]`).
        reason: String,
    },
    /// Fetching from the Hugging Face hub (or reading its cache) failed.
    #[error("hub: {0}")]
    Hub(String),
    /// The requested device is not available in this build or on this machine.
    #[error("device {requested}: {reason}")]
    Device {
        /// The device as asked for, such as `cuda:0` or `metal:1`.
        requested: String,
        /// candle's error on opening it (feature not compiled in, no such GPU, driver failure).
        reason: String,
    },
    /// The tokenizer failed on a text or could not be loaded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An input text was rejected; `index` is its 0-based position in the batch the caller passed.
    #[error("input {index}: {reason}")]
    BadInput {
        /// 0-based position of the refused text in the slice the caller passed.
        index: usize,
        /// Why it was refused.
        reason: InputProblem,
    },
    /// A tensor operation failed (shape mismatch, out of memory, a backend error).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A JSON document could not be parsed or serialised.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The chosen backend cannot run this model or this request (for example int16 on a GPU).
    #[error("backend {backend}: {reason}")]
    Backend {
        /// The backend that refused, such as `int16`.
        backend: String,
        /// What it cannot do and, where there is one, what to pass instead.
        reason: String,
    },
    /// An encoder `config.json` is not a BERT config this build can run.
    #[error("encoder config {path}: {reason}")]
    EncoderConfig {
        /// The `config.json` that was read.
        path: PathBuf,
        /// The JSON error, or the field that is missing or holds an unsupported value.
        reason: String,
    },
    /// A tensor in a weights file, or a network output, has the wrong shape.
    #[error("{tensor} has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor's name in its safetensors file, or a description such as `head output`.
        tensor: String,
        /// The dimensions the code needs, outermost first.
        expected: Vec<usize>,
        /// The dimensions found.
        actual: Vec<usize>,
    },
    /// A token sequence handed to an encoder is empty or longer than its position embeddings.
    #[error("a sequence of {tokens} tokens; the encoder takes 1 to {max}")]
    SequenceLength {
        /// Tokens in the offending sequence, special tokens included (0 for an empty one).
        tokens: usize,
        /// The longest sequence the encoder accepts: its number of position embeddings.
        max: usize,
    },
    /// A conversation could not be read, scored or paired; `at` names the conversation (id, line) and the turn.
    #[error("{at}: {problem}")]
    Conversation {
        /// Which conversation (and turn).
        at: ConversationAt,
        /// What is wrong with it.
        problem: ConversationProblem,
    },
}

/// Why one input text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputProblem {
    /// The text is empty or only white space: there is nothing to measure.
    #[error("empty or whitespace-only text")]
    Empty,
    /// The text is longer than the model's maximum length and the policy is to refuse it.
    #[error("{tokens} tokens exceed the maximum length of {max} (use truncate or chunk)")]
    TooLong {
        /// Tokens in the text, special tokens included.
        tokens: usize,
        /// The estimator's maximum length in tokens, special tokens included.
        max: usize,
    },
    /// The text is larger than the hard byte limit that protects memory.
    #[error("{bytes} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// Size of the text in bytes (UTF-8).
        bytes: usize,
        /// The limit in bytes ([`EstimatorBuilder::max_text_bytes`](crate::estimator::EstimatorBuilder::max_text_bytes),
        /// 1 MiB by default).
        max: usize,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Where a conversation problem is: the conversation's id when known, its 1-based line in the input when it
/// was read from one, and the 0-based position of the turn to blame when one turn is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationAt {
    /// The conversation's id; `None` when the line is too broken to have one.
    pub id: Option<String>,
    /// The 1-based line of the input; `None` for a conversation not read from a file.
    pub line: Option<usize>,
    /// The 0-based turn to blame, counting every role's turns; `None` when the whole conversation is.
    pub turn: Option<usize>,
}

impl ConversationAt {
    /// The whole conversation `id`.
    pub fn id(id: impl Into<String>) -> ConversationAt {
        ConversationAt {
            id: Some(id.into()),
            ..ConversationAt::default()
        }
    }

    /// The same place, narrowed to one turn.
    pub fn turn(&self, turn: usize) -> ConversationAt {
        ConversationAt {
            turn: Some(turn),
            ..self.clone()
        }
    }

    /// An [`Error::Conversation`] at this place.
    pub fn error(&self, problem: ConversationProblem) -> Error {
        Error::Conversation {
            at: self.clone(),
            problem,
        }
    }
}

impl fmt::Display for ConversationAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("conversation")?;
        if let Some(id) = &self.id {
            write!(f, " {id:?}")?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if let Some(turn) = self.turn {
            write!(f, ", turn {turn}")?;
        }
        Ok(())
    }
}

/// Why a conversation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConversationProblem {
    /// The line is not valid JSON.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// The JSON is not one of the accepted shapes; the text says what was expected and what was found.
    #[error("{0}")]
    Shape(String),
    /// The conversation has no turns at all.
    #[error("no turns")]
    NoTurns,
    /// A turn's text is empty or white space only.
    #[error("empty or whitespace-only text")]
    EmptyText,
    /// No turn belongs to the speaker whose arc was asked for.
    #[error("no turn by speaker {speaker:?} (roles present: {present})")]
    NoSpeakerTurn {
        /// The role asked for.
        speaker: String,
        /// The roles the conversation does have, sorted, without repeats, joined with ", ".
        present: String,
    },
    /// The estimator refused a turn's text (too long with `--on-long error`, too large).
    #[error("{0}")]
    Input(InputProblem),
    /// The conversations cannot be paired for evaluation (a pair without exactly one better and one worse).
    #[error("{0}")]
    Pairing(String),
}
