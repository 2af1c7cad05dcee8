//! What the router holds inside the pool: our routes, and everyone else's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::route::RouteType;

use super::NetlinkRouter;
use super::dump::{KernelRoute, Reading, interface_names};
use super::others::Others;
use super::protocols::known_route_protocol;
use super::socket::Socket;
use super::view::View;
use crate::{DriverError, ForeignRoute, Route, RouterRoutes};

/// Lists what the router holds inside the pool, and returns the fresh view
/// of the kernel that the listing was made from. `others` is the picture
/// of everyone else's routes from the last read, if there is one.
pub(super) async fn list(
    socket: &mut Socket,
    router: &NetlinkRouter,
    others: Others,
) -> Result<(RouterRoutes, View), DriverError> {
    let reading = Reading::take(socket, router, others).await?;
    let mut routes = RouterRoutes::default();
    let owned = reading
        .marked
        .iter()
        .filter(|route| router.ownership.in_pool(&route.dst));
    for route in owned {
        // A route with our mark whose next hop cannot be told (a nexthop
        // group, a blackhole) is still ours. It is listed via the unspecified
        // address, so that the controller sees it differ and replaces it.
        let via = reading.via(route).unwrap_or_else(|| {
            tracing::warn!(router = %router.name, dst = %route.dst, "route of ours with no single gateway");
            unspecified(route)
        });
        routes.owned.push(Route::new(route.dst, via));
    }
    let foreign: Vec<&KernelRoute> = reading.others.in_pool().collect();
    if !foreign.is_empty() {
        let names = interface_names(socket).await?;
        routes.foreign = foreign
            .into_iter()
            .map(|route| ForeignRoute {
                dst: route.dst,
                via: reading.via(route),
                detail: detail(route, &names),
            })
            .collect();
    }
    routes.owned.sort();
    routes.foreign.sort_by_key(|route| (route.dst, route.via));
    Ok((routes, View::new(reading, router)))
}

fn unspecified(route: &KernelRoute) -> IpAddr {
    if route.dst.addr().is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    }
}

/// The route as `ip route` would describe it, minus destination and gateway:
/// "proto boot dev p3p2", "blackhole proto static", "proto zebra nhid 12 dev eth0".
fn detail(route: &KernelRoute, names: &HashMap<u32, String>) -> String {
    let mut words = Vec::new();
    if route.kind != RouteType::Unicast {
        words.push(format!("{:?}", route.kind).to_lowercase());
    }
    let protocol = match known_route_protocol(route.protocol) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(route.protocol.to_string()),
    };
    words.push(format!("proto {protocol}"));
    if let Some(id) = route.nh_id {
        words.push(format!("nhid {id}"));
    }
    if route.multipath.is_some() {
        words.push("multipath".to_owned());
    }
    if let Some(oif) = route.oif {
        match names.get(&oif) {
            Some(name) => words.push(format!("dev {name}")),
            None => words.push(format!("dev #{oif}")),
        }
    }
    words.join(" ")
}
