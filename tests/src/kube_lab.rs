//! A seed-000 lab whose nodes are Node objects in the test API server, with
//! the real controller binary watching them through a kubeconfig.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::api::events::v1::Event;

use crate::apiserver::{ApiServer, realistic_node};
use crate::lab::{ControllerProcess, TestLab, wait_until};
pub use nativeroute::lab::LabRouter;

/// The label every lab Node carries; the controller selects on it.
pub const LAB_LABEL: &str = "nativeroute.io/e2e";

/// How the controller's config differs between tests.
#[derive(Clone, Debug)]
pub struct KubeConfig {
    /// `allocate` or `podCIDR`.
    pub ipam: &'static str,
    pub manage_node_condition: bool,
    pub resync: Duration,
    /// The lab's router: the kernel's table by netlink, or FRR over BGP.
    pub router: LabRouter,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            ipam: "allocate",
            manage_node_condition: true,
            resync: Duration::from_secs(2),
            router: LabRouter::Netlink,
        }
    }
}

/// A lab whose three nodes are routed by a running controller.
pub struct Converged {
    pub lab: KubeLab,
    pub controller: ControllerProcess,
    /// Each lab node's subnet.
    pub subnets: BTreeMap<String, IpNet>,
    /// The router's routes: each subnet via its node.
    pub routes: BTreeMap<IpNet, IpAddr>,
}

pub struct KubeLab {
    pub lab: TestLab,
    pub api: ApiServer,
    pub kubeconfig: PathBuf,
    pub config: PathBuf,
}

impl KubeLab {
    /// The lab's namespaces, a test API server with no Nodes yet, and a
    /// controller config that watches Nodes labelled [`LAB_LABEL`].
    pub async fn create(settings: KubeConfig) -> KubeLab {
        let lab = TestLab::create_with_router(settings.resync, settings.router).await;
        let api = ApiServer::start()
            .await
            .expect("the test API server starts");
        let dir = lab.topology.spec().dir.clone();
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)
            .expect("the kubeconfig is written");
        let config = dir.join("kubernetes.yaml");
        let text = format!(
            "pool: {{cidrs: [11.11.0.0/16], nodeMaskV4: 24, reserved: [11.11.0.0/24]}}\n\
             ipam: {ipam}\n\
             nodes: {{source: kubernetes, selector: \"{LAB_LABEL}=yes\"}}\n\
             manageNodeCondition: {manage}\n\
             resyncInterval: {resync}\n\
             routers: {routers}\n",
            ipam = settings.ipam,
            manage = settings.manage_node_condition,
            resync = humantime::format_duration(settings.resync),
            routers = lab_routers(&lab),
        );
        std::fs::write(&config, text).expect("the config is written");
        KubeLab {
            lab,
            api,
            kubeconfig,
            config,
        }
    }

    /// A lab with its three nodes registered and a controller ("leader-a")
    /// that has routed them all.
    pub async fn converged(settings: KubeConfig) -> Converged {
        let lab = KubeLab::create(settings).await;
        lab.register_lab_nodes();
        let controller = lab.start_controller("leader-a");
        let names: Vec<String> = lab
            .lab
            .topology
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let subnets = lab.wait_for_subnets(&names).await;
        let routes = lab.lab_routes(&subnets);
        lab.wait_for_routes("the router holds a route per node", &routes)
            .await;
        Converged {
            lab,
            controller,
            subnets,
            routes,
        }
    }

    /// What the router should hold for lab nodes: each subnet via its node.
    pub fn lab_routes(&self, subnets: &BTreeMap<String, IpNet>) -> BTreeMap<IpNet, IpAddr> {
        subnets
            .iter()
            .map(|(name, subnet)| {
                let node = self
                    .lab
                    .topology
                    .node(name)
                    .unwrap_or_else(|| panic!("{name} is not a lab node"));
                (*subnet, node.address)
            })
            .collect()
    }

    /// A Node as a kubelet registers it, with a subnet pinned by a user.
    pub fn pinned_node(name: &str, address: IpAddr, subnet: &str) -> Node {
        let mut node = Self::kubelet_node(name, address);
        node.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("nativeroute.io/subnet".into(), subnet.into());
        node
    }

    /// A lab Node as a kubelet registers it.
    pub fn kubelet_node(name: &str, address: IpAddr) -> Node {
        let mut node = realistic_node(name, address);
        node.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(LAB_LABEL.into(), "yes".into());
        node
    }

    /// Registers the lab's three nodes as a kubelet would.
    pub fn register_lab_nodes(&self) {
        for node in self.lab.topology.nodes() {
            self.put(Self::kubelet_node(&node.name, node.address));
        }
    }

    pub fn put(&self, node: Node) -> Node {
        self.api.put_node(node).expect("the Node is stored")
    }

    /// Changes a stored Node in place (as a kubelet or a user would).
    pub fn edit(&self, name: &str, change: impl FnOnce(&mut Node)) {
        let mut node = self.node(name);
        change(&mut node);
        self.put(node);
    }

    pub fn annotate(&self, name: &str, key: &str, value: Option<&str>) {
        self.edit(name, |node| {
            let annotations = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
            match value {
                Some(value) => annotations.insert(key.into(), value.into()),
                None => annotations.remove(key),
            };
        });
    }

    pub fn node(&self, name: &str) -> Node {
        self.api
            .node(name)
            .unwrap_or_else(|| panic!("Node {name} is not in the API server"))
    }

    /// The controller, with leader election on a Lease of its own.
    pub fn start_controller(&self, identity: &str) -> ControllerProcess {
        self.start_controller_with(identity, "off")
    }

    pub fn start_controller_with(&self, identity: &str, metrics: &str) -> ControllerProcess {
        let extra = vec![
            "--kubeconfig".to_owned(),
            self.kubeconfig.display().to_string(),
            "--lease-namespace".to_owned(),
            "nativeroute".to_owned(),
            "--identity".to_owned(),
            identity.to_owned(),
        ];
        ControllerProcess::start_with(&self.config, &self.log_path(), metrics, &extra)
    }

    pub fn log_path(&self) -> PathBuf {
        self.lab.topology.spec().dir.join("controller.log")
    }

    /// The subnet annotated on a Node, if any.
    pub fn subnet_of(&self, name: &str) -> Option<IpNet> {
        annotation(&self.node(name), "nativeroute.io/subnet")?
            .parse()
            .ok()
    }

    /// Waits until each named Node has a subnet annotated; returns them.
    pub async fn wait_for_subnets(&self, names: &[&str]) -> BTreeMap<String, IpNet> {
        wait_until(
            "every node has a subnet annotated",
            Duration::from_secs(10),
            async || names.iter().all(|name| self.subnet_of(name).is_some()),
        )
        .await;
        names
            .iter()
            .filter_map(|name| Some((name.to_string(), self.subnet_of(name)?)))
            .collect()
    }

    /// Whether everything a converged controller writes shows on the Node:
    /// its subnet (annotation and spec.podCIDR alike), the status
    /// annotation of the lab's one router and NetworkUnavailable=False.
    pub fn shows_everything_written(&self, name: &str) -> bool {
        let node = self.node(name);
        let subnet = annotation(&node, "nativeroute.io/subnet");
        let pod_cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        subnet.is_some()
            && subnet == pod_cidr
            && annotation(&node, "nativeroute.io/status").as_deref() == Some("rtr=programmed")
            && self
                .condition(name, "NetworkUnavailable")
                .is_some_and(|c| c.status == "False")
    }

    /// Waits until every named Node shows everything a converged
    /// controller writes (see `shows_everything_written`).
    pub async fn wait_for_everything_written(&self, names: &[&str]) {
        wait_until(
            "every node shows its subnet, status and condition",
            Duration::from_secs(20),
            async || names.iter().all(|name| self.shows_everything_written(name)),
        )
        .await;
    }

    /// Waits until the router holds exactly `want` (destination → next hop).
    pub async fn wait_for_routes(&self, what: &str, want: &BTreeMap<IpNet, IpAddr>) {
        wait_until(what, Duration::from_secs(10), async || {
            self.routes() == *want
        })
        .await;
    }

    /// The router's routes in the pool: destination → next hop.
    pub fn routes(&self) -> BTreeMap<IpNet, IpAddr> {
        self.lab
            .router_routes()
            .into_iter()
            .filter_map(|(dst, (via, _))| Some((dst, via?)))
            .collect()
    }

    /// The Events about a Node: (type, reason, note).
    pub fn events_of(&self, name: &str) -> Vec<(String, String, String)> {
        self.api
            .events()
            .into_iter()
            .filter(|event| regarding(event) == Some(name))
            .map(|event| {
                (
                    event.type_.unwrap_or_default(),
                    event.reason.unwrap_or_default(),
                    event.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for an Event on `name` with `reason` whose note contains every
    /// piece of `note_has`; returns its type.
    pub async fn wait_for_event(&self, name: &str, reason: &str, note_has: &[&str]) -> String {
        let mut found = String::new();
        wait_until(
            &format!("a {reason} Event on {name} mentioning {note_has:?}"),
            Duration::from_secs(10),
            async || match self.events_of(name).into_iter().find(|(_, r, note)| {
                r == reason && note_has.iter().all(|piece| note.contains(piece))
            }) {
                Some((kind, _, _)) => {
                    found = kind;
                    true
                }
                None => false,
            },
        )
        .await;
        found
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        self.api.lease(namespace, name)
    }

    /// Who holds the controller's Lease.
    pub fn lease_holder(&self) -> Option<String> {
        self.lease("nativeroute", "nativeroute")?
            .spec?
            .holder_identity
    }

    /// The Node's condition of `kind`, if any.
    pub fn condition(&self, name: &str, kind: &str) -> Option<NodeCondition> {
        self.node(name)
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == kind)
    }
}

/// The routers of the lab's own (file inventory) config, as a YAML list
/// with a line per router (tests append routers to it): the same router,
/// whichever way the nodes come.
fn lab_routers(lab: &TestLab) -> String {
    let text = std::fs::read_to_string(&lab.config).expect("the lab's config");
    let config: serde_json::Value =
        serde_yaml_ng::from_str(&text).expect("the lab's config is YAML");
    let routers = config
        .get("routers")
        .and_then(serde_json::Value::as_array)
        .expect("the lab's config names its router");
    routers
        .iter()
        .map(|router| format!("\n  - {router}"))
        .collect()
}

pub fn annotation(node: &Node, key: &str) -> Option<String> {
    node.metadata.annotations.as_ref()?.get(key).cloned()
}

fn regarding(event: &Event) -> Option<&str> {
    event.regarding.as_ref()?.name.as_deref()
}
