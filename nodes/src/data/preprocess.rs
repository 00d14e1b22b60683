//! KAR preprocessing (KAR_REFERENCE §1–§2): rating filter, iterative k-core, per-user time
//! order, id remapping through a seeded user shuffle, the LLM-history window, a split by user,
//! and re-rank lists of `list_len` candidates (up to `list_step` next real interactions plus
//! random negatives, shuffled) with the `history_len` previous interactions as context.
//! Where KAR's behaviour is questionable (§9) the KAR way is the default and the cleaner one
//! a named option.

use std::collections::{HashMap, HashSet};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::raw::{DataError, Demographics, Flavour, RawData};

/// How interactions with equal times are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TimeOrder {
    /// KAR: by calendar day (UTC here; KAR used its machine's zone), ties in file order.
    Day,
    /// By timestamp in seconds, ties in file order.
    Timestamp,
}

/// Which items may be drawn as negatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Negatives {
    /// KAR: any item with attributes, even one the user rated or one already in the list.
    Any,
    /// Items the user never interacted with, distinct within a list.
    Unseen,
}

/// How the LLM-history window treats items without metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MissingMeta {
    /// KAR: the window is computed from the length before such items are removed.
    Kar,
    /// The window is computed after removing them.
    Recount,
}

/// Preprocessing settings (every field has a per-dataset KAR default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// A rating is a positive label iff it is above this.
    pub label_threshold: f32,
    /// Minimum interactions per user / item, applied iteratively (0 = no filter).
    pub user_core: u32,
    pub item_core: u32,
    pub time_order: TimeOrder,
    /// The LLM-history window: the first min(floor((n+1)/2), cap) interactions.
    pub history_cap: u32,
    /// Share of users in the training split.
    pub train_fraction: f64,
    /// Candidates per re-rank list.
    pub list_len: u32,
    /// Real interactions per list (the window step).
    pub list_step: u32,
    /// Previous interactions kept with each list.
    pub history_len: u32,
    pub negatives: Negatives,
    pub missing_meta: MissingMeta,
}

impl Settings {
    /// KAR's settings for a dataset flavour and name.
    pub fn kar_defaults(name: &str, flavour: Flavour) -> Settings {
        let books = flavour == Flavour::Books;
        let amazon = name.starts_with("amazon");
        Settings {
            label_threshold: if books { 4.0 } else { 3.0 },
            user_core: if amazon { 60 } else { 0 },
            item_core: if amazon { 40 } else { 0 },
            time_order: TimeOrder::Day,
            history_cap: if books { 15 } else { 30 },
            train_fraction: 0.9,
            list_len: 10,
            list_step: 4,
            history_len: 5,
            negatives: Negatives::Any,
            missing_meta: MissingMeta::Kar,
        }
    }
}

/// Which side of the split a user is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// 1-based; 0 is padding.
    pub id: i32,
    pub raw_id: String,
    pub title: String,
    pub attributes: Vec<String>,
    /// Shared attribute vocabulary, 1-based.
    pub attribute_ids: Vec<i32>,
    /// False for items without metadata (removed from every sequence, kept in the id space
    /// as KAR does).
    pub has_meta: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: i32,
    pub raw_id: String,
    pub split: Split,
    /// The LLM-history window: the first `window` interactions go into the prompt.
    pub window: i32,
    pub interactions: i32,
    pub demographics: Option<Demographics>,
    pub truth: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interaction {
    pub user: i32,
    pub item: i32,
    pub rating: f32,
    pub timestamp: i64,
    /// 0-based position in the user's time order.
    pub position: i32,
    pub label: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RerankList {
    pub user: i32,
    pub split: Split,
    /// 0-based index of the list within the user's lists.
    pub index: i32,
    /// Position of the first real interaction in the user's sequence.
    pub start: i32,
    pub candidates: Vec<i32>,
    pub labels: Vec<i32>,
    /// The `history_len` interactions before `start` (left-padded with item 0, rating 0).
    pub history_items: Vec<i32>,
    pub history_ratings: Vec<f32>,
}

/// A preprocessed dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub flavour: Flavour,
    pub attribute_fields: Vec<String>,
    pub settings: Settings,
    pub items: Vec<Item>,
    pub users: Vec<User>,
    /// Grouped by user id, each user's in time order.
    pub interactions: Vec<Interaction>,
    pub lists: Vec<RerankList>,
    /// Size of the shared attribute vocabulary (ids 1..=n).
    pub attribute_count: usize,
}

impl Dataset {
    /// An item by id (ids are 1-based and dense).
    pub fn item(&self, id: i32) -> Option<&Item> {
        self.items.get((id as usize).wrapping_sub(1))
    }

    /// A user by id.
    pub fn user(&self, id: i32) -> Option<&User> {
        self.users.get((id as usize).wrapping_sub(1))
    }

    /// Each user's interactions, in time order, indexed by user id - 1.
    pub fn sequences(&self) -> Vec<&[Interaction]> {
        let mut out: Vec<&[Interaction]> = vec![&[]; self.users.len()];
        let mut start = 0;
        while start < self.interactions.len() {
            let u = self.interactions[start].user;
            let mut end = start;
            while end < self.interactions.len() && self.interactions[end].user == u {
                end += 1;
            }
            if let Some(slot) = out.get_mut((u - 1) as usize) {
                *slot = &self.interactions[start..end];
            }
            start = end;
        }
        out
    }
}

/// One rating with its file position, during preprocessing.
#[derive(Clone, Copy)]
struct Event {
    item: u32,
    rating: f32,
    timestamp: i64,
}

/// Runs KAR preprocessing on loaded data with a seeded RNG.
pub fn preprocess(raw: RawData, s: &Settings, seed: u64) -> Result<Dataset, DataError> {
    if !(0.0..=1.0).contains(&s.train_fraction) {
        return Err(DataError::Invalid { what: format!("train_fraction {} is not within 0..=1", s.train_fraction) });
    }
    if s.list_step == 0 || s.list_step > s.list_len {
        return Err(DataError::Invalid { what: format!("list_step must be 1..=list_len ({}), not {}", s.list_len, s.list_step) });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // Per-user sequences in file order; ratings at or below 0 are dropped.
    let mut seqs: Vec<Vec<Event>> = vec![Vec::new(); raw.users.len()];
    for r in &raw.ratings {
        if r.rating > 0.0 {
            seqs[r.user as usize].push(Event { item: r.item, rating: r.rating, timestamp: r.timestamp });
        }
    }
    k_core(&mut seqs, raw.items.len(), s.user_core, s.item_core);

    for seq in seqs.iter_mut() {
        match s.time_order {
            TimeOrder::Day => seq.sort_by_key(|e| e.timestamp.div_euclid(86_400)),
            TimeOrder::Timestamp => seq.sort_by_key(|e| e.timestamp),
        }
    }

    // Ids: users in a seeded shuffle, items in order of first appearance along it.
    let mut order: Vec<u32> = (0..raw.users.len() as u32).filter(|&u| !seqs[u as usize].is_empty()).collect();
    order.shuffle(&mut rng);
    let mut item_id: HashMap<u32, i32> = HashMap::new();
    let mut item_raw: Vec<u32> = Vec::new();
    for &u in &order {
        for e in &seqs[u as usize] {
            item_id.entry(e.item).or_insert_with(|| {
                item_raw.push(e.item);
                item_raw.len() as i32
            });
        }
    }

    // Items and the shared attribute vocabulary.
    let mut vocab: HashMap<(usize, String), i32> = HashMap::new();
    let mut items = Vec::with_capacity(item_raw.len());
    for (i, &r) in item_raw.iter().enumerate() {
        let meta = raw.item_meta.get(&r);
        let attributes = meta.map(|m| m.attributes.clone()).unwrap_or_default();
        let attribute_ids = attributes
            .iter()
            .enumerate()
            .map(|(f, a)| {
                let next = vocab.len() as i32 + 1;
                *vocab.entry((f, a.clone())).or_insert(next)
            })
            .collect();
        items.push(Item {
            id: i as i32 + 1,
            raw_id: raw.items.ids[r as usize].clone(),
            title: meta.map(|m| m.title.clone()).unwrap_or_default(),
            attributes,
            attribute_ids,
            has_meta: meta.is_some(),
        });
    }

    // Windows, removal of items without metadata, users.
    let cap = s.history_cap as usize;
    let window_of = |n: usize| ((n + 1) / 2).min(cap);
    let mut user_seqs: Vec<(u32, usize, Vec<Event>)> = Vec::new();
    for &u in &order {
        let seq = &seqs[u as usize];
        let before = seq.len();
        let kept: Vec<Event> = seq.iter().copied().filter(|e| raw.item_meta.contains_key(&e.item)).collect();
        if kept.is_empty() {
            continue;
        }
        let window = match s.missing_meta {
            MissingMeta::Kar => window_of(before),
            MissingMeta::Recount => window_of(kept.len()),
        };
        user_seqs.push((u, window.min(kept.len()), kept));
    }
    let mut split_order: Vec<usize> = (0..user_seqs.len()).collect();
    split_order.shuffle(&mut rng);
    let n_train = (s.train_fraction * user_seqs.len() as f64).floor() as usize;
    let mut split = vec![Split::Test; user_seqs.len()];
    for &i in &split_order[..n_train] {
        split[i] = Split::Train;
    }

    let pool: Vec<i32> = items.iter().filter(|it| it.has_meta).map(|it| it.id).collect();
    let (l, step, h) = (s.list_len as usize, s.list_step as usize, s.history_len as usize);
    if pool.len() < l {
        return Err(DataError::Invalid {
            what: format!("only {} items have metadata; a re-rank list needs {l}", pool.len()),
        });
    }
    let mut users = Vec::with_capacity(user_seqs.len());
    let mut interactions = Vec::new();
    let mut lists = Vec::new();
    for (idx, (u, window, seq)) in user_seqs.iter().enumerate() {
        let uid = idx as i32 + 1;
        users.push(User {
            id: uid,
            raw_id: raw.users.ids[*u as usize].clone(),
            split: split[idx],
            window: *window as i32,
            interactions: seq.len() as i32,
            demographics: raw.demographics.get(u).cloned(),
            truth: raw.truth.get(u).cloned(),
        });
        let ids: Vec<i32> = seq.iter().map(|e| item_id[&e.item]).collect();
        for (pos, e) in seq.iter().enumerate() {
            interactions.push(Interaction {
                user: uid,
                item: ids[pos],
                rating: e.rating,
                timestamp: e.timestamp,
                position: pos as i32,
                label: e.rating > s.label_threshold,
            });
        }
        let seen: HashSet<i32> = ids.iter().copied().collect();
        let mut start = *window;
        let mut index = 0;
        while start < seq.len() {
            let end = (start + step).min(seq.len());
            let mut pairs: Vec<(i32, i32)> = (start..end).map(|p| (ids[p], (seq[p].rating > s.label_threshold) as i32)).collect();
            let k = l - pairs.len();
            match s.negatives {
                Negatives::Any => {
                    for j in rand::seq::index::sample(&mut rng, pool.len(), k) {
                        pairs.push((pool[j], 0));
                    }
                }
                Negatives::Unseen => {
                    let mut chosen: HashSet<i32> = pairs.iter().map(|p| p.0).collect();
                    let available = pool.iter().filter(|i| !seen.contains(i)).count();
                    if available < k {
                        return Err(DataError::Invalid {
                            what: format!("user {} has too few unseen items for `negatives: unseen`", raw.users.ids[*u as usize]),
                        });
                    }
                    while pairs.len() < l {
                        let c = pool[rng.random_range(0..pool.len())];
                        if !seen.contains(&c) && chosen.insert(c) {
                            pairs.push((c, 0));
                        }
                    }
                }
            }
            pairs.shuffle(&mut rng);
            let hist_from = start.saturating_sub(h);
            let pad = h - (start - hist_from);
            let mut history_items = vec![0; pad];
            let mut history_ratings = vec![0.0; pad];
            for p in hist_from..start {
                history_items.push(ids[p]);
                history_ratings.push(seq[p].rating);
            }
            lists.push(RerankList {
                user: uid,
                split: split[idx],
                index,
                start: start as i32,
                candidates: pairs.iter().map(|p| p.0).collect(),
                labels: pairs.iter().map(|p| p.1).collect(),
                history_items,
                history_ratings,
            });
            index += 1;
            start = end;
        }
    }
    Ok(Dataset {
        name: raw.name,
        flavour: raw.flavour,
        attribute_fields: raw.attribute_fields,
        settings: s.clone(),
        items,
        users,
        interactions,
        lists,
        attribute_count: vocab.len(),
    })
}

/// Removes users with fewer than `user_core` and items with fewer than `item_core`
/// interactions (duplicates counted) until both hold: the maximal such core.
fn k_core(seqs: &mut [Vec<Event>], n_items: usize, user_core: u32, item_core: u32) {
    if user_core == 0 && item_core == 0 {
        return;
    }
    loop {
        let mut item_count = vec![0u32; n_items];
        for seq in seqs.iter() {
            for e in seq {
                item_count[e.item as usize] += 1;
            }
        }
        let mut changed = false;
        for seq in seqs.iter_mut() {
            let before = seq.len();
            seq.retain(|e| item_count[e.item as usize] >= item_core);
            if (seq.len() as u32) < user_core {
                seq.clear();
            }
            changed |= seq.len() != before;
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
