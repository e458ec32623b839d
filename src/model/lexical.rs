//! The lexical part of a head: a TF-IDF model over the encoder's own wordpieces, fitted with or after the
//! network, whose logits are added to the network's before the sigmoid (a "wide and deep" head).
//!
//! Why: a three-layer encoder reads context but forgets words it saw rarely; a linear model over word counts
//! remembers them, and the two make different mistakes. Fitted on its own (`scripts/fit_lexical.py`) and added
//! to the stage-6 network, a lexicon of 8,192 wordpieces raised GoEmotions dev presence AUC from 0.908 to 0.918
//! and own-test AUC from 0.901 to 0.914 (`emoarc eval`), and lowered the conversation-pair arcs: the README's "A
//! lexical head" has the figures and why it is not the shipped default. It costs a table lookup per token.
//!
//! A text's features are the lexicon's wordpieces among the token ids the encoder reads, and the lexicon's
//! pairs among the text's adjacent token ids ("not" then "happy"; special tokens are never in a lexicon):
//! `x_f = (1 + ln tf_f) · idf_f`, then L2-normalised; the logits are `x · W`. Pairs are there because one
//! wordpiece cannot say "not happy" or "thank you": with 16,384 pairs beside the 8,192 wordpieces the fitted
//! lexicon raised the dev score `fit_lexical.py` selects on (README, stage 15).
//!
//! The head file holds `lexical.ids` (`[k]` i32, ascending wordpiece ids), `lexical.idf` (`[k + p]` f32),
//! `lexical.weight` (`[k + p, outputs]` u8, `w = (q − 128) · scale`: the wordpieces' rows, then the pairs')
//! and `lexical.scale` (`[outputs]` f32), and may hold `lexical.pairs` (`[p, 2]` i32, ascending by first then
//! second id; no pairs when absent) and `lexical.bias` (`[outputs]` f32, zero when absent), the lexicon's own
//! intercept.
//!
//! A lexicon reads a text alone. A text read after the message it answers (`InContext`) is read by the
//! network alone, which was trained for that reading; its lexical logits, bias included, are left out. Why:
//! the lexicon's weights say what words mean without their context ("ok. thanks" is gratitude on Reddit), and
//! added to in-context readings they outvoted what the context reader learned (stage 12: conversation pairs
//! 47 → 42 of 48). Keeping the intercept in the lexicon, not folded into the network's bias, is what lets a
//! lexical head read in context exactly as its network does.

use candle_core::DType;
use candle_nn::VarBuilder;

/// A loaded lexicon: features by ascending wordpiece id, then pairs of adjacent ids, their idf and their
/// dequantized weights.
#[derive(Debug, Clone)]
pub struct Lexicon {
    ids: Vec<u32>,
    /// Adjacent-token pairs, ascending; feature `ids.len() + j` is `pairs[j]`.
    pairs: Vec<(u32, u32)>,
    /// `[ids + pairs]`.
    idf: Vec<f32>,
    /// `[k, outputs]` row-major.
    weight: Vec<f32>,
    /// `[outputs]`: added to every text the lexicon reads.
    bias: Vec<f32>,
    outputs: usize,
}

impl Lexicon {
    /// Reads `lexical.*` from a head file; a wrong shape, order or value is an error naming it.
    pub fn load(vb: &VarBuilder, outputs: usize) -> candle_core::Result<Self> {
        // The head's VarBuilder converts to f32; ids and quantized weights are read in their own dtype.
        let get = |name: &str, dtype: DType| vb.get_unchecked_dtype(name, dtype);
        let bad = |what: String| candle_core::Error::Msg(format!("lexicon: {what}"));
        let ids = get("lexical.ids", DType::I32)?.to_vec1::<i32>()?;
        let idf = get("lexical.idf", DType::F32)?.to_vec1::<f32>()?;
        let scale = get("lexical.scale", DType::F32)?.to_vec1::<f32>()?;
        let quant = get("lexical.weight", DType::U8)?;
        let pairs = if vb.contains_tensor("lexical.pairs") {
            let pairs = get("lexical.pairs", DType::I32)?;
            if pairs.rank() != 2 || pairs.dim(1)? != 2 {
                return Err(bad(format!("pairs is {:?}, expected [pairs, 2]", pairs.dims())));
            }
            pairs.to_vec2::<i32>()?
        } else {
            Vec::new()
        };
        let features = ids.len() + pairs.len();
        if quant.dims() != [features, outputs] {
            return Err(bad(format!(
                "weight is {:?}, expected [{features}, {outputs}] ({} wordpieces and {} pairs)",
                quant.dims(),
                ids.len(),
                pairs.len()
            )));
        }
        if scale.len() != outputs || scale.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(bad(format!("{} scales for {outputs} outputs, or one not finite and non-negative", scale.len())));
        }
        let weight = quant
            .flatten_all()?
            .to_vec1::<u8>()?
            .chunks_exact(outputs)
            .flat_map(|row| row.iter().zip(&scale).map(|(&q, &s)| (f32::from(q) - 128.0) * s))
            .collect();
        let id = |id: i32| u32::try_from(id).map_err(|_| bad(format!("negative wordpiece id {id}")));
        let ids = ids.into_iter().map(id).collect::<candle_core::Result<Vec<u32>>>()?;
        let pairs = pairs
            .into_iter()
            .map(|p| Ok((id(p[0])?, id(p[1])?)))
            .collect::<candle_core::Result<Vec<(u32, u32)>>>()?;
        // Heads fitted before the lexicon had its own intercept folded it into the network's bias.
        let bias = if vb.contains_tensor("lexical.bias") {
            get("lexical.bias", DType::F32)?.to_vec1::<f32>()?
        } else {
            vec![0.0; outputs]
        };
        Self::from_parts(ids, pairs, idf, weight, bias, outputs).map_err(bad)
    }

    /// A lexicon from its parts: ascending wordpiece ids, ascending pairs of adjacent ids, the idf of each
    /// (wordpieces first; finite, non-negative), the weights, `[ids + pairs, outputs]` row-major, and the
    /// intercept, `[outputs]`.
    pub fn from_parts(
        ids: Vec<u32>,
        pairs: Vec<(u32, u32)>,
        idf: Vec<f32>,
        weight: Vec<f32>,
        bias: Vec<f32>,
        outputs: usize,
    ) -> Result<Self, String> {
        let features = ids.len() + pairs.len();
        if idf.len() != features || weight.len() != features * outputs || bias.len() != outputs {
            return Err(format!(
                "{} ids, {} pairs, {} idf values, {} weights and {} biases for {outputs} outputs",
                ids.len(),
                pairs.len(),
                idf.len(),
                weight.len(),
                bias.len()
            ));
        }
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err("ids are not ascending".into());
        }
        if pairs.windows(2).any(|w| w[0] >= w[1]) {
            return Err("pairs are not ascending".into());
        }
        if idf.iter().any(|v| !v.is_finite() || *v < 0.0) || weight.iter().chain(&bias).any(|v| !v.is_finite()) {
            return Err("idf values must be finite and non-negative, weights and biases finite".into());
        }
        Ok(Lexicon { ids, pairs, idf, weight, bias, outputs })
    }

    /// How many features (wordpieces and pairs) the lexicon knows.
    pub fn len(&self) -> usize {
        self.idf.len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.idf.is_empty()
    }

    /// The normalised TF-IDF features of one token sequence: `(feature index, value)`, ascending by index.
    pub fn features(&self, tokens: &[u32]) -> Vec<(usize, f32)> {
        let words = tokens.iter().filter_map(|t| self.ids.binary_search(t).ok());
        let pairs = tokens
            .windows(2)
            .filter_map(|w| self.pairs.binary_search(&(w[0], w[1])).ok())
            .map(|j| self.ids.len() + j);
        let mut hits: Vec<usize> = words.chain(pairs).collect();
        hits.sort_unstable();
        let mut features: Vec<(usize, f32)> = Vec::with_capacity(hits.len());
        for f in hits {
            match features.last_mut() {
                Some((last, tf)) if *last == f => *tf += 1.0,
                _ => features.push((f, 1.0)),
            }
        }
        for (f, value) in &mut features {
            *value = (1.0 + value.ln()) * self.idf[*f];
        }
        let norm = features.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            features.iter_mut().for_each(|(_, v)| *v /= norm);
        }
        features
    }

    /// The lexical logits of each sequence, `[seqs, outputs]` row-major: `x · W + bias` for a text's tokens,
    /// zero for `None` (a text read in context, which the lexicon does not read).
    pub fn logits(&self, seqs: &[Option<&[u32]>]) -> Vec<f32> {
        let mut out = vec![0.0f32; seqs.len() * self.outputs];
        for (row, tokens) in out.chunks_exact_mut(self.outputs).zip(seqs) {
            let Some(tokens) = tokens else { continue };
            row.copy_from_slice(&self.bias);
            for (f, x) in self.features(tokens) {
                let w = &self.weight[f * self.outputs..(f + 1) * self.outputs];
                row.iter_mut().zip(w).for_each(|(o, w)| *o += x * w);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon() -> Lexicon {
        // Wordpieces 5, 9 and 12 with two outputs each.
        let weight = vec![1.0, 0.0, 0.0, 1.0, -1.0, 2.0];
        Lexicon::from_parts(vec![5, 9, 12], vec![], vec![1.0, 2.0, 3.0], weight, vec![0.0; 2], 2).unwrap()
    }

    #[test]
    fn features_are_sublinear_tf_idf_normalised() {
        // [CLS]=101 and 7 are not in the lexicon; 9 twice, 12 once.
        let f = lexicon().features(&[101, 9, 7, 12, 9, 102]);
        let (a, b) = ((1.0 + 2f32.ln()) * 2.0, 3.0f32);
        let n = (a * a + b * b).sqrt();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].0, f[1].0), (1, 2));
        assert!((f[0].1 - a / n).abs() < 1e-6 && (f[1].1 - b / n).abs() < 1e-6);
    }

    #[test]
    fn logits_sum_weighted_rows_and_unknown_text_gives_zero() {
        let lex = lexicon();
        let seqs: [Option<&[u32]>; 2] = [Some(&[5, 12]), Some(&[101, 7, 102])];
        let out = lex.logits(&seqs);
        let n = (1.0f32 + 9.0).sqrt();
        let expect = [1.0 / n - 3.0 / n, 6.0 / n];
        assert!((out[0] - expect[0]).abs() < 1e-6 && (out[1] - expect[1]).abs() < 1e-6);
        assert_eq!(&out[2..], &[0.0, 0.0]);
    }

    #[test]
    fn the_bias_reaches_texts_read_alone_and_nothing_reaches_texts_read_in_context() {
        let ids = vec![5, 9, 12];
        let weight = vec![1.0, 0.0, 0.0, 1.0, -1.0, 2.0];
        let lex = Lexicon::from_parts(ids, vec![], vec![1.0; 3], weight, vec![0.5, -0.25], 2).unwrap();
        let out = lex.logits(&[Some(&[101, 7, 102]), None, Some(&[9])]);
        assert_eq!(&out[..2], &[0.5, -0.25], "no known word: the intercept alone");
        assert_eq!(&out[2..4], &[0.0, 0.0], "read in context: no lexical logits at all");
        assert_eq!(&out[4..], &[0.5, 0.75]);
    }

    #[test]
    fn malformed_parts_are_refused() {
        let parts = |ids: Vec<u32>, idf: Vec<f32>, weight: Vec<f32>, bias: Vec<f32>, outputs| {
            Lexicon::from_parts(ids, vec![], idf, weight, bias, outputs)
        };
        assert!(parts(vec![9, 5], vec![1.0, 1.0], vec![0.0; 2], vec![0.0], 1).unwrap_err().contains("ascending"));
        assert!(parts(vec![5], vec![1.0], vec![0.0; 3], vec![0.0; 2], 2).unwrap_err().contains("weights"));
        assert!(parts(vec![5], vec![1.0], vec![0.0; 2], vec![0.0], 2).unwrap_err().contains("biases"));
        assert!(parts(vec![5], vec![f32::NAN], vec![0.0], vec![0.0], 1).is_err());
        assert!(parts(vec![5], vec![1.0], vec![0.0], vec![f32::INFINITY], 1).is_err());
        let pairs = |pairs: Vec<(u32, u32)>, idf: Vec<f32>| {
            let weight = vec![0.0; idf.len()];
            Lexicon::from_parts(vec![5], pairs, idf, weight, vec![0.0], 1)
        };
        assert!(pairs(vec![(9, 5), (5, 9)], vec![1.0; 3]).unwrap_err().contains("pairs are not ascending"));
        assert!(pairs(vec![(5, 9)], vec![1.0]).unwrap_err().contains("1 pairs"), "idf for the pair missing");
        assert!(pairs(vec![(5, 9), (9, 5)], vec![1.0; 3]).is_ok());
    }

    #[test]
    fn pairs_are_counted_where_the_two_ids_are_adjacent_in_that_order() {
        // Wordpiece 5 and the pair (5, 9), one output each.
        let lex = Lexicon::from_parts(vec![5], vec![(5, 9)], vec![1.0, 2.0], vec![1.0, 4.0], vec![0.0], 1).unwrap();
        // 5 then 9: the word and the pair, each once.
        let f = lex.features(&[101, 5, 9, 102]);
        let n = (1.0f32 + 4.0).sqrt();
        assert_eq!(f.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1]);
        assert!((f[0].1 - 1.0 / n).abs() < 1e-6 && (f[1].1 - 2.0 / n).abs() < 1e-6);
        // 9 then 5, or apart: the word alone.
        for tokens in [&[9u32, 5][..], &[5, 7, 9]] {
            assert_eq!(lex.features(tokens), [(0, 1.0)], "{tokens:?}");
        }
        // Twice adjacent: tf 2 for both.
        let f = lex.features(&[5, 9, 5, 9]);
        assert!((f[1].1 / f[0].1 - 2.0).abs() < 1e-6, "same tf, idf 2 against 1: {f:?}");
        assert!((lex.logits(&[Some(&[5, 9])])[0] - (1.0 + 8.0) / n).abs() < 1e-6);
    }
}
