//! Roofline line for the encoder: FLOPs per utterance on a corpus (from real token counts), the achieved
//! GFLOP/s of `Estimator::estimate` on it, and this machine's measured f32 gemm peak (candle's matmul on
//! large square matrices), so the distance to the physical limit is printed rather than guessed.
//!
//! Run: cargo bench --bench roofline -- [CORPUS.txt]   (default: the shared peer corpus, else data/corpus)

use candle_core::{Device, Tensor};
use emoarc::{DeviceChoice, Estimator, ModelSource};
use std::path::PathBuf;
use std::time::Instant;

/// Multiply-adds of one BERT layer on `l` tokens, counted as 2 FLOPs each: Q, K, V and output projections
/// (4·2·l·h²), attention scores and context (2·2·l²·h), and the feed-forward block (2·2·l·h·i).
fn layer_flops(l: f64, h: f64, i: f64) -> f64 {
    8.0 * l * h * h + 4.0 * l * l * h + 4.0 * l * h * i
}

fn corpus(arg: Option<String>) -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = PathBuf::from("/tmp/peers/corpus.txt");
    let path = arg.map(PathBuf::from).or_else(|| shared.is_file().then_some(shared));
    match path {
        Some(p) => std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect(),
        None => emoarc::data::Corpus::load_dir(&root.join("data/corpus"))
            .expect("data/corpus")
            .examples
            .into_iter()
            .map(|e| e.text)
            .collect(),
    }
}

/// Best-of-three GFLOP/s of an n×n by n×n f32 matmul.
fn gemm_peak(n: usize) -> f64 {
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).unwrap();
    let _ = a.matmul(&b).unwrap();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let c = a.matmul(&b).unwrap();
            let dt = t.elapsed().as_secs_f64();
            drop(c);
            2.0 * (n as f64).powi(3) / dt / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let texts = corpus(arg);
    let estimator = Estimator::builder()
        .model(ModelSource::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/emoarc-minilm")))
        .device(DeviceChoice::Cpu)
        .build()
        .expect("shipped model");
    let (h, i, layers) = (384.0, 1536.0, estimator.model().head_spec().encoder_layers as f64);
    let max_len = estimator.max_length();
    let tokens: Vec<f64> = texts
        .iter()
        .map(|t| estimator.token_ids(t).unwrap().len().min(max_len) as f64)
        .collect();
    let flops: f64 = tokens.iter().map(|&l| layers * layer_flops(l, h, i)).sum();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let _ = estimator.estimate(&refs[..refs.len().min(64)]).unwrap();
    let t = Instant::now();
    let _ = estimator.estimate(&refs).unwrap();
    let dt = t.elapsed().as_secs_f64();
    let achieved = flops / dt / 1e9;
    let peak = [1024, 2048].into_iter().map(gemm_peak).fold(0.0, f64::max);
    println!(
        "roofline: {} utterances, {:.1} tokens on average, {:.0} MFLOP per utterance (encoder, no padding)",
        texts.len(),
        tokens.iter().sum::<f64>() / tokens.len() as f64,
        flops / texts.len() as f64 / 1e6
    );
    println!(
        "roofline: {:.1} utterances/s = {achieved:.1} GFLOP/s achieved; f32 gemm peak measured {peak:.1} GFLOP/s \
         ({:.0}% of peak)",
        texts.len() as f64 / dt,
        100.0 * achieved / peak
    );
}
