//! GGUF files (llama.cpp's model format, versions 2 and 3): metadata, tensor directory and
//! tensor bytes, plus a small writer the tests use to make tiny models.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::quant::{self, GgmlType};
use crate::models::mapped::FileBytes;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A reason a GGUF file cannot be read, with the file and the byte offset where reading stopped.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}{}", path.display(), offset.map(|o| format!(" (at byte {o})")).unwrap_or_default())]
pub struct GgufError {
    pub path: PathBuf,
    pub offset: Option<u64>,
    pub message: String,
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, for any integer type that holds a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// The value as a float, for float and integer types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v as f64),
            Value::I16(v) => Some(v as f64),
            Value::I32(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "[{} values]", a.len()),
            Value::Bool(b) => write!(f, "{b}"),
            v => write!(f, "{}", v.as_f64().unwrap_or(f64::NAN)),
        }
    }
}

/// Where one tensor lives in the file and how it is stored.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the fastest-varying (the row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the tensor data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// The shape in row-major (PyTorch) order: the reverse of `dims`.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A GGUF file (memory-mapped: see `models::mapped`).
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    bytes: FileBytes,
    data_start: u64,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, message: impl Into<String>) -> GgufError {
        GgufError { path: self.path.to_path_buf(), offset: Some(self.pos as u64), message: message.into() }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        if self.bytes.len().saturating_sub(self.pos) < n {
            return Err(self.err(format!("file ends early: wanted {n} more bytes (truncated download?)")));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.u64()?;
        let n = usize::try_from(n).ok().filter(|&n| n <= self.bytes.len()).ok_or_else(|| self.err(format!("string length {n} is larger than the file")))?;
        let raw = self.take(n)?;
        // Some converters write vocabulary entries that are not valid UTF-8; keep them lossily.
        Ok(String::from_utf8_lossy(raw).into_owned())
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.arr::<1>()?[0]),
            1 => Value::I8(self.arr::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr()?)),
            3 => Value::I16(i16::from_le_bytes(self.arr()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.arr()?)),
            6 => Value::F32(f32::from_le_bytes(self.arr()?)),
            7 => match self.arr::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("bool value {b} is neither 0 nor 1"))),
            },
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 4 {
                    return Err(self.err("arrays nested deeper than 4 levels"));
                }
                let item = self.u32()?;
                let n = self.u64()?;
                if n > self.bytes.len() as u64 {
                    return Err(self.err(format!("array length {n} is larger than the file")));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(item, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.arr()?)),
            12 => Value::F64(f64::from_le_bytes(self.arr()?)),
            t => return Err(self.err(format!("unknown metadata value type {t}"))),
        })
    }
}

impl Gguf {
    /// Reads and checks a GGUF file: header, metadata, tensor directory, and that every
    /// tensor's bytes lie inside the file.
    pub fn open(path: &Path) -> Result<Gguf, GgufError> {
        let bytes = crate::models::mapped::open(path).map_err(|e| GgufError { path: path.to_path_buf(), offset: None, message: e.to_string() })?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF bytes; `path` names them in errors.
    pub fn parse(path: &Path, bytes: impl Into<FileBytes>) -> Result<Gguf, GgufError> {
        let bytes = bytes.into();
        let mut r = Reader { bytes: &bytes, pos: 0, path };
        if r.take(4).ok() != Some(MAGIC.as_slice()) {
            return Err(GgufError { path: path.to_path_buf(), offset: None, message: "not a GGUF file (it does not start with \"GGUF\")".into() });
        }
        let version = r.u32()?;
        if version == 1 {
            return Err(r.err("GGUF version 1 is not supported (convert it with a current llama.cpp)"));
        }
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() <= 3 { " (a big-endian GGUF: not supported)" } else { "" };
            return Err(r.err(format!("GGUF version {version} is not supported; versions 2 and 3 are{hint}")));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let v = r.value(ty, 0).map_err(|mut e| {
                e.message = format!("metadata `{key}`: {}", e.message);
                e
            })?;
            metadata.insert(key, v);
        }
        if n_tensors > bytes.len() as u64 {
            return Err(r.err(format!("tensor count {n_tensors} is larger than the file")));
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return Err(r.err(format!("tensor `{name}` has {n_dims} dimensions; 1 to 4 expected")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            let ty_id = r.u32()?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| r.err(unread_type(&name, ty_id)))?;
            let offset = r.u64()?;
            tensors.push(TensorInfo { name, dims, ty, offset });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v.as_u64().filter(|a| *a > 0 && a.is_power_of_two()).ok_or_else(|| r.err(format!("general.alignment {v} is not a power of two")))?,
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let file = Gguf { path: path.to_path_buf(), version, metadata, tensors, bytes, data_start };
        for t in &file.tensors {
            let size = t.ty.bytes_for(t.elements()).ok_or_else(|| GgufError {
                path: path.to_path_buf(),
                offset: None,
                message: format!("tensor `{}` has {} elements, not a whole number of {:?} blocks", t.name, t.elements(), t.ty),
            })?;
            let end = file.data_start.checked_add(t.offset).and_then(|s| s.checked_add(size));
            if end.is_none_or(|e| e > file.bytes.len() as u64) {
                return Err(GgufError {
                    path: path.to_path_buf(),
                    offset: None,
                    message: format!("tensor `{}` lies past the end of the file ({} bytes; truncated download?)", t.name, file.bytes.len()),
                });
            }
        }
        Ok(file)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// How many tensors each storage type holds, most first: `Q5_0 ×166, F32 ×61, …` (what a
    /// quantisation such as `Q4_K_M` made of the model).
    pub fn type_counts(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for t in &self.tensors {
            let name = format!("{:?}", t.ty);
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.iter().map(|(n, c)| format!("{n} ×{c}")).collect::<Vec<_>>().join(", ")
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor, as stored.
    pub fn raw(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.data_start + t.offset) as usize;
        let size = t.ty.bytes_for(t.elements()).expect("checked when opened") as usize;
        &self.bytes[start..start + size]
    }

    /// A tensor dequantised to f32, in row-major order with shape `t.shape()`.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let t = self.tensor(name).ok_or_else(|| GgufError { path: self.path.clone(), offset: None, message: format!("no tensor `{name}`") })?;
        let values = quant::dequantize(t.ty, self.raw(t)).map_err(|m| GgufError { path: self.path.clone(), offset: None, message: format!("tensor `{name}`: {m}") })?;
        Ok((t.shape(), values))
    }
}

/// Why tensor `name`'s type id is not read: the types llama.cpp writes that dagrun has no
/// decoding for (the lower-bit IQ, ternary and FP4 families) by name, with what to do instead.
fn unread_type(name: &str, id: u32) -> String {
    const NAMES: [(u32, &str); 11] =
        [(16, "IQ2_XXS"), (17, "IQ2_XS"), (18, "IQ3_XXS"), (19, "IQ1_S"), (21, "IQ3_S"), (22, "IQ2_S"), (29, "IQ1_M"), (34, "TQ1_0"), (35, "TQ2_0"), (39, "MXFP4"), (40, "NVFP4")];
    match NAMES.iter().find(|(i, _)| *i == id) {
        Some((_, ty)) => {
            let supported = quant::SUPPORTED;
            format!("tensor `{name}` is stored as {ty} (GGML type {id}), which dagrun does not read; it reads {supported} (requantise the model with llama.cpp's llama-quantize, to Q4_K_M say)")
        }
        None => format!("tensor `{name}` has unknown GGML type {id}"),
    }
}

/// Writes GGUF v3 files: metadata plus F32, F16, Q8_0, Q4_0 or Q4_1 tensors from values, or
/// tensors of any type already encoded (what the tests need to make tiny models).
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds a tensor given in row-major order with `shape` (PyTorch order), stored as `ty`
    /// (F32, F16, or Q8_0 / Q4_0 / Q4_1 quantised as ggml's reference quantisers do).
    pub fn tensor(&mut self, name: &str, shape: &[usize], values: &[f32], ty: GgmlType) -> &mut Self {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "tensor {name}: shape and values disagree");
        let bytes = match ty {
            GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            other => quant::quantize(other, values).unwrap_or_else(|e| panic!("tensor {name}: {e}")),
        };
        self.encoded(name, shape, ty, bytes)
    }

    /// Adds a tensor already encoded as `ty` (row-major, `shape` in PyTorch order).
    pub fn encoded(&mut self, name: &str, shape: &[usize], ty: GgmlType, bytes: Vec<u8>) -> &mut Self {
        assert_eq!(ty.bytes_for(shape.iter().product::<usize>() as u64), Some(bytes.len() as u64), "tensor {name}: shape and bytes disagree");
        self.tensors.push((name.to_string(), shape.to_vec(), ty, bytes));
        self
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
        fn value(out: &mut Vec<u8>, v: &Value) {
            match v {
                Value::U8(x) => out.push(*x),
                Value::I8(x) => out.push(*x as u8),
                Value::U16(x) => out.extend(x.to_le_bytes()),
                Value::I16(x) => out.extend(x.to_le_bytes()),
                Value::U32(x) => out.extend(x.to_le_bytes()),
                Value::I32(x) => out.extend(x.to_le_bytes()),
                Value::F32(x) => out.extend(x.to_le_bytes()),
                Value::Bool(x) => out.push(*x as u8),
                Value::Str(s) => string(out, s),
                Value::Array(a) => {
                    out.extend(a.first().map_or(4, Value::type_id).to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    a.iter().for_each(|x| value(out, x));
                }
                Value::U64(x) => out.extend(x.to_le_bytes()),
                Value::I64(x) => out.extend(x.to_le_bytes()),
                Value::F64(x) => out.extend(x.to_le_bytes()),
            }
        }
        let mut out = Vec::new();
        out.extend(MAGIC);
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            string(&mut out, k);
            out.extend(v.type_id().to_le_bytes());
            value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, shape, ty, bytes) in &self.tensors {
            string(&mut out, name);
            out.extend((shape.len() as u32).to_le_bytes());
            shape.iter().rev().for_each(|d| out.extend((*d as u64).to_le_bytes()));
            out.extend(ty.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + bytes.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        }
        let pad = |out: &mut Vec<u8>| out.resize((out.len() as u64).div_ceil(DEFAULT_ALIGNMENT) as usize * DEFAULT_ALIGNMENT as usize, 0);
        pad(&mut out);
        for (_, _, _, bytes) in &self.tensors {
            out.extend(bytes);
            pad(&mut out);
        }
        let mut f = std::fs::File::create(path)?;
        f.write_all(&out)?;
        f.sync_all()
    }
}
