//! Roofline line for the encoder: FLOPs per utterance on a corpus (from real token counts), the achieved
//! GFLOP/s of `Estimator::estimate` on it, in f32 and in int16, against this machine's measured peaks: f32
//! gemm (candle's matmul on large square matrices) and the VNNI 16-bit dot-product instruction that the int16
//! path is built on (a register-only loop: the instruction's throughput, no memory), so the distance to the
//! physical limit is printed rather than guessed.
//!
//! Run: cargo bench --bench roofline -- [CORPUS.txt]   (default: the shared peer corpus, else data/corpus)

use candle_core::{Device, Tensor};
use emoarc::{DeviceChoice, Estimator, ModelSource, Precision};
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

/// Operations per second of `vpdpwssd` (32 multiply-adds, 64 operations each) on all cores, or None without VNNI.
#[cfg(target_arch = "x86_64")]
fn vnni_peak() -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn spin(iters: usize) -> i32 {
        let mut acc = [_mm512_setzero_si512(); 24];
        let (a, b) = (_mm512_set1_epi32(0x0001_0001), _mm512_set1_epi32(0x0002_0002));
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpwssd_epi32(*x, a, b);
            }
        }
        acc.iter().fold(0, |s, x| s ^ _mm512_reduce_add_epi32(*x))
    }
    if !is_x86_feature_detected!("avx512vnni") {
        return None;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let iters = 20_000_000;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            // SAFETY: the CPU has AVX-512 VNNI (checked above).
            s.spawn(|| std::hint::black_box(unsafe { spin(iters) }));
        }
    });
    Some((threads * iters * 24 * 64) as f64 / t.elapsed().as_secs_f64() / 1e9)
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_peak() -> Option<f64> {
    None
}

/// Seconds of one `estimate` call over all texts (after a warm-up).
fn time_estimate(estimator: &Estimator, refs: &[&str]) -> f64 {
    let _ = estimator.estimate(&refs[..refs.len().min(64)]).unwrap();
    let t = Instant::now();
    let _ = estimator.estimate(refs).unwrap();
    t.elapsed().as_secs_f64()
}

fn main() {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let texts = corpus(arg);
    let load = |precision| {
        Estimator::builder()
            .model(ModelSource::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/emoarc-minilm")))
            .device(DeviceChoice::Cpu)
            .precision(precision)
            .build()
            .expect("shipped model")
    };
    let estimator = load(Precision::F32);
    let (h, i, layers) = (384.0, 1536.0, estimator.model().encoder_layers() as f64);
    let max_len = estimator.max_length();
    let tokens: Vec<f64> = texts
        .iter()
        .map(|t| estimator.token_ids(t).unwrap().len().min(max_len) as f64)
        .collect();
    let flops: f64 = tokens.iter().map(|&l| layers * layer_flops(l, h, i)).sum();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    println!(
        "roofline: {} utterances, {:.1} tokens on average, {layers} encoder layers, {:.0} MFLOP per utterance \
         (encoder, no padding)",
        texts.len(),
        tokens.iter().sum::<f64>() / tokens.len() as f64,
        flops / texts.len() as f64 / 1e6
    );
    let dt = time_estimate(&estimator, &refs);
    let achieved = flops / dt / 1e9;
    let peak = [1024, 2048].into_iter().map(gemm_peak).fold(0.0, f64::max);
    println!(
        "roofline: f32   {:.1} utterances/s = {achieved:.1} GFLOP/s achieved; f32 gemm peak measured {peak:.1} GFLOP/s \
         ({:.0}% of peak)",
        texts.len() as f64 / dt,
        100.0 * achieved / peak
    );
    let int16 = load(Precision::Int16);
    let dt = time_estimate(&int16, &refs);
    let achieved = flops / dt / 1e9;
    match vnni_peak() {
        Some(peak) => println!(
            "roofline: int16 {:.1} utterances/s = {achieved:.1} GOP/s achieved; vpdpwssd peak measured {peak:.1} GOP/s \
             ({:.0}% of peak)",
            texts.len() as f64 / dt,
            100.0 * achieved / peak
        ),
        None => println!(
            "roofline: int16 {:.1} utterances/s = {achieved:.1} GOP/s achieved on {} (no AVX-512 VNNI here, so no \
             vpdpwssd peak to compare with)",
            texts.len() as f64 / dt,
            int16.backend_name()
        ),
    }
}
