//! The `Dataset` artifact: four Parquet tables plus `dataset.json`, and their conversion to
//! and from the in-memory [`Dataset`].
//!
//! | table | columns |
//! | --- | --- |
//! | items | item int32 (1-based), raw_id string, title string, attributes list<string> (in `attribute_fields` order), attribute_ids list<int32> (shared vocabulary, 1-based), has_meta bool |
//! | users | user int32, raw_id string, split string (train/test), window int32 (interactions in the LLM prompt), interactions int32, gender string?, age int32?, occupation string?, truth string? (synthetic ground truth, JSON; no model reads it) |
//! | interactions | user int32, item int32, rating float32, timestamp int64 (unix s), position int32 (0-based, time order), label bool |
//! | lists | user int32, split string, list int32 (per user), start int32 (position of its first real interaction), candidates fixed_list<int32>, labels fixed_list<int32>, history_items fixed_list<int32>, history_ratings fixed_list<float32> |

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use dagrun_cache::table::{ColumnSpec, ColumnType, Table};
use dagrun_engine::{ArtifactType, BoxError, Inputs, NodeContext, TableSpec};
use serde::{Deserialize, Serialize};

use super::preprocess::{Dataset, Interaction, Item, RerankList, Settings, Split, User};
use super::raw::{Demographics, Flavour};

const INT: ColumnType = ColumnType::Int32;

/// A preprocessed dataset: items, users, interactions and re-rank lists.
pub const DATASET: ArtifactType = ArtifactType::tables(
    "Dataset",
    "a preprocessed dataset: items, users, interactions and re-rank lists tables, plus dataset.json",
    &[
        TableSpec {
            name: "items",
            columns: &[
                ColumnSpec { name: "item", ty: INT },
                ColumnSpec { name: "raw_id", ty: ColumnType::Utf8 },
                ColumnSpec { name: "title", ty: ColumnType::Utf8 },
                ColumnSpec { name: "attributes", ty: ColumnType::List(&ColumnType::Utf8) },
                ColumnSpec { name: "attribute_ids", ty: ColumnType::List(&INT) },
                ColumnSpec { name: "has_meta", ty: ColumnType::Boolean },
            ],
        },
        TableSpec {
            name: "users",
            columns: &[
                ColumnSpec { name: "user", ty: INT },
                ColumnSpec { name: "raw_id", ty: ColumnType::Utf8 },
                ColumnSpec { name: "split", ty: ColumnType::Utf8 },
                ColumnSpec { name: "window", ty: INT },
                ColumnSpec { name: "interactions", ty: INT },
            ],
        },
        TableSpec {
            name: "interactions",
            columns: &[
                ColumnSpec { name: "user", ty: INT },
                ColumnSpec { name: "item", ty: INT },
                ColumnSpec { name: "rating", ty: ColumnType::Float32 },
                ColumnSpec { name: "timestamp", ty: ColumnType::Int64 },
                ColumnSpec { name: "position", ty: INT },
                ColumnSpec { name: "label", ty: ColumnType::Boolean },
            ],
        },
        TableSpec {
            name: "lists",
            columns: &[
                ColumnSpec { name: "user", ty: INT },
                ColumnSpec { name: "split", ty: ColumnType::Utf8 },
                ColumnSpec { name: "list", ty: INT },
                ColumnSpec { name: "start", ty: INT },
                ColumnSpec { name: "candidates", ty: ColumnType::FixedList(&INT) },
                ColumnSpec { name: "labels", ty: ColumnType::FixedList(&INT) },
                ColumnSpec { name: "history_items", ty: ColumnType::FixedList(&INT) },
                ColumnSpec { name: "history_ratings", ty: ColumnType::FixedList(&ColumnType::Float32) },
            ],
        },
    ],
);

/// `dataset.json`: what the tables do not say.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub flavour: Flavour,
    pub attribute_fields: Vec<String>,
    pub attribute_count: usize,
    pub settings: Settings,
    pub counts: Counts,
    /// Malformed lines skipped per file (with `skip_bad_lines`).
    pub skipped_lines: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub users: usize,
    pub train_users: usize,
    pub items: usize,
    pub items_with_meta: usize,
    pub interactions: usize,
    pub positive_share: f64,
    pub train_lists: usize,
    pub test_lists: usize,
}

impl Counts {
    pub fn of(d: &Dataset) -> Counts {
        let pos = d.interactions.iter().filter(|i| i.label).count();
        Counts {
            users: d.users.len(),
            train_users: d.users.iter().filter(|u| u.split == Split::Train).count(),
            items: d.items.len(),
            items_with_meta: d.items.iter().filter(|i| i.has_meta).count(),
            interactions: d.interactions.len(),
            positive_share: if d.interactions.is_empty() { 0.0 } else { pos as f64 / d.interactions.len() as f64 },
            train_lists: d.lists.iter().filter(|l| l.split == Split::Train).count(),
            test_lists: d.lists.iter().filter(|l| l.split == Split::Test).count(),
        }
    }
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

fn list_of(dt: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", dt, true)))
}

fn fixed_of(dt: DataType, n: i32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", dt, true)), n)
}

fn strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

fn items_batch(d: &Dataset) -> Result<RecordBatch, BoxError> {
    let mut attrs = ListBuilder::new(StringBuilder::new());
    let mut ids = ListBuilder::new(Int32Builder::new());
    for it in &d.items {
        for a in &it.attributes {
            attrs.values().append_value(a);
        }
        attrs.append(true);
        ids.values().append_slice(&it.attribute_ids);
        ids.append(true);
    }
    let s = schema(vec![
        Field::new("item", DataType::Int32, false),
        Field::new("raw_id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("attributes", list_of(DataType::Utf8), false),
        Field::new("attribute_ids", list_of(DataType::Int32), false),
        Field::new("has_meta", DataType::Boolean, false),
    ]);
    Ok(RecordBatch::try_new(
        s,
        vec![
            Arc::new(d.items.iter().map(|i| i.id).collect::<Int32Array>()),
            strings(d.items.iter().map(|i| Some(i.raw_id.as_str()))),
            strings(d.items.iter().map(|i| Some(i.title.as_str()))),
            Arc::new(attrs.finish()),
            Arc::new(ids.finish()),
            Arc::new(d.items.iter().map(|i| Some(i.has_meta)).collect::<BooleanArray>()),
        ],
    )?)
}

fn users_batch(d: &Dataset) -> Result<RecordBatch, BoxError> {
    let s = schema(vec![
        Field::new("user", DataType::Int32, false),
        Field::new("raw_id", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("window", DataType::Int32, false),
        Field::new("interactions", DataType::Int32, false),
        Field::new("gender", DataType::Utf8, true),
        Field::new("age", DataType::Int32, true),
        Field::new("occupation", DataType::Utf8, true),
        Field::new("truth", DataType::Utf8, true),
    ]);
    let demo = |u: &User| u.demographics.clone().unwrap_or_default();
    Ok(RecordBatch::try_new(
        s,
        vec![
            Arc::new(d.users.iter().map(|u| u.id).collect::<Int32Array>()),
            strings(d.users.iter().map(|u| Some(u.raw_id.as_str()))),
            strings(d.users.iter().map(|u| Some(u.split.as_str()))),
            Arc::new(d.users.iter().map(|u| u.window).collect::<Int32Array>()),
            Arc::new(d.users.iter().map(|u| u.interactions).collect::<Int32Array>()),
            Arc::new(d.users.iter().map(|u| demo(u).gender).collect::<StringArray>()),
            Arc::new(d.users.iter().map(|u| demo(u).age).collect::<Int32Array>()),
            Arc::new(d.users.iter().map(|u| demo(u).occupation).collect::<StringArray>()),
            strings(d.users.iter().map(|u| u.truth.as_deref())),
        ],
    )?)
}

fn interactions_batch(d: &Dataset) -> Result<RecordBatch, BoxError> {
    let x = &d.interactions;
    let s = schema(vec![
        Field::new("user", DataType::Int32, false),
        Field::new("item", DataType::Int32, false),
        Field::new("rating", DataType::Float32, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("position", DataType::Int32, false),
        Field::new("label", DataType::Boolean, false),
    ]);
    Ok(RecordBatch::try_new(
        s,
        vec![
            Arc::new(x.iter().map(|i| i.user).collect::<Int32Array>()),
            Arc::new(x.iter().map(|i| i.item).collect::<Int32Array>()),
            Arc::new(x.iter().map(|i| i.rating).collect::<Float32Array>()),
            Arc::new(x.iter().map(|i| i.timestamp).collect::<Int64Array>()),
            Arc::new(x.iter().map(|i| i.position).collect::<Int32Array>()),
            Arc::new(x.iter().map(|i| Some(i.label)).collect::<BooleanArray>()),
        ],
    )?)
}

fn lists_batch(d: &Dataset) -> Result<RecordBatch, BoxError> {
    let l = d.settings.list_len as i32;
    let h = d.settings.history_len as i32;
    let mut cand = FixedSizeListBuilder::new(Int32Builder::new(), l);
    let mut labels = FixedSizeListBuilder::new(Int32Builder::new(), l);
    let mut hist = FixedSizeListBuilder::new(Int32Builder::new(), h);
    let mut hrat = FixedSizeListBuilder::new(Float32Builder::new(), h);
    for x in &d.lists {
        cand.values().append_slice(&x.candidates);
        cand.append(true);
        labels.values().append_slice(&x.labels);
        labels.append(true);
        hist.values().append_slice(&x.history_items);
        hist.append(true);
        hrat.values().append_slice(&x.history_ratings);
        hrat.append(true);
    }
    let s = schema(vec![
        Field::new("user", DataType::Int32, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("list", DataType::Int32, false),
        Field::new("start", DataType::Int32, false),
        Field::new("candidates", fixed_of(DataType::Int32, l), false),
        Field::new("labels", fixed_of(DataType::Int32, l), false),
        Field::new("history_items", fixed_of(DataType::Int32, h), false),
        Field::new("history_ratings", fixed_of(DataType::Float32, h), false),
    ]);
    Ok(RecordBatch::try_new(
        s,
        vec![
            Arc::new(d.lists.iter().map(|x| x.user).collect::<Int32Array>()),
            strings(d.lists.iter().map(|x| Some(x.split.as_str()))),
            Arc::new(d.lists.iter().map(|x| x.index).collect::<Int32Array>()),
            Arc::new(d.lists.iter().map(|x| x.start).collect::<Int32Array>()),
            Arc::new(cand.finish()),
            Arc::new(labels.finish()),
            Arc::new(hist.finish()),
            Arc::new(hrat.finish()),
        ],
    )?)
}

/// Writes `d` as output `port` of type [`DATASET`].
pub fn write(ctx: &NodeContext, port: &str, d: &Dataset, skipped: &[(String, u64)]) -> Result<(), BoxError> {
    for (name, batch) in [
        ("items", items_batch(d)?),
        ("users", users_batch(d)?),
        ("interactions", interactions_batch(d)?),
        ("lists", lists_batch(d)?),
    ] {
        ctx.write_named_table(port, name, &batch.schema(), std::slice::from_ref(&batch))?;
    }
    let info = DatasetInfo {
        name: d.name.clone(),
        flavour: d.flavour,
        attribute_fields: d.attribute_fields.clone(),
        attribute_count: d.attribute_count,
        settings: d.settings.clone(),
        counts: Counts::of(d),
        skipped_lines: skipped.to_vec(),
    };
    std::fs::write(ctx.output_dir(port)?.join("dataset.json"), serde_json::to_string_pretty(&info)? + "\n")?;
    Ok(())
}

fn col<'a, T: 'static>(b: &'a RecordBatch, table: &str, name: &str) -> Result<&'a T, BoxError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("table `{table}`: column `{name}` is missing or of the wrong type").into())
}

fn one(t: &Table) -> Result<RecordBatch, BoxError> {
    Ok(t.concat()?)
}

fn list_i32(a: &ListArray, i: usize) -> Result<Vec<i32>, BoxError> {
    let v = a.value(i);
    let v = v.as_any().downcast_ref::<Int32Array>().ok_or("list of int32 expected")?;
    Ok(v.values().to_vec())
}

fn list_str(a: &ListArray, i: usize) -> Result<Vec<String>, BoxError> {
    let v = a.value(i);
    let v = v.as_any().downcast_ref::<StringArray>().ok_or("list of strings expected")?;
    Ok((0..v.len()).map(|j| v.value(j).to_string()).collect())
}

fn fixed_i32(a: &FixedSizeListArray, i: usize) -> Result<Vec<i32>, BoxError> {
    let v = a.value(i);
    Ok(v.as_any().downcast_ref::<Int32Array>().ok_or("fixed list of int32 expected")?.values().to_vec())
}

fn fixed_f32(a: &FixedSizeListArray, i: usize) -> Result<Vec<f32>, BoxError> {
    let v = a.value(i);
    Ok(v.as_any().downcast_ref::<Float32Array>().ok_or("fixed list of float32 expected")?.values().to_vec())
}

fn split_of(s: &str) -> Result<Split, BoxError> {
    match s {
        "train" => Ok(Split::Train),
        "test" => Ok(Split::Test),
        other => Err(format!("unknown split `{other}`").into()),
    }
}

fn opt_str(a: Option<&StringArray>, i: usize) -> Option<String> {
    a.filter(|a| !a.is_null(i)).map(|a| a.value(i).to_string())
}

/// Reads the dataset on input `port`.
pub fn read(inputs: &Inputs, port: &str) -> Result<Dataset, BoxError> {
    let info: DatasetInfo = serde_json::from_slice(&std::fs::read(inputs.dir(port)?.join("dataset.json"))?)?;

    let b = one(&inputs.named_table(port, "items")?)?;
    let (id, raw, title) = (col::<Int32Array>(&b, "items", "item")?, col::<StringArray>(&b, "items", "raw_id")?, col::<StringArray>(&b, "items", "title")?);
    let (attrs, aids, meta) = (col::<ListArray>(&b, "items", "attributes")?, col::<ListArray>(&b, "items", "attribute_ids")?, col::<BooleanArray>(&b, "items", "has_meta")?);
    let mut items = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        items.push(Item {
            id: id.value(i),
            raw_id: raw.value(i).to_string(),
            title: title.value(i).to_string(),
            attributes: list_str(attrs, i)?,
            attribute_ids: list_i32(aids, i)?,
            has_meta: meta.value(i),
        });
    }

    let b = one(&inputs.named_table(port, "users")?)?;
    let (id, raw, split) = (col::<Int32Array>(&b, "users", "user")?, col::<StringArray>(&b, "users", "raw_id")?, col::<StringArray>(&b, "users", "split")?);
    let (window, n) = (col::<Int32Array>(&b, "users", "window")?, col::<Int32Array>(&b, "users", "interactions")?);
    let gender = col::<StringArray>(&b, "users", "gender").ok();
    let age = col::<Int32Array>(&b, "users", "age").ok();
    let occ = col::<StringArray>(&b, "users", "occupation").ok();
    let truth = col::<StringArray>(&b, "users", "truth").ok();
    let mut users = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let d = Demographics {
            gender: opt_str(gender, i),
            age: age.filter(|a| !a.is_null(i)).map(|a| a.value(i)),
            occupation: opt_str(occ, i),
        };
        users.push(User {
            id: id.value(i),
            raw_id: raw.value(i).to_string(),
            split: split_of(split.value(i))?,
            window: window.value(i),
            interactions: n.value(i),
            demographics: (d != Demographics::default()).then_some(d),
            truth: opt_str(truth, i),
        });
    }

    let b = one(&inputs.named_table(port, "interactions")?)?;
    let t = "interactions";
    let (u, it, r) = (col::<Int32Array>(&b, t, "user")?, col::<Int32Array>(&b, t, "item")?, col::<Float32Array>(&b, t, "rating")?);
    let (ts, pos, lab) = (col::<Int64Array>(&b, t, "timestamp")?, col::<Int32Array>(&b, t, "position")?, col::<BooleanArray>(&b, t, "label")?);
    let interactions = (0..b.num_rows())
        .map(|i| Interaction { user: u.value(i), item: it.value(i), rating: r.value(i), timestamp: ts.value(i), position: pos.value(i), label: lab.value(i) })
        .collect();

    let b = one(&inputs.named_table(port, "lists")?)?;
    let t = "lists";
    let (u, split, idx, start) = (col::<Int32Array>(&b, t, "user")?, col::<StringArray>(&b, t, "split")?, col::<Int32Array>(&b, t, "list")?, col::<Int32Array>(&b, t, "start")?);
    let (cand, labels) = (col::<FixedSizeListArray>(&b, t, "candidates")?, col::<FixedSizeListArray>(&b, t, "labels")?);
    let (hist, hrat) = (col::<FixedSizeListArray>(&b, t, "history_items")?, col::<FixedSizeListArray>(&b, t, "history_ratings")?);
    let mut lists = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        lists.push(RerankList {
            user: u.value(i),
            split: split_of(split.value(i))?,
            index: idx.value(i),
            start: start.value(i),
            candidates: fixed_i32(cand, i)?,
            labels: fixed_i32(labels, i)?,
            history_items: fixed_i32(hist, i)?,
            history_ratings: fixed_f32(hrat, i)?,
        });
    }
    Ok(Dataset {
        name: info.name,
        flavour: info.flavour,
        attribute_fields: info.attribute_fields,
        settings: info.settings,
        items,
        users,
        interactions,
        lists,
        attribute_count: info.attribute_count,
    })
}
