//! The plugin driver: against a real kernel through the example plugin
//! (router-drivers/plugins/iproute2-example, each test in its own network
//! namespace with 192.168.2.2/24 on p3p1), and against tiny throwaway
//! plugins that misbehave on purpose. Runs as root; never skipped.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute_router_drivers::plugin::{PluginDriver, PluginRouter};
use nativeroute_router_drivers::{
    Change, ChangeError, ChangeOutcome, DriverError, Fence, ForeignRoute, Ownership, Route,
    RouterDriver,
};
use nativeroute_tests::lab::run_nativeroute;
use nativeroute_tests::netns::{Netns, require_root, run};
use serde_json::Value;

const EXAMPLE_PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../router-drivers/plugins/iproute2-example"
);
/// The example plugin's protocol number for its routes (its default).
const EXAMPLE_PROTO: &str = "204";
const TIMEOUT: Duration = Duration::from_secs(20);

fn net(text: &str) -> IpNet {
    text.parse().expect("a CIDR")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn route(dst: &str, via: &str) -> Route {
    Route::new(net(dst), ip(via))
}

fn plugin_router(command: Vec<String>, timeout: Duration) -> PluginRouter {
    PluginRouter {
        name: "lab-plugin".to_owned(),
        command,
        timeout,
        ownership: Ownership {
            pool: vec![net("11.11.0.0/16"), net("fd11:11::/48")],
            netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
            route_tag: Ownership::DEFAULT_ROUTE_TAG,
            bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
        },
    }
}

// ---- the example plugin against a kernel -------------------------------

/// The seed router: one connected network, 192.168.2.0/24 (and
/// fd00:2::/64), so next hops there are on-link.
fn router_namespace() -> Netns {
    let ns = Netns::new();
    ns.add_connected_network("p3p1", "192.168.2.2/24");
    ns.ip("address add fd00:2::2/64 dev p3p1 nodad");
    ns
}

/// The example plugin, pointed at `ns` through its environment (`env`
/// keeps the command an argv: no shell anywhere).
fn example_driver(ns: &Netns) -> PluginDriver {
    let plugin = Path::new(EXAMPLE_PLUGIN);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(plugin)
            .unwrap_or_else(|error| panic!("example plugin {EXAMPLE_PLUGIN}: {error}"))
            .permissions(),
    );
    assert_eq!(
        mode & 0o111,
        0o111,
        "{EXAMPLE_PLUGIN} must be executable (0755)"
    );
    run("python3", &["--version"]); // the plugin's interpreter; panics if missing
    let command = vec![
        "/usr/bin/env".to_owned(),
        format!("NATIVEROUTE_EXAMPLE_NETNS={}", ns.name()),
        EXAMPLE_PLUGIN.to_owned(),
    ];
    PluginDriver::new(plugin_router(command, TIMEOUT))
}

/// The kernel's routes to `dst` in the main table, as `ip -N -j` shows them.
fn kernel_routes(ns: &Netns, dst: &str) -> Vec<Value> {
    let family = if dst.contains(':') { "-6" } else { "-4" };
    let shown = ns.ip(&format!("-N -j {family} route show table main exact {dst}"));
    serde_json::from_str(&shown).expect("ip -j prints JSON")
}

/// The kernel's single route to `dst`, as (gateway, protocol).
fn kernel_route(ns: &Netns, dst: &str) -> Option<(String, String)> {
    let routes = kernel_routes(ns, dst);
    assert!(
        routes.len() <= 1,
        "more than one route to {dst}: {routes:?}"
    );
    routes.first().map(|route| {
        let field = |name: &str| route[name].as_str().unwrap_or("").to_owned();
        // ip leaves out proto boot (3), the default.
        let protocol = route["protocol"].as_str().unwrap_or("3").to_owned();
        (field("gateway"), protocol)
    })
}

fn ours(gateway: &str) -> Option<(String, String)> {
    Some((gateway.to_owned(), EXAMPLE_PROTO.to_owned()))
}

async fn apply_ok(driver: &mut PluginDriver, changes: &[Change]) {
    let outcomes = driver.apply(changes).await.expect("batch attempted");
    assert_eq!(outcomes.len(), changes.len());
    for (change, outcome) in changes.iter().zip(&outcomes) {
        assert_eq!(outcome, &Ok(()), "{change}");
    }
}

async fn owned(driver: &mut PluginDriver) -> Vec<Route> {
    driver.list().await.expect("list").owned
}

#[tokio::test]
async fn add_installs_routes_marked_with_the_plugins_protocol_and_list_returns_them_as_owned() {
    let ns = router_namespace();
    let mut driver = example_driver(&ns);
    assert_eq!(owned(&mut driver).await, vec![]);
    let routes = [
        route("11.11.1.0/24", "192.168.2.1"),
        route("11.11.3.0/24", "192.168.2.3"),
    ];
    apply_ok(&mut driver, &routes.map(Change::Add)).await;

    assert_eq!(kernel_route(&ns, "11.11.1.0/24"), ours("192.168.2.1"));
    assert_eq!(kernel_route(&ns, "11.11.3.0/24"), ours("192.168.2.3"));
    let listed = driver.list().await.expect("list");
    assert_eq!(listed.owned, routes.to_vec());
    assert_eq!(listed.foreign, vec![]);
    // Adding what is there already changes nothing and is no error.
    apply_ok(&mut driver, &[Change::Add(routes[0])]).await;
    assert_eq!(owned(&mut driver).await, routes.to_vec());
}

#[tokio::test]
async fn replace_points_the_route_at_the_new_next_hop() {
    let ns = router_namespace();
    let mut driver = example_driver(&ns);
    apply_ok(
        &mut driver,
        &[Change::Add(route("11.11.1.0/24", "192.168.2.1"))],
    )
    .await;

    let moved = route("11.11.1.0/24", "192.168.2.7");
    apply_ok(
        &mut driver,
        &[Change::Replace {
            route: moved,
            old_via: ip("192.168.2.1"),
        }],
    )
    .await;

    assert_eq!(kernel_route(&ns, "11.11.1.0/24"), ours("192.168.2.7"));
    assert_eq!(owned(&mut driver).await, vec![moved]);
}

#[tokio::test]
async fn remove_withdraws_the_route_and_removing_it_again_is_no_error() {
    let ns = router_namespace();
    let mut driver = example_driver(&ns);
    let kept = route("11.11.2.0/24", "192.168.2.2");
    let gone = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(gone), Change::Add(kept)]).await;

    apply_ok(&mut driver, &[Change::Remove(gone)]).await;
    assert_eq!(kernel_route(&ns, "11.11.1.0/24"), None);
    assert_eq!(owned(&mut driver).await, vec![kept]);

    apply_ok(&mut driver, &[Change::Remove(gone)]).await;
    assert_eq!(owned(&mut driver).await, vec![kept]);
}

#[tokio::test]
async fn a_foreign_route_in_the_pool_is_listed_as_foreign_and_never_changed() {
    let ns = router_namespace();
    ns.ip("route add 11.11.9.0/24 via 192.168.2.9");
    let mut driver = example_driver(&ns);

    let listed = driver.list().await.expect("list");
    assert_eq!(listed.owned, vec![]);
    assert_eq!(
        listed.foreign,
        vec![ForeignRoute {
            dst: net("11.11.9.0/24"),
            via: Some(ip("192.168.2.9")),
            detail: "proto 3 dev p3p1".to_owned(),
        }]
    );

    let foreign = route("11.11.9.0/24", "192.168.2.9");
    let changes = [
        Change::Add(route("11.11.9.0/24", "192.168.2.1")),
        Change::Replace {
            route: route("11.11.9.0/24", "192.168.2.1"),
            old_via: ip("192.168.2.9"),
        },
        Change::Remove(foreign),
    ];
    let outcomes = driver.apply(&changes).await.expect("batch attempted");
    for outcome in &outcomes[..2] {
        match outcome {
            Err(ChangeError::Refused { dst, message }) => {
                assert_eq!(*dst, net("11.11.9.0/24"));
                assert!(message.contains("does not own"), "{message}");
            }
            other => panic!("expected the foreign route to be in the way, got {other:?}"),
        }
    }
    // Not ours to remove: as far as the plugin is concerned, ours is gone.
    assert_eq!(outcomes[2], Ok(()));
    assert_eq!(
        kernel_route(&ns, "11.11.9.0/24"),
        Some(("192.168.2.9".to_owned(), "3".to_owned()))
    );
    assert_eq!(driver.list().await.expect("list"), listed);
}

#[tokio::test]
async fn a_change_the_kernel_rejects_fails_alone_and_the_rest_of_the_batch_goes_through() {
    let ns = router_namespace();
    let mut driver = example_driver(&ns);
    let changes = [
        Change::Add(route("11.11.1.0/24", "192.168.2.1")),
        // Not on-link: no connected network holds 10.99.0.1.
        Change::Add(route("11.11.2.0/24", "10.99.0.1")),
        Change::Add(route("11.11.3.0/24", "192.168.2.3")),
    ];
    let outcomes = driver.apply(&changes).await.expect("batch attempted");

    assert_eq!(outcomes[0], Ok(()));
    match &outcomes[1] {
        Err(ChangeError::Refused { dst, message }) => {
            assert_eq!(*dst, net("11.11.2.0/24"));
            assert!(message.contains("gateway"), "the kernel's words: {message}");
        }
        other => panic!("expected the kernel to refuse 11.11.2.0/24, got {other:?}"),
    }
    assert_eq!(outcomes[2], Ok(()));
    assert_eq!(kernel_route(&ns, "11.11.2.0/24"), None);
    assert_eq!(
        owned(&mut driver).await,
        vec![
            route("11.11.1.0/24", "192.168.2.1"),
            route("11.11.3.0/24", "192.168.2.3")
        ]
    );
}

#[tokio::test]
async fn routes_outside_the_pool_are_neither_listed_nor_changed() {
    let ns = router_namespace();
    ns.ip(&format!(
        "route add 10.50.0.0/16 via 192.168.2.9 proto {EXAMPLE_PROTO}"
    ));
    let mut driver = example_driver(&ns);

    assert_eq!(driver.list().await.expect("list"), Default::default());
    let outcomes = driver
        .apply(&[Change::Remove(route("10.50.0.0/16", "192.168.2.9"))])
        .await
        .expect("batch attempted");
    assert!(
        matches!(&outcomes[0], Err(ChangeError::Refused { message, .. }) if message.contains("outside the pool")),
        "{outcomes:?}"
    );
    assert_eq!(kernel_route(&ns, "10.50.0.0/16"), ours("192.168.2.9"));
}

#[tokio::test]
async fn ipv6_routes_work_like_ipv4_ones() {
    let ns = router_namespace();
    let mut driver = example_driver(&ns);
    let added = route("fd11:11:0:1::/64", "fd00:2::1");
    apply_ok(&mut driver, &[Change::Add(added)]).await;
    assert_eq!(kernel_route(&ns, "fd11:11:0:1::/64"), ours("fd00:2::1"));
    assert_eq!(owned(&mut driver).await, vec![added]);

    let moved = route("fd11:11:0:1::/64", "fd00:2::7");
    apply_ok(
        &mut driver,
        &[Change::Replace {
            route: moved,
            old_via: ip("fd00:2::1"),
        }],
    )
    .await;
    assert_eq!(owned(&mut driver).await, vec![moved]);
    apply_ok(&mut driver, &[Change::Remove(moved)]).await;
    assert_eq!(kernel_route(&ns, "fd11:11:0:1::/64"), None);
}

// ---- throwaway plugins ------------------------------------------------

/// A plugin written for one test: a shell script in its own directory.
/// It runs as `/bin/sh SCRIPT`, so it is never exec'd while another test
/// thread may still hold the file open for writing (ETXTBSY).
struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    /// `body` may say `$DIR` for the script's directory.
    fn new(body: &str) -> Self {
        require_root();
        let dir = tempfile::tempdir().expect("a temp dir for the plugin");
        let text = format!("#!/bin/sh\nDIR='{}'\n{body}\n", dir.path().display());
        std::fs::write(dir.path().join("plugin"), text).expect("plugin script written");
        Self { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn driver(&self, timeout: Duration) -> PluginDriver {
        let script = self.file("plugin").display().to_string();
        PluginDriver::new(plugin_router(vec!["/bin/sh".to_owned(), script], timeout))
    }
}

fn a_batch() -> [Change; 2] {
    [
        Change::Add(route("11.11.1.0/24", "192.168.2.1")),
        Change::Replace {
            route: route("11.11.2.0/24", "192.168.2.3"),
            old_via: ip("192.168.2.2"),
        },
    ]
}

/// The message of a whole-call plugin error; panics on anything else.
fn plugin_error<T: std::fmt::Debug>(result: Result<T, DriverError>) -> String {
    match result {
        Err(DriverError::Plugin {
            router, message, ..
        }) => {
            assert_eq!(router, "lab-plugin");
            message
        }
        other => panic!("expected DriverError::Plugin, got {other:?}"),
    }
}

#[tokio::test]
async fn each_request_carries_the_routers_name_pool_and_route_tag() {
    let script = Script::new(
        r#"n=$(ls "$DIR" | grep -c request)
cat > "$DIR/request-$n.json"
case "$(cat "$DIR/request-$n.json")" in
  *'"op":"list"'*) echo '{"routes":[]}' ;;
  *) echo '{"results":[{"ok":true},{"ok":true}]}' ;;
esac"#,
    );
    let mut driver = script.driver(TIMEOUT);
    driver.list().await.expect("list");
    driver.apply(&a_batch()).await.expect("apply");

    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(script.file(name)).expect("the request was saved");
        serde_json::from_str(&text).expect("the request is JSON")
    };
    let context = |op: &str| {
        serde_json::json!({
            "op": op,
            "router": "lab-plugin",
            "pool": ["11.11.0.0/16", "fd11:11::/48"],
            "routeTag": 1111,
        })
    };
    assert_eq!(read("request-0.json"), context("list"));
    let mut apply = context("apply");
    apply["changes"] = serde_json::json!([
        {"action": "add", "dst": "11.11.1.0/24", "via": "192.168.2.1"},
        {"action": "replace", "dst": "11.11.2.0/24", "via": "192.168.2.3", "oldVia": "192.168.2.2"},
    ]);
    assert_eq!(read("request-1.json"), apply);
}

#[tokio::test]
async fn a_refused_change_carries_the_plugins_reason_and_the_others_succeed() {
    let script = Script::new(
        r#"cat >/dev/null
echo '{"results":[{"ok":false,"error":"no room in the FIB"},{"ok":true}],"took":"3ms"}'"#,
    );
    let outcomes = script
        .driver(TIMEOUT)
        .apply(&a_batch())
        .await
        .expect("batch attempted");
    let expected: Vec<ChangeOutcome> = vec![
        Err(ChangeError::Refused {
            dst: net("11.11.1.0/24"),
            message: "no room in the FIB".to_owned(),
        }),
        Ok(()),
    ];
    assert_eq!(outcomes, expected);
}

#[tokio::test]
async fn an_empty_batch_does_not_run_the_plugin() {
    let script = Script::new(r#"touch "$DIR/ran"; echo '{"results":[]}'"#);
    let outcomes = script
        .driver(TIMEOUT)
        .apply(&[])
        .await
        .expect("nothing to do");
    assert!(outcomes.is_empty());
    assert!(
        !script.file("ran").exists(),
        "the plugin ran for no changes"
    );
}

#[tokio::test]
async fn a_non_zero_exit_fails_the_whole_batch_with_the_plugins_stderr() {
    let script = Script::new(
        r#"cat >/dev/null
echo '{"results":[{"ok":true},{"ok":true}]}'
echo "ssh to 10.1.1.1: connection refused" >&2
exit 3"#,
    );
    let message = plugin_error(script.driver(TIMEOUT).apply(&a_batch()).await);
    assert!(message.starts_with("apply: "), "{message}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(
        message.contains("ssh to 10.1.1.1: connection refused"),
        "{message}"
    );
}

#[tokio::test]
async fn stderr_in_an_error_is_its_last_twenty_lines() {
    let script = Script::new(
        r#"i=1; while [ $i -le 100 ]; do printf 'line %03d\n' $i >&2; i=$((i+1)); done
exit 1"#,
    );
    let message = plugin_error(script.driver(TIMEOUT).list().await);
    assert!(message.contains("line 081\n"), "{message}");
    assert!(message.ends_with("line 100"), "{message}");
    assert!(!message.contains("line 080"), "{message}");
}

#[tokio::test]
async fn an_answer_that_is_not_json_fails_the_whole_call() {
    let script = Script::new(r#"cat >/dev/null; echo 'Welcome to RouterOS!'"#);
    let message = plugin_error(script.driver(TIMEOUT).list().await);
    assert!(message.contains("not the expected JSON"), "{message}");
    assert!(message.contains("Welcome to RouterOS!"), "{message}");
}

#[tokio::test]
async fn a_result_count_that_differs_from_the_changes_fails_the_whole_batch() {
    let script = Script::new(r#"cat >/dev/null; echo '{"results":[{"ok":true}]}'"#);
    let message = plugin_error(script.driver(TIMEOUT).apply(&a_batch()).await);
    assert!(message.contains("1 results for 2 changes"), "{message}");
}

#[tokio::test]
async fn a_listed_route_that_is_not_an_address_fails_the_list_naming_it() {
    let script = Script::new(
        r#"cat >/dev/null
echo '{"routes":[{"dst":"11.11.1.0/24","via":"192.168.2.1"},{"dst":"11.11.2.0/24","via":"node2"}]}'"#,
    );
    let message = plugin_error(script.driver(TIMEOUT).list().await);
    assert!(message.contains("routes[1]: via \"node2\""), "{message}");
}

#[tokio::test]
async fn listed_routes_outside_the_pool_are_ignored_and_foreign_is_optional() {
    let script = Script::new(
        r#"cat >/dev/null
echo '{"routes":[{"dst":"10.9.0.0/16","via":"192.168.2.1"},{"dst":"11.11.1.0/24","via":"192.168.2.1"}]}'"#,
    );
    let listed = script.driver(TIMEOUT).list().await.expect("list");
    assert_eq!(listed.owned, vec![route("11.11.1.0/24", "192.168.2.1")]);
    assert_eq!(listed.foreign, vec![]);
}

#[tokio::test]
async fn more_than_64_mib_on_stdout_fails_the_whole_call() {
    let script = Script::new("cat >/dev/null; head -c 70000000 /dev/zero");
    let message = plugin_error(script.driver(TIMEOUT).list().await);
    assert!(message.contains("more than 64 MiB"), "{message}");
}

/// Whether `pid` has exited (a zombie nobody reaped counts: it runs no more).
fn has_exited(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn a_plugin_that_overruns_its_timeout_is_killed_with_what_it_started() {
    let script = Script::new(
        r#"echo $$ > "$DIR/plugin.pid"
sleep 60 &
echo $! > "$DIR/sleep.pid"
echo "logging in to the router" >&2
wait"#,
    );
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let message = plugin_error(script.driver(timeout).list().await);
    let took = started.elapsed();

    assert!(message.contains("timeout of 1s"), "{message}");
    assert!(message.contains("logging in to the router"), "{message}");
    assert!(
        took >= timeout,
        "gave up after {took:?}, before the timeout"
    );
    assert!(took < timeout + Duration::from_secs(3), "took {took:?}");
    for name in ["plugin.pid", "sleep.pid"] {
        let pid = std::fs::read_to_string(script.file(name)).expect("the plugin wrote its pids");
        let pid = pid.trim();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !has_exited(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(has_exited(pid), "{name} {pid} still runs after the timeout");
    }
}

/// The leadership term ends while a slow plugin is applying a batch: it is
/// killed at once with what it started, long before its timeout, and every
/// change comes back fenced (the next leader's list shows what it did).
#[tokio::test]
async fn a_plugin_running_when_the_term_ends_is_killed_and_its_changes_are_fenced() {
    let script = Script::new(
        r#"echo $$ > "$DIR/plugin.pid"
sleep 60 &
echo $! > "$DIR/sleep.pid"
touch "$DIR/ready"
wait"#,
    );
    let (ended, term) = tokio::sync::watch::channel(false);
    let ready = script.file("ready");
    let ender = std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        while !ready.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        ended.send_replace(true);
    });
    let started = Instant::now();
    let outcomes = script
        .driver(TIMEOUT)
        .apply_fenced(&a_batch(), &Fence::new(term))
        .await
        .expect("a fenced batch is no failure of the router");
    let took = started.elapsed();
    let _ = ender.join();

    let fenced: Vec<ChangeOutcome> = a_batch()
        .iter()
        .map(|change| {
            Err(ChangeError::Fenced {
                dst: change.route().dst,
            })
        })
        .collect();
    assert_eq!(outcomes, fenced);
    assert!(
        script.file("ready").exists(),
        "the term ended before the plugin ran"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for name in ["plugin.pid", "sleep.pid"] {
        let pid = std::fs::read_to_string(script.file(name)).expect("the plugin wrote its pids");
        let pid = pid.trim();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !has_exited(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            has_exited(pid),
            "{name} {pid} still runs after the term ended"
        );
    }
}

#[tokio::test]
async fn a_missing_executable_is_an_error_naming_its_path() {
    require_root();
    let command = vec!["/opt/nowhere/nativeroute-acme".to_owned(), "--x".to_owned()];
    let message = plugin_error(
        PluginDriver::new(plugin_router(command, TIMEOUT))
            .list()
            .await,
    );
    assert!(
        message.contains("cannot start /opt/nowhere/nativeroute-acme: no such file"),
        "{message}"
    );
}

#[test]
fn describe_names_the_command_and_the_protocol() {
    let command = vec![
        "/usr/local/bin/nativeroute-acme".to_owned(),
        "tor a".to_owned(),
    ];
    let driver = PluginDriver::new(plugin_router(command, Duration::from_secs(30)));
    assert_eq!(driver.router(), "lab-plugin");
    assert_eq!(
        driver.describe(),
        "plugin: /usr/local/bin/nativeroute-acme \"tor a\" \
         (JSON on stdin/stdout, one request per run, timeout 30s)"
    );
}

// ---- plan and check through a plugin ---------------------------------

/// `plan` asks the plugin what it holds and prints the difference; `check`
/// lists through it. Neither changes a route.
#[tokio::test]
async fn plan_and_check_go_through_the_example_plugin_and_change_nothing() {
    let ns = router_namespace();
    let mut driver = example_driver(&ns);
    // One route already there, one foreign route in the pool.
    apply_ok(
        &mut driver,
        &[Change::Add(route("11.11.1.0/24", "192.168.2.1"))],
    )
    .await;
    ns.ip("route add 11.11.9.0/24 via 192.168.2.9");
    let dir = tempfile::tempdir().expect("a directory for the config");
    let inventory = dir.path().join("nodes.yaml");
    std::fs::write(
        &inventory,
        "nodes:\n\
         \x20 - name: node1\n    address: 192.168.2.1\n    annotations:\n      nativeroute.io/subnet: 11.11.1.0/24\n\
         \x20 - name: node2\n    address: 192.168.2.3\n    annotations:\n      nativeroute.io/subnet: 11.11.2.0/24\n",
    )
    .expect("the inventory is written");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "pool:\n  cidrs: [11.11.0.0/16]\n\
             nodes:\n  source: file\n  file: {inventory}\n\
             routers:\n  - name: lab-plugin\n    driver: plugin\n    \
             command: [/usr/bin/env, NATIVEROUTE_EXAMPLE_NETNS={netns}, {EXAMPLE_PLUGIN}]\n    \
             timeout: 20s\n",
            inventory = inventory.display(),
            netns = ns.name(),
        ),
    )
    .expect("the config is written");
    let config = config.to_str().expect("a UTF-8 path");
    let before = ns.ip("-N route show table main");

    let (ok, plan) = run_nativeroute(&["plan", "--config", config]);

    assert!(ok, "{plan}");
    assert!(
        plan.contains(
            "router lab-plugin: 1 to add, 0 to replace, 0 to remove (1 routes held, 2 desired)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("+ add 11.11.2.0/24 via 192.168.2.3"),
        "{plan}"
    );
    assert!(plan.contains("= foreign 11.11.9.0/24"), "{plan}");

    let (ok, check) = run_nativeroute(&["check", "--config", config]);

    assert!(ok, "{check}");
    assert!(
        check.contains("router lab-plugin: ok (plugin:")
            && check.contains("1 owned routes, 1 foreign routes"),
        "{check}"
    );
    assert_eq!(
        ns.ip("-N route show table main"),
        before,
        "plan or check changed the kernel"
    );
    assert!(
        !dir.path().join("nodes.yaml.state.json").exists(),
        "plan wrote the state file"
    );
}
