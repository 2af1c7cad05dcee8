//! `nativeroute lab up`: network first, then the controller, then the
//! containers on the subnets the controller handed out.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::LabRouter;
use super::bgp_router;
use super::controller_process::{self, ControllerProcess};
use super::kubernetes::LabCluster;
use super::netns;
use super::spec::LabSpec;
use super::teardown;
use super::topology::Topology;

/// Short, so a route deleted by hand in the lab comes back while you watch.
const RESYNC_INTERVAL: Duration = Duration::from_secs(10);
const EXIT_POLL: Duration = Duration::from_millis(100);
const LOG_TAIL_LINES: usize = 20;

pub(crate) async fn up(
    spec: LabSpec,
    router: LabRouter,
    timeout: Duration,
    kubeconfig: Option<&Path>,
) -> Result<()> {
    netns::require_root()?;
    if router == LabRouter::Bgp {
        bgp_router::require_frr()?;
    }
    netns::require_programs(&["ip", "ping", "sysctl", "setsid"])?;
    spec.check()?;
    refuse_if_up(&spec).await?;
    // Whatever an earlier lab left behind (a stale state file would hand
    // out its old subnets before the controller even starts).
    teardown::remove_lab_files(&spec.dir)?;
    let exe = std::env::current_exe().context("finding this program's own path")?;
    let cluster = match kubeconfig {
        Some(path) => Some(LabCluster::connect(&spec, path).await?),
        None => None,
    };

    let mut topo = Topology::create(spec.clone()).await?;
    if router == LabRouter::Bgp
        && let Err(err) = topo.start_bgp_router().await
    {
        return Err(abandon(&spec, err).await);
    }
    match start(&topo, &exe, timeout, cluster.as_ref()).await {
        Ok(pid) => {
            print_summary(&topo, pid);
            Ok(())
        }
        Err(err) => Err(abandon(&spec, err).await),
    }
}

async fn refuse_if_up(spec: &LabSpec) -> Result<()> {
    let namespaces = Topology::plan(spec.clone()).existing_namespaces().await?;
    let controller = controller_process::running(spec);
    if namespaces.is_empty() && controller.is_none() {
        return Ok(());
    }
    let mut found = Vec::new();
    if !namespaces.is_empty() {
        found.push(format!("namespaces {}", namespaces.join(", ")));
    }
    if let Some(pid) = controller {
        found.push(format!("controller pid {pid}"));
    }
    bail!(
        "a lab with prefix {:?} is already up ({}): run `{}` first",
        spec.prefix,
        found.join("; "),
        lab_command(spec, "down")
    )
}

/// Controller files, controller, subnets, containers; returns the controller's pid.
async fn start(
    topo: &Topology,
    exe: &Path,
    timeout: Duration,
    cluster: Option<&LabCluster>,
) -> Result<u32> {
    let spec = topo.spec();
    let config = match cluster {
        Some(cluster) => {
            cluster.register(topo).await?;
            cluster.remember()?;
            topo.write_kubernetes_controller_files(RESYNC_INTERVAL, &cluster.selector())?
        }
        None => topo.write_controller_files(RESYNC_INTERVAL)?,
    };
    let kubeconfig = cluster.map(LabCluster::kubeconfig);
    let mut controller = controller_process::spawn(spec, exe, &config, kubeconfig)?;
    let assignments = async {
        match cluster {
            Some(cluster) => cluster.wait_for_assignments(topo, timeout).await,
            None => topo.wait_for_assignments(timeout).await,
        }
    };
    let assigned = tokio::select! {
        assigned = assignments => assigned,
        status = exited(&mut controller) => match status {
            Ok(status) => Err(anyhow!("the controller exited ({status}) before assigning subnets")),
            Err(e) => Err(e),
        },
    };
    let assigned = assigned.map_err(|e| with_log_tail(e, &spec.log_path()))?;
    topo.attach_containers(&assigned).await?;
    if topo.router() == LabRouter::Bgp {
        // The router learns the routes over the session: "up" means they
        // are in its kernel, as they are at once with netlink.
        wait_for_router_routes(topo, assigned.len(), timeout)
            .await
            .map_err(|e| with_log_tail(e, &spec.log_path()))?;
    }
    Ok(controller.pid())
}

async fn wait_for_router_routes(topo: &Topology, count: usize, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let routes = topo.router_routes().await?;
        if routes.len() >= count {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the router holds {} of the {count} routes {} after the subnets were assigned: see `{}`",
                routes.len(),
                humantime::format_duration(timeout),
                lab_command(topo.spec(), "status")
            );
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

async fn exited(controller: &mut ControllerProcess) -> Result<ExitStatus> {
    loop {
        if let Some(status) = controller.exit_status()? {
            return Ok(status);
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

/// The controller's own words are the likeliest explanation: its log's
/// last lines go at the end of the message, after what went wrong.
fn with_log_tail(err: anyhow::Error, log: &Path) -> anyhow::Error {
    let tail = std::fs::read_to_string(log)
        .map(|text| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n  ")
        })
        .unwrap_or_default();
    if tail.is_empty() {
        return anyhow!("{err:#}; see the controller's log {}", log.display());
    }
    anyhow!(
        "{err:#}; the controller's log {} ends with:\n  {tail}",
        log.display()
    )
}

/// Undoes a failed `up` but keeps the lab directory: the controller's log
/// there is what explains the failure.
async fn abandon(spec: &LabSpec, err: anyhow::Error) -> anyhow::Error {
    let owned = spec.clone();
    let cleanup = tokio::task::spawn_blocking(move || {
        controller_process::stop(&owned, teardown::CONTROLLER_GRACE)?;
        teardown::delete_namespaces(&owned)
    })
    .await;
    match cleanup {
        Ok(Ok(())) => err.context(format!(
            "lab up failed and was undone (files kept in {})",
            spec.dir.display()
        )),
        Ok(Err(e)) => err.context(format!(
            "lab up failed, and undoing it failed too ({e:#}): run `{}`",
            lab_command(spec, "down")
        )),
        Err(e) => err.context(format!("lab up failed, and undoing it panicked: {e}")),
    }
}

/// `nativeroute lab CMD`, with the flags a non-default lab needs.
fn lab_command(spec: &LabSpec, cmd: &str) -> String {
    let default = LabSpec::default();
    let mut line = format!("nativeroute lab {cmd}");
    if spec.prefix != default.prefix {
        line.push_str(&format!(" --prefix {}", spec.prefix));
    }
    if spec.dir != default.dir {
        line.push_str(&format!(" --dir {}", spec.dir.display()));
    }
    line
}

fn print_summary(topo: &Topology, pid: u32) {
    let spec = topo.spec();
    println!(
        "lab {:?} is up; files in {}",
        spec.prefix,
        spec.dir.display()
    );
    println!("router: namespace {}", topo.router_netns());
    println!("{:8} {:15} {:18} container", "node", "address", "subnet");
    let containers = topo.containers();
    for node in topo.nodes() {
        let subnet = containers
            .get(&node.name)
            .map_or("-".to_owned(), ToString::to_string);
        let container = match (
            topo.container_address(&node.name),
            topo.container_netns(&node.name),
        ) {
            (Some(address), Some(ns)) => format!("{address} in {ns}"),
            _ => "-".to_owned(),
        };
        println!(
            "{:8} {:15} {subnet:18} {container}",
            node.name,
            node.address.to_string()
        );
    }
    println!("controller: pid {pid}, log {}", spec.log_path().display());
    println!("\nnext:");
    println!("  {}", lab_command(spec, "status"));
    let nodes = topo.nodes();
    if let (Some(first), Some(last)) = (nodes.first(), nodes.last()) {
        if let (Some(ns), Some(to)) = (
            topo.container_netns(&first.name),
            topo.container_address(&last.name),
        ) {
            println!("  ip netns exec {ns} ping {to}");
        }
    }
    println!("  {}", lab_command(spec, "down"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_commands_carry_a_custom_prefix_and_dir() {
        assert_eq!(
            lab_command(&LabSpec::default(), "down"),
            "nativeroute lab down"
        );
        let spec = LabSpec::new("t1-", "/tmp/t1");
        assert_eq!(
            lab_command(&spec, "status"),
            "nativeroute lab status --prefix t1- --dir /tmp/t1"
        );
    }
}
