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
    IQ4_NL,
    IQ4_XS,
}

/// Every type with its GGUF id: the one table both directions read.
const IDS: [(GgmlType, u32); 22] = {
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
        (IQ4_NL, 20),
        (IQ4_XS, 23),
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
            IQ4_NL => (32, 18),
            IQ4_XS => (256, 136),
        }
    }

    /// The 32-value block types [`LegacyBlock`] reads: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL.
    pub fn is_legacy(self) -> bool {
        use GgmlType::*;
        matches!(self, Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | IQ4_NL)
    }

    /// Q2_K to Q6_K and IQ4_XS: 256-value super-blocks of integer-scaled sub-blocks (see
    /// [`KBlock`]).
    pub fn is_k_quant(self) -> bool {
        use GgmlType::*;
        matches!(self, Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_XS)
    }

    /// Bytes that `elements` values take, or None when they are not a whole number of blocks.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let (n, size) = self.block();
        (elements % n == 0).then(|| elements / n * size)
    }
}

/// The types [`dequantize`] reads: every type llama.cpp's quantisations from `Q2_K` to `Q8_0`
/// (`Q4_K_M` and the like) and `IQ4_NL`/`IQ4_XS` store a Llama model's weights in; not the
/// lower-bit IQ types, which need lattice tables.
pub const SUPPORTED: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";

/// Dequantises `raw` (a whole number of blocks of `ty`) to f32.
pub fn dequantize(ty: GgmlType, raw: &[u8]) -> Result<Vec<f32>, String> {
    let (n, size) = ty.block();
    let (n, size) = (n as usize, size as usize);
    if raw.len() % size != 0 {
        return Err(format!("{} bytes are not a whole number of {ty:?} blocks of {size} bytes", raw.len()));
    }
    let mut out = vec![0f32; raw.len() / size * n];
    if !(matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) || ty.is_legacy() || ty.is_k_quant()) {
        return Err(format!("GGML type {ty:?} is not supported (supported: {SUPPORTED})"));
    }
    // Blocks are independent: dequantise groups of them in parallel.
    let per_task = 256usize.div_ceil(n).max(1) * 16;
    let kernel = |b: &[u8], y: &mut [f32]| match ty {
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = f16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::BF16 => y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        t if t.is_legacy() => LegacyBlock::decode(t, b).expect("a 32-value type").values(y),
        t => KBlock::decode(t, b).expect("a K-quant").values(y),
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

/// Random blocks of `ty` for `elements` values (a whole number of blocks): random codes and
/// sub-block scales with f16 super-scales (and minimums) sized so that values stay within about
/// ±0.5. Tests use them for the types ggml's quantisers for are not reproduced here (Q5_0,
/// Q5_1 and the K-quants); the values come back through [`dequantize`].
pub fn random_blocks(ty: GgmlType, elements: usize, rng: &mut impl rand::Rng) -> Result<Vec<u8>, String> {
    use GgmlType::*;
    // Byte offsets of the f16 super-scale and minimum, and the largest |code · sub-scale|.
    let (halves, largest): (&[usize], f32) = match ty {
        Q5_0 => (&[0], 16.0),
        Q5_1 => (&[0, 2], 31.0),
        Q2_K => (&[80, 82], 15.0 * 3.0),
        Q3_K => (&[108], 32.0 * 4.0),
        Q4_K => (&[0, 2], 63.0 * 15.0),
        Q5_K => (&[0, 2], 63.0 * 31.0),
        Q6_K => (&[208], 128.0 * 32.0),
        IQ4_NL => (&[0], 127.0),
        IQ4_XS => (&[0], 32.0 * 127.0),
        other => return Err(format!("no random blocks for {other:?}")),
    };
    let (n, size) = ty.block();
    if elements as u64 % n != 0 {
        return Err(format!("{elements} values are not a whole number of {n}-value {ty:?} blocks"));
    }
    let mut out: Vec<u8> = (0..elements / n as usize * size as usize).map(|_| rng.random()).collect();
    for block in out.chunks_exact_mut(size as usize) {
        for &at in halves {
            let d = f16::from_f32((rng.random::<f32>() * 2.0 - 1.0) * 0.5 / largest);
            block[at..at + 2].copy_from_slice(&d.to_le_bytes());
        }
    }
    Ok(out)
}

/// IQ4_NL's and IQ4_XS's 16 code values: a nibble picks one, non-linearly spaced.
const IQ4_VALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// A 32-value block of the older types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, and IQ4_NL, whose
/// code is a nibble's entry in [`IQ4_VALUES`]) as integers: value j
/// is `d · codes[j] + m` (`d`, `m` f16 bits), with `m` −0 for the types without a minimum
/// (adding −0 changes nothing, so the value is the loader's `d · (q − offset)` bit for bit).
/// The CPU path packs a matrix whose parts mix these types from it (llama.cpp writes Q5_0 and
/// Q8_0 where a `Q4_K_M` model's rows are not whole 256-value blocks).
pub struct LegacyBlock {
    pub d: u16,
    pub m: u16,
    pub codes: [i8; 32],
}

impl LegacyBlock {
    /// Decodes one block of `ty` (`b`: its bytes); None for other types.
    pub fn decode(ty: GgmlType, b: &[u8]) -> Option<LegacyBlock> {
        const NEGATIVE_ZERO: u16 = 0x8000;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let mut block = LegacyBlock { d: u16_at(0), m: NEGATIVE_ZERO, codes: [0; 32] };
        // Nibbles: the low nibble of byte j for value j < 16, the high one of byte j − 16
        // after; fifth bits: bit j of a little-endian u32.
        let nibble = |at: usize, j: usize| if j < 16 { b[at + j] & 0x0F } else { b[at + j - 16] >> 4 };
        let fifth = |at: usize, j: usize| ((u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) >> j) & 1) as u8;
        for j in 0..32 {
            block.codes[j] = match ty {
                GgmlType::Q8_0 => b[2 + j] as i8,
                GgmlType::Q4_0 => nibble(2, j) as i8 - 8,
                GgmlType::Q4_1 => nibble(4, j) as i8,
                GgmlType::Q5_0 => (nibble(6, j) | fifth(2, j) << 4) as i8 - 16,
                GgmlType::Q5_1 => (nibble(8, j) | fifth(4, j) << 4) as i8,
                GgmlType::IQ4_NL => IQ4_VALUES[nibble(2, j) as usize],
                _ => return None,
            };
        }
        if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            block.m = u16_at(2);
        }
        Some(block)
    }

    /// Value j as [`dequantize`] gives it (d · code is exact in f32).
    pub fn value(&self, j: usize) -> f32 {
        f16::from_bits(self.d).to_f32() * self.codes[j] as f32 + f16::from_bits(self.m).to_f32()
    }

    /// All 32 values into `y`, as [`Self::value`] gives them.
    fn values(&self, y: &mut [f32]) {
        let (d, m) = (f16::from_bits(self.d).to_f32(), f16::from_bits(self.m).to_f32());
        for (yi, &q) in y.iter_mut().zip(&self.codes) {
            *yi = d * q as f32 + m;
        }
    }
}

/// A K-quant block (Q2_K to Q6_K, and IQ4_XS alike) as integers: 256 values in 16 sub-blocks of 16, value e
/// being `(d · scales[e/16]) · codes[e] − dmin · mins[e/16]` (`d`, `dmin` f16 bits; types
/// without minimums have `dmin` 0 and `mins` 0). Q4_K and Q5_K's 32-value sub-blocks appear
/// as two alike. One decoding of the bit layouts, which [`dequantize`] and the block-coded
/// packing of the CPU path (`rows_matmul`) both read, so the two agree bit for bit.
pub struct KBlock {
    pub d: u16,
    pub dmin: u16,
    pub scales: [i8; 16],
    pub mins: [u8; 16],
    pub codes: [i8; 256],
}

impl KBlock {
    /// Decodes one block of `ty` (`b`: its bytes); None when `ty` is not a K-quant.
    pub fn decode(ty: GgmlType, b: &[u8]) -> Option<KBlock> {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let mut k = KBlock { d: 0, dmin: 0, scales: [0; 16], mins: [0; 16], codes: [0; 256] };
        // The 2-bit code of value e in 64 code bytes: each half of the block is 32 bytes
        // holding four 32-value groups, group g in bits 2g..2g+2.
        let two_bits = |qs: &[u8], e: usize| (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 0x03;
        match ty {
            // 16 bytes of 4-bit scale (low) and minimum (high) per sub-block, 64 bytes of
            // 2-bit codes, d, dmin.
            GgmlType::Q2_K => {
                let (sc, qs) = (&b[0..16], &b[16..80]);
                (k.d, k.dmin) = (u16_at(80), u16_at(82));
                for (j, s) in sc.iter().enumerate() {
                    (k.scales[j], k.mins[j]) = ((s & 0x0F) as i8, s >> 4);
                }
                for (e, c) in k.codes.iter_mut().enumerate() {
                    *c = two_bits(qs, e) as i8;
                }
            }
            // 32 bytes of high bits (value e's in bit e/32 of byte e%32; a set bit means no
            // offset), 64 bytes of 2-bit low codes, 12 bytes of 16 6-bit scales (biased by
            // 32), d: code = low − 4·(1 − high).
            GgmlType::Q3_K => {
                let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
                k.d = u16_at(108);
                for (j, s) in k.scales.iter_mut().enumerate() {
                    // Low four bits: nibble j/8 of byte j%8; high two: pair j/4 of byte 8 + j%4.
                    let low = (sc[j % 8] >> (4 * (j / 8))) & 0x0F;
                    let high = (sc[8 + j % 4] >> (2 * (j / 4))) & 0x03;
                    *s = (low | (high << 4)) as i8 - 32;
                }
                for (e, c) in k.codes.iter_mut().enumerate() {
                    let offset = if (hmask[e % 32] >> (e / 32)) & 1 == 1 { 0 } else { 4 };
                    *c = two_bits(qs, e) as i8 - offset;
                }
            }
            // d, dmin, 12 bytes of eight 6-bit scales and minimums (32-value sub-blocks),
            // then for Q5_K 32 bytes of fifth bits (value l of sub-block j in bit j of byte
            // l), then 128 bytes of nibbles (sub-blocks 2c and 2c + 1 in the low and high
            // nibbles of bytes 32c..32c + 32).
            GgmlType::Q4_K | GgmlType::Q5_K => {
                (k.d, k.dmin) = (u16_at(0), u16_at(2));
                let sc = &b[4..16];
                let (qh, qs) = if ty == GgmlType::Q5_K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
                for j in 0..8 {
                    // Sub-blocks 0–3 keep theirs in the low six bits of bytes j and 4 + j;
                    // 4–7 in the nibbles of byte 4 + j, top bits in bytes j − 4 and j.
                    let (s, m) = if j < 4 { (sc[j] & 0x3F, sc[j + 4] & 0x3F) } else { ((sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)) };
                    (k.scales[2 * j], k.scales[2 * j + 1], k.mins[2 * j], k.mins[2 * j + 1]) = (s as i8, s as i8, m, m);
                    for l in 0..32 {
                        let high = qh.map_or(0, |qh| ((qh[l] >> j) & 1) << 4);
                        k.codes[32 * j + l] = (((qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F) | high) as i8;
                    }
                }
            }
            // 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, d: code = 6
            // bits − 32.
            GgmlType::Q6_K => {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                k.d = u16_at(208);
                for (j, s) in sc.iter().enumerate() {
                    k.scales[j] = *s as i8;
                }
                for half in 0..2 {
                    let (ql, qh) = (&ql[half * 64..half * 64 + 64], &qh[half * 32..half * 32 + 32]);
                    for e in 0..128 {
                        let (l, group) = (e % 32, e / 32);
                        let low = (ql[l + 32 * (group & 1)] >> (4 * (group >> 1))) & 0x0F;
                        let high = (qh[l] >> (2 * group)) & 0x03;
                        k.codes[half * 128 + e] = (low | (high << 4)) as i8 - 32;
                    }
                }
            }
            // d, 2 bytes of the eight scales' top two bits (scale j's in bits 2j..2j+2), 4
            // bytes of their low nibbles (scale j's in nibble j%2 of byte j/2), then 128
            // bytes of nibbles, 16 per 32-value sub-block (as IQ4_NL's): scale biased by 32,
            // code a nibble's entry in IQ4_VALUES.
            GgmlType::IQ4_XS => {
                k.d = u16_at(0);
                let (high, low, qs) = (u16_at(2), &b[4..8], &b[8..136]);
                for j in 0..8 {
                    let s = (((low[j / 2] >> (4 * (j % 2))) & 0x0F) | (((high >> (2 * j)) & 0x03) as u8) << 4) as i8 - 32;
                    (k.scales[2 * j], k.scales[2 * j + 1]) = (s, s);
                    for l in 0..32 {
                        let q = if l < 16 { qs[16 * j + l] & 0x0F } else { qs[16 * j + l - 16] >> 4 };
                        k.codes[32 * j + l] = IQ4_VALUES[q as usize];
                    }
                }
            }
            _ => return None,
        }
        Some(k)
    }

    /// Value e as [`dequantize`] gives it (d · scale · code is exact in f32, so only the
    /// subtraction rounds).
    pub fn value(&self, e: usize) -> f32 {
        let (d, dmin) = (f16::from_bits(self.d).to_f32(), f16::from_bits(self.dmin).to_f32());
        (d * self.scales[e / 16] as f32) * self.codes[e] as f32 - dmin * self.mins[e / 16] as f32
    }

    /// All 256 values into `y`, as [`Self::value`] gives them.
    fn values(&self, y: &mut [f32]) {
        let (d, dmin) = (f16::from_bits(self.d).to_f32(), f16::from_bits(self.dmin).to_f32());
        for (j, (y, codes)) in y.chunks_exact_mut(16).zip(self.codes.chunks_exact(16)).enumerate() {
            let (scale, min) = (d * self.scales[j] as f32, dmin * self.mins[j] as f32);
            for (yi, &q) in y.iter_mut().zip(codes) {
                *yi = scale * q as f32 - min;
            }
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
        use GgmlType::*;
        for ty in [F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q6_K, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, IQ4_NL, IQ4_XS] {
            let name = format!("{ty:?}");
            let case = cases.get(&name).unwrap_or_else(|| panic!("fixture lacks {name}"));
            let got = dequantize(ty, &unhex(&case.bytes)).unwrap();
            assert_eq!(got.len(), case.elements, "{name}");
            for (i, (g, want)) in got.iter().zip(&case.values).enumerate() {
                assert_eq!(g.to_bits(), (*want as f32).to_bits(), "{name} element {i}: {g} != {want}");
            }
        }
    }

    /// The integer decodings the CPU path packs from give the dequantised values bit for bit.
    #[test]
    fn integer_decodings_give_the_dequantised_values() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/llm/dequant.json");
        let cases: std::collections::BTreeMap<String, Case> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        use GgmlType::*;
        for ty in [Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS] {
            let bytes = unhex(&cases[&format!("{ty:?}")].bytes);
            let want = dequantize(ty, &bytes).unwrap();
            let (n, size) = ty.block();
            for (i, raw) in bytes.chunks_exact(size as usize).enumerate() {
                let value = |e: usize| match (LegacyBlock::decode(ty, raw), KBlock::decode(ty, raw)) {
                    (Some(b), None) => b.value(e),
                    (None, Some(b)) => b.value(e),
                    _ => panic!("{ty:?}: not exactly one decoding"),
                };
                for e in 0..n as usize {
                    assert_eq!(value(e).to_bits(), want[i * n as usize + e].to_bits(), "{ty:?} block {i} value {e}");
                }
            }
        }
        assert!(LegacyBlock::decode(F16, &[0; 34]).is_none() && KBlock::decode(Q8_0, &[0; 34]).is_none());
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
        let err = dequantize(GgmlType::Q8_K, &[0u8; 292]).unwrap_err();
        assert!(err.contains("Q8_K is not supported") && err.contains("Q4_K"), "{err}");
        let mut rng = rand::rng();
        assert!(random_blocks(GgmlType::Q8_0, 64, &mut rng).unwrap_err().contains("no random blocks for Q8_0"));
        assert!(random_blocks(GgmlType::Q4_K, 300, &mut rng).unwrap_err().contains("whole number"));
        assert_eq!(random_blocks(GgmlType::Q4_K, 512, &mut rng).unwrap().len(), 288);
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::Q6_K.bytes_for(100), None);
        for (t, id) in IDS {
            assert_eq!((GgmlType::from_id(id), t.id()), (Some(t), id));
        }
        assert_eq!(GgmlType::from_id(4), None);
    }
}
