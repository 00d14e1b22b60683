//! Argument definitions and dispatch.

mod bench;
mod cache_cmd;
mod explain;
mod graph;
mod kinds;
mod log;
mod metrics;
mod paper;
mod plan;
mod remote;
mod report;
mod run;
mod shard;
mod show;
mod svg;
mod synth;
mod util;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes: 0 ok, 1 a node failed (or `plan --check` found work), 2 bad spec or usage,
/// 130 interrupted.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "dagrun",
    version,
    about = "Run YAML-declared dataflow pipelines with a content-addressed cache",
    long_about = "Run YAML-declared dataflow pipelines with a content-addressed cache.\n\n`dagrun PIPELINE.yaml` runs a pipeline (short for `dagrun run PIPELINE.yaml`).\nExit codes: 0 ok, 1 a node failed, 2 bad spec or usage, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline: compute what is not cached, reuse what is.
    Run(run::RunArgs),
    /// Show what a run would compute and why.
    Plan(plan::PlanArgs),
    /// Show what changed for one node since it was last computed.
    Explain(explain::ExplainArgs),
    /// Print the pipeline graph as DOT or Mermaid.
    Graph(graph::GraphArgs),
    /// Preview a node's output table (or list its files).
    Show(show::ShowArgs),
    /// Write one self-contained HTML page of the pipeline's results, DPO curves and rewards.
    Report(report::ReportArgs),
    /// Print the results table (MAP@K / NDCG@K of every evaluated method), optionally beside a variant's.
    Metrics(metrics::MetricsArgs),
    /// Print what nodes logged when they were computed (kept with the cache).
    Log(log::LogArgs),
    /// Compute one shard of a row-wise node's rows for a later run to assemble (an array job's task, or one process per GPU).
    Shard(shard::ShardArgs),
    /// Inspect and maintain the cache.
    #[command(subcommand)]
    Cache(cache_cmd::CacheCommand),
    /// List the node kinds this dagrun offers, with their ports and params.
    Kinds(kinds::KindsArgs),
    /// Write a synthetic world in a real dataset's file format (for tests and trials).
    Synth(synth::SynthArgs),
    /// Benchmarks that print figures (and check a GPU against the CPU).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Where the pipeline is and how to read it.
#[derive(Args, Debug, Clone)]
pub struct SpecArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Override a param (`NODE.PARAM=VALUE`) or a variable (`vars.NAME=VALUE`); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The cache directory (default: $DAGRUN_CACHE_DIR, else the spec's `cache:`, else `.dagrun`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Which nodes to run.
#[derive(Args, Debug, Clone, Default)]
pub struct SelectArgs {
    /// Run only these nodes (comma-separated or repeated); their inputs must be cached.
    #[arg(long, value_delimiter = ',', value_name = "NODE")]
    pub only: Vec<String>,
    /// Run these nodes and everything they depend on.
    #[arg(long, value_delimiter = ',', value_name = "NODE")]
    pub until: Vec<String>,
    /// Run these nodes and everything that depends on them.
    #[arg(long, value_delimiter = ',', value_name = "NODE")]
    pub from: Vec<String>,
    /// Recompute these nodes even if cached (descendants rerun only if the output changes).
    #[arg(long, value_delimiter = ',', value_name = "NODE")]
    pub force: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// `dagrun PIPELINE.yaml ...` becomes `dagrun run PIPELINE.yaml ...`.
pub fn insert_default_command(args: &mut Vec<OsString>) {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else { return };
    // Every subcommand clap knows (so a new one can never be mistaken for a pipeline file).
    let known = <Cli as clap::CommandFactory>::command().get_subcommands().any(|c| c.get_name() == first) || first == "help";
    let is_global_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    if !known && !is_global_flag {
        args.insert(1, OsString::from("run"));
    }
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Plan(a) => plan::plan(a),
        Command::Explain(a) => explain::explain(a),
        Command::Graph(a) => graph::graph(a),
        Command::Show(a) => show::show(a),
        Command::Report(a) => report::report(a),
        Command::Metrics(a) => metrics::metrics(a),
        Command::Log(a) => log::log(a),
        Command::Shard(a) => shard::shard(a),
        Command::Cache(c) => cache_cmd::cache(c),
        Command::Kinds(a) => kinds::kinds(a),
        Command::Synth(a) => synth::synth(a),
        Command::Bench(c) => bench::bench(c),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => util::report_error(e),
    }
}
