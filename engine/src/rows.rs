//! Row results as a running node sees them (see [`dagrun_cache::rows`]): the local row store,
//! read through to the run's remote when it has one, with every key the node reads or writes
//! recorded for its cache entry, so that pushing the entry shares the rows too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use dagrun_cache::{Digest, RemoteCache, RowStore};

pub use dagrun_cache::rows::prune;

/// The keys a node used, by kind, and those of them the remote is known to hold: read from
/// it, or uploaded as computed.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub used: BTreeMap<String, BTreeSet<Digest>>,
    pub fetched: BTreeMap<String, BTreeSet<Digest>>,
    pub uploaded: BTreeMap<String, BTreeSet<Digest>>,
    /// Those the node computed (stored, not found).
    pub computed: BTreeMap<String, BTreeSet<Digest>>,
}

impl Seen {
    /// How the node came by its rows of each kind.
    pub fn counts(&self) -> BTreeMap<String, RowCounts> {
        let len = |m: &BTreeMap<String, BTreeSet<Digest>>, kind: &str| m.get(kind).map_or(0, BTreeSet::len);
        self.used
            .iter()
            .map(|(kind, keys)| {
                let (computed, remote) = (len(&self.computed, kind), len(&self.fetched, kind));
                (kind.clone(), RowCounts { rows: keys.len(), cached: keys.len().saturating_sub(computed + remote), remote, computed })
            })
            .collect()
    }
}

/// How a run of a row-wise node came by its rows of one kind: found in the local cache,
/// downloaded from the remote, or computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RowCounts {
    pub rows: usize,
    pub cached: usize,
    pub remote: usize,
    pub computed: usize,
}

impl std::fmt::Display for RowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} rows computed", self.computed, self.rows)?;
        match (self.cached, self.remote) {
            (0, 0) => Ok(()),
            (c, 0) => write!(f, ", {c} cached"),
            (0, r) => write!(f, ", {r} from the remote"),
            (c, r) => write!(f, ", {c} cached, {r} from the remote"),
        }
    }
}

pub(crate) type RowsUsed = Arc<Mutex<Seen>>;

/// One kind's row results for a running node.
#[derive(Clone)]
pub struct RowCache {
    kind: String,
    local: RowStore,
    remote: Option<Arc<dyn RemoteCache>>,
    used: RowsUsed,
    /// Upload each row to the remote as it is stored (a shard: a task that dies keeps what
    /// it finished).
    upload_as_computed: bool,
}

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCache").field("kind", &self.kind).field("local", &self.local).finish()
    }
}

/// What [`RowCache::get_many`] found.
#[derive(Debug, Default)]
pub struct RowsLookup {
    /// Each key's bytes, `None` for a miss.
    pub found: Vec<Option<Vec<u8>>>,
    /// How many of the hits came from the remote (they are now local too).
    pub from_remote: usize,
    /// Why the remote could not help (unreachable, damaged objects), for the node's log.
    pub warnings: Vec<String>,
}

impl RowCache {
    pub(crate) fn new(kind: &str, local: RowStore, remote: Option<Arc<dyn RemoteCache>>, used: RowsUsed, upload_as_computed: bool) -> RowCache {
        RowCache { kind: kind.to_string(), local, remote, used, upload_as_computed }
    }

    /// Row results kept under `dir` only: no remote, nothing recorded (tests, tools).
    pub fn local(kind: &str, dir: impl Into<std::path::PathBuf>) -> RowCache {
        RowCache::new(kind, RowStore::new(dir), None, RowsUsed::default(), false)
    }

    fn record(&self, keys: impl IntoIterator<Item = Digest>) {
        if let Ok(mut seen) = self.used.lock() {
            seen.used.entry(self.kind.clone()).or_default().extend(keys);
        }
    }

    /// The bytes stored under `key` in the local cache.
    pub fn get(&self, key: &Digest) -> Option<Vec<u8>> {
        let hit = self.local.get(key);
        if hit.is_some() {
            self.record([*key]);
        }
        hit
    }

    /// Looks every key up: locally, then the misses in the remote (several at a time), whose
    /// hits are stored locally. `valid` rejects bytes the kind cannot use (a miss then).
    pub fn get_many(&self, keys: &[Digest], valid: &dyn Fn(&[u8]) -> bool) -> RowsLookup {
        let mut found: Vec<Option<Vec<u8>>> = keys.iter().map(|k| self.local.get(k).filter(|b| valid(b))).collect();
        let mut out = RowsLookup::default();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if let (Some(remote), false) = (&self.remote, missing.is_empty()) {
            let asked: Vec<Digest> = missing.iter().map(|&i| keys[i]).collect();
            match remote.get_rows(&self.kind, &asked) {
                Ok((bodies, damaged)) => {
                    for (&i, body) in missing.iter().zip(bodies) {
                        let Some(body) = body.filter(|b| valid(b)) else { continue };
                        // A hit that cannot be kept locally is still a hit for this run.
                        if let Err(e) = self.local.put(&keys[i], &body) {
                            out.warnings.push(format!("could not keep a row result from the remote: {e}"));
                        }
                        found[i] = Some(body);
                        out.from_remote += 1;
                        self.mark(keys[i], |s| &mut s.fetched);
                    }
                    if !damaged.is_empty() {
                        out.warnings.push(format!("{} row results in the remote are damaged and were not used (first: {})", damaged.len(), damaged[0]));
                    }
                }
                Err(e) => out.warnings.push(format!("the remote's row results are unavailable ({e}); computing here")),
            }
        }
        self.record(keys.iter().zip(&found).filter(|(_, f)| f.is_some()).map(|(k, _)| *k));
        out.found = found;
        out
    }

    fn mark(&self, key: Digest, set: fn(&mut Seen) -> &mut BTreeMap<String, BTreeSet<Digest>>) {
        if let Ok(mut seen) = self.used.lock() {
            set(&mut seen).entry(self.kind.clone()).or_default().insert(key);
        }
    }

    /// Stores `bytes` under `key` locally (pushed with the node's entry; a shard uploads it
    /// at once).
    pub fn put(&self, key: &Digest, bytes: &[u8]) -> std::io::Result<()> {
        self.put_many(&[(*key, bytes.to_vec())])
    }

    /// Stores several rows, as [`RowCache::put`] does; a shard uploads them together (several
    /// requests at a time), so store a batch's rows with one call.
    pub fn put_many(&self, rows: &[(Digest, Vec<u8>)]) -> std::io::Result<()> {
        for (key, bytes) in rows {
            self.local.put(key, bytes)?;
        }
        self.record(rows.iter().map(|(k, _)| *k));
        if let Ok(mut seen) = self.used.lock() {
            seen.computed.entry(self.kind.clone()).or_default().extend(rows.iter().map(|(k, _)| *k));
        }
        if let (true, Some(remote), false) = (self.upload_as_computed, &self.remote, rows.is_empty()) {
            remote.put_rows(&self.kind, rows).map_err(|e| std::io::Error::other(format!("uploading to the remote: {e}")))?;
            for (key, _) in rows {
                self.mark(*key, |s| &mut s.uploaded);
            }
        }
        Ok(())
    }
}
