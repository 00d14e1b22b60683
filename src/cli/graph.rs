//! `dagrun graph`: the pipeline as Graphviz DOT or Mermaid, coloured by what a run would do.

use std::collections::BTreeSet;

use clap::Args;
use dagrun_engine::plan::{plan as make_plan, NodePlan};
use dagrun_engine::Pipeline;

use super::util::{self, CliResult};
use super::{GraphFormat, SpecArgs};

#[derive(Args, Debug)]
pub struct GraphArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}

pub fn graph(a: GraphArgs) -> CliResult {
    let registry = util::registry();
    let pipeline = util::load(&a.spec, &registry)?;
    let store = util::existing_store(&a.spec.cache_dir, Some(&pipeline))?;
    let targets = vec![true; pipeline.nodes.len()];
    let planned = make_plan(&pipeline, store.as_ref(), &targets, &BTreeSet::new());
    let cached: Vec<bool> = planned.iter().map(|p| matches!(p.plan, NodePlan::Cached { .. })).collect();
    print!(
        "{}",
        match a.format {
            GraphFormat::Dot => dot(&pipeline, &cached),
            GraphFormat::Mermaid => mermaid(&pipeline, &cached),
        }
    );
    Ok(0)
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn edge_label(p: &Pipeline, i: usize, port: &str, from: usize, from_port: &str) -> String {
    let single = p.nodes[from].outputs.len() == 1;
    let _ = i;
    if single {
        port.to_string()
    } else {
        format!("{from_port} → {port}")
    }
}

/// Graphviz DOT; cached nodes grey, nodes that would run yellow.
pub fn dot(p: &Pipeline, cached: &[bool]) -> String {
    let mut s = format!("digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n", quote(&p.name));
    for (i, n) in p.nodes.iter().enumerate() {
        let color = if cached[i] { "#e8e8e8" } else { "#fff3b0" };
        s.push_str(&format!("  {} [label={}, fillcolor={}];\n", quote(&n.id), quote(&format!("{}\n{}", n.id, n.kind.name())), quote(color)));
    }
    for (i, n) in p.nodes.iter().enumerate() {
        for e in &n.inputs {
            s.push_str(&format!(
                "  {} -> {} [label={}];\n",
                quote(&p.nodes[e.from].id),
                quote(&n.id),
                quote(&edge_label(p, i, &e.port, e.from, &e.from_port))
            ));
        }
    }
    s.push_str("}\n");
    s
}

/// A Mermaid flowchart; node ids become `n0`, `n1`, ... so any id is safe.
pub fn mermaid(p: &Pipeline, cached: &[bool]) -> String {
    let esc = |s: &str| s.replace('"', "#quot;");
    let mut s = String::from("flowchart LR\n");
    for (i, n) in p.nodes.iter().enumerate() {
        s.push_str(&format!("  n{i}[\"{}<br/><i>{}</i>\"]\n", esc(&n.id), esc(n.kind.name())));
    }
    for (i, n) in p.nodes.iter().enumerate() {
        for e in &n.inputs {
            s.push_str(&format!("  n{} -->|{}| n{i}\n", e.from, esc(&edge_label(p, i, &e.port, e.from, &e.from_port))));
        }
    }
    s.push_str("  classDef cached fill:#e8e8e8;\n  classDef run fill:#fff3b0;\n");
    let list = |want: bool| -> Vec<String> { (0..p.nodes.len()).filter(|&i| cached[i] == want).map(|i| format!("n{i}")).collect() };
    for (want, class) in [(true, "cached"), (false, "run")] {
        let l = list(want);
        if !l.is_empty() {
            s.push_str(&format!("  class {} {class};\n", l.join(",")));
        }
    }
    s
}
