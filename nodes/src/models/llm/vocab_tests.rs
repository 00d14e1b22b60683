//! GGUF tokenizers against Hugging Face's token ids for many vocabularies: llama.cpp ships
//! vocabulary-only GGUF files (`models/ggml-vocab-NAME.gguf`) with test strings (`.inp`) and
//! the ids the model's Hugging Face tokenizer gives them (`.out`, written by llama.cpp's
//! `convert_hf_to_gguf_update.py` with `encode(text, add_special_tokens=False)`). They come in
//! the llama-cpp-python sdist on PyPI, fetched once into `target/test-models/` with llama.cpp's
//! copies of models' chat templates (`models/templates/*.jinja`, for `chat_tests`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use super::gguf::Gguf;
use super::tokenizer::LlmTokenizer;

const SDIST: &str = "llama-cpp-python==0.3.36";
const SDIST_FILE: &str = "llama_cpp_python-0.3.36.tar.gz";
const SDIST_SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
const MODELS: &str = "llama_cpp_python-0.3.36/vendor/llama.cpp/models";
const SEPARATOR: &str = "\n__ggml_vocab_test__\n";

/// The folder holding llama.cpp's `ggml-vocab-*` files and `templates/`, fetched and unpacked
/// once.
pub(super) fn vocabs() -> PathBuf {
    let root = crate::models::source::test_models_dir();
    let dir = root.join("llama-cpp-models-0.3.36");
    if dir.join("complete").exists() {
        return dir;
    }
    std::fs::create_dir_all(&root).unwrap();
    let tmp = tempfile::tempdir_in(&root).unwrap();
    let python = std::env::var("DAGRUN_PYTHON").unwrap_or_else(|_| "python3".into());
    // The sdist itself (its build dependencies come as wheels; nothing is built).
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "--no-binary", "llama-cpp-python", "-d"])
        .arg(tmp.path())
        .arg(SDIST)
        .output()
        .expect("python3 -m pip");
    assert!(out.status.success(), "pip download {SDIST}: {}", String::from_utf8_lossy(&out.stderr));
    let tarball = tmp.path().join(SDIST_FILE);
    let sha = crate::models::source::sha256_file(&tarball).unwrap();
    assert_eq!(sha, SDIST_SHA256, "{SDIST_FILE}: a changed or corrupted package");
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let wanted = [format!("{MODELS}/ggml-vocab-*"), format!("{MODELS}/templates/*.jinja")];
    let st = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&unpacked).arg("--wildcards").args(&wanted).status().expect("tar");
    assert!(st.success(), "unpacking {SDIST_FILE}");
    std::fs::write(unpacked.join(MODELS).join("complete"), "").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(unpacked.join(MODELS), &dir).unwrap();
    dir
}

/// The test strings of vocabulary `name` with Hugging Face's ids for each.
fn cases(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let texts: Vec<&str> = inp.strip_suffix(SEPARATOR).unwrap_or(&inp).split(SEPARATOR).collect();
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), ids.len(), "{name}: {} strings, {} id lists", texts.len(), ids.len());
    texts.into_iter().map(str::to_string).zip(ids).collect()
}

/// Vocabularies whose GGUF tokenizer we build, with llama.cpp's pre-tokenizer name (or
/// SentencePiece): Llama 3 (the paper's Llama-3.1-8B), Qwen2 and Qwen3.5, GPT-2 (SmolLM2's
/// kind), StarCoder and Refact, MPT (GPT-NeoX's vocabulary), DeepSeek LLM and DeepSeek Coder,
/// Falcon, Command-R, and SentencePiece BPE (Llama 2, Mistral, Phi-3).
const SUPPORTED: &[&str] = &["llama-bpe", "qwen2", "qwen35", "gpt-2", "starcoder", "refact", "mpt", "deepseek-llm", "deepseek-coder", "falcon", "command-r", "llama-spm", "phi-3"];

#[test]
fn gguf_tokenizers_give_hugging_face_ids_for_llama_cpp_vocabularies() {
    let dir = vocabs();
    let mut failures = Vec::new();
    for name in SUPPORTED {
        let tok = LlmTokenizer::from_gguf(&Gguf::open(&dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // A tuned model's export writes the tokenizer as tokenizer.json; read back, it is
        // the same tokenizer.
        let exported = tokenizers::Tokenizer::from_str(&tok.inner.to_string(false).unwrap()).unwrap();
        let cases = cases(&dir, name);
        assert!(cases.len() >= 40, "{name}: {} cases", cases.len());
        for (text, want) in cases {
            let got = tok.encode(&text).unwrap();
            if got != want {
                failures.push(format!("{name}: {text:?}\n  ours {got:?}\n  HF   {want:?}"));
            }
            let again = exported.encode_fast(text.as_str(), false).unwrap().get_ids().to_vec();
            if again != want {
                failures.push(format!("{name}: {text:?} through tokenizer.json\n  ours {again:?}\n  HF   {want:?}"));
            }
            // What generation shows: Hugging Face's ids decode to the text.
            let back = tok.decode(&want, true).unwrap();
            if back != text {
                failures.push(format!("{name}: {text:?} decodes to {back:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// Vocabularies dagrun read before but now tokenizes differently carry a revision (so
/// `generate` does not reuse answers to their old ids); the others do not (their cached
/// answers stay valid).
#[test]
fn corrected_gguf_vocabularies_carry_a_revision() {
    let dir = vocabs();
    for (name, revision) in [("llama-bpe", Some(2)), ("starcoder", Some(2)), ("refact", Some(2)), ("mpt", Some(2)), ("gpt-2", None), ("qwen2", None), ("llama-spm", None)] {
        let tok = LlmTokenizer::from_gguf(&Gguf::open(&dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap()).unwrap();
        assert_eq!(tok.revision, revision, "{name}");
    }
}

/// `load` records a revision in the `Llm` artifact's manifest, so a model whose vocabulary was
/// corrected gets a new artifact (and everything computed from it, DPO included, is new); a
/// model whose tokenization did not change keeps its manifest, so its digest.
#[test]
fn a_corrected_vocabulary_makes_a_new_llm_artifact() {
    use super::artifact;
    use super::config::LlamaConfig;
    use super::tiny;
    let tmp = tempfile::tempdir().unwrap();
    for (name, revision) in [("llama-bpe", Some(2u32)), ("llama-spm", None)] {
        let vocab = Gguf::open(&vocabs().join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        let n = vocab.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).unwrap().len();
        let c = LlamaConfig { vocab_size: n, ..tiny::config(1, 8) };
        let path = tmp.path().join(format!("{name}.gguf"));
        tiny::write_gguf_with_vocab(&c, &tiny::random_weights(&c, 3), &path, &vocab).unwrap();
        let out = tmp.path().join(name);
        std::fs::create_dir(&out).unwrap();
        artifact::write(&path, "test", &out).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(artifact::MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest.get("tokenizer_revision").and_then(|r| r.as_u64()), revision.map(u64::from), "{name}: {manifest}");
    }
}

/// Vocabularies of a kind dagrun does not build (BERT's WordPiece, Gemma 4's), and a byte-level
/// vocabulary with a pre-tokenizer it does not know (GPT-2's vocabulary relabelled
/// `chatglm-bpe`), are refused by name, pointing to the Hugging Face directory.
#[test]
fn gguf_vocabularies_we_cannot_tokenize_exactly_are_refused_by_name() {
    use super::gguf::{GgufWriter, Value};
    let dir = vocabs();
    let tmp = tempfile::tempdir().unwrap();
    let relabelled = tmp.path().join("chatglm.gguf");
    let gpt2 = Gguf::open(&dir.join("ggml-vocab-gpt-2.gguf")).unwrap();
    let mut g = GgufWriter::new();
    for (k, v) in gpt2.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.") && *k != "tokenizer.ggml.pre") {
        g.meta(k, v.clone());
    }
    g.meta("tokenizer.ggml.pre", Value::Str("chatglm-bpe".into())).write(&relabelled).unwrap();
    for (path, what) in [
        (dir.join("ggml-vocab-bert-bge.gguf"), "tokenizer `bert`"),
        (dir.join("ggml-vocab-gemma-4.gguf"), "tokenizer `gemma4`"),
        (relabelled, "pre-tokenizer `chatglm-bpe`"),
    ] {
        let e = LlmTokenizer::from_gguf(&Gguf::open(&path).unwrap()).err().unwrap_or_else(|| panic!("{} was accepted", path.display()));
        assert!(e.contains(what) && e.contains("Hugging Face directory"), "{}: {e}", path.display());
    }
}

/// A model whose GGUF carries a SentencePiece vocabulary (as Llama 2, Mistral and TinyLlama
/// files do) loads and generates, and its token ids decode as Hugging Face decodes them (`▁`
/// a space, the leading one dropped).
#[test]
fn a_model_with_a_sentencepiece_vocabulary_generates() {
    use super::artifact::{self, Purpose};
    use super::config::LlamaConfig;
    use super::generate::{generate, Request, Settings};
    use super::sample::Sampling;
    use super::tiny;
    use crate::models::backend::Cpu;
    let vocab = Gguf::open(&vocabs().join("ggml-vocab-llama-spm.gguf")).unwrap();
    let n = vocab.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).unwrap().len();
    let c = LlamaConfig { vocab_size: n, ..tiny::config(1, 16) };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("spm.gguf");
    tiny::write_gguf_with_vocab(&c, &tiny::random_weights(&c, 3), &path, &vocab).unwrap();
    let llm = artifact::load::<Cpu>(&path, &Default::default(), Purpose::Generate).unwrap();
    let tok = &llm.tokenizer;
    assert_eq!((tok.bos_token.as_deref(), tok.eos_token.as_deref()), (Some("<s>"), Some("</s>")));
    assert!(tok.stop_ids.contains(&2));
    // Llama 2's ids: <s>, ▁Hello, ▁world.
    let prompt = tok.encode("<s>Hello world").unwrap();
    assert_eq!(prompt, [1, 15043, 3186]);
    assert_eq!(tok.decode(&prompt, false).unwrap(), "Hello world");
    let settings = Settings { sampling: Sampling { temperature: 1.0, top_p: 1.0, top_k: 0 }, max_new_tokens: 12, stop: vec![], batch_size: 4 };
    let mut answers = Vec::new();
    let mut keep = |b: Vec<_>| {
        answers.extend(b);
        Ok(())
    };
    generate(&llm.lm, tok, &[Request { prompt, seeds: vec![1, 2, 3] }], &settings, &mut keep, &|_| {}, &|| false).unwrap();
    assert_eq!(answers.len(), 3);
    for (_, _, a) in &answers {
        assert!(!a.tokens.is_empty() && a.tokens.iter().all(|&t| (t as usize) < n));
        assert_eq!(a.text, tok.decode(&a.tokens, false).unwrap());
    }
}
