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
use nativeroute_tests::lab::{TestLab, router_routes, wait_until, write_atomically};
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
            sshd,
            frr,
            lab,
            _keys: keys,
        }
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
                have.values().all(|(_, protocol)| protocol == "196" || protocol == "static")
                    && have.iter().map(|(d, (v, _))| (*d, *v)).collect::<BTreeMap<_, _>>() == want
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
    lab.frr
        .vtysh(&["-c", "configure terminal", "-c", "ip route 11.11.9.0/24 192.168.3.4"])
        .expect("a foreign static route");
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
        &PINNED_INVENTORY
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
