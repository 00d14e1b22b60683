//! Hand-written CPU kernels, kept out of the model crate so they are always compiled with
//! optimisations (the dev profile optimises dependencies only) and build in seconds.
//!
//! `sgemm` is an f32 matmul with a register-blocked 6 × 16 AVX2/FMA micro-kernel, columns split
//! across the rayon pool. On the 2-core AVX2 machines this project runs on, Burn's CPU backend
//! (through the `gemm` crate) reaches about 50 GFLOP/s on an LLM's shapes and 14 on a
//! decode-time output head, where PyTorch reaches 85–105 and 18.

/// Whether this CPU runs `sgemm` (x86-64 with AVX2 and FMA).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Columns per micro-tile (two AVX registers).
const NR: usize = 16;
/// Rows per micro-tile.
const MR: usize = 6;
/// Depth of one packed block of `b`: a 256 × 16 panel (16 KiB) stays in L1.
const KC: usize = 256;
/// Up to this many rows of `a`, `b` is streamed row by row instead of packed into tiles.
const STREAM_ROWS: usize = 4;
/// Width of one packed block of `b`: 256 × 256 floats (256 KiB) stay in L2.
const NC: usize = 256;

/// `c [m, n] = a [m, k] · b [k, n]`, all row-major; `c` is overwritten. Needs AVX2 and FMA.
pub fn sgemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n, "sgemm: slice sizes do not match the shape");
    assert!(available(), "sgemm needs AVX2 and FMA");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads().min(panels).max(1);
    // Small products are not worth a thread hand-off.
    let threads = if m * k * n < 64 * 1024 { 1 } else { threads };
    let c_ptr = SendPtr(c.as_mut_ptr());
    let run = |t: usize| {
        let (p0, p1) = (panels * t / threads, panels * (t + 1) / threads);
        // SAFETY: threads write disjoint column ranges [p0·NR, p1·NR) of `c`.
        unsafe {
            if m <= STREAM_ROWS {
                stream_rows(a, b, c_ptr, m, k, n, p0 * NR, (p1 * NR).min(n))
            } else {
                columns(a, b, c_ptr, m, k, n, p0 * NR, (p1 * NR).min(n))
            }
        };
    };
    if threads == 1 {
        run(0);
    } else {
        rayon::scope(|s| {
            for t in 1..threads {
                s.spawn(move |_| run(t));
            }
            run(0);
        });
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Columns [j0, j1) of `c`, in blocks of KC rows × NC columns of `b`: each block is copied
/// once into panels of 16 contiguous columns (read row by row, so memory is streamed), then
/// every 6-row tile of `a` runs against every panel while the block sits in L2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn columns(a: &[f32], b: &[f32], c: SendPtr, m: usize, k: usize, n: usize, j0: usize, j1: usize) {
    let mut packed = vec![0f32; KC * NC];
    let mut p = 0;
    while p < k {
        let kb = KC.min(k - p);
        let accumulate = p > 0;
        let mut jb = j0;
        while jb < j1 {
            let nc = NC.min(j1 - jb);
            let panels = nc.div_ceil(NR);
            for q in 0..kb {
                let row = &b[(p + q) * n + jb..(p + q) * n + jb + nc];
                for (t, chunk) in row.chunks(NR).enumerate() {
                    let dst = &mut packed[(t * kb + q) * NR..(t * kb + q + 1) * NR];
                    dst[..chunk.len()].copy_from_slice(chunk);
                    dst[chunk.len()..].fill(0.0);
                }
            }
            let mut i = 0;
            while i < m {
                let mr = MR.min(m - i);
                let ap = a.as_ptr().add(i * k + p);
                for t in 0..panels {
                    let j = jb + t * NR;
                    let nr = NR.min(jb + nc - j);
                    let bp = packed.as_ptr().add(t * kb * NR);
                    let cp = c.0.add(i * n + j);
                    match mr {
                        6 => tile::<6>(ap, k, bp, NR, kb, cp, n, nr, accumulate),
                        5 => tile::<5>(ap, k, bp, NR, kb, cp, n, nr, accumulate),
                        4 => tile::<4>(ap, k, bp, NR, kb, cp, n, nr, accumulate),
                        3 => tile::<3>(ap, k, bp, NR, kb, cp, n, nr, accumulate),
                        2 => tile::<2>(ap, k, bp, NR, kb, cp, n, nr, accumulate),
                        _ => tile::<1>(ap, k, bp, NR, kb, cp, n, nr, accumulate),
                    }
                }
                i += mr;
            }
            jb += nc;
        }
        p += kb;
    }
}

/// Columns [j0, j1) of `c` for a few rows of `a` (decoding): rows of `b` are read once, in
/// order, and added into rows of `c` that stay in L1, with the next rows prefetched (each row
/// is a separate run of memory, which the hardware prefetcher only learns after a while).
/// Tiles would read `b` 64 bytes per row with a row-sized stride instead.
///
/// The sums are formed exactly as `tile` forms them — one FMA chain per KC block starting
/// from zero, then added to the block before — so a row's result does not depend on how many
/// rows share the call (a sample's text must not depend on its batch).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn stream_rows(a: &[f32], b: &[f32], c: SendPtr, m: usize, k: usize, n: usize, j0: usize, j1: usize) {
    use std::arch::x86_64::*;
    const JC: usize = 1024;
    const AHEAD: usize = 4;
    let mut acc = vec![0f32; STREAM_ROWS * JC];
    let mut jb = j0;
    while jb < j1 {
        let nc = JC.min(j1 - jb);
        let mut p0 = 0;
        while p0 < k {
            let kb = KC.min(k - p0);
            acc[..m * JC].fill(0.0);
            for p in p0..p0 + kb {
                let brow = b.as_ptr().add(p * n + jb);
                if p + AHEAD < k {
                    let ahead = brow.add(AHEAD * n);
                    let mut j = 0;
                    while j < nc {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.add(j) as *const i8);
                        j += 16;
                    }
                }
                for r in 0..m {
                    let x = _mm256_set1_ps(a[r * k + p]);
                    let crow = acc.as_mut_ptr().add(r * JC);
                    let mut j = 0;
                    while j + 16 <= nc {
                        let c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(brow.add(j)), _mm256_loadu_ps(crow.add(j)));
                        let c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(brow.add(j + 8)), _mm256_loadu_ps(crow.add(j + 8)));
                        _mm256_storeu_ps(crow.add(j), c0);
                        _mm256_storeu_ps(crow.add(j + 8), c1);
                        j += 16;
                    }
                    while j < nc {
                        *crow.add(j) = a[r * k + p].mul_add(*brow.add(j), *crow.add(j));
                        j += 1;
                    }
                }
            }
            for r in 0..m {
                let out = std::slice::from_raw_parts_mut(c.0.add(r * n + jb), nc);
                let block = &acc[r * JC..r * JC + nc];
                if p0 == 0 {
                    out.copy_from_slice(block);
                } else {
                    out.iter_mut().zip(block).for_each(|(o, x)| *o += x);
                }
            }
            p0 += kb;
        }
        jb += nc;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn columns(_: &[f32], _: &[f32], _: SendPtr, _: usize, _: usize, _: usize, _: usize, _: usize) {
    unreachable!("sgemm is only called where AVX2 is available")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn stream_rows(_: &[f32], _: &[f32], _: SendPtr, _: usize, _: usize, _: usize, _: usize, _: usize) {
    unreachable!("sgemm is only called where AVX2 is available")
}

/// One R × 16 tile of `c` (+)= a[R, kb] · b[kb, 16]; only the first `nr` columns are stored.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(a: *const f32, lda: usize, b: *const f32, ldb: usize, kb: usize, c: *mut f32, ldc: usize, nr: usize, accumulate: bool) {
    use std::arch::x86_64::*;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    for q in 0..kb {
        let b0 = _mm256_loadu_ps(b.add(q * ldb));
        let b1 = _mm256_loadu_ps(b.add(q * ldb + 8));
        for r in 0..R {
            let x = _mm256_broadcast_ss(&*a.add(r * lda + q));
            lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
        }
    }
    for r in 0..R {
        let row = c.add(r * ldc);
        if nr == NR {
            if accumulate {
                lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(row));
                hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(row.add(8)));
            }
            _mm256_storeu_ps(row, lo[r]);
            _mm256_storeu_ps(row.add(8), hi[r]);
        } else {
            let mut tmp = [0f32; NR];
            _mm256_storeu_ps(tmp.as_mut_ptr(), lo[r]);
            _mm256_storeu_ps(tmp.as_mut_ptr().add(8), hi[r]);
            for (j, v) in tmp.iter().take(nr).enumerate() {
                *row.add(j) = if accumulate { *row.add(j) + v } else { *v };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn sgemm_matches_a_naive_product_on_ragged_shapes() {
        if !available() {
            eprintln!("no AVX2 here: nothing to check");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for &(m, k, n) in &[(1, 1, 1), (1, 7, 16), (2, 9, 1100), (4, 33, 2100), (5, 300, 17), (6, 256, 32), (7, 257, 15), (13, 600, 50), (200, 576, 96), (1, 576, 1000), (0, 3, 4), (3, 0, 4)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut c = vec![f32::NAN; m * n];
            sgemm(&a, &b, &mut c, m, k, n);
            let want = naive(&a, &b, m, k, n);
            let worst = c.iter().zip(&want).map(|(x, y)| (*x as f64 - y).abs()).fold(0f64, f64::max);
            assert!(worst < 1e-4 * (k as f64).sqrt().max(1.0), "({m}, {k}, {n}): {worst}");
        }
    }


    #[test]
    fn a_row_does_not_depend_on_the_rows_beside_it() {
        if !available() {
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (k, n) = (700, 1100);
        let a: Vec<f32> = (0..13 * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut all = vec![0f32; 13 * n];
        sgemm(&a, &b, &mut all, 13, k, n);
        for (first, m) in [(0, 1), (3, 2), (5, 4), (6, 5), (0, 7)] {
            let mut part = vec![0f32; m * n];
            sgemm(&a[first * k..(first + m) * k], &b, &mut part, m, k, n);
            assert!(part == all[first * n..(first + m) * n], "rows {first}..{} differ when computed {m} at a time", first + m);
        }
    }
}
