//! The lab's controller as a detached background process: started in its
//! own session so closing the terminal or Ctrl-C does not stop it, found
//! again later through its pid file.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::netns;
use super::spec::LabSpec;

const POLL: Duration = Duration::from_millis(100);
const AFTER_SIGKILL: Duration = Duration::from_secs(2);

/// Where the default lab's controller serves /metrics, /healthz and /readyz.
pub const LAB_METRICS_ADDRESS: &str = "127.0.0.1:9763";

/// A controller this process started.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Child,
}

impl ControllerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some` once the controller has exited.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .context("checking whether the controller still runs")
    }
}

/// Starts `exe run --config CONFIG` in a new session, appending its output
/// to the lab's log and recording its pid in the lab's pid file.
pub fn spawn(
    spec: &LabSpec,
    exe: &Path,
    config: &Path,
    kubeconfig: Option<&Path>,
) -> Result<ControllerProcess> {
    // std can only call setsid(2) from an unsafe pre_exec hook and the
    // workspace denies unsafe code; util-linux's setsid execs in place (the
    // child is no process group leader), so the pid stays the controller's.
    netns::require_programs(&["setsid"])?;
    let log_path = spec.log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening controller log {}", log_path.display()))?;
    let stderr = log.try_clone().context("duplicating the log file handle")?;
    // Metrics on loopback only; the default lab gets the documented port,
    // other labs (tests, a second lab) none, so that they never collide.
    let metrics_address = if spec.prefix == super::DEFAULT_PREFIX {
        LAB_METRICS_ADDRESS
    } else {
        "off"
    };
    let mut command = Command::new("setsid");
    command
        .arg(exe)
        .args(["run", "--metrics-address", metrics_address]);
    if let Some(kubeconfig) = kubeconfig {
        // One Lease per lab, so that labs and a real deployment never
        // contend for one.
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--lease-name", &format!("{}nativeroute", spec.prefix)]);
    }
    // `--config` last: that is how `stop` and `running` recognise the
    // lab's controller (see cmdline_runs_config).
    command.arg("--config").arg(config);
    let child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .with_context(|| {
            format!(
                "starting the controller {} run --config {}",
                exe.display(),
                config.display()
            )
        })?;
    let mut process = ControllerProcess { child };
    let pid_path = spec.pid_path();
    if let Err(err) = std::fs::write(&pid_path, format!("{}\n", process.pid())) {
        let _ = process.child.kill();
        let _ = process.child.wait();
        return Err(err).with_context(|| format!("writing pid file {}", pid_path.display()));
    }
    Ok(process)
}

/// The pid of the lab's controller if it runs.
pub fn running(spec: &LabSpec) -> Option<u32> {
    let pid = read_pid(&spec.pid_path())?;
    is_ours(pid, &spec.config_path()).then_some(pid)
}

/// Stops the lab's controller: SIGTERM, then SIGKILL after `grace`. Only a
/// process whose command line is `… run --config <lab config>` is signalled,
/// so a stale pid file never kills a stranger. Returns the pid it stopped.
pub fn stop(spec: &LabSpec, grace: Duration) -> Result<Option<u32>> {
    let pid_path = spec.pid_path();
    let config = spec.config_path();
    let Some(pid) = read_pid(&pid_path) else {
        return Ok(None);
    };
    let stopped = if is_ours(pid, &config) {
        signal(pid, Signal::SIGTERM);
        if !wait_gone(pid, &config, grace) {
            signal(pid, Signal::SIGKILL);
            if !wait_gone(pid, &config, AFTER_SIGKILL) {
                bail!("controller pid {pid} survived SIGKILL");
            }
        }
        Some(pid)
    } else {
        None
    };
    match std::fs::remove_file(&pid_path) {
        Ok(()) => Ok(stopped),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(stopped),
        Err(e) => Err(e).with_context(|| format!("removing {}", pid_path.display())),
    }
}

fn read_pid(pid_path: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_path).ok()?.trim().parse().ok()
}

fn signal(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        // ESRCH: it exited on its own meanwhile, which is what we want.
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

fn wait_gone(pid: u32, config: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while is_ours(pid, config) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Whether `pid` is a live `… run --config CONFIG` (a zombie has an empty
/// cmdline and counts as gone).
fn is_ours(pid: u32, config: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline_runs_config(&raw, config)
}

fn cmdline_runs_config(raw: &[u8], config: &Path) -> bool {
    let args: Vec<PathBuf> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| PathBuf::from(String::from_utf8_lossy(a).into_owned()))
        .collect();
    let want = [Path::new("--config"), config];
    args.len() > want.len()
        && args.iter().any(|arg| arg == Path::new("run"))
        && args[args.len() - want.len()..].iter().eq(want.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_run_command_line_counts_as_the_controller() {
        let config = Path::new("/run/nativeroute-lab/config.yaml");
        let ours = b"/usr/bin/nativeroute\0run\0--config\0/run/nativeroute-lab/config.yaml\0";
        assert!(cmdline_runs_config(ours, config));
        let other_lab = b"/usr/bin/nativeroute\0run\0--config\0/tmp/t1/config.yaml\0";
        assert!(!cmdline_runs_config(other_lab, config));
        assert!(!cmdline_runs_config(b"/bin/sleep\0infinity\0", config));
        assert!(!cmdline_runs_config(b"", config));
    }
}
