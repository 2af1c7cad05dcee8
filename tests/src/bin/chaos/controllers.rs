//! The two controller processes: the real `nativeroute run` binary against
//! the test API server, leader election on, each with its own identity,
//! log and metrics port on loopback. Killed (SIGKILL) when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The Lease both campaign for: nativeroute/nativeroute.
pub const LEASE_NAMESPACE: &str = "nativeroute";
pub const LEASE_NAME: &str = "nativeroute";

pub struct Member {
    pub identity: String,
    pub metrics: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct Controllers {
    binary: PathBuf,
    config: PathBuf,
    kubeconfig: PathBuf,
    log_level: String,
    pub members: Vec<Member>,
    /// Exits nobody asked for: (identity, status).
    pub crashes: Vec<(String, String)>,
}

impl Controllers {
    pub fn new(
        binary: &Path,
        config: &Path,
        kubeconfig: &Path,
        dir: &Path,
        log_level: &str,
    ) -> Result<Controllers> {
        let members = ["chaos-a", "chaos-b"]
            .into_iter()
            .map(|identity| {
                Ok(Member {
                    identity: identity.to_owned(),
                    metrics: free_loopback_port()?,
                    log: dir.join(format!("{identity}.log")),
                    child: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Controllers {
            binary: binary.to_owned(),
            config: config.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            log_level: log_level.to_owned(),
            members,
            crashes: Vec::new(),
        })
    }

    pub fn start(&mut self, index: usize) -> Result<()> {
        let member = self.members.get_mut(index).context("no such controller")?;
        if member.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .with_context(|| format!("opening {}", member.log.display()))?;
        let child = Command::new(&self.binary)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--metrics-address", &member.metrics.to_string()])
            .args(["--lease-namespace", LEASE_NAMESPACE])
            .args(["--identity", &member.identity])
            .env("RUST_LOG", &self.log_level)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        member.child = Some(child);
        Ok(())
    }

    pub fn is_up(&self, index: usize) -> bool {
        self.members.get(index).is_some_and(|m| m.child.is_some())
    }

    /// kill -9: no chance to release the Lease or finish a batch.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members.get_mut(index).and_then(|m| m.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a pod; waits up to `grace` for the
    /// exit (then SIGKILL) and returns how it exited.
    pub fn terminate(&mut self, index: usize, grace: Duration) -> Result<ExitStatus> {
        let member = self.members.get_mut(index).context("no such controller")?;
        let mut child = member
            .child
            .take()
            .context("the controller is not running")?;
        let pid = Pid::from_raw(i32::try_from(child.id()).context("a pid")?);
        kill(pid, Signal::SIGTERM).context("SIGTERM")?;
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not exit within {grace:?} of SIGTERM",
                    member.identity
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn index_of(&self, identity: &str) -> Option<usize> {
        self.members.iter().position(|m| m.identity == identity)
    }

    /// Notices processes that exited on their own (a crash is a finding),
    /// records them and starts them again.
    pub fn restart_crashed(&mut self) -> Result<()> {
        for index in 0..self.members.len() {
            let member = &mut self.members[index];
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            if let Some(status) = child.try_wait()? {
                member.child = None;
                self.crashes
                    .push((member.identity.clone(), status.to_string()));
                eprintln!(
                    "chaos: controller {} exited on its own ({status}); see {}",
                    member.identity,
                    member.log.display()
                );
                self.start(index)?;
            }
        }
        Ok(())
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

fn free_loopback_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr()?)
}
