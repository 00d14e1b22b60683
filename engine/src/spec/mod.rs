//! Pipeline specs as written: the YAML file parsed into typed structs, `${vars.x}` references
//! resolved and `--set` overrides applied. Turning this into a checked graph is `resolve`'s job.

mod location;
mod overrides;
mod vars;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

pub use location::Locations;
pub use overrides::Override;

use crate::error::{Loc, SpecError, SpecErrors};

/// A spec as written (after parsing, before resolution).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// The pipeline's name; run records and gc are per name.
    pub pipeline: String,
    /// The pipeline seed; each node derives its own from it and its id.
    #[serde(default)]
    pub seed: u64,
    /// The local cache directory (relative to the working directory).
    #[serde(default)]
    pub cache: Option<String>,
    /// A shared cache that runs read through: a URL, or `{url: URL, push: true}` to also
    /// push every node a run computes.
    #[serde(default)]
    pub remote: Option<RemoteSetting>,
    /// Values that params and inputs refer to as `${vars.NAME}`.
    #[serde(default)]
    pub vars: IndexMap<String, serde_yaml::Value>,
    pub nodes: IndexMap<String, RawNode>,
}

/// The `remote:` setting of a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSetting {
    /// `s3://BUCKET/PREFIX`, `gs://…`, `az://…`, `file:///DIR` or a directory path.
    pub url: String,
    /// Write-through: push each node a run computes.
    pub push: bool,
}

impl<'de> Deserialize<'de> for RemoteSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let expected = "expected a remote URL (s3://BUCKET/PREFIX, gs://…, az://…, file:///DIR) or `{url: URL, push: true|false}`";
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(url) if !url.trim().is_empty() => Ok(RemoteSetting { url, push: false }),
            serde_yaml::Value::Mapping(m) => {
                let mut url = None;
                let mut push = false;
                for (k, v) in m {
                    match (k.as_str(), v) {
                        (Some("url"), serde_yaml::Value::String(u)) if !u.trim().is_empty() => url = Some(u),
                        (Some("push"), serde_yaml::Value::Bool(b)) => push = b,
                        (Some("url"), _) => return Err(D::Error::custom("`url` must be a non-empty string")),
                        (Some("push"), _) => return Err(D::Error::custom("`push` must be true or false")),
                        (k, _) => {
                            return Err(D::Error::custom(format!(
                                "unknown field `{}` in `remote`; expected `url` or `push`",
                                k.unwrap_or("?")
                            )))
                        }
                    }
                }
                url.map(|url| RemoteSetting { url, push }).ok_or_else(|| D::Error::custom("`remote` needs a `url`"))
            }
            _ => Err(D::Error::custom(expected)),
        }
    }
}

/// A node as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub kind: String,
    /// Input port -> `node` or `node.port`.
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    #[serde(default)]
    pub params: serde_yaml::Value,
}

/// A parsed spec with its source positions.
#[derive(Debug)]
pub struct SpecFile {
    pub path: PathBuf,
    pub raw: RawSpec,
    pub locations: Locations,
    /// Params set on the command line: (node, param path) -> the `--set` argument.
    pub overridden: Vec<(String, Vec<String>, String)>,
}

impl SpecFile {
    /// The position of `path` in the file, or of its nearest indexed ancestor.
    pub fn loc(&self, path: &[&str]) -> Option<Loc> {
        self.locations.nearest(path)
    }

    /// An error pointing at `path`.
    pub fn error_at(&self, path: &[&str], message: impl Into<String>) -> SpecError {
        SpecError::at(&self.path, self.loc(path), message)
    }
}

/// Reads and parses a spec file.
pub fn read(path: &Path, overrides: &[Override], param_schema: &dyn Fn(&str) -> Option<serde_json::Value>) -> Result<SpecFile, SpecErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::at(path, None, format!("cannot read the pipeline file: {e}")))?;
    parse(path, &text, overrides, param_schema)
}

/// Parses spec text; `path` is used in messages. `param_schema` gives the JSON Schema of a
/// kind's params (for typing `--set` values), or `None` for an unknown kind.
pub fn parse(
    path: &Path,
    text: &str,
    overrides: &[Override],
    param_schema: &dyn Fn(&str) -> Option<serde_json::Value>,
) -> Result<SpecFile, SpecErrors> {
    let locations = Locations::index(text);
    let mut errors = Vec::new();
    for (dup, loc) in &locations.duplicates {
        let what = if dup.len() == 2 && dup[0] == "nodes" {
            format!("duplicate node id `{}`", dup[1])
        } else {
            format!("duplicate key `{}`", dup.join("."))
        };
        errors.push(SpecError::at(path, Some(*loc), what));
    }
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location().map(|l| Loc { line: l.line(), col: l.column() });
        let msg = e.to_string();
        let msg = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        SpecError::at(path, loc, format!("invalid YAML: {msg}"))
    })?;
    if value.is_null() {
        return Err(SpecError::at(path, None, "the pipeline file is empty (expected `pipeline:` and `nodes:`)").into());
    }
    let mut raw: RawSpec = serde_path_to_error::deserialize(value).map_err(|e| {
        let segs: Vec<String> = e.path().iter().map(|s| s.to_string()).filter(|s| s != "?").collect();
        let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let inner = e.into_inner().to_string();
        let inner = match inner.find(" at line ") {
            Some(i) => inner[..i].to_string(),
            None => inner,
        };
        let where_ = if refs.is_empty() { String::new() } else { format!("`{}`: ", refs.join(".")) };
        // An unknown field is best shown at its key; anything else at its value.
        let loc = if inner.starts_with("unknown field") { locations.key(&refs) } else { None };
        let mut err = SpecError::at(path, loc.or_else(|| locations.nearest(&refs)), format!("{where_}{inner}"));
        if refs.len() >= 2 && refs[0] == "nodes" {
            err = err.node(refs[1]);
        }
        err = err.hint(crate::suggest::unknown_field_hint(&inner));
        SpecErrors(vec![err])
    })?;

    let file_ctx = Ctx { path, locations: &locations };
    check_names(&raw, &file_ctx, &mut errors);
    overrides::apply_seed(&mut raw, overrides, &mut errors);
    overrides::apply_vars(&mut raw, overrides, &mut errors);
    vars::interpolate_all(&mut raw, &file_ctx, &mut errors);
    let overridden = overrides::apply_params(&mut raw, overrides, param_schema, &mut errors);
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    Ok(SpecFile { path: path.to_path_buf(), raw, locations, overridden })
}

/// What error helpers need to point into the file.
pub(crate) struct Ctx<'a> {
    pub path: &'a Path,
    pub locations: &'a Locations,
}

impl Ctx<'_> {
    pub fn at(&self, path: &[&str], message: impl Into<String>) -> SpecError {
        SpecError::at(self.path, self.locations.nearest(path), message)
    }
}

/// Whether `s` is usable as a pipeline name or node id: letters, digits, `_` and `-`,
/// starting with a letter or `_`.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_names(raw: &RawSpec, ctx: &Ctx, errors: &mut Vec<SpecError>) {
    if !valid_name(&raw.pipeline) {
        errors.push(ctx.at(
            &["pipeline"],
            format!("pipeline name `{}` must be letters, digits, `_` or `-`, starting with a letter", raw.pipeline),
        ));
    }
    if raw.nodes.is_empty() {
        errors.push(ctx.at(&["nodes"], "`nodes` is empty; a pipeline needs at least one node"));
    }
    for id in raw.nodes.keys() {
        if !valid_name(id) {
            errors.push(
                SpecError::at(ctx.path, ctx.locations.key(&["nodes", id]), format!(
                    "node id `{id}` must be letters, digits, `_` or `-`, starting with a letter (a `.` separates node and port in inputs)"
                ))
                .node(id),
            );
        }
    }
    for (id, node) in &raw.nodes {
        if !(node.params.is_null() || node.params.is_mapping()) {
            errors.push(ctx.at(&["nodes", id, "params"], "`params` must be a mapping of param names to values").node(id));
        }
    }
}

#[cfg(test)]
mod tests;
