//! The estimator on the real shipped model: agreement with an independent reference implementation, batch
//! invariance, input order, long-input policies, bad input, and the sanity a user would check first.

mod common;

use common::estimator;
use emoarc::{Category, DeviceChoice, Error, Estimator, InputProblem, OnLong};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    head: String,
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
    intensities: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = common::root().join("tests/fixtures/reference_embeddings.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn matches_the_independent_numpy_reference() {
    let r = reference();
    let e = Estimator::builder()
        .model(emoarc::ModelSource::Dir(common::shipped_dir()))
        .head(&r.head)
        .backend(common::REFERENCE) // the numpy reference is f32; int16 is held to its own bar (tests/quantized.rs)
        .build()
        .unwrap();
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    for (text, ids) in texts.iter().zip(&r.ids) {
        assert_eq!(&e.token_ids(text).unwrap(), ids, "tokenization of {text:?}");
    }
    let embeddings = e.embed(&texts).unwrap();
    let intensities = e.estimate(&texts).unwrap();
    for i in 0..texts.len() {
        let worst = embeddings[i]
            .iter()
            .zip(&r.embeddings[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "embedding of {:?} differs by {worst}", texts[i]);
        let worst = intensities[i]
            .as_slice()
            .iter()
            .zip(&r.intensities[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "intensities of {:?} differ by {worst}", texts[i]);
    }
}

fn mixed_texts() -> Vec<String> {
    let mut texts: Vec<String> = reference().texts;
    texts.push("so tired".into());
    texts.push("I can't believe they cancelled the concert, I've been waiting for months and now nothing. ".repeat(4));
    texts.push("What a lovely surprise, thank you!".into());
    texts.push("word ".repeat(300)); // longer than the maximum: truncated
    texts
}

#[test]
fn same_text_same_vector_whatever_the_batch() {
    let e = estimator();
    let texts = mixed_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let together = e.estimate(&refs).unwrap();
    // Alone, in reverse order, and with tiny batches: each text must come out the same.
    let reversed: Vec<&str> = refs.iter().rev().copied().collect();
    let rev = e.estimate(&reversed).unwrap();
    let tiny = Estimator::builder()
        .model(emoarc::ModelSource::Dir(common::shipped_dir()))
        .device(DeviceChoice::Cpu)
        .max_batch(2)
        .token_budget(256)
        .build()
        .unwrap();
    let small = tiny.estimate(&refs).unwrap();
    for (i, text) in refs.iter().enumerate() {
        let alone = e.estimate(&[text]).unwrap()[0];
        // The same bits: the encoder pools each sequence on its own and the head computes each row on its own.
        for (label, other) in [("alone", alone), ("reversed", rev[refs.len() - 1 - i]), ("small batches", small[i])] {
            assert_eq!(together[i], other, "text {i} differs when {label}");
        }
    }
}

#[test]
fn results_come_back_in_input_order() {
    let e = estimator();
    let texts = ["I'm terrified of the surgery tomorrow", "lol that cat video", "I'm so grateful for you"];
    let out = e.estimate(&texts).unwrap();
    assert_eq!(out[0].top(3).iter().filter(|(c, _)| *c == Category::Fear).count(), 1, "{:?}", out[0].top(3));
    assert_eq!(out[2].max().0, Category::ThankfulnessGratitude);
    // Permuting the inputs permutes the outputs.
    let permuted = e.estimate(&[texts[2], texts[0], texts[1]]).unwrap();
    assert_eq!([permuted[0], permuted[1], permuted[2]], [out[2], out[0], out[1]]);
}

#[test]
fn sanity_a_user_would_check() {
    let e = estimator();
    let out = e
        .estimate(&[
            "I am absolutely furious",
            "The train leaves from platform four.",
            "Thank you so much, you saved my day",
        ])
        .unwrap();
    assert!(out[0].top(3).iter().any(|(c, _)| *c == Category::Anger), "{:?}", out[0].top(3));
    assert!(out[1].as_slice().iter().all(|&v| v <= 0.5), "{:?}", out[1].top(3));
    assert_eq!(out[2].max().0, Category::ThankfulnessGratitude, "{:?}", out[2].top(3));
    for v in &out {
        assert!(v.as_slice().iter().all(|x| (0.0..=1.0).contains(x)));
    }
}

fn long_text() -> String {
    // A calm report followed, past the 256-token limit, by an angry passage. (A short outburst inside a long
    // window is diluted by mean pooling: windows see passages, not single words.)
    let calm = "The quarterly report lists the figures for each region and the notes for the appendix. ".repeat(18);
    let angry = "I am absolutely furious. They lied to us for months, they knew the whole time, and I hate every one \
                 of them for it. I am so angry I cannot think straight. "
        .repeat(3);
    format!("{calm}{angry}")
}

#[test]
fn long_inputs_truncate_refuse_or_chunk() {
    let text = long_text();
    let e = estimator();
    let truncated = e.estimate_detailed(&[&text]).unwrap().remove(0);
    assert!(truncated.truncated);
    assert!(truncated.tokens > 256);
    assert_eq!(truncated.windows, 1);

    let build = |policy| {
        Estimator::builder()
            .model(emoarc::ModelSource::Dir(common::shipped_dir()))
            .device(DeviceChoice::Cpu)
            .on_long(policy)
            .build()
            .unwrap()
    };
    let refusing = build(OnLong::Error);
    match refusing.estimate(&["short and fine", &text]) {
        Err(Error::BadInput { index: 1, reason: InputProblem::TooLong { tokens, max: 256 } }) => assert!(tokens > 256),
        other => panic!("expected TooLong for input 1, got {other:?}"),
    }
    let chunking = build(OnLong::Chunk);
    let chunked = chunking.estimate_detailed(&[&text]).unwrap().remove(0);
    assert!(chunked.windows >= 2);
    assert!(!chunked.truncated);
    // The first window is exactly the truncated input, and windows combine by maximum.
    for (c, v) in chunked.intensities.iter() {
        assert!(v + 1e-5 >= truncated.intensities[c], "{c}: chunked {v} < truncated {}", truncated.intensities[c]);
    }
    // The angry ending is only visible to chunking.
    assert!(chunked.intensities[Category::Anger] > truncated.intensities[Category::Anger] + 0.2);
}

#[test]
fn huge_inputs_are_bounded() {
    let huge = "a".repeat(5_000_000);
    // Truncation cuts before tokenizing, so this is cheap and succeeds.
    let r = estimator().estimate_detailed(&[&huge]).unwrap();
    assert!(r[0].truncated);
    let chunking = Estimator::builder()
        .model(emoarc::ModelSource::Dir(common::shipped_dir()))
        .device(DeviceChoice::Cpu)
        .on_long(OnLong::Chunk)
        .max_text_bytes(100_000)
        .build()
        .unwrap();
    assert!(matches!(
        chunking.estimate(&[&huge]),
        Err(Error::BadInput { index: 0, reason: InputProblem::TooLarge { .. } })
    ));
}

#[test]
fn empty_text_is_refused_by_position_and_others_survive() {
    let e = estimator();
    assert!(matches!(
        e.estimate(&["fine", "   \t"]),
        Err(Error::BadInput { index: 1, reason: InputProblem::Empty })
    ));
    let each = e.estimate_each(&["", "I'm so happy", "\n"]).unwrap();
    assert_eq!(each[0], Err(InputProblem::Empty));
    assert!(each[1].is_ok());
    assert_eq!(each[2], Err(InputProblem::Empty));
    assert!(e.estimate::<&str>(&[]).unwrap().is_empty());
}

#[test]
fn configuration_errors_are_typed() {
    let base = || Estimator::builder().model(emoarc::ModelSource::Dir(common::shipped_dir())).device(DeviceChoice::Cpu);
    assert!(matches!(base().token_budget(100).build(), Err(Error::Config(_))));
    assert!(matches!(base().max_batch(0).build(), Err(Error::Config(_))));
    assert!(matches!(base().max_length(4096).build(), Err(Error::Config(_))));
    #[cfg(not(feature = "cuda"))]
    assert!(matches!(base().device(DeviceChoice::Cuda(0)).build(), Err(Error::Device { .. })));
}

#[test]
fn model_token_ids_truncate_like_scoring_does() {
    let e = common::estimator();
    let short = "what a day";
    assert_eq!(e.model_token_ids(short).unwrap(), e.token_ids(short).unwrap());
    let long = "I waited all week for this and it fell through at the last minute. ".repeat(40);
    let full = e.token_ids(&long).unwrap();
    let cut = e.model_token_ids(&long).unwrap();
    assert!(full.len() > e.max_length());
    assert_eq!(cut.len(), e.max_length());
    assert_eq!((cut[0], *cut.last().unwrap()), (full[0], *full.last().unwrap()), "the [CLS] ... [SEP] frame is kept");
    assert_eq!(cut[1..cut.len() - 1], full[1..cut.len() - 1], "the content is cut at its end");
}
