//! How much of a row-wise node's work is already done, before running it: the keys of its
//! rows, derived from its inputs as its run derives them ([`crate::Kind::rows`]), looked up
//! in the local row store and then in the remote. So `dagrun explain` and `plan --rows` can
//! tell that a grown prompt table, an interrupted run or a sharded job leaves only the rest
//! to compute, and how far the shards have got.

use std::collections::{BTreeMap, HashSet};

use dagrun_cache::{Digest, RemoteCache, Store};

use crate::context::{InputArtifact, Inputs};
use crate::pipeline::Pipeline;
use crate::plan::Resolved;

/// A row-wise node's rows and where those already computed are.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RowProgress {
    /// What a row is ("answers", "texts").
    pub unit: &'static str,
    /// Distinct rows the node computes from its current inputs.
    pub total: usize,
    /// Of them, those in the local row cache.
    pub local: usize,
    /// Of the rest, those the remote holds (a run downloads them instead of computing).
    pub remote: usize,
}

impl RowProgress {
    /// Rows neither cache holds: what a run would compute.
    pub fn to_compute(&self) -> usize {
        self.total - self.local - self.remote
    }
}

impl std::fmt::Display for RowProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} {} already computed", group(self.local + self.remote), group(self.total), self.unit)?;
        if self.remote > 0 {
            write!(f, " ({} here, {} in the remote)", group(self.local), group(self.remote))?;
        }
        write!(f, "; {} to compute", group(self.to_compute()))
    }
}

/// `48000` as `48,000`.
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Why a node's rows could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum RowProgressError {
    #[error("its rows are known once `{producer}` has run")]
    InputPending { producer: String },
    #[error("input `{port}` is only in the remote (`dagrun cache pull` fetches it)")]
    InputRemote { port: String },
    #[error("{0}")]
    Failed(String),
}

/// Counts the rows of node `node` of `p` that are already computed, locally or in `remote`.
/// `resolved` is where every node's result is ([`crate::plan::resolve_keys`]). `Ok(None)`
/// for a node whose kind does not work row by row. Reads the node's inputs from `store`
/// (without one, none is at hand); downloads nothing.
pub fn row_progress(p: &Pipeline, node: usize, resolved: &[Resolved], store: Option<&Store>, remote: Option<&dyn RemoteCache>) -> Result<Option<RowProgress>, RowProgressError> {
    let n = &p.nodes[node];
    if !n.kind.shardable() {
        return Ok(None);
    }
    let mut inputs = BTreeMap::new();
    for e in &n.inputs {
        let pending = || RowProgressError::InputPending { producer: p.nodes[e.from].id.clone() };
        let (digest, store) = match (&resolved[e.from], store) {
            (Resolved::Local(entry), Some(store)) => (*entry.outputs.get(&e.from_port).ok_or_else(pending)?, store),
            (Resolved::Local(_), None) => return Err(pending()),
            (Resolved::Remote(_), _) => return Err(RowProgressError::InputRemote { port: e.port.clone() }),
            (Resolved::Unknown, _) => return Err(pending()),
            (Resolved::Failed(why), _) => return Err(RowProgressError::Failed(why.clone())),
        };
        inputs.insert(e.port.clone(), InputArtifact::of(n, &e.port, digest, store).ok_or_else(pending)?);
    }
    let plan = match n.kind.rows(&n.params, n.seed, &Inputs::new(inputs)) {
        Ok(Some(plan)) => plan,
        Ok(None) => return Ok(None),
        Err(e) => return Err(RowProgressError::Failed(crate::run::error_chain(&*e))),
    };
    let mut seen = HashSet::new();
    let keys: Vec<Digest> = plan.keys.into_iter().filter(|k| seen.insert(*k)).collect();
    let rows = store.map(|s| s.rows(&plan.cache));
    let missing: Vec<Digest> = keys.iter().filter(|k| !rows.as_ref().is_some_and(|r| r.contains(k))).copied().collect();
    let in_remote = match (remote, missing.is_empty()) {
        (Some(r), false) => r.has_rows(&plan.cache, &missing).map_err(|e| RowProgressError::Failed(format!("asking the remote: {e}")))?.into_iter().filter(|&b| b).count(),
        _ => 0,
    };
    Ok(Some(RowProgress { unit: plan.unit, total: keys.len(), local: keys.len() - missing.len(), remote: in_remote }))
}

#[cfg(test)]
mod tests {
    use super::{group, RowProgress};

    #[test]
    fn progress_reads_as_counts_with_thousands_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(48000), "48,000");
        assert_eq!(group(1234567), "1,234,567");
        let p = RowProgress { unit: "answers", total: 48000, local: 12000, remote: 18000 };
        assert_eq!(p.to_string(), "30,000 of 48,000 answers already computed (12,000 here, 18,000 in the remote); 18,000 to compute");
        let p = RowProgress { unit: "texts", total: 10, local: 0, remote: 0 };
        assert_eq!(p.to_string(), "0 of 10 texts already computed; 10 to compute");
    }
}
