//! `dagrun log PIPELINE [NODE...]`: what nodes logged when they were computed (dataset sizes,
//! training summaries, pairs dropped, tokens per second). The lines are kept with each cache
//! entry, so a cached result, or a teammate's from the remote, still says how it came about;
//! a node that failed shows the lines of the last run that tried it.

use std::collections::BTreeSet;

use clap::Args;
use dagrun_engine::cache::{ActionEntry, RemoteCache, Store};
use dagrun_engine::plan::{self, plan as make_plan, NodePlan};
use dagrun_engine::record::{self, NodeRecord};
use dagrun_engine::run::human_seconds;
use dagrun_engine::NodeStatus;

use super::remote;
use super::util::{self, CliResult};
use super::SpecArgs;

#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Nodes to show (default: every node that logged something).
    pub nodes: Vec<String>,
}

/// Where a node's lines come from.
enum Found {
    Local(ActionEntry),
    Remote(ActionEntry),
    /// The newest run record in which it failed, and when that run started.
    Failed(NodeRecord, u64),
    Nothing,
}

/// Run records searched for a failed node's lines.
const RECORDS: usize = 50;

pub fn log(a: LogArgs) -> CliResult {
    let registry = util::registry();
    let pipeline = util::load(&a.spec, &registry)?;
    let all = a.nodes.is_empty();
    let picked: BTreeSet<usize> = if all { (0..pipeline.nodes.len()).collect() } else { util::node_indices(&pipeline, "log", &a.nodes)? };
    let store = util::existing_store(&a.spec.cache_dir, Some(&pipeline))?;
    let planned = make_plan(&pipeline, store.as_ref(), &vec![true; pipeline.nodes.len()], &BTreeSet::new());
    let mut found: Vec<(usize, Found)> = picked
        .iter()
        .map(|&i| match &planned[i].plan {
            NodePlan::Cached { entry, .. } => (i, Found::Local(entry.clone())),
            _ => (i, Found::Nothing),
        })
        .collect();
    // Not cached here: the remote's entry (read, nothing downloaded), else a failed run's record.
    if found.iter().any(|f| matches!(f.1, Found::Nothing)) {
        if let Some(remote) = remote::open_for_reading(&pipeline) {
            let resolved = plan::resolve_keys(&pipeline, store.as_ref(), Some(remote.as_ref() as &dyn RemoteCache));
            for (i, f) in found.iter_mut() {
                if let (Found::Nothing, plan::Resolved::Remote(e)) = (&f, &resolved[*i]) {
                    *f = Found::Remote(e.clone());
                }
            }
        }
    }
    if let Some(store) = &store {
        fill_failures(store, &pipeline.name, &planned, &mut found, &pipeline.nodes);
    }

    let mut missing = Vec::new();
    for (i, f) in &found {
        let node = &pipeline.nodes[*i];
        let head = format!("{} ({})", node.id, node.kind.name());
        let (title, lines) = match f {
            Found::Local(e) => (format!("{head}: computed {} in {}", util::format_time(e.created_unix_ms), human_seconds(e.seconds)), &e.log),
            Found::Remote(e) => (format!("{head}: in the remote, computed {} in {}", util::format_time(e.created_unix_ms), human_seconds(e.seconds)), &e.log),
            Found::Failed(r, started) => {
                let why = r.note.as_deref().unwrap_or("no reason recorded");
                (format!("{head}: not cached; failed in the run of {}: {why}", util::format_time(*started)), &r.log)
            }
            Found::Nothing => {
                missing.push(node.id.clone());
                continue;
            }
        };
        if all && lines.is_empty() {
            continue;
        }
        println!("{title}");
        if lines.is_empty() {
            println!("  (logged nothing)");
        }
        for l in lines {
            println!("  {l}");
        }
    }
    if !missing.is_empty() {
        println!("not computed for the current params: {}", missing.join(", "));
    }
    Ok(0)
}

/// For nodes found nowhere: the newest run record in which the node failed with the key it has
/// now (any key when an upstream node must run first, so the key is not known).
fn fill_failures(store: &Store, pipeline: &str, planned: &[plan::PlannedNode], found: &mut [(usize, Found)], nodes: &[dagrun_engine::pipeline::Node]) {
    if !found.iter().any(|f| matches!(f.1, Found::Nothing)) {
        return;
    }
    let records = record::latest(store, pipeline, RECORDS);
    for (i, f) in found.iter_mut() {
        if !matches!(f, Found::Nothing) {
            continue;
        }
        let key = match &planned[*i].plan {
            NodePlan::Run { key, .. } => *key,
            _ => None,
        };
        let failed = records.iter().find_map(|rec| {
            let n = rec.node(&nodes[*i].id)?;
            let same_key = key.is_none() || n.key == key;
            (n.status == NodeStatus::Failed && same_key).then(|| (n.clone(), rec.started_unix_ms))
        });
        if let Some((n, started)) = failed {
            *f = Found::Failed(n, started);
        }
    }
}
