//! Tiny random-weight BERT models with a real WordPiece tokenizer.json, written as Hugging Face
//! directories, for tests and benchmarks that must not download.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{Activation, BertConfig};
use crate::models::tensors::{write_safetensors, HostTensor, Weights};

const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const WORDS: &[&str] = &[
    "the", "a", "user", "likes", "enjoys", "movies", "books", "with", "and", "of", "drama", "comedy", "science", "fiction", "history", "romance",
    "mystery", "slow", "fast", "stories", "about", "space", "war", "love", "old", "new", "cafe", "play", "##s", "##ed", "##ing", "##ly", ".", ",", "!",
    "'", "-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
];

/// The tiny vocabulary: specials, words, then single letters and their `##` forms.
pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = SPECIAL.iter().chain(WORDS).map(|s| s.to_string()).collect();
    for c in 'a'..='z' {
        for t in [c.to_string(), format!("##{c}")] {
            if !v.contains(&t) {
                v.push(t);
            }
        }
    }
    v
}

pub fn config(layers: usize, hidden: usize, max_positions: usize) -> BertConfig {
    BertConfig {
        family: Default::default(),
        vocab_size: vocab().len(),
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        intermediate_size: hidden * 2,
        max_position_embeddings: max_positions,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        activation: Activation::Gelu,
        pad_token_id: 0,
        position_offset: 0,
        relative_attention_buckets: None,
    }
}

/// Random weights under Hugging Face names, with the `bert.` prefix and a task head as
/// bert-base-uncased has them when `prefixed`.
pub fn random_weights(c: &BertConfig, seed: u64, prefixed: bool) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = Weights::new();
    let p = if prefixed { "bert." } else { "" };
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let data = (0..n).map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0)).collect();
        w.insert(name, HostTensor { shape, data });
    };
    let (h, i) = (c.hidden_size, c.intermediate_size);
    add(format!("{p}embeddings.word_embeddings.weight"), vec![c.vocab_size, h], 0.5, 0.0);
    add(format!("{p}embeddings.position_embeddings.weight"), vec![c.max_position_embeddings, h], 0.5, 0.0);
    add(format!("{p}embeddings.token_type_embeddings.weight"), vec![c.type_vocab_size, h], 0.5, 0.0);
    add(format!("{p}embeddings.LayerNorm.weight"), vec![h], 0.1, 1.0);
    add(format!("{p}embeddings.LayerNorm.bias"), vec![h], 0.1, 0.0);
    for k in 0..c.num_hidden_layers {
        let l = |s: &str| format!("{p}encoder.layer.{k}.{s}");
        for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            add(l(&format!("{m}.weight")), vec![h, h], 0.3, 0.0);
            add(l(&format!("{m}.bias")), vec![h], 0.1, 0.0);
        }
        add(l("attention.output.LayerNorm.weight"), vec![h], 0.1, 1.0);
        add(l("attention.output.LayerNorm.bias"), vec![h], 0.1, 0.0);
        add(l("intermediate.dense.weight"), vec![i, h], 0.3, 0.0);
        add(l("intermediate.dense.bias"), vec![i], 0.1, 0.0);
        add(l("output.dense.weight"), vec![h, i], 0.3, 0.0);
        add(l("output.dense.bias"), vec![h], 0.1, 0.0);
        add(l("output.LayerNorm.weight"), vec![h], 0.1, 1.0);
        add(l("output.LayerNorm.bias"), vec![h], 0.1, 0.0);
    }
    if prefixed {
        add("bert.pooler.dense.weight".into(), vec![h, h], 0.3, 0.0);
        add("cls.predictions.bias".into(), vec![c.vocab_size], 0.1, 0.0);
    }
    w
}

/// A BERT WordPiece tokenizer.json over [`vocab`], lower-casing, with the fixed padding and
/// truncation to 16 that sentence-transformers leaves in MiniLM's file (dagrun must override
/// both).
pub fn tokenizer_json() -> serde_json::Value {
    let vocab: serde_json::Map<String, serde_json::Value> = vocab().into_iter().enumerate().map(|(i, t)| (t, serde_json::json!(i))).collect();
    let added: Vec<serde_json::Value> = SPECIAL
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let special = |t: &str, id: usize| serde_json::json!({"id": t, "ids": [id], "tokens": [t]});
    serde_json::json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 16, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": special("[CLS]", 2), "[SEP]": special("[SEP]", 3)}
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// Writes a tiny BERT directory (config.json, model.safetensors, tokenizer.json).
pub fn write_dir(dir: &Path, c: &BertConfig, seed: u64, prefixed: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&c.to_hf_json())?)?;
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_string(&tokenizer_json())?)?;
    write_safetensors(&random_weights(c, seed, prefixed), &dir.join("model.safetensors"), None).map_err(std::io::Error::other)
}
