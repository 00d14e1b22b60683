//! Llama inference for the CPU backend, on the weights' own buffers.
//!
//! Generation on Flex through Burn's ops spent as long outside the matmuls as in them: the KV
//! cache was re-concatenated for every new token, masked attention ran Flex's naive kernel with
//! a boolean mask tensor and scalar `expf`, RoPE was a matmul plus three passes, and norms,
//! SiLU and residual adds each made a pass and a fresh tensor. Here one decoder layer is: RMSNorm
//! (one pass), the q/k/v matmuls, RoPE in place, the new keys and values written into a cache
//! with spare capacity, attention over each row's visible slots (a contiguous range), the output
//! projection accumulated into the residual by the matmul itself, and the same for the MLP with
//! SiLU·up fused. Prefill packs the rows without padding. Every projection, prefill's and
//! decode's, runs `rows_matmul` over a packed copy of each weight: q, k and v as one matrix,
//! gate and up as another, so a decode step wakes the threads four times per layer, not six.
//! A GGUF's Q8_0/Q4_0/Q4_1 matrices are packed as their codes (a sixth of the bytes, the same
//! values), weights that bf16 or f16 hold exactly in those 16 bits, others as f32. Loaded for
//! generation, a model is this path alone: the Burn module (an f32 copy of every weight) is
//! not built, and block-coded matrices are never dequantised.
//!
//! Every sum runs in an order that does not depend on the batch (`rows_matmul` sums each
//! output over k in order whatever the rows; attention sums over each query's own slots), so
//! on the CPU a sample is bit for bit the same whichever rows share its batch and however they
//! are padded. Training (autodiff) and other backends keep
//! the generic [`super::llama::Llama`] path; the two agree to float rounding (a test compares
//! them).

use std::collections::BTreeMap;

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use rayon::prelude::*;

use super::config::LlamaConfig;
use super::rows_matmul::{rows_matmul, PackedMatrix};
use super::weights::{self, fuse_transposed, HostTensor, StoredRows};
use crate::models::cpu::{fast_exp, flex_tensor, gelu_value, softmax, with_avx2};

/// A decoder layer's weights. Projections that read the same input are one matrix (q, k and
/// v; gate and up), so a decode step hands each to the threads once, not two or three times.
struct Layer {
    attn_norm: Vec<f32>,
    /// [hidden, (heads + 2 · kv heads) · head_dim]: q, then k, then v columns.
    wqkv: PackedMatrix,
    /// q, k and v biases in `wqkv`'s column order (Qwen2), or none.
    bqkv: Option<Vec<f32>>,
    /// RMSNorm weights of every q head and every k head (Qwen3), or none.
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    wo: PackedMatrix,
    mlp_norm: Vec<f32>,
    /// [hidden, 2 · intermediate]: gate, then up columns.
    gate_up: PackedMatrix,
    down: PackedMatrix,
    /// RMSNorm weights of the attention's and the MLP's outputs (Gemma 2 and 3), or none.
    post_attn_norm: Option<Vec<f32>>,
    post_mlp_norm: Option<Vec<f32>>,
    /// The sliding window this layer attends within, if it does.
    window: Option<usize>,
    /// Whether RoPE here uses the sliding layers' own frequencies (Gemma 3).
    local_rope: bool,
}

/// The model's weights as host buffers, packed for `rows_matmul`.
pub struct HostLlama {
    /// The token embedding when it is not the output head's (tied models read the head's
    /// columns): packed like a head, so a block-coded one stays in its blocks.
    embed: Option<PackedMatrix>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// The output head.
    head: PackedMatrix,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    math: Arithmetic,
}

/// How a model computes, beyond its weights and shape, as both CPU paths (generation here,
/// DPO in `host_dpo`) read it from the config.
pub(super) struct Arithmetic {
    pub eps: f32,
    /// What RoPE's cos and sin are multiplied by ([`LlamaConfig::rope_scale`]).
    pub rope_scale: f32,
    /// The sliding layers' own RoPE frequencies (Gemma 3), or none.
    pub local_inv_freq: Option<Vec<f32>>,
    /// What the embedding is multiplied by (Gemma), or none.
    pub embed_scale: Option<f32>,
    /// What attention scores are multiplied by ([`LlamaConfig::attention_scale`]).
    pub attn_scale: f32,
    /// Soft caps of attention scores and of the logits (Gemma 2), or none.
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// GeGLU (Gemma) rather than SwiGLU.
    pub gelu: bool,
}

impl Arithmetic {
    pub fn of(c: &LlamaConfig) -> Self {
        Arithmetic {
            eps: c.rms_norm_eps as f32,
            rope_scale: c.rope_scale(),
            local_inv_freq: c.local_inv_freq(),
            embed_scale: c.embed_scale(),
            attn_scale: c.attention_scale(),
            attn_softcap: c.attn_logit_softcapping.map(|x| x as f32),
            final_softcap: c.final_logit_softcapping.map(|x| x as f32),
            gelu: c.architecture.gelu(),
        }
    }

    /// RoPE's angles at `positions`, from `inv_freq` and the sliding layers' own.
    pub fn ropes(&self, positions: &[usize], inv_freq: &[f32]) -> Ropes {
        Ropes { global: rope_table(positions, inv_freq, self.rope_scale), local: self.local_inv_freq.as_ref().map(|f| rope_table(positions, f, self.rope_scale)) }
    }

    /// Scores as a layer with `window` makes them.
    pub fn scoring(&self, window: Option<usize>) -> Scoring {
        Scoring { scale: self.attn_scale, cap: self.attn_softcap, window }
    }

    /// An embedding row as the model uses it (scaled, for Gemma).
    pub fn scale_embedding(&self, row: &mut [f32]) {
        if let Some(s) = self.embed_scale {
            row.iter_mut().for_each(|v| *v *= s);
        }
    }

    /// Logits soft-capped where the model caps them (Gemma 2).
    pub fn cap_logits(&self, logits: &mut [f32]) {
        if let Some(c) = self.final_softcap {
            logits.par_chunks_mut(4096).for_each(|chunk| chunk.iter_mut().for_each(|l| *l = softcap(*l, c)));
        }
    }
}

/// RoPE's (cos, sin) per token ([`rope_table`]): every layer's, and the sliding layers' own
/// where they have them (Gemma 3).
pub(super) struct Ropes {
    global: Vec<(f32, f32)>,
    local: Option<Vec<(f32, f32)>>,
}

impl Ropes {
    /// The angles of a layer that does (`local`) or does not take the sliding layers' RoPE.
    pub fn of(&self, local: bool) -> &[(f32, f32)] {
        match &self.local {
            Some(l) if local => l,
            _ => &self.global,
        }
    }
}

/// Keys and values per layer and row and kv head ("lane"). Keys are stored in tiles of 16
/// slots, `[capacity / 16][head_dim][16]`: a decode step's scores for 16 slots are then
/// multiply-adds over one contiguous 4 KiB tile, read once from memory. Values are
/// `[capacity, head_dim]`. The first `len` slots are filled; appending writes in place and
/// capacity (a multiple of 16) doubles when it runs out.
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
        let cap = cap_for(self.len + more, 2 * self.cap);
        let (hd, old, used) = (self.head_dim, self.cap, self.used());
        let lanes = self.rows * self.kv_heads;
        for (k, v) in &mut self.layers {
            for buf in [k, v] {
                let mut grown = vec![0f32; lanes * cap * hd];
                copy_lanes(buf, old * hd, &mut grown, cap * hd, used, (0..lanes).map(|l| (l, l)));
                *buf = grown;
            }
        }
        self.cap = cap;
    }

    /// Slots filled so far (the same for every row).
    pub fn slots(&self) -> usize {
        self.len
    }

    /// Floats at the start of each lane that hold its slots (whole tiles; both layouts keep a
    /// lane's first slots at its start, so a lane's slots move as this prefix).
    fn used(&self) -> usize {
        self.len.next_multiple_of(TILE).min(self.cap) * self.head_dim
    }

    /// The rows of every part, in order, as one cache with room for `room` more slots: each
    /// part first drops the leading slots all its rows pad (`start`), then its rows are
    /// right-aligned to the longest part, their slots moved up by `shift` (their padding grows
    /// by as much). Parts are (cache, start, shift).
    pub fn merge(parts: &[(&HostCache, usize, usize)], room: usize) -> Self {
        let first = parts[0].0;
        let (hd, nkv) = (first.head_dim, first.kv_heads);
        assert!(parts.iter().all(|(c, ..)| (c.layers.len(), c.kv_heads, c.head_dim) == (first.layers.len(), nkv, hd)), "merging caches of different models");
        let len = first.len - parts[0].1 + parts[0].2;
        assert!(parts.iter().all(|&(c, start, shift)| c.len - start + shift == len), "parts must end at the same slot");
        let cap = cap_for(len + room, 0);
        let rows: usize = parts.iter().map(|(c, ..)| c.rows).sum();
        let lane = cap * hd;
        let layers = (0..first.layers.len())
            .map(|l| {
                let (mut k, mut v) = (vec![0f32; rows * nkv * lane], vec![0f32; rows * nkv * lane]);
                let mut to = 0;
                for &(c, start, shift) in parts {
                    let (ck, cv) = &c.layers[l];
                    let used = c.len - start;
                    for from in 0..c.rows * nkv {
                        let (src, dst) = (from * c.cap * hd, to * lane);
                        v[dst + shift * hd..dst + (shift + used) * hd].copy_from_slice(&cv[src + start * hd..src + c.len * hd]);
                        for s in start..c.len {
                            let t = s - start + shift;
                            let (ks, kt) = (src + s / TILE * hd * TILE + s % TILE, dst + t / TILE * hd * TILE + t % TILE);
                            for dd in 0..hd {
                                k[kt + dd * TILE] = ck[ks + dd * TILE];
                            }
                        }
                        to += 1;
                    }
                }
                (k, v)
            })
            .collect();
        HostCache { layers, rows, kv_heads: nkv, head_dim: hd, len, cap }
    }

    /// Rows picked (and repeated) by `rows`, with room for `room` more slots.
    pub fn select_rows(&self, rows: &[usize], room: usize) -> Self {
        let (hd, nkv, used) = (self.head_dim, self.kv_heads, self.used());
        let cap = cap_for(self.len + room, self.cap);
        let pick = |buf: &Vec<f32>| {
            let mut out = vec![0f32; rows.len() * nkv * cap * hd];
            let lanes = rows.iter().enumerate().flat_map(|(to, &r)| (0..nkv).map(move |h| (r * nkv + h, to * nkv + h)));
            copy_lanes(buf, self.cap * hd, &mut out, cap * hd, used, lanes);
            out
        };
        HostCache {
            layers: self.layers.iter().map(|(k, v)| (pick(k), pick(v))).collect(),
            rows: rows.len(),
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            len: self.len,
            cap,
        }
    }

    /// Keeps only `rows` (increasing: finished rows leave a batch), moving them down in place.
    /// Nothing is allocated: copying a batch's cache for every finished row cost more than the
    /// decode step itself at 64 rows, most of it the kernel zeroing fresh pages.
    pub fn retain_rows(&mut self, rows: &[usize]) {
        assert!(rows.windows(2).all(|w| w[0] < w[1]) && rows.iter().all(|&r| r < self.rows), "retain_rows: {rows:?} of {} rows", self.rows);
        let (used, lane) = (self.used(), self.cap * self.head_dim);
        for (k, v) in &mut self.layers {
            for buf in [k, v] {
                for (to, &from) in rows.iter().enumerate() {
                    for h in 0..self.kv_heads {
                        let (src, dst) = ((from * self.kv_heads + h) * lane, (to * self.kv_heads + h) * lane);
                        if src != dst && used > 0 {
                            buf.copy_within(src..src + used, dst);
                        }
                    }
                }
                buf.truncate(rows.len() * self.kv_heads * lane);
            }
        }
        self.rows = rows.len();
    }
}

/// Capacity (slots, whole tiles) for `slots` slots, and at least `at_least`.
fn cap_for(slots: usize, at_least: usize) -> usize {
    slots.max(at_least).max(TILE).next_multiple_of(TILE)
}

/// Copies the first `used` floats of lane `from` of `src` (lanes `src_lane` floats apart) to
/// lane `to` of `dst` (lanes `dst_lane` apart), for each (from, to).
fn copy_lanes(src: &[f32], src_lane: usize, dst: &mut [f32], dst_lane: usize, used: usize, lanes: impl Iterator<Item = (usize, usize)>) {
    for (from, to) in lanes {
        dst[to * dst_lane..to * dst_lane + used].copy_from_slice(&src[from * src_lane..from * src_lane + used]);
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
    /// A decode step (one new token per row): each query's attention sums its slots in a loop;
    /// a prefill runs each row and head's attention as two matmuls over the row's own tokens.
    /// Either way a row's numbers do not depend on how many rows share the step.
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
pub(super) fn buffer<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<FlexTensor> {
    let flex = flex_tensor(&t.into_primitive().tensor())?.clone();
    flex.as_slice::<f32>()?;
    Some(flex)
}

impl HostLlama {
    /// The host model of config `c`, with the weights `weight` gives by Hugging Face name
    /// ([out, in] matrices, f32) and the output head from `lm_head.weight` when `has_lm_head`
    /// (else the tied embedding). A matrix whose GGUF rows in `stored` are block-coded (the
    /// 32-value types in any mix, or the K-quants in any mix) is packed as those codes, and
    /// `weight` is never asked for it: the same values in a fraction of the bytes, without an
    /// f32 copy; the rest are packed from their f32 values (see [`PackedMatrix::new`]). Every
    /// shape is checked against the config.
    pub fn build(c: &LlamaConfig, has_lm_head: bool, weight: &mut dyn FnMut(&str) -> Result<HostTensor, String>, stored: Option<&BTreeMap<String, StoredRows>>) -> Result<HostLlama, String> {
        let (d, hd, ff, v) = (c.hidden_size, c.head_dim, c.intermediate_size, c.vocab_size);
        let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let weight = std::cell::RefCell::new(weight);
        let get = |name: &str, shape: &[usize]| -> Result<HostTensor, String> {
            let t = (weight.borrow_mut())(name)?;
            weights::check_shape(name, &t, shape)?;
            Ok(t)
        };
        // The stored rows of these (name, rows) parts, one after the other, as the columns of
        // a [k, Σ rows] matrix, if they are block-coded in a way the packing keeps.
        let blocks = |parts: &[(String, usize)], k: usize| -> Option<PackedMatrix> {
            let stored: Vec<&StoredRows> = parts.iter().map(|(name, rows)| stored?.get(name).filter(|s| s.rows.len() == *rows && s.cols == k)).collect::<Option<_>>()?;
            let groups: Vec<_> = stored.iter().map(|s| (s.ty, s.rows.clone())).collect();
            PackedMatrix::from_stored(k, &groups)
        };
        // The parts' [rows, k] matrices side by side as one packed [k, Σ rows].
        let mat = |parts: &[(String, usize)], k: usize| -> Result<PackedMatrix, String> {
            if let Some(packed) = blocks(parts, k) {
                return Ok(packed);
            }
            let values: Vec<HostTensor> = parts.iter().map(|(name, rows)| get(name, &[*rows, k])).collect::<Result<_, _>>()?;
            let refs: Vec<&HostTensor> = values.iter().collect();
            Ok(PackedMatrix::new(&fuse_transposed(&refs), k, parts.iter().map(|p| p.1).sum()))
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let name = |s: &str| format!("model.layers.{i}.{s}.weight");
            let parts = |list: &[(&str, usize)]| -> Vec<(String, usize)> { list.iter().map(|&(s, rows)| (name(s), rows)).collect() };
            let bqkv = if c.architecture.qkv_bias() {
                let bias = |s: &str, n: usize| get(&format!("model.layers.{i}.{s}.bias"), &[n]).map(|t| t.data);
                Some([bias("self_attn.q_proj", nh * hd)?, bias("self_attn.k_proj", nkv * hd)?, bias("self_attn.v_proj", nkv * hd)?].concat())
            } else {
                None
            };
            let qk_norm = if c.architecture.qk_norm() { Some((get(&name("self_attn.q_norm"), &[hd])?.data, get(&name("self_attn.k_norm"), &[hd])?.data)) } else { None };
            let (post_attn_norm, post_mlp_norm) =
                if c.architecture.sandwich_norms() { (Some(get(&name("post_attention_layernorm"), &[d])?.data), Some(get(&name("post_feedforward_layernorm"), &[d])?.data)) } else { (None, None) };
            layers.push(Layer {
                qk_norm,
                post_attn_norm,
                post_mlp_norm,
                window: c.window(i),
                local_rope: c.local_rope(i),
                attn_norm: get(&name("input_layernorm"), &[d])?.data,
                wqkv: mat(&parts(&[("self_attn.q_proj", nh * hd), ("self_attn.k_proj", nkv * hd), ("self_attn.v_proj", nkv * hd)]), d)?,
                bqkv,
                wo: mat(&parts(&[("self_attn.o_proj", d)]), nh * hd)?,
                mlp_norm: get(&name(c.architecture.mlp_norm_name()), &[d])?.data,
                gate_up: mat(&parts(&[("mlp.gate_proj", ff), ("mlp.up_proj", ff)]), d)?,
                down: mat(&parts(&[("mlp.down_proj", d)]), ff)?,
            });
        }
        let embed_name = "model.embed_tokens.weight";
        let head_name = weights::head_name(c, has_lm_head);
        let embed = mat(&[(embed_name.to_string(), v)], d)?;
        let (head, embed) = if head_name == embed_name { (embed, None) } else { (mat(&[(head_name.to_string(), v)], d)?, Some(embed)) };
        Ok(HostLlama { embed, layers, norm: get("model.norm.weight", &[d])?.data, head, hidden: d, heads: nh, kv_heads: nkv, head_dim: hd, math: Arithmetic::of(c) })
    }

    /// Bytes the packed weight matrices take.
    pub fn packed_bytes(&self) -> usize {
        self.head.bytes() + self.embed.as_ref().map_or(0, PackedMatrix::bytes) + self.layers.iter().map(|l| [&l.wqkv, &l.wo, &l.gate_up, &l.down].iter().map(|m| m.bytes()).sum::<usize>()).sum::<usize>()
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
        let embed = self.embed.as_ref().unwrap_or(&self.head);
        let mut x = vec![0f32; n * d];
        for (row, &id) in x.chunks_exact_mut(d).zip(step.ids) {
            embed.column(id as usize, row);
            self.math.scale_embedding(row);
        }
        let ropes = self.math.ropes(step.positions, inv_freq);
        cache.reserve(s);
        // Buffers every layer overwrites, allocated once per step (fresh multi-megabyte
        // buffers per layer came back from the kernel as zeroed pages: 6% of a prefill).
        let ff = self.layers.first().map_or(0, |l| l.gate_up.n / 2);
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let mut sc = Scratch {
            normed: vec![0f32; n * d],
            qkv: vec![0f32; n * (nh + 2 * nkv) * hd],
            ctx: vec![0f32; n * nh * hd],
            gate_up: vec![0f32; n * 2 * ff],
            act: vec![0f32; n * ff],
            out: if self.layers.iter().any(|l| l.post_attn_norm.is_some()) { vec![0f32; n * d] } else { Vec::new() },
        };
        for (li, layer) in self.layers.iter().enumerate() {
            self.attention_block(layer, &x, &mut sc, step, ropes.of(layer.local_rope), &mut cache.layers[li], cache.len, cache.cap);
            self.join(&sc.ctx, &layer.wo, &layer.post_attn_norm, &mut x, &mut sc.out, &mut sc.normed, n);
            self.mlp_block(layer, &mut x, &mut sc, n);
        }
        cache.len += s;
        let norm = &self.norm;
        let mut out = vec![0f32; keep.len() * d];
        for (o, &t) in out.chunks_exact_mut(d).zip(keep) {
            rms_norm(&x[t * d..(t + 1) * d], norm, self.math.eps, o);
        }
        out
    }

    /// Logits [rows, vocab] for final hidden states [rows, hidden] (soft-capped where the
    /// model does).
    pub fn logits(&self, hidden: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows * self.head.n];
        rows_matmul(hidden, &self.head, &mut out, rows, false);
        self.math.cap_logits(&mut out);
        out
    }

    /// x += input · w, the product RMS-normalised first when the branch has a norm of its own
    /// (`out` and `normed` are scratch of x's size then).
    #[allow(clippy::too_many_arguments)]
    fn join(&self, input: &[f32], w: &PackedMatrix, norm: &Option<Vec<f32>>, x: &mut [f32], out: &mut [f32], normed: &mut [f32], n: usize) {
        let Some(norm) = norm else {
            rows_matmul(input, w, x, n, true);
            return;
        };
        let d = self.hidden;
        rows_matmul(input, w, out, n, false);
        norm_rows(out, norm, self.math.eps, d, normed);
        x.iter_mut().zip(normed.iter()).for_each(|(a, b)| *a += b);
    }

    /// Attention: `sc.ctx` gets the context [tokens, heads · head_dim] of the layer input `x`;
    /// the step's keys and values go into the layer's cache `kv` (`past` slots filled of `cap`).
    #[allow(clippy::too_many_arguments)]
    fn attention_block(&self, l: &Layer, x: &[f32], sc: &mut Scratch, step: &HostStep, rope: &[(f32, f32)], kv: &mut (Vec<f32>, Vec<f32>), past: usize, cap: usize) {
        let (b, s, d) = (step.starts.len() - 1, step.len, self.hidden);
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let n = step.ids.len();
        norm_rows(x, &l.attn_norm, self.math.eps, d, &mut sc.normed);
        // A token's row of qkv: its q heads, k heads, then v heads.
        let qkvw = (nh + 2 * nkv) * hd;
        let (k_at, v_at) = (nh * hd, (nh + nkv) * hd);
        let qkv = &mut sc.qkv;
        rows_matmul(&sc.normed, &l.wqkv, qkv, n, false);
        if let Some(bias) = &l.bqkv {
            for row in qkv.chunks_exact_mut(qkvw) {
                row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
            }
        }
        // RoPE on every q and k head of every token, in place (Qwen3: each head RMS-normalised
        // first).
        let half = hd / 2;
        let eps = self.math.eps;
        let rope_row = |(t, row): (usize, &mut [f32])| {
            let cs = &rope[t * half..(t + 1) * half];
            if let Some((qn, kn)) = &l.qk_norm {
                norm_heads(&mut row[..v_at], qn, kn, nh, eps);
            }
            for head in row[..v_at].chunks_exact_mut(hd) {
                rotate(head, cs);
            }
        };
        if n >= PARALLEL_ROWS {
            qkv.par_chunks_mut(qkvw).enumerate().for_each(rope_row);
        } else {
            qkv.chunks_mut(qkvw).enumerate().for_each(rope_row);
        }
        // New keys (in 16-slot tiles, [capacity / 16][head_dim][16] per row and kv head) and
        // values ([capacity, head_dim]) into the cache at slots past..past + s (each row's last
        // ones).
        let (kc, vc) = kv;
        for r in 0..b {
            let (start, count, first) = step.row(r);
            for i in 0..count {
                let (t, slot) = (start + i, past + first + i);
                for kh in 0..nkv {
                    let lane = (r * nkv + kh) * cap * hd;
                    let key = &qkv[t * qkvw + k_at + kh * hd..t * qkvw + k_at + (kh + 1) * hd];
                    let tile = lane + slot / TILE * hd * TILE + slot % TILE;
                    for (dd, &x) in key.iter().enumerate() {
                        kc[tile + dd * TILE] = x;
                    }
                    let at = lane + slot * hd;
                    vc[at..at + hd].copy_from_slice(&qkv[t * qkvw + v_at + kh * hd..t * qkvw + v_at + (kh + 1) * hd]);
                }
            }
        }
        let (kc, vc) = (&*kc, &*vc);
        assert!(step.decode || past == 0, "a prefill step starts from an empty cache");
        let groups = nh / nkv;
        let scoring = self.math.scoring(l.window);
        let (scale, softcapping, window) = (scoring.scale, scoring.cap, scoring.window);
        // One task per row and run of query heads that share a kv head (all of the kv head's
        // queries when there are enough tasks to keep every core busy, so a decode step reads
        // each cached key and value once for them all): the heads' [tokens, hd] contexts. Each
        // query attends to its visible slots only, so a row's numbers do not depend on its
        // batch mates or their padding: a decode step sums over the slots in order; a prefill
        // runs two matmuls over the row's real tokens alone, whose shapes are the same however
        // the row is padded.
        let unit = if step.decode && b * nkv >= 4 * rayon::current_num_threads() { groups } else { 1 };
        let runs = nh / unit;
        let contexts: Vec<Vec<f32>> = (0..b * runs)
            .into_par_iter()
            .map(|task| {
                let (r, h0) = (task / runs, task % runs * unit);
                let (kh, lane) = (h0 / groups, (r * nkv + h0 / groups) * cap * hd);
                let (keys, values) = (&kc[lane..lane + cap * hd], &vc[lane..lane + cap * hd]);
                let (start, count, first) = step.row(r);
                // Head h0 + j's context is ctx[j][count · hd].
                let mut ctx = vec![0f32; unit * count * hd];
                if count == 0 {
                    return ctx;
                }
                if !step.decode {
                    // The row's keys and values are this step's own (prefill starts from an
                    // empty cache): read them where the projections left them.
                    let (k, v) = (&qkv[start * qkvw + k_at + kh * hd..], &qkv[start * qkvw + v_at + kh * hd..]);
                    for (j, ctx) in ctx.chunks_exact_mut(count * hd).enumerate() {
                        let q = &qkv[start * qkvw + (h0 + j) * hd..];
                        attend_causal(q, k, qkvw, v, qkvw, hd, count, scoring, ctx);
                    }
                    return ctx;
                }
                let lo = step.pad[r].min(past + first);
                let mut scores = vec![0f32; unit * (past + s)];
                let mut out = vec![0f32; unit * hd];
                for i in 0..count {
                    // Slots from the row's padding (or the window's start) up to the query's own.
                    let (hi, t) = (past + first + i, start + i);
                    let lo = window.map_or(lo, |w| lo.max((hi + 1).saturating_sub(w)));
                    let seen = hi + 1 - lo;
                    let q = &qkv[t * qkvw + h0 * hd..t * qkvw + (h0 + unit) * hd];
                    let p = &mut scores[..unit * seen];
                    key_scores(q, hd, keys, lo, scale, p);
                    if let Some(c) = softcapping {
                        p.iter_mut().for_each(|v| *v = softcap(*v, c));
                    }
                    p.chunks_exact_mut(seen).for_each(softmax);
                    out.fill(0.0);
                    weighted_sum(p, hd, &values[lo * hd..(hi + 1) * hd], &mut out);
                    for (j, o) in out.chunks_exact(hd).enumerate() {
                        ctx[(j * count + i) * hd..(j * count + i + 1) * hd].copy_from_slice(o);
                    }
                }
                ctx
            })
            .collect();
        let width = nh * hd;
        let h = &mut sc.ctx;
        for (task, ctx) in contexts.iter().enumerate() {
            let (r, h0) = (task / runs, task % runs * unit);
            let (start, count, _) = step.row(r);
            for (j, ctx) in ctx.chunks_exact(count * hd).enumerate() {
                let head = h0 + j;
                for i in 0..count {
                    let t = start + i;
                    h[t * width + head * hd..t * width + (head + 1) * hd].copy_from_slice(&ctx[i * hd..(i + 1) * hd]);
                }
            }
        }
    }

    /// x += down(act(gate(norm x)) · up(norm x)) (normalised, where the layer has a norm
    /// there), in `sc`'s buffers; act is SiLU, or for Gemma the tanh GELU.
    fn mlp_block(&self, l: &Layer, x: &mut [f32], sc: &mut Scratch, n: usize) {
        let d = self.hidden;
        norm_rows(x, &l.mlp_norm, self.math.eps, d, &mut sc.normed);
        let ff = l.down.k;
        rows_matmul(&sc.normed, &l.gate_up, &mut sc.gate_up, n, false);
        let gelu = self.math.gelu;
        let act = |(a, gu): (&mut [f32], &[f32])| if gelu { gelu_mul(&gu[..ff], &gu[ff..], a) } else { silu_mul(&gu[..ff], &gu[ff..], a) };
        if n >= PARALLEL_ROWS {
            sc.act.par_chunks_mut(ff).zip(sc.gate_up.par_chunks(2 * ff)).for_each(act);
        } else {
            sc.act.chunks_mut(ff).zip(sc.gate_up.chunks(2 * ff)).for_each(act);
        }
        self.join(&sc.act, &l.down, &l.post_mlp_norm, x, &mut sc.out, &mut sc.normed, n);
    }
}

/// Below this many tokens the elementwise passes run on the calling thread: a decode step's
/// few rows cost less than waking the pool (thread hand-offs were ~6% of a decode step).
pub(super) const PARALLEL_ROWS: usize = 64;

/// One step's working buffers, [tokens, width] each; every layer overwrites them.
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    /// Attention's context, the output projection's input.
    ctx: Vec<f32>,
    gate_up: Vec<f32>,
    /// silu(gate) · up, the down projection's input.
    act: Vec<f32>,
    /// A branch's output before its norm (models with norms there; empty otherwise).
    out: Vec<f32>,
}

/// (cos, sin) of position × frequency, each times `scale`, [tokens, head_dim / 2].
pub(super) fn rope_table(positions: &[usize], inv_freq: &[f32], scale: f32) -> Vec<(f32, f32)> {
    let mut t = Vec::with_capacity(positions.len() * inv_freq.len());
    for &p in positions {
        for f in inv_freq {
            let (s, c) = (p as f32 * f).sin_cos();
            t.push((c * scale, s * scale));
        }
    }
    t
}

/// Rotary embedding of one head in Hugging Face's rotate-half convention:
/// x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁].
pub(super) fn rotate(x: &mut [f32], cs: &[(f32, f32)]) {
    let half = cs.len();
    for (j, &(c, s)) in cs.iter().enumerate() {
        let (a, b) = (x[j], x[j + half]);
        x[j] = a * c + -b * s;
        x[j + half] = b * c + a * s;
    }
}

/// RMSNorm of every [width] row of `x` into `out`, in parallel.
pub(super) fn norm_rows(x: &[f32], w: &[f32], eps: f32, width: usize, out: &mut [f32]) {
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

/// Qwen3's head norms of one token's q and k heads (`qk`: `heads` q heads, then k heads, each
/// `qn.len()` wide), in place: each head RMS-normalised and scaled by `qn` (q) or `kn` (k).
pub(super) fn norm_heads(qk: &mut [f32], qn: &[f32], kn: &[f32], heads: usize, eps: f32) {
    let hd = qn.len();
    for (h, head) in qk.chunks_exact_mut(hd).enumerate() {
        let w = if h < heads { qn } else { kn };
        let r = 1.0 / (head.iter().map(|x| x * x).sum::<f32>() / hd as f32 + eps).sqrt();
        head.iter_mut().zip(w).for_each(|(x, g)| *x = *x * r * g);
    }
}

with_avx2!(pub(super) silu_mul, (g: &[f32], u: &[f32], out: &mut [f32]), {
    for ((o, &a), &b) in out.iter_mut().zip(g).zip(u) {
        *o = a / (1.0 + fast_exp(-a)) * b;
    }
});

with_avx2!(pub(super) gelu_mul, (g: &[f32], u: &[f32], out: &mut [f32]), {
    for ((o, &a), &b) in out.iter_mut().zip(g).zip(u) {
        *o = gelu_value(a, true) * b;
    }
});

/// c·tanh(x / c): Gemma 2's soft cap of attention scores and logits.
#[inline]
pub(super) fn softcap(x: f32, c: f32) -> f32 {
    c * (x / c).tanh()
}

/// Slots per tile of the key cache (two AVX registers).
const TILE: usize = 16;

with_avx2!(key_scores, (q: &[f32], hd: usize, keys: &[f32], lo: usize, scale: f32, out: &mut [f32]), {
    // For each head in q ([heads, hd]), out[head, j] = scale · Σ_d q[head, d] · K[lo + j][d]
    // (j < out.len() / heads), K in tiles ([tiles][hd][16]): a multiply and an add per d, in
    // order, 16 slots at a time. Three heads' sums stay in registers while a tile passes once;
    // whole tiles are scored and the slots outside lo.. dropped (a score depends only on its
    // own key).
    let heads = q.len() / hd;
    let n = out.len() / heads;
    let mut h = 0;
    while h < heads {
        let take = (heads - h).min(3);
        let (q, out) = (&q[h * hd..(h + take) * hd], &mut out[h * n..(h + take) * n]);
        for tile in lo / TILE..(lo + n).div_ceil(TILE) {
            let keys = &keys[tile * hd * TILE..(tile + 1) * hd * TILE];
            let mut block = [[0f32; TILE]; 3];
            match take {
                1 => score_tile::<1>(q, hd, keys, (&mut block[..1]).try_into().expect("1")),
                2 => score_tile::<2>(q, hd, keys, (&mut block[..2]).try_into().expect("2")),
                _ => score_tile::<3>(q, hd, keys, &mut block),
            }
            // This tile's slots inside lo..lo + n.
            let (from, to) = ((tile * TILE).max(lo), ((tile + 1) * TILE).min(lo + n));
            for (o, b) in out.chunks_exact_mut(n).zip(&block) {
                for slot in from..to {
                    o[slot - lo] = b[slot - tile * TILE] * scale;
                }
            }
        }
        h += take;
    }
});

/// One tile's 16 raw scores for H heads (q: [H, hd]).
#[inline(always)]
fn score_tile<const H: usize>(q: &[f32], hd: usize, keys: &[f32], acc: &mut [[f32; TILE]; H]) {
    for d in 0..hd {
        let row: &[f32; TILE] = keys[d * TILE..(d + 1) * TILE].try_into().expect("a tile row");
        for (h, acc) in acc.iter_mut().enumerate() {
            let qd = q[h * hd + d];
            for (a, &k) in acc.iter_mut().zip(row) {
                *a += qd * k;
            }
        }
    }
}

/// Slots per block of `weighted_sum` (their 8 KiB of values stay in L1 for every head).
const SLOTS: usize = 32;

/// Value dimensions per register block of `weighted_sum` (eight AVX registers).
const BAND: usize = 64;

with_avx2!(weighted_sum, (p: &[f32], hd: usize, values: &[f32], out: &mut [f32]), {
    // out[head] += Σ_j p[head, j] · V[j] for each head in out ([heads, hd]), slots in order,
    // a multiply and an add each. A head's 64-wide band of sums stays in registers over a
    // block of 32 slots, whose values stay in L1 for the other heads.
    let heads = out.len() / hd;
    let n = p.len() / heads;
    for c in (0..n).step_by(SLOTS) {
        let slots = SLOTS.min(n - c);
        for (h, o) in out.chunks_exact_mut(hd).enumerate() {
            let w = &p[h * n + c..h * n + c + slots];
            let mut e = 0;
            while e + BAND <= hd {
                let acc: &mut [f32; BAND] = (&mut o[e..e + BAND]).try_into().expect("a band");
                let mut sums = *acc;
                for (j, &w) in w.iter().enumerate() {
                    let v: &[f32; BAND] = values[(c + j) * hd + e..(c + j) * hd + e + BAND].try_into().expect("a band");
                    for (s, &x) in sums.iter_mut().zip(v) {
                        *s += w * x;
                    }
                }
                *acc = sums;
                e += BAND;
            }
            if e < hd {
                for (j, &w) in w.iter().enumerate() {
                    let v = &values[(c + j) * hd + e..(c + j + 1) * hd];
                    for (s, &x) in o[e..].iter_mut().zip(v) {
                        *s += w * x;
                    }
                }
            }
        }
    }
});

/// How attention scores are made: scaled, soft-capped (Gemma 2), and which keys a query sees
/// (with a window, only the `window` up to its own).
#[derive(Clone, Copy)]
pub(super) struct Scoring {
    pub scale: f32,
    pub cap: Option<f32>,
    pub window: Option<usize>,
}

/// Prefill attention for one row and query head with two matmuls: the `n` queries see the
/// keys and values of the tokens up to their own (within the window, if any). Queries and
/// keys are rows `qstride` apart (both in the q/k projection buffer), values rows `vstride`
/// apart. S = scale·Q·Kᵀ, each row softmaxed over its visible keys (zero elsewhere), then
/// ctx = P·V.
#[allow(clippy::too_many_arguments)]
fn attend_causal(q: &[f32], k: &[f32], qstride: usize, v: &[f32], vstride: usize, hd: usize, n: usize, scoring: Scoring, ctx: &mut [f32]) {
    let Scoring { scale, cap, window } = scoring;
    let last = (n - 1) * qstride + hd;
    assert!(q.len() >= last && k.len() >= last && v.len() >= (n - 1) * vstride + hd && ctx.len() >= n * hd);
    let mut scores = vec![0f32; n * n];
    // SAFETY: Q is n rows of hd values qstride apart and K the same (inside q and k,
    // asserted), read as Kᵀ (hd × n, column stride qstride); scores is n × n row-major.
    unsafe {
        gemm::gemm(n, n, hd, scores.as_mut_ptr(), 1, n as isize, false, q.as_ptr(), 1, qstride as isize, k.as_ptr(), qstride as isize, 1, 0.0, scale, false, false, false, gemm::Parallelism::None);
    }
    for (i, row) in scores.chunks_exact_mut(n).enumerate() {
        let lo = window.map_or(0, |w| (i + 1).saturating_sub(w));
        row[i + 1..].fill(0.0);
        row[..lo].fill(0.0);
        if let Some(c) = cap {
            row[lo..=i].iter_mut().for_each(|v| *v = softcap(*v, c));
        }
        softmax(&mut row[lo..=i]);
    }
    // SAFETY: P is n × n row-major; V is n rows of hd values vstride apart (asserted); ctx is
    // n × hd.
    unsafe {
        gemm::gemm(n, hd, n, ctx.as_mut_ptr(), 1, hd as isize, false, scores.as_ptr(), 1, n as isize, v.as_ptr(), 1, vstride as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}
