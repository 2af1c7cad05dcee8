//! From a router's config to a connected driver.

use nativeroute_router_drivers::netlink::{NetlinkDriver, NetlinkRouter};
use nativeroute_router_drivers::{DriverError, Ownership, RouterDriver};

use crate::config::{DriverConfig, RouterConfig};

/// Connects to `router` with the driver its config names.
pub async fn connect(
    router: &RouterConfig,
    ownership: &Ownership,
) -> Result<Box<dyn RouterDriver>, DriverError> {
    match &router.driver {
        DriverConfig::Netlink { netns, table } => {
            let driver = NetlinkDriver::connect(NetlinkRouter {
                name: router.name.to_string(),
                netns: netns.clone(),
                table: *table,
                ownership: ownership.clone(),
            })
            .await?;
            Ok(Box::new(driver))
        }
    }
}
