//! A reranker benchmark and device check: trains each configuration briefly on the CPU,
//! scores the test lists on the CPU and (with a GPU) on the GPU with the same weights and
//! reports the largest difference, then measures training throughput in lists per second on
//! the chosen device.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::data::{DeviceKnowledge, Knowledge, Lists};
use super::train::{score, train, Schedule, Silent, TrainSettings};
use super::{store, Backbone, KnowledgeConfig, RerankerConfig};
use crate::data::preprocess::{preprocess, Dataset, Settings, Split};
use crate::data::synthetic::{generate, WorldSettings};
use crate::data::Flavour;
use crate::knowledge;
use crate::models::backend::{Cpu, CpuTrain};

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchSettings {
    pub users: u32,
    pub items: u32,
    pub dim: usize,
    pub batch_size: usize,
    pub epochs: usize,
}

/// One configuration's figures.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub name: String,
    pub lists_per_second: f64,
    /// Largest |score on device − score on CPU|, when the device is not the CPU.
    pub max_diff: Option<f32>,
}


fn config(d: &Dataset, backbone: Backbone, k: Option<&Knowledge>) -> RerankerConfig {
    RerankerConfig {
        backbone,
        item_count: d.items.len(),
        attribute_count: d.attribute_count,
        attribute_fields: d.attribute_fields.len(),
        list_len: d.settings.list_len as usize,
        embed_dim: 32,
        hidden: 64,
        heads: 2,
        mlp: vec![200, 80],
        knowledge: k.map(|k| KnowledgeConfig { dim: k.dim, shared_experts: 2, specific_experts: 6, expert_arch: vec![128, 32] }),
    }
}

/// The world, lists and knowledge the benchmark uses.
pub fn workload(s: &BenchSettings) -> Result<(Dataset, Lists, Lists, Knowledge), String> {
    let mut w = WorldSettings::new(Flavour::Movies);
    w.users = s.users;
    w.items = s.items;
    let raw = generate(&w, 1).map_err(|e| e.to_string())?;
    let d = preprocess(raw, &Settings::kar_defaults("synthetic", Flavour::Movies), 1).map_err(|e| e.to_string())?;
    let (u, i) = knowledge::synthetic(&d, s.dim, 0.0, 1).map_err(|e| e.to_string())?;
    let k = knowledge::knowledge(&d, &u, &i, 0).map_err(|e| e.to_string())?;
    let train_lists = Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Train));
    let test_lists = Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Test));
    Ok((d, train_lists, test_lists, k))
}

/// Trains `epochs` epochs on backend `B` and returns lists per second over all but the first
/// (warm-up) epoch.
fn throughput<B: AutodiffBackend>(c: &RerankerConfig, train_lists: &Lists, k: Option<&Knowledge>, s: &BenchSettings, device: &B::Device) -> Result<f64, String> {
    let settings = |epochs| TrainSettings { epochs, batch_size: s.batch_size, lr: 1e-3, weight_decay: 0.0, schedule: Schedule::Kar, patience: 1000, seed: 7 };
    // Warm-up (kernel compilation and autotuning on GPUs).
    train::<B>(c, train_lists, &train_lists.clone(), k, &settings(1), device, &Silent)?;
    let t0 = Instant::now();
    let t = train::<B>(c, train_lists, &train_lists.clone(), k, &settings(s.epochs), device, &Silent)?;
    let _ = t0;
    Ok(t.lists_per_second)
}

/// Runs the benchmark on the CPU, or compares against and measures `gpu` when given.
pub fn run<G: AutodiffBackend>(s: &BenchSettings, gpu: Option<&G::Device>, out: &mut dyn FnMut(&BenchRow)) -> Result<Vec<BenchRow>, String> {
    let (d, train_lists, test_lists, k) = workload(s)?;
    let mut rows = Vec::new();
    for backbone in [Backbone::Dlcm, Backbone::Prm] {
        for with in [false, true] {
            let kk = with.then_some(&k);
            let c = config(&d, backbone, kk);
            let name = format!("{}{}", backbone.as_str(), if with { "+kar" } else { "" });
            let cpu = Default::default();
            let max_diff = match gpu {
                None => None,
                Some(dev) => {
                    let quick = TrainSettings { epochs: 1, batch_size: s.batch_size, lr: 1e-3, weight_decay: 0.0, schedule: Schedule::Kar, patience: 1, seed: 3 };
                    let t = train::<CpuTrain>(&c, &train_lists, &test_lists, kk, &quick, &cpu, &Silent)?;
                    let dk = kk.map(|k| DeviceKnowledge::<Cpu>::new(k, &cpu));
                    let on_cpu = score(&t.model, &test_lists, dk.as_ref(), 1024, &cpu);
                    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                    store::save(&t.model, &c, dir.path())?;
                    let (m, _) = store::load::<G::InnerBackend>(dir.path(), dev)?;
                    let dk = kk.map(|k| DeviceKnowledge::<G::InnerBackend>::new(k, dev));
                    let on_gpu = score(&m, &test_lists, dk.as_ref(), 1024, dev);
                    Some(on_cpu.iter().zip(&on_gpu).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max))
                }
            };
            let lists_per_second = match gpu {
                None => throughput::<CpuTrain>(&c, &train_lists, kk, s, &cpu)?,
                Some(dev) => throughput::<G>(&c, &train_lists, kk, s, dev)?,
            };
            let row = BenchRow { name, lists_per_second, max_diff };
            out(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}
