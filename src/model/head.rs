//! The head: the small network from a pooled utterance vector to 40 intensities in `[0, 1]` (and, for heads
//! that learned it, valence and arousal), plus, for lexical heads, the logits of a [`Lexicon`] over the
//! utterance's tokens. It runs in f32 with candle on the CPU whatever backend ran the encoder.

use super::lexical::Lexicon;
use super::spec::{Activation, HeadSpec};
use candle_core::{Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

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
    /// hidden layer.
    fn trunk(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = if self.normalize {
            l2_normalize(pooled)?
        } else {
            pooled.clone()
        };
        for layer in &self.layers[..self.layers.len() - 1] {
            xs = layer.forward(&xs)?;
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
        self.layers[self.layers.len() - 1].forward(&self.trunk(pooled)?)
    }

    /// Intensities in `[0, 1]`, `[batch, 40]`, from pooled vectors alone (see [`logits`](Self::logits)).
    pub fn forward(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::sigmoid(&self.logits(pooled)?)
    }

    /// Intensities and, when the head has them, learned valence and arousal, from one pass of the trunk.
    /// `tokens` are the token ids of each pooled row's text (read only by a lexical head), `None` for a text read
    /// in context, which a lexicon leaves to the network (see [`crate::model::lexical`]).
    pub fn forward_all(&self, pooled: &Tensor, tokens: &[Option<&[u32]>]) -> candle_core::Result<HeadOutput> {
        let trunk = self.trunk(pooled)?;
        let mut logits = self.layers[self.layers.len() - 1].forward(&trunk)?;
        if let Some(lexicon) = &self.lexical {
            let rows = pooled.dim(0)?;
            if tokens.len() != rows {
                candle_core::bail!("{rows} pooled rows but {} token sequences", tokens.len());
            }
            let lexical = Tensor::from_vec(lexicon.logits(tokens), logits.shape(), logits.device())?;
            logits = (logits + lexical)?;
        }
        let affect = match &self.affect {
            Some(linear) => Some(candle_nn::ops::sigmoid(&linear.forward(&trunk)?)?),
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

/// Divides each row by its L2 norm (with a floor, so a zero row stays zero instead of NaN).
pub fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norm)
}
