//! Amazon Review Data (2018) readers: reviews and metadata as JSON lines, plain or gzip,
//! streamed line by line so a 10 GB file never sits in memory; only interned ids and numbers
//! are kept per review, and metadata only for items that have reviews. Title and brand
//! cleaning follows KAR (KAR_REFERENCE §1.3).

use std::borrow::Cow;
use std::path::Path;

use serde::Deserialize;

use super::raw::{for_each_line, DataError, Flavour, ItemMeta, Rating, RawData};

/// What KAR's cleaning returns for a title it gives up on (Python's `string.printable`); KAR
/// never acts on it, so such items keep it as their title.
pub const KAR_FLAG: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ \t\n\r\x0b\x0c";

/// What to do with a title or brand that cleaning gives up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BadText {
    /// KAR: keep KAR's flag string as the title (brands become "unknown brand").
    Kar,
    /// "unknown title" / "unknown brand".
    Unknown,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct Review<'a> {
    #[serde(borrow)]
    reviewerID: Option<Cow<'a, str>>,
    #[serde(borrow)]
    asin: Option<Cow<'a, str>>,
    overall: Option<f64>,
    unixReviewTime: Option<i64>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    asin: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    brand: Option<Cow<'a, str>>,
    #[serde(default)]
    category: Option<Vec<String>>,
}

/// Cleans a title or brand the KAR way; `None` where KAR would return its flag.
pub fn clean_text(s: &str) -> Option<String> {
    let unescaped = html_escape::decode_html_entities(s);
    let mut out = String::with_capacity(unescaped.len());
    for c in unescaped.chars() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{2032}' => out.push('\''),
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{2033}' => out.push('"'),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            '\u{2026}' => out.push_str("..."),
            '\u{a0}' | '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut = cut_at_word(&collapsed, 150);
    if !cut.is_ascii() || !cut.chars().any(|c| c.is_ascii_alphabetic()) || cut.chars().count() < 3 {
        return None;
    }
    Some(cut)
}

fn cut_at_word(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    match head.rfind(' ') {
        Some(i) if i > 0 => head[..i].trim_end().to_string(),
        _ => head,
    }
}

/// Reads reviews then metadata. Reviews without a rating are skipped, as KAR does.
pub fn load_amazon(reviews: &Path, meta: &Path, skip_bad: bool, bad_text: BadText) -> Result<RawData, DataError> {
    let mut raw = RawData::new("amazon-books", Flavour::Books, &["brand", "category"]);
    let n = for_each_line(reviews, skip_bad, |line| {
        let r: Review = serde_json::from_slice(line).map_err(|e| format!("not a JSON review: {e}"))?;
        let Some(rating) = r.overall else { return Ok(()) };
        let user = r.reviewerID.ok_or("no `reviewerID`")?;
        let asin = r.asin.ok_or("no `asin`")?;
        let timestamp = r.unixReviewTime.ok_or("no `unixReviewTime`")?;
        let user = raw.users.intern(&user);
        let item = raw.items.intern(&asin);
        raw.ratings.push(Rating { user, item, rating: rating as f32, timestamp });
        Ok(())
    })?;
    raw.skipped.push((file_name(reviews), n));

    let n = for_each_line(meta, skip_bad, |line| {
        let m: Meta = serde_json::from_slice(line).map_err(|e| format!("not a JSON metadata record: {e}"))?;
        let asin = m.asin.ok_or("no `asin`")?;
        let Some(item) = raw.items.get(&asin) else { return Ok(()) };
        if raw.item_meta.contains_key(&item) {
            return Ok(());
        }
        let title = m.title.as_deref().unwrap_or("");
        if title == "EMINEM SHOW" {
            return Ok(());
        }
        let title = clean_text(title).unwrap_or_else(|| match bad_text {
            BadText::Kar => KAR_FLAG.to_string(),
            BadText::Unknown => "unknown title".to_string(),
        });
        let brand = match m.brand.as_deref().and_then(clean_text) {
            Some(b) if !b.contains("abcdefg") => b,
            _ => "unknown brand".to_string(),
        };
        let category = m
            .category
            .as_ref()
            .and_then(|c| c.get(1))
            .map(|c| html_escape::decode_html_entities(c.trim()).into_owned())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "unknown category".to_string());
        raw.item_meta.insert(item, ItemMeta { title, attributes: vec![brand, category] });
        Ok(())
    })?;
    raw.skipped.push((file_name(meta), n));
    Ok(raw)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn cleaning_follows_kar() {
        assert_eq!(clean_text("Harry Potter &amp; the \u{201c}Stone\u{201d}").as_deref(), Some("Harry Potter & the \"Stone\""));
        assert_eq!(clean_text("  A   tale\u{2014}of\u{a0}two  ").as_deref(), Some("A tale-of two"));
        assert_eq!(clean_text("Les Misérables"), None, "non-ASCII left");
        assert_eq!(clean_text("12"), None);
        assert_eq!(clean_text("1234"), None, "no letter");
        let long = "word ".repeat(40);
        let cut = clean_text(&long).unwrap();
        assert!(cut.len() <= 150 && cut.ends_with("word"), "{cut}");
    }

    fn gz(path: &Path, text: &str) {
        let f = std::fs::File::create(path).unwrap();
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap();
    }

    #[test]
    fn reads_gzip_and_plain_streams() {
        let dir = tempfile::tempdir().unwrap();
        let reviews = dir.path().join("Books_5.json.gz");
        gz(
            &reviews,
            concat!(
                "{\"overall\": 5.0, \"reviewerID\": \"U1\", \"asin\": \"B1\", \"unixReviewTime\": 1400000000, \"reviewText\": \"x\"}\n",
                "{\"reviewerID\": \"U1\", \"asin\": \"B2\", \"unixReviewTime\": 1400000001}\n",
                "{\"overall\": 3.0, \"reviewerID\": \"U2\", \"asin\": \"B2\", \"unixReviewTime\": 1400000002}\n",
            ),
        );
        let meta = dir.path().join("meta_Books.json");
        std::fs::write(
            &meta,
            concat!(
                "{\"asin\": \"B1\", \"title\": \"Dune\", \"brand\": \"Frank Herbert\", \"category\": [\"Books\", \"Science Fiction &amp; Fantasy\"]}\n",
                "{\"asin\": \"B2\", \"title\": \"\u{e9}t\u{e9}\", \"brand\": \"\"}\n",
                "{\"asin\": \"B9\", \"title\": \"not reviewed\"}\n",
            ),
        )
        .unwrap();
        let raw = load_amazon(&reviews, &meta, false, BadText::Kar).unwrap();
        assert_eq!(raw.ratings.len(), 2, "the review without a rating is skipped");
        let b1 = &raw.item_meta[&raw.items.get("B1").unwrap()];
        assert_eq!(b1.attributes, vec!["Frank Herbert", "Science Fiction & Fantasy"]);
        let b2 = &raw.item_meta[&raw.items.get("B2").unwrap()];
        assert_eq!(b2.title, KAR_FLAG);
        assert_eq!(b2.attributes, vec!["unknown brand", "unknown category"]);
        assert_eq!(raw.item_meta.len(), 2, "metadata of unreviewed items is not kept");
        let raw = load_amazon(&reviews, &meta, false, BadText::Unknown).unwrap();
        assert_eq!(raw.item_meta[&raw.items.get("B2").unwrap()].title, "unknown title");

        std::fs::write(&meta, "{\"asin\": \"B1\"\n").unwrap();
        let err = load_amazon(&reviews, &meta, false, BadText::Kar).unwrap_err().to_string();
        assert!(err.contains("meta_Books.json:1: not a JSON metadata record"), "{err}");
        let raw = load_amazon(&reviews, &meta, true, BadText::Kar).unwrap();
        assert_eq!(raw.skipped[1], ("meta_Books.json".to_string(), 1));
        assert!(raw.item_meta.is_empty(), "missing metadata is allowed; preprocessing drops such items");
    }
}
