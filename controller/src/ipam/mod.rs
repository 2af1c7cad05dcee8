//! IPAM: one subnet per node and family from the pool, never two nodes on
//! one subnet.
//!
//! [`Ipam`] is the ledger (who holds what, next-fit allocation, reserved
//! ranges); [`assign`] applies the rules of who gets what when nodes arrive
//! with recorded or pinned subnets.

mod assign;
mod family;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use crate::config::PoolConfig;
use family::FamilyPool;

pub use assign::{Claim, How, Outcome, assign, assign_among};

/// The subnets of the pool and who holds them.
#[derive(Clone, Debug)]
pub struct Ipam {
    v4: Option<FamilyPool>,
    v6: Option<FamilyPool>,
    holders: HashMap<IpNet, String>,
    subnets: HashMap<String, Vec<IpNet>>,
    /// Counts changes of the assignments, so that callers can tell
    /// cheaply that nothing changed.
    generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where next-fit continues, one subnet per family, shared between the node
/// source that records it and the leader Lease that keeps it across
/// restarts and leader changes.
#[derive(Clone, Debug, Default)]
pub struct NextFit(Arc<Mutex<Vec<IpNet>>>);

impl NextFit {
    pub fn get(&self) -> Vec<IpNet> {
        self.lock().clone()
    }

    pub fn set(&self, next: Vec<IpNet>) {
        *self.lock() = next;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IpNet>> {
        // Every change is one assignment: a panic cannot leave it torn.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a given subnet cannot go to a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubnetRefused {
    #[error("{subnet} is outside the pool")]
    OutsidePool { subnet: IpNet },
    #[error("{subnet} is a /{}, but nodes get /{mask} subnets from this pool", subnet.prefix_len())]
    WrongSize { subnet: IpNet, mask: u8 },
    #[error("{subnet} lies in a reserved range of the pool")]
    Reserved { subnet: IpNet },
    #[error("{subnet} is already assigned to node {holder}")]
    Taken { subnet: IpNet, holder: String },
}

/// How much of one family's pool is in use, for metrics and `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub family: Family,
    pub size: u128,
    pub used: u128,
    pub reserved: u128,
}

impl Usage {
    pub fn free(&self) -> u128 {
        self.size.saturating_sub(self.used + self.reserved)
    }
}

impl Ipam {
    pub fn new(pool: &PoolConfig) -> Self {
        let family_pool = |family: Family| {
            let cidrs: Vec<IpNet> = pool
                .cidrs
                .iter()
                .filter(|cidr| Family::of(cidr) == family)
                .copied()
                .collect();
            if cidrs.is_empty() {
                return None;
            }
            let mask = pool.node_mask_for(&cidrs[0]);
            Some(FamilyPool::new(&cidrs, mask, &pool.reserved))
        };
        Ipam {
            v4: family_pool(Family::V4),
            v6: family_pool(Family::V6),
            holders: HashMap::new(),
            subnets: HashMap::new(),
            generation: 0,
        }
    }

    /// Changes whenever a subnet is given or taken back.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The families this pool hands out subnets of.
    pub fn families(&self) -> impl Iterator<Item = Family> + '_ {
        [(Family::V4, &self.v4), (Family::V6, &self.v6)]
            .into_iter()
            .filter_map(|(family, pool)| pool.as_ref().map(|_| family))
    }

    pub fn subnets_of(&self, node: &str) -> &[IpNet] {
        self.subnets.get(node).map_or(&[], Vec::as_slice)
    }

    pub fn holder_of(&self, subnet: &IpNet) -> Option<&str> {
        self.holders.get(subnet).map(String::as_str)
    }

    /// Every node that holds at least one subnet, with its subnets.
    pub fn assignments(&self) -> impl Iterator<Item = (&str, &[IpNet])> {
        self.subnets
            .iter()
            .map(|(node, subnets)| (node.as_str(), subnets.as_slice()))
    }

    /// Whether `subnet` could be handed to `node` (it may already hold it).
    pub fn check(&self, node: &str, subnet: &IpNet) -> Result<(), SubnetRefused> {
        let pool = self
            .pool(Family::of(subnet))
            .filter(|pool| pool.contains(subnet))
            .ok_or(SubnetRefused::OutsidePool { subnet: *subnet })?;
        let index = pool.index_of(subnet).ok_or(SubnetRefused::WrongSize {
            subnet: *subnet,
            mask: pool.mask(),
        })?;
        if pool.is_reserved(index) {
            return Err(SubnetRefused::Reserved { subnet: *subnet });
        }
        match self.holders.get(subnet) {
            Some(holder) if holder != node => Err(SubnetRefused::Taken {
                subnet: *subnet,
                holder: holder.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Gives `subnet` to `node`; a no-op if it holds it already. A node holds
    /// at most one subnet per family.
    pub fn claim(&mut self, node: &str, subnet: IpNet) -> Result<(), SubnetRefused> {
        self.check(node, &subnet)?;
        if self.subnets_of(node).contains(&subnet) {
            return Ok(());
        }
        let family = Family::of(&subnet);
        if let Some(current) = self
            .subnets_of(node)
            .iter()
            .find(|held| Family::of(held) == family)
        {
            return Err(SubnetRefused::Taken {
                subnet,
                holder: format!("{node} (which already holds {current})"),
            });
        }
        if let Some(pool) = self.pool_mut(family)
            && let Some(index) = pool.index_of(&subnet)
        {
            pool.mark(index);
        }
        self.record(node, subnet);
        Ok(())
    }

    /// Gives `node` a fresh subnet in each of `families` it has none of.
    /// Returns the new subnets, or the first family whose pool is exhausted
    /// (subnets of other families stay given).
    pub fn allocate(&mut self, node: &str, families: &[Family]) -> Result<Vec<IpNet>, Family> {
        let mut fresh = Vec::new();
        for &family in families {
            let has_one = self
                .subnets_of(node)
                .iter()
                .any(|held| Family::of(held) == family);
            let Some(pool) = self.pool_mut(family) else {
                continue;
            };
            if has_one {
                continue;
            }
            let index = pool.take_next().ok_or(family)?;
            let Some(subnet) = pool.subnet_at(index) else {
                pool.unmark(index);
                return Err(family);
            };
            self.record(node, subnet);
            fresh.push(subnet);
        }
        Ok(fresh)
    }

    /// Takes every subnet back from `node`.
    pub fn release(&mut self, node: &str) -> Vec<IpNet> {
        let released = self.subnets.remove(node).unwrap_or_default();
        self.generation += 1;
        for subnet in &released {
            self.holders.remove(subnet);
            if let Some(pool) = self.pool_mut(Family::of(subnet))
                && let Some(index) = pool.index_of(subnet)
            {
                pool.unmark(index);
            }
        }
        released
    }

    /// Where next-fit continues, per family, so that a restart does not hand
    /// out a just-released subnet again.
    pub fn cursors(&self) -> Vec<(Family, IpNet)> {
        self.families()
            .filter_map(|family| {
                let pool = self.pool(family)?;
                Some((family, pool.subnet_at(pool.cursor())?))
            })
            .collect()
    }

    /// Restores a cursor saved by [`Ipam::cursors`]; ignored if the subnet is
    /// no longer in the pool.
    pub fn restore_cursor(&mut self, next: IpNet) {
        if let Some(pool) = self.pool_mut(Family::of(&next))
            && let Some(index) = pool.index_of(&next)
        {
            pool.set_cursor(index);
        }
    }

    /// For each family whose cursor nobody restored and nothing moved yet
    /// (a restart with no saved cursor), continues next-fit after the subnet
    /// of the newest node that holds one, as near as the nodes tell where
    /// it stopped: nodes get their subnets as they join. What this cannot
    /// see is a subnet released by a node newer than every remaining one;
    /// a saved cursor (state file, leader Lease) covers that.
    pub fn guess_cursors<'a>(&mut self, newest_first: impl IntoIterator<Item = &'a str>) {
        let mut unknown: Vec<Family> = self
            .families()
            .filter(|family| self.pool(*family).is_some_and(|pool| !pool.cursor_known()))
            .collect();
        for node in newest_first {
            if unknown.is_empty() {
                return;
            }
            for subnet in self.subnets_of(node).to_vec() {
                let family = Family::of(&subnet);
                if !unknown.contains(&family) {
                    continue;
                }
                unknown.retain(|other| *other != family);
                if let Some(pool) = self.pool_mut(family)
                    && let Some(index) = pool.index_of(&subnet)
                {
                    pool.set_cursor(index + 1);
                }
            }
        }
    }

    pub fn usage(&self) -> Vec<Usage> {
        self.families()
            .filter_map(|family| {
                let pool = self.pool(family)?;
                Some(Usage {
                    family,
                    size: pool.size(),
                    used: pool.used(),
                    reserved: pool.reserved_count(),
                })
            })
            .collect()
    }

    fn record(&mut self, node: &str, subnet: IpNet) {
        self.generation += 1;
        self.holders.insert(subnet, node.to_owned());
        let held = self.subnets.entry(node.to_owned()).or_default();
        held.push(subnet);
        held.sort();
    }

    fn pool(&self, family: Family) -> Option<&FamilyPool> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    fn pool_mut(&mut self, family: Family) -> Option<&mut FamilyPool> {
        match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }
    }

    /// Whether the subnet at `subnet` is handed out (to anyone).
    pub fn is_allocated(&self, subnet: &IpNet) -> bool {
        self.pool(Family::of(subnet))
            .and_then(|pool| pool.index_of(subnet).map(|index| pool.is_allocated(index)))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests;
