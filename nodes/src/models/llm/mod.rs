//! Llama-architecture LLMs: GGUF and safetensors weights, tokenizers, chat templates.

pub mod chat;
pub mod config;
pub mod gguf;
pub mod llama;
pub mod lm;
pub mod quant;
pub mod tokenizer;
pub mod weights;

#[cfg(test)]
mod tests;
