//! The SSH router: real FRR (zebra, staticd) behind a real sshd in a
//! namespace of its own (the shared `SshRouter`), given a second interface
//! so it serves both node networks, and a few foreign static routes an
//! operator configured inside the pool.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use nativeroute_tests::ssh_router::SshRouter;

/// FRR's `ip route` lines an operator wrote: no tag, or another tag than
/// nativeroute's. All inside the pool's reserved ranges.
const FOREIGN: [&str; 3] = [
    "ip route 11.11.250.0/24 192.168.3.77",
    "ip route 11.11.251.0/24 192.168.2.77 tag 4242",
    "ip route 11.11.0.64/26 192.168.3.78",
];
/// nativeroute's mark on FRR static routes (ownership.routeTag).
const OUR_TAG: &str = "1111";

/// What FRR's running configuration holds inside the pool.
pub struct FrrRoutes {
    /// nativeroute's routes: destination → next hop.
    pub ours: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// A second route of ours to a destination already listed.
    pub doubled: Vec<String>,
    /// Every other `ip route` line, as FRR prints it.
    pub foreign: Vec<String>,
}

pub struct FrrRouter {
    pub router: SshRouter,
    foreign: Vec<String>,
}

impl FrrRouter {
    pub fn start() -> Result<FrrRouter> {
        let router = SshRouter::start_frr().context("FRR behind sshd")?;
        // SshRouter has the 192.168.3.0/24 side (p3p2, where sshd listens);
        // the 192.168.2.0/24 side is added here. Not on 192.168.2.2: the SSH
        // driver knows only the login address as the router's own, so a
        // next-hop override naming another of its addresses would become a
        // route zebra never installs (see docs/benchmarks.md, Chaos run).
        for args in [
            "link add p3p1 type veth peer name p3p1p",
            "link set p3p1 up",
            "link set p3p1p up",
            "address add 192.168.2.254/24 dev p3p1",
        ] {
            router.ip(args);
        }
        let mut frr = FrrRouter {
            router,
            foreign: Vec::new(),
        };
        frr.add_foreign()?;
        frr.foreign = frr.routes()?.foreign;
        if frr.foreign.len() != FOREIGN.len() {
            bail!(
                "FRR shows {} foreign routes after {} were added: {:?}",
                frr.foreign.len(),
                FOREIGN.len(),
                frr.foreign
            );
        }
        Ok(frr)
    }

    pub fn netns(&self) -> &str {
        self.router.netns()
    }

    /// The foreign lines as first configured.
    pub fn foreign_baseline(&self) -> &[String] {
        &self.foreign
    }

    /// The operator's routes, as after an FRR restart (which forgets every
    /// static route not in the daemons' own config files).
    pub fn add_foreign(&self) -> Result<()> {
        let mut args = vec!["-c", "configure terminal"];
        for line in FOREIGN {
            args.extend(["-c", line]);
        }
        self.router.frr()?.vtysh(&args)?;
        Ok(())
    }

    /// FRR's static routes inside 11.11.0.0/16 from `show running-config`.
    pub fn routes(&self) -> Result<FrrRoutes> {
        let lines = self.router.frr()?.static_route_lines()?;
        let mut routes = FrrRoutes {
            ours: BTreeMap::new(),
            doubled: Vec::new(),
            foreign: Vec::new(),
        };
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let dst = words.get(2).and_then(|w| w.parse::<Ipv4Net>().ok());
            let via = words.get(3).and_then(|w| w.parse::<Ipv4Addr>().ok());
            let ours = words.windows(2).any(|w| w == ["tag", OUR_TAG]);
            match (dst, via) {
                (Some(dst), Some(via)) if ours => match routes.ours.entry(dst) {
                    Entry::Occupied(_) => routes.doubled.push(line.clone()),
                    Entry::Vacant(slot) => {
                        slot.insert(via);
                    }
                },
                _ => routes.foreign.push(line.clone()),
            }
        }
        routes.foreign.sort();
        Ok(routes)
    }

    /// Restarts zebra and staticd, then puts the operator's routes back.
    pub fn restart_frr(&mut self) -> Result<()> {
        self.router
            .frr
            .as_mut()
            .context("the SSH router runs no FRR")?
            .restart()?;
        self.add_foreign()
    }

    pub fn stop_sshd(&mut self) -> Result<()> {
        self.router.sshd.stop()
    }

    pub fn start_sshd(&mut self) -> Result<()> {
        self.router.sshd.start_again()
    }
}
