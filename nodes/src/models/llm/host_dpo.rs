//! LoRA DPO's forward and backward for the CPU backend, on the weights' own buffers.
//!
//! Burn's autodiff on Flex spent about two thirds of a DPO step outside the matmuls, mostly
//! on one core: strided copies for head-major attention, the decomposed attention (scores,
//! mask, softmax and their backward as separate tensors), scalar `expf`, per-op bookkeeping
//! and allocation. With LoRA the base weights are frozen, so the backward pass needs no weight
//! gradients at all, only the input gradient of every projection and the adapters' small
//! ones: here both passes are written out by hand. Each pair's prompt runs once; its chosen
//! and rejected answers attend to the prompt's keys and values (as [`super::dpo::pair_logps`]
//! does with a KV cache), all tokens packed without padding. Forward keeps each layer's
//! inputs and projections; attention probabilities are recomputed in the backward pass rather
//! than kept. Matmuls are the gemm crate's on all cores; everything else is row-parallel.
//!
//! The reference log-probs come from the same forward without adapters. An adapter's B starts
//! at zero and its `(x·A)·B` is added to a projection's output after the fact, which adds an
//! exact zero at step 0: the reference and the step-0 policy agree bit for bit, so the loss
//! is exactly ln 2 there. Full fine-tuning and other backends keep the Burn path; the two
//! agree to float rounding (tests compare log-probs and every adapter gradient).

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use rayon::prelude::*;

use super::config::LlamaConfig;
use super::dpo::PairTokens;
use super::host::{self, buffer, norm_rows, rotate, Arithmetic, Ropes, Scoring, PARALLEL_ROWS};
use super::llama::Llama;
use super::lora::{Adapters, Target};
use crate::models::cpu::{fast_exp, on_flex, parallelism, softmax, with_avx2};

struct Layer {
    attn_norm: FlexTensor,
    wqk: FlexTensor,
    /// The q and k biases side by side, and v's (Qwen2): constants added after the products.
    bqk: Option<FlexTensor>,
    wv: FlexTensor,
    bv: Option<FlexTensor>,
    /// RMSNorm weights of every q head and every k head (Qwen3), [head_dim] each.
    qk_norm: Option<(FlexTensor, FlexTensor)>,
    wo: FlexTensor,
    mlp_norm: FlexTensor,
    gate: FlexTensor,
    up: FlexTensor,
    down: FlexTensor,
    /// The sliding window this layer attends within, if it does.
    window: Option<usize>,
    /// Norms of the attention's and the MLP's outputs (Gemma 2 and 3), or none.
    post_attn_norm: Option<FlexTensor>,
    post_mlp_norm: Option<FlexTensor>,
    /// Whether RoPE here uses the sliding layers' own frequencies (Gemma 3).
    local_rope: bool,
}

/// The model's weights as host buffers (shared with the Burn module, not copied), in the
/// module's `[in, out]` layout.
pub struct HostDpo {
    embed: FlexTensor,
    layers: Vec<Layer>,
    norm: FlexTensor,
    head: FlexTensor,
    d: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
    ff: usize,
    vocab: usize,
    math: Arithmetic,
}

/// One layer's adapters: per [`Target::ALL`] slot, (A `[in, r]`, B `[r, out]`) if adapted.
pub type LayerLora = [Option<(Vec<f32>, Vec<f32>)>; 7];

/// One target's adapter (A, B) with the rank and scale it is applied with.
type Adapter<'a> = (&'a (Vec<f32>, Vec<f32>), usize, f32);

/// LoRA adapters as host values: per layer and [`Target::ALL`] slot, A `[in, r]` and B
/// `[r, out]`, applied as `scale·(x·A)·B`.
#[derive(Clone, Debug)]
pub struct HostLora {
    pub layers: Vec<LayerLora>,
    pub rank: usize,
    pub scale: f32,
}

impl HostLora {
    /// The values of `a` (any backend).
    pub fn from_adapters<B: Backend>(a: &Adapters<B>) -> Self {
        let mut rank = 0;
        let layers = a
            .blocks
            .iter()
            .map(|blk| {
                Target::ALL.map(|t| {
                    blk.get(t).map(|p| {
                        rank = p.a.dims()[1];
                        let v = |t: &Tensor<B, 2>| t.clone().into_data().convert::<f32>().to_vec::<f32>().expect("f32 adapter");
                        (v(&p.a), v(&p.b))
                    })
                })
            })
            .collect();
        HostLora { layers, rank, scale: a.scale }
    }
}

/// One forward/backward pass's results.
pub struct PairGrads {
    /// Summed completion log-probs, chosen rows then rejected rows.
    pub logps: Vec<f64>,
    /// Per row, the sum over completion tokens of the mean logit.
    pub logit_sums: Vec<f64>,
    /// The loss gradient of every adapter matrix, in [`Adapters::tensors`]' order (layer,
    /// target, A then B), flattened.
    pub grads: Vec<Vec<f32>>,
}

/// Tokens attending together: queries `start..start + len` see the `prefix` tokens (all of
/// them) and their own segment's up to themselves.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: usize,
    len: usize,
    prefix: Option<(usize, usize)>,
}

impl Segment {
    /// Keys visible to the segment: prefix then own.
    fn keys(&self) -> usize {
        self.prefix.map_or(0, |p| p.1) + self.len
    }
}

/// A micro-batch packed for the host: each pair's prompt, chosen answer and rejected answer
/// in turn.
struct Layout {
    ids: Vec<u32>,
    positions: Vec<usize>,
    segments: Vec<Segment>,
    /// (token whose final hidden state predicts the label, label, row): rows 0..b are the
    /// chosen answers, b..2b the rejected ones.
    scored: Vec<(usize, u32, usize)>,
    rows: usize,
}

impl Layout {
    fn pairs(pairs: &[&PairTokens]) -> Self {
        let b = pairs.len();
        let mut lay = Layout { ids: Vec::new(), positions: Vec::new(), segments: Vec::new(), scored: Vec::new(), rows: 2 * b };
        let mut rows: Vec<Vec<(usize, u32, usize)>> = vec![Vec::new(); 2 * b];
        for (p, pair) in pairs.iter().enumerate() {
            assert!(!pair.prompt.is_empty(), "a completion must follow a non-empty prompt");
            let (ps, lp) = (lay.ids.len(), pair.prompt.len());
            lay.ids.extend(&pair.prompt);
            lay.positions.extend(0..lp);
            lay.segments.push(Segment { start: ps, len: lp, prefix: None });
            for (row, answer) in [(p, &pair.chosen), (b + p, &pair.rejected)] {
                let start = lay.ids.len();
                lay.ids.extend(answer.iter());
                lay.positions.extend(lp..lp + answer.len());
                lay.segments.push(Segment { start, len: answer.len(), prefix: Some((ps, lp)) });
                for (t, &tok) in answer.iter().enumerate() {
                    // The first answer token is predicted by the prompt's last.
                    let at = if t == 0 { ps + lp - 1 } else { start + t - 1 };
                    rows[row].push((at, tok, row));
                }
            }
        }
        lay.scored = rows.concat();
        lay
    }
    fn n(&self) -> usize {
        self.ids.len()
    }
}

/// A matrix operand: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct Op<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Op<'a> {
    /// Row-major with rows `width` apart.
    fn rows(data: &'a [f32], width: usize) -> Self {
        Op { data, rs: width, cs: 1 }
    }
    /// The transpose, without copying.
    fn t(self) -> Self {
        Op { data: self.data, rs: self.cs, cs: self.rs }
    }
    /// The same layout starting `offset` values in (a column block of a wider matrix).
    fn at(self, offset: usize) -> Self {
        Op { data: &self.data[offset..], ..self }
    }
}

/// Products of at least this many multiply-adds and twice this many rows that gemm would run on
/// one thread are split by rows over the cores.
const SPLIT_WORK: usize = 1 << 18;
const SPLIT_ROWS: usize = 32;

/// `out[m × n]` (rows `ld` apart) = `scale · a[m × k] · b[k × n]`, added to out's values when
/// `acc`. `threads`: let gemm use every core for large products.
#[allow(clippy::too_many_arguments)]
fn mm(m: usize, n: usize, k: usize, out: &mut [f32], ld: usize, acc: bool, a: Op, b: Op, scale: f32, threads: bool) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ld + n <= out.len(), "matmul output out of bounds");
    if k == 0 {
        if !acc {
            out.chunks_mut(ld).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "matmul lhs out of bounds");
    assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "matmul rhs out of bounds");
    let par = if threads { parallelism(m, n, k) } else { gemm::Parallelism::None };
    if threads && matches!(par, gemm::Parallelism::None) && m >= 2 * SPLIT_ROWS && m * n * k >= SPLIT_WORK {
        // Too small for gemm's own threads (the rank-8 adapter products): one block of rows per
        // core.
        let per = m.div_ceil(rayon::current_num_threads()).max(SPLIT_ROWS);
        out.par_chunks_mut(per * ld).take(m.div_ceil(per)).enumerate().for_each(|(i, o)| {
            let r0 = i * per;
            mm(per.min(m - r0), n, k, o, ld, acc, a.at(r0 * a.rs), b, scale, false);
        });
        return;
    }
    // SAFETY: every index the product reads or writes is inside its slice (asserted above:
    // the largest offsets of out, a and b are in bounds), and out does not alias a or b
    // (it is borrowed mutably).
    unsafe {
        gemm::gemm(m, n, k, out.as_mut_ptr(), 1, ld as isize, acc, a.data.as_ptr(), a.cs as isize, a.rs as isize, b.data.as_ptr(), b.cs as isize, b.rs as isize, 1.0, scale, false, false, false, par);
    }
}

/// A weight's values.
fn w(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("checked when built")
}

/// A layer's kept forward values, [tokens, width] each.
struct Saved {
    x_in: Vec<f32>,
    h1: Vec<f32>,
    /// Queries and keys before their head norms (Qwen3; empty otherwise).
    qk_pre: Vec<f32>,
    /// Queries and keys after RoPE.
    qk: Vec<f32>,
    v: Vec<f32>,
    ctx: Vec<f32>,
    /// The attention's output before its norm (Gemma 2 and 3; empty otherwise).
    o_pre: Vec<f32>,
    x_mid: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// The MLP's output before its norm (Gemma 2 and 3; empty otherwise).
    down_pre: Vec<f32>,
    /// x·A per adapted target, [tokens, rank].
    xa: [Vec<f32>; 7],
}

const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const O: usize = 3;
const GATE: usize = 4;
const UP: usize = 5;
const DOWN: usize = 6;

/// `y[:, col..col + out] += scale·(x·A)·B` for x [n, in]; returns x·A [n, r].
#[allow(clippy::too_many_arguments)]
fn lora_forward(x: &[f32], width: usize, n: usize, ab: &(Vec<f32>, Vec<f32>), rank: usize, y: &mut [f32], ld: usize, col: usize, out: usize, scale: f32) -> Vec<f32> {
    let (a, b) = ab;
    let mut xa = vec![0f32; n * rank];
    mm(n, rank, width, &mut xa, rank, false, Op::rows(x, width), Op::rows(a, rank), 1.0, true);
    mm(n, out, rank, &mut y[col..], ld, true, Op::rows(&xa, rank), Op::rows(b, out), scale, true);
    xa
}

/// The backward of [`lora_forward`] given dy (the output gradient, its columns `col..col +
/// out`): returns (dA, dB) and adds the adapter's share of the input gradient to dx.
#[allow(clippy::too_many_arguments)]
fn lora_backward(
    x: &[f32],
    width: usize,
    n: usize,
    xa: &[f32],
    ab: &(Vec<f32>, Vec<f32>),
    rank: usize,
    dy: &[f32],
    ld: usize,
    col: usize,
    out: usize,
    scale: f32,
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (a, b) = ab;
    let dy = Op::rows(dy, ld).at(col);
    let mut gb = vec![0f32; rank * out];
    mm(rank, out, n, &mut gb, out, false, Op::rows(xa, rank).t(), dy, scale, true);
    let mut dyb = vec![0f32; n * rank];
    mm(n, rank, out, &mut dyb, rank, false, dy, Op::rows(b, out).t(), 1.0, true);
    let mut ga = vec![0f32; width * rank];
    mm(width, rank, n, &mut ga, rank, false, Op::rows(x, width).t(), Op::rows(&dyb, rank), scale, true);
    mm(n, width, rank, dx, width, true, Op::rows(&dyb, rank), Op::rows(a, rank).t(), scale, true);
    (ga, gb)
}

/// Runs `f` over `rows` rows of `width` values of `x` (and the same rows of `y`), in parallel
/// when there are many.
fn rows_mut<F: Fn(usize, &mut [f32]) + Sync + Send>(x: &mut [f32], width: usize, f: F) {
    if x.len() >= PARALLEL_ROWS * width {
        x.par_chunks_mut(width).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        x.chunks_mut(width).enumerate().for_each(|(i, r)| f(i, r));
    }
}

with_avx2!(silu_mul_back, (g: &[f32], u: &[f32], dm: &mut [f32], du: &mut [f32]), {
    // m = silu(g)·u: du = dm·silu(g); dg = dm·u·σ(g)·(1 + g·(1 − σ(g))), written over dm.
    for (((d, o), &a), &b) in dm.iter_mut().zip(du.iter_mut()).zip(g).zip(u) {
        let s = 1.0 / (1.0 + fast_exp(-a));
        *o = *d * a * s;
        *d = *d * b * s * (1.0 + a * (1.0 - s));
    }
});

with_avx2!(gelu_mul_back, (g: &[f32], u: &[f32], dm: &mut [f32], du: &mut [f32]), {
    // m = gelu(g)·u with the tanh GELU 0.5·g·(1 + t), t = tanh(k·(g + 0.044715·g³)):
    // du = dm·gelu(g); dg = dm·u·(0.5·(1 + t) + 0.5·g·(1 − t²)·k·(1 + 3·0.044715·g²)),
    // written over dm.
    const K: f32 = 0.797_884_6;
    for (((d, o), &a), &b) in dm.iter_mut().zip(du.iter_mut()).zip(g).zip(u) {
        let t = 1.0 - 2.0 / (fast_exp(2.0 * K * (a + 0.044_715 * a * a * a)) + 1.0);
        *o = *d * 0.5 * a * (1.0 + t);
        *d = *d * b * (0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * K * (1.0 + 3.0 * 0.044_715 * a * a));
    }
});

with_avx2!(rms_norm_back, (x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]), {
    // y = x·r·w with r = (mean(x²) + eps)^-½: dx += r·(dy·w) − x·r³·Σ(dy·w·x)/d.
    let d = x.len() as f32;
    let (mut ss, mut dot) = ([0f32; 8], [0f32; 8]);
    for ((xc, wc), gc) in x.chunks_exact(8).zip(w.chunks_exact(8)).zip(dy.chunks_exact(8)) {
        for l in 0..8 {
            ss[l] += xc[l] * xc[l];
            dot[l] += gc[l] * wc[l] * xc[l];
        }
    }
    let tail = x.len() / 8 * 8;
    for i in tail..x.len() {
        ss[0] += x[i] * x[i];
        dot[0] += dy[i] * w[i] * x[i];
    }
    let r = 1.0 / (ss.iter().sum::<f32>() / d + eps).sqrt();
    let c = r * r * r * dot.iter().sum::<f32>() / d;
    for (((o, &xv), &wv), &g) in dx.iter_mut().zip(x).zip(w).zip(dy) {
        *o += r * g * wv - xv * c;
    }
});

/// The backward of [`rotate`]: the rotation by the opposite angle.
fn rotate_back(x: &mut [f32], cs: &[(f32, f32)]) {
    let half = cs.len();
    for (j, &(c, s)) in cs.iter().enumerate() {
        let (a, b) = (x[j], x[j + half]);
        x[j] = a * c + b * s;
        x[j + half] = b * c - a * s;
    }
}

impl HostDpo {
    /// The host view of `model`, or None when it does not live on Flex as contiguous f32.
    pub fn new<B: Backend>(model: &Llama<B>, c: &LlamaConfig) -> Option<HostDpo> {
        if !on_flex::<B>() {
            return None;
        }
        let (d, hd, ff, vocab) = (c.hidden_size, c.head_dim, c.intermediate_size, c.vocab_size);
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let mat = |t: Tensor<B, 2>, k: usize, n: usize| -> Option<FlexTensor> {
            if t.dims() == [k, n] {
                buffer(t)
            } else {
                None
            }
        };
        let vec = |t: Tensor<B, 1>| -> Option<FlexTensor> {
            if t.dims() == [d] {
                buffer(t)
            } else {
                None
            }
        };
        // A bias: Some(None) when there is none, None when it is there but unusable.
        let bias = |p: &Option<burn::module::Param<Tensor<B, 1>>>, n: usize| -> Option<Option<FlexTensor>> {
            match p {
                None => Some(None),
                Some(p) if p.dims() == [n] => buffer(p.val()).map(Some),
                Some(_) => None,
            }
        };
        // Qwen3's head norms, [head_dim] each; None when they are there but unusable.
        let head_norms = |b: &super::llama::Block<B>| -> Option<Option<(FlexTensor, FlexTensor)>> {
            match (&b.q_norm, &b.k_norm) {
                (None, None) => Some(None),
                (Some(q), Some(k)) if q.weight.dims() == [hd] && k.weight.dims() == [hd] => Some(Some((buffer(q.weight.val())?, buffer(k.weight.val())?))),
                _ => None,
            }
        };
        let mut layers = Vec::with_capacity(model.blocks.len());
        // A norm of an output: Some(None) when the layer has none, None when it is unusable.
        let post = |n: &Option<super::llama::RmsNorm<B>>| -> Option<Option<FlexTensor>> {
            match n {
                None => Some(None),
                Some(n) => vec(n.weight.val()).map(Some),
            }
        };
        for (i, b) in model.blocks.iter().enumerate() {
            layers.push(Layer {
                window: c.window(i),
                local_rope: c.local_rope(i),
                post_attn_norm: post(&b.post_attn_norm)?,
                post_mlp_norm: post(&b.post_mlp_norm)?,
                qk_norm: head_norms(b)?,
                attn_norm: vec(b.attn_norm.weight.val())?,
                wqk: mat(b.wqk.val(), d, (nh + nkv) * hd)?,
                bqk: bias(&b.bqk, (nh + nkv) * hd)?,
                wv: mat(b.wv.val(), d, nkv * hd)?,
                bv: bias(&b.bv, nkv * hd)?,
                wo: mat(b.wo.val(), nh * hd, d)?,
                mlp_norm: vec(b.mlp_norm.weight.val())?,
                gate: mat(b.w_gate.val(), d, ff)?,
                up: mat(b.w_up.val(), d, ff)?,
                down: mat(b.w_down.val(), ff, d)?,
            });
        }
        Some(HostDpo {
            embed: mat(model.embed.val(), vocab, d)?,
            layers,
            norm: vec(model.norm.weight.val())?,
            head: mat(model.head.val(), d, vocab)?,
            d,
            heads: nh,
            kv_heads: nkv,
            hd,
            ff,
            vocab,
            math: Arithmetic::of(c),
        })
    }

    /// Summed completion log-probs (chosen rows then rejected rows) and summed mean logits of
    /// the pairs, by the model with `lora` applied (None: the base model).
    pub fn pair_logps(&self, pairs: &[&PairTokens], inv_freq: &[f32], lora: Option<&HostLora>) -> (Vec<f64>, Vec<f64>) {
        let lay = Layout::pairs(pairs);
        let rope = self.math.ropes(&lay.positions, inv_freq);
        let (x, _) = self.forward(&lay, &rope, lora, false);
        let (logits, lse) = self.head_forward(&x, &lay);
        self.score(&logits, &lse, &lay)
    }

    /// The pairs' log-probs with `lora` applied, then the gradient of the loss with respect to
    /// every adapter matrix, given `dloss(logps)`: the loss's derivative by each row's summed
    /// log-prob.
    pub fn pair_grads(&self, pairs: &[&PairTokens], inv_freq: &[f32], lora: &HostLora, dloss: &mut dyn FnMut(&[f64]) -> Vec<f64>) -> PairGrads {
        let lay = Layout::pairs(pairs);
        let n = lay.n();
        let rope = self.math.ropes(&lay.positions, inv_freq);
        let (x, mut saved) = self.forward(&lay, &rope, Some(lora), true);
        let (mut logits, lse) = self.head_forward(&x, &lay);
        let (logps, logit_sums) = self.score(&logits, &lse, &lay);
        let g = dloss(&logps);
        assert_eq!(g.len(), lay.rows, "one loss derivative per row");
        // dlogits = g·(onehot(label) − softmax), in place; through a soft cap c·tanh(l/c)
        // (Gemma 2) times its slope 1 − (capped / c)².
        let v = self.vocab;
        let cap = self.math.final_softcap;
        let fill = |(e, row): (usize, &mut [f32])| {
            let (_, label, r) = lay.scored[e];
            let (gr, m) = (g[r] as f32, lse[e]);
            let slope = |l: f32| cap.map_or(1.0, |c| 1.0 - (l / c) * (l / c));
            let at_label = gr * slope(row[label as usize]);
            for l in row.iter_mut() {
                *l = -gr * fast_exp(*l - m) * slope(*l);
            }
            row[label as usize] += at_label;
        };
        logits.par_chunks_mut(v).enumerate().for_each(fill);
        let ns = lay.scored.len();
        let d = self.d;
        let mut dhs = vec![0f32; ns * d];
        mm(ns, d, v, &mut dhs, d, false, Op::rows(&logits, v), Op::rows(w(&self.head), v).t(), 1.0, true);
        drop(logits);
        // Through the final norm, into the predicting tokens' rows.
        let mut dx = vec![0f32; n * d];
        let norm = w(&self.norm);
        for (e, &(at, _, _)) in lay.scored.iter().enumerate() {
            rms_norm_back(&x[at * d..(at + 1) * d], norm, self.math.eps, &dhs[e * d..(e + 1) * d], &mut dx[at * d..(at + 1) * d]);
        }
        let mut per_layer = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate().rev() {
            let s = saved.pop().expect("one per layer");
            per_layer.push(self.layer_backward(l, (&lora.layers[i], lora.rank, lora.scale), &s, &mut dx, &lay, rope.of(l.local_rope)));
        }
        per_layer.reverse();
        let grads = per_layer.into_iter().flat_map(|t| t.into_iter().flatten().flat_map(|(a, b)| [a, b])).collect();
        PairGrads { logps, logit_sums, grads }
    }

    /// Embeds the layout's tokens and runs them through every layer, adapted by `lora`; returns
    /// the last layer's output and, when `keep`, what each layer keeps for the backward pass.
    fn forward(&self, lay: &Layout, rope: &Ropes, lora: Option<&HostLora>, keep: bool) -> (Vec<f32>, Vec<Saved>) {
        let mut x = self.embed(lay);
        let mut saved = Vec::with_capacity(if keep { self.layers.len() } else { 0 });
        for (i, l) in self.layers.iter().enumerate() {
            saved.extend(self.layer_forward(l, lora.map(|a| (&a.layers[i], a.rank, a.scale)), &mut x, lay, rope.of(l.local_rope), keep));
        }
        (x, saved)
    }

    fn embed(&self, lay: &Layout) -> Vec<f32> {
        let (d, e) = (self.d, w(&self.embed));
        let mut x = vec![0f32; lay.n() * d];
        for (row, &id) in x.chunks_exact_mut(d).zip(&lay.ids) {
            row.copy_from_slice(&e[id as usize * d..(id as usize + 1) * d]);
            self.math.scale_embedding(row);
        }
        x
    }

    /// The scored tokens' logits [scored, vocab] (after the final norm) and log-sum-exps.
    fn head_forward(&self, x: &[f32], lay: &Layout) -> (Vec<f32>, Vec<f32>) {
        let (d, v, ns) = (self.d, self.vocab, lay.scored.len());
        let mut picked = vec![0f32; ns * d];
        for (row, &(at, _, _)) in picked.chunks_exact_mut(d).zip(&lay.scored) {
            row.copy_from_slice(&x[at * d..(at + 1) * d]);
        }
        let mut hs = vec![0f32; ns * d];
        norm_rows(&picked, w(&self.norm), self.math.eps, d, &mut hs);
        let mut logits = vec![0f32; ns * v];
        mm(ns, v, d, &mut logits, v, false, Op::rows(&hs, d), Op::rows(w(&self.head), v), 1.0, true);
        self.math.cap_logits(&mut logits);
        let lse = logits.par_chunks(v).map(log_sum_exp).collect();
        (logits, lse)
    }

    /// Per row: summed log-probs of the labels and summed mean logits.
    fn score(&self, logits: &[f32], lse: &[f32], lay: &Layout) -> (Vec<f64>, Vec<f64>) {
        let v = self.vocab;
        let per: Vec<(f64, f64)> = logits
            .par_chunks(v)
            .zip(lse)
            .zip(&lay.scored)
            .map(|((row, &lse), &(_, label, _))| (row[label as usize] as f64 - lse as f64, row.iter().map(|&x| x as f64).sum::<f64>() / v as f64))
            .collect();
        let (mut logps, mut sums) = (vec![0f64; lay.rows], vec![0f64; lay.rows]);
        for (&(lp, mean), &(_, _, r)) in per.iter().zip(&lay.scored) {
            logps[r] += lp;
            sums[r] += mean;
        }
        (logps, sums)
    }

    /// One decoder layer on x [tokens, hidden], in place; returns what the backward pass
    /// needs when `keep`.
    fn layer_forward(&self, l: &Layer, lora: Option<(&LayerLora, usize, f32)>, x: &mut [f32], lay: &Layout, rope: &[(f32, f32)], keep: bool) -> Option<Saved> {
        let n = lay.n();
        let (d, nh, nkv, hd, ff) = (self.d, self.heads, self.kv_heads, self.hd, self.ff);
        let (qw, kvw) = (nh * hd, nkv * hd);
        let qkw = qw + kvw;
        let none = Default::default();
        let (ad, rank, scale) = lora.unwrap_or((&none, 0, 0.0));
        let mut xa: [Vec<f32>; 7] = Default::default();
        let x_in = keep.then(|| x.to_vec());
        let mut h1 = vec![0f32; n * d];
        norm_rows(x, w(&l.attn_norm), self.math.eps, d, &mut h1);
        let mut qk = vec![0f32; n * qkw];
        mm(n, qkw, d, &mut qk, qkw, false, Op::rows(&h1, d), Op::rows(w(&l.wqk), qkw), 1.0, true);
        let mut v = vec![0f32; n * kvw];
        mm(n, kvw, d, &mut v, kvw, false, Op::rows(&h1, d), Op::rows(w(&l.wv), kvw), 1.0, true);
        for (out, bias, width) in [(&mut qk, &l.bqk, qkw), (&mut v, &l.bv, kvw)] {
            if let Some(bias) = bias {
                rows_mut(out, width, |_, row| row.iter_mut().zip(w(bias)).for_each(|(y, b)| *y += b));
            }
        }
        if let Some(p) = &ad[Q] {
            xa[Q] = lora_forward(&h1, d, n, p, rank, &mut qk, qkw, 0, qw, scale);
        }
        if let Some(p) = &ad[K] {
            xa[K] = lora_forward(&h1, d, n, p, rank, &mut qk, qkw, qw, kvw, scale);
        }
        if let Some(p) = &ad[V] {
            xa[V] = lora_forward(&h1, d, n, p, rank, &mut v, kvw, 0, kvw, scale);
        }
        let mut qk_pre = Vec::new();
        if let Some((qn, kn)) = &l.qk_norm {
            if keep {
                qk_pre = qk.clone();
            }
            let (qn, kn, eps) = (w(qn), w(kn), self.math.eps);
            rows_mut(&mut qk, qkw, |_, row| host::norm_heads(row, qn, kn, nh, eps));
        }
        rope_rows(&mut qk, qkw, hd, rope, rotate);
        let ctx = self.attention_forward(&qk, &v, lay, l.window);
        let (o_pre, o_xa) = self.join(&ctx, qw, &l.wo, ad[O].as_ref().map(|p| (p, rank, scale)), &l.post_attn_norm, x);
        xa[O] = o_xa;
        let x_mid = keep.then(|| x.to_vec());
        let mut h2 = vec![0f32; n * d];
        norm_rows(x, w(&l.mlp_norm), self.math.eps, d, &mut h2);
        let mut gate = vec![0f32; n * ff];
        let mut up = vec![0f32; n * ff];
        mm(n, ff, d, &mut gate, ff, false, Op::rows(&h2, d), Op::rows(w(&l.gate), ff), 1.0, true);
        mm(n, ff, d, &mut up, ff, false, Op::rows(&h2, d), Op::rows(w(&l.up), ff), 1.0, true);
        if let Some(p) = &ad[GATE] {
            xa[GATE] = lora_forward(&h2, d, n, p, rank, &mut gate, ff, 0, ff, scale);
        }
        if let Some(p) = &ad[UP] {
            xa[UP] = lora_forward(&h2, d, n, p, rank, &mut up, ff, 0, ff, scale);
        }
        let m = act_mul(&gate, &up, ff, self.math.gelu);
        let (down_pre, down_xa) = self.join(&m, ff, &l.down, ad[DOWN].as_ref().map(|p| (p, rank, scale)), &l.post_mlp_norm, x);
        xa[DOWN] = down_xa;
        keep.then(|| Saved { x_in: x_in.expect("kept"), h1, qk_pre, qk, v, ctx, o_pre, x_mid: x_mid.expect("kept"), h2, gate, up, down_pre, xa })
    }

    /// A branch's output projection joining the residual stream x [tokens, hidden]: x +=
    /// input·W (`input` [tokens, k]), with the adapter's product where it has one, and
    /// RMS-normalised first where the layer has a `norm` there (Gemma 2 and 3). Returns the
    /// product before that norm (empty without one) and the adapter's x·A (empty without one).
    fn join(&self, input: &[f32], k: usize, weight: &FlexTensor, adapter: Option<Adapter>, norm: &Option<FlexTensor>, x: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
        let (n, d) = (x.len() / self.d, self.d);
        let mut pre = if norm.is_some() { vec![0f32; n * d] } else { Vec::new() };
        let (out, acc) = if norm.is_some() { (&mut pre[..], false) } else { (&mut x[..], true) };
        mm(n, d, k, out, d, acc, Op::rows(input, k), Op::rows(w(weight), d), 1.0, true);
        let xa = adapter.map_or_else(Vec::new, |(p, rank, scale)| lora_forward(input, k, n, p, rank, out, d, 0, d, scale));
        if let Some(norm) = norm {
            let mut normed = vec![0f32; pre.len()];
            norm_rows(&pre, w(norm), self.math.eps, d, &mut normed);
            rows_mut(x, d, |t, row| row.iter_mut().zip(&normed[t * d..(t + 1) * d]).for_each(|(a, b)| *a += b));
        }
        (pre, xa)
    }

    /// The gradient at a branch's output before its norm (Gemma 2 and 3), from the residual's
    /// dx; dx itself where the branch has no norm.
    fn branch_grad<'a>(&self, dx: &'a [f32], pre: &[f32], norm: &Option<FlexTensor>) -> std::borrow::Cow<'a, [f32]> {
        match norm {
            None => std::borrow::Cow::Borrowed(dx),
            Some(norm) => {
                let mut dy = vec![0f32; dx.len()];
                norm_back_rows(pre, w(norm), self.math.eps, dx, &mut dy, self.d);
                std::borrow::Cow::Owned(dy)
            }
        }
    }

    /// The backward of [`HostDpo::layer_forward`]: turns dx (the gradient at the layer's output)
    /// into the gradient at its input; returns each adapter's (dA, dB).
    fn layer_backward(&self, l: &Layer, lora: (&LayerLora, usize, f32), s: &Saved, dx: &mut [f32], lay: &Layout, rope: &[(f32, f32)]) -> LayerLora {
        let n = lay.n();
        let (d, nh, nkv, hd, ff) = (self.d, self.heads, self.kv_heads, self.hd, self.ff);
        let (qw, kvw) = (nh * hd, nkv * hd);
        let qkw = qw + kvw;
        let (ad, rank, scale) = lora;
        let mut grads: LayerLora = Default::default();
        // MLP: x_out = x_mid + (act(gate)·up)·W_down (normalised, Gemma 2 and 3).
        let m = act_mul(&s.gate, &s.up, ff, self.math.gelu);
        let dy = self.branch_grad(dx, &s.down_pre, &l.post_mlp_norm);
        let mut dm = vec![0f32; n * ff];
        mm(n, ff, d, &mut dm, ff, false, Op::rows(&dy, d), Op::rows(w(&l.down), d).t(), 1.0, true);
        if let Some(p) = &ad[DOWN] {
            grads[DOWN] = Some(lora_backward(&m, ff, n, &s.xa[DOWN], p, rank, &dy, d, 0, d, scale, &mut dm));
        }
        drop((m, dy));
        let mut du = vec![0f32; n * ff];
        let back = if self.math.gelu { gelu_mul_back } else { silu_mul_back };
        if n >= PARALLEL_ROWS {
            dm.par_chunks_mut(4096).zip(du.par_chunks_mut(4096)).zip(s.gate.par_chunks(4096).zip(s.up.par_chunks(4096))).for_each(|((dm, du), (g, u))| back(g, u, dm, du));
        } else {
            back(&s.gate, &s.up, &mut dm, &mut du);
        }
        let dg = dm;
        let mut dh2 = vec![0f32; n * d];
        mm(n, d, ff, &mut dh2, d, false, Op::rows(&dg, ff), Op::rows(w(&l.gate), ff).t(), 1.0, true);
        mm(n, d, ff, &mut dh2, d, true, Op::rows(&du, ff), Op::rows(w(&l.up), ff).t(), 1.0, true);
        if let Some(p) = &ad[GATE] {
            grads[GATE] = Some(lora_backward(&s.h2, d, n, &s.xa[GATE], p, rank, &dg, ff, 0, ff, scale, &mut dh2));
        }
        if let Some(p) = &ad[UP] {
            grads[UP] = Some(lora_backward(&s.h2, d, n, &s.xa[UP], p, rank, &du, ff, 0, ff, scale, &mut dh2));
        }
        drop((dg, du));
        norm_back_rows(&s.x_mid, w(&l.mlp_norm), self.math.eps, &dh2, dx, d);
        // Attention: x_mid = x_in + attention(norm x_in)·W_o (normalised, Gemma 2 and 3).
        let dy = self.branch_grad(dx, &s.o_pre, &l.post_attn_norm);
        let mut dctx = vec![0f32; n * qw];
        mm(n, qw, d, &mut dctx, qw, false, Op::rows(&dy, d), Op::rows(w(&l.wo), d).t(), 1.0, true);
        if let Some(p) = &ad[O] {
            grads[O] = Some(lora_backward(&s.ctx, qw, n, &s.xa[O], p, rank, &dy, d, 0, d, scale, &mut dctx));
        }
        drop(dy);
        let (mut dqk, dv) = self.attention_backward(&s.qk, &s.v, &s.ctx, &dctx, lay, l.window);
        drop(dctx);
        rope_rows(&mut dqk, qkw, hd, rope, rotate_back);
        if let Some((qn, kn)) = &l.qk_norm {
            // Through Qwen3's head norms: dqk becomes the gradient at their inputs.
            let (qn, kn, eps, pre) = (w(qn), w(kn), self.math.eps, &s.qk_pre);
            rows_mut(&mut dqk, qkw, |t, row| {
                let mut d_pre = vec![0f32; hd];
                for (h, (dy, x)) in row.chunks_exact_mut(hd).zip(pre[t * qkw..(t + 1) * qkw].chunks_exact(hd)).enumerate() {
                    d_pre.fill(0.0);
                    rms_norm_back(x, if h < nh { qn } else { kn }, eps, dy, &mut d_pre);
                    dy.copy_from_slice(&d_pre);
                }
            });
        }
        let mut dh1 = vec![0f32; n * d];
        mm(n, d, qkw, &mut dh1, d, false, Op::rows(&dqk, qkw), Op::rows(w(&l.wqk), qkw).t(), 1.0, true);
        mm(n, d, kvw, &mut dh1, d, true, Op::rows(&dv, kvw), Op::rows(w(&l.wv), kvw).t(), 1.0, true);
        if let Some(p) = &ad[Q] {
            grads[Q] = Some(lora_backward(&s.h1, d, n, &s.xa[Q], p, rank, &dqk, qkw, 0, qw, scale, &mut dh1));
        }
        if let Some(p) = &ad[K] {
            grads[K] = Some(lora_backward(&s.h1, d, n, &s.xa[K], p, rank, &dqk, qkw, qw, kvw, scale, &mut dh1));
        }
        if let Some(p) = &ad[V] {
            grads[V] = Some(lora_backward(&s.h1, d, n, &s.xa[V], p, rank, &dv, kvw, 0, kvw, scale, &mut dh1));
        }
        norm_back_rows(&s.x_in, w(&l.attn_norm), self.math.eps, &dh1, dx, d);
        grads
    }

    /// Causal attention of every segment: the context [tokens, heads · head_dim].
    fn attention_forward(&self, qk: &[f32], v: &[f32], lay: &Layout, window: Option<usize>) -> Vec<f32> {
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.hd);
        let (qw, g) = (nh * hd, nh / nkv);
        let qkw = qw + nkv * hd;
        let scoring = self.math.scoring(window);
        let tasks: Vec<Vec<f32>> = (0..lay.segments.len() * nkv)
            .into_par_iter()
            .map(|task| {
                let (seg, kh) = (lay.segments[task / nkv], task % nkv);
                let (keys, values) = self.gather_kv(qk, v, seg, kh);
                let (len, sn) = (seg.len, seg.keys());
                let mut ctx = vec![0f32; g * len * hd];
                let mut p = vec![0f32; len * sn];
                for (j, c) in ctx.chunks_exact_mut(len * hd).enumerate() {
                    let q = Op { data: &qk[seg.start * qkw + (kh * g + j) * hd..], rs: qkw, cs: 1 };
                    probabilities(q, &keys, seg, hd, scoring, &mut p, None);
                    mm(len, hd, sn, c, hd, false, Op::rows(&p, sn), Op::rows(&values, hd), 1.0, false);
                }
                ctx
            })
            .collect();
        let mut out = vec![0f32; lay.n() * qw];
        for (task, ctx) in tasks.iter().enumerate() {
            put_heads(&mut out, qw, lay.segments[task / nkv], task % nkv * g, hd, ctx);
        }
        out
    }

    /// The backward of [`HostDpo::attention_forward`]: gradients of the (rotated) queries and
    /// keys [tokens, (heads + kv_heads) · head_dim] and of the values, from the context's.
    fn attention_backward(&self, qk: &[f32], v: &[f32], ctx: &[f32], dctx: &[f32], lay: &Layout, window: Option<usize>) -> (Vec<f32>, Vec<f32>) {
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.hd);
        let (qw, kvw, g) = (nh * hd, nkv * hd, nh / nkv);
        let qkw = qw + kvw;
        let scoring = self.math.scoring(window);
        let scale = scoring.scale;
        // Per task: the group's query gradients [g, len, hd] and the keys' and values'
        // [keys, hd] (a prompt's keys get gradient from three segments: summed afterwards).
        let tasks: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..lay.segments.len() * nkv)
            .into_par_iter()
            .map(|task| {
                let (seg, kh) = (lay.segments[task / nkv], task % nkv);
                let (keys, values) = self.gather_kv(qk, v, seg, kh);
                let (len, sn) = (seg.len, seg.keys());
                let mut dq = vec![0f32; g * len * hd];
                let (mut dk, mut dvs) = (vec![0f32; sn * hd], vec![0f32; sn * hd]);
                let mut p = vec![0f32; len * sn];
                let mut dp = vec![0f32; len * sn];
                // The soft cap's slope at each score (Gemma 2).
                let mut slope = if scoring.cap.is_some() { vec![0f32; len * sn] } else { Vec::new() };
                for (j, dqh) in dq.chunks_exact_mut(len * hd).enumerate() {
                    let h = kh * g + j;
                    let q = Op { data: &qk[seg.start * qkw + h * hd..], rs: qkw, cs: 1 };
                    let dc = Op { data: &dctx[seg.start * qw + h * hd..], rs: qw, cs: 1 };
                    probabilities(q, &keys, seg, hd, scoring, &mut p, scoring.cap.is_some().then_some(&mut slope[..]));
                    // dV += Pᵀ·dC; dP = dC·Vᵀ.
                    mm(sn, hd, len, &mut dvs, hd, true, Op::rows(&p, sn).t(), dc, 1.0, false);
                    mm(len, sn, hd, &mut dp, sn, false, dc, Op::rows(&values, hd).t(), 1.0, false);
                    // dS = P·(dP − Σ_j P·dP), and Σ_j P·dP = dC·C (the row's context).
                    for (i, (pr, dr)) in p.chunks_exact(sn).zip(dp.chunks_exact_mut(sn)).enumerate() {
                        let t = seg.start + i;
                        let (c, dcr) = (&ctx[t * qw + h * hd..t * qw + (h + 1) * hd], &dctx[t * qw + h * hd..t * qw + (h + 1) * hd]);
                        let dot: f32 = c.iter().zip(dcr).map(|(a, b)| a * b).sum();
                        for (x, &pv) in dr.iter_mut().zip(pr) {
                            *x = pv * (*x - dot);
                        }
                    }
                    // Through the soft cap, into the raw scores.
                    if scoring.cap.is_some() {
                        dp.iter_mut().zip(&slope).for_each(|(x, s)| *x *= s);
                    }
                    // dQ = scale·dS·K; dK += scale·dSᵀ·Q.
                    mm(len, hd, sn, dqh, hd, false, Op::rows(&dp, sn), Op::rows(&keys, hd), scale, false);
                    mm(sn, hd, len, &mut dk, hd, true, Op::rows(&dp, sn).t(), q, scale, false);
                }
                (dq, dk, dvs)
            })
            .collect();
        let n = lay.n();
        let (mut dqk, mut dv) = (vec![0f32; n * qkw], vec![0f32; n * kvw]);
        for (task, (dq, dk, dvs)) in tasks.iter().enumerate() {
            let (seg, kh) = (lay.segments[task / nkv], task % nkv);
            put_heads(&mut dqk, qkw, seg, kh * g, hd, dq);
            for (slot, t) in key_tokens(seg).enumerate() {
                let (dkr, dvr) = (&dk[slot * hd..(slot + 1) * hd], &dvs[slot * hd..(slot + 1) * hd]);
                let at = t * qkw + qw + kh * hd;
                dqk[at..at + hd].iter_mut().zip(dkr).for_each(|(a, b)| *a += b);
                dv[t * kvw + kh * hd..t * kvw + (kh + 1) * hd].iter_mut().zip(dvr).for_each(|(a, b)| *a += b);
            }
        }
        (dqk, dv)
    }

    /// A segment's visible keys and values for kv head `kh`, [keys, head_dim] each.
    fn gather_kv(&self, qk: &[f32], v: &[f32], seg: Segment, kh: usize) -> (Vec<f32>, Vec<f32>) {
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.hd);
        let (qkw, kvw) = ((nh + nkv) * hd, nkv * hd);
        let sn = seg.keys();
        let (mut keys, mut values) = (Vec::with_capacity(sn * hd), Vec::with_capacity(sn * hd));
        for t in key_tokens(seg) {
            keys.extend_from_slice(&qk[t * qkw + (nh + kh) * hd..t * qkw + (nh + kh + 1) * hd]);
            values.extend_from_slice(&v[t * kvw + kh * hd..t * kvw + (kh + 1) * hd]);
        }
        (keys, values)
    }
}

/// Copies a task's per-head blocks ([heads][segment tokens][head_dim], heads from `first`) into
/// the segment's rows of `out` ([tokens, width]).
fn put_heads(out: &mut [f32], width: usize, seg: Segment, first: usize, hd: usize, blocks: &[f32]) {
    for (j, block) in blocks.chunks_exact(seg.len * hd).enumerate() {
        let at = (first + j) * hd;
        for (i, row) in block.chunks_exact(hd).enumerate() {
            let t = seg.start + i;
            out[t * width + at..t * width + at + hd].copy_from_slice(row);
        }
    }
}

/// Applies `f` (RoPE or its backward) to every head of every token of x [tokens, width], at
/// each token's angles in `rope` ([tokens, head_dim / 2]).
fn rope_rows(x: &mut [f32], width: usize, hd: usize, rope: &[(f32, f32)], f: fn(&mut [f32], &[(f32, f32)])) {
    let half = hd / 2;
    rows_mut(x, width, |t, row| {
        let cs = &rope[t * half..(t + 1) * half];
        row.chunks_exact_mut(hd).for_each(|head| f(head, cs));
    });
}

/// The tokens a segment's keys come from, in slot order.
fn key_tokens(seg: Segment) -> impl Iterator<Item = usize> {
    let prefix = seg.prefix.map_or(0..0, |(s, l)| s..s + l);
    prefix.chain(seg.start..seg.start + seg.len)
}

/// Softmax attention probabilities [len, keys] of one head's queries: query i sees the prefix
/// and its segment's tokens up to itself, or with a window the `window` keys up to itself
/// (zero elsewhere: a key's slot is its position, the prompt's then the answer's). With a soft
/// cap, `slope` (when given) gets its derivative at each visible score.
fn probabilities(q: Op, keys: &[f32], seg: Segment, hd: usize, scoring: Scoring, p: &mut [f32], mut slope: Option<&mut [f32]>) {
    let (len, sn) = (seg.len, seg.keys());
    mm(len, sn, hd, p, sn, false, q, Op::rows(keys, hd).t(), scoring.scale, false);
    let before = sn - len;
    for (i, row) in p.chunks_exact_mut(sn).enumerate() {
        let (lo, hi) = (scoring.window.map_or(0, |w| (before + i + 1).saturating_sub(w)), before + i);
        row[hi + 1..].fill(0.0);
        row[..lo].fill(0.0);
        if let Some(c) = scoring.cap {
            for (j, x) in row[lo..=hi].iter_mut().enumerate() {
                *x = host::softcap(*x, c);
                if let Some(slope) = slope.as_deref_mut() {
                    slope[i * sn + lo + j] = 1.0 - (*x / c) * (*x / c);
                }
            }
        }
        softmax(&mut row[lo..=hi]);
    }
}

/// act(gate)·up, [tokens, ff]: SiLU, or the tanh GELU when `gelu` (Gemma).
fn act_mul(gate: &[f32], up: &[f32], ff: usize, gelu: bool) -> Vec<f32> {
    let f = if gelu { host::gelu_mul } else { host::silu_mul };
    let mut m = vec![0f32; gate.len()];
    if gate.len() >= PARALLEL_ROWS * ff {
        m.par_chunks_mut(4096).zip(gate.par_chunks(4096).zip(up.par_chunks(4096))).for_each(|(o, (g, u))| f(g, u, o));
    } else {
        f(gate, up, &mut m);
    }
    m
}

/// RMSNorm's backward for every row: dx += the input gradient given the output's dy.
fn norm_back_rows(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], width: usize) {
    if x.len() >= PARALLEL_ROWS * width {
        dx.par_chunks_mut(width).zip(x.par_chunks(width).zip(dy.par_chunks(width))).for_each(|(o, (x, g))| rms_norm_back(x, w, eps, g, o));
    } else {
        dx.chunks_mut(width).zip(x.chunks(width).zip(dy.chunks(width))).for_each(|(o, (x, g))| rms_norm_back(x, w, eps, g, o));
    }
}

with_avx2!(lse_row, (row: &[f32], out: &mut f32), {
    let mut top = [f32::MIN; 8];
    let chunks = row.chunks_exact(8);
    for &x in chunks.remainder() {
        top[0] = top[0].max(x);
    }
    for c in chunks {
        for l in 0..8 {
            top[l] = if c[l] > top[l] { c[l] } else { top[l] };
        }
    }
    let m = top.iter().copied().fold(f32::MIN, f32::max);
    let mut z = [0f32; 8];
    let chunks = row.chunks_exact(8);
    for &x in chunks.remainder() {
        z[0] += fast_exp(x - m);
    }
    for c in chunks {
        for l in 0..8 {
            z[l] += fast_exp(c[l] - m);
        }
    }
    *out = m + (z.iter().map(|&v| v as f64).sum::<f64>() as f32).ln();
});

/// log Σ exp of a row (max-shifted; sums in eight lanes).
fn log_sum_exp(row: &[f32]) -> f32 {
    let mut out = 0.0;
    lse_row(row, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rank-8 adapter products are split by rows over the cores: the same values as one
    /// call, for plain and transposed operands, into a wider output, added or not.
    #[test]
    fn products_split_over_cores_equal_a_naive_product() {
        let (m, n, k, ld) = (2 * SPLIT_ROWS * 8 + 5, 8, 64, 11);
        assert!(m * n * k >= SPLIT_WORK && matches!(parallelism(m, n, k), gemm::Parallelism::None), "the split path");
        let values = |len: usize, seed: u32| (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0).collect::<Vec<f32>>();
        let (a, at, b) = (values(m * k, 1), values(k * m, 2), values(k * n, 3));
        for (transposed, acc) in [(false, false), (true, true)] {
            let lhs = if transposed { Op::rows(&at, m).t() } else { Op::rows(&a, k) };
            let start = values(m * ld, 4);
            let mut out = start.clone();
            mm(m, n, k, &mut out, ld, acc, lhs, Op::rows(&b, n), 0.5, true);
            for i in 0..m {
                for j in 0..ld {
                    let got = out[i * ld + j] as f64;
                    if j >= n {
                        assert_eq!(got, start[i * ld + j] as f64, "column {j} past the product is untouched");
                        continue;
                    }
                    let dot: f64 = (0..k).map(|p| lhs.data[i * lhs.rs + p * lhs.cs] as f64 * b[p * n + j] as f64).sum();
                    let want = 0.5 * dot + if acc { start[i * ld + j] as f64 } else { 0.0 };
                    assert!((got - want).abs() < 1e-4, "({i}, {j}): {got} vs {want}");
                }
            }
        }
    }
}
