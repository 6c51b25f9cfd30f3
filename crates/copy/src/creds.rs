//! Credentials: `--src-creds`/`--dest-creds USER:PASS`, else `docker login`'s file
//! (`--authfile`, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: the `auths` entry
//! of the registry, base64 `user:password`). Credential helpers (`credsStore`) are not run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::transport::DOCKER_HUB;
use crate::Failure;

/// `USER:PASS` from the command line.
pub fn parse_creds(s: &str) -> crate::Result<(String, String)> {
    match s.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_owned(), pass.to_owned())),
        _ => Err(Failure::Usage(
            "credentials must be USER:PASSWORD".to_owned(),
        )),
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The docker config file to read: `authfile` if given, else docker's own.
pub fn config_path(authfile: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = authfile {
        return Some(p.to_owned());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The credentials stored for registry `host` (as named in references: `docker.io`,
/// `127.0.0.1:5000`) in the docker config file at `path`; none when the file or entry is
/// missing. An unreadable or malformed file is an error: silently pulling anonymously
/// would hide it.
pub fn from_docker_config(path: &Path, host: &str) -> crate::Result<Option<(String, String)>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::Usage(format!("{}: {e}", path.display()))),
    };
    let config: ConfigFile = serde_json::from_slice(&text)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let wanted = |key: &str| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key = key.split('/').next().unwrap_or(key);
        let key = if key == "index.docker.io" || key == "registry-1.docker.io" {
            DOCKER_HUB
        } else {
            key
        };
        key == host
    };
    let Some(entry) = config
        .auths
        .iter()
        .filter(|(k, _)| wanted(k))
        .map(|(_, v)| v)
        .next()
    else {
        return Ok(None);
    };
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Some((u.clone(), p.clone())));
    }
    let Some(auth) = &entry.auth else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| Failure::Usage(format!("{}: auth of {host}: {e}", path.display())))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| Failure::Usage(format!("{}: auth of {host} is not text", path.display())))?;
    parse_creds(&text).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_login_entries() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "127.0.0.1:5000": {{"auth": "{auth}"}}}}}}"#
        );
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("{e}"));
        let want = Some(("alice".to_owned(), "s3cr:et".to_owned()));
        assert_eq!(
            from_docker_config(&path, "docker.io").ok(),
            Some(want.clone())
        );
        assert_eq!(from_docker_config(&path, "127.0.0.1:5000").ok(), Some(want));
        assert_eq!(from_docker_config(&path, "ghcr.io").ok(), Some(None));
        let missing = dir.path().join("nope.json");
        assert_eq!(from_docker_config(&missing, "docker.io").ok(), Some(None));
    }
}
