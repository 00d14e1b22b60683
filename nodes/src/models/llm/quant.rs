//! GGML tensor types and dequantisation to f32, bit-for-bit as the `gguf` Python package
//! computes it (checked against fixtures made with it: `fixtures/llm/`).

use half::{bf16, f16};
use rayon::prelude::*;

/// GGML tensor storage types (the ids GGUF files use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

/// Every type with its GGUF id: the one table both directions read.
const IDS: [(GgmlType, u32); 20] = {
    use GgmlType::*;
    [
        (F32, 0),
        (F16, 1),
        (Q4_0, 2),
        (Q4_1, 3),
        (Q5_0, 6),
        (Q5_1, 7),
        (Q8_0, 8),
        (Q8_1, 9),
        (Q2_K, 10),
        (Q3_K, 11),
        (Q4_K, 12),
        (Q5_K, 13),
        (Q6_K, 14),
        (Q8_K, 15),
        (I8, 24),
        (I16, 25),
        (I32, 26),
        (I64, 27),
        (F64, 28),
        (BF16, 30),
    ]
};

impl GgmlType {
    pub fn from_id(id: u32) -> Option<GgmlType> {
        IDS.iter().find(|(_, i)| *i == id).map(|(t, _)| *t)
    }

    pub fn id(self) -> u32 {
        IDS.iter().find(|(t, _)| *t == self).map(|(_, i)| *i).expect("every type is in IDS")
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
        }
    }

    /// Bytes that `elements` values take, or None when they are not a whole number of blocks.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let (n, size) = self.block();
        (elements % n == 0).then(|| elements / n * size)
    }
}

fn h(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantises `raw` (a whole number of blocks of `ty`) to f32.
pub fn dequantize(ty: GgmlType, raw: &[u8]) -> Result<Vec<f32>, String> {
    let (n, size) = ty.block();
    let (n, size) = (n as usize, size as usize);
    if raw.len() % size != 0 {
        return Err(format!("{} bytes are not a whole number of {ty:?} blocks of {size} bytes", raw.len()));
    }
    let mut out = vec![0f32; raw.len() / size * n];
    // Blocks are independent: dequantise groups of them in parallel.
    let per_task = 256usize.div_ceil(n).max(1) * 16;
    let kernel: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = h(b),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q6_K => q6_k,
        other => return Err(format!("GGML type {other:?} is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q6_K)")),
    };
    out.par_chunks_mut(n * per_task).zip(raw.par_chunks(size * per_task)).for_each(|(y, b)| {
        for (yb, bb) in y.chunks_exact_mut(n).zip(b.chunks_exact(size)) {
            kernel(bb, yb);
        }
    });
    Ok(out)
}

/// Quantises row-major values (a whole number of 32-value blocks) to Q8_0, Q4_0 or Q4_1 the
/// way ggml's reference quantisers do, so tests can write block-coded GGUF files.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, String> {
    if !matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1) {
        return Err(format!("quantising to {ty:?} is not supported (Q8_0, Q4_0, Q4_1)"));
    }
    if values.len() % 32 != 0 {
        return Err(format!("{} values are not a whole number of 32-value blocks", values.len()));
    }
    let mut out = Vec::with_capacity(values.len() / 32 * ty.block().1 as usize);
    let inv = |d: f32| if d == 0.0 { 0.0 } else { 1.0 / d };
    for x in values.chunks_exact(32) {
        match ty {
            GgmlType::Q8_0 => {
                let d = x.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(x.iter().map(|v| (v * inv(d)).round() as i8 as u8));
            }
            GgmlType::Q4_0 => {
                // The value of largest magnitude, with its sign, maps to −8.
                let max = x.iter().fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
                let d = max / -8.0;
                out.extend(f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * inv(d) + 8.5) as i32).clamp(0, 15) as u8;
                out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
            }
            _ => {
                let (min, max) = x.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let d = (max - min) / 15.0;
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * inv(d) + 0.5) as i32).clamp(0, 15) as u8;
                out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
            }
        }
    }
    Ok(out)
}

/// Q8_0: f16 scale `d`, 32 signed bytes; x = d·q.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = h(&b[0..2]);
    for (yi, q) in y.iter_mut().zip(&b[2..34]) {
        *yi = d * (*q as i8) as f32;
    }
}

/// Q4_0: f16 scale `d`, 16 bytes of nibbles (low nibbles first half, high second); x = d·(q−8).
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = h(&b[0..2]);
    for (j, q) in b[2..18].iter().enumerate() {
        y[j] = d * ((q & 0x0F) as i32 - 8) as f32;
        y[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
    }
}

/// Q4_1: f16 scale `d` and minimum `m`, 16 bytes of nibbles; x = d·q + m.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (h(&b[0..2]), h(&b[2..4]));
    for (j, q) in b[4..20].iter().enumerate() {
        y[j] = d * (q & 0x0F) as f32 + m;
        y[j + 16] = d * (q >> 4) as f32 + m;
    }
}

/// Q6_K: 256 values as 6-bit codes (low 4 bits in `ql`, high 2 in `qh`), 16 int8 sub-block
/// scales, an f16 super-scale `d`; x = (d·scale)·(q−32).
fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = h(&b[208..210]);
    for half in 0..2 {
        let (ql, qh) = (&ql[half * 64..half * 64 + 64], &qh[half * 32..half * 32 + 32]);
        for e in 0..128 {
            let (l, group) = (e % 32, e / 32);
            let low = (ql[l + 32 * (group & 1)] >> (4 * (group >> 1))) & 0x0F;
            let high = (qh[l] >> (2 * group)) & 0x03;
            let q = (low | (high << 4)) as i32 - 32;
            let i = half * 128 + e;
            y[i] = (d * (sc[i / 16] as i8) as f32) * q as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        elements: usize,
        bytes: String,
        values: Vec<f64>,
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Every type we read dequantises exactly as the `gguf` package does.
    #[test]
    fn matches_the_gguf_package_bit_for_bit() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/llm/dequant.json");
        let cases: std::collections::BTreeMap<String, Case> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let types = [("F32", GgmlType::F32), ("F16", GgmlType::F16), ("BF16", GgmlType::BF16), ("Q8_0", GgmlType::Q8_0), ("Q4_0", GgmlType::Q4_0), ("Q4_1", GgmlType::Q4_1), ("Q6_K", GgmlType::Q6_K)];
        for (name, ty) in types {
            let case = cases.get(name).unwrap_or_else(|| panic!("fixture lacks {name}"));
            let got = dequantize(ty, &unhex(&case.bytes)).unwrap();
            assert_eq!(got.len(), case.elements, "{name}");
            for (i, (g, want)) in got.iter().zip(&case.values).enumerate() {
                assert_eq!(g.to_bits(), (*want as f32).to_bits(), "{name} element {i}: {g} != {want}");
            }
        }
    }

    #[test]
    fn quantised_blocks_come_back_within_a_step() {
        let values: Vec<f32> = (0..256).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        // Half a step, or for Q4_0 a whole one: its top code (7 steps) cannot reach +8 steps.
        for (ty, bound) in [(GgmlType::Q8_0, 0.5 / 127.0), (GgmlType::Q4_0, 1.0 / 8.0), (GgmlType::Q4_1, 0.5 * 2.0 / 15.0)] {
            let raw = quantize(ty, &values).unwrap();
            assert_eq!(raw.len() as u64, ty.bytes_for(256).unwrap(), "{ty:?}");
            let back = dequantize(ty, &raw).unwrap();
            let worst = values.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= bound * 1.01 + 1e-3, "{ty:?}: off by {worst}");
        }
        assert!(quantize(GgmlType::Q6_K, &values).unwrap_err().contains("not supported"));
        assert!(quantize(GgmlType::Q8_0, &values[..40]).unwrap_err().contains("whole number"));
    }

    #[test]
    fn partial_blocks_and_unsupported_types_are_errors() {
        assert!(dequantize(GgmlType::Q4_1, &[0u8; 21]).unwrap_err().contains("whole number"));
        assert!(dequantize(GgmlType::Q4_K, &[0u8; 144]).unwrap_err().contains("Q4_K is not supported"));
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::Q6_K.bytes_for(100), None);
        for (t, id) in IDS {
            assert_eq!((GgmlType::from_id(id), t.id()), (Some(t), id));
        }
        assert_eq!(GgmlType::from_id(4), None);
    }
}
