//! What a running node sees: its inputs (read-only artifacts), and a context that gives it
//! a derived seed, a scratch directory, the device, progress, a logger, cancellation and
//! the places to write its outputs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use dagrun_cache::table::{self, check_columns, Table};
use dagrun_cache::{CacheError, Digest, Staging, Store};

use crate::kind::{ArtifactType, Port};
use crate::pipeline::Node;
use crate::ui::{Progress, Ui};

/// The file a single-table artifact's rows live in.
pub const TABLE_FILE: &str = "table.parquet";
/// The file naming an artifact's type.
pub const MANIFEST_FILE: &str = "artifact.json";

/// Where models run. Not part of any cache key: a result means the same on every device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Device, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => Ok(Device::Cuda(i)),
                _ => Err(format!("unknown device `{s}` (expected `cpu`, `cuda` or `cuda:N`)")),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A cancellation flag shared by a run and its nodes (set by Ctrl-C).
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Returned by a node that stopped because the run was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// A misuse of inputs or outputs by a node, or a failure reading or writing them.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("no input port `{0}` is connected")]
    NoInput(String),
    #[error("no output port `{0}`")]
    NoOutput(String),
    #[error("port `{port}` ({ty}) has no table `{table}`")]
    NoTable { port: String, ty: String, table: String },
    #[error("output `{port}` ({ty}) holds several tables; write each with write_named_table")]
    SeveralTables { port: String, ty: String },
    #[error("output `{port}`: the table does not fit type {ty}: {why}")]
    OutputContract { port: String, ty: String, why: String },
    #[error("input `{port}` ({digest}): {why}")]
    InputContract { port: String, digest: String, why: String },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// One connected input artifact.
#[derive(Clone, Debug)]
pub struct InputArtifact {
    pub port: Port,
    pub digest: Digest,
    pub dir: PathBuf,
}

impl InputArtifact {
    /// Artifact `digest` of `store` as `node`'s input `port`; `None` for a port it lacks.
    pub(crate) fn of(node: &Node, port: &str, digest: Digest, store: &Store) -> Option<InputArtifact> {
        let port = node.input_ports.iter().find(|pp| pp.name == port)?.clone();
        Some(InputArtifact { port, digest, dir: store.artifact_dir(&digest) })
    }
}

/// A node's connected inputs, by port name.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    items: BTreeMap<String, InputArtifact>,
}

impl Inputs {
    pub(crate) fn new(items: BTreeMap<String, InputArtifact>) -> Inputs {
        Inputs { items }
    }

    /// The artifact on `port`, or `None` for an unconnected optional input.
    pub fn get(&self, port: &str) -> Option<&InputArtifact> {
        self.items.get(port)
    }

    /// Whether an (optional) input is connected.
    pub fn has(&self, port: &str) -> bool {
        self.items.contains_key(port)
    }

    /// The read-only directory of the artifact on `port`.
    pub fn dir(&self, port: &str) -> Result<&Path, PortError> {
        self.items.get(port).map(|a| a.dir.as_path()).ok_or_else(|| PortError::NoInput(port.into()))
    }

    /// Reads the table of a single-table input, checking that its schema still satisfies the
    /// port's type.
    pub fn table(&self, port: &str) -> Result<Table, PortError> {
        self.named_table(port, "table")
    }

    /// Reads table `name` of a multi-table input (`"table"` for a single-table one).
    pub fn named_table(&self, port: &str, name: &str) -> Result<Table, PortError> {
        let a = self.items.get(port).ok_or_else(|| PortError::NoInput(port.into()))?;
        let columns = a.port.ty.columns_of(name).ok_or_else(|| PortError::NoTable {
            port: port.into(),
            ty: a.port.ty.name.into(),
            table: name.into(),
        })?;
        let t = table::read_parquet(&a.dir.join(ArtifactType::table_file(name)))?;
        check_columns(&t.schema, columns).map_err(|why| PortError::InputContract {
            port: port.into(),
            digest: a.digest.short(),
            why: format!("table `{name}` does not fit type {}: {why}", a.port.ty),
        })?;
        Ok(t)
    }
}

/// The running node's view of the engine.
pub struct NodeContext {
    pub(crate) node_id: String,
    pub(crate) seed: u64,
    pub(crate) device: Device,
    pub(crate) scratch: PathBuf,
    pub(crate) outputs: BTreeMap<String, (Port, PathBuf)>,
    /// (port, table) pairs written so far; table "" for a file output.
    pub(crate) written: Mutex<Vec<(String, String)>>,
    pub(crate) progress: Progress,
    pub(crate) ui: Arc<Ui>,
    pub(crate) cancel: CancelToken,
    pub(crate) threads: usize,
    /// The store's root, for row results and downloads; None for standalone contexts.
    pub(crate) store_root: Option<PathBuf>,
    /// The lines logged so far, kept with the node's cache entry and run record.
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
    /// The run's remote, which row results are read through.
    pub(crate) remote: Option<Arc<dyn dagrun_cache::RemoteCache>>,
    /// The row results read or written so far, for the node's cache entry.
    pub(crate) rows_used: crate::rows::RowsUsed,
    /// Set when the node computes one shard of its rows (see [`crate::shard`]).
    pub(crate) shard: Option<crate::shard::Shard>,
}

/// What a run gives each node it computes.
pub(crate) struct NodeEnv<'a> {
    pub store: &'a Store,
    pub device: Device,
    pub ui: &'a Arc<Ui>,
    pub cancel: &'a CancelToken,
    pub remote: Option<Arc<dyn dagrun_cache::RemoteCache>>,
}

/// A node's context whose scratch and output directories are fresh staging directories of
/// the store: dropped with what they hold unless the outputs are published.
pub(crate) struct Staged {
    pub ctx: NodeContext,
    pub scratch: Staging,
    /// Output port -> its staging directory.
    pub outputs: BTreeMap<String, Staging>,
}

impl NodeContext {
    /// The context `node` computes in (a shard of its rows, with `shard`); its log lines go
    /// to `lines`.
    pub(crate) fn staged(node: &Node, env: NodeEnv, lines: Arc<Mutex<Vec<String>>>, shard: Option<crate::shard::Shard>) -> Result<Staged, CacheError> {
        let scratch = env.store.stage()?;
        let mut stagings = BTreeMap::new();
        let mut outputs = BTreeMap::new();
        for port in &node.outputs {
            let s = env.store.stage()?;
            outputs.insert(port.name.clone(), (port.clone(), s.path().to_path_buf()));
            stagings.insert(port.name.clone(), s);
        }
        let ctx = NodeContext {
            node_id: node.id.clone(),
            seed: node.seed,
            device: env.device,
            scratch: scratch.path().to_path_buf(),
            outputs,
            written: Mutex::new(Vec::new()),
            progress: Progress::new(env.ui, &node.id),
            ui: env.ui.clone(),
            cancel: env.cancel.clone(),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            store_root: Some(env.store.root().to_path_buf()),
            lines,
            remote: env.remote,
            rows_used: Default::default(),
            shard,
        };
        Ok(Staged { ctx, scratch, outputs: stagings })
    }

    /// A context for running a node outside the scheduler (tests, benchmarks): outputs go
    /// to subdirectories of `dir`, named by port.
    pub fn standalone(node_id: &str, seed: u64, dir: &Path, outputs: &[Port]) -> std::io::Result<NodeContext> {
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch)?;
        let mut outs = BTreeMap::new();
        for p in outputs {
            let d = dir.join(&p.name);
            std::fs::create_dir_all(&d)?;
            outs.insert(p.name.clone(), (p.clone(), d));
        }
        Ok(NodeContext {
            node_id: node_id.into(),
            seed,
            device: Device::Cpu,
            scratch,
            outputs: outs,
            written: Mutex::new(Vec::new()),
            progress: Progress::hidden(),
            ui: Ui::silent(),
            cancel: CancelToken::new(),
            threads: 1,
            store_root: None,
            lines: Arc::default(),
            remote: None,
            rows_used: Default::default(),
            shard: None,
        })
    }

    /// Like [`NodeContext::standalone`], with row results and downloads kept under `store` (a
    /// directory standing in for the cache) so row caching can be tested without the scheduler.
    pub fn standalone_with_store(node_id: &str, seed: u64, dir: &Path, outputs: &[Port], store: &Path) -> std::io::Result<NodeContext> {
        let mut ctx = Self::standalone(node_id, seed, dir, outputs)?;
        ctx.store_root = Some(store.to_path_buf());
        Ok(ctx)
    }

    /// Row results of kind `kind`, kept in the cache across runs and read through the run's
    /// remote (see [`crate::rows::RowCache`]); None when the node runs without a cache.
    pub fn row_cache(&self, kind: &str) -> Option<crate::rows::RowCache> {
        let root = self.store_root.as_ref()?;
        let local = dagrun_cache::RowStore::new(root.join("rows").join(kind));
        Some(crate::rows::RowCache::new(kind, local, self.remote.clone(), self.rows_used.clone(), self.shard.is_some()))
    }

    /// The shard of its rows the node computes, if it is computing one (`dagrun shard`): a
    /// row-wise kind then computes only the rows [`crate::shard::Shard::owns`], keeps them in
    /// its row cache and returns without writing its outputs.
    pub fn shard(&self) -> Option<crate::shard::Shard> {
        self.shard
    }

    /// How the node came by its rows of each kind (cached, from the remote, computed).
    pub(crate) fn row_counts(&self) -> BTreeMap<String, crate::rows::RowCounts> {
        self.rows_used.lock().map(|s| s.counts()).unwrap_or_default()
    }

    /// How many rows of each kind went to the remote as they were computed (a shard's).
    pub(crate) fn rows_uploaded(&self) -> BTreeMap<String, usize> {
        self.rows_used.lock().map(|s| s.uploaded.iter().map(|(k, v)| (k.clone(), v.len())).collect()).unwrap_or_default()
    }

    /// The row keys used so far, by kind, sorted; with `local_only`, less those the remote
    /// is known to hold (read from it, or uploaded as computed).
    pub(crate) fn rows_used(&self, local_only: bool) -> BTreeMap<String, Vec<Digest>> {
        let Ok(seen) = self.rows_used.lock() else { return BTreeMap::new() };
        let in_remote = |kind: &str, k: &Digest| [&seen.fetched, &seen.uploaded].iter().any(|set| set.get(kind).is_some_and(|s| s.contains(k)));
        seen.used.iter().map(|(kind, keys)| (kind.clone(), keys.iter().filter(|k| !(local_only && in_remote(kind, k))).copied().collect())).collect()
    }

    /// Where fetched model packages are kept, shared by every pipeline on this cache (the
    /// scratch directory when there is no cache).
    pub fn downloads_dir(&self) -> PathBuf {
        match &self.store_root {
            Some(r) => r.join("downloads"),
            None => self.scratch.join("downloads"),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's seed, derived from the pipeline seed and the node id.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// How many threads the node may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// A private directory, deleted after the node finishes.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Logs a line, prefixed with the node id.
    pub fn log(&self, msg: impl AsRef<str>) {
        self.ui.println(&format!("[{}] {}", self.node_id, msg.as_ref()));
        if let Ok(mut lines) = self.lines.lock() {
            lines.extend(msg.as_ref().lines().map(str::to_string));
        }
    }

    /// Whether the run is being cancelled; long loops should check and return [`Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err(Cancelled)` once the run is being cancelled.
    pub fn check_cancelled(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    fn output(&self, port: &str) -> Result<&(Port, PathBuf), PortError> {
        self.outputs.get(port).ok_or_else(|| PortError::NoOutput(port.into()))
    }

    fn mark_written(&self, port: &str, table: &str) {
        if let Ok(mut w) = self.written.lock() {
            let entry = (port.to_string(), table.to_string());
            if !w.contains(&entry) {
                w.push(entry);
            }
        }
    }

    /// The directory to write the files of output `port` into (for file artifacts, or extra
    /// files beside the tables of a multi-table artifact).
    pub fn output_dir(&self, port: &str) -> Result<&Path, PortError> {
        let (_, dir) = self.output(port)?;
        self.mark_written(port, "");
        Ok(dir)
    }

    /// Writes output `port` as a table, checking the schema against the port's type.
    pub fn write_table(&self, port: &str, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(), PortError> {
        let (p, _) = self.output(port)?;
        if !p.ty.is_table && !p.ty.tables.is_empty() {
            return Err(PortError::SeveralTables { port: port.into(), ty: p.ty.name.into() });
        }
        self.write_named_table(port, "table", schema, batches)
    }

    /// Writes table `name` of a multi-table output (`"table"` for a single-table one).
    pub fn write_named_table(&self, port: &str, name: &str, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(), PortError> {
        let (p, dir) = self.output(port)?;
        let columns = p.ty.columns_of(name).ok_or_else(|| PortError::NoTable {
            port: port.into(),
            ty: p.ty.name.into(),
            table: name.into(),
        })?;
        check_columns(schema, columns).map_err(|why| PortError::OutputContract {
            port: port.into(),
            ty: p.ty.name.into(),
            why: format!("table `{name}`: {why}"),
        })?;
        table::write_parquet(&dir.join(ArtifactType::table_file(name)), schema, batches)?;
        self.mark_written(port, name);
        Ok(())
    }

    /// Writes output `port` as a one-batch table.
    pub fn write_batch(&self, port: &str, batch: &RecordBatch) -> Result<(), PortError> {
        self.write_table(port, &batch.schema(), std::slice::from_ref(batch))
    }

    /// What the node has not written: whole ports, or tables of a multi-table port.
    pub(crate) fn unwritten(&self) -> Vec<String> {
        let w = self.written.lock().map(|w| w.clone()).unwrap_or_default();
        let mut missing = Vec::new();
        for (name, (port, _)) in &self.outputs {
            let has = |t: &str| w.iter().any(|(p, tt)| p == name && tt == t);
            if port.ty.is_table || port.ty.tables.is_empty() {
                if !w.iter().any(|(p, _)| p == name) {
                    missing.push(name.clone());
                }
            } else {
                for t in port.ty.tables {
                    if !has(t.name) {
                        missing.push(format!("{name} (table `{}`)", t.name));
                    }
                }
            }
        }
        missing
    }
}
