//! What the server counts and how `/metrics` shows it: requests by endpoint and status, request latency and
//! batch-size histograms, queue depth and cache hits, rendered in the Prometheus text exposition format
//! (version 0.0.4) by hand: a few counters do not need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The endpoints, as metric labels. Any other path counts as `other`, so a scan of random URLs cannot grow the
/// label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    Score,
    Reward,
    GetReward,
    Health,
    Metrics,
    Other,
}

impl Endpoint {
    pub(crate) const SCORE: &'static str = "/v1/score";
    pub(crate) const REWARD: &'static str = "/v1/reward";
    pub(crate) const GET_REWARD: &'static str = "/get_reward";
    pub(crate) const HEALTH: &'static str = "/health";
    pub(crate) const METRICS: &'static str = "/metrics";

    pub(crate) fn of(path: &str) -> Endpoint {
        match path {
            Self::SCORE => Endpoint::Score,
            Self::REWARD => Endpoint::Reward,
            Self::GET_REWARD => Endpoint::GetReward,
            Self::HEALTH => Endpoint::Health,
            Self::METRICS => Endpoint::Metrics,
            _ => Endpoint::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Endpoint::Score => Self::SCORE,
            Endpoint::Reward => Self::REWARD,
            Endpoint::GetReward => Self::GET_REWARD,
            Endpoint::Health => Self::HEALTH,
            Endpoint::Metrics => Self::METRICS,
            Endpoint::Other => "other",
        }
    }
}

/// Latency buckets in seconds: from a cache hit (sub-millisecond) to a request near the default timeout.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Texts per estimator call: powers of two up to well past the default coalescing bound.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let slot = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Writes the `_bucket`, `_sum` and `_count` series; `labels` is empty or `key="value",` pairs.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Clone)]
struct Tables {
    requests: BTreeMap<(Endpoint, u16), u64>,
    latency: BTreeMap<Endpoint, Histogram>,
    batch_texts: Histogram,
    batch_requests: Histogram,
    batch_seconds: Histogram,
    /// Per-item problems by code: errors (the item got the invalid reward) and warnings.
    item_errors: BTreeMap<&'static str, u64>,
    item_warnings: BTreeMap<&'static str, u64>,
}

/// The server's counters. Gauges and hot counters are atomics; the tables sit behind one mutex that is held
/// only to add a number, never across a model call or an await.
#[derive(Debug)]
pub(crate) struct Metrics {
    tables: Mutex<Tables>,
    pub(crate) queue_texts: AtomicUsize,
    pub(crate) queue_jobs: AtomicUsize,
    /// Requests waiting for a place in flight.
    pub(crate) waiting: AtomicUsize,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    encoded_texts: AtomicU64,
}

/// Numbers that live elsewhere and are read when `/metrics` is rendered.
pub(crate) struct Snapshot {
    pub(crate) cache_entries: usize,
    pub(crate) encoder_sequences: u64,
    pub(crate) encoder_batches: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            tables: Mutex::new(Tables {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_texts: Histogram::new(BATCH_BUCKETS),
                batch_requests: Histogram::new(BATCH_BUCKETS),
                batch_seconds: Histogram::new(LATENCY_BUCKETS),
                item_errors: BTreeMap::new(),
                item_warnings: BTreeMap::new(),
            }),
            queue_texts: AtomicUsize::new(0),
            queue_jobs: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            encoded_texts: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic elsewhere while holding the lock leaves only counters behind: keep counting.
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn record_request(&self, endpoint: Endpoint, status: u16, elapsed: Duration) {
        let mut t = self.tables();
        *t.requests.entry((endpoint, status)).or_default() += 1;
        t.latency
            .entry(endpoint)
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// One estimator call: how many distinct texts from how many requests, and how long it ran.
    pub(crate) fn record_batch(&self, texts: usize, requests: usize, elapsed: Duration) {
        self.encoded_texts.fetch_add(texts as u64, Ordering::Relaxed);
        let mut t = self.tables();
        t.batch_texts.observe(texts as f64);
        t.batch_requests.observe(requests as f64);
        t.batch_seconds.observe(elapsed.as_secs_f64());
    }

    /// One item of a batch that got the invalid reward (`error`) or a warning, by its stable code.
    pub(crate) fn record_item(&self, error: bool, code: &'static str) {
        let mut t = self.tables();
        let table = if error { &mut t.item_errors } else { &mut t.item_warnings };
        *table.entry(code).or_default() += 1;
    }

    pub(crate) fn record_cache(&self, hits: usize, misses: usize) {
        self.cache_hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.cache_misses.fetch_add(misses as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(8192);
        // A copy, so the string formatting below happens without holding the lock.
        let t = self.tables().clone();
        header(&mut out, "emoarc_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
        for ((endpoint, status), n) in &t.requests {
            let _ = writeln!(out, "emoarc_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}", endpoint.label());
        }
        header(&mut out, "emoarc_request_duration_seconds", "histogram", "Time from request to response, by endpoint.");
        for (endpoint, h) in &t.latency {
            h.render(&mut out, "emoarc_request_duration_seconds", &format!("endpoint=\"{}\",", endpoint.label()));
        }
        header(&mut out, "emoarc_batch_texts", "histogram", "Distinct texts per estimator call.");
        t.batch_texts.render(&mut out, "emoarc_batch_texts", "");
        header(&mut out, "emoarc_batch_requests", "histogram", "Requests coalesced into one estimator call.");
        t.batch_requests.render(&mut out, "emoarc_batch_requests", "");
        header(&mut out, "emoarc_batch_duration_seconds", "histogram", "Time one estimator call took.");
        t.batch_seconds.render(&mut out, "emoarc_batch_duration_seconds", "");
        let items = [
            ("emoarc_item_errors_total", "Batch items answered with the invalid reward, by code.", &t.item_errors),
            ("emoarc_item_warnings_total", "Batch items answered with a warning, by code.", &t.item_warnings),
        ];
        for (name, help, table) in items {
            header(&mut out, name, "counter", help);
            for (code, n) in table {
                let _ = writeln!(out, "{name}{{code=\"{code}\"}} {n}");
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let values: [(&str, &str, &str, u64); 9] = [
            ("emoarc_queue_texts", "gauge", "Texts waiting in the batching queue.", self.queue_texts.load(Ordering::Relaxed) as u64),
            ("emoarc_queue_requests", "gauge", "Requests waiting in the batching queue.", self.queue_jobs.load(Ordering::Relaxed) as u64),
            ("emoarc_waiting_requests", "gauge", "Requests waiting for a place in flight.", self.waiting.load(Ordering::Relaxed) as u64),
            ("emoarc_cache_hits_total", "counter", "Texts answered from the utterance cache.", load(&self.cache_hits)),
            ("emoarc_cache_misses_total", "counter", "Texts that had to be encoded.", load(&self.cache_misses)),
            ("emoarc_cache_entries", "gauge", "Texts held in the utterance cache.", snapshot.cache_entries as u64),
            ("emoarc_encoded_texts_total", "counter", "Distinct texts sent to the estimator.", load(&self.encoded_texts)),
            ("emoarc_encoder_sequences_total", "counter", "Token sequences run through the encoder.", snapshot.encoder_sequences),
            ("emoarc_encoder_batches_total", "counter", "Encoder batches run.", snapshot.encoder_batches),
        ];
        for (name, kind, help, value) in values {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.record_request(Endpoint::Score, 200, Duration::from_millis(3));
        m.record_request(Endpoint::Score, 200, Duration::from_millis(40));
        m.record_request(Endpoint::of("/nope"), 404, Duration::from_micros(100));
        m.record_batch(12, 3, Duration::from_millis(20));
        m.record_cache(5, 12);
        m.record_item(false, "single_turn");
        m.record_item(true, "no_speaker_turn");
        m.record_item(false, "single_turn");
        let text = m.render(&Snapshot {
            cache_entries: 12,
            encoder_sequences: 12,
            encoder_batches: 1,
        });
        assert!(text.contains("emoarc_requests_total{endpoint=\"/v1/score\",status=\"200\"} 2\n"));
        assert!(text.contains("emoarc_requests_total{endpoint=\"other\",status=\"404\"} 1\n"));
        assert!(text.contains("emoarc_request_duration_seconds_bucket{endpoint=\"/v1/score\",le=\"0.005\"} 1\n"));
        assert!(text.contains("emoarc_request_duration_seconds_bucket{endpoint=\"/v1/score\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("emoarc_request_duration_seconds_count{endpoint=\"/v1/score\"} 2\n"));
        assert!(text.contains("emoarc_batch_texts_bucket{le=\"16\"} 1\n"));
        assert!(text.contains("emoarc_batch_requests_sum 3\n"));
        assert!(text.contains("emoarc_cache_hits_total 5\n"));
        assert!(text.contains("# TYPE emoarc_queue_texts gauge\n"));
        assert!(text.contains("emoarc_item_warnings_total{code=\"single_turn\"} 2\n"));
        assert!(text.contains("emoarc_item_errors_total{code=\"no_speaker_turn\"} 1\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
