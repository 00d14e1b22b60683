//! Sharing the cache through remotes, seen from the command line: two teammates with separate
//! local caches share one S3 bucket (a real S3-compatible server, moto, started on 127.0.0.1),
//! a corrupt remote object is detected and recomputed, a server stopped mid-transfer leaves
//! the local cache intact, and no credential ever shows.
//!
//! moto is installed from PyPI into `target/test-tools/moto` on first use (`.ci/run` runs the
//! tests with pip available).

#![cfg(feature = "test-kinds")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{files_under, Ran, Work};

const SECRET: &str = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY";
const KEY_ID: &str = "AKIATESTINGKEYID0001";

const CHAIN: &str = "\
pipeline: shared
remote: s3://team-cache/dagrun
nodes:
  a: { kind: test-source, params: { rows: 2000, noise: true } }
  b: { kind: test-scale, inputs: { in: a }, params: { factor: 2 } }
  c: { kind: test-scale, inputs: { in: b }, params: { factor: 3 } }
";

/// moto, installed once into target/test-tools/moto (`.ci/run` preinstalls it there).
fn moto_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::test_tool("moto", |d| common::pip_install(d, &["moto[s3,server]==5.*"]))).clone()
}

/// A moto S3 server on a free loopback port, killed on drop.
struct S3 {
    child: Child,
    port: u16,
}

impl S3 {
    fn start() -> S3 {
        let site = moto_dir();
        let port = common::free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONPATH", site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s3 = S3 { child, port };
        let t0 = Instant::now();
        while s3.http("GET", "/", b"").is_none() {
            assert!(t0.elapsed() < Duration::from_secs(60), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(s3.http("PUT", "/team-cache", b""), Some(200));
        s3
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A raw HTTP request (moto accepts unsigned ones); the status code, or `None` if refused.
    fn http(&self, method: &str, path: &str, body: &[u8]) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).ok()?;
        let text = String::from_utf8_lossy(&resp);
        text.split(' ').nth(1)?.parse().ok()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The tests share one moto (starting it costs seconds); each uses its own prefix.
fn shared_s3() -> std::sync::MutexGuard<'static, Option<S3>> {
    static S3_SERVER: OnceLock<Mutex<Option<S3>>> = OnceLock::new();
    let m = S3_SERVER.get_or_init(|| Mutex::new(None));
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(S3::start());
    }
    g
}

fn with_s3_env(c: &mut Command, endpoint: &str) {
    c.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env_remove("DAGRUN_REMOTE");
}

fn run_s3(w: &Work, endpoint: &str, args: &[&str]) -> Ran {
    let mut c = w.command(args);
    with_s3_env(&mut c, endpoint);
    let r: Ran = c.output().unwrap().into();
    assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET), "a secret was printed:\n{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains(KEY_ID), "the key id was printed:\n{}", r.stderr);
    r
}

fn expect_s3(w: &Work, endpoint: &str, args: &[&str], code: i32) -> Ran {
    let r = run_s3(w, endpoint, args);
    assert_eq!(r.code, code, "dagrun {args:?}\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r
}

fn spec_with_prefix(prefix: &str) -> String {
    CHAIN.replace("s3://team-cache/dagrun", &format!("s3://team-cache/{prefix}"))
}

fn starts(w: &Work) -> usize {
    w.trace().iter().filter(|e| e.0 == "start").count()
}

fn no_secret_in(dir: &Path) {
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET) && !text.contains(KEY_ID), "{} holds a credential", f.display());
    }
}

#[test]
fn two_teammates_share_one_bucket_and_the_second_computes_nothing() {
    let guard = shared_s3();
    let endpoint = guard.as_ref().unwrap().endpoint();
    let spec = spec_with_prefix("teammates");

    // The first teammate computes and pushes (write-through).
    let alice = Work::new();
    alice.write("p.yaml", &spec);
    let r = expect_s3(&alice, &endpoint, &["p.yaml", "--json", "--push"], 0);
    assert_eq!(r.with_status("ran"), vec!["a", "b", "c"]);
    // A later push finds everything already there.
    let p = expect_s3(&alice, &endpoint, &["cache", "push", "p.yaml"], 0);
    assert!(p.stderr.contains("pushed 3 entries, 0 artifacts"), "{}", p.stderr);
    assert!(p.stderr.contains("3 artifacts were already there"), "{}", p.stderr);

    // The second, with an empty cache, computes nothing and downloads nothing.
    let bob = Work::new();
    bob.write("p.yaml", &spec);
    let r = expect_s3(&bob, &endpoint, &["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("remote"), vec!["a", "b", "c"], "{}", r.stderr);
    assert_eq!(starts(&bob), 0);
    assert!(r.json()["nodes"][2]["digest"] == expect_s3(&alice, &endpoint, &["p.yaml", "--json"], 0).json()["nodes"][2]["digest"]);
    let local_artifacts = || std::fs::read_dir(bob.cache().join("cas")).unwrap().count();
    assert_eq!(local_artifacts(), 0, "nothing was needed, so nothing was downloaded");

    // Changing c: only c runs, and only its input (b's output) is downloaded.
    let r = expect_s3(&bob, &endpoint, &["p.yaml", "--json", "--set", "c.factor=5"], 0);
    assert_eq!(r.with_status("ran"), vec!["c"]);
    assert_eq!(r.with_status("remote"), vec!["a", "b"]);
    assert!(r.stderr.contains("[c] downloaded input `in`"), "{}", r.stderr);
    let b_digest = r.json()["nodes"][1]["digest"].as_str().unwrap().to_string();
    bob.expect(&["cache", "verify"], 0);
    // b's output is now in bob's cache; a's is not (nothing needed it).
    let ls = bob.expect(&["cache", "ls", "--json"], 0).json();
    let digests: Vec<&str> = ls.as_array().unwrap().iter().map(|a| a["digest"].as_str().unwrap()).collect();
    assert!(digests.contains(&b_digest.as_str()));
    assert_eq!(digests.len(), 2, "b's output and c's new output only");

    // `show` downloads a result that only the remote has.
    let shown = expect_s3(&bob, &endpoint, &["show", "p.yaml", "a", "--format", "csv"], 0);
    assert_eq!(shown.stdout.lines().count(), 2001, "{}", shown.stderr);

    // A third teammate pulls everything, then runs offline.
    let carol = Work::new();
    carol.write("p.yaml", &spec);
    let p = expect_s3(&carol, &endpoint, &["cache", "pull", "p.yaml"], 0);
    assert!(p.stderr.contains("pulled 3 entries, 3 artifacts"), "{}", p.stderr);
    let r = carol.expect(&["p.yaml", "--json", "--no-remote"], 0);
    assert_eq!(r.with_status("cached"), vec!["a", "b", "c"]);
    carol.expect(&["cache", "verify"], 0);
    for w in [&alice, &bob, &carol] {
        no_secret_in(&w.cache());
    }
}

/// Overwrites a remote object (with boto3, which moto brings).
fn corrupt(s3: &S3, object: &str) {
    let script = format!(
        "import boto3\nboto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='y')\
         .put_object(Bucket='team-cache', Key='{object}', Body=b'not the parquet you are looking for')\n",
        s3.endpoint()
    );
    let s = Command::new("python3").args(["-c", &script]).env("PYTHONPATH", moto_dir()).status().unwrap();
    assert!(s.success());
}

#[test]
fn a_corrupt_remote_object_is_reported_not_used_and_recomputed() {
    let guard = shared_s3();
    let s3 = guard.as_ref().unwrap();
    let endpoint = s3.endpoint();
    let spec = spec_with_prefix("corrupt");
    let alice = Work::new();
    alice.write("p.yaml", &spec);
    let r = expect_s3(&alice, &endpoint, &["p.yaml", "--json", "--push"], 0);
    let b = r.json()["nodes"][1]["digest"].as_str().unwrap().to_string();
    let file = files_under(&alice.cache().join("cas").join(&b[..2]).join(&b))
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    corrupt(s3, &format!("corrupt/cas/{}/{b}/files/{name}", &b[..2]));

    // An audit of the bucket finds it without downloading it.
    let out = expect_s3(&alice, &endpoint, &["cache", "verify", "--remote", "s3://team-cache/corrupt"], 1).stdout;
    assert!(out.contains(&format!("DAMAGED  {b}  {name} is 35 bytes where the listing says ")) && out.contains("3 artifacts checked"), "{out}");

    // pull: the damaged artifact is reported and not used; the rest arrives.
    let bob = Work::new();
    bob.write("p.yaml", &spec);
    let p = expect_s3(&bob, &endpoint, &["cache", "pull", "p.yaml"], 1);
    assert!(p.stderr.contains("is corrupt"), "{}", p.stderr);
    assert!(p.stderr.contains("pulled 2 entries"), "{}", p.stderr);
    bob.expect(&["cache", "verify"], 0);

    // A run that needs it recomputes it.
    let carol = Work::new();
    carol.write("p.yaml", &spec);
    let r = expect_s3(&carol, &endpoint, &["p.yaml", "--json", "--set", "c.factor=7", "--push"], 0);
    assert!(r.stderr.contains("could not be downloaded") && r.stderr.contains("is corrupt"), "{}", r.stderr);
    assert_eq!(r.status_of("b"), "ran");
    assert_eq!(r.json()["nodes"][1]["digest"].as_str().unwrap(), b, "recomputed to the same content");
    carol.expect(&["cache", "verify"], 0);

    // Carol pushed the recomputed result: it replaced the damaged copy, so the next teammate
    // pulls everything.
    let dave = Work::new();
    dave.write("p.yaml", &spec);
    let p = expect_s3(&dave, &endpoint, &["cache", "pull", "p.yaml"], 0);
    assert!(p.stderr.contains("pulled 3 entries"), "{}", p.stderr);
    dave.expect(&["cache", "verify"], 0);
    let out = expect_s3(&dave, &endpoint, &["cache", "verify", "--remote", "s3://team-cache/corrupt", "--full"], 0).stdout;
    assert!(out.contains("0 damaged, 0 missing"), "{out}");
}

#[test]
fn a_server_stopped_mid_transfer_leaves_the_local_cache_intact() {
    // Its own server, since this test stops it.
    let mut s3 = S3::start();
    let endpoint = s3.endpoint();
    let spec = "pipeline: big\nremote: s3://team-cache/big\nnodes:\n  blob: { kind: test-blob, params: { bytes: 120000000 } }\n  small: { kind: test-source, params: { rows: 10 } }\n";
    let alice = Work::new();
    alice.write("p.yaml", spec);
    expect_s3(&alice, &endpoint, &["p.yaml", "--push"], 0);

    let bob = Work::new();
    bob.write("p.yaml", spec);
    let mut c = bob.command(&["cache", "pull", "p.yaml"]);
    with_s3_env(&mut c, &endpoint);
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Stop the server once bytes are arriving.
    let t0 = Instant::now();
    let tmp = bob.cache().join("tmp");
    loop {
        let arriving = files_under(&tmp).iter().any(|f| std::fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false));
        if arriving || t0.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    s3.stop();
    let r = common::finish(child);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("remote s3://team-cache/big"), "{}", r.stderr);
    assert!(!r.stderr.contains(SECRET));
    bob.expect(&["cache", "verify"], 0);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no partial download is left behind");
    // With the remote gone, a run computes locally and says why.
    let r = expect_s3(&bob, &endpoint, &["p.yaml", "--json"], 0);
    assert!(r.stderr.contains("the remote is unavailable"), "{}", r.stderr);
    assert!(r.with_status("ran").contains(&"blob".to_string()), "{}", r.stderr);
    assert_eq!(r.json()["outcome"], "ok");
}

#[test]
fn a_shared_directory_remote_from_the_environment() {
    let shared = tempfile::tempdir().unwrap();
    let spec = "pipeline: dir\nnodes:\n  a: { kind: test-source, params: { rows: 50 } }\n  b: { kind: test-scale, inputs: { in: a } }\n";
    let alice = Work::new();
    alice.write("p.yaml", spec);
    alice.expect(&["p.yaml"], 0);
    let url = format!("file://{}", shared.path().display());
    let p = alice.expect(&["cache", "push", "--all", "--remote", &url], 0);
    // a and b have the same content: one artifact.
    assert!(p.stderr.contains("pushed 2 entries, 1 artifacts"), "{}", p.stderr);
    let bob = Work::new();
    bob.write("p.yaml", spec);
    // plan knows the remote has everything: nothing would run.
    let plan = bob.command(&["plan", "p.yaml", "--json", "--check"]).env("DAGRUN_REMOTE", shared.path()).output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["would_run"], 0);
    assert!(plan["nodes"].as_array().unwrap().iter().all(|n| n["state"] == "remote"), "{plan}");
    let r = bob.command(&["p.yaml", "--json"]).env("DAGRUN_REMOTE", shared.path()).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(report["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "remote"), "{report}");
    // pull --all takes everything the remote has.
    let carol = Work::new();
    let p = carol.command(&["cache", "pull", "--all"]).env("DAGRUN_REMOTE", shared.path()).output().unwrap();
    let err = String::from_utf8_lossy(&p.stderr);
    assert_eq!(p.status.code(), Some(0), "{err}");
    assert!(err.contains("pulled 2 entries, 1 artifacts"), "{err}");
    carol.write("p.yaml", spec);
    let r = carol.expect(&["p.yaml", "--json", "--no-remote"], 0);
    assert_eq!(r.with_status("cached"), vec!["a", "b"]);
    // `--no-remote` ignores it.
    let r = bob.command(&["p.yaml", "--json", "--no-remote"]).env("DAGRUN_REMOTE", shared.path()).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(report["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "ran"), "{report}");
}

#[test]
fn remote_usage_errors_are_clear() {
    let w = Work::new();
    w.write("p.yaml", "pipeline: p\nnodes:\n  a: { kind: test-source, params: { rows: 5 } }\n");
    let r = w.expect(&["cache", "push"], 2);
    assert!(r.stderr.contains("a PIPELINE.yaml, or --all"), "{}", r.stderr);
    let r = w.expect(&["cache", "pull"], 2);
    assert!(r.stderr.contains("a PIPELINE.yaml, or --all"), "{}", r.stderr);
    let r = w.expect(&["cache", "pull", "p.yaml", "--all"], 2);
    assert!(r.stderr.contains("not both"), "{}", r.stderr);
    let r = w.expect(&["p.yaml", "--push"], 2);
    assert!(r.stderr.contains("--push needs a remote"), "{}", r.stderr);
    w.expect(&["p.yaml"], 0);
    let r = w.command(&["cache", "push", "p.yaml"]).env_remove("DAGRUN_REMOTE").output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("no remote configured"));
    let r = w.expect(&["p.yaml", "--remote", "ftp://somewhere/x"], 1);
    assert!(r.stderr.contains("remote `ftp://somewhere/x`"), "{}", r.stderr);
    let r = w.expect(&["cache", "pull", "p.yaml", "--remote", "gs://"], 1);
    assert!(r.stderr.contains("remote `gs://"), "{}", r.stderr);
}

/// Alice pushes, Bob finds everything in the remote, Carol pulls it all: through any remote.
fn teammates_share(url: &str, env: &[(&str, String)]) {
    let spec = format!("pipeline: cloud\nremote: {url}\nnodes:\n  a: {{ kind: test-source, params: {{ rows: 300, noise: true }} }}\n  b: {{ kind: test-scale, inputs: {{ in: a }} }}\n  big: {{ kind: test-blob, params: {{ bytes: 40000000 }} }}\n");
    let run = |w: &Work, args: &[&str]| {
        let mut c = w.command(args);
        c.env_remove("DAGRUN_REMOTE");
        for (k, v) in env {
            c.env(k, v);
        }
        let r: Ran = c.output().unwrap().into();
        assert_eq!(r.code, 0, "dagrun {args:?}\n{}\n{}", r.stdout, r.stderr);
        r
    };
    let alice = Work::new();
    alice.write("p.yaml", &spec);
    assert_eq!(run(&alice, &["p.yaml", "--json", "--push"]).with_status("ran").len(), 3);
    let bob = Work::new();
    bob.write("p.yaml", &spec);
    let r = run(&bob, &["p.yaml", "--json"]);
    assert_eq!(r.with_status("remote"), vec!["a", "b", "big"], "{}", r.stderr);
    let carol = Work::new();
    carol.write("p.yaml", &spec);
    let p = run(&carol, &["cache", "pull", "p.yaml"]);
    // a and b have the same content: one artifact.
    assert!(p.stderr.contains("pulled 3 entries, 2 artifacts"), "{}", p.stderr);
    carol.expect(&["cache", "verify"], 0);
    assert_eq!(carol.expect(&["p.yaml", "--json", "--no-remote"], 0).with_status("cached").len(), 3);
}

#[test]
fn azure_blob_storage_through_azurite() {
    let npm = Command::new("npm").arg("--version").output();
    assert!(npm.is_ok_and(|o| o.status.success()), "npm is needed to install Azurite");
    let azurite = common::test_tool("azurite", |d| {
        let s = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(d)
            .arg("azurite@3")
            .status()
            .unwrap();
        assert!(s.success(), "npm could not install azurite");
        common::pip_install(d, &["azure-storage-blob==12.*"]);
    });
    let port = common::free_port();
    let data = tempfile::tempdir().unwrap();
    let _server = common::Server(
        Command::new(azurite.join("node_modules/.bin/azurite-blob"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--location"])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(port, "azurite");
    let endpoint = format!("http://127.0.0.1:{port}");
    // The emulator's well-known development account.
    let script = format!(
        "from azure.storage.blob import BlobServiceClient\n\
         key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='\n\
         BlobServiceClient.from_connection_string('DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey='+key+';BlobEndpoint={endpoint}/devstoreaccount1;').create_container('team')\n"
    );
    let s = Command::new("python3").args(["-c", &script]).env("PYTHONPATH", &azurite).status().unwrap();
    assert!(s.success(), "could not create the container");
    teammates_share(
        "az://team/dagrun",
        &[("AZURE_STORAGE_USE_EMULATOR", "true".into()), ("AZURITE_BLOB_STORAGE_URL", endpoint)],
    );
}

#[test]
fn a_teammates_log_lines_come_with_the_remote_entry() {
    let shared = tempfile::tempdir().unwrap();
    let spec = "pipeline: logs\nnodes:\n  a: { kind: test-source, params: { rows: 5 } }\n  b: { kind: test-scale, inputs: { in: a } }\n  s: { kind: test-sum, inputs: { left: a, right: b } }\n";
    let alice = Work::new();
    alice.write("p.yaml", spec);
    alice.expect(&["p.yaml"], 0);
    alice.expect(&["cache", "push", "--all", "--remote", &format!("file://{}", shared.path().display())], 0);
    // Bob has no cache at all: `log` reads the remote's entries and downloads nothing.
    let bob = Work::new();
    bob.write("p.yaml", spec);
    let out = bob.command(&["log", "p.yaml"]).env("DAGRUN_REMOTE", shared.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("s (test-sum): in the remote, computed ") && text.contains("\n  adding 5 rows\n  total "), "{text}");
    assert!(!bob.cache().exists(), "log downloads nothing");
}

/// Row results (what `generate` and `encode` keep per row) travel with their entries: a
/// teammate whose table differs by a few rows finds the others in the remote and computes only
/// the new ones, with the result a fresh computation gives; `cache push` shares them too, and a
/// damaged remote row is reported and recomputed, never used.
#[test]
fn row_results_are_shared_so_a_grown_table_computes_only_its_new_rows() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let spec = |rows: u32| format!("pipeline: rows\nnodes:\n  a: {{ kind: test-source, params: {{ rows: {rows}, noise: true }} }}\n  r: {{ kind: test-rows, inputs: {{ in: a }}, params: {{ factor: 3 }} }}\n");
    let log_of = |w: &Work| w.expect(&["log", "rows.yaml", "r"], 0).stdout;
    let alice = Work::new();
    alice.write("rows.yaml", &spec(10));
    alice.expect(&["rows.yaml", "--remote", &url, "--push"], 0);
    assert!(log_of(&alice).contains("0 of 10 rows cached (0 from the remote); computed 10"), "{}", log_of(&alice));
    let row_objects = || files_under(&shared.path().join("rows").join("test-rows")).len();
    assert_eq!(row_objects(), 10, "write-through pushes the rows with the entry");

    // Bob's table has 15 rows, the first 10 Alice's.
    let bob = Work::new();
    bob.write("rows.yaml", &spec(15));
    let r = bob.expect(&["rows.yaml", "--json", "--remote", &url], 0);
    assert_eq!(r.with_status("ran"), vec!["a", "r"]);
    assert!(log_of(&bob).contains("10 of 15 rows cached (10 from the remote); computed 5"), "{}", log_of(&bob));
    // The run report says how the node came by its rows.
    assert_eq!(r.json()["nodes"][1]["rows"], serde_json::json!({ "test-rows": { "rows": 15, "cached": 0, "remote": 10, "computed": 5 } }));
    assert_eq!(r.json()["nodes"][1]["note"], "5 of 15 rows computed, 10 from the remote");
    assert!(r.json()["nodes"][0].get("rows").is_none(), "only row-wise nodes report rows");
    let fresh = Work::new();
    fresh.write("rows.yaml", &spec(15));
    assert_eq!(fresh.expect(&["rows.yaml", "--json", "--no-remote"], 0).digest_of("r"), r.digest_of("r"), "the same result as computing it all");

    // `cache push` shares Bob's rows (the 5 new ones and the 10 he read, which he now holds).
    let p = bob.expect(&["cache", "push", "rows.yaml", "--remote", &url], 0);
    assert!(p.stderr.contains("pushed 2 entries, 2 artifacts") && p.stderr.contains(" and 15 row results"), "{}", p.stderr);
    assert_eq!(row_objects(), 15);
    let p = bob.expect(&["cache", "push", "rows.yaml", "--remote", &url], 0);
    assert!(!p.stderr.contains("row results"), "rows of an entry the remote has are not sent again: {}", p.stderr);

    // A damaged remote row is reported and recomputed.
    let victim = files_under(&shared.path().join("rows").join("test-rows")).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let mtimes = || -> std::collections::BTreeMap<PathBuf, std::time::SystemTime> {
        files_under(&shared.path().join("rows")).into_iter().map(|f| (f.clone(), f.metadata().unwrap().modified().unwrap())).collect()
    };
    let before = mtimes();
    std::thread::sleep(Duration::from_millis(20));
    let carol = Work::new();
    carol.write("rows.yaml", &spec(16));
    let r = carol.expect(&["rows.yaml", "--json", "--remote", &url, "--push"], 0);
    let log = log_of(&carol);
    assert!(log.contains("warning: 1 row results in the remote are damaged and were not used") && log.contains("14 of 16 rows cached (14 from the remote); computed 2"), "{log}");
    fresh.write("rows.yaml", &spec(16));
    assert_eq!(fresh.expect(&["rows.yaml", "--json", "--no-remote"], 0).digest_of("r"), r.digest_of("r"));
    // Carol's push sent the 2 rows she computed (one replacing the damaged one), not the 14
    // she read from the remote.
    let after = mtimes();
    assert_eq!(after.len(), 16);
    let rewritten: Vec<_> = after.iter().filter(|(f, t)| before.get(*f) != Some(t)).map(|(f, _)| f.clone()).collect();
    assert_eq!(rewritten.len(), 2, "{rewritten:?}");
    assert!(rewritten.contains(&victim));
}

/// Without a remote, shards on one machine (a GPU each) share its cache: the rows stay there
/// and the run on that cache assembles them.
#[test]
fn shards_without_a_remote_share_the_local_cache() {
    let spec = "pipeline: local\nnodes:\n  a: { kind: test-source, params: { rows: 30, noise: true } }\n  r: { kind: test-rows, inputs: { in: a }, params: { factor: 3 } }\n";
    let w = Work::new();
    w.write("p.yaml", spec);
    let shards: Vec<_> = (0..2).map(|i| w.command(&["shard", "p.yaml", "r", "--count", "2", "--index", &i.to_string()]).env_remove("DAGRUN_REMOTE").stderr(std::process::Stdio::piped()).spawn().unwrap()).collect();
    for s in shards {
        let out = s.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(err.contains("`test-rows` row results kept in the cache ") && err.contains("(no remote: a run on this cache assembles them)"), "{err}");
    }
    let r = w.expect(&["p.yaml", "--json"], 0);
    assert_eq!(r.with_status("ran"), vec!["r"], "`a` was computed once, by the shards");
    let log = w.expect(&["log", "p.yaml", "r"], 0).stdout;
    assert!(log.contains("30 of 30 rows cached (0 from the remote); computed 0"), "{log}");
}

/// Before running a row-wise node, `explain` and `plan --rows` say how many of its rows are
/// already computed, here and in the remote (a teammate's smaller table, finished shards), so
/// the user knows what the run will cost; a node whose inputs are not at hand says why its
/// rows cannot be counted, and a node the remote has whole is said to be taken from there.
#[test]
fn explain_and_plan_count_the_rows_already_computed_here_and_in_the_remote() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let spec = |rows: u32| {
        format!("pipeline: rows\nnodes:\n  a: {{ kind: test-source, params: {{ rows: {rows}, noise: true }} }}\n  r: {{ kind: test-rows, inputs: {{ in: a }}, params: {{ factor: 3 }} }}\n")
    };
    let alice = Work::new();
    alice.write("p.yaml", &spec(10));
    alice.expect(&["p.yaml", "--remote", &url, "--push"], 0);

    // Bob's table has 15 rows, the first 10 Alice's; nothing computed yet.
    let bob = Work::new();
    bob.write("p.yaml", &spec(15));
    let e = bob.expect(&["explain", "p.yaml", "r", "--remote", &url], 0).stdout;
    assert!(e.contains("  status   would run\n") && e.contains("  waits on `a` (would run first)\n"), "{e}");
    assert!(e.contains("  rows     not counted until `a` has run (`dagrun run p.yaml --until a`)\n"), "{e}");
    let e = bob.expect(&["explain", "p.yaml", "r", "--set", "a.rows=20", "--cache-dir", "my cache"], 0).stdout;
    assert!(e.contains("(`dagrun run p.yaml --set a.rows=20 --cache-dir 'my cache' --until a`)"), "{e}");
    let plan = bob.expect(&["plan", "p.yaml", "--rows", "--remote", &url], 0).stdout;
    assert!(!plan.contains("rows not counted"), "a node waiting on its inputs' producers shows that alone: {plan}");
    // His source pushed, a teammate sees the input only in the remote.
    bob.expect(&["p.yaml", "--until", "a", "--remote", &url, "--push"], 0);
    let carol = Work::new();
    carol.write("p.yaml", &spec(15));
    let e = carol.expect(&["explain", "p.yaml", "r", "--remote", &url], 0).stdout;
    assert!(e.contains("  rows     not counted: input `in` is only in the remote (`dagrun cache pull` fetches it)"), "{e}");
    assert!(e.contains("  waits on `a` (in the remote: downloaded first)\n"), "{e}");

    // With the input here: 10 rows in the remote, none here.
    let e = bob.expect(&["explain", "p.yaml", "r", "--remote", &url], 0).stdout;
    assert!(e.contains("  rows     10 of 15 rows already computed (0 here, 10 in the remote); 5 to compute\n"), "{e}");
    let e = bob.expect(&["explain", "p.yaml", "r", "--no-remote"], 0).stdout;
    assert!(e.contains("  rows     0 of 15 rows already computed; 15 to compute\n"), "{e}");
    // A remote that cannot be opened is a warning: explain goes on with the local cache.
    let not_a_dir = bob.write("not-a-dir", "x");
    let r = bob.expect(&["explain", "p.yaml", "r", "--remote", &format!("file://{}", not_a_dir.display())], 0);
    assert!(r.stderr.contains("warning: remote `file://") && r.stdout.contains("  rows     0 of 15 rows already computed; 15 to compute\n"), "{}\n{}", r.stdout, r.stderr);
    let plan = bob.expect(&["plan", "p.yaml", "--rows", "--remote", &url], 0).stdout;
    assert!(plan.lines().any(|l| l.starts_with("run") && l.contains(" r ") && l.ends_with("never computed; 10 of 15 rows already computed (0 here, 10 in the remote); 5 to compute")), "{plan}");
    assert!(!bob.expect(&["plan", "p.yaml", "--remote", &url], 0).stdout.contains("already computed"), "rows are counted when asked");
    let json: serde_json::Value = serde_json::from_str(&bob.expect(&["plan", "p.yaml", "--rows", "--json", "--remote", &url], 0).stdout).unwrap();
    let r = json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "r").unwrap();
    assert_eq!(r["rows"], serde_json::json!({ "unit": "rows", "total": 15, "local": 0, "remote": 10, "to_compute": 5 }));

    // A shard computed here (no remote) counts as here; a run then computes only the rest.
    let out = bob.command(&["shard", "p.yaml", "r", "--count", "1", "--index", "0"]).env_remove("DAGRUN_REMOTE").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let e = bob.expect(&["explain", "p.yaml", "r", "--remote", &url], 0).stdout;
    assert!(e.contains("  rows     15 of 15 rows already computed; 0 to compute\n"), "{e}");
    let r = bob.expect(&["p.yaml", "--remote", &url, "--push"], 0);
    assert!(r.stderr.lines().any(|l| l.starts_with("r ") && l.ends_with(" 0 of 15 rows computed, 15 cached")), "the summary says so too: {}", r.stderr);
    let e = bob.expect(&["explain", "p.yaml", "r"], 0).stdout;
    assert!(e.contains("  status   cached: ") && !e.contains("  rows "), "{e}");

    // Whole in the remote: a run downloads it.
    let e = carol.expect(&["explain", "p.yaml", "r", "--remote", &url], 0).stdout;
    assert!(e.contains("  status   in the remote: a run downloads it instead of computing it\n") && !e.contains("  rows "), "{e}");
    let e = carol.expect(&["explain", "p.yaml", "r", "--no-remote"], 0).stdout;
    assert!(e.contains("  status   would run\n"), "{e}");
}

/// Pushing a node assembled from shards' rows later (`cache push` in a new process) does not
/// upload its rows again: the remote's listing shows it holds them.
#[test]
fn a_later_push_of_a_node_assembled_from_shards_sends_no_rows() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let spec = "pipeline: big\nnodes:\n  a: { kind: test-source, params: { rows: 100, noise: true } }\n  r: { kind: test-rows, inputs: { in: a }, params: { factor: 3 } }\n";
    let worker = Work::new();
    worker.write("p.yaml", spec);
    let r = worker.expect(&["shard", "p.yaml", "r", "--count", "1", "--index", "0", "--remote", &url], 0);
    assert!(r.stderr.contains("shard 0/1 of `r`: 100 `test-rows` row results uploaded"), "{}", r.stderr);
    let driver = Work::new();
    driver.write("p.yaml", spec);
    driver.expect(&["p.yaml", "--remote", &url], 0);
    let p = driver.expect(&["cache", "push", "p.yaml", "--remote", &url], 0);
    assert!(p.stderr.contains("pushed 2 entries") && !p.stderr.contains("row results"), "{}", p.stderr);
    let e = Work::new();
    e.write("p.yaml", spec);
    assert_eq!(e.expect(&["p.yaml", "--json", "--remote", &url], 0).status_of("r"), "remote");
}

/// `dagrun shard` splits a row-wise node over machines: each worker (its own cache) computes
/// its shard's rows and uploads them, the driver's run finds every row in the remote and
/// computes none, with the result a single machine gives. A worker that finds no input
/// computes (and pushes) it; Slurm's environment names the shard; bad requests are explained.
#[test]
fn shards_on_separate_machines_compute_a_row_wise_node_for_the_driver() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let spec = "pipeline: sharded\nnodes:\n  a: { kind: test-source, params: { rows: 40, noise: true } }\n  r: { kind: test-rows, inputs: { in: a }, params: { factor: 3 } }\n  s: { kind: test-scale, inputs: { in: r } }\n";
    let mut uploaded = 0;
    for i in 0..3 {
        let worker = Work::new();
        worker.write("p.yaml", spec);
        let r = if i == 2 {
            let out = worker
                .command(&["shard", "p.yaml", "r", "--remote", &url])
                .env("SLURM_ARRAY_TASK_ID", "7")
                .env("SLURM_ARRAY_TASK_MIN", "5")
                .env("SLURM_ARRAY_TASK_COUNT", "3")
                .output()
                .unwrap();
            Ran::from(out)
        } else {
            worker.run(&["shard", "p.yaml", "r", "--count", "3", "--index", &i.to_string(), "--remote", &url])
        };
        assert_eq!(r.code, 0, "{}", r.stderr);
        // The first worker found no `a` anywhere: it computed and pushed it; the others took it.
        let line = r.stderr.lines().find(|l| l.starts_with(&format!("shard {i}/3 of `r`: "))).unwrap_or_else(|| panic!("{}", r.stderr));
        uploaded += line.split_whitespace().nth(4).unwrap().parse::<usize>().unwrap_or_else(|_| panic!("{line}"));
        assert!(line.contains("`test-rows` row results uploaded to file://"), "{line}");
        let kinds: Vec<String> = files_under(&worker.cache().join("ac"))
            .iter()
            .map(|f| serde_json::from_slice::<serde_json::Value>(&std::fs::read(f).unwrap()).unwrap()["kind"].as_str().unwrap().to_string())
            .collect();
        assert!(!kinds.contains(&"test-rows".to_string()), "a shard publishes no result of `r`: {kinds:?}");
    }
    assert_eq!(uploaded, 40, "the shards cover the rows once");
    // A shard run again (a requeued task) takes its rows from the remote and sends none back.
    let again = Work::new();
    again.write("p.yaml", spec);
    let r = again.expect(&["shard", "p.yaml", "r", "--count", "3", "--index", "1", "--remote", &url], 0);
    assert!(r.stderr.contains("shard 1/3 of `r`: 0 `test-rows` row results uploaded") && r.stderr.contains("computed 0"), "{}", r.stderr);

    let driver = Work::new();
    driver.write("p.yaml", spec);
    let r = driver.expect(&["p.yaml", "--json", "--remote", &url], 0);
    assert_eq!(r.with_status("ran"), vec!["r", "s"]);
    let log = driver.expect(&["log", "p.yaml", "r"], 0).stdout;
    assert!(log.contains("40 of 40 rows cached (40 from the remote); computed 0"), "{log}");
    let alone = Work::new();
    alone.write("p.yaml", spec);
    assert_eq!(alone.expect(&["p.yaml", "--json", "--no-remote"], 0).digest_of("s"), r.digest_of("s"));

    // Once the node is computed somewhere, a late shard has nothing to do.
    driver.expect(&["cache", "push", "p.yaml", "--remote", &url], 0);
    let late = Work::new();
    late.write("p.yaml", spec);
    let out = late.expect(&["shard", "p.yaml", "r", "--count", "3", "--index", "1", "--remote", &url], 0);
    assert!(out.stderr.contains("`r` is already computed (in the remote): shard 1/3 has nothing to do"), "{}", out.stderr);

    // A shard's rows go up as they are computed: a task that dies keeps what it finished
    // for its rerun, on any machine.
    let dying = Work::new();
    dying.write("p.yaml", &spec.replace("factor: 3 }", "factor: 7, fail_after_rows: 4 }"));
    let e = dying.expect(&["shard", "p.yaml", "r", "--count", "1", "--index", "0", "--remote", &url], 1);
    assert!(e.stderr.contains("failing after 4 rows, as asked"), "{}", e.stderr);
    let rerun = Work::new();
    rerun.write("p.yaml", &spec.replace("factor: 3 }", "factor: 7 }"));
    let r = rerun.expect(&["shard", "p.yaml", "r", "--count", "1", "--index", "0", "--remote", &url], 0);
    assert!(r.stderr.contains("4 of 40 rows cached (4 from the remote); computed 36") && r.stderr.contains("shard 0/1 of `r`: 36 `test-rows` row results uploaded"), "{}", r.stderr);

    // `kinds` says which kinds shard.
    assert!(late.expect(&["kinds", "test-rows"], 0).stdout.starts_with("test-rows (version 1; shardable: `dagrun shard`): "));
    assert!(!late.expect(&["kinds", "test-source"], 0).stdout.contains("shardable"));

    // Bad requests.
    let e = late.expect(&["shard", "p.yaml", "a", "--count", "2", "--index", "0", "--remote", &url], 2);
    assert!(e.stderr.contains("node `a` is a `test-source` node, which cannot be sharded: only row-wise kinds can (") && e.stderr.contains("`generate`"), "{}", e.stderr);
    let e = late.expect(&["shard", "p.yaml", "r", "--count", "3", "--index", "3", "--remote", &url], 2);
    assert!(e.stderr.contains("shard index 3 is out of range: with 3 shards the index is 0 to 2"), "{}", e.stderr);
    let e = late.expect(&["shard", "p.yaml", "r", "--index", "0", "--remote", &url], 2);
    assert!(e.stderr.contains("say how many shards there are: --count N"), "{}", e.stderr);
    let e = late.expect(&["shard", "p.yaml", "r", "--count", "2"], 2);
    assert!(e.stderr.contains("say which shard this is: --index I"), "{}", e.stderr);
    let e = late.expect(&["shard", "p.yaml", "q", "--count", "2", "--index", "0", "--remote", &url], 2);
    assert!(e.stderr.contains("unknown node `q`"), "{}", e.stderr);
    let e = late.expect(&["shard", "p.yaml", "r", "--count", "2", "--index", "0", "--remote", &url, "--device", "tpu"], 2);
    assert!(e.stderr.contains("unknown device `tpu`"), "{}", e.stderr);
}

/// Row results through S3 (moto): pushed with the entry, found by a teammate's grown table, and
/// a shard's rows assembled by the driver.
#[test]
fn row_results_and_shards_through_s3() {
    let guard = shared_s3();
    let endpoint = guard.as_ref().unwrap().endpoint();
    let spec = |rows: u32| format!("pipeline: s3rows\nremote: s3://team-cache/rows\nnodes:\n  a: {{ kind: test-source, params: {{ rows: {rows}, noise: true }} }}\n  r: {{ kind: test-rows, inputs: {{ in: a }}, params: {{ factor: 2 }} }}\n");
    let alice = Work::new();
    alice.write("p.yaml", &spec(70));
    expect_s3(&alice, &endpoint, &["p.yaml", "--push"], 0);
    let bob = Work::new();
    bob.write("p.yaml", &spec(80));
    expect_s3(&bob, &endpoint, &["p.yaml"], 0);
    let log = expect_s3(&bob, &endpoint, &["log", "p.yaml", "r"], 0).stdout;
    assert!(log.contains("70 of 80 rows cached (70 from the remote); computed 10"), "{log}");
    // Two shards of a 100-row table, then the driver computes none. (Over 64 rows asked, the
    // remote's rows are listed first rather than asked for one by one.)
    for i in ["0", "1"] {
        let worker = Work::new();
        worker.write("p.yaml", &spec(100));
        let r = expect_s3(&worker, &endpoint, &["shard", "p.yaml", "r", "--count", "2", "--index", i], 0);
        assert!(r.stderr.contains(&format!("shard {i}/2 of `r`: ")) && r.stderr.contains("uploaded to s3://team-cache/rows"), "{}", r.stderr);
    }
    let driver = Work::new();
    driver.write("p.yaml", &spec(100));
    expect_s3(&driver, &endpoint, &["p.yaml"], 0);
    let log = expect_s3(&driver, &endpoint, &["log", "p.yaml", "r"], 0).stdout;
    assert!(log.contains("100 of 100 rows cached (") && log.contains("computed 0"), "{log}");
    for w in [&alice, &bob, &driver] {
        no_secret_in(&w.cache());
    }
    // The bucket is audited and emptied through S3's listing and deletes.
    let out = expect_s3(&driver, &endpoint, &["cache", "verify", "--remote", "s3://team-cache/rows", "--full"], 0).stdout;
    assert!(out.contains(" 0 damaged, 0 missing; ") && out.contains("row results, 0 damaged"), "{out}");
    let out = expect_s3(&driver, &endpoint, &["cache", "gc", "--remote", "s3://team-cache/rows", "--older-than", "0"], 0).stdout;
    assert!(out.starts_with("deleted ") && out.contains("kept 0 entries"), "{out}");
    let out = expect_s3(&driver, &endpoint, &["cache", "verify", "--remote", "s3://team-cache/rows", "--full"], 0).stdout;
    assert!(out.contains(": 0 artifacts checked (0 files; every byte hashed), 0 damaged, 0 missing; 0 entries, 0 unreadable, 0 naming a damaged or missing artifact; 0 row results"), "{out}");
}

/// `cache verify --remote` finds what runs would only meet on download (a file of the wrong
/// size, with --full one of the right size but other bytes, a damaged row, an unreadable
/// entry, a missing artifact), and --fix deletes it so the next push uploads those results
/// anew.
#[test]
fn verify_audits_a_remote_and_fix_lets_a_push_repair_it() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let spec = "pipeline: audit\nnodes:\n  a: { kind: test-source, params: { rows: 50, noise: true } }\n  b: { kind: test-scale, inputs: { in: a }, params: { factor: 2 } }\n  c: { kind: test-scale, inputs: { in: a }, params: { factor: 3 } }\n  r: { kind: test-rows, inputs: { in: a }, params: { factor: 5 } }\n  d: { kind: test-scale, inputs: { in: a }, params: { factor: 4 } }\n";
    let alice = Work::new();
    alice.write("p.yaml", spec);
    let r = alice.expect(&["p.yaml", "--json", "--remote", &url, "--push"], 0);
    let verify = |args: &[&str], code: i32| {
        let mut all = vec!["cache", "verify", "--remote", &url];
        all.extend_from_slice(args);
        alice.expect(&all, code).stdout
    };
    let out = verify(&["--full"], 0);
    assert!(out.contains("5 artifacts checked (10 files; every byte hashed), 0 damaged, 0 missing; 5 entries, 0 unreadable, 0 naming a damaged or missing artifact; 50 row results, 0 damaged"), "{out}");

    let artifact_file = |node: &str| {
        let d = r.digest_of(node);
        files_under(&shared.path().join("cas").join(&d[..2]).join(&d).join("files")).into_iter().find(|f| f.extension().is_some_and(|e| e == "parquet")).unwrap()
    };
    // Same size, other bytes: only --full sees it.
    let b = artifact_file("b");
    let mut bytes = std::fs::read(&b).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&b, &bytes).unwrap();
    assert!(verify(&[], 0).contains("0 damaged"));
    let out = verify(&["--full"], 1);
    assert!(out.contains(&format!("DAMAGED  {}  table.parquet hashes to ", r.digest_of("b"))), "{out}");
    // A truncated file, a damaged row, an unreadable entry, a missing artifact.
    let c = artifact_file("c");
    std::fs::write(&c, b"short").unwrap();
    let row = files_under(&shared.path().join("rows")).into_iter().next().unwrap();
    std::fs::write(&row, b"not a row").unwrap();
    let entry_of = |digest: &str| files_under(&shared.path().join("ac")).into_iter().find(|f| std::fs::read_to_string(f).unwrap().contains(digest)).unwrap();
    let r_out = r.digest_of("r");
    std::fs::remove_file(shared.path().join("cas").join(&r_out[..2]).join(&r_out).join("listing")).unwrap();
    std::fs::write(entry_of(&r.digest_of("d")), "{ not json").unwrap();
    let out = verify(&[], 1);
    assert!(out.contains(&format!("DAMAGED  {}  table.parquet is 5 bytes where the listing says ", r.digest_of("c"))), "{out}");
    assert!(out.contains(&format!("MISSING  {r_out}")) && out.contains("UNREADABLE entry "), "{out}");
    let out = verify(&["--full", "--json"], 1);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((j["damaged"].as_array().unwrap().len(), j["missing"].as_array().unwrap().len()), (2, 1), "{j}");
    assert_eq!((j["entries_unreadable"].as_array().unwrap().len(), j["rows_damaged"].as_array().unwrap().len()), (1, 1), "{j}");

    // --fix deletes the damage; the remote is then clean, and a push restores everything.
    let out = verify(&["--full", "--fix"], 0);
    assert!(out.contains("(fixed: "), "{out}");
    let out = verify(&["--full"], 0);
    assert!(out.contains(" 0 damaged, 0 missing; ") && out.contains("0 unreadable, 0 naming"), "{out}");
    alice.expect(&["cache", "push", "p.yaml", "--remote", &url], 0);
    let out = verify(&["--full"], 0);
    assert!(out.contains("5 artifacts checked (10 files; every byte hashed), 0 damaged, 0 missing; 5 entries"), "{out}");
    let bob = Work::new();
    bob.write("p.yaml", spec);
    let p = bob.expect(&["cache", "pull", "p.yaml", "--remote", &url], 0);
    assert!(p.stderr.contains("pulled 5 entries"), "{}", p.stderr);

    // Usage.
    let e = alice.expect(&["cache", "verify", "--full"], 2);
    assert!(e.stderr.contains("--remote"), "{}", e.stderr);
    let e = alice.command(&["cache", "verify", "--remote"]).env_remove("DAGRUN_REMOTE").output().unwrap();
    assert_eq!(e.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&e.stderr).contains("--remote needs a URL here, or $DAGRUN_REMOTE"));
}

/// `cache gc --remote --older-than DAYS`: entries older than that go unless a kept pipeline
/// resolves to them, then the artifacts and rows nothing names; fresh uploads stay; a dry run
/// deletes nothing; what stays is consistent and usable.
#[test]
fn remote_gc_evicts_old_results_but_kept_pipelines_and_fresh_uploads() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let p1 = "pipeline: one\nnodes:\n  a: { kind: test-source, params: { rows: 20, noise: true } }\n  b: { kind: test-scale, inputs: { in: a }, params: { factor: 2 } }\n  r: { kind: test-rows, inputs: { in: a }, params: { factor: 3 } }\n";
    let p2 = "pipeline: two\nnodes:\n  c: { kind: test-source, params: { rows: 30, value: 7 } }\n";
    let p3 = "pipeline: three\nnodes:\n  d: { kind: test-source, params: { rows: 40, value: 9 } }\n";
    let alice = Work::new();
    alice.write("p1.yaml", p1);
    alice.write("p2.yaml", p2);
    alice.write("p3.yaml", p3);
    for p in ["p1.yaml", "p2.yaml"] {
        alice.expect(&[p, "--remote", &url, "--push"], 0);
    }
    // Forty days pass.
    let then = std::time::SystemTime::now() - Duration::from_secs(40 * 86_400);
    let then_ms = then.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for f in files_under(shared.path()) {
        if f.extension().is_some_and(|e| e == "json") && f.starts_with(shared.path().join("ac")) {
            let mut e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            e["created_unix_ms"] = then_ms.into();
            std::fs::write(&f, e.to_string()).unwrap();
        }
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(then).unwrap();
    }
    // A result pushed today stays, whatever happens to the old ones.
    alice.expect(&["p3.yaml", "--remote", &url, "--push"], 0);
    let gc = |args: &[&str]| {
        let mut all = vec!["cache", "gc", "--remote", &url];
        all.extend_from_slice(args);
        alice.expect(&all, 0).stdout
    };
    let artifacts = || files_under(&shared.path().join("cas")).iter().filter(|f| f.ends_with("listing")).count();
    assert_eq!(artifacts(), 5);
    // `cache ls --remote` shows what is there, and how old.
    let ls = alice.expect(&["cache", "ls", "--remote", &url], 0).stdout;
    assert!(ls.contains("test-rows.out") && ls.contains("test-scale.out"), "{ls}");
    assert!(ls.lines().last().unwrap().starts_with("5 artifacts, ") && ls.contains("; 5 entries, the oldest created ") && ls.contains("; 20 row results ("), "{ls}");
    let j = alice.expect(&["cache", "ls", "--remote", &url, "--json"], 0).json();
    assert_eq!((j["artifacts"].as_array().unwrap().len(), j["entries"].as_u64(), j["row_results"].as_u64()), (5, Some(5), Some(20)), "{j}");
    assert_eq!(j["oldest_entry_unix_ms"].as_u64(), Some(then_ms));

    let out = gc(&["--older-than", "30", "--keep", "p1.yaml", "--dry-run"]);
    assert!(out.starts_with("would delete 1 entries, 1 artifacts and 0 row results ("), "{out}");
    assert_eq!(artifacts(), 5, "a dry run deletes nothing");
    let out = gc(&["--older-than", "30", "--keep", "p1.yaml"]);
    assert!(out.starts_with("deleted 1 entries, 1 artifacts and 0 row results (") && out.contains("kept 4 entries"), "{out}");
    assert_eq!(artifacts(), 4);
    alice.expect(&["cache", "verify", "--remote", &url, "--full"], 0);
    // A teammate still finds the kept pipeline whole; the evicted one computes.
    let bob = Work::new();
    bob.write("p1.yaml", p1);
    bob.write("p2.yaml", p2);
    assert_eq!(bob.expect(&["p1.yaml", "--json", "--remote", &url], 0).with_status("remote"), vec!["a", "b", "r"]);
    assert_eq!(bob.expect(&["p2.yaml", "--json", "--remote", &url], 0).with_status("ran"), vec!["c"]);

    // Without --keep the old ones go too, their rows with them; today's push stays.
    let out = gc(&["--older-than", "30"]);
    assert!(out.starts_with("deleted 3 entries, 3 artifacts and 20 row results (") && out.contains("kept 1 entries"), "{out}");
    assert_eq!(artifacts(), 1);
    assert!(files_under(&shared.path().join("rows")).is_empty());
    assert!(alice.expect(&["cache", "ls", "--remote", &url], 0).stdout.contains("1 artifacts, "));
    alice.expect(&["cache", "verify", "--remote", &url, "--full"], 0);
    let carol = Work::new();
    carol.write("p3.yaml", p3);
    assert_eq!(carol.expect(&["p3.yaml", "--json", "--remote", &url], 0).with_status("remote"), vec!["d"]);

    // Usage.
    let e = alice.expect(&["cache", "gc", "--remote", &url], 2);
    assert!(e.stderr.contains("--older-than DAYS"), "{}", e.stderr);
    let e = alice.expect(&["cache", "gc", "--older-than", "3"], 2);
    assert!(e.stderr.contains("--remote"), "{}", e.stderr);
    let e = alice.expect(&["cache", "gc", "--remote", &url, "--older-than", "3", "--rows"], 2);
    assert!(e.stderr.contains("--rows is for the local cache"), "{}", e.stderr);
}
