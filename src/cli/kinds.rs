//! `dagrun kinds`: the node kinds this build offers, their ports and params.

use clap::Args;
use serde_json::Value;

use super::util::{self, CliResult};

#[derive(Args, Debug)]
pub struct KindsArgs {
    /// Show only this kind.
    pub kind: Option<String>,
}

pub fn kinds(a: KindsArgs) -> CliResult {
    let registry = util::registry();
    if registry.is_empty() {
        println!("this dagrun has no node kinds yet");
        return Ok(0);
    }
    let names: Vec<&str> = registry.names().filter(|n| a.kind.as_deref().is_none_or(|k| k == *n)).collect();
    if names.is_empty() {
        let k = a.kind.unwrap_or_default();
        return Err(util::CliError::Usage(format!(
            "unknown kind `{k}`{}",
            dagrun_engine::suggest::hint(&k, registry.names()).map(|h| format!(" ({h})")).unwrap_or_default()
        )));
    }
    for name in names {
        let kind = registry.get(name).expect("listed");
        let mut others = kind.other_versions().map(|o| format!("; {o}")).unwrap_or_default();
        if kind.shardable() {
            others.push_str("; shardable: `dagrun shard`");
        }
        println!("{name} (version {}{others}): {}", kind.version(), kind.summary());
        let schema = kind.params_schema();
        // Ports of the default params, when the defaults are valid.
        match kind.canonical_params(&Value::Object(Default::default())).and_then(|p| kind.signature(&p)) {
            Ok(sig) => {
                for p in &sig.inputs {
                    println!("  input  {}: {}{}", p.name, p.ty, if p.optional { " (optional)" } else { "" });
                }
                for p in &sig.outputs {
                    println!("  output {}: {}", p.name, p.ty);
                }
            }
            Err(_) => println!("  (its ports depend on its params)"),
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let required: Vec<&str> =
                schema.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            for (param, s) in props {
                let ty = describe_type(&schema, s);
                let default = s.get("default").map(|d| format!(" = {d}")).unwrap_or_default();
                let req = if required.contains(&param.as_str()) { " (required)" } else { "" };
                let doc = s.get("description").and_then(Value::as_str).map(|d| format!("  {}", d.replace('\n', " "))).unwrap_or_default();
                println!("  param  {param}: {ty}{default}{req}{doc}");
            }
        }
    }
    Ok(0)
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()) {
        Some(name) => root.get("$defs").and_then(|d| d.get(name)).unwrap_or(s),
        None => s,
    }
}

/// A param's type in a few words: `integer?`, `kar|unknown`, `list of string`.
fn describe_type(root: &Value, s: &Value) -> String {
    let s = resolve(root, s);
    if let Some(vals) = s.get("enum").and_then(Value::as_array) {
        return vals.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("|");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let nullable = alts.iter().any(|a| resolve(root, a).get("type") == Some(&Value::from("null")));
            let parts: Vec<String> = alts
                .iter()
                .filter(|a| resolve(root, a).get("type") != Some(&Value::from("null")))
                .map(|a| {
                    let a = resolve(root, a);
                    a.get("const").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| describe_type(root, a))
                })
                .collect();
            return format!("{}{}", parts.join("|"), if nullable { "?" } else { "" });
        }
    }
    match s.get("type") {
        Some(Value::String(t)) if t == "array" => format!("list of {}", s.get("items").map(|i| describe_type(root, i)).unwrap_or_else(|| "value".into())),
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            let non_null: Vec<&str> = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
            format!("{}{}", non_null.join("|"), if non_null.len() < ts.len() { "?" } else { "" })
        }
        _ => "value".into(),
    }
}
