//! MovieLens readers: 1M (`ratings.dat`, `users.dat`, `movies.dat`, `::`-separated, latin-1)
//! and 100K (`u.data` tab-separated, `u.item` and `u.user` `|`-separated, latin-1). Each movie's
//! attribute is its first genre; titles like "Matrix, The (1999)" become "The Matrix (1999)".

use std::path::Path;

use super::raw::{for_each_line, latin1, DataError, Demographics, Flavour, ItemMeta, Rating, RawData};

/// Occupation names of MovieLens-1M's codes 0..=20 (from its README).
pub const ML1M_OCCUPATIONS: [&str; 21] = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
];

/// MovieLens-1M's age-group codes.
pub const ML1M_AGES: [i32; 7] = [1, 18, 25, 35, 45, 50, 56];

/// The genres of MovieLens-1M, and of 100K after its leading "unknown".
pub const GENRES: [&str; 18] = [
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Moves a trailing ", The" or ", A" of the name part to the front, as KAR does; only for
/// titles with exactly one "(".
pub fn correct_title(title: &str) -> String {
    let parts: Vec<&str> = title.split('(').collect();
    if parts.len() != 2 {
        return title.to_string();
    }
    let name = parts[0].trim_end();
    for article in ["The", "A"] {
        if let Some(rest) = name.strip_suffix(&format!(", {article}")) {
            return format!("{article} {rest} ({}", parts[1]);
        }
    }
    title.to_string()
}

fn fields(line: &[u8], sep: &str, n: usize) -> Result<Vec<String>, String> {
    let text = latin1(line);
    let parts: Vec<String> = text.split(sep).map(str::to_string).collect();
    if parts.len() != n {
        return Err(format!("expected {n} fields separated by `{sep}`, found {}", parts.len()));
    }
    Ok(parts)
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim().parse().map_err(|_| format!("{what} `{s}` is not a number"))
}

/// Reads a `user SEP item SEP rating SEP timestamp` file.
fn read_ratings(raw: &mut RawData, dir: &Path, file: &str, sep: &str, skip_bad: bool) -> Result<(), DataError> {
    let n = for_each_line(&dir.join(file), skip_bad, |line| {
        let f = fields(line, sep, 4)?;
        let rating: f32 = num(&f[2], "rating")?;
        let timestamp: i64 = num(&f[3], "timestamp")?;
        let user = raw.users.intern(f[0].trim());
        let item = raw.items.intern(f[1].trim());
        raw.ratings.push(Rating { user, item, rating, timestamp });
        Ok(())
    })?;
    raw.skipped.push((file.into(), n));
    Ok(())
}

/// Reads MovieLens-1M from a directory holding `ratings.dat`, `users.dat` and `movies.dat`.
pub fn load_ml1m(dir: &Path, skip_bad: bool) -> Result<RawData, DataError> {
    let mut raw = RawData::new("movielens-1m", Flavour::Movies, &["genre"]);
    read_ratings(&mut raw, dir, "ratings.dat", "::", skip_bad)?;

    let users = dir.join("users.dat");
    let n = for_each_line(&users, skip_bad, |line| {
        let f = fields(line, "::", 5)?;
        let gender = match f[1].trim() {
            g @ ("F" | "M") => g.to_string(),
            g => return Err(format!("gender `{g}` is not F or M")),
        };
        let age: i32 = num(&f[2], "age")?;
        let occ: usize = num(&f[3], "occupation")?;
        let occupation = ML1M_OCCUPATIONS.get(occ).ok_or_else(|| format!("occupation code {occ} is not 0..=20"))?;
        if let Some(u) = raw.users.get(f[0].trim()) {
            raw.demographics.insert(
                u,
                Demographics { gender: Some(gender), age: Some(age), occupation: Some(occupation.to_string()) },
            );
        }
        Ok(())
    })?;
    raw.skipped.push(("users.dat".into(), n));

    let movies = dir.join("movies.dat");
    let n = for_each_line(&movies, skip_bad, |line| {
        let f = fields(line, "::", 3)?;
        let genre = f[2].split('|').next().unwrap_or("").trim();
        if genre.is_empty() {
            return Err("no genre".into());
        }
        // KAR keeps the last space-separated word of a genre (a no-op for MovieLens genres).
        let genre = genre.rsplit(' ').next().unwrap_or(genre).to_string();
        if let Some(i) = raw.items.get(f[0].trim()) {
            raw.item_meta.insert(i, ItemMeta { title: correct_title(f[1].trim()), attributes: vec![genre] });
        }
        Ok(())
    })?;
    raw.skipped.push(("movies.dat".into(), n));
    Ok(raw)
}

/// Reads MovieLens-100K from a directory holding `u.data`, `u.item` and `u.user`.
pub fn load_ml100k(dir: &Path, skip_bad: bool) -> Result<RawData, DataError> {
    let mut raw = RawData::new("movielens-100k", Flavour::Movies, &["genre"]);
    read_ratings(&mut raw, dir, "u.data", "\t", skip_bad)?;

    let n = for_each_line(&dir.join("u.user"), skip_bad, |line| {
        let f = fields(line, "|", 5)?;
        let age: i32 = num(&f[1], "age")?;
        let gender = match f[2].trim() {
            g @ ("F" | "M") => g.to_string(),
            g => return Err(format!("gender `{g}` is not F or M")),
        };
        if let Some(u) = raw.users.get(f[0].trim()) {
            raw.demographics.insert(
                u,
                Demographics { gender: Some(gender), age: Some(age), occupation: Some(f[3].trim().to_string()) },
            );
        }
        Ok(())
    })?;
    raw.skipped.push(("u.user".into(), n));

    let n = for_each_line(&dir.join("u.item"), skip_bad, |line| {
        let f = fields(line, "|", 24)?;
        let flags = &f[5..];
        let first = flags.iter().position(|g| g.trim() == "1");
        let genre = match first {
            Some(0) | None => "unknown".to_string(),
            Some(g) => GENRES[g - 1].to_string(),
        };
        if flags.iter().any(|g| !matches!(g.trim(), "0" | "1")) {
            return Err("genre flags must be 0 or 1".into());
        }
        if let Some(i) = raw.items.get(f[0].trim()) {
            raw.item_meta.insert(i, ItemMeta { title: correct_title(f[1].trim()), attributes: vec![genre] });
        }
        Ok(())
    })?;
    raw.skipped.push(("u.item".into(), n));
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_move_their_article() {
        assert_eq!(correct_title("Matrix, The (1999)"), "The Matrix (1999)");
        assert_eq!(correct_title("Few Good Men, A (1992)"), "A Few Good Men (1992)");
        assert_eq!(correct_title("Toy Story (1995)"), "Toy Story (1995)");
        // ", An" and titles with several "(" stay as they are.
        assert_eq!(correct_title("American President, An (1995)"), "American President, An (1995)");
        assert_eq!(correct_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)"), "City of Lost Children, The (Cité des enfants perdus, La) (1995)");
    }

    #[test]
    fn reads_ml1m_with_latin1_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ratings.dat"), "1::10::5::978300760\n1::11::3::978300761\n2::10::4::978300762\n").unwrap();
        std::fs::write(dir.path().join("users.dat"), "1::F::1::10::48067\n2::M::56::16::70072\n").unwrap();
        let mut movies = b"10::Matrix, The (1999)::Action|Sci-Fi\n11::".to_vec();
        movies.extend_from_slice(&[b'C', b'a', b'f', 0xe9]); // latin-1 "Café"
        movies.extend_from_slice(b" (1995)::Comedy\n");
        std::fs::write(dir.path().join("movies.dat"), movies).unwrap();
        let raw = load_ml1m(dir.path(), false).unwrap();
        assert_eq!(raw.ratings.len(), 3);
        assert_eq!(raw.users.len(), 2);
        let m = &raw.item_meta[&raw.items.get("11").unwrap()];
        assert_eq!(m.title, "Café (1995)");
        assert_eq!(raw.item_meta[&raw.items.get("10").unwrap()].attributes, vec!["Action"]);
        let d = &raw.demographics[&raw.users.get("1").unwrap()];
        assert_eq!(d.occupation.as_deref(), Some("K-12 student"));
        assert_eq!(d.age, Some(1));

        std::fs::write(dir.path().join("ratings.dat"), "1::10::5::978300760\n1::11::five::978300761\n").unwrap();
        let err = load_ml1m(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("ratings.dat:2: rating `five` is not a number"), "{err}");
        let raw = load_ml1m(dir.path(), true).unwrap();
        assert_eq!(raw.skipped[0], ("ratings.dat".to_string(), 1));
        assert_eq!(raw.ratings.len(), 1);
    }

    #[test]
    fn reads_ml100k() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("u.data"), "1\t5\t4\t881250949\n").unwrap();
        std::fs::write(dir.path().join("u.user"), "1|24|M|technician|85711\n").unwrap();
        let flags = "0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0";
        std::fs::write(dir.path().join("u.item"), format!("5|Copycat (1995)|01-Jan-1995||http://x|{flags}\n")).unwrap();
        let raw = load_ml100k(dir.path(), false).unwrap();
        assert_eq!(raw.item_meta[&0].attributes, vec!["Animation"]);
        assert_eq!(raw.demographics[&0].occupation.as_deref(), Some("technician"));
        std::fs::write(dir.path().join("u.item"), "5|Copycat (1995)|01-Jan-1995\n").unwrap();
        let err = load_ml100k(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("u.item:1: expected 24 fields separated by `|`, found 3"), "{err}");
    }
}
