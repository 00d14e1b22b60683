//! Running pipelines: caching, reruns after changes, selections, failures, scheduling.

#![cfg(feature = "test-kinds")]

mod common;

use common::Work;

const DIAMOND: &str = "\
pipeline: diamond
seed: 7
vars:
  rows: 5
nodes:
  src:   { kind: test-source, params: { rows: \"${vars.rows}\", value: 2, noise: true } }
  left:  { kind: test-scale, inputs: { in: src }, params: { factor: 3 } }
  right: { kind: test-scale, inputs: { in: src }, params: { factor: 5 } }
  sum:   { kind: test-sum, inputs: { left: left, right: right } }
  tail:  { kind: test-scale, inputs: { in: sum.out }, params: { factor: 0.5 } }
";

#[test]
fn first_run_computes_second_is_all_cached() {
    let w = Work::new();
    w.write("p.yaml", DIAMOND);
    let first = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(first.with_status("ran"), vec!["src", "left", "right", "sum", "tail"]);
    let second = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(second.with_status("cached").len(), 5, "{}", second.stdout);
    // Same keys and digests both times.
    assert_eq!(first.json()["nodes"][4]["digest"], second.json()["nodes"][4]["digest"]);
    assert_eq!(first.json()["nodes"][4]["key"], second.json()["nodes"][4]["key"]);
    // The summary table names every node.
    assert!(second.stderr.contains("diamond: 0 ran, 5 cached"), "{}", second.stderr);
    // `dagrun run p.yaml` is the same command.
    assert_eq!(w.expect(&["run", "p.yaml", "--json"], 0).with_status("cached").len(), 5);
}

#[test]
fn a_param_change_reruns_that_node_and_its_descendants_only() {
    let w = Work::new();
    w.write("p.yaml", DIAMOND);
    w.expect(&["p.yaml"], 0);
    w.write("p.yaml", &DIAMOND.replace("factor: 3", "factor: 4"));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran"), vec!["left", "sum", "tail"]);
    assert_eq!(r.with_status("cached"), vec!["src", "right"]);
    // Changing it back finds the old results again.
    w.write("p.yaml", DIAMOND);
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 5);
    // --set changes a param the same way, typed by the schema.
    let r = w.expect(&["p.yaml", "--json", "--set", "right.factor=6"], 0);
    assert_eq!(r.with_status("ran"), vec!["right", "sum", "tail"]);
    // The YAML's own path to the param is the same override: all cached.
    for arg in ["right.params.factor=6", "nodes.right.params.factor=6"] {
        assert_eq!(w.expect(&["p.yaml", "--json", "--set", arg], 0).with_status("cached").len(), 5, "{arg}");
    }
    // ...and a variable.
    let r = w.expect(&["p.yaml", "--json", "--set", "vars.rows=6"], 0);
    assert_eq!(r.with_status("ran").len(), 5);
}

#[test]
fn formatting_and_default_values_do_not_change_keys() {
    let w = Work::new();
    w.write("p.yaml", DIAMOND);
    w.expect(&["p.yaml"], 0);
    // Reordered keys, block style, an explicit default and 5.0 for 5: same params.
    let reformatted = DIAMOND.replace(
        "right: { kind: test-scale, inputs: { in: src }, params: { factor: 5 } }",
        "right:\n    params:\n      note: \"\"\n      factor: 5.0\n    inputs: { in: src }\n    kind: test-scale",
    );
    w.write("p.yaml", &reformatted);
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 5);
}

#[test]
fn identical_output_stops_the_rerun_early() {
    let w = Work::new();
    w.write("p.yaml", DIAMOND);
    w.expect(&["p.yaml"], 0);
    // `note` does not change the output: `left` reruns, its digest is unchanged, and
    // nothing downstream reruns.
    let r = w.expect(&["p.yaml", "--json", "--set", "left.note=relabelled"], 0);
    assert_eq!(r.with_status("ran"), vec!["left"]);
    assert_eq!(r.with_status("cached"), vec!["src", "right", "sum", "tail"]);
    // --force recomputes a node; early cutoff still spares its descendants.
    let r = w.expect(&["p.yaml", "--json", "--force", "src"], 0);
    assert_eq!(r.with_status("ran"), vec!["src"]);
}

#[test]
fn selections_run_parts_of_the_pipeline() {
    let w = Work::new();
    w.write("p.yaml", DIAMOND);
    let r = w.expect(&["p.yaml", "--json", "--until", "left"], 0);
    assert_eq!(r.with_status("ran"), vec!["src", "left"]);
    assert_eq!(r.with_status("skipped"), vec!["right", "sum", "tail"]);
    // --only needs its inputs cached.
    let r = w.expect(&["p.yaml", "--only", "sum"], 2);
    assert!(r.stderr.contains("need `right` which is not selected and not in the cache"), "{}", r.stderr);
    let r = w.expect(&["p.yaml", "--json", "--only", "right"], 0);
    assert_eq!(r.with_status("ran"), vec!["right"]);
    let r = w.expect(&["p.yaml", "--json", "--only", "sum,tail"], 0);
    assert_eq!(r.with_status("ran"), vec!["sum", "tail"]);
    // --from: the node and its descendants (nothing to do now).
    w.write("p.yaml", &DIAMOND.replace("factor: 0.5", "factor: 0.25"));
    let r = w.expect(&["p.yaml", "--json", "--from", "sum"], 0);
    assert_eq!(r.with_status("ran"), vec!["tail"]);
    assert_eq!(r.status_of("left"), "cached");
}

const FAILING: &str = "\
pipeline: failing
nodes:
  a:    { kind: test-source, params: { rows: 3 } }
  bad:  { kind: test-scale, inputs: { in: a }, params: { fail: \"model exploded\" } }
  after: { kind: test-scale, inputs: { in: bad } }
  slow: { kind: test-scale, inputs: { in: a }, params: { sleep_ms: 400 } }
  slower: { kind: test-scale, inputs: { in: slow }, params: { factor: 2 } }
";

#[test]
fn a_failure_fails_its_descendants_only_with_keep_going() {
    let w = Work::new();
    w.write("p.yaml", FAILING);
    let r = w.expect(&["p.yaml", "--json", "--keep-going"], 1);
    assert_eq!(r.status_of("bad"), "failed");
    assert_eq!(r.status_of("after"), "skipped");
    assert_eq!(r.status_of("slow"), "ran");
    assert_eq!(r.status_of("slower"), "ran");
    let bad = &r.json()["nodes"][1];
    assert_eq!(bad["error"], "model exploded");
    assert!(r.stderr.contains("[bad] failed: model exploded"), "{}", r.stderr);
    assert!(r.stderr.contains("upstream `bad` failed"), "{}", r.stderr);
    // A failure is not cached: the next run tries again, and reuses the rest.
    let r = w.expect(&["p.yaml", "--json", "--keep-going"], 1);
    assert!(r.with_status("ran").is_empty(), "{}", r.stdout);
    assert_eq!(r.status_of("bad"), "failed");
    assert_eq!(r.status_of("slower"), "cached");
}

#[test]
fn without_keep_going_the_run_stops_starting_nodes() {
    let w = Work::new();
    w.write("p.yaml", FAILING);
    let r = w.expect(&["p.yaml", "--json", "--jobs", "2"], 1);
    assert_eq!(r.status_of("bad"), "failed");
    // `slow` was already running when `bad` failed, so it finished; `slower` was not started.
    assert_eq!(r.status_of("slow"), "ran");
    assert_eq!(r.status_of("slower"), "skipped");
    assert!(r.stderr.contains("the run stopped after a failure"), "{}", r.stderr);
}

#[test]
fn panics_and_missing_outputs_are_node_failures() {
    let w = Work::new();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  a: { kind: test-source, params: { panic: true } }\n  b: { kind: test-source, params: { rows: 1 } }\n  c: { kind: test-scale, inputs: { in: b }, params: { forget_output: true } }\n",
    );
    let r = w.expect(&["p.yaml", "--json", "--keep-going"], 1);
    let nodes = r.json()["nodes"].clone();
    assert_eq!(nodes[0]["status"], "failed");
    assert!(nodes[0]["error"].as_str().unwrap().contains("the node panicked: asked to panic"));
    assert_eq!(nodes[2]["status"], "failed");
    assert!(nodes[2]["error"].as_str().unwrap().contains("without writing output out"), "{nodes}");
}

fn overlaps(w: &Work, a: &str, b: &str) -> bool {
    let t = w.trace();
    let span = |n: &str| {
        let s = t.iter().find(|e| e.0 == "start" && e.1 == n).unwrap().2;
        let e = t.iter().find(|e| e.0 == "end" && e.1 == n).unwrap().2;
        (s, e)
    };
    let (s1, e1) = span(a);
    let (s2, e2) = span(b);
    s1 < e2 && s2 < e1
}

#[test]
fn independent_nodes_run_in_parallel_but_gpu_nodes_one_at_a_time() {
    let w = Work::new();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  a: { kind: test-source, params: { sleep_ms: 400 } }\n  b: { kind: test-source, params: { sleep_ms: 400, value: 1 } }\n",
    );
    w.expect(&["p.yaml", "--jobs", "2"], 0);
    assert!(overlaps(&w, "a", "b"), "cpu nodes should overlap: {:?}", w.trace());

    w.clear_trace();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  a: { kind: test-source, params: { sleep_ms: 300, resource: gpu } }\n  b: { kind: test-source, params: { sleep_ms: 300, value: 1, resource: gpu } }\n  c: { kind: test-source, params: { sleep_ms: 300, value: 2 } }\n",
    );
    w.expect(&["p.yaml", "--jobs", "3"], 0);
    assert!(!overlaps(&w, "a", "b"), "gpu nodes must not overlap: {:?}", w.trace());
    assert!(overlaps(&w, "a", "c") || overlaps(&w, "b", "c"), "a cpu node may run beside a gpu node: {:?}", w.trace());

    w.clear_trace();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  a: { kind: test-source, params: { sleep_ms: 300, value: 5 } }\n  x: { kind: test-source, params: { sleep_ms: 300, value: 6, resource: exclusive } }\n  c: { kind: test-source, params: { sleep_ms: 300, value: 7 } }\n",
    );
    w.expect(&["p.yaml", "--jobs", "3"], 0);
    assert!(!overlaps(&w, "x", "a") && !overlaps(&w, "x", "c"), "an exclusive node runs alone: {:?}", w.trace());

    // --jobs 1 serialises everything.
    w.clear_trace();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  a: { kind: test-source, params: { sleep_ms: 200, value: 8 } }\n  b: { kind: test-source, params: { sleep_ms: 200, value: 9 } }\n",
    );
    w.expect(&["p.yaml", "--jobs", "1"], 0);
    assert!(!overlaps(&w, "a", "b"));
}

#[test]
fn ctrl_c_keeps_finished_nodes_and_exits_130() {
    let w = Work::new();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  quick: { kind: test-source, params: { rows: 2 } }\n  long: { kind: test-scale, inputs: { in: quick }, params: { sleep_ms: 20000 } }\n",
    );
    let child = w.spawn(&["p.yaml", "--json"]);
    let pid = child.id();
    let t0 = std::time::Instant::now();
    while !w.trace().iter().any(|e| e.0 == "start" && e.1 == "long") {
        assert!(t0.elapsed().as_secs() < 20, "long never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let r = common::finish(child);
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(t0.elapsed().as_secs() < 10, "the running node should stop promptly");
    assert_eq!(r.status_of("quick"), "ran");
    assert_eq!(r.status_of("long"), "failed");
    assert!(r.stderr.contains("interrupted"), "{}", r.stderr);
    // The next run keeps `quick`.
    let r = w.expect(&["p.yaml", "--json", "--set", "long.sleep_ms=0"], 0);
    assert_eq!(r.status_of("quick"), "cached");
    assert_eq!(r.status_of("long"), "ran");
}
