//! Writes a loaded (typically synthetic) dataset in the real file formats, so the loaders can
//! be tested on files they will meet: MovieLens-1M, MovieLens-100K (latin-1 text) and Amazon
//! 2018 (gzip JSON lines).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::movielens::{GENRES, ML1M_OCCUPATIONS};
use super::raw::{DataError, RawData};

/// A real dataset file layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[serde(rename = "movielens-1m")]
    Movielens1m,
    #[serde(rename = "movielens-100k")]
    Movielens100k,
    AmazonBooks,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "movielens-1m" => Ok(Format::Movielens1m),
            "movielens-100k" => Ok(Format::Movielens100k),
            "amazon-books" => Ok(Format::AmazonBooks),
            _ => Err(format!("unknown format `{s}` (expected movielens-1m, movielens-100k or amazon-books)")),
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |e| DataError::Io { path: path.to_path_buf(), source: e }
}

/// Encodes text as latin-1 ('?' for characters outside it).
fn latin1_bytes(s: &str) -> Vec<u8> {
    s.chars().map(|c| if (c as u32) < 256 { c as u8 } else { b'?' }).collect()
}

/// "The Haunted House (1987)" -> "Haunted House, The (1987)", MovieLens's way of writing titles.
fn movielens_title(title: &str) -> String {
    for article in ["The ", "A "] {
        if let Some(rest) = title.strip_prefix(article) {
            if title.matches('(').count() == 1 {
                if let Some((name, year)) = rest.split_once(" (") {
                    return format!("{name}, {} ({year}", article.trim_end());
                }
            }
        }
    }
    title.to_string()
}

fn writer(path: &Path) -> Result<BufWriter<File>, DataError> {
    Ok(BufWriter::new(File::create(path).map_err(io(path))?))
}

/// Writes `raw` into `dir` in `format`. Movie worlds go to MovieLens formats, book worlds to
/// Amazon's; ratings are written as whole stars.
pub fn export(raw: &RawData, format: Format, dir: &Path) -> Result<Vec<String>, DataError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let movies_fmt = matches!(format, Format::Movielens1m | Format::Movielens100k);
    if movies_fmt != (raw.attribute_fields == ["genre"]) {
        return Err(DataError::Invalid {
            what: format!("a {:?} world cannot be written as {format:?}; use flavour movies for MovieLens, books for Amazon", raw.flavour),
        });
    }
    match format {
        Format::Movielens1m => write_ml1m(raw, dir),
        Format::Movielens100k => write_ml100k(raw, dir),
        Format::AmazonBooks => write_amazon(raw, dir),
    }
}

/// Writes `user SEP item SEP stars SEP timestamp` lines.
fn write_ratings(raw: &RawData, p: &Path, sep: &str) -> Result<(), DataError> {
    let mut w = writer(p)?;
    for r in &raw.ratings {
        let (u, i) = (&raw.users.ids[r.user as usize], &raw.items.ids[r.item as usize]);
        writeln!(w, "{u}{sep}{i}{sep}{}{sep}{}", r.rating.round() as i32, r.timestamp).map_err(io(p))?;
    }
    w.flush().map_err(io(p))
}

fn write_ml1m(raw: &RawData, dir: &Path) -> Result<Vec<String>, DataError> {
    write_ratings(raw, &dir.join("ratings.dat"), "::")?;
    let p = dir.join("users.dat");
    let mut w = writer(&p)?;
    for (u, id) in raw.users.ids.iter().enumerate() {
        let d = raw.demographics.get(&(u as u32)).cloned().unwrap_or_default();
        let occ = d.occupation.as_deref().and_then(|o| ML1M_OCCUPATIONS.iter().position(|x| *x == o)).unwrap_or(0);
        writeln!(w, "{id}::{}::{}::{occ}::{:05}", d.gender.as_deref().unwrap_or("M"), d.age.unwrap_or(25), 10000 + u * 37 % 89999).map_err(io(&p))?;
    }
    w.flush().map_err(io(&p))?;
    let p = dir.join("movies.dat");
    let mut w = writer(&p)?;
    for (i, id) in raw.items.ids.iter().enumerate() {
        if let Some(m) = raw.item_meta.get(&(i as u32)) {
            let line = format!("{id}::{}::{}\n", movielens_title(&m.title), m.attributes.join("|"));
            w.write_all(&latin1_bytes(&line)).map_err(io(&p))?;
        }
    }
    w.flush().map_err(io(&p))?;
    Ok(vec!["ratings.dat".into(), "users.dat".into(), "movies.dat".into()])
}

/// The MovieLens-100K occupation closest to a MovieLens-1M one.
fn occupation_100k(o: &str) -> &'static str {
    match o {
        "academic/educator" => "educator",
        "artist" => "artist",
        "clerical/admin" => "administrator",
        "college/grad student" | "K-12 student" => "student",
        "doctor/health care" => "doctor",
        "executive/managerial" => "executive",
        "homemaker" => "homemaker",
        "lawyer" => "lawyer",
        "programmer" => "programmer",
        "retired" => "retired",
        "sales/marketing" => "marketing",
        "scientist" => "scientist",
        "technician/engineer" => "technician",
        "unemployed" => "none",
        "writer" => "writer",
        _ => "other",
    }
}

fn write_ml100k(raw: &RawData, dir: &Path) -> Result<Vec<String>, DataError> {
    write_ratings(raw, &dir.join("u.data"), "\t")?;
    let p = dir.join("u.user");
    let mut w = writer(&p)?;
    for (u, id) in raw.users.ids.iter().enumerate() {
        let d = raw.demographics.get(&(u as u32)).cloned().unwrap_or_default();
        let age = match d.age.unwrap_or(25) {
            1 => 15,
            18 => 21,
            25 => 30,
            35 => 40,
            45 => 47,
            50 => 52,
            56 => 60,
            a => a,
        };
        writeln!(w, "{id}|{age}|{}|{}|{:05}", d.gender.as_deref().unwrap_or("M"), occupation_100k(d.occupation.as_deref().unwrap_or("")), 10000 + u * 37 % 89999).map_err(io(&p))?;
    }
    w.flush().map_err(io(&p))?;
    let p = dir.join("u.item");
    let mut w = writer(&p)?;
    for (i, id) in raw.items.ids.iter().enumerate() {
        if let Some(m) = raw.item_meta.get(&(i as u32)) {
            let mut flags = vec!["0"; 19];
            for a in &m.attributes {
                if let Some(g) = GENRES.iter().position(|x| x == a) {
                    flags[g + 1] = "1";
                }
            }
            let line = format!("{id}|{}|01-Jan-1995||http://us.imdb.com/M/title-exact?{id}|{}\n", movielens_title(&m.title), flags.join("|"));
            w.write_all(&latin1_bytes(&line)).map_err(io(&p))?;
        }
    }
    w.flush().map_err(io(&p))?;
    Ok(vec!["u.data".into(), "u.user".into(), "u.item".into()])
}

/// Buffered in front of the compressor: many small writes would each pass through deflate.
fn gz_writer(path: &Path) -> Result<BufWriter<GzEncoder<File>>, DataError> {
    let f = File::create(path).map_err(io(path))?;
    Ok(BufWriter::with_capacity(1 << 20, GzEncoder::new(f, flate2::Compression::fast())))
}

fn gz_finish(w: BufWriter<GzEncoder<File>>, path: &Path) -> Result<(), DataError> {
    let enc = w.into_inner().map_err(|e| DataError::Io { path: path.to_path_buf(), source: e.into_error() })?;
    enc.finish().map_err(io(path))?;
    Ok(())
}

/// A review of typical length (real Amazon book reviews run to a few hundred words), so
/// files have realistic sizes.
fn review_text(stars: f32, n: usize) -> String {
    const GOOD: [&str; 6] = ["wonderful", "gripping", "moving", "clever", "beautifully written", "hard to put down"];
    const BAD: [&str; 6] = ["slow", "predictable", "flat", "confusing", "overlong", "disappointing"];
    let words = if stars >= 4.0 { &GOOD } else { &BAD };
    let mut s = String::new();
    for k in 0..(8 + n % 9) {
        s.push_str(&format!("The story was {} and the characters felt {} in chapter {}. ", words[(n + k) % 6], words[(n + 2 * k + 1) % 6], k + 1));
    }
    s
}

fn write_amazon(raw: &RawData, dir: &Path) -> Result<Vec<String>, DataError> {
    let p = dir.join("Books_5.json.gz");
    let mut w = gz_writer(&p)?;
    for (n, r) in raw.ratings.iter().enumerate() {
        let line = json!({
            "overall": r.rating.round() as f64,
            "verified": true,
            "reviewerID": raw.users.ids[r.user as usize],
            "asin": raw.items.ids[r.item as usize],
            "reviewText": review_text(r.rating, n),
            "summary": "Synthetic",
            "unixReviewTime": r.timestamp,
        });
        writeln!(w, "{line}").map_err(io(&p))?;
    }
    gz_finish(w, &p)?;
    let p = dir.join("meta_Books.json.gz");
    let mut w = gz_writer(&p)?;
    for (i, id) in raw.items.ids.iter().enumerate() {
        if let Some(m) = raw.item_meta.get(&(i as u32)) {
            let line = json!({
                "category": ["Books", m.attributes.get(1).cloned().unwrap_or_default()],
                "title": m.title,
                "brand": m.attributes.first().cloned().unwrap_or_default(),
                "asin": id,
                "price": "$9.99",
            });
            writeln!(w, "{line}").map_err(io(&p))?;
        }
    }
    gz_finish(w, &p)?;
    Ok(vec!["Books_5.json.gz".into(), "meta_Books.json.gz".into()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::amazon::{load_amazon, BadText};
    use crate::data::movielens::{load_ml100k, load_ml1m};
    use crate::data::raw::Flavour;
    use crate::data::synthetic::{generate, WorldSettings};

    fn world(flavour: Flavour) -> RawData {
        let mut w = WorldSettings::new(flavour);
        w.users = 60;
        w.items = 120;
        generate(&w, 3).unwrap()
    }

    /// The same ratings (as whole stars), titles and attributes come back.
    fn same(a: &RawData, b: &RawData) {
        assert_eq!(a.ratings.len(), b.ratings.len());
        for (x, y) in a.ratings.iter().zip(&b.ratings) {
            assert_eq!(a.users.ids[x.user as usize], b.users.ids[y.user as usize]);
            assert_eq!(a.items.ids[x.item as usize], b.items.ids[y.item as usize]);
            assert_eq!(x.rating.round(), y.rating);
            assert_eq!(x.timestamp, y.timestamp);
        }
        for (i, id) in a.items.ids.iter().enumerate() {
            let j = b.items.get(id).unwrap();
            let (ma, mb) = (&a.item_meta[&(i as u32)], &b.item_meta[&j]);
            assert_eq!(ma.title, mb.title, "item {id}");
            assert_eq!(ma.attributes, mb.attributes, "item {id}");
        }
    }

    #[test]
    fn movielens_1m_round_trip_with_latin1_titles() {
        let raw = world(Flavour::Movies);
        assert!(raw.item_meta.values().any(|m| !m.title.is_ascii()), "the world has accented titles");
        let dir = tempfile::tempdir().unwrap();
        export(&raw, Format::Movielens1m, dir.path()).unwrap();
        let bytes = std::fs::read(dir.path().join("movies.dat")).unwrap();
        assert!(std::str::from_utf8(&bytes).is_err(), "movies.dat is latin-1, not UTF-8");
        assert!(String::from_utf8_lossy(&bytes).contains(", The ("), "MovieLens writes the article last");
        let back = load_ml1m(dir.path(), false).unwrap();
        same(&raw, &back);
        for (u, d) in &raw.demographics {
            let v = back.users.get(&raw.users.ids[*u as usize]).unwrap();
            assert_eq!(&back.demographics[&v], d);
        }
    }

    #[test]
    fn movielens_100k_round_trip() {
        let raw = world(Flavour::Movies);
        let dir = tempfile::tempdir().unwrap();
        export(&raw, Format::Movielens100k, dir.path()).unwrap();
        let back = load_ml100k(dir.path(), false).unwrap();
        same(&raw, &back);
        assert!(back.demographics.values().all(|d| d.age.unwrap() >= 15 && d.occupation.is_some()));
    }

    #[test]
    fn amazon_round_trip_through_gzip() {
        let raw = world(Flavour::Books);
        let dir = tempfile::tempdir().unwrap();
        export(&raw, Format::AmazonBooks, dir.path()).unwrap();
        let gz = std::fs::read(dir.path().join("Books_5.json.gz")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let back = load_amazon(&dir.path().join("Books_5.json.gz"), &dir.path().join("meta_Books.json.gz"), false, BadText::Kar).unwrap();
        // Accented titles fail KAR's ASCII check and become its flag; the rest survive.
        let accented: Vec<u32> = raw.item_meta.iter().filter(|(_, m)| !m.title.is_ascii()).map(|(i, _)| *i).collect();
        assert!(!accented.is_empty());
        let mut expected = raw.clone();
        for i in accented {
            expected.item_meta.get_mut(&i).unwrap().title = crate::data::amazon::KAR_FLAG.to_string();
        }
        same(&expected, &back);
    }

    #[test]
    fn flavour_and_format_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let err = export(&world(Flavour::Books), Format::Movielens1m, dir.path()).unwrap_err().to_string();
        assert!(err.contains("flavour movies for MovieLens"), "{err}");
    }
}
