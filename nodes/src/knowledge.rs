//! Knowledge embeddings tables: reading them into the reranker's tables, and writing them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{Array, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use dagrun_engine::{BoxError, Inputs, NodeContext};

use crate::data::preprocess::Dataset;
use crate::models::rerank::data::Knowledge;

/// Rows of an embeddings table: (id, sample, vector).
pub struct Rows {
    pub dim: usize,
    pub rows: Vec<(i32, i32, Vec<f32>)>,
}

/// Reads the embeddings table on `port`.
pub fn read_rows(inputs: &Inputs, port: &str) -> Result<Rows, BoxError> {
    let t = inputs.table(port)?;
    let b = t.concat()?;
    let ids = b.column_by_name("id").and_then(|c| c.as_any().downcast_ref::<Int32Array>()).ok_or("`id` is not int32")?;
    let samples = b.column_by_name("sample").and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned());
    let vecs = b
        .column_by_name("vector")
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
        .ok_or("`vector` is not a fixed-size list")?;
    let dim = vecs.value_length() as usize;
    let values = vecs.values().as_any().downcast_ref::<Float32Array>().ok_or("`vector` items are not float32")?;
    let mut rows = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let s = samples.as_ref().map(|s| s.value(i)).unwrap_or(0);
        rows.push((ids.value(i), s, values.values()[i * dim..(i + 1) * dim].to_vec()));
    }
    Ok(Rows { dim, rows })
}

/// Builds the reranker's knowledge tables from user and item embeddings: `sample` picks which
/// of a user's samples to use.
pub fn knowledge(d: &Dataset, users: &Rows, items: &Rows, sample: i32) -> Result<Knowledge, BoxError> {
    if users.dim != items.dim {
        return Err(format!("user knowledge has dimension {} but item knowledge {}", users.dim, items.dim).into());
    }
    if users.dim == 0 {
        return Err("knowledge vectors have dimension 0".into());
    }
    let dim = users.dim;
    let mut user_rows = HashMap::new();
    let mut uvec = Vec::new();
    for (id, s, v) in &users.rows {
        if *s == sample && !user_rows.contains_key(id) {
            user_rows.insert(*id, user_rows.len());
            uvec.extend_from_slice(v);
        }
    }
    if user_rows.is_empty() && !users.rows.is_empty() {
        let mut have: Vec<i32> = users.rows.iter().map(|r| r.1).collect();
        have.sort();
        have.dedup();
        return Err(format!("user knowledge has no sample {sample} (it has samples {have:?})").into());
    }
    let n = d.items.len() + 1;
    let mut ivec = vec![0f32; n * dim];
    let mut present = vec![false; n];
    for (id, _, v) in &items.rows {
        let i = *id as usize;
        if i == 0 || i >= n {
            return Err(format!("item knowledge names item id {id}, which the dataset does not have (1..={})", n - 1).into());
        }
        ivec[i * dim..(i + 1) * dim].copy_from_slice(v);
        present[i] = true;
    }
    Ok(Knowledge { dim, user_rows, users: uvec, items: ivec, item_present: present })
}

/// Writes an embeddings table with one vector per (id, key).
pub fn write(ctx: &NodeContext, port: &str, dim: usize, rows: &[(i32, String, Vec<f32>)]) -> Result<(), BoxError> {
    let mut list = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32);
    for (_, _, v) in rows {
        list.values().append_slice(v);
        list.append(true);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("vector", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim as i32), false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(rows.iter().map(|r| r.0).collect::<Int32Array>()),
            Arc::new(rows.iter().map(|r| Some(r.1.as_str())).collect::<StringArray>()),
            Arc::new(list.finish()),
        ],
    )?;
    ctx.write_batch(port, &batch)?;
    Ok(())
}
