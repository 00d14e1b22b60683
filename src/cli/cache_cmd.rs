//! `dagrun cache ls|verify|gc|push|pull`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use dagrun_engine::cache::{Check, Digest, Store};
use dagrun_engine::context::MANIFEST_FILE;
use dagrun_engine::record;
use serde_json::json;

use super::util::{self, columns, human_bytes, CliError, CliResult};
use super::EXIT_FAILED;

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List stored artifacts: digest, type, size, age and the nodes that produced them (with
    /// --remote: a remote's).
    Ls(LsArgs),
    /// Rehash every artifact and report the damaged ones (exit 1 if any); with --remote,
    /// audit a remote.
    Verify(VerifyArgs),
    /// Delete artifacts that the latest runs of every pipeline did not reach (with --remote:
    /// a remote's results older than --older-than).
    Gc(GcArgs),
    /// Upload a pipeline's cached results (or the whole cache with --all) to a remote:
    /// artifacts first, then the entries that name them.
    Push(super::remote::TransferArgs),
    /// Download what a remote has of a pipeline's results (or everything with --all),
    /// verified against their digests.
    Pull(super::remote::TransferArgs),
}

#[derive(Args, Debug)]
pub struct CacheArgs {
    /// The cache directory (default: $DAGRUN_CACHE_DIR, else `.dagrun`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// List a remote instead (URL, or $DAGRUN_REMOTE when no URL follows): its artifacts,
    /// entries and row results.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Move damaged artifacts to quarantine and drop the entries that name them, so the
    /// next run recomputes them. With --remote: delete from the remote the damaged listings,
    /// unreadable entries, entries naming damaged or missing artifacts, and damaged rows.
    #[arg(long)]
    pub fix: bool,
    /// Check a remote instead of the local cache (URL, or $DAGRUN_REMOTE when no URL
    /// follows): every entry reads, every artifact they name has a listing that hashes to its
    /// digest and every listed file with its size.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,
    /// With --remote: also download and hash every file, and check every row result.
    #[arg(long, requires = "remote")]
    pub full: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Keep what the newest N runs of each pipeline reached.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub keep_runs: usize,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete row results (generate's answers, encode's vectors, kept per row so a grown
    /// table computes only new rows) that no kept run read or wrote. A node that was cached
    /// whole in those runs did not touch its rows: a grown table recomputes them afterwards.
    #[arg(long)]
    pub rows: bool,
    /// Evict from a remote instead (URL, or $DAGRUN_REMOTE when no URL follows): entries
    /// older than --older-than, then the artifacts and row results no remaining entry names.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub remote: Option<String>,
    /// With --remote (and required there): the age in days beyond which entries go.
    #[arg(long, value_name = "DAYS", requires = "remote")]
    pub older_than: Option<f64>,
    /// With --remote: keep these pipelines' current results whatever their age (repeatable).
    #[arg(long, value_name = "PIPELINE", requires = "remote")]
    pub keep: Vec<PathBuf>,
}

pub fn cache(c: CacheCommand) -> CliResult {
    match c {
        CacheCommand::Ls(a) => ls(a),
        CacheCommand::Verify(a) => verify(a),
        CacheCommand::Gc(a) => gc(a),
        CacheCommand::Push(a) => super::remote::push(a),
        CacheCommand::Pull(a) => super::remote::pull(a),
    }
}

fn open(a: &CacheArgs) -> Result<Store, CliError> {
    let dir = util::cache_dir(&a.cache_dir, None);
    util::existing_store(&a.cache_dir, None)?
        .ok_or_else(|| CliError::Usage(format!("no dagrun cache at {} (pass --cache-dir)", dir.display())))
}

fn artifact_type(store: &Store, d: &Digest) -> String {
    std::fs::read(store.artifact_dir(d).join(MANIFEST_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `cache ls --remote`: what a remote holds (see `dagrun_remote::Inventory`).
fn ls_remote(url: &str, json_out: bool) -> CliResult {
    let remote = open_remote(url)?;
    let inv = remote.inventory().map_err(|e| CliError::Failed(e.into()))?;
    let shown = dagrun_engine::cache::RemoteCache::describe(&remote);
    let mut producers: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for e in &inv.entries {
        for (port, d) in &e.outputs {
            producers.entry(*d).or_default().push(format!("{}.{port}", e.kind));
        }
    }
    let mut artifacts = inv.artifacts.clone();
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.modified_ms));
    let total: u64 = artifacts.iter().map(|a| a.bytes).sum();
    if json_out {
        let out = json!({
            "remote": shown,
            "artifacts": artifacts.iter().map(|a| json!({
                "digest": a.digest.hex(),
                "bytes": a.bytes,
                "objects": a.objects,
                "modified_unix_ms": a.modified_ms,
                "produced_by": producers.get(&a.digest).cloned().unwrap_or_default(),
            })).collect::<Vec<_>>(),
            "entries": inv.entries.len(),
            "entries_unreadable": inv.unreadable,
            "oldest_entry_unix_ms": inv.entries.iter().map(|e| e.created_unix_ms).min(),
            "row_results": inv.row_results,
            "row_bytes": inv.row_bytes,
        });
        print_json(&out)?;
        return Ok(0);
    }
    let mut rows = vec![vec!["digest".to_string(), "size".into(), "modified".into(), "produced by".into()]];
    for a in &artifacts {
        let by = producers.get(&a.digest).map(|v| v.join(", ")).unwrap_or_else(|| "(no entry names it)".into());
        rows.push(vec![a.digest.short(), human_bytes(a.bytes), util::format_time(a.modified_ms), by]);
    }
    print!("{}", columns(&rows));
    let oldest = inv.entries.iter().map(|e| e.created_unix_ms).min().map(|ms| format!(", the oldest created {}", util::format_time(ms))).unwrap_or_default();
    let unreadable = if inv.unreadable > 0 { format!(" ({} unreadable)", inv.unreadable) } else { String::new() };
    println!(
        "{} artifacts, {} in {shown}; {} entries{unreadable}{oldest}; {} row results ({})",
        artifacts.len(),
        human_bytes(total),
        inv.entries.len(),
        inv.row_results,
        human_bytes(inv.row_bytes)
    );
    Ok(0)
}

fn ls(a: LsArgs) -> CliResult {
    if let Some(url) = &a.remote {
        return ls_remote(url, a.cache.json);
    }
    let a = a.cache;
    let store = open(&a)?;
    let (entries, _) = store.actions()?;
    let mut producers: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for e in &entries {
        for (port, d) in &e.outputs {
            producers.entry(*d).or_default().push(format!("{}.{port}", e.kind));
        }
    }
    let mut nodes: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for p in record::pipelines(&store) {
        if let Some(rec) = record::latest(&store, &p, 1).into_iter().next() {
            for n in rec.nodes {
                for d in n.outputs.values() {
                    nodes.entry(*d).or_default().push(format!("{p}/{}", n.id));
                }
            }
        }
    }
    let mut infos: Vec<_> = store.artifacts()?.into_iter().map(|d| (d, store.artifact_info(&d))).collect();
    infos.sort_by_key(|(_, i)| std::cmp::Reverse(i.as_ref().map(|i| i.modified)));
    if a.json {
        let items: Vec<_> = infos
            .iter()
            .map(|(d, info)| {
                json!({
                    "digest": d.hex(),
                    "type": artifact_type(&store, d),
                    "bytes": info.as_ref().map(|i| i.size),
                    "files": info.as_ref().map(|i| i.files),
                    "produced_by": producers.get(d).cloned().unwrap_or_default(),
                    "latest_runs": nodes.get(d).cloned().unwrap_or_default(),
                })
            })
            .collect();
        print_json(&serde_json::Value::Array(items))?;
        return Ok(0);
    }
    let mut rows = vec![vec!["digest".to_string(), "type".into(), "size".into(), "modified".into(), "nodes".into()]];
    let mut total = 0;
    for (d, info) in &infos {
        let (size, modified) = match info {
            Some(i) => {
                total += i.size;
                let ms = i.modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                (human_bytes(i.size), util::format_time(ms))
            }
            None => ("?".into(), "damaged".into()),
        };
        let names = nodes.get(d).or_else(|| producers.get(d)).map(|v| v.join(", ")).unwrap_or_default();
        rows.push(vec![d.short(), artifact_type(&store, d), size, modified, names]);
    }
    print!("{}", columns(&rows));
    println!("{} artifacts, {} in {}", infos.len(), human_bytes(total), store.root().display());
    Ok(0)
}

fn verify(a: VerifyArgs) -> CliResult {
    if let Some(url) = &a.remote {
        return verify_remote(url, &a);
    }
    let store = open(&a.cache)?;
    let digests = store.artifacts()?;
    let mut bad = Vec::new();
    for d in &digests {
        if let Err(damage) = store.check_artifact(d, Check::Full) {
            bad.push((*d, damage.to_string()));
        }
    }
    let (entries, unreadable) = store.actions()?;
    let bad_set: HashSet<Digest> = bad.iter().map(|(d, _)| *d).collect();
    let dangling: Vec<_> = entries
        .iter()
        .filter(|e| e.outputs.values().any(|d| bad_set.contains(d) || !store.artifact_dir(d).exists()))
        .collect();
    if a.cache.json {
        let out = json!({
            "artifacts": digests.len(),
            "damaged": bad.iter().map(|(d, why)| json!({"digest": d.hex(), "problem": why})).collect::<Vec<_>>(),
            "entries": entries.len(),
            "entries_dangling": dangling.len(),
            "entries_unreadable": unreadable.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "fixed": a.fix,
        });
        print_json(&out)?;
    } else {
        for (d, why) in &bad {
            println!("DAMAGED  {}  {}  {why}", d.hex(), artifact_type(&store, d));
        }
        for p in &unreadable {
            println!("UNREADABLE entry {}", p.display());
        }
        println!(
            "{} artifacts checked, {} damaged; {} entries, {} naming a damaged or missing artifact{}",
            digests.len(),
            bad.len(),
            entries.len(),
            dangling.len(),
            if a.fix && (!bad.is_empty() || !dangling.is_empty() || !unreadable.is_empty()) {
                " (fixed: damaged artifacts quarantined, their entries removed; the next run recomputes them)"
            } else {
                ""
            }
        );
    }
    if a.fix {
        let _lock = store.lock_shared()?;
        for (d, _) in &bad {
            store.quarantine(d)?;
        }
        for e in &dangling {
            store.remove_action(&e.key)?;
        }
        for p in &unreadable {
            std::fs::remove_file(p).map_err(|e| CliError::Failed(e.into()))?;
        }
    }
    // After --fix the cache is consistent again (the damage was reported above).
    Ok(if a.fix || (bad.is_empty() && unreadable.is_empty() && dangling.is_empty()) { 0 } else { EXIT_FAILED })
}

/// The remote of `--remote [URL]`: the URL given, else $DAGRUN_REMOTE.
fn open_remote(url: &str) -> Result<dagrun_remote::Remote, CliError> {
    let url = match url {
        "" => std::env::var("DAGRUN_REMOTE").ok().filter(|u| !u.trim().is_empty()).ok_or_else(|| CliError::Usage("--remote needs a URL here, or $DAGRUN_REMOTE".into()))?,
        u => u.to_string(),
    };
    dagrun_remote::Remote::open(&url, 8, false).map_err(|e| CliError::Failed(e.into()))
}

/// Prints `value` as pretty JSON.
fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(e.into()))?);
    Ok(())
}

/// `cache gc --remote`: age-based eviction from a remote (see `dagrun_remote::RemoteGc`).
fn gc_remote(url: &str, a: &GcArgs) -> CliResult {
    let days = a.older_than.ok_or_else(|| CliError::Usage("say how old an entry must be to go: --older-than DAYS (a remote is shared; nothing else tells what is unused)".into()))?;
    if !(days >= 0.0 && days.is_finite()) {
        return Err(CliError::Usage(format!("--older-than {days}: expected a number of days, 0 or more")));
    }
    if a.rows {
        return Err(CliError::Usage("--rows is for the local cache; a remote's row results go with their entries".into()));
    }
    let remote = open_remote(url)?;
    // The kept pipelines' current results, resolved through the local cache and the remote.
    let registry = util::registry();
    let mut keep = std::collections::BTreeSet::new();
    for p in &a.keep {
        let spec = super::SpecArgs { pipeline: p.clone(), set: Vec::new(), cache_dir: a.cache.cache_dir.clone() };
        let pipeline = util::load(&spec, &registry)?;
        let store = util::existing_store(&a.cache.cache_dir, Some(&pipeline))?;
        for r in dagrun_engine::plan::resolve_keys(&pipeline, store.as_ref(), Some(&remote as &dyn dagrun_engine::cache::RemoteCache)) {
            if let Some(e) = r.entry() {
                keep.insert(e.key);
            }
        }
    }
    let cutoff = dagrun_engine::cache::unix_ms().saturating_sub((days * 86_400_000.0) as u64);
    let r = remote.gc(cutoff, &keep, a.dry_run).map_err(|e| CliError::Failed(e.into()))?;
    let shown = dagrun_engine::cache::RemoteCache::describe(&remote);
    if a.cache.json {
        let out = json!({
            "remote": shown,
            "dry_run": a.dry_run,
            "entries_removed": r.entries_removed,
            "entries_kept": r.entries_kept,
            "artifacts_removed": r.artifacts_removed,
            "row_results_removed": r.row_results_removed,
            "bytes_freed": r.bytes_freed,
        });
        print_json(&out)?;
    } else {
        println!(
            "{} {} entries, {} artifacts and {} row results ({}) from {shown}; kept {} entries (newer than {days} days, or results of {} kept pipeline(s))",
            if a.dry_run { "would delete" } else { "deleted" },
            r.entries_removed,
            r.artifacts_removed,
            r.row_results_removed,
            human_bytes(r.bytes_freed),
            r.entries_kept,
            a.keep.len()
        );
    }
    Ok(0)
}

/// `cache verify --remote`: audits a remote (see `dagrun_remote::Audit`).
fn verify_remote(url: &str, a: &VerifyArgs) -> CliResult {
    let remote = open_remote(url)?;
    let audit = remote.audit(a.full, a.fix).map_err(|e| CliError::Failed(e.into()))?;
    if a.cache.json {
        let out = json!({
            "remote": dagrun_engine::cache::RemoteCache::describe(&remote),
            "entries": audit.entries,
            "entries_unreadable": audit.unreadable.iter().map(|(o, why)| json!({"object": o, "problem": why})).collect::<Vec<_>>(),
            "entries_dangling": audit.dangling.len(),
            "artifacts": audit.artifacts,
            "files": audit.files,
            "damaged": audit.damaged.iter().map(|(d, why)| json!({"digest": d.hex(), "problem": why})).collect::<Vec<_>>(),
            "missing": audit.missing.iter().map(|d| d.hex()).collect::<Vec<_>>(),
            "rows": audit.rows,
            "rows_damaged": audit.damaged_rows,
            "full": a.full,
            "fixed": audit.fixed,
        });
        print_json(&out)?;
    } else {
        for (d, why) in &audit.damaged {
            println!("DAMAGED  {}  {why}", d.hex());
        }
        for d in &audit.missing {
            println!("MISSING  {}  named by an entry, absent from the remote", d.hex());
        }
        for (o, why) in &audit.unreadable {
            println!("UNREADABLE entry {o}  {why}");
        }
        for o in &audit.damaged_rows {
            println!("DAMAGED  row {o}");
        }
        let how = if a.full { "every byte hashed" } else { "listings hashed, file sizes compared" };
        let rows = if a.full { format!("; {} row results, {} damaged", audit.rows, audit.damaged_rows.len()) } else { String::new() };
        let fixed = if a.fix && !audit.clean() { " (fixed: the damage deleted from the remote; the next push of those results uploads them anew)" } else { "" };
        println!(
            "{}: {} artifacts checked ({} files; {how}), {} damaged, {} missing; {} entries, {} unreadable, {} naming a damaged or missing artifact{rows}{fixed}",
            dagrun_engine::cache::RemoteCache::describe(&remote),
            audit.artifacts,
            audit.files,
            audit.damaged.len(),
            audit.missing.len(),
            audit.entries + audit.unreadable.len(),
            audit.unreadable.len(),
            audit.dangling.len(),
        );
    }
    Ok(if a.fix || audit.clean() { 0 } else { EXIT_FAILED })
}

fn gc(a: GcArgs) -> CliResult {
    if let Some(url) = &a.remote {
        return gc_remote(url, &a);
    }
    let store = open(&a.cache)?;
    if a.keep_runs == 0 {
        return Err(CliError::Usage("--keep-runs must be at least 1".into()));
    }
    let mut keep = HashSet::new();
    let pipelines = record::pipelines(&store);
    // Row results (generate, encode) used by no kept run: those last touched before the
    // oldest kept run started (every hit refreshes an entry's time).
    let mut oldest_kept = u64::MAX;
    for p in &pipelines {
        for rec in record::latest(&store, p, a.keep_runs) {
            oldest_kept = oldest_kept.min(rec.started_unix_ms);
            for n in rec.nodes {
                keep.extend(n.outputs.values().copied());
            }
        }
    }
    let report = store.gc(&keep, a.dry_run)?;
    let cutoff = if oldest_kept == u64::MAX { std::time::SystemTime::now() } else { std::time::UNIX_EPOCH + std::time::Duration::from_millis(oldest_kept) };
    let rows_dir = store.root().join("rows");
    let rows = dagrun_engine::rows::prune(&rows_dir, cutoff, a.dry_run || !a.rows).map_err(|e| CliError::Failed(anyhow::anyhow!("pruning {}: {e}", rows_dir.display())))?;
    let rows_note = if a.rows {
        format!("{} row results ({})", rows.entries, human_bytes(rows.bytes))
    } else {
        format!("0 row results ({} unused by the kept runs, {}, stay: --rows deletes them)", rows.entries, human_bytes(rows.bytes))
    };
    if a.cache.json {
        let mut v = serde_json::to_value(&report).map_err(|e| CliError::Failed(e.into()))?;
        v["row_entries_removed"] = if a.rows { rows.entries } else { 0 }.into();
        v["row_bytes_freed"] = if a.rows { rows.bytes } else { 0 }.into();
        v["row_entries_unused"] = rows.entries.into();
        print_json(&v)?;
    } else {
        println!(
            "{} {} artifacts ({}), {} cache entries, {rows_note}, {} leftover temporary files; kept {} artifacts reached by the latest {} run(s) of {} pipeline(s)",
            if a.dry_run { "would delete" } else { "deleted" },
            report.artifacts_removed,
            human_bytes(report.bytes_freed),
            report.actions_removed,
            report.temp_removed,
            report.artifacts_kept,
            a.keep_runs,
            pipelines.len()
        );
    }
    Ok(0)
}
