//! Int8 matrix products for the linear layers a calibration found safe to run in 8 bits (see
//! [`super::Int8Calibration`]). Naive int8 (per-token activations, per-channel weights) lost too much on BERT,
//! whose activations have a few outlier channels (worst cosine to f32 0.983 on the peer corpus); this is the
//! outlier-aware form: each input channel `j` is divided by a smoothing factor `s_j` on the activation side and
//! multiplied by it on the weight side (SmoothQuant), so the product is unchanged in exact arithmetic while the
//! activations' outliers move into the weights, which are quantized per output channel and take them well.
//!
//! A few input channels stay outliers even so (one channel of MiniLM's post-attention layer norm reaches 28
//! where the others stay below 5): those named at construction are taken out of the int8 product altogether
//! and computed in f32 beside it (LLM.int8()'s decomposition), so they no longer set every row's step size.
//!
//! Activations are quantized per row to u8 over the row's own range, `[min, max]` mapped onto `[0, 255]` with a
//! zero point (asymmetric: GELU's outputs barely go below zero, so a symmetric range would waste half the
//! levels), for `vpdpbusd` (u8 x i8, four products summed into each i32 lane: twice `vpdpwssd`'s
//! multiply-adds); the zero point is removed exactly afterwards by subtracting `zero x` the column's weight
//! sum. The VNNI kernel and the portable kernel compute the same integers and the same floats.

use super::aligned::Aligned;
use super::gemm::{for_each_block, portable_block, refit, Block, Kernel, TILE_N};

/// Inputs per `vpdpbusd` group (four u8 x i8 products per i32 lane).
const GROUP: usize = 4;
/// Packed weights per tile and per group of inputs.
const TILE_STEP: usize = TILE_N * GROUP;
/// Largest weight integer: symmetric 8-bit.
const LEVELS: f32 = 127.0;
/// Largest activation integer: unsigned 8-bit.
const STEPS: f32 = 255.0;

/// A linear layer `y = x W^T + b` with `diag(s) W^T` in 8-bit integers, one scale per output channel, packed in
/// the order the kernel reads it: per tile of 64 outputs, per group of 4 inputs, 64 x 4 values.
#[derive(Debug, Clone)]
pub struct Int8Linear {
    outputs: usize,
    inputs: usize,
    padded_inputs: usize,
    tiles: usize,
    packed: Aligned<i8>,
    /// Per input channel, `1 / s_j`: what activations are multiplied by before quantization (0 for the outlier
    /// channels, which the int8 product then sees as exact zeros).
    smooth_inv: Vec<f32>,
    /// The input channels computed in f32, and their weights transposed (`[outliers, outputs]`).
    outliers: Vec<usize>,
    outlier_weight: Vec<f32>,
    /// Per padded output column: `sum_j q_w[n, j]`, for the zero point's share of the integer sum.
    weight_sum: Vec<i32>,
    scale: Vec<f32>,
    bias: Vec<f32>,
}

impl Int8Linear {
    /// Quantizes `weight` (`[outputs, inputs]`, row-major) after multiplying input channel `j` by `smooth[j]`
    /// (positive; `1.0` everywhere is plain per-channel int8); the `outliers` input channels are kept in f32.
    pub fn new(weight: &[f32], bias: &[f32], outputs: usize, inputs: usize, smooth: &[f32], outliers: &[usize]) -> Int8Linear {
        assert_eq!(weight.len(), outputs * inputs, "weight shape");
        assert_eq!(bias.len(), outputs, "bias shape");
        assert_eq!(smooth.len(), inputs, "smoothing factors");
        assert!(outliers.iter().all(|&j| j < inputs), "outlier channel");
        let smooth_inv = smooth_inverse(smooth, outliers);
        let mut outlier_weight = vec![0f32; outliers.len() * outputs];
        for (o, &j) in outliers.iter().enumerate() {
            for n in 0..outputs {
                outlier_weight[o * outputs + n] = weight[n * inputs + j];
            }
        }
        let padded_inputs = inputs.div_ceil(GROUP) * GROUP;
        let groups = padded_inputs / GROUP;
        let tiles = outputs.div_ceil(TILE_N);
        let width = tiles * TILE_N;
        let mut packed = Aligned::zeroed(tiles * groups * TILE_STEP);
        let (mut scale, mut padded_bias, mut weight_sum) = (vec![0f32; width], vec![0f32; width], vec![0i32; width]);
        let mut row = vec![0f32; inputs];
        for n in 0..outputs {
            let s = grid_row(&weight[n * inputs..(n + 1) * inputs], smooth, &smooth_inv, &mut row);
            scale[n] = s;
            padded_bias[n] = bias[n];
            let (tile, lane) = (n / TILE_N, n % TILE_N);
            let mut sum = 0i32;
            for (k, &w) in row.iter().enumerate() {
                let q = grid_level(w, s);
                sum += q as i32;
                packed[(tile * groups + k / GROUP) * TILE_STEP + lane * GROUP + k % GROUP] = q;
            }
            weight_sum[n] = sum;
        }
        Int8Linear {
            outputs,
            inputs,
            padded_inputs,
            tiles,
            packed,
            smooth_inv,
            outliers: outliers.to_vec(),
            outlier_weight,
            weight_sum,
            scale,
            bias: padded_bias,
        }
    }

    /// Moves every weight the int8 product quantizes (all but the `outliers` input channels) onto the value its
    /// integer stands for, in place: `w = q s_n / s_j` with `q` the integer [`Int8Linear::new`] would store for
    /// it and `s_n` its output channel's scale. A product built from the result with the same smoothing factors
    /// and outliers then holds those weights exactly (each row's largest entry keeps its value, so the scales
    /// come out the same), and so do the f32 and int16 paths reading them: the int8 product's weight error
    /// becomes part of the model, where the evaluation can see it, instead of a difference between paths.
    /// Storing the result in f16 keeps that true: a relative error of 2^-11 moves `q <= 127` by under 0.07.
    pub fn snap_to_grid(weight: &mut [f32], outputs: usize, inputs: usize, smooth: &[f32], outliers: &[usize]) {
        assert_eq!(weight.len(), outputs * inputs, "weight shape");
        assert_eq!(smooth.len(), inputs, "smoothing factors");
        let smooth_inv = smooth_inverse(smooth, outliers);
        let mut row = vec![0f32; inputs];
        for w in weight.chunks_exact_mut(inputs) {
            let scale = grid_row(w, smooth, &smooth_inv, &mut row);
            for ((w, r), (s, keep)) in w.iter_mut().zip(&row).zip(smooth.iter().zip(&smooth_inv)) {
                if *keep != 0.0 {
                    *w = grid_level(*r, scale) as f32 * scale / s;
                }
            }
        }
    }

    /// Divides `x` (`[rows, inputs]`) by the smoothing factors and quantizes it per row into `rows`.
    pub fn quantize(&self, x: &[f32], rows: &mut Rows8, kernel: Kernel) {
        assert_eq!(x.len() % self.inputs, 0, "activation width");
        rows.quantize(x, self.inputs, self.padded_inputs, &self.smooth_inv, kernel);
        rows.outliers.clear();
        for row in x.chunks_exact(self.inputs) {
            rows.outliers.extend(self.outliers.iter().map(|&j| row[j]));
        }
    }

    /// `out[m, n] = x[m, :] . W[n, :] + b[n]` for every row of `x`; `out` is `[x.rows, outputs]`. Each element's
    /// arithmetic is the same whatever the thread split or the other rows.
    pub fn forward(&self, x: &Rows8, out: &mut [f32], kernel: Kernel, parallel: bool) {
        assert_eq!(x.width, self.padded_inputs, "activation width");
        assert_eq!(out.len(), x.rows * self.outputs, "output shape");
        // AMX takes a tile's rows all at once (it configures its tiles once for them), VNNI 6 at a time.
        let amx = kernel.is_amx() && self.padded_inputs % super::amx::TILE_K == 0;
        let step = if amx { x.rows } else { super::gemm::TILE_M };
        // SAFETY: `block` writes only its own rows and tile of `out`, which is `[x.rows, outputs]`.
        for_each_block(self.tiles, x.rows, step, out, parallel, |tile, row0, rows, out| unsafe {
            self.block(x, row0, rows, tile, out, kernel, amx)
        });
        if self.outliers.is_empty() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if kernel.is_vnni() {
            // SAFETY: a VNNI kernel exists only where `Kernel::detect` found AVX-512.
            return unsafe { add_outliers_avx512(out, &x.outliers, &self.outlier_weight, self.outputs) };
        }
        add_outliers(out, &x.outliers, &self.outlier_weight, self.outputs)
    }

    /// One block of rows (up to 6, or any number with `amx`) by 64 columns.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(&self, x: &Rows8, row0: usize, rows: usize, tile: usize, out: *mut f32, kernel: Kernel, amx: bool) {
        let groups = self.padded_inputs / GROUP;
        let col0 = tile * TILE_N;
        let block = Block {
            a: &x.data[row0 * x.width..(row0 + rows) * x.width],
            lda: x.width,
            b: &self.packed[tile * groups * TILE_STEP..(tile + 1) * groups * TILE_STEP],
            groups,
            row_scale: &x.scale[row0..row0 + rows],
            scale: &self.scale[col0..col0 + TILE_N],
            bias: &self.bias[col0..col0 + TILE_N],
            zero: &x.zero[row0..row0 + rows],
            weight_sum: &self.weight_sum[col0..col0 + TILE_N],
            // SAFETY: `out` points at `[x.rows, outputs]` floats (the caller's contract), so this is inside it.
            out: unsafe { out.add(row0 * self.outputs + col0) },
            ldo: self.outputs,
            cols: TILE_N.min(self.outputs - col0),
        };
        // SAFETY: the VNNI kernel runs only where `Kernel::detect` found its instructions, and AMX only where it
        // also found AMX usable (`is_amx`), on inputs a multiple of its tile's (`amx`, checked by `forward`); all
        // kernels write only the block's rows and columns.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if amx {
                return super::amx::int8_rows(&block, rows);
            }
            #[cfg(target_arch = "x86_64")]
            if kernel.is_vnni() {
                return super::gemm::vnni_rows::<true, _, _>(&block, rows);
            }
            let _ = (kernel, amx);
            portable_block::<u8, i8, GROUP>(&block, rows)
        }
    }
}

/// Per input channel, `1 / s_j`, and 0 for the outlier channels (which the int8 product then sees as zeros).
fn smooth_inverse(smooth: &[f32], outliers: &[usize]) -> Vec<f32> {
    let mut inv: Vec<f32> = smooth.iter().map(|s| 1.0 / s).collect();
    outliers.iter().for_each(|&j| inv[j] = 0.0);
    inv
}

/// One output channel of `diag(s) W^T` into `row` (zero on the outlier channels, where `smooth_inv` is 0), and
/// its int8 scale.
fn grid_row(weight: &[f32], smooth: &[f32], smooth_inv: &[f32], row: &mut [f32]) -> f32 {
    for ((r, w), (s, keep)) in row.iter_mut().zip(weight).zip(smooth.iter().zip(smooth_inv)) {
        *r = if *keep == 0.0 { 0.0 } else { w * s };
    }
    let max = super::ops::max_abs(row);
    if max > 0.0 {
        max / LEVELS
    } else {
        1.0
    }
}

/// The integer a smoothed weight `w` is stored as, in a channel of scale `scale`.
fn grid_level(w: f32, scale: f32) -> i8 {
    super::ops::round_even(w / scale).clamp(-LEVELS, LEVELS) as i8
}

/// `out[r, :] += sum_o values[r, o] weight[o, :]`: the f32 outlier channels' share of each output row.
#[inline(always)]
fn add_outliers(out: &mut [f32], values: &[f32], weight: &[f32], outputs: usize) {
    let k = weight.len() / outputs;
    // Four rows at a time, so each block of weights is read once for four rows: one row at a time streamed all
    // of them (8 channels x 1,152 outputs is 36 KB, more than L1) from L2 for every row.
    let mut rows = out.chunks_exact_mut(outputs * OUTLIER_ROWS).zip(values.chunks_exact(k * OUTLIER_ROWS));
    for (out, values) in &mut rows {
        add_outliers_rows::<OUTLIER_ROWS>(out, values, weight, outputs);
    }
    let done = out.len() / (outputs * OUTLIER_ROWS) * OUTLIER_ROWS;
    for (out, values) in out[done * outputs..].chunks_exact_mut(outputs).zip(values[done * k..].chunks_exact(k)) {
        add_outliers_rows::<1>(out, values, weight, outputs);
    }
}

/// Rows [`add_outliers`] does together.
const OUTLIER_ROWS: usize = 4;

/// [`add_outliers`] for `R` rows: 16 outputs of each row at a time, all outlier channels added in registers
/// before one store, each output's multiply-adds in channel order (so any `R` gives the same floats).
#[inline(always)]
fn add_outliers_rows<const R: usize>(out: &mut [f32], values: &[f32], weight: &[f32], outputs: usize) {
    const LANES: usize = 16;
    let k = weight.len() / outputs;
    let whole = outputs / LANES * LANES;
    for c in (0..whole).step_by(LANES) {
        let mut acc = [[0f32; LANES]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            *a = out[r * outputs + c..][..LANES].try_into().expect("16 outputs");
        }
        for o in 0..k {
            let w: &[f32; LANES] = weight[o * outputs + c..][..LANES].try_into().expect("16 weights");
            for (r, a) in acc.iter_mut().enumerate() {
                let v = values[r * k + o];
                for l in 0..LANES {
                    a[l] = v.mul_add(w[l], a[l]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            out[r * outputs + c..][..LANES].copy_from_slice(a);
        }
    }
    for r in 0..R {
        let row = &mut out[r * outputs + whole..(r + 1) * outputs];
        for (o, w) in weight.chunks_exact(outputs).enumerate() {
            let v = values[r * k + o];
            row.iter_mut().zip(&w[whole..]).for_each(|(y, w)| *y = v.mul_add(*w, *y));
        }
    }
}

/// The same compiled for AVX-512 (16 lanes where the baseline target has 4). Measured in process on the peer
/// corpus (`cargo bench --bench roofline`, two alternating runs each): with the baseline loop the shipped
/// int8 path ran at 0.95-0.96x the int16 one, with this one at 1.15-1.31x.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn add_outliers_avx512(out: &mut [f32], values: &[f32], weight: &[f32], outputs: usize) {
    add_outliers(out, values, weight, outputs)
}

/// Rows of activations for [`Int8Linear`]: smoothed and quantized per row to u8 with a zero point.
#[derive(Debug, Clone, Default)]
pub struct Rows8 {
    /// Rows quantized.
    pub rows: usize,
    /// Values per row (inputs rounded up to the group; the padding holds the zero point, i.e. zero).
    pub width: usize,
    data: Aligned<u8>,
    scale: Vec<f32>,
    zero: Vec<i32>,
    /// The outlier channels' values, `[rows, outliers]`, in f32.
    outliers: Vec<f32>,
}

impl Rows8 {
    /// Bytes allocated.
    pub(super) fn bytes(&self) -> usize {
        self.data.bytes() + (self.scale.capacity() + self.zero.capacity() + self.outliers.capacity()) * 4
    }

    fn quantize(&mut self, x: &[f32], cols: usize, width: usize, smooth_inv: &[f32], kernel: Kernel) {
        let rows = x.len() / cols;
        self.rows = rows;
        self.width = width;
        self.data.resize(rows * width);
        refit(&mut self.scale, rows);
        refit(&mut self.zero, rows);
        #[cfg(target_arch = "x86_64")]
        if kernel.is_vnni() {
            // SAFETY: a VNNI kernel exists only where `Kernel::detect` found AVX-512.
            return unsafe { quantize8_avx512(x, cols, width, smooth_inv, self) };
        }
        let _ = kernel;
        quantize8_rows(x, cols, width, smooth_inv, self)
    }
}

/// The same code compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn quantize8_avx512(x: &[f32], cols: usize, width: usize, smooth_inv: &[f32], out: &mut Rows8) {
    quantize8_rows(x, cols, width, smooth_inv, out)
}

#[inline(always)]
fn quantize8_rows(x: &[f32], cols: usize, width: usize, smooth_inv: &[f32], out: &mut Rows8) {
    let rows = out.data.chunks_exact_mut(width).zip(out.scale.iter_mut()).zip(out.zero.iter_mut());
    for (src, ((dst, scale), zero)) in x.chunks_exact(cols).zip(rows) {
        // The smoothed row's range, in 16 lanes so that it vectorizes.
        let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
        let tail = src.len() - src.len() % 16;
        for (c, s) in src[..tail].chunks_exact(16).zip(smooth_inv.chunks_exact(16)) {
            for i in 0..16 {
                let v = c[i] * s[i];
                lo[i] = if v < lo[i] { v } else { lo[i] };
                hi[i] = if v > hi[i] { v } else { hi[i] };
            }
        }
        let (mut min, mut max) = (0f32, 0f32);
        let rest = src[tail..].iter().zip(&smooth_inv[tail..]).map(|(v, s)| v * s);
        for v in lo.into_iter().chain(hi).chain(rest) {
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
        }
        // The range always holds 0 (both start there), so the zero point is an integer in [0, 255] and zero
        // itself (the padding) is exact.
        let s = if max > min { (max - min) / STEPS } else { 1.0 };
        let inv = 1.0 / s;
        let z = super::ops::round_even(-min * inv).clamp(0.0, STEPS);
        *scale = s;
        *zero = z as i32;
        dst[cols..].fill(z as u8);
        for ((d, v), k) in dst.iter_mut().zip(src).zip(smooth_inv) {
            // Within [0, 255] up to rounding: adding 1.5 * 2^23 rounds (ties to even) into the low mantissa
            // bits; the clamp keeps a value that rounds past an end inside the byte.
            let q = ((v * k) * inv + z).clamp(0.0, STEPS);
            *d = ((q + 12_582_912.0).to_bits() & 0xff) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm::tests::{assert_near_f32, pseudo_random};
    use super::*;

    #[test]
    fn int8_kernels_agree_bit_for_bit_and_approximate_f32() {
        // Odd sizes: a partial row block, a partial column tile, inputs not a multiple of the group; one
        // outlier input channel, which the smoothing factor takes into the weights.
        let (m, k, n) = (13, 70, 83);
        let w = pseudo_random(n * k, 1);
        let b = pseudo_random(n, 2);
        let mut x = pseudo_random(m * k, 3);
        for r in 0..m {
            x[r * k + 5] *= 30.0;
        }
        let mut smooth = vec![1.0f32; k];
        smooth[5] = 30f32.sqrt();
        let layer = Int8Linear::new(&w, &b, n, k, &smooth, &[11]);
        let mut q = Rows8::default();
        layer.quantize(&x, &mut q, Kernel::portable());
        let mut portable = vec![0f32; m * n];
        layer.forward(&q, &mut portable, Kernel::portable(), true);
        let fast_kernel = Kernel::detect();
        if fast_kernel.is_vnni() {
            let mut q_fast = Rows8::default();
            layer.quantize(&x, &mut q_fast, fast_kernel);
            assert_eq!((&q_fast.data, &q_fast.scale, &q_fast.zero), (&q.data, &q.scale, &q.zero), "quantized rows");
            let mut fast = vec![0f32; m * n];
            layer.forward(&q_fast, &mut fast, fast_kernel, false);
            assert_eq!(fast, portable, "{fast_kernel} against the portable kernel");
        }
        // 8 bits each side over 70 inputs, one of them 30 times the others.
        assert_near_f32(&portable, &x, &w, &b, (m, k, n), 0.6);
    }

    #[test]
    fn amx_tiles_and_vnni_agree_bit_for_bit_with_the_portable_kernel() {
        // Row counts around the tiles' 16 and the kernel's blocks of 32 (a lone top tile, top and bottom, a
        // short bottom); 128 and 192 inputs (two and three tile steps) and 100 (not a tile multiple: VNNI);
        // 83 outputs (a partial column tile); an outlier channel and zero points from GELU-like rows.
        let kernels = [Kernel::detect(), Kernel::detect().without_amx()];
        for k in [128, 192, 100] {
            let n = 83;
            let w = pseudo_random(n * k, 7);
            let layer = Int8Linear::new(&w, &pseudo_random(n, 8), n, k, &vec![1.5; k], &[3]);
            for m in [1, 5, 15, 16, 17, 31, 32, 33, 48, 70] {
                let x: Vec<f32> = pseudo_random(m * k, m as u32).iter().map(|v| v.max(-0.17) * 3.0).collect();
                let mut q = Rows8::default();
                layer.quantize(&x, &mut q, Kernel::portable());
                let mut portable = vec![0f32; m * n];
                layer.forward(&q, &mut portable, Kernel::portable(), false);
                for kernel in kernels.into_iter().filter(|k| k.is_vnni()) {
                    let mut fast = vec![f32::NAN; m * n];
                    layer.forward(&q, &mut fast, kernel, m > 20);
                    assert_eq!(fast, portable, "{kernel}, {m} rows, {k} inputs");
                }
            }
        }
    }

    #[test]
    fn smoothing_and_f32_outlier_channels_help_with_outliers() {
        let (m, k, n) = (8, 64, 64);
        let w = pseudo_random(n * k, 4);
        let mut x = pseudo_random(m * k, 5);
        for r in 0..m {
            x[r * k + 9] *= 50.0;
        }
        let exact: Vec<f32> = (0..m * n)
            .map(|e| (0..k).map(|t| x[(e / n) * k + t] * w[(e % n) * k + t]).sum::<f32>())
            .collect();
        let error = |smooth: &[f32], outliers: &[usize]| {
            let layer = Int8Linear::new(&w, &vec![0.0; n], n, k, smooth, outliers);
            let mut q = Rows8::default();
            layer.quantize(&x, &mut q, Kernel::portable());
            let mut out = vec![0f32; m * n];
            layer.forward(&q, &mut out, Kernel::portable(), false);
            out.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
        };
        let mut smooth = vec![1.0f32; k];
        let plain = error(&smooth, &[]);
        let kept_apart = error(&smooth, &[9]);
        smooth[9] = 50f32.sqrt();
        let smoothed = error(&smooth, &[]);
        assert!(smoothed < plain * 0.7, "smoothed {smoothed} vs plain {plain}");
        // In f32, the outlier no longer sets the step size at all.
        assert!(kept_apart < smoothed * 0.7, "kept apart {kept_apart} vs smoothed {smoothed}");
    }

    #[test]
    fn weights_on_the_grid_keep_their_integers_through_f16_and_lose_nothing_in_int8() {
        let (m, k, n) = (9, 96, 70);
        let mut w = pseudo_random(n * k, 7);
        let b = pseudo_random(n, 8);
        let mut x = pseudo_random(m * k, 9);
        for r in 0..m {
            x[r * k + 3] *= 20.0;
            w[r * k + 40] *= 6.0; // a weight outlier in some rows
        }
        let mut smooth: Vec<f32> = (0..k).map(|j| 0.5 + (j % 7) as f32 * 0.25).collect();
        smooth[3] = 20f32.sqrt();
        let outliers = [17, 60];
        let mut snapped = w.clone();
        Int8Linear::snap_to_grid(&mut snapped, n, k, &smooth, &outliers);
        // Outlier channels are computed in f32: left as they were. Every other weight moved by at most half a step.
        for (row, (old, new)) in w.chunks_exact(k).zip(snapped.chunks_exact(k)).enumerate() {
            let step = old.iter().zip(&smooth).map(|(w, s)| (w * s).abs()).enumerate()
                .filter(|(j, _)| !outliers.contains(j)).map(|(_, v)| v).fold(0f32, f32::max) / LEVELS;
            for (j, (a, b)) in old.iter().zip(new).enumerate() {
                if outliers.contains(&j) {
                    assert_eq!(a, b);
                } else {
                    assert!(((a - b) * smooth[j]).abs() <= step * 0.5 + 1e-6, "row {row} input {j}: {a} -> {b}");
                }
            }
        }
        // Stored in f16 and read back, the weights give the same integers (and nearly the same scales).
        let f16: Vec<f32> = snapped.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
        let (from_original, from_f16) = (Int8Linear::new(&w, &b, n, k, &smooth, &outliers), Int8Linear::new(&f16, &b, n, k, &smooth, &outliers));
        assert_eq!(from_original.packed, from_f16.packed);
        assert_eq!(from_original.weight_sum, from_f16.weight_sum);
        for (a, b) in from_original.scale.iter().zip(&from_f16.scale) {
            assert!((a - b).abs() <= a * 1e-3, "{a} vs {b}");
        }
        // So the int8 product of the snapped weights differs from their f32 product by the activations' rounding
        // alone: less than the original weights' int8 product differs from theirs.
        let error = |weight: &[f32]| {
            let layer = Int8Linear::new(weight, &b, n, k, &smooth, &outliers);
            let mut q = Rows8::default();
            layer.quantize(&x, &mut q, Kernel::portable());
            let mut out = vec![0f32; m * n];
            layer.forward(&q, &mut out, Kernel::portable(), false);
            (0..m * n)
                .map(|e| {
                    let exact = (0..k).map(|t| x[(e / n) * k + t] * weight[(e % n) * k + t]).sum::<f32>() + b[e % n];
                    (out[e] - exact).powi(2)
                })
                .sum::<f32>()
        };
        let (before, after) = (error(&w), error(&f16));
        assert!(after < before * 0.7, "squared error with snapped weights {after} vs original {before}");
    }

    #[test]
    fn outlier_channels_add_the_same_floats_whatever_rows_go_together() {
        // 7 rows (a block of 4 and 3 alone), 37 outputs (two whole groups of 16 and a tail), 3 channels.
        let (rows, outputs, k) = (7, 37, 3);
        let (values, weight, start) = (pseudo_random(rows * k, 10), pseudo_random(k * outputs, 11), pseudo_random(rows * outputs, 12));
        let mut together = start.clone();
        add_outliers(&mut together, &values, &weight, outputs);
        for r in 0..rows {
            let mut alone = start[r * outputs..(r + 1) * outputs].to_vec();
            add_outliers(&mut alone, &values[r * k..(r + 1) * k], &weight, outputs);
            assert_eq!(alone, together[r * outputs..(r + 1) * outputs], "row {r}");
            for (n, y) in alone.iter().enumerate() {
                let exact = start[r * outputs + n] as f64
                    + (0..k).map(|o| values[r * k + o] as f64 * weight[o * outputs + n] as f64).sum::<f64>();
                assert!((*y as f64 - exact).abs() < 1e-5, "row {r} output {n}: {y} vs {exact}");
            }
        }
    }

    #[test]
    fn zero_rows_give_the_bias() {
        let layer = Int8Linear::new(&pseudo_random(8, 6), &[0.5, -0.25], 2, 4, &[1.0; 4], &[1]);
        let mut q = Rows8::default();
        layer.quantize(&[0.0; 4], &mut q, Kernel::detect());
        let mut out = vec![9f32; 2];
        layer.forward(&q, &mut out, Kernel::detect(), false);
        assert_eq!(out, vec![0.5, -0.25]);
    }
}
