//! The quantized CPU path (`Precision::Int16`) against the f32 path on real text: the quality bar every faster
//! path must meet (cosine of pooled embeddings at least 0.99 for every utterance, intensities within 0.02),
//! batch invariance, and the portable kernel agreeing with the AVX-512 one.

mod common;

use emoarc::data::{Corpus, Split};
use emoarc::quantized::{Kernel, QuantizedEncoder};
use emoarc::{DeviceChoice, Estimator, ModelSource, Precision};
use std::sync::OnceLock;

fn quantized() -> &'static Estimator {
    static E: OnceLock<Estimator> = OnceLock::new();
    E.get_or_init(|| {
        Estimator::builder()
            .model(ModelSource::Dir(common::shipped_dir()))
            .device(DeviceChoice::Cpu)
            .precision(Precision::Int16)
            .build()
            .expect("the shipped model loads in int16")
    })
}

/// The corpus's test split plus the sample file: short and long, typos, emoji, neutral text.
fn texts() -> Vec<String> {
    let corpus = Corpus::load_dir(&common::root().join("data/corpus")).expect("data/corpus");
    let mut texts: Vec<String> = corpus.split(Split::Test).iter().map(|e| e.text.clone()).collect();
    let sample = std::fs::read_to_string(common::root().join("examples/utterances.txt")).unwrap();
    texts.extend(sample.lines().filter(|l| !l.trim().is_empty()).map(String::from));
    texts
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn int16_stays_within_the_quality_bar_of_f32_on_every_utterance() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert!(refs.len() > 400, "{} texts", refs.len());
    let (f32_path, int_path) = (common::estimator(), quantized());
    let (emb_a, emb_b) = (f32_path.embed(&refs).unwrap(), int_path.embed(&refs).unwrap());
    let (int_a, int_b) = (f32_path.estimate(&refs).unwrap(), int_path.estimate(&refs).unwrap());
    for (i, text) in refs.iter().enumerate() {
        let c = cosine(&emb_a[i], &emb_b[i]);
        assert!(c >= 0.99, "cosine {c:.5} for {text:?}");
        let d = int_a[i].max_abs_diff(&int_b[i]);
        assert!(d <= 0.02, "intensities differ by {d:.4} for {text:?}");
    }
    // Not trivially equal either: the integer path really computes differently.
    assert!(emb_a.iter().zip(&emb_b).any(|(a, b)| a != b));
}

#[test]
fn int16_results_do_not_depend_on_the_batch() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().take(120).map(String::as_str).collect();
    let e = quantized();
    let (together, scores) = (e.embed(&refs).unwrap(), e.estimate(&refs).unwrap());
    let mut reversed: Vec<&str> = refs.clone();
    reversed.reverse();
    let backwards = e.embed(&reversed).unwrap();
    for (i, text) in refs.iter().enumerate().step_by(7) {
        // The encoder is emoarc's own code: bit for bit the same vector in any batch, any order.
        assert_eq!(e.embed(&[*text]).unwrap()[0], together[i], "{text:?} alone vs in a batch");
        assert_eq!(backwards[refs.len() - 1 - i], together[i], "{text:?} in reversed order");
        // The head is a candle matmul, whose blocking depends on the batch size: equal to float rounding.
        let d = e.estimate(&[*text]).unwrap()[0].max_abs_diff(&scores[i]);
        assert!(d < 1e-5, "{text:?}: {d}");
    }
}

#[test]
fn portable_kernel_matches_the_fast_one_and_f32() {
    let e = common::estimator();
    let texts = texts();
    let refs: Vec<&str> = texts.iter().take(60).map(String::as_str).collect();
    let seqs: Vec<Vec<u32>> = refs.iter().map(|t| e.token_ids(t).unwrap()).collect();
    let seq_refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let dir = common::shipped_dir();
    let spec = e.spec();
    let head = &spec.heads[&spec.default_head];
    let mut weights = vec![dir.join(&spec.encoder.weights)];
    weights.extend(head.encoder_override.iter().map(|f| dir.join(f)));
    let load = |k: Kernel| {
        QuantizedEncoder::load(&dir.join(&spec.encoder.config), &weights, Some(head.encoder_layers), Some(k)).unwrap()
    };
    let portable = load(Kernel::Portable).embed(&seq_refs).unwrap();
    let reference = e.embed(&refs).unwrap();
    let h = portable.len() / refs.len();
    for (i, row) in portable.chunks_exact(h).enumerate() {
        let c = cosine(row, &reference[i]);
        assert!(c >= 0.99, "portable kernel: cosine {c:.5} for {:?}", refs[i]);
    }
    if Kernel::detect() == Kernel::Vnni {
        let fast = load(Kernel::Vnni).embed(&seq_refs).unwrap();
        // Same integers; only the f32 code around them is compiled differently (vector widths).
        let worst = fast.iter().zip(&portable).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "kernels differ by {worst}");
    }
}

#[test]
fn quantized_encoder_refuses_what_it_cannot_run() {
    let e = common::estimator();
    let dir = common::shipped_dir();
    let spec = e.spec();
    let weights = vec![dir.join(&spec.encoder.weights)];
    let enc = QuantizedEncoder::load(&dir.join(&spec.encoder.config), &weights, Some(2), None).unwrap();
    let too_long = vec![101u32; 600];
    let err = enc.embed(&[&too_long]).unwrap_err().to_string();
    assert!(err.contains("600 tokens"), "{err}");
    assert!(enc.embed(&[&[]]).is_err());
    let err = enc.embed(&[&[101, 999_999, 102]]).unwrap_err().to_string();
    assert!(err.contains("999999"), "{err}");
    let err = QuantizedEncoder::load(&dir.join(&spec.encoder.config), &weights, Some(9), None).err().unwrap();
    assert!(err.to_string().contains("encoder layers 9"), "{err}");
}

#[test]
fn unknown_precisions_are_refused_with_the_choices() {
    assert_eq!("int16".parse::<Precision>().unwrap(), Precision::Int16);
    let err = "int8".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("f32, f16, bf16 or int16"), "{err}");
}
