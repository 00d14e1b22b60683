//! One shard of a row-wise node, computed as a job of a cluster scheduler (a Slurm array
//! task, a Kubernetes indexed job) or as one of several processes on one machine (a GPU
//! each): the node's rows are split by a hash of each row's identity, the shard computes its
//! own rows into the row cache and uploads them to the remote (when there is one), and
//! publishes no result. The driver's later run of the node finds every row in the remote (or
//! the shared local cache) and only assembles the table, so driver and workers talk through
//! the cache alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use dagrun_cache::{Check, Digest, RemoteCache, Store};

use crate::context::{CancelToken, Cancelled, Device, InputArtifact, Inputs, NodeContext, NodeEnv, Staged};
use crate::pipeline::Pipeline;
use crate::plan::{self, Resolved};
use crate::ui::Ui;

/// Shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// A shard, checked: `count` ≥ 1 and `index` < `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!("shard index {index} is out of range: with {count} shards the index is 0 to {}", count - 1));
        }
        Ok(Shard { index, count })
    }

    /// Whether the row identified by `id` (a prompt key, a text's row key) is this shard's.
    /// Depends on `id` alone, so a row keeps its shard when the table grows.
    pub fn owns(&self, id: &str) -> bool {
        let h = blake3::hash(id.as_bytes());
        let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        x % self.count as u64 == self.index as u64
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why a shard could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("node `{node}` (kind `{kind}`) cannot be sharded: only row-wise kinds can")]
    NotRowWise { node: String, kind: String },
    #[error("node `{node}`: input `{port}` (from `{producer}`) is in neither the cache nor the remote")]
    InputMissing { node: String, port: String, producer: String },
    #[error("node `{node}`: {why}")]
    Failed { node: String, why: String },
    #[error("interrupted")]
    Interrupted,
}

/// What a shard did.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    /// The node's result already exists (locally or in the remote): nothing was computed.
    pub already: Option<&'static str>,
    /// Row results of the shard uploaded (computed here, as they were computed, or by an
    /// earlier attempt; not those the remote had), or without a remote, those it holds in
    /// the local cache.
    pub pushed: BTreeMap<String, usize>,
    pub seconds: f64,
}

/// How a shard runs: as a run's nodes do.
#[derive(Clone)]
pub struct ShardOptions {
    pub device: Device,
    pub ui: Arc<Ui>,
    pub cancel: CancelToken,
}

/// Computes shard `shard` of node `node` of `p`, whose inputs must be in `store` or `remote`,
/// and uploads the rows it computes to `remote` (without one they stay in `store`).
pub fn run_shard(p: &Pipeline, node: usize, shard: Shard, store: &Store, remote: Option<Arc<dyn RemoteCache>>, opts: ShardOptions) -> Result<ShardReport, ShardError> {
    let ShardOptions { device, ui, cancel } = opts;
    let started = Instant::now();
    let n = &p.nodes[node];
    let failed = |why: String| ShardError::Failed { node: n.id.clone(), why };
    if !n.kind.shardable() {
        return Err(ShardError::NotRowWise { node: n.id.clone(), kind: n.kind.name().into() });
    }
    let resolved = plan::resolve_keys(p, Some(store), remote.as_deref());
    match &resolved[node] {
        Resolved::Local(_) => return Ok(ShardReport { already: Some("in the local cache"), ..Default::default() }),
        Resolved::Remote(_) => return Ok(ShardReport { already: Some("in the remote"), ..Default::default() }),
        Resolved::Failed(why) => return Err(failed(why.clone())),
        Resolved::Unknown => {}
    }

    // The inputs, downloaded where only the remote has them.
    let mut inputs = BTreeMap::new();
    for e in &n.inputs {
        let producer = &p.nodes[e.from];
        let missing = || ShardError::InputMissing { node: n.id.clone(), port: e.port.clone(), producer: producer.id.clone() };
        let entry = resolved[e.from].entry().ok_or_else(missing)?;
        let digest = *entry.outputs.get(&e.from_port).ok_or_else(missing)?;
        if store.check_artifact(&digest, Check::Full).is_err() {
            let remote = remote.as_ref().ok_or_else(|| failed(format!("input `{}` is damaged in the cache", e.port)))?;
            remote.fetch_artifact(store, &digest).map_err(|x| failed(format!("downloading input `{}`: {x}", e.port)))?;
            ui.println(&format!("[{}] downloaded input `{}` from the remote", n.id, e.port));
        }
        // As a run does: a producer whose outputs are all here now has its entry here too
        // (so `explain` and later runs on this cache find it without asking the remote).
        if matches!(resolved[e.from], Resolved::Remote(_)) && entry.outputs.values().all(|d| store.check_artifact(d, Check::Quick).is_ok()) {
            let _ = store.put_action(entry);
        }
        inputs.insert(e.port.clone(), InputArtifact::of(n, &e.port, digest, store).ok_or_else(missing)?);
    }

    // Outputs go to staging directories that are dropped: a shard publishes rows, not results.
    let env = NodeEnv { store, device, ui: &ui, cancel: &cancel, remote: remote.clone() };
    let Staged { ctx, scratch: _scratch, outputs: _outputs } = NodeContext::staged(n, env, Arc::default(), Some(shard)).map_err(|e| failed(e.to_string()))?;
    ctx.log(format!("shard {shard}"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| n.kind.run(&n.params, &ctx, &Inputs::new(inputs))));
    ctx.progress.finish();
    match result {
        Err(panic) => return Err(failed(format!("the node panicked: {}", crate::run::panic_message(&*panic)))),
        Ok(Err(e)) if e.downcast_ref::<Cancelled>().is_some() || cancel.is_cancelled() => return Err(ShardError::Interrupted),
        Ok(Err(e)) => return Err(failed(crate::run::error_chain(&*e))),
        Ok(Ok(())) => {}
    }
    let mut report = ShardReport { pushed: ctx.rows_uploaded(), ..Default::default() };
    // Rows go up as they are computed; now the rest of what the shard holds that the remote
    // may lack (those an earlier attempt on this cache computed but did not get to upload).
    for (kind, keys) in ctx.rows_used(true) {
        let rows = store.rows(&kind);
        let bodies: Vec<(Digest, Vec<u8>)> = keys.iter().filter_map(|k| rows.get(k).map(|b| (*k, b))).collect();
        if let Some(remote) = &remote {
            remote.put_rows(&kind, &bodies).map_err(|e| failed(format!("uploading its rows: {e}")))?;
        }
        *report.pushed.entry(kind).or_default() += bodies.len();
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_partition_the_rows_evenly_and_bad_shards_are_refused() {
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for id in 0..4000 {
            let id = format!("user {id}");
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].owns(&id)).collect();
            assert_eq!(owners.len(), 1, "{id} belongs to exactly one shard");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (900..1100).contains(&n)), "{sizes:?}");
        assert!(Shard::new(0, 1).unwrap().owns("anything"));
        assert_eq!(Shard::new(0, 0).unwrap_err(), "the shard count must be at least 1");
        assert_eq!(Shard::new(2, 2).unwrap_err(), "shard index 2 is out of range: with 2 shards the index is 0 to 1");
    }
}
