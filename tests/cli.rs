//! `emoarc score` end to end, as a user runs it: formats, ids, order, bad lines, atomic output.

mod common;

use std::path::Path;
use std::process::Output;

fn emoarc(args: &[&str], stdin: &[u8]) -> Output {
    common::run_emoarc(&common::root(), args, stdin)
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    common::json_lines(out)
}

fn stderr(out: &Output) -> String {
    common::stderr_of(out)
}

#[test]
fn scores_the_sample_file_in_order_with_every_category() {
    let out = emoarc(&["score", "examples/utterances.txt", "--device", "cpu"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let records = lines(&out);
    let n = std::fs::read_to_string(common::root().join("examples/utterances.txt")).unwrap().lines().count();
    assert_eq!(records.len(), n);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["id"], i + 1, "ids are 1-based line numbers");
        let intensities = r["intensities"].as_object().unwrap();
        assert_eq!(intensities.len(), 40);
        let names: Vec<&str> = intensities.keys().map(String::as_str).collect();
        let canonical: Vec<&str> = emoarc::Category::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, canonical, "keys in canonical order");
        assert_eq!(r["top"].as_array().unwrap().len(), 3);
    }
    assert!(stderr(&out).contains(&format!("scored {n} utterances")));
    // The summary names the backend that ran: the default, auto, on this CPU.
    let backend = common::estimator().backend_name();
    assert!(stderr(&out).contains(&format!("[{backend}]")), "{}", stderr(&out));
    // Same numbers as the library.
    let text = "Thank you so much, you saved my day";
    let lib = common::estimator().estimate(&[text]).unwrap()[0];
    let cli = &records[2]["intensities"];
    for (c, v) in lib.iter() {
        assert!((cli[c.name()].as_f64().unwrap() - f64::from(v)).abs() < 1e-4);
    }
}

#[test]
fn jsonl_input_keeps_ids_and_csv_output_has_a_header() {
    let input = b"{\"id\": \"a\", \"text\": \"I'm so happy today\"}\n{\"text\": \"no id here\"}\n{\"id\": 7, \"text\": \"why, \\\"really\\\"?\"}\n";
    let out = emoarc(&["score", "-", "--device", "cpu"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = lines(&out);
    assert_eq!(records[0]["id"], "a");
    assert_eq!(records[1]["id"], 2);
    assert_eq!(records[2]["id"], 7);

    let input = b"{\"id\": \"x,y\", \"text\": \"so tired\"}\n";
    let out = emoarc(&["score", "-", "--format", "csv", "--device", "cpu"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].starts_with("id,Amusement,Elation,"));
    assert_eq!(rows[0].split(',').count(), 41);
    assert!(rows[1].starts_with("\"x,y\","));
    assert_eq!(rows[1].split(',').count(), 42); // the quoted id holds one comma
}

#[test]
fn bad_lines_are_named_by_line_number() {
    let cases: [(&[u8], &str); 5] = [
        (b"{\"text\": \"fine\"}\n{\"text\": \"oops\"\n", "line 2: malformed JSON"),
        (b"{\"text\": \"fine\"}\n{\"id\": 1}\n", "line 2: missing \"text\""),
        (b"{\"text\": \"fine\"}\n{\"text\": 5}\n", "line 2: \"text\" must be a string"),
        (b"{\"text\": \"fine\"}\n{\"text\": \"  \"}\n", "line 2: empty"),
        (b"fine\n\xff\xfe broken\n", "line 2: invalid UTF-8"),
    ];
    for (input, expected) in cases {
        let out = emoarc(&["score", "-", "--device", "cpu"], input);
        assert!(!out.status.success(), "should fail: {expected}");
        assert!(stderr(&out).contains(expected), "expected {expected:?} in {:?}", stderr(&out));
    }
}

#[test]
fn skip_bad_skips_and_fails_only_when_everything_is_bad() {
    let out = emoarc(&["score", "-", "--skip-bad", "--device", "cpu"], b"good one\n\xff\nanother good one\n \n");
    assert!(out.status.success(), "{}", stderr(&out));
    let records = lines(&out);
    assert_eq!(records.iter().map(|r| r["id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 3]);
    assert!(stderr(&out).contains("1 skipped") && stderr(&out).contains("1 blank"), "{}", stderr(&out));

    let out = emoarc(&["score", "-", "--skip-bad", "--device", "cpu"], b"\xff\n   \n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("every line was bad"));
}

#[test]
fn too_long_input_can_be_refused() {
    let long = format!("{}\n", "word ".repeat(400));
    let out = emoarc(&["score", "-", "--on-long", "error", "--device", "cpu"], format!("short\n{long}").as_bytes());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 2:") && stderr(&out).contains("exceed the maximum length"), "{}", stderr(&out));
    let out = emoarc(&["score", "-", "--device", "cpu"], long.as_bytes());
    assert!(out.status.success());
    assert!(stderr(&out).contains("1 truncated"));
}

#[test]
fn output_file_is_written_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("out.jsonl");
    let target_s = target.to_str().unwrap();
    let out = emoarc(&["score", "-", "-o", target_s, "--device", "cpu"], b"hello there\nI'm thrilled\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let good = std::fs::read_to_string(&target).unwrap();
    assert_eq!(good.lines().count(), 2);

    // A failing run leaves the earlier output untouched and no temporary file behind.
    let out = emoarc(&["score", "-", "-o", target_s, "--device", "cpu"], b"{\"text\": \"fine\"}\n{broken\n");
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), good);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn output_errors_name_the_folder_not_a_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir").join("out.jsonl");
    let out = emoarc(&["score", "-", "-o", missing.to_str().unwrap(), "--device", "cpu"], b"hello\n");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("output directory") && err.contains("no-such-dir") && !err.contains(".out.jsonl."), "{err}");
    let out = emoarc(&["score", "-", "-o", tmp.path().to_str().unwrap(), "--device", "cpu"], b"hello\n");
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

#[test]
fn explicit_precision_picks_the_backend() {
    let out = emoarc(&["score", "-", "--precision", "f32", "--device", "cpu"], b"hello there\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("[candle f32 on cpu]"), "{}", stderr(&out));
    let out = emoarc(&["score", "-", "--precision", "int16", "--device", "cuda"], b"hello there\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--device cpu"), "{}", stderr(&out));
}

#[test]
fn model_errors_are_clear() {
    let out = emoarc(&["score", "-", "--model", "no/such/model"], b"hi\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no/such/model"), "{}", stderr(&out));
    let out = emoarc(&["score", "-", "--model", "hf:bad"], b"hi\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("hf:ORG/REPO"), "{}", stderr(&out));
    assert!(!Path::new("no").exists());
}

/// Runs the binary in `dir` (not the checkout) with `stdin`.
fn emoarc_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    common::run_emoarc(dir, args, stdin)
}

#[test]
fn works_outside_the_checkout_and_passes_over_an_incomplete_model_folder() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty ./models/emoarc-minilm is not a model: the checkout's is used instead.
    std::fs::create_dir_all(tmp.path().join("models/emoarc-minilm")).unwrap();
    let out = emoarc_in(tmp.path(), &["score", "-", "--device", "cpu"], b"what a lovely day\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&out).len(), 1);
    // The data commands find the checkout's data too.
    let out = emoarc_in(tmp.path(), &["data", "check"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    // An explicit model that is not there is an error naming it, with no fallback.
    let out = emoarc_in(tmp.path(), &["score", "-", "--model", "models/emoarc-minilm"], b"hi\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("models/emoarc-minilm"), "{}", stderr(&out));
}

#[test]
fn emoarc_amx_0_turns_the_tiles_off_and_changes_no_score() {
    // Where the CPU has AMX, the default run's products go on tiles and `EMOARC_AMX=0` keeps them on VNNI; the
    // two compute the same integers, so the scores must be the same bytes. Elsewhere both runs are VNNI (or
    // the fallback kernels) and must agree all the more.
    let run = |amx: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_emoarc"));
        command.args(["score", "examples/utterances.txt", "--device", "cpu"]).current_dir(common::root());
        command.env_remove("EMOARC_MODEL").env_remove("EMOARC_AMX");
        if let Some(value) = amx {
            command.env("EMOARC_AMX", value);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    let (default, off) = (run(None), run(Some("0")));
    assert_eq!(default.stdout, off.stdout, "scores with and without AMX");
    assert!(!stderr(&off).contains("+amx"), "{}", stderr(&off));
    let amx = emoarc::backend::int16::Kernel::detect().is_amx();
    assert_eq!(stderr(&default).contains("avx512-vnni+amx"), amx, "{}", stderr(&default));
}
