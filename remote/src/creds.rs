//! Where a remote's credentials come from: the standard environment variables of each cloud
//! (read by object_store's `from_env` builders) and, for S3, the shared AWS profile files
//! (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`). Every secret value found is kept so
//! that messages can be scrubbed of it; none is ever stored in a key, record or log.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Settings read from an AWS profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AwsProfile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Parses an INI file into section -> (key -> value), keys lower-cased.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone()).or_default().insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// The AWS profile named by `AWS_PROFILE` (else `default`) from the shared credentials and
/// config files (`AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` override their places).
pub fn aws_profile() -> AwsProfile {
    let name = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "default".into());
    let creds_file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/credentials")));
    let config_file =
        std::env::var_os("AWS_CONFIG_FILE").map(PathBuf::from).or_else(|| home().map(|h| h.join(".aws/config")));
    let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok()).map(|t| parse_ini(&t)).unwrap_or_default();
    let creds = read(creds_file);
    let config = read(config_file);
    profile_from(&name, &creds, &config)
}

fn profile_from(
    name: &str,
    creds: &BTreeMap<String, BTreeMap<String, String>>,
    config: &BTreeMap<String, BTreeMap<String, String>>,
) -> AwsProfile {
    // In the config file, profiles other than `default` are written `[profile NAME]`.
    let config_section = if name == "default" { "default".to_string() } else { format!("profile {name}") };
    let c = creds.get(name);
    let f = config.get(&config_section).or_else(|| config.get(name));
    let get = |k: &str| c.and_then(|s| s.get(k)).or_else(|| f.and_then(|s| s.get(k))).cloned().filter(|v| !v.is_empty());
    AwsProfile {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    }
}

/// Environment variables whose values are secrets, for scrubbing messages.
const SECRET_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CLIENT_SECRET",
    "GOOGLE_BEARER_TOKEN",
];

/// Removes secret values from messages.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Collects the secrets of the environment and the AWS profile.
    pub fn from_env(profile: &AwsProfile) -> Redactor {
        let mut r = Redactor::default();
        for v in SECRET_VARS {
            if let Ok(s) = std::env::var(v) {
                r.add(&s);
            }
        }
        for s in [&profile.access_key_id, &profile.secret_access_key, &profile.session_token].into_iter().flatten() {
            r.add(s);
        }
        r
    }

    /// Adds a secret (values shorter than 4 characters are not worth scrubbing and would mangle
    /// ordinary text).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// A URL as it may be shown: no user name, password or query string (signed URLs carry
/// credentials there).
pub fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_come_from_credentials_then_config() {
        let creds = parse_ini("[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s3cr3t\n\n[team]\naws_access_key_id=AKIA2\naws_secret_access_key = other\n");
        let config = parse_ini("[default]\nregion = eu-west-1\n[profile team]\nregion=us-east-2\nendpoint_url = http://127.0.0.1:9000\n");
        let d = profile_from("default", &creds, &config);
        assert_eq!(d.access_key_id.as_deref(), Some("AKIA1"));
        assert_eq!(d.secret_access_key.as_deref(), Some("s3cr3t"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        let t = profile_from("team", &creds, &config);
        assert_eq!(t.secret_access_key.as_deref(), Some("other"));
        assert_eq!(t.region.as_deref(), Some("us-east-2"));
        assert_eq!(t.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(profile_from("absent", &creds, &config), AwsProfile::default());
    }

    #[test]
    fn secrets_are_scrubbed_and_urls_lose_credentials() {
        let mut r = Redactor::default();
        r.add("wJalrXUtnFEMI");
        r.add("ab");
        assert_eq!(r.scrub("signature for wJalrXUtnFEMI failed at ab"), "signature for *** failed at ab");
        let u = url::Url::parse("s3://KEY:SECRET@bucket/prefix?X-Amz-Signature=abc").unwrap();
        assert_eq!(display_url(&u), "s3://bucket/prefix");
    }
}
