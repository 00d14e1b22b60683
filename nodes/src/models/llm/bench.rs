//! `dagrun bench llm`: prefill, batch-1 decode and batched sampling throughput, measured the
//! way `bench/llm_transformers.py` measures Hugging Face transformers on the same token ids.

use std::time::Instant;

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::artifact::LoadedLlm;
use crate::models::median;
use super::generate::{generate, Request, Settings};
use super::lm::rows_of;
use super::sample::{argmax, Sampling};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchSettings {
    /// Tokens in the batch-1 prompt; the batched prompts vary ±10% around it.
    pub prompt_tokens: usize,
    /// New tokens per row when decoding and sampling (EOS is ignored so every row runs to it).
    pub new_tokens: usize,
    /// Prompts sampled together.
    pub batch: usize,
    /// Timed repetitions after one warm-up; figures are medians.
    pub repeats: usize,
}

/// The token ids every tool is fed, so the comparison is on identical work.
#[derive(Clone, Debug, Serialize)]
pub struct BenchPrompts {
    pub single: Vec<u32>,
    pub batch: Vec<Vec<u32>>,
    pub new_tokens: usize,
    pub repeats: usize,
}

/// Throughput in tokens per second (medians over the repeats).
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct Figures {
    /// On a GPU: the largest |GPU − CPU| next-token logit over the bench prompts (prefill of
    /// the batch, then 8 greedy decode steps), for the same weights.
    #[serde(default)]
    pub max_logit_diff: Option<f32>,
    /// Prompt tokens per second, one ~`prompt_tokens` prompt, up to its first logits.
    pub prefill: f64,
    /// New tokens per second decoding one row greedily (prefill excluded).
    pub decode: f64,
    /// New tokens per second sampling `batch` prompts at temperature 0.7, prefill included.
    pub sampling: f64,
    /// Prompt tokens per second prefilling the `batch` sampling prompts together, up to their
    /// first logits: the part of a sampling run before its first new token.
    #[serde(default)]
    pub batch_prefill: f64,
}

const WORDS: &[&str] = &[
    "the", "reader", "enjoyed", "mystery", "novels", "with", "a", "slow", "burn", "and", "history", "of", "science", "fiction",
    "rated", "stars", "because", "characters", "felt", "real", "while", "plot", "twists", "were", "predictable", "romance",
    "fantasy", "dragons", "detective", "Victorian", "London", "space", "opera", "biography", "cookbook", "poetry", "1984",
    "thriller", "series", "book", "2", "of", "7", "author's", "debut", "prize-winning", "translated", "from", "French",
];

/// Deterministic English-like prompts of the requested token lengths.
pub fn bench_prompts<B: Backend>(llm: &LoadedLlm<B>, s: &BenchSettings) -> Result<BenchPrompts, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut text_of = |tokens: usize| -> Result<Vec<u32>, String> {
        let mut text = String::from("Given a user's reading history, describe their preferences.\nHistory:");
        loop {
            let ids = llm.tokenizer.encode(&text)?;
            if ids.len() >= tokens {
                return Ok(ids[..tokens].to_vec());
            }
            for _ in 0..32 {
                text.push(' ');
                text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            }
            text.push_str(".\n");
        }
    };
    let single = text_of(s.prompt_tokens.max(1))?;
    // Lengths spread evenly over prompt_tokens ± 10%, shortest first.
    let spread = s.prompt_tokens / 10;
    let last = s.batch.saturating_sub(1).max(1);
    let batch = (0..s.batch.max(1)).map(|i| text_of((s.prompt_tokens - spread + 2 * spread * i / last).max(1))).collect::<Result<_, _>>()?;
    Ok(BenchPrompts { single, batch, new_tokens: s.new_tokens, repeats: s.repeats })
}

/// Loads the model at `path` on `device`, makes the prompts and measures; on a GPU, also
/// compares its logits with the CPU's.
pub fn measure(path: &std::path::Path, s: &BenchSettings, device: dagrun_engine::Device, progress: &mut dyn FnMut(&str)) -> Result<(BenchPrompts, Figures), String> {
    let on_gpu = device != dagrun_engine::Device::Cpu;
    crate::models::backend::on_device!(device, crate::models::backend::Cpu, crate::models::backend::Gpu, |B, dev| {
        let llm = super::artifact::load::<B>(path, &dev, super::artifact::Purpose::Generate)?;
        let prompts = bench_prompts(&llm, s)?;
        let mut figures = run(&llm, &prompts, progress)?;
        if on_gpu {
            progress("logits against the CPU");
            let cpu = super::artifact::load::<crate::models::backend::Cpu>(path, &Default::default(), super::artifact::Purpose::Generate)?;
            figures.max_logit_diff = Some(max_logit_diff(&cpu, &llm, &prompts.batch, 8));
        }
        Ok((prompts, figures))
    })
}

/// The largest difference between two devices' next-token logits over a prefill of `prompts`
/// and `steps` greedy decode steps (the tokens chosen on `a`, fed to both).
pub fn max_logit_diff<A: Backend, G: Backend>(a: &LoadedLlm<A>, b: &LoadedLlm<G>, prompts: &[Vec<u32>], steps: usize) -> f32 {
    let diff = |x: &[Vec<f32>], y: &[Vec<f32>]| x.iter().flatten().zip(y.iter().flatten()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    let (la, mut ba) = a.lm.prefill(prompts);
    let (lb, mut bb) = b.lm.prefill(prompts);
    let (mut ra, mut rb) = (rows_of(la), rows_of(lb));
    let mut worst = diff(&ra, &rb);
    for _ in 0..steps {
        let next: Vec<u32> = ra.iter().map(|r| argmax(r)).collect();
        ra = rows_of(a.lm.decode(&mut ba, &next));
        rb = rows_of(b.lm.decode(&mut bb, &next));
        worst = worst.max(diff(&ra, &rb));
    }
    worst
}

/// Runs the three measurements; `progress` hears what is being timed.
pub fn run<B: Backend>(llm: &LoadedLlm<B>, p: &BenchPrompts, progress: &mut dyn FnMut(&str)) -> Result<Figures, String> {
    let lm = &llm.lm;
    let rounds = p.repeats.max(1) + 1;
    let timed = |f: &mut dyn FnMut() -> Result<f64, String>| -> Result<f64, String> {
        let mut v = Vec::new();
        for r in 0..rounds {
            let x = f()?;
            if r > 0 {
                v.push(x);
            }
        }
        Ok(median(v))
    };

    progress("prefill");
    let prefill = timed(&mut || {
        let t = Instant::now();
        let (logits, _) = lm.prefill(std::slice::from_ref(&p.single));
        let _ = rows_of(logits);
        Ok(p.single.len() as f64 / t.elapsed().as_secs_f64())
    })?;

    progress("batch-1 decode");
    let decode = timed(&mut || {
        let (logits, mut batch) = lm.prefill(std::slice::from_ref(&p.single));
        let mut next = argmax(&rows_of(logits)[0]);
        let t = Instant::now();
        for _ in 0..p.new_tokens {
            next = argmax(&lm.decode_rows(&mut batch, &[next])[0]);
        }
        Ok(p.new_tokens as f64 / t.elapsed().as_secs_f64())
    })?;

    progress("batched prefill");
    let prompt_tokens: usize = p.batch.iter().map(Vec::len).sum();
    let batch_prefill = timed(&mut || {
        let t = Instant::now();
        let (logits, _) = lm.prefill(&p.batch);
        let _ = rows_of(logits);
        Ok(prompt_tokens as f64 / t.elapsed().as_secs_f64())
    })?;

    progress("batched sampling");
    // EOS ignored, as transformers' min_new_tokens does: every row writes `new_tokens`.
    let mut tok = llm.tokenizer.clone();
    tok.stop_ids.clear();
    let settings = Settings {
        sampling: Sampling { temperature: 0.7, top_p: 1.0, top_k: 0 },
        max_new_tokens: p.new_tokens,
        stop: Vec::new(),
        batch_size: p.batch.len(),
    };
    let requests: Vec<Request> = p.batch.iter().enumerate().map(|(i, q)| Request { prompt: q.clone(), seeds: vec![i as u64] }).collect();
    let sampling = timed(&mut || {
        let t = Instant::now();
        let mut written = 0usize;
        generate(lm, &tok, &requests, &settings, &mut |rows| {
            written += rows.iter().map(|(_, _, c)| c.tokens.len()).sum::<usize>();
            Ok(())
        }, &|_| {}, &|| false)?;
        Ok(written as f64 / t.elapsed().as_secs_f64())
    })?;
    Ok(Figures { max_logit_diff: None, prefill, decode, sampling, batch_prefill })
}
