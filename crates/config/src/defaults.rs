//! The configuration used when no file is given: registry:2's stock `config.yml`, adapted to a
//! fresh machine where the user is not root (data under the user's data directory instead of
//! `/var/lib/registry`) and with deletes enabled. Its `health` section is the stock one: storage is
//! checked every 10 s, and three failures in a row make the API answer 503.

use std::path::{Path, PathBuf};

/// What [`crate::Loaded::source`] says when the embedded default was used.
pub const EMBEDDED_SOURCE: &str = "embedded default";

/// The embedded default configuration with `ROOTDIRECTORY` as the placeholder for the storage
/// root (see [`embedded_default_yaml`], which fills it in).
pub const EMBEDDED_DEFAULT_TEMPLATE: &str = "\
version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: ROOTDIRECTORY
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

/// The embedded default configuration as YAML text, storing data under `root`.
pub fn embedded_default_yaml(root: &Path) -> String {
    // A single-quoted YAML scalar holds any path; quotes inside are doubled.
    let quoted = format!("'{}'", root.to_string_lossy().replace('\'', "''"));
    EMBEDDED_DEFAULT_TEMPLATE.replace("ROOTDIRECTORY", &quoted)
}

/// Where the embedded default stores data: `$BERTH_DATA_DIR` if set, else
/// `$XDG_DATA_HOME/berth/registry`, else `$HOME/.local/share/berth/registry`, else
/// `./berth-data`. Reads the process environment.
pub fn default_root_directory() -> PathBuf {
    root_directory_from(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
}

/// [`default_root_directory`] with the environment given by a lookup function (empty values
/// count as unset; a relative `XDG_DATA_HOME` is ignored, as the XDG spec requires).
pub fn root_directory_from(lookup: impl Fn(&str) -> Option<String>) -> PathBuf {
    let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("BERTH_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = var("XDG_DATA_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Path::new(&xdg).join("berth").join("registry");
    }
    if let Some(home) = var("HOME") {
        return Path::new(&home).join(".local/share/berth/registry");
    }
    PathBuf::from("./berth-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn root_directory_precedence() {
        let all = [
            ("BERTH_DATA_DIR", "/data"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(root_directory_from(lookup(&all)), PathBuf::from("/data"));
        assert_eq!(
            root_directory_from(lookup(&all[1..])),
            PathBuf::from("/xdg/berth/registry")
        );
        assert_eq!(
            root_directory_from(lookup(&all[2..])),
            PathBuf::from("/home/u/.local/share/berth/registry")
        );
        assert_eq!(
            root_directory_from(lookup(&[])),
            PathBuf::from("./berth-data")
        );
        let odd = [
            ("BERTH_DATA_DIR", ""),
            ("XDG_DATA_HOME", "relative"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            root_directory_from(lookup(&odd)),
            PathBuf::from("/h/.local/share/berth/registry")
        );
    }

    #[test]
    fn embedded_yaml_quotes_the_root() {
        let text = embedded_default_yaml(Path::new("/tmp/it's here"));
        assert!(text.contains("rootdirectory: '/tmp/it''s here'"), "{text}");
        let parsed: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid yaml");
        assert_eq!(
            parsed["storage"]["filesystem"]["rootdirectory"],
            serde_yaml::Value::from("/tmp/it's here")
        );
    }
}
