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
    model.save_into(&mut store).map_err(|e| format!("cannot write {}: {e:?}", WEIGHTS_FILE))
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
