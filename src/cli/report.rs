//! `dagrun report PIPELINE`: one self-contained HTML page of a pipeline's cached results — the
//! paper-style results table (MAP@5 / NDCG@5 with deltas to the base reranker, and the paper's
//! published figures beside a MovieLens-1M or Amazon-Books pipeline's), the ablation table,
//! per-round metrics, DPO curves, the reward and margin distributions and, on the
//! synthetic world, how often answers name the users' true tastes — with inline
//! SVG plots, so it opens in a browser with no network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use dagrun_engine::cache::table;
use dagrun_engine::pipeline::{Node, Pipeline};
use dagrun_engine::plan::{plan as make_plan, NodePlan};
use serde_json::Value;

use super::paper;
use super::svg::{esc, histogram, lines};
use super::util::{self, CliError, CliResult};
use super::SpecArgs;

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Where to write the page (default: PIPELINE-NAME-report.html in the working directory).
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The cut-off of the headline tables.
    #[arg(long, default_value_t = 5)]
    pub k: i64,
    /// Average the metrics over the runs with these pipeline seeds (`--set seed=S` each;
    /// comma-separated): mean ± sample standard deviation. The curves and histograms are the
    /// first seed's.
    #[arg(long, value_name = "S,S,...", value_delimiter = ',')]
    pub seeds: Vec<u64>,
}

/// One evaluated method's row at one cut-off.
#[derive(Clone, Debug)]
pub(super) struct MetricRow {
    pub node: String,
    pub method: String,
    pub k: i64,
    pub map: f64,
    pub ndcg: f64,
    pub click: f64,
    pub lists: i64,
    /// The dataset the evaluated node scored (its `load` node's `dataset`), if known.
    pub dataset: Option<String>,
    /// Over several seeds' runs: the sample standard deviations of MAP and NDCG (the figures
    /// above are then means), and how many runs were averaged.
    pub spread: Option<Spread>,
}

/// How a method's figures vary over the seeds averaged ([`averaged`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Spread {
    pub map_sd: Option<f64>,
    pub ndcg_sd: Option<f64>,
    pub runs: usize,
    /// The fewest and most lists a run evaluated (a seed may reshape the data).
    pub lists: (i64, i64),
}

/// What the report found in the cache.
#[derive(Default)]
pub(super) struct Found {
    pub metrics: Vec<MetricRow>,
    /// dpo node -> its log rows.
    dpo: Vec<(String, Vec<Value>)>,
    /// reward-score node -> rewards.
    rewards: Vec<(String, Vec<f64>)>,
    /// pair-select node -> margins.
    margins: Vec<(String, Vec<f64>)>,
    /// taste-match node -> (answers, naming a top liked genre, a disliked one, any genre).
    tastes: Vec<(String, [usize; 4])>,
    /// Nodes of the kinds above with nothing cached for their current inputs.
    pub missing: Vec<String>,
    /// The seeds whose runs the metrics average (none: the current params' run alone).
    pub seeds: Vec<u64>,
}

/// The table types the report reads: evaluate's metrics, dpo's log, reward-score's rewards,
/// pair-select's pairs and taste-match's verdicts.
const READ: &[&str] = &["Metrics", "DpoLog", "Scores", "Pairs", "TasteMatches"];

fn rows_of(file: &std::path::Path) -> Result<Vec<Value>, CliError> {
    let t = table::read_parquet(file)?;
    let mut buf = Vec::new();
    table::write_json(&t, &mut buf).map_err(|e| CliError::Failed(anyhow::anyhow!("{}: {e}", file.display())))?;
    serde_json::from_slice(&buf).map_err(|e| CliError::Failed(anyhow::anyhow!("{}: {e}", file.display())))
}

/// The dataset a node reads: the `dataset` param of the `load` node behind its `data` input.
fn dataset_of(pipeline: &Pipeline, node: &Node) -> Option<String> {
    let edge = node.inputs.iter().find(|e| e.port == "data")?;
    let from = &pipeline.nodes[edge.from];
    if from.kind.name() != "load" {
        return None;
    }
    from.params.get("dataset")?.as_str().map(str::to_string)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

pub fn report(a: ReportArgs) -> CliResult {
    let (name, mut runs) = gather_runs(&a.spec, &[], &a.seeds, READ)?;
    // Over seeds: the metrics averaged, what each seed's run lacks; the rest is the first's.
    let metrics: Vec<(Option<u64>, Vec<MetricRow>)> = runs.iter_mut().map(|(seed, f)| (*seed, std::mem::take(&mut f.metrics))).collect();
    let several = a.seeds.len() > 1;
    let missing: Vec<String> = runs.iter().flat_map(|(seed, f)| f.missing.iter().map(move |n| if several { format!("{n} (seed {})", seed.unwrap_or_default()) } else { n.clone() })).collect();
    let (_, mut found) = runs.swap_remove(0);
    found.metrics = if a.seeds.is_empty() { metrics.into_iter().flat_map(|(_, m)| m).collect() } else { averaged(&metrics) };
    found.missing = missing;
    found.seeds = a.seeds.clone();
    let html = render(&name, &found, a.k);
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("{name}-report.html")));
    std::fs::write(&out, html).map_err(|e| CliError::Failed(anyhow::anyhow!("{}: {e}", out.display())))?;
    let evaluated: BTreeSet<&str> = found.metrics.iter().map(|m| m.node.as_str()).collect();
    println!(
        "wrote {} ({} evaluated nodes, {} DPO logs{})",
        out.display(),
        evaluated.len(),
        found.dpo.len(),
        if found.missing.is_empty() { String::new() } else { format!("; not computed yet: {}", found.missing.join(", ")) }
    );
    Ok(0)
}

/// What [`gather`] found in each seed's run (`None`: the run under the spec's own seed).
pub(super) type SeedRuns = Vec<(Option<u64>, Found)>;

/// The pipeline's name and what [`gather`] finds for it under the user's `--set`s plus
/// `extra`, once, or once per seed of `seeds` (with `--set seed=S`), in that order.
pub(super) fn gather_runs(spec: &SpecArgs, extra: &[String], seeds: &[u64], read: &[&str]) -> Result<(String, SeedRuns), CliError> {
    let runs: Vec<Option<u64>> = if seeds.is_empty() { vec![None] } else { seeds.iter().copied().map(Some).collect() };
    let registry = util::registry();
    let mut name = String::new();
    let mut out = Vec::with_capacity(runs.len());
    for seed in runs {
        let mut spec = spec.clone();
        spec.set.extend(extra.iter().cloned());
        spec.set.extend(seed.map(|s| format!("seed={s}")));
        let pipeline = util::load(&spec, &registry)?;
        let store = util::existing_store(&spec.cache_dir, Some(&pipeline))?;
        out.push((seed, gather(&pipeline, store.as_ref(), read)?));
        name = pipeline.name;
    }
    Ok((name, out))
}

/// Each method's rows (by node, method and cut-off, in the order first seen) averaged over
/// several runs' metrics: mean figures with their [`Spread`].
pub(super) fn averaged(runs: &[(Option<u64>, Vec<MetricRow>)]) -> Vec<MetricRow> {
    let mut groups: Vec<Vec<&MetricRow>> = Vec::new();
    let mut index: BTreeMap<(&str, &str, i64), usize> = BTreeMap::new();
    for m in runs.iter().flat_map(|(_, rows)| rows) {
        let at = *index.entry((m.node.as_str(), m.method.as_str(), m.k)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(m);
    }
    groups
        .into_iter()
        .map(|g| {
            let stat = |f: fn(&MetricRow) -> f64| mean_sd(&g.iter().map(|m| f(m)).collect::<Vec<_>>());
            let ((map, map_sd), (ndcg, ndcg_sd), (click, _)) = (stat(|m| m.map), stat(|m| m.ndcg), stat(|m| m.click));
            let lists = g.iter().fold((i64::MAX, i64::MIN), |(lo, hi), m| (lo.min(m.lists), hi.max(m.lists)));
            MetricRow { map, ndcg, click, spread: Some(Spread { map_sd, ndcg_sd, runs: g.len(), lists }), ..g[0].clone() }
        })
        .collect()
}

/// Mean and sample standard deviation (`None` for fewer than two values).
fn mean_sd(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.len() > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, sd)
}

/// Reads the cached results of the pipeline's nodes with an output of one of the table types
/// `read` (of [`READ`]) for their current params, downloading them first where only the remote
/// has them.
pub(super) fn gather(pipeline: &Pipeline, store: Option<&dagrun_engine::cache::Store>, read: &[&str]) -> Result<Found, CliError> {
    if let Some(store) = store {
        let nodes: Vec<usize> = (0..pipeline.nodes.len()).filter(|&i| pipeline.nodes[i].outputs.iter().any(|o| read.contains(&o.ty.name))).collect();
        super::remote::fetch_for_reading(pipeline, store, &nodes);
    }
    let targets = vec![true; pipeline.nodes.len()];
    let planned = make_plan(pipeline, store, &targets, &BTreeSet::new());
    let mut found = Found::default();
    for (i, node) in pipeline.nodes.iter().enumerate() {
        // Nodes with an output of a table type to read, whatever the port is called.
        let Some(port) = node.outputs.iter().find(|o| read.contains(&o.ty.name)) else { continue };
        let (Some(store), NodePlan::Cached { entry, .. }) = (store, &planned[i].plan) else {
            found.missing.push(node.id.clone());
            continue;
        };
        let Some(digest) = entry.outputs.get(&port.name) else { continue };
        let Some(table_name) = port.ty.table_names().first().copied() else { continue };
        let file = store.artifact_dir(digest).join(dagrun_engine::ArtifactType::table_file(table_name));
        let rows = rows_of(&file)?;
        match port.ty.name {
            "Metrics" => found.metrics.extend(rows.iter().map(|r| MetricRow {
                node: node.id.clone(),
                method: r["method"].as_str().unwrap_or("").to_string(),
                k: r["k"].as_i64().unwrap_or(0),
                map: num(r, "map"),
                ndcg: num(r, "ndcg"),
                click: num(r, "click"),
                lists: r["lists"].as_i64().unwrap_or(0),
                dataset: dataset_of(pipeline, node),
                spread: None,
            })),
            "DpoLog" => found.dpo.push((node.id.clone(), rows)),
            "Scores" => found.rewards.push((node.id.clone(), rows.iter().map(|r| num(r, "reward")).collect())),
            "TasteMatches" => {
                let count = |key: &str| rows.iter().filter(|r| r[key].as_bool() == Some(true)).count();
                found.tastes.push((node.id.clone(), [rows.len(), count("names_liked"), count("names_disliked"), count("names_any")]));
            }
            _ => found.margins.push((node.id.clone(), rows.iter().map(|r| num(r, "margin")).collect())),
        }
    }
    Ok(found)
}

/// The backbone a method label names (`base-dlcm`, `rlrf4rec-prm-r2`), if any.
fn backbone(method: &str) -> Option<&'static str> {
    ["dlcm", "prm"].into_iter().find(|b| method.split('-').any(|part| part == *b))
}

/// The round a method label names (`...-r2`), if any.
fn round(method: &str) -> Option<u32> {
    method.rsplit('-').next().and_then(|last| last.strip_prefix('r')).and_then(|n| n.parse().ok())
}

/// The paper's Table I figures (MAP@5, NDCG@5) for a method, where it publishes them.
pub(super) fn published(m: &MetricRow) -> Option<(f64, f64)> {
    paper::table_i(m.dataset.as_deref()?, backbone(&m.method)?, &m.method)
}

/// The base reranker row a knowledge-augmented method (`kar…`, `rlrf4rec…`) is compared
/// with: `base` plus the same backbone. `None` for other methods.
pub(super) fn base_of<'a>(rows: impl IntoIterator<Item = &'a MetricRow>, method: &str) -> Option<&'a MetricRow> {
    if !(method.starts_with("kar") || method.starts_with("rlrf4rec")) {
        return None;
    }
    let bb = backbone(method);
    rows.into_iter().find(|r| r.method.starts_with("base") && backbone(&r.method) == bb && r.method != method)
}

/// `v`'s change against `base` in percent, when there is a positive base.
pub(super) fn change(v: f64, base: Option<f64>) -> Option<f64> {
    base.filter(|&b| b > 0.0).map(|b| (v - b) / b * 100.0)
}

/// The lists a method was evaluated on: their number, or its range when averaged runs differ
/// (a seed that reshapes the data, as the synthetic world's does).
pub(super) fn lists_cell(m: &MetricRow) -> String {
    match m.spread {
        Some(Spread { lists: (lo, hi), .. }) if lo != hi => format!("{lo}–{hi}"),
        _ => m.lists.to_string(),
    }
}

/// " ± sd" (and "(n)" when fewer than `seeds` runs were averaged) for a mean over seeds.
fn spread(m: &MetricRow, sd: fn(&Spread) -> Option<f64>, seeds: usize) -> String {
    let Some(s) = &m.spread else { return String::new() };
    let mut out = sd(s).map(|v| format!(" <span class=\"sd\">± {v:.5}</span>")).unwrap_or_default();
    if s.runs < seeds {
        let _ = write!(out, " <span class=\"sd\">({})</span>", s.runs);
    }
    out
}

fn delta(v: f64, base: Option<f64>) -> String {
    match change(v, base) {
        Some(c) => format!(" <span class=\"d{}\">{c:+.2}%</span>", if c >= 0.0 { "p" } else { "n" }),
        None => String::new(),
    }
}

fn render(name: &str, f: &Found, k: i64) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>{n} — dagrun report</title><style>
body{{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}} th{{background:#f4f4f4}} td:first-child,th:first-child{{text-align:left}}
.dp{{color:#2a7d2a}} .dn{{color:#b22}} .sd{{color:#666;font-size:90%}} .plots svg{{margin:4px;border:1px solid #eee}} .note{{color:#666;font-size:90%}}
</style></head><body><h1>{n}</h1><p class="note">dagrun report of the cached results for the pipeline's current params and inputs.</p>"#,
        n = esc(name)
    );
    if !f.missing.is_empty() {
        let _ = write!(h, r#"<p class="note">Not computed yet (run the pipeline first): {}</p>"#, esc(&f.missing.join(", ")));
    }

    // Results table: methods x MAP@k / NDCG@k, deltas to the base reranker of the same backbone.
    let at_k: Vec<&MetricRow> = f.metrics.iter().filter(|m| m.k == k).collect();
    // The paper's Table I beside each method it reports (it reports k = 5 only).
    let published = |m: &MetricRow| (k == 5).then(|| published(m)).flatten();
    let with_paper = at_k.iter().any(|m| published(m).is_some());
    if !at_k.is_empty() {
        let _ = write!(h, "<h2>Results (test users, k = {k})</h2><table><tr><th>method</th><th>node</th><th>MAP@{k}</th><th>NDCG@{k}</th><th>CLICK@{k}</th><th>lists</th>");
        if with_paper {
            h.push_str("<th>paper MAP@5</th><th>paper NDCG@5</th>");
        }
        h.push_str("</tr>");
        for m in &at_k {
            // Deltas for the knowledge-augmented methods, against their base reranker.
            let base = base_of(at_k.iter().copied(), &m.method);
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.5}{}{}</td><td>{:.5}{}{}</td><td>{:.5}</td><td>{}</td>",
                esc(&m.method),
                esc(&m.node),
                m.map,
                spread(m, |s| s.map_sd, f.seeds.len()),
                delta(m.map, base.map(|b| b.map)),
                m.ndcg,
                spread(m, |s| s.ndcg_sd, f.seeds.len()),
                delta(m.ndcg, base.map(|b| b.ndcg)),
                m.click,
                lists_cell(m)
            );
            match (with_paper, published(m)) {
                (true, Some((map, ndcg))) => {
                    let _ = write!(h, "<td>{map:.5}</td><td>{ndcg:.5}</td>");
                }
                (true, None) => h.push_str("<td></td><td></td>"),
                _ => {}
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        if !f.seeds.is_empty() {
            let seeds: Vec<String> = f.seeds.iter().map(u64::to_string).collect();
            let _ = write!(
                h,
                "<p class=\"note\">Mean ± sample standard deviation over the runs with seeds {}; a method some of those runs lack is averaged over the others (their number in brackets). Changes are between means. The ablation and per-round figures are means too; the curves and histograms below are seed {}'s.</p>",
                seeds.join(", "),
                f.seeds[0]
            );
        }
        if with_paper {
            h.push_str(
                "<p class=\"note\">paper: Table I of the RLRF4Rec paper (the full dataset, Llama-3.1-8B-Instruct knowledge, bert-base-uncased vectors); \
                 its one RLRF4Rec row stands beside every round.</p>",
            );
        }

        // Ablation (the paper's Table II): w/o knowledge = base, w/o DPO = KAR, full = RLRF4Rec
        // (round 1 when rounds are labelled).
        let mut blocks = Vec::new();
        for bb in [Some("dlcm"), Some("prm"), None] {
            let pick = |prefix: &str| {
                at_k.iter()
                    .filter(|m| m.method.starts_with(prefix) && backbone(&m.method) == bb)
                    .min_by_key(|m| round(&m.method).unwrap_or(0))
                    .copied()
            };
            if let [Some(full), Some(no_knowledge), Some(no_dpo)] = [pick("rlrf4rec"), pick("base"), pick("kar")] {
                // The paper's Table II (NDCG@5) beside DLCM's block, whose figures it gives.
                let published = (k == 5 && bb == Some("dlcm")).then(|| paper::table_ii(full.dataset.as_deref()?)).flatten();
                blocks.push((bb, [("RLRF4Rec", full), ("w/o knowledge", no_knowledge), ("w/o DPO", no_dpo)], published));
            }
        }
        if !blocks.is_empty() {
            let with_ii = blocks.iter().any(|b| b.2.is_some());
            let _ = write!(h, "<h2>Ablation</h2><table><tr><th>variant</th><th>MAP@{k}</th><th>NDCG@{k}</th>{}</tr>", if with_ii { "<th>paper NDCG@5 (Table II)</th>" } else { "" });
            for (bb, rows, published) in blocks {
                let _ = write!(h, "<tr><th colspan=\"{}\">{}</th></tr>", 3 + with_ii as usize, bb.map(str::to_uppercase).unwrap_or_else(|| "reranker".into()));
                for (i, (label, m)) in rows.into_iter().enumerate() {
                    let paper_cell = if with_ii { format!("<td>{}</td>", published.map(|t| format!("{:.5}", t[i])).unwrap_or_default()) } else { String::new() };
                    let _ = write!(h, "<tr><td>{label}</td><td>{:.5}</td><td>{:.5}</td>{paper_cell}</tr>", m.map, m.ndcg);
                }
            }
            h.push_str("</table>");
        }

        // Per-round metrics (the paper's Figure 4): round 0 is KAR's zero-shot knowledge.
        let mut per_round: BTreeMap<String, Vec<(f64, f64, f64)>> = BTreeMap::new();
        for m in &at_k {
            let bb = backbone(&m.method).unwrap_or("reranker").to_string();
            if let Some(r) = round(&m.method) {
                per_round.entry(bb).or_default().push((r as f64, m.map, m.ndcg));
            } else if m.method.starts_with("kar") {
                per_round.entry(bb).or_default().push((0.0, m.map, m.ndcg));
            }
        }
        per_round.retain(|_, v| v.iter().any(|p| p.0 > 0.0) && v.len() > 1);
        if !per_round.is_empty() {
            h.push_str("<h2>Metrics per DPO round</h2><div class=\"plots\">");
            for (metric, pick) in [("NDCG", 2usize), ("MAP", 1)] {
                let series: Vec<(String, Vec<(f64, f64)>)> = per_round
                    .iter()
                    .map(|(bb, v)| {
                        let mut pts: Vec<(f64, f64)> = v.iter().map(|p| (p.0, if pick == 1 { p.1 } else { p.2 })).collect();
                        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                        (bb.to_uppercase(), pts)
                    })
                    .collect();
                h.push_str(&lines(&format!("{metric}@{k} by round (0 = KAR)"), "round", &series));
            }
            h.push_str("</div>");
        }
    }

    for (node, log) in &f.dpo {
        let _ = write!(h, "<h2>DPO: {}</h2><div class=\"plots\">", esc(node));
        let series = |key: &str| -> Vec<(f64, f64)> { log.iter().map(|r| (num(r, "step"), num(r, key))).collect() };
        h.push_str(&lines("loss", "step", &[("loss".into(), series("loss"))]));
        h.push_str(&lines("implicit rewards", "step", &[("chosen".into(), series("rewards_chosen")), ("rejected".into(), series("rewards_rejected")), ("margin".into(), series("rewards_margins"))]));
        h.push_str(&lines("reward accuracy", "step", &[("accuracy".into(), series("rewards_accuracies"))]));
        h.push_str("</div>");
        if let (Some(first), Some(last)) = (log.first(), log.last()) {
            let _ = write!(
                h,
                "<p class=\"note\">{} steps: loss {:.4} → {:.4}, accuracy {:.2} → {:.2}, margin {:.4} → {:.4}.</p>",
                log.len(),
                num(first, "loss"),
                num(last, "loss"),
                num(first, "rewards_accuracies"),
                num(last, "rewards_accuracies"),
                num(first, "rewards_margins"),
                num(last, "rewards_margins")
            );
        }
    }
    if !f.rewards.is_empty() || !f.margins.is_empty() {
        h.push_str("<h2>Rewards and pairs</h2><div class=\"plots\">");
        for (node, v) in &f.rewards {
            h.push_str(&histogram(&format!("{node}: reward per answer ({} answers)", v.len()), "reward", v, 20));
        }
        for (node, v) in &f.margins {
            h.push_str(&histogram(&format!("{node}: chosen − rejected margin ({} pairs)", v.len()), "margin", v, 20));
        }
        h.push_str("</div>");
    }
    if !f.tastes.is_empty() {
        h.push_str("<h2>Answers against the true tastes (synthetic world)</h2><table><tr><th>node</th><th>answers</th><th>name a top liked genre</th><th>name a disliked genre</th><th>name any genre</th></tr>");
        for (node, [n, liked, disliked, any]) in &f.tastes {
            let pct = |c: &usize| format!("{:.1}% ({c})", 100.0 * *c as f64 / (*n).max(1) as f64);
            let _ = write!(h, "<tr><td>{}</td><td>{n}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(node), pct(liked), pct(disliked), pct(any));
        }
        h.push_str("</table>");
    }
    if f.metrics.iter().any(|m| m.k != k) {
        h.push_str("<h2>All cut-offs</h2><table><tr><th>method</th><th>k</th><th>MAP</th><th>NDCG</th><th>CLICK</th></tr>");
        for m in &f.metrics {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{:.5}</td><td>{:.5}</td><td>{:.5}</td></tr>", esc(&m.method), m.k, m.map, m.ndcg, m.click);
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, map: f64, ndcg: f64) -> MetricRow {
        MetricRow { node: format!("eval_{method}"), method: method.into(), k: 5, map, ndcg, click: 0.1, lists: 10, dataset: Some("synthetic".into()), spread: None }
    }

    #[test]
    fn labels_name_backbones_and_rounds() {
        assert_eq!(backbone("rlrf4rec-prm-r2"), Some("prm"));
        assert_eq!(backbone("base"), None);
        assert_eq!(round("rlrf4rec-dlcm-r3"), Some(3));
        assert_eq!(round("kar-dlcm"), None);
    }

    #[test]
    fn the_page_has_the_tables_deltas_and_plots() {
        let f = Found {
            metrics: vec![row("base-dlcm", 0.5, 0.6), row("kar-dlcm", 0.55, 0.63), row("rlrf4rec-dlcm-r1", 0.56, 0.64), row("rlrf4rec-dlcm-r2", 0.57, 0.66)],
            dpo: vec![("dpo_1".into(), vec![serde_json::json!({"step": 1, "loss": 0.693, "rewards_accuracies": 0.0, "rewards_margins": 0.0, "rewards_chosen": 0.0, "rewards_rejected": 0.0})])],
            rewards: vec![("rewards_1".into(), vec![0.1, 0.5, 0.9])],
            margins: vec![("pairs_1".into(), vec![0.2, 0.3])],
            tastes: vec![("taste_after".into(), [80, 6, 1, 15])],
            missing: vec!["eval_prm".into()],
            seeds: vec![],
        };
        let h = render("demo <1>", &f, 5);
        assert!(h.contains("<h1>demo &lt;1&gt;</h1>"));
        // KAR vs base: +10% MAP, +5% NDCG.
        assert!(h.contains("0.55000 <span class=\"dp\">+10.00%</span>") && h.contains("0.63000 <span class=\"dp\">+5.00%</span>"), "{h}");
        assert!(h.contains("<td>w/o knowledge</td><td>0.50000</td>") && h.contains("<td>RLRF4Rec</td><td>0.56000</td>"));
        assert!(h.contains("by round (0 = KAR)") && h.contains("DPO: dpo_1") && h.contains("reward per answer (3 answers)"));
        assert!(h.contains("Not computed yet") && h.contains("eval_prm"));
        assert!(h.contains("<td>taste_after</td><td>80</td><td>7.5% (6)</td>"), "{h}");
        assert!(!h.contains("http://") || h.matches("http://").count() == h.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(), "no external links");
    }

    #[test]
    fn mean_and_sample_standard_deviation() {
        assert_eq!(mean_sd(&[0.5]), (0.5, None));
        let (m, sd) = mean_sd(&[0.2, 0.4, 0.6]);
        assert!((m - 0.4).abs() < 1e-12 && (sd.unwrap() - 0.2).abs() < 1e-12, "{m} {sd:?}");
    }

    #[test]
    fn seeds_average_into_means_with_their_spread() {
        let runs = vec![
            (Some(1), vec![row("base-dlcm", 0.5, 0.6), row("kar-dlcm", 0.5, 0.62)]),
            (Some(2), vec![row("base-dlcm", 0.7, 0.6), row("kar-dlcm", 0.7, 0.66)]),
            (Some(3), vec![row("base-dlcm", 0.6, 0.6)]),
        ];
        let avg = averaged(&runs);
        assert_eq!(avg.iter().map(|m| m.method.as_str()).collect::<Vec<_>>(), ["base-dlcm", "kar-dlcm"]);
        let (base, kar) = (&avg[0], &avg[1]);
        assert!((base.map - 0.6).abs() < 1e-12 && (base.spread.unwrap().map_sd.unwrap() - 0.1).abs() < 1e-12 && base.spread.unwrap().runs == 3);
        assert!((kar.ndcg - 0.64).abs() < 1e-12 && kar.spread.unwrap().runs == 2 && base.spread.unwrap().ndcg_sd == Some(0.0));
        let h = render("seeds", &Found { metrics: avg, seeds: vec![1, 2, 3], ..Default::default() }, 5);
        // KAR's mean over its 2 runs, its spread and count, and the change between means.
        assert!(h.contains("<td>0.60000 <span class=\"sd\">± 0.14142</span> <span class=\"sd\">(2)</span> <span class=\"dp\">+0.00%</span></td>"), "{h}");
        assert!(h.contains("0.64000 <span class=\"sd\">± 0.02828</span> <span class=\"sd\">(2)</span> <span class=\"dp\">+6.67%</span>"), "{h}");
        assert!(h.contains("over the runs with seeds 1, 2, 3"), "{h}");
        let reshaped = averaged(&[(Some(1), vec![row("base-dlcm", 0.5, 0.6)]), (Some(2), vec![MetricRow { lists: 12, ..row("base-dlcm", 0.7, 0.6) }])]);
        assert!(render("seeds", &Found { metrics: reshaped, seeds: vec![1, 2], ..Default::default() }, 5).contains("<td>0.10000</td><td>10–12</td>"));
    }

    #[test]
    fn lists_show_their_range_when_seeds_reshape_the_data() {
        let at = |lists: i64| MetricRow { lists, ..row("base", 0.5, 0.5) };
        assert_eq!(lists_cell(&averaged(&[(Some(1), vec![at(75)]), (Some(2), vec![at(75)])])[0]), "75");
        assert_eq!(lists_cell(&averaged(&[(Some(1), vec![at(75)]), (Some(2), vec![at(68)]), (Some(3), vec![at(70)])])[0]), "68–75");
    }

    #[test]
    fn a_paper_dataset_gets_the_published_figures_beside_its_own() {
        let on = |method: &str, map: f64, ndcg: f64| MetricRow { dataset: Some("amazon-books".into()), ..row(method, map, ndcg) };
        let metrics = vec![on("base-dlcm", 0.6, 0.62), on("kar-dlcm", 0.61, 0.63), on("rlrf4rec-dlcm-r1", 0.62, 0.64), on("popularity", 0.5, 0.5)];
        let h = render("amazon", &Found { metrics: metrics.clone(), ..Default::default() }, 5);
        assert!(h.contains("<th>paper MAP@5</th><th>paper NDCG@5</th>"), "{h}");
        // Table I's rows for base and RLRF4Rec (any round); nothing beside a method it lacks.
        assert!(h.contains("<td>0.60000</td><td>0.62000</td><td>0.10000</td><td>10</td><td>0.63823</td><td>0.66078</td></tr>"), "{h}");
        assert!(h.contains("<td>0.66563</td><td>0.69310</td></tr>") && h.contains("<td>popularity</td>"), "{h}");
        assert!(h.contains("<td>0.50000</td><td>0.10000</td><td>10</td><td></td><td></td></tr>"), "{h}");
        // Table II (NDCG@5) in the ablation's DLCM block.
        assert!(h.contains("<th>paper NDCG@5 (Table II)</th>") && h.contains("<td>w/o DPO</td><td>0.61000</td><td>0.63000</td><td>0.68434</td>"), "{h}");
        // The paper reports k = 5 only; the synthetic world is not in it.
        let at_10: Vec<MetricRow> = metrics.iter().map(|m| MetricRow { k: 10, ..m.clone() }).collect();
        assert!(!render("amazon", &Found { metrics: at_10, ..Default::default() }, 10).contains("paper"));
        let synthetic: Vec<MetricRow> = metrics.iter().map(|m| MetricRow { dataset: Some("synthetic".into()), ..m.clone() }).collect();
        assert!(!render("amazon", &Found { metrics: synthetic, ..Default::default() }, 5).contains("paper"));
    }
}
