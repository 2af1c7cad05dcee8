//! What a thread watching from outside records while the run goes on:
//! every few hundred milliseconds, the routes each router's kernel holds
//! (kept as changes per destination), the subnet each Node incarnation got
//! (spec.podCIDR, immutable once set), and the withdrawals the removal
//! guard holds (from the controllers' /metrics).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use nativeroute_tests::apiserver::ApiServer;
use nativeroute_tests::lab::http_get;

use super::kernel_router::{KernelRoute, kernel_routes};

/// The pool's reserved ranges: foreign routes live there, nodes never.
pub const RESERVED: [&str; 2] = ["11.11.0.0/24", "11.11.250.0/23"];

/// Which router a history belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Router {
    /// The netlink router (its own namespace).
    Kernel,
    /// FRR over SSH: zebra's routes in its namespace's kernel.
    Frr,
}

impl Router {
    pub const ALL: [Router; 2] = [Router::Kernel, Router::Frr];

    /// The name in the controller's config and its metrics.
    pub fn name(self) -> &'static str {
        match self {
            Router::Kernel => "kernel",
            Router::Frr => "frr",
        }
    }

    /// Whether a kernel route in this router's namespace is nativeroute's.
    fn owns(self, route: &KernelRoute) -> bool {
        match self {
            Router::Kernel => route.is_ours(),
            // zebra installs every static route with one protocol; the
            // operator's are in the reserved ranges.
            Router::Frr => !in_reserved(route.dst),
        }
    }
}

pub fn in_reserved(dst: Ipv4Net) -> bool {
    RESERVED
        .iter()
        .filter_map(|r| r.parse::<Ipv4Net>().ok())
        .any(|r| r.contains(&dst))
}

/// A router's routes: destination → next hop.
type Routes = BTreeMap<Ipv4Net, Ipv4Addr>;

/// A destination's next hop on a router from some moment on; None: no route.
pub type Change = (Instant, Option<Ipv4Addr>);

/// When a router's routes came, went and moved, as sampled.
#[derive(Default)]
pub struct RouteHistory {
    /// Per destination, each change.
    pub changes: BTreeMap<Ipv4Net, Vec<Change>>,
    present: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// Samples where the router could not be read (namespace gone).
    pub unreadable: usize,
}

impl RouteHistory {
    fn record(&mut self, at: Instant, now: Routes) {
        for (dst, _) in self.present.iter().filter(|(d, _)| !now.contains_key(d)) {
            self.changes.entry(*dst).or_default().push((at, None));
        }
        for (dst, via) in &now {
            if self.present.get(dst) != Some(via) {
                self.changes.entry(*dst).or_default().push((at, Some(*via)));
            }
        }
        self.present = now;
    }
}

/// Withdrawals the guard held on one router, from the metrics.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub most: u64,
    pub episodes: usize,
    pub longest: Duration,
    since: Option<Instant>,
    pub now: u64,
}

#[derive(Default)]
pub struct Observed {
    pub routes: BTreeMap<Router, RouteHistory>,
    /// Incarnation uid → its subnet.
    pub subnets: HashMap<String, Ipv4Net>,
    /// Subnets seen on more than one Node at once (spec.podCIDR), with the
    /// Nodes and when first seen.
    pub shared: BTreeMap<(Ipv4Net, Vec<String>), Instant>,
    pub held: BTreeMap<Router, Held>,
    pub samples: usize,
}

pub struct Observer {
    observed: Arc<Mutex<Observed>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Where the observer looks.
pub struct Targets {
    pub kernel_netns: String,
    pub frr_netns: String,
    pub api: Arc<ApiServer>,
    pub metrics: Vec<SocketAddr>,
    pub every: Duration,
}

impl Observer {
    pub fn start(targets: Targets) -> std::io::Result<Observer> {
        let observed = Arc::new(Mutex::new(Observed::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (observed, stop) = (observed.clone(), stop.clone());
            std::thread::Builder::new()
                .name("chaos-observer".into())
                .spawn(move || {
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        sample(&targets, &observed, round);
                        round += 1;
                        std::thread::sleep(targets.every);
                    }
                })?
        };
        Ok(Observer {
            observed,
            stop,
            thread: Some(thread),
        })
    }

    pub fn observed(&self) -> MutexGuard<'_, Observed> {
        self.observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops the thread; what it saw stays readable.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sample(targets: &Targets, observed: &Mutex<Observed>, round: u64) {
    let namespaces = [
        (Router::Kernel, &targets.kernel_netns),
        (Router::Frr, &targets.frr_netns),
    ];
    let reads: Vec<(Router, Instant, Option<Routes>)> = namespaces
        .into_iter()
        .map(|(router, netns)| {
            let routes = kernel_routes(netns).map(|routes| {
                routes
                    .iter()
                    .filter(|r| router.owns(r))
                    .filter_map(|r| Some((r.dst, r.via?)))
                    .collect()
            });
            (router, Instant::now(), routes)
        })
        .collect();
    let subnets = (round % 2 == 0).then(|| subnets_of(&targets.api));
    let held = (round % 4 == 0).then(|| held_now(&targets.metrics));
    let mut seen = observed.lock().unwrap_or_else(|p| p.into_inner());
    seen.samples += 1;
    for (router, at, routes) in reads {
        let history = seen.routes.entry(router).or_default();
        match routes {
            Some(now) => history.record(at, now),
            // The namespace is gone: so are its routes.
            None => {
                history.unreadable += 1;
                history.record(at, BTreeMap::new());
            }
        }
    }
    if let Some(subnets) = subnets {
        let mut holders: BTreeMap<Ipv4Net, Vec<String>> = BTreeMap::new();
        for (name, uid, subnet) in subnets {
            holders.entry(subnet).or_default().push(name);
            seen.subnets.insert(uid, subnet);
        }
        let now = Instant::now();
        for (subnet, mut names) in holders.into_iter().filter(|(_, n)| n.len() > 1) {
            names.sort();
            seen.shared.entry((subnet, names)).or_insert(now);
        }
    }
    if let Some(held) = held {
        let now = Instant::now();
        for (router, count) in held {
            let stats = seen.held.entry(router).or_default();
            stats.now = count;
            stats.most = stats.most.max(count);
            match (count > 0, stats.since) {
                (true, None) => {
                    stats.since = Some(now);
                    stats.episodes += 1;
                }
                (false, Some(since)) => {
                    stats.longest = stats.longest.max(now - since);
                    stats.since = None;
                }
                (true, Some(since)) => stats.longest = stats.longest.max(now - since),
                (false, None) => {}
            }
        }
    }
}

/// Each Node's name, uid and spec.podCIDR, where set.
fn subnets_of(api: &ApiServer) -> Vec<(String, String, Ipv4Net)> {
    api.nodes()
        .into_iter()
        .filter_map(|node| {
            let name = node.metadata.name?;
            let uid = node.metadata.uid?;
            let cidr = node.spec?.pod_cidr?.parse().ok()?;
            Some((name, uid, cidr))
        })
        .collect()
}

/// `nativeroute_withdrawals_held` per router, summed over the controllers
/// that answer (only the leader holds anything).
fn held_now(metrics: &[SocketAddr]) -> Vec<(Router, u64)> {
    let bodies: Vec<String> = metrics
        .iter()
        .filter_map(|address| http_get(*address, "/metrics"))
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    Router::ALL
        .into_iter()
        .map(|router| {
            let prefix = format!(
                "nativeroute_withdrawals_held{{router=\"{}\"}}",
                router.name()
            );
            let total = bodies
                .iter()
                .flat_map(|body| body.lines())
                .filter(|line| line.starts_with(&prefix))
                .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            (router, total)
        })
        .collect()
}
