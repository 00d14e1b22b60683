//! BERT weights by Hugging Face name into a [`Bert`] module. Checkpoints name them with or
//! without a `bert.` prefix (bert-base-uncased has one, sentence-transformers' MiniLM not), and
//! old ones call layer-norm parameters `gamma`/`beta`; task heads (`cls.*`, `pooler.*`) are
//! ignored.

use burn::module::Param;
use burn::nn::LayerNormConfig;
use burn::prelude::*;
use burn::tensor::TensorData;

use super::bert::{Bert, Layer};
use super::config::{Activation, BertConfig};
use crate::models::tensors::{HostTensor, Weights};

/// Looks weights up by their un-prefixed name, checking shapes against the config.
struct Lookup<'a> {
    w: &'a Weights,
    prefix: &'static str,
}

impl<'a> Lookup<'a> {
    fn new(w: &'a Weights) -> Lookup<'a> {
        let prefix = if w.contains_key("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        Lookup { w, prefix }
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<&'a HostTensor, String> {
        let full = format!("{}{name}", self.prefix);
        // Old checkpoints: LayerNorm.gamma / LayerNorm.beta.
        let legacy = full.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta");
        let t = self.w.get(&full).or_else(|| self.w.get(&legacy)).ok_or_else(|| format!("weight `{full}` is missing"))?;
        if t.shape != shape {
            return Err(format!("weight `{full}` has shape {:?}; {:?} expected from the config", t.shape, shape));
        }
        Ok(t)
    }
}

/// Checks that every weight the config needs is there with its shape, without building.
pub fn check(c: &BertConfig, w: &Weights) -> Result<(), String> {
    let l = Lookup::new(w);
    let (h, i) = (c.hidden_size, c.intermediate_size);
    l.get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?;
    l.get("embeddings.position_embeddings.weight", &[c.max_position_embeddings, h])?;
    l.get("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h])?;
    for n in ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"] {
        l.get(n, &[h])?;
    }
    for k in 0..c.num_hidden_layers {
        let p = |s: &str| format!("encoder.layer.{k}.{s}");
        for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            l.get(&p(&format!("{m}.weight")), &[h, h])?;
            l.get(&p(&format!("{m}.bias")), &[h])?;
        }
        l.get(&p("intermediate.dense.weight"), &[i, h])?;
        l.get(&p("intermediate.dense.bias"), &[i])?;
        l.get(&p("output.dense.weight"), &[h, i])?;
        for n in ["output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"] {
            l.get(&p(n), &[h])?;
        }
    }
    Ok(())
}

/// Builds the module on `device`; a missing or misshapen weight is an error naming it.
pub fn build<B: Backend>(c: &BertConfig, w: &Weights, device: &B::Device) -> Result<Bert<B>, String> {
    check(c, w)?;
    let l = Lookup::new(w);
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let get = |name: &str, shape: &[usize]| l.get(name, shape).expect("checked above");
    let t2 = |data: Vec<f32>, shape: [usize; 2]| Param::from_tensor(Tensor::<B, 2>::from_data(TensorData::new(data, shape), device));
    let t1 = |data: Vec<f32>| {
        let n = data.len();
        Param::from_tensor(Tensor::<B, 1>::from_data(TensorData::new(data, [n]), device))
    };
    let norm = |name: &str| {
        let mut n = LayerNormConfig::new(h).with_epsilon(c.layer_norm_eps).init::<B>(device);
        n.gamma = t1(get(&format!("{name}.weight"), &[h]).data.clone());
        n.beta = Some(t1(get(&format!("{name}.bias"), &[h]).data.clone()));
        n
    };
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for k in 0..c.num_hidden_layers {
        let p = |s: &str| format!("encoder.layer.{k}.{s}");
        let [q, kk, v] = ["query", "key", "value"].map(|m| get(&p(&format!("attention.self.{m}.weight")), &[h, h]));
        let bias: Vec<f32> = ["query", "key", "value"].iter().flat_map(|m| get(&p(&format!("attention.self.{m}.bias")), &[h]).data.iter().copied()).collect();
        let stacked: Vec<f32> = [q, kk, v].iter().flat_map(|t| t.data.iter().copied()).collect();
        layers.push(Layer {
            wqkv: t2(stacked, [3 * h, h]),
            bqkv: t1(bias),
            wo: t2(get(&p("attention.output.dense.weight"), &[h, h]).data.clone(), [h, h]),
            bo: t1(get(&p("attention.output.dense.bias"), &[h]).data.clone()),
            attn_norm: norm(&p("attention.output.LayerNorm")),
            w_in: t2(get(&p("intermediate.dense.weight"), &[i, h]).data.clone(), [i, h]),
            b_in: t1(get(&p("intermediate.dense.bias"), &[i]).data.clone()),
            w_out: t2(get(&p("output.dense.weight"), &[h, i]).data.clone(), [h, i]),
            b_out: t1(get(&p("output.dense.bias"), &[h]).data.clone()),
            out_norm: norm(&p("output.LayerNorm")),
        });
    }
    let token_type = get("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h]);
    Ok(Bert {
        word: t2(get("embeddings.word_embeddings.weight", &[c.vocab_size, h]).data.clone(), [c.vocab_size, h]),
        position: t2(get("embeddings.position_embeddings.weight", &[c.max_position_embeddings, h]).data.clone(), [c.max_position_embeddings, h]),
        token_type: t2(token_type.data[..h].to_vec(), [1, h]),
        embed_norm: norm("embeddings.LayerNorm"),
        layers,
        heads: c.num_attention_heads,
        gelu_tanh: c.activation == Activation::GeluTanh,
    })
}
