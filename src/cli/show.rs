//! `dagrun show`: preview a node's output (a table's rows, or an artifact's files).

use std::collections::BTreeSet;
use std::io::Write;

use clap::{Args, ValueEnum};
use dagrun_engine::cache::table::{self, format_preview};
use dagrun_engine::context::MANIFEST_FILE;
use dagrun_engine::plan::{plan as make_plan, NodePlan};

use super::util::{self, human_bytes, CliError, CliResult};
use super::SpecArgs;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShowFormat {
    Table,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// `NODE` or `NODE.PORT` (default: the node's first output).
    pub target: String,
    /// Rows to show (default: 10 in the table format, every row in csv and json).
    #[arg(long, value_name = "N")]
    pub rows: Option<usize>,
    /// `table` previews; `csv` and `json` print every row (or the first --rows).
    #[arg(long, value_enum, default_value = "table")]
    pub format: ShowFormat,
    /// Print the path of the Parquet file (or the artifact directory) instead.
    #[arg(long)]
    pub path: bool,
    /// For artifacts of several tables (a dataset): which table.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
}

pub fn show(a: ShowArgs) -> CliResult {
    let registry = util::registry();
    let pipeline = util::load(&a.spec, &registry)?;
    let (id, port) = match a.target.split_once('.') {
        Some((n, p)) => (n.to_string(), Some(p.to_string())),
        None => (a.target.clone(), None),
    };
    let i = *util::node_indices(&pipeline, "show", std::slice::from_ref(&id))?.iter().next().expect("one node");
    let node = &pipeline.nodes[i];
    let port = match port {
        Some(p) => node.outputs.iter().find(|o| o.name == p).ok_or_else(|| {
            let names: Vec<&str> = node.outputs.iter().map(|o| o.name.as_str()).collect();
            CliError::Usage(format!(
                "node `{id}` has no output `{p}`{}",
                dagrun_engine::suggest::hint(&p, names).map(|h| format!(" ({h})")).unwrap_or_default()
            ))
        })?,
        None => node.outputs.first().ok_or_else(|| CliError::Usage(format!("node `{id}` has no outputs")))?,
    };
    let not_computed = || {
        CliError::Failed(anyhow::anyhow!(
            "node `{id}` has no cached output for its current params and inputs; run `dagrun {} --until {id}` first",
            a.spec.pipeline.display()
        ))
    };
    let store = util::existing_store(&a.spec.cache_dir, Some(&pipeline))?.ok_or_else(not_computed)?;
    super::remote::fetch_for_reading(&pipeline, &store, &[i]);
    let targets = vec![true; pipeline.nodes.len()];
    let planned = make_plan(&pipeline, Some(&store), &targets, &BTreeSet::new());
    let NodePlan::Cached { entry, .. } = &planned[i].plan else { return Err(not_computed()) };
    let digest = entry.outputs.get(&port.name).ok_or_else(not_computed)?;
    let dir = store.artifact_dir(digest);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let write_err = |e: std::io::Error| CliError::Failed(e.into());
    let tables: Vec<&str> = match &a.table {
        Some(t) if port.ty.columns_of(t).is_some() => vec![t.as_str()],
        Some(t) => {
            let names = port.ty.table_names();
            return Err(CliError::Usage(format!(
                "{id}.{} ({}) has no table `{t}`{}",
                port.name,
                port.ty,
                dagrun_engine::suggest::hint(t, names).map(|h| format!(" ({h})")).unwrap_or_default()
            )));
        }
        None => port.ty.table_names(),
    };
    if !tables.is_empty() {
        if a.path && tables.len() > 1 {
            writeln!(out, "{}", dir.display()).map_err(write_err)?;
            return Ok(0);
        }
        if tables.len() > 1 && a.format != ShowFormat::Table {
            return Err(CliError::Usage(format!(
                "{id}.{} holds tables {}; pick one with --table for --format csv|json",
                port.name,
                tables.join(", ")
            )));
        }
        let fail = |e: arrow_schema::ArrowError| CliError::Failed(anyhow::anyhow!("{e}"));
        for name in tables {
            let file = dir.join(dagrun_engine::ArtifactType::table_file(name));
            if a.path {
                writeln!(out, "{}", file.display()).map_err(write_err)?;
                return Ok(0);
            }
            let t = table::read_parquet(&file)?;
            let t = match (a.format, a.rows) {
                (ShowFormat::Csv | ShowFormat::Json, Some(n)) => t.head(n),
                _ => t,
            };
            match a.format {
                ShowFormat::Table => {
                    let rows = a.rows.unwrap_or(10);
                    let label = if port.ty.is_table { String::new() } else { format!(" table `{name}`") };
                    writeln!(out, "{}.{}{label} ({}, {}): {} rows", id, port.name, port.ty, digest.short(), t.num_rows()).map_err(write_err)?;
                    writeln!(out, "{}", format_preview(&t, rows).map_err(fail)?).map_err(write_err)?;
                    if t.num_rows() > rows {
                        writeln!(out, "... {} more rows (--rows N, or --format csv|json for all)", t.num_rows() - rows).map_err(write_err)?;
                    }
                }
                ShowFormat::Csv => table::write_csv(&t, &mut out).map_err(fail)?,
                ShowFormat::Json => {
                    table::write_json(&t, &mut out).map_err(fail)?;
                    writeln!(out).map_err(write_err)?;
                }
            }
        }
    } else {
        if a.path {
            writeln!(out, "{}", dir.display()).map_err(write_err)?;
            return Ok(0);
        }
        let listing = store
            .check_artifact(digest, dagrun_engine::cache::Check::Quick)
            .map_err(|d| CliError::Failed(anyhow::anyhow!("artifact {} is damaged: {d}", digest.short())))?;
        writeln!(out, "{}.{} ({}, {}): {} files", id, port.name, port.ty, digest.short(), listing.files.len()).map_err(write_err)?;
        for f in &listing.files {
            if f.path == MANIFEST_FILE {
                continue;
            }
            writeln!(out, "  {:>10}  {}", human_bytes(f.size), f.path).map_err(write_err)?;
            if f.path.ends_with(".json") && f.size < 4096 && a.format != ShowFormat::Csv {
                if let Ok(text) = std::fs::read_to_string(dir.join(&f.path)) {
                    for line in text.lines() {
                        writeln!(out, "      {line}").map_err(write_err)?;
                    }
                }
            }
        }
    }
    Ok(0)
}
