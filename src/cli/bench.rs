//! `dagrun bench rerank`: reranker training throughput on a device and, on a GPU, the largest
//! difference between its scores and the CPU's for the same weights.

use clap::{Args, Subcommand};
use dagrun_engine::Device;
use dagrun_nodes::models::rerank::bench::{run, BenchRow, BenchSettings};

use super::util::{CliError, CliResult};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Train DLCM and PRM, with and without knowledge, and print lists per second.
    Rerank(RerankBenchArgs),
}

#[derive(Args, Debug)]
pub struct RerankBenchArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 4000)]
    pub users: u32,
    #[arg(long, default_value_t = 2000)]
    pub items: u32,
    /// Knowledge dimension (384 like MiniLM, 768 like BERT-base).
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Timed epochs (after one warm-up epoch).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
}

pub fn bench(c: BenchCommand) -> CliResult {
    match c {
        BenchCommand::Rerank(a) => rerank(a),
    }
}

fn print_row(r: &BenchRow) {
    let diff = r.max_diff.map(|d| format!("{d:.2e}")).unwrap_or_else(|| "-".into());
    println!("{:<10} {:>12.0} {:>22}", r.name, r.lists_per_second, diff);
}

fn rerank(a: RerankBenchArgs) -> CliResult {
    let device: Device = a.device.parse().map_err(CliError::Usage)?;
    let s = BenchSettings { users: a.users, items: a.items, dim: a.dim, batch_size: a.batch, epochs: a.epochs };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "reranker training on {device} ({threads} CPU threads): synthetic world of {} users, {} items; knowledge dim {}, batch {}, {} timed epochs",
        a.users, a.items, a.dim, a.batch, a.epochs
    );
    println!("{:<10} {:>12} {:>22}", "model", "lists/s", "max |device - cpu|");
    let fail = |e: String| CliError::Failed(anyhow::anyhow!(e));
    match device {
        Device::Cpu => {
            run::<dagrun_nodes::models::backend::CpuTrain>(&s, None, &mut print_row).map_err(fail)?;
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => {
            let dev = dagrun_nodes::models::backend::cuda_device(i);
            let rows = run::<dagrun_nodes::models::backend::GpuTrain>(&s, Some(&dev), &mut print_row).map_err(fail)?;
            let worst = rows.iter().filter_map(|r| r.max_diff).fold(0f32, f32::max);
            println!("largest CUDA vs CPU score difference: {worst:.2e} ({})", if worst < 1e-3 { "within 1e-3" } else { "OVER 1e-3" });
            if worst >= 1e-3 {
                return Ok(super::EXIT_FAILED);
            }
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => return Err(CliError::Usage("this dagrun was built without CUDA; rebuild with `--features cuda`".into())),
    }
    Ok(0)
}

