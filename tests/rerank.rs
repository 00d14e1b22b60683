//! Rerankers through the real binary: training, evaluation, and the plan-time checks that a
//! reranker and the knowledge it reads are connected consistently.

mod common;

use common::Work;

const HEAD: &str = "\
pipeline: rr
seed: 3
nodes:
  data: { kind: load, params: { dataset: synthetic, users: 120, items: 150 } }
  truth: { kind: synthetic-knowledge, inputs: { data: data }, params: { dim: 16 } }
";

fn spec(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

const SMALL: &str = "epochs: 2, batch_size: 64, lr: 0.003, embed_dim: 8, hidden: 16, expert_arch: [16, 8]";

#[test]
fn train_and_evaluate_with_and_without_knowledge() {
    let w = Work::new();
    w.write(
        "p.yaml",
        &spec(&format!(
            "  base: {{ kind: train-reranker, inputs: {{ data: data }}, params: {{ {SMALL} }} }}\n  kar: {{ kind: train-reranker, inputs: {{ data: data, user_knowledge: truth.users, item_knowledge: truth.items }}, params: {{ {SMALL}, backbone: prm, mlp: [16] }} }}\n  e1: {{ kind: evaluate, inputs: {{ data: data, reranker: base.model }} }}\n  e2: {{ kind: evaluate, inputs: {{ data: data, reranker: kar.model, user_knowledge: truth.users, item_knowledge: truth.items }}, params: {{ methods: [oracle] }} }}\n"
        )),
    );
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran").len(), 6, "{}", r.stderr);
    assert!(r.stderr.contains("[base] kept epoch"), "{}", r.stderr);
    let m = w.expect(&["show", "p.yaml", "e2", "--format", "csv"], 0).stdout;
    assert!(m.lines().any(|l| l.starts_with("prm+kar,5,")), "{m}");
    assert!(m.lines().any(|l| l.starts_with("oracle,5,")), "{m}");
    let m = w.expect(&["show", "p.yaml", "e1", "--format", "csv"], 0).stdout;
    assert_eq!(m.lines().filter(|l| l.starts_with("dlcm,")).count(), 4, "{m}");
    let curve = w.expect(&["show", "p.yaml", "base.curve", "--format", "csv"], 0).stdout;
    assert!(curve.starts_with("epoch,loss,map5,ndcg5,best"), "{curve}");
    assert_eq!(curve.lines().filter(|l| l.ends_with(",true")).count(), 1, "{curve}");
    let files = w.expect(&["show", "p.yaml", "kar.model"], 0).stdout;
    assert!(files.contains("model.safetensors") && files.contains("config.json"), "{files}");
    // Cached on the second run.
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 6);
}

#[test]
fn mismatched_knowledge_is_a_plan_time_error() {
    let w = Work::new();
    let bad = |rest: &str| {
        w.write("p.yaml", &spec(rest));
        let r = w.expect(&["p.yaml"], 2);
        assert!(!w.cache().join("cas").exists() || common::files_under(&w.cache().join("cas")).is_empty());
        r.stderr
    };
    let train_base = format!("  base: {{ kind: train-reranker, inputs: {{ data: data }}, params: {{ {SMALL} }} }}\n");
    let train_kar = format!("  kar: {{ kind: train-reranker, inputs: {{ data: data, user_knowledge: truth.users, item_knowledge: truth.items }}, params: {{ {SMALL} }} }}\n");
    // A knowledge reranker evaluated without knowledge.
    let e = bad(&format!("{train_kar}  e: {{ kind: evaluate, inputs: {{ data: data, reranker: kar.model }} }}\n"));
    assert!(e.contains("input `reranker` expects Reranker, but `kar.model` is KnowledgeReranker"), "{e}");
    // A base reranker evaluated with knowledge.
    let e = bad(&format!("{train_base}  e: {{ kind: evaluate, inputs: {{ data: data, reranker: base.model, user_knowledge: truth.users, item_knowledge: truth.items }} }}\n"));
    assert!(e.contains("input `reranker` expects KnowledgeReranker, but `base.model` is Reranker"), "{e}");
    // Half the knowledge.
    let e = bad(&format!("  kar: {{ kind: train-reranker, inputs: {{ data: data, user_knowledge: truth.users }}, params: {{ {SMALL} }} }}\n"));
    assert!(e.contains("connect both `user_knowledge` and `item_knowledge`, or neither"), "{e}");
    // Knowledge without a reranker.
    let e = bad("  e: { kind: evaluate, inputs: { data: data, user_knowledge: truth.users, item_knowledge: truth.items } }\n");
    assert!(e.contains("knowledge inputs are for a `reranker` input"), "{e}");
    // Bad training params.
    let e = bad("  base: { kind: train-reranker, inputs: { data: data }, params: { epochs: 0 } }\n");
    assert!(e.contains("params.epochs: must be at least 1"), "{e}");
    let e = bad("  base: { kind: train-reranker, inputs: { data: data }, params: { backbone: transformer } }\n");
    assert!(e.contains("unknown variant `transformer`"), "{e}");
    let e = bad("  base: { kind: train-reranker, inputs: { data: data }, params: { lr: -1 } }\n");
    assert!(e.contains("params.lr: must be a positive number"), "{e}");
}

#[test]
fn knowledge_of_the_wrong_dimension_or_dataset_fails_the_node() {
    let w = Work::new();
    w.write(
        "p.yaml",
        &spec(&format!(
            "  other: {{ kind: synthetic-knowledge, inputs: {{ data: data }}, params: {{ dim: 24 }} }}\n  kar: {{ kind: train-reranker, inputs: {{ data: data, user_knowledge: truth.users, item_knowledge: truth.items }}, params: {{ {SMALL} }} }}\n  mixed: {{ kind: train-reranker, inputs: {{ data: data, user_knowledge: truth.users, item_knowledge: other.items }}, params: {{ {SMALL} }} }}\n  e: {{ kind: evaluate, inputs: {{ data: data, reranker: kar.model, user_knowledge: other.users, item_knowledge: other.items }} }}\n"
        )),
    );
    let r = w.expect(&["p.yaml", "--keep-going", "--json"], 1);
    assert_eq!(r.status_of("mixed"), "failed");
    assert!(r.stderr.contains("user knowledge has dimension 16 but item knowledge 24"), "{}", r.stderr);
    assert_eq!(r.status_of("e"), "failed");
    assert!(r.stderr.contains("trained on knowledge of dimension 16, but these vectors have 24"), "{}", r.stderr);
    // A real dataset has no ground truth to make synthetic knowledge from.
    w.expect(&["synth", "--format", "movielens-1m", "--out", "ml", "--users", "30", "--items", "60"], 0);
    w.write("q.yaml", "pipeline: q\nnodes:\n  data: { kind: load, params: { dataset: movielens-1m, path: ml } }\n  k: { kind: synthetic-knowledge, inputs: { data: data } }\n");
    let r = w.expect(&["q.yaml"], 1);
    assert!(r.stderr.contains("has no ground truth"), "{}", r.stderr);
}

#[test]
fn the_report_prints_the_papers_figures_beside_a_paper_datasets_results() {
    let w = Work::new();
    w.expect(&["synth", "--format", "movielens-1m", "--out", "ml", "--users", "60", "--items", "100"], 0);
    let pipeline = |dataset: &str, path: &str| {
        format!(
            "pipeline: paper\nnodes:\n  data: {{ kind: load, params: {{ dataset: {dataset}, {path} }} }}\n  base: {{ kind: train-reranker, inputs: {{ data: data }}, params: {{ {SMALL} }} }}\n  eval_base: {{ kind: evaluate, inputs: {{ data: data, reranker: base.model }}, params: {{ label: base-dlcm }} }}\n"
        )
    };
    w.write("p.yaml", &pipeline("movielens-1m", "path: ml"));
    w.expect(&["p.yaml"], 0);
    w.expect(&["report", "p.yaml", "--out", "r.html"], 0);
    let html = std::fs::read_to_string(w.path().join("r.html")).unwrap();
    // Table I's DLCM base row on MovieLens-1M stands beside ours.
    assert!(html.contains("<th>paper MAP@5</th><th>paper NDCG@5</th>") && html.contains("<td>0.72815</td><td>0.77053</td></tr>"), "{html}");
    // So does `metrics`.
    let table = w.expect(&["metrics", "p.yaml"], 0).stdout;
    assert!(table.lines().next().unwrap().ends_with("paper MAP@5  paper NDCG@5") && table.lines().nth(1).unwrap().ends_with("0.72815      0.77053"), "{table}");
    // The synthetic world is not in the paper: no paper columns.
    w.write("p.yaml", &pipeline("synthetic", "users: 60, items: 100"));
    w.expect(&["p.yaml"], 0);
    w.expect(&["report", "p.yaml", "--out", "r.html"], 0);
    let html = std::fs::read_to_string(w.path().join("r.html")).unwrap();
    assert!(html.contains("<td>base-dlcm</td>") && !html.contains("paper MAP@5"), "{html}");
}

/// `dagrun metrics` prints the results table in the terminal (the change of a knowledge
/// reranker against its base), and `--compare` puts a variant's results beside it once that
/// variant has run; what is not computed yet is named.
#[test]
fn metrics_prints_the_results_and_compares_a_variant() {
    let w = Work::new();
    w.write(
        "p.yaml",
        &spec(&format!(
            "  base: {{ kind: train-reranker, inputs: {{ data: data }}, params: {{ {SMALL} }} }}\n  kar: {{ kind: train-reranker, inputs: {{ data: data, user_knowledge: truth.users, item_knowledge: truth.items }}, params: {{ {SMALL} }} }}\n  eval_base: {{ kind: evaluate, inputs: {{ data: data, reranker: base.model }}, params: {{ label: base-dlcm }} }}\n  eval_kar: {{ kind: evaluate, inputs: {{ data: data, reranker: kar.model, user_knowledge: truth.users, item_knowledge: truth.items }}, params: {{ label: kar-dlcm }} }}\n"
        )),
    );
    let e = w.expect(&["metrics", "p.yaml"], 1).stderr;
    assert!(e.contains("no metrics for the current params: not computed yet: eval_base, eval_kar (`dagrun run p.yaml` computes them)"), "{e}");
    w.expect(&["p.yaml"], 0);

    let json: serde_json::Value = serde_json::from_str(&w.expect(&["metrics", "p.yaml", "--json"], 0).stdout).unwrap();
    let methods = json["methods"].as_array().unwrap();
    assert_eq!(methods.iter().map(|m| m["method"].as_str().unwrap()).collect::<Vec<_>>(), ["base-dlcm", "kar-dlcm"]);
    assert_eq!(methods[1]["base"], "base-dlcm");
    assert!(methods[0]["base"].is_null() && json["not_computed"].as_array().unwrap().is_empty());
    let (base_map, kar_map) = (methods[0]["map"].as_f64().unwrap(), methods[1]["map"].as_f64().unwrap());
    let table = w.expect(&["metrics", "p.yaml"], 0).stdout;
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["method", "node", "MAP@5", "vs", "base", "NDCG@5", "vs", "base", "CLICK@5", "lists"], "{table}");
    assert_eq!(lines[1][..3], ["base-dlcm", "eval_base", &format!("{base_map:.5}")], "{table}");
    assert_eq!(lines[2][..4], ["kar-dlcm", "eval_kar", &format!("{kar_map:.5}"), &format!("{:+.2}%", (kar_map - base_map) / base_map * 100.0)], "{table}");
    let k3 = w.expect(&["metrics", "p.yaml", "--k", "3"], 0).stdout;
    assert!(k3.starts_with("method") && k3.contains("MAP@3"), "{k3}");
    let e = w.expect(&["metrics", "p.yaml", "--k", "4"], 2).stderr;
    assert!(e.contains("no `evaluate` node reports k = 4: they report k = 1, 3, 5, 7"), "{e}");

    // A variant: the base is the same (cached under the same key), KAR's is not run yet.
    let cmp = ["metrics", "p.yaml", "--compare", "kar.params.lr=0.01"];
    let before = w.expect(&cmp, 0).stdout;
    let row = |out: &str, method: &str| out.lines().find(|l| l.starts_with(method)).map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>()).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(row(&before, "base-dlcm")[2..5], [format!("{base_map:.5}"), format!("{base_map:.5}"), "+0.00%".to_string()], "{before}");
    assert_eq!(row(&before, "kar-dlcm")[3], "-", "{before}");
    assert!(before.contains("not computed yet with kar.params.lr=0.01: eval_kar (`dagrun run p.yaml --set kar.params.lr=0.01` computes them)"), "{before}");
    w.expect(&["p.yaml", "--set", "kar.params.lr=0.01"], 0);
    let after = w.expect(&cmp, 0).stdout;
    let variant: serde_json::Value = serde_json::from_str(&w.expect(&["metrics", "p.yaml", "--set", "kar.params.lr=0.01", "--json"], 0).stdout).unwrap();
    let tuned = variant["methods"][1]["map"].as_f64().unwrap();
    assert_eq!(row(&after, "kar-dlcm")[2..5], [format!("{kar_map:.5}"), format!("{tuned:.5}"), format!("{:+.2}%", (tuned - kar_map) / kar_map * 100.0)], "{after}");
    assert!(!after.contains("not computed"), "{after}");

    // Over seeds: mean and sample standard deviation, and what each seed still lacks.
    let seeds = ["metrics", "p.yaml", "--seeds", "3,4"];
    let before = w.expect(&seeds, 0).stdout;
    assert!(before.contains("not computed yet with seed=4: eval_base, eval_kar (`dagrun run p.yaml --set seed=4` computes them)"), "{before}");
    assert!(row(&before, "kar-dlcm").ends_with(&["1".to_string(), "of".into(), "2".into()]), "{before}");
    w.expect(&["p.yaml", "--set", "seed=4"], 0);
    let at = |seed: &str| -> serde_json::Value { serde_json::from_str(&w.expect(&["metrics", "p.yaml", "--set", &format!("seed={seed}"), "--json"], 0).stdout).unwrap() };
    let (three, four) = (at("3")["methods"][1]["map"].as_f64().unwrap(), at("4")["methods"][1]["map"].as_f64().unwrap());
    assert_eq!(three, kar_map);
    assert_ne!(three, four, "the seed changes the training");
    let after = w.expect(&seeds, 0).stdout;
    let (mean, sd) = ((three + four) / 2.0, (three - four).abs() / 2f64.sqrt());
    assert_eq!(row(&after, "kar-dlcm")[2..5], [format!("{mean:.5}"), "±".to_string(), format!("{sd:.5}")], "{after}");
    assert!(after.lines().next().unwrap().ends_with("seeds") && !after.contains("not computed"), "{after}");
    let json: serde_json::Value = serde_json::from_str(&w.expect(&["metrics", "p.yaml", "--seeds", "3,4", "--json"], 0).stdout).unwrap();
    assert!((json["methods"][1]["map_sd"].as_f64().unwrap() - sd).abs() < 1e-12 && json["methods"][1]["seeds"].as_array().unwrap().len() == 2, "{json}");

    // The report averages the same way, and names what a seed's run lacks.
    let out = w.expect(&["report", "p.yaml", "--seeds", "3,4,5", "--out", "s.html"], 0).stdout;
    assert!(out.contains("not computed yet: eval_base (seed 5), eval_kar (seed 5)"), "{out}");
    let html = std::fs::read_to_string(w.path().join("s.html")).unwrap();
    assert!(html.contains(&format!("<td>{mean:.5} <span class=\"sd\">± {sd:.5}</span> <span class=\"sd\">(2)</span>")) && html.contains("over the runs with seeds 3, 4, 5"), "{html}");

    // Bad overrides are refused as `--set` refuses them.
    let e = w.expect(&["metrics", "p.yaml", "--compare", "nope.params.x=1"], 2).stderr;
    assert!(e.contains("nope"), "{e}");
    // A pipeline that evaluates nothing has no metrics to show.
    w.write("q.yaml", &spec(""));
    let e = w.expect(&["metrics", "q.yaml"], 2).stderr;
    assert!(e.contains("the pipeline has no `evaluate` node: nothing reports metrics"), "{e}");
}
