//! The Llama architecture's hyperparameters, read from GGUF metadata or a Hugging Face
//! `config.json`; Qwen2 is the same architecture with q/k/v biases, Mistral the same with an
//! optional sliding attention window, Phi-3 the same with q/k/v and gate/up each stored as one
//! matrix, Qwen3 the same with an RMSNorm on every q and k head, and the Gemmas the same with
//! GeGLU, a scaled embedding and (Gemma 2 and 3) output norms, windows in some layers and
//! soft caps (Gemma 2) or head norms and a local RoPE (Gemma 3).

use serde::{Deserialize, Serialize};

use super::gguf::Gguf;

/// Llama-3.1 RoPE frequency scaling (Hugging Face `rope_scaling` with `rope_type: llama3`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// How RoPE frequencies are adjusted for long contexts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Llama-3.1's piecewise scaling.
    Llama3(Llama3Scaling),
    /// Per-frequency divisors given as a tensor (GGUF `rope_freqs.weight`).
    Factors { factors: Vec<f32> },
    /// Positions divided by a constant factor.
    Linear { factor: f64 },
    /// LongRoPE (Phi-3 128k, Phi-3.5): frequencies divided by `short_factor` for sequences up
    /// to `original_max_position_embeddings`, by `long_factor` beyond (which dagrun does not
    /// compute: see [`LlamaConfig::span`]), and cos/sin scaled by an attention factor.
    LongRope(LongRope),
}

/// LongRoPE's parameters, as config.json gives them (`factor` and `attention_factor` only when
/// it does; see [`LongRope::attention_factor`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LongRope {
    pub short_factor: Vec<f32>,
    pub long_factor: Vec<f32>,
    pub original_max_position_embeddings: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
}

impl LongRope {
    /// What cos and sin are multiplied by: `attention_factor`, else √(1 + ln f / ln original)
    /// with f = `factor` or the context's growth (max / original), 1 when f ≤ 1 (transformers'
    /// rule).
    pub fn attention_factor(&self, max_position_embeddings: usize) -> f64 {
        if let Some(a) = self.attention_factor {
            return a;
        }
        let original = self.original_max_position_embeddings as f64;
        let f = self.factor.unwrap_or(max_position_embeddings as f64 / original);
        if f <= 1.0 {
            1.0
        } else {
            (1.0 + f.ln() / original.ln()).sqrt()
        }
    }
}

/// The `model_type` of Gemma 3 with its vision tower (4B and up as published), whose
/// `text_config` describes the language model dagrun runs.
const GEMMA3_MULTIMODAL: &str = "gemma3";

/// A multimodal Gemma 3 config's language model as a `gemma3_text` config, with
/// `Gemma3TextConfig`'s defaults for what the published files leave out (Gemma 3 4B's
/// `text_config` gives only its width, depth, window and RoPE scaling).
fn gemma3_language_model(raw: &serde_json::Value) -> Result<serde_json::Value, String> {
    let mut text = raw.get("text_config").filter(|t| t.is_object()).cloned().ok_or("model_type `gemma3` (Gemma 3 with its vision tower) has no text_config describing its language model")?;
    let o = text.as_object_mut().expect("an object");
    for (key, value) in [
        ("vocab_size", serde_json::json!(262_208)),
        ("hidden_size", 2304.into()),
        ("intermediate_size", 9216.into()),
        ("num_hidden_layers", 26.into()),
        ("num_attention_heads", 8.into()),
        ("num_key_value_heads", 4.into()),
        ("head_dim", 256.into()),
        ("max_position_embeddings", 131_072.into()),
    ] {
        o.entry(key).or_insert(value);
    }
    if let Some(tie) = raw.get("tie_word_embeddings") {
        o.entry("tie_word_embeddings").or_insert(tie.clone());
    }
    o.insert("model_type".into(), "gemma3_text".into());
    Ok(text)
}

/// 1 / base^(2i / dim) for each of RoPE's dim / 2 frequencies, in f32 as transformers computes
/// them.
fn base_inv_freq(base: f64, dim: usize) -> Vec<f32> {
    let base = base as f32;
    (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32)).collect()
}

/// Which member of the Llama family a model is: the decoder is the same, the weights differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Llama (and SmolLM2, TinyLlama, ...): no biases; llama.cpp's GGUF converter interleaves
    /// the q/k rows of each head.
    #[default]
    Llama,
    /// Qwen2 (Qwen2, Qwen2.5): biases on the q, k and v projections; GGUF keeps Hugging Face's
    /// row order.
    Qwen2,
    /// Mistral as Hugging Face stores it (`model_type: mistral`): Llama's decoder, with a
    /// sliding attention window in v0.1 (see [`LlamaConfig::sliding_window`]). llama.cpp
    /// writes Mistral GGUFs as `llama`.
    Mistral,
    /// Phi-3 (`phi3`: Phi-3 and Phi-3.5 mini): Llama's decoder with q, k and v stored as one
    /// matrix (`qkv_proj`, GGUF `attn_qkv`) and gate and up as another (`gate_up_proj`, GGUF
    /// `ffn_up`); GGUF keeps Hugging Face's row order. Phi-3 mini-4k has a sliding window.
    Phi3,
    /// Qwen3 (dense): Llama's decoder with an RMSNorm over each q and k head before RoPE
    /// (`q_norm`, `k_norm`); GGUF keeps Hugging Face's row order.
    Qwen3,
    /// Gemma: Llama's decoder with GeGLU (tanh-approximated GELU) for SwiGLU, the embedding
    /// scaled by √hidden, and RMSNorm scales stored as their difference from 1 (llama.cpp's
    /// GGUF stores the scales themselves); GGUF keeps Hugging Face's row order.
    Gemma,
    /// Gemma 2: Gemma with an RMSNorm also on the attention's and the MLP's outputs, scores
    /// scaled by `query_pre_attn_scalar`, attention scores and final logits soft-capped, and
    /// every other layer attending within a sliding window.
    Gemma2,
    /// Gemma 3's language model (`gemma3_text`; GGUF `gemma3`): Gemma 2 without the
    /// soft-capping, with q/k head norms (as Qwen3), five sliding layers to one global one,
    /// and the sliding layers' RoPE on a base of their own.
    Gemma3,
}

impl Architecture {
    /// The name GGUF (`general.architecture`) and config.json (`model_type`) use.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Mistral => "mistral",
            Architecture::Phi3 => "phi3",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma => "gemma",
            Architecture::Gemma2 => "gemma2",
            Architecture::Gemma3 => "gemma3_text",
        }
    }

    /// The name a GGUF's `general.architecture` gives.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Gemma3 => "gemma3",
            a => a.name(),
        }
    }

    /// The name as people write it.
    pub fn title(self) -> &'static str {
        match self {
            Architecture::Llama => "Llama",
            Architecture::Qwen2 => "Qwen2",
            Architecture::Mistral => "Mistral",
            Architecture::Phi3 => "Phi-3",
            Architecture::Qwen3 => "Qwen3",
            Architecture::Gemma => "Gemma",
            Architecture::Gemma2 => "Gemma 2",
            Architecture::Gemma3 => "Gemma 3",
        }
    }

    /// The architectures a GGUF (`general.architecture`) may name.
    const GGUF: [Architecture; 7] = [Architecture::Llama, Architecture::Qwen2, Architecture::Qwen3, Architecture::Phi3, Architecture::Gemma, Architecture::Gemma2, Architecture::Gemma3];
    /// The architectures a config.json (`model_type`) may name.
    const HF: [Architecture; 8] =
        [Architecture::Llama, Architecture::Qwen2, Architecture::Qwen3, Architecture::Mistral, Architecture::Phi3, Architecture::Gemma, Architecture::Gemma2, Architecture::Gemma3];

    /// The architecture a config.json's `model_type` names, if dagrun runs it (`gemma3`, Gemma 3
    /// with its vision tower, for its language model).
    pub fn from_model_type(name: &str) -> Option<Architecture> {
        if name == GEMMA3_MULTIMODAL {
            return Some(Architecture::Gemma3);
        }
        Architecture::from_name(name, &Architecture::HF, false)
    }

    /// The `model_type`s dagrun runs, as "`a`, `b` and `c`" (`conjunction` "and").
    pub fn model_types(conjunction: &str) -> String {
        Architecture::list(&Architecture::HF, conjunction, false)
    }

    /// The architecture `name` is among `among`, by config.json names (`gguf`: by GGUF names).
    fn from_name(name: &str, among: &[Architecture], gguf: bool) -> Option<Architecture> {
        among.iter().copied().find(|a| if gguf { a.gguf_name() } else { a.name() } == name)
    }

    /// "`a`, `b` and `c`" (`conjunction` "and") for error messages.
    fn list(among: &[Architecture], conjunction: &str, gguf: bool) -> String {
        crate::models::listed(among.iter().map(|a| if gguf { a.gguf_name() } else { a.name() }), conjunction)
    }

    /// Whether q, k and v have biases.
    pub fn qkv_bias(self) -> bool {
        self == Architecture::Qwen2
    }

    /// Whether a GGUF stores each q/k head's rows interleaved (llama.cpp's converter permutes
    /// them for Llama and Mistral, whose RoPE it computes on adjacent pairs; Qwen2's and
    /// Phi-3's it leaves as they are).
    pub fn gguf_interleaves_qk(self) -> bool {
        matches!(self, Architecture::Llama | Architecture::Mistral)
    }

    /// Whether q/k/v and gate/up are each stored as one matrix (Phi-3).
    pub fn fused(self) -> bool {
        self == Architecture::Phi3
    }

    /// Whether each q and k head is RMS-normalised before RoPE (Qwen3, Gemma 3).
    pub fn qk_norm(self) -> bool {
        matches!(self, Architecture::Qwen3 | Architecture::Gemma3)
    }

    /// Whether this is one of the Gemmas.
    pub fn gemma(self) -> bool {
        matches!(self, Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3)
    }

    /// The MLP's activation: tanh-approximated GELU (Gemma) or SiLU.
    pub fn gelu(self) -> bool {
        self.gemma()
    }

    /// Whether the attention's and the MLP's outputs are RMS-normalised before they join the
    /// residual stream (Gemma 2 and 3: `post_attention_layernorm` and
    /// `post_feedforward_layernorm`, the MLP's input norm being `pre_feedforward_layernorm`).
    pub fn sandwich_norms(self) -> bool {
        matches!(self, Architecture::Gemma2 | Architecture::Gemma3)
    }

    /// What Hugging Face checkpoints store of each RMSNorm scale: the scale minus this (Gemma
    /// stores its difference from 1).
    pub fn norm_offset(self) -> f32 {
        if self.gemma() {
            1.0
        } else {
            0.0
        }
    }

    /// The Hugging Face name of the MLP's input norm within a layer.
    pub fn mlp_norm_name(self) -> &'static str {
        if self.sandwich_norms() {
            "pre_feedforward_layernorm"
        } else {
            "post_attention_layernorm"
        }
    }

    /// transformers' class for the model.
    fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Phi3 => "Phi3ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
            Architecture::Gemma => "GemmaForCausalLM",
            Architecture::Gemma2 => "Gemma2ForCausalLM",
            Architecture::Gemma3 => "Gemma3ForCausalLM",
        }
    }
}

fn is_llama(a: &Architecture) -> bool {
    *a == Architecture::Llama
}

/// The shape of a Llama-architecture model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Llama unless said otherwise (so a Llama's serialised config is as it always was).
    #[serde(default, skip_serializing_if = "is_llama")]
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub rope_scaling: Option<RopeScaling>,
    /// A sliding attention window (Mistral v0.1, Phi-3 mini-4k): a token attends to itself
    /// and the `sliding_window − 1` tokens before it, in the layers [`LlamaConfig::window`]
    /// says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    /// Which layers attend within the window and which attend fully; None: every layer
    /// within the window when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<LayerType>>,
    /// RoPE's base in the sliding layers, where it differs from `rope_theta` (Gemma 3's
    /// local layers; they take no `rope_scaling` either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_rope_theta: Option<f64>,
    /// Attention scores are scaled by this to the −½ instead of `head_dim` (Gemma 2 and 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    /// Attention scores become c·tanh(s / c) before the softmax (Gemma 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    /// The output logits become c·tanh(l / c) (Gemma 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
}

/// How a layer attends (transformers' `layer_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    FullAttention,
    SlidingAttention,
}

/// How many tokens a sequence may hold, and what limits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub tokens: usize,
    pub limit: Limit,
}

/// What limits a [`Span`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The context length.
    Context,
    /// LongRoPE's original context, beyond which it switches to its long factors.
    LongRope,
}

impl Span {
    /// Whether `prompt` (named as the caller knows it), of `tokens` tokens, leaves room for
    /// `max_new_tokens` more; the error says which limit it passes.
    pub fn check_generation(&self, prompt: impl std::fmt::Display, tokens: usize, max_new_tokens: usize) -> Result<(), String> {
        if tokens + max_new_tokens > self.tokens {
            return Err(format!("prompt {prompt} has {tokens} tokens; with max_new_tokens {max_new_tokens} that passes {self}"));
        }
        Ok(())
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.tokens;
        match self.limit {
            Limit::Context => write!(f, "the model's context of {n}"),
            Limit::LongRope => write!(f, "the model's original context of {n} tokens (beyond it LongRoPE switches to its long factors, which dagrun does not compute)"),
        }
    }
}

/// What Gemma 2 and 3 add to a config.json, with their classes' defaults.
#[derive(Default)]
struct GemmaFields {
    layer_types: Option<Vec<LayerType>>,
    local_rope_theta: Option<f64>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    /// Gemma 3's global layers' RoPE settings, from transformers 5's per-layer-type
    /// `rope_parameters`.
    global_rope: Option<serde_json::Value>,
}

impl GemmaFields {
    fn read(architecture: Architecture, raw: &serde_json::Value, layers: usize) -> Result<GemmaFields, String> {
        if !matches!(architecture, Architecture::Gemma2 | Architecture::Gemma3) {
            return Ok(GemmaFields::default());
        }
        // A number, null (None), or when absent the class's default.
        let number = |key: &str, default: Option<f64>| -> Result<Option<f64>, String> {
            match raw.get(key) {
                None => Ok(default),
                Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("{key} is not a number")),
            }
        };
        let gemma2 = architecture == Architecture::Gemma2;
        let layer_types = match raw.get("layer_types").filter(|v| !v.is_null()) {
            Some(v) => {
                let list = v.as_array().ok_or("layer_types must be a list")?;
                list.iter()
                    .map(|t| match t.as_str() {
                        Some("full_attention") => Ok(LayerType::FullAttention),
                        Some("sliding_attention") => Ok(LayerType::SlidingAttention),
                        _ => Err(format!("layer_types holds {t}; `full_attention` or `sliding_attention` expected")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            // Every `pattern`-th layer attends fully, the others within the window.
            None => {
                let pattern = if gemma2 { 2 } else { number("sliding_window_pattern", Some(6.0))?.unwrap_or(6.0) as usize };
                (0..layers).map(|i| if pattern > 0 && (i + 1) % pattern == 0 { LayerType::FullAttention } else { LayerType::SlidingAttention }).collect()
            }
        };
        // Gemma 3: per-layer-type RoPE settings (transformers 5) or a local base beside the
        // global settings.
        let mut local_rope_theta = None;
        let mut global_rope = None;
        if architecture == Architecture::Gemma3 {
            local_rope_theta = number("rope_local_base_freq", Some(10000.0))?;
            if let Some(per_type) = raw.get("rope_parameters").filter(|v| v.get("sliding_attention").is_some() || v.get("full_attention").is_some()) {
                if let Some(local) = per_type.get("sliding_attention").filter(|v| !v.is_null()) {
                    if let Some(kind) = local.get("rope_type").and_then(|t| t.as_str()).filter(|t| *t != "default") {
                        return Err(format!("rope_parameters.sliding_attention type `{kind}` is not supported (default is)"));
                    }
                    if let Some(theta) = local.get("rope_theta") {
                        local_rope_theta = Some(theta.as_f64().ok_or("rope_parameters.sliding_attention.rope_theta is not a number")?);
                    }
                }
                global_rope = Some(per_type.get("full_attention").cloned().unwrap_or(serde_json::Value::Null));
            }
        }
        Ok(GemmaFields {
            layer_types: Some(layer_types),
            local_rope_theta,
            query_pre_attn_scalar: number("query_pre_attn_scalar", Some(256.0))?,
            attn_logit_softcapping: number("attn_logit_softcapping", gemma2.then_some(50.0))?,
            final_logit_softcapping: number("final_logit_softcapping", gemma2.then_some(30.0))?,
            global_rope,
        })
    }
}

impl LlamaConfig {
    /// The longest sequence (prompt and answer) dagrun computes exactly for this model.
    pub fn span(&self) -> Span {
        let mut span = Span { tokens: self.max_position_embeddings, limit: Limit::Context };
        if let Some(RopeScaling::LongRope(l)) = &self.rope_scaling {
            if l.original_max_position_embeddings < span.tokens {
                span = Span { tokens: l.original_max_position_embeddings, limit: Limit::LongRope };
            }
        }
        span
    }

    /// The sliding window layer `layer` attends within, if it does.
    pub fn window(&self, layer: usize) -> Option<usize> {
        match self.layer_types.as_ref().and_then(|t| t.get(layer)) {
            Some(LayerType::FullAttention) => None,
            _ => self.sliding_window,
        }
    }

    /// Whether layer `layer` takes its RoPE frequencies from [`LlamaConfig::local_inv_freq`].
    pub fn local_rope(&self, layer: usize) -> bool {
        self.local_rope_theta.is_some() && self.window(layer).is_some()
    }

    /// What the embedding is multiplied by (Gemma: √hidden, rounded to f32 as transformers
    /// does), or None.
    pub fn embed_scale(&self) -> Option<f32> {
        self.architecture.gemma().then(|| (self.hidden_size as f64).sqrt() as f32)
    }

    /// What attention scores are multiplied by: `query_pre_attn_scalar`^−½, else `head_dim`^−½.
    pub fn attention_scale(&self) -> f32 {
        match self.query_pre_attn_scalar {
            Some(s) => s.powf(-0.5) as f32,
            None => 1.0 / (self.head_dim as f32).sqrt(),
        }
    }

    /// What RoPE's cos and sin are multiplied by (LongRoPE's attention factor; 1 otherwise).
    pub fn rope_scale(&self) -> f32 {
        match &self.rope_scaling {
            Some(RopeScaling::LongRope(l)) => l.attention_factor(self.max_position_embeddings) as f32,
            _ => 1.0,
        }
    }

    /// Checks that the numbers fit together; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let c = self;
        for (name, v) in [
            ("vocab_size", c.vocab_size),
            ("hidden_size", c.hidden_size),
            ("intermediate_size", c.intermediate_size),
            ("num_hidden_layers", c.num_hidden_layers),
            ("num_attention_heads", c.num_attention_heads),
            ("num_key_value_heads", c.num_key_value_heads),
            ("head_dim", c.head_dim),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if c.num_attention_heads % c.num_key_value_heads != 0 {
            return Err(format!("num_attention_heads ({}) is not a multiple of num_key_value_heads ({})", c.num_attention_heads, c.num_key_value_heads));
        }
        if c.head_dim % 2 != 0 {
            return Err(format!("head_dim ({}) must be even for RoPE", c.head_dim));
        }
        if c.sliding_window == Some(0) {
            return Err("sliding_window must be positive (or null)".into());
        }
        if let Some(t) = &c.layer_types {
            if t.len() != c.num_hidden_layers {
                return Err(format!("layer_types lists {} layers; num_hidden_layers is {}", t.len(), c.num_hidden_layers));
            }
            if c.sliding_window.is_none() && t.contains(&LayerType::SlidingAttention) {
                return Err("layer_types has sliding_attention layers but sliding_window is null".into());
            }
        }
        if let Some(RopeScaling::Factors { factors }) = &c.rope_scaling {
            if factors.len() != c.head_dim / 2 {
                return Err(format!("rope_freqs has {} factors; head_dim/2 = {} expected", factors.len(), c.head_dim / 2));
            }
        }
        if let Some(RopeScaling::LongRope(l)) = &c.rope_scaling {
            for (name, f) in [("short_factor", &l.short_factor), ("long_factor", &l.long_factor)] {
                if f.len() != c.head_dim / 2 {
                    return Err(format!("rope_scaling.{name} has {} factors; head_dim/2 = {} expected", f.len(), c.head_dim / 2));
                }
            }
            if l.original_max_position_embeddings == 0 {
                return Err("original_max_position_embeddings must be positive".into());
            }
        }
        Ok(())
    }

    /// The sliding layers' RoPE inverse frequencies where they have their own base
    /// ([`LlamaConfig::local_rope_theta`]; unscaled).
    pub fn local_inv_freq(&self) -> Option<Vec<f32>> {
        self.local_rope_theta.map(|base| base_inv_freq(base, self.head_dim))
    }

    /// RoPE inverse frequencies, computed in f32 like Hugging Face does, with scaling applied.
    pub fn inv_freq(&self) -> Vec<f32> {
        let mut inv = base_inv_freq(self.rope_theta, self.head_dim);
        match &self.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => inv.iter_mut().for_each(|f| *f /= *factor as f32),
            Some(RopeScaling::Factors { factors }) => inv.iter_mut().zip(factors).for_each(|(f, d)| *f /= d),
            // transformers computes 1 / (factor · base^(2i/d)): the same division.
            Some(RopeScaling::LongRope(l)) => inv.iter_mut().zip(&l.short_factor).for_each(|(f, d)| *f /= d),
            Some(RopeScaling::Llama3(s)) => {
                let (factor, lo, hi, old) = (s.factor as f32, s.low_freq_factor as f32, s.high_freq_factor as f32, s.original_max_position_embeddings as f32);
                let (low_wavelen, high_wavelen) = (old / lo, old / hi);
                for f in inv.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if wavelen > low_wavelen { *f / factor } else { *f };
                    let medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
                    *f = if medium {
                        let smooth = (old / wavelen - lo) / (hi - lo);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    };
                }
            }
        }
        inv
    }

    /// Reads the config from GGUF metadata (`general.architecture` must be `llama` or `qwen2`).
    pub fn from_gguf(g: &Gguf) -> Result<LlamaConfig, String> {
        let arch = g.get("general.architecture").and_then(|v| v.as_str()).ok_or("no general.architecture in the metadata")?;
        let architecture =
            Architecture::from_name(arch, &Architecture::GGUF, true).ok_or_else(|| format!("architecture `{arch}` is not supported ({} are)", Architecture::list(&Architecture::GGUF, "and", true)))?;
        let num = |key: &str| -> Result<u64, String> {
            let full = format!("{arch}.{key}");
            g.get(&full).and_then(|v| v.as_u64()).ok_or_else(|| format!("metadata `{full}` is missing or not an integer"))
        };
        let opt_num = |key: &str| g.get(&format!("{arch}.{key}")).and_then(|v| v.as_u64());
        let opt_f = |key: &str| g.get(&format!("{arch}.{key}")).and_then(|v| v.as_f64());
        if let Some(n) = opt_num("expert_count").filter(|&n| n > 0) {
            return Err(format!("{arch}.expert_count is {n}: mixture-of-experts models (Mixtral, ...) are not supported"));
        }
        let hidden = num("embedding_length")? as usize;
        let heads = num("attention.head_count")? as usize;
        let embd = g.tensor("token_embd.weight").ok_or("no tensor token_embd.weight")?;
        let vocab = opt_num("vocab_size").map(|v| v as usize).unwrap_or_else(|| embd.shape()[0]);
        let head_dim = opt_num("attention.key_length").or(opt_num("rope.dimension_count")).map(|v| v as usize).unwrap_or(hidden / heads.max(1));
        if architecture == Architecture::Phi3 && head_dim != hidden / heads.max(1) {
            return Err(format!("{arch}.rope.dimension_count {head_dim} is not the head width {} (partial rotary embeddings are not supported)", hidden / heads.max(1)));
        }
        if g.tensor("rope_factors_long.weight").is_some() || g.tensor("rope_factors_short.weight").is_some() {
            return Err("LongRoPE (rope_factors_long/short) is not supported in a GGUF; load the model's Hugging Face directory".into());
        }
        let rope_scaling = if let Some(t) = g.tensor("rope_freqs.weight") {
            let (_, factors) = g.dequantize(&t.name).map_err(|e| e.message)?;
            Some(RopeScaling::Factors { factors })
        } else {
            match g.get(&format!("{arch}.rope.scaling.type")).and_then(|v| v.as_str()) {
                None | Some("none") => None,
                Some("linear") => Some(RopeScaling::Linear { factor: opt_f("rope.scaling.factor").ok_or("rope.scaling.factor missing")? }),
                Some(other) => return Err(format!("rope scaling `{other}` is not supported")),
            }
        };
        let layers = num("block_count")? as usize;
        // Gemma 2 and 3 in GGUF: every second (sixth) layer global, the rest within the window
        // (llama.cpp's fixed patterns); scores scaled by the head width, or for the 27B models
        // (46 and 62 layers, as llama.cpp tells them) by hidden / heads.
        let gemma_pattern = match architecture {
            Architecture::Gemma2 => Some(2),
            Architecture::Gemma3 => Some(6),
            _ => None,
        };
        if gemma_pattern.is_some() && opt_num("attention.sliding_window").is_none() {
            return Err(format!("metadata `{arch}.attention.sliding_window` is missing (a {} GGUF names its window)", architecture.title()));
        }
        let query_pre_attn_scalar = gemma_pattern.map(|_| {
            let wide = matches!((architecture, layers), (Architecture::Gemma2, 46) | (Architecture::Gemma3, 62));
            if wide {
                (hidden / heads.max(1)) as f64
            } else {
                head_dim as f64
            }
        });
        let c = LlamaConfig {
            architecture,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: num("feed_forward_length")? as usize,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: opt_num("attention.head_count_kv").map(|v| v as usize).unwrap_or(heads),
            head_dim,
            rope_theta: opt_f("rope.freq_base").unwrap_or(10000.0),
            rms_norm_eps: opt_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            max_position_embeddings: opt_num("context_length").unwrap_or(2048) as usize,
            tie_word_embeddings: g.tensor("output.weight").is_none(),
            rope_scaling,
            // llama.cpp records Phi-3's window; Llama and Qwen2 GGUFs attend fully.
            // llama.cpp records Phi-3's and Gemma 2/3's windows; Llama and Qwen2 GGUFs attend
            // fully.
            sliding_window: if matches!(architecture, Architecture::Phi3 | Architecture::Gemma2 | Architecture::Gemma3) { opt_num("attention.sliding_window").map(|w| w as usize) } else { None },
            layer_types: gemma_pattern.map(|pattern| (0..layers).map(|i| if (i + 1) % pattern == 0 { LayerType::FullAttention } else { LayerType::SlidingAttention }).collect()),
            // llama.cpp's fixed base for Gemma 3's sliding layers.
            local_rope_theta: (architecture == Architecture::Gemma3).then_some(10000.0),
            query_pre_attn_scalar,
            attn_logit_softcapping: if architecture == Architecture::Gemma2 { Some(opt_f("attn_logit_softcapping").unwrap_or(50.0)) } else { None },
            final_logit_softcapping: if architecture == Architecture::Gemma2 { Some(opt_f("final_logit_softcapping").unwrap_or(30.0)) } else { None },
        };
        c.validate()?;
        Ok(c)
    }

    /// Reads a Hugging Face `config.json` (model_type `llama`, `qwen2` or `mistral`).
    pub fn from_hf_json(text: &str) -> Result<LlamaConfig, String> {
        if let Ok(raw) = serde_json::from_str::<serde_json::Value>(text) {
            if raw.get("model_type").and_then(|t| t.as_str()) == Some(GEMMA3_MULTIMODAL) {
                return LlamaConfig::from_hf_json(&gemma3_language_model(&raw)?.to_string()).map_err(|e| format!("text_config: {e}"));
            }
        }
        #[derive(Deserialize)]
        struct Hf {
            model_type: Option<String>,
            vocab_size: usize,
            hidden_size: usize,
            intermediate_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            num_key_value_heads: Option<usize>,
            head_dim: Option<usize>,
            rope_theta: Option<f64>,
            rms_norm_eps: Option<f64>,
            max_position_embeddings: Option<usize>,
            tie_word_embeddings: Option<bool>,
            rope_scaling: Option<serde_json::Value>,
            rope_parameters: Option<serde_json::Value>,
            partial_rotary_factor: Option<f64>,
            hidden_act: Option<String>,
            original_max_position_embeddings: Option<usize>,
            quantization_config: Option<serde_json::Value>,
            num_local_experts: Option<usize>,
            attention_bias: Option<bool>,
            mlp_bias: Option<bool>,
            use_sliding_window: Option<bool>,
            sliding_window: Option<usize>,
        }
        let hf: Hf = serde_json::from_str(text).map_err(|e| format!("not a Llama config: {e}"))?;
        let architecture = match hf.model_type.as_deref() {
            Some(name) => Architecture::from_model_type(name).ok_or_else(|| format!("model_type `{name}` is not supported ({} are)", Architecture::model_types("and")))?,
            None => return Err(format!("no model_type (expected {})", Architecture::model_types("or"))),
        };
        if hf.attention_bias == Some(true) || hf.mlp_bias == Some(true) {
            return Err("attention_bias / mlp_bias are not supported".into());
        }
        if let Some(q) = hf.quantization_config.filter(|q| !q.is_null()) {
            let method = q.get("quant_method").and_then(|m| m.as_str()).unwrap_or("unnamed");
            return Err(format!("the weights are quantised ({method} quantization_config), which dagrun does not read; use the unquantised checkpoint or a GGUF"));
        }
        if let Some(n) = hf.num_local_experts.filter(|&n| n > 0) {
            return Err(format!("num_local_experts is {n}: mixture-of-experts models are not supported"));
        }
        // The fields each class reads its activation from, and what it must be (Gemma's
        // legacy `gelu` means the tanh approximation, as transformers reads it).
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a Llama config: {e}"))?;
        let (act_field, act, wanted) = match architecture {
            Architecture::Gemma2 | Architecture::Gemma3 => ("hidden_activation", raw.get("hidden_activation").and_then(|a| a.as_str()).unwrap_or("gelu_pytorch_tanh"), "gelu_pytorch_tanh"),
            Architecture::Gemma => ("hidden_act", hf.hidden_act.as_deref().map(|a| if a == "gelu" { "gelu_pytorch_tanh" } else { a }).unwrap_or("gelu_pytorch_tanh"), "gelu_pytorch_tanh"),
            _ => ("hidden_act", hf.hidden_act.as_deref().unwrap_or("silu"), "silu"),
        };
        if act != wanted {
            return Err(format!("{act_field} `{act}` is not supported ({} `{wanted}` is)", architecture.title()));
        }
        if hf.use_sliding_window == Some(true) {
            return Err("use_sliding_window is not supported (full attention in every layer is)".into());
        }
        if raw.get("use_bidirectional_attention").and_then(|b| b.as_bool()) == Some(true) {
            return Err("use_bidirectional_attention is not supported (a causal language model is)".into());
        }
        let gemma = GemmaFields::read(architecture, &raw, hf.num_hidden_layers)?;
        // transformers 5 saves RoPE's settings, theta included, as `rope_parameters`; older
        // configs as `rope_theta` and `rope_scaling`. As in transformers, `rope_scaling` wins
        // when both are there, and a theta inside the settings over the top-level one.
        let present = |v: Option<serde_json::Value>| v.filter(|v| !v.is_null());
        let (rope, field) = match (present(hf.rope_scaling), present(gemma.global_rope.clone().or(hf.rope_parameters))) {
            (Some(v), _) => (Some(v), "rope_scaling"),
            (None, Some(v)) => (Some(v), "rope_parameters"),
            (None, None) => (None, "rope_scaling"),
        };
        let rope_theta = match rope.as_ref().and_then(|v| v.get("rope_theta")) {
            Some(t) => t.as_f64().ok_or_else(|| format!("{field}.rope_theta is not a number"))?,
            None => hf.rope_theta.unwrap_or(if architecture == Architecture::Gemma3 { 1_000_000.0 } else { 10000.0 }),
        };
        let partial = rope.as_ref().and_then(|v| v.get("partial_rotary_factor")).and_then(|x| x.as_f64()).or(hf.partial_rotary_factor).unwrap_or(1.0);
        if partial != 1.0 {
            return Err(format!("partial_rotary_factor {partial} is not supported (RoPE over whole heads is)"));
        }
        let rope_scaling = match rope {
            None => None,
            Some(v) => {
                if !v.is_object() {
                    return Err(format!("{field} must be an object"));
                }
                // A bare theta (transformers 5's `rope_type: default` may be left out).
                let default = if v.get("rope_theta").is_some() { "default" } else { "" };
                let kind = v.get("rope_type").or(v.get("type")).and_then(|t| t.as_str()).unwrap_or(default);
                if kind.is_empty() && v.as_object().is_some_and(|o| o.values().any(|x| x.is_object())) {
                    return Err(format!("{field} per layer type is not supported (one RoPE for every layer is)"));
                }
                let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| format!("{field}.{k} is missing"));
                let factors = |k: &str| -> Result<Vec<f32>, String> {
                    let list = v.get(k).and_then(|x| x.as_array()).ok_or_else(|| format!("{field}.{k} is missing (a list of numbers)"))?;
                    list.iter().map(|x| x.as_f64().map(|x| x as f32).ok_or_else(|| format!("{field}.{k} holds a non-number"))).collect()
                };
                // Phi-3's config calls LongRoPE `su` or `yarn` in older files.
                let kind = if architecture == Architecture::Phi3 && matches!(kind, "su" | "yarn") { "longrope" } else { kind };
                match kind {
                    "llama3" => Some(RopeScaling::Llama3(Llama3Scaling {
                        factor: f("factor")?,
                        low_freq_factor: f("low_freq_factor")?,
                        high_freq_factor: f("high_freq_factor")?,
                        original_max_position_embeddings: f("original_max_position_embeddings")?,
                    })),
                    "linear" => Some(RopeScaling::Linear { factor: f("factor")? }),
                    "longrope" | "su" => Some(RopeScaling::LongRope(LongRope {
                        short_factor: factors("short_factor")?,
                        long_factor: factors("long_factor")?,
                        original_max_position_embeddings: v
                            .get("original_max_position_embeddings")
                            .and_then(|x| x.as_u64())
                            .map(|x| x as usize)
                            .or(hf.original_max_position_embeddings)
                            .ok_or("LongRoPE needs original_max_position_embeddings")?,
                        factor: v.get("factor").and_then(|x| x.as_f64()),
                        attention_factor: v.get("attention_factor").and_then(|x| x.as_f64()),
                    })),
                    "default" => None,
                    other => return Err(format!("{field} type `{other}` is not supported (llama3, linear, longrope)")),
                }
            }
        };
        let c = LlamaConfig {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            rope_theta,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(2048),
            // Gemma's classes tie them unless told otherwise.
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(architecture.gemma()),
            rope_scaling,
            // Mistral and Phi-3 apply their window; Qwen2 writes one it does not use (refused
            // above when it does); Gemma 2 and 3 in some of their layers.
            sliding_window: match architecture {
                Architecture::Mistral | Architecture::Phi3 => hf.sliding_window,
                Architecture::Gemma2 | Architecture::Gemma3 => Some(hf.sliding_window.unwrap_or(4096)),
                _ => None,
            },
            layer_types: gemma.layer_types,
            local_rope_theta: gemma.local_rope_theta,
            query_pre_attn_scalar: gemma.query_pre_attn_scalar,
            attn_logit_softcapping: gemma.attn_logit_softcapping,
            final_logit_softcapping: gemma.final_logit_softcapping,
        };
        c.validate()?;
        Ok(c)
    }

    /// The Hugging Face `config.json` for this shape, so exported models load in other tools.
    pub fn to_hf_json(&self, bos: Option<u32>, eos: Option<u32>) -> serde_json::Value {
        let rope_scaling = match &self.rope_scaling {
            Some(RopeScaling::Llama3(s)) => serde_json::json!({"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor, "original_max_position_embeddings": s.original_max_position_embeddings}),
            Some(RopeScaling::Linear { factor }) => serde_json::json!({"rope_type": "linear", "factor": factor}),
            Some(RopeScaling::LongRope(l)) => {
                let mut v = serde_json::json!({"rope_type": "longrope", "short_factor": l.short_factor, "long_factor": l.long_factor,
                    "original_max_position_embeddings": l.original_max_position_embeddings});
                for (k, x) in [("factor", l.factor), ("attention_factor", l.attention_factor)] {
                    if let Some(x) = x {
                        v[k] = x.into();
                    }
                }
                v
            }
            // Explicit per-frequency factors have no config.json form; they come from Llama-3
            // scaling, which the exporter writes back as such when it can tell (see weights.rs).
            Some(RopeScaling::Factors { .. }) | None => serde_json::Value::Null,
        };
        let mut cfg = serde_json::json!({
            "architectures": [self.architecture.hf_class()],
            "model_type": self.architecture.name(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_scaling": rope_scaling,
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": "float32",
            "bos_token_id": bos,
            "eos_token_id": eos,
        });
        let o = cfg.as_object_mut().expect("an object");
        match self.architecture {
            Architecture::Llama => {}
            // Qwen2's biases are implied by its type; Llama's bias switches mean nothing there.
            Architecture::Qwen2 => {
                o.remove("attention_bias");
                o.remove("mlp_bias");
                o.insert("use_sliding_window".into(), false.into());
            }
            // Qwen3 has an attention_bias switch (off, as dagrun reads it), no mlp_bias.
            Architecture::Qwen3 => {
                o.remove("mlp_bias");
                o.insert("use_sliding_window".into(), false.into());
            }
            Architecture::Mistral => {
                o.remove("attention_bias");
                o.remove("mlp_bias");
                o.insert("sliding_window".into(), self.sliding_window.into());
            }
            Architecture::Phi3 => {
                o.remove("attention_bias");
                o.remove("mlp_bias");
                o.insert("sliding_window".into(), self.sliding_window.into());
                // Phi3Config's default pad id (32000) would be out of range in a smaller
                // vocabulary; the vocabulary's EOS pads, as the tokenizer config says.
                o.insert("pad_token_id".into(), eos.into());
                // Phi3Config reads LongRoPE's original context from the top level.
                if let Some(RopeScaling::LongRope(l)) = &self.rope_scaling {
                    o.insert("original_max_position_embeddings".into(), l.original_max_position_embeddings.into());
                }
            }
            Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3 => {
                o.remove("mlp_bias");
                o.insert("hidden_act".into(), "gelu_pytorch_tanh".into());
                // Gemma's default pad id (0) is a real token in other vocabularies.
                o.insert("pad_token_id".into(), eos.into());
                if self.architecture != Architecture::Gemma {
                    o.insert("hidden_activation".into(), "gelu_pytorch_tanh".into());
                    o.insert("sliding_window".into(), self.sliding_window.into());
                    o.insert("layer_types".into(), serde_json::to_value(&self.layer_types).expect("json"));
                    // An integer, as transformers' strict config class insists.
                    let scalar = self.query_pre_attn_scalar.map(|q| if q.fract() == 0.0 { serde_json::json!(q as i64) } else { serde_json::json!(q) });
                    o.insert("query_pre_attn_scalar".into(), scalar.into());
                    o.insert("attn_logit_softcapping".into(), self.attn_logit_softcapping.into());
                    o.insert("final_logit_softcapping".into(), self.final_logit_softcapping.into());
                }
                if let Some(theta) = self.local_rope_theta {
                    o.insert("rope_local_base_freq".into(), theta.into());
                }
            }
        }
        cfg
    }
}
