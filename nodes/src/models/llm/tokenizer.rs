//! Tokenizers for LLMs: a Hugging Face `tokenizer.json`, or the byte-level BPE vocabulary,
//! merges and pre-tokenizer embedded in a GGUF file, built the way transformers converts it.

use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::Gguf;

/// Token texts that end a turn in the chat formats we know; generation stops on them.
const END_OF_TURN: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>", "<|end|>", "<end_of_turn>", "<|eom_id|>"];

/// Llama-3's pre-tokenizer split (also used by several other vocabularies).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama-3's with one digit per piece.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen3.5's: Qwen2's with combining marks kept with the letters they mark.
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's split, which the byte-level step makes when no other is given.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// CJK ideographs and Hangul, one piece per run (DeepSeek's).
const CJK_RUNS: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";
/// DeepSeek LLM's splits: newlines alone, runs of letters of the cased alphabets and of ASCII
/// and CJK punctuation (each with one leading space), trailing spaces, CJK runs, digit runs.
const DEEPSEEK_LLM_SPLITS: &[&str] = &[
    "[\\r\\n]",
    "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
    "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
    "\\s+$",
    CJK_RUNS,
    "\\p{N}+",
];
/// DeepSeek Coder's: newlines alone, letter and punctuation runs (each with one leading
/// space), CJK runs, single digits.
const DEEPSEEK_CODER_SPLITS: &[&str] = &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_RUNS, r"\p{N}"];
/// Falcon's: punctuation runs, GPT-2's split, then digits three at a time.
const FALCON_SPLITS: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_SPLIT, r"[0-9][0-9][0-9]"];

/// How a GGUF vocabulary's text is cut before BPE, by its `tokenizer.ggml.pre` name: what the
/// model's own Hugging Face `tokenizer.json` does (checked against Hugging Face's ids for
/// llama.cpp's vocabulary files, see `vocab_tests.rs`).
struct GgufPre {
    /// Regex splits, one after the other, ahead of the byte-level step (which then splits no
    /// further), or none (GPT-2's own byte-level regex).
    splits: &'static [&'static str],
    /// Each digit its own piece before the byte-level step (StarCoder's `Digits`).
    digits: bool,
    /// Unicode NFC before anything else.
    nfc: bool,
    /// A piece that is a whole vocabulary entry is that token, merges or not (Llama 3).
    ignore_merges: bool,
}

impl GgufPre {
    fn of(pre: &str) -> Result<GgufPre, String> {
        let p = |splits, digits, nfc, ignore_merges| Ok(GgufPre { splits, digits, nfc, ignore_merges });
        match pre {
            "llama3" | "llama-v3" | "llama-bpe" => p(&[LLAMA3_SPLIT], false, false, true),
            // Llama 3's split, as before; not checked against their own tokenizers.
            "falcon3" | "dbrx" | "smaug-bpe" => p(&[LLAMA3_SPLIT], false, false, false),
            "qwen2" => p(&[QWEN2_SPLIT], false, true, false),
            "qwen35" => p(&[QWEN35_SPLIT], false, false, false),
            "starcoder" | "refact" | "command-r" => p(&[], true, false, false),
            "mpt" | "gpt-neox" => p(&[], false, true, false),
            "deepseek-llm" => p(DEEPSEEK_LLM_SPLITS, false, false, false),
            "deepseek-coder" => p(DEEPSEEK_CODER_SPLITS, false, false, false),
            "falcon" => p(FALCON_SPLITS, false, false, false),
            "default" | "gpt2" | "gpt-2" | "smollm" | "olmo" | "phi-2" | "jina-es" => p(&[], false, false, false),
            other => Err(format!(
                "GGUF pre-tokenizer `{other}` is not supported (llama-bpe, qwen2, qwen35, gpt-2, smollm, starcoder, refact, mpt, deepseek-llm, deepseek-coder, falcon, command-r and a few more are); use the model's Hugging Face directory (tokenizer.json) instead"
            )),
        }
    }

    fn apply(&self, t: &mut Tokenizer) -> Result<(), String> {
        if self.nfc {
            t.with_normalizer(Some(NFC));
        }
        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        for re in self.splits {
            steps.push(Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(err)?.into());
        }
        if self.digits {
            steps.push(Digits::new(true).into());
        }
        steps.push(ByteLevel::new(false, true, self.splits.is_empty()).into());
        t.with_pre_tokenizer(Some(Sequence::new(steps)));
        Ok(())
    }
}

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
    /// Set where this GGUF vocabulary now tokenizes some text differently from how dagrun
    /// first built it (Llama 3's whole-word tokens, StarCoder's digits, repeated or plain-text
    /// user tokens). `load` writes it into the `Llm` artifact's manifest (at version 2 for
    /// models), so the artifact and what is computed from it (answers, DPO) are new; other
    /// models keep their digest. `generate` also keys its cached answers with it. A further
    /// change in tokenization means a new revision and a new `load` version for models.
    pub revision: Option<u32>,
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
            Some(serde_json::Value::Array(list)) => list.iter().find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default")).and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        if chat_template.is_none() {
            chat_template = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
        }
        // Multimodal checkpoints (Gemma 3 4B and up) may keep it in the processor's file.
        if chat_template.is_none() {
            let file = std::fs::read_to_string(dir.join("chat_template.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            chat_template = file.and_then(|v| v.get("chat_template")?.as_str().map(str::to_string));
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
        Ok(LlmTokenizer { inner, bos_token, eos_token, stop_ids, chat_template, revision: None })
    }

    /// From the vocabulary embedded in a GGUF file: byte-level BPE (`tokenizer.ggml.model` =
    /// `gpt2`: Llama 3, Qwen2, SmolLM2, ...) or SentencePiece BPE (`llama`: Llama 2, Mistral,
    /// TinyLlama, ...), built as transformers converts the model's own tokenizer.
    pub fn from_gguf(g: &Gguf) -> Result<LlmTokenizer, String> {
        let model = g.get("tokenizer.ggml.model").and_then(|v| v.as_str()).ok_or("no tokenizer.ggml.model in the metadata")?;
        let strings = |key: &str| -> Result<Vec<String>, String> {
            let a = g.get(key).and_then(|v| v.as_array()).ok_or_else(|| format!("no {key} in the metadata"))?;
            a.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("{key} holds a non-string"))).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
            Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(1.0) as i64).collect(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(format!("tokenizer.ggml.token_type has {} entries for {} tokens", types.len(), tokens.len()));
        }
        let (inner, revision) = match model {
            "gpt2" => {
                let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
                let (inner, revised) = byte_level_bpe(&tokens, &types, &strings("tokenizer.ggml.merges")?, GgufPre::of(pre)?)?;
                (inner, revised.then_some(2))
            }
            "llama" => {
                let scores: Vec<f64> = g.get("tokenizer.ggml.scores").and_then(|v| v.as_array()).ok_or("no tokenizer.ggml.scores in the metadata")?.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect();
                if scores.len() != tokens.len() {
                    return Err(format!("tokenizer.ggml.scores has {} entries for {} tokens", scores.len(), tokens.len()));
                }
                let space_prefix = g.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.as_bool()).unwrap_or(true);
                (sentencepiece_bpe(&tokens, &types, &scores, space_prefix)?, None)
            }
            other => return Err(format!("GGUF tokenizer `{other}` is not supported (byte-level BPE `gpt2` and SentencePiece BPE `llama` are); use the model's Hugging Face directory instead")),
        };
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
        Ok(LlmTokenizer { inner, bos_token: id_text("tokenizer.ggml.bos_token_id"), eos_token, stop_ids, chat_template, revision })
    }
}

/// A GGUF byte-level BPE vocabulary (`gpt2`) as a tokenizer, with its control and
/// user-defined tokens added; and whether it tokenizes some text differently from dagrun's
/// first build of such vocabularies (see [`LlmTokenizer::revision`]).
fn byte_level_bpe(tokens: &[String], types: &[i64], merges: &[String], pre: GgufPre) -> Result<(Tokenizer, bool), String> {
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
    // A text listed twice (padding entries of some vocabularies) is its first id, as in
    // Hugging Face's vocabulary; a respelled token yields to one written so (Command-R lists
    // U+200D both raw and spelled, and its spelled id is the one BPE gives).
    let mut vocab: ahash::AHashMap<String, u32> = ahash::AHashMap::with_capacity(tokens.len());
    let spelled = |t: &String| t.chars().all(|c| alphabet.contains(&c));
    for (i, t) in tokens.iter().enumerate().filter(|(_, t)| spelled(t)) {
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    for (i, t) in tokens.iter().enumerate().filter(|(_, t)| !spelled(t)) {
        vocab.entry(spell(t)).or_insert(i as u32);
    }
    let repeated = vocab.len() < tokens.len();
    // A user-defined token written as plain text (GPT-NeoX's runs of spaces) is added by
    // that text below; listed under it too, it keeps its id rather than getting a new one.
    let mut plain_user = false;
    for (i, (t, ty)) in tokens.iter().zip(types).enumerate() {
        if *ty == USER_DEFINED && spell(t) != *t {
            plain_user = true;
            vocab.entry(t.clone()).or_insert(i as u32);
        }
    }
    let revised = pre.ignore_merges || pre.digits || repeated || plain_user;
    let merges: Vec<(String, String)> =
        merges.iter().map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| format!("merge `{m}` is not two tokens"))).collect::<Result<_, _>>()?;
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(pre.ignore_merges).build().map_err(err)?;
    let mut inner = Tokenizer::new(bpe);
    pre.apply(&mut inner)?;
    inner.with_decoder(Some(ByteLevel::default()));
    add_tokens(&mut inner, tokens, types, |t, ty| ty == CONTROL && t.chars().all(|c| alphabet.contains(&c)));
    Ok((inner, revised))
}

/// A GGUF SentencePiece vocabulary (`llama`) as the byte-fallback BPE transformers makes of
/// it: merges from the pieces' scores (every split of a piece into two pieces, best-scoring
/// result first), `▁` for spaces and, unless `add_space_prefix` is off, one in front.
fn sentencepiece_bpe(tokens: &[String], types: &[i64], scores: &[f64], space_prefix: bool) -> Result<Tokenizer, String> {
    let mut vocab: ahash::AHashMap<String, u32> = ahash::AHashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    // (left, right, score of the merged piece, left id, right id); within a piece by the
    // halves' ids, then stably by score, best first.
    let mut merges: Vec<(&str, &str, f64, u32, u32)> = Vec::new();
    for (t, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<_> = t
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = t.split_at(at);
                Some((l, r, score, *vocab.get(l)?, *vocab.get(r)?))
            })
            .collect();
        local.sort_by_key(|m| (m.3, m.4));
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2));
    let merges: Vec<(String, String)> = merges.into_iter().map(|(l, r, ..)| (l.to_string(), r.to_string())).collect();
    let unk = types.iter().position(|&ty| ty == UNKNOWN).map(|i| tokens[i].clone());
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let mut inner = Tokenizer::new(builder.build().map_err(err)?);
    let spaces = Replace::new(" ", "▁").map_err(err)?;
    if space_prefix {
        inner.with_normalizer(Some(NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), spaces.into()])));
    } else {
        inner.with_normalizer(Some(spaces));
    }
    let mut decoders: Vec<DecoderWrapper> = vec![Replace::new("▁", " ").map_err(err)?.into(), ByteFallback::default().into(), Fuse::default().into()];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    add_tokens(&mut inner, tokens, types, |_, ty| ty == CONTROL || ty == UNKNOWN);
    Ok(inner)
}

/// GGUF token types (`tokenizer.ggml.token_type`).
const UNKNOWN: i64 = 2;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Adds the tokens `special` picks as special tokens, and the user-defined ones as added
/// tokens: both are matched in text as they are, before the model sees it.
fn add_tokens(inner: &mut Tokenizer, tokens: &[String], types: &[i64], special: impl Fn(&str, i64) -> bool) {
    let control: Vec<AddedToken> = tokens.iter().zip(types).filter(|(t, ty)| special(t, **ty)).map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false)).collect();
    inner.add_special_tokens(&control);
    let user: Vec<AddedToken> = tokens.iter().zip(types).filter(|(_, ty)| **ty == USER_DEFINED).map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false)).collect();
    inner.add_tokens(&user);
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
