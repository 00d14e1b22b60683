//! BERT-family text encoders (bert-base-uncased, all-MiniLM-L6-v2): safetensors weights,
//! WordPiece tokenizers from tokenizer.json, pooled sentence vectors.

pub mod artifact;
pub mod bench;
pub mod bert;
pub mod config;
pub mod embed;
pub mod tokenizer;
#[cfg(any(test, feature = "test-kinds"))]
pub mod tiny;
pub mod weights;

#[cfg(test)]
mod tests;
