//! `emoarc eval` and `eval-arcs` end to end on small invented fixtures (`tests/fixtures/eval/`: a corpus with
//! two ladders, intensity pairs, neutral lines, label maps, and tiny files in the public datasets' formats): the report has
//! one block per dataset, every metric has the model, comparison-head, length and TF-IDF columns, intervals
//! where promised; a missing dataset folder is a warning, a missing data file an error.

mod common;

use serde_json::Value;
use std::process::Output;

const DATA: &str = "tests/fixtures/eval/data";
const DATASETS: &str = "tests/fixtures/eval/datasets";

fn emoarc(args: &[&str]) -> Output {
    common::emoarc_cpu(args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn dataset<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no dataset {name}"))
}

fn metric<'a>(d: &'a Value, key: &str) -> &'a Value {
    d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == key)
        .unwrap_or_else(|| panic!("{}: no metric {key}", d["name"]))
}

/// The cell of a column in a metric row.
fn cell<'a>(m: &'a Value, column: &str) -> &'a Value {
    m["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == column)
        .unwrap_or_else(|| panic!("{}: no column {column}", m["key"]))
}

fn value(m: &Value, column: &str) -> Option<f64> {
    cell(m, column)["value"].as_f64()
}

const COLUMNS: [&str; 4] = ["model", "zero-shot", "length", "tf-idf"];

#[test]
fn eval_reports_every_dataset_with_baseline_columns() {
    let out = emoarc(&["eval", "--data", DATA, "--datasets", DATASETS, "--bootstrap", "100", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["model"].as_str().unwrap().contains("head"), "{}", doc["model"]);
    let report = &doc["report"];
    let columns: Vec<&str> = report["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(columns, COLUMNS);
    assert_eq!(report["bootstrap_resamples"], 100);
    assert_eq!(report["warnings"].as_array().unwrap().len(), 0, "{}", report["warnings"]);
    let names: Vec<&str> = report["datasets"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["own test", "exchange sets", "GoEmotions dev", "relabelled GoEmotions test", "EmoBank dev", "XED dev", "Empathic Reactions dev"]
    );
    // Every metric row of every dataset has a cell for every column.
    for d in report["datasets"].as_array().unwrap() {
        for m in d["metrics"].as_array().unwrap() {
            let cols: Vec<&str> = m["values"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
            assert_eq!(cols, COLUMNS, "{} {}", d["name"], m["key"]);
        }
    }

    // Own test: all the metrics, the model's headline numbers with intervals, baselines where they apply.
    let own = dataset(report, "own test");
    for key in [
        "auc", "ap", "f1", "spearman_present", "spearman_all", "pair_order", "slope_all", "slope_present", "mean_at_0",
        "mean_at_0.25", "mean_at_0.5", "mean_at_0.75", "mean_at_1", "neutral_fp",
    ] {
        metric(own, key);
    }
    for key in ["auc", "ap", "f1", "spearman_present", "pair_order"] {
        let m = metric(own, key);
        let v = value(m, "model").unwrap_or_else(|| panic!("{key} has a value"));
        let ci = cell(m, "model")["ci"].as_array().unwrap_or_else(|| panic!("{key} has an interval"));
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&v) && lo <= hi, "{key}: {v} [{lo}, {hi}]");
        assert!(cell(m, "length").get("ci").is_none(), "only the model column is bootstrapped");
        assert!(value(m, "length").is_some() && value(m, "tf-idf").is_some(), "{key} baselines");
    }
    // 2 of 40 categories (Anger, Fear) have >= 10 positives in the fixture's test split.
    assert!(metric(own, "auc")["detail"].as_str().unwrap().starts_with("2 of 40 categories"));
    // The fixture's stronger text is the longer one in exactly 2 of its 4 pairs.
    assert_eq!(value(metric(own, "pair_order"), "length"), Some(0.5));
    // Two test-split ladders of three Anger rungs (ladders.jsonl): 3 pairs each; the stronger rung is the longer
    // in one ladder and the shorter in the other, so length orders half. The model reads "furious" above
    // "annoyed" above a flat report in both.
    let ladder = metric(own, "ladder_order");
    assert_eq!(ladder["detail"], "6 pairs in 2 ladders");
    assert_eq!(value(ladder, "length"), Some(0.5));
    assert!(value(ladder, "model").unwrap() >= 5.0 / 6.0, "{ladder}");
    assert!(cell(ladder, "model")["ci"].is_array());
    // One test-split neighbour set (neighbours.jsonl, group `rnb-...`): the same wall told as fury and as fear.
    // Anger orders the furious line above the frightened one and Fear and Distress the other way: 3 pairs, of
    // which length (the furious line is the longer) orders one. Neighbour sets are not counted as ladders.
    let set = metric(own, "neighbour_order");
    assert_eq!(set["detail"], "3 pairs in 1 sets");
    assert!((value(set, "length").unwrap() - 1.0 / 3.0).abs() < 1e-9, "{set}");
    assert!(value(set, "model").unwrap() >= 2.0 / 3.0, "{set}");
    // One test-split closing set (closings.jsonl, group `rcs-...`): a vet visit paid for, and one given up on. It
    // is ordered by the well-being its labels give, not per category, so it makes one pair (and the ladders above
    // stay two).
    let closing = metric(own, "closing_order");
    assert_eq!(closing["detail"], "1 pairs in 1 sets");
    assert_eq!(value(closing, "model"), Some(1.0), "{closing}");
    // One test-split exchange set (exchanges/fixture.jsonl): the same polite line after a landlord-law answer and
    // after empty cheer, labelled as read after each, with a helped and a resigned closing. The model reads the
    // line after its reply; alone, or by length, the two readings tie, and a tie is not right.
    let ex = dataset(report, "exchange sets");
    let same = metric(ex, "context_pairs");
    assert_eq!(same["detail"], "1 pairs in 1 sets");
    assert_eq!(value(same, "model"), Some(1.0), "{same}");
    assert_eq!(value(metric(ex, "context_pairs_alone"), "model"), Some(0.0));
    assert_eq!(value(same, "length"), Some(0.0));
    assert_eq!(value(same, "tf-idf"), None);
    assert!(cell(same, "model")["ci"].is_array());
    // Length is no intensity: no calibration and no neutral rate for it; TF-IDF's ridge has both.
    for key in ["slope_all", "slope_present", "mean_at_1", "neutral_fp"] {
        assert_eq!(value(metric(own, key), "length"), None, "{key}");
        assert!(value(metric(own, key), "tf-idf").is_some(), "{key}");
        assert!(value(metric(own, key), "model").is_some(), "{key}");
    }
    // Calibration means are means of outputs in [0, 1]; the model scores neutral lines low.
    assert!((0.0..=1.0).contains(&value(metric(own, "mean_at_1"), "model").unwrap()));
    assert_eq!(own["per_category"].as_array().unwrap().len(), 40);

    // Relabelled GoEmotions comments (data/relabels: the fixture's 120 train comments, labelled on the 40
    // categories): their test split by id, read as the own test is, with no pairs and no neutral lines.
    let relabelled = dataset(report, "relabelled GoEmotions test");
    assert_eq!(relabelled["rows"], 17, "the ids relabel-tr0000.. that hash to test");
    assert!(relabelled["source"].as_str().unwrap().contains("relabels/goemotions-train.jsonl"));
    assert_eq!(relabelled["notes"][0], "17 test, 16 dev, 87 train texts");
    for key in ["auc", "ap", "f1", "spearman_present", "slope_all", "slope_present", "mean_at_0", "mean_at_1"] {
        metric(relabelled, key);
    }
    for key in ["pair_order", "neutral_fp"] {
        assert!(relabelled["metrics"].as_array().unwrap().iter().all(|m| m["key"] != key), "{key}");
    }
    // The model reads "absolutely furious" (Anger 1) above "makes my blood boil" (0.75) and the plain Anger
    // lines: its calibration slope over the test cells is positive, and so is length's absence.
    assert!(value(metric(relabelled, "slope_all"), "model").unwrap() > 0.0);
    assert_eq!(value(metric(relabelled, "slope_all"), "length"), None);

    // GoEmotions (fixture map: Anger, Impatience, Elation, Fear scored; Fear has 5 positives, left out).
    let ge = dataset(report, "GoEmotions dev");
    assert_eq!(ge["rows"], 50);
    let per: Vec<&Value> = ge["per_category"].as_array().unwrap().iter().collect();
    let cats: Vec<&str> = per.iter().map(|r| r["category"].as_str().unwrap()).collect();
    assert_eq!(cats, ["Elation", "Impatience and Irritability", "Fear", "Anger"]);
    let in_macro: Vec<bool> = per.iter().map(|r| r["in_macro"].as_bool().unwrap()).collect();
    assert_eq!(in_macro, [true, true, false, true]);
    // Impatience: positive on annoyance rows (10); anger-only rows are skipped (secondary), not negatives.
    assert_eq!((per[1]["positives"].as_u64(), per[1]["negatives"].as_u64()), (Some(10), Some(30)));
    assert!(metric(ge, "f1")["detail"].as_str().unwrap().contains("2-fold"));
    for key in ["auc", "ap", "f1"] {
        assert!(cell(metric(ge, key), "model")["ci"].is_array(), "{key}");
    }
    // The invented comments are separable by their words: TF-IDF fitted on the train file reads them.
    assert!(value(metric(ge, "auc"), "tf-idf").unwrap() > 0.9);

    // EmoBank: learned (the model's affect output, or none) and table readings, with baselines on both.
    let eb = dataset(report, "EmoBank dev");
    assert_eq!(eb["rows"], 20);
    for key in ["valence_learned", "valence_table", "arousal_learned", "arousal_table"] {
        let m = metric(eb, key);
        assert!(value(m, "length").is_some() && value(m, "tf-idf").is_some(), "{key}");
    }
    assert!(value(metric(eb, "valence_table"), "model").is_some());
    assert!(cell(metric(eb, "valence_table"), "model")["ci"].is_array());

    // XED: normalised lines; the tab-only neutral line is dropped.
    let xed = dataset(report, "XED dev");
    assert_eq!(xed["rows"], 24 + 12);
    assert!(xed["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("1 rows without text")));

    // Empathic Reactions: the mapped categories against the two ratings.
    let er = dataset(report, "Empathic Reactions dev");
    assert!(metric(er, "empathy")["metric"].as_str().unwrap().starts_with("Affection"));
    assert!(metric(er, "distress")["metric"].as_str().unwrap().starts_with("Distress"));
    assert!(value(metric(er, "distress"), "tf-idf").is_some());
}

#[test]
fn eval_prints_one_table_per_dataset() {
    let out = emoarc(&[
        "eval", "--data", DATA, "--datasets", DATASETS, "--bootstrap", "20", "--baseline", "none", "--per-category",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    for heading in [
        "== own test", "== GoEmotions dev", "== relabelled GoEmotions test", "== EmoBank dev", "== XED dev",
        "== Empathic Reactions dev",
    ] {
        assert_eq!(text.matches(heading).count(), 1, "{heading}\n{text}");
    }
    let header = text.lines().find(|l| l.starts_with("metric")).unwrap();
    assert!(header.contains("model [95% CI]") && header.contains("length") && header.contains("tf-idf"), "{header}");
    assert!(!header.contains("zero-shot"), "--baseline none drops the head column");
    let auc = text.lines().find(|l| l.starts_with("presence ROC-AUC")).unwrap();
    assert!(auc.contains('[') && auc.contains("2 of 40 categories"), "{auc}");
    assert!(text.contains("per category: ROC-AUC"), "{text}");
    assert!(stderr(&out).contains("eval took"), "{}", stderr(&out));
}

#[test]
fn missing_dataset_folders_are_warnings_and_missing_data_files_errors() {
    let missing = "tests/fixtures/eval/no-such-datasets";
    let out = emoarc(&[
        "eval", "--data", DATA, "--datasets", missing, "--bootstrap", "0", "--baseline", "none", "--no-tfidf", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for name in ["goemotions", "emobank", "xed", "empathic_reactions"] {
        assert!(err.contains(&format!("warning: {missing}/{name} not found")), "{name}: {err}");
    }
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &doc["report"];
    assert_eq!(report["datasets"].as_array().unwrap().len(), 2);
    assert_eq!(report["warnings"].as_array().unwrap().len(), 4);
    let columns: Vec<&str> = report["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(columns, ["model", "length"]);
    // Without resamples there are no intervals.
    assert!(cell(metric(&report["datasets"][0], "auc"), "model").get("ci").is_none());

    // A data file that is missing is an error naming it.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::copy_dir(&common::root().join(DATA), &data);
    common::copy_dir(&common::root().join(DATA).join("corpus"), &data.join("corpus"));
    std::fs::remove_file(data.join("neutral.txt")).unwrap();
    let out = emoarc(&[
        "eval", "--data", data.to_str().unwrap(), "--datasets", missing, "--no-tfidf", "--bootstrap", "0", "--baseline", "none",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("neutral.txt"), "{}", stderr(&out));
    // So is a label map, when its dataset is there.
    common::copy_dir(&common::root().join(DATA), &data);
    let out = emoarc(&[
        "eval", "--data", data.to_str().unwrap(), "--datasets", DATASETS, "--no-tfidf", "--bootstrap", "0", "--baseline", "none",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("label-maps/goemotions.tsv"), "{}", stderr(&out));
}

#[test]
fn relabelled_comments_that_do_not_join_are_errors_and_a_missing_file_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for sub in ["", "corpus", "exchanges", "label-maps", "relabels"] {
        common::copy_dir(&common::root().join(DATA).join(sub), &data.join(sub));
    }
    let relabels = data.join("relabels/goemotions-train.jsonl");
    let mut lines = std::fs::read_to_string(&relabels).unwrap();
    lines.push_str("{\"comment_id\": \"not-in-train\", \"labels\": {\"Anger\": 0.5}}\n");
    std::fs::write(&relabels, lines).unwrap();
    let args = |data: &str| {
        ["eval", "--data", data, "--datasets", DATASETS, "--no-tfidf", "--bootstrap", "0", "--baseline", "none", "--json"]
            .map(String::from)
    };
    let out = emoarc(&args(data.to_str().unwrap()).each_ref().map(String::as_str));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("goemotions-train.jsonl") && err.contains("\"not-in-train\" is not in the dataset"), "{err}");

    std::fs::remove_file(&relabels).unwrap();
    let out = emoarc(&args(data.to_str().unwrap()).each_ref().map(String::as_str));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("goemotions-train.jsonl not found: relabelled GoEmotions test skipped"), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["report"]["datasets"].as_array().unwrap().iter().all(|d| d["name"] != "relabelled GoEmotions test"));
}

#[test]
fn eval_arcs_prints_trivial_baselines_beside_the_rewards() {
    let data = "tests/fixtures/eval/conversation-pairs.jsonl";
    let out = emoarc(&["eval-arcs", "--data", data, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let baselines = doc["baselines"].as_array().unwrap();
    let rules: Vec<&str> = baselines.iter().map(|b| b["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        ["final user turn says \"thank\"", "more characters in non-user turns", "longer final user turn"]
    );
    // Pair 1: only the better one thanks; pair 2: both do (a tie).
    let thank = &baselines[0]["all"];
    assert_eq!((thank["right"].as_u64(), thank["wrong"].as_u64(), thank["ties"].as_u64()), (Some(1), Some(0), Some(1)));
    // Pair 1's worse reply is the longer one, pair 2's better reply is.
    let chars = &baselines[1]["all"];
    assert_eq!((chars["right"].as_u64(), chars["wrong"].as_u64()), (Some(1), Some(1)));
    assert_eq!(baselines[0]["by_failure"]["ignored"]["ties"], 1);

    let out = emoarc(&["eval-arcs", "--data", data]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| terminal |"), "{table}");
    assert!(table.contains("| baseline: final user turn says \"thank\" | 0.50 (1/2, 0 wrong, 1 ties) |"), "{table}");
    assert!(table.contains("| baseline: more characters in non-user turns | 0.50 (1/2, 1 wrong, 0 ties) |"), "{table}");

    // --misses lists the pairs that the JSON's per-pair rewards say `terminal` ranks wrong, with the last user
    // turns; a reward that is not evaluated is refused before the model loads.
    let wrong: Vec<&str> = doc["report"]["per_pair"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["rewards"]["terminal"][0].as_f64() <= p["rewards"]["terminal"][1].as_f64())
        .map(|p| p["pair"].as_str().unwrap())
        .collect();
    let out = emoarc(&["eval-arcs", "--data", data, "--misses"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains(&format!("pairs `terminal` does not rank right: {} of 2", wrong.len())), "{listed}");
    for pair in ["p1", "p2"] {
        assert_eq!(listed.contains(&format!("\n{pair} (")), wrong.contains(&pair), "{listed}");
    }
    if wrong.contains(&"p2") {
        assert!(listed.contains("worse  p2-worse: thanks i guess. i'm scared he won't make it"), "{listed}");
    }
    let out = emoarc(&["eval-arcs", "--data", data, "--misses", "warmth", "--model", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no reward named \"warmth\" is evaluated (these are: terminal, delta"), "{}", stderr(&out));
}
