//! The UPDATEs nativeroute sends: a node's subnet with the node as next
//! hop and nativeroute's community, and withdrawals packed into as few
//! messages as fit.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::wire::{
    Attribute, Family, HEADER_LEN, MAX_MESSAGE_LEN, ORIGIN_IGP, Segment, Update, prefix_wire_len,
};

/// The LOCAL_PREF of our routes on iBGP: the usual default, so that the
/// router's own policy decides against other paths.
const LOCAL_PREF: u32 = 100;

/// The announcement of `dst` via `via`: `None` when the two are of
/// different families (an IPv4 subnet via an IPv6 node address would need
/// RFC 8950, which nativeroute does not offer).
pub(crate) fn announcement(
    dst: IpNet,
    via: IpAddr,
    local_as: u32,
    ibgp: bool,
    community: u32,
) -> Option<Update> {
    let as_path = if ibgp {
        Vec::new()
    } else {
        vec![Segment::Sequence(vec![local_as])]
    };
    // MP_REACH_NLRI first (RFC 7606 §5.1), the rest by type code.
    let mut attributes = Vec::with_capacity(6);
    let mut announced = Vec::new();
    let next_hop = match (dst, via) {
        (IpNet::V4(dst), IpAddr::V4(via)) => {
            announced.push(dst);
            Some(Attribute::NextHop(via))
        }
        (IpNet::V6(_), IpAddr::V6(_)) => {
            attributes.push(Attribute::MpReach {
                family: Family::Ipv6Unicast,
                next_hop: via,
                link_local: None,
                prefixes: vec![dst],
            });
            None
        }
        _ => return None,
    };
    attributes.push(Attribute::Origin(ORIGIN_IGP));
    attributes.push(Attribute::AsPath(as_path));
    attributes.extend(next_hop);
    if ibgp {
        attributes.push(Attribute::LocalPref(LOCAL_PREF));
    }
    attributes.push(Attribute::Communities(vec![community]));
    Some(Update {
        attributes,
        announced,
        ..Update::default()
    })
}

/// Room for prefixes in an UPDATE that carries nothing else: the header,
/// the two length fields, and for IPv6 an MP_UNREACH_NLRI attribute head
/// (flags, code, extended length, AFI, SAFI).
const V4_ROOM: usize = MAX_MESSAGE_LEN - HEADER_LEN - 4;
const V6_ROOM: usize = MAX_MESSAGE_LEN - HEADER_LEN - 4 - 4 - 3;

/// Withdrawals of `dsts`, as few UPDATEs as hold them.
pub(crate) fn withdrawals(dsts: &[IpNet]) -> Vec<Update> {
    let v4: Vec<Ipv4Net> = dsts
        .iter()
        .filter_map(|dst| match dst {
            IpNet::V4(dst) => Some(*dst),
            IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<Ipv6Net> = dsts
        .iter()
        .filter_map(|dst| match dst {
            IpNet::V6(dst) => Some(*dst),
            IpNet::V4(_) => None,
        })
        .collect();
    let mut updates: Vec<Update> = packed(&v4, V4_ROOM, |p| prefix_wire_len(&IpNet::V4(*p)))
        .into_iter()
        .map(|withdrawn| Update {
            withdrawn,
            ..Update::default()
        })
        .collect();
    updates.extend(
        packed(&v6, V6_ROOM, |p| prefix_wire_len(&IpNet::V6(*p)))
            .into_iter()
            .map(|prefixes| Update {
                attributes: vec![Attribute::MpUnreach {
                    family: Family::Ipv6Unicast,
                    prefixes: prefixes.into_iter().map(IpNet::V6).collect(),
                }],
                ..Update::default()
            }),
    );
    updates
}

/// `items` cut into runs whose wire size fits `room`.
fn packed<T: Copy>(items: &[T], room: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    let mut used = 0;
    for item in items {
        let len = size(item);
        if used + len > room && !run.is_empty() {
            runs.push(std::mem::take(&mut run));
            used = 0;
        }
        run.push(*item);
        used += len;
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::{self, Message};

    #[test]
    fn an_ibgp_announcement_keeps_the_node_as_next_hop_with_our_community() {
        let update = announcement(
            "11.11.2.0/24".parse().expect("prefix"),
            "192.168.3.3".parse().expect("address"),
            64512,
            true,
            0xfc00_0457,
        )
        .expect("one family");
        assert_eq!(
            update.announcements(),
            vec![(
                "11.11.2.0/24".parse().expect("prefix"),
                "192.168.3.3".parse().expect("address")
            )]
        );
        assert_eq!(update.communities(), &[0xfc00_0457]);
        assert!(update.attributes.contains(&Attribute::AsPath(vec![])));
        assert!(update.attributes.contains(&Attribute::LocalPref(100)));
    }

    #[test]
    fn an_ebgp_announcement_starts_the_path_with_our_as_and_has_no_local_pref() {
        let update = announcement(
            "fd11:11:2::/64".parse().expect("prefix"),
            "fd00::3".parse().expect("address"),
            4_200_000_001,
            false,
            1,
        )
        .expect("one family");
        assert!(
            update
                .attributes
                .contains(&Attribute::AsPath(vec![Segment::Sequence(vec![
                    4_200_000_001
                ])]))
        );
        assert!(
            !update
                .attributes
                .iter()
                .any(|a| matches!(a, Attribute::LocalPref(_)))
        );
        assert_eq!(update.announcements().len(), 1);
    }

    #[test]
    fn a_subnet_via_a_next_hop_of_the_other_family_is_not_announced() {
        assert!(
            announcement(
                "11.11.2.0/24".parse().expect("prefix"),
                "fd00::3".parse().expect("address"),
                1,
                true,
                1
            )
            .is_none()
        );
    }

    #[test]
    fn thousands_of_withdrawals_fill_whole_messages_each_within_the_limit() {
        let dsts: Vec<IpNet> = (0..3000u32)
            .map(|i| IpNet::V4(Ipv4Net::new((0x0b0b_0000 + (i << 8)).into(), 24).expect("prefix")))
            .chain((0..500u128).map(|i| {
                IpNet::V6(
                    Ipv6Net::new(((0xfd11u128 << 112) + (i << 64)).into(), 64).expect("prefix"),
                )
            }))
            .collect();
        let updates = withdrawals(&dsts);
        let mut seen = Vec::new();
        for update in &updates {
            let mut bytes = Vec::new();
            wire::encode(&Message::Update(update.clone()), &mut bytes);
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{}", bytes.len());
            let Ok(Message::Update(decoded)) = wire::decode(&bytes) else {
                panic!("an UPDATE");
            };
            seen.extend(decoded.withdrawals());
        }
        assert_eq!(seen, dsts);
        // 3000 /24s at 4 octets each fill 3 messages; 500 /64s at 9, 2.
        assert_eq!(updates.len(), 5);
    }
}
