//! Per-row results that row-wise kinds (`generate`, `encode`) keep across runs: when a prompt
//! table grows, only the new rows are computed. Each entry is a small file named by a key the
//! kind derives from everything that decides that row's result (model digest, params, seed,
//! the row's content); a checksum trailer makes a torn or corrupted entry a miss, never a
//! wrong answer.

use std::path::{Path, PathBuf};

use dagrun_cache::Digest;

const TRAILER: usize = 32;

/// A directory of row results.
#[derive(Clone, Debug)]
pub struct RowCache {
    dir: PathBuf,
}

impl RowCache {
    /// Row results under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> RowCache {
        RowCache { dir: dir.into() }
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
        let path = self.path(key);
        let mut bytes = std::fs::read(&path).ok()?;
        if bytes.len() < TRAILER {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let body = bytes.len() - TRAILER;
        if blake3::hash(&bytes[..body]).as_bytes() != &bytes[body..] {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        bytes.truncate(body);
        Some(bytes)
    }

    /// Stores `bytes` under `key` (write to a temporary file, then rename).
    pub fn put(&self, key: &Digest, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key);
        let parent = path.parent().expect("has a parent");
        std::fs::create_dir_all(parent)?;
        let mut data = Vec::with_capacity(bytes.len() + TRAILER);
        data.extend_from_slice(bytes);
        data.extend_from_slice(blake3::hash(bytes).as_bytes());
        let tmp = parent.join(format!(".{}.{}.tmp", key.hex(), std::process::id()));
        std::fs::write(&tmp, &data)?;
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_treats_damage_as_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let rows = RowCache::new(dir.path());
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
