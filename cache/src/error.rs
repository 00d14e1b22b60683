//! Errors of the artifact store, with hints for the failures users can fix themselves.

use std::io;
use std::path::PathBuf;

/// An error from the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: {source}{}", path.display(), io_hint(source))]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot publish {}: {why}", path.display())]
    BadArtifactFile { path: PathBuf, why: String },
    #[error("cache entry {} is unreadable: {why}", path.display())]
    BadEntry { path: PathBuf, why: String },
    #[error("{} is not a dagrun cache of a version this dagrun understands ({found})", path.display())]
    Version { path: PathBuf, found: String },
    #[error("the cache at {} is in use by another dagrun process; try again when it has finished", path.display())]
    Busy { path: PathBuf },
    #[error("{} is not a Parquet table: {why}", path.display())]
    Table { path: PathBuf, why: String },
    #[error("interrupted while waiting for a lock")]
    Interrupted,
}

impl CacheError {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> CacheError {
        CacheError::Io { path: path.into(), source }
    }

    /// True when the error came from a full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, CacheError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            " (the disk holding the cache is full: free space, run `dagrun cache gc`, or pass --cache-dir)"
        }
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => {
            " (the cache is not writable: fix its permissions or pass --cache-dir to a writable directory)"
        }
        _ => "",
    }
}
