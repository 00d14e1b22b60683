//! A trained reranker on disk: `model.safetensors` (Burn's tensor names) and `config.json`
//! (the architecture), loadable without the pipeline.

use std::path::Path;

use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use super::config::RerankerConfig;
use super::model::Reranker;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

/// Writes a model and its config into `dir`.
pub fn save<B: Backend>(model: &Reranker<B>, config: &RerankerConfig, dir: &Path) -> Result<(), String> {
    let json = serde_json::to_string_pretty(config).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(CONFIG_FILE), json + "\n").map_err(|e| format!("{}: {e}", dir.join(CONFIG_FILE).display()))?;
    let mut store = SafetensorsStore::from_file(dir.join(WEIGHTS_FILE)).metadata("dagrun.kind", "reranker");
    model.save_into(&mut store).map_err(|e| format!("cannot write {}: {e:?}", WEIGHTS_FILE))?;
    canonicalise(&dir.join(WEIGHTS_FILE))
}

/// Rewrites a safetensors file with its header (metadata and tensors) and data in name order.
/// Burn's store writes them in hash-map order, so equal weights made different files, different
/// digests, and a retrained reranker never hit the early cutoff.
fn canonicalise(path: &Path) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| fail(&e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| fail(&e))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| fail(&e))?;
    let mut views = tensors.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    // serde_json's map keeps keys sorted.
    let mut head = serde_json::Map::new();
    if let Some(meta) = header.metadata() {
        head.insert("__metadata__".into(), serde_json::to_value(meta.iter().collect::<std::collections::BTreeMap<_, _>>()).map_err(|e| fail(&e))?);
    }
    let mut offset = 0;
    for (name, view) in &views {
        let end = offset + view.data().len();
        head.insert(name.clone(), serde_json::json!({ "dtype": view.dtype().to_string(), "shape": view.shape(), "data_offsets": [offset, end] }));
        offset = end;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(head)).map_err(|e| fail(&e))?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    views.iter().for_each(|(_, v)| out.extend_from_slice(v.data()));
    std::fs::write(path, out).map_err(|e| fail(&e))
}

/// Reads the config of a saved model.
pub fn read_config(dir: &Path) -> Result<RerankerConfig, String> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a reranker config: {e}", path.display()))
}

/// Loads a saved model onto `device`.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Reranker<B>, RerankerConfig), String> {
    let config = read_config(dir)?;
    let mut model = Reranker::new(&config, device);
    let mut store = SafetensorsStore::from_file(dir.join(WEIGHTS_FILE));
    model.load_from(&mut store).map_err(|e| format!("cannot load {}: {e:?}", dir.join(WEIGHTS_FILE).display()))?;
    Ok((model, config))
}
