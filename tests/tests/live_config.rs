//! Live config on the real kernel: the controller's config file changes
//! while it runs (written the way a ConfigMap mount changes: a new file
//! swapped in by rename). A router added is programmed, a router removed is
//! left as it is, a bad config is refused by field with the old one kept,
//! and a change that cannot apply live is refused with its reason; the
//! process is the same one throughout.

use std::net::SocketAddr;
use std::time::Duration;

use nativeroute_tests::lab::{TestLab, http_get, router_routes, wait_until, write_atomically};
use nativeroute_tests::netns::Netns;

const SOON: Duration = Duration::from_secs(10);

const INVENTORY: &str = "nodes:\n\
  - {name: node1, address: 192.168.2.1, annotations: {nativeroute.io/subnet: 11.11.1.0/24}}\n\
  - {name: node2, address: 192.168.3.3, annotations: {nativeroute.io/subnet: 11.11.2.0/24}}\n\
  - {name: node3, address: 192.168.3.4, annotations: {nativeroute.io/subnet: 11.11.3.0/24}}\n";

fn reload_success(metrics: SocketAddr) -> Option<String> {
    let (_, body) = http_get(metrics, "/metrics")?;
    body.lines()
        .find(|line| line.starts_with("nativeroute_config_last_reload_success "))
        .map(|line| line.rsplit(' ').next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn routers_come_and_go_with_the_config_file_and_a_bad_config_changes_nothing() {
    let lab = TestLab::create(Duration::from_secs(2)).await;
    lab.write_inventory(INVENTORY);
    // A second router: a namespace of its own on both node segments.
    let second = Netns::new();
    second.add_connected_network("seg2", "192.168.2.250/24");
    second.add_connected_network("seg3", "192.168.3.250/24");
    let original = format!(
        "pool: {{cidrs: [11.11.0.0/16], reserved: [11.11.0.0/24]}}\n\
         nodes: {{source: file, file: {}}}\n\
         resyncInterval: 2s\n\
         routers:\n  - {{name: rtr, driver: netlink, netns: {}, nodeNetworks: [192.168.2.0/24, 192.168.3.0/24]}}\n",
        lab.inventory_path().display(),
        lab.router_netns()
    );
    write_atomically(&lab.config, &original);
    let (mut controller, metrics) = lab.start_controller_with_metrics();
    let rtr = lab.router_netns().to_owned();
    wait_until("the lab router is programmed", SOON, async || {
        router_routes(&rtr).len() == 3
    })
    .await;
    let pid = controller.pid();

    let with_second = format!(
        "{original}  - {{name: second, driver: netlink, netns: {}, nodeNetworks: [192.168.2.0/24, 192.168.3.0/24]}}\n",
        second.name()
    );
    write_atomically(&lab.config, &with_second);
    wait_until("the added router is programmed", SOON, async || {
        router_routes(second.name()).len() == 3
    })
    .await;
    assert_eq!(reload_success(metrics).as_deref(), Some("1"));

    write_atomically(
        &lab.config,
        &with_second.replace("resyncInterval: 2s", "resyncInterval: -1s"),
    );
    wait_until("the bad config is refused", SOON, async || {
        reload_success(metrics).as_deref() == Some("0")
    })
    .await;
    let log = controller.log();
    assert!(
        log.contains("the changed config is refused") && log.contains("resyncInterval: \"-1s\""),
        "the refusal does not name the field:\n{log}"
    );

    write_atomically(
        &lab.config,
        &with_second
            .replace("11.11.0.0/16", "12.12.0.0/16")
            .replace("11.11.0.0/24", "12.12.0.0/24"),
    );
    wait_until(
        "a pool without the assigned subnets is refused",
        SOON,
        async || controller.log().contains("cannot apply while running"),
    )
    .await;
    assert_eq!(router_routes(&rtr).len(), 3);

    // The second router leaves the config: its routes are left as they are.
    write_atomically(&lab.config, &original);
    wait_until("a term with the lab router alone runs", SOON, async || {
        let log = controller.log();
        log.matches("controller started").count() == 3 && log.contains("routers=1")
    })
    .await;
    lab.write_inventory(&INVENTORY.replace("192.168.3.4", "192.168.3.5"));
    wait_until("the lab router follows the inventory", SOON, async || {
        router_routes(&rtr)
            .get(&"11.11.3.0/24".parse().expect("cidr"))
            .and_then(|(via, _)| *via)
            == Some("192.168.3.5".parse().expect("ip"))
    })
    .await;
    let on_second = router_routes(second.name());
    assert_eq!(on_second.len(), 3, "the removed router was changed");
    assert_eq!(
        on_second
            .get(&"11.11.3.0/24".parse().expect("cidr"))
            .and_then(|(via, _)| *via),
        Some("192.168.3.4".parse().expect("ip")),
        "the removed router followed the inventory"
    );
    controller.assert_running();
    assert_eq!(controller.pid(), pid);
}
