//! BERT weights by Hugging Face name into a [`Bert`] module, read from the memory-mapped
//! safetensors one weight at a time (so loading holds one f32 weight beside the module, not a
//! second copy of them all). Checkpoints name them with or without a `bert.` (`roberta.`) prefix
//! (bert-base-uncased has one, sentence-transformers' MiniLM not), and old ones call
//! layer-norm parameters `gamma`/`beta`; task heads (`cls.*`, `pooler.*`) are ignored.

use burn::module::Param;
use burn::nn::LayerNormConfig;
use burn::prelude::*;
use burn::tensor::TensorData;

use super::bert::{Bert, Layer};
use super::config::{Activation, BertConfig, EncoderFamily};
use crate::models::tensors::{HostTensor, Safetensors};

/// Looks weights up by their un-prefixed BERT name, checking shapes against the config.
struct Lookup<'a> {
    w: &'a Safetensors,
    prefix: &'static str,
    /// MPNet and DistilBERT name a layer's weights otherwise.
    family: EncoderFamily,
}

/// BERT's names within a layer, and MPNet's and DistilBERT's for the same weights (in this
/// order: `attention.output.dense` before `output.dense`).
const RENAMED: [(&str, &str, &str); 8] = [
    ("attention.self.query", "attention.attn.q", "attention.q_lin"),
    ("attention.self.key", "attention.attn.k", "attention.k_lin"),
    ("attention.self.value", "attention.attn.v", "attention.v_lin"),
    ("attention.output.dense", "attention.attn.o", "attention.out_lin"),
    ("attention.output.LayerNorm", "attention.LayerNorm", "sa_layer_norm"),
    ("intermediate.dense", "intermediate.dense", "ffn.lin1"),
    ("output.dense", "output.dense", "ffn.lin2"),
    ("output.LayerNorm", "output.LayerNorm", "output_layer_norm"),
];

impl<'a> Lookup<'a> {
    fn new(w: &'a Safetensors, c: &BertConfig) -> Lookup<'a> {
        let prefix = ["bert.", "roberta.", "mpnet.", "distilbert."].into_iter().find(|p| w.contains(&format!("{p}embeddings.word_embeddings.weight"))).unwrap_or("");
        Lookup { w, prefix, family: c.family }
    }

    /// The stored name of weight `name` (old checkpoints: LayerNorm.gamma / LayerNorm.beta;
    /// MPNet's and DistilBERT's names, see [`RENAMED`]), checked to have `shape`.
    fn name(&self, name: &str, shape: &[usize]) -> Result<String, String> {
        let name = match (self.family, name.strip_prefix("encoder.layer.").and_then(|rest| rest.split_once('.'))) {
            (EncoderFamily::Mpnet | EncoderFamily::DistilBert, Some((k, within))) => {
                let distil = self.family == EncoderFamily::DistilBert;
                let within = RENAMED
                    .iter()
                    .find_map(|(bert, mpnet, distilbert)| within.strip_prefix(bert).map(|rest| format!("{}{rest}", if distil { distilbert } else { mpnet })))
                    .unwrap_or_else(|| within.to_string());
                format!("{}.{k}.{within}", if distil { "transformer.layer" } else { "encoder.layer" })
            }
            _ => name.to_string(),
        };
        let full = format!("{}{name}", self.prefix);
        let legacy = full.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta");
        let stored = [&full, &legacy].into_iter().find(|n| self.w.contains(n)).ok_or_else(|| format!("weight `{full}` is missing"))?;
        let found = self.w.shape(stored).unwrap_or_default();
        if found != shape {
            return Err(format!("weight `{full}` has shape {found:?}; {shape:?} expected from the config"));
        }
        Ok(stored.clone())
    }

    /// Weight `name` as f32, read now.
    fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor, String> {
        self.w.get(&self.name(name, shape)?)
    }
}

/// Checks that every weight the config needs is there with its shape, without reading them.
pub fn check(c: &BertConfig, w: &Safetensors) -> Result<(), String> {
    let l = Lookup::new(w, c);
    let (h, i) = (c.hidden_size, c.intermediate_size);
    l.name("embeddings.word_embeddings.weight", &[c.vocab_size, h])?;
    l.name("embeddings.position_embeddings.weight", &[c.max_position_embeddings, h])?;
    if let Some(buckets) = c.relative_attention_buckets {
        l.name("encoder.relative_attention_bias.weight", &[buckets, c.num_attention_heads])?;
    }
    if c.family.token_types() {
        l.name("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h])?;
    }
    for n in ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"] {
        l.name(n, &[h])?;
    }
    for k in 0..c.num_hidden_layers {
        let p = |s: &str| format!("encoder.layer.{k}.{s}");
        for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            l.name(&p(&format!("{m}.weight")), &[h, h])?;
            l.name(&p(&format!("{m}.bias")), &[h])?;
        }
        l.name(&p("intermediate.dense.weight"), &[i, h])?;
        l.name(&p("intermediate.dense.bias"), &[i])?;
        l.name(&p("output.dense.weight"), &[h, i])?;
        for n in ["output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"] {
            l.name(&p(n), &[h])?;
        }
    }
    Ok(())
}

/// Builds the module on `device`; a missing or misshapen weight is an error naming it.
pub fn build<B: Backend>(c: &BertConfig, w: &Safetensors, device: &B::Device) -> Result<Bert<B>, String> {
    check(c, w)?;
    let l = Lookup::new(w, c);
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let get = |name: &str, shape: &[usize]| l.get(name, shape).expect("checked above");
    let t2 = |data: Vec<f32>, shape: [usize; 2]| Param::from_tensor(Tensor::<B, 2>::from_data(TensorData::new(data, shape), device));
    let t1 = |data: Vec<f32>| {
        let n = data.len();
        Param::from_tensor(Tensor::<B, 1>::from_data(TensorData::new(data, [n]), device))
    };
    let norm = |name: &str| {
        let mut n = LayerNormConfig::new(h).with_epsilon(c.layer_norm_eps).init::<B>(device);
        n.gamma = t1(get(&format!("{name}.weight"), &[h]).data);
        n.beta = Some(t1(get(&format!("{name}.bias"), &[h]).data));
        n
    };
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for k in 0..c.num_hidden_layers {
        let p = |s: &str| format!("encoder.layer.{k}.{s}");
        let [q, kk, v] = ["query", "key", "value"].map(|m| get(&p(&format!("attention.self.{m}.weight")), &[h, h]));
        let bias: Vec<f32> = ["query", "key", "value"].iter().flat_map(|m| get(&p(&format!("attention.self.{m}.bias")), &[h]).data).collect();
        let stacked: Vec<f32> = [q, kk, v].iter().flat_map(|t| t.data.iter().copied()).collect();
        layers.push(Layer {
            wqkv: t2(stacked, [3 * h, h]),
            bqkv: t1(bias),
            wo: t2(get(&p("attention.output.dense.weight"), &[h, h]).data, [h, h]),
            bo: t1(get(&p("attention.output.dense.bias"), &[h]).data),
            attn_norm: norm(&p("attention.output.LayerNorm")),
            w_in: t2(get(&p("intermediate.dense.weight"), &[i, h]).data, [i, h]),
            b_in: t1(get(&p("intermediate.dense.bias"), &[i]).data),
            w_out: t2(get(&p("output.dense.weight"), &[h, i]).data, [h, i]),
            b_out: t1(get(&p("output.dense.bias"), &[h]).data),
            out_norm: norm(&p("output.LayerNorm")),
        });
    }
    // MPNet and DistilBERT have no token types: a zero embedding.
    let token_type = if c.family.token_types() { get("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, h]).data[..h].to_vec() } else { vec![0f32; h] };
    let relative_bias = c.relative_attention_buckets.map(|buckets| t2(get("encoder.relative_attention_bias.weight", &[buckets, c.num_attention_heads]).data, [buckets, c.num_attention_heads]));
    Ok(Bert {
        word: t2(get("embeddings.word_embeddings.weight", &[c.vocab_size, h]).data, [c.vocab_size, h]),
        position: t2(get("embeddings.position_embeddings.weight", &[c.max_position_embeddings, h]).data, [c.max_position_embeddings, h]),
        token_type: t2(token_type, [1, h]),
        embed_norm: norm("embeddings.LayerNorm"),
        layers,
        heads: c.num_attention_heads,
        gelu_tanh: c.activation == Activation::GeluTanh,
        position_offset: c.position_offset,
        relative_bias,
    })
}
