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
use super::dump::{ConnectedNetworks, KernelRoute, Snapshot};
use super::message::RtnlMessage;
use super::nexthop::NexthopMessage;
use super::objects::{NexthopKey, Objects};
use super::socket::Socket;
use crate::{Change, ChangeError, ChangeOutcome, DriverError};

/// What one change comes down to on this router.
enum Step {
    /// Settled without asking the kernel.
    Settled(ChangeOutcome),
    /// Point `dst` at the nexthop object for `key`; `owned_nh` is the nexthop
    /// of the route of ours being replaced, if there is one.
    Install {
        dst: IpNet,
        key: NexthopKey,
        replace: bool,
        owned_nh: Option<u32>,
    },
    /// Withdraw our route to `dst`.
    Withdraw { dst: IpNet, owned_nh: Option<u32> },
}

/// The routes in the configured table with a destination inside the pool,
/// by destination: ours, and anyone else's.
struct PoolRoutes<'a> {
    owned: HashMap<IpNet, &'a KernelRoute>,
    foreign: HashMap<IpNet, &'a KernelRoute>,
}

impl<'a> PoolRoutes<'a> {
    fn new(snapshot: &'a Snapshot, router: &NetlinkRouter) -> Self {
        let mut routes = Self {
            owned: HashMap::new(),
            foreign: HashMap::new(),
        };
        let in_table = snapshot
            .routes
            .iter()
            .filter(|route| route.table == router.table);
        for route in in_table.filter(|route| router.ownership.in_pool(&route.dst)) {
            let side = if route.protocol == router.ownership.netlink_protocol {
                &mut routes.owned
            } else {
                &mut routes.foreign
            };
            side.entry(route.dst).or_insert(route);
        }
        routes
    }
}

pub(super) async fn apply(
    socket: &mut Socket,
    router: &NetlinkRouter,
    changes: &[Change],
) -> Result<Vec<ChangeOutcome>, DriverError> {
    let snapshot = Snapshot::take(socket).await?;
    let pool = PoolRoutes::new(&snapshot, router);
    let connected = snapshot.connected_networks(router.table);
    let mut objects = Objects::new(&snapshot, router.ownership.netlink_protocol);

    let steps: Vec<Step> = changes
        .iter()
        .map(|change| plan(change, router, &pool, &objects, &connected))
        .collect();
    let wanted = steps.iter().filter_map(|step| match step {
        Step::Install { key, .. } => Some(*key),
        _ => None,
    });
    let refused_nexthops = objects.create(socket, wanted).await?;

    let mut outcomes: Vec<Option<ChangeOutcome>> = vec![None; changes.len()];
    let (sent, requests): (Vec<usize>, Vec<_>) =
        route_requests(&steps, &objects, &refused_nexthops, router, &mut outcomes)
            .into_iter()
            .unzip();
    let answers = socket.batch("changing routes", requests).await?;

    let mut users = snapshot.nexthop_users();
    for (index, answer) in sent.into_iter().zip(answers) {
        outcomes[index] = Some(outcome(&steps[index], answer, &pool, &objects, &mut users));
    }
    remove_unused_nexthops(socket, &objects, &users).await?;
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
                Step::Install {
                    dst, key, replace, ..
                } if !withdrawals => match (objects.id(key), refused_nexthops.get(key)) {
                    (Some(nh_id), _) => install_request(*dst, nh_id, *replace, router),
                    (None, refusal) => Err(nexthop_refused(*dst, *key, refusal)),
                },
                Step::Withdraw { dst, owned_nh } if withdrawals => {
                    withdraw_request(*dst, *owned_nh, router)
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

fn plan(
    change: &Change,
    router: &NetlinkRouter,
    pool: &PoolRoutes<'_>,
    objects: &Objects,
    connected: &ConnectedNetworks,
) -> Step {
    let route = change.route();
    let dst = route.dst;
    let refuse = |message: String| Step::Settled(Err(ChangeError::Refused { dst, message }));
    let owned = pool.owned.get(&dst);
    if let Change::Remove(_) = change {
        return match owned {
            Some(owned) => Step::Withdraw {
                dst,
                owned_nh: owned.nh_id,
            },
            // Already gone, which is what was asked.
            None => Step::Settled(Ok(())),
        };
    }
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
    let Some(oif) = connected.oif_for(route.via) else {
        return Step::Settled(Err(ChangeError::NextHopNotOnLink {
            dst,
            via: route.via,
        }));
    };
    let key = (route.via, oif);
    match owned {
        // Ours already, through exactly this nexthop: nothing to do.
        Some(owned) if owned.nh_id.and_then(|id| objects.key_of(id)) == Some(key) => {
            Step::Settled(Ok(()))
        }
        // Ours, through something else (an add after a stale list too):
        // replacing it is what makes the router hold the route asked for.
        Some(owned) => Step::Install {
            dst,
            key,
            replace: true,
            owned_nh: owned.nh_id,
        },
        // Not ours. NLM_F_REPLACE would overwrite whatever route holds the
        // destination, whoever owns it, so it is only ever used on ours:
        // a replace of a route we do not hold is an add.
        None => Step::Install {
            dst,
            key,
            replace: false,
            owned_nh: None,
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
    owned_nh: Option<u32>,
    router: &NetlinkRouter,
) -> Result<(RtnlMessage, u16), ChangeError> {
    // The protocol (and nexthop, when known) in the request make the kernel
    // match only our route, never a foreign one to the same destination.
    // Scope "nowhere" and no type match ours whatever they are, as `ip route del` does.
    let mut builder = route_message(dst, router)?
        .scope(RouteScope::NoWhere)
        .kind(RouteType::Unspec);
    if let Some(nh_id) = owned_nh {
        builder = builder.nhid(nh_id);
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

/// Turns the kernel's answer into the change's outcome, and keeps the count
/// of each nexthop's users in step with what took effect.
fn outcome(
    step: &Step,
    answer: Answer,
    pool: &PoolRoutes<'_>,
    objects: &Objects,
    users: &mut HashMap<u32, i64>,
) -> ChangeOutcome {
    let mut count = |id: Option<u32>, delta: i64| {
        if let Some(id) = id {
            *users.entry(id).or_insert(0) += delta;
        }
    };
    match (step, answer) {
        (Step::Install { key, owned_nh, .. }, Ok(())) => {
            count(objects.id(key), 1);
            count(*owned_nh, -1);
            Ok(())
        }
        (Step::Install { dst, .. }, Err(error))
            if error.errno == Errno::EEXIST && pool.foreign.contains_key(dst) =>
        {
            Err(ChangeError::ForeignRouteInTheWay { dst: *dst })
        }
        // ESRCH: gone already, which is what was asked.
        (Step::Withdraw { owned_nh, .. }, Ok(()))
        | (
            Step::Withdraw { owned_nh, .. },
            Err(KernelError {
                errno: Errno::ESRCH,
                ..
            }),
        ) => {
            count(*owned_nh, -1);
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

/// Deletes our nexthop objects that no route or group uses any more.
/// Deleting a nexthop deletes the routes using it, so only ever ours, and
/// only unused; failures leave an unused object behind, harmless, and are
/// retried at the next apply.
async fn remove_unused_nexthops(
    socket: &mut Socket,
    objects: &Objects,
    users: &HashMap<u32, i64>,
) -> Result<(), DriverError> {
    let mut unused: Vec<u32> = objects
        .ours()
        .filter(|id| users.get(id).copied().unwrap_or(0) <= 0)
        .collect();
    unused.sort_unstable();
    let requests = unused
        .iter()
        .map(|id| (RtnlMessage::Nexthop(NexthopMessage::delete(*id)), 0))
        .collect();
    let answers = socket.batch("deleting unused nexthops", requests).await?;
    for (id, answer) in unused.into_iter().zip(answers) {
        match answer {
            Ok(())
            | Err(KernelError {
                errno: Errno::ENOENT,
                ..
            }) => {}
            Err(error) => {
                tracing::warn!(router = %socket.router, nexthop = id, %error, "unused nexthop not deleted")
            }
        }
    }
    Ok(())
}
