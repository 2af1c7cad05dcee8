//! From a router's config to a connected driver.

use nativeroute_router_drivers::netlink::{NetlinkDriver, NetlinkRouter};
use nativeroute_router_drivers::plugin::{PluginDriver, PluginRouter};
use nativeroute_router_drivers::ssh::{HostKeyPolicy, SshDriver, SshRouter};
use nativeroute_router_drivers::{DriverError, Ownership, RouterDriver};

use crate::config::{DriverConfig, RouterConfig};

/// Connects to `router` with the driver its config names.
pub async fn connect(
    router: &RouterConfig,
    ownership: &Ownership,
) -> Result<Box<dyn RouterDriver>, DriverError> {
    let name = router.name.to_string();
    match &router.driver {
        DriverConfig::Netlink { netns, table } => {
            let driver = NetlinkDriver::connect(NetlinkRouter {
                name,
                netns: netns.clone(),
                table: *table,
                ownership: ownership.clone(),
            })
            .await?;
            Ok(Box::new(driver))
        }
        DriverConfig::Ssh(ssh) => {
            let driver = SshDriver::connect(SshRouter {
                name,
                vendor: ssh.vendor,
                host: ssh.host.clone(),
                port: ssh.port,
                netns: ssh.netns.clone(),
                username: ssh.username.clone(),
                private_key_file: ssh.private_key_file.clone(),
                host_keys: HostKeyPolicy {
                    known_hosts_file: ssh.known_hosts_file.clone(),
                    trust_on_first_use: ssh.trust_on_first_use,
                },
                save_config: ssh.save_config,
                commit_confirm: ssh.commit_confirm,
                cli_command: ssh.cli_command.clone(),
                timeouts: ssh.timeouts,
                ownership: ownership.clone(),
            })
            .await?;
            Ok(Box::new(driver))
        }
        DriverConfig::Plugin { command, timeout } => {
            Ok(Box::new(PluginDriver::new(PluginRouter {
                name,
                command: command.clone(),
                timeout: *timeout,
                ownership: ownership.clone(),
            })))
        }
    }
}
