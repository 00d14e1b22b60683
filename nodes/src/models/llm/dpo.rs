//! Direct preference optimisation as TRL and LLaMA-Factory compute it (DPO_REFERENCE §0):
//! sigmoid loss `−log σ(β·Δ)` on summed completion log-probs, chosen and rejected in one
//! right-padded forward, the reference log-probs computed once per pair by the frozen input
//! model, LoRA adapters (or the decoder weights themselves) trained with AdamW, a global
//! gradient-norm clip and a warmup + linear/cosine/constant schedule.

use burn::module::{AutodiffModule, Param};
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorData;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::chat::{ChatTemplate, Message};
use super::config::LlamaConfig;
use super::host_dpo::{HostDpo, HostLora};
use super::llama::{KvCache, Llama, Step};
use super::lm::left_padded;
use super::lora::{self, Adapters, Target};
use super::tokenizer::LlmTokenizer;

/// The learning-rate schedule after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear decay to 0 (Hugging Face Trainer's default).
    #[default]
    Linear,
    /// Half-cosine decay to 0.
    Cosine,
    Constant,
}

/// What is trained.
#[derive(Clone, Debug, PartialEq)]
pub enum Tuning {
    /// LoRA adapters of `rank` on `targets`, scaled by alpha/rank, merged into the output.
    Lora { rank: usize, alpha: f32, targets: Vec<Target> },
    /// Every decoder weight and norm; the embeddings and the LM head stay frozen.
    Full,
}

/// DPO hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct DpoConfig {
    pub beta: f64,
    /// cDPO label smoothing ε (TRL ≤ 0.24): `−(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)`.
    pub label_smoothing: f64,
    pub lr: f64,
    pub epochs: usize,
    /// Pairs per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Share of the optimiser steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    /// Global gradient-norm clip (0: off).
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub adam_betas: (f64, f64),
    pub adam_eps: f64,
    pub tuning: Tuning,
    pub seed: u64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            beta: 0.1,
            label_smoothing: 0.0,
            lr: 5e-5,
            epochs: 3,
            batch_size: 2,
            grad_accum: 8,
            warmup_ratio: 0.0,
            schedule: Schedule::Linear,
            max_grad_norm: 1.0,
            weight_decay: 0.0,
            adam_betas: (0.9, 0.999),
            adam_eps: 1e-8,
            tuning: Tuning::Lora { rank: 8, alpha: 16.0, targets: Target::ALL.to_vec() },
            seed: 42,
        }
    }
}

/// A preference pair as text: the prompt messages and the two assistant answers.
#[derive(Clone, Debug)]
pub struct PairText {
    pub messages: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
}

/// A pair as token ids: the prompt (rendered exactly as `generate` renders it) and each
/// completion (the answer plus the template's end of turn).
#[derive(Clone, Debug, PartialEq)]
pub struct PairTokens {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

/// How tokenisation went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizeReport {
    /// Pairs whose templated prompt+answer did not start with the prompt's own tokens (the
    /// prompt's tokens are kept and the completion tokenised alone, as TRL warns about).
    pub boundary_mismatches: usize,
    /// Pairs whose completions were cut to fit `max_length`.
    pub truncated: usize,
    /// Pairs left out because the prompt alone reaches `max_length`.
    pub dropped: Vec<usize>,
}

/// A pair that could not be tokenised: its index among the input pairs, and why.
#[derive(Debug, thiserror::Error)]
#[error("pair {index}: {message}")]
pub struct PairError {
    pub index: usize,
    pub message: String,
}

/// Tokenises pairs: prompt = the chat template with the generation prompt; completion = the
/// rest of the full conversation (answer and end-of-turn). Sequences longer than
/// `max_length` keep their start (TRL's keep_start); pairs whose prompt does not fit are dropped.
pub fn tokenize_pairs(tok: &LlmTokenizer, template: Option<&ChatTemplate>, pairs: &[PairText], max_length: usize) -> Result<(Vec<(usize, PairTokens)>, TokenizeReport), PairError> {
    let mut report = TokenizeReport::default();
    let mut out = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let fail = |message: String| PairError { index: i, message };
        let prompt_text = render_prompt(template, &p.messages).map_err(fail)?;
        let prompt = tok.encode(&prompt_text).map_err(fail)?;
        let mut mismatch = false;
        let mut completion = |answer: &str| -> Result<Vec<u32>, String> {
            let text = completion_text(tok, template, &p.messages, &prompt_text, answer)?;
            let full = tok.encode(&format!("{prompt_text}{text}"))?;
            if full.len() > prompt.len() && full[..prompt.len()] == prompt[..] {
                Ok(full[prompt.len()..].to_vec())
            } else {
                mismatch = true;
                tok.encode(&text)
            }
        };
        let mut chosen = completion(&p.chosen).map_err(fail)?;
        let mut rejected = completion(&p.rejected).map_err(fail)?;
        if mismatch {
            report.boundary_mismatches += 1;
        }
        if prompt.len() + 1 > max_length {
            report.dropped.push(i);
            continue;
        }
        let room = max_length - prompt.len();
        if chosen.len() > room || rejected.len() > room {
            report.truncated += 1;
            chosen.truncate(room);
            rejected.truncate(room);
        }
        if chosen.is_empty() || rejected.is_empty() {
            return Err(fail("an answer has no tokens".into()));
        }
        out.push((i, PairTokens { prompt, chosen, rejected }));
    }
    Ok((out, report))
}

/// The prompt text as `generate` renders it: the chat template with the generation prompt, or
/// without a template the messages' text as is.
fn render_prompt(template: Option<&ChatTemplate>, messages: &[Message]) -> Result<String, String> {
    match template {
        Some(t) => t.render(messages, true),
        None => Ok(messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n")),
    }
}

/// What follows `prompt` once `answer` is the assistant's turn: the rest of the rendered
/// conversation (answer and end of turn), or without a template the answer then EOS (TRL's
/// plain-text rule).
fn completion_text(tok: &LlmTokenizer, template: Option<&ChatTemplate>, messages: &[Message], prompt: &str, answer: &str) -> Result<String, String> {
    let Some(t) = template else { return Ok(format!("{answer}{}", tok.eos_token.as_deref().unwrap_or(""))) };
    let mut conv = messages.to_vec();
    conv.push(Message { role: "assistant".into(), content: answer.to_string() });
    let full = t.render(&conv, false)?;
    full.strip_prefix(prompt)
        .map(str::to_string)
        .ok_or_else(|| "the chat template does not render the conversation as the prompt followed by the answer; DPO cannot split them".into())
}

/// Summed log-probabilities of each sequence's completion tokens (from index `start` on),
/// [rows], and each row's sum over those tokens of the mean logit (for TRL's token-weighted
/// `logits/*`), in one right-padded forward. Only completion positions go through the LM head.
pub fn sequence_logps<B: Backend>(model: &Llama<B>, config: &LlamaConfig, inv_freq: &[f32], seqs: &[(Vec<u32>, usize)], adapters: Option<&Adapters<B>>, device: &B::Device) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let rows = seqs.len();
    let len = seqs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(rows * len);
    let mut positions = Vec::with_capacity(rows * len);
    let (mut at, mut labels, mut owner) = (Vec::new(), Vec::new(), Vec::new());
    for (r, (seq, start)) in seqs.iter().enumerate() {
        assert!(*start >= 1 && *start < seq.len(), "a completion must follow a non-empty prompt");
        ids.extend(seq);
        ids.extend(std::iter::repeat_n(0u32, len - seq.len()));
        positions.extend(0..len);
        for (t, &tok) in seq.iter().enumerate().skip(*start) {
            at.push((r * len + t - 1) as i64);
            labels.push(tok as i64);
            owner.push(r);
        }
    }
    let visible = |_r: usize, i: usize, s: usize| s <= i;
    let step = Step::new(config, inv_freq, rows, len, &ids, &positions, len, Some(&visible), device);
    let mut cache = KvCache::new(config.num_hidden_layers);
    let hidden = model.forward_adapted(&step, &mut cache, adapters);
    score_tokens(model, hidden, at, labels, &owner, rows, device)
}

/// [`sequence_logps`] for pairs, with each prompt run once: the prompts (left-padded) fill a
/// KV cache that the chosen and the rejected completion (right-padded) both continue from, so
/// a pair costs prompt + 2 answers tokens instead of 2 × (prompt + answer). Returns chosen
/// rows then rejected rows, like the concatenated forward TRL runs.
pub fn pair_logps<B: Backend>(model: &Llama<B>, config: &LlamaConfig, inv_freq: &[f32], pairs: &[&PairTokens], adapters: Option<&Adapters<B>>, device: &B::Device) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let b = pairs.len();
    assert!(pairs.iter().all(|p| !p.prompt.is_empty()), "a completion must follow a non-empty prompt");
    let prompts: Vec<&[u32]> = pairs.iter().map(|p| p.prompt.as_slice()).collect();
    let (step, pad) = left_padded(config, inv_freq, &prompts, device);
    let lp = step.len;
    let mut cache = KvCache::new(config.num_hidden_layers);
    let prompt_hidden = model.forward_adapted(&step, &mut cache, adapters);
    let last: Vec<i64> = (0..b).map(|r| (r * lp + lp - 1) as i64).collect();
    let prompt_last = prompt_hidden.select(0, Tensor::from_data(TensorData::new(last, [b]), device)); // [b, hidden]

    // Rows 0..b continue with the chosen answers, b..2b with the rejected ones.
    let rows = 2 * b;
    let answer = |r: usize| if r < b { &pairs[r].chosen } else { &pairs[r - b].rejected };
    let lc = (0..rows).map(|r| answer(r).len()).max().unwrap_or(1);
    let twice: Vec<i64> = (0..rows).map(|r| (r % b) as i64).collect();
    let mut cache = cache.select_rows(Tensor::from_data(TensorData::new(twice, [rows]), device));
    let (mut ids, mut positions) = (Vec::with_capacity(rows * lc), Vec::with_capacity(rows * lc));
    let (mut at, mut labels, mut owner) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rows {
        let a = answer(r);
        let plen = pairs[r % b].prompt.len();
        ids.extend(a);
        ids.extend(std::iter::repeat_n(0u32, lc - a.len()));
        positions.extend((0..lc).map(|i| plen + i));
        for (t, &tok) in a.iter().enumerate() {
            // The first answer token is scored by the prompt's last position.
            at.push(if t == 0 { (r % b) as i64 } else { (b + r * lc + t - 1) as i64 });
            labels.push(tok as i64);
            owner.push(r);
        }
    }
    let cpad: Vec<usize> = (0..rows).map(|r| pad[r % b]).collect();
    let visible = |r: usize, i: usize, s: usize| if s < lp { s >= cpad[r] } else { s - lp <= i };
    let step = Step::new(config, inv_freq, rows, lc, &ids, &positions, lp + lc, Some(&visible), device);
    let answer_hidden = model.forward_adapted(&step, &mut cache, adapters);
    let hidden = Tensor::cat(vec![prompt_last, answer_hidden], 0);
    score_tokens(model, hidden, at, labels, &owner, rows, device)
}

/// Summed log-probs (and summed mean logits) per row of the tokens `labels`, each predicted by
/// the hidden state at `at`; `owner` says whose token each is.
fn score_tokens<B: Backend>(model: &Llama<B>, hidden: Tensor<B, 2>, at: Vec<i64>, labels: Vec<i64>, owner: &[usize], rows: usize, device: &B::Device) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let n = at.len();
    let hidden = hidden.select(0, Tensor::from_data(TensorData::new(at, [n]), device));
    let logits = model.logits(hidden); // [n, vocab]
    let token_logp = log_softmax(logits.clone(), 1).gather(1, Tensor::from_data(TensorData::new(labels, [n, 1]), device)); // [n, 1]
    // Sum each row's tokens with a [rows, n] indicator matmul.
    let mut seg = vec![0f32; rows * n];
    for (j, &r) in owner.iter().enumerate() {
        seg[r * n + j] = 1.0;
    }
    let seg = Tensor::<B, 2>::from_data(TensorData::new(seg, [rows, n]), device);
    let logps = seg.clone().matmul(token_logp).reshape([rows]);
    let logit_sum = seg.matmul(logits.detach().mean_dim(1)).reshape([rows]);
    (logps, logit_sum)
}

/// One optimiser step's figures (means over its pairs), named after TRL's logs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: f64,
    pub lr: f64,
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    pub rewards_chosen: f64,
    pub rewards_rejected: f64,
    /// Share of pairs with chosen reward strictly above rejected.
    pub rewards_accuracies: f64,
    pub rewards_margins: f64,
    pub logps_chosen: f64,
    pub logps_rejected: f64,
    pub logits_chosen: f64,
    pub logits_rejected: f64,
    pub pairs: usize,
}

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum DpoError {
    #[error("the DPO loss became {value} at step {step} (epoch {epoch:.2}); nothing was saved. Lower `lr`, raise `beta` or check the pairs")]
    NotFinite { value: f64, step: usize, epoch: f64 },
    #[error("the gradient norm became {value} at step {step}; nothing was saved. Lower `lr` or set `max_grad_norm`")]
    GradNotFinite { value: f64, step: usize },
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

/// The learning rate at optimiser step `s` (0-based) of `total`, after `warmup` steps.
pub fn lr_at(cfg: &DpoConfig, s: usize, total: usize, warmup: usize) -> f64 {
    if s < warmup {
        return cfg.lr * s as f64 / warmup.max(1) as f64;
    }
    let progress = (s - warmup) as f64 / (total - warmup).max(1) as f64;
    match cfg.schedule {
        Schedule::Constant => cfg.lr,
        Schedule::Linear => cfg.lr * (1.0 - progress).max(0.0),
        Schedule::Cosine => cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Optimiser steps for `pairs` pairs: micro-batches per epoch, rounded up to whole steps.
pub fn total_steps(cfg: &DpoConfig, pairs: usize) -> usize {
    pairs.div_ceil(cfg.batch_size).div_ceil(cfg.grad_accum) * cfg.epochs
}

/// The tensors being trained.
enum Trainable<B: AutodiffBackend> {
    Lora(Adapters<B>),
    Full,
}

/// A tensor being trained, as the leaf the forward used (so its gradient is recorded).
enum Leaf<B: AutodiffBackend> {
    One(Tensor<B, 1>),
    Two(Tensor<B, 2>),
}

impl<B: AutodiffBackend> Leaf<B> {
    fn value(&self) -> Tensor<B::InnerBackend, 1> {
        match self {
            Leaf::One(t) => t.clone().inner(),
            Leaf::Two(t) => t.clone().inner().flatten(0, 1),
        }
    }
    fn grad(&self, grads: &B::Gradients) -> Tensor<B::InnerBackend, 1> {
        match self {
            Leaf::One(t) => t.grad(grads).unwrap_or_else(|| t.clone().inner().zeros_like()),
            Leaf::Two(t) => t.grad(grads).unwrap_or_else(|| t.clone().inner().zeros_like()).flatten(0, 1),
        }
    }
}

/// The trainable tensors, in a fixed order.
fn leaves<B: AutodiffBackend>(m: &Llama<B>, tr: &Trainable<B>) -> Vec<Leaf<B>> {
    match tr {
        Trainable::Lora(a) => a.tensors().into_iter().map(Leaf::Two).collect(),
        Trainable::Full => {
            let mut out = Vec::new();
            for b in &m.blocks {
                out.push(Leaf::One(b.attn_norm.weight.val()));
                for w in [&b.wqk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down] {
                    out.push(Leaf::Two(w.val()));
                }
                out.push(Leaf::One(b.mlp_norm.weight.val()));
                out.extend([&b.bqk, &b.bv].into_iter().flatten().map(|bias| Leaf::One(bias.val())));
                out.extend([&b.q_norm, &b.k_norm, &b.post_attn_norm, &b.post_mlp_norm].into_iter().flatten().map(|n| Leaf::One(n.weight.val())));
            }
            out.push(Leaf::One(m.norm.weight.val()));
            out
        }
    }
}

/// Puts new values (flattened, in [`leaves`]' order) in place as fresh trainable leaves.
fn set_values<B: AutodiffBackend>(m: &mut Llama<B>, tr: &mut Trainable<B>, values: Vec<Tensor<B::InnerBackend, 1>>) {
    let mut values = values.into_iter();
    match tr {
        Trainable::Lora(a) => {
            let shapes: Vec<[usize; 2]> = a.tensors().iter().map(|t| t.dims()).collect();
            *a = a.with_tensors(shapes.into_iter().map(|s| Tensor::<B, 2>::from_inner(values.next().expect("one value per leaf").reshape(s)).require_grad()));
        }
        Trainable::Full => {
            let mut next = || values.next().expect("one value per leaf");
            let one = |v: Tensor<B::InnerBackend, 1>| Param::from_tensor(Tensor::<B, 1>::from_inner(v));
            for b in &mut m.blocks {
                b.attn_norm.weight = one(next());
                for w in [&mut b.wqk, &mut b.wv, &mut b.wo, &mut b.w_gate, &mut b.w_up, &mut b.w_down] {
                    let dims = w.dims();
                    *w = Param::from_tensor(Tensor::<B, 2>::from_inner(next().reshape(dims)));
                }
                b.mlp_norm.weight = one(next());
                for bias in [&mut b.bqk, &mut b.bv].into_iter().flatten() {
                    *bias = one(next());
                }
                for n in [&mut b.q_norm, &mut b.k_norm, &mut b.post_attn_norm, &mut b.post_mlp_norm].into_iter().flatten() {
                    n.weight = one(next());
                }
            }
            m.norm.weight = one(next());
        }
    }
}

/// AdamW as torch implements it, on flattened tensors; `decays` says which take weight decay.
struct AdamW<B: Backend> {
    m: Vec<Tensor<B, 1>>,
    v: Vec<Tensor<B, 1>>,
    decays: Vec<bool>,
    t: i32,
}

impl<B: Backend> AdamW<B> {
    fn new(params: &[Tensor<B, 1>], decays: Vec<bool>) -> Self {
        AdamW { m: params.iter().map(Tensor::zeros_like).collect(), v: params.iter().map(Tensor::zeros_like).collect(), decays, t: 0 }
    }
    fn step(&mut self, cfg: &DpoConfig, lr: f64, params: Vec<Tensor<B, 1>>, grads: &[Tensor<B, 1>]) -> Vec<Tensor<B, 1>> {
        self.t += 1;
        let (b1, b2) = cfg.adam_betas;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        params
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let g = grads[i].clone();
                self.m[i] = self.m[i].clone().mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1);
                self.v[i] = self.v[i].clone().mul_scalar(b2) + g.clone().powi_scalar(2).mul_scalar(1.0 - b2);
                let p = if cfg.weight_decay > 0.0 && self.decays[i] { p.mul_scalar(1.0 - lr * cfg.weight_decay) } else { p };
                let denom = self.v[i].clone().sqrt().div_scalar(bc2.sqrt()).add_scalar(cfg.adam_eps);
                p - self.m[i].clone().div(denom).mul_scalar(lr / bc1)
            })
            .collect()
    }
}

fn host(t: Tensor<impl Backend, 1>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().expect("f64 data")
}

/// Per-pair reference log-probs (chosen, rejected) by the frozen model, in micro-batches of
/// `batch` pairs in the given order (the first epoch's, so step 0 sees bit-equal numbers).
pub fn reference_logps<B: Backend>(model: &Llama<B>, config: &LlamaConfig, inv_freq: &[f32], pairs: &[PairTokens], order: &[usize], batch: usize, device: &B::Device) -> Vec<(f64, f64)> {
    by_micro_batch(pairs, order, batch, |picked| host(pair_logps(model, config, inv_freq, picked, None, device).0))
}

/// Per-pair (chosen, rejected) log-probs from `logps` (chosen rows then rejected rows of the
/// pairs it is given), called on micro-batches of `batch` pairs in `order`.
fn by_micro_batch(pairs: &[PairTokens], order: &[usize], batch: usize, mut logps: impl FnMut(&[&PairTokens]) -> Vec<f64>) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, 0.0); pairs.len()];
    for chunk in order.chunks(batch) {
        let picked: Vec<&PairTokens> = chunk.iter().map(|&i| &pairs[i]).collect();
        let v = logps(&picked);
        for (j, &p) in chunk.iter().enumerate() {
            out[p] = (v[j], v[j + chunk.len()]);
        }
    }
    out
}

/// One micro-batch's forward: per-pair losses and the figures logged from it.
pub struct MicroBatch<B: Backend> {
    pub per_pair: Tensor<B, 1>,
    /// log πθ − log πref of the chosen / rejected answers.
    pub ratio_c: Tensor<B, 1>,
    pub ratio_r: Tensor<B, 1>,
    /// Chosen then rejected summed log-probs.
    pub logps: Tensor<B, 1>,
    /// Per row, the sum over completion tokens of the mean logit.
    pub logit_sums: Tensor<B, 1>,
    /// Completion tokens per row.
    pub tokens: Vec<usize>,
}

/// The DPO loss of pairs `idx` (chosen and rejected in one forward) against the reference
/// log-probs.
#[allow(clippy::too_many_arguments)]
pub fn micro_batch<B: Backend>(
    model: &Llama<B>,
    config: &LlamaConfig,
    inv_freq: &[f32],
    pairs: &[PairTokens],
    idx: &[usize],
    reference: &[(f64, f64)],
    cfg: &DpoConfig,
    adapters: Option<&Adapters<B>>,
    device: &B::Device,
) -> MicroBatch<B> {
    let picked: Vec<&PairTokens> = idx.iter().map(|&i| &pairs[i]).collect();
    let (logps, logit_sums) = pair_logps(model, config, inv_freq, &picked, adapters, device);
    let tokens = row_tokens(pairs, idx);
    let b = idx.len();
    let (ref_c, ref_r): (Vec<f32>, Vec<f32>) = idx.iter().map(|&i| (reference[i].0 as f32, reference[i].1 as f32)).unzip();
    let ref_c = Tensor::<B, 1>::from_data(TensorData::new(ref_c, [b]), device);
    let ref_r = Tensor::<B, 1>::from_data(TensorData::new(ref_r, [b]), device);
    let ratio_c = logps.clone().narrow(0, 0, b) - ref_c;
    let ratio_r = logps.clone().narrow(0, b, b) - ref_r;
    let delta = (ratio_c.clone() - ratio_r.clone()).mul_scalar(cfg.beta);
    let eps = cfg.label_smoothing;
    let per_pair = if eps > 0.0 { log_sigmoid(delta.clone()).mul_scalar(-(1.0 - eps)) - log_sigmoid(delta.neg()).mul_scalar(eps) } else { log_sigmoid(delta).neg() };
    MicroBatch { per_pair, ratio_c, ratio_r, logps, logit_sums, tokens }
}

/// One micro-batch's contribution to an optimiser step: per-pair losses and ratios, per-row
/// log-probs and summed mean logits (chosen rows then rejected), completion tokens per row,
/// and the gradient of every trainable tensor (of the pairs' summed loss over the step's pairs).
struct MicroOut<B: Backend> {
    loss: Vec<f64>,
    ratio_c: Vec<f64>,
    ratio_r: Vec<f64>,
    logps: Vec<f64>,
    logit_sums: Vec<f64>,
    tokens: Vec<usize>,
    grads: Vec<Tensor<B, 1>>,
}

/// Completion tokens of the pairs `idx`: chosen rows then rejected rows.
fn row_tokens(pairs: &[PairTokens], idx: &[usize]) -> Vec<usize> {
    idx.iter().map(|&i| pairs[i].chosen.len()).chain(idx.iter().map(|&i| pairs[i].rejected.len())).collect()
}

/// A micro-batch through Burn's autodiff.
#[allow(clippy::too_many_arguments)]
fn burn_micro_batch<B: AutodiffBackend>(
    model: &Llama<B>,
    config: &LlamaConfig,
    inv_freq: &[f32],
    pairs: &[PairTokens],
    idx: &[usize],
    reference: &[(f64, f64)],
    cfg: &DpoConfig,
    trainable: &Trainable<B>,
    params: &[Leaf<B>],
    n_pairs: usize,
    device: &B::Device,
) -> MicroOut<B::InnerBackend> {
    let adapters = match trainable {
        Trainable::Lora(a) => Some(a),
        Trainable::Full => None,
    };
    let MicroBatch { per_pair, ratio_c, ratio_r, logps, logit_sums, tokens } = micro_batch(model, config, inv_freq, pairs, idx, reference, cfg, adapters, device);
    // Each pair weighs the same in the step, whatever its micro-batch's size.
    let loss = host(per_pair.clone().detach());
    let grads = per_pair.sum().div_scalar(n_pairs as f64).backward();
    MicroOut {
        loss,
        ratio_c: host(ratio_c.detach()),
        ratio_r: host(ratio_r.detach()),
        logps: host(logps.detach()),
        logit_sums: host(logit_sums.detach()),
        tokens,
        grads: params.iter().map(|p| p.grad(&grads)).collect(),
    }
}

/// log σ(x), stable for large |x|.
fn log_sigmoid_f64(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

fn sigmoid_f64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A LoRA micro-batch on the host kernels; the loss and its derivative in f64.
#[allow(clippy::too_many_arguments)]
fn host_micro_batch<B: AutodiffBackend>(
    h: &HostDpo,
    inv_freq: &[f32],
    pairs: &[PairTokens],
    idx: &[usize],
    reference: &[(f64, f64)],
    cfg: &DpoConfig,
    adapters: &Adapters<B>,
    n_pairs: usize,
    device: &burn::tensor::Device<B::InnerBackend>,
) -> MicroOut<B::InnerBackend> {
    let picked: Vec<&PairTokens> = idx.iter().map(|&i| &pairs[i]).collect();
    let lora = HostLora::from_adapters(&adapters.valid());
    let b = idx.len();
    let (mut loss, mut ratio_c, mut ratio_r) = (vec![0f64; b], vec![0f64; b], vec![0f64; b]);
    let eps = cfg.label_smoothing;
    let out = h.pair_grads(&picked, inv_freq, &lora, &mut |logps| {
        let mut g = vec![0f64; 2 * b];
        for (j, &i) in idx.iter().enumerate() {
            let (rc, rr) = (logps[j] - reference[i].0, logps[b + j] - reference[i].1);
            let delta = cfg.beta * (rc - rr);
            loss[j] = -(1.0 - eps) * log_sigmoid_f64(delta) - eps * log_sigmoid_f64(-delta);
            // d loss / d Δ, over the step's pairs.
            let dd = cfg.beta * (-(1.0 - eps) * sigmoid_f64(-delta) + eps * sigmoid_f64(delta)) / n_pairs as f64;
            (g[j], g[b + j]) = (dd, -dd);
            (ratio_c[j], ratio_r[j]) = (rc, rr);
        }
        g
    });
    let grads = out.grads.into_iter().map(|v| {
        let n = v.len();
        Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(v, [n]), device)
    });
    MicroOut { loss, ratio_c, ratio_r, logps: out.logps, logit_sums: out.logit_sums, tokens: row_tokens(pairs, idx), grads: grads.collect() }
}

/// The epoch orders: a seeded shuffle per epoch (Hugging Face Trainer's random sampler).
pub fn epoch_orders(cfg: &DpoConfig, pairs: usize) -> Vec<Vec<usize>> {
    (0..cfg.epochs)
        .map(|e| {
            let mut order: Vec<usize> = (0..pairs).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed ^ (e as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            order
        })
        .collect()
}

/// Trains `model` (the frozen input, also the reference) on `pairs`; calls `on_step` after
/// every optimiser step and returns the tuned model with any adapters merged. LoRA on the CPU
/// backend runs on the host kernels of [`HostDpo`]; full fine-tuning and other backends run
/// Burn's autodiff.
pub fn train<B: AutodiffBackend>(
    model: Llama<B>,
    config: &LlamaConfig,
    pairs: &[PairTokens],
    cfg: &DpoConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(&StepLog),
    cancelled: &dyn Fn() -> bool,
) -> Result<Llama<B::InnerBackend>, DpoError> {
    train_on(model, config, pairs, cfg, device, on_step, cancelled, true)
}

/// [`train`], with `allow_host` false forcing Burn's autodiff even where the host kernels
/// apply (tests compare the two).
#[allow(clippy::too_many_arguments)]
pub fn train_on<B: AutodiffBackend>(
    model: Llama<B>,
    config: &LlamaConfig,
    pairs: &[PairTokens],
    cfg: &DpoConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(&StepLog),
    cancelled: &dyn Fn() -> bool,
    allow_host: bool,
) -> Result<Llama<B::InnerBackend>, DpoError> {
    if pairs.is_empty() {
        return Err(DpoError::Other("no pairs to train on".into()));
    }
    let inv_freq = config.inv_freq();
    let mut model = model.no_grad();
    let orders = epoch_orders(cfg, pairs.len());
    // LoRA on the CPU runs on the host kernels (base weights frozen: no weight gradients).
    let host = match cfg.tuning {
        Tuning::Lora { .. } if allow_host => HostDpo::new(&model.valid(), config),
        _ => None,
    };
    let reference = match &host {
        // The host kernels without adapters, in the first epoch's micro-batches (so the step-0
        // policy computes bit-equal numbers).
        Some(h) => by_micro_batch(pairs, &orders[0], cfg.batch_size, |picked| h.pair_logps(picked, &inv_freq, None).0),
        None => reference_logps(&model, config, &inv_freq, pairs, &orders[0], cfg.batch_size, device),
    };
    let mut trainable = match &cfg.tuning {
        Tuning::Lora { rank, alpha, targets } => Trainable::Lora(Adapters::init(&model, targets, *rank, *alpha, cfg.seed, device)),
        Tuning::Full => Trainable::Full,
    };
    let start_leaves = leaves(&model, &trainable);
    // Weight decay applies to matrices, not to norms and biases (the 1-D leaves), as the
    // Hugging Face Trainer under TRL groups them.
    let decays: Vec<bool> = start_leaves.iter().map(|l| matches!(l, Leaf::Two(_))).collect();
    let start: Vec<_> = start_leaves.iter().map(Leaf::value).collect();
    set_values(&mut model, &mut trainable, start.clone());
    let mut adam = AdamW::<B::InnerBackend>::new(&start, decays);
    let total = total_steps(cfg, pairs.len());
    let warmup = (cfg.warmup_ratio * total as f64).ceil() as usize;
    let mut step = 0;
    let mut seen = 0;
    for order in &orders {
        let micro: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        for window in micro.chunks(cfg.grad_accum) {
            if cancelled() {
                return Err(DpoError::Cancelled);
            }
            let params = leaves(&model, &trainable);
            let mut sums: Option<Vec<Tensor<B::InnerBackend, 1>>> = None;
            let mut log = StepLog { step: step + 1, ..Default::default() };
            let (mut logit_totals, mut logit_tokens) = ([0f64; 2], [0usize; 2]);
            let n_pairs: usize = window.iter().map(|m| m.len()).sum();
            for idx in window {
                let out = match (&host, &trainable) {
                    (Some(h), Trainable::Lora(a)) => host_micro_batch(h, &inv_freq, pairs, idx, &reference, cfg, a, n_pairs, &start[0].device()),
                    _ => burn_micro_batch(&model, config, &inv_freq, pairs, idx, &reference, cfg, &trainable, &params, n_pairs, device),
                };
                let b = idx.len();
                sums = Some(match sums {
                    None => out.grads,
                    Some(s) => s.into_iter().zip(out.grads).map(|(a, b)| a + b).collect(),
                });
                for j in 0..b {
                    let (wc, wr) = (cfg.beta * out.ratio_c[j], cfg.beta * out.ratio_r[j]);
                    log.loss += out.loss[j];
                    log.rewards_chosen += wc;
                    log.rewards_rejected += wr;
                    log.rewards_accuracies += f64::from(u8::from(wc > wr));
                    log.rewards_margins += wc - wr;
                    log.logps_chosen += out.logps[j];
                    log.logps_rejected += out.logps[j + b];
                    logit_totals[0] += out.logit_sums[j];
                    logit_totals[1] += out.logit_sums[j + b];
                    logit_tokens[0] += out.tokens[j];
                    logit_tokens[1] += out.tokens[j + b];
                }
                seen += b;
            }
            let n = n_pairs as f64;
            for v in [
                &mut log.loss,
                &mut log.rewards_chosen,
                &mut log.rewards_rejected,
                &mut log.rewards_accuracies,
                &mut log.rewards_margins,
                &mut log.logps_chosen,
                &mut log.logps_rejected,
            ] {
                *v /= n;
            }
            // Token-weighted, as TRL logs them.
            log.logits_chosen = logit_totals[0] / logit_tokens[0].max(1) as f64;
            log.logits_rejected = logit_totals[1] / logit_tokens[1].max(1) as f64;
            log.epoch = seen as f64 / pairs.len() as f64;
            log.pairs = seen;
            if !log.loss.is_finite() {
                return Err(DpoError::NotFinite { value: log.loss, step: step + 1, epoch: log.epoch });
            }
            let mut grads = sums.expect("a step has at least one micro-batch");
            let norm = grads.iter().map(|g| g.clone().powi_scalar(2).sum().into_scalar().elem::<f64>()).sum::<f64>().sqrt();
            if !norm.is_finite() {
                return Err(DpoError::GradNotFinite { value: norm, step: step + 1 });
            }
            log.grad_norm = norm;
            if cfg.max_grad_norm > 0.0 {
                let coef = cfg.max_grad_norm / (norm + 1e-6);
                if coef < 1.0 {
                    grads = grads.into_iter().map(|g| g.mul_scalar(coef)).collect();
                }
            }
            let lr = lr_at(cfg, step, total, warmup);
            log.lr = lr;
            let values = adam.step(cfg, lr, params.iter().map(Leaf::value).collect(), &grads);
            set_values(&mut model, &mut trainable, values);
            step += 1;
            on_step(&log);
        }
    }
    Ok(match &trainable {
        Trainable::Lora(a) => lora::merge(model.valid(), &a.valid()),
        Trainable::Full => model.valid(),
    })
}
