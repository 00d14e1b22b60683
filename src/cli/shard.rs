//! `dagrun shard`: one shard of a row-wise node, as one task of a cluster array job (or one
//! process per GPU of a machine). The node's inputs come from the cache or the remote
//! (computed here, and pushed, if neither has them); the shard's rows go to the remote, or
//! stay in the cache without one, where the driver's run finds them.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use dagrun_engine::cache::{RemoteCache, Store};
use dagrun_engine::run::human_seconds;
use dagrun_engine::{CancelToken, RunOptions, RunOutcome, Selection, Shard, ShardError, ShardOptions, Ui};

use super::util::{self, CliError, CliResult};
use super::{SpecArgs, EXIT_FAILED, EXIT_INTERRUPTED};

#[derive(Args, Debug)]
pub struct ShardArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The row-wise node (`generate`, `encode`) whose rows are split.
    pub node: String,
    /// How many shards the rows are split into (default: $SLURM_ARRAY_TASK_COUNT).
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,
    /// This shard, 0 to N-1 (default: $SLURM_ARRAY_TASK_ID less $SLURM_ARRAY_TASK_MIN, else
    /// $JOB_COMPLETION_INDEX of a Kubernetes indexed job).
    #[arg(long, value_name = "I")]
    pub index: Option<u32>,
    /// The remote the rows go to (default: $DAGRUN_REMOTE, else the spec's `remote:`; with
    /// none, they stay in the cache, for a driver on the same cache).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Where models run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Print no progress, log lines or summary (errors still go to stderr).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// A number from the environment, with what it is called for messages.
fn env_number(name: &str) -> Result<Option<u32>, CliError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| CliError::Usage(format!("${name} is `{v}`, not a shard number"))),
        _ => Ok(None),
    }
}

/// The shard from the flags, else from a Slurm array task's or a Kubernetes indexed job's
/// environment.
fn shard_of(a: &ShardArgs) -> Result<Shard, CliError> {
    let count = match a.count {
        Some(c) => c,
        None => env_number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| CliError::Usage("say how many shards there are: --count N (or run as a Slurm array task)".into()))?,
    };
    let index = match a.index {
        Some(i) => i,
        None => match (env_number("SLURM_ARRAY_TASK_ID")?, env_number("JOB_COMPLETION_INDEX")?) {
            (Some(id), _) => id.checked_sub(env_number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0)).ok_or_else(|| CliError::Usage("$SLURM_ARRAY_TASK_ID is below $SLURM_ARRAY_TASK_MIN".into()))?,
            (None, Some(i)) => i,
            (None, None) => return Err(CliError::Usage("say which shard this is: --index I (or run as a Slurm array task or a Kubernetes indexed job)".into())),
        },
    };
    Shard::new(index, count).map_err(CliError::Usage)
}

pub fn shard(a: ShardArgs) -> CliResult {
    let registry = util::registry();
    let pipeline = util::load(&a.spec, &registry)?;
    let node = *util::node_indices(&pipeline, "shard", std::slice::from_ref(&a.node))?.iter().next().expect("one node");
    let kind = &pipeline.nodes[node].kind;
    if !kind.shardable() {
        let row_wise: Vec<String> = registry.names().filter(|k| registry.get(k).is_some_and(|k| k.shardable())).map(|k| format!("`{k}`")).collect();
        return Err(CliError::Usage(format!("node `{}` is a `{}` node, which cannot be sharded: only row-wise kinds can ({})", a.node, kind.name(), row_wise.join(", "))));
    }
    let shard = shard_of(&a)?;
    let device = util::device(&a.device)?;
    // The shard's rows reach the driver through the remote, or, without one, through this
    // cache (a driver on the same cache: several GPUs of one machine). What it computes on
    // the way (inputs no one had yet) is pushed too, for the other shards.
    let remote_args = super::remote::RemoteArgs { remote: a.remote.clone(), no_remote: false, push: true };
    let remote = match super::remote::setting(&remote_args, Some(&pipeline)) {
        Some(_) => super::remote::open(&remote_args, Some(&pipeline))?.map(|r| r as Arc<dyn RemoteCache>),
        None => None,
    };
    let dir: PathBuf = util::cache_dir(&a.spec.cache_dir, Some(&pipeline));
    let store = Store::open(&dir).map_err(|e| CliError::Failed(anyhow::anyhow!("cannot open the cache: {e}")))?;
    let cancel = CancelToken::new();
    super::run::install_interrupt_handler(cancel.clone());
    let ui = Ui::new(!a.quiet, a.quiet);

    // The node's inputs: cached, in the remote, or computed here.
    let mut targets = Selection { until: vec![a.node.clone()], ..Default::default() }.targets(&pipeline)?;
    targets[node] = false;
    if targets.iter().any(|&t| t) {
        let opts = RunOptions {
            jobs: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            keep_going: false,
            force: Default::default(),
            targets,
            device,
            cancel: cancel.clone(),
            ui: ui.clone(),
            verify: false,
            remote: remote.clone(),
        };
        let report = dagrun_engine::run(&pipeline, &store, &opts).map_err(|e| CliError::Failed(anyhow::anyhow!("{e}")))?;
        match report.outcome {
            RunOutcome::Ok => {}
            RunOutcome::Failed => {
                eprint!("{}", super::run::summary(&report));
                eprintln!("error: the inputs of `{}` could not be computed", a.node);
                return Ok(EXIT_FAILED);
            }
            RunOutcome::Interrupted => return Ok(EXIT_INTERRUPTED),
        }
    }

    match dagrun_engine::run_shard(&pipeline, node, shard, &store, remote.clone(), ShardOptions { device, ui, cancel }) {
        Ok(r) => {
            if !a.quiet {
                match r.already {
                    Some(place) => eprintln!("`{}` is already computed ({place}): shard {shard} has nothing to do", a.node),
                    None => {
                        let rows: Vec<String> = r.pushed.iter().map(|(kind, n)| format!("{n} `{kind}` row results")).collect();
                        let rows = if rows.is_empty() { "no row results".to_string() } else { rows.join(", ") };
                        let place = match &remote {
                            Some(remote) => format!("uploaded to {}", remote.describe()),
                            None => format!("kept in the cache {} (no remote: a run on this cache assembles them)", store.root().display()),
                        };
                        eprintln!("shard {shard} of `{}`: {rows} {place} in {}", a.node, human_seconds(r.seconds));
                    }
                }
            }
            Ok(0)
        }
        Err(ShardError::Interrupted) => Ok(EXIT_INTERRUPTED),
        Err(e) => Err(CliError::Failed(e.into())),
    }
}
