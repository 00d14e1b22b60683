//! Small kinds for the engine's own unit tests.

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use dagrun_cache::table::{ColumnSpec, ColumnType};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::{ArtifactType, BoxError, Inputs, Kind, NodeContext, ParamError, Port, Registry, Signature};

pub const INTS: ArtifactType = ArtifactType::table("Ints", "ints", &[ColumnSpec { name: "x", ty: ColumnType::Int64 }]);
pub const TEXT: ArtifactType = ArtifactType::files("Text", "text");

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Fast,
    Slow,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SrcParams {
    pub n: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub temperature: f64,
    #[serde(default = "fast")]
    pub mode: Mode,
    #[serde(default)]
    pub nested: Nested,
}

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nested {
    #[serde(default)]
    pub depth: u32,
}

fn fast() -> Mode {
    Mode::Fast
}

pub struct Src;

impl Kind for Src {
    type Params = SrcParams;
    fn name(&self) -> &'static str {
        "src"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "ints 0..n"
    }
    fn signature(&self, p: &SrcParams) -> Result<Signature, ParamError> {
        if p.n == 13 {
            return Err(ParamError::field("n", "13 is unlucky"));
        }
        Ok(Signature { inputs: vec![], outputs: vec![Port::new("out", INTS)] })
    }
    fn run(&self, p: &SrcParams, ctx: &NodeContext, _inputs: &Inputs) -> Result<(), BoxError> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from((0..p.n as i64).collect::<Vec<_>>()))])?;
        ctx.write_batch("out", &b)?;
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapParams {
    #[serde(default)]
    pub add: i64,
}

pub struct Map;

impl Kind for Map {
    type Params = MapParams;
    fn name(&self) -> &'static str {
        "map"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "adds"
    }
    fn signature(&self, _p: &MapParams) -> Result<Signature, ParamError> {
        Ok(Signature {
            inputs: vec![Port::new("in", INTS), Port::optional("side", INTS)],
            outputs: vec![Port::new("out", INTS)],
        })
    }
    fn run(&self, p: &MapParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let t = inputs.table("in")?.concat()?;
        let col = t.column(0).as_any().downcast_ref::<Int64Array>().ok_or("not ints")?;
        let out: Vec<i64> = col.values().iter().map(|v| v + p.add).collect();
        let b = RecordBatch::try_new(t.schema(), vec![Arc::new(Int64Array::from(out))])?;
        ctx.write_batch("out", &b)?;
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Two outputs: `ints` and `text`.
pub struct Pair;

impl Kind for Pair {
    type Params = NoParams;
    fn name(&self) -> &'static str {
        "pair"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "two outputs"
    }
    fn signature(&self, _p: &NoParams) -> Result<Signature, ParamError> {
        Ok(Signature { inputs: vec![], outputs: vec![Port::new("ints", INTS), Port::new("text", TEXT)] })
    }
    fn run(&self, _p: &NoParams, ctx: &NodeContext, _inputs: &Inputs) -> Result<(), BoxError> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        ctx.write_batch("ints", &RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))])?)?;
        std::fs::write(ctx.output_dir("text")?.join("t.txt"), "hi")?;
        Ok(())
    }
}

/// Reads text.
pub struct Reader;

impl Kind for Reader {
    type Params = NoParams;
    fn name(&self) -> &'static str {
        "reader"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "reads text"
    }
    fn signature(&self, _p: &NoParams) -> Result<Signature, ParamError> {
        Ok(Signature { inputs: vec![Port::new("text", TEXT)], outputs: vec![Port::new("out", TEXT)] })
    }
    fn run(&self, _p: &NoParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let t = std::fs::read_to_string(inputs.dir("text")?.join("t.txt"))?;
        std::fs::write(ctx.output_dir("out")?.join("t.txt"), t.to_uppercase())?;
        Ok(())
    }
}

/// Counts the rows of any table.
pub struct Count;

impl Kind for Count {
    type Params = NoParams;
    fn name(&self) -> &'static str {
        "count"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "counts the rows of any table"
    }
    fn signature(&self, _p: &NoParams) -> Result<Signature, ParamError> {
        Ok(Signature { inputs: vec![Port::new("rows", ArtifactType::any_table("any table"))], outputs: vec![Port::new("n", INTS)] })
    }
    fn run(&self, _p: &NoParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let n = inputs.table("rows")?.concat()?.num_rows() as i64;
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        ctx.write_batch("n", &RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![n]))])?)?;
        Ok(())
    }
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(Src);
    r.register(Map);
    r.register(Pair);
    r.register(Reader);
    r.register(Count);
    r
}
