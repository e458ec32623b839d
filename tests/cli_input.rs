//! `emoarc score` input handling as users meet it: byte order marks, UTF-16 and binary input, line ends, CSV,
//! JSON arrays, blank lines, bad paths, the text size limit and `--top`.

mod common;

use std::process::Output;

fn emoarc(args: &[&str], stdin: &[u8]) -> Output {
    let mut args = args.to_vec();
    args.extend(["--device", "cpu"]);
    common::run_emoarc(&common::root(), &args, stdin)
}

fn records(out: &Output) -> Vec<serde_json::Value> {
    common::json_lines(out)
}

fn ids(out: &Output) -> Vec<serde_json::Value> {
    records(out).into_iter().map(|r| r["id"].clone()).collect()
}

fn stderr(out: &Output) -> String {
    common::stderr_of(out)
}

/// `input` on standard input scores as `lines` lines of text, and nothing says it looks like `not_taken_for`.
fn assert_scored_as_text(input: &[u8], lines: usize, not_taken_for: &str) {
    let out = emoarc(&["score", "-"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out).len(), lines, "{}", String::from_utf8_lossy(input));
    assert!(!stderr(&out).contains(not_taken_for), "{}", stderr(&out));
}

#[test]
fn a_byte_order_mark_does_not_hide_jsonl() {
    let out = emoarc(&["score", "-"], b"\xEF\xBB\xBF{\"id\": \"a\", \"text\": \"I'm so happy today\"}\n{\"id\": \"b\", \"text\": \"so tired\"}\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&out), vec![serde_json::json!("a"), serde_json::json!("b")], "{}", stderr(&out));

    // From a file too, and on plain text the mark is not part of the first utterance.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bom.txt");
    std::fs::write(&path, b"\xEF\xBB\xBFThank you so much, you saved my day\n").unwrap();
    let out = emoarc(&["score", path.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let plain = emoarc(&["score", "-"], b"Thank you so much, you saved my day\n");
    assert_eq!(records(&out)[0]["intensities"], records(&plain)[0]["intensities"]);
    assert!(stderr(&out).contains("starts with a UTF-8 byte-order mark"), "the mark is noted: {}", stderr(&out));
}

/// `text` in UTF-16, little- or big-endian, with the byte-order mark or without.
fn utf16(text: &str, big_endian: bool, mark: bool) -> Vec<u8> {
    let units = mark.then_some(0xFEFFu16).into_iter().chain(text.encode_utf16());
    units.flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() }).collect()
}

#[test]
fn a_json_array_is_refused_with_advice_and_bracketed_text_is_not() {
    let pretty = b"[\n  {\"text\": \"I am so happy\"},\n  {\"text\": \"I am furious\"}\n]\n".as_slice();
    let one_line = b"[{\"text\": \"I am so happy\"}, {\"text\": \"I am furious\"}]\n".as_slice();
    let strings = b"[\"I am so happy\", \"I am furious\"]\n".as_slice();
    for input in [pretty, one_line, strings] {
        let out = emoarc(&["score", "-"], input);
        assert!(!out.status.success() && out.stdout.is_empty(), "{}", String::from_utf8_lossy(input));
        let err = stderr(&out);
        assert!(err.contains("looks like a JSON array") && err.contains("jq -c"), "{err}");
    }
    // One pretty-printed object is named as such, not as a malformed first line.
    let out = emoarc(&["score", "-"], b"{\n  \"text\": \"I am so happy\"\n}\n");
    assert!(!out.status.success() && stderr(&out).contains("pretty-printed JSON"), "{}", stderr(&out));
    // Asked for, each line is scored as text, with a warning.
    let out = emoarc(&["score", "-", "--input-format", "text"], pretty);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out).len(), 4);
    assert!(stderr(&out).contains("warning") && stderr(&out).contains("JSON array"), "{}", stderr(&out));
    // Text that starts with a bracket is text.
    assert_scored_as_text(b"[laughs] that's so funny\n[sigh] whatever\n", 2, "JSON array");
}

#[test]
fn lines_ended_by_carriage_returns_alone_are_lines() {
    let want = emoarc(&["score", "-"], b"I am so happy\nI am furious\nthanks a lot\n");
    for input in [b"I am so happy\rI am furious\rthanks a lot\r".as_slice(), b"I am so happy\r\nI am furious\r\nthanks a lot\r\n"] {
        let out = emoarc(&["score", "-"], input);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(records(&out), records(&want), "{input:?}");
    }
    let out = emoarc(&["score", "-"], b"I am so happy\rI am furious\r");
    assert!(stderr(&out).contains("carriage returns alone"), "{}", stderr(&out));
}

#[test]
fn utf16_and_binary_input_are_refused_not_scored_as_garbage() {
    let text = "I am so angry right now\nthanks, that helps\n";
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (utf16(text, false, true), "UTF-16 (it starts with a UTF-16 byte-order mark"),
        (utf16(text, true, true), "UTF-16 (it starts with a UTF-16 byte-order mark"),
        (utf16(text, false, false), "UTF-16 little-endian without a byte-order mark"),
        (utf16(text, true, false), "UTF-16 big-endian without a byte-order mark"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03compressed".to_vec(), "binary data"),
    ];
    for (i, (bytes, looks_like)) in cases.iter().enumerate() {
        // --skip-bad does not turn a wrong encoding into skipped lines: the file is refused as a whole.
        let out = emoarc(&["score", "-", "--skip-bad"], bytes);
        assert!(!out.status.success(), "case {i} was scored: {}", String::from_utf8_lossy(&out.stdout));
        assert!(out.stdout.is_empty(), "case {i}");
        let err = stderr(&out);
        assert!(err.contains("standard input looks like") && err.contains(looks_like), "case {i}: {err}");
        let path = tmp.path().join(format!("input-{i}.txt"));
        std::fs::write(&path, bytes).unwrap();
        let out = emoarc(&["score", path.to_str().unwrap()], b"");
        assert!(!out.status.success() && stderr(&out).contains(looks_like), "case {i}: {}", stderr(&out));
    }
    // Text with accents and emoji is UTF-8 and scores as usual.
    let out = emoarc(&["score", "-"], "caf\u{e9} au lait \u{1f621}\n\u{4f60}\u{597d}\n".as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out).len(), 2);
}

#[test]
fn csv_input_is_refused_with_advice_unless_text_is_asked_for() {
    let csv = b"id,text\n1,I am so happy\n2,\"so sad, really\"\n3,fine\n";
    let out = emoarc(&["score", "-"], csv);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("standard input looks like CSV") && err.contains("--input-format text"), "{err}");
    assert!(err.contains("convert"), "{err}");

    let tsv = b"text\tlabel\nI am so happy\tjoy\nso sad\tsadness\n";
    let out = emoarc(&["score", "-"], tsv);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--input-format text"), "{}", stderr(&out));

    // Asked for explicitly, every line (header included) is scored as text, with a warning.
    let out = emoarc(&["score", "-", "--input-format", "text"], csv);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out).len(), 4);
    assert!(stderr(&out).contains("warning") && stderr(&out).contains("CSV"), "{}", stderr(&out));
}

#[test]
fn sentences_with_commas_are_not_taken_for_csv() {
    let inputs: [&[u8]; 3] = [
        b"Well, I guess so\nYes, fine\nOh no, not again\n",
        b"Hi,there\nOk,bye\nSure,thing\n",
        b"text, he said, was all he had\nand then, quietly, he left\nwhy, though, would he\n",
    ];
    for input in inputs {
        assert_scored_as_text(input, 3, "CSV");
    }
}

#[test]
fn blank_lines_are_skipped_counted_and_keep_line_numbers() {
    let out = emoarc(&["score", "-"], b"first one\n\n\r\nsecond one\n\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&out), vec![serde_json::json!(1), serde_json::json!(4)]);
    assert!(stderr(&out).contains("scored 2 utterances") && stderr(&out).contains("3 blank"), "{}", stderr(&out));

    // JSONL too, and leading blank lines do not hide the format.
    let out = emoarc(&["score", "-"], b"\n{\"text\": \"so happy\"}\n  \t\r\n{\"text\": \"so sad\"}\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&out), vec![serde_json::json!(2), serde_json::json!(4)]);
    assert!(stderr(&out).contains("2 blank"), "{}", stderr(&out));
}

#[test]
fn input_path_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = emoarc(&["score", dir], b"");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(dir) && err.contains("is a directory"), "{err}");

    let missing = tmp.path().join("no-such-file.txt");
    let out = emoarc(&["score", missing.to_str().unwrap()], b"");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(missing.to_str().unwrap()) && err.contains("does not exist"), "{err}");
}

#[test]
fn max_text_bytes_limits_long_texts_and_errors_name_the_flag() {
    let input = b"short\nthis line is well over forty bytes, every one of them\n";
    // The binary does no size check of its own: the refusal at 40 bytes is the library's, so the flag reaches it.
    let out = emoarc(&["score", "-", "--on-long", "chunk", "--max-text-bytes", "40"], input);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("line 2:") && err.contains("--max-text-bytes"), "{err}");

    let out = emoarc(&["score", "-", "--on-long", "chunk", "--max-text-bytes", "40", "--skip-bad"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&out), vec![serde_json::json!(1)]);
    assert!(stderr(&out).contains("1 skipped"), "{}", stderr(&out));

    let out = emoarc(&["score", "-", "--on-long", "chunk", "--max-text-bytes", "1000"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out).len(), 2);
}

#[test]
fn top_over_40_is_capped_with_a_note() {
    let out = emoarc(&["score", "-", "--top", "100"], b"I'm thrilled\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(records(&out)[0]["top"].as_array().unwrap().len(), 40);
    let err = stderr(&out);
    assert_eq!(err.lines().filter(|l| l.contains("--top 100")).count(), 1, "{err}");
}

#[test]
fn an_interrupted_run_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("out.jsonl");
    // One line, and standard input left open: the run has decided the format, loaded the model and opened its
    // output, and waits for more lines when it is interrupted.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_emoarc"))
        .args(["score", "-", "-o", target.to_str().unwrap(), "--device", "cpu"])
        .current_dir(common::root())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Enough lines for format detection (which looks at the first few) to decide.
    std::io::Write::write_all(&mut stdin, "what a lovely day\n".repeat(12).as_bytes()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The temporary file appears once the output is opened.
    while std::fs::read_dir(tmp.path()).unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "no temporary output file appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
