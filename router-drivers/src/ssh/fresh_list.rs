//! The router read afresh just before a batch, and what that read decides
//! about each change: sent as it is, sent as something narrower, or
//! settled without being sent.
//!
//! Most CLIs key a static route by prefix and next hop and keep the
//! ownership mark as an attribute of it. Writing onto a route someone else
//! wrote since the controller's last list would stamp our mark on theirs,
//! and deleting by prefix and next hop (`no ip route P H`, Junos and VyOS
//! deleting a whole stanza) takes the route whoever wrote it: FRR, IOS and
//! EOS do not match the tag on a `no` form. So on those vendors every batch
//! that writes or removes is preceded by a list, and only what it shows as
//! ours is ever removed. What is left is the milliseconds between that list
//! and the batch.

use super::vendor::Vendor;
use crate::{Change, ChangeError, ChangeOutcome, Route, RouterRoutes};

/// What becomes of one change after the fresh list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Screened {
    Send(Change),
    /// Not sent: its outcome is known already.
    Settled(ChangeOutcome),
}

/// Whether `changes` must wait for a fresh list on this vendor.
pub(super) fn needed(vendor: &dyn Vendor, changes: &[Change]) -> bool {
    let writes = changes
        .iter()
        .any(|change| !matches!(change, Change::Remove(_)));
    let removes = changes
        .iter()
        .any(|change| !matches!(change, Change::Add(_)));
    (writes && vendor.writes_merge_into_existing_routes())
        || (removes && !vendor.removals_match_our_mark())
}

/// What `listed` (the fresh list) decides about `change`.
pub(super) fn screen(vendor: &dyn Vendor, listed: &RouterRoutes, change: &Change) -> Screened {
    let ours = |route: Route| listed.owned.contains(&route);
    let unscoped = !vendor.removals_match_our_mark();
    let change = match *change {
        // Nothing of ours there any more: gone is what was asked, and the
        // route at that prefix and next hop, if any, is someone else's.
        Change::Remove(route) if unscoped && !ours(route) => return Screened::Settled(Ok(())),
        // The old next hop is no longer ours: only the new one is written,
        // as an add (with an add's care for foreign routes).
        Change::Replace { route, old_via } if unscoped && !ours(Route::new(route.dst, old_via)) => {
            Change::Add(route)
        }
        other => other,
    };
    if vendor.writes_merge_into_existing_routes() && foreign_in_the_way(&change, listed) {
        return Screened::Settled(Err(ChangeError::ForeignRouteInTheWay {
            dst: change.route().dst,
        }));
    }
    Screened::Send(change)
}

/// What a read after a batch with no answer in time (a commit that took
/// too long, a broken connection) shows of `change`: taken, or not, with
/// `why` the batch gave no answer.
pub(super) fn settle_unanswered(
    listed: &RouterRoutes,
    change: &Change,
    why: &str,
) -> ChangeOutcome {
    let ours = |route: Route| listed.owned.contains(&route);
    let taken = match *change {
        Change::Add(route) => ours(route),
        Change::Replace { route, old_via } => ours(route) && !ours(Route::new(route.dst, old_via)),
        Change::Remove(route) => !ours(route),
    };
    if taken {
        Ok(())
    } else {
        Err(ChangeError::Refused {
            dst: change.route().dst,
            message: format!("{why}; the router read afresh does not show it taken"),
        })
    }
}

/// Whether a foreign route holds what `change` would write: any route to
/// the destination of an add (Junos would merge next hops into one
/// stanza), the destination and new next hop of a replace.
fn foreign_in_the_way(change: &Change, listed: &RouterRoutes) -> bool {
    let foreign = &listed.foreign;
    match *change {
        Change::Add(route) => foreign.iter().any(|f| f.dst == route.dst),
        Change::Replace { route, .. } => foreign
            .iter()
            .any(|f| f.dst == route.dst && f.via == Some(route.via)),
        Change::Remove(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{Screened, needed, screen};
    use crate::ssh::VendorName;
    use crate::{Change, ChangeError, ForeignRoute, Route, RouterRoutes};

    fn route(dst: &str, via: &str) -> Route {
        Route::new(dst.parse().expect("a prefix"), address(via))
    }

    fn address(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn foreign(dst: &str, via: &str) -> ForeignRoute {
        ForeignRoute {
            dst: dst.parse().expect("a prefix"),
            via: Some(address(via)),
            detail: String::new(),
        }
    }

    /// Ours: 11.11.1.0/24 via .3; someone else's: 11.11.2.0/24 via .4.
    fn listed() -> RouterRoutes {
        RouterRoutes {
            owned: vec![route("11.11.1.0/24", "192.168.3.3")],
            foreign: vec![foreign("11.11.2.0/24", "192.168.3.4")],
        }
    }

    #[test]
    fn a_removal_is_sent_only_for_a_route_the_fresh_list_shows_as_ours() {
        for vendor in [
            VendorName::Frr,
            VendorName::CiscoIos,
            VendorName::AristaEos,
            VendorName::Junos,
            VendorName::Vyos,
        ] {
            let profile = vendor.profile();
            let ours = Change::Remove(route("11.11.1.0/24", "192.168.3.3"));
            let theirs = Change::Remove(route("11.11.2.0/24", "192.168.3.4"));
            let gone = Change::Remove(route("11.11.3.0/24", "192.168.3.5"));
            assert!(needed(profile, &[theirs]), "{vendor}");
            assert_eq!(screen(profile, &listed(), &ours), Screened::Send(ours));
            assert_eq!(
                screen(profile, &listed(), &theirs),
                Screened::Settled(Ok(()))
            );
            assert_eq!(screen(profile, &listed(), &gone), Screened::Settled(Ok(())));
        }
    }

    #[test]
    fn a_replace_whose_old_next_hop_is_not_ours_only_adds_the_new_one() {
        let profile = VendorName::CiscoIos.profile();
        let taken = Change::Replace {
            route: route("11.11.2.0/24", "192.168.3.9"),
            old_via: address("192.168.3.4"),
        };
        let vanished = Change::Replace {
            route: route("11.11.3.0/24", "192.168.3.9"),
            old_via: address("192.168.3.5"),
        };
        let held = Change::Replace {
            route: route("11.11.1.0/24", "192.168.3.9"),
            old_via: address("192.168.3.3"),
        };
        // The old next hop is someone else's now, on the same prefix: an
        // add there would stamp our tag beside theirs.
        assert_eq!(
            screen(profile, &listed(), &taken),
            Screened::Settled(Err(ChangeError::ForeignRouteInTheWay {
                dst: taken.route().dst
            }))
        );
        assert_eq!(
            screen(profile, &listed(), &vanished),
            Screened::Send(Change::Add(vanished.route()))
        );
        assert_eq!(screen(profile, &listed(), &held), Screened::Send(held));
    }

    #[test]
    fn vendors_whose_removals_carry_the_mark_need_no_list_to_remove() {
        for vendor in [VendorName::Linux, VendorName::RouterOs] {
            let profile = vendor.profile();
            let theirs = Change::Remove(route("11.11.2.0/24", "192.168.3.4"));
            assert!(!needed(profile, &[theirs]), "{vendor}");
            let replace = Change::Replace {
                route: route("11.11.2.0/24", "192.168.3.9"),
                old_via: address("192.168.3.4"),
            };
            assert!(!needed(profile, &[replace]), "{vendor}");
        }
    }
}
