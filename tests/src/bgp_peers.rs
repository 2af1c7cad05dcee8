//! Real BGP speakers (FRR, BIRD, GoBGP) inside a test's network namespace,
//! as the router the BGP driver talks to. Like `frr.rs`: the daemons are
//! this process's children (`ip netns exec NS binary …` execs them, so the
//! child's pid is the daemon's), every path is private to the test under
//! its directory, they are stopped by pid (SIGTERM, then SIGKILL) and
//! reaped, and their logs go into failing tests' messages.
//!
//! What the daemons showed (FRR 8.4.4, BIRD 2.0.12, GoBGP 3.10):
//! - FRR: bgpd must not get `-l ADDRESS` (it implies `-n`, no kernel
//!   routes); it listens on every address of the namespace. iBGP routes
//!   with a third-party next hop on any connected network are installed by
//!   zebra as `proto bgp` with no extra knob. `show bgp ipv4 unicast json
//!   detail` gives, per prefix, an array whose first element is a header
//!   ({"prefix","version"}) and the rest paths with "peer":{"peerId"},
//!   "nexthops":[{"ip"}], "community":{"list":["64512:1111"]} and
//!   "stale":true while a graceful restart keeps them. `network P route-map
//!   RM` with `set ip next-hop` / `set community` originates a route with a
//!   third-party next hop (with `no bgp network import-check`); it shows up
//!   a few seconds after bgpd starts. With `bgp graceful-restart` FRR
//!   always starts as a restarting speaker (R bit set) and defers best-path
//!   selection until every GR peer sent End-of-RIB (or 360 s pass).
//! - BIRD: iBGP sessions are multihop by default and multihop cannot use
//!   `gateway direct` ("Multihop BGP cannot use direct gateway mode");
//!   `direct;` in the protocol plus `gateway direct` in the channel accepts
//!   a third-party next hop on ANY connected interface (not only the
//!   session's) and the kernel protocol (`export all`) installs it as
//!   `proto bird`. No `protocol direct` is needed (it would export the
//!   connected networks too). BIRD shows no per-route stale flag; `show
//!   protocols all NAME` says "Neighbor graceful restart active" while it
//!   keeps a restarting neighbor's routes. `graceful restart aware` (the
//!   default) is helper mode.
//! - GoBGP: `gobgpd -t json -f FILE --api-hosts 127.0.0.1:PORT
//!   --pprof-disable -p -l info`; the API and pprof otherwise listen on
//!   every address. `gobgp -u 127.0.0.1 -p PORT global rib -a ipv4 -j` is
//!   `{}` or `{"P/L":[{"nlri":{"prefix"},"attrs":[{"type":3,"nexthop"},
//!   {"type":8,"communities":[u32]}],"stale":bool,"neighbor-ip"}]}`;
//!   `neighbor ADDR adj-in -j` fails while the session is down, so the
//!   global RIB is read instead. `neighbor ADDR -j` has
//!   "state":{"session_state":6} when Established. MD5 is
//!   "auth-password", passive is "transport.config.passive-mode", helper
//!   mode is "graceful-restart.config.helper-only".

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use serde_json::{Value, json};

use crate::frr::{Frr, run_with_stdin, stop_child};

const BGPD: &str = "/usr/lib/frr/bgpd";
const BIRD: &str = "/usr/sbin/bird";
const BIRDC: &str = "/usr/sbin/birdc";
const GOBGPD: &str = "/usr/bin/gobgpd";
const GOBGP: &str = "/usr/bin/gobgp";
/// GoBGP's API port, on the namespace's own loopback: every test has its
/// own namespace, so the same port never collides and nothing listens
/// outside the namespace.
const GOBGP_API_PORT: &str = "50051";
/// The BIRD protocol name of the one session; `show` commands filter by it.
const BIRD_PROTOCOL: &str = "controller";
/// How long a daemon may take to answer its control interface after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The router side of one BGP session, whichever daemon plays it.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    /// The namespace the daemon runs in; all its sockets live there.
    pub netns: String,
    pub router_id: Ipv4Addr,
    /// The peer's own address: it listens on port 179 there and sources its
    /// own connections from it.
    pub address: IpAddr,
    /// The peer's AS; equal to `neighbor_as` for iBGP, the normal case.
    pub local_as: u32,
    /// The controller's address, the only neighbor the peer accepts.
    pub neighbor: IpAddr,
    pub neighbor_as: u32,
    /// TCP MD5 (RFC 2385) on the session; both ends must agree or no
    /// segment is accepted. FRR takes no whitespace in it.
    pub md5_password: Option<String>,
    /// The peer is a graceful-restart helper (RFC 4724 receiving speaker):
    /// it keeps our routes, marked stale, while we restart.
    pub graceful_restart: bool,
    /// The peer never connects out, only accepts: the driver must open the
    /// session itself. False turns the peer into an active speaker, which
    /// the support tests use to play the controller.
    pub passive: bool,
}

impl PeerSpec {
    /// A passive graceful-restart helper without MD5, the usual router.
    pub fn new(
        netns: &str,
        address: Ipv4Addr,
        local_as: u32,
        neighbor: IpAddr,
        neighbor_as: u32,
    ) -> PeerSpec {
        PeerSpec {
            netns: netns.to_owned(),
            router_id: address,
            address: IpAddr::V4(address),
            local_as,
            neighbor,
            neighbor_as,
            md5_password: None,
            graceful_restart: true,
            passive: true,
        }
    }
}

/// A route the peer learned from the neighbor, as the peer reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Received {
    pub dst: IpNet,
    pub next_hop: IpAddr,
    /// Standard communities as (AS, value), in the order the peer lists them.
    pub communities: Vec<(u16, u16)>,
    /// Kept by graceful restart after the session went down and not yet
    /// refreshed. BIRD has no per-route flag: every route of the session is
    /// stale while its neighbor's graceful restart is active.
    pub stale: bool,
}

/// A route in a namespace's kernel table, as `ip -j route` reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelRoute {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
}

/// What a test needs from any real BGP router, so one test body can run
/// against all three implementations.
pub trait BgpPeer {
    /// "frr", "bird" or "gobgp", for test names and messages.
    fn name(&self) -> &'static str;
    fn spec(&self) -> &PeerSpec;
    /// Whether the session with `spec().neighbor` is Established.
    fn established(&self) -> Result<bool>;
    /// The routes learned from the neighbor (stale ones included), sorted.
    fn received(&self) -> Result<Vec<Received>>;
    /// The kernel protocol of the routes this peer installs in its
    /// namespace (`ip route show proto X`), or None when it installs none.
    fn kernel_proto(&self) -> Option<&'static str>;
    /// SIGTERM (a clean stop: the peer may send a NOTIFICATION) and start
    /// again from the same configuration.
    fn restart(&mut self) -> Result<()>;
    /// SIGKILL: the session drops without a NOTIFICATION, as when a router
    /// dies; the kernel closes the TCP connection.
    fn kill(&mut self) -> Result<()>;
    /// Starts again after `kill`, from the same configuration.
    fn start_again(&mut self) -> Result<()>;
    /// The daemon's logs and configuration, for a failing test's message.
    fn logs(&self) -> String;
}

/// Polls until the session is Established; the error carries the logs.
pub fn wait_established(peer: &dyn BgpPeer, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        if peer.established()? {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "{} in {} did not establish a session with {} within {timeout:?}; logs:\n{}",
                peer.name(),
                peer.spec().netns,
                peer.spec().neighbor,
                peer.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The namespace's IPv4 routes of kernel protocol `proto` ("bgp", "bird").
pub fn kernel_routes(netns: &str, proto: &str) -> Result<Vec<KernelRoute>> {
    let output = Command::new("ip")
        .args(["-n", netns, "-j", "route", "show", "proto", proto])
        .output()
        .with_context(|| format!("ip route show proto {proto} in {netns}"))?;
    if !output.status.success() {
        bail!(
            "ip route show proto {proto} in {netns} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_kernel_routes(&String::from_utf8_lossy(&output.stdout))
}

fn parse_kernel_routes(text: &str) -> Result<Vec<KernelRoute>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let routes: Vec<Value> = serde_json::from_str(text).context("`ip -j route` output")?;
    let mut parsed = Vec::new();
    for route in routes {
        let dst = route["dst"]
            .as_str()
            .ok_or_else(|| anyhow!("route without dst: {route}"))?;
        // `ip` prints host routes without a prefix length.
        let dst = match dst.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => IpNet::from(
                dst.parse::<IpAddr>()
                    .with_context(|| format!("route destination {dst}"))?,
            ),
        };
        let gateway = match route["gateway"].as_str() {
            Some(gateway) => Some(
                gateway
                    .parse()
                    .with_context(|| format!("gateway {gateway}"))?,
            ),
            None => None,
        };
        let dev = route["dev"].as_str().map(str::to_owned);
        parsed.push(KernelRoute { dst, gateway, dev });
    }
    parsed.sort();
    Ok(parsed)
}

// ---------------------------------------------------------------- FRR

/// A route FRR itself originates towards the neighbor, kept so that it is
/// in the config file a restart reads.
#[derive(Clone, Debug)]
struct Origination {
    dst: IpNet,
    next_hop: Option<IpAddr>,
    communities: Vec<(u16, u16)>,
    route_map: String,
}

/// FRR bgpd on top of zebra and staticd (`frr::Frr`), so BGP routes reach
/// the kernel as `proto bgp` and next hops are resolved by zebra.
#[derive(Debug)]
pub struct FrrBgp {
    spec: PeerSpec,
    route_reflector: bool,
    originated: Vec<Origination>,
    next_route_map: u32,
    bgpd: Option<Child>,
    // Declared last: dropped after bgpd is stopped by Drop.
    frr: Frr,
}

impl FrrBgp {
    /// Starts zebra, staticd and bgpd in `spec.netns`, everything under `dir`
    /// (which must be world-searchable: the daemons run as user frr).
    pub fn start(spec: &PeerSpec, dir: &Path) -> Result<FrrBgp> {
        FrrBgp::start_with(spec, dir, false)
    }

    /// Like `start`, with the neighbor as a route-reflector client: the
    /// peer then reflects other iBGP peers' routes to it, as a reflector
    /// in a real network would.
    pub fn start_route_reflector(spec: &PeerSpec, dir: &Path) -> Result<FrrBgp> {
        FrrBgp::start_with(spec, dir, true)
    }

    fn start_with(spec: &PeerSpec, dir: &Path, route_reflector: bool) -> Result<FrrBgp> {
        if let Some(password) = &spec.md5_password
            && (password.is_empty() || password.chars().any(|c| c.is_whitespace()))
        {
            bail!("FRR takes an MD5 password as one word, not {password:?}");
        }
        let frr = Frr::start(&spec.netns, dir)?;
        let mut peer = FrrBgp {
            spec: spec.clone(),
            route_reflector,
            originated: Vec::new(),
            next_route_map: 1,
            bgpd: None,
            frr,
        };
        peer.write_config()?;
        peer.start_bgpd()?;
        Ok(peer)
    }

    /// zebra and staticd with their vtysh, for anything not wrapped here
    /// (static routes, `show` commands).
    pub fn frr(&self) -> &Frr {
        &self.frr
    }

    /// `vtysh -c COMMAND` against bgpd; its stdout.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        self.frr.vtysh(&["-d", "bgpd", "-c", command])
    }

    /// Makes the peer announce `dst` itself (a `network` statement, no RIB
    /// route needed), with a third-party `next_hop` if given (else itself)
    /// and `communities`. It survives restarts. As the router this is a
    /// FOREIGN route the driver must never touch; as the test speaker it
    /// plays the controller's announcements.
    pub fn originate(
        &mut self,
        dst: IpNet,
        next_hop: Option<IpAddr>,
        communities: &[(u16, u16)],
    ) -> Result<()> {
        if self.originated.iter().any(|route| route.dst == dst) {
            bail!("FRR in {} already originates {dst}", self.spec.netns);
        }
        let origination = Origination {
            dst,
            next_hop,
            communities: communities.to_vec(),
            route_map: format!("NR-ORIGINATE-{}", self.next_route_map),
        };
        self.next_route_map += 1;
        let mut lines = route_map_lines(&origination);
        let _ = write!(
            lines,
            "router bgp {}\n address-family {}\n  network {dst} route-map {}\n exit-address-family\nexit\n",
            self.spec.local_as,
            address_family(dst),
            origination.route_map
        );
        self.originated.push(origination);
        self.write_config()?;
        self.apply(&lines)
    }

    /// Stops announcing a route added by `originate`.
    pub fn withdraw_originated(&mut self, dst: IpNet) -> Result<()> {
        let index = self
            .originated
            .iter()
            .position(|route| route.dst == dst)
            .ok_or_else(|| anyhow!("FRR in {} does not originate {dst}", self.spec.netns))?;
        let origination = self.originated.remove(index);
        self.write_config()?;
        self.apply(&format!(
            "router bgp {}\n address-family {}\n  no network {dst} route-map {}\n exit-address-family\nexit\nno route-map {}\n",
            self.spec.local_as,
            address_family(dst),
            origination.route_map,
            origination.route_map
        ))
    }

    /// The prefixes the peer announces to the neighbor (its Adj-RIB-Out),
    /// so a test can see what the driver is offered and must ignore.
    pub fn advertised(&self) -> Result<Vec<IpNet>> {
        let text = self.vtysh(&format!(
            "show bgp ipv4 unicast neighbors {} advertised-routes json",
            self.spec.neighbor
        ))?;
        parse_frr_advertised(&text)
    }

    fn apply(&self, lines: &str) -> Result<()> {
        let output = self.frr.vtysh_batch(lines)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || stdout.contains('%') || !stderr.trim().is_empty() {
            bail!(
                "FRR in {} rejected\n{lines}({}): {stdout}{stderr}",
                self.spec.netns,
                output.status
            );
        }
        Ok(())
    }

    fn config_path(&self) -> PathBuf {
        self.frr.dir().join("bgpd.conf")
    }

    fn write_config(&self) -> Result<()> {
        let path = self.config_path();
        let text = frr_bgpd_config(&self.spec, self.route_reflector, &self.originated);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    fn start_bgpd(&mut self) -> Result<()> {
        let run = self.frr.run_dir();
        let mut args: Vec<OsString> = vec!["-f".into(), self.config_path().into()];
        args.extend(["-i".into(), run.join("bgpd.pid").into()]);
        args.extend(["-z".into(), run.join("zserv.api").into()]);
        args.extend(["--vty_socket".into(), run.clone().into()]);
        args.extend(["-P".into(), "0".into(), "--log".into()]);
        args.push(format!("file:{}", run.join("bgpd.log").display()).into());
        let stderr = self.frr.dir().join("bgpd.stderr");
        self.bgpd = Some(spawn_in_netns(&self.spec.netns, BGPD, &args, &stderr)?);
        let started = Instant::now();
        loop {
            if self.vtysh("show version").is_ok() {
                return Ok(());
            }
            if let Some(status) = exited(&mut self.bgpd)? {
                bail!(
                    "bgpd exited ({status}) in namespace {}; logs:
{}",
                    self.spec.netns,
                    self.logs()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "bgpd in {} did not answer vtysh within {START_TIMEOUT:?}; logs:\n{}",
                    self.spec.netns,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl BgpPeer for FrrBgp {
    fn name(&self) -> &'static str {
        "frr"
    }

    fn spec(&self) -> &PeerSpec {
        &self.spec
    }

    fn established(&self) -> Result<bool> {
        let text = self.vtysh(&format!("show bgp neighbors {} json", self.spec.neighbor))?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("FRR's neighbor JSON: {text}"))?;
        Ok(value[self.spec.neighbor.to_string()]["bgpState"].as_str() == Some("Established"))
    }

    fn received(&self) -> Result<Vec<Received>> {
        let text = self.vtysh("show bgp ipv4 unicast json detail")?;
        parse_frr_received(&text, self.spec.neighbor)
    }

    fn kernel_proto(&self) -> Option<&'static str> {
        Some("bgp")
    }

    /// Restarts bgpd alone: zebra keeps running, as on a router whose BGP
    /// process restarts.
    fn restart(&mut self) -> Result<()> {
        stop_child(self.bgpd.take(), "bgpd")
            .with_context(|| format!("stopping bgpd in {}", self.spec.netns))?;
        self.start_bgpd()
    }

    /// Kills bgpd alone; zebra then withdraws or keeps its kernel routes as
    /// FRR's graceful-restart settings say.
    fn kill(&mut self) -> Result<()> {
        kill_child(self.bgpd.take()).with_context(|| format!("killing bgpd in {}", self.spec.netns))
    }

    fn start_again(&mut self) -> Result<()> {
        if self.bgpd.is_some() {
            bail!("bgpd in {} still runs", self.spec.netns);
        }
        self.start_bgpd()
    }

    fn logs(&self) -> String {
        let run = self.frr.run_dir();
        let mut logs = self.frr.logs();
        for path in [
            run.join("bgpd.log"),
            self.frr.dir().join("bgpd.stderr"),
            self.config_path(),
        ] {
            logs.push_str(&file_for_logs(&path));
        }
        logs
    }
}

impl Drop for FrrBgp {
    fn drop(&mut self) {
        if let Err(err) = stop_child(self.bgpd.take(), "bgpd") {
            eprintln!("warning: {err:#}");
        }
    }
}

fn address_family(net: IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ipv4 unicast",
        IpNet::V6(_) => "ipv6 unicast",
    }
}

fn route_map_lines(origination: &Origination) -> String {
    let mut lines = format!("route-map {} permit 10\n", origination.route_map);
    match origination.next_hop {
        Some(IpAddr::V4(next_hop)) => {
            let _ = writeln!(lines, " set ip next-hop {next_hop}");
        }
        Some(IpAddr::V6(next_hop)) => {
            let _ = writeln!(lines, " set ipv6 next-hop global {next_hop}");
        }
        None => {}
    }
    if !origination.communities.is_empty() {
        let list: Vec<String> = origination
            .communities
            .iter()
            .map(|(asn, value)| format!("{asn}:{value}"))
            .collect();
        let _ = writeln!(lines, " set community {}", list.join(" "));
    }
    lines.push_str("exit\n");
    lines
}

fn frr_bgpd_config(spec: &PeerSpec, route_reflector: bool, originated: &[Origination]) -> String {
    let neighbor = spec.neighbor;
    let mut text = format!(
        "hostname {}\n\
         router bgp {}\n \
         bgp router-id {}\n \
         no bgp ebgp-requires-policy\n \
         no bgp network import-check\n",
        spec.netns, spec.local_as, spec.router_id
    );
    text.push_str(if spec.graceful_restart {
        " bgp graceful-restart\n"
    } else {
        " bgp graceful-restart-disable\n"
    });
    let _ = writeln!(text, " neighbor {neighbor} remote-as {}", spec.neighbor_as);
    let _ = writeln!(text, " neighbor {neighbor} update-source {}", spec.address);
    if spec.passive {
        let _ = writeln!(text, " neighbor {neighbor} passive");
    } else {
        // Retry every second instead of every two minutes while the other
        // end is down.
        let _ = writeln!(text, " neighbor {neighbor} timers connect 1");
    }
    if let Some(password) = &spec.md5_password {
        let _ = writeln!(text, " neighbor {neighbor} password {password}");
    }
    for family in ["ipv4 unicast", "ipv6 unicast"] {
        let routes: Vec<&Origination> = originated
            .iter()
            .filter(|route| address_family(route.dst) == family)
            .collect();
        if family == "ipv6 unicast" && routes.is_empty() {
            continue;
        }
        let _ = writeln!(text, " address-family {family}");
        let _ = writeln!(text, "  neighbor {neighbor} activate");
        if route_reflector {
            let _ = writeln!(text, "  neighbor {neighbor} route-reflector-client");
        }
        for route in routes {
            let _ = writeln!(
                text,
                "  network {} route-map {}",
                route.dst, route.route_map
            );
        }
        text.push_str(" exit-address-family\n");
    }
    text.push_str("exit\n");
    for route in originated {
        text.push_str(&route_map_lines(route));
    }
    text
}

fn parse_frr_received(text: &str, neighbor: IpAddr) -> Result<Vec<Received>> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("FRR's BGP table JSON: {text}"))?;
    let neighbor = neighbor.to_string();
    let mut received = Vec::new();
    let Some(routes) = value["routes"].as_object() else {
        return Ok(received);
    };
    for (prefix, entries) in routes {
        let dst: IpNet = prefix
            .parse()
            .with_context(|| format!("FRR prefix {prefix}"))?;
        let entries = entries
            .as_array()
            .ok_or_else(|| anyhow!("FRR's entry for {prefix} is not an array"))?;
        // The first element is a header without "peer".
        for path in entries
            .iter()
            .filter(|path| path["peer"]["peerId"].as_str() == Some(neighbor.as_str()))
        {
            let next_hop = path["nexthops"]
                .as_array()
                .and_then(|hops| hops.iter().find_map(|hop| hop["ip"].as_str()))
                .ok_or_else(|| anyhow!("FRR path to {prefix} without a next hop: {path}"))?;
            let next_hop = next_hop
                .parse()
                .with_context(|| format!("FRR next hop {next_hop}"))?;
            let communities = match path["community"]["list"].as_array() {
                Some(list) => list
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .ok_or_else(|| anyhow!("FRR community {item}"))
                            .and_then(parse_community)
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => Vec::new(),
            };
            received.push(Received {
                dst,
                next_hop,
                communities,
                stale: path["stale"].as_bool() == Some(true),
            });
        }
    }
    received.sort();
    Ok(received)
}

fn parse_frr_advertised(text: &str) -> Result<Vec<IpNet>> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("FRR's advertised JSON: {text}"))?;
    let mut prefixes = match value["advertisedRoutes"].as_object() {
        Some(routes) => routes
            .keys()
            .map(|prefix| {
                prefix
                    .parse()
                    .with_context(|| format!("FRR prefix {prefix}"))
            })
            .collect::<Result<Vec<IpNet>>>()?,
        None => Vec::new(),
    };
    prefixes.sort();
    Ok(prefixes)
}

/// "64512:1111", or the well-known names FRR prints instead of numbers.
fn parse_community(text: &str) -> Result<(u16, u16)> {
    let well_known = match text {
        "graceful-shutdown" => Some((65535, 0)),
        "accept-own" => Some((65535, 1)),
        "llgr-stale" => Some((65535, 6)),
        "no-llgr" => Some((65535, 7)),
        "blackhole" => Some((65535, 666)),
        "no-export" => Some((65535, 65281)),
        "no-advertise" => Some((65535, 65282)),
        "local-AS" => Some((65535, 65283)),
        "no-peer" => Some((65535, 65284)),
        _ => None,
    };
    if let Some(community) = well_known {
        return Ok(community);
    }
    let (asn, value) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("community {text:?} is not AS:VALUE"))?;
    Ok((
        asn.parse().with_context(|| format!("community {text:?}"))?,
        value
            .parse()
            .with_context(|| format!("community {text:?}"))?,
    ))
}

// ---------------------------------------------------------------- BIRD

/// BIRD 2 with one BGP protocol and a kernel protocol exporting every
/// route, so learned routes reach the kernel as `proto bird`.
#[derive(Debug)]
pub struct Bird {
    spec: PeerSpec,
    dir: PathBuf,
    bird: Option<Child>,
}

impl Bird {
    /// Starts bird in `spec.netns` with its config, control socket and log
    /// under `dir` (created if missing).
    pub fn start(spec: &PeerSpec, dir: &Path) -> Result<Bird> {
        let dir = std::path::absolute(dir)
            .with_context(|| format!("BIRD directory {}", dir.display()))?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("bird.conf");
        std::fs::write(&config, bird_config(spec, &dir.join("bird.log"))?)
            .with_context(|| format!("writing {}", config.display()))?;
        let mut bird = Bird {
            spec: spec.clone(),
            dir,
            bird: None,
        };
        bird.start_bird()?;
        Ok(bird)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// `birdc -s SOCKET args…` (the control socket is a file: no namespace
    /// needed); its stdout, or an error when BIRD did not take the command.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(BIRDC)
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("birdc {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        // birdc exits 0 on a syntax error or a refused socket.
        if !output.status.success()
            || stdout.contains("Unable to connect")
            || stdout.contains("syntax error")
        {
            bail!(
                "birdc {} in {} failed ({}): {stdout}{}",
                args.join(" "),
                self.spec.netns,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    fn start_bird(&mut self) -> Result<()> {
        // A socket left by a killed bird would make birdc answer "refused"
        // until the new one replaces it.
        let _ = std::fs::remove_file(self.socket());
        let args: Vec<OsString> = vec![
            "-f".into(),
            "-c".into(),
            self.dir.join("bird.conf").into(),
            "-s".into(),
            self.socket().into(),
            "-P".into(),
            self.dir.join("bird.pid").into(),
        ];
        let stderr = self.dir.join("bird.stderr");
        self.bird = Some(spawn_in_netns(&self.spec.netns, BIRD, &args, &stderr)?);
        let started = Instant::now();
        loop {
            if self.birdc(&["show", "status"]).is_ok() {
                return Ok(());
            }
            if let Some(status) = exited(&mut self.bird)? {
                bail!(
                    "bird exited ({status}) in namespace {}; logs:
{}",
                    self.spec.netns,
                    self.logs()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "bird in {} did not answer birdc within {START_TIMEOUT:?}; logs:\n{}",
                    self.spec.netns,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl BgpPeer for Bird {
    fn name(&self) -> &'static str {
        "bird"
    }

    fn spec(&self) -> &PeerSpec {
        &self.spec
    }

    fn established(&self) -> Result<bool> {
        let text = self.birdc(&["show", "protocols", "all", BIRD_PROTOCOL])?;
        Ok(text.lines().any(|line| {
            line.trim()
                .strip_prefix("BGP state:")
                .is_some_and(|state| state.trim() == "Established")
        }))
    }

    fn received(&self) -> Result<Vec<Received>> {
        let status = self.birdc(&["show", "protocols", "all", BIRD_PROTOCOL])?;
        let stale = status.contains("Neighbor graceful restart active");
        let routes = self.birdc(&["show", "route", "protocol", BIRD_PROTOCOL, "all"])?;
        parse_bird_routes(&routes, stale)
    }

    fn kernel_proto(&self) -> Option<&'static str> {
        Some("bird")
    }

    /// BIRD withdraws its kernel routes on SIGTERM and sends a Cease.
    fn restart(&mut self) -> Result<()> {
        stop_child(self.bird.take(), "bird")
            .with_context(|| format!("stopping bird in {}", self.spec.netns))?;
        self.start_bird()
    }

    /// Leaves its kernel routes behind; the next bird removes them.
    fn kill(&mut self) -> Result<()> {
        kill_child(self.bird.take()).with_context(|| format!("killing bird in {}", self.spec.netns))
    }

    fn start_again(&mut self) -> Result<()> {
        if self.bird.is_some() {
            bail!("bird in {} still runs", self.spec.netns);
        }
        self.start_bird()
    }

    fn logs(&self) -> String {
        ["bird.log", "bird.stderr", "bird.conf"]
            .into_iter()
            .map(|name| file_for_logs(&self.dir.join(name)))
            .collect()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Err(err) = stop_child(self.bird.take(), "bird") {
            eprintln!("warning: {err:#}");
        }
    }
}

/// `text` as a BIRD string literal: BIRD's lexer knows no escapes, so a
/// double quote or a newline cannot be in one.
fn bird_string(text: &str) -> Result<String> {
    if text.contains(['"', '\n']) {
        bail!("BIRD cannot take {text:?} as a string");
    }
    Ok(format!("\"{text}\""))
}

fn bird_config(spec: &PeerSpec, log: &Path) -> Result<String> {
    let channel = match spec.neighbor {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    };
    let mut bgp = format!(
        "  local {} as {};\n  neighbor {} as {};\n",
        spec.address, spec.local_as, spec.neighbor, spec.neighbor_as
    );
    // Single-hop even for iBGP, which `gateway direct` requires.
    bgp.push_str("  direct;\n");
    let _ = writeln!(
        bgp,
        "  passive {};",
        if spec.passive { "on" } else { "off" }
    );
    if let Some(password) = &spec.md5_password {
        let _ = writeln!(bgp, "  password {};", bird_string(password)?);
    }
    let _ = writeln!(
        bgp,
        "  graceful restart {};",
        if spec.graceful_restart {
            "aware"
        } else {
            "off"
        }
    );
    // Reconnect and accept within seconds after a session dropped, not the
    // defaults of minutes.
    bgp.push_str("  connect delay time 1;\n  connect retry time 1;\n  error wait time 1, 5;\n");
    let _ = writeln!(
        bgp,
        "  {channel} {{ import all; export none; gateway direct; }};"
    );
    Ok(format!(
        "log {} all;\n\
         router id {};\n\
         protocol device {{ scan time 5; }}\n\
         protocol kernel {{ {channel} {{ import none; export all; }}; }}\n\
         protocol bgp {BIRD_PROTOCOL} {{\n{bgp}}}\n",
        bird_string(&log.to_string_lossy())?,
        spec.router_id
    ))
}

fn parse_bird_routes(text: &str, stale: bool) -> Result<Vec<Received>> {
    struct Partial {
        dst: IpNet,
        next_hop: Option<IpAddr>,
        communities: Vec<(u16, u16)>,
    }
    fn finish(partial: Option<Partial>, stale: bool, into: &mut Vec<Received>) -> Result<()> {
        if let Some(route) = partial {
            let next_hop = route
                .next_hop
                .ok_or_else(|| anyhow!("BIRD route to {} without BGP.next_hop", route.dst))?;
            into.push(Received {
                dst: route.dst,
                next_hop,
                communities: route.communities,
                stale,
            });
        }
        Ok(())
    }
    let mut received = Vec::new();
    let mut current: Option<Partial> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        let first = trimmed.split_whitespace().next().unwrap_or("");
        if !line.starts_with(char::is_whitespace) {
            // "11.11.1.0/24   unicast [controller … from …] * (100) [i]",
            // or a header ("BIRD … ready.", "Table master4:").
            if let Ok(dst) = first.parse::<IpNet>() {
                finish(current.take(), stale, &mut received)?;
                current = Some(Partial {
                    dst,
                    next_hop: None,
                    communities: Vec::new(),
                });
            }
        } else if ["unicast", "blackhole", "unreachable", "prohibit"].contains(&first)
            && trimmed.contains('[')
        {
            // Another path to the same prefix.
            let dst = current
                .as_ref()
                .map(|route| route.dst)
                .ok_or_else(|| anyhow!("BIRD path without a prefix: {line}"))?;
            finish(current.take(), stale, &mut received)?;
            current = Some(Partial {
                dst,
                next_hop: None,
                communities: Vec::new(),
            });
        } else if let Some(route) = current.as_mut() {
            if let Some(value) = trimmed.strip_prefix("BGP.next_hop:") {
                // "192.168.2.3", or a global and a link-local IPv6 address.
                let next_hop = value.split_whitespace().next().unwrap_or("");
                route.next_hop = Some(
                    next_hop
                        .parse()
                        .with_context(|| format!("BIRD next hop {next_hop:?}"))?,
                );
            } else if let Some(value) = trimmed.strip_prefix("BGP.community:") {
                // "(64512,1111) (65000,7)"
                for pair in value.split_whitespace() {
                    let inner = pair
                        .strip_prefix('(')
                        .and_then(|pair| pair.strip_suffix(')'))
                        .ok_or_else(|| anyhow!("BIRD community {pair:?}"))?;
                    route
                        .communities
                        .push(parse_community(&inner.replace(',', ":"))?);
                }
            }
        }
    }
    finish(current, stale, &mut received)?;
    received.sort();
    Ok(received)
}

// ---------------------------------------------------------------- GoBGP

/// gobgpd with a JSON config file; its API on the namespace's loopback.
/// It installs no kernel routes (no zebra): tests check `received()`.
#[derive(Debug)]
pub struct Gobgp {
    spec: PeerSpec,
    dir: PathBuf,
    gobgpd: Option<Child>,
}

impl Gobgp {
    /// Starts gobgpd in `spec.netns` with its config and log under `dir`.
    pub fn start(spec: &PeerSpec, dir: &Path) -> Result<Gobgp> {
        let dir = std::path::absolute(dir)
            .with_context(|| format!("GoBGP directory {}", dir.display()))?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("gobgpd.json");
        let text = serde_json::to_string_pretty(&gobgp_config(spec))?;
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let mut gobgp = Gobgp {
            spec: spec.clone(),
            dir,
            gobgpd: None,
        };
        gobgp.start_gobgpd()?;
        Ok(gobgp)
    }

    /// `gobgp -u 127.0.0.1 -p PORT args…` inside the namespace; its stdout.
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.spec.netns, GOBGP])
            .args(["-u", "127.0.0.1", "-p", GOBGP_API_PORT])
            .args(args);
        let output = run_with_stdin(command, None)
            .with_context(|| format!("gobgp {} in {}", args.join(" "), self.spec.netns))?;
        output_text(
            &output,
            &format!("gobgp {} in {}", args.join(" "), self.spec.netns),
        )
    }

    fn start_gobgpd(&mut self) -> Result<()> {
        let args: Vec<OsString> = vec![
            "-f".into(),
            self.dir.join("gobgpd.json").into(),
            "-t".into(),
            "json".into(),
            "--api-hosts".into(),
            format!("127.0.0.1:{GOBGP_API_PORT}").into(),
            "--pprof-disable".into(),
            "-p".into(),
            "-l".into(),
            "info".into(),
        ];
        let log = self.dir.join("gobgpd.log");
        self.gobgpd = Some(spawn_in_netns(&self.spec.netns, GOBGPD, &args, &log)?);
        let started = Instant::now();
        loop {
            if self.gobgp(&["global", "-j"]).is_ok() {
                return Ok(());
            }
            if let Some(status) = exited(&mut self.gobgpd)? {
                bail!(
                    "gobgpd exited ({status}) in namespace {}; logs:
{}",
                    self.spec.netns,
                    self.logs()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "gobgpd in {} did not answer gobgp within {START_TIMEOUT:?}; logs:\n{}",
                    self.spec.netns,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl BgpPeer for Gobgp {
    fn name(&self) -> &'static str {
        "gobgp"
    }

    fn spec(&self) -> &PeerSpec {
        &self.spec
    }

    fn established(&self) -> Result<bool> {
        let text = self.gobgp(&["neighbor", &self.spec.neighbor.to_string(), "-j"])?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("GoBGP's neighbor JSON: {text}"))?;
        let state = &value["state"]["session_state"];
        Ok(state.as_u64() == Some(6)
            || state
                .as_str()
                .is_some_and(|state| state.eq_ignore_ascii_case("established")))
    }

    fn received(&self) -> Result<Vec<Received>> {
        let family = match self.spec.neighbor {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        };
        let text = self.gobgp(&["global", "rib", "-a", family, "-j"])?;
        parse_gobgp_rib(&text, self.spec.neighbor)
    }

    fn kernel_proto(&self) -> Option<&'static str> {
        None
    }

    fn restart(&mut self) -> Result<()> {
        stop_child(self.gobgpd.take(), "gobgpd")
            .with_context(|| format!("stopping gobgpd in {}", self.spec.netns))?;
        self.start_gobgpd()
    }

    fn kill(&mut self) -> Result<()> {
        kill_child(self.gobgpd.take())
            .with_context(|| format!("killing gobgpd in {}", self.spec.netns))
    }

    fn start_again(&mut self) -> Result<()> {
        if self.gobgpd.is_some() {
            bail!("gobgpd in {} still runs", self.spec.netns);
        }
        self.start_gobgpd()
    }

    fn logs(&self) -> String {
        ["gobgpd.log", "gobgpd.json"]
            .into_iter()
            .map(|name| file_for_logs(&self.dir.join(name)))
            .collect()
    }
}

impl Drop for Gobgp {
    fn drop(&mut self) {
        if let Err(err) = stop_child(self.gobgpd.take(), "gobgpd") {
            eprintln!("warning: {err:#}");
        }
    }
}

fn gobgp_config(spec: &PeerSpec) -> Value {
    let family = match spec.neighbor {
        IpAddr::V4(_) => "ipv4-unicast",
        IpAddr::V6(_) => "ipv6-unicast",
    };
    let mut neighbor = json!({
        "config": {
            "neighbor-address": spec.neighbor.to_string(),
            "peer-as": spec.neighbor_as,
        },
        "transport": {
            "config": {
                "passive-mode": spec.passive,
                "local-address": spec.address.to_string(),
            }
        },
        // Reconnect within a second when active, not after two minutes.
        "timers": { "config": { "connect-retry": 1 } },
        "afi-safis": [{
            "config": { "afi-safi-name": family },
            "mp-graceful-restart": { "config": { "enabled": spec.graceful_restart } },
        }],
    });
    if let Some(password) = &spec.md5_password {
        neighbor["config"]["auth-password"] = json!(password);
    }
    if spec.graceful_restart {
        neighbor["graceful-restart"] = json!({
            "config": { "enabled": true, "helper-only": true, "restart-time": 120 }
        });
    }
    json!({
        "global": {
            "config": {
                "as": spec.local_as,
                "router-id": spec.router_id.to_string(),
                "port": 179,
                // Listen on the peer's address only.
                "local-address-list": [spec.address.to_string()],
            }
        },
        "neighbors": [neighbor],
    })
}

fn parse_gobgp_rib(text: &str, neighbor: IpAddr) -> Result<Vec<Received>> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("GoBGP's RIB JSON: {text}"))?;
    let neighbor = neighbor.to_string();
    let mut received = Vec::new();
    let Some(routes) = value.as_object() else {
        return Ok(received);
    };
    for (prefix, paths) in routes {
        let dst: IpNet = prefix
            .parse()
            .with_context(|| format!("GoBGP prefix {prefix}"))?;
        let paths = paths
            .as_array()
            .ok_or_else(|| anyhow!("GoBGP's entry for {prefix} is not an array"))?;
        for path in paths
            .iter()
            .filter(|path| path["neighbor-ip"].as_str() == Some(neighbor.as_str()))
        {
            let attrs = path["attrs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let mut next_hop = None;
            let mut communities = Vec::new();
            for attr in attrs {
                match attr["type"].as_u64() {
                    // NEXT_HOP, MP_REACH_NLRI
                    Some(3 | 14) => {
                        if let Some(hop) = attr["nexthop"].as_str() {
                            next_hop = Some(
                                hop.parse::<IpAddr>()
                                    .with_context(|| format!("GoBGP next hop {hop}"))?,
                            );
                        }
                    }
                    // COMMUNITIES, each as one u32 (AS << 16 | value).
                    Some(8) => {
                        for community in attr["communities"].as_array().unwrap_or(&Vec::new()) {
                            let community = community
                                .as_u64()
                                .and_then(|c| u32::try_from(c).ok())
                                .ok_or_else(|| anyhow!("GoBGP community {community}"))?;
                            let [a, b, c, d] = community.to_be_bytes();
                            communities
                                .push((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])));
                        }
                    }
                    _ => {}
                }
            }
            received.push(Received {
                dst,
                next_hop: next_hop
                    .ok_or_else(|| anyhow!("GoBGP path to {prefix} without a next hop: {path}"))?,
                communities,
                stale: path["stale"].as_bool() == Some(true),
            });
        }
    }
    received.sort();
    Ok(received)
}

// ---------------------------------------------------------------- processes

/// Starts `binary args…` in the foreground inside `netns`, its stdout and
/// stderr appended to `log`.
fn spawn_in_netns(netns: &str, binary: &str, args: &[OsString], log: &Path) -> Result<Child> {
    // `ip netns exec` of a missing binary fails only in the child, with a
    // message that names no package: say what to install instead.
    if !Path::new(binary).exists() {
        let package = match binary {
            BIRD => "bird2",
            GOBGPD => "gobgpd",
            _ => "frr",
        };
        bail!(
            "{binary} is missing: install the Debian package {package} (`sudo bash scripts/setup.sh` installs every test dependency)"
        );
    }
    let output = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    Command::new("ip")
        .args(["netns", "exec", netns, binary])
        .args(args)
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .spawn()
        .with_context(|| format!("starting {binary} in namespace {netns}"))
}

/// How the daemon exited, if it did (it is reaped and forgotten then).
fn exited(child: &mut Option<Child>) -> Result<Option<ExitStatus>> {
    let status = match child.as_mut() {
        Some(running) => running.try_wait()?,
        None => None,
    };
    if status.is_some() {
        *child = None;
    }
    Ok(status)
}

/// SIGKILL and reap.
fn kill_child(child: Option<Child>) -> Result<()> {
    let Some(mut child) = child else {
        return Ok(());
    };
    // Fails only if it already exited; wait() reaps it either way.
    let _ = child.kill();
    child.wait()?;
    Ok(())
}

fn output_text(output: &Output, what: &str) -> Result<String> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn file_for_logs(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    format!("== {}\n{text}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, next_hop: &str, communities: &[(u16, u16)], stale: bool) -> Received {
        Received {
            dst: dst.parse().expect("prefix"),
            next_hop: next_hop.parse().expect("address"),
            communities: communities.to_vec(),
            stale,
        }
    }

    #[test]
    fn frr_detail_json_keeps_only_the_neighbors_paths() {
        let text = r#"{"routes": {
 "11.11.1.0/24": [{"prefix":"11.11.1.0/24","version":3},{"stale":true,"community":{"string":"64512:1111 no-export","list":["64512:1111","no-export"]},"nexthops":[{"ip":"192.168.2.3","afi":"ipv4","used":true}],"peer":{"peerId":"192.168.2.1","type":"internal"}}],
 "11.11.200.0/24": [{"prefix":"11.11.200.0/24"},{"nexthops":[{"ip":"0.0.0.0"}],"peer":{"peerId":"0.0.0.0"}}]
}}"#;
        let received =
            parse_frr_received(text, "192.168.2.1".parse().expect("address")).expect("parses");
        assert_eq!(
            received,
            [route(
                "11.11.1.0/24",
                "192.168.2.3",
                &[(64512, 1111), (65535, 65281)],
                true
            )]
        );
    }

    #[test]
    fn bird_route_text_gives_next_hops_and_communities() {
        let text = "BIRD 2.0.12 ready.\nTable master4:\n\
11.11.1.0/24         unicast [controller 04:25:25.059 from 192.168.2.1] * (100) [i]\n\
\tvia 192.168.2.3 on v2\n\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.as_path: \n\
\tBGP.next_hop: 192.168.2.3\n\tBGP.local_pref: 100\n\tBGP.community: (64512,1111) (65000,7)\n\
11.11.3.0/24         unicast [controller 04:25:40.391 from 192.168.2.1] * (100) [i]\n\
\tvia 192.168.3.3 on v3\n\tBGP.next_hop: 192.168.3.3\n";
        assert_eq!(
            parse_bird_routes(text, false).expect("parses"),
            [
                route(
                    "11.11.1.0/24",
                    "192.168.2.3",
                    &[(64512, 1111), (65000, 7)],
                    false
                ),
                route("11.11.3.0/24", "192.168.3.3", &[], false),
            ]
        );
    }

    #[test]
    fn gobgp_rib_json_splits_communities_into_as_and_value() {
        let text = r#"{"11.11.2.0/24":[{"nlri":{"prefix":"11.11.2.0/24"},"attrs":[{"type":1,"value":0},{"type":3,"nexthop":"192.168.2.4"},{"type":8,"communities":[4227859543,4259840007]}],"stale":true,"neighbor-ip":"192.168.2.1"}]}"#;
        assert_eq!(
            parse_gobgp_rib(text, "192.168.2.1".parse().expect("address")).expect("parses"),
            [route(
                "11.11.2.0/24",
                "192.168.2.4",
                &[(64512, 1111), (65000, 7)],
                true
            )]
        );
        assert_eq!(
            parse_gobgp_rib("{}", "192.168.2.1".parse().expect("address")).expect("parses"),
            []
        );
    }

    #[test]
    fn kernel_route_json_gives_destination_and_gateway() {
        let text = r#"[{"dst":"11.11.1.0/24","nhid":14,"gateway":"192.168.2.3","dev":"v2","protocol":"bgp","metric":20,"flags":[]},{"dst":"10.0.0.1","dev":"v2","flags":[]}]"#;
        let routes = parse_kernel_routes(text).expect("parses");
        assert_eq!(routes.len(), 2);
        assert_eq!(
            routes[0].dst,
            "10.0.0.1/32".parse::<IpNet>().expect("prefix")
        );
        assert_eq!(
            routes[1].gateway,
            Some("192.168.2.3".parse().expect("address"))
        );
        assert_eq!(parse_kernel_routes("").expect("parses"), []);
    }
}
