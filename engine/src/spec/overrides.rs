//! `--set target=value` overrides. `seed=N` replaces the pipeline seed (a seed sweep);
//! `vars.NAME=value` replaces a variable before references are resolved; `NODE.PARAM[.FIELD...]=value` (or the YAML's path, `nodes.NODE.params.PARAM`)
//! replaces a param afterwards. A value is typed
//! against the param's schema: a string param takes the text as it is, any other param
//! parses it as YAML (`3`, `0.9`, `true`, `[1, 2]`).

use serde_json::Value as Json;
use serde_yaml::Value;

use super::RawSpec;
use crate::error::SpecError;
use crate::suggest;

/// One `--set` argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The argument as given, for messages.
    pub arg: String,
    pub target: Vec<String>,
    pub value: String,
}

impl Override {
    /// Parses `target=value`.
    pub fn parse(arg: &str) -> Result<Override, SpecError> {
        const EXPECTED: &str = "expected `NODE.PARAM=VALUE`, `vars.NAME=VALUE` or `seed=N`";
        let (target, value) = arg.split_once('=').ok_or_else(|| SpecError::arg(arg, EXPECTED))?;
        let target: Vec<String> = target.trim().split('.').map(str::to_string).collect();
        if (target.len() < 2 && target[0] != "seed") || target.iter().any(String::is_empty) {
            return Err(SpecError::arg(arg, EXPECTED));
        }
        Ok(Override { arg: arg.to_string(), target, value: value.to_string() })
    }

    fn is_var(&self) -> bool {
        self.target[0] == "vars"
    }

    fn is_seed(&self) -> bool {
        self.target.len() == 1
    }
}

/// Applies a `seed=N` override.
pub(crate) fn apply_seed(raw: &mut RawSpec, overrides: &[Override], errors: &mut Vec<SpecError>) {
    for o in overrides.iter().filter(|o| o.is_seed()) {
        match o.value.trim().parse::<u64>() {
            Ok(seed) => raw.seed = seed,
            Err(_) => errors.push(SpecError::arg(&o.arg, "the seed is a whole number from 0 to 18446744073709551615")),
        }
    }
}

fn parse_yaml(o: &Override) -> Result<Value, SpecError> {
    serde_yaml::from_str(&o.value).map_err(|e| SpecError::arg(&o.arg, format!("the value is not valid YAML: {e}")))
}

/// Applies `vars.NAME=value` overrides.
pub(crate) fn apply_vars(raw: &mut RawSpec, overrides: &[Override], errors: &mut Vec<SpecError>) {
    for o in overrides.iter().filter(|o| o.is_var()) {
        if o.target.len() != 2 {
            errors.push(SpecError::arg(&o.arg, "a variable override is `vars.NAME=VALUE`"));
            continue;
        }
        let name = &o.target[1];
        let Some(slot) = raw.vars.get_mut(name) else {
            let hint = if raw.vars.is_empty() {
                Some("the spec has no `vars:` section".to_string())
            } else {
                suggest::hint(name, raw.vars.keys().map(String::as_str))
            };
            errors.push(SpecError::arg(&o.arg, format!("unknown variable `vars.{name}`")).hint(hint));
            continue;
        };
        let value = if slot.is_string() { Ok(Value::String(o.value.clone())) } else { parse_yaml(o) };
        match value {
            Ok(v) => *slot = v,
            Err(e) => errors.push(e),
        }
    }
}

/// Applies `NODE.PARAM=value` overrides and returns (node, param path, argument) for each.
pub(crate) fn apply_params(
    raw: &mut RawSpec,
    overrides: &[Override],
    schema_of: &dyn Fn(&str) -> Option<Json>,
    errors: &mut Vec<SpecError>,
) -> Vec<(String, Vec<String>, String)> {
    let mut applied = Vec::new();
    for o in overrides.iter().filter(|o| !o.is_var() && !o.is_seed()) {
        // The YAML's own path to a param is accepted too: `nodes.NODE.params.PARAM`.
        let mut target = &o.target[..];
        if target[0] == "nodes" && target.len() > 2 && !raw.nodes.contains_key("nodes") {
            target = &target[1..];
        }
        let node_id = &target[0];
        if !raw.nodes.contains_key(node_id) {
            let ids: Vec<&str> = raw.nodes.keys().map(String::as_str).collect();
            errors.push(SpecError::arg(&o.arg, format!("unknown node `{node_id}`")).hint(suggest::hint(node_id, ids)));
            continue;
        }
        let node = raw.nodes.get_mut(node_id).expect("checked above");
        let mut path = &target[1..];
        let schema = schema_of(&node.kind);
        if path.len() > 1 && path[0] == "params" && schema.as_ref().is_some_and(|s| param_schema(s, &path[..1]).is_err()) {
            path = &path[1..];
        }
        let value = match schema {
            Some(schema) => match param_schema(&schema, path) {
                Ok(Some(s)) if is_string_schema(&schema, s) => Ok(Value::String(o.value.clone())),
                Ok(_) => parse_yaml(o),
                Err((field, known)) => {
                    let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
                    Err(SpecError::arg(
                        &o.arg,
                        format!("kind `{}` has no param `{}`", node.kind, field),
                    )
                    .node(node_id)
                    .hint(suggest::hint(&field, known_refs)))
                }
            },
            // Unknown kind: resolution reports it; keep the text typed as YAML meanwhile.
            None => parse_yaml(o),
        };
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if node.params.is_null() {
            node.params = Value::Mapping(Default::default());
        }
        let mut slot = &mut node.params;
        for (i, seg) in path.iter().enumerate() {
            let Value::Mapping(map) = slot else {
                errors.push(
                    SpecError::arg(&o.arg, format!("`{}` is not a mapping", path[..i].join("."))).node(node_id),
                );
                break;
            };
            let key = Value::String(seg.clone());
            if i + 1 == path.len() {
                map.insert(key, value.clone());
                break;
            }
            slot = map.entry(key).or_insert_with(|| Value::Mapping(Default::default()));
        }
        applied.push((node_id.clone(), path.to_vec(), o.arg.clone()));
    }
    applied
}

fn resolve_ref<'a>(root: &'a Json, s: &'a Json) -> &'a Json {
    let mut s = s;
    for _ in 0..16 {
        match s.get("$ref").and_then(Json::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or("");
                match root.get("$defs").and_then(|d| d.get(name)).or_else(|| root.get("definitions").and_then(|d| d.get(name))) {
                    Some(t) => s = t,
                    None => return s,
                }
            }
            None => return s,
        }
    }
    s
}

/// The schema of the param at `path`, `Ok(None)` if the schema does not say, or
/// `Err((field, known fields))` if an object with fixed fields lacks it.
fn param_schema<'a>(root: &'a Json, path: &[String]) -> Result<Option<&'a Json>, (String, Vec<String>)> {
    let mut s = resolve_ref(root, root);
    for seg in path {
        let Some(props) = s.get("properties").and_then(Json::as_object) else {
            return Ok(None);
        };
        match props.get(seg) {
            Some(p) => s = resolve_ref(root, p),
            None => {
                if s.get("additionalProperties") == Some(&Json::Bool(false)) {
                    return Err((seg.clone(), props.keys().cloned().collect()));
                }
                return Ok(None);
            }
        }
    }
    Ok(Some(s))
}

/// Whether a schema accepts strings and nothing else (besides null).
fn is_string_schema(root: &Json, s: &Json) -> bool {
    let s = resolve_ref(root, s);
    if let Some(t) = s.get("type") {
        return match t {
            Json::String(t) => t == "string",
            Json::Array(ts) => {
                ts.iter().any(|t| t == "string") && ts.iter().all(|t| t == "string" || t == "null")
            }
            _ => false,
        };
    }
    if let Some(vals) = s.get("enum").and_then(Json::as_array) {
        return vals.iter().all(|v| v.is_string() || v.is_null());
    }
    if let Some(c) = s.get("const") {
        return c.is_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Json::as_array) {
            let non_null: Vec<_> = alts.iter().filter(|a| resolve_ref(root, a).get("type") != Some(&Json::from("null"))).collect();
            return !non_null.is_empty() && non_null.iter().all(|a| is_string_schema(root, a));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        let o = Override::parse("gen.temperature=0.9").unwrap();
        assert_eq!(o.target, vec!["gen", "temperature"]);
        assert_eq!(o.value, "0.9");
        assert_eq!(Override::parse("a.b=x=y").unwrap().value, "x=y");
        assert!(Override::parse("nodot=1").is_err());
        assert_eq!(Override::parse("seed=8").unwrap().target, ["seed"]);
        assert!(Override::parse("a.b").is_err());
        assert!(Override::parse("a..b=1").is_err());
    }

    #[test]
    fn schema_typing() {
        let root = serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "maybe": {"type": ["string", "null"]},
                "n": {"type": "integer"},
                "mode": {"$ref": "#/$defs/Mode"},
                "nested": {"type": "object", "properties": {"x": {"type": "string"}}}
            },
            "$defs": {"Mode": {"type": "string", "enum": ["a", "b"]}}
        });
        let s = |p: &[&str]| param_schema(&root, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(is_string_schema(&root, s(&["name"]).unwrap().unwrap()));
        assert!(is_string_schema(&root, s(&["maybe"]).unwrap().unwrap()));
        assert!(is_string_schema(&root, s(&["mode"]).unwrap().unwrap()));
        assert!(is_string_schema(&root, s(&["nested", "x"]).unwrap().unwrap()));
        assert!(!is_string_schema(&root, s(&["n"]).unwrap().unwrap()));
        let (field, known) = s(&["nme"]).unwrap_err();
        assert_eq!(field, "nme");
        assert!(known.contains(&"name".to_string()));
    }
}
