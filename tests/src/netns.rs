//! Network namespaces for tests: each test gets its own, named "nrt-…" so
//! that parallel tests and a running lab never collide, and it is deleted
//! when the guard drops, even when the test panics.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Panics unless the process runs as root: these suites need a real kernel
/// and are never skipped.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|error| panic!("cannot read /proc/self/status to check for root: {error}"));
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1));
    assert_eq!(
        effective_uid,
        Some("0"),
        "these tests program a real kernel in network namespaces and must run as root \
         (e.g. `sudo -E cargo test -p nativeroute-tests`); they are never skipped"
    );
}

/// Runs `program args…`, returning its stdout; panics with the command and
/// its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run `{program} {}`: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace that exists as long as this guard does.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with a fresh name of at most 15 characters.
    pub fn new() -> Self {
        require_root();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        loop {
            let serial = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("nrt-{:x}-{:x}", std::process::id(), serial);
            assert!(name.len() <= 15, "namespace name {name} too long");
            // A leftover of an earlier run with the same pid: take the next.
            if std::path::Path::new("/run/netns").join(&name).exists() {
                continue;
            }
            run("ip", &["netns", "add", &name]);
            let netns = Self { name };
            netns.ip("link set lo up");
            return netns;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME <args>` (args split on whitespace), returning stdout.
    pub fn ip(&self, args: &str) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    /// Gives the namespace a connected network: a veth pair `ifname` ↔
    /// `ifname`-peer with both ends up and `address` (a CIDR) on `ifname`.
    /// The test kernel has no dummy driver; a veth pair stands in.
    pub fn add_connected_network(&self, ifname: &str, address: &str) {
        let peer = format!("{ifname}p");
        assert!(peer.len() <= 15, "interface name {peer} too long");
        self.ip(&format!("link add {ifname} type veth peer name {peer}"));
        self.ip(&format!("link set {ifname} up"));
        self.ip(&format!("link set {peer} up"));
        self.ip(&format!("address add {address} dev {ifname}"));
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace does not stop the processes in it.
        if let Ok(output) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !matches!(deleted, Ok(status) if status.success()) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}
