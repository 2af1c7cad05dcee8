//! Where a lab lives: its namespace name prefix and its directory of files.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The prefix `nativeroute lab` uses; tests pick their own.
pub const DEFAULT_PREFIX: &str = "nrlab-";
/// The directory `nativeroute lab` writes its files into.
pub const DEFAULT_DIR: &str = "/run/nativeroute-lab";

/// Names one lab: every namespace it makes is `prefix` + a role (`rtr`,
/// `sw2`, `node1`, `node1-c`, …), and its controller files live in `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    pub prefix: String,
    pub dir: PathBuf,
}

impl Default for LabSpec {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            dir: PathBuf::from(DEFAULT_DIR),
        }
    }
}

impl LabSpec {
    pub fn new(prefix: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            prefix: prefix.into(),
            dir: dir.into(),
        }
    }

    /// The namespace that plays `role` (`rtr`, `node1`, `node1-c`, …).
    pub fn netns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    /// The controller config the lab writes.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// The node inventory the lab writes (`nodes.source: file`).
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("nodes.yaml")
    }

    /// Where the controller keeps its file-inventory assignments.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("nodes.yaml.state.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("controller.log")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("controller.pid")
    }

    /// Rejects prefixes that would make odd namespace names (they become
    /// file names under /run/netns) or an empty prefix, which would let a
    /// lab claim namespaces called plainly `rtr` or `node1`.
    pub(crate) fn check(&self) -> Result<()> {
        let p = &self.prefix;
        let ok_chars = p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if p.is_empty() || !ok_chars || p.starts_with('.') || p.len() > 64 {
            bail!(
                "lab prefix {p:?} is not usable: use 1-64 characters of letters, digits, '-', '_' or '.', not starting with '.'"
            );
        }
        if self.dir.as_os_str().is_empty() || self.dir == Path::new("/") {
            bail!("lab directory {:?} is not usable", self.dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_uses_nrlab_prefix_and_run_dir() {
        let spec = LabSpec::default();
        assert_eq!(spec.netns("node1-c"), "nrlab-node1-c");
        assert_eq!(
            spec.state_path(),
            Path::new("/run/nativeroute-lab/nodes.yaml.state.json")
        );
    }

    #[test]
    fn prefix_with_slash_or_empty_is_refused() {
        assert!(LabSpec::new("a/b-", "/tmp/x").check().is_err());
        assert!(LabSpec::new("", "/tmp/x").check().is_err());
        assert!(LabSpec::new("t42-", "/tmp/x").check().is_ok());
    }
}
