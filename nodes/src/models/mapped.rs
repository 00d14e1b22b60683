//! Model files read through a memory map: their bytes are the page cache's, shared and
//! reclaimable, rather than a private copy, so loading a model does not hold the file in
//! memory beside what is made from it, and only the parts read are read.

use std::ops::Deref;
use std::path::Path;

/// A file's bytes: mapped, or read when mapping is not possible (an empty file).
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

impl FileBytes {
    /// Drops the mapped pages of `range` from this process (they stay in the page cache and
    /// are read again if touched): for bytes converted once and not needed again, so a
    /// model's file does not stay resident beside what was made from it.
    pub fn release(&self, range: std::ops::Range<usize>) {
        if let FileBytes::Mapped(m) = self {
            // SAFETY: a read-only shared file mapping: dropped pages are re-read from the file
            // if touched again, so no data is lost. Failure only leaves the pages resident.
            let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len()) };
        }
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(v: Vec<u8>) -> Self {
        FileBytes::Owned(v)
    }
}

/// Maps `path` read-only.
pub fn open(path: &Path) -> std::io::Result<FileBytes> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(FileBytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only and model files are not written while loaded: artifacts
    // in the cache are immutable (published by rename, never rewritten in place). A file
    // truncated by another process while mapped would fault, as with any mapped loader.
    unsafe { memmap2::Mmap::map(&file) }.map(FileBytes::Mapped)
}
