//! Tensors as emoarc's model files store them. A tensor `NAME` is stored either as itself (f32, f16 or bf16) or
//! as int8 rows: `NAME.q8` (i8, `[rows, cols]`) with `NAME.scale` (f32, `[rows]`), read as
//! `value[r][c] = q8[r][c] * scale[r]`. The shipped encoder keeps its word embeddings that way: they are half
//! of MiniLM's weights, every token reads only its own row, and one scale per row keeps each row's error below
//! half a step of its own largest value (all `emoarc eval` figures moved by at most 0.001 when it was adopted),
//! while the file shrinks by 11.6 MB, room the repository spends on training data.
//!
//! This file owns reading both forms ([`TensorStore`], also a candle `VarBuilder` backend, so the candle
//! encoder loads either form unchanged) and writing the int8 form ([`Int8Rows`], [`save_with_int8_rows`]).

use crate::error::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use safetensors::tensor::{TensorView, View};
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Suffix of the int8 values of a tensor stored as int8 rows.
pub const Q8_SUFFIX: &str = ".q8";
/// Suffix of the per-row scales of a tensor stored as int8 rows.
pub const SCALE_SUFFIX: &str = ".scale";

/// A matrix as int8 rows with one f32 scale per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Rows {
    /// Number of rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub values: Vec<i8>,
    /// One scale per row: a row's largest magnitude over 127 (0 for an all-zero row).
    pub scales: Vec<f32>,
}

impl Int8Rows {
    /// Rounds each row of `values` (`rows * cols`, row-major) to the nearest multiple of its own scale.
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(Error::TensorShape {
                tensor: "int8 rows".into(),
                expected: vec![rows, cols],
                actual: vec![values.len()],
            });
        }
        let mut q = Vec::with_capacity(values.len());
        let mut scales = Vec::with_capacity(rows);
        for row in values.chunks_exact(cols.max(1)).take(rows) {
            let top = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = top / 127.0;
            scales.push(scale);
            q.extend(row.iter().map(|&v| if scale > 0.0 { (v / scale).round().clamp(-127.0, 127.0) as i8 } else { 0 }));
        }
        Ok(Int8Rows { rows, cols, values: q, scales })
    }

    /// Row `r` widened to f32 (`r < rows`).
    pub fn row(&self, r: usize) -> impl Iterator<Item = f32> + '_ {
        let s = self.scales[r];
        self.values[r * self.cols..(r + 1) * self.cols].iter().map(move |&q| f32::from(q) * s)
    }

    /// All rows widened to f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.rows).flat_map(|r| self.row(r)).collect()
    }
}

/// The tensors of one or more safetensors files (later files replace earlier ones' tensors of the same name),
/// each readable whether it is stored as itself or as int8 rows.
pub struct TensorStore {
    st: MmapedSafetensors,
    origin: PathBuf,
}

impl TensorStore {
    /// Maps `paths` (at least one). Nothing is read until a tensor is asked for.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let origin = paths.last().cloned().ok_or_else(|| Error::Config("no weights file to read".into()))?;
        // SAFETY: emoarc maps only model files it has verified against the manifest (or just written itself),
        // and never writes to a file while it is mapped: model files are replaced by rename, which leaves a
        // mapping of the old file intact.
        let st = unsafe { MmapedSafetensors::multi(paths)? };
        Ok(TensorStore { st, origin })
    }

    fn stored(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }

    /// Whether `name` is stored as int8 rows (and not as itself).
    pub fn is_int8_rows(&self, name: &str) -> bool {
        !self.stored(name) && self.stored(&format!("{name}{Q8_SUFFIX}"))
    }

    /// Whether the files hold `name` in either form.
    pub fn contains(&self, name: &str) -> bool {
        self.stored(name) || self.is_int8_rows(name)
    }

    /// `name`'s dimensions, read from the headers only.
    pub fn dims(&self, name: &str) -> Result<Vec<usize>> {
        let key = if self.is_int8_rows(name) { format!("{name}{Q8_SUFFIX}") } else { name.to_string() };
        Ok(self.st.get(&key)?.shape().to_vec())
    }

    /// `name` exactly as stored (dtype, shape and bytes of the mapped file, nothing copied); for a tensor
    /// stored as int8 rows, ask [`TensorStore::int8_rows`].
    pub fn view(&self, name: &str) -> Result<TensorView<'_>> {
        Ok(self.st.get(name)?)
    }

    /// `name` as stored (f16 stays f16), or as f32 when it is stored as int8 rows.
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        match self.int8_rows(name)? {
            Some(q) => Ok(Tensor::from_vec(q.dequantize(), (q.rows, q.cols), device)?),
            None => Ok(self.st.load(name, device)?),
        }
    }

    /// `name`'s int8 rows when it is stored that way; `None` when it is stored as itself. A `.q8` tensor that is
    /// not a 2-D i8 matrix, or whose `.scale` is missing or not one f32 per row, is a typed error.
    pub fn int8_rows(&self, name: &str) -> Result<Option<Int8Rows>> {
        if !self.is_int8_rows(name) {
            return Ok(None);
        }
        let (qn, sn) = (format!("{name}{Q8_SUFFIX}"), format!("{name}{SCALE_SUFFIX}"));
        let bad = |why: String| Error::Config(format!("{}: {name} stored as int8 rows: {why}", self.origin.display()));
        let q = self.st.get(&qn)?;
        let (rows, cols) = match (q.dtype(), q.shape()) {
            (Dtype::I8, &[rows, cols]) => (rows, cols),
            (dtype, shape) => return Err(bad(format!("{qn} is {dtype:?} {shape:?}, not a 2-D i8 matrix"))),
        };
        let s = self.st.get(&sn).map_err(|_| bad(format!("{sn} is missing")))?;
        if s.dtype() != Dtype::F32 || s.shape() != [rows] {
            return Err(Error::TensorShape { tensor: sn, expected: vec![rows], actual: s.shape().to_vec() });
        }
        let scales = s.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let values = q.data().iter().map(|&b| b as i8).collect();
        Ok(Some(Int8Rows { rows, cols, values, scales }))
    }
}

/// Lets candle's `VarBuilder` read a [`TensorStore`], so a model built by candle loads either form.
impl candle_nn::var_builder::SimpleBackend for TensorStore {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &shape {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: shape,
                got: t.shape().clone(),
            });
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.load(name, dev) {
            Ok(t) => t.to_dtype(dtype),
            Err(Error::Tensor(e)) => Err(e),
            Err(e) => Err(candle_core::Error::Msg(e.to_string())),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// Writes `tensors` (as they are) and `int8` (each as `NAME.q8` and `NAME.scale`) to one safetensors file,
/// atomically (a temporary file, then rename).
pub fn save_with_int8_rows(path: &Path, tensors: &BTreeMap<String, Tensor>, int8: &BTreeMap<String, Int8Rows>) -> Result<()> {
    let bad = |why: String| Error::Config(format!("writing {}: {why}", path.display()));
    // candle's tensors are safetensors views themselves (one safetensors version in the tree): their dtype and
    // little-endian bytes go in as they are.
    let mut raw: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| (name.clone(), (View::dtype(t), t.dims().to_vec(), View::data(t).into_owned())))
        .collect();
    for (name, q) in int8 {
        raw.insert(format!("{name}{Q8_SUFFIX}"), (Dtype::I8, vec![q.rows, q.cols], q.values.iter().map(|&v| v as u8).collect()));
        raw.insert(
            format!("{name}{SCALE_SUFFIX}"),
            (Dtype::F32, vec![q.rows], q.scales.iter().flat_map(|v| v.to_le_bytes()).collect()),
        );
    }
    let views = raw
        .iter()
        .map(|(n, (dtype, shape, data))| Ok((n, TensorView::new(*dtype, shape.clone(), data).map_err(|e| bad(e.to_string()))?)))
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| bad(e.to_string()))?;
    let tmp = super::temp_path_for(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("emoarc-store-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn int8_rows_round_trip_within_half_a_step_per_row() {
        let values: Vec<f32> = (0..4 * 6).map(|i| ((i * 37 % 23) as f32 - 11.0) * if i < 6 { 1e-3 } else { 0.05 }).collect();
        let q = Int8Rows::quantize(&values, 4, 6).unwrap();
        for (r, row) in values.chunks(6).enumerate() {
            let top = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in row.iter().zip(q.row(r)) {
                assert!((a - b).abs() <= top / 254.0 + 1e-9, "row {r}: {a} vs {b}");
            }
        }
        let zero = Int8Rows::quantize(&[0.0; 3], 1, 3).unwrap();
        assert_eq!(zero.dequantize(), vec![0.0; 3]);
        assert!(matches!(Int8Rows::quantize(&[1.0; 5], 2, 3), Err(Error::TensorShape { .. })));
    }

    #[test]
    fn store_reads_both_forms_and_candle_loads_int8_rows() {
        let dir = temp_dir();
        let path = dir.join("w.safetensors");
        let word: Vec<f32> = (0..5 * 4).map(|i| (i as f32 - 9.5) / 7.0).collect();
        let plain = Tensor::from_vec(vec![0.5f32, -0.25, 1.0], 3, &Device::Cpu).unwrap().to_dtype(DType::F16).unwrap();
        let tensors = BTreeMap::from([("norm".to_string(), plain)]);
        let int8 = BTreeMap::from([("word".to_string(), Int8Rows::quantize(&word, 5, 4).unwrap())]);
        save_with_int8_rows(&path, &tensors, &int8).unwrap();

        let store = TensorStore::open(&[path.clone()]).unwrap();
        assert!(store.is_int8_rows("word") && !store.is_int8_rows("norm"));
        assert!(store.contains("word") && store.contains("norm") && !store.contains("nothing"));
        assert_eq!(store.dims("word").unwrap(), vec![5, 4]);
        let loaded = store.load("word", &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in word.iter().zip(&loaded) {
            assert!((a - b).abs() < 1.5 / 127.0 / 2.0 + 1e-6);
        }
        assert_eq!(store.load("norm", &Device::Cpu).unwrap().dtype(), DType::F16);

        let vb = candle_nn::VarBuilder::from_backend(Box::new(store), DType::F32, Device::Cpu);
        assert!(vb.get(5 * 4, "word").is_err(), "the shape is checked");
        assert_eq!(vb.get((5, 4), "word").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), loaded);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_q8_without_its_scale_is_a_typed_error() {
        let dir = temp_dir().join("noscale");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let data = vec![1u8; 6];
        let view = TensorView::new(Dtype::I8, vec![2, 3], &data).unwrap();
        std::fs::write(&path, safetensors::serialize([("word.q8", view)], None).unwrap()).unwrap();
        let store = TensorStore::open(&[path]).unwrap();
        match store.load("word", &Device::Cpu) {
            Err(Error::Config(m)) => assert!(m.contains("word.scale is missing"), "{m}"),
            other => panic!("expected a typed error, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
