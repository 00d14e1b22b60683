//! Parameter initialisation matching PyTorch's (what KAR's `weight_init` and PyTorch's
//! defaults produce), so that training starts from the same distributions.

use std::cell::RefCell;

use burn::module::{Param, ParamId};
use burn::nn::{BatchNorm, BatchNormConfig, Embedding, Linear};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

thread_local! {
    /// What [`param`] draws from, on the thread that builds a model.
    static RNG: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::seed_from_u64(0));
}

/// Seeds the weights this thread draws next. (Burn 0.21's `Backend::seed` seeds only the first
/// random op; Flex draws every later one from entropy, so weights made with `Tensor::random`
/// differed from run to run and a retrained reranker never hit the early cutoff.)
pub fn seed(seed: u64) {
    RNG.with(|r| *r.borrow_mut() = ChaCha8Rng::seed_from_u64(seed));
}

/// A weight drawn from `dist` (uniform or normal) with this thread's seeded generator.
pub fn param<B: Backend, const D: usize>(shape: [usize; D], dist: Distribution, device: &B::Device) -> Param<Tensor<B, D>> {
    let n = shape.iter().product();
    let values: Vec<f32> = RNG.with(|r| {
        let mut r = r.borrow_mut();
        (0..n).map(|_| draw(dist, &mut r)).collect()
    });
    Param::initialized(ParamId::new(), Tensor::from_data(TensorData::new(values, shape), device).require_grad())
}

fn draw(dist: Distribution, r: &mut ChaCha8Rng) -> f32 {
    match dist {
        Distribution::Uniform(lo, hi) => (lo + (hi - lo) * r.random::<f64>()) as f32,
        Distribution::Normal(mean, std) => {
            // Box–Muller; 1 − u keeps the logarithm's argument in (0, 1].
            let (u, v) = (1.0 - r.random::<f64>(), r.random::<f64>());
            (mean + std * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        }
        other => panic!("init::param draws uniform or normal weights, not {other:?}"),
    }
}

/// Zeros.
pub fn zeros<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Param<Tensor<B, D>> {
    Param::initialized(ParamId::new(), Tensor::zeros(shape, device).require_grad())
}

/// xavier_normal std for a (fan_in, fan_out) matrix.
pub fn xavier_std(fan_in: usize, fan_out: usize) -> f64 {
    (2.0 / (fan_in + fan_out) as f64).sqrt()
}

/// A Linear layer as KAR initialises it: xavier_normal weight, zero bias.
pub fn linear_xavier<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    Linear {
        weight: param([d_in, d_out], Distribution::Normal(0.0, xavier_std(d_in, d_out)), device),
        bias: Some(zeros([d_out], device)),
    }
}

/// A Linear layer with every weight and bias uniform in ±`bound` (PyTorch's GRU default).
pub fn linear_uniform<B: Backend>(d_in: usize, d_out: usize, bound: f64, device: &B::Device) -> Linear<B> {
    Linear {
        weight: param([d_in, d_out], Distribution::Uniform(-bound, bound), device),
        bias: Some(param([d_out], Distribution::Uniform(-bound, bound), device)),
    }
}

/// An embedding table as KAR initialises it: xavier_normal over the whole (n, dim) matrix.
pub fn embedding_xavier<B: Backend>(n: usize, dim: usize, device: &B::Device) -> Embedding<B> {
    Embedding { weight: param([n, dim], Distribution::Normal(0.0, xavier_std(dim, n)), device) }
}

/// BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5, gamma 1, beta 0).
pub fn batch_norm<B: Backend>(features: usize, device: &B::Device) -> BatchNorm<B> {
    BatchNormConfig::new(features).init(device)
}

/// A Linear layer over the last dimension of a 3-d input, run as one 2-d matmul (a 3-d input
/// would otherwise become a batch of small matmuls, one per leading index).
pub fn linear3<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [a, b, d] = x.dims();
    let y = layer.forward(x.reshape([a * b, d]));
    let out = y.dims()[1];
    y.reshape([a, b, out])
}
