//! The path from a handler to the model. [`Scorer`] answers what it can from the utterance cache and sends the
//! rest to the [`Batcher`], a bounded queue in front of one model worker thread. The worker waits for the
//! first job, lets more arrive for at most `max_wait` (counted from when the oldest job was queued, so a job
//! that already waited while the model was busy is never held back further), takes queued jobs up to a text
//! and token budget, scores their distinct texts in one estimator call, and hands each job exactly its own
//! results through its oneshot channel. The worker is a plain thread rather than a tokio task because a model
//! call is seconds of CPU work that must not stall the runtime's request handling.

use super::cache::LruCache;
use super::error::{ApiError, ServerError};
use super::metrics::Metrics;
use crate::error::InputProblem;
use crate::estimator::{Estimate, Estimator, InContext};
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How requests are coalesced into estimator calls, and how much may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Longest a queued job waits for company before its batch runs anyway.
    pub max_wait: Duration,
    /// Most texts per estimator call (a single larger request still runs, alone).
    pub max_texts: usize,
    /// Most estimated tokens per estimator call; bounds how long one call, and so every request in it, takes.
    /// Estimated as `bytes / 4 + 2` per text, because exact counts come from the tokenizer inside the call.
    pub max_tokens: usize,
    /// Most texts waiting in the queue; beyond it requests are refused with 503. An empty queue always takes
    /// one request, so anything within the per-request limits can run.
    pub queue_capacity: usize,
    /// What a refused client is told to wait before retrying.
    pub retry_after: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_wait: Duration::from_millis(2),
            max_texts: 256,
            max_tokens: 16_384,
            queue_capacity: 4096,
            retry_after: Duration::from_secs(1),
        }
    }
}

impl Batching {
    pub(crate) fn check(&self) -> Result<(), ServerError> {
        if self.max_texts == 0 || self.max_tokens == 0 || self.queue_capacity == 0 {
            return Err(ServerError::Config(
                "batch texts, batch tokens and queue capacity must all be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The outcome of one text: its estimate, or why the estimator refused it.
pub(crate) type TextResult = Result<Estimate, InputProblem>;
type Reply = Result<Vec<TextResult>, ApiError>;

/// A text to score and the message it answers, if any (what [`InContext`] borrows).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Asked {
    pub(crate) text: String,
    pub(crate) after: Option<String>,
}

impl Asked {
    fn of(item: InContext) -> Asked {
        Asked {
            text: item.text.to_string(),
            after: item.after.map(str::to_string),
        }
    }

    fn borrow(&self) -> InContext<'_> {
        InContext::new(&self.text, self.after.as_deref())
    }
}

/// The cache key of a text read after a message: unambiguous (the message's length comes first), and the text
/// alone for a text without one.
fn cache_key(item: InContext<'_>) -> std::borrow::Cow<'_, str> {
    match item.after {
        None => std::borrow::Cow::Borrowed(item.text),
        Some(after) => std::borrow::Cow::Owned(format!("\u{1}{}:{after}{}", after.len(), item.text)),
    }
}

/// One request's texts waiting for the model.
struct Job {
    texts: Vec<Asked>,
    tokens: usize,
    queued_at: Instant,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    texts: usize,
    tokens: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    config: Batching,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The worker catches model panics, so a poisoned lock can only come from a bug in this file; the queue's
        // own fields are updated together, so carrying on is safe.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_depth(&self, q: &Queue) {
        self.metrics.queue_texts.store(q.texts, Ordering::Relaxed);
        self.metrics.queue_jobs.store(q.jobs.len(), Ordering::Relaxed);
    }
}

/// The bounded queue in front of the model worker. Dropping it closes the queue; the worker finishes what is
/// queued and exits.
pub(crate) struct Batcher {
    shared: Arc<Shared>,
}

fn estimated_tokens(asked: &Asked) -> usize {
    (asked.text.len() + asked.after.as_ref().map_or(0, String::len)) / 4 + 2
}

impl Batcher {
    /// Starts the model worker thread.
    pub(crate) fn start(
        estimator: Arc<Estimator>,
        config: Batching,
        metrics: Arc<Metrics>,
    ) -> Result<(Batcher, JoinHandle<()>), ServerError> {
        config.check()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            config,
            metrics,
        });
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("emoarc-model".into())
            .spawn(move || work(&worker_shared, &estimator))
            .map_err(|e| ServerError::Worker(e.to_string()))?;
        Ok((Batcher { shared }, worker))
    }

    /// Queues a request's texts; the receiver gets one result per text, in order. Refuses with
    /// [`ApiError::Overloaded`] when the queue is full and [`ApiError::ShuttingDown`] once closed.
    pub(crate) fn submit(&self, texts: Vec<Asked>) -> Result<oneshot::Receiver<Reply>, ApiError> {
        let tokens = texts.iter().map(estimated_tokens).sum();
        let (reply, receiver) = oneshot::channel();
        let mut q = self.shared.lock();
        if q.closed {
            return Err(ApiError::ShuttingDown);
        }
        let capacity = self.shared.config.queue_capacity;
        if !q.jobs.is_empty() && q.texts + texts.len() > capacity {
            return Err(ApiError::Overloaded {
                what: format!("{} texts queued", q.texts),
                retry_after: self.shared.config.retry_after,
            });
        }
        q.texts += texts.len();
        q.tokens += tokens;
        q.jobs.push_back(Job {
            texts,
            tokens,
            queued_at: Instant::now(),
            reply,
        });
        self.shared.publish_depth(&q);
        drop(q);
        self.shared.wake.notify_one();
        Ok(receiver)
    }

    /// Takes no more jobs; the worker drains the queue and exits.
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.close();
    }
}

fn work(shared: &Shared, estimator: &Estimator) {
    while let Some(batch) = next_batch(shared) {
        if !batch.is_empty() {
            run_batch(estimator, batch, &shared.metrics);
        }
    }
}

/// Blocks until a batch is due and takes it; `None` once the queue is closed and empty. The batch may be empty
/// when every job taken had been abandoned by its client.
fn next_batch(shared: &Shared) -> Option<Vec<Job>> {
    let cfg = shared.config;
    let mut q = shared.lock();
    loop {
        let Some(oldest) = q.jobs.front() else {
            if q.closed {
                return None;
            }
            q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        let due = oldest.queued_at + cfg.max_wait;
        let now = Instant::now();
        let full = q.texts >= cfg.max_texts || q.tokens >= cfg.max_tokens;
        if full || q.closed || now >= due {
            break;
        }
        q = shared.wake.wait_timeout(q, due - now).unwrap_or_else(|p| p.into_inner()).0;
    }
    let (mut texts, mut tokens) = (0, 0);
    let mut batch = Vec::new();
    while let Some(job) = q.jobs.front() {
        let fits = texts + job.texts.len() <= cfg.max_texts && tokens + job.tokens <= cfg.max_tokens;
        if !batch.is_empty() && !fits {
            break;
        }
        let job = q.jobs.pop_front().expect("front exists");
        q.texts -= job.texts.len();
        q.tokens -= job.tokens;
        // A client that timed out or disconnected dropped its receiver: its texts are not worth encoding.
        if job.reply.is_closed() {
            continue;
        }
        texts += job.texts.len();
        tokens += job.tokens;
        batch.push(job);
    }
    shared.publish_depth(&q);
    Some(batch)
}

/// Scores the distinct texts of a batch in one estimator call and replies to each job with its own results.
fn run_batch(estimator: &Estimator, batch: Vec<Job>, metrics: &Metrics) {
    let mut slot_of: HashMap<InContext, usize> = HashMap::new();
    let mut distinct: Vec<InContext> = Vec::new();
    let slots: Vec<Vec<usize>> = batch
        .iter()
        .map(|job| {
            job.texts
                .iter()
                .map(|t| {
                    *slot_of.entry(t.borrow()).or_insert_with(|| {
                        distinct.push(t.borrow());
                        distinct.len() - 1
                    })
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    // A panic inside the model must fail this batch's requests, not kill the worker and hang every later one.
    let outcome = catch_unwind(AssertUnwindSafe(|| estimator.estimate_in_context(&distinct)));
    metrics.record_batch(distinct.len(), batch.len(), started.elapsed());
    let scores = match outcome {
        Ok(Ok(scores)) => Ok(scores),
        Ok(Err(e)) => Err(ApiError::Model(e.to_string())),
        Err(_) => Err(ApiError::Model("the model panicked on this batch".into())),
    };
    for (job, slots) in batch.into_iter().zip(slots) {
        let reply = match &scores {
            Ok(scores) => Ok(slots.iter().map(|&i| scores[i].clone()).collect()),
            Err(e) => Err(e.clone()),
        };
        // The client may have gone since the batch was taken; nothing to do then.
        let _ = job.reply.send(reply);
    }
}

/// Scores texts for the handlers: each distinct text once, from the cache when it is there, else through the
/// queue, and caches what the model returns. Refusals (an empty text, a text too long under `--on-long error`)
/// are not cached: they are cheap to find again and would only crowd out real scores.
pub(crate) struct Scorer {
    pub(crate) batcher: Batcher,
    cache: Mutex<LruCache<Estimate>>,
    metrics: Arc<Metrics>,
}

impl Scorer {
    pub(crate) fn new(batcher: Batcher, cache_capacity: usize, metrics: Arc<Metrics>) -> Scorer {
        Scorer {
            batcher,
            cache: Mutex::new(LruCache::new(cache_capacity)),
            metrics,
        }
    }

    fn cache(&self) -> MutexGuard<'_, LruCache<Estimate>> {
        // Cache operations cannot panic halfway through an update that matters: a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn cached(&self) -> usize {
        self.cache().len()
    }

    /// One result per text, in input order.
    pub(crate) async fn score(&self, texts: &[&str]) -> Result<Vec<TextResult>, ApiError> {
        let items: Vec<InContext> = texts.iter().map(|t| InContext::new(t, None)).collect();
        self.score_in_context(&items).await
    }

    /// One result per text, each read after its message as [`Estimator::estimate_in_context`] does, in input
    /// order.
    pub(crate) async fn score_in_context(&self, items: &[InContext<'_>]) -> Result<Vec<TextResult>, ApiError> {
        let mut known: HashMap<InContext, TextResult> = HashMap::with_capacity(items.len());
        let mut missing: Vec<InContext> = Vec::new();
        {
            let mut seen = HashSet::with_capacity(items.len());
            let mut cache = self.cache();
            for &item in items {
                if !seen.insert(item) {
                    continue;
                }
                match cache.get(&cache_key(item)) {
                    Some(estimate) => {
                        known.insert(item, Ok(estimate));
                    }
                    None => missing.push(item),
                }
            }
        }
        self.metrics.record_cache(known.len(), missing.len());
        if !missing.is_empty() {
            let receiver = self.batcher.submit(missing.iter().map(|&i| Asked::of(i)).collect())?;
            let scored = receiver
                .await
                .map_err(|_| ApiError::Model("the model worker stopped before answering".into()))??;
            let mut cache = self.cache();
            for (item, result) in missing.into_iter().zip(scored) {
                if let Ok(estimate) = &result {
                    cache.insert(&cache_key(item), estimate.clone());
                }
                known.insert(item, result);
            }
        }
        Ok(items.iter().map(|t| known[t].clone()).collect())
    }
}
