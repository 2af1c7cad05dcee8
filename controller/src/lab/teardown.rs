//! Removing a lab, whatever state it is in: fully up, half built, or left
//! behind by a crash. Everything is found from the outside (pid file,
//! `ip netns list`), never from memory of what was made.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::controller_process;
use super::netns;
use super::spec::LabSpec;
use super::topology::Topology;

/// How long the controller gets to exit after SIGTERM before SIGKILL.
pub const CONTROLLER_GRACE: Duration = Duration::from_secs(5);

/// Stops the lab's controller, kills what runs in its namespaces, deletes
/// them and removes the lab directory. Succeeds when nothing is up.
pub async fn destroy(spec: &LabSpec) -> Result<()> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || destroy_blocking(&spec))
        .await
        .context("lab teardown panicked")?
}

/// [`destroy`] for places without a runtime, such as a test's `Drop` guard.
pub fn destroy_blocking(spec: &LabSpec) -> Result<()> {
    spec.check()?;
    controller_process::stop(spec, CONTROLLER_GRACE)?;
    delete_namespaces(spec)?;
    remove_lab_files(&spec.dir)
}

/// Kills every process in the lab's namespaces and deletes them. Only the
/// lab's own names (prefix + rtr, sw2, nodeN, nodeN-c) are touched, so a
/// lab "nrlab-" never removes a test's "nrlab-t1-…" namespaces.
pub(crate) fn delete_namespaces(spec: &LabSpec) -> Result<()> {
    let ours = Topology::plan(spec.clone()).namespaces();
    let existing = netns::list_blocking()?;
    for ns in existing.iter().filter(|ns| ours.contains(ns)) {
        for pid in netns::pids_blocking(ns)? {
            // Already gone is fine: it exited between listing and killing.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        netns::delete_blocking(ns)?;
    }
    Ok(())
}

/// Whether a file in the lab directory is one the lab or its controller
/// writes (the controller's atomic writes leave `nodes.yaml.state.json.*`).
fn is_lab_file(name: &str) -> bool {
    [
        "config.yaml",
        "nodes.yaml",
        "controller.",
        super::kubernetes::MARKER,
    ]
    .iter()
    .any(|start| name.starts_with(start))
}

/// Removes the lab's files and then the directory if that left it empty;
/// anything else in it (a mistaken `--dir`) is left alone.
pub(crate) fn remove_lab_files(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading lab directory {}", dir.display()));
        }
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading lab directory {}", dir.display()))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && entry.file_name() == super::bgp_router::FRR_DIR {
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
            continue;
        }
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && is_lab_file(&entry.file_name().to_string_lossy()) {
            let path = entry.path();
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
            tracing::warn!(dir = %dir.display(), "lab directory holds files the lab did not write; left in place");
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("removing lab directory {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_lab_files_spares_foreign_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "config.yaml",
            "nodes.yaml",
            "nodes.yaml.state.json.tmp",
            "controller.log",
        ] {
            std::fs::write(dir.path().join(name), "x").expect("write");
        }
        std::fs::write(dir.path().join("precious.txt"), "x").expect("write");
        remove_lab_files(dir.path()).expect("removes");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir kept")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["precious.txt"]);
    }

    #[test]
    fn removing_a_missing_lab_dir_succeeds() {
        remove_lab_files(Path::new("/nonexistent/nativeroute-lab")).expect("nothing to do");
    }
}
