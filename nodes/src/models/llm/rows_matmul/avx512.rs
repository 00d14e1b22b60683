//! AVX-512 kernels for [`super::rows_matmul`]: a strip's row of 16 values is one register, and
//! the 32 registers hold up to 16 rows' running sums at once, so a batched decode step's rows
//! (16 in the usual batch) dequantise or widen each row of a strip once, in registers, and use
//! it for all of them. Every output is the same chain of fused multiply-adds over k in order as
//! the AVX2 kernels and the scalar fallback compute it, with weights made by the same
//! arithmetic, so the products are bit for bit theirs.

use std::arch::x86_64::*;

use super::{BlockKind, Half, KStrip, PackedMatrix, Strips, BLOCK, STRIP, SUB, SUPER};

/// Rows whose running sums one pass keeps in registers.
pub(super) const ROWS: usize = 16;

/// Where the 16 values of a strip's row kk come from. Rows come in spans that share their
/// scales (a GGML block, a K-quant sub-block), prepared once per span.
trait Source {
    /// Rows per span; k0 and k1 of a pass are multiples of it.
    const SPAN: usize;
    type Span: Copy;
    /// Span b's shared values.
    unsafe fn span(&self, b: usize) -> Self::Span;
    /// Row kk (inside span `span`) as 16 f32 values.
    unsafe fn row(&self, span: Self::Span, kk: usize) -> __m512;
}

/// f32 rows from `w` on.
struct F32Rows<const PREFETCH: bool> {
    w: *const f32,
}

impl<const PREFETCH: bool> Source for F32Rows<PREFETCH> {
    const SPAN: usize = 1;
    type Span = ();
    #[inline(always)]
    unsafe fn span(&self, _: usize) {}
    #[inline(always)]
    unsafe fn row(&self, _: (), kk: usize) -> __m512 {
        // SAFETY: the callers keep kk inside the rows at w.
        unsafe {
            let at = self.w.add(kk * STRIP);
            if PREFETCH {
                // A hint only: an address past the matrix is never dereferenced.
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(super::DEPTH * STRIP) as *const i8);
            }
            _mm512_loadu_ps(at)
        }
    }
}

/// f16 or bf16 rows, widened exactly.
struct HalfRows<const BF16: bool> {
    bits: *const u16,
}

impl<const BF16: bool> Source for HalfRows<BF16> {
    const SPAN: usize = 1;
    type Span = ();
    #[inline(always)]
    unsafe fn span(&self, _: usize) {}
    #[inline(always)]
    unsafe fn row(&self, _: (), kk: usize) -> __m512 {
        // SAFETY: the callers keep kk inside the strip.
        unsafe {
            let raw = _mm256_loadu_si256(self.bits.add(kk * STRIP) as *const __m256i);
            if BF16 {
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw)))
            } else {
                _mm512_cvtph_ps(raw)
            }
        }
    }
}

/// One span's 16 scales and minimums (or negated minimums).
#[derive(Clone, Copy)]
struct Scales {
    d: __m512,
    m: __m512,
}

/// A strip of GGML blocks; KIND: 0 Q8_0, 1 Q4_0, 2 Q4_1, 3 signed bytes with a minimum.
struct BlockRows<const KIND: u8> {
    scales: *const u16,
    mins: *const u16,
    codes: *const u8,
}

/// Sixteen codes of row kk as integers: signed bytes (BYTES) or nibbles (column 2i in the low
/// nibble of byte i).
#[inline(always)]
unsafe fn codes<const BYTES: bool>(codes: *const u8, kk: usize) -> __m512i {
    // SAFETY: the callers keep row kk inside the codes.
    unsafe {
        if BYTES {
            _mm512_cvtepi8_epi32(_mm_loadu_si128(codes.add(kk * STRIP) as *const __m128i))
        } else {
            let nibble = _mm_set1_epi8(0x0F);
            let raw = _mm_loadl_epi64(codes.add(kk * STRIP / 2) as *const __m128i);
            _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(_mm_and_si128(raw, nibble), _mm_and_si128(_mm_srli_epi16::<4>(raw), nibble)))
        }
    }
}

impl<const KIND: u8> Source for BlockRows<KIND> {
    const SPAN: usize = BLOCK;
    type Span = Scales;
    #[inline(always)]
    unsafe fn span(&self, b: usize) -> Scales {
        // SAFETY: the callers keep block b inside the strip.
        unsafe {
            let half = |v: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(v.add(b * STRIP) as *const __m256i));
            Scales { d: half(self.scales), m: half(self.mins) }
        }
    }
    #[inline(always)]
    unsafe fn row(&self, s: Scales, kk: usize) -> __m512 {
        // SAFETY: the callers keep kk inside the strip.
        unsafe {
            let mut q = if KIND == 0 || KIND == 3 { codes::<true>(self.codes, kk) } else { codes::<false>(self.codes, kk) };
            if KIND == 1 {
                q = _mm512_sub_epi32(q, _mm512_set1_epi32(8));
            }
            let f = _mm512_cvtepi32_ps(q);
            if KIND >= 2 {
                // d · q is exact (see the AVX2 kernel), so one fused multiply-add rounds as the
                // loader's `d * q + m` does.
                _mm512_fmadd_ps(s.d, f, s.m)
            } else {
                _mm512_mul_ps(s.d, f)
            }
        }
    }
}

/// A K-quant strip; BYTES: signed byte codes, else nibbles.
struct KRows<'a, const BYTES: bool> {
    strip: KStrip<'a>,
}

impl<const BYTES: bool> Source for KRows<'_, BYTES> {
    const SPAN: usize = SUB;
    type Span = Scales;
    #[inline(always)]
    unsafe fn span(&self, b: usize) -> Scales {
        // SAFETY: the callers keep sub-block b inside the strip.
        unsafe {
            let s = &self.strip;
            let half = |v: &[u16], at: usize| _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().add(at) as *const __m256i));
            let sup = (b / (SUPER / SUB)) * STRIP;
            let scales = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(s.scales.as_ptr().add(b * STRIP) as *const __m128i)));
            let mins = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(s.mins.as_ptr().add(b * STRIP) as *const __m128i)));
            // d · scale (exact) and −(dmin · minimum), as `KStrip::sub_block`.
            let negated = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(_mm512_mul_ps(half(s.dmin, sup), mins)), _mm512_set1_epi32(i32::MIN)));
            Scales { d: _mm512_mul_ps(half(s.d, sup), scales), m: negated }
        }
    }
    #[inline(always)]
    unsafe fn row(&self, s: Scales, kk: usize) -> __m512 {
        // SAFETY: the callers keep kk inside the strip.
        unsafe { _mm512_fmadd_ps(s.d, _mm512_cvtepi32_ps(codes::<BYTES>(self.strip.codes.as_ptr(), kk)), s.m) }
    }
}

/// acc[i] += Σ_kk x[i · stride + kk] · w[kk] for kk in k0..k1, one fused chain per value, R
/// rows at once.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn run<const R: usize, S: Source>(src: &S, x: *const f32, stride: usize, k0: usize, k1: usize, out: &mut [[f32; STRIP]]) {
    // SAFETY (whole body): R rows of x reaching column k1, the source's rows k0..k1 and R rows
    // of out, per the callers.
    unsafe {
        let mut acc: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(out[r].as_ptr()));
        for b in k0 / S::SPAN..k1 / S::SPAN {
            let span = src.span(b);
            for kk in b * S::SPAN..(b + 1) * S::SPAN {
                let w = src.row(span, kk);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(r * stride + kk)), w, *a);
                }
            }
        }
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            _mm512_storeu_ps(o.as_mut_ptr(), *a);
        }
    }
}

/// [`run`] for however many rows `out` has (at most [`ROWS`]).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn rows<S: Source>(src: &S, x: *const f32, stride: usize, k0: usize, k1: usize, out: &mut [[f32; STRIP]]) {
    macro_rules! by_rows {
        ($($r:literal)*) => {
            match out.len() {
                0 => {}
                $($r => run::<$r, S>(src, x, stride, k0, k1, out),)*
                _ => unreachable!("at most {ROWS} rows"),
            }
        };
    }
    // SAFETY: as for `run`, per the callers.
    unsafe { by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16) }
}

/// acc[i] += Σ_kk x[i, kk] · w[kk] over all k rows of strip s of `packed`, each row widened
/// or dequantised in registers once for the (at most 16) rows; x rows are k apart.
///
/// # Safety
/// AVX-512 F and BW present, with AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn strip(packed: &PackedMatrix, s: usize, x: &[f32], acc: &mut [[f32; STRIP]]) {
    let k = packed.k;
    assert!(acc.len() <= ROWS && x.len() >= acc.len() * k);
    let x = x.as_ptr();
    // SAFETY: the assert bounds x and acc; each source covers strip s's k rows (checked by the
    // slicing here, whose lengths the packing guarantees: k a multiple of the block for block
    // codes, of the super-block for K-quants).
    unsafe {
        match &packed.strips {
            Strips::F32(v) => rows(&F32Rows::<false> { w: v[s * k * STRIP..(s + 1) * k * STRIP].as_ptr() }, x, k, 0, k, acc),
            Strips::Half(half, v) => {
                let bits = v[s * k * STRIP..(s + 1) * k * STRIP].as_ptr();
                match half {
                    Half::Bf16 => rows(&HalfRows::<true> { bits }, x, k, 0, k, acc),
                    Half::F16 => rows(&HalfRows::<false> { bits }, x, k, 0, k, acc),
                }
            }
            Strips::Blocks(b) => {
                let (cb, first, last) = (b.kind.code_bytes(), s * (k / BLOCK) * STRIP, (s + 1) * (k / BLOCK) * STRIP);
                let (scales, mins, codes) = (b.scales[first..last].as_ptr(), b.mins[first..last].as_ptr(), b.codes[s * k * cb..(s + 1) * k * cb].as_ptr());
                match b.kind {
                    BlockKind::Q8_0 => rows(&BlockRows::<0> { scales, mins, codes }, x, k, 0, k, acc),
                    BlockKind::Q4_0 => rows(&BlockRows::<1> { scales, mins, codes }, x, k, 0, k, acc),
                    BlockKind::Q4_1 => rows(&BlockRows::<2> { scales, mins, codes }, x, k, 0, k, acc),
                    BlockKind::Bytes => rows(&BlockRows::<3> { scales, mins, codes }, x, k, 0, k, acc),
                }
            }
            Strips::KBlocks(b) => {
                let strip = b.strip(s, k);
                if strip.nibbles {
                    rows(&KRows::<false> { strip }, x, k, 0, k, acc)
                } else {
                    rows(&KRows::<true> { strip }, x, k, 0, k, acc)
                }
            }
        }
    }
}

/// acc[i] += Σ x[i · stride + kk] · w[kk] over the `depth` f32 rows of `w` (rows k0.. of a
/// strip, x given from column k0), for the (at most 16) rows in `acc`. `prefetch`: also ask for
/// the strip's rows [`super::DEPTH`] ahead, so memory streams while it computes.
///
/// # Safety
/// AVX-512 F and BW present.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn block(x: &[f32], stride: usize, w: &[f32], acc: &mut [[f32; STRIP]], depth: usize, prefetch: bool) {
    let n = acc.len();
    assert!(n <= ROWS && (n == 0 || x.len() >= (n - 1) * stride + depth) && w.len() >= depth * STRIP);
    // SAFETY: the assert bounds every read and write.
    unsafe {
        if prefetch {
            rows(&F32Rows::<true> { w: w.as_ptr() }, x.as_ptr(), stride, 0, depth, acc)
        } else {
            rows(&F32Rows::<false> { w: w.as_ptr() }, x.as_ptr(), stride, 0, depth, acc)
        }
    }
}
