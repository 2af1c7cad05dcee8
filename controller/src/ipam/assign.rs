//! Who gets which subnet when nodes arrive.
//!
//! Nodes are handed in oldest first, so that when two claim one subnet the
//! older keeps it (DESIGN: "the older node keeps it, the other gets a
//! SubnetConflict Event and a fresh subnet only if it had none assigned").
//! A recorded subnet is an assignment made earlier (state file, Node
//! annotation): it is never changed or replaced while the node exists. A
//! pin is a user's wish for a node that has no assignment yet.

use ipnet::IpNet;

use super::{Family, Ipam, SubnetRefused};

/// One node's standing, as the inventory knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    pub node: String,
    /// Subnets assigned to it before (restored after a restart).
    pub recorded: Vec<IpNet>,
    /// Subnets the user asks for (annotation `nativeroute.io/subnet`).
    pub pinned: Vec<IpNet>,
    /// False for excluded nodes: they keep what they hold, but get nothing
    /// new, neither a fresh subnet nor their pin.
    pub wants_subnet: bool,
}

/// What happened to a node, for Events and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node got `subnet` (fresh, pinned or restored).
    Assigned {
        node: String,
        subnet: IpNet,
        how: How,
    },
    /// The node claimed `subnet` but an older node holds it.
    Conflict {
        node: String,
        subnet: IpNet,
        holder: String,
        /// Whether it got a fresh subnet instead (only when it had none).
        given_fresh: bool,
    },
    /// A recorded or pinned subnet that the pool cannot give.
    Refused {
        node: String,
        refused: SubnetRefused,
        pinned: bool,
    },
    /// A pin on a node that already holds another subnet of that family.
    PinIgnored {
        node: String,
        pinned: IpNet,
        holds: IpNet,
    },
    /// No subnet of `family` is left.
    PoolExhausted { node: String, family: Family },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    Fresh,
    Pinned,
    Restored,
}

/// Applies `claims` (oldest node first) to the ledger and says what happened.
///
/// In three passes over all nodes: recorded subnets first, then pins, then
/// fresh subnets. A subnet recorded on an existing node is therefore never
/// handed to another node, whatever their ages: after a restart the ledger
/// starts empty, and a single pass would let an older node without a
/// subnet take a newer node's subnet before that node's record was read.
pub fn assign(ipam: &mut Ipam, claims: impl IntoIterator<Item = Claim>) -> Vec<Outcome> {
    let claims: Vec<Claim> = claims.into_iter().collect();
    let names: Vec<String> = claims
        .iter()
        .rev()
        .map(|claim| claim.node.clone())
        .collect();
    assign_among(ipam, claims, names.iter().map(String::as_str))
}

/// [`assign`] for some of the nodes only (those that changed), where
/// `everyone_newest_first` names all of them: a next-fit cursor that is
/// still unknown is guessed from every node, as a pass over all would.
/// Nodes not among `claims` must hold what they are owed already.
pub fn assign_among<'a>(
    ipam: &mut Ipam,
    claims: Vec<Claim>,
    everyone_newest_first: impl IntoIterator<Item = &'a str>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    // Per node: families for which it gets no fresh subnet, because it had
    // one recorded that it cannot have, and a node's subnet never silently
    // changes.
    let blocked: Vec<Vec<Family>> = claims
        .iter()
        .map(|claim| restore(ipam, claim, &mut outcomes))
        .collect();
    ipam.guess_cursors(everyone_newest_first);
    // A pin is a wish for something new, so only nodes that may get new
    // subnets have it honoured: an excluded node (the router itself, say)
    // pinned to a subnet would otherwise keep it from the node it was meant
    // for, and hold it while it is never routed.
    let wanting = || {
        claims
            .iter()
            .zip(&blocked)
            .filter(|(claim, _)| claim.wants_subnet)
    };
    for (claim, blocked) in wanting() {
        pin(ipam, claim, blocked, &mut outcomes);
    }
    for (claim, blocked) in wanting() {
        allocate_missing(ipam, claim, blocked, &mut outcomes);
    }
    outcomes
}

/// Claims the node's recorded subnets; returns the families refused.
fn restore(ipam: &mut Ipam, claim: &Claim, outcomes: &mut Vec<Outcome>) -> Vec<Family> {
    let node = claim.node.as_str();
    let mut blocked = Vec::new();
    for subnet in &claim.recorded {
        // The common case on every snapshot after the first: nothing to do.
        if ipam.subnets_of(node).contains(subnet) {
            continue;
        }
        match ipam.claim(node, *subnet) {
            Ok(()) => outcomes.push(Outcome::Assigned {
                node: node.into(),
                subnet: *subnet,
                how: How::Restored,
            }),
            Err(refused) => {
                blocked.push(Family::of(subnet));
                outcomes.push(refusal(node, refused, false, false));
            }
        }
    }
    blocked
}

fn pin(ipam: &mut Ipam, claim: &Claim, blocked: &[Family], outcomes: &mut Vec<Outcome>) {
    let node = claim.node.as_str();
    for pin in &claim.pinned {
        let family = Family::of(pin);
        if blocked.contains(&family) {
            continue;
        }
        if let Some(holds) = ipam
            .subnets_of(node)
            .iter()
            .find(|held| Family::of(held) == family)
            .copied()
        {
            if holds != *pin {
                outcomes.push(Outcome::PinIgnored {
                    node: node.into(),
                    pinned: *pin,
                    holds,
                });
            }
            continue;
        }
        match ipam.claim(node, *pin) {
            Ok(()) => outcomes.push(Outcome::Assigned {
                node: node.into(),
                subnet: *pin,
                how: How::Pinned,
            }),
            Err(refused) => outcomes.push(refusal(node, refused, true, claim.wants_subnet)),
        }
    }
}

fn allocate_missing(
    ipam: &mut Ipam,
    claim: &Claim,
    blocked: &[Family],
    outcomes: &mut Vec<Outcome>,
) {
    let node = claim.node.as_str();
    let missing: Vec<Family> = ipam
        .families()
        .filter(|family| !blocked.contains(family))
        .filter(|family| {
            !ipam
                .subnets_of(node)
                .iter()
                .any(|s| Family::of(s) == *family)
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    match ipam.allocate(node, &missing) {
        Ok(fresh) => outcomes.extend(fresh.into_iter().map(|subnet| Outcome::Assigned {
            node: node.into(),
            subnet,
            how: How::Fresh,
        })),
        Err(family) => outcomes.push(Outcome::PoolExhausted {
            node: node.into(),
            family,
        }),
    }
}

fn refusal(node: &str, refused: SubnetRefused, pinned: bool, given_fresh: bool) -> Outcome {
    match refused {
        SubnetRefused::Taken { subnet, holder } => Outcome::Conflict {
            node: node.into(),
            subnet,
            holder,
            given_fresh,
        },
        refused => Outcome::Refused {
            node: node.into(),
            refused,
            pinned,
        },
    }
}
