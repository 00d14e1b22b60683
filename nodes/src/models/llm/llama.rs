//! The Llama architecture in Burn: RMSNorm, rotary positions (Hugging Face's rotate-half
//! convention), grouped-query attention with a KV cache, SwiGLU, tied or separate output.
//!
//! Activations are kept as `[tokens, width]` matrices so every projection is one plain matmul;
//! q/k/v and gate/up are fused into one weight each, which halves the kernel launches per layer
//! when decoding one token at a time.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::TensorData;

use super::config::LlamaConfig;

/// Root-mean-square layer norm with a learned scale.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// x [n, d] -> [n, d].
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let ms = x.clone().powi_scalar(2).mean_dim(1);
        x * ms.add_scalar(self.eps).sqrt().recip() * self.weight.val().unsqueeze::<2>()
    }
}

/// One decoder layer.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub attn_norm: RmsNorm<B>,
    /// [hidden, (heads + 2 kv_heads) · head_dim]: q, k and v projections side by side.
    pub wqkv: Param<Tensor<B, 2>>,
    /// [heads · head_dim, hidden].
    pub wo: Param<Tensor<B, 2>>,
    pub mlp_norm: RmsNorm<B>,
    /// [hidden, 2 · intermediate]: gate and up projections side by side.
    pub w_gate_up: Param<Tensor<B, 2>>,
    /// [intermediate, hidden].
    pub w_down: Param<Tensor<B, 2>>,
}

/// The model.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// [vocab, hidden].
    pub embed: Param<Tensor<B, 2>>,
    pub blocks: Vec<Block<B>>,
    pub norm: RmsNorm<B>,
    /// [hidden, vocab]; for tied models a transposed copy of `embed`.
    pub head: Param<Tensor<B, 2>>,
    /// [head_dim, head_dim]: x·rot = rotate_half(x), so RoPE is two multiplies and one matmul.
    rot: Tensor<B, 2>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Keys and values of the tokens seen so far, per layer: `[batch, kv_heads, slots, head_dim]`.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    pub layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize) -> Self {
        KvCache { layers: vec![None; layers] }
    }
    /// Slots filled so far.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[2])
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Rows picked (and repeated) by `rows`: after prefilling a prompt once, its cache is
    /// repeated for every sample drawn from it.
    pub fn select_rows(&self, rows: Tensor<B, 1, Int>) -> Self {
        let layers = self.layers.iter().map(|l| l.as_ref().map(|(k, v)| (k.clone().select(0, rows.clone()), v.clone().select(0, rows.clone())))).collect();
        KvCache { layers }
    }
}

/// One forward step's inputs for `batch` rows of `len` new tokens each, built on the host.
pub struct Step<B: Backend> {
    pub batch: usize,
    pub len: usize,
    /// [batch · len] token ids, row-major.
    pub ids: Tensor<B, 1, Int>,
    /// [batch, 1, len, head_dim] RoPE cosines and sines at each token's position.
    pub cos: Tensor<B, 4>,
    pub sin: Tensor<B, 4>,
    /// [batch, 1, groups · len, slots] additive mask (0 or a large negative), or None when every
    /// new token may see every earlier slot and itself only causally with no padding and len 1.
    pub mask: Option<Tensor<B, 4>>,
}

/// A large negative instead of −∞: rows that see nothing (padding) stay finite, so they can
/// never turn a real row's attention into NaN.
pub const MASKED: f32 = -1e9;

impl<B: Backend> Step<B> {
    /// Builds a step. `ids` holds `batch` rows of `len` tokens; `positions` each token's RoPE
    /// position; `visible(row, i, slot)` says whether new token `i` of `row` may attend to
    /// cache slot `slot` (slots count the cache first, then the new tokens).
    pub fn new(
        config: &LlamaConfig,
        inv_freq: &[f32],
        batch: usize,
        len: usize,
        ids: &[u32],
        positions: &[usize],
        slots: usize,
        visible: Option<&dyn Fn(usize, usize, usize) -> bool>,
        device: &B::Device,
    ) -> Self {
        assert_eq!(ids.len(), batch * len);
        assert_eq!(positions.len(), batch * len);
        let hd = config.head_dim;
        let half = hd / 2;
        let mut cos = vec![0f32; batch * len * hd];
        let mut sin = vec![0f32; batch * len * hd];
        for (t, &p) in positions.iter().enumerate() {
            for (j, f) in inv_freq.iter().enumerate() {
                let angle = p as f32 * f;
                let (s, c) = (angle.sin(), angle.cos());
                cos[t * hd + j] = c;
                cos[t * hd + j + half] = c;
                sin[t * hd + j] = s;
                sin[t * hd + j + half] = s;
            }
        }
        let groups = config.num_attention_heads / config.num_key_value_heads;
        let mask = visible.map(|visible| {
            let mut m = vec![0f32; batch * groups * len * slots];
            for r in 0..batch {
                for g in 0..groups {
                    for i in 0..len {
                        let row = ((r * groups + g) * len + i) * slots;
                        for s in 0..slots {
                            if !visible(r, i, s) {
                                m[row + s] = MASKED;
                            }
                        }
                    }
                }
            }
            Tensor::from_data(TensorData::new(m, [batch, 1, groups * len, slots]), device)
        });
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Step {
            batch,
            len,
            ids: Tensor::from_data(TensorData::new(ids, [batch * len]), device),
            cos: Tensor::from_data(TensorData::new(cos, [batch, 1, len, hd]), device),
            sin: Tensor::from_data(TensorData::new(sin, [batch, 1, len, hd]), device),
            mask,
        }
    }
}

/// The matrix R with x·R = rotate_half(x) = [−x₂, x₁].
fn rotate_half_matrix<B: Backend>(hd: usize, device: &B::Device) -> Tensor<B, 2> {
    let half = hd / 2;
    let mut r = vec![0f32; hd * hd];
    for j in 0..half {
        r[(j + half) * hd + j] = -1.0;
        r[j * hd + j + half] = 1.0;
    }
    Tensor::from_data(TensorData::new(r, [hd, hd]), device)
}

impl<B: Backend> Llama<B> {
    /// A model of shape `c` from its weights (see `weights::build`, which checks their shapes).
    pub fn new(c: &LlamaConfig, embed: Param<Tensor<B, 2>>, blocks: Vec<Block<B>>, norm: RmsNorm<B>, head: Param<Tensor<B, 2>>, device: &B::Device) -> Self {
        Llama {
            embed,
            blocks,
            norm,
            head,
            rot: rotate_half_matrix(c.head_dim, device),
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        }
    }

    /// Runs the new tokens of `step` through the layers, appending their keys and values to
    /// `cache`; returns the final-norm hidden states [batch · len, hidden].
    pub fn forward(&self, step: &Step<B>, cache: &mut KvCache<B>) -> Tensor<B, 2> {
        let mut x = self.embed.val().select(0, step.ids.clone());
        for (block, layer) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            x = self.block(block, x, step, layer);
        }
        self.norm.forward(x)
    }

    /// Logits [rows, vocab] for hidden states [rows, hidden].
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        hidden.matmul(self.head.val())
    }

    fn rope(&self, x: Tensor<B, 4>, step: &Step<B>) -> Tensor<B, 4> {
        let [b, h, s, hd] = x.dims();
        let rotated = x.clone().reshape([b * h * s, hd]).matmul(self.rot.clone()).reshape([b, h, s, hd]);
        x * step.cos.clone() + rotated * step.sin.clone()
    }

    fn block(&self, blk: &Block<B>, x: Tensor<B, 2>, step: &Step<B>, layer: &mut Option<(Tensor<B, 4>, Tensor<B, 4>)>) -> Tensor<B, 2> {
        let (b, s) = (step.batch, step.len);
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let g = nh / nkv;
        let qkv = blk.attn_norm.forward(x.clone()).matmul(blk.wqkv.val()); // [n, (nh + 2 nkv) hd]
        let q = qkv.clone().narrow(1, 0, nh * hd).mul_scalar(1.0 / (hd as f64).sqrt());
        let k = qkv.clone().narrow(1, nh * hd, nkv * hd);
        let v = qkv.narrow(1, (nh + nkv) * hd, nkv * hd);
        let q = self.rope(q.reshape([b, s, nh, hd]).swap_dims(1, 2), step); // [b, nh, s, hd]
        let k = self.rope(k.reshape([b, s, nkv, hd]).swap_dims(1, 2), step); // [b, nkv, s, hd]
        let v = v.reshape([b, s, nkv, hd]).swap_dims(1, 2);
        let (k, v) = match layer.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        *layer = Some((k.clone(), v.clone()));
        // Heads h = kv·g + i share kv head kv: group the query heads instead of repeating k/v.
        let q = q.reshape([b, nkv, g * s, hd]);
        let mut scores = q.matmul(k.swap_dims(2, 3)); // [b, nkv, g·s, slots]
        if let Some(mask) = &step.mask {
            scores = scores + mask.clone();
        }
        let att = softmax(scores, 3).matmul(v); // [b, nkv, g·s, hd]
        let att = att.reshape([b, nh, s, hd]).swap_dims(1, 2).reshape([b * s, nh * hd]);
        let x = x + att.matmul(blk.wo.val());
        let ff = blk.intermediate();
        let gu = blk.mlp_norm.forward(x.clone()).matmul(blk.w_gate_up.val());
        let hidden = silu(gu.clone().narrow(1, 0, ff)) * gu.narrow(1, ff, ff);
        x + hidden.matmul(blk.w_down.val())
    }
}

impl<B: Backend> Block<B> {
    fn intermediate(&self) -> usize {
        self.w_down.dims()[0]
    }
}
