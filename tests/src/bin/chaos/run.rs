//! Playing a plan against the world: node events in bursts, kill -9
//! restarts, handovers, faults, checkpoints, and the timers that end the
//! faults that last (a stopped API server or sshd comes back after 30 s, a
//! killed controller starts again). Faults are in `faults.rs`, checkpoints
//! in `checkpoint.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use nativeroute_tests::route_monitor::RouteMonitor;

use super::checkpoint::CheckpointResult;
use super::cluster::Cluster;
use super::controllers::{Controllers, LEASE_NAME, LEASE_NAMESPACE};
use super::model::NodeEvent;
use super::observe::{Observer, Router};
use super::plan::{Plan, Step, Victim};
use super::world::World;

/// nativeroute's kernel route protocol, for the route monitor.
pub const OUR_PROTOCOL: u8 = 203;
/// How long a new leader may take after a handover's SIGTERM.
const TAKEOVER_BOUND: Duration = Duration::from_secs(30);
/// How long a new leader takes to list the Nodes and sync the routers.
pub const LEADER_SETTLES: Duration = Duration::from_secs(5);

/// Something that happens at a time rather than at a step.
#[derive(Debug)]
pub enum Timer {
    /// A killed controller starts again.
    Restart {
        index: usize,
        at: Instant,
        killed_at: Instant,
        was_leader: bool,
    },
    ApiBack {
        at: Instant,
    },
    SshdBack {
        at: Instant,
    },
}

impl Timer {
    fn at(&self) -> Instant {
        match self {
            Timer::Restart { at, .. } | Timer::ApiBack { at } | Timer::SshdBack { at } => *at,
        }
    }
}

/// A handover as it happened.
#[derive(Clone, Debug)]
pub struct Handover {
    pub from: String,
    pub to: String,
    /// From SIGTERM to the follower holding the Lease; None if it never did.
    pub took: Option<Duration>,
    pub exit: String,
}

/// The netlink router's namespace re-created: how its routes came back.
#[derive(Clone, Debug)]
pub struct NetnsRecovery {
    /// Re-programmed by the running controller, after this long.
    pub recovered: Option<Duration>,
    /// If not: re-programmed after a kill -9 restart of the leader.
    pub after_restart: Option<Duration>,
}

/// What the run did and saw, for the summary.
#[derive(Default)]
pub struct Tally {
    pub kills: usize,
    pub leader_kills: usize,
    pub mid_batch_kills: usize,
    pub handovers: Vec<Handover>,
    pub faults: BTreeMap<&'static str, usize>,
    pub netns: Vec<NetnsRecovery>,
    pub checkpoints: Vec<CheckpointResult>,
    /// Per router, the windows in which its own fault took routes away or
    /// kept them from it (FRR restarted, sshd away, namespace re-created).
    pub router_faults: BTreeMap<Router, Vec<(Instant, Instant)>>,
    /// Windows in which no controller could act: the API server away, the
    /// leader killed or handing over, until a leader is back at work.
    pub control_faults: Vec<(Instant, Instant)>,
    pub most_nodes: usize,
    pub least_nodes: usize,
}

pub struct Run {
    pub world: World,
    pub controllers: Controllers,
    pub cluster: Cluster,
    pub observer: Observer,
    pub monitor: Option<RouteMonitor>,
    /// Withdrawals seen by monitors that were replaced (namespace re-created).
    pub kernel_withdrawals: Vec<(Instant, Ipv4Net)>,
    pub monitor_overruns: usize,
    pub timers: Vec<Timer>,
    pub tally: Tally,
    pub started: Instant,
}

impl Run {
    /// Plays every step of `plan` after its initial population.
    pub async fn play(&mut self, plan: &Plan) -> Result<()> {
        let total = plan.steps.len();
        for (number, step) in plan.steps.iter().enumerate() {
            self.fire_due_timers().await?;
            self.controllers.restart_crashed()?;
            match step {
                Step::Burst { events, pause } => {
                    for event in events {
                        self.wait_for_budget(event).await?;
                        self.cluster.apply(event).await?;
                    }
                    let population = self.cluster.population();
                    self.tally.most_nodes = self.tally.most_nodes.max(population);
                    self.tally.least_nodes = self.tally.least_nodes.min(population);
                    tokio::time::sleep(*pause).await;
                }
                Step::Kill {
                    victim,
                    mid_batch,
                    down,
                } => self.kill(*victim, *mid_batch, *down).await?,
                Step::Handover => self.handover().await?,
                Step::Fault(fault) => self.inject(fault).await?,
                Step::Checkpoint => {
                    self.log(&format!("checkpoint (step {number} of {total})"));
                    self.checkpoint().await?;
                }
            }
        }
        Ok(())
    }

    /// Waits until `event` fits the run's withdrawal budget, keeping the
    /// timers going meanwhile (a killed controller starts again on time).
    async fn wait_for_budget(&mut self, event: &NodeEvent) -> Result<()> {
        loop {
            let wait = self.cluster.budget_wait(event);
            if wait.is_zero() {
                return Ok(());
            }
            let nap = wait.min(Duration::from_millis(200));
            tokio::time::sleep(nap).await;
            self.cluster.budget_waits += nap;
            self.fire_due_timers().await?;
        }
    }

    pub fn log(&self, what: &str) {
        eprintln!(
            "chaos [{:>7.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// The controller holding the Lease, if it is one of ours.
    pub fn leader(&self) -> Option<usize> {
        let lease = self.world.api.lease(LEASE_NAMESPACE, LEASE_NAME)?;
        self.controllers
            .index_of(lease.spec?.holder_identity.as_deref()?)
    }

    /// Fires the timers that are due.
    pub async fn fire_due_timers(&mut self) -> Result<()> {
        let now = Instant::now();
        let (due, later): (Vec<Timer>, Vec<Timer>) =
            self.timers.drain(..).partition(|t| t.at() <= now);
        self.timers = later;
        for timer in due {
            self.fire(timer).await?;
        }
        Ok(())
    }

    /// Waits for every pending timer and fires it: no fault is left
    /// running and both controllers run.
    pub async fn settle(&mut self) -> Result<()> {
        while let Some(next) = self.timers.iter().map(Timer::at).min() {
            tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
            self.fire_due_timers().await?;
        }
        Ok(())
    }

    async fn fire(&mut self, timer: Timer) -> Result<()> {
        match timer {
            Timer::Restart {
                index,
                killed_at,
                was_leader,
                ..
            } => {
                if was_leader {
                    // It takes the Lease back as soon as it runs again
                    // (same identity); a few seconds to list and sync.
                    self.tally
                        .control_faults
                        .push((killed_at, Instant::now() + LEADER_SETTLES));
                }
                self.controllers.start(index)
            }
            Timer::ApiBack { .. } => {
                self.world.api.restart().await?;
                self.cluster.api_up = true;
                self.log("API server back");
                Ok(())
            }
            Timer::SshdBack { .. } => {
                tokio::task::block_in_place(|| self.world.frr.start_sshd())?;
                self.log("sshd back");
                Ok(())
            }
        }
    }

    /// Starts a controller now if a restart of it is pending.
    async fn restart_now(&mut self, index: usize) -> Result<()> {
        if let Some(position) = self
            .timers
            .iter()
            .position(|t| matches!(t, Timer::Restart { index: i, .. } if *i == index))
        {
            let timer = self.timers.remove(position);
            self.fire(timer).await?;
        }
        Ok(())
    }

    async fn kill(&mut self, victim: Victim, mid_batch: bool, down: Duration) -> Result<()> {
        if !mid_batch {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let leader = self.leader().filter(|&i| self.controllers.is_up(i));
        let index = match (victim, leader) {
            (Victim::Leader, Some(leader)) => leader,
            (Victim::Follower, Some(leader)) => 1 - leader,
            (_, None) => 0,
        };
        // Never both down at once by a kill: the other one starts first.
        self.restart_now(1 - index).await?;
        if !self.controllers.is_up(index) {
            self.restart_now(index).await?;
        }
        let was_leader = Some(index) == leader;
        self.controllers.kill(index);
        self.tally.kills += 1;
        self.tally.leader_kills += usize::from(was_leader);
        self.tally.mid_batch_kills += usize::from(mid_batch);
        let killed_at = Instant::now();
        self.timers.push(Timer::Restart {
            index,
            at: killed_at + down,
            killed_at,
            was_leader,
        });
        self.log(&format!(
            "kill -9 {} ({}{}), back in {down:?}",
            self.controllers.members[index].identity,
            if was_leader { "leader" } else { "follower" },
            if mid_batch { ", mid-batch" } else { "" },
        ));
        Ok(())
    }

    /// SIGTERM to the leader; the follower must take the Lease.
    async fn handover(&mut self) -> Result<()> {
        self.settle().await?;
        let deadline = Instant::now() + TAKEOVER_BOUND;
        let from = loop {
            if let Some(leader) = self.leader() {
                break leader;
            }
            if Instant::now() > deadline {
                bail!("no controller took the Lease within {TAKEOVER_BOUND:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let to = 1 - from;
        let started = Instant::now();
        let exit = tokio::task::block_in_place(|| {
            self.controllers.terminate(from, Duration::from_secs(15))
        })
        .map_or_else(|err| format!("{err:#}"), |status| status.to_string());
        let mut took = None;
        while started.elapsed() < TAKEOVER_BOUND {
            if self.leader() == Some(to) {
                took = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.tally.control_faults.push((
            started,
            started + took.unwrap_or(TAKEOVER_BOUND) + LEADER_SETTLES,
        ));
        self.controllers
            .start(from)
            .context("restarting the old leader")?;
        let handover = Handover {
            from: self.controllers.members[from].identity.clone(),
            to: self.controllers.members[to].identity.clone(),
            took,
            exit,
        };
        self.log(&format!("handover {handover:?}"));
        self.tally.handovers.push(handover);
        Ok(())
    }

    /// Waits until a controller holds the Lease (at the start).
    pub async fn wait_for_leader(&self, bound: Duration) -> Result<()> {
        let deadline = Instant::now() + bound;
        while self.leader().is_none() {
            if Instant::now() > deadline {
                bail!("no controller took the Lease within {bound:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Every withdrawal the route monitors saw, the current one included.
    pub fn all_kernel_withdrawals(&self) -> Vec<(Instant, Ipv4Net)> {
        let mut all = self.kernel_withdrawals.clone();
        if let Some(monitor) = &self.monitor {
            all.extend(monitor.withdrawals());
        }
        all.sort();
        all
    }
}
