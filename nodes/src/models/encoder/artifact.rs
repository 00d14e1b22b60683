//! The `Encoder` artifact: a BERT model's Hugging Face files in one directory (config.json,
//! safetensors, tokenizer.json and, when the source has them, the sentence-transformers
//! files), plus `encoder.json` saying where it came from. Other tools load the directory as is.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::bert::Bert;
use super::config::BertConfig;
use super::tokenizer::EncoderTokenizer;
use super::weights;
use crate::models::tensors::{safetensors_files, Safetensors};

pub const MANIFEST: &str = "encoder.json";

/// Hugging Face and sentence-transformers files copied when present (weights come from the
/// safetensors index).
const HF_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "1_Pooling/config.json",
];

/// How a sentence-transformers model makes its vectors, from its `1_Pooling/config.json` and
/// `modules.json` (None for a plain Hugging Face model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainedPooling {
    /// `mean`, `cls`, or another mode sentence-transformers has (`max`, `lasttoken`, ...).
    pub mode: String,
    /// Whether a Normalize module follows.
    pub normalize: bool,
}

/// The pooling `dir`'s sentence-transformers files give, if it has them.
pub fn trained_pooling(dir: &Path) -> Option<TrainedPooling> {
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("1_Pooling/config.json")).ok()?).ok()?;
    let on = |k: &str| cfg.get(k).and_then(|v| v.as_bool()) == Some(true);
    let mode =
        cfg.get("pooling_mode").and_then(|m| m.as_str()).map(str::to_string).or_else(|| {
            ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"].iter().find(|m| on(&format!("pooling_mode_{m}"))).map(|m| m.to_string())
        })?;
    let mode = match mode.as_str() {
        "cls_token" => "cls".to_string(),
        "mean_tokens" => "mean".to_string(),
        other => other.trim_end_matches("_tokens").to_string(),
    };
    let modules = std::fs::read_to_string(dir.join("modules.json")).unwrap_or_default();
    Some(TrainedPooling { mode, normalize: modules.contains("Normalize") })
}

/// The longest input when none is asked for: 512 as in KAR, or the model's own
/// sentence-transformers `max_seq_length` when it ships one (MiniLM: 256); never more than the
/// position table.
pub const DEFAULT_MAX_LENGTH: usize = 512;

/// The files of a source directory that decide its content.
pub fn source_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Err(format!("{}: not a directory (an encoder is a Hugging Face model directory: config.json, model.safetensors, tokenizer.json)", path.display()));
    }
    for f in ["config.json", "tokenizer.json"] {
        if !path.join(f).is_file() {
            return Err(format!("{}: no {f} (an encoder directory has config.json, model.safetensors and tokenizer.json)", path.display()));
        }
    }
    let mut files: Vec<PathBuf> = HF_FILES.iter().map(|f| path.join(f)).filter(|p| p.is_file()).collect();
    let index = path.join("model.safetensors.index.json");
    if index.is_file() {
        files.push(index);
    }
    files.extend(safetensors_files(path)?);
    Ok(files)
}

fn read_config(dir: &Path) -> Result<BertConfig, String> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    BertConfig::from_hf_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The model's own maximum input length (see [`DEFAULT_MAX_LENGTH`]).
pub fn default_max_length(dir: &Path, c: &BertConfig) -> usize {
    let st = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
        .map(|m| m as usize);
    st.unwrap_or(DEFAULT_MAX_LENGTH).min(c.max_tokens())
}

/// Copies a source directory into `out`, checking first that its config, tokenizer and weights
/// load as a BERT encoder, so a broken source never becomes an artifact.
pub fn write(source: &Path, described_as: &str, out: &Path) -> Result<BertConfig, String> {
    let files = source_files(source)?;
    let config = read_config(source)?;
    let max_length = default_max_length(source, &config);
    EncoderTokenizer::from_file(&source.join("tokenizer.json"), max_length, config.pad_token_id)?;
    let w = Safetensors::open(&safetensors_files(source)?)?;
    weights::check(&config, &w).map_err(|e| format!("{}: {e}", source.display()))?;
    for f in &files {
        let rel = f.strip_prefix(source).map_err(|_| format!("{} is outside {}", f.display(), source.display()))?;
        if let Some(parent) = out.join(rel).parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::copy(f, out.join(rel)).map_err(|e| format!("copying {} into the cache: {e}", f.display()))?;
    }
    let manifest = serde_json::json!({ "format": "huggingface", "source": described_as, "architecture": "bert", "max_length": max_length, "config": config });
    std::fs::write(out.join(MANIFEST), serde_json::to_string_pretty(&manifest).expect("json") + "\n").map_err(|e| e.to_string())?;
    Ok(config)
}

/// A loaded encoder: the module on a device and its tokenizer.
pub struct LoadedEncoder<B: Backend> {
    pub bert: Bert<B>,
    pub tokenizer: EncoderTokenizer,
    pub config: BertConfig,
}

/// Loads an `Encoder` artifact (or any Hugging Face BERT directory). `max_length` overrides
/// the model's own limit and may not exceed its position table.
pub fn load<B: Backend>(dir: &Path, device: &B::Device, max_length: Option<usize>) -> Result<LoadedEncoder<B>, String> {
    let EncoderText { config, tokenizer } = load_text(dir, max_length)?;
    Ok(LoadedEncoder { bert: load_bert(dir, &config, device)?, tokenizer, config })
}

/// An encoder's config and tokenizer, without its weights.
pub struct EncoderText {
    pub config: BertConfig,
    pub tokenizer: EncoderTokenizer,
}

/// The config and tokenizer of an `Encoder` artifact, without reading the weights: enough to
/// key texts (and find them all in the row cache, so the model need not be loaded). See
/// [`load`] for `max_length`.
pub fn load_text(dir: &Path, max_length: Option<usize>) -> Result<EncoderText, String> {
    let config = read_config(dir)?;
    let max_length = match max_length {
        Some(m) if m > config.max_tokens() => {
            return Err(format!("max_length {m} is longer than the model's {} positions", config.max_tokens()));
        }
        Some(m) => m,
        None => default_max_length(dir, &config),
    };
    let tokenizer = EncoderTokenizer::from_file(&dir.join("tokenizer.json"), max_length, config.pad_token_id)?;
    Ok(EncoderText { config, tokenizer })
}

/// The BERT module of an `Encoder` artifact with config `config` (from [`load_text`]).
pub fn load_bert<B: Backend>(dir: &Path, config: &BertConfig, device: &B::Device) -> Result<Bert<B>, String> {
    let w = Safetensors::open(&safetensors_files(dir)?)?;
    weights::build::<B>(config, &w, device).map_err(|e| format!("{}: {e}", dir.display()))
}
