//! One leader at a time: a coordination.k8s.io Lease in the controller's
//! namespace, as client-go's leader election keeps it.
//!
//! Whether a lease held by another has expired is judged by this process's
//! own clock from when it last saw the lease change, never by comparing
//! clocks across machines. A leader that cannot renew within the renew
//! deadline stops leading (its routers and Node writes stop) before another
//! instance may take over, so two leaders never write at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

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
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        LeaseSettings {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
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

/// Tries to take and hold one Lease.
pub struct LeaderElection {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
}

impl LeaderElection {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        LeaderElection {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
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
            match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
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
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
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
    async fn try_acquire_or_renew(&mut self) -> Result<Round, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX);
        let mut lease = match self.api.get_opt(&self.settings.name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
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
        // The resourceVersion in `lease` makes this a compare-and-swap: if
        // another instance wrote the lease since we read it, this is a 409.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                Ok(Round::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Conflict),
            Err(err) => Err(err),
        }
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
