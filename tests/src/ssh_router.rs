//! A router a test reaches over SSH: its own namespace with a connected
//! network, sshd on the router's address, client keys of every kind, and
//! either FRR (logged into as the vty user) or plain Linux (logged into as
//! root, which has CAP_NET_ADMIN for `ip route`). Torn down when dropped,
//! even when the test panics.
//!
//! The system users that log in are made here too (`ensure_login_user`).
//!
//! The OpenSSH client runs inside the router's namespace (`ssh()`); an
//! in-process client takes a stream from `connect()`, which is made there.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::frr::{Frr, VTY_GROUP, run_with_stdin};
use crate::netns::Netns;
use crate::sshd::{ClientKey, KeyKind, Sshd, connect_in_netns};

/// The user that runs vtysh over SSH: in group frrvty, nothing else.
pub const VTY_USER: &str = "nrtest-vty";
/// The router's interface and address on its node network.
pub const ROUTER_INTERFACE: &str = "p3p2";
pub const ROUTER_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 2);
/// Next hops on the router's node network, for routes that go in.
pub const NODE_ADDRESSES: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 168, 3, 3), Ipv4Addr::new(192, 168, 3, 4)];
const SSH_PORT: u16 = 22;

/// Makes sure the vty user exists (see `ensure_login_user`); its name.
pub fn ensure_vty_user() -> Result<&'static str> {
    ensure_login_user(VTY_USER, &[VTY_GROUP])
        .with_context(|| format!("setting up the vty user {VTY_USER}"))?;
    Ok(VTY_USER)
}

/// A router behind sshd in a namespace of its own.
pub struct SshRouter {
    // Dropped in this order: sessions end before the daemons they talk to,
    // and the daemons before their namespace and directory go.
    pub sshd: Sshd,
    pub frr: Option<Frr>,
    user: String,
    keys: Vec<ClientKey>,
    netns: Netns,
    dir: tempfile::TempDir,
}

impl SshRouter {
    /// FRR (zebra, staticd) behind sshd; every client key logs in as the
    /// vty user, whose `frr().vtysh_command()` reaches the daemons.
    pub fn start_frr() -> Result<SshRouter> {
        let user = ensure_vty_user()?;
        SshRouter::build(user, true)
    }

    /// A plain Linux router behind sshd; every client key logs in as root.
    pub fn start_linux() -> Result<SshRouter> {
        SshRouter::build("root", false)
    }

    fn build(user: &str, with_frr: bool) -> Result<SshRouter> {
        let netns = Netns::new();
        netns.add_connected_network(ROUTER_INTERFACE, &format!("{ROUTER_ADDRESS}/24"));
        let dir = tempfile::tempdir().context("a temp dir for the router")?;
        let frr = if with_frr {
            Some(Frr::start(netns.name(), &dir.path().join("frr"))?)
        } else {
            None
        };
        let keys = ClientKey::generate_all(&dir.path().join("client"))?;
        let authorized: Vec<(&str, &ClientKey)> = keys.iter().map(|key| (user, key)).collect();
        let listen = SocketAddr::new(IpAddr::V4(ROUTER_ADDRESS), SSH_PORT);
        let sshd = Sshd::start(netns.name(), listen, &dir.path().join("sshd"), &authorized)?;
        Ok(SshRouter {
            sshd,
            frr,
            user: user.to_owned(),
            keys,
            netns,
            dir,
        })
    }

    pub fn netns(&self) -> &str {
        self.netns.name()
    }

    /// `ip -n <netns> args…` (split on whitespace), its stdout; panics on failure.
    pub fn ip(&self, args: &str) -> String {
        self.netns.ip(args)
    }

    /// Where sshd listens: the router's address, port 22.
    pub fn address(&self) -> SocketAddr {
        self.sshd.listen()
    }

    /// The user every client key logs in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The test's directory (FRR, sshd and client keys live below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn keys(&self) -> &[ClientKey] {
        &self.keys
    }

    pub fn key(&self, kind: KeyKind) -> &ClientKey {
        self.keys
            .iter()
            .find(|key| key.kind() == kind)
            .unwrap_or_else(|| unreachable!("a key of every kind is generated"))
    }

    /// The FRR daemons; an error for a Linux router.
    pub fn frr(&self) -> Result<&Frr> {
        self.frr
            .as_ref()
            .with_context(|| format!("router {} runs no FRR", self.netns()))
    }

    /// A known_hosts file holding the router's host key at its address.
    pub fn known_hosts_file(&self) -> Result<PathBuf> {
        self.sshd.known_hosts_file()
    }

    /// A TCP connection to sshd, made inside the router's namespace.
    pub fn connect(&self, timeout: Duration) -> io::Result<TcpStream> {
        connect_in_netns(self.netns(), self.address(), timeout)
    }

    /// Runs `remote_command` on the router with the OpenSSH client (inside
    /// the namespace, strict host key checking, only `key`, no agent, no
    /// user config), feeding it `stdin`; what it did, failing or not.
    pub fn ssh(
        &self,
        key: &ClientKey,
        remote_command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output> {
        let known_hosts = self.known_hosts_file()?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.netns(), "ssh", "-F", "/dev/null"])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .args(["-o", "ConnectTimeout=10", "-i"])
            .arg(key.private_key_path())
            .args(["-p", &self.address().port().to_string()])
            .arg(format!("{}@{}", self.user, self.address().ip()))
            .arg("--")
            .arg(remote_command);
        run_with_stdin(command, stdin)
            .with_context(|| format!("ssh {}@{} {remote_command:?}", self.user, self.address()))
    }

    /// As `ssh`, but an error unless the command succeeded; its stdout.
    pub fn ssh_ok(
        &self,
        key: &ClientKey,
        remote_command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<String> {
        let output = self.ssh(key, remote_command, stdin)?;
        if !output.status.success() {
            bail!(
                "ssh {}@{} {remote_command:?} failed ({}): {}{}; sshd log:\n{}",
                self.user,
                self.address(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.sshd.log()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Makes sure system user `name` exists and can log in with a key under
/// `UsePAM no`: password field `*` (a `!` locks key logins out too), shell
/// /bin/sh, a home directory, and membership of every group in `groups`.
/// Safe to call from parallel tests and processes: useradd and usermod
/// lock /etc/passwd, and losing a race to create the user is no error.
pub fn ensure_login_user(name: &str, groups: &[&str]) -> Result<()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if passwd_entry(name)?.is_none() {
        let home = format!("/home/{name}");
        let mut args = vec![
            "--system",
            "--create-home",
            "--home-dir",
            &home,
            "--shell",
            "/bin/sh",
            "--password",
            "*",
        ];
        let group_list = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &group_list]);
        }
        args.push(name);
        let created = run_account_tool("useradd", &args);
        // Another test may have created it in the meantime.
        if passwd_entry(name)?.is_none() {
            created?;
        }
    }
    let entry = passwd_entry(name)?.with_context(|| format!("user {name} vanished"))?;
    let fields: Vec<&str> = entry.split(':').collect();
    let (home, shell) = (fields.get(5).copied(), fields.get(6).copied());
    if shell != Some("/bin/sh") {
        run_account_tool("usermod", &["--shell", "/bin/sh", name])?;
    }
    if let Some(home) = home.filter(|home| !Path::new(home).is_dir()) {
        std::fs::create_dir_all(home).with_context(|| format!("creating {home}"))?;
        run_account_tool("chown", &[&format!("{name}:"), home])?;
    }
    if shadow_password(name)? != "*" {
        run_account_tool("usermod", &["--password", "*", name])?;
    }
    let member_of = account_output("id", &["-nG", name])?;
    for group in groups {
        if !member_of.split_whitespace().any(|g| g == *group) {
            run_account_tool("usermod", &["--append", "--groups", group, name])?;
        }
    }
    Ok(())
}

fn passwd_entry(name: &str) -> Result<Option<String>> {
    let output = Command::new("getent")
        .args(["passwd", name])
        .output()
        .context("cannot run getent")?;
    // getent exits 2 for "no such key".
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
}

fn shadow_password(name: &str) -> Result<String> {
    let entry = account_output("getent", &["shadow", name])?;
    Ok(entry.split(':').nth(1).unwrap_or_default().to_owned())
}

fn account_output(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs useradd/usermod/chown, retrying while another process holds the
/// account database's lock.
fn run_account_tool(program: &str, args: &[&str]) -> Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match account_output(program, args) {
            Ok(_) => return Ok(()),
            Err(err) if err.to_string().contains("lock") => {
                last = Some(err);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("`{program}` kept failing")))
}
