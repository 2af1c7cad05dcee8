//! What the controller process takes from signals: SIGTERM or SIGINT stop
//! it (a second one stops it at once), and SIGUSR1 lets the withdrawals the
//! removal guard holds through. `nativeroute release` sends that SIGUSR1.

use std::path::Path;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The exit code of a second stop signal, as a shell reports a process
/// killed by SIGINT.
const EXIT_ON_SECOND_SIGNAL: i32 = 130;

pub struct Signals {
    /// Turns true on the first SIGTERM or SIGINT.
    pub shutdown: watch::Receiver<bool>,
    /// Bumped on every SIGUSR1.
    pub release: watch::Receiver<u64>,
}

/// Starts listening. Must run inside the runtime.
pub fn listen() -> anyhow::Result<Signals> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested; a second SIGTERM or SIGINT exits at once");
        let _ = shutdown_tx.send(true);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second stop signal: exiting now; routes stay on the routers");
        std::process::exit(EXIT_ON_SECOND_SIGNAL);
    });
    let (release_tx, release) = watch::channel(0u64);
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::warn!("SIGUSR1: releasing the withdrawals the removal guard holds");
            release_tx.send_modify(|count| *count += 1);
        }
    });
    Ok(Signals { shutdown, release })
}

/// Signals the running controller (or `pid`) to release what it holds.
pub fn request_release(pid: Option<i32>) -> anyhow::Result<()> {
    let targets = match pid {
        Some(pid) => vec![pid],
        None => running_controllers()?,
    };
    if targets.is_empty() {
        bail!(
            "no `nativeroute run` process found on this machine; give its process id with --pid \
             (in Kubernetes: kubectl exec into the leader's pod)"
        );
    }
    for pid in targets {
        kill(Pid::from_raw(pid), Signal::SIGUSR1)
            .with_context(|| format!("cannot signal process {pid}"))?;
        println!(
            "asked nativeroute (process {pid}) to release the withdrawals it holds; its log and nativeroute_withdrawals_held show the result"
        );
    }
    Ok(())
}

/// Every process on this machine that runs `nativeroute run`.
fn running_controllers() -> anyhow::Result<Vec<i32>> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // A process may end while we look: unreadable ones are skipped.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
        let program = args.next().unwrap_or_default();
        let is_nativeroute = Path::new(program.as_ref())
            .file_name()
            .is_some_and(|name| name == "nativeroute");
        if is_nativeroute && args.next().is_some_and(|arg| arg == "run") {
            if let Ok(pid) = i32::try_from(pid) {
                found.push(pid);
            }
        }
    }
    Ok(found)
}
