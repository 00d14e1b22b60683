//! Turns a remote URL into an object store: `s3://bucket/prefix` (and S3-compatible servers
//! through `AWS_ENDPOINT_URL` or the profile's `endpoint_url`), `gs://bucket/prefix`,
//! `az://container/prefix` (also `abfs://`, `azure://`), and shared directories as `file:///path`
//! or a plain path.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use crate::creds::{aws_profile, display_url, Redactor};

/// Builds the object store client (deferred: an S3 client costs ~20 ms to build, which a
/// run that finds every key locally never needs).
pub type Connect = Box<dyn Fn() -> Result<Arc<dyn ObjectStore>, String> + Send + Sync>;

/// An object store (to build), the prefix under which dagrun keeps its two stores, and how
/// to show it.
pub struct Opened {
    pub connect: Connect,
    pub prefix: ObjectPath,
    pub shown: String,
    pub redactor: Redactor,
}

/// Why a remote URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("remote `{shown}`: {why}")]
pub struct OpenError {
    pub shown: String,
    pub why: String,
}

/// How HTTP remotes retry: object_store retries failed requests (connection errors, 5xx,
/// throttling) with exponential backoff.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), base: 2.0 },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(300))
        .with_allow_http(allow_http)
}

/// Opens the remote named by `spec` (a URL or a directory path).
pub fn open(spec: &str) -> Result<Opened, OpenError> {
    let spec = spec.trim();
    let looks_like_path = !spec.contains("://") && !spec.starts_with("file:");
    if spec.is_empty() {
        return Err(OpenError { shown: String::new(), why: "empty remote URL".into() });
    }
    if looks_like_path {
        return open_dir(std::path::Path::new(spec), spec.to_string());
    }
    let url = Url::parse(spec).map_err(|e| OpenError { shown: spec.split('?').next().unwrap_or("").into(), why: format!("not a URL: {e}") })?;
    let shown = display_url(&url);
    let bad = |why: String| OpenError { shown: shown.clone(), why };
    let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| {
        bad(format!("{e}; expected s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX or file:///DIR"))
    })?;
    let profile = aws_profile();
    let mut redactor = Redactor::from_env(&profile);
    let prefix = ObjectPath::parse(path).map_err(|e| bad(format!("bad prefix: {e}")))?;
    let cloud = matches!(
        scheme,
        ObjectStoreScheme::AmazonS3 | ObjectStoreScheme::GoogleCloudStorage | ObjectStoreScheme::MicrosoftAzure
    );
    if cloud && url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(bad("the URL names no bucket or container".into()));
    }
    let connect: Connect = match scheme {
        ObjectStoreScheme::Local => {
            let dir = url.to_file_path().map_err(|_| bad("a file:// URL must name an absolute directory".into()))?;
            return open_dir(&dir, shown);
        }
        ObjectStoreScheme::AmazonS3 => {
            let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
            let env_has_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
            if !env_has_keys {
                if let (Some(id), Some(secret)) = (&profile.access_key_id, &profile.secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(secret);
                    if let Some(t) = &profile.session_token {
                        b = b.with_token(t);
                    }
                }
            }
            let env_region = std::env::var_os("AWS_REGION").or_else(|| std::env::var_os("AWS_DEFAULT_REGION"));
            if env_region.is_none() {
                if let Some(r) = &profile.region {
                    b = b.with_region(r);
                }
            }
            let env_endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).ok();
            let endpoint = env_endpoint.or_else(|| profile.endpoint_url.clone());
            if let Some(e) = &endpoint {
                b = b.with_endpoint(e);
                // An S3-compatible server named by address is addressed by path, not by a
                // bucket subdomain.
                b = b.with_virtual_hosted_style_request(false);
            }
            let allow_http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
                || std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true" || v == "1");
            b = b.with_retry(retry_config()).with_client_options(client_options(allow_http));
            Box::new(move || b.clone().build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| e.to_string()))
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            // An emulator (fake-gcs-server, gcp-storage-emulator) is named by GOOGLE_BASE_URL.
            let allow_http = std::env::var("GOOGLE_BASE_URL").is_ok_and(|u| u.starts_with("http://"));
            let b = GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry_config())
                .with_client_options(client_options(allow_http));
            Box::new(move || b.clone().build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| e.to_string()))
        }
        ObjectStoreScheme::MicrosoftAzure => {
            // Azurite (AZURE_STORAGE_USE_EMULATOR) is allowed plain HTTP by object_store itself.
            let allow_http = std::env::var("AZURE_ALLOW_HTTP").is_ok_and(|v| v == "true" || v == "1");
            let b = MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry_config())
                .with_client_options(client_options(allow_http));
            Box::new(move || b.clone().build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| e.to_string()))
        }
        other => {
            return Err(bad(format!(
                "{other:?} remotes are not supported; use s3://, gs://, az:// or file://"
            )))
        }
    };
    if let Some(p) = url.password() {
        redactor.add(p);
    }
    Ok(Opened { connect, prefix, shown, redactor })
}

fn open_dir(dir: &std::path::Path, shown: String) -> Result<Opened, OpenError> {
    let bad = |why: String| OpenError { shown: shown.clone(), why };
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create the shared directory: {e}")))?;
    let dir = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
    let fs: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?.with_automatic_cleanup(true));
    Ok(Opened { connect: Box::new(move || Ok(fs.clone())), prefix: ObjectPath::default(), shown, redactor: Redactor::default() })
}
