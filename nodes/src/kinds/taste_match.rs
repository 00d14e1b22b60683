//! `taste-match`: on the synthetic world, how well LLM answers name each user's true tastes —
//! per answer, whether it names one of the user's top liked genres and whether it names a
//! disliked one. Comparing it before and after DPO shows whether recommender feedback moved
//! the knowledge toward the truth (issue 7's verification).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use dagrun_engine::{BoxError, Inputs, Kind, NodeContext, ParamError, Port, Signature};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::synthetic::Truth;
use crate::data::tables;
use crate::types::{DATASET, TASTES, TEXTS};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TasteMatchParams {
    /// How many of the user's strongest liked genres count as "top".
    #[serde(default = "two")]
    pub top: u32,
    /// Judge only this sample index of each user's answers (default: all), e.g. 0 to compare
    /// one draw per user with one draw from a tuned model.
    pub sample: Option<i32>,
}

fn two() -> u32 {
    2
}

/// The `taste-match` kind.
pub struct TasteMatch;

/// Lower-case words and phrases that name a genre in free text.
fn names(genre: &str) -> Vec<String> {
    let g = genre.to_lowercase();
    let mut v = vec![g.clone()];
    let extra: &[&str] = match g.as_str() {
        "sci-fi" => &["science fiction", "sci fi", "scifi", "science-fiction"],
        "science fiction" => &["sci-fi", "sci fi", "scifi", "science-fiction"],
        "children's" => &["children", "kids", "family"],
        "children's books" => &["children", "kids"],
        "film-noir" => &["noir", "film noir"],
        "animation" => &["animated", "cartoon"],
        "documentary" => &["documentaries"],
        "musical" => &["musicals"],
        "comedy" => &["comedies", "comedic", "funny"],
        "romance" => &["romantic"],
        "thriller" => &["thrillers"],
        "western" => &["westerns"],
        "historical fiction" => &["historical"],
        "biography" => &["biographies", "biographical"],
        "young adult" => &["ya "],
        "cooking" => &["cookbook", "cookbooks", "recipes"],
        "philosophy" => &["philosophical"],
        "horror" => &["scary"],
        "mystery" => &["mysteries"],
        _ => &[],
    };
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Whether `text` (lower-cased) names `genre`, as a whole word or phrase.
pub fn mentions(text: &str, genre: &str) -> bool {
    names(genre).iter().any(|n| {
        let n = n.trim_end();
        text.match_indices(n).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + n.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    })
}

impl Kind for TasteMatch {
    type Params = TasteMatchParams;

    fn name(&self) -> &'static str {
        "taste-match"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "synthetic world: whether each answer names the user's true top genres (or a disliked one)"
    }
    fn seeded(&self, _p: &TasteMatchParams) -> bool {
        false
    }

    fn signature(&self, p: &TasteMatchParams) -> Result<Signature, ParamError> {
        if p.top == 0 {
            return Err(ParamError::field("top", "must be at least 1"));
        }
        if p.sample.is_some_and(|s| s < 0) {
            return Err(ParamError::field("sample", "must be 0 or more"));
        }
        Ok(Signature { inputs: vec![Port::new("data", DATASET), Port::new("answers", TEXTS)], outputs: vec![Port::new("matches", TASTES)] })
    }

    fn run(&self, p: &TasteMatchParams, ctx: &NodeContext, inputs: &Inputs) -> Result<(), BoxError> {
        let d = tables::read(inputs, "data")?;
        let mut truth: HashMap<&str, (i32, Truth, bool)> = HashMap::new();
        for u in &d.users {
            let Some(t) = &u.truth else { continue };
            let t: Truth = serde_json::from_str(t).map_err(|e| format!("user {}: unreadable ground truth: {e}", u.raw_id))?;
            truth.insert(u.raw_id.as_str(), (u.id, t, u.split == crate::data::preprocess::Split::Test));
        }
        if truth.is_empty() {
            return Err("the dataset has no ground-truth tastes: taste-match needs the synthetic world".into());
        }
        let a = inputs.table("answers")?.concat()?;
        let col = |name: &str| a.column_by_name(name).ok_or_else(|| format!("the answers table has no `{name}` column"));
        let keys = col("key")?.as_any().downcast_ref::<StringArray>().ok_or("`key` is not a string")?.clone();
        let samples = col("sample")?.as_any().downcast_ref::<Int32Array>().ok_or("`sample` is not int32")?.clone();
        let texts = col("text")?.as_any().downcast_ref::<StringArray>().ok_or("`text` is not a string")?.clone();
        let (mut users, mut rkeys, mut ss, mut test, mut liked, mut disliked, mut any) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let all_genres: Vec<String> = truth.values().next().map(|t| t.1.weights.iter().map(|w| w.0.clone()).collect()).unwrap_or_default();
        for i in 0..a.num_rows() {
            if p.sample.is_some_and(|s| s != samples.value(i)) {
                continue;
            }
            let key = keys.value(i);
            let Some((id, t, is_test)) = truth.get(key) else { return Err(format!("answer for user {key}, who is not in the dataset").into()) };
            let text = texts.value(i).to_lowercase();
            users.push(*id);
            rkeys.push(key.to_string());
            ss.push(samples.value(i));
            test.push(*is_test);
            liked.push(t.likes.iter().take(p.top as usize).any(|g| mentions(&text, g)));
            disliked.push(t.dislikes.iter().any(|g| mentions(&text, g)));
            any.push(all_genres.iter().any(|g| mentions(&text, g)));
        }
        if liked.is_empty() {
            return Err(format!("no answers{} to judge", p.sample.map(|s| format!(" with sample {s}")).unwrap_or_default()).into());
        }
        let n = liked.len() as f64;
        let share = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64 / n;
        ctx.log(format!(
            "{} answers: {:.1}% name one of the user's top {} genres, {:.1}% a disliked genre, {:.1}% any genre",
            liked.len(),
            100.0 * share(&liked),
            p.top,
            100.0 * share(&disliked),
            100.0 * share(&any)
        ));
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int32, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("sample", DataType::Int32, false),
            Field::new("test", DataType::Boolean, false),
            Field::new("names_liked", DataType::Boolean, false),
            Field::new("names_disliked", DataType::Boolean, false),
            Field::new("names_any", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(users)),
                Arc::new(StringArray::from(rkeys)),
                Arc::new(Int32Array::from(ss)),
                Arc::new(BooleanArray::from(test)),
                Arc::new(BooleanArray::from(liked)),
                Arc::new(BooleanArray::from(disliked)),
                Arc::new(BooleanArray::from(any)),
            ],
        )?;
        ctx.write_batch("matches", &batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn genres_are_named_as_words_or_synonyms() {
        assert!(mentions("loves sci-fi and horror.", "Sci-Fi"));
        assert!(mentions("enjoys science fiction", "Sci-Fi"));
        assert!(mentions("a film-noir fan", "Film-Noir") && mentions("dark noir plots", "Film-Noir"));
        assert!(mentions("romantic comedies", "Romance") && mentions("romantic comedies", "Comedy"));
        assert!(!mentions("warm stories", "War"), "whole words only");
        assert!(!mentions("westerner", "Western"));
        assert!(mentions("(war)", "War"));
    }
}
