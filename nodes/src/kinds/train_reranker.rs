//! `train-reranker`: trains a KAR reranker (DLCM or PRM backbone; with user and item
//! knowledge through the hybrid-expert adaptor when those inputs are connected) and writes
//! it with its training curve.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{BooleanArray, Float64Array, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Resource, Signature};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::preprocess::{Dataset, Split};
use crate::data::tables;
use crate::knowledge;
use crate::models::backend::on_device;
use crate::models::rerank::data::{Knowledge, Lists};
use crate::models::rerank::train::{train, EpochLog, Monitor, Schedule, TrainSettings, Trained};
use crate::models::rerank::{store, Backbone, KnowledgeConfig, RerankerConfig};
use crate::types::{CURVE, DATASET, EMBEDDINGS, KNOWLEDGE_RERANKER, RERANKER};

/// Which lists pick the best epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// A held-out share of the training users (clean; the default).
    Validation,
    /// The test lists, as KAR does (faithful, but the test set then chooses the model).
    Test,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRerankerParams {
    /// dlcm or prm.
    #[serde(default = "dlcm")]
    pub backbone: Backbone,
    /// Width of each id/attribute embedding (KAR: 32).
    #[serde(default = "d32")]
    pub embed_dim: u32,
    /// DLCM's GRU width (KAR: 64).
    #[serde(default = "d64")]
    pub hidden: u32,
    /// PRM's attention heads (KAR: 2); must divide the feature width.
    #[serde(default = "two")]
    pub heads: u32,
    /// PRM's MLP widths (KAR: [200, 80]).
    #[serde(default = "mlp")]
    pub mlp: Vec<u32>,
    /// HEA expert widths (KAR: [128, 32]).
    #[serde(default = "experts")]
    pub expert_arch: Vec<u32>,
    /// HEA shared experts S (KAR: 2).
    #[serde(default = "two")]
    pub shared_experts: u32,
    /// HEA specific experts P per tower (KAR: 6).
    #[serde(default = "six")]
    pub specific_experts: u32,
    /// Most epochs (KAR: 20).
    #[serde(default = "twenty")]
    pub epochs: u32,
    /// Lists per batch (KAR: 512).
    #[serde(default = "b512")]
    pub batch_size: u32,
    /// Learning rate (KAR: 1e-4).
    #[serde(default = "lr")]
    pub lr: f64,
    /// AdamW's decoupled weight decay (KAR: 0).
    #[serde(default)]
    pub weight_decay: f64,
    /// kar (KAR's nearly constant cosine), cosine (a real cosine) or constant.
    #[serde(default = "kar")]
    pub schedule: Schedule,
    /// Epochs without improvement before stopping (KAR: 3).
    #[serde(default = "three")]
    pub patience: u32,
    /// validation (default) or test (KAR-faithful).
    #[serde(default = "validation")]
    pub select: Select,
    /// With `select: validation`: the share of training users held out (0.1).
    #[serde(default = "tenth")]
    pub validation_fraction: f64,
    /// Which sample of the user knowledge to use, when it has several per user.
    #[serde(default)]
    pub user_sample: i32,
    /// A fixed seed for initialisation, shuffling and the validation split (default: the
    /// node's derived seed).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn dlcm() -> Backbone {
    Backbone::Dlcm
}
fn d32() -> u32 {
    32
}
fn d64() -> u32 {
    64
}
fn two() -> u32 {
    2
}
fn six() -> u32 {
    6
}
fn three() -> u32 {
    3
}
fn twenty() -> u32 {
    20
}
fn b512() -> u32 {
    512
}
fn lr() -> f64 {
    1e-4
}
fn kar() -> Schedule {
    Schedule::Kar
}
fn validation() -> Select {
    Select::Validation
}
fn tenth() -> f64 {
    0.1
}
fn mlp() -> Vec<u32> {
    vec![200, 80]
}
fn experts() -> Vec<u32> {
    vec![128, 32]
}

/// Whether the connected inputs include knowledge; both or neither must be connected.
pub fn knowledge_connected(connected: &[String]) -> Result<bool, ParamError> {
    let u = connected.iter().any(|c| c == "user_knowledge");
    let i = connected.iter().any(|c| c == "item_knowledge");
    match (u, i) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        _ => Err(ParamError::whole("connect both `user_knowledge` and `item_knowledge`, or neither")),
    }
}

/// The knowledge input ports.
pub fn knowledge_ports() -> Vec<Port> {
    vec![Port::optional("user_knowledge", EMBEDDINGS), Port::optional("item_knowledge", EMBEDDINGS)]
}

/// Reads the connected knowledge inputs (if any) for dataset `d`.
pub fn read_knowledge(inputs: &Inputs, d: &Dataset, sample: i32) -> Result<Option<Knowledge>, BoxError> {
    if !inputs.has("user_knowledge") {
        return Ok(None);
    }
    let users = knowledge::read_rows(inputs, "user_knowledge")?;
    let items = knowledge::read_rows(inputs, "item_knowledge")?;
    Ok(Some(knowledge::knowledge(d, &users, &items, sample)?))
}

pub struct TrainReranker;

struct NodeMonitor<'a> {
    ctx: &'a NodeContext,
    batches: usize,
}

impl Monitor for NodeMonitor<'_> {
    fn epoch(&self, log: &EpochLog, epochs: usize) {
        let msg = format!("epoch {}/{epochs}, loss {:.4}, MAP@5 {:.4}, NDCG@5 {:.4}", log.epoch, log.loss, log.map5, log.ndcg5);
        self.ctx.progress().message(msg.clone());
        self.ctx.log(msg);
    }
    fn batch(&self, _done: usize) {
        self.ctx.progress().inc(1);
    }
    fn cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }
}

impl TrainRerankerParams {
    fn config(&self, d: &Dataset, k: Option<&Knowledge>) -> RerankerConfig {
        RerankerConfig {
            backbone: self.backbone,
            item_count: d.items.len(),
            attribute_count: d.attribute_count,
            attribute_fields: d.attribute_fields.len(),
            list_len: d.settings.list_len as usize,
            embed_dim: self.embed_dim as usize,
            hidden: self.hidden as usize,
            heads: self.heads as usize,
            mlp: self.mlp.iter().map(|&x| x as usize).collect(),
            knowledge: k.map(|k| KnowledgeConfig {
                dim: k.dim,
                shared_experts: self.shared_experts as usize,
                specific_experts: self.specific_experts as usize,
                expert_arch: self.expert_arch.iter().map(|&x| x as usize).collect(),
            }),
        }
    }

    fn settings(&self, seed: u64) -> TrainSettings {
        TrainSettings {
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            lr: self.lr,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            patience: self.patience as usize,
            seed,
        }
    }
}

fn run_training<B: burn::tensor::backend::AutodiffBackend>(
    config: &RerankerConfig,
    train_lists: &Lists,
    select: &Lists,
    k: Option<&Knowledge>,
    s: &TrainSettings,
    device: &B::Device,
    ctx: &NodeContext,
) -> Result<Trained<B>, BoxError> {
    let monitor = NodeMonitor { ctx, batches: train_lists.len().div_ceil(s.batch_size.max(1)) };
    ctx.progress().start(Some((monitor.batches * s.epochs) as u64), "batches");
    let trained = train::<B>(config, train_lists, select, k, s, device, &monitor)?;
    store::save(&trained.model, config, ctx.output_dir("model")?)?;
    Ok(trained)
}

impl Kind for TrainReranker {
    type Params = TrainRerankerParams;

    fn name(&self) -> &'static str {
        "train-reranker"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "trains a KAR reranker (DLCM or PRM; with knowledge through HEA when knowledge inputs are connected)"
    }
    fn resource(&self, _p: &TrainRerankerParams) -> Resource {
        Resource::Gpu
    }
    fn seeded(&self, p: &TrainRerankerParams) -> bool {
        p.seed.is_none()
    }

    fn signature(&self, p: &TrainRerankerParams) -> Result<Signature, ParamError> {
        self.signature_for(p, &[])
    }

    fn signature_for(&self, p: &TrainRerankerParams, connected: &[String]) -> Result<Signature, ParamError> {
        if p.epochs == 0 {
            return Err(ParamError::field("epochs", "must be at least 1"));
        }
        if p.batch_size == 0 {
            return Err(ParamError::field("batch_size", "must be at least 1"));
        }
        if !(p.lr > 0.0 && p.lr.is_finite()) {
            return Err(ParamError::field("lr", "must be a positive number"));
        }
        if p.embed_dim == 0 || p.hidden == 0 || p.heads == 0 {
            return Err(ParamError::whole("embed_dim, hidden and heads must be at least 1"));
        }
        if p.expert_arch.is_empty() || p.expert_arch.contains(&0) {
            return Err(ParamError::field("expert_arch", "needs at least one layer, all widths at least 1"));
        }
        if p.mlp.contains(&0) || (p.backbone == Backbone::Prm && p.mlp.is_empty()) {
            return Err(ParamError::field("mlp", "PRM needs at least one MLP layer; widths must be at least 1"));
        }
        if p.shared_experts + p.specific_experts == 0 {
            return Err(ParamError::field("specific_experts", "HEA needs at least one expert"));
        }
        if p.select == Select::Validation && !(p.validation_fraction > 0.0 && p.validation_fraction < 1.0) {
            return Err(ParamError::field("validation_fraction", "must be between 0 and 1"));
        }
        let with_knowledge = knowledge_connected(connected)?;
        let mut inputs = vec![Port::new("data", DATASET)];
        inputs.extend(knowledge_ports());
        Ok(Signature {
            inputs,
            outputs: vec![
                Port::new("model", if with_knowledge { KNOWLEDGE_RERANKER } else { RERANKER }),
                Port::new("curve", CURVE),
            ],
        })
    }

    fn run(&self, p: &TrainRerankerParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let d = tables::read(inputs, "data")?;
        let k = read_knowledge(inputs, &d, p.user_sample)?;
        let train_users: Vec<i32> = d.users.iter().filter(|u| u.split == Split::Train).map(|u| u.id).collect();
        let (fit, select) = match p.select {
            Select::Test => (
                Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Train)),
                Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Test)),
            ),
            Select::Validation => {
                let mut users = train_users.clone();
                users.shuffle(&mut ChaCha8Rng::seed_from_u64(p.seed.unwrap_or(ctx.seed()) ^ 0x5eed));
                let held = ((users.len() as f64 * p.validation_fraction).round() as usize).clamp(1, users.len().saturating_sub(1).max(1));
                let held: HashSet<i32> = users[..held].iter().copied().collect();
                (
                    Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Train && !held.contains(&l.user))),
                    Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Train && held.contains(&l.user))),
                )
            }
        };
        let config = p.config(&d, k.as_ref());
        if p.backbone == Backbone::Prm && config.feature_dim() % p.heads as usize != 0 {
            return Err(format!("PRM's feature width {} is not divisible by heads {}", config.feature_dim(), p.heads).into());
        }
        let s = p.settings(p.seed.unwrap_or(ctx.seed()));
        ctx.log(format!(
            "{} {} on {} lists, choosing the epoch on {} {} lists",
            p.backbone.as_str(),
            if k.is_some() { "with knowledge" } else { "without knowledge" },
            fit.len(),
            select.len(),
            if p.select == Select::Test { "test" } else { "validation" }
        ));
        let (curve, best, speed) = on_device!(ctx.device(), crate::models::backend::CpuTrain, crate::models::backend::GpuTrain, |B, device| {
            let t = run_training::<B>(&config, &fit, &select, k.as_ref(), &s, &device, ctx)?;
            (t.curve, t.best_epoch, t.lists_per_second)
        });
        if let Some(b) = curve.get(best.saturating_sub(1)) {
            ctx.log(format!("kept epoch {best}: MAP@5 {:.4}, NDCG@5 {:.4} ({speed:.0} lists/s)", b.map5, b.ndcg5));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("epoch", DataType::Int32, false),
            Field::new("loss", DataType::Float64, false),
            Field::new("map5", DataType::Float64, false),
            Field::new("ndcg5", DataType::Float64, false),
            Field::new("best", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(curve.iter().map(|c| c.epoch as i32).collect::<Int32Array>()),
                Arc::new(curve.iter().map(|c| c.loss).collect::<Float64Array>()),
                Arc::new(curve.iter().map(|c| c.map5).collect::<Float64Array>()),
                Arc::new(curve.iter().map(|c| c.ndcg5).collect::<Float64Array>()),
                Arc::new(curve.iter().map(|c| Some(c.epoch == best)).collect::<BooleanArray>()),
            ],
        )?;
        ctx.write_batch("curve", &batch)?;
        Ok(())
    }
}
