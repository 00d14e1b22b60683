//! `dagrun bench dpo`: DPO pairs per second with LoRA (rank 8, alpha 16, all projections),
//! the reference log-probs included, measured the way `bench/dpo_trl.py` measures TRL's
//! DPOTrainer with PEFT on the same conversational pairs.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::artifact::{self, LoadedLlm};
use super::chat::prompt_messages;
use super::dpo::{self, DpoConfig, PairText, PairTokens};
use crate::models::median;

/// What to measure.
#[derive(Clone, Debug)]
pub struct DpoBenchSettings {
    /// Pairs per timed epoch.
    pub pairs: usize,
    /// Tokens of each user prompt (before the chat template).
    pub prompt_tokens: usize,
    /// Tokens of each answer, ±20%.
    pub answer_tokens: usize,
    /// Pairs per optimiser step (no accumulation).
    pub batch: usize,
    /// Timed epochs after a warm-up step; figures are medians.
    pub repeats: usize,
}

/// The pairs every tool is fed, as text (each tool applies the chat template itself).
#[derive(Clone, Debug, Serialize)]
pub struct BenchPair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// Throughput (medians over the repeats).
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct DpoFigures {
    pub pairs_per_second: f64,
    /// Prompt + answer tokens of both sequences of every pair, per second.
    pub tokens_per_second: f64,
}

const WORDS: &[&str] = &[
    "the", "reader", "enjoys", "mystery", "novels", "with", "a", "slow", "burn", "and", "history", "of", "science", "fiction", "rated", "highly",
    "because", "characters", "feel", "real", "while", "plot", "twists", "were", "predictable", "romance", "fantasy", "detective", "Victorian",
    "London", "space", "opera", "biography", "poetry", "thriller", "series", "debut", "prize-winning", "translated", "from", "French",
];

fn words(rng: &mut ChaCha8Rng, tok: &super::tokenizer::LlmTokenizer, tokens: usize) -> Result<String, String> {
    let mut text = String::new();
    while tok.encode(&text)?.len() < tokens {
        text.push_str(if text.is_empty() { "" } else { " " });
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    Ok(text)
}

/// Deterministic pairs: a history-like prompt and two answers of ~`answer_tokens` tokens.
pub fn bench_pairs<B: burn::prelude::Backend>(llm: &LoadedLlm<B>, s: &DpoBenchSettings) -> Result<Vec<BenchPair>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let spread = s.answer_tokens / 5;
    (0..s.pairs)
        .map(|_| {
            let prompt = format!("Given a user's reading history, describe their preferences.\nHistory: {}", words(&mut rng, &llm.tokenizer, s.prompt_tokens)?);
            let answer = |rng: &mut ChaCha8Rng| {
                let n = s.answer_tokens - spread + rng.random_range(0..=2 * spread);
                words(rng, &llm.tokenizer, n.max(1))
            };
            Ok(BenchPair { prompt, chosen: answer(&mut rng)?, rejected: answer(&mut rng)? })
        })
        .collect()
}

/// Tokenises the bench pairs with the model's chat template.
pub fn tokenize<B: burn::prelude::Backend>(llm: &LoadedLlm<B>, pairs: &[BenchPair]) -> Result<Vec<PairTokens>, String> {
    let texts: Vec<PairText> = pairs
        .iter()
        .map(|p| PairText { messages: prompt_messages(None, &p.prompt), chosen: p.chosen.clone(), rejected: p.rejected.clone() })
        .collect();
    let (t, _) = dpo::tokenize_pairs(&llm.tokenizer, llm.template.as_ref(), &texts, 1 << 20).map_err(|e| e.to_string())?;
    Ok(t.into_iter().map(|(_, p)| p).collect())
}

/// Loads the model, makes the pairs, and times `repeats` epochs of LoRA DPO over them (each
/// from the base model, reference pass included) after a one-step warm-up.
pub fn measure<B: AutodiffBackend>(model: &Path, s: &DpoBenchSettings, device: &B::Device, progress: &mut dyn FnMut(&str)) -> Result<(Vec<BenchPair>, DpoFigures), String> {
    let llm = artifact::load::<B>(model, device, artifact::Purpose::Train)?;
    let pairs = bench_pairs(&llm, s)?;
    let tokens = tokenize(&llm, &pairs)?;
    let per_pair: usize = tokens.iter().map(|p| 2 * p.prompt.len() + p.chosen.len() + p.rejected.len()).sum();
    let cfg = DpoConfig { epochs: 1, batch_size: s.batch, grad_accum: 1, ..Default::default() };
    let epoch = |pairs: &[PairTokens]| -> Result<f64, String> {
        let t = Instant::now();
        let tuned = dpo::train(llm.lm.module().clone(), &llm.lm.config, pairs, &cfg, device, &mut |_| {}, &|| false).map_err(|e| e.to_string())?;
        std::hint::black_box(tuned);
        Ok(t.elapsed().as_secs_f64())
    };
    progress("warm-up step");
    epoch(&tokens[..s.batch.min(tokens.len())])?;
    let mut secs = Vec::new();
    for r in 0..s.repeats.max(1) {
        progress(&format!("epoch {} of {}", r + 1, s.repeats.max(1)));
        secs.push(epoch(&tokens)?);
    }
    let sec = median(secs);
    Ok((pairs, DpoFigures { pairs_per_second: s.pairs as f64 / sec, tokens_per_second: per_pair as f64 / sec }))
}

/// [`measure`] on the backend of `device` (CPU or CUDA, with autodiff).
pub fn measure_on(device: dagrun_engine::Device, model: &Path, s: &DpoBenchSettings, progress: &mut dyn FnMut(&str)) -> Result<(Vec<BenchPair>, DpoFigures), String> {
    crate::models::backend::on_device!(device, crate::models::backend::CpuTrain, crate::models::backend::GpuTrain, |B, dev| measure::<B>(model, s, &dev, progress))
}
