//! Row (a) of issue 12: the real controller (release binary) with a file
//! inventory of N nodes and a netlink router in a fresh namespace, from
//! process start until all N routes are in the router's kernel (seen by a
//! netlink monitor); beside it, in the same run, `ip -batch` with nexthop
//! objects adding the same number of routes, each with its own gateway.

use std::path::Path;
use std::time::{Duration, Instant};

use nativeroute_tests::route_monitor::RouteMonitor;

use super::controller::Controller;
use super::kubernetes::wait_for_routes;
use super::{GATEWAY_NET, ip_batch, median, nexthop_add_lines, router_namespace, routes, secs};

/// The controller's routes carry this protocol number.
const PROTOCOL: u8 = 203;
/// Time left between runs for the last namespace to go.
const TEARDOWN: Duration = Duration::from_secs(3);

pub struct Settings {
    pub nodes: usize,
    pub runs: usize,
    pub log_level: String,
}

/// The medians of the runs.
pub struct Summary {
    pub nodes: usize,
    pub controller: Duration,
    pub ip_batch: Duration,
}

pub async fn bench(settings: &Settings) -> Summary {
    let mut controller = Vec::new();
    let mut baseline = Vec::new();
    let lines = nexthop_add_lines(&routes(settings.nodes));
    for run in 1..=settings.runs {
        eprintln!("file cold start run {run}: {} nodes", settings.nodes);
        controller.push(controller_run(settings).await);
        // The kernel tears a namespace of 10,000 routes down in the
        // background, slowing whatever runs meanwhile (the baseline took
        // 0.6 s instead of 0.15 s right after one).
        tokio::time::sleep(TEARDOWN).await;
        let ns = router_namespace();
        baseline.push(ip_batch(&ns, &lines));
        drop(ns);
        tokio::time::sleep(TEARDOWN).await;
    }
    println!(
        "\nFile inventory of {} nodes, process start → every route in the kernel (netlink \
         monitor); release controller, fresh namespace per run; beside it `ip -batch` with \
         nexthop objects adding as many routes\n",
        settings.nodes
    );
    println!("| run | nativeroute | ip -batch, nexthop objects | ratio |");
    println!("| --- | --- | --- | --- |");
    for (run, (ours, theirs)) in controller.iter().zip(&baseline).enumerate() {
        println!(
            "| {} | {} | {} | {:.2}× |",
            run + 1,
            secs(*ours),
            secs(*theirs),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
    Summary {
        nodes: settings.nodes,
        controller: median(controller),
        ip_batch: median(baseline),
    }
}

/// One cold start: the inventory written, the controller started, until
/// the last route is announced.
async fn controller_run(settings: &Settings) -> Duration {
    let ns = router_namespace();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let nodes = dir.path().join("nodes.yaml");
    write_inventory(&nodes, settings.nodes);
    let config = dir.path().join("nativeroute.yaml");
    let text = format!(
        "pool: {{cidrs: [11.0.0.0/8], nodeMaskV4: 24}}\n\
         nodes: {{source: file, file: {}}}\n\
         routers: [{{name: rtr, driver: netlink, netns: {}}}]\n",
        nodes.display(),
        ns.name()
    );
    std::fs::write(&config, text).expect("the controller config is written");
    let monitor = RouteMonitor::start(ns.name(), PROTOCOL).expect("the route monitor starts");
    let started = Instant::now();
    let mut controller = Controller::start(
        &config,
        None,
        &dir.path().join("controller.log"),
        &settings.log_level,
    );
    let done = wait_for_routes(&monitor, &mut controller, settings.nodes).await;
    assert_eq!(
        monitor.overruns(),
        0,
        "the route monitor missed announcements"
    );
    controller.stop();
    done.saturating_duration_since(started)
}

/// Node i at the i-th address of the gateways' network.
fn write_inventory(path: &Path, count: usize) {
    let first = u32::from(GATEWAY_NET.network()) + 1;
    let mut text = String::from("nodes:\n");
    for i in 0..count {
        let offset = u32::try_from(i).expect("node count fits in u32");
        let address = std::net::Ipv4Addr::from(first + offset);
        text.push_str(&format!("  - {{name: node-{i}, address: {address}}}\n"));
    }
    std::fs::write(path, text).expect("the inventory is written");
}
