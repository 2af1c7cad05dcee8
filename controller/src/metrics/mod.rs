//! Prometheus metrics and the HTTP endpoint that serves them with the probes.
//!
//! [`Metrics`] owns the registry; the rest of the controller records through
//! its methods with plain arguments, so no prometheus type leaks out. The
//! [`server`] module answers `/metrics`, `/healthz` and `/readyz`.

pub mod server;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use server::serve;

/// Sync durations from 0.5 ms (a netlink router with nothing to do) doubling
/// up to about 33 s (a slow SSH router replacing many routes).
const SYNC_BUCKET_START_SECONDS: f64 = 0.0005;
const SYNC_BUCKET_COUNT: u16 = 17;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouterLabels {
    router: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    router: String,
    action: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    family: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type SyncHistogram = Family<RouterLabels, Histogram, fn() -> Histogram>;

/// Every metric family of the controller, registered in one registry.
///
/// Cheap to record into from many tasks at once; share it behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    routes: Family<RouterLabels, Gauge>,
    foreign_routes: Family<RouterLabels, Gauge>,
    route_changes: Family<ChangeLabels, Counter>,
    sync_errors: Family<RouterLabels, Counter>,
    router_up: Family<RouterLabels, Gauge>,
    config_held: Family<RouterLabels, Gauge>,
    sync_duration: SyncHistogram,
    removals_refused: Family<RouterLabels, Counter>,
    withdrawals_held: Family<RouterLabels, Gauge>,
    config_reload_success: Gauge,
    pool_subnets: Family<PoolLabels, Gauge>,
    node_events: Family<OutcomeLabels, Counter>,
    leader: Gauge,
}

fn sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        SYNC_BUCKET_START_SECONDS,
        2.0,
        SYNC_BUCKET_COUNT,
    ))
}

fn router(router: &str) -> RouterLabels {
    RouterLabels {
        router: router.to_owned(),
    }
}

/// Gauges are i64; counts this large only come from a huge IPv6 pool.
fn saturating_i64<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let routes = Family::default();
        registry.register(
            "nativeroute_routes",
            "Routes owned by nativeroute that the router holds",
            routes.clone(),
        );
        let foreign_routes = Family::default();
        registry.register(
            "nativeroute_foreign_routes",
            "Routes inside the pool that nativeroute does not own",
            foreign_routes.clone(),
        );
        let route_changes = Family::default();
        registry.register(
            "nativeroute_route_changes",
            "Route changes sent to the router, by action and result",
            route_changes.clone(),
        );
        let sync_errors = Family::default();
        registry.register(
            "nativeroute_sync_errors",
            "Syncs of a router that failed as a whole",
            sync_errors.clone(),
        );
        let router_up = Family::default();
        registry.register(
            "nativeroute_router_up",
            "1 if the last contact with the router succeeded, else 0",
            router_up.clone(),
        );
        let config_held = Family::default();
        registry.register(
            "nativeroute_router_config_held",
            "1 while someone else holds the router's configuration (uncommitted edits, a lock, every session) and batches wait, else 0",
            config_held.clone(),
        );
        let sync_duration: SyncHistogram = Family::new_with_constructor(sync_histogram);
        registry.register_with_unit(
            "nativeroute_sync_duration",
            "Time one sync of a router took",
            Unit::Seconds,
            sync_duration.clone(),
        );
        let removals_refused = Family::default();
        registry.register(
            "nativeroute_removals_refused",
            "Withdrawals (removals and re-pointed routes) held back by the removal guard, each counted once",
            removals_refused.clone(),
        );
        let withdrawals_held = Family::default();
        registry.register(
            "nativeroute_withdrawals_held",
            "Withdrawals held back by the removal guard now, waiting for the node list to recover or for `nativeroute release`",
            withdrawals_held.clone(),
        );
        let config_reload_success = Gauge::default();
        registry.register(
            "nativeroute_config_last_reload_success",
            "1 if the config file's last version was valid and taken, 0 if it was refused (the running config stays)",
            config_reload_success.clone(),
        );
        let pool_subnets = Family::default();
        registry.register(
            "nativeroute_pool_subnets",
            "Node subnets of the pool, by address family and state",
            pool_subnets.clone(),
        );
        let node_events = Family::default();
        registry.register(
            "nativeroute_node_events",
            "Node Events for the Kubernetes API: sent, dropped (over the rate budget; still logged) or failed",
            node_events.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "nativeroute_leader",
            "1 while this instance holds the leader Lease (or runs without leader election), else 0",
            leader.clone(),
        );
        Self {
            registry,
            node_events,
            leader,
            routes,
            foreign_routes,
            route_changes,
            sync_errors,
            router_up,
            config_held,
            sync_duration,
            removals_refused,
            withdrawals_held,
            config_reload_success,
            pool_subnets,
        }
    }

    /// A sync of `router` ran to its end (whether or not every change took).
    pub fn node_event(&self, outcome: &'static str) {
        self.node_events
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn sync_finished(&self, router: &str, took: Duration) {
        self.sync_duration
            .get_or_create(&self::router(router))
            .observe(took.as_secs_f64());
    }

    /// `ok` changes of kind `action` (add, replace, remove) took and `failed` did not.
    pub fn route_changes(&self, router: &str, action: &str, ok: u64, failed: u64) {
        for (result, n) in [("ok", ok), ("error", failed)] {
            let labels = ChangeLabels {
                router: router.to_owned(),
                action: action.to_owned(),
                result,
            };
            self.route_changes.get_or_create(&labels).inc_by(n);
        }
    }

    /// A sync of `router` failed as a whole (could not connect, list or apply).
    pub fn sync_failed(&self, router: &str) {
        self.sync_errors.get_or_create(&self::router(router)).inc();
    }

    pub fn router_up(&self, router: &str, up: bool) {
        self.router_up
            .get_or_create(&self::router(router))
            .set(i64::from(up));
    }

    /// Whether someone else holds the router's configuration.
    pub fn config_held(&self, router: &str, held: bool) {
        self.config_held
            .get_or_create(&self::router(router))
            .set(i64::from(held));
    }

    /// What the router holds after a sync: our routes and others' inside the pool.
    pub fn routes_held(&self, router: &str, owned: usize, foreign: usize) {
        let labels = self::router(router);
        self.routes
            .get_or_create(&labels)
            .set(saturating_i64(owned));
        self.foreign_routes
            .get_or_create(&labels)
            .set(saturating_i64(foreign));
    }

    /// Whether the config file's last version was taken.
    pub fn config_reloaded(&self, success: bool) {
        self.config_reload_success.set(i64::from(success));
    }

    /// How many withdrawals are held back on `router` now.
    pub fn withdrawals_held(&self, router: &str, n: usize) {
        self.withdrawals_held
            .get_or_create(&self::router(router))
            .set(saturating_i64(n));
    }

    /// The removal guard newly held back `n` withdrawals on `router`.
    pub fn removals_refused(&self, router: &str, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.removals_refused
            .get_or_create(&self::router(router))
            .inc_by(n);
    }

    /// Subnet counts of one address family (`ipv4` or `ipv6`) of the pool.
    pub fn pool(&self, family: &str, used: u128, free: u128, reserved: u128) {
        for (state, n) in [("used", used), ("free", free), ("reserved", reserved)] {
            let labels = PoolLabels {
                family: family.to_owned(),
                state,
            };
            self.pool_subnets
                .get_or_create(&labels)
                .set(saturating_i64(n));
        }
    }

    /// The whole registry in the OpenMetrics text format, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and our label values are plain
        // strings, so an error here would be a bug in the encoder.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Metrics {
        let metrics = Metrics::new();
        metrics.sync_finished("edge-1", Duration::from_millis(12));
        metrics.route_changes("edge-1", "add", 3, 1);
        metrics.sync_failed("edge-1");
        metrics.router_up("edge-1", true);
        metrics.routes_held("edge-1", 7, 2);
        metrics.removals_refused("edge-1", 4);
        metrics.pool("ipv4", 5, 250, 1);
        metrics
    }

    #[test]
    fn encode_names_every_family_after_recording() {
        let text = recorded().encode();
        for name in [
            "nativeroute_routes{",
            "nativeroute_foreign_routes{",
            "nativeroute_route_changes_total{",
            "nativeroute_sync_errors_total{",
            "nativeroute_router_up{",
            "nativeroute_sync_duration_seconds_bucket{",
            "nativeroute_removals_refused_total{",
            "nativeroute_pool_subnets{",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn encode_carries_labels_and_values() {
        let text = recorded().encode();
        for line in [
            r#"nativeroute_route_changes_total{router="edge-1",action="add",result="ok"} 3"#,
            r#"nativeroute_route_changes_total{router="edge-1",action="add",result="error"} 1"#,
            r#"nativeroute_routes{router="edge-1"} 7"#,
            r#"nativeroute_foreign_routes{router="edge-1"} 2"#,
            r#"nativeroute_router_up{router="edge-1"} 1"#,
            r#"nativeroute_removals_refused_total{router="edge-1"} 4"#,
            r#"nativeroute_pool_subnets{family="ipv4",state="free"} 250"#,
            r#"nativeroute_sync_duration_seconds_count{router="edge-1"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn sync_buckets_span_half_a_millisecond_to_about_thirty_seconds() {
        let text = recorded().encode();
        assert!(text.contains(r#"le="0.0005""#), "{text}");
        assert!(text.contains(r#"le="32.768""#), "{text}");
    }

    #[test]
    fn huge_ipv6_pool_saturates_instead_of_wrapping() {
        let metrics = Metrics::new();
        metrics.pool("ipv6", 1, u128::MAX, 0);
        let line = format!(
            r#"nativeroute_pool_subnets{{family="ipv6",state="free"}} {}"#,
            i64::MAX
        );
        assert!(metrics.encode().lines().any(|l| l == line));
    }

    #[test]
    fn metrics_can_be_shared_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }
}
