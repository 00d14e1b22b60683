//! Verified uploads and downloads between the local store and an object store: several at a
//! time, streamed, retried with backoff, counted for progress.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dagrun_cache::{rows, ActionEntry, CacheError, Check, Digest, FileEntry, Listing, RemoteCache, RemoteError, RowsFound, Store};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::open::{open, OpenError, Opened};

/// Files larger than this are uploaded in parts, streamed from disk.
const MULTIPART_THRESHOLD: u64 = 32 << 20;
const PART_SIZE: usize = 16 << 20;
/// Row results (small objects) requested at once: a row is a few KB, so latency, not
/// bandwidth, bounds their transfer.
const ROW_REQUESTS: usize = 32;
/// Whole-file attempts when a transfer breaks off (object_store retries single requests too).
const ATTEMPTS: u32 = 3;

/// Byte and object counters, shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct Stats {
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub files_up: AtomicU64,
    pub files_down: AtomicU64,
}

/// What a push or pull did.
#[derive(Clone, Debug, Default)]
pub struct TransferReport {
    /// Entries written (to the remote for a push, to the local cache for a pull).
    pub entries: usize,
    /// Artifacts transferred.
    pub artifacts: usize,
    /// Artifacts the other side already had.
    pub artifacts_present: usize,
    /// Row results uploaded with their entries (pushes only).
    pub rows: usize,
    pub bytes: u64,
    /// One line per entry that could not be transferred.
    pub failures: Vec<String>,
}

/// A remote cache.
pub struct Remote {
    connect: crate::open::Connect,
    client: std::sync::OnceLock<Result<Arc<dyn ObjectStore>, String>>,
    prefix: ObjectPath,
    shown: String,
    redactor: crate::Redactor,
    pub(crate) rt: tokio::runtime::Runtime,
    permits: Arc<Semaphore>,
    write_through: bool,
    pub(crate) stats: Arc<Stats>,
    /// Artifacts found damaged in the remote by this process: an upload of one of them
    /// replaces the remote copy instead of trusting its listing, so recomputing repairs it.
    damaged: std::sync::Mutex<BTreeSet<Digest>>,
    /// Row results this process read from the remote: a push need not send them back.
    rows_here: std::sync::Mutex<std::collections::HashSet<Digest>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.shown).finish()
    }
}

impl Remote {
    /// Opens a remote (see [`crate::open`] for the URL forms). `jobs` transfers run at once;
    /// `write_through` makes runs push each node they compute.
    pub fn open(spec: &str, jobs: usize, write_through: bool) -> Result<Remote, OpenError> {
        let Opened { connect, prefix, shown, redactor } = open(spec)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dagrun-remote")
            .enable_all()
            .build()
            .map_err(|e| OpenError { shown: shown.clone(), why: format!("cannot start the transfer runtime: {e}") })?;
        Ok(Remote {
            connect,
            client: std::sync::OnceLock::new(),
            prefix,
            shown,
            redactor,
            rt,
            permits: Arc::new(Semaphore::new(jobs.max(1))),
            write_through,
            stats: Arc::default(),
            damaged: Default::default(),
            rows_here: Default::default(),
        })
    }

    /// The counters that progress displays read.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The object store client, built on first use.
    pub(crate) fn store(&self) -> Result<&Arc<dyn ObjectStore>, RemoteError> {
        self.client
            .get_or_init(|| (self.connect)())
            .as_ref()
            .map_err(|e| self.unavailable(format!("cannot connect: {e}")))
    }

    pub(crate) fn object(&self, rel: &str) -> ObjectPath {
        rel.split('/').fold(self.prefix.clone(), |p, part| p.clone().join(part))
    }

    fn artifact_base(digest: &Digest) -> String {
        let hex = digest.hex();
        format!("cas/{}/{hex}", &hex[..2])
    }

    pub(crate) fn listing_object(&self, digest: &Digest) -> ObjectPath {
        self.object(&format!("{}/listing", Self::artifact_base(digest)))
    }

    pub(crate) fn file_object(&self, digest: &Digest, file: &str) -> ObjectPath {
        self.object(&format!("{}/files/{file}", Self::artifact_base(digest)))
    }

    pub(crate) fn action_object(&self, key: &Digest) -> ObjectPath {
        let hex = key.hex();
        self.object(&format!("ac/{}/{hex}.json", &hex[..2]))
    }

    /// Row results live under `rows/KIND/`, named by their row key, sealed as locally.
    fn row_object(&self, kind: &str, key: &Digest) -> ObjectPath {
        let hex = key.hex();
        self.object(&format!("rows/{kind}/{}/{hex}", &hex[..2]))
    }

    pub(crate) fn unavailable(&self, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::Unavailable { remote: self.shown.clone(), why: self.redactor.scrub(&e.to_string()) }
    }

    pub(crate) fn map_err(&self, object: &ObjectPath, e: object_store::Error) -> RemoteError {
        match e {
            object_store::Error::NotFound { .. } => RemoteError::Missing { object: object.to_string() },
            e => self.unavailable(format!("{object}: {e}")),
        }
    }

    /// Runs `attempt` up to [`ATTEMPTS`] times while the remote is unavailable, backing off.
    pub(crate) async fn retried<T, F, Fut>(&self, mut attempt: F) -> Result<T, RemoteError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let mut wait = Duration::from_millis(200);
        let mut n = 1;
        loop {
            match attempt().await {
                Err(e) if e.is_unavailable() && n < ATTEMPTS => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    n += 1;
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn get_small(&self, object: &ObjectPath) -> Result<Option<Bytes>, RemoteError> {
        self.retried(|| async {
            match self.store()?.get(object).await {
                Ok(r) => r.bytes().await.map(Some).map_err(|e| self.map_err(object, e)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.map_err(object, e)),
            }
        })
        .await
    }

    async fn exists(&self, object: &ObjectPath) -> Result<bool, RemoteError> {
        self.retried(|| async {
            match self.store()?.head(object).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(self.map_err(object, e)),
            }
        })
        .await
    }

    async fn put_small(&self, object: &ObjectPath, bytes: Bytes) -> Result<(), RemoteError> {
        self.retried(|| async {
            self.store()?.put(object, PutPayload::from_bytes(bytes.clone())).await.map(|_| ()).map_err(|e| self.map_err(object, e))
        })
        .await
    }

    async fn action(&self, key: &Digest) -> Result<Option<ActionEntry>, RemoteError> {
        let object = self.action_object(key);
        let Some(bytes) = self.get_small(&object).await? else { return Ok(None) };
        let entry: ActionEntry = serde_json::from_slice(&bytes)
            .map_err(|e| RemoteError::Corrupt { object: object.to_string(), why: format!("not an action entry: {e}") })?;
        if entry.key != *key {
            return Err(RemoteError::Corrupt { object: object.to_string(), why: "it names another key".into() });
        }
        Ok(Some(entry))
    }

    /// The remote listing of `digest`, checked to hash to it; `None` when the remote lacks it.
    pub(crate) async fn listing(&self, digest: &Digest) -> Result<Option<Listing>, RemoteError> {
        let object = self.listing_object(digest);
        let Some(bytes) = self.get_small(&object).await? else { return Ok(None) };
        let corrupt = |why: &str| RemoteError::Corrupt { object: object.to_string(), why: why.into() };
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("the listing is not text"))?;
        let listing = Listing::parse(text).ok_or_else(|| corrupt("the listing is unreadable"))?;
        if listing.digest() != *digest {
            return Err(corrupt("the listing does not hash to the artifact's digest"));
        }
        for f in &listing.files {
            if f.path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
                return Err(corrupt("the listing names a file outside the artifact"));
            }
        }
        Ok(Some(listing))
    }

    /// Streams one file to `dest`, hashing as it goes; the size and digest must match.
    async fn download_file(&self, digest: &Digest, f: &FileEntry, dest: &Path) -> Result<(), RemoteError> {
        let object = self.file_object(digest, &f.path);
        let _permit = self.permits.acquire().await.map_err(|e| self.unavailable(e))?;
        self.retried(|| async {
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| CacheError::io(parent, e))?;
            }
            let got = self.store()?.get(&object).await.map_err(|e| self.map_err(&object, e))?;
            let (size, got_digest) = match got.payload {
                // A shared directory: copy on a blocking thread in large reads (object_store
                // would stream it in 8 KiB chunks, each a thread hop).
                object_store::GetResultPayload::File(file, _) => {
                    let dest = dest.to_path_buf();
                    let stats = self.stats.clone();
                    let limit = f.size;
                    tokio::task::spawn_blocking(move || copy_hashing(file, &dest, limit, &stats))
                        .await
                        .map_err(|e| self.unavailable(e))??
                }
                object_store::GetResultPayload::Stream(mut stream) => {
                    let file = tokio::fs::File::create(dest).await.map_err(|e| CacheError::io(dest, e))?;
                    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
                    let mut hasher = blake3::Hasher::new();
                    let mut size = 0u64;
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk.map_err(|e| self.map_err(&object, e))?;
                        size += chunk.len() as u64;
                        if size > f.size {
                            break;
                        }
                        hasher.update(&chunk);
                        out.write_all(&chunk).await.map_err(|e| CacheError::io(dest, e))?;
                        self.stats.bytes_down.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                    out.flush().await.map_err(|e| CacheError::io(dest, e))?;
                    (size, Digest::from_bytes(*hasher.finalize().as_bytes()))
                }
            };
            let corrupt = |why: String| RemoteError::Corrupt { object: object.to_string(), why };
            if size != f.size {
                return Err(corrupt(format!("{size} bytes where the listing says {}", f.size)));
            }
            if got_digest != f.digest {
                return Err(corrupt(format!("its content hashes to {} instead of {}", got_digest.short(), f.digest.short())));
            }
            self.stats.files_down.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    /// Downloads and publishes one artifact; `Ok(false)` if the local cache already had it.
    /// A damaged remote copy is remembered, for [`Remote::upload`] to replace.
    async fn fetch(&self, local: &Store, digest: &Digest) -> Result<bool, RemoteError> {
        if local.check_artifact(digest, Check::Quick).is_ok() {
            return Ok(false);
        }
        let fetched = self.fetch_verified(local, digest).await;
        if let Err(RemoteError::Corrupt { .. }) = &fetched {
            if let Ok(mut d) = self.damaged.lock() {
                d.insert(*digest);
            }
        }
        fetched
    }

    async fn fetch_verified(&self, local: &Store, digest: &Digest) -> Result<bool, RemoteError> {
        let listing = self
            .listing(digest)
            .await?
            .ok_or_else(|| RemoteError::Missing { object: self.listing_object(digest).to_string() })?;
        let staging = local.stage()?;
        let downloads = listing.files.iter().map(|f| {
            let dest = staging.path().join(&f.path);
            async move { self.download_file(digest, f, &dest).await }
        });
        for r in futures::future::join_all(downloads).await {
            r?;
        }
        let staged = staging;
        let local = local.clone();
        let verified = listing.clone();
        // Every file was hashed as it arrived and matched the listing: no second hashing pass.
        let published = tokio::task::spawn_blocking(move || local.publish_hashed(staged, &verified))
            .await
            .map_err(|e| self.unavailable(format!("publishing failed: {e}")))??;
        if published.digest != *digest {
            return Err(RemoteError::Corrupt {
                object: self.listing_object(digest).to_string(),
                why: format!("the files publish as {} instead", published.digest.short()),
            });
        }
        Ok(true)
    }

    /// Uploads one file, in parts when large.
    async fn upload_file(&self, src: &Path, object: &ObjectPath, size: u64) -> Result<(), RemoteError> {
        let _permit = self.permits.acquire().await.map_err(|e| self.unavailable(e))?;
        self.retried(|| async {
            if size <= MULTIPART_THRESHOLD {
                let bytes = tokio::fs::read(src).await.map_err(|e| CacheError::io(src, e))?;
                let n = bytes.len() as u64;
                self.store()?.put(object, PutPayload::from(bytes)).await.map_err(|e| self.map_err(object, e))?;
                self.stats.bytes_up.fetch_add(n, Ordering::Relaxed);
            } else {
                let upload = self.store()?.put_multipart(object).await.map_err(|e| self.map_err(object, e))?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                let mut file = tokio::fs::File::open(src).await.map_err(|e| CacheError::io(src, e))?;
                let mut buf = vec![0u8; PART_SIZE];
                loop {
                    let n = file.read(&mut buf).await.map_err(|e| CacheError::io(src, e))?;
                    if n == 0 {
                        break;
                    }
                    if let Err(e) = writer.wait_for_capacity(4).await {
                        writer.abort().await.ok();
                        return Err(self.map_err(object, e));
                    }
                    writer.write(&buf[..n]);
                    self.stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                }
                writer.finish().await.map_err(|e| self.map_err(object, e))?;
            }
            self.stats.files_up.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    /// Uploads one artifact unless the remote has it: the files, then the listing.
    /// `Ok(false)` when it was already there.
    async fn upload(&self, local: &Store, digest: &Digest) -> Result<bool, RemoteError> {
        let damaged = self.damaged.lock().is_ok_and(|d| d.contains(digest));
        if !damaged && self.exists(&self.listing_object(digest)).await? {
            return Ok(false);
        }
        // Never spread damage: the local copy is rehashed before it leaves.
        let check = {
            let local = local.clone();
            let d = *digest;
            tokio::task::spawn_blocking(move || local.check_artifact(&d, Check::Full))
                .await
                .map_err(|e| self.unavailable(e))?
        };
        let listing = check.map_err(|damage| {
            RemoteError::Local(CacheError::BadEntry {
                path: local.artifact_dir(digest),
                why: format!("the local artifact is damaged ({damage}); run `dagrun cache verify --fix`"),
            })
        })?;
        let dir = local.artifact_dir(digest);
        let uploads = listing.files.iter().map(|f| {
            let object = self.file_object(digest, &f.path);
            let src = dir.join(&f.path);
            async move { self.upload_file(&src, &object, f.size).await }
        });
        for r in futures::future::join_all(uploads).await {
            r?;
        }
        self.put_small(&self.listing_object(digest), Bytes::from(listing.to_text())).await?;
        if damaged {
            if let Ok(mut d) = self.damaged.lock() {
                d.remove(digest);
            }
        }
        Ok(true)
    }

    /// Every object under `prefix`.
    pub(crate) async fn list_all(&self, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>, RemoteError> {
        let mut out = Vec::new();
        let mut listing = self.store()?.list(Some(prefix));
        while let Some(m) = listing.next().await {
            out.push(m.map_err(|e| self.map_err(prefix, e))?);
        }
        Ok(out)
    }

    /// Deletes `objects`, several at a time (an object already gone is fine).
    pub(crate) async fn delete_all(&self, objects: Vec<ObjectPath>) -> Result<(), RemoteError> {
        let store = self.store()?;
        let deletes = objects.iter().map(|o| async move {
            match store.delete(o).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.map_err(o, e)),
            }
        });
        let mut results = futures::stream::iter(deletes).buffered(16);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// Writes an action entry to the remote (its artifacts must be there already).
    async fn put_entry(&self, entry: &ActionEntry) -> Result<(), RemoteError> {
        let json = serde_json::to_vec_pretty(entry).map_err(|e| self.unavailable(e))?;
        self.put_small(&self.action_object(&entry.key), Bytes::from(json)).await
    }

    /// Uploads one entry's artifacts, its rows, then the entry (write-through).
    async fn push_one(&self, local: &Store, entry: &ActionEntry) -> Result<(), RemoteError> {
        let unique: BTreeSet<&Digest> = entry.outputs.values().collect();
        for r in futures::future::join_all(unique.into_iter().map(|d| self.upload(local, d))).await {
            r?;
        }
        self.upload_rows(local, entry).await?;
        self.put_entry(entry).await
    }

    /// Uploads the row results `entry` lists that the local cache still has, unless the
    /// remote has the entry already (whoever pushed it pushed its rows), except those this
    /// process read from the remote and, for many rows, those a listing shows it holds
    /// (shards uploaded them, say); returns how many.
    async fn upload_rows(&self, local: &Store, entry: &ActionEntry) -> Result<usize, RemoteError> {
        if entry.rows.is_empty() || self.exists(&self.action_object(&entry.key)).await? {
            return Ok(0);
        }
        let mut skip = self.rows_here.lock().map(|h| h.clone()).unwrap_or_default();
        for (kind, keys) in &entry.rows {
            skip.extend(self.rows_listed(kind, keys.len()).await?.unwrap_or_default());
        }
        let skip = &skip;
        let sealed = entry.rows.iter().flat_map(|(kind, keys)| {
            let store = local.rows(kind);
            keys.iter().filter(|k| !skip.contains(k)).filter_map(move |k| store.get_sealed(k).map(|bytes| (self.row_object(kind, k), bytes)))
        });
        self.put_sealed_rows(sealed).await
    }

    /// Uploads sealed row results, [`ROW_REQUESTS`] at a time; returns how many.
    async fn put_sealed_rows(&self, rows: impl Iterator<Item = (ObjectPath, Vec<u8>)>) -> Result<usize, RemoteError> {
        let puts = rows.map(|(object, bytes)| async move {
            self.stats.bytes_up.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.put_small(&object, Bytes::from(bytes)).await
        });
        let mut results = futures::stream::iter(puts).buffer_unordered(ROW_REQUESTS);
        let mut n = 0;
        while let Some(r) = results.next().await {
            r?;
            n += 1;
        }
        Ok(n)
    }

    /// See [`RemoteCache::get_rows`].
    async fn rows_get(&self, kind: &str, keys: &[Digest]) -> Result<RowsFound, RemoteError> {
        // Many keys: list what the remote holds first, so absent rows cost no request each (a
        // first run would otherwise ask once per row); a remote holding far more rows than
        // are asked for is not listed to the end.
        let present = self.rows_listed(kind, keys.len()).await?;
        let gets = keys.iter().map(|k| {
            let absent = present.as_ref().is_some_and(|p| !p.contains(k));
            async move {
                if absent {
                    return Ok(None);
                }
                self.row_get(kind, k).await
            }
        });
        let mut results = futures::stream::iter(gets).buffered(ROW_REQUESTS);
        let (mut bodies, mut damaged) = (Vec::with_capacity(keys.len()), Vec::new());
        while let Some(r) = results.next().await {
            match r? {
                Some(Ok(body)) => {
                    if let Ok(mut here) = self.rows_here.lock() {
                        here.insert(keys[bodies.len()]);
                    }
                    bodies.push(Some(body));
                }
                Some(Err(e)) => {
                    damaged.push(e);
                    bodies.push(None);
                }
                None => bodies.push(None),
            }
        }
        Ok((bodies, damaged))
    }

    /// One row result: its body, a damaged object, or `None`.
    async fn row_get(&self, kind: &str, key: &Digest) -> Result<Option<Result<Vec<u8>, RemoteError>>, RemoteError> {
        let object = self.row_object(kind, key);
        let found = self.get_small(&object).await?;
        if let Some(b) = &found {
            self.stats.bytes_down.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        let corrupt = || RemoteError::Corrupt { object: object.to_string(), why: "its checksum does not match".into() };
        Ok(found.map(|b| rows::unseal(&b).map(<[u8]>::to_vec).ok_or_else(corrupt)))
    }

    /// Which of `keys` the remote holds rows of `kind` for: from a listing when many are
    /// asked, else one existence check each, [`ROW_REQUESTS`] at a time.
    async fn rows_present(&self, kind: &str, keys: &[Digest]) -> Result<Vec<bool>, RemoteError> {
        if let Some(present) = self.rows_listed(kind, keys.len()).await? {
            return Ok(keys.iter().map(|k| present.contains(k)).collect());
        }
        let checks = keys.iter().map(|k| async move { self.exists(&self.row_object(kind, k)).await });
        futures::stream::iter(checks).buffered(ROW_REQUESTS).try_collect().await
    }

    /// The keys of the row results of `kind` in the remote, when `asked` rows are to be looked
    /// up: for more than 64, one listing costs less than a request each. `None` for fewer, or
    /// when the remote holds far more rows than are asked about (listing them all would cost
    /// more).
    async fn rows_listed(&self, kind: &str, asked: usize) -> Result<Option<std::collections::HashSet<Digest>>, RemoteError> {
        if asked <= 64 {
            return Ok(None);
        }
        self.row_keys(kind, (2 * asked).max(1000)).await
    }

    /// The keys of the row results of `kind` in the remote, or `None` when there are more
    /// than `cap` (listing them all would cost more than asking for each).
    async fn row_keys(&self, kind: &str, cap: usize) -> Result<Option<std::collections::HashSet<Digest>>, RemoteError> {
        let prefix = self.object(&format!("rows/{kind}"));
        let mut keys = std::collections::HashSet::new();
        let mut listing = self.store()?.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.map_err(&prefix, e))?;
            if let Some(k) = meta.location.filename().and_then(|f| f.parse::<Digest>().ok()) {
                keys.insert(k);
            }
            if keys.len() > cap {
                return Ok(None);
            }
        }
        Ok(Some(keys))
    }

    /// See [`RemoteCache::put_rows`].
    async fn rows_put(&self, kind: &str, rows: &[(Digest, Vec<u8>)]) -> Result<(), RemoteError> {
        self.put_sealed_rows(rows.iter().map(|(k, body)| (self.row_object(kind, k), rows::seal(body)))).await?;
        Ok(())
    }

    /// Transfers every artifact that `entries` name, once each and 8 at a time, counting
    /// them in `report`; returns why each failed one failed. `transfer` says whether it moved
    /// anything (`false`: the other side had it).
    async fn transfer_artifacts<F, Fut>(
        &self,
        local: &Store,
        entries: &[ActionEntry],
        report: &mut TransferReport,
        transfer: F,
    ) -> BTreeMap<Digest, String>
    where
        F: Fn(Digest) -> Fut,
        Fut: std::future::Future<Output = Result<bool, RemoteError>>,
    {
        let digests: BTreeSet<Digest> = entries.iter().flat_map(|e| e.outputs.values().copied()).collect();
        let transfers = digests.into_iter().map(|d| {
            let moved = transfer(d);
            async move { (d, moved.await) }
        });
        let mut results = futures::stream::iter(transfers).buffer_unordered(8);
        let mut failed = BTreeMap::new();
        while let Some((d, r)) = results.next().await {
            match r {
                Ok(true) => {
                    report.artifacts += 1;
                    report.bytes += local.artifact_info(&d).map(|i| i.size).unwrap_or(0);
                }
                Ok(false) => report.artifacts_present += 1,
                Err(e) => {
                    failed.insert(d, e.to_string());
                }
            }
        }
        failed
    }

    /// Pushes entries and their artifacts, several at a time, each artifact once however many
    /// entries name it; each entry is written only after all its artifacts are in the remote.
    pub fn push(&self, local: &Store, entries: &[ActionEntry]) -> TransferReport {
        self.rt.block_on(async {
            let mut report = TransferReport::default();
            let failed = self.transfer_artifacts(local, entries, &mut report, |d| async move { self.upload(local, &d).await }).await;
            let failed = &failed;
            let puts = entries.iter().map(|e| async move {
                if let Some(why) = e.outputs.values().find_map(|d| failed.get(d)) {
                    return (e, Err(why.clone()));
                }
                let rows = match self.upload_rows(local, e).await {
                    Ok(n) => n,
                    Err(x) => return (e, Err(format!("its row results: {x}"))),
                };
                (e, self.put_entry(e).await.map(|()| rows).map_err(|x| x.to_string()))
            });
            let mut results = futures::stream::iter(puts).buffer_unordered(8);
            while let Some((e, r)) = results.next().await {
                match r {
                    Ok(rows) => {
                        report.entries += 1;
                        report.rows += rows;
                    }
                    Err(why) => report.failures.push(format!("{} ({}): {why}", e.key.short(), e.kind)),
                }
            }
            report
        })
    }

    /// Every action entry in the remote (for `cache pull --all`). Unreadable entries are
    /// returned as errors beside the good ones.
    pub fn all_actions(&self) -> Result<(Vec<ActionEntry>, Vec<RemoteError>), RemoteError> {
        self.rt.block_on(async {
            let key = |m: &ObjectMeta| m.location.filename().and_then(|name| name.strip_suffix(".json")).and_then(|k| k.parse::<Digest>().ok());
            let keys: Vec<Digest> = self.list_all(&self.object("ac")).await?.iter().filter_map(key).collect();
            let mut good = Vec::new();
            let mut bad = Vec::new();
            let lookups = keys.iter().map(|k| self.action(k));
            let mut results = futures::stream::iter(lookups).buffered(16);
            while let Some(r) = results.next().await {
                match r {
                    Ok(Some(e)) => good.push(e),
                    Ok(None) => {}
                    Err(e) => bad.push(e),
                }
            }
            Ok((good, bad))
        })
    }

    /// Looks `keys` up in the remote action cache (several at a time).
    pub fn actions(&self, keys: &[Digest]) -> Vec<Result<Option<ActionEntry>, RemoteError>> {
        self.rt.block_on(async {
            let lookups = keys.iter().map(|k| self.action(k));
            futures::stream::iter(lookups).buffered(16).collect().await
        })
    }

    /// Downloads the artifacts of `entries` and writes the entries into the local cache (each
    /// only once all its artifacts are local and verified).
    pub fn pull(&self, local: &Store, entries: &[ActionEntry]) -> TransferReport {
        self.rt.block_on(async {
            let mut report = TransferReport::default();
            let failed = self.transfer_artifacts(local, entries, &mut report, |d| async move { self.fetch(local, &d).await }).await;
            for e in entries {
                if let Some(why) = e.outputs.values().find_map(|d| failed.get(d)) {
                    report.failures.push(format!("{} ({}): {why}", e.key.short(), e.kind));
                    continue;
                }
                match local.put_action(e) {
                    Ok(()) => report.entries += 1,
                    Err(err) => report.failures.push(format!("{} ({}): {err}", e.key.short(), e.kind)),
                }
            }
            report
        })
    }
}

/// Copies up to `limit + 1` bytes of `from` into a new file `dest`, hashing them; returns the
/// size read and its digest.
fn copy_hashing(mut from: std::fs::File, dest: &Path, limit: u64, stats: &Stats) -> Result<(u64, Digest), RemoteError> {
    use std::io::{Read, Write};
    let mut out = std::fs::File::create(dest).map_err(|e| CacheError::io(dest, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(|e| CacheError::io(dest, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > limit {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| CacheError::io(dest, e))?;
        stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok((size, Digest::from_bytes(*hasher.finalize().as_bytes())))
}

impl RemoteCache for Remote {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn get_action(&self, key: &Digest) -> Result<Option<ActionEntry>, RemoteError> {
        self.rt.block_on(self.action(key))
    }

    fn fetch_artifact(&self, store: &Store, digest: &Digest) -> Result<(), RemoteError> {
        self.rt.block_on(self.fetch(store, digest)).map(|_| ())
    }

    fn push_entry(&self, store: &Store, entry: &ActionEntry) -> Result<(), RemoteError> {
        self.rt.block_on(self.push_one(store, entry))
    }

    fn write_through(&self) -> bool {
        self.write_through
    }

    fn get_rows(&self, kind: &str, keys: &[Digest]) -> Result<RowsFound, RemoteError> {
        self.rt.block_on(self.rows_get(kind, keys))
    }

    fn put_rows(&self, kind: &str, rows: &[(Digest, Vec<u8>)]) -> Result<(), RemoteError> {
        self.rt.block_on(self.rows_put(kind, rows))
    }

    fn has_rows(&self, kind: &str, keys: &[Digest]) -> Result<Vec<bool>, RemoteError> {
        self.rt.block_on(self.rows_present(kind, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn local(dir: &Path, name: &str) -> Store {
        Store::open(dir.join(name)).unwrap()
    }

    fn publish(store: &Store, files: &[(&str, &[u8])]) -> Digest {
        let s = store.stage().unwrap();
        for (name, bytes) in files {
            let p = s.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
        store.publish(s).unwrap().digest
    }

    fn entry(key: &[u8], outputs: &[(&str, Digest)]) -> ActionEntry {
        ActionEntry {
            key: Digest::of(key),
            kind: "k".into(),
            outputs: outputs.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
            components: serde_json::Value::Null,
            created_unix_ms: 1,
            seconds: 0.1,
            log: vec![],
            rows: Default::default(),
        }
    }

    #[test]
    fn push_then_pull_through_a_shared_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = local(dir.path(), "a");
        let d1 = publish(&a, &[("t.parquet", b"rows"), ("sub/m.json", b"{}")]);
        let big = vec![7u8; (MULTIPART_THRESHOLD + 5) as usize];
        let d2 = publish(&a, &[("w.safetensors", &big)]);
        let e = entry(b"node", &[("out", d1), ("model", d2)]);
        a.put_action(&e).unwrap();
        let remote = Remote::open(dir.path().join("shared").to_str().unwrap(), 4, false).unwrap();
        let r = remote.push(&a, std::slice::from_ref(&e));
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!((r.entries, r.artifacts, r.artifacts_present), (1, 2, 0));
        // A second push finds everything there.
        let again = remote.push(&a, std::slice::from_ref(&e));
        assert_eq!((again.artifacts, again.artifacts_present), (0, 2));

        let b = local(dir.path(), "b");
        let found = remote.actions(&[e.key, Digest::of(b"absent")]);
        assert_eq!(found[0].as_ref().unwrap().as_ref(), Some(&e));
        assert!(found[1].as_ref().unwrap().is_none());
        let r = remote.pull(&b, std::slice::from_ref(&e));
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!((r.entries, r.artifacts), (1, 2));
        assert_eq!(b.get_action(&e.key).unwrap(), Some(e.clone()));
        assert!(b.check_artifact(&d2, Check::Full).is_ok());
        assert_eq!(fs::read(b.artifact_dir(&d1).join("sub/m.json")).unwrap(), b"{}");
        let (all, bad) = remote.all_actions().unwrap();
        assert_eq!((all, bad.len()), (vec![e.clone()], 0));
    }

    #[test]
    fn a_corrupt_remote_object_is_reported_and_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let a = local(dir.path(), "a");
        let d = publish(&a, &[("t.parquet", b"hello world")]);
        let e = entry(b"node", &[("out", d)]);
        let shared = dir.path().join("shared");
        let remote = Remote::open(shared.to_str().unwrap(), 2, false).unwrap();
        assert!(remote.push(&a, std::slice::from_ref(&e)).failures.is_empty());
        let hex = d.hex();
        let object = shared.join("cas").join(&hex[..2]).join(&hex).join("files/t.parquet");
        // Same size, one byte different; then truncated.
        fs::write(&object, b"hello worle").unwrap();
        let b = local(dir.path(), "b");
        let err = remote.fetch_artifact(&b, &d).unwrap_err();
        assert!(matches!(err, RemoteError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("hashes to"), "{err}");
        fs::write(&object, b"hello").unwrap();
        let err = remote.fetch_artifact(&b, &d).unwrap_err();
        assert!(err.to_string().contains("5 bytes where the listing says 11"), "{err}");
        let r = remote.pull(&b, std::slice::from_ref(&e));
        assert_eq!((r.entries, r.failures.len()), (0, 1));
        assert!(b.get_action(&e.key).unwrap().is_none(), "no entry without its artifact");
        assert!(b.artifacts().unwrap().is_empty(), "nothing unverified enters the cache");
        assert_eq!(fs::read_dir(b.root().join("tmp")).unwrap().count(), 0, "staging is cleaned up");
    }

    #[test]
    fn a_damaged_local_artifact_is_not_pushed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = local(dir.path(), "a");
        let d = publish(&a, &[("t", b"abc")]);
        let p = a.artifact_dir(&d).join("t");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"abd").unwrap();
        let remote = Remote::open(dir.path().join("shared").to_str().unwrap(), 2, false).unwrap();
        let r = remote.push(&a, &[entry(b"n", &[("out", d)])]);
        assert_eq!(r.entries, 0);
        assert!(r.failures[0].contains("damaged"), "{:?}", r.failures);
        assert!(remote.get_action(&Digest::of(b"n")).unwrap().is_none());
    }

    #[test]
    fn a_listing_that_does_not_hash_to_its_digest_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let a = local(dir.path(), "a");
        let d = publish(&a, &[("t", b"abc")]);
        let shared = dir.path().join("shared");
        let remote = Remote::open(shared.to_str().unwrap(), 2, false).unwrap();
        assert!(remote.push(&a, &[entry(b"n", &[("out", d)])]).failures.is_empty());
        let hex = d.hex();
        let listing = shared.join("cas").join(&hex[..2]).join(&hex).join("listing");
        let text = fs::read_to_string(&listing).unwrap().replace(" 3 t", " 3 ../../t");
        fs::write(&listing, text).unwrap();
        let err = remote.fetch_artifact(&local(dir.path(), "b"), &d).unwrap_err();
        assert!(err.to_string().contains("does not hash"), "{err}");
    }

    #[test]
    fn bad_urls_are_explained() {
        let err = Remote::open("ftp://host/x", 1, false).unwrap_err().to_string();
        assert!(err.contains("ftp://host/x"), "{err}");
        let err = Remote::open("s3://", 1, false).unwrap_err().to_string();
        assert!(err.starts_with("remote `"), "{err}");
    }
}
