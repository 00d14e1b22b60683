//! `dagrun metrics PIPELINE`: the results table in the terminal — every `evaluate` node's
//! MAP@K / NDCG@K for the pipeline's current params, with the change against the base
//! reranker and the paper's figures where it publishes them. `--seeds` averages over runs of
//! the pipeline under several seeds (mean and standard deviation), and `--compare` puts the
//! same pipeline under other overrides beside it, so "I changed one parameter: did it help,
//! beyond seed noise?" is one command once the variants have run.

use clap::Args;
use serde_json::json;

use super::report::{averaged, base_of, change, gather_runs, lists_cell, published, MetricRow};
use super::util::{self, columns, CliError, CliResult};
use super::{SpecArgs, EXIT_FAILED};

#[derive(Args, Debug)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The cut-off K of MAP@K, NDCG@K and CLICK@K.
    #[arg(long, default_value_t = 5)]
    pub k: i64,
    /// Put the pipeline with these further overrides (KEY=VALUE, as `--set`; repeatable)
    /// beside it, with the change per method. Both variants must have run.
    #[arg(long, value_name = "KEY=VALUE")]
    pub compare: Vec<String>,
    /// Average over the runs with these pipeline seeds (`--set seed=S` each; comma-separated):
    /// mean and sample standard deviation per method.
    #[arg(long, value_name = "S,S,...", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The metrics of one side of the table: the pipeline under one set of overrides, at each
/// seed asked for.
struct Side {
    /// Each method's row at k, averaged over the seeds' runs, in the order the pipeline's
    /// nodes report them.
    rows: Vec<MetricRow>,
    /// Each seed's own rows at k (for the JSON's per-seed figures).
    runs: Vec<(Option<u64>, Vec<MetricRow>)>,
    /// Evaluate nodes with no result, by the seed whose run lacks them.
    missing: Vec<(Option<u64>, Vec<String>)>,
    /// The overrides of this side beyond the user's `--set`s.
    extra: Vec<String>,
}

impl Side {
    fn load(spec: &SpecArgs, extra: &[String], seeds: &[u64], k: i64) -> Result<Side, CliError> {
        let (mut runs, mut missing) = (Vec::new(), Vec::new());
        for (seed, found) in gather_runs(spec, extra, seeds, &["Metrics"])?.1 {
            let ks: std::collections::BTreeSet<i64> = found.metrics.iter().map(|m| m.k).collect();
            if !ks.is_empty() && !ks.contains(&k) {
                let ks: Vec<String> = ks.iter().map(i64::to_string).collect();
                return Err(CliError::Usage(format!("no `evaluate` node reports k = {k}: they report k = {} (the node's `ks` param sets them)", ks.join(", "))));
            }
            runs.push((seed, found.metrics.into_iter().filter(|m| m.k == k).collect()));
            if !found.missing.is_empty() {
                missing.push((seed, found.missing));
            }
        }
        Ok(Side { rows: averaged(&runs), runs, missing, extra: extra.to_vec() })
    }

    fn get(&self, node: &str, method: &str) -> Option<&MetricRow> {
        self.rows.iter().find(|m| m.node == node && m.method == method)
    }

    /// What this side lacks, each with the command that computes it.
    fn missing_lines(&self, spec: &SpecArgs) -> Vec<String> {
        self.missing
            .iter()
            .map(|(seed, nodes)| {
                let extra: Vec<String> = self.extra.iter().cloned().chain(seed.map(|s| format!("seed={s}"))).collect();
                let with = if extra.is_empty() { String::new() } else { format!(" with {}", extra.join(" ")) };
                format!("not computed yet{with}: {} (`{}` computes them)", nodes.join(", "), util::run_command(spec, &extra))
            })
            .collect()
    }
}

/// `v` against `base` as a signed percentage, or "" without a base.
fn change_cell(v: f64, base: Option<f64>) -> String {
    change(v, base).filter(|_| v.is_finite()).map(|c| format!("{c:+.2}%")).unwrap_or_default()
}

/// A figure: the value, and over seeds its "± sd" (empty for a single run).
fn cells(mean: f64, sd: Option<f64>, seeded: bool) -> Vec<String> {
    let mut out = vec![format!("{mean:.5}")];
    if seeded {
        out.push(sd.map(|s| format!("± {s:.5}")).unwrap_or_default());
    }
    out
}

fn map(m: &MetricRow) -> (f64, Option<f64>) {
    (m.map, m.spread.and_then(|s| s.map_sd))
}
fn ndcg(m: &MetricRow) -> (f64, Option<f64>) {
    (m.ndcg, m.spread.and_then(|s| s.ndcg_sd))
}

pub fn metrics(a: MetricsArgs) -> CliResult {
    let current = Side::load(&a.spec, &[], &a.seeds, a.k)?;
    let other = if a.compare.is_empty() { None } else { Some(Side::load(&a.spec, &a.compare, &a.seeds, a.k)?) };
    if current.rows.is_empty() {
        if current.missing.is_empty() {
            return Err(CliError::Usage("the pipeline has no `evaluate` node: nothing reports metrics".into()));
        }
        for line in current.missing_lines(&a.spec) {
            eprintln!("error: no metrics for the current params: {line}");
        }
        return Ok(EXIT_FAILED);
    }
    let seeded = !a.seeds.is_empty();
    if a.json {
        let side_json = |side: &Side| -> serde_json::Value {
            let methods: Vec<_> = side
                .rows
                .iter()
                .map(|m| {
                    let paper = (a.k == 5).then(|| published(m)).flatten();
                    let mut out = json!({
                        "method": m.method, "node": m.node, "map": m.map, "ndcg": m.ndcg, "click": m.click, "lists": m.lists,
                        "base": base_of(&side.rows, &m.method).map(|b| b.method.clone()),
                        "paper": paper.map(|(map, ndcg)| json!({ "map": map, "ndcg": ndcg })),
                    });
                    if seeded {
                        out["map_sd"] = json!(map(m).1);
                        out["ndcg_sd"] = json!(ndcg(m).1);
                        let per_seed = side.runs.iter().flat_map(|(seed, rows)| rows.iter().filter(|r| r.node == m.node && r.method == m.method).map(move |r| (seed, r)));
                        out["seeds"] = json!(per_seed.map(|(seed, r)| json!({ "seed": seed, "map": r.map, "ndcg": r.ndcg, "click": r.click, "lists": r.lists })).collect::<Vec<_>>());
                    }
                    out
                })
                .collect();
            let missing: Vec<_> = side.missing.iter().map(|(seed, nodes)| json!({ "seed": seed, "nodes": nodes })).collect();
            json!({ "methods": methods, "not_computed": missing })
        };
        let mut out = json!({ "k": a.k });
        if seeded {
            out["seeds"] = json!(a.seeds);
        }
        let mine = side_json(&current);
        out["methods"] = mine["methods"].clone();
        out["not_computed"] = mine["not_computed"].clone();
        if let Some(o) = &other {
            out["compare"] = side_json(o);
            out["compare"]["set"] = json!(a.compare);
        }
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| CliError::Failed(e.into()))?);
        return Ok(0);
    }

    let k = a.k;
    let pm = if seeded { vec![String::new()] } else { vec![] };
    let mut table = Vec::new();
    match &other {
        None => {
            let with_paper = k == 5 && current.rows.iter().any(|m| published(m).is_some());
            let mut head = vec!["method".to_string(), "node".into(), format!("MAP@{k}")];
            head.extend(pm.iter().cloned());
            head.extend(["vs base".to_string(), format!("NDCG@{k}")]);
            head.extend(pm.iter().cloned());
            head.extend(["vs base".to_string(), format!("CLICK@{k}"), "lists".into()]);
            if seeded {
                head.push("seeds".into());
            }
            if with_paper {
                head.extend(["paper MAP@5".to_string(), "paper NDCG@5".into()]);
            }
            table.push(head);
            for m in &current.rows {
                let base = base_of(&current.rows, &m.method);
                let mut line = vec![m.method.clone(), m.node.clone()];
                for field in [map as fn(&MetricRow) -> (f64, Option<f64>), ndcg] {
                    let (mean, sd) = field(m);
                    line.extend(cells(mean, sd, seeded));
                    line.push(change_cell(mean, base.map(|b| field(b).0)));
                }
                line.extend([format!("{:.5}", m.click), lists_cell(m)]);
                if seeded {
                    line.push(format!("{} of {}", m.spread.map_or(1, |s| s.runs), a.seeds.len()));
                }
                if with_paper {
                    let p = published(m);
                    line.extend([p.map(|p| format!("{:.5}", p.0)).unwrap_or_default(), p.map(|p| format!("{:.5}", p.1)).unwrap_or_default()]);
                }
                table.push(line);
            }
        }
        Some(o) => {
            let compared = a.compare.join(" ");
            let mut head = vec!["method".to_string(), "node".into(), format!("MAP@{k}")];
            head.extend(pm.iter().cloned());
            head.push(format!("MAP@{k} ({compared})"));
            head.extend(pm.iter().cloned());
            head.extend(["change".to_string(), format!("NDCG@{k}")]);
            head.extend(pm.iter().cloned());
            head.push(format!("NDCG@{k} ({compared})"));
            head.extend(pm.iter().cloned());
            head.push("change".into());
            table.push(head);
            let dash = || {
                let mut d = vec!["-".to_string()];
                d.extend(pm.iter().cloned());
                d
            };
            for m in &current.rows {
                let t = o.get(&m.node, &m.method);
                let mut line = vec![m.method.clone(), m.node.clone()];
                for field in [map as fn(&MetricRow) -> (f64, Option<f64>), ndcg] {
                    let (mean, sd) = field(m);
                    line.extend(cells(mean, sd, seeded));
                    line.extend(t.map(|t| cells(field(t).0, field(t).1, seeded)).unwrap_or_else(dash));
                    line.push(t.map(|t| change_cell(field(t).0, Some(mean))).unwrap_or_default());
                }
                table.push(line);
            }
        }
    }
    print!("{}", columns(&table));
    for line in current.missing_lines(&a.spec).into_iter().chain(other.iter().flat_map(|o| o.missing_lines(&a.spec))) {
        println!("{line}");
    }
    Ok(0)
}
