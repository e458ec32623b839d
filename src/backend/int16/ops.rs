//! The encoder's f32 operations around the integer products: layer norm, GELU, and attention over packed
//! sequences (no padding: each sequence attends only to its own tokens). Written as plain loops that the compiler
//! vectorizes; the callers compile them inside AVX-512 functions where the CPU has it.

/// Lanes of the accumulators below: one AVX-512 register. Sums kept in 16 lanes let the compiler vectorize
/// reductions that it must otherwise run one float at a time (f32 addition is not associative).
const LANES: usize = 16;

/// Sum of a slice, accumulated in 16 lanes.
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    lane_reduce(xs, 0.0, |acc, v| acc + v, |a, b| a + b)
}

/// Largest absolute value of a slice (0 for an empty one). Compares bit patterns as integers: for
/// non-negative floats their order is the same, and integer max has no NaN rules to slow it down.
#[inline(always)]
pub fn max_abs(xs: &[f32]) -> f32 {
    let mut lanes = [0u32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l = (*l).max(v.to_bits() & 0x7fff_ffff);
        }
    }
    let max = tail.iter().fold(lanes.into_iter().fold(0, u32::max), |m, v| m.max(v.to_bits() & 0x7fff_ffff));
    f32::from_bits(max)
}

/// The larger of two floats, without `f32::max`'s NaN handling (which blocks a single vector instruction).
#[inline(always)]
pub fn larger(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Rounds to the nearest integer, ties to even, for `|x| < 2^22`: adding and removing 1.5 * 2^23 leaves the
/// rounding to the FPU, so it vectorizes on any x86-64 where `round_ties_even` would call the C library.
#[inline(always)]
pub fn round_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

#[inline(always)]
fn lane_reduce(xs: &[f32], init: f32, step: impl Fn(f32, f32) -> f32, merge: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l = step(*l, *v);
        }
    }
    let mut acc = lanes.into_iter().fold(init, &merge);
    for &v in tail {
        acc = step(acc, v);
    }
    acc
}

/// `x = layer_norm(x + residual) * gamma + beta`, row by row (`residual` may be empty for none).
#[inline(always)]
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let cols = gamma.len();
    if !residual.is_empty() {
        for (a, b) in x.iter_mut().zip(residual) {
            *a += b;
        }
    }
    for row in x.chunks_exact_mut(cols) {
        let mean = sum(row) / cols as f32;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let var = lane_reduce(row, 0.0, |acc, v| acc + v * v, |a, b| a + b) / cols as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = *v * inv * g + b;
        }
    }
}

/// The polynomial with `coefficients` (highest power first) at `x`, by Horner's rule in fused multiply-adds
/// (the callers are compiled with FMA where the CPU has it; elsewhere `mul_add` is the C library's `fmaf`).
#[inline(always)]
fn horner(x: f32, coefficients: &[f32]) -> f32 {
    coefficients[1..].iter().fold(coefficients[0], |acc, &c| acc.mul_add(x, c))
}

/// `e^x` for `x` in about `[-87, 88]` (clamped), relative error below 3e-7: the polynomial keeps softmax and
/// GELU vectorized, where a call to the C library's `expf` would not be.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = larger(-87.0, if x < 88.0 { x } else { 88.0 });
    let n = round_even(x * std::f32::consts::LOG2_E);
    // x - n ln2 in two steps (Cody and Waite): the high part of ln2 has few bits, so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let f = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // Taylor series of e^f for |f| <= ln2/2.
    let p = horner(f, &[1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]);
    // n is a whole number in [-126, 127]: the bit pattern of 2^n is (n + 127) << 23, and the float already
    // holds n + 127 exactly in its low mantissa bits after adding the magic constant.
    p * f32::from_bits((((n + 127.0) + 12_582_912.0).to_bits() & 0xff) << 23)
}

/// The error function (Abramowitz and Stegun 7.1.26: 1.5e-7 in exact arithmetic, below 5e-7 in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * horner(t, &[1.061_405_4, -1.453_152, 1.421_413_8, -0.284_496_74, 0.254_829_6]);
    let y = (-poly).mul_add(exp(-a * a), 1.0);
    y.copysign(x)
}

/// GELU with the exact (erf) form that BERT was trained with, in place.
#[inline(always)]
pub fn gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        let half = 0.5 * *v;
        *v = half.mul_add(erf(*v * std::f32::consts::FRAC_1_SQRT_2), half);
    }
}

/// Scaled dot-product attention for one packed sequence, with heads of `DH` values. `qkv` holds its rows
/// `[len, 3 * hidden]` (queries, keys, values side by side), `out` receives `[len, hidden]`; `scratch` is reused
/// between calls. Each head's keys are copied transposed, in blocks of 16 tokens (`[block][DH][16]`), and its
/// values in blocks of 16 values (`[block][len][16]`): every inner loop then walks fixed-size arrays that the
/// compiler keeps in registers without a bounds check per load (indexing `qkv` by token cost four checks and
/// four multiplies per four multiply-adds, a third of attention's time in `perf annotate`).
#[inline(always)]
pub fn attention<const DH: usize>(qkv: &[f32], out: &mut [f32], hidden: usize, scratch: &mut Vec<f32>) {
    const { assert!(DH.is_multiple_of(LANES), "head values are taken 16 lanes at a time") };
    let len = qkv.len() / (3 * hidden);
    debug_assert_eq!(out.len(), len * hidden);
    let padded = len.div_ceil(LANES) * LANES;
    let scale = 1.0 / (DH as f32).sqrt();
    // Not cleared between calls: the score of a padding lane is overwritten below whatever its key held, and no
    // value past `len` is read. (Clearing it for every sequence and layer was most of the remaining `memset`.)
    let needed = 2 * DH * padded + padded;
    if scratch.len() < needed {
        scratch.resize(needed, 0.0);
    }
    let (keys_t, rest) = scratch.split_at_mut(DH * padded);
    let (values, rest) = rest.split_at_mut(DH * padded);
    let scores = &mut rest[..padded];
    for h in 0..hidden / DH {
        for (j, row) in qkv.chunks_exact(3 * hidden).enumerate() {
            let (block, lane) = (j / LANES, j % LANES);
            for (d, &k) in row[hidden + h * DH..][..DH].iter().enumerate() {
                keys_t[(block * DH + d) * LANES + lane] = k;
            }
            for (c, part) in row[2 * hidden + h * DH..][..DH].chunks_exact(LANES).enumerate() {
                values[(c * padded + j) * LANES..][..LANES].copy_from_slice(part);
            }
        }
        let key_rows = keys_t.as_chunks::<LANES>().0;
        let value_rows = values.as_chunks::<LANES>().0;
        for (i, row) in qkv.chunks_exact(3 * hidden).enumerate() {
            let q: &[f32; DH] = row[h * DH..][..DH].try_into().expect("DH values");
            for (keys, chunk) in key_rows.chunks_exact(DH).zip(scores.chunks_exact_mut(LANES)) {
                let keys: &[[f32; LANES]; DH] = keys.try_into().expect("DH rows");
                // Four partial sums: one chain of dependent adds would wait on the adder's latency each step.
                let (mut a0, mut a1, mut a2, mut a3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
                for d in (0..DH).step_by(4) {
                    for l in 0..LANES {
                        a0[l] = q[d].mul_add(keys[d][l], a0[l]);
                        a1[l] = q[d + 1].mul_add(keys[d + 1][l], a1[l]);
                        a2[l] = q[d + 2].mul_add(keys[d + 2][l], a2[l]);
                        a3[l] = q[d + 3].mul_add(keys[d + 3][l], a3[l]);
                    }
                }
                for (l, s) in chunk.iter_mut().enumerate() {
                    *s = ((a0[l] + a1[l]) + (a2[l] + a3[l])) * scale;
                }
            }
            // Padding lanes must not take any weight.
            scores[len..].fill(f32::MIN);
            let max = lane_reduce(scores, f32::MIN, larger, larger);
            for s in scores.iter_mut() {
                *s = exp(*s - max);
            }
            let inv = 1.0 / sum(scores);
            // The weighted sum of values, one block of 16 values at a time, in four sums of every fourth token
            // for the same reason; one block at a time keeps the four sums in registers (a sum over all `DH`
            // values at once was kept on the stack).
            let (quads, tail) = scores[..len].as_chunks::<4>();
            let out = &mut out[i * hidden + h * DH..][..DH];
            for (c, out) in out.chunks_exact_mut(LANES).enumerate() {
                let (value_quads, value_tail) = value_rows[c * padded..][..len].as_chunks::<4>();
                let (mut a0, mut a1, mut a2, mut a3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
                for (v, p) in value_quads.iter().zip(quads) {
                    for l in 0..LANES {
                        a0[l] = p[0].mul_add(v[0][l], a0[l]);
                        a1[l] = p[1].mul_add(v[1][l], a1[l]);
                        a2[l] = p[2].mul_add(v[2][l], a2[l]);
                        a3[l] = p[3].mul_add(v[3][l], a3[l]);
                    }
                }
                for (v, &p) in value_tail.iter().zip(tail) {
                    for l in 0..LANES {
                        a0[l] = p.mul_add(v[l], a0[l]);
                    }
                }
                for (l, o) in out.iter_mut().enumerate() {
                    *o = ((a0[l] + a1[l]) + (a2[l] + a3[l])) * inv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_the_library() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            let e = (x as f64).exp();
            assert!(((exp(x) as f64 - e) / e).abs() < 3e-7, "exp({x}) = {} vs {e}", exp(x));
            let libm_erf = erf_reference(x as f64);
            assert!((erf(x) as f64 - libm_erf).abs() < 5e-7, "erf({x}): {} vs {libm_erf}", erf(x));
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
    }

    /// erf by its Taylor series (converges well for |x| <= 3) and 1 beyond, to about 1e-9.
    fn erf_reference(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 || n < 10.0 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn attention_of_one_token_returns_its_value() {
        let hidden = 32;
        let mut qkv: Vec<f32> = (0..32).map(|v| v as f32).collect();
        qkv.extend([0.5; 32]);
        qkv.extend((0..32).map(|v| 40.0 - v as f32));
        let mut out = vec![0.0; hidden];
        attention::<16>(&qkv, &mut out, hidden, &mut Vec::new());
        assert_eq!(out, qkv[64..].to_vec());
    }

    #[test]
    fn attention_weights_follow_the_scores() {
        // Two tokens, one head of 16: the query matches the second key far better, so the output is its value.
        let hidden = 16;
        let token = |q: f32, k: f32, v: &dyn Fn(usize) -> f32| -> Vec<f32> {
            let mut row = vec![0.0; 3 * hidden];
            row[0] = q;
            row[hidden] = k;
            (0..hidden).for_each(|d| row[2 * hidden + d] = v(d));
            row
        };
        let qkv = [token(10.0, 0.0, &|_| 1.0), token(10.0, 10.0, &|d| 5.0 + d as f32)].concat();
        let mut out = vec![0.0; 2 * hidden];
        attention::<16>(&qkv, &mut out, hidden, &mut Vec::new());
        // Scores 0 and 100 / sqrt(16) = 25: softmax weight of the first token is e^-25.
        for (d, o) in out[..hidden].iter().enumerate() {
            assert!((o - (5.0 + d as f32)).abs() < 1e-5, "{o} vs {}", 5.0 + d as f32);
        }
    }

    #[test]
    fn attention_matches_a_plain_reference() {
        // Two heads of 16, lengths around the 4-token and 16-lane blocks, pseudo-random values.
        let (hidden, dh) = (32, 16);
        let mut state = 12345u32;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        };
        // One scratch for all calls, longest first: what a longer sequence left in it must not leak into a
        // shorter one's result.
        let mut scratch = Vec::new();
        for len in [33, 1, 2, 3, 4, 5, 7, 16, 17] {
            let qkv: Vec<f32> = (0..len * 3 * hidden).map(|_| next()).collect();
            let mut out = vec![0.0; len * hidden];
            attention::<16>(&qkv, &mut out, hidden, &mut scratch);
            let at = |j: usize, part: usize, h: usize, d: usize| f64::from(qkv[j * 3 * hidden + part * hidden + h * dh + d]);
            for h in 0..hidden / dh {
                for i in 0..len {
                    let scores: Vec<f64> =
                        (0..len).map(|j| (0..dh).map(|d| at(i, 0, h, d) * at(j, 1, h, d)).sum::<f64>() / (dh as f64).sqrt()).collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..dh {
                        let want = (0..len).map(|j| weights[j] * at(j, 2, h, d)).sum::<f64>() / total;
                        let got = f64::from(out[i * hidden + h * dh + d]);
                        assert!((got - want).abs() < 1e-5, "len {len} head {h} row {i} value {d}: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        add_layer_norm(&mut x, &[1.0; 4], &[1.0; 4], &[0.0; 4], 0.0);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
