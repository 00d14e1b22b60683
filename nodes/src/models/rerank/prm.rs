//! PRM (KAR_REFERENCE §5.4): fixed sinusoidal positions (row 0 all zeros) added to the
//! features, one self-attention layer, then an MLP on [attention out | input] and a sigmoid.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

use super::mha::Mha;
use burn::tensor::Distribution;

use crate::models::init::{linear3, linear_xavier, param, xavier_std, zeros};

#[derive(Module, Debug)]
pub struct Prm<B: Backend> {
    pub attention: Mha<B>,
    /// The first MLP layer reads [attention out | input]; its two halves are kept apart so
    /// the concatenation never materialises: `first_attention` (with the bias) and `first_input`.
    pub first_attention: Linear<B>,
    pub first_input: Linear<B>,
    pub mlp: Vec<Linear<B>>,
    pub out: Linear<B>,
}

/// The position table [L, d]: row 0 zeros; angle(p, j) = p / 10000^(2·floor(j/2)/d), sin on
/// even j, cos on odd j.
pub fn positions(l: usize, d: usize) -> Vec<f32> {
    let mut v = vec![0f32; l * d];
    for p in 1..l {
        for j in 0..d {
            let angle = p as f64 / 10000f64.powf(2.0 * (j / 2) as f64 / d as f64);
            v[p * d + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    v
}

impl<B: Backend> Prm<B> {
    pub fn new(d: usize, heads: usize, mlp: &[usize], device: &B::Device) -> Self {
        let first = mlp.first().copied().unwrap_or(1);
        // The halves of one [2d, first] xavier_normal matrix.
        let half = |bias: bool| Linear {
            weight: param([d, first], Distribution::Normal(0.0, xavier_std(2 * d, first)), device),
            bias: bias.then(|| zeros([first], device)),
        };
        let mut layers = Vec::new();
        let mut w = first;
        for &m in mlp.iter().skip(1) {
            layers.push(linear_xavier(w, m, device));
            w = m;
        }
        Prm { attention: Mha::new(d, heads, device), first_attention: half(true), first_input: half(false), mlp: layers, out: linear_xavier(w, 1, device) }
    }

    /// x [B, L, d] -> probabilities [B, L].
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, l, d] = x.dims();
        let pos = Tensor::<B, 2>::from_data(TensorData::new(positions(l, d), [l, d]), &x.device());
        let e = x + pos.unsqueeze::<3>();
        let att = self.attention.forward(e.clone());
        let mut h = relu(linear3(&self.first_attention, att) + linear3(&self.first_input, e));
        for layer in &self.mlp {
            h = relu(linear3(layer, h));
        }
        sigmoid(linear3(&self.out, h)).reshape([b, l])
    }
}
