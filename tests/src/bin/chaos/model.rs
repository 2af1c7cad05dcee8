//! The node population as the run's own writes leave it: which names exist,
//! which are selected, excluded or carry a next-hop override. The plan
//! draws events from it, and the run keeps a copy in step while applying
//! them (for the withdrawal budget). It never asks the controller anything.

use std::net::Ipv4Addr;

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

/// The label the controller selects on (`nodes.selector: LABEL=yes`).
pub const LABEL: &str = "nativeroute.io/chaos";
/// Names the run may use: chaos-000 … chaos-379, each with its own address
/// on one of the two node networks (192.168.{2,3}.10 … .199).
pub const NAMES: usize = 380;
/// The largest population a run may keep: the pool has 253 free /24s, and
/// unselected and excluded nodes keep theirs.
pub const MOST_NODES: usize = 200;

/// Overrides a router can use (on its node networks, outside the pool).
/// The last two are the routers' own addresses: the netlink router has
/// both, the FRR router logs in on 192.168.3.2, so on that router the
/// route falls back to the node's own address.
const USABLE_NEXT_HOPS: [&str; 4] = [
    "192.168.2.201",
    "192.168.3.233",
    "192.168.2.2",
    "192.168.3.2",
];
/// Typos and hostile values: each is refused and the node keeps its route.
const UNUSABLE_NEXT_HOPS: [&str; 7] = [
    "8.8.8.8",
    "8.8.4.4",
    "$(reboot)",
    "11.11.7.10",
    "192.168.3.300",
    "192.168.2.10,192.168.3.10",
    "fd00::1",
];
const EXCLUDE_TYPOS: [&str; 4] = ["yes", "1", "TRUE", "$(reboot)"];
const PIN_GARBAGE: [&str; 5] = [
    "11.11.300.0/24",
    "$(reboot)",
    "11.11.3.7/24",
    "10.0.0.0/24",
    "11.11.3.0/25",
];
/// Events a cleared override must stand before a refused one is written
/// over it: the controller keeps a node on its last usable override while
/// a newer one is refused, so a refused value must reach a controller that
/// has seen the override go, or the route's next hop is not predictable.
const CLEARED_FOR: usize = 20;
/// Events after an API outage begins during which no refused override is
/// written over one cleared during the outage (the controller may see both
/// at once when the API returns).
const OUTAGE_EVENTS: usize = 250;

/// A user's subnet pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// 11.11.N.0/24: free, or someone's (the run does not know whose).
    Free(u8),
    /// The subnet another node holds, read when the pin is written.
    SubnetOf(usize),
    /// Inside a reserved range: refused.
    Reserved,
    /// Not a usable subnet at all: refused.
    Garbage(&'static str),
}

/// What a user or a kubelet does to a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    Create {
        node: usize,
        selected: bool,
        pin: Option<Pin>,
    },
    Delete {
        node: usize,
    },
    /// Deleted and registered again under the same name at once, with its
    /// old subnet pinned or not.
    Recreate {
        node: usize,
        pin_old_subnet: bool,
    },
    Relabel {
        node: usize,
        selected: bool,
    },
    /// `nativeroute.io/exclude`: a value, or removed.
    Exclude {
        node: usize,
        value: Option<&'static str>,
    },
    /// `nativeroute.io/next-hop`: a value, or removed.
    NextHop {
        node: usize,
        value: Option<&'static str>,
    },
    /// A pin written over a node that has its subnet already.
    PinExisting {
        node: usize,
        pin: Pin,
    },
    /// Someone removes the subnet annotation.
    DropSubnetAnnotation {
        node: usize,
    },
    /// `nativeroute.io/nexthop` (sic): an unknown key.
    UnknownAnnotation {
        node: usize,
    },
}

impl NodeEvent {
    pub fn node(&self) -> usize {
        match self {
            NodeEvent::Create { node, .. }
            | NodeEvent::Delete { node }
            | NodeEvent::Recreate { node, .. }
            | NodeEvent::Relabel { node, .. }
            | NodeEvent::Exclude { node, .. }
            | NodeEvent::NextHop { node, .. }
            | NodeEvent::PinExisting { node, .. }
            | NodeEvent::DropSubnetAnnotation { node }
            | NodeEvent::UnknownAnnotation { node } => *node,
        }
    }

    /// The row of the summary this event is counted in.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeEvent::Create { pin: None, .. } => "create",
            NodeEvent::Create { pin: Some(_), .. } => "create pinned",
            NodeEvent::Delete { .. } => "delete",
            NodeEvent::Recreate { .. } => "re-create same name",
            NodeEvent::Relabel {
                selected: false, ..
            } => "relabel out of selector",
            NodeEvent::Relabel { selected: true, .. } => "relabel into selector",
            NodeEvent::Exclude {
                value: Some("true"),
                ..
            } => "exclude=true",
            NodeEvent::Exclude {
                value: Some("false") | None,
                ..
            } => "exclude off",
            NodeEvent::Exclude { .. } => "exclude typo",
            NodeEvent::NextHop { value: None, .. } => "next-hop removed",
            NodeEvent::NextHop { value: Some(v), .. } if usable(v) => "next-hop usable",
            NodeEvent::NextHop { .. } => "next-hop refused value",
            NodeEvent::PinExisting { .. } => "pin over assigned subnet",
            NodeEvent::DropSubnetAnnotation { .. } => "subnet annotation removed",
            NodeEvent::UnknownAnnotation { .. } => "unknown annotation",
        }
    }
}

pub fn usable(value: &str) -> bool {
    USABLE_NEXT_HOPS.contains(&value)
}

pub fn name(node: usize) -> String {
    format!("chaos-{node:03}")
}

/// Node i's InternalIP: alternating between the two node networks.
pub fn address(node: usize) -> Ipv4Addr {
    let third = if node % 2 == 0 { 2 } else { 3 };
    let host = u8::try_from(10 + node / 2).unwrap_or(u8::MAX);
    Ipv4Addr::new(192, 168, third, host)
}

#[derive(Clone, Debug, Default)]
struct NodeState {
    exists: bool,
    selected: bool,
    excluded: bool,
    /// The next-hop annotation, if any.
    next_hop: Option<&'static str>,
    /// The event count when the override last stopped being usable.
    cleared_at: usize,
}

impl NodeState {
    fn live(&self) -> bool {
        self.exists && self.selected && !self.excluded
    }

    /// The override routes take, if a usable one is set.
    fn override_in_use(&self) -> Option<&'static str> {
        self.next_hop.filter(|value| usable(value))
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    nodes: Vec<NodeState>,
    target: usize,
    /// Events applied so far.
    applied: usize,
    /// The event count when the last API outage began.
    api_away_at: Option<usize>,
}

impl Model {
    pub fn new(target: usize) -> Model {
        Model {
            nodes: vec![NodeState::default(); NAMES],
            target: target.clamp(2, MOST_NODES * 2 / 3),
            applied: 0,
            api_away_at: None,
        }
    }

    /// The nodes registered before the controllers start: `target` of
    /// them, one in twenty outside the selector.
    pub fn initial_population(&mut self, rng: &mut StdRng) -> Vec<NodeEvent> {
        let events: Vec<NodeEvent> = (0..self.target)
            .map(|node| NodeEvent::Create {
                node,
                selected: !rng.random_bool(0.05),
                pin: None,
            })
            .collect();
        for event in &events {
            self.apply(event);
        }
        events
    }

    pub fn population(&self) -> usize {
        self.nodes.iter().filter(|n| n.exists).count()
    }

    /// Nodes that should be routed now.
    pub fn live(&self) -> usize {
        self.nodes.iter().filter(|n| n.live()).count()
    }

    pub fn is_live(&self, node: usize) -> bool {
        self.nodes.get(node).is_some_and(NodeState::live)
    }

    /// The usable next-hop override node `node` carries, if any.
    pub fn override_in_use(&self, node: usize) -> Option<&'static str> {
        self.nodes.get(node).and_then(NodeState::override_in_use)
    }

    /// Marks the start of an API outage (for the plan's next-hop rule).
    pub fn api_away(&mut self) {
        self.api_away_at = Some(self.applied);
    }

    /// Whether `event` takes a route away or points it elsewhere on the
    /// routers: what the removal guard budgets.
    pub fn withdraws(&self, event: &NodeEvent) -> bool {
        let Some(state) = self.nodes.get(event.node()) else {
            return false;
        };
        if !state.live() {
            return false;
        }
        match event {
            NodeEvent::Delete { .. } | NodeEvent::Recreate { .. } => true,
            NodeEvent::Relabel { selected, .. } => !selected,
            NodeEvent::Exclude { value, .. } => value.is_some_and(|v| v.trim() == "true"),
            NodeEvent::NextHop { value, .. } => {
                state.override_in_use() != value.filter(|v| usable(v))
            }
            _ => false,
        }
    }

    pub fn apply(&mut self, event: &NodeEvent) {
        let applied = self.applied;
        self.applied += 1;
        let Some(state) = self.nodes.get_mut(event.node()) else {
            return;
        };
        match event {
            NodeEvent::Create { selected, .. } => {
                *state = NodeState {
                    exists: true,
                    selected: *selected,
                    cleared_at: applied,
                    ..NodeState::default()
                };
            }
            NodeEvent::Delete { .. } => *state = NodeState::default(),
            NodeEvent::Recreate { .. } => {
                *state = NodeState {
                    exists: true,
                    selected: true,
                    cleared_at: applied,
                    ..NodeState::default()
                };
            }
            NodeEvent::Relabel { selected, .. } => state.selected = *selected,
            NodeEvent::Exclude { value, .. } => {
                state.excluded = value.is_some_and(|v| v.trim() == "true");
            }
            NodeEvent::NextHop { value, .. } => {
                if state.override_in_use().is_some() && !value.is_some_and(usable) {
                    state.cleared_at = applied;
                }
                state.next_hop = *value;
            }
            NodeEvent::PinExisting { .. }
            | NodeEvent::DropSubnetAnnotation { .. }
            | NodeEvent::UnknownAnnotation { .. } => {}
        }
    }

    /// Draws the next event: a kind by weight among those that apply now,
    /// then a node for it.
    pub fn next_event(&self, rng: &mut StdRng) -> NodeEvent {
        loop {
            let kinds = self.weighted_kinds();
            let total: u32 = kinds.iter().map(|(_, weight)| weight).sum();
            let mut pick = rng.random_range(0..total.max(1));
            let kind = kinds
                .iter()
                .find(|(_, weight)| {
                    if pick < *weight {
                        true
                    } else {
                        pick -= weight;
                        false
                    }
                })
                .map(|(kind, _)| *kind)
                .unwrap_or(Kind::Create);
            if let Some(event) = self.draw(kind, rng) {
                return event;
            }
        }
    }

    fn weighted_kinds(&self) -> Vec<(Kind, u32)> {
        let population = self.population();
        let (low, high) = (self.target / 2, self.target * 3 / 2);
        let create = match population {
            p if p >= high => 0,
            p if p < self.target => 20,
            _ => 12,
        };
        let delete = match population {
            p if p <= low => 0,
            p if p > self.target => 18,
            _ => 10,
        };
        vec![
            (Kind::Create, create),
            (Kind::CreatePinned, create / 2),
            (Kind::CreateUnselected, create / 6),
            (Kind::Delete, delete),
            (Kind::Recreate, 6),
            (Kind::RelabelOut, 6),
            (Kind::RelabelIn, 6),
            (Kind::ExcludeOn, 4),
            (Kind::ExcludeOff, 4),
            (Kind::ExcludeTypo, 3),
            (Kind::NextHopUsable, 5),
            (Kind::NextHopRemoved, 4),
            (Kind::NextHopRefused, 5),
            (Kind::PinExisting, 3),
            (Kind::DropSubnet, 2),
            (Kind::Unknown, 2),
        ]
    }

    fn pick(&self, rng: &mut StdRng, wanted: impl Fn(&NodeState) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| wanted(&self.nodes[i]))
            .collect();
        candidates.choose(rng).copied()
    }

    fn draw(&self, kind: Kind, rng: &mut StdRng) -> Option<NodeEvent> {
        let existing = |n: &NodeState| n.exists;
        Some(match kind {
            Kind::Create | Kind::CreatePinned | Kind::CreateUnselected => {
                let node = self.pick(rng, |n| !n.exists)?;
                let pin = (kind == Kind::CreatePinned).then(|| self.draw_pin(rng, node));
                NodeEvent::Create {
                    node,
                    selected: kind != Kind::CreateUnselected,
                    pin,
                }
            }
            Kind::Delete => NodeEvent::Delete {
                node: self.pick(rng, existing)?,
            },
            Kind::Recreate => NodeEvent::Recreate {
                node: self.pick(rng, existing)?,
                pin_old_subnet: rng.random_bool(0.5),
            },
            Kind::RelabelOut | Kind::RelabelIn => {
                let selected = kind == Kind::RelabelIn;
                NodeEvent::Relabel {
                    node: self.pick(rng, |n| n.exists && n.selected != selected)?,
                    selected,
                }
            }
            Kind::ExcludeOn => NodeEvent::Exclude {
                node: self.pick(rng, |n| n.exists && !n.excluded)?,
                value: Some("true"),
            },
            Kind::ExcludeOff => NodeEvent::Exclude {
                node: self.pick(rng, |n| n.exists && n.excluded)?,
                value: *[Some("false"), None].choose(rng)?,
            },
            Kind::ExcludeTypo => NodeEvent::Exclude {
                node: self.pick(rng, |n| n.exists && !n.excluded)?,
                value: Some(*EXCLUDE_TYPOS.choose(rng)?),
            },
            Kind::NextHopUsable => NodeEvent::NextHop {
                node: self.pick(rng, existing)?,
                value: Some(*USABLE_NEXT_HOPS.choose(rng)?),
            },
            Kind::NextHopRemoved => NodeEvent::NextHop {
                node: self.pick(rng, |n| n.exists && n.next_hop.is_some())?,
                value: None,
            },
            Kind::NextHopRefused => NodeEvent::NextHop {
                node: self.pick(rng, |n| self.may_refuse_next_hop(n))?,
                value: Some(*UNUSABLE_NEXT_HOPS.choose(rng)?),
            },
            Kind::PinExisting => {
                let node = self.pick(rng, existing)?;
                NodeEvent::PinExisting {
                    node,
                    pin: self.draw_pin(rng, node),
                }
            }
            Kind::DropSubnet => NodeEvent::DropSubnetAnnotation {
                node: self.pick(rng, existing)?,
            },
            Kind::Unknown => NodeEvent::UnknownAnnotation {
                node: self.pick(rng, existing)?,
            },
        })
    }

    /// A refused override only over a node routed via its own address, and
    /// only once the controller has surely seen the last usable one go
    /// (see `CLEARED_FOR` and `OUTAGE_EVENTS`).
    fn may_refuse_next_hop(&self, node: &NodeState) -> bool {
        let in_outage = self
            .api_away_at
            .is_some_and(|at| self.applied < at + OUTAGE_EVENTS);
        let cleared_in_outage = self
            .api_away_at
            .is_some_and(|at| node.cleared_at >= at && in_outage);
        node.exists
            && node.override_in_use().is_none()
            && self.applied >= node.cleared_at + CLEARED_FOR
            && !cleared_in_outage
    }

    fn draw_pin(&self, rng: &mut StdRng, node: usize) -> Pin {
        match rng.random_range(0..10) {
            0..=3 => Pin::Free(rng.random_range(1..=249)),
            4..=6 => self
                .pick(rng, |n| n.exists)
                .filter(|&other| other != node)
                .map_or(Pin::Free(rng.random_range(1..=249)), Pin::SubnetOf),
            7 => Pin::Reserved,
            _ => Pin::Garbage(PIN_GARBAGE.choose(rng).copied().unwrap_or("$(reboot)")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    CreatePinned,
    CreateUnselected,
    Delete,
    Recreate,
    RelabelOut,
    RelabelIn,
    ExcludeOn,
    ExcludeOff,
    ExcludeTypo,
    NextHopUsable,
    NextHopRemoved,
    NextHopRefused,
    PinExisting,
    DropSubnet,
    Unknown,
}
