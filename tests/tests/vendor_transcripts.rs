//! The prompted vendor profiles (Cisco IOS, Arista EOS, Junos, VyOS,
//! RouterOS) driven through the real SSH driver against a scripted server
//! that answers as each vendor's CLI does: its banner and prompts, its
//! `[edit]` lines, its error texts, and, where a test says so, its
//! terminal's habits (the line ending it takes, prompts it draws again,
//! where it wraps). The server checks every line the driver types, in
//! order, against the transcript; a test passes only when the driver
//! followed it to the end, on one connection unless it says otherwise.
//!
//! Where a reply is not the harness's own invention, the test cites where
//! it comes from: the vendor's documentation, a capture from a real device,
//! or the drivers network engineers already use (Netmiko, scrapli, NAPALM,
//! Ansible). See issue 13.
//!
//! One file per vendor under `vendor_transcripts/`; the harness is here.

#[path = "vendor_transcripts/arista_eos.rs"]
mod arista_eos;
#[path = "vendor_transcripts/cisco_ios.rs"]
mod cisco_ios;
#[path = "vendor_transcripts/junos.rs"]
mod junos;
#[path = "vendor_transcripts/routeros.rs"]
mod routeros;
#[path = "vendor_transcripts/vyos.rs"]
mod vyos;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use nativeroute_router_drivers::ssh::{HostKeyPolicy, SshDriver, SshRouter, Timeouts, VendorName};
use nativeroute_router_drivers::{
    Change, ChangeError, ChangeOutcome, Fence, Ownership, ProbeStep, Route, RouterDriver,
    RouterRoutes,
};
use nativeroute_tests::scripted_ssh::{
    Script, ScriptedSshServer, Step, TerminalBehaviour, client_key,
};
use tempfile::TempDir;

/// The user in the config; RouterOS logs in with options appended.
const USER: &str = "netops";

/// A scripted router and the driver config that reaches it.
struct Transcript {
    server: ScriptedSshServer,
    router: SshRouter,
    _dir: TempDir,
}

impl Transcript {
    /// Starts a server that lets in `login` (the name the vendor's profile
    /// sends for [`USER`]) and replays `steps` after `greeting`, on a plain
    /// terminal.
    async fn start(vendor: VendorName, login: &str, greeting: &str, steps: Vec<Step>) -> Self {
        Self::start_on(TerminalBehaviour::default(), vendor, login, greeting, steps).await
    }

    /// As [`Transcript::start`], on a terminal with the router's own habits.
    async fn start_on(
        terminal: TerminalBehaviour,
        vendor: VendorName,
        login: &str,
        greeting: &str,
        steps: Vec<Step>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (key, public_key) = client_key(dir.path()).expect("a client key");
        let script = Script {
            greeting: greeting.to_owned(),
            steps,
        };
        let server = ScriptedSshServer::start_with(script, terminal, login, &public_key)
            .await
            .expect("the scripted server starts");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, server.known_hosts_line() + "\n")
            .expect("known_hosts is written");
        let router = SshRouter {
            name: format!("{vendor}-lab"),
            vendor,
            host: "127.0.0.1".to_owned(),
            port: server.address().port(),
            netns: None,
            username: USER.to_owned(),
            private_key_file: key,
            host_keys: HostKeyPolicy {
                known_hosts_file: known_hosts,
                trust_on_first_use: false,
            },
            save_config: false,
            commit_confirm: None,
            cli_command: None,
            timeouts: Timeouts {
                connect: Duration::from_secs(10),
                auth: Duration::from_secs(10),
                command: Duration::from_secs(10),
                keepalive: Duration::from_secs(15),
                commit: None,
            },
            ownership: ownership(),
        };
        Transcript {
            server,
            router,
            _dir: dir,
        }
    }

    fn saving(mut self) -> Self {
        self.router.save_config = true;
        self
    }

    fn confirming(mut self, window: Duration) -> Self {
        self.router.commit_confirm = Some(window);
        self
    }

    /// How long the driver waits for the answer to one line.
    fn command_timeout(mut self, timeout: Duration) -> Self {
        self.router.timeouts.command = timeout;
        self
    }

    /// How long the driver waits for a commit or a save (`commitTimeout`).
    fn commit_timeout(mut self, timeout: Duration) -> Self {
        self.router.timeouts.commit = Some(timeout);
        self
    }

    async fn connect(&self) -> SshDriver {
        SshDriver::connect(self.router.clone())
            .await
            .unwrap_or_else(|err| panic!("the driver connects: {err}"))
    }

    /// The driver typed every line of the transcript, in order, and nothing
    /// else, over one SSH connection.
    async fn assert_followed(self, driver: SshDriver) {
        drop(driver);
        assert_eq!(
            self.server.mismatches(),
            Vec::<String>::new(),
            "lines received: {:#?}",
            self.server.received()
        );
        assert!(
            self.server.finished(),
            "the transcript was not finished; lines received: {:#?}",
            self.server.received()
        );
        assert_eq!(
            self.server.connections(),
            1,
            "one connection for all operations"
        );
        self.server.stop().await;
    }

    /// Another process (the `nativeroute` binary) followed every line of
    /// the transcript and nothing else; it may use connections of its own.
    async fn assert_followed_by_others(self) {
        assert_eq!(
            self.server.mismatches(),
            Vec::<String>::new(),
            "lines received: {:#?}",
            self.server.received()
        );
        assert!(
            self.server.finished(),
            "the transcript was not finished; lines received: {:#?}",
            self.server.received()
        );
        self.server.stop().await;
    }

    /// Connects, applies [`batch`] once and checks that the transcript was
    /// followed; what became of each change ([`summary`]).
    async fn apply_batch(self) -> Vec<String> {
        let mut driver = self.connect().await;
        let outcomes = apply(&mut driver, &batch()).await;
        self.assert_followed(driver).await;
        summary(&outcomes)
    }

    /// As [`Transcript::apply_batch`], within a leadership term that the
    /// transcript ends with [`term_ends`].
    async fn apply_batch_fenced(self, fence: &Fence) -> Vec<String> {
        let mut driver = self.connect().await;
        let outcomes = driver
            .apply_fenced(&batch(), fence)
            .await
            .unwrap_or_else(|err| panic!("the batch is attempted: {err}"));
        self.assert_followed(driver).await;
        summary(&outcomes)
    }

    /// As [`Transcript::apply_batch`], after one list.
    async fn list_and_apply_batch(self) -> Vec<String> {
        let mut driver = self.connect().await;
        list(&mut driver).await;
        let outcomes = apply(&mut driver, &batch()).await;
        self.assert_followed(driver).await;
        summary(&outcomes)
    }
}

fn ownership() -> Ownership {
    Ownership {
        pool: vec![net("11.11.0.0/16"), net("fd11:11::/48")],
        netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
        route_tag: Ownership::DEFAULT_ROUTE_TAG,
        bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
    }
}

fn net(text: &str) -> IpNet {
    text.parse().expect("a prefix")
}

fn address(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

fn route(dst: &str, via: &str) -> Route {
    Route::new(net(dst), address(via))
}

/// The batch every vendor is given: an add, a replace, a remove and an
/// IPv6 add, in this order. The replace and the remove change the routes
/// every list shows as ours ([`owned_in_every_list`]): a removal is only
/// ever sent for a route the fresh list shows as ours.
fn batch() -> Vec<Change> {
    vec![
        Change::Add(route("11.11.5.0/24", "192.168.3.5")),
        Change::Replace {
            route: route("11.11.1.0/24", "192.168.3.4"),
            old_via: address("192.168.3.3"),
        },
        Change::Remove(route("fd11:11:0:3::/64", "fd00:3::3")),
        Change::Add(route("fd11:11:0:7::/64", "fd00:3::7")),
    ]
}

/// What every vendor's list transcript holds inside the pool: one route of
/// ours per family, the rest foreign.
fn owned_in_every_list() -> Vec<Route> {
    vec![
        route("11.11.1.0/24", "192.168.3.3"),
        route("fd11:11:0:3::/64", "fd00:3::3"),
    ]
}

/// The foreign routes, as (destination, next hop), sorted.
fn foreign(routes: &RouterRoutes) -> Vec<(IpNet, Option<IpAddr>)> {
    let mut foreign: Vec<_> = routes.foreign.iter().map(|f| (f.dst, f.via)).collect();
    foreign.sort();
    foreign
}

fn owned(routes: &RouterRoutes) -> Vec<Route> {
    let mut owned = routes.owned.clone();
    owned.sort();
    owned
}

async fn list(driver: &mut SshDriver) -> RouterRoutes {
    driver
        .list()
        .await
        .unwrap_or_else(|err| panic!("the list succeeds: {err}"))
}

async fn apply(driver: &mut SshDriver, changes: &[Change]) -> Vec<ChangeOutcome> {
    driver
        .apply(changes)
        .await
        .unwrap_or_else(|err| panic!("the batch is attempted: {err}"))
}

/// The first contact of `nativeroute check`, step by step.
async fn probe(driver: &mut SshDriver) -> Vec<ProbeStep> {
    driver
        .probe()
        .await
        .unwrap_or_else(|err| panic!("the probe runs: {err}"))
}

/// Probe steps as one short line each: what was tried, and whether it
/// went well (the full text of a failure is in the panic message).
fn probed(steps: &[ProbeStep]) -> Vec<String> {
    steps
        .iter()
        .map(|step| match &step.result {
            Ok(_) => format!("{}: ok", step.what),
            Err(error) => format!("{}: FAILED ({error})", step.what),
        })
        .collect()
}

/// The steps of a probe that went well, where the vendor has a terminal
/// to set up and a configuration mode to enter and leave.
fn every_probe_step_passed() -> Vec<String> {
    [
        "prompt recognised",
        "terminal set up (paging off)",
        "configuration entered and left without a change",
        "echo seen",
    ]
    .iter()
    .map(|what| format!("{what}: ok"))
    .collect()
}

/// A leadership term, and the step at which the transcript ends it: once
/// the line before that step is matched, before its reply leaves.
fn term_ends() -> (Fence, Step) {
    let (ended, term) = tokio::sync::watch::channel(false);
    let end = Step::call(move || {
        ended.send_replace(true);
    });
    (Fence::new(term), end)
}

/// Outcomes as one short line each, so a test states them in one list.
fn summary(outcomes: &[ChangeOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(()) => "ok".to_owned(),
            Err(ChangeError::Refused { dst, message }) => format!("refused {dst}: {message}"),
            Err(ChangeError::NotAttempted { dst, .. }) => format!("not attempted {dst}"),
            Err(ChangeError::Fenced { dst }) => format!("fenced {dst}"),
            Err(other) => other.to_string(),
        })
        .collect()
}

/// The outcomes of [`batch`] when its replace (the second change) was
/// refused: earlier changes kept on a CLI that applies line by line, not
/// committed on one with a candidate configuration.
fn replace_refused(message: &str, transactional: bool) -> Vec<String> {
    let first = if transactional {
        "not attempted 11.11.5.0/24".to_owned()
    } else {
        "ok".to_owned()
    };
    vec![
        first,
        format!("refused 11.11.1.0/24: {message}"),
        "not attempted fd11:11:0:3::/64".to_owned(),
        "not attempted fd11:11:0:7::/64".to_owned(),
    ]
}

/// Every change of [`batch`] fenced: nothing of a transactional batch took
/// effect.
fn all_fenced() -> Vec<String> {
    batch()
        .iter()
        .map(|change| format!("fenced {}", change.route().dst))
        .collect()
}

/// Every change of [`batch`] refused with one message (a failed commit).
fn all_refused(message: &str) -> Vec<String> {
    batch()
        .iter()
        .map(|change| format!("refused {}: {message}", change.route().dst))
        .collect()
}

/// `line` answered by `reply` and then `prompt`, as the CLI prints them.
fn answered(line: &str, reply: &str, prompt: &str) -> Step {
    Step::line(line, format!("{reply}{prompt}"))
}

/// Lines answered by nothing but the prompt.
fn quiet(lines: &[&str], prompt: &str) -> Vec<Step> {
    lines.iter().map(|line| Step::line(*line, prompt)).collect()
}
