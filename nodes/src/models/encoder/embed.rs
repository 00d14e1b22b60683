//! Texts to vectors in batches: token rows sorted by length so each batch pads little, a cap
//! on tokens per batch so long texts do not exhaust memory, results back in input order.

use burn::prelude::*;

use super::bert::{Batch, Bert, Pooling};

/// How vectors are made.
#[derive(Clone, Copy, Debug)]
pub struct EmbedSettings {
    pub pooling: Pooling,
    pub normalize: bool,
    /// Most texts per batch (never changes a vector, only speed and memory).
    pub batch_size: usize,
}

/// Most tokens (rows × padded length) in one batch.
const TOKENS_PER_BATCH: usize = 16_384;

/// One vector per token row, in the order given. `done` hears how many rows each batch
/// finished and may stop the work by returning an error.
pub fn embed<B: Backend>(
    bert: &Bert<B>,
    pad: u32,
    rows: &[Vec<u32>],
    s: &EmbedSettings,
    device: &B::Device,
    done: &mut dyn FnMut(usize) -> Result<(), String>,
) -> Result<Vec<Vec<f32>>, String> {
    let h = bert.hidden_size();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].len());
    let mut out = vec![Vec::new(); rows.len()];
    let mut start = 0;
    while start < order.len() {
        // Sorted ascending: the batch's last row is its longest.
        let mut end = (start + s.batch_size.max(1)).min(order.len());
        while end > start + 1 && rows[order[end - 1]].len() * (end - start) > TOKENS_PER_BATCH {
            end -= 1;
        }
        let chunk: Vec<Vec<u32>> = order[start..end].iter().map(|&i| rows[i].clone()).collect();
        let batch = Batch::<B>::new(&chunk, pad, s.pooling, device);
        let v = bert.encode(&batch, s.normalize).into_data().convert::<f32>().into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        for (k, &i) in order[start..end].iter().enumerate() {
            out[i] = v[k * h..(k + 1) * h].to_vec();
        }
        done(end - start)?;
        start = end;
    }
    Ok(out)
}

/// The cosine of the angle between two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}
