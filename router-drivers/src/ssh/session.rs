//! One SSH connection to one router, on russh: host key checked before
//! anything is sent, public-key login, keepalive, and every wait bounded by
//! its own timeout. The connection is kept between syncs; each operation
//! opens a channel on it (an exec for batch CLIs, a terminal for prompted
//! ones), so a session costs one handshake, not one per sync.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate, load_secret_key};
use russh::{ChannelMsg, Disconnect, Preferred};
use std::net::ToSocketAddrs;
use tokio::net::TcpStream;

use super::host_keys::{self, HostKeyPolicy, HostKeyVerdict, VerdictSlot};
use super::redact::redact;
use super::terminal::Terminal;
use crate::DriverError;
use crate::netns::{Namespace, create_inside};

/// Bounds on every wait, so that a router that stops answering fails the
/// sync (and is retried with backoff) instead of holding the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus SSH handshake.
    pub connect: Duration,
    /// Public-key login.
    pub auth: Duration,
    /// One command: a prompt after a line, or a whole batch on one exec.
    pub command: Duration,
    /// Keepalive interval on an idle connection; three unanswered close it.
    pub keepalive: Duration,
    /// Prompted vendors: a commit or a save, which may take longer than a
    /// command. `None`: the vendor's own bound (Netmiko's: 120 s for a
    /// Junos or VyOS commit, 100 s for `write memory`), or the command
    /// timeout if that is longer.
    pub commit: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            auth: Duration::from_secs(10),
            command: Duration::from_secs(60),
            keepalive: Duration::from_secs(15),
            commit: None,
        }
    }
}

/// Where and as whom to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// The router's name, for errors and logs.
    pub router: String,
    pub host: String,
    pub port: u16,
    /// The network namespace to connect from (a management namespace);
    /// `None` for this process's own.
    pub netns: Option<String>,
    pub username: String,
    pub private_key_file: PathBuf,
    pub host_keys: HostKeyPolicy,
    pub timeouts: Timeouts,
}

impl SshTarget {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn session_error(&self, operation: &'static str, message: impl Into<String>) -> DriverError {
        DriverError::Session {
            router: self.router.clone(),
            operation,
            message: message.into(),
        }
    }
}

/// What one exec returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    /// `None` when the command was killed by a signal.
    pub status: Option<u32>,
}

/// A router's answer is bounded: a CLI that loops must not fill memory.
const MAX_OUTPUT: usize = 64 << 20;

struct HostKeyCheck {
    policy: HostKeyPolicy,
    host: String,
    port: u16,
    verdict: VerdictSlot,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = host_keys::check(&self.policy, &self.host, self.port, offered);
        let accepted = !matches!(verdict, HostKeyVerdict::Refused { .. });
        host_keys::record(&self.verdict, verdict);
        Ok(accepted)
    }
}

/// A logged-in connection to one router.
pub struct Connection {
    handle: Handle<HostKeyCheck>,
    verdict: HostKeyVerdict,
}

impl Connection {
    /// Connects, checks the host key and logs in, each step bounded by its
    /// timeout. A refused host key ends the connection before any
    /// credential or command is sent.
    pub async fn open(target: &SshTarget) -> Result<Connection, DriverError> {
        let slot = VerdictSlot::default();
        let known = host_keys::known_algorithms(&target.host_keys, &target.host, target.port);
        let mut preferred = Preferred::default();
        if !known.is_empty() {
            preferred.key = known.into();
        }
        let config = Arc::new(client::Config {
            keepalive_interval: Some(target.timeouts.keepalive),
            keepalive_max: 3,
            preferred,
            ..client::Config::default()
        });
        let check = HostKeyCheck {
            policy: target.host_keys.clone(),
            host: target.host.clone(),
            port: target.port,
            verdict: slot.clone(),
        };
        let connect_error = |message: String| DriverError::Connect {
            router: target.router.clone(),
            address: target.address(),
            message,
        };
        let connected = tokio::time::timeout(target.timeouts.connect, async {
            let stream = tcp_connect(target).await?;
            client::connect_stream(config, stream, check)
                .await
                .map_err(|err| connect_error(err.to_string()))
        })
        .await;
        let verdict = host_keys::take(&slot);
        if let Some(HostKeyVerdict::Refused { reason }) = verdict {
            return Err(DriverError::HostKey {
                router: target.router.clone(),
                address: target.address(),
                message: reason,
            });
        }
        let mut handle = match connected {
            Err(_) => {
                return Err(connect_error(format!(
                    "no SSH handshake within {:?}",
                    target.timeouts.connect
                )));
            }
            Ok(Err(err)) => return Err(err),
            Ok(Ok(handle)) => handle,
        };
        let Some(verdict) = verdict else {
            // russh always asks before finishing a handshake; refuse rather
            // than trust if it ever did not.
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            return Err(DriverError::HostKey {
                router: target.router.clone(),
                address: target.address(),
                message: "the handshake finished without a host key check".to_owned(),
            });
        };
        if let HostKeyVerdict::Learned { fingerprint } = &verdict {
            tracing::warn!(
                router = %target.router,
                address = %target.address(),
                fingerprint,
                file = %target.host_keys.known_hosts_file.display(),
                "host key trusted on first use and recorded; check it out of band"
            );
        }
        login(&mut handle, target).await?;
        tracing::debug!(router = %target.router, address = %target.address(), "ssh session open");
        Ok(Connection { handle, verdict })
    }

    /// The fingerprint of the host key that was verified (or learned).
    pub fn host_key_fingerprint(&self) -> Option<&str> {
        self.verdict.fingerprint()
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs `command`, feeding `stdin` to it, and collects its output. The
    /// whole exchange is bounded by the command timeout.
    pub async fn exec(
        &self,
        target: &SshTarget,
        command: &str,
        stdin: &str,
    ) -> Result<ExecOutput, DriverError> {
        tracing::debug!(router = %target.router, command = %redact(command), stdin_lines = stdin.lines().count(), "ssh exec");
        let exchange = async {
            let channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|err| target.session_error("opening a channel", err.to_string()))?;
            channel
                .exec(true, command)
                .await
                .map_err(|err| target.session_error("starting a command", err.to_string()))?;
            let (mut reader, writer) = channel.split();
            // Written and read at once: a command that answers while it
            // reads must never wait on us reading.
            let write = async {
                writer.data(stdin.as_bytes()).await?;
                writer.eof().await
            };
            let read = async {
                let mut output = ExecOutput::default();
                let mut killed = false;
                let mut size = 0usize;
                while let Some(message) = reader.wait().await {
                    match message {
                        ChannelMsg::Data { data } => {
                            size += data.len();
                            output.stdout.push_str(&String::from_utf8_lossy(&data));
                        }
                        ChannelMsg::ExtendedData { data, .. } => {
                            size += data.len();
                            output.stderr.push_str(&String::from_utf8_lossy(&data));
                        }
                        ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                        ChannelMsg::ExitSignal { .. } => killed = true,
                        ChannelMsg::Failure => {
                            return Err(target.session_error(
                                "starting a command",
                                "the router refused to run commands on this account \
                                 (an exec request was denied)",
                            ));
                        }
                        _ => {}
                    }
                    if size > MAX_OUTPUT {
                        return Err(target.session_error(
                            "reading a command's output",
                            format!("more than {MAX_OUTPUT} bytes of output"),
                        ));
                    }
                }
                if output.status.is_none() && !killed {
                    // Neither an exit status nor a signal: the channel was
                    // cut under the command (sshd stopped, the link went),
                    // so the connection is not to be trusted again.
                    return Err(target.session_error(
                        "reading a command's output",
                        "the channel closed before the command ended",
                    ));
                }
                Ok(output)
            };
            let (written, output) = tokio::join!(write, read);
            let output = output?;
            if let Err(err) = written
                && output.status.is_none()
            {
                return Err(target.session_error("sending a batch", err.to_string()));
            }
            Ok(output)
        };
        let output = tokio::time::timeout(target.timeouts.command, exchange)
            .await
            .map_err(|_| {
                target.session_error(
                    "running a command",
                    format!(
                        "{:?} did not finish within {:?}",
                        redact(command),
                        target.timeouts.command
                    ),
                )
            })??;
        tracing::debug!(
            router = %target.router,
            status = ?output.status,
            stdout = %redact(&output.stdout),
            stderr = %redact(&output.stderr),
            "ssh exec finished"
        );
        Ok(output)
    }

    /// Opens an interactive terminal (a PTY and a shell), as a person would
    /// get: the way network operating systems expect to be driven.
    pub async fn terminal(&self, target: &SshTarget) -> Result<Terminal, DriverError> {
        let opening = async {
            let channel = self.handle.channel_open_session().await?;
            // Wide, so that no CLI wraps a long route line.
            channel
                .request_pty(false, "vt100", 511, 24, 0, 0, &[])
                .await?;
            channel.request_shell(true).await?;
            Ok::<_, russh::Error>(channel)
        };
        let channel = tokio::time::timeout(target.timeouts.command, opening)
            .await
            .map_err(|_| {
                target.session_error(
                    "opening a terminal",
                    format!("no answer within {:?}", target.timeouts.command),
                )
            })?
            .map_err(|err| target.session_error("opening a terminal", err.to_string()))?;
        Ok(Terminal::new(channel, target.clone()))
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A TCP connection to the router, made from the configured namespace.
async fn tcp_connect(target: &SshTarget) -> Result<TcpStream, DriverError> {
    let connect_error = |err: std::io::Error| DriverError::Connect {
        router: target.router.clone(),
        address: target.address(),
        message: err.to_string(),
    };
    let Some(netns) = &target.netns else {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(connect_error)?;
        let _ = stream.set_nodelay(true);
        return Ok(stream);
    };
    let namespace = Namespace::open(&target.router, netns)?;
    let (host, port, timeout) = (target.host.clone(), target.port, target.timeouts.connect);
    let router = target.router.clone();
    let address = target.address();
    create_inside(&target.router, Some(namespace), move || {
        let error = |err: std::io::Error| DriverError::Connect {
            router: router.clone(),
            address: address.clone(),
            message: err.to_string(),
        };
        let mut last = std::io::Error::other("the name resolves to no address");
        for candidate in (host.as_str(), port).to_socket_addrs().map_err(error)? {
            match std::net::TcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => {
                    stream.set_nonblocking(true).map_err(error)?;
                    let _ = stream.set_nodelay(true);
                    return TcpStream::from_std(stream).map_err(error);
                }
                Err(err) => last = err,
            }
        }
        Err(error(last))
    })
    .await
}

async fn login(handle: &mut Handle<HostKeyCheck>, target: &SshTarget) -> Result<(), DriverError> {
    let auth_error = |message: String| DriverError::Auth {
        router: target.router.clone(),
        username: target.username.clone(),
        message,
    };
    let key = load_secret_key(&target.private_key_file, None).map_err(|err| {
        auth_error(format!(
            "cannot read the private key {}: {err} (nativeroute needs an unencrypted OpenSSH or \
             PEM key file)",
            target.private_key_file.display()
        ))
    })?;
    let attempt = async {
        let rsa_hash = handle.best_supported_rsa_hash().await?.flatten();
        handle
            .authenticate_publickey(
                target.username.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash),
            )
            .await
    };
    match tokio::time::timeout(target.timeouts.auth, attempt).await {
        Err(_) => Err(auth_error(format!(
            "no answer within {:?}",
            target.timeouts.auth
        ))),
        Ok(Err(err)) => Err(auth_error(err.to_string())),
        Ok(Ok(AuthResult::Success)) => Ok(()),
        Ok(Ok(AuthResult::Failure { .. })) => Err(auth_error(format!(
            "the router refused the key {} (is its public key in the user's authorized keys?)",
            target.private_key_file.display()
        ))),
    }
}
