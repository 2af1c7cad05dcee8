//! Issue 11: the BGP driver against FRR (bgpd and zebra) in a namespace.
//!
//! 1. N node subnets, each with its own next hop, announced to FRR: from
//!    the established session until FRR's kernel holds all N (a netlink
//!    monitor in FRR's namespace sees them). Beside it, in the same run and
//!    against the same FRR configuration (a fresh instance), BIRD 2
//!    announcing the same N static routes over iBGP with `next hop keep`.
//!    Both are timed from the moment their session is seen established:
//!    BIRD's by polling birdc every 10 ms, which can only favour BIRD.
//! 2. The real controller against the test API server with FRR over BGP:
//!    Nodes created one at a time, each timed from creation until its route
//!    is in FRR's kernel; the controller's peak RSS for the run.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use nativeroute_router_drivers::bgp::{BgpDriver, BgpRouter};
use nativeroute_router_drivers::{Change, Ownership, Route, RouterDriver};
use nativeroute_tests::apiserver::{ApiServer, realistic_nodes};
use nativeroute_tests::bgp_peers::{FrrBgp, PeerSpec};
use nativeroute_tests::netns::{Netns, run};
use nativeroute_tests::route_monitor::RouteMonitor;

use super::controller::Controller;
use super::kubernetes::{
    create_one_at_a_time, millis, percentile, wait_for_routes, wait_until_idle,
};
use super::secs;

const AS: u32 = 64512;
const SPEAKER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);
/// Next hops and the fixture Nodes' InternalIPs (10.64.0.1, …) are on-link
/// here, in FRR's namespace and (for BIRD's static routes) the speaker's.
const GATEWAY_ROUTER: &str = "10.64.255.254/16";
const GATEWAY_SPEAKER: &str = "10.64.255.253/16";
const POOL: &str = "11.0.0.0/8";
/// zebra installs BGP routes with this kernel protocol.
const RTPROT_BGP: u8 = 186;
const TIMEOUT: Duration = Duration::from_secs(300);

const GOAL_VS_BIRD: f64 = 1.0;
/// Single announcements timed after the cold start.
const SINGLE_ROUTES: usize = 50;
const GOAL_CREATED_P99: Duration = Duration::from_millis(50);

pub struct Settings {
    /// Routes of the cold start, nativeroute's and BIRD's.
    pub routes: usize,
    /// Nodes the controller starts with, then Nodes created one at a time.
    pub nodes: usize,
    pub created: usize,
    pub runs: usize,
    pub log_level: String,
}

pub async fn bench(settings: &Settings) {
    let mut ours = Vec::new();
    let mut bird = Vec::new();
    let mut single = Vec::new();
    for run in 1..=settings.runs {
        // Each goes first in every other run, so that neither gains from
        // the order (a warmer machine, the last run's teardown).
        let bird_first = run % 2 == 0;
        if bird_first {
            eprintln!("bgp: run {run}: {} routes from BIRD", settings.routes);
            bird.push(cold_start_bird(settings.routes).await);
        }
        eprintln!(
            "bgp: run {run}: {} routes from nativeroute",
            settings.routes
        );
        let (cold, latencies) = cold_start_ours(settings.routes).await;
        ours.push(cold);
        single.extend(latencies);
        if !bird_first {
            eprintln!("bgp: run {run}: {} routes from BIRD", settings.routes);
            bird.push(cold_start_bird(settings.routes).await);
        }
    }
    ours.sort();
    bird.sort();
    single.sort();
    let (created, rss_kib) = node_events(settings).await;
    print_table(settings, &ours, &bird, &single, &created, rss_kib);
}

fn median(samples: &[Duration]) -> Duration {
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn routes(count: usize) -> Vec<Route> {
    (0..count)
        .map(|i| {
            let i = u32::try_from(i).expect("fewer than 2^32 routes");
            let dst = Ipv4Net::new_assert(Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24);
            let via = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + i % 60_000);
            Route::new(IpNet::V4(dst), IpAddr::V4(via))
        })
        .collect()
}

/// The speaker's namespace and FRR's, joined on 192.168.2.0/24, each with
/// the next hops' network connected; FRR started, waiting for the speaker.
struct Lab {
    speaker: Netns,
    _router: Netns,
    frr: FrrBgp,
    monitor: RouteMonitor,
    _dir: tempfile::TempDir,
}

fn lab() -> Lab {
    let speaker = Netns::new();
    let router = Netns::new();
    run(
        "ip",
        &[
            "-n",
            speaker.name(),
            "link",
            "add",
            "sp0",
            "type",
            "veth",
            "peer",
            "name",
            "rt0",
            "netns",
            router.name(),
        ],
    );
    speaker.ip(&format!("address add {SPEAKER}/24 dev sp0"));
    speaker.ip("link set sp0 up");
    router.ip(&format!("address add {ROUTER}/24 dev rt0"));
    router.ip("link set rt0 up");
    router.add_connected_network("gw0", GATEWAY_ROUTER);
    speaker.add_connected_network("gw0", GATEWAY_SPEAKER);
    let dir = tempfile::tempdir().expect("a directory for FRR");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("world-searchable: FRR runs as frr");
    let spec = PeerSpec::new(router.name(), ROUTER, AS, IpAddr::V4(SPEAKER), AS);
    let frr = FrrBgp::start(&spec, &dir.path().join("frr")).expect("FRR starts");
    let monitor = RouteMonitor::start(router.name(), RTPROT_BGP).expect("a route monitor");
    Lab {
        speaker,
        _router: router,
        frr,
        monitor,
        _dir: dir,
    }
}

fn ownership() -> Ownership {
    Ownership {
        pool: vec![POOL.parse().expect("pool")],
        netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
        route_tag: Ownership::DEFAULT_ROUTE_TAG,
        bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
    }
}

async fn wait_for_kernel(lab: &Lab, count: usize, what: &str) -> Instant {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(at) = lab.monitor.filled(count) {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: FRR's kernel held {} of {count} routes after {TIMEOUT:?}; FRR's logs:\n{}",
            lab.monitor.present(),
            nativeroute_tests::bgp_peers::BgpPeer::logs(&lab.frr)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Established session → all routes in FRR's kernel, through the driver;
/// then single announcements, each timed (sorted).
async fn cold_start_ours(count: usize) -> (Duration, Vec<Duration>) {
    let lab = lab();
    let router = BgpRouter {
        name: "frr".into(),
        address: (ROUTER, 179).into(),
        local_as: AS,
        peer_as: AS,
        router_id: None,
        hold_time: BgpRouter::DEFAULT_HOLD_TIME,
        graceful_restart: BgpRouter::DEFAULT_GRACEFUL_RESTART,
        password: None,
        netns: Some(lab.speaker.name().to_owned()),
        connect_timeout: Duration::from_secs(5),
        ownership: ownership(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut driver = loop {
        match BgpDriver::connect(router.clone()).await {
            Ok(driver) => break driver,
            Err(err) => {
                assert!(Instant::now() < deadline, "no session with FRR: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let established = Instant::now();
    let changes: Vec<Change> = routes(count).into_iter().map(Change::Add).collect();
    let outcomes = driver.apply(&changes).await.expect("the batch went out");
    assert!(outcomes.iter().all(Result::is_ok), "a change was refused");
    let filled = wait_for_kernel(&lab, count, "nativeroute").await;
    let cold = filled.duration_since(established);
    (cold, one_at_a_time(&lab, &mut driver, count).await)
}

/// The driver alone (no controller): one more route announced at a time,
/// each timed until it is in FRR's kernel; sorted. What FRR itself takes
/// per route, to set beside the controller's node-event latency.
async fn one_at_a_time(lab: &Lab, driver: &mut BgpDriver, announced: usize) -> Vec<Duration> {
    let extra = routes(announced + SINGLE_ROUTES);
    let mut latencies = Vec::with_capacity(SINGLE_ROUTES);
    for route in &extra[announced..] {
        let IpNet::V4(dst) = route.dst else {
            continue;
        };
        let sent = Instant::now();
        let outcomes = driver.apply(&[Change::Add(*route)]).await.expect("sent");
        assert!(outcomes.iter().all(Result::is_ok), "refused");
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            if let Some(at) = lab.monitor.first_seen(dst) {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "{dst} never reached FRR's kernel"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(seen.saturating_duration_since(sent));
    }
    latencies.sort();
    latencies
}

/// Established session → all routes in FRR's kernel, from BIRD.
async fn cold_start_bird(count: usize) -> Duration {
    let lab = lab();
    let dir = tempfile::tempdir().expect("a directory for BIRD");
    let config = dir.path().join("bird.conf");
    std::fs::write(&config, bird_config(count)).expect("BIRD's config");
    let socket = dir.path().join("bird.ctl");
    let mut bird = spawn_bird(lab.speaker.name(), &config, &socket, dir.path());
    let established = wait_for_bird_session(lab.speaker.name(), &socket, &mut bird).await;
    let filled = wait_for_kernel(&lab, count, "BIRD").await;
    let _ = bird.kill();
    let _ = bird.wait();
    filled.saturating_duration_since(established)
}

/// BIRD as the speaker: every route static, announced over iBGP with its
/// own gateway as next hop and nativeroute's community, with graceful
/// restart like ours (so FRR treats both alike).
fn bird_config(count: usize) -> String {
    let mut text = format!(
        "router id {SPEAKER};\n\
         protocol device {{}}\n\
         protocol static nodes {{\n  ipv4;\n"
    );
    for route in routes(count) {
        let _ = writeln!(text, "  route {} via {};", route.dst, route.via);
    }
    let _ = write!(
        text,
        "}}\n\
         protocol bgp frr {{\n\
         \x20 local {SPEAKER} as {AS};\n\
         \x20 neighbor {ROUTER} as {AS};\n\
         \x20 direct;\n\
         \x20 graceful restart on;\n\
         \x20 connect delay time 1;\n\
         \x20 ipv4 {{ import none; export filter {{ bgp_community.add((64512, 1111)); accept; }}; next hop keep; }};\n\
         }}\n"
    );
    text
}

fn spawn_bird(netns: &str, config: &Path, socket: &Path, dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("bird.out")).expect("BIRD's output file");
    Command::new("ip")
        .args(["netns", "exec", netns, "/usr/sbin/bird", "-f", "-c"])
        .arg(config)
        .arg("-s")
        .arg(socket)
        .arg("-P")
        .arg(dir.join("bird.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a second handle"))
        .stderr(log)
        .spawn()
        .expect("BIRD starts (install bird2: scripts/setup.sh)")
}

async fn wait_for_bird_session(netns: &str, socket: &Path, bird: &mut Child) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = Command::new("ip")
            .args(["netns", "exec", netns, "/usr/sbin/birdc", "-s"])
            .arg(socket)
            .args(["show", "protocols", "frr"])
            .output()
            .expect("birdc runs");
        if String::from_utf8_lossy(&output.stdout).contains("Established") {
            return Instant::now();
        }
        if let Ok(Some(status)) = bird.try_wait() {
            panic!("BIRD exited ({status})");
        }
        assert!(Instant::now() < deadline, "BIRD's session never came up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Node created → route in FRR's kernel through the controller, sorted;
/// and the controller's peak RSS in KiB.
async fn node_events(settings: &Settings) -> (Vec<Duration>, u64) {
    let lab = lab();
    let api = ApiServer::start()
        .await
        .expect("the test API server starts");
    let mut nodes = realistic_nodes(settings.nodes + settings.created);
    let later = nodes.split_off(settings.nodes);
    for node in nodes {
        api.put_node(node).expect("the API server stores a Node");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let config = dir.path().join("nativeroute.yaml");
    let text = format!(
        "pool: {{cidrs: [{POOL}], nodeMaskV4: 24}}\n\
         ipam: allocate\n\
         nodes: {{source: kubernetes}}\n\
         resyncInterval: 60s\n\
         routers:\n  - name: frr\n    driver: bgp\n    netns: {netns}\n    \
         address: {ROUTER}\n    localAs: {AS}\n    peerAs: {AS}\n",
        netns = lab.speaker.name(),
    );
    std::fs::write(&config, text).expect("the controller config is written");
    let log = dir.path().join("controller.log");
    let mut controller = Controller::start(&config, Some(&kubeconfig), &log, &settings.log_level);
    eprintln!("bgp: controller cold start with {} Nodes", settings.nodes);
    wait_for_routes(&lab.monitor, &mut controller, settings.nodes).await;
    wait_until_idle(&mut controller).await;
    eprintln!("bgp: creating {} Nodes one at a time", settings.created);
    let created = create_one_at_a_time(&api, &lab.monitor, &mut controller, later).await;
    let rss = controller.peak_rss_kib();
    controller.stop();
    (created, rss)
}

/// The median, and the range when there is more than one run.
fn spread(sorted: &[Duration]) -> String {
    match (sorted.first(), sorted.last()) {
        (Some(low), Some(high)) if sorted.len() > 1 => {
            format!("{} ({}–{})", secs(median(sorted)), secs(*low), secs(*high))
        }
        _ => secs(median(sorted)),
    }
}

fn print_table(
    settings: &Settings,
    ours_runs: &[Duration],
    bird_runs: &[Duration],
    single: &[Duration],
    created: &[Duration],
    rss_kib: u64,
) {
    let runs = settings.runs;
    let (ours, bird) = (median(ours_runs), median(bird_runs));
    println!();
    println!(
        "BGP to FRR: {} routes, each with its own next hop, from the established session until all are in FRR's kernel (median of {runs})",
        settings.routes
    );
    println!("| speaker | time (range) | routes/s |");
    println!("| --- | --- | --- |");
    let rate = |d: Duration| settings.routes as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "| nativeroute's BGP driver | {} | {:.0} |",
        spread(ours_runs),
        rate(ours)
    );
    println!(
        "| BIRD 2, static routes over iBGP | {} | {:.0} |",
        spread(bird_runs),
        rate(bird)
    );
    let vs_bird = ours.as_secs_f64() / bird.as_secs_f64().max(1e-9);
    println!();
    println!(
        "Node created → route in FRR's kernel over BGP, {} Nodes one at a time after {} announced: p50 {}, p99 {}, max {}; controller peak RSS {:.1} MiB",
        created.len(),
        settings.nodes,
        millis(percentile(created, 50)),
        millis(percentile(created, 99)),
        millis(created.last().copied().unwrap_or_default()),
        rss_kib as f64 / 1024.0
    );
    println!(
        "The driver alone, one route at a time after the cold start ({} routes): announced → in FRR's kernel p50 {}, p99 {}. \
         FRR's bgpd holds its route-processing queue 50 ms before it runs (process_main_queue), so no speaker gets a route into FRR's kernel faster.",
        single.len(),
        millis(percentile(single, 50)),
        millis(percentile(single, 99)),
    );
    println!();
    println!("| goal | measured | |");
    println!("| --- | --- | --- |");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "| ≤ {GOAL_VS_BIRD}× BIRD's time | {vs_bird:.2}× | {} |",
        verdict(vs_bird <= GOAL_VS_BIRD)
    );
    let p99 = percentile(created, 99);
    println!(
        "| node event → route p99 ≤ {} ms (with {} announced) | {} | {} |",
        GOAL_CREATED_P99.as_millis(),
        settings.nodes,
        millis(p99),
        verdict(p99 <= GOAL_CREATED_P99)
    );
}
