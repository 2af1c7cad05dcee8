//! The support code for routers behind real sshd: FRR in a namespace,
//! sshd with its own keys, login users, and the OpenSSH client reaching
//! both. Needs root, FRR and OpenSSH; never skipped.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Output;
use std::time::{Duration, Instant};

use nativeroute_tests::frr::Frr;
use nativeroute_tests::netns::{Netns, run};
use nativeroute_tests::ssh_router::{
    NODE_ADDRESSES, SshRouter, VTY_USER, ensure_login_user, ensure_vty_user,
};
use nativeroute_tests::sshd::{ClientKey, KeyKind, Sshd, connect_in_netns};

/// Zebra's kernel protocol number for static routes.
const ZEBRA_STATIC: &str = "196";

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn kernel_static_routes(netns: &str) -> String {
    run("ip", &["-n", netns, "route", "show", "proto", ZEBRA_STATIC])
}

/// Whether the kernel holds a route to `dst` via `gateway` (zebra's carry
/// "nhid N" in between).
fn kernel_has_route(netns: &str, dst: &str, gateway: &str) -> bool {
    kernel_static_routes(netns).lines().any(|line| {
        line.split_whitespace().next() == Some(dst) && line.contains(&format!("via {gateway} "))
    })
}

/// Polls until `check` holds; panics with `what` after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn frr_router() -> SshRouter {
    SshRouter::start_frr().unwrap_or_else(|err| panic!("cannot start an FRR router: {err:#}"))
}

fn linux_router() -> SshRouter {
    SshRouter::start_linux().unwrap_or_else(|err| panic!("cannot start a Linux router: {err:#}"))
}

#[test]
fn frr_installs_a_tagged_static_route_from_a_vtysh_batch() {
    let ns = Netns::new();
    ns.add_connected_network("p3p2", "192.168.3.2/24");
    let dir = tempfile::tempdir().expect("temp dir");
    let frr = Frr::start(ns.name(), dir.path()).expect("FRR starts");

    let output = frr
        .vtysh_batch("ip route 11.11.1.0/24 192.168.3.3 tag 1111\n")
        .expect("vtysh runs");

    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        frr.static_route_lines().expect("running config"),
        ["ip route 11.11.1.0/24 192.168.3.3 tag 1111"]
    );
    wait_for("zebra installed the route", Duration::from_secs(10), || {
        kernel_has_route(ns.name(), "11.11.1.0/24", "192.168.3.3")
    });
}

#[test]
fn restarting_frr_forgets_routes_added_through_vtysh() {
    let ns = Netns::new();
    ns.add_connected_network("p3p2", "192.168.3.2/24");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut frr = Frr::start(ns.name(), dir.path()).expect("FRR starts");
    let before = frr.pids();
    frr.vtysh_batch("ip route 11.11.1.0/24 192.168.3.3 tag 1111\n")
        .expect("vtysh runs");
    wait_for("zebra installed the route", Duration::from_secs(10), || {
        !kernel_static_routes(ns.name()).is_empty()
    });

    frr.restart().expect("FRR restarts");

    assert!(
        before.iter().all(|&pid| !running(pid)),
        "old daemons still run"
    );
    assert_eq!(frr.pids().len(), 2);
    assert_eq!(
        frr.static_route_lines().expect("running config"),
        Vec::<String>::new()
    );
    assert_eq!(kernel_static_routes(ns.name()), "");
}

#[test]
fn dropping_frr_stops_its_daemons_and_no_one_else_s() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = Frr::start(ns.name(), other_dir.path()).expect("another FRR starts");
    let frr = Frr::start(ns.name(), dir.path()).expect("FRR starts");
    let pids = frr.pids();

    drop(frr);

    assert!(
        pids.iter().all(|&pid| !running(pid)),
        "daemons {pids:?} still run"
    );
    assert!(other.pids().iter().all(|&pid| running(pid)));
    other
        .vtysh(&["-c", "show version"])
        .expect("the other FRR still answers");
}

#[test]
fn vtysh_command_quotes_paths_for_the_shell() {
    let ns = Netns::new();
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("it's here");
    std::fs::create_dir(&dir).expect("dir");
    let frr = Frr::start(ns.name(), &dir).expect("FRR starts");

    let command = frr.vtysh_command();

    assert!(command.contains("'\\''"), "{command}");
    let output = run(
        "ip",
        &[
            "netns",
            "exec",
            ns.name(),
            "sh",
            "-c",
            &format!("{command} -c 'show version'"),
        ],
    );
    assert!(output.contains("FRRouting"), "{output}");
}

#[test]
fn every_client_key_kind_logs_in_as_root_on_a_linux_router() {
    let router = linux_router();

    for key in router.keys() {
        let uid = router.ssh_ok(key, "id -u", None).expect("login");
        assert_eq!(uid.trim(), "0", "{:?}", key.kind());
    }
}

#[test]
fn root_on_a_linux_router_adds_routes_with_ip_batch_over_ssh() {
    let router = linux_router();
    let batch = format!(
        "route add 11.11.1.0/24 via {} proto 196\nroute add 11.11.2.0/24 via {} proto 196\n",
        NODE_ADDRESSES[0], NODE_ADDRESSES[1]
    );

    router
        .ssh_ok(
            router.key(KeyKind::Ed25519),
            "ip -batch -",
            Some(batch.as_bytes()),
        )
        .expect("ip -batch over ssh");

    assert!(kernel_has_route(
        router.netns(),
        "11.11.1.0/24",
        "192.168.3.3"
    ));
    assert!(kernel_has_route(
        router.netns(),
        "11.11.2.0/24",
        "192.168.3.4"
    ));
}

#[test]
fn the_vty_user_feeds_a_vtysh_batch_through_ssh_stdin() {
    let router = frr_router();
    let frr = router.frr().expect("FRR");
    let batch =
        "ip route 11.11.1.0/24 192.168.3.3 tag 1111\nip route 11.11.2.0/24 192.168.3.4 tag 1111\n";

    for key in router.keys() {
        let whoami = router.ssh_ok(key, "id -un; id -Gn", None).expect("login");
        assert!(
            whoami.starts_with(VTY_USER) && whoami.contains("frrvty"),
            "{whoami}"
        );
    }
    router
        .ssh_ok(
            router.key(KeyKind::Rsa),
            &format!("{} -f /dev/stdin", frr.vtysh_command()),
            Some(batch.as_bytes()),
        )
        .expect("vtysh batch over ssh");

    assert_eq!(
        frr.static_route_lines().expect("running config"),
        [
            "ip route 11.11.1.0/24 192.168.3.3 tag 1111",
            "ip route 11.11.2.0/24 192.168.3.4 tag 1111"
        ]
    );
}

#[test]
fn known_hosts_lines_take_openssh_s_form() {
    let router = linux_router();
    let key = router.sshd.host_key_public();
    assert!(
        key.starts_with("ssh-ed25519 AAAA") && key.split(' ').count() == 2,
        "{key}"
    );

    assert_eq!(
        router.sshd.known_hosts_line("192.168.3.2", 22),
        format!("192.168.3.2 {key}")
    );
    assert_eq!(
        router.sshd.known_hosts_line("192.168.3.2", 2222),
        format!("[192.168.3.2]:2222 {key}")
    );
    assert_eq!(
        router.sshd.known_hosts_line("::1", 2222),
        format!("[::1]:2222 {key}")
    );
    // ssh() checks host keys strictly against known_hosts_file().
    router
        .ssh_ok(router.key(KeyKind::Ecdsa), "true", None)
        .expect("login");
}

#[test]
fn sshd_on_a_port_other_than_22_is_known_by_its_bracketed_name() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = ClientKey::generate(dir.path(), KeyKind::Ecdsa).expect("client key");
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2222);
    let sshd = Sshd::start(
        ns.name(),
        listen,
        &dir.path().join("sshd"),
        &[("root", &key)],
    )
    .expect("sshd starts");
    let known_hosts = sshd.known_hosts_file().expect("known hosts");

    let output = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "ssh", "-F", "/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg(format!("-oUserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(key.private_key_path())
        .args(["-p", "2222", "root@127.0.0.1", "echo logged in"])
        .output()
        .expect("ssh runs");

    assert!(output.status.success(), "{}\n{}", text(&output), sshd.log());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "logged in\n");
    let line = std::fs::read_to_string(&known_hosts).expect("known hosts");
    assert!(line.starts_with("[127.0.0.1]:2222 ssh-ed25519 "), "{line}");
    assert!(
        sshd.log().contains("Accepted publickey for root"),
        "{}",
        sshd.log()
    );
}

#[test]
fn a_host_key_other_than_the_routers_is_refused() {
    let router = linux_router();
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = ClientKey::generate(other_dir.path(), KeyKind::Ed25519).expect("another key");
    let known_hosts = router.dir().join("impostor_known_hosts");
    let other_key: Vec<&str> = other.public_key().split(' ').take(2).collect();
    std::fs::write(
        &known_hosts,
        format!("192.168.3.2 {}\n", other_key.join(" ")),
    )
    .expect("write known hosts");

    let output = std::process::Command::new("ip")
        .args(["netns", "exec", router.netns(), "ssh", "-F", "/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg(format!("-oUserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(router.key(KeyKind::Ed25519).private_key_path())
        .args(["root@192.168.3.2", "true"])
        .output()
        .expect("ssh runs");

    assert!(!output.status.success());
    assert!(
        text(&output).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_stopped_sshd_refuses_connections_and_comes_back_with_the_same_host_key() {
    let mut router = linux_router();
    let key = router.key(KeyKind::Ed25519).clone();
    let host_key = router.sshd.host_key_public();

    router.sshd.stop().expect("sshd stops");
    let refused = router.connect(Duration::from_secs(1));
    router.sshd.start_again().expect("sshd starts again");

    let err = refused.expect_err("nothing listens while sshd is down");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(router.sshd.host_key_public(), host_key);
    router
        .ssh_ok(&key, "true", None)
        .expect("login after the restart");
}

#[test]
fn stopping_sshd_ends_the_sessions_it_accepted() {
    let mut router = linux_router();
    let key = router.key(KeyKind::Ed25519).clone();
    let session = {
        let router_ns = router.netns().to_owned();
        let known_hosts = router.known_hosts_file().expect("known hosts");
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &router_ns,
                "ssh",
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
            ])
            .arg(format!("-oUserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(key.private_key_path())
            .args(["root@192.168.3.2", "sleep 300"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ssh starts")
    };
    let mut session = KillOnDrop(session);
    wait_for(
        "the session runs its command",
        Duration::from_secs(10),
        || router.sshd.session_pids().len() >= 3,
    );
    let session_pids = router.sshd.session_pids();

    router.sshd.stop().expect("sshd stops");

    assert!(session_pids.iter().all(|&pid| !running(pid)));
    let started = Instant::now();
    wait_for(
        "the client sees its session end",
        Duration::from_secs(10),
        || session.0.try_wait().expect("try_wait").is_some(),
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn dropping_connections_ends_sessions_but_sshd_keeps_listening() {
    let router = linux_router();
    let mut stream = router.connect(Duration::from_secs(5)).expect("connect");
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner).expect("banner");
    assert_eq!(&banner, b"SSH-2.0-");

    let killed = router.sshd.drop_connections().expect("drop connections");

    assert!(killed >= 1, "the pre-auth session had a process");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
    }
    router
        .ssh_ok(router.key(KeyKind::Rsa), "true", None)
        .expect("new logins still work");
}

#[test]
fn connect_in_netns_reaches_only_that_namespace() {
    let router = linux_router();
    let elsewhere = Netns::new();

    let stream = connect_in_netns(router.netns(), router.address(), Duration::from_secs(5));
    let refused = connect_in_netns(elsewhere.name(), router.address(), Duration::from_secs(1));

    assert!(stream.is_ok(), "{stream:?}");
    assert!(refused.is_err());
}

#[test]
fn login_users_are_created_once_even_by_parallel_callers() {
    let name = "nrtest-once";
    let callers: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || ensure_login_user(name, &["frrvty"])))
        .collect();
    for caller in callers {
        caller.join().expect("no panic").expect("user ensured");
    }
    ensure_vty_user().expect("vty user ensured");

    let shadow = run("getent", &["shadow", name]);
    assert_eq!(shadow.split(':').nth(1), Some("*"), "{shadow}");
    let passwd = run("getent", &["passwd", name]);
    assert!(passwd.trim_end().ends_with(":/bin/sh"), "{passwd}");
    assert!(
        run("id", &["-nG", name])
            .split_whitespace()
            .any(|g| g == "frrvty")
    );
}

#[test]
fn client_keys_of_every_kind_are_openssh_key_pairs() {
    let dir = tempfile::tempdir().expect("temp dir");

    let keys = ClientKey::generate_all(dir.path()).expect("keys");

    let prefixes: Vec<&str> = keys
        .iter()
        .map(|key| key.public_key().split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(prefixes, ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"]);
    for key in &keys {
        let pem = key.private_key_pem().expect("private key");
        assert!(
            pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
            "{pem}"
        );
    }
}

/// Kills the client when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
