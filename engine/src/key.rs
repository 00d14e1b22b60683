//! Cache keys. A node's key is blake3 over its key components: kind, implementation version,
//! canonical params (sorted keys, defaults filled in, numbers as the typed params print them),
//! seed (for seeded kinds) and each input port's artifact digest. `diff` says what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use dagrun_cache::Digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything that goes into a node's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyComponents {
    pub kind: String,
    pub version: u32,
    pub params: Value,
    /// The derived seed, or `None` for kinds whose output does not depend on it.
    pub seed: Option<u64>,
    /// Input port -> digest of the artifact connected to it.
    pub inputs: BTreeMap<String, Digest>,
    /// External file (as the node names it) -> content digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Digest>,
}

impl KeyComponents {
    /// The node key.
    pub fn key(&self) -> Digest {
        let mut text = String::from("dagrun-key v1\n");
        write_canonical(&serde_json::to_value(self).unwrap_or(Value::Null), &mut text);
        Digest::of(text.as_bytes())
    }
}

/// JSON with object keys sorted and no whitespace, whatever the map type's order.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// One difference between the components a node was last computed with and its current ones.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Kind { old: String, new: String },
    Version { old: u32, new: u32 },
    Param { path: String, old: Option<Value>, new: Option<Value> },
    Seed { old: Option<u64>, new: Option<u64> },
    /// `new: None` means the input is not known yet because its producer will run.
    Input { port: String, old: Option<Digest>, new: Option<Digest> },
    File { path: String, old: Option<Digest>, new: Option<Digest> },
}

fn short_value(v: &Option<Value>) -> String {
    match v {
        None => "(unset)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 60 {
                format!("{}..", s.chars().take(58).collect::<String>())
            } else {
                s
            }
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Kind { old, new } => write!(f, "kind {old} -> {new}"),
            Change::Version { old, new } => write!(f, "implementation version {old} -> {new}"),
            Change::Param { path, old, new } => write!(f, "params.{path}: {} -> {}", short_value(old), short_value(new)),
            Change::Seed { old, new } => {
                let s = |v: &Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "(none)".into());
                write!(f, "seed {} -> {}", s(old), s(new))
            }
            Change::File { path, old, new } => {
                let s = |d: &Option<Digest>| d.map(|d| format!("{}..", &d.hex()[..4])).unwrap_or_else(|| "(none)".into());
                write!(f, "file {path}: {} -> {}", s(old), s(new))
            }
            Change::Input { port, old, new } => {
                let s = |d: &Option<Digest>| d.map(|d| format!("{}..", &d.hex()[..4])).unwrap_or_else(|| "(none)".into());
                match new {
                    Some(_) => write!(f, "input {port}: {} -> {}", s(old), s(new)),
                    None => write!(f, "input {port}: {} -> (recomputed upstream first)", s(old)),
                }
            }
        }
    }
}

/// What changed from `old` to `new`. Inputs in `pending` are not known yet (their producer
/// will run); they are reported only if `old` had them.
pub fn diff(old: &KeyComponents, new: &KeyComponents, pending: &BTreeSet<String>) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.kind != new.kind {
        changes.push(Change::Kind { old: old.kind.clone(), new: new.kind.clone() });
    }
    if old.version != new.version {
        changes.push(Change::Version { old: old.version, new: new.version });
    }
    diff_values("", Some(&old.params), Some(&new.params), &mut changes);
    if old.seed != new.seed {
        changes.push(Change::Seed { old: old.seed, new: new.seed });
    }
    let ports: BTreeSet<&String> = old.inputs.keys().chain(new.inputs.keys()).chain(pending.iter()).collect();
    for port in ports {
        let o = old.inputs.get(port).copied();
        if pending.contains(port) {
            changes.push(Change::Input { port: port.clone(), old: o, new: None });
            continue;
        }
        let n = new.inputs.get(port).copied();
        if o != n {
            changes.push(Change::Input { port: port.clone(), old: o, new: n });
        }
    }
    let paths: BTreeSet<&String> = old.files.keys().chain(new.files.keys()).collect();
    for path in paths {
        let (o, n) = (old.files.get(path).copied(), new.files.get(path).copied());
        if o != n {
            changes.push(Change::File { path: path.clone(), old: o, new: n });
        }
    }
    changes
}

fn diff_values(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                diff_values(&p, a.get(k), b.get(k), out);
            }
        }
        (a, b) if a != b => out.push(Change::Param {
            path: if path.is_empty() { "(all)".into() } else { path.to_string() },
            old: a.cloned(),
            new: b.cloned(),
        }),
        _ => {}
    }
}

/// A node's derived seed: the first 8 bytes of blake3 over the pipeline seed and the node id.
pub fn derive_seed(pipeline_seed: u64, node_id: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"dagrun-seed v1\n");
    h.update(&pipeline_seed.to_le_bytes());
    h.update(node_id.as_bytes());
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn comps(params: Value) -> KeyComponents {
        KeyComponents { kind: "generate".into(), version: 2, params, seed: Some(7), inputs: BTreeMap::new(), files: BTreeMap::new() }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":0.5}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":0.5,"y":[1,{"c":3,"d":2}]},"b":1}"#);
    }

    #[test]
    fn key_depends_on_every_component() {
        let base = comps(json!({"temperature": 0.7}));
        let k = base.key();
        assert_eq!(k, comps(json!({"temperature": 0.7})).key());
        let mut c = base.clone();
        c.version = 3;
        assert_ne!(c.key(), k);
        let mut c = base.clone();
        c.seed = Some(8);
        assert_ne!(c.key(), k);
        let mut c = base.clone();
        c.inputs.insert("prompts".into(), Digest::of(b"x"));
        assert_ne!(c.key(), k);
        assert_ne!(comps(json!({"temperature": 0.9})).key(), k);
        let mut c = base.clone();
        c.kind = "encode".into();
        assert_ne!(c.key(), k);
        let mut c = base.clone();
        c.files.insert("data/ratings.dat".into(), Digest::of(b"f"));
        assert_ne!(c.key(), k);
    }

    #[test]
    fn diff_names_what_changed() {
        let mut old = comps(json!({"temperature": 0.7, "top": {"p": 0.9}}));
        old.inputs.insert("prompts".into(), Digest::of(b"a"));
        let mut new = comps(json!({"temperature": 0.9, "top": {"p": 0.9, "k": 5}}));
        new.version = 3;
        new.inputs.insert("prompts".into(), Digest::of(b"b"));
        let text: Vec<String> = diff(&old, &new, &BTreeSet::new()).iter().map(|c| c.to_string()).collect();
        let a = &Digest::of(b"a").hex()[..4];
        let b = &Digest::of(b"b").hex()[..4];
        assert_eq!(
            text,
            vec![
                "implementation version 2 -> 3".to_string(),
                "params.temperature: 0.7 -> 0.9".to_string(),
                "params.top.k: (unset) -> 5".to_string(),
                format!("input prompts: {a}.. -> {b}.."),
            ]
        );
        let pending: BTreeSet<String> = ["prompts".to_string()].into();
        let text: Vec<String> = diff(&old, &old, &pending).iter().map(|c| c.to_string()).collect();
        assert_eq!(text, vec![format!("input prompts: {a}.. -> (recomputed upstream first)")]);
    }

    #[test]
    fn seeds_differ_by_node_and_pipeline_seed() {
        assert_ne!(derive_seed(7, "a"), derive_seed(7, "b"));
        assert_ne!(derive_seed(7, "a"), derive_seed(8, "a"));
        assert_eq!(derive_seed(7, "a"), derive_seed(7, "a"));
    }
}
