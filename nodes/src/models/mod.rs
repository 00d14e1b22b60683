//! Models in Burn, generic over the backend (Flex on the CPU, CUDA with the `cuda` feature).

pub mod backend;
pub mod cpu;
pub mod encoder;
pub mod init;
pub mod llm;
pub mod ops;
pub mod rerank;
pub mod source;
pub mod tensors;
