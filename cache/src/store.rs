//! The local content-addressed store: a content store of artifacts by digest, an action cache
//! of node key -> output digests, per-key locks and a shared/exclusive store lock.
//!
//! Layout under the root:
//! `cas/ab/<digest>/` artifacts (read-only files plus their listing), `ac/ab/<key>.json` action
//! entries, `tmp/` staging, `locks/<key>.lock`, `quarantine/` damaged artifacts, `runs/` run
//! records (written by the engine). Every write goes through a temporary name, fsync and rename,
//! and an action entry is written only after the artifacts it names are in place.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::listing::{check_full, check_quick, Damage, Listing, LISTING_FILE};
use crate::rows::RowStore;
use crate::{CacheError, Digest};

const VERSION_FILE: &str = "VERSION";
const VERSION: &str = "dagrun-cache 1";

/// How thoroughly to check a stored artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The listing hashes to the digest and every file has its listed size.
    Quick,
    /// As `Quick`, and every file is rehashed.
    Full,
}

/// An action-cache entry: what a node with this key produced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionEntry {
    pub key: Digest,
    pub kind: String,
    /// Output port name -> artifact digest.
    pub outputs: BTreeMap<String, Digest>,
    /// What went into the key, for `explain` (opaque to the store).
    #[serde(default)]
    pub components: serde_json::Value,
    pub created_unix_ms: u64,
    /// How long the computation took.
    pub seconds: f64,
    /// The lines the node logged while computing it (`dagrun log`), so a cached or a
    /// teammate's result still says how it came about. Not part of the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    /// The row results (kind -> row keys, see [`crate::rows`]) the computation read or wrote,
    /// so that pushing the entry shares them too: a teammate whose table differs by a few rows
    /// then computes only those. Not part of the key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rows: BTreeMap<String, Vec<Digest>>,
}

/// A directory being filled before it is published.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// A published artifact.
#[derive(Clone, Debug)]
pub struct Published {
    pub digest: Digest,
    pub listing: Listing,
}

/// A held per-key lock, released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

/// A held lock on the whole store: shared while running, exclusive for gc.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// What `gc` removed (or would remove, in a dry run).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub artifacts_kept: usize,
    pub artifacts_removed: usize,
    pub bytes_freed: u64,
    pub actions_removed: usize,
    pub temp_removed: usize,
}

/// One stored artifact as `cache ls` shows it.
#[derive(Clone, Debug)]
pub struct ArtifactInfo {
    pub digest: Digest,
    pub size: u64,
    pub files: usize,
    pub modified: SystemTime,
}

/// The local artifact store.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens the store at `root`, creating its layout if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, CacheError> {
        let root = root.into();
        let store = Store { root };
        let version = store.root.join(VERSION_FILE);
        match fs::read_to_string(&version) {
            Ok(v) if v.trim() == VERSION => {}
            Ok(v) => return Err(CacheError::Version { path: store.root.clone(), found: v.trim().to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&store.root).map_err(|e| CacheError::io(&store.root, e))?;
                write_atomic(&store.root, &version, format!("{VERSION}\n").as_bytes())?;
                let tag = store.root.join("CACHEDIR.TAG");
                let _ = write_atomic(
                    &store.root,
                    &tag,
                    b"Signature: 8a477f597d28d172789f06886806bc55\n# dagrun artifact cache; see https://bford.info/cachedir/\n",
                );
            }
            Err(e) => return Err(CacheError::io(&version, e)),
        }
        for sub in ["cas", "ac", "tmp", "locks", "runs", "quarantine"] {
            let p = store.root.join(sub);
            if !p.is_dir() {
                fs::create_dir_all(&p).map_err(|e| CacheError::io(&p, e))?;
            }
        }
        Ok(store)
    }

    /// Opens an existing store without creating anything; `None` if there is none at `root`.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Option<Store>, CacheError> {
        let root = root.into();
        let version = root.join(VERSION_FILE);
        match fs::read_to_string(&version) {
            Ok(v) if v.trim() == VERSION => Ok(Some(Store { root })),
            Ok(v) => Err(CacheError::Version { path: root, found: v.trim().to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io(&version, e)),
        }
    }

    /// The row results of kind `kind` (see [`crate::rows`]).
    pub fn rows(&self, kind: &str) -> RowStore {
        RowStore::new(self.root.join("rows").join(kind))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where run records live.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Where the artifact with this digest is (or would be) stored.
    pub fn artifact_dir(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("cas").join(&hex[..2]).join(hex)
    }

    fn action_path(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.root.join("ac").join(&hex[..2]).join(format!("{hex}.json"))
    }

    /// Checks that files can be created in the store (a read-only cache fails here, clearly).
    pub fn check_writable(&self) -> Result<(), CacheError> {
        let probe = self.root.join("tmp").join(format!(".probe-{}", std::process::id()));
        File::create(&probe).map_err(|e| CacheError::io(&self.root, e))?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    /// A fresh, empty staging directory inside the store (same filesystem, so publish is a rename).
    pub fn stage(&self) -> Result<Staging, CacheError> {
        let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = self.root.join("tmp").join(format!("stage-{}-{n}-{nanos:x}", std::process::id()));
        fs::create_dir_all(&path).map_err(|e| CacheError::io(&path, e))?;
        Ok(Staging { path })
    }

    /// Publishes a staging directory as an artifact: hash, fsync, write the listing, make the
    /// files read-only, rename into the content store. If an intact artifact with the same
    /// digest already exists, the staged copy is dropped.
    pub fn publish(&self, staging: Staging) -> Result<Published, CacheError> {
        let listing = Listing::of_dir(staging.path())?;
        self.publish_listed(staging, listing)
    }

    /// Publishes a staging directory whose files the caller hashed while writing them (a
    /// verified download), without hashing them again: the files present must be exactly the
    /// listing's, with its sizes.
    pub fn publish_hashed(&self, staging: Staging, listing: &Listing) -> Result<Published, CacheError> {
        let dir = staging.path().to_path_buf();
        let found = crate::listing::files_of(&dir)?;
        let mismatch = |why: String| CacheError::BadArtifactFile { path: dir.clone(), why };
        if found.len() != listing.files.len() {
            return Err(mismatch(format!("{} files staged where the listing has {}", found.len(), listing.files.len())));
        }
        for f in &listing.files {
            let p = dir.join(&f.path);
            let size = fs::metadata(&p).map_err(|e| CacheError::io(&p, e))?.len();
            if size != f.size {
                return Err(mismatch(format!("{} is {size} bytes where the listing says {}", f.path, f.size)));
            }
        }
        self.publish_listed(staging, listing.clone())
    }

    fn publish_listed(&self, staging: Staging, listing: Listing) -> Result<Published, CacheError> {
        let dir = staging.path().to_path_buf();
        let digest = listing.digest();
        for f in &listing.files {
            let p = dir.join(&f.path);
            sync_file(&p)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).map_err(|e| CacheError::io(&p, e))?;
        }
        let listing_path = dir.join(LISTING_FILE);
        {
            let mut f = File::create(&listing_path).map_err(|e| CacheError::io(&listing_path, e))?;
            f.write_all(listing.to_text().as_bytes()).map_err(|e| CacheError::io(&listing_path, e))?;
            f.sync_all().map_err(|e| CacheError::io(&listing_path, e))?;
        }
        fs::set_permissions(&listing_path, fs::Permissions::from_mode(0o444))
            .map_err(|e| CacheError::io(&listing_path, e))?;
        sync_dirs(&dir)?;

        let target = self.artifact_dir(&digest);
        let parent = target.parent().expect("artifact dir has a parent");
        fs::create_dir_all(parent).map_err(|e| CacheError::io(parent, e))?;
        if target.exists() {
            match check_quick(&target, &digest) {
                Ok(_) => return Ok(Published { digest, listing }),
                Err(_) => {
                    self.quarantine(&digest)?;
                }
            }
        }
        match fs::rename(&dir, &target) {
            Ok(()) => {}
            Err(e) if target.exists() => {
                // Another process published the same content first.
                let _ = e;
                if check_quick(&target, &digest).is_err() {
                    return Err(CacheError::io(&target, io::Error::other("a concurrent publish left a damaged artifact")));
                }
            }
            Err(e) => return Err(CacheError::io(&target, e)),
        }
        sync_dir(parent)?;
        Ok(Published { digest, listing })
    }

    /// Checks a stored artifact.
    pub fn check_artifact(&self, digest: &Digest, how: Check) -> Result<Listing, Damage> {
        let dir = self.artifact_dir(digest);
        match how {
            Check::Quick => check_quick(&dir, digest),
            Check::Full => check_full(&dir, digest),
        }
    }

    /// Moves a damaged artifact out of the content store so nothing uses it again.
    pub fn quarantine(&self, digest: &Digest) -> Result<PathBuf, CacheError> {
        let from = self.artifact_dir(digest);
        let to = self.root.join("quarantine").join(format!("{}-{}", digest.hex(), unix_ms()));
        fs::create_dir_all(self.root.join("quarantine")).map_err(|e| CacheError::io(&to, e))?;
        match fs::rename(&from, &to) {
            Ok(()) => Ok(to),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(to),
            Err(e) => Err(CacheError::io(&from, e)),
        }
    }

    /// Looks up an action entry. A missing entry is `None`; an unreadable one is an error.
    pub fn get_action(&self, key: &Digest) -> Result<Option<ActionEntry>, CacheError> {
        let path = self.action_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::io(&path, e)),
        };
        let entry: ActionEntry = serde_json::from_slice(&bytes)
            .map_err(|e| CacheError::BadEntry { path: path.clone(), why: e.to_string() })?;
        if entry.key != *key {
            return Err(CacheError::BadEntry { path, why: "it names another key".into() });
        }
        Ok(Some(entry))
    }

    /// Writes an action entry (atomically). Its outputs must already be published.
    pub fn put_action(&self, entry: &ActionEntry) -> Result<(), CacheError> {
        let path = self.action_path(&entry.key);
        let parent = path.parent().expect("action path has a parent");
        fs::create_dir_all(parent).map_err(|e| CacheError::io(parent, e))?;
        let bytes = serde_json::to_vec_pretty(entry).map_err(|e| CacheError::BadEntry { path: path.clone(), why: e.to_string() })?;
        write_atomic(&self.root, &path, &bytes)
    }

    /// Removes an action entry (used when its artifact turned out to be damaged).
    pub fn remove_action(&self, key: &Digest) -> Result<(), CacheError> {
        let path = self.action_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io(&path, e)),
        }
    }

    /// Takes the lock for computing `key`. If another process holds it, `on_wait` is called
    /// once with that process's pid (if known) and the lock is polled until free or until
    /// `interrupted` returns true. A lock held by a dead process is free (the kernel drops it).
    pub fn lock_key(
        &self,
        key: &Digest,
        interrupted: &dyn Fn() -> bool,
        on_wait: &mut dyn FnMut(Option<u32>),
    ) -> Result<KeyLock, CacheError> {
        let path = self.root.join("locks").join(format!("{}.lock", key.hex()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CacheError::io(&path, e))?;
        let mut waited = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if !waited {
                        waited = true;
                        let pid = fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok());
                        on_wait(pid);
                    }
                    if interrupted() {
                        return Err(CacheError::Interrupted);
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(fs::TryLockError::Error(e)) => return Err(CacheError::io(&path, e)),
            }
        }
        file.set_len(0).map_err(|e| CacheError::io(&path, e))?;
        let _ = write!(file, "{}", std::process::id());
        Ok(KeyLock { _file: file })
    }

    /// A shared lock on the store, held by every run so that gc never deletes under it.
    pub fn lock_shared(&self) -> Result<StoreLock, CacheError> {
        let file = self.store_lock_file()?;
        file.lock_shared().map_err(|e| CacheError::io(self.root.join(".lock"), e))?;
        Ok(StoreLock { _file: file })
    }

    /// The exclusive store lock for gc; fails at once with `Busy` if a run holds the store.
    pub fn try_lock_exclusive(&self) -> Result<StoreLock, CacheError> {
        let file = self.store_lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(StoreLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(CacheError::Busy { path: self.root.clone() }),
            Err(fs::TryLockError::Error(e)) => Err(CacheError::io(self.root.join(".lock"), e)),
        }
    }

    fn store_lock_file(&self) -> Result<File, CacheError> {
        let path = self.root.join(".lock");
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CacheError::io(&path, e))
    }

    /// Every artifact in the content store (including damaged ones).
    pub fn artifacts(&self) -> Result<Vec<Digest>, CacheError> {
        let mut out = Vec::new();
        for shard in read_dir_sorted(&self.root.join("cas"))? {
            for entry in read_dir_sorted(&shard)? {
                if let Some(d) = entry.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Size, file count and age of a stored artifact (from its listing; `None` if unreadable).
    pub fn artifact_info(&self, digest: &Digest) -> Option<ArtifactInfo> {
        let dir = self.artifact_dir(digest);
        let listing = crate::listing::read_listing(&dir, digest).ok()?;
        let modified = fs::metadata(dir.join(LISTING_FILE)).and_then(|m| m.modified()).ok()?;
        Some(ArtifactInfo { digest: *digest, size: listing.total_size(), files: listing.files.len(), modified })
    }

    /// Every action entry that can be read; unreadable ones are returned as paths.
    pub fn actions(&self) -> Result<(Vec<ActionEntry>, Vec<PathBuf>), CacheError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for shard in read_dir_sorted(&self.root.join("ac"))? {
            for path in read_dir_sorted(&shard)? {
                let parsed = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<Digest>().ok());
                match parsed {
                    Some(key) => match self.get_action(&key) {
                        Ok(Some(e)) => good.push(e),
                        _ => bad.push(path),
                    },
                    None => bad.push(path),
                }
            }
        }
        Ok((good, bad))
    }

    /// Removes every artifact not in `keep`, the action entries that name a removed artifact,
    /// stale staging directories and unused lock files. Takes the exclusive store lock.
    pub fn gc(&self, keep: &HashSet<Digest>, dry_run: bool) -> Result<GcReport, CacheError> {
        let _lock = self.try_lock_exclusive()?;
        let mut report = GcReport::default();
        let mut removed = HashSet::new();
        for digest in self.artifacts()? {
            if keep.contains(&digest) {
                report.artifacts_kept += 1;
                continue;
            }
            report.artifacts_removed += 1;
            report.bytes_freed += self.artifact_info(&digest).map(|i| i.size).unwrap_or(0);
            removed.insert(digest);
            if !dry_run {
                // Move out of the content store first, so a crash mid-delete leaves nothing
                // half-removed where a run would look.
                let from = self.artifact_dir(&digest);
                let to = self.root.join("tmp").join(format!("gc-{}", digest.hex()));
                fs::rename(&from, &to).map_err(|e| CacheError::io(&from, e))?;
                remove_tree(&to).map_err(|e| CacheError::io(&to, e))?;
            }
        }
        let (entries, unreadable) = self.actions()?;
        for entry in entries {
            if entry.outputs.values().any(|d| removed.contains(d) || !self.artifact_dir(d).exists()) {
                report.actions_removed += 1;
                if !dry_run {
                    self.remove_action(&entry.key)?;
                }
            }
        }
        for path in unreadable {
            report.actions_removed += 1;
            if !dry_run {
                fs::remove_file(&path).map_err(|e| CacheError::io(&path, e))?;
            }
        }
        // No run holds the store (we have the exclusive lock): staging leftovers of killed runs
        // and lock files can go.
        for path in read_dir_sorted(&self.root.join("tmp"))? {
            report.temp_removed += 1;
            if !dry_run {
                remove_tree(&path).map_err(|e| CacheError::io(&path, e))?;
            }
        }
        if !dry_run {
            for path in read_dir_sorted(&self.root.join("locks"))? {
                let _ = fs::remove_file(path);
            }
        }
        Ok(report)
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Writes `bytes` to `path` atomically: a temporary file in the store's `tmp/`, fsync, rename,
/// fsync of the parent directory.
pub fn write_atomic(root: &Path, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp_dir = if root.join("tmp").is_dir() { root.join("tmp") } else { path.parent().unwrap_or(root).to_path_buf() };
    let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = tmp_dir.join(format!(".write-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| CacheError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| CacheError::io(&tmp, e))?;
        f.sync_all().map_err(|e| CacheError::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| CacheError::io(path, e))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_file(path: &Path) -> Result<(), CacheError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| CacheError::io(path, e))
}

fn sync_dir(path: &Path) -> Result<(), CacheError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| CacheError::io(path, e))
}

fn sync_dirs(dir: &Path) -> Result<(), CacheError> {
    for entry in fs::read_dir(dir).map_err(|e| CacheError::io(dir, e))? {
        let entry = entry.map_err(|e| CacheError::io(dir, e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            sync_dirs(&entry.path())?;
        }
    }
    sync_dir(dir)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                out.push(e.map_err(|e| CacheError::io(dir, e))?.path());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CacheError::io(dir, e)),
    }
    out.sort();
    Ok(out)
}

/// Removes a directory tree whose files may be read-only.
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache")).unwrap();
        (dir, store)
    }

    fn stage_with(store: &Store, files: &[(&str, &[u8])]) -> Staging {
        let s = store.stage().unwrap();
        for (name, bytes) in files {
            let p = s.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
        s
    }

    #[test]
    fn publish_is_content_addressed_and_idempotent() {
        let (_d, store) = store();
        let a = store.publish(stage_with(&store, &[("t.parquet", b"abc"), ("sub/x.json", b"{}")])).unwrap();
        let b = store.publish(stage_with(&store, &[("sub/x.json", b"{}"), ("t.parquet", b"abc")])).unwrap();
        assert_eq!(a.digest, b.digest);
        let c = store.publish(stage_with(&store, &[("t.parquet", b"abd"), ("sub/x.json", b"{}")])).unwrap();
        assert_ne!(a.digest, c.digest);
        assert_eq!(store.artifacts().unwrap().len(), 2);
        assert!(store.check_artifact(&a.digest, Check::Full).is_ok());
        // Staging directories are gone after publishing.
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
        // Published files are read-only.
        let mode = fs::metadata(store.artifact_dir(&a.digest).join("t.parquet")).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0);
    }

    #[test]
    fn publish_hashed_trusts_the_hashes_but_checks_names_and_sizes() {
        let (_d, store) = store();
        let a = store.publish(stage_with(&store, &[("t", b"abc"), ("s/u", b"de")])).unwrap();
        let same = store.publish_hashed(stage_with(&store, &[("t", b"abc"), ("s/u", b"de")]), &a.listing).unwrap();
        assert_eq!(same.digest, a.digest);
        let err = store.publish_hashed(stage_with(&store, &[("t", b"abcd"), ("s/u", b"de")]), &a.listing).unwrap_err();
        assert!(err.to_string().contains("t is 4 bytes where the listing says 3"), "{err}");
        let err = store.publish_hashed(stage_with(&store, &[("t", b"abc")]), &a.listing).unwrap_err();
        assert!(err.to_string().contains("1 files staged where the listing has 2"), "{err}");
        let err = store
            .publish_hashed(stage_with(&store, &[("t", b"abc"), ("s/v", b"de")]), &a.listing)
            .unwrap_err();
        assert!(err.to_string().contains("s/u"), "{err}");
    }

    #[test]
    fn file_names_are_part_of_the_digest() {
        let (_d, store) = store();
        let a = store.publish(stage_with(&store, &[("a", b"1")])).unwrap();
        let b = store.publish(stage_with(&store, &[("b", b"1")])).unwrap();
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn reserved_names_and_symlinks_are_refused() {
        let (_d, store) = store();
        let s = stage_with(&store, &[(LISTING_FILE, b"x")]);
        assert!(matches!(store.publish(s), Err(CacheError::BadArtifactFile { .. })));
        let s = stage_with(&store, &[("a", b"1")]);
        std::os::unix::fs::symlink("a", s.path().join("link")).unwrap();
        let err = store.publish(s).unwrap_err().to_string();
        assert!(err.contains("only regular files"), "{err}");
    }

    fn flip_byte(path: &Path) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(path).unwrap();
        bytes[0] ^= 1;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn checks_detect_damage() {
        let (_d, store) = store();
        let a = store.publish(stage_with(&store, &[("t", b"hello world")])).unwrap();
        let dir = store.artifact_dir(&a.digest);
        flip_byte(&dir.join("t"));
        assert!(store.check_artifact(&a.digest, Check::Quick).is_ok(), "same size passes the quick check");
        assert_eq!(store.check_artifact(&a.digest, Check::Full).unwrap_err(), Damage::ContentMismatch("t".into()));

        let b = store.publish(stage_with(&store, &[("u", b"hello")])).unwrap();
        let ub = store.artifact_dir(&b.digest).join("u");
        fs::set_permissions(&ub, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&ub, b"hell").unwrap();
        assert!(matches!(store.check_artifact(&b.digest, Check::Quick), Err(Damage::SizeMismatch { .. })));

        let c = store.publish(stage_with(&store, &[("v", b"x")])).unwrap();
        fs::write(store.artifact_dir(&c.digest).join("extra"), b"y").unwrap();
        assert_eq!(store.check_artifact(&c.digest, Check::Full).unwrap_err(), Damage::ExtraFile("extra".into()));

        let missing = Digest::of(b"nothing");
        assert_eq!(store.check_artifact(&missing, Check::Quick).unwrap_err(), Damage::Missing);
    }

    #[test]
    fn republishing_over_a_damaged_copy_repairs_it() {
        let (_d, store) = store();
        let a = store.publish(stage_with(&store, &[("t", b"hello")])).unwrap();
        let path = store.artifact_dir(&a.digest).join("t");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"hel").unwrap();
        let again = store.publish(stage_with(&store, &[("t", b"hello")])).unwrap();
        assert_eq!(again.digest, a.digest);
        assert!(store.check_artifact(&a.digest, Check::Full).is_ok());
        assert_eq!(fs::read_dir(store.root().join("quarantine")).unwrap().count(), 1);
    }

    #[test]
    fn action_entries_round_trip_and_reject_garbage() {
        let (_d, store) = store();
        let key = Digest::of(b"key");
        assert!(store.get_action(&key).unwrap().is_none());
        let entry = ActionEntry {
            key,
            kind: "k".into(),
            outputs: [("out".to_string(), Digest::of(b"a"))].into(),
            components: serde_json::json!({"x": 1}),
            created_unix_ms: 1,
            seconds: 0.5,
            log: vec!["trained 3 steps".into()],
            rows: [("generate".to_string(), vec![Digest::of(b"row 1"), Digest::of(b"row 2")])].into(),
        };
        store.put_action(&entry).unwrap();
        assert_eq!(store.get_action(&key).unwrap().unwrap(), entry);
        // An entry an earlier dagrun wrote, without a log or rows, still reads.
        let mut older = serde_json::to_value(&entry).unwrap();
        older.as_object_mut().unwrap().remove("log");
        older.as_object_mut().unwrap().remove("rows");
        fs::write(store.action_path(&key), older.to_string()).unwrap();
        assert_eq!(store.get_action(&key).unwrap().unwrap(), ActionEntry { log: vec![], rows: Default::default(), ..entry.clone() });
        fs::write(store.action_path(&key), b"{not json").unwrap();
        assert!(matches!(store.get_action(&key), Err(CacheError::BadEntry { .. })));
    }

    #[test]
    fn key_locks_exclude_and_release() {
        let (_d, store) = store();
        let key = Digest::of(b"k");
        let lock = store.lock_key(&key, &|| false, &mut |_| panic!("should not wait")).unwrap();
        let mut waited_on = None;
        let res = store.lock_key(&key, &|| true, &mut |pid| waited_on = Some(pid));
        assert!(matches!(res, Err(CacheError::Interrupted)));
        assert_eq!(waited_on, Some(Some(std::process::id())));
        drop(lock);
        store.lock_key(&key, &|| false, &mut |_| panic!("lock was released")).unwrap();
    }

    #[test]
    fn gc_removes_unreachable_and_their_entries() {
        let (_d, store) = store();
        let keep = store.publish(stage_with(&store, &[("a", b"1")])).unwrap().digest;
        let drop_ = store.publish(stage_with(&store, &[("b", b"2")])).unwrap().digest;
        let entry = |k: &[u8], d: Digest| ActionEntry {
            key: Digest::of(k),
            kind: "k".into(),
            outputs: [("out".to_string(), d)].into(),
            components: serde_json::Value::Null,
            created_unix_ms: 0,
            seconds: 0.0,
            log: vec![],
            rows: Default::default(),
        };
        store.put_action(&entry(b"1", keep)).unwrap();
        store.put_action(&entry(b"2", drop_)).unwrap();
        let leftover = store.stage().unwrap();
        std::mem::forget(leftover); // a killed run's staging directory
        let keep_set: HashSet<_> = [keep].into();
        let dry = store.gc(&keep_set, true).unwrap();
        assert_eq!((dry.artifacts_removed, dry.actions_removed, dry.temp_removed), (1, 1, 1));
        assert_eq!(store.artifacts().unwrap().len(), 2, "dry run removes nothing");
        let report = store.gc(&keep_set, false).unwrap();
        assert_eq!(report.artifacts_removed, 1);
        assert_eq!(store.artifacts().unwrap(), vec![keep]);
        assert!(store.get_action(&Digest::of(b"1")).unwrap().is_some());
        assert!(store.get_action(&Digest::of(b"2")).unwrap().is_none());
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn gc_refuses_while_a_run_holds_the_store() {
        let (_d, store) = store();
        let _shared = store.lock_shared().unwrap();
        assert!(matches!(store.gc(&HashSet::new(), false), Err(CacheError::Busy { .. })));
    }

    #[test]
    fn version_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(VERSION_FILE), "dagrun-cache 99\n").unwrap();
        assert!(matches!(Store::open(dir.path()), Err(CacheError::Version { .. })));
    }
}
