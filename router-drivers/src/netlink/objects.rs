//! nativeroute's nexthop objects on a router: one per (gateway, interface),
//! shared by every route through that gateway, with ids chosen clear of
//! everyone else's.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use nix::errno::Errno;

use super::batch::KernelError;
use super::dump::KernelNexthop;
use super::message::RtnlMessage;
use super::nexthop::NexthopMessage;
use super::socket::Socket;
use crate::{DriverError, Fence};

/// Where our ids start: high, away from the small ids `ip nexthop add` users
/// and FRR pick.
const ID_BASE: u32 = 0x4e52_0000;
/// Rounds of "pick another id" when someone else takes ours meanwhile.
const CREATE_ROUNDS: usize = 3;

/// A gateway and the interface it is on-link through.
pub(super) type NexthopKey = (IpAddr, u32);

pub(super) struct Objects {
    protocol: u8,
    /// Our plain nexthops, by what they lead to (the lowest id if several).
    by_key: HashMap<NexthopKey, u32>,
    /// Every id of ours, shared or not, and what it leads to if plain.
    ours: HashMap<u32, Option<NexthopKey>>,
    /// Every id in use on the router, whoever made it.
    taken: HashSet<u32>,
    next_id: u32,
    /// Ids created since [`Objects::take_created`] last asked.
    created: Vec<u32>,
}

impl Objects {
    pub(super) fn new(nexthops: &HashMap<u32, KernelNexthop>, protocol: u8) -> Self {
        let mut objects = Self {
            protocol,
            by_key: HashMap::new(),
            ours: HashMap::new(),
            taken: nexthops.keys().copied().collect(),
            next_id: ID_BASE,
            created: Vec::new(),
        };
        let mut ids: Vec<_> = nexthops
            .iter()
            .filter(|(_, nh)| nh.protocol == protocol)
            .collect();
        ids.sort_by_key(|(id, _)| **id);
        for (id, nexthop) in ids {
            let key = match (nexthop.plain, nexthop.gateway, nexthop.oif) {
                (true, Some(gateway), Some(oif)) => Some((gateway, oif)),
                _ => None,
            };
            objects.ours.insert(*id, key);
            if let Some(key) = key {
                objects.by_key.entry(key).or_insert(*id);
            }
        }
        objects
    }

    pub(super) fn id(&self, key: &NexthopKey) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// What nexthop `id` leads to, if it is a plain one of ours.
    pub(super) fn key_of(&self, id: u32) -> Option<NexthopKey> {
        self.ours.get(&id).copied().flatten()
    }

    pub(super) fn is_ours(&self, id: u32) -> bool {
        self.ours.contains_key(&id)
    }

    pub(super) fn ours(&self) -> impl Iterator<Item = u32> + '_ {
        self.ours.keys().copied()
    }

    /// Creates a nexthop object for each key that has none. Returns the keys
    /// the kernel refused, with its reason; the others now have an id,
    /// unless `fence` stopped the creation first.
    pub(super) async fn create(
        &mut self,
        socket: &mut Socket,
        keys: impl IntoIterator<Item = NexthopKey>,
        fence: &Fence,
    ) -> Result<HashMap<NexthopKey, KernelError>, DriverError> {
        let mut pending: Vec<NexthopKey> = keys
            .into_iter()
            .filter(|key| self.id(key).is_none())
            .collect();
        pending.sort();
        pending.dedup();
        let mut refused = HashMap::new();
        for round in 1..=CREATE_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let attempts: Vec<(NexthopKey, u32)> = pending
                .drain(..)
                .map(|key| (key, self.fresh_id()))
                .collect();
            let requests = attempts
                .iter()
                .map(|&((gateway, oif), id)| {
                    let message = NexthopMessage::new_gateway(id, gateway, oif, self.protocol);
                    (RtnlMessage::Nexthop(message), NLM_F_CREATE | NLM_F_EXCL)
                })
                .collect();
            let answers = socket.batch("creating nexthops", requests, fence).await?;
            for ((key, id), answer) in attempts.into_iter().zip(answers) {
                match answer {
                    Ok(()) => {
                        self.by_key.insert(key, id);
                        self.ours.insert(id, Some(key));
                        self.created.push(id);
                    }
                    // Someone took the id since the dump: try another.
                    Err(error) if error.errno == Errno::EEXIST && round < CREATE_ROUNDS => {
                        pending.push(key);
                    }
                    Err(error) => {
                        refused.insert(key, error);
                    }
                }
            }
        }
        Ok(refused)
    }

    /// The ids created since the last call.
    pub(super) fn take_created(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.created)
    }

    /// Forgets nexthop `id`, deleted from the kernel.
    pub(super) fn forget(&mut self, id: u32) {
        if let Some(Some(key)) = self.ours.remove(&id)
            && self.by_key.get(&key) == Some(&id)
        {
            self.by_key.remove(&key);
        }
        self.taken.remove(&id);
    }

    fn fresh_id(&mut self) -> u32 {
        while self.taken.contains(&self.next_id) || self.next_id == 0 {
            self.next_id = self.next_id.checked_add(1).unwrap_or(ID_BASE);
        }
        let id = self.next_id;
        self.taken.insert(id);
        id
    }
}
