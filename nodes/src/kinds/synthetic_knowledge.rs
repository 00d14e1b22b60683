//! `synthetic-knowledge`: knowledge vectors made from the synthetic world's ground truth
//! (or pure noise), to study rerankers without an LLM or encoder: what would perfect
//! knowledge give, and does noise give nothing? Users get their taste weights over genres
//! (and favourite authors) and items their genre (and author), both through the same fixed
//! random projection to `dim` dimensions; `noise` mixes in random vectors.

use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::tables;
use crate::knowledge;
use crate::types::{DATASET, EMBEDDINGS};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticKnowledgeParams {
    /// Dimension of the vectors (384 like MiniLM, 768 like BERT-base).
    #[serde(default = "dim")]
    pub dim: u32,
    /// Share of random noise mixed into each vector: 0 = ground truth only, 1 = noise only.
    #[serde(default)]
    pub noise: f64,
    /// A fixed seed for the projection and the noise (default: the node's derived seed).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn dim() -> u32 {
    384
}

pub struct SyntheticKnowledge;



impl Kind for SyntheticKnowledge {
    type Params = SyntheticKnowledgeParams;

    fn name(&self) -> &'static str {
        "synthetic-knowledge"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "user and item knowledge vectors from the synthetic world's ground truth (or noise)"
    }

    fn seeded(&self, p: &SyntheticKnowledgeParams) -> bool {
        p.seed.is_none()
    }

    fn signature(&self, p: &SyntheticKnowledgeParams) -> Result<Signature, ParamError> {
        if p.dim == 0 || p.dim > 8192 {
            return Err(ParamError::field("dim", "must be 1..=8192"));
        }
        if !(0.0..=1.0).contains(&p.noise) {
            return Err(ParamError::field("noise", "must be between 0 and 1"));
        }
        Ok(Signature {
            inputs: vec![Port::new("data", DATASET)],
            outputs: vec![Port::new("users", EMBEDDINGS), Port::new("items", EMBEDDINGS)],
        })
    }

    fn run(&self, p: &SyntheticKnowledgeParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let d = tables::read(inputs, "data")?;
        let (users, items) = knowledge::synthetic(&d, p.dim as usize, p.noise, p.seed.unwrap_or(ctx.seed()))?;
        let keyed = |rows: &knowledge::Rows, key: &dyn Fn(i32) -> String| -> Vec<(i32, String, Vec<f32>)> {
            rows.rows.iter().map(|(id, _, v)| (*id, key(*id), v.clone())).collect()
        };
        let user_key = |id: i32| d.user(id).map(|u| u.raw_id.clone()).unwrap_or_default();
        let item_key = |id: i32| d.item(id).map(|i| i.raw_id.clone()).unwrap_or_default();
        knowledge::write(ctx, "users", users.dim, &keyed(&users, &user_key), None)?;
        knowledge::write(ctx, "items", items.dim, &keyed(&items, &item_key), None)?;
        Ok(())
    }
}
