//! One leader at a time: a coordination.k8s.io Lease in the controller's
//! namespace, as client-go's leader election keeps it.
//!
//! Whether a lease held by another has expired is judged by this process's
//! own clock from when it last saw the lease change, never by comparing
//! clocks across machines. A leader that cannot renew within the renew
//! deadline stops leading (its routers and Node writes stop) before another
//! instance may take over, so two leaders never write at once.

use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ipam::NextFit;
use crate::status::board::{ROUTERS_ANNOTATION, RouterBoard};

/// How the lease is held.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Who this instance is (the pod name, unique per instance).
    pub identity: String,
    /// How long a lease lasts without renewal before others may take it.
    pub duration: Duration,
    /// A leader that has not renewed for this long stops leading; shorter
    /// than `duration`, so it stops before anyone else may start.
    pub renew_deadline: Duration,
    /// How often a leader renews and a follower tries.
    pub retry: Duration,
}

impl LeaseSettings {
    /// Settings with client-go's timing (see [`LeaseTiming::default`]).
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        let timing = LeaseTiming::default();
        LeaseSettings {
            namespace,
            name,
            identity,
            duration: timing.duration,
            renew_deadline: timing.renew_deadline,
            retry: timing.retry,
        }
    }

    pub fn with_timing(self, timing: LeaseTiming) -> Self {
        LeaseSettings {
            duration: timing.duration,
            renew_deadline: timing.renew_deadline,
            retry: timing.retry,
            ..self
        }
    }

    /// An identity for an instance that was given none: the host name and a
    /// random suffix, as kube-controller-manager makes it. The host name
    /// and process id alone are not unique: two hostNetwork replicas on one
    /// node share the host name, and each is pid 1 in its container, so
    /// both would believe they hold the lease.
    pub fn default_identity() -> String {
        use std::hash::BuildHasher;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "nativeroute".into());
        // std keys every RandomState from the operating system's random
        // source, so this differs between processes (and between calls).
        let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        format!("{host}_{random:016x}")
    }
}

/// The lease's timing, as the `--leader-elect-*` flags of Kubernetes'
/// controllers set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

/// client-go's jitter factor: a follower's tries are spread up to this
/// much beyond the retry period, so the renew deadline must leave room for
/// more than one of them.
const RETRY_JITTER: f64 = 1.2;

impl Default for LeaseTiming {
    /// client-go's defaults, which kube-controller-manager uses too.
    fn default() -> Self {
        LeaseTiming {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// Checks the three against each other, as client-go does: a leader
    /// must give up (renew deadline) before anyone else may take over
    /// (lease duration), and get more than one try at renewing first.
    pub fn new(
        duration: Duration,
        renew_deadline: Duration,
        retry: Duration,
    ) -> Result<LeaseTiming, LeaseTimingError> {
        if duration < Duration::from_secs(1) || duration.subsec_nanos() != 0 {
            return Err(LeaseTimingError::DurationNotWholeSeconds { duration });
        }
        if renew_deadline >= duration {
            return Err(LeaseTimingError::DeadlineNotBeforeExpiry {
                renew_deadline,
                duration,
            });
        }
        if retry.is_zero() {
            return Err(LeaseTimingError::NoRetryPeriod);
        }
        if renew_deadline.as_secs_f64() <= retry.as_secs_f64() * RETRY_JITTER {
            return Err(LeaseTimingError::DeadlineWithinOneRetry {
                renew_deadline,
                retry,
            });
        }
        Ok(LeaseTiming {
            duration,
            renew_deadline,
            retry,
        })
    }
}

/// Lease timing that cannot work; each names the flags to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseTimingError {
    #[error(
        "--leader-elect-lease-duration {} must be a whole number of seconds, at least 1s \
         (a Lease records its duration in seconds)",
        humantime::format_duration(*duration)
    )]
    DurationNotWholeSeconds { duration: Duration },
    #[error(
        "--leader-elect-renew-deadline {} must be shorter than --leader-elect-lease-duration {}: \
         a leader that cannot renew must stop before another instance may take over",
        humantime::format_duration(*renew_deadline),
        humantime::format_duration(*duration)
    )]
    DeadlineNotBeforeExpiry {
        renew_deadline: Duration,
        duration: Duration,
    },
    #[error("--leader-elect-retry-period must be longer than 0s")]
    NoRetryPeriod,
    #[error(
        "--leader-elect-renew-deadline {} must be longer than 1.2 x --leader-elect-retry-period {}: \
         a leader needs more than one try at renewing before it gives up",
        humantime::format_duration(*renew_deadline),
        humantime::format_duration(*retry)
    )]
    DeadlineWithinOneRetry {
        renew_deadline: Duration,
        retry: Duration,
    },
}

/// Why a term as leader ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermEnd {
    Shutdown,
    Lost,
}

/// The outcome of one round of acquiring or renewing.
enum Round {
    Leading,
    /// Another instance holds an unexpired lease.
    Following,
    /// The lease changed between read and write.
    Conflict,
}

/// The lease as this instance last saw it.
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

/// Where next-fit continues, on the Lease: comma-separated subnets, one per
/// family.
///
/// The Lease is where the cursor is kept because it is the one object the
/// API server keeps that only the leader writes, and writes anyway every
/// retry period: the cursor goes along with each renewal (no request of its
/// own), a deposed leader cannot overwrite it (its write is a conflict),
/// and the next leader reads it with the lease it takes over. Deriving it
/// from the Nodes instead cannot see a subnet whose node was deleted, and
/// that is exactly the one next-fit must not hand out again at once.
pub const NEXT_FIT_ANNOTATION: &str = "nativeroute.io/next-fit";

/// Tries to take and hold one Lease.
pub struct LeaderElection {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
    next_fit: NextFit,
    /// Carried on the Lease with each renewal, for `nativeroute status`.
    board: Option<RouterBoard>,
}

/// Whether a round takes the lease (and with it the cursor the last leader
/// left) or renews it (and with it the cursor this leader has now).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Taking,
    Renewing,
}

impl LeaderElection {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        LeaderElection {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
            next_fit: NextFit::default(),
            board: None,
        }
    }

    /// Writes how each router stands on the Lease with every renewal.
    pub fn reporting(mut self, board: RouterBoard) -> Self {
        self.board = Some(board);
        self
    }

    /// Where next-fit continues: read from the Lease when this instance
    /// takes it, written to it with every renewal and at release. The node
    /// source of a term resumes from it and keeps it up to date
    /// ([`KubernetesSource::resuming`](crate::inventory::kubernetes::KubernetesSource::resuming)).
    pub fn next_fit(&self) -> NextFit {
        self.next_fit.clone()
    }

    pub fn describe(&self) -> String {
        format!(
            "Lease {}/{} as {}",
            self.settings.namespace, self.settings.name, self.settings.identity
        )
    }

    /// Waits until this instance leads; false if `shutdown` came first.
    pub async fn acquire(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            let limit = self.settings.renew_deadline;
            match tokio::time::timeout(limit, self.try_acquire_or_renew(Phase::Taking)).await {
                Ok(Ok(Round::Leading)) => return true,
                Ok(Ok(Round::Following | Round::Conflict)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(lease = self.describe(), error = %err, "cannot read or write the leader lease; retrying")
                }
                Err(_) => {
                    tracing::warn!(
                        lease = self.describe(),
                        "the leader lease did not answer in time; retrying"
                    )
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return false,
                _ = tokio::time::sleep(self.settings.retry) => {}
            }
        }
    }

    /// Renews until the lease is lost or cannot be renewed within the
    /// deadline (`Lost`), or `shutdown` turns true (`Shutdown`; the lease
    /// is still held: stop leading, then [`release`](Self::release) it).
    pub async fn hold(&mut self, shutdown: &mut watch::Receiver<bool>) -> TermEnd {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return TermEnd::Shutdown,
                _ = tokio::time::sleep(self.settings.retry) => {}
            }
            // A renewal that hangs (a silent connection, a throttling API
            // server) must not outlive the deadline: after it, another
            // instance may lead, and this one must have stopped.
            let left = self
                .settings
                .renew_deadline
                .saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew(Phase::Renewing)).await {
                Ok(Ok(Round::Leading)) => renewed = Instant::now(),
                Ok(Ok(Round::Following)) => {
                    tracing::error!(
                        lease = self.describe(),
                        "another instance holds the leader lease now"
                    );
                    return TermEnd::Lost;
                }
                // Someone wrote the lease between our read and write (or a
                // retried write of ours): read it again next round.
                Ok(Ok(Round::Conflict)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(lease = self.describe(), error = %err, "cannot renew the leader lease")
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= self.settings.renew_deadline {
                tracing::error!(
                    lease = self.describe(),
                    deadline = ?self.settings.renew_deadline,
                    "leader lease not renewed in time; stepping down"
                );
                return TermEnd::Lost;
            }
        }
    }

    /// Gives the lease up so that a successor need not wait for it to expire.
    pub async fn release(&mut self) {
        let read = tokio::time::timeout(self.settings.retry, self.api.get(&self.settings.name));
        let Ok(Ok(mut lease)) = read.await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.note_next_fit(&mut lease);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = self.describe(), "leader lease released"),
            Err(err) => {
                tracing::warn!(lease = self.describe(), error = %err, "leader lease not released; it expires on its own")
            }
        }
    }

    /// One round of client-go's algorithm.
    async fn try_acquire_or_renew(&mut self, phase: Phase) -> Result<Round, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX);
        let mut lease = match self.api.get_opt(&self.settings.name).await? {
            Some(lease) => lease,
            None => {
                let mut lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.settings.identity.clone()),
                        lease_duration_seconds: Some(duration_seconds),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.note_next_fit(&mut lease);
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.observe(&created);
                        Ok(Round::Leading)
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Conflict),
                    Err(err) => Err(err),
                };
            }
        };
        self.observe(&lease);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.settings.identity;
        if !mine && !holder.is_empty() {
            let lasts = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(duration_seconds)).unwrap_or(0),
            );
            let unchanged_for = self
                .observed
                .as_ref()
                .map_or(Duration::ZERO, |seen| seen.at.elapsed());
            if unchanged_for < lasts {
                return Ok(Round::Following);
            }
            tracing::info!(
                lease = self.describe(),
                previous = holder,
                "the leader lease expired; taking it"
            );
        }
        if !mine {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.settings.identity.clone());
        spec.lease_duration_seconds = Some(duration_seconds);
        spec.renew_time = Some(now);
        // Taking: the cursor the last leader left (a restart under the
        // same identity takes its own lease, and must not write over it).
        let left = match phase {
            Phase::Taking => Some(next_fit_of(&lease)),
            Phase::Renewing => {
                self.note_next_fit(&mut lease);
                self.note_routers(&mut lease);
                None
            }
        };
        // The resourceVersion in `lease` makes this a compare-and-swap: if
        // another instance wrote the lease since we read it, this is a 409.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                if let Some(left) = left {
                    self.next_fit.set(left);
                }
                Ok(Round::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Conflict),
            Err(err) => Err(err),
        }
    }

    /// Writes how each router stands on `lease`.
    fn note_routers(&self, lease: &mut Lease) {
        if let Some(board) = &self.board {
            lease
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ROUTERS_ANNOTATION.to_owned(), board.to_json());
        }
    }

    /// Writes the current cursor on `lease`; with none yet, the one there
    /// stays.
    fn note_next_fit(&self, lease: &mut Lease) {
        let next = self.next_fit.get();
        if next.is_empty() {
            return;
        }
        let text: Vec<String> = next.iter().map(ToString::to_string).collect();
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(NEXT_FIT_ANNOTATION.to_owned(), text.join(","));
    }

    fn observe(&mut self, lease: &Lease) {
        let version = lease.metadata.resource_version.clone();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|seen| seen.resource_version != version);
        if changed {
            self.observed = Some(Observed {
                resource_version: version,
                at: Instant::now(),
            });
        }
    }
}

/// The cursor noted on `lease`; a value that does not parse is skipped (the
/// guess from the Nodes takes its place).
fn next_fit_of(lease: &Lease) -> Vec<IpNet> {
    let Some(text) = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(NEXT_FIT_ANNOTATION))
    else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|part| match part.trim().parse::<IpNet>() {
            Ok(subnet) => Some(subnet),
            Err(_) => {
                tracing::warn!(
                    annotation = NEXT_FIT_ANNOTATION,
                    value = text,
                    "not a subnet on the leader Lease; next-fit continues from a guess"
                );
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn client_gos_timing_is_accepted() {
        let timing = LeaseTiming::default();
        assert_eq!(
            LeaseTiming::new(timing.duration, timing.renew_deadline, timing.retry),
            Ok(timing)
        );
        assert!(LeaseTiming::new(secs(60.0), secs(40.0), secs(5.0)).is_ok());
    }

    #[test]
    fn a_renew_deadline_not_shorter_than_the_lease_is_refused_naming_both_flags() {
        for deadline in [15.0, 20.0] {
            let err = LeaseTiming::new(secs(15.0), secs(deadline), secs(2.0))
                .expect_err("the deadline must come before the lease expires");
            let message = err.to_string();
            assert!(
                message.contains("--leader-elect-renew-deadline")
                    && message.contains("--leader-elect-lease-duration")
                    && message.contains("15s"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_retry_period_that_leaves_no_second_try_is_refused_naming_both_flags() {
        let err = LeaseTiming::new(secs(15.0), secs(10.0), secs(9.0)).expect_err("one try only");
        let message = err.to_string();
        assert!(
            message.contains("--leader-elect-renew-deadline 10s")
                && message.contains("--leader-elect-retry-period 9s"),
            "{message}"
        );
        assert_eq!(
            LeaseTiming::new(secs(15.0), secs(10.0), Duration::ZERO),
            Err(LeaseTimingError::NoRetryPeriod)
        );
    }

    #[test]
    fn a_lease_duration_of_part_seconds_is_refused() {
        for duration in [0.5, 15.5] {
            let err = LeaseTiming::new(secs(duration), secs(0.3), secs(0.1))
                .expect_err("the Lease holds whole seconds");
            assert!(
                err.to_string().contains("--leader-elect-lease-duration"),
                "{err}"
            );
        }
    }

    #[test]
    fn default_identities_differ_even_with_one_host_name_and_pid() {
        let (first, second) = (
            LeaseSettings::default_identity(),
            LeaseSettings::default_identity(),
        );
        assert_ne!(first, second);
        let host = nix::unistd::gethostname()
            .expect("a host name")
            .into_string()
            .expect("UTF-8");
        assert!(first.starts_with(&format!("{host}_")), "{first}");
    }
}
