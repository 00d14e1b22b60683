//! A single-layer GRU with PyTorch's equations and initialisation. The input projections for
//! all steps run as one matmul per gate over a time-major copy of the input; only the
//! recurrence loops over the list. Gates are separate matrices, so no step slices columns.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::models::init::{linear3, linear_uniform};

#[derive(Module, Debug)]
pub struct Gru<B: Backend> {
    pub input_r: Linear<B>,
    pub input_z: Linear<B>,
    pub input_n: Linear<B>,
    pub hidden_r: Linear<B>,
    pub hidden_z: Linear<B>,
    pub hidden_n: Linear<B>,
    pub size: usize,
}

impl<B: Backend> Gru<B> {
    pub fn new(d_in: usize, size: usize, device: &B::Device) -> Self {
        let k = 1.0 / (size as f64).sqrt();
        Gru {
            input_r: linear_uniform(d_in, size, k, device),
            input_z: linear_uniform(d_in, size, k, device),
            input_n: linear_uniform(d_in, size, k, device),
            hidden_r: linear_uniform(size, size, k, device),
            hidden_z: linear_uniform(size, size, k, device),
            hidden_n: linear_uniform(size, size, k, device),
            size,
        }
    }

    /// x [B, L, d] -> (outputs [B, L, H], final state [B, H]).
    pub fn forward(&self, x: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let [b, l, _] = x.dims();
        let hs = self.size;
        // Project in the input's layout, then make the (narrower) projections time-major.
        let time_major = |t: Tensor<B, 3>| t.swap_dims(0, 1); // [L, B, H]
        let step = |t: Tensor<B, 3>, i: usize| t.slice([i..i + 1, 0..b, 0..hs]).reshape([b, hs]);
        let (gr, gz, gn) = (
            time_major(linear3(&self.input_r, x.clone())),
            time_major(linear3(&self.input_z, x.clone())),
            time_major(linear3(&self.input_n, x)),
        );
        let mut h: Tensor<B, 2> = Tensor::zeros([b, hs], &gr.device());
        let mut outs = Vec::with_capacity(l);
        for t in 0..l {
            let r = sigmoid(step(gr.clone(), t) + self.hidden_r.forward(h.clone()));
            let z = sigmoid(step(gz.clone(), t) + self.hidden_z.forward(h.clone()));
            let n = (step(gn.clone(), t) + r * self.hidden_n.forward(h.clone())).tanh();
            h = n.clone() + z * (h - n);
            outs.push(h.clone());
        }
        (Tensor::stack(outs, 1), h)
    }
}
