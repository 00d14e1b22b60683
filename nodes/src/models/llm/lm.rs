//! A loaded LLM ready to run: the module, its config and device, and the batched
//! prefill / decode steps that generation and scoring are built from.

use burn::prelude::*;
use burn::tensor::TensorData;

use super::config::LlamaConfig;
use super::host::{HostCache, HostLlama, HostStep};
use super::llama::{KvCache, Llama, Step};
use super::weights;
use crate::models::cpu::on_flex;

/// A model on a device: the Burn module, the CPU's host inference path (see `host`), or both.
/// Generation runs the host path when there is one; training and export need the module.
pub struct Lm<B: Backend> {
    model: Option<Llama<B>>,
    pub config: LlamaConfig,
    pub inv_freq: Vec<f32>,
    pub device: B::Device,
    host: Option<HostLlama>,
}

/// A batch's keys and values: Burn tensors, or host buffers on the CPU's inference path.
#[derive(Clone, Debug)]
pub enum Cache<B: Backend> {
    Tensors(KvCache<B>),
    Host(HostCache),
}

/// The state of a batch of sequences being decoded: their KV cache, how many padding slots
/// each row starts with (prompts are left-padded to a common length) and how many real tokens
/// each row has.
pub struct Batch<B: Backend> {
    pub cache: Cache<B>,
    pub pad: Vec<usize>,
    pub lens: Vec<usize>,
}

impl<B: Backend> Batch<B> {
    pub fn rows(&self) -> usize {
        self.pad.len()
    }
    /// The batch restricted (and repeated) to `rows`, e.g. each prompt repeated once per
    /// sample; on the host path with room for `room` more slots, so decoding does not regrow it.
    pub fn select(&self, rows: &[usize], room: usize) -> Batch<B> {
        let cache = match &self.cache {
            Cache::Host(c) => Cache::Host(c.select_rows(rows, room)),
            Cache::Tensors(c) => match c.layers.iter().flatten().next().map(|(k, _)| k.device()) {
                Some(d) => {
                    let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
                    Cache::Tensors(c.select_rows(Tensor::from_data(TensorData::new(idx, [rows.len()]), &d)))
                }
                None => Cache::Tensors(c.clone()),
            },
        };
        Batch { cache, pad: rows.iter().map(|&r| self.pad[r]).collect(), lens: rows.iter().map(|&r| self.lens[r]).collect() }
    }

    /// Keeps only `rows` (increasing), e.g. the rows still generating; in place on the host
    /// path.
    pub fn retain(&mut self, rows: &[usize]) {
        if let Cache::Host(c) = &mut self.cache {
            c.retain_rows(rows);
            self.pad = rows.iter().map(|&r| self.pad[r]).collect();
            self.lens = rows.iter().map(|&r| self.lens[r]).collect();
        } else {
            *self = self.select(rows, 0);
        }
    }

    /// Slots filled so far (the same for every row).
    fn slots(&self) -> usize {
        match &self.cache {
            Cache::Host(c) => c.slots(),
            Cache::Tensors(c) => c.len(),
        }
    }

    /// This batch's rows and then `other`'s, decoded on together (continuous batching: a
    /// finished row's place goes to a new prompt). Each batch drops the leading slots all its
    /// rows pad, then the shorter is right-aligned to the longer, its padding grown by the
    /// difference; a row's numbers do not change, as its attention only sums its own slots.
    /// On the host path the merged cache has room for `room` more slots.
    pub fn merge(self, other: Batch<B>, room: usize) -> Batch<B> {
        let part = |b: &Batch<B>| {
            let start = b.pad.iter().copied().min().unwrap_or(0);
            (start, b.slots() - start)
        };
        let ((sa, ua), (sb, ub)) = (part(&self), part(&other));
        let used = ua.max(ub);
        let (ha, hb) = (used - ua, used - ub);
        let pad = self.pad.iter().map(|p| p - sa + ha).chain(other.pad.iter().map(|p| p - sb + hb)).collect();
        let lens = self.lens.iter().chain(&other.lens).copied().collect();
        let cache = match (self.cache, other.cache) {
            (Cache::Host(a), Cache::Host(b)) => Cache::Host(HostCache::merge(&[(&a, sa, ha), (&b, sb, hb)], room)),
            (Cache::Tensors(a), Cache::Tensors(b)) => Cache::Tensors(KvCache::merge(vec![(a, sa, ha), (b, sb, hb)])),
            _ => panic!("merging a host batch with a tensor batch"),
        };
        Batch { cache, pad, lens }
    }
}

impl<B: Backend> Lm<B> {
    /// The module, and on the CPU backend the host path packed from a copy of its weights.
    pub fn new(model: Llama<B>, config: LlamaConfig, device: B::Device) -> Self {
        let host = on_flex::<B>().then(|| HostLlama::build(&config, !config.tie_word_embeddings, &mut weights::taken_from(weights::to_hf(&model, &config)), None).expect("a module's own weights fit its config"));
        Self::from_parts(Some(model), host, config, device)
    }

    /// A model from its parts; at least one of them.
    pub fn from_parts(model: Option<Llama<B>>, host: Option<HostLlama>, config: LlamaConfig, device: B::Device) -> Self {
        assert!(model.is_some() || host.is_some(), "an Lm needs the module or the host path");
        let inv_freq = config.inv_freq();
        Lm { model, config, inv_freq, device, host }
    }

    /// The Burn module (loaded with [`super::artifact::Purpose::Train`], or off the CPU).
    pub fn module(&self) -> &Llama<B> {
        self.model.as_ref().expect("this model was loaded for generation only: the host path, no Burn module")
    }

    /// The Burn module, taken (see [`Lm::module`]).
    pub fn into_module(self) -> Llama<B> {
        self.model.expect("this model was loaded for generation only: the host path, no Burn module")
    }

    /// Bytes the CPU path's packed weight matrices take (None off the CPU path).
    pub fn packed_bytes(&self) -> Option<usize> {
        self.host.as_ref().map(HostLlama::packed_bytes)
    }

    /// The same model run through Burn's ops on every backend (for comparing the paths).
    #[cfg(test)]
    pub fn without_host(mut self) -> Self {
        assert!(self.model.is_some(), "without_host on a host-only model");
        self.host = None;
        self
    }

    /// Whether the Burn module was built (see [`Lm::module`]).
    pub fn has_module(&self) -> bool {
        self.model.is_some()
    }

    /// Whether the CPU's host inference path runs this model.
    pub fn on_host(&self) -> bool {
        self.host.is_some()
    }

    fn host_logits(&self, host: &HostLlama, hidden: &[f32], rows: usize) -> Tensor<B, 2> {
        self.logits_tensor(host.logits(hidden, rows), rows)
    }

    /// The host path's logits [rows · vocab] as a [rows, vocab] tensor.
    fn logits_tensor(&self, logits: Vec<f32>, rows: usize) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(logits, [rows, self.config.vocab_size]), &self.device)
    }

    /// Runs the prompts (left-padded to the longest) through the model and returns each row's
    /// next-token logits [rows, vocab] with the batch state to continue from.
    pub fn prefill(&self, prompts: &[Vec<u32>]) -> (Tensor<B, 2>, Batch<B>) {
        let b = prompts.len();
        let rows: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let lens = prompts.iter().map(Vec::len).collect();
        if let (Some(host), true) = (&self.host, rows.iter().all(|p| !p.is_empty())) {
            // Rows packed without padding: no work on padding tokens.
            let len = rows.iter().map(|p| p.len()).max().unwrap_or(0);
            let mut starts = vec![0];
            let (mut ids, mut positions) = (Vec::new(), Vec::new());
            for p in &rows {
                ids.extend_from_slice(p);
                positions.extend(0..p.len());
                starts.push(ids.len());
            }
            let pad: Vec<usize> = rows.iter().map(|p| len - p.len()).collect();
            let mut cache = host.cache(b);
            let last: Vec<usize> = starts[1..].iter().map(|&e| e - 1).collect();
            let hidden = host.forward(&HostStep { starts: &starts, len, ids: &ids, positions: &positions, pad: &pad, decode: false }, &self.inv_freq, &mut cache, &last);
            return (self.host_logits(host, &hidden, b), Batch { cache: Cache::Host(cache), pad, lens });
        }
        let (step, pad) = left_padded(&self.config, &self.inv_freq, &rows, &self.device);
        let len = step.len;
        let mut cache = KvCache::new(self.config.num_hidden_layers);
        let hidden = self.module().forward(&step, &mut cache);
        // Only each row's last position needs logits.
        let last: Vec<i64> = (0..b).map(|r| (r * len + len - 1) as i64).collect();
        let hidden = hidden.select(0, Tensor::from_data(TensorData::new(last, [b]), &self.device));
        let batch = Batch { cache: Cache::Tensors(cache), pad, lens };
        (self.module().logits(hidden), batch)
    }

    /// Appends one token per row and returns the next-token logits [rows, vocab].
    pub fn decode(&self, batch: &mut Batch<B>, tokens: &[u32]) -> Tensor<B, 2> {
        let b = batch.rows();
        assert_eq!(tokens.len(), b);
        if let Some(logits) = self.decode_on_host(batch, tokens) {
            return self.logits_tensor(logits, b);
        }
        let Cache::Tensors(cache) = &mut batch.cache else { panic!("a host cache outside the host path") };
        let slots = cache.len() + 1;
        let positions: Vec<usize> = batch.lens.clone();
        let pad = batch.pad.clone();
        let padded = pad.iter().any(|&p| p > 0);
        let visible = |r: usize, _i: usize, s: usize| s >= pad[r];
        let step = Step::new(&self.config, &self.inv_freq, b, 1, tokens, &positions, slots, if padded { Some(&visible) } else { None }, &self.device);
        let hidden = self.module().forward(&step, cache);
        batch.lens.iter_mut().for_each(|l| *l += 1);
        self.module().logits(hidden)
    }

    /// [`Lm::decode`]'s logits as one row of f32 per sequence: on the host path straight from
    /// the products, without a round trip through a tensor (a 16-row step's logits are 3 MB).
    pub fn decode_rows(&self, batch: &mut Batch<B>, tokens: &[u32]) -> Vec<Vec<f32>> {
        assert_eq!(tokens.len(), batch.rows());
        match self.decode_on_host(batch, tokens) {
            Some(logits) => logits.chunks(self.config.vocab_size.max(1)).map(<[f32]>::to_vec).collect(),
            None => rows_of(self.decode(batch, tokens)),
        }
    }

    /// The host path's decode step (logits [rows · vocab]), or None when the batch is not on it.
    fn decode_on_host(&self, batch: &mut Batch<B>, tokens: &[u32]) -> Option<Vec<f32>> {
        let (Some(host), Cache::Host(cache)) = (&self.host, &mut batch.cache) else { return None };
        let b = tokens.len();
        let all: Vec<usize> = (0..b).collect();
        let starts: Vec<usize> = (0..=b).collect();
        let hidden = host.forward(&HostStep { starts: &starts, len: 1, ids: tokens, positions: &batch.lens, pad: &batch.pad, decode: true }, &self.inv_freq, cache, &all);
        batch.lens.iter_mut().for_each(|l| *l += 1);
        Some(host.logits(&hidden, b))
    }

    /// Logits at every position of one unpadded sequence [len, vocab] (for tests and scoring).
    pub fn logits_all(&self, ids: &[u32]) -> Tensor<B, 2> {
        let len = ids.len();
        let positions: Vec<usize> = (0..len).collect();
        if let Some(host) = &self.host {
            let mut cache = host.cache(1);
            let all: Vec<usize> = (0..len).collect();
            let hidden = host.forward(&HostStep { starts: &[0, len], len, ids, positions: &positions, pad: &[0], decode: false }, &self.inv_freq, &mut cache, &all);
            return self.host_logits(host, &hidden, len);
        }
        let visible = |_r: usize, i: usize, s: usize| s <= i;
        let step = Step::new(&self.config, &self.inv_freq, 1, len, ids, &positions, len, Some(&visible), &self.device);
        let mut cache = KvCache::new(self.config.num_hidden_layers);
        self.module().logits(self.module().forward(&step, &mut cache))
    }
}

/// The step that runs `prompts` from an empty cache, left-padded to the longest (positions
/// start at each prompt's first real token; padding is masked), and each row's padding.
pub fn left_padded<B: Backend>(config: &LlamaConfig, inv_freq: &[f32], prompts: &[&[u32]], device: &B::Device) -> (Step<B>, Vec<usize>) {
    let b = prompts.len();
    let len = prompts.iter().map(|p| p.len()).max().unwrap_or(0).max(1);
    let pad: Vec<usize> = prompts.iter().map(|p| len - p.len()).collect();
    let mut ids = Vec::with_capacity(b * len);
    let mut positions = Vec::with_capacity(b * len);
    for (p, &pd) in prompts.iter().zip(&pad) {
        ids.extend(std::iter::repeat_n(0u32, pd));
        ids.extend(p.iter());
        positions.extend((0..len).map(|j| j.saturating_sub(pd)));
    }
    let visible = |r: usize, i: usize, s: usize| s >= pad[r] && s <= i;
    let step = Step::new(config, inv_freq, b, len, &ids, &positions, len, Some(&visible), device);
    (step, pad)
}

/// Reads a [rows, cols] tensor back as rows of f32.
pub fn rows_of<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, cols] = t.dims();
    let data: Vec<f32> = t.into_data().convert::<f32>().to_vec().expect("f32 data");
    data.chunks(cols.max(1)).map(<[f32]>::to_vec).collect()
}
