//! Running `ip` and friends, and the namespace primitives built on them.
//!
//! Arguments are typed values turned into separate argv entries, never a
//! shell string; every failure names the command line and its stderr.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Output, Stdio};

use anyhow::{Context, Result, anyhow, bail};

/// One external command, built argument by argument.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    program: &'static str,
    args: Vec<OsString>,
}

impl Cmd {
    pub(crate) fn new(program: &'static str) -> Self {
        Self {
            program,
            args: Vec::new(),
        }
    }

    /// `ip -n NS …`: an `ip` command acting inside a namespace.
    pub(crate) fn ip_in(netns: &str) -> Self {
        Self::new("ip").arg("-n").arg(netns)
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs the command and returns its stdout; a non-zero exit is an error.
    pub(crate) async fn run(&self) -> Result<String> {
        let output = self.output().await?;
        self.check(output)
    }

    /// Runs the command and hands back its output whatever the exit status.
    pub(crate) async fn output(&self) -> Result<Output> {
        tokio::process::Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| self.spawn_error(e))
    }

    /// [`Cmd::run`] without an async runtime (teardown, `Drop` guards).
    pub(crate) fn run_blocking(&self) -> Result<String> {
        let output = std::process::Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        self.check(output)
    }

    fn check(&self, output: Output) -> Result<String> {
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(self.failure(&output))
    }

    /// The error for a command that ran and exited unsuccessfully.
    pub(crate) fn failure(&self, output: &Output) -> anyhow::Error {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let detail = if stderr.is_empty() {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        } else {
            stderr.to_owned()
        };
        anyhow!("`{self}` failed ({}): {detail}", output.status)
    }

    fn spawn_error(&self, err: std::io::Error) -> anyhow::Error {
        if err.kind() == std::io::ErrorKind::NotFound {
            return missing_program(self.program);
        }
        anyhow!("cannot run `{self}`: {err}")
    }
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.program)?;
        for arg in &self.args {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// The Debian package that ships a program the lab runs.
fn debian_package(program: &str) -> &'static str {
    match program {
        "ip" => "iproute2",
        "ping" => "iputils-ping",
        "sysctl" => "procps",
        "setsid" => "util-linux",
        _ => "the package that provides it",
    }
}

fn missing_program(program: &str) -> anyhow::Error {
    let package = debian_package(program);
    anyhow!(
        "`{program}` not found in PATH: install the Debian package {package} (apt-get install {package})"
    )
}

/// Fails unless every program is on PATH, naming the packages to install.
pub(crate) fn require_programs(programs: &[&'static str]) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for program in programs {
        let found = std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)));
        if !found {
            return Err(missing_program(program));
        }
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Fails unless the effective user is root (namespaces need CAP_SYS_ADMIN).
pub(crate) fn require_root() -> Result<()> {
    // The "user" feature of nix (geteuid) is not enabled; /proc says the same.
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or_else(|| anyhow!("no Uid line in /proc/self/status"))?;
    if euid != "0" {
        bail!("nativeroute lab needs root (network namespaces): run it with sudo");
    }
    Ok(())
}

/// Every named network namespace on the machine (`ip netns list`).
pub(crate) fn list_blocking() -> Result<Vec<String>> {
    let out = Cmd::new("ip").args(["netns", "list"]).run_blocking()?;
    Ok(parse_netns_list(&out))
}

pub(crate) async fn list() -> Result<Vec<String>> {
    let out = Cmd::new("ip").args(["netns", "list"]).run().await?;
    Ok(parse_netns_list(&out))
}

/// Lines look like `nrlab-rtr (id: 0)` or just `nrlab-rtr`.
fn parse_netns_list(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

pub(crate) async fn add(name: &str) -> Result<()> {
    Cmd::new("ip").args(["netns", "add", name]).run().await?;
    Cmd::ip_in(name)
        .args(["link", "set", "lo", "up"])
        .run()
        .await?;
    Ok(())
}

pub(crate) fn delete_blocking(name: &str) -> Result<()> {
    Cmd::new("ip").args(["netns", "del", name]).run_blocking()?;
    Ok(())
}

/// Processes whose network namespace is `name` (`ip netns pids`).
pub(crate) fn pids_blocking(name: &str) -> Result<Vec<i32>> {
    let out = Cmd::new("ip")
        .args(["netns", "pids", name])
        .run_blocking()?;
    out.split_whitespace()
        .map(|pid| {
            pid.parse()
                .with_context(|| format!("`ip netns pids {name}` printed {pid:?}, not a pid"))
        })
        .collect()
}

/// Sets a sysctl inside a namespace (`ip netns exec NS sysctl -qw KEY=VALUE`).
pub(crate) async fn sysctl(netns: &str, key: &str, value: &str) -> Result<()> {
    Cmd::new("ip")
        .args(["netns", "exec", netns, "sysctl", "-qw"])
        .arg(format!("{key}={value}"))
        .run()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_list_keeps_only_names() {
        let out = "nrlab-rtr (id: 1)\nnrlab-sw2\n\n";
        assert_eq!(parse_netns_list(out), ["nrlab-rtr", "nrlab-sw2"]);
    }

    #[test]
    fn command_line_is_shown_as_typed() {
        let cmd = Cmd::ip_in("nrlab-rtr").args(["route", "show"]);
        assert_eq!(cmd.to_string(), "ip -n nrlab-rtr route show");
    }

    #[test]
    fn missing_program_names_its_debian_package() {
        let Err(err) = require_programs(&["ping-that-does-not-exist"]) else {
            panic!("a made-up program was found");
        };
        assert!(err.to_string().contains("not found in PATH"), "{err}");
        assert!(missing_program("ping").to_string().contains("iputils-ping"));
    }
}
