//! `dagrun metrics PIPELINE`: the results table in the terminal — every `evaluate` node's
//! MAP@K / NDCG@K for the pipeline's current params, with the change against the base
//! reranker and the paper's figures where it publishes them — and, with `--compare`, the same
//! pipeline under other overrides beside it, so "I changed one parameter: did it help?" is
//! one command once both variants have run.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;

use super::paper;
use super::report::{augmented, backbone, base_of, gather, MetricRow};
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
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The metrics of one variant of the pipeline.
struct Variant {
    rows: Vec<MetricRow>,
    /// Evaluate nodes with no result for their current params.
    missing: Vec<String>,
}

fn variant(spec: &SpecArgs, k: i64) -> Result<Variant, CliError> {
    let registry = util::registry();
    let pipeline = util::load(spec, &registry)?;
    let store = util::existing_store(&spec.cache_dir, Some(&pipeline))?;
    let found = gather(&pipeline, store.as_ref(), &["Metrics"])?;
    let evaluated: std::collections::BTreeSet<i64> = found.metrics.iter().map(|m| m.k).collect();
    let rows: Vec<MetricRow> = found.metrics.into_iter().filter(|m| m.k == k).collect();
    if rows.is_empty() && !evaluated.is_empty() {
        let ks: Vec<String> = evaluated.iter().map(i64::to_string).collect();
        return Err(CliError::Usage(format!("no `evaluate` node reports k = {k}: they report k = {} (the node's `ks` param sets them)", ks.join(", "))));
    }
    Ok(Variant { rows, missing: found.missing })
}

/// `v` against `base` as a signed percentage, or "" without a base.
fn change(v: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 && v.is_finite() => format!("{:+.2}%", (v - b) / b * 100.0),
        _ => String::new(),
    }
}

pub fn metrics(a: MetricsArgs) -> CliResult {
    let current = variant(&a.spec, a.k)?;
    let other = if a.compare.is_empty() {
        None
    } else {
        let mut spec = a.spec.clone();
        spec.set.extend(a.compare.iter().cloned());
        Some(variant(&spec, a.k)?)
    };
    if current.rows.is_empty() {
        if current.missing.is_empty() {
            return Err(CliError::Usage("the pipeline has no `evaluate` node: nothing reports metrics".into()));
        }
        eprintln!("error: no metrics for the current params: not computed yet: {} (run the pipeline first)", current.missing.join(", "));
        return Ok(EXIT_FAILED);
    }
    let compared = a.compare.join(" ");
    if a.json {
        let row = |m: &MetricRow, rows: &[MetricRow]| {
            let refs: Vec<&MetricRow> = rows.iter().collect();
            let base = base_of(&refs, &m.method).filter(|b| augmented(&m.method) && b.method != m.method);
            let paper = (a.k == 5).then(|| paper::table_i(m.dataset.as_deref()?, backbone(&m.method)?, &m.method)).flatten();
            json!({
                "method": m.method, "node": m.node, "map": m.map, "ndcg": m.ndcg, "click": m.click, "lists": m.lists,
                "base": base.map(|b| b.method.clone()),
                "paper": paper.map(|(map, ndcg)| json!({ "map": map, "ndcg": ndcg })),
            })
        };
        let mut out = json!({
            "k": a.k,
            "methods": current.rows.iter().map(|m| row(m, &current.rows)).collect::<Vec<_>>(),
            "not_computed": current.missing,
        });
        if let Some(o) = &other {
            out["compare"] = json!({
                "set": a.compare,
                "methods": o.rows.iter().map(|m| row(m, &o.rows)).collect::<Vec<_>>(),
                "not_computed": o.missing,
            });
        }
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| CliError::Failed(e.into()))?);
        return Ok(0);
    }

    let k = a.k;
    let mut table = Vec::new();
    match &other {
        None => {
            let refs: Vec<&MetricRow> = current.rows.iter().collect();
            let with_paper = k == 5 && current.rows.iter().any(|m| published(m).is_some());
            let mut head = vec!["method".to_string(), "node".into(), format!("MAP@{k}"), "vs base".into(), format!("NDCG@{k}"), "vs base".into(), format!("CLICK@{k}"), "lists".into()];
            if with_paper {
                head.extend(["paper MAP@5".to_string(), "paper NDCG@5".into()]);
            }
            table.push(head);
            for m in &current.rows {
                let base = base_of(&refs, &m.method).filter(|b| augmented(&m.method) && b.method != m.method);
                let mut line = vec![
                    m.method.clone(),
                    m.node.clone(),
                    format!("{:.5}", m.map),
                    change(m.map, base.map(|b| b.map)),
                    format!("{:.5}", m.ndcg),
                    change(m.ndcg, base.map(|b| b.ndcg)),
                    format!("{:.5}", m.click),
                    m.lists.to_string(),
                ];
                if with_paper {
                    let p = published(m);
                    line.extend([p.map(|p| format!("{:.5}", p.0)).unwrap_or_default(), p.map(|p| format!("{:.5}", p.1)).unwrap_or_default()]);
                }
                table.push(line);
            }
        }
        Some(o) => {
            let theirs: BTreeMap<(&str, &str), &MetricRow> = o.rows.iter().map(|m| ((m.node.as_str(), m.method.as_str()), m)).collect();
            table.push(vec![
                "method".to_string(),
                "node".into(),
                format!("MAP@{k}"),
                format!("MAP@{k} ({compared})"),
                "change".into(),
                format!("NDCG@{k}"),
                format!("NDCG@{k} ({compared})"),
                "change".into(),
            ]);
            for m in &current.rows {
                let t = theirs.get(&(m.node.as_str(), m.method.as_str()));
                let cell = |v: Option<f64>| v.map(|v| format!("{v:.5}")).unwrap_or_else(|| "-".into());
                table.push(vec![
                    m.method.clone(),
                    m.node.clone(),
                    format!("{:.5}", m.map),
                    cell(t.map(|t| t.map)),
                    t.map(|t| change(t.map, Some(m.map))).unwrap_or_default(),
                    format!("{:.5}", m.ndcg),
                    cell(t.map(|t| t.ndcg)),
                    t.map(|t| change(t.ndcg, Some(m.ndcg))).unwrap_or_default(),
                ]);
            }
        }
    }
    print!("{}", columns(&table));
    if !current.missing.is_empty() {
        println!("not computed yet: {}", current.missing.join(", "));
    }
    if let Some(o) = &other {
        if !o.missing.is_empty() {
            let sets: String = a.spec.set.iter().chain(&a.compare).map(|s| format!(" --set {}", util::shell_word(s))).collect();
            println!("not computed yet with {compared}: {} (`dagrun run {}{sets}` computes them)", o.missing.join(", "), util::shell_word(&a.spec.pipeline.display().to_string()));
        }
    }
    Ok(0)
}

/// The paper's Table I figures (MAP@5, NDCG@5) for a method, where it publishes them.
fn published(m: &MetricRow) -> Option<(f64, f64)> {
    paper::table_i(m.dataset.as_deref()?, backbone(&m.method)?, &m.method)
}
