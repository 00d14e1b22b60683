//! Encoders through the real binary, on a tiny random BERT written by the test (no download):
//! `load` of an encoder directory, `encode` of generated answers (KAR's user text) and of a
//! prompts table, per-row caching, and bad input at plan and run time.

mod common;

use common::Work;

fn models(w: &Work) {
    dagrun_nodes::models::llm::tiny::write_tiny_gguf(&w.path().join("tiny.gguf"), 5).unwrap();
    let c = dagrun_nodes::models::encoder::tiny::config(2, 32, 128);
    dagrun_nodes::models::encoder::tiny::write_dir(&w.path().join("tinybert"), &c, 3, true).unwrap();
}

fn pipeline(users: u32) -> String {
    format!(
        "pipeline: enc\nseed: 3\nnodes:
  data: {{ kind: load, params: {{ dataset: synthetic, users: {users}, items: 60, seed: 1 }} }}
  llm: {{ kind: load, params: {{ model: tiny.gguf }} }}
  bert: {{ kind: load, params: {{ model: tinybert }} }}
  prompts: {{ kind: prompt, inputs: {{ data: data }} }}
  answers: {{ kind: generate, inputs: {{ model: llm, prompts: prompts }}, params: {{ samples: 2, temperature: 0.9, max_new_tokens: 6 }} }}
  users: {{ kind: encode, inputs: {{ model: bert, texts: answers, prompts: prompts }}, params: {{ compose: kar-user }} }}
  prompt_vecs: {{ kind: encode, inputs: {{ model: bert, texts: prompts }}, params: {{ column: prompt, normalize: true, max_length: 64 }} }}
"
    )
}

fn table(w: &Work, node: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&w.expect(&["show", "p.yaml", node, "--format", "json", "--rows", "1000"], 0).stdout).unwrap()
}

#[test]
fn encodes_answers_and_prompts_and_a_grown_table_encodes_only_new_rows() {
    let w = Work::new();
    models(&w);
    w.write("p.yaml", &pipeline(5));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("users"), "ran", "{}", r.stderr);
    assert!(r.stderr.contains("BERT, 2 layers, width 32, 4 heads"), "{}", r.stderr);
    assert!(r.stderr.contains("encoder loaded in"), "{}", r.stderr);
    // Answers keep their keys and samples; a prompts table has no sample column.
    let header = w.expect(&["show", "p.yaml", "users", "--format", "csv"], 0).stdout;
    assert!(header.starts_with("id,key,sample,vector\n"), "{header}");
    let header = w.expect(&["show", "p.yaml", "prompt_vecs", "--format", "csv"], 0).stdout;
    assert!(header.starts_with("id,key,vector\n"), "{header}");
    let users = table(&w, "users");
    assert_eq!(users.len(), 10);
    let v = users[0]["vector"].as_array().unwrap();
    assert_eq!(v.len(), 32);
    // normalize: true gives unit vectors.
    for row in table(&w, "prompt_vecs") {
        let n: f64 = row["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
        assert!((n - 1.0).abs() < 1e-4, "{n}");
    }
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 7);
    // Another batch size reruns the node with every vector from the row cache: the weights
    // are not even read, and the table is the same.
    let r = w.expect(&["p.yaml", "--json", "--set", "users.batch_size=3"], 0);
    assert_eq!(r.status_of("users"), "ran", "{}", r.stderr);
    assert!(r.stderr.contains("10 of 10 rows from the row cache") && !r.stderr.contains("encoder loaded in"), "{}", r.stderr);
    assert_eq!(table(&w, "users"), users);

    // More users: old users' texts are unchanged, so their vectors come from the row cache.
    w.write("p.yaml", &pipeline(8));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("users"), "ran");
    let line = r.stderr.lines().find(|l| l.contains("users") && l.contains("from the row cache")).unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(line.contains("of 16 rows from the row cache"), "{line}");
    let grown = table(&w, "users");
    let old: Vec<(String, i64, String)> = users.iter().map(|r| (r["key"].to_string(), r["sample"].as_i64().unwrap(), r["vector"].to_string())).collect();
    let kept = grown.iter().filter(|r| old.contains(&(r["key"].to_string(), r["sample"].as_i64().unwrap(), r["vector"].to_string()))).count();
    assert!(kept >= 6, "most old users keep their vectors: {kept} of 10");

    // Row results only the first run used: gc reports them and keeps them unless --rows.
    w.write("p.yaml", &pipeline(8).replace("normalize: true", "normalize: false"));
    w.expect(&["p.yaml"], 0);
    let gc = w.expect(&["cache", "gc", "--json"], 0).json();
    let unused = gc["row_entries_unused"].as_u64().unwrap();
    // Unused by the last run: prompt_vecs' normalised vectors, and the rows of the nodes it
    // found cached whole (generate, users).
    assert!(unused > 0 && gc["row_entries_removed"] == 0, "{gc}");
    let gc = w.expect(&["cache", "gc", "--rows", "--json"], 0).json();
    assert_eq!(gc["row_entries_removed"].as_u64().unwrap(), unused, "{gc}");
    assert_eq!(w.expect(&["cache", "gc", "--rows", "--json"], 0).json()["row_entries_removed"], 0);
    // Everything the latest run made is still cached.
    assert!(w.expect(&["p.yaml", "--json"], 0).with_status("ran").is_empty());
}

#[test]
fn bad_encode_wiring_and_params_are_plan_time_errors() {
    let w = Work::new();
    models(&w);
    let with = |from: &str, to: &str| {
        w.write("p.yaml", &pipeline(4).replace(from, to));
        w.expect(&["plan", "p.yaml"], 2).stderr
    };
    let e = with("inputs: { model: bert, texts: answers", "inputs: { model: llm, texts: answers");
    assert!(e.contains("users") && e.contains("input `model` expects Encoder, but `llm.model` is Llm"), "{e}");
    let e = with("inputs: { model: bert, texts: prompts }", "inputs: { model: bert, texts: llm }");
    assert!(e.contains("input `texts` expects a table, but `llm.model` is Llm"), "{e}");
    let e = with(", prompts: prompts }, params: { compose: kar-user }", " }, params: { compose: kar-user }");
    assert!(e.contains("required input `prompts` (Prompts) is not connected"), "{e}");
    let e = with("max_length: 64", "max_length: 2");
    assert!(e.contains("max_length") && e.contains("at least 3"), "{e}");
    let e = with("compose: kar-user", "compose: kar");
    assert!(e.contains("compose"), "{e}");
    // A model the files contradict, and a hub model of unknown family.
    let e = with("model: tinybert }", "model: tinybert, model_type: llama }");
    assert!(e.contains("`model_type: llama` was given, but tinybert is a bert model"), "{e}");
    let e = with("model: tinybert }", "model: hf:someone/some-bert }");
    assert!(e.contains("hf:someone/some-bert: say which family it is with `model_type: llama` or `model_type: bert`"), "{e}");
    let e = with("seed: 1 }", "seed: 1, model_type: bert }");
    assert!(e.contains("model_type") && e.contains("goes with `model:`"), "{e}");
    let e = with("model: tinybert }", "model: all-minilm }");
    assert!(e.contains("smollm2-135m-instruct, all-minilm-l6-v2"), "{e}");
}

#[test]
fn bad_columns_and_models_fail_the_node_with_a_clear_error() {
    let w = Work::new();
    models(&w);
    let run = |from: &str, to: &str| {
        w.write("p.yaml", &pipeline(4).replace(from, to));
        w.expect(&["p.yaml", "--json"], 1)
    };
    let r = run("column: prompt", "column: prompts");
    assert_eq!(r.status_of("prompt_vecs"), "failed");
    assert!(r.stderr.contains("the `texts` table has no `prompts` column; it has `id` (Int32), `key` (Utf8)"), "{}", r.stderr);
    // `explain`, counting the node's rows, says the same.
    let e = w.expect(&["explain", "p.yaml", "prompt_vecs"], 0).stdout;
    assert!(e.contains("  rows     not counted: the `texts` table has no `prompts` column; it has `id` (Int32), `key` (Utf8)"), "{e}");
    w.write("p.yaml", &pipeline(4).replace("texts: prompts }, params: { column: prompt", "texts: answers }, params: { column: tokens"));
    let r = w.expect(&["p.yaml", "--json"], 1);
    assert!(r.stderr.contains("column `tokens` holds Int32, not text"), "{}", r.stderr);
    // A directory whose weights are broken fails `load` with the file named and caches nothing.
    std::fs::write(w.path().join("tinybert/model.safetensors"), b"not weights").unwrap();
    w.write("p.yaml", &pipeline(4));
    let r = w.expect(&["p.yaml", "--json"], 1);
    assert_eq!(r.status_of("bert"), "failed");
    assert!(r.stderr.contains("model.safetensors: not a safetensors file"), "{}", r.stderr);
}

#[test]
fn bench_encode_refuses_a_model_that_is_not_an_encoder() {
    let w = Work::new();
    models(&w);
    let e = w.expect(&["bench", "encode", "--model", "tiny.gguf"], 2).stderr;
    assert!(e.contains("--model tiny.gguf: a llama model, not an encoder"), "{e}");
    let e = w.expect(&["bench", "encode", "--model", "tinybert", "--texts", "0"], 2).stderr;
    assert!(e.contains("--texts, --batch and --repeats must be at least 1"), "{e}");
}

/// RoBERTa, MPNet and DistilBERT directories (`fixtures/encoder/roberta-tiny/`, `mpnet-tiny/`,
/// `distilbert-tiny/`, saved by transformers) load as encoders, named as such, and encode a
/// prompts table, their texts cut to the 64 tokens their positions hold.
#[test]
fn other_encoder_directories_load_and_encode() {
    for (fixture, family) in [("roberta-tiny", "RoBERTa"), ("mpnet-tiny", "MPNet"), ("distilbert-tiny", "DistilBERT")] {
        let w = Work::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/encoder").join(fixture);
        let spec = format!(
            "pipeline: enc\nseed: 3\nnodes:
  data: {{ kind: load, params: {{ dataset: synthetic, users: 4, items: 60, seed: 1 }} }}
  enc: {{ kind: load, params: {{ model: \"{}\" }} }}
  prompts: {{ kind: prompt, inputs: {{ data: data }} }}
  vecs: {{ kind: encode, inputs: {{ model: enc, texts: prompts }}, params: {{ column: prompt }} }}
",
            dir.display()
        );
        w.write("p.yaml", &spec);
        let r = w.expect(&["p.yaml", "--json"], 0);
        assert!(r.stderr.contains(&format!("{family}, 2 layers, width 32, 4 heads, vocabulary 400, 64 positions")), "{}", r.stderr);
        let rows = table(&w, "vecs");
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r["vector"].as_array().unwrap().len() == 32));
    }
}

/// `generate` and `encode` split over workers with `dagrun shard` (each its own cache, one
/// shared-directory remote): the driver generates and encodes nothing, reads every row from
/// the remote, and its tables are those of a single machine to the bit.
#[test]
fn generate_and_encode_sharded_over_workers_give_the_single_machine_tables() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let alone = Work::new();
    models(&alone);
    alone.write("p.yaml", &pipeline(12));
    let single = alone.expect(&["p.yaml", "--json"], 0);
    for node in ["answers", "users"] {
        for i in ["0", "1", "2"] {
            let worker = Work::new();
            models(&worker);
            worker.write("p.yaml", &pipeline(12));
            let r = worker.expect(&["shard", "p.yaml", node, "--count", "3", "--index", i, "--remote", &url], 0);
            assert!(r.stderr.contains(&format!("shard {i}/3 of `{node}`: ")), "{}", r.stderr);
            // The first `users` worker needs `answers` whole: it assembles it from the shards'
            // rows (and pushes it), generating nothing.
            if node == "users" && i == "0" {
                assert!(r.stderr.contains("24 of 24 answers from the row cache (24 of them from the remote); generating 0"), "{}", r.stderr);
            }
            // The last worker's `explain` counts every row done: its own shard's here, the
            // others' in the remote (so the keys it derives are those the runs used).
            if i == "2" {
                let e = worker.expect(&["explain", "p.yaml", node, "--remote", &url], 0).stdout;
                let all = e.lines().find_map(|l| l.strip_prefix("  rows     ")).unwrap_or_else(|| panic!("{e}"));
                let unit = if node == "answers" { "answers" } else { "texts" };
                let (done, rest) = all.split_once(" of ").unwrap_or_else(|| panic!("{all}"));
                let (here, rest) = rest.strip_prefix(&format!("{done} {unit} already computed (")).and_then(|r| r.split_once(" here, ")).unwrap_or_else(|| panic!("{all}"));
                let remote = rest.strip_suffix(" in the remote); 0 to compute").unwrap_or_else(|| panic!("{all}"));
                let count = |s: &str| s.parse::<usize>().unwrap_or_else(|_| panic!("{all}"));
                assert!(count(here) > 0 && count(remote) > 0 && count(here) + count(remote) == count(done), "{all}");
                if node == "answers" {
                    assert_eq!(done, "24");
                }
            }
        }
    }
    let driver = Work::new();
    models(&driver);
    driver.write("p.yaml", &pipeline(12));
    let r = driver.expect(&["p.yaml", "--json", "--until", "users", "--remote", &url], 0);
    assert_eq!(r.status_of("answers"), "remote");
    assert!(r.stderr.contains("24 of 24 rows from the row cache or repeated texts (") && r.stderr.contains(" from the remote); encoding 0"), "{}", r.stderr);
    assert!(!r.stderr.contains("encoder loaded in"), "{}", r.stderr);
    for node in ["answers", "users"] {
        assert_eq!(r.digest_of(node), single.digest_of(node), "{node}");
    }
}
