//! The SSH driver against real routers: OpenSSH's sshd in a network
//! namespace, in front of real FRR (zebra, staticd, vtysh) or of a Linux
//! shell with iproute2. Routes are checked where they end up: in FRR's
//! configuration and in the router's kernel. Needs root, FRR and OpenSSH;
//! never skipped.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute_router_drivers::ssh::{
    HostKeyPolicy, SshDriver, SshRouter as SshRouterConfig, Timeouts, VendorName,
};
use nativeroute_router_drivers::{
    Change, ChangeError, DriverError, Fence, Ownership, Route, RouterDriver,
};
use nativeroute_tests::netns::run;
use nativeroute_tests::ssh_router::SshRouter;
use nativeroute_tests::sshd::{ClientKey, KeyKind};

/// Zebra installs static routes with this kernel protocol.
const ZEBRA_STATIC: &str = "196";

fn ownership() -> Ownership {
    Ownership {
        pool: vec!["11.11.0.0/16".parse().expect("pool")],
        netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
        route_tag: Ownership::DEFAULT_ROUTE_TAG,
        bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
    }
}

fn route(dst: &str, via: &str) -> Route {
    Route::new(
        dst.parse().expect("destination"),
        via.parse().expect("next hop"),
    )
}

/// The driver's config for `router`, logging in with `key`, connecting from
/// inside the router's namespace (where sshd listens).
fn config(router: &SshRouter, vendor: VendorName, key: &ClientKey) -> SshRouterConfig {
    let cli_command = match vendor {
        VendorName::Frr => Some(router.frr().expect("an FRR router").vtysh_command()),
        _ => None,
    };
    SshRouterConfig {
        name: "tor-a".to_owned(),
        vendor,
        host: router.address().ip().to_string(),
        port: router.address().port(),
        netns: Some(router.netns().to_owned()),
        username: router.user().to_owned(),
        private_key_file: key.private_key_path().to_path_buf(),
        host_keys: HostKeyPolicy {
            known_hosts_file: router.known_hosts_file().expect("known_hosts"),
            trust_on_first_use: false,
        },
        save_config: false,
        commit_confirm: None,
        cli_command,
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            auth: Duration::from_secs(5),
            command: Duration::from_secs(30),
            keepalive: Duration::from_secs(15),
            commit: None,
        },
        ownership: ownership(),
    }
}

async fn connect(router: &SshRouter, vendor: VendorName) -> SshDriver {
    SshDriver::connect(config(router, vendor, router.key(KeyKind::Ed25519)))
        .await
        .unwrap_or_else(|err| panic!("cannot connect: {err}\nsshd log:\n{}", router.sshd.log()))
}

/// Routes in the router's kernel with `protocol`, as destination → gateway.
fn kernel_routes(router: &SshRouter, protocol: &str) -> Vec<(IpNet, Option<IpAddr>)> {
    let json = run(
        "ip",
        &[
            "-n",
            router.netns(),
            "-j",
            "route",
            "show",
            "proto",
            protocol,
        ],
    );
    let routes: Vec<serde_json::Value> = serde_json::from_str(&json).expect("ip -j route");
    let mut found: Vec<(IpNet, Option<IpAddr>)> = routes
        .iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?.parse().ok()?;
            let via = r["gateway"].as_str().and_then(|g| g.parse().ok());
            Some((dst, via))
        })
        .collect();
    found.sort();
    found
}

/// Polls until the kernel holds exactly `want` with `protocol`.
async fn wait_for_kernel(router: &SshRouter, protocol: &str, want: &[Route]) {
    let mut want: Vec<(IpNet, Option<IpAddr>)> =
        want.iter().map(|r| (r.dst, Some(r.via))).collect();
    want.sort();
    let started = Instant::now();
    loop {
        let have = kernel_routes(router, protocol);
        if have == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the kernel never held {want:?}; it holds {have:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn sorted(mut routes: Vec<Route>) -> Vec<Route> {
    routes.sort();
    routes
}

fn accepted_logins(router: &SshRouter) -> usize {
    router.sshd.log().matches("Accepted publickey").count()
}

#[tokio::test]
async fn frr_routes_added_over_ssh_reach_frr_and_the_kernel_and_come_back_from_list() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut driver = connect(&router, VendorName::Frr).await;
    let routes = [
        route("11.11.1.0/24", "192.168.3.3"),
        route("11.11.2.0/24", "192.168.3.4"),
    ];
    let outcomes = driver.apply(&routes.map(Change::Add)).await.expect("batch");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    wait_for_kernel(&router, ZEBRA_STATIC, &routes).await;
    let config = router
        .frr()
        .expect("frr")
        .static_route_lines()
        .expect("config");
    assert!(
        config.contains(&"ip route 11.11.1.0/24 192.168.3.3 tag 1111".to_owned()),
        "{config:?}"
    );
    let listed = driver.list().await.expect("list");
    assert_eq!(sorted(listed.owned), sorted(routes.to_vec()));
    assert!(listed.foreign.is_empty(), "{:?}", listed.foreign);
    assert!(
        driver.describe().contains("SHA256:"),
        "{}",
        driver.describe()
    );
}

#[tokio::test]
async fn frr_replace_and_remove_leave_a_foreign_static_route_alone() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let frr = router.frr().expect("frr");
    frr.vtysh(&[
        "-c",
        "configure terminal",
        "-c",
        "ip route 11.11.9.0/24 192.168.3.4",
    ])
    .expect("foreign route");
    let mut driver = connect(&router, VendorName::Frr).await;
    let first = route("11.11.1.0/24", "192.168.3.3");
    driver.apply(&[Change::Add(first)]).await.expect("add");
    let moved = route("11.11.1.0/24", "192.168.3.4");
    let outcomes = driver
        .apply(&[Change::Replace {
            route: moved,
            old_via: first.via,
        }])
        .await
        .expect("replace");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let foreign = route("11.11.9.0/24", "192.168.3.4");
    wait_for_kernel(&router, ZEBRA_STATIC, &[moved, foreign]).await;
    let listed = driver.list().await.expect("list");
    assert_eq!(listed.owned, vec![moved]);
    assert_eq!(listed.foreign.len(), 1, "{:?}", listed.foreign);
    assert_eq!(listed.foreign[0].dst, foreign.dst);

    driver
        .apply(&[Change::Remove(moved)])
        .await
        .expect("remove");
    wait_for_kernel(&router, ZEBRA_STATIC, &[foreign]).await;
    assert_eq!(
        frr.static_route_lines().expect("config"),
        vec!["ip route 11.11.9.0/24 192.168.3.4".to_owned()]
    );
}

/// A controller whose term has ended sends nothing: the batch comes back
/// fenced and FRR holds none of it.
#[tokio::test]
async fn frr_gets_no_batch_once_the_term_has_ended() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut driver = connect(&router, VendorName::Frr).await;
    let (ended, term) = tokio::sync::watch::channel(false);
    ended.send_replace(true);
    let added = route("11.11.1.0/24", "192.168.3.3");

    let outcomes = driver
        .apply_fenced(&[Change::Add(added)], &Fence::new(term))
        .await
        .expect("a fenced batch is no failure of the router");

    assert_eq!(outcomes, vec![Err(ChangeError::Fenced { dst: added.dst })]);
    let frr = router.frr().expect("frr");
    assert_eq!(
        frr.static_route_lines().expect("config"),
        Vec::<String>::new()
    );
    assert_eq!(kernel_routes(&router, ZEBRA_STATIC), vec![]);
}

#[tokio::test]
async fn one_connection_serves_every_list_and_batch() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut driver = connect(&router, VendorName::Frr).await;
    for n in 1..=3u8 {
        let added = route(&format!("11.11.{n}.0/24"), "192.168.3.3");
        driver.list().await.expect("list");
        driver.apply(&[Change::Add(added)]).await.expect("add");
    }
    assert_eq!(accepted_logins(&router), 1, "{}", router.sshd.log());
}

#[tokio::test]
async fn frr_restarted_loses_its_routes_and_the_next_batch_puts_them_back() {
    let mut router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut driver = connect(&router, VendorName::Frr).await;
    let routes = [route("11.11.1.0/24", "192.168.3.3")];
    driver.apply(&routes.map(Change::Add)).await.expect("add");
    wait_for_kernel(&router, ZEBRA_STATIC, &routes).await;
    router
        .frr
        .as_mut()
        .expect("frr")
        .restart()
        .expect("restart FRR");
    // FRR keeps runtime configuration in memory only: after a restart the
    // route is gone, which the next list shows, and the sync adds it again.
    let listed = driver.list().await.expect("list after restart");
    assert!(listed.owned.is_empty(), "{:?}", listed.owned);
    let outcomes = driver
        .apply(&routes.map(Change::Add))
        .await
        .expect("add again");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    wait_for_kernel(&router, ZEBRA_STATIC, &routes).await;
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_before_anything_is_sent() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut config = config(&router, VendorName::Frr, router.key(KeyKind::Ed25519));
    let other =
        ClientKey::generate(&router.dir().join("impostor"), KeyKind::Ed25519).expect("another key");
    let key_text = other
        .public_key()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known_hosts = router.dir().join("wrong_known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{} {key_text}\n", router.address().ip()),
    )
    .expect("write known_hosts");
    config.host_keys.known_hosts_file = known_hosts.clone();
    let err = match SshDriver::connect(config).await {
        Ok(_) => panic!("a router with another host key was accepted"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(matches!(err, DriverError::HostKey { .. }), "{message}");
    assert!(
        message.contains("differs") && message.contains("SHA256:"),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}:1", known_hosts.display())),
        "{message}"
    );
    let log = router.sshd.log();
    assert!(
        !log.contains("publickey") && !log.contains("Accepted"),
        "credentials reached the router:\n{log}"
    );
}

#[tokio::test]
async fn an_unknown_host_is_refused_unless_trusted_on_first_use() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let empty = router.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write known_hosts");
    let mut config = config(&router, VendorName::Frr, router.key(KeyKind::Ed25519));
    config.host_keys.known_hosts_file = empty.clone();
    let err = SshDriver::connect(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, DriverError::HostKey { .. }), "{err}");
    assert!(err.to_string().contains("is not in"), "{err}");

    config.host_keys.trust_on_first_use = true;
    let driver = SshDriver::connect(config.clone()).await.expect("learned");
    let learned = std::fs::read_to_string(&empty).expect("read known_hosts");
    assert!(
        learned.contains(&router.sshd.host_key_public()),
        "{learned}"
    );
    drop(driver);
    // Learned once, verified from then on.
    config.host_keys.trust_on_first_use = false;
    let driver = SshDriver::connect(config).await.expect("verified");
    assert!(
        driver.describe().contains("verified against"),
        "{}",
        driver.describe()
    );
}

#[tokio::test]
async fn every_key_type_logs_in_and_a_key_the_router_does_not_know_is_refused() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    for kind in [KeyKind::Ed25519, KeyKind::Ecdsa, KeyKind::Rsa] {
        let mut driver = SshDriver::connect(config(&router, VendorName::Frr, router.key(kind)))
            .await
            .unwrap_or_else(|err| panic!("{kind:?} key: {err}"));
        driver
            .list()
            .await
            .unwrap_or_else(|err| panic!("{kind:?} key: {err}"));
    }
    let stranger = ClientKey::generate(&router.dir().join("stranger"), KeyKind::Ed25519)
        .expect("unauthorized key");
    let err = SshDriver::connect(config(&router, VendorName::Frr, &stranger))
        .await
        .err()
        .expect("an unknown key is refused");
    assert!(matches!(err, DriverError::Auth { .. }), "{err}");
    assert!(err.to_string().contains(router.user()), "{err}");
}

#[tokio::test]
async fn linux_over_ssh_adds_replaces_and_removes_routes_marked_with_our_protocol() {
    let router = SshRouter::start_linux().expect("Linux behind sshd");
    router.ip("route add 11.11.9.0/24 via 192.168.3.4");
    let mut driver = connect(&router, VendorName::Linux).await;
    let first = route("11.11.1.0/24", "192.168.3.3");
    let second = route("11.11.2.0/24", "192.168.3.3");
    let outcomes = driver
        .apply(&[Change::Add(first), Change::Add(second)])
        .await
        .expect("add");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let moved = route("11.11.2.0/24", "192.168.3.4");
    driver
        .apply(&[
            Change::Replace {
                route: moved,
                old_via: second.via,
            },
            Change::Remove(first),
        ])
        .await
        .expect("replace and remove");
    wait_for_kernel(&router, "203", &[moved]).await;
    let listed = driver.list().await.expect("list");
    assert_eq!(listed.owned, vec![moved]);
    assert_eq!(listed.foreign.len(), 1, "{:?}", listed.foreign);
    assert!(
        router
            .ip("route show 11.11.9.0/24")
            .contains("via 192.168.3.4")
    );
}

#[tokio::test]
async fn linux_stops_at_a_rejected_line_and_reports_it_for_that_route() {
    let router = SshRouter::start_linux().expect("Linux behind sshd");
    let mut driver = connect(&router, VendorName::Linux).await;
    let before = route("11.11.1.0/24", "192.168.3.3");
    // No connected network holds 10.99.0.1: the kernel refuses the route.
    let unreachable = route("11.11.2.0/24", "10.99.0.1");
    let after = route("11.11.3.0/24", "192.168.3.3");
    let outcomes = driver
        .apply(&[
            Change::Add(before),
            Change::Add(unreachable),
            Change::Add(after),
        ])
        .await
        .expect("the batch ran");
    assert_eq!(outcomes[0], Ok(()));
    assert!(
        matches!(&outcomes[1], Err(ChangeError::Refused { dst, message }) if *dst == unreachable.dst && !message.is_empty()),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Err(ChangeError::NotAttempted { dst, .. }) if *dst == after.dst),
        "{outcomes:?}"
    );
    wait_for_kernel(&router, "203", &[before]).await;
    // The next sync sends what was not attempted, on the same connection.
    let outcomes = driver.apply(&[Change::Add(after)]).await.expect("retry");
    assert_eq!(outcomes, vec![Ok(())]);
    wait_for_kernel(&router, "203", &[before, after]).await;
    assert_eq!(accepted_logins(&router), 1);
}

/// FRR 8.4 takes any well-formed static route line on its own; what it
/// refuses is a transaction that would give a route a gateway beside a
/// blackhole, and then it rejects every line vtysh grouped with it, with
/// exit status 0. Here the batch holds a replace and an add onto such a
/// blackhole (outside the pool, where the fresh list before the batch does
/// not look): both are reported refused with FRR's reason, and the
/// replaced route keeps its old next hop.
#[tokio::test]
async fn frr_rejecting_a_batch_keeps_the_old_next_hop_of_a_replace_and_reports_it_refused() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let frr = router.frr().expect("frr");
    let mut driver = connect(&router, VendorName::Frr).await;
    let ours = route("11.11.1.0/24", "192.168.3.3");
    let outcomes = driver.apply(&[Change::Add(ours)]).await.expect("add");
    assert_eq!(outcomes, vec![Ok(())]);
    wait_for_kernel(&router, ZEBRA_STATIC, &[ours]).await;
    frr.vtysh(&[
        "-c",
        "configure terminal",
        "-c",
        "ip route 10.77.0.0/24 Null0",
    ])
    .expect("a blackhole");

    let moved = route("11.11.1.0/24", "192.168.3.4");
    let beside_the_blackhole = route("10.77.0.0/24", "192.168.3.4");
    let outcomes = driver
        .apply(&[
            Change::Replace {
                route: moved,
                old_via: ours.via,
            },
            Change::Add(beside_the_blackhole),
        ])
        .await
        .expect("the batch ran");

    for (outcome, dst) in outcomes.iter().zip([moved.dst, beside_the_blackhole.dst]) {
        assert!(
            matches!(outcome, Err(ChangeError::Refused { dst: refused, message })
                if *refused == dst && message.contains("blackhole")),
            "{outcomes:?}"
        );
    }
    let config = frr.static_route_lines().expect("config");
    assert!(
        config.contains(&"ip route 11.11.1.0/24 192.168.3.3 tag 1111".to_owned())
            && !config.iter().any(|line| line.contains("192.168.3.4")),
        "{config:?}"
    );
    // Zebra would take a removal a moment after vtysh returned.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held: Vec<_> = kernel_routes(&router, ZEBRA_STATIC)
        .into_iter()
        .filter(|(dst, _)| *dst == ours.dst)
        .collect();
    assert_eq!(held, vec![(ours.dst, Some(ours.via))]);
}

/// FRR's `no ip route P H tag T` removes the route at P and H whatever its
/// tag. Since the last list someone wrote ours again as their own, without
/// the tag: the fresh list before the batch shows it foreign, so the
/// removal is not sent and their route stays.
#[tokio::test]
async fn frr_removal_leaves_a_route_rewritten_as_foreign_since_the_last_list() {
    let router = SshRouter::start_frr().expect("FRR behind sshd");
    let frr = router.frr().expect("frr");
    let mut driver = connect(&router, VendorName::Frr).await;
    let ours = route("11.11.1.0/24", "192.168.3.3");
    driver.apply(&[Change::Add(ours)]).await.expect("add");
    assert_eq!(driver.list().await.expect("list").owned, vec![ours]);
    frr.vtysh(&[
        "-c",
        "configure terminal",
        "-c",
        "no ip route 11.11.1.0/24 192.168.3.3 tag 1111",
        "-c",
        "ip route 11.11.1.0/24 192.168.3.3",
    ])
    .expect("the route rewritten by hand");

    let outcomes = driver
        .apply(&[Change::Remove(ours)])
        .await
        .expect("the batch ran");

    assert_eq!(outcomes, vec![Ok(())]);
    assert_eq!(
        frr.static_route_lines().expect("config"),
        vec!["ip route 11.11.1.0/24 192.168.3.3".to_owned()]
    );
    wait_for_kernel(&router, ZEBRA_STATIC, &[ours]).await;
}

/// The kernel refuses a gateway on no connected network. The new next hop
/// goes in before the old one is deleted, and `ip -batch` stops at the
/// refusal: the route keeps its old next hop.
#[tokio::test]
async fn linux_replace_onto_a_next_hop_the_kernel_refuses_keeps_the_old_route() {
    let router = SshRouter::start_linux().expect("Linux behind sshd");
    let mut driver = connect(&router, VendorName::Linux).await;
    let ours = route("11.11.1.0/24", "192.168.3.3");
    driver.apply(&[Change::Add(ours)]).await.expect("add");
    let unreachable = route("11.11.1.0/24", "10.99.0.1");

    let outcomes = driver
        .apply(&[Change::Replace {
            route: unreachable,
            old_via: ours.via,
        }])
        .await
        .expect("the batch ran");

    assert!(
        matches!(&outcomes[..], [Err(ChangeError::Refused { dst, message })]
            if *dst == ours.dst && message.contains("invalid gateway")),
        "{outcomes:?}"
    );
    wait_for_kernel(&router, "203", &[ours]).await;
}

/// The kernel lets a route sit beside ours with the same destination and
/// metric (`ip route prepend`), ahead of it; `ip route replace` would take
/// that one. A replace of ours leaves it as it was.
#[tokio::test]
async fn linux_replace_leaves_a_foreign_route_beside_ours_alone() {
    let router = SshRouter::start_linux().expect("Linux behind sshd");
    let mut driver = connect(&router, VendorName::Linux).await;
    let ours = route("11.11.1.0/24", "192.168.3.3");
    driver.apply(&[Change::Add(ours)]).await.expect("add");
    router.ip("route prepend 11.11.1.0/24 via 192.168.3.9");
    let moved = route("11.11.1.0/24", "192.168.3.4");

    let outcomes = driver
        .apply(&[Change::Replace {
            route: moved,
            old_via: ours.via,
        }])
        .await
        .expect("the batch ran");

    assert_eq!(outcomes, vec![Ok(())]);
    wait_for_kernel(&router, "203", &[moved]).await;
    assert_eq!(
        kernel_routes(&router, "boot"),
        vec![(moved.dst, Some("192.168.3.9".parse().expect("address")))]
    );
}

#[tokio::test]
async fn sshd_stopped_fails_the_call_and_the_driver_reconnects_when_it_is_back() {
    let mut router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut driver = connect(&router, VendorName::Frr).await;
    // stop() ends the listener and every session it accepted.
    router.sshd.stop().expect("stop sshd");
    let err = driver.list().await.expect_err("no router, no list");
    assert!(
        matches!(
            err,
            DriverError::Connect { .. } | DriverError::Session { .. }
        ),
        "{err}"
    );
    router.sshd.start_again().expect("start sshd");
    let listed = driver.list().await.expect("list after sshd came back");
    assert!(listed.owned.is_empty());
    assert_eq!(accepted_logins(&router), 2, "{}", router.sshd.log());
}

/// sshd stopped while a command runs: the channel is cut before the command
/// reports how it ended. That is a broken session (the next call connects
/// again), not an answer to read. FRR's daemons are frozen so that vtysh is
/// still waiting on them when sshd goes.
#[tokio::test]
async fn sshd_stopped_under_a_running_command_is_a_broken_session() {
    let mut router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut driver = connect(&router, VendorName::Frr).await;
    let daemons = router.frr.as_ref().expect("an FRR router").pids();
    let signal_daemons = |signal: &str| {
        for pid in &daemons {
            run("kill", &[signal, &pid.to_string()]);
        }
    };
    signal_daemons("-STOP");
    let listing = tokio::spawn(async move {
        let result = driver.list().await;
        (driver, result)
    });
    // Long enough for vtysh to be waiting on the frozen daemons.
    tokio::time::sleep(Duration::from_millis(700)).await;
    router.sshd.stop().expect("stop sshd");
    let (mut driver, result) = listing.await.expect("the listing task");
    signal_daemons("-CONT");

    let err = result.expect_err("the command was cut");
    assert!(matches!(err, DriverError::Session { .. }), "{err}");
    router.sshd.start_again().expect("start sshd");
    let listed = driver.list().await.expect("list after sshd came back");
    assert!(listed.owned.is_empty());
    assert_eq!(accepted_logins(&router), 2, "{}", router.sshd.log());
}

/// FRR without staticd shows no static route and takes new ones without a
/// word, dropping them: the list must say so rather than report an empty
/// router, and once staticd is back a batch goes through.
#[tokio::test]
async fn frr_without_staticd_fails_the_list_naming_it_and_recovers_when_it_is_back() {
    let mut router = SshRouter::start_frr().expect("FRR behind sshd");
    let mut driver = connect(&router, VendorName::Frr).await;
    let frr = router.frr.as_mut().expect("an FRR router");
    frr.stop_staticd().expect("stop staticd");

    let err = driver.list().await.expect_err("no staticd, no list");

    assert!(
        matches!(&err, DriverError::Output { .. })
            && err.to_string().contains("staticd is not running"),
        "{err}"
    );
    frr.start_staticd().expect("start staticd");
    let added = route("11.11.1.0/24", "192.168.3.3");
    let outcomes = driver.apply(&[Change::Add(added)]).await.expect("batch");
    assert_eq!(outcomes, vec![Ok(())]);
    wait_for_kernel(&router, ZEBRA_STATIC, &[added]).await;
    assert_eq!(driver.list().await.expect("list").owned, vec![added]);
    assert_eq!(
        accepted_logins(&router),
        1,
        "an output error kept the connection"
    );
}
