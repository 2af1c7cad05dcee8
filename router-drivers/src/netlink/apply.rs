//! One batch of changes, in the order the kernel needs them: the nexthop
//! objects the new routes point at, then the routes (installs before
//! withdrawals), then the nexthop objects of ours no route uses any more.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteProtocol, RouteScope, RouteType};
use nix::errno::Errno;
use rtnetlink::RouteMessageBuilder;

use super::NetlinkRouter;
use super::batch::{Answer, KernelError};
use super::dump::{Reading, catch_up};
use super::message::RtnlMessage;
use super::nexthop::NexthopMessage;
use super::objects::{NexthopKey, Objects};
use super::socket::Socket;
use super::view::{OwnedRoute, View};
use crate::fence::all_fenced;
use crate::{Change, ChangeError, ChangeOutcome, DriverError, Fence};

/// What one change comes down to on this router.
enum Step {
    /// Settled without asking the kernel.
    Settled(ChangeOutcome),
    /// Point `dst` at the nexthop object for `key`, in place of our route
    /// `replaced` if there is one.
    Install {
        dst: IpNet,
        key: NexthopKey,
        replaced: Option<OwnedRoute>,
    },
    /// Withdraw our route `route` to `dst`.
    Withdraw { dst: IpNet, route: OwnedRoute },
}

/// Applies `changes` and keeps `view` in step with what took effect. Our
/// nexthop objects that no route uses any more are left for [`tidy`]: that
/// work is not needed for the routes to be right, and doing it here would
/// double the cost of withdrawing nodes.
///
/// The batch goes to the kernel in several sendmsg calls (the nexthops,
/// then the routes, each in chunks the receive buffer can answer): `fence`
/// is looked at before each, and the changes whose message was not sent
/// are fenced.
pub(super) async fn apply(
    socket: &mut Socket,
    router: &NetlinkRouter,
    view: &mut View,
    changes: &[Change],
    fence: &Fence,
) -> Result<Vec<ChangeOutcome>, DriverError> {
    catch_up(socket, &mut view.others)?;
    let mut steps: Vec<Step> = changes
        .iter()
        .map(|change| plan(change, router, view))
        .collect();
    if steps.iter().any(|step| {
        matches!(
            step,
            Step::Install {
                replaced: Some(_),
                ..
            }
        )
    }) {
        // NLM_F_REPLACE overwrites whatever route holds the destination,
        // whoever owns it: make sure by a fresh read that it is still ours,
        // and that no foreign route sits beside it.
        let others = view.take_others(router);
        *view = View::new(Reading::take(socket, router, others).await?, router);
        steps = changes
            .iter()
            .map(|change| plan(change, router, view))
            .collect();
    }
    let wanted = steps.iter().filter_map(|step| match step {
        Step::Install { key, .. } => Some(*key),
        _ => None,
    });
    let refused_nexthops = view.objects.create(socket, wanted, fence).await?;
    view.created_nexthops();
    if fence.is_raised() {
        // New nexthop objects without routes are harmless: tidy removes them.
        return Ok(all_fenced(changes));
    }

    let mut outcomes: Vec<Option<ChangeOutcome>> = vec![None; changes.len()];
    let (sent, requests): (Vec<usize>, Vec<_>) = route_requests(
        &steps,
        &view.objects,
        &refused_nexthops,
        router,
        &mut outcomes,
    )
    .into_iter()
    .unzip();
    let answers = socket.batch("changing routes", requests, fence).await?;
    // A foreign route that took a destination meanwhile explains a refusal.
    catch_up(socket, &mut view.others)?;
    let mut sent = sent.into_iter();
    // Answers first: zip takes from its first side before it sees the
    // second run out, and an index taken that way would be lost.
    for (answer, index) in answers.into_iter().zip(sent.by_ref()) {
        outcomes[index] = Some(outcome(&steps[index], answer, view));
    }
    // Messages the fence kept from being sent.
    for index in sent {
        outcomes[index] = Some(Err(ChangeError::Fenced {
            dst: changes[index].route().dst,
        }));
    }
    Ok(outcomes
        .into_iter()
        .zip(changes)
        .map(|(outcome, change)| {
            outcome.unwrap_or_else(|| {
                Err(ChangeError::Refused {
                    dst: change.route().dst,
                    message: "not attempted".to_owned(),
                })
            })
        })
        .collect())
}

/// Deletes our nexthop objects that no route or group uses any more, by a
/// fresh read of the kernel (so a route someone else pointed at one of them
/// since the last read keeps it). Deleting a nexthop deletes the routes
/// using it, so only ever ours, and only unused; a failure leaves an unused
/// object behind, harmless, for the next tidy.
pub(super) async fn tidy(
    socket: &mut Socket,
    router: &NetlinkRouter,
    view: &mut View,
) -> Result<(), DriverError> {
    let others = view.take_others(router);
    *view = View::new(Reading::take(socket, router, others).await?, router);
    let unused = view.unused_nexthops();
    let requests = unused
        .iter()
        .map(|id| (RtnlMessage::Nexthop(NexthopMessage::delete(*id)), 0))
        .collect();
    // Unused objects of ours only, read afresh: no fence needed for that.
    let answers = socket
        .batch("deleting unused nexthops", requests, &Fence::never())
        .await?;
    for (id, answer) in unused.into_iter().zip(answers) {
        match answer {
            Ok(())
            | Err(KernelError {
                errno: Errno::ENOENT,
                ..
            }) => view.objects.forget(id),
            Err(error) => {
                tracing::warn!(router = %socket.router, nexthop = id, %error, "unused nexthop not deleted")
            }
        }
    }
    Ok(())
}

/// The route messages for the steps that need the kernel, installs before
/// withdrawals so that a batch never leaves a gap it need not, each with the
/// index of its change. Steps settled without the kernel get their outcome.
fn route_requests(
    steps: &[Step],
    objects: &Objects,
    refused_nexthops: &HashMap<NexthopKey, KernelError>,
    router: &NetlinkRouter,
    outcomes: &mut [Option<ChangeOutcome>],
) -> Vec<(usize, (RtnlMessage, u16))> {
    let mut requests = Vec::new();
    for withdrawals in [false, true] {
        for (index, step) in steps.iter().enumerate() {
            let request = match step {
                Step::Settled(outcome) if !withdrawals => {
                    outcomes[index] = Some(outcome.clone());
                    continue;
                }
                Step::Install { dst, key, replaced } if !withdrawals => {
                    match (objects.id(key), refused_nexthops.get(key)) {
                        (Some(nh_id), _) => {
                            install_request(*dst, nh_id, replaced.is_some(), router)
                        }
                        (None, refusal) => Err(nexthop_refused(*dst, *key, refusal)),
                    }
                }
                Step::Withdraw { dst, route } if withdrawals => {
                    withdraw_request(*dst, *route, router)
                }
                _ => continue,
            };
            match request {
                Ok(request) => requests.push((index, request)),
                Err(error) => outcomes[index] = Some(Err(error)),
            }
        }
    }
    requests
}

fn plan(change: &Change, router: &NetlinkRouter, view: &View) -> Step {
    let route = change.route();
    let dst = route.dst;
    let refuse = |message: String| Step::Settled(Err(ChangeError::Refused { dst, message }));
    if let Change::Remove(removed) = change {
        // Only our route through the next hop being removed. Our route to
        // the destination through another one (it moved on since the list
        // this removal came from) is not the one asked for, and stays.
        return match view.owned_via(dst, removed.via) {
            Some(ours) => Step::Withdraw { dst, route: ours },
            // Already gone, which is what was asked.
            None => Step::Settled(Ok(())),
        };
    }
    let owned = view.first_owned(dst);
    if !router.ownership.in_pool(&dst) {
        return refuse(format!(
            "{dst} is outside the pool, so the route could not be nativeroute's"
        ));
    }
    if dst.addr().is_ipv4() != route.via.is_ipv4() {
        return refuse(format!(
            "next hop {} is not of the address family of {dst}",
            route.via
        ));
    }
    let Some(oif) = view.connected.oif_for(route.via) else {
        return Step::Settled(Err(ChangeError::NextHopNotOnLink {
            dst,
            via: route.via,
        }));
    };
    let key = (route.via, oif);
    match owned {
        // Ours already, through exactly this nexthop: nothing to do.
        Some(ours) if ours.nh_id.and_then(|id| view.objects.key_of(id)) == Some(key) => {
            Step::Settled(Ok(()))
        }
        // Ours, through something else (an add after a stale list too):
        // replacing it is what makes the router hold the route asked for.
        // NLM_F_REPLACE takes the first route to the destination, whoever
        // owns it: with a foreign one beside ours (`ip route prepend`), it
        // could take theirs. Leave both alone and say why.
        Some(_) if view.others.holds(dst) => {
            Step::Settled(Err(ChangeError::ForeignRouteInTheWay { dst }))
        }
        Some(ours) => Step::Install {
            dst,
            key,
            replaced: Some(ours),
        },
        // Not ours. NLM_F_REPLACE would overwrite whatever route holds the
        // destination, whoever owns it, so it is only ever used on ours:
        // a replace of a route we do not hold is an add.
        None => Step::Install {
            dst,
            key,
            replaced: None,
        },
    }
}

fn install_request(
    dst: IpNet,
    nh_id: u32,
    replace: bool,
    router: &NetlinkRouter,
) -> Result<(RtnlMessage, u16), ChangeError> {
    let message = route_message(dst, router)?.nhid(nh_id).build();
    let flags = if replace {
        NLM_F_CREATE | NLM_F_REPLACE
    } else {
        NLM_F_CREATE | NLM_F_EXCL
    };
    Ok((
        RtnlMessage::Route(RouteNetlinkMessage::NewRoute(message)),
        flags,
    ))
}

fn withdraw_request(
    dst: IpNet,
    route: OwnedRoute,
    router: &NetlinkRouter,
) -> Result<(RtnlMessage, u16), ChangeError> {
    // The protocol in the request makes the kernel match only a route of
    // ours, never a foreign one to the same destination, and the nexthop
    // object (or, for a plain route, the gateway) only the one through the
    // next hop being removed: a route of ours that moved to another since
    // our last read does not match, and the answer is ESRCH. (IPv6 matches
    // a route using a nexthop object by its id alone, so a plain route of
    // ours that became one since our last read would be taken with a
    // gateway; every route this driver installs uses an object, and a read
    // precedes any replace.) Scope "nowhere" and no type match ours
    // whatever they are, as `ip route del` does.
    let mut builder = route_message(dst, router)?
        .scope(RouteScope::NoWhere)
        .kind(RouteType::Unspec);
    match route {
        OwnedRoute {
            nh_id: Some(nh_id), ..
        } => builder = builder.nhid(nh_id),
        OwnedRoute { via: Some(via), .. } => {
            builder = builder.gateway(via).map_err(|error| ChangeError::Refused {
                dst,
                message: error.to_string(),
            })?;
        }
        // Ours without one gateway (a group, a blackhole): listed via the
        // unspecified address, and removed by destination and protocol.
        OwnedRoute {
            nh_id: None,
            via: None,
        } => {}
    }
    Ok((
        RtnlMessage::Route(RouteNetlinkMessage::DelRoute(builder.build())),
        0,
    ))
}

fn route_message(
    dst: IpNet,
    router: &NetlinkRouter,
) -> Result<RouteMessageBuilder<IpAddr>, ChangeError> {
    let builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .map_err(|error| ChangeError::Refused {
            dst,
            message: error.to_string(),
        })?;
    Ok(builder
        .table_id(router.table)
        .protocol(RouteProtocol::from(router.ownership.netlink_protocol)))
}

fn nexthop_refused(
    dst: IpNet,
    (gateway, oif): NexthopKey,
    refusal: Option<&KernelError>,
) -> ChangeError {
    let reason = refusal.map_or_else(|| "not created".to_owned(), ToString::to_string);
    ChangeError::Refused {
        dst,
        message: format!("nexthop object via {gateway} (interface index {oif}): {reason}"),
    }
}

/// Turns the kernel's answer into the change's outcome, and keeps the view
/// in step with what took effect.
fn outcome(step: &Step, answer: Answer, view: &mut View) -> ChangeOutcome {
    match (step, answer) {
        (Step::Install { dst, key, replaced }, Ok(())) => {
            let route = OwnedRoute {
                nh_id: view.objects.id(key),
                via: Some(key.0),
            };
            view.installed(*dst, *replaced, route);
            Ok(())
        }
        (Step::Install { dst, .. }, Err(error))
            if error.errno == Errno::EEXIST && view.others.holds(*dst) =>
        {
            Err(ChangeError::ForeignRouteInTheWay { dst: *dst })
        }
        // ESRCH: gone already, which is what was asked.
        (Step::Withdraw { dst, route }, Ok(()))
        | (
            Step::Withdraw { dst, route },
            Err(KernelError {
                errno: Errno::ESRCH,
                ..
            }),
        ) => {
            view.withdrawn(*dst, *route);
            Ok(())
        }
        (Step::Install { dst, .. } | Step::Withdraw { dst, .. }, Err(error)) => {
            Err(ChangeError::Refused {
                dst: *dst,
                message: error.to_string(),
            })
        }
        (Step::Settled(outcome), _) => outcome.clone(),
    }
}
