//! Knowledge embeddings tables: reading them into the reranker's tables, and writing them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{Array, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use dagrun_engine::{BoxError, Inputs, NodeContext};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::preprocess::Dataset;
use crate::data::synthetic::Truth;
use crate::data::Flavour;
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

/// Writes an embeddings table with one vector per (id, key), and a `sample` column when the
/// rows have several samples each (`samples` is parallel to `rows`).
pub fn write(ctx: &NodeContext, port: &str, dim: usize, rows: &[(i32, String, Vec<f32>)], samples: Option<&[i32]>) -> Result<(), BoxError> {
    let mut list = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32);
    for (_, _, v) in rows {
        list.values().append_slice(v);
        list.append(true);
    }
    let mut fields = vec![Field::new("id", DataType::Int32, false), Field::new("key", DataType::Utf8, false)];
    let mut columns: Vec<Arc<dyn Array>> =
        vec![Arc::new(rows.iter().map(|r| r.0).collect::<Int32Array>()), Arc::new(rows.iter().map(|r| Some(r.1.as_str())).collect::<StringArray>())];
    if let Some(s) = samples {
        fields.push(Field::new("sample", DataType::Int32, false));
        columns.push(Arc::new(Int32Array::from(s.to_vec())));
    }
    fields.push(Field::new("vector", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim as i32), false));
    columns.push(Arc::new(list.finish()));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    ctx.write_batch(port, &batch)?;
    Ok(())
}

fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(1e-12);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Knowledge vectors from a synthetic world's ground truth: users get their taste weights over
/// genres (and favourite authors), items their genre (and author), both through one fixed
/// random projection to `dim`; `noise` (0..=1) mixes in random unit vectors (1 = noise only).
pub fn synthetic(d: &Dataset, dim: usize, noise: f64, seed: u64) -> Result<(Rows, Rows), BoxError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let genre_field = if d.flavour == Flavour::Movies { 0 } else { 1 };
    let author_field = (d.flavour == Flavour::Books).then_some(0);
    // Feature indices: genres and authors, in order of first appearance.
    let mut features: HashMap<String, usize> = HashMap::new();
    for it in d.items.iter().filter(|i| i.has_meta) {
        for f in std::iter::once(genre_field).chain(author_field) {
            let n = features.len();
            features.entry(format!("{f}:{}", it.attributes[f])).or_insert(n);
        }
    }
    let projection: Vec<Vec<f32>> = (0..features.len()).map(|_| gaussian(&mut rng, dim)).collect();
    let project = |weights: &[(usize, f32)]| -> Vec<f32> {
        let mut v = vec![0f32; dim];
        for &(f, w) in weights {
            for (x, p) in v.iter_mut().zip(&projection[f]) {
                *x += w * p;
            }
        }
        v
    };
    let mix = |mut v: Vec<f32>, rng: &mut ChaCha8Rng| -> Vec<f32> {
        unit(&mut v);
        let mut e = gaussian(rng, dim);
        unit(&mut e);
        v.iter().zip(&e).map(|(s, n)| (1.0 - noise as f32) * s + noise as f32 * n).collect()
    };
    let mut users = Vec::with_capacity(d.users.len());
    for u in &d.users {
        let signal = if noise >= 1.0 {
            vec![0f32; dim]
        } else {
            let t = u.truth.as_ref().ok_or_else(|| {
                format!("dataset `{}` has no ground truth; synthetic knowledge needs `dataset: synthetic` (or noise: 1)", d.name)
            })?;
            let truth: Truth = serde_json::from_str(t).map_err(|e| format!("user {}: unreadable truth: {e}", u.raw_id))?;
            let mut w: Vec<(usize, f32)> = truth
                .weights
                .iter()
                .filter_map(|(g, x)| features.get(&format!("{genre_field}:{g}")).map(|&f| (f, *x as f32)))
                .collect();
            if let Some(af) = author_field {
                w.extend(truth.favourite_authors.iter().filter_map(|a| features.get(&format!("{af}:{a}")).map(|&f| (f, 1.0))));
            }
            project(&w)
        };
        users.push((u.id, 0, mix(signal, &mut rng)));
    }
    let mut items = Vec::new();
    for it in d.items.iter().filter(|i| i.has_meta) {
        let w: Vec<(usize, f32)> = std::iter::once(genre_field)
            .chain(author_field)
            .filter_map(|f| features.get(&format!("{f}:{}", it.attributes[f])).map(|&i| (i, 1.0)))
            .collect();
        items.push((it.id, 0, mix(project(&w), &mut rng)));
    }
    Ok((Rows { dim, rows: users }, Rows { dim, rows: items }))
}
