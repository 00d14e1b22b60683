//! plan, explain, graph, show and kinds: what a user asks before and after a run.

#![cfg(feature = "test-kinds")]

mod common;

use common::Work;

const SPEC: &str = "\
pipeline: inspect
seed: 11
nodes:
  src:  { kind: test-source, params: { rows: 12, value: 1.5 } }
  gen:  { kind: test-scale, inputs: { in: src }, params: { factor: 0.7 } }
  tail: { kind: test-scale, inputs: { in: gen }, params: { factor: 2 } }
  sum:  { kind: test-sum, inputs: { left: src, right: tail } }
";

#[test]
fn plan_says_what_would_run_and_why() {
    let w = Work::new();
    w.write("p.yaml", SPEC);
    let p = w.expect(&["plan", "p.yaml"], 0);
    let gen = p.stdout.lines().find(|l| l.contains(" gen ")).unwrap();
    assert!(gen.starts_with("run") && gen.contains("never computed; after `src`"), "{}", p.stdout);
    assert!(p.stdout.contains("inspect: 4 of 4 nodes would run"), "{}", p.stdout);
    w.expect(&["plan", "p.yaml", "--check"], 1);
    assert!(!w.cache().exists(), "plan creates no cache");
    w.expect(&["p.yaml"], 0);
    let p = w.expect(&["plan", "p.yaml", "--check"], 0);
    assert!(p.stdout.contains("0 of 4 nodes would run"), "{}", p.stdout);

    w.write("p.yaml", &SPEC.replace("factor: 0.7", "factor: 0.9"));
    let p = w.expect(&["plan", "p.yaml", "--check"], 1);
    assert!(p.stdout.contains("params.factor: 0.7 -> 0.9"), "{}", p.stdout);
    assert!(p.stdout.contains("input in: "), "{}", p.stdout);
    assert!(p.stdout.contains("(recomputed upstream first)"), "{}", p.stdout);
    let j = w.expect(&["plan", "p.yaml", "--json"], 0).json();
    let nodes = j["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["would_run"], false);
    assert_eq!(nodes[1]["would_run"], true);
    assert_eq!(nodes[1]["reasons"][0], "params.factor: 0.7 -> 0.9");
    assert_eq!(j["would_run"], 3);
    // --force shows up as a reason.
    let p = w.expect(&["plan", "p.yaml", "--force", "src"], 0);
    let src = p.stdout.lines().find(|l| l.contains(" src ")).unwrap();
    assert!(src.starts_with("run") && src.ends_with("forced"), "{}", p.stdout);
}

#[test]
fn explain_names_each_change() {
    let w = Work::new();
    w.write("p.yaml", SPEC);
    let e = w.expect(&["explain", "p.yaml", "gen"], 0);
    assert!(e.stdout.contains("never computed"), "{}", e.stdout);
    w.expect(&["p.yaml"], 0);
    let e = w.expect(&["explain", "p.yaml", "gen"], 0);
    assert!(e.stdout.contains("status   cached"), "{}", e.stdout);
    assert!(e.stdout.contains("changes  none"), "{}", e.stdout);

    let changed = SPEC.replace("factor: 0.7", "factor: 0.9").replace("value: 1.5", "value: 2.5");
    w.write("p.yaml", &changed);
    let e = w.expect(&["explain", "p.yaml", "gen"], 0);
    assert!(e.stdout.contains("params.factor: 0.7 -> 0.9"), "{}", e.stdout);
    assert!(e.stdout.contains("input in: ") && e.stdout.contains("-> (recomputed upstream first)"), "{}", e.stdout);
    w.expect(&["p.yaml", "--until", "src"], 0);
    // Now src's new output is known: the input change shows both digests.
    let e = w.expect(&["explain", "p.yaml", "gen"], 0);
    let line = e.stdout.lines().find(|l| l.contains("input in:")).unwrap().to_string();
    assert!(!line.contains("recomputed"), "{line}");
    assert!(regex_like_digest_change(&line), "{line}");
    // A pipeline seed change shows as a seed change on seeded kinds only.
    w.write("p.yaml", &changed.replace("seed: 11", "seed: 12"));
    let e = w.expect(&["explain", "p.yaml", "src"], 0);
    assert!(e.stdout.contains("seed "), "{}", e.stdout);
}

fn regex_like_digest_change(line: &str) -> bool {
    let parts: Vec<&str> = line.trim().trim_start_matches("input in: ").split(" -> ").collect();
    parts.len() == 2 && parts.iter().all(|p| p.len() == 6 && p.ends_with(".."))
}

#[test]
fn graph_as_dot_and_mermaid() {
    let w = Work::new();
    w.write("p.yaml", SPEC);
    let dot = w.expect(&["graph", "p.yaml"], 0).stdout;
    assert!(dot.starts_with("digraph \"inspect\" {"), "{dot}");
    assert!(dot.contains("\"src\" -> \"gen\" [label=\"in\"];"), "{dot}");
    assert!(dot.contains("\"tail\" -> \"sum\" [label=\"right\"];"), "{dot}");
    let mm = w.expect(&["graph", "p.yaml", "--format", "mermaid"], 0).stdout;
    assert!(mm.starts_with("flowchart LR"), "{mm}");
    assert!(mm.contains("n0 -->|in| n1"), "{mm}");
    assert!(mm.contains("class n0,n1,n2,n3 run;"), "{mm}");
}

#[test]
fn show_previews_tables_and_files() {
    let w = Work::new();
    w.write("p.yaml", SPEC);
    let r = w.expect(&["show", "p.yaml", "gen"], 1);
    assert!(r.stderr.contains("no cached output") && r.stderr.contains("--until gen"), "{}", r.stderr);
    w.expect(&["p.yaml"], 0);
    let t = w.expect(&["show", "p.yaml", "gen", "--rows", "3"], 0).stdout;
    assert!(t.contains("gen.out (Numbers, ") && t.contains("12 rows"), "{t}");
    assert!(t.contains("| 0 | 1.04999"), "{t}");
    assert!(t.contains("... 9 more rows"), "{t}");
    let csv = w.expect(&["show", "p.yaml", "tail", "--format", "csv"], 0).stdout;
    assert_eq!(csv.lines().count(), 13);
    assert_eq!(csv.lines().next().unwrap(), "i,value");
    assert_eq!(csv.lines().nth(1).unwrap(), "0,2.0999999999999996");
    let json: serde_json::Value = serde_json::from_str(&w.expect(&["show", "p.yaml", "sum.out", "--format", "json"], 0).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 12);
    // An explicit --rows limits csv and json too.
    let json: serde_json::Value = serde_json::from_str(&w.expect(&["show", "p.yaml", "sum.out", "--format", "json", "--rows", "2"], 0).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(w.expect(&["show", "p.yaml", "tail", "--format", "csv", "--rows", "0"], 0).stdout.lines().collect::<Vec<_>>(), vec!["i,value"]);
    let files = w.expect(&["show", "p.yaml", "sum.total"], 0).stdout;
    assert!(files.contains("total.json") && files.contains("\"total\":"), "{files}");
    let path = w.expect(&["show", "p.yaml", "gen", "--path"], 0).stdout;
    assert!(path.trim().ends_with("table.parquet") && w.path().join(path.trim()).exists(), "{path}");
}

#[test]
fn kinds_lists_ports_and_params() {
    let w = Work::new();
    let k = w.expect(&["kinds", "test-sum"], 0).stdout;
    assert!(k.contains("input  extra: Numbers (optional)"), "{k}");
    assert!(k.contains("output total: Blob"), "{k}");
    assert!(k.starts_with("test-sum (version 1): "), "{k}");
    let r = w.expect(&["kinds", "test-summ"], 2);
    assert!(r.stderr.contains("did you mean `test-sum`?"), "{}", r.stderr);
    // A kind keyed at another version for some params says which.
    let load = w.expect(&["kinds", "load"], 0).stdout;
    assert!(load.starts_with("load (version 1; 2 with `model:`): "), "{load}");
}

#[test]
fn json_report_has_the_documented_shape() {
    let w = Work::new();
    w.write("p.yaml", SPEC);
    let j = w.expect(&["p.yaml", "--json", "--quiet"], 0).json();
    assert_eq!(j["pipeline"], "inspect");
    assert_eq!(j["outcome"], "ok");
    for n in j["nodes"].as_array().unwrap() {
        for field in ["id", "kind", "status", "key", "digest", "seconds"] {
            assert!(n.get(field).is_some(), "{field} missing in {n}");
        }
        assert_eq!(n["key"].as_str().unwrap().len(), 64);
    }
    // Two outputs: both named.
    assert_eq!(j["nodes"][3]["outputs"].as_object().unwrap().len(), 2);
}

#[test]
fn cache_dir_flag_and_env_choose_the_cache() {
    let w = Work::new();
    w.write("p.yaml", SPEC);
    w.expect(&["p.yaml", "--cache-dir", "elsewhere"], 0);
    assert!(w.path().join("elsewhere/cas").is_dir());
    assert!(!w.cache().exists());
    let r = w.command(&["p.yaml", "--json"]).env("DAGRUN_CACHE_DIR", "elsewhere").output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(j["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "cached"));
    // The spec's `cache:` applies when neither is given.
    w.write("q.yaml", &SPEC.replace("seed: 11", "seed: 11\ncache: speccache"));
    w.expect(&["q.yaml"], 0);
    assert!(w.path().join("speccache/cas").is_dir());
}

#[test]
fn log_prints_what_nodes_logged_when_computed_or_when_they_failed() {
    let w = Work::new();
    w.write("p.yaml", SPEC);
    let l = w.expect(&["log", "p.yaml"], 0);
    assert_eq!(l.stdout.trim(), "not computed for the current params: src, gen, tail, sum", "{}", l.stdout);
    w.expect(&["p.yaml"], 0);
    // The lines stay with the cache entry: a later, all-cached run prints nothing, but `log`
    // still has them.
    let r = w.expect(&["p.yaml"], 0);
    assert!(!r.stderr.contains("[sum] total"), "{}", r.stderr);
    let l = w.expect(&["log", "p.yaml"], 0).stdout;
    let lines: Vec<&str> = l.lines().collect();
    assert!(lines[0].starts_with("sum (test-sum): computed ") && lines[0].contains(" UTC in "), "{l}");
    assert_eq!(lines[1], "  adding 12 rows", "{l}");
    assert!(lines[2].starts_with("  total 43.") && lines.len() == 3, "{l}");
    let e = w.expect(&["explain", "p.yaml", "sum"], 0).stdout;
    assert!(e.contains("\n  log      adding 12 rows\n           total 43."), "{e}");
    // Asked by name, a node that logged nothing says so; an unknown node is a usage error.
    let l = w.expect(&["log", "p.yaml", "gen"], 0).stdout;
    assert!(l.starts_with("gen (test-scale): computed ") && l.contains("  (logged nothing)"), "{l}");
    let e = w.expect(&["log", "p.yaml", "summ"], 2).stderr;
    assert!(e.contains("summ") && e.contains("did you mean `sum`"), "{e}");
    // A node that fails: its lines come from the run record, with the error.
    w.write("p.yaml", &SPEC.replace("right: tail } }", "right: tail }, params: { fail: boom } }"));
    w.expect(&["p.yaml"], 1);
    let l = w.expect(&["log", "p.yaml", "sum"], 0).stdout;
    assert!(l.starts_with("sum (test-sum): not cached; failed in the run of ") && l.contains(": boom\n  adding 12 rows\n"), "{l}");
    assert!(!l.contains("total"), "{l}");
}
