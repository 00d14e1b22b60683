//! A BERT model's shape, read from a Hugging Face `config.json`; RoBERTa and XLM-RoBERTa are
//! BERT with positions counted from past the padding id, MPNet the same without token types and
//! with a relative-position attention bias, DistilBERT BERT without token types under other
//! names.

use serde::{Deserialize, Serialize};

use crate::models::listed;

/// The feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The exact GELU, `x·Φ(x)` (transformers' `gelu`).
    Gelu,
    /// The tanh approximation (transformers' `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

/// Which member of the BERT family an encoder is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderFamily {
    #[default]
    Bert,
    /// RoBERTa and XLM-RoBERTa.
    Roberta,
    Mpnet,
    DistilBert,
}

impl EncoderFamily {
    /// The name as people write it.
    pub fn title(self) -> &'static str {
        match self {
            EncoderFamily::Bert => "BERT",
            EncoderFamily::Roberta => "RoBERTa",
            EncoderFamily::Mpnet => "MPNet",
            EncoderFamily::DistilBert => "DistilBERT",
        }
    }

    /// Whether its embeddings add a token-type vector (MPNet and DistilBERT have none).
    pub fn token_types(self) -> bool {
        matches!(self, EncoderFamily::Bert | EncoderFamily::Roberta)
    }
}

fn is_bert(f: &EncoderFamily) -> bool {
    *f == EncoderFamily::Bert
}

/// What the encoder looks like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// BERT unless said otherwise (so a BERT's serialised config is as it always was).
    #[serde(default, skip_serializing_if = "is_bert")]
    pub family: EncoderFamily,
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
/// from past the padding id; MPNet, which does too and adds a relative-position bias; and
/// DistilBERT.
pub const ENCODER_TYPES: [&str; 5] = ["bert", "roberta", "xlm-roberta", "mpnet", "distilbert"];

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The family as people write it.
    pub fn family_name(&self) -> &'static str {
        self.family.title()
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
        let mut raw: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a BERT config: {e}"))?;
        if raw.get("model_type").and_then(|t| t.as_str()) == Some("distilbert") {
            // DistilBERT's names for BERT's fields.
            let o = raw.as_object_mut().ok_or("not a BERT config: not an object")?;
            for (theirs, ours) in [("dim", "hidden_size"), ("n_layers", "num_hidden_layers"), ("n_heads", "num_attention_heads"), ("hidden_dim", "intermediate_size"), ("activation", "hidden_act")] {
                if let Some(v) = o.remove(theirs) {
                    o.insert(ours.into(), v);
                }
            }
        }
        let hf: Hf = serde_json::from_value(raw).map_err(|e| format!("not a BERT config: {e}"))?;
        let family = match hf.model_type.as_deref() {
            Some("bert") => EncoderFamily::Bert,
            Some("roberta" | "xlm-roberta") => EncoderFamily::Roberta,
            Some("mpnet") => EncoderFamily::Mpnet,
            Some("distilbert") => EncoderFamily::DistilBert,
            Some(other) => return Err(format!("model_type `{other}` is not a BERT encoder (expected {})", listed(ENCODER_TYPES, "or"))),
            None => return Err(format!("no model_type (expected {})", listed(ENCODER_TYPES, "or"))),
        };
        let roberta = matches!(family, EncoderFamily::Roberta | EncoderFamily::Mpnet);
        let relative_attention_buckets = (family == EncoderFamily::Mpnet).then(|| hf.relative_attention_num_buckets.unwrap_or(32));
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
            family,
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
        let (class, model_type) = match self.family {
            EncoderFamily::Mpnet => ("MPNetModel", "mpnet"),
            EncoderFamily::Roberta => ("RobertaModel", "roberta"),
            EncoderFamily::DistilBert => ("DistilBertModel", "distilbert"),
            EncoderFamily::Bert => ("BertModel", "bert"),
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
        if self.family == EncoderFamily::DistilBert {
            let o = v.as_object_mut().expect("an object");
            for (ours, theirs) in [("hidden_size", "dim"), ("num_hidden_layers", "n_layers"), ("num_attention_heads", "n_heads"), ("intermediate_size", "hidden_dim"), ("hidden_act", "activation")] {
                let x = o.remove(ours).expect("written above");
                o.insert(theirs.into(), x);
            }
        }
        v
    }
}
