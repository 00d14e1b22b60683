//! Planning: which nodes a run would compute and why, decided from the action cache and the
//! run records before anything runs. The scheduler repeats the same lookup as inputs become
//! known, so early cutoff can still turn a planned run into a cache hit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dagrun_cache::{ActionEntry, Check, Digest, Store};
use serde::Serialize;

use crate::error::{SpecError, SpecErrors};
use crate::files::FileHasher;
use crate::key::{diff, Change, KeyComponents};
use crate::pipeline::{Node, Pipeline};
use crate::record::{self, NodeRecord};

/// Which nodes a run is about.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only these nodes (their inputs must already be cached).
    pub only: Vec<String>,
    /// These nodes and everything they depend on.
    pub until: Vec<String>,
    /// These nodes and everything that depends on them.
    pub from: Vec<String>,
}

impl Selection {
    /// The selected nodes as a mask over `p.nodes`; unknown ids are usage errors.
    pub fn targets(&self, p: &Pipeline) -> Result<Vec<bool>, SpecErrors> {
        let n = p.nodes.len();
        let mut errors = Vec::new();
        let mut lookup = |flag: &str, ids: &[String]| -> Vec<usize> {
            ids.iter()
                .filter_map(|id| match p.index_of(id) {
                    Some(i) => Some(i),
                    None => {
                        errors.push(p.unknown_node(&format!("{flag} {id}"), id));
                        None
                    }
                })
                .collect()
        };
        let only = lookup("--only", &self.only);
        let until = lookup("--until", &self.until);
        let from = lookup("--from", &self.from);
        if !errors.is_empty() {
            return Err(SpecErrors(errors));
        }
        let mut mask = vec![true; n];
        if !self.only.is_empty() {
            let set: BTreeSet<usize> = only.into_iter().collect();
            for (i, m) in mask.iter_mut().enumerate() {
                *m &= set.contains(&i);
            }
        }
        if !self.until.is_empty() {
            let mut anc = vec![false; n];
            for u in until {
                for (i, a) in p.ancestors_of(u).into_iter().enumerate() {
                    anc[i] |= a;
                }
            }
            for (m, a) in mask.iter_mut().zip(anc) {
                *m &= a;
            }
        }
        if !self.from.is_empty() {
            let mut desc = vec![false; n];
            for f in from {
                for (i, d) in p.descendants_of(f).into_iter().enumerate() {
                    desc[i] |= d;
                }
            }
            for (m, d) in mask.iter_mut().zip(desc) {
                *m &= d;
            }
        }
        if !mask.iter().any(|&m| m) {
            return Err(SpecError::arg("selection", "the --only/--until/--from flags together select no node").into());
        }
        Ok(mask)
    }
}

/// Why a node would run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// `--force`.
    Forced,
    /// No record of this node ever being computed.
    NeverComputed,
    /// What changed since it was last computed.
    Changed { changes: Vec<String> },
    /// Same key as when it was last computed, but the entry or artifact is gone.
    NotInCache,
    /// The cached artifact is damaged.
    Damaged { what: String },
    /// An external file could not be read.
    Unreadable { what: String },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Forced => write!(f, "forced"),
            Reason::NeverComputed => write!(f, "never computed"),
            Reason::Changed { changes } => write!(f, "{}", changes.join("; ")),
            Reason::NotInCache => write!(f, "computed before, but no longer in the cache"),
            Reason::Damaged { what } => write!(f, "cached output is damaged: {what}"),
            Reason::Unreadable { what } => write!(f, "{what}"),
        }
    }
}

/// What a run would do with one node.
#[derive(Clone, Debug)]
pub enum NodePlan {
    /// Its current key is cached.
    Cached { key: Digest, entry: ActionEntry },
    /// It would be computed. `key` is `None` while an input's producer must run first.
    Run { key: Option<Digest>, reasons: Vec<Reason> },
    /// An ancestor of a selected node that is not selected and not cached: the run cannot
    /// proceed.
    Blocked,
    /// Neither selected nor needed by a selected node.
    Unneeded,
}

impl NodePlan {
    pub fn would_run(&self) -> bool {
        matches!(self, NodePlan::Run { .. })
    }
}

/// A node's plan with its components, for `plan` and `explain`.
#[derive(Clone, Debug)]
pub struct PlannedNode {
    pub plan: NodePlan,
    /// Current key components; inputs whose producers must run are left out of `inputs`
    /// and listed in `pending`.
    pub components: KeyComponents,
    pub pending: BTreeSet<String>,
    /// When the node was last computed, per the run records.
    pub last: Option<(NodeRecord, u64)>,
}

/// The key components of `node` given its inputs' and external files' digests.
pub fn components(node: &Node, inputs: &BTreeMap<String, Digest>, files: &BTreeMap<String, Digest>) -> KeyComponents {
    KeyComponents {
        kind: node.kind.name().to_string(),
        version: node.kind.version_for(&node.params),
        params: node.params.clone(),
        seed: node.kind.seeded(&node.params).then_some(node.seed),
        inputs: inputs.clone(),
        files: files.clone(),
    }
}

/// The outcome of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    Hit(ActionEntry),
    Miss,
    /// The entry is unreadable or names a damaged artifact (`digest`, when known).
    Damaged { what: String, digest: Option<Digest> },
}

/// Looks `key` up in the action cache and checks that its artifacts are intact (`Quick`:
/// listing and sizes; `Full`: every byte).
pub fn lookup(store: &Store, key: &Digest, check: Check) -> Lookup {
    match store.get_action(key) {
        Ok(Some(entry)) => {
            for (port, d) in &entry.outputs {
                if let Err(damage) = store.check_artifact(d, check) {
                    return Lookup::Damaged { what: format!("output `{port}` ({}): {damage}", d.short()), digest: Some(*d) };
                }
            }
            Lookup::Hit(entry)
        }
        Ok(None) => Lookup::Miss,
        Err(e) => Lookup::Damaged { what: e.to_string(), digest: None },
    }
}

/// Plans a run: for each node in order, whether it is cached, would run (and why), is
/// blocked or is not needed.
pub fn plan(
    p: &Pipeline,
    store: Option<&Store>,
    targets: &[bool],
    force: &BTreeSet<usize>,
) -> Vec<PlannedNode> {
    let n = p.nodes.len();
    // A forced node is selected, whatever the other flags say.
    let targets: Vec<bool> = (0..n).map(|i| targets[i] || force.contains(&i)).collect();
    let mut needed = targets.clone();
    for i in (0..n).rev() {
        if needed[i] {
            for e in &p.nodes[i].inputs {
                needed[e.from] = true;
            }
        }
    }
    let history: HashMap<String, (NodeRecord, u64)> =
        store.map(|s| record::last_computed(s, &p.name, 20)).unwrap_or_default();
    let hasher = FileHasher::new(store);
    let mut out: Vec<PlannedNode> = Vec::with_capacity(n);
    for (i, node) in p.nodes.iter().enumerate() {
        let mut inputs = BTreeMap::new();
        let mut pending = BTreeSet::new();
        for e in &node.inputs {
            match &out[e.from].plan {
                NodePlan::Cached { entry, .. } => match entry.outputs.get(&e.from_port) {
                    Some(d) => {
                        inputs.insert(e.port.clone(), *d);
                    }
                    None => {
                        pending.insert(e.port.clone());
                    }
                },
                _ => {
                    pending.insert(e.port.clone());
                }
            }
        }
        let files = if needed[i] { hasher.digests(&node.files) } else { Ok(BTreeMap::new()) };
        let file_digests = files.as_ref().cloned().unwrap_or_default();
        let comps = components(node, &inputs, &file_digests);
        let last = history.get(&node.id).cloned();
        let plan = if !needed[i] {
            NodePlan::Unneeded
        } else if let Err(e) = files {
            NodePlan::Run { key: None, reasons: vec![Reason::Unreadable { what: e.to_string() }] }
        } else if !pending.is_empty() {
            if targets[i] {
                NodePlan::Run { key: None, reasons: change_reasons(&comps, &pending, &last) }
            } else {
                NodePlan::Blocked
            }
        } else {
            let key = comps.key();
            let found = match store {
                Some(s) => lookup(s, &key, Check::Quick),
                None => Lookup::Miss,
            };
            match found {
                Lookup::Hit(entry) if !force.contains(&i) => NodePlan::Cached { key, entry },
                _ if !targets[i] => NodePlan::Blocked,
                Lookup::Hit(_) => NodePlan::Run { key: Some(key), reasons: vec![Reason::Forced] },
                Lookup::Damaged { what, .. } => NodePlan::Run { key: Some(key), reasons: vec![Reason::Damaged { what }] },
                Lookup::Miss => {
                    let mut reasons = change_reasons(&comps, &pending, &last);
                    if force.contains(&i) {
                        reasons.insert(0, Reason::Forced);
                    }
                    NodePlan::Run { key: Some(key), reasons }
                }
            }
        };
        out.push(PlannedNode { plan, components: comps, pending, last });
    }
    out
}

fn change_reasons(comps: &KeyComponents, pending: &BTreeSet<String>, last: &Option<(NodeRecord, u64)>) -> Vec<Reason> {
    match last.as_ref().and_then(|(r, _)| r.components.as_ref()) {
        None => vec![Reason::NeverComputed],
        Some(old) => {
            let changes: Vec<Change> = diff(old, comps, pending);
            if changes.is_empty() {
                vec![Reason::NotInCache]
            } else {
                vec![Reason::Changed { changes: changes.iter().map(|c| c.to_string()).collect() }]
            }
        }
    }
}

/// Where a node's current result is, as far as the caches know without computing anything.
#[derive(Clone, Debug)]
pub enum Resolved {
    /// In the local cache.
    Local(ActionEntry),
    /// Only in the remote.
    Remote(ActionEntry),
    /// In neither (or an input's producer is in neither, so the key is not known yet).
    Unknown,
    /// An external file could not be read, or the remote failed.
    Failed(String),
}

impl Resolved {
    /// The entry, local or remote.
    pub fn entry(&self) -> Option<&ActionEntry> {
        match self {
            Resolved::Local(e) | Resolved::Remote(e) => Some(e),
            _ => None,
        }
    }
}

/// Resolves every node's key from the local cache and then the remote, in dependency order:
/// a remote entry's output digests give its consumers' keys, so a whole pipeline's results
/// can be found (for `cache pull`) without downloading or computing anything.
pub fn resolve_keys(p: &Pipeline, store: Option<&Store>, remote: Option<&dyn dagrun_cache::RemoteCache>) -> Vec<Resolved> {
    let hasher = FileHasher::new(store);
    let mut out: Vec<Resolved> = Vec::with_capacity(p.nodes.len());
    for node in &p.nodes {
        let mut inputs = BTreeMap::new();
        let known = node.inputs.iter().all(|e| match out[e.from].entry().and_then(|en| en.outputs.get(&e.from_port)) {
            Some(d) => {
                inputs.insert(e.port.clone(), *d);
                true
            }
            None => false,
        });
        if !known {
            out.push(Resolved::Unknown);
            continue;
        }
        let files = match hasher.digests(&node.files) {
            Ok(f) => f,
            Err(e) => {
                out.push(Resolved::Failed(e.to_string()));
                continue;
            }
        };
        let key = components(node, &inputs, &files).key();
        if let Some(Lookup::Hit(entry)) = store.map(|s| lookup(s, &key, Check::Quick)) {
            out.push(Resolved::Local(entry));
            continue;
        }
        out.push(match remote.map(|r| r.get_action(&key)) {
            Some(Ok(Some(entry))) => Resolved::Remote(entry),
            Some(Err(e)) => Resolved::Failed(e.to_string()),
            _ => Resolved::Unknown,
        });
    }
    out
}
