//! The chaos run (issue 9, item 6): "never a mass outage", on the real
//! kernel and the test API server. Two real controller processes with
//! leader election route Nodes of the test API server into a netlink
//! router (a network namespace) and FRR behind sshd (the SSH driver),
//! while a seeded plan creates, deletes, re-creates, relabels and
//! annotates Nodes (pins, typos, hostile values), kills the controllers
//! with SIGKILL, hands the lease over, and breaks the API server and the
//! routers. At checkpoints and at the end every router must hold exactly
//! the routes the Nodes ask for; no two Nodes may share a subnet; foreign
//! routes stay as the operator left them; no route of a node that still
//! existed and matched may be withdrawn. The summary is a Markdown table;
//! the exit status is 1 if an invariant broke (2 if the run itself
//! failed).
//!
//! Run as root, after building the controller into the same target
//! directory: `cargo build -p nativeroute --bin nativeroute && cargo run
//! -p nativeroute-tests --bin chaos -- --seed 1` (CI size); `--full` for
//! 10,000 events. The same seed replays the same events and faults.

mod checkpoint;
mod cluster;
mod controllers;
mod desired;
mod faults;
mod frr_router;
mod kernel_router;
mod model;
mod observe;
mod plan;
mod report;
mod run;
#[cfg(test)]
mod tests;
mod verdict;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nativeroute_tests::netns::require_root;
use nativeroute_tests::route_monitor::RouteMonitor;

use cluster::{Budget, Cluster};
use controllers::Controllers;
use observe::{Observer, Targets};
use plan::{Plan, Sizes};
use report::Summary;
use run::{OUR_PROTOCOL, Run, Tally};
use verdict::Evidence;
use world::{GUARD_WINDOW, World};

/// The run's own withdrawal budget: 35 % of the routed nodes over a
/// window a little longer than the guard's (50 % over 20 s).
const BUDGET_SHARE: f64 = 0.35;
const BUDGET_WINDOW: Duration = Duration::from_secs(GUARD_WINDOW.as_secs() + 5);
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// A seeded chaos run against the real controller (run as root).
#[derive(clap::Parser)]
#[command(name = "chaos")]
struct Cli {
    /// The seed; the same seed replays the same events and faults.
    /// Default: drawn from the clock (and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Full size: 10,000 events, 20 restarts, 2 handovers, every fault
    /// several times, 9 checkpoints.
    #[arg(long)]
    full: bool,
    /// Node events (CI size: 700).
    #[arg(long)]
    events: Option<usize>,
    /// kill -9 restarts of a controller (CI size: 4).
    #[arg(long)]
    restarts: Option<usize>,
    /// Leader handovers by SIGTERM (2).
    #[arg(long)]
    handovers: Option<usize>,
    /// The node population kept around: half to one and a half of it
    /// (CI size 100, full 130; at most 133, so the pool never runs out).
    #[arg(long)]
    nodes: Option<usize>,
    /// The `nativeroute` binary; default: the one beside this binary.
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Keep the controllers' logs and the config here (default: a
    /// directory under /tmp, removed after a passing run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The controllers' RUST_LOG.
    #[arg(long, default_value = "info")]
    controller_log: String,
}

impl Cli {
    fn sizes(&self) -> Sizes {
        let mut sizes = plan::sizes(self.full);
        sizes.events = self.events.unwrap_or(sizes.events).max(1);
        sizes.restarts = self.restarts.unwrap_or(sizes.restarts);
        sizes.handovers = self.handovers.unwrap_or(sizes.handovers);
        sizes.nodes = self.nodes.unwrap_or(sizes.nodes);
        sizes
    }

    fn replay_command(&self, seed: u64, sizes: &Sizes) -> String {
        format!(
            "chaos --seed {seed}{} --events {} --restarts {} --handovers {} --nodes {}",
            if self.full { " --full" } else { "" },
            sizes.events,
            sizes.restarts,
            sizes.handovers,
            sizes.nodes
        )
    }
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    require_root();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // The test API server serves both controllers from this runtime
        // while the run blocks on `ip`, vtysh and sshd now and then.
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chaos: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        // Interrupted or terminated, the run still tears its world down
        // (namespaces, FRR, sshd, controllers) as the future is dropped.
        let terminated = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => signal.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = chaos(&cli) => match outcome {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(err) => {
                    eprintln!("chaos: the run failed: {err:#}");
                    ExitCode::from(2)
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("chaos: interrupted; tearing down");
                ExitCode::from(130)
            }
            _ = terminated => {
                eprintln!("chaos: terminated (SIGTERM); tearing down");
                ExitCode::from(143)
            }
        }
    })
}

/// The default controller binary: cargo builds it beside this one.
fn controller_binary(cli: &Cli) -> Result<PathBuf> {
    let binary = match &cli.controller {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("this binary's path")?
            .with_file_name("nativeroute"),
    };
    if !binary.exists() {
        bail!(
            "{} is missing: build it into the same target directory (`cargo build -p nativeroute --bin nativeroute`) or pass --controller",
            binary.display()
        );
    }
    Ok(binary)
}

async fn chaos(cli: &Cli) -> Result<bool> {
    let sizes = cli.sizes();
    if sizes.nodes < 10 || sizes.nodes * 3 / 2 > model::MOST_NODES {
        bail!(
            "--nodes {} is out of range: 10 to {} (the population grows to one and a half of it)",
            sizes.nodes,
            model::MOST_NODES * 2 / 3
        );
    }
    let seed = cli.seed.unwrap_or_else(clock_seed);
    let plan = Plan::generate(seed, &sizes);
    let command = cli.replay_command(seed, &sizes);
    eprintln!(
        "chaos: seed {seed}, plan {} ({} events, {} steps); replay with: {command}",
        plan.digest(),
        plan.events(),
        plan.steps.len()
    );
    let binary = controller_binary(cli)?;
    let dir = cli.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("nativeroute-chaos-{seed}-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("chaos: logs and config in {}", dir.display());
    let started = Instant::now();
    let mut run = build(cli, &binary, &dir, &sizes, started).await?;
    for event in &plan.initial {
        run.cluster.apply(event).await?;
    }
    let initial_nodes = run.cluster.population();
    // The summary counts the plan's events, not the initial population.
    run.cluster.counts.clear();
    run.tally.least_nodes = initial_nodes;
    run.tally.most_nodes = initial_nodes;
    run.controllers.start(0)?;
    run.controllers.start(1)?;
    run.wait_for_leader(Duration::from_secs(30)).await?;
    run.log("first checkpoint: the initial population routed");
    run.checkpoint().await?;
    // A cold start is not an outage: the nodes were registered before any
    // controller ran.
    run.tally.control_faults.push((started, Instant::now()));
    run.play(&plan).await?;
    let passed = finish(run, seed, plan.digest(), command, initial_nodes).await?;
    if passed && cli.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(passed)
}

async fn build(
    cli: &Cli,
    binary: &std::path::Path,
    dir: &std::path::Path,
    sizes: &Sizes,
    started: Instant,
) -> Result<Run> {
    let world = World::build(dir).await?;
    let controllers = Controllers::new(
        binary,
        &world.config,
        &world.kubeconfig,
        dir,
        &cli.controller_log,
    )?;
    let cluster = Cluster::new(
        world.api.clone(),
        sizes.nodes,
        Budget::new(BUDGET_WINDOW, BUDGET_SHARE),
    )?;
    let observer = Observer::start(Targets {
        kernel_netns: world.kernel.name().to_owned(),
        frr_netns: world.frr.netns().to_owned(),
        api: world.api.clone(),
        metrics: controllers.members.iter().map(|m| m.metrics).collect(),
        every: SAMPLE_EVERY,
    })?;
    let monitor = RouteMonitor::start(world.kernel.name(), OUR_PROTOCOL)?;
    Ok(Run {
        world,
        controllers,
        cluster,
        observer,
        monitor: Some(monitor),
        kernel_withdrawals: Vec::new(),
        monitor_overruns: 0,
        timers: Vec::new(),
        tally: Tally::default(),
        started,
    })
}

/// Stops the controllers, judges what was seen, prints the summary.
async fn finish(
    mut run: Run,
    seed: u64,
    digest: String,
    command: String,
    initial_nodes: usize,
) -> Result<bool> {
    let ended = Instant::now();
    run.observer.stop();
    for index in 0..run.controllers.members.len() {
        if run.controllers.is_up(index) {
            let _ = tokio::task::block_in_place(|| {
                run.controllers.terminate(index, Duration::from_secs(15))
            });
        }
    }
    let kernel_withdrawals = run.all_kernel_withdrawals();
    let overruns = run.monitor_overruns + run.monitor.as_ref().map_or(0, RouteMonitor::overruns);
    let requests = run.world.api.requests();
    let to_run = |query: &str| query.contains("fieldManager=chaos");
    let server_errors = (
        requests
            .iter()
            .filter(|r| r.status == 500 && !to_run(&r.query))
            .count(),
        requests
            .iter()
            .filter(|r| r.status == 500 && to_run(&r.query))
            .count(),
    );
    let gone = requests.iter().filter(|r| r.status == 410).count();
    let observed = run.observer.observed();
    let evidence = Evidence {
        incarnations: run.cluster.incarnations(),
        subnets: &observed.subnets,
        routes: &observed.routes,
        kernel_withdrawals: &kernel_withdrawals,
        router_faults: &run.tally.router_faults,
        control_faults: &run.tally.control_faults,
        started: run.started,
        ended,
    };
    let withdrawals = evidence.live_withdrawals();
    let outages = evidence.outages();
    let summary = Summary {
        seed,
        digest,
        command,
        events: &run.cluster.counts,
        initial_nodes,
        final_nodes: run.cluster.population(),
        tally: &run.tally,
        crashes: &run.controllers.crashes,
        withdrawals: &withdrawals,
        outages: &outages,
        held: &observed.held,
        shared: &observed.shared,
        monitor_overruns: overruns,
        server_errors,
        gone,
        retried_patches: run.cluster.retried_patches,
        budget_waits: run.cluster.budget_waits,
        started: run.started,
        run_time: run.started.elapsed(),
    };
    println!("{}", summary.table());
    let failures = summary.failures();
    for failure in &failures {
        println!("- FAILED: {failure}");
    }
    Ok(failures.is_empty())
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
}
