//! `generate`: an LLM answers every prompt (N samples each), batched on the node's device.
//! Results are cached per row and sample, so a grown prompt table generates only the new rows.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use burn::prelude::Backend;
use dagrun_engine::cache::Digest;
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Resource, RowPlan, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::models::backend::on_device;
use crate::models::llm::artifact::{self, LlmText};
use crate::models::llm::chat::prompt_messages;
use crate::models::llm::generate::{generate, Completion, Request, Settings};
use crate::models::llm::sample::Sampling;
use crate::types::{LLM, PROMPTS, TEXTS};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    /// Answers drawn per prompt.
    #[serde(default = "one")]
    pub samples: u32,
    /// Sampling temperature; 0 is greedy.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (1 = off).
    #[serde(default = "one_f")]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[serde(default)]
    pub top_k: u32,
    /// Most tokens generated per answer.
    #[serde(default = "default_max_new")]
    pub max_new_tokens: u32,
    /// Sequences decoded together (does not change what is generated).
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// Strings that end an answer (the answer stops before them).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Render prompts with the model's chat template (false: the prompt text as is).
    #[serde(default = "yes")]
    pub chat: bool,
    /// A fixed seed (default: the node's derived seed).
    pub seed: Option<u64>,
}

fn one() -> u32 {
    1
}
fn one_f() -> f32 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_temperature() -> f32 {
    0.7
}
fn default_max_new() -> u32 {
    128
}
fn default_batch() -> u32 {
    16
}

/// The `generate` kind.
pub struct Generate;

impl Kind for Generate {
    type Params = GenerateParams;

    fn name(&self) -> &'static str {
        "generate"
    }
    /// 2: GGUF vocabularies whose tokenization was corrected key their rows anew (see
    /// `LlmTokenizer::revision`); others find their rows cached as before.
    fn version(&self) -> u32 {
        2
    }
    fn summary(&self) -> &'static str {
        "an LLM writes N sampled answers per prompt (batched, KV-cached; cached per row)"
    }
    fn resource(&self, _p: &GenerateParams) -> Resource {
        Resource::Gpu
    }
    fn shardable(&self) -> bool {
        true
    }
    fn seeded(&self, p: &GenerateParams) -> bool {
        p.seed.is_none() && p.temperature > 0.0
    }

    fn signature(&self, p: &GenerateParams) -> Result<Signature, ParamError> {
        if p.samples == 0 {
            return Err(ParamError::field("samples", "must be at least 1"));
        }
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return Err(ParamError::field("temperature", "must be 0 (greedy) or a positive number"));
        }
        if p.temperature == 0.0 && p.samples > 1 {
            return Err(ParamError::field("samples", "greedy decoding (temperature 0) gives the same answer every time; use samples: 1 or a temperature above 0"));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(ParamError::field("top_p", "must be in (0, 1]"));
        }
        if p.max_new_tokens == 0 {
            return Err(ParamError::field("max_new_tokens", "must be at least 1"));
        }
        if p.batch_size == 0 {
            return Err(ParamError::field("batch_size", "must be at least 1"));
        }
        if p.stop.iter().any(String::is_empty) {
            return Err(ParamError::field("stop", "stop strings must not be empty"));
        }
        Ok(Signature { inputs: vec![Port::new("model", LLM), Port::new("prompts", PROMPTS)], outputs: vec![Port::new("texts", TEXTS)] })
    }

    fn rows(&self, p: &GenerateParams, node_seed: u64, inputs: &Inputs) -> Result<Option<RowPlan>, BoxError> {
        let model_in = inputs.get("model").ok_or("no model input")?;
        let llm = artifact::load_text(&model_in.dir)?;
        let (_, keys) = keyed_prompts(p, seed(p, node_seed), &llm, &model_in.digest, &read_prompts(inputs)?)?;
        Ok(Some(RowPlan { cache: "generate".into(), keys: keys.into_iter().flatten().collect(), unit: "answers" }))
    }
    fn run(&self, p: &GenerateParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        on_device!(ctx.device(), crate::models::backend::Cpu, crate::models::backend::Gpu, |B, device| run_on::<B>(p, ctx, inputs, &device))
    }
}

struct PromptRow {
    id: i32,
    key: String,
    system: Option<String>,
    prompt: String,
}

fn read_prompts(inputs: &Inputs) -> Result<Vec<PromptRow>, BoxError> {
    let b = inputs.table("prompts")?.concat()?;
    let col = |name: &str| b.column_by_name(name).ok_or_else(|| format!("prompts table has no `{name}` column"));
    let ids = col("id")?.as_any().downcast_ref::<Int32Array>().ok_or("`id` is not int32")?.clone();
    let keys = col("key")?.as_any().downcast_ref::<StringArray>().ok_or("`key` is not a string")?.clone();
    let systems = col("system")?.as_any().downcast_ref::<StringArray>().ok_or("`system` is not a string")?.clone();
    let prompts = col("prompt")?.as_any().downcast_ref::<StringArray>().ok_or("`prompt` is not a string")?.clone();
    Ok((0..b.num_rows())
        .map(|i| PromptRow {
            id: ids.value(i),
            key: keys.value(i).to_string(),
            system: (!systems.is_null(i)).then(|| systems.value(i).to_string()),
            prompt: prompts.value(i).to_string(),
        })
        .collect())
}

/// What decides one row's answer, for its row-cache key and its RNG seed.
/// `tokenizer` is the tokenizer's revision where it has one (`LlmTokenizer::revision`): the
/// same rendered prompt then stands for other token ids than before, so for another answer.
fn row_key(model: &Digest, tokenizer: Option<u32>, p: &GenerateParams, seed: u64, rendered: &str, key: &str, sample: u32) -> Digest {
    let mut desc = serde_json::json!({
        "v": 1, "model": model.hex(), "temperature": p.temperature, "top_p": p.top_p, "top_k": p.top_k,
        "max_new_tokens": p.max_new_tokens, "stop": p.stop, "seed": seed, "prompt": rendered, "key": key, "sample": sample,
    });
    if let Some(revision) = tokenizer {
        desc["tokenizer"] = revision.into();
    }
    Digest::of(desc.to_string().as_bytes())
}

/// The seed answers are drawn with: the param, else the node's derived seed when sampling.
fn seed(p: &GenerateParams, node_seed: u64) -> u64 {
    p.seed.unwrap_or(if p.temperature > 0.0 { node_seed } else { 0 })
}

/// Every prompt rendered as the model sees it, and the row keys of its samples.
fn keyed_prompts(p: &GenerateParams, seed: u64, llm: &LlmText, model: &Digest, rows: &[PromptRow]) -> Result<(Vec<String>, Vec<Vec<Digest>>), BoxError> {
    let mut rendered_rows = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let rendered = if p.chat {
            let t = llm.template.as_ref().ok_or("the model has no chat template; set `chat: false` to use the prompt text as is")?;
            let messages = prompt_messages(row.system.as_deref(), &row.prompt);
            t.render(&messages, true).map_err(|e| format!("prompt {}: {e}", row.key))?
        } else {
            row.prompt.clone()
        };
        keys.push((0..p.samples).map(|s| row_key(model, llm.tokenizer.revision, p, seed, &rendered, &row.key, s)).collect());
        rendered_rows.push(rendered);
    }
    Ok((rendered_rows, keys))
}

fn rng_seed(seed: u64, key: &str, sample: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(key.as_bytes());
    h.update(&sample.to_le_bytes());
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

fn run_on<B: Backend>(p: &GenerateParams, ctx: &NodeContext, inputs: &Inputs, device: &B::Device) -> Result<(), BoxError> {
    let mut rows = read_prompts(inputs)?;
    if let Some(shard) = ctx.shard() {
        // One shard of the prompts (every sample of a prompt in the same shard, which
        // prefills it once).
        let all = rows.len();
        rows.retain(|r| shard.owns(&r.key));
        ctx.log(format!("shard {shard}: {} of {all} prompts", rows.len()));
    }
    let model_in = inputs.get("model").ok_or("no model input")?;
    let llm = artifact::load_text(&model_in.dir)?;
    let seed = seed(p, ctx.seed());
    let rows_cache = ctx.row_cache("generate");

    // Render every prompt; look every (row, sample) up in the row cache (and the remote's).
    let (rendered_rows, keys) = keyed_prompts(p, seed, &llm, &model_in.digest, &rows)?;
    let all_keys: Vec<Digest> = keys.iter().flatten().copied().collect();
    let valid = |b: &[u8]| serde_json::from_slice::<Completion>(b).is_ok();
    ctx.progress().message("looking up answers already generated");
    let lookup = rows_cache.as_ref().map(|c| c.get_many(&all_keys, &valid)).unwrap_or_default();
    for w in &lookup.warnings {
        ctx.log(format!("warning: {w}"));
    }
    let mut hits = lookup.found.into_iter().map(|b| b.and_then(|b| serde_json::from_slice::<Completion>(&b).ok()));

    // Tokenize the prompts that still need answers.
    let mut results: Vec<Vec<Option<Completion>>> = vec![vec![None; p.samples as usize]; rows.len()];
    let mut requests = Vec::new();
    let mut request_row = Vec::new();
    let mut request_samples: Vec<Vec<u32>> = Vec::new();
    for (r, (row, rendered)) in rows.iter().zip(&rendered_rows).enumerate() {
        let mut missing = Vec::new();
        for (s, slot) in results[r].iter_mut().enumerate() {
            match hits.next().flatten() {
                Some(c) => *slot = Some(c),
                None => missing.push(s as u32),
            }
        }
        if !missing.is_empty() {
            let ids = llm.tokenizer.encode(rendered)?;
            if ids.is_empty() {
                return Err(format!("prompt {} is empty after rendering", row.key).into());
            }
            requests.push(Request { prompt: ids, seeds: missing.iter().map(|&s| rng_seed(seed, &row.key, s)).collect() });
            request_row.push(r);
            request_samples.push(missing);
        }
    }
    let todo: usize = requests.iter().map(|r| r.seeds.len()).sum();
    let total = rows.len() * p.samples as usize;
    if todo < total {
        let remote = if lookup.from_remote > 0 { format!(" ({} of them from the remote)", lookup.from_remote) } else { String::new() };
        ctx.log(format!("{} of {total} answers from the row cache{remote}; generating {todo}", total - todo));
    }
    let settings = Settings {
        sampling: Sampling { temperature: p.temperature, top_p: p.top_p, top_k: p.top_k as usize },
        max_new_tokens: p.max_new_tokens as usize,
        stop: p.stop.clone(),
        batch_size: p.batch_size as usize,
    };
    // The weights are read only when there is something to generate.
    let lm = match todo {
        0 => None,
        _ => {
            ctx.progress().message("loading the model");
            let loading = Instant::now();
            let lm = artifact::load_lm::<B>(&model_in.dir, device, artifact::Purpose::Generate)?;
            let packed = lm.packed_bytes().map(|b| format!(", weights packed in {:.0} MB", b as f64 / 1e6)).unwrap_or_default();
            ctx.log(format!("model loaded in {:.1} s{packed}", loading.elapsed().as_secs_f64()));
            Some(lm)
        }
    };
    ctx.progress().start(Some(todo as u64), "answers");
    let started = Instant::now();
    let generated = std::sync::atomic::AtomicU64::new(0);
    let on_tokens = |n: u64| {
        let t = generated.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        ctx.progress().message(format!("{:.0} tok/s", t as f64 / started.elapsed().as_secs_f64().max(1e-9)));
    };
    let mut on_done = |batch: Vec<(usize, usize, Completion)>| -> Result<(), String> {
        let mut stored = Vec::with_capacity(batch.len());
        for (req, i, c) in batch {
            let (r, s) = (request_row[req], request_samples[req][i] as usize);
            stored.push((keys[r][s], serde_json::to_vec(&c).map_err(|e| e.to_string())?));
            results[r][s] = Some(c);
            ctx.progress().inc(1);
        }
        if let Some(cache) = &rows_cache {
            cache.put_many(&stored).map_err(|e| format!("row cache: {e}"))?;
        }
        Ok(())
    };
    if let Some(lm) = &lm {
        // A prompt too long for the model, named by its key (`generate` knows only its index).
        let span = lm.config.span();
        for (q, &r) in requests.iter().zip(&request_row) {
            span.check_generation(&rows[r].key, q.prompt.len(), settings.max_new_tokens)?;
        }
        generate(lm, &llm.tokenizer, &requests, &settings, &mut on_done, &on_tokens, &|| ctx.is_cancelled())?;
    }
    ctx.check_cancelled()?;
    let tokens = generated.load(std::sync::atomic::Ordering::Relaxed);
    if todo > 0 {
        ctx.log(format!("generated {todo} answers, {tokens} tokens in {:.1} s ({:.0} tok/s)", started.elapsed().as_secs_f64(), tokens as f64 / started.elapsed().as_secs_f64().max(1e-9)));
    }

    if ctx.shard().is_some() {
        // A shard's answers are in the row cache, to be uploaded; the table is the driver's.
        return Ok(());
    }
    let (mut ids, mut rkeys, mut samples, mut texts, mut counts, mut finishes, mut logprobs) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (row, res) in rows.iter().zip(results) {
        for (s, c) in res.into_iter().enumerate() {
            let c = c.ok_or("an answer is missing")?;
            ids.push(row.id);
            rkeys.push(row.key.clone());
            samples.push(s as i32);
            texts.push(c.text);
            counts.push(c.tokens.len() as i32);
            finishes.push(c.finish.as_str());
            logprobs.push(c.logprob);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("sample", DataType::Int32, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("tokens", DataType::Int32, false),
        Field::new("finish", DataType::Utf8, false),
        Field::new("logprob", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(ids)),
            Arc::new(StringArray::from(rkeys)),
            Arc::new(Int32Array::from(samples)),
            Arc::new(StringArray::from(texts)),
            Arc::new(Int32Array::from(counts)),
            Arc::new(StringArray::from(finishes)),
            Arc::new(Float64Array::from(logprobs)),
        ],
    )?;
    ctx.write_batch("texts", &batch)?;
    Ok(())
}
