//! Tokenizers for LLMs: a Hugging Face `tokenizer.json`, or the byte-level BPE vocabulary,
//! merges and pre-tokenizer embedded in a GGUF file, built the way transformers converts it.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::Gguf;

/// Token texts that end a turn in the chat formats we know; generation stops on them.
const END_OF_TURN: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>", "<|end|>", "<end_of_turn>", "<|eom_id|>"];

/// Llama-3's pre-tokenizer split (also used by several other vocabularies).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer with what generation needs around it.
#[derive(Clone)]
pub struct LlmTokenizer {
    pub inner: Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Token ids that end generation.
    pub stop_ids: Vec<u32>,
    /// The model's chat template (Jinja), if it has one.
    pub chat_template: Option<String>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl LlmTokenizer {
    /// Token ids of `text`, with special tokens written in the text recognised but none added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        Ok(self.inner.encode_fast(text, false).map_err(err)?.get_ids().to_vec())
    }

    /// Text of `ids`; special tokens are kept when `keep_special`.
    pub fn decode(&self, ids: &[u32], keep_special: bool) -> Result<String, String> {
        self.inner.decode(ids, !keep_special).map_err(err)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    fn stop_ids_from(inner: &Tokenizer, eos: &[u32]) -> Vec<u32> {
        let mut ids: Vec<u32> = eos.to_vec();
        ids.extend(END_OF_TURN.iter().filter_map(|t| inner.token_to_id(t)));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// From a Hugging Face model directory: `tokenizer.json` and, if present,
    /// `tokenizer_config.json` (chat template, BOS/EOS tokens).
    pub fn from_hf_dir(dir: &Path) -> Result<LlmTokenizer, String> {
        let path = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{}: {e}", cfg_path.display()))?,
            Err(_) => serde_json::Value::Null,
        };
        let token = |key: &str| -> Option<String> {
            match cfg.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                v => v.get("content").and_then(|c| c.as_str()).map(str::to_string),
            }
        };
        let (bos_token, eos_token) = (token("bos_token"), token("eos_token"));
        let mut chat_template = match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // A list of named templates: take `default`.
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        if chat_template.is_none() {
            chat_template = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
        }
        // generation_config.json may name several EOS ids (Llama 3: <|end_of_text|>, <|eom_id|>, <|eot_id|>).
        let mut eos: Vec<u32> = eos_token.as_deref().and_then(|t| inner.token_to_id(t)).into_iter().collect();
        if let Ok(t) = std::fs::read_to_string(dir.join("generation_config.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                match v.get("eos_token_id") {
                    Some(serde_json::Value::Number(n)) => eos.extend(n.as_u64().map(|n| n as u32)),
                    Some(serde_json::Value::Array(a)) => eos.extend(a.iter().filter_map(|n| n.as_u64()).map(|n| n as u32)),
                    _ => {}
                }
            }
        }
        let stop_ids = Self::stop_ids_from(&inner, &eos);
        Ok(LlmTokenizer { inner, bos_token, eos_token, stop_ids, chat_template })
    }

    /// From the vocabulary embedded in a GGUF file (`tokenizer.ggml.model` = `gpt2`).
    pub fn from_gguf(g: &Gguf) -> Result<LlmTokenizer, String> {
        let model = g.get("tokenizer.ggml.model").and_then(|v| v.as_str()).ok_or("no tokenizer.ggml.model in the metadata")?;
        if model != "gpt2" {
            return Err(format!("GGUF tokenizer `{model}` is not supported (byte-level BPE `gpt2` is); use the model's Hugging Face directory instead"));
        }
        let strings = |key: &str| -> Result<Vec<String>, String> {
            let a = g.get(key).and_then(|v| v.as_array()).ok_or_else(|| format!("no {key} in the metadata"))?;
            a.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("{key} holds a non-string"))).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
            Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(1.0) as i64).collect(),
            None => vec![1; tokens.len()],
        };
        // Byte-level vocabularies spell every byte as a printable character; respell any token
        // that is not written in that alphabet (as transformers' converter does).
        let alphabet = byte_alphabet();
        let spell = |t: &str| -> String {
            if t.chars().all(|c| alphabet.contains(&c)) {
                t.to_string()
            } else {
                t.bytes().map(|b| alphabet[b as usize]).collect()
            }
        };
        let vocab: ahash::AHashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (spell(t), i as u32)).collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| format!("merge `{m}` is not two tokens")))
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(err)?;
        let mut inner = Tokenizer::new(bpe);
        let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
        match pre {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" => {
                let split = Split::new(SplitPattern::Regex(LLAMA3_SPLIT.into()), SplitDelimiterBehavior::Isolated, false).map_err(err)?;
                inner.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()])));
            }
            "default" | "gpt2" | "gpt-2" | "smollm" | "starcoder" | "refact" | "olmo" | "phi-2" | "jina-es" => {
                inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            }
            other => return Err(format!("GGUF pre-tokenizer `{other}` is not supported; use the model's Hugging Face directory (tokenizer.json) instead")),
        }
        inner.with_decoder(Some(ByteLevel::default()));
        let control: Vec<AddedToken> =
            tokens.iter().zip(&types).filter(|(t, ty)| **ty == 3 && t.chars().all(|c| alphabet.contains(&c))).map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false)).collect();
        inner.add_special_tokens(&control);
        let user: Vec<AddedToken> = tokens.iter().zip(&types).filter(|(_, ty)| **ty == 4).map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false)).collect();
        inner.add_tokens(&user);
        let id_text = |key: &str| g.get(key).and_then(|v| v.as_u64()).and_then(|i| tokens.get(i as usize)).cloned();
        let mut eos: Vec<u32> = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            eos.extend(g.get(key).and_then(|v| v.as_u64()).map(|i| i as u32));
        }
        let stop_ids = Self::stop_ids_from(&inner, &eos);
        let chat_template = g.get("tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string);
        let mut eos_token = id_text("tokenizer.ggml.eos_token_id");
        // Some converters write the same id for BOS and EOS; a chat model's real EOS is its
        // end-of-turn token then.
        if eos_token.is_some() && eos_token == id_text("tokenizer.ggml.bos_token_id") {
            if let Some(t) = END_OF_TURN.iter().find(|t| inner.token_to_id(t).is_some()) {
                eos_token = Some(t.to_string());
            }
        }
        Ok(LlmTokenizer { inner, bos_token: id_text("tokenizer.ggml.bos_token_id"), eos_token, stop_ids, chat_template })
    }
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves, the others map to
/// characters from U+0100 on.
fn byte_alphabet() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in printable.iter().zip(chars) {
        table[*b as usize] = char::from_u32(c).expect("valid char");
    }
    table
}
