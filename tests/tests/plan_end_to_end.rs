//! `nativeroute plan` for scripts: `-o json` and `--detailed-exitcode`
//! (0 nothing to do, 2 changes pending, 1 error), against the lab's real
//! router, before and after the controller converged it.

use std::process::Command;
use std::time::Duration;

use nativeroute_tests::lab::{TestLab, nativeroute_binary, router_routes, wait_until};

const INVENTORY: &str = "nodes:\n\
  - {name: node1, address: 192.168.2.1, annotations: {nativeroute.io/subnet: 11.11.1.0/24}}\n\
  - {name: node2, address: 192.168.3.3, annotations: {nativeroute.io/subnet: 11.11.2.0/24}}\n\
  - {name: node3, address: 192.168.3.4, annotations: {nativeroute.io/subnet: 11.11.3.0/24, nativeroute.io/next-hop: 11.11.7.7}}\n";

/// Runs `nativeroute plan` with `args`: (exit code, stdout).
fn plan(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(nativeroute_binary())
        .args(["plan", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("nativeroute plan runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_tells_scripts_by_its_exit_code_and_in_json_what_would_change() {
    let lab = TestLab::create(Duration::from_secs(2)).await;
    lab.write_inventory(INVENTORY);

    let (code, out) = plan(&lab.config, &["--detailed-exitcode", "-o", "json"]);
    assert_eq!(code, 2, "changes are pending:\n{out}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("plan -o json is JSON");
    let changes = json["routers"][0]["changes"]
        .as_array()
        .expect("a list of changes");
    assert_eq!(changes.len(), 3, "{json:#}");
    assert!(
        changes
            .iter()
            .all(|c| c["action"] == "add" && c["dst"].as_str().is_some()),
        "{json:#}"
    );
    assert_eq!(json["ignoredOverrides"][0]["node"], "node3", "{json:#}");
    assert_eq!(json["ignoredOverrides"][0]["instead"], "192.168.3.4");
    let (code, _) = plan(&lab.config, &[]);
    assert_eq!(
        code, 0,
        "without --detailed-exitcode, pending changes exit 0"
    );
    assert!(
        router_routes(lab.router_netns()).is_empty(),
        "plan changed the router"
    );

    let mut controller = lab.start_controller();
    let netns = lab.router_netns().to_owned();
    wait_until(
        "the router is converged",
        Duration::from_secs(10),
        async || router_routes(&netns).len() == 3,
    )
    .await;
    let (code, out) = plan(&lab.config, &["--detailed-exitcode"]);
    assert_eq!(code, 0, "nothing to do once converged:\n{out}");
    controller.assert_running();

    // A router that cannot be reached is an error: exit 1.
    let config = std::fs::read_to_string(&lab.config).expect("config");
    let broken = lab.config.with_file_name("unreachable.yaml");
    std::fs::write(
        &broken,
        config.replace(lab.router_netns(), "nrt-no-such-netns"),
    )
    .expect("config written");
    let (code, out) = plan(&broken, &["--detailed-exitcode"]);
    assert_eq!(code, 1, "an unreachable router is an error:\n{out}");
}

/// Runs `nativeroute withdraw` with `args`: (exit code, stdout and stderr).
fn withdraw(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(nativeroute_binary())
        .args(["withdraw", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("nativeroute withdraw runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn withdraw_shows_first_and_then_removes_only_nativeroutes_routes() {
    let lab = TestLab::create(Duration::from_secs(2)).await;
    lab.write_inventory(INVENTORY);
    lab.ip_in_router(&[
        "route",
        "add",
        "11.11.200.0/24",
        "via",
        "192.168.3.4",
        "proto",
        "static",
    ]);
    let controller = lab.start_controller();
    let netns = lab.router_netns().to_owned();
    wait_until(
        "the router is converged",
        Duration::from_secs(10),
        async || router_routes(&netns).len() == 4,
    )
    .await;
    controller.stop(Duration::from_secs(12));

    let (code, out) = withdraw(&lab.config, &["--router", "rtr"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 routes of nativeroute's to remove, 1 foreign routes left alone")
            && out.contains("remove 11.11.1.0/24 via 192.168.2.1")
            && out.contains("nothing was changed"),
        "{out}"
    );
    assert_eq!(
        router_routes(&netns).len(),
        4,
        "withdraw without --yes changed the router"
    );

    let (code, out) = withdraw(&lab.config, &["--router", "core-9", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no router \"core-9\"") && out.contains("rtr"),
        "{out}"
    );

    let (code, out) = withdraw(&lab.config, &["--all", "--yes"]);
    assert_eq!(code, 0, "{out}");
    let left: Vec<String> = router_routes(&netns)
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        left,
        vec!["11.11.200.0/24"],
        "only the foreign route stays:\n{out}"
    );
}
