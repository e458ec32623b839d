//! Utterances per second of the shipped model on CPU, in f32 and int16: batches of 1, 32 and 128 chat
//! utterances, and a mixed-length corpus (the authored training corpus, short lines and paragraphs together)
//! scored in one call so the estimator's own length bucketing is what is measured. The `tokenize` group times
//! tokenization alone on the same mixed corpus, one text at a time on one thread, to set it beside the encoder.
//!
//! Run: cargo bench --bench throughput

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use emoarc::{DeviceChoice, Estimator, ModelSource, Precision};
use std::path::PathBuf;

fn corpus() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("data/corpus exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().map(String::from).collect::<Vec<_>>())
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap()["text"].as_str().unwrap().to_string())
        .collect()
}

fn bench(c: &mut Criterion) {
    let texts = corpus();
    // Batches of typical one-line chat messages (the corpus's lines of 60-140 bytes).
    let typical: Vec<&str> = texts.iter().map(String::as_str).filter(|t| (60..140).contains(&t.len())).collect();
    let mixed: Vec<&str> = texts.iter().map(String::as_str).step_by(3).take(512).collect();
    for (name, precision) in [("f32", Precision::F32), ("int16", Precision::Int16)] {
        let estimator = Estimator::builder()
            .model(ModelSource::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/emoarc-minilm")))
            .device(DeviceChoice::Cpu)
            .precision(precision)
            .build()
            .expect("shipped model");
        let mut group = c.benchmark_group(format!("estimate-{name}"));
        group.sample_size(10);
        for n in [1usize, 32, 128] {
            let batch = &typical[..n];
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("batch", n), &batch, |b, batch| {
                b.iter(|| estimator.estimate(batch).unwrap())
            });
        }
        group.throughput(Throughput::Elements(mixed.len() as u64));
        group.bench_function("mixed_corpus_512", |b| b.iter(|| estimator.estimate(&mixed).unwrap()));
        group.finish();
        if precision == Precision::Int16 {
            let mut group = c.benchmark_group("tokenize");
            group.sample_size(10);
            group.throughput(Throughput::Elements(mixed.len() as u64));
            group.bench_function("mixed_corpus_512_one_thread", |b| {
                b.iter(|| mixed.iter().map(|t| estimator.model_token_ids(t).unwrap().len()).sum::<usize>())
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
