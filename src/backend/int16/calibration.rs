//! What the int8 products need from a calibration run, stored beside the model so that nothing is measured at
//! load: which linear layers run in int8 and, for each, the largest absolute activation of every input channel
//! seen on the calibration text. The smoothing factors follow from those ranges and the weights by a fixed
//! formula (`s_j = act_j^alpha / weight_j^(1 - alpha)`, SmoothQuant's), with `alpha` (per product kind) stored
//! too, unless the file stores the factors themselves: it does when the model's weights were put on the int8
//! grid those factors define ([`super::Int8Linear::snap_to_grid`]), which the formula, reading the moved
//! weights, would not give back. The `outliers` channels of each product, computed in f32, are those with the
//! largest ranges (ties to the lower index). Products not listed stay int16.
//!
//! The file is safetensors: one f32 tensor `layer.{i}.{product}.act_max` per int8 product, optionally
//! `layer.{i}.{product}.smooth`, and the metadata `alpha` and `outliers` (plus whatever notes the writer adds:
//! the calibration text, the quality measured).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

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

    /// The linear layers of this product in layer `layer` of a BERT safetensors file (tensor names without
    /// their `.weight` / `.bias`), in the order their outputs are stacked (queries, keys, values for
    /// [`Product::Qkv`]).
    pub fn linear_layers(self, layer: usize) -> Vec<String> {
        let p = format!("encoder.layer.{layer}");
        match self {
            Product::Qkv => ["query", "key", "value"].map(|part| format!("{p}.attention.self.{part}")).to_vec(),
            Product::AttentionOutput => vec![format!("{p}.attention.output.dense")],
            Product::Intermediate => vec![format!("{p}.intermediate.dense")],
            Product::Output => vec![format!("{p}.output.dense")],
        }
    }
}

/// SmoothQuant's migration strength for each product kind, each in `[0, 1]`: 0 keeps activations as they are,
/// 1 moves all their range into the weights. Written `0.5` (every kind) or `0.8,output=0.5` (a value for every
/// kind, then kinds that differ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alpha([f32; 4]);

impl Alpha {
    /// The same strength for every product.
    pub fn uniform(alpha: f32) -> Result<Alpha> {
        Ok(Alpha([checked(alpha, "every product")?; 4]))
    }

    /// This strength, with `product`'s set to `alpha`.
    pub fn with(mut self, product: Product, alpha: f32) -> Result<Alpha> {
        self.0[product.index()] = checked(alpha, product.name())?;
        Ok(self)
    }

    /// The strength for `product`.
    pub fn get(&self, product: Product) -> f32 {
        self.0[product.index()]
    }
}

/// `alpha` if it is in `[0, 1]`, else an error naming `what` it was for.
fn checked(alpha: f32, what: &str) -> Result<f32> {
    if (0.0..=1.0).contains(&alpha) {
        Ok(alpha)
    } else {
        Err(Error::Config(format!("alpha {alpha} for {what} is outside [0, 1]")))
    }
}

impl Default for Alpha {
    fn default() -> Self {
        Alpha([0.5; 4])
    }
}

impl FromStr for Alpha {
    type Err = Error;

    fn from_str(text: &str) -> Result<Alpha> {
        let bad = |why: String| Error::Config(format!("alpha {text:?}: {why}"));
        let number = |v: &str| v.trim().parse::<f32>().map_err(|e| bad(format!("{v:?} is not a number ({e})")));
        let mut parts = text.split(',');
        let mut alpha = Alpha::uniform(number(parts.next().unwrap_or_default())?)?;
        for part in parts {
            let (name, value) = part.split_once('=').ok_or_else(|| bad(format!("expected PRODUCT=VALUE, not {part:?}")))?;
            let product = Product::from_name(name.trim()).ok_or_else(|| {
                bad(format!("no product {name:?} (one of {})", Product::ALL.map(Product::name).join(", ")))
            })?;
            alpha = alpha.with(product, number(value)?)?;
        }
        Ok(alpha)
    }
}

impl fmt::Display for Alpha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.0[0];
        write!(f, "{first}")?;
        for p in Product::ALL.into_iter().filter(|p| self.get(*p) != first) {
            write!(f, ",{}={}", p.name(), self.get(p))?;
        }
        Ok(())
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
    /// SmoothQuant's migration strength, per product kind.
    pub alpha: Alpha,
    /// Input channels per product kept in f32: the ones with the largest ranges.
    pub outliers: usize,
    ranges: BTreeMap<(usize, Product), Vec<f32>>,
    /// Smoothing factors fixed for a product, used instead of the formula (see the module docs).
    smooth: BTreeMap<(usize, Product), Vec<f32>>,
    notes: BTreeMap<String, String>,
}

impl Int8Calibration {
    /// Int8 for `chosen` products, with ranges from `ranges`.
    pub fn new(ranges: &ActivationRanges, chosen: &[(usize, Product)], alpha: Alpha, outliers: usize) -> Result<Self> {
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
            smooth: BTreeMap::new(),
            notes: BTreeMap::new(),
        })
    }

    /// The same calibration for `chosen` products only (each must be one of these), with their ranges and any
    /// fixed smoothing factors; no notes.
    pub fn only(&self, chosen: &[(usize, Product)]) -> Result<Self> {
        let mut out = Int8Calibration {
            ranges: BTreeMap::new(),
            smooth: BTreeMap::new(),
            notes: BTreeMap::new(),
            ..*self
        };
        for key in chosen {
            let range = self.ranges.get(key).ok_or_else(|| {
                Error::Config(format!("no activation ranges for layer {} {}", key.0, key.1.name()))
            })?;
            out.ranges.insert(*key, range.clone());
            if let Some(s) = self.smooth.get(key) {
                out.smooth.insert(*key, s.clone());
            }
        }
        Ok(out)
    }

    /// The products that run in int8, in running order.
    pub fn products(&self) -> Vec<(usize, Product)> {
        self.ranges.keys().copied().collect()
    }

    /// Whether `product`'s smoothing factors are stored rather than derived from the weights.
    pub fn fixes_smoothing(&self, layer: usize, product: Product) -> bool {
        self.smooth.contains_key(&(layer, product))
    }

    /// Adds a note stored in the file's metadata (how it was measured).
    pub fn note(&mut self, key: &str, value: impl Into<String>) {
        self.notes.insert(key.to_string(), value.into());
    }

    /// The notes read from or to be written to the file.
    pub fn notes(&self) -> &BTreeMap<String, String> {
        &self.notes
    }

    /// Puts `product`'s weight (`[outputs, inputs]`, outputs stacked as [`Product::linear_layers`] lists them)
    /// on the int8 grid, in place (see [`super::Int8Linear::snap_to_grid`]): the grid of the smoothing factors
    /// this calibration holds for the product, or where it holds none, of factors derived from this weight by
    /// the formula, which it then keeps (later plans use them whatever the weights become). Returns false,
    /// leaving the weight alone, for a product this calibration does not hold.
    pub fn put_on_grid(&mut self, layer: usize, product: Product, weight: &mut [f32], inputs: usize) -> Result<bool> {
        let Some(plan) = self.plan(layer, product, weight, inputs)? else {
            return Ok(false);
        };
        if inputs == 0 || weight.len() % inputs != 0 {
            return Err(Error::Config(format!("a weight of {} values for {inputs} inputs", weight.len())));
        }
        super::Int8Linear::snap_to_grid(weight, weight.len() / inputs, inputs, &plan.smooth, &plan.outliers);
        self.smooth.insert((layer, product), plan.smooth);
        Ok(true)
    }

    /// How to build one int8 product from its weight (`[outputs, inputs]`); `None` if it stays int16.
    pub(super) fn plan(&self, layer: usize, product: Product, weight: &[f32], inputs: usize) -> Result<Option<Int8Plan>> {
        let Some(act) = self.ranges.get(&(layer, product)) else {
            return Ok(None);
        };
        let shape_error = |what: &str, len: usize| Error::TensorShape {
            tensor: format!("int8 calibration layer.{layer}.{}.{what}", product.name()),
            expected: vec![inputs],
            actual: vec![len],
        };
        if act.len() != inputs {
            return Err(shape_error("act_max", act.len()));
        }
        let smooth = match self.smooth.get(&(layer, product)) {
            Some(fixed) if fixed.len() != inputs => return Err(shape_error("smooth", fixed.len())),
            Some(fixed) => fixed.clone(),
            None => {
                let mut w_max = vec![0f32; inputs];
                for row in weight.chunks_exact(inputs) {
                    w_max.iter_mut().zip(row).for_each(|(m, w)| *m = m.max(w.abs()));
                }
                let (tiny, alpha) = (1e-6f32, self.alpha.get(product));
                act.iter()
                    .zip(&w_max)
                    .map(|(a, w)| (a.max(tiny).powf(alpha) / w.max(tiny).powf(1.0 - alpha)).clamp(1e-4, 1e4))
                    .collect()
            }
        };
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
        let alpha: Alpha = notes
            .remove("alpha")
            .ok_or_else(|| bad("no alpha in its metadata".into()))?
            .parse()
            .map_err(|e: Error| bad(e.to_string()))?;
        let outliers: usize = notes
            .remove("outliers")
            .ok_or_else(|| bad("no outliers in its metadata".into()))?
            .parse()
            .map_err(|e| bad(format!("outliers: {e}")))?;
        let (mut ranges, mut smooth) = (BTreeMap::new(), BTreeMap::new());
        for (name, view) in tensors.tensors() {
            let parsed = name
                .strip_prefix("layer.")
                .and_then(|rest| rest.rsplit_once('.'))
                .and_then(|(rest, kind)| Some((rest.split_once('.')?, kind)))
                .and_then(|((layer, product), kind)| {
                    Some(((layer.parse::<usize>().ok()?, Product::from_name(product)?), kind))
                });
            let (key, kind) = parsed.ok_or_else(|| bad(format!("unexpected tensor {name:?}")))?;
            let into = match kind {
                "act_max" => &mut ranges,
                "smooth" => &mut smooth,
                _ => return Err(bad(format!("unexpected tensor {name:?}"))),
            };
            if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 1 {
                return Err(bad(format!("{name} must be a 1-d f32 tensor")));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let valid = |v: &f32| v.is_finite() && if kind == "smooth" { *v > 0.0 } else { *v >= 0.0 };
            if !values.iter().all(valid) {
                return Err(bad(format!("{name} holds a non-finite or out-of-range value")));
            }
            into.insert(key, values);
        }
        if let Some((layer, product)) = smooth.keys().find(|k| !ranges.contains_key(k)) {
            return Err(bad(format!("smoothing factors for layer {layer} {} without its ranges", product.name())));
        }
        Ok(Int8Calibration { alpha, outliers, ranges, smooth, notes })
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
        let tensors = self.ranges.iter().map(|(k, v)| (k, "act_max", v)).chain(self.smooth.iter().map(|(k, v)| (k, "smooth", v)));
        for ((layer, product), kind, values) in tensors {
            let start = data.len();
            data.extend(values.iter().flat_map(|x| x.to_le_bytes()));
            header.insert(
                format!("layer.{layer}.{}.{kind}", product.name()),
                serde_json::json!({"dtype": "F32", "shape": [values.len()], "data_offsets": [start, data.len()]}),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_reads_one_value_or_one_per_kind_and_writes_the_same() {
        let uniform: Alpha = "0.5".parse().unwrap();
        assert_eq!(uniform, Alpha::default());
        assert_eq!(uniform.to_string(), "0.5");
        let mixed: Alpha = "0.8, output=0.5".parse().unwrap();
        assert_eq!((mixed.get(Product::Qkv), mixed.get(Product::Intermediate), mixed.get(Product::Output)), (0.8, 0.8, 0.5));
        assert_eq!(mixed.to_string(), "0.8,output=0.5");
        assert_eq!(mixed.to_string().parse::<Alpha>().unwrap(), mixed);
        for (bad, says) in [("1.5", "outside [0, 1]"), ("0.8,foo=0.1", "no product \"foo\""), ("0.8,output", "PRODUCT=VALUE"), ("", "not a number"), ("0.8,qkv=x", "not a number")] {
            let err = bad.parse::<Alpha>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    fn two_products() -> (Int8Calibration, Vec<f32>) {
        let ranges = ActivationRanges {
            layers: vec![[vec![1.0, 8.0, 0.5, 2.0], vec![1.0; 4], vec![1.0; 4], vec![1.0; 4]]],
        };
        let chosen = [(0, Product::Qkv), (0, Product::Output)];
        let calibration = Int8Calibration::new(&ranges, &chosen, "0.7".parse().unwrap(), 1).unwrap();
        let weight: Vec<f32> = (0..12).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        (calibration, weight)
    }

    #[test]
    fn smoothing_put_on_the_grid_is_kept_through_the_file_and_reused() {
        let (mut calibration, weight) = two_products();
        let mut snapped = weight.clone();
        assert!(calibration.put_on_grid(0, Product::Qkv, &mut snapped, 4).unwrap());
        assert!(calibration.fixes_smoothing(0, Product::Qkv) && !calibration.fixes_smoothing(0, Product::Output));
        assert_ne!(snapped, weight);
        // The fixed factors, not the formula on the moved weights, plan the product from now on; snapping again
        // moves nothing.
        let fixed = calibration.plan(0, Product::Qkv, &snapped, 4).unwrap().unwrap().smooth;
        assert_eq!(fixed, calibration.plan(0, Product::Qkv, &weight, 4).unwrap().unwrap().smooth);
        let mut again = snapped.clone();
        calibration.put_on_grid(0, Product::Qkv, &mut again, 4).unwrap();
        for (a, b) in again.iter().zip(&snapped) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
        // A product the calibration does not hold is left alone.
        let mut other = weight.clone();
        assert!(!calibration.put_on_grid(0, Product::Intermediate, &mut other, 4).unwrap());
        assert_eq!(other, weight);
        // Through the file: the factors, the per-kind alpha and the ranges come back.
        let dir = std::env::temp_dir().join(format!("emoarc-calibration-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("int8.safetensors");
        std::fs::write(&path, calibration.to_bytes().unwrap()).unwrap();
        let back = Int8Calibration::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back, calibration);
        // Keeping some products keeps their factors.
        let only = calibration.only(&[(0, Product::Qkv)]).unwrap();
        assert_eq!(only.products(), vec![(0, Product::Qkv)]);
        assert!(only.fixes_smoothing(0, Product::Qkv));
        assert!(calibration.only(&[(1, Product::Qkv)]).unwrap_err().to_string().contains("layer 1 qkv"));
    }

    #[test]
    fn a_file_with_factors_of_the_wrong_length_or_sign_is_refused() {
        let (mut calibration, mut weight) = two_products();
        calibration.put_on_grid(0, Product::Qkv, &mut weight, 4).unwrap();
        let dir = std::env::temp_dir().join(format!("emoarc-calibration-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("int8.safetensors");
        let mut wrong = calibration.clone();
        wrong.smooth.insert((0, Product::Qkv), vec![1.0; 3]);
        std::fs::write(&path, wrong.to_bytes().unwrap()).unwrap();
        let read = Int8Calibration::read(&path).unwrap();
        let err = read.plan(0, Product::Qkv, &weight, 4).err().expect("3 factors for 4 inputs").to_string();
        assert!(err.contains("layer.0.qkv.smooth"), "{err}");
        wrong.smooth.insert((0, Product::Qkv), vec![1.0, -1.0, 1.0, 1.0]);
        std::fs::write(&path, wrong.to_bytes().unwrap()).unwrap();
        let err = Int8Calibration::read(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("layer.0.qkv.smooth") && err.contains("out-of-range"), "{err}");
    }
}
