//! Node kinds: the one trait every kind implements, its ports and artifact types, and the
//! registry that maps kind names to implementations.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use dagrun_cache::table::ColumnSpec;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::{Inputs, NodeContext};

/// An error returned by a node's `run`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One named table of a multi-table artifact type.
#[derive(Clone, Copy, Debug)]
pub struct TableSpec {
    /// The table's name; its rows live in `<name>.parquet`.
    pub name: &'static str,
    /// The columns every such table has (others may follow).
    pub columns: &'static [ColumnSpec],
}

/// The type of what flows along an edge. Two ports connect only if their types have the same
/// name. A table type lists the columns it guarantees; they are checked when a table is
/// written and again when it is read. An artifact is one table (`table.parquet`), several
/// named tables, or arbitrary files.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactType {
    pub name: &'static str,
    /// What the artifact holds, for `dagrun kinds` and messages.
    pub doc: &'static str,
    /// For single-table types: the columns every such table has.
    pub columns: &'static [ColumnSpec],
    /// Whether the artifact is a single Parquet table (`table.parquet`).
    pub is_table: bool,
    /// For multi-table types: the tables (all must be written).
    pub tables: &'static [TableSpec],
}

impl ArtifactType {
    /// A single-table type with these required columns.
    pub const fn table(name: &'static str, doc: &'static str, columns: &'static [ColumnSpec]) -> ArtifactType {
        ArtifactType { name, doc, columns, is_table: true, tables: &[] }
    }

    /// A type made of several named tables (and possibly other files).
    pub const fn tables(name: &'static str, doc: &'static str, tables: &'static [TableSpec]) -> ArtifactType {
        ArtifactType { name, doc, columns: &[], is_table: false, tables }
    }

    /// An input type that takes any single-table artifact (`Prompts`, `Texts`, ...): for kinds
    /// that read a column the user names, and check it when they run.
    pub const fn any_table(doc: &'static str) -> ArtifactType {
        ArtifactType { name: ANY_TABLE_NAME, doc, columns: &[], is_table: true, tables: &[] }
    }

    /// Whether this is an [`ArtifactType::any_table`] type.
    pub fn is_any_table(&self) -> bool {
        self.name == ANY_TABLE_NAME
    }

    /// Whether an input port of this type takes an output of type `other`.
    pub fn accepts(&self, other: &ArtifactType) -> bool {
        self == other || (self.is_any_table() && other.is_table)
    }

    /// A type whose artifacts are arbitrary files (weights, configs).
    pub const fn files(name: &'static str, doc: &'static str) -> ArtifactType {
        ArtifactType { name, doc, columns: &[], is_table: false, tables: &[] }
    }

    /// The names of the tables this type holds (`["table"]` for a single-table type).
    pub fn table_names(&self) -> Vec<&'static str> {
        if self.is_table {
            vec!["table"]
        } else {
            self.tables.iter().map(|t| t.name).collect()
        }
    }

    /// The required columns of table `name`, or `None` if the type has no such table.
    pub fn columns_of(&self, name: &str) -> Option<&'static [ColumnSpec]> {
        if self.is_table {
            (name == "table").then_some(self.columns)
        } else {
            self.tables.iter().find(|t| t.name == name).map(|t| t.columns)
        }
    }

    /// The file a table of this type lives in.
    pub fn table_file(name: &str) -> String {
        format!("{name}.parquet")
    }
}

/// The name of [`ArtifactType::any_table`] types.
const ANY_TABLE_NAME: &str = "Table";

impl PartialEq for ArtifactType {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl fmt::Display for ArtifactType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A named input or output of a node.
#[derive(Clone, Debug)]
pub struct Port {
    pub name: String,
    pub ty: ArtifactType,
    /// An optional input may be left unconnected.
    pub optional: bool,
}

impl Port {
    pub fn new(name: impl Into<String>, ty: ArtifactType) -> Port {
        Port { name: name.into(), ty, optional: false }
    }

    pub fn optional(name: impl Into<String>, ty: ArtifactType) -> Port {
        Port { name: name.into(), ty, optional: true }
    }
}

/// The ports of a node, which may depend on its params.
#[derive(Clone, Debug, Default)]
pub struct Signature {
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

/// What a node needs from the machine; the scheduler runs `gpu` nodes one at a time and an
/// `exclusive` node alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Gpu,
    Exclusive,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Cpu => "cpu",
            Resource::Gpu => "gpu",
            Resource::Exclusive => "exclusive",
        })
    }
}

/// A problem with a node's params. `path` names the field (dotted, relative to `params`)
/// when it is known, so the error can point at its line.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamError {
    pub path: Vec<String>,
    pub message: String,
}

impl ParamError {
    /// An error about one field.
    pub fn field(field: &str, message: impl Into<String>) -> ParamError {
        ParamError { path: field.split('.').map(str::to_string).collect(), message: message.into() }
    }

    /// An error about the params as a whole.
    pub fn whole(message: impl Into<String>) -> ParamError {
        ParamError { path: Vec::new(), message: message.into() }
    }
}

/// A node kind. Implement this for each kind; the registry stores it behind [`DynKind`].
pub trait Kind: Send + Sync + 'static {
    /// The params, deserialised from the node's `params:` (use `deny_unknown_fields`).
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + Sync;

    /// The name used in `kind:`.
    fn name(&self) -> &'static str;
    /// Bumped whenever the kind's output for the same inputs and params changes meaning;
    /// part of every cache key.
    fn version(&self) -> u32;
    /// The version for these params, when a change concerns only some uses of the kind (so
    /// the others keep their cached results). Defaults to [`Kind::version`].
    fn version_for(&self, _params: &Self::Params) -> u32 {
        self.version()
    }
    /// For a kind whose [`Kind::version_for`] differs from [`Kind::version`] for some params:
    /// which, as `dagrun kinds` shows it ("2 with `model:`").
    fn other_versions(&self) -> Option<&'static str> {
        None
    }
    /// One line on what the kind does.
    fn summary(&self) -> &'static str;
    /// Ports for these params; also the place for checks serde cannot express.
    fn signature(&self, params: &Self::Params) -> Result<Signature, ParamError>;
    /// Ports for these params when the spec connects the input ports named in `connected`
    /// (an optional input can change what the node produces or needs). Defaults to
    /// [`Kind::signature`].
    fn signature_for(&self, params: &Self::Params, connected: &[String]) -> Result<Signature, ParamError> {
        let _ = connected;
        self.signature(params)
    }
    /// The resource class for these params.
    fn resource(&self, _params: &Self::Params) -> Resource {
        Resource::Cpu
    }
    /// Whether, with these params, the node's derived seed may change its output (and so
    /// belongs in its key).
    fn seeded(&self, _params: &Self::Params) -> bool {
        true
    }
    /// Files outside the pipeline that the node reads (datasets, model files). Their content
    /// digests join the node's key, so editing a file reruns the node.
    fn files(&self, _params: &Self::Params) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
    /// What to tell a user whose `files` are missing: where to get them.
    fn files_hint(&self, _params: &Self::Params) -> Option<String> {
        None
    }
    /// Whether the kind computes its output row by row through the row cache and honours
    /// [`NodeContext::shard`], so `dagrun shard` can split its rows over machines.
    fn shardable(&self) -> bool {
        false
    }
    /// For a row-wise kind: the rows a node with these params and its derived `seed` computes
    /// from `inputs`, keyed as its run keys them in its row cache, so `dagrun explain` can
    /// count how many are already done. `None` for kinds that do not work row by row.
    fn rows(&self, _params: &Self::Params, _seed: u64, _inputs: &Inputs) -> Result<Option<RowPlan>, BoxError> {
        Ok(None)
    }
    /// Computes the outputs. Read inputs through `inputs`, write every output port through
    /// `ctx`, report progress and check for cancellation through `ctx`.
    fn run(&self, params: &Self::Params, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError>;
}

/// The rows a row-wise node computes (see [`Kind::rows`]).
#[derive(Clone, Debug)]
pub struct RowPlan {
    /// The row cache they are kept in (the kind given to [`NodeContext::row_cache`]).
    pub cache: String,
    /// One key per row; rows sharing a key are computed once.
    pub keys: Vec<dagrun_cache::Digest>,
    /// What a row is, in the plural, for messages ("answers", "texts").
    pub unit: &'static str,
}

/// The object-safe face of a [`Kind`], working on params as JSON.
pub trait DynKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// The version that goes into the key of a node with these params.
    fn version_for(&self, params: &serde_json::Value) -> u32;
    /// Which params take another version (see [`Kind::other_versions`]).
    fn other_versions(&self) -> Option<&'static str>;
    fn summary(&self) -> &'static str;
    fn seeded(&self, params: &serde_json::Value) -> bool;
    fn files(&self, params: &serde_json::Value) -> Vec<std::path::PathBuf>;
    fn files_hint(&self, params: &serde_json::Value) -> Option<String>;
    /// The JSON Schema of the params.
    fn params_schema(&self) -> serde_json::Value;
    /// Parses params and re-serialises them with every default filled in: the canonical form
    /// that goes into the cache key.
    fn canonical_params(&self, params: &serde_json::Value) -> Result<serde_json::Value, ParamError>;
    fn signature(&self, params: &serde_json::Value) -> Result<Signature, ParamError>;
    fn signature_for(&self, params: &serde_json::Value, connected: &[String]) -> Result<Signature, ParamError>;
    fn resource(&self, params: &serde_json::Value) -> Resource;
    fn shardable(&self) -> bool;
    fn rows(&self, params: &serde_json::Value, seed: u64, inputs: &Inputs) -> Result<Option<RowPlan>, BoxError>;
    fn run(&self, params: &serde_json::Value, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError>;
}

fn parse<K: Kind>(params: &serde_json::Value) -> Result<K::Params, ParamError> {
    serde_path_to_error::deserialize::<_, K::Params>(params).map_err(|e| {
        let path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        ParamError { path, message: e.into_inner().to_string() }
    })
}

impl<K: Kind> DynKind for K {
    fn name(&self) -> &'static str {
        Kind::name(self)
    }
    fn version(&self) -> u32 {
        Kind::version(self)
    }
    fn version_for(&self, params: &serde_json::Value) -> u32 {
        parse::<K>(params).map(|p| Kind::version_for(self, &p)).unwrap_or_else(|_| Kind::version(self))
    }
    fn other_versions(&self) -> Option<&'static str> {
        Kind::other_versions(self)
    }
    fn summary(&self) -> &'static str {
        Kind::summary(self)
    }
    fn seeded(&self, params: &serde_json::Value) -> bool {
        parse::<K>(params).map(|p| Kind::seeded(self, &p)).unwrap_or(true)
    }
    fn files(&self, params: &serde_json::Value) -> Vec<std::path::PathBuf> {
        parse::<K>(params).map(|p| Kind::files(self, &p)).unwrap_or_default()
    }
    fn files_hint(&self, params: &serde_json::Value) -> Option<String> {
        parse::<K>(params).ok().and_then(|p| Kind::files_hint(self, &p))
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(K::Params)).unwrap_or(serde_json::Value::Null)
    }
    fn canonical_params(&self, params: &serde_json::Value) -> Result<serde_json::Value, ParamError> {
        let typed = parse::<K>(params)?;
        serde_json::to_value(&typed).map_err(|e| ParamError::whole(e.to_string()))
    }
    fn signature(&self, params: &serde_json::Value) -> Result<Signature, ParamError> {
        Kind::signature(self, &parse::<K>(params)?)
    }
    fn signature_for(&self, params: &serde_json::Value, connected: &[String]) -> Result<Signature, ParamError> {
        Kind::signature_for(self, &parse::<K>(params)?, connected)
    }
    fn resource(&self, params: &serde_json::Value) -> Resource {
        parse::<K>(params).map(|p| Kind::resource(self, &p)).unwrap_or(Resource::Cpu)
    }
    fn shardable(&self) -> bool {
        Kind::shardable(self)
    }
    fn rows(&self, params: &serde_json::Value, seed: u64, inputs: &Inputs) -> Result<Option<RowPlan>, BoxError> {
        let typed = parse::<K>(params).map_err(|e| format!("params: {}", e.message))?;
        Kind::rows(self, &typed, seed, inputs)
    }
    fn run(&self, params: &serde_json::Value, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let typed = parse::<K>(params).map_err(|e| format!("params: {}", e.message))?;
        Kind::run(self, &typed, ctx, inputs)
    }
}

/// Maps kind names to implementations.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn DynKind>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a kind; a second kind with the same name replaces the first.
    pub fn register<K: Kind>(&mut self, kind: K) {
        self.kinds.insert(Kind::name(&kind), Arc::new(kind));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynKind>> {
        self.kinds.get(name)
    }

    /// Kind names in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.kinds.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Params {
        #[serde(default)]
        model: bool,
    }

    /// A kind whose change concerns only its `model: true` uses.
    struct Loader;

    impl Kind for Loader {
        type Params = Params;
        fn name(&self) -> &'static str {
            "loader"
        }
        fn version(&self) -> u32 {
            1
        }
        fn version_for(&self, p: &Params) -> u32 {
            if p.model {
                2
            } else {
                1
            }
        }
        fn summary(&self) -> &'static str {
            "test"
        }
        fn signature(&self, _p: &Params) -> Result<Signature, ParamError> {
            Ok(Signature { inputs: vec![], outputs: vec![] })
        }
        fn run(&self, _p: &Params, _ctx: &NodeContext, _inputs: &Inputs) -> Result<(), BoxError> {
            Ok(())
        }
    }

    /// The version in a node's key is the one for its params; params that do not parse (an
    /// error reported elsewhere) fall back to the kind's version.
    #[test]
    fn the_version_in_a_key_may_depend_on_the_params() {
        let k: &dyn DynKind = &Loader;
        assert_eq!(k.version_for(&serde_json::json!({ "model": true })), 2);
        assert_eq!(k.version_for(&serde_json::json!({})), 1);
        assert_eq!(k.version_for(&serde_json::json!({ "modle": true })), 1);
        assert_eq!(k.version(), 1);
    }
}
