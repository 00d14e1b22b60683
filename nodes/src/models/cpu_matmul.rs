//! `x · W` for inference on the CPU backend with our own AVX2 kernel.
//!
//! Burn's Flex backend multiplies through the `gemm` crate, which on these 2-core AVX2 machines
//! reaches about 50 GFLOP/s on the LLM's shapes ([200 × 576] · [576 × 960]) and 14 GFLOP/s on
//! the decode-time head ([16 × 576] · [576 × 49152]), where PyTorch reaches 85–105 and 18. The
//! LLM spends 70% of its time in those matmuls, so `matmul` here runs `dagrun_kernels::sgemm`
//! on contiguous f32 Flex tensors and falls back to Burn's matmul on every other backend
//! (CUDA, and autodiff, whose gradients need Burn's op) and on CPUs without AVX2/FMA.

use std::any::Any;

use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::prelude::*;
use burn::tensor::{Bytes, DType, Shape, TensorPrimitive};

/// Whether the kernel runs: on CPUs with AVX2/FMA unless `DAGRUN_CPU_MATMUL=burn` (for
/// benchmarking the two against each other).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| dagrun_kernels::available() && std::env::var("DAGRUN_CPU_MATMUL").map_or(true, |v| v != "burn"))
}

/// `x [m, k] · w [k, n]`.
pub fn matmul<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    if !enabled() {
        return x.matmul(w);
    }
    match (as_flex::<B>(x), as_flex::<B>(w)) {
        (Ok(x), Ok(w)) => match flex_matmul(&x, &w) {
            Some(out) => from_flex::<B>(out),
            None => Tensor::from_primitive(TensorPrimitive::Float(back::<B>(x))).matmul(Tensor::from_primitive(TensorPrimitive::Float(back::<B>(w)))),
        },
        (x, w) => to_tensor::<B>(x).matmul(to_tensor::<B>(w)),
    }
}

/// The Flex tensor inside `t`, or `t`'s primitive back when `B` is not Flex.
fn as_flex<B: Backend>(t: Tensor<B, 2>) -> Result<FlexTensor, B::FloatTensorPrimitive> {
    match t.into_primitive() {
        TensorPrimitive::Float(p) => {
            let any: Box<dyn Any> = Box::new(p);
            any.downcast::<FlexTensor>().map(|b| *b).map_err(|any| *any.downcast::<B::FloatTensorPrimitive>().expect("the primitive's own type"))
        }
        TensorPrimitive::QFloat(_) => unreachable!("LLM weights are never quantized tensors"),
    }
}

fn back<B: Backend>(t: FlexTensor) -> B::FloatTensorPrimitive {
    let any: Box<dyn Any> = Box::new(t);
    *any.downcast::<B::FloatTensorPrimitive>().expect("B is Flex")
}

fn to_tensor<B: Backend>(t: Result<FlexTensor, B::FloatTensorPrimitive>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(match t {
        Ok(f) => back::<B>(f),
        Err(p) => p,
    }))
}

fn from_flex<B: Backend>(t: FlexTensor) -> Tensor<B, 2> {
    debug_assert_eq!(std::any::TypeId::of::<B>(), std::any::TypeId::of::<Flex>());
    Tensor::from_primitive(TensorPrimitive::Float(back::<B>(t)))
}

/// Our kernel on two contiguous f32 matrices; None for anything else.
fn flex_matmul(x: &FlexTensor, w: &FlexTensor) -> Option<FlexTensor> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    let (m, k, n) = (xs[0], xs[1], ws[1]);
    let (x0, x1) = x.layout().contiguous_offsets()?;
    let (w0, w1) = w.layout().contiguous_offsets()?;
    let a = &x.storage::<f32>()[x0..x1];
    let b = &w.storage::<f32>()[w0..w1];
    let mut c = vec![0f32; m * n];
    dagrun_kernels::sgemm(a, b, &mut c, m, k, n);
    Some(FlexTensor::new(Bytes::from_elems(c), Layout::contiguous(Shape::from(vec![m, n])), DType::F32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_on_flex_equals_burns_and_leaves_views_alone() {
        let d = Default::default();
        let x = Tensor::<Flex, 2>::random([9, 70], burn::tensor::Distribution::Default, &d);
        let w = Tensor::<Flex, 2>::random([70, 40], burn::tensor::Distribution::Default, &d);
        let ours: Vec<f32> = matmul(x.clone(), w.clone()).into_data().to_vec().unwrap();
        let burns: Vec<f32> = x.clone().matmul(w.clone()).into_data().to_vec().unwrap();
        assert!(ours.iter().zip(&burns).all(|(a, b)| (a - b).abs() < 1e-4));
        // A transposed (non-contiguous) operand goes to Burn's matmul, with the same result.
        let wt = w.clone().transpose().transpose();
        let x_view = x.clone().narrow(1, 0, 70);
        let again: Vec<f32> = matmul(x_view, wt).into_data().to_vec().unwrap();
        assert!(again.iter().zip(&burns).all(|(a, b)| (a - b).abs() < 1e-4));
        let t: Vec<f32> = matmul(w.clone().transpose(), x.clone().transpose()).into_data().to_vec().unwrap();
        let tb: Vec<f32> = w.transpose().matmul(x.transpose()).into_data().to_vec().unwrap();
        assert!(t.iter().zip(&tb).all(|(a, b)| (a - b).abs() < 1e-4));
    }
}
