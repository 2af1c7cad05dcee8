//! Checks of `routers[]`: each driver takes its own keys, and a key of
//! another driver is an error rather than silently ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use nativeroute_router_drivers::bgp::BgpRouter;
use nativeroute_router_drivers::bgp::wire::AS_TRANS;
use nativeroute_router_drivers::ssh::{Timeouts, VendorName};

use super::raw::RawRouter;
use super::values::check_netns_name;
use super::{BgpConfig, DriverConfig, RouterConfig, SshConfig};

/// The kernel's `local` table holds the host's own addresses.
const LOCAL_TABLE: u32 = 255;
const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Junos counts commit confirmation in whole minutes, up to 65,535.
const MAX_COMMIT_CONFIRM: Duration = Duration::from_secs(65_535 * 60);

pub(super) fn check_routers(
    raw: Vec<RawRouter>,
    report: &mut impl FnMut(String, String),
) -> Vec<RouterConfig> {
    if raw.is_empty() {
        report(
            "routers".into(),
            "no routers: nativeroute needs at least one router to program".into(),
        );
    }
    let mut routers: Vec<RouterConfig> = Vec::with_capacity(raw.len());
    for (index, router) in raw.into_iter().enumerate() {
        let field = format!("routers[{index}]");
        if routers.iter().any(|seen| seen.name == router.name) {
            report(
                format!("{field}.name"),
                format!(
                    "{:?} is used by another router; names must be unique",
                    router.name.as_str()
                ),
            );
        }
        let driver = match router.driver.as_str() {
            "netlink" => check_netlink(&router, &field, report),
            "ssh" => match check_ssh(&router, &field, report) {
                Some(driver) => driver,
                None => continue,
            },
            "bgp" => match check_bgp(&router, &field, report) {
                Some(driver) => driver,
                None => continue,
            },
            "plugin" => match check_plugin(&router, &field, report) {
                Some(driver) => driver,
                None => continue,
            },
            other => {
                report(
                    format!("{field}.driver"),
                    format!("{other:?} is not a driver: use netlink, ssh, bgp or plugin"),
                );
                continue;
            }
        };
        if let Some(other) = routers
            .iter()
            .position(|seen| seen.driver.same_target(&driver))
        {
            let key = match &driver {
                DriverConfig::Netlink { .. } => "netns",
                DriverConfig::Ssh(_) | DriverConfig::Bgp(_) => "address",
                DriverConfig::Plugin { .. } => "command",
            };
            report(
                format!("{field}.{key}"),
                format!(
                    "{} is also routers[{other}]'s: two routers on one routing table would fight \
                     over its routes; use one router per table",
                    describe_target(&driver)
                ),
            );
        }
        routers.push(RouterConfig {
            name: router.name,
            driver,
            node_networks: router.node_networks.iter().map(|c| c.0).collect(),
        });
    }
    routers
}

fn describe_target(driver: &DriverConfig) -> String {
    match driver {
        DriverConfig::Netlink { netns, .. } => netns.as_deref().map_or_else(
            || "this host's namespace".to_owned(),
            |ns| format!("network namespace {ns:?}"),
        ),
        DriverConfig::Ssh(ssh) => match &ssh.netns {
            Some(netns) => format!(
                "{}:{} (from network namespace {netns:?})",
                ssh.host, ssh.port
            ),
            None => format!("{}:{}", ssh.host, ssh.port),
        },
        DriverConfig::Bgp(bgp) => match &bgp.netns {
            Some(netns) => format!(
                "BGP peer {} (from network namespace {netns:?})",
                bgp.address.ip()
            ),
            None => format!("BGP peer {}", bgp.address.ip()),
        },
        DriverConfig::Plugin { command, .. } => command.join(" "),
    }
}

/// Reports every key set on `router` that its driver does not take.
fn refuse_foreign_keys(
    router: &RawRouter,
    field: &str,
    allowed: &[&str],
    report: &mut impl FnMut(String, String),
) {
    let set: [(&str, bool); 24] = [
        ("netns", router.netns.is_some()),
        ("table", router.table.is_some()),
        ("vendor", router.vendor.is_some()),
        ("address", router.address.is_some()),
        ("username", router.username.is_some()),
        ("privateKeyFile", router.private_key_file.is_some()),
        ("knownHostsFile", router.known_hosts_file.is_some()),
        ("trustOnFirstUse", router.trust_on_first_use.is_some()),
        ("saveConfig", router.save_config.is_some()),
        ("commitConfirm", router.commit_confirm.is_some()),
        ("cliCommand", router.cli_command.is_some()),
        ("connectTimeout", router.connect_timeout.is_some()),
        ("authTimeout", router.auth_timeout.is_some()),
        ("commandTimeout", router.command_timeout.is_some()),
        ("keepaliveInterval", router.keepalive_interval.is_some()),
        ("commitTimeout", router.commit_timeout.is_some()),
        ("localAs", router.local_as.is_some()),
        ("peerAs", router.peer_as.is_some()),
        ("routerId", router.router_id.is_some()),
        ("holdTime", router.hold_time.is_some()),
        ("gracefulRestart", router.graceful_restart.is_some()),
        ("passwordFile", router.password_file.is_some()),
        ("command", router.command.is_some()),
        ("timeout", router.timeout.is_some()),
    ];
    for (key, present) in set {
        if present && !allowed.contains(&key) {
            report(
                format!("{field}.{key}"),
                format!("{key} is not a setting of the {} driver", router.driver),
            );
        }
    }
}

fn check_netlink(
    router: &RawRouter,
    field: &str,
    report: &mut impl FnMut(String, String),
) -> DriverConfig {
    refuse_foreign_keys(router, field, &["netns", "table"], report);
    if let Some(netns) = &router.netns
        && let Err(message) = check_netns_name(netns)
    {
        report(format!("{field}.netns"), message);
    }
    let table = router.table.unwrap_or(254);
    if table == 0 || table == LOCAL_TABLE {
        report(
            format!("{field}.table"),
            format!(
                "{table} cannot hold nativeroute's routes (0 is 'unspecified', 255 is the kernel's local table); the default is 254 (main)"
            ),
        );
    }
    DriverConfig::Netlink {
        netns: router.netns.clone(),
        table,
    }
}

fn check_ssh(
    router: &RawRouter,
    field: &str,
    report: &mut impl FnMut(String, String),
) -> Option<DriverConfig> {
    refuse_foreign_keys(
        router,
        field,
        &[
            "netns",
            "vendor",
            "address",
            "username",
            "privateKeyFile",
            "knownHostsFile",
            "trustOnFirstUse",
            "saveConfig",
            "commitConfirm",
            "cliCommand",
            "connectTimeout",
            "authTimeout",
            "commandTimeout",
            "keepaliveInterval",
            "commitTimeout",
        ],
        report,
    );
    let mut required = |key: &str, value: Option<&str>, example: &str| {
        if value.is_none() {
            report(
                format!("{field}.{key}"),
                format!("the ssh driver needs {key} (e.g. {example})"),
            );
        }
    };
    required("vendor", router.vendor.as_deref(), "frr");
    required("address", router.address.as_deref(), "10.1.1.1:22");
    required("username", router.username.as_deref(), "netops");
    required(
        "privateKeyFile",
        router.private_key_file.as_deref().and_then(Path::to_str),
        "/etc/nativeroute/ssh/id_ed25519",
    );
    required(
        "knownHostsFile",
        router.known_hosts_file.as_deref().and_then(Path::to_str),
        "/etc/nativeroute/ssh/known_hosts: host keys are always verified",
    );
    let vendor = router.vendor.as_deref().and_then(|text| {
        text.parse::<VendorName>()
            .map_err(|message| report(format!("{field}.vendor"), message))
            .ok()
    });
    let (host, port) = router.address.as_deref().and_then(|text| {
        parse_address(text)
            .map_err(|message| report(format!("{field}.address"), message))
            .ok()
    })?;
    let username = router.username.clone()?;
    if username.is_empty()
        || username
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        report(
            format!("{field}.username"),
            format!("{username:?} is not a login name: no spaces or control characters"),
        );
    }
    let private_key_file = router.private_key_file.clone()?;
    if !private_key_file.is_file() {
        report(
            format!("{field}.privateKeyFile"),
            format!(
                "{} is not a readable file (mount the key there, e.g. from a Secret)",
                private_key_file.display()
            ),
        );
    }
    let known_hosts_file = router.known_hosts_file.clone()?;
    let trust_on_first_use = router.trust_on_first_use.unwrap_or(false);
    if !trust_on_first_use && !known_hosts_file.is_file() {
        report(
            format!("{field}.knownHostsFile"),
            format!(
                "{} is not a readable file; put the router's host key there (ssh-keyscan, then \
                 check the fingerprint), or set trustOnFirstUse: true in a lab",
                known_hosts_file.display()
            ),
        );
    }
    if let Some(netns) = &router.netns
        && let Err(message) = check_netns_name(netns)
    {
        report(format!("{field}.netns"), message);
    }
    let vendor = vendor?;
    let commit_confirm = router.commit_confirm.map(|d| d.0);
    check_commit_confirm(vendor, commit_confirm, field, report);
    let cli_command = router.cli_command.clone();
    if let Some(cli) = &cli_command {
        check_cli_command(vendor, cli, field, report);
    }
    let defaults = Timeouts::default();
    let connect = router.connect_timeout.map_or(defaults.connect, |d| d.0);
    let auth = router.auth_timeout.map_or(defaults.auth, |d| d.0);
    let command = router.command_timeout.map_or(defaults.command, |d| d.0);
    let keepalive = router
        .keepalive_interval
        .map_or(defaults.keepalive, |d| d.0);
    let commit = router.commit_timeout.map(|d| d.0);
    if commit.is_some() && !vendor.has_commit() {
        report(
            format!("{field}.commitTimeout"),
            format!("{vendor} has no commit or save typed at a prompt; use commandTimeout"),
        );
    }
    for (key, value) in [
        ("connectTimeout", connect),
        ("authTimeout", auth),
        ("commandTimeout", command),
        ("keepaliveInterval", keepalive),
        ("commitTimeout", commit.unwrap_or(command)),
    ] {
        if value.is_zero() {
            report(format!("{field}.{key}"), "must be longer than 0s".into());
        }
    }
    Some(DriverConfig::Ssh(Box::new(SshConfig {
        vendor,
        host,
        port,
        netns: router.netns.clone(),
        username,
        private_key_file,
        known_hosts_file,
        trust_on_first_use,
        save_config: router.save_config.unwrap_or(false),
        commit_confirm,
        cli_command,
        timeouts: Timeouts {
            connect,
            auth,
            command,
            keepalive,
            commit,
        },
    })))
}

fn check_bgp(
    router: &RawRouter,
    field: &str,
    report: &mut impl FnMut(String, String),
) -> Option<DriverConfig> {
    refuse_foreign_keys(
        router,
        field,
        &[
            "netns",
            "address",
            "localAs",
            "peerAs",
            "routerId",
            "holdTime",
            "gracefulRestart",
            "passwordFile",
            "connectTimeout",
        ],
        report,
    );
    let mut required = |key: &str, present: bool, example: &str| {
        if !present {
            report(
                format!("{field}.{key}"),
                format!("the bgp driver needs {key} (e.g. {example})"),
            );
        }
    };
    required("address", router.address.is_some(), "192.168.2.2");
    required("localAs", router.local_as.is_some(), "64512");
    required(
        "peerAs",
        router.peer_as.is_some(),
        "64512: equal to localAs for iBGP",
    );
    let address = router.address.as_deref().and_then(|text| {
        parse_bgp_address(text)
            .map_err(|message| report(format!("{field}.address"), message))
            .ok()
    });
    for (key, asn) in [("localAs", router.local_as), ("peerAs", router.peer_as)] {
        if let Some(asn) = asn
            && (asn == 0 || asn == u32::from(AS_TRANS) || asn == u32::MAX)
        {
            report(
                format!("{field}.{key}"),
                format!("{asn} is reserved (RFC 7607, RFC 6793, RFC 7300); use a real AS number"),
            );
        }
    }
    let router_id = router.router_id.as_deref().and_then(|text| {
        match text.parse::<Ipv4Addr>() {
            Ok(id) if !id.is_unspecified() => Some(id),
            _ => {
                report(
                    format!("{field}.routerId"),
                    format!("{text:?} is not a BGP identifier: a non-zero IPv4 address, e.g. 192.168.2.1"),
                );
                None
            }
        }
    });
    if router_id.is_none()
        && router.router_id.is_none()
        && address.is_some_and(|a: SocketAddr| a.is_ipv6())
    {
        report(
            format!("{field}.routerId"),
            "an IPv6 session has no IPv4 source address to take the BGP identifier from: set routerId"
                .into(),
        );
    }
    let hold_time = router
        .hold_time
        .map_or(BgpRouter::DEFAULT_HOLD_TIME, |d| d.0);
    if !hold_time.is_zero() && (hold_time < Duration::from_secs(3) || hold_time.as_secs() > 65_535)
    {
        report(
            format!("{field}.holdTime"),
            format!(
                "{} is not a hold time: 0s (no keepalives) or 3s to 65535s (RFC 4271 §4.2); the default is 90s",
                humantime::format_duration(hold_time)
            ),
        );
    }
    let graceful_restart = router
        .graceful_restart
        .map_or(BgpRouter::DEFAULT_GRACEFUL_RESTART, |d| d.0);
    // BGP counts both in whole seconds: 1.5s would be sent as 1s.
    for (key, value) in [
        ("holdTime", hold_time),
        ("gracefulRestart", graceful_restart),
    ] {
        if value.subsec_nanos() != 0 {
            report(
                format!("{field}.{key}"),
                format!(
                    "{} is not a whole number of seconds, which is all BGP can say",
                    humantime::format_duration(value)
                ),
            );
        }
    }
    if graceful_restart.as_secs() > 4095 {
        report(
            format!("{field}.gracefulRestart"),
            format!(
                "{} is longer than the 4095 s a restart time can say (RFC 4724); 0s turns graceful restart off",
                humantime::format_duration(graceful_restart)
            ),
        );
    }
    if let Some(file) = &router.password_file
        && !file.is_file()
    {
        report(
            format!("{field}.passwordFile"),
            format!(
                "{} is not a readable file (mount the TCP-MD5 password there, e.g. from a Secret)",
                file.display()
            ),
        );
    }
    if let Some(netns) = &router.netns
        && let Err(message) = check_netns_name(netns)
    {
        report(format!("{field}.netns"), message);
    }
    let connect_timeout = router
        .connect_timeout
        .map_or(BgpRouter::DEFAULT_CONNECT_TIMEOUT, |d| d.0);
    if connect_timeout.is_zero() {
        report(
            format!("{field}.connectTimeout"),
            "must be longer than 0s".into(),
        );
    }
    Some(DriverConfig::Bgp(Box::new(BgpConfig {
        address: address?,
        local_as: router.local_as?,
        peer_as: router.peer_as?,
        router_id,
        hold_time,
        graceful_restart,
        password_file: router.password_file.clone(),
        netns: router.netns.clone(),
        connect_timeout,
    })))
}

/// A BGP peer's address: an IP address, with a port when not 179. A name
/// is refused: the router's neighbor statement names an address, and a
/// name resolving elsewhere would open a session nobody configured.
fn parse_bgp_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, BgpRouter::DEFAULT_PORT));
    }
    text.parse::<SocketAddr>()
        .ok()
        .filter(|address| address.port() > 0)
        .ok_or_else(|| {
            format!(
                "{text:?} is not a BGP peer address: use an IP address, or IP:port and [IPv6]:port when the port is not 179"
            )
        })
}

fn check_commit_confirm(
    vendor: VendorName,
    commit_confirm: Option<Duration>,
    field: &str,
    report: &mut impl FnMut(String, String),
) {
    let Some(window) = commit_confirm else {
        return;
    };
    if !vendor.has_commit_confirm() {
        report(
            format!("{field}.commitConfirm"),
            format!("{vendor} has no confirmed commit; only junos and arista-eos do"),
        );
    } else if window < Duration::from_secs(60) || window > MAX_COMMIT_CONFIRM {
        report(
            format!("{field}.commitConfirm"),
            format!(
                "{} is out of range: between 1m and {}m (Junos counts whole minutes)",
                humantime::format_duration(window),
                MAX_COMMIT_CONFIRM.as_secs() / 60
            ),
        );
    }
}

fn check_cli_command(
    vendor: VendorName,
    cli: &str,
    field: &str,
    report: &mut impl FnMut(String, String),
) {
    if !vendor.has_cli_command() {
        report(
            format!("{field}.cliCommand"),
            format!("{vendor} logs in to its own CLI; cliCommand is for frr and linux"),
        );
    } else if cli.trim().is_empty() || cli.chars().any(char::is_control) {
        report(
            format!("{field}.cliCommand"),
            format!("{cli:?} is not a command line: one line, not empty"),
        );
    }
}

/// `host:port`, `[v6]:port`, a bare host or address (port 22).
fn parse_address(text: &str) -> Result<(String, u16), String> {
    let bad = || {
        format!(
            "{text:?} is not an SSH address: use host:port, [IPv6]:port or a bare host (port 22)"
        )
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        (host, port)
    } else if text.parse::<IpAddr>().is_ok() {
        (text, None)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => 22,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(bad)?,
    };
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if host.parse::<IpAddr>().is_err() && !is_name {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

fn check_plugin(
    router: &RawRouter,
    field: &str,
    report: &mut impl FnMut(String, String),
) -> Option<DriverConfig> {
    refuse_foreign_keys(router, field, &["command", "timeout"], report);
    let Some(command) = router.command.clone().filter(|c| !c.is_empty()) else {
        report(
            format!("{field}.command"),
            "the plugin driver needs command: the plugin's path and arguments, e.g. \
             [/usr/local/bin/nativeroute-myvendor]"
                .into(),
        );
        return None;
    };
    let program = Path::new(&command[0]);
    if !program.is_absolute() || !program.is_file() {
        report(
            format!("{field}.command[0]"),
            format!(
                "{:?} is not an executable file given by its absolute path",
                command[0]
            ),
        );
    }
    let timeout = router.timeout.map_or(DEFAULT_PLUGIN_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        report(format!("{field}.timeout"), "must be longer than 0s".into());
    }
    Some(DriverConfig::Plugin { command, timeout })
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn addresses_take_a_port_or_default_to_22() {
        assert_eq!(
            parse_address("10.1.1.1:2222"),
            Ok(("10.1.1.1".into(), 2222))
        );
        assert_eq!(parse_address("10.1.1.1"), Ok(("10.1.1.1".into(), 22)));
        assert_eq!(parse_address("[fd00::1]:22"), Ok(("fd00::1".into(), 22)));
        assert_eq!(parse_address("fd00::1"), Ok(("fd00::1".into(), 22)));
        assert_eq!(
            parse_address("tor-a.dc1.example"),
            Ok(("tor-a.dc1.example".into(), 22))
        );
        for bad in [
            "",
            "10.1.1.1:0",
            "10.1.1.1:99999",
            "a b:22",
            "[fd00::1",
            "x;reboot:22",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
