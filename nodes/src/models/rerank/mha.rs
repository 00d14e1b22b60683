//! PyTorch's `nn.MultiheadAttention` as PRM uses it: self-attention with biased q/k/v and
//! output projections, no mask, no dropout. Initialised like PyTorch (in-projection
//! xavier_uniform over the stacked 3d×d matrix, out-projection as KAR's xavier_normal).

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::Distribution;

use crate::models::init::{linear3, linear_xavier, param, zeros};

#[derive(Module, Debug)]
pub struct Mha<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub out: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> Mha<B> {
    pub fn new(d: usize, heads: usize, device: &B::Device) -> Self {
        // PyTorch draws the stacked [3d, d] in-projection xavier_uniform: bound sqrt(6 / 4d).
        let bound = (6.0 / (d + 3 * d) as f64).sqrt();
        let proj = || Linear { weight: param([d, d], Distribution::Uniform(-bound, bound), device), bias: Some(zeros([d], device)) };
        Mha { q: proj(), k: proj(), v: proj(), out: linear_xavier(d, d, device), heads }
    }

    /// x [B, L, d] -> [B, L, d].
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, l, d] = x.dims();
        let h = self.heads;
        let dh = d / h;
        let heads = |t: Tensor<B, 3>| t.reshape([b, l, h, dh]).swap_dims(1, 2); // [B, h, L, dh]
        let (q, k, v) = (heads(linear3(&self.q, x.clone())), heads(linear3(&self.k, x.clone())), heads(linear3(&self.v, x)));
        let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt(); // [B, h, L, L]
        let att = softmax(scores, 3).matmul(v); // [B, h, L, dh]
        linear3(&self.out, att.swap_dims(1, 2).reshape([b, l, d]))
    }
}
