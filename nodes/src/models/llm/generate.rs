//! Batched generation: each prompt prefilled once however many samples are drawn from it,
//! rows decoded together with a KV cache, dropped from the batch as they finish and their
//! places refilled with the next prompts (continuous batching). Every sample draws from its
//! own RNG, so its text does not depend on which rows share its batch.

use std::collections::VecDeque;

use burn::prelude::*;
use rand::SeedableRng;
use rayon::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::lm::{rows_of, Batch, Lm};
use super::sample::{draw, Sampling};
use super::tokenizer::LlmTokenizer;

/// One prompt and the samples to draw from it (one RNG seed each).
pub struct Request {
    pub prompt: Vec<u32>,
    pub seeds: Vec<u64>,
}

/// Why a sample ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model wrote an end-of-turn / EOS token.
    Eos,
    /// A stop string appeared (the text ends before it).
    Stop,
    /// `max_new_tokens` ran out.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Eos => "eos",
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// One generated sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Generated tokens, without the final EOS token.
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: Finish,
    /// Sum of log p(token) over the generated tokens (EOS included) under the model's
    /// unfiltered distribution at temperature 1.
    pub logprob: f64,
}

/// Generation settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sampling: Sampling,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    /// Sequences decoded together.
    pub batch_size: usize,
}

struct Row {
    request: usize,
    sample: usize,
    rng: ChaCha8Rng,
    tokens: Vec<u32>,
    logprob: f64,
    done: Option<(Finish, Option<usize>)>,
}

/// The order rows are generated in: (request, first sample, sample count) chunks, longest
/// prompts first (similar lengths together waste less padding), one per request.
fn queue_of(requests: &[Request]) -> VecDeque<(usize, usize, usize)> {
    let mut order: Vec<usize> = (0..requests.len()).filter(|&r| !requests[r].seeds.is_empty()).collect();
    order.sort_by_key(|&r| std::cmp::Reverse(requests[r].prompt.len()));
    order.into_iter().map(|r| (r, 0, requests[r].seeds.len())).collect()
}

/// Generates every sample of every request. `done` receives finished samples as (request,
/// sample index, completion) at the step they finish; `tokens` is told how many
/// tokens each step produced; generation stops early (with an error) when `cancelled`.
pub fn generate<B: Backend>(
    lm: &Lm<B>,
    tok: &LlmTokenizer,
    requests: &[Request],
    s: &Settings,
    done: &mut dyn FnMut(Vec<(usize, usize, Completion)>) -> Result<(), String>,
    tokens: &dyn Fn(u64),
    cancelled: &dyn Fn() -> bool,
) -> Result<(), String> {
    let span = lm.config.span();
    for (i, r) in requests.iter().enumerate() {
        if r.prompt.is_empty() {
            return Err(format!("prompt {i} is empty"));
        }
        span.check_generation(i, r.prompt.len(), s.max_new_tokens)?;
    }
    // Chunks of rows, longest prompts first; a batch takes them in order and, as its rows
    // finish, prefills the next ones into the freed places (continuous batching), so it stays
    // full while rows end at different lengths.
    let size = s.batch_size.max(1);
    let mut queue = queue_of(requests);
    let mut batch: Option<Batch<B>> = None;
    // The live rows, in the batch's row order, and their next-token logits.
    let mut rows: Vec<Row> = Vec::new();
    let mut logits: Vec<Vec<f32>> = Vec::new();
    loop {
        let free = size - rows.len();
        if !queue.is_empty() && (rows.is_empty() || 4 * free >= size) {
            // Whole requests while they fit (one prefill serves all of a prompt's samples); one
            // with more samples than a batch holds is split.
            let mut chunks = Vec::new();
            let mut room = free;
            while let Some(&(r, first, n)) = queue.front() {
                if n > room && (n <= size || room == 0) {
                    break;
                }
                queue.pop_front();
                let take = n.min(room);
                chunks.push((r, first, take));
                if take < n {
                    queue.push_front((r, first + take, n - take));
                }
                room -= take;
            }
            if !chunks.is_empty() {
                let prompts: Vec<Vec<u32>> = chunks.iter().map(|&(r, _, _)| requests[r].prompt.clone()).collect();
                let (prompt_logits, prefilled) = lm.prefill(&prompts);
                let prompt_logits = rows_of(prompt_logits);
                let mut index = Vec::new();
                for (c, &(r, first, n)) in chunks.iter().enumerate() {
                    for sample in first..first + n {
                        index.push(c);
                        rows.push(Row { request: r, sample, rng: ChaCha8Rng::seed_from_u64(requests[r].seeds[sample]), tokens: Vec::new(), logprob: 0.0, done: None });
                        logits.push(prompt_logits[c].clone());
                    }
                }
                // Room for every row's remaining tokens, so the cache is not regrown (and
                // copied) while these rows decode.
                let room = s.max_new_tokens;
                let fresh = prefilled.select(&index, room);
                batch = Some(match batch.take() {
                    Some(running) => running.merge(fresh, room),
                    None => fresh,
                });
            }
        }
        if rows.is_empty() {
            break;
        }
        if cancelled() {
            return Err("cancelled".into());
        }
        // Draw every row's token in parallel (each row has its own generator), then apply them
        // in order.
        let drawn: Vec<(u32, f64)> = rows
            .par_iter_mut()
            .zip(logits.par_iter())
            .map(|(row, l)| draw(l, &s.sampling, &mut row.rng))
            .collect();
        let mut next = Vec::with_capacity(rows.len());
        for (row, &(t, lp)) in rows.iter_mut().zip(&drawn) {
            row.logprob += lp;
            if tok.stop_ids.contains(&t) {
                row.done = Some((Finish::Eos, None));
            } else {
                row.tokens.push(t);
                if !s.stop.is_empty() {
                    let text = tok.decode(&row.tokens, false)?;
                    if let Some(cut) = s.stop.iter().filter_map(|st| text.find(st.as_str())).min() {
                        row.done = Some((Finish::Stop, Some(cut)));
                    }
                }
                if row.done.is_none() && row.tokens.len() >= s.max_new_tokens {
                    row.done = Some((Finish::Length, None));
                }
            }
            next.push(t);
        }
        tokens(rows.len() as u64);
        if rows.iter().any(|r| r.done.is_some()) {
            let (mut finished, mut kept, mut keep) = (Vec::new(), Vec::new(), Vec::new());
            for (i, row) in rows.drain(..).enumerate() {
                match row.done {
                    Some((finish, cut)) => {
                        let mut text = tok.decode(&row.tokens, false)?;
                        if let Some(c) = cut {
                            text.truncate(c);
                        }
                        finished.push((row.request, row.sample, Completion { tokens: row.tokens, text, finish, logprob: row.logprob }));
                    }
                    None => {
                        keep.push(i);
                        kept.push(row);
                    }
                }
            }
            rows = kept;
            done(finished)?;
            next = keep.iter().map(|&k| next[k]).collect();
            if keep.is_empty() {
                batch = None;
            } else if let Some(b) = batch.as_mut() {
                b.retain(&keep);
            }
        }
        if rows.is_empty() {
            logits.clear();
            continue;
        }
        let running = batch.as_mut().expect("live rows have a batch");
        logits = lm.decode_rows(running, &next);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_queue_longest_prompts_first_one_chunk_per_request() {
        let req = |len: usize, n: usize| Request { prompt: vec![1; len], seeds: (0..n as u64).collect() };
        let requests = vec![req(3, 5), req(9, 2), req(1, 0), req(4, 1)];
        assert_eq!(queue_of(&requests), vec![(1, 0, 2), (3, 0, 1), (0, 0, 5)]);
    }
}
