//! DLCM (KAR_REFERENCE §5.3): a GRU over the list in its given order, then
//! s_j = softmax(W · (tanh(V · BN1(h_L)) ⊙ BN2(o_j)))[0].

use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::gru::Gru;
use crate::models::init::{batch_norm, linear3, linear_xavier};

#[derive(Module, Debug)]
pub struct Dlcm<B: Backend> {
    pub gru: Gru<B>,
    pub bn_state: BatchNorm<B>,
    pub state: Linear<B>,
    pub bn_outputs: BatchNorm<B>,
    pub score: Linear<B>,
}

impl<B: Backend> Dlcm<B> {
    pub fn new(d_in: usize, hidden: usize, device: &B::Device) -> Self {
        Dlcm {
            gru: Gru::new(d_in, hidden, device),
            bn_state: batch_norm(hidden, device),
            state: linear_xavier(hidden, hidden, device),
            bn_outputs: batch_norm(hidden, device),
            score: linear_xavier(hidden, 2, device),
        }
    }

    /// x [B, L, d] -> probabilities [B, L].
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, l, _] = x.dims();
        let (o, h) = self.gru.forward(x);
        let hid = h.dims()[1];
        let a = self.state.forward(self.bn_state.forward(h)).tanh(); // [B, H]
        let o = self.bn_outputs.forward(o.reshape([b * l, hid])).reshape([b, l, hid]);
        let z = linear3(&self.score, o * a.unsqueeze_dim::<3>(1)); // [B, L, 2]
        softmax(z, 2).slice([0..b, 0..l, 0..1]).reshape([b, l])
    }
}
