//! One SSH connection to the scripted server: public-key authentication for
//! the one expected client, session channels that become shells, and every
//! typed line handed to the shared [`Replay`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::public::KeyData;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Pty};

use super::lines::LineSplitter;
use super::replay::Replay;
use super::terminal::TerminalBehaviour;

/// What the server and all its connections share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) username: String,
    pub(super) client_key: KeyData,
    pub(super) replay: Mutex<Replay>,
    pub(super) connections: AtomicUsize,
}

impl Shared {
    pub(super) fn replay(&self) -> MutexGuard<'_, Replay> {
        // A test that panicked while holding the lock leaves a usable state.
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accepts(&self, user: &str, key: &PublicKey) -> Auth {
        if user == self.username && key.key_data() == &self.client_key {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

/// Makes one [`Connection`] per accepted TCP connection.
pub(super) struct Acceptor {
    pub(super) shared: Arc<Shared>,
}

impl russh::server::Server for Acceptor {
    type Handler = Connection;

    fn new_client(&mut self, _peer: Option<SocketAddr>) -> Connection {
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        Connection {
            shared: Arc::clone(&self.shared),
            shells: HashMap::new(),
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::debug!(%error, "a scripted SSH connection ended with an error");
    }
}

pub(super) struct Connection {
    shared: Arc<Shared>,
    shells: HashMap<ChannelId, Shell>,
}

/// A session channel; it becomes a shell when the client asks for one.
#[derive(Debug, Default)]
struct Shell {
    started: bool,
    /// We sent EOF and close: whatever else arrives is ignored.
    closing: bool,
    lines: LineSplitter,
}

impl Shell {
    fn new(terminal: &TerminalBehaviour) -> Self {
        Self {
            lines: LineSplitter::new(terminal.waits_after_cr()),
            ..Self::default()
        }
    }
}

impl Connection {
    fn mismatch(&self, problem: String) {
        self.shared.replay().mismatch(problem);
    }

    /// A shell ends, by the client or with the connection: a line still
    /// waiting to learn whether "\n" follows its "\r" never will, and
    /// goes to the script as ended by a bare "\r", so that it shows in the
    /// mismatches instead of vanishing.
    fn abandon(&self, mut shell: Shell) {
        if !shell.started || shell.closing {
            return;
        }
        if let Some(line) = shell.lines.take_pending() {
            self.shared.replay().line(&line);
        }
    }

    fn start_shell(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(shell) = self.shells.get_mut(&channel).filter(|shell| !shell.started) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        shell.started = true;
        let greeting = {
            let mut replay = self.shared.replay();
            replay.open_shell();
            replay.greeting().to_owned()
        };
        session.channel_success(channel)?;
        session.data(channel, greeting)?;
        Ok(())
    }

    fn refuse(
        &self,
        channel: ChannelId,
        problem: String,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        self.mismatch(problem);
        session.channel_failure(channel)
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    // Refusing at the offer spares the client a signature it cannot use.
    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.shared.accepts(user, offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.shared.accepts(user, key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The handler callbacks serve the channel; the Channel object is
        // dropped, since an unread one would stall the connection once its
        // queue fills.
        let shell = Shell::new(self.shared.replay().terminal());
        self.shells.insert(channel.id(), shell);
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    // Like sshd without AcceptEnv: refused, and harmless.
    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start_shell(channel, session)
    }

    // These vendors are driven through their interactive CLI only.
    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data);
        self.refuse(channel, format!("exec requested: {command}"), session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, format!("subsystem requested: {name}"), session)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(shell) = self.shells.get_mut(&channel).filter(|shell| !shell.closing) else {
            return Ok(());
        };
        if !shell.started {
            let problem = format!(
                "data before a shell was requested: {:?}",
                String::from_utf8_lossy(data)
            );
            self.shared.replay().mismatch(problem);
            return Ok(());
        }
        for line in shell.lines.push(data) {
            let answer = self.shared.replay().line(&line);
            // Session::data only queues, in order, each call as its own
            // channel data message, so replies leave in the order the lines
            // came and with the terminal's message boundaries.
            for message in answer.messages {
                session.data(channel, message)?;
            }
            if answer.close {
                shell.closing = true;
                session.eof(channel)?;
                session.close(channel)?;
                break;
            }
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(shell) = self.shells.remove(&channel) {
            self.abandon(shell);
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (_, shell) in std::mem::take(&mut self.shells) {
            self.abandon(shell);
        }
    }
}
