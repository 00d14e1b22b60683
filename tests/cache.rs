//! The cache's promises seen from the command line: damage is detected and recomputed,
//! kill -9 never leaves anything a later run trusts, concurrent runs share work, gc keeps
//! what the latest run reached.

#![cfg(feature = "test-kinds")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{files_under, Work};

const CHAIN: &str = "\
pipeline: chain
nodes:
  a: { kind: test-source, params: { rows: 1000, noise: true } }
  b: { kind: test-scale, inputs: { in: a }, params: { factor: 2 } }
  c: { kind: test-scale, inputs: { in: b }, params: { factor: 3 } }
";

fn flip_a_byte(path: &std::path::Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn table_of(w: &Work, pipeline: &str, node: &str) -> std::path::PathBuf {
    let r = w.expect(&["show", pipeline, node, "--path"], 0);
    std::path::PathBuf::from(r.stdout.trim())
}

#[test]
fn a_flipped_byte_is_detected_and_recomputed() {
    let w = Work::new();
    w.write("p.yaml", CHAIN);
    let first = w.expect(&["p.yaml", "--json"], 0);
    let b_digest = first.json()["nodes"][1]["digest"].clone();
    let file = table_of(&w, "p.yaml", "b");
    assert!(file.starts_with(w.path().join(".dagrun/cas")) || file.starts_with(".dagrun/cas"), "{}", file.display());
    flip_a_byte(&w.path().join(&file));

    // verify finds it and names it.
    let v = w.expect(&["cache", "verify"], 1);
    assert!(v.stdout.contains(&format!("DAMAGED  {}", b_digest.as_str().unwrap())), "{}", v.stdout);
    assert!(v.stdout.contains("does not match its digest"), "{}", v.stdout);

    // A run whose node reads the damaged artifact recomputes it instead of using it.
    let r = w.expect(&["p.yaml", "--json", "--force", "c"], 0);
    assert_eq!(r.status_of("b"), "ran", "{}", r.stderr);
    assert!(r.stderr.contains("input from `b` is damaged"), "{}", r.stderr);
    assert_eq!(r.json()["nodes"][1]["digest"], b_digest, "recomputed to the same content");
    w.expect(&["cache", "verify"], 0);
}

#[test]
fn run_verify_rechecks_cached_outputs() {
    let w = Work::new();
    w.write("p.yaml", CHAIN);
    w.expect(&["p.yaml"], 0);
    flip_a_byte(&w.path().join(table_of(&w, "p.yaml", "c")));
    // A plain rerun only stats cached outputs; --verify rehashes them and recomputes.
    let r = w.expect(&["p.yaml", "--json", "--verify"], 0);
    assert_eq!(r.with_status("ran"), vec!["c"]);
    w.expect(&["cache", "verify"], 0);
}

#[test]
fn truncated_or_missing_files_fail_the_quick_check() {
    let w = Work::new();
    w.write("p.yaml", CHAIN);
    w.expect(&["p.yaml"], 0);
    let file = w.path().join(table_of(&w, "p.yaml", "a"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 10).unwrap();
    let plan = w.expect(&["plan", "p.yaml"], 0);
    assert!(plan.stdout.contains("cached output is damaged"), "{}", plan.stdout);
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("a"), "ran");
    assert_eq!(r.status_of("b"), "cached", "same content again: early cutoff");
    w.expect(&["cache", "verify"], 0);
}

#[test]
fn verify_fix_quarantines_and_the_next_run_recomputes() {
    let w = Work::new();
    w.write("p.yaml", CHAIN);
    w.expect(&["p.yaml"], 0);
    flip_a_byte(&w.path().join(table_of(&w, "p.yaml", "c")));
    let v = w.expect(&["cache", "verify", "--fix"], 0);
    assert!(v.stdout.contains("1 damaged"), "{}", v.stdout);
    assert_eq!(std::fs::read_dir(w.cache().join("quarantine")).unwrap().count(), 1);
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran"), vec!["c"]);
}

/// kill -9 at several moments of a run, checking after each that nothing the next run would
/// trust is damaged, then that a rerun finishes the work.
#[test]
fn kill_9_at_any_moment_leaves_a_trustworthy_cache() {
    let w = Work::new();
    let spec = "\
pipeline: killed
nodes:
  a: { kind: test-blob, params: { bytes: 3000000, sleep_ms: 50 } }
  b: { kind: test-source, params: { rows: 20000, noise: true, sleep_ms: 120 } }
  c: { kind: test-scale, inputs: { in: b }, params: { sleep_ms: 150 } }
  d: { kind: test-scale, inputs: { in: c }, params: { factor: 2, sleep_ms: 100 } }
  e: { kind: test-blob, params: { bytes: 2000000, sleep_ms: 200 } }
";
    w.write("p.yaml", spec);
    let delays = [0u64, 15, 40, 70, 110, 160, 230, 300, 380, 470];
    let mut killed_mid_run = 0;
    for (i, delay) in delays.iter().enumerate() {
        // A fresh set of keys each time, so every iteration does real work.
        let child = w.spawn(&["p.yaml", "--set", &format!("b.rows={}", 20000 + i), "--set", &format!("a.bytes={}", 3000000 + i), "--set", &format!("e.bytes={}", 2000000 + i)]);
        std::thread::sleep(Duration::from_millis(*delay));
        let mut child = child;
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        if !w.cache().join("VERSION").exists() {
            continue; // killed before the cache existed
        }
        let v = w.expect(&["cache", "verify"], 0);
        assert!(v.stdout.contains("0 damaged"), "iteration {i}: {}", v.stdout);
    }
    assert!(killed_mid_run >= 5, "most kills should land mid-run ({killed_mid_run})");
    // Leftover staging directories are never published; a rerun completes.
    let r = w.expect(&["p.yaml", "--json", "--set", "b.rows=20009", "--set", "a.bytes=3000009", "--set", "e.bytes=2000009"], 0);
    assert_eq!(r.json()["outcome"], "ok");
    let r = w.expect(&["p.yaml", "--json", "--set", "b.rows=20009", "--set", "a.bytes=3000009", "--set", "e.bytes=2000009"], 0);
    assert_eq!(r.with_status("cached").len(), 5);
    w.expect(&["cache", "verify"], 0);
    // gc clears the staging leftovers of killed runs.
    w.expect(&["cache", "gc"], 0);
    assert_eq!(std::fs::read_dir(w.cache().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_killed_run_is_finished_by_the_next_one() {
    let w = Work::new();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  a: { kind: test-source, params: { rows: 5 } }\n  b: { kind: test-scale, inputs: { in: a }, params: { sleep_ms: 30000 } }\n  c: { kind: test-scale, inputs: { in: b }, params: { factor: 2 } }\n",
    );
    let mut child = w.spawn(&["p.yaml"]);
    let t0 = Instant::now();
    while !w.trace().iter().any(|e| e.0 == "start" && e.1 == "b") {
        assert!(t0.elapsed().as_secs() < 20);
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    w.expect(&["cache", "verify"], 0);
    let r = w.expect(&["p.yaml", "--json", "--set", "b.sleep_ms=0"], 0);
    assert_eq!(r.status_of("a"), "cached");
    assert_eq!(r.with_status("ran"), vec!["b", "c"]);
}

#[test]
fn two_concurrent_runs_compute_each_node_once() {
    let w = Work::new();
    w.write(
        "p.yaml",
        "pipeline: shared\nnodes:\n  a: { kind: test-source, params: { rows: 5, sleep_ms: 400 } }\n  b: { kind: test-scale, inputs: { in: a }, params: { sleep_ms: 300 } }\n  c: { kind: test-scale, inputs: { in: a }, params: { factor: 2, sleep_ms: 300 } }\n  d: { kind: test-sum, inputs: { left: b, right: c } }\n",
    );
    let one = w.spawn(&["p.yaml", "--json"]);
    let two = w.spawn(&["p.yaml", "--json"]);
    let (one, two) = (common::finish(one), common::finish(two));
    assert_eq!((one.code, two.code), (0, 0), "{}\n{}", one.stderr, two.stderr);
    for id in ["a", "b", "c", "d"] {
        let mut s = [one.status_of(id), two.status_of(id)];
        s.sort();
        assert_eq!(s, ["cached".to_string(), "ran".to_string()], "node {id}");
    }
    let starts = w.trace().iter().filter(|e| e.0 == "start").count();
    assert_eq!(starts, 4, "each node computed once: {:?}", w.trace());
    assert!(one.stderr.contains("another dagrun") || two.stderr.contains("another dagrun"));
}

#[test]
fn gc_keeps_what_the_latest_run_reached() {
    let w = Work::new();
    w.write("p.yaml", CHAIN);
    w.expect(&["p.yaml"], 0);
    w.expect(&["p.yaml", "--set", "c.factor=4"], 0);
    let before = w.expect(&["cache", "ls", "--json"], 0).json().as_array().unwrap().len();
    assert_eq!(before, 4);
    let dry = w.expect(&["cache", "gc", "--dry-run"], 0);
    assert!(dry.stdout.contains("would delete 1 artifacts"), "{}", dry.stdout);
    // Two runs kept: nothing goes.
    let keep2 = w.expect(&["cache", "gc", "--keep-runs", "2"], 0);
    assert!(keep2.stdout.contains("deleted 0 artifacts"), "{}", keep2.stdout);
    w.expect(&["cache", "gc"], 0);
    assert_eq!(w.expect(&["cache", "ls", "--json"], 0).json().as_array().unwrap().len(), 3);
    // The latest state is fully cached; the old variant must run again.
    assert_eq!(w.expect(&["p.yaml", "--json", "--set", "c.factor=4"], 0).with_status("cached").len(), 3);
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("ran"), vec!["c"]);
    w.expect(&["cache", "verify"], 0);
}

#[test]
fn published_artifacts_are_read_only_and_complete() {
    let w = Work::new();
    w.write("p.yaml", CHAIN);
    w.expect(&["p.yaml"], 0);
    let files = files_under(&w.cache().join("cas"));
    assert!(files.iter().any(|f| f.ends_with("table.parquet")));
    assert!(files.iter().any(|f| f.ends_with("artifact.json")));
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable", f.display());
    }
}

#[test]
fn cache_commands_without_a_cache_explain() {
    let w = Work::new();
    let r = w.expect(&["cache", "ls"], 2);
    assert!(r.stderr.contains("no dagrun cache at .dagrun"), "{}", r.stderr);
}
