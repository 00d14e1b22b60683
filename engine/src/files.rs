//! Digests of external files a node reads (datasets, model files), remembered per path by
//! (size, modification time, inode) under the cache's `files/` directory, so an unchanged
//! 10 GB file is hashed once, not on every plan.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dagrun_cache::{hash_file, write_atomic, Digest, Store};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, PartialEq)]
struct Memo {
    path: String,
    size: u64,
    mtime_ns: i128,
    ino: u64,
    digest: Digest,
}

/// A problem hashing an external file.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Hashes external files, remembering digests in the store when one is given.
pub struct FileHasher<'a> {
    store: Option<&'a Store>,
}

impl<'a> FileHasher<'a> {
    pub fn new(store: Option<&'a Store>) -> FileHasher<'a> {
        FileHasher { store }
    }

    /// The content digest of `path`.
    pub fn digest(&self, path: &Path) -> Result<Digest, FileError> {
        let err = |e| FileError { path: path.to_path_buf(), source: e };
        let meta = std::fs::metadata(path).map_err(err)?;
        let abs = std::fs::canonicalize(path).map_err(err)?;
        let stamp = |digest| Memo {
            path: abs.display().to_string(),
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
            digest,
        };
        let memo_path = self.store.map(|s| {
            s.root().join("files").join(format!("{}.json", Digest::of(abs.as_os_str().as_encoded_bytes()).hex()))
        });
        if let Some(mp) = &memo_path {
            if let Some(m) = std::fs::read(mp).ok().and_then(|b| serde_json::from_slice::<Memo>(&b).ok()) {
                if m == stamp(m.digest) {
                    return Ok(m.digest);
                }
            }
        }
        let digest = hash_file(path).map_err(err)?;
        if let (Some(mp), Some(store)) = (&memo_path, self.store) {
            if let Some(parent) = mp.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if let Ok(bytes) = serde_json::to_vec(&stamp(digest)) {
                // A memo is an optimisation; failing to write one is not an error.
                let _ = write_atomic(store.root(), mp, &bytes);
            }
        }
        Ok(digest)
    }

    /// Digests of several files, keyed by the path as the node names it.
    pub fn digests(&self, paths: &[PathBuf]) -> Result<BTreeMap<String, Digest>, FileError> {
        paths.iter().map(|p| Ok((p.display().to_string(), self.digest(p)?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_content_and_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache")).unwrap();
        let f = dir.path().join("data.txt");
        std::fs::write(&f, b"one").unwrap();
        let h = FileHasher::new(Some(&store));
        let d1 = h.digest(&f).unwrap();
        assert_eq!(d1, Digest::of(b"one"));
        assert_eq!(std::fs::read_dir(store.root().join("files")).unwrap().count(), 1);
        assert_eq!(h.digest(&f).unwrap(), d1);
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&f, b"two").unwrap();
        assert_eq!(h.digest(&f).unwrap(), Digest::of(b"two"));
        let missing = h.digest(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("cannot read") && missing.contains("nope"), "{missing}");
    }
}
