//! Artifact types shared by several kinds.

use dagrun_cache::table::{ColumnSpec, ColumnType};
use dagrun_engine::ArtifactType;

pub use crate::data::tables::DATASET;

/// Chat prompts, one row per user (or item): `id` int32, `key` string (the raw id),
/// `system` string? (the system message, if any), `prompt` string (the user message).
pub const PROMPTS: ArtifactType = ArtifactType::table(
    "Prompts",
    "chat prompts: id int32, key string, system string?, prompt string",
    &[
        ColumnSpec { name: "id", ty: ColumnType::Int32 },
        ColumnSpec { name: "key", ty: ColumnType::Utf8 },
        ColumnSpec { name: "system", ty: ColumnType::Utf8 },
        ColumnSpec { name: "prompt", ty: ColumnType::Utf8 },
    ],
);

/// Ranking metrics: `method` string, `k` int32, `map`, `ndcg`, `click` float64, `lists` int64.
pub const METRICS: ArtifactType = ArtifactType::table(
    "Metrics",
    "ranking metrics: method string, k int32, map/ndcg/click float64, lists int64",
    &[
        ColumnSpec { name: "method", ty: ColumnType::Utf8 },
        ColumnSpec { name: "k", ty: ColumnType::Int32 },
        ColumnSpec { name: "map", ty: ColumnType::Float64 },
        ColumnSpec { name: "ndcg", ty: ColumnType::Float64 },
        ColumnSpec { name: "click", ty: ColumnType::Float64 },
        ColumnSpec { name: "lists", ty: ColumnType::Int64 },
    ],
);

/// Vectors keyed by user or item: `id` int32, `key` string (raw id), `vector`
/// fixed_list<float32> of dimension D; a `sample` int32 column when a user has several.
pub const EMBEDDINGS: ArtifactType = ArtifactType::table(
    "Embeddings",
    "vectors: id int32, key string, sample int32?, vector fixed_list<float32>",
    &[
        ColumnSpec { name: "id", ty: ColumnType::Int32 },
        ColumnSpec { name: "key", ty: ColumnType::Utf8 },
        ColumnSpec { name: "vector", ty: ColumnType::FixedList(&ColumnType::Float32) },
    ],
);

/// A trained reranker that reads no knowledge: `model.safetensors` + `config.json`.
pub const RERANKER: ArtifactType = ArtifactType::files("Reranker", "a trained reranker without knowledge: model.safetensors, config.json");

/// A trained reranker that reads user and item knowledge vectors (KAR).
pub const KNOWLEDGE_RERANKER: ArtifactType =
    ArtifactType::files("KnowledgeReranker", "a trained reranker that reads user and item knowledge: model.safetensors, config.json");

/// A training curve: `epoch` int32, `loss`, `map5`, `ndcg5` float64 (on the selection lists),
/// `best` bool (the epoch kept).
pub const CURVE: ArtifactType = ArtifactType::table(
    "TrainingCurve",
    "per epoch: epoch int32, loss/map5/ndcg5 float64, best bool",
    &[
        ColumnSpec { name: "epoch", ty: ColumnType::Int32 },
        ColumnSpec { name: "loss", ty: ColumnType::Float64 },
        ColumnSpec { name: "map5", ty: ColumnType::Float64 },
        ColumnSpec { name: "ndcg5", ty: ColumnType::Float64 },
        ColumnSpec { name: "best", ty: ColumnType::Boolean },
    ],
);

/// taste-match's verdicts: `user` int32, `key` string, `sample` int32, `test` bool,
/// `names_liked` / `names_disliked` / `names_any` bool.
pub const TASTES: ArtifactType = ArtifactType::table(
    "TasteMatches",
    "per answer: user int32, key string, sample int32, test bool, names_liked/names_disliked/names_any bool",
    &[
        ColumnSpec { name: "user", ty: ColumnType::Int32 },
        ColumnSpec { name: "key", ty: ColumnType::Utf8 },
        ColumnSpec { name: "sample", ty: ColumnType::Int32 },
        ColumnSpec { name: "names_liked", ty: ColumnType::Boolean },
        ColumnSpec { name: "names_disliked", ty: ColumnType::Boolean },
    ],
);

/// DPO's training log, one row per optimiser step (TRL's logged figures).
pub const DPO_LOG: ArtifactType = ArtifactType::table(
    "DpoLog",
    "per optimiser step: step int32, epoch/lr/loss/grad_norm float64, rewards_chosen/rejected/accuracies/margins, logps_chosen/rejected, logits_chosen/rejected float64, pairs int32",
    &[
        ColumnSpec { name: "step", ty: ColumnType::Int32 },
        ColumnSpec { name: "epoch", ty: ColumnType::Float64 },
        ColumnSpec { name: "loss", ty: ColumnType::Float64 },
        ColumnSpec { name: "rewards_chosen", ty: ColumnType::Float64 },
        ColumnSpec { name: "rewards_rejected", ty: ColumnType::Float64 },
        ColumnSpec { name: "rewards_accuracies", ty: ColumnType::Float64 },
        ColumnSpec { name: "rewards_margins", ty: ColumnType::Float64 },
    ],
);

/// An LLM: `model.gguf`, or Hugging Face files (config.json, *.safetensors, tokenizer.json,
/// tokenizer_config.json); `llm.json` says which.
pub const LLM: ArtifactType = ArtifactType::files("Llm", "an LLM: model.gguf or Hugging Face files (config.json, safetensors, tokenizer.json), plus llm.json");

/// Rewards per user and knowledge sample: `user` int32, `key` string (raw id), `sample` int32,
/// `map`, `ndcg` float64 (at the metric's k, means over the user's lists), `lists` int32,
/// `reward` float64 (the chosen metric).
pub const SCORES: ArtifactType = ArtifactType::table(
    "Scores",
    "rewards: user int32, key string, sample int32, map/ndcg float64, lists int32, reward float64",
    &[
        ColumnSpec { name: "user", ty: ColumnType::Int32 },
        ColumnSpec { name: "key", ty: ColumnType::Utf8 },
        ColumnSpec { name: "sample", ty: ColumnType::Int32 },
        ColumnSpec { name: "reward", ty: ColumnType::Float64 },
    ],
);

/// DPO pairs, one per user: `user` int32, `key` string, `system` string? and `prompt` string
/// (the prompt's messages), `chosen` / `rejected` string, `chosen_sample` / `rejected_sample`
/// int32, `chosen_reward` / `rejected_reward` / `margin` float64.
pub const PAIRS: ArtifactType = ArtifactType::table(
    "Pairs",
    "DPO pairs: user int32, key string, system string?, prompt/chosen/rejected string, chosen_sample/rejected_sample int32, chosen_reward/rejected_reward/margin float64",
    &[
        ColumnSpec { name: "user", ty: ColumnType::Int32 },
        ColumnSpec { name: "key", ty: ColumnType::Utf8 },
        ColumnSpec { name: "prompt", ty: ColumnType::Utf8 },
        ColumnSpec { name: "chosen", ty: ColumnType::Utf8 },
        ColumnSpec { name: "rejected", ty: ColumnType::Utf8 },
        ColumnSpec { name: "margin", ty: ColumnType::Float64 },
    ],
);

/// A BERT-family encoder: Hugging Face files (config.json, safetensors, tokenizer.json, and the
/// sentence-transformers files when the source has them), plus `encoder.json`.
pub const ENCODER: ArtifactType =
    ArtifactType::files("Encoder", "a BERT-family encoder: Hugging Face files (config.json, safetensors, tokenizer.json), plus encoder.json");

/// Generated texts: `id` int32, `key` string (the prompt row's), `sample` int32, `text` string,
/// `tokens` int32, `finish` string (eos | stop | length), `logprob` float64.
pub const TEXTS: ArtifactType = ArtifactType::table(
    "Texts",
    "generated texts: id int32, key string, sample int32, text string, tokens int32, finish string, logprob float64",
    &[
        ColumnSpec { name: "id", ty: ColumnType::Int32 },
        ColumnSpec { name: "key", ty: ColumnType::Utf8 },
        ColumnSpec { name: "sample", ty: ColumnType::Int32 },
        ColumnSpec { name: "text", ty: ColumnType::Utf8 },
        ColumnSpec { name: "tokens", ty: ColumnType::Int32 },
        ColumnSpec { name: "finish", ty: ColumnType::Utf8 },
        ColumnSpec { name: "logprob", ty: ColumnType::Float64 },
    ],
);
