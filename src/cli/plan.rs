//! `dagrun plan`: what a run would compute and why; `--check` for CI.

use clap::Args;
use dagrun_engine::cache::RemoteCache;
use dagrun_engine::plan::{self, plan as make_plan, NodePlan, Reason};
use dagrun_engine::{row_progress, RowProgress, Selection};
use serde_json::json;

use super::util::{self, columns, CliError, CliResult};
use super::{SelectArgs, SpecArgs, EXIT_FAILED};

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Exit with status 1 if anything would run (for CI).
    #[arg(long)]
    pub check: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also look keys up in this remote (default: $DAGRUN_REMOTE, else the spec's `remote:`).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Ignore any configured remote.
    #[arg(long, conflicts_with = "remote")]
    pub no_remote: bool,
    /// For each row-wise node that would run (`generate`, `encode`), count its rows already
    /// computed, here and in the remote: the rest is what the run computes. Reads the nodes'
    /// cached inputs.
    #[arg(long)]
    pub rows: bool,
}

pub fn plan(a: PlanArgs) -> CliResult {
    let registry = util::registry();
    let pipeline = util::load(&a.spec, &registry)?;
    let selection = Selection { only: a.select.only.clone(), until: a.select.until.clone(), from: a.select.from.clone() };
    let targets = selection.targets(&pipeline)?;
    let force = util::node_indices(&pipeline, "--force", &a.select.force)?;
    let store = util::existing_store(&a.spec.cache_dir, Some(&pipeline))?;
    let planned = make_plan(&pipeline, store.as_ref(), &targets, &force);
    // Nodes that would run but whose current key the remote has: a run takes them from there.
    let mut in_remote = vec![false; pipeline.nodes.len()];
    // A row-wise node that would run: how many of its rows are done (`--rows`).
    let mut rows: Vec<Option<Result<RowProgress, String>>> = vec![None; pipeline.nodes.len()];
    if planned.iter().any(|p| p.plan.would_run()) {
        let args = super::remote::RemoteArgs { remote: a.remote.clone(), no_remote: a.no_remote, push: false };
        let remote = super::remote::open(&args, Some(&pipeline))?;
        let remote = remote.as_ref().map(|r| r.as_ref() as &dyn RemoteCache);
        let resolved = if remote.is_some() || a.rows { plan::resolve_keys(&pipeline, store.as_ref(), remote) } else { Vec::new() };
        if remote.is_some() {
            for (i, r) in resolved.iter().enumerate() {
                let forced = matches!(&planned[i].plan, NodePlan::Run { reasons, .. } if reasons.contains(&Reason::Forced));
                in_remote[i] = matches!(r, plan::Resolved::Remote(_)) && planned[i].plan.would_run() && !forced;
            }
        }
        if let (true, Some(store)) = (a.rows, &store) {
            for (i, n) in pipeline.nodes.iter().enumerate() {
                // (A node whose key waits on its inputs' producers cannot know its rows yet.)
                if matches!(planned[i].plan, NodePlan::Run { key: Some(_), .. }) && !in_remote[i] && n.kind.shardable() {
                    rows[i] = row_progress(&pipeline, i, &resolved, Some(store), remote).map_err(|e| e.to_string()).transpose();
                }
            }
        }
    }

    let blocked: Vec<&str> =
        pipeline.nodes.iter().zip(&planned).filter(|(_, p)| matches!(p.plan, NodePlan::Blocked)).map(|(n, _)| n.id.as_str()).collect();
    let would_run = planned.iter().zip(&in_remote).filter(|(p, r)| p.plan.would_run() && !**r).count();

    if a.json {
        let nodes: Vec<_> = pipeline
            .nodes
            .iter()
            .zip(&planned)
            .zip(&in_remote)
            .zip(&rows)
            .map(|(((n, p), &remote), rows)| {
                let (state, key, reasons): (&str, Option<String>, Vec<Reason>) = match &p.plan {
                    NodePlan::Cached { key, .. } => ("cached", Some(key.hex()), vec![]),
                    NodePlan::Run { key, .. } if remote => ("remote", key.map(|k| k.hex()), vec![]),
                    NodePlan::Run { key, reasons } => ("run", key.map(|k| k.hex()), reasons.clone()),
                    NodePlan::Blocked => ("blocked", None, vec![]),
                    NodePlan::Unneeded => ("unselected", None, vec![]),
                };
                let mut node = json!({
                    "id": n.id,
                    "kind": n.kind.name(),
                    "would_run": p.plan.would_run() && !remote,
                    "state": state,
                    "key": key,
                    "reasons": reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "reason_details": reasons,
                });
                match rows {
                    Some(Ok(r)) => {
                        node["rows"] = json!(r);
                        node["rows"]["to_compute"] = r.to_compute().into();
                    }
                    Some(Err(e)) => node["rows"] = json!({ "error": e }),
                    None => {}
                }
                node
            })
            .collect();
        let out = json!({ "pipeline": pipeline.name, "would_run": would_run, "nodes": nodes });
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| CliError::Failed(e.into()))?);
    } else {
        let mut table = Vec::new();
        for (((n, p), &remote), rows) in pipeline.nodes.iter().zip(&planned).zip(&in_remote).zip(&rows) {
            let (state, why) = match &p.plan {
                NodePlan::Cached { .. } => ("cached", String::new()),
                NodePlan::Run { .. } if remote => ("remote", "in the remote: taken from there, not computed".to_string()),
                NodePlan::Run { reasons, key } => {
                    let mut why: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
                    if key.is_none() {
                        let ups: Vec<String> = n
                            .inputs
                            .iter()
                            .filter(|e| p.pending.contains(&e.port))
                            .map(|e| format!("`{}`", pipeline.nodes[e.from].id))
                            .collect();
                        why.push(format!("after {} (key known then)", ups.join(", ")));
                    }
                    match rows {
                        Some(Ok(r)) => why.push(r.to_string()),
                        Some(Err(e)) => why.push(format!("rows not counted: {e}")),
                        None => {}
                    }
                    ("run", why.join("; "))
                }
                NodePlan::Blocked => ("BLOCKED", "needed, but not selected and not cached".into()),
                NodePlan::Unneeded => ("-", "not selected".into()),
            };
            table.push(vec![state.to_string(), n.id.clone(), n.kind.name().to_string(), why]);
        }
        print!("{}", columns(&table));
        println!("{}: {} of {} nodes would run", pipeline.name, would_run, pipeline.nodes.len());
    }
    if !blocked.is_empty() {
        return Err(CliError::Usage(dagrun_engine::RunError::Blocked(blocked.iter().map(|s| s.to_string()).collect()).to_string()));
    }
    Ok(if a.check && would_run > 0 { EXIT_FAILED } else { 0 })
}
