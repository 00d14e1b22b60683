//! Test-only node kinds, compiled in only with the `test-kinds` feature, for the CLI tests and
//! benchmarks of the engine. They move small `Numbers` tables around and can be told to sleep,
//! fail, panic or claim a resource class, and they append `start`/`end` lines to the file named
//! by `DAGRUN_TEST_TRACE` so tests can see what ran when.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use dagrun_cache::table::{ColumnSpec, ColumnType};
use dagrun_engine::{ArtifactType, BoxError, Inputs, Kind, NodeContext, ParamError, Port, Registry, Resource, RowPlan, Signature};
use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A table of numbers: `i` (row index) and `value`.
pub const NUMBERS: ArtifactType = ArtifactType::table(
    "Numbers",
    "test table: i int64, value float64",
    &[ColumnSpec { name: "i", ty: ColumnType::Int64 }, ColumnSpec { name: "value", ty: ColumnType::Float64 }],
);

/// Opaque bytes.
pub const BLOB: ArtifactType = ArtifactType::files("Blob", "test artifact: one binary file");

pub fn register(r: &mut Registry) {
    r.register(Source);
    r.register(Scale);
    r.register(Sum);
    r.register(Blob);
    r.register(RowWise);
}

/// How a test node behaves besides its computation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResourceParam {
    #[default]
    Cpu,
    Gpu,
    Exclusive,
}

impl From<&ResourceParam> for Resource {
    fn from(r: &ResourceParam) -> Resource {
        match r {
            ResourceParam::Cpu => Resource::Cpu,
            ResourceParam::Gpu => Resource::Gpu,
            ResourceParam::Exclusive => Resource::Exclusive,
        }
    }
}

fn trace(ctx: &NodeContext, event: &str) {
    if let Ok(path) = std::env::var("DAGRUN_TEST_TRACE") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            // One write per line, so lines from parallel nodes never interleave.
            let line = format!("{event} {} {ms} {}\n", ctx.node_id(), std::process::id());
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Sleeps `ms` in small steps, reporting progress and honouring cancellation; then fails or
/// panics if asked to.
fn behave(ctx: &NodeContext, sleep_ms: u64, fail: &Option<String>, panic: bool) -> Result<(), BoxError> {
    trace(ctx, "start");
    let steps = sleep_ms.div_ceil(10);
    ctx.progress().start(Some(steps), "ticks");
    let t0 = Instant::now();
    for step in 0..steps {
        ctx.check_cancelled()?;
        let target = Duration::from_millis((step + 1) * 10);
        if let Some(rest) = target.checked_sub(t0.elapsed()) {
            std::thread::sleep(rest);
        }
        ctx.progress().inc(1);
    }
    if let Some(msg) = fail {
        trace(ctx, "fail");
        return Err(msg.clone().into());
    }
    if panic {
        panic!("asked to panic");
    }
    Ok(())
}

fn numbers(values: Vec<f64>) -> Result<RecordBatch, BoxError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let i: Vec<i64> = (0..values.len() as i64).collect();
    Ok(RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(i)), Arc::new(Float64Array::from(values))])?)
}

fn values(inputs: &Inputs, port: &str) -> Result<Vec<f64>, BoxError> {
    let t = inputs.table(port)?;
    let mut out = Vec::new();
    for b in &t.batches {
        let col = b
            .column_by_name("value")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .ok_or("value column is not float64")?;
        out.extend(col.values().iter().copied());
    }
    Ok(out)
}

/// Writes `rows` numbers: `value`, plus seeded noise if asked.
pub struct Source;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceParams {
    /// How many rows.
    #[serde(default = "ten")]
    pub rows: u64,
    /// Every row's value.
    #[serde(default)]
    pub value: f64,
    /// Add uniform noise in [0, 1) drawn from the node's seed.
    #[serde(default)]
    pub noise: bool,
    /// A label that does not change the output (for early-cutoff tests).
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub fail: Option<String>,
    #[serde(default)]
    pub panic: bool,
    #[serde(default)]
    pub resource: ResourceParam,
}

fn ten() -> u64 {
    10
}

impl Kind for Source {
    type Params = SourceParams;
    fn name(&self) -> &'static str {
        "test-source"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test: writes a Numbers table"
    }
    fn signature(&self, p: &SourceParams) -> Result<Signature, ParamError> {
        if p.rows > 10_000_000 {
            return Err(ParamError::field("rows", "must be at most 10000000"));
        }
        Ok(Signature { inputs: vec![], outputs: vec![Port::new("out", NUMBERS)] })
    }
    fn resource(&self, p: &SourceParams) -> Resource {
        (&p.resource).into()
    }
    fn run(&self, p: &SourceParams, ctx: &NodeContext, _inputs: &Inputs) -> Result<(), BoxError> {
        behave(ctx, p.sleep_ms, &p.fail, p.panic)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(ctx.seed());
        let v: Vec<f64> = (0..p.rows).map(|_| p.value + if p.noise { rng.random::<f64>() } else { 0.0 }).collect();
        ctx.write_batch("out", &numbers(v)?)?;
        trace(ctx, "end");
        Ok(())
    }
}

/// Multiplies every value by `factor`.
pub struct Scale;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleParams {
    #[serde(default = "one")]
    pub factor: f64,
    /// A label that does not change the output (for early-cutoff tests).
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub fail: Option<String>,
    #[serde(default)]
    pub panic: bool,
    #[serde(default)]
    pub resource: ResourceParam,
    /// Write nothing (to test the engine's check for unwritten outputs).
    #[serde(default)]
    pub forget_output: bool,
}

fn one() -> f64 {
    1.0
}

impl Kind for Scale {
    type Params = ScaleParams;
    fn name(&self) -> &'static str {
        "test-scale"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test: multiplies a Numbers table"
    }
    fn seeded(&self, _p: &Self::Params) -> bool {
        false
    }
    fn signature(&self, _p: &ScaleParams) -> Result<Signature, ParamError> {
        Ok(Signature { inputs: vec![Port::new("in", NUMBERS)], outputs: vec![Port::new("out", NUMBERS)] })
    }
    fn resource(&self, p: &ScaleParams) -> Resource {
        (&p.resource).into()
    }
    fn run(&self, p: &ScaleParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let v = values(inputs, "in")?;
        behave(ctx, p.sleep_ms, &p.fail, p.panic)?;
        if !p.forget_output {
            ctx.write_batch("out", &numbers(v.into_iter().map(|x| x * p.factor).collect())?)?;
        }
        trace(ctx, "end");
        Ok(())
    }
}

/// Adds two tables row by row (and an optional third); also writes the total as a `Blob`.
pub struct Sum;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SumParams {
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub fail: Option<String>,
    #[serde(default)]
    pub resource: ResourceParam,
}

impl Kind for Sum {
    type Params = SumParams;
    fn name(&self) -> &'static str {
        "test-sum"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test: adds Numbers tables"
    }
    fn seeded(&self, _p: &Self::Params) -> bool {
        false
    }
    fn signature(&self, _p: &SumParams) -> Result<Signature, ParamError> {
        Ok(Signature {
            inputs: vec![Port::new("left", NUMBERS), Port::new("right", NUMBERS), Port::optional("extra", NUMBERS)],
            outputs: vec![Port::new("out", NUMBERS), Port::new("total", BLOB)],
        })
    }
    fn resource(&self, p: &SumParams) -> Resource {
        (&p.resource).into()
    }
    fn run(&self, p: &SumParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let mut v = values(inputs, "left")?;
        let r = values(inputs, "right")?;
        if r.len() != v.len() {
            return Err(format!("left has {} rows but right has {}", v.len(), r.len()).into());
        }
        let extra = if inputs.has("extra") { values(inputs, "extra")? } else { vec![0.0; v.len()] };
        for (i, x) in v.iter_mut().enumerate() {
            *x += r[i] + extra.get(i).copied().unwrap_or(0.0);
        }
        ctx.log(format!("adding {} rows", v.len()));
        behave(ctx, p.sleep_ms, &p.fail, false)?;
        let total: f64 = v.iter().sum();
        ctx.log(format!("total {total}"));
        ctx.write_batch("out", &numbers(v)?)?;
        std::fs::write(ctx.output_dir("total")?.join("total.json"), format!("{{\"total\": {total}}}\n"))?;
        trace(ctx, "end");
        Ok(())
    }
}

/// Multiplies each value by `factor`, keeping each row's result in the row cache as
/// `generate` keeps its answers: a stand-in for a row-wise kind in the engine's tests.
pub struct RowWise;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowWiseParams {
    #[serde(default = "one")]
    pub factor: f64,
    /// Fail after computing this many rows (they stay in the row cache), as a killed task.
    #[serde(default)]
    pub fail_after_rows: Option<usize>,
}

impl Kind for RowWise {
    type Params = RowWiseParams;
    fn name(&self) -> &'static str {
        "test-rows"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test: multiplies a Numbers table row by row, through the row cache"
    }
    fn seeded(&self, _p: &Self::Params) -> bool {
        false
    }
    fn shardable(&self) -> bool {
        true
    }
    fn signature(&self, _p: &RowWiseParams) -> Result<Signature, ParamError> {
        Ok(Signature { inputs: vec![Port::new("in", NUMBERS)], outputs: vec![Port::new("out", NUMBERS)] })
    }
    fn rows(&self, p: &RowWiseParams, _seed: u64, inputs: &Inputs) -> Result<Option<RowPlan>, BoxError> {
        let keys = values(inputs, "in")?.into_iter().map(|x| row_key(p, x)).collect();
        Ok(Some(RowPlan { cache: "test-rows".into(), keys, unit: "rows" }))
    }
    fn run(&self, p: &RowWiseParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let mut v = values(inputs, "in")?;
        if let Some(shard) = ctx.shard() {
            v.retain(|x| shard.owns(&x.to_string()));
        }
        let keys: Vec<_> = v.iter().map(|&x| row_key(p, x)).collect();
        let cache = ctx.row_cache("test-rows").ok_or("no row cache")?;
        let lookup = cache.get_many(&keys, &|b| b.len() == 8);
        for w in &lookup.warnings {
            ctx.log(format!("warning: {w}"));
        }
        let mut computed = 0;
        let mut out = Vec::with_capacity(v.len());
        for ((x, k), hit) in v.iter().zip(&keys).zip(lookup.found) {
            let y = match hit {
                Some(b) => f64::from_le_bytes(b.try_into().map_err(|_| "bad row")?),
                None => {
                    if p.fail_after_rows == Some(computed) {
                        return Err(format!("failing after {computed} rows, as asked").into());
                    }
                    computed += 1;
                    let y = x * p.factor;
                    cache.put(k, &y.to_le_bytes())?;
                    y
                }
            };
            out.push(y);
        }
        ctx.log(format!("{} of {} rows cached ({} from the remote); computed {computed}", v.len() - computed, v.len(), lookup.from_remote));
        if ctx.shard().is_some() {
            return Ok(());
        }
        ctx.write_batch("out", &numbers(out)?)?;
        Ok(())
    }
}

/// The row-cache key of `x` multiplied by the factor.
fn row_key(p: &RowWiseParams, x: f64) -> dagrun_cache::Digest {
    dagrun_cache::Digest::of(format!("test-rows {} {x}", p.factor).as_bytes())
}

/// Writes `bytes` pseudo-random bytes (from the seed) as one file.
pub struct Blob;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlobParams {
    pub bytes: u64,
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Kind for Blob {
    type Params = BlobParams;
    fn name(&self) -> &'static str {
        "test-blob"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "test: writes a file of seeded random bytes"
    }
    fn signature(&self, _p: &BlobParams) -> Result<Signature, ParamError> {
        Ok(Signature { inputs: vec![], outputs: vec![Port::new("out", BLOB)] })
    }
    fn run(&self, p: &BlobParams, ctx: &NodeContext, _inputs: &Inputs) -> Result<(), BoxError> {
        behave(ctx, p.sleep_ms, &None, false)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(ctx.seed());
        let mut f = std::io::BufWriter::new(std::fs::File::create(ctx.output_dir("out")?.join("blob.bin"))?);
        let mut buf = vec![0u8; 1 << 16];
        let mut left = p.bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.flush()?;
        trace(ctx, "end");
        Ok(())
    }
}
