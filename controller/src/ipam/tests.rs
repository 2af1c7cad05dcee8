use std::collections::HashSet;

use proptest::prelude::*;

use super::assign::How;
use super::*;

fn pool(cidrs: &[&str], reserved: &[&str]) -> PoolConfig {
    PoolConfig {
        cidrs: cidrs.iter().map(|c| c.parse().expect("cidr")).collect(),
        node_mask_v4: 24,
        node_mask_v6: 64,
        reserved: reserved.iter().map(|c| c.parse().expect("cidr")).collect(),
    }
}

fn net(text: &str) -> IpNet {
    text.parse().expect("cidr")
}

fn fresh(node: &str) -> Claim {
    Claim {
        node: node.into(),
        wants_subnet: true,
        ..Claim::default()
    }
}

fn v4(ipam: &mut Ipam, node: &str) -> Result<Vec<IpNet>, Family> {
    ipam.allocate(node, &[Family::V4])
}

#[test]
fn subnets_are_handed_out_in_order_skipping_reserved() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &["11.11.0.0/24", "11.11.2.0/23"]));
    assert_eq!(v4(&mut ipam, "a"), Ok(vec![net("11.11.1.0/24")]));
    assert_eq!(v4(&mut ipam, "b"), Ok(vec![net("11.11.4.0/24")]));
    assert_eq!(ipam.holder_of(&net("11.11.4.0/24")), Some("b"));
}

#[test]
fn a_reserved_range_smaller_than_a_subnet_blocks_the_whole_subnet() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/22"], &["11.11.0.1/32"]));
    assert_eq!(v4(&mut ipam, "a"), Ok(vec![net("11.11.1.0/24")]));
    assert_eq!(
        ipam.check("x", &net("11.11.0.0/24")),
        Err(SubnetRefused::Reserved {
            subnet: net("11.11.0.0/24")
        })
    );
}

#[test]
fn next_fit_does_not_hand_a_released_subnet_out_again_at_once() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/22"], &[]));
    assert_eq!(v4(&mut ipam, "a"), Ok(vec![net("11.11.0.0/24")]));
    assert_eq!(v4(&mut ipam, "b"), Ok(vec![net("11.11.1.0/24")]));
    assert_eq!(ipam.release("a"), vec![net("11.11.0.0/24")]);
    assert_eq!(v4(&mut ipam, "c"), Ok(vec![net("11.11.2.0/24")]));
    assert_eq!(v4(&mut ipam, "d"), Ok(vec![net("11.11.3.0/24")]));
    // Only after wrapping around does the released subnet come back.
    assert_eq!(v4(&mut ipam, "e"), Ok(vec![net("11.11.0.0/24")]));
}

#[test]
fn an_exhausted_pool_is_reported_and_hands_out_nothing() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/23"], &[]));
    assert!(v4(&mut ipam, "a").is_ok());
    assert!(v4(&mut ipam, "b").is_ok());
    assert_eq!(v4(&mut ipam, "c"), Err(Family::V4));
    assert!(ipam.subnets_of("c").is_empty());
    let outcomes = assign(&mut ipam, [fresh("d")]);
    assert_eq!(
        outcomes,
        vec![Outcome::PoolExhausted {
            node: "d".into(),
            family: Family::V4
        }]
    );
}

#[test]
fn pool_cidrs_are_used_one_after_the_other() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/24", "12.12.0.0/23"], &[]));
    assert_eq!(v4(&mut ipam, "a"), Ok(vec![net("11.11.0.0/24")]));
    assert_eq!(v4(&mut ipam, "b"), Ok(vec![net("12.12.0.0/24")]));
    assert_eq!(v4(&mut ipam, "c"), Ok(vec![net("12.12.1.0/24")]));
}

#[test]
fn a_dual_stack_pool_gives_one_subnet_per_family() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16", "fd11:11::/48"], &[]));
    let outcomes = assign(&mut ipam, [fresh("a")]);
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(
        ipam.subnets_of("a"),
        &[net("11.11.0.0/24"), net("fd11:11::/64")]
    );
}

#[test]
fn recorded_subnets_are_restored_unchanged_after_a_restart() {
    let config = pool(&["11.11.0.0/16"], &["11.11.0.0/24"]);
    let mut before = Ipam::new(&config);
    assign(&mut before, ["a", "b", "c"].map(fresh));
    before.release("b");
    let cursors = before.cursors();

    let mut after = Ipam::new(&config);
    for (_, next) in &cursors {
        after.restore_cursor(*next);
    }
    let claims = ["a", "c"].map(|node| Claim {
        node: node.into(),
        recorded: before.subnets_of(node).to_vec(),
        wants_subnet: true,
        ..Claim::default()
    });
    let outcomes = assign(&mut after, claims);
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Outcome::Assigned {
            how: How::Restored,
            ..
        }
    )));
    assert_eq!(after.subnets_of("a"), before.subnets_of("a"));
    assert_eq!(after.subnets_of("c"), before.subnets_of("c"));
    // The cursor came back too: b's released subnet is not reused at once.
    assign(&mut after, [fresh("d")]);
    assert_eq!(after.subnets_of("d"), &[net("11.11.4.0/24")]);
}

#[test]
fn after_a_restart_an_older_node_without_a_subnet_never_takes_a_newer_nodes_recorded_one() {
    // A fresh ledger (a new leader): n1 and n4 have subnets recorded on
    // their Nodes, n3 (older than n4) has none.
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let claims = [
        Claim {
            recorded: vec![net("11.11.0.0/24")],
            ..fresh("n1")
        },
        fresh("n3"),
        Claim {
            recorded: vec![net("11.11.1.0/24")],
            ..fresh("n4")
        },
    ];
    assign(&mut ipam, claims);
    assert_eq!(ipam.subnets_of("n4"), [net("11.11.1.0/24")]);
    assert_eq!(ipam.subnets_of("n3"), [net("11.11.2.0/24")]);
}

#[test]
fn a_pin_never_takes_a_subnet_recorded_on_an_existing_node() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let claims = [
        Claim {
            pinned: vec![net("11.11.5.0/24")],
            ..fresh("older")
        },
        Claim {
            recorded: vec![net("11.11.5.0/24")],
            ..fresh("newer")
        },
    ];
    let outcomes = assign(&mut ipam, claims);
    assert_eq!(ipam.subnets_of("newer"), [net("11.11.5.0/24")]);
    assert_ne!(ipam.subnets_of("older"), [net("11.11.5.0/24")]);
    assert!(
        outcomes.iter().any(
            |o| matches!(o, Outcome::Conflict { node, given_fresh: true, .. } if node == "older")
        ),
        "{outcomes:?}"
    );
}

#[test]
fn a_pinned_subnet_is_honoured() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let claim = Claim {
        pinned: vec![net("11.11.42.0/24")],
        ..fresh("a")
    };
    assert_eq!(
        assign(&mut ipam, [claim]),
        vec![Outcome::Assigned {
            node: "a".into(),
            subnet: net("11.11.42.0/24"),
            how: How::Pinned
        }]
    );
}

#[test]
fn a_pin_outside_the_pool_or_of_the_wrong_size_is_refused_and_a_fresh_subnet_given() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let outside = Claim {
        pinned: vec![net("10.0.0.0/24")],
        ..fresh("a")
    };
    let wrong_size = Claim {
        pinned: vec![net("11.11.8.0/25")],
        ..fresh("b")
    };
    let outcomes = assign(&mut ipam, [outside, wrong_size]);
    assert!(outcomes.contains(&Outcome::Refused {
        node: "a".into(),
        refused: SubnetRefused::OutsidePool {
            subnet: net("10.0.0.0/24")
        },
        pinned: true,
    }));
    assert!(outcomes.contains(&Outcome::Refused {
        node: "b".into(),
        refused: SubnetRefused::WrongSize {
            subnet: net("11.11.8.0/25"),
            mask: 24
        },
        pinned: true,
    }));
    assert_eq!(ipam.subnets_of("a"), &[net("11.11.0.0/24")]);
    assert_eq!(ipam.subnets_of("b"), &[net("11.11.1.0/24")]);
}

#[test]
fn on_a_conflicting_pin_the_older_node_keeps_the_subnet_and_the_newer_gets_a_fresh_one() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let older = Claim {
        pinned: vec![net("11.11.7.0/24")],
        ..fresh("older")
    };
    let newer = Claim {
        pinned: vec![net("11.11.7.0/24")],
        ..fresh("newer")
    };
    let outcomes = assign(&mut ipam, [older, newer]);
    assert!(outcomes.contains(&Outcome::Conflict {
        node: "newer".into(),
        subnet: net("11.11.7.0/24"),
        holder: "older".into(),
        given_fresh: true,
    }));
    assert_eq!(ipam.subnets_of("older"), &[net("11.11.7.0/24")]);
    assert_eq!(ipam.subnets_of("newer"), &[net("11.11.0.0/24")]);
}

#[test]
fn on_a_conflicting_restore_the_newer_node_gets_no_fresh_subnet() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let older = Claim {
        recorded: vec![net("11.11.7.0/24")],
        ..fresh("older")
    };
    let newer = Claim {
        recorded: vec![net("11.11.7.0/24")],
        ..fresh("newer")
    };
    let outcomes = assign(&mut ipam, [older, newer]);
    assert!(outcomes.contains(&Outcome::Conflict {
        node: "newer".into(),
        subnet: net("11.11.7.0/24"),
        holder: "older".into(),
        given_fresh: false,
    }));
    assert!(ipam.subnets_of("newer").is_empty());
}

#[test]
fn a_pin_added_after_assignment_does_not_move_the_node() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    assign(&mut ipam, [fresh("a")]);
    let repinned = Claim {
        pinned: vec![net("11.11.9.0/24")],
        ..fresh("a")
    };
    assert_eq!(
        assign(&mut ipam, [repinned]),
        vec![Outcome::PinIgnored {
            node: "a".into(),
            pinned: net("11.11.9.0/24"),
            holds: net("11.11.0.0/24")
        }]
    );
    assert_eq!(ipam.subnets_of("a"), &[net("11.11.0.0/24")]);
}

#[test]
fn an_excluded_node_gets_nothing_new_but_keeps_what_it_holds() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let excluded = Claim {
        node: "router".into(),
        wants_subnet: false,
        ..Claim::default()
    };
    assert!(assign(&mut ipam, [excluded]).is_empty());
    assert!(ipam.subnets_of("router").is_empty());
    let recorded = Claim {
        node: "was-a-node".into(),
        recorded: vec![net("11.11.3.0/24")],
        wants_subnet: false,
        ..Claim::default()
    };
    assign(&mut ipam, [recorded]);
    assert_eq!(ipam.subnets_of("was-a-node"), &[net("11.11.3.0/24")]);
}

#[test]
fn an_excluded_node_with_a_pin_claims_nothing_and_the_pinned_subnet_stays_free() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    let excluded = Claim {
        node: "router".into(),
        pinned: vec![net("11.11.7.0/24")],
        wants_subnet: false,
        ..Claim::default()
    };
    assert_eq!(assign(&mut ipam, [excluded]), vec![]);
    assert!(ipam.subnets_of("router").is_empty());
    assert_eq!(ipam.holder_of(&net("11.11.7.0/24")), None);
    let wants_it = Claim {
        pinned: vec![net("11.11.7.0/24")],
        ..fresh("node1")
    };
    assign(&mut ipam, [wants_it]);
    assert_eq!(ipam.subnets_of("node1"), &[net("11.11.7.0/24")]);
}

#[test]
fn after_a_restart_with_no_saved_cursor_next_fit_continues_after_the_newest_nodes_subnet() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &["11.11.0.0/24"]));
    // node1 (11.11.1.0/24) was deleted before the restart; the others,
    // oldest first, hold what they were given.
    let restored =
        [("node2", "11.11.2.0/24"), ("node3", "11.11.3.0/24")].map(|(node, subnet)| Claim {
            recorded: vec![net(subnet)],
            ..fresh(node)
        });
    let mut claims = restored.to_vec();
    claims.push(fresh("node4"));
    assign(&mut ipam, claims);
    assert_eq!(ipam.subnets_of("node4"), &[net("11.11.4.0/24")]);
}

#[test]
fn a_restored_cursor_wins_over_the_guess_from_the_nodes() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &["11.11.0.0/24"]));
    ipam.restore_cursor(net("11.11.9.0/24"));
    let claims = vec![
        Claim {
            recorded: vec![net("11.11.2.0/24")],
            ..fresh("node2")
        },
        fresh("node4"),
    ];
    assign(&mut ipam, claims);
    assert_eq!(ipam.subnets_of("node4"), &[net("11.11.9.0/24")]);
}

#[test]
fn assigning_the_same_inventory_twice_changes_nothing() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &[]));
    assign(&mut ipam, ["a", "b"].map(fresh));
    let again = ["a", "b"].map(|node| Claim {
        recorded: ipam.subnets_of(node).to_vec(),
        ..fresh(node)
    });
    assert!(assign(&mut ipam, again).is_empty());
}

#[test]
fn usage_counts_used_reserved_and_free() {
    let mut ipam = Ipam::new(&pool(&["11.11.0.0/16"], &["11.11.0.0/24"]));
    assign(&mut ipam, ["a", "b"].map(fresh));
    let usage = ipam.usage();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (
            usage[0].size,
            usage[0].used,
            usage[0].reserved,
            usage[0].free()
        ),
        (256, 2, 1, 253)
    );
}

#[derive(Clone, Debug)]
enum Step {
    Add(u8),
    Remove(u8),
    Pin(u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..40).prop_map(Step::Add),
        (0u8..40).prop_map(Step::Remove),
        (0u8..40, 0u8..32).prop_map(|(node, third)| Step::Pin(node, third)),
    ]
}

proptest! {
    /// Whatever nodes come and go, no subnet is ever held twice, nothing is
    /// handed out of a reserved range, and the ledger's two views agree.
    #[test]
    fn no_subnet_is_ever_given_to_two_nodes(steps in proptest::collection::vec(step(), 1..300)) {
        let mut ipam = Ipam::new(&pool(&["11.11.0.0/19"], &["11.11.4.0/22"]));
        for step in steps {
            match step {
                Step::Add(node) => { assign(&mut ipam, [fresh(&format!("n{node}"))]); }
                Step::Remove(node) => { ipam.release(&format!("n{node}")); }
                Step::Pin(node, third) => {
                    let pin = net(&format!("11.11.{third}.0/24"));
                    assign(&mut ipam, [Claim { pinned: vec![pin], ..fresh(&format!("n{node}")) }]);
                }
            }
            let mut seen = HashSet::new();
            for (node, subnets) in ipam.assignments() {
                prop_assert!(subnets.len() <= 1, "{node} holds {subnets:?}");
                for subnet in subnets {
                    prop_assert!(seen.insert(*subnet), "{subnet} held twice");
                    prop_assert_eq!(ipam.holder_of(subnet), Some(node));
                    prop_assert!(ipam.is_allocated(subnet));
                    prop_assert!(!net("11.11.4.0/22").contains(subnet), "{subnet} is reserved");
                }
            }
            prop_assert_eq!(ipam.usage()[0].used as usize, seen.len());
        }
    }
}
