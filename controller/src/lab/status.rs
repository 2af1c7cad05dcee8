//! `nativeroute lab status`: what the lab looks like and whether every
//! container reaches every other.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use anyhow::{Result, bail};
use futures::future::join_all;

use super::controller_files::read_assignments;
use super::controller_process;
use super::kubernetes::LabCluster;
use super::netns::Cmd;
use super::spec::LabSpec;
use super::topology::{POOL, Topology};

/// One ping from a container to another container's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingOutcome {
    Reply,
    NoReply,
    /// ping could not run; the message says why.
    Error(String),
}

/// The result of every container pinging every other container.
#[derive(Debug, Clone)]
pub struct PingMatrix {
    nodes: Vec<String>,
    outcomes: BTreeMap<(String, String), PingOutcome>,
}

impl PingMatrix {
    pub fn outcome(&self, from: &str, to: &str) -> Option<&PingOutcome> {
        self.outcomes.get(&(from.to_owned(), to.to_owned()))
    }

    /// (from, to) of every ping that got no reply or could not run.
    pub fn failures(&self) -> Vec<(&str, &str)> {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| **outcome != PingOutcome::Reply)
            .map(|((from, to), _)| (from.as_str(), to.as_str()))
            .collect()
    }

    pub fn all_reached(&self) -> bool {
        self.failures().is_empty()
    }

    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

/// A table: rows ping, columns answer.
impl fmt::Display for PingMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.nodes.iter().map(String::len).max().unwrap_or(0).max(4);
        let mut header = format!("{:width$}", "");
        for to in &self.nodes {
            header.push_str(&format!("  {to:width$}"));
        }
        writeln!(f, "{}", header.trim_end())?;
        for from in &self.nodes {
            let mut row = format!("{from:width$}");
            for to in &self.nodes {
                let cell = match self.outcome(from, to) {
                    None => "-",
                    Some(PingOutcome::Reply) => "ok",
                    Some(PingOutcome::NoReply) => "FAIL",
                    Some(PingOutcome::Error(_)) => "ERROR",
                };
                row.push_str(&format!("  {cell:width$}"));
            }
            writeln!(f, "{}", row.trim_end())?;
        }
        for ((from, to), outcome) in &self.outcomes {
            if let PingOutcome::Error(message) = outcome {
                writeln!(f, "{from} -> {to}: {message}")?;
            }
        }
        Ok(())
    }
}

impl Topology {
    /// Every attached container pings every other container's address
    /// once, all at the same time.
    pub async fn ping_matrix(&self) -> PingMatrix {
        let targets: Vec<(String, IpAddr)> = self
            .nodes()
            .iter()
            .filter_map(|n| Some((n.name.clone(), self.container_address(&n.name)?)))
            .collect();
        let pairs: Vec<(&str, &str, IpAddr)> = targets
            .iter()
            .flat_map(|(from, _)| {
                targets
                    .iter()
                    .filter(move |(to, _)| to != from)
                    .map(move |(to, address)| (from.as_str(), to.as_str(), *address))
            })
            .collect();
        let outcomes = join_all(pairs.iter().map(|&(from, to, address)| async move {
            let outcome = match self.ping(from, address).await {
                Ok(true) => PingOutcome::Reply,
                Ok(false) => PingOutcome::NoReply,
                Err(e) => PingOutcome::Error(format!("{e:#}")),
            };
            ((from.to_owned(), to.to_owned()), outcome)
        }))
        .await;
        PingMatrix {
            nodes: targets.into_iter().map(|(name, _)| name).collect(),
            outcomes: outcomes.into_iter().collect(),
        }
    }

    /// The router's routes inside the pool, as `ip route` prints them.
    pub async fn router_routes(&self) -> Result<Vec<String>> {
        let out = Cmd::ip_in(self.router_netns())
            .args(["route", "show", "root"])
            .arg(POOL.to_string())
            .run()
            .await?;
        Ok(out.lines().map(|line| line.trim_end().to_owned()).collect())
    }
}

/// Prints the lab's state; an error if any ping failed.
pub(crate) async fn print(spec: LabSpec) -> Result<()> {
    let topo = Topology::open(spec).await?;
    let spec = topo.spec();
    println!("lab {:?}, files in {}", spec.prefix, spec.dir.display());
    match controller_process::running(spec) {
        Some(pid) => println!(
            "controller: running, pid {pid}, log {}",
            spec.log_path().display()
        ),
        None => println!(
            "controller: NOT running (log {})",
            spec.log_path().display()
        ),
    }
    print_nodes(&topo).await;
    println!("\nrouter {} routes in {POOL}:", topo.router_netns());
    let routes = topo.router_routes().await?;
    if routes.is_empty() {
        println!("  (none)");
    }
    for route in routes {
        println!("  {route}");
    }
    let matrix = topo.ping_matrix().await;
    if matrix.is_empty() {
        println!("\nno containers to ping");
        return Ok(());
    }
    println!("\npings (row pings column):");
    for line in matrix.to_string().lines() {
        println!("  {line}");
    }
    let failed = matrix.failures().len();
    if failed > 0 {
        bail!("{failed} of {} pings failed", matrix.len());
    }
    Ok(())
}

async fn print_nodes(topo: &Topology) {
    let assigned = match LabCluster::of_lab(topo.spec()).await {
        Ok(Some(cluster)) => {
            println!(
                "nodes: Kubernetes Nodes {} (kubeconfig {})",
                cluster.selector(),
                cluster.kubeconfig().display()
            );
            cluster.assignments().await
        }
        Ok(None) => read_assignments(&topo.spec().state_path()),
        Err(err) => Err(err),
    };
    let assigned = match assigned {
        Ok(assigned) => assigned,
        Err(e) => {
            println!("subnets unknown: {e:#}");
            BTreeMap::new()
        }
    };
    println!("\n{:8} {:15} {:18} container", "node", "address", "subnet");
    for node in topo.nodes() {
        let subnet = assigned
            .get(&node.name)
            .map_or("-".to_owned(), ToString::to_string);
        let container = topo
            .container_address(&node.name)
            .map_or("-".to_owned(), |a| a.to_string());
        println!(
            "{:8} {:15} {subnet:18} {container}",
            node.name,
            node.address.to_string()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_prints_ok_and_fail_per_pair() {
        let nodes = vec!["node1".to_owned(), "node2".to_owned()];
        let outcomes = [
            (("node1".to_owned(), "node2".to_owned()), PingOutcome::Reply),
            (
                ("node2".to_owned(), "node1".to_owned()),
                PingOutcome::NoReply,
            ),
        ]
        .into();
        let matrix = PingMatrix { nodes, outcomes };
        assert_eq!(matrix.failures(), [("node2", "node1")]);
        let table = matrix.to_string();
        assert_eq!(
            table,
            "       node1  node2\nnode1  -      ok\nnode2  FAIL   -\n"
        );
    }
}
