//! An artifact's listing: the sorted (path, size, file digest) rows whose blake3 hash is the
//! artifact's digest. The listing is stored beside the files, so the digest can be checked
//! cheaply (hash the listing, stat the files) or fully (rehash every file).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::hash::hash_file;
use crate::{CacheError, Digest};

/// Name of the listing file inside a published artifact directory; reserved.
pub const LISTING_FILE: &str = ".dagrun-listing";
const HEADER: &str = "dagrun-artifact v1\n";

/// One file of an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the artifact directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub digest: Digest,
}

/// The canonical description of an artifact's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<FileEntry>,
}

impl Listing {
    /// Walks `dir`, hashing every regular file (in parallel). Symlinks, special files,
    /// non-UTF-8 names and the reserved listing name are errors.
    pub fn of_dir(dir: &Path) -> Result<Listing, CacheError> {
        let mut paths = Vec::new();
        collect_files(dir, dir, &mut paths)?;
        let mut files = paths
            .par_iter()
            .map(|(rel, abs)| {
                let size = fs::metadata(abs).map_err(|e| CacheError::io(abs, e))?.len();
                let digest = hash_file(abs).map_err(|e| CacheError::io(abs, e))?;
                Ok(FileEntry { path: rel.clone(), size, digest })
            })
            .collect::<Result<Vec<_>, CacheError>>()?;
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Ok(Listing { files })
    }

    /// The canonical text form that is hashed.
    pub fn to_text(&self) -> String {
        let mut s = String::from(HEADER);
        for f in &self.files {
            s.push_str(&format!("{} {} {}\n", f.digest.hex(), f.size, f.path));
        }
        s
    }

    /// The artifact digest: blake3 of the canonical text.
    pub fn digest(&self) -> Digest {
        Digest::of(self.to_text().as_bytes())
    }

    /// Parses the canonical text form.
    pub fn parse(text: &str) -> Option<Listing> {
        let body = text.strip_prefix(HEADER)?;
        let mut files = Vec::new();
        for line in body.lines() {
            let mut parts = line.splitn(3, ' ');
            let digest = parts.next()?.parse().ok()?;
            let size = parts.next()?.parse().ok()?;
            let path = parts.next()?.to_string();
            files.push(FileEntry { path, size, digest });
        }
        Some(Listing { files })
    }

    /// Total size of the files in bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The relative paths of the regular files under `dir` (same rules as [`Listing::of_dir`]).
pub fn files_of(dir: &Path) -> Result<Vec<String>, CacheError> {
    let mut paths = Vec::new();
    collect_files(dir, dir, &mut paths)?;
    Ok(paths.into_iter().map(|(rel, _)| rel).collect())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), CacheError> {
    let entries = fs::read_dir(dir).map_err(|e| CacheError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::io(dir, e))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| CacheError::io(&path, e))?;
        let rel = path
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| CacheError::BadArtifactFile { path: path.clone(), why: "its name is not UTF-8".into() })?
            .replace(std::path::MAIN_SEPARATOR, "/");
        if rel == LISTING_FILE {
            return Err(CacheError::BadArtifactFile { path, why: format!("`{LISTING_FILE}` is a reserved name") });
        }
        if rel.contains('\n') {
            return Err(CacheError::BadArtifactFile { path, why: "its name contains a newline".into() });
        }
        if ft.is_dir() {
            collect_files(root, &path, out)?;
        } else if ft.is_file() {
            out.push((rel, path));
        } else {
            return Err(CacheError::BadArtifactFile { path, why: "only regular files and directories may be published".into() });
        }
    }
    Ok(())
}

/// Why a stored artifact cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    Missing,
    ListingUnreadable(String),
    ListingMismatch,
    FileMissing(String),
    SizeMismatch { path: String, expected: u64, found: u64 },
    ContentMismatch(String),
    ExtraFile(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Missing => write!(f, "artifact directory is missing"),
            Damage::ListingUnreadable(e) => write!(f, "listing unreadable: {e}"),
            Damage::ListingMismatch => write!(f, "listing does not hash to the artifact's digest"),
            Damage::FileMissing(p) => write!(f, "file `{p}` is missing"),
            Damage::SizeMismatch { path, expected, found } => {
                write!(f, "file `{path}` has {found} bytes, expected {expected}")
            }
            Damage::ContentMismatch(p) => write!(f, "file `{p}` does not match its digest"),
            Damage::ExtraFile(p) => write!(f, "unexpected file `{p}`"),
        }
    }
}

/// Reads the stored listing of the artifact in `dir` and checks it hashes to `digest`.
pub fn read_listing(dir: &Path, digest: &Digest) -> Result<Listing, Damage> {
    let path = dir.join(LISTING_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => return Err(Damage::Missing),
        Err(e) => return Err(Damage::ListingUnreadable(e.to_string())),
    };
    if Digest::of(text.as_bytes()) != *digest {
        return Err(Damage::ListingMismatch);
    }
    Listing::parse(&text).ok_or_else(|| Damage::ListingUnreadable("malformed listing".into()))
}

/// Cheap check: the listing is intact and every file exists with the listed size.
pub fn check_quick(dir: &Path, digest: &Digest) -> Result<Listing, Damage> {
    let listing = read_listing(dir, digest)?;
    for f in &listing.files {
        match fs::metadata(dir.join(&f.path)) {
            Ok(m) if m.len() == f.size => {}
            Ok(m) => return Err(Damage::SizeMismatch { path: f.path.clone(), expected: f.size, found: m.len() }),
            Err(_) => return Err(Damage::FileMissing(f.path.clone())),
        }
    }
    Ok(listing)
}

/// Full check: every file is rehashed and compared with the listing; extra files are damage.
pub fn check_full(dir: &Path, digest: &Digest) -> Result<Listing, Damage> {
    let listing = check_quick(dir, digest)?;
    let bad = listing.files.par_iter().find_map_any(|f| match hash_file(&dir.join(&f.path)) {
        Ok(d) if d == f.digest => None,
        Ok(_) => Some(Damage::ContentMismatch(f.path.clone())),
        Err(_) => Some(Damage::FileMissing(f.path.clone())),
    });
    if let Some(d) = bad {
        return Err(d);
    }
    let mut present = Vec::new();
    collect_all(dir, dir, &mut present);
    for (rel, _) in present {
        if rel != LISTING_FILE && !listing.files.iter().any(|f| f.path == rel) {
            return Err(Damage::ExtraFile(rel));
        }
    }
    Ok(listing)
}

fn collect_all(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).map(|r| r.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/")).unwrap_or_default();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_all(root, &path, out);
        } else {
            out.push((rel, path));
        }
    }
}
