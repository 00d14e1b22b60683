//! The Llama architecture in Burn: RMSNorm, rotary positions (Hugging Face's rotate-half
//! convention), grouped-query attention with a KV cache, SwiGLU, tied or separate output, and
//! where a model has them Qwen2's q/k/v biases, Qwen3's q/k head norms, sliding windows, and
//! Gemma's GeGLU, scaled embedding, output norms, score scale, soft caps and local RoPE.
//!
//! Activations are kept as `[tokens, width]` matrices so every projection is one plain matmul;
//! attention runs head-major (`[batch, heads, tokens, head_dim]`) through Burn's fused attention
//! op. Every tensor an elementwise op sees is contiguous and same-shaped: on the CPU backend,
//! broadcasts over inner dimensions and strided 4-D copies fall off its SIMD paths and cost
//! more than the matmuls (measured: 25% of a prefill before this layout).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::TensorData;

use super::config::LlamaConfig;
use super::lora::{project, Adapters, BlockAdapters};
use crate::models::ops::{head_major, token_major};

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
    /// [hidden, (heads + kv_heads) · head_dim]: q and k projections side by side (RoPE
    /// treats them alike, so they stay together until attention).
    pub wqk: Param<Tensor<B, 2>>,
    /// [(heads + kv_heads) · head_dim]: the q and k biases side by side (Qwen2), or none.
    pub bqk: Option<Param<Tensor<B, 1>>>,
    /// [head_dim] each: RMSNorm weights of every q head and every k head (Qwen3), or none.
    pub q_norm: Option<RmsNorm<B>>,
    pub k_norm: Option<RmsNorm<B>>,
    /// [hidden, kv_heads · head_dim].
    pub wv: Param<Tensor<B, 2>>,
    /// [kv_heads · head_dim]: the v bias (Qwen2), or none.
    pub bv: Option<Param<Tensor<B, 1>>>,
    /// [heads · head_dim, hidden].
    pub wo: Param<Tensor<B, 2>>,
    pub mlp_norm: RmsNorm<B>,
    /// RMSNorms of the attention's and the MLP's outputs (Gemma 2 and 3), or none.
    pub post_attn_norm: Option<RmsNorm<B>>,
    pub post_mlp_norm: Option<RmsNorm<B>>,
    /// [hidden, intermediate].
    pub w_gate: Param<Tensor<B, 2>>,
    /// [hidden, intermediate].
    pub w_up: Param<Tensor<B, 2>>,
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
    /// The shape: head counts and width, and what varies by architecture and layer (windows,
    /// soft-capping, ...).
    #[module(skip)]
    pub config: LlamaConfig,
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
    /// The rows of every part, in order, as one cache: each part first drops its leading
    /// `start` slots (padding of all its rows), then is right-aligned to the longest part with
    /// `shift` zero slots in front (padding, which the rows' masks hide). Parts are
    /// (cache, start, shift).
    pub fn merge(parts: Vec<(Self, usize, usize)>) -> Self {
        let layers = parts.first().map_or(0, |p| p.0.layers.len());
        let mut merged = Vec::with_capacity(layers);
        for l in 0..layers {
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (cache, start, shift) in &parts {
                let (k, v) = cache.layers[l].as_ref().expect("merging a cache that has not been filled");
                for (t, out) in [(k, &mut ks), (v, &mut vs)] {
                    let [b, h, slots, d] = t.dims();
                    let kept = t.clone().slice([0..b, 0..h, *start..slots, 0..d]);
                    out.push(if *shift == 0 { kept } else { Tensor::cat(vec![Tensor::zeros([b, h, *shift, d], &t.device()), kept], 2) });
                }
            }
            merged.push(Some((Tensor::cat(ks, 0), Tensor::cat(vs, 0))));
        }
        KvCache { layers: merged }
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
    /// [batch, heads + kv_heads, len, head_dim] RoPE cosines and sines at each token's
    /// position, repeated for every q and k head so RoPE is plain same-shape arithmetic.
    pub cos: Tensor<B, 4>,
    pub sin: Tensor<B, 4>,
    /// The same from the sliding layers' own frequencies (Gemma 3), or None.
    pub local: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    /// [batch, 1, groups · len, slots]: true where a query may not see a slot; None when every
    /// new token may see every slot (one new token per row, no padding).
    pub mask: Option<Tensor<B, 4, Bool>>,
    /// `mask` with the slots outside the sliding window masked too, for the layers that have
    /// one; None when no query has slots outside it.
    pub window_mask: Option<Tensor<B, 4, Bool>>,
}

impl<B: Backend> Step<B> {
    /// Builds a step. `ids` holds `batch` rows of `len` tokens; `positions` each token's RoPE
    /// position; `visible(row, i, slot)` says whether new token `i` of `row` may attend to
    /// cache slot `slot` (slots count the cache first, then the new tokens: token i is slot
    /// `slots − len + i`, and slots are as far apart as positions). A query that may see
    /// nothing (a padding position) is let see its own slot, so it stays finite.
    #[allow(clippy::too_many_arguments)]
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
        let (nh, nkv) = (config.num_attention_heads, config.num_key_value_heads);
        let qk_heads = nh + nkv;
        let scale = config.rope_scale();
        let angles = |inv_freq: &[f32]| {
            let mut cos = vec![0f32; batch * qk_heads * len * hd];
            let mut sin = vec![0f32; batch * qk_heads * len * hd];
            for r in 0..batch {
                for i in 0..len {
                    let p = positions[r * len + i] as f32;
                    let at = ((r * qk_heads) * len + i) * hd;
                    for (j, f) in inv_freq.iter().enumerate() {
                        let (s, c) = (p * f).sin_cos();
                        let (s, c) = (s * scale, c * scale);
                        cos[at + j] = c;
                        cos[at + j + half] = c;
                        sin[at + j] = s;
                        sin[at + j + half] = s;
                    }
                    for h in 1..qk_heads {
                        let to = ((r * qk_heads + h) * len + i) * hd;
                        cos.copy_within(at..at + hd, to);
                        sin.copy_within(at..at + hd, to);
                    }
                }
            }
            let t = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [batch, qk_heads, len, hd]), device);
            (t(cos), t(sin))
        };
        let (cos, sin) = angles(inv_freq);
        let local = config.local_inv_freq().map(|f| angles(&f));
        let groups = nh / nkv;
        let build = |hidden: &dyn Fn(usize, usize, usize) -> bool| {
            let mut m = vec![false; batch * groups * len * slots];
            for r in 0..batch {
                for i in 0..len {
                    let mut row: Vec<bool> = (0..slots).map(|s| hidden(r, i, s)).collect();
                    if row.iter().all(|&masked| masked) {
                        row[slots - len + i] = false;
                    }
                    for g in 0..groups {
                        let at = ((r * groups + g) * len + i) * slots;
                        m[at..at + slots].copy_from_slice(&row);
                    }
                }
            }
            Tensor::from_data(TensorData::new(m, [batch, 1, groups * len, slots]), device)
        };
        let mask = visible.map(|visible| build(&|r, i, s| !visible(r, i, s)));
        // A query (slot slots − len + i) sees the `w` slots up to its own.
        let window_mask = config.sliding_window.filter(|&w| slots > w).map(|w| build(&|r, i, s| visible.is_some_and(|v| !v(r, i, s)) || slots - len + i >= s + w));
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Step { batch, len, ids: Tensor::from_data(TensorData::new(ids, [batch * len]), device), cos, sin, local, mask, window_mask }
    }
}

/// Qwen3's per-head RMSNorm of q·k rows [n, (nh + nkv) · hd]: each head normalised over its
/// `hd` values, q heads scaled by `qn`'s weight, k heads by `kn`'s (both norms share an eps).
fn head_norms<B: Backend>(qk: Tensor<B, 2>, qn: &RmsNorm<B>, kn: &RmsNorm<B>, nh: usize, nkv: usize, hd: usize) -> Tensor<B, 2> {
    let n = qk.dims()[0];
    let heads = qk.reshape([n, nh + nkv, hd]);
    let ms = heads.clone().powi_scalar(2).mean_dim(2);
    let weight = Tensor::cat(vec![qn.weight.val().unsqueeze::<2>().repeat_dim(0, nh), kn.weight.val().unsqueeze::<2>().repeat_dim(0, nkv)], 0).unsqueeze::<3>();
    (heads * ms.add_scalar(qn.eps).sqrt().recip() * weight).reshape([n, (nh + nkv) * hd])
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
            config: c.clone(),
        }
    }

    /// Runs the new tokens of `step` through the layers, appending their keys and values to
    /// `cache`; returns the final-norm hidden states [batch · len, hidden].
    pub fn forward(&self, step: &Step<B>, cache: &mut KvCache<B>) -> Tensor<B, 2> {
        self.forward_adapted(step, cache, None)
    }

    /// [`Llama::forward`] with LoRA adapters applied to the projections (training).
    pub fn forward_adapted(&self, step: &Step<B>, cache: &mut KvCache<B>, adapters: Option<&Adapters<B>>) -> Tensor<B, 2> {
        let mut x = self.embed.val().select(0, step.ids.clone());
        if let Some(s) = self.config.embed_scale() {
            x = x.mul_scalar(s);
        }
        let none = BlockAdapters::default();
        let scale = adapters.map_or(0.0, |a| a.scale);
        for (i, (block, layer)) in self.blocks.iter().zip(cache.layers.iter_mut()).enumerate() {
            let ad = adapters.and_then(|a| a.blocks.get(i)).unwrap_or(&none);
            x = self.block(i, block, x, step, layer, ad, scale);
        }
        self.norm.forward(x)
    }

    /// Logits [rows, vocab] for hidden states [rows, hidden] (soft-capped where the model
    /// does).
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        let logits = hidden.matmul(self.head.val());
        match self.config.final_logit_softcapping {
            Some(c) => logits.div_scalar(c).tanh().mul_scalar(c),
            None => logits,
        }
    }

    /// RoPE on q and k heads together, [b, heads + kv_heads, s, hd], with the angles of
    /// `(cos, sin)`.
    fn rope(&self, x: Tensor<B, 4>, (cos, sin): &(Tensor<B, 4>, Tensor<B, 4>)) -> Tensor<B, 4> {
        let [b, h, s, hd] = x.dims();
        let rotated = x.clone().reshape([b * h * s, hd]).matmul(self.rot.clone()).reshape([b, h, s, hd]);
        x * cos.clone() + rotated * sin.clone()
    }

    #[allow(clippy::too_many_arguments)]
    fn block(&self, index: usize, blk: &Block<B>, x: Tensor<B, 2>, step: &Step<B>, layer: &mut Option<(Tensor<B, 4>, Tensor<B, 4>)>, ad: &BlockAdapters<B>, scale: f32) -> Tensor<B, 2> {
        let (b, s) = (step.batch, step.len);
        let (nh, nkv, hd) = (self.config.num_attention_heads, self.config.num_key_value_heads, self.config.head_dim);
        let g = nh / nkv;
        let h = blk.attn_norm.forward(x.clone());
        let mut qk = h.clone().matmul(blk.wqk.val());
        if let Some(bias) = &blk.bqk {
            qk = qk + bias.val().unsqueeze::<2>();
        }
        if ad.q.is_some() || ad.k.is_some() {
            // q and k share one fused weight; their adapters stay separate.
            let n = qk.dims()[0];
            let delta = |l: Option<&super::lora::LoraPair<B>>, width: usize| match l {
                Some(l) => h.clone().matmul(l.a.clone()).matmul(l.b.clone()).mul_scalar(scale),
                None => Tensor::zeros([n, width], &h.device()),
            };
            qk = qk + Tensor::cat(vec![delta(ad.q.as_ref(), nh * hd), delta(ad.k.as_ref(), nkv * hd)], 1);
        }
        if let (Some(qn), Some(kn)) = (&blk.q_norm, &blk.k_norm) {
            qk = head_norms(qk, qn, kn, nh, nkv, hd);
        }
        let angles = match &step.local {
            Some(local) if self.config.local_rope(index) => local.clone(),
            _ => (step.cos.clone(), step.sin.clone()),
        };
        let qk = self.rope(head_major(qk, b, s, nh + nkv, hd), &angles); // [b, nh + nkv, s, hd]
        let mut v = project(&h, &blk.wv, ad.v.as_ref(), scale);
        if let Some(bias) = &blk.bv {
            v = v + bias.val().unsqueeze::<2>();
        }
        let v = head_major(v, b, s, nkv, hd); // [b, nkv, s, hd]
        let q = qk.clone().narrow(1, 0, nh);
        let k = qk.narrow(1, nh, nkv);
        let (k, v) = match layer.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        *layer = Some((k.clone(), v.clone()));
        // Heads h = kv·g + i share kv head kv: group the query heads instead of repeating k/v.
        let q = q.reshape([b, nkv, g * s, hd]);
        let mask = match (&step.window_mask, self.config.window(index)) {
            (Some(m), Some(_)) => Some(m.clone()),
            _ => step.mask.clone(),
        };
        // A scale equal to the default is left to the backend, whose fused kernels (CUDA) take
        // only the default (Gemma 3's query_pre_attn_scalar is its head width).
        let score_scale = self.config.query_pre_attn_scalar.filter(|&q| q != hd as f64).map(|q| q.powf(-0.5));
        let options = AttentionModuleOptions { scale: score_scale, softcap: self.config.attn_logit_softcapping, is_causal: false };
        let att = attention(q, k, v, mask, None, options); // [b, nkv, g·s, hd]
        let out = project(&token_major(att.reshape([b, nh, s, hd])), &blk.wo, ad.o.as_ref(), scale);
        let x = x + post_norm(&blk.post_attn_norm, out);
        let h = blk.mlp_norm.forward(x.clone());
        let gate = project(&h, &blk.w_gate, ad.gate.as_ref(), scale);
        let gate = if self.config.architecture.gelu() { gelu_approximate(gate) } else { silu(gate) };
        let hidden = gate * project(&h, &blk.w_up, ad.up.as_ref(), scale);
        x + post_norm(&blk.post_mlp_norm, project(&hidden, &blk.w_down, ad.down.as_ref(), scale))
    }
}

/// A branch's output through its norm, where the model has one (Gemma 2 and 3).
fn post_norm<B: Backend>(norm: &Option<RmsNorm<B>>, out: Tensor<B, 2>) -> Tensor<B, 2> {
    match norm {
        Some(n) => n.forward(out),
        None => out,
    }
}
