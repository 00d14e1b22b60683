//! `dagrun bench encode`: texts per second embedding English-like texts of 40–80 words,
//! tokenisation included, measured the way `bench/encode_sentence_transformers.py` measures
//! sentence-transformers on the same texts; on a GPU, also the cosine to the CPU's vectors.

use std::time::Instant;

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::artifact::LoadedEncoder;
use crate::models::median;
use super::bert::Pooling;
use super::embed::{cosine, embed, EmbedSettings};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchSettings {
    pub texts: usize,
    pub batch_size: usize,
    /// Timed repetitions after one warm-up; figures are medians.
    pub repeats: usize,
}

/// The figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    pub texts_per_second: f64,
    /// Tokens (with [CLS]/[SEP], without padding) per second.
    pub tokens_per_second: f64,
    /// On a GPU: the lowest cosine between its vectors and the CPU's for the first 256 texts.
    pub min_cosine_vs_cpu: Option<f32>,
}

const WORDS: &[&str] = &[
    "the", "user", "reader", "viewer", "enjoys", "prefers", "dislikes", "often", "rated", "highly", "movies", "books", "novels", "stories", "with",
    "strong", "characters", "and", "a", "slow", "burn", "plot", "twists", "mystery", "romance", "history", "science", "fiction", "fantasy", "thriller",
    "comedy", "drama", "documentary", "about", "war", "space", "family", "friendship", "crime", "detective", "set", "in", "Victorian", "London", "Paris",
    "New", "York", "during", "1980s", "1990s", "award-winning", "critically", "acclaimed", "soundtrack", "visual", "style", "pacing", "tone", "dark",
    "light", "humour", "emotional", "depth", "predictable", "endings", "classic", "modern", "authors", "directors", "like", "Tolkien", "Austen",
    "Spielberg", "Kubrick", "series", "sequels", "because", "they", "feel", "real", "while", "others", "seem", "flat", "this", "suggests", "taste",
    "for", "complex", "themes", "of", "identity", "memory", "loss", "hope", "adventure", "journeys", "coming-of-age", "biographies", "poetry",
];

/// Deterministic texts of 40–80 words with some punctuation.
pub fn bench_texts(n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..n)
        .map(|_| {
            let words = rng.random_range(40..=80);
            let mut t = String::new();
            for w in 0..words {
                if w > 0 {
                    t.push(if rng.random_range(0..12) == 0 { ',' } else { ' ' });
                    if t.ends_with(',') {
                        t.push(' ');
                    }
                }
                t.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            }
            t.push('.');
            t
        })
        .collect()
}

/// Embeds `texts` (tokenising them too) `repeats` + 1 times; medians after the warm-up.
pub fn run<B: Backend>(enc: &LoadedEncoder<B>, texts: &[String], s: &BenchSettings, device: &B::Device) -> Result<Figures, String> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let settings = EmbedSettings { pooling: Pooling::Mean, normalize: false, batch_size: s.batch_size };
    let mut rates = Vec::new();
    let mut tokens = 0usize;
    for r in 0..=s.repeats.max(1) {
        let t = Instant::now();
        let ids = enc.tokenizer.encode_all(&refs)?;
        let v = embed(&enc.bert, enc.tokenizer.pad_id, &ids, &settings, device, &mut |_| Ok(()))?;
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(v);
        tokens = ids.iter().map(Vec::len).sum();
        if r > 0 {
            rates.push(secs);
        }
    }
    let secs = median(rates);
    Ok(Figures { texts_per_second: texts.len() as f64 / secs, tokens_per_second: tokens as f64 / secs, min_cosine_vs_cpu: None })
}

/// The lowest cosine between two encoders' vectors for `texts`.
pub fn min_cosine<A: Backend, G: Backend>(a: &LoadedEncoder<A>, b: &LoadedEncoder<G>, texts: &[String], da: &A::Device, db: &G::Device) -> Result<f32, String> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = a.tokenizer.encode_all(&refs)?;
    let s = EmbedSettings { pooling: Pooling::Mean, normalize: false, batch_size: 32 };
    let x = embed(&a.bert, a.tokenizer.pad_id, &ids, &s, da, &mut |_| Ok(()))?;
    let y = embed(&b.bert, b.tokenizer.pad_id, &ids, &s, db, &mut |_| Ok(()))?;
    Ok(x.iter().zip(&y).map(|(p, q)| cosine(p, q)).fold(1.0, f32::min))
}

/// Loads the encoder at `path` on `device` and measures; on a GPU also compares with the CPU.
pub fn measure(path: &std::path::Path, s: &BenchSettings, device: dagrun_engine::Device) -> Result<(Vec<String>, Figures), String> {
    let texts = bench_texts(s.texts);
    let on_gpu = device != dagrun_engine::Device::Cpu;
    crate::models::backend::on_device!(device, crate::models::backend::Cpu, crate::models::backend::Gpu, |B, dev| {
        let enc = super::artifact::load::<B>(path, &dev, None)?;
        let mut figures = run(&enc, &texts, s, &dev)?;
        if on_gpu {
            let cpu = super::artifact::load::<crate::models::backend::Cpu>(path, &Default::default(), None)?;
            let some = &texts[..texts.len().min(256)];
            figures.min_cosine_vs_cpu = Some(min_cosine(&cpu, &enc, some, &Default::default(), &dev)?);
        }
        Ok((texts, figures))
    })
}
