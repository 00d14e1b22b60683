use std::collections::{HashMap, HashSet};

use super::*;
use crate::data::raw::{ItemMeta, Rating};
use crate::data::synthetic::{generate, WorldSettings};

fn world(users: u32, items: u32, seed: u64) -> RawData {
    let mut w = WorldSettings::new(Flavour::Movies);
    w.users = users;
    w.items = items;
    generate(&w, seed).unwrap()
}

fn settings() -> Settings {
    Settings::kar_defaults("synthetic", Flavour::Movies)
}

#[test]
fn lists_follow_the_window_and_the_step() {
    let d = preprocess(world(120, 300, 1), &settings(), 7).unwrap();
    let seqs = d.sequences();
    let mut per_user: HashMap<i32, usize> = HashMap::new();
    for l in &d.lists {
        let u = d.user(l.user).unwrap();
        let seq = seqs[(l.user - 1) as usize];
        assert!(l.start >= u.window, "a list starts inside the prompt window");
        assert_eq!(l.candidates.len(), 10);
        assert_eq!(l.labels.len(), 10);
        assert!(l.labels.iter().all(|&x| x == 0 || x == 1));
        // The real interactions of the list are the next (up to) 4 after `start`, never
        // positions of the prompt window.
        let real: Vec<&Interaction> = seq[l.start as usize..(l.start as usize + 4).min(seq.len())].iter().collect();
        for r in &real {
            assert!(r.position >= u.window);
            // (A KAR negative may repeat a real item, so look for a slot with the right label.)
            let want = r.label as i32;
            assert!(
                l.candidates.iter().zip(&l.labels).any(|(&c, &lab)| c == r.item && lab == want),
                "real item {} with label {want} among the candidates",
                r.item
            );
        }
        let positives = l.labels.iter().filter(|&&x| x == 1).count();
        assert!(positives <= real.len());
        assert_eq!(positives, real.iter().filter(|r| r.label).count(), "negatives are labelled 0");
        // History: the 5 interactions before start.
        let h: Vec<i32> = seq[(l.start as usize - 5)..l.start as usize].iter().map(|i| i.item).collect();
        assert_eq!(l.history_items, h);
        assert_eq!(l.split, u.split);
        *per_user.entry(l.user).or_default() += 1;
    }
    for u in &d.users {
        let n = u.interactions as usize;
        let expected = (n - u.window as usize).div_ceil(4);
        assert_eq!(per_user.get(&u.id).copied().unwrap_or(0), expected, "user {}", u.id);
        assert_eq!(u.window as usize, ((n + 1) / 2).min(30));
    }
}

#[test]
fn split_is_by_user_and_disjoint() {
    let d = preprocess(world(200, 300, 2), &settings(), 7).unwrap();
    let train: HashSet<i32> = d.users.iter().filter(|u| u.split == Split::Train).map(|u| u.id).collect();
    let test: HashSet<i32> = d.users.iter().filter(|u| u.split == Split::Test).map(|u| u.id).collect();
    assert!(train.is_disjoint(&test));
    assert_eq!(train.len(), 180, "floor(0.9 * 200)");
    assert_eq!(train.len() + test.len(), d.users.len());
    for l in &d.lists {
        assert_eq!(l.split == Split::Train, train.contains(&l.user));
    }
}

#[test]
fn deterministic_under_a_seed() {
    let a = preprocess(world(80, 200, 3), &settings(), 11).unwrap();
    let b = preprocess(world(80, 200, 3), &settings(), 11).unwrap();
    assert_eq!(a, b);
    let c = preprocess(world(80, 200, 3), &settings(), 12).unwrap();
    assert_ne!(a.lists, c.lists);
    assert_ne!(a.users.iter().map(|u| u.split).collect::<Vec<_>>(), c.users.iter().map(|u| u.split).collect::<Vec<_>>());
}

#[test]
fn unseen_negatives_never_repeat_the_users_items() {
    let mut s = settings();
    s.negatives = Negatives::Unseen;
    let d = preprocess(world(60, 300, 4), &s, 7).unwrap();
    let seqs = d.sequences();
    for l in &d.lists {
        let seq = seqs[(l.user - 1) as usize];
        let window: HashSet<i32> = seq[..d.user(l.user).unwrap().window as usize].iter().map(|i| i.item).collect();
        assert!(l.candidates.iter().all(|c| !window.contains(c)), "a prompt-window item became a candidate");
        let distinct: HashSet<&i32> = l.candidates.iter().collect();
        assert_eq!(distinct.len(), 10);
    }
}

fn tiny_raw(ratings: &[(&str, &str, f32, i64)], meta: &[&str]) -> RawData {
    let mut raw = RawData::new("amazon-books", Flavour::Books, &["brand", "category"]);
    for (u, i, r, t) in ratings {
        let user = raw.users.intern(u);
        let item = raw.items.intern(i);
        raw.ratings.push(Rating { user, item, rating: *r, timestamp: *t });
    }
    for m in meta {
        if let Some(i) = raw.items.get(m) {
            raw.item_meta.insert(i, ItemMeta { title: format!("Title {m}"), attributes: vec!["b".into(), "c".into()] });
        }
    }
    raw
}

#[test]
fn k_core_is_the_maximal_core() {
    // u1 and u2 rate a, b, c; u3 rates a and d only; item d has one rating.
    let mut r = Vec::new();
    for (u, items) in [("u1", vec!["a", "b", "c"]), ("u2", vec!["a", "b", "c"]), ("u3", vec!["a", "d"])] {
        for (k, i) in items.iter().enumerate() {
            r.push((u, *i, 5.0, k as i64 * 86_400));
        }
    }
    let mut seqs: Vec<Vec<Event>> = vec![Vec::new(); 3];
    let raw = tiny_raw(&r, &[]);
    for x in &raw.ratings {
        seqs[x.user as usize].push(Event { item: x.item, rating: x.rating, timestamp: x.timestamp });
    }
    k_core(&mut seqs, raw.items.len(), 2, 2);
    // d goes (1 rating), then u3 has 1 < 2 and goes, then a keeps 2 ratings.
    assert_eq!(seqs[0].len(), 3);
    assert_eq!(seqs[1].len(), 3);
    assert!(seqs[2].is_empty());
}

#[test]
fn equal_times_keep_file_order_and_day_order_groups_by_day() {
    let t0 = 1_000_000_000 - 1_000_000_000 % 86_400;
    let raw = || {
        let mut r = vec![("u", "late", 5.0, t0 + 50), ("u", "early", 5.0, t0 + 10), ("u", "tie", 5.0, t0 + 10)];
        for k in 0..12 {
            r.push(("u", ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "ia", "ib"][k], 4.0, t0 + 86_400 * (k as i64 + 1)));
        }
        let names = ["late", "early", "tie", "i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "ia", "ib"];
        tiny_raw(&r, &names)
    };
    let mut s = Settings::kar_defaults("amazon-books", Flavour::Books);
    s.user_core = 0;
    s.item_core = 0;
    let d = preprocess(raw(), &s, 1).unwrap();
    let title = |id: i32| d.item(id).unwrap().title.clone();
    let first: Vec<String> = d.interactions[..3].iter().map(|i| title(i.item)).collect();
    assert_eq!(first, vec!["Title late", "Title early", "Title tie"], "same day: file order");
    s.time_order = TimeOrder::Timestamp;
    let d = preprocess(raw(), &s, 1).unwrap();
    let title = |id: i32| d.item(id).unwrap().title.clone();
    let first: Vec<String> = d.interactions[..3].iter().map(|i| title(i.item)).collect();
    assert_eq!(first, vec!["Title early", "Title tie", "Title late"], "by seconds, ties in file order");
}

#[test]
fn items_without_metadata_are_dropped_with_the_kar_window() {
    let mut r = Vec::new();
    let names: Vec<String> = (0..20).map(|k| format!("i{k}")).collect();
    for (k, n) in names.iter().enumerate() {
        r.push(("u", n.as_str(), 5.0, k as i64 * 86_400));
    }
    // Only 16 of the 20 items have metadata.
    let meta: Vec<&str> = names[4..].iter().map(String::as_str).collect();
    let mut s = Settings::kar_defaults("amazon-books", Flavour::Books);
    s.user_core = 0;
    s.item_core = 0;
    let d = preprocess(tiny_raw(&r, &meta), &s, 1).unwrap();
    assert_eq!(d.users[0].interactions, 16);
    assert_eq!(d.users[0].window, 10, "KAR: min((20 + 1) / 2, 15) from the length before removal");
    assert_eq!(d.items.len(), 20, "removed items keep their ids");
    assert_eq!(d.items.iter().filter(|i| i.has_meta).count(), 16);
    s.missing_meta = MissingMeta::Recount;
    let d = preprocess(tiny_raw(&r, &meta), &s, 1).unwrap();
    assert_eq!(d.users[0].window, 8, "recount: (16 + 1) / 2");
    assert!(d.lists.iter().flat_map(|l| &l.candidates).all(|&c| d.item(c).unwrap().has_meta), "negatives have attributes");
}

#[test]
fn labels_use_the_threshold() {
    let d = preprocess(world(50, 200, 5), &settings(), 1).unwrap();
    assert!(d.interactions.iter().all(|i| i.label == (i.rating > 3.0)));
    let share = d.interactions.iter().filter(|i| i.label).count() as f64 / d.interactions.len() as f64;
    assert!((0.35..0.75).contains(&share), "positive share {share}");
}
