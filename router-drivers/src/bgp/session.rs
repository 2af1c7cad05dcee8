//! One BGP session to a router: the TCP connection, the OPEN exchange, and
//! a task that keeps the session alive (KEEPALIVEs, the hold timer) and
//! reads what the router sends.
//!
//! nativeroute only ever opens the connection (RFC 4271's active side) and
//! only from the leader, so there is no listener and no collision to
//! resolve on its side.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::wire::{
    self, AS_TRANS, Capability, Family, Message, Notification, Open, Update, error_code,
};
use super::{BgpRouter, md5};
use crate::DriverError;
use crate::netns::{Namespace, create_inside};

/// A route the router sent us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub via: IpAddr,
    /// Whether it carries nativeroute's community.
    pub ours: bool,
}

/// Whether the session is up, and why not when it is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionState {
    Established,
    Down(String),
}

/// The sending half, and whether a write was cut off half-way (a timeout):
/// after that the byte stream is broken, and nothing more may be written.
pub(crate) struct Writer {
    half: OwnedWriteHalf,
    broken: bool,
}

impl Writer {
    /// Writes `bytes` whole or marks the stream broken: a write dropped
    /// half-way (its future cancelled) leaves `broken` set.
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.broken {
            return Err(std::io::Error::other(
                "an earlier write to the session was cut off half-way",
            ));
        }
        self.broken = true;
        self.half.write_all(bytes).await?;
        self.broken = false;
        Ok(())
    }
}

/// What the session task and the driver share.
#[derive(Debug, Default)]
pub(crate) struct Ribs {
    /// Adj-RIB-Out: what was written to this session, by destination.
    pub announced: BTreeMap<IpNet, IpAddr>,
    /// Adj-RIB-In: what the router sent, by destination.
    pub received: BTreeMap<IpNet, Received>,
    /// The families whose End-of-RIB the router sent.
    pub router_end_of_rib: BTreeSet<Family>,
}

/// An established session. Dropping it closes the connection without a
/// NOTIFICATION, which a graceful-restart peer takes as a restart: it
/// keeps our routes until the next session's End-of-RIB or its restart
/// time, so a controller that stops or hands over withdraws nothing.
pub(crate) struct Session {
    pub peer: Open,
    pub families: BTreeSet<Family>,
    pub local_address: SocketAddr,
    pub identifier: Ipv4Addr,
    pub hold_time: Duration,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    pub ribs: Arc<Mutex<Ribs>>,
    state: watch::Sender<SessionState>,
    pub wake: Arc<Notify>,
    task: JoinHandle<()>,
    community: u32,
    router: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Connects, exchanges OPENs and waits for the router's KEEPALIVE.
    pub async fn open(config: &BgpRouter) -> Result<Session, DriverError> {
        let stream = connect(config).await?;
        let local_address = stream
            .local_addr()
            .map_err(|err| connect_error(config, err))?;
        let identifier = match (config.router_id, local_address.ip()) {
            (Some(id), _) => id,
            (None, IpAddr::V4(address)) => address,
            (None, IpAddr::V6(_)) => {
                return Err(session_error(
                    config,
                    "opening the session",
                    "the session runs over IPv6, so routerId must be set (a BGP identifier is an IPv4 address)",
                ));
            }
        };
        let (mut reader, mut writer) = stream.into_split();
        let ours = our_open(config, identifier);
        write(&mut writer, &Message::Open(ours), config).await?;
        let mut buffer = Vec::new();
        let wait = config.connect_timeout.max(Duration::from_secs(5));
        let peer = match awaiting(
            Awaiting::Open,
            &mut reader,
            &mut writer,
            &mut buffer,
            wait,
            config,
        )
        .await?
        {
            Message::Open(open) => open,
            other => return Err(unexpected(config, &other, Awaiting::Open)),
        };
        if let Err((notification, why)) = check_open(config, identifier, &peer) {
            let _ = write(&mut writer, &Message::Notification(notification), config).await;
            return Err(session_error(config, "checking the router's OPEN", why));
        }
        let hold_time = negotiated_hold(config.hold_time, peer.hold_time);
        write(&mut writer, &Message::Keepalive, config).await?;
        awaiting(
            Awaiting::Keepalive,
            &mut reader,
            &mut writer,
            &mut buffer,
            wait,
            config,
        )
        .await?;
        let families: BTreeSet<Family> = [Family::Ipv4Unicast, Family::Ipv6Unicast]
            .into_iter()
            .filter(|family| peer.supports_family(*family))
            .collect();
        tracing::info!(
            router = %config.name,
            peer = %config.address,
            peer_as = peer.peer_as(),
            identifier = %peer.identifier,
            ?hold_time,
            ?families,
            graceful_restart = ?peer.graceful_restart_time(),
            "BGP session established"
        );
        let writer = Arc::new(tokio::sync::Mutex::new(Writer {
            half: writer,
            broken: false,
        }));
        let ribs = Arc::new(Mutex::new(Ribs::default()));
        let (state, _) = watch::channel(SessionState::Established);
        let wake = Arc::new(Notify::new());
        let keeper = Keeper {
            router: config.name.clone(),
            reader,
            buffer,
            writer: Arc::clone(&writer),
            ribs: Arc::clone(&ribs),
            state: state.clone(),
            wake: Arc::clone(&wake),
            hold_time,
            community: config.ownership.bgp_community,
            local_as: config.local_as,
            identifier,
            ibgp: config.local_as == config.peer_as,
            families: families.clone(),
            pool: config.ownership.pool.clone(),
        };
        let task = tokio::spawn(keeper.run());
        Ok(Session {
            peer,
            families,
            local_address,
            identifier,
            hold_time,
            writer,
            ribs,
            state,
            wake,
            task,
            community: config.ownership.bgp_community,
            router: config.name.clone(),
        })
    }

    /// The session's state as it changes.
    pub fn watch_state(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    pub fn state(&self) -> SessionState {
        self.state.borrow().clone()
    }

    /// Sends `bytes` (messages encoded back to back) as one write, then
    /// lets `then` record what went out. Bounded by the hold time, waiting
    /// for the writer included: a router that stops reading is as good as
    /// down, and the session is then given up.
    pub async fn send(
        &self,
        bytes: &[u8],
        then: impl FnOnce(&mut Ribs),
    ) -> Result<(), DriverError> {
        let bound = self.hold_time.max(Duration::from_secs(10));
        let written = timeout(bound, async {
            let mut writer = self.writer.lock().await;
            if let SessionState::Down(why) = self.state() {
                return Err(why);
            }
            writer
                .write(bytes)
                .await
                .map_err(|err| format!("writing to the session failed: {err}"))?;
            then(&mut self.ribs.lock().unwrap_or_else(PoisonError::into_inner));
            super::carried::written();
            Ok(())
        })
        .await;
        let why = match written {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => why,
            Err(_) => format!("the router took no data for {bound:?}; the session is given up"),
        };
        self.give_up(&why);
        Err(self.down(why))
    }

    /// Ends the session from our side: the keeper stops, the state says
    /// why, and the worker is woken.
    fn give_up(&self, why: &str) {
        self.task.abort();
        if self.state() == SessionState::Established {
            tracing::warn!(router = %self.router, reason = %why, "BGP session given up");
            self.state.send_replace(SessionState::Down(why.to_owned()));
            self.wake.notify_one();
        }
    }

    /// Waits, at most `bound`, until the router has sent End-of-RIB for
    /// every family of the session: its own routes are all in by then.
    pub async fn wait_for_router_end_of_rib(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            {
                let ribs = self.ribs.lock().unwrap_or_else(PoisonError::into_inner);
                if self.families.is_subset(&ribs.router_end_of_rib) {
                    return true;
                }
            }
            if Instant::now() >= deadline || self.state() != SessionState::Established {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn down(&self, why: String) -> DriverError {
        DriverError::Session {
            router: self.router.clone(),
            operation: "the BGP session",
            message: why,
        }
    }

    pub fn community(&self) -> u32 {
        self.community
    }
}

/// The task that keeps an established session: KEEPALIVEs at a third of
/// the hold time, the hold timer, and the router's UPDATEs into the
/// Adj-RIB-In.
struct Keeper {
    router: String,
    reader: OwnedReadHalf,
    buffer: Vec<u8>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    ribs: Arc<Mutex<Ribs>>,
    state: watch::Sender<SessionState>,
    wake: Arc<Notify>,
    hold_time: Duration,
    community: u32,
    local_as: u32,
    identifier: Ipv4Addr,
    ibgp: bool,
    families: BTreeSet<Family>,
    pool: Vec<IpNet>,
}

impl Keeper {
    async fn run(mut self) {
        let why = self.keep().await;
        tracing::warn!(router = %self.router, reason = %why, "BGP session down");
        self.state.send_replace(SessionState::Down(why));
        self.wake.notify_one();
    }

    /// Runs until the session ends, and says why it did.
    async fn keep(&mut self) -> String {
        let far = Duration::from_secs(86_400 * 365);
        // A hold time of zero turns both timers off (RFC 4271 §4.2).
        let (hold, keepalive) = if self.hold_time.is_zero() {
            (far, far)
        } else {
            (self.hold_time, self.hold_time / 3)
        };
        // A KEEPALIVE that cannot go out within the hold time would not
        // keep the session anyway.
        let write_bound = hold.min(Duration::from_secs(90));
        let mut hold_expires = Instant::now() + hold;
        let mut next_keepalive = Instant::now() + keepalive;
        loop {
            tokio::select! {
                // What the router sent first: after a long wait (for the
                // writer) its messages are in the socket, and they reset
                // the hold timer before it is looked at.
                biased;
                read = read_message(&mut self.reader, &mut self.buffer, far) => match read {
                    Ok(message) => {
                        hold_expires = Instant::now() + hold;
                        if let Some(why) = self.take(message, write_bound).await {
                            return why;
                        }
                    }
                    Err(ReadError::Malformed(notification)) => {
                        let why = format!("the router sent a malformed message; sent {}", notification.describe());
                        self.notify(notification).await;
                        return why;
                    }
                    Err(ReadError::Io(message)) => return message,
                },
                () = sleep_until(hold_expires) => {
                    self.notify(Notification::new(error_code::HOLD_TIMER_EXPIRED, 0, Vec::new())).await;
                    return format!("hold timer expired: nothing from the router for {hold:?}");
                }
                () = sleep_until(next_keepalive) => {
                    next_keepalive = Instant::now() + keepalive;
                    let mut bytes = Vec::new();
                    wire::encode(&Message::Keepalive, &mut bytes);
                    if let Some(why) = self.write(&bytes, write_bound, "sending a KEEPALIVE").await {
                        return why;
                    }
                }
            }
        }
    }

    /// Writes `bytes` within `bound`; `Some` with the reason when it could
    /// not, which ends the session.
    async fn write(&self, bytes: &[u8], bound: Duration, what: &str) -> Option<String> {
        let written = timeout(bound, async { self.writer.lock().await.write(bytes).await }).await;
        match written {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("{what} failed: {err}")),
            Err(_) => Some(format!("{what} took longer than {bound:?}")),
        }
    }

    /// Takes one message from the router; `Some` when it ends the session.
    async fn take(&mut self, message: Message, write_bound: Duration) -> Option<String> {
        match message {
            Message::Keepalive => None,
            Message::Update(update) => {
                self.learn(&update);
                None
            }
            Message::Notification(notification) => Some(format!(
                "the router closed the session: {}",
                notification.describe()
            )),
            Message::RouteRefresh { afi, subtype, safi } => {
                // Only a plain request (RFC 2918) for a family of this
                // session is answered; the enhanced refresh markers of RFC
                // 7313 were not offered and are ignored, as it asks.
                match Family::from_afi_safi(afi, safi) {
                    Some(family) if subtype == 0 && self.families.contains(&family) => {
                        self.refresh(family, write_bound).await
                    }
                    _ => None,
                }
            }
            Message::Open(_) => {
                self.notify(Notification::new(
                    error_code::FSM,
                    error_code::FSM_IN_ESTABLISHED,
                    Vec::new(),
                ))
                .await;
                Some("the router sent a second OPEN".to_owned())
            }
        }
    }

    fn learn(&self, update: &Update) {
        if let Some(why) = &update.treat_as_withdraw {
            tracing::warn!(router = %self.router, reason = %why, "an UPDATE from the router could not be read; its routes are taken as withdrawn (RFC 7606)");
        }
        let in_pool = |dst: &IpNet| self.pool.iter().any(|cidr| cidr.contains(dst));
        let mut changed = false;
        let mut ribs = self.ribs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(family) = update.end_of_rib() {
            changed = ribs.router_end_of_rib.insert(family);
        }
        for dst in update.withdrawals() {
            if in_pool(&dst) {
                changed |= ribs.received.remove(&dst).is_some();
            }
        }
        if !self.our_own_coming_back(update) {
            let ours = update.communities().contains(&self.community);
            for (dst, via) in update.announcements() {
                if in_pool(&dst) {
                    let received = Received { via, ours };
                    changed |= ribs.received.insert(dst, received) != Some(received);
                }
            }
        }
        drop(ribs);
        if changed {
            self.wake.notify_one();
        }
    }

    /// Our own announcements reflected back (a route reflector, or an eBGP
    /// path through us): never someone else's route, even when the router
    /// stripped our community.
    fn our_own_coming_back(&self, update: &Update) -> bool {
        /// ORIGINATOR_ID (RFC 4456).
        const ORIGINATOR_ID: u8 = 9;
        update.attributes.iter().any(|attribute| match attribute {
            wire::Attribute::AsPath(segments) => {
                !self.ibgp
                    && segments
                        .iter()
                        .any(|segment| segment.numbers().contains(&self.local_as))
            }
            wire::Attribute::Other { code, value, .. } => {
                *code == ORIGINATOR_ID && value.as_slice() == self.identifier.octets()
            }
            _ => false,
        })
    }

    /// Sends every route of `family` again, as the router asked (RFC
    /// 2918). The writer is taken first, so that no batch of the driver
    /// goes between the copy of what was announced and its sending.
    async fn refresh(&mut self, family: Family, bound: Duration) -> Option<String> {
        let answered = timeout(bound, async {
            let mut writer = self.writer.lock().await;
            let routes: Vec<(IpNet, IpAddr)> = {
                let ribs = self.ribs.lock().unwrap_or_else(PoisonError::into_inner);
                ribs.announced
                    .iter()
                    .filter(|(dst, _)| Family::of(dst) == family)
                    .map(|(dst, via)| (*dst, *via))
                    .collect()
            };
            tracing::info!(router = %self.router, %family, routes = routes.len(), "the router asked for our routes again");
            let mut bytes = Vec::new();
            for (dst, via) in routes {
                if let Some(update) = super::updates::announcement(
                    dst,
                    via,
                    self.local_as,
                    self.ibgp,
                    self.community,
                ) {
                    wire::encode(&Message::Update(update), &mut bytes);
                }
            }
            writer.write(&bytes).await
        })
        .await;
        match answered {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("answering a route refresh failed: {err}")),
            Err(_) => Some(format!(
                "answering a route refresh took longer than {bound:?}"
            )),
        }
    }

    async fn notify(&mut self, notification: Notification) {
        let mut bytes = Vec::new();
        wire::encode(&Message::Notification(notification), &mut bytes);
        // The session ends either way; a write that cannot finish in a
        // second is not waited for.
        if let Ok(mut writer) = self.writer.try_lock() {
            let _ = timeout(Duration::from_secs(1), writer.write(&bytes)).await;
        }
    }
}

/// What the OPEN exchange waits for next.
#[derive(Clone, Copy)]
enum Awaiting {
    Open,
    Keepalive,
}

impl Awaiting {
    fn name(self) -> &'static str {
        match self {
            Awaiting::Open => "OPEN",
            Awaiting::Keepalive => "KEEPALIVE",
        }
    }

    fn is(self, message: &Message) -> bool {
        matches!(
            (self, message),
            (Awaiting::Open, Message::Open(_)) | (Awaiting::Keepalive, Message::Keepalive)
        )
    }

    /// RFC 6608: what came instead was unexpected in OpenSent (waiting for
    /// the OPEN) or in OpenConfirm (waiting for the KEEPALIVE).
    fn fsm_subcode(self) -> u8 {
        match self {
            Awaiting::Open => error_code::FSM_IN_OPEN_SENT,
            Awaiting::Keepalive => error_code::FSM_IN_OPEN_CONFIRM,
        }
    }
}

/// The router's next message, when it is the one `what` waits for. Anything
/// else ends the opening, with the NOTIFICATION the RFCs ask for.
async fn awaiting(
    what: Awaiting,
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    buffer: &mut Vec<u8>,
    wait: Duration,
    config: &BgpRouter,
) -> Result<Message, DriverError> {
    match read_message(reader, buffer, wait).await {
        Ok(message) if what.is(&message) => Ok(message),
        Ok(Message::Notification(notification)) => Err(refused(config, &notification)),
        Ok(other) => {
            let _ = send_notification(writer, error_code::FSM, what.fsm_subcode()).await;
            Err(unexpected(config, &other, what))
        }
        Err(ReadError::Malformed(notification)) => {
            let _ = write(writer, &Message::Notification(notification.clone()), config).await;
            Err(session_error(
                config,
                "opening the session",
                format!(
                    "the router's {} was malformed; sent {}",
                    what.name(),
                    notification.describe()
                ),
            ))
        }
        Err(ReadError::Io(message)) => Err(session_error(
            config,
            "opening the session",
            format!("waiting for the router's {}: {message}", what.name()),
        )),
    }
}

fn unexpected(config: &BgpRouter, message: &Message, what: Awaiting) -> DriverError {
    session_error(
        config,
        "opening the session",
        format!(
            "the router sent {} where its {} was due",
            kind_of(message),
            what.name()
        ),
    )
}

enum ReadError {
    Malformed(Notification),
    Io(String),
}

/// Reads one whole message, waiting at most `wait`.
async fn read_message(
    reader: &mut OwnedReadHalf,
    buffer: &mut Vec<u8>,
    wait: Duration,
) -> Result<Message, ReadError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(len) = wire::message_len(buffer).map_err(ReadError::Malformed)?
            && buffer.len() >= len
        {
            let message = wire::decode(&buffer[..len]);
            buffer.drain(..len);
            return message.map_err(ReadError::Malformed);
        }
        let mut chunk = [0u8; 8192];
        let read = tokio::time::timeout_at(deadline, reader.read(&mut chunk))
            .await
            .map_err(|_| ReadError::Io(format!("no answer from the router within {wait:?}")))?
            .map_err(|err| ReadError::Io(format!("reading from the router failed: {err}")))?;
        if read == 0 {
            return Err(ReadError::Io("the router closed the connection".to_owned()));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

async fn write(
    writer: &mut OwnedWriteHalf,
    message: &Message,
    config: &BgpRouter,
) -> Result<(), DriverError> {
    let mut bytes = Vec::new();
    wire::encode(message, &mut bytes);
    timeout(config.connect_timeout, writer.write_all(&bytes))
        .await
        .map_err(|_| {
            session_error(
                config,
                "opening the session",
                "the router took no data in time",
            )
        })?
        .map_err(|err| session_error(config, "opening the session", err.to_string()))
}

async fn send_notification(
    writer: &mut OwnedWriteHalf,
    code: u8,
    subcode: u8,
) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    wire::encode(
        &Message::Notification(Notification::new(code, subcode, Vec::new())),
        &mut bytes,
    );
    writer.write_all(&bytes).await
}

fn our_open(config: &BgpRouter, identifier: Ipv4Addr) -> Open {
    let graceful_restart_secs =
        u16::try_from(config.graceful_restart.as_secs().min(4095)).unwrap_or(4095);
    let mut capabilities = vec![
        Capability::Multiprotocol {
            afi: wire::AFI_IPV4,
            safi: wire::SAFI_UNICAST,
        },
        Capability::Multiprotocol {
            afi: wire::AFI_IPV6,
            safi: wire::SAFI_UNICAST,
        },
        Capability::RouteRefresh,
        Capability::FourOctetAs(config.local_as),
    ];
    if graceful_restart_secs > 0 {
        capabilities.push(Capability::GracefulRestart {
            // Every session nativeroute opens may follow one of an earlier
            // controller: the peer should send its routes without waiting
            // for ours (RFC 4724 §3).
            restarted: true,
            restart_time: graceful_restart_secs,
            // Forwarding is the router's own, never interrupted by our
            // restart: without the F bit, the peer would drop our routes
            // at once (RFC 4724 §4.2).
            families: vec![
                (wire::AFI_IPV4, wire::SAFI_UNICAST, true),
                (wire::AFI_IPV6, wire::SAFI_UNICAST, true),
            ],
        });
    }
    Open {
        my_as: u16::try_from(config.local_as).unwrap_or(AS_TRANS),
        hold_time: u16::try_from(config.hold_time.as_secs()).unwrap_or(u16::MAX),
        identifier,
        capabilities,
    }
}

/// Checks the router's OPEN against the config: `Err` carries the
/// NOTIFICATION to send and the reason for the operator.
fn check_open(
    config: &BgpRouter,
    ours: Ipv4Addr,
    peer: &Open,
) -> Result<(), (Notification, String)> {
    let four_octet = peer.has(|c| matches!(c, Capability::FourOctetAs(_)));
    if !four_octet {
        return Err((
            Notification::new(
                error_code::OPEN,
                error_code::OPEN_UNSUPPORTED_CAPABILITY,
                vec![65, 4, 0, 0, 0, 0],
            ),
            "the router does not offer 4-octet AS numbers (RFC 6793), which nativeroute needs"
                .to_owned(),
        ));
    }
    if peer.peer_as() != config.peer_as {
        return Err((
            Notification::new(error_code::OPEN, error_code::OPEN_BAD_PEER_AS, Vec::new()),
            format!(
                "the router's AS is {}, but peerAs is {}",
                peer.peer_as(),
                config.peer_as
            ),
        ));
    }
    if peer.hold_time != 0 && peer.hold_time < 3 {
        return Err((
            Notification::new(
                error_code::OPEN,
                error_code::OPEN_UNACCEPTABLE_HOLD_TIME,
                Vec::new(),
            ),
            format!(
                "the router's hold time {} s is below 3 s (RFC 4271 §4.2)",
                peer.hold_time
            ),
        ));
    }
    let ibgp = config.local_as == config.peer_as;
    if peer.identifier.is_unspecified() || (ibgp && peer.identifier == ours) {
        return Err((
            Notification::new(
                error_code::OPEN,
                error_code::OPEN_BAD_IDENTIFIER,
                Vec::new(),
            ),
            format!(
                "the router's BGP identifier {} is not usable (zero, or the same as ours: set routerId)",
                peer.identifier
            ),
        ));
    }
    Ok(())
}

fn negotiated_hold(ours: Duration, theirs: u16) -> Duration {
    ours.min(Duration::from_secs(u64::from(theirs)))
}

fn kind_of(message: &Message) -> &'static str {
    match message {
        Message::Open(_) => "an OPEN",
        Message::Update(_) => "an UPDATE",
        Message::Notification(_) => "a NOTIFICATION",
        Message::Keepalive => "a KEEPALIVE",
        Message::RouteRefresh { .. } => "a ROUTE-REFRESH",
    }
}

fn refused(config: &BgpRouter, notification: &Notification) -> DriverError {
    session_error(
        config,
        "opening the session",
        format!("the router refused it: {}", notification.describe()),
    )
}

fn session_error(
    config: &BgpRouter,
    operation: &'static str,
    message: impl Into<String>,
) -> DriverError {
    DriverError::Session {
        router: config.name.clone(),
        operation,
        message: message.into(),
    }
}

fn connect_error(config: &BgpRouter, err: std::io::Error) -> DriverError {
    DriverError::Connect {
        router: config.name.clone(),
        address: config.address.to_string(),
        message: err.to_string(),
    }
}

/// Opens the TCP connection, from `netns` when one is set, with TCP-MD5
/// when a password is.
async fn connect(config: &BgpRouter) -> Result<TcpStream, DriverError> {
    let namespace = config
        .netns
        .as_deref()
        .map(|name| Namespace::open(&config.name, name))
        .transpose()?;
    let address = config.address;
    let password = config.password.clone();
    let socket = {
        let config = config.clone();
        create_inside(&config.name.clone(), namespace, move || {
            let socket = match address {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            }
            .map_err(|err| connect_error(&config, err))?;
            if let Some(password) = &password {
                md5::set_password(&socket, address.ip(), password).map_err(|err| {
                    connect_error(
                        &config,
                        std::io::Error::other(format!("setting the TCP-MD5 password: {err}")),
                    )
                })?;
            }
            Ok(socket)
        })
        .await?
    };
    let stream = timeout(config.connect_timeout, socket.connect(address))
        .await
        .map_err(|_| {
            let hint = if config.password.is_some() {
                "; with TCP-MD5, a password the router does not share makes it drop every segment silently"
            } else {
                ""
            };
            connect_error(
                config,
                std::io::Error::other(format!(
                    "no answer within {:?} (is the router's BGP listening on that address, and a neighbor configured for ours?{hint})",
                    config.connect_timeout
                )),
            )
        })?
        .map_err(|err| connect_error(config, err))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
