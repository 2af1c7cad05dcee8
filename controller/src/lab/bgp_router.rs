//! `nativeroute lab up --router bgp`: the lab's router runs FRR (zebra and
//! bgpd) and learns the node subnets over BGP instead of being programmed
//! over netlink. The controller connects from node1's namespace, as a
//! controller pod on a node would: node1 is on the router's direct segment.
//!
//! The daemons detach (`-d`) so that they outlive `lab up`; `lab down`
//! kills whatever runs in the lab's namespaces. Their files live in the
//! lab directory's `frr/`, owned by the `frr` user they run as.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;

use super::netns::Cmd;
use super::spec::LabSpec;

/// The lab's AS, on both ends: iBGP, the normal case, where the router
/// resolves each node's address over its connected networks.
pub const LAB_AS: u32 = 64512;
/// Where the router's BGP listens: its address on node1's segment.
pub const ROUTER_BGP_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);
/// The directory of the daemons' config, sockets, pid files and logs.
pub const FRR_DIR: &str = "frr";

const ZEBRA: &str = "/usr/lib/frr/zebra";
const BGPD: &str = "/usr/lib/frr/bgpd";
const VTYSH: &str = "/usr/bin/vtysh";
const FRR_USER: &str = "frr";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The binaries the BGP router needs, with the package that has them.
pub(crate) fn require_frr() -> Result<()> {
    for binary in [ZEBRA, BGPD, VTYSH] {
        if !Path::new(binary).exists() {
            bail!(
                "{binary} is missing: the lab's BGP router is FRR; install it with `apt-get install frr` (or run scripts/setup.sh)"
            );
        }
    }
    Ok(())
}

pub(crate) fn frr_dir(spec: &LabSpec) -> PathBuf {
    spec.dir.join(FRR_DIR)
}

/// bgpd's config: a passive iBGP neighbor for the controller, graceful
/// restart, and an import policy that takes only nativeroute's routes (its
/// community, node-sized prefixes of the pool), as docs/drivers/bgp.md
/// tells a router to have.
fn bgpd_config(hostname: &str, controller: Ipv4Addr, pool: Ipv4Net, node_mask: u8) -> String {
    format!(
        "hostname {hostname}
router bgp {LAB_AS}
 bgp router-id {ROUTER_BGP_ADDRESS}
 no bgp ebgp-requires-policy
 bgp graceful-restart
 neighbor {controller} remote-as {LAB_AS}
 neighbor {controller} passive
 address-family ipv4 unicast
  neighbor {controller} route-map NATIVEROUTE-IN in
 exit-address-family
!
bgp community-list standard NATIVEROUTE seq 5 permit 64512:1111
ip prefix-list NATIVEROUTE-POOL seq 5 permit {pool} ge {node_mask} le {node_mask}
route-map NATIVEROUTE-IN permit 10
 match ip address prefix-list NATIVEROUTE-POOL
 match community NATIVEROUTE
!
"
    )
}

/// Writes the config and starts zebra, then bgpd, in `router_netns`;
/// returns once bgpd answers vtysh.
pub(crate) async fn start(
    spec: &LabSpec,
    router_netns: &str,
    controller: Ipv4Addr,
    pool: Ipv4Net,
    node_mask: u8,
) -> Result<()> {
    require_frr()?;
    let dir = frr_dir(spec);
    let run = dir.join("run");
    std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
    let hostname = router_netns.to_owned();
    write(&dir.join("zebra.conf"), &format!("hostname {hostname}\n"))?;
    write(
        &dir.join("bgpd.conf"),
        &bgpd_config(&hostname, controller, pool, node_mask),
    )?;
    // vtysh reads it; empty is enough.
    write(&dir.join("vtysh.conf"), "")?;
    give_to_frr(&dir)?;
    for (daemon, binary) in [("zebra", ZEBRA), ("bgpd", BGPD)] {
        Cmd::new("ip")
            .args(["netns", "exec", router_netns, binary, "-d", "-f"])
            .arg(dir.join(format!("{daemon}.conf")))
            .arg("-i")
            .arg(run.join(format!("{daemon}.pid")))
            .arg("-z")
            .arg(run.join("zserv.api"))
            .arg("--vty_socket")
            .arg(&run)
            .args(["-P", "0", "--log"])
            .arg(format!(
                "file:{}",
                run.join(format!("{daemon}.log")).display()
            ))
            .run()
            .await
            .with_context(|| format!("starting {daemon} in {router_netns}"))?;
    }
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if vtysh(spec, "show bgp summary").await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "bgpd in {router_netns} did not answer within {START_TIMEOUT:?}; see {}",
                run.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `vtysh -c COMMAND` against the lab router's daemons.
pub async fn vtysh(spec: &LabSpec, command: &str) -> Result<String> {
    let dir = frr_dir(spec);
    Cmd::new("vtysh")
        .arg("--vty_socket")
        .arg(dir.join("run"))
        .arg("--config_dir")
        .arg(&dir)
        .args(["-c", command])
        .run()
        .await
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The daemons drop to user `frr` and must write their sockets, pid files
/// and logs.
fn give_to_frr(dir: &Path) -> Result<()> {
    let user = nix::unistd::User::from_name(FRR_USER)
        .with_context(|| format!("looking up user {FRR_USER}"))?
        .with_context(|| format!("there is no user {FRR_USER}: is FRR installed?"))?;
    let mut paths = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        paths.push(
            entry
                .with_context(|| format!("reading {}", dir.display()))?
                .path(),
        );
    }
    for path in paths {
        nix::unistd::chown(&path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("giving {} to user {FRR_USER}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_takes_only_our_community_and_node_sized_prefixes_from_a_passive_neighbor() {
        let config = bgpd_config(
            "t-rtr",
            Ipv4Addr::new(192, 168, 2, 1),
            "11.11.0.0/16".parse().expect("pool"),
            24,
        );
        for line in [
            "neighbor 192.168.2.1 remote-as 64512",
            "neighbor 192.168.2.1 passive",
            "neighbor 192.168.2.1 route-map NATIVEROUTE-IN in",
            "bgp community-list standard NATIVEROUTE seq 5 permit 64512:1111",
            "ip prefix-list NATIVEROUTE-POOL seq 5 permit 11.11.0.0/16 ge 24 le 24",
            "bgp graceful-restart",
        ] {
            assert!(config.contains(line), "{line}:\n{config}");
        }
    }
}
