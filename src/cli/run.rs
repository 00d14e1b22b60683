//! `dagrun run`: run a pipeline and print a summary (or a JSON report).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Args;
use dagrun_engine::cache::Store;
use dagrun_engine::run::human_seconds;
use dagrun_engine::{CancelToken, NodeStatus, RunError, RunOptions, RunOutcome, RunReport, Selection, Ui};

use super::util::{self, columns, CliError, CliResult};
use super::{SelectArgs, SpecArgs, EXIT_FAILED, EXIT_INTERRUPTED};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// After a node fails, finish the branches that do not depend on it.
    #[arg(long, short = 'k')]
    pub keep_going: bool,
    /// Most nodes running at once (default: the number of CPU cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Print a machine-readable JSON report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where models run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Print no progress, log lines or summary (errors still go to stderr).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Rehash every cached output the run uses (slower); damaged ones are recomputed.
    /// Without it, only the inputs of nodes that run are rehashed.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
}

pub fn run(a: RunArgs) -> CliResult {
    let registry = util::registry();
    let pipeline = util::load(&a.spec, &registry)?;
    let device = util::device(&a.device)?;
    let selection = Selection { only: a.select.only.clone(), until: a.select.until.clone(), from: a.select.from.clone() };
    let targets = selection.targets(&pipeline)?;
    let force = util::node_indices(&pipeline, "--force", &a.select.force)?;
    if a.jobs == Some(0) {
        return Err(CliError::Usage("--jobs must be at least 1".into()));
    }
    let jobs = a.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let dir: PathBuf = util::cache_dir(&a.spec.cache_dir, Some(&pipeline));
    let store = Store::open(&dir).map_err(|e| CliError::Failed(anyhow::anyhow!("cannot open the cache: {e}")))?;

    let cancel = CancelToken::new();
    install_interrupt_handler(cancel.clone());
    let ui = Ui::new(!a.quiet, a.quiet);
    let remote = super::remote::open(&a.remote, Some(&pipeline))?;
    let opts = RunOptions {
        jobs,
        keep_going: a.keep_going,
        force,
        targets,
        device,
        cancel,
        ui,
        verify: a.verify,
        remote: remote.map(|r| r as Arc<dyn dagrun_engine::cache::RemoteCache>),
    };
    let report = match dagrun_engine::run(&pipeline, &store, &opts) {
        Ok(r) => r,
        Err(RunError::Blocked(ids)) => return Err(CliError::Usage(RunError::Blocked(ids).to_string())),
        Err(RunError::Cache(e)) => return Err(CliError::Failed(anyhow::anyhow!("{e}"))),
    };
    if !a.quiet {
        eprint!("{}", summary(&report));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| CliError::Failed(e.into()))?);
    }
    Ok(match report.outcome {
        RunOutcome::Ok => 0,
        RunOutcome::Failed => EXIT_FAILED,
        RunOutcome::Interrupted => EXIT_INTERRUPTED,
    })
}

/// First Ctrl-C: stop starting nodes and ask running ones to stop. Second: exit at once
/// (finished work is already published; nothing half-written is ever trusted).
pub(super) fn install_interrupt_handler(cancel: CancelToken) {
    let count = Arc::new(AtomicUsize::new(0));
    let _ = ctrlc::set_handler(move || {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\ninterrupted: stopping running nodes (Ctrl-C again to quit at once)");
            cancel.cancel();
        } else {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
    });
}

/// The table printed after every run.
pub fn summary(r: &RunReport) -> String {
    let mut rows = vec![vec!["node".to_string(), "kind".into(), "status".into(), "time".into(), "digest".into(), String::new()]];
    for n in &r.nodes {
        let time = if n.status == NodeStatus::Ran || n.status == NodeStatus::Failed { human_seconds(n.seconds) } else { "-".into() };
        let digest = n.digest.map(|d| d.short()).unwrap_or_else(|| "-".into());
        let note = n.error.clone().or_else(|| n.note.clone()).unwrap_or_default();
        rows.push(vec![n.id.clone(), n.kind.clone(), n.status.to_string(), time, digest, note]);
    }
    let count = |s: NodeStatus| r.nodes.iter().filter(|n| n.status == s).count();
    let mut out = columns(&rows);
    let mut parts = vec![format!("{} ran", count(NodeStatus::Ran)), format!("{} cached", count(NodeStatus::Cached))];
    for (s, name) in [(NodeStatus::Remote, "in the remote"), (NodeStatus::Failed, "failed"), (NodeStatus::Skipped, "skipped")] {
        if count(s) > 0 {
            parts.push(format!("{} {name}", count(s)));
        }
    }
    let verdict = match r.outcome {
        RunOutcome::Ok => "ok",
        RunOutcome::Failed => "FAILED",
        RunOutcome::Interrupted => "INTERRUPTED",
    };
    out.push_str(&format!("{}: {} in {} ({verdict})\n", r.pipeline, parts.join(", "), human_seconds(r.seconds)));
    out
}
