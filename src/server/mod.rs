//! The reward server behind `emoarc serve`: an HTTP service that RL rollout workers call for scores and
//! rewards, built to stay up whatever they send. Handlers parse and check requests against the [`Limits`] (a
//! refusal names the bad field), look utterances up in an LRU cache, and queue the rest on a bounded batching
//! queue that one model thread drains in coalesced estimator calls (`queue`); a full queue answers 503 instead
//! of growing. Connections are accepted and timed by `conn`; a batch answers every item, a bad item getting
//! the configured invalid reward and an entry in the response's `errors`.
//! This module owns the server's configuration and [`serve`], which runs it on a listener until a shutdown
//! future resolves, then finishes every request in flight.
//!
//! ```no_run
//! use emoarc::server::{serve, ServerConfig};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let estimator = Arc::new(emoarc::Estimator::new()?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, estimator, ServerConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod cache;
mod conn;
mod error;
mod items;
mod json;
mod log;
mod metrics;
mod protocol;
mod queue;
mod routes;

pub use auth::{check_exposure, ApiKey};
pub use conn::Connections;
pub use log::LogSink;
pub use error::{ApiError, ServerError};
pub use queue::Batching;

use crate::estimator::Estimator;
use crate::trajectory::{ArcOptions, Template};
use crate::RewardConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What one request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// Most texts per `/v1/score`, conversations per `/v1/reward`, queries per `/get_reward` (422 beyond).
    pub max_items: usize,
    /// Longest text or turn, in bytes: beyond it `/v1/score` answers 422, and the reward endpoints give that
    /// item the invalid reward and an error entry (the rest of the batch is answered).
    pub max_text_bytes: usize,
    /// Most turns over all the conversations of one request (422 beyond: it bounds the request's work, so the
    /// whole request is refused).
    pub max_turns: usize,
    /// Most scoring requests handled at once; with the body limit, this bounds the memory held by request
    /// bodies however many clients connect. `/health` and `/metrics` are not counted.
    pub max_in_flight: usize,
    /// Most requests waiting for a place in flight (their bodies not yet read); beyond it, 503 at once.
    pub max_waiting: usize,
    /// Longest a request waits for a place in flight before it is answered 503 with `Retry-After`.
    pub wait_timeout: Duration,
}

impl Default for Limits {
    /// 2 MiB bodies, 256 items, 16 KiB texts (well past the model's 256 tokens, which truncation or chunking
    /// handle), 4,096 turns, 256 requests in flight (at most 512 MiB of bodies), 4,096 more waiting up to 120 s
    /// for a place: OpenRLHF's default rollout (1,024 samples, each its own `/get_reward` call at once) fits
    /// four times over, and its client, which gives up after 5 tries a second apart and times out after 180 s,
    /// is answered within its timeout.
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 << 20,
            max_items: 256,
            max_text_bytes: 16 << 10,
            max_turns: 4096,
            max_in_flight: 256,
            max_waiting: 4096,
            wait_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything the server can be told. `Default` is what `emoarc serve` uses without options.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What one request may carry, and how many may be handled at once.
    pub limits: Limits,
    /// How queued texts are coalesced into estimator calls, and when the queue refuses more.
    pub batching: Batching,
    /// Utterance scores kept in the LRU cache (0 turns it off).
    pub cache_capacity: usize,
    /// Longest a request may take, body reading and queueing included (504 beyond).
    pub request_timeout: Duration,
    /// The bearer token clients must present; `None` serves without authentication.
    pub api_key: Option<ApiKey>,
    /// The reward `/v1/reward` starts from and `/get_reward` uses.
    pub reward: RewardConfig,
    /// Whose arc rewards follow, and how turns are read.
    pub arc: ArcOptions,
    /// Strongest categories listed per text by `/v1/score` unless the request says otherwise.
    pub top: usize,
    /// Connection limits and timeouts.
    pub connections: Connections,
    /// The reward given to an item that cannot be rewarded (no turns read from it, no turn by the speaker, a
    /// non-finite reward); the item is also listed in the response's `errors`.
    pub invalid_reward: f32,
    /// The chat template of `/get_reward` queries; `None` detects it per query.
    pub template: Option<Template>,
    /// Where the server's log lines go; `None` drops them.
    pub log: Option<LogSink>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            batching: Batching::default(),
            cache_capacity: 65_536,
            request_timeout: Duration::from_secs(30),
            api_key: None,
            reward: RewardConfig::default(),
            arc: ArcOptions::default(),
            top: 3,
            connections: Connections::default(),
            invalid_reward: 0.0,
            template: None,
            log: None,
        }
    }
}

impl ServerConfig {
    /// Checks every setting; the reward configuration is built to check it.
    pub fn check(&self) -> Result<(), ServerError> {
        let l = &self.limits;
        if [l.max_body_bytes, l.max_items, l.max_text_bytes, l.max_turns, l.max_in_flight].contains(&0) {
            return Err(ServerError::Config("every request limit must be at least 1".into()));
        }
        let c = &self.connections;
        if c.max_connections == 0 {
            return Err(ServerError::Config("the connection limit must be at least 1".into()));
        }
        let timeouts = [self.request_timeout, c.header_timeout, c.idle_timeout, c.drain_timeout];
        if timeouts.iter().any(Duration::is_zero) {
            return Err(ServerError::Config("the request, header, idle and drain timeouts must be positive".into()));
        }
        if !self.invalid_reward.is_finite() {
            return Err(ServerError::Config("the invalid-item reward must be a finite number".into()));
        }
        if self.top > crate::taxonomy::NUM_CATEGORIES {
            return Err(ServerError::Config(format!("top must be at most {}", crate::taxonomy::NUM_CATEGORIES)));
        }
        if self.arc.speaker.trim().is_empty() {
            return Err(ServerError::Config("the speaker must not be empty".into()));
        }
        self.batching.check()?;
        self.reward.build().map(drop).map_err(ServerError::Reward)
    }
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting, finishes every request in flight
/// (their queued texts included) within the drain deadline ([`Connections::drain_timeout`]), closes whatever
/// is still open after it, and returns. The model runs on a thread of its own; `estimator` is shared with it.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    estimator: Arc<Estimator>,
    config: ServerConfig,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    config.check()?;
    let reward = config.reward.build().map_err(ServerError::Reward)?;
    let metrics = Arc::new(metrics::Metrics::default());
    let log = log::Log::new(config.log.clone());
    let (batcher, worker) = queue::Batcher::start(Arc::clone(&estimator), config.batching, Arc::clone(&metrics))?;
    let state = Arc::new(routes::AppState {
        in_flight: tokio::sync::Semaphore::new(config.limits.max_in_flight),
        waiting: std::sync::atomic::AtomicUsize::new(0),
        log: log.clone(),
        scorer: queue::Scorer::new(batcher, config.cache_capacity, Arc::clone(&metrics)),
        estimator,
        metrics,
        config,
        reward,
    });
    let connections = state.config.connections;
    conn::accept_loop(listener, routes::router(Arc::clone(&state)), connections, log, shutdown).await;
    // Every connection has finished, so nothing waits on the queue any more: let the worker drain and exit.
    state.scorer.batcher.close();
    drop(state);
    let joined = tokio::task::spawn_blocking(move || worker.join()).await;
    match joined {
        Ok(Ok(())) => Ok(()),
        _ => Err(ServerError::Worker("the model worker thread panicked".into())),
    }
}
