//! The controller under test: the release `nativeroute` binary as a child
//! process, with what the benchmark reads of it (CPU time, peak memory, log).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The controller binary as a child process; killed if still running when
/// dropped (a failed run).
pub struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    /// `nativeroute run` with `config` and, for a Kubernetes node source,
    /// `kubeconfig` (and a Lease of its own), logging at `log_level` into
    /// `log`; no metrics.
    pub fn start(
        config: &Path,
        kubeconfig: Option<&Path>,
        log: &Path,
        log_level: &str,
    ) -> Controller {
        let log_path = log.to_path_buf();
        let log = std::fs::File::create(log)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log_path.display()));
        let stderr = log.try_clone().expect("a second handle on the log");
        let mut command = Command::new(controller_binary());
        command.arg("run").arg("--config").arg(config);
        if let Some(kubeconfig) = kubeconfig {
            command.arg("--kubeconfig").arg(kubeconfig).args([
                "--lease-namespace",
                "bench",
                "--identity",
                "bench",
            ]);
        }
        let child = command
            .args(["--metrics-address", "off"])
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("the controller starts");
        Controller {
            child,
            log: log_path,
        }
    }

    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the controller exited ({status}); its log ends:\n{}",
                self.log_tail()
            );
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The CPU time the controller used so far, in 1/100 s.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the controller's /proc stat");
        // utime and stime are fields 14 and 15; the name (field 2) may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        field(14)
            .zip(field(15))
            .map(|(user, system)| user + system)
            .expect("utime and stime in /proc/<pid>/stat")
    }

    /// The controller's CPU use over the next `window`, in shares of one
    /// core (1/100 s ticks, so ±1 tick of `window`).
    pub async fn cpu_share_over(&mut self, window: Duration) -> f64 {
        let before = self.cpu_ticks();
        tokio::time::sleep(window).await;
        self.assert_running();
        let used = self.cpu_ticks() - before;
        used as f64 / 100.0 / window.as_secs_f64()
    }

    /// The most memory the controller ever held (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the controller's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// SIGTERM, as Kubernetes stops a pod; panics unless it exits cleanly.
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .expect("SIGTERM to the controller");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the controller") {
                assert!(
                    status.success(),
                    "the controller exited with {status} on SIGTERM; its log ends:\n{}",
                    self.log_tail()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller did not exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `nativeroute` binary: cargo puts it next to this one in
/// target/release.
fn controller_binary() -> PathBuf {
    let bench = std::env::current_exe().expect("the bench binary's path");
    let binary = bench
        .parent()
        .map(|dir| dir.join("nativeroute"))
        .expect("the bench binary lives in target/<profile>");
    assert!(
        binary.exists(),
        "{} is missing: build it first (`cargo build --release -p nativeroute`)",
        binary.display()
    );
    binary
}
