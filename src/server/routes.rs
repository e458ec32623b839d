//! The HTTP surface: the router, the one middleware every request passes (authentication, the limit on
//! requests in flight, the per-request timeout, metrics), reading bodies within the size limit, and the
//! handlers that turn parsed requests into scores, arcs and rewards and those into JSON responses.

use super::auth::ApiKey;
use super::conn::AmbiguousLength;
use super::error::ApiError;
use super::items::{self, Item, ItemIssue, Outcomes};
use super::log::Log;
use super::json::json_response;
use super::metrics::{Endpoint, Metrics, Snapshot};
use super::protocol::{Defaults, GetRewardRequest, RewardRequest, ScoreRequest};
use super::queue::Scorer;
use super::ServerConfig;
use crate::estimator::{Estimate, Estimator, InContext};
use crate::intensities::Intensities;
use crate::reward::{RewardFn, WeightedReward};
use crate::trajectory::{ArcOptions, ArcSummary, ClauseScore, Trajectory, TurnReading, DEFAULT_TREND_WINDOW};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What every handler shares.
pub(crate) struct AppState {
    /// Permits for scoring requests in flight (`Limits::max_in_flight`).
    pub(crate) in_flight: tokio::sync::Semaphore,
    /// Requests waiting for a permit (`Limits::max_waiting`).
    pub(crate) waiting: AtomicUsize,
    pub(crate) log: Log,
    pub(crate) scorer: Scorer,
    pub(crate) estimator: Arc<Estimator>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: ServerConfig,
    /// The configured reward, built once: `/get_reward` has no way to ask for another.
    pub(crate) reward: WeightedReward,
}

impl AppState {
    fn defaults(&self) -> Defaults<'_> {
        Defaults {
            limits: &self.config.limits,
            top: self.config.top,
            reward: &self.config.reward,
            arc: &self.config.arc,
            template: self.config.template,
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        self.config.api_key.as_ref().map_or(true, |key: &ApiKey| key.accepts(request.headers()))
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(Endpoint::SCORE, post(score))
        .route(Endpoint::REWARD, post(reward))
        .route(Endpoint::GET_REWARD, post(get_reward))
        .route(Endpoint::HEALTH, get(health))
        .route(Endpoint::METRICS, get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// The request-smuggling shape (refused before anything else), authentication (everything but `/health`,
/// which load balancers probe without credentials), the limit on requests in flight with its bounded wait (not
/// for `/health` and `/metrics`, so monitoring still answers under overload), the per-request timeout, and the
/// request metrics. Dropping a timed-out handler drops its place in the queue
/// too: the worker skips jobs nobody waits for.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = Endpoint::of(request.uri().path());
    // Read from the request before awaiting: a `&Request` is not `Send` (its body is not `Sync`).
    let ambiguous = request.extensions().get::<AmbiguousLength>().is_some();
    let authorized = endpoint == Endpoint::Health || state.authorized(&request);
    let response = match admit(&state, endpoint, ambiguous, authorized).await {
        Err(refused) => refused.into_response(),
        Ok(_permit) => {
            let timeout = state.config.request_timeout;
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::Timeout { timeout }.into_response(),
            }
        }
    };
    state.metrics.record_request(endpoint, response.status().as_u16(), started.elapsed());
    response
}

/// Checks the framing and the token and takes an in-flight permit (held until the response is ready; `None`
/// for the monitoring endpoints), waiting for one in a bounded line: at most `max_waiting` requests wait, each
/// at most `wait_timeout`, so a burst larger than the in-flight limit is answered rather than refused, and a
/// sustained overload still gets 503 with `Retry-After`. A waiting request has not read its body yet.
async fn admit(
    state: &AppState,
    endpoint: Endpoint,
    ambiguous: bool,
    authorized: bool,
) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, ApiError> {
    if ambiguous {
        return Err(ApiError::AmbiguousLength);
    }
    if !authorized {
        return Err(ApiError::Unauthorized);
    }
    if matches!(endpoint, Endpoint::Health | Endpoint::Metrics) {
        return Ok(None);
    }
    if let Ok(permit) = state.in_flight.try_acquire() {
        return Ok(Some(permit));
    }
    let limits = &state.config.limits;
    let overloaded = |what: String| ApiError::Overloaded {
        what,
        retry_after: state.config.batching.retry_after,
    };
    let Some(_waiting) = Waiting::join(state) else {
        return Err(overloaded(format!(
            "{} requests in flight and {} waiting",
            limits.max_in_flight, limits.max_waiting
        )));
    };
    match tokio::time::timeout(limits.wait_timeout, state.in_flight.acquire()).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        _ => Err(overloaded(format!(
            "{} requests in flight; waited {} s for a place",
            limits.max_in_flight,
            limits.wait_timeout.as_secs_f64()
        ))),
    }
}

/// A place in the line for an in-flight permit; leaving it (answered, timed out, or the client gone) frees it.
struct Waiting<'s>(&'s AppState);

impl<'s> Waiting<'s> {
    fn join(state: &'s AppState) -> Option<Waiting<'s>> {
        let max = state.config.limits.max_waiting;
        state
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()?;
        state.metrics.waiting.fetch_add(1, Ordering::Relaxed);
        Some(Waiting(state))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How much of an oversized body is read and thrown away before answering 413. Answering while the client is
/// still sending makes the kernel reset the connection, and the client may never see the answer; past this
/// much the server stops reading and accepts that risk rather than spend time on the rest.
const DRAIN_BYTES: usize = 16 << 20;

/// Reads the body (at most `limit` bytes, after decompression for `Content-Encoding: gzip`) and parses it as
/// JSON. Other encodings are refused (415) rather than parsed as if they were plain.
async fn read_json(request: Request, limit: usize) -> Result<Value, ApiError> {
    let gzip = match request.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().map(str::trim)) {
        None => false,
        Some(Ok(e)) if e.eq_ignore_ascii_case("identity") || e.is_empty() => false,
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => true,
        Some(other) => {
            return Err(ApiError::UnsupportedEncoding {
                encoding: other.unwrap_or("(not text)").chars().take(100).collect(),
            })
        }
    };
    let bytes = read_body(request, limit).await?;
    let bytes = if gzip { gunzip(&bytes, limit)? } else { bytes };
    // RFC 8259 lets a parser ignore a UTF-8 byte-order mark, and some clients (Windows tools) send one; serde_json
    // would call it malformed at line 1 column 1.
    let json = bytes.strip_prefix(crate::UTF8_BOM).unwrap_or(&bytes);
    serde_json::from_slice(json).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// Decompresses a gzip body, refusing (413) one that would exceed `limit` bytes once decompressed: a small
/// compressed body can expand a thousandfold, so the limit applies to what is parsed, not what was sent.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let decoder = flate2::read::GzDecoder::new(compressed);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BodyUnreadable(format!("gzip: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::BodyTooLarge { limit });
    }
    Ok(out)
}

/// Reads the raw body, at most `limit` bytes.
async fn read_body(request: Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut body = request.into_body();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BodyUnreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen <= limit {
            bytes.extend_from_slice(&data);
        } else if seen > DRAIN_BYTES {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::BodyTooLarge { limit });
    }
    Ok(bytes)
}

#[derive(Serialize)]
struct Results<T> {
    results: Vec<T>,
}

/// One text's scores as `/v1/score` returns them.
#[derive(Serialize)]
struct ScoreResult {
    intensities: Intensities,
    top: Vec<(&'static str, f64)>,
    tokens: usize,
    truncated: bool,
}

impl ScoreResult {
    fn new(estimate: Estimate, top: usize) -> ScoreResult {
        ScoreResult {
            top: estimate
                .intensities
                .top(top)
                .into_iter()
                // Four decimals, as `Intensities` serialises: far below the model's precision.
                .map(|(c, v)| (c.name(), crate::intensities::round4(v)))
                .collect(),
            intensities: estimate.intensities,
            tokens: estimate.tokens,
            truncated: estimate.truncated,
        }
    }
}

async fn score(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let body = read_json(request, state.config.limits.max_body_bytes).await?;
    let req = ScoreRequest::parse(body, &state.defaults())?;
    let texts: Vec<&str> = req.texts.iter().map(String::as_str).collect();
    let results = state
        .scorer
        .score(&texts)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.map(|estimate| ScoreResult::new(estimate, req.top))
                .map_err(|problem| ApiError::unprocessable(format!("texts[{i}]"), problem.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(StatusCode::OK, &Results { results }))
}

/// Scores every turn of every usable item (clause by clause, as the arcs read them) in one pass through the
/// cache and the queue, and builds each trajectory; an item that was already unusable, or that has a turn the
/// model refuses, keeps its issue. `field(i, turn)` names a turn the model refused.
async fn trajectories(
    state: &AppState,
    items: &[Item],
    options: &ArcOptions,
    field: impl Fn(usize, usize) -> String,
) -> Result<Vec<Result<Trajectory, ItemIssue>>, ApiError> {
    // Per turn: its clauses and the message they are read after, as `score_conversations` reads them.
    let readings: Vec<Vec<_>> = items
        .iter()
        .map(|item| match item {
            Ok(c) => options.turn_pieces(&state.estimator, c),
            Err(_) => Vec::new(),
        })
        .collect();
    let asked: Vec<InContext> = readings
        .iter()
        .flatten()
        .flat_map(|(clauses, after)| clauses.iter().map(|clause| InContext::new(clause.text, *after)))
        .collect();
    let mut scores = state.scorer.score_in_context(&asked).await?.into_iter();
    let mut out = Vec::with_capacity(items.len());
    for (i, (item, turns)) in items.iter().zip(&readings).enumerate() {
        let conversation = match item {
            Ok(c) => c,
            Err(issue) => {
                out.push(Err(issue.clone()));
                continue;
            }
        };
        let mut trajectory = Ok(Trajectory::new(conversation.id.clone(), options.speaker.clone()));
        for (t, (turn, (clauses, _))) in conversation.turns.iter().zip(turns).enumerate() {
            // Taken whatever happens, so the next item's scores start at the right place.
            let vectors = scores
                .by_ref()
                .take(clauses.len())
                .map(|r| r.map(|estimate| ClauseScore::from(&estimate)))
                .collect::<Result<Vec<_>, _>>();
            trajectory = match (trajectory, vectors) {
                (Ok(mut tr), Ok(vectors)) => {
                    tr.push_scored(turn.role.clone(), TurnReading::combine_scores(clauses, &vectors), &options.affect);
                    Ok(tr)
                }
                (Ok(_), Err(problem)) => Err(ItemIssue::new(i, "model_refused", field(i, t), problem.to_string())),
                (failed, _) => failed,
            };
        }
        out.push(trajectory);
    }
    Ok(out)
}

/// One item's reward after the per-item checks: the trajectory when it could be rewarded.
struct Rewarded<'t> {
    reward: f32,
    trajectory: Option<&'t Trajectory>,
}

/// Each item's reward, or the invalid reward with an error for an item that cannot be rewarded (unusable, or
/// a reward or term that is not a finite number); warns about single-turn items. `field(i)` names item `i`.
fn reward_items<'t>(
    state: &AppState,
    items: &[Item],
    trajectories: &'t [Result<Trajectory, ItemIssue>],
    reward: &WeightedReward,
    speaker: &str,
    field: impl Fn(usize) -> String,
    outcomes: &mut Outcomes,
) -> Vec<Rewarded<'t>> {
    let invalid = state.config.invalid_reward;
    let mut out = Vec::with_capacity(items.len());
    for (i, (item, trajectory)) in items.iter().zip(trajectories).enumerate() {
        let (conversation, trajectory) = match (item, trajectory) {
            (Ok(c), Ok(t)) => (c, t),
            (_, Err(issue)) | (Err(issue), _) => {
                outcomes.error(issue.clone());
                out.push(Rewarded { reward: invalid, trajectory: None });
                continue;
            }
        };
        let value = reward.reward(trajectory);
        let finite = value.is_finite() && reward.terms(trajectory).iter().all(|(_, v)| v.is_finite());
        if !finite {
            let message = format!("the reward is {value}, not a finite number: the term weights are too large");
            outcomes.error(ItemIssue::new(i, "non_finite_reward", field(i), message));
            out.push(Rewarded { reward: invalid, trajectory: None });
            continue;
        }
        if items::single_turn(conversation, speaker) {
            outcomes.warn(items::single_turn_warning(i, field(i)));
        }
        out.push(Rewarded {
            reward: value,
            trajectory: Some(trajectory),
        });
    }
    out
}

/// The arc as `/v1/reward` returns it: the speaker's per-point series and the summary.
#[derive(Serialize)]
struct ArcBody<'a> {
    turns: &'a [usize],
    wellbeing: &'a [f32],
    valence: &'a [f32],
    arousal: &'a [f32],
    summary: Option<ArcSummary>,
}

/// Pairs serialised as a JSON object in their order (the reward's terms keep the configuration's order, and
/// values stay `f32` so they print as the reward itself does).
struct Pairs<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for Pairs<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One conversation's result; `terms` and `arc` are absent for an item listed in `errors`.
#[derive(Serialize)]
struct RewardResult<'a> {
    id: String,
    reward: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    terms: Option<Pairs<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arc: Option<ArcBody<'a>>,
}

/// `/v1/reward`'s response: a result per conversation, in order, and the per-item errors and warnings.
#[derive(Serialize)]
struct RewardResults<'a> {
    results: Vec<RewardResult<'a>>,
    #[serde(flatten)]
    outcomes: &'a Outcomes,
}

fn term_values(reward: &WeightedReward, trajectory: &Trajectory) -> Pairs<f32> {
    Pairs(reward.terms(trajectory).into_iter().map(|(name, value)| (name.to_string(), value)).collect())
}

async fn reward(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let body = read_json(request, state.config.limits.max_body_bytes).await?;
    let req = RewardRequest::parse(body, &state.defaults())?;
    let trajectories = trajectories(&state, &req.items, &req.options, |i, t| {
        format!("conversations[{i}].turns[{t}]")
    })
    .await?;
    let mut outcomes = Outcomes::default();
    let rewarded = reward_items(
        &state,
        &req.items,
        &trajectories,
        &req.reward,
        &req.options.speaker,
        |i| format!("conversations[{i}]"),
        &mut outcomes,
    );
    outcomes.finish(Endpoint::REWARD, &state.metrics, &state.log);
    let results: Vec<RewardResult> = rewarded
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let arc = r.trajectory.map(Trajectory::arc);
            RewardResult {
                id: r.trajectory.map_or_else(|| i.to_string(), |t| t.id.clone()),
                reward: r.reward,
                terms: r.trajectory.map(|t| term_values(&req.reward, t)),
                arc: arc.map(|arc| ArcBody {
                    turns: arc.turns(),
                    wellbeing: arc.wellbeing(),
                    valence: arc.valence(),
                    arousal: arc.arousal(),
                    summary: arc.summary(DEFAULT_TREND_WINDOW),
                }),
            }
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &RewardResults {
            results,
            outcomes: &outcomes,
        },
    ))
}

/// OpenRLHF's remote reward response: `rewards` for the advantage, `scores` (the same values) for its dynamic
/// sampling filter, and per query in `extra_logs` (which OpenRLHF logs alongside) each term (0 for an item in
/// `errors`), `invalid` (1 for an item in `errors`), `single_turn` and `speaker_turn_in_reply` (1 for an item
/// with that warning); `errors` and `warnings` list the items' problems.
#[derive(Serialize)]
struct OpenRlhfRewards<'a> {
    rewards: Vec<f32>,
    scores: Vec<f32>,
    extra_logs: Pairs<Vec<f32>>,
    #[serde(flatten)]
    outcomes: &'a Outcomes,
}

async fn get_reward(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let body = read_json(request, state.config.limits.max_body_bytes).await?;
    let req = GetRewardRequest::parse(body, &state.defaults())?;
    let speaker = &state.config.arc.speaker;
    let trajectories = trajectories(&state, &req.items, &state.config.arc, |i, _| format!("query[{i}]")).await?;
    let mut outcomes = Outcomes::default();
    req.warnings.iter().cloned().for_each(|w| outcomes.warn(w));
    let field = |i| format!("query[{i}]");
    let rewarded = reward_items(&state, &req.items, &trajectories, &state.reward, speaker, field, &mut outcomes);
    outcomes.finish(Endpoint::GET_REWARD, &state.metrics, &state.log);
    let rewards: Vec<f32> = rewarded.iter().map(|r| r.reward).collect();
    let mut extra_logs: Vec<(String, Vec<f32>)> =
        state.reward.weights().map(|(name, _)| (name.to_string(), Vec::new())).collect();
    for r in &rewarded {
        match r.trajectory {
            Some(t) => {
                for ((_, values), (_, value)) in extra_logs.iter_mut().zip(state.reward.terms(t)) {
                    values.push(value);
                }
            }
            None => extra_logs.iter_mut().for_each(|(_, values)| values.push(0.0)),
        }
    }
    let flag = |f: &dyn Fn(usize) -> bool| (0..rewarded.len()).map(|i| if f(i) { 1.0 } else { 0.0 }).collect();
    extra_logs.push(("invalid".into(), flag(&|i| outcomes.failed(i))));
    extra_logs.push(("single_turn".into(), flag(&|i| outcomes.warned(i, "single_turn"))));
    extra_logs.push(("speaker_turn_in_reply".into(), flag(&|i| outcomes.warned(i, "speaker_turn_in_reply"))));
    Ok(json_response(
        StatusCode::OK,
        &OpenRlhfRewards {
            scores: rewards.clone(),
            rewards,
            extra_logs: Pairs(extra_logs),
            outcomes: &outcomes,
        },
    ))
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    model: &'a str,
    categories: usize,
    max_length: usize,
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            model: &state.estimator.spec().name,
            categories: crate::taxonomy::NUM_CATEGORIES,
            max_length: state.estimator.max_length(),
        },
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.estimator.stats();
    let text = state.metrics.render(&Snapshot {
        cache_entries: state.scorer.cached(),
        encoder_sequences: stats.sequences,
        encoder_batches: stats.batches,
    });
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound {
        path: request.uri().path().chars().take(200).collect(),
    }
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
    }
}
