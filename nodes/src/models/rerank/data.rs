//! Host-side lists and knowledge tables, and their conversion into device batches.

use std::collections::HashMap;

use burn::prelude::*;

use super::model::{Batch, BatchKnowledge};
use crate::data::preprocess::{Dataset, RerankList};

/// Lists flattened for batching.
#[derive(Clone, Debug, Default)]
pub struct Lists {
    pub list_len: usize,
    pub fields: usize,
    /// Candidate ids, `len() * list_len`.
    pub items: Vec<i32>,
    /// Candidate attribute ids, `len() * list_len * fields`.
    pub attributes: Vec<i32>,
    /// 0/1 labels, `len() * list_len`.
    pub labels: Vec<f32>,
    /// The user of each list.
    pub users: Vec<i32>,
}

impl Lists {
    /// The lists of `d` that `keep` accepts.
    pub fn from_dataset<'a>(d: &Dataset, lists: impl Iterator<Item = &'a RerankList>) -> Lists {
        let fields = d.attribute_fields.len();
        let mut out = Lists { list_len: d.settings.list_len as usize, fields, ..Default::default() };
        for l in lists {
            for &c in &l.candidates {
                out.items.push(c);
                let it = d.item(c);
                for f in 0..fields {
                    out.attributes.push(it.and_then(|i| i.attribute_ids.get(f).copied()).unwrap_or(0));
                }
            }
            out.labels.extend(l.labels.iter().map(|&x| x as f32));
            out.users.push(l.user);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The labels of list `i`.
    pub fn labels_of(&self, i: usize) -> &[f32] {
        &self.labels[i * self.list_len..(i + 1) * self.list_len]
    }
}

/// Knowledge vectors: one per user and one per item, dimension `dim`.
#[derive(Clone, Debug)]
pub struct Knowledge {
    pub dim: usize,
    /// User id -> row of `users`.
    pub user_rows: HashMap<i32, usize>,
    /// Row-major, `user_rows.len() * dim`.
    pub users: Vec<f32>,
    /// Indexed by item id (row 0 and items without a vector are zeros), `(item_count + 1) * dim`.
    pub items: Vec<f32>,
    /// Which item ids have a vector.
    pub item_present: Vec<bool>,
}

impl Knowledge {
    /// Checks that every list's user and every candidate has a vector.
    pub fn check_covers(&self, lists: &Lists) -> Result<(), String> {
        let sorted_unique = |mut ids: Vec<i32>| {
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let missing_users = sorted_unique(lists.users.iter().copied().filter(|u| !self.user_rows.contains_key(u)).collect());
        if !missing_users.is_empty() {
            return Err(format!(
                "user knowledge has no vector for {} users of the lists (e.g. user {})",
                missing_users.len(),
                missing_users[0]
            ));
        }
        let missing_items =
            sorted_unique(lists.items.iter().copied().filter(|&i| !self.item_present.get(i as usize).copied().unwrap_or(false)).collect());
        if !missing_items.is_empty() {
            return Err(format!(
                "item knowledge has no vector for {} candidate items (e.g. item {})",
                missing_items.len(),
                missing_items[0]
            ));
        }
        Ok(())
    }
}

/// Knowledge tables on a device.
#[derive(Clone, Debug)]
pub struct DeviceKnowledge<B: Backend> {
    pub user_rows: HashMap<i32, usize>,
    pub users: Tensor<B, 2>,
    pub items: Tensor<B, 2>,
}

impl<B: Backend> DeviceKnowledge<B> {
    pub fn new(k: &Knowledge, device: &B::Device) -> Self {
        let n_items = k.items.len() / k.dim;
        DeviceKnowledge {
            user_rows: k.user_rows.clone(),
            users: Tensor::from_data(TensorData::new(k.users.clone(), [k.user_rows.len().max(1), k.dim]), device),
            items: Tensor::from_data(TensorData::new(k.items.clone(), [n_items, k.dim]), device),
        }
    }
}

/// The lists at `idx` as a device batch.
pub fn batch<B: Backend>(lists: &Lists, idx: &[usize], knowledge: Option<&DeviceKnowledge<B>>, device: &B::Device) -> Batch<B> {
    let (l, f) = (lists.list_len, lists.fields);
    let b = idx.len();
    let mut items = Vec::with_capacity(b * l);
    let mut attributes = Vec::with_capacity(b * l * f);
    let mut labels = Vec::with_capacity(b * l);
    for &i in idx {
        items.extend_from_slice(&lists.items[i * l..(i + 1) * l]);
        attributes.extend_from_slice(&lists.attributes[i * l * f..(i + 1) * l * f]);
        labels.extend_from_slice(&lists.labels[i * l..(i + 1) * l]);
    }
    let knowledge = knowledge.map(|k| {
        let rows: Vec<i32> = idx.iter().map(|&i| k.user_rows[&lists.users[i]] as i32).collect();
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [b]), device);
        // Distinct candidates, in order of first appearance, and each candidate's row.
        let mut seen: HashMap<i32, i32> = HashMap::new();
        let mut distinct = Vec::new();
        let index: Vec<i32> = items
            .iter()
            .map(|&it| {
                *seen.entry(it).or_insert_with(|| {
                    distinct.push(it);
                    distinct.len() as i32 - 1
                })
            })
            .collect();
        let u = distinct.len();
        BatchKnowledge {
            users: k.users.clone().select(0, rows),
            items: k.items.clone().select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(distinct, [u]), device)),
            index: Tensor::from_data(TensorData::new(index, [b, l]), device),
        }
    });
    let items_t = Tensor::<B, 2, Int>::from_data(TensorData::new(items, [b, l]), device);
    Batch {
        items: items_t,
        attributes: Tensor::from_data(TensorData::new(attributes, [b, l * f]), device),
        knowledge,
        labels: Tensor::from_data(TensorData::new(labels, [b, l]), device),
    }
}
