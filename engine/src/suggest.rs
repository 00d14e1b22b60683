//! "Did you mean" suggestions for misspelt names.

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let d = strsim::osa_distance(&word.to_lowercase(), &c.to_lowercase());
        let limit = (c.chars().count().max(word.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    best.map(|(c, _)| c)
}

/// `did you mean `x`?` for the closest candidate, if any.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// A hint listing what is allowed, preferring a close match.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    did_you_mean(word, candidates.clone()).or_else(|| {
        let all: Vec<_> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
        if all.is_empty() {
            None
        } else if all.len() <= 12 {
            Some(format!("expected one of {}", all.join(", ")))
        } else {
            Some(format!("expected one of {}, ...", all[..12].join(", ")))
        }
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" messages: a "did you mean".
pub fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (field, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    did_you_mean(field, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_only() {
        let kinds = ["load", "generate", "encode", "train-reranker"];
        assert_eq!(closest("generat", kinds), Some("generate"));
        assert_eq!(closest("lod", kinds), Some("load"));
        assert_eq!(closest("train_reranker", kinds), Some("train-reranker"));
        assert_eq!(closest("zzzzzz", kinds), None);
        assert_eq!(hint("zzzz", ["a", "b"]).unwrap(), "expected one of `a`, `b`");
        assert_eq!(
            unknown_field_hint("unknown field `parms`, expected one of `kind`, `inputs`, `params`").as_deref(),
            Some("did you mean `params`?")
        );
    }
}
