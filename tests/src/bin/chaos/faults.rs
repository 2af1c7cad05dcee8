//! The faults of a run: the API server's (through the test server's fault
//! handle) and the routers' own (FRR restarted, sshd away, the netlink
//! router's namespace deleted and built again).

use std::time::{Duration, Instant};

use anyhow::Result;
use nativeroute_tests::apiserver::Failure;
use nativeroute_tests::route_monitor::RouteMonitor;

use super::desired::{Diff, Routes, desired};
use super::observe::Router;
use super::plan::{FAULT_DOWNTIME, Fault};
use super::run::{LEADER_SETTLES, NetnsRecovery, OUR_PROTOCOL, Run, Timer};
use super::world::RESYNC;

/// How long the netlink router may take to be re-programmed after its
/// namespace came back: a few resyncs.
const NETNS_RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// After FRR restarts, its routes come back at the next resync; until
/// then their absence is the fault's, not the controller's.
const FRR_RECOVERY: Duration = Duration::from_secs(RESYNC.as_secs() * 2 + 5);
/// The router worker's longest backoff between failed syncs.
const SSH_BACKOFF: Duration = Duration::from_secs(30);
/// A Lease left by a leader that stepped down is taken again within this.
const LEASE_BACK: Duration = Duration::from_secs(20);

impl Run {
    pub async fn inject(&mut self, fault: &Fault) -> Result<()> {
        let faults = self.world.api.faults();
        match fault {
            Fault::DropWatches => faults.drop_watches(),
            Fault::Gone => {
                faults.compact();
                faults.drop_watches();
            }
            Fault::ServerErrors { path, times } => {
                faults.fail(Failure::status(500).path_contains(path).times(*times));
            }
            Fault::ApiAway => {
                if !self.cluster.api_up {
                    self.log("API server already away; this outage is skipped");
                    return Ok(());
                }
                faults.stop().await;
                self.cluster.api_up = false;
                // The leader steps down after 10 s and takes the Lease
                // again once the API server is back.
                let now = Instant::now();
                self.tally
                    .control_faults
                    .push((now, now + FAULT_DOWNTIME + LEASE_BACK));
                self.timers.push(Timer::ApiBack {
                    at: Instant::now() + FAULT_DOWNTIME,
                });
            }
            Fault::FrrRestart => {
                let started = Instant::now();
                tokio::task::block_in_place(|| self.world.frr.restart_frr())?;
                self.tally
                    .router_faults
                    .entry(Router::Frr)
                    .or_default()
                    .push((started, Instant::now() + FRR_RECOVERY));
            }
            Fault::SshdAway => {
                if self
                    .timers
                    .iter()
                    .any(|t| matches!(t, Timer::SshdBack { .. }))
                {
                    self.log("sshd already away; this outage is skipped");
                    return Ok(());
                }
                tokio::task::block_in_place(|| self.world.frr.stop_sshd())?;
                let now = Instant::now();
                self.timers.push(Timer::SshdBack {
                    at: now + FAULT_DOWNTIME,
                });
                // The worker backs off up to 30 s while sshd is away.
                self.tally
                    .router_faults
                    .entry(Router::Frr)
                    .or_default()
                    .push((now, now + FAULT_DOWNTIME + SSH_BACKOFF));
            }
            Fault::NetnsRecreate => self.recreate_netns().await?,
        }
        *self.tally.faults.entry(fault.kind()).or_default() += 1;
        self.log(&format!("fault: {fault:?}"));
        Ok(())
    }

    /// Deletes the netlink router's namespace and builds it again (its
    /// interfaces, addresses and foreign routes), then measures how long
    /// the controller takes to put its routes back. If it does not within
    /// the bound, the leader is restarted (kill -9) and measured again, so
    /// that the rest of the run is not judged against a dead namespace.
    async fn recreate_netns(&mut self) -> Result<()> {
        let started = Instant::now();
        if let Some(monitor) = self.monitor.take() {
            self.kernel_withdrawals.extend(monitor.withdrawals());
            self.monitor_overruns += monitor.overruns();
        }
        self.world.kernel.recreate()?;
        self.monitor = Some(RouteMonitor::start(self.world.kernel.name(), OUR_PROTOCOL)?);
        let recovered = self.wait_for_kernel_routes(NETNS_RECOVERY_BOUND).await?;
        let mut recovery = NetnsRecovery {
            recovered,
            after_restart: None,
        };
        if recovered.is_none() {
            self.log(&format!(
                "the netlink router was not re-programmed within {NETNS_RECOVERY_BOUND:?} of its namespace coming back; restarting the leader"
            ));
            if let Some(leader) = self.leader().filter(|&i| self.controllers.is_up(i)) {
                self.controllers.kill(leader);
                self.controllers.start(leader)?;
                let now = Instant::now();
                self.tally.control_faults.push((now, now + LEADER_SETTLES));
            }
            recovery.after_restart = self.wait_for_kernel_routes(NETNS_RECOVERY_BOUND).await?;
        }
        self.log(&format!("netns re-created: {recovery:?}"));
        self.tally.netns.push(recovery);
        self.tally
            .router_faults
            .entry(Router::Kernel)
            .or_default()
            .push((started, Instant::now()));
        Ok(())
    }

    /// Waits until the netlink router holds exactly its desired routes;
    /// how long that took, or None after `bound`.
    async fn wait_for_kernel_routes(&mut self, bound: Duration) -> Result<Option<Duration>> {
        let started = Instant::now();
        while started.elapsed() < bound {
            self.fire_due_timers().await?;
            let want = desired(&self.world.api.nodes())
                .routes
                .remove(&Router::Kernel)
                .unwrap_or_default();
            let have: Routes = self
                .world
                .kernel
                .routes()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.is_ours())
                .filter_map(|r| Some((r.dst, r.via?)))
                .collect();
            if !want.is_empty() && Diff::between(&want, &have).is_empty() {
                return Ok(Some(started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(None)
    }
}
