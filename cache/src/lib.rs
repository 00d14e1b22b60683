//! The content-addressed artifact store behind dagrun: artifacts are directories of files named
//! by a blake3 digest over their listing; an action cache maps node keys to artifact digests.
//! No knowledge of pipelines or models lives here.

mod digest;
mod error;
mod hash;
pub mod listing;
mod remote;
pub mod rows;
mod store;
pub mod table;

pub use digest::{BadDigest, Digest};
pub use error::CacheError;
pub use hash::hash_file;
pub use remote::{RemoteCache, RemoteError, RowsFound};
pub use rows::RowStore;
pub use listing::{Damage, FileEntry, Listing, LISTING_FILE};
pub use store::{
    unix_ms, write_atomic, ActionEntry, ArtifactInfo, Check, GcReport, KeyLock, Published, Staging, Store,
    StoreLock,
};
