//! File hashing. Large files are memory-mapped and hashed on all cores, the way `b3sum` does.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::Digest;

/// Files at least this large are hashed with memory mapping and rayon.
const PARALLEL_THRESHOLD: u64 = 1 << 20;

/// Hashes one file's contents with blake3.
pub fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= PARALLEL_THRESHOLD {
        hasher.update_mmap_rayon(path)?;
    } else {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(hasher.finalize().into())
}
