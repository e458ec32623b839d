//! The int16 backend against the f32 reference on real text: the quality bar every faster path must meet
//! (cosine of pooled embeddings at least 0.99 for every utterance, intensities within 0.02), batch invariance,
//! and the portable kernel agreeing with the fast one. With `EMOARC_REQUIRE_FAST_KERNEL=1` (set it where the CPU
//! has AVX-512 VNNI) a CPU without the fast kernel fails instead of skipping that comparison.

mod common;

use emoarc::data::{Corpus, Split};
use emoarc::backend::int16::{Kernel, QuantizedEncoder};
use emoarc::model::EncoderConfig;
use emoarc::{Backend, DeviceChoice, Error, Estimator, ModelSource, Precision};
use std::sync::OnceLock;

fn quantized() -> &'static Estimator {
    static E: OnceLock<Estimator> = OnceLock::new();
    E.get_or_init(|| {
        Estimator::builder()
            .model(ModelSource::Dir(common::shipped_dir()))
            .backend(Backend::Int16)
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
    let (f32_path, int_path) = (common::reference(), quantized());
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
    let e = common::reference();
    let texts = texts();
    let refs: Vec<&str> = texts.iter().take(60).map(String::as_str).collect();
    let seqs: Vec<Vec<u32>> = refs.iter().map(|t| e.token_ids(t).unwrap()).collect();
    let seq_refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let dir = common::shipped_dir();
    let spec = e.spec();
    let head = &spec.heads[&spec.default_head];
    let mut weights = vec![dir.join(&spec.encoder.weights)];
    weights.extend(head.encoder_override.iter().map(|f| dir.join(f)));
    let config = EncoderConfig::read(&dir.join(&spec.encoder.config)).unwrap();
    let load = |k: Kernel| QuantizedEncoder::load(&config, &weights, Some(head.encoder_layers), Some(k)).unwrap();
    let portable = load(Kernel::portable()).embed(&seq_refs).unwrap();
    let reference = e.embed(&refs).unwrap();
    let h = portable.len() / refs.len();
    for (i, row) in portable.chunks_exact(h).enumerate() {
        let c = cosine(row, &reference[i]);
        assert!(c >= 0.99, "portable kernel: cosine {c:.5} for {:?}", refs[i]);
    }
    let fast_kernel = Kernel::detect();
    if std::env::var("EMOARC_REQUIRE_FAST_KERNEL").is_ok_and(|v| v == "1") {
        assert!(fast_kernel.is_fast(), "EMOARC_REQUIRE_FAST_KERNEL=1 but this CPU gets the {fast_kernel} kernel");
    }
    if fast_kernel.is_fast() {
        let fast = load(fast_kernel).embed(&seq_refs).unwrap();
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
    let config = EncoderConfig::read(&dir.join(&spec.encoder.config)).unwrap();
    let enc = QuantizedEncoder::load(&config, &weights, Some(2), None).unwrap();
    let too_long = vec![101u32; 600];
    let err = enc.embed(&[&too_long]).unwrap_err().to_string();
    assert!(err.contains("600 tokens"), "{err}");
    assert!(enc.embed(&[&[]]).is_err());
    let err = enc.embed(&[&[101, 999_999, 102]]).unwrap_err().to_string();
    assert!(err.contains("999999"), "{err}");
    let err = QuantizedEncoder::load(&config, &weights, Some(9), None).err().unwrap();
    assert!(err.to_string().contains("encoder layers 9"), "{err}");
}

#[test]
fn int16_on_a_gpu_is_refused_before_loading() {
    let err = Estimator::builder()
        .model(ModelSource::Dir(common::shipped_dir()))
        .device(DeviceChoice::Cuda(0))
        .precision(Precision::Int16)
        .build()
        .err()
        .unwrap();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("--device cpu"), "{err}");
}

#[test]
fn the_estimator_reports_the_backend_that_ran() {
    assert!(quantized().backend_name().starts_with("int16 ("), "{}", quantized().backend_name());
    assert_eq!(common::reference().backend_name(), "candle f32 on cpu");
}

#[test]
fn unknown_precisions_are_refused_with_the_choices() {
    assert_eq!("int16".parse::<Precision>().unwrap(), Precision::Int16);
    let err = "int8".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("auto, f32, f16, bf16 or int16"), "{err}");
}
