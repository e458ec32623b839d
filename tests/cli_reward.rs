//! `emoarc reward`, `arc` and `eval-arcs` end to end, as a user runs them: the output shape, bad conversations
//! with and without `--skip-bad`, atomic output, SVG plots and the pair report.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn emoarc(args: &[&str]) -> Output {
    common::emoarc_cpu(args)
}

/// The JSON records of a JSONL output.
fn records(jsonl: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(jsonl)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, lines: &[&str]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn reward_writes_one_record_per_conversation_with_arc_terms_and_guard() {
    let out = emoarc(&["reward", "examples/conversations.jsonl", "--reward", "terminal=1,accommodation=0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rs = records(&out.stdout);
    let ids: Vec<&str> = rs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["exam-helped", "exam-soothed", "short-check-in"]);
    for r in &rs {
        let wellbeing: Vec<f64> = r["arc"]["wellbeing"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let terminal = r["terms"]["terminal"].as_f64().unwrap();
        assert!((terminal - wellbeing.last().unwrap() / 100.0).abs() < 2e-4);
        let accommodation = r["terms"]["accommodation"].as_f64().unwrap();
        assert!((r["reward"].as_f64().unwrap() - (terminal + 0.5 * accommodation)).abs() < 2e-4);
        assert_eq!(r["arc"]["valence"].as_array().unwrap().len(), wellbeing.len());
        assert!(r["arc"]["summary"]["min_turn"].is_u64());
        assert!((r["accommodation"]["mean"].as_f64().unwrap() + accommodation).abs() < 2e-4);
    }
    // The cheerful replies to a user who feels stupid run further above them than the helpful ones.
    assert!(rs[1]["accommodation"]["mean"].as_f64() > rs[0]["accommodation"]["mean"].as_f64());
}

#[test]
fn bad_conversations_are_named_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "mixed.jsonl",
        &[
            r#"{"id": "good", "turns": [{"role": "user", "text": "i passed!"}]}"#,
            r#"{"id": "blank", "turns": [{"role": "user", "text": "hi"}, {"role": "assistant", "text": " "}]}"#,
            r#"{"id": "no-user", "messages": [{"role": "assistant", "content": "hello"}]}"#,
        ],
    );
    let target = dir.path().join("out.jsonl");
    std::fs::write(&target, "previous\n").unwrap();
    let out = emoarc(&["reward", &input, "-o", target.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("conversation \"blank\" (line 2), turn 1: empty or whitespace-only text"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "previous\n", "a failed run leaves the target alone");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left behind");

    let out = emoarc(&["reward", &input, "--skip-bad", "-o", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rs = records(&std::fs::read(&target).unwrap());
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["id"], "good");
    let err = stderr(&out);
    assert!(err.contains("no turn by speaker \"user\" (roles present: assistant)"), "{err}");
    assert!(err.contains("conversations: 1 scored, 2 skipped"), "{err}");

    // A different speaker makes the assistant-only conversation usable.
    let out = emoarc(&["arc", &input, "--skip-bad", "--speaker", "assistant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out.stdout).len(), 1);
}

#[test]
fn a_bad_reward_config_fails_before_any_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "reward.toml", &["[trend]", "windw = 3"]);
    let out = emoarc(&["reward", "examples/conversations.jsonl", "--config", &config]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("windw"), "{}", stderr(&out));
    let out = emoarc(&["reward", "examples/conversations.jsonl", "--reward", "happiness"]);
    assert!(stderr(&out).contains("unknown reward \"happiness\""), "{}", stderr(&out));
}

#[test]
fn arc_plots_every_conversation_and_eval_arcs_reports_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let plots = dir.path().join("plots");
    let out = emoarc(&["arc", "examples/conversations.jsonl", "--plot", plots.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out.stdout).len(), 3);
    for id in ["exam-helped", "exam-soothed", "short-check-in"] {
        let svg = std::fs::read_to_string(plots.join(format!("{id}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("well-being"), "{id}.svg");
        // Each turn's text is a tooltip: the user's on the arc's points, the assistant's on its shaded band.
        let titles = svg.matches("<title>").count();
        assert!(titles >= 3, "{id}.svg has {titles} titles");
        assert!(svg.contains("other speaker&apos;s turn"), "{id}.svg legend");
        // No needless decimals on the axes, and the well-being axis fits the data instead of 0-100.
        let labels: Vec<&str> = svg.split("<text").skip(1).filter_map(|t| t.split('>').nth(1)?.split('<').next()).map(str::trim).collect();
        assert!(labels.contains(&"0.5") && labels.contains(&"1"), "{id}.svg labels: {labels:?}");
        assert!(!labels.iter().any(|l| l.ends_with(".0") || l.ends_with(".00")), "{id}.svg has needless decimals: {labels:?}");
        assert!(svg.contains("50 neutral; axis "), "{id}.svg explains its well-being scale");
    }
    let helped = std::fs::read_to_string(plots.join("exam-helped.svg")).unwrap();
    assert!(helped.contains("<title>turn 1, assistant\nThat's a gutting"), "assistant text as a tooltip");
    assert!(helped.contains("<title>turn 4, user: well-being "), "user point tooltip");

    // The two exam conversations as a pair, in the evaluation data's format.
    let sample = std::fs::read_to_string(common::root().join("examples/conversations.jsonl")).unwrap();
    let mut lines: Vec<Value> = sample.lines().take(2).map(|l| serde_json::from_str(l).unwrap()).collect();
    for (line, outcome) in lines.iter_mut().zip(["better", "worse"]) {
        line["pair"] = "exam".into();
        line["outcome"] = outcome.into();
        line["failure"] = "falsely_reassured".into();
    }
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let data = write(dir.path(), "pairs.jsonl", &text.iter().map(String::as_str).collect::<Vec<_>>());
    let out = emoarc(&["eval-arcs", "--data", &data, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["report"]["pairs"], 1);
    let names: Vec<&str> = report["report"]["rewards"].as_array().unwrap().iter().map(|r| r["reward"].as_str().unwrap()).collect();
    assert_eq!(names, ["terminal", "delta", "discounted", "trend", "target"]);
    let guard = &report["report"]["guard"]["by_failure"]["falsely_reassured"];
    assert!(guard["worse"].as_f64() > guard["better"].as_f64());
    let table = emoarc(&["eval-arcs", "--data", &data]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("| terminal |") && table.contains("| worse higher | 1/1 |"), "{table}");
}

#[test]
fn conversation_files_with_a_byte_order_mark_read_and_utf16_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"id": "a", "turns": [{"role": "user", "text": "my exam went badly"}, {"role": "assistant", "text": "That sounds hard. What happened?"}, {"role": "user", "text": "ok it was not that bad, thanks"}]}"#;
    let plain = write(dir.path(), "plain.jsonl", &[line]);
    let marked = dir.path().join("marked.jsonl");
    std::fs::write(&marked, [b"\xEF\xBB\xBF".as_slice(), line.as_bytes(), b"\n"].concat()).unwrap();
    for command in ["arc", "reward"] {
        let want = emoarc(&[command, &plain]);
        assert!(want.status.success(), "{}", stderr(&want));
        let got = emoarc(&[command, marked.to_str().unwrap()]);
        assert!(got.status.success(), "{command}: {}", stderr(&got));
        assert!(stderr(&got).contains("starts with a UTF-8 byte-order mark"), "{}", stderr(&got));
        assert_eq!(records(&got.stdout), records(&want.stdout), "{command}");
    }
    let wide = dir.path().join("wide.jsonl");
    let units = std::iter::once(0xFEFFu16).chain(line.encode_utf16()).chain("\n".encode_utf16());
    std::fs::write(&wide, units.flat_map(u16::to_le_bytes).collect::<Vec<u8>>()).unwrap();
    let out = emoarc(&["arc", wide.to_str().unwrap(), "--skip-bad"]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(stderr(&out).contains("looks like UTF-16"), "{}", stderr(&out));
}
