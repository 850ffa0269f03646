//! The two things the shim itself reads from a bundle's config.json (the
//! library reads and validates the rest): the grouping annotations and
//! whether the container gets a new pid namespace. A struct of its own
//! rather than oci-spec's `Spec`, whose deserializer is a large piece of
//! code to keep resident for two fields.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    linux: Option<Linux>,
}

#[derive(Debug, Default, Deserialize)]
struct Linux {
    #[serde(default)]
    namespaces: Vec<Namespace>,
}

#[derive(Debug, Deserialize)]
struct Namespace {
    #[serde(rename = "type")]
    typ: String,
    #[serde(default)]
    path: Option<String>,
}

impl Config {
    /// `bundle`'s config.json; None if it cannot be read or parsed (the
    /// library reports that at create).
    pub fn load(bundle: &Path) -> Option<Config> {
        let text = std::fs::read(bundle.join("config.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// Whether the container gets a pid namespace of its own.
    pub fn new_pid_namespace(&self) -> bool {
        self.linux.as_ref().is_some_and(|l| {
            l.namespaces
                .iter()
                .any(|n| n.typ == "pid" && n.path.as_deref().is_none_or(str::is_empty))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn reads_annotations_and_pid_namespace() {
        let c: Config = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"pod1"},
                "linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]},"process":{"args":["sh"]}}"#,
        )
        .expect("parse");
        assert_eq!(c.annotation("io.kubernetes.cri.sandbox-id"), Some("pod1"));
        assert!(c.new_pid_namespace());
        let shared: Config = serde_json::from_str(
            r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#,
        )
        .expect("parse");
        assert!(!shared.new_pid_namespace());
        assert!(!Config::default().new_pid_namespace());
    }
}
