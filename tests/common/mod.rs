//! Helpers for running the real `dagrun` binary in a scratch directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_dagrun");

/// A scratch directory holding pipelines and their cache (`.dagrun`).
pub struct Work {
    pub dir: tempfile::TempDir,
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(out: Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Ran {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// node id -> status from a `--json` run report.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.json()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string()))
            .collect()
    }

    pub fn status_of(&self, id: &str) -> String {
        self.statuses().into_iter().find(|(n, _)| n == id).map(|(_, s)| s).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The output digest of node `id` in a `--json` run report.
    pub fn digest_of(&self, id: &str) -> String {
        let nodes = self.json()["nodes"].as_array().unwrap().clone();
        let node = nodes.iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}"));
        node["digest"].as_str().unwrap().to_string()
    }

    /// Ids with the given status, in order.
    pub fn with_status(&self, status: &str) -> Vec<String> {
        self.statuses().into_iter().filter(|(_, s)| s == status).map(|(n, _)| n).collect()
    }
}

impl Work {
    pub fn new() -> Work {
        Work { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join(".dagrun")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).current_dir(self.path()).env_remove("DAGRUN_CACHE_DIR").env("DAGRUN_TEST_TRACE", self.trace_path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        self.command(args).output().unwrap().into()
    }

    /// Runs and asserts the exit code, showing the output if it differs.
    pub fn expect(&self, args: &[&str], code: i32) -> Ran {
        let r = self.run(args);
        assert_eq!(r.code, code, "dagrun {args:?}\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        r
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    pub fn trace_path(&self) -> PathBuf {
        self.path().join("trace.log")
    }

    /// Lines `event node ms pid` written by the test kinds.
    pub fn trace(&self) -> Vec<(String, String, u128, u32)> {
        std::fs::read_to_string(self.trace_path())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let p: Vec<&str> = l.split(' ').collect();
                (p[0].to_string(), p[1].to_string(), p[2].parse().unwrap(), p[3].parse().unwrap())
            })
            .collect()
    }

    pub fn clear_trace(&self) {
        let _ = std::fs::remove_file(self.trace_path());
    }
}

pub fn finish(child: Child) -> Ran {
    child.wait_with_output().unwrap().into()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// A tool the tests need (an S3, Azure or GCS emulator), installed once per machine into
/// `target/test-tools/NAME` by `install(dir)`; concurrent installs race safely.
pub fn test_tool(name: &str, install: impl FnOnce(&Path)) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-tools").join(name);
    if !dir.join(".installed").exists() {
        let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        install(&tmp);
        std::fs::write(tmp.join(".installed"), b"").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    dir
}

/// `pip install --target DIR SPECS...` (for test tools).
pub fn pip_install(dir: &Path, specs: &[&str]) {
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
        .arg(dir)
        .args(specs)
        .status()
        .expect("python3 with pip is needed for the remote tests");
    assert!(status.success(), "pip could not install {specs:?}");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A server process killed (with its children) on drop.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
