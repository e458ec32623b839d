//! Intel AMX (Advanced Matrix Extensions) for the integer products: where the CPU has AMX-INT8 and the OS lets
//! this process use it, [`super::Int8Linear`]'s and [`super::QuantLinear`]'s products run on tiles instead of
//! AVX-512 VNNI. One `tdpbusd` multiplies a 16 x 64 block of u8 activations by a 64 x 16 block of i8 weights
//! into 16 x 16 i32 sums, 16,384 multiply-adds where `vpdpbusd` does 64. It sums the same u8 x i8 products in
//! i32, exactly, so the sums are the VNNI kernel's and the floats after them too (the rescaling is
//! [`super::gemm::store_row_avx512`]). The int16 products run as four byte products each (see
//! `super::gemm::BytePlanes`), recombined exactly.
//!
//! The int8 weights need no layout of their own: the VNNI packing (per tile of 64 outputs, per group of 4 inputs,
//! 64 x 4 bytes) is already, read with a stride of 256 bytes, the layout `tdpbusd` wants for its right-hand
//! tile (16 groups of 4 inputs by 16 outputs x 4 bytes). The activations are rows of u8 as they are.
//!
//! Linux gives a process the tile registers' 8 KB of state only on request (`arch_prctl`); [`available`] asks
//! once and says no wherever the CPU, the OS or the request says no, so the rest of the crate never runs a
//! tile instruction without leave. `EMOARC_AMX=0` in the environment turns AMX off (VNNI alone), for
//! comparison or for a machine where tiles misbehave.
//!
//! Rust has no stable intrinsics for AMX, so the instructions are written as inline assembly; the compiler
//! never uses the tile registers itself, so their contents survive between the `asm!` blocks of one kernel call.

#[cfg(target_arch = "x86_64")]
use super::gemm::{store_row_avx512, Block};
#[cfg(target_arch = "x86_64")]
use std::arch::{asm, x86_64::*};

/// Whether AMX-INT8 can run in this process (asked once; see the module doc).
pub(super) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| std::env::var("EMOARC_AMX").map_or(true, |v| v != "0") && request())
}

/// CPUID says AMX-TILE and AMX-INT8, XCR0 says the OS saves tile state, and Linux grants this process the
/// tile data (`ARCH_REQ_XCOMP_PERM` for `XFEATURE_XTILEDATA`).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request() -> bool {
    const AMX_TILE: u32 = 1 << 24;
    const AMX_INT8: u32 = 1 << 25;
    const OSXSAVE: u32 = 1 << 27;
    const XTILECFG_XTILEDATA: u64 = 0b11 << 17;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // CPUID exists on every x86-64 CPU; leaf 7 is only looked at when leaf 0 says it exists.
    let (max_leaf, leaf1, leaf7) = (__cpuid(0).eax, __cpuid(1), __cpuid_count(7, 0));
    if max_leaf < 7 || leaf7.edx & (AMX_TILE | AMX_INT8) != AMX_TILE | AMX_INT8 || leaf1.ecx & OSXSAVE == 0 {
        return false;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 is valid wherever CPUID reports OSXSAVE (checked above).
    unsafe { asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    let xcr0 = (u64::from(hi) << 32) | u64::from(lo);
    if xcr0 & XTILECFG_XTILEDATA != XTILECFG_XTILEDATA {
        return false;
    }
    // SAFETY: arch_prctl with these arguments only changes this process's permitted extended state; it fails
    // cleanly (non-zero) on kernels without it.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request() -> bool {
    false
}

/// Inputs per tile product: 16 groups of 4 (one tile row of activations is 64 bytes).
pub(super) const TILE_K: usize = 64;
/// Rows per tile.
const TILE_ROWS: usize = 16;

/// Where weight `k` of output `lane` of output tile `tile` (64 outputs, `groups` groups of 4 inputs) goes in
/// AMX's packing: per tile, per 16 outputs, per group of 4 inputs, 16 x 4 bytes. Each right-hand tile of a
/// product (16 groups by 16 outputs) is then 1 KB in one piece, and a column's tiles follow each other: read
/// at a stride of 64 bytes, the int16 products ran 1.07x end to end against the VNNI packing's stride of 256
/// (6 layers, 10,000 peer lines, two alternating runs). The int8 products, whose weights the VNNI kernel also
/// reads, keep the VNNI packing: this one measured no faster there (2,204-2,258 utterances/s against
/// 2,144-2,224, the default model).
pub(super) fn tile_packing(tile: usize, lane: usize, k: usize, groups: usize) -> usize {
    let (quarter, column) = (lane / 16, lane % 16);
    ((tile * 4 + quarter) * groups + k / 4) * 64 + column * 4 + k % 4
}

/// The 64-byte operand of `ldtilecfg`: palette 1, and each tile's rows and bytes per row.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Tiles tmm0-7 with the given rows (1 to 16 each) of 64 bytes; the others unconfigured.
    fn new(rows: [usize; 8]) -> TileConfig {
        let mut config = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
        config.bytes_per_row[..8].fill(64);
        config.rows[..8].copy_from_slice(&rows.map(|r| r as u8));
        config
    }

    /// The int8 kernel's tiles for a block of `top + bottom` rows (`1 <= top <= 16`, `bottom <= 16`):
    /// tmm0-3 the sums of the top and bottom row tiles by the left and right 16 columns, tmm4-5 the top and
    /// bottom activations, tmm6-7 the left and right weights. With no bottom rows, its tiles get one row and
    /// go unused (a tile of zero rows would fault if touched).
    fn int8(top: usize, bottom: usize) -> TileConfig {
        let (t, b) = (top, bottom.max(1));
        TileConfig::new([t, t, b, b, t, b, TILE_ROWS, TILE_ROWS])
    }

    /// The int16 kernel's tiles for `rows` rows (1 to 16) by 16 columns: tmm0 the low-by-low sums, tmm1 the
    /// low-by-high and high-by-low ones, tmm2 the high-by-high ones, tmm3-4 the activations' low and high bytes,
    /// tmm5-6 the weights' (see `super::gemm::BytePlanes`); tmm7 unused. (Double-buffering the activations'
    /// low bytes in tmm7, two steps at a time, measured no faster.)
    fn int16(rows: usize) -> TileConfig {
        let r = rows;
        TileConfig::new([r, r, r, r, r, TILE_ROWS, TILE_ROWS, 1])
    }

    /// Makes this the calling thread's tile configuration.
    ///
    /// # Safety
    /// [`available`] must have returned true.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load(&self) {
        // SAFETY: the caller's: this process may use the tiles; `self` is a valid 64-byte configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) self as *const TileConfig, options(nostack, readonly, preserves_flags)) };
    }
}

/// The sums of one block of 32 rows by 64 columns, as `tilestored` writes them.
#[repr(C, align(64))]
struct Sums([[i32; 64]; 2 * TILE_ROWS]);

impl Sums {
    /// The first `rows` rows, rescaled by the VNNI kernel's store into `blk`'s rows from `row0`.
    ///
    /// # Safety
    /// The CPU must have AVX-512, and `blk` must address rows `row0..row0 + rows` of its output.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn store<A, W>(&self, rows: usize, row0: usize, blk: &Block<A, W>) {
        for (r, row) in self.0[..rows].iter().enumerate() {
            let p = row.as_ptr() as *const __m512i;
            // SAFETY: each row is 64 aligned i32, four vectors; the rest is the caller's contract.
            unsafe {
                let lanes = [0, 1, 2, 3].map(|v| _mm512_load_si512(p.add(v)));
                store_row_avx512(&lanes, row0 + r, blk);
            }
        }
    }
}

/// Where the high bytes of an int16 block's activations and weights start (the low ones are the block's own
/// `a` and `b`), laid out as the low ones.
pub(super) struct HighBytes {
    pub(super) a: *const i8,
    pub(super) b: *const i8,
}

/// All `rows` rows of one tile of 64 output columns of an int16 product held as byte planes (`blk` the low
/// bytes, `hi` the high ones): per 16 rows and 16 columns, the four byte products into three sum tiles, then
/// `ll + 2^8 (lh + hl) + 2^16 hh` in wrapping i32 (exact: see `super::gemm::BytePlanes`), then the VNNI
/// kernel's rescaling row by row.
///
/// # Safety
/// As for [`int8_rows`], with `hi` addressing planes of the same shapes as `blk.a` and `blk.b`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn int16_rows(blk: &Block<u8, u8>, hi: HighBytes, rows: usize) {
    debug_assert_eq!(blk.groups % (TILE_K / 4), 0);
    // SAFETY: as for `int8_rows`: loads read `top` rows of 64 bytes inside the block's planes of activations
    // or 1 KB inside the tile's planes of weights; stores write `parts` and `sums`.
    unsafe {
        let mut sums = Sums([[0; 64]; 2 * TILE_ROWS]);
        let mut parts = Sums([[0; 64]; 2 * TILE_ROWS]);
        let mut loaded = 0;
        let lda = blk.lda;
        let steps = blk.groups * 4 / TILE_K;
        let mut row0 = 0;
        while row0 < rows {
            let top = (rows - row0).min(TILE_ROWS);
            if loaded != top {
                TileConfig::int16(top).load();
                loaded = top;
            }
            for quarter in 0..blk.cols.div_ceil(16) {
                asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", options(nomem, nostack, preserves_flags));
                for step in 0..steps {
                    let x = row0 * lda + step * TILE_K;
                    let w = (quarter * steps + step) * 16 * 64;
                    asm!(
                        "tileloadd tmm3, [{xl} + {lda}*1]",
                        "tileloadd tmm4, [{xh} + {lda}*1]",
                        "tileloadd tmm5, [{wl} + {ldw}*1]",
                        "tileloadd tmm6, [{wh} + {ldw}*1]",
                        "tdpbusd tmm1, tmm3, tmm6",
                        "tdpbuud tmm0, tmm3, tmm5",
                        "tdpbssd tmm2, tmm4, tmm6",
                        "tdpbsud tmm1, tmm4, tmm5",
                        xl = in(reg) blk.a.as_ptr().add(x), xh = in(reg) hi.a.add(x), lda = in(reg) lda,
                        wl = in(reg) blk.b.as_ptr().add(w), wh = in(reg) hi.b.add(w), ldw = in(reg) 64usize,
                        options(nostack, readonly, preserves_flags)
                    );
                }
                // Three 16 x 16 tiles of sums in `parts`: ll, lh + hl, hh. (The two middle products share tmm1:
                // a tile fewer to store and add measured 1.03x, with two other products between them.)
                let p = parts.0.as_mut_ptr() as *mut i32;
                asm!(
                    "tilestored [{ll} + {ld}*1], tmm0",
                    "tilestored [{mid} + {ld}*1], tmm1",
                    "tilestored [{hh} + {ld}*1], tmm2",
                    ll = in(reg) p, mid = in(reg) p.add(16), hh = in(reg) p.add(32), ld = in(reg) 256usize,
                    options(nostack, preserves_flags)
                );
                for r in 0..top {
                    let [ll, mid, hh] = [0, 1, 2].map(|t| _mm512_load_si512((parts.0[r].as_ptr() as *const __m512i).add(t)));
                    let sum = _mm512_add_epi32(
                        _mm512_add_epi32(ll, _mm512_slli_epi32::<8>(mid)),
                        _mm512_slli_epi32::<16>(hh),
                    );
                    _mm512_store_si512(sums.0[r].as_mut_ptr().add(quarter * 16) as *mut __m512i, sum);
                }
            }
            sums.store(top, row0, blk);
            row0 += top;
        }
        asm!("tilerelease", options(nomem, nostack, preserves_flags));
    }
}

/// All `rows` rows of one tile of 64 output columns (`blk` addresses row 0 of them): `tdpbusd` over 32 rows by
/// 32 columns at a time (four sum tiles: each activation and weight tile is used twice), then the VNNI
/// kernel's rescaling row by row.
///
/// # Safety
/// [`available`] must have returned true and the CPU must have AVX-512 VNNI (a [`super::Kernel`] that
/// `is_amx()`); `blk` must be a well-formed int8 block of `rows` rows whose `groups` is a multiple of 16
/// (inputs a multiple of [`TILE_K`]), with the packed weights of a whole 64-column tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn int8_rows(blk: &Block<u8, i8>, rows: usize) {
    debug_assert_eq!(blk.groups % (TILE_K / 4), 0);
    // SAFETY: the caller's contract: tile instructions are permitted; every tile load reads `top`/`bottom`
    // rows of 64 bytes inside the block's activations (rows `row0..row0 + 32` of `lda` bytes, 64 bytes at
    // input `k`) or 16 rows of 64 bytes at stride 256 inside the tile's packed weights; the stores write
    // `Sums`, and `store_row_avx512` writes only the block's rows and columns of `out`.
    unsafe {
        let mut sums = Sums([[0; 64]; 2 * TILE_ROWS]);
        let mut loaded = None;
        let (a, lda, b) = (blk.a.as_ptr(), blk.lda, blk.b.as_ptr() as *const u8);
        let steps = blk.groups * 4 / TILE_K;
        let mut row0 = 0;
        while row0 < rows {
            let top = (rows - row0).min(TILE_ROWS);
            let bottom = (rows - row0 - top).min(TILE_ROWS);
            if loaded != Some((top, bottom.max(1))) {
                TileConfig::int8(top, bottom).load();
                loaded = Some((top, bottom.max(1)));
            }
            for half in 0..2 {
                asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nomem, nostack, preserves_flags));
                for step in 0..steps {
                    let x = a.add(row0 * lda + step * TILE_K);
                    // 16 groups of 4 inputs per step, 256 bytes a group; this half's 32 columns x 4 bytes.
                    let w = b.add(step * 16 * 256 + half * 128);
                    asm!(
                        "tileloadd tmm4, [{x} + {lda}*1]",
                        "tileloadd tmm6, [{w} + {ldw}*1]",
                        "tileloadd tmm7, [{w2} + {ldw}*1]",
                        "tdpbusd tmm0, tmm4, tmm6",
                        "tdpbusd tmm1, tmm4, tmm7",
                        x = in(reg) x, lda = in(reg) lda, w = in(reg) w, w2 = in(reg) w.add(64), ldw = in(reg) 256usize,
                        options(nostack, readonly, preserves_flags)
                    );
                    if bottom > 0 {
                        asm!(
                            "tileloadd tmm5, [{x} + {lda}*1]",
                            "tdpbusd tmm2, tmm5, tmm6",
                            "tdpbusd tmm3, tmm5, tmm7",
                            x = in(reg) x.add(TILE_ROWS * lda), lda = in(reg) lda,
                            options(nostack, readonly, preserves_flags)
                        );
                    }
                }
                let base = sums.0.as_mut_ptr() as *mut i32;
                let at = |r: usize, c: usize| base.add(r * 64 + half * 32 + c);
                asm!(
                    "tilestored [{s0} + {ld}*1], tmm0",
                    "tilestored [{s1} + {ld}*1], tmm1",
                    s0 = in(reg) at(0, 0), s1 = in(reg) at(0, 16), ld = in(reg) 256usize,
                    options(nostack, preserves_flags)
                );
                if bottom > 0 {
                    asm!(
                        "tilestored [{s2} + {ld}*1], tmm2",
                        "tilestored [{s3} + {ld}*1], tmm3",
                        s2 = in(reg) at(TILE_ROWS, 0), s3 = in(reg) at(TILE_ROWS, 16), ld = in(reg) 256usize,
                        options(nostack, preserves_flags)
                    );
                }
            }
            sums.store(top + bottom, row0, blk);
            row0 += top + bottom;
        }
        asm!("tilerelease", options(nomem, nostack, preserves_flags));
    }
}
