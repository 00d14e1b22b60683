//! Remotes for dagrun's cache: the local layout (an action cache of node key -> artifact
//! digests, a content store of artifacts) mirrored in object storage, so a team shares LLM
//! generations and trained models instead of computing them twice.
//!
//! Remote layout under the URL's prefix:
//! `cas/ab/<digest>/files/<path>` the artifact's files, `cas/ab/<digest>/listing` its listing
//! (written after the files: an artifact is present when its listing is), and
//! `ac/ab/<key>.json` action entries (written after the artifacts they name), and
//! `rows/<kind>/ab/<row key>` row results (sealed with their checksum, uploaded before the
//! entries that list them). Every download is checked against the listing, and the listing
//! against the digest, before it enters the local cache.

mod audit;
mod creds;
mod housekeeping;
mod open;
mod transfer;

pub use audit::Audit;
pub use creds::{display_url, Redactor};
pub use housekeeping::{Inventory, RemoteArtifact, RemoteGc};
pub use open::OpenError;
pub use transfer::{Remote, Stats, TransferReport};
