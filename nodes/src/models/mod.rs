//! Models in Burn, generic over the backend (Flex on the CPU, CUDA with the `cuda` feature).

pub mod backend;
pub mod init;
pub mod llm;
pub mod rerank;
pub mod source;
