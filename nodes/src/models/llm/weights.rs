//! Llama weights in Hugging Face layout (names and `[out, in]` matrices), read from GGUF
//! (dequantised, with llama.cpp's q/k row permutation undone) or from safetensors, and put into
//! a [`Llama`] module.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::TensorData;

use std::collections::BTreeMap;

use super::config::LlamaConfig;
use super::gguf::Gguf;
use super::llama::{Block, Llama, RmsNorm};
use super::quant::GgmlType;
pub use crate::models::tensors::{from_safetensors, fuse_transposed, safetensors_files, write_safetensors, write_safetensors_as, HostTensor, Weights};
use crate::models::tensors::transpose;

/// Where a Llama weight (by its Hugging Face name) is in a GGUF file.
pub(super) struct GgufName {
    pub gguf: String,
    pub hf: String,
    /// For a Llama's q and k: the heads whose rows llama.cpp's converter permuted.
    pub permute_heads: Option<usize>,
    /// For a weight stored inside a larger matrix (Phi-3's q, k, v in `attn_qkv`, gate and up
    /// in `ffn_up`): that matrix's Hugging Face name, the weight's rows there, and how many
    /// rows the matrix has.
    pub part_of: Option<(String, std::ops::Range<usize>, usize)>,
}

/// Each Llama weight of a GGUF file (with an `output.weight` head of its own when
/// `has_output`), by its Hugging Face name (Llama's: Phi-3's fused matrices are given as their
/// parts), in the order llama.cpp writes them (the tests' writer, `tiny`, writes by this list).
pub(super) fn gguf_names(c: &LlamaConfig, has_output: bool) -> Vec<GgufName> {
    let whole = |gguf: String, hf: String, permute_heads: Option<usize>| GgufName { gguf, hf, permute_heads, part_of: None };
    let mut names = vec![whole("token_embd.weight".into(), "model.embed_tokens.weight".into(), None), whole("output_norm.weight".into(), "model.norm.weight".into(), None)];
    if has_output {
        names.push(whole("output.weight".into(), "lm_head.weight".into(), None));
    }
    // llama.cpp interleaves a Llama's q/k rows; Qwen2's (and its biases) stay as they are.
    let interleaved = |heads: usize| c.architecture.gguf_interleaves_qk().then_some(heads);
    for i in 0..c.num_hidden_layers {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        let b = |s: &str| format!("blk.{i}.{s}.weight");
        names.extend([whole(b("attn_norm"), l("input_layernorm.weight"), None), whole(b("ffn_norm"), l(&format!("{}.weight", c.architecture.mlp_norm_name())), None)]);
        if c.architecture.sandwich_norms() {
            names.extend([whole(b("post_attention_norm"), l("post_attention_layernorm.weight"), None), whole(b("post_ffw_norm"), l("post_feedforward_layernorm.weight"), None)]);
        }
        if c.architecture.fused() {
            for f in fused_matrices(c) {
                for (part, rows) in f.parts {
                    names.push(GgufName { gguf: b(f.gguf), hf: l(part), permute_heads: None, part_of: Some((l(f.hf), rows, f.rows)) });
                }
            }
        } else {
            names.extend([
                whole(b("attn_q"), l("self_attn.q_proj.weight"), interleaved(c.num_attention_heads)),
                whole(b("attn_k"), l("self_attn.k_proj.weight"), interleaved(c.num_key_value_heads)),
                whole(b("attn_v"), l("self_attn.v_proj.weight"), None),
                whole(b("ffn_gate"), l("mlp.gate_proj.weight"), None),
                whole(b("ffn_up"), l("mlp.up_proj.weight"), None),
            ]);
        }
        if c.architecture.qkv_bias() {
            let bias = |s: &str| format!("blk.{i}.{s}.bias");
            names.extend([whole(bias("attn_q"), l("self_attn.q_proj.bias"), None), whole(bias("attn_k"), l("self_attn.k_proj.bias"), None), whole(bias("attn_v"), l("self_attn.v_proj.bias"), None)]);
        }
        if c.architecture.qk_norm() {
            names.extend([whole(b("attn_q_norm"), l("self_attn.q_norm.weight"), None), whole(b("attn_k_norm"), l("self_attn.k_norm.weight"), None)]);
        }
        names.extend([whole(b("attn_output"), l("self_attn.o_proj.weight"), None), whole(b("ffn_down"), l("mlp.down_proj.weight"), None)]);
    }
    names
}

/// One of a layer's matrices that a fused architecture (Phi-3) stores as one: its Hugging Face
/// and GGUF names within the layer, its rows, and its parts (by their Llama names) with their
/// rows in it.
struct Fused {
    hf: &'static str,
    gguf: &'static str,
    rows: usize,
    parts: Vec<(&'static str, std::ops::Range<usize>)>,
}

/// q, k, v in `self_attn.qkv_proj` (GGUF `attn_qkv`); gate and up in `mlp.gate_up_proj`
/// (GGUF `ffn_up`).
fn fused_matrices(c: &LlamaConfig) -> [Fused; 2] {
    let (q, kv, ff) = (c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size);
    [
        Fused {
            hf: "self_attn.qkv_proj.weight",
            gguf: "attn_qkv",
            rows: q + 2 * kv,
            parts: vec![("self_attn.q_proj.weight", 0..q), ("self_attn.k_proj.weight", q..q + kv), ("self_attn.v_proj.weight", q + kv..q + 2 * kv)],
        },
        Fused { hf: "mlp.gate_up_proj.weight", gguf: "ffn_up", rows: 2 * ff, parts: vec![("mlp.gate_proj.weight", 0..ff), ("mlp.up_proj.weight", ff..2 * ff)] },
    ]
}

/// Rows `rows` of matrix `name`, which must have `whole` rows.
fn row_slice(t: &HostTensor, rows: std::ops::Range<usize>, whole: usize, name: &str) -> Result<HostTensor, String> {
    if t.shape.len() != 2 || t.shape[0] != whole {
        return Err(format!("weight `{name}` has shape {:?}; {whole} rows expected from the config", t.shape));
    }
    let cols = t.shape[1];
    Ok(HostTensor { shape: vec![rows.len(), cols], data: t.data[rows.start * cols..rows.end * cols].to_vec() })
}

/// Reads weights by their Llama (Hugging Face) names from a reader of the names the model
/// stores: for a fused architecture, q/k/v and gate/up are cut from their fused matrix (which
/// must have exactly the parts' rows). Each fused matrix is read once and kept until all its
/// parts have been asked for.
pub fn unfused<'a>(c: &LlamaConfig, mut stored: impl FnMut(&str) -> Result<HostTensor, String> + 'a) -> impl FnMut(&str) -> Result<HostTensor, String> + 'a {
    // Part name within a layer -> (its fused matrix, its rows there).
    let fused: Vec<Fused> = if c.architecture.fused() { fused_matrices(c).into() } else { Vec::new() };
    let parts: BTreeMap<&'static str, (usize, std::ops::Range<usize>)> = fused.iter().enumerate().flat_map(|(m, f)| f.parts.iter().map(move |(part, rows)| (*part, (m, rows.clone())))).collect();
    // Fused matrices read, with how many of their parts are still to be asked for.
    let mut open: BTreeMap<String, (HostTensor, usize)> = BTreeMap::new();
    move |name| {
        let Some((layer, (m, rows))) = name.strip_prefix("model.layers.").and_then(|rest| rest.split_once('.')).and_then(|(i, part)| Some((i, parts.get(part)?.clone()))) else {
            return stored(name);
        };
        let f = &fused[m];
        let fused_name = format!("model.layers.{layer}.{}", f.hf);
        if !open.contains_key(&fused_name) {
            let t = stored(&fused_name)?;
            open.insert(fused_name.clone(), (t, f.parts.len()));
        }
        let (t, left) = open.get_mut(&fused_name).expect("just opened");
        let part = row_slice(t, rows, f.rows, &fused_name);
        *left -= 1;
        if *left == 0 || part.is_err() {
            open.remove(&fused_name);
        }
        part
    }
}

/// Where a checkpoint stores the weight dagrun calls `name`: there, or for a language model
/// inside a multimodal checkpoint (Gemma 3 4B and up) under its prefix, as published
/// (`language_model.model.`, `language_model.lm_head.`) or as transformers 5 names it in
/// memory (`model.language_model.`), whichever `stored` has.
pub fn language_model_name(name: &str, stored: impl Fn(&str) -> bool) -> String {
    if stored(name) {
        return name.to_string();
    }
    let candidates = [("model.", "language_model.model."), ("model.", "model.language_model."), ("lm_head.", "language_model.lm_head.")];
    candidates.iter().filter_map(|(ours, theirs)| name.strip_prefix(ours).map(|rest| format!("{theirs}{rest}"))).find(|n| stored(n)).unwrap_or_else(|| name.to_string())
}

/// Reads weights by their Llama names from a reader of a Hugging Face checkpoint's tensors:
/// [`unfused`], and Gemma's norm scales (stored as their difference from 1) made scales.
pub fn from_hf_checkpoint<'a>(c: &LlamaConfig, stored: impl FnMut(&str) -> Result<HostTensor, String> + 'a) -> impl FnMut(&str) -> Result<HostTensor, String> + 'a {
    let mut read = unfused(c, stored);
    let offset = c.architecture.norm_offset();
    move |name| {
        let mut t = read(name)?;
        if offset != 0.0 && name.ends_with("norm.weight") {
            t.data.iter_mut().for_each(|x| *x += offset);
        }
        Ok(t)
    }
}

/// Weights by Llama names as a Hugging Face checkpoint stores them (the inverse of
/// [`from_hf_checkpoint`]): [`fused`], and Gemma's norm scales less 1.
pub fn to_hf_checkpoint(c: &LlamaConfig, mut w: Weights) -> Weights {
    let offset = c.architecture.norm_offset();
    if offset != 0.0 {
        for (name, t) in w.iter_mut() {
            if name.ends_with("norm.weight") {
                t.data.iter_mut().for_each(|x| *x -= offset);
            }
        }
    }
    fused(c, w)
}

/// Weights by Llama names put the way the architecture stores them (Phi-3: q/k/v and gate/up
/// fused again), for an export other tools load.
pub fn fused(c: &LlamaConfig, mut w: Weights) -> Weights {
    if !c.architecture.fused() {
        return w;
    }
    for i in 0..c.num_hidden_layers {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        for f in fused_matrices(c) {
            let taken: Vec<HostTensor> = f.parts.iter().filter_map(|(p, _)| w.remove(&l(p))).collect();
            let rows = taken.iter().map(|t| t.shape[0]).sum();
            let cols = taken.first().map_or(0, |t| t.shape[1]);
            w.insert(l(f.hf), HostTensor { shape: vec![rows, cols], data: taken.into_iter().flat_map(|t| t.data).collect() });
        }
    }
    w
}

/// Reads every Llama weight of a GGUF file under its Hugging Face name.
pub fn from_gguf(g: &Gguf, c: &LlamaConfig) -> Result<Weights, String> {
    let mut read = gguf_reader(g, c);
    gguf_names(c, g.tensor("output.weight").is_some()).into_iter().map(|n| Ok((n.hf.clone(), read(&n.hf)?))).collect()
}

/// Reads one Llama weight of a GGUF file by its Hugging Face name, dequantised when asked for
/// (the CPU's host model asks only for what it cannot pack as stored). Phi-3's parts are cut
/// from their fused matrix by [`unfused`], which dequantises it once for all its parts.
pub fn gguf_reader<'a>(g: &'a Gguf, c: &LlamaConfig) -> impl FnMut(&str) -> Result<HostTensor, String> + 'a {
    let mut names: BTreeMap<String, GgufName> = BTreeMap::new();
    for n in gguf_names(c, g.tensor("output.weight").is_some()) {
        match n.part_of {
            // A part: its whole fused matrix, under the fused Hugging Face name.
            Some((fused, _, _)) => {
                names.insert(fused.clone(), GgufName { gguf: n.gguf, hf: fused, permute_heads: None, part_of: None });
            }
            None => {
                names.insert(n.hf.clone(), n);
            }
        }
    }
    unfused(c, move |name| gguf_tensor(g, names.get(name).ok_or_else(|| format!("weight `{name}` is missing"))?))
}

/// A whole GGUF tensor dequantised, with llama.cpp's q/k row permutation undone.
fn gguf_tensor(g: &Gguf, n: &GgufName) -> Result<HostTensor, String> {
    let (shape, mut data) = g.dequantize(&n.gguf).map_err(|e| e.message)?;
    if let Some(heads) = n.permute_heads {
        data = unpermute_rows(&data, &shape, heads)?;
    }
    Ok(HostTensor { shape, data })
}

/// Takes each weight out of `w` as it is asked for (each is asked for once), so its memory
/// goes as soon as it is packed.
pub fn taken_from(mut w: Weights) -> impl FnMut(&str) -> Result<HostTensor, String> {
    move |name| w.remove(name).ok_or_else(|| format!("weight `{name}` is missing"))
}

/// Whether weight `name` has the `shape` the config implies.
pub fn check_shape(name: &str, t: &HostTensor, shape: &[usize]) -> Result<(), String> {
    if t.shape != shape {
        return Err(format!("weight `{name}` has shape {:?}; {:?} expected from the config", t.shape, shape));
    }
    Ok(())
}

/// A GGUF matrix as stored: its type, row length and each row's bytes, rows in Hugging Face
/// order (q/k permutation undone). The CPU's host path packs these codes instead of the f32
/// values when it can (`PackedMatrix::from_stored`).
pub struct StoredRows<'a> {
    pub ty: GgmlType,
    pub cols: usize,
    pub rows: Vec<&'a [u8]>,
}

/// Every matrix of a GGUF file as [`StoredRows`], by Hugging Face name.
pub fn stored_rows<'a>(g: &'a Gguf, c: &LlamaConfig) -> BTreeMap<String, StoredRows<'a>> {
    let mut out = BTreeMap::new();
    for n in gguf_names(c, g.tensor("output.weight").is_some()) {
        let Some(t) = g.tensor(&n.gguf) else { continue };
        let shape = t.shape();
        let Some(row_bytes) = t.ty.bytes_for(shape.last().copied().unwrap_or(0) as u64) else { continue };
        if shape.len() != 2 || n.permute_heads.is_some_and(|h| h == 0 || shape[0] % (2 * h) != 0) || n.part_of.as_ref().is_some_and(|(_, _, whole)| *whole != shape[0]) {
            continue;
        }
        let raw = g.raw(t);
        let row = |r: usize| &raw[r * row_bytes as usize..(r + 1) * row_bytes as usize];
        let rows = match (n.permute_heads, n.part_of) {
            (Some(heads), _) => row_sources(shape[0], heads, false).into_iter().map(row).collect(),
            (None, Some((_, part, _))) => part.map(row).collect(),
            (None, None) => (0..shape[0]).map(row).collect(),
        };
        out.insert(n.hf, StoredRows { ty: t.ty, cols: shape[1], rows });
    }
    out
}

/// The output head's Hugging Face weight: `lm_head.weight` when the model has one of its own,
/// else the embedding (tied).
pub fn head_name(c: &LlamaConfig, has_lm_head: bool) -> &'static str {
    if has_lm_head && !c.tie_word_embeddings {
        "lm_head.weight"
    } else {
        "model.embed_tokens.weight"
    }
}

/// llama.cpp's converter reorders the rows of each q/k head from rotate-half order
/// (j·half + i) to interleaved order (2i + j); this puts them back.
fn unpermute_rows(data: &[f32], shape: &[usize], heads: usize) -> Result<Vec<f32>, String> {
    let rows = shape[0];
    if heads == 0 || rows % (2 * heads) != 0 {
        return Err(format!("a q/k weight of {rows} rows does not split into {heads} heads"));
    }
    Ok(move_rows(data, shape, heads, false))
}

/// The inverse of [`unpermute_rows`]: what llama.cpp's converter writes (the tests use it to
/// make GGUF files).
pub fn permute_rows(data: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    move_rows(data, shape, heads, true)
}

/// Moves each head's rows between rotate-half order (j·half + i) and interleaved order
/// (2i + j): towards interleaved when `interleave`, back otherwise.
fn move_rows(data: &[f32], shape: &[usize], heads: usize, interleave: bool) -> Vec<f32> {
    let cols = shape.iter().skip(1).product::<usize>();
    let mut out = vec![0f32; data.len()];
    for (dst, src) in row_sources(shape[0], heads, interleave).into_iter().enumerate() {
        out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
    }
    out
}

/// For each row of the moved matrix, the row it comes from (see [`move_rows`]).
fn row_sources(rows: usize, heads: usize, interleave: bool) -> Vec<usize> {
    let hd = rows / heads;
    let half = hd / 2;
    let mut sources = vec![0; rows];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let (halves, interleaved) = (h * hd + j * half + i, h * hd + 2 * i + j);
                let (src, dst) = if interleave { (halves, interleaved) } else { (interleaved, halves) };
                sources[dst] = src;
            }
        }
    }
    sources
}

/// Builds the module from weights in Hugging Face layout, checking every name and shape.
pub fn build<B: Backend>(c: &LlamaConfig, w: &Weights, device: &B::Device) -> Result<Llama<B>, String> {
    build_from(c, w.contains_key("lm_head.weight"), &mut |name| w.get(name).cloned().ok_or_else(|| format!("weight `{name}` is missing")), device)
}

/// [`build`] with the weights `weight` gives by name, each asked for once, so a loader that
/// reads them one at a time (a GGUF, mapped safetensors) holds one f32 weight at a time beside
/// the module rather than all of them; `has_lm_head` as in [`head_name`].
pub fn build_from<B: Backend>(c: &LlamaConfig, has_lm_head: bool, weight: &mut dyn FnMut(&str) -> Result<HostTensor, String>, device: &B::Device) -> Result<Llama<B>, String> {
    let weight = std::cell::RefCell::new(weight);
    let get = |name: &str, shape: &[usize]| -> Result<HostTensor, String> {
        let t = (weight.borrow_mut())(name)?;
        check_shape(name, &t, shape)?;
        Ok(t)
    };
    let (d, hd, ff, v) = (c.hidden_size, c.head_dim, c.intermediate_size, c.vocab_size);
    let (nh, nkv) = (c.num_attention_heads, c.num_key_value_heads);
    let t2 = |data: Vec<f32>, shape: [usize; 2]| Param::from_tensor(Tensor::<B, 2>::from_data(TensorData::new(data, shape), device));
    let t1 = |t: HostTensor| Param::from_tensor(Tensor::<B, 1>::from_data(TensorData::new(t.data, [t.shape[0]]), device));
    let norm = |t: HostTensor| RmsNorm { weight: t1(t), eps: c.rms_norm_eps };
    let embed = get("model.embed_tokens.weight", &[v, d])?;
    let head = match head_name(c, has_lm_head) {
        "model.embed_tokens.weight" => transpose(&embed),
        name => transpose(&get(name, &[v, d])?),
    };
    let mut blocks = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        let q = get(&l("self_attn.q_proj.weight"), &[nh * hd, d])?;
        let k = get(&l("self_attn.k_proj.weight"), &[nkv * hd, d])?;
        let vv = get(&l("self_attn.v_proj.weight"), &[nkv * hd, d])?;
        let gate = get(&l("mlp.gate_proj.weight"), &[ff, d])?;
        let up = get(&l("mlp.up_proj.weight"), &[ff, d])?;
        let (bqk, bv) = if c.architecture.qkv_bias() {
            let (bq, bk) = (get(&l("self_attn.q_proj.bias"), &[nh * hd])?, get(&l("self_attn.k_proj.bias"), &[nkv * hd])?);
            let bqk = HostTensor { shape: vec![(nh + nkv) * hd], data: [bq.data, bk.data].concat() };
            (Some(t1(bqk)), Some(t1(get(&l("self_attn.v_proj.bias"), &[nkv * hd])?)))
        } else {
            (None, None)
        };
        let (q_norm, k_norm) = if c.architecture.qk_norm() { (Some(norm(get(&l("self_attn.q_norm.weight"), &[hd])?)), Some(norm(get(&l("self_attn.k_norm.weight"), &[hd])?))) } else { (None, None) };
        let (post_attn_norm, post_mlp_norm) = if c.architecture.sandwich_norms() {
            (Some(norm(get(&l("post_attention_layernorm.weight"), &[d])?)), Some(norm(get(&l("post_feedforward_layernorm.weight"), &[d])?)))
        } else {
            (None, None)
        };
        blocks.push(Block {
            post_attn_norm,
            post_mlp_norm,
            q_norm,
            k_norm,
            attn_norm: norm(get(&l("input_layernorm.weight"), &[d])?),
            wqk: t2(fuse_transposed(&[&q, &k]), [d, (nh + nkv) * hd]),
            bqk,
            wv: t2(transpose(&vv), [d, nkv * hd]),
            bv,
            wo: t2(transpose(&get(&l("self_attn.o_proj.weight"), &[d, nh * hd])?), [nh * hd, d]),
            mlp_norm: norm(get(&l(&format!("{}.weight", c.architecture.mlp_norm_name())), &[d])?),
            w_gate: t2(transpose(&gate), [d, ff]),
            w_up: t2(transpose(&up), [d, ff]),
            w_down: t2(transpose(&get(&l("mlp.down_proj.weight"), &[d, ff])?), [ff, d]),
        });
    }
    let model = Llama::new(c, t2(embed.data, [v, d]), blocks, norm(get("model.norm.weight", &[d])?), t2(head, [d, v]), device);
    Ok(model)
}

/// The module's weights back in Hugging Face layout (the inverse of [`build`]), for export.
pub fn to_hf<B: Backend>(m: &Llama<B>, c: &LlamaConfig) -> Weights {
    fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
        let shape = t.dims().to_vec();
        (shape, t.into_data().convert::<f32>().to_vec().expect("f32 data"))
    }
    // Columns [c0, c1) of an [rows, cols] matrix, transposed to [c1 - c0, rows].
    fn cols_t(shape: &[usize], data: &[f32], c0: usize, c1: usize) -> HostTensor {
        let (rows, cols) = (shape[0], shape[1]);
        let mut out = vec![0f32; (c1 - c0) * rows];
        for r in 0..rows {
            for c in c0..c1 {
                out[(c - c0) * rows + r] = data[r * cols + c];
            }
        }
        HostTensor { shape: vec![c1 - c0, rows], data: out }
    }
    let one = |t: Tensor<B, 1>| {
        let (shape, data) = host(t);
        HostTensor { shape, data }
    };
    let t2 = |t: Tensor<B, 2>| {
        let (shape, data) = host(t);
        cols_t(&shape, &data, 0, shape[1])
    };
    let mut w = Weights::new();
    let (shape, data) = host(m.embed.val());
    w.insert("model.embed_tokens.weight".into(), HostTensor { shape, data });
    w.insert("model.norm.weight".into(), one(m.norm.weight.val()));
    if !c.tie_word_embeddings {
        w.insert("lm_head.weight".into(), t2(m.head.val()));
    }
    let q_width = c.num_attention_heads * c.head_dim;
    for (i, b) in m.blocks.iter().enumerate() {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        let (shape, data) = host(b.wqk.val());
        w.insert(l("self_attn.q_proj.weight"), cols_t(&shape, &data, 0, q_width));
        w.insert(l("self_attn.k_proj.weight"), cols_t(&shape, &data, q_width, shape[1]));
        w.insert(l("self_attn.v_proj.weight"), t2(b.wv.val()));
        if let (Some(bqk), Some(bv)) = (&b.bqk, &b.bv) {
            let bqk = one(bqk.val());
            w.insert(l("self_attn.q_proj.bias"), HostTensor { shape: vec![q_width], data: bqk.data[..q_width].to_vec() });
            w.insert(l("self_attn.k_proj.bias"), HostTensor { shape: vec![bqk.data.len() - q_width], data: bqk.data[q_width..].to_vec() });
            w.insert(l("self_attn.v_proj.bias"), one(bv.val()));
        }
        w.insert(l("self_attn.o_proj.weight"), t2(b.wo.val()));
        w.insert(l("mlp.gate_proj.weight"), t2(b.w_gate.val()));
        w.insert(l("mlp.up_proj.weight"), t2(b.w_up.val()));
        w.insert(l("mlp.down_proj.weight"), t2(b.w_down.val()));
        w.insert(l("input_layernorm.weight"), one(b.attn_norm.weight.val()));
        for (name, n) in [("self_attn.q_norm.weight", &b.q_norm), ("self_attn.k_norm.weight", &b.k_norm)] {
            if let Some(n) = n {
                w.insert(l(name), one(n.weight.val()));
            }
        }
        w.insert(l(&format!("{}.weight", c.architecture.mlp_norm_name())), one(b.mlp_norm.weight.val()));
        for (name, n) in [("post_attention_layernorm.weight", &b.post_attn_norm), ("post_feedforward_layernorm.weight", &b.post_mlp_norm)] {
            if let Some(n) = n {
                w.insert(l(name), one(n.weight.val()));
            }
        }
    }
    w
}
