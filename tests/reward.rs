//! `reward-score` through the real binary on tiny models written by the test: sampled answers
//! become knowledge vectors, a KAR reranker trained on them scores every sample per user.

mod common;

use common::Work;

fn models(w: &Work) {
    dagrun_nodes::models::llm::tiny::write_tiny_gguf(&w.path().join("tiny.gguf"), 5).unwrap();
    let c = dagrun_nodes::models::encoder::tiny::config(1, 32, 128);
    dagrun_nodes::models::encoder::tiny::write_dir(&w.path().join("tinybert"), &c, 3, false).unwrap();
}

const PIPELINE: &str = "pipeline: reward\nseed: 3\nnodes:
  data: { kind: load, params: { dataset: synthetic, users: 24, items: 60, seed: 1 } }
  llm: { kind: load, params: { model: tiny.gguf } }
  bert: { kind: load, params: { model: tinybert } }
  prompts: { kind: prompt, inputs: { data: data } }
  item_prompts: { kind: prompt, inputs: { data: data }, params: { template: facts } }
  answers: { kind: generate, inputs: { model: llm, prompts: prompts }, params: { samples: 3, temperature: 1.0, max_new_tokens: 6 } }
  users: { kind: encode, inputs: { model: bert, texts: answers, prompts: prompts }, params: { compose: kar-user } }
  items: { kind: encode, inputs: { model: bert, texts: item_prompts }, params: { column: prompt } }
  kar: { kind: train-reranker, inputs: { data: data, user_knowledge: users, item_knowledge: items }, params: { epochs: 1 } }
  rewards: { kind: reward-score, inputs: { reranker: kar.model, data: data, user_knowledge: users, item_knowledge: items } }
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
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 10);

    // Another metric: only reward-score reruns, and the reward is MAP@3 now.
    w.write("p.yaml", &PIPELINE.replace("item_knowledge: items } }\n", "item_knowledge: items }, params: { metric: map@3 } }\n"));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran"), vec!["rewards"]);
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
}
