//! The terminal's habits as a client sees them over SSH: each message the
//! server meant to send separately arrives separately, and a "\r\n" cut
//! between two packets is still one "\r\n".

use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::HashAlg;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, client};

use super::{Script, ScriptedSshServer, Step, TerminalBehaviour, client_key};

const WAIT: Duration = Duration::from_secs(10);
const USER: &str = "admin";
const PROMPT: &str = "[admin@MikroTik] > ";

/// Trusts only the scripted server's own host key.
struct HostKey {
    fingerprint: String,
}

impl client::Handler for HostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(key.fingerprint(HashAlg::Sha256).to_string() == self.fingerprint)
    }
}

fn routeros() -> TerminalBehaviour {
    TerminalBehaviour {
        enter: Some("\r\n"),
        after_echo: vec!["\r{prompt}".to_owned(), "\r{prompt}{line}\r\n".to_owned()],
        prompt: PROMPT.to_owned(),
        wrap_at: None,
    }
}

/// A logged-in shell on a scripted RouterOS, with the server behind it.
async fn routeros_shell(
    steps: Vec<Step>,
) -> (
    ScriptedSshServer,
    client::Handle<HostKey>,
    russh::Channel<client::Msg>,
) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (key_path, public_key) = client_key(dir.path()).expect("a client key");
    let script = Script {
        greeting: PROMPT.to_owned(),
        steps,
    };
    let server = ScriptedSshServer::start_with(script, routeros(), USER, &public_key)
        .await
        .expect("the scripted server starts");
    let handler = HostKey {
        fingerprint: server.host_key_fingerprint(),
    };
    let mut session = client::connect(
        Arc::new(client::Config::default()),
        server.address(),
        handler,
    )
    .await
    .expect("connects and trusts the host key");
    let key = russh::keys::load_secret_key(&key_path, None).expect("the client key loads");
    let auth = session
        .authenticate_publickey(USER, PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .expect("the authentication exchange completes");
    assert!(auth.success(), "the server refused the client's key");
    let channel = session
        .channel_open_session()
        .await
        .expect("a session opens");
    channel
        .request_pty(true, "vt100", 80, 24, 0, 0, &[])
        .await
        .expect("the PTY request is sent");
    channel
        .request_shell(true)
        .await
        .expect("the shell request is sent");
    (server, session, channel)
}

/// Each data message until `last` says it was the last one, or the shell
/// closes.
async fn messages_until(
    channel: &mut russh::Channel<client::Msg>,
    last: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut messages = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, channel.wait())
            .await
            .unwrap_or_else(|_| panic!("nothing more came; so far: {messages:?}"));
        match message {
            Some(ChannelMsg::Data { data }) => {
                let text = String::from_utf8_lossy(&data).into_owned();
                let done = last(&text);
                messages.push(text);
                if done {
                    return messages;
                }
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return messages,
            Some(_) => {}
        }
    }
}

#[tokio::test]
async fn routeros_redraws_arrive_as_separate_messages_and_a_cut_crlf_is_one_ending() {
    let reply = format!("Flags: X - disabled\r\n{PROMPT}");
    let steps = vec![Step::line("/ip route print", reply.clone())];
    let (server, _session, mut channel) = routeros_shell(steps).await;
    assert_eq!(
        messages_until(&mut channel, |text| text.ends_with(PROMPT)).await,
        [PROMPT]
    );

    for piece in ["/ip route print\r", "\n"] {
        channel
            .data(piece.as_bytes())
            .await
            .expect("the piece is sent");
    }
    assert_eq!(
        messages_until(&mut channel, |text| text == reply).await,
        [
            "/ip route print\r\n".to_owned(),
            format!("\r{PROMPT}"),
            format!("\r{PROMPT}/ip route print\r\n"),
            reply,
        ]
    );
    assert!(server.finished());
    assert_eq!(server.mismatches(), Vec::<String>::new());
}

#[tokio::test]
async fn a_line_ended_with_lf_alone_is_refused_by_a_crlf_router() {
    let steps = vec![Step::line("/ip route print", PROMPT)];
    let (server, _session, mut channel) = routeros_shell(steps).await;
    messages_until(&mut channel, |text| text.ends_with(PROMPT)).await;

    channel
        .data(&b"/ip route print\n"[..])
        .await
        .expect("the line is sent");
    let messages = messages_until(&mut channel, |_| false).await;
    assert_eq!(
        messages.concat(),
        "/ip route print\r\n% scripted server: unexpected line\r\n"
    );
    assert_eq!(
        server.mismatches(),
        [r#"step 0: "/ip route print" ended with "\n", the router takes "\r\n""#]
    );
    assert!(!server.finished());
}
