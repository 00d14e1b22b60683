//! The reranker: candidate features (item id + attribute embeddings, plus the HEA output of
//! the knowledge vectors when it has knowledge) fed to a DLCM or PRM backbone; trained with
//! pointwise BCE on the probabilities, log clamped at −100 as PyTorch does.

use burn::nn::Embedding;
use burn::prelude::*;

use super::config::{Backbone, RerankerConfig};
use super::dlcm::Dlcm;
use super::hea::Hea;
use super::prm::Prm;
use crate::models::init::embedding_xavier;

/// One batch of lists, on the model's device.
#[derive(Clone, Debug)]
pub struct Batch<B: Backend> {
    /// Candidate item ids [B, L].
    pub items: Tensor<B, 2, Int>,
    /// Candidate attribute ids [B, L * F].
    pub attributes: Tensor<B, 2, Int>,
    pub knowledge: Option<BatchKnowledge<B>>,
    /// Labels [B, L] (0/1).
    pub labels: Tensor<B, 2>,
}

/// A batch's knowledge: each list's user vector, and the distinct candidates' item vectors
/// with each candidate's row among them.
#[derive(Clone, Debug)]
pub struct BatchKnowledge<B: Backend> {
    /// [B, D].
    pub users: Tensor<B, 2>,
    /// [U, D], one row per distinct candidate item.
    pub items: Tensor<B, 2>,
    /// [B, L], rows of `items`.
    pub index: Tensor<B, 2, Int>,
}

#[derive(Module, Debug)]
pub struct Reranker<B: Backend> {
    pub items: Embedding<B>,
    pub attributes: Embedding<B>,
    pub hea: Option<Hea<B>>,
    pub dlcm: Option<Dlcm<B>>,
    pub prm: Option<Prm<B>>,
    pub attribute_fields: usize,
}

impl<B: Backend> Reranker<B> {
    /// A freshly initialised model (call `B::seed` first for a reproducible start).
    pub fn new(c: &RerankerConfig, device: &B::Device) -> Self {
        let d = c.feature_dim();
        Reranker {
            items: embedding_xavier(c.item_count + 1, c.embed_dim, device),
            attributes: embedding_xavier(c.attribute_count + 1, c.embed_dim, device),
            hea: c.knowledge.as_ref().map(|k| Hea::new(k, device)),
            dlcm: (c.backbone == Backbone::Dlcm).then(|| Dlcm::new(d, c.hidden, device)),
            prm: (c.backbone == Backbone::Prm).then(|| Prm::new(d, c.heads, &c.mlp, device)),
            attribute_fields: c.attribute_fields,
        }
    }

    /// Candidate features [B, L, d].
    pub fn features(&self, batch: &Batch<B>) -> Tensor<B, 3> {
        let [b, l] = batch.items.dims();
        let e = self.items.weight.dims()[1];
        let item = self.items.forward(batch.items.clone());
        let attrs = self.attributes.forward(batch.attributes.clone()).reshape([b, l, self.attribute_fields * e]);
        let mut parts = vec![item, attrs];
        if let (Some(hea), Some(k)) = (&self.hea, &batch.knowledge) {
            parts.push(hea.forward_indexed(k.users.clone(), k.items.clone(), k.index.clone()));
        }
        Tensor::cat(parts, 2)
    }

    /// Probabilities [B, L] that each candidate is positive.
    pub fn forward(&self, batch: &Batch<B>) -> Tensor<B, 2> {
        let x = self.features(batch);
        match (&self.dlcm, &self.prm) {
            (Some(m), _) => m.forward(x),
            (_, Some(m)) => m.forward(x),
            _ => unreachable!("a reranker has a backbone"),
        }
    }

    /// Mean pointwise BCE of the probabilities against the labels.
    pub fn loss(&self, batch: &Batch<B>) -> Tensor<B, 1> {
        bce(self.forward(batch), batch.labels.clone())
    }
}

/// Mean BCE with log clamped at −100, like `nn.BCELoss`.
pub fn bce<B: Backend>(p: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 1> {
    let log_p = p.clone().log().clamp_min(-100.0);
    let log_q = (p.neg() + 1.0).log().clamp_min(-100.0);
    (y.clone() * log_p + (y.neg() + 1.0) * log_q).neg().mean()
}
