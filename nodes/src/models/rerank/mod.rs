//! KAR rerankers (KAR_REFERENCE §4–§7): the hybrid-expert knowledge adaptor and the DLCM and
//! PRM list encoders, their training loop and their storage.

pub mod bench;
pub mod config;
pub mod dlcm;
pub mod gru;
pub mod hea;
pub mod mha;
pub mod model;
pub mod data;
pub mod prm;
pub mod store;
pub mod train;

pub use config::{Backbone, KnowledgeConfig, RerankerConfig};
pub use model::{Batch, Reranker};

#[cfg(test)]
mod tests;
