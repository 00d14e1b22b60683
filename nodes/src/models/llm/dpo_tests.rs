//! DPO tests on tiny random models: the step-0 contract (loss ln 2, rewards 0), gradients
//! against finite differences, padding independence of sequence log-probs, that training
//! separates chosen from rejected, that the merged export loads and scores like the tuned
//! model, and that a diverging run fails instead of saving.

use burn::module::AutodiffModule;
use burn::prelude::*;

use super::artifact::{self, Purpose};
use super::chat::Message;
use super::config::Architecture;
use super::dpo::{self, DpoConfig, DpoError, PairText, PairTokens, StepLog, Tuning};
use super::lora::{Adapters, Target};
use super::lm::rows_of;
use crate::models::backend::{Cpu, CpuTrain};

fn tiny(dir: &std::path::Path, seed: u64) -> artifact::LoadedLlm<CpuTrain> {
    tiny_of(Architecture::Llama, dir, seed)
}

/// A tiny random model of `arch` (written as `tiny.gguf` in `dir`), loaded for training.
fn tiny_of(arch: Architecture, dir: &std::path::Path, seed: u64) -> artifact::LoadedLlm<CpuTrain> {
    let path = dir.join("tiny.gguf");
    super::tiny::write_tiny_gguf_of(arch, &path, seed).unwrap();
    artifact::load::<CpuTrain>(&path, &Default::default(), Purpose::Train).unwrap()
}

const ARCHITECTURES: [Architecture; 4] = [Architecture::Llama, Architecture::Qwen2, Architecture::Phi3, Architecture::Qwen3];

fn texts() -> Vec<PairText> {
    let m = |s: &str| vec![Message { role: "system".into(), content: "Be brief.".into() }, Message { role: "user".into(), content: s.into() }];
    vec![
        PairText { messages: m("Which genres?"), chosen: "Sci-fi and mystery.".into(), rejected: "I like trains.".into() },
        PairText { messages: m("Favourite author?"), chosen: "Le Guin".into(), rejected: "None at all, sorry".into() },
        PairText { messages: m("What next?"), chosen: "Dune".into(), rejected: "A cookbook".into() },
        PairText { messages: m("Mood?"), chosen: "Dark thrillers".into(), rejected: "Cheerful".into() },
    ]
}

fn tokens(llm: &artifact::LoadedLlm<CpuTrain>) -> Vec<PairTokens> {
    let (pairs, report) = dpo::tokenize_pairs(&llm.tokenizer, llm.template.as_ref(), &texts(), 1024).unwrap();
    assert_eq!(report, dpo::TokenizeReport::default());
    pairs.into_iter().map(|(_, p)| p).collect()
}

fn run(llm: &artifact::LoadedLlm<CpuTrain>, pairs: &[PairTokens], cfg: &DpoConfig) -> (Result<Llama<Cpu>, DpoError>, Vec<StepLog>) {
    run_on(llm, pairs, cfg, true)
}

/// [`run`], with `host` false forcing Burn's autodiff for LoRA too.
fn run_on(llm: &artifact::LoadedLlm<CpuTrain>, pairs: &[PairTokens], cfg: &DpoConfig, host: bool) -> (Result<Llama<Cpu>, DpoError>, Vec<StepLog>) {
    let mut logs = Vec::new();
    let out = dpo::train_on(llm.lm.module().clone(), &llm.lm.config, pairs, cfg, &Default::default(), &mut |l| logs.push(l.clone()), &|| false, host);
    (out, logs)
}

use super::llama::Llama;

/// The adapters with every B drawn uniform in ±0.3 from `seed` (not zero, so Δ ≠ 0 and every
/// path carries gradient). Seeded here rather than by Burn's global generator, which tests
/// running in parallel share, so each run checks the same numbers.
fn b_off_zero(a: Adapters<CpuTrain>, seed: u64) -> Adapters<CpuTrain> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let tensors = a.tensors().into_iter().enumerate().map(|(i, t)| {
        if i % 2 == 0 {
            return t;
        }
        let dims = t.dims();
        let v: Vec<f32> = (0..dims[0] * dims[1]).map(|_| rng.random_range(-0.3..0.3)).collect();
        Tensor::from_data(burn::tensor::TensorData::new(v, dims), &t.device())
    });
    a.with_tensors(tensors.collect::<Vec<_>>().into_iter())
}

#[test]
fn completions_are_the_answer_and_the_end_of_turn() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 1);
    let pairs = tokens(&llm);
    let t = &llm.tokenizer;
    assert_eq!(t.decode(&pairs[0].prompt, true).unwrap(), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhich genres?<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(t.decode(&pairs[0].chosen, true).unwrap(), "Sci-fi and mystery.<|im_end|>\n");
    // The prompt is tokenised exactly as `generate` tokenises it.
    let rendered = llm.template.as_ref().unwrap().render(&texts()[0].messages, true).unwrap();
    assert_eq!(pairs[0].prompt, t.encode(&rendered).unwrap());
    // max_length keeps the start: answers are cut, prompts that do not fit are dropped.
    let max = pairs[0].prompt.len() + 3;
    let (cut, report) = dpo::tokenize_pairs(t, llm.template.as_ref(), &texts(), max).unwrap();
    assert!(report.truncated >= 1);
    assert!(cut.iter().all(|(_, p)| p.prompt.len() + p.chosen.len() <= max && p.prompt.len() + p.rejected.len() <= max));
    let shortest = pairs.iter().map(|p| p.prompt.len()).min().unwrap();
    let (kept, report) = dpo::tokenize_pairs(t, llm.template.as_ref(), &texts(), shortest).unwrap();
    assert!(kept.is_empty());
    assert_eq!(report.dropped, vec![0, 1, 2, 3]);
}

#[test]
fn step_zero_loss_is_ln2_and_rewards_are_zero() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 2);
    let pairs = tokens(&llm);
    for tuning in [DpoConfig::default().tuning, Tuning::Full] {
        let cfg = DpoConfig { epochs: 1, grad_accum: 1, tuning: tuning.clone(), ..Default::default() };
        let (out, logs) = run(&llm, &pairs, &cfg);
        out.unwrap();
        let first = &logs[0];
        assert!((first.loss - std::f64::consts::LN_2).abs() < 1e-6, "{tuning:?}: {}", first.loss);
        assert_eq!((first.rewards_chosen, first.rewards_rejected, first.rewards_margins, first.rewards_accuracies), (0.0, 0.0, 0.0, 0.0), "{tuning:?}");
        assert!(first.grad_norm > 0.0);
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[1].pairs, 4);
        assert!((logs[1].epoch - 1.0).abs() < 1e-12);
    }
}

#[test]
fn sequence_logps_ignore_padding_and_batch_mates() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 3);
    let pairs = tokens(&llm);
    let lm = &llm.lm;
    let seq = |p: &PairTokens| ([p.prompt.clone(), p.chosen.clone()].concat(), p.prompt.len());
    let alone = dpo::sequence_logps(lm.module(), &lm.config, &lm.inv_freq, &[seq(&pairs[2])], None, &lm.device).0.into_data().to_vec::<f32>().unwrap();
    let padded = dpo::sequence_logps(lm.module(), &lm.config, &lm.inv_freq, &[seq(&pairs[0]), seq(&pairs[2])], None, &lm.device).0.into_data().to_vec::<f32>().unwrap();
    assert!((alone[0] - padded[1]).abs() < 1e-4, "{} vs {}", alone[0], padded[1]);
    // Against a direct sum over full-sequence logits.
    let (ids, start) = seq(&pairs[2]);
    let logits = rows_of(artifact::load::<Cpu>(&dir.path().join("tiny.gguf"), &Default::default(), Purpose::Generate).unwrap().lm.logits_all(&ids));
    let mut direct = 0f64;
    for t in start..ids.len() {
        let row = &logits[t - 1];
        let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        direct += row[ids[t] as usize] as f64 - lse;
    }
    assert!((alone[0] as f64 - direct).abs() < 1e-3, "{} vs {direct}", alone[0]);
}

#[test]
fn gradient_matches_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 4);
    let pairs = tokens(&llm);
    let lm = &llm.lm;
    let device = Default::default();
    let cfg = DpoConfig { beta: 0.5, ..Default::default() };
    let model = lm.module().clone().no_grad();
    let order: Vec<usize> = (0..pairs.len()).collect();
    let reference = dpo::reference_logps(&model, &lm.config, &lm.inv_freq, &pairs, &order, 2, &device);
    // Adapters with B moved off zero, so Δ ≠ 0 and every path carries gradient.
    let a = Adapters::<CpuTrain>::init(&model, &[Target::Q, Target::V, Target::Down], 4, 8.0, 7, &device);
    let a = b_off_zero(a, 21);
    let loss = |a: &Adapters<CpuTrain>| -> Tensor<CpuTrain, 1> { dpo::micro_batch(&model, &lm.config, &lm.inv_freq, &pairs, &[0, 1, 2], &reference, &cfg, Some(a), &device).per_pair.mean() };
    let leaves: Vec<_> = a.tensors().into_iter().map(|t| t.require_grad()).collect();
    let a = a.with_tensors(leaves.clone().into_iter());
    let l0 = loss(&a);
    assert!((l0.clone().into_scalar() - std::f32::consts::LN_2).abs() > 1e-3, "Δ should be non-zero");
    let grads = l0.backward();
    // Check a few entries of each kind of matrix (A and B of several layers and targets).
    for (which, entry) in [(0usize, 3usize), (1, 5), (3, 17), (5, 2), (8, 11), (11, 40)] {
        let g = leaves[which].grad(&grads).unwrap().flatten::<1>(0, 1).into_data().to_vec::<f32>().unwrap()[entry] as f64;
        let h = 1e-2f32;
        let shifted = |d: f32| -> f64 {
            let ts: Vec<_> = leaves
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let t = t.clone().inner();
                    if i != which {
                        return Tensor::from_inner(t);
                    }
                    let dims = t.dims();
                    let mut v = t.into_data().to_vec::<f32>().unwrap();
                    v[entry] += d;
                    Tensor::from_inner(Tensor::<Cpu, 2>::from_data(burn::tensor::TensorData::new(v, dims), &device))
                })
                .collect();
            loss(&a.with_tensors(ts.into_iter())).into_scalar() as f64
        };
        let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
        assert!((g - fd).abs() < 2e-3 + 0.02 * fd.abs(), "leaf {which}[{entry}]: autodiff {g} vs finite differences {fd}");
    }
}

/// LoRA training and its Hugging Face export, for a Llama, a Qwen2, a Phi-3, a Qwen3, and a
/// Gemma 2 and 3.
#[test]
fn training_prefers_the_chosen_answers_and_the_export_loads() {
    for arch in ARCHITECTURES.into_iter().chain([Architecture::Gemma2, Architecture::Gemma3]) {
        trains_and_exports(arch);
    }
}

fn trains_and_exports(arch: Architecture) {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny_of(arch, dir.path(), 5);
    let pairs = tokens(&llm);
    let cfg = DpoConfig { lr: 2e-2, epochs: 6, batch_size: 2, grad_accum: 1, schedule: dpo::Schedule::Constant, ..Default::default() };
    let (out, logs) = run(&llm, &pairs, &cfg);
    let tuned = out.unwrap();
    assert_eq!(logs.len(), 12);
    let last = logs.last().unwrap();
    assert!(last.loss < 0.5 && last.rewards_margins > 0.5 && last.rewards_accuracies == 1.0, "{last:?}");
    // Exported in Hugging Face layout, it loads and scores exactly like the tuned module.
    let out = dir.path().join("tuned");
    artifact::write_hf(&tuned, &llm.lm.config, &llm.tokenizer, &dir.path().join("tiny.gguf"), "test", &out, false).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "llm.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let back = artifact::load::<Cpu>(&out, &Default::default(), Purpose::Generate).unwrap();
    let ids = [pairs[0].prompt.clone(), pairs[0].chosen.clone()].concat();
    assert_eq!(back.tokenizer.encode("<|im_start|>user\nhé 42<|im_end|>").unwrap(), llm.tokenizer.encode("<|im_start|>user\nhé 42<|im_end|>").unwrap());
    assert_eq!(back.tokenizer.stop_ids, llm.tokenizer.stop_ids);
    assert!(back.template.is_some());
    let lm = super::lm::Lm::new(tuned, llm.lm.config.clone(), Default::default());
    assert_eq!(back.lm.config, llm.lm.config, "{arch:?}");
    let (a, b) = (rows_of(lm.logits_all(&ids)), rows_of(back.lm.logits_all(&ids)));
    let diff = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-5, "{arch:?}: {diff}");
    if arch == Architecture::Qwen2 {
        // LoRA adapts the matrices; the biases are exported as they were.
        assert_eq!(tuned_bias(&out), bias_of(llm.lm.module()));
    }
    // In bf16: half the bytes, the same model up to bf16 rounding.
    let half = dir.path().join("tuned16");
    artifact::write_hf(lm.module(), &lm.config, &llm.tokenizer, &dir.path().join("tiny.gguf"), "test", &half, true).unwrap();
    let size = |d: &std::path::Path| std::fs::metadata(d.join("model.safetensors")).unwrap().len() as f64;
    assert!(size(&half) < 0.6 * size(&out), "{} vs {}", size(&half), size(&out));
    assert!(std::fs::read_to_string(half.join("config.json")).unwrap().contains("bfloat16"));
    let c = rows_of(artifact::load::<Cpu>(&half, &Default::default(), Purpose::Generate).unwrap().lm.logits_all(&ids));
    let diff16 = a.iter().flatten().zip(c.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let scale = a.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    assert!(diff16 > 0.0 && diff16 < 0.05 * scale, "{diff16} vs logits up to {scale}");
    // The tuned model scores the chosen answers higher than the base did.
    let before = dpo::sequence_logps(llm.lm.module(), &llm.lm.config, &llm.lm.inv_freq, &[(ids.clone(), pairs[0].prompt.len())], None, &Default::default()).0.into_scalar();
    let after = dpo::sequence_logps(lm.module(), &lm.config, &lm.inv_freq, &[(ids, pairs[0].prompt.len())], None, &Default::default()).0.into_scalar();
    assert!(after > before, "{after} vs {before}");
}

/// Layer 0's v bias as exported in `dir`'s model.safetensors.
fn tuned_bias(dir: &std::path::Path) -> Vec<f32> {
    let w = super::weights::from_safetensors(&[dir.join("model.safetensors")]).unwrap();
    w["model.layers.0.self_attn.v_proj.bias"].data.clone()
}

/// Layer 0's v bias of a module.
fn bias_of<B: Backend>(m: &Llama<B>) -> Vec<f32> {
    m.blocks[0].bv.as_ref().expect("a Qwen2 has biases").val().into_data().convert::<f32>().to_vec().unwrap()
}

/// Weight decay shrinks the matrices, not the norms and biases (as the Hugging Face Trainer
/// under TRL groups them): after one step, a decayed run's norm and bias weights equal an
/// undecayed run's, its matrices do not.
#[test]
fn weight_decay_spares_norms_and_biases() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny_of(Architecture::Qwen2, dir.path(), 8);
    let pairs = tokens(&llm);
    let one_step = |weight_decay: f64| {
        let cfg = DpoConfig { lr: 1e-2, epochs: 1, batch_size: 4, grad_accum: 1, weight_decay, tuning: Tuning::Full, ..Default::default() };
        let (out, logs) = run(&llm, &pairs, &cfg);
        assert_eq!(logs.len(), 1);
        out.unwrap()
    };
    let (plain, decayed) = (one_step(0.0), one_step(0.5));
    let v1 = |t: Tensor<Cpu, 1>| t.into_data().to_vec::<f32>().unwrap();
    let v2 = |t: Tensor<Cpu, 2>| t.into_data().to_vec::<f32>().unwrap();
    let (a, b) = (&plain.blocks[1], &decayed.blocks[1]);
    assert_eq!(v1(a.attn_norm.weight.val()), v1(b.attn_norm.weight.val()));
    assert_eq!(v1(a.bqk.as_ref().unwrap().val()), v1(b.bqk.as_ref().unwrap().val()));
    assert_eq!(v1(plain.norm.weight.val()), v1(decayed.norm.weight.val()));
    assert_ne!(v2(a.w_up.val()), v2(b.w_up.val()));
}

/// A tiny model of `arch` (in `dir`) and the module two epochs of full fine-tuning make of it,
/// which lowered the loss.
fn fully_tuned(arch: Architecture, dir: &std::path::Path) -> (artifact::LoadedLlm<CpuTrain>, Llama<Cpu>) {
    let llm = tiny_of(arch, dir, 5);
    let pairs = tokens(&llm);
    let cfg = DpoConfig { lr: 1e-2, epochs: 2, batch_size: 2, grad_accum: 1, schedule: dpo::Schedule::Constant, tuning: Tuning::Full, ..Default::default() };
    let (out, logs) = run(&llm, &pairs, &cfg);
    let tuned = out.unwrap();
    assert!(logs.last().unwrap().loss < std::f64::consts::LN_2, "{arch:?}: {:?}", logs.last());
    (llm, tuned)
}

/// Full fine-tuning trains Qwen2's biases along with its matrices.
#[test]
fn full_fine_tuning_trains_the_biases() {
    let dir = tempfile::tempdir().unwrap();
    let (llm, tuned) = fully_tuned(Architecture::Qwen2, dir.path());
    let moved = bias_of(&tuned).iter().zip(bias_of(llm.lm.module())).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(moved > 1e-4, "the v bias moved by {moved}");
}

/// Layer 1's weights of the norm `which` (`k_norm`, Qwen3's; `post_mlp_norm`, Gemma 2's).
fn norm_of<B: Backend>(m: &Llama<B>, which: &str) -> Vec<f32> {
    let b = &m.blocks[1];
    let norm = match which {
        "k_norm" => &b.k_norm,
        "post_mlp_norm" => &b.post_mlp_norm,
        other => panic!("no norm {other}"),
    };
    norm.as_ref().unwrap_or_else(|| panic!("no {which} here")).weight.val().into_data().convert::<f32>().to_vec().unwrap()
}

/// Full fine-tuning trains the norms an architecture adds (Qwen3's q/k head norms, Gemma 2's
/// norms after attention and the MLP), and the export stores them as its checkpoints do
/// (Gemma's less 1).
#[test]
fn full_fine_tuning_trains_the_norms_an_architecture_adds() {
    for (arch, which, stored_as, offset) in
        [(Architecture::Qwen3, "k_norm", "model.layers.1.self_attn.k_norm.weight", 0.0), (Architecture::Gemma2, "post_mlp_norm", "model.layers.1.post_feedforward_layernorm.weight", 1.0)]
    {
        let dir = tempfile::tempdir().unwrap();
        let (llm, tuned) = fully_tuned(arch, dir.path());
        let moved = norm_of(&tuned, which).iter().zip(norm_of(llm.lm.module(), which)).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(moved > 1e-4, "{arch:?}: layer 1's {which} moved by {moved}");
        let out = dir.path().join("tuned");
        artifact::write_hf(&tuned, &llm.lm.config, &llm.tokenizer, &dir.path().join("tiny.gguf"), "test", &out, false).unwrap();
        let w = super::weights::from_safetensors(&[out.join("model.safetensors")]).unwrap();
        let stored: Vec<f32> = norm_of(&tuned, which).iter().map(|x| x - offset).collect();
        assert_eq!(w[stored_as].data, stored, "{arch:?}");
    }
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 6);
    let pairs = tokens(&llm);
    // Full fine-tuning on Burn's autodiff, LoRA on the host kernels.
    for tuning in [Tuning::Full, DpoConfig::default().tuning] {
        let cfg = DpoConfig { lr: 1e30, max_grad_norm: 0.0, epochs: 3, grad_accum: 1, schedule: dpo::Schedule::Constant, tuning: tuning.clone(), ..Default::default() };
        let (out, logs) = run(&llm, &pairs, &cfg);
        let err = out.expect_err("training must fail");
        assert!(matches!(err, DpoError::NotFinite { .. } | DpoError::GradNotFinite { .. }), "{tuning:?}: {err}");
        assert!(err.to_string().contains("nothing was saved"), "{err}");
        assert!(logs.len() < 6, "{tuning:?}");
    }
}

#[test]
fn schedules_warm_up_and_decay() {
    let cfg = DpoConfig { lr: 1.0, ..Default::default() };
    assert_eq!(dpo::lr_at(&cfg, 0, 10, 2), 0.0);
    assert_eq!(dpo::lr_at(&cfg, 1, 10, 2), 0.5);
    assert_eq!(dpo::lr_at(&cfg, 2, 10, 2), 1.0);
    assert!((dpo::lr_at(&cfg, 6, 10, 2) - 0.5).abs() < 1e-12);
    let cos = DpoConfig { schedule: dpo::Schedule::Cosine, ..cfg.clone() };
    assert!((dpo::lr_at(&cos, 6, 10, 2) - 0.5).abs() < 1e-12);
    assert_eq!(dpo::lr_at(&DpoConfig { schedule: dpo::Schedule::Constant, ..cfg.clone() }, 9, 10, 2), 1.0);
    // 5 pairs, batch 2, accumulation 2: 3 micro-batches -> 2 steps per epoch.
    assert_eq!(dpo::total_steps(&DpoConfig { batch_size: 2, grad_accum: 2, epochs: 3, ..cfg }, 5), 6);
}

/// Writes `fixtures/dpo/tiny/` (the tiny model of the TRL fixture, in Hugging Face layout).
/// Run once with `--ignored`; `fixtures/dpo/make_fixtures.py` then trains it with TRL.
#[test]
#[ignore]
fn make_dpo_fixture_model() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 11);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dpo/tiny");
    let model = llm.lm.module().clone().valid();
    artifact::write_hf(&model, &llm.lm.config, &llm.tokenizer, &dir.path().join("tiny.gguf"), "tiny random test model (seed 11)", &out, false).unwrap();
    // The LoRA A matrices dagrun draws with seed 11 (rank 8, all targets), in PEFT's layout
    // ([r, in] as `model.layers.N.{self_attn|mlp}.X_proj.lora_A.weight`), so the fixture script
    // starts PEFT from the same adapters.
    let a = Adapters::<Cpu>::init(&model, &Target::ALL, 8, 16.0, 11, &Default::default());
    let mut w = super::weights::Weights::new();
    for (i, blk) in a.blocks.iter().enumerate() {
        for t in Target::ALL {
            let p = blk.get(t).unwrap();
            let [rows, cols] = p.a.dims();
            let v = p.a.clone().into_data().to_vec::<f32>().unwrap();
            let mut tr = vec![0f32; v.len()];
            for r in 0..rows {
                for c in 0..cols {
                    tr[c * rows + r] = v[r * cols + c];
                }
            }
            let module = if matches!(t, Target::Gate | Target::Up | Target::Down) { "mlp" } else { "self_attn" };
            w.insert(format!("model.layers.{i}.{module}.{}.lora_A.weight", t.hf_name()), super::weights::HostTensor { shape: vec![cols, rows], data: tr });
        }
    }
    super::weights::write_safetensors(&w, &out.join("../lora_a.safetensors"), None).unwrap();
}

/// Against TRL 1.16 (fixtures/dpo/trl.json, made by fixtures/dpo/make_fixtures.py): the same
/// token ids, and per step the same loss, rewards, log-probs, mean logits and gradient norm
/// over three steps of full fine-tuning, and over three steps of LoRA starting from the same
/// adapter as PEFT (dagrun's seed-11 A matrices, B zero).
#[test]
fn matches_trl_dpo_on_the_fixture_model() {
    check_against_trl("steps", "lr", Tuning::Full, 42, false);
}

/// LoRA on the CPU runs on the host kernels; Burn's autodiff path is checked too.
#[test]
fn lora_matches_trl_with_peft_on_the_fixture_model() {
    for host in [true, false] {
        check_against_trl("lora_steps", "lora_lr", Tuning::Lora { rank: 8, alpha: 16.0, targets: Target::ALL.to_vec() }, 11, host);
    }
}

fn check_against_trl(steps_key: &str, lr_key: &str, tuning: Tuning, seed: u64, host: bool) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dpo");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("trl.json")).unwrap()).unwrap();
    let llm = artifact::load::<CpuTrain>(&root.join("tiny"), &Default::default(), Purpose::Train).unwrap();
    let system = fx["system"].as_str().unwrap();
    let texts: Vec<PairText> = fx["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PairText {
            messages: vec![Message { role: "system".into(), content: system.into() }, Message { role: "user".into(), content: p["prompt"].as_str().unwrap().into() }],
            chosen: p["chosen"].as_str().unwrap().into(),
            rejected: p["rejected"].as_str().unwrap().into(),
        })
        .collect();
    let (pairs, _) = dpo::tokenize_pairs(&llm.tokenizer, llm.template.as_ref(), &texts, 1024).unwrap();
    let pairs: Vec<PairTokens> = pairs.into_iter().map(|(_, p)| p).collect();
    let ids = |v: &serde_json::Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    for (p, t) in pairs.iter().zip(fx["tokenized"].as_array().unwrap()) {
        assert_eq!(p.prompt, ids(&t["prompt_ids"]));
        assert_eq!(p.chosen, ids(&t["chosen_ids"]));
        assert_eq!(p.rejected, ids(&t["rejected_ids"]));
    }
    let steps = fx[steps_key].as_array().unwrap();
    let cfg = DpoConfig { beta: fx["beta"].as_f64().unwrap(), lr: fx[lr_key].as_f64().unwrap(), epochs: steps.len(), batch_size: pairs.len(), grad_accum: 1, tuning, seed, ..Default::default() };
    let (out, logs) = run_on(&llm, &pairs, &cfg, host);
    out.unwrap();
    assert_eq!(logs.len(), steps.len());
    for (ours, trl) in logs.iter().zip(steps) {
        let close = |name: &str, a: f64, key: &str, tol: f64| {
            let b = trl[key].as_f64().unwrap();
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{steps_key} (host kernels: {host}) step {}: {name} {a} vs TRL {b}", ours.step);
        };
        close("loss", ours.loss, "loss", 1e-4);
        close("lr", ours.lr, "learning_rate", 1e-9);
        close("grad_norm", ours.grad_norm, "grad_norm", 1e-3);
        close("rewards_chosen", ours.rewards_chosen, "rewards/chosen", 1e-4);
        close("rewards_rejected", ours.rewards_rejected, "rewards/rejected", 1e-4);
        close("rewards_margins", ours.rewards_margins, "rewards/margins", 1e-4);
        close("rewards_accuracies", ours.rewards_accuracies, "rewards/accuracies", 1e-9);
        close("logps_chosen", ours.logps_chosen, "logps/chosen", 1e-5);
        close("logps_rejected", ours.logps_rejected, "logps/rejected", 1e-5);
        close("logits_chosen", ours.logits_chosen, "logits/chosen", 1e-4);
        close("logits_rejected", ours.logits_rejected, "logits/rejected", 1e-4);
    }
}

#[test]
fn shared_prompt_logps_equal_whole_sequence_logps() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 8);
    let pairs = tokens(&llm);
    let lm = &llm.lm;
    let picked: Vec<&PairTokens> = pairs.iter().collect();
    let shared = dpo::pair_logps(lm.module(), &lm.config, &lm.inv_freq, &picked, None, &lm.device).0.into_data().to_vec::<f32>().unwrap();
    let seqs: Vec<(Vec<u32>, usize)> = [true, false]
        .iter()
        .flat_map(|&c| pairs.iter().map(move |p| ([p.prompt.clone(), if c { p.chosen.clone() } else { p.rejected.clone() }].concat(), p.prompt.len())))
        .collect();
    let whole = dpo::sequence_logps(lm.module(), &lm.config, &lm.inv_freq, &seqs, None, &lm.device).0.into_data().to_vec::<f32>().unwrap();
    for (a, b) in shared.iter().zip(&whole) {
        assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{shared:?} vs {whole:?}");
    }
}

#[test]
fn models_config_json_cannot_express_are_refused_before_training() {
    let mut c = super::tiny::config(1, 16);
    assert!(artifact::can_write_hf(&c).is_ok());
    c.rope_scaling = Some(super::config::RopeScaling::Factors { factors: vec![1.0; c.head_dim / 2] });
    assert!(artifact::can_write_hf(&c).unwrap_err().contains("tune the model's Hugging Face directory instead"));
}

#[test]
fn a_template_that_does_not_continue_the_prompt_is_an_error_naming_the_pair() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 9);
    // Renders the messages last-first, so the prompt is not a prefix of the conversation.
    let reversed = super::chat::ChatTemplate::new("{% for m in messages|reverse %}{{ m['content'] }}|{% endfor %}{% if add_generation_prompt %}>{% endif %}", None, None).unwrap();
    let e = dpo::tokenize_pairs(&llm.tokenizer, Some(&reversed), &texts(), 1024).unwrap_err();
    assert_eq!(e.index, 0);
    assert!(e.to_string().starts_with("pair 0: the chat template does not render the conversation as the prompt followed by the answer"), "{e}");
}

/// The host kernels (LoRA on the CPU) against Burn's autodiff on the same micro-batch: the
/// reference and adapted log-probs, and the loss gradient of every adapter matrix.
#[test]
fn host_kernels_match_burn_autodiff() {
    for arch in ARCHITECTURES {
        host_kernels_match_burn_autodiff_on(arch, "as loaded", |_| {});
    }
    // LongRoPE: other frequencies, and cos/sin scaled (by 1.5 here), forward and backward.
    host_kernels_match_burn_autodiff_on(Architecture::Phi3, "LongRoPE", |c| {
        let l = super::config::LongRope { short_factor: vec![1.0, 1.5, 3.0, 6.0], long_factor: vec![2.0; 4], original_max_position_embeddings: 16, factor: Some(32.0), attention_factor: None };
        c.rope_scaling = Some(super::config::RopeScaling::LongRope(l));
        assert_eq!(c.rope_scale(), 1.5);
    });
    // A 5-token sliding window, much shorter than the pairs.
    host_kernels_match_burn_autodiff_on(Architecture::Llama, "a 5-token window", |c| c.sliding_window = Some(5));
    // Gemma 2: GeGLU, scaled embeddings, output norms, a window in layer 0, another score
    // scale, and soft caps tight enough to matter.
    host_kernels_match_burn_autodiff_on(Architecture::Gemma2, "as loaded", |c| {
        (c.sliding_window, c.query_pre_attn_scalar, c.attn_logit_softcapping, c.final_logit_softcapping) = (Some(5), Some(12.0), Some(2.0), Some(3.0));
    });
    // Gemma 3: head norms, and the window's layer on RoPE of its own.
    host_kernels_match_burn_autodiff_on(Architecture::Gemma3, "as loaded", |c| {
        (c.sliding_window, c.rope_theta, c.local_rope_theta) = (Some(5), 1e6, Some(100.0));
    });
}

fn host_kernels_match_burn_autodiff_on(arch: Architecture, what: &str, edit: impl Fn(&mut super::config::LlamaConfig)) {
    use super::host_dpo::{HostDpo, HostLora};
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny_of(arch, dir.path(), 12);
    let pairs = tokens(&llm);
    let lm = &llm.lm;
    let device = Default::default();
    let mut model = lm.module().clone().no_grad();
    let mut config = lm.config.clone();
    edit(&mut config);
    model.config = config.clone();
    if let Some(w) = config.sliding_window {
        assert!(pairs.iter().all(|p| p.prompt.len() > 2 * w));
    }
    let (config, inv_freq) = (&config, &config.inv_freq());
    let host = HostDpo::new(&model.clone().valid(), config).expect("the CPU backend has host kernels");
    let picked: Vec<&PairTokens> = [0, 1, 3].iter().map(|&i| &pairs[i]).collect();
    let close = |a: &[f64], b: &[f64], tol: f64, what: &str| {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{arch:?} ({what}) {what}: host {a:?} vs Burn {b:?}");
        }
    };
    let to64 = |t: Tensor<CpuTrain, 1>| t.inner().into_data().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect::<Vec<_>>();
    let (burn_ref, burn_sums) = dpo::pair_logps(&model, config, inv_freq, &picked, None, &device);
    let (host_ref, host_sums) = host.pair_logps(&picked, inv_freq, None);
    close(&host_ref, &to64(burn_ref), 1e-5, "reference log-probs");
    close(&host_sums, &to64(burn_sums), 1e-5, "summed mean logits");

    // Adapters on every target with B off zero, so every path carries gradient.
    let cfg = DpoConfig { beta: 0.5, ..Default::default() };
    let a = Adapters::<CpuTrain>::init(&model, &Target::ALL, 4, 8.0, 7, &device);
    let a = b_off_zero(a, 21);
    let leaves: Vec<_> = a.tensors().into_iter().map(|t| t.require_grad()).collect();
    let a = a.with_tensors(leaves.clone().into_iter());
    let order: Vec<usize> = (0..pairs.len()).collect();
    let reference = dpo::reference_logps(&model, config, inv_freq, &pairs, &order, 2, &device);
    let idx = [0usize, 1, 3];
    let mb = dpo::micro_batch(&model, config, inv_freq, &pairs, &idx, &reference, &cfg, Some(&a), &device);
    let burn_logps = to64(mb.logps.clone());
    let grads = mb.per_pair.mean().backward();
    let lora = HostLora::from_adapters(&a.valid());
    let b = idx.len();
    let out = host.pair_grads(&picked, inv_freq, &lora, &mut |logps| {
        let mut g = vec![0f64; 2 * b];
        for (j, &i) in idx.iter().enumerate() {
            let delta = cfg.beta * ((logps[j] - reference[i].0) - (logps[b + j] - reference[i].1));
            let dd = -cfg.beta / (1.0 + delta.exp()) / b as f64;
            (g[j], g[b + j]) = (dd, -dd);
        }
        g
    });
    close(&out.logps, &burn_logps, 1e-5, "adapted log-probs");
    assert_eq!(out.grads.len(), leaves.len());
    for (i, (h, leaf)) in out.grads.iter().zip(&leaves).enumerate() {
        let g = leaf.grad(&grads).unwrap().flatten::<1>(0, 1).into_data().to_vec::<f32>().unwrap();
        assert_eq!(h.len(), g.len(), "leaf {i}");
        let scale = g.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "leaf {i} has no gradient");
        let diff = h.iter().zip(&g).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale + 1e-7, "{arch:?} ({what}) leaf {i}: host and Burn gradients differ by {diff} (largest {scale})");
    }
}

/// The same LoRA training run on the host kernels and on Burn's autodiff logs the same steps.
#[test]
fn lora_training_on_host_kernels_follows_burn_autodiff() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny(dir.path(), 13);
    let pairs = tokens(&llm);
    let cfg = DpoConfig { lr: 1e-2, epochs: 3, batch_size: 2, grad_accum: 1, schedule: dpo::Schedule::Constant, ..Default::default() };
    let (host, host_logs) = run_on(&llm, &pairs, &cfg, true);
    let (burn, burn_logs) = run_on(&llm, &pairs, &cfg, false);
    host.unwrap();
    burn.unwrap();
    assert_eq!(host_logs.len(), 6);
    for (h, b) in host_logs.iter().zip(&burn_logs) {
        for (name, x, y) in [("loss", h.loss, b.loss), ("grad_norm", h.grad_norm, b.grad_norm), ("margins", h.rewards_margins, b.rewards_margins), ("logps", h.logps_chosen, b.logps_chosen)] {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "step {}: {name} {x} on the host vs {y} with Burn", h.step);
        }
    }
    assert!(host_logs.last().unwrap().loss < std::f64::consts::LN_2, "training lowers the loss");
}
