//! Fault injection with figures: kill -9 at many moments of push, pull and write-through runs
//! against a shared-directory remote, checking after every kill that neither cache holds
//! anything damaged and that every entry a reader can find in the remote is complete; a full
//! disk and a read-only cache give clear errors and leave nothing half-written.
//!
//! Run with `--nocapture` to see the figures (the README records them).

#![cfg(feature = "test-kinds")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Ran, Work};

const SPEC: &str = "\
pipeline: faults
nodes:
  a: { kind: test-blob, params: { bytes: 6000000 } }
  b: { kind: test-blob, params: { bytes: 4000000 } }
  c: { kind: test-source, params: { rows: 20000, noise: true } }
  d: { kind: test-scale, inputs: { in: c }, params: { factor: 2 } }
  e: { kind: test-blob, params: { bytes: 3000000 } }
";

/// Params that give every iteration fresh keys.
fn sets(i: usize) -> Vec<String> {
    vec![
        "--set".into(),
        format!("a.bytes={}", 6_000_000 + i),
        "--set".into(),
        format!("b.bytes={}", 4_000_000 + i),
        "--set".into(),
        format!("c.rows={}", 20_000 + i),
        "--set".into(),
        format!("e.bytes={}", 3_000_000 + i),
    ]
}

fn args<'a>(head: &[&'a str], tail: &'a [String]) -> Vec<&'a str> {
    head.iter().copied().chain(tail.iter().map(String::as_str)).collect()
}

/// A deterministic spread of delays (ms) over the length of an operation.
fn delay(i: usize, span: u64) -> u64 {
    (i as u64 * 7919 + 13) % span
}

struct Figures {
    iterations: usize,
    killed_mid_operation: usize,
    corrupt_or_lost: usize,
}

/// Nine tenths of how long `args` takes uninterrupted (ms): a span to spread kills over, so
/// that they land mid-operation on a fast machine as on a slow one.
fn span_of(w: &Work, remote: &Path, args: &[&str]) -> u64 {
    let t0 = Instant::now();
    assert_eq!(with_remote(w, remote, args).code, 0, "{args:?}");
    (t0.elapsed().as_millis() as u64 * 9 / 10).max(10)
}

/// Kills `args` after `ms`; true if it was still running.
fn kill_after(w: &Work, remote: &Path, args: &[&str], ms: u64) -> bool {
    let mut child = w.command(args).env("DAGRUN_REMOTE", remote).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

fn with_remote(w: &Work, remote: &Path, args: &[&str]) -> Ran {
    w.command(args).env("DAGRUN_REMOTE", remote).output().unwrap().into()
}

/// Damage in a local cache, counted (0 expected).
fn damaged(w: &Work) -> usize {
    if !w.cache().join("VERSION").exists() {
        return 0;
    }
    let v = w.run(&["cache", "verify", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&v.stdout).unwrap_or_else(|_| panic!("{}\n{}", v.stdout, v.stderr));
    report["damaged"].as_array().map(|a| a.len()).unwrap_or(usize::MAX)
}

/// Everything a reader finds in the remote must be complete: a fresh cache pulls it all
/// without a single failure.
fn remote_incomplete(remote: &Path, tail: &[String]) -> usize {
    let reader = Work::new();
    reader.write("p.yaml", SPEC);
    let r = with_remote(&reader, remote, &args(&["cache", "pull", "p.yaml"], tail));
    if r.code != 0 {
        eprintln!("a reader found an incomplete remote entry:\n{}", r.stderr);
        return 1 + r.stderr.matches("error:").count();
    }
    damaged(&reader)
}

#[test]
fn kill_9_during_push_pull_and_write_through_never_corrupts_or_loses_work() {
    let shared = tempfile::tempdir().unwrap();
    let remote = shared.path();
    let writer = Work::new();
    writer.write("p.yaml", SPEC);
    let mut push = Figures { iterations: 0, killed_mid_operation: 0, corrupt_or_lost: 0 };
    let mut pull = Figures { iterations: 0, killed_mid_operation: 0, corrupt_or_lost: 0 };
    let mut run = Figures { iterations: 0, killed_mid_operation: 0, corrupt_or_lost: 0 };
    let iterations = 15;
    // Each operation timed twice, uninterrupted, on keys of its own; the faster time is the span.
    let (mut push_span, mut pull_span, mut run_span) = (u64::MAX, u64::MAX, u64::MAX);
    for c in 0..2 {
        let calibrate = sets(500 + c);
        writer.expect(&args(&["p.yaml", "--no-remote"], &calibrate), 0);
        push_span = push_span.min(span_of(&writer, remote, &args(&["cache", "push", "p.yaml"], &calibrate)));
        let fresh = Work::new();
        fresh.write("p.yaml", SPEC);
        pull_span = pull_span.min(span_of(&fresh, remote, &args(&["cache", "pull", "p.yaml"], &calibrate)));
        let mut calibrate_run = sets(1500 + c);
        calibrate_run[1] = format!("a.bytes={}", 60_000_000 + 500 + c);
        run_span = run_span.min(span_of(&writer, remote, &args(&["p.yaml", "--push"], &calibrate_run)));
    }
    for i in 0..iterations {
        let tail = sets(i);
        // Push, killed at some moment.
        writer.expect(&args(&["p.yaml", "--no-remote"], &tail), 0);
        push.iterations += 1;
        push.killed_mid_operation += kill_after(&writer, remote, &args(&["cache", "push", "p.yaml"], &tail), delay(i, push_span)) as usize;
        push.corrupt_or_lost += damaged(&writer) + remote_incomplete(remote, &tail);
        // Finish the push, then pull into a fresh cache, killed at some moment.
        assert_eq!(with_remote(&writer, remote, &args(&["cache", "push", "p.yaml"], &tail)).code, 0);
        let reader = Work::new();
        reader.write("p.yaml", SPEC);
        pull.iterations += 1;
        pull.killed_mid_operation += kill_after(&reader, remote, &args(&["cache", "pull", "p.yaml"], &tail), delay(i + 3, pull_span)) as usize;
        pull.corrupt_or_lost += damaged(&reader);
        // The interrupted pull is finished by the next one; then nothing is computed.
        let again = with_remote(&reader, remote, &args(&["cache", "pull", "p.yaml"], &tail));
        pull.corrupt_or_lost += (again.code != 0) as usize;
        let r = reader.expect(&args(&["p.yaml", "--json", "--no-remote"], &tail), 0);
        pull.corrupt_or_lost += 5 - r.with_status("cached").len();
        // A write-through run (larger outputs, so that it lasts), killed at some moment.
        let mut runner_tail = sets(1000 + i);
        runner_tail[1] = format!("a.bytes={}", 60_000_000 + i);
        run.iterations += 1;
        run.killed_mid_operation +=
            kill_after(&writer, remote, &args(&["p.yaml", "--push"], &runner_tail), delay(i + 5, run_span)) as usize;
        run.corrupt_or_lost += damaged(&writer) + remote_incomplete(remote, &runner_tail);
    }
    for (name, f, span) in [("push", &push, push_span), ("pull", &pull, pull_span), ("run --push", &run, run_span)] {
        eprintln!(
            "fault injection, {name}: {} iterations, {} kill -9 mid-operation (kills spread over {span} ms), {} corrupt or lost",
            f.iterations, f.killed_mid_operation, f.corrupt_or_lost
        );
    }
    assert_eq!(push.corrupt_or_lost + pull.corrupt_or_lost + run.corrupt_or_lost, 0);
    // The kills must actually land mid-operation for the figures to mean anything.
    assert!(push.killed_mid_operation >= iterations / 2, "push kills landed too late");
    assert!(pull.killed_mid_operation >= iterations / 2, "pull kills landed too late");
    assert!(run.killed_mid_operation >= iterations / 2, "run kills landed too late");
}

/// A small tmpfs for the cache, unmounted on drop; `None` where mounting is not permitted.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIPPED: this machine does not allow mounting a tmpfs (needs root)");
            return None;
        }
        Some(SmallFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn read_only(&self) {
        let s = Command::new("mount").args(["-o", "remount,ro"]).arg(self.path()).status().unwrap();
        assert!(s.success());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_nothing_half_written() {
    let Some(fs) = SmallFs::mount("3m") else { return };
    let w = Work::new();
    w.write("p.yaml", "pipeline: full\nnodes:\n  small: { kind: test-source, params: { rows: 10 } }\n  big: { kind: test-blob, params: { bytes: 8000000 } }\n");
    let cache = fs.path().join("cache");
    let cache = cache.to_str().unwrap();
    let r = w.expect(&["p.yaml", "--cache-dir", cache, "--json", "-j", "1"], 1);
    assert_eq!(r.status_of("big"), "failed");
    assert_eq!(r.status_of("small"), "ran");
    assert!(r.stderr.contains("the disk holding the cache is full"), "{}", r.stderr);
    let v = w.expect(&["cache", "verify", "--cache-dir", cache], 0);
    assert!(v.stdout.contains("0 damaged"), "{}", v.stdout);
    assert_eq!(std::fs::read_dir(fs.path().join("cache/tmp")).unwrap().count(), 0, "the failed output was cleaned up");
    // What did fit is usable.
    let r = w.expect(&["p.yaml", "--cache-dir", cache, "--json", "--only", "small"], 0);
    assert_eq!(r.status_of("small"), "cached");
}

#[test]
fn a_read_only_cache_gives_a_clear_error_and_can_still_be_read() {
    let Some(fs) = SmallFs::mount("16m") else { return };
    let w = Work::new();
    w.write("p.yaml", "pipeline: ro\nnodes:\n  a: { kind: test-source, params: { rows: 10 } }\n");
    let cache = fs.path().join("cache");
    let cache = cache.to_str().unwrap();
    w.expect(&["p.yaml", "--cache-dir", cache], 0);
    fs.read_only();
    let r = w.expect(&["p.yaml", "--cache-dir", cache, "--set", "a.rows=11"], 1);
    assert!(r.stderr.contains("the cache is not writable"), "{}", r.stderr);
    let shown = w.expect(&["show", "p.yaml", "a", "--cache-dir", cache, "--format", "csv"], 0);
    assert_eq!(shown.stdout.lines().count(), 11);
    w.expect(&["cache", "verify", "--cache-dir", cache], 0);
}
