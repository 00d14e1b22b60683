//! `evaluate`: MAP/NDCG/CLICK@k of rankers over a split's re-rank lists. The rankers here
//! need no training: `initial` (the given, shuffled order), `random`, `popularity` (training
//! users' interaction counts) and `oracle` (labels first: the upper bound).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Signature};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::preprocess::{RerankList, Split};
use crate::kinds::train_reranker::{knowledge_connected, knowledge_ports, read_knowledge};
use crate::models::backend::{on_device, Cpu};
use crate::models::rerank::data::{DeviceKnowledge, Lists};
use crate::models::rerank::store;
use crate::models::rerank::train::{metrics, score};
use crate::data::tables;
use crate::metrics::{rank_by_scores, Accumulator, KS};
use crate::types::{DATASET, KNOWLEDGE_RERANKER, METRICS, RERANKER};

/// A ranker that needs no training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Initial,
    Random,
    Popularity,
    Oracle,
}

impl Method {
    fn as_str(&self) -> &'static str {
        match self {
            Method::Initial => "initial",
            Method::Random => "random",
            Method::Popularity => "popularity",
            Method::Oracle => "oracle",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    Train,
    Test,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// Untrained rankers to evaluate (default: all four without a `reranker` input, none with one).
    #[serde(default)]
    pub methods: Option<Vec<Method>>,
    /// The method name of the connected reranker in the metrics table (default: its backbone,
    /// with "+kar" when it reads knowledge).
    #[serde(default)]
    pub label: Option<String>,
    /// Which sample of the user knowledge to use, when it has several per user.
    #[serde(default)]
    pub user_sample: i32,
    /// Which users' lists (default test).
    #[serde(default = "test")]
    pub split: EvalSplit,
    /// Cut-offs (default 1, 3, 5, 7).
    #[serde(default = "ks")]
    pub ks: Vec<u32>,
}

fn all_methods() -> Vec<Method> {
    vec![Method::Initial, Method::Random, Method::Popularity, Method::Oracle]
}

fn test() -> EvalSplit {
    EvalSplit::Test
}

fn ks() -> Vec<u32> {
    KS.iter().map(|&k| k as u32).collect()
}

/// The `evaluate` kind.
pub struct Evaluate;

fn push_rows(rows: &mut Vec<(String, i32, f64, f64, f64, i64)>, ctx: &NodeContext, name: &str, ks: &[usize], acc: &Accumulator) {
    for (k, v) in ks.iter().zip(acc.means()) {
        rows.push((name.to_string(), *k as i32, v.map, v.ndcg, v.click, acc.lists() as i64));
    }
    let at5 = ks.iter().position(|&k| k == 5).unwrap_or(ks.len() - 1);
    let v = acc.means()[at5];
    ctx.log(format!("{name:<10} MAP@{} {:.5}  NDCG@{} {:.5}  ({} lists)", ks[at5], v.map, ks[at5], v.ndcg, acc.lists()));
}

/// Whether a trained reranker fits this dataset and knowledge (of dimension `dim`, if any).
pub(crate) fn check_reranker(config: &crate::models::rerank::config::RerankerConfig, dim: Option<usize>, d: &crate::data::preprocess::Dataset) -> Result<(), BoxError> {
    match (&config.knowledge, dim) {
        (Some(c), Some(dim)) if c.dim != dim => {
            return Err(format!("the reranker was trained on knowledge of dimension {}, but these vectors have {dim}", c.dim).into())
        }
        (Some(_), None) | (None, Some(_)) => return Err("the reranker and the knowledge inputs do not match".into()),
        _ => {}
    }
    if config.item_count != d.items.len() || config.attribute_fields != d.attribute_fields.len() {
        return Err(format!(
            "the reranker was trained on a dataset with {} items and {} attribute fields, this one has {} and {}",
            config.item_count,
            config.attribute_fields,
            d.items.len(),
            d.attribute_fields.len()
        )
        .into());
    }
    Ok(())
}

/// Scores the lists with the connected reranker.
fn evaluate_reranker(
    p: &EvaluateParams,
    ctx: &NodeContext,
    inputs: &Inputs,
    d: &crate::data::preprocess::Dataset,
    lists: &[&RerankList],
    ks: &[usize],
) -> Result<(String, Accumulator), BoxError> {
    let dir = inputs.dir("reranker")?;
    let config = store::read_config(dir)?;
    let k = read_knowledge(inputs, d, p.user_sample)?;
    check_reranker(&config, k.as_ref().map(|k| k.dim), d)?;
    let data = Lists::from_dataset(d, lists.iter().copied());
    if let Some(k) = &k {
        k.check_covers(&data)?;
    }
    let scores = on_device!(ctx.device(), Cpu, crate::models::backend::Gpu, |B, device| {
        let (model, _) = store::load::<B>(dir, &device)?;
        let dk = k.as_ref().map(|k| DeviceKnowledge::<B>::new(k, &device));
        score(&model, &data, dk.as_ref(), 1024, &device)
    });
    let label = p.label.clone().unwrap_or_else(|| format!("{}{}", config.backbone.as_str(), if k.is_some() { "+kar" } else { "" }));
    Ok((label, metrics(&data, &scores, ks)))
}

/// Scores one list for a method.
fn order_for(method: Method, pop: &HashMap<i32, u32>, list: &crate::data::preprocess::RerankList, rng: &mut ChaCha8Rng) -> Vec<usize> {
    match method {
        Method::Initial => (0..list.candidates.len()).collect(),
        Method::Random => {
            let mut o: Vec<usize> = (0..list.candidates.len()).collect();
            o.shuffle(rng);
            o
        }
        Method::Popularity => {
            let s: Vec<f32> = list.candidates.iter().map(|c| pop.get(c).copied().unwrap_or(0) as f32).collect();
            rank_by_scores(&s)
        }
        Method::Oracle => rank_by_scores(&list.labels.iter().map(|&l| l as f32).collect::<Vec<_>>()),
    }
}

impl Kind for Evaluate {
    type Params = EvaluateParams;

    fn name(&self) -> &'static str {
        "evaluate"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "MAP/NDCG/CLICK@k of rankers over a split's re-rank lists"
    }
    fn seeded(&self, p: &EvaluateParams) -> bool {
        p.methods.as_ref().is_none_or(|m| m.contains(&Method::Random))
    }

    fn signature(&self, p: &EvaluateParams) -> Result<Signature, ParamError> {
        self.signature_for(p, &[])
    }

    fn signature_for(&self, p: &EvaluateParams, connected: &[String]) -> Result<Signature, ParamError> {
        let with_reranker = connected.iter().any(|c| c == "reranker");
        let with_knowledge = knowledge_connected(connected)?;
        if with_knowledge && !with_reranker {
            return Err(ParamError::whole("knowledge inputs are for a `reranker` input; connect one"));
        }
        if !with_reranker && p.methods.as_ref().is_some_and(|m| m.is_empty()) {
            return Err(ParamError::field("methods", "name at least one of initial, random, popularity, oracle (or connect a `reranker`)"));
        }
        if p.label.is_some() && !with_reranker {
            return Err(ParamError::field("label", "`label` names a connected `reranker`"));
        }
        if p.ks.is_empty() || p.ks.contains(&0) {
            return Err(ParamError::field("ks", "cut-offs must be at least 1"));
        }
        let mut inputs = vec![Port::new("data", DATASET), Port::optional("reranker", if with_knowledge { KNOWLEDGE_RERANKER } else { RERANKER })];
        inputs.extend(knowledge_ports());
        Ok(Signature { inputs, outputs: vec![Port::new("metrics", METRICS)] })
    }

    fn run(&self, p: &EvaluateParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let d = tables::read(inputs, "data")?;
        let split = if p.split == EvalSplit::Test { Split::Test } else { Split::Train };
        let train_users: std::collections::HashSet<i32> = d.users.iter().filter(|u| u.split == Split::Train).map(|u| u.id).collect();
        let mut pop: HashMap<i32, u32> = HashMap::new();
        for x in d.interactions.iter().filter(|x| train_users.contains(&x.user)) {
            *pop.entry(x.item).or_default() += 1;
        }
        let ks: Vec<usize> = p.ks.iter().map(|&k| k as usize).collect();
        let lists: Vec<_> = d.lists.iter().filter(|l| l.split == split).collect();
        if lists.is_empty() {
            return Err(format!("the {} split has no re-rank lists", split.as_str()).into());
        }
        let mut rows: Vec<(String, i32, f64, f64, f64, i64)> = Vec::new();
        let methods = p.methods.clone().unwrap_or_else(|| if inputs.has("reranker") { Vec::new() } else { all_methods() });
        ctx.progress().start(Some(methods.len() as u64 + inputs.has("reranker") as u64), "methods");
        if inputs.has("reranker") {
            let (label, acc) = evaluate_reranker(p, ctx, inputs, &d, &lists, &ks)?;
            push_rows(&mut rows, ctx, &label, &ks, &acc);
            ctx.progress().inc(1);
        }
        for &m in &methods {
            let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed());
            let mut acc = Accumulator::new(&ks);
            for l in &lists {
                let labels: Vec<u8> = l.labels.iter().map(|&x| x as u8).collect();
                acc.add(l.user as i64, &labels, &order_for(m, &pop, l, &mut rng));
            }
            push_rows(&mut rows, ctx, m.as_str(), &ks, &acc);
            ctx.progress().inc(1);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("method", DataType::Utf8, false),
            Field::new("k", DataType::Int32, false),
            Field::new("map", DataType::Float64, false),
            Field::new("ndcg", DataType::Float64, false),
            Field::new("click", DataType::Float64, false),
            Field::new("lists", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(rows.iter().map(|r| Some(r.0.as_str())).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| r.1).collect::<Int32Array>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.3).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.4).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.5).collect::<Int64Array>()),
            ],
        )?;
        ctx.write_batch("metrics", &batch)?;
        Ok(())
    }
}
