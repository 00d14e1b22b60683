//! Ranking metrics exactly as KAR computes them (KAR_REFERENCE §7): MAP@k, NDCG@k and CLICK@k
//! for a list's labels in ranked order. Gain 2^rel − 1 with a log2(i + 1) discount; AP@k is
//! normalised by the hits within the top k; a list without positives scores 0; ties in scores
//! keep the list's given order.

use std::collections::BTreeMap;

/// The cut-offs KAR reports.
pub const KS: [usize; 4] = [1, 3, 5, 7];

/// Metrics of one list at one cut-off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AtK {
    pub map: f64,
    pub ndcg: f64,
    pub click: f64,
}

/// Indices of `scores` from highest to lowest; equal scores keep their given order.
pub fn rank_by_scores(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // A stable sort on descending score; NaN sorts last.
    order.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    order
}

/// Metrics of one list: `labels` in the list's given order, `order` the ranking (indices into
/// `labels`, best first), at each k of `ks`.
pub fn list_metrics(labels: &[u8], order: &[usize], ks: &[usize]) -> Vec<AtK> {
    let click: Vec<f64> = order.iter().map(|&i| labels[i] as f64).collect();
    let mut ideal: Vec<f64> = labels.iter().map(|&l| l as f64).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    ks.iter()
        .map(|&k| {
            let kk = k.min(click.len());
            let dcg: f64 = (0..kk).map(|i| (2f64.powf(click[i]) - 1.0) / ((i + 2) as f64).log2()).sum();
            let idcg: f64 = (0..kk).map(|i| (2f64.powf(ideal[i]) - 1.0) / ((i + 2) as f64).log2()).sum();
            let ndcg = if idcg == 0.0 { 0.0 } else { dcg / idcg };
            let (mut hits, mut sum) = (0.0, 0.0);
            for (i, &c) in click.iter().take(kk).enumerate() {
                if c >= 1.0 {
                    hits += 1.0;
                    sum += hits / (i + 1) as f64;
                }
            }
            let map = if hits == 0.0 { 0.0 } else { sum / hits };
            AtK { map, ndcg, click: click[..kk].iter().sum() }
        })
        .collect()
}

/// Running means of metrics over lists, overall and per user.
#[derive(Clone, Debug)]
pub struct Accumulator {
    ks: Vec<usize>,
    total: Vec<AtK>,
    lists: usize,
    per_user: BTreeMap<i64, (Vec<AtK>, usize)>,
}

impl Accumulator {
    pub fn new(ks: &[usize]) -> Accumulator {
        Accumulator { ks: ks.to_vec(), total: vec![AtK::default(); ks.len()], lists: 0, per_user: BTreeMap::new() }
    }

    /// Adds one list of `user`, ranked by `order`.
    pub fn add(&mut self, user: i64, labels: &[u8], order: &[usize]) {
        let m = list_metrics(labels, order, &self.ks);
        let slot = self.per_user.entry(user).or_insert_with(|| (vec![AtK::default(); self.ks.len()], 0));
        for (j, v) in m.iter().enumerate() {
            for acc in [&mut self.total[j], &mut slot.0[j]] {
                acc.map += v.map;
                acc.ndcg += v.ndcg;
                acc.click += v.click;
            }
        }
        slot.1 += 1;
        self.lists += 1;
    }

    pub fn ks(&self) -> &[usize] {
        &self.ks
    }

    pub fn lists(&self) -> usize {
        self.lists
    }

    /// Means over all lists (KAR's averaging), one per k.
    pub fn means(&self) -> Vec<AtK> {
        mean(&self.total, self.lists)
    }

    /// Means over each user's lists: user -> (one per k, number of lists).
    pub fn user_means(&self) -> BTreeMap<i64, (Vec<AtK>, usize)> {
        self.per_user.iter().map(|(u, (sums, n))| (*u, (mean(sums, *n), *n))).collect()
    }
}

fn mean(sums: &[AtK], n: usize) -> Vec<AtK> {
    let d = n.max(1) as f64;
    sums.iter().map(|s| AtK { map: s.map / d, ndcg: s.ndcg / d, click: s.click / d }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_list() {
        // Ranked labels: 0 1 0 1 1 0 ...
        let labels = [0, 1, 0, 1, 1, 0, 0, 0, 0, 0];
        let order: Vec<usize> = (0..10).collect();
        let m = list_metrics(&labels, &order, &[1, 3, 5, 7]);
        assert_eq!(m[0], AtK { map: 0.0, ndcg: 0.0, click: 0.0 });
        // @3: one hit at rank 2 -> AP = (1/2)/1; DCG = 1/log2(3); IDCG = 1 + 1/log2(3) + 1/2.
        assert!(close(m[1].map, 0.5));
        let idcg3 = 1.0 + 1.0 / 3f64.log2() + 0.5;
        assert!(close(m[1].ndcg, (1.0 / 3f64.log2()) / idcg3));
        assert_eq!(m[1].click, 1.0);
        // @5: hits at 2, 4, 5 -> AP = (1/2 + 2/4 + 3/5) / 3.
        assert!(close(m[2].map, (0.5 + 0.5 + 0.6) / 3.0));
        let dcg5 = 1.0 / 3f64.log2() + 1.0 / 5f64.log2() + 1.0 / 6f64.log2();
        let idcg5 = 1.0 + 1.0 / 3f64.log2() + 0.5;
        assert!(close(m[2].ndcg, dcg5 / idcg5));
        assert_eq!(m[2].click, 3.0);
        assert!(close(m[3].map, m[2].map), "no more hits after 5");
    }

    #[test]
    fn map_is_normalised_by_hits_in_the_top_k() {
        // The only hit at rank 3: AP@3 = 1/3 (not 1/min(3, relevant)).
        let labels = [0, 0, 1, 0];
        let m = list_metrics(&labels, &[0, 1, 2, 3], &[1, 3]);
        assert_eq!(m[0].map, 0.0);
        assert!(close(m[1].map, 1.0 / 3.0));
    }

    #[test]
    fn lists_without_positives_score_zero_and_count() {
        let mut acc = Accumulator::new(&KS);
        acc.add(1, &[0; 10], &(0..10).collect::<Vec<_>>());
        let mut perfect = [0u8; 10];
        perfect[0] = 1;
        acc.add(1, &perfect, &(0..10).collect::<Vec<_>>());
        let means = acc.means();
        assert_eq!(acc.lists(), 2);
        assert!(close(means[0].ndcg, 0.5));
        assert!(close(means[0].map, 0.5));
        let users = acc.user_means();
        assert_eq!(users[&1].1, 2);
        assert!(close(users[&1].0[2].ndcg, 0.5));
    }

    #[test]
    fn ties_keep_the_given_order() {
        let scores = [0.5, 0.9, 0.5, 0.9, f32::NAN, 0.1];
        assert_eq!(rank_by_scores(&scores), vec![1, 3, 0, 2, 5, 4]);
        // All equal: the given order.
        assert_eq!(rank_by_scores(&[1.0; 4]), vec![0, 1, 2, 3]);
        // The oracle (labels as scores) is perfect.
        let labels = [0u8, 1, 0, 1];
        let order = rank_by_scores(&labels.map(|l| l as f32));
        let m = list_metrics(&labels, &order, &[3]);
        assert!(close(m[0].ndcg, 1.0) && close(m[0].map, 1.0));
    }

    #[test]
    fn per_user_means_are_separate() {
        let mut acc = Accumulator::new(&[1]);
        acc.add(1, &[1, 0], &[0, 1]);
        acc.add(2, &[1, 0], &[1, 0]);
        acc.add(2, &[1, 0], &[0, 1]);
        let u = acc.user_means();
        assert_eq!(u[&1].0[0].ndcg, 1.0);
        assert_eq!(u[&2].0[0].ndcg, 0.5);
        assert!(close(acc.means()[0].ndcg, 2.0 / 3.0));
    }
}
