//! The lab against a Kubernetes API instead of a file inventory: the lab's
//! nodes become Node objects (labelled as the lab's, unschedulable and
//! tainted, so nothing is ever scheduled on them), and the controller
//! watches them like any cluster's nodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::spec::LabSpec;
use super::topology::Topology;
use crate::inventory::annotations;
use crate::inventory::kubernetes;

/// The label that marks a lab's Node objects; its value is the lab's name.
pub const LAB_LABEL: &str = "nativeroute.io/lab";
const POLL: Duration = Duration::from_millis(100);

/// A lab's view of its cluster.
pub struct LabCluster {
    nodes: Api<Node>,
    spec: LabSpec,
    kubeconfig: PathBuf,
}

impl LabCluster {
    pub async fn connect(spec: &LabSpec, kubeconfig: &Path) -> Result<LabCluster> {
        let client = kubernetes::client(Some(kubeconfig)).await?;
        Ok(LabCluster {
            nodes: Api::all(client),
            spec: spec.clone(),
            kubeconfig: kubeconfig.to_path_buf(),
        })
    }

    /// The cluster a lab was started against, if it was (`lab up --kubeconfig`).
    pub async fn of_lab(spec: &LabSpec) -> Result<Option<LabCluster>> {
        let marker = spec.dir.join(MARKER);
        let text = match std::fs::read_to_string(&marker) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", marker.display())),
        };
        let kubeconfig = PathBuf::from(text.trim());
        Ok(Some(LabCluster::connect(spec, &kubeconfig).await?))
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The label selector of the lab's nodes.
    pub fn selector(&self) -> String {
        format!("{LAB_LABEL}={}", lab_name(&self.spec))
    }

    /// The Node object's name of a lab node.
    pub fn node_name(&self, lab_node: &str) -> String {
        format!("{}{lab_node}", self.spec.prefix)
    }

    /// Remembers the cluster in the lab directory, for `status` and `down`.
    pub fn remember(&self) -> Result<()> {
        std::fs::create_dir_all(&self.spec.dir)
            .with_context(|| format!("creating lab directory {}", self.spec.dir.display()))?;
        let marker = self.spec.dir.join(MARKER);
        std::fs::write(&marker, format!("{}\n", self.kubeconfig.display()))
            .with_context(|| format!("writing {}", marker.display()))
    }

    /// Creates a Node object per lab node, with its address in status.
    /// Refuses to touch a Node of the same name that is not the lab's.
    pub async fn register(&self, topo: &Topology) -> Result<()> {
        let lab = lab_name(&self.spec);
        for node in topo.nodes() {
            let name = self.node_name(&node.name);
            if let Some(existing) = self.nodes.get_opt(&name).await? {
                let labels = existing.metadata.labels.unwrap_or_default();
                if labels.get(LAB_LABEL) != Some(&lab) {
                    bail!(
                        "a Node named {name} exists and is not this lab's (no label {LAB_LABEL}={lab}); choose another --prefix"
                    );
                }
            } else {
                let object: Node = serde_json::from_value(json!({
                    "metadata": {
                        "name": name,
                        "labels": {LAB_LABEL: lab, "kubernetes.io/hostname": name},
                    },
                    "spec": {
                        "unschedulable": true,
                        "taints": [{"key": LAB_LABEL, "value": lab, "effect": "NoSchedule"}],
                    },
                }))
                .context("building a lab Node")?;
                self.nodes
                    .create(&PostParams::default(), &object)
                    .await
                    .with_context(|| format!("creating Node {name}"))?;
            }
            // Addresses live in status, which a create does not take.
            let status = json!({"status": {"addresses": [
                {"type": "InternalIP", "address": node.address.to_string()},
                {"type": "Hostname", "address": name},
            ]}});
            self.nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .with_context(|| format!("setting the address of Node {name}"))?;
        }
        Ok(())
    }

    /// Deletes the lab's Node objects (the controller, if running, then
    /// withdraws their routes).
    pub async fn unregister(&self) -> Result<()> {
        let listed = self
            .nodes
            .list(&ListParams::default().labels(&self.selector()))
            .await
            .context("listing the lab's Nodes")?;
        for node in listed.items {
            let name = node.metadata.name.unwrap_or_default();
            match self.nodes.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(err).with_context(|| format!("deleting Node {name}")),
            }
        }
        Ok(())
    }

    /// lab node name → the IPv4 subnet annotated on its Node.
    pub async fn assignments(&self) -> Result<BTreeMap<String, IpNet>> {
        let listed = self
            .nodes
            .list(&ListParams::default().labels(&self.selector()))
            .await
            .context("listing the lab's Nodes")?;
        Ok(listed
            .items
            .into_iter()
            .filter_map(|node| {
                let name = node.metadata.name?;
                let lab_node = name.strip_prefix(&self.spec.prefix)?.to_owned();
                let subnet = node
                    .metadata
                    .annotations?
                    .get(annotations::SUBNET)?
                    .split(',')
                    .filter_map(|s| s.trim().parse::<IpNet>().ok())
                    .find(|s| matches!(s, IpNet::V4(_)))?;
                Some((lab_node, subnet))
            })
            .collect())
    }

    /// Polls the Nodes until every lab node has a subnet annotated.
    pub async fn wait_for_assignments(
        &self,
        topo: &Topology,
        timeout: Duration,
    ) -> Result<BTreeMap<String, IpNet>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let assigned = self.assignments().await;
            if let Ok(assigned) = &assigned
                && topo.nodes().iter().all(|n| assigned.contains_key(&n.name))
            {
                return Ok(assigned.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow!(
                    "the controller did not annotate every lab Node with a subnet within {} (last read: {:?})",
                    humantime::format_duration(timeout),
                    assigned.map_err(|e| format!("{e:#}"))
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The file in the lab directory that names the kubeconfig of a lab.
pub const MARKER: &str = "kubernetes.kubeconfig-path";

/// A label value for the lab: its prefix without the trailing dash (label
/// values must start and end with a letter or digit).
fn lab_name(spec: &LabSpec) -> String {
    spec.prefix
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_label_value_is_the_prefix_without_its_dash() {
        assert_eq!(lab_name(&LabSpec::default()), "nrlab");
        assert_eq!(lab_name(&LabSpec::new("t1-k8s-", "/tmp/x")), "t1-k8s");
    }
}
