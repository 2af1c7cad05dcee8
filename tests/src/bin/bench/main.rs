//! Benchmarks of issues 2, 3, 4 and 12, printed as tables (not pass/fail):
//!
//! 1. 10,000 routes, each with its own gateway, into a fresh network
//!    namespace: the netlink driver against `ip -batch` with plain routes
//!    and `ip -batch` with nexthop objects; then removal the same three ways.
//! 2. IPAM: allocating every /24 of a /8 (65,536 subnets).
//! 3. A file inventory of 10,000 nodes: the real controller binary from
//!    process start until every route is in the kernel, beside `ip -batch`
//!    (see `file_cold_start.rs`).
//! 4. Kubernetes: the real controller binary against the test API server
//!    holding realistic Nodes, then Nodes created one at a time (see
//!    `kubernetes.rs`): 1,000 by default, 5,000 and 20,000 with `--full`.
//! 5. FRR over SSH: routes through the SSH driver, a local `vtysh -f` and
//!    one `ssh` per route; node created → route in FRR's kernel through the
//!    controller (see `frr_ssh.rs`).
//! 6. BGP: node subnets announced to FRR by the BGP driver beside BIRD
//!    announcing the same static routes; node created → route in FRR's
//!    kernel through the controller (see `bgp.rs`).
//! 7. Only with `--only full-table` (it loads a million routes): a router
//!    carrying a full Internet table, its resync and a cold start of our
//!    routes beside it (see `full_table.rs`).
//!
//! Last, the scale table of issue 12: each row measured in this run, with
//! its goal (see `scale.rs`).
//!
//! Run as root: `cargo build --release -p nativeroute && cargo run --release
//! -p nativeroute-tests --bin bench -- [--full]`; `-- --help` lists the
//! sizes, repetitions and `--only SECTION`.

mod bgp;
mod controller;
mod file_cold_start;
mod frr_ssh;
mod full_table;
mod kubernetes;
mod scale;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use nativeroute::config::PoolConfig;
use nativeroute::ipam::{Family, Ipam};
use nativeroute_router_drivers::netlink::{NetlinkDriver, NetlinkRouter};
use nativeroute_router_drivers::{Change, Ownership, Route, RouterDriver};
use nativeroute_tests::netns::{Netns, require_root, run};

/// Gateways live on this connected network of the router.
const GATEWAY_NET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 200, 0, 0), 16);
const ROUTER_ADDRESS: &str = "10.200.255.254/16";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Routes,
    Ipam,
    /// Row (a) of issue 12: a file inventory's cold start.
    FileColdStart,
    Kubernetes,
    FrrSsh,
    Bgp,
    /// Rows (g) and (h) of issue 12; only ever run by `--only full-table`.
    FullTable,
}

/// Benchmarks of nativeroute (run as root); they print tables, they do not
/// pass or fail. By default at the reduced size CI runs; `--full` for the
/// sizes of the issues' goals (about 10 minutes more).
#[derive(clap::Parser)]
#[command(name = "bench")]
struct Cli {
    /// The sizes of the issues' goals: 5,000 and 20,000 Kubernetes nodes
    /// (rows b to f of issue 12), 5,000 routes over SSH, three runs each.
    #[arg(long)]
    full: bool,
    /// Routes for the netlink section and nodes of the file cold start.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Repetitions of the netlink, file and Kubernetes sections (medians;
    /// default 1, with --full 3).
    #[arg(long)]
    runs: Option<usize>,
    /// Nodes the Kubernetes section starts with (default 1,000; with
    /// --full it runs twice, at 5,000 and at 20,000).
    #[arg(long)]
    nodes: Option<usize>,
    /// Nodes the Kubernetes section then creates one at a time.
    #[arg(long)]
    created: Option<usize>,
    /// Routes the FRR-over-SSH section sends each way (default 1,000; with
    /// --full 5,000).
    #[arg(long)]
    frr_routes: Option<usize>,
    /// Routes sent with one ssh command each (the naive way), timed and
    /// scaled to --frr-routes.
    #[arg(long, default_value_t = 500)]
    per_route_sample: usize,
    /// Routes the BGP section announces, ours and BIRD's (default 2,000;
    /// with --full 10,000).
    #[arg(long)]
    bgp_routes: Option<usize>,
    /// Foreign routes the full-table section loads first.
    #[arg(long, default_value_t = 1_000_000)]
    full_table_foreign: usize,
    /// Routes of ours the full-table section adds.
    #[arg(long, default_value_t = 10_000)]
    full_table_ours: usize,
    /// Resyncs timed per run of the full-table section.
    #[arg(long, default_value_t = 5)]
    full_table_resyncs: usize,
    /// Run one section only.
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// Keep the controller's logs here (default: a temporary directory).
    #[arg(long)]
    log_dir: Option<std::path::PathBuf>,
    /// The controller's RUST_LOG.
    #[arg(long, default_value = "warn")]
    controller_log: String,
}

struct Args {
    routes: usize,
    runs: usize,
    only: Option<Section>,
    file_cold_start: file_cold_start::Settings,
    /// One Kubernetes section per size.
    kubernetes: Vec<kubernetes::Settings>,
    frr_ssh: frr_ssh::Settings,
    bgp: bgp::Settings,
    full_table: full_table::Settings,
}

impl Args {
    fn runs(&self, section: Section) -> bool {
        self.only.is_none_or(|only| only == section)
    }
}

fn parse_args() -> Args {
    let cli = <Cli as clap::Parser>::parse();
    let runs = cli.runs.unwrap_or(if cli.full { 3 } else { 1 });
    let kubernetes_at = |nodes: usize, created: usize, runs: usize, idle_cpu: Option<Duration>| {
        kubernetes::Settings {
            nodes,
            created: cli.created.unwrap_or(created),
            runs,
            idle_cpu,
            log_dir: cli.log_dir.clone(),
            log_level: cli.controller_log.clone(),
        }
    };
    let kubernetes = match (cli.nodes, cli.full) {
        (Some(nodes), _) => vec![kubernetes_at(nodes, 1_000, runs, None)],
        // Rows b and e at 5,000; b', c, d and f at 20,000 (one run: the
        // cold start alone takes half a minute, the idle minute one more).
        (None, true) => vec![
            kubernetes_at(5_000, 1_000, runs, None),
            kubernetes_at(20_000, 1_000, 1, Some(IDLE_CPU_WINDOW)),
        ],
        (None, false) => vec![kubernetes_at(1_000, 300, runs, None)],
    };
    Args {
        routes: cli.routes,
        runs,
        only: cli.only,
        file_cold_start: file_cold_start::Settings {
            nodes: cli.routes,
            runs,
            log_level: cli.controller_log.clone(),
        },
        kubernetes,
        full_table: full_table::Settings {
            foreign: cli.full_table_foreign,
            ours: cli.full_table_ours,
            runs,
            resyncs: cli.full_table_resyncs,
        },
        bgp: bgp::Settings {
            routes: cli
                .bgp_routes
                .unwrap_or(if cli.full { 10_000 } else { 2_000 }),
            nodes: if cli.full { 5_000 } else { 1_000 },
            created: if cli.full { 300 } else { 100 },
            runs,
            log_level: cli.controller_log.clone(),
        },
        frr_ssh: frr_ssh::Settings {
            routes: cli
                .frr_routes
                .unwrap_or(if cli.full { 5_000 } else { 1_000 }),
            per_route_sample: cli.per_route_sample,
            log_level: cli.controller_log,
            ..frr_ssh::Settings::default()
        },
    }
}

/// Row (f): the controller's CPU once converged, over this long.
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(60);

/// Route i: 11.x.y.0/24 via 10.200.a.b, every gateway distinct.
fn routes(count: usize) -> Vec<Route> {
    (0..count)
        .map(|i| {
            let i = u32::try_from(i).expect("route count fits in u32");
            let dst = Ipv4Addr::from(0x0b00_0000 | (i << 8));
            let via = Ipv4Addr::from(u32::from(GATEWAY_NET.network()) + 1 + i);
            Route::new(IpNet::V4(Ipv4Net::new_assert(dst, 24)), IpAddr::V4(via))
        })
        .collect()
}

/// A namespace with one interface on the gateways' network.
fn router_namespace() -> Netns {
    let ns = Netns::new();
    ns.add_connected_network("gw0", ROUTER_ADDRESS);
    ns
}

fn ip_batch(ns: &Netns, lines: &str) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run ip -batch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("feed ip -batch");
    let status = child.wait().expect("wait for ip -batch");
    let took = started.elapsed();
    assert!(status.success(), "ip -batch failed");
    took
}

fn plain_lines(routes: &[Route], verb: &str) -> String {
    routes
        .iter()
        .map(|r| format!("route {verb} {} via {} dev gw0 proto 203\n", r.dst, r.via))
        .collect()
}

fn nexthop_add_lines(routes: &[Route]) -> String {
    let mut lines = String::new();
    for (id, r) in routes.iter().enumerate() {
        lines.push_str(&format!(
            "nexthop add id {} via {} dev gw0 proto 203\n",
            id + 1,
            r.via
        ));
    }
    for (id, r) in routes.iter().enumerate() {
        lines.push_str(&format!("route add {} nhid {} proto 203\n", r.dst, id + 1));
    }
    lines
}

/// Route deletions, then nexthop deletions (a route that uses a nexthop
/// object is not matched by `via`: it is deleted by prefix).
fn nexthop_del_lines(routes: &[Route]) -> (String, String) {
    let routes_out = routes
        .iter()
        .map(|r| format!("route del {} proto 203\n", r.dst))
        .collect();
    let nexthops_out = (1..=routes.len())
        .map(|id| format!("nexthop del id {id}\n"))
        .collect();
    (routes_out, nexthops_out)
}

/// One method's times: add, withdraw the routes, clean up what is left.
#[derive(Clone, Copy, Default)]
struct Times {
    add: Duration,
    remove: Duration,
    cleanup: Duration,
}

fn count_routes(ns: &Netns) -> usize {
    run(
        "ip",
        &["-n", ns.name(), "route", "show", "root", "11.0.0.0/8"],
    )
    .lines()
    .count()
}

async fn driver_run(routes: &[Route]) -> Times {
    let ns = router_namespace();
    let mut driver = NetlinkDriver::connect(NetlinkRouter {
        name: "bench".into(),
        netns: Some(ns.name().to_owned()),
        table: 254,
        ownership: Ownership {
            pool: vec!["11.0.0.0/8".parse().expect("cidr")],
            netlink_protocol: 203,
            route_tag: 1111,
            bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
        },
    })
    .await
    .expect("connect the netlink driver");
    let adds: Vec<Change> = routes.iter().copied().map(Change::Add).collect();
    let started = Instant::now();
    let outcomes = driver.apply(&adds).await.expect("apply adds");
    let add = started.elapsed();
    assert!(outcomes.iter().all(Result::is_ok), "some adds failed");
    assert_eq!(count_routes(&ns), routes.len());
    let removes: Vec<Change> = routes.iter().copied().map(Change::Remove).collect();
    let started = Instant::now();
    let outcomes = driver.apply(&removes).await.expect("apply removes");
    let remove = started.elapsed();
    assert!(outcomes.iter().all(Result::is_ok), "some removes failed");
    assert_eq!(count_routes(&ns), 0);
    let started = Instant::now();
    driver.tidy().await.expect("tidy");
    let cleanup = started.elapsed();
    assert_eq!(ns.ip("nexthop show"), "", "nexthops left after tidy");
    Times {
        add,
        remove,
        cleanup,
    }
}

fn iproute_run(routes: &[Route], add: &str, del: &str, cleanup: &str) -> Times {
    let ns = router_namespace();
    let add_time = ip_batch(&ns, add);
    assert_eq!(count_routes(&ns), routes.len());
    let remove = ip_batch(&ns, del);
    assert_eq!(count_routes(&ns), 0);
    let cleanup = if cleanup.is_empty() {
        Duration::ZERO
    } else {
        ip_batch(&ns, cleanup)
    };
    Times {
        add: add_time,
        remove,
        cleanup,
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn bench_ipam() -> (Duration, usize) {
    let pool = PoolConfig {
        cidrs: vec!["10.0.0.0/8".parse().expect("cidr")],
        node_mask_v4: 24,
        node_mask_v6: 64,
        reserved: vec![],
    };
    let mut ipam = Ipam::new(&pool);
    let names: Vec<String> = (0..65_536).map(|i| format!("node-{i}")).collect();
    let started = Instant::now();
    let mut given = 0;
    for name in &names {
        if ipam
            .allocate(name, &[Family::V4])
            .is_ok_and(|s| !s.is_empty())
        {
            given += 1;
        }
    }
    (started.elapsed(), given)
}

/// The driver against both iproute2 methods; median of `args.runs` runs each.
async fn bench_routes(args: &Args) {
    let routes = routes(args.routes);
    let plain = (plain_lines(&routes, "add"), plain_lines(&routes, "del"));
    let nexthops = (nexthop_add_lines(&routes), nexthop_del_lines(&routes));

    let mut samples: [Vec<Times>; 3] = Default::default();
    for _ in 0..args.runs {
        samples[0].push(driver_run(&routes).await);
        samples[1].push(iproute_run(&routes, &plain.0, &plain.1, ""));
        samples[2].push(iproute_run(
            &routes,
            &nexthops.0,
            &nexthops.1.0,
            &nexthops.1.1,
        ));
    }
    let medians: Vec<Times> = samples
        .iter()
        .map(|runs| Times {
            add: median(runs.iter().map(|t| t.add).collect()),
            remove: median(runs.iter().map(|t| t.remove).collect()),
            cleanup: median(runs.iter().map(|t| t.cleanup).collect()),
        })
        .collect();
    print_routes(args, &medians);
}

fn print_routes(args: &Args, medians: &[Times]) {
    let best_add = medians[1].add.min(medians[2].add);
    let best_remove = medians[1].remove.min(medians[2].remove);
    let best_total =
        (medians[1].remove + medians[1].cleanup).min(medians[2].remove + medians[2].cleanup);

    println!(
        "\n{} routes, each with its own gateway, fresh namespace per run; median of {} runs",
        args.routes, args.runs
    );
    println!(
        "remove: until the routes are out of the kernel; clean-up: deleting the nexthop objects left unused\n"
    );
    println!(
        "| method | add | remove | clean-up | add vs best | remove vs best | remove + clean-up vs best |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, times) in [
        "nativeroute netlink driver",
        "ip -batch, plain routes",
        "ip -batch, nexthop objects",
    ]
    .iter()
    .zip(medians)
    {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "| {name} | {} | {} | {} | {:.2}x | {:.2}x | {:.2}x |",
            secs(times.add),
            secs(times.remove),
            secs(times.cleanup),
            ratio(times.add, best_add),
            ratio(times.remove, best_remove),
            ratio(times.remove + times.cleanup, best_total),
        );
    }
}

#[tokio::main]
async fn main() {
    require_root();
    let args = parse_args();
    let mut scale = scale::Table::default();
    if args.runs(Section::Routes) {
        bench_routes(&args).await;
    }
    if args.runs(Section::Ipam) {
        let (took, given) = bench_ipam();
        println!(
            "\nIPAM: {given} subnets (/24s of 10.0.0.0/8) allocated in {} ({:.0} ns each)\n",
            secs(took),
            took.as_nanos() as f64 / given as f64
        );
    }
    if args.runs(Section::FileColdStart) {
        scale.file_cold_start(file_cold_start::bench(&args.file_cold_start).await);
    }
    if args.runs(Section::Kubernetes) {
        for settings in &args.kubernetes {
            scale.kubernetes(kubernetes::bench(settings).await);
        }
    }
    if args.runs(Section::FrrSsh) {
        frr_ssh::bench(&args.frr_ssh).await;
    }
    if args.runs(Section::Bgp) {
        bgp::bench(&args.bgp).await;
    }
    if args.only == Some(Section::FullTable) {
        full_table::bench(&args.full_table).await;
    }
    scale.print();
}
