//! A BERT model's shape, read from a Hugging Face `config.json`; RoBERTa and XLM-RoBERTa are
//! BERT with positions counted from past the padding id (and no token types to speak of).

use serde::{Deserialize, Serialize};

/// The feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The exact GELU, `x·Φ(x)` (transformers' `gelu`).
    Gelu,
    /// The tanh approximation (transformers' `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

/// What the encoder looks like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Longest input the position table covers.
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
    /// The padding token's id.
    pub pad_token_id: u32,
    /// The first real token's position (RoBERTa, XLM-RoBERTa, MPNet: `pad_token_id + 1`;
    /// BERT: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub position_offset: usize,
    /// MPNet's buckets of relative positions, each with a learned attention bias per head; none
    /// for the others. MPNet has no token types either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_attention_buckets: Option<usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The `model_type`s read as encoders: BERT; RoBERTa and XLM-RoBERTa, which count positions
/// from past the padding id; and MPNet, which does too and adds a relative-position bias.
pub const ENCODER_TYPES: [&str; 4] = ["bert", "roberta", "xlm-roberta", "mpnet"];

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The family as people write it: RoBERTa (XLM-RoBERTa too) where positions start past
    /// the padding id, else BERT.
    pub fn family(&self) -> &'static str {
        if self.relative_attention_buckets.is_some() {
            "MPNet"
        } else if self.position_offset > 0 {
            "RoBERTa"
        } else {
            "BERT"
        }
    }

    /// The most tokens a text may have: the position table's rows from the first real
    /// token's on.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings.saturating_sub(self.position_offset)
    }

    /// Reads a Hugging Face `config.json` with `model_type: bert`; what dagrun cannot run (a
    /// relative position embedding, an unknown activation) is an error naming the field.
    pub fn from_hf_json(text: &str) -> Result<BertConfig, String> {
        #[derive(Deserialize)]
        struct Hf {
            model_type: Option<String>,
            vocab_size: usize,
            hidden_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            intermediate_size: usize,
            max_position_embeddings: usize,
            #[serde(default = "two")]
            type_vocab_size: usize,
            #[serde(default = "eps")]
            layer_norm_eps: f64,
            #[serde(default = "gelu")]
            hidden_act: String,
            #[serde(default)]
            position_embedding_type: Option<String>,
            #[serde(default)]
            pad_token_id: Option<u32>,
            #[serde(default)]
            relative_attention_num_buckets: Option<usize>,
        }
        fn two() -> usize {
            2
        }
        fn eps() -> f64 {
            1e-12
        }
        fn gelu() -> String {
            "gelu".into()
        }
        let hf: Hf = serde_json::from_str(text).map_err(|e| format!("not a BERT config: {e}"))?;
        let (roberta, mpnet) = match hf.model_type.as_deref() {
            Some("bert") => (false, false),
            Some("roberta" | "xlm-roberta") => (true, false),
            Some("mpnet") => (true, true),
            Some(other) => return Err(format!("model_type `{other}` is not a BERT encoder (expected `bert`, `roberta`, `xlm-roberta` or `mpnet`)")),
            None => return Err("no model_type (expected `bert`, `roberta`, `xlm-roberta` or `mpnet`)".into()),
        };
        let relative_attention_buckets = mpnet.then(|| hf.relative_attention_num_buckets.unwrap_or(32));
        if relative_attention_buckets.is_some_and(|b| b < 4) {
            return Err("relative_attention_num_buckets must be at least 4".into());
        }
        // RoBERTa's padding id is 1 unless said otherwise; its positions start after it.
        let pad_token_id = hf.pad_token_id.unwrap_or(if roberta { 1 } else { 0 });
        let position_offset = if roberta { pad_token_id as usize + 1 } else { 0 };
        let activation = match hf.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => return Err(format!("hidden_act `{other}` is not supported (gelu, gelu_new or gelu_pytorch_tanh)")),
        };
        if let Some(p) = hf.position_embedding_type.as_deref().filter(|p| *p != "absolute") {
            return Err(format!("position_embedding_type `{p}` is not supported (only `absolute`)"));
        }
        if hf.num_attention_heads == 0 || hf.hidden_size % hf.num_attention_heads != 0 {
            return Err(format!("hidden_size {} is not a multiple of num_attention_heads {}", hf.hidden_size, hf.num_attention_heads));
        }
        if hf.max_position_embeddings < 2 || hf.type_vocab_size == 0 || hf.vocab_size == 0 {
            return Err("max_position_embeddings, type_vocab_size and vocab_size must be positive".into());
        }
        if hf.max_position_embeddings < position_offset + 2 {
            return Err(format!("max_position_embeddings {} leaves no positions past the padding id {pad_token_id}", hf.max_position_embeddings));
        }
        Ok(BertConfig {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            intermediate_size: hf.intermediate_size,
            max_position_embeddings: hf.max_position_embeddings,
            type_vocab_size: hf.type_vocab_size,
            layer_norm_eps: hf.layer_norm_eps,
            activation,
            pad_token_id,
            position_offset,
            relative_attention_buckets,
        })
    }

    /// The `config.json` transformers would write for this model.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let (class, model_type) = match (self.relative_attention_buckets, self.position_offset > 0) {
            (Some(_), _) => ("MPNetModel", "mpnet"),
            (None, true) => ("RobertaModel", "roberta"),
            (None, false) => ("BertModel", "bert"),
        };
        let mut v = serde_json::json!({
            "architectures": [class],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": match self.activation { Activation::Gelu => "gelu", Activation::GeluTanh => "gelu_new" },
            "position_embedding_type": "absolute",
            "pad_token_id": self.pad_token_id,
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
        });
        if let Some(b) = self.relative_attention_buckets {
            v["relative_attention_num_buckets"] = b.into();
        }
        v
    }
}
