//! `x · W` for the few rows of a decode step, streaming W once.
//!
//! Decoding multiplies a handful of rows (one per sequence) by every weight matrix. The `gemm`
//! crate runs one row through a gemv that sums in another order than its many-row kernels,
//! and a few rows through kernels meant for large blocks; so a sample's logits depended on how
//! many rows shared its step. Here every output is one fused multiply-add chain over k in
//! order, whatever the number of rows, the thread split or the column: a row's result never
//! depends on its batch mates. W is packed once into 16-column strips, each strip's k × 16
//! values contiguous; each 64-deep slice of a strip (4 KiB) stays in L1 while every row passes
//! over it, six rows at a time held in registers, so W is read from memory once per step.

use rayon::prelude::*;

/// Columns per strip (two AVX registers).
const STRIP: usize = 16;
/// Rows per register block.
const ROWS: usize = 6;

/// A [k, n] matrix packed for [`rows_matmul`]: strip s holds columns 16s..16s+16 as k rows of
/// 16 values (the last strip zero-padded).
pub struct PackedMatrix {
    strips: Vec<f32>,
    pub k: usize,
    pub n: usize,
}

impl PackedMatrix {
    /// Packs a row-major [k, n] matrix.
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "PackedMatrix: {} values for [{k}, {n}]", w.len());
        let count = n.div_ceil(STRIP);
        let mut strips = vec![0f32; count * k * STRIP];
        strips.par_chunks_mut(k * STRIP).enumerate().for_each(|(s, strip)| {
            let (c0, c1) = (s * STRIP, ((s + 1) * STRIP).min(n));
            for (kk, row) in strip.chunks_exact_mut(STRIP).enumerate() {
                row[..c1 - c0].copy_from_slice(&w[kk * n + c0..kk * n + c1]);
            }
        });
        PackedMatrix { strips, k, n }
    }
}

/// out [m, n] = x [m, k] · W, or out += it when `accumulate`; x and out row-major.
pub fn rows_matmul(x: &[f32], w: &PackedMatrix, out: &mut [f32], m: usize, accumulate: bool) {
    let (k, n) = (w.k, w.n);
    assert!(x.len() >= m * k && out.len() >= m * n, "rows_matmul: buffers do not match [{m}, {k}] x [{k}, {n}]");
    if m == 0 || n == 0 {
        return;
    }
    // Tasks are (block of rows, run of strips): a block's rows of x stay in L2 while its
    // strips pass, and there are a few tasks per thread so uneven cores balance.
    let strips = n.div_ceil(STRIP);
    let blocks = m.div_ceil(BLOCK_ROWS);
    let want = if m * k * n < 64 * 1024 { 1 } else { rayon::current_num_threads() * 4 };
    let per = strips.div_ceil(want.div_ceil(blocks).min(strips));
    let runs = strips.div_ceil(per);
    #[cfg(target_arch = "x86_64")]
    let fast = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let fast = false;
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..blocks * runs).into_par_iter().for_each(|task| {
        let (block, run) = (task / runs, task % runs);
        let (r0, r1) = (block * BLOCK_ROWS, ((block + 1) * BLOCK_ROWS).min(m));
        for s in run * per..((run + 1) * per).min(strips) {
            // SAFETY: each task writes its own rows and columns of `out` (m × n, checked
            // above); rows r0..r1 start at r0 · n.
            unsafe { strip(&x[r0 * k..], &w.strips[s * k * STRIP..(s + 1) * k * STRIP], out_ptr.get().add(r0 * n), r1 - r0, k, n, s * STRIP, accumulate, fast) };
        }
    });
}

/// Rows of x per task: 48 rows of up to 1536 values (288 KiB) stay in a core's L2 while a
/// run of strips passes over them.
const BLOCK_ROWS: usize = 48;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column ranges of one buffer to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Depth of one pass over a strip: 64 rows of 16 values (4 KiB) stay in L1 while every row
/// block of x passes over them, so the strip is read from memory once whatever m is.
const DEPTH: usize = 64;

/// The depth for blocks of more than [`ROWS_DEEP`] rows: 16 KiB slices, fewer passes.
const DEEP: usize = 256;
const ROWS_DEEP: usize = 16;

/// Columns c0..c0+16 (those below n) of out, for every row, from one packed strip; `fast`:
/// the CPU has AVX2 and FMA.
///
/// # Safety
/// `out` points to m × n floats; no one else writes these columns meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn strip(x: &[f32], packed: &[f32], out: *mut f32, m: usize, k: usize, n: usize, c0: usize, accumulate: bool, fast: bool) {
    let width = (n - c0).min(STRIP);
    // Running sums per row, carried from one depth slice to the next (saving and reloading
    // them leaves each value's chain of fused multiply-adds as it is).
    let mut acc = vec![[0f32; STRIP]; m];
    let mut k0 = 0;
    while k0 < k {
        let depth = (k - k0).min(if m > ROWS_DEEP { DEEP } else { DEPTH });
        let w = &packed[k0 * STRIP..(k0 + depth) * STRIP];
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(ROWS);
            let a = &mut acc[r..r + rows];
            if fast {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX2 and FMA (checked); x holds rows r..r+rows of k
                // values, w `depth` rows of 16.
                unsafe {
                    avx2::block(&x[r * k + k0..], k, w, a, depth, r == 0)
                };
            } else {
                // The same fused chain, one value at a time.
                for (i, ai) in a.iter_mut().enumerate() {
                    for (kk, wrow) in w.chunks_exact(STRIP).enumerate() {
                        let xv = x[(r + i) * k + k0 + kk];
                        for (v, &wv) in ai.iter_mut().zip(wrow) {
                            *v = xv.mul_add(wv, *v);
                        }
                    }
                }
            }
            r += rows;
        }
        k0 += depth;
    }
    for (i, a) in acc.iter().enumerate() {
        // SAFETY: row i, columns c0..c0+width are inside out and this task's.
        let o = unsafe { std::slice::from_raw_parts_mut(out.add(i * n + c0), width) };
        for (o, &v) in o.iter_mut().zip(a) {
            *o = if accumulate { *o + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ROWS, STRIP};

    /// acc[i] += Σ_kk x[i, kk] · w[kk] over `depth` rows of w, one fused chain per value,
    /// for the rows in `acc` (at most six); x rows are `stride` apart.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    /// `prefetch`: the first row block also asks for the next slice of the strip (the 64 rows
    /// after these), so memory streams while it computes.
    pub unsafe fn block(x: &[f32], stride: usize, w: &[f32], acc: &mut [[f32; STRIP]], depth: usize, prefetch: bool) {
        let rows = acc.len();
        assert!(rows <= ROWS && (rows == 0 || x.len() >= (rows - 1) * stride + depth) && w.len() >= depth * STRIP);
        // SAFETY: the asserts above bound every read and write.
        unsafe {
            match rows {
                0 => {}
                1 => run::<1>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                2 => run::<2>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                3 => run::<3>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                4 => run::<4>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                5 => run::<5>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                _ => run::<6>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn run<const R: usize>(x: *const f32, stride: usize, w: *const f32, out: &mut [[f32; STRIP]], depth: usize, prefetch: bool) {
        // SAFETY (whole body): R rows of `depth` values at x (`stride` apart), `depth` rows of
        // 16 at w and R rows in out, per `block`.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for (r, a) in acc.iter_mut().enumerate() {
                a[0] = _mm256_loadu_ps(out[r].as_ptr());
                a[1] = _mm256_loadu_ps(out[r].as_ptr().add(8));
            }
            for kk in 0..depth {
                if prefetch {
                    // A hint only: an address past the matrix is never dereferenced.
                    _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((kk + super::DEPTH) * STRIP) as *const i8);
                }
                let w0 = _mm256_loadu_ps(w.add(kk * STRIP));
                let w1 = _mm256_loadu_ps(w.add(kk * STRIP + 8));
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_ps(*x.add(r * stride + kk));
                    a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                    a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out[r].as_mut_ptr(), a[0]);
                _mm256_storeu_ps(out[r].as_mut_ptr().add(8), a[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for r in 0..m {
            for j in 0..n {
                out[r * n + j] = (0..k).map(|kk| x[r * k + kk] as f64 * w[kk * n + j] as f64).sum();
            }
        }
        out
    }

    #[test]
    fn equals_a_plain_product_and_does_not_depend_on_the_rows_beside() {
        for &(m, k, n) in &[(1usize, 5usize, 3usize), (7, 33, 40), (13, 64, 1000), (16, 576, 200)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 997) as f32 / 498.0 - 1.0).collect();
            let packed = PackedMatrix::new(&w, k, n);
            let mut out = vec![0f32; m * n];
            rows_matmul(&x, &packed, &mut out, m, false);
            for (a, b) in out.iter().zip(naive(&x, &w, m, k, n)) {
                assert!((*a as f64 - b).abs() < 1e-4 * (k as f64).sqrt(), "{m}x{k}x{n}: {a} vs {b}");
            }
            // Every row alone gives the same bits.
            for r in 0..m {
                let mut one = vec![0f32; n];
                rows_matmul(&x[r * k..(r + 1) * k], &packed, &mut one, 1, false);
                assert_eq!(one, out[r * n..(r + 1) * n], "{m}x{k}x{n} row {r}");
            }
            // Accumulating adds the product to what was there.
            let mut acc = vec![0.5f32; m * n];
            rows_matmul(&x, &packed, &mut acc, m, true);
            for (a, o) in acc.iter().zip(&out) {
                assert_eq!(*a, 0.5 + o);
            }
        }
    }
}
