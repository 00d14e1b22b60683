//! `reward-score`: how much each of a user's knowledge samples helps a trained KAR reranker.
//! For every sample index, the reranker re-ranks every training user's lists with that sample's
//! vector as the user's knowledge, and the user's mean metric over their lists is the sample's
//! reward — the recommender feedback RLRF4Rec turns into DPO pairs. N samples cost N passes
//! over the training lists.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use burn::prelude::Backend;
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Resource, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::preprocess::{Dataset, Split};
use crate::data::tables;
use crate::kinds::evaluate::check_reranker;
use crate::knowledge;
use crate::models::backend::{on_device, Cpu};
use crate::models::rerank::data::{DeviceKnowledge, Lists};
use crate::models::rerank::store;
use crate::models::rerank::train::{metrics, score};
use crate::types::{DATASET, EMBEDDINGS, KNOWLEDGE_RERANKER, SCORES};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardScoreParams {
    /// The per-user metric that is the reward: `ndcg@K` or `map@K`.
    #[serde(default = "ndcg5")]
    pub metric: String,
    /// Lists scored together (does not change any score).
    #[serde(default = "batch")]
    pub batch_size: u32,
}

fn ndcg5() -> String {
    "ndcg@5".into()
}
fn batch() -> u32 {
    1024
}

/// A parsed `metric:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub ndcg: bool,
    pub k: usize,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Metric, String> {
        let bad = || format!("`{s}`: expected ndcg@K or map@K with K at least 1 (e.g. ndcg@5)");
        let (name, k) = s.split_once('@').ok_or_else(bad)?;
        let k: usize = k.parse().map_err(|_| bad())?;
        let ndcg = match name {
            "ndcg" => true,
            "map" => false,
            _ => return Err(bad()),
        };
        if k == 0 {
            return Err(bad());
        }
        Ok(Metric { ndcg, k })
    }
}

/// The `reward-score` kind.
pub struct RewardScore;

impl Kind for RewardScore {
    type Params = RewardScoreParams;

    fn name(&self) -> &'static str {
        "reward-score"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "per user and knowledge sample, the metric a trained KAR reranker reaches on the user's training lists (the reward)"
    }
    fn resource(&self, _p: &RewardScoreParams) -> Resource {
        Resource::Gpu
    }

    fn signature(&self, p: &RewardScoreParams) -> Result<Signature, ParamError> {
        Metric::parse(&p.metric).map_err(|e| ParamError::field("metric", e))?;
        if p.batch_size == 0 {
            return Err(ParamError::field("batch_size", "must be at least 1"));
        }
        Ok(Signature {
            inputs: vec![
                Port::new("reranker", KNOWLEDGE_RERANKER),
                Port::new("data", DATASET),
                Port::new("user_knowledge", EMBEDDINGS),
                Port::new("item_knowledge", EMBEDDINGS),
            ],
            outputs: vec![Port::new("scores", SCORES)],
        })
    }

    fn run(&self, p: &RewardScoreParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let metric = Metric::parse(&p.metric)?;
        let d = tables::read(inputs, "data")?;
        let users = knowledge::read_rows(inputs, "user_knowledge")?;
        let items = knowledge::read_rows(inputs, "item_knowledge")?;
        let dir = inputs.dir("reranker")?;
        let config = store::read_config(dir)?;
        check_reranker(&config, Some(users.dim), &d)?;
        let samples: BTreeSet<i32> = users.rows.iter().map(|r| r.1).collect();
        if samples.is_empty() {
            return Err("the user knowledge table is empty".into());
        }
        let ks = [metric.k];
        ctx.progress().start(Some(samples.len() as u64), "samples");
        let mut out = on_device!(ctx.device(), Cpu, crate::models::backend::Gpu, |B, device| score_samples::<B>(p, ctx, &d, &users, &items, &samples, dir, &ks, &device))?;
        let trained_users = d.users.iter().filter(|u| u.split == Split::Train).count();
        let scored: BTreeSet<i32> = out.iter().map(|r| r.0).collect();
        ctx.log(format!("{} samples x {} of {trained_users} training users scored by {}", samples.len(), scored.len(), p.metric));
        out.sort_by_key(|r| (r.0, r.1));
        let key = |id: i32| d.user(id).map(|u| u.raw_id.clone()).unwrap_or_default();
        let reward = |r: &(i32, i32, f64, f64, i32)| if metric.ndcg { r.3 } else { r.2 };
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int32, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("sample", DataType::Int32, false),
            Field::new("map", DataType::Float64, false),
            Field::new("ndcg", DataType::Float64, false),
            Field::new("lists", DataType::Int32, false),
            Field::new("reward", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(out.iter().map(|r| r.0).collect::<Int32Array>()),
                Arc::new(out.iter().map(|r| Some(key(r.0))).collect::<StringArray>()),
                Arc::new(out.iter().map(|r| r.1).collect::<Int32Array>()),
                Arc::new(out.iter().map(|r| r.2).collect::<Float64Array>()),
                Arc::new(out.iter().map(|r| r.3).collect::<Float64Array>()),
                Arc::new(out.iter().map(|r| r.4).collect::<Int32Array>()),
                Arc::new(out.iter().map(reward).collect::<Float64Array>()),
            ],
        )?;
        ctx.write_batch("scores", &batch)?;
        Ok(())
    }
}

/// (user, sample, map, ndcg, lists) for every sample index: the reranker, loaded once,
/// re-ranks the training lists of the users that have the sample, with it as their knowledge.
#[allow(clippy::too_many_arguments)]
fn score_samples<B: Backend>(
    p: &RewardScoreParams,
    ctx: &NodeContext,
    d: &Dataset,
    users: &knowledge::Rows,
    items: &knowledge::Rows,
    samples: &BTreeSet<i32>,
    dir: &std::path::Path,
    ks: &[usize],
    device: &B::Device,
) -> Result<Vec<(i32, i32, f64, f64, i32)>, BoxError> {
    let (model, _) = store::load::<B>(dir, device)?;
    let mut out = Vec::new();
    for &s in samples {
        ctx.check_cancelled()?;
        let k = knowledge::knowledge(d, users, items, s)?;
        // The training users that have this sample.
        let lists: Vec<_> = d.lists.iter().filter(|l| l.split == Split::Train && k.user_rows.contains_key(&l.user)).collect();
        if lists.is_empty() {
            return Err(format!("no training user has knowledge sample {s}").into());
        }
        let data = Lists::from_dataset(d, lists.iter().copied());
        k.check_covers(&data)?;
        let scores = score(&model, &data, Some(&DeviceKnowledge::<B>::new(&k, device)), p.batch_size as usize, device);
        for (user, (m, n)) in metrics(&data, &scores, ks).user_means() {
            out.push((user as i32, s, m[0].map, m[0].ndcg, n as i32));
        }
        ctx.progress().inc(1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Metric;

    #[test]
    fn metrics_parse_or_say_what_is_expected() {
        assert_eq!(Metric::parse("ndcg@5"), Ok(Metric { ndcg: true, k: 5 }));
        assert_eq!(Metric::parse("map@10"), Ok(Metric { ndcg: false, k: 10 }));
        for bad in ["ndcg", "ndcg@0", "auc@5", "map@x", ""] {
            assert!(Metric::parse(bad).unwrap_err().contains("expected ndcg@K or map@K"), "{bad}");
        }
    }
}
