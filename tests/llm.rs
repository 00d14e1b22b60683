//! LLM loading and generation through the real binary, on a tiny random model written by the
//! test (no download): `load` with `model:`, `generate`, per-row caching, and bad input.

mod common;

use common::Work;

fn tiny(w: &Work) {
    dagrun_nodes::models::llm::tiny::write_tiny_gguf(&w.path().join("tiny.gguf"), 5).unwrap();
}

fn pipeline(users: u32, samples: u32) -> String {
    format!(
        "pipeline: gen\nseed: 3\nnodes:\n  data: {{ kind: load, params: {{ dataset: synthetic, users: {users}, items: 60, seed: 1 }} }}\n  llm: {{ kind: load, params: {{ model: tiny.gguf }} }}\n  prompts: {{ kind: prompt, inputs: {{ data: data }} }}\n  answers: {{ kind: generate, inputs: {{ model: llm, prompts: prompts }}, params: {{ samples: {samples}, temperature: 0.9, top_p: 0.95, max_new_tokens: 8 }} }}\n"
    )
}

fn answers(w: &Work) -> Vec<serde_json::Value> {
    serde_json::from_str(&w.expect(&["show", "p.yaml", "answers", "--format", "json", "--rows", "1000"], 0).stdout).unwrap()
}

#[test]
fn generates_every_sample_and_a_grown_prompt_table_generates_only_new_rows() {
    let w = Work::new();
    tiny(&w);
    w.write("p.yaml", &pipeline(6, 2));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("answers"), "ran", "{}", r.stderr);
    assert!(r.stderr.contains("Llama, 2 layers, width 32"), "{}", r.stderr);
    // What the GGUF stores: the tiny model's 15 matrices (embedding included) and 5 norms.
    assert!(r.stderr.contains("; tensors F32 ×20"), "{}", r.stderr);
    let header = w.expect(&["show", "p.yaml", "answers", "--format", "csv"], 0).stdout;
    assert!(header.starts_with("id,key,sample,text,tokens,finish,logprob\n"), "{header}");
    let rows = answers(&w);
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r["finish"] == "length" || r["finish"] == "eos"), "{rows:?}");
    assert!(rows.iter().all(|r| r["logprob"].as_f64().unwrap() < 0.0));
    // Rerun: everything cached.
    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 4);
    // Loading models is at version 2 (a corrected GGUF tokenization is recorded in the
    // artifact), loading datasets still at 1, so their caches stay valid.
    assert!(w.expect(&["explain", "p.yaml", "llm"], 0).stdout.contains("(kind `load`, implementation version 2)"));
    assert!(w.expect(&["explain", "p.yaml", "data"], 0).stdout.contains("(kind `load`, implementation version 1)"));

    // More users: the old users' prompts are unchanged, so only the new rows are generated, and
    // the old rows' answers are the same as before.
    w.write("p.yaml", &pipeline(9, 2));
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("answers"), "ran");
    let reused = r.stderr.lines().find(|l| l.contains("answers from the row cache")).unwrap_or_else(|| panic!("{}", r.stderr)).to_string();
    let grown = answers(&w);
    assert_eq!(grown.len(), 18);
    // Internal ids may be renumbered as the world grows; the raw key and the answer may not.
    let strip = |r: &serde_json::Value| {
        let mut r = r.clone();
        r.as_object_mut().unwrap().remove("id");
        r
    };
    let grown: Vec<serde_json::Value> = grown.iter().map(strip).collect();
    let same = rows.iter().map(strip).filter(|r| grown.contains(r)).count();
    assert!(reused.contains("of 18 answers from the row cache"), "{reused}");
    let n: usize = reused.split_whitespace().skip_while(|w| !w.ends_with(']')).nth(1).and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("{reused}"));
    assert_eq!(n, same, "{reused}");
    assert!(same >= 8, "most old users keep their prompt and answers: {same} of 12");
}

/// The other architectures (Qwen2: q/k/v biases; Qwen3: an RMSNorm on every q and k head;
/// Phi-3: q/k/v and gate/up each one matrix; Gemma 2 and 3: norms after attention and the MLP,
/// and Gemma 3's head norms) load, are named as such with what their GGUF stores, and generate.
#[test]
fn other_architectures_load_and_generate() {
    use dagrun_nodes::models::llm::config::Architecture;
    for (architecture, log) in [
        // 20 tensors as the Llama, plus q/k/v biases in both layers.
        (Architecture::Qwen2, "Qwen2, 2 layers, width 32, 4 heads (2 KV), vocabulary 258; tensors F32 ×26"),
        // 20 tensors as the Llama, plus q and k norms in both layers.
        (Architecture::Qwen3, "Qwen3, 2 layers, width 32, 4 heads (2 KV), vocabulary 258; tensors F32 ×24"),
        // Per layer: two norms, attn_qkv, attn_output, ffn_up (gate and up), ffn_down.
        (Architecture::Phi3, "Phi-3, 2 layers, width 32, 4 heads (2 KV), vocabulary 258; tensors F32 ×14"),
        // 20 tensors as the Llama, plus two output norms in both layers.
        (Architecture::Gemma2, "Gemma 2, 2 layers, width 32, 4 heads (2 KV), vocabulary 258; tensors F32 ×24"),
        // And q and k norms.
        (Architecture::Gemma3, "Gemma 3, 2 layers, width 32, 4 heads (2 KV), vocabulary 258; tensors F32 ×28"),
    ] {
        let w = Work::new();
        dagrun_nodes::models::llm::tiny::write_tiny_gguf_of(architecture, &w.path().join("tiny.gguf"), 5).unwrap();
        w.write("p.yaml", &pipeline(3, 2));
        let r = w.expect(&["p.yaml", "--json"], 0);
        assert_eq!(r.status_of("answers"), "ran", "{}", r.stderr);
        assert!(r.stderr.contains(log), "{architecture:?}: {}", r.stderr);
        let rows = answers(&w);
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|r| r["logprob"].as_f64().unwrap() < 0.0), "{rows:?}");
    }
}

#[test]
fn answers_from_the_row_cache_are_the_generated_ones_bit_for_bit() {
    // A batch size changes how rows are scheduled, not what they are: every answer comes from
    // the row cache, and the table is the generated one to the last bit of each log-prob (so
    // the nodes after it see the same digest and stay cached).
    let w = Work::new();
    tiny(&w);
    w.write("p.yaml", &pipeline(40, 4));
    let generated = w.expect(&["p.yaml", "--json"], 0);
    assert!(generated.stderr.contains("model loaded in"), "{}", generated.stderr);
    let first = generated.digest_of("answers");
    let r = w.expect(&["p.yaml", "--json", "--set", "answers.batch_size=3"], 0);
    assert_eq!(r.status_of("answers"), "ran", "{}", r.stderr);
    assert!(r.stderr.contains("160 of 160 answers from the row cache"), "{}", r.stderr);
    // With nothing to generate, the weights are not even read.
    assert!(!r.stderr.contains("model loaded in"), "{}", r.stderr);
    assert_eq!(r.digest_of("answers"), first, "answers from the row cache differ from the generated ones");
}

#[test]
fn bad_generate_params_and_models_are_plan_time_errors() {
    let w = Work::new();
    tiny(&w);
    w.write("p.yaml", &pipeline(4, 1).replace("temperature: 0.9", "temperature: 0").replace("samples: 1", "samples: 3"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("p.yaml:") && e.contains("answers") && e.contains("samples") && e.contains("greedy"), "{e}");
    w.write("p.yaml", &pipeline(4, 1).replace("top_p: 0.95", "top_p: 1.5"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("top_p") && e.contains("(0, 1]"), "{e}");
    w.write("p.yaml", &pipeline(4, 1).replace("model: tiny.gguf", "model: smollm2"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("`smollm2` is neither a known model (smollm2-135m-instruct, all-minilm-l6-v2)"), "{e}");
    w.write("p.yaml", &pipeline(4, 1).replace("model: tiny.gguf", "model: missing/model.gguf"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("missing/model.gguf: no such file or directory"), "{e}");
    w.write("p.yaml", &pipeline(4, 1).replace("model: tiny.gguf", "model: tiny.gguf, users: 3"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("users") && e.contains("takes no dataset params"), "{e}");
    w.write("p.yaml", &pipeline(4, 1).replace("model: tiny.gguf", "model: tiny.gguf, negatives: unseen"));
    let e = w.expect(&["plan", "p.yaml"], 2).stderr;
    assert!(e.contains("negatives") && e.contains("takes no dataset params"), "{e}");
    // A file that is not a GGUF fails the load node with the file named, and caches nothing.
    std::fs::write(w.path().join("bad.gguf"), b"not a model").unwrap();
    w.write("p.yaml", &pipeline(4, 1).replace("model: tiny.gguf", "model: bad.gguf"));
    let r = w.expect(&["p.yaml", "--json"], 1);
    assert_eq!(r.status_of("llm"), "failed");
    assert!(r.stderr.contains("bad.gguf: not a GGUF file"), "{}", r.stderr);
}

/// `bench llm` names the CPU kernels its figures come from; `DAGRUN_CPU_KERNELS` caps them, and
/// an unknown value is a warning that changes nothing.
#[test]
fn bench_llm_names_its_kernels_and_the_environment_caps_them() {
    let w = Work::new();
    tiny(&w);
    let args = ["bench", "llm", "--model", "tiny.gguf", "--prompt-tokens", "12", "--new-tokens", "2", "--batch", "2", "--repeats", "1"];
    let with = |value: &str| -> common::Ran { w.command(&args).env("DAGRUN_CPU_KERNELS", value).output().unwrap().into() };
    let plain = with("plain");
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(plain.stdout.contains(" CPU threads, plain kernels): prefill of a 12-token prompt"), "{}", plain.stdout);
    assert!(plain.stdout.contains("sampling (new tok/s)") && !plain.stderr.contains("warning"), "{}\n{}", plain.stdout, plain.stderr);
    let odd = with("avx-2");
    assert_eq!(odd.code, 0, "{}", odd.stderr);
    let cpu = ["avx512", "avx2", "plain"].into_iter().find(|l| odd.stdout.contains(&format!(" CPU threads, {l} kernels)"))).expect("the kernels named");
    assert!(odd.stderr.contains(&format!("warning: DAGRUN_CPU_KERNELS=\"avx-2\" is not avx512, avx2 or plain; using what the CPU has ({cpu})")), "{}", odd.stderr);
}
