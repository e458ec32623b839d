//! `emoarc._emoarc`: the Python extension module over the emoarc library. It holds no logic of its own: every
//! number comes from the same Rust code as the `emoarc` command line, and every record is built by
//! `emoarc::records`, so Python and the CLI agree field for field. The GIL is released while Rust works, and
//! each `emoarc::Error` becomes a Python exception of a matching class with the library's message.

use emoarc::reward::{RewardFn, WeightedReward};
use emoarc::trajectory::{score_conversations, TurnContext, TurnReading};
use emoarc::{ArcOptions, Backend, Conversation, DeviceChoice, OnLong, Precision, RewardConfig, Turn, NUM_CATEGORIES};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use std::sync::Arc;

create_exception!(_emoarc, EmoarcError, PyException, "Base class of every error raised by emoarc.");
create_exception!(_emoarc, InputError, EmoarcError, "An input text was refused; `index` is its position, `problem` why.");
create_exception!(_emoarc, ModelError, EmoarcError, "The model could not be found, verified or loaded.");
create_exception!(_emoarc, ConfigError, EmoarcError, "An option, reward configuration or backend choice is invalid.");
create_exception!(_emoarc, ConversationError, EmoarcError, "A conversation could not be scored (no turn by the speaker, a refused turn).");
create_exception!(_emoarc, TemplateError, EmoarcError, "A rollout string could not be read into turns; `code` says why.");

/// The Python exception for a library error: the class says what kind of thing went wrong, the message is the
/// library's own, and an input error also carries the index and the problem as attributes.
fn to_py(py: Python<'_>, e: emoarc::Error) -> PyErr {
    use emoarc::Error as E;
    let msg = e.to_string();
    match e {
        E::BadInput { index, reason } => {
            let err = InputError::new_err(msg);
            let value = err.value(py);
            // Attributes for callers that handle the error programmatically; the message says the same.
            let _ = value.setattr("index", index);
            let _ = value.setattr("problem", reason.to_string());
            err
        }
        E::Config(_) | E::Backend { .. } | E::Device { .. } => ConfigError::new_err(msg),
        E::Conversation { at, problem } => {
            let err = ConversationError::new_err(msg);
            let value = err.value(py);
            let _ = value.setattr("id", at.id);
            let _ = value.setattr("turn", at.turn);
            let _ = value.setattr("problem", problem.to_string());
            err
        }
        E::MissingFile { .. }
        | E::ChecksumMismatch { .. }
        | E::SizeMismatch { .. }
        | E::Manifest { .. }
        | E::ModelNotFound { .. }
        | E::UnlistedModel { .. }
        | E::ModelFormat { .. }
        | E::BadSource { .. }
        | E::Hub(_)
        | E::EncoderConfig { .. }
        | E::Io { .. } => ModelError::new_err(msg),
        _ => EmoarcError::new_err(msg),
    }
}

/// Parses an option string with the library's own parser, so the error text is the CLI's.
fn parse<T: std::str::FromStr<Err = emoarc::Error>>(py: Python<'_>, s: &str) -> PyResult<T> {
    s.parse().map_err(|e| to_py(py, e))
}

/// The estimator: the shipped model (or another) loaded once, shared by every call and thread.
#[pyclass(module = "emoarc._emoarc", name = "Estimator", subclass, frozen)]
struct PyEstimator {
    inner: Arc<emoarc::Estimator>,
}

#[pymethods]
impl PyEstimator {
    /// `backend` is the CLI's `--precision` (auto, f32, f16, bf16, int16, int8) and `device` its `--device`.
    #[new]
    #[pyo3(signature = (model=None, head=None, backend="auto", *, device="auto", manifest=None, max_length=None, on_long="truncate", token_budget=None, max_batch=256))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        head: Option<String>,
        backend: &str,
        device: &str,
        manifest: Option<String>,
        max_length: Option<usize>,
        on_long: &str,
        token_budget: Option<usize>,
        max_batch: usize,
    ) -> PyResult<Self> {
        let precision: Precision = parse(py, backend)?;
        let device: DeviceChoice = parse(py, device)?;
        let backend = Backend::from_flags(precision, device).map_err(|e| to_py(py, e))?;
        let on_long: OnLong = parse(py, on_long)?;
        let mut b = emoarc::Estimator::builder().backend(backend).on_long(on_long).max_batch(max_batch);
        if let Some(m) = model {
            b = b.model_str(&m).map_err(|e| to_py(py, e))?;
        }
        if let Some(h) = head {
            b = b.head(h);
        }
        if let Some(m) = manifest {
            b = b.manifest(m);
        }
        if let Some(n) = max_length {
            b = b.max_length(n);
        }
        if let Some(n) = token_budget {
            b = b.token_budget(n);
        }
        let inner = py.allow_threads(|| b.build()).map_err(|e| to_py(py, e))?;
        Ok(PyEstimator { inner: Arc::new(inner) })
    }

    /// The 40 intensities of each text, as a float32 array of shape (n, 40) in `CATEGORIES` order.
    fn score<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let est = self.inner.clone();
        let out = py.allow_threads(|| est.estimate(&texts)).map_err(|e| to_py(py, e))?;
        let flat: Vec<f32> = out.iter().flat_map(|x| x.as_slice().iter().copied()).collect();
        Ok(to_array(py, flat, out.len(), NUM_CATEGORIES))
    }

    /// Like `score`, but a refused text only fails its own row: rows of refused texts are NaN and the second
    /// value lists, per text, `None` or why it was refused.
    fn score_each<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<(Bound<'py, PyArray2<f32>>, Vec<Option<String>>)> {
        let est = self.inner.clone();
        let out = py.allow_threads(|| est.estimate_each(&texts)).map_err(|e| to_py(py, e))?;
        let mut flat = Vec::with_capacity(out.len() * NUM_CATEGORIES);
        let mut problems = Vec::with_capacity(out.len());
        for (index, r) in out.iter().enumerate() {
            match r {
                Ok(e) => {
                    flat.extend_from_slice(e.intensities.as_slice());
                    problems.push(None);
                }
                Err(reason) => {
                    flat.extend(std::iter::repeat_n(f32::NAN, NUM_CATEGORIES));
                    problems.push(Some(format!("input {index}: {reason}")));
                }
            }
        }
        Ok((to_array(py, flat, out.len(), NUM_CATEGORIES), problems))
    }

    /// The encoder's mean-pooled embedding of each text (before the head), float32 of shape (n, hidden).
    fn embed<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let est = self.inner.clone();
        let out = py.allow_threads(|| est.embed(&texts)).map_err(|e| to_py(py, e))?;
        let dim = out.first().map_or(0, Vec::len);
        let flat: Vec<f32> = out.into_iter().flatten().collect();
        let n = if dim == 0 { 0 } else { flat.len() / dim };
        Ok(to_array(py, flat, n, dim))
    }

    /// `emoarc score`'s JSONL records, one JSON string per text (`ids[i]` as the id, else its 1-based
    /// position). A refused text fails the call with `InputError`, as in the CLI without --skip-bad.
    #[pyo3(signature = (texts, ids=None, top=3))]
    fn score_records(&self, py: Python<'_>, texts: Vec<String>, ids: Option<Vec<String>>, top: usize) -> PyResult<Vec<String>> {
        let est = self.inner.clone();
        let out = py.allow_threads(|| est.estimate_detailed(&texts)).map_err(|e| to_py(py, e))?;
        Ok(out
            .iter()
            .enumerate()
            .map(|(i, e)| {
                // Ids read from JSONL keep their JSON type (a number stays a number), as the CLI writes them.
                let id = match ids.as_ref().map(|ids| &ids[i]) {
                    Some(raw) => serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::from(raw.as_str())),
                    None => serde_json::Value::from(i + 1),
                };
                emoarc::records::score_record(&id, e, top.min(NUM_CATEGORIES)).to_string()
            })
            .collect())
    }

    /// What runs the encoder, for example `int16 (avx2)` or `candle f32 on cpu`.
    #[getter]
    fn backend(&self) -> String {
        self.inner.backend_name()
    }

    /// The head in use.
    #[getter]
    fn head(&self) -> String {
        self.inner.head_name().to_string()
    }

    /// The verified model folder.
    #[getter]
    fn model_dir(&self) -> String {
        self.inner.source().dir.display().to_string()
    }

    /// Maximum tokens per input, special tokens included.
    #[getter]
    fn max_length(&self) -> usize {
        self.inner.max_length()
    }
}

fn to_array(py: Python<'_>, flat: Vec<f32>, rows: usize, cols: usize) -> Bound<'_, PyArray2<f32>> {
    Array2::from_shape_vec((rows, cols), flat)
        .expect("rows * cols values were collected")
        .into_pyarray(py)
}

/// Arc options from the CLI's flag values; `None` keeps the library's default (`ArcOptions::default()`), so the
/// Python defaults cannot drift from the CLI's.
fn arc_options(
    py: Python<'_>,
    speaker: &str,
    reading: Option<&str>,
    context: Option<&str>,
    affect: Option<&str>,
) -> PyResult<ArcOptions> {
    let mut options = ArcOptions { speaker: speaker.to_string(), ..ArcOptions::default() };
    if let Some(reading) = reading {
        options.reading = parse::<TurnReading>(py, reading)?;
    }
    if let Some(context) = context {
        options.context = parse::<TurnContext>(py, context)?;
    }
    match affect {
        None => {}
        Some("table") => options.affect.learned = false,
        Some("learned") => options.affect.learned = true,
        Some(other) => return Err(ConfigError::new_err(format!("affect must be table or learned, not {other:?}"))),
    }
    Ok(options)
}

/// The reward configuration as `emoarc reward` builds it: the TOML file (or the defaults), `reward` replacing
/// its terms.
fn reward_config(py: Python<'_>, config: Option<&str>, reward: Option<&str>) -> PyResult<(RewardConfig, WeightedReward)> {
    let mut cfg = match config {
        Some(path) => RewardConfig::load(std::path::Path::new(path)).map_err(|e| to_py(py, e))?,
        None => RewardConfig::default(),
    };
    if let Some(spec) = reward {
        cfg.set_terms(spec).map_err(|e| to_py(py, e))?;
    }
    let built = cfg.build().map_err(|e| to_py(py, e))?;
    Ok((cfg, built))
}

/// (id, [(role, text)]) pairs from Python as conversations; a malformed one keeps its slot as an error.
type RawConversation = (String, Vec<(String, String)>);

/// Scores conversations and makes one record per conversation with `record`: a JSON string, or for a
/// conversation that cannot be scored the exception (not raised), so that one bad conversation never costs the
/// others and the caller decides whether to raise.
fn conversation_records(
    py: Python<'_>,
    estimator: &PyEstimator,
    conversations: Vec<RawConversation>,
    options: ArcOptions,
    rounded: bool,
    record: impl Fn(&str, &emoarc::Trajectory) -> serde_json::Value + Send + Sync,
) -> PyResult<Vec<PyObject>> {
    let est = estimator.inner.clone();
    let parsed: Vec<Result<Conversation, emoarc::Error>> = conversations
        .into_iter()
        .map(|(id, turns)| Conversation::new(id, turns.into_iter().map(|(role, text)| Turn::new(role, text)).collect()))
        .collect();
    let good: Vec<Conversation> = parsed.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
    let results = py
        .allow_threads(|| -> emoarc::Result<Vec<Result<String, emoarc::Error>>> {
            let mut scored = score_conversations(&est, &good, &options)?.into_iter();
            Ok(parsed
                .into_iter()
                .map(|p| {
                    let conversation = p?;
                    let trajectory = scored.next().expect("one result per good conversation")?;
                    let value = record(&conversation.id, &trajectory);
                    let value = if rounded { emoarc::records::rounded(value) } else { value };
                    Ok(value.to_string())
                })
                .collect())
        })
        .map_err(|e| to_py(py, e))?;
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(json) => json.into_pyobject(py).expect("a str converts").into_any().unbind(),
            Err(e) => to_py(py, e).into_value(py).into_any(),
        })
        .collect())
}

/// `emoarc arc`'s records (JSON strings) or exceptions, one per conversation.
#[pyfunction]
#[pyo3(signature = (estimator, conversations, speaker="user", reading=None, affect=None, rounded=true, context=None))]
#[allow(clippy::too_many_arguments)]
fn arc_records(
    py: Python<'_>,
    estimator: &PyEstimator,
    conversations: Vec<RawConversation>,
    speaker: &str,
    reading: Option<&str>,
    affect: Option<&str>,
    rounded: bool,
    context: Option<&str>,
) -> PyResult<Vec<PyObject>> {
    let options = arc_options(py, speaker, reading, context, affect)?;
    conversation_records(py, estimator, conversations, options, rounded, emoarc::records::arc_record)
}

/// `emoarc reward`'s records (JSON strings) or exceptions, one per conversation.
#[pyfunction]
#[pyo3(signature = (estimator, conversations, reward=None, config=None, speaker="user", reading=None, affect=None, rounded=true, context=None))]
#[allow(clippy::too_many_arguments)]
fn reward_records(
    py: Python<'_>,
    estimator: &PyEstimator,
    conversations: Vec<RawConversation>,
    reward: Option<&str>,
    config: Option<&str>,
    speaker: &str,
    reading: Option<&str>,
    affect: Option<&str>,
    rounded: bool,
    context: Option<&str>,
) -> PyResult<Vec<PyObject>> {
    let options = arc_options(py, speaker, reading, context, affect)?;
    let (cfg, built) = reward_config(py, config, reward)?;
    conversation_records(py, estimator, conversations, options, rounded, move |id, t| {
        emoarc::records::reward_record(id, &cfg, &built, t)
    })
}

/// A conversation scored turn by turn, as an RL rollout produces it: each `push` encodes only the new turn's
/// clauses not already cached.
#[pyclass(module = "emoarc._emoarc", name = "ArcTracker")]
struct PyArcTracker {
    // Shares the estimator's Arc, so the Python Estimator may be dropped first.
    tracker: emoarc::ArcTracker<'static>,
    config: RewardConfig,
    reward: WeightedReward,
}

#[pymethods]
impl PyArcTracker {
    #[new]
    #[pyo3(signature = (estimator, speaker="user", reward=None, config=None, id="conversation", reading=None, affect=None, context=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        estimator: &PyEstimator,
        speaker: &str,
        reward: Option<&str>,
        config: Option<&str>,
        id: &str,
        reading: Option<&str>,
        affect: Option<&str>,
        context: Option<&str>,
    ) -> PyResult<Self> {
        let options = arc_options(py, speaker, reading, context, affect)?;
        let (config, reward) = reward_config(py, config, reward)?;
        Ok(PyArcTracker {
            tracker: emoarc::ArcTracker::shared(estimator.inner.clone(), options, id),
            config,
            reward,
        })
    }

    /// Scores the next turn and appends it; a refused text raises and leaves the conversation unchanged.
    fn push(&mut self, py: Python<'_>, role: String, text: String) -> PyResult<()> {
        let tracker = &mut self.tracker;
        py.allow_threads(|| tracker.push(&role, &text).map(|_| ())).map_err(|e| to_py(py, e))
    }

    /// The reward of the conversation so far; `None` until the speaker has a turn.
    fn reward(&self) -> Option<f32> {
        self.tracker.reward(&self.reward)
    }

    /// Each reward term's value so far (empty until the speaker has a turn).
    fn terms(&self) -> Vec<(String, f32)> {
        if self.tracker.arc().is_empty() {
            return Vec::new();
        }
        self.reward
            .terms(self.tracker.trajectory())
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect()
    }

    /// `emoarc reward`'s record of the conversation so far (JSON string, unrounded).
    fn record(&self) -> String {
        let t = self.tracker.trajectory();
        emoarc::records::reward_record(&t.id, &self.config, &self.reward, t).to_string()
    }

    /// Roles of the turns pushed so far, in order.
    fn roles(&self) -> Vec<String> {
        self.tracker.trajectory().turns().iter().map(|t| t.role.clone()).collect()
    }

    /// Starts a new conversation `id`; the clause cache is kept, so texts seen before are not encoded again.
    fn reset(&mut self, id: &str) {
        self.tracker.reset(id);
    }

    /// The name of the reward in use, as the CLI prints it.
    #[getter]
    fn reward_name(&self) -> String {
        self.reward.name().to_string()
    }
}

/// Category names in the order of every score row (the EmoNet taxonomy's canonical order).
/// The turns of a rollout string, read by the library's `read_rollout` (the reward server's reader): with
/// `template`, or the template its markers show, or else as `prompt` followed by the reply. An unknown
/// template name is a `ConfigError`; a string that cannot be read is a `TemplateError` whose `code` is the
/// server's (`unrecognised_template`, `no_turns`), never "all of it is the user".
#[pyfunction]
#[pyo3(signature = (query, prompt=None, template=None))]
fn read_rollout(py: Python<'_>, query: &str, prompt: Option<&str>, template: Option<&str>) -> PyResult<Vec<(String, String)>> {
    let template = template_arg(template)?;
    Ok(read_rollout_turns(py, query, prompt, template)?.into_iter().map(|t| (t.role, t.text)).collect())
}

/// A template name from Python: one of `TEMPLATES`, else a `ConfigError`.
fn template_arg(name: Option<&str>) -> PyResult<Option<emoarc::trajectory::Template>> {
    name.map(|n| n.parse().map_err(|e: emoarc::trajectory::TemplateError| ConfigError::new_err(e.to_string())))
        .transpose()
}

/// `read_rollout` with the template already parsed; a string that cannot be read is a `TemplateError` with the
/// server's code.
fn read_rollout_turns(
    py: Python<'_>,
    query: &str,
    prompt: Option<&str>,
    template: Option<emoarc::trajectory::Template>,
) -> PyResult<Vec<Turn>> {
    emoarc::trajectory::read_rollout(query, prompt, template).map_err(|e| {
        let code = if matches!(e, emoarc::trajectory::TemplateError::Unrecognised) { "unrecognised_template" } else { "no_turns" };
        let err = TemplateError::new_err(e.to_string());
        let _ = err.value(py).setattr("code", code);
        err
    })
}

/// The turns of a rollout after its prompt (the library's `turns_after_prompt`): `None` when the prompt does not
/// read into the start of the query. A turn by the speaker among them was appended by an environment or written
/// by the policy inside its reply; the reward server warns `speaker_turn_in_reply` for it.
#[pyfunction]
#[pyo3(signature = (query, prompt, template=None))]
fn turns_after_prompt(py: Python<'_>, query: &str, prompt: &str, template: Option<&str>) -> PyResult<Option<Vec<(String, String)>>> {
    let Ok((turns, Some(start))) = split_turns(py, query, Some(prompt), template_arg(template)?) else {
        return Ok(None);
    };
    Ok(Some(turns[start..].iter().map(|t| (t.role.clone(), t.text.clone())).collect()))
}

/// `read_rollout` and `turns_after_prompt` from one reading of the query, as the reward server does: the turns,
/// and the index of the first turn after the prompt (`None` without a prompt, or when the prompt does not read
/// into the start of the query). Adapters that need both call this instead of reading each query twice.
#[pyfunction]
#[pyo3(signature = (query, prompt=None, template=None))]
fn split_rollout(
    py: Python<'_>,
    query: &str,
    prompt: Option<&str>,
    template: Option<&str>,
) -> PyResult<(Vec<(String, String)>, Option<usize>)> {
    let (turns, start) = split_turns(py, query, prompt, template_arg(template)?)?;
    Ok((turns.into_iter().map(|t| (t.role, t.text)).collect(), start))
}

/// The turns of `query` and where the turns after `prompt` start, with one reading of the query.
fn split_turns(
    py: Python<'_>,
    query: &str,
    prompt: Option<&str>,
    template: Option<emoarc::trajectory::Template>,
) -> PyResult<(Vec<Turn>, Option<usize>)> {
    let turns = read_rollout_turns(py, query, prompt, template)?;
    // An empty prompt is no prompt (as `read_rollout` reads it): every turn would otherwise count as after it.
    let start = prompt
        .filter(|p| !p.is_empty())
        .and_then(|p| emoarc::trajectory::turns_after_prompt(&turns, query, p, template))
        .map(|after| turns.len() - after.len());
    Ok((turns, start))
}

fn categories() -> Vec<&'static str> {
    emoarc::Category::ALL.iter().map(|c| c.name()).collect()
}

#[pymodule]
fn _emoarc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyEstimator>()?;
    m.add_class::<PyArcTracker>()?;
    m.add_function(wrap_pyfunction!(arc_records, m)?)?;
    m.add_function(wrap_pyfunction!(reward_records, m)?)?;
    m.add_function(wrap_pyfunction!(read_rollout, m)?)?;
    m.add_function(wrap_pyfunction!(turns_after_prompt, m)?)?;
    m.add_function(wrap_pyfunction!(split_rollout, m)?)?;
    m.add("TEMPLATES", emoarc::trajectory::Template::NAMES.to_vec())?;
    m.add("CATEGORIES", categories())?;
    m.add("TAXONOMY_VERSION", emoarc::TAXONOMY_VERSION)?;
    m.add("EmoarcError", py.get_type::<EmoarcError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ConversationError", py.get_type::<ConversationError>())?;
    m.add("TemplateError", py.get_type::<TemplateError>())?;
    Ok(())
}
