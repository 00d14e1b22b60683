//! What every command shares: loading the pipeline, finding the cache, printing errors.

use std::path::PathBuf;
use std::process::ExitCode;

use dagrun_engine::cache::Store;
use dagrun_engine::{Override, Pipeline, Registry, SpecErrors};

use super::{SpecArgs, EXIT_FAILED, EXIT_USAGE};

/// An error that maps to an exit code: usage/spec problems exit 2, the rest 1.
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Spec(SpecErrors),
    Failed(anyhow::Error),
}

impl From<SpecErrors> for CliError {
    fn from(e: SpecErrors) -> CliError {
        CliError::Spec(e)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError::Failed(e)
    }
}

impl From<dagrun_engine::cache::CacheError> for CliError {
    fn from(e: dagrun_engine::cache::CacheError) -> CliError {
        CliError::Failed(e.into())
    }
}

pub type CliResult = Result<u8, CliError>;

pub fn report_error(e: CliError) -> ExitCode {
    match e {
        CliError::Usage(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
        CliError::Spec(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            if errors.0.len() > 1 {
                eprintln!("{} errors in the pipeline spec", errors.0.len());
            }
            ExitCode::from(EXIT_USAGE)
        }
        CliError::Failed(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The kinds this build offers.
/// The `--device` of a command that runs nodes, refused when this build cannot reach it.
pub fn device(flag: &str) -> Result<dagrun_engine::Device, CliError> {
    let device: dagrun_engine::Device = flag.parse().map_err(CliError::Usage)?;
    if matches!(device, dagrun_engine::Device::Cuda(_)) && !cfg!(feature = "cuda") {
        return Err(CliError::Usage("this dagrun was built without CUDA; rebuild with `--features cuda`".into()));
    }
    Ok(device)
}

pub fn registry() -> Registry {
    dagrun_nodes::registry()
}

/// Reads and resolves the pipeline with its `--set` overrides.
pub fn load(spec: &SpecArgs, registry: &Registry) -> Result<Pipeline, CliError> {
    let mut overrides = Vec::new();
    let mut errors = Vec::new();
    for s in &spec.set {
        match Override::parse(s) {
            Ok(o) => overrides.push(o),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(CliError::Spec(SpecErrors(errors)));
    }
    Ok(Pipeline::load(&spec.pipeline, registry, &overrides)?)
}

/// The cache directory: `--cache-dir`, else $DAGRUN_CACHE_DIR, else the spec's `cache:`,
/// else `.dagrun` (relative paths are relative to the working directory).
pub fn cache_dir(flag: &Option<PathBuf>, pipeline: Option<&Pipeline>) -> PathBuf {
    if let Some(d) = flag {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("DAGRUN_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(c) = pipeline.and_then(|p| p.cache.clone()) {
        return PathBuf::from(c);
    }
    PathBuf::from(".dagrun")
}

/// Opens the cache if it exists (read-only commands never create one).
pub fn existing_store(flag: &Option<PathBuf>, pipeline: Option<&Pipeline>) -> Result<Option<Store>, CliError> {
    Ok(Store::open_existing(cache_dir(flag, pipeline))?)
}

/// Node ids from the command line to indices, with "did you mean" for typos.
pub fn node_indices(p: &Pipeline, flag: &str, ids: &[String]) -> Result<std::collections::BTreeSet<usize>, CliError> {
    let mut out = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    for id in ids {
        match p.index_of(id) {
            Some(i) => {
                out.insert(i);
            }
            None => errors.push(p.unknown_node(&format!("{flag} {id}"), id)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(CliError::Spec(SpecErrors(errors)))
    }
}

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Left-aligned text columns.
pub fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub use dagrun_engine::ui::human_bytes;

/// The `dagrun run` command line for `spec` (its pipeline, `--set`s and `--cache-dir`) with
/// `extra` further overrides: what a message tells the user to run.
pub fn run_command(spec: &super::SpecArgs, extra: &[String]) -> String {
    let mut cmd = format!("dagrun run {}", shell_word(&spec.pipeline.display().to_string()));
    for s in spec.set.iter().chain(extra) {
        cmd.push_str(&format!(" --set {}", shell_word(s)));
    }
    if let Some(dir) = &spec.cache_dir {
        cmd.push_str(&format!(" --cache-dir {}", shell_word(&dir.display().to_string())));
    }
    cmd
}

/// `s` as one word of a shell command line: as it is when only safe characters make it up,
/// else in single quotes.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./=:,@+-%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_795_700_000_000), "2026-11-26 13:33:20 UTC");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("pipelines/quickstart.yaml"), "pipelines/quickstart.yaml");
        assert_eq!(shell_word("data.users=350"), "data.users=350");
        assert_eq!(shell_word("my runs/p.yaml"), "'my runs/p.yaml'");
        assert_eq!(shell_word("answers.stop=[\"it's\"]"), "'answers.stop=[\"it'\\''s\"]'");
        assert_eq!(shell_word(""), "''");
    }
}
