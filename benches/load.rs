//! Load test of `emoarc serve`: starts the release binary on a loopback port (cache off, so every text reaches
//! the model), drives it with N concurrent keep-alive clients for a fixed time, each request a batch of corpus
//! utterances, then scores the same utterances offline with `emoarc score` and compares throughput.
//!
//! ```sh
//! cargo bench --bench load                        # 16 clients, 30 s, 8 texts per request
//! cargo bench --bench load -- --duration 5 --clients 4 --texts 4 --cache
//! ```
//!
//! Prints a Markdown table: requests/s, utterances/s, latency percentiles, errors, the server's peak RSS, and
//! offline utterances/s with the ratio. Bounded: it stops after `--duration` seconds plus the offline run, and
//! only ever talks to 127.0.0.1.

#[path = "../tests/server_http/mod.rs"]
mod http;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    duration: Duration,
    clients: usize,
    texts: usize,
    cache: bool,
}

impl Options {
    /// Reads `--duration S`, `--clients N`, `--texts N` and `--cache`; ignores what cargo adds (`--bench`).
    fn parse() -> Options {
        let mut o = Options {
            duration: Duration::from_secs(30),
            clients: 16,
            texts: 8,
            cache: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = || -> f64 {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{arg} needs a number"))
            };
            match arg.as_str() {
                "--duration" => o.duration = Duration::from_secs_f64(number().clamp(1.0, 600.0)),
                "--clients" => o.clients = (number() as usize).clamp(1, 256),
                "--texts" => o.texts = (number() as usize).clamp(1, 256),
                "--cache" => o.cache = true,
                _ => {}
            }
        }
        o
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The authored corpus's utterances, in file order.
fn corpus() -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("data/corpus"))
        .expect("data/corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read_to_string(f).expect("corpus file").lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok()?["text"].as_str().map(str::to_string))
        .collect()
}

/// Starts `emoarc serve` on a free loopback port and returns it with its address (read from its first line).
fn start_server(cache: bool) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emoarc"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--device", "cpu"])
        .args(["--cache-size", if cache { "65536" } else { "0" }])
        .current_dir(root())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start emoarc serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = lines.next().expect("the server says where it listens").expect("read stderr");
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What one client saw.
#[derive(Default)]
struct ClientStats {
    latencies: Vec<Duration>,
    utterances: usize,
    errors: usize,
}

/// Sends requests until `stop`, each the next `k` corpus texts (a shared cursor, so clients never send the
/// same batch at the same time).
fn client(addr: SocketAddr, texts: Arc<Vec<String>>, cursor: Arc<AtomicUsize>, k: usize, stop: Arc<AtomicBool>) -> ClientStats {
    let mut stats = ClientStats::default();
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) {
        let start = cursor.fetch_add(k, Ordering::Relaxed);
        let batch: Vec<&str> = (start..start + k).map(|i| texts[i % texts.len()].as_str()).collect();
        let body = serde_json::json!({ "texts": batch }).to_string();
        let began = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match http::Connection::open(addr) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    stats.errors += 1;
                    continue;
                }
            },
        };
        match c.send("POST", "/v1/score", &[("Content-Type", "application/json")], body.as_bytes()) {
            Ok(r) if r.status == 200 && r.json()["results"].as_array().is_some_and(|a| a.len() == k) => {
                stats.latencies.push(began.elapsed());
                stats.utterances += k;
            }
            _ => {
                stats.errors += 1;
                conn = None;
            }
        }
    }
    stats
}

/// `emoarc score` on the same texts: its own utterances/s from its summary line (model loading excluded).
fn offline_throughput(texts: &[&str]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("texts.txt");
    std::fs::write(&file, texts.join("\n") + "\n").expect("write texts");
    let out = Command::new(env!("CARGO_BIN_EXE_emoarc"))
        .args(["score", path_str(&file), "--device", "cpu"])
        .current_dir(root())
        .stdout(Stdio::null())
        .output()
        .expect("run emoarc score");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "emoarc score failed: {summary}");
    summary
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no utterances/s in: {summary}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let o = Options::parse();
    let texts = Arc::new(corpus());
    let (mut server, addr) = start_server(o.cache);
    let pid = server.id();

    // Warm-up: one request per client, so first-touch costs are not measured.
    for i in 0..o.clients {
        let batch: Vec<&str> = texts.iter().skip(i * o.texts).take(o.texts).map(String::as_str).collect();
        let r = http::post_json(addr, "/v1/score", &serde_json::json!({ "texts": batch }));
        assert_eq!(r.status, 200, "warm-up: {}", r.text());
    }

    let cursor = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let handles: Vec<_> = (0..o.clients)
        .map(|_| {
            let (texts, cursor, stop) = (Arc::clone(&texts), Arc::clone(&cursor), Arc::clone(&stop));
            std::thread::spawn(move || client(addr, texts, cursor, o.texts, stop))
        })
        .collect();
    std::thread::sleep(o.duration);
    stop.store(true, Ordering::Relaxed);
    let stats: Vec<ClientStats> = handles.into_iter().map(|h| h.join().expect("client")).collect();
    let elapsed = began.elapsed().as_secs_f64();
    let rss = peak_rss_mib(pid);
    let metrics = http::get(addr, "/metrics").text();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let per_call = |name: &str| metric(&format!("{name}_sum")) / metric(&format!("{name}_count"));
    let (texts_per_call, requests_per_call) = (per_call("emoarc_batch_texts"), per_call("emoarc_batch_requests"));

    // Graceful stop, as a service manager would.
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let exit = server.wait().expect("server exit");

    let mut latencies: Vec<Duration> = stats.iter().flat_map(|s| s.latencies.iter().copied()).collect();
    latencies.sort();
    let requests = latencies.len();
    let utterances: usize = stats.iter().map(|s| s.utterances).sum();
    let errors: usize = stats.iter().map(|s| s.errors).sum();
    let served: Vec<&str> = (0..utterances).map(|i| texts[i % texts.len()].as_str()).collect();
    let offline = offline_throughput(&served);
    let online = utterances as f64 / elapsed;

    println!(
        "{} clients x {:.0} s, {} texts per request, cache {}, corpus of {} utterances",
        o.clients,
        o.duration.as_secs_f64(),
        o.texts,
        if o.cache { "on" } else { "off" },
        texts.len()
    );
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| requests/s | {:.1} |", requests as f64 / elapsed);
    println!("| utterances/s (server) | {online:.1} |");
    println!(
        "| latency p50 / p95 / p99 | {:.0} / {:.0} / {:.0} ms |",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99)
    );
    println!("| errors | {errors} of {} requests |", requests + errors);
    println!("| server peak RSS | {rss:.0} MiB |");
    println!("| mean texts (requests) per estimator call | {texts_per_call:.1} ({requests_per_call:.1}) |");
    println!("| utterances/s (offline `emoarc score`, same {utterances} texts) | {offline:.1} |");
    println!("| server / offline | {:.0}% |", 100.0 * online / offline);
    println!("| server exit after SIGTERM | {} |", if exit.success() { "0 (clean)" } else { "non-zero" });
}
