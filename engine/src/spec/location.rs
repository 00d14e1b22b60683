//! Where each key and value of a YAML document is: an index from a path (`nodes.a.params.x`)
//! to its line and column, built from the parser's events so that errors found after
//! deserialisation can still point at the right line.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::error::Loc;

/// Paths are joined with this separator internally (keys may contain dots).
const SEP: char = '\u{1f}';

/// Positions of keys and values by path.
#[derive(Debug, Default)]
pub struct Locations {
    keys: HashMap<String, Loc>,
    values: HashMap<String, Loc>,
    /// Duplicate mapping keys: (path of the duplicate, where it is).
    pub duplicates: Vec<(Vec<String>, Loc)>,
}

fn join(path: &[&str]) -> String {
    let mut s = String::new();
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            s.push(SEP);
        }
        s.push_str(p);
    }
    s
}

impl Locations {
    /// Indexes `text`. A document the event parser cannot read gives an empty index (the
    /// YAML deserialiser reports the syntax error itself).
    pub fn index(text: &str) -> Locations {
        let mut recv = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut recv, false).is_err() {
            return Locations::default();
        }
        recv.locs
    }

    /// Where the value at `path` starts.
    pub fn value(&self, path: &[&str]) -> Option<Loc> {
        self.values.get(&join(path)).copied()
    }

    /// Where the key of the entry at `path` is.
    pub fn key(&self, path: &[&str]) -> Option<Loc> {
        self.keys.get(&join(path)).copied()
    }

    /// The value at `path`, or failing that the nearest enclosing entry that is indexed.
    pub fn nearest(&self, path: &[&str]) -> Option<Loc> {
        for n in (0..=path.len()).rev() {
            if let Some(l) = self.value(&path[..n]).or_else(|| self.key(&path[..n])) {
                return Some(l);
            }
        }
        None
    }
}

enum Frame {
    Map { path: Vec<String>, key: Option<String>, seen: HashSet<String> },
    Seq { path: Vec<String>, index: usize },
}

#[derive(Default)]
struct Receiver {
    stack: Vec<Frame>,
    locs: Locations,
    depth_ignored: usize,
}

fn loc(m: &Marker) -> Loc {
    // yaml-rust2 gives 1-based lines and 0-based columns.
    Loc { line: m.line(), col: m.col() + 1 }
}

impl Receiver {
    /// The path of the value about to be read, or `None` when a key is expected.
    fn value_path(&mut self) -> Option<Vec<String>> {
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Frame::Map { path, key, .. }) => key.take().map(|k| {
                let mut p = path.clone();
                p.push(k);
                p
            }),
            Some(Frame::Seq { path, index }) => {
                let mut p = path.clone();
                p.push(index.to_string());
                *index += 1;
                Some(p)
            }
        }
    }

    fn record_value(&mut self, path: &[String], m: &Marker) {
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        self.locs.values.insert(join(&refs), loc(m));
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.depth_ignored > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.depth_ignored += 1,
                Event::MappingEnd | Event::SequenceEnd => self.depth_ignored -= 1,
                _ => {}
            }
            return;
        }
        let expecting_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
        match ev {
            Event::Scalar(value, ..) if expecting_key => {
                if let Some(Frame::Map { path, key, seen }) = self.stack.last_mut() {
                    let mut p = path.clone();
                    p.push(value.clone());
                    let refs: Vec<&str> = p.iter().map(String::as_str).collect();
                    if !seen.insert(value.clone()) {
                        self.locs.duplicates.push((p.clone(), loc(&mark)));
                    } else {
                        self.locs.keys.insert(join(&refs), loc(&mark));
                    }
                    *key = Some(value);
                }
            }
            Event::Scalar(..) | Event::Alias(..) => {
                if let Some(p) = self.value_path() {
                    self.record_value(&p, &mark);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) if expecting_key => {
                // A complex key: not used in specs; skip it.
                self.depth_ignored = 1;
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = Some("?".into());
                }
            }
            Event::MappingStart(..) => {
                let p = self.value_path().unwrap_or_default();
                self.record_value(&p, &mark);
                self.stack.push(Frame::Map { path: p, key: None, seen: HashSet::new() });
            }
            Event::SequenceStart(..) => {
                let p = self.value_path().unwrap_or_default();
                self.record_value(&p, &mark);
                self.stack.push(Frame::Seq { path: p, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_values_and_duplicates() {
        let text = "pipeline: p\nnodes:\n  a:\n    kind: load\n    params: { x: 1, y: [3, 4] }\n  b:\n    kind: x\n  b: {}\n";
        let l = Locations::index(text);
        assert_eq!(l.value(&["pipeline"]), Some(Loc { line: 1, col: 11 }));
        assert_eq!(l.key(&["nodes", "a"]), Some(Loc { line: 3, col: 3 }));
        assert_eq!(l.value(&["nodes", "a", "kind"]), Some(Loc { line: 4, col: 11 }));
        assert_eq!(l.value(&["nodes", "a", "params", "x"]), Some(Loc { line: 5, col: 18 }));
        assert_eq!(l.value(&["nodes", "a", "params", "y", "1"]), Some(Loc { line: 5, col: 28 }));
        assert_eq!(l.duplicates, vec![(vec!["nodes".to_string(), "b".to_string()], Loc { line: 8, col: 3 })]);
        assert_eq!(l.nearest(&["nodes", "a", "params", "zzz"]), Some(Loc { line: 5, col: 13 }));
    }

    #[test]
    fn unreadable_yaml_gives_an_empty_index() {
        let l = Locations::index("a: [1, 2\n");
        assert_eq!(l.value(&["a"]), None);
    }
}
