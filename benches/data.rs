//! Data benchmarks, printed as figures: loading and preprocessing a MovieLens-1M-sized world
//! from its real files (target under 5 s on 2 cores), and the peak memory of streaming an
//! Amazon reviews file, beside the file's uncompressed size.
//!
//! Run: `cargo bench --bench data` (DAGRUN_BENCH_AMAZON_USERS sets the Amazon world's size).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_dagrun");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run(dir: &Path, args: &[&str]) {
    let st = Command::new(BIN).args(args).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(st.success(), "dagrun {args:?} failed");
}

/// Runs dagrun and returns (wall seconds, peak resident memory in bytes) of that process.
fn run_measured(dir: &Path, args: &[&str]) -> (f64, u64) {
    let t = Instant::now();
    let child = Command::new(BIN).args(args).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; rusage is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert_eq!(status, 0, "dagrun {args:?} failed");
    (t.elapsed().as_secs_f64(), usage.ru_maxrss as u64 * 1024)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    println!("dagrun data benchmarks; medians of 3 runs\n");

    let t = Instant::now();
    run(d, &["synth", "--format", "movielens-1m", "--out", "ml1m", "--users", "6040", "--items", "3700", "--ratings-per-user", "165"]);
    println!("synthetic world, MovieLens-1M size (6,040 users, 3,700 items, ~1M ratings): generated and written in {:.2} s", t.elapsed().as_secs_f64());
    std::fs::write(d.join("ml.yaml"), "pipeline: ml\nnodes:\n  data: { kind: load, params: { dataset: movielens-1m, path: ml1m } }\n").unwrap();
    run(d, &["ml.yaml", "-q"]);
    let secs = median((0..3).map(|_| run_measured(d, &["ml.yaml", "-q", "--force", "data"]).0).collect());
    println!("load + KAR preprocessing + write tables, MovieLens-1M size: {secs:.2} s (whole process; target < 5 s)");

    let users: u32 = std::env::var("DAGRUN_BENCH_AMAZON_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let t = Instant::now();
    let users_s = users.to_string();
    run(d, &["synth", "--format", "amazon-books", "--out", "amz", "--users", &users_s, "--items", "4000", "--ratings-per-user", "100", "--min-ratings", "60"]);
    let gz = std::fs::metadata(d.join("amz/Books_5.json.gz")).unwrap().len();
    let mut raw_bytes = 0u64;
    {
        use std::io::Read;
        let mut r = flate2::read::MultiGzDecoder::new(std::fs::File::open(d.join("amz/Books_5.json.gz")).unwrap());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            raw_bytes += n as u64;
        }
    }
    println!(
        "\nAmazon-format world ({users} users, ~{}M reviews): {:.0} MB gzip, {:.0} MB as JSON, written in {:.1} s",
        users as f64 * 100.0 / 1e6,
        gz as f64 / 1e6,
        raw_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    std::fs::write(d.join("amz.yaml"), "pipeline: amz\nnodes:\n  data: { kind: load, params: { dataset: amazon-books, path: amz } }\n").unwrap();
    let (secs, rss) = run_measured(d, &["amz.yaml", "-q"]);
    println!(
        "load + preprocess it: {secs:.1} s, peak memory {:.0} MB = {:.2}x the JSON it streamed ({:.0} bytes per review)",
        rss as f64 / 1e6,
        rss as f64 / raw_bytes as f64,
        rss as f64 / (users as f64 * 100.0)
    );
}
