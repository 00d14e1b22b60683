//! `synthetic-knowledge`: knowledge vectors made from the synthetic world's ground truth
//! (or pure noise), to study rerankers without an LLM or encoder: what would perfect
//! knowledge give, and does noise give nothing? Users get their taste weights over genres
//! (and favourite authors) and items their genre (and author), both through the same fixed
//! random projection to `dim` dimensions; `noise` mixes in random vectors.

use std::collections::HashMap;

use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Signature};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::synthetic::Truth;
use crate::data::{tables, Flavour};
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
}

fn dim() -> u32 {
    384
}

pub struct SyntheticKnowledge;

fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(1e-12);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

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
        let dim = p.dim as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed());
        let genre_field = if d.flavour == Flavour::Movies { 0 } else { 1 };
        let author_field = (d.flavour == Flavour::Books).then_some(0);
        // Feature indices: genres, then authors.
        let mut features: HashMap<String, usize> = HashMap::new();
        for it in d.items.iter().filter(|i| i.has_meta) {
            for f in std::iter::once(genre_field).chain(author_field) {
                let key = format!("{f}:{}", it.attributes[f]);
                let n = features.len();
                features.entry(key).or_insert(n);
            }
        }
        let mut keys: Vec<(&String, &usize)> = features.iter().collect();
        keys.sort_by_key(|(_, &i)| i);
        let projection: Vec<Vec<f32>> = keys.iter().map(|_| gaussian(&mut rng, dim)).collect();
        let project = |weights: &[(usize, f32)]| -> Vec<f32> {
            let mut v = vec![0f32; dim];
            for &(f, w) in weights {
                for (x, p) in v.iter_mut().zip(&projection[f]) {
                    *x += w * p;
                }
            }
            v
        };
        let mix = |mut v: Vec<f32>, rng: &mut ChaCha8Rng| -> Vec<f32> {
            unit(&mut v);
            let mut e = gaussian(rng, dim);
            unit(&mut e);
            v.iter().zip(&e).map(|(s, n)| (1.0 - p.noise as f32) * s + p.noise as f32 * n).collect()
        };

        let mut users = Vec::with_capacity(d.users.len());
        for u in &d.users {
            let signal = match (&u.truth, p.noise < 1.0) {
                (Some(t), true) => {
                    let truth: Truth = serde_json::from_str(t).map_err(|e| format!("user {}: unreadable truth: {e}", u.raw_id))?;
                    let mut w: Vec<(usize, f32)> = truth
                        .weights
                        .iter()
                        .filter_map(|(g, x)| features.get(&format!("{genre_field}:{g}")).map(|&f| (f, *x as f32)))
                        .collect();
                    if let Some(af) = author_field {
                        w.extend(truth.favourite_authors.iter().filter_map(|a| features.get(&format!("{af}:{a}")).map(|&f| (f, 1.0))));
                    }
                    project(&w)
                }
                (None, true) => {
                    return Err(format!("dataset `{}` has no ground truth; synthetic-knowledge needs `dataset: synthetic` (or noise: 1)", d.name).into())
                }
                (_, false) => vec![0f32; dim],
            };
            users.push((u.id, u.raw_id.clone(), mix(signal, &mut rng)));
        }
        let mut items = Vec::new();
        for it in d.items.iter().filter(|i| i.has_meta) {
            let w: Vec<(usize, f32)> = std::iter::once(genre_field)
                .chain(author_field)
                .filter_map(|f| features.get(&format!("{f}:{}", it.attributes[f])).map(|&i| (i, 1.0)))
                .collect();
            items.push((it.id, it.raw_id.clone(), mix(project(&w), &mut rng)));
        }
        knowledge::write(ctx, "users", dim, &users)?;
        knowledge::write(ctx, "items", dim, &items)?;
        Ok(())
    }
}
