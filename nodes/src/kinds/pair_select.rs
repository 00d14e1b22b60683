//! `pair-select`: per user, the best-rewarded answer becomes DPO's chosen and the worst its
//! rejected; users whose best and worst tie, or differ by less than `min_margin`, are dropped.
//! The prompt travels with the pair as its messages (system and user), so DPO renders it with
//! the chat template exactly as generation did.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{PAIRS, PROMPTS, SCORES, TEXTS};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairSelectParams {
    /// Drop users whose best and worst rewards differ by less than this (ties always drop).
    #[serde(default)]
    pub min_margin: f64,
    /// Keep only the this many pairs with the largest margins (ties: lower user id first);
    /// the rest are dropped and counted. Default: all.
    pub max_pairs: Option<u32>,
}

/// The `pair-select` kind.
pub struct PairSelect;

/// One user's pick.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub chosen: i32,
    pub rejected: i32,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
}

/// Why a user has no pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    Tie,
    BelowMargin,
}

/// Best and worst of one user's (sample, reward) rows; the lowest sample index wins ties, so
/// the choice does not depend on row order.
pub fn pick(rewards: &[(i32, f64)], min_margin: f64) -> Result<Pick, Dropped> {
    let mut sorted = rewards.to_vec();
    sorted.sort_by_key(|r| r.0);
    let best = sorted.iter().copied().fold(None::<(i32, f64)>, |b, r| if b.is_none_or(|b| r.1 > b.1) { Some(r) } else { b });
    let worst = sorted.iter().copied().fold(None::<(i32, f64)>, |w, r| if w.is_none_or(|w| r.1 < w.1) { Some(r) } else { w });
    let (Some(best), Some(worst)) = (best, worst) else { return Err(Dropped::Tie) };
    let margin = best.1 - worst.1;
    if margin <= 0.0 {
        return Err(Dropped::Tie);
    }
    // A margin equal to min_margin up to rounding (0.5 - 0.4 vs 0.1) is kept.
    if margin < min_margin - 1e-12 {
        return Err(Dropped::BelowMargin);
    }
    Ok(Pick { chosen: best.0, rejected: worst.0, chosen_reward: best.1, rejected_reward: worst.1 })
}

fn col<'a, T: 'static>(b: &'a RecordBatch, table: &str, name: &str) -> Result<&'a T, String> {
    b.column_by_name(name)
        .ok_or_else(|| format!("the `{table}` table has no `{name}` column"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("the `{table}` table's `{name}` column has the wrong type"))
}

impl Kind for PairSelect {
    type Params = PairSelectParams;

    fn name(&self) -> &'static str {
        "pair-select"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "per user, the best- and worst-rewarded answers as a DPO pair (ties and small margins dropped)"
    }

    fn signature(&self, p: &PairSelectParams) -> Result<Signature, ParamError> {
        if !(p.min_margin >= 0.0 && p.min_margin.is_finite()) {
            return Err(ParamError::field("min_margin", "must be 0 or more"));
        }
        if p.max_pairs == Some(0) {
            return Err(ParamError::field("max_pairs", "must be at least 1 (leave it out to keep every pair)"));
        }
        Ok(Signature {
            inputs: vec![Port::new("scores", SCORES), Port::new("answers", TEXTS), Port::new("prompts", PROMPTS)],
            outputs: vec![Port::new("pairs", PAIRS)],
        })
    }

    fn run(&self, p: &PairSelectParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let s = inputs.table("scores")?.concat()?;
        let (su, sk) = (col::<Int32Array>(&s, "scores", "user")?, col::<StringArray>(&s, "scores", "key")?);
        let (ss, sr) = (col::<Int32Array>(&s, "scores", "sample")?, col::<Float64Array>(&s, "scores", "reward")?);
        let mut per_user: BTreeMap<(i32, String), Vec<(i32, f64)>> = BTreeMap::new();
        for i in 0..s.num_rows() {
            if !sr.value(i).is_finite() {
                return Err(format!("user {} sample {} has a non-finite reward", sk.value(i), ss.value(i)).into());
            }
            per_user.entry((su.value(i), sk.value(i).to_string())).or_default().push((ss.value(i), sr.value(i)));
        }
        let a = inputs.table("answers")?.concat()?;
        let (ak, asm, at) = (col::<StringArray>(&a, "answers", "key")?, col::<Int32Array>(&a, "answers", "sample")?, col::<StringArray>(&a, "answers", "text")?);
        let answers: HashMap<(&str, i32), &str> = (0..a.num_rows()).map(|i| ((ak.value(i), asm.value(i)), at.value(i))).collect();
        let q = inputs.table("prompts")?.concat()?;
        let (qk, qs, qp) = (col::<StringArray>(&q, "prompts", "key")?, col::<StringArray>(&q, "prompts", "system")?, col::<StringArray>(&q, "prompts", "prompt")?);
        let prompts: HashMap<&str, (Option<&str>, &str)> = (0..q.num_rows()).map(|i| (qk.value(i), ((!qs.is_null(i)).then(|| qs.value(i)), qp.value(i)))).collect();

        let (mut ties, mut small) = (0usize, 0usize);
        let mut rows = Vec::new();
        for ((user, key), rewards) in &per_user {
            match pick(rewards, p.min_margin) {
                Err(Dropped::Tie) => ties += 1,
                Err(Dropped::BelowMargin) => small += 1,
                Ok(pk) => {
                    let text = |sample: i32| answers.get(&(key.as_str(), sample)).copied().ok_or_else(|| format!("the answers have no sample {sample} for user {key}"));
                    let (system, prompt) = *prompts.get(key.as_str()).ok_or_else(|| format!("the prompts have no row for user {key}"))?;
                    rows.push((*user, key.clone(), system, prompt, text(pk.chosen)?, text(pk.rejected)?, pk));
                }
            }
        }
        let mut capped = 0;
        if let Some(max) = p.max_pairs.map(|m| m as usize).filter(|&m| rows.len() > m) {
            // Largest margins first; the sort is stable, so equal margins keep user order.
            rows.sort_by(|a, b| (b.6.chosen_reward - b.6.rejected_reward).total_cmp(&(a.6.chosen_reward - a.6.rejected_reward)));
            capped = rows.len() - max;
            rows.truncate(max);
            rows.sort_by_key(|r| r.0);
        }
        ctx.log(format!(
            "{} pairs from {} users; dropped {} whose best and worst answers tie, {} below min_margin {}{}",
            rows.len(),
            per_user.len(),
            ties,
            small,
            p.min_margin,
            if capped > 0 { format!(" and {capped} beyond max_pairs (smallest margins)") } else { String::new() }
        ));
        if rows.is_empty() {
            return Err(format!("no pairs: all {} users were dropped ({ties} ties, {small} below min_margin)", per_user.len()).into());
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int32, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("system", DataType::Utf8, true),
            Field::new("prompt", DataType::Utf8, false),
            Field::new("chosen", DataType::Utf8, false),
            Field::new("rejected", DataType::Utf8, false),
            Field::new("chosen_sample", DataType::Int32, false),
            Field::new("rejected_sample", DataType::Int32, false),
            Field::new("chosen_reward", DataType::Float64, false),
            Field::new("rejected_reward", DataType::Float64, false),
            Field::new("margin", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(rows.iter().map(|r| r.0).collect::<Int32Array>()),
                Arc::new(rows.iter().map(|r| Some(r.1.as_str())).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.3)).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.4)).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.5)).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| r.6.chosen).collect::<Int32Array>()),
                Arc::new(rows.iter().map(|r| r.6.rejected).collect::<Int32Array>()),
                Arc::new(rows.iter().map(|r| r.6.chosen_reward).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.6.rejected_reward).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.6.chosen_reward - r.6.rejected_reward).collect::<Float64Array>()),
            ],
        )?;
        ctx.write_batch("pairs", &batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_and_worst_with_ties_and_margins() {
        let p = pick(&[(2, 0.5), (0, 0.9), (1, 0.1)], 0.0).unwrap();
        assert_eq!((p.chosen, p.rejected, p.chosen_reward, p.rejected_reward), (0, 1, 0.9, 0.1));
        // Equal rewards: the lowest sample index, whatever the row order.
        let p = pick(&[(3, 0.2), (1, 0.7), (0, 0.2), (2, 0.7)], 0.0).unwrap();
        assert_eq!((p.chosen, p.rejected), (1, 0));
        assert_eq!(pick(&[(0, 0.4), (1, 0.4)], 0.0), Err(Dropped::Tie));
        assert_eq!(pick(&[(0, 0.4)], 0.0), Err(Dropped::Tie));
        assert_eq!(pick(&[(0, 0.4), (1, 0.45)], 0.1), Err(Dropped::BelowMargin));
        assert!(pick(&[(0, 0.4), (1, 0.5)], 0.1).is_ok());
    }
}
