use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::*;

fn v4(text: &str) -> Ipv4Net {
    text.parse().expect("an IPv4 prefix")
}

fn encoded(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(message, &mut out);
    out
}

/// A message with `kind` and `body`, its header's length set to fit.
fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    let len = u16::try_from(HEADER_LEN + body.len()).expect("a short message");
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// An UPDATE's body with no withdrawn routes and these attribute octets
/// (NLRI, if any, to be appended).
fn update_body(attributes: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(
        &u16::try_from(attributes.len())
            .expect("short")
            .to_be_bytes(),
    );
    body.extend_from_slice(attributes);
    body
}

fn complete_attributes() -> Vec<Attribute> {
    vec![
        Attribute::Origin(ORIGIN_IGP),
        Attribute::AsPath(vec![]),
        Attribute::NextHop(Ipv4Addr::new(192, 168, 3, 3)),
        Attribute::LocalPref(100),
        Attribute::Communities(vec![(64512 << 16) | 1111]),
    ]
}

#[test]
fn an_announcement_and_a_keepalive_come_back_as_they_went() {
    let update = Update {
        attributes: complete_attributes(),
        announced: vec![v4("11.11.2.0/24")],
        ..Update::default()
    };
    let bytes = encoded(&Message::Update(update.clone()));
    assert_eq!(message_len(&bytes), Ok(Some(bytes.len())));
    assert_eq!(decode(&bytes), Ok(Message::Update(update.clone())));
    assert_eq!(
        update.announcements(),
        vec![(
            "11.11.2.0/24".parse().expect("prefix"),
            "192.168.3.3".parse().expect("address")
        )]
    );
    assert_eq!(
        decode(&encoded(&Message::Keepalive)),
        Ok(Message::Keepalive)
    );
}

#[test]
fn end_of_rib_markers_are_told_apart_from_withdrawals() {
    for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
        let marker = Update::end_of_rib_marker(family);
        let bytes = encoded(&Message::Update(marker));
        let Ok(Message::Update(decoded)) = decode(&bytes) else {
            panic!("an UPDATE");
        };
        assert_eq!(decoded.end_of_rib(), Some(family));
    }
    assert_eq!(
        encoded(&Message::Update(Update::end_of_rib_marker(
            Family::Ipv4Unicast
        )))
        .len(),
        23
    );
    let withdrawal = Update {
        withdrawn: vec![v4("11.11.2.0/24")],
        ..Update::default()
    };
    assert_eq!(withdrawal.end_of_rib(), None);
}

#[test]
fn a_header_out_of_step_too_long_or_of_unknown_type_names_the_error() {
    let mut bytes = encoded(&Message::Keepalive);
    bytes[3] = 0;
    assert_eq!(
        message_len(&bytes).map_err(|n| (n.code, n.subcode)),
        Err((1, 1))
    );
    let mut long = framed(TYPE_UPDATE, &[0, 0, 0, 0]);
    long[16..18].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(
        message_len(&long),
        Err(Notification::new(1, 2, 5000u16.to_be_bytes().to_vec()))
    );
    assert_eq!(
        decode(&framed(9, &[])),
        Err(Notification::new(1, 3, vec![9]))
    );
    // A KEEPALIVE carries nothing.
    assert_eq!(
        decode(&framed(TYPE_KEEPALIVE, &[0])).map_err(|n| (n.code, n.subcode)),
        Err((1, 2))
    );
}

#[test]
fn an_open_of_another_version_is_answered_with_the_version_we_speak() {
    let open = Message::Open(Open {
        my_as: 64512,
        hold_time: 90,
        identifier: Ipv4Addr::new(192, 168, 2, 1),
        capabilities: vec![],
    });
    let mut bytes = encoded(&open);
    bytes[HEADER_LEN] = 3;
    assert_eq!(decode(&bytes), Err(Notification::new(2, 1, vec![0, 4])));
}

#[test]
fn an_open_with_every_capability_we_send_comes_back_as_it_went() {
    let open = Open {
        my_as: AS_TRANS,
        hold_time: 90,
        identifier: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_000),
            Capability::GracefulRestart {
                restarted: true,
                restart_time: 120,
                families: vec![(1, 1, true), (2, 1, true)],
            },
            Capability::Other {
                code: 70,
                value: vec![],
            },
        ],
    };
    assert_eq!(
        decode(&encoded(&Message::Open(open.clone()))),
        Ok(Message::Open(open.clone()))
    );
    assert_eq!(open.peer_as(), 4_200_000_000);
    assert!(open.supports_family(Family::Ipv6Unicast));
    assert_eq!(open.graceful_restart_time(), Some(120));
}

#[test]
fn an_open_without_multiprotocol_speaks_ipv4_alone() {
    let open = Open {
        my_as: 65001,
        hold_time: 0,
        identifier: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![],
    };
    assert!(open.supports_family(Family::Ipv4Unicast));
    assert!(!open.supports_family(Family::Ipv6Unicast));
    assert_eq!(open.peer_as(), 65001);
}

#[test]
fn a_prefix_longer_than_its_family_resets_the_session() {
    // No withdrawn routes, no attributes, NLRI "33 bits".
    let body = [0, 0, 0, 0, 33, 11, 11, 1, 0, 0];
    assert_eq!(
        decode(&framed(TYPE_UPDATE, &body)),
        Err(Notification::new(3, 10, vec![]))
    );
    // A prefix cut short.
    let body = [0, 0, 0, 0, 24, 11, 11];
    assert_eq!(
        decode(&framed(TYPE_UPDATE, &body)),
        Err(Notification::new(3, 10, vec![]))
    );
}

#[test]
fn a_missing_next_hop_withdraws_the_routes_and_keeps_the_session() {
    let update = Update {
        attributes: vec![Attribute::Origin(0), Attribute::AsPath(vec![])],
        announced: vec![v4("11.11.7.0/24")],
        ..Update::default()
    };
    let Ok(Message::Update(decoded)) = decode(&encoded(&Message::Update(update))) else {
        panic!("an UPDATE");
    };
    assert!(
        decoded
            .treat_as_withdraw
            .as_deref()
            .is_some_and(|why| why.contains("NEXT_HOP"))
    );
    assert!(decoded.announcements().is_empty());
    assert_eq!(
        decoded.withdrawals(),
        vec!["11.11.7.0/24".parse().expect("prefix")]
    );
}

#[test]
fn an_attribute_overrunning_the_list_withdraws_the_routes() {
    let mut attributes = Vec::new();
    for attribute in complete_attributes() {
        encode_attribute(&attribute, &mut attributes);
    }
    // COMMUNITIES (the last) claims more octets than the list holds.
    let last = attributes.len() - 5;
    attributes[last] = 200;
    let mut body = update_body(&attributes);
    body.extend_from_slice(&[24, 11, 11, 9]);
    let Ok(Message::Update(decoded)) = decode(&framed(TYPE_UPDATE, &body)) else {
        panic!("an UPDATE");
    };
    assert!(decoded.treat_as_withdraw.is_some());
    assert_eq!(
        decoded.withdrawals(),
        vec!["11.11.9.0/24".parse().expect("prefix")]
    );
}

#[test]
fn a_second_mp_reach_resets_the_session() {
    let reach = Attribute::MpReach {
        family: Family::Ipv6Unicast,
        next_hop: "fd00::3".parse().expect("address"),
        link_local: None,
        prefixes: vec!["fd11:11:1::/64".parse().expect("prefix")],
    };
    let mut attributes = Vec::new();
    encode_attribute(&Attribute::Origin(0), &mut attributes);
    encode_attribute(&Attribute::AsPath(vec![]), &mut attributes);
    encode_attribute(&reach, &mut attributes);
    encode_attribute(&reach, &mut attributes);
    let body = update_body(&attributes);
    assert_eq!(
        decode(&framed(TYPE_UPDATE, &body)),
        Err(Notification::new(3, 1, vec![]))
    );
}

#[test]
fn ipv4_routes_in_mp_reach_are_read_and_a_broken_one_is_an_optional_attribute_error() {
    let reach = Attribute::MpReach {
        family: Family::Ipv4Unicast,
        next_hop: "192.168.3.3".parse().expect("address"),
        link_local: None,
        prefixes: vec!["11.11.4.0/24".parse().expect("prefix")],
    };
    let update = Update {
        attributes: vec![reach, Attribute::Origin(0), Attribute::AsPath(vec![])],
        ..Update::default()
    };
    let Ok(Message::Update(decoded)) = decode(&encoded(&Message::Update(update))) else {
        panic!("an UPDATE");
    };
    assert_eq!(
        decoded.announcements(),
        vec![(
            "11.11.4.0/24".parse().expect("prefix"),
            "192.168.3.3".parse().expect("address")
        )]
    );
    // AFI 1, SAFI 1, a next hop of 5 octets.
    let mut attributes = Vec::new();
    encode_attribute(
        &Attribute::Other {
            flags: 0x80,
            code: 14,
            value: vec![0, 1, 1, 5, 1, 2, 3, 4, 5, 0],
        },
        &mut attributes,
    );
    let body = update_body(&attributes);
    assert_eq!(
        decode(&framed(TYPE_UPDATE, &body)),
        Err(Notification::new(3, 9, vec![]))
    );
}

#[test]
fn a_refresh_keeps_its_subtype_and_a_notification_quoting_a_whole_message_still_fits() {
    let refresh = Message::RouteRefresh {
        afi: 2,
        subtype: 1,
        safi: 1,
    };
    assert_eq!(decode(&encoded(&refresh)), Ok(refresh));
    let long = Notification::new(7, 1, vec![0xab; MAX_MESSAGE_LEN]);
    let bytes = encoded(&Message::Notification(long));
    assert_eq!(bytes.len(), MAX_MESSAGE_LEN);
    assert!(
        matches!(decode(&bytes), Ok(Message::Notification(n)) if n.data.len() == MAX_MESSAGE_LEN - 21)
    );
}

#[test]
fn a_confederation_path_is_read() {
    let update = Update {
        attributes: vec![
            Attribute::Origin(0),
            Attribute::AsPath(vec![
                Segment::ConfedSequence(vec![65001]),
                Segment::Sequence(vec![64512]),
            ]),
            Attribute::NextHop(Ipv4Addr::new(192, 168, 3, 3)),
        ],
        announced: vec![v4("11.11.5.0/24")],
        ..Update::default()
    };
    assert_eq!(
        decode(&encoded(&Message::Update(update.clone()))),
        Ok(Message::Update(update))
    );
}

#[test]
fn a_shutdown_reason_is_quoted() {
    let mut data = vec![9];
    data.extend_from_slice(b"upgrading");
    let text = Notification::new(6, 2, data).describe();
    assert!(
        text.contains("administrative shutdown") && text.contains("\"upgrading\""),
        "{text}"
    );
    assert!(
        Notification::new(2, 2, vec![])
            .describe()
            .contains("bad peer AS")
    );
}

fn ipv4_prefix() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(bits, len)| {
        Ipv4Net::new(Ipv4Addr::from(bits), len)
            .expect("length in range")
            .trunc()
    })
}

fn ipv6_prefix() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128).prop_map(|(bits, len)| {
        Ipv6Net::new(Ipv6Addr::from(bits), len)
            .expect("length in range")
            .trunc()
    })
}

/// Well-formed UPDATEs of the shapes nativeroute sends and receives, small
/// enough for one message.
fn update() -> impl Strategy<Value = Update> {
    (
        prop::collection::vec(ipv4_prefix(), 0..20),
        prop::collection::vec(ipv4_prefix(), 0..20),
        any::<u32>(),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 1..6),
        prop::collection::vec(any::<u32>(), 0..6),
        prop::option::of((
            any::<u128>(),
            prop::option::of(any::<u128>()),
            prop::collection::vec(ipv6_prefix(), 0..10),
        )),
        prop::option::of(prop::collection::vec(ipv6_prefix(), 0..10)),
    )
        .prop_map(
            |(withdrawn, announced, next_hop, local_pref, communities, path, reach, unreach)| {
                let mut attributes = vec![
                    Attribute::Origin(ORIGIN_IGP),
                    Attribute::AsPath(if path.is_empty() {
                        vec![]
                    } else {
                        vec![Segment::Sequence(path)]
                    }),
                    Attribute::NextHop(Ipv4Addr::from(next_hop)),
                ];
                attributes.extend(local_pref.map(Attribute::LocalPref));
                attributes.push(Attribute::Communities(communities));
                if let Some((global, link_local, prefixes)) = reach {
                    attributes.push(Attribute::MpReach {
                        family: Family::Ipv6Unicast,
                        next_hop: IpAddr::V6(Ipv6Addr::from(global)),
                        link_local: link_local.map(Ipv6Addr::from),
                        prefixes: prefixes.into_iter().map(IpNet::V6).collect(),
                    });
                }
                if let Some(prefixes) = unreach {
                    attributes.push(Attribute::MpUnreach {
                        family: Family::Ipv6Unicast,
                        prefixes: prefixes.into_iter().map(IpNet::V6).collect(),
                    });
                }
                Update {
                    withdrawn,
                    attributes,
                    announced,
                    treat_as_withdraw: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn every_well_formed_update_comes_back_as_it_went(update in update()) {
        let bytes = encoded(&Message::Update(update.clone()));
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(message_len(&bytes), Ok(Some(bytes.len())));
        prop_assert_eq!(decode(&bytes), Ok(Message::Update(update)));
    }

    /// Whatever a peer sends, decoding answers, with a message or the
    /// NOTIFICATION to send: it never panics.
    #[test]
    fn any_octets_are_decoded_or_refused_never_a_panic(kind in 0u8..8, body in prop::collection::vec(any::<u8>(), 0..600)) {
        let bytes = framed(kind, &body);
        let _ = message_len(&bytes);
        let _ = decode(&bytes);
    }

    /// A well-formed UPDATE with octets changed or cut is read or refused,
    /// never a panic, and what is read names only whole prefixes.
    #[test]
    fn a_damaged_update_is_decoded_or_refused_never_a_panic(
        update in update(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = encoded(&Message::Update(update));
        let mut body = bytes[HEADER_LEN..].to_vec();
        for (at, octet) in damage {
            let at = at.index(body.len());
            body[at] = octet;
        }
        body.truncate(cut.index(body.len() + 1));
        if let Ok(Message::Update(decoded)) = decode(&framed(TYPE_UPDATE, &body)) {
            for (dst, _) in decoded.announcements() {
                prop_assert_eq!(dst, dst.trunc());
            }
        }
    }
}
