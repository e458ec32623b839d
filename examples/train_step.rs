//! Times one training step of emoarc's candle fine-tuning (3 BERT layers forward and backward on a padded batch)
//! so it can be compared with `scripts/train_step.py`, the same step in PyTorch, on the same machine. This is the
//! measurement behind training in PyTorch (`scripts/train.py`) while inference stays in Rust.
//!
//! ```sh
//! cargo run --release --example train_step -- 32 32 20      # batch, tokens, steps
//! .venv-train/bin/python scripts/train_step.py 32 32 20
//! ```

use candle_core::{DType, Device, Tensor};
use emoarc::train::top_layers::TrainableLayer;
use std::time::Instant;

fn main() -> emoarc::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers: batch tokens steps")).collect();
    let (batch, tokens, steps) = match args.as_slice() {
        [b, t, s] => (*b, *t, *s),
        _ => (32, 32, 20),
    };
    let weights = vec![std::path::PathBuf::from("models/emoarc-minilm/encoder.safetensors")];
    let layers = (0..3)
        .map(|i| TrainableLayer::load(&weights, i, 12, 1e-12))
        .collect::<emoarc::Result<Vec<_>>>()?;
    let x = Tensor::randn(0f32, 1.0, (batch, tokens, 384), &Device::Cpu)?;
    let bias = Tensor::zeros((batch, 1, 1, tokens), DType::F32, &Device::Cpu)?;
    let run = || -> emoarc::Result<()> {
        let mut h = x.clone();
        for layer in &layers {
            h = layer.forward(&h, &bias)?;
        }
        let loss = h.sqr()?.mean_all()?;
        let _grads = loss.backward()?;
        Ok(())
    };
    run()?; // warm-up
    let start = Instant::now();
    for _ in 0..steps {
        run()?;
    }
    let per_step = start.elapsed().as_secs_f64() / steps as f64;
    println!("candle: {batch} x {tokens} tokens, 3 layers forward+backward: {:.1} ms/step", per_step * 1e3);
    Ok(())
}
