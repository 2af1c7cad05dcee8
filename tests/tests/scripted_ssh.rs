//! The scripted SSH server that stands in for routers' CLIs, driven by a
//! small russh client the way a router driver drives a device: known_hosts
//! check, public-key login, PTY, shell, then lines typed at prompts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nativeroute_tests::netns::run;
use nativeroute_tests::scripted_ssh::{Script, ScriptedSshServer, Step, client_key};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate, check_known_hosts_path};
use russh::{ChannelMsg, client};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);
const USER: &str = "admin";
const UNEXPECTED: &str = "% scripted server: unexpected line\r\n";

/// A scripted router and what a client needs to reach it.
struct Router {
    server: ScriptedSshServer,
    key: PathBuf,
    known_hosts: PathBuf,
    dir: TempDir,
}

impl Router {
    async fn start(greeting: &str, steps: Vec<Step>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (key, public_key) = client_key(dir.path()).expect("a client key");
        let script = Script {
            greeting: greeting.to_owned(),
            steps,
        };
        let server = ScriptedSshServer::start(script, USER, &public_key)
            .await
            .expect("the scripted server starts");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, server.known_hosts_line() + "\n")
            .expect("known_hosts is written");
        Self {
            server,
            key,
            known_hosts,
            dir,
        }
    }

    /// Connects and logs in as USER with the given key; returns the session
    /// and whether the server let it in.
    async fn log_in(&self, user: &str, key: &Path) -> (client::Handle<KnownHosts>, bool) {
        let known_hosts = KnownHosts {
            path: self.known_hosts.clone(),
            port: self.server.address().port(),
        };
        let mut session = tokio::time::timeout(
            WAIT,
            client::connect(
                Arc::new(client::Config::default()),
                self.server.address(),
                known_hosts,
            ),
        )
        .await
        .expect("connects in time")
        .expect("connects and trusts the host key from known_hosts");
        let key = russh::keys::load_secret_key(key, None).expect("the client key loads");
        let auth = session
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .expect("the authentication exchange completes");
        (session, auth.success())
    }

    async fn connect(&self) -> client::Handle<KnownHosts> {
        let (session, accepted) = self.log_in(USER, &self.key).await;
        assert!(accepted, "the server refused the scripted client's key");
        session
    }
}

/// Trusts a server only if known_hosts lists its key.
struct KnownHosts {
    path: PathBuf,
    port: u16,
}

impl client::Handler for KnownHosts {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(check_known_hosts_path(
            "127.0.0.1",
            self.port,
            key,
            &self.path,
        )?)
    }
}

/// The client's end of one shell, as a terminal sees it.
struct Shell {
    channel: russh::Channel<client::Msg>,
    unread: String,
    closed: bool,
    refusals: usize,
}

impl Shell {
    async fn open(session: &client::Handle<KnownHosts>, pty: bool) -> Self {
        let channel = session
            .channel_open_session()
            .await
            .expect("a session channel opens");
        if pty {
            channel
                .request_pty(true, "vt100", 511, 24, 0, 0, &[])
                .await
                .expect("the PTY request is sent");
        }
        channel
            .request_shell(true)
            .await
            .expect("the shell request is sent");
        Self::on(channel)
    }

    fn on(channel: russh::Channel<client::Msg>) -> Self {
        Self {
            channel,
            unread: String::new(),
            closed: false,
            refusals: 0,
        }
    }

    async fn send(&self, text: &str) {
        self.channel
            .data(text.as_bytes())
            .await
            .expect("the line is sent");
    }

    async fn receive(&mut self) {
        let message = tokio::time::timeout(WAIT, self.channel.wait())
            .await
            .unwrap_or_else(|_| panic!("nothing came from the server; so far: {:?}", self.unread));
        match message {
            Some(ChannelMsg::Data { data }) => {
                self.unread.push_str(&String::from_utf8_lossy(&data))
            }
            Some(ChannelMsg::Failure) => self.refusals += 1,
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => self.closed = true,
            Some(_) => {}
        }
    }

    /// Everything up to and including `prompt`.
    async fn read_until(&mut self, prompt: &str) -> String {
        loop {
            if let Some(at) = self.unread.find(prompt) {
                return self.unread.drain(..at + prompt.len()).collect();
            }
            assert!(
                !self.closed,
                "the shell closed before {prompt:?}; got {:?}",
                self.unread
            );
            self.receive().await;
        }
    }

    /// Everything until the server ends the shell.
    async fn read_to_close(&mut self) -> String {
        while !self.closed {
            self.receive().await;
        }
        std::mem::take(&mut self.unread)
    }
}

fn ios_configuration() -> Vec<Step> {
    vec![
        Step::line("terminal length 0", "Router#"),
        Step::line(
            "configure terminal",
            "Enter configuration commands, one per line.  End with CNTL/Z.\r\nRouter(config)#",
        ),
        Step::line(
            "ip route 10.1.0.0 255.255.255.0 192.0.2.1",
            "Router(config)#",
        ),
        Step::line("end", "Router#"),
    ]
}

#[tokio::test]
async fn scripted_exchange_is_echoed_answered_and_finished() {
    let router = Router::start("\r\nRouter#", ios_configuration()).await;
    let session = router.connect().await;
    let mut shell = Shell::open(&session, true).await;
    assert_eq!(shell.read_until("Router#").await, "\r\nRouter#");

    shell.send("terminal length 0\r\n").await;
    assert_eq!(shell.read_until("#").await, "terminal length 0\r\nRouter#");
    shell.send("configure terminal\n").await;
    assert_eq!(
        shell.read_until("(config)#").await,
        "configure terminal\r\nEnter configuration commands, one per line.  End with CNTL/Z.\r\nRouter(config)#"
    );
    shell
        .send("ip route 10.1.0.0 255.255.255.0 192.0.2.1\r")
        .await;
    assert_eq!(
        shell.read_until("(config)#").await,
        "ip route 10.1.0.0 255.255.255.0 192.0.2.1\r\nRouter(config)#"
    );
    shell.send("end\r\n").await;
    assert_eq!(shell.read_until("Router#").await, "end\r\nRouter#");
    assert!(router.server.finished());

    // Leaving the shell is not part of the script and needs not be.
    shell.send("exit\r\n").await;
    assert_eq!(shell.read_to_close().await, "exit\r\n");
    assert_eq!(router.server.mismatches(), Vec::<String>::new());
    assert_eq!(
        router.server.received(),
        [
            "terminal length 0",
            "configure terminal",
            "ip route 10.1.0.0 255.255.255.0 192.0.2.1",
            "end",
            "exit"
        ]
    );
}

#[tokio::test]
async fn off_script_line_is_reported_and_closes_the_shell() {
    let router = Router::start("Router#", ios_configuration()).await;
    let session = router.connect().await;
    let mut shell = Shell::open(&session, true).await;
    shell.read_until("Router#").await;

    shell
        .send("terminal length 0\r\nshow running-config\r\n")
        .await;
    assert_eq!(
        shell.read_to_close().await,
        format!("terminal length 0\r\nRouter#show running-config\r\n{UNEXPECTED}")
    );
    assert_eq!(
        router.server.mismatches(),
        [r#"step 1: expected "configure terminal", got "show running-config""#]
    );
    assert!(!router.server.finished());
}

#[tokio::test]
async fn line_after_the_script_ended_is_reported() {
    let router = Router::start(
        "Router#",
        vec![Step::line("show clock", "12:00\r\nRouter#")],
    )
    .await;
    let session = router.connect().await;
    let mut shell = Shell::open(&session, true).await;
    shell.read_until("Router#").await;

    shell.send("show clock\r\nshow clock\r\n").await;
    let output = shell.read_to_close().await;
    assert!(output.ends_with(UNEXPECTED), "got {output:?}");
    assert_eq!(
        router.server.mismatches(),
        [r#"after the script ended, got "show clock""#]
    );
    assert!(router.server.finished());
}

#[tokio::test]
async fn two_lines_in_one_write_are_answered_in_order() {
    let steps = vec![
        Step::line("show clock", "12:00:00 UTC\r\nRouter#"),
        Step::line("show version", "Cisco IOS Software\r\nRouter#"),
    ];
    let router = Router::start("Router#", steps).await;
    let session = router.connect().await;
    let mut shell = Shell::open(&session, true).await;
    shell.read_until("Router#").await;

    shell.send("show clock\r\nshow version\r\n").await;
    assert_eq!(
        shell.read_until("Software\r\nRouter#").await,
        "show clock\r\n12:00:00 UTC\r\nRouter#show version\r\nCisco IOS Software\r\nRouter#"
    );
    assert!(router.server.finished());
    assert_eq!(router.server.mismatches(), Vec::<String>::new());
}

#[tokio::test]
async fn lines_cut_anywhere_are_reassembled() {
    let steps = vec![
        Step::line("show clock", "Router#"),
        Step::line("show version", "Router#"),
    ];
    let router = Router::start("Router#", steps).await;
    let session = router.connect().await;
    let mut shell = Shell::open(&session, true).await;
    shell.read_until("Router#").await;

    for piece in ["show cl", "ock\r", "\nshow version", "\r"] {
        shell.send(piece).await;
    }
    shell.read_until("show version\r\nRouter#").await;
    assert_eq!(router.server.received(), ["show clock", "show version"]);
    assert_eq!(router.server.mismatches(), Vec::<String>::new());
}

#[tokio::test]
async fn wrong_client_key_or_user_is_refused() {
    let router = Router::start("Router#", vec![]).await;
    let (other_key, _) = client_key(router.dir.path()).expect("another client key");

    let (_session, accepted) = router.log_in(USER, &other_key).await;
    assert!(!accepted, "a key the server was not given got in");
    let (_session, accepted) = router.log_in("root", &router.key).await;
    assert!(!accepted, "the right key got in as another user");
    assert_eq!(router.server.connections(), 2);
    assert_eq!(router.server.received(), Vec::<String>::new());
}

#[tokio::test]
async fn two_shells_on_one_connection_consume_new_shell_steps() {
    let steps = vec![
        Step::NewShell,
        Step::line("show ip route", "Router#"),
        Step::NewShell,
        Step::line("show ip interface brief", "Router#"),
    ];
    let router = Router::start("\r\nRouter#", steps).await;
    let session = router.connect().await;

    let mut first = Shell::open(&session, true).await;
    first.read_until("Router#").await;
    first.send("show ip route\r\n").await;
    first.read_until("route\r\nRouter#").await;
    first.send("exit\r\n").await;
    first.read_to_close().await;
    assert!(
        !router.server.finished(),
        "the second shell is still to come"
    );

    // A shell without a PTY works as well.
    let mut second = Shell::open(&session, false).await;
    assert_eq!(second.read_until("Router#").await, "\r\nRouter#");
    second.send("show ip interface brief\r\n").await;
    second.read_until("brief\r\nRouter#").await;

    assert!(router.server.finished());
    assert_eq!(router.server.mismatches(), Vec::<String>::new());
    assert_eq!(router.server.connections(), 1);
}

#[tokio::test]
async fn shell_opened_where_a_line_was_expected_is_reported() {
    let steps = vec![Step::line("show clock", "Router#"), Step::NewShell];
    let router = Router::start("Router#", steps).await;
    let session = router.connect().await;

    let mut first = Shell::open(&session, true).await;
    first.read_until("Router#").await;
    let mut second = Shell::open(&session, true).await;
    // The greeting comes anyway, so that the client is not left waiting.
    second.read_until("Router#").await;
    assert_eq!(
        router.server.mismatches(),
        [r#"step 0: expected "show clock", got a new shell"#]
    );
}

#[tokio::test]
async fn connections_are_counted_whether_sequential_or_concurrent() {
    let steps = vec![
        Step::line("show clock", "Router#"),
        Step::NewShell,
        Step::NewShell,
    ];
    let router = Router::start("Router#", steps).await;
    {
        let session = router.connect().await;
        let mut shell = Shell::open(&session, true).await;
        shell.read_until("Router#").await;
        shell.send("show clock\r\n").await;
        shell.read_until("clock\r\nRouter#").await;
    }
    assert_eq!(router.server.connections(), 1);

    let log_in_and_leave = || async {
        let session = router.connect().await;
        let mut shell = Shell::open(&session, true).await;
        shell.read_until("Router#").await;
        shell.send("exit\r\n").await;
        shell.read_to_close().await
    };
    let (one, other) = tokio::join!(log_in_and_leave(), log_in_and_leave());
    assert_eq!((one.as_str(), other.as_str()), ("exit\r\n", "exit\r\n"));

    assert_eq!(router.server.connections(), 3);
    assert!(router.server.finished());
    assert_eq!(router.server.mismatches(), Vec::<String>::new());
}

#[tokio::test]
async fn exec_is_refused_and_reported() {
    let router = Router::start("Router#", vec![]).await;
    let session = router.connect().await;
    let channel = session
        .channel_open_session()
        .await
        .expect("a session channel opens");
    channel
        .exec(true, "show version")
        .await
        .expect("the exec request is sent");
    let mut shell = Shell::on(channel);
    while shell.refusals == 0 {
        assert!(
            !shell.closed,
            "the channel closed without refusing the exec"
        );
        shell.receive().await;
    }
    assert_eq!(router.server.mismatches(), ["exec requested: show version"]);
}

#[tokio::test]
async fn stop_disconnects_clients_and_stops_listening() {
    let router = Router::start("Router#", vec![]).await;
    let session = router.connect().await;
    let mut shell = Shell::open(&session, true).await;
    shell.read_until("Router#").await;
    let address = router.server.address();

    router.server.stop().await;
    shell.read_to_close().await;
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the server still listens on {address} after stop()"
    );
}

#[tokio::test]
async fn host_key_line_and_fingerprint_agree_with_ssh_keygen() {
    let router = Router::start("Router#", vec![]).await;
    let line = router.server.known_hosts_line();
    let port = router.server.address().port();
    assert!(
        line.starts_with(&format!("[127.0.0.1]:{port} ssh-ed25519 AAAA")),
        "{line}"
    );
    let known_hosts = router.known_hosts.to_str().expect("a UTF-8 path");
    let listed = run("ssh-keygen", &["-lf", known_hosts]);
    assert_eq!(
        listed.split_whitespace().nth(1),
        Some(router.server.host_key_fingerprint().as_str()),
        "ssh-keygen -lf printed {listed:?}"
    );
}

#[tokio::test]
async fn client_key_is_a_private_openssh_key_file() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let (path, public_key) = client_key(dir.path()).expect("a client key");
    let mode = std::fs::metadata(&path)
        .expect("the key file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let loaded = russh::keys::load_secret_key(&path, None).expect("russh loads the key");
    assert_eq!(
        loaded.public_key().to_openssh().expect("encodes"),
        public_key
    );
    let derived = run(
        "ssh-keygen",
        &["-y", "-f", path.to_str().expect("a UTF-8 path")],
    );
    assert_eq!(derived.trim(), public_key);
}
