//! Reranker tests: shapes, learning on a toy, gradients reaching every parameter, bit-exact
//! save/load, knowledge that matters (and noise that does not), and bad inputs.

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::data::{batch, DeviceKnowledge, Knowledge, Lists};
use super::train::{metrics, score, train, Schedule, Silent, TrainSettings};
use super::*;
use crate::data::preprocess::{preprocess, Settings, Split};
use crate::data::synthetic::{generate, WorldSettings};
use crate::data::Flavour;
use crate::models::backend::{Cpu, CpuTrain};

fn config(backbone: Backbone, knowledge: Option<usize>) -> RerankerConfig {
    RerankerConfig {
        backbone,
        item_count: 50,
        attribute_count: 6,
        attribute_fields: 2,
        list_len: 10,
        embed_dim: 8,
        hidden: 16,
        heads: 2,
        mlp: vec![24, 12],
        knowledge: knowledge.map(|dim| KnowledgeConfig { dim, shared_experts: 2, specific_experts: 3, expert_arch: vec![16, 8] }),
    }
}

/// Lists where the positives are exactly the items with an even id: learnable from ids.
fn toy_lists(n: usize) -> Lists {
    let mut l = Lists { list_len: 10, fields: 2, ..Default::default() };
    for i in 0..n {
        for j in 0..10 {
            let item = ((i * 7 + j * 3) % 50 + 1) as i32;
            l.items.push(item);
            l.attributes.extend([(item % 6 + 1) as i32, ((item / 7) % 6 + 1) as i32]);
            l.labels.push((item % 2 == 0) as i32 as f32);
        }
        l.users.push((i % 20 + 1) as i32);
    }
    l
}

fn toy_knowledge(dim: usize) -> Knowledge {
    let users: Vec<f32> = (0..20 * dim).map(|x| ((x * 37 % 101) as f32 / 101.0) - 0.5).collect();
    let items: Vec<f32> = (0..51 * dim).map(|x| ((x * 53 % 97) as f32 / 97.0) - 0.5).collect();
    Knowledge {
        dim,
        user_rows: (1..=20).map(|u| (u, (u - 1) as usize)).collect(),
        users,
        items,
        item_present: (0..51).map(|i| i > 0).collect(),
    }
}


#[test]
fn output_shapes() {
    let device = Default::default();
    for backbone in [Backbone::Dlcm, Backbone::Prm] {
        for k in [None, Some(12)] {
            let c = config(backbone, k);
            let model: Reranker<Cpu> = Reranker::new(&c, &device);
            let lists = toy_lists(5);
            let dk = k.map(|d| DeviceKnowledge::<Cpu>::new(&toy_knowledge(d), &device));
            let b = batch(&lists, &[0, 1, 2], dk.as_ref(), &device);
            assert_eq!(model.features(&b).dims(), [3, 10, c.feature_dim()]);
            let p = model.forward(&b);
            assert_eq!(p.dims(), [3, 10]);
            let v: Vec<f32> = p.into_data().iter::<f32>().collect();
            assert!(v.iter().all(|x| *x > 0.0 && *x < 1.0), "{backbone:?} {k:?}: probabilities {v:?}");
        }
    }
}

struct GradCheck<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    missing: Vec<String>,
    seen: usize,
}

impl<B: burn::tensor::backend::AutodiffBackend> ModuleVisitor<B> for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.seen += 1;
        let ok = self
            .grads
            .get::<B::InnerBackend, D>(param.id)
            .map(|g| g.abs().sum().into_scalar().elem::<f32>() > 0.0)
            .unwrap_or(false);
        // BatchNorm's running statistics are state, not learned.
        if !ok && !self.path.last().is_some_and(|p| p.starts_with("running_")) {
            self.missing.push(self.path.join("."));
        }
    }
}

#[test]
fn gradients_reach_every_parameter() {
    let device = Default::default();
    for backbone in [Backbone::Dlcm, Backbone::Prm] {
        let c = config(backbone, Some(12));
        let model: Reranker<CpuTrain> = Reranker::new(&c, &device);
        let lists = toy_lists(16);
        let dk = DeviceKnowledge::<CpuTrain>::new(&toy_knowledge(12), &device);
        let idx: Vec<usize> = (0..16).collect();
        let loss = model.loss(&batch(&lists, &idx, Some(&dk), &device));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut check = GradCheck { grads: &grads, path: Vec::new(), missing: Vec::new(), seen: 0 };
        model.visit(&mut check);
        assert!(check.seen > 20, "{backbone:?}: visited {} params", check.seen);
        assert!(check.missing.is_empty(), "{backbone:?}: no gradient for {:?}", check.missing);
    }
}

fn settings(epochs: usize) -> TrainSettings {
    TrainSettings { epochs, batch_size: 16, lr: 3e-3, weight_decay: 0.0, schedule: Schedule::Constant, patience: 100, seed: 3 }
}

#[test]
fn the_loss_falls_on_a_learnable_toy() {
    let device = Default::default();
    for backbone in [Backbone::Dlcm, Backbone::Prm] {
        let lists = toy_lists(96);
        let t = train::<CpuTrain>(&config(backbone, None), &lists, &lists, None, &settings(12), &device, &Silent).unwrap();
        let (first, last) = (t.curve[0].loss, t.curve.last().unwrap().loss);
        assert!(last < first * 0.7, "{backbone:?}: loss {first:.4} -> {last:.4}");
        assert!(t.curve.last().unwrap().ndcg5 > 0.9, "{backbone:?}: {:?}", t.curve.last());
    }
}

#[test]
fn save_then_load_gives_bit_identical_scores() {
    let device = Default::default();
    for backbone in [Backbone::Dlcm, Backbone::Prm] {
        let lists = toy_lists(32);
        let k = toy_knowledge(12);
        let c = config(backbone, Some(12));
        let t = train::<CpuTrain>(&c, &lists, &lists, Some(&k), &settings(2), &device, &Silent).unwrap();
        let dk = DeviceKnowledge::<Cpu>::new(&k, &device);
        let before = score(&t.model, &lists, Some(&dk), 7, &device);
        let dir = tempfile::tempdir().unwrap();
        store::save(&t.model, &c, dir.path()).unwrap();
        let (loaded, c2) = store::load::<Cpu>(dir.path(), &device).unwrap();
        assert_eq!(c2, c);
        let after = score(&loaded, &lists, Some(&dk), 7, &device);
        assert_eq!(before.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), after.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let device = Default::default();
    let lists = toy_lists(32);
    let a = train::<CpuTrain>(&config(Backbone::Dlcm, None), &lists, &lists, None, &settings(2), &device, &Silent).unwrap();
    let b = train::<CpuTrain>(&config(Backbone::Dlcm, None), &lists, &lists, None, &settings(2), &device, &Silent).unwrap();
    assert_eq!(a.curve, b.curve);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let device = Default::default();
    let lists = toy_lists(8);
    let mut k = toy_knowledge(12);
    k.user_rows.remove(&3);
    let err = train::<CpuTrain>(&config(Backbone::Dlcm, Some(12)), &lists, &lists, Some(&k), &settings(1), &device, &Silent).err().unwrap();
    assert!(err.contains("user knowledge has no vector for 1 users of the lists (e.g. user 3)"), "{err}");
    let mut k = toy_knowledge(12);
    k.item_present[7] = false;
    let err = train::<CpuTrain>(&config(Backbone::Dlcm, Some(12)), &lists, &lists, Some(&k), &settings(1), &device, &Silent).err().unwrap();
    assert!(err.contains("item knowledge has no vector for 1 candidate items (e.g. item 7)"), "{err}");
    let empty = Lists { list_len: 10, fields: 2, ..Default::default() };
    let err = train::<CpuTrain>(&config(Backbone::Dlcm, None), &empty, &lists, None, &settings(1), &device, &Silent).err().unwrap();
    assert_eq!(err, "there are no training lists");
    let err = train::<CpuTrain>(&config(Backbone::Dlcm, None), &lists, &empty, None, &settings(1), &device, &Silent).err().unwrap();
    assert!(err.contains("no lists to select"), "{err}");
}

/// On the synthetic world, knowledge from the ground truth beats no knowledge by a clear
/// margin on test NDCG@5, and noise as knowledge does not.
#[test]
fn knowledge_must_matter() {
    let mut w = WorldSettings::new(Flavour::Movies);
    w.users = 600;
    w.items = 500;
    let d = preprocess(generate(&w, 11).unwrap(), &Settings::kar_defaults("synthetic", Flavour::Movies), 11).unwrap();
    let train_lists = Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Train));
    let test_lists = Lists::from_dataset(&d, d.lists.iter().filter(|l| l.split == Split::Test));
    let dim = 64;
    let vectors = |noise: f64| {
        let (u, i) = crate::knowledge::synthetic(&d, dim, noise, 9).unwrap();
        crate::knowledge::knowledge(&d, &u, &i, 0).unwrap()
    };
    let (truth, noise) = (vectors(0.0), vectors(1.0));
    let device = Default::default();
    let s = TrainSettings { epochs: 10, batch_size: 64, lr: 1e-3, weight_decay: 0.0, schedule: Schedule::Kar, patience: 3, seed: 5 };
    let ndcg = |k: Option<&Knowledge>| {
        // KAR's sizes.
        let c = RerankerConfig {
            backbone: Backbone::Dlcm,
            item_count: d.items.len(),
            attribute_count: d.attribute_count,
            attribute_fields: d.attribute_fields.len(),
            list_len: 10,
            embed_dim: 32,
            hidden: 64,
            heads: 2,
            mlp: vec![200, 80],
            knowledge: k.map(|k| KnowledgeConfig { dim: k.dim, shared_experts: 2, specific_experts: 6, expert_arch: vec![128, 32] }),
        };
        let t = train::<CpuTrain>(&c, &train_lists, &test_lists, k, &s, &device, &Silent).unwrap();
        let dk = k.map(|k| DeviceKnowledge::<Cpu>::new(k, &device));
        let sc = score(&t.model, &test_lists, dk.as_ref(), 256, &device);
        metrics(&test_lists, &sc, &[5]).means()[0].ndcg
    };
    let (base, kar, noisy) = (ndcg(None), ndcg(Some(&truth)), ndcg(Some(&noise)));
    eprintln!("NDCG@5 base {base:.3} knowledge {kar:.3} noise {noisy:.3}");
    assert!(kar > base + 0.1, "knowledge {kar:.3} vs base {base:.3}");
    assert!(noisy < base + 0.03, "noise {noisy:.3} vs base {base:.3}");
}
