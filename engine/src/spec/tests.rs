use std::path::Path;

use crate::error::{Loc, Origin, SpecError};
use crate::testkit::registry;
use crate::{Override, Pipeline};

fn load(text: &str) -> Result<Pipeline, Vec<SpecError>> {
    load_with(text, &[])
}

fn load_with(text: &str, sets: &[&str]) -> Result<Pipeline, Vec<SpecError>> {
    let overrides: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    Pipeline::from_str(Path::new("p.yaml"), text, &registry(), &overrides).map_err(|e| e.0)
}

fn one_error(text: &str) -> SpecError {
    let errs = load(text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

fn loc(e: &SpecError) -> (usize, usize) {
    match &e.origin {
        Origin::File { loc: Some(Loc { line, col }), .. } => (*line, *col),
        other => panic!("no location: {other:?}"),
    }
}

#[test]
fn a_good_spec_resolves_in_dependency_order() {
    let p = load(
        "pipeline: p\nseed: 3\nnodes:\n  m: { kind: map, inputs: { in: s } }\n  s: { kind: src, params: { n: 4 } }\n",
    )
    .unwrap();
    let ids: Vec<&str> = p.ids().collect();
    assert_eq!(ids, vec!["s", "m"]);
    assert_eq!(p.nodes[1].inputs[0].from, 0);
    assert_eq!(p.nodes[0].params["n"], 4);
    // Defaults are filled in, so writing a default explicitly keeps the same params.
    assert_eq!(p.nodes[0].params["mode"], "fast");
    assert_eq!(p.seed, 3);
}

#[test]
fn syntax_errors_point_at_the_line() {
    let e = one_error("pipeline: p\nnodes:\n  a: { kind: src\n");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert_eq!(loc(&e).0, 4);
    assert!(e.to_string().starts_with("p.yaml:4:"), "{e}");
}

#[test]
fn unknown_fields_are_errors() {
    let e = one_error("pipeline: p\nsed: 3\nnodes:\n  a: { kind: src, params: { n: 1 } }\n");
    assert!(e.message.contains("unknown field `sed`"), "{e}");
    let e = one_error("pipeline: p\nnodes:\n  a:\n    kind: src\n    parms: { n: 1 }\n");
    assert!(e.message.contains("unknown field `parms`"), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `params`?"));
    assert_eq!(e.node.as_deref(), Some("a"));
    assert_eq!(loc(&e), (5, 5));
}

#[test]
fn unknown_kind_suggests_the_closest() {
    let e = one_error("pipeline: p\nnodes:\n  a: { kind: scr, params: { n: 1 } }\n");
    assert_eq!(e.message, "unknown kind `scr`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `src`?"));
    assert_eq!(e.node.as_deref(), Some("a"));
    assert_eq!(loc(&e), (3, 14));
    assert_eq!(e.to_string(), "p.yaml:3:14: node `a`: unknown kind `scr` (did you mean `src`?)");
}

#[test]
fn the_seed_is_overridden_with_set() {
    let text = "pipeline: p\nseed: 3\nnodes:\n  s: { kind: src, params: { n: 4 } }\n";
    let three = load(text).unwrap();
    let eight = load_with(text, &["seed=8"]).unwrap();
    assert_eq!((three.seed, eight.seed), (3, 8));
    assert_ne!(three.nodes[0].seed, eight.nodes[0].seed, "nodes derive their seeds from it");
    assert_eq!(load_with(text, &["seed=3"]).unwrap().nodes[0].seed, three.nodes[0].seed);
    let errs = Pipeline::from_str(Path::new("p.yaml"), text, &registry(), &[Override::parse("seed=-1").unwrap()]).unwrap_err().0;
    assert_eq!(errs[0].to_string(), "in `seed=-1`: the seed is a whole number from 0 to 18446744073709551615");
}

#[test]
fn param_errors_point_at_the_param() {
    let e = one_error("pipeline: p\nnodes:\n  a:\n    kind: src\n    params:\n      n: 1\n      temprature: 0.5\n");
    assert!(e.message.contains("unknown field `temprature`"), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `temperature`?"));
    assert_eq!(loc(&e), (7, 7));

    let e = one_error("pipeline: p\nnodes:\n  a:\n    kind: src\n    params:\n      n: lots\n");
    assert!(e.message.contains("params.n: invalid type: string \"lots\""), "{e}");
    assert_eq!(loc(&e), (6, 10));

    let e = one_error("pipeline: p\nnodes:\n  a:\n    kind: src\n    params: { n: 1, mode: medium }\n");
    assert!(e.message.contains("unknown variant `medium`"), "{e}");

    let e = one_error("pipeline: p\nnodes:\n  a:\n    kind: src\n    params: {}\n");
    assert!(e.message.contains("missing field `n`"), "{e}");
    assert_eq!(loc(&e).0, 5);

    // Checks a kind makes beyond types point at the field too.
    let e = one_error("pipeline: p\nnodes:\n  a:\n    kind: src\n    params:\n      n: 13\n");
    assert_eq!(e.message, "params.n: 13 is unlucky");
    assert_eq!(loc(&e), (6, 10));
}

#[test]
fn input_errors_name_ports_and_nodes() {
    let base = "pipeline: p\nnodes:\n  s: { kind: src, params: { n: 1 } }\n  pr: { kind: pair }\n";
    let errs = load(&format!("{base}  m: {{ kind: map, inputs: {{ inn: s }} }}\n")).unwrap_err();
    assert_eq!(errs[0].message, "required input `in` (Ints) is not connected");
    assert_eq!(errs[1].message, "kind `map` has no input port `inn`");
    assert_eq!(errs[1].hint.as_deref(), Some("did you mean `in`?"));
    assert_eq!(loc(&errs[1]), (5, 29));

    let errs = load(&format!("{base}  m: {{ kind: map, inputs: {{ in: ss }} }}\n")).unwrap_err();
    assert_eq!(errs[0].message, "input `in` names unknown node `ss`");
    assert_eq!(errs[0].hint.as_deref(), Some("did you mean `s`?"));
    assert_eq!(loc(&errs[0]).0, 5);

    let e = one_error(&format!("{base}  m: {{ kind: map, inputs: {{ in: pr }} }}\n"));
    assert!(e.message.contains("node `pr` has 2 outputs; name one: `pr.ints`, `pr.text`"), "{e}");

    let e = one_error(&format!("{base}  m: {{ kind: map, inputs: {{ in: pr.text }} }}\n"));
    assert_eq!(e.message, "input `in` expects Ints, but `pr.text` is Text");

    // An any-table input takes every single-table type, and nothing else.
    assert!(load(&format!("{base}  c: {{ kind: count, inputs: {{ rows: pr.ints }} }}\n")).is_ok());
    let e = one_error(&format!("{base}  c: {{ kind: count, inputs: {{ rows: pr.text }} }}\n"));
    assert_eq!(e.message, "input `rows` expects a table, but `pr.text` is Text");

    let e = one_error(&format!("{base}  m: {{ kind: map, inputs: {{ in: pr.txt }} }}\n"));
    assert_eq!(e.message, "node `pr` (kind `pair`) has no output port `txt`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `text`?"));

    let e = one_error(&format!("{base}  m: {{ kind: map }}\n"));
    assert_eq!(e.message, "required input `in` (Ints) is not connected");
    assert_eq!(loc(&e).0, 5);

    // Optional inputs may stay unconnected; a multi-output port named explicitly works.
    let p = load(&format!("{base}  m: {{ kind: map, inputs: {{ in: pr.ints }} }}\n  r: {{ kind: reader, inputs: {{ text: pr.text }} }}\n")).unwrap();
    assert_eq!(p.node("m").unwrap().inputs[0].from_port, "ints");
}

#[test]
fn cycles_are_listed() {
    let e = one_error(
        "pipeline: p\nnodes:\n  a: { kind: map, inputs: { in: c } }\n  b: { kind: map, inputs: { in: a } }\n  c: { kind: map, inputs: { in: b } }\n  d: { kind: src, params: { n: 1 } }\n",
    );
    assert_eq!(e.message, "the graph has a cycle: a -> b -> c -> a");
    let e = one_error("pipeline: p\nnodes:\n  a: { kind: map, inputs: { in: a } }\n");
    assert_eq!(e.message, "input `in` reads the node's own output");
}

#[test]
fn duplicate_and_invalid_ids() {
    let errs = load("pipeline: p\nnodes:\n  a: { kind: src, params: { n: 1 } }\n  a: { kind: src, params: { n: 2 } }\n").unwrap_err();
    assert_eq!(errs[0].message, "duplicate node id `a`");
    assert_eq!(loc(&errs[0]), (4, 3));
    let e = one_error("pipeline: p\nnodes:\n  a.b: { kind: src, params: { n: 1 } }\n");
    assert!(e.message.contains("node id `a.b` must be"), "{e}");
    let e = one_error("pipeline: my pipeline\nnodes:\n  a: { kind: src, params: { n: 1 } }\n");
    assert!(e.message.contains("pipeline name"), "{e}");
    let e = one_error("");
    assert!(e.message.contains("empty"), "{e}");
}

#[test]
fn all_errors_are_reported_at_once() {
    let errs = load("pipeline: p\nnodes:\n  a: { kind: scr }\n  b: { kind: map, inputs: { in: zz } }\n  c: { kind: src, params: { n: x } }\n").unwrap_err();
    assert_eq!(errs.len(), 3, "{errs:?}");
    let lines: Vec<usize> = errs.iter().map(|e| loc(e).0).collect();
    assert_eq!(lines, vec![3, 4, 5]);
}

#[test]
fn vars_are_interpolated_with_types() {
    let p = load("pipeline: p\nvars: { n: 5, label: hi }\nnodes:\n  a: { kind: src, params: { n: \"${vars.n}\", name: \"run-${vars.label}-${vars.n}\" } }\n").unwrap();
    assert_eq!(p.nodes[0].params["n"], 5);
    assert_eq!(p.nodes[0].params["name"], "run-hi-5");
    let e = one_error("pipeline: p\nvars: { n: 5 }\nnodes:\n  a: { kind: src, params: { n: \"${vars.m}\" } }\n");
    assert_eq!(e.message, "unknown variable `vars.m`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `n`?"));
    assert_eq!(loc(&e).0, 4);
}

#[test]
fn overrides_are_typed_by_the_schema() {
    let text = "pipeline: p\nvars: { n: 5 }\nnodes:\n  a: { kind: src, params: { n: \"${vars.n}\" } }\n";
    let p = load_with(text, &["a.name=123", "a.temperature=0.9", "a.nested.depth=2"]).unwrap();
    assert_eq!(p.nodes[0].params["name"], "123", "a string param keeps the text");
    assert_eq!(p.nodes[0].params["temperature"], 0.9);
    assert_eq!(p.nodes[0].params["nested"]["depth"], 2);
    let p = load_with(text, &["vars.n=7"]).unwrap();
    assert_eq!(p.nodes[0].params["n"], 7);
    let p = load_with(text, &["a.n=9"]).unwrap();
    assert_eq!(p.nodes[0].params["n"], 9, "params overrides apply after vars");

    let errs = load_with(text, &["a.temprature=1"]).unwrap_err();
    assert_eq!(errs[0].message, "kind `src` has no param `temprature`");
    assert_eq!(errs[0].hint.as_deref(), Some("did you mean `temperature`?"));
    assert_eq!(errs[0].origin, Origin::Arg("a.temprature=1".into()));

    let errs = load_with(text, &["b.n=1"]).unwrap_err();
    assert_eq!(errs[0].message, "unknown node `b`");
    assert_eq!(errs[0].hint.as_deref(), Some("did you mean `a`?"));

    let errs = load_with(text, &["a.n=many"]).unwrap_err();
    assert!(errs[0].message.contains("invalid type: string \"many\""), "{errs:?}");
    assert_eq!(errs[0].origin, Origin::Arg("a.n=many".into()));
    assert_eq!(errs[0].to_string(), format!("in `a.n=many`: node `a`: {}", errs[0].message));

    let errs = load_with(text, &["vars.m=1"]).unwrap_err();
    assert_eq!(errs[0].message, "unknown variable `vars.m`");
}

#[test]
fn remote_is_a_url_or_url_and_push() {
    use crate::spec::RemoteSetting;
    let nodes = "nodes:\n  a: { kind: src, params: { n: 1 } }\n";
    let p = load(&format!("pipeline: p\nremote: s3://team/dagrun\n{nodes}")).unwrap();
    assert_eq!(p.remote, Some(RemoteSetting { url: "s3://team/dagrun".into(), push: false }));
    let p = load(&format!("pipeline: p\nremote: {{ url: /mnt/shared, push: true }}\n{nodes}")).unwrap();
    assert_eq!(p.remote, Some(RemoteSetting { url: "/mnt/shared".into(), push: true }));
    assert_eq!(load(&format!("pipeline: p\n{nodes}")).unwrap().remote, None);
    let e = one_error(&format!("pipeline: p\nremote: {{ url: s3://b/p, pusj: true }}\n{nodes}"));
    assert!(e.message.contains("unknown field `pusj` in `remote`"), "{e}");
    assert_eq!(loc(&e).0, 2);
    let e = one_error(&format!("pipeline: p\nremote: {{ push: true }}\n{nodes}"));
    assert!(e.message.contains("needs a `url`"), "{e}");
    let e = one_error(&format!("pipeline: p\nremote: 3\n{nodes}"));
    assert!(e.message.contains("expected a remote URL"), "{e}");
}
