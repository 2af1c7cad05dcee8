//! Cisco IOS: privileged EXEC at login, each line live as it is entered,
//! `end` and `write memory` after the batch.

use std::time::Duration;

use nativeroute_router_drivers::ssh::VendorName;
use nativeroute_tests::scripted_ssh::Step;

use nativeroute_router_drivers::Change;

use super::{
    Transcript, USER, address, answered, apply, every_probe_step_passed, foreign, list, net, owned,
    owned_in_every_list, probe, probed, quiet, replace_refused, route, summary, term_ends,
};

const EXEC: &str = "core-1#";
const CONFIG: &str = "core-1(config)#";
const GREETING: &str = "\r\n************************************\r\n\
                        * core-1: authorized access only   *\r\n\
                        ************************************\r\n\r\ncore-1#";

/// A new terminal, paging off and lines as wide as Netmiko sets them.
/// Issue 13, point 7: ktbyers/netmiko `netmiko/cisco/cisco_ios.py`
/// (`CiscoIosBase.session_preparation`: `cmd = "terminal width 511"`), and
/// a real Cisco 881 answering it with its prompt alone in Netmiko's
/// `tests/SLOG/cisco881_slog_wr_compare.log`; no Cisco source confirms the
/// `terminal width 0` the profile once sent. Every IOS transcript here
/// starts with this, so each fails on a profile that sends another width.
fn terminal() -> Vec<Step> {
    let mut steps = vec![Step::NewShell];
    steps.extend(quiet(&["terminal length 0", "terminal width 511"], EXEC));
    steps
}

fn running_config() -> Vec<Step> {
    let mut steps = terminal();
    steps.push(answered(
        "show running-config | include ^ip route |^ipv6 route ",
        "ip route 0.0.0.0 0.0.0.0 10.0.0.254\r\n\
         ip route 10.20.0.0 255.255.0.0 192.168.3.1 tag 1111 name nativeroute\r\n\
         ip route 11.11.1.0 255.255.255.0 192.168.3.3 tag 1111 name nativeroute\r\n\
         ip route 11.11.2.0 255.255.255.0 192.168.3.4 name lab-test\r\n\
         ip route 11.11.9.0 255.255.255.0 Null0 tag 1111\r\n\
         ip route vrf CUST 11.11.4.0 255.255.255.0 192.168.9.1 tag 1111\r\n\
         ipv6 route FD11:11:0:3::/64 FD00:3::3 tag 1111 name nativeroute\r\n",
        EXEC,
    ));
    steps
}

fn configure() -> Step {
    answered(
        "configure terminal",
        "Enter configuration commands, one per line.  End with CNTL/Z.\r\n",
        CONFIG,
    )
}

fn end_and_save() -> Vec<Step> {
    vec![
        Step::line("end", EXEC),
        answered(
            "write memory",
            "Building configuration...\r\n[OK]\r\n",
            EXEC,
        ),
    ]
}

#[tokio::test]
async fn ios_list_keeps_tagged_routes_and_reports_the_rest_of_the_pool() {
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, running_config()).await;
    let mut driver = lab.connect().await;

    let routes = list(&mut driver).await;

    assert_eq!(owned(&routes), owned_in_every_list());
    assert_eq!(
        foreign(&routes),
        [
            (net("11.11.2.0/24"), Some(address("192.168.3.4"))),
            (net("11.11.9.0/24"), None),
        ]
    );
    lab.assert_followed(driver).await;
}

#[tokio::test]
async fn ios_batch_is_typed_line_by_line_then_saved() {
    let mut steps = running_config();
    // The driver reads the router afresh before a batch that writes.
    steps.extend(running_config());
    steps.extend(terminal());
    steps.push(configure());
    steps.extend(quiet(
        &[
            "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
            "ip route 11.11.1.0 255.255.255.0 192.168.3.4 tag 1111 name nativeroute",
            "no ip route 11.11.1.0 255.255.255.0 192.168.3.3",
            "no ipv6 route fd11:11:0:3::/64 fd00:3::3",
            "ipv6 route fd11:11:0:7::/64 fd00:3::7 tag 1111 name nativeroute",
        ],
        CONFIG,
    ));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.list_and_apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

#[tokio::test]
async fn ios_refusal_keeps_the_lines_before_it_and_still_saves() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = running_config();
    steps.extend(terminal());
    steps.push(configure());
    steps.push(Step::line(
        "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
        CONFIG,
    ));
    steps.push(answered(
        "ip route 11.11.1.0 255.255.255.0 192.168.3.4 tag 1111 name nativeroute",
        "%Invalid next hop address (it's this router)\r\n",
        CONFIG,
    ));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        replace_refused("Invalid next hop address (it's this router)", false)
    );
}

/// Someone wrote `ip route 11.11.1.0 … 192.168.3.4` since the last list:
/// the replace onto that next hop would retag it as nativeroute's, so the
/// fresh read before the batch keeps it out, and the rest goes.
#[tokio::test]
async fn ios_batch_leaves_out_a_replace_onto_a_foreign_route_written_meanwhile() {
    let mut steps = terminal();
    steps.push(answered(
        "show running-config | include ^ip route |^ipv6 route ",
        "ip route 11.11.1.0 255.255.255.0 192.168.3.3 tag 1111 name nativeroute\r\n\
         ip route 11.11.1.0 255.255.255.0 192.168.3.4 name someone-else\r\n\
         ipv6 route FD11:11:0:3::/64 FD00:3::3 tag 1111 name nativeroute\r\n",
        EXEC,
    ));
    steps.extend(terminal());
    steps.push(configure());
    steps.extend(quiet(
        &[
            "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
            "no ipv6 route fd11:11:0:3::/64 fd00:3::3",
            "ipv6 route fd11:11:0:7::/64 fd00:3::7 tag 1111 name nativeroute",
        ],
        CONFIG,
    ));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        [
            "ok",
            "11.11.1.0/24 is already routed on this router by a route nativeroute does not own",
            "ok",
            "ok"
        ]
    );
}

/// The term ends after the first line: IOS has taken that line, so its
/// change stands; no further route line is typed, `end` leaves
/// configuration and nothing is saved.
#[tokio::test]
async fn ios_term_ending_mid_batch_types_no_further_line_and_does_not_save() {
    let (fence, term_ends) = term_ends();
    // The driver reads the router afresh before a batch that writes.
    let mut steps = running_config();
    steps.extend(terminal());
    steps.push(configure());
    steps.push(Step::line(
        "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
        CONFIG,
    ));
    steps.push(term_ends);
    steps.push(Step::line("end", EXEC));
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch_fenced(&fence).await;

    assert_eq!(
        outcomes,
        [
            "ok",
            "fenced 11.11.1.0/24",
            "fenced fd11:11:0:3::/64",
            "fenced fd11:11:0:7::/64"
        ]
    );
}

/// `no ip route` takes a route whatever its tag, so a batch of removals is
/// preceded by a fresh list too, and only what it shows as ours is removed:
/// someone rewrote 11.11.1.0/24 as their own since the last list, and it
/// stays.
#[tokio::test]
async fn ios_removes_only_routes_the_fresh_list_shows_as_ours() {
    let mut steps = terminal();
    steps.push(answered(
        "show running-config | include ^ip route |^ipv6 route ",
        "ip route 11.11.1.0 255.255.255.0 192.168.3.3 name someone-else\r\n\
         ipv6 route FD11:11:0:3::/64 FD00:3::3 tag 1111 name nativeroute\r\n",
        EXEC,
    ));
    steps.extend(terminal());
    steps.push(configure());
    steps.push(Step::line(
        "no ipv6 route fd11:11:0:3::/64 fd00:3::3",
        CONFIG,
    ));
    steps.push(Step::line("end", EXEC));
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let outcomes = apply(
        &mut driver,
        &[
            Change::Remove(route("11.11.1.0/24", "192.168.3.3")),
            Change::Remove(route("fd11:11:0:3::/64", "fd00:3::3")),
        ],
    )
    .await;

    assert_eq!(summary(&outcomes), ["ok", "ok"]);
    lab.assert_followed(driver).await;
}

/// The lines of [`super::batch`] on IOS, in order.
const BATCH_LINES: [&str; 5] = [
    "ip route 11.11.5.0 255.255.255.0 192.168.3.5 tag 1111 name nativeroute",
    "ip route 11.11.1.0 255.255.255.0 192.168.3.4 tag 1111 name nativeroute",
    "no ip route 11.11.1.0 255.255.255.0 192.168.3.3",
    "no ipv6 route fd11:11:0:3::/64 fd00:3::3",
    "ipv6 route fd11:11:0:7::/64 fd00:3::7 tag 1111 name nativeroute",
];

/// Issue 13, point 6: someone removed the IPv6 route by hand between the
/// fresh list and its `no ipv6 route`. IOS says `%No matching route to
/// delete` (the exact text Net::Telnet::Cisco 1.10 lists among the
/// warnings, not errors, of `Cisco.pm`'s `new`:
/// https://metacpan.org/release/JOSHUA/Net-Telnet-Cisco-1.10/view/Cisco.pm;
/// Ansible cisco.ios's `terminal_stderr_re` does not match it either). Gone
/// is what was asked: the removal is done, and the batch goes on and saves.
#[tokio::test]
async fn ios_removal_of_a_route_already_gone_is_done_and_the_batch_goes_on() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = running_config();
    steps.extend(terminal());
    steps.push(configure());
    steps.extend(quiet(&BATCH_LINES[..3], CONFIG));
    steps.push(answered(
        BATCH_LINES[3],
        "%No matching route to delete\r\n",
        CONFIG,
    ));
    steps.push(Step::line(BATCH_LINES[4], CONFIG));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

/// Issue 13, point 6: with `terminal monitor` on, syslog messages land in
/// the answers. In the middle of the batch a link changes state: Cisco's
/// own example messages ("Configuring System Message Logging", Cisco IOS
/// Software Configuration Guide for Cisco Aironet Access Points,
/// OL-11350-01, table 21-1, mirrored at
/// https://manualsdump.com/en/manuals/cisco_systems-0l-11350-01/278847/431),
/// without the timestamp, which "appears only if the service timestamps
/// log … command is configured" (same table), so the line starts with
/// `%`. Right after `end`, before the prompt, `%SYS-5-CONFIG_I` with a
/// timestamp, as an OSPF lab write-up in a public repository captured it
/// on real IOS (`R2(config-router)#end` / `*May 23 20:27:20.718: …` /
/// `R2#`; stored-index file 19443924932). None of them refuses anything.
#[tokio::test]
async fn ios_syslog_lines_in_an_answer_refuse_nothing() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = running_config();
    steps.extend(terminal());
    steps.push(configure());
    steps.push(Step::line(BATCH_LINES[0], CONFIG));
    steps.push(answered(
        BATCH_LINES[1],
        "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up\r\n\
         %LINEPROTO-5-UPDOWN: Line protocol on Interface GigabitEthernet0/1, \
         changed state to up\r\n",
        CONFIG,
    ));
    steps.extend(quiet(&BATCH_LINES[2..], CONFIG));
    steps.push(answered(
        "end",
        "*May 23 20:27:20.718: %SYS-5-CONFIG_I: Configured from console by console\r\n",
        EXEC,
    ));
    steps.push(answered(
        "write memory",
        "Building configuration...\r\n[OK]\r\n",
        EXEC,
    ));
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(outcomes, ["ok", "ok", "ok", "ok"]);
}

/// Issue 13, point 6: only known error texts refuse a line, as Ansible
/// cisco.ios's `terminal_stderr_re` (ansible-collections/cisco.ios
/// `plugins/terminal/ios.py`) has it. A `%` line nativeroute has no rule
/// for (`%No CEF interface information`, another of Net::Telnet::Cisco's
/// default warnings) lets the first add stand; `% Invalid input detected
/// at '^' marker.` under its caret line, as a real Cisco 881 prints it in
/// ktbyers/netmiko `tests/SLOG/cisco881_slog_wr_compare.log`, refuses the
/// replace, and the batch stops there.
#[tokio::test]
async fn ios_unknown_percent_line_is_no_refusal_but_invalid_input_is() {
    // The driver reads the router afresh before a batch that writes.
    let mut steps = running_config();
    steps.extend(terminal());
    steps.push(configure());
    steps.push(answered(
        BATCH_LINES[0],
        "%No CEF interface information\r\n",
        CONFIG,
    ));
    steps.push(answered(
        BATCH_LINES[1],
        "              ^\r\n% Invalid input detected at '^' marker.\r\n\r\n",
        CONFIG,
    ));
    steps.extend(end_and_save());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps)
        .await
        .saving();
    let outcomes = lab.apply_batch().await;

    assert_eq!(
        outcomes,
        replace_refused("Invalid input detected at '^' marker.", false)
    );
}

/// Issue 13, point 10: `nativeroute check` on IOS: the prompt, paging off
/// and the width, `configure terminal` and `end`, every line echoed.
#[tokio::test]
async fn ios_probe_tries_the_terminal_and_configuration_mode_without_a_change() {
    let mut steps = terminal();
    steps.push(configure());
    steps.push(Step::line("end", EXEC));
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps).await;
    let mut driver = lab.connect().await;

    let steps = probed(&probe(&mut driver).await);

    assert_eq!(steps, every_probe_step_passed());
    lab.assert_followed(driver).await;
}

/// Issue 13, point 10, as an operator runs it: `nativeroute check` prints
/// each probe step, then the list, and passes; the router is left as it
/// was (the transcript holds no change).
#[tokio::test(flavor = "multi_thread")]
async fn check_prints_each_probe_step_then_lists_the_routes() {
    let mut steps = terminal();
    steps.push(configure());
    steps.push(Step::line("end", EXEC));
    steps.extend(running_config());
    let lab = Transcript::start(VendorName::CiscoIos, USER, GREETING, steps).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let inventory = dir.path().join("nodes.yaml");
    std::fs::write(&inventory, "nodes: []\n").expect("the inventory is written");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "pool: {{cidrs: [11.11.0.0/16]}}\n\
             nodes: {{source: file, file: {inventory}}}\n\
             routers:\n  - name: core-1\n    driver: ssh\n    vendor: cisco-ios\n    \
             address: 127.0.0.1:{port}\n    username: {USER}\n    privateKeyFile: {key}\n    \
             knownHostsFile: {known_hosts}\n    commandTimeout: 10s\n",
            inventory = inventory.display(),
            port = lab.router.port,
            key = lab.router.private_key_file.display(),
            known_hosts = lab.router.host_keys.known_hosts_file.display(),
        ),
    )
    .expect("the config is written");
    let config = config.display().to_string();

    let (ok, printed) = tokio::task::spawn_blocking(move || {
        nativeroute_tests::lab::run_nativeroute(&["check", "--config", &config])
    })
    .await
    .expect("check ran");

    assert!(ok, "{printed}");
    let probed: Vec<&str> = printed
        .lines()
        .filter(|line| line.starts_with("router core-1: ") && line.contains(": ok ("))
        .collect();
    for step in [
        "prompt recognised",
        "terminal set up (paging off)",
        "configuration entered and left without a change",
        "echo seen",
    ] {
        assert!(
            probed
                .iter()
                .any(|line| line.starts_with(&format!("router core-1: {step}: ok"))),
            "{step} not reported ok:\n{printed}"
        );
    }
    assert!(
        printed.contains("router core-1: ok (ssh: cisco-ios CLI"),
        "{printed}"
    );
    assert!(
        printed.contains("1 owned routes, 2 foreign routes inside the pool"),
        "{printed}"
    );
    lab.assert_followed_by_others().await;
}

/// Issue 13, point 10: the login lands somewhere the IOS profile does not
/// know (a Unix shell, `core-1$`): the probe says the prompt was not
/// recognised, quoting what came, and types nothing.
#[tokio::test]
async fn ios_probe_reports_a_prompt_the_profile_does_not_know() {
    let greeting = "Last login: Mon Nov 23 10:00:00 2026 from 10.0.0.5\r\ncore-1$ ";
    let lab = Transcript::start(VendorName::CiscoIos, USER, greeting, Vec::new())
        .await
        .command_timeout(Duration::from_secs(2));
    let mut driver = lab.connect().await;

    let steps = probe(&mut driver).await;

    assert_eq!(steps.len(), 1, "{:?}", probed(&steps));
    assert_eq!(steps[0].what, "prompt recognised");
    let error = steps[0]
        .result
        .clone()
        .expect_err("the prompt is not recognised");
    assert!(error.contains("no prompt within 2s"), "{error}");
    assert!(error.contains("core-1$"), "{error}");
    lab.assert_followed(driver).await;
}
