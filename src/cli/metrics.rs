//! `dagrun metrics PIPELINE`: the results table in the terminal — every `evaluate` node's
//! MAP@K / NDCG@K for the pipeline's current params, with the change against the base
//! reranker and the paper's figures where it publishes them. `--seeds` averages over runs of
//! the pipeline under several seeds (mean and standard deviation), and `--compare` puts the
//! same pipeline under other overrides beside it, so "I changed one parameter: did it help,
//! beyond seed noise?" is one command once the variants have run.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;

use super::report::{augmented, backbone, gather_runs, mean_sd, published, MetricRow};
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

/// One method's figures in one variant (one seed).
#[derive(Clone, Debug)]
struct Figures {
    seed: Option<u64>,
    row: MetricRow,
}

/// The metrics of one side of the table: the pipeline under one set of overrides, at each
/// seed asked for.
struct Side {
    /// (node, method) in the order the pipeline's nodes report them, with their figures.
    methods: Vec<((String, String), Vec<Figures>)>,
    /// Evaluate nodes with no result, by the seed whose run lacks them.
    missing: Vec<(Option<u64>, Vec<String>)>,
    /// The overrides of this side beyond the user's `--set`s.
    extra: Vec<String>,
}

impl Side {
    fn load(spec: &SpecArgs, extra: &[String], seeds: &[u64], k: i64) -> Result<Side, CliError> {
        let mut side = Side { methods: Vec::new(), missing: Vec::new(), extra: extra.to_vec() };
        let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (seed, found) in gather_runs(spec, extra, seeds, &["Metrics"])?.1 {
            let ks: std::collections::BTreeSet<i64> = found.metrics.iter().map(|m| m.k).collect();
            if !ks.is_empty() && !ks.contains(&k) {
                let ks: Vec<String> = ks.iter().map(i64::to_string).collect();
                return Err(CliError::Usage(format!("no `evaluate` node reports k = {k}: they report k = {} (the node's `ks` param sets them)", ks.join(", "))));
            }
            for row in found.metrics.into_iter().filter(|m| m.k == k) {
                let id = (row.node.clone(), row.method.clone());
                let at = *index.entry(id.clone()).or_insert_with(|| {
                    side.methods.push((id, Vec::new()));
                    side.methods.len() - 1
                });
                side.methods[at].1.push(Figures { seed, row });
            }
            if !found.missing.is_empty() {
                side.missing.push((seed, found.missing));
            }
        }
        Ok(side)
    }

    fn get(&self, node: &str, method: &str) -> Option<&[Figures]> {
        self.methods.iter().find(|((n, m), _)| n == node && m == method).map(|(_, f)| f.as_slice())
    }

    /// The base reranker's figures a knowledge-augmented method is compared with.
    fn base_of(&self, method: &str) -> Option<&[Figures]> {
        if !augmented(method) {
            return None;
        }
        let bb = backbone(method);
        self.methods.iter().find(|((_, m), _)| m.starts_with("base") && backbone(m) == bb && m != method).map(|(_, f)| f.as_slice())
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

fn mean_of(f: &[Figures], field: fn(&MetricRow) -> f64) -> f64 {
    mean_sd(&f.iter().map(|x| field(&x.row)).collect::<Vec<_>>()).0
}

/// The lists evaluated: their number, or its range when the seeds' runs differ (a seed that
/// reshapes the data, as the synthetic world's does).
fn lists(f: &[Figures]) -> String {
    let (lo, hi) = f.iter().fold((i64::MAX, i64::MIN), |(lo, hi), x| (lo.min(x.row.lists), hi.max(x.row.lists)));
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}–{hi}")
    }
}

/// `v` against `base` as a signed percentage, or "" without a base.
fn change(v: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 && v.is_finite() => format!("{:+.2}%", (v - b) / b * 100.0),
        _ => String::new(),
    }
}

/// A figure over the seeds: the value, or the mean and "± sd" when several seeds ran.
fn cells(f: &[Figures], field: fn(&MetricRow) -> f64, seeded: bool) -> Vec<String> {
    let (mean, sd) = mean_sd(&f.iter().map(|x| field(&x.row)).collect::<Vec<_>>());
    let mut out = vec![format!("{mean:.5}")];
    if seeded {
        out.push(sd.map(|s| format!("± {s:.5}")).unwrap_or_default());
    }
    out
}

fn map(r: &MetricRow) -> f64 {
    r.map
}
fn ndcg(r: &MetricRow) -> f64 {
    r.ndcg
}
fn click(r: &MetricRow) -> f64 {
    r.click
}

pub fn metrics(a: MetricsArgs) -> CliResult {
    let current = Side::load(&a.spec, &[], &a.seeds, a.k)?;
    let other = if a.compare.is_empty() { None } else { Some(Side::load(&a.spec, &a.compare, &a.seeds, a.k)?) };
    if current.methods.is_empty() {
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
                .methods
                .iter()
                .map(|((node, method), f)| {
                    let (m, m_sd) = mean_sd(&f.iter().map(|x| x.row.map).collect::<Vec<_>>());
                    let (n, n_sd) = mean_sd(&f.iter().map(|x| x.row.ndcg).collect::<Vec<_>>());
                    let first = &f[0].row;
                    let paper = (a.k == 5).then(|| published(first)).flatten();
                    let mut out = json!({
                        "method": method, "node": node, "map": m, "ndcg": n, "click": mean_of(f, click), "lists": first.lists,
                        "base": side.base_of(method).map(|b| b[0].row.method.clone()),
                        "paper": paper.map(|(map, ndcg)| json!({ "map": map, "ndcg": ndcg })),
                    });
                    if seeded {
                        out["map_sd"] = json!(m_sd);
                        out["ndcg_sd"] = json!(n_sd);
                        out["seeds"] = json!(f.iter().map(|x| json!({ "seed": x.seed, "map": x.row.map, "ndcg": x.row.ndcg, "click": x.row.click, "lists": x.row.lists })).collect::<Vec<_>>());
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
            let with_paper = k == 5 && current.methods.iter().any(|(_, f)| published(&f[0].row).is_some());
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
            for ((node, method), f) in &current.methods {
                let base = current.base_of(method);
                let mut line = vec![method.clone(), node.clone()];
                line.extend(cells(f, map, seeded));
                line.push(change(mean_of(f, map), base.map(|b| mean_of(b, map))));
                line.extend(cells(f, ndcg, seeded));
                line.push(change(mean_of(f, ndcg), base.map(|b| mean_of(b, ndcg))));
                line.extend([format!("{:.5}", mean_of(f, click)), lists(f)]);
                if seeded {
                    line.push(format!("{} of {}", f.len(), a.seeds.len()));
                }
                if with_paper {
                    let p = published(&f[0].row);
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
            for ((node, method), f) in &current.methods {
                let t = o.get(node, method);
                let mut line = vec![method.clone(), node.clone()];
                for field in [map as fn(&MetricRow) -> f64, ndcg] {
                    line.extend(cells(f, field, seeded));
                    line.extend(t.map(|t| cells(t, field, seeded)).unwrap_or_else(dash));
                    line.push(t.map(|t| change(mean_of(t, field), Some(mean_of(f, field)))).unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::{lists, Figures, MetricRow};

    #[test]
    fn lists_show_their_range_when_seeds_reshape_the_data() {
        let at =
            |seed: u64, lists: i64| Figures { seed: Some(seed), row: MetricRow { node: "e".into(), method: "base".into(), k: 5, map: 0.5, ndcg: 0.5, click: 1.0, lists, dataset: None, spread: None } };
        assert_eq!(lists(&[at(1, 75), at(2, 75)]), "75");
        assert_eq!(lists(&[at(1, 75), at(2, 68), at(3, 70)]), "68–75");
    }
}
