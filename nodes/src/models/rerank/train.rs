//! Training and scoring (KAR_REFERENCE §6): AdamW (β 0.9/0.999, eps 1e-8, decoupled weight
//! decay), a cosine schedule stepped per batch — `kar` counts its length in lists as KAR does
//! (so the rate barely decays), `cosine` in batches — pointwise BCE, evaluation after each
//! epoch, the best epoch by MAP@5 on the selection lists kept, early stop after `patience`
//! epochs without improvement.

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config::RerankerConfig;
use super::data::{batch, DeviceKnowledge, Knowledge, Lists};
use super::model::Reranker;
use crate::metrics::{rank_by_scores, Accumulator, AtK};

/// How the learning rate decays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// KAR's cosine whose length is counted in lists but stepped per batch: nearly constant.
    Kar,
    /// A cosine over the real number of steps.
    Cosine,
    /// Constant.
    Constant,
}

/// Optimisation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub patience: usize,
    pub seed: u64,
}

/// One epoch of the training curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub map5: f64,
    pub ndcg5: f64,
}

/// A trained model with its curve.
pub struct Trained<B: AutodiffBackend> {
    pub model: Reranker<B::InnerBackend>,
    pub curve: Vec<EpochLog>,
    /// The epoch kept (1-based), 0 if none improved on the untrained model.
    pub best_epoch: usize,
    pub lists_per_second: f64,
}

/// Hooks into the running node: progress per epoch, cancellation between batches.
pub trait Monitor {
    fn epoch(&self, log: &EpochLog, epochs: usize);
    fn batch(&self, done: usize);
    fn cancelled(&self) -> bool;
}

/// A monitor that reports nothing and never cancels (benchmarks, tests).
pub struct Silent;

impl Monitor for Silent {
    fn epoch(&self, _: &EpochLog, _: usize) {}
    fn batch(&self, _: usize) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// Scores every list with a model in inference mode: probabilities, `len * list_len`.
pub fn score<B: Backend>(model: &Reranker<B>, lists: &Lists, k: Option<&DeviceKnowledge<B>>, batch_size: usize, device: &B::Device) -> Vec<f32> {
    let mut out = Vec::with_capacity(lists.items.len());
    let idx: Vec<usize> = (0..lists.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let b = batch(lists, chunk, k, device);
        let p = model.forward(&b).into_data();
        out.extend(p.iter::<f32>());
    }
    out
}

/// MAP/NDCG/CLICK at `ks` of scores over lists, overall and per user.
pub fn metrics(lists: &Lists, scores: &[f32], ks: &[usize]) -> Accumulator {
    let l = lists.list_len;
    let mut acc = Accumulator::new(ks);
    for i in 0..lists.len() {
        let labels: Vec<u8> = lists.labels_of(i).iter().map(|&x| x as u8).collect();
        acc.add(lists.users[i] as i64, &labels, &rank_by_scores(&scores[i * l..(i + 1) * l]));
    }
    acc
}

fn at5(acc: &Accumulator) -> AtK {
    let i = acc.ks().iter().position(|&k| k == 5).unwrap_or(0);
    acc.means()[i]
}

/// Trains a reranker. `select` are the lists the best epoch is chosen on.
pub fn train<B: AutodiffBackend>(
    config: &RerankerConfig,
    train_lists: &Lists,
    select: &Lists,
    knowledge: Option<&Knowledge>,
    s: &TrainSettings,
    device: &B::Device,
    monitor: &dyn Monitor,
) -> Result<Trained<B>, String> {
    if train_lists.is_empty() {
        return Err("there are no training lists".into());
    }
    if select.is_empty() {
        return Err("there are no lists to select the best epoch on".into());
    }
    if let Some(k) = knowledge {
        k.check_covers(train_lists)?;
        k.check_covers(select)?;
    }
    B::seed(device, s.seed);
    crate::models::init::seed(s.seed);
    let mut model: Reranker<B> = Reranker::new(config, device);
    let dk_train = knowledge.map(|k| DeviceKnowledge::<B>::new(k, device));
    let inner_device = device.clone();
    let dk_eval = knowledge.map(|k| DeviceKnowledge::<B::InnerBackend>::new(k, &inner_device));
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(s.weight_decay as f32).init::<B, Reranker<B>>();
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let n = train_lists.len();
    let batches_per_epoch = n.div_ceil(s.batch_size.max(1));
    let t_total = match s.schedule {
        Schedule::Kar => (n * s.epochs) as f64,
        Schedule::Cosine | Schedule::Constant => (batches_per_epoch * s.epochs) as f64,
    };
    let mut step = 0usize;
    let mut best: Option<(f64, usize, Reranker<B::InnerBackend>)> = None;
    let mut curve = Vec::new();
    let mut patience = 0;
    let mut trained_lists = 0usize;
    let mut train_seconds = 0.0;
    for epoch in 1..=s.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let t0 = std::time::Instant::now();
        let mut loss_sum = 0.0;
        for (bi, chunk) in order.chunks(s.batch_size.max(1)).enumerate() {
            if monitor.cancelled() {
                return Err("cancelled".into());
            }
            let b = batch(train_lists, chunk, dk_train.as_ref(), device);
            let loss = model.loss(&b);
            let value: f64 = loss.clone().into_scalar().elem::<f64>();
            if !value.is_finite() {
                return Err(format!("the loss became {value} in epoch {epoch}, batch {}; lower `lr`", bi + 1));
            }
            loss_sum += value * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = match s.schedule {
                Schedule::Constant => s.lr,
                _ => s.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / t_total).cos()),
            };
            model = optim.step(lr, model, grads);
            step += 1;
            monitor.batch(bi + 1);
        }
        train_seconds += t0.elapsed().as_secs_f64();
        trained_lists += n;
        let valid = model.valid();
        let scores = score(&valid, select, dk_eval.as_ref(), 1024, &inner_device);
        let m = at5(&metrics(select, &scores, &[5]));
        let log = EpochLog { epoch, loss: loss_sum / n as f64, map5: m.map, ndcg5: m.ndcg };
        monitor.epoch(&log, s.epochs);
        curve.push(log);
        if best.as_ref().is_none_or(|(b, _, _)| m.map > *b) {
            best = Some((m.map, epoch, valid));
            patience = 0;
        } else {
            patience += 1;
            if patience >= s.patience {
                break;
            }
        }
    }
    let (_, best_epoch, model) = best.ok_or("no epoch was trained (epochs: 0)")?;
    Ok(Trained { model, curve, best_epoch, lists_per_second: trained_lists as f64 / train_seconds.max(1e-9) })
}
