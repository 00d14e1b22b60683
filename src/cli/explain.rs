//! `dagrun explain`: one node's key, status, and what changed since it was last computed.

use std::collections::BTreeSet;

use clap::Args;
use dagrun_engine::cache::RemoteCache;
use dagrun_engine::key::diff;
use dagrun_engine::plan::{plan as make_plan, resolve_keys, NodePlan, Resolved};
use dagrun_engine::run::human_seconds;
use dagrun_engine::{row_progress, RowProgressError};

use super::util::{self, CliResult};
use super::SpecArgs;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The node to explain.
    pub node: String,
    /// Also look its key, and a row-wise node's rows, up in this remote (default:
    /// $DAGRUN_REMOTE, else the spec's `remote:`).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Ignore any configured remote.
    #[arg(long, conflicts_with = "remote")]
    pub no_remote: bool,
}

pub fn explain(a: ExplainArgs) -> CliResult {
    let registry = util::registry();
    let pipeline = util::load(&a.spec, &registry)?;
    let i = *util::node_indices(&pipeline, "explain", std::slice::from_ref(&a.node))?.iter().next().expect("one node");
    let store = util::existing_store(&a.spec.cache_dir, Some(&pipeline))?;
    let targets = vec![true; pipeline.nodes.len()];
    let planned = make_plan(&pipeline, store.as_ref(), &targets, &BTreeSet::new());
    let node = &pipeline.nodes[i];
    let p = &planned[i];

    // Nodes whose result the remote has (looked up when this one would run).
    let mut in_remote = vec![false; pipeline.nodes.len()];
    println!("node `{}` (kind `{}`, implementation version {})", node.id, node.kind.name(), node.kind.version_for(&node.params));
    match &p.plan {
        NodePlan::Cached { key, entry } => {
            println!("  key      {}", key.hex());
            println!("  status   cached: computed {} in {}", util::format_time(entry.created_unix_ms), human_seconds(entry.seconds));
            for (port, d) in &entry.outputs {
                println!("  output   {port} = {}", d.hex());
            }
            for (n, line) in entry.log.iter().enumerate() {
                println!("  {:<9}{line}", if n == 0 { "log" } else { "" });
            }
        }
        NodePlan::Run { key, .. } => {
            match key {
                Some(k) => println!("  key      {}", k.hex()),
                None => println!("  key      not known yet: an input's producer must run first"),
            }
            let args = super::remote::RemoteArgs { remote: a.remote.clone(), no_remote: a.no_remote, push: false };
            let remote = super::remote::open_or_warn(&args, &pipeline);
            let remote = remote.as_ref().map(|r| r.as_ref() as &dyn RemoteCache);
            let resolved = resolve_keys(&pipeline, store.as_ref(), remote);
            let whole_in_remote = matches!(resolved[i], Resolved::Remote(_));
            if whole_in_remote {
                println!("  status   in the remote: a run downloads it instead of computing it");
            } else {
                println!("  status   would run");
            }
            // (A node taken whole from the remote computes no rows.)
            let rows = if whole_in_remote { Ok(None) } else { row_progress(&pipeline, i, &resolved, store.as_ref(), remote) };
            match rows {
                Ok(Some(rows)) => println!("  rows     {rows}"),
                // Not a row-wise kind, or taken from the remote.
                Ok(None) => {}
                Err(RowProgressError::InputPending { producer }) => {
                    println!("  rows     not counted until `{producer}` has run (`{} --until {producer}`)", util::run_command(&a.spec, &[]));
                }
                Err(e) => println!("  rows     not counted: {e}"),
            }
            in_remote = resolved.iter().map(|r| matches!(r, Resolved::Remote(_))).collect();
        }
        NodePlan::Blocked | NodePlan::Unneeded => println!("  status   not needed"),
    }
    match &p.last {
        None => println!("  history  never computed (no run record of this pipeline has it)"),
        Some((rec, started)) => {
            let old = rec.components.as_ref().expect("records with history have components");
            let changes = diff(old, &p.components, &p.pending);
            println!("  history  last computed in the run of {} ({})", util::format_time(*started), rec.status);
            if changes.is_empty() {
                if p.plan.would_run() {
                    println!("  changes  none: the key is the same, but its entry or output is no longer in the cache");
                } else {
                    println!("  changes  none");
                }
            } else {
                println!("  changes since then:");
                for c in changes {
                    println!("    {c}");
                }
            }
        }
    }
    if !p.pending.is_empty() {
        let ups: Vec<String> = node
            .inputs
            .iter()
            .filter(|e| p.pending.contains(&e.port))
            .map(|e| format!("`{}` ({})", pipeline.nodes[e.from].id, if in_remote[e.from] { "in the remote: downloaded first" } else { "would run first" }))
            .collect();
        println!("  waits on {}", ups.join(", "));
    }
    Ok(0)
}
