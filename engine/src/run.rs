//! The scheduler: runs a pipeline's nodes in dependency order, independent ones in parallel
//! up to `jobs` (`gpu` nodes one at a time, `exclusive` nodes alone), looking each key up as
//! soon as its inputs are known (so identical outputs cut off reruns downstream), verifying
//! inputs before use, and publishing outputs atomically with the action entry last.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dagrun_cache::{unix_ms, ActionEntry, CacheError, Check, Digest, RemoteCache, Store};
use serde::Serialize;

use crate::context::{CancelToken, Cancelled, Device, InputArtifact, Inputs, NodeContext, NodeEnv, Staged, MANIFEST_FILE};
use crate::files::FileHasher;
use crate::key::KeyComponents;
use crate::kind::{BoxError, Resource};
use crate::pipeline::{Node, Pipeline};
use crate::plan::{self, components, lookup, Lookup, NodePlan};
use crate::record::{self, NodeRecord, NodeStatus, RunOutcome, RunRecord};
use crate::rows::RowCounts;
use crate::ui::Ui;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Most nodes running at once.
    pub jobs: usize,
    /// After a failure, finish the branches that do not depend on it.
    pub keep_going: bool,
    /// Nodes to recompute even if cached (indices into the pipeline).
    pub force: BTreeSet<usize>,
    /// The selected nodes (see [`plan::Selection`]).
    pub targets: Vec<bool>,
    pub device: Device,
    pub cancel: CancelToken,
    pub ui: Arc<Ui>,
    /// Rehash every cached output the run uses, not only the inputs of nodes that run.
    pub verify: bool,
    /// A shared cache to read through (and, if it says so, write through): a node whose key
    /// it has is not computed, and its outputs are downloaded only when a node that runs
    /// needs them.
    pub remote: Option<Arc<dyn RemoteCache>>,
}

/// What happened to one node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeOutcome {
    pub id: String,
    pub kind: String,
    pub status: NodeStatus,
    pub key: Option<Digest>,
    /// The first output's digest (most nodes have one output).
    pub digest: Option<Digest>,
    pub outputs: BTreeMap<String, Digest>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a row-wise node that ran: how it came by its rows, by row-cache kind.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rows: BTreeMap<String, RowCounts>,
    #[serde(skip)]
    pub components: Option<KeyComponents>,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub run_id: String,
    pub outcome: RunOutcome,
    pub seconds: f64,
    pub nodes: Vec<NodeOutcome>,
}

/// Why a run could not start or finish its bookkeeping.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{}", blocked_message(.0))]
    Blocked(Vec<String>),
}

fn blocked_message(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| format!("`{i}`")).collect();
    format!(
        "the selected nodes need {} which {} not selected and not in the cache; select {} too (or drop --only/--from)",
        list.join(", "),
        if ids.len() == 1 { "is" } else { "are" },
        if ids.len() == 1 { "it" } else { "them" },
    )
}

#[derive(Clone, Debug)]
enum State {
    Waiting,
    Ready { key: Digest, comps: KeyComponents },
    Running { key: Digest, comps: KeyComponents },
    Done {
        status: NodeStatus,
        key: Digest,
        comps: KeyComponents,
        outputs: BTreeMap<String, Digest>,
        seconds: f64,
        note: Option<String>,
        /// The remote's entry, while the outputs are only in the remote.
        remote: Option<Box<ActionEntry>>,
    },
    Failed { key: Option<Digest>, comps: Option<KeyComponents>, error: String, seconds: f64 },
    Skipped { note: String },
}

impl State {
    fn cached(key: Digest, comps: KeyComponents, entry: ActionEntry, note: Option<String>) -> State {
        State::Done { status: NodeStatus::Cached, key, comps, outputs: entry.outputs, seconds: 0.0, note, remote: None }
    }

    fn in_remote(key: Digest, comps: KeyComponents, entry: ActionEntry) -> State {
        State::Done {
            status: NodeStatus::Remote,
            key,
            comps,
            outputs: entry.outputs.clone(),
            seconds: 0.0,
            note: None,
            remote: Some(Box::new(entry)),
        }
    }
}

enum WorkResult {
    Ran { outputs: BTreeMap<String, Digest>, seconds: f64, rows: BTreeMap<String, RowCounts> },
    CachedByOther { entry: ActionEntry },
    Failed { error: String, seconds: f64 },
    Cancelled { seconds: f64 },
    InputDamaged { producer: usize, what: String },
    /// An input only in the remote could not be downloaded (corrupt, missing, unreachable).
    InputNotFetched { producer: usize, why: String },
}

/// Runs the selected part of a pipeline against `store`.
pub fn run(p: &Pipeline, store: &Store, opts: &RunOptions) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let started_ms = unix_ms();
    let run_id = record::new_run_id(started_ms);
    let _store_lock = store.lock_shared()?;
    store.check_writable()?;

    let planned = plan::plan(p, Some(store), &opts.targets, &opts.force);
    let blocked: Vec<String> =
        planned.iter().zip(&p.nodes).filter(|(pl, _)| matches!(pl.plan, NodePlan::Blocked)).map(|(_, n)| n.id.clone()).collect();
    // With a remote, an unselected ancestor may still be found there once its key is known.
    if !blocked.is_empty() && opts.remote.is_none() {
        return Err(RunError::Blocked(blocked));
    }
    let mut remote = opts.remote.clone();
    let n = p.nodes.len();
    let needed: Vec<bool> = planned.iter().map(|pl| !matches!(pl.plan, NodePlan::Unneeded)).collect();
    let targets: Vec<bool> = (0..n).map(|i| opts.targets[i] || opts.force.contains(&i)).collect();
    let mut forced: Vec<bool> = (0..n).map(|i| opts.force.contains(&i)).collect();
    let mut resets = vec![0u32; n];
    let mut state: Vec<State> = (0..n)
        .map(|i| if needed[i] { State::Waiting } else { State::Skipped { note: "not selected".into() } })
        .collect();
    let verified: Arc<Mutex<HashSet<Digest>>> = Arc::default();
    let hasher = FileHasher::new(Some(store));
    let (tx, rx) = mpsc::channel::<(usize, WorkResult, Vec<String>)>();
    // The logged lines of each node this run computed (or tried to), for its run record.
    let mut logs: Vec<Vec<String>> = vec![Vec::new(); n];
    // How each row-wise node that ran came by its rows.
    let mut row_counts: Vec<BTreeMap<String, RowCounts>> = vec![BTreeMap::new(); n];
    let mut running: Vec<usize> = Vec::new();
    let mut failed_any = false;

    std::thread::scope(|scope| {
        loop {
            // Resolve every waiting node whose inputs are all known.
            for i in 0..n {
                if !matches!(state[i], State::Waiting) {
                    continue;
                }
                let node = &p.nodes[i];
                if let Some(e) = node.inputs.iter().find(|e| matches!(state[e.from], State::Failed { .. } | State::Skipped { .. })) {
                    let up = &p.nodes[e.from].id;
                    let note = match &state[e.from] {
                        State::Failed { .. } => format!("upstream `{up}` failed"),
                        _ => format!("upstream `{up}` did not run"),
                    };
                    state[i] = State::Skipped { note };
                    continue;
                }
                let mut inputs = BTreeMap::new();
                let mut all_known = true;
                for e in &node.inputs {
                    match &state[e.from] {
                        State::Done { outputs, .. } => {
                            inputs.insert(e.port.clone(), outputs[&e.from_port]);
                        }
                        _ => all_known = false,
                    }
                }
                if !all_known {
                    continue;
                }
                let files = match hasher.digests(&node.files) {
                    Ok(f) => f,
                    Err(e) => {
                        state[i] = State::Failed { key: None, comps: None, error: e.to_string(), seconds: 0.0 };
                        failed_any = true;
                        continue;
                    }
                };
                let comps = components(node, &inputs, &files);
                let key = comps.key();
                if !forced[i] {
                    match lookup(store, &key, if opts.verify { Check::Full } else { Check::Quick }) {
                        Lookup::Hit(entry) => {
                            state[i] = State::cached(key, comps, entry, None);
                            continue;
                        }
                        Lookup::Damaged { what, digest } => {
                            // Set the damage aside so that no run trusts it again.
                            opts.ui.println(&format!("[{}] cached output is damaged ({what}); recomputing", node.id));
                            let _ = digest.map(|d| store.quarantine(&d));
                            let _ = store.remove_action(&key);
                        }
                        Lookup::Miss => {}
                    }
                    if let Some(r) = &remote {
                        match r.get_action(&key) {
                            Ok(Some(entry)) => {
                                state[i] = State::in_remote(key, comps, entry);
                                continue;
                            }
                            Ok(None) => {}
                            Err(e) if e.is_unavailable() => {
                                opts.ui.println(&format!("warning: the remote is unavailable ({e}); going on without it"));
                                remote = None;
                            }
                            Err(e) => opts.ui.println(&format!("[{}] the remote's entry is unusable ({e}); computing", node.id)),
                        }
                    }
                }
                if !targets[i] {
                    if opts.remote.is_some() {
                        // Without a remote the run refuses to start (Blocked); with one, the
                        // gap is only known now, and it fails the run just as clearly.
                        state[i] = State::Failed {
                            key: Some(key),
                            comps: Some(comps),
                            error: "needed, but not selected and in neither the cache nor the remote; select it too".into(),
                            seconds: 0.0,
                        };
                        failed_any = true;
                    } else {
                        state[i] = State::Skipped { note: "not selected, and no longer in the cache".into() };
                    }
                    continue;
                }
                state[i] = State::Ready { key, comps };
            }

            let stopping = opts.cancel.is_cancelled() || (failed_any && !opts.keep_going);
            if !stopping {
                for i in 0..n {
                    if running.len() >= opts.jobs.max(1) {
                        break;
                    }
                    let State::Ready { key, comps } = &state[i] else { continue };
                    if !can_start(p.nodes[i].resource, &running, p) {
                        continue;
                    }
                    let (key, comps) = (*key, comps.clone());
                    let job = Job {
                        index: i,
                        node: &p.nodes[i],
                        key,
                        comps: comps.clone(),
                        forced: forced[i],
                        inputs: input_artifacts(p, i, &state, store),
                        remote_inputs: p.nodes[i]
                            .inputs
                            .iter()
                            .filter_map(|e| match &state[e.from] {
                                State::Done { remote: Some(entry), .. } => Some((e.port.clone(), (**entry).clone())),
                                _ => None,
                            })
                            .collect(),
                        remote: remote.clone(),
                        producer_keys: p.nodes[i]
                            .inputs
                            .iter()
                            .filter_map(|e| match &state[e.from] {
                                State::Done { key, .. } => Some((e.port.clone(), (e.from, *key))),
                                _ => None,
                            })
                            .collect(),
                        store,
                        device: opts.device,
                        cancel: opts.cancel.clone(),
                        ui: opts.ui.clone(),
                        verified: verified.clone(),
                        lines: Arc::default(),
                    };
                    state[i] = State::Running { key, comps };
                    running.push(i);
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let (index, lines) = (job.index, job.lines.clone());
                        let result = job.execute();
                        let lines = lines.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
                        let _ = tx.send((index, result, lines));
                    });
                }
            }

            if running.is_empty() {
                let ready_left = state.iter().any(|s| matches!(s, State::Ready { .. }));
                if stopping || !ready_left {
                    let note = if opts.cancel.is_cancelled() { "interrupted" } else { "the run stopped after a failure" };
                    for s in state.iter_mut() {
                        if matches!(s, State::Waiting | State::Ready { .. }) {
                            *s = State::Skipped { note: note.into() };
                        }
                    }
                    break;
                }
            }

            let Ok((i, result, lines)) = rx.recv_timeout(Duration::from_millis(50)) else { continue };
            running.retain(|&r| r != i);
            logs[i] = lines;
            let (key, comps) = match &state[i] {
                State::Running { key, comps } => (*key, comps.clone()),
                _ => unreachable!("a result for a node that was not running"),
            };
            let id = &p.nodes[i].id;
            match result {
                WorkResult::Ran { outputs, seconds, rows } => {
                    forced[i] = false;
                    opts.ui.println(&format!("[{id}] ran in {}", human_seconds(seconds)));
                    let note = (!rows.is_empty()).then(|| rows.values().map(|c| c.to_string()).collect::<Vec<_>>().join("; "));
                    row_counts[i] = rows;
                    state[i] = State::Done { status: NodeStatus::Ran, key, comps, outputs, seconds, note, remote: None };
                }
                WorkResult::CachedByOther { entry } => {
                    state[i] = State::cached(key, comps, entry, Some("computed by another dagrun process meanwhile".into()));
                }
                WorkResult::Failed { error, seconds } => {
                    opts.ui.println(&format!("[{id}] failed: {error}"));
                    failed_any = true;
                    state[i] = State::Failed { key: Some(key), comps: Some(comps), error, seconds };
                }
                WorkResult::Cancelled { seconds } => {
                    state[i] = State::Failed { key: Some(key), comps: Some(comps), error: "interrupted".into(), seconds };
                }
                WorkResult::InputDamaged { producer, .. } | WorkResult::InputNotFetched { producer, .. } => {
                    let up = &p.nodes[producer].id;
                    let what = match result {
                        WorkResult::InputDamaged { what, .. } => {
                            opts.ui.println(&format!("[{id}] input from `{up}` is damaged ({what}); recomputing `{up}`"));
                            what
                        }
                        WorkResult::InputNotFetched { why, .. } => {
                            opts.ui.println(&format!("[{id}] input from `{up}` could not be downloaded ({why}); computing `{up}` here"));
                            why
                        }
                        _ => unreachable!(),
                    };
                    resets[producer] += 1;
                    if resets[producer] > 2 || !targets[producer] {
                        failed_any = true;
                        state[producer] = State::Failed {
                            key: None,
                            comps: None,
                            error: format!("its cached output is damaged ({what}) and could not be recomputed"),
                            seconds: 0.0,
                        };
                        state[i] = State::Skipped { note: format!("upstream `{up}` failed") };
                    } else {
                        forced[producer] = true;
                        state[producer] = State::Waiting;
                        state[i] = State::Waiting;
                    }
                }
            }
        }
    });

    let outcome = if opts.cancel.is_cancelled() {
        RunOutcome::Interrupted
    } else if state.iter().any(|s| matches!(s, State::Failed { .. })) {
        RunOutcome::Failed
    } else {
        RunOutcome::Ok
    };
    let nodes: Vec<NodeOutcome> = p.nodes.iter().zip(state).zip(row_counts).map(|((node, s), rows)| NodeOutcome { rows, ..outcome_of(node, s) }).collect();
    let report = RunReport { pipeline: p.name.clone(), run_id: run_id.clone(), outcome, seconds: started.elapsed().as_secs_f64(), nodes };
    let record = RunRecord {
        pipeline: p.name.clone(),
        spec: p.file.display().to_string(),
        run_id,
        started_unix_ms: started_ms,
        seconds: report.seconds,
        outcome,
        nodes: report
            .nodes
            .iter()
            .zip(logs)
            .map(|(o, log)| NodeRecord {
                id: o.id.clone(),
                kind: o.kind.clone(),
                status: o.status,
                key: o.key,
                components: o.components.clone(),
                outputs: o.outputs.clone(),
                seconds: o.seconds,
                note: o.error.clone().or_else(|| o.note.clone()),
                log,
            })
            .collect(),
    };
    record::save(store, &record)?;
    Ok(report)
}

fn outcome_of(node: &Node, s: State) -> NodeOutcome {
    let mut o = NodeOutcome {
        id: node.id.clone(),
        kind: node.kind.name().to_string(),
        status: NodeStatus::Skipped,
        key: None,
        digest: None,
        outputs: BTreeMap::new(),
        seconds: 0.0,
        error: None,
        note: None,
        rows: BTreeMap::new(),
        components: None,
    };
    match s {
        State::Done { status, key, comps, outputs, seconds, note, remote } => {
            let note = note.or_else(|| remote.map(|_| "in the remote; not downloaded".to_string()));
            o.status = status;
            o.key = Some(key);
            o.digest = node.outputs.first().and_then(|p| outputs.get(&p.name).copied());
            o.outputs = outputs;
            o.seconds = seconds;
            o.note = note;
            o.components = Some(comps);
        }
        State::Failed { key, comps, error, seconds } => {
            o.status = NodeStatus::Failed;
            o.key = key;
            o.components = comps;
            o.error = Some(error);
            o.seconds = seconds;
        }
        State::Skipped { note } => o.note = Some(note),
        State::Waiting | State::Ready { .. } | State::Running { .. } => o.note = Some("did not run".into()),
    }
    o
}

fn can_start(resource: Resource, running: &[usize], p: &Pipeline) -> bool {
    let busy = |r: Resource| running.iter().any(|&j| p.nodes[j].resource == r);
    match resource {
        Resource::Exclusive => running.is_empty(),
        Resource::Gpu => !busy(Resource::Gpu) && !busy(Resource::Exclusive),
        Resource::Cpu => !busy(Resource::Exclusive),
    }
}

fn input_artifacts(p: &Pipeline, i: usize, state: &[State], store: &Store) -> BTreeMap<String, InputArtifact> {
    let node = &p.nodes[i];
    node.inputs
        .iter()
        .filter_map(|e| match &state[e.from] {
            State::Done { outputs, .. } => Some((e.port.clone(), InputArtifact::of(node, &e.port, outputs[&e.from_port], store)?)),
            _ => None,
        })
        .collect()
}

/// One node's execution on a worker thread.
struct Job<'a> {
    index: usize,
    node: &'a Node,
    key: Digest,
    comps: KeyComponents,
    forced: bool,
    inputs: BTreeMap<String, InputArtifact>,
    /// Input port -> (producer index, producer key).
    producer_keys: BTreeMap<String, (usize, Digest)>,
    /// Input port -> the remote entry of its producer, for inputs only in the remote.
    remote_inputs: BTreeMap<String, ActionEntry>,
    remote: Option<Arc<dyn RemoteCache>>,
    store: &'a Store,
    device: Device,
    cancel: CancelToken,
    ui: Arc<Ui>,
    verified: Arc<Mutex<HashSet<Digest>>>,
    /// The lines the node logs (shared with its context).
    lines: Arc<Mutex<Vec<String>>>,
}

impl Job<'_> {
    fn execute(self) -> WorkResult {
        let started = Instant::now();
        let failed = |error: String| WorkResult::Failed { error, seconds: started.elapsed().as_secs_f64() };

        if let Some(stop) = self.fetch_remote_inputs() {
            return stop;
        }

        // Inputs are rehashed once per run before anything reads them.
        for (port, a) in &self.inputs {
            if self.verified.lock().map(|v| v.contains(&a.digest)).unwrap_or(false) {
                continue;
            }
            match self.store.check_artifact(&a.digest, Check::Full) {
                Ok(_) => {
                    if let Ok(mut v) = self.verified.lock() {
                        v.insert(a.digest);
                    }
                }
                Err(damage) => {
                    let (producer, producer_key) = self.producer_keys[port];
                    if let Err(e) = self.store.quarantine(&a.digest).and_then(|_| self.store.remove_action(&producer_key)) {
                        return failed(format!("input `{port}` is damaged ({damage}) and could not be set aside: {e}"));
                    }
                    return WorkResult::InputDamaged { producer, what: format!("{} {damage}", a.digest.short()) };
                }
            }
        }

        let id = &self.node.id;
        let ui = self.ui.clone();
        let cancel = self.cancel.clone();
        let _lock = match self.store.lock_key(&self.key, &|| cancel.is_cancelled(), &mut |pid| {
            let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            ui.println(&format!("[{id}] waiting: another dagrun{who} is computing this node"));
        }) {
            Ok(l) => l,
            Err(CacheError::Interrupted) => return WorkResult::Cancelled { seconds: started.elapsed().as_secs_f64() },
            Err(e) => return failed(e.to_string()),
        };
        if !self.forced {
            if let Lookup::Hit(entry) = lookup(self.store, &self.key, Check::Quick) {
                return WorkResult::CachedByOther { entry };
            }
        }

        match self.compute(started) {
            Ok(r) => r,
            Err(e) => failed(e),
        }
    }

    /// Downloads the inputs that are only in the remote (verified on the way in), and records
    /// a producer's entry locally once all its outputs are here. `Some` when the node cannot
    /// start: an input could not be downloaded.
    fn fetch_remote_inputs(&self) -> Option<WorkResult> {
        let Some(remote) = &self.remote else { return None };
        for (port, entry) in &self.remote_inputs {
            let Some(a) = self.inputs.get(port) else { continue };
            if self.store.check_artifact(&a.digest, Check::Quick).is_err() {
                let t0 = Instant::now();
                let (producer, _) = self.producer_keys[port];
                if let Err(e) = remote.fetch_artifact(self.store, &a.digest) {
                    return Some(WorkResult::InputNotFetched { producer, why: e.to_string() });
                }
                let secs = t0.elapsed().as_secs_f64();
                let size = self.store.artifact_info(&a.digest).map(|i| i.size).unwrap_or(0);
                self.ui.println(&format!(
                    "[{}] downloaded input `{port}` ({}) from the remote in {} ({}/s)",
                    self.node.id,
                    crate::ui::human_bytes(size),
                    human_seconds(secs),
                    crate::ui::human_bytes((size as f64 / secs.max(1e-6)) as u64)
                ));
                if let Ok(mut v) = self.verified.lock() {
                    v.insert(a.digest);
                }
            }
            if entry.outputs.values().all(|d| self.store.check_artifact(d, Check::Quick).is_ok()) {
                let _ = self.store.put_action(entry);
            }
        }
        None
    }

    fn compute(&self, started: Instant) -> Result<WorkResult, String> {
        let store = self.store;
        let env = NodeEnv { store, device: self.device, ui: &self.ui, cancel: &self.cancel, remote: self.remote.clone() };
        let Staged { ctx, scratch, outputs: mut stagings } = NodeContext::staged(self.node, env, self.lines.clone(), None).map_err(|e| e.to_string())?;
        let inputs = Inputs::new(self.inputs.clone());
        let result = catch_unwind(AssertUnwindSafe(|| self.node.kind.run(&self.node.params, &ctx, &inputs)));
        ctx.progress.finish();
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Err(panic) => return Err(format!("the node panicked: {}", panic_message(&*panic))),
            Ok(Err(e)) => {
                if e.downcast_ref::<Cancelled>().is_some() || self.cancel.is_cancelled() {
                    return Ok(WorkResult::Cancelled { seconds });
                }
                return Err(with_disk_hint(error_chain(&*e), &*e));
            }
            Ok(Ok(())) => {}
        }
        let unwritten = ctx.unwritten();
        if !unwritten.is_empty() {
            return Err(format!("kind `{}` finished without writing output {}", self.node.kind.name(), unwritten.join(", ")));
        }
        let rows = ctx.rows_used(false);
        let row_counts = ctx.row_counts();
        drop(ctx);
        drop(scratch);
        let mut digests = BTreeMap::new();
        for port in &self.node.outputs {
            let staging = stagings.remove(&port.name).expect("staged");
            let format = if port.ty.is_table { "table" } else if port.ty.tables.is_empty() { "files" } else { "tables" };
            let manifest = serde_json::json!({ "type": port.ty.name, "format": format, "tables": port.ty.table_names() });
            std::fs::write(staging.path().join(MANIFEST_FILE), format!("{manifest}\n"))
                .map_err(|e| CacheError::io(staging.path(), e).to_string())?;
            let published = store.publish(staging).map_err(|e| e.to_string())?;
            if let Ok(mut v) = self.verified.lock() {
                v.insert(published.digest);
            }
            digests.insert(port.name.clone(), published.digest);
        }
        let entry = ActionEntry {
            key: self.key,
            kind: self.node.kind.name().to_string(),
            outputs: digests.clone(),
            components: serde_json::to_value(&self.comps).unwrap_or_default(),
            created_unix_ms: unix_ms(),
            seconds,
            log: self.lines.lock().map(|l| l.clone()).unwrap_or_default(),
            rows,
        };
        store.put_action(&entry).map_err(|e| e.to_string())?;
        if let Some(remote) = self.remote.as_ref().filter(|r| r.write_through()) {
            // The result is safe locally; a failed upload is a warning, not a failed node.
            if let Err(e) = remote.push_entry(store, &entry) {
                self.ui.println(&format!("[{}] warning: could not push to the remote: {e}", self.node.id));
            }
        }
        Ok(WorkResult::Ran { outputs: digests, seconds, rows: row_counts })
    }
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into())
}

/// An error and its causes, joined with ": ".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.last().is_some_and(|l| l.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Adds what to do when a node failed because the disk is full (a kind's own writes report
/// a bare "No space left on device").
fn with_disk_hint(message: String, e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
                return format!(
                    "{message} (the disk holding the cache is full: free space, run `dagrun cache gc`, or pass --cache-dir)"
                );
            }
        }
        cur = err.source();
    }
    message
}

/// Seconds for people: `0.42 s`, `12.3 s`, `4m 05s`.
pub fn human_seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let m = (s / 60.0).floor();
        format!("{}m {:02}s", m as u64, (s - m * 60.0).round() as u64)
    }
}

#[allow(dead_code)]
fn _assert_send(e: BoxError) -> BoxError {
    e
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::testkit::registry;

    fn pipeline(text: &str) -> Pipeline {
        Pipeline::from_str(Path::new("p.yaml"), text, &registry(), &[]).unwrap()
    }

    fn opts(p: &Pipeline) -> RunOptions {
        RunOptions {
            jobs: 2,
            keep_going: false,
            force: BTreeSet::new(),
            targets: vec![true; p.nodes.len()],
            device: Device::Cpu,
            cancel: CancelToken::new(),
            ui: Ui::silent(),
            verify: false,
            remote: None,
        }
    }

    fn statuses(r: &RunReport) -> Vec<(String, NodeStatus)> {
        r.nodes.iter().map(|n| (n.id.clone(), n.status)).collect()
    }

    const CHAIN: &str = "pipeline: p\nnodes:\n  s: { kind: src, params: { n: 3 } }\n  m: { kind: map, inputs: { in: s }, params: { add: 1 } }\n  r: { kind: map, inputs: { in: m } }\n";

    /// A remote that is another local store (the object-store remote is tested end to end).
    #[derive(Debug)]
    struct StoreRemote {
        inner: Store,
        fail_fetch: bool,
        fetched: Mutex<Vec<Digest>>,
    }

    impl StoreRemote {
        fn at(dir: &Path, fail_fetch: bool) -> Arc<StoreRemote> {
            Arc::new(StoreRemote { inner: Store::open(dir).unwrap(), fail_fetch, fetched: Mutex::default() })
        }
    }

    impl RemoteCache for StoreRemote {
        fn describe(&self) -> String {
            "test remote".into()
        }
        fn get_action(&self, key: &Digest) -> Result<Option<ActionEntry>, dagrun_cache::RemoteError> {
            Ok(self.inner.get_action(key)?)
        }
        fn fetch_artifact(&self, store: &Store, digest: &Digest) -> Result<(), dagrun_cache::RemoteError> {
            if self.fail_fetch {
                return Err(dagrun_cache::RemoteError::Corrupt { object: digest.short(), why: "test".into() });
            }
            self.fetched.lock().unwrap().push(*digest);
            copy_artifact(&self.inner, store, digest)
        }
        fn push_entry(&self, store: &Store, entry: &ActionEntry) -> Result<(), dagrun_cache::RemoteError> {
            for d in entry.outputs.values() {
                copy_artifact(store, &self.inner, d)?;
            }
            for (kind, keys) in &entry.rows {
                let rows: Vec<_> = keys.iter().filter_map(|k| store.rows(kind).get(k).map(|b| (*k, b))).collect();
                self.put_rows(kind, &rows)?;
            }
            Ok(self.inner.put_action(entry)?)
        }
        fn write_through(&self) -> bool {
            true
        }
        fn get_rows(&self, kind: &str, keys: &[Digest]) -> Result<dagrun_cache::RowsFound, dagrun_cache::RemoteError> {
            Ok((keys.iter().map(|k| self.inner.rows(kind).get(k)).collect(), vec![]))
        }
        fn put_rows(&self, kind: &str, rows: &[(Digest, Vec<u8>)]) -> Result<(), dagrun_cache::RemoteError> {
            for (k, b) in rows {
                self.inner.rows(kind).put(k, b).map_err(|e| dagrun_cache::CacheError::io(self.inner.root(), e))?;
            }
            Ok(())
        }
    }

    fn copy_artifact(from: &Store, to: &Store, d: &Digest) -> Result<(), dagrun_cache::RemoteError> {
        let listing = from.check_artifact(d, Check::Full).map_err(|e| dagrun_cache::RemoteError::Missing { object: e.to_string() })?;
        let stage = to.stage()?;
        for f in &listing.files {
            let dest = stage.path().join(&f.path);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(from.artifact_dir(d).join(&f.path), dest).unwrap();
        }
        to.publish(stage)?;
        Ok(())
    }

    #[test]
    fn a_remote_is_read_through_and_only_needed_inputs_are_downloaded() {
        let dir = tempfile::tempdir().unwrap();
        let remote = StoreRemote::at(&dir.path().join("remote"), false);
        let p = pipeline(CHAIN);
        // Alice computes and writes through.
        let alice = Store::open(dir.path().join("alice")).unwrap();
        let mut o = opts(&p);
        o.remote = Some(remote.clone());
        let first = run(&p, &alice, &o).unwrap();
        assert!(first.nodes.iter().all(|n| n.status == NodeStatus::Ran));
        // Bob finds everything in the remote and downloads nothing.
        let bob = Store::open(dir.path().join("bob")).unwrap();
        let second = run(&p, &bob, &o).unwrap();
        assert!(second.nodes.iter().all(|n| n.status == NodeStatus::Remote), "{:?}", statuses(&second));
        assert_eq!(second.nodes[2].digest, first.nodes[2].digest);
        assert!(remote.fetched.lock().unwrap().is_empty());
        assert!(bob.artifacts().unwrap().is_empty());
        // A change to `r` runs `r` alone and downloads only its input (m's output).
        let p2 = pipeline(&CHAIN.replace("r: { kind: map, inputs: { in: m } }", "r: { kind: map, inputs: { in: m }, params: { add: 5 } }"));
        let mut o2 = opts(&p2);
        o2.remote = Some(remote.clone());
        let third = run(&p2, &bob, &o2).unwrap();
        assert_eq!(
            statuses(&third),
            vec![("s".into(), NodeStatus::Remote), ("m".into(), NodeStatus::Remote), ("r".into(), NodeStatus::Ran)]
        );
        assert_eq!(*remote.fetched.lock().unwrap(), vec![first.nodes[1].digest.unwrap()]);
        // m's entry is now local (its only output is); s's is not.
        assert!(bob.get_action(&first.nodes[1].key.unwrap()).unwrap().is_some());
        assert!(bob.get_action(&first.nodes[0].key.unwrap()).unwrap().is_none());
    }

    #[test]
    fn an_unselected_input_in_neither_cache_fails_the_run_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let remote = StoreRemote::at(&dir.path().join("remote"), false);
        let p = pipeline(CHAIN);
        let mut o = opts(&p);
        o.targets = vec![false, false, true];
        o.remote = Some(remote);
        let r = run(&p, &Store::open(dir.path().join("bob")).unwrap(), &o).unwrap();
        assert_eq!(r.outcome, RunOutcome::Failed);
        assert_eq!(r.nodes[0].status, NodeStatus::Failed);
        assert!(r.nodes[0].error.as_deref().unwrap().contains("in neither the cache nor the remote"), "{:?}", r.nodes[0]);
        assert_eq!(r.nodes[2].status, NodeStatus::Skipped);
    }

    #[test]
    fn an_input_that_cannot_be_downloaded_is_computed_here() {
        let dir = tempfile::tempdir().unwrap();
        let good = StoreRemote::at(&dir.path().join("remote"), false);
        let p = pipeline(CHAIN);
        let mut o = opts(&p);
        o.remote = Some(good);
        run(&p, &Store::open(dir.path().join("alice")).unwrap(), &o).unwrap();
        let bad = StoreRemote::at(&dir.path().join("remote"), true);
        let p2 = pipeline(&CHAIN.replace("r: { kind: map, inputs: { in: m } }", "r: { kind: map, inputs: { in: m }, params: { add: 5 } }"));
        let mut o2 = opts(&p2);
        o2.remote = Some(bad);
        let r = run(&p2, &Store::open(dir.path().join("bob")).unwrap(), &o2).unwrap();
        // m's output cannot be fetched, so m is computed here, and so is s, which m needs and
        // which cannot be fetched either.
        assert_eq!(r.outcome, RunOutcome::Ok);
        assert_eq!(
            statuses(&r),
            vec![("s".into(), NodeStatus::Ran), ("m".into(), NodeStatus::Ran), ("r".into(), NodeStatus::Ran)]
        );
    }

    #[test]
    fn second_run_is_cached_and_records_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pipeline(CHAIN);
        let first = run(&p, &store, &opts(&p)).unwrap();
        assert!(first.nodes.iter().all(|n| n.status == NodeStatus::Ran), "{:?}", statuses(&first));
        let second = run(&p, &store, &opts(&p)).unwrap();
        assert!(second.nodes.iter().all(|n| n.status == NodeStatus::Cached));
        assert_eq!(first.nodes[2].digest, second.nodes[2].digest);
        let records = record::latest(&store, "p", 10);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].run_id, second.run_id);
    }

    #[test]
    fn identical_output_cuts_off_downstream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(&pipeline(CHAIN), &store, &opts(&pipeline(CHAIN))).unwrap();
        // Forcing `m` recomputes it; its output is the same, so `r` stays cached.
        let p = pipeline(CHAIN);
        let mut o = opts(&p);
        o.force.insert(p.index_of("m").unwrap());
        let r = run(&p, &store, &o).unwrap();
        assert_eq!(
            statuses(&r),
            vec![("s".into(), NodeStatus::Cached), ("m".into(), NodeStatus::Ran), ("r".into(), NodeStatus::Cached)]
        );
    }

    #[test]
    fn a_damaged_input_is_recomputed_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pipeline(CHAIN);
        let first = run(&p, &store, &opts(&p)).unwrap();
        let s_digest = first.nodes[0].digest.unwrap();
        let file = store.artifact_dir(&s_digest).join("table.parquet");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&file, bytes).unwrap();
        // `m` must run (forced), reads `s`, finds it damaged: `s` is recomputed first.
        let mut o = opts(&p);
        o.force.insert(p.index_of("m").unwrap());
        let r = run(&p, &store, &o).unwrap();
        assert_eq!(r.outcome, RunOutcome::Ok);
        assert_eq!(r.nodes[0].status, NodeStatus::Ran);
        assert_eq!(r.nodes[0].digest, Some(s_digest));
        assert!(store.check_artifact(&s_digest, Check::Full).is_ok());
    }

    #[test]
    fn selections_and_blocked_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pipeline(CHAIN);
        let mut o = opts(&p);
        o.targets = plan::Selection { only: vec!["r".into()], ..Default::default() }.targets(&p).unwrap();
        match run(&p, &store, &o) {
            Err(RunError::Blocked(ids)) => assert_eq!(ids, vec!["s".to_string(), "m".to_string()]),
            other => panic!("expected blocked, got {other:?}"),
        }
        o.targets = plan::Selection { until: vec!["m".into()], ..Default::default() }.targets(&p).unwrap();
        let r = run(&p, &store, &o).unwrap();
        assert_eq!(r.nodes[2].status, NodeStatus::Skipped);
        assert_eq!(r.nodes[1].status, NodeStatus::Ran);
        o.targets = plan::Selection { only: vec!["r".into()], ..Default::default() }.targets(&p).unwrap();
        let r = run(&p, &store, &o).unwrap();
        assert_eq!(statuses(&r)[2], ("r".into(), NodeStatus::Ran));
    }

    #[test]
    fn multiple_outputs_are_published_separately() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pipeline("pipeline: p\nnodes:\n  pr: { kind: pair }\n  rd: { kind: reader, inputs: { text: pr.text } }\n");
        let r = run(&p, &store, &opts(&p)).unwrap();
        assert_eq!(r.nodes[0].outputs.len(), 2);
        let out = store.artifact_dir(&r.nodes[1].outputs["out"]).join("t.txt");
        assert_eq!(std::fs::read_to_string(out).unwrap(), "HI");
    }
}
