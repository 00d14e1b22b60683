//! Choosing the next token: greedy at temperature 0, else temperature, top-k and top-p
//! (nucleus) filtering and one uniform draw from the row's own RNG.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::models::cpu::with_avx2;

/// How tokens are drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
}

/// log p(token) under the unfiltered distribution at temperature 1.
pub fn log_prob(logits: &[f32], token: u32) -> f64 {
    log_prob_of(logits, &weights(logits, 1.0), token)
}

/// log p(token) from the temperature-1 `weights` of `logits`.
fn log_prob_of(logits: &[f32], weights: &[f64], token: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = weights.iter().sum();
    logits[token as usize] as f64 - max - sum.ln()
}

/// The next token for one row, as [`next_token`] draws it, and its [`log_prob`]. At
/// temperature 1 both use one pass of exponentials over the vocabulary, not two.
pub fn draw(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng) -> (u32, f64) {
    let unit = weights(logits, 1.0);
    let token = if s.temperature == 1.0 { next_token_of(logits, s, rng, Some(&unit)) } else { next_token(logits, s, rng) };
    (token, log_prob_of(logits, &unit, token))
}

// out[i] = exp((logits[i] − max) / t) in f64 for arguments ≤ 0, to a few ulp of `f64::exp`,
// vectorised (libm's scalar exp was 7% of a batched decode step: two passes over the
// vocabulary per row and token).
with_avx2!(shifted_exp, (logits: &[f32], max: f64, t: f64, out: &mut [f64]), {
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = exp_nonpositive((l as f64 - max) / t);
    }
});

/// e^x for x ≤ 0 (NaN stays NaN): x = k·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor
/// series to r¹³ (truncation under 1e-17), times 2^k built in the exponent bits. Below
/// −708 (where 2^k would be subnormal) the result is 0; e^x is under 1e-307 there.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    // Adding 1.5·2^52 rounds x·log2(e) to an integer k, held in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let xc = x.max(-708.0);
    let shifted = xc * std::f64::consts::LOG2_E + SHIFTER;
    let k = shifted - SHIFTER;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [479_001_600.0, 39_916_800.0, 3_628_800.0, 362_880.0, 40_320.0, 5_040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0] {
        p = p * r + 1.0 / c;
    }
    let ki = (shifted.to_bits() as i64).wrapping_sub(SHIFTER.to_bits() as i64);
    let scale = f64::from_bits(((ki + 1023) as u64) << 52);
    if x < -708.0 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        p * scale
    }
}

/// The most likely token (the first of equals).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0 as u32
}

/// exp((logit − max) / t) for every token: unnormalised probabilities at temperature `t`.
fn weights(logits: &[f32], t: f64) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut w = vec![0f64; logits.len()];
    shifted_exp(logits, max, t, &mut w);
    w
}

/// The candidates left after top-k and top-p, most likely first, with their probabilities
/// renormalised over the kept set.
pub fn candidates(logits: &[f32], s: &Sampling) -> Vec<(u32, f64)> {
    candidates_of(&weights(logits, s.temperature.max(1e-6) as f64), s)
}

/// [`candidates`] from the weights at the sampling temperature.
fn candidates_of(weights: &[f64], s: &Sampling) -> Vec<(u32, f64)> {
    let total: f64 = weights.iter().sum();
    let top_p = s.top_p as f64;
    let fast = if s.top_k == 0 && s.top_p < 1.0 { nucleus_by_buckets(weights, total, top_p) } else { None };
    let (mut kept, mass) = match fast {
        Some(nucleus) => nucleus,
        None => {
            let mut order: Vec<(f64, u32)> = weights.iter().enumerate().map(|(i, &w)| (w, i as u32)).collect();
            // Only the head of the distribution matters: partially sort the most likely `m`
            // tokens, growing `m` until it covers top_p (exactly the nucleus a full sort would
            // give). The first `done` are sorted and outweigh the rest, so a growth only
            // selects and sorts within the remainder.
            let limit = if s.top_k > 0 { s.top_k.min(order.len()) } else { order.len() };
            let (mut done, mut m, mut head) = (0, limit.min(64), 0.0);
            loop {
                let rest = &mut order[done..];
                if m - done < rest.len() {
                    rest.select_nth_unstable_by(m - done, by_weight);
                }
                order[done..m].sort_unstable_by(by_weight);
                // Summed in order, as one pass over order[..m] would.
                head = order[done..m].iter().fold(head, |h, &(w, _)| h + w);
                if m >= limit || head / total >= top_p {
                    break;
                }
                done = m;
                m = (m * 4).min(limit);
            }
            let (kept, mass, _) = read_off(&order[..m], total, top_p);
            (kept, mass)
        }
    };
    kept.iter_mut().for_each(|(_, w)| *w /= mass);
    kept
}

/// Most likely first: by weight, then by token (what a full sort of the vocabulary gives).
fn by_weight(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The tokens of `sorted` (most likely first) up to the first whose running mass reaches
/// top_p of `total` (all of them when top_p ≥ 1), with that mass and whether it was reached.
fn read_off(sorted: &[(f64, u32)], total: f64, top_p: f64) -> (Vec<(u32, f64)>, f64, bool) {
    let mut kept = Vec::new();
    let mut mass = 0.0;
    for &(w, i) in sorted {
        kept.push((i, w));
        mass += w;
        if top_p < 1.0 && mass / total >= top_p {
            return (kept, mass, true);
        }
    }
    (kept, mass, false)
}

/// The top_p nucleus and its mass, as the partial sort in [`candidates_of`] finds them,
/// without selecting over the whole vocabulary: one pass sums the weights into buckets a
/// quarter of an octave wide below the largest (bucket order is weight order), the buckets
/// down to the one where the mass crosses top_p (and one more, for rounding) are gathered and
/// sorted, and the nucleus is read off in order. None when that does not settle it (the
/// caller then sorts).
fn nucleus_by_buckets(weights: &[f64], total: f64, top_p: f64) -> Option<(Vec<(u32, f64)>, f64)> {
    const BUCKETS: usize = 256;
    let max = weights.iter().copied().fold(0.0f64, f64::max);
    if !(max > 0.0 && max.is_finite() && total.is_finite()) {
        return None;
    }
    // Exponent and two mantissa bits: for positive floats the bit patterns are in order.
    let top = max.to_bits() >> 50;
    let bucket = |w: f64| ((top - (w.to_bits() >> 50).min(top)) as usize).min(BUCKETS - 1);
    let mut mass = [0f64; BUCKETS];
    for &w in weights {
        mass[bucket(w)] += w;
    }
    let goal = top_p * total * (1.0 + 1e-9);
    let (mut acc, mut cut) = (0.0, None);
    for (b, m) in mass.iter().enumerate() {
        acc += m;
        if acc >= goal {
            cut = Some(b + 1);
            break;
        }
    }
    let cut = cut.filter(|&c| c < BUCKETS - 1)?;
    let mut order: Vec<(f64, u32)> = weights.iter().enumerate().filter(|(_, &w)| bucket(w) <= cut).map(|(i, &w)| (w, i as u32)).collect();
    order.sort_unstable_by(by_weight);
    let (kept, mass, reached) = read_off(&order, total, top_p);
    reached.then_some((kept, mass))
}

/// The next token for one row.
pub fn next_token(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng) -> u32 {
    next_token_of(logits, s, rng, None)
}

/// [`next_token`], given the weights at the sampling temperature when they are at hand.
fn next_token_of(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng, at_t: Option<&[f64]>) -> u32 {
    if s.temperature <= 0.0 {
        return argmax(logits);
    }
    let u: f64 = rng.random();
    let computed;
    let weights = match at_t {
        Some(w) => w,
        None => {
            computed = weights(logits, s.temperature.max(1e-6) as f64);
            &computed
        }
    };
    if s.top_p >= 1.0 && s.top_k == 0 {
        // Nothing filtered: draw from the whole distribution without sorting it.
        let target = u * weights.iter().sum::<f64>();
        let mut acc = 0.0;
        for (i, w) in weights.iter().enumerate() {
            acc += w;
            if target < acc {
                return i as u32;
            }
        }
        return argmax(logits);
    }
    let kept = candidates_of(weights, s);
    let mut acc = 0.0;
    for &(i, p) in &kept {
        acc += p;
        if u < acc {
            return i;
        }
    }
    kept.last().map_or(0, |k| k.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn s(temperature: f32, top_p: f32, top_k: usize) -> Sampling {
        Sampling { temperature, top_p, top_k }
    }

    #[test]
    fn top_k_and_top_p_keep_exactly_the_right_tokens() {
        // probabilities ∝ 8, 4, 2, 1, 1 (ln of them as logits)
        let logits: Vec<f32> = [8.0f32, 4.0, 2.0, 1.0, 1.0].iter().map(|w| w.ln()).collect();
        let ids = |c: Vec<(u32, f64)>| c.into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(candidates(&logits, &s(1.0, 1.0, 0))), vec![0, 1, 2, 3, 4]);
        assert_eq!(ids(candidates(&logits, &s(1.0, 1.0, 2))), vec![0, 1]);
        // 8/16 = 0.5 reaches 0.5: one token; 0.51 needs the second.
        assert_eq!(ids(candidates(&logits, &s(1.0, 0.5, 0))), vec![0]);
        assert_eq!(ids(candidates(&logits, &s(1.0, 0.51, 0))), vec![0, 1]);
        assert_eq!(ids(candidates(&logits, &s(1.0, 0.9, 0))), vec![0, 1, 2, 3]);
        let c = candidates(&logits, &s(1.0, 0.8, 0));
        assert!((c[0].1 - 8.0 / 14.0).abs() < 1e-6, "renormalised over the kept set");
        // A large vocabulary whose nucleus is wider than the first partial sort.
        let flat: Vec<f32> = (0..1000).map(|i| -(i as f32) * 1e-3).collect();
        let n = candidates(&flat, &s(1.0, 0.5, 0)).len();
        assert!(n > 64 && n < 600, "{n}");
    }

    /// The growing partial sort keeps exactly the tokens and weights a full sort would, for
    /// nuclei that take one to five growths.
    #[test]
    fn the_nucleus_is_the_one_a_full_sort_gives() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (spread, top_p, top_k) in [(8.0f32, 0.95f32, 0), (1.0, 0.95, 0), (0.2, 0.99, 0), (0.05, 0.9, 0), (1.0, 0.99, 700), (0.5, 1.0, 3000)] {
            let logits: Vec<f32> = (0..20_000).map(|_| spread * rng.random::<f32>() * 10.0).collect();
            let samp = s(1.0, top_p, top_k);
            let w = weights(&logits, 1.0);
            let total: f64 = w.iter().sum();
            let mut order: Vec<u32> = (0..w.len() as u32).collect();
            order.sort_by(|a, b| w[*b as usize].total_cmp(&w[*a as usize]).then(a.cmp(b)));
            order.truncate(if top_k > 0 { top_k } else { order.len() });
            let mut expected = Vec::new();
            let mut mass = 0.0;
            for &i in &order {
                expected.push((i, w[i as usize]));
                mass += w[i as usize];
                if top_p < 1.0 && mass / total >= top_p as f64 {
                    break;
                }
            }
            expected.iter_mut().for_each(|(_, x)| *x /= mass);
            let got = candidates(&logits, &samp);
            assert!(got == expected, "spread {spread}, top_p {top_p}, top_k {top_k}: {} tokens against {}", got.len(), expected.len());
        }
    }

    #[test]
    fn the_vectorised_exp_matches_the_standard_one() {
        let xs: Vec<f32> = (0..200_000).map(|i| -(i as f32) * 0.004).chain([0.0, -1e-30, -707.9, -708.5, -800.0, f32::NEG_INFINITY]).collect();
        let mut nan = [0f64];
        shifted_exp(&[f32::NAN], 0.0, 1.0, &mut nan);
        assert!(nan[0].is_nan());
        let mut out = vec![0f64; xs.len()];
        for t in [1.0, 0.7] {
            shifted_exp(&xs, 0.0, t, &mut out);
            for (&x, &e) in xs.iter().zip(&out) {
                let want = (x as f64 / t).exp();
                if want < 1e-300 {
                    assert!(e < 1e-300, "exp({x}/{t}) = {e}");
                } else {
                    assert!(((e - want) / want).abs() < 4e-16, "exp({x}/{t}): {e} vs {want}");
                }
            }
        }
        // The plain path (no AVX2) gives the same bits.
        let mut plain = vec![0f64; 1000];
        for (o, &x) in plain.iter_mut().zip(&xs) {
            *o = exp_nonpositive(x as f64);
        }
        shifted_exp(&xs[..1000], 0.0, 1.0, &mut out[..1000]);
        assert_eq!(plain, out[..1000]);
    }

    #[test]
    fn greedy_and_seeded_sampling() {
        let logits = vec![0.1f32, 2.0, 1.9, -1.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(next_token(&logits, &s(0.0, 1.0, 0), &mut rng), 1);
        let draw = |seed| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            (0..50).map(|_| next_token(&logits, &s(1.0, 1.0, 0), &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let picks = draw(9);
        assert!(picks.contains(&1) && picks.contains(&2), "{picks:?}");
        let mut r = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let t = next_token(&logits, &s(1.0, 1.0, 2), &mut r);
            assert!(t == 1 || t == 2, "{t}");
        }
        assert!((log_prob(&[0.0, 0.0], 1) - 0.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn a_draw_is_the_token_and_log_prob_drawn_apart() {
        let logits: Vec<f32> = (0..3000).map(|i| ((i * 7919) % 1000) as f32 / 150.0 - 3.0).collect();
        for sampling in [s(1.0, 1.0, 0), s(1.0, 0.95, 0), s(1.0, 1.0, 40), s(0.7, 1.0, 0), s(0.7, 0.9, 0), s(0.0, 1.0, 0)] {
            for seed in 0..20 {
                let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(seed), ChaCha8Rng::seed_from_u64(seed));
                let (token, lp) = draw(&logits, &sampling, &mut a);
                let apart = next_token(&logits, &sampling, &mut b);
                assert_eq!(token, apart, "{sampling:?} seed {seed}");
                assert_eq!(lp.to_bits(), log_prob(&logits, apart).to_bits(), "{sampling:?} seed {seed}");
            }
        }
    }
}
