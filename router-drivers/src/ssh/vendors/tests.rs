//! Properties every vendor profile keeps, whatever the route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::VendorName;
use crate::{Change, Ownership, Route};

fn ownership(route_tag: u32) -> Ownership {
    Ownership {
        pool: vec![
            "0.0.0.0/0".parse().expect("v4 net"),
            "::/0".parse().expect("v6 net"),
        ],
        netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
        route_tag,
        bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
    }
}

fn net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 8u8..=32).prop_map(|(bits, len)| {
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(bits), len)
                    .expect("length ≤ 32")
                    .trunc(),
            )
        }),
        (any::<u128>(), 16u8..=128).prop_map(|(bits, len)| {
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(bits), len)
                    .expect("length ≤ 128")
                    .trunc(),
            )
        }),
    ]
}

fn address_like(dst: IpNet) -> impl Strategy<Value = IpAddr> {
    match dst {
        IpNet::V4(_) => any::<u32>()
            .prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
            .boxed(),
        IpNet::V6(_) => any::<u128>()
            .prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)))
            .boxed(),
    }
}

fn change() -> impl Strategy<Value = Change> {
    net().prop_flat_map(|dst| {
        (address_like(dst), address_like(dst), 0u8..3).prop_map(move |(via, old_via, kind)| {
            let route = Route::new(dst, via);
            match kind {
                0 => Change::Add(route),
                1 => Change::Replace { route, old_via },
                _ => Change::Remove(route),
            }
        })
    })
}

proptest! {
    /// Rendered lines hold only address, number and keyword characters: no
    /// quoting, separators, pipes, shell or CLI metacharacters, line breaks.
    #[test]
    fn rendered_lines_hold_only_words_addresses_and_numbers(change in change(), tag in any::<u32>()) {
        let ownership = ownership(tag);
        for vendor in VendorName::ALL {
            let lines = vendor.profile().render(&change, &ownership);
            prop_assert!(!lines.is_empty(), "{vendor} rendered nothing for {change}");
            for line in &lines {
                prop_assert!(
                    line.chars().all(|c| c.is_ascii_alphanumeric() || " .:/=-_[]".contains(c)),
                    "{vendor} rendered {line:?} for {change}"
                );
            }
            let text = lines.join("\n");
            let route = change.route();
            let dst_shown = text.contains(&route.dst.to_string())
                || text.contains(&route.dst.network().to_string());
            prop_assert!(dst_shown, "{vendor}: {text:?} does not name {}", route.dst);
            prop_assert!(text.contains(&route.via.to_string()), "{vendor}: {text:?} does not name {}", route.via);
        }
    }

    /// Whatever the router prints, parsing never panics and never claims a
    /// route outside the pool.
    #[test]
    fn parsing_arbitrary_output_is_total(output in ".{0,400}") {
        let ownership = Ownership {
            pool: vec!["11.11.0.0/16".parse().expect("pool")],
            netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
            route_tag: 1111,
            bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
        };
        for vendor in VendorName::ALL {
            if let Ok(routes) = vendor.profile().parse_routes(&output, &ownership) {
                for route in &routes.owned {
                    prop_assert!(ownership.in_pool(&route.dst));
                }
            }
        }
    }
}

#[test]
fn vendor_names_round_trip() {
    for vendor in VendorName::ALL {
        assert_eq!(vendor.as_str().parse::<VendorName>(), Ok(vendor));
    }
    assert!("ios".parse::<VendorName>().is_err());
}
