//! One address family's part of the pool, as a line of numbered subnets.
//!
//! Every subnet of the family's CIDRs gets an index (the CIDRs one after the
//! other), so that next-fit is a cursor moving along that line and a /8 cut
//! into /24s costs a set of integers, not a bitmap per CIDR.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug)]
pub(super) struct FamilyPool {
    cidrs: Vec<Span>,
    mask: u8,
    size: u128,
    /// Index ranges never handed out, sorted, as `start..end`.
    reserved: Vec<(u128, u128)>,
    allocated: BTreeSet<u128>,
    /// Where the next search starts: one past the last subnet handed out.
    cursor: u128,
    /// Whether `cursor` says where next-fit stopped (it was restored or
    /// moved), rather than being the start it has before either.
    cursor_known: bool,
}

#[derive(Clone, Copy, Debug)]
struct Span {
    cidr: IpNet,
    first_index: u128,
    count: u128,
}

impl FamilyPool {
    /// `cidrs` all of one family, each no smaller than `mask`, disjoint (the
    /// config checks all three).
    pub(super) fn new(cidrs: &[IpNet], mask: u8, reserved: &[IpNet]) -> Self {
        let mut spans = Vec::with_capacity(cidrs.len());
        let mut size: u128 = 0;
        for cidr in cidrs {
            let count = subnet_count(cidr, mask);
            spans.push(Span {
                cidr: *cidr,
                first_index: size,
                count,
            });
            size = size.saturating_add(count);
        }
        let mut pool = FamilyPool {
            cidrs: spans,
            mask,
            size,
            reserved: Vec::new(),
            allocated: BTreeSet::new(),
            cursor: 0,
            cursor_known: false,
        };
        pool.reserved = reserved
            .iter()
            .flat_map(|range| pool.index_ranges_touching(range))
            .collect();
        pool.reserved.sort_unstable();
        pool
    }

    pub(super) fn contains(&self, subnet: &IpNet) -> bool {
        self.cidrs.iter().any(|span| span.cidr.contains(subnet))
    }

    pub(super) fn mask(&self) -> u8 {
        self.mask
    }

    pub(super) fn size(&self) -> u128 {
        self.size
    }

    pub(super) fn used(&self) -> u128 {
        self.allocated.len() as u128
    }

    pub(super) fn reserved_count(&self) -> u128 {
        self.reserved.iter().map(|(start, end)| end - start).sum()
    }

    pub(super) fn cursor(&self) -> u128 {
        self.cursor
    }

    pub(super) fn set_cursor(&mut self, cursor: u128) {
        self.cursor = if cursor < self.size { cursor } else { 0 };
        self.cursor_known = true;
    }

    pub(super) fn cursor_known(&self) -> bool {
        self.cursor_known
    }

    /// The index of `subnet` if it is exactly one node subnet of this pool.
    pub(super) fn index_of(&self, subnet: &IpNet) -> Option<u128> {
        if subnet.prefix_len() != self.mask {
            return None;
        }
        let span = self.cidrs.iter().find(|span| span.cidr.contains(subnet))?;
        let offset = (addr_bits(subnet.network()) - addr_bits(span.cidr.network()))
            >> host_bits(subnet, self.mask);
        Some(span.first_index + offset)
    }

    pub(super) fn subnet_at(&self, index: u128) -> Option<IpNet> {
        let span = self
            .cidrs
            .iter()
            .find(|span| index >= span.first_index && index - span.first_index < span.count)?;
        let offset = (index - span.first_index) << host_bits(&span.cidr, self.mask);
        let network = addr_bits(span.cidr.network()) + offset;
        IpNet::new(bits_to_addr(&span.cidr, network), self.mask).ok()
    }

    pub(super) fn is_reserved(&self, index: u128) -> bool {
        self.reserved_range_at(index).is_some()
    }

    pub(super) fn is_allocated(&self, index: u128) -> bool {
        self.allocated.contains(&index)
    }

    pub(super) fn mark(&mut self, index: u128) {
        self.allocated.insert(index);
    }

    pub(super) fn unmark(&mut self, index: u128) {
        self.allocated.remove(&index);
    }

    /// Next-fit: the first free, unreserved index at or after the cursor,
    /// wrapping once. Moves the cursor past it, so that a subnet released a
    /// moment ago is the last to be handed out again.
    pub(super) fn take_next(&mut self) -> Option<u128> {
        let found = self
            .first_free_in(self.cursor, self.size)
            .or_else(|| self.first_free_in(0, self.cursor))?;
        self.allocated.insert(found);
        self.set_cursor(found + 1);
        Some(found)
    }

    fn first_free_in(&self, mut index: u128, end: u128) -> Option<u128> {
        while index < end {
            if let Some((_, reserved_end)) = self.reserved_range_at(index) {
                index = reserved_end;
                continue;
            }
            if !self.allocated.contains(&index) {
                return Some(index);
            }
            // Skip the whole run of consecutive allocated indexes at once.
            let mut next = index;
            for &taken in self.allocated.range(index..) {
                if taken != next {
                    break;
                }
                next += 1;
            }
            index = next;
        }
        None
    }

    fn reserved_range_at(&self, index: u128) -> Option<(u128, u128)> {
        let after = self.reserved.partition_point(|&(start, _)| start <= index);
        self.reserved[..after]
            .iter()
            .rev()
            .find(|&&(_, end)| index < end)
            .copied()
    }

    /// The index ranges of the node subnets that overlap `range`, per CIDR.
    fn index_ranges_touching(&self, range: &IpNet) -> Vec<(u128, u128)> {
        let mut ranges = Vec::new();
        for span in &self.cidrs {
            let cidr = span.cidr;
            if !(cidr.contains(&range.network()) || range.contains(&cidr.network())) {
                continue;
            }
            let base = addr_bits(cidr.network());
            let low = addr_bits(range.network()).max(base);
            let high = addr_bits(range.broadcast()).min(addr_bits(cidr.broadcast()));
            let shift = host_bits(&cidr, self.mask);
            let start = span.first_index + ((low - base) >> shift);
            let end = span.first_index + ((high - base) >> shift) + 1;
            ranges.push((start, end));
        }
        ranges
    }
}

/// How many node subnets of length `mask` fit in `cidr`.
fn subnet_count(cidr: &IpNet, mask: u8) -> u128 {
    let shift = u32::from(mask.saturating_sub(cidr.prefix_len()));
    1u128.checked_shl(shift).unwrap_or(u128::MAX)
}

fn host_bits(net: &IpNet, mask: u8) -> u32 {
    u32::from(net.max_prefix_len() - mask)
}

fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn bits_to_addr(family_of: &IpNet, bits: u128) -> IpAddr {
    match family_of {
        // The bits came from an IPv4 network plus an offset inside it, so
        // they fit in 32 bits.
        IpNet::V4(_) => IpAddr::V4((bits as u32).into()),
        IpNet::V6(_) => IpAddr::V6(bits.into()),
    }
}
