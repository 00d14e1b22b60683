//! The data kinds through the real binary: synthetic worlds written in the real formats and
//! loaded back, external files in keys, prompts and baseline evaluation, and bad input.

mod common;

use common::Work;

fn synth(w: &Work, format: &str, dir: &str, users: u32) {
    w.expect(&["synth", "--format", format, "--out", dir, "--users", &users.to_string(), "--items", "150"], 0);
}

#[test]
fn movielens_1m_files_load_and_a_changed_file_reruns_the_load() {
    let w = Work::new();
    synth(&w, "movielens-1m", "ml", 80);
    w.write(
        "p.yaml",
        "pipeline: ml\nnodes:\n  data: { kind: load, params: { dataset: movielens-1m, path: ml } }\n  eval: { kind: evaluate, inputs: { data: data } }\n  prompts: { kind: prompt, inputs: { data: data } }\n",
    );
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran").len(), 3, "{}", r.stderr);
    assert!(r.stderr.contains("80 users (72 train)"), "{}", r.stderr);
    let users = w.expect(&["show", "p.yaml", "data", "--table", "users", "--format", "csv"], 0).stdout;
    assert_eq!(users.lines().count(), 81);
    assert!(users.lines().next().unwrap().starts_with("user,raw_id,split,window,interactions,gender,age,occupation"));
    let prompt = w.expect(&["show", "p.yaml", "prompts", "--format", "csv"], 0).stdout;
    assert!(prompt.contains("Given a ") && prompt.contains("stars; Analyze the user's preferences on movies"), "{prompt}");

    assert_eq!(w.expect(&["p.yaml", "--json"], 0).with_status("cached").len(), 3);
    // Drop the last rating: the file's digest changes, so the load reruns.
    let path = w.path().join("ml/ratings.dat");
    let text = std::fs::read_to_string(&path).unwrap();
    let trimmed: Vec<&str> = text.lines().collect();
    std::fs::write(&path, trimmed[..trimmed.len() - 1].join("\n") + "\n").unwrap();
    let e = w.expect(&["explain", "p.yaml", "data"], 0).stdout;
    assert!(e.contains("file ml/ratings.dat: "), "{e}");
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.status_of("data"), "ran");
}

#[test]
fn movielens_100k_and_amazon_files_load() {
    let w = Work::new();
    synth(&w, "movielens-100k", "ml100k", 60);
    let mut wb = vec!["synth", "--format", "amazon-books", "--out", "amz", "--users", "60", "--items", "150"];
    wb.extend(["--ratings-per-user", "70", "--min-ratings", "60"]);
    w.expect(&wb, 0);
    assert!(w.path().join("amz/Books_5.json.gz").exists());
    w.write(
        "p.yaml",
        "pipeline: real\nnodes:\n  ml: { kind: load, params: { dataset: movielens-100k, path: ml100k } }\n  amz: { kind: load, params: { dataset: amazon-books, path: amz, user_core: 5, item_core: 5 } }\n  facts: { kind: prompt, inputs: { data: amz }, params: { template: facts } }\n",
    );
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran").len(), 3, "{}", r.stderr);
    let facts = w.expect(&["show", "p.yaml", "facts", "--format", "csv"], 0).stdout;
    assert!(facts.contains("Introduce book ") && facts.contains(", which is from brand "), "{facts}");
    let info = w.expect(&["show", "p.yaml", "amz", "--table", "items", "--rows", "2"], 0).stdout;
    assert!(info.contains("has_meta"), "{info}");
}

#[test]
fn malformed_lines_fail_with_file_and_line_unless_skipped() {
    let w = Work::new();
    synth(&w, "movielens-1m", "ml", 30);
    let path = w.path().join("ml/ratings.dat");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.insert_str(text.find('\n').unwrap() + 1, "1::2::five::978300760\n");
    std::fs::write(&path, text).unwrap();
    w.write("p.yaml", "pipeline: ml\nnodes:\n  data: { kind: load, params: { dataset: movielens-1m, path: ml } }\n");
    let r = w.expect(&["p.yaml"], 1);
    assert!(r.stderr.contains("ml/ratings.dat:2: rating `five` is not a number (set `skip_bad_lines: true` to skip such lines)"), "{}", r.stderr);
    let r = w.expect(&["p.yaml", "--set", "data.skip_bad_lines=true"], 0);
    assert!(r.stderr.contains("skipped 1 malformed lines of ratings.dat"), "{}", r.stderr);
}

#[test]
fn bad_data_params_are_spec_errors() {
    let w = Work::new();
    let bad = |spec: &str| {
        w.write("p.yaml", spec);
        w.expect(&["p.yaml"], 2).stderr
    };
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: movielens-1m, path: nowhere } }\n");
    assert!(e.contains("`nowhere/ratings.dat`, `nowhere/users.dat`, `nowhere/movies.dat` not found"), "{e}");
    assert!(e.contains("download ml-1m.zip from https://grouplens.org/datasets/movielens/1m/"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: amazon-books, path: nowhere } }\n");
    assert!(e.contains("Books_5.json.gz") && e.contains("https://nijianmo.github.io/amazon/"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: movielens-100k, path: nowhere } }\n");
    assert!(e.contains("https://grouplens.org/datasets/movielens/100k/"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: movielens-1m } }\n");
    assert!(e.contains("dataset movielens-1m needs `path:`"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: movielens-2m } }\n");
    assert!(e.contains("unknown variant `movielens-2m`"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: synthetic, users: 10, path: x } }\n");
    assert!(e.contains("params.path: the synthetic world reads no files"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: synthetic, items: 5 } }\n");
    assert!(e.contains("p.yaml:3:") && e.contains("params.items: must be at least 20"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: synthetic } }\n  pr: { kind: prompt, inputs: { data: data }, params: { template: custom, prompt: \"{% for x in %}\" } }\n");
    assert!(e.contains("node `pr`: params.prompt: ") && e.contains("template line 1"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: synthetic } }\n  pr: { kind: prompt, inputs: { data: data }, params: { template: custom } }\n");
    assert!(e.contains("`template: custom` needs `prompt:`"), "{e}");
    let e = bad("pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: synthetic } }\n  ev: { kind: evaluate, inputs: { data: data }, params: { methods: [oracle, magic] } }\n");
    assert!(e.contains("unknown variant `magic`"), "{e}");
}

#[test]
fn a_custom_template_with_a_misspelt_field_fails_the_node() {
    let w = Work::new();
    w.write(
        "p.yaml",
        "pipeline: p\nnodes:\n  data: { kind: load, params: { dataset: synthetic, users: 20, items: 60 } }\n  pr: { kind: prompt, inputs: { data: data }, params: { template: custom, prompt: \"{{ usr.id }}\" } }\n  ok: { kind: prompt, inputs: { data: data }, params: { template: custom, system: \"You are a {{ flavour }} critic.\", prompt: \"{{ user.raw_id }}: {{ history | length }} items\" } }\n",
    );
    let r = w.expect(&["p.yaml", "--keep-going", "--json"], 1);
    assert_eq!(r.status_of("pr"), "failed");
    assert!(r.stderr.contains("undefined"), "{}", r.stderr);
    assert_eq!(r.status_of("ok"), "ran");
    let rows = w.expect(&["show", "p.yaml", "ok", "--format", "json"], 0).json();
    assert_eq!(rows[0]["system"], "You are a movies critic.");
    assert!(rows[0]["prompt"].as_str().unwrap().ends_with(" items"));
}

#[test]
fn baselines_are_ordered_as_expected() {
    let w = Work::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let spec = format!("{root}/pipelines/data_synthetic.yaml");
    w.expect(&[&spec], 0);
    let csv = w.expect(&["show", &spec, "baselines", "--format", "csv"], 0).stdout;
    let ndcg5 = |m: &str| -> f64 {
        let line = csv.lines().find(|l| l.starts_with(&format!("{m},5,"))).unwrap();
        line.split(',').nth(3).unwrap().parse().unwrap()
    };
    assert!(ndcg5("oracle") > 0.85);
    assert!(ndcg5("popularity") > ndcg5("random"));
    assert!(ndcg5("oracle") > ndcg5("initial"));
}
