//! Llama-architecture LLMs: GGUF and safetensors weights, tokenizers, chat templates.

pub mod artifact;
pub mod bench;
pub mod chat;
pub mod config;
pub mod dpo;
pub mod dpo_bench;
pub mod generate;
pub mod gguf;
pub mod host;
pub mod host_dpo;
pub mod llama;
pub mod lm;
pub mod lora;
pub mod quant;
pub mod rows_matmul;
pub mod sample;
pub mod tokenizer;
#[cfg(any(test, feature = "test-kinds"))]
pub mod tiny;
pub mod weights;

#[cfg(test)]
mod chat_tests;
#[cfg(test)]
mod dpo_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vocab_tests;
