//! The seed-000 topology in network namespaces on this machine: a router,
//! a switch, three nodes and a container per node, with the controller
//! assigning the subnets and programming the router.
//!
//! `nativeroute lab up|down|status` is the command line; tests use the same
//! pieces ([`Topology`], [`destroy`]) under their own [`LabSpec::prefix`]
//! and run the controller themselves.

mod bgp_router;
mod containers;
mod controller_files;
mod controller_process;
pub mod kubernetes;
mod netns;
mod spec;
mod status;
mod teardown;
mod topology;
mod up;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

pub use bgp_router::{LAB_AS, ROUTER_BGP_ADDRESS, vtysh as router_vtysh};
pub use controller_files::{ROUTER_NAME, read_assignments};
pub use controller_process::{
    ControllerProcess, running as running_controller, spawn as spawn_controller,
    stop as stop_controller,
};
pub use spec::{DEFAULT_DIR, DEFAULT_PREFIX, LabSpec};
pub use status::{PingMatrix, PingOutcome};
pub use teardown::{CONTROLLER_GRACE, destroy, destroy_blocking};
pub use topology::{DIRECT_NETWORK, LabNode, POOL, SWITCHED_NETWORK, Topology, node_networks};

/// `nativeroute lab …`
#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Build the topology, start the controller in the background, and
    /// attach a container to each node on the subnet it assigns.
    Up(UpArgs),
    /// Stop the controller and remove every namespace and file of the lab.
    Down(DownArgs),
    /// Show nodes, subnets, the router's routes and a ping matrix.
    Status(StatusArgs),
}

/// Which lab: the namespace prefix and the directory of its files.
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// Prefix of every namespace the lab makes.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Directory for the controller's config, inventory, state, log and pid.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
}

impl LabArgs {
    pub fn spec(&self) -> LabSpec {
        LabSpec::new(self.prefix.clone(), self.dir.clone())
    }
}

/// How the controller reaches the lab's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LabRouter {
    /// The router is a Linux kernel, programmed over netlink.
    #[default]
    Netlink,
    /// The router runs FRR's bgpd and learns every subnet from the
    /// controller's BGP session.
    Bgp,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub lab: LabArgs,
    /// How the controller reaches the router: `netlink`, or `bgp` (FRR's
    /// bgpd in the router's namespace, the session started from node1).
    #[arg(long, value_enum, default_value_t = LabRouter::Netlink)]
    pub router: LabRouter,
    /// How long to wait for the controller to assign every node a subnet.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Use this cluster's API instead of a node file: the lab's nodes become
    /// Node objects (labelled nativeroute.io/lab, unschedulable, tainted)
    /// that the controller watches; `lab down` deletes them. Use a test
    /// cluster: DaemonSets that tolerate every taint place pods on these
    /// Nodes that never run, and a cloud controller deletes Nodes without
    /// an instance.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub lab: LabArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub lab: LabArgs,
}

/// Runs one `nativeroute lab` command (as root).
pub async fn run(cmd: LabCommand) -> Result<()> {
    match cmd {
        LabCommand::Up(args) => {
            up::up(
                args.lab.spec(),
                args.router,
                args.timeout,
                args.kubeconfig.as_deref(),
            )
            .await
        }
        LabCommand::Down(args) => down(args.lab.spec()).await,
        LabCommand::Status(args) => {
            netns::require_root()?;
            netns::require_programs(&["ip", "ping"])?;
            status::print(args.lab.spec()).await
        }
    }
}

async fn down(spec: LabSpec) -> Result<()> {
    netns::require_root()?;
    netns::require_programs(&["ip"])?;
    // The controller stops first (destroy), so deleting the Nodes afterwards
    // withdraws nothing: the router namespace goes anyway.
    let cluster = kubernetes::LabCluster::of_lab(&spec).await;
    destroy(&spec).await?;
    match cluster {
        Ok(Some(cluster)) => cluster.unregister().await?,
        Ok(None) => {}
        Err(err) => eprintln!("warning: the lab's Node objects were not deleted: {err:#}"),
    }
    println!("lab {:?} is down", spec.prefix);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        lab: LabCommand,
    }

    #[test]
    fn up_defaults_to_the_standard_lab() {
        let cli = Cli::parse_from(["lab", "up"]);
        let LabCommand::Up(args) = cli.lab else {
            panic!("parsed as another command");
        };
        assert_eq!(args.lab.spec(), LabSpec::default());
        assert_eq!(args.timeout, Duration::from_secs(10));
        assert_eq!(args.router, LabRouter::Netlink);
        let cli = Cli::parse_from(["lab", "up", "--router", "bgp"]);
        let LabCommand::Up(args) = cli.lab else {
            panic!("parsed as another command");
        };
        assert_eq!(args.router, LabRouter::Bgp);
    }

    #[test]
    fn status_takes_another_prefix() {
        let cli = Cli::parse_from(["lab", "status", "--prefix", "t1-", "--dir", "/tmp/t1"]);
        let LabCommand::Status(args) = cli.lab else {
            panic!("parsed as another command");
        };
        assert_eq!(args.lab.spec(), LabSpec::new("t1-", "/tmp/t1"));
    }
}
