//! The router's own addresses, read inside its namespace: a next hop equal
//! to one of them would point the router at itself.

use std::net::IpAddr;

use crate::DriverError;
use crate::netns::{Namespace, create_inside};

/// Every address configured on any interface of the router.
pub(super) async fn own_addresses(
    router: &str,
    netns: Option<&str>,
) -> Result<Vec<IpAddr>, DriverError> {
    let namespace = netns
        .map(|name| Namespace::open(router, name))
        .transpose()?;
    let owner = router.to_owned();
    create_inside(router, namespace, move || {
        let interfaces = nix::ifaddrs::getifaddrs().map_err(|errno| DriverError::Request {
            router: owner,
            operation: "reading the router's addresses",
            message: errno.to_string(),
        })?;
        Ok(interfaces
            .filter_map(|interface| interface.address)
            .filter_map(|address| {
                address
                    .as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect())
    })
    .await
}
