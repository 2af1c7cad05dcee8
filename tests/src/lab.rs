//! A seed-000 lab per test, under a unique namespace prefix and its own
//! directory, with the real `nativeroute` binary as the controller. The lab
//! is torn down when the guard drops, even when the test panics.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute::lab::{LabRouter, LabSpec, Topology, destroy_blocking};

use crate::netns::{require_root, run};

/// A lab of its own for one test.
pub struct TestLab {
    pub topology: Topology,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestLab {
    /// Builds router, switch and nodes; writes the controller config (with
    /// `resync`) and the lab's default inventory. No controller runs yet.
    pub async fn create(resync: Duration) -> TestLab {
        Self::create_with_router(resync, LabRouter::Netlink).await
    }

    /// [`TestLab::create`] with the router reached as `router` says: with
    /// `Bgp`, FRR's zebra and bgpd run in the router's namespace.
    pub async fn create_with_router(resync: Duration, router: LabRouter) -> TestLab {
        require_root();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short enough that "<prefix>node1-c" stays a reasonable name.
        let prefix = format!("nre{}x{id}-", std::process::id() % 100_000);
        let dir = tempfile::tempdir().expect("temp dir for the lab");
        let spec = LabSpec::new(prefix, dir.path());
        let mut topology = Topology::create(spec)
            .await
            .unwrap_or_else(|err| panic!("cannot build the lab: {err:#}"));
        if router == LabRouter::Bgp {
            topology
                .start_bgp_router()
                .await
                .unwrap_or_else(|err| panic!("cannot start the lab's BGP router: {err:#}"));
        }
        let config = topology
            .write_controller_files(resync)
            .unwrap_or_else(|err| panic!("cannot write the controller files: {err:#}"));
        TestLab {
            topology,
            config,
            _dir: dir,
        }
    }

    pub fn router_netns(&self) -> &str {
        self.topology.router_netns()
    }

    pub fn inventory_path(&self) -> PathBuf {
        self.topology.spec().inventory_path()
    }

    pub fn state_path(&self) -> PathBuf {
        self.topology.spec().state_path()
    }

    /// Replaces the node inventory with `text`.
    pub fn write_inventory(&self, text: &str) {
        write_atomically(&self.inventory_path(), text);
    }

    /// Starts the controller binary against this lab.
    pub fn start_controller(&self) -> ControllerProcess {
        ControllerProcess::start(&self.config, &self.log_path(), "off")
    }

    /// Starts the controller with /metrics on a free loopback port.
    pub fn start_controller_with_metrics(&self) -> (ControllerProcess, SocketAddr) {
        let address = free_loopback_port();
        let controller =
            ControllerProcess::start(&self.config, &self.log_path(), &address.to_string());
        (controller, address)
    }

    pub fn log_path(&self) -> PathBuf {
        self.topology.spec().dir.join("controller.log")
    }

    /// Gives every node its bridge and container on the given subnets.
    pub async fn attach_containers(&self, subnets: &BTreeMap<String, IpNet>) {
        self.topology
            .attach_containers(subnets)
            .await
            .unwrap_or_else(|err| panic!("cannot attach containers: {err:#}"));
    }

    /// Whether `from`'s container gets a reply from `to`'s container.
    pub async fn pings(&self, from: &str, to: &str) -> bool {
        let target = self
            .topology
            .container_address(to)
            .unwrap_or_else(|| panic!("node {to} has no container"));
        self.topology
            .ping(from, target)
            .await
            .unwrap_or_else(|err| panic!("cannot ping from {from}: {err:#}"))
    }

    /// The router's routes inside the pool: destination → (next hop, protocol).
    pub fn router_routes(&self) -> BTreeMap<IpNet, (Option<IpAddr>, String)> {
        router_routes(self.router_netns())
    }

    /// The router's IPv4 routes (every table) and nexthop objects as
    /// iproute2 prints them, to compare before and after. IPv6 is left out:
    /// the kernel adds link-local routes by itself as addresses settle.
    pub fn router_fingerprint(&self) -> String {
        let ns = self.router_netns();
        let routes = run(
            "ip",
            &["-n", ns, "-4", "-d", "route", "show", "table", "all"],
        );
        let nexthops = run("ip", &["-n", ns, "nexthop", "show"]);
        format!("{routes}\n{nexthops}")
    }

    /// Runs `ip args…` inside the router namespace.
    pub fn ip_in_router(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.router_netns()];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(err) = destroy_blocking(self.topology.spec()) {
            eprintln!("warning: lab teardown failed: {err:#}");
        }
    }
}

/// The routes in `netns`'s main table inside 11.11.0.0/16.
pub fn router_routes(netns: &str) -> BTreeMap<IpNet, (Option<IpAddr>, String)> {
    let json = run(
        "ip",
        &["-j", "-n", netns, "route", "show", "root", "11.11.0.0/16"],
    );
    let routes: Vec<serde_json::Value> = serde_json::from_str(&json)
        .unwrap_or_else(|err| panic!("ip -j route printed bad JSON ({err}): {json}"));
    routes
        .iter()
        .filter_map(|route| {
            let dst: IpNet = route.get("dst")?.as_str()?.parse().ok()?;
            let via = route
                .get("gateway")
                .and_then(|g| g.as_str())
                .and_then(|g| g.parse().ok());
            let protocol = route
                .get("protocol")
                .and_then(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .or_else(|| p.as_u64().map(|n| n.to_string()))
                })
                .unwrap_or_default();
            Some((dst, (via, protocol)))
        })
        .collect()
}

/// Waits until `check` holds, polling every 50 ms; panics with `what` after `timeout`.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `text` to `path` the way careful tools do: a temp file, then rename.
pub fn write_atomically(path: &Path, text: &str) {
    let temp = path.with_extension("tmp-write");
    std::fs::write(&temp, text)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", temp.display()));
    std::fs::rename(&temp, path)
        .unwrap_or_else(|err| panic!("cannot rename to {}: {err}", path.display()));
}

/// The `nativeroute` binary of this build (cargo puts it next to the test
/// binaries' `deps` directory).
pub fn nativeroute_binary() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("nativeroute");
    assert!(
        binary.exists(),
        "{} is missing: build it first (`cargo build -p nativeroute`, or run the whole workspace's tests)",
        binary.display()
    );
    binary
}

/// Runs `nativeroute args…` to completion, returning (success, stdout+stderr).
pub fn run_nativeroute(args: &[&str]) -> (bool, String) {
    let output = Command::new(nativeroute_binary())
        .args(args)
        .output()
        .expect("cannot run nativeroute");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A running controller; killed (SIGKILL) when dropped.
pub struct ControllerProcess {
    child: Child,
    log: PathBuf,
}

impl ControllerProcess {
    pub fn start(config: &Path, log: &Path, metrics_address: &str) -> ControllerProcess {
        Self::start_with(config, log, metrics_address, &[])
    }

    /// Starts the controller with `extra` arguments after `run … --config`.
    pub fn start_with(
        config: &Path,
        log: &Path,
        metrics_address: &str,
        extra: &[String],
    ) -> ControllerProcess {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", log.display()));
        let stderr = log_file.try_clone().expect("clone log handle");
        let child = Command::new(nativeroute_binary())
            .args(["run", "--metrics-address", metrics_address, "--config"])
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info,nativeroute=debug")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .expect("cannot start the controller");
        ControllerProcess {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Everything the controller logged so far (all runs share one log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as Kubernetes stops a pod, and waits until it exited;
    /// panics if it did not exit within `grace` or exited with an error.
    pub fn stop(mut self, grace: Duration) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "the controller exited with {status} on SIGTERM; its log:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller did not exit within {grace:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up, as in a crash or an OOM kill.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panics if the controller exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the controller exited ({status}); its log:\n{}", self.log());
        }
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("its address")
}

/// A plain HTTP/1.1 GET on loopback: (status code, body); `None` if nothing answers.
pub fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
