//! `dpo`: tunes an LLM on preference pairs with direct preference optimisation (LoRA by
//! default, merged into the output) and writes it as a Hugging Face model, plus the training
//! log. The input model is both the starting policy and the frozen reference, so a round k
//! node fed round k−1's output gets round k−1 as its reference.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use burn::tensor::backend::AutodiffBackend;
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Resource, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::models::backend::on_device;
use crate::models::llm::artifact;
use crate::models::llm::chat::prompt_messages;
use crate::models::llm::dpo::{self, DpoConfig, DpoError, PairText, Schedule, StepLog, Tuning};
use crate::models::llm::lora::Target;
use crate::types::{DPO_LOG, LLM, PAIRS};

/// What DPO trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Finetuning {
    /// LoRA adapters, merged into the output weights.
    #[default]
    Lora,
    /// Every decoder weight and norm (embeddings and LM head frozen).
    Full,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpoParams {
    /// β: how far the policy may move from the reference (TRL/LLaMA-Factory default 0.1).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// cDPO label smoothing ε in [0, 0.5).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Pairs per micro-batch (chosen and rejected go through one forward).
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// Micro-batches per optimiser step.
    #[serde(default = "default_accum")]
    pub grad_accum: u32,
    /// Share of steps spent warming the learning rate up.
    #[serde(default)]
    pub warmup_ratio: f64,
    /// Learning-rate decay after warmup: linear, cosine or constant.
    #[serde(default)]
    pub schedule: Schedule,
    /// Clip the global gradient norm to this (0: off).
    #[serde(default = "one")]
    pub max_grad_norm: f64,
    /// AdamW's decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// lora (default) or full.
    #[serde(default)]
    pub finetuning: Finetuning,
    #[serde(default = "default_rank")]
    pub lora_rank: u32,
    /// LoRA α (default 2 × rank, LLaMA-Factory's).
    pub lora_alpha: Option<f32>,
    /// Projections LoRA adapts (default all: q, k, v, o, gate, up, down).
    #[serde(default = "all_targets")]
    pub lora_targets: Vec<Target>,
    /// Longest prompt + answer in tokens; longer answers are cut, prompts that do not fit
    /// drop their pair.
    #[serde(default = "default_max_length")]
    pub max_length: u32,
    /// Render prompts with the chat template, as `generate` did (set as in generate).
    #[serde(default = "yes")]
    pub chat: bool,
    /// A fixed seed for LoRA's init and the shuffle (default: the node's derived seed).
    pub seed: Option<u64>,
    /// The tuned weights' file type: `f32` (default, exact) or `bf16` (half the size; what
    /// large checkpoints ship as).
    #[serde(default)]
    pub save_dtype: SaveDtype,
}

/// How the tuned weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SaveDtype {
    #[default]
    F32,
    Bf16,
}

fn default_beta() -> f64 {
    0.1
}
fn default_lr() -> f64 {
    5e-5
}
fn default_epochs() -> u32 {
    3
}
fn default_batch() -> u32 {
    2
}
fn default_accum() -> u32 {
    8
}
fn one() -> f64 {
    1.0
}
fn default_rank() -> u32 {
    8
}
fn all_targets() -> Vec<Target> {
    Target::ALL.to_vec()
}
fn default_max_length() -> u32 {
    1024
}
fn yes() -> bool {
    true
}

impl DpoParams {
    fn config(&self, seed: u64) -> DpoConfig {
        let tuning = match self.finetuning {
            Finetuning::Lora => {
                let mut targets = self.lora_targets.clone();
                targets.sort();
                targets.dedup();
                Tuning::Lora { rank: self.lora_rank as usize, alpha: self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f32), targets }
            }
            Finetuning::Full => Tuning::Full,
        };
        DpoConfig {
            beta: self.beta,
            label_smoothing: self.label_smoothing,
            lr: self.lr,
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            grad_accum: self.grad_accum as usize,
            warmup_ratio: self.warmup_ratio,
            schedule: self.schedule,
            max_grad_norm: self.max_grad_norm,
            weight_decay: self.weight_decay,
            tuning,
            seed,
            ..Default::default()
        }
    }
}

/// The `dpo` kind.
pub struct Dpo;

impl Kind for Dpo {
    type Params = DpoParams;

    fn name(&self) -> &'static str {
        "dpo"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "tunes an LLM on chosen/rejected pairs with DPO (LoRA merged, or full); writes a Hugging Face model and the training log"
    }
    fn resource(&self, _p: &DpoParams) -> Resource {
        Resource::Gpu
    }
    fn seeded(&self, p: &DpoParams) -> bool {
        p.seed.is_none()
    }

    fn signature(&self, p: &DpoParams) -> Result<Signature, ParamError> {
        let positive = |name: &str, v: f64| if v > 0.0 && v.is_finite() { Ok(()) } else { Err(ParamError::field(name, "must be a positive number")) };
        positive("beta", p.beta)?;
        positive("lr", p.lr)?;
        if !(0.0..0.5).contains(&p.label_smoothing) {
            return Err(ParamError::field("label_smoothing", "must be in [0, 0.5)"));
        }
        for (name, v) in [("epochs", p.epochs), ("batch_size", p.batch_size), ("grad_accum", p.grad_accum), ("max_length", p.max_length)] {
            if v == 0 {
                return Err(ParamError::field(name, "must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&p.warmup_ratio) {
            return Err(ParamError::field("warmup_ratio", "must be in [0, 1)"));
        }
        if !(p.max_grad_norm >= 0.0 && p.max_grad_norm.is_finite()) {
            return Err(ParamError::field("max_grad_norm", "must be 0 (off) or a positive number"));
        }
        if !(p.weight_decay >= 0.0 && p.weight_decay.is_finite()) {
            return Err(ParamError::field("weight_decay", "must be 0 or a positive number"));
        }
        if p.finetuning == Finetuning::Lora {
            if p.lora_rank == 0 {
                return Err(ParamError::field("lora_rank", "must be at least 1"));
            }
            if p.lora_targets.is_empty() {
                return Err(ParamError::field("lora_targets", "name at least one of q, k, v, o, gate, up, down"));
            }
            if p.lora_alpha.is_some_and(|a| !(a > 0.0 && a.is_finite())) {
                return Err(ParamError::field("lora_alpha", "must be a positive number"));
            }
        }
        Ok(Signature { inputs: vec![Port::new("model", LLM), Port::new("pairs", PAIRS)], outputs: vec![Port::new("model", LLM), Port::new("log", DPO_LOG)] })
    }

    fn run(&self, p: &DpoParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        on_device!(ctx.device(), crate::models::backend::CpuTrain, crate::models::backend::GpuTrain, |B, device| run_on::<B>(p, ctx, inputs, &device))
    }
}

/// The pairs table as prompt messages and answers, with each pair's key.
fn read_pairs(inputs: &Inputs, chat: bool) -> Result<Vec<(String, PairText)>, BoxError> {
    let b = inputs.table("pairs")?.concat()?;
    let col = |name: &str| -> Result<StringArray, BoxError> {
        let c = b.column_by_name(name).ok_or_else(|| format!("the pairs table has no `{name}` column"))?;
        Ok(c.as_any().downcast_ref::<StringArray>().ok_or_else(|| format!("the pairs table's `{name}` is not a string column"))?.clone())
    };
    let (keys, prompts, chosen, rejected) = (col("key")?, col("prompt")?, col("chosen")?, col("rejected")?);
    let systems = if b.column_by_name("system").is_some() { Some(col("system")?) } else { None };
    Ok((0..b.num_rows())
        .map(|i| {
            let system = systems.as_ref().filter(|s| chat && !s.is_null(i)).map(|s| s.value(i));
            let messages = prompt_messages(system, prompts.value(i));
            (keys.value(i).to_string(), PairText { messages, chosen: chosen.value(i).to_string(), rejected: rejected.value(i).to_string() })
        })
        .collect())
}

fn run_on<B: AutodiffBackend>(p: &DpoParams, ctx: &NodeContext, inputs: &Inputs, device: &B::Device) -> Result<(), BoxError> {
    let rows = read_pairs(inputs, p.chat)?;
    if rows.is_empty() {
        return Err("the pairs table is empty: nothing to train on".into());
    }
    let model_in = inputs.get("model").ok_or("no model input")?;
    ctx.progress().message("loading the model");
    let llm = artifact::load::<B>(&model_in.dir, device, artifact::Purpose::Train)?;
    artifact::can_write_hf(&llm.lm.config)?;
    let template = if p.chat { Some(llm.template.as_ref().ok_or("the model has no chat template; set `chat: false` (as in the generate node) to use the prompt text as is")?) } else { None };
    let texts: Vec<PairText> = rows.iter().map(|(_, t)| t.clone()).collect();
    // A failing pair is named by its user.
    let (tokenized, report) = dpo::tokenize_pairs(&llm.tokenizer, template, &texts, p.max_length as usize).map_err(|e| format!("{e} (user {})", rows[e.index].0))?;
    if report.boundary_mismatches > 0 {
        ctx.log(format!("{} pairs: the prompt's tokens are not a prefix of the whole conversation's; their answers were tokenised on their own", report.boundary_mismatches));
    }
    if report.truncated > 0 {
        ctx.log(format!("{} pairs had answers cut to max_length {}", report.truncated, p.max_length));
    }
    if !report.dropped.is_empty() {
        let keys: Vec<&str> = report.dropped.iter().take(5).map(|&i| rows[i].0.as_str()).collect();
        ctx.log(format!("{} pairs dropped: their prompt alone reaches max_length {} (users {}{})", report.dropped.len(), p.max_length, keys.join(", "), if report.dropped.len() > 5 { ", …" } else { "" }));
    }
    if tokenized.is_empty() {
        return Err(format!("no pair fits max_length {}: every prompt alone is that long; raise max_length", p.max_length).into());
    }
    let span = llm.lm.config.span();
    if let Some((i, t)) = tokenized.iter().find(|(_, t)| t.prompt.len() + t.chosen.len().max(t.rejected.len()) > span.tokens) {
        let (prompt, answer) = (t.prompt.len(), t.chosen.len().max(t.rejected.len()));
        return Err(format!(
            "user {}'s pair is {} tokens long (prompt {prompt} + answer {answer}), more than {span}; set max_length to at most {} (answers are then cut to fit, and pairs whose prompt alone is that long left out)",
            rows[*i].0,
            prompt + answer,
            span.tokens
        )
        .into());
    }
    let pairs: Vec<_> = tokenized.into_iter().map(|(_, t)| t).collect();
    let cfg = p.config(p.seed.unwrap_or_else(|| ctx.seed()));
    let total = dpo::total_steps(&cfg, pairs.len());
    let tokens: usize = pairs.iter().map(|q| 2 * q.prompt.len() + q.chosen.len() + q.rejected.len()).sum();
    ctx.log(format!(
        "{} pairs ({} tokens per epoch), {} epochs of {} steps ({} pairs per step), {}",
        pairs.len(),
        tokens,
        cfg.epochs,
        total / cfg.epochs.max(1),
        cfg.batch_size * cfg.grad_accum,
        match &cfg.tuning {
            Tuning::Lora { rank, alpha, targets } => format!("LoRA rank {rank}, alpha {alpha} on {}", targets.iter().map(|t| t.hf_name()).collect::<Vec<_>>().join(", ")),
            Tuning::Full => "full fine-tuning".to_string(),
        }
    ));
    ctx.progress().message("reference log-probs");
    ctx.progress().start(Some(total as u64), "steps");
    let started = Instant::now();
    let mut logs: Vec<StepLog> = Vec::new();
    let mut on_step = |l: &StepLog| {
        ctx.progress().inc(1);
        ctx.progress().message(format!("loss {:.4}, margin {:.3}, {:.2} pairs/s", l.loss, l.rewards_margins, l.pairs as f64 / started.elapsed().as_secs_f64().max(1e-9)));
        logs.push(l.clone());
    };
    let config = llm.lm.config.clone();
    let tuned = dpo::train(llm.lm.into_module(), &config, &pairs, &cfg, device, &mut on_step, &|| ctx.is_cancelled()).map_err(|e| -> BoxError {
        match e {
            DpoError::Cancelled => match ctx.check_cancelled() {
                Err(c) => Box::new(c),
                Ok(()) => "cancelled".into(),
            },
            other => other.to_string().into(),
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
        ctx.log(format!(
            "trained {} steps in {secs:.1} s ({:.2} pairs/s): loss {:.4} -> {:.4}, reward accuracy {:.2} -> {:.2}, margin {:.3} -> {:.3}",
            logs.len(),
            last.pairs as f64 / secs.max(1e-9),
            first.loss,
            last.loss,
            first.rewards_accuracies,
            last.rewards_accuracies,
            first.rewards_margins,
            last.rewards_margins
        ));
    }
    ctx.progress().message("writing the tuned model");
    let described = format!("dpo of {} on {} pairs", model_in.digest.hex(), pairs.len());
    artifact::write_hf(&tuned, &config, &llm.tokenizer, &model_in.dir, &described, ctx.output_dir("model")?, p.save_dtype == SaveDtype::Bf16)?;
    ctx.write_batch("log", &log_table(&logs)?)?;
    Ok(())
}

fn log_table(logs: &[StepLog]) -> Result<RecordBatch, BoxError> {
    let f = |name: &str| Field::new(name, DataType::Float64, false);
    let schema = Arc::new(Schema::new(vec![
        Field::new("step", DataType::Int32, false),
        f("epoch"),
        f("lr"),
        f("loss"),
        f("grad_norm"),
        f("rewards_chosen"),
        f("rewards_rejected"),
        f("rewards_accuracies"),
        f("rewards_margins"),
        f("logps_chosen"),
        f("logps_rejected"),
        f("logits_chosen"),
        f("logits_rejected"),
        Field::new("pairs", DataType::Int32, false),
    ]));
    let col = |get: fn(&StepLog) -> f64| Arc::new(Float64Array::from(logs.iter().map(get).collect::<Vec<_>>())) as Arc<dyn Array>;
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(logs.iter().map(|l| l.step as i32).collect::<Vec<_>>())),
            col(|l| l.epoch),
            col(|l| l.lr),
            col(|l| l.loss),
            col(|l| l.grad_norm),
            col(|l| l.rewards_chosen),
            col(|l| l.rewards_rejected),
            col(|l| l.rewards_accuracies),
            col(|l| l.rewards_margins),
            col(|l| l.logps_chosen),
            col(|l| l.logps_rejected),
            col(|l| l.logits_chosen),
            col(|l| l.logits_rejected),
            Arc::new(Int32Array::from(logs.iter().map(|l| l.pairs as i32).collect::<Vec<_>>())),
        ],
    )?)
}
