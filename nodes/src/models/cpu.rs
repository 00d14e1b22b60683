//! Host-side kernels for the CPU backend. Flex runs element-wise functions such as erf through
//! scalar libm on one thread and its attention op copies every head out and back; on two cores
//! those passes cost more than the matmuls around them. Where a model runs on Flex, these
//! kernels work on the tensor's own buffer instead (Flex hands it over without copying), in
//! parallel and in forms the compiler vectorises. Other backends keep Burn's ops.

use std::any::TypeId;

use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

/// Whether `B` is the plain CPU backend (not CUDA, not autodiff), where these kernels apply.
pub fn on_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<burn::backend::Flex>()
}

/// e^x for x in [-87, 88], to a few ulp, in plain arithmetic the compiler vectorises
/// (Cephes' expf): x = n·ln2 + r with n the nearest integer to x·log2(e) and ln2 split in two
/// so r is exact, then a degree-7 polynomial for e^r and 2^n from the exponent bits.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5·2^23 trick (valid for |t| < 2^22).
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// erf to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26, as PyTorch's vectorised CPU erf).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * fast_exp(-z * z);
    y.copysign(x)
}

/// GELU of one value: exact (`x·Φ(x)`) or the tanh approximation.
#[inline(always)]
pub fn gelu_value(x: f32, tanh: bool) -> f32 {
    if tanh {
        let y = 0.797_884_6 * (x + 0.044_715 * x * x * x);
        // tanh(y) = 1 - 2 / (e^(2y) + 1)
        0.5 * x * (2.0 - 2.0 / (fast_exp(2.0 * y) + 1.0))
    } else {
        0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
    }
}

/// A tensor primitive as Flex's own tensor; None on other backends.
pub fn flex_tensor<P: 'static>(p: &P) -> Option<&burn::backend::flex::FlexTensor> {
    (p as &dyn std::any::Any).downcast_ref::<burn::backend::flex::FlexTensor>()
}

/// The f32 values of a contiguous Flex tensor primitive, borrowed; None on other backends or
/// for strided views.
fn flex_f32<P: 'static>(p: &P) -> Option<&[f32]> {
    flex_tensor(p)?.as_slice::<f32>()
}

/// `x · wᵀ + b` for x [m, k] and w [n, k] (the [out, in] layout checkpoints use), on all cores
/// with the gemm crate, reading both operands in place and writing the bias-initialised output
/// once. Flex's own matmul reaches 60–90 GFLOP/s on these shapes here; this 110–140 (the
/// transposed weight layout packs better, and the output is not zeroed first). Strided inputs
/// or other backends take Burn's ops. Results are not bit-for-bit independent of the row count
/// (gemm picks kernels by size), so the LLM, whose samples must not depend on their batch
/// mates, keeps Flex's matmul; the encoder's vectors agree across batchings to ~1e-7.
pub fn linear_t<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, b: Option<Tensor<B, 1>>) -> Tensor<B, 2> {
    use burn::tensor::TensorPrimitive;
    let device = x.device();
    let ([m, k], [n, k2]) = (x.dims(), w.dims());
    assert_eq!(k, k2, "linear_t: x is [m, {k}] but w is [{n}, {k2}]");
    let xp = x.into_primitive().tensor();
    let wp = w.into_primitive().tensor();
    let bp = b.map(|b| b.into_primitive().tensor());
    let fast = on_flex::<B>() && flex_f32(&xp).is_some() && flex_f32(&wp).is_some() && bp.as_ref().is_none_or(|b| flex_f32(b).is_some());
    if !fast {
        let (x, w) = (Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(xp)), Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(wp)));
        let y = x.matmul(w.transpose());
        return match bp {
            Some(b) => y + Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(b)).unsqueeze::<2>(),
            None => y,
        };
    }
    let (xs, ws) = (flex_f32(&xp).expect("checked"), flex_f32(&wp).expect("checked"));
    let mut out = vec![0f32; m * n];
    if let Some(bs) = bp.as_ref().and_then(|b| flex_f32(b)) {
        out.par_chunks_mut(n).for_each(|row| row.copy_from_slice(bs));
    }
    // SAFETY: x is m×k row-major (m·k values), w is n×k row-major read as its transpose
    // (column j of wᵀ is row j of w), out is m×n row-major; the slices have those lengths.
    unsafe {
        gemm::gemm(m, n, k, out.as_mut_ptr(), 1, n as isize, bp.is_some(), xs.as_ptr(), 1, k as isize, ws.as_ptr(), k as isize, 1, 1.0, 1.0, false, false, false, parallelism(m, n, k));
    }
    Tensor::from_data(TensorData::new(out, [m, n]), &device)
}

/// All cores for matmuls above 192³ multiply-adds, one below (Flex's rule).
pub(crate) fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

fn host_data<B: Backend, const D: usize>(x: Tensor<B, D>) -> TensorData {
    x.into_data().convert::<f32>()
}

/// Runs `$body` compiled for AVX2 where the CPU has it (8 lanes instead of SSE2's 4), else
/// for the baseline: the same code, two instantiations.
macro_rules! with_avx2 {
    ($vis:vis $name:ident, ($($arg:ident: $ty:ty),*), $body:block) => {
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn plain($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) {
                plain($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { avx2($($arg),*) };
            }
            plain($($arg),*)
        }
    };
}

pub(crate) use with_avx2;

with_avx2!(gelu_slice, (v: &mut [f32], tanh: bool), {
    if tanh {
        for x in v.iter_mut() {
            *x = gelu_value(*x, true);
        }
    } else {
        for x in v.iter_mut() {
            *x = gelu_value(*x, false);
        }
    }
});

with_avx2!(softmax_row, (row: &mut [f32]), {
    // Max and sum in eight lanes (a float reduction in one lane cannot vectorise).
    let mut top = [f32::MIN; 8];
    let chunks = row.chunks_exact(8);
    for &x in chunks.remainder() {
        top[0] = if x > top[0] { x } else { top[0] };
    }
    for c in chunks {
        for l in 0..8 {
            top[l] = if c[l] > top[l] { c[l] } else { top[l] };
        }
    }
    let top = top.iter().copied().fold(f32::MIN, f32::max);
    for p in row.iter_mut() {
        *p = fast_exp(*p - top);
    }
    let mut z = [0f32; 8];
    let chunks = row.chunks_exact(8);
    for &x in chunks.remainder() {
        z[0] += x;
    }
    for c in chunks {
        for l in 0..8 {
            z[l] += c[l];
        }
    }
    let inv = 1.0 / z.iter().sum::<f32>();
    for p in row.iter_mut() {
        *p *= inv;
    }
});

/// Softmax of one row in place (max and sum in eight lanes; vectorised where the CPU allows).
pub fn softmax(row: &mut [f32]) {
    softmax_row(row)
}

/// GELU over a Flex tensor, in place on its buffer, on all cores.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>, tanh: bool) -> Tensor<B, D> {
    let device = x.device();
    let mut data = host_data(x);
    let v = data.as_mut_slice::<f32>().expect("f32 data");
    v.par_chunks_mut(8192).for_each(|c| gelu_slice(c, tanh));
    Tensor::from_data(data, &device)
}

/// Bidirectional softmax attention for a padded batch, from fused projections to context.
/// `qkv` is [rows · len, 3 · hidden] (queries, keys, values side by side, heads contiguous
/// within each); the result is [rows · len, hidden], token-major like the input. Row r's keys
/// are its first `lengths[r]` tokens; padding queries get zeros. Scores are scaled by
/// 1/√head_dim, and `bias` ([heads, len, len], the same for every row: MPNet's relative
/// positions) added to them when given. Per row and head, two small matmuls read the heads
/// where they lie (strided), so nothing is copied into head-major order and back.
pub fn attention_qkv<B: Backend>(qkv: Tensor<B, 2>, lengths: &[usize], len: usize, heads: usize, bias: Option<&[f32]>) -> Tensor<B, 2> {
    let device = qkv.device();
    let [n, h3] = qkv.dims();
    let (h, rows) = (h3 / 3, lengths.len());
    assert_eq!(n, rows * len, "qkv rows must be lengths.len() x len");
    assert!(h3 == 3 * h && h % heads == 0, "qkv width must be 3 x heads x head_dim");
    let hd = h / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let data = host_data(qkv);
    let x = data.as_slice::<f32>().expect("f32 data");
    let mut out = vec![0f32; n * h];
    out.par_chunks_mut(len * h).enumerate().for_each(|(r, o)| {
        let (m, base) = (lengths[r].min(len), r * len);
        if m == 0 {
            return;
        }
        let mut s = vec![0f32; m * m];
        let rows_of = |col: usize| &x[base * h3 + col..(base + m - 1) * h3 + col + hd];
        for head in 0..heads {
            let off = head * hd;
            let (q, k, v) = (rows_of(off), rows_of(h + off), rows_of(2 * h + off));
            // S = scale · Q Kᵀ: Q is m×hd with row stride h3; Kᵀ reads K's rows as columns.
            // SAFETY: every index the strides reach is inside the slices above (m rows of hd
            // values, rows h3 apart) and inside `s` (m×m, row-major) and `o` (len rows of h,
            // columns off..off+hd of the first m rows); nothing else writes them meanwhile.
            unsafe {
                gemm::gemm(m, m, hd, s.as_mut_ptr(), 1, m as isize, false, q.as_ptr(), 1, h3 as isize, k.as_ptr(), h3 as isize, 1, 0.0, scale, false, false, false, gemm::Parallelism::None);
            }
            for (i, row) in s.chunks_exact_mut(m).enumerate() {
                if let Some(bias) = bias {
                    let at = (head * len + i) * len;
                    row.iter_mut().zip(&bias[at..at + m]).for_each(|(x, b)| *x += b);
                }
                softmax_row(row);
            }
            // O[:, off..off+hd] = P V, written straight into the token-major output.
            // SAFETY: as above.
            unsafe {
                gemm::gemm(m, hd, m, o[off..].as_mut_ptr(), 1, h as isize, false, s.as_ptr(), 1, m as isize, v.as_ptr(), 1, h3 as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
            }
        }
    });
    Tensor::from_data(TensorData::new(out, [n, h]), &device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_in_order() {
        for n in [1usize, 5, 8, 13, 73] {
            let mut row: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
            let want: Vec<f64> = {
                let top = row.iter().copied().fold(f32::MIN, f32::max) as f64;
                let e: Vec<f64> = row.iter().map(|&x| (x as f64 - top).exp()).collect();
                let z: f64 = e.iter().sum();
                e.iter().map(|x| x / z).collect()
            };
            softmax_row(&mut row);
            for (a, b) in row.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-6, "{n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn fast_exp_and_gelu_match_the_standard_functions() {
        let mut worst_exp = 0f64;
        let mut worst_gelu = 0f64;
        for i in -8000..=8000 {
            let x = i as f32 / 100.0;
            let e = fast_exp(x) as f64;
            let want = (x as f64).exp();
            worst_exp = worst_exp.max(((e - want) / want).abs());
            // exact GELU in f64 through a high-precision erf; the slice form (AVX2 where the
            // CPU has it) must give the same.
            let g = gelu_value(x, false) as f64;
            let mut one = [x];
            gelu_slice(&mut one, false);
            assert_eq!(one[0] as f64, g);
            let xf = x as f64;
            let want = 0.5 * xf * (1.0 + libm_erf(xf / 2f64.sqrt()));
            worst_gelu = worst_gelu.max((g - want).abs() / want.abs().max(1.0));
        }
        assert!(worst_exp < 1e-6, "exp relative error {worst_exp}");
        assert!(worst_gelu < 1e-6, "gelu error {worst_gelu}");
        // The tanh form against its own formula.
        for x in [-3.0f32, -0.5, 0.0, 0.7, 2.5] {
            let want = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
            assert!((gelu_value(x, true) - want).abs() < 1e-6, "{x}");
        }
    }

    /// erf in f64 by its Taylor series (|x| < 3) or continued fraction.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            let t = x.abs();
            let mut f = 0.0;
            for n in (1..80).rev() {
                f = n as f64 / 2.0 / (t + f);
            }
            return x.signum() * (1.0 - (-t * t).exp() / (t + f) / std::f64::consts::PI.sqrt());
        }
        let (mut sum, mut term) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
