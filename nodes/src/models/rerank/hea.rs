//! The hybrid-expert adaptor (KAR_REFERENCE §5.2): per tower (user, item), S shared experts
//! (same weights for both towers) and P tower-specific experts, each an MLP D→128→32 with a
//! ReLU after every layer, mixed by a softmax gate reading the tower's raw vector. Output:
//! [user 32 | item 32] per candidate.
//!
//! The experts of a group are stored stacked, so a tower runs each layer as one matmul: the
//! first layer as [N, D] × [D, E·w], the later ones as a batched [E, N, w] × [E, w, w'].
//! The item tower runs once per distinct item of the batch, the user tower once per list.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::Distribution;

use super::config::KnowledgeConfig;
use crate::models::init::{linear_xavier, param, xavier_std, zeros};

/// A group of experts' first layer, stacked along the output: [D, E·w] and [E·w].
#[derive(Module, Debug)]
pub struct FirstLayer<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
}

/// A group of experts' later layer, stacked: [E, w, w'] and [E, 1, w'].
#[derive(Module, Debug)]
pub struct LaterLayer<B: Backend> {
    pub weight: Param<Tensor<B, 3>>,
    pub bias: Param<Tensor<B, 3>>,
}

/// `count` experts of the same shape.
#[derive(Module, Debug)]
pub struct Experts<B: Backend> {
    pub first: FirstLayer<B>,
    pub later: Vec<LaterLayer<B>>,
    pub count: usize,
}

impl<B: Backend> Experts<B> {
    fn new(count: usize, dim: usize, arch: &[usize], device: &B::Device) -> Self {
        let w = arch[0];
        // Each expert's weights are xavier_normal for its own (fan_in, fan_out).
        let first = FirstLayer { weight: param([dim, count * w], Distribution::Normal(0.0, xavier_std(dim, w)), device), bias: zeros([count * w], device) };
        let later = arch
            .windows(2)
            .map(|p| LaterLayer {
                weight: param([count, p[0], p[1]], Distribution::Normal(0.0, xavier_std(p[0], p[1])), device),
                bias: zeros([count, 1, p[1]], device),
            })
            .collect();
        Experts { first, later, count }
    }
}

/// The adaptor.
#[derive(Module, Debug)]
pub struct Hea<B: Backend> {
    pub shared: Experts<B>,
    pub user_specific: Experts<B>,
    pub item_specific: Experts<B>,
    pub user_gate: Linear<B>,
    pub item_gate: Linear<B>,
}

impl<B: Backend> Hea<B> {
    pub fn new(c: &KnowledgeConfig, device: &B::Device) -> Self {
        let n = c.shared_experts + c.specific_experts;
        Hea {
            shared: Experts::new(c.shared_experts, c.dim, &c.expert_arch, device),
            user_specific: Experts::new(c.specific_experts, c.dim, &c.expert_arch, device),
            item_specific: Experts::new(c.specific_experts, c.dim, &c.expert_arch, device),
            user_gate: linear_xavier(c.dim, n, device),
            item_gate: linear_xavier(c.dim, n, device),
        }
    }

    /// One tower: x [N, D] -> [N, out]; experts in the order shared then specific.
    fn tower(&self, x: Tensor<B, 2>, specific: &Experts<B>, gate: &Linear<B>) -> Tensor<B, 2> {
        let [n, _] = x.dims();
        let e = self.shared.count + specific.count;
        let groups: Vec<&Experts<B>> = [&self.shared, specific].into_iter().filter(|g| g.count > 0).collect();
        let g = softmax(gate.forward(x.clone()), 1); // [N, E]
        let w1 = Tensor::cat(groups.iter().map(|grp| grp.first.weight.val()).collect(), 1);
        let b1 = Tensor::cat(groups.iter().map(|grp| grp.first.bias.val()).collect(), 0);
        let width = w1.dims()[1] / e;
        let mut h = relu(x.matmul(w1) + b1.unsqueeze::<2>()).reshape([n, e, width]).swap_dims(0, 1); // [E, N, w]
        for layer in 0..self.shared.later.len().max(specific.later.len()) {
            let w = Tensor::cat(groups.iter().map(|grp| grp.later[layer].weight.val()).collect(), 0);
            let b = Tensor::cat(groups.iter().map(|grp| grp.later[layer].bias.val()).collect(), 0);
            h = relu(h.matmul(w) + b);
        }
        // Gate-weighted sum over experts: [E, N, out] · [E, N, 1] summed over E.
        let gt = g.swap_dims(0, 1).unsqueeze_dim::<3>(2);
        (h * gt).sum_dim(0).squeeze_dim::<2>(0)
    }

    /// user [B, D], items [B, L, D] -> [B, L, 2*out].
    pub fn forward(&self, user: Tensor<B, 2>, items: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, l, d] = items.dims();
        let u = self.tower(user, &self.user_specific, &self.user_gate);
        let out = u.dims()[1];
        let v = self.tower(items.reshape([b * l, d]), &self.item_specific, &self.item_gate).reshape([b, l, out]);
        Tensor::cat(vec![u.unsqueeze_dim::<3>(1).expand([b, l, out]), v], 2)
    }

    /// As `forward`, with the item tower run once per distinct item: `item_table` [U, D] holds
    /// the distinct items' vectors and `item_index` [B, L] each candidate's row in it.
    pub fn forward_indexed(&self, user: Tensor<B, 2>, item_table: Tensor<B, 2>, item_index: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, l] = item_index.dims();
        let u = self.tower(user, &self.user_specific, &self.user_gate);
        let out = u.dims()[1];
        let v = self.tower(item_table, &self.item_specific, &self.item_gate).select(0, item_index.reshape([b * l])).reshape([b, l, out]);
        Tensor::cat(vec![u.unsqueeze_dim::<3>(1).expand([b, l, out]), v], 2)
    }
}
