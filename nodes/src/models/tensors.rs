//! Dense host-side weights by name, as Hugging Face checkpoints store them: reading and writing
//! safetensors (F32, F16, BF16), and the layout changes model builders need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A dense f32 tensor on the host, row-major.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Weights by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, ...).
pub type Weights = BTreeMap<String, HostTensor>;

/// The safetensors files of a Hugging Face model directory: `model.safetensors`, or the shards
/// named by `model.safetensors.index.json`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| format!("{}: no model.safetensors or model.safetensors.index.json", dir.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| format!("{}: no weight_map", index.display()))?;
    let mut files: Vec<PathBuf> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Reads every floating-point tensor of the given safetensors files (F32, F16 or BF16) as f32.
/// Integer and boolean tensors are buffers, not weights (BERT checkpoints carry an I64
/// `embeddings.position_ids`), and are skipped; other float types are an error.
pub fn from_safetensors(files: &[PathBuf]) -> Result<Weights, String> {
    use safetensors::{Dtype, SafeTensors};
    let mut w = Weights::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: not a safetensors file: {e}", f.display()))?;
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                Dtype::BOOL | Dtype::U8 | Dtype::I8 | Dtype::I16 | Dtype::U16 | Dtype::I32 | Dtype::U32 | Dtype::I64 | Dtype::U64 => continue,
                other => return Err(format!("{}: tensor `{name}` has dtype {other:?}; F32, F16 or BF16 expected", f.display())),
            };
            w.insert(name, HostTensor { shape: view.shape().to_vec(), data });
        }
    }
    Ok(w)
}

/// Writes weights as one F32 safetensors file.
pub fn write_safetensors(w: &Weights, path: &Path, metadata: Option<std::collections::HashMap<String, String>>) -> Result<(), String> {
    write_safetensors_as(w, path, metadata, false)
}

/// Writes weights as one safetensors file, in BF16 (half the size, as large checkpoints ship)
/// when `bf16`, else F32.
pub fn write_safetensors_as(w: &Weights, path: &Path, metadata: Option<std::collections::HashMap<String, String>>, bf16: bool) -> Result<(), String> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let encode = |v: &[f32]| -> Vec<u8> {
        if bf16 {
            v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect()
        } else {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
    };
    let dtype = if bf16 { Dtype::BF16 } else { Dtype::F32 };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = w.iter().map(|(n, t)| (n.clone(), encode(&t.data), t.shape.clone())).collect();
    let views: Vec<(String, TensorView<'_>)> =
        bytes.iter().map(|(n, b, s)| (n.clone(), TensorView::new(dtype, s.clone(), b).expect("sizes agree"))).collect();
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// [in, out] from an [out, in] matrix.
pub fn transpose(t: &HostTensor) -> Vec<f32> {
    fuse_transposed(&[t])
}

/// [in, out₁ + out₂ + …] from several [outᵢ, in] matrices: fused projections.
pub fn fuse_transposed(parts: &[&HostTensor]) -> Vec<f32> {
    let inner = parts[0].shape[1];
    let total: usize = parts.iter().map(|p| p.shape[0]).sum();
    let mut out = vec![0f32; inner * total];
    let mut col0 = 0;
    for p in parts {
        let rows = p.shape[0];
        for o in 0..rows {
            for i in 0..inner {
                out[i * total + col0 + o] = p.data[o * inner + i];
            }
        }
        col0 += rows;
    }
    out
}
