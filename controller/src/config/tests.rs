use super::*;

const VALID: &str = r#"
pool:
  cidrs: [11.11.0.0/16]
  reserved: [11.11.0.0/24]
nodes:
  source: file
  file: /etc/nativeroute/nodes.yaml
resyncInterval: 30s
routers:
  - name: core-1
    driver: netlink
    netns: rtr
    table: 100
    nodeNetworks: [192.168.2.0/24, 192.168.3.0/24]
"#;

fn problems_of(text: &str) -> String {
    match Config::parse(text) {
        Ok(config) => panic!("expected the config to be refused, got {config:?}"),
        Err(problems) => problems.to_string(),
    }
}

#[test]
fn a_valid_config_is_read_with_its_defaults() {
    let config = Config::parse(VALID).expect("valid config");
    assert_eq!(config.pool.node_mask_v4, 24);
    assert_eq!(config.pool.node_mask_v6, 64);
    assert_eq!(config.ipam, IpamMode::Allocate);
    assert_eq!(config.resync_interval, Duration::from_secs(30));
    assert_eq!(config.ownership.netlink_protocol, 0xcb);
    assert_eq!(config.ownership.route_tag, 1111);
    assert_eq!(config.removal_guard.max_share, 0.5);
    let router = &config.routers[0];
    assert_eq!(router.name.as_str(), "core-1");
    assert_eq!(
        router.driver,
        DriverConfig::Netlink {
            netns: Some("rtr".into()),
            table: 100
        }
    );
    assert!(router.serves_next_hop("192.168.3.4".parse().expect("ip")));
    assert!(!router.serves_next_hop("192.168.4.4".parse().expect("ip")));
}

#[test]
fn a_malformed_cidr_names_the_field_and_the_value() {
    let text = VALID.replace("192.168.3.0/24]", "192.168.3.0/33]");
    let message = problems_of(&text);
    assert!(message.contains("routers[0].nodeNetworks[1]"), "{message}");
    assert!(message.contains("192.168.3.0/33"), "{message}");
}

#[test]
fn host_bits_in_a_cidr_are_refused_with_the_network_suggested() {
    let message = problems_of(&VALID.replace("cidrs: [11.11.0.0/16]", "cidrs: [11.11.0.5/16]"));
    assert!(message.contains("pool.cidrs[0]"), "{message}");
    assert!(message.contains("11.11.0.0/16"), "{message}");
}

#[test]
fn an_unknown_key_is_an_error_not_a_silent_default() {
    let message = problems_of(&VALID.replace("resyncInterval", "resyncIntervall"));
    assert!(message.contains("resyncIntervall"), "{message}");
}

#[test]
fn a_bad_duration_names_the_value() {
    let message = problems_of(&VALID.replace("30s", "thirty"));
    assert!(message.contains("resyncInterval"), "{message}");
    assert!(message.contains("thirty"), "{message}");
}

#[test]
fn a_reserved_range_covering_the_pool_is_refused() {
    let message = problems_of(&VALID.replace("reserved: [11.11.0.0/24]", "reserved: [11.0.0.0/8]"));
    assert!(message.contains("pool.reserved[0]"), "{message}");
    assert!(message.contains("11.0.0.0/8"), "{message}");
}

#[test]
fn a_reserved_range_outside_the_pool_is_refused() {
    let message =
        problems_of(&VALID.replace("reserved: [11.11.0.0/24]", "reserved: [10.0.0.0/24]"));
    assert!(message.contains("pool.reserved[0]"), "{message}");
    assert!(message.contains("outside every pool CIDR"), "{message}");
}

#[test]
fn overlapping_pool_cidrs_are_refused() {
    let message = problems_of(&VALID.replace(
        "cidrs: [11.11.0.0/16]",
        "cidrs: [11.11.0.0/16, 11.11.4.0/22]",
    ));
    assert!(message.contains("pool.cidrs[1]"), "{message}");
    assert!(message.contains("overlaps"), "{message}");
}

#[test]
fn a_node_mask_shorter_than_the_pool_is_refused() {
    let message = problems_of(&VALID.replace("reserved: [11.11.0.0/24]", "nodeMaskV4: 8"));
    assert!(message.contains("pool.cidrs[0]"), "{message}");
    assert!(message.contains("/8"), "{message}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = VALID
        .replace("table: 100", "table: 255")
        .replace("netns: rtr", "netns: ../etc")
        .replace("30s", "100ms");
    let message = problems_of(&text);
    assert!(message.contains("routers[0].table"), "{message}");
    assert!(message.contains("routers[0].netns"), "{message}");
    assert!(message.contains("resyncInterval"), "{message}");
}

#[test]
fn a_router_name_that_could_inject_is_refused() {
    let message = problems_of(&VALID.replace("name: core-1", "name: \"core-1; reload\""));
    assert!(message.contains("routers[0].name"), "{message}");
}

#[test]
fn duplicate_router_names_are_refused() {
    let text = format!("{VALID}  - name: core-1\n    driver: netlink\n");
    let message = problems_of(&text);
    assert!(message.contains("routers[1].name"), "{message}");
}

#[test]
fn an_unknown_driver_lists_the_known_ones() {
    let message = problems_of(&VALID.replace("driver: netlink", "driver: telnet"));
    assert!(message.contains("routers[0].driver"), "{message}");
    assert!(message.contains("telnet"), "{message}");
}

#[test]
fn a_file_source_without_a_file_is_refused() {
    let message = problems_of(&VALID.replace("  file: /etc/nativeroute/nodes.yaml\n", ""));
    assert!(message.contains("nodes.file"), "{message}");
}

#[test]
fn a_route_protocol_of_the_kernel_or_a_routing_daemon_cannot_be_claimed() {
    for (protocol, owner) in [
        (3, "boot"),
        (11, "zebra"),
        (12, "bird"),
        (186, "bgp"),
        (196, "static (FRR)"),
    ] {
        let text = format!("{VALID}ownership:\n  netlinkProtocol: {protocol}\n");
        let message = problems_of(&text);
        assert!(
            message.contains("ownership.netlinkProtocol") && message.contains(owner),
            "{message}"
        );
    }
    let free = format!("{VALID}ownership:\n  netlinkProtocol: 250\n");
    assert_eq!(
        Config::parse(&free).map(|c| c.ownership.netlink_protocol),
        Ok(250)
    );
}

#[test]
fn the_removal_guard_share_must_be_a_share() {
    let text = format!("{VALID}removalGuard:\n  maxShare: 1.5\n");
    let message = problems_of(&text);
    assert!(message.contains("removalGuard.maxShare"), "{message}");
}

#[test]
fn two_netlink_routers_on_one_kernel_are_refused() {
    let text =
        format!("{VALID}  - name: core-2\n    driver: netlink\n    netns: rtr\n    table: 101\n");
    let message = problems_of(&text);
    assert!(
        message.contains("routers[1].netns") && message.contains("routers[0]"),
        "{message}"
    );
    let elsewhere = format!("{VALID}  - name: core-2\n    driver: netlink\n    netns: rtr2\n");
    assert!(Config::parse(&elsewhere).is_ok());
}

/// A config with one SSH router whose key and known_hosts files exist.
fn ssh_config(dir: &std::path::Path, router_keys: &str) -> String {
    let key = dir.join("id_ed25519");
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&key, "key").expect("write key");
    std::fs::write(&known_hosts, "").expect("write known_hosts");
    format!(
        "pool:\n  cidrs: [11.11.0.0/16]\nnodes:\n  source: file\n  file: /n.yaml\nrouters:\n  \
         - name: tor-a\n    driver: ssh\n    address: 10.1.1.1:2222\n    username: netops\n    \
         privateKeyFile: {}\n    knownHostsFile: {}\n{router_keys}",
        key.display(),
        known_hosts.display()
    )
}

#[test]
fn an_ssh_router_is_read_with_its_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::parse(&ssh_config(
        dir.path(),
        "    vendor: frr\n    cliCommand: vtysh --vty_socket /run/frr-lab\n",
    ))
    .expect("valid ssh config");
    let DriverConfig::Ssh(ssh) = &config.routers[0].driver else {
        panic!("expected an ssh router, got {:?}", config.routers[0].driver);
    };
    assert_eq!(ssh.vendor.as_str(), "frr");
    assert_eq!((ssh.host.as_str(), ssh.port), ("10.1.1.1", 2222));
    assert!(!ssh.save_config);
    assert!(!ssh.trust_on_first_use);
    assert_eq!(
        ssh.cli_command.as_deref(),
        Some("vtysh --vty_socket /run/frr-lab")
    );
    assert_eq!(ssh.timeouts.connect, Duration::from_secs(10));
    assert_eq!(ssh.timeouts.auth, Duration::from_secs(10));
    assert_eq!(ssh.timeouts.command, Duration::from_secs(60));
    assert_eq!(ssh.timeouts.keepalive, Duration::from_secs(15));
}

#[test]
fn an_ssh_router_takes_each_timeout_on_its_own_and_refuses_a_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::parse(&ssh_config(
        dir.path(),
        "    vendor: frr\n    connectTimeout: 3s\n    authTimeout: 4s\n\
         \x20   commandTimeout: 5m\n    keepaliveInterval: 30s\n",
    ))
    .expect("valid ssh config");
    let DriverConfig::Ssh(ssh) = &config.routers[0].driver else {
        panic!("expected an ssh router, got {:?}", config.routers[0].driver);
    };
    assert_eq!(
        (
            ssh.timeouts.connect,
            ssh.timeouts.auth,
            ssh.timeouts.command,
            ssh.timeouts.keepalive
        ),
        (
            Duration::from_secs(3),
            Duration::from_secs(4),
            Duration::from_secs(300),
            Duration::from_secs(30)
        )
    );
    let message = problems_of(&ssh_config(
        dir.path(),
        "    vendor: frr
    authTimeout: 0s
",
    ));
    assert!(
        message.contains("routers[0].authTimeout") && message.contains("longer than 0s"),
        "{message}"
    );
}

#[test]
fn a_commit_timeout_is_taken_where_a_commit_is_typed_and_refused_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::parse(&ssh_config(
        dir.path(),
        "    vendor: junos\n    commitTimeout: 5m\n",
    ))
    .expect("valid ssh config");
    let DriverConfig::Ssh(ssh) = &config.routers[0].driver else {
        panic!("expected an ssh router, got {:?}", config.routers[0].driver);
    };
    assert_eq!(ssh.timeouts.commit, Some(Duration::from_secs(300)));
    let defaults =
        Config::parse(&ssh_config(dir.path(), "    vendor: junos\n")).expect("valid ssh config");
    let DriverConfig::Ssh(ssh) = &defaults.routers[0].driver else {
        panic!("expected an ssh router");
    };
    assert_eq!(ssh.timeouts.commit, None, "the vendor's own bound");
    let message = problems_of(&ssh_config(
        dir.path(),
        "    vendor: frr\n    commitTimeout: 5m\n",
    ));
    assert!(
        message.contains("routers[0].commitTimeout") && message.contains("frr has no commit"),
        "{message}"
    );
    let message = problems_of(&ssh_config(
        dir.path(),
        "    vendor: vyos\n    commitTimeout: 0s\n",
    ));
    assert!(
        message.contains("routers[0].commitTimeout") && message.contains("longer than 0s"),
        "{message}"
    );
}

#[test]
fn an_ssh_router_without_known_hosts_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = ssh_config(dir.path(), "    vendor: frr\n");
    let text = text.replace(
        &format!(
            "    knownHostsFile: {}\n",
            dir.path().join("known_hosts").display()
        ),
        "",
    );
    let message = problems_of(&text);
    assert!(message.contains("routers[0].knownHostsFile"), "{message}");
    assert!(message.contains("always verified"), "{message}");
}

#[test]
fn an_unknown_vendor_lists_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = problems_of(&ssh_config(dir.path(), "    vendor: nokia-sros\n"));
    assert!(message.contains("routers[0].vendor"), "{message}");
    assert!(
        message.contains("nokia-sros") && message.contains("cisco-ios"),
        "{message}"
    );
}

#[test]
fn a_key_of_another_driver_is_refused_not_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = problems_of(&ssh_config(dir.path(), "    vendor: frr\n    table: 100\n"));
    assert!(message.contains("routers[0].table"), "{message}");
    assert!(message.contains("ssh driver"), "{message}");
}

#[test]
fn commit_confirm_is_only_for_vendors_that_have_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = problems_of(&ssh_config(
        dir.path(),
        "    vendor: cisco-ios\n    commitConfirm: 5m\n",
    ));
    assert!(message.contains("routers[0].commitConfirm"), "{message}");
    let message = problems_of(&ssh_config(
        dir.path(),
        "    vendor: junos\n    commitConfirm: 10s\n",
    ));
    assert!(message.contains("out of range"), "{message}");
    Config::parse(&ssh_config(
        dir.path(),
        "    vendor: junos\n    commitConfirm: 5m\n",
    ))
    .expect("junos takes a commit confirmation window");
}

#[test]
fn a_multi_line_cli_command_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = problems_of(&ssh_config(
        dir.path(),
        "    vendor: frr\n    cliCommand: \"vtysh\\nreboot\"\n",
    ));
    assert!(message.contains("routers[0].cliCommand"), "{message}");
}

#[test]
fn a_missing_private_key_file_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = ssh_config(dir.path(), "    vendor: frr\n");
    std::fs::remove_file(dir.path().join("id_ed25519")).expect("remove key");
    let message = problems_of(&text);
    assert!(message.contains("routers[0].privateKeyFile"), "{message}");
    assert!(message.contains("id_ed25519"), "{message}");
}

#[test]
fn a_plugin_needs_an_absolute_executable() {
    let base = "pool:\n  cidrs: [11.11.0.0/16]\nnodes:\n  source: file\n  file: /n.yaml\nrouters:\n  - name: lab-plugin\n    driver: plugin\n";
    let message = problems_of(&format!("{base}    command: [nativeroute-myvendor]\n"));
    assert!(message.contains("routers[0].command[0]"), "{message}");
    let message = problems_of(base);
    assert!(message.contains("routers[0].command"), "{message}");
    let config = Config::parse(&format!(
        "{base}    command: [/bin/true, --flag]\n    timeout: 5s\n"
    ))
    .expect("valid plugin config");
    assert_eq!(
        config.routers[0].driver,
        DriverConfig::Plugin {
            command: vec!["/bin/true".into(), "--flag".into()],
            timeout: Duration::from_secs(5)
        }
    );
}

#[test]
fn pod_cidr_mode_with_a_file_inventory_is_refused_naming_both_fields() {
    let message = problems_of(&VALID.replace("nodes:", "ipam: podCIDR\nnodes:"));
    assert!(message.contains("ipam:"), "{message}");
    assert!(message.contains("podCIDR"), "{message}");
    assert!(message.contains("nodes.source is file"), "{message}");
    let kubernetes = VALID
        .replace("nodes:", "ipam: podCIDR\nnodes:")
        .replace("source: file", "source: kubernetes")
        .replace("  file: /etc/nativeroute/nodes.yaml\n", "");
    let config = Config::parse(&kubernetes).expect("podCIDR with Kubernetes Nodes");
    assert_eq!(config.ipam, IpamMode::PodCidr);
}

#[test]
fn the_state_file_sits_beside_the_inventory_unless_nodes_state_file_says_elsewhere() {
    let config = Config::parse(VALID).expect("valid config");
    let NodesConfig::File { path } = &config.nodes else {
        panic!("a file inventory: {:?}", config.nodes);
    };
    assert_eq!(
        path.state,
        Path::new("/etc/nativeroute/nodes.yaml.state.json")
    );
    let moved = VALID.replace(
        "  file: /etc/nativeroute/nodes.yaml\n",
        "  file: /etc/nativeroute/nodes.yaml\n  stateFile: /var/lib/nativeroute/state.json\n",
    );
    let config = Config::parse(&moved).expect("valid config");
    let NodesConfig::File { path } = &config.nodes else {
        panic!("a file inventory: {:?}", config.nodes);
    };
    assert_eq!(path.inventory, Path::new("/etc/nativeroute/nodes.yaml"));
    assert_eq!(path.state, Path::new("/var/lib/nativeroute/state.json"));
}

#[test]
fn a_state_file_that_is_the_inventory_or_no_file_or_without_a_file_source_is_refused() {
    let with_state = |state: &str| {
        VALID.replace(
            "  file: /etc/nativeroute/nodes.yaml\n",
            &format!("  file: /etc/nativeroute/nodes.yaml\n  stateFile: {state}\n"),
        )
    };
    let message = problems_of(&with_state("/etc/nativeroute/nodes.yaml"));
    assert!(message.contains("nodes.stateFile"), "{message}");
    assert!(message.contains("overwrite the inventory"), "{message}");
    let message = problems_of(&with_state("/var/lib/nativeroute/"));
    assert!(message.contains("nodes.stateFile"), "{message}");
    assert!(message.contains("/var/lib/nativeroute/"), "{message}");
    let message = problems_of(
        &with_state("/var/lib/nativeroute/state.json")
            .replace("source: file", "source: kubernetes")
            .replace("  file: /etc/nativeroute/nodes.yaml\n", ""),
    );
    assert!(message.contains("nodes.stateFile"), "{message}");
    assert!(
        message.contains("/var/lib/nativeroute/state.json"),
        "{message}"
    );
}

const BGP_BASE: &str = "pool:\n  cidrs: [11.11.0.0/16]\nnodes:\n  source: file\n  file: /n.yaml\nrouters:\n  - name: core-bgp\n    driver: bgp\n";

#[test]
fn a_bgp_router_is_read_with_its_defaults_and_the_design_s_keys() {
    let config = Config::parse(&format!(
        "{BGP_BASE}    address: 192.168.2.2\n    localAs: 64512\n    peerAs: 64512\n    netns: mgmt\n    nodeNetworks: [192.168.2.0/24]\n"
    ))
    .expect("valid bgp config");
    let DriverConfig::Bgp(bgp) = &config.routers[0].driver else {
        panic!("a bgp router: {:?}", config.routers[0].driver);
    };
    assert_eq!(bgp.address, "192.168.2.2:179".parse().expect("address"));
    assert_eq!((bgp.local_as, bgp.peer_as), (64512, 64512));
    assert_eq!(bgp.hold_time, Duration::from_secs(90));
    assert_eq!(bgp.graceful_restart, Duration::from_secs(120));
    assert_eq!(bgp.router_id, None);
    assert_eq!(bgp.netns.as_deref(), Some("mgmt"));
    assert_eq!(config.ownership.bgp_community, (64512 << 16) | 1111);

    let config = Config::parse(&format!(
        "{BGP_BASE}    address: \"[fd00::2]:1179\"\n    localAs: 4200000001\n    peerAs: 65001\n    routerId: 10.0.0.1\n    holdTime: 9s\n    gracefulRestart: 0s\nownership:\n  bgpCommunity: \"65001:7\"\n"
    ))
    .expect("valid eBGP config");
    let DriverConfig::Bgp(bgp) = &config.routers[0].driver else {
        panic!("a bgp router");
    };
    assert_eq!(bgp.address, "[fd00::2]:1179".parse().expect("address"));
    assert_eq!(bgp.router_id, Some("10.0.0.1".parse().expect("address")));
    assert_eq!(bgp.hold_time, Duration::from_secs(9));
    assert!(bgp.graceful_restart.is_zero());
    assert_eq!(config.ownership.bgp_community, (65001 << 16) | 7);
}

#[test]
fn a_bgp_router_s_bad_values_are_each_named() {
    let message = problems_of(BGP_BASE);
    for key in ["address", "localAs", "peerAs"] {
        assert!(message.contains(&format!("routers[0].{key}")), "{message}");
    }
    let message = problems_of(&format!(
        "{BGP_BASE}    address: core.example.net\n    localAs: 23456\n    peerAs: 64512\n    holdTime: 2s\n    gracefulRestart: 2h\n    passwordFile: /nonexistent/bgp\n    table: 5\n"
    ));
    for expected in [
        "routers[0].address: \"core.example.net\" is not a BGP peer address",
        "routers[0].localAs: 23456 is reserved",
        "routers[0].holdTime",
        "routers[0].gracefulRestart",
        "routers[0].passwordFile",
        "routers[0].table: table is not a setting of the bgp driver",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let message = problems_of(&format!(
        "{BGP_BASE}    address: 192.168.2.2\n    localAs: 1\n    peerAs: 1\n    holdTime: 1500ms\n"
    ));
    assert!(
        message.contains("routers[0].holdTime: 1s 500ms is not a whole number of seconds"),
        "{message}"
    );
    let message = problems_of(&format!(
        "{BGP_BASE}    address: \"[fd00::2]:179\"\n    localAs: 1\n    peerAs: 2\n"
    ));
    assert!(message.contains("routers[0].routerId"), "{message}");
}

#[test]
fn a_bgp_community_must_be_asn_colon_value_outside_the_well_known_ranges() {
    let base = "pool:\n  cidrs: [11.11.0.0/16]\nnodes:\n  source: file\n  file: /n.yaml\nrouters:\n  - name: r\n    driver: netlink\nownership:\n  bgpCommunity: ";
    assert!(problems_of(&format!("{base}\"65535:1\"\n")).contains("ownership.bgpCommunity"));
    assert!(problems_of(&format!("{base}\"64512\"\n")).contains("is not a community"));
    assert!(problems_of(&format!("{base}\"64512:70000\"\n")).contains("is not a community"));
}
