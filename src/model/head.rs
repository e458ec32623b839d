//! The head: the small network from a pooled utterance vector to 40 intensities in `[0, 1]` (and, for heads
//! that learned it, valence and arousal), plus, for lexical heads, the logits of a [`Lexicon`] over the
//! utterance's tokens. It runs in f32 on the CPU whatever backend ran the encoder.
//!
//! Inference ([`Head::forward_all`]) computes each row's matrix products on their own, in plain Rust with one
//! fixed order of additions, so a text's intensities are the same bits whichever texts share its batch. Why:
//! candle's matrix product picks its kernel and blocking by the batch's shape, so the same text scored alone and
//! in a batch came out a few units in the last place apart (measured: 3e-7 on an output of 0.82), and one
//! value of 400,000 in the Python Ray test printed one unit apart at four decimals. Training
//! ([`Head::logits`]) keeps candle's product, which carries gradients.

use super::lexical::Lexicon;
use super::spec::{Activation, HeadSpec};
use candle_core::{Layout, Module, Storage, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use rayon::prelude::*;

/// The head network (see [`HeadSpec`]).
#[derive(Debug, Clone)]
pub struct Head {
    layers: Vec<Linear>,
    activation: Activation,
    normalize: bool,
    /// Valence and arousal from the last hidden layer's activations (see [`HeadSpec::affect`]).
    affect: Option<Linear>,
    /// Logits from the tokens themselves, added to the network's (see [`HeadSpec::lexical`]).
    lexical: Option<Lexicon>,
}

/// What the head gives for a batch: intensities `[b, 40]` in `[0, 1]` and, when the head has learned affect,
/// `[b, 2]` valence and arousal, each in `[0, 1]` (valence 0.5 is neutral).
pub struct HeadOutput {
    /// `[batch, 40]` f32, each in `[0, 1]`, columns in canonical category order.
    pub intensities: Tensor,
    /// `[batch, 2]` f32: column 0 valence, column 1 arousal, each in `[0, 1]`; `None` when the head has no
    /// learned affect.
    pub affect: Option<Tensor>,
}

impl Head {
    /// Loads the head's layers; `vb` must hold `layers.{i}.weight` and `layers.{i}.bias` (and `affect.*`,
    /// `lexical.*` when the spec says the head has them).
    pub fn load(vb: VarBuilder, spec: &HeadSpec) -> candle_core::Result<Self> {
        let widths: Vec<usize> = std::iter::once(spec.inputs)
            .chain(spec.hidden.iter().copied())
            .chain(std::iter::once(spec.outputs))
            .collect();
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let trunk_width = widths[widths.len() - 2];
        let affect = if spec.affect {
            Some(candle_nn::linear(trunk_width, 2, vb.pp("affect"))?)
        } else {
            None
        };
        let lexical = if spec.lexical {
            Some(Lexicon::load(&vb, spec.outputs)?)
        } else {
            None
        };
        Ok(Head {
            layers,
            activation: spec.activation,
            normalize: spec.normalize,
            affect,
            lexical,
        })
    }

    /// Builds a head from layers already in memory (training and the zero-shot fit use this).
    pub fn from_layers(layers: Vec<Linear>, activation: Activation, normalize: bool) -> Self {
        Head {
            layers,
            activation,
            normalize,
            affect: None,
            lexical: None,
        }
    }

    /// The activations the last layer reads: the pooled vector (normalised if so specified) through every
    /// hidden layer, each applied by `apply` (candle's product for training, [`linear_rows`] for inference).
    fn trunk(&self, pooled: &Tensor, apply: LinearFn) -> candle_core::Result<Tensor> {
        let mut xs = if self.normalize {
            l2_normalize(pooled)?
        } else {
            pooled.clone()
        };
        for layer in &self.layers[..self.layers.len() - 1] {
            xs = apply(&xs, layer)?;
            xs = match self.activation {
                Activation::Gelu => xs.gelu_erf()?,
                Activation::Relu => xs.relu()?,
            };
        }
        Ok(xs)
    }

    /// Pre-sigmoid scores, `[batch, 40]`, from pooled vectors alone. A lexical head's scores also need the
    /// tokens, so it refuses here rather than give the network's part as if it were the whole
    /// ([`forward_all`](Self::forward_all) takes the tokens).
    pub fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        if self.lexical.is_some() {
            candle_core::bail!("this head is lexical: its scores need the tokens (Head::forward_all)");
        }
        self.layers[self.layers.len() - 1].forward(&self.trunk(pooled, |xs, layer| layer.forward(xs))?)
    }

    /// Intensities in `[0, 1]`, `[batch, 40]`, from pooled vectors alone (see [`logits`](Self::logits)).
    pub fn forward(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::sigmoid(&self.logits(pooled)?)
    }

    /// Intensities and, when the head has them, learned valence and arousal, from one pass of the trunk.
    /// `tokens` are the token ids of each pooled row's text (read only by a lexical head), `None` for a text read
    /// in context, which a lexicon leaves to the network (see [`crate::model::lexical`]). Each row's outputs
    /// depend on that row alone, to the bit (see the module doc).
    pub fn forward_all(&self, pooled: &Tensor, tokens: &[Option<&[u32]>]) -> candle_core::Result<HeadOutput> {
        let trunk = self.trunk(pooled, linear_rows)?;
        let mut logits = linear_rows(&trunk, &self.layers[self.layers.len() - 1])?;
        if let Some(lexicon) = &self.lexical {
            let rows = pooled.dim(0)?;
            if tokens.len() != rows {
                candle_core::bail!("{rows} pooled rows but {} token sequences", tokens.len());
            }
            let lexical = Tensor::from_vec(lexicon.logits(tokens), logits.shape(), logits.device())?;
            logits = (logits + lexical)?;
        }
        let affect = match &self.affect {
            Some(linear) => Some(candle_nn::ops::sigmoid(&linear_rows(&trunk, linear)?)?),
            None => None,
        };
        Ok(HeadOutput {
            intensities: candle_nn::ops::sigmoid(&logits)?,
            affect,
        })
    }

    /// Whether the head predicts valence and arousal itself.
    pub fn has_affect(&self) -> bool {
        self.affect.is_some()
    }
}

/// How the trunk applies a layer to a batch.
type LinearFn = fn(&Tensor, &Linear) -> candle_core::Result<Tensor>;

/// `xs · Wᵀ + b` for a `[rows, inputs]` batch, each row computed on its own by [`dot`], so a row's result does not
/// depend on the other rows or on how many there are. The weights are read in place from their tensors, not
/// copied or cached: a training head's weights change in place between calls.
fn linear_rows(xs: &Tensor, layer: &Linear) -> candle_core::Result<Tensor> {
    let (rows, inputs) = xs.dims2()?;
    let (outputs, width) = layer.weight().dims2()?;
    if width != inputs {
        candle_core::bail!("layer reads {width} inputs but the batch has {inputs} columns");
    }
    if inputs == 0 || outputs == 0 {
        candle_core::bail!("layer of {outputs} x {inputs}: a head layer needs inputs and outputs");
    }
    let (xs, weight) = (xs.contiguous()?, layer.weight().contiguous()?);
    let bias = layer.bias().map(Tensor::contiguous).transpose()?;
    let (x_storage, x_layout) = xs.storage_and_layout();
    let (w_storage, w_layout) = weight.storage_and_layout();
    let b_storage = bias.as_ref().map(|b| b.storage_and_layout());
    let (x, w) = (cpu_f32(&x_storage, x_layout)?, cpu_f32(&w_storage, w_layout)?);
    let b = b_storage.as_ref().map(|(storage, layout)| cpu_f32(storage, layout)).transpose()?;
    let mut out = vec![0.0f32; rows * outputs];
    out.par_chunks_mut(outputs).zip(x.par_chunks(inputs)).for_each(|(row, x)| {
        for (j, (o, w)) in row.iter_mut().zip(w.chunks_exact(inputs)).enumerate() {
            *o = dot(x, w) + b.map_or(0.0, |b| b[j]);
        }
    });
    Tensor::from_vec(out, (rows, outputs), xs.device())
}

/// The elements of a contiguous f32 tensor on the CPU, borrowed from its storage.
fn cpu_f32<'a>(storage: &'a Storage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let Storage::Cpu(cpu) = storage else {
        candle_core::bail!("the head runs on the CPU, but a tensor is on {:?}", storage.device().location())
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("a head tensor is not contiguous".into()))?;
    Ok(&cpu.as_slice::<f32>()?[start..end])
}

/// A dot product with one fixed order of additions: sixteen running sums over the aligned part (which the
/// compiler keeps in vector registers), folded pairwise, then the tail.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    const LANES: usize = 16;
    let mut sums = [0.0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (x, y) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for i in 0..LANES {
            sums[i] += x[i] * y[i];
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            sums[i] += sums[i + width];
        }
    }
    sums[0] + a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum::<f32>()
}

/// Divides each row by its L2 norm (with a floor, so a zero row stays zero instead of NaN).
pub fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn layer(outputs: usize, inputs: usize, seed: f32) -> Linear {
        // Deterministic, irregular values: no two weights alike, signs mixed.
        let w: Vec<f32> = (0..outputs * inputs).map(|i| (i as f32 * 0.7548 + seed).sin() * 0.3).collect();
        let b: Vec<f32> = (0..outputs).map(|i| (i as f32 * 1.31 + seed).cos() * 0.1).collect();
        Linear::new(
            Tensor::from_vec(w, (outputs, inputs), &Device::Cpu).unwrap(),
            Some(Tensor::from_vec(b, outputs, &Device::Cpu).unwrap()),
        )
    }

    fn batch(rows: usize, width: usize) -> Tensor {
        let x: Vec<f32> = (0..rows * width).map(|i| (i as f32 * 0.3183).cos()).collect();
        Tensor::from_vec(x, (rows, width), &Device::Cpu).unwrap()
    }

    #[test]
    fn rowwise_product_matches_candles_and_ignores_the_batch() {
        // 389 inputs: not a multiple of the sixteen lanes, so the tail is exercised too.
        let (l, xs) = (layer(40, 389, 0.5), batch(37, 389));
        let ours = linear_rows(&xs, &l).unwrap().to_vec2::<f32>().unwrap();
        let candle = l.forward(&xs).unwrap().to_vec2::<f32>().unwrap();
        for (a, b) in ours.iter().flatten().zip(candle.iter().flatten()) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs candle's {b}");
        }
        // Each row alone, and the rows in another batch, give the same bits.
        for (i, want) in ours.iter().enumerate() {
            let alone = linear_rows(&xs.narrow(0, i, 1).unwrap(), &l).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(&alone[0], want, "row {i}");
        }
        let tail = linear_rows(&xs.narrow(0, 5, 20).unwrap(), &l).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(tail[..], ours[5..25]);
    }

    #[test]
    fn rowwise_product_refuses_a_wrong_or_empty_layer() {
        let err = linear_rows(&batch(2, 10), &layer(3, 11, 0.0)).unwrap_err();
        assert!(err.to_string().contains("11 inputs"), "{err}");
        let err = linear_rows(&batch(2, 0), &layer(3, 0, 0.0)).unwrap_err();
        assert!(err.to_string().contains("3 x 0"), "{err}");
        // No rows is an empty answer, not an error.
        assert_eq!(linear_rows(&batch(0, 4), &layer(3, 4, 0.0)).unwrap().dims(), [0, 3]);
    }

    #[test]
    fn dot_sums_every_element() {
        let a: Vec<f32> = (1..=35).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &vec![1.0; 35]), 630.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }
}
