//! FRR (zebra and staticd) inside a test's network namespace, every path
//! private to the test, so that parallel tests and a running lab each have
//! their own router. The daemons are this process's children (started in
//! the foreground through `ip netns exec`, which execs them: the child's pid
//! is the daemon's), stopped by that pid, never by name, and reaped here.
//!
//! What restarting shows (FRR 8.4): the running configuration is not kept.
//! The daemons read back only their own config files (a hostname), so
//! static routes added through vtysh are gone from `show running-config`
//! after a restart; and staticd withdraws its routes from the kernel as
//! soon as it gets SIGTERM, before zebra stops.

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ZEBRA: &str = "/usr/lib/frr/zebra";
const STATICD: &str = "/usr/lib/frr/staticd";
const VTYSH: &str = "/usr/bin/vtysh";
/// The group whose members may talk to the daemons' vty sockets.
pub const VTY_GROUP: &str = "frrvty";
/// Zebra's netlink receive buffer: big batches overrun the default.
const ZEBRA_NETLINK_BUFFER: &str = "16777216";
/// How long the daemons may take to answer vtysh after starting.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to exit on SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Daemon {
    Zebra,
    Staticd,
}

impl Daemon {
    fn name(self) -> &'static str {
        match self {
            Daemon::Zebra => "zebra",
            Daemon::Staticd => "staticd",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Daemon::Zebra => ZEBRA,
            Daemon::Staticd => STATICD,
        }
    }
}

/// zebra and staticd running in one namespace; stopped when dropped.
#[derive(Debug)]
pub struct Frr {
    netns: String,
    dir: PathBuf,
    zebra: Option<Child>,
    staticd: Option<Child>,
}

impl Frr {
    /// Starts zebra, then staticd, in `netns` with config files, run dir,
    /// sockets and logs under `dir`, and waits until both answer vtysh.
    /// `dir` is created if missing and made world-searchable (mode 0755):
    /// the daemons run as user `frr`, and SSH users must reach the vty
    /// sockets in `dir/run`.
    pub fn start(netns: &str, dir: &Path) -> Result<Frr> {
        let dir =
            std::path::absolute(dir).with_context(|| format!("FRR directory {}", dir.display()))?;
        make_reachable_by_all(&dir)?;
        write_config_files(netns, &dir)?;
        let mut frr = Frr {
            netns: netns.to_owned(),
            dir,
            zebra: None,
            staticd: None,
        };
        frr.start_daemons()?;
        Ok(frr)
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The config directory (vtysh's `--config_dir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the vty sockets, pid files and logs.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The command line that reaches these daemons, as an SSH user (in
    /// group `frrvty`) would type it: `vtysh --vty_socket DIR/run
    /// --config_dir DIR`, each path quoted for a POSIX shell if needed.
    pub fn vtysh_command(&self) -> String {
        format!(
            "vtysh --vty_socket {} --config_dir {}",
            shell_quote(&self.run_dir().to_string_lossy()),
            shell_quote(&self.dir.to_string_lossy())
        )
    }

    /// Runs `vtysh <paths> args…` inside the namespace as root; its stdout,
    /// or an error with its stderr when it exits non-zero.
    pub fn vtysh(&self, args: &[&str]) -> Result<String> {
        let output = self.vtysh_output(args, None)?;
        if !output.status.success() {
            bail!(
                "vtysh {} in {} failed ({}): {}{}",
                args.join(" "),
                self.netns,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Feeds `lines` to `vtysh -f /dev/stdin` (config lines, already in
    /// config mode) and returns what it did, failing or not: its exit
    /// status and error text are often what a test is about. FRR 8.4
    /// applies the whole batch as one transaction: a line staticd rejects
    /// rejects every line, with "% Configuration failed." on stdout and
    /// exit status 0; only lines that do not parse fail alone ("line N: %
    /// Unknown command…" on stderr, exit status 2).
    pub fn vtysh_batch(&self, lines: &str) -> Result<Output> {
        self.vtysh_output(&["-f", "/dev/stdin"], Some(lines.as_bytes()))
    }

    /// `show running-config`.
    pub fn running_config(&self) -> Result<String> {
        self.vtysh(&["-c", "show running-config"])
    }

    /// The `ip route` and `ipv6 route` lines of the running configuration.
    pub fn static_route_lines(&self) -> Result<Vec<String>> {
        Ok(self
            .running_config()?
            .lines()
            .filter(|line| line.starts_with("ip route ") || line.starts_with("ipv6 route "))
            .map(str::to_owned)
            .collect())
    }

    fn vtysh_output(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let run_dir = self.run_dir();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, VTYSH, "--vty_socket"])
            .arg(&run_dir)
            .arg("--config_dir")
            .arg(&self.dir)
            .args(args);
        run_with_stdin(command, stdin)
            .with_context(|| format!("vtysh {} in namespace {}", args.join(" "), self.netns))
    }

    /// The daemons' pids, zebra's first, while they run.
    pub fn pids(&self) -> Vec<u32> {
        [&self.zebra, &self.staticd]
            .into_iter()
            .flatten()
            .map(Child::id)
            .collect()
    }

    /// Stops both daemons and starts them again from their config files.
    /// Static routes added through vtysh do not survive (see the module's
    /// comment).
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_daemons()
    }

    /// Stops staticd, then zebra: SIGTERM, SIGKILL after a grace period.
    pub fn stop(&mut self) -> Result<()> {
        let staticd = stop_child(self.staticd.take(), Daemon::Staticd.name());
        let zebra = stop_child(self.zebra.take(), Daemon::Zebra.name());
        staticd
            .and(zebra)
            .with_context(|| format!("stopping FRR in namespace {}", self.netns))
    }

    /// Stops staticd alone; zebra keeps running, and vtysh keeps accepting
    /// static routes it then drops.
    pub fn stop_staticd(&mut self) -> Result<()> {
        stop_child(self.staticd.take(), Daemon::Staticd.name())
            .with_context(|| format!("stopping staticd in namespace {}", self.netns))
    }

    /// Starts staticd again after `stop_staticd`.
    pub fn start_staticd(&mut self) -> Result<()> {
        self.staticd = Some(self.spawn(Daemon::Staticd)?);
        self.wait_until_answering(Daemon::Staticd)
    }

    /// The daemons' logs, for a failing test's message.
    pub fn logs(&self) -> String {
        [Daemon::Zebra, Daemon::Staticd]
            .into_iter()
            .flat_map(|daemon| {
                let run = self.run_dir();
                [
                    run.join(format!("{}.log", daemon.name())),
                    self.dir.join(format!("{}.stderr", daemon.name())),
                ]
            })
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                format!("== {}\n{text}", path.display())
            })
            .collect()
    }

    fn start_daemons(&mut self) -> Result<()> {
        let run = self.run_dir();
        std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
        // The daemons drop to frr:frr and create their sockets here; vtysh
        // users reach them through group frrvty.
        let owned = Command::new("chown").arg("frr:frrvty").arg(&run).status();
        if !matches!(owned, Ok(status) if status.success()) {
            bail!("cannot chown frr:frrvty {} ({owned:?})", run.display());
        }
        std::fs::set_permissions(&run, Permissions::from_mode(0o750))
            .with_context(|| format!("chmod 0750 {}", run.display()))?;
        for daemon in [Daemon::Zebra, Daemon::Staticd] {
            let child = self.spawn(daemon)?;
            match daemon {
                Daemon::Zebra => self.zebra = Some(child),
                Daemon::Staticd => self.staticd = Some(child),
            }
            self.wait_until_answering(daemon)?;
        }
        Ok(())
    }

    fn spawn(&self, daemon: Daemon) -> Result<Child> {
        let name = daemon.name();
        let run = self.run_dir();
        let stderr_path = self.dir.join(format!("{name}.stderr"));
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .with_context(|| format!("opening {}", stderr_path.display()))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, daemon.binary(), "-f"])
            .arg(self.dir.join(format!("{name}.conf")))
            .arg("-i")
            .arg(run.join(format!("{name}.pid")))
            .arg("-z")
            .arg(run.join("zserv.api"))
            .arg("--vty_socket")
            .arg(&run)
            .args(["-P", "0", "--log"])
            .arg(format!(
                "file:{}",
                run.join(format!("{name}.log")).display()
            ));
        if let Daemon::Zebra = daemon {
            command.args(["-s", ZEBRA_NETLINK_BUFFER]);
        }
        command
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name} in namespace {}", self.netns))
    }

    fn wait_until_answering(&mut self, daemon: Daemon) -> Result<()> {
        let started = Instant::now();
        loop {
            let answer = self.vtysh_output(&["-d", daemon.name(), "-c", "show version"], None)?;
            if answer.status.success() {
                return Ok(());
            }
            let child = match daemon {
                Daemon::Zebra => self.zebra.as_mut(),
                Daemon::Staticd => self.staticd.as_mut(),
            };
            if let Some(status) = child.and_then(|child| child.try_wait().ok().flatten()) {
                bail!(
                    "{} exited ({status}) in namespace {}; logs:\n{}",
                    daemon.name(),
                    self.netns,
                    self.logs()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "{} in namespace {} did not answer vtysh within {START_TIMEOUT:?}: {}; logs:\n{}",
                    daemon.name(),
                    self.netns,
                    String::from_utf8_lossy(&answer.stderr).trim(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("warning: {err:#}");
        }
    }
}

/// SIGTERM, then SIGKILL if the daemon outlives the grace period; reaps it.
pub(crate) fn stop_child(child: Option<Child>, name: &str) -> Result<()> {
    let Some(mut child) = child else {
        return Ok(());
    };
    let pid = Pid::from_raw(i32::try_from(child.id()).context("a pid")?);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    bail!("{name} (pid {pid}) ignored SIGTERM for {STOP_GRACE:?} and was killed")
}

fn write_config_files(netns: &str, dir: &Path) -> Result<()> {
    let files = [
        ("zebra.conf", format!("hostname {netns}\n")),
        ("staticd.conf", format!("hostname {netns}\n")),
        ("vtysh.conf", "service integrated-vtysh-config\n".to_owned()),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, Permissions::from_mode(0o644))
            .with_context(|| format!("chmod 0644 {}", path.display()))?;
    }
    Ok(())
}

/// Runs `command`, feeding it `stdin` (or nothing), and collects its output.
pub(crate) fn run_with_stdin(mut command: Command, stdin: Option<&[u8]>) -> Result<Output> {
    use std::io::Write;
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("cannot start")?;
    // Written from a thread: a child that prints a lot before reading all
    // of its input would otherwise block both sides.
    let writer = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => {
            let bytes = bytes.to_vec();
            Some(std::thread::spawn(move || pipe.write_all(&bytes)))
        }
        _ => None,
    };
    let output = child
        .wait_with_output()
        .context("cannot collect its output")?;
    if let Some(writer) = writer {
        // A child that exits without reading all of its input is not an
        // error here; its status says what happened.
        let _ = writer.join();
    }
    Ok(output)
}

/// Creates `dir` if needed, makes it mode 0755 and checks that every
/// directory above it lets other users through: daemons dropping to their
/// own user and SSH users need to reach files inside it.
pub(crate) fn make_reachable_by_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 0755 {}", dir.display()))?;
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)
            .with_context(|| format!("stat {}", ancestor.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            bail!(
                "{} (mode {mode:o}) does not let other users through to {}: \
                 put the test directory somewhere world-searchable, such as under /tmp",
                ancestor.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// `text` as one word for a POSIX shell: as is when it holds only
/// characters no shell treats specially, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn plain_paths_stay_as_they_are_and_others_are_single_quoted() {
        assert_eq!(shell_quote("/tmp/.tmpAb12/run"), "/tmp/.tmpAb12/run");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_quote(""), "''");
    }
}
