//! Housekeeping of a shared remote: what it holds (`dagrun cache ls --remote`), and
//! age-based eviction (`dagrun cache gc --remote`). Entries older than
//! the cutoff go, except those a kept pipeline resolves to; then the artifacts and row
//! results no remaining entry names, if they too are older than the cutoff (an upload in
//! flight writes its artifacts before its entry, so a fresh unnamed artifact is left alone).
//! Entries are deleted first and an artifact's listing before its files, so a reader never
//! finds an entry whose artifact is half gone: a missing artifact is recomputed, as any.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use dagrun_cache::{Digest, RemoteError};
use object_store::path::Path as ObjectPath;
use object_store::ObjectMeta;

use crate::transfer::Remote;

/// What a remote gc deleted (or, on a dry run, would delete).
#[derive(Clone, Debug, Default)]
pub struct RemoteGc {
    pub entries_removed: usize,
    pub entries_kept: usize,
    pub artifacts_removed: usize,
    pub row_results_removed: usize,
    /// Bytes of the artifacts and rows removed.
    pub bytes_freed: u64,
}

/// One artifact in the remote.
#[derive(Clone, Debug)]
pub struct RemoteArtifact {
    pub digest: Digest,
    pub bytes: u64,
    /// Its objects (files and listing).
    pub objects: usize,
    /// The newest object's time (Unix ms).
    pub modified_ms: u64,
}

/// What a remote holds.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub artifacts: Vec<RemoteArtifact>,
    pub entries: Vec<dagrun_cache::ActionEntry>,
    /// Entries that could not be read.
    pub unreadable: usize,
    pub row_results: usize,
    pub row_bytes: u64,
}

fn ms(m: &ObjectMeta) -> u64 {
    m.last_modified.timestamp_millis().max(0) as u64
}

impl Remote {
    /// Every artifact (from one listing of `cas/`), entry and row result count.
    pub fn inventory(&self) -> Result<Inventory, RemoteError> {
        let (entries, unreadable) = self.all_actions()?;
        self.rt.block_on(async {
            let mut inv = Inventory { entries, unreadable: unreadable.len(), ..Default::default() };
            for (digest, objects) in self.artifact_objects().await? {
                inv.artifacts.push(RemoteArtifact { digest, bytes: objects.iter().map(|m| m.size).sum(), objects: objects.len(), modified_ms: objects.iter().map(ms).max().unwrap_or(0) });
            }
            for m in self.list_all(&self.object("rows")).await? {
                inv.row_results += 1;
                inv.row_bytes += m.size;
            }
            Ok(inv)
        })
    }

    /// The objects under `cas/`, by artifact.
    async fn artifact_objects(&self) -> Result<BTreeMap<Digest, Vec<ObjectMeta>>, RemoteError> {
        let cas = self.object("cas");
        let mut artifacts: BTreeMap<Digest, Vec<ObjectMeta>> = BTreeMap::new();
        for m in self.list_all(&cas).await? {
            let digest = m.location.prefix_match(&cas).and_then(|mut parts| parts.nth(1)).and_then(|d| d.as_ref().parse::<Digest>().ok());
            if let Some(d) = digest {
                artifacts.entry(d).or_default().push(m);
            }
        }
        Ok(artifacts)
    }

    /// Deletes entries created before `cutoff_ms` (Unix ms) whose keys are not in `keep`, then
    /// the artifacts and row results no remaining entry names that are older than the cutoff.
    pub fn gc(&self, cutoff_ms: u64, keep: &BTreeSet<Digest>, dry_run: bool) -> Result<RemoteGc, RemoteError> {
        let (entries, _unreadable) = self.all_actions()?;
        self.rt.block_on(async {
            let mut report = RemoteGc::default();
            let (doomed, kept): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.created_unix_ms < cutoff_ms && !keep.contains(&e.key));
            report.entries_removed = doomed.len();
            report.entries_kept = kept.len();
            let live: HashSet<Digest> = kept.iter().flat_map(|e| e.outputs.values().copied()).collect();
            let live_rows: HashSet<Digest> = kept.iter().flat_map(|e| e.rows.values().flatten().copied()).collect();
            let old = |m: &ObjectMeta| ms(m) < cutoff_ms;
            let artifacts = self.artifact_objects().await?;
            // Listings first (without one an artifact reads as absent), then the files.
            let (mut listings, mut files) = (Vec::new(), Vec::new());
            for (d, objects) in &artifacts {
                if live.contains(d) || !objects.iter().all(old) {
                    continue;
                }
                report.artifacts_removed += 1;
                report.bytes_freed += objects.iter().map(|m| m.size).sum::<u64>();
                let listing = self.listing_object(d);
                files.extend(objects.iter().map(|m| m.location.clone()).filter(|l| *l != listing));
                listings.push(listing);
            }
            let mut row_deletes = Vec::new();
            for m in self.list_all(&self.object("rows")).await? {
                let key = m.location.filename().and_then(|f| f.parse::<Digest>().ok());
                if key.is_some_and(|k| !live_rows.contains(&k)) && old(&m) {
                    report.row_results_removed += 1;
                    report.bytes_freed += m.size;
                    row_deletes.push(m.location);
                }
            }
            if dry_run {
                return Ok(report);
            }
            let entry_deletes: Vec<ObjectPath> = doomed.iter().map(|e| self.action_object(&e.key)).collect();
            for batch in [entry_deletes, listings, files, row_deletes] {
                self.delete_all(batch).await?;
            }
            Ok(report)
        })
    }
}
