//! The HTTP surface: the router, the one middleware every request passes (authentication, the limit on
//! requests in flight, the per-request timeout, metrics), reading bodies within the size limit, and the
//! handlers that turn parsed requests into scores, arcs and rewards and those into JSON responses.

use super::auth::ApiKey;
use super::error::ApiError;
use super::json::json_response;
use super::metrics::{Endpoint, Metrics, Snapshot};
use super::protocol::{Defaults, GetRewardRequest, RewardRequest, ScoreRequest};
use super::queue::Scorer;
use super::ServerConfig;
use crate::estimator::{Estimate, Estimator};
use crate::intensities::Intensities;
use crate::reward::{RewardFn, WeightedReward};
use crate::trajectory::{ArcOptions, ArcSummary, ClauseScore, Conversation, Trajectory, TurnReading, DEFAULT_TREND_WINDOW};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// What every handler shares.
pub(crate) struct AppState {
    /// Permits for scoring requests in flight (`Limits::max_in_flight`).
    pub(crate) in_flight: tokio::sync::Semaphore,
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

/// Authentication (everything but `/health`, which load balancers probe without credentials), the limit on
/// requests in flight (not for `/health` and `/metrics`, so monitoring still answers under overload), the
/// per-request timeout, and the request metrics. Dropping a timed-out handler drops its place in the queue
/// too: the worker skips jobs nobody waits for.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = Endpoint::of(request.uri().path());
    let response = match admit(&state, endpoint, &request) {
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

/// Checks the token and takes an in-flight permit (held until the response is ready; `None` for the
/// monitoring endpoints).
fn admit<'s>(
    state: &'s AppState,
    endpoint: Endpoint,
    request: &Request,
) -> Result<Option<tokio::sync::SemaphorePermit<'s>>, ApiError> {
    if endpoint != Endpoint::Health && !state.authorized(request) {
        return Err(ApiError::Unauthorized);
    }
    if matches!(endpoint, Endpoint::Health | Endpoint::Metrics) {
        return Ok(None);
    }
    state.in_flight.try_acquire().map(Some).map_err(|_| ApiError::Overloaded {
        what: format!("{} requests in flight", state.config.limits.max_in_flight),
        retry_after: state.config.batching.retry_after,
    })
}

/// How much of an oversized body is read and thrown away before answering 413. Answering while the client is
/// still sending makes the kernel reset the connection, and the client may never see the answer; past this
/// much the server stops reading and accepts that risk rather than spend time on the rest.
const DRAIN_BYTES: usize = 16 << 20;

/// Reads the body (at most `limit` bytes) and parses it as JSON.
async fn read_json(request: Request, limit: usize) -> Result<Value, ApiError> {
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
    serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))
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
                .map(|(c, v)| (c.name(), (f64::from(v) * 1e4).round() / 1e4))
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

/// Scores every turn of every conversation (clause by clause, as the arcs read them) in one pass through the
/// cache and the queue, and builds each trajectory. `field(i, turn)` names a turn the model refused.
async fn trajectories(
    scorer: &Scorer,
    conversations: &[Conversation],
    options: &ArcOptions,
    field: impl Fn(usize, usize) -> String,
) -> Result<Vec<Trajectory>, ApiError> {
    let readings: Vec<Vec<_>> = conversations
        .iter()
        .map(|c| c.turns.iter().map(|t| options.reading.clauses(&t.text)).collect())
        .collect();
    let texts: Vec<&str> = readings.iter().flatten().flatten().map(|clause| clause.text).collect();
    let mut scores = scorer.score(&texts).await?.into_iter();
    let mut out = Vec::with_capacity(conversations.len());
    for (i, (conversation, turns)) in conversations.iter().zip(&readings).enumerate() {
        let mut trajectory = Trajectory::new(conversation.id.clone(), options.speaker.clone());
        for (t, (turn, clauses)) in conversation.turns.iter().zip(turns).enumerate() {
            let vectors = scores
                .by_ref()
                .take(clauses.len())
                .map(|r| r.map(|estimate| ClauseScore::from(&estimate)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|problem| ApiError::unprocessable(field(i, t), problem.to_string()))?;
            trajectory.push_scored(turn.role.clone(), TurnReading::combine_scores(clauses, &vectors), &options.affect);
        }
        out.push(trajectory);
    }
    Ok(out)
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

#[derive(Serialize)]
struct RewardResult<'a> {
    id: &'a str,
    reward: f32,
    terms: Pairs<f32>,
    arc: ArcBody<'a>,
}

fn term_values(reward: &WeightedReward, trajectory: &Trajectory) -> Pairs<f32> {
    Pairs(reward.terms(trajectory).into_iter().map(|(name, value)| (name.to_string(), value)).collect())
}

async fn reward(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let body = read_json(request, state.config.limits.max_body_bytes).await?;
    let req = RewardRequest::parse(body, &state.defaults())?;
    let trajectories = trajectories(&state.scorer, &req.conversations, &req.options, |i, t| {
        format!("conversations[{i}].turns[{t}]")
    })
    .await?;
    let results: Vec<RewardResult> = trajectories
        .iter()
        .map(|t| {
            let arc = t.arc();
            RewardResult {
                id: &t.id,
                reward: req.reward.reward(t),
                terms: term_values(&req.reward, t),
                arc: ArcBody {
                    turns: arc.turns(),
                    wellbeing: arc.wellbeing(),
                    valence: arc.valence(),
                    arousal: arc.arousal(),
                    summary: arc.summary(DEFAULT_TREND_WINDOW),
                },
            }
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Results { results }))
}

/// OpenRLHF's remote reward response: `rewards` for the advantage, `scores` (the same values) for its dynamic
/// sampling filter, and each term per query in `extra_logs`, which OpenRLHF logs alongside.
#[derive(Serialize)]
struct OpenRlhfRewards {
    rewards: Vec<f32>,
    scores: Vec<f32>,
    extra_logs: Pairs<Vec<f32>>,
}

async fn get_reward(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
    let body = read_json(request, state.config.limits.max_body_bytes).await?;
    let req = GetRewardRequest::parse(body, &state.defaults())?;
    let trajectories = trajectories(&state.scorer, &req.conversations, &state.config.arc, |i, _| format!("query[{i}]")).await?;
    let rewards: Vec<f32> = trajectories.iter().map(|t| state.reward.reward(t)).collect();
    let mut extra_logs: Vec<(String, Vec<f32>)> =
        state.reward.weights().map(|(name, _)| (name.to_string(), Vec::new())).collect();
    for t in &trajectories {
        for ((_, values), (_, value)) in extra_logs.iter_mut().zip(state.reward.terms(t)) {
            values.push(value);
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &OpenRlhfRewards {
            scores: rewards.clone(),
            rewards,
            extra_logs: Pairs(extra_logs),
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
