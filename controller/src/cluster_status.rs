//! `nativeroute status`: the picture an operator wants from the cluster
//! alone: every node with its subnet, address and per-router state (its
//! status annotation), the leader, and per router whether it is up, how
//! many routes it holds, what the removal guard holds back and when it was
//! last synced (the board the leader carries on its Lease).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use serde::Serialize;

use crate::config::{Config, NodesConfig};
use crate::inventory::annotations;
use crate::inventory::kubernetes;
use crate::status::board::{ROUTERS_ANNOTATION, RouterReport, parse_board};

/// How `status` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    #[default]
    Text,
    /// Text, with each node's steering annotations too.
    Wide,
    Json,
    Yaml,
}

/// Where the controller's Lease is.
pub struct LeaseName<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterStatus {
    leader: Option<String>,
    lease_renewed: Option<String>,
    routers: BTreeMap<String, RouterReport>,
    nodes: Vec<NodeLine>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeLine {
    name: String,
    addresses: Vec<String>,
    subnets: Vec<String>,
    /// The status annotation, per router (or `excluded`, `unrouted`).
    status: String,
    /// The operator's `nativeroute.io/` settings on the node.
    settings: BTreeMap<String, String>,
}

/// Prints the status; `Ok(false)` when no controller leads.
pub async fn print_status(
    config: &Config,
    kubeconfig: Option<&Path>,
    lease: LeaseName<'_>,
    format: StatusFormat,
) -> anyhow::Result<bool> {
    if !matches!(config.nodes, NodesConfig::Kubernetes { .. }) {
        bail!(
            "status reads the cluster (nodes.source: kubernetes); for a file inventory use \
             `nativeroute plan` and the metrics"
        );
    }
    let status = read_status(config, kubeconfig, lease).await?;
    let led = status.leader.is_some();
    match format {
        StatusFormat::Text => print!("{}", as_text(&status, false)),
        StatusFormat::Wide => print!("{}", as_text(&status, true)),
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        StatusFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&status)?),
    }
    Ok(led)
}

async fn read_status(
    config: &Config,
    kubeconfig: Option<&Path>,
    lease: LeaseName<'_>,
) -> anyhow::Result<ClusterStatus> {
    let snapshot = kubernetes::list_nodes(config, kubeconfig).await?;
    let client = kubernetes::client(kubeconfig).await?;
    // The node source keeps only what routing needs; the status annotation
    // the controller wrote is read from the Nodes' metadata.
    let written: BTreeMap<String, BTreeMap<String, String>> =
        kube::Api::<Node>::all(client.clone())
            .list_metadata(&kube::api::ListParams::default())
            .await
            .context("cannot list the Nodes' metadata")?
            .items
            .into_iter()
            .filter_map(|node| Some((node.metadata.name?, node.metadata.annotations?)))
            .collect();
    let leases: kube::Api<Lease> = kube::Api::namespaced(client, lease.namespace);
    let found = leases.get_opt(lease.name).await.with_context(|| {
        format!(
            "cannot read the Lease {}/{} (--lease-namespace, --lease-name)",
            lease.namespace, lease.name
        )
    })?;
    let spec = found.as_ref().and_then(|lease| lease.spec.as_ref());
    let routers = found
        .as_ref()
        .and_then(|lease| lease.metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(ROUTERS_ANNOTATION))
        .and_then(|text| parse_board(text))
        .unwrap_or_default();
    let nodes = snapshot
        .nodes
        .iter()
        .filter(|node| node.is_listed())
        .map(|node| {
            let mut settings: BTreeMap<String, String> = written
                .get(&node.name)
                .into_iter()
                .flatten()
                .filter(|(key, _)| key.starts_with(annotations::PREFIX))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            let status = settings.remove(annotations::STATUS).unwrap_or_default();
            let recorded = settings.remove(annotations::SUBNET);
            let subnets = if node.recorded.is_empty() {
                recorded.into_iter().collect()
            } else {
                node.recorded.iter().map(ToString::to_string).collect()
            };
            NodeLine {
                name: node.name.clone(),
                addresses: node.addresses.iter().map(ToString::to_string).collect(),
                subnets,
                status,
                settings,
            }
        })
        .collect();
    Ok(ClusterStatus {
        leader: spec.and_then(|spec| spec.holder_identity.clone()),
        lease_renewed: spec
            .and_then(|spec| spec.renew_time.as_ref())
            .map(|time| time.0.to_string()),
        routers,
        nodes,
    })
}

fn as_text(status: &ClusterStatus, wide: bool) -> String {
    let mut out = String::new();
    match (&status.leader, &status.lease_renewed) {
        (Some(leader), Some(renewed)) => {
            let _ = writeln!(out, "leader: {leader} (lease renewed {renewed})");
        }
        (Some(leader), None) => {
            let _ = writeln!(out, "leader: {leader}");
        }
        (None, _) => {
            let _ = writeln!(out, "leader: none (no controller holds the Lease)");
        }
    }
    let _ = writeln!(out);
    let mut routers = vec![row([
        "ROUTER",
        "UP",
        "ROUTES",
        "HELD",
        "LAST SYNC",
        "ERROR",
    ])];
    for (name, report) in &status.routers {
        routers.push(row([
            name,
            match (report.up, report.held_by_others) {
                (true, true) => "held",
                (true, false) => "yes",
                (false, _) => "no",
            },
            &report.routes.to_string(),
            &report.withheld.to_string(),
            report.last_sync.as_deref().unwrap_or("-"),
            report.error.as_deref().unwrap_or(""),
        ]));
    }
    out.push_str(&table(&routers));
    let _ = writeln!(out);
    let mut nodes = vec![row(["NODE", "ADDRESS", "SUBNET", "STATUS"])];
    if wide {
        nodes[0].push("SETTINGS".to_owned());
    }
    for node in &status.nodes {
        let mut line = row([
            &node.name,
            &node.addresses.join(","),
            &or_dash(&node.subnets.join(",")),
            &or_dash(&node.status),
        ]);
        if wide {
            let settings: Vec<String> = node
                .settings
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            line.push(settings.join(" "));
        }
        nodes.push(line);
    }
    out.push_str(&table(&nodes));
    out
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|cell| (*cell).to_owned()).collect()
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// Columns padded to their widest cell, as kubectl prints.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("   ").trim_end());
    }
    out
}
