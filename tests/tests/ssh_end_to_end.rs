//! The controller end to end with FRR over SSH as the router: the seed-000
//! lab, with real FRR (zebra, staticd) in the router's namespace behind a
//! real sshd, and the nativeroute binary programming it through vtysh.
//! Routes are checked in the router's kernel, where zebra puts them, and by
//! containers pinging each other across the router.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute_tests::frr::Frr;
use nativeroute_tests::lab::{
    TestLab, router_routes, run_nativeroute, wait_until, write_atomically,
};
use nativeroute_tests::netns::run;
use nativeroute_tests::ssh_router::ensure_vty_user;
use nativeroute_tests::sshd::{ClientKey, KeyKind, Sshd};

const RESYNC: Duration = Duration::from_secs(2);
const SOON: Duration = Duration::from_secs(15);
/// The router's address on node1's segment; sshd listens there.
const ROUTER_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);

const PINNED_INVENTORY: &str = "
nodes:
  - name: node1
    address: 192.168.2.1
    annotations:
      nativeroute.io/subnet: 11.11.1.0/24
  - name: node2
    address: 192.168.3.3
    annotations:
      nativeroute.io/subnet: 11.11.2.0/24
  - name: node3
    address: 192.168.3.4
    annotations:
      nativeroute.io/subnet: 11.11.3.0/24
";

/// The seed lab with FRR behind sshd as its router. Dropped in field order:
/// sshd and FRR stop before the lab's namespaces go.
struct FrrLab {
    known_hosts: std::path::PathBuf,
    sshd: Sshd,
    frr: Frr,
    lab: TestLab,
    _keys: tempfile::TempDir,
}

impl FrrLab {
    async fn create() -> FrrLab {
        let lab = TestLab::create(RESYNC).await;
        lab.write_inventory(PINNED_INVENTORY);
        lab.attach_containers(&seed_subnets()).await;
        let keys = tempfile::tempdir().expect("a directory for keys");
        let frr = Frr::start(lab.router_netns(), &keys.path().join("frr")).expect("FRR");
        let user = ensure_vty_user().expect("the vty user");
        let key = ClientKey::generate(&keys.path().join("client"), KeyKind::Ed25519)
            .expect("a client key");
        let sshd = Sshd::start(
            lab.router_netns(),
            SocketAddr::new(IpAddr::V4(ROUTER_ADDRESS), 22),
            &keys.path().join("sshd"),
            &[(user, &key)],
        )
        .expect("sshd");
        let known_hosts = sshd.known_hosts_file().expect("known_hosts");
        let config = format!(
            "pool:\n  cidrs: [11.11.0.0/16]\n  reserved: [11.11.0.0/24]\n\
             nodes:\n  source: file\n  file: {inventory}\n\
             resyncInterval: 2s\n\
             routers:\n  - name: rtr\n    driver: ssh\n    vendor: frr\n    netns: {netns}\n    \
             address: {ROUTER_ADDRESS}:22\n    username: {user}\n    privateKeyFile: {key}\n    \
             knownHostsFile: {known_hosts}\n    cliCommand: \"{cli}\"\n    connectTimeout: 3s\n    \
             commandTimeout: 20s\n    nodeNetworks: [192.168.2.0/24, 192.168.3.0/24]\n",
            inventory = lab.inventory_path().display(),
            netns = lab.router_netns(),
            key = key.private_key_path().display(),
            known_hosts = known_hosts.display(),
            cli = frr.vtysh_command(),
        );
        write_atomically(&lab.config, &config);
        FrrLab {
            known_hosts,
            sshd,
            frr,
            lab,
            _keys: keys,
        }
    }

    /// `ip route 11.11.9.0/24 192.168.3.4` in FRR, without nativeroute's tag.
    fn add_foreign_route(&self) {
        self.frr
            .vtysh(&[
                "-c",
                "configure terminal",
                "-c",
                "ip route 11.11.9.0/24 192.168.3.4",
            ])
            .expect("a foreign static route");
    }

    fn config_path(&self) -> &str {
        self.lab.config.to_str().expect("a UTF-8 config path")
    }

    /// Has the controller start the CLI through `cli_command` instead of
    /// plain vtysh (same sockets and config directory).
    fn use_cli_command(&self, cli_command: &str) {
        let text = std::fs::read_to_string(&self.lab.config).expect("the config");
        let vtysh = self.frr.vtysh_command();
        let wrapped = vtysh.replacen("vtysh", cli_command, 1);
        write_atomically(&self.lab.config, &text.replace(&vtysh, &wrapped));
    }

    fn routes(&self) -> BTreeMap<IpNet, (Option<IpAddr>, String)> {
        router_routes(self.lab.router_netns())
    }

    /// Waits until the router's kernel holds exactly `want` (destination,
    /// next hop), every one installed by zebra as a static route.
    async fn wait_for_routes(&self, want: &[(&str, &str)], within: Duration) {
        let want: BTreeMap<IpNet, Option<IpAddr>> = want
            .iter()
            .map(|(dst, via)| (net(dst), Some(via.parse().expect("next hop"))))
            .collect();
        let netns = self.lab.router_netns().to_owned();
        wait_until(
            &format!("the router's kernel holds {want:?} from FRR"),
            within,
            async || {
                let have = router_routes(&netns);
                have.values()
                    .all(|(_, protocol)| protocol == "196" || protocol == "static")
                    && have
                        .iter()
                        .map(|(d, (v, _))| (*d, *v))
                        .collect::<BTreeMap<_, _>>()
                        == want
            },
        )
        .await;
    }
}

fn net(text: &str) -> IpNet {
    text.parse().expect("cidr")
}

fn seed_subnets() -> BTreeMap<String, IpNet> {
    [
        ("node1", "11.11.1.0/24"),
        ("node2", "11.11.2.0/24"),
        ("node3", "11.11.3.0/24"),
    ]
    .into_iter()
    .map(|(node, subnet)| (node.to_owned(), net(subnet)))
    .collect()
}

const SEED_ROUTES: [(&str, &str); 3] = [
    ("11.11.1.0/24", "192.168.2.1"),
    ("11.11.2.0/24", "192.168.3.3"),
    ("11.11.3.0/24", "192.168.3.4"),
];

#[tokio::test(flavor = "multi_thread")]
async fn containers_reach_each_other_through_frr_programmed_over_ssh() {
    let lab = FrrLab::create().await;
    assert!(
        !lab.lab.pings("node1", "node3").await,
        "node1 reached node3 with no route on the router"
    );
    let mut controller = lab.lab.start_controller();
    lab.wait_for_routes(&SEED_ROUTES, SOON).await;
    controller.assert_running();
    let config = lab.frr.static_route_lines().expect("FRR's config");
    assert!(
        config.contains(&"ip route 11.11.3.0/24 192.168.3.4 tag 1111".to_owned()),
        "{config:?}"
    );
    for (from, to) in [("node1", "node3"), ("node3", "node1"), ("node2", "node1")] {
        assert!(lab.lab.pings(from, to).await, "{from} cannot reach {to}");
    }
    // One SSH login served every sync.
    assert_eq!(lab.sshd.log().matches("Accepted publickey").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_removed_in_frr_by_hand_comes_back_and_a_foreign_one_stays() {
    let lab = FrrLab::create().await;
    lab.add_foreign_route();
    let controller = lab.lab.start_controller();
    let mut want = SEED_ROUTES.to_vec();
    want.push(("11.11.9.0/24", "192.168.3.4"));
    lab.wait_for_routes(&want, SOON).await;
    let repairs_before = controller.log().matches("added=1 ").count();
    lab.frr
        .vtysh(&[
            "-c",
            "configure terminal",
            "-c",
            "no ip route 11.11.2.0/24 192.168.3.3 tag 1111",
        ])
        .expect("remove a route by hand");
    wait_until(
        "a resync puts the route back",
        RESYNC * 3 + SOON,
        async || controller.log().matches("added=1 ").count() > repairs_before,
    )
    .await;
    lab.wait_for_routes(&want, SOON).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn frr_restarted_gets_its_routes_back_at_the_next_resync() {
    let mut lab = FrrLab::create().await;
    let _controller = lab.lab.start_controller();
    lab.wait_for_routes(&SEED_ROUTES, SOON).await;
    lab.frr.restart().expect("restart FRR");
    lab.wait_for_routes(&SEED_ROUTES, RESYNC * 3 + SOON).await;
    assert!(lab.lab.pings("node1", "node3").await);
}

/// sshd gone for 60 s: routes already on the router stay and forward, the
/// controller retries with growing pauses instead of hammering the router,
/// and once sshd is back the changes made meanwhile go through.
#[tokio::test(flavor = "multi_thread")]
async fn sshd_down_for_a_minute_is_retried_with_backoff_and_then_converges() {
    let mut lab = FrrLab::create().await;
    let controller = lab.lab.start_controller();
    lab.wait_for_routes(&SEED_ROUTES, SOON).await;
    lab.sshd.stop().expect("stop sshd");
    let down_at = Instant::now();
    // node3 leaves while the router is unreachable.
    lab.lab.write_inventory(
        PINNED_INVENTORY
            .split("  - name: node3")
            .next()
            .expect("inventory without node3"),
    );
    while down_at.elapsed() < Duration::from_secs(60) {
        assert_eq!(lab.routes().len(), 3, "a route changed while sshd was away");
        assert!(lab.lab.pings("node1", "node2").await, "forwarding stopped");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let attempts = controller.log().matches("sync failed").count();
    // Backoff from 0.2 s doubling to 30 s: about 9 attempts in a minute
    // (the resync adds none while failing). A tight loop would be thousands.
    assert!(
        (4..=20).contains(&attempts),
        "{attempts} attempts in 60 s:\n{}",
        controller.log()
    );
    lab.sshd.start_again().expect("start sshd");
    // The next retry is at most 30 s away.
    lab.wait_for_routes(&SEED_ROUTES[..2], Duration::from_secs(45))
        .await;
    assert!(lab.lab.pings("node1", "node2").await);
}

/// The SHA256 fingerprint of sshd's host key, as `ssh-keygen -l` shows it.
fn host_key_fingerprint(sshd: &Sshd, dir: &std::path::Path) -> String {
    let path = dir.join("host_key.pub");
    std::fs::write(&path, sshd.host_key_public() + "\n").expect("the host key is written");
    let listed = run(
        "ssh-keygen",
        &["-l", "-f", path.to_str().expect("UTF-8 path")],
    );
    listed
        .split_whitespace()
        .nth(1)
        .expect("ssh-keygen -l prints a fingerprint")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_check_reach_frr_over_ssh_name_the_host_key_and_change_nothing() {
    let lab = FrrLab::create().await;
    lab.add_foreign_route();
    let frr_before = lab.frr.static_route_lines().expect("FRR's config");

    let (ok, plan) = run_nativeroute(&["plan", "--config", lab.config_path()]);

    assert!(ok, "{plan}");
    assert!(
        plan.contains("router rtr: 3 to add, 0 to replace, 0 to remove"),
        "{plan}"
    );
    assert!(
        plan.contains("+ add 11.11.3.0/24 via 192.168.3.4"),
        "{plan}"
    );
    assert!(plan.contains("= foreign 11.11.9.0/24"), "{plan}");
    assert_eq!(
        lab.frr.static_route_lines().expect("FRR's config"),
        frr_before
    );
    assert!(!lab.lab.state_path().exists(), "plan wrote the state file");

    let (ok, check) = run_nativeroute(&["check", "--config", lab.config_path()]);

    assert!(ok, "{check}");
    let fingerprint = host_key_fingerprint(&lab.sshd, lab._keys.path());
    assert!(
        check.contains("router rtr: ok")
            && check.contains(&format!("host key {fingerprint} verified")),
        "check does not name the host key {fingerprint}:\n{check}"
    );
    assert!(
        check.contains("0 owned routes, 1 foreign routes"),
        "{check}"
    );
    assert_eq!(
        lab.frr.static_route_lines().expect("FRR's config"),
        frr_before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_a_router_whose_host_key_changed_before_logging_in() {
    let lab = FrrLab::create().await;
    let other = ClientKey::generate(&lab._keys.path().join("impostor"), KeyKind::Ed25519)
        .expect("another key");
    std::fs::write(
        &lab.known_hosts,
        format!("{ROUTER_ADDRESS} {}\n", other.public_key().trim()),
    )
    .expect("known_hosts with another key");
    let logins = lab.sshd.log().matches("publickey").count();

    let (ok, check) = run_nativeroute(&["check", "--config", lab.config_path()]);

    assert!(!ok, "{check}");
    assert!(
        check.contains("router rtr: FAILED") && check.contains("differs from the one recorded"),
        "{check}"
    );
    // Not even a key was offered: sshd logged no publickey attempt.
    assert_eq!(
        lab.sshd.log().matches("publickey").count(),
        logins,
        "{}",
        lab.sshd.log()
    );
    assert!(
        lab.frr
            .static_route_lines()
            .expect("FRR's config")
            .is_empty()
    );
}

/// Values an attacker (or a typo) could put in the inventory: CLI lines,
/// shell syntax, extra route words. The recording wrapper shows every byte
/// the router's CLI received; only typed routes may be among them.
const HOSTILE_INVENTORY: &str = r#"
nodes:
  - name: node1
    address: 192.168.2.1
    annotations:
      nativeroute.io/subnet: 11.11.1.0/24
  - name: node2
    address: 192.168.3.3
    annotations:
      nativeroute.io/subnet: "11.11.2.0/24 192.168.3.9 tag 1111\nip route 0.0.0.0/0 192.168.3.9"
      nativeroute.io/next-hop: "192.168.3.3'; touch /tmp/nrt-pwned; echo '"
      nativeroute.io/routers: "rtr\nend\nwrite memory"
  - name: "node3; reboot"
    address: 192.168.3.4
  - name: node4
    address: "192.168.3.5 tag 9 | vtysh -c 'write memory'"
"#;

/// A cliCommand that appends its arguments and its input to `log`, then
/// runs vtysh with them: what the router's CLI was given, byte for byte.
fn recording_vtysh(dir: &std::path::Path, log: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("recording-vtysh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf 'ARGS %s\\n' \"$*\" >> {log}\ntee -a {log} | /usr/bin/vtysh \"$@\"\n",
            log = log.display()
        ),
    )
    .expect("the wrapper is written");
    std::fs::write(log, "").expect("the log is created");
    // The vty user runs the wrapper and writes the log.
    for (path, mode) in [(dir, 0o755), (script.as_path(), 0o755), (log, 0o666)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    script
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inventory_values_never_reach_the_routers_cli() {
    let lab = FrrLab::create().await;
    let dir = tempfile::tempdir().expect("a directory for the wrapper");
    let log = dir.path().join("cli.log");
    let wrapper = recording_vtysh(dir.path(), &log);
    lab.use_cli_command(wrapper.to_str().expect("UTF-8 path"));
    lab.lab.write_inventory(HOSTILE_INVENTORY);

    let controller = lab.lab.start_controller();

    // node1 as pinned; node2 with its bad values ignored: a fresh subnet,
    // its own address as the next hop, every router serving it.
    wait_until("node1 and node2 are routed", SOON, async || {
        let routes = lab.routes();
        routes.len() == 2
            && routes.get(&net("11.11.1.0/24")).map(|r| r.0) == Some(Some(ip("192.168.2.1")))
            && routes
                .values()
                .filter(|r| r.0 == Some(ip("192.168.3.3")))
                .count()
                == 1
    })
    .await;
    let log_text = controller.log();
    for refused in [
        "nativeroute.io/subnet",
        "nativeroute.io/next-hop",
        "nativeroute.io/routers",
    ] {
        assert!(
            log_text.contains(refused),
            "{refused} was not refused:\n{log_text}"
        );
    }
    assert!(log_text.contains("InvalidInventoryEntry"), "{log_text}");
    let received = std::fs::read_to_string(&log).expect("the CLI log");
    assert!(
        received.lines().any(|line| line.starts_with("ip route ")),
        "{received}"
    );
    for line in received.lines().filter(|line| !line.starts_with("ARGS ")) {
        assert!(
            is_our_route_line(line),
            "the CLI received {line:?}:\n{received}"
        );
    }
    for fragment in [
        "0.0.0.0/0",
        "192.168.3.9",
        "192.168.3.5",
        "pwned",
        "reboot",
        "write memory",
        "tag 9",
    ] {
        assert!(
            !received.contains(fragment),
            "{fragment:?} reached the CLI:\n{received}"
        );
    }
    assert!(!std::path::Path::new("/tmp/nrt-pwned").exists());
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// Whether `line` is exactly one FRR static route line of nativeroute's:
/// `[no ]ip route A.B.C.D/N A.B.C.D tag 1111`, every value an address.
fn is_our_route_line(line: &str) -> bool {
    let words: Vec<&str> = line
        .strip_prefix("no ")
        .unwrap_or(line)
        .split(' ')
        .collect();
    matches!(words.as_slice(), ["ip", "route", dst, via, "tag", "1111"]
        if dst.parse::<IpNet>().is_ok() && via.parse::<IpAddr>().is_ok())
}

/// FRR keys a static route by prefix and next hop: had nativeroute written
/// `ip route 11.11.2.0/24 192.168.3.5 tag 1111` onto someone's untagged
/// route there, it would have made that route its own (and removed it
/// with the node). It leaves it untagged, drops its own stale route, and
/// says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_moving_onto_a_foreign_routes_next_hop_never_retags_it() {
    let lab = FrrLab::create().await;
    let controller = lab.lab.start_controller();
    lab.wait_for_routes(&SEED_ROUTES, SOON).await;
    lab.frr
        .vtysh(&[
            "-c",
            "configure terminal",
            "-c",
            "ip route 11.11.2.0/24 192.168.3.5",
        ])
        .expect("a foreign static route");

    lab.lab.write_inventory(&PINNED_INVENTORY.replace(
        "      nativeroute.io/subnet: 11.11.2.0/24",
        "      nativeroute.io/subnet: 11.11.2.0/24\n      nativeroute.io/next-hop: 192.168.3.5",
    ));

    let static_routes = || lab.frr.static_route_lines().expect("FRR's config");
    wait_until(
        "our stale route to node2's old next hop is gone",
        SOON,
        async || {
            !static_routes().contains(&"ip route 11.11.2.0/24 192.168.3.3 tag 1111".to_owned())
        },
    )
    .await;
    // Two resyncs later the foreign route is still exactly as it was written.
    tokio::time::sleep(RESYNC * 2).await;
    let lines = static_routes();
    assert!(
        lines.contains(&"ip route 11.11.2.0/24 192.168.3.5".to_owned()),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|line| line.starts_with("ip route 11.11.2.0/24 192.168.3.5 tag")),
        "the foreign route was retagged: {lines:?}"
    );
    assert!(
        controller.log().contains("not programmed"),
        "{}",
        controller.log()
    );
}

/// A second route with nativeroute's tag to a destination it already
/// routes (a replace whose `no ip route` was refused, or a hand-made copy)
/// is removed at the next resync; the one to the node stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_tagged_route_to_a_nodes_subnet_is_removed_at_the_next_resync() {
    let lab = FrrLab::create().await;
    let _controller = lab.lab.start_controller();
    lab.wait_for_routes(&SEED_ROUTES, SOON).await;
    // Listed before the node's own route (FRR sorts next hops), so a view
    // that kept one route per destination would keep the right one and
    // never see this one.
    let stale = "ip route 11.11.2.0/24 192.168.3.1 tag 1111";
    lab.frr
        .vtysh(&["-c", "configure terminal", "-c", stale])
        .expect("a second tagged route");

    let static_routes = || lab.frr.static_route_lines().expect("FRR's config");
    wait_until("the second route is gone", RESYNC * 3 + SOON, async || {
        !static_routes().contains(&stale.to_owned())
    })
    .await;
    assert!(
        static_routes().contains(&"ip route 11.11.2.0/24 192.168.3.3 tag 1111".to_owned()),
        "{:?}",
        static_routes()
    );
    lab.wait_for_routes(&SEED_ROUTES, SOON).await;
}
