//! A scripted SSH server standing in for a router's CLI (Cisco IOS, Arista
//! EOS, Junos, VyOS, RouterOS), which cannot run here. It replays a script:
//! each line the client types must be the next expected one; the server
//! echoes it as a terminal does and answers with the vendor's output and
//! next prompt. Anything off script is recorded in
//! [`ScriptedSshServer::mismatches`] and closes the shell at once, so a
//! driver that goes astray fails fast instead of waiting for a prompt.
//!
//! The terminal is a plain one unless a [`TerminalBehaviour`] says
//! otherwise: routers differ in the line ending they act on, in what they
//! redraw after an echo (RouterOS) and in where they wrap, and drivers have
//! to cope with each.
//!
//! It listens on 127.0.0.1 only, with a fresh ed25519 host key, and lets in
//! one user with one public key.

mod connection;
mod lines;
mod replay;
mod terminal;
#[cfg(test)]
mod wire_tests;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use russh::MethodKind;
use russh::keys::ssh_key::{HashAlg, LineEnding, PublicKey};
use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Config, RunningServerHandle, Server as _};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use connection::{Acceptor, Shared};
use replay::Replay;
pub use terminal::TerminalBehaviour;

/// What the router says and expects, in order, across every shell of every
/// connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// Sent when a shell starts: the banner and the first prompt.
    pub greeting: String,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The client must send exactly this line next (without line ending);
    /// `{word}` in it stands for one word the client chooses (letters,
    /// digits, `-`, `_`), such as a session name.
    /// The server echoes it as a terminal does (the line and "\r\n"), then
    /// sends `reply` verbatim, which normally ends with the vendor's next
    /// prompt, e.g. "Router(config)#".
    Line { expect: String, reply: String },
    /// The client opens a new shell channel here; the server sends the
    /// greeting. The first shell of all needs no such step.
    NewShell,
    /// Runs once the line before it has been matched, before that line's
    /// reply leaves: whatever it does has happened by the time the client
    /// reads the prompt (a test ends a leadership term here).
    Call(Hook),
}

impl Step {
    pub fn line(expect: impl Into<String>, reply: impl Into<String>) -> Self {
        Step::Line {
            expect: expect.into(),
            reply: reply.into(),
        }
    }

    pub fn call(action: impl Fn() + Send + Sync + 'static) -> Self {
        Step::Call(Hook(Arc::new(action)))
    }
}

/// Something a script does on its own, between two lines.
#[derive(Clone)]
pub struct Hook(Arc<dyn Fn() + Send + Sync>);

impl Hook {
    fn run(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// The same hook, not merely one that does the same.
impl PartialEq for Hook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Hook {}

/// A running scripted server; it stops when dropped.
pub struct ScriptedSshServer {
    address: SocketAddr,
    host_key: PublicKey,
    known_hosts_line: String,
    shared: Arc<Shared>,
    shutdown: RunningServerHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ScriptedSshServer {
    /// Listens on 127.0.0.1 with a fresh ed25519 host key, and accepts only
    /// `username` with the key of `client_public_key` (an OpenSSH public key
    /// line, as in authorized_keys). The terminal is the plain one.
    pub async fn start(
        script: Script,
        username: &str,
        client_public_key: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            script,
            TerminalBehaviour::default(),
            username,
            client_public_key,
        )
        .await
    }

    /// As [`start`](Self::start), with the router's own terminal habits.
    pub async fn start_with(
        script: Script,
        terminal: TerminalBehaviour,
        username: &str,
        client_public_key: &str,
    ) -> anyhow::Result<Self> {
        terminal.check()?;
        let client_key = PublicKey::from_openssh(client_public_key).with_context(|| {
            format!("the client key {client_public_key:?} is not an OpenSSH public key line")
        })?;
        let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .context("cannot generate an ed25519 host key for the scripted SSH server")?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("the scripted SSH server cannot listen on 127.0.0.1")?;
        let address = listener.local_addr()?;
        let known_hosts_line = format!(
            "[{}]:{} {}",
            address.ip(),
            address.port(),
            PublicKey::new(host_key.public_key().key_data().clone(), "").to_openssh()?
        );
        let shared = Arc::new(Shared {
            username: username.to_owned(),
            client_key: client_key.key_data().clone(),
            replay: std::sync::Mutex::new(Replay::new(script, terminal)),
            connections: AtomicUsize::new(0),
        });
        let acceptor = Acceptor {
            shared: Arc::clone(&shared),
        };
        let host_public_key = host_key.public_key().clone();
        let (shutdown, task) = serve(acceptor, listener, config(host_key)).await?;
        Ok(Self {
            address,
            host_key: host_public_key,
            known_hosts_line,
            shared,
            shutdown,
            task: Some(task),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The server's line for a known_hosts file: "[127.0.0.1]:PORT ssh-ed25519 AAAA…".
    pub fn known_hosts_line(&self) -> String {
        self.known_hosts_line.clone()
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it: "SHA256:…".
    pub fn host_key_fingerprint(&self) -> String {
        self.host_key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Every line received, in order, across all shells of all connections.
    pub fn received(&self) -> Vec<String> {
        self.shared.replay().received().to_vec()
    }

    /// Where clients left the script; empty when they followed it.
    pub fn mismatches(&self) -> Vec<String> {
        self.shared.replay().mismatches().to_vec()
    }

    /// Whether every step was consumed.
    pub fn finished(&self) -> bool {
        self.shared.replay().finished()
    }

    /// How many SSH connections were accepted, including any that then
    /// failed to authenticate.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting and disconnects every client; returns once every
    /// connection has ended.
    pub async fn stop(mut self) {
        self.shutdown
            .shutdown("the scripted server stopped".to_owned());
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // Each connection disconnects in its own task after the accept loop
        // ends; each holds `shared` until then.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.shared) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ScriptedSshServer {
    fn drop(&mut self) {
        self.shutdown
            .shutdown("the scripted server stopped".to_owned());
    }
}

fn config(host_key: PrivateKey) -> Config {
    Config {
        methods: [MethodKind::PublicKey].as_slice().into(),
        // Refusing a wrong key slowly protects nothing here and slows tests.
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        // Replies are small and a driver waits for each prompt.
        nodelay: true,
        ..Config::default()
    }
}

/// Runs russh's accept loop in a task, which owns the listener; the handle
/// it returns is how [`ScriptedSshServer::stop`] ends it.
async fn serve(
    mut acceptor: Acceptor,
    listener: TcpListener,
    config: Config,
) -> anyhow::Result<(RunningServerHandle, JoinHandle<std::io::Result<()>>)> {
    let (handle_sender, handle) = oneshot::channel();
    let task = tokio::spawn(async move {
        let running = acceptor.run_on_socket(Arc::new(config), &listener);
        let _ = handle_sender.send(running.handle());
        running.await
    });
    let shutdown = handle
        .await
        .context("the scripted SSH server stopped before it started")?;
    Ok((shutdown, task))
}

/// Makes an ed25519 key pair for a test client: the private key in OpenSSH
/// format in a new file under `dir` (mode 0600, loadable with
/// `russh::keys::load_secret_key`), and the public key line.
pub fn client_key(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .context("cannot generate an ed25519 client key")?;
    let private = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the client key in OpenSSH format")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the client public key")?;
    let (mut file, path) = tempfile::Builder::new()
        .prefix("id_ed25519-")
        .tempfile_in(dir)
        .and_then(|file| file.keep().map_err(|error| error.error))
        .with_context(|| format!("cannot create a key file in {}", dir.display()))?;
    // OpenSSH refuses a private key that others can read.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(private.as_bytes()))
        .with_context(|| format!("cannot write the client key {}", path.display()))?;
    Ok((path, public))
}
