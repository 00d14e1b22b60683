//! LoRA adapters for the Llama projections: `y = x·W + (α/r)·(x·A)·B`, A `[in, r]` drawn like
//! PEFT's (uniform ±1/√in), B `[r, out]` zero, so an adapted model starts out equal to its base.
//! Adapters are plain tensors (not module parameters): the DPO trainer owns their optimiser
//! state, and [`merge`] folds them into the weights when training ends.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::llama::Llama;

/// A projection LoRA can adapt (LLaMA-Factory's `all`: every linear layer but the LM head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::O, Target::Gate, Target::Up, Target::Down];

    /// The Hugging Face module name (`q_proj`, ...).
    pub fn hf_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }
}

/// One adapter: A `[in, r]`, B `[r, out]`.
#[derive(Clone, Debug)]
pub struct LoraPair<B: Backend> {
    pub a: Tensor<B, 2>,
    pub b: Tensor<B, 2>,
}

/// The adapters of one decoder layer, by target (None: not adapted).
#[derive(Clone, Debug, Default)]
pub struct BlockAdapters<B: Backend> {
    pub q: Option<LoraPair<B>>,
    pub k: Option<LoraPair<B>>,
    pub v: Option<LoraPair<B>>,
    pub o: Option<LoraPair<B>>,
    pub gate: Option<LoraPair<B>>,
    pub up: Option<LoraPair<B>>,
    pub down: Option<LoraPair<B>>,
}

impl<B: Backend> BlockAdapters<B> {
    pub fn get(&self, t: Target) -> Option<&LoraPair<B>> {
        match t {
            Target::Q => self.q.as_ref(),
            Target::K => self.k.as_ref(),
            Target::V => self.v.as_ref(),
            Target::O => self.o.as_ref(),
            Target::Gate => self.gate.as_ref(),
            Target::Up => self.up.as_ref(),
            Target::Down => self.down.as_ref(),
        }
    }
    fn slot(&mut self, t: Target) -> &mut Option<LoraPair<B>> {
        match t {
            Target::Q => &mut self.q,
            Target::K => &mut self.k,
            Target::V => &mut self.v,
            Target::O => &mut self.o,
            Target::Gate => &mut self.gate,
            Target::Up => &mut self.up,
            Target::Down => &mut self.down,
        }
    }
}

/// Every layer's adapters and the scale α/r they are applied with.
#[derive(Clone, Debug)]
pub struct Adapters<B: Backend> {
    pub blocks: Vec<BlockAdapters<B>>,
    pub scale: f32,
}

/// `[in, out]` of a target's projection in a model of this shape.
pub fn target_shape<B: Backend>(model: &Llama<B>, t: Target) -> [usize; 2] {
    let (nh, nkv, hd) = (model.config.num_attention_heads, model.config.num_key_value_heads, model.config.head_dim);
    let blk = &model.blocks[0];
    let d = blk.wv.dims()[0];
    let ff = blk.w_gate.dims()[1];
    match t {
        Target::Q => [d, nh * hd],
        Target::K => [d, nkv * hd],
        Target::V => [d, nkv * hd],
        Target::O => [nh * hd, d],
        Target::Gate | Target::Up => [d, ff],
        Target::Down => [ff, d],
    }
}

impl<B: Backend> Adapters<B> {
    /// Fresh adapters of rank `rank` on `targets`: A uniform in ±1/√in (PEFT's Kaiming init),
    /// B zero. Deterministic in `seed`.
    pub fn init(model: &Llama<B>, targets: &[Target], rank: usize, alpha: f32, seed: u64, device: &B::Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let blocks = (0..model.blocks.len())
            .map(|_| {
                let mut blk = BlockAdapters::default();
                for &t in &Target::ALL {
                    if !targets.contains(&t) {
                        continue;
                    }
                    let [i, o] = target_shape(model, t);
                    let bound = 1.0 / (i as f32).sqrt();
                    let a: Vec<f32> = (0..i * rank).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound).collect();
                    *blk.slot(t) = Some(LoraPair {
                        a: Tensor::from_data(TensorData::new(a, [i, rank]), device),
                        b: Tensor::zeros([rank, o], device),
                    });
                }
                blk
            })
            .collect();
        Adapters { blocks, scale: alpha / rank as f32 }
    }

    /// Every adapter tensor, in a fixed order (layer, target, A then B).
    pub fn tensors(&self) -> Vec<Tensor<B, 2>> {
        let mut out = Vec::new();
        for blk in &self.blocks {
            for t in Target::ALL {
                if let Some(p) = blk.get(t) {
                    out.push(p.a.clone());
                    out.push(p.b.clone());
                }
            }
        }
        out
    }

    /// The same adapters with their tensors replaced, in [`Adapters::tensors`]'s order.
    pub fn with_tensors(&self, mut tensors: impl Iterator<Item = Tensor<B, 2>>) -> Self {
        let mut blocks = self.blocks.clone();
        for blk in &mut blocks {
            for t in Target::ALL {
                if let Some(p) = blk.slot(t).as_mut() {
                    p.a = tensors.next().expect("one tensor per adapter matrix");
                    p.b = tensors.next().expect("one tensor per adapter matrix");
                }
            }
        }
        Adapters { blocks, scale: self.scale }
    }

    /// Trainable values in all adapters.
    pub fn num_params(&self) -> usize {
        self.tensors().iter().map(|t| t.dims().iter().product::<usize>()).sum()
    }
}

impl<B: burn::tensor::backend::AutodiffBackend> Adapters<B> {
    /// The adapters' values on the inner backend (no autodiff), e.g. for merging.
    pub fn valid(&self) -> Adapters<B::InnerBackend> {
        let pair = |p: &Option<LoraPair<B>>| p.as_ref().map(|p| LoraPair { a: p.a.clone().inner(), b: p.b.clone().inner() });
        let blocks = self
            .blocks
            .iter()
            .map(|b| BlockAdapters { q: pair(&b.q), k: pair(&b.k), v: pair(&b.v), o: pair(&b.o), gate: pair(&b.gate), up: pair(&b.up), down: pair(&b.down) })
            .collect();
        Adapters { blocks, scale: self.scale }
    }
}

/// `x·w`, plus the adapter's `scale·(x·A)·B` when there is one.
pub fn project<B: Backend>(x: &Tensor<B, 2>, w: &Param<Tensor<B, 2>>, lora: Option<&LoraPair<B>>, scale: f32) -> Tensor<B, 2> {
    let y = x.clone().matmul(w.val());
    match lora {
        Some(l) => y + x.clone().matmul(l.a.clone()).matmul(l.b.clone()).mul_scalar(scale),
        None => y,
    }
}

/// The model with every adapter folded into its weights (W + scale·A·B).
pub fn merge<B: Backend>(model: Llama<B>, adapters: &Adapters<B>) -> Llama<B> {
    let mut model = model;
    let (nh, hd) = (model.config.num_attention_heads, model.config.head_dim);
    for (blk, ad) in model.blocks.iter_mut().zip(&adapters.blocks) {
        let delta = |p: &LoraPair<B>| p.a.clone().matmul(p.b.clone()).mul_scalar(adapters.scale);
        let add = |w: &mut Param<Tensor<B, 2>>, d: Tensor<B, 2>| {
            let merged = w.val() + d;
            *w = Param::from_tensor(merged);
        };
        if ad.q.is_some() || ad.k.is_some() {
            let [d, qk] = blk.wqk.dims();
            let dq = ad.q.as_ref().map(delta).unwrap_or_else(|| Tensor::zeros([d, nh * hd], &blk.wqk.device()));
            let dk = ad.k.as_ref().map(delta).unwrap_or_else(|| Tensor::zeros([d, qk - nh * hd], &blk.wqk.device()));
            add(&mut blk.wqk, Tensor::cat(vec![dq, dk], 1));
        }
        if let Some(p) = &ad.v {
            add(&mut blk.wv, delta(p));
        }
        if let Some(p) = &ad.o {
            add(&mut blk.wo, delta(p));
        }
        if let Some(p) = &ad.gate {
            add(&mut blk.w_gate, delta(p));
        }
        if let Some(p) = &ad.up {
            add(&mut blk.w_up, delta(p));
        }
        if let Some(p) = &ad.down {
            add(&mut blk.w_down, delta(p));
        }
    }
    model
}
