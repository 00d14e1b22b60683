//! What every loader produces before KAR preprocessing: interned user and item ids, ratings
//! in file order, item metadata, user demographics. Ratings are kept compact (ids are
//! interned) so that a multi-gigabyte review file fits in memory as numbers only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// Whether a dataset is about movies or books (prompts and attribute fields follow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    Movies,
    Books,
}

/// Maps raw string ids to dense indices in first-seen order.
#[derive(Clone, Debug, Default)]
pub struct Interner {
    pub ids: Vec<String>,
    map: HashMap<String, u32>,
}

impl Interner {
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.map.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.map.insert(id.to_string(), i);
        i
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.map.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// User attributes (MovieLens only); they reach prompts, never the rerankers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Demographics {
    /// "F" or "M".
    pub gender: Option<String>,
    /// The age (MovieLens-1M: its age-group code: 1, 18, 25, 35, 45, 50, 56).
    pub age: Option<i32>,
    /// The occupation's name, e.g. "academic/educator".
    pub occupation: Option<String>,
}

/// An item's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemMeta {
    pub title: String,
    /// Attribute values in the dataset's attribute-field order.
    pub attributes: Vec<String>,
}

/// One rating, ids interned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    pub user: u32,
    pub item: u32,
    pub rating: f32,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A loaded dataset before preprocessing.
#[derive(Clone, Debug)]
pub struct RawData {
    pub name: String,
    pub flavour: Flavour,
    /// Names of the item attribute fields (`["genre"]`, `["brand", "category"]`).
    pub attribute_fields: Vec<String>,
    pub users: Interner,
    pub items: Interner,
    /// In file order (the tie-break for equal times).
    pub ratings: Vec<Rating>,
    pub demographics: HashMap<u32, Demographics>,
    pub item_meta: HashMap<u32, ItemMeta>,
    /// Ground-truth tastes (synthetic worlds only), as JSON text, by user index.
    pub truth: HashMap<u32, String>,
    /// Malformed lines skipped with `skip_bad_lines`, per file.
    pub skipped: Vec<(String, u64)>,
}

impl RawData {
    pub fn new(name: &str, flavour: Flavour, attribute_fields: &[&str]) -> RawData {
        RawData {
            name: name.to_string(),
            flavour,
            attribute_fields: attribute_fields.iter().map(|s| s.to_string()).collect(),
            users: Interner::default(),
            items: Interner::default(),
            ratings: Vec::new(),
            demographics: HashMap::new(),
            item_meta: HashMap::new(),
            truth: HashMap::new(),
            skipped: Vec::new(),
        }
    }
}

/// A problem reading a dataset file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {why} (set `skip_bad_lines: true` to skip such lines)", path.display())]
    Malformed { path: PathBuf, line: u64, why: String },
    #[error("{what}")]
    Invalid { what: String },
}

/// Opens a file, plain or gzip (recognised by its magic bytes, not its name).
pub fn open_lines(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let io_err = |e| DataError::Io { path: path.to_path_buf(), source: e };
    let mut f = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(io_err)?;
    let f = File::open(path).map_err(io_err)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(BufReader::with_capacity(1 << 20, f)))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
    }
}

/// Decodes latin-1 bytes (every byte is the code point of the same value).
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// Reads a file line by line (raw bytes, line ending removed), calling `f` with the 1-based
/// line number. A line `f` rejects is an error naming file and line, or is counted and
/// skipped with `skip_bad`. Empty lines are ignored. Returns the number of lines skipped.
pub fn for_each_line(
    path: &Path,
    skip_bad: bool,
    mut f: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<u64, DataError> {
    let mut reader = open_lines(path)?;
    let mut buf = Vec::with_capacity(256);
    let mut line_no = 0u64;
    let mut skipped = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| DataError::Io { path: path.to_path_buf(), source: e })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.is_empty() {
            continue;
        }
        if let Err(why) = f(&buf) {
            if skip_bad {
                skipped += 1;
            } else {
                return Err(DataError::Malformed { path: path.to_path_buf(), line: line_no, why });
            }
        }
    }
    Ok(skipped)
}
