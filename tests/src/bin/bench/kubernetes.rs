//! Issue 3: the real controller (release binary) against the test API server
//! holding thousands of kubelet-like Nodes of ~9 KB, programming a kernel
//! routing table in a fresh namespace.
//!
//! Cold start: the Nodes are there before the controller starts; it lists
//! them (in pages), gives each a subnet and installs one route per node.
//! Then, once the controller has written every subnet and gone idle, Nodes
//! are created one at a time, each after the previous one's route is in
//! (created earlier, they would measure the cold start's backlog instead).
//! Route times come from a netlink monitor in the router's namespace
//! ([`RouteMonitor`]), not from polling `ip`.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Node;
use nativeroute_tests::apiserver::{ApiServer, realistic_nodes};
use nativeroute_tests::netns::{Netns, run};
use nativeroute_tests::route_monitor::RouteMonitor;

use super::controller::Controller;
use super::{median, secs};

/// The controller's routes carry this protocol number.
const PROTOCOL: u8 = 203;
const POOL: &str = "11.0.0.0/8";
/// The fixture nodes' InternalIPs are 10.64.0.1, 10.64.0.2, ...
const ROUTER_ADDRESS: &str = "10.64.255.254/16";
const SUBNET_ANNOTATION: &str = "nativeroute.io/subnet";

const COLD_START_TIMEOUT: Duration = Duration::from_secs(180);
const NODE_TIMEOUT: Duration = Duration::from_secs(10);
/// The controller is idle when it used at most [`IDLE_TICKS`] of CPU time
/// (1/100 s each, USER_HZ) in this long.
const IDLE_WINDOW: Duration = Duration::from_millis(500);
const IDLE_TICKS: u64 = 2;

pub struct Settings {
    pub nodes: usize,
    pub created: usize,
    pub runs: usize,
    /// How long to measure the controller's CPU once everything is done
    /// (`None`: not at all).
    pub idle_cpu: Option<Duration>,
    /// Where the controller's logs are kept; default: a temporary directory.
    pub log_dir: Option<PathBuf>,
    /// The controller's RUST_LOG.
    pub log_level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nodes: 5_000,
            created: 1_000,
            runs: 3,
            idle_cpu: None,
            log_dir: None,
            log_level: "warn".into(),
        }
    }
}

/// One run's numbers.
struct Sample {
    start_to_converged: Duration,
    list_to_converged: Duration,
    /// Until the controller went idle: subnets written, its own writes digested.
    start_to_settled: Duration,
    peak_rss_kib: u64,
    /// Node created → its route in the kernel, sorted.
    created: Vec<Duration>,
    /// PATCHes to nodes and to nodes/status until the controller went idle.
    patches: (usize, usize),
    /// The controller's CPU use once all was done, in shares of one core.
    idle_cpu: Option<f64>,
}

/// The medians of a section's runs, for the scale table.
pub struct Summary {
    pub nodes: usize,
    pub created_p50: Duration,
    pub created_p99: Duration,
    pub list_to_converged: Duration,
    pub peak_rss_mib: f64,
    pub idle_cpu: Option<f64>,
}

pub async fn bench(settings: &Settings) -> Summary {
    let mut samples = Vec::new();
    for run in 1..=settings.runs {
        samples.push(one_run(settings, run).await);
    }
    print_table(settings, &samples);
    let mut rss: Vec<u64> = samples.iter().map(|s| s.peak_rss_kib).collect();
    rss.sort_unstable();
    let mut idle: Vec<f64> = samples.iter().filter_map(|s| s.idle_cpu).collect();
    idle.sort_by(f64::total_cmp);
    Summary {
        nodes: settings.nodes,
        created_p50: median(samples.iter().map(|s| created_percentiles(s).0).collect()),
        created_p99: median(samples.iter().map(|s| created_percentiles(s).1).collect()),
        list_to_converged: median(samples.iter().map(|s| s.list_to_converged).collect()),
        peak_rss_mib: mib(rss[rss.len() / 2]),
        idle_cpu: idle.get(idle.len() / 2).copied(),
    }
}

/// What a run works in: the API server with its Nodes, the router's
/// namespace, the controller's files. Dropping it tears it all down.
struct World {
    api: ApiServer,
    netns: Netns,
    config: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    /// Nodes to create after the cold start.
    later: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn build(settings: &Settings, run: usize) -> World {
        let api = ApiServer::start()
            .await
            .expect("the test API server starts");
        let mut nodes = realistic_nodes(settings.nodes + settings.created);
        let later = nodes.split_off(settings.nodes);
        for node in nodes {
            api.put_node(node).expect("the API server stores a Node");
        }
        let netns = Netns::new();
        netns.add_connected_network("nodes0", ROUTER_ADDRESS);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)
            .expect("the kubeconfig is written");
        let config = dir.path().join("nativeroute.yaml");
        let text = format!(
            "pool: {{cidrs: [{POOL}], nodeMaskV4: 24}}\n\
             ipam: allocate\n\
             nodes: {{source: kubernetes}}\n\
             resyncInterval: 60s\n\
             routers: [{{name: rtr, driver: netlink, netns: {}}}]\n",
            netns.name()
        );
        std::fs::write(&config, text).expect("the controller config is written");
        let log = match &settings.log_dir {
            Some(logs) => {
                std::fs::create_dir_all(logs).expect("the log directory is created");
                logs.join(format!("kubernetes-run-{run}.log"))
            }
            None => dir.path().join("controller.log"),
        };
        World {
            api,
            netns,
            config,
            kubeconfig,
            log,
            later,
            _dir: dir,
        }
    }
}

async fn one_run(settings: &Settings, run: usize) -> Sample {
    eprintln!("kubernetes run {run}: {} Nodes", settings.nodes);
    let mut world = World::build(settings, run).await;
    let monitor =
        RouteMonitor::start(world.netns.name(), PROTOCOL).expect("the route monitor starts");
    let started = Instant::now();
    let mut controller = Controller::start(
        &world.config,
        Some(&world.kubeconfig),
        &world.log,
        &settings.log_level,
    );
    let converged = wait_for_routes(&monitor, &mut controller, settings.nodes).await;
    let listed = initial_list_answered(&world.api);
    wait_for_writes(&world.api, &mut controller, settings.nodes).await;
    let settled = wait_until_idle(&mut controller).await;
    let patches = patches(&world.api);
    check_world(&world, settings.nodes);
    eprintln!(
        "kubernetes run {run}: idle {:.1} s after start; creating {} Nodes",
        settled.saturating_duration_since(started).as_secs_f64(),
        settings.created
    );
    let later = std::mem::take(&mut world.later);
    let created = create_one_at_a_time(&world.api, &monitor, &mut controller, later).await;
    let total = settings.nodes + settings.created;
    wait_for_routes(&monitor, &mut controller, total).await;
    check_world(&world, total);
    assert_eq!(
        monitor.overruns(),
        0,
        "the route monitor missed announcements"
    );
    let idle_cpu = match settings.idle_cpu {
        Some(window) => {
            eprintln!("kubernetes run {run}: measuring idle CPU for {window:?}");
            Some(controller.cpu_share_over(window).await)
        }
        None => None,
    };
    let peak_rss_kib = controller.peak_rss_kib();
    controller.stop();
    Sample {
        start_to_converged: converged.saturating_duration_since(started),
        list_to_converged: converged.saturating_duration_since(listed),
        start_to_settled: settled.saturating_duration_since(started),
        peak_rss_kib,
        created,
        patches,
        idle_cpu,
    }
}

/// Waits until the router's table holds `count` routes of the controller;
/// returns when the last of them was announced.
pub(super) async fn wait_for_routes(
    monitor: &RouteMonitor,
    controller: &mut Controller,
    count: usize,
) -> Instant {
    let deadline = Instant::now() + COLD_START_TIMEOUT;
    loop {
        if let Some(at) = monitor.filled(count) {
            return at;
        }
        controller.assert_running();
        assert!(
            Instant::now() < deadline,
            "after {COLD_START_TIMEOUT:?} the router has {} of {count} routes; the controller's log ends:\n{}",
            monitor.present(),
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// When the API server answered the last page of the controller's first
/// LIST of nodes (later pages carry `continue`).
fn initial_list_answered(api: &ApiServer) -> Instant {
    let lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.verb == "list" && r.resource == "nodes")
        .collect();
    let pages = 1 + lists
        .iter()
        .skip(1)
        .take_while(|r| r.query.contains("continue="))
        .count();
    let last = lists
        .get(pages - 1)
        .expect("the controller listed the nodes before routing them");
    assert_eq!(last.status, 200, "the initial list failed: {last:?}");
    last.at
}

/// Waits until each of the `count` Nodes was patched (its subnet written).
async fn wait_for_writes(api: &ApiServer, controller: &mut Controller, count: usize) {
    let deadline = Instant::now() + COLD_START_TIMEOUT;
    loop {
        let patched: HashSet<String> = api
            .requests()
            .into_iter()
            .filter(|r| r.verb == "patch" && r.resource == "nodes" && r.subresource.is_empty())
            .filter(|r| r.status == 200)
            .filter_map(|r| r.name)
            .collect();
        if patched.len() >= count {
            return;
        }
        controller.assert_running();
        assert!(
            Instant::now() < deadline,
            "after {COLD_START_TIMEOUT:?} {} of {count} Nodes were patched; the controller's log ends:\n{}",
            patched.len(),
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PATCHes so far: to nodes, and to nodes/status.
fn patches(api: &ApiServer) -> (usize, usize) {
    let requests = api.requests();
    let count = |subresource: &str| {
        requests
            .iter()
            .filter(|r| r.verb == "patch" && r.resource == "nodes" && r.subresource == subresource)
            .count()
    };
    (count(""), count("status"))
}

/// Waits until the controller has been idle for [`IDLE_WINDOW`]; returns
/// when that began (to within 0.1 s). Nodes created before would wait
/// behind the cold start's work and measure that instead.
pub(super) async fn wait_until_idle(controller: &mut Controller) -> Instant {
    let deadline = Instant::now() + COLD_START_TIMEOUT;
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    loop {
        let now = (Instant::now(), controller.cpu_ticks());
        let window_start = samples
            .iter()
            .rev()
            .find(|(at, _)| now.0.duration_since(*at) >= IDLE_WINDOW);
        if let Some((at, ticks)) = window_start
            && now.1 - ticks <= IDLE_TICKS
        {
            return *at;
        }
        samples.push(now);
        controller.assert_running();
        assert!(
            Instant::now() < deadline,
            "the controller was still busy {COLD_START_TIMEOUT:?} after the cold start's writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates each Node once the previous one's route is in; returns
/// created → route announced per node, sorted.
pub(super) async fn create_one_at_a_time(
    api: &ApiServer,
    monitor: &RouteMonitor,
    controller: &mut Controller,
    nodes: Vec<Node>,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(nodes.len());
    for node in nodes {
        let name = node
            .metadata
            .name
            .clone()
            .expect("fixture Nodes have names");
        let created = Instant::now();
        api.put_node(node).expect("the API server stores a Node");
        let subnet = wait_for_subnet(api, controller, &name).await;
        let routed = wait_for_route(monitor, controller, &name, subnet).await;
        latencies.push(routed.saturating_duration_since(created));
    }
    latencies.sort();
    latencies
}

/// The subnet the controller annotated on Node `name`, once it has.
async fn wait_for_subnet(api: &ApiServer, controller: &mut Controller, name: &str) -> Ipv4Net {
    let deadline = Instant::now() + NODE_TIMEOUT;
    loop {
        if let Some(subnet) = api.node(name).as_ref().and_then(subnet_of) {
            return subnet;
        }
        controller.assert_running();
        assert!(
            Instant::now() < deadline,
            "Node {name} got no subnet within {NODE_TIMEOUT:?}; the controller's log ends:\n{}",
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_for_route(
    monitor: &RouteMonitor,
    controller: &mut Controller,
    name: &str,
    subnet: Ipv4Net,
) -> Instant {
    let deadline = Instant::now() + NODE_TIMEOUT;
    loop {
        if let Some(at) = monitor.first_seen(subnet) {
            return at;
        }
        controller.assert_running();
        assert!(
            Instant::now() < deadline,
            "no route to {subnet} (Node {name}) within {NODE_TIMEOUT:?}; the controller's log ends:\n{}",
            controller.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn subnet_of(node: &Node) -> Option<Ipv4Net> {
    let value = node.metadata.annotations.as_ref()?.get(SUBNET_ANNOTATION)?;
    value.split(',').next()?.trim().parse().ok()
}

fn internal_ip(node: &Node) -> Option<IpAddr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    let internal = addresses.iter().find(|a| a.type_ == "InternalIP")?;
    internal.address.parse().ok()
}

/// Every Node has a subnet of its own in the pool, and the router holds
/// exactly one route per Node: its subnet via its InternalIP.
fn check_world(world: &World, count: usize) {
    let pool: Ipv4Net = POOL.parse().expect("the pool is a CIDR");
    let mut want = BTreeMap::new();
    for node in world.api.nodes() {
        let name = node.metadata.name.clone().unwrap_or_default();
        let subnet = subnet_of(&node).unwrap_or_else(|| panic!("Node {name} has no subnet"));
        assert!(
            pool.contains(&subnet),
            "Node {name}: {subnet} is outside the pool"
        );
        let via = internal_ip(&node).unwrap_or_else(|| panic!("Node {name} has no InternalIP"));
        let earlier = want.insert(IpNet::V4(subnet), via);
        assert!(earlier.is_none(), "{subnet} was given to two Nodes");
    }
    assert_eq!(want.len(), count, "Nodes in the API server");
    assert_eq!(kernel_routes(&world.netns), want, "the router's routes");
}

/// The router's routes of the controller: destination → next hop.
fn kernel_routes(netns: &Netns) -> BTreeMap<IpNet, IpAddr> {
    let protocol = PROTOCOL.to_string();
    let json = run(
        "ip",
        &[
            "-j",
            "-n",
            netns.name(),
            "route",
            "show",
            "proto",
            &protocol,
        ],
    );
    let routes: Vec<serde_json::Value> =
        serde_json::from_str(&json).expect("ip -j route prints JSON");
    routes
        .iter()
        .map(|route| {
            let field = |key: &str| route.get(key).and_then(|v| v.as_str()).unwrap_or("");
            let dst = field("dst")
                .parse()
                .unwrap_or_else(|_| panic!("a route without a prefix: {route}"));
            let via = field("gateway")
                .parse()
                .unwrap_or_else(|_| panic!("a route without a gateway: {route}"));
            (dst, via)
        })
        .collect()
}

/// The value at `percent` of sorted `samples` (nearest rank).
pub(super) fn percentile(samples: &[Duration], percent: usize) -> Duration {
    let rank = (samples.len() * percent).div_ceil(100).max(1);
    samples[rank - 1]
}

pub(super) fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_table(settings: &Settings, samples: &[Sample]) {
    println!(
        "\nKubernetes: {} realistic Nodes (~9 KB) at start, then {} created one at a time; \
         real controller (release), fresh namespace and API server per run",
        settings.nodes, settings.created
    );
    println!(
        "converged: all routes announced in the router's kernel; list received: the API server \
         answered the last page of the first LIST; idle: subnets written and the controller \
         idle for {IDLE_WINDOW:?}\n"
    );
    println!(
        "| run | start → converged | list received → converged | start → idle | peak RSS | \
         created → route p50 | p99 | max | PATCHes to nodes (+ nodes/status) until idle |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (run, s) in samples.iter().enumerate() {
        let (p50, p99, max) = created_percentiles(s);
        println!(
            "| {} | {} | {} | {} | {:.1} MiB | {} | {} | {} | {} (+ {}) |",
            run + 1,
            secs(s.start_to_converged),
            secs(s.list_to_converged),
            secs(s.start_to_settled),
            mib(s.peak_rss_kib),
            millis(p50),
            millis(p99),
            millis(max),
            s.patches.0,
            s.patches.1,
        );
    }
}

fn created_percentiles(sample: &Sample) -> (Duration, Duration, Duration) {
    if sample.created.is_empty() {
        return Default::default();
    }
    (
        percentile(&sample.created, 50),
        percentile(&sample.created, 99),
        percentile(&sample.created, 100),
    )
}
