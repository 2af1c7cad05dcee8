//! Issue 12, rows (g) and (h): a router that carries a full Internet table.
//!
//! A fresh namespace gets `--full-table-foreign` routes (default 1,000,000
//! /24s outside the pool, `proto bgp`, through four next hops, as a BGP
//! speaker installs them) with `ip -batch`; that load is timed as its own
//! baseline. One untimed round of `ip -batch` adding and removing ours
//! follows (the first additions after the load are slow whoever makes
//! them). Then, `--runs` times:
//!
//! - (h) cold start: a new netlink driver connects, lists (as the router's
//!   worker does first) and adds our `--full-table-ours` routes (default
//!   10,000, each with its own gateway), against `ip -batch` with nexthop
//!   objects adding the same routes into the same namespace;
//! - (g) resync: the same driver lists again with nothing to change, and
//!   the list is compared with what is wanted, `--full-table-resyncs`
//!   times (median).
//!
//! The driver runs twice each time: as it is by default (our routes read by
//! dumps the kernel filters, everyone else's kept from its announcements),
//! and told to read everything at every read, as it did before.
//!
//! Our routes go again after each run (the driver's removals and tidy, or
//! `ip -batch` deletions), so every run starts from the full table alone.
//! Not part of the default run: `--only full-table`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute_router_drivers::netlink::{HEAR_OTHERS_FROM, NetlinkDriver, NetlinkRouter};
use nativeroute_router_drivers::{Change, Ownership, Route, RouterDriver};
use nativeroute_tests::netns::Netns;

use super::{ip_batch, median, nexthop_add_lines, nexthop_del_lines, router_namespace, routes};

const OUR_PROTOCOL: u8 = 203;
/// The goal of row (g).
const RESYNC_GOAL: Duration = Duration::from_millis(50);

pub struct Settings {
    pub foreign: usize,
    pub ours: usize,
    pub runs: usize,
    pub resyncs: usize,
}

/// Foreign route i: a /24 counted up from 1.0.0.0, skipping 10/8 (the
/// gateways' network), 11/8 (the pool) and 127/8, via one of four next
/// hops, as a BGP speaker with four peers would install them.
fn foreign_lines(count: usize) -> String {
    let mut lines = String::with_capacity(count * 52);
    let mut block: u32 = 1 << 16;
    for i in 0..count {
        while matches!(block >> 16, 10 | 11 | 127) {
            block += 1;
        }
        let dst = Ipv4Addr::from(block << 8);
        lines.push_str(&format!(
            "route add {dst}/24 via 10.200.0.{} dev gw0 proto bgp\n",
            1 + i % 4
        ));
        block += 1;
    }
    lines
}

fn router(ns: &Netns) -> NetlinkRouter {
    NetlinkRouter {
        name: "full-table".into(),
        netns: Some(ns.name().to_owned()),
        table: 254,
        ownership: Ownership {
            pool: vec!["11.0.0.0/8".parse().expect("cidr")],
            netlink_protocol: OUR_PROTOCOL,
            route_tag: 1111,
            bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
        },
    }
}

/// Our routes in the kernel, counted by a dump the kernel filters.
fn count_ours(ns: &Netns) -> usize {
    ns.ip(&format!("route show table main proto {OUR_PROTOCOL}"))
        .lines()
        .count()
}

/// One cold start and the resyncs after it.
struct DriverRun {
    first_list: Duration,
    add: Duration,
    resyncs: Vec<Duration>,
}

impl DriverRun {
    fn cold_start(&self) -> Duration {
        self.first_list + self.add
    }
}

/// A cold start and resyncs by a driver that keeps everyone else's routes
/// from the kernel's announcements from `hear_from` routes of theirs on
/// (`usize::MAX`: reads them all at every read).
async fn driver_run(ns: &Netns, ours: &[Route], resyncs: usize, hear_from: usize) -> DriverRun {
    let wanted: HashMap<IpNet, IpAddr> = ours.iter().map(|r| (r.dst, r.via)).collect();
    let mut driver = NetlinkDriver::connect(router(ns))
        .await
        .expect("connect the netlink driver")
        .hear_others_from(hear_from);
    let started = Instant::now();
    let listed = driver.list().await.expect("first list");
    let first_list = started.elapsed();
    assert!(listed.owned.is_empty() && listed.foreign.is_empty());
    let adds: Vec<Change> = ours.iter().copied().map(Change::Add).collect();
    let started = Instant::now();
    let outcomes = driver.apply(&adds).await.expect("apply adds");
    let add = started.elapsed();
    assert!(outcomes.iter().all(Result::is_ok), "some adds failed");

    let mut times = Vec::with_capacity(resyncs);
    for _ in 0..resyncs {
        let started = Instant::now();
        let listed = driver.list().await.expect("resync list");
        let nothing_to_change = listed.owned.len() == wanted.len()
            && listed
                .owned
                .iter()
                .all(|r| wanted.get(&r.dst) == Some(&r.via));
        times.push(started.elapsed());
        assert!(nothing_to_change && listed.foreign.is_empty());
    }

    let removes: Vec<Change> = ours.iter().copied().map(Change::Remove).collect();
    let outcomes = driver.apply(&removes).await.expect("apply removes");
    assert!(outcomes.iter().all(Result::is_ok), "some removes failed");
    driver.tidy().await.expect("tidy");
    assert_eq!(count_ours(ns), 0);
    assert_eq!(ns.ip("nexthop show"), "", "nexthops left after tidy");
    DriverRun {
        first_list,
        add,
        resyncs: times,
    }
}

/// `ip -batch` with nexthop objects: the time to add; then the routes and
/// objects go again, untimed.
fn iproute_run(ns: &Netns, ours: &[Route]) -> Duration {
    let took = ip_batch(ns, &nexthop_add_lines(ours));
    assert_eq!(count_ours(ns), ours.len());
    let (routes_out, nexthops_out) = nexthop_del_lines(ours);
    ip_batch(ns, &routes_out);
    ip_batch(ns, &nexthops_out);
    assert_eq!(count_ours(ns), 0);
    took
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn bench(settings: &Settings) {
    let ns = router_namespace();
    let load = ip_batch(&ns, &foreign_lines(settings.foreign));
    println!(
        "\nFull table: {} foreign routes (proto bgp, 4 next hops) loaded into main with ip -batch in {:.1} s (baseline)",
        settings.foreign,
        load.as_secs_f64()
    );
    let ours = routes(settings.ours);
    // The first 10,000 routes and nexthops added after the load cost the
    // kernel several times what later ones do, whoever adds them (measured:
    // ~0.7 s for either method): one round of ip -batch takes that first.
    println!(
        "warm-up (untimed in the table): ip -batch with nexthop objects adds ours in {}, and removes them",
        millis(iproute_run(&ns, &ours))
    );
    let mut heard = Vec::new();
    let mut read_in_full = Vec::new();
    let mut iproute = Vec::new();
    for run in 1..=settings.runs.max(1) {
        let resyncs = settings.resyncs.max(1);
        let driver = driver_run(&ns, &ours, resyncs, HEAR_OTHERS_FROM).await;
        let full = driver_run(&ns, &ours, resyncs, usize::MAX).await;
        let batch = iproute_run(&ns, &ours);
        println!(
            "run {run}: filtered: first list {}, add {}, resync median {}; every read in full: first list {}, add {}, resync median {}; ip -batch {}",
            millis(driver.first_list),
            millis(driver.add),
            millis(median(driver.resyncs.clone())),
            millis(full.first_list),
            millis(full.add),
            millis(median(full.resyncs.clone())),
            millis(batch)
        );
        heard.push(driver);
        read_in_full.push(full);
        iproute.push(batch);
    }
    let batch = median(iproute);
    let (heard, read_in_full) = (Summary::of(&heard), Summary::of(&read_in_full));
    println!(
        "{} of ours, each with its own gateway; median of {} runs ({} resyncs each)\n",
        settings.ours,
        settings.runs.max(1),
        settings.resyncs.max(1)
    );
    println!(
        "| # | measure | driver: filtered reads, others heard (default) | driver: every read in full | ip -batch, nexthop objects | goal |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let verdict = if heard.resync <= RESYNC_GOAL {
        "met"
    } else {
        "missed"
    };
    println!(
        "| g | resync: list and compare, nothing to change | {} | {} | – | ≤ 50 ms ({verdict}) |",
        heard.resync_cell(),
        read_in_full.resync_cell()
    );
    println!(
        "| h | cold start: first list + adding ours | {} | {} | {} | ≤ 1.5× (a) |",
        heard.cold_cell(batch),
        read_in_full.cold_cell(batch),
        millis(batch)
    );
}

/// The medians of one way of reading over all runs.
struct Summary {
    resync: Duration,
    fastest: Duration,
    slowest: Duration,
    first_list: Duration,
    add: Duration,
    cold: Duration,
}

impl Summary {
    fn of(runs: &[DriverRun]) -> Self {
        let resyncs: Vec<Duration> = runs.iter().flat_map(|r| r.resyncs.clone()).collect();
        Summary {
            fastest: resyncs.iter().min().copied().unwrap_or_default(),
            slowest: resyncs.iter().max().copied().unwrap_or_default(),
            resync: median(resyncs),
            first_list: median(runs.iter().map(|r| r.first_list).collect()),
            add: median(runs.iter().map(|r| r.add).collect()),
            cold: median(runs.iter().map(DriverRun::cold_start).collect()),
        }
    }

    fn resync_cell(&self) -> String {
        format!(
            "{} ({}–{})",
            millis(self.resync),
            millis(self.fastest),
            millis(self.slowest)
        )
    }

    fn cold_cell(&self, batch: Duration) -> String {
        format!(
            "{} (list {}, add {}): {:.2}x",
            millis(self.cold),
            millis(self.first_list),
            millis(self.add),
            self.cold.as_secs_f64() / batch.as_secs_f64()
        )
    }
}
