//! The architecture of a reranker, saved beside its weights (`config.json`) so a trained
//! model loads without the pipeline.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The list encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// GRU over the list and a BatchNorm/tanh scoring head (DLCM).
    Dlcm,
    /// One self-attention layer with fixed positions and an MLP head (PRM).
    Prm,
}

impl Backbone {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backbone::Dlcm => "dlcm",
            Backbone::Prm => "prm",
        }
    }
}

/// The hybrid-expert adaptor (HEA) that turns knowledge vectors into features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeConfig {
    /// Dimension D of the knowledge vectors (768 for BERT-base, 384 for MiniLM).
    pub dim: usize,
    /// Shared experts S (applied to each tower with the same weights).
    pub shared_experts: usize,
    /// Specific experts P per tower.
    pub specific_experts: usize,
    /// Expert MLP widths (KAR: 128, 32); the last is each tower's output width.
    pub expert_arch: Vec<usize>,
}

impl KnowledgeConfig {
    /// Width of the dense features: user part + item part.
    pub fn out_dim(&self) -> usize {
        2 * self.expert_arch.last().copied().unwrap_or(0)
    }
}

/// Everything needed to build (and load) a reranker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RerankerConfig {
    pub backbone: Backbone,
    /// Item ids are 1..=item_count (0 unused), as in the dataset.
    pub item_count: usize,
    /// Attribute ids are 1..=attribute_count.
    pub attribute_count: usize,
    /// Attributes per item (1 for MovieLens, 2 for Amazon).
    pub attribute_fields: usize,
    pub list_len: usize,
    /// Width of each id/attribute embedding (KAR: 32).
    pub embed_dim: usize,
    /// DLCM's GRU width (KAR: 64).
    pub hidden: usize,
    /// PRM's attention heads (KAR: 2).
    pub heads: usize,
    /// PRM's MLP widths (KAR: 200, 80).
    pub mlp: Vec<usize>,
    pub knowledge: Option<KnowledgeConfig>,
}

impl RerankerConfig {
    /// Width of a candidate's input features: id + attribute embeddings (+ knowledge).
    pub fn feature_dim(&self) -> usize {
        self.embed_dim * (1 + self.attribute_fields) + self.knowledge.as_ref().map(|k| k.out_dim()).unwrap_or(0)
    }
}
