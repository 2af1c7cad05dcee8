//! The seeded plan: every node event, restart, handover, fault and
//! checkpoint of a run, in order, drawn from one `StdRng` before anything
//! starts. The plan depends only on the seed and the sizes, never on what
//! the controller did, so the same seed replays the same sequence (only
//! the timing differs). Values that name another node's subnet are
//! resolved when applied, since only the controller decides subnets.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use super::model::{Model, NodeEvent};

/// How big a run is.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub events: usize,
    pub restarts: usize,
    pub handovers: usize,
    /// The node population the run keeps around (half to one and a half of it).
    pub nodes: usize,
    /// Checkpoints during the run; one more follows the last event.
    pub checkpoints: usize,
    pub faults: FaultCounts,
}

/// How many of each fault a run injects.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    pub drop_watches: usize,
    pub gone: usize,
    pub server_errors: usize,
    pub api_away: usize,
    pub frr_restart: usize,
    pub sshd_away: usize,
    pub netns_recreate: usize,
}

/// A fault, as injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every open watch ends; clients resume.
    DropWatches,
    /// The watch history is compacted, then watches are dropped: the
    /// resume is answered 410 Gone and the controller lists again.
    Gone,
    /// The next `times` requests whose path contains `path` get 500.
    ServerErrors { path: &'static str, times: usize },
    /// The API server stops listening for `FAULT_DOWNTIME`.
    ApiAway,
    /// zebra and staticd restart (FRR forgets every static route).
    FrrRestart,
    /// sshd stops (sessions too) for `FAULT_DOWNTIME`.
    SshdAway,
    /// The netlink router's namespace is deleted and built again.
    NetnsRecreate,
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::DropWatches => "dropped watches",
            Fault::Gone => "410 Gone (compaction)",
            Fault::ServerErrors { .. } => "500s",
            Fault::ApiAway => "API server away",
            Fault::FrrRestart => "FRR restarted",
            Fault::SshdAway => "sshd away",
            Fault::NetnsRecreate => "netns re-created",
        }
    }
}

/// How long the API server and sshd stay away.
pub const FAULT_DOWNTIME: Duration = Duration::from_secs(30);

/// Whom a kill -9 hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    Leader,
    Follower,
}

/// One step of the run.
#[derive(Clone, Debug)]
pub enum Step {
    /// Node events written back to back, then a pause.
    Burst {
        events: Vec<NodeEvent>,
        pause: Duration,
    },
    /// kill -9, right after the last burst's writes (`mid_batch`) or after
    /// a quiet second; the process starts again `down` later.
    Kill {
        victim: Victim,
        mid_batch: bool,
        down: Duration,
    },
    /// SIGTERM to the leader; the follower must take over.
    Handover,
    Fault(Fault),
    /// Quiesce, wait for convergence, check every invariant.
    Checkpoint,
}

pub struct Plan {
    pub steps: Vec<Step>,
    /// The nodes that exist before the controllers start.
    pub initial: Vec<NodeEvent>,
}

impl Plan {
    pub fn generate(seed: u64, sizes: &Sizes) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = Model::new(sizes.nodes);
        let initial = model.initial_population(&mut rng);
        let mut bursts = Vec::new();
        let mut planned = 0;
        let api_away_at = positions(&mut rng, sizes.faults.api_away, sizes.events);
        while planned < sizes.events {
            let size = burst_size(&mut rng).min(sizes.events - planned);
            let mut events = Vec::with_capacity(size);
            for _ in 0..size {
                if api_away_at.contains(&planned) {
                    model.api_away();
                }
                let event = model.next_event(&mut rng);
                model.apply(&event);
                events.push(event);
                planned += 1;
            }
            let pause = Duration::from_millis(rng.random_range(30..400));
            bursts.push((planned, Step::Burst { events, pause }));
        }
        let specials = specials(&mut rng, sizes, &api_away_at);
        Plan {
            steps: interleave(bursts, specials, sizes),
            initial,
        }
    }

    /// A short fingerprint of the whole plan: two runs with the same seed
    /// print the same one.
    pub fn digest(&self) -> String {
        let text = format!("{:?}{:?}", self.initial, self.steps);
        // FNV-1a: stable across builds, unlike the std hasher.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    pub fn events(&self) -> usize {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Burst { events, .. } => events.len(),
                _ => 0,
            })
            .sum()
    }
}

/// Mostly small bursts, sometimes a big one (a rolling node pool update).
fn burst_size(rng: &mut StdRng) -> usize {
    if rng.random_bool(0.1) {
        rng.random_range(8..=20)
    } else {
        rng.random_range(1..=5)
    }
}

/// `count` distinct event positions in `1..events`, sorted.
fn positions(rng: &mut StdRng, count: usize, events: usize) -> Vec<usize> {
    let mut chosen: Vec<usize> = (0..count)
        .map(|_| rng.random_range(1..events.max(2)))
        .collect();
    chosen.sort_unstable();
    chosen
}

/// Restarts, handovers and faults, each at an event position.
fn specials(rng: &mut StdRng, sizes: &Sizes, api_away_at: &[usize]) -> Vec<(usize, Step)> {
    let mut out = Vec::new();
    let at = |rng: &mut StdRng| rng.random_range(1..sizes.events.max(2));
    for _ in 0..sizes.restarts {
        let victim = if rng.random_bool(0.7) {
            Victim::Leader
        } else {
            Victim::Follower
        };
        let step = Step::Kill {
            victim,
            mid_batch: rng.random_bool(0.5),
            down: Duration::from_millis(rng.random_range(200..5_000)),
        };
        out.push((at(rng), step));
    }
    for _ in 0..sizes.handovers {
        out.push((at(rng), Step::Handover));
    }
    let f = sizes.faults;
    for _ in 0..f.drop_watches {
        out.push((at(rng), Step::Fault(Fault::DropWatches)));
    }
    for _ in 0..f.gone {
        out.push((at(rng), Step::Fault(Fault::Gone)));
    }
    for _ in 0..f.server_errors {
        let path = *[
            "watch=true",
            "/leases/",
            "/nodes/",
            "/events",
            "/api/v1/nodes?",
        ]
        .choose(rng)
        .unwrap_or(&"/nodes/");
        let times = rng.random_range(1..=6);
        out.push((at(rng), Step::Fault(Fault::ServerErrors { path, times })));
    }
    out.extend(
        api_away_at
            .iter()
            .map(|&position| (position, Step::Fault(Fault::ApiAway))),
    );
    for _ in 0..f.frr_restart {
        out.push((at(rng), Step::Fault(Fault::FrrRestart)));
    }
    for _ in 0..f.sshd_away {
        out.push((at(rng), Step::Fault(Fault::SshdAway)));
    }
    for _ in 0..f.netns_recreate {
        out.push((at(rng), Step::Fault(Fault::NetnsRecreate)));
    }
    out
}

/// Puts each special step after the burst that reaches its event
/// position, checkpoints at even intervals, and one checkpoint at the end.
fn interleave(
    bursts: Vec<(usize, Step)>,
    mut specials: Vec<(usize, Step)>,
    sizes: &Sizes,
) -> Vec<Step> {
    let every = sizes.events / (sizes.checkpoints + 1).max(1);
    for i in 1..=sizes.checkpoints {
        specials.push((i * every, Step::Checkpoint));
    }
    // Stable: specials drawn at one position keep their drawing order.
    specials.sort_by_key(|(position, _)| *position);
    let mut specials = specials.into_iter().peekable();
    let mut steps = Vec::new();
    for (reached, burst) in bursts {
        steps.push(burst);
        while let Some((_, step)) = specials.next_if(|(position, _)| *position <= reached) {
            steps.push(step);
        }
    }
    steps.extend(specials.map(|(_, step)| step));
    steps.push(Step::Checkpoint);
    steps
}

/// Settings for the CI run and the full one.
pub fn sizes(full: bool) -> Sizes {
    if full {
        Sizes {
            events: 10_000,
            restarts: 20,
            handovers: 2,
            nodes: 130,
            checkpoints: 9,
            faults: FaultCounts {
                drop_watches: 10,
                gone: 6,
                server_errors: 12,
                api_away: 2,
                frr_restart: 3,
                sshd_away: 2,
                netns_recreate: 2,
            },
        }
    } else {
        Sizes {
            events: 700,
            restarts: 4,
            handovers: 2,
            nodes: 100,
            checkpoints: 2,
            faults: FaultCounts {
                drop_watches: 2,
                gone: 1,
                server_errors: 2,
                api_away: 1,
                frr_restart: 1,
                sshd_away: 1,
                netns_recreate: 1,
            },
        }
    }
}
