//! Engine benchmarks, printed as figures (never asserted): the wall time of a no-op rerun of a
//! 20-node pipeline, planning a generated 1,000-node pipeline, and artifact hashing
//! throughput. Where a reference tool is installed it is measured in the same run and printed
//! beside ours: DVC (`dvc`, a 10-stage no-op `dvc repro`) and `b3sum`. Set DAGRUN_BENCH_GIB to
//! change the hashing file size (default 1).
//!
//! Run: `cargo bench --features test-kinds --bench engine`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_dagrun");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_cmd(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let st = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().expect("spawn");
    assert!(st.success(), "{cmd:?} failed");
    t.elapsed().as_secs_f64()
}

fn on_path(tool: &str) -> Option<String> {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// 20 nodes: 4 sources, each followed by a chain of scales, then sums joining the chains.
fn twenty_node_pipeline() -> String {
    let mut s = String::from("pipeline: bench20\nseed: 1\nnodes:\n");
    for c in 0..4 {
        s.push_str(&format!("  s{c}: {{ kind: test-source, params: {{ rows: 1000, value: {c}, noise: true }} }}\n"));
        for k in 1..4 {
            let prev = if k == 1 { format!("s{c}") } else { format!("c{c}_{}", k - 1) };
            s.push_str(&format!("  c{c}_{k}: {{ kind: test-scale, inputs: {{ in: {prev} }}, params: {{ factor: {k} }} }}\n"));
        }
    }
    s.push_str("  j0: { kind: test-sum, inputs: { left: c0_3, right: c1_3 } }\n");
    s.push_str("  j1: { kind: test-sum, inputs: { left: c2_3, right: c3_3 } }\n");
    s.push_str("  j2: { kind: test-sum, inputs: { left: j0.out, right: j1.out } }\n");
    s.push_str("  j3: { kind: test-scale, inputs: { in: j2.out } }\n");
    assert_eq!(s.matches("kind:").count(), 20);
    s
}

fn bench_noop(dir: &Path) -> f64 {
    std::fs::write(dir.join("p.yaml"), twenty_node_pipeline()).unwrap();
    let run = || time_cmd(Command::new(BIN).args(["p.yaml", "--quiet"]).current_dir(dir));
    run();
    for _ in 0..3 {
        run();
    }
    median((0..21).map(|_| run()).collect())
}

fn bench_dvc(dir: &Path, dvc: &str) -> Option<f64> {
    let d = dir.join("dvc10");
    std::fs::create_dir_all(&d).ok()?;
    let ok = |args: &[&str]| Command::new(dvc).args(args).current_dir(&d).stdout(Stdio::null()).stderr(Stdio::null()).status().ok().is_some_and(|s| s.success());
    if !ok(&["init", "--no-scm", "-q"]) {
        return None;
    }
    std::fs::write(d.join("in0.txt"), "0\n").ok()?;
    for i in 0..10 {
        let (dep, out) = (format!("in{i}.txt"), format!("in{}.txt", i + 1));
        if !ok(&["stage", "add", "-q", "-n", &format!("s{i}"), "-d", &dep, "-o", &out, &format!("cp {dep} {out}")]) {
            return None;
        }
    }
    if !ok(&["repro", "-q"]) {
        return None;
    }
    let runs: Vec<f64> = (0..5).map(|_| time_cmd(Command::new(dvc).args(["repro", "-q"]).current_dir(&d))).collect();
    Some(median(runs))
}

/// 1,000 nodes, each reading one or two earlier nodes.
fn thousand_node_pipeline() -> String {
    let mut s = String::from("pipeline: bench1000\nnodes:\n");
    for i in 0..1000 {
        if i < 10 {
            s.push_str(&format!("  n{i}: {{ kind: test-source, params: {{ rows: {} }} }}\n", i + 1));
        } else if i % 3 == 0 {
            let (a, b) = ((i * 7) % i, (i * 13 + 5) % i);
            let b = if a == b { (b + 1) % i } else { b };
            s.push_str(&format!("  n{i}: {{ kind: test-sum, inputs: {{ left: n{a}.out, right: n{b}.out }} }}\n"));
        } else {
            let a = (i * 31 + 3) % i;
            let src = if a % 3 == 0 && a >= 10 { format!("n{a}.out") } else { format!("n{a}") };
            s.push_str(&format!("  n{i}: {{ kind: test-scale, inputs: {{ in: {src} }}, params: {{ factor: {} }} }}\n", i % 7 + 1));
        }
    }
    s
}

fn bench_plan(dir: &Path) -> f64 {
    std::fs::write(dir.join("big.yaml"), thousand_node_pipeline()).unwrap();
    let run = || time_cmd(Command::new(BIN).args(["plan", "big.yaml", "--json"]).current_dir(dir));
    run();
    median((0..7).map(|_| run()).collect())
}

fn bench_hash(dir: &Path, gib: f64) -> (f64, Option<f64>, f64) {
    use rand::{RngCore, SeedableRng};
    let bytes = (gib * (1u64 << 30) as f64) as usize;
    let path = dir.join("blob.bin");
    {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut buf = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            rng.fill_bytes(&mut buf[..n]);
            std::io::Write::write_all(&mut f, &buf[..n]).unwrap();
            left -= n;
        }
    }
    let gb = bytes as f64 / 1e9;
    dagrun_cache::hash_file(&path).unwrap(); // warm the page cache
    let ours = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                dagrun_cache::hash_file(&path).unwrap();
                gb / t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let b3 = on_path("b3sum").map(|b3| {
        median((0..5).map(|_| gb / time_cmd(Command::new(&b3).args(["--no-names"]).arg(&path))).collect())
    });
    // The whole publish-side listing (hash every file of an artifact directory).
    let art = dir.join("artifact");
    std::fs::create_dir_all(&art).unwrap();
    std::fs::rename(&path, art.join("weights.bin")).unwrap();
    for i in 0..64 {
        std::fs::write(art.join(format!("small{i}.json")), format!("{{\"i\": {i}}}")).unwrap();
    }
    let listing = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                dagrun_cache::Listing::of_dir(&art).unwrap();
                gb / t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    (ours, b3, listing)
}

fn main() {
    // `cargo bench` passes flags such as --bench; nothing to parse.
    let dir = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("dagrun engine benchmarks ({cores} cores); medians of repeated runs\n");

    let noop = bench_noop(dir.path());
    print!("no-op rerun, 20-node pipeline:     {:7.1} ms   (target < 50 ms)", noop * 1e3);
    match on_path("dvc").and_then(|dvc| bench_dvc(dir.path(), &dvc)) {
        Some(d) => println!("   | DVC no-op repro, 10 stages: {:7.1} ms (same run)", d * 1e3),
        None => println!("   | DVC: not installed (0.49 s seen on this machine kind)"),
    }

    let plan = bench_plan(dir.path());
    println!("plan, generated 1,000-node pipeline: {:7.1} ms   (target < 1000 ms; whole process: parse, check, plan)", plan * 1e3);

    let gib: f64 = std::env::var("DAGRUN_BENCH_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let (ours, b3, listing) = bench_hash(dir.path(), gib);
    print!("hash one {gib} GiB file:                {ours:7.2} GB/s (target >= 5 GB/s)");
    match b3 {
        Some(b) => println!("   | b3sum: {b:5.2} GB/s (same run)"),
        None => println!("   | b3sum: not installed (11 GB/s seen on this machine kind)"),
    }
    println!("hash an artifact directory:          {listing:7.2} GB/s (1 large + 64 small files)");
}
