//! Backends: what runs the encoder. One small internal trait, `EncoderBackend`, in the manner of
//! text-embeddings-inference's `Backend`: a backend says how wide its vectors are and how it wants batches
//! (padded to a common length, or packed end to end), and turns a [`TokenBatch`] into mean-pooled f32 vectors.
//! Two implementations sit behind it:
//!
//! - [`candle`]: candle-transformers' BERT in f32, f16 or bf16 on the CPU, CUDA or Metal (padded batches);
//! - [`int16`]: emoarc's own CPU encoder, linear layers in 16-bit integers (packed batches, no padding).
//!
//! The public choice is [`Backend`], which cannot express nonsense (int16 has no device to name), with
//! [`Backend::Auto`] as the default everywhere (library, CLI, server). This module owns the choice and its
//! resolution; the model folder and the head are [`crate::model`]'s, batching and text [`crate::estimator`]'s.

pub mod candle;
pub mod config;
pub mod int16;

use crate::error::{Error, Result};
use candle_core::Device;
use config::EncoderConfig;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeviceChoice {
    /// CUDA if this build has it and a GPU answers, then Metal likewise, else CPU.
    #[default]
    Auto,
    /// The CPU; always available. Written `cpu`.
    Cpu,
    /// The CUDA GPU with this 0-based ordinal (`cuda` alone is `cuda:0`); needs the `cuda` build feature, and
    /// opening one that is missing is an [`Error::Device`].
    Cuda(usize),
    /// The Metal GPU with this 0-based ordinal (`metal` alone is `metal:0`); needs the `metal` build feature,
    /// and opening one that is missing is an [`Error::Device`].
    Metal(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let ordinal = |rest: &str| -> Result<usize> {
            if rest.is_empty() {
                return Ok(0);
            }
            rest.strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::Config(format!("bad device {s:?}")))
        };
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            _ if s.starts_with("cuda") => Ok(DeviceChoice::Cuda(ordinal(&s[4..])?)),
            _ if s.starts_with("metal") => Ok(DeviceChoice::Metal(ordinal(&s[5..])?)),
            _ => Err(Error::Config(format!("device must be auto, cpu, cuda[:N] or metal[:N], not {s:?}"))),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceChoice {
    /// The first GPU this build can drive and that answers (CUDA, then Metal), if any.
    pub fn first_gpu() -> Option<DeviceChoice> {
        probe_gpu().map(|(choice, _)| choice)
    }

    /// Opens the device; a device this build lacks is a typed error, never a silent fallback.
    pub(crate) fn open(self) -> Result<Device> {
        let unavailable = |requested: String, e: candle_core::Error| Error::Device {
            requested,
            reason: e.to_string(),
        };
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => Device::new_cuda(n).map_err(|e| unavailable(format!("cuda:{n}"), e)),
            DeviceChoice::Metal(n) => Device::new_metal(n).map_err(|e| unavailable(format!("metal:{n}"), e)),
            DeviceChoice::Auto => Ok(probe_gpu().map_or(Device::Cpu, |(_, device)| device)),
        }
    }
}

/// A float format candle computes the encoder in (the head always runs in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FloatType {
    /// 32-bit floats: the reference.
    F32,
    /// IEEE half precision: the GPU default.
    F16,
    /// bfloat16: half the memory of f32 with f32's range.
    BF16,
}

impl FloatType {
    pub(crate) fn dtype(self) -> candle_core::DType {
        match self {
            FloatType::F32 => candle_core::DType::F32,
            FloatType::F16 => candle_core::DType::F16,
            FloatType::BF16 => candle_core::DType::BF16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FloatType::F32 => "f32",
            FloatType::F16 => "f16",
            FloatType::BF16 => "bf16",
        }
    }
}

/// Which backend runs the encoder. Every value is runnable on some machine: the int16 path is CPU-only, so it
/// has no device to get wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The fastest backend measured for this machine: candle f16 on a GPU when one answers; on the CPU the int16
    /// path where the CPU has integer dot-product instructions (AVX-512 VNNI, or AVX2's `vpmaddwd`), else
    /// candle f32. See [`Backend::resolve`].
    #[default]
    Auto,
    /// candle in a float format on a device.
    Candle {
        /// The format the encoder computes in.
        dtype: FloatType,
        /// Where it runs.
        device: DeviceChoice,
    },
    /// emoarc's quantized CPU encoder (16-bit integer linear layers, packed batches).
    Int16,
    /// The same encoder with the products that the head's int8 calibration lists in 8-bit integers (AVX-512
    /// VNNI's `vpdpbusd`), the rest in int16; a head without a calibration runs all int16. Needs a CPU with
    /// AVX-512 VNNI.
    Int8,
}

/// The names of the CLI's `--precision` flag; with a [`DeviceChoice`] they make a [`Backend`]
/// ([`Backend::from_flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Precision {
    /// Let [`Backend::Auto`] decide (on the given device).
    #[default]
    Auto,
    /// candle in f32.
    F32,
    /// candle in f16.
    F16,
    /// candle in bf16.
    BF16,
    /// The int16 CPU path.
    Int16,
    /// The int8 CPU path (int16 where the calibration keeps it).
    Int8,
}

impl Precision {
    fn float(self) -> Option<FloatType> {
        match self {
            Precision::F32 => Some(FloatType::F32),
            Precision::F16 => Some(FloatType::F16),
            Precision::BF16 => Some(FloatType::BF16),
            Precision::Auto | Precision::Int16 | Precision::Int8 => None,
        }
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::BF16),
            "int16" => Ok(Precision::Int16),
            "int8" => Ok(Precision::Int8),
            _ => Err(Error::Config(format!("precision must be auto, f32, f16, bf16, int16 or int8, not {s:?}"))),
        }
    }
}

impl Backend {
    /// Combines the CLI's `--precision` and `--device`: int16 with a GPU device is refused here, before any
    /// model is loaded, with a message that says what to pass instead.
    pub fn from_flags(precision: Precision, device: DeviceChoice) -> Result<Backend> {
        if let Some(dtype) = precision.float() {
            return Ok(Backend::Candle { dtype, device });
        }
        let cpu = matches!(device, DeviceChoice::Cpu | DeviceChoice::Auto);
        match precision {
            Precision::Int16 if cpu => Ok(Backend::Int16),
            Precision::Int8 if cpu => Ok(Backend::Int8),
            Precision::Int16 | Precision::Int8 => Err(Error::Backend {
                backend: if precision == Precision::Int8 { "int8" } else { "int16" }.into(),
                reason: format!("runs on the CPU only, not {device}; pass --device cpu or another precision"),
            }),
            _ if device == DeviceChoice::Auto => Ok(Backend::Auto),
            // Auto precision on a named device: what `Auto` would pick there.
            _ if device == DeviceChoice::Cpu => Ok(Backend::cpu_default()),
            _ => Ok(Backend::Candle {
                dtype: FloatType::F16,
                device,
            }),
        }
    }

    /// The CPU's best backend: int8 (with int16 where the calibration keeps it) on AVX-512 VNNI, int16 where
    /// another fast integer kernel exists, else candle f32.
    fn cpu_default() -> Backend {
        let kernel = int16::Kernel::detect();
        if kernel.is_vnni() {
            Backend::Int8
        } else if kernel.is_fast() {
            Backend::Int16
        } else {
            Backend::Candle {
                dtype: FloatType::F32,
                device: DeviceChoice::Cpu,
            }
        }
    }

    /// The concrete backend `Auto` stands for on this machine (other values are returned as they are, with a
    /// GPU device still to be opened): a GPU that answers gets candle f16; a CPU with integer dot products gets
    /// int16; any other CPU gets candle f32.
    pub fn resolve(self) -> Backend {
        self.resolve_opening().0
    }

    /// [`Backend::resolve`], keeping the GPU device that answered the probe so that loading does not open it
    /// a second time.
    fn resolve_opening(self) -> (Backend, Option<Device>) {
        match self {
            Backend::Auto => match probe_gpu() {
                Some((device, opened)) => (Backend::Candle { dtype: FloatType::F16, device }, Some(opened)),
                None => (Backend::cpu_default(), None),
            },
            other => (other, None),
        }
    }
}

/// Opens the first GPU that answers (CUDA 0, then Metal 0) and returns it with its choice.
fn probe_gpu() -> Option<(DeviceChoice, Device)> {
    if candle_core::utils::cuda_is_available() {
        if let Ok(device) = Device::new_cuda(0) {
            return Some((DeviceChoice::Cuda(0), device));
        }
    }
    if candle_core::utils::metal_is_available() {
        if let Ok(device) = Device::new_metal(0) {
            return Some((DeviceChoice::Metal(0), device));
        }
    }
    None
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Auto => f.write_str("auto"),
            Backend::Candle { dtype, device } => write!(f, "candle {} on {}", dtype.name(), device),
            Backend::Int16 => f.write_str("int16"),
            Backend::Int8 => f.write_str("int8"),
        }
    }
}

/// How a backend wants its sequences batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Batching {
    /// Padded to the batch's longest member: the estimator bounds `batch size x padded length`.
    Padded,
    /// Packed end to end with no padding: the estimator bounds the real token count.
    Packed,
}

/// Sequences of token ids to embed, special tokens included, each no longer than the model's maximum.
#[derive(Debug, Clone, Copy)]
pub struct TokenBatch<'a> {
    /// The sequences, in the order their vectors come back.
    pub seqs: &'a [&'a [u32]],
    /// The id padded batches are filled with.
    pub pad_id: u32,
    /// How many leading tokens of each sequence the mean covers: a text read with the reply it answers runs as
    /// `[CLS] text [SEP] reply [SEP]`, attends to all of it and pools only `[CLS] text [SEP]`. `None`: every
    /// sequence pools all its tokens.
    pub pooled: Option<&'a [usize]>,
}

impl TokenBatch<'_> {
    /// The longest sequence's length (what a padded backend pads to).
    pub fn max_len(&self) -> usize {
        self.seqs.iter().map(|s| s.len()).max().unwrap_or(0)
    }

    /// How many leading tokens of sequence `i` are pooled (all of them unless [`pooled`](Self::pooled) says
    /// fewer; never more than the sequence has, nor fewer than one).
    pub fn pooled_len(&self, i: usize) -> usize {
        let len = self.seqs[i].len();
        self.pooled.map_or(len, |p| p[i].clamp(1, len.max(1)))
    }

    /// Whether sequence `i` holds context after its text (tokens it attends to but does not pool).
    pub fn has_context(&self, i: usize) -> bool {
        self.pooled_len(i) < self.seqs[i].len()
    }
}

/// What runs the encoder. Implementations return the mean-pooled last-layer vectors, `[seqs, hidden]`
/// row-major, in f32, pooled over [`TokenBatch::pooled_len`] leading tokens of each sequence, and must give each
/// sequence the same vector whatever else is in its batch.
pub(crate) trait EncoderBackend: Send + Sync {
    /// Width of the pooled vectors.
    fn hidden_size(&self) -> usize;
    /// How batches should be formed for this backend.
    fn batching(&self) -> Batching;
    /// Pooled vectors for every sequence of the batch.
    fn embed(&self, batch: &TokenBatch) -> Result<Vec<f32>>;
    /// What ran, for reports (`int16 (avx512-vnni)`, `candle f32 on cpu`).
    fn describe(&self) -> String;
    /// Whether it computes on the CPU (the default token budgets differ).
    fn on_cpu(&self) -> bool;
}

/// Loads the encoder for `backend` (after [`Backend::resolve`]): `config` read once, `weights` in order (later
/// files' tensors replace earlier ones', which is how a head's fine-tuned layers override the shared encoder),
/// and only the first `layers` layers; `int8` is the head's int8 calibration file, if it has one.
pub(crate) fn load(
    backend: Backend,
    config: &EncoderConfig,
    weights: &[PathBuf],
    layers: usize,
    int8: Option<&std::path::Path>,
) -> Result<Box<dyn EncoderBackend>> {
    let (backend, opened) = backend.resolve_opening();
    Ok(match backend {
        Backend::Int16 => Box::new(int16::QuantizedEncoder::load(config, weights, Some(layers), None)?),
        Backend::Int8 => {
            let kernel = int16::Kernel::detect();
            if !kernel.is_vnni() {
                return Err(Error::Backend {
                    backend: "int8".into(),
                    reason: format!("needs AVX-512 VNNI; this CPU runs the {kernel} kernel: use --precision int16"),
                });
            }
            let calibration = int8.map(int16::Int8Calibration::read).transpose()?;
            Box::new(int16::QuantizedEncoder::load_calibrated(config, weights, Some(layers), Some(kernel), calibration.as_ref())?)
        }
        Backend::Candle { dtype, device } => {
            let device = match opened {
                Some(device) => device,
                None => device.open()?,
            };
            Box::new(candle::Encoder::load(config, weights, Some(layers), dtype.dtype(), &device)?)
        }
        Backend::Auto => unreachable!("resolve() never returns Auto"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_make_only_runnable_backends() {
        assert_eq!(
            Backend::from_flags(Precision::F16, DeviceChoice::Cuda(1)).unwrap(),
            Backend::Candle {
                dtype: FloatType::F16,
                device: DeviceChoice::Cuda(1)
            }
        );
        assert_eq!(Backend::from_flags(Precision::Int16, DeviceChoice::Cpu).unwrap(), Backend::Int16);
        assert_eq!(Backend::from_flags(Precision::Int8, DeviceChoice::Auto).unwrap(), Backend::Int8);
        let err = Backend::from_flags(Precision::Int8, DeviceChoice::Cuda(0)).unwrap_err();
        assert!(err.to_string().contains("int8") && err.to_string().contains("--device cpu"), "{err}");
        let err = Backend::from_flags(Precision::Int16, DeviceChoice::Metal(0)).unwrap_err();
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(err.to_string().contains("--device cpu"), "{err}");
        assert_eq!(Backend::from_flags(Precision::Auto, DeviceChoice::Auto).unwrap(), Backend::Auto);
        assert!(matches!(
            Backend::from_flags(Precision::Auto, DeviceChoice::Cuda(0)).unwrap(),
            Backend::Candle { dtype: FloatType::F16, .. }
        ));
    }

    #[test]
    fn auto_resolves_to_a_concrete_backend() {
        let resolved = Backend::Auto.resolve();
        assert_ne!(resolved, Backend::Auto);
        // No GPU in a plain build: the CPU choice follows the kernel this CPU has.
        if !cfg!(any(feature = "cuda", feature = "metal")) {
            let kernel = int16::Kernel::detect();
            let expected = if kernel.is_vnni() {
                Backend::Int8
            } else if kernel.is_fast() {
                Backend::Int16
            } else {
                Backend::Candle { dtype: FloatType::F32, device: DeviceChoice::Cpu }
            };
            assert_eq!(resolved, expected, "{kernel}");
        }
    }

    #[test]
    fn precision_names() {
        assert_eq!("int16".parse::<Precision>().unwrap(), Precision::Int16);
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::BF16);
        assert_eq!("auto".parse::<Precision>().unwrap(), Precision::Auto);
        assert_eq!("int8".parse::<Precision>().unwrap(), Precision::Int8);
        assert!("int4".parse::<Precision>().is_err());
    }
}
