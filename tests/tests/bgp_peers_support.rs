//! The support code for real BGP routers (FRR, BIRD, GoBGP in namespaces),
//! proven against a real BGP speaker instead of our driver: an active FRR
//! in a "controller" namespace announces node subnets with third-party next
//! hops and a community to the peer under test in a "router" namespace.
//! Needs root, FRR, BIRD and GoBGP; never skipped.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute_tests::bgp_peers::{
    BgpPeer, Bird, FrrBgp, Gobgp, PeerSpec, Received, kernel_routes, wait_established,
};
use nativeroute_tests::netns::Netns;
use tempfile::TempDir;

const CONTROLLER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);
const ROUTER_AS: u32 = 64512;
const CONTROLLER_EBGP_AS: u32 = 64513;
const OURS: (u16, u16) = (64512, 1111);
const OTHER: (u16, u16) = (65000, 7);
/// Sessions come up within seconds; FRR's `network` routes a few seconds
/// after bgpd starts; this leaves room for a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a session that must not come up is given to come up anyway:
/// every active speaker here retries each second.
const NEVER: Duration = Duration::from_secs(6);

fn net(text: &str) -> IpNet {
    text.parse().expect("prefix")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn received(dst: &str, next_hop: &str, communities: &[(u16, u16)], stale: bool) -> Received {
    Received {
        dst: net(dst),
        next_hop: ip(next_hop),
        communities: communities.to_vec(),
        stale,
    }
}

/// A private directory FRR's daemons (user frr) can reach.
fn frr_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("nrt-bgp-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod temp dir");
    dir
}

/// Polls until `check` holds; panics with `what` and `context()` after
/// `TIMEOUT`.
fn wait_for(what: &str, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < TIMEOUT,
            "timed out after {TIMEOUT:?} waiting until {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two namespaces joined by a veth pair on 192.168.2.0/24; the router also
/// has 192.168.3.0/24, a second connected network for next hops that are
/// not on the session's subnet.
struct World {
    controller: Netns,
    router: Netns,
}

fn world() -> World {
    let controller = Netns::new();
    let router = Netns::new();
    controller.ip(&format!(
        "link add c2 type veth peer name r2 netns {}",
        router.name()
    ));
    controller.ip(&format!("address add {CONTROLLER}/24 dev c2"));
    controller.ip("link set c2 up");
    router.ip(&format!("address add {ROUTER}/24 dev r2"));
    router.ip("link set r2 up");
    router.add_connected_network("r3", "192.168.3.2/24");
    World { controller, router }
}

#[derive(Clone, Copy)]
struct Options {
    ebgp: bool,
    md5: Option<&'static str>,
    graceful_restart: bool,
}

const IBGP: Options = Options {
    ebgp: false,
    md5: None,
    graceful_restart: true,
};

/// The speaker playing the controller and the peer under test; fields drop
/// in order: daemons, then namespaces, then directories.
struct Session<P: BgpPeer> {
    speaker: FrrBgp,
    peer: P,
    world: World,
    _dirs: [TempDir; 2],
}

impl<P: BgpPeer> Session<P> {
    fn logs(&self) -> String {
        format!(
            "--- speaker\n{}\n--- {}\n{}",
            self.speaker.logs(),
            self.peer.name(),
            self.peer.logs()
        )
    }

    /// What the speaker announces, as the peer should receive it.
    fn expected(&self, stale: bool) -> Vec<Received> {
        let second = if self.options_ebgp() {
            // FRR keeps a third-party next hop towards an eBGP peer only
            // when it is on the session's subnet.
            "192.168.2.4"
        } else {
            "192.168.3.3"
        };
        let mut routes = vec![
            received("11.11.1.0/24", "192.168.2.3", &[OURS], stale),
            received("11.11.2.0/24", second, &[OURS, OTHER], stale),
        ];
        routes.sort();
        routes
    }

    fn options_ebgp(&self) -> bool {
        self.peer.spec().neighbor_as != self.peer.spec().local_as
    }

    fn wait_received(&self, what: &str, expected: &[Received]) {
        wait_for(
            what,
            || matches!(self.peer.received(), Ok(routes) if routes == expected),
            || {
                format!(
                    "expected {expected:#?}\nreceived {:#?}\n{}",
                    self.peer.received(),
                    self.logs()
                )
            },
        );
    }

    fn kernel(&self) -> Option<Vec<(IpNet, Option<IpAddr>)>> {
        let proto = self.peer.kernel_proto()?;
        Some(
            kernel_routes(self.world.router.name(), proto)
                .expect("kernel routes")
                .into_iter()
                .map(|route| (route.dst, route.gateway))
                .collect(),
        )
    }

    /// For peers that install routes: the kernel holds exactly ours.
    fn wait_kernel_has_ours(&self) {
        if self.peer.kernel_proto().is_none() {
            return;
        }
        let expected: Vec<(IpNet, Option<IpAddr>)> = self
            .expected(false)
            .into_iter()
            .map(|route| (route.dst, Some(route.next_hop)))
            .collect();
        wait_for(
            &format!("the {} kernel routes are ours", self.peer.name()),
            || self.kernel().as_ref() == Some(&expected),
            || format!("kernel: {:?}\n{}", self.kernel(), self.logs()),
        );
    }

    fn wait_established(&self) {
        wait_established(&self.peer, TIMEOUT).expect("the peer establishes");
        wait_established(&self.speaker, TIMEOUT).expect("the speaker establishes");
    }
}

fn start_session<P: BgpPeer>(
    start: impl FnOnce(&PeerSpec, &Path) -> anyhow::Result<P>,
    options: Options,
) -> Session<P> {
    let world = world();
    let controller_as = if options.ebgp {
        CONTROLLER_EBGP_AS
    } else {
        ROUTER_AS
    };
    let speaker_dir = frr_dir();
    let peer_dir = frr_dir();
    let mut speaker_spec = PeerSpec::new(
        world.controller.name(),
        CONTROLLER,
        controller_as,
        IpAddr::V4(ROUTER),
        ROUTER_AS,
    );
    speaker_spec.passive = false;
    speaker_spec.md5_password = options.md5.map(str::to_owned);
    let mut speaker = FrrBgp::start(&speaker_spec, speaker_dir.path()).expect("speaker starts");
    speaker
        .originate(net("11.11.1.0/24"), Some(ip("192.168.2.3")), &[OURS])
        .expect("speaker originates");
    let second_hop = if options.ebgp {
        "192.168.2.4"
    } else {
        "192.168.3.3"
    };
    speaker
        .originate(net("11.11.2.0/24"), Some(ip(second_hop)), &[OURS, OTHER])
        .expect("speaker originates");

    let mut peer_spec = PeerSpec::new(
        world.router.name(),
        ROUTER,
        ROUTER_AS,
        IpAddr::V4(CONTROLLER),
        controller_as,
    );
    peer_spec.md5_password = options.md5.map(str::to_owned);
    peer_spec.graceful_restart = options.graceful_restart;
    let peer =
        start(&peer_spec, peer_dir.path()).unwrap_or_else(|err| panic!("the peer starts: {err:#}"));
    let session = Session {
        speaker,
        peer,
        world,
        _dirs: [speaker_dir, peer_dir],
    };
    session.wait_established();
    session.wait_received("the peer learned the routes", &session.expected(false));
    session
}

fn start_frr(spec: &PeerSpec, dir: &Path) -> anyhow::Result<FrrBgp> {
    FrrBgp::start(spec, dir)
}

fn start_bird(spec: &PeerSpec, dir: &Path) -> anyhow::Result<Bird> {
    Bird::start(spec, dir)
}

fn start_gobgp(spec: &PeerSpec, dir: &Path) -> anyhow::Result<Gobgp> {
    Gobgp::start(spec, dir)
}

/// The peer learns third-party next hops and communities, and installs
/// them in its kernel when it can.
fn learns_routes<P: BgpPeer>(
    start: impl FnOnce(&PeerSpec, &Path) -> anyhow::Result<P>,
    options: Options,
) -> Session<P> {
    let session = start_session(start, options);
    assert!(session.peer.established().expect("peer state"));
    session.wait_kernel_has_ours();
    session
}

#[test]
fn frr_learns_third_party_next_hops_over_ibgp_with_md5() {
    let mut session = learns_routes(
        start_frr,
        Options {
            md5: Some("s3cret-md5"),
            ..IBGP
        },
    );
    // A route of the router's own, announced to the controller.
    session
        .peer
        .originate(net("11.11.200.0/24"), None, &[])
        .expect("peer originates");
    wait_for(
        "the peer advertises its own route",
        || session.peer.advertised().ok() == Some(vec![net("11.11.200.0/24")]),
        || session.logs(),
    );
    wait_for(
        "the speaker learned the peer's route",
        || {
            session.speaker.received().ok()
                == Some(vec![received("11.11.200.0/24", "192.168.2.2", &[], false)])
        },
        || session.logs(),
    );
    assert!(
        session
            .peer
            .received()
            .expect("received")
            .iter()
            .all(|route| route.dst != net("11.11.200.0/24")),
        "a route the peer originates is not one it received"
    );
    session
        .peer
        .withdraw_originated(net("11.11.200.0/24"))
        .expect("peer withdraws");
    wait_for(
        "the speaker lost the peer's route",
        || session.speaker.received().ok() == Some(Vec::new()),
        || session.logs(),
    );
}

#[test]
fn bird_learns_third_party_next_hops_over_ibgp_with_md5() {
    learns_routes(
        start_bird,
        Options {
            md5: Some("s3cret-md5"),
            ..IBGP
        },
    );
}

#[test]
fn gobgp_learns_third_party_next_hops_over_ibgp_with_md5() {
    learns_routes(
        start_gobgp,
        Options {
            md5: Some("s3cret-md5"),
            ..IBGP
        },
    );
}

const EBGP: Options = Options { ebgp: true, ..IBGP };

#[test]
fn frr_learns_third_party_next_hops_over_ebgp() {
    learns_routes(start_frr, EBGP);
}

#[test]
fn bird_learns_third_party_next_hops_over_ebgp() {
    learns_routes(start_bird, EBGP);
}

#[test]
fn gobgp_learns_third_party_next_hops_over_ebgp() {
    learns_routes(start_gobgp, EBGP);
}

/// Graceful restart keeps the routes while the speaker is dead; restarting
/// and killing the peer brings the session and the routes back.
fn survives_restarts<P: BgpPeer>(start: impl FnOnce(&PeerSpec, &Path) -> anyhow::Result<P>) {
    let mut session = learns_routes(start, IBGP);
    let kernel_before = session.kernel();

    session.speaker.kill().expect("speaker killed");
    wait_for(
        "the peer saw the session drop",
        || !session.peer.established().expect("peer state"),
        || session.logs(),
    );
    session.wait_received("the peer keeps stale routes", &session.expected(true));
    assert_eq!(session.kernel(), kernel_before, "kernel routes kept");

    session.speaker.start_again().expect("speaker starts again");
    session.wait_established();
    session.wait_received("the routes are fresh again", &session.expected(false));
    session.wait_kernel_has_ours();

    session.peer.restart().expect("peer restarts");
    session.wait_established();
    session.wait_received("the restarted peer learned again", &session.expected(false));
    session.wait_kernel_has_ours();

    session.peer.kill().expect("peer killed");
    wait_for(
        "the speaker saw the session drop",
        || !session.speaker.established().expect("speaker state"),
        || session.logs(),
    );
    assert!(session.peer.established().is_err(), "a dead peer answers");
    session.peer.start_again().expect("peer starts again");
    session.wait_established();
    session.wait_received("the peer learned again", &session.expected(false));
    session.wait_kernel_has_ours();
}

#[test]
fn frr_keeps_stale_routes_and_comes_back_after_restarts() {
    survives_restarts(start_frr);
}

#[test]
fn bird_keeps_stale_routes_and_comes_back_after_restarts() {
    survives_restarts(start_bird);
}

#[test]
fn gobgp_keeps_stale_routes_and_comes_back_after_restarts() {
    survives_restarts(start_gobgp);
}

/// Without graceful restart the peer drops the routes with the session.
fn forgets_without_graceful_restart<P: BgpPeer>(
    start: impl FnOnce(&PeerSpec, &Path) -> anyhow::Result<P>,
) {
    let mut session = learns_routes(
        start,
        Options {
            graceful_restart: false,
            ..IBGP
        },
    );
    session.speaker.kill().expect("speaker killed");
    session.wait_received("the peer dropped the routes", &[]);
    if session.peer.kernel_proto().is_some() {
        wait_for(
            "the kernel routes are gone",
            || session.kernel() == Some(Vec::new()),
            || format!("kernel: {:?}\n{}", session.kernel(), session.logs()),
        );
    }
}

#[test]
fn frr_without_graceful_restart_drops_routes_with_the_session() {
    forgets_without_graceful_restart(start_frr);
}

#[test]
fn bird_without_graceful_restart_drops_routes_with_the_session() {
    forgets_without_graceful_restart(start_bird);
}

#[test]
fn gobgp_without_graceful_restart_drops_routes_with_the_session() {
    forgets_without_graceful_restart(start_gobgp);
}

/// A passive peer facing a passive speaker never gets a session, and nor
/// does one whose MD5 password differs from the speaker's: a session comes
/// up only when the speaker connects and the keys match.
fn never_establishes<P: BgpPeer>(
    start: impl Fn(&PeerSpec, &Path) -> anyhow::Result<P>,
    speaker_passive: bool,
    speaker_md5: Option<&str>,
    peer_md5: Option<&str>,
) {
    let world = world();
    let speaker_dir = frr_dir();
    let peer_dir = frr_dir();
    let mut speaker_spec = PeerSpec::new(
        world.controller.name(),
        CONTROLLER,
        ROUTER_AS,
        IpAddr::V4(ROUTER),
        ROUTER_AS,
    );
    speaker_spec.passive = speaker_passive;
    speaker_spec.md5_password = speaker_md5.map(str::to_owned);
    let speaker = FrrBgp::start(&speaker_spec, speaker_dir.path()).expect("speaker starts");
    let mut peer_spec = PeerSpec::new(
        world.router.name(),
        ROUTER,
        ROUTER_AS,
        IpAddr::V4(CONTROLLER),
        ROUTER_AS,
    );
    peer_spec.md5_password = peer_md5.map(str::to_owned);
    let peer = start(&peer_spec, peer_dir.path()).expect("peer starts");
    let started = Instant::now();
    while started.elapsed() < NEVER {
        assert!(
            !peer.established().expect("peer state") && !speaker.established().expect("state"),
            "a session came up\n{}\n{}",
            speaker.logs(),
            peer.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn passive_peers_never_connect_out() {
    std::thread::scope(|scope| {
        scope.spawn(|| never_establishes(start_frr, true, None, None));
        scope.spawn(|| never_establishes(start_bird, true, None, None));
        scope.spawn(|| never_establishes(start_gobgp, true, None, None));
    });
}

#[test]
fn peers_refuse_a_wrong_md5_password() {
    std::thread::scope(|scope| {
        scope.spawn(|| never_establishes(start_frr, false, Some("right"), Some("wrong")));
        scope.spawn(|| never_establishes(start_bird, false, Some("right"), Some("wrong")));
        scope.spawn(|| never_establishes(start_gobgp, false, Some("right"), Some("wrong")));
        // The speaker signs, the peer does not expect a signature.
        scope.spawn(|| never_establishes(start_gobgp, false, Some("right"), None));
    });
}
