//! Per-row results that row-wise kinds (`generate`, `encode`) keep across runs: when a prompt
//! table grows, only the new rows are computed. Each entry is a small file named by a key the
//! kind derives from everything that decides that row's result (model digest, params, seed,
//! the row's content); a checksum trailer makes a torn or corrupted entry a miss, never a
//! wrong answer. A hit refreshes the entry's modification time, so `cache gc` can drop the
//! entries no kept run has used ([`prune`]). Remotes store the same sealed bytes
//! ([`seal`], [`unseal`]) under `rows/KIND/`.

use std::path::{Path, PathBuf};

use crate::Digest;

const TRAILER: usize = 32;

/// `bytes` followed by their blake3 checksum: a row entry as stored, locally and remotely.
pub fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(bytes.len() + TRAILER);
    data.extend_from_slice(bytes);
    data.extend_from_slice(blake3::hash(bytes).as_bytes());
    data
}

/// The body of a sealed entry, or `None` when it is torn or damaged.
pub fn unseal(data: &[u8]) -> Option<&[u8]> {
    let body = data.len().checked_sub(TRAILER)?;
    (blake3::hash(&data[..body]).as_bytes() == &data[body..]).then(|| &data[..body])
}

/// A directory of row results of one kind.
#[derive(Clone, Debug)]
pub struct RowStore {
    dir: PathBuf,
}

impl RowStore {
    /// Row results under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> RowStore {
        RowStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.dir.join(&hex[..2]).join(&hex)
    }

    /// The bytes stored under `key`, if present and intact.
    pub fn get(&self, key: &Digest) -> Option<Vec<u8>> {
        let mut bytes = self.get_sealed(key)?;
        bytes.truncate(bytes.len() - TRAILER);
        // Mark it used (for `prune`); failing to is harmless.
        if let Ok(f) = std::fs::File::options().write(true).open(self.path(key)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        Some(bytes)
    }

    /// Whether an entry is stored under `key` (not read, so not checked: for counting what
    /// is done, as `dagrun explain` does; a damaged entry is found out when it is read).
    pub fn contains(&self, key: &Digest) -> bool {
        self.path(key).is_file()
    }

    /// The entry under `key` as stored (body and checksum), if present and intact; a damaged
    /// one is removed.
    pub fn get_sealed(&self, key: &Digest) -> Option<Vec<u8>> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        if unseal(&bytes).is_none() {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(bytes)
    }

    /// Stores `bytes` under `key` (write to a temporary file, then rename).
    pub fn put(&self, key: &Digest, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key);
        let parent = path.parent().expect("has a parent");
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".{}.{}.tmp", key.hex(), std::process::id()));
        std::fs::write(&tmp, seal(bytes))?;
        std::fs::rename(&tmp, &path)
    }
}

/// What [`prune`] removed (or would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub entries: u64,
    pub bytes: u64,
}

/// Removes the row entries under `root` (a cache's `rows/`, one folder per kind) last written
/// or read before `cutoff`, and stale temporary files. Entries in use are refreshed on every
/// hit, so with `cutoff` = the start of the oldest run `gc` keeps, what goes is what none of
/// the kept runs touched. A run that needs a pruned entry recomputes it.
pub fn prune(root: &Path, cutoff: std::time::SystemTime, dry_run: bool) -> std::io::Result<PruneReport> {
    let mut report = PruneReport::default();
    let Ok(kinds) = std::fs::read_dir(root) else { return Ok(report) };
    for kind in kinds.flatten() {
        let Ok(shards) = std::fs::read_dir(kind.path()) else { continue };
        for shard in shards.flatten() {
            let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
            for f in files.flatten() {
                let Ok(meta) = f.metadata() else { continue };
                if !meta.is_file() || meta.modified().map(|m| m >= cutoff).unwrap_or(true) {
                    continue;
                }
                report.entries += 1;
                report.bytes += meta.len();
                if !dry_run {
                    std::fs::remove_file(f.path())?;
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_drops_entries_unused_since_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let rows = RowStore::new(dir.path().join("encode"));
        let (old, used, new) = (Digest::of(b"old"), Digest::of(b"used"), Digest::of(b"new"));
        rows.put(&old, b"1").unwrap();
        rows.put(&used, b"2").unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for k in [&old, &used] {
            std::fs::File::options().write(true).open(rows.path(k)).unwrap().set_modified(past).unwrap();
        }
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        // A hit after the cutoff keeps an old entry; a fresh write is kept too.
        assert!(rows.get(&used).is_some());
        rows.put(&new, b"3").unwrap();
        let dry = prune(dir.path(), cutoff, true).unwrap();
        assert_eq!(dry.entries, 1);
        assert!(rows.get(&old).is_some(), "a dry run removes nothing");
        std::fs::File::options().write(true).open(rows.path(&old)).unwrap().set_modified(past).unwrap();
        let done = prune(dir.path(), cutoff, false).unwrap();
        assert_eq!(done, dry);
        assert_eq!(rows.get(&old), None);
        assert!(rows.get(&used).is_some() && rows.get(&new).is_some());
        // No rows directory at all is nothing to do.
        assert_eq!(prune(&dir.path().join("missing"), cutoff, false).unwrap(), PruneReport::default());
    }

    #[test]
    fn round_trips_and_treats_damage_as_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let rows = RowStore::new(dir.path());
        let key = Digest::of(b"row 1");
        assert_eq!(rows.get(&key), None);
        rows.put(&key, b"hello").unwrap();
        assert_eq!(rows.get(&key).as_deref(), Some(&b"hello"[..]));
        let path = rows.path(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(rows.get(&key), None, "a flipped bit is a miss");
        assert!(!path.exists(), "the damaged entry is removed");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(rows.get(&key), None, "a torn entry is a miss");
    }
}
