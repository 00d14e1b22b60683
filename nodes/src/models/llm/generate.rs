//! Batched generation: prompts grouped into batches, each prompt prefilled once however many
//! samples are drawn from it, rows decoded together with a KV cache and dropped from the batch
//! as they finish. Every sample draws from its own RNG, so its text does not depend on which
//! rows share its batch.

use burn::prelude::*;
use rand::SeedableRng;
use rayon::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::lm::{rows_of, Lm};
use super::sample::{log_prob, next_token, Sampling};
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

/// Where batches of rows come from: (request, first sample, sample count) chunks.
fn plan_batches(requests: &[Request], batch_size: usize) -> Vec<Vec<(usize, usize, usize)>> {
    let mut order: Vec<usize> = (0..requests.len()).filter(|&r| !requests[r].seeds.is_empty()).collect();
    // Similar lengths together waste less padding.
    order.sort_by_key(|&r| std::cmp::Reverse(requests[r].prompt.len()));
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut room = batch_size.max(1);
    for r in order {
        let mut first = 0;
        let n = requests[r].seeds.len();
        while first < n {
            let take = (n - first).min(room);
            current.push((r, first, take));
            first += take;
            room -= take;
            if room == 0 {
                batches.push(std::mem::take(&mut current));
                room = batch_size.max(1);
            }
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Generates every sample of every request. `done` receives each batch's finished samples as
/// (request, sample index, completion) as soon as the batch ends; `tokens` is told how many
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
    let max_pos = lm.config.max_position_embeddings;
    for (i, r) in requests.iter().enumerate() {
        if r.prompt.is_empty() {
            return Err(format!("prompt {i} is empty"));
        }
        if r.prompt.len() + s.max_new_tokens > max_pos {
            return Err(format!("prompt {i} has {} tokens; with max_new_tokens {} that passes the model's context of {max_pos}", r.prompt.len(), s.max_new_tokens));
        }
    }
    for chunks in plan_batches(requests, s.batch_size) {
        let prompts: Vec<Vec<u32>> = chunks.iter().map(|&(r, _, _)| requests[r].prompt.clone()).collect();
        let (logits, prefilled) = lm.prefill(&prompts);
        let prompt_logits = rows_of(logits);
        let mut index = Vec::new();
        let mut rows = Vec::new();
        for (c, &(r, first, n)) in chunks.iter().enumerate() {
            for sample in first..first + n {
                index.push(c);
                rows.push(Row { request: r, sample, rng: ChaCha8Rng::seed_from_u64(requests[r].seeds[sample]), tokens: Vec::new(), logprob: 0.0, done: None });
            }
        }
        let mut batch = prefilled.select(&index);
        let mut logits: Vec<Vec<f32>> = index.iter().map(|&c| prompt_logits[c].clone()).collect();
        // Rows of `batch` (and `logits`) map to these entries of `rows`.
        let mut live: Vec<usize> = (0..rows.len()).collect();
        while !live.is_empty() {
            if cancelled() {
                return Err("cancelled".into());
            }
            // Draw every live row's token in parallel (each row has its own generator), then
            // apply them in order.
            let mut is_live = vec![false; rows.len()];
            live.iter().for_each(|&ri| is_live[ri] = true);
            let mut live_rows: Vec<&mut Row> = rows.iter_mut().zip(&is_live).filter(|(_, &l)| l).map(|(r, _)| r).collect();
            let drawn: Vec<(u32, f64)> = live_rows
                .par_iter_mut()
                .zip(logits.par_iter())
                .map(|(row, l)| {
                    let t = next_token(l, &s.sampling, &mut row.rng);
                    (t, log_prob(l, t))
                })
                .collect();
            let mut next = Vec::with_capacity(live.len());
            for (&ri, &(t, lp)) in live.iter().zip(&drawn) {
                let row = &mut rows[ri];
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
            tokens(live.len() as u64);
            let keep: Vec<usize> = (0..live.len()).filter(|&slot| rows[live[slot]].done.is_none()).collect();
            if keep.is_empty() {
                break;
            }
            if keep.len() < live.len() {
                batch = batch.select(&keep);
                next = keep.iter().map(|&k| next[k]).collect();
                live = keep.iter().map(|&k| live[k]).collect();
            }
            logits = rows_of(lm.decode(&mut batch, &next));
        }
        let mut finished = Vec::with_capacity(rows.len());
        for row in rows {
            let (finish, cut) = row.done.unwrap_or((Finish::Length, None));
            let mut text = tok.decode(&row.tokens, false)?;
            if let Some(c) = cut {
                text.truncate(c);
            }
            finished.push((row.request, row.sample, Completion { tokens: row.tokens, text, finish, logprob: row.logprob }));
        }
        done(finished)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_requests_and_fill_up() {
        let req = |len: usize, n: usize| Request { prompt: vec![1; len], seeds: (0..n as u64).collect() };
        let requests = vec![req(3, 5), req(9, 2), req(1, 0), req(4, 1)];
        let b = plan_batches(&requests, 4);
        assert_eq!(b, vec![vec![(1, 0, 2), (3, 0, 1), (0, 0, 1)], vec![(0, 1, 4)]]);
    }
}
