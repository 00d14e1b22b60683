//! dagrun's engine: pipeline specs, the typed node graph, cache keys, planning, the parallel
//! scheduler and run records. It knows nothing of recommendation; node kinds plug in through
//! the [`Kind`] trait and a [`Registry`].

pub mod context;
pub mod error;
pub mod files;
pub mod key;
pub mod kind;
pub mod pipeline;
pub mod plan;
pub mod record;
pub mod row_progress;
pub mod rows;
pub mod run;
pub mod shard;
pub mod spec;
pub mod suggest;
pub mod ui;

#[cfg(test)]
mod testkit;

pub use context::{CancelToken, Cancelled, Device, Inputs, NodeContext, PortError};
pub use error::{Loc, SpecError, SpecErrors};
pub use key::KeyComponents;
pub use kind::{ArtifactType, BoxError, DynKind, Kind, ParamError, Port, Registry, Resource, RowPlan, Signature, TableSpec};
pub use pipeline::Pipeline;
pub use plan::Selection;
pub use record::{NodeStatus, RunOutcome};
pub use row_progress::{row_progress, RowProgress, RowProgressError};
pub use rows::{RowCache, RowCounts, RowsLookup};
pub use run::{run, RunError, RunOptions, RunReport};
pub use shard::{run_shard, Shard, ShardError, ShardOptions, ShardReport};
pub use spec::Override;
pub use ui::{Progress, Ui};

pub use dagrun_cache as cache;
