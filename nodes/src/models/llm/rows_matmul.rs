//! `x · W` for the few rows of a decode step, streaming W once.
//!
//! Decoding multiplies a handful of rows (one per sequence) by every weight matrix. The `gemm`
//! crate runs one row through a gemv that sums in another order than its many-row kernels,
//! and a few rows through kernels meant for large blocks; so a sample's logits depended on how
//! many rows shared its step. Here every output is one fused multiply-add chain over k in
//! order, whatever the number of rows, the thread split or the column: a row's result never
//! depends on its batch mates. W is packed once into 16-column strips, each strip's k × 16
//! values contiguous; each 64-deep slice of a strip (4 KiB) stays in L1 while every row passes
//! over it, six rows at a time held in registers, so W is read from memory once per step.
//!
//! A matrix whose values f16 or bf16 hold exactly (a bf16 checkpoint's, an F16 GGUF's) is
//! packed in those 16 bits and widened as it is read: exact, half the bytes. One that came from
//! a GGUF file block-coded (the 32-value types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, or the
//! K-quants and IQ4_XS, each family in any mix) is packed as its codes and scales, dequantised by the very
//! arithmetic the loader uses as they are read: the products are bit for bit those of the f32
//! packing while a step reads 3–7× fewer bytes. A decode step's few
//! rows (at most six) widen or dequantise each row of a strip in registers and use it at once;
//! more rows share a slice widened or dequantised into L1 before they pass over it; and a
//! prefill's hundreds of rows have the whole matrix widened to f32 once for the call. On a CPU
//! with AVX-512 ([`avx512`]) a strip row is one register and up to 16 rows are summed in one
//! pass: a batched decode step's rows then dequantise each row of a strip in registers too.

use half::f16;
use rayon::prelude::*;

use super::quant::{GgmlType, KBlock, LegacyBlock};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Columns per strip (two AVX registers).
const STRIP: usize = 16;
/// Rows per register block.
const ROWS: usize = 6;
/// Values per GGML block (along k).
const BLOCK: usize = 32;

/// A [k, n] matrix packed for [`rows_matmul`]: strip s holds columns 16s..16s+16 as k rows of
/// 16 values (the last strip zero-padded), as f32 or as GGML block codes.
pub struct PackedMatrix {
    strips: Strips,
    pub k: usize,
    pub n: usize,
}

enum Strips {
    F32(Vec<f32>),
    /// Values that the half type holds exactly, as its 16 bits; laid out as `F32`.
    Half(Half, Vec<u16>),
    Blocks(Blocks),
    KBlocks(KBlocks),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Half {
    F16,
    Bf16,
}

impl Half {
    /// The 16 bits that hold `v` exactly, if there are any.
    fn bits(self, v: f32) -> Option<u16> {
        match self {
            Half::Bf16 => (v.to_bits() & 0xFFFF == 0).then_some((v.to_bits() >> 16) as u16),
            Half::F16 => {
                let h = f16::from_f32(v);
                (h.to_f32().to_bits() == v.to_bits()).then_some(h.to_bits())
            }
        }
    }

    fn widen(self, bits: u16) -> f32 {
        match self {
            Half::Bf16 => f32::from_bits((bits as u32) << 16),
            Half::F16 => f16::from_bits(bits).to_f32(),
        }
    }
}

/// GGML blocks regrouped by strip. For strip s and block b (rows 32b..32b+32 of k), the 16
/// columns' scales (f16 bits) sit at `(s · k/32 + b) · 16`, and Q4_1's minimums at the same
/// place in `mins`; row kk's 16 codes sit at `(s · k + kk) · code_bytes`: for Q4_0 and Q4_1 eight
/// bytes, column 2i in the low nibble of byte i and 2i + 1 in the high one; for Q8_0 sixteen
/// signed bytes.
struct Blocks {
    kind: BlockKind,
    scales: Vec<u16>,
    mins: Vec<u16>,
    codes: Vec<u8>,
}

/// K-quant blocks ([`KBlock`]) regrouped by strip, in 16-row sub-blocks: for strip s,
/// sub-block b (rows 16b..16b+16 of k) and column c, the integer scale and minimum sit at
/// `(s · k/16 + b) · 16 + c` and the f16 super-scales `d` and `dmin` of its 256 rows at
/// `(s · k/256 + b/16) · 16 + c`; row kk's 16 codes at `(s · k + kk) · code_bytes`, as nibbles
/// when every column was Q4_K, else as signed bytes (so Q4_K, Q6_K and the rest mix in one
/// matrix, as llama.cpp's `Q4_K_M` files mix them across q, k and v). A value is
/// `(d · scale) · code − dmin · minimum`, the loader's arithmetic.
struct KBlocks {
    nibbles: bool,
    d: Vec<u16>,
    dmin: Vec<u16>,
    scales: Vec<i8>,
    mins: Vec<u8>,
    codes: Vec<u8>,
}

/// Whether there are columns, each k values of a type of `family` (its own, `types[j]`) in
/// whole blocks, k a multiple of `block`.
fn whole_columns(k: usize, block: usize, family: fn(GgmlType) -> bool, types: &[GgmlType], columns: &[&[u8]]) -> bool {
    k > 0 && k % block == 0 && !columns.is_empty() && types.len() == columns.len() && types.iter().zip(columns).all(|(t, c)| family(*t) && t.bytes_for(k as u64) == Some(c.len() as u64))
}

/// Rows per K-quant sub-block and per super-block.
const SUB: usize = 16;
const SUPER: usize = 256;

impl KBlocks {
    fn code_bytes(&self) -> usize {
        if self.nibbles {
            STRIP / 2
        } else {
            STRIP
        }
    }

    /// Strip s's parts: (d, dmin, scales, mins, codes) over all its k rows.
    fn strip(&self, s: usize, k: usize) -> KStrip<'_> {
        let (supers, subs, cb) = (k / SUPER * STRIP, k / SUB * STRIP, self.code_bytes());
        KStrip {
            nibbles: self.nibbles,
            d: &self.d[s * supers..(s + 1) * supers],
            dmin: &self.dmin[s * supers..(s + 1) * supers],
            scales: &self.scales[s * subs..(s + 1) * subs],
            mins: &self.mins[s * subs..(s + 1) * subs],
            codes: &self.codes[s * k * cb..(s + 1) * k * cb],
        }
    }
}

/// One strip of [`KBlocks`].
#[derive(Clone, Copy)]
struct KStrip<'a> {
    nibbles: bool,
    d: &'a [u16],
    dmin: &'a [u16],
    scales: &'a [i8],
    mins: &'a [u8],
    codes: &'a [u8],
}

impl KStrip<'_> {
    /// Column c's (scale, negated minimum) for sub-block b, as f32: d · scale is exact.
    fn sub_block(&self, b: usize, c: usize) -> (f32, f32) {
        let (d, dmin) = (f16::from_bits(self.d[(b / SUB) * STRIP + c]).to_f32(), f16::from_bits(self.dmin[(b / SUB) * STRIP + c]).to_f32());
        (d * self.scales[b * STRIP + c] as f32, -(dmin * self.mins[b * STRIP + c] as f32))
    }

    /// Row kk's value in column c: `(d · scale) · code − dmin · minimum`, the loader's
    /// arithmetic (the product is exact, so adding the negated minimum rounds as it does).
    fn value(&self, kk: usize, c: usize) -> f32 {
        let (scale, negmin) = self.sub_block(kk / SUB, c);
        scale * self.code(kk, c) + negmin
    }

    fn code(&self, kk: usize, c: usize) -> f32 {
        if self.nibbles {
            ((self.codes[kk * STRIP / 2 + c / 2] >> (4 * (c % 2))) & 0x0F) as f32
        } else {
            (self.codes[kk * STRIP + c] as i8) as f32
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    /// x = d·q, q a signed byte.
    Q8_0,
    /// x = d·(q − 8), q a nibble.
    Q4_0,
    /// x = d·q + m, q a nibble.
    Q4_1,
    /// x = d·q + m, q a signed byte, m −0 for types without a minimum: any mix of the
    /// 32-value types ([`LegacyBlock`]).
    Bytes,
}

impl BlockKind {
    fn has_min(self) -> bool {
        matches!(self, BlockKind::Q4_1 | BlockKind::Bytes)
    }

    fn code_bytes(self) -> usize {
        if matches!(self, BlockKind::Q8_0 | BlockKind::Bytes) {
            STRIP
        } else {
            STRIP / 2
        }
    }
}

impl PackedMatrix {
    /// Packs a row-major [k, n] matrix: in 16 bits when bf16 or f16 holds every value exactly,
    /// else as f32.
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "PackedMatrix: {} values for [{k}, {n}]", w.len());
        for half in [Half::Bf16, Half::F16] {
            if w.par_iter().all(|&v| half.bits(v).is_some()) {
                let strips = Self::strips(w, k, n, 0u16, |v| half.bits(v).expect("checked"));
                return PackedMatrix { strips: Strips::Half(half, strips), k, n };
            }
        }
        Self::plain(w, k, n)
    }

    /// Packs a row-major [k, n] matrix as f32.
    fn plain(w: &[f32], k: usize, n: usize) -> Self {
        PackedMatrix { strips: Strips::F32(Self::strips(w, k, n, 0f32, |v| v)), k, n }
    }

    /// The strips of a row-major [k, n] matrix, each value stored as `store` makes it.
    fn strips<T: Copy + Send + Sync>(w: &[f32], k: usize, n: usize, zero: T, store: impl Fn(f32) -> T + Sync) -> Vec<T> {
        let count = n.div_ceil(STRIP);
        let mut strips = vec![zero; count * k * STRIP];
        strips.par_chunks_mut(k * STRIP).enumerate().for_each(|(s, strip)| {
            let (c0, c1) = (s * STRIP, ((s + 1) * STRIP).min(n));
            for (kk, row) in strip.chunks_exact_mut(STRIP).enumerate() {
                for (o, &v) in row.iter_mut().zip(&w[kk * n + c0..kk * n + c1]) {
                    *o = store(v);
                }
            }
        });
        strips
    }

    /// Packs the matrix whose columns are those of `groups`, each a GGML type and its
    /// columns: column j holds k values as GGML blocks (a GGUF weight's row, which is a column
    /// of x · W). Block-coded when the groups allow it: the 32-value types (Q8_0, Q4_0, Q4_1,
    /// Q5_0, Q5_1, IQ4_NL) in any mix, or the K-quants and IQ4_XS in any mix, each column
    /// k / block whole blocks.
    /// None otherwise; the caller then packs the f32 values.
    pub fn from_stored(k: usize, groups: &[(GgmlType, Vec<&[u8]>)]) -> Option<Self> {
        let columns: Vec<&[u8]> = groups.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        let types: Vec<GgmlType> = groups.iter().flat_map(|(t, c)| std::iter::repeat_n(*t, c.len())).collect();
        Self::from_legacy_blocks(k, &types, &columns).or_else(|| Self::from_k_blocks(k, &types, &columns))
    }

    /// Packs columns of the 32-value types ([`LegacyBlock`]): one type throughout keeps its
    /// own layout (Q4_0's and Q4_1's nibbles stay nibbles), a mix or Q5_0/Q5_1 takes signed
    /// bytes ([`BlockKind::Bytes`]). None when a column is of another type or not k / 32
    /// whole blocks.
    fn from_legacy_blocks(k: usize, types: &[GgmlType], columns: &[&[u8]]) -> Option<Self> {
        let n = columns.len();
        if !whole_columns(k, BLOCK, GgmlType::is_legacy, types, columns) {
            return None;
        }
        let kind = match types[0] {
            _ if types.iter().any(|t| *t != types[0]) => BlockKind::Bytes,
            GgmlType::Q8_0 => BlockKind::Q8_0,
            GgmlType::Q4_0 => BlockKind::Q4_0,
            GgmlType::Q4_1 => BlockKind::Q4_1,
            _ => BlockKind::Bytes,
        };
        let (count, blocks, cb) = (n.div_ceil(STRIP), k / BLOCK, kind.code_bytes());
        let per_strip = blocks * STRIP;
        // (Minimums stay zero for the kinds without one.)
        let (mut scales, mut mins, mut codes) = (vec![0u16; count * per_strip], vec![0u16; count * per_strip], vec![0u8; count * k * cb]);
        codes.par_chunks_mut(k * cb).zip(scales.par_chunks_mut(per_strip)).zip(mins.par_chunks_mut(per_strip)).enumerate().for_each(|(s, ((codes, scales), mins))| {
            for c in 0..STRIP.min(n - s * STRIP) {
                let (ty, column) = (types[s * STRIP + c], columns[s * STRIP + c]);
                for (b, raw) in column.chunks_exact(ty.block().1 as usize).enumerate() {
                    let block = LegacyBlock::decode(ty, raw).expect("checked a 32-value type");
                    scales[b * STRIP + c] = block.d;
                    if kind.has_min() {
                        mins[b * STRIP + c] = block.m;
                    }
                    for (kk, &q) in block.codes.iter().enumerate() {
                        let row = (b * BLOCK + kk) * cb;
                        match kind {
                            BlockKind::Q4_0 => codes[row + c / 2] |= ((q + 8) as u8) << (4 * (c % 2)),
                            BlockKind::Q4_1 => codes[row + c / 2] |= (q as u8) << (4 * (c % 2)),
                            BlockKind::Q8_0 | BlockKind::Bytes => codes[row + c] = q as u8,
                        }
                    }
                }
            }
        });
        Some(PackedMatrix { strips: Strips::Blocks(Blocks { kind, scales, mins, codes }), k, n })
    }

    /// Packs K-quant columns (column j of type `types[j]`, k / 256 whole blocks); None when a
    /// column is not a K-quant or not whole blocks.
    fn from_k_blocks(k: usize, types: &[GgmlType], columns: &[&[u8]]) -> Option<Self> {
        let n = columns.len();
        if !whole_columns(k, SUPER, GgmlType::is_k_quant, types, columns) {
            return None;
        }
        let nibbles = types.iter().all(|t| *t == GgmlType::Q4_K);
        let count = n.div_ceil(STRIP);
        let (supers, subs, cb) = (k / SUPER * STRIP, k / SUB * STRIP, if nibbles { STRIP / 2 } else { STRIP });
        let mut packed = KBlocks { nibbles, d: vec![0; count * supers], dmin: vec![0; count * supers], scales: vec![0; count * subs], mins: vec![0; count * subs], codes: vec![0; count * k * cb] };
        let parts = packed
            .d
            .par_chunks_mut(supers)
            .zip(packed.dmin.par_chunks_mut(supers))
            .zip(packed.scales.par_chunks_mut(subs))
            .zip(packed.mins.par_chunks_mut(subs))
            .zip(packed.codes.par_chunks_mut(k * cb));
        parts.enumerate().for_each(|(s, ((((d, dmin), scales), mins), codes))| {
            for c in 0..STRIP.min(n - s * STRIP) {
                let (ty, column) = (types[s * STRIP + c], columns[s * STRIP + c]);
                for (sb, raw) in column.chunks_exact(ty.block().1 as usize).enumerate() {
                    let block = KBlock::decode(ty, raw).expect("checked a K-quant");
                    (d[sb * STRIP + c], dmin[sb * STRIP + c]) = (block.d, block.dmin);
                    for j in 0..SUPER / SUB {
                        let b = sb * (SUPER / SUB) + j;
                        (scales[b * STRIP + c], mins[b * STRIP + c]) = (block.scales[j], block.mins[j]);
                    }
                    for (e, &q) in block.codes.iter().enumerate() {
                        let row = sb * SUPER + e;
                        if nibbles {
                            codes[row * cb + c / 2] |= (q as u8) << (4 * (c % 2));
                        } else {
                            codes[row * cb + c] = q as u8;
                        }
                    }
                }
            }
        });
        Some(PackedMatrix { strips: Strips::KBlocks(packed), k, n })
    }

    /// Bytes the packed strips take.
    pub fn bytes(&self) -> usize {
        match &self.strips {
            Strips::F32(v) => v.len() * 4,
            Strips::Half(_, v) => v.len() * 2,
            Strips::Blocks(b) => (b.scales.len() + if b.kind.has_min() { b.mins.len() } else { 0 }) * 2 + b.codes.len(),
            Strips::KBlocks(b) => (b.d.len() + b.dmin.len()) * 2 + b.scales.len() + b.mins.len() + b.codes.len(),
        }
    }

    /// The [k, n] values, row-major, as the products see them.
    pub fn values(&self) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let mut out = vec![0f32; k * n];
        let mut buf = vec![0f32; k * STRIP];
        for s in 0..n.div_ceil(STRIP) {
            let w = self.slice(s, 0, k, &mut buf, false);
            for kk in 0..k {
                for c in 0..STRIP.min(n - s * STRIP) {
                    out[kk * n + s * STRIP + c] = w[kk * STRIP + c];
                }
            }
        }
        out
    }

    /// Column j (k values) into `out`, as the products see it: a row of the [out, in] weight,
    /// so an embedding tied to the output head (or packed like one) is read from its packed
    /// matrix rather than kept again as f32.
    pub fn column(&self, j: usize, out: &mut [f32]) {
        let (k, s, c) = (self.k, j / STRIP, j % STRIP);
        assert!(j < self.n && out.len() == k, "column {j} of [{k}, {}] into {} values", self.n, out.len());
        match &self.strips {
            Strips::F32(v) => out.iter_mut().enumerate().for_each(|(kk, o)| *o = v[(s * k + kk) * STRIP + c]),
            Strips::Half(half, v) => out.iter_mut().enumerate().for_each(|(kk, o)| *o = half.widen(v[(s * k + kk) * STRIP + c])),
            Strips::Blocks(b) => {
                let cb = b.kind.code_bytes();
                for (kk, o) in out.iter_mut().enumerate() {
                    let at = (s * (k / BLOCK) + kk / BLOCK) * STRIP + c;
                    *o = block_value(b.kind, b.scales[at], b.mins[at], &b.codes[(s * k + kk) * cb..(s * k + kk + 1) * cb], c);
                }
            }
            Strips::KBlocks(b) => {
                let strip = b.strip(s, k);
                out.iter_mut().enumerate().for_each(|(kk, o)| *o = strip.value(kk, c));
            }
        }
    }

    /// All strips as f32, in `into` (resized): the values [`Self::slice`] gives, strips in
    /// parallel. `fast`: the AVX2 kernels may be used.
    fn widened(&self, mut into: Vec<f32>, fast: bool) -> Vec<f32> {
        assert!(!matches!(self.strips, Strips::F32(_)), "widening f32 strips");
        let k = self.k;
        into.resize(self.n.div_ceil(STRIP) * k * STRIP, 0.0);
        into.par_chunks_mut(k * STRIP).enumerate().for_each(|(s, strip)| {
            self.slice(s, 0, k, strip, fast);
        });
        into
    }

    /// Rows k0..k0 + depth of strip s as f32: the packed values themselves, or the half values
    /// widened or the blocks dequantised into `buf` (for blocks, k0 and depth are multiples of
    /// 32). `fast`: the CPU has AVX2, FMA and F16C.
    fn slice<'a>(&'a self, s: usize, k0: usize, depth: usize, buf: &'a mut [f32], fast: bool) -> &'a [f32] {
        let k = self.k;
        match &self.strips {
            Strips::F32(v) => &v[(s * k + k0) * STRIP..(s * k + k0 + depth) * STRIP],
            Strips::Half(half, v) => {
                let (out, bits) = (&mut buf[..depth * STRIP], &v[(s * k + k0) * STRIP..(s * k + k0 + depth) * STRIP]);
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: the CPU has AVX2 and F16C (checked by the caller); out and bits
                    // are the same length.
                    unsafe { avx2::widen(*half, bits, out) };
                    return out;
                }
                for (o, &b) in out.iter_mut().zip(bits) {
                    *o = half.widen(b);
                }
                out
            }
            Strips::Blocks(b) => {
                let out = &mut buf[..depth * STRIP];
                let cb = b.kind.code_bytes();
                let first = s * (k / BLOCK) + k0 / BLOCK;
                let scales = &b.scales[first * STRIP..(first + depth / BLOCK) * STRIP];
                let mins = &b.mins[first * STRIP..(first + depth / BLOCK) * STRIP];
                let codes = &b.codes[(s * k + k0) * cb..(s * k + k0 + depth) * cb];
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: the CPU has AVX2, FMA and F16C (checked by the caller); the
                    // slices hold depth rows of codes and depth / 32 blocks of scales.
                    unsafe { avx2::dequantize(b.kind, scales, mins, codes, out) };
                    return out;
                }
                let _ = fast;
                dequantize(b.kind, scales, mins, codes, out);
                out
            }
            Strips::KBlocks(b) => {
                let out = &mut buf[..depth * STRIP];
                let strip = b.strip(s, k);
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: the CPU has AVX2, FMA and F16C (checked by the caller); rows
                    // k0..k0 + depth lie in the strip (k0 and depth multiples of 16).
                    unsafe { avx2::dequantize_k(strip, k0, out) };
                    return out;
                }
                dequantize_k(strip, k0, out);
                out
            }
        }
    }
}

/// Rows k0..k0 + out.len() / 16 of a K-quant strip to f32, value by value: the loader's
/// arithmetic ([`KBlock::value`]), so both give the same bits.
fn dequantize_k(strip: KStrip, k0: usize, out: &mut [f32]) {
    for (i, row) in out.chunks_exact_mut(STRIP).enumerate() {
        row.iter_mut().enumerate().for_each(|(c, x)| *x = strip.value(k0 + i, c));
    }
}

/// One slice of block codes to f32, value by value: the loader's arithmetic
/// (`quant::dequantize`), so both give the same bits.
fn dequantize(kind: BlockKind, scales: &[u16], mins: &[u16], codes: &[u8], out: &mut [f32]) {
    let cb = kind.code_bytes();
    for (b, rows) in out.chunks_exact_mut(BLOCK * STRIP).enumerate() {
        for (kk, row) in rows.chunks_exact_mut(STRIP).enumerate() {
            let code = &codes[(b * BLOCK + kk) * cb..(b * BLOCK + kk + 1) * cb];
            for (c, x) in row.iter_mut().enumerate() {
                *x = block_value(kind, scales[b * STRIP + c], mins[b * STRIP + c], code, c);
            }
        }
    }
}

/// Column c's value in a row of codes, with that column's scale and minimum (f16 bits).
fn block_value(kind: BlockKind, scale: u16, min: u16, code: &[u8], c: usize) -> f32 {
    let (d, nibble) = (f16::from_bits(scale).to_f32(), || (code[c / 2] >> (4 * (c % 2))) & 0x0F);
    match kind {
        BlockKind::Q8_0 => d * (code[c] as i8) as f32,
        BlockKind::Q4_0 => d * (nibble() as i32 - 8) as f32,
        BlockKind::Q4_1 => d * nibble() as f32 + f16::from_bits(min).to_f32(),
        BlockKind::Bytes => d * (code[c] as i8) as f32 + f16::from_bits(min).to_f32(),
    }
}

/// out [m, n] = x [m, k] · W, or out += it when `accumulate`; x and out row-major.
pub fn rows_matmul(x: &[f32], w: &PackedMatrix, out: &mut [f32], m: usize, accumulate: bool) {
    rows_matmul_on(Isa::detect(), x, w, out, m, accumulate)
}

/// [`rows_matmul`] with the kernels of `isa`, at most what the CPU has ([`Isa::available`]):
/// for tests that compare the levels' bits and benchmarks that compare their speed.
pub fn rows_matmul_on(isa: Isa, x: &[f32], w: &PackedMatrix, out: &mut [f32], m: usize, accumulate: bool) {
    assert!(isa <= Isa::of_cpu(), "rows_matmul: this CPU has no {} kernels", isa.name());
    let (k, n) = (w.k, w.n);
    assert!(x.len() >= m * k && out.len() >= m * n, "rows_matmul: buffers do not match [{m}, {k}] x [{k}, {n}]");
    if m == 0 || n == 0 {
        return;
    }
    if m >= WIDEN_ROWS && !matches!(w.strips, Strips::F32(_)) {
        // Many rows (a prefill): widen or dequantise the matrix once for the call rather
        // than once per block of rows; the f32 strips then give the same chains and bits.
        let plain = PackedMatrix { strips: Strips::F32(w.widened(WIDE.with(|c| c.take()), isa >= Isa::Avx2)), k, n };
        rows_matmul_on(isa, x, &plain, out, m, accumulate);
        if let Strips::F32(wide) = plain.strips {
            if wide.capacity() <= KEEP_WIDE {
                WIDE.with(|c| c.replace(wide));
            }
        }
        return;
    }
    // Tasks are (block of rows, run of strips): a block's rows of x stay in L2 while its
    // strips pass, and there are a few tasks per thread so uneven cores balance.
    let strips = n.div_ceil(STRIP);
    let blocks = m.div_ceil(BLOCK_ROWS);
    let want = if m * k * n < 64 * 1024 { 1 } else { rayon::current_num_threads() * 4 };
    let per = strips.div_ceil(want.div_ceil(blocks).min(strips));
    let runs = strips.div_ceil(per);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..blocks * runs).into_par_iter().for_each(|task| {
        let (block, run) = (task / runs, task % runs);
        let (r0, r1) = (block * BLOCK_ROWS, ((block + 1) * BLOCK_ROWS).min(m));
        // Where a block-coded slice is dequantised for the rows (sized by the first strip
        // that needs it).
        let mut buf = Vec::new();
        for s in run * per..((run + 1) * per).min(strips) {
            // SAFETY: each task writes its own rows and columns of `out` (m × n, checked
            // above); rows r0..r1 start at r0 · n.
            unsafe { strip(&x[r0 * k..], w, s, out_ptr.get().add(r0 * n), r1 - r0, accumulate, isa, &mut buf) };
        }
    });
}

/// Rows from which a 16-bit or block-coded matrix is widened to f32 once per call (see
/// [`PackedMatrix::widened`]); below it each block of rows widens the slices it uses.
const WIDEN_ROWS: usize = 2 * BLOCK_ROWS;

/// Largest widened matrix (in values) a thread keeps for its next call: a layer's matrices
/// (SmolLM2's largest is 1.8M values), not a vocabulary head.
const KEEP_WIDE: usize = 8 << 20;

thread_local! {
    /// The f32 strips of the last matrix widened on this thread, reused so that a prefill's
    /// every matrix does not fault in fresh pages.
    static WIDE: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The environment variable that caps the kernels [`rows_matmul`] uses.
pub const KERNELS_VAR: &str = "DAGRUN_CPU_KERNELS";

/// The kernels a CPU can run, each level including the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// One value at a time.
    Plain,
    /// AVX2, FMA and F16C: 6 rows × 16 columns in registers.
    Avx2,
    /// Also AVX-512 F and BW: 16 rows × 16 columns.
    Avx512,
}

impl Isa {
    /// Every level, lowest first.
    const ALL: [Isa; 3] = [Isa::Plain, Isa::Avx2, Isa::Avx512];

    /// The kernels to use: what this CPU has, or less where `DAGRUN_CPU_KERNELS` asks for it
    /// (`avx2` or `plain`: to measure what a level brings, or to rule a kernel out; the
    /// products are the same bits at every level).
    pub fn detect() -> Isa {
        static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let cpu = Isa::of_cpu();
            match std::env::var(KERNELS_VAR) {
                Ok(v) => match Isa::named(&v) {
                    Some(asked) => asked.min(cpu),
                    None => {
                        eprintln!("warning: {KERNELS_VAR}={v:?} is not avx512, avx2 or plain; using what the CPU has ({})", cpu.name());
                        cpu
                    }
                },
                Err(_) => cpu,
            }
        })
    }

    /// The name `DAGRUN_CPU_KERNELS` takes for this level.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Plain => "plain",
        }
    }

    /// The level named `avx512`, `avx2` or `plain` (any case).
    fn named(name: &str) -> Option<Isa> {
        let name = name.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|l| l.name() == name)
    }

    /// What this CPU has.
    fn of_cpu() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if !(has!("avx2") && has!("fma") && has!("f16c")) {
                return Isa::Plain;
            }
            if has!("avx512f") && has!("avx512bw") {
                return Isa::Avx512;
            }
            Isa::Avx2
        }
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Plain
    }

    /// Every level this CPU has, lowest first (whatever `DAGRUN_CPU_KERNELS` caps the
    /// default to: tests and benchmarks compare them all).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|&i| i <= Isa::of_cpu()).collect()
    }
}

/// Rows of x per task: 48 rows of up to 1536 values (288 KiB) stay in a core's L2 while a
/// run of strips passes over them.
const BLOCK_ROWS: usize = 48;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column ranges of one buffer to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows whose running sums a strip keeps on the stack.
const FEW_ROWS: usize = 16;

/// Depth of one pass over a strip: 64 rows of 16 values (4 KiB) stay in L1 while every row
/// block of x passes over them, so the strip is read from memory once whatever m is.
const DEPTH: usize = 64;

/// The depth for blocks of more than [`ROWS_DEEP`] rows: 16 KiB slices, fewer passes.
const DEEP: usize = 256;
const ROWS_DEEP: usize = 16;

/// Columns 16s..16s+16 (those below n) of out, for every row, from strip s of `packed`, with
/// the kernels of `isa`.
///
/// # Safety
/// `out` points to m × n floats; no one else writes these columns meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn strip(x: &[f32], packed: &PackedMatrix, s: usize, out: *mut f32, m: usize, accumulate: bool, isa: Isa, buf: &mut Vec<f32>) {
    let (k, n, c0) = (packed.k, packed.n, s * STRIP);
    let width = (n - c0).min(STRIP);
    // Prefetching the next slice helps only when the slice is the packed values themselves.
    let prefetch = matches!(packed.strips, Strips::F32(_));
    // Running sums per row, carried from one depth slice to the next (saving and reloading
    // them leaves each value's chain of fused multiply-adds as it is).
    // (On the stack for a decode step's few rows: a heap buffer per strip was thousands of
    // allocations per token.)
    let (mut few, mut many) = ([[0f32; STRIP]; FEW_ROWS], Vec::new());
    let acc: &mut [[f32; STRIP]] = if m <= FEW_ROWS {
        &mut few[..m]
    } else {
        many.resize(m, [0f32; STRIP]);
        &mut many
    };
    let mut k0 = 0;
    let fast = isa >= Isa::Avx2;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && m <= avx512::ROWS {
        // Up to 16 rows (a decode step, a batch of them): each row of the strip is widened or
        // dequantised in a register and used by them all at once.
        // SAFETY: the CPU has AVX-512 F and BW with AVX2, FMA and F16C (Isa::detect); m rows
        // of k values of x.
        unsafe { avx512::strip(packed, s, x, acc) };
        k0 = k;
    } else if fast && m <= ROWS {
        // A few rows (a decode step): widening or dequantising a slice and then reading it
        // back would leave the rows' chains of multiply-adds waiting on each other in turn;
        // done row by row in registers, the two overlap.
        match &packed.strips {
            Strips::F32(_) => {}
            Strips::Half(half, v) => {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked); strip s, and m rows of k
                // values of x.
                unsafe { avx2::fused_half(*half, &v[s * k * STRIP..(s + 1) * k * STRIP], x, k, acc) };
                k0 = k;
            }
            Strips::Blocks(b) => {
                let (cb, first, last) = (b.kind.code_bytes(), s * (k / BLOCK) * STRIP, (s + 1) * (k / BLOCK) * STRIP);
                let (scales, mins, codes) = (&b.scales[first..last], &b.mins[first..last], &b.codes[s * k * cb..(s + 1) * k * cb]);
                // SAFETY: as above; strip s's scales and codes.
                unsafe { avx2::fused(b.kind, scales, mins, codes, x, k, acc) };
                k0 = k;
            }
            Strips::KBlocks(b) => {
                // SAFETY: as above; strip s.
                unsafe { avx2::fused_k(b.strip(s, k), x, k, acc) };
                k0 = k;
            }
        }
    }
    // A block-coded slice is dequantised into `buf`, once for all the rows.
    if k0 < k && !prefetch {
        buf.resize(DEEP * STRIP, 0.0);
    }
    while k0 < k {
        let depth = (k - k0).min(if m > ROWS_DEEP { DEEP } else { DEPTH });
        let w = packed.slice(s, k0, depth, buf, fast);
        let mut r = 0;
        while r < m {
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512 {
                let rows = (m - r).min(avx512::ROWS);
                // SAFETY: the CPU has AVX-512 F and BW (Isa::detect); x holds rows r..r+rows
                // of k values, w `depth` rows of 16.
                unsafe { avx512::block(&x[r * k + k0..], k, w, &mut acc[r..r + rows], depth, r == 0 && prefetch) };
                r += rows;
                continue;
            }
            let rows = (m - r).min(ROWS);
            let a = &mut acc[r..r + rows];
            if fast {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX2 and FMA (checked); x holds rows r..r+rows of k
                // values, w `depth` rows of 16.
                unsafe {
                    avx2::block(&x[r * k + k0..], k, w, a, depth, r == 0 && prefetch)
                };
            } else {
                // The same fused chain, one value at a time.
                for (i, ai) in a.iter_mut().enumerate() {
                    for (kk, wrow) in w.chunks_exact(STRIP).enumerate() {
                        let xv = x[(r + i) * k + k0 + kk];
                        for (v, &wv) in ai.iter_mut().zip(wrow) {
                            *v = xv.mul_add(wv, *v);
                        }
                    }
                }
            }
            r += rows;
        }
        k0 += depth;
    }
    for (i, a) in acc.iter().enumerate() {
        // SAFETY: row i, columns c0..c0+width are inside out and this task's.
        let o = unsafe { std::slice::from_raw_parts_mut(out.add(i * n + c0), width) };
        for (o, &v) in o.iter_mut().zip(a) {
            *o = if accumulate { *o + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BlockKind, Half, KStrip, BLOCK, ROWS, STRIP, SUB, SUPER};

    /// Sixteen half values at `bits` as f32 (exact).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn widen_row<const BF16: bool>(bits: *const u16) -> (__m256, __m256) {
        // SAFETY: the callers keep 16 values at `bits`.
        unsafe {
            let (lo, hi) = (_mm_loadu_si128(bits as *const __m128i), _mm_loadu_si128(bits.add(8) as *const __m128i));
            if BF16 {
                let wide = |v| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)));
                (wide(lo), wide(hi))
            } else {
                (_mm256_cvtph_ps(lo), _mm256_cvtph_ps(hi))
            }
        }
    }

    /// Half values to f32, 16 at a time (`bits` and `out` whole rows of 16).
    ///
    /// # Safety
    /// AVX2 and F16C present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn widen(half: Half, bits: &[u16], out: &mut [f32]) {
        assert!(bits.len() == out.len() && bits.len() % STRIP == 0);
        // SAFETY: the assert above bounds every read and write.
        unsafe {
            for row in 0..bits.len() / STRIP {
                let (w0, w1) = if half == Half::Bf16 { widen_row::<true>(bits.as_ptr().add(row * STRIP)) } else { widen_row::<false>(bits.as_ptr().add(row * STRIP)) };
                _mm256_storeu_ps(out.as_mut_ptr().add(row * STRIP), w0);
                _mm256_storeu_ps(out.as_mut_ptr().add(row * STRIP + 8), w1);
            }
        }
    }

    /// [`fused`] for a strip of half values (`bits`: k rows of 16).
    ///
    /// # Safety
    /// AVX2, FMA and F16C present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn fused_half(half: Half, bits: &[u16], x: &[f32], k: usize, acc: &mut [[f32; STRIP]]) {
        let rows = acc.len();
        assert!(rows <= ROWS && x.len() >= rows * k && bits.len() >= k * STRIP);
        macro_rules! by_rows {
            ($bf16:literal) => {
                match rows {
                    0 => {}
                    1 => fused_half_of::<$bf16, 1>(bits, x, k, acc),
                    2 => fused_half_of::<$bf16, 2>(bits, x, k, acc),
                    3 => fused_half_of::<$bf16, 3>(bits, x, k, acc),
                    4 => fused_half_of::<$bf16, 4>(bits, x, k, acc),
                    5 => fused_half_of::<$bf16, 5>(bits, x, k, acc),
                    _ => fused_half_of::<$bf16, 6>(bits, x, k, acc),
                }
            };
        }
        // SAFETY: the assert above bounds every read and write.
        unsafe {
            match half {
                Half::Bf16 => by_rows!(true),
                Half::F16 => by_rows!(false),
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn fused_half_of<const BF16: bool, const R: usize>(bits: &[u16], x: &[f32], k: usize, out: &mut [[f32; STRIP]]) {
        // SAFETY (whole body): bounded by `fused_half`'s assert.
        unsafe {
            let mut acc = load::<R>(out);
            for kk in 0..k {
                fma_rows(&mut acc, x.as_ptr().add(kk), k, widen_row::<BF16>(bits.as_ptr().add(kk * STRIP)));
            }
            store(&acc, out);
        }
    }

    /// [`super::dequantize`] with AVX2: the same products and sums, eight values at a time.
    ///
    /// # Safety
    /// AVX2 and F16C present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dequantize(kind: BlockKind, scales: &[u16], mins: &[u16], codes: &[u8], out: &mut [f32]) {
        let blocks = out.len() / (BLOCK * STRIP);
        assert!(out.len() % (BLOCK * STRIP) == 0 && scales.len() >= blocks * STRIP && mins.len() >= blocks * STRIP && codes.len() >= blocks * BLOCK * kind.code_bytes());
        // SAFETY: the assert above bounds every read and write.
        unsafe {
            match kind {
                BlockKind::Q8_0 => blocks_of::<0>(scales, mins, codes, out, blocks),
                BlockKind::Q4_0 => blocks_of::<1>(scales, mins, codes, out, blocks),
                BlockKind::Q4_1 => blocks_of::<2>(scales, mins, codes, out, blocks),
                BlockKind::Bytes => blocks_of::<3>(scales, mins, codes, out, blocks),
            }
        }
    }

    /// KIND: 0 Q8_0, 1 Q4_0, 2 Q4_1, 3 Bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn blocks_of<const KIND: u8>(scales: &[u16], mins: &[u16], codes: &[u8], out: &mut [f32], blocks: usize) {
        // SAFETY (whole body): bounded by `dequantize`'s assert.
        unsafe {
            for b in 0..blocks {
                let block = Block::new(scales, mins, b);
                for row in b * BLOCK..(b + 1) * BLOCK {
                    let (w0, w1) = block.row::<KIND>(codes.as_ptr(), row);
                    _mm256_storeu_ps(out.as_mut_ptr().add(row * STRIP), w0);
                    _mm256_storeu_ps(out.as_mut_ptr().add(row * STRIP + 8), w1);
                }
            }
        }
    }

    /// One block's 16 scales and minimums in registers.
    struct Block {
        d: (__m256, __m256),
        m: (__m256, __m256),
    }

    impl Block {
        /// Block b of a strip's scales and minimums.
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn new(scales: &[u16], mins: &[u16], b: usize) -> Block {
            // SAFETY: the callers bound b by the slices' lengths.
            unsafe {
                let half = |v: &[u16], at: usize| _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(at) as *const __m128i));
                Block { d: (half(scales, b * STRIP), half(scales, b * STRIP + 8)), m: (half(mins, b * STRIP), half(mins, b * STRIP + 8)) }
            }
        }

        /// Sub-block b of a K-quant strip: scales `d · scale` (exact) and negated minimums
        /// `−(dmin · minimum)`, as [`super::KStrip::sub_block`] computes them.
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn k(strip: &KStrip, b: usize) -> Block {
            // SAFETY: the callers bound b by the strip's sub-blocks.
            unsafe {
                let half = |v: &[u16], at: usize| _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(at) as *const __m128i));
                let sup = (b / (SUPER / SUB)) * STRIP;
                let (d, dmin) = ((half(strip.d, sup), half(strip.d, sup + 8)), (half(strip.dmin, sup), half(strip.dmin, sup + 8)));
                let scales = _mm_loadu_si128(strip.scales.as_ptr().add(b * STRIP) as *const __m128i);
                let mins = _mm_loadu_si128(strip.mins.as_ptr().add(b * STRIP) as *const __m128i);
                let float = |v: __m256i| _mm256_cvtepi32_ps(v);
                let (s0, s1) = (float(_mm256_cvtepi8_epi32(scales)), float(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(scales, scales))));
                let (m0, m1) = (float(_mm256_cvtepu8_epi32(mins)), float(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(mins, mins))));
                let sign = _mm256_set1_ps(-0.0);
                Block { d: (_mm256_mul_ps(d.0, s0), _mm256_mul_ps(d.1, s1)), m: (_mm256_xor_ps(_mm256_mul_ps(dmin.0, m0), sign), _mm256_xor_ps(_mm256_mul_ps(dmin.1, m1), sign)) }
            }
        }

        /// The 16 values of code row `row` (which lies in this block): `d · q`, `d · (q − 8)`
        /// or `d · q + m` (KIND 0, 1, 2), or `d · q + m` with signed byte codes (3), as
        /// [`super::dequantize`] and [`super::dequantize_k`] compute them.
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn row<const KIND: u8>(&self, codes: *const u8, row: usize) -> (__m256, __m256) {
            // SAFETY: the callers keep `row` inside the codes.
            unsafe {
                let (q0, q1) = if KIND == 0 || KIND == 3 {
                    let raw = _mm_loadu_si128(codes.add(row * STRIP) as *const __m128i);
                    (_mm256_cvtepi8_epi32(raw), _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(raw, raw)))
                } else {
                    // Eight bytes of two nibbles each: low nibbles are the even columns.
                    let nibble = _mm_set1_epi8(0x0F);
                    let raw = _mm_loadl_epi64(codes.add(row * STRIP / 2) as *const __m128i);
                    let q = _mm_unpacklo_epi8(_mm_and_si128(raw, nibble), _mm_and_si128(_mm_srli_epi16::<4>(raw), nibble));
                    let (q0, q1) = (_mm256_cvtepu8_epi32(q), _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(q, q)));
                    if KIND == 1 {
                        let eight = _mm256_set1_epi32(8);
                        (_mm256_sub_epi32(q0, eight), _mm256_sub_epi32(q1, eight))
                    } else {
                        (q0, q1)
                    }
                };
                let (f0, f1) = (_mm256_cvtepi32_ps(q0), _mm256_cvtepi32_ps(q1));
                if KIND >= 2 {
                    // The loader's `d * q + m` rounds twice, but d · q is exact (an f16's 11
                    // significant bits times a 4-bit code fit in f32's 24; for K-quants,
                    // times a scale of at most 7 bits and a code of at most 6), so one fused
                    // multiply-add gives the same bits.
                    (_mm256_fmadd_ps(self.d.0, f0, self.m.0), _mm256_fmadd_ps(self.d.1, f1, self.m.1))
                } else {
                    (_mm256_mul_ps(self.d.0, f0), _mm256_mul_ps(self.d.1, f1))
                }
            }
        }
    }

    /// acc[i] += Σ_kk x[i, kk] · w[kk] over all k rows of a block-coded strip (`scales`,
    /// `mins` and `codes` of that strip), each row of codes dequantised in registers and used
    /// at once; the same chains of fused multiply-adds as [`block`] over dequantised slices.
    ///
    /// # Safety
    /// AVX2, FMA and F16C present.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn fused(kind: BlockKind, scales: &[u16], mins: &[u16], codes: &[u8], x: &[f32], k: usize, acc: &mut [[f32; STRIP]]) {
        let rows = acc.len();
        assert!(rows <= ROWS && k % BLOCK == 0 && x.len() >= rows * k && scales.len() >= k / BLOCK * STRIP && mins.len() >= k / BLOCK * STRIP && codes.len() >= k * kind.code_bytes());
        macro_rules! by_rows {
            ($kind:literal) => {
                match rows {
                    0 => {}
                    1 => fused_of::<$kind, 1>(scales, mins, codes, x, k, acc),
                    2 => fused_of::<$kind, 2>(scales, mins, codes, x, k, acc),
                    3 => fused_of::<$kind, 3>(scales, mins, codes, x, k, acc),
                    4 => fused_of::<$kind, 4>(scales, mins, codes, x, k, acc),
                    5 => fused_of::<$kind, 5>(scales, mins, codes, x, k, acc),
                    _ => fused_of::<$kind, 6>(scales, mins, codes, x, k, acc),
                }
            };
        }
        // SAFETY: the assert above bounds every read and write.
        unsafe {
            match kind {
                BlockKind::Q8_0 => by_rows!(0),
                BlockKind::Q4_0 => by_rows!(1),
                BlockKind::Q4_1 => by_rows!(2),
                BlockKind::Bytes => by_rows!(3),
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn fused_of<const KIND: u8, const R: usize>(scales: &[u16], mins: &[u16], codes: &[u8], x: &[f32], k: usize, out: &mut [[f32; STRIP]]) {
        // SAFETY (whole body): bounded by `fused`'s assert.
        unsafe {
            let mut acc = load::<R>(out);
            for b in 0..k / BLOCK {
                let block = Block::new(scales, mins, b);
                for kk in b * BLOCK..(b + 1) * BLOCK {
                    fma_rows(&mut acc, x.as_ptr().add(kk), k, block.row::<KIND>(codes.as_ptr(), kk));
                }
            }
            store(&acc, out);
        }
    }

    /// [`fused`] for a K-quant strip.
    ///
    /// # Safety
    /// AVX2, FMA and F16C present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn fused_k(strip: KStrip, x: &[f32], k: usize, acc: &mut [[f32; STRIP]]) {
        let rows = acc.len();
        let cb = if strip.nibbles { STRIP / 2 } else { STRIP };
        assert!(rows <= ROWS && k % SUPER == 0 && x.len() >= rows * k && strip.scales.len() >= k / SUB * STRIP && strip.mins.len() >= k / SUB * STRIP);
        assert!(strip.d.len() >= k / SUPER * STRIP && strip.dmin.len() >= k / SUPER * STRIP && strip.codes.len() >= k * cb);
        macro_rules! by_rows {
            ($kind:literal) => {
                match rows {
                    0 => {}
                    1 => fused_k_of::<$kind, 1>(&strip, x, k, acc),
                    2 => fused_k_of::<$kind, 2>(&strip, x, k, acc),
                    3 => fused_k_of::<$kind, 3>(&strip, x, k, acc),
                    4 => fused_k_of::<$kind, 4>(&strip, x, k, acc),
                    5 => fused_k_of::<$kind, 5>(&strip, x, k, acc),
                    _ => fused_k_of::<$kind, 6>(&strip, x, k, acc),
                }
            };
        }
        // SAFETY: the asserts above bound every read and write.
        unsafe {
            if strip.nibbles {
                by_rows!(2)
            } else {
                by_rows!(3)
            }
        }
    }

    /// KIND: 2 nibble codes, 3 signed byte codes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn fused_k_of<const KIND: u8, const R: usize>(strip: &KStrip, x: &[f32], k: usize, out: &mut [[f32; STRIP]]) {
        // SAFETY (whole body): bounded by `fused_k`'s asserts.
        unsafe {
            let mut acc = load::<R>(out);
            for b in 0..k / SUB {
                let block = Block::k(strip, b);
                for kk in b * SUB..(b + 1) * SUB {
                    fma_rows(&mut acc, x.as_ptr().add(kk), k, block.row::<KIND>(strip.codes.as_ptr(), kk));
                }
            }
            store(&acc, out);
        }
    }

    /// [`super::dequantize_k`] with AVX2: rows k0..k0 + out.len() / 16 of a K-quant strip.
    ///
    /// # Safety
    /// AVX2, FMA and F16C present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dequantize_k(strip: KStrip, k0: usize, out: &mut [f32]) {
        let rows = out.len() / STRIP;
        let cb = if strip.nibbles { STRIP / 2 } else { STRIP };
        let end = k0 + rows;
        assert!(out.len() % (SUB * STRIP) == 0 && k0 % SUB == 0 && strip.scales.len() >= end / SUB * STRIP && strip.mins.len() >= end / SUB * STRIP);
        assert!(strip.d.len() >= end.div_ceil(SUPER) * STRIP && strip.dmin.len() >= end.div_ceil(SUPER) * STRIP && strip.codes.len() >= end * cb);
        // SAFETY: the asserts above bound every read and write.
        unsafe {
            for b in k0 / SUB..end / SUB {
                let block = Block::k(&strip, b);
                for row in b * SUB..(b + 1) * SUB {
                    let (w0, w1) = if strip.nibbles { block.row::<2>(strip.codes.as_ptr(), row) } else { block.row::<3>(strip.codes.as_ptr(), row) };
                    _mm256_storeu_ps(out.as_mut_ptr().add((row - k0) * STRIP), w0);
                    _mm256_storeu_ps(out.as_mut_ptr().add((row - k0) * STRIP + 8), w1);
                }
            }
        }
    }

    /// acc[i] += Σ_kk x[i, kk] · w[kk] over `depth` rows of w, one fused chain per value,
    /// for the rows in `acc` (at most six); x rows are `stride` apart.
    ///
    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma")]
    /// `prefetch`: the first row block also asks for the next slice of the strip (the 64 rows
    /// after these), so memory streams while it computes.
    pub unsafe fn block(x: &[f32], stride: usize, w: &[f32], acc: &mut [[f32; STRIP]], depth: usize, prefetch: bool) {
        let rows = acc.len();
        assert!(rows <= ROWS && (rows == 0 || x.len() >= (rows - 1) * stride + depth) && w.len() >= depth * STRIP);
        // SAFETY: the asserts above bound every read and write.
        unsafe {
            match rows {
                0 => {}
                1 => run::<1>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                2 => run::<2>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                3 => run::<3>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                4 => run::<4>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                5 => run::<5>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
                _ => run::<6>(x.as_ptr(), stride, w.as_ptr(), acc, depth, prefetch),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn run<const R: usize>(x: *const f32, stride: usize, w: *const f32, out: &mut [[f32; STRIP]], depth: usize, prefetch: bool) {
        // SAFETY (whole body): R rows of `depth` values at x (`stride` apart), `depth` rows of
        // 16 at w and R rows in out, per `block`.
        unsafe {
            let mut acc = load::<R>(out);
            for kk in 0..depth {
                if prefetch {
                    // A hint only: an address past the matrix is never dereferenced.
                    _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((kk + super::DEPTH) * STRIP) as *const i8);
                }
                fma_rows(&mut acc, x.add(kk), stride, (_mm256_loadu_ps(w.add(kk * STRIP)), _mm256_loadu_ps(w.add(kk * STRIP + 8))));
            }
            store(&acc, out);
        }
    }

    /// R rows' running sums (16 values each) into registers.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load<const R: usize>(out: &[[f32; STRIP]]) -> [[__m256; 2]; R] {
        // SAFETY: each row of out holds 16 values; the callers pass at least R rows.
        unsafe { std::array::from_fn(|r| [_mm256_loadu_ps(out[r].as_ptr()), _mm256_loadu_ps(out[r].as_ptr().add(8))]) }
    }

    /// The running sums back to their rows.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store<const R: usize>(acc: &[[__m256; 2]; R], out: &mut [[f32; STRIP]]) {
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            // SAFETY: each row of out holds 16 values.
            unsafe {
                _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
            }
        }
    }

    /// One step of every row's chain: acc[r] += x[r · stride] · w, for one row w of a strip.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn fma_rows<const R: usize>(acc: &mut [[__m256; 2]; R], x: *const f32, stride: usize, w: (__m256, __m256)) {
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: the callers keep R rows of x, `stride` apart.
            let xv = _mm256_set1_ps(unsafe { *x.add(r * stride) });
            a[0] = _mm256_fmadd_ps(xv, w.0, a[0]);
            a[1] = _mm256_fmadd_ps(xv, w.1, a[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for r in 0..m {
            for j in 0..n {
                out[r * n + j] = (0..k).map(|kk| x[r * k + kk] as f64 * w[kk * n + j] as f64).sum();
            }
        }
        out
    }

    #[test]
    fn equals_a_plain_product_and_does_not_depend_on_the_rows_beside() {
        for &(m, k, n) in &[(1usize, 5usize, 3usize), (7, 33, 40), (13, 64, 1000), (16, 576, 200)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 997) as f32 / 498.0 - 1.0).collect();
            let packed = PackedMatrix::new(&w, k, n);
            let mut out = vec![0f32; m * n];
            rows_matmul(&x, &packed, &mut out, m, false);
            for (a, b) in out.iter().zip(naive(&x, &w, m, k, n)) {
                assert!((*a as f64 - b).abs() < 1e-4 * (k as f64).sqrt(), "{m}x{k}x{n}: {a} vs {b}");
            }
            // Every row alone gives the same bits.
            for r in 0..m {
                let mut one = vec![0f32; n];
                rows_matmul(&x[r * k..(r + 1) * k], &packed, &mut one, 1, false);
                assert_eq!(one, out[r * n..(r + 1) * n], "{m}x{k}x{n} row {r}");
            }
            // Accumulating adds the product to what was there.
            let mut acc = vec![0.5f32; m * n];
            rows_matmul(&x, &packed, &mut acc, m, true);
            for (a, o) in acc.iter().zip(&out) {
                assert_eq!(*a, 0.5 + o);
            }
        }
    }

    /// `columns` columns of k values as random GGML blocks of `ty` (scales that are finite
    /// f16s, random codes), one byte vector per column.
    fn random_columns(ty: GgmlType, k: usize, columns: usize, seed: u64) -> Vec<Vec<u8>> {
        if ty.is_k_quant() {
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            return (0..columns).map(|_| super::super::quant::random_blocks(ty, k, &mut rng).unwrap()).collect();
        }
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let (_, size) = ty.block();
        (0..columns)
            .map(|_| {
                let mut col = Vec::new();
                for _ in 0..k / BLOCK {
                    let mut block: Vec<u8> = (0..size).map(|_| next() as u8).collect();
                    let scale = |v: u32| f16::from_f32((v % 2001) as f32 / 10_000.0 - 0.1).to_le_bytes();
                    block[0..2].copy_from_slice(&scale(next()));
                    if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                        block[2..4].copy_from_slice(&scale(next()));
                    }
                    col.extend(block);
                }
                col
            })
            .collect()
    }

    /// The [k, n] matrix whose columns are the dequantised blocks, row-major.
    fn dequantized(ty: GgmlType, k: usize, columns: &[Vec<u8>]) -> Vec<f32> {
        let n = columns.len();
        let mut w = vec![0f32; k * n];
        for (j, col) in columns.iter().enumerate() {
            for (kk, v) in super::super::quant::dequantize(ty, col).unwrap().into_iter().enumerate() {
                w[kk * n + j] = v;
            }
        }
        w
    }

    /// Every column of `packed` reads back as the row-major [k, n] `w` has it, bit for bit.
    fn assert_columns(packed: &PackedMatrix, w: &[f32], what: &str) {
        let (k, n) = (packed.k, packed.n);
        let mut col = vec![0f32; k];
        for j in 0..n {
            packed.column(j, &mut col);
            assert!((0..k).all(|kk| col[kk].to_bits() == w[kk * n + j].to_bits()), "{what} {k}x{n}: column {j} differs");
        }
    }

    /// The block-coded packing of `groups` (each a type and its columns) gives the values and
    /// products of the f32 packing of their dequantised values, bit for bit, in fewer than a
    /// third of the bytes.
    fn check_block_packing(groups: &[(GgmlType, Vec<Vec<u8>>)], k: usize, what: &str) {
        let refs: Vec<(GgmlType, Vec<&[u8]>)> = groups.iter().map(|(t, c)| (*t, c.iter().map(Vec::as_slice).collect())).collect();
        let blocks = PackedMatrix::from_stored(k, &refs).unwrap_or_else(|| panic!("{what}: not packed as blocks"));
        let n = blocks.n;
        // The dequantised columns side by side.
        let parts: Vec<(Vec<f32>, usize)> = groups.iter().map(|(t, c)| (dequantized(*t, k, c), c.len())).collect();
        let w: Vec<f32> = (0..k).flat_map(|kk| parts.iter().flat_map(move |(p, width)| p[kk * width..(kk + 1) * width].iter().copied())).collect();
        assert!(blocks.values().iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()), "{what} {k}x{n}: values differ from the loader's");
        assert_columns(&blocks, &w, what);
        let plain = PackedMatrix::plain(&w, k, n);
        assert!(blocks.bytes() * 3 < plain.bytes(), "{what}: {} bytes packed against {} as f32", blocks.bytes(), plain.bytes());
        // 1 to 100 rows: the shallow and deep slice depths, several row blocks, and a matrix
        // widened once for the call.
        for m in [1usize, 5, 7, 20, 50, WIDEN_ROWS + 4] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
            rows_matmul(&x, &blocks, &mut a, m, false);
            rows_matmul(&x, &plain, &mut b, m, false);
            assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()), "{what} {m}x{k}x{n}: products differ from the f32 packing");
        }
    }

    /// Every kernel level this CPU has (scalar, AVX2, AVX-512) gives the same bits for every
    /// packing and number of rows: a sample's text does not depend on the machine's vector
    /// width, and the AVX-512 kernels' 16-row passes give what the AVX2 kernels' 6-row ones do.
    #[test]
    fn every_kernel_level_gives_the_same_bits() {
        let levels = Isa::available();
        if levels.len() < 2 {
            eprintln!("only {levels:?} on this CPU: nothing to compare");
            return;
        }
        let w: Vec<f32> = (0..96 * 40).map(|i| ((i * 104729) % 997) as f32 / 498.0 - 1.0).collect();
        let bf16: Vec<f32> = w.iter().map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000)).collect();
        let f16s: Vec<f32> = w.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        let stored = |groups: &[(GgmlType, usize, u64)], k: usize| {
            let columns: Vec<(GgmlType, Vec<Vec<u8>>)> = groups.iter().map(|&(t, n, seed)| (t, random_columns(t, k, n, seed))).collect();
            let refs: Vec<(GgmlType, Vec<&[u8]>)> = columns.iter().map(|(t, c)| (*t, c.iter().map(Vec::as_slice).collect())).collect();
            PackedMatrix::from_stored(k, &refs).expect("block-coded")
        };
        let packings = [
            ("f32", PackedMatrix::plain(&w, 96, 40)),
            ("bf16", PackedMatrix::new(&bf16, 96, 40)),
            ("f16", PackedMatrix::new(&f16s, 96, 40)),
            ("Q8_0", stored(&[(GgmlType::Q8_0, 40, 1)], 96)),
            ("Q4_0", stored(&[(GgmlType::Q4_0, 40, 2)], 96)),
            ("Q4_1", stored(&[(GgmlType::Q4_1, 40, 3)], 96)),
            ("Q5_0 + Q8_0 + Q4_1", stored(&[(GgmlType::Q5_0, 20, 4), (GgmlType::Q8_0, 9, 5), (GgmlType::Q4_1, 7, 6)], 96)),
            ("Q4_K", stored(&[(GgmlType::Q4_K, 40, 7)], 512)),
            ("Q4_K + Q6_K", stored(&[(GgmlType::Q4_K, 20, 8), (GgmlType::Q6_K, 9, 9)], 512)),
        ];
        assert!(matches!(packings[1].1.strips, Strips::Half(Half::Bf16, _)) && matches!(packings[2].1.strips, Strips::Half(Half::F16, _)));
        for (what, packed) in &packings {
            let (k, n) = (packed.k, packed.n);
            for m in [1usize, 6, 7, 15, 16, 17, 40, WIDEN_ROWS + 4] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
                let products: Vec<Vec<f32>> = levels
                    .iter()
                    .map(|&isa| {
                        let mut out = vec![0.25f32; m * n];
                        rows_matmul_on(isa, &x, packed, &mut out, m, m % 2 == 1);
                        out
                    })
                    .collect();
                for (isa, p) in levels.iter().zip(&products).skip(1) {
                    assert!(p.iter().zip(&products[0]).all(|(a, b)| a.to_bits() == b.to_bits()), "{what} {m}x{k}x{n}: {isa:?} differs from {:?}", levels[0]);
                }
            }
        }
    }

    #[test]
    fn kernel_levels_are_named_as_the_environment_variable_takes_them() {
        assert_eq!(Isa::named("avx512"), Some(Isa::Avx512));
        assert_eq!(Isa::named(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::named("plain"), Some(Isa::Plain));
        assert_eq!(Isa::named("avx-2"), None);
        for isa in Isa::ALL {
            assert_eq!(Isa::named(isa.name()), Some(isa));
        }
        assert!(Isa::available().contains(&Isa::of_cpu()) && Isa::detect() <= Isa::of_cpu());
    }

    #[test]
    fn block_packing_gives_the_bits_of_the_dequantised_matrix() {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL] {
            for &(k, n) in &[(32usize, 1usize), (96, 17), (320, 40)] {
                check_block_packing(&[(ty, random_columns(ty, k, n, (k * n) as u64))], k, &format!("{ty:?}"));
            }
        }
        for ty in [GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS] {
            for &(k, n) in &[(256usize, 1usize), (512, 17), (768, 40)] {
                check_block_packing(&[(ty, random_columns(ty, k, n, (k * n) as u64))], k, &format!("{ty:?}"));
            }
        }
        // K-quants mix in one matrix (q and k as Q4_K beside v as Q6_K, in a Q4_K_M file),
        // in groups that do not end on a strip's edge.
        let k = 512;
        let mixed = [(GgmlType::Q4_K, random_columns(GgmlType::Q4_K, k, 20, 1)), (GgmlType::Q6_K, random_columns(GgmlType::Q6_K, k, 9, 2)), (GgmlType::Q5_K, random_columns(GgmlType::Q5_K, k, 16, 3))];
        check_block_packing(&mixed, k, "Q4_K + Q6_K + Q5_K");
        // So do the 32-value types (Q5_0 beside Q8_0 where a `Q4_K_M` model's rows are not
        // whole 256-value blocks), with and without minimums.
        let k = 576;
        let mixed32 =
            [(GgmlType::Q5_0, random_columns(GgmlType::Q5_0, k, 20, 4)), (GgmlType::Q8_0, random_columns(GgmlType::Q8_0, k, 9, 5)), (GgmlType::Q4_1, random_columns(GgmlType::Q4_1, k, 7, 6))];
        check_block_packing(&mixed32, k, "Q5_0 + Q8_0 + Q4_1");
        // Q4_K alone keeps its nibbles; mixed, codes take a byte.
        let k = 512;
        let q4 = PackedMatrix::from_stored(k, &[(GgmlType::Q4_K, mixed[0].1.iter().map(Vec::as_slice).collect())]).unwrap();
        assert!(matches!(&q4.strips, Strips::KBlocks(b) if b.nibbles));
        assert_eq!(q4.bytes(), 2 * (k / SUPER * STRIP * 2 * 2 + k / SUB * STRIP * 2 + k * STRIP / 2));
    }

    #[test]
    fn values_that_a_half_type_holds_pack_in_16_bits_with_the_f32_products() {
        for half in [Half::Bf16, Half::F16] {
            for &(k, n) in &[(5usize, 3usize), (64, 17), (300, 40)] {
                let w: Vec<f32> = (0..k * n)
                    .map(|i| {
                        let v = ((i * 104729) % 997) as f32 / 49.8 - 10.0;
                        half.widen(if half == Half::Bf16 { (v.to_bits() >> 16) as u16 } else { f16::from_f32(v).to_bits() })
                    })
                    .collect();
                let packed = PackedMatrix::new(&w, k, n);
                assert!(matches!(packed.strips, Strips::Half(h, _) if h == half), "{half:?} {k}x{n}: not packed in 16 bits");
                assert_eq!(packed.bytes(), n.div_ceil(STRIP) * STRIP * k * 2);
                assert!(packed.values().iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()), "{half:?} {k}x{n}: values changed");
                assert_columns(&packed, &w, &format!("{half:?}"));
                assert_columns(&PackedMatrix::plain(&w, k, n), &w, "f32");
                let plain = PackedMatrix::plain(&w, k, n);
                for m in [1usize, 5, 7, 20, WIDEN_ROWS + 4] {
                    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
                    let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
                    rows_matmul(&x, &packed, &mut a, m, false);
                    rows_matmul(&x, &plain, &mut b, m, false);
                    assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()), "{half:?} {m}x{k}x{n}: products differ from the f32 packing");
                }
            }
        }
        // One value that neither holds keeps the matrix in f32.
        let mut w = vec![0.5f32; 64];
        w[17] = 0.1;
        assert!(matches!(PackedMatrix::new(&w, 8, 8).strips, Strips::F32(_)));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_dequantisation_equals_value_by_value() {
        if Isa::of_cpu() < Isa::Avx2 {
            return;
        }
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q6_K] {
            let (k, n) = (512, 16);
            let columns = random_columns(ty, k, n, 99);
            let refs: Vec<&[u8]> = columns.iter().map(Vec::as_slice).collect();
            let packed = PackedMatrix::from_stored(k, &[(ty, refs)]).unwrap();
            let (mut slow, mut vector) = (vec![0f32; k * STRIP], vec![1f32; k * STRIP]);
            // From row 64 for K-quants: a slice that starts inside a super-block.
            let from = match &packed.strips {
                Strips::Blocks(b) => {
                    dequantize(b.kind, &b.scales, &b.mins, &b.codes, &mut slow);
                    // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
                    unsafe { avx2::dequantize(b.kind, &b.scales, &b.mins, &b.codes, &mut vector) };
                    0
                }
                Strips::KBlocks(b) => {
                    dequantize_k(b.strip(0, k), 64, &mut slow[64 * STRIP..]);
                    // SAFETY: as above.
                    unsafe { avx2::dequantize_k(b.strip(0, k), 64, &mut vector[64 * STRIP..]) };
                    64 * STRIP
                }
                _ => unreachable!(),
            };
            let (slow, vector) = (&slow[from..], &vector[from..]);
            assert!(slow.iter().zip(vector).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty:?}");
        }
    }

    #[test]
    fn other_types_and_partial_blocks_are_left_to_the_f32_packing() {
        fn of(c: &[Vec<u8>]) -> Vec<&[u8]> {
            c.iter().map(Vec::as_slice).collect()
        }
        let columns = random_columns(GgmlType::Q4_1, 64, 3, 1);
        let one = |ty: GgmlType, k: usize, columns: Vec<&[u8]>| PackedMatrix::from_stored(k, &[(ty, columns)]);
        assert!(one(GgmlType::Q6_K, 64, of(&columns)).is_none());
        assert!(one(GgmlType::F16, 64, of(&columns)).is_none());
        // A column that is not k / 32 whole blocks, or k not a multiple of 32.
        assert!(one(GgmlType::Q4_1, 96, of(&columns)).is_none());
        assert!(one(GgmlType::Q4_1, 48, of(&columns)).is_none());
        assert!(one(GgmlType::Q4_1, 64, vec![]).is_none());
        let q4_1 = one(GgmlType::Q4_1, 64, of(&columns)).unwrap();
        assert!(matches!(&q4_1.strips, Strips::Blocks(b) if b.kind == BlockKind::Q4_1));
        // The 32-value types mix (as bytes), but not with K-quants; K-quants need k a multiple
        // of 256.
        let q4_0 = random_columns(GgmlType::Q4_0, 256, 2, 2);
        let q4_k = random_columns(GgmlType::Q4_K, 256, 2, 3);
        let q4_1 = random_columns(GgmlType::Q4_1, 256, 2, 4);
        let mixed = PackedMatrix::from_stored(256, &[(GgmlType::Q4_0, of(&q4_0)), (GgmlType::Q4_1, of(&q4_1))]).unwrap();
        assert!(matches!(&mixed.strips, Strips::Blocks(b) if b.kind == BlockKind::Bytes));
        assert!(PackedMatrix::from_stored(256, &[(GgmlType::Q4_0, of(&q4_0)), (GgmlType::Q4_K, of(&q4_k))]).is_none());
        assert!(PackedMatrix::from_stored(256, &[(GgmlType::Q4_K, of(&q4_k))]).is_some());
        let short = random_columns(GgmlType::Q4_K, 256, 1, 5);
        assert!(PackedMatrix::from_stored(512, &[(GgmlType::Q4_K, of(&short))]).is_none());
        assert!(PackedMatrix::from_stored(256, &[]).is_none());
    }
}
