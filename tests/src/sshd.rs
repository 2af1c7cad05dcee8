//! OpenSSH's sshd inside a test's network namespace, with its own config,
//! host key, authorized keys and log under the test's directory, and client
//! key pairs made with ssh-keygen.
//!
//! sshd runs in the foreground (`-D`) as this process's child, so its pid
//! is known and it is reaped here. Stopping it also ends every SSH session
//! it accepted: a session's processes outlive the listener otherwise, and a
//! "router's sshd is down" test means no connection gets through.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::frr::make_reachable_by_all;

const SSHD: &str = "/usr/sbin/sshd";
/// sshd's privilege-separation directory; it refuses to start without it.
const PRIVSEP_DIR: &str = "/run/sshd";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The kinds of client key the SSH drivers must accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    Rsa,
    Ecdsa,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [KeyKind::Ed25519, KeyKind::Rsa, KeyKind::Ecdsa];

    /// ssh-keygen's `-t` value.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Rsa => "rsa",
            KeyKind::Ecdsa => "ecdsa",
        }
    }
}

/// A client key pair made by ssh-keygen, without a passphrase.
#[derive(Clone, Debug)]
pub struct ClientKey {
    kind: KeyKind,
    private_key: PathBuf,
    public_key: String,
}

impl ClientKey {
    /// Generates `dir/id_<kind>` and `dir/id_<kind>.pub` (OpenSSH format),
    /// creating `dir` if needed.
    pub fn generate(dir: &Path, kind: KeyKind) -> Result<ClientKey> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let private_key = dir.join(format!("id_{}", kind.name()));
        let public_key = generate_key_pair(&private_key, kind, "nrtest-client")?;
        Ok(ClientKey {
            kind,
            private_key,
            public_key,
        })
    }

    /// One key pair of every kind, in `KeyKind::ALL`'s order.
    pub fn generate_all(dir: &Path) -> Result<Vec<ClientKey>> {
        KeyKind::ALL
            .into_iter()
            .map(|kind| ClientKey::generate(dir, kind))
            .collect()
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The private key file (mode 0600, OpenSSH format).
    pub fn private_key_path(&self) -> &Path {
        &self.private_key
    }

    /// The private key file's text, as a config would carry it inline.
    pub fn private_key_pem(&self) -> Result<String> {
        std::fs::read_to_string(&self.private_key)
            .with_context(|| format!("reading {}", self.private_key.display()))
    }

    /// The `authorized_keys` line: `<type> <base64> <comment>`.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }
}

/// Runs ssh-keygen for `path` and returns the public key line.
fn generate_key_pair(path: &Path, kind: KeyKind, comment: &str) -> Result<String> {
    for stale in [path.to_path_buf(), public_key_path(path)] {
        let _ = std::fs::remove_file(stale);
    }
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", kind.name(), "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ssh-keygen")?;
    if !output.status.success() {
        bail!(
            "ssh-keygen -t {} -f {} failed: {}",
            kind.name(),
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let public = public_key_path(path);
    let line = std::fs::read_to_string(&public)
        .with_context(|| format!("reading {}", public.display()))?;
    Ok(line.trim().to_owned())
}

fn public_key_path(private_key: &Path) -> PathBuf {
    let mut name = private_key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// An sshd listening in a namespace; stopped with its sessions when dropped.
#[derive(Debug)]
pub struct Sshd {
    netns: String,
    listen: SocketAddr,
    dir: PathBuf,
    host_key_public: String,
    listener: Option<Child>,
}

impl Sshd {
    /// Starts sshd in `netns` on `listen` with everything under `dir`
    /// (created if missing, made mode 0755: users read their authorized
    /// keys through it), each `(user, key)` authorized, and waits until the
    /// port takes connections (probing it leaves "Connection closed …
    /// [preauth]" lines in the log, never an accepted login).
    pub fn start(
        netns: &str,
        listen: SocketAddr,
        dir: &Path,
        authorized: &[(&str, &ClientKey)],
    ) -> Result<Sshd> {
        Sshd::start_with_config(netns, listen, dir, authorized, &[])
    }

    /// As `start`, with `extra` lines appended to sshd_config (for example
    /// `MaxSessions 2`); sshd takes the first value it reads for most
    /// keywords, so these may only add what the base config leaves out.
    pub fn start_with_config(
        netns: &str,
        listen: SocketAddr,
        dir: &Path,
        authorized: &[(&str, &ClientKey)],
        extra: &[&str],
    ) -> Result<Sshd> {
        let dir = std::path::absolute(dir)
            .with_context(|| format!("sshd directory {}", dir.display()))?;
        make_reachable_by_all(&dir)?;
        std::fs::create_dir_all(PRIVSEP_DIR).with_context(|| format!("creating {PRIVSEP_DIR}"))?;
        let host_key = dir.join("ssh_host_ed25519_key");
        let host_key_public = generate_key_pair(&host_key, KeyKind::Ed25519, "nrtest-host")?;
        let keys_dir = dir.join("authorized_keys");
        std::fs::create_dir_all(&keys_dir)
            .with_context(|| format!("creating {}", keys_dir.display()))?;
        std::fs::set_permissions(&keys_dir, Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", keys_dir.display()))?;
        let config = sshd_config(listen, &dir, &host_key, extra);
        let config_path = dir.join("sshd_config");
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut sshd = Sshd {
            netns: netns.to_owned(),
            listen,
            dir,
            host_key_public,
            listener: None,
        };
        for (user, key) in authorized {
            sshd.authorize(user, key)?;
        }
        sshd.start_again()?;
        Ok(sshd)
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The listener's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.listener.as_ref().map(Child::id)
    }

    /// Lets `key` log in as `user` (takes effect on the next login).
    pub fn authorize(&self, user: &str, key: &ClientKey) -> Result<()> {
        let path = self.dir.join("authorized_keys").join(user);
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{}", key.public_key())
            .with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, Permissions::from_mode(0o644))
            .with_context(|| format!("chmod 0644 {}", path.display()))
    }

    /// The host key: `ssh-ed25519 <base64>` (no comment).
    pub fn host_key_public(&self) -> String {
        self.host_key_public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A known_hosts line for this host key at `host`:`port`:
    /// `[host]:port ssh-ed25519 <base64>`, or `host ssh-ed25519 <base64>`
    /// on port 22, as OpenSSH writes them.
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = if port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        format!("{name} {}", self.host_key_public())
    }

    /// (Re)writes `dir/known_hosts` holding the line for the listen address.
    pub fn known_hosts_file(&self) -> Result<PathBuf> {
        let path = self.dir.join("known_hosts");
        let line = self.known_hosts_line(&self.listen.ip().to_string(), self.listen.port());
        std::fs::write(&path, format!("{line}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Everything sshd logged (all runs append to one file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Starts sshd again after `stop`, with the same config, host key and
    /// port; does nothing if it runs.
    pub fn start_again(&mut self) -> Result<()> {
        if self.listener.is_some() {
            return Ok(());
        }
        let log = self.dir.join("sshd.log");
        // Errors before sshd opens its log (a bad config line) go to stderr.
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, SSHD, "-D", "-f"])
            .arg(self.dir.join("sshd_config"))
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting sshd in namespace {}", self.netns))?;
        self.listener = Some(child);
        self.wait_until_listening()
            .with_context(|| format!("sshd on {} in namespace {}", self.listen, self.netns))
    }

    fn wait_until_listening(&mut self) -> Result<()> {
        let started = Instant::now();
        let target = connectable(self.listen);
        loop {
            if connect_in_netns(&self.netns, target, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.exit_status()? {
                bail!("sshd exited ({status}): {}", self.log());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "not listening after {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// If the listener has exited: its status, and the listener is forgotten.
    fn exit_status(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.listener.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait().context("checking on sshd")?;
        if status.is_some() {
            self.listener = None;
        }
        Ok(status)
    }

    /// Stops the listener and ends every session it accepted: new
    /// connections are refused until `start_again`.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut listener) = self.listener.take() else {
            return Ok(());
        };
        let root = listener.id();
        // Frozen first, so the listener accepts nothing more while its
        // sessions are rounded up.
        let _ = kill(as_pid(root)?, Signal::SIGSTOP);
        let sessions = freeze_descendants(root);
        kill_all(&sessions);
        let _ = kill(as_pid(root)?, Signal::SIGKILL);
        listener.wait().context("reaping sshd")?;
        wait_until_gone(&sessions, STOP_GRACE)
            .with_context(|| format!("stopping sshd in namespace {}", self.netns))
    }

    /// Ends every open SSH session, as a network blip or a router-side
    /// `kill` would, while the listener keeps accepting new ones; how
    /// many processes were killed.
    pub fn drop_connections(&self) -> Result<usize> {
        let Some(listener) = &self.listener else {
            bail!("sshd in namespace {} is not running", self.netns);
        };
        let sessions = freeze_descendants(listener.id());
        kill_all(&sessions);
        wait_until_gone(&sessions, STOP_GRACE)?;
        Ok(sessions.len())
    }

    /// The processes of the open sessions (sshd's children and theirs).
    pub fn session_pids(&self) -> Vec<u32> {
        self.listener
            .as_ref()
            .map(|listener| descendants(listener.id()).into_iter().collect())
            .unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("warning: {err:#}");
        }
    }
}

fn sshd_config(listen: SocketAddr, dir: &Path, host_key: &Path, extra: &[&str]) -> String {
    let mut config = format!(
        "\
# Written by nativeroute's test support; nothing from /etc/ssh is read.
ListenAddress {listen}
HostKey {host_key}
PidFile {pid_file}
# %u: one file per user, all under the test's directory.
AuthorizedKeysFile {keys}/%u
# The keys live under /tmp, which is world-writable: with StrictModes
# sshd would refuse them (\"bad ownership or modes for directory /tmp\").
StrictModes no
UsePAM no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel VERBOSE
",
        host_key = host_key.display(),
        pid_file = dir.join("sshd.pid").display(),
        keys = dir.join("authorized_keys").display(),
    );
    for line in extra {
        config.push_str(line);
        config.push('\n');
    }
    config
}

/// Connecting to a wildcard listen address means connecting to loopback.
fn connectable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// A TCP connection made from inside namespace `netns` (a name under
/// /run/netns). The socket belongs to that namespace for good, so the
/// stream can be used from any thread, for example handed to an SSH client
/// library that takes a connected stream.
pub fn connect_in_netns(
    netns: &str,
    address: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let namespace = File::open(format!("/run/netns/{netns}"))
        .map_err(|err| io::Error::new(err.kind(), format!("namespace {netns}: {err}")))?;
    // setns changes only the calling thread, so a short-lived one does it.
    std::thread::spawn(move || {
        setns(&namespace, CloneFlags::CLONE_NEWNET)?;
        TcpStream::connect_timeout(&address, timeout)
    })
    .join()
    .map_err(|_| io::Error::other("the connecting thread panicked"))?
}

fn as_pid(pid: u32) -> Result<Pid> {
    Ok(Pid::from_raw(i32::try_from(pid).context("a pid")?))
}

/// Parent of every process now running, from /proc/<pid>/stat.
fn parents() -> HashMap<u32, u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

fn descendants(root: u32) -> BTreeSet<u32> {
    let parents = parents();
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (&pid, &ppid) in &parents {
            if ppid == parent && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found
}

/// Stops (SIGSTOP) every descendant of `root` until no new one appears:
/// a stopped process neither forks nor exits, so none slips away.
fn freeze_descendants(root: u32) -> BTreeSet<u32> {
    let mut frozen = BTreeSet::new();
    loop {
        let fresh: Vec<u32> = descendants(root)
            .into_iter()
            .filter(|pid| !frozen.contains(pid))
            .collect();
        if fresh.is_empty() {
            return frozen;
        }
        for pid in fresh {
            if let Ok(process) = as_pid(pid) {
                let _ = kill(process, Signal::SIGSTOP);
            }
            frozen.insert(pid);
        }
    }
}

fn kill_all(pids: &BTreeSet<u32>) {
    for &pid in pids {
        if let Ok(pid) = as_pid(pid) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// Waits until none of `pids` runs (a zombie no longer runs).
fn wait_until_gone(pids: &BTreeSet<u32>, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let running: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&pid| is_running(pid))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("processes {running:?} still run {timeout:?} after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}
