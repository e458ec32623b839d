//! What the int8 products need from a calibration run, stored beside the model so that nothing is measured at
//! load: which linear layers run in int8 and, for each, the largest absolute activation of every input channel
//! seen on the calibration text. The smoothing factors follow from those ranges and the weights by a fixed
//! formula (`s_j = act_j^alpha / weight_j^(1 - alpha)`, SmoothQuant's), with `alpha` stored too, and so do the
//! `outliers` channels of each product that are computed in f32 (those with the largest ranges, ties to the
//! lower index). Products not listed stay int16.
//!
//! The file is safetensors: one f32 tensor `layer.{i}.{product}.act_max` per int8 product and the metadata
//! `alpha` and `outliers` (plus whatever notes the writer adds: the calibration text, the quality measured).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The four linear layers of a transformer layer, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Product {
    /// Queries, keys and values (one product, three times the outputs).
    Qkv,
    /// Attention's output projection.
    AttentionOutput,
    /// The feed-forward layer's widening product (before GELU).
    Intermediate,
    /// The feed-forward layer's narrowing product.
    Output,
}

impl Product {
    /// All four, in the order they run.
    pub const ALL: [Product; 4] = [Product::Qkv, Product::AttentionOutput, Product::Intermediate, Product::Output];

    /// The name used in calibration files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Product::Qkv => "qkv",
            Product::AttentionOutput => "attention_output",
            Product::Intermediate => "intermediate",
            Product::Output => "output",
        }
    }

    fn from_name(name: &str) -> Option<Product> {
        Product::ALL.into_iter().find(|p| p.name() == name)
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Per layer and product, the largest absolute value of each input channel over some text (see
/// [`super::QuantizedEncoder::activation_ranges`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRanges {
    pub(super) layers: Vec<[Vec<f32>; 4]>,
}

impl ActivationRanges {
    /// The ranges of one product's input channels.
    pub fn get(&self, layer: usize, product: Product) -> Option<&[f32]> {
        self.layers.get(layer).map(|l| l[product.index()].as_slice())
    }

    /// Encoder layers covered.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }
}

/// How one int8 product is built: smoothing factors and the channels kept in f32.
pub(super) struct Int8Plan {
    pub(super) smooth: Vec<f32>,
    pub(super) outliers: Vec<usize>,
}

/// Which products run in int8, with their activation ranges and the smoothing strength.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Calibration {
    /// SmoothQuant's migration strength: 0 keeps activations as they are, 1 moves all their range into weights.
    pub alpha: f32,
    /// Input channels per product kept in f32: the ones with the largest ranges.
    pub outliers: usize,
    ranges: BTreeMap<(usize, Product), Vec<f32>>,
    notes: BTreeMap<String, String>,
}

impl Int8Calibration {
    /// Int8 for `chosen` products, with ranges from `ranges`.
    pub fn new(ranges: &ActivationRanges, chosen: &[(usize, Product)], alpha: f32, outliers: usize) -> Result<Self> {
        let mut picked = BTreeMap::new();
        for &(layer, product) in chosen {
            let r = ranges.get(layer, product).ok_or_else(|| {
                Error::Config(format!("no activation ranges for layer {layer} {}", product.name()))
            })?;
            picked.insert((layer, product), r.to_vec());
        }
        Ok(Int8Calibration {
            alpha,
            outliers,
            ranges: picked,
            notes: BTreeMap::new(),
        })
    }

    /// The products that run in int8, in running order.
    pub fn products(&self) -> Vec<(usize, Product)> {
        self.ranges.keys().copied().collect()
    }

    /// Adds a note stored in the file's metadata (how it was measured).
    pub fn note(&mut self, key: &str, value: impl Into<String>) {
        self.notes.insert(key.to_string(), value.into());
    }

    /// The notes read from or to be written to the file.
    pub fn notes(&self) -> &BTreeMap<String, String> {
        &self.notes
    }

    /// How to build one int8 product from its weight (`[outputs, inputs]`); `None` if it stays int16.
    pub(super) fn plan(&self, layer: usize, product: Product, weight: &[f32], inputs: usize) -> Result<Option<Int8Plan>> {
        let Some(act) = self.ranges.get(&(layer, product)) else {
            return Ok(None);
        };
        if act.len() != inputs {
            return Err(Error::TensorShape {
                tensor: format!("int8 calibration layer.{layer}.{}.act_max", product.name()),
                expected: vec![inputs],
                actual: vec![act.len()],
            });
        }
        let mut w_max = vec![0f32; inputs];
        for row in weight.chunks_exact(inputs) {
            w_max.iter_mut().zip(row).for_each(|(m, w)| *m = m.max(w.abs()));
        }
        let tiny = 1e-6f32;
        let smooth = act
            .iter()
            .zip(&w_max)
            .map(|(a, w)| (a.max(tiny).powf(self.alpha) / w.max(tiny).powf(1.0 - self.alpha)).clamp(1e-4, 1e4))
            .collect();
        let mut order: Vec<usize> = (0..inputs).collect();
        order.sort_by(|&a, &b| act[b].total_cmp(&act[a]).then(a.cmp(&b)));
        order.truncate(self.outliers.min(inputs));
        order.sort_unstable();
        Ok(Some(Int8Plan {
            smooth,
            outliers: order,
        }))
    }

    /// Reads a calibration file (see the module docs).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::Config(format!("int8 calibration {}: {reason}", path.display()));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut notes: BTreeMap<String, String> =
            meta.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        let alpha: f32 = notes
            .remove("alpha")
            .ok_or_else(|| bad("no alpha in its metadata".into()))?
            .parse()
            .map_err(|e| bad(format!("alpha: {e}")))?;
        if !(0.0..=1.0).contains(&alpha) {
            return Err(bad(format!("alpha {alpha} is outside [0, 1]")));
        }
        let outliers: usize = notes
            .remove("outliers")
            .ok_or_else(|| bad("no outliers in its metadata".into()))?
            .parse()
            .map_err(|e| bad(format!("outliers: {e}")))?;
        let mut ranges = BTreeMap::new();
        for (name, view) in tensors.tensors() {
            let parsed = name
                .strip_prefix("layer.")
                .and_then(|rest| rest.strip_suffix(".act_max"))
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(layer, product)| Some((layer.parse::<usize>().ok()?, Product::from_name(product)?)));
            let key = parsed.ok_or_else(|| bad(format!("unexpected tensor {name:?}")))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 1 {
                return Err(bad(format!("{name} must be a 1-d f32 tensor")));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(bad(format!("{name} holds a negative or non-finite range")));
            }
            ranges.insert(key, values);
        }
        Ok(Int8Calibration { alpha, outliers, ranges, notes })
    }

    /// The file's bytes (see the module docs). Written here rather than by `safetensors::serialize`, whose
    /// metadata goes through a `HashMap` and so comes out in a different order each run: the same calibration
    /// must give the same bytes, and the same sha256 in the manifest.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut meta: BTreeMap<String, String> = self.notes.clone();
        meta.insert("alpha".into(), self.alpha.to_string());
        meta.insert("outliers".into(), self.outliers.to_string());
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::to_value(&meta)?);
        let mut data = Vec::new();
        for ((layer, product), act) in &self.ranges {
            let start = data.len();
            data.extend(act.iter().flat_map(|x| x.to_le_bytes()));
            header.insert(
                format!("layer.{layer}.{}.act_max", product.name()),
                serde_json::json!({"dtype": "F32", "shape": [act.len()], "data_offsets": [start, data.len()]}),
            );
        }
        let mut text = serde_json::to_string(&header)?;
        // The format pads the header with spaces to a multiple of 8 bytes.
        text.push_str(&" ".repeat((8 - text.len() % 8) % 8));
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend(text.as_bytes());
        bytes.extend(data);
        Ok(bytes)
    }
}
