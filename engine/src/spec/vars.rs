//! `${vars.NAME}` references. A string that is exactly one reference takes the variable's
//! value with its type (a number stays a number); a reference inside a longer string is
//! replaced by the value's text. `$${` writes a literal `${`.

use indexmap::IndexMap;
use serde_yaml::Value;

use super::{Ctx, RawSpec};
use crate::error::SpecError;
use crate::suggest;

/// A reference that could not be resolved.
#[derive(Debug, PartialEq)]
pub struct VarError {
    pub message: String,
    pub hint: Option<String>,
}

/// Resolves references in every node's inputs and params.
pub(crate) fn interpolate_all(raw: &mut RawSpec, ctx: &Ctx, errors: &mut Vec<SpecError>) {
    let vars = raw.vars.clone();
    for (id, node) in raw.nodes.iter_mut() {
        for (port, source) in node.inputs.iter_mut() {
            match interpolate_str(source, &vars) {
                Ok(None) => {}
                Ok(Some(v)) => match scalar_text(&v) {
                    Some(t) => *source = t,
                    None => errors.push(
                        ctx.at(&["nodes", id, "inputs", port], "an input must name a node, not a list or mapping").node(id),
                    ),
                },
                Err(e) => errors.push(ctx.at(&["nodes", id, "inputs", port], e.message).node(id).hint(e.hint)),
            }
        }
        let mut path = vec!["nodes".to_string(), id.clone(), "params".to_string()];
        walk(&mut node.params, &mut path, &vars, ctx, id, errors);
    }
}

fn walk(
    value: &mut Value,
    path: &mut Vec<String>,
    vars: &IndexMap<String, Value>,
    ctx: &Ctx,
    node: &str,
    errors: &mut Vec<SpecError>,
) {
    match value {
        Value::String(s) => match interpolate_str(s, vars) {
            Ok(None) => {}
            Ok(Some(v)) => *value = v,
            Err(e) => {
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                errors.push(ctx.at(&refs, e.message).node(node).hint(e.hint));
            }
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                walk(item, path, vars, ctx, node, errors);
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(scalar_text(k).unwrap_or_default());
                walk(v, path, vars, ctx, node, errors);
                path.pop();
            }
        }
        Value::Tagged(t) => walk(&mut t.value, path, vars, ctx, node, errors),
        _ => {}
    }
}

/// The text of a scalar, or `None` for null, lists and mappings.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Resolves the references in `s`; `Ok(None)` if it has none.
pub fn interpolate_str(s: &str, vars: &IndexMap<String, Value>) -> Result<Option<Value>, VarError> {
    if !s.contains("${") {
        return Ok(None);
    }
    let lookup = |name: &str| -> Result<&Value, VarError> {
        vars.get(name).ok_or_else(|| VarError {
            message: format!("unknown variable `vars.{name}`"),
            hint: if vars.is_empty() {
                Some("the spec has no `vars:` section".into())
            } else {
                suggest::hint(name, vars.keys().map(String::as_str))
            },
        })
    };
    let parse_ref = |inner: &str| -> Result<String, VarError> {
        match inner.strip_prefix("vars.") {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(VarError {
                message: format!("`${{{inner}}}` is not a reference dagrun understands"),
                hint: Some("write `${vars.NAME}` for a value from `vars:`, or `$${` for a literal `${`".into()),
            }),
        }
    };
    // A whole-string reference keeps the value's type.
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if !inner.contains('}') && !inner.contains("${") {
            let name = parse_ref(inner)?;
            return Ok(Some(lookup(&name)?.clone()));
        }
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or_else(|| VarError {
            message: "unclosed `${` (expected `${vars.NAME}`)".into(),
            hint: Some("write `$${` for a literal `${`".into()),
        })?;
        let name = parse_ref(&after[..end])?;
        let value = lookup(&name)?;
        let text = scalar_text(value).ok_or_else(|| VarError {
            message: format!("`vars.{name}` is not a string, number or boolean, so it cannot be part of a string"),
            hint: Some(format!("use `${{vars.{name}}}` as the whole value")),
        })?;
        out.push_str(&text);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(Value::String(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> IndexMap<String, Value> {
        let mut v = IndexMap::new();
        v.insert("n".to_string(), Value::from(300));
        v.insert("name".to_string(), Value::from("books"));
        v.insert("list".to_string(), serde_yaml::from_str("[1, 2]").unwrap());
        v
    }

    #[test]
    fn whole_references_keep_their_type() {
        assert_eq!(interpolate_str("${vars.n}", &vars()).unwrap(), Some(Value::from(300)));
        assert_eq!(interpolate_str("${vars.list}", &vars()).unwrap(), Some(serde_yaml::from_str("[1, 2]").unwrap()));
        assert_eq!(interpolate_str("plain", &vars()).unwrap(), None);
    }

    #[test]
    fn embedded_references_become_text() {
        assert_eq!(
            interpolate_str("data/${vars.name}/${vars.n}.csv", &vars()).unwrap(),
            Some(Value::from("data/books/300.csv"))
        );
        assert_eq!(interpolate_str("cost $${vars.n}", &vars()).unwrap(), Some(Value::from("cost ${vars.n}")));
    }

    #[test]
    fn bad_references_explain_themselves() {
        let e = interpolate_str("${vars.nme}", &vars()).unwrap_err();
        assert_eq!(e.message, "unknown variable `vars.nme`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `name`?"));
        assert!(interpolate_str("${env.HOME}", &vars()).unwrap_err().message.contains("not a reference"));
        assert!(interpolate_str("x ${vars.n", &vars()).unwrap_err().message.contains("unclosed"));
        assert!(interpolate_str("x ${vars.list}", &vars()).unwrap_err().message.contains("cannot be part of a string"));
    }
}
