//! Stopping the controller while a batch is in flight: the term's fence
//! stops the batch (a plugin run is killed), the process exits well within
//! its shutdown deadline, and no route is withdrawn. The real controller
//! binary, a plugin that never answers an apply, SIGTERM as Kubernetes
//! sends it.

use std::path::Path;
use std::time::{Duration, Instant};

use nativeroute_tests::lab::{ControllerProcess, wait_until};
use nativeroute_tests::netns::require_root;

/// A plugin that lists nothing and, asked to apply, records its pid and
/// sleeps far longer than any test.
const HANGING_PLUGIN: &str = r#"#!/bin/sh
request=$(cat)
case "$request" in
  *'"apply"'*) echo $$ > "$DIR/applying"; sleep 600; echo '{"results": []}' ;;
  *) echo '{"routes": []}' ;;
esac
"#;

fn write_world(dir: &Path) -> std::path::PathBuf {
    let plugin = dir.join("plugin");
    std::fs::write(
        &plugin,
        HANGING_PLUGIN.replace("$DIR", &dir.display().to_string()),
    )
    .expect("plugin written");
    let nodes = dir.join("nodes.yaml");
    std::fs::write(&nodes, "nodes:\n  - {name: node1, address: 192.168.2.1}\n")
        .expect("nodes written");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "pool: {{cidrs: [11.11.0.0/16]}}\n\
             nodes: {{source: file, file: {}}}\n\
             routers:\n  - {{name: slow, driver: plugin, command: [/bin/sh, {}], timeout: 10m}}\n",
            nodes.display(),
            plugin.display()
        ),
    )
    .expect("config written");
    config
}

fn process_exists(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_hung_batch_fences_it_and_exits_within_the_deadline() {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_world(dir.path());
    let controller = ControllerProcess::start(&config, &dir.path().join("controller.log"), "off");
    let applying = dir.path().join("applying");
    wait_until(
        "the plugin is applying",
        Duration::from_secs(20),
        async || applying.exists(),
    )
    .await;
    let plugin_pid: i32 = std::fs::read_to_string(&applying)
        .expect("plugin pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(process_exists(plugin_pid));

    let stopping = Instant::now();
    let log = dir.path().join("controller.log");
    controller.stop(Duration::from_secs(12));
    let took = stopping.elapsed();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    println!("stopped {took:?} after SIGTERM");
    assert!(
        !process_exists(plugin_pid),
        "the plugin run outlived the term that started it:\n{log}"
    );
    assert!(
        log.contains("routes stay on the routers"),
        "the controller did not stop as it should:\n{log}"
    );
}
