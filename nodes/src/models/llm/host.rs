//! Llama inference for the CPU backend, on the weights' own buffers.
//!
//! Generation on Flex through Burn's ops spent as long outside the matmuls as in them: the KV
//! cache was re-concatenated for every new token, masked attention ran Flex's naive kernel with
//! a boolean mask tensor and scalar `expf`, RoPE was a matmul plus three passes, and norms,
//! SiLU and residual adds each made a pass and a fresh tensor. Here one decoder layer is: RMSNorm
//! (one pass), the q/k/v matmuls, RoPE in place, the new keys and values written into a cache
//! with spare capacity, attention over each row's visible slots (a contiguous range), the output
//! projection accumulated into the residual by the matmul itself, and the same for the MLP with
//! SiLU·up fused. Prefill packs the rows without padding and runs the `gemm` crate's matmuls,
//! as Flex does; decode steps run `rows_matmul` over a packed copy of each weight (so the host
//! path holds the f32 weights twice).
//!
//! Every sum runs in an order that does not depend on the batch (see `matmul`; attention sums
//! over each query's own slots), so on the CPU a sample is bit for bit the same whichever rows
//! share its batch and however they are padded. Training (autodiff) and other backends keep
//! the generic [`super::llama::Llama`] path; the two agree to float rounding (a test compares
//! them).

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use rayon::prelude::*;

use super::config::LlamaConfig;
use super::llama::Llama;
use super::rows_matmul::{rows_matmul, PackedMatrix};
use crate::models::cpu::{fast_exp, flex_tensor, on_flex, parallelism, softmax, with_avx2};

/// A weight matrix used as the right operand of `x · W`, in either stored layout.
struct Mat {
    data: FlexTensor,
    /// The same matrix packed for decode steps (see `rows_matmul`).
    rows: PackedMatrix,
    /// Input width (rows of W).
    k: usize,
    /// Output width (columns of W).
    n: usize,
    /// Stored as [n, k] (a checkpoint's [out, in], e.g. a tied embedding) rather than [k, n].
    transposed: bool,
}

impl Mat {
    fn values(&self) -> &[f32] {
        self.data.as_slice::<f32>().expect("checked contiguous f32 when built")
    }
}

struct Layer {
    attn_norm: FlexTensor,
    wqk: Mat,
    wv: Mat,
    wo: Mat,
    mlp_norm: FlexTensor,
    gate: Mat,
    up: Mat,
    down: Mat,
}

/// The model's weights as host buffers (shared with the Burn module, not copied).
pub struct HostLlama {
    embed: FlexTensor,
    layers: Vec<Layer>,
    norm: FlexTensor,
    /// The output head; prefill reads the tied embedding itself where there is one.
    head: Mat,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
}

/// Keys and values per layer and row and kv head: keys transposed, `[head_dim, capacity]`
/// (scores are then contiguous multiply-adds across slots), values `[capacity, head_dim]`; the
/// first `len` slots filled. Appending writes in place; capacity doubles when it runs out.
#[derive(Clone)]
pub struct HostCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    rows: usize,
    kv_heads: usize,
    head_dim: usize,
    len: usize,
    cap: usize,
}

impl std::fmt::Debug for HostCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCache").field("layers", &self.layers.len()).field("rows", &self.rows).field("len", &self.len).field("cap", &self.cap).finish()
    }
}

impl HostCache {
    fn new(layers: usize, rows: usize, kv_heads: usize, head_dim: usize) -> Self {
        HostCache { layers: vec![(Vec::new(), Vec::new()); layers], rows, kv_heads, head_dim, len: 0, cap: 0 }
    }

    /// Makes room for `more` slots per row (the first call allocates the buffers).
    fn reserve(&mut self, more: usize) {
        if self.len + more <= self.cap {
            return;
        }
        let cap = (self.len + more).max(2 * self.cap).max(16);
        let (hd, len, old) = (self.head_dim, self.len, self.cap);
        let lanes = self.rows * self.kv_heads;
        for (k, v) in &mut self.layers {
            let mut grown = vec![0f32; lanes * cap * hd];
            for lane in 0..lanes {
                grown[lane * cap * hd..(lane * cap + len) * hd].copy_from_slice(&v[lane * old * hd..(lane * old + len) * hd]);
            }
            *v = grown;
            let mut grown = vec![0f32; lanes * cap * hd];
            for lane in 0..lanes {
                for d in 0..hd {
                    grown[(lane * hd + d) * cap..(lane * hd + d) * cap + len].copy_from_slice(&k[(lane * hd + d) * old..(lane * hd + d) * old + len]);
                }
            }
            *k = grown;
        }
        self.cap = cap;
    }

    /// Rows picked (and repeated) by `rows`.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let lane = self.kv_heads * self.cap * self.head_dim;
        let pick = |buf: &Vec<f32>| {
            let mut out = Vec::with_capacity(rows.len() * lane);
            for &r in rows {
                out.extend_from_slice(&buf[r * lane..(r + 1) * lane]);
            }
            out
        };
        HostCache {
            layers: self.layers.iter().map(|(k, v)| (pick(k), pick(v))).collect(),
            rows: rows.len(),
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            len: self.len,
            cap: self.cap,
        }
    }
}

/// One forward step: new tokens for each row, packed without padding.
pub struct HostStep<'a> {
    /// Row r's new tokens are `ids[starts[r]..starts[r + 1]]` (`batch + 1` entries).
    pub starts: &'a [usize],
    /// Slots every row advances by: the longest row's new tokens. A shorter row's tokens take
    /// the last of those slots (left padding), so all rows keep one cache length.
    pub len: usize,
    /// The new token ids of all rows, row after row.
    pub ids: &'a [u32],
    /// Each token's RoPE position.
    pub positions: &'a [usize],
    /// Leading padding slots of each row, never attended to. A new token sees the slots from
    /// its row's padding up to its own.
    pub pad: &'a [usize],
    /// A decode step (one new token per row): its matmuls run through `rows_matmul`, prefill's
    /// through gemm. Each phase always takes the same kernels, so a row's numbers do not
    /// depend on how many rows share the step.
    pub decode: bool,
}

impl HostStep<'_> {
    /// Row r's (first token in `ids`, new tokens, slots of padding before them in this step):
    /// its token i sits in cache slot (cache length) + padding + i.
    fn row(&self, r: usize) -> (usize, usize, usize) {
        let (start, count) = (self.starts[r], self.starts[r + 1] - self.starts[r]);
        (start, count, self.len - count)
    }
}

/// The Flex buffer behind a module tensor, if it is contiguous f32.
fn buffer<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<FlexTensor> {
    let flex = flex_tensor(&t.into_primitive().tensor())?.clone();
    flex.as_slice::<f32>()?;
    Some(flex)
}

impl HostLlama {
    /// The host view of `model`, or None when it does not live on Flex as contiguous f32.
    pub fn new<B: Backend>(model: &Llama<B>, c: &LlamaConfig) -> Option<HostLlama> {
        if !on_flex::<B>() {
            return None;
        }
        let (d, hd, ff, v) = (c.hidden_size, c.head_dim, c.intermediate_size, c.vocab_size);
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let mat = |t: Tensor<B, 2>, k: usize, n: usize| -> Option<Mat> {
            (t.dims() == [k, n]).then_some(())?;
            let data = buffer(t)?;
            let rows = PackedMatrix::new(data.as_slice::<f32>()?, k, n);
            Some(Mat { data, rows, k, n, transposed: false })
        };
        let mut layers = Vec::with_capacity(model.blocks.len());
        for b in &model.blocks {
            layers.push(Layer {
                attn_norm: buffer(b.attn_norm.weight.val())?,
                wqk: mat(b.wqk.val(), d, (nh + nkv) * hd)?,
                wv: mat(b.wv.val(), d, nkv * hd)?,
                wo: mat(b.wo.val(), nh * hd, d)?,
                mlp_norm: buffer(b.mlp_norm.weight.val())?,
                gate: mat(b.w_gate.val(), d, ff)?,
                up: mat(b.w_up.val(), d, ff)?,
                down: mat(b.w_down.val(), ff, d)?,
            });
        }
        let embed = buffer(model.embed.val())?;
        // Prefill reads a tied head as the embedding itself, [vocab, hidden]: gemm runs a few
        // rows through the output head 2x faster from that layout than from the transposed copy.
        let mut head = mat(model.head.val(), d, v)?;
        if c.tie_word_embeddings && v > 256 {
            (head.data, head.transposed) = (embed.clone(), true);
        }
        Some(HostLlama {
            embed,
            layers,
            norm: buffer(model.norm.weight.val())?,
            head,
            hidden: d,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            eps: c.rms_norm_eps as f32,
        })
    }

    /// An empty cache for `rows` sequences.
    pub fn cache(&self, rows: usize) -> HostCache {
        HostCache::new(self.layers.len(), rows, self.kv_heads, self.head_dim)
    }

    /// Runs the new tokens of `step` through the layers, appending their keys and values to
    /// `cache`; returns the final-norm hidden states of the rows `keep` picks out of the
    /// step's tokens (indices into `ids`), as [keep.len(), hidden].
    pub fn forward(&self, step: &HostStep, inv_freq: &[f32], cache: &mut HostCache, keep: &[usize]) -> Vec<f32> {
        let (b, s, d) = (step.starts.len() - 1, step.len, self.hidden);
        assert_eq!(cache.rows, b, "cache rows");
        let n = step.ids.len();
        assert!(step.starts[b] == n && step.positions.len() == n && step.pad.len() == b, "a host step's rows, ids and positions must agree");
        assert!((0..b).all(|r| step.starts[r + 1] - step.starts[r] <= s), "a row has more new tokens than the step's length");
        let embed = self.embed.as_slice::<f32>().expect("checked");
        let mut x = vec![0f32; n * d];
        for (row, &id) in x.chunks_exact_mut(d).zip(step.ids) {
            row.copy_from_slice(&embed[id as usize * d..(id as usize + 1) * d]);
        }
        let rope = rope_table(step.positions, inv_freq);
        cache.reserve(s);
        // Buffers every layer overwrites, allocated once per step (fresh multi-megabyte
        // buffers per layer came back from the kernel as zeroed pages: 6% of a prefill).
        let ff = self.layers.first().map_or(0, |l| l.gate.n);
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let mut sc = Scratch {
            normed: vec![0f32; n * d],
            qk: vec![0f32; n * (nh + nkv) * hd],
            v: vec![0f32; n * nkv * hd],
            ctx: vec![0f32; n * nh * hd],
            gate: vec![0f32; n * ff],
            up: vec![0f32; n * ff],
        };
        for (li, layer) in self.layers.iter().enumerate() {
            self.attention_block(layer, &x, &mut sc, step, &rope, &mut cache.layers[li], cache.len, cache.cap);
            matmul(&sc.ctx, &layer.wo, &mut x, n, true, step.decode);
            self.mlp_block(layer, &mut x, &mut sc, n, step.decode);
        }
        cache.len += s;
        let norm = self.norm.as_slice::<f32>().expect("checked");
        let mut out = vec![0f32; keep.len() * d];
        for (o, &t) in out.chunks_exact_mut(d).zip(keep) {
            rms_norm(&x[t * d..(t + 1) * d], norm, self.eps, o);
        }
        out
    }

    /// Logits [rows, vocab] for final hidden states [rows, hidden] (of a decode step or not).
    pub fn logits(&self, hidden: &[f32], rows: usize, decode: bool) -> Vec<f32> {
        let mut out = vec![0f32; rows * self.head.n];
        matmul(hidden, &self.head, &mut out, rows, false, decode);
        out
    }

    /// Attention: `sc.ctx` gets the context [tokens, heads · head_dim] of the layer input `x`;
    /// the step's keys and values go into the layer's cache `kv` (`past` slots filled of `cap`).
    #[allow(clippy::too_many_arguments)]
    fn attention_block(&self, l: &Layer, x: &[f32], sc: &mut Scratch, step: &HostStep, rope: &[(f32, f32)], kv: &mut (Vec<f32>, Vec<f32>), past: usize, cap: usize) {
        let (b, s, d) = (step.starts.len() - 1, step.len, self.hidden);
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let n = step.ids.len();
        norm_rows(x, l.attn_norm.as_slice::<f32>().expect("checked"), self.eps, d, &mut sc.normed);
        let qkw = (nh + nkv) * hd;
        let (qk, v) = (&mut sc.qk, &mut sc.v);
        matmul(&sc.normed, &l.wqk, qk, n, false, step.decode);
        matmul(&sc.normed, &l.wv, v, n, false, step.decode);
        // RoPE on every q and k head of every token, in place.
        let half = hd / 2;
        let rope_row = |(t, row): (usize, &mut [f32])| {
            let cs = &rope[t * half..(t + 1) * half];
            for head in row.chunks_exact_mut(hd) {
                rotate(head, cs);
            }
        };
        if n >= PARALLEL_ROWS {
            qk.par_chunks_mut(qkw).enumerate().for_each(rope_row);
        } else {
            qk.chunks_mut(qkw).enumerate().for_each(rope_row);
        }
        // New keys (transposed: [head_dim, capacity] per row and kv head) and values
        // ([capacity, head_dim]) into the cache at slots past..past + s (each row's last ones).
        let (kc, vc) = kv;
        for r in 0..b {
            let (start, count, first) = step.row(r);
            for i in 0..count {
                let (t, slot) = (start + i, past + first + i);
                for kh in 0..nkv {
                    let lane = (r * nkv + kh) * cap * hd;
                    let key = &qk[t * qkw + (nh + kh) * hd..t * qkw + (nh + kh + 1) * hd];
                    for (dd, &x) in key.iter().enumerate() {
                        kc[lane + dd * cap + slot] = x;
                    }
                    let at = lane + slot * hd;
                    vc[at..at + hd].copy_from_slice(&v[t * nkv * hd + kh * hd..t * nkv * hd + (kh + 1) * hd]);
                }
            }
        }
        let (kc, vc) = (&*kc, &*vc);
        let groups = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (row, query head): its [tokens, hd] context. Each query attends to its
        // visible slots only, so a row's numbers do not depend on its batch mates or their
        // padding: a decode step sums over the slots in order; a prefill runs two matmuls over
        // the row's real tokens alone, whose shapes are the same however the row is padded.
        let contexts: Vec<Vec<f32>> = (0..b * nh)
            .into_par_iter()
            .map(|task| {
                let (r, head) = (task / nh, task % nh);
                let lane = (r * nkv + head / groups) * cap * hd;
                let (keys_t, values) = (&kc[lane..lane + cap * hd], &vc[lane..lane + cap * hd]);
                let (start, count, first) = step.row(r);
                let mut ctx = vec![0f32; count * hd];
                if count == 0 {
                    return ctx;
                }
                let lo = step.pad[r].min(past + first);
                if !step.decode {
                    let q = &qk[start * qkw + head * hd..];
                    attend_real_tokens(q, qkw, keys_t, values, cap, hd, past + first, count, lo, scale, &mut ctx);
                    return ctx;
                }
                let mut scores = vec![0f32; past + s];
                for i in 0..count {
                    // Slots from the row's padding up to the query's own.
                    let hi = past + first + i;
                    let t = start + i;
                    let q = &qk[t * qkw + head * hd..t * qkw + (head + 1) * hd];
                    let p = &mut scores[lo..=hi];
                    key_scores(q, keys_t, cap, lo, scale, p);
                    softmax(p);
                    weighted_sum(p, &values[lo * hd..(hi + 1) * hd], &mut ctx[i * hd..(i + 1) * hd]);
                }
                ctx
            })
            .collect();
        let width = nh * hd;
        let h = &mut sc.ctx;
        for (task, ctx) in contexts.iter().enumerate() {
            let (r, head) = (task / nh, task % nh);
            let (start, count, _) = step.row(r);
            for i in 0..count {
                let t = start + i;
                h[t * width + head * hd..t * width + (head + 1) * hd].copy_from_slice(&ctx[i * hd..(i + 1) * hd]);
            }
        }
    }

    /// x += down(silu(gate(norm x)) · up(norm x)), in `sc`'s buffers.
    fn mlp_block(&self, l: &Layer, x: &mut [f32], sc: &mut Scratch, n: usize, decode: bool) {
        let d = self.hidden;
        norm_rows(x, l.mlp_norm.as_slice::<f32>().expect("checked"), self.eps, d, &mut sc.normed);
        matmul(&sc.normed, &l.gate, &mut sc.gate, n, false, decode);
        matmul(&sc.normed, &l.up, &mut sc.up, n, false, decode);
        if n >= PARALLEL_ROWS {
            sc.gate.par_chunks_mut(4096).zip(sc.up.par_chunks(4096)).for_each(|(g, u)| silu_mul(g, u));
        } else {
            silu_mul(&mut sc.gate, &sc.up);
        }
        matmul(&sc.gate, &l.down, x, n, true, decode);
    }
}

/// Below this many tokens the elementwise passes run on the calling thread: a decode step's
/// few rows cost less than waking the pool (thread hand-offs were ~6% of a decode step).
const PARALLEL_ROWS: usize = 64;

/// One step's working buffers, [tokens, width] each; every layer overwrites them.
struct Scratch {
    normed: Vec<f32>,
    qk: Vec<f32>,
    v: Vec<f32>,
    /// Attention's context, the output projection's input.
    ctx: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

/// (cos, sin) of position × frequency, [tokens, head_dim / 2].
fn rope_table(positions: &[usize], inv_freq: &[f32]) -> Vec<(f32, f32)> {
    let mut t = Vec::with_capacity(positions.len() * inv_freq.len());
    for &p in positions {
        for f in inv_freq {
            let (s, c) = (p as f32 * f).sin_cos();
            t.push((c, s));
        }
    }
    t
}

/// Rotary embedding of one head in Hugging Face's rotate-half convention:
/// x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁].
fn rotate(x: &mut [f32], cs: &[(f32, f32)]) {
    let half = cs.len();
    for (j, &(c, s)) in cs.iter().enumerate() {
        let (a, b) = (x[j], x[j + half]);
        x[j] = a * c + -b * s;
        x[j + half] = b * c + a * s;
    }
}

/// RMSNorm of every [width] row of `x` into `out`, in parallel.
fn norm_rows(x: &[f32], w: &[f32], eps: f32, width: usize, out: &mut [f32]) {
    if x.len() >= PARALLEL_ROWS * width {
        out.par_chunks_mut(width).zip(x.par_chunks(width)).for_each(|(o, r)| rms_norm(r, w, eps, o));
    } else {
        out.chunks_mut(width).zip(x.chunks(width)).for_each(|(o, r)| rms_norm(r, w, eps, o));
    }
}

with_avx2!(rms_norm, (x: &[f32], w: &[f32], eps: f32, out: &mut [f32]), {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    for &v in chunks.remainder() {
        acc[0] += v * v;
    }
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l] * c[l];
        }
    }
    let ms = acc.iter().sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
});

with_avx2!(silu_mul, (g: &mut [f32], u: &[f32]), {
    for (a, &b) in g.iter_mut().zip(u) {
        *a = *a / (1.0 + fast_exp(-*a)) * b;
    }
});

with_avx2!(key_scores, (q: &[f32], keys_t: &[f32], cap: usize, lo: usize, scale: f32, out: &mut [f32]), {
    // out[j] = scale · Σ_d q[d]·K[lo + j][d], with K stored transposed ([head_dim, cap]): each
    // step is a contiguous multiply-add across slots, and every score sums d in order.
    out.fill(0.0);
    let n = out.len();
    for (d, &qd) in q.iter().enumerate() {
        let row = &keys_t[d * cap + lo..d * cap + lo + n];
        for (o, &k) in out.iter_mut().zip(row) {
            *o += qd * k;
        }
    }
    for o in out.iter_mut() {
        *o *= scale;
    }
});

with_avx2!(weighted_sum, (p: &[f32], values: &[f32], out: &mut [f32]), {
    let hd = out.len();
    for (&w, v) in p.iter().zip(values.chunks_exact(hd)) {
        for (o, &x) in out.iter_mut().zip(v) {
            *o += w * x;
        }
    }
});

/// Prefill attention for one row and query head with two matmuls over the row's real slots:
/// the `nq` queries (rows `qstride` apart in `q`) sit in slots first.., and see the slots from
/// `lo` up to their own. S = scale·Q·Kᵀ, each row softmaxed over its visible slots (zero
/// after), then ctx = P·V.
#[allow(clippy::too_many_arguments)]
fn attend_real_tokens(q: &[f32], qstride: usize, keys_t: &[f32], values: &[f32], cap: usize, hd: usize, first: usize, nq: usize, lo: usize, scale: f32, ctx: &mut [f32]) {
    let nk = first + nq - lo;
    assert!(lo <= first && q.len() >= (nq - 1) * qstride + hd && keys_t.len() >= (hd - 1) * cap + first + nq && values.len() >= (first + nq) * hd);
    let mut scores = vec![0f32; nq * nk];
    // SAFETY: Q is nq rows of hd values qstride apart (inside q, asserted); Kᵀ is
    // keys_t's [hd, cap] rows from column lo, nk columns (inside, asserted); scores is
    // nq × nk row-major.
    unsafe {
        gemm::gemm(nq, nk, hd, scores.as_mut_ptr(), 1, nk as isize, false, q.as_ptr(), 1, qstride as isize, keys_t.as_ptr().add(lo), 1, cap as isize, 0.0, scale, false, false, false, gemm::Parallelism::None);
    }
    for (i, row) in scores.chunks_exact_mut(nk).enumerate() {
        let seen = first + i - lo + 1;
        row[seen..].fill(0.0);
        softmax(&mut row[..seen]);
    }
    // SAFETY: P is nq × nk row-major; V is values' rows lo..lo+nk of hd; ctx is nq × hd.
    unsafe {
        gemm::gemm(nq, hd, nk, ctx.as_mut_ptr(), 1, hd as isize, false, scores.as_ptr(), 1, nk as isize, values.as_ptr().add(lo * hd), 1, hd as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}

/// out [m, n] (+)= x [m, k] · W: a decode step's few rows through `rows_matmul` (on W's
/// packed copy), otherwise gemm, on all cores above 192³ multiply-adds (Flex's rule).
///
/// Each output's sum runs in an order that does not depend on `m`, so a row's numbers do not
/// depend on how many rows share the call: gemm's blocking over k depends on k alone, except
/// in the paths avoided here: one row (gemm's gemv, which sums in another order; such calls
/// run as two rows) and its horizontal kernel for tiny m·n with a transposed right operand
/// (never taken: `transposed` is only set for output widths over 256).
fn matmul(x: &[f32], w: &Mat, out: &mut [f32], m: usize, accumulate: bool, decode: bool) {
    let (k, n) = (w.k, w.n);
    assert!(x.len() >= m * k && out.len() >= m * n, "matmul: buffers too small for [{m}, {k}] x [{k}, {n}]");
    if decode {
        rows_matmul(x, &w.rows, out, m, accumulate);
        return;
    }
    if m == 1 {
        let x2 = [&x[..k], &x[..k]].concat();
        let mut out2 = [&out[..n], &out[..n]].concat();
        matmul(&x2, w, &mut out2, 2, accumulate, false);
        out[..n].copy_from_slice(&out2[..n]);
        return;
    }
    let ws = w.values();
    assert_eq!(ws.len(), k * n);
    // W[kk, j] is at kk·n + j when stored [k, n], at j·k + kk when stored [n, k].
    let (w_cs, w_rs) = if w.transposed { (k as isize, 1) } else { (1, n as isize) };
    let par = parallelism(m, n, k);
    // SAFETY: x is m × k row-major, W is k × n with the strides above, out is m × n row-major;
    // the lengths are asserted above.
    unsafe {
        gemm::gemm(m, n, k, out.as_mut_ptr(), 1, n as isize, accumulate, x.as_ptr(), 1, k as isize, ws.as_ptr(), w_cs, w_rs, 1.0, 1.0, false, false, false, par);
    }
}
