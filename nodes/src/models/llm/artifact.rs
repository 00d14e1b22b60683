//! The `Llm` artifact: a model's files in one directory, as a GGUF (`model.gguf`) or in Hugging
//! Face layout (config.json, safetensors, tokenizer files), plus `llm.json` saying which.
//! Anything that reads the directory without dagrun (llama.cpp, transformers) finds a normal
//! model there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::chat::ChatTemplate;
use super::config::LlamaConfig;
use super::gguf::Gguf;
use super::host::HostLlama;
use super::lm::Lm;
use super::tokenizer::LlmTokenizer;
use super::weights::{self, HostTensor, StoredRows};
use crate::models::cpu::on_flex;
use crate::models::tensors::Safetensors;

pub const GGUF_FILE: &str = "model.gguf";
pub const MANIFEST: &str = "llm.json";

/// Hugging Face files copied when present (weights are added from the index).
const HF_FILES: &[&str] = &["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json"];

/// The files of a model source that decide its content: what goes into the artifact (and into
/// the node's key when the source is a local path).
pub fn source_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(format!("{}: no such file or directory (a .gguf file or a Hugging Face model directory expected)", path.display()));
    }
    if !path.join("config.json").is_file() {
        return Err(format!("{}: not a Hugging Face model directory (no config.json)", path.display()));
    }
    if !path.join("tokenizer.json").is_file() {
        return Err(format!("{}: no tokenizer.json (dagrun reads the fast-tokenizer file)", path.display()));
    }
    let mut files: Vec<PathBuf> = HF_FILES.iter().map(|f| path.join(f)).filter(|p| p.is_file()).collect();
    let index = path.join("model.safetensors.index.json");
    if index.is_file() {
        files.push(index);
    }
    files.extend(weights::safetensors_files(path)?);
    Ok(files)
}

/// Copies a model source (a .gguf file or a Hugging Face directory) into `out`, checking that
/// it loads as a Llama model first so a broken source never becomes an artifact.
pub fn write(source: &Path, described_as: &str, out: &Path) -> Result<Written, String> {
    let files = source_files(source)?;
    let (format, config, stored_as, revision) = if source.is_file() {
        let g = Gguf::open(source).map_err(|e| e.to_string())?;
        let c = LlamaConfig::from_gguf(&g).map_err(|e| format!("{}: {e}", source.display()))?;
        let tok = LlmTokenizer::from_gguf(&g).map_err(|e| format!("{}: {e}", source.display()))?;
        copy(source, &out.join(GGUF_FILE))?;
        ("gguf", c, Some(g.type_counts()), tok.revision)
    } else {
        let text = std::fs::read_to_string(source.join("config.json")).map_err(|e| format!("{}: {e}", source.join("config.json").display()))?;
        let c = LlamaConfig::from_hf_json(&text).map_err(|e| format!("{}: {e}", source.join("config.json").display()))?;
        LlmTokenizer::from_hf_dir(source)?;
        for f in &files {
            let rel = f.strip_prefix(source).map_err(|_| format!("{} is outside {}", f.display(), source.display()))?;
            if let Some(parent) = out.join(rel).parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            copy(f, &out.join(rel))?;
        }
        ("huggingface", c, None, None)
    };
    let mut manifest = serde_json::json!({ "format": format, "source": described_as, "architecture": config.architecture.name(), "config": config });
    if let Some(r) = revision {
        // Makes the artifact, so everything computed from it, new when the vocabulary's
        // tokenization changed (see `LlmTokenizer::revision`); others keep their digest.
        manifest["tokenizer_revision"] = r.into();
    }
    std::fs::write(out.join(MANIFEST), serde_json::to_string_pretty(&manifest).expect("json") + "\n").map_err(|e| e.to_string())?;
    Ok(Written { config, stored_as })
}

/// What [`write`] found in the source.
pub struct Written {
    pub config: LlamaConfig,
    /// For a GGUF, its tensors' storage types with their counts ([`Gguf::type_counts`]).
    pub stored_as: Option<String>,
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| format!("copying {} into the cache: {e}", from.display()))
}

/// A loaded LLM artifact: the model on a device, its tokenizer and chat template.
pub struct LoadedLlm<B: Backend> {
    pub lm: Lm<B>,
    pub tokenizer: LlmTokenizer,
    pub template: Option<ChatTemplate>,
}

/// What a model is loaded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Generation and scoring. On the CPU that is the host path alone: the Burn module, an f32
    /// copy of every weight, is never built (a GGUF's block-coded matrices are then never
    /// dequantised at all), so loading takes a fraction of the time and memory.
    Generate,
    /// Training or export: the Burn module (with the host path too on the CPU backend).
    Train,
}

/// Loads an `Llm` artifact directory (or a .gguf file / Hugging Face directory directly).
pub fn load<B: Backend>(dir: &Path, device: &B::Device, purpose: Purpose) -> Result<LoadedLlm<B>, String> {
    let text = load_text(dir)?;
    Ok(LoadedLlm { lm: load_lm(dir, device, purpose)?, tokenizer: text.tokenizer, template: text.template })
}

/// A model's tokenizer and chat template, without its weights.
pub struct LlmText {
    pub tokenizer: LlmTokenizer,
    pub template: Option<ChatTemplate>,
}

/// The tokenizer and chat template of an `Llm` artifact (or a .gguf file / Hugging Face
/// directory), without reading the weights: enough to render and key prompts, e.g. to find
/// that every answer is already in the row cache and the model need not be loaded at all.
pub fn load_text(dir: &Path) -> Result<LlmText, String> {
    let tokenizer = match gguf_path(dir) {
        Some(path) => {
            let g = Gguf::open(&path).map_err(|e| e.to_string())?;
            LlmTokenizer::from_gguf(&g).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => LlmTokenizer::from_hf_dir(dir)?,
    };
    let template = tokenizer.chat_template.as_deref().map(|t| ChatTemplate::new(t, tokenizer.bos_token.as_deref(), tokenizer.eos_token.as_deref())).transpose()?;
    Ok(LlmText { tokenizer, template })
}

/// The GGUF file of an artifact directory, or `dir` itself when it is a file.
fn gguf_path(dir: &Path) -> Option<PathBuf> {
    if dir.is_file() {
        Some(dir.to_path_buf())
    } else {
        Some(dir.join(GGUF_FILE)).filter(|p| p.is_file())
    }
}

/// The model of an `Llm` artifact (or a .gguf file / Hugging Face directory) on `device`.
pub fn load_lm<B: Backend>(dir: &Path, device: &B::Device, purpose: Purpose) -> Result<Lm<B>, String> {
    match gguf_path(dir) {
        Some(path) => {
            let at = |e: String| format!("{}: {e}", path.display());
            let g = Gguf::open(&path).map_err(|e| e.to_string())?;
            let c = LlamaConfig::from_gguf(&g).map_err(|e| at(e.to_string()))?;
            let has_lm_head = g.tensor("output.weight").is_some();
            let stored = weights::stored_rows(&g, &c);
            let mut reader = weights::gguf_reader(&g, &c);
            let lm = assemble(c, has_lm_head, &mut reader, Some(&stored), purpose, device).map_err(at)?;
            Ok(lm)
        }
        None => {
            let cfg = dir.join("config.json");
            let text = std::fs::read_to_string(&cfg).map_err(|e| format!("{}: {e}", cfg.display()))?;
            let c = LlamaConfig::from_hf_json(&text).map_err(|e| format!("{}: {e}", cfg.display()))?;
            let files = Safetensors::open(&weights::safetensors_files(dir)?)?;
            // A multimodal checkpoint keeps its language model's weights under a prefix.
            let named = |name: &str| weights::language_model_name(name, |n| files.contains(n));
            let has_lm_head = files.contains(&named("lm_head.weight"));
            let mut reader = weights::from_hf_checkpoint(&c, |name| files.get(&named(name)));
            assemble(c, has_lm_head, &mut reader, None, purpose, device)
        }
    }
}

/// The parts of a model `purpose` needs on this backend, from the weights `weight` gives by
/// name (and, on the CPU, the GGUF's block-coded rows in `stored`): the Burn module for
/// training or off the CPU, the host path on the CPU.
fn assemble<B: Backend>(
    c: LlamaConfig,
    has_lm_head: bool,
    weight: &mut dyn FnMut(&str) -> Result<HostTensor, String>,
    stored: Option<&BTreeMap<String, StoredRows>>,
    purpose: Purpose,
    device: &B::Device,
) -> Result<Lm<B>, String> {
    let host = on_flex::<B>();
    let model = (purpose == Purpose::Train || !host).then(|| weights::build_from::<B>(&c, has_lm_head, weight, device)).transpose()?;
    let host = host.then(|| HostLlama::build(&c, has_lm_head, weight, stored)).transpose()?;
    Ok(Lm::from_parts(model, host, c, device.clone()))
}

/// Whether [`write_hf`] can express this model (checked before spending a training run on it).
pub fn can_write_hf(config: &LlamaConfig) -> Result<(), String> {
    if let Some(super::config::RopeScaling::Factors { .. }) = config.rope_scaling {
        return Err("this model's RoPE frequencies are given as a per-frequency tensor (from GGUF), which config.json cannot express; tune the model's Hugging Face directory instead".into());
    }
    Ok(())
}

/// Writes a (tuned) model as an `Llm` artifact in Hugging Face layout: config.json,
/// model.safetensors (f32, or bf16 when `bf16`), and the tokenizer — copied from `source` when it is a Hugging Face
/// directory, written from the GGUF vocabulary otherwise — so the result loads in transformers.
pub fn write_hf<B: Backend>(model: &super::llama::Llama<B>, config: &LlamaConfig, tokenizer: &LlmTokenizer, source: &Path, described_as: &str, out: &Path, bf16: bool) -> Result<(), String> {
    can_write_hf(config)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let id = |t: &Option<String>| t.as_deref().and_then(|t| tokenizer.token_id(t));
    let (bos, eos) = (id(&tokenizer.bos_token), id(&tokenizer.eos_token));
    let mut cfg = config.to_hf_json(bos, eos);
    cfg["torch_dtype"] = serde_json::json!(if bf16 { "bfloat16" } else { "float32" });
    std::fs::write(out.join("config.json"), serde_json::to_string_pretty(&cfg).expect("json") + "\n").map_err(|e| e.to_string())?;
    weights::write_safetensors_as(&weights::to_hf_checkpoint(config, weights::to_hf(model, config)), &out.join("model.safetensors"), Some([("format".to_string(), "pt".to_string())].into()), bf16)?;
    if source.is_dir() && source.join("tokenizer.json").is_file() {
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "generation_config.json"] {
            if source.join(f).is_file() {
                copy(&source.join(f), &out.join(f))?;
            }
        }
    } else {
        tokenizer.inner.save(out.join("tokenizer.json"), false).map_err(|e| format!("writing tokenizer.json: {e}"))?;
        let tc = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": tokenizer.bos_token,
            "eos_token": tokenizer.eos_token,
            "pad_token": tokenizer.eos_token,
            "chat_template": tokenizer.chat_template,
            "clean_up_tokenization_spaces": false,
            "model_max_length": config.max_position_embeddings,
        });
        std::fs::write(out.join("tokenizer_config.json"), serde_json::to_string_pretty(&tc).expect("json") + "\n").map_err(|e| e.to_string())?;
        let gc = serde_json::json!({ "bos_token_id": bos, "eos_token_id": tokenizer.stop_ids });
        std::fs::write(out.join("generation_config.json"), serde_json::to_string_pretty(&gc).expect("json") + "\n").map_err(|e| e.to_string())?;
    }
    let manifest = serde_json::json!({ "format": "huggingface", "source": described_as, "architecture": config.architecture.name(), "config": config });
    std::fs::write(out.join(MANIFEST), serde_json::to_string_pretty(&manifest).expect("json") + "\n").map_err(|e| e.to_string())?;
    Ok(())
}
