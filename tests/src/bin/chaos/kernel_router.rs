//! The netlink router: a network namespace of the run's own, named so it
//! can be deleted and built again under the same name (the fault "the
//! router's namespace was re-created"), with one interface on each node
//! network and a few foreign routes an operator put inside the pool.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;

/// The router's interfaces, as in the seed lab: (name, address).
const INTERFACES: [(&str, &str); 2] = [("p3p1", "192.168.2.2/24"), ("p3p2", "192.168.3.2/24")];
/// Foreign routes inside the pool (in its reserved ranges, so no node's
/// subnet ever collides with them): `ip route add` arguments.
const FOREIGN: [&str; 3] = [
    "11.11.250.0/24 via 192.168.3.77 proto static",
    "11.11.251.0/25 via 192.168.2.77",
    "11.11.0.5/32 via 192.168.2.78 proto static",
];
/// nativeroute's kernel route protocol, by number and by iproute2's name
/// (when /etc/iproute2/rt_protos names it).
const OURS: [&str; 2] = ["203", "nativeroute"];

/// A route in a namespace's main table inside 11.11.0.0/16.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelRoute {
    pub dst: Ipv4Net,
    /// The gateway; of a multipath route, the first one.
    pub via: Option<Ipv4Addr>,
    pub protocol: String,
    /// More than one next hop: zebra installs a static route with two
    /// next hops as one, while FRR holds both (a replace between its add
    /// and its removal).
    pub multipath: bool,
}

impl KernelRoute {
    pub fn is_ours(&self) -> bool {
        OURS.contains(&self.protocol.as_str())
    }
}

/// The router's namespace; deleted when dropped.
pub struct KernelRouter {
    name: String,
    foreign: Vec<KernelRoute>,
}

impl KernelRouter {
    pub fn create(name: &str) -> Result<KernelRouter> {
        if std::path::Path::new("/run/netns").join(name).exists() {
            bail!("network namespace {name} exists already (a run with this pid left it?)");
        }
        let mut router = KernelRouter {
            name: name.to_owned(),
            foreign: Vec::new(),
        };
        router.build()?;
        router.foreign = foreign_of(&router.routes().unwrap_or_default());
        if router.foreign.len() != FOREIGN.len() {
            bail!(
                "namespace {name}: {} foreign routes read back after adding {}: {:?}",
                router.foreign.len(),
                FOREIGN.len(),
                router.foreign
            );
        }
        Ok(router)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace and builds it again as it was: interfaces,
    /// addresses and the operator's foreign routes, none of nativeroute's.
    pub fn recreate(&self) -> Result<()> {
        self.delete()?;
        self.build()
    }

    fn build(&self) -> Result<()> {
        ip(&["netns", "add", &self.name])?;
        self.ip_in(&["link", "set", "lo", "up"])?;
        // The test kernel has no dummy driver: a veth pair with both ends
        // up stands in for a NIC on the node network.
        for (interface, address) in INTERFACES {
            let peer = format!("{interface}p");
            self.ip_in(&[
                "link", "add", interface, "type", "veth", "peer", "name", &peer,
            ])?;
            self.ip_in(&["link", "set", interface, "up"])?;
            self.ip_in(&["link", "set", &peer, "up"])?;
            self.ip_in(&["address", "add", address, "dev", interface])?;
        }
        for route in FOREIGN {
            let mut args = vec!["route", "add"];
            args.extend(route.split_whitespace());
            self.ip_in(&args)?;
        }
        Ok(())
    }

    fn delete(&self) -> Result<()> {
        ip(&["netns", "del", &self.name])
    }

    /// The routes inside the pool, or `None` while the namespace is gone
    /// or `ip` fails.
    pub fn routes(&self) -> Option<Vec<KernelRoute>> {
        kernel_routes(&self.name)
    }

    /// The foreign routes as first built, read back from the kernel, to
    /// compare with later reads.
    pub fn foreign_baseline(&self) -> &[KernelRoute] {
        &self.foreign
    }

    fn ip_in(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for KernelRouter {
    fn drop(&mut self) {
        if let Err(err) = self.delete() {
            eprintln!("warning: {err:#}");
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The routes of `netns`'s main table inside 11.11.0.0/16; `None` if the
/// namespace is missing or `ip` fails (never a panic: the namespace is
/// deleted on purpose during the run).
pub fn kernel_routes(netns: &str) -> Option<Vec<KernelRoute>> {
    let output = Command::new("ip")
        .args(["-j", "-n", netns, "route", "show", "root", "11.11.0.0/16"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let routes: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
    let mut out: Vec<KernelRoute> = routes
        .iter()
        .filter_map(|route| {
            let nexthops = route.get("nexthops").and_then(|n| n.as_array());
            let gateway = route.get("gateway").or_else(|| {
                nexthops
                    .and_then(|n| n.first())
                    .and_then(|first| first.get("gateway"))
            });
            Some(KernelRoute {
                dst: destination(route.get("dst")?.as_str()?)?,
                via: gateway
                    .and_then(|g| g.as_str())
                    .and_then(|g| g.parse().ok()),
                multipath: nexthops.is_some_and(|n| n.len() > 1),
                protocol: route
                    .get("protocol")
                    .and_then(|p| {
                        p.as_str()
                            .map(str::to_owned)
                            .or_else(|| p.as_u64().map(|n| n.to_string()))
                    })
                    .unwrap_or_default(),
            })
        })
        .collect();
    out.sort();
    Some(out)
}

/// iproute2 prints a host route's destination without its /32.
fn destination(text: &str) -> Option<Ipv4Net> {
    text.parse()
        .ok()
        .or_else(|| text.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
}

/// The routes not marked as nativeroute's.
pub fn foreign_of(routes: &[KernelRoute]) -> Vec<KernelRoute> {
    routes.iter().filter(|r| !r.is_ours()).cloned().collect()
}
