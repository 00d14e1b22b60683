//! `encode`: a BERT-family encoder turns a text column into vectors (KAR's knowledge vectors).
//! Texts are batched by length; vectors are cached per row, so a grown table encodes only its
//! new rows, and identical texts are encoded once.

use std::collections::HashMap;
use std::time::Instant;

use arrow_array::{Array, Int32Array, LargeStringArray, StringArray, StringViewArray};
use burn::prelude::Backend;
use dagrun_engine::cache::Digest;
use dagrun_engine::{ArtifactType, BoxError, Inputs, Kind, NodeContext, ParamError, Port, Resource, RowPlan, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::knowledge;
use crate::models::backend::on_device;
use crate::models::encoder::artifact;
use crate::models::encoder::bert::Pooling;
use crate::models::encoder::embed::{embed, EmbedSettings};
use crate::types::{EMBEDDINGS, ENCODER, PROMPTS};

/// What text each row becomes before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Compose {
    /// The column's text alone (KAR's item knowledge; a user's answer alone).
    Text,
    /// KAR's user knowledge text: the row's prompt (from the `prompts` input, matched by
    /// `key`) up to its last ";" — the user and their history, without the instruction —
    /// then ". ", then the text.
    KarUser,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncodeParams {
    /// The input table's column holding the texts.
    #[serde(default = "text_column")]
    pub column: String,
    /// text | kar-user (needs the `prompts` input).
    #[serde(default = "text_compose")]
    pub compose: Compose,
    /// mean (KAR: the mean over tokens, [CLS] and [SEP] included) | cls.
    #[serde(default = "mean")]
    pub pooling: Pooling,
    /// Scale every vector to unit length (sentence-transformers' models do; KAR does not).
    #[serde(default)]
    pub normalize: bool,
    /// Most tokens per text, [CLS] and [SEP] included; longer texts are cut. Default: the
    /// model's own sentence-transformers max_seq_length (MiniLM: 256), else 512.
    #[serde(default)]
    pub max_length: Option<u32>,
    /// Texts encoded together (does not change any vector).
    #[serde(default = "default_batch")]
    pub batch_size: u32,
}

fn text_column() -> String {
    "text".into()
}
fn text_compose() -> Compose {
    Compose::Text
}
fn mean() -> Pooling {
    Pooling::Mean
}
fn default_batch() -> u32 {
    32
}

/// Any table with `id`, `key` and the text column.
const TEXTS_IN: ArtifactType = ArtifactType::any_table("any table with id int32, key string and the text column");

/// The `encode` kind.
pub struct Encode;

impl Kind for Encode {
    type Params = EncodeParams;

    fn name(&self) -> &'static str {
        "encode"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "a BERT-family encoder turns a text column into vectors (batched by length; cached per row)"
    }
    fn resource(&self, _p: &EncodeParams) -> Resource {
        Resource::Gpu
    }
    fn shardable(&self) -> bool {
        true
    }

    fn signature(&self, p: &EncodeParams) -> Result<Signature, ParamError> {
        if p.column.is_empty() {
            return Err(ParamError::field("column", "must name a column"));
        }
        if p.batch_size == 0 {
            return Err(ParamError::field("batch_size", "must be at least 1"));
        }
        if let Some(m) = p.max_length {
            if m < 3 {
                return Err(ParamError::field("max_length", "must be at least 3 ([CLS], one token, [SEP])"));
            }
        }
        let mut inputs = vec![Port::new("model", ENCODER), Port::new("texts", TEXTS_IN)];
        if p.compose == Compose::KarUser {
            inputs.push(Port::new("prompts", PROMPTS));
        }
        Ok(Signature { inputs, outputs: vec![Port::new("embeddings", EMBEDDINGS)] })
    }

    fn rows(&self, p: &EncodeParams, _seed: u64, inputs: &Inputs) -> Result<Option<RowPlan>, BoxError> {
        let model_in = inputs.get("model").ok_or("no model input")?;
        let enc = artifact::load_text(&model_in.dir, p.max_length.map(|m| m as usize))?;
        let keys = read_texts(p, inputs)?.iter().map(|r| row_key(&model_in.digest, p, enc.tokenizer.max_length, &r.text)).collect();
        Ok(Some(RowPlan { cache: "encode".into(), keys, unit: "texts" }))
    }
    fn run(&self, p: &EncodeParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let rows = read_texts(p, inputs)?;
        on_device!(ctx.device(), crate::models::backend::Cpu, crate::models::backend::Gpu, |B, device| run_on::<B>(p, ctx, inputs, rows, &device))
    }
}

/// One input row: its keys and the text to encode.
struct Row {
    id: i32,
    key: String,
    sample: Option<i32>,
    text: String,
}

/// The strings of a text column, whichever string layout it has.
fn strings(col: &dyn Array) -> Option<Vec<Option<String>>> {
    let get = |i: usize, v: &dyn Fn(usize) -> String| (!col.is_null(i)).then(|| v(i));
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return Some((0..a.len()).map(|i| get(i, &|i| a.value(i).to_string())).collect());
    }
    if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
        return Some((0..a.len()).map(|i| get(i, &|i| a.value(i).to_string())).collect());
    }
    if let Some(a) = col.as_any().downcast_ref::<StringViewArray>() {
        return Some((0..a.len()).map(|i| get(i, &|i| a.value(i).to_string())).collect());
    }
    None
}

fn read_texts(p: &EncodeParams, inputs: &Inputs) -> Result<Vec<Row>, BoxError> {
    let b = inputs.table("texts")?.concat()?;
    let names = || b.schema().fields().iter().map(|f| format!("`{}` ({})", f.name(), f.data_type())).collect::<Vec<_>>().join(", ");
    let col = |name: &str| b.column_by_name(name).ok_or_else(|| format!("the `texts` table has no `{name}` column; it has {}", names()));
    let ids = col("id")?.as_any().downcast_ref::<Int32Array>().ok_or("the `texts` table's `id` column is not int32")?.clone();
    let keys = strings(col("key")?.as_ref()).ok_or("the `texts` table's `key` column is not a string column")?;
    let samples = b.column_by_name("sample").map(|c| c.as_any().downcast_ref::<Int32Array>().cloned().ok_or("the `texts` table's `sample` column is not int32")).transpose()?;
    let text_col = col(&p.column)?;
    let texts = strings(text_col.as_ref()).ok_or_else(|| {
        format!("column `{}` holds {}, not text; name a string column with `column:` (the table has {})", p.column, text_col.data_type(), names())
    })?;
    let prompts: Option<HashMap<String, String>> = match p.compose {
        Compose::Text => None,
        Compose::KarUser => {
            let pb = inputs.table("prompts")?.concat()?;
            let k = pb.column_by_name("key").and_then(|c| strings(c.as_ref())).ok_or("the `prompts` table has no string `key` column")?;
            let t = pb.column_by_name("prompt").and_then(|c| strings(c.as_ref())).ok_or("the `prompts` table has no string `prompt` column")?;
            Some(k.into_iter().zip(t).filter_map(|(k, t)| Some((k?, t?))).collect())
        }
    };
    let mut rows = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let key = keys[i].clone().ok_or_else(|| format!("row {i} of the `texts` table has no key"))?;
        let text = texts[i].clone().ok_or_else(|| format!("row {i} (key {key}) has no `{}` (null)", p.column))?;
        let text = match &prompts {
            None => text,
            Some(map) => {
                let prompt = map.get(&key).ok_or_else(|| format!("row {i}: the `prompts` input has no prompt with key {key} (compose: kar-user joins texts to prompts by key)"))?;
                kar_user_text(prompt, &text)
            }
        };
        rows.push(Row { id: ids.value(i), key, sample: samples.as_ref().map(|s| s.value(i)), text });
    }
    Ok(rows)
}

/// KAR's user text: the prompt cut at its last ";" (all of it when it has none), ". ", then
/// the answer.
pub fn kar_user_text(prompt: &str, answer: &str) -> String {
    let head = prompt.rfind(';').map_or(prompt, |i| &prompt[..i]);
    format!("{head}. {answer}")
}

/// A note when the model was trained to pool otherwise than this node does (a CLS-trained
/// model's mean-pooled vectors are poor ones): what its sentence-transformers files say, and
/// how to match them. Normalisation alone differing is no note (KAR does not normalise).
fn pooling_note(p: &EncodeParams, trained: Option<artifact::TrainedPooling>) -> Option<String> {
    let t = trained?;
    let ours = match p.pooling {
        Pooling::Mean => "mean",
        Pooling::Cls => "cls",
    };
    if t.mode == ours {
        return None;
    }
    let norm = if t.normalize { " and normalised vectors" } else { "" };
    let how = match t.mode.as_str() {
        "mean" | "cls" => format!("set `pooling: {}`{} to embed as sentence-transformers does", t.mode, if t.normalize && !p.normalize { " and `normalize: true`" } else { "" }),
        other => format!("its `{other}` pooling is not offered (mean and cls are)"),
    };
    Some(format!("note: the model's sentence-transformers files pool by {}{norm}; this node pools by {ours}: {how}", t.mode))
}

/// What decides one text's vector, for the row cache.
fn row_key(model: &Digest, p: &EncodeParams, max_length: usize, text: &str) -> Digest {
    let desc = serde_json::json!({ "v": 1, "model": model.hex(), "pooling": p.pooling, "normalize": p.normalize, "max_length": max_length, "text": text });
    Digest::of(desc.to_string().as_bytes())
}

fn run_on<B: Backend>(p: &EncodeParams, ctx: &NodeContext, inputs: &Inputs, rows: Vec<Row>, device: &B::Device) -> Result<(), BoxError> {
    let model_in = inputs.get("model").ok_or("no model input")?;
    let enc = artifact::load_text(&model_in.dir, p.max_length.map(|m| m as usize))?;
    if let Some(note) = pooling_note(p, artifact::trained_pooling(&model_in.dir)) {
        ctx.log(note);
    }
    let dim = enc.config.hidden_size;
    let cache = ctx.row_cache("encode");

    // Distinct texts not in the row cache (or the remote's), each encoded once.
    let keys: Vec<Digest> = rows.iter().map(|r| row_key(&model_in.digest, p, enc.tokenizer.max_length, &r.text)).collect();
    let mut distinct: Vec<(Digest, &str)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let shard = ctx.shard();
    for (k, r) in keys.iter().zip(&rows) {
        if shard.is_none_or(|s| s.owns(&k.hex())) && seen.insert(*k) {
            distinct.push((*k, r.text.as_str()));
        }
    }
    if let Some(s) = shard {
        ctx.log(format!("shard {s}: {} of {} distinct texts", distinct.len(), keys.iter().collect::<std::collections::HashSet<_>>().len()));
    }
    let asked: Vec<Digest> = distinct.iter().map(|d| d.0).collect();
    ctx.progress().message("looking up vectors already computed");
    let lookup = cache.as_ref().map(|c| c.get_many(&asked, &|b| b.len() == dim * 4)).unwrap_or_default();
    for w in &lookup.warnings {
        ctx.log(format!("warning: {w}"));
    }
    let mut vectors: HashMap<Digest, Vec<f32>> = HashMap::new();
    let mut todo: Vec<(Digest, &str)> = Vec::new();
    for (i, (k, text)) in distinct.into_iter().enumerate() {
        match lookup.found.get(i).and_then(Option::as_ref) {
            Some(bytes) => {
                vectors.insert(k, bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
            }
            None => todo.push((k, text)),
        }
    }
    if todo.len() < rows.len() {
        let remote = if lookup.from_remote > 0 { format!(" ({} from the remote)", lookup.from_remote) } else { String::new() };
        ctx.log(format!("{} of {} rows from the row cache or repeated texts{remote}; encoding {}", rows.len() - todo.len(), rows.len(), todo.len()));
    }
    if !todo.is_empty() {
        // The weights are read only when there is something to encode.
        ctx.progress().message("loading the encoder");
        let loading = Instant::now();
        let bert = artifact::load_bert::<B>(&model_in.dir, &enc.config, device)?;
        ctx.log(format!("encoder loaded in {:.1} s", loading.elapsed().as_secs_f64()));
        ctx.progress().message("tokenizing");
        let texts: Vec<&str> = todo.iter().map(|t| t.1).collect();
        let ids = enc.tokenizer.encode_all(&texts)?;
        let cut = ids.iter().filter(|i| i.len() == enc.tokenizer.max_length).count();
        if cut > 0 {
            let why = if p.compose == Compose::KarUser { " (KAR's user text puts the history first, so the answers of these lost some or all of their words)" } else { "" };
            ctx.log(format!("{cut} of {} texts reached max_length {} and were cut{why}", ids.len(), enc.tokenizer.max_length));
        }
        ctx.progress().start(Some(todo.len() as u64), "texts");
        let started = Instant::now();
        let mut encoded = 0usize;
        let settings = EmbedSettings { pooling: p.pooling, normalize: p.normalize, batch_size: p.batch_size as usize };
        let out = embed(&bert, enc.tokenizer.pad_id, &ids, &settings, device, &mut |n| {
            encoded += n;
            ctx.progress().inc(n as u64);
            ctx.progress().message(format!("{:.0} texts/s", encoded as f64 / started.elapsed().as_secs_f64().max(1e-9)));
            if ctx.is_cancelled() {
                return Err("cancelled".into());
            }
            Ok(())
        })?;
        ctx.check_cancelled()?;
        let mut stored = Vec::with_capacity(todo.len());
        for ((k, _), v) in todo.iter().zip(out) {
            stored.push((*k, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()));
            vectors.insert(*k, v);
        }
        if let Some(c) = &cache {
            c.put_many(&stored).map_err(|e| format!("row cache: {e}"))?;
        }
        let secs = started.elapsed().as_secs_f64();
        ctx.log(format!("encoded {} texts in {secs:.1} s ({:.0} texts/s)", todo.len(), todo.len() as f64 / secs.max(1e-9)));
    }

    if shard.is_some() {
        // A shard's vectors are in the row cache, to be uploaded; the table is the driver's.
        return Ok(());
    }
    let samples: Option<Vec<i32>> = rows.iter().map(|r| r.sample).collect();
    let out: Vec<(i32, String, Vec<f32>)> = rows.into_iter().zip(&keys).map(|(r, k)| (r.id, r.key, vectors[k].clone())).collect();
    knowledge::write(ctx, "embeddings", dim, &out, samples.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{kar_user_text, pooling_note, EncodeParams, Pooling};
    use crate::models::encoder::artifact::{trained_pooling, TrainedPooling};

    /// A model trained to pool otherwise (BGE: CLS, normalised) gets a note saying how to
    /// match it; one trained as the node pools gets none, even if it normalises (KAR does not);
    /// a pooling not offered is named. The files are read as sentence-transformers writes
    /// them, in both forms of `1_Pooling/config.json`.
    #[test]
    fn a_model_trained_to_pool_otherwise_is_noted() {
        let params = |pooling| EncodeParams { pooling, ..serde_json::from_str("{}").unwrap() };
        let trained = |mode: &str, normalize| Some(TrainedPooling { mode: mode.into(), normalize });
        assert_eq!(pooling_note(&params(Pooling::Mean), trained("mean", true)), None);
        assert_eq!(pooling_note(&params(Pooling::Mean), None), None);
        assert_eq!(
            pooling_note(&params(Pooling::Mean), trained("cls", true)).unwrap(),
            "note: the model's sentence-transformers files pool by cls and normalised vectors; this node pools by mean: set `pooling: cls` and `normalize: true` to embed as sentence-transformers does"
        );
        assert_eq!(
            pooling_note(&params(Pooling::Cls), trained("max", false)).unwrap(),
            "note: the model's sentence-transformers files pool by max; this node pools by cls: its `max` pooling is not offered (mean and cls are)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        assert_eq!(trained_pooling(dir.path()), None);
        std::fs::write(dir.path().join("1_Pooling/config.json"), r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#).unwrap();
        std::fs::write(dir.path().join("modules.json"), r#"[{"type": "sentence_transformers.models.Transformer"}, {"type": "sentence_transformers.models.Normalize"}]"#).unwrap();
        assert_eq!(trained_pooling(dir.path()), trained("cls", true));
        std::fs::write(dir.path().join("1_Pooling/config.json"), r#"{"embedding_dimension": 384, "pooling_mode": "mean"}"#).unwrap();
        std::fs::write(dir.path().join("modules.json"), "[]").unwrap();
        assert_eq!(trained_pooling(dir.path()), trained("mean", false));
    }

    #[test]
    fn kar_user_text_cuts_the_instruction() {
        let prompt = "Given a user, this user's movie viewing history over time is listed below. \"Heat (1995)\", 3 stars; \"Up (2009)\", 5 stars; Analyze the user's preferences.";
        assert_eq!(kar_user_text(prompt, "Likes action."), "Given a user, this user's movie viewing history over time is listed below. \"Heat (1995)\", 3 stars; \"Up (2009)\", 5 stars. Likes action.");
        assert_eq!(kar_user_text("no history here", "x"), "no history here. x");
    }
}
