//! Every bad input the CLI can meet ends with a clear message naming the place, and exit 2.

#![cfg(feature = "test-kinds")]

mod common;

use common::Work;

fn bad(spec: &str, args: &[&str]) -> String {
    let w = Work::new();
    w.write("p.yaml", spec);
    let mut all = vec!["p.yaml"];
    all.extend_from_slice(args);
    let r = w.expect(&all, 2);
    assert!(!w.cache().join("cas").exists() || common::files_under(&w.cache().join("cas")).is_empty(), "nothing may run");
    r.stderr
}

const GOOD: &str = "pipeline: p\nnodes:\n  a: { kind: test-source, params: { rows: 3 } }\n  b: { kind: test-scale, inputs: { in: a } }\n";

#[test]
fn yaml_syntax() {
    let e = bad("pipeline: p\nnodes:\n  a: { kind: test-source\n", &[]);
    assert!(e.starts_with("error: p.yaml:4:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
}

#[test]
fn unknown_kind_with_suggestion() {
    let e = bad("pipeline: p\nnodes:\n  a: { kind: test-sorce }\n", &[]);
    assert!(e.contains("p.yaml:3:14: node `a`: unknown kind `test-sorce` (did you mean `test-source`?)"), "{e}");
}

#[test]
fn unknown_and_mistyped_params() {
    let e = bad("pipeline: p\nnodes:\n  a:\n    kind: test-source\n    params:\n      rws: 3\n", &[]);
    assert!(e.contains("p.yaml:6:7: node `a`: params.rws: unknown field `rws`"), "{e}");
    assert!(e.contains("did you mean `rows`?"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  a:\n    kind: test-source\n    params:\n      rows: three\n", &[]);
    assert!(e.contains("p.yaml:6:13: node `a`: params.rows: invalid type: string \"three\", expected u64"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  a:\n    kind: test-source\n    params:\n      rows: 99999999999\n", &[]);
    assert!(e.contains("p.yaml:6:13: node `a`: params.rows: must be at most 10000000"), "{e}");
}

#[test]
fn unknown_top_level_and_node_fields() {
    let e = bad("pipeline: p\nnodez: {}\n", &[]);
    assert!(e.contains("p.yaml:2:1:") && e.contains("unknown field `nodez`") && e.contains("did you mean `nodes`?"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  a: { kind: test-source, input: {} }\n", &[]);
    assert!(e.contains("node `a`") && e.contains("unknown field `input`") && e.contains("did you mean `inputs`?"), "{e}");
}

#[test]
fn bad_connections() {
    let e = bad("pipeline: p\nnodes:\n  a: { kind: test-source }\n  b: { kind: test-scale, inputs: { in: aa } }\n", &[]);
    assert!(e.contains("p.yaml:4:40: node `b`: input `in` names unknown node `aa` (did you mean `a`?)"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  a: { kind: test-source }\n  b: { kind: test-scale, inputs: { input: a } }\n", &[]);
    assert!(e.contains("kind `test-scale` has no input port `input` (expected one of `in`)"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  a: { kind: test-blob, params: { bytes: 1 } }\n  b: { kind: test-scale, inputs: { in: a } }\n", &[]);
    assert!(e.contains("input `in` expects Numbers, but `a.out` is Blob"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  a: { kind: test-source }\n  b: { kind: test-sum, inputs: { left: a } }\n", &[]);
    assert!(e.contains("node `b`: required input `right` (Numbers) is not connected"), "{e}");
}

#[test]
fn cycles() {
    let e = bad(
        "pipeline: p\nnodes:\n  x: { kind: test-scale, inputs: { in: z } }\n  y: { kind: test-scale, inputs: { in: x } }\n  z: { kind: test-scale, inputs: { in: y } }\n",
        &[],
    );
    assert!(e.contains("the graph has a cycle: x -> y -> z -> x"), "{e}");
}

#[test]
fn bad_vars_and_overrides() {
    let e = bad("pipeline: p\nvars: { n: 3 }\nnodes:\n  a: { kind: test-source, params: { rows: \"${vars.nn}\" } }\n", &[]);
    assert!(e.contains("p.yaml:4:") && e.contains("unknown variable `vars.nn` (did you mean `n`?)"), "{e}");
    let e = bad(GOOD, &["--set", "a.rowz=3"]);
    assert!(e.contains("in `a.rowz=3`: node `a`: kind `test-source` has no param `rowz` (did you mean `rows`?)"), "{e}");
    let e = bad(GOOD, &["--set", "c.rows=3"]);
    assert!(e.contains("unknown node `c`"), "{e}");
    let e = bad(GOOD, &["--set", "a.rows=lots"]);
    assert!(e.contains("in `a.rows=lots`: node `a`: invalid type: string \"lots\", expected u64"), "{e}");
    // The YAML's own path to a param means the same; a typo in it is named as one.
    let e = bad(GOOD, &["--set", "a.params.rowz=3"]);
    assert!(e.contains("in `a.params.rowz=3`: node `a`: kind `test-source` has no param `rowz` (did you mean `rows`?)"), "{e}");
    let e = bad(GOOD, &["--set", "nodes.a.params.rows=lots"]);
    assert!(e.contains("in `nodes.a.params.rows=lots`: node `a`: invalid type: string \"lots\", expected u64"), "{e}");
    let e = bad(GOOD, &["--set", "rows"]);
    assert!(e.contains("expected `NODE.PARAM=VALUE`"), "{e}");
}

#[test]
fn bad_selections_and_flags() {
    let e = bad(GOOD, &["--only", "bb"]);
    assert!(e.contains("in `--only bb`: unknown node `bb` (did you mean `b`?)"), "{e}");
    let e = bad(GOOD, &["--force", "x"]);
    assert!(e.contains("unknown node `x`"), "{e}");
    let e = bad(GOOD, &["--until", "a", "--from", "b"]);
    assert!(e.contains("select no node"), "{e}");
    let e = bad(GOOD, &["--device", "tpu"]);
    assert!(e.contains("unknown device `tpu`"), "{e}");
    if !cfg!(feature = "cuda") {
        let e = bad(GOOD, &["--device", "cuda"]);
        assert!(e.contains("built without CUDA"), "{e}");
    }
    let e = bad(GOOD, &["--jobs", "0"]);
    assert!(e.contains("--jobs must be at least 1"), "{e}");
    let e = bad(GOOD, &["--no-such-flag"]);
    assert!(e.contains("--no-such-flag"), "{e}");
}

#[test]
fn missing_file_and_every_error_at_once() {
    let w = Work::new();
    let r = w.expect(&["nowhere.yaml"], 2);
    assert!(r.stderr.contains("nowhere.yaml: cannot read the pipeline file"), "{}", r.stderr);
    let e = bad(
        "pipeline: p\nnodes:\n  a: { kind: test-sorce }\n  b: { kind: test-scale, inputs: { in: zz } }\n  c: { kind: test-source, params: { rows: x } }\n",
        &[],
    );
    assert_eq!(e.matches("error: ").count(), 3, "{e}");
    assert!(e.contains("3 errors in the pipeline spec"), "{e}");
}

#[test]
fn other_commands_check_the_spec_too() {
    let w = Work::new();
    w.write("p.yaml", "pipeline: p\nnodes:\n  a: { kind: nope }\n");
    for cmd in [vec!["plan", "p.yaml"], vec!["graph", "p.yaml"], vec!["explain", "p.yaml", "a"], vec!["show", "p.yaml", "a"]] {
        let r = w.expect(&cmd, 2);
        assert!(r.stderr.contains("unknown kind `nope`"), "{cmd:?}: {}", r.stderr);
    }
    w.write("p.yaml", GOOD);
    let r = w.expect(&["explain", "p.yaml", "bb"], 2);
    assert!(r.stderr.contains("unknown node `bb` (did you mean `b`?)"), "{}", r.stderr);
    let r = w.expect(&["show", "p.yaml", "a.outt"], 2);
    assert!(r.stderr.contains("node `a` has no output `outt` (did you mean `out`?)"), "{}", r.stderr);
}
