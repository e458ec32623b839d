//! How far a faster precision drifts from the f32 path on a file of utterances (one per line): the worst and
//! mean cosine between pooled embeddings, the largest intensity difference, and each path's utterances/s.
//!
//!   cargo run --release --example precision_gap -- FILE [PRECISION]   (default int16)

use emoarc::{DeviceChoice, Estimator, Precision};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = args.first().ok_or_else(|| anyhow::anyhow!("usage: precision_gap FILE [PRECISION]"))?;
    let precision: Precision = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(Precision::Int16);
    let text = std::fs::read_to_string(file)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let load = |p: Precision| Estimator::builder().device(DeviceChoice::Cpu).precision(p).build();
    let (reference, fast) = (load(Precision::F32)?, load(precision)?);
    let timed = |e: &Estimator| -> anyhow::Result<(Vec<Vec<f32>>, Vec<emoarc::Intensities>, f64)> {
        let t = Instant::now();
        let emb = e.embed(&lines)?;
        let int = e.estimate(&lines)?;
        Ok((emb, int, t.elapsed().as_secs_f64()))
    };
    let (emb_a, int_a, secs_a) = timed(&reference)?;
    let (emb_b, int_b, secs_b) = timed(&fast)?;
    let cosines: Vec<f64> = emb_a.iter().zip(&emb_b).map(|(a, b)| cosine(a, b)).collect();
    let (worst_at, worst) = cosines
        .iter()
        .enumerate()
        .fold((0, f64::MAX), |m, (i, &c)| if c < m.1 { (i, c) } else { m });
    let max_diff = int_a
        .iter()
        .zip(&int_b)
        .flat_map(|(a, b)| a.as_slice().iter().zip(b.as_slice()).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max);
    println!("utterances: {}", lines.len());
    println!("cosine to f32: min {worst:.5} (line {}), mean {:.5}", worst_at + 1, cosines.iter().sum::<f64>() / cosines.len() as f64);
    println!("largest intensity difference: {max_diff:.4}");
    println!("f32: {:.1} utt/s, {precision:?}: {:.1} utt/s (embed + estimate, {} passes each)", 2.0 * lines.len() as f64 / secs_a, 2.0 * lines.len() as f64 / secs_b, 2);
    Ok(())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
