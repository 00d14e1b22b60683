//! `reward-score` and `pair-select` through the real binary on tiny models written by the
//! test: sampled answers become knowledge vectors, a KAR reranker trained on them scores every
//! sample per user, and each user's best and worst answers become a DPO pair.

mod common;

use common::Work;

fn models(w: &Work) {
    dagrun_nodes::models::llm::tiny::write_tiny_gguf(&w.path().join("tiny.gguf"), 5).unwrap();
    let c = dagrun_nodes::models::encoder::tiny::config(1, 32, 128);
    dagrun_nodes::models::encoder::tiny::write_dir(&w.path().join("tinybert"), &c, 3, false).unwrap();
}

// User knowledge is the answer alone here: KAR's user text puts the history first, and the tiny
// encoder's 128 positions would cut the answers off, leaving every sample the same vector.
const PIPELINE: &str = "pipeline: reward\nseed: 3\nnodes:
  data: { kind: load, params: { dataset: synthetic, users: 24, items: 60, seed: 1 } }
  llm: { kind: load, params: { model: tiny.gguf } }
  bert: { kind: load, params: { model: tinybert } }
  prompts: { kind: prompt, inputs: { data: data } }
  item_prompts: { kind: prompt, inputs: { data: data }, params: { template: facts } }
  answers: { kind: generate, inputs: { model: llm, prompts: prompts }, params: { samples: 3, temperature: 1.0, max_new_tokens: 6 } }
  users: { kind: encode, inputs: { model: bert, texts: answers } }
  items: { kind: encode, inputs: { model: bert, texts: item_prompts }, params: { column: prompt } }
  kar: { kind: train-reranker, inputs: { data: data, user_knowledge: users, item_knowledge: items }, params: { epochs: 1 } }
  rewards: { kind: reward-score, inputs: { reranker: kar.model, data: data, user_knowledge: users, item_knowledge: items } }
  pairs: { kind: pair-select, inputs: { scores: rewards, answers: answers, prompts: prompts } }
";

fn scores(w: &Work) -> Vec<serde_json::Value> {
    serde_json::from_str(&w.expect(&["show", "p.yaml", "rewards", "--format", "json", "--rows", "10000"], 0).stdout).unwrap()
}

#[test]
fn every_training_user_gets_a_reward_per_sample() {
    let w = Work::new();
    models(&w);
    w.write("p.yaml", PIPELINE);
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("rewards"), "ran", "{}", r.stderr);
    let rows = scores(&w);
    let users: std::collections::BTreeSet<i64> = rows.iter().map(|r| r["user"].as_i64().unwrap()).collect();
    assert!(!users.is_empty());
    assert_eq!(rows.len(), users.len() * 3, "three samples per user");
    for r in &rows {
        let reward = r["reward"].as_f64().unwrap();
        assert_eq!(reward, r["ndcg"].as_f64().unwrap(), "the default reward is NDCG@5");
        assert!((0.0..=1.0).contains(&reward) && r["lists"].as_i64().unwrap() >= 1);
        assert!(!r["key"].as_str().unwrap().is_empty());
    }
    // Different answers give different vectors, and so (somewhere) different rewards.
    let distinct: std::collections::BTreeSet<String> = rows.iter().map(|r| r["reward"].to_string()).collect();
    assert!(distinct.len() > 1, "{rows:?}");
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 11);

    // Pairs: the best and worst sample of each user whose rewards differ, with their texts.
    let pairs: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "pairs", "--format", "json", "--rows", "1000"], 0).stdout).unwrap();
    let answers: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "answers", "--format", "json", "--rows", "1000"], 0).stdout).unwrap();
    assert!(!pairs.is_empty() && pairs.len() <= users.len());
    for p in &pairs {
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| r["key"] == p["key"]).collect();
        let best = mine.iter().map(|r| r["reward"].as_f64().unwrap()).fold(f64::MIN, f64::max);
        let worst = mine.iter().map(|r| r["reward"].as_f64().unwrap()).fold(f64::MAX, f64::min);
        assert_eq!((p["chosen_reward"].as_f64().unwrap(), p["rejected_reward"].as_f64().unwrap()), (best, worst));
        assert!(p["margin"].as_f64().unwrap() > 0.0);
        let text = |s: &serde_json::Value| answers.iter().find(|a| a["key"] == p["key"] && a["sample"] == *s).unwrap()["text"].clone();
        assert_eq!(p["chosen"], text(&p["chosen_sample"]));
        assert_eq!(p["rejected"], text(&p["rejected_sample"]));
        assert!(p["prompt"].as_str().unwrap().contains("Analyze the user's preferences"));
    }

    // max_pairs keeps the most decisive pairs.
    let margins: Vec<f64> = pairs.iter().map(|p| p["margin"].as_f64().unwrap()).collect();
    assert!(margins.len() > 2, "{margins:?}");
    w.write("p.yaml", &PIPELINE.replace("prompts: prompts } }\n", "prompts: prompts }, params: { max_pairs: 2 } }\n"));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran"), vec!["pairs".to_string()]);
    assert!(r.stderr.contains(&format!("and {} beyond max_pairs", margins.len() - 2)), "{}", r.stderr);
    let capped: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "pairs", "--format", "json"], 0).stdout).unwrap();
    let mut sorted = margins.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(capped.len(), 2);
    assert!(capped.iter().all(|p| p["margin"].as_f64().unwrap() >= sorted[1]), "{capped:?} vs {sorted:?}");

    // Another metric: only reward-score (and what reads it) reruns; the reward is MAP@3 now.
    w.write("p.yaml", &PIPELINE.replace("item_knowledge: items } }\n", "item_knowledge: items }, params: { metric: map@3 } }\n"));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert!(r.with_status("ran").iter().all(|n| n == "rewards" || n == "pairs"), "{:?}", r.with_status("ran"));
    for r in scores(&w) {
        assert_eq!(r["reward"].as_f64().unwrap(), r["map"].as_f64().unwrap());
    }
}

#[test]
fn bad_metrics_and_rerankers_without_knowledge_are_plan_time_errors() {
    let w = Work::new();
    models(&w);
    w.write("p.yaml", &PIPELINE.replace("item_knowledge: items } }\n", "item_knowledge: items }, params: { metric: auc@5 } }\n"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("rewards") && e.contains("metric") && e.contains("expected ndcg@K or map@K"), "{e}");
    let plain = PIPELINE.replace(
        "  kar: { kind: train-reranker, inputs: { data: data, user_knowledge: users, item_knowledge: items }, params: { epochs: 1 } }",
        "  kar: { kind: train-reranker, inputs: { data: data }, params: { epochs: 1 } }",
    );
    w.write("p.yaml", &plain);
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("input `reranker` expects KnowledgeReranker, but `kar.model` is Reranker"), "{e}");
    w.write("p.yaml", &PIPELINE.replace("prompts: prompts } }\n", "prompts: prompts }, params: { max_pairs: 0 } }\n"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("max_pairs") && e.contains("must be at least 1"), "{e}");
    w.write("p.yaml", &PIPELINE.replace("prompts: prompts } }\n", "prompts: prompts }, params: { min_margin: -1 } }\n"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("min_margin") && e.contains("must be 0 or more"), "{e}");
    // A margin no user reaches: the node fails and says why.
    w.write("p.yaml", &PIPELINE.replace("prompts: prompts } }\n", "prompts: prompts }, params: { min_margin: 2 } }\n"));
    let r = w.expect(&["p.yaml", "--json"], 1);
    assert_eq!(r.status_of("pairs"), "failed");
    assert!(r.stderr.contains("no pairs: all") && r.stderr.contains("below min_margin"), "{}", r.stderr);
}

#[test]
fn dpo_tunes_the_llm_on_the_pairs_and_the_tuned_model_generates() {
    let w = Work::new();
    models(&w);
    let pipeline = format!(
        "{PIPELINE}  tuned: {{ kind: dpo, inputs: {{ model: llm, pairs: pairs }}, params: {{ epochs: 1, grad_accum: 2, lr: 0.01, max_length: 4096 }} }}
  after: {{ kind: generate, inputs: {{ model: tuned.model, prompts: prompts }}, params: {{ temperature: 0, max_new_tokens: 4 }} }}
"
    );
    w.write("p.yaml", &pipeline);
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("tuned"), "ran", "{}", r.stderr);
    assert_eq!(r.status_of("after"), "ran", "{}", r.stderr);
    let pairs: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "pairs", "--format", "json", "--rows", "1000"], 0).stdout).unwrap();
    let log: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "tuned.log", "--format", "json"], 0).stdout).unwrap();
    // One epoch of ceil(pairs / 2 / 2) steps (the tiny byte-level model's prompts need
    // max_length 4096); step 0 is DPO's fixed point.
    assert_eq!(log.len(), pairs.len().div_ceil(4), "{} pairs: {log:?}", pairs.len());
    assert!((log[0]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-6, "{log:?}");
    assert_eq!(log[0]["rewards_margins"].as_f64().unwrap(), 0.0);
    assert_eq!(log.last().unwrap()["pairs"].as_i64().unwrap() as usize, pairs.len());
    assert!(r.stderr.contains("LoRA rank 8, alpha 16 on q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"), "{}", r.stderr);
    let after: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "after", "--format", "json", "--rows", "1000"], 0).stdout).unwrap();
    assert!(!after.is_empty());
    // The tuned model is a Hugging Face directory.
    let files = w.expect(&["show", "p.yaml", "tuned.model"], 0).stdout;
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        assert!(files.contains(f), "{files}");
    }
    assert!(w.expect(&["p.yaml", "--json"], 0).with_status("ran").is_empty());
    // The report shows the DPO curves and the reward and margin distributions.
    let out = w.expect(&["report", "p.yaml", "--out", "r.html"], 0).stdout;
    assert!(out.contains("wrote r.html") && out.contains("1 DPO logs"), "{out}");
    let html = std::fs::read_to_string(w.path().join("r.html")).unwrap();
    assert!(html.contains("<h2>DPO: tuned</h2>") && html.contains("rewards: reward per answer") && html.contains("pairs: chosen − rejected margin"), "{html}");
    assert!(!html.contains("Not computed yet"));
    // β changes: DPO and what reads its model rerun, nothing upstream.
    w.write("p.yaml", &pipeline.replace("lr: 0.01", "lr: 0.01, beta: 0.5"));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran"), vec!["tuned".to_string(), "after".to_string()]);
    // A node whose inputs changed and that has not run again is reported as not computed.
    w.write("p.yaml", &pipeline.replace("lr: 0.01", "lr: 0.02"));
    let out = w.expect(&["report", "p.yaml", "--out", "r.html"], 0).stdout;
    assert!(out.contains("not computed yet: tuned"), "{out}");
}

#[test]
fn dpo_refuses_bad_settings_and_never_caches_a_diverged_model() {
    let w = Work::new();
    models(&w);
    let node = |params: &str| format!("{PIPELINE}  tuned: {{ kind: dpo, inputs: {{ model: llm, pairs: pairs }}, params: {{ {params} }} }}\n");
    for (params, expect) in [
        ("beta: 0", "must be a positive number"),
        ("lora_targets: []", "name at least one of q, k, v, o, gate, up, down"),
        ("lora_targets: [qkv]", "lora_targets"),
        ("label_smoothing: 0.5", "must be in [0, 0.5)"),
        ("grad_accum: 0", "must be at least 1"),
    ] {
        w.write("p.yaml", &node(params));
        let e = w.expect(&["plan", "p.yaml"], 2).stderr;
        assert!(e.contains("tuned") && e.contains(expect), "{params}: {e}");
    }
    w.write("p.yaml", &node("lr: 1.0e30, max_grad_norm: 0, finetuning: full, grad_accum: 1, epochs: 3"));
    for _ in 0..2 {
        let r = w.expect(&["p.yaml", "--json"], 1);
        assert_eq!(r.status_of("tuned"), "failed");
        assert!(r.stderr.contains("nothing was saved"), "{}", r.stderr);
    }
    // Prompts longer than max_length leave no pair to train on.
    w.write("p.yaml", &node("max_length: 8"));
    let r = w.expect(&["p.yaml", "--json"], 1);
    assert!(r.stderr.contains("no pair fits max_length 8"), "{}", r.stderr);
    // A Mistral attends within its 12-token sliding window, so pairs and prompts longer than
    // the window train and generate.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/llm/mistral-tiny");
    std::fs::create_dir(w.path().join("mistral")).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"] {
        std::fs::copy(fixture.join(f), w.path().join("mistral").join(f)).unwrap();
    }
    let pipeline = format!("{PIPELINE}  mistral: {{ kind: load, params: {{ model: mistral }} }}\n  tuned: {{ kind: dpo, inputs: {{ model: mistral, pairs: pairs }}, params: {{ epochs: 1 }} }}\n  late: {{ kind: generate, inputs: {{ model: mistral, prompts: prompts }}, params: {{ max_new_tokens: 16 }} }}\n");
    w.write("p.yaml", &pipeline);
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert!(r.stderr.contains("Mistral, 2 layers"), "{}", r.stderr);
    // Past the model's context, pairs are refused saying how to make them fit, and a prompt
    // is named by its key.
    let config = std::fs::read_to_string(fixture.join("config.json")).unwrap();
    w.write("mistral/config.json", &config.replace("\"max_position_embeddings\": 4096", "\"max_position_embeddings\": 64"));
    let r = w.expect(&["p.yaml", "--json", "-k"], 1);
    assert_eq!([r.status_of("tuned"), r.status_of("late")], ["failed", "failed"]);
    let e = &r.stderr;
    assert!(e.contains("tokens long (prompt ") && e.contains("more than the model's context of 64") && e.contains("set max_length to at most 64"), "{e}");
    assert!(e.contains("[late] failed: prompt ") && e.contains("with max_new_tokens 16 that passes the model's context of 64"), "{e}");
}

#[test]
fn taste_match_checks_answers_against_the_synthetic_truth_and_needs_it() {
    let w = Work::new();
    models(&w);
    let pipeline = format!("{PIPELINE}  tastes: {{ kind: taste-match, inputs: {{ data: data, answers: answers }} }}\n");
    w.write("p.yaml", &pipeline);
    let r = w.expect(&["p.yaml", "--json", "--until", "tastes"], 0);
    assert!(r.stderr.contains("answers: ") && r.stderr.contains("name one of the user's top 2 genres"), "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "tastes", "--format", "json", "--rows", "1000"], 0).stdout).unwrap();
    let answers: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "answers", "--format", "json", "--rows", "1000"], 0).stdout).unwrap();
    assert_eq!(rows.len(), answers.len());
    assert!(rows.iter().all(|r| r["names_liked"].is_boolean() && r["test"].is_boolean()));
    // One sample index only.
    w.write("p.yaml", &pipeline.replace("answers: answers } }\n", "answers: answers }, params: { sample: 1 } }\n"));
    w.expect(&["p.yaml", "--until", "tastes"], 0);
    let one: Vec<serde_json::Value> = serde_json::from_str(&w.expect(&["show", "p.yaml", "tastes", "--format", "json", "--rows", "1000"], 0).stdout).unwrap();
    assert_eq!(one.len(), answers.len() / 3);
    assert!(one.iter().all(|r| r["sample"] == 1));
    w.write("p.yaml", &pipeline.replace("answers: answers } }\n", "answers: answers }, params: { sample: 7 } }\n"));
    let r = w.expect(&["p.yaml", "--json", "--until", "tastes"], 1);
    assert!(r.stderr.contains("no answers with sample 7 to judge"), "{}", r.stderr);
    // Real-format data has no ground truth: a clear failure.
    w.expect(&["synth", "--format", "movielens-1m", "--out", "ml", "--users", "30", "--items", "80"], 0);
    let real = "pipeline: real\nnodes:
  data: { kind: load, params: { dataset: movielens-1m, path: ml } }
  llm: { kind: load, params: { model: tiny.gguf } }
  prompts: { kind: prompt, inputs: { data: data } }
  answers: { kind: generate, inputs: { model: llm, prompts: prompts }, params: { temperature: 0, max_new_tokens: 2 } }
  tastes: { kind: taste-match, inputs: { data: data, answers: answers } }
";
    w.write("real.yaml", real);
    let r = w.expect(&["real.yaml", "--json"], 1);
    assert_eq!(r.status_of("tastes"), "failed");
    assert!(r.stderr.contains("no ground-truth tastes: taste-match needs the synthetic world"), "{}", r.stderr);
}
