//! Roofline line for the encoder: FLOPs per utterance on a corpus (from real token counts), the achieved
//! GFLOP/s of `Estimator::estimate` on it, in f32, int16 and int8, against this machine's measured peaks: f32
//! gemm (candle's matmul on large square matrices) and the dot-product instructions that the integer paths are
//! built on (`vpdpwssd`, `vpdpbusd`, or AMX's `tdpbusd` where the products run on tiles: register-only loops,
//! the instructions' throughput with no memory), so the distance to the physical limit is printed rather than
//! guessed. Then the products alone: MiniLM's four linear layers on a batch of 2,048 tokens, in int16 and
//! int8, against the same peaks, and with AMX the int8 products on VNNI beside them.
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

/// Operations per second of `vpdpwssd` (32 multiply-adds, 64 operations each; `int8`: `vpdpbusd`, 64
/// multiply-adds) on all cores, or None without VNNI.
#[cfg(target_arch = "x86_64")]
fn vnni_peak(int8: bool) -> Option<f64> {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn spin(iters: usize, int8: bool) -> i32 {
        let mut acc = [_mm512_setzero_si512(); 24];
        let (a, b) = (_mm512_set1_epi32(0x0001_0001), _mm512_set1_epi32(0x0002_0002));
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = if int8 { _mm512_dpbusd_epi32(*x, a, b) } else { _mm512_dpwssd_epi32(*x, a, b) };
            }
        }
        acc.iter().fold(0, |s, x| s ^ _mm512_reduce_add_epi32(*x))
    }
    if !is_x86_feature_detected!("avx512vnni") {
        return None;
    }
    let iters = 20_000_000;
    // SAFETY: the CPU has AVX-512 VNNI (checked above).
    let (threads, seconds) = on_every_core(|| {
        std::hint::black_box(unsafe { spin(iters, int8) });
    });
    let ops_per_instruction = if int8 { 128 } else { 64 };
    Some((threads * iters * 24 * ops_per_instruction) as f64 / seconds / 1e9)
}

#[cfg(target_arch = "x86_64")]
/// Runs `work` once on each core at the same time: how many ran, and the seconds until all were done.
fn on_every_core(work: impl Fn() + Sync) -> (usize, f64) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(&work);
        }
    });
    (threads, t.elapsed().as_secs_f64())
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_peak(_int8: bool) -> Option<f64> {
    None
}

/// Operations per second of AMX's `tdpbusd` (16 x 16 x 64 multiply-adds) on all cores, register tiles only
/// (four independent sums, as the int8 kernel keeps), or None where emoarc does not run AMX.
#[cfg(target_arch = "x86_64")]
fn amx_peak() -> Option<f64> {
    use std::arch::asm;
    #[repr(C, align(64))]
    struct Config([u8; 64]);
    // SAFETY: only called where `Kernel::detect` found AMX-INT8 usable, which includes this process's
    // permission for the tile data (the kernel asks for it once per process, for every thread).
    unsafe fn spin(iters: usize) {
        let mut config = Config([0; 64]);
        config.0[0] = 1;
        for t in 0..6 {
            config.0[16 + 2 * t] = 64;
            config.0[48 + t] = 16;
        }
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
            asm!("tilezero tmm4", "tilezero tmm5", options(nostack, nomem));
            for _ in 0..iters {
                asm!(
                    "tdpbusd tmm0, tmm4, tmm5",
                    "tdpbusd tmm1, tmm4, tmm5",
                    "tdpbusd tmm2, tmm4, tmm5",
                    "tdpbusd tmm3, tmm4, tmm5",
                    options(nostack, nomem)
                );
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }
    if !emoarc::backend::int16::Kernel::detect().is_amx() {
        return None;
    }
    let iters = 2_000_000;
    // SAFETY: AMX is usable here (checked above).
    let (threads, seconds) = on_every_core(|| unsafe { spin(iters) });
    Some((threads * iters * 4 * 16 * 16 * 64 * 2) as f64 / seconds / 1e9)
}

#[cfg(not(target_arch = "x86_64"))]
fn amx_peak() -> Option<f64> {
    None
}

/// GOP/s of MiniLM's four products (QKV, attention output, up, down) on `rows` tokens, both threads sharing
/// the output tiles, best of five: `(int16, int8)`.
fn products(rows: usize) -> Products {
    use emoarc::backend::int16::{Int8Linear, Kernel, QuantLinear, QuantRows, Rows8};
    let kernel = Kernel::detect();
    let shapes = [(1152, 384), (384, 384), (1536, 384), (384, 1536)];
    let values = |n: usize, seed: u32| -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    let ops: f64 = shapes.iter().map(|&(o, i)| 2.0 * (rows * o * i) as f64).sum();
    let mut layers: Vec<_> = shapes
        .iter()
        .map(|&(o, i)| {
            let (w, b, x) = (values(o * i, 1), values(o, 2), values(rows * i, 3));
            let q16 = QuantLinear::new(&w, &b, o, i);
            let q8 = Int8Linear::new(&w, &b, o, i, &vec![1.0; i], &[]);
            let (mut r16, mut r8) = (QuantRows::default(), Rows8::default());
            q16.quantize(&x, &mut r16, kernel);
            q8.quantize(&x, &mut r8, kernel);
            (q16, q8, r16, r8, vec![0f32; rows * o])
        })
        .collect();
    let mut best = Products { int16: 0.0, int8: 0.0, int8_vnni: kernel.is_amx().then_some(0.0) };
    for _ in 0..5 {
        let t = Instant::now();
        for (q16, _, r16, _, out) in layers.iter_mut() {
            q16.forward(r16, out, kernel, true);
        }
        best.int16 = best.int16.max(ops / t.elapsed().as_secs_f64() / 1e9);
        let t = Instant::now();
        for (_, q8, _, r8, out) in layers.iter_mut() {
            q8.forward(r8, out, kernel, true);
        }
        best.int8 = best.int8.max(ops / t.elapsed().as_secs_f64() / 1e9);
        if let Some(vnni) = best.int8_vnni.as_mut() {
            let t = Instant::now();
            for (_, q8, _, r8, out) in layers.iter_mut() {
                q8.forward(r8, out, kernel.without_amx(), true);
            }
            *vnni = vnni.max(ops / t.elapsed().as_secs_f64() / 1e9);
        }
    }
    best
}

/// Best GOP/s of the products alone: int16, int8 on the kernel `auto` runs, and int8 on AVX-512 VNNI where
/// that kernel is AMX.
struct Products {
    int16: f64,
    int8: f64,
    int8_vnni: Option<f64>,
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
    // Where the products run on AMX tiles, their peak is `tdpbusd`'s (an int16 multiply-add takes four byte
    // ones there); the VNNI instructions' peaks are kept for the VNNI kernel's figure below.
    let (vnni16, vnni8, amx) = (vnni_peak(false), vnni_peak(true), amx_peak());
    let (peak16, peak8, instruction16, instruction8) = match amx {
        Some(amx) => (Some(amx / 4.0), Some(amx), "tdpbusd (4 byte products per int16 one)", "tdpbusd"),
        None => (vnni16, vnni8, "vpdpwssd", "vpdpbusd"),
    };
    for (name, precision, peak, instruction) in
        [("int16", Precision::Int16, peak16, instruction16), ("int8 ", Precision::Int8, peak8, instruction8)]
    {
        let Ok(estimator) = Estimator::builder()
            .model(ModelSource::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/emoarc-minilm")))
            .device(DeviceChoice::Cpu)
            .precision(precision)
            .build()
        else {
            println!("roofline: {name} does not run here (no AVX-512 VNNI)");
            continue;
        };
        let dt = time_estimate(&estimator, &refs);
        let achieved = flops / dt / 1e9;
        let rate = texts.len() as f64 / dt;
        match peak {
            Some(peak) => println!(
                "roofline: {name} {rate:.1} utterances/s = {achieved:.1} GOP/s achieved on {}; {instruction} peak \
                 measured {peak:.1} GOP/s ({:.0}% of peak)",
                estimator.backend_name(),
                100.0 * achieved / peak
            ),
            None => println!(
                "roofline: {name} {rate:.1} utterances/s = {achieved:.1} GOP/s achieved on {} (no AVX-512 VNNI here, \
                 so no {instruction} peak to compare with)",
                estimator.backend_name()
            ),
        }
    }
    let Products { int16, int8, int8_vnni } = products(2048);
    let share = |got: f64, peak: Option<f64>| peak.map_or(String::new(), |p| format!(" ({:.0}% of peak)", 100.0 * got / p));
    println!(
        "roofline: products alone (2,048 tokens, MiniLM's four shapes, both threads): int16 {int16:.1} GOP/s{}, \
         int8 {int8:.1} GOP/s{}",
        share(int16, peak16),
        share(int8, peak8)
    );
    if let Some(vnni) = int8_vnni {
        println!(
            "roofline: int8 products on AMX tiles {int8:.1} GOP/s, on AVX-512 VNNI {vnni:.1} GOP/s{} ({:.2}x)",
            share(vnni, vnni8),
            int8 / vnni
        );
    }
}
