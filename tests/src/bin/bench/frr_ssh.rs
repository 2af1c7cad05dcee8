//! Issue 4: FRR over SSH. Real FRR (zebra, staticd) in a namespace behind a
//! real sshd; times run until the routes are in the router's kernel, as
//! announced to a netlink monitor (zebra installs them after vtysh returns).
//!
//! 1. The same routes three ways: the SSH driver (a fresh list, then one
//!    `vtysh -f`, over one persistent SSH connection), the same lines
//!    through a local `vtysh -f`
//!    (FRR's own limit), and one OpenSSH `ssh … vtysh -c …` per route (what
//!    a naive script does; timed on a sample and scaled, since 5,000 would
//!    take minutes).
//! 2. The real controller against the test API server with FRR over SSH as
//!    its router: Nodes created one at a time, each timed from creation to
//!    its route in the kernel.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use nativeroute_router_drivers::ssh::{
    HostKeyPolicy, SshDriver, SshRouter as SshRouterConfig, Timeouts, VendorName,
};
use nativeroute_router_drivers::{Change, Ownership, Route, RouterDriver};
use nativeroute_tests::apiserver::{ApiServer, realistic_nodes};
use nativeroute_tests::netns::run;
use nativeroute_tests::route_monitor::RouteMonitor;
use nativeroute_tests::ssh_router::SshRouter;
use nativeroute_tests::sshd::KeyKind;

use super::controller::Controller;
use super::kubernetes::{
    create_one_at_a_time, millis, percentile, wait_for_routes, wait_until_idle,
};
use super::secs;

/// Zebra installs static routes with this kernel protocol.
const ZEBRA_STATIC: u8 = 196;
/// Gateways and the fixture Nodes' InternalIPs (10.64.0.1, …) are on-link here.
const GATEWAY_ADDRESS: &str = "10.64.255.254/16";
const INTERFACE: &str = "p3p2";
const POOL: &str = "11.0.0.0/8";
const KERNEL_TIMEOUT: Duration = Duration::from_secs(300);

const GOAL_VS_LOCAL: f64 = 1.5;
const GOAL_VS_PER_ROUTE: f64 = 20.0;
const GOAL_CREATED_P99: Duration = Duration::from_millis(300);

pub struct Settings {
    pub routes: usize,
    /// Routes sent one SSH command each, to time the naive way.
    pub per_route_sample: usize,
    pub nodes: usize,
    pub created: usize,
    pub log_level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            routes: 5_000,
            per_route_sample: 500,
            nodes: 100,
            created: 300,
            log_level: "warn".into(),
        }
    }
}

pub async fn bench(settings: &Settings) {
    let batch = bench_batches(settings).await;
    let created = bench_node_events(settings).await;
    print_table(settings, &batch, &created);
}

/// Time until the kernel held every route, per way of sending them.
struct BatchTimes {
    ssh_returned: Duration,
    ssh: Duration,
    local: Duration,
    per_route_each: Duration,
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

fn ownership() -> Ownership {
    Ownership {
        pool: vec![POOL.parse().expect("pool")],
        netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
        route_tag: Ownership::DEFAULT_ROUTE_TAG,
        bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
    }
}

fn frr_router() -> SshRouter {
    let router = SshRouter::start_frr().expect("FRR behind sshd starts");
    router.ip(&format!("addr add {GATEWAY_ADDRESS} dev {INTERFACE}"));
    router
}

fn driver_config(router: &SshRouter) -> SshRouterConfig {
    SshRouterConfig {
        name: "frr".into(),
        vendor: VendorName::Frr,
        host: router.address().ip().to_string(),
        port: router.address().port(),
        netns: Some(router.netns().to_owned()),
        username: router.user().to_owned(),
        private_key_file: router.key(KeyKind::Ed25519).private_key_path().into(),
        host_keys: HostKeyPolicy {
            known_hosts_file: router.known_hosts_file().expect("known_hosts"),
            trust_on_first_use: false,
        },
        save_config: false,
        commit_confirm: None,
        cli_command: Some(router.frr().expect("FRR").vtysh_command()),
        timeouts: Timeouts {
            command: Duration::from_secs(300),
            ..Timeouts::default()
        },
        ownership: ownership(),
    }
}

/// The FRR lines for `changes`, exactly as the driver renders them.
fn frr_lines(changes: &[Change]) -> Vec<String> {
    let profile = VendorName::Frr.profile();
    changes
        .iter()
        .flat_map(|change| profile.render(change, &ownership()))
        .collect()
}

async fn wait_for_kernel(monitor: &RouteMonitor, count: usize, what: &str) -> Instant {
    let deadline = Instant::now() + KERNEL_TIMEOUT;
    loop {
        if let Some(at) = monitor.filled(count) {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the kernel held {} of {count} routes after {KERNEL_TIMEOUT:?}",
            monitor.present()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `ip` (a monitor only knows routes announced since it started).
async fn wait_for_empty(router: &SshRouter, what: &str) {
    let deadline = Instant::now() + KERNEL_TIMEOUT;
    loop {
        let left = run(
            "ip",
            &["-n", router.netns(), "route", "show", "proto", "196"],
        )
        .lines()
        .count();
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {left} routes still in the kernel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each way from an empty table; FRR is emptied between them with one
/// local batch of removals.
async fn bench_batches(settings: &Settings) -> BatchTimes {
    let router = frr_router();
    let frr = router.frr().expect("FRR");
    let routes = routes(settings.routes);
    let adds: Vec<Change> = routes.iter().copied().map(Change::Add).collect();
    let removes: Vec<Change> = routes.iter().copied().map(Change::Remove).collect();
    let add_text = frr_lines(&adds).join("\n") + "\n";
    let remove_text = frr_lines(&removes).join("\n") + "\n";
    let empty_frr = async |what: &str| {
        frr.vtysh_batch(&remove_text)
            .expect("local removal batch runs");
        wait_for_empty(&router, what).await;
    };
    // A monitor per way: it times the first time the table held n routes.
    let monitor = || RouteMonitor::start(router.netns(), ZEBRA_STATIC).expect("route monitor");

    eprintln!(
        "frr over ssh: {} routes through the SSH driver",
        routes.len()
    );
    let watch = monitor();
    let mut driver = SshDriver::connect(driver_config(&router))
        .await
        .expect("the SSH driver connects");
    let started = Instant::now();
    let outcomes = driver.apply(&adds).await.expect("the batch runs");
    let ssh_returned = started.elapsed();
    assert!(outcomes.iter().all(Result::is_ok), "some adds failed");
    let ssh = wait_for_kernel(&watch, routes.len(), "ssh driver").await - started;
    empty_frr("after the ssh driver").await;

    eprintln!("frr over ssh: the same lines through a local vtysh -f");
    let watch = monitor();
    let started = Instant::now();
    let output = frr.vtysh_batch(&add_text).expect("local vtysh runs");
    assert!(output.status.success(), "local vtysh -f failed");
    let local = wait_for_kernel(&watch, routes.len(), "local vtysh").await - started;
    empty_frr("after local vtysh").await;

    let sample = settings.per_route_sample.min(routes.len());
    eprintln!("frr over ssh: {sample} routes with one ssh command each");
    let key = router.key(KeyKind::Ed25519);
    let vtysh = frr.vtysh_command();
    let watch = monitor();
    let started = Instant::now();
    for line in frr_lines(&adds[..sample]) {
        let command = format!("{vtysh} -c 'configure terminal' -c '{line}'");
        router
            .ssh_ok(key, &command, None)
            .expect("one ssh command per route");
    }
    let per_route = wait_for_kernel(&watch, sample, "per-route ssh").await - started;
    BatchTimes {
        ssh_returned,
        ssh,
        local,
        per_route_each: per_route / u32::try_from(sample.max(1)).expect("a small sample"),
    }
}

/// Node created → route in FRR's kernel table, with the controller's
/// persistent session; sorted.
async fn bench_node_events(settings: &Settings) -> Vec<Duration> {
    let router = frr_router();
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
    let driver = driver_config(&router);
    let config = dir.path().join("nativeroute.yaml");
    let text = format!(
        "pool: {{cidrs: [{POOL}], nodeMaskV4: 24}}\n\
         ipam: allocate\n\
         nodes: {{source: kubernetes}}\n\
         resyncInterval: 60s\n\
         routers:\n  - name: frr\n    driver: ssh\n    vendor: frr\n    netns: {netns}\n    \
         address: {host}:{port}\n    username: {user}\n    privateKeyFile: {key}\n    \
         knownHostsFile: {known_hosts}\n    cliCommand: \"{cli}\"\n",
        netns = router.netns(),
        host = driver.host,
        port = driver.port,
        user = driver.username,
        key = driver.private_key_file.display(),
        known_hosts = driver.host_keys.known_hosts_file.display(),
        cli = driver.cli_command.as_deref().unwrap_or("vtysh"),
    );
    std::fs::write(&config, text).expect("the controller config is written");
    let monitor = RouteMonitor::start(router.netns(), ZEBRA_STATIC).expect("route monitor");
    let log = dir.path().join("controller.log");
    let mut controller = Controller::start(&config, Some(&kubeconfig), &log, &settings.log_level);
    eprintln!(
        "frr over ssh: controller cold start with {} Nodes",
        settings.nodes
    );
    wait_for_routes(&monitor, &mut controller, settings.nodes).await;
    wait_until_idle(&mut controller).await;
    eprintln!(
        "frr over ssh: creating {} Nodes one at a time",
        settings.created
    );
    let created = create_one_at_a_time(&api, &monitor, &mut controller, later).await;
    controller.stop();
    created
}

fn print_table(settings: &Settings, batch: &BatchTimes, created: &[Duration]) {
    let per_route_total = batch.per_route_each * u32::try_from(settings.routes).unwrap_or(u32::MAX);
    println!();
    println!(
        "FRR over SSH: {} static routes until all are in the router's kernel (one run)",
        settings.routes
    );
    println!("| way | time | routes/s |");
    println!("| --- | --- | --- |");
    let rate = |d: Duration| settings.routes as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "| SSH driver (a fresh list, then one vtysh -f, over the session; vtysh returned after {}) | {} | {:.0} |",
        secs(batch.ssh_returned),
        secs(batch.ssh),
        rate(batch.ssh)
    );
    println!(
        "| local vtysh -f, same lines | {} | {:.0} |",
        secs(batch.local),
        rate(batch.local)
    );
    println!(
        "| one ssh command per route ({} timed, {} each; scaled) | {} | {:.0} |",
        settings.per_route_sample,
        millis(batch.per_route_each),
        secs(per_route_total),
        rate(per_route_total)
    );
    let vs_local = batch.ssh.as_secs_f64() / batch.local.as_secs_f64().max(1e-9);
    let vs_per_route = per_route_total.as_secs_f64() / batch.ssh.as_secs_f64().max(1e-9);
    println!();
    println!(
        "Node created → route in FRR's kernel, {} Nodes one at a time: p50 {}, p99 {}, max {}",
        created.len(),
        millis(percentile(created, 50)),
        millis(percentile(created, 99)),
        millis(created.last().copied().unwrap_or_default())
    );
    println!();
    println!("| goal | measured | |");
    println!("| --- | --- | --- |");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "| SSH driver ≤ {GOAL_VS_LOCAL}× local vtysh -f | {vs_local:.2}× | {} |",
        verdict(vs_local <= GOAL_VS_LOCAL)
    );
    println!(
        "| SSH driver ≥ {GOAL_VS_PER_ROUTE}× faster than ssh per route | {vs_per_route:.0}× | {} |",
        verdict(vs_per_route >= GOAL_VS_PER_ROUTE)
    );
    let p99 = percentile(created, 99);
    println!(
        "| node event → route in FRR's kernel, p99 ≤ {} | {} | {} |",
        millis(GOAL_CREATED_P99),
        millis(p99),
        verdict(p99 <= GOAL_CREATED_P99)
    );
}
