//! BERT in Burn, generic over the backend: token + position + token-type embeddings, post-LN
//! encoder layers (self-attention, GELU feed-forward), and pooling into one vector per text;
//! RoBERTa's positions past the padding id and MPNet's relative-position attention bias where
//! a model has them.
//! `forward` does no I/O; weights come from [`super::weights`].

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::TensorData;

use crate::models::cpu;
use crate::models::ops::{head_major, token_major};

/// One encoder layer.
#[derive(Module, Debug)]
pub struct Layer<B: Backend> {
    /// [3 · hidden, hidden]: query, key and value projections stacked. Every weight matrix is
    /// [out, in], as checkpoints store it (the CPU matmul reads that layout fastest).
    pub wqkv: Param<Tensor<B, 2>>,
    pub bqkv: Param<Tensor<B, 1>>,
    /// [hidden, hidden]: the attention output projection.
    pub wo: Param<Tensor<B, 2>>,
    pub bo: Param<Tensor<B, 1>>,
    pub attn_norm: LayerNorm<B>,
    /// [intermediate, hidden].
    pub w_in: Param<Tensor<B, 2>>,
    pub b_in: Param<Tensor<B, 1>>,
    /// [hidden, intermediate].
    pub w_out: Param<Tensor<B, 2>>,
    pub b_out: Param<Tensor<B, 1>>,
    pub out_norm: LayerNorm<B>,
}

/// The encoder.
#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    /// [vocab, hidden].
    pub word: Param<Tensor<B, 2>>,
    /// [max_positions, hidden].
    pub position: Param<Tensor<B, 2>>,
    /// [1, hidden]: the token-type embedding of type 0 (single texts use no other).
    pub token_type: Param<Tensor<B, 2>>,
    pub embed_norm: LayerNorm<B>,
    pub layers: Vec<Layer<B>>,
    pub heads: usize,
    /// The tanh approximation of GELU instead of the exact one.
    pub gelu_tanh: bool,
    /// The first token's row of `position` (RoBERTa: past the padding id's; BERT: 0).
    pub position_offset: usize,
    /// [buckets, heads]: MPNet's attention bias per relative-position bucket, or none.
    pub relative_bias: Option<Param<Tensor<B, 2>>>,
}

/// MPNet's (T5's bidirectional) bucket of a key `rel` positions after its query, of
/// `buckets`: exact for small distances, logarithmic up to 128, sign in the top half; in f32
/// as transformers computes it.
pub fn relative_bucket(rel: i64, buckets: usize) -> usize {
    let half = (buckets / 2) as i64;
    let n = -rel;
    let mut bucket = if n < 0 { half } else { 0 };
    let n = n.abs();
    let exact = half / 2;
    bucket += if n < exact {
        n
    } else {
        let large = exact + ((n as f32 / exact as f32).ln() / (128f64 / exact as f64).ln() as f32 * (half - exact) as f32) as i64;
        large.min(half - 1)
    };
    bucket as usize
}

/// How token vectors become one text vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over the text's tokens, [CLS] and [SEP] included (KAR, sentence-transformers).
    Mean,
    /// The [CLS] token's vector.
    Cls,
}

/// A padded batch of token id rows, built on the host.
pub struct Batch<B: Backend> {
    pub rows: usize,
    pub len: usize,
    /// [rows · len] token ids, row-major, padded with the pad id.
    pub ids: Tensor<B, 1, Int>,
    /// [rows · len] position ids (0, 1, ... per row).
    pub positions: Tensor<B, 1, Int>,
    /// [rows, 1, len, len]: true where a key is padding; None when no row is padded.
    pub mask: Option<Tensor<B, 4, Bool>>,
    /// [rows, 1, len]: each token's weight in the pooled vector.
    pub pool: Tensor<B, 3>,
    /// Each row's token count.
    pub lengths: Vec<usize>,
}

impl<B: Backend> Batch<B> {
    /// Pads `rows` (each at least one token) to the longest.
    pub fn new(rows: &[Vec<u32>], pad: u32, pooling: Pooling, device: &B::Device) -> Batch<B> {
        let n = rows.len();
        let len = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut ids = Vec::with_capacity(n * len);
        let mut weights = vec![0f32; n * len];
        for (r, row) in rows.iter().enumerate() {
            ids.extend(row.iter().map(|&t| t as i64));
            ids.extend(std::iter::repeat_n(pad as i64, len - row.len()));
            match pooling {
                Pooling::Mean => weights[r * len..r * len + row.len()].fill(1.0 / row.len().max(1) as f32),
                Pooling::Cls => weights[r * len] = 1.0,
            }
        }
        let positions: Vec<i64> = (0..n).flat_map(|_| 0..len as i64).collect();
        // The CPU kernel reads `lengths` instead of a mask.
        let padded = rows.iter().any(|r| r.len() < len) && !cpu::on_flex::<B>();
        let mask = padded.then(|| {
            let m: Vec<bool> = rows.iter().flat_map(|r| (0..len).flat_map(move |_| (0..len).map(move |k| k >= r.len()))).collect();
            Tensor::<B, 4, Bool>::from_data(TensorData::new(m, [n, 1, len, len]), device)
        });
        Batch {
            rows: n,
            len,
            ids: Tensor::from_data(TensorData::new(ids, [n * len]), device),
            positions: Tensor::from_data(TensorData::new(positions, [n * len]), device),
            mask,
            pool: Tensor::from_data(TensorData::new(weights, [n, 1, len]), device),
            lengths: rows.iter().map(Vec::len).collect(),
        }
    }
}

impl<B: Backend> Bert<B> {
    pub fn hidden_size(&self) -> usize {
        self.word.dims()[1]
    }

    /// The last layer's token vectors: [rows · len, hidden].
    pub fn forward(&self, batch: &Batch<B>) -> Tensor<B, 2> {
        let (b, s, h) = (batch.rows, batch.len, self.hidden_size());
        let (nh, hd) = (self.heads, h / self.heads);
        let positions = if self.position_offset > 0 { batch.positions.clone().add_scalar(self.position_offset as i64) } else { batch.positions.clone() };
        let x = self.word.val().select(0, batch.ids.clone()) + self.position.val().select(0, positions) + self.token_type.val();
        let mut x = self.embed_norm.forward(x);
        let host = cpu::on_flex::<B>();
        // MPNet: [heads, s, s] biases by relative position, the same in every layer and row.
        let bias: Option<Vec<f32>> = self.relative_bias.as_ref().map(|table| {
            let [buckets, _] = table.dims();
            let t: Vec<f32> = table.val().into_data().convert::<f32>().to_vec().expect("f32 data");
            let mut out = vec![0f32; nh * s * s];
            for i in 0..s {
                for j in 0..s {
                    let k = relative_bucket(j as i64 - i as i64, buckets);
                    for head in 0..nh {
                        out[(head * s + i) * s + j] = t[k * nh + head];
                    }
                }
            }
            out
        });
        // The CPU kernel reads the values; Burn's attention takes them as a tensor per row.
        let (bias, bias_tensor) = match bias {
            Some(v) if !host => (None, Some(Tensor::<B, 3>::from_data(TensorData::new(v, [nh, s, s]), &x.device()).unsqueeze::<4>().repeat_dim(0, b))),
            other => (other, None),
        };
        for l in &self.layers {
            let qkv = cpu::linear_t(x.clone(), l.wqkv.val(), Some(l.bqkv.val()));
            let att = if host {
                cpu::attention_qkv(qkv, &batch.lengths, s, nh, bias.as_deref())
            } else {
                let part = |i: usize| head_major(qkv.clone().narrow(1, i * h, h), b, s, nh, hd);
                token_major(attention(part(0), part(1), part(2), batch.mask.clone(), bias_tensor.clone(), AttentionModuleOptions::default()))
            };
            let att = cpu::linear_t(att, l.wo.val(), Some(l.bo.val()));
            x = l.attn_norm.forward(att + x);
            let inner = cpu::linear_t(x.clone(), l.w_in.val(), Some(l.b_in.val()));
            let inner = match (host, self.gelu_tanh) {
                (true, tanh) => cpu::gelu(inner, tanh),
                (false, true) => gelu_approximate(inner),
                (false, false) => gelu(inner),
            };
            let out = cpu::linear_t(inner, l.w_out.val(), Some(l.b_out.val()));
            x = l.out_norm.forward(out + x);
        }
        x
    }

    /// One vector per row, [rows, hidden]: the pooled last layer, L2-normalised if asked.
    pub fn encode(&self, batch: &Batch<B>, normalize: bool) -> Tensor<B, 2> {
        let (b, s, h) = (batch.rows, batch.len, self.hidden_size());
        let tokens = self.forward(batch).reshape([b, s, h]);
        let pooled = batch.pool.clone().matmul(tokens).reshape([b, h]);
        if !normalize {
            return pooled;
        }
        // As torch.nn.functional.normalize: x / max(‖x‖, 1e-12).
        let norm = pooled.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        pooled / norm
    }
}
