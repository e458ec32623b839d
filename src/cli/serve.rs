//! `emoarc serve`: runs the reward server (see `emoarc::server`). This file owns the flags, the exposure check
//! before anything is loaded, the runtime, the signals that stop it, and the few lines it logs to stderr.

use super::reward::load_config;
use super::ModelArgs;
use anyhow::{Context, Result};
use clap::Args;
use emoarc::server::{check_exposure, serve, ApiKey, Batching, Connections, Limits, LogSink, ServerConfig};
use emoarc::trajectory::{ArcOptions, Template, TurnContext, TurnReading};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs --api-key-file or --allow-unauthenticated.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// File holding the bearer token clients must send (Authorization: Bearer TOKEN).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Serve a non-loopback address without a token (only on a network you trust).
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Longest a batch waits for more requests, in milliseconds.
    #[arg(long, default_value_t = 2.0)]
    max_wait_ms: f64,
    /// Most texts per coalesced estimator call.
    #[arg(long, default_value_t = Batching::default().max_texts)]
    batch_texts: usize,
    /// Most estimated tokens per coalesced estimator call.
    #[arg(long, default_value_t = Batching::default().max_tokens)]
    batch_tokens: usize,
    /// Most texts waiting in the queue; beyond it requests get 503 with Retry-After.
    #[arg(long, default_value_t = Batching::default().queue_capacity)]
    queue_capacity: usize,
    /// Utterance scores kept in the LRU cache (0 turns it off).
    #[arg(long, default_value_t = ServerConfig::default().cache_capacity)]
    cache_size: usize,
    /// Longest a request may take, in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most texts, conversations or queries per request.
    #[arg(long, default_value_t = Limits::default().max_items)]
    max_items: usize,
    /// Longest text or turn in bytes.
    #[arg(long, default_value_t = Limits::default().max_text_bytes)]
    max_text_bytes: usize,
    /// Most turns over all conversations of one request.
    #[arg(long, default_value_t = Limits::default().max_turns)]
    max_turns: usize,
    /// Most scoring requests handled at once; more wait in line (--max-waiting, --wait-timeout).
    #[arg(long, default_value_t = Limits::default().max_in_flight)]
    max_in_flight: usize,
    /// Most requests waiting for a place in flight; beyond it requests get 503 with Retry-After at once.
    #[arg(long, default_value_t = Limits::default().max_waiting)]
    max_waiting: usize,
    /// Longest a request waits for a place in flight, in seconds (then 503 with Retry-After).
    #[arg(long, default_value_t = Limits::default().wait_timeout.as_secs_f64())]
    wait_timeout: f64,
    /// Most connections open at once; at the cap idle keep-alive connections are closed to admit new ones.
    #[arg(long, default_value_t = Connections::default().max_connections)]
    max_connections: usize,
    /// Longest from the first byte of a request head to its end, in seconds.
    #[arg(long, default_value_t = Connections::default().header_timeout.as_secs_f64())]
    header_timeout: f64,
    /// Longest a keep-alive connection may wait for its next request, in seconds.
    #[arg(long, default_value_t = Connections::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// After SIGINT or SIGTERM, how long requests in flight get to finish before connections are closed and
    /// the server exits, in seconds.
    #[arg(long, default_value_t = Connections::default().drain_timeout.as_secs_f64())]
    drain_timeout: f64,
    /// Reward given to a batch item that cannot be rewarded (it is also listed in the response's errors).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    invalid_reward: f32,
    /// Chat template of /get_reward queries (default: detected per query): one of chatml, qwen, llama3,
    /// gemma, deepseek, phi3, llama2, mistral, role-lines.
    #[arg(long)]
    template: Option<Template>,
    /// Default reward: a term or a weighted sum such as terminal=1,accommodation=0.5 (default: the config's
    /// [terms], else terminal). /v1/reward requests may ask for another; /get_reward uses this one.
    #[arg(long)]
    reward: Option<String>,
    /// TOML file with the reward terms and parameters (see examples/reward.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Whose turns form the arc that rewards read.
    #[arg(long, default_value = "user")]
    speaker: String,
    /// How a turn is read: whole or clauses.
    #[arg(long, default_value_t = TurnReading::default())]
    reading: TurnReading,
    /// What a speaker's turn is read with: previous (the reply before it, when the model reads context) or alone.
    #[arg(long, default_value_t = TurnContext::default())]
    context: TurnContext,
    #[command(flatten)]
    model: ModelArgs,
}

fn seconds(what: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{what} must be a non-negative number of seconds"))
}

impl ServeArgs {
    fn config(&self) -> Result<ServerConfig> {
        let api_key = match &self.api_key_file {
            Some(path) => Some(ApiKey::from_file(path)?),
            None => None,
        };
        let config = ServerConfig {
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_items: self.max_items,
                max_text_bytes: self.max_text_bytes,
                max_turns: self.max_turns,
                max_in_flight: self.max_in_flight,
                max_waiting: self.max_waiting,
                wait_timeout: seconds("--wait-timeout", self.wait_timeout)?,
            },
            connections: Connections {
                max_connections: self.max_connections,
                header_timeout: seconds("--header-timeout", self.header_timeout)?,
                idle_timeout: seconds("--idle-timeout", self.idle_timeout)?,
                drain_timeout: seconds("--drain-timeout", self.drain_timeout)?,
            },
            invalid_reward: self.invalid_reward,
            template: self.template,
            log: Some(LogSink(Arc::new(|line: &str| eprintln!("emoarc: {line}")))),
            batching: Batching {
                max_wait: seconds("--max-wait-ms", self.max_wait_ms / 1000.0)?,
                max_texts: self.batch_texts,
                max_tokens: self.batch_tokens,
                queue_capacity: self.queue_capacity,
                ..Batching::default()
            },
            cache_capacity: self.cache_size,
            request_timeout: seconds("--timeout", self.timeout)?,
            api_key,
            reward: load_config(self.config.as_deref(), self.reward.as_deref())?,
            arc: ArcOptions {
                speaker: self.speaker.clone(),
                reading: self.reading,
                context: self.context,
                ..ArcOptions::default()
            },
            ..ServerConfig::default()
        };
        config.check()?;
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let config = args.config()?;
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --host {}", args.host))?
        .next()
        .with_context(|| format!("--host {} resolves to no address", args.host))?;
    // Refuse an exposed address before spending time on the model.
    check_exposure(addr, config.api_key.is_some(), args.allow_unauthenticated)?;
    let estimator = Arc::new(args.model.load()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emoarc-http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let auth = if config.api_key.is_some() { "bearer token required" } else { "no authentication" };
        eprintln!("emoarc: serving {} on http://{local} ({auth})", estimator.spec().name);
        serve(listener, estimator, config, shutdown_signal()).await?;
        eprintln!("emoarc: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what service managers and container runtimes send).
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a handler the signal's default action still stops the process; wait for SIGTERM instead.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    eprintln!("emoarc: shutting down: finishing requests in flight (up to the drain deadline)");
}
