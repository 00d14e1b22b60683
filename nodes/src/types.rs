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
