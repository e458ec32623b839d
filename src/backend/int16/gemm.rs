//! Integer matrix products for the encoder's linear layers: weights quantized once per output channel and
//! activations per row at run time, both to 16-bit integers with as many bits as the i32 sums allow (12 and 12
//! for 384 inputs, 11 and 11 for 1536), summed exactly in i32 and rescaled to f32. Int8 activations with int8
//! weights were measured first and lost too much (worst cosine to f32 0.983 on the peer corpus, intensities
//! off by up to 0.17; 14-bit activations with int8 weights still 0.065): BERT's activations have outlier
//! channels, and the trained head magnifies small errors. One AVX-512 VNNI kernel (`vpdpwssd`, 32
//! multiply-adds per instruction, twice f32 FMA's rate) and one portable kernel compute the same integers, so
//! the fast path can be checked against plain Rust bit for bit.

use super::aligned::Aligned;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output columns per tile: four 16-lane vectors.
pub(super) const TILE_N: usize = 64;
/// Rows per micro-kernel call: 6 rows x 4 vectors = 24 accumulators, which with the 4 weight vectors and the
/// broadcast row fits the 32 vector registers.
pub(super) const TILE_M: usize = 6;
/// Inputs per VNNI group (`vpdpwssd` sums pairs of 16-bit products).
const GROUP: usize = 2;
/// Packed weights per tile and per group of inputs.
const TILE_STEP: usize = TILE_N * GROUP;

/// Which kernel computes the products. A value can only come from [`Kernel::detect`] (the fastest kernel this
/// CPU runs) or [`Kernel::portable`], so safe code cannot ask for instructions the CPU lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// AVX-512 VNNI, with the products on Intel AMX tiles (`tdpbusd`: a 16 x 64 by 64 x 16 tile product per
    /// instruction) where the CPU has AMX-INT8 and the OS lets this process use it (see [`super::amx`]).
    Amx,
    /// AVX-512 VNNI (`vpdpwssd`): 32 multiply-adds per instruction, twice f32 FMA's.
    Vnni,
    /// AVX2 (`vpmaddwd` + `vpaddd`): 16 multiply-adds per pair of instructions, for CPUs without AVX-512.
    Avx2,
    /// Plain Rust; the reference and the fallback for CPUs without VNNI.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return Kernel(if super::amx::available() { Kind::Amx } else { Kind::Vnni });
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Kernel(Kind::Avx2);
        }
        Kernel(Kind::Portable)
    }

    /// The plain-Rust reference kernel, which runs everywhere.
    pub fn portable() -> Kernel {
        Kernel(Kind::Portable)
    }

    /// Whether this is a vectorised integer kernel (what makes the int16 path faster than candle's f32).
    pub fn is_fast(self) -> bool {
        self.0 != Kind::Portable
    }

    /// Whether this is the AVX-512 VNNI kernel (true only on CPUs that have it): the one that runs int8
    /// products, and the one `auto` runs them on.
    pub fn is_vnni(self) -> bool {
        matches!(self.0, Kind::Vnni | Kind::Amx)
    }

    /// Whether the products run on AMX tiles (true only where [`super::amx`] found AMX-INT8 usable).
    pub fn is_amx(self) -> bool {
        self.0 == Kind::Amx
    }

    /// The same kernel with the products on AVX-512 VNNI instead of AMX tiles: both compute the same integers,
    /// so the output is the same; for comparing the two (`cargo bench --bench roofline`, the kernel tests).
    pub fn without_amx(self) -> Kernel {
        match self.0 {
            Kind::Amx => Kernel(Kind::Vnni),
            kind => Kernel(kind),
        }
    }

    /// Whether this is the AVX2 kernel; true only on CPUs with AVX2 and FMA.
    pub(crate) fn is_avx2(self) -> bool {
        self.0 == Kind::Avx2
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Amx => "avx512-vnni+amx",
            Kind::Vnni => "avx512-vnni",
            Kind::Avx2 => "avx2",
            Kind::Portable => "portable",
        })
    }
}

/// A linear layer `y = x W^T + b` with `W` in 16-bit integers, one scale per output channel,
/// packed in the order the kernel reads it: per tile of 64 outputs, per pair of inputs, 64 x 2 values.
#[derive(Debug, Clone)]
pub struct QuantLinear {
    outputs: usize,
    inputs: usize,
    /// Inputs rounded up to a multiple of the VNNI group.
    padded_inputs: usize,
    tiles: usize,
    packed: Aligned<i16>,
    /// Per padded output column: weight scale and bias.
    scale: Vec<f32>,
    bias: Vec<f32>,
    /// The largest activation integer for which no i32 sum over `inputs` can overflow.
    activation_max: f32,
    /// The same weights as two byte planes for AMX, where this process can use it and the inputs are a
    /// multiple of its tile's 64 (see [`BytePlanes`]).
    planes: Option<BytePlanes>,
}

/// 16-bit integers split into bytes, `v = 256 hi + lo` with `lo` unsigned and `hi` signed, each plane packed
/// as AMX reads it (see [`super::amx::tile_packing`]). AMX has no
/// 16-bit product, but four byte products (`lo x lo`, `lo x hi`, `hi x lo`, `hi x hi`, each exact in i32)
/// recombined with shifts give the int16 sum exactly: wrapping i32 arithmetic is exact modulo 2^32, and the
/// layer's bit budget keeps the true sum inside i32. So AMX and VNNI give the same integers and floats.
#[derive(Debug, Clone)]
struct BytePlanes {
    lo: Aligned<u8>,
    hi: Aligned<i8>,
}

impl BytePlanes {
    /// The planes of the VNNI packing `packed` (`tiles` tiles of `inputs / 2` pairs).
    fn new(packed: &[i16], tiles: usize, inputs: usize) -> BytePlanes {
        const G8: usize = 4;
        let (pairs, groups) = (inputs / GROUP, inputs / G8);
        let mut lo = Aligned::zeroed(tiles * groups * TILE_N * G8);
        let mut hi = Aligned::zeroed(tiles * groups * TILE_N * G8);
        for tile in 0..tiles {
            for k in 0..inputs {
                for lane in 0..TILE_N {
                    let v = packed[(tile * pairs + k / GROUP) * TILE_STEP + lane * GROUP + k % GROUP];
                    let at = super::amx::tile_packing(tile, lane, k, groups);
                    (lo[at], hi[at]) = split_bytes(v);
                }
            }
        }
        BytePlanes { lo, hi }
    }
}

/// `v = 256 hi + lo`: the low byte unsigned, the high byte signed (an arithmetic shift).
#[inline(always)]
fn split_bytes(v: i16) -> (u8, i8) {
    (v as u8, (v >> 8) as i8)
}

impl QuantLinear {
    /// Quantizes `weight` (`[outputs, inputs]`, row-major, as PyTorch stores it) and `bias` (`[outputs]`).
    pub fn new(weight: &[f32], bias: &[f32], outputs: usize, inputs: usize) -> QuantLinear {
        assert_eq!(weight.len(), outputs * inputs, "weight shape");
        assert_eq!(bias.len(), outputs, "bias shape");
        let padded_inputs = inputs.div_ceil(GROUP) * GROUP;
        let tiles = outputs.div_ceil(TILE_N);
        let width = tiles * TILE_N;
        let mut packed = Aligned::zeroed(tiles * (padded_inputs / GROUP) * TILE_STEP);
        let mut scale = vec![0f32; width];
        let mut padded_bias = vec![0f32; width];
        // |sum| <= inputs * weight_max * activation_max must stay below 2^31: split the bits evenly.
        let budget = i32::MAX as f64 / padded_inputs.max(1) as f64;
        let weight_max = budget.sqrt().floor().min(32767.0) as f32;
        let activation_max = (budget / weight_max as f64).floor().min(32767.0) as f32;
        for n in 0..outputs {
            let row = &weight[n * inputs..(n + 1) * inputs];
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 { max / weight_max } else { 1.0 };
            scale[n] = s;
            padded_bias[n] = bias[n];
            let (tile, lane) = (n / TILE_N, n % TILE_N);
            for (k, &w) in row.iter().enumerate() {
                let q = super::ops::round_even(w / s).clamp(-weight_max, weight_max) as i16;
                packed[(tile * (padded_inputs / GROUP) + k / GROUP) * TILE_STEP + lane * GROUP + k % GROUP] = q;
            }
        }
        let planes = (super::amx::available() && padded_inputs % super::amx::TILE_K == 0)
            .then(|| BytePlanes::new(&packed, tiles, padded_inputs));
        QuantLinear {
            outputs,
            inputs,
            padded_inputs,
            tiles,
            packed,
            scale,
            bias: padded_bias,
            activation_max,
            planes,
        }
    }

    /// Quantizes activations the way this layer's products need them (see [`QuantRows::quantize`]): as byte
    /// planes when `kernel` is AMX and this layer has them, else as 16-bit integers.
    pub fn quantize(&self, x: &[f32], rows: &mut QuantRows, kernel: Kernel) {
        assert_eq!(x.len() % self.inputs, 0, "activation width");
        let planes = kernel.is_amx() && self.planes.is_some();
        rows.quantize(x, self.inputs, self.activation_max, kernel, planes);
    }

    /// `out[m, n] = x[m, :] . W[n, :] + b[n]` for every row of `x`; `out` is `[x.rows, outputs]`. With `parallel`,
    /// output tiles are shared between rayon's threads; each element's arithmetic is the same whatever the split,
    /// so results depend neither on the thread count nor on the other rows.
    ///
    /// Rows quantized as byte planes (by `quantize` with an AMX kernel) must be multiplied with that kernel.
    pub fn forward(&self, x: &QuantRows, out: &mut [f32], kernel: Kernel, parallel: bool) {
        assert_eq!(x.width, self.padded_inputs, "activation width");
        assert_eq!(out.len(), x.rows * self.outputs, "output shape");
        assert!(!x.planes || (kernel.is_amx() && self.planes.is_some()), "rows quantized for AMX, {kernel} asked");
        // AMX takes a tile's rows all at once (it configures its tiles once for them), VNNI 6 at a time.
        let step = if x.planes { x.rows } else { TILE_M };
        // SAFETY: `block` writes only its own rows and tile of `out`, which is `[x.rows, outputs]`.
        for_each_block(self.tiles, x.rows, step, out, parallel, |tile, row0, rows, out| unsafe {
            self.block(x, row0, rows, tile, out, kernel)
        });
    }

    /// The block of `x`'s rows from `row0` held in `a` (the activations or a plane of them) by tile `tile`'s
    /// packed weights `b` (`groups` groups of inputs), written into `out` (`[x.rows, outputs]`).
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_block<'a, A, W>(
        &'a self,
        a: &'a [A],
        b: &'a [W],
        groups: usize,
        x: &'a QuantRows,
        row0: usize,
        tile: usize,
        out: *mut f32,
    ) -> Block<'a, A, W> {
        let (col0, rows) = (tile * TILE_N, a.len().checked_div(x.width).unwrap_or(0));
        Block {
            a,
            lda: x.width,
            b,
            groups,
            row_scale: &x.scale[row0..row0 + rows],
            scale: &self.scale[col0..col0 + TILE_N],
            bias: &self.bias[col0..col0 + TILE_N],
            zero: &[],
            weight_sum: &[],
            // SAFETY: the caller's: `out` is `[x.rows, outputs]`, and row `row0` and column `col0` lie inside it.
            out: unsafe { out.add(row0 * self.outputs + col0) },
            ldo: self.outputs,
            cols: TILE_N.min(self.outputs - col0),
        }
    }

    /// One block of rows (up to 6, or any number for AMX) by 64 columns.
    unsafe fn block(&self, x: &QuantRows, row0: usize, rows: usize, tile: usize, out: *mut f32, kernel: Kernel) {
        // SAFETY: `out` points at `[x.rows, outputs]` floats (the caller's contract), so `row0 * outputs + col0` is inside
        // it; a fast kernel's `Kind` exists only where `Kernel::detect` found its instructions.
        unsafe {
            let groups = self.padded_inputs / GROUP;
            #[cfg(target_arch = "x86_64")]
            if let (true, Some(planes)) = (x.planes, &self.planes) {
                // Four bytes per group in the planes, as in the int8 products.
                let (g8, tile_bytes) = (self.padded_inputs / 4, self.padded_inputs * TILE_N);
                let span = row0 * x.width..(row0 + rows) * x.width;
                let lo = &planes.lo[tile * tile_bytes..(tile + 1) * tile_bytes];
                let block = self.tile_block(&x.lo[span.clone()], lo, g8, x, row0, tile, out);
                let hi = super::amx::HighBytes {
                    a: x.hi[span].as_ptr(),
                    b: planes.hi[tile * tile_bytes..(tile + 1) * tile_bytes].as_ptr(),
                };
                // SAFETY: rows are quantized as planes only with an AMX kernel and a layer with planes (asserted
                // by `forward`), whose inputs are a multiple of AMX's tile; the high planes have the low ones'
                // shapes.
                return super::amx::int16_rows(&block, hi, rows);
            }
            let b = &self.packed[tile * groups * TILE_STEP..(tile + 1) * groups * TILE_STEP];
            let a = &x.data[row0 * x.width..(row0 + rows) * x.width];
            let block = self.tile_block(a, b, groups, x, row0, tile, out);
            match kernel.0 {
                // SAFETY (the caller's): `Kind::Vnni` and `Kind::Amx` exist only where `Kernel::detect` found
                // AVX-512 VNNI.
                #[cfg(target_arch = "x86_64")]
                Kind::Vnni | Kind::Amx => vnni_rows::<false, _, _>(&block, rows),
                #[cfg(target_arch = "x86_64")]
                Kind::Avx2 => match rows {
                    // Six rows would need 24 accumulators: two calls of up to three rows each.
                    6 => {
                        avx2_tile::<3>(&block, 0);
                        avx2_tile::<3>(&block, 3)
                    }
                    5 => {
                        avx2_tile::<3>(&block, 0);
                        avx2_tile::<2>(&block, 3)
                    }
                    4 => {
                        avx2_tile::<2>(&block, 0);
                        avx2_tile::<2>(&block, 2)
                    }
                    3 => avx2_tile::<3>(&block, 0),
                    2 => avx2_tile::<2>(&block, 0),
                    _ => avx2_tile::<1>(&block, 0),
                },
                _ => portable_block::<i16, i16, GROUP>(&block, rows),
            }
    
        }
    }
}

/// Calls `block(tile, row0, rows, out)` for every block of up to `step` rows by one tile of output columns,
/// tiles shared between rayon's threads with `parallel`. `block` must write only its own block of `out`: each
/// element's arithmetic is then the same whatever the split, so results depend neither on the thread count
/// nor on the other rows.
pub(super) fn for_each_block(
    tiles: usize,
    rows: usize,
    step: usize,
    out: &mut [f32],
    parallel: bool,
    block: impl Fn(usize, usize, usize, *mut f32) + Sync,
) {
    let out_ptr = SharedOut(out.as_mut_ptr());
    let step = step.max(1);
    let tile = |tile: usize| {
        let out_ptr = &out_ptr;
        for row0 in (0..rows).step_by(step) {
            block(tile, row0, step.min(rows - row0), out_ptr.0);
        }
    };
    if parallel {
        use rayon::prelude::*;
        (0..tiles).into_par_iter().for_each(tile);
    } else {
        (0..tiles).for_each(tile);
    }
}

/// The raw output pointer, shared by the threads that write disjoint blocks of it.
struct SharedOut(*mut f32);
// SAFETY: only used for disjoint writes inside `QuantLinear::forward`, while the borrow of `out` is held.
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

/// Everything one micro-kernel call reads and where it writes: activations `A` and packed weights `W` (i16 and
/// i16 here, u8 and i8 for [`super::gemm8`]).
pub(super) struct Block<'a, A, W> {
    pub(super) a: &'a [A],
    pub(super) lda: usize,
    pub(super) b: &'a [W],
    pub(super) groups: usize,
    pub(super) row_scale: &'a [f32],
    pub(super) scale: &'a [f32],
    pub(super) bias: &'a [f32],
    /// The int8 path's activation zero points, per row, and its weight sums, per column: `zero[r] x
    /// weight_sum[c]` is subtracted from the integer sum before rescaling. Both empty for none (int16).
    pub(super) zero: &'a [i32],
    pub(super) weight_sum: &'a [i32],
    pub(super) out: *mut f32,
    pub(super) ldo: usize,
    pub(super) cols: usize,
}

/// Rows of activations quantized symmetrically per row to `[-max, max]` (max from the layer, about 2^13).
#[derive(Debug, Clone, Default)]
pub struct QuantRows {
    /// Rows quantized.
    pub rows: usize,
    /// Values per row (inputs rounded up to the VNNI group; the padding is zero).
    pub width: usize,
    data: Aligned<i16>,
    scale: Vec<f32>,
    /// Whether the rows are held as byte planes (`lo`, `hi`, see [`BytePlanes`]) for AMX instead of in `data`.
    planes: bool,
    lo: Aligned<u8>,
    hi: Aligned<i8>,
}

impl QuantRows {
    /// Bytes allocated.
    pub(super) fn bytes(&self) -> usize {
        self.data.bytes() + self.lo.bytes() + self.hi.bytes() + self.scale.capacity() * 4
    }

    /// Quantizes `x` (`[rows, cols]`, row-major) into this buffer, reusing its allocation.
    fn quantize(&mut self, x: &[f32], cols: usize, max_int: f32, kernel: Kernel, planes: bool) {
        let rows = x.len() / cols;
        let width = cols.div_ceil(GROUP) * GROUP;
        self.rows = rows;
        self.width = width;
        self.planes = planes;
        refit(&mut self.scale, rows);
        #[cfg(target_arch = "x86_64")]
        if planes {
            self.lo.resize(rows * width);
            self.hi.resize(rows * width);
            // SAFETY: planes are asked for only with an AMX kernel, which exists only where AVX-512 was found.
            return unsafe { quantize_planes_avx512(x, cols, width, max_int, self) };
        }
        self.data.resize(rows * width);
        match kernel.0 {
            // SAFETY: `Kind::Vnni` and `Kind::Amx` exist only where `Kernel::detect` found AVX-512.
            #[cfg(target_arch = "x86_64")]
            Kind::Vnni | Kind::Amx => unsafe { quantize_avx512(x, cols, width, max_int, &mut self.data, &mut self.scale) },
            // SAFETY: `Kind::Avx2` exists only where `Kernel::detect` found AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { quantize_avx2(x, cols, width, max_int, &mut self.data, &mut self.scale) },
            _ => quantize_rows(x, cols, width, max_int, &mut self.data, &mut self.scale),
        }
    }
}

/// Gives `v` the length `len`, keeping its allocation and whatever it held: for buffers the caller then
/// overwrites whole (quantized rows are rewritten for every product). Clearing them first, as this did, wrote
/// every byte twice: 2.3% of `emoarc score`'s time went to that `memset` (`perf record`).
pub(super) fn refit<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    v.resize(len, T::default());
}

/// The same code compiled for AVX-512, where rounding and the float-to-int conversion vectorize.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn quantize_avx512(x: &[f32], cols: usize, width: usize, max_int: f32, data: &mut [i16], scale: &mut [f32]) {
    quantize_rows(x, cols, width, max_int, data, scale)
}

/// The same code compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(x: &[f32], cols: usize, width: usize, max_int: f32, data: &mut [i16], scale: &mut [f32]) {
    quantize_rows(x, cols, width, max_int, data, scale)
}

#[inline(always)]
fn quantize_rows(x: &[f32], cols: usize, width: usize, max_int: f32, data: &mut [i16], scale: &mut [f32]) {
    for ((src, dst), scale) in x.chunks_exact(cols).zip(data.chunks_exact_mut(width)).zip(scale.iter_mut()) {
        let inv = row_step(src, max_int, scale);
        dst[cols..].fill(0);
        for (d, v) in dst.iter_mut().zip(src) {
            *d = to_i16(*v, inv);
        }
    }
}

/// [`quantize_rows`] into byte planes ([`split_bytes`] of the same integers), compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn quantize_planes_avx512(x: &[f32], cols: usize, width: usize, max_int: f32, rows: &mut QuantRows) {
    let planes = rows.lo.chunks_exact_mut(width).zip(rows.hi.chunks_exact_mut(width));
    for ((src, (lo, hi)), scale) in x.chunks_exact(cols).zip(planes).zip(rows.scale.iter_mut()) {
        let inv = row_step(src, max_int, scale);
        lo[cols..].fill(0);
        hi[cols..].fill(0);
        for ((lo, hi), v) in lo.iter_mut().zip(hi.iter_mut()).zip(src) {
            (*lo, *hi) = split_bytes(to_i16(*v, inv));
        }
    }
}

/// A row's step (stored in `scale`) for integers up to `max_int`, and its inverse, by which values are scaled.
#[inline(always)]
fn row_step(src: &[f32], max_int: f32, scale: &mut f32) -> f32 {
    let max = super::ops::max_abs(src);
    let s = if max > 0.0 { max / max_int } else { 1.0 };
    *scale = s;
    1.0 / s
}

/// `v * inv` rounded to an integer (ties to even).
#[inline(always)]
fn to_i16(v: f32, inv: f32) -> i16 {
    // |v * inv| <= max_int < 2^15, so adding 1.5 * 2^23 rounds it (ties to even) into the low mantissa bits as a
    // two's-complement integer: a vector add and mask instead of a checked conversion.
    ((v * inv + 12_582_912.0).to_bits() & 0xffff) as u16 as i16
}

/// The reference kernel: the same integer sums and the same f32 rescaling as the vector ones, for `G` inputs per
/// packed group (2 for int16, 4 for int8).
pub(super) unsafe fn portable_block<A: Copy + Into<i32>, W: Copy + Into<i32>, const G: usize>(blk: &Block<A, W>, rows: usize) {
    // SAFETY: `blk.out` addresses `rows` rows of `blk.ldo` floats with `blk.cols` columns each (see `block`).
    unsafe {
        for r in 0..rows {
            let a = &blk.a[r * blk.lda..(r + 1) * blk.lda];
            for c in 0..blk.cols {
                let mut acc = 0i32;
                for g in 0..blk.groups {
                    let w = &blk.b[g * TILE_N * G + c * G..][..G];
                    for i in 0..G {
                        acc += a[g * G + i].into() * w[i].into();
                    }
                }
                if !blk.zero.is_empty() {
                    acc -= blk.zero[r] * blk.weight_sum[c];
                }
                let y = acc as f32 * (blk.row_scale[r] * blk.scale[c]) + blk.bias[c];
                *blk.out.add(r * blk.ldo + c) = y;
            }
        }
    }
}

/// `acc + pairwise dot products of a and b` (i16 x i16, two per i32 lane), as the one `vpdpwssd` instruction;
/// with `INT8`, `vpdpbusd` (u8 in `a` x i8 in `b`, four per lane). Not the intrinsics: LLVM, tuning for a
/// generic x86-64, splits them (`vpmaddwd` + `vpaddd` for the first), which measured half the kernel's
/// throughput (two instructions on the same two ports for every multiply-add).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn vnni_dot<const INT8: bool>(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    // SAFETY: only called from `vnni_block`, which runs only where AVX-512 VNNI was detected.
    // An asm template must be a literal, so the two instructions share their operands through a macro.
    macro_rules! dot {
        ($insn:literal, $acc:ident) => {
            std::arch::asm!(
                concat!($insn, " {acc}, {a}, {b}"),
                acc = inout(zmm_reg) $acc,
                a = in(zmm_reg) a,
                b = in(zmm_reg) b,
                options(pure, nomem, nostack, preserves_flags)
            )
        };
    }
    unsafe {
        let mut acc = acc;
        if INT8 {
            dot!("vpdpbusd", acc);
        } else {
            dot!("vpdpwssd", acc);
        }
        acc
    }
}

/// Up to 6 rows by one tile with the VNNI kernel: int16 (`INT8 = false`, `Block<i16, i16>`) or int8
/// (`Block<u8, i8>`). The caller must hold a VNNI [`Kernel`] and a block laid out for that element width.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn vnni_rows<const INT8: bool, A, W>(blk: &Block<A, W>, rows: usize) {
    // SAFETY: the caller's contract (a VNNI kernel, so the CPU has the instructions; a well-formed block).
    unsafe {
        match rows {
            6 => vnni_block::<6, INT8, A, W>(blk),
            5 => vnni_block::<5, INT8, A, W>(blk),
            4 => vnni_block::<4, INT8, A, W>(blk),
            3 => vnni_block::<3, INT8, A, W>(blk),
            2 => vnni_block::<2, INT8, A, W>(blk),
            _ => vnni_block::<1, INT8, A, W>(blk),
        }
    }
}

/// `R` rows by one tile of 64 columns: `R x 4` accumulators; per group of inputs (2 i16 or 4 u8: 4 bytes
/// either way) the row's 4 activation bytes are broadcast to every lane and multiplied with the 4 weight
/// vectors (256 bytes), so one loop serves both widths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_block<const R: usize, const INT8: bool, A, W>(blk: &Block<A, W>) {
    // SAFETY: runs only where AVX-512 VNNI was detected; loads read one tile's packed weights (`groups` steps of
    // 256 bytes) and `R` rows of `lda` activations (4 bytes per group); `store_avx512` masks the stores.
    unsafe {
        debug_assert_eq!(std::mem::size_of::<A>() * if INT8 { 4 } else { 2 }, 4);
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        let a = blk.a.as_ptr() as *const u8;
        let lda = blk.lda * std::mem::size_of::<A>();
        let mut b = blk.b.as_ptr() as *const u8;
        for g in 0..blk.groups {
            let w0 = _mm512_loadu_si512(b as *const _);
            let w1 = _mm512_loadu_si512(b.add(64) as *const _);
            let w2 = _mm512_loadu_si512(b.add(128) as *const _);
            let w3 = _mm512_loadu_si512(b.add(192) as *const _);
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_epi32((a.add(r * lda + g * 4) as *const i32).read_unaligned());
                row[0] = vnni_dot::<INT8>(row[0], x, w0);
                row[1] = vnni_dot::<INT8>(row[1], x, w1);
                row[2] = vnni_dot::<INT8>(row[2], x, w2);
                row[3] = vnni_dot::<INT8>(row[3], x, w3);
            }
            b = b.add(256);
        }
        store_avx512(acc, blk);
    }
}

/// Rescales `R` rows of a tile's i32 sums to f32 (less the zero points' share, if any) and stores them, masked
/// to the tile's columns: the same arithmetic, in the same order, as [`portable_block`].
///
/// The sums come by value and the features match `vnni_block`'s so that this inlines there and they stay in
/// registers: taken by reference, the accumulator array lived on the stack, zeroed by a `memset` call before
/// every block (2% of `emoarc score`'s samples) for the case of no inputs at all.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn store_avx512<A, W, const R: usize>(acc: [[__m512i; 4]; R], blk: &Block<A, W>) {
    // SAFETY: runs only where AVX-512 was detected; `scale`, `bias` and `weight_sum` (when not empty) hold the
    // tile's 64 columns and `zero` its rows; stores are masked to `blk.cols` columns of `R` rows inside `out`.
    unsafe {
        for (r, row) in acc.iter().enumerate() {
            store_row_avx512(row, r, blk);
        }
    }
}

/// Row `r` of [`store_avx512`]: one row's sums for the tile's 64 columns, rescaled and stored.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub(super) unsafe fn store_row_avx512<A, W>(row: &[__m512i; 4], r: usize, blk: &Block<A, W>) {
    // SAFETY: as for `store_avx512`, with `r` one of the block's rows.
    unsafe {
        let rs = _mm512_set1_ps(blk.row_scale[r]);
        let zero = _mm512_set1_epi32(blk.zero.get(r).copied().unwrap_or(0));
        for (v, lane) in row.iter().enumerate() {
            let col = v * 16;
            if col >= blk.cols {
                break;
            }
            let mut sum = *lane;
            if !blk.zero.is_empty() {
                let sums = _mm512_loadu_si512(blk.weight_sum.as_ptr().add(col) as *const _);
                sum = _mm512_sub_epi32(sum, _mm512_mullo_epi32(zero, sums));
            }
            let s = _mm512_mul_ps(rs, _mm512_loadu_ps(blk.scale.as_ptr().add(col)));
            let y = _mm512_add_ps(
                _mm512_mul_ps(_mm512_cvtepi32_ps(sum), s),
                _mm512_loadu_ps(blk.bias.as_ptr().add(col)),
            );
            let left = blk.cols - col;
            let mask: __mmask16 = if left >= 16 { 0xffff } else { (1u16 << left) - 1 };
            _mm512_mask_storeu_ps(blk.out.add(r * blk.ldo + col), mask, y);
        }
    }
}

/// `R` rows (from `row`) by the tile's 64 columns with AVX2's 16 vector registers: the tile is done as two halves
/// of 32 columns, each with `R x 4` accumulators of 8 columns. `vpmaddwd` multiplies a broadcast pair of
/// activations with 8 columns' pairs of weights and sums each pair into i32, exactly as the portable kernel
/// does (|a|, |w| <= 2^13, so no pair sum saturates), then `vpaddd` accumulates. The rescaling is a multiply and
/// an add (no FMA), in the portable kernel's order, so both give the same floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile<const R: usize>(blk: &Block<i16, i16>, row: usize) {
    // SAFETY: runs only where AVX2 and FMA were detected; loads stay inside the tile's packed weights and the
    // `R` rows of activations from `row`; stores write at most `blk.cols` columns of those rows.
    unsafe {
        for half in 0..2 {
            let col0 = half * 32;
            if col0 >= blk.cols {
                break;
            }
            let mut acc = [[_mm256_setzero_si256(); 4]; R];
            let a = blk.a.as_ptr().add(row * blk.lda);
            let mut b = blk.b.as_ptr().add(col0 * GROUP);
            for g in 0..blk.groups {
                let w0 = _mm256_loadu_si256(b as *const __m256i);
                let w1 = _mm256_loadu_si256(b.add(16) as *const __m256i);
                let w2 = _mm256_loadu_si256(b.add(32) as *const __m256i);
                let w3 = _mm256_loadu_si256(b.add(48) as *const __m256i);
                for (r, lanes) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_epi32((a.add(r * blk.lda + g * GROUP) as *const i32).read_unaligned());
                    lanes[0] = _mm256_add_epi32(lanes[0], _mm256_madd_epi16(x, w0));
                    lanes[1] = _mm256_add_epi32(lanes[1], _mm256_madd_epi16(x, w1));
                    lanes[2] = _mm256_add_epi32(lanes[2], _mm256_madd_epi16(x, w2));
                    lanes[3] = _mm256_add_epi32(lanes[3], _mm256_madd_epi16(x, w3));
                }
                b = b.add(TILE_STEP);
            }
            for (r, lanes) in acc.iter().enumerate() {
                let rs = _mm256_set1_ps(blk.row_scale[row + r]);
                let out = blk.out.add((row + r) * blk.ldo);
                for (v, lane) in lanes.iter().enumerate() {
                    let col = col0 + v * 8;
                    if col >= blk.cols {
                        break;
                    }
                    let s = _mm256_mul_ps(rs, _mm256_loadu_ps(blk.scale.as_ptr().add(col)));
                    let y = _mm256_add_ps(
                        _mm256_mul_ps(_mm256_cvtepi32_ps(*lane), s),
                        _mm256_loadu_ps(blk.bias.as_ptr().add(col)),
                    );
                    let left = blk.cols - col;
                    if left >= 8 {
                        _mm256_storeu_ps(out.add(col), y);
                    } else {
                        let mut tmp = [0f32; 8];
                        _mm256_storeu_ps(tmp.as_mut_ptr(), y);
                        std::ptr::copy_nonoverlapping(tmp.as_ptr(), out.add(col), left);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Values in [-1, 1) from a fixed linear congruential sequence.
    pub(crate) fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn kernels_agree_bit_for_bit_and_approximate_f32() {
        // Odd sizes on purpose: a partial row block, a partial column tile and inputs not a multiple of 4.
        let (m, k, n) = (13, 70, 83);
        let w = pseudo_random(n * k, 1);
        let b = pseudo_random(n, 2);
        let x = pseudo_random(m * k, 3);
        let layer = QuantLinear::new(&w, &b, n, k);
        let mut q = QuantRows::default();
        layer.quantize(&x, &mut q, Kernel::portable());
        let mut portable = vec![0f32; m * n];
        layer.forward(&q, &mut portable, Kernel::portable(), true);
        let fast_kernel = Kernel::detect();
        require_fast_if_asked(fast_kernel);
        if fast_kernel.is_fast() {
            let mut fast = vec![0f32; m * n];
            layer.forward(&q, &mut fast, fast_kernel, false);
            assert_eq!(fast, portable, "{fast_kernel} against the portable kernel");
        }
        assert_near_f32(&portable, &x, &w, &b, (m, k, n), 0.02);
    }

    #[test]
    fn int16_on_amx_byte_planes_agrees_bit_for_bit_with_the_portable_kernel() {
        // Row counts around AMX's 16-row tiles; 128 and 1,536 inputs (12- and 11-bit integers, whose high
        // bytes run negative) and 100 (not a multiple of AMX's 64: VNNI); 83 outputs (a partial tile). Each
        // row's largest value and each weight row's largest weight quantize to the integer limits.
        for k in [128, 1536, 100] {
            let n = 83;
            let layer = QuantLinear::new(&pseudo_random(n * k, 11), &pseudo_random(n, 12), n, k);
            for m in [1, 5, 15, 16, 17, 33, 70] {
                let x: Vec<f32> = pseudo_random(m * k, 13 + m as u32).iter().map(|v| v * v * v * 4.0).collect();
                let mut q = QuantRows::default();
                layer.quantize(&x, &mut q, Kernel::portable());
                let mut portable = vec![0f32; m * n];
                layer.forward(&q, &mut portable, Kernel::portable(), false);
                for kernel in [Kernel::detect(), Kernel::detect().without_amx()].into_iter().filter(|k| k.is_fast()) {
                    let mut q_fast = QuantRows::default();
                    layer.quantize(&x, &mut q_fast, kernel);
                    assert_eq!(q_fast.planes, kernel.is_amx() && k % 64 == 0, "{kernel}, {k} inputs");
                    let mut fast = vec![f32::NAN; m * n];
                    layer.forward(&q_fast, &mut fast, kernel, m > 20);
                    assert_eq!(fast, portable, "{kernel}, {m} rows, {k} inputs");
                }
            }
        }
    }

    #[test]
    fn rows_quantized_for_amx_are_refused_by_another_kernel() {
        let layer = QuantLinear::new(&pseudo_random(64 * 64, 1), &[0.0; 64], 64, 64);
        let kernel = Kernel::detect();
        let mut q = QuantRows::default();
        layer.quantize(&pseudo_random(64, 2), &mut q, kernel);
        assert_eq!(q.planes, kernel.is_amx());
        if q.planes {
            let refused = std::panic::catch_unwind(|| layer.forward(&q, &mut [0.0; 64], kernel.without_amx(), false));
            assert!(refused.is_err(), "byte planes read as 16-bit rows");
        }
    }

    /// Every element of `got` (`[m, n]`) within `tolerance` of `x W^T + b` computed in f32.
    pub(crate) fn assert_near_f32(got: &[f32], x: &[f32], w: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), tolerance: f32) {
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum::<f32>() + b[j];
                let got = got[i * n + j];
                assert!((got - exact).abs() < tolerance, "({i},{j}): {got} vs {exact}");
            }
        }
    }

    /// With `EMOARC_REQUIRE_FAST_KERNEL=1` (set where the CPU is known to have VNNI), a CPU without a fast
    /// kernel fails the bit-exactness tests instead of skipping their fast half.
    pub(crate) fn require_fast_if_asked(kernel: Kernel) {
        if std::env::var("EMOARC_REQUIRE_FAST_KERNEL").is_ok_and(|v| v == "1") {
            assert!(kernel.is_fast(), "EMOARC_REQUIRE_FAST_KERNEL=1 but this CPU gets the {kernel} kernel");
        }
    }

    #[test]
    fn kernels_cannot_be_forged() {
        // The only constructors: the portable kernel, or what the CPU was found to run.
        assert!(!Kernel::portable().is_fast());
        assert_eq!(Kernel::portable().to_string(), "portable");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Kernel::detect().is_vnni(), is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw"));
    }

    #[test]
    fn zero_rows_and_zero_weights_stay_exact() {
        let layer = QuantLinear::new(&[0.0; 8], &[0.5, -0.25], 2, 4);
        let mut q = QuantRows::default();
        layer.quantize(&[0.0; 4], &mut q, Kernel::detect());
        let mut out = vec![9f32; 2];
        layer.forward(&q, &mut out, Kernel::detect(), false);
        assert_eq!(out, vec![0.5, -0.25]);
    }
}
