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
    Safetensors::open(files)?.all()
}

/// The weights of safetensors files, memory-mapped and converted to f32 one tensor at a time
/// as they are asked for: a model built from them holds one f32 tensor at a time beside what
/// it has built, not every weight (and not the files' bytes as a private copy).
pub struct Safetensors {
    files: Vec<crate::models::mapped::FileBytes>,
    /// Weight name -> (file, dtype, shape, byte range in the file).
    index: BTreeMap<String, (usize, safetensors::Dtype, Vec<usize>, std::ops::Range<usize>)>,
}

impl Safetensors {
    /// Maps the files and reads their headers. Integer and boolean tensors are skipped (buffers,
    /// not weights); a float type other than F32, F16 or BF16 is an error.
    pub fn open(files: &[PathBuf]) -> Result<Self, String> {
        use safetensors::{Dtype, SafeTensors};
        let mut index = BTreeMap::new();
        let mut mapped = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let bytes = crate::models::mapped::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let (header, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| format!("{}: not a safetensors file: {e}", f.display()))?;
            let data = 8 + header;
            for (name, info) in meta.tensors() {
                match info.dtype {
                    Dtype::F32 | Dtype::F16 | Dtype::BF16 => {}
                    Dtype::BOOL | Dtype::U8 | Dtype::I8 | Dtype::I16 | Dtype::U16 | Dtype::I32 | Dtype::U32 | Dtype::I64 | Dtype::U64 => continue,
                    other => return Err(format!("{}: tensor `{name}` has dtype {other:?}; F32, F16 or BF16 expected", f.display())),
                }
                let (a, b) = info.data_offsets;
                index.insert(name, (i, info.dtype, info.shape.clone(), data + a..data + b));
            }
            mapped.push(bytes);
        }
        Ok(Safetensors { files: mapped, index })
    }

    /// The weights' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Weight `name`'s shape, without reading it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|(_, _, shape, _)| shape.as_slice())
    }

    /// Every weight as f32.
    pub fn all(&self) -> Result<Weights, String> {
        self.names().map(|name| Ok((name.to_string(), self.get(name)?))).collect()
    }

    /// Weight `name` as f32.
    pub fn get(&self, name: &str) -> Result<HostTensor, String> {
        use safetensors::Dtype;
        let (file, dtype, shape, range) = self.index.get(name).ok_or_else(|| format!("weight `{name}` is missing"))?;
        let bytes = &self.files[*file];
        let raw = &bytes[range.clone()];
        let data: Vec<f32> = match dtype {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(format!("tensor `{name}` has dtype {other:?}; F32, F16 or BF16 expected")),
        };
        bytes.release(range.clone());
        Ok(HostTensor { shape: shape.clone(), data })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView<'_>)> = tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    /// Weights read one at a time from the mapped files are the values written, whatever the
    /// float type and shard; buffers are skipped; bad files and types are errors naming them.
    #[test]
    fn safetensors_weights_read_on_demand_from_shards() {
        let dir = tempfile::tempdir().unwrap();
        let values = [1.5f32, -2.25, 0.0, 3.0e-3, 7.0, -0.5];
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        write(
            &a,
            &[
                ("w32", Dtype::F32, vec![2, 3], values.iter().flat_map(|v| v.to_le_bytes()).collect()),
                ("ids", Dtype::I64, vec![2], [4i64, 5].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ],
        );
        write(
            &b,
            &[
                ("w16", Dtype::F16, vec![6], values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()),
                ("wb16", Dtype::BF16, vec![3, 2], values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect()),
            ],
        );
        let st = Safetensors::open(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(st.names().collect::<Vec<_>>(), ["w16", "w32", "wb16"]);
        assert!(st.contains("w32") && !st.contains("ids"));
        let w32 = st.get("w32").unwrap();
        assert_eq!((w32.shape.as_slice(), w32.data.as_slice()), ([2, 3].as_slice(), values.as_slice()));
        assert_eq!(st.get("wb16").unwrap().shape, [3, 2]);
        for name in ["w16", "wb16"] {
            let t = st.get(name).unwrap();
            assert!(t.data.iter().zip(&values).all(|(x, v)| (x - v).abs() <= 1e-2 * v.abs()), "{name}: {:?}", t.data);
        }
        // Read twice (its pages were released after the first read): the same values.
        assert_eq!(st.get("w32").unwrap().data, values);
        assert_eq!(from_safetensors(&[a.clone(), b]).unwrap()["w32"].data, values);
        assert!(st.get("w64").unwrap_err().contains("weight `w64` is missing"));

        let bad = dir.path().join("f64.safetensors");
        write(&bad, &[("w", Dtype::F64, vec![1], 1.0f64.to_le_bytes().to_vec())]);
        let e = Safetensors::open(&[bad]).err().unwrap();
        assert!(e.contains("f64.safetensors: tensor `w` has dtype F64; F32, F16 or BF16 expected"), "{e}");
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &std::fs::read(&a).unwrap()[..40]).unwrap();
        assert!(Safetensors::open(&[cut]).err().unwrap().contains("cut.safetensors: not a safetensors file"));
        let empty = dir.path().join("empty.safetensors");
        std::fs::write(&empty, b"").unwrap();
        assert!(Safetensors::open(&[empty]).err().unwrap().contains("empty.safetensors: not a safetensors file"));
        assert!(Safetensors::open(&[dir.path().join("absent.safetensors")]).err().unwrap().contains("absent.safetensors"));
    }
}
