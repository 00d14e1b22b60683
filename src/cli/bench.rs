//! `dagrun bench rerank`: reranker training throughput on a device and, on a GPU, the largest
//! difference between its scores and the CPU's for the same weights.
//! `dagrun bench llm`: LLM prefill, decode and sampling throughput, optionally beside
//! Hugging Face transformers run on the same token ids.
//! `dagrun bench encode`: encoder texts per second, optionally beside sentence-transformers.

use clap::{Args, Subcommand};
use dagrun_engine::Device;
use dagrun_nodes::models::rerank::bench::{run, BenchRow, BenchSettings};

use super::util::{CliError, CliResult};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Train DLCM and PRM, with and without knowledge, and print lists per second.
    Rerank(RerankBenchArgs),
    /// Time LLM prefill, batch-1 decode and batched sampling; with --reference, also
    /// Hugging Face transformers on the same prompts, printed beside.
    Llm(LlmBenchArgs),
    /// Time an encoder embedding 40–80-word texts; with --reference, also
    /// sentence-transformers on the same texts, printed beside.
    Encode(EncodeBenchArgs),
    /// Time LoRA DPO (pairs per second, reference pass included); with --reference, also
    /// TRL's DPOTrainer with PEFT on the same pairs, printed beside.
    Dpo(DpoBenchArgs),
}

#[derive(Args, Debug)]
pub struct DpoBenchArgs {
    /// A built-in model name, a .gguf file or a Hugging Face model directory.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Pairs per timed epoch.
    #[arg(long, default_value_t = 16)]
    pub pairs: usize,
    /// Tokens of each user prompt.
    #[arg(long, default_value_t = 200)]
    pub prompt_tokens: usize,
    /// Tokens of each answer (±20%).
    #[arg(long, default_value_t = 100)]
    pub answer_tokens: usize,
    /// Pairs per optimiser step.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Timed epochs after a warm-up step; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A Python with torch, transformers, trl and peft: runs bench/dpo_trl.py beside.
    #[arg(long, value_name = "PYTHON")]
    pub reference: Option<String>,
    /// Where built-in models are downloaded (its downloads/ folder); default as for `run`.
    #[arg(long)]
    pub cache_dir: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct EncodeBenchArgs {
    /// A built-in encoder name or a Hugging Face BERT directory.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    pub model: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Texts embedded per repetition.
    #[arg(long, default_value_t = 2000)]
    pub texts: usize,
    /// Texts per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed repetitions after a warm-up; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A Python with torch and sentence-transformers: runs bench/encode_sentence_transformers.py beside.
    #[arg(long, value_name = "PYTHON")]
    pub reference: Option<String>,
    /// Where built-in models are downloaded (its downloads/ folder); default as for `run`.
    #[arg(long)]
    pub cache_dir: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct LlmBenchArgs {
    /// A built-in model name, a .gguf file or a Hugging Face model directory.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Tokens in the batch-1 prompt (the batched prompts vary ±10% around it).
    #[arg(long, default_value_t = 200)]
    pub prompt_tokens: usize,
    /// New tokens per row (EOS ignored).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Prompts sampled together.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Timed repetitions after a warm-up; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A Python with torch, transformers, accelerate and gguf: runs bench/llm_transformers.py beside.
    #[arg(long, value_name = "PYTHON")]
    pub reference: Option<String>,
    /// Where built-in models are downloaded (its downloads/ folder); default as for `run`.
    #[arg(long)]
    pub cache_dir: Option<std::path::PathBuf>,
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
        BenchCommand::Llm(a) => llm(a),
        BenchCommand::Encode(a) => encode(a),
        BenchCommand::Dpo(a) => dpo(a),
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


/// The model named by `--model`, fetched into the cache's downloads/ when it is a built-in.
fn bench_model(model: &str, cache_dir: &Option<std::path::PathBuf>) -> Result<(dagrun_nodes::models::source::ModelSource, std::path::PathBuf), CliError> {
    let source = dagrun_nodes::models::source::ModelSource::parse(model).map_err(CliError::Usage)?;
    let downloads = super::util::cache_dir(cache_dir, None).join("downloads");
    let path = source.materialise(&downloads).map_err(|e| CliError::Failed(anyhow::anyhow!(e)))?;
    Ok((source, path))
}

/// One figure of a benchmark table: ours, the reference's (if it ran) and their ratio.
fn print_figure(name: &str, ours: f64, theirs: Option<f64>, width: usize) {
    print_figure_to(name, ours, theirs, width, 1);
}

/// [`print_figure`] with `decimals` places (small figures such as DPO's pairs/s).
fn print_figure_to(name: &str, ours: f64, theirs: Option<f64>, width: usize, decimals: usize) {
    let (t, r) = theirs.map(|t| (format!("{t:.decimals$}"), format!("{:.2}x", ours / t))).unwrap_or(("-".into(), "-".into()));
    println!("{name:<24} {ours:>10.decimals$} {t:>width$} {r:>8}");
}

/// How far past PyTorch's own TF32-vs-f32 logit difference dagrun's CUDA-vs-CPU one may go:
/// Burn's TF32 kernels round differently from cuBLAS's (measured ~1.4x on an H200).
const TF32_SLACK: f32 = 3.0;

/// What the transformers script reports.
struct Reference {
    figures: dagrun_nodes::models::llm::bench::Figures,
    version: String,
    /// On a GPU: PyTorch's largest |GPU - CPU| logit difference with TF32 matmuls on.
    tf32_logit_diff: Option<f32>,
    /// The same with TF32 off.
    gpu_f32_logit_diff: Option<f32>,
}

/// The reference script, embedded so the command works from any directory.
const TRANSFORMERS_SCRIPT: &str = include_str!("../../bench/llm_transformers.py");

fn llm(a: LlmBenchArgs) -> CliResult {
    use dagrun_nodes::models::llm::bench;
    let device: Device = a.device.parse().map_err(CliError::Usage)?;
    if a.prompt_tokens < 10 || a.new_tokens == 0 || a.batch == 0 || a.repeats == 0 {
        return Err(CliError::Usage("--prompt-tokens must be at least 10 and --new-tokens, --batch, --repeats at least 1".into()));
    }
    let fail = |e: String| CliError::Failed(anyhow::anyhow!(e));
    let (source, path) = bench_model(&a.model, &a.cache_dir)?;
    let s = bench::BenchSettings { prompt_tokens: a.prompt_tokens, new_tokens: a.new_tokens, batch: a.batch, repeats: a.repeats };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // On the CPU the figures depend on the weight products' kernels (capped by DAGRUN_CPU_KERNELS).
    let kernels = if matches!(device, Device::Cuda(_)) { String::new() } else { format!(", {} kernels", dagrun_nodes::models::llm::rows_matmul::Isa::detect().name()) };
    println!(
        "LLM {} on {device} ({threads} CPU threads{kernels}): prefill of a {}-token prompt; batch-1 greedy decode of {} tokens; sampling {} prompts of ~{} tokens x {} new tokens at temperature 0.7; medians of {}",
        source.describe(), a.prompt_tokens, a.new_tokens, a.batch, a.prompt_tokens, a.new_tokens, a.repeats
    );
    let (prompts, ours) = bench::measure(&path, &s, device, &mut |what| eprintln!("timing {what}...")).map_err(fail)?;
    let reference = match &a.reference {
        None => None,
        Some(python) => {
            eprintln!("timing transformers...");
            Some(transformers(python, &path, &prompts, &device, threads).map_err(fail)?)
        }
    };
    let rows = [("prefill (prompt tok/s)", ours.prefill, reference.as_ref().map(|r| r.figures.prefill)), ("batch-1 decode (tok/s)", ours.decode, reference.as_ref().map(|r| r.figures.decode)), ("sampling (new tok/s)", ours.sampling, reference.as_ref().map(|r| r.figures.sampling)), ("  its prefill (tok/s)", ours.batch_prefill, reference.as_ref().map(|r| r.figures.batch_prefill))];
    println!("{:<24} {:>10} {:>14} {:>8}", "figure", "dagrun", "transformers", "ratio");
    for (name, us, them) in rows {
        print_figure(name, us, them, 14);
    }
    if let Some(r) = &reference {
        println!("reference: {}", r.version);
    }
    if let Some(d) = ours.max_logit_diff {
        println!("largest {device} vs CPU next-token logit difference: {d:.2e}");
        match reference.as_ref().and_then(|r| r.tf32_logit_diff.map(|t| (t, r.gpu_f32_logit_diff))) {
            Some((tf32, torch_f32)) => {
                // Burn's CUDA backend runs f32 matmuls on TF32 tensor cores (cubek-matmul picks
                // TF32 staging for f32 inputs), so the yardstick is PyTorch's own TF32 error on
                // the same prompts; a masking or layout bug shows as differences of whole logits.
                let bound = (TF32_SLACK * tf32).max(1e-3);
                let f32_note = torch_f32.map(|f| format!(", TF32 off {f:.2e}")).unwrap_or_default();
                println!("  PyTorch on the same GPU vs its CPU: TF32 matmuls {tf32:.2e}{f32_note}");
                let ok = d <= bound;
                println!("  {} (bound: {TF32_SLACK}x PyTorch's TF32 difference = {bound:.2e})", if ok { "within TF32 rounding" } else { "OVER the TF32 bound" });
                if !ok {
                    return Ok(super::EXIT_FAILED);
                }
            }
            None => println!("  (run with --reference to judge it against PyTorch's TF32 difference on the same GPU)"),
        }
    }
    Ok(0)
}

/// Runs the embedded transformers script on the same prompts; its figures and version line.
fn transformers(python: &str, model: &std::path::Path, prompts: &dagrun_nodes::models::llm::bench::BenchPrompts, device: &Device, threads: usize) -> Result<Reference, String> {
    let input = serde_json::to_value(prompts).map_err(|e| e.to_string())?;
    let v = run_reference(python, TRANSFORMERS_SCRIPT, "llm_transformers.py", model, &input, device, threads, "torch, transformers, accelerate (for GGUF files) and gguf")?;
    let figures: dagrun_nodes::models::llm::bench::Figures = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let diff = |k: &str| v[k].as_f64().map(|x| x as f32);
    Ok(Reference { figures, version: v["version"].as_str().unwrap_or("transformers").to_string(), tf32_logit_diff: diff("tf32_logit_diff"), gpu_f32_logit_diff: diff("gpu_f32_logit_diff") })
}

/// The encoder reference script, embedded so the command works from any directory.
const SENTENCE_TRANSFORMERS_SCRIPT: &str = include_str!("../../bench/encode_sentence_transformers.py");

fn encode(a: EncodeBenchArgs) -> CliResult {
    use dagrun_nodes::models::encoder::bench;
    use dagrun_nodes::models::source::ModelFamily;
    let device: Device = a.device.parse().map_err(CliError::Usage)?;
    if a.texts == 0 || a.batch == 0 || a.repeats == 0 {
        return Err(CliError::Usage("--texts, --batch and --repeats must be at least 1".into()));
    }
    let fail = |e: String| CliError::Failed(anyhow::anyhow!(e));
    // Not an encoder (a .gguf, a llama directory, the LLM alias): a usage error before fetching.
    // A hub model cannot be looked into before it is downloaded; its loading will tell.
    let named = dagrun_nodes::models::source::ModelSource::parse(&a.model).map_err(CliError::Usage)?;
    if !matches!(named, dagrun_nodes::models::source::ModelSource::Hub(_)) {
        let family = named.family(None).map_err(CliError::Usage)?;
        if family != ModelFamily::Bert {
            return Err(CliError::Usage(format!("--model {}: a {} model, not an encoder", a.model, family.as_str())));
        }
    }
    let (source, path) = bench_model(&a.model, &a.cache_dir)?;
    let s = bench::BenchSettings { texts: a.texts, batch_size: a.batch, repeats: a.repeats };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("encoder {} on {device} ({threads} CPU threads): {} texts of 40-80 words, batch {}, tokenisation included; medians of {}", source.describe(), a.texts, a.batch, a.repeats);
    eprintln!("timing dagrun...");
    let (texts, ours) = bench::measure(&path, &s, device).map_err(fail)?;
    let reference = match &a.reference {
        None => None,
        Some(python) => {
            eprintln!("timing sentence-transformers...");
            let input = serde_json::json!({ "texts": texts, "batch_size": a.batch, "repeats": a.repeats });
            let v = run_reference(python, SENTENCE_TRANSFORMERS_SCRIPT, "encode_sentence_transformers.py", &path, &input, &device, threads, "torch and sentence-transformers").map_err(fail)?;
            Some((v["texts_per_second"].as_f64().unwrap_or(f64::NAN), v["version"].as_str().unwrap_or("sentence-transformers").to_string()))
        }
    };
    println!("{:<24} {:>10} {:>22} {:>8}", "figure", "dagrun", "sentence-transformers", "ratio");
    print_figure("texts/s", ours.texts_per_second, reference.as_ref().map(|r| r.0), 22);
    println!("{:<24} {:>10.0} {:>22} {:>8}", "tokens/s", ours.tokens_per_second, "-", "-");
    if let Some((_, version)) = &reference {
        println!("reference: {version}");
    }
    if let Some(c) = ours.min_cosine_vs_cpu {
        let ok = c >= 0.9999;
        println!("lowest {device} vs CPU cosine over the first 256 texts: {c:.6} ({})", if ok { "at least 0.9999" } else { "BELOW 0.9999" });
        if !ok {
            return Ok(super::EXIT_FAILED);
        }
    }
    Ok(0)
}

/// The TRL reference script, embedded so the command works from any directory.
const TRL_SCRIPT: &str = include_str!("../../bench/dpo_trl.py");

fn dpo(a: DpoBenchArgs) -> CliResult {
    use dagrun_nodes::models::llm::dpo_bench;
    let device: Device = a.device.parse().map_err(CliError::Usage)?;
    if a.pairs == 0 || a.batch == 0 || a.repeats == 0 || a.prompt_tokens == 0 || a.answer_tokens < 5 {
        return Err(CliError::Usage("--pairs, --batch, --repeats and --prompt-tokens must be at least 1, --answer-tokens at least 5".into()));
    }
    if a.batch > a.pairs {
        return Err(CliError::Usage(format!("--batch {} is more than --pairs {}", a.batch, a.pairs)));
    }
    let fail = |e: String| CliError::Failed(anyhow::anyhow!(e));
    let (source, path) = bench_model(&a.model, &a.cache_dir)?;
    let s = dpo_bench::DpoBenchSettings { pairs: a.pairs, prompt_tokens: a.prompt_tokens, answer_tokens: a.answer_tokens, batch: a.batch, repeats: a.repeats };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "DPO {} on {device} ({threads} CPU threads): LoRA rank 8 / alpha 16 on q,k,v,o,gate,up,down; {} pairs of a ~{}-token prompt and two ~{}-token answers, {} pairs per step; one epoch per repeat, reference pass included; medians of {}",
        source.describe(), a.pairs, a.prompt_tokens, a.answer_tokens, a.batch, a.repeats
    );
    let mut progress = |what: &str| eprintln!("dagrun: {what}...");
    let (pairs, ours) = dpo_bench::measure_on(device, &path, &s, &mut progress).map_err(fail)?;
    let reference = match &a.reference {
        None => None,
        Some(python) => {
            eprintln!("timing TRL...");
            let input = serde_json::json!({ "pairs": pairs, "batch": a.batch, "repeats": a.repeats });
            let v = run_reference(python, TRL_SCRIPT, "dpo_trl.py", &path, &input, &device, threads, "torch, transformers, trl and peft").map_err(fail)?;
            Some((v["pairs_per_second"].as_f64().unwrap_or(f64::NAN), v["version"].as_str().unwrap_or("TRL").to_string()))
        }
    };
    println!("{:<24} {:>10} {:>14} {:>8}", "figure", "dagrun", "TRL", "ratio");
    print_figure_to("pairs/s", ours.pairs_per_second, reference.as_ref().map(|r| r.0), 14, 3);
    println!("{:<24} {:>10.0} {:>14} {:>8}", "tokens/s", ours.tokens_per_second, "-", "-");
    if let Some((_, version)) = &reference {
        println!("reference: {version}");
    }
    Ok(0)
}

/// Runs an embedded reference script on `input` (written as JSON) and returns the JSON object
/// it prints last.
#[allow(clippy::too_many_arguments)]
fn run_reference(python: &str, script_text: &str, name: &str, model: &std::path::Path, input: &serde_json::Value, device: &Device, threads: usize, needs: &str) -> Result<serde_json::Value, String> {
    // Removed when dropped, on every return path.
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let script = dir.path().join(name);
    let data = dir.path().join("input.json");
    std::fs::write(&script, script_text).map_err(|e| e.to_string())?;
    std::fs::write(&data, serde_json::to_vec(input).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let torch_device = match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
    };
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(&data)
        .args(["--threads", &threads.to_string(), "--device", &torch_device])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!("the reference ({name}) failed ({}); it needs {needs} in {python}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).ok_or_else(|| format!("the reference ({name}) printed no figures"))?;
    serde_json::from_str(line).map_err(|e| format!("the reference ({name}) printed {line:?}: {e}"))
}
