//! The interface of a shared second-level cache (a "remote"): the same two stores as the local
//! cache, behind object storage. The scheduler reads through it and may write through it; the
//! implementation (object_store, tokio) lives in `dagrun-remote`, so crates that only need the
//! interface stay light.

use crate::{ActionEntry, CacheError, Digest, Store};

/// Why a remote operation failed. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A downloaded object did not match its digest, size or listing: it was not used.
    #[error("remote object {object} is corrupt ({why}); it was not used")]
    Corrupt { object: String, why: String },
    /// An object the remote should have (named by an entry or listing) is absent.
    #[error("remote object {object} is missing")]
    Missing { object: String },
    /// The remote could not be reached or refused the request (after retries).
    #[error("remote {remote}: {why}")]
    Unavailable { remote: String, why: String },
    /// Writing what was downloaded into the local cache failed.
    #[error(transparent)]
    Local(#[from] CacheError),
    /// Interrupted by the user.
    #[error("interrupted")]
    Interrupted,
}

impl RemoteError {
    /// True when the remote itself is unreachable or refusing (as opposed to one bad object).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RemoteError::Unavailable { .. })
    }
}

/// What [`RemoteCache::get_rows`] found: a body or `None` per key asked, and the damaged
/// objects it did not use.
pub type RowsFound = (Vec<Option<Vec<u8>>>, Vec<RemoteError>);

/// A remote cache as the scheduler uses it: synchronous, thread-safe calls.
pub trait RemoteCache: Send + Sync + std::fmt::Debug {
    /// Where the remote is, for messages (no credentials).
    fn describe(&self) -> String;
    /// Looks a node key up in the remote action cache.
    fn get_action(&self, key: &Digest) -> Result<Option<ActionEntry>, RemoteError>;
    /// Downloads the artifact `digest`, verifies every byte against its digest and publishes it
    /// into `store`. Nothing unverified ever enters the local cache.
    fn fetch_artifact(&self, store: &Store, digest: &Digest) -> Result<(), RemoteError>;
    /// Uploads an entry's artifacts (those the remote lacks) and the row results it lists
    /// (those still in `store`), then the entry itself, so that a reader never finds an entry
    /// whose artifacts are missing.
    fn push_entry(&self, store: &Store, entry: &ActionEntry) -> Result<(), RemoteError>;
    /// Looks row results of kind `kind` up (see [`crate::rows`]): each key's body, or `None`
    /// where the remote has none. A damaged remote row is not used: it is `None` too, and
    /// reported in the second list. Fails as a whole only when the remote is unavailable.
    fn get_rows(&self, kind: &str, keys: &[Digest]) -> Result<RowsFound, RemoteError>;
    /// Which of `keys` the remote holds row results of kind `kind` for, without downloading
    /// them (for counting what is done; a damaged one is found out when it is read). The
    /// default asks [`RemoteCache::get_rows`]; remotes that can list or ask cheaper override it.
    fn has_rows(&self, kind: &str, keys: &[Digest]) -> Result<Vec<bool>, RemoteError> {
        let (bodies, damaged) = self.get_rows(kind, keys)?;
        let _ = damaged;
        Ok(bodies.iter().map(Option::is_some).collect())
    }
    /// Uploads row results of kind `kind` (their bodies; stored sealed).
    fn put_rows(&self, kind: &str, rows: &[(Digest, Vec<u8>)]) -> Result<(), RemoteError>;
    /// Whether runs should push each node they compute (write-through).
    fn write_through(&self) -> bool;
}
