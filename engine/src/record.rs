//! Run records: one JSON file per run under `runs/<pipeline>/`, naming every node's key, key
//! components, outputs, status and time. `plan` and `explain` compare against them; `cache gc`
//! keeps what the latest runs reached.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;

use dagrun_cache::{write_atomic, CacheError, Digest, Store};
use serde::{Deserialize, Serialize};

use crate::key::KeyComponents;

/// How a node ended in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Its key was in the cache; nothing was computed.
    Cached,
    /// It was computed in this run.
    Ran,
    /// Its key was in the remote cache: nothing was computed, and its outputs were downloaded
    /// only if a node that ran needed them.
    Remote,
    /// It failed.
    Failed,
    /// It did not run: not selected, an upstream node failed, or the run stopped.
    Skipped,
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeStatus::Cached => "cached",
            NodeStatus::Ran => "ran",
            NodeStatus::Remote => "remote",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
        })
    }
}

/// One node in a run record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub kind: String,
    pub status: NodeStatus,
    pub key: Option<Digest>,
    pub components: Option<KeyComponents>,
    pub outputs: BTreeMap<String, Digest>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the node logged, when it ran or failed in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

/// How a whole run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Ok,
    Failed,
    Interrupted,
}

/// A run record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub pipeline: String,
    pub spec: String,
    pub run_id: String,
    pub started_unix_ms: u64,
    pub seconds: f64,
    pub outcome: RunOutcome,
    pub nodes: Vec<NodeRecord>,
}

impl RunRecord {
    pub fn node(&self, id: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

fn pipeline_dir(store: &Store, pipeline: &str) -> PathBuf {
    store.runs_dir().join(pipeline)
}

/// Writes a record as `runs/<pipeline>/<run_id>.json`.
pub fn save(store: &Store, record: &RunRecord) -> Result<PathBuf, CacheError> {
    let dir = pipeline_dir(store, &record.pipeline);
    fs::create_dir_all(&dir).map_err(|e| CacheError::io(&dir, e))?;
    let path = dir.join(format!("{}.json", record.run_id));
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| CacheError::BadEntry { path: path.clone(), why: e.to_string() })?;
    write_atomic(store.root(), &path, &bytes)?;
    Ok(path)
}

/// A new run id: the start time (sortable) and the process id.
pub fn new_run_id(started_unix_ms: u64) -> String {
    format!("{started_unix_ms:015}-{}", std::process::id())
}

/// Record files of a pipeline, newest first.
fn record_paths(store: &Store, pipeline: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(pipeline_dir(store, pipeline))
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
        .unwrap_or_default();
    paths.sort();
    paths.reverse();
    paths
}

/// The newest `limit` readable records of a pipeline, newest first.
pub fn latest(store: &Store, pipeline: &str, limit: usize) -> Vec<RunRecord> {
    record_paths(store, pipeline)
        .into_iter()
        .filter_map(|p| fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok()))
        .take(limit)
        .collect()
}

/// Names of pipelines with records.
pub fn pipelines(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.runs_dir())
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// For each node id: the components and outputs it last had when it ran or was cached,
/// searching the newest `depth` records.
pub fn last_computed(store: &Store, pipeline: &str, depth: usize) -> HashMap<String, (NodeRecord, u64)> {
    let mut out: HashMap<String, (NodeRecord, u64)> = HashMap::new();
    for rec in latest(store, pipeline, depth) {
        for n in rec.nodes {
            if matches!(n.status, NodeStatus::Ran | NodeStatus::Cached | NodeStatus::Remote) && n.components.is_some() && !out.contains_key(&n.id) {
                out.insert(n.id.clone(), (n, rec.started_unix_ms));
            }
        }
    }
    out
}
