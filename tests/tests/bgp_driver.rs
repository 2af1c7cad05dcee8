//! The BGP driver against real BGP routers (FRR's bgpd, BIRD 2, GoBGP), each
//! in a network namespace of its own, the driver connecting from a second
//! namespace (its `netns` option) over a veth pair:
//!
//! ```text
//!   ctl: 192.168.2.1 ── veth ── 192.168.2.2 :rtr (the BGP router)
//!                                192.168.3.1/24: the nodes' network
//! ```
//!
//! Node subnets are announced via node addresses on 192.168.3.0/24, a third
//! party to the session: FRR and BIRD must resolve them over the connected
//! network and install the routes in their kernel. GoBGP installs none; its
//! RIB is read instead.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute_router_drivers::bgp::{BgpDriver, BgpRouter};
use nativeroute_router_drivers::{Change, DriverError, Ownership, Route, RouterDriver};
use nativeroute_tests::bgp_peers::{
    BgpPeer, Bird, FrrBgp, Gobgp, PeerSpec, kernel_routes, wait_established,
};
use nativeroute_tests::netns::{Netns, run};
use nativeroute_tests::route_monitor::RouteMonitor;

const AS: u32 = 64512;
const CONTROLLER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);
/// 64512:1111, nativeroute's default community.
const OURS: (u16, u16) = (64512, 1111);
/// The kernel's protocol numbers of the routes FRR's zebra and BIRD install.
const RTPROT_BGP: u8 = 186;
const RTPROT_BIRD: u8 = 12;

struct Lab {
    controller: Netns,
    router: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let controller = Netns::new();
        let router = Netns::new();
        run(
            "ip",
            &[
                "-n",
                controller.name(),
                "link",
                "add",
                "ctl0",
                "type",
                "veth",
                "peer",
                "name",
                "rtr0",
                "netns",
                router.name(),
            ],
        );
        controller.ip(&format!("address add {CONTROLLER}/24 dev ctl0"));
        controller.ip("link set ctl0 up");
        router.ip(&format!("address add {ROUTER}/24 dev rtr0"));
        router.ip("link set rtr0 up");
        router.add_connected_network("nodes", "192.168.3.1/24");
        let dir = tempfile::tempdir().expect("a directory for the router");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("world-searchable: FRR runs as frr");
        Lab {
            controller,
            router,
            dir,
        }
    }

    fn spec(&self) -> PeerSpec {
        PeerSpec::new(self.router.name(), ROUTER, AS, IpAddr::V4(CONTROLLER), AS)
    }

    fn peer_dir(&self) -> &Path {
        self.dir.path()
    }

    fn router_config(&self) -> BgpRouter {
        BgpRouter {
            name: "core-bgp".to_owned(),
            address: (ROUTER, 179).into(),
            local_as: AS,
            peer_as: AS,
            router_id: None,
            hold_time: Duration::from_secs(9),
            graceful_restart: Duration::from_secs(120),
            password: None,
            netns: Some(self.controller.name().to_owned()),
            connect_timeout: Duration::from_secs(3),
            ownership: Ownership {
                pool: vec!["11.11.0.0/16".parse().expect("pool")],
                netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
                route_tag: Ownership::DEFAULT_ROUTE_TAG,
                bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
            },
        }
    }

    /// Connects, retrying while the router is still starting (it may
    /// refuse or reset the first tries).
    async fn connect(&self, router: BgpRouter) -> BgpDriver {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match BgpDriver::connect(router.clone()).await {
                Ok(driver) => return driver,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("not yet: {err}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => panic!("no session within 30 s: {err}"),
            }
        }
    }
}

fn route(dst: &str, via: &str) -> Route {
    Route::new(
        dst.parse().expect("a prefix"),
        via.parse().expect("an address"),
    )
}

/// Polls `peer` until what it received from us (ours only, stale or not)
/// is exactly `expected`.
fn wait_received(peer: &dyn BgpPeer, expected: &[Route]) {
    let want: BTreeSet<(IpNet, IpAddr)> = expected.iter().map(|r| (r.dst, r.via)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = peer.received().expect("the peer's routes");
        let got: BTreeSet<(IpNet, IpAddr)> = received
            .iter()
            .filter(|r| r.communities.contains(&OURS))
            .map(|r| (r.dst, r.next_hop))
            .collect();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} received {received:?}, expected {want:?}; logs:\n{}",
            peer.name(),
            peer.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls the peer's kernel until its routes of the peer's protocol inside
/// the pool are exactly `expected` (when the peer installs routes at all).
fn wait_kernel(peer: &dyn BgpPeer, expected: &[Route]) {
    let Some(proto) = peer.kernel_proto() else {
        return;
    };
    let want: BTreeSet<(IpNet, Option<IpAddr>)> =
        expected.iter().map(|r| (r.dst, Some(r.via))).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let routes = kernel_routes(&peer.spec().netns, proto).expect("kernel routes");
        let got: BTreeSet<(IpNet, Option<IpAddr>)> = routes
            .iter()
            .filter(|r| r.dst.to_string().starts_with("11.11."))
            .map(|r| (r.dst, r.gateway))
            .collect();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}'s kernel holds {routes:?}, expected {want:?}; logs:\n{}",
            peer.name(),
            peer.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kernel_protocol(peer: &dyn BgpPeer) -> Option<u8> {
    match peer.kernel_proto() {
        Some("bgp") => Some(RTPROT_BGP),
        Some("bird") => Some(RTPROT_BIRD),
        _ => None,
    }
}

async fn announce(driver: &mut BgpDriver, routes: &[Route]) {
    let changes: Vec<Change> = routes.iter().copied().map(Change::Add).collect();
    let outcomes = driver.apply(&changes).await.expect("the batch went out");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
}

/// Routes reach the router with the node as next hop and our community,
/// reach its kernel, move with a replace and go with a removal; the list
/// says what was announced.
async fn announce_replace_withdraw(lab: &Lab, peer: &mut dyn BgpPeer) {
    let mut driver = lab.connect(lab.router_config()).await;
    wait_established(peer, Duration::from_secs(20)).expect("established");
    let a = route("11.11.1.0/24", "192.168.3.3");
    let b = route("11.11.2.0/24", "192.168.3.4");
    announce(&mut driver, &[a, b]).await;
    wait_received(peer, &[a, b]);
    wait_kernel(peer, &[a, b]);
    let received = peer.received().expect("routes");
    assert!(
        received
            .iter()
            .all(|r| !r.stale && r.communities == vec![OURS]),
        "{received:?}"
    );

    let moved = route("11.11.2.0/24", "192.168.3.5");
    let outcomes = driver
        .apply(&[
            Change::Replace {
                route: moved,
                old_via: b.via,
            },
            Change::Remove(a),
        ])
        .await
        .expect("the batch went out");
    assert_eq!(outcomes, vec![Ok(()), Ok(())]);
    wait_received(peer, &[moved]);
    wait_kernel(peer, &[moved]);
    assert_eq!(driver.list().await.expect("list").owned, vec![moved]);
}

/// A router that restarts takes the session down: the driver says so
/// (its wake fires, the list fails), and a new session announces again.
async fn router_restart(lab: &Lab, peer: &mut dyn BgpPeer) {
    let mut driver = lab.connect(lab.router_config()).await;
    let a = route("11.11.1.0/24", "192.168.3.3");
    announce(&mut driver, &[a]).await;
    wait_received(peer, &[a]);
    let wake = driver
        .changes_on_its_own()
        .expect("the bgp driver wakes its worker");

    peer.restart().expect("restart the router");
    tokio::time::timeout(Duration::from_secs(20), wake.notified())
        .await
        .expect("the driver noticed the session going down");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match driver.list().await {
            Err(DriverError::Session { message, .. }) => {
                eprintln!("down: {message}");
                break;
            }
            Err(other) => panic!("expected a session error, got {other}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "the list still succeeds");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(driver);
    // The next session starts with what the last one announced.
    let mut driver = lab.connect(lab.router_config()).await;
    assert_eq!(driver.list().await.expect("list").owned, vec![a]);
    wait_received(peer, &[a]);
    wait_kernel(peer, &[a]);
    driver.tidy().await.expect("End-of-RIB");
    wait_received(peer, &[a]);
}

/// The session dropped without a NOTIFICATION (a controller killed, a
/// worker giving a session up): the router keeps our routes under graceful
/// restart, in its kernel too. The next session of this process starts with
/// what the last one announced, so the worker sees them listed and
/// withdraws only what it no longer wants, through its removal guard; the
/// End-of-RIB then takes nothing else. A route monitor in the router
/// proves the kept route never left.
async fn session_dropped_withdraws_nothing(lab: &Lab, peer: &mut dyn BgpPeer) {
    let kept = route("11.11.1.0/24", "192.168.3.3");
    let gone = route("11.11.2.0/24", "192.168.3.4");
    let monitor = kernel_protocol(peer).map(|protocol| {
        RouteMonitor::start(&peer.spec().netns, protocol).expect("a route monitor")
    });
    let mut driver = lab.connect(lab.router_config()).await;
    announce(&mut driver, &[kept, gone]).await;
    wait_received(peer, &[kept, gone]);
    wait_kernel(peer, &[kept, gone]);

    drop(driver);
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_received(peer, &[kept, gone]);
    wait_kernel(peer, &[kept, gone]);

    let mut driver = lab.connect(lab.router_config()).await;
    let mut listed = driver.list().await.expect("list").owned;
    listed.sort();
    assert_eq!(listed, vec![kept, gone]);
    let outcomes = driver
        .apply(&[Change::Remove(gone)])
        .await
        .expect("the batch went out");
    assert_eq!(outcomes, vec![Ok(())]);
    wait_received(peer, &[kept]);
    wait_kernel(peer, &[kept]);
    if let Some(monitor) = monitor {
        let withdrawn: Vec<_> = monitor
            .withdrawals()
            .into_iter()
            .map(|(_, dst)| IpNet::V4(dst))
            .collect();
        assert!(
            !withdrawn.contains(&kept.dst) && withdrawn.contains(&gone.dst),
            "withdrawn from {}'s kernel: {withdrawn:?}",
            peer.name()
        );
        assert_eq!(monitor.overruns(), 0);
    }
}

/// A peer AS other than the router's is refused by name, before any route
/// is sent.
async fn wrong_as_is_named(lab: &Lab, peer: &mut dyn BgpPeer) {
    wait_until_listening(lab).await;
    let mut router = lab.router_config();
    router.peer_as = 65000;
    let err = match BgpDriver::connect(router).await {
        Ok(_) => panic!("a session with the wrong AS"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("the router's AS is 64512, but peerAs is 65000"),
        "{}: {err}",
        peer.name()
    );
}

/// Our local AS not the one the router expects: the router refuses our
/// OPEN with a NOTIFICATION, which the error names.
async fn refused_open_is_named(lab: &Lab, peer: &mut dyn BgpPeer) {
    wait_until_listening(lab).await;
    let mut router = lab.router_config();
    router.local_as = 65001;
    let err = match BgpDriver::connect(router).await {
        Ok(_) => panic!("a session with the wrong local AS"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("the router refused it: OPEN refused: bad peer AS"),
        "{}: {err}",
        peer.name()
    );
}

async fn wait_until_listening(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run(
        "ip",
        &[
            "netns",
            "exec",
            lab.router.name(),
            "ss",
            "-Hltn",
            "sport = :179",
        ],
    )
    .contains("179")
    {
        assert!(Instant::now() < deadline, "nothing listens on port 179");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

macro_rules! suite {
    ($peer:ident, $start:expr) => {
        mod $peer {
            use super::*;

            fn start(lab: &Lab) -> Box<dyn BgpPeer> {
                let start: fn(&PeerSpec, &Path) -> anyhow::Result<Box<dyn BgpPeer>> = $start;
                start(&lab.spec(), lab.peer_dir()).expect(concat!("start ", stringify!($peer)))
            }

            #[tokio::test]
            async fn routes_reach_the_router_with_the_node_as_next_hop_move_and_go() {
                let lab = Lab::new();
                let mut peer = start(&lab);
                announce_replace_withdraw(&lab, peer.as_mut()).await;
            }

            #[tokio::test]
            async fn a_router_restart_is_seen_and_the_next_session_announces_again() {
                let lab = Lab::new();
                let mut peer = start(&lab);
                router_restart(&lab, peer.as_mut()).await;
            }

            #[tokio::test]
            async fn a_dropped_session_withdraws_nothing_under_graceful_restart() {
                let lab = Lab::new();
                let mut peer = start(&lab);
                session_dropped_withdraws_nothing(&lab, peer.as_mut()).await;
            }

            #[tokio::test]
            async fn an_open_the_router_refuses_is_named() {
                let lab = Lab::new();
                let mut peer = start(&lab);
                refused_open_is_named(&lab, peer.as_mut()).await;
            }

            #[tokio::test]
            async fn a_wrong_peer_as_is_refused_by_name() {
                let lab = Lab::new();
                let mut peer = start(&lab);
                wrong_as_is_named(&lab, peer.as_mut()).await;
            }
        }
    };
}

suite!(frr, |spec, dir| Ok(Box::new(FrrBgp::start(spec, dir)?)));
suite!(bird, |spec, dir| Ok(Box::new(Bird::start(spec, dir)?)));
suite!(gobgp, |spec, dir| Ok(Box::new(Gobgp::start(spec, dir)?)));

/// A route the router originates inside the pool is foreign: listed as
/// such and never withdrawn, whatever we announce and withdraw around it.
#[tokio::test]
async fn a_foreign_route_of_the_router_is_listed_and_never_touched() {
    let lab = Lab::new();
    let mut peer = FrrBgp::start(&lab.spec(), lab.peer_dir()).expect("FRR");
    let foreign: IpNet = "11.11.200.0/24".parse().expect("prefix");
    peer.originate(foreign, Some("192.168.3.9".parse().expect("address")), &[])
        .expect("originate");
    let mut driver = lab.connect(lab.router_config()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = driver.list().await.expect("list");
        if listed.foreign.iter().any(|f| f.dst == foreign) {
            assert!(listed.owned.is_empty(), "{listed:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FRR's route never came: {listed:?}\n{}",
            peer.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ours = route("11.11.1.0/24", "192.168.3.3");
    announce(&mut driver, &[ours]).await;
    driver
        .apply(&[Change::Remove(ours)])
        .await
        .expect("withdraw");
    wait_received(&peer, &[]);
    assert!(peer.advertised().expect("advertised").contains(&foreign));
}

/// The router asks for our routes again (a soft inbound reset): they are
/// sent again on the same session, which stays up, and nothing moves in
/// its kernel.
#[tokio::test]
async fn a_route_refresh_is_answered_on_the_same_session() {
    let lab = Lab::new();
    let peer = FrrBgp::start(&lab.spec(), lab.peer_dir()).expect("FRR");
    let monitor = RouteMonitor::start(lab.router.name(), RTPROT_BGP).expect("a route monitor");
    let mut driver = lab.connect(lab.router_config()).await;
    let a = route("11.11.1.0/24", "192.168.3.3");
    announce(&mut driver, &[a]).await;
    wait_kernel(&peer, &[a]);
    let updates_before = message_stat(&peer, "updatesRecv");
    peer.vtysh(&format!("clear bgp ipv4 unicast {CONTROLLER} soft in"))
        .expect("a soft reset");
    let deadline = Instant::now() + Duration::from_secs(10);
    while message_stat(&peer, "updatesRecv") <= updates_before {
        assert!(Instant::now() < deadline, "no UPDATE answered the refresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(message_stat(&peer, "routeRefreshSent") >= 1);
    wait_received(&peer, &[a]);
    wait_kernel(&peer, &[a]);
    assert!(driver.list().await.is_ok(), "the session went down");
    assert_eq!(monitor.withdrawals(), vec![]);
}

/// One counter of FRR's `messageStats` for the controller's session.
fn message_stat(peer: &FrrBgp, name: &str) -> u64 {
    let text = peer
        .vtysh(&format!("show bgp neighbors {CONTROLLER} json"))
        .expect("FRR's neighbor");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    json[CONTROLLER.to_string()]["messageStats"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// With TCP-MD5 on both ends the session comes up; with a password the
/// router does not share, connecting fails and says why it may have.
#[tokio::test]
async fn tcp_md5_with_the_router_s_password_and_without_it() {
    let lab = Lab::new();
    let mut spec = lab.spec();
    spec.md5_password = Some("s3cret-md5".to_owned());
    let mut peer = FrrBgp::start(&spec, lab.peer_dir()).expect("FRR");
    let mut router = lab.router_config();
    router.password = Some("s3cret-md5".to_owned());
    let mut driver = lab.connect(router.clone()).await;
    let a = route("11.11.1.0/24", "192.168.3.3");
    announce(&mut driver, &[a]).await;
    wait_received(&peer, &[a]);
    drop(driver);

    router.password = Some("not-the-one".to_owned());
    let err = match BgpDriver::connect(router).await {
        Ok(_) => panic!("a session with the wrong password"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("TCP-MD5"), "{err}");
    peer.kill().expect("stop FRR");
}

/// A router that never answers (no one at the address) fails within the
/// connect timeout, with a message that says what to check.
#[tokio::test]
async fn a_router_that_never_answers_fails_within_the_connect_timeout() {
    let lab = Lab::new();
    let mut router = lab.router_config();
    router.address = (Ipv4Addr::new(192, 168, 2, 9), 179).into();
    router.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = match BgpDriver::connect(router).await {
        Ok(_) => panic!("a session with nobody"),
        Err(err) => err.to_string(),
    };
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("no answer within 2s"), "{err}");
}

/// An IPv6 subnet goes in MP_REACH_NLRI with the node's IPv6 address as
/// next hop, on the same (IPv4) session, and reaches FRR's kernel; its
/// withdrawal goes in MP_UNREACH_NLRI.
#[tokio::test]
async fn an_ipv6_subnet_is_announced_via_the_node_s_ipv6_address_and_withdrawn() {
    let lab = Lab::new();
    lab.router.ip("address add fd00:3::1/64 dev nodes nodad");
    let peer = FrrBgp::start(&lab.spec(), lab.peer_dir()).expect("FRR");
    peer.frr()
        .vtysh(&[
            "-c",
            "configure terminal",
            "-c",
            &format!("router bgp {AS}"),
            "-c",
            "address-family ipv6 unicast",
            "-c",
            &format!("neighbor {CONTROLLER} activate"),
        ])
        .expect("IPv6 unicast for the controller");
    let mut router = lab.router_config();
    router
        .ownership
        .pool
        .push("fd11:11::/48".parse().expect("pool"));
    let mut driver = lab.connect(router).await;
    let v6 = route("fd11:11:0:1::/64", "fd00:3::3");
    let v4 = route("11.11.1.0/24", "192.168.3.3");
    announce(&mut driver, &[v6, v4]).await;
    let kernel_v6 = || {
        run(
            "ip",
            &[
                "-n",
                lab.router.name(),
                "-6",
                "route",
                "show",
                "proto",
                "bgp",
            ],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let installed = |text: String| {
        text.lines()
            .any(|line| line.starts_with("fd11:11:0:1::/64 ") && line.contains(" via fd00:3::3 "))
    };
    while !installed(kernel_v6()) {
        assert!(
            Instant::now() < deadline,
            "FRR's kernel: {}\n{}",
            kernel_v6(),
            peer.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_kernel(&peer, &[v4]);
    driver
        .apply(&[Change::Remove(v6)])
        .await
        .expect("the withdrawal went out");
    let deadline = Instant::now() + Duration::from_secs(30);
    while kernel_v6().contains("fd11:11:0:1::/64") {
        assert!(Instant::now() < deadline, "still there: {}", kernel_v6());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_kernel(&peer, &[v4]);
}
