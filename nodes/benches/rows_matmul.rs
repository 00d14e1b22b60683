//! The LLM host path's weight products (`rows_matmul`), printed as figures (never asserted):
//! GFLOP/s for SmolLM2-135M's MLP shapes, its weights as f32 and as Q4_1 codes, at the row
//! counts generation uses (1: batch-1 decode; 16: a batched decode step; 64 and 256: prefill
//! blocks), with every kernel level this CPU has (scalar, AVX2, AVX-512) side by side, so what
//! a level brings is measured in one run. The levels give the same bits (a test holds them
//! to it); only the time differs. Medians of 7.
//!
//! Run: `cargo bench -p dagrun-nodes --bench rows_matmul`

use std::time::Instant;

use dagrun_nodes::models::llm::quant::{quantize, GgmlType};
use dagrun_nodes::models::llm::rows_matmul::{rows_matmul_on, Isa, PackedMatrix};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Deterministic values in about ±0.5 that neither bf16 nor f16 holds exactly (so the f32
/// packing is kept).
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919 + seed * 104_729) % 100_003) as f32 / 100_003.0 - 0.5 + 1e-7).collect()
}

/// A [k, n] matrix packed as f32 and as Q4_1 blocks of its columns.
fn matrices(k: usize, n: usize) -> (PackedMatrix, PackedMatrix) {
    let w = values(k * n, k + n);
    let plain = PackedMatrix::new(&w, k, n);
    let columns: Vec<Vec<u8>> = (0..n).map(|j| quantize(GgmlType::Q4_1, &(0..k).map(|kk| w[kk * n + j]).collect::<Vec<f32>>()).expect("Q4_1 blocks")).collect();
    let q4_1 = PackedMatrix::from_stored(k, &[(GgmlType::Q4_1, columns.iter().map(Vec::as_slice).collect())]).expect("block-coded packing");
    (plain, q4_1)
}

fn gflops(isa: Isa, w: &PackedMatrix, m: usize) -> f64 {
    let x = values(m * w.k, m);
    let mut out = vec![0f32; m * w.n];
    // About 50 ms per timing.
    let reps = (25_000_000 / (m * w.k * w.n)).max(1);
    rows_matmul_on(isa, &x, w, &mut out, m, false);
    let t = median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    rows_matmul_on(isa, &x, w, &mut out, m, false);
                }
                t.elapsed().as_secs_f64() / reps as f64
            })
            .collect(),
    );
    2.0 * (m * w.k * w.n) as f64 / t / 1e9
}

fn main() {
    let levels = Isa::available();
    println!("rows_matmul GFLOP/s on {} threads, medians of 7; kernel levels this CPU has: {}", rayon::current_num_threads(), levels.iter().map(|l| l.name()).collect::<Vec<_>>().join(", "));
    print!("{:<22} {:>5} {:>6}", "matrix", "rows", "type");
    for l in &levels {
        print!(" {:>8}", l.name());
    }
    println!();
    for (name, k, n) in [("gate+up 576 x 3072", 576, 3072), ("down 1536 x 576", 1536, 576)] {
        let (plain, q4_1) = matrices(k, n);
        for m in [1usize, 16, 64, 256] {
            for (ty, w) in [("f32", &plain), ("Q4_1", &q4_1)] {
                print!("{name:<22} {m:>5} {ty:>6}");
                for &l in &levels {
                    // The scalar kernels take seconds on the larger shapes; one size says enough.
                    if l == Isa::Plain && m > 16 {
                        print!(" {:>8}", "-");
                        continue;
                    }
                    print!(" {:>8.1}", gflops(l, w, m));
                }
                println!();
            }
        }
    }
}
