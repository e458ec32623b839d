//! The reward server against live instances on 127.0.0.1 (OS-assigned ports), started in-process with
//! `emoarc::server::serve`: every endpoint, every limit and error, authentication, 64 concurrent requests,
//! shutdown with requests in flight, the Python client, and a campaign of over a thousand malformed requests.

mod common;
mod server_http;

use emoarc::reward::RewardFn;
use emoarc::server::{serve, ApiKey, Batching, Limits, ServerConfig, ServerError};
use emoarc::trajectory::{score_conversations, ArcOptions};
use emoarc::{Conversation, Estimator, RewardConfig};
use serde_json::{json, Value};
use server_http::{get, post_json, request};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The shipped model, loaded once for the whole test binary and shared by every server it starts.
fn estimator() -> Arc<Estimator> {
    static E: OnceLock<Arc<Estimator>> = OnceLock::new();
    Arc::clone(E.get_or_init(|| {
        Arc::new(
            Estimator::builder()
                .model(emoarc::ModelSource::Dir(common::shipped_dir()))
                .device(emoarc::DeviceChoice::Cpu)
                .build()
                .expect("the shipped model loads"),
        )
    }))
}

/// A server on its own runtime thread; stopped (gracefully) when dropped.
struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    fn start(config: ServerConfig) -> TestServer {
        let estimator = estimator();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
                bound.send(listener.local_addr().expect("local address")).expect("test waits");
                serve(listener, estimator, config, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        TestServer {
            addr: addr.recv().expect("the server binds"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    fn shutdown(mut self) -> Result<(), ServerError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("server thread"),
            None => Ok(()),
        }
    }

    fn post(&self, path: &str, body: Value) -> server_http::Response {
        post_json(self.addr, path, &body)
    }

    /// The value of an unlabelled metric.
    fn metric(&self, name: &str) -> f64 {
        let text = get(self.addr, "/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }

    /// Polls a metric until `ok` holds (bounded: five seconds).
    fn wait_for_metric(&self, name: &str, ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ok(self.metric(name)) {
            assert!(Instant::now() < deadline, "metric {name} never reached the expected value");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn config() -> ServerConfig {
    ServerConfig::default()
}

/// A config whose batches wait `wait` for company and whose cache is off, so every text reaches the queue.
fn slow_batches(wait: Duration) -> ServerConfig {
    ServerConfig {
        batching: Batching {
            max_wait: wait,
            ..Batching::default()
        },
        cache_capacity: 0,
        ..ServerConfig::default()
    }
}

/// Scores as the server rounds them (four decimals) differ from the library's by at most half a unit there,
/// plus batch-composition noise (1e-5).
const TOLERANCE: f64 = 6e-5;

fn assert_matches(result: &Value, expected: &emoarc::Intensities) {
    let got = result["intensities"].as_object().expect("intensities object");
    assert_eq!(got.len(), 40);
    for (category, value) in expected.iter() {
        let v = got[category.name()].as_f64().unwrap();
        assert!((v - f64::from(value)).abs() < TOLERANCE, "{category}: server {v}, library {value}");
    }
}

fn error_of(r: &server_http::Response) -> (u16, String, Option<String>) {
    let body = r.json();
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    (r.status, e["code"].as_str().unwrap().to_string(), e["field"].as_str().map(str::to_string))
}

const SAD_TO_BETTER: &str = r#"{"id": "c1", "turns": [
    {"role": "user", "text": "i failed my driving test again. i feel so stupid"},
    {"role": "assistant", "text": "That is a gutting thing to go through twice. What did the examiner mark you down on?"},
    {"role": "user", "text": "roundabouts. but ok, that actually makes sense, thanks"}]}"#;

fn sad_to_better() -> Value {
    serde_json::from_str(SAD_TO_BETTER).unwrap()
}

#[test]
fn score_returns_the_estimators_numbers_in_order() {
    let server = TestServer::start(config());
    let texts = ["I am absolutely furious", "Thank you so much, you saved my day", "what time is it"];
    let r = server.post("/v1/score", json!({"texts": texts, "top": 2}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    let results = body["results"].as_array().unwrap();
    let expected = estimator().estimate(&texts).unwrap();
    assert_eq!(results.len(), 3);
    for (result, want) in results.iter().zip(&expected) {
        assert_matches(result, want);
        let top = result["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0][0], want.top(1)[0].0.name());
        assert!(result["tokens"].as_u64().unwrap() > 2);
        assert_eq!(result["truncated"], false);
    }
    // The default top is 3; an empty list is an empty answer.
    let r = server.post("/v1/score", json!({"texts": ["so happy"]}));
    assert_eq!(r.json()["results"][0]["top"].as_array().unwrap().len(), 3);
    let r = server.post("/v1/score", json!({"texts": []}));
    assert_eq!((r.status, r.json()), (200, json!({"results": []})));
}

#[test]
fn reward_matches_the_library_computation() {
    let server = TestServer::start(config());
    let spec = "terminal=1,accommodation=0.5";
    let r = server.post("/v1/reward", json!({"conversations": [sad_to_better()], "reward": spec}));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let result = &body["results"][0];
    assert_eq!(result["id"], "c1");
    assert_eq!(result["arc"]["turns"], json!([0, 2]));
    assert_eq!(result["arc"]["wellbeing"].as_array().unwrap().len(), 2);
    assert!(result["arc"]["summary"]["end"].is_number());
    let terms: Vec<&str> = result["terms"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(terms, ["terminal", "accommodation"]);

    let conversation = Conversation::from_json_line(&SAD_TO_BETTER.replace('\n', " "), 1).unwrap();
    let trajectory = score_conversations(&estimator(), &[conversation], &ArcOptions::default()).unwrap().remove(0).unwrap();
    let mut config = RewardConfig::default();
    config.set_terms(spec).unwrap();
    let reward = config.build().unwrap();
    let want = reward.reward(&trajectory);
    let got = result["reward"].as_f64().unwrap();
    assert!((got - f64::from(want)).abs() < 1e-4, "server {got}, library {want}");
    let (_, terminal) = reward.terms(&trajectory)[0];
    assert!((result["terms"]["terminal"].as_f64().unwrap() - f64::from(terminal)).abs() < 1e-4);

    // Request options: another speaker, whole-turn reading, the server's default reward (terminal).
    let r = server.post(
        "/v1/reward",
        json!({"conversations": [{"messages": [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "hi"}]}],
               "speaker": "assistant", "reading": "whole"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["results"][0]["id"], "0", "a conversation without an id is named by its position");
    assert_eq!(body["results"][0]["arc"]["turns"], json!([0]));
    assert_eq!(body["results"][0]["terms"].as_object().unwrap().len(), 1);
}

#[test]
fn get_reward_reads_openrlhf_queries() {
    let server = TestServer::start(config());
    let chatml = "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\ni failed my driving test again. i feel so \
                  stupid<|im_end|>\n<|im_start|>assistant\nThat is a gutting thing to go through twice. What did the examiner \
                  mark you down on?<|im_end|>\n<|im_start|>user\nroundabouts. but ok, that actually makes sense, thanks<|im_end|>";
    let plain = "i am so sad today. I'm sorry to hear that. Want to talk about it?";
    let r = server.post(
        "/get_reward",
        json!({"query": [chatml, plain], "prompts": ["ignored for templated queries", "i am so sad today."], "labels": ["", ""]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let rewards = body["rewards"].as_array().unwrap();
    assert_eq!(rewards.len(), 2);
    assert_eq!(body["scores"], body["rewards"]);
    assert_eq!(body["extra_logs"]["terminal"].as_array().unwrap().len(), 2);
    // The templated query is the same conversation as SAD_TO_BETTER (plus a system turn): same reward.
    let direct = server.post("/v1/reward", json!({"conversations": [sad_to_better()]})).json();
    let want = direct["results"][0]["reward"].as_f64().unwrap();
    assert!((rewards[0].as_f64().unwrap() - want).abs() < 1e-6);
    // The plain query: the prompt is the user's turn, so the arc is that one turn.
    let user_only = server.post(
        "/v1/reward",
        json!({"conversations": [{"turns": [{"role": "user", "text": "i am so sad today."}]}]}),
    );
    let want = user_only.json()["results"][0]["reward"].as_f64().unwrap();
    assert!((rewards[1].as_f64().unwrap() - want).abs() < 1e-6);
    // A query without a user turn cannot be rewarded.
    let r = server.post("/get_reward", json!({"query": ["<|im_start|>assistant\nHello there<|im_end|>"]}));
    assert_eq!(error_of(&r), (422, "unprocessable".into(), Some("query[0]".into())));
}

#[test]
fn health_and_metrics_report_the_server() {
    let server = TestServer::start(config());
    let r = get(server.addr, "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["categories"], 40);
    let texts = json!({"texts": ["metrics please", "and another one"]});
    assert_eq!(server.post("/v1/score", texts.clone()).status, 200);
    assert_eq!(server.post("/v1/score", texts).status, 200);
    let r = get(server.addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    for needle in [
        "emoarc_requests_total{endpoint=\"/v1/score\",status=\"200\"} 2",
        "emoarc_requests_total{endpoint=\"/health\",status=\"200\"} 1",
        "emoarc_request_duration_seconds_count{endpoint=\"/v1/score\"} 2",
        "emoarc_batch_texts_count 1",
        "emoarc_cache_hits_total 2",
        "emoarc_cache_misses_total 2",
        "emoarc_queue_texts 0",
        "# TYPE emoarc_batch_requests histogram",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn the_cache_makes_resent_conversation_prefixes_free() {
    let server = TestServer::start(config());
    let mut turns = Vec::new();
    let lines = [("user", "my cat died this morning"), ("assistant", "I'm so sorry. How old was she?"), ("user", "fifteen. i keep expecting her at the door")];
    let mut encoded = Vec::new();
    for (role, text) in lines {
        turns.push(json!({"role": role, "text": text}));
        if role == "user" {
            let r = server.post("/v1/reward", json!({"conversations": [{"turns": turns}]}));
            assert_eq!(r.status, 200, "{}", r.text());
            encoded.push(server.metric("emoarc_encoded_texts_total"));
        }
    }
    // The second request re-sent the first turn: only the two new turns were encoded (two clauses each).
    assert_eq!(encoded, [1.0, 5.0]);
    assert!(server.metric("emoarc_cache_hits_total") >= 1.0);
}

#[test]
fn limits_and_bad_requests_get_clear_json_errors() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_body_bytes: 4096,
            max_items: 4,
            max_text_bytes: 100,
            max_turns: 6,
            ..Limits::default()
        },
        ..config()
    });
    let addr = server.addr;
    let check = |r: server_http::Response, status: u16, code: &str, field: Option<&str>| {
        assert_eq!(error_of(&r), (status, code.to_string(), field.map(str::to_string)), "{}", r.text());
    };
    let big = vec![b'x'; 5000];
    check(request(addr, "POST", "/v1/score", &[], &big).unwrap(), 413, "body_too_large", None);
    check(server.post("/v1/score", json!({"texts": ["a", "b", "c", "d", "e"]})), 422, "too_many_items", Some("texts"));
    check(server.post("/v1/score", json!({"texts": ["ok", "y".repeat(101)]})), 422, "text_too_long", Some("texts[1]"));
    check(server.post("/v1/score", json!({"texts": ["ok", "  "]})), 422, "unprocessable", Some("texts[1]"));
    check(request(addr, "POST", "/v1/score", &[], b"{\"texts\": [\"a\"").unwrap(), 400, "malformed_json", None);
    check(request(addr, "POST", "/v1/score", &[], b"{\"texts\": [\"\xff\"]}").unwrap(), 400, "malformed_json", None);
    check(server.post("/v1/score", json!({"texts": ["a", 2]})), 400, "invalid_field", Some("texts[1]"));
    check(server.post("/v1/score", json!({"text": ["a"]})), 400, "invalid_field", Some("text"));
    check(server.post("/v1/score", json!({"top": 3})), 400, "invalid_field", Some("texts"));
    check(server.post("/v1/score", json!({"texts": ["a"], "top": 41})), 400, "invalid_field", Some("top"));
    check(server.post("/v1/score", json!(["a"])), 400, "invalid_field", Some("body"));
    let c = sad_to_better();
    check(server.post("/v1/reward", json!({"conversations": [c, c, c]})), 422, "too_many_items", Some("turns (all conversations together)"));
    check(server.post("/v1/reward", json!({"conversations": [c], "reward": "joy"})), 422, "unprocessable", Some("reward"));
    check(server.post("/v1/reward", json!({"conversations": [c], "reading": "sideways"})), 422, "unprocessable", Some("reading"));
    check(server.post("/v1/reward", json!({"conversations": [c], "speaker": 7})), 400, "invalid_field", Some("speaker"));
    check(
        server.post("/v1/reward", json!({"conversations": [c, {"turns": [{"role": "user", "text": 5}]}]})),
        400,
        "invalid_field",
        Some("conversations[1].turns[0]"),
    );
    check(
        server.post("/v1/reward", json!({"conversations": [{"turns": [{"role": "bot", "text": "hi"}]}]})),
        422,
        "unprocessable",
        Some("conversations[0]"),
    );
    check(
        server.post("/v1/reward", json!({"conversations": [{"turns": [{"role": "user", "text": "z".repeat(101)}]}]})),
        422,
        "text_too_long",
        Some("conversations[0].turns[0]"),
    );
    check(server.post("/get_reward", json!({"query": ["a"], "prompts": ["a", "b"]})), 400, "invalid_field", Some("prompts"));
    check(server.post("/get_reward", json!({"query": "a"})), 400, "invalid_field", Some("query"));
    check(get(addr, "/v2/score"), 404, "not_found", None);
    check(get(addr, "/v1/score"), 405, "method_not_allowed", None);
    // Still serving afterwards.
    assert_eq!(server.post("/v1/score", json!({"texts": ["fine"]})).status, 200);
}

#[test]
fn overload_answers_503_with_retry_after_and_a_slow_request_504() {
    let server = TestServer::start(ServerConfig {
        batching: Batching {
            max_wait: Duration::from_millis(1500),
            queue_capacity: 2,
            ..Batching::default()
        },
        cache_capacity: 0,
        ..config()
    });
    let addr = server.addr;
    let waiting = std::thread::spawn(move || post_json(addr, "/v1/score", &json!({"texts": ["first in line", "second"]})));
    server.wait_for_metric("emoarc_queue_texts", |v| v == 2.0);
    let r = server.post("/v1/score", json!({"texts": ["no room"]}));
    assert_eq!(error_of(&r).0, 503);
    assert_eq!(error_of(&r).1, "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(waiting.join().unwrap().status, 200, "the queued request is still answered");

    // Too many requests in flight: refused the same way, while monitoring still answers.
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_in_flight: 1,
            ..Limits::default()
        },
        ..slow_batches(Duration::from_millis(1500))
    });
    let addr = server.addr;
    let waiting = std::thread::spawn(move || post_json(addr, "/v1/score", &json!({"texts": ["hold the line"]})));
    server.wait_for_metric("emoarc_queue_requests", |v| v == 1.0);
    let r = server.post("/v1/reward", json!({"conversations": [sad_to_better()]}));
    assert_eq!((r.status, error_of(&r).1.as_str(), r.header("retry-after")), (503, "overloaded", Some("1")));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("1 requests in flight"));
    assert_eq!(get(addr, "/health").status, 200);
    assert_eq!(waiting.join().unwrap().status, 200);

    let server = TestServer::start(ServerConfig {
        request_timeout: Duration::from_millis(300),
        ..slow_batches(Duration::from_secs(2))
    });
    let started = Instant::now();
    let r = server.post("/v1/score", json!({"texts": ["too slow"]}));
    assert_eq!(error_of(&r), (504, "timeout".into(), None));
    assert!(started.elapsed() < Duration::from_millis(1500));
    // The abandoned job is skipped, not encoded.
    server.wait_for_metric("emoarc_queue_texts", |v| v == 0.0);
    assert_eq!(server.metric("emoarc_encoded_texts_total"), 0.0);
}

#[test]
fn bearer_auth_guards_everything_but_health() {
    let server = TestServer::start(ServerConfig {
        api_key: Some(ApiKey::new("s3cret-token").unwrap()),
        ..config()
    });
    let body = br#"{"texts": ["hello"]}"#;
    let ask = |auth: &[(&str, &str)], path: &str| request(server.addr, "POST", path, auth, body).unwrap();
    let r = ask(&[], "/v1/score");
    assert_eq!(error_of(&r), (401, "unauthorized".into(), None));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(ask(&[("Authorization", "Bearer wrong")], "/v1/score").status, 401);
    assert_eq!(ask(&[("Authorization", "Bearer s3cret-token-and-more")], "/v1/score").status, 401);
    assert_eq!(ask(&[("Authorization", "Basic s3cret-token")], "/v1/score").status, 401);
    assert_eq!(ask(&[("Authorization", "Bearer s3cret-token")], "/v1/score").status, 200);
    assert_eq!(get(server.addr, "/health").status, 200);
    assert_eq!(get(server.addr, "/metrics").status, 401);
    assert_eq!(request(server.addr, "GET", "/metrics", &[("Authorization", "Bearer s3cret-token")], b"").unwrap().status, 200);
}

#[test]
fn the_cli_refuses_an_exposed_address_without_auth() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_emoarc"))
            .arg("serve")
            .args(args)
            .current_dir(common::root())
            .output()
            .unwrap()
    };
    let out = run(&["--host", "0.0.0.0", "--port", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0") && stderr.contains("--allow-unauthenticated"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("key");
    std::fs::write(&empty, "\n").unwrap();
    let out = run(&["--api-key-file", empty.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the file is empty"));
}

#[test]
fn sixty_four_concurrent_requests_each_get_their_own_results() {
    const CLIENTS: usize = 64;
    let bases = [
        "I am absolutely furious with them",
        "this is the best day of my life",
        "i'm scared of what the doctor will say",
        "meh, it was fine i guess",
        "thank you, that really helped",
        "why does nobody ever listen to me",
        "i miss her so much",
        "wow, i did not see that coming",
    ];
    let texts: Vec<[String; 2]> = (0..CLIENTS)
        .map(|i| [format!("{} (#{i})", bases[i % bases.len()]), format!("{} {i}", bases[(i * 3 + 1) % bases.len()])])
        .collect();
    let flat: Vec<&str> = texts.iter().flatten().map(String::as_str).collect();
    let expected = estimator().estimate(&flat).unwrap();
    let server = TestServer::start(slow_batches(Duration::from_millis(20)));
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = texts
        .iter()
        .cloned()
        .map(|pair| {
            let (addr, barrier) = (server.addr, Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                post_json(addr, "/v1/score", &json!({"texts": pair}))
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let r = handle.join().unwrap();
        assert_eq!(r.status, 200, "client {i}: {}", r.text());
        let body = r.json();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_matches(&results[0], &expected[2 * i]);
        assert_matches(&results[1], &expected[2 * i + 1]);
    }
    let batches = server.metric("emoarc_batch_texts_count");
    assert!(batches < CLIENTS as f64 / 2.0, "64 concurrent requests ran in {batches} batches: not coalesced");
}

#[test]
fn shutdown_finishes_every_request_in_flight() {
    const CLIENTS: usize = 16;
    // Batches wait long enough for all sixteen to be queued, however slowly the machine starts their threads.
    let server = TestServer::start(slow_batches(Duration::from_millis(1500)));
    let addr = server.addr;
    let texts: Vec<String> = (0..CLIENTS).map(|i| format!("request number {i} is waiting")).collect();
    let handles: Vec<_> = texts
        .iter()
        .cloned()
        .map(|t| std::thread::spawn(move || request(addr, "POST", "/v1/score", &[], json!({"texts": [t]}).to_string().as_bytes())))
        .collect();
    server.wait_for_metric("emoarc_queue_requests", |v| v == CLIENTS as f64);
    server.shutdown().expect("a clean shutdown");
    let expected = estimator().estimate(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    for (handle, want) in handles.into_iter().zip(&expected) {
        let r = handle.join().unwrap().expect("an answer, not a dropped connection");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_matches(&r.json()["results"][0], want);
    }
    assert!(std::net::TcpStream::connect(addr).is_err(), "no longer accepting");
}

#[test]
fn the_python_client_runs_against_a_live_server() {
    let python = std::process::Command::new("python3").arg("--version").output();
    if !python.is_ok_and(|o| o.status.success()) {
        eprintln!("python3 not found: skipping the Python client test");
        return;
    }
    let server = TestServer::start(ServerConfig {
        api_key: Some(ApiKey::new("client-token").unwrap()),
        ..config()
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "client-token\n").unwrap();
    let out = std::process::Command::new("python3")
        .arg(common::root().join("examples/python/reward_client.py"))
        .args(["--url", &format!("http://{}", server.addr), "--api-key-file", key.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let rewards = report["rewards"].as_array().unwrap();
    assert_eq!(rewards.len(), 2);
    // The rollout that helped scores above the one that only soothed (the demo's two conversations).
    assert!(rewards[0].as_f64().unwrap() > rewards[1].as_f64().unwrap(), "{report}");
    assert_eq!(report["openrlhf"].as_array().unwrap().len(), 2);
    assert_eq!(report["top"].as_array().unwrap().len(), 2);
}

/// A small deterministic generator (64-bit LCG), so a failing campaign request can be reproduced.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

const ENDPOINTS: [&str; 3] = ["/v1/score", "/v1/reward", "/get_reward"];

/// Bad requests of every kind, each a `(kind, path, body)`; none can be valid.
fn bad_requests(body_limit: usize) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut rng = Lcg(0x5eed);
    let mut out = Vec::new();
    let valid: [(&str, String); 3] = [
        ("/v1/score", json!({"texts": ["i am so happy", "leave me alone"], "top": 2}).to_string()),
        ("/v1/reward", json!({"conversations": [sad_to_better()], "reward": "terminal"}).to_string()),
        ("/get_reward", json!({"query": ["<|im_start|>user\nhello<|im_end|>"], "prompts": ["hello"]}).to_string()),
    ];
    // Truncated JSON: every proper prefix of a JSON object lacks its closing brace.
    for _ in 0..400 {
        let (path, body) = &valid[rng.below(3)];
        let cut = rng.below(body.len());
        out.push(("truncated", *path, body.as_bytes()[..cut].to_vec()));
    }
    // Wrong types and values, field by field.
    let values = [json!(null), json!(true), json!(-1), json!(1.5), json!("x"), json!([]), json!({}), json!([1]), json!([[]]), json!([null]), json!([{}]), json!(["  "])];
    // The few substitutions that make a valid request (an empty list, a default, a plain string).
    let valid_by_chance = [
        json!({"texts": []}),
        json!({"texts": ["ok"], "top": null}),
        json!({"conversations": []}),
        json!({"conversations": [{"turns": [{"role": "user", "text": "x"}]}]}),
        json!({"query": []}),
        json!({"query": ["x"]}),
        json!({"query": ["hi"], "prompts": ["x"]}),
    ];
    for v in &values {
        for (path, body) in [
            ("/v1/score", json!({"texts": v})),
            ("/v1/score", json!({"texts": ["ok"], "top": v})),
            ("/v1/score", json!({"texts": ["ok"], "extra": v})),
            ("/v1/reward", json!({"conversations": v})),
            ("/v1/reward", json!({"conversations": [v]})),
            ("/v1/reward", json!({"conversations": [{"turns": v}]})),
            ("/v1/reward", json!({"conversations": [{"turns": [v]}]})),
            ("/v1/reward", json!({"conversations": [{"turns": [{"role": v, "text": "hi"}]}]})),
            ("/v1/reward", json!({"conversations": [{"turns": [{"role": "user", "text": v}]}]})),
            ("/v1/reward", json!({"conversations": [{"turns": [{"role": "user", "text": "hi"}], "id": [v]}]})),
            ("/v1/reward", json!({"conversations": [sad_to_better()], "reward": [v]})),
            ("/v1/reward", json!({"conversations": [sad_to_better()], "speaker": [v]})),
            ("/get_reward", json!({"query": v})),
            ("/get_reward", json!({"query": [v]})),
            ("/get_reward", json!({"query": ["hi"], "prompts": [v]})),
            ("/get_reward", json!({"query": ["hi", "ho"], "prompts": [v]})),
        ] {
            if !valid_by_chance.contains(&body) {
                out.push(("wrong type", path, body.to_string().into_bytes()));
            }
        }
    }
    // Huge numbers, where counts, texts and options are expected.
    for number in ["1e400", "-1e400", "18446744073709551616", &"9".repeat(5000), "1e-400000", "123456789012345678901234567890"] {
        for (path, template) in [
            ("/v1/score", "{\"texts\": [\"ok\"], \"top\": N}"),
            ("/v1/score", "{\"texts\": [N]}"),
            ("/v1/score", "{\"texts\": N}"),
            ("/v1/reward", "{\"conversations\": [{\"id\": N}]}"),
            ("/get_reward", "{\"query\": [N]}"),
        ] {
            out.push(("huge number", path, template.replace('N', number).into_bytes()));
        }
    }
    // Deep nesting, inside and outside the fields, past and below serde_json's recursion limit.
    for depth in [2, 10, 100, 127, 128, 129, 500, 5_000, 50_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        for path in ENDPOINTS {
            out.push(("deep nesting", path, format!("{{\"texts\": {arrays}, \"conversations\": {arrays}, \"query\": {arrays}}}").into_bytes()));
            out.push(("deep nesting", path, objects.clone().into_bytes()));
            out.push(("deep nesting", path, arrays.clone().into_bytes()));
        }
    }
    // Invalid UTF-8 (a stray byte, an overlong form, a surrogate, a truncated sequence) inside strings and
    // keys, and escaped lone surrogates.
    let bad_bytes: [&[u8]; 6] = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80"];
    for bytes in bad_bytes {
        for (path, before, after) in [
            ("/v1/score", &b"{\"texts\": [\"ok "[..], &b"\"]}"[..]),
            ("/v1/score", b"{\"te", b"xts\": [\"ok\"]}"),
            ("/v1/reward", b"{\"conversations\": [{\"turns\": [{\"role\": \"user\", \"text\": \"", b"\"}]}]}"),
            ("/get_reward", b"{\"query\": [\"", b"\"]}"),
        ] {
            out.push(("invalid utf-8", path, [before, bytes, after].concat()));
        }
    }
    for escape in ["\\ud800", "\\udfff", "\\ud800\\u0041"] {
        out.push(("lone surrogate", "/v1/score", format!("{{\"texts\": [\"{escape}\"]}}").into_bytes()));
    }
    // Oversized bodies, valid JSON prefix and all.
    for i in 0..40 {
        let size = body_limit + 1 + i * 997 + rng.below(4096);
        let mut body = b"{\"texts\": [\"".to_vec();
        body.resize(size - 3, b'a');
        body.extend_from_slice(b"\"]}");
        out.push(("oversized", ENDPOINTS[i % 3], body));
    }
    // Not objects at all, and random bytes.
    for body in ["", " ", "null", "[]", "\"texts\"", "42", "true", "{}", "{\"texts\": [\"a\"]}{}", "{\"texts\": [\"a\"],}", "{'texts': ['a']}"] {
        for path in ENDPOINTS {
            out.push(("not an object", path, body.as_bytes().to_vec()));
        }
    }
    for _ in 0..300 {
        let len = 1 + rng.below(300);
        let body: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        out.push(("random bytes", ENDPOINTS[rng.below(3)], body));
    }
    out
}

#[test]
fn a_thousand_malformed_requests_all_get_4xx_and_the_server_stays_correct() {
    let body_limit = 64 << 10;
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_body_bytes: body_limit,
            ..Limits::default()
        },
        ..config()
    });
    let requests = bad_requests(body_limit);
    assert!(requests.len() >= 1000, "only {} requests", requests.len());
    let mut by_status = std::collections::BTreeMap::new();
    for (kind, path, body) in &requests {
        let r = request(server.addr, "POST", path, &[], body).unwrap_or_else(|e| panic!("{kind} to {path}: no answer: {e}"));
        assert!(
            (400..500).contains(&r.status),
            "{kind} to {path} got {}: {}\nbody: {:?}",
            r.status,
            r.text(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        error_of(&r);
        *by_status.entry(r.status).or_insert(0) += 1;
    }
    assert!(by_status.contains_key(&400) && by_status.contains_key(&413) && by_status.contains_key(&422), "{by_status:?}");
    // Alive and still right.
    assert_eq!(get(server.addr, "/health").status, 200);
    let text = "Thank you so much, you saved my day";
    let r = server.post("/v1/score", json!({"texts": [text]}));
    assert_eq!(r.status, 200);
    assert_matches(&r.json()["results"][0], &estimator().estimate(&[text]).unwrap()[0]);
    assert_eq!(server.metric("emoarc_encoded_texts_total"), 1.0, "no bad request reached the model");
}
