//! From a router's config to a connected driver.

use nativeroute_router_drivers::bgp::{BgpDriver, BgpRouter, MAX_PASSWORD_LEN};
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
        DriverConfig::Bgp(bgp) => {
            let password = match &bgp.password_file {
                Some(file) => Some(read_password(&name, file)?),
                None => None,
            };
            let driver = BgpDriver::connect(BgpRouter {
                name,
                address: bgp.address,
                local_as: bgp.local_as,
                peer_as: bgp.peer_as,
                router_id: bgp.router_id,
                hold_time: bgp.hold_time,
                graceful_restart: bgp.graceful_restart,
                password,
                netns: bgp.netns.clone(),
                connect_timeout: bgp.connect_timeout,
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

/// The TCP-MD5 password in `file`, without the line end an editor or
/// `kubectl create secret --from-file` leaves.
fn read_password(router: &str, file: &std::path::Path) -> Result<String, DriverError> {
    let fail = |message: String| DriverError::Request {
        router: router.to_owned(),
        operation: "reading the TCP-MD5 password",
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|err| {
        fail(format!(
            "cannot read passwordFile {}: {err}",
            file.display()
        ))
    })?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(fail(format!(
            "passwordFile {} holds {} octets; a TCP-MD5 password has 1 to {MAX_PASSWORD_LEN}",
            file.display(),
            password.len()
        )));
    }
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_is_read_without_its_line_end_and_refused_when_empty_or_too_long() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("core-bgp");
        std::fs::write(&file, "s3cret\r\n").expect("written");
        assert_eq!(read_password("core-bgp", &file).expect("read"), "s3cret");
        for bad in ["\n".to_owned(), "x".repeat(MAX_PASSWORD_LEN + 1)] {
            std::fs::write(&file, &bad).expect("written");
            let err = read_password("core-bgp", &file).expect_err("refused");
            assert!(
                err.to_string().contains("a TCP-MD5 password has 1 to 80"),
                "{err}"
            );
        }
        let err = read_password("core-bgp", &dir.path().join("missing")).expect_err("refused");
        assert!(
            err.to_string().contains("cannot read passwordFile"),
            "{err}"
        );
    }
}
