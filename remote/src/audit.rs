//! `dagrun cache verify --remote`: checks what a remote holds without trusting it. Runs only
//! notice damage in what they download, and a damaged artifact whose listing exists is never
//! uploaded again by a plain push; an audit finds it, and with `fix` deletes the damaged
//! listing (the artifact then reads as missing, so the next push of it uploads it whole).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use dagrun_cache::{rows, Digest, Listing, RemoteError};
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

use crate::transfer::Remote;

/// What an audit found.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// Readable action entries.
    pub entries: usize,
    /// Entries that cannot be read (not JSON, another key): their objects and why.
    pub unreadable: Vec<(String, String)>,
    /// Distinct artifacts the entries name.
    pub artifacts: usize,
    /// Files those artifacts list.
    pub files: usize,
    /// Artifacts whose listing or files are damaged, with the problem.
    pub damaged: Vec<(Digest, String)>,
    /// Artifacts named by entries but absent (a push of them restores them).
    pub missing: Vec<Digest>,
    /// Entries naming a damaged or missing artifact: (key, kind).
    pub dangling: Vec<(Digest, String)>,
    /// Row results checked (with `full`).
    pub rows: usize,
    /// Row result objects whose checksum fails.
    pub damaged_rows: Vec<String>,
    /// Whether the damage was removed.
    pub fixed: bool,
}

impl Audit {
    /// Whether anything needs attention.
    pub fn clean(&self) -> bool {
        self.unreadable.is_empty() && self.damaged.is_empty() && self.missing.is_empty() && self.damaged_rows.is_empty()
    }
}

/// One artifact's state.
enum Found {
    Intact(usize),
    Missing,
    Damaged(String),
}

impl Remote {
    /// Checks every entry, every artifact they name (its listing hashes to its digest; each
    /// file is there with its listed size, and with `full` hashes to its listed digest) and,
    /// with `full`, every row result. With `fix`, deletes unreadable entries, the listings of
    /// damaged artifacts, the entries naming damaged or missing artifacts, and damaged rows.
    pub fn audit(&self, full: bool, fix: bool) -> Result<Audit, RemoteError> {
        let (entries, bad) = self.all_actions()?;
        self.rt.block_on(async {
            let mut audit = Audit { entries: entries.len(), fixed: fix, ..Default::default() };
            for e in bad {
                match e {
                    RemoteError::Corrupt { object, why } => audit.unreadable.push((object, why)),
                    e => return Err(e),
                }
            }
            let digests: BTreeSet<Digest> = entries.iter().flat_map(|e| e.outputs.values().copied()).collect();
            audit.artifacts = digests.len();
            let checks = digests.iter().map(|d| async move { (*d, self.check_artifact(d, full).await) });
            let mut results = futures::stream::iter(checks).buffer_unordered(8);
            while let Some((d, found)) = results.next().await {
                match found? {
                    Found::Intact(files) => audit.files += files,
                    Found::Missing => audit.missing.push(d),
                    Found::Damaged(why) => audit.damaged.push((d, why)),
                }
            }
            audit.damaged.sort();
            audit.missing.sort();
            let unusable: BTreeSet<Digest> = audit.damaged.iter().map(|(d, _)| *d).chain(audit.missing.iter().copied()).collect();
            audit.dangling = entries.iter().filter(|e| e.outputs.values().any(|d| unusable.contains(d))).map(|e| (e.key, e.kind.clone())).collect();
            if full {
                self.audit_rows(&mut audit).await?;
            }
            if fix {
                // Entries first, so none is left naming an artifact whose listing is gone.
                let entries = audit.unreadable.iter().map(|(o, _)| ObjectPath::from(o.as_str())).chain(audit.dangling.iter().map(|(k, _)| self.action_object(k)));
                self.delete_all(entries.collect()).await?;
                let damaged = audit.damaged.iter().map(|(d, _)| self.listing_object(d)).chain(audit.damaged_rows.iter().map(|o| ObjectPath::from(o.as_str())));
                self.delete_all(damaged.collect()).await?;
            }
            Ok(audit)
        })
    }

    async fn check_artifact(&self, digest: &Digest, full: bool) -> Result<Found, RemoteError> {
        let listing: Listing = match self.listing(digest).await {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(Found::Missing),
            Err(RemoteError::Corrupt { why, .. }) => return Ok(Found::Damaged(why)),
            Err(e) => return Err(e),
        };
        let store = self.store()?;
        for f in &listing.files {
            let object = self.file_object(digest, &f.path);
            let problem = if full {
                match store.get(&object).await {
                    Ok(got) => {
                        let mut stream = got.into_stream();
                        let mut hasher = blake3::Hasher::new();
                        let mut size = 0u64;
                        while let Some(chunk) = stream.next().await {
                            let chunk = chunk.map_err(|e| self.map_err(&object, e))?;
                            size += chunk.len() as u64;
                            hasher.update(&chunk);
                            self.stats.bytes_down.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                        let got = Digest::from_bytes(*hasher.finalize().as_bytes());
                        if size != f.size {
                            Some(format!("{} is {size} bytes where the listing says {}", f.path, f.size))
                        } else {
                            (got != f.digest).then(|| format!("{} hashes to {} instead of {}", f.path, got.short(), f.digest.short()))
                        }
                    }
                    Err(object_store::Error::NotFound { .. }) => Some(format!("{} is missing", f.path)),
                    Err(e) => return Err(self.map_err(&object, e)),
                }
            } else {
                match store.head(&object).await {
                    Ok(meta) if meta.size == f.size => None,
                    Ok(meta) => Some(format!("{} is {} bytes where the listing says {}", f.path, meta.size, f.size)),
                    Err(object_store::Error::NotFound { .. }) => Some(format!("{} is missing", f.path)),
                    Err(e) => return Err(self.map_err(&object, e)),
                }
            };
            if let Some(why) = problem {
                return Ok(Found::Damaged(why));
            }
        }
        Ok(Found::Intact(listing.files.len()))
    }

    /// Checks every row result's checksum.
    async fn audit_rows(&self, audit: &mut Audit) -> Result<(), RemoteError> {
        let objects = self.list_all(&self.object("rows")).await?;
        let gets = objects.iter().map(|m| async move { (&m.location, self.get_small(&m.location).await) });
        let mut results = futures::stream::iter(gets).buffer_unordered(32);
        let mut damaged = BTreeSet::new();
        while let Some((o, got)) = results.next().await {
            if let Some(bytes) = got? {
                audit.rows += 1;
                if rows::unseal(&bytes).is_none() {
                    damaged.insert(o.to_string());
                }
            }
        }
        audit.damaged_rows = damaged.into_iter().collect();
        Ok(())
    }
}
