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
        println!("{name} (version {}): {}", kind.version(), kind.summary());
        let schema = kind.params_schema();
        // Ports of the default params, when the defaults are valid.
        if let Ok(sig) = kind.canonical_params(&Value::Object(Default::default())).and_then(|p| kind.signature(&p)) {
            for p in &sig.inputs {
                println!("  input  {}: {}{}", p.name, p.ty, if p.optional { " (optional)" } else { "" });
            }
            for p in &sig.outputs {
                println!("  output {}: {}", p.name, p.ty);
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let required: Vec<&str> =
                schema.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            for (param, s) in props {
                let ty = s.get("type").map(|t| t.to_string().replace('"', "")).unwrap_or_else(|| "value".into());
                let default = s.get("default").map(|d| format!(" = {d}")).unwrap_or_default();
                let req = if required.contains(&param.as_str()) { " (required)" } else { "" };
                let doc = s.get("description").and_then(Value::as_str).map(|d| format!("  {}", d.replace('\n', " "))).unwrap_or_default();
                println!("  param  {param}: {ty}{default}{req}{doc}");
            }
        }
    }
    Ok(0)
}
