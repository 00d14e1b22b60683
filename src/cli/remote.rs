//! Remotes at the command line: which one a command uses (`--remote`, $DAGRUN_REMOTE, the
//! spec's `remote:`), `dagrun cache push` / `pull`, and transfer progress.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use dagrun_engine::cache::{ActionEntry, RemoteCache, Store};
use dagrun_engine::plan::{self, NodePlan};
use dagrun_engine::run::human_seconds;
use dagrun_engine::Pipeline;
use dagrun_remote::{Remote, Stats, TransferReport};

use super::util::{self, human_bytes, CliError, CliResult};
use super::EXIT_FAILED;

/// Transfers running at once.
const JOBS: usize = 8;

/// How a run uses a remote.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// A shared cache to read through (overrides $DAGRUN_REMOTE and the spec's `remote:`):
    /// s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX, file:///DIR or a path.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Ignore any configured remote.
    #[arg(long, conflicts_with = "remote")]
    pub no_remote: bool,
    /// Push every node this run computes to the remote (write-through).
    #[arg(long)]
    pub push: bool,
}

/// The remote URL and write-through setting in force, if any.
pub fn setting(a: &RemoteArgs, pipeline: Option<&Pipeline>) -> Option<(String, bool)> {
    if a.no_remote {
        return None;
    }
    let spec = pipeline.and_then(|p| p.remote.clone());
    let spec_push = spec.as_ref().is_some_and(|s| s.push);
    if let Some(url) = &a.remote {
        return Some((url.clone(), a.push || spec_push));
    }
    if let Some(url) = std::env::var("DAGRUN_REMOTE").ok().filter(|u| !u.trim().is_empty()) {
        return Some((url, a.push || spec_push));
    }
    spec.map(|s| (s.url, a.push || s.push))
}

/// Opens the remote in force (none configured: `None`).
pub fn open(a: &RemoteArgs, pipeline: Option<&Pipeline>) -> Result<Option<Arc<Remote>>, CliError> {
    match setting(a, pipeline) {
        None if a.push => Err(CliError::Usage("--push needs a remote: pass --remote URL, set $DAGRUN_REMOTE or the spec's `remote:`".into())),
        None => Ok(None),
        Some((url, push)) => Remote::open(&url, JOBS, push).map(|r| Some(Arc::new(r))).map_err(|e| CliError::Failed(e.into())),
    }
}

/// Prints bytes moved and the rate on a terminal while a transfer runs.
struct ProgressLine {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    fn start(stats: Arc<Stats>, verb: &'static str, up: bool) -> ProgressLine {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let bytes = if up { stats.bytes_up.load(Ordering::Relaxed) } else { stats.bytes_down.load(Ordering::Relaxed) };
                    let rate = bytes as f64 / t0.elapsed().as_secs_f64().max(1e-3);
                    eprint!("\r{verb} {}  {}/s   ", human_bytes(bytes), human_bytes(rate as u64));
                }
                eprint!("\r\x1b[2K");
            })
        });
        ProgressLine { stop, thread }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn finish(verb: &str, r: &TransferReport, seconds: f64, remote: &Remote) -> u8 {
    let rate = human_bytes((r.bytes as f64 / seconds.max(1e-3)) as u64);
    let rows = if r.rows > 0 { format!(" and {} row results", r.rows) } else { String::new() };
    eprintln!(
        "{verb} {} entries, {} artifacts ({}){rows} in {} ({rate}/s); {} artifacts were already there [{}]",
        r.entries,
        r.artifacts,
        human_bytes(r.bytes),
        human_seconds(seconds),
        r.artifacts_present,
        remote.describe()
    );
    for f in &r.failures {
        eprintln!("error: {f}");
    }
    if r.failures.is_empty() {
        0
    } else {
        eprintln!("{} entries could not be transferred; what did transfer is complete and usable", r.failures.len());
        EXIT_FAILED
    }
}

/// Arguments of `cache push` and `cache pull`.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The pipeline whose current results move (its `remote:` and `cache:` apply).
    pub pipeline: Option<PathBuf>,
    /// Every entry (of the local cache for push, of the remote for pull) instead of a
    /// pipeline's.
    #[arg(long)]
    pub all: bool,
    /// Override a param or variable of the pipeline (`NODE.PARAM=VALUE`, `vars.NAME=VALUE`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The cache directory (default: $DAGRUN_CACHE_DIR, else the spec's `cache:`, else `.dagrun`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The remote (default: $DAGRUN_REMOTE, else the spec's `remote:`).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
}

/// The pipeline a push or pull is about, `None` for `--all` (`all_of`: what --all covers);
/// exactly one of the two must be given.
fn load(a: &TransferArgs, verb: &str, all_of: &str) -> Result<Option<Pipeline>, CliError> {
    match (&a.pipeline, a.all) {
        (None, false) => Err(CliError::Usage(format!("say what to {verb}: a PIPELINE.yaml, or --all for {all_of}"))),
        (Some(_), true) => Err(CliError::Usage("give either a PIPELINE.yaml or --all, not both".into())),
        (None, true) => Ok(None),
        (Some(p), false) => {
            let spec = super::SpecArgs { pipeline: p.clone(), set: a.set.clone(), cache_dir: a.cache_dir.clone() };
            Ok(Some(util::load(&spec, &util::registry())?))
        }
    }
}

fn remote_for(a: &TransferArgs, p: Option<&Pipeline>) -> Result<Arc<Remote>, CliError> {
    let args = RemoteArgs { remote: a.remote.clone(), no_remote: false, push: false };
    open(&args, p)?.ok_or_else(|| {
        CliError::Usage("no remote configured: pass --remote URL, set $DAGRUN_REMOTE or the spec's `remote:`".into())
    })
}

/// `dagrun cache push`: uploads a pipeline's cached results (or the whole cache).
pub fn push(a: TransferArgs) -> CliResult {
    let pipeline = load(&a, "push", "the whole cache")?;
    let dir = util::cache_dir(&a.cache_dir, pipeline.as_ref());
    let store = util::existing_store(&a.cache_dir, pipeline.as_ref())?
        .ok_or_else(|| CliError::Usage(format!("no dagrun cache at {} (pass --cache-dir)", dir.display())))?;
    let remote = remote_for(&a, pipeline.as_ref())?;
    let entries: Vec<ActionEntry> = match &pipeline {
        None => store.actions()?.0,
        Some(p) => {
            let targets = vec![true; p.nodes.len()];
            let planned = plan::plan(p, Some(&store), &targets, &Default::default());
            let mut out = Vec::new();
            let mut missing = Vec::new();
            for (pl, node) in planned.into_iter().zip(&p.nodes) {
                match pl.plan {
                    NodePlan::Cached { entry, .. } => out.push(entry),
                    _ => missing.push(node.id.clone()),
                }
            }
            if !missing.is_empty() {
                eprintln!("not in the local cache (run the pipeline first to push them): {}", missing.join(", "));
            }
            out
        }
    };
    let t0 = Instant::now();
    let report = {
        let _line = ProgressLine::start(remote.stats(), "pushed", true);
        remote.push(&store, &entries)
    };
    Ok(finish("pushed", &report, t0.elapsed().as_secs_f64(), &remote))
}

/// `dagrun cache pull`: downloads what the remote has of a pipeline's current results (or,
/// with --all, everything it has).
pub fn pull(a: TransferArgs) -> CliResult {
    let pipeline = load(&a, "pull", "the whole remote")?;
    let dir = util::cache_dir(&a.cache_dir, pipeline.as_ref());
    let store = Store::open(&dir).map_err(|e| CliError::Failed(anyhow::anyhow!("cannot open the cache: {e}")))?;
    store.check_writable()?;
    let remote = remote_for(&a, pipeline.as_ref())?;
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    match &pipeline {
        None => {
            let (all, bad) = remote.all_actions().map_err(|e| CliError::Failed(e.into()))?;
            entries = all.into_iter().filter(|e| store.get_action(&e.key).ok().flatten().is_none()).collect();
            unreadable = bad.into_iter().map(|e| e.to_string()).collect();
        }
        Some(pipeline) => {
            let resolved = plan::resolve_keys(pipeline, Some(&store), Some(remote.as_ref() as &dyn RemoteCache));
            let mut unknown = Vec::new();
            for (r, node) in resolved.iter().zip(&pipeline.nodes) {
                match r {
                    plan::Resolved::Remote(e) => entries.push(e.clone()),
                    plan::Resolved::Local(_) => {}
                    plan::Resolved::Unknown => unknown.push(node.id.clone()),
                    plan::Resolved::Failed(why) => return Err(CliError::Failed(anyhow::anyhow!("{}: {why}", node.id))),
                }
            }
            if !unknown.is_empty() {
                eprintln!("in neither cache (a run will compute them): {}", unknown.join(", "));
            }
        }
    }
    let t0 = Instant::now();
    let mut report = {
        let _line = ProgressLine::start(remote.stats(), "pulled", false);
        remote.pull(&store, &entries)
    };
    report.failures.extend(unreadable);
    Ok(finish("pulled", &report, t0.elapsed().as_secs_f64(), &remote))
}

/// The pipeline's remote for a read-only command: `None` when there is none, or (with a
/// warning) when it cannot be opened — reading goes on with the local cache.
pub fn open_for_reading(p: &Pipeline) -> Option<Arc<Remote>> {
    open_or_warn(&RemoteArgs::default(), p)
}

/// The remote `a` names for a read-only command, as [`open_for_reading`] opens the default.
pub fn open_or_warn(a: &RemoteArgs, p: &Pipeline) -> Option<Arc<Remote>> {
    match open(a, Some(p)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warning: {}", match e {
                CliError::Failed(e) => format!("{e:#}"),
                CliError::Usage(m) => m,
                CliError::Spec(s) => s.0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
            });
            None
        }
    }
}

/// Downloads the results of `nodes` that only the remote has (the remote of $DAGRUN_REMOTE or
/// the spec), so that `show` and `report` can read what a run found there without downloading
/// it. Without a remote, or when everything is local, does nothing; failures are warnings.
pub fn fetch_for_reading(p: &Pipeline, store: &Store, nodes: &[usize]) {
    let local_plan = plan::plan(p, Some(store), &vec![true; p.nodes.len()], &Default::default());
    if nodes.iter().all(|&i| matches!(local_plan[i].plan, NodePlan::Cached { .. })) {
        return;
    }
    let Some(remote) = open_for_reading(p) else { return };
    let resolved = plan::resolve_keys(p, Some(store), Some(remote.as_ref() as &dyn RemoteCache));
    let entries: Vec<ActionEntry> = nodes
        .iter()
        .filter_map(|&i| match &resolved[i] {
            plan::Resolved::Remote(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    let r = remote.pull(store, &entries);
    if r.artifacts > 0 {
        eprintln!("downloaded {} artifacts ({}) from the remote {}", r.artifacts, human_bytes(r.bytes), remote.describe());
    }
    for f in &r.failures {
        eprintln!("warning: could not download from the remote: {f}");
    }
}
