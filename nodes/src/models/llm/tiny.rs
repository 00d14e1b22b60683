//! Tiny random-weight Llama models with a byte-level tokenizer and a ChatML template, written as
//! GGUF or as a Hugging Face directory, for tests and benchmarks that must not download.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{Architecture, LlamaConfig};
use super::gguf::{GgufWriter, Value};
use super::quant::{self, GgmlType};
use super::weights::{self, HostTensor, Weights};

pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// 256 byte tokens, then `<|im_start|>` (256) and `<|im_end|>` (257, the EOS).
pub fn config(layers: usize, hidden: usize) -> LlamaConfig {
    LlamaConfig {
        architecture: Default::default(),
        vocab_size: 258,
        hidden_size: hidden,
        intermediate_size: hidden * 3 / 2,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: hidden / 4,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 4096,
        tie_word_embeddings: true,
        rope_scaling: None,
        sliding_window: None,
        layer_types: None,
        local_rope_theta: None,
        query_pre_attn_scalar: None,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
    }
}

/// Random weights in Hugging Face layout.
pub fn random_weights(c: &LlamaConfig, seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = Weights::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let data = (0..n).map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0)).collect();
        w.insert(name, HostTensor { shape, data });
    };
    let (d, hd, ff, v) = (c.hidden_size, c.head_dim, c.intermediate_size, c.vocab_size);
    add("model.embed_tokens.weight".into(), vec![v, d], 1.0, 0.0);
    add("model.norm.weight".into(), vec![d], 0.2, 1.0);
    if !c.tie_word_embeddings {
        add("lm_head.weight".into(), vec![v, d], 0.3, 0.0);
    }
    for i in 0..c.num_hidden_layers {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        add(l("input_layernorm.weight"), vec![d], 0.2, 1.0);
        add(l("post_attention_layernorm.weight"), vec![d], 0.2, 1.0);
        if c.architecture.sandwich_norms() {
            add(l("pre_feedforward_layernorm.weight"), vec![d], 0.2, 1.0);
            add(l("post_feedforward_layernorm.weight"), vec![d], 0.2, 1.0);
        }
        add(l("self_attn.q_proj.weight"), vec![c.num_attention_heads * hd, d], 0.4, 0.0);
        add(l("self_attn.k_proj.weight"), vec![c.num_key_value_heads * hd, d], 0.4, 0.0);
        add(l("self_attn.v_proj.weight"), vec![c.num_key_value_heads * hd, d], 0.4, 0.0);
        if c.architecture.qkv_bias() {
            add(l("self_attn.q_proj.bias"), vec![c.num_attention_heads * hd], 0.5, 0.0);
            add(l("self_attn.k_proj.bias"), vec![c.num_key_value_heads * hd], 0.5, 0.0);
            add(l("self_attn.v_proj.bias"), vec![c.num_key_value_heads * hd], 0.5, 0.0);
        }
        if c.architecture.qk_norm() {
            add(l("self_attn.q_norm.weight"), vec![hd], 0.4, 1.0);
            add(l("self_attn.k_norm.weight"), vec![hd], 0.4, 1.0);
        }
        add(l("self_attn.o_proj.weight"), vec![d, c.num_attention_heads * hd], 0.3, 0.0);
        add(l("mlp.gate_proj.weight"), vec![ff, d], 0.3, 0.0);
        add(l("mlp.up_proj.weight"), vec![ff, d], 0.3, 0.0);
        add(l("mlp.down_proj.weight"), vec![d, ff], 0.3, 0.0);
    }
    w
}

fn byte_tokens() -> Vec<String> {
    // GPT-2's byte alphabet, in byte order.
    let printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            if printable.contains(&b) {
                char::from_u32(b).expect("char").to_string()
            } else {
                let c = char::from_u32(next).expect("char");
                next += 1;
                c.to_string()
            }
        })
        .collect()
}

/// Writes a GGUF the way llama.cpp's converter does (a Llama's q/k rows permuted), with the byte-level
/// vocabulary, the ChatML template and matrices stored as `ty`: F32, F16, or quantised from
/// `w` (Q8_0, Q4_0, Q4_1). For the types without a quantiser here (Q5_0, Q5_1, the K-quants)
/// the matrices are random blocks instead ([`quant::random_blocks`]) and `w` gives only the
/// norms: read the values back from the file.
pub fn write_gguf(c: &LlamaConfig, w: &Weights, path: &Path, ty: GgmlType) -> std::io::Result<()> {
    write_gguf_typed(c, w, path, |_| ty)
}

/// [`write_gguf`] with each matrix's type given by its GGUF name (as llama.cpp's `Q4_K_M`
/// stores attn_v and ffn_down as Q6_K and the rest as Q4_K).
pub fn write_gguf_typed(c: &LlamaConfig, w: &Weights, path: &Path, type_of: impl Fn(&str) -> GgmlType) -> std::io::Result<()> {
    let mut tokens: Vec<Value> = byte_tokens().into_iter().map(Value::Str).collect();
    tokens.push(Value::Str("<|im_start|>".into()));
    tokens.push(Value::Str("<|im_end|>".into()));
    let mut types = vec![Value::I32(1); 256];
    types.extend([Value::I32(3), Value::I32(3)]);
    let vocab = [
        ("tokenizer.ggml.model", Value::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Value::Str("smollm".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(vec![])),
        ("tokenizer.ggml.bos_token_id", Value::U32(256)),
        ("tokenizer.ggml.eos_token_id", Value::U32(257)),
        ("tokenizer.chat_template", Value::Str(CHATML.into())),
    ];
    write_with_vocab(c, w, path, type_of, vocab.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A model in F32 with the vocabulary of another GGUF (its `tokenizer.*` metadata, e.g. one of
/// llama.cpp's vocabulary-only files); `c.vocab_size` must be its token count.
pub fn write_gguf_with_vocab(c: &LlamaConfig, w: &Weights, path: &Path, vocab: &super::gguf::Gguf) -> std::io::Result<()> {
    let meta = vocab.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    write_with_vocab(c, w, path, |_| GgmlType::F32, meta)
}

fn write_with_vocab(c: &LlamaConfig, w: &Weights, path: &Path, type_of: impl Fn(&str) -> GgmlType, vocab: Vec<(String, Value)>) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(c.hidden_size as u64);
    let mut g = GgufWriter::new();
    let arch = c.architecture.gguf_name();
    let key = |k: &str| format!("{arch}.{k}");
    g.meta("general.architecture", Value::Str(arch.into()))
        .meta("general.name", Value::Str(format!("tiny test {arch}")))
        .meta(&key("block_count"), Value::U32(c.num_hidden_layers as u32))
        .meta(&key("embedding_length"), Value::U32(c.hidden_size as u32))
        .meta(&key("feed_forward_length"), Value::U32(c.intermediate_size as u32))
        .meta(&key("attention.head_count"), Value::U32(c.num_attention_heads as u32))
        .meta(&key("attention.head_count_kv"), Value::U32(c.num_key_value_heads as u32))
        .meta(&key("rope.freq_base"), Value::F32(c.rope_theta as f32))
        .meta(&key("attention.layer_norm_rms_epsilon"), Value::F32(c.rms_norm_eps as f32))
        .meta(&key("context_length"), Value::U32(c.max_position_embeddings as u32));
    if let Some(window) = c.sliding_window {
        g.meta(&key("attention.sliding_window"), Value::U32(window as u32));
    }
    if let Some(super::config::RopeScaling::Linear { factor }) = c.rope_scaling {
        g.meta(&key("rope.scaling.type"), Value::Str("linear".into())).meta(&key("rope.scaling.factor"), Value::F32(factor as f32));
    }
    if c.head_dim != c.hidden_size / c.num_attention_heads {
        g.meta(&key("attention.key_length"), Value::U32(c.head_dim as u32)).meta(&key("attention.value_length"), Value::U32(c.head_dim as u32));
    }
    for (k, v) in [("attn_logit_softcapping", c.attn_logit_softcapping), ("final_logit_softcapping", c.final_logit_softcapping)] {
        if let Some(v) = v {
            g.meta(&key(k), Value::F32(v as f32));
        }
    }
    for (k, v) in vocab {
        g.meta(&k, v);
    }
    // Phi-3 stores q/k/v and gate/up fused, as its Hugging Face checkpoints do.
    let w = &weights::fused(c, w.clone());
    let mut put = |gguf: &str, hf: &str, heads: Option<usize>| {
        let (t, ty) = (&w[hf], type_of(gguf));
        if t.shape.len() > 1 {
            if let Ok(bytes) = quant::random_blocks(ty, t.data.len(), &mut rng) {
                g.encoded(gguf, &t.shape, ty, bytes);
                return;
            }
        }
        let data = match heads {
            Some(h) => weights::permute_rows(&t.data, &t.shape, h),
            None => t.data.clone(),
        };
        g.tensor(gguf, &t.shape, &data, if t.shape.len() == 1 { GgmlType::F32 } else { ty });
    };
    // Every weight where llama.cpp puts it: a fused matrix (Phi-3) once, for its first part.
    for n in weights::gguf_names(c, !c.tie_word_embeddings) {
        match n.part_of {
            Some((fused, rows, _)) if rows.start == 0 => put(&n.gguf, &fused, None),
            Some(_) => {}
            None => put(&n.gguf, &n.hf, n.permute_heads),
        }
    }
    g.write(path)
}

/// A tiny model as a GGUF file (2 layers, width 32).
pub fn write_tiny_gguf(path: &Path, seed: u64) -> std::io::Result<()> {
    write_tiny_gguf_of(Architecture::Llama, path, seed)
}

/// [`write_tiny_gguf`] for a model of `architecture` (Qwen2: with q/k/v biases; Phi-3: with
/// fused matrices, and no window; Qwen3: with q/k head norms; Gemma 2 and 3: an 8-token
/// window).
pub fn write_tiny_gguf_of(architecture: Architecture, path: &Path, seed: u64) -> std::io::Result<()> {
    // Gemma 2 and 3 GGUFs name their window (layer 0 attends within it, and for Gemma 2 layer
    // 1 fully).
    let sliding_window = matches!(architecture, Architecture::Gemma2 | Architecture::Gemma3).then_some(8);
    let c = LlamaConfig { architecture, sliding_window, ..config(2, 32) };
    write_gguf(&c, &random_weights(&c, seed), path, GgmlType::F32)
}
