//! A resolved pipeline: every node's kind found, params parsed to their canonical form, ports
//! connected and type-checked, and the graph checked for cycles and put in topological order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{Loc, Origin, SpecError, SpecErrors};
use crate::key::derive_seed;
use crate::kind::{ArtifactType, DynKind, ParamError, Port, Registry, Resource};
use crate::spec::{self, Override, SpecFile};
use crate::suggest;

/// A connected input.
#[derive(Clone, Debug)]
pub struct Edge {
    /// The input port on this node.
    pub port: String,
    /// Index of the producing node in `Pipeline::nodes`.
    pub from: usize,
    /// The output port on the producer.
    pub from_port: String,
    pub ty: ArtifactType,
}

/// A node ready to plan and run.
#[derive(Clone)]
pub struct Node {
    pub id: String,
    pub kind: Arc<dyn DynKind>,
    /// Canonical params (defaults filled in).
    pub params: serde_json::Value,
    pub inputs: Vec<Edge>,
    /// Declared input ports (connected or not).
    pub input_ports: Vec<Port>,
    pub outputs: Vec<Port>,
    pub resource: Resource,
    /// The derived seed (pipeline seed + node id).
    pub seed: u64,
    /// External files the node reads; their digests join its key.
    pub files: Vec<PathBuf>,
    pub loc: Option<Loc>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("kind", &self.kind.name()).finish()
    }
}

/// A checked pipeline, nodes in topological order (ties in file order).
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub name: String,
    pub file: PathBuf,
    pub seed: u64,
    pub cache: Option<String>,
    /// The spec's shared cache, if any.
    pub remote: Option<crate::spec::RemoteSetting>,
    pub nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

impl Pipeline {
    /// Reads, parses and resolves a spec file.
    pub fn load(path: &Path, registry: &Registry, overrides: &[Override]) -> Result<Pipeline, SpecErrors> {
        let schema = |kind: &str| registry.get(kind).map(|k| k.params_schema());
        let file = spec::read(path, overrides, &schema)?;
        resolve(&file, registry)
    }

    /// Parses and resolves spec text (`path` names it in messages).
    pub fn from_str(path: &Path, text: &str, registry: &Registry, overrides: &[Override]) -> Result<Pipeline, SpecErrors> {
        let schema = |kind: &str| registry.get(kind).map(|k| k.params_schema());
        let file = spec::parse(path, text, overrides, &schema)?;
        resolve(&file, registry)
    }

    /// The index of a node by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.index_of(id).map(|i| &self.nodes[i])
    }

    /// Node ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> + Clone {
        self.nodes.iter().map(|n| n.id.as_str())
    }

    /// Indices of nodes that consume an output of node `i`.
    pub fn consumers(&self, i: usize) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.iter().any(|e| e.from == i))
            .map(|(j, _)| j)
            .collect()
    }

    /// `i` and every node it depends on, transitively.
    pub fn ancestors_of(&self, i: usize) -> Vec<bool> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![i];
        while let Some(j) = stack.pop() {
            if !std::mem::replace(&mut seen[j], true) {
                stack.extend(self.nodes[j].inputs.iter().map(|e| e.from));
            }
        }
        seen
    }

    /// `i` and every node that depends on it, transitively.
    pub fn descendants_of(&self, i: usize) -> Vec<bool> {
        let mut seen = vec![false; self.nodes.len()];
        seen[i] = true;
        // Topological order: one forward pass suffices.
        for j in i + 1..self.nodes.len() {
            if self.nodes[j].inputs.iter().any(|e| seen[e.from]) {
                seen[j] = true;
            }
        }
        seen
    }

    /// An error about node `id`, naming a command-line argument (for selections).
    pub fn unknown_node(&self, arg: &str, id: &str) -> SpecError {
        SpecError::arg(arg, format!("unknown node `{id}`")).hint(suggest::hint(id, self.ids()))
    }
}

fn param_error(file: &SpecFile, node: &str, e: &ParamError) -> SpecError {
    if let Some((_, _, arg)) = file
        .overridden
        .iter()
        .find(|(n, p, _)| n == node && !e.path.is_empty() && e.path.starts_with(p))
    {
        return SpecError::arg(arg, e.message.clone()).node(node);
    }
    let mut path = vec!["nodes", node, "params"];
    path.extend(e.path.iter().map(String::as_str));
    let field = if e.path.is_empty() { String::new() } else { format!("params.{}: ", e.path.join(".")) };
    let mut err = file.error_at(&path, format!("{field}{}", e.message)).node(node);
    // Point an unknown-field error at its key, with a close match.
    if let Some(field) = e.message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        err = err.hint(suggest::unknown_field_hint(&e.message));
        if let Some(l) = file.locations.key(&[&path[..3], &[field]].concat()) {
            err.origin = Origin::File { path: file.path.clone(), loc: Some(l) };
        }
    }
    err
}

/// Resolves a parsed spec into a checked pipeline, reporting every problem found.
pub fn resolve(file: &SpecFile, registry: &Registry) -> Result<Pipeline, SpecErrors> {
    let raw = &file.raw;
    let mut errors = Vec::new();
    let ids: Vec<&str> = raw.nodes.keys().map(String::as_str).collect();

    // Kinds, params and ports.
    let mut partial: Vec<Option<(Arc<dyn DynKind>, serde_json::Value, crate::kind::Signature)>> = Vec::new();
    for (id, node) in &raw.nodes {
        let Some(kind) = registry.get(&node.kind) else {
            let hint = if registry.is_empty() {
                Some("this dagrun has no node kinds registered".to_string())
            } else {
                suggest::hint(&node.kind, registry.names())
            };
            errors.push(file.error_at(&["nodes", id, "kind"], format!("unknown kind `{}`", node.kind)).node(id).hint(hint));
            partial.push(None);
            continue;
        };
        let params_json = if node.params.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            match serde_json::to_value(&node.params) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(file.error_at(&["nodes", id, "params"], format!("params cannot be read: {e}")).node(id));
                    partial.push(None);
                    continue;
                }
            }
        };
        let canonical = match kind.canonical_params(&params_json) {
            Ok(c) => c,
            Err(e) => {
                errors.push(param_error(file, id, &e));
                partial.push(None);
                continue;
            }
        };
        let connected: Vec<String> = node.inputs.keys().cloned().collect();
        match kind.signature_for(&canonical, &connected) {
            Ok(sig) => {
                let missing: Vec<String> =
                    kind.files(&canonical).into_iter().filter(|f| !f.is_file()).map(|f| format!("`{}`", f.display())).collect();
                if missing.is_empty() {
                    partial.push(Some((kind.clone(), canonical, sig)));
                } else {
                    let mut msg = format!("{} not found (paths are relative to the working directory)", missing.join(", "));
                    if let Some(hint) = kind.files_hint(&canonical) {
                        msg.push_str("; ");
                        msg.push_str(&hint);
                    }
                    errors.push(file.error_at(&["nodes", id, "params"], msg).node(id));
                    partial.push(None);
                }
            }
            Err(e) => {
                errors.push(param_error(file, id, &e));
                partial.push(None);
            }
        }
    }

    // Edges.
    let position: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut edges: Vec<Vec<Edge>> = vec![Vec::new(); ids.len()];
    for (i, (id, node)) in raw.nodes.iter().enumerate() {
        let Some((kind, _, sig)) = &partial[i] else { continue };
        for (port, source) in &node.inputs {
            let at = |msg: String| file.error_at(&["nodes", id, "inputs", port], msg).node(id);
            let Some(in_port) = sig.inputs.iter().find(|p| &p.name == port) else {
                let names: Vec<&str> = sig.inputs.iter().map(|p| p.name.as_str()).collect();
                let hint = if names.is_empty() {
                    Some(format!("kind `{}` takes no inputs", kind.name()))
                } else {
                    suggest::hint(port, names)
                };
                let mut e = at(format!("kind `{}` has no input port `{port}`", kind.name())).hint(hint);
                if let Some(l) = file.locations.key(&["nodes", id, "inputs", port]) {
                    e.origin = Origin::File { path: file.path.clone(), loc: Some(l) };
                }
                errors.push(e);
                continue;
            };
            let (src_id, src_port) = match source.split_once('.') {
                Some((n, p)) => (n, Some(p)),
                None => (source.as_str(), None),
            };
            let Some(&from) = position.get(src_id) else {
                errors.push(at(format!("input `{port}` names unknown node `{src_id}`")).hint(suggest::hint(src_id, ids.iter().copied())));
                continue;
            };
            if from == i {
                errors.push(at(format!("input `{port}` reads the node's own output")));
                continue;
            }
            let Some((src_kind, _, src_sig)) = &partial[from] else { continue };
            let out = match src_port {
                Some(p) => match src_sig.outputs.iter().find(|o| o.name == p) {
                    Some(o) => o,
                    None => {
                        let names: Vec<&str> = src_sig.outputs.iter().map(|o| o.name.as_str()).collect();
                        errors.push(
                            at(format!("node `{src_id}` (kind `{}`) has no output port `{p}`", src_kind.name()))
                                .hint(suggest::hint(p, names)),
                        );
                        continue;
                    }
                },
                None => match src_sig.outputs.as_slice() {
                    [only] => only,
                    outs => {
                        let names: Vec<String> = outs.iter().map(|o| format!("`{src_id}.{}`", o.name)).collect();
                        errors.push(at(format!(
                            "node `{src_id}` has {} outputs; name one: {}",
                            outs.len(),
                            names.join(", ")
                        )));
                        continue;
                    }
                },
            };
            if !in_port.ty.accepts(&out.ty) {
                let expected = if in_port.ty.is_any_table() { "a table".to_string() } else { in_port.ty.to_string() };
                errors.push(at(format!(
                    "input `{port}` expects {expected}, but `{src_id}.{}` is {}",
                    out.name, out.ty
                )));
                continue;
            }
            edges[i].push(Edge { port: port.clone(), from, from_port: out.name.clone(), ty: in_port.ty });
        }
        for p in sig.inputs.iter().filter(|p| !p.optional) {
            if !node.inputs.contains_key(&p.name) {
                let loc = file.locations.key(&["nodes", id]);
                errors.push(
                    SpecError::at(&file.path, loc, format!("required input `{}` ({}) is not connected", p.name, p.ty))
                        .node(id)
                        .hint(Some(format!("add `inputs: {{ {}: NODE }}`", p.name))),
                );
            }
        }
    }

    // Cycles.
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let gi: Vec<NodeIndex> = (0..ids.len()).map(|i| graph.add_node(i)).collect();
    for (i, es) in edges.iter().enumerate() {
        for e in es {
            graph.update_edge(gi[e.from], gi[i], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        if scc.len() > 1 {
            let members: Vec<usize> = scc.iter().map(|n| graph[*n]).collect();
            let cycle = find_cycle(&members, &edges);
            let names: Vec<&str> = cycle.iter().map(|&i| ids[i]).collect();
            let first = names[0];
            errors.push(
                file.error_at(&["nodes", first], format!("the graph has a cycle: {} -> {first}", names.join(" -> ")))
                    .node(first),
            );
        }
    }

    if !errors.is_empty() {
        errors.sort_by_key(|e| match &e.origin {
            Origin::File { loc: Some(l), .. } => (l.line, l.col),
            _ => (0, 0),
        });
        return Err(SpecErrors(errors));
    }

    // Topological order, ties in file order.
    let n = ids.len();
    let mut indegree: Vec<usize> = edges.iter().map(|es| es.iter().map(|e| e.from).collect::<std::collections::BTreeSet<_>>().len()).collect();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, es) in edges.iter().enumerate() {
        let mut froms: Vec<usize> = es.iter().map(|e| e.from).collect();
        froms.sort();
        froms.dedup();
        for f in froms {
            consumers[f].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &c in &consumers[i] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.insert(c);
            }
        }
    }
    let mut new_index = vec![0; n];
    for (pos, &old) in order.iter().enumerate() {
        new_index[old] = pos;
    }
    let mut nodes = Vec::with_capacity(n);
    for &old in &order {
        let id = ids[old];
        let (kind, params, sig) = partial[old].take().expect("resolved");
        let inputs = edges[old]
            .iter()
            .map(|e| Edge { from: new_index[e.from], ..e.clone() })
            .collect();
        nodes.push(Node {
            id: id.to_string(),
            resource: kind.resource(&params),
            files: kind.files(&params),
            kind,
            params,
            inputs,
            input_ports: sig.inputs,
            outputs: sig.outputs,
            seed: derive_seed(raw.seed, id),
            loc: file.locations.key(&["nodes", id]),
        });
    }
    let index = nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect();
    Ok(Pipeline {
        name: raw.pipeline.clone(),
        file: file.path.clone(),
        seed: raw.seed,
        cache: raw.cache.clone(),
        remote: raw.remote.clone(),
        nodes,
        index,
    })
}

/// A cycle through the members of a strongly connected component, as node indices.
fn find_cycle(members: &[usize], edges: &[Vec<Edge>]) -> Vec<usize> {
    let set: std::collections::HashSet<usize> = members.iter().copied().collect();
    let start = *members.iter().min().expect("non-empty");
    // Walk backwards along inputs within the component until a node repeats.
    let mut path = vec![start];
    let mut seen: HashMap<usize, usize> = [(start, 0)].into();
    let mut cur = start;
    loop {
        let next = edges[cur].iter().map(|e| e.from).filter(|f| set.contains(f)).min().expect("in a cycle");
        if let Some(&pos) = seen.get(&next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse(); // producer -> consumer order
            // Start the message at the smallest index for a stable text.
            let min_pos = cycle.iter().enumerate().min_by_key(|(_, &v)| v).map(|(p, _)| p).unwrap_or(0);
            cycle.rotate_left(min_pos);
            return cycle;
        }
        seen.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}
