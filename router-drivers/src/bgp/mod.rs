//! Routers that speak BGP: one session per router, opened by the
//! controller, announcing each node's subnet with the node's address as
//! NEXT_HOP (a third-party next hop) and nativeroute's community.
//!
//! What the router holds, as far as nativeroute can know, is what it
//! announced on the established session: a router that lost the session
//! lost those routes (or keeps them stale until the next session's
//! End-of-RIB, under graceful restart). A session down is the router down.
//! Routes the router sends back are read only to report foreign ones in
//! the pool.

mod carried;
mod md5;
mod session;
mod updates;
pub mod wire;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::Notify;

use self::session::{Session, SessionState};
use self::wire::{Family, Message, Update};
use crate::{
    Change, ChangeError, ChangeOutcome, DriverError, Fence, ForeignRoute, Ownership, ProbeStep,
    Route, RouterDriver, RouterRoutes,
};

use self::carried::Reached;
pub use self::carried::{Announced, announced, remember, writes};
pub use self::md5::MAX_KEY_LEN as MAX_PASSWORD_LEN;

/// How one BGP router is reached.
#[derive(Clone, Debug)]
pub struct BgpRouter {
    pub name: String,
    /// The router's BGP address and port.
    pub address: SocketAddr,
    pub local_as: u32,
    pub peer_as: u32,
    /// The BGP identifier; by default the session's IPv4 source address.
    pub router_id: Option<Ipv4Addr>,
    /// The hold time offered; the session uses the smaller of ours and
    /// the router's.
    pub hold_time: Duration,
    /// The restart time advertised for graceful restart; zero leaves the
    /// capability out.
    pub graceful_restart: Duration,
    /// The TCP-MD5 password, read from its file by the caller.
    pub password: Option<String>,
    pub netns: Option<String>,
    pub connect_timeout: Duration,
    pub ownership: Ownership,
}

impl BgpRouter {
    pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
    pub const DEFAULT_GRACEFUL_RESTART: Duration = Duration::from_secs(120);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_PORT: u16 = 179;

    fn is_ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }
}

/// Changes written to the session between fence checks: a deposed leader
/// stops within one such write.
const CHANGES_PER_WRITE: usize = 512;

pub struct BgpDriver {
    router: BgpRouter,
    session: Session,
    /// Whether this session's End-of-RIB went out: once, after the first
    /// sync announced what the controller wants, so that a peer keeping our
    /// routes from an earlier session (graceful restart) drops only those
    /// no longer announced.
    end_of_rib_sent: bool,
    /// Whether this session was listed before: the first list waits for
    /// the router's own routes, so that the first sync sees its foreign
    /// routes in the pool.
    listed: bool,
}

/// How long the first list of a session waits for the router's
/// End-of-RIB. Routers without graceful restart may never send one.
const ROUTER_END_OF_RIB_WAIT: Duration = Duration::from_secs(3);

impl BgpDriver {
    /// Opens the session; `Ok` once it is established.
    pub async fn connect(router: BgpRouter) -> Result<BgpDriver, DriverError> {
        let session = Session::open(&router).await?;
        let mut driver = BgpDriver {
            router,
            session,
            end_of_rib_sent: false,
            listed: false,
        };
        driver.announce_again_what_the_last_session_did().await?;
        Ok(driver)
    }

    /// A new session starts with what the router's last session announced:
    /// in this process, or in an earlier one that saved it (see
    /// [`carried`]). A router under graceful restart
    /// still holds those routes (stale): announcing them again keeps them,
    /// and the worker, seeing them listed, withdraws the ones it no longer
    /// wants through the removal guard, as on any other driver. Without
    /// this, the next End-of-RIB would take them all at once.
    async fn announce_again_what_the_last_session_did(&mut self) -> Result<(), DriverError> {
        let reached = Reached {
            address: self.router.address,
            netns: self.router.netns.clone(),
        };
        let routes: Vec<(IpNet, IpAddr)> = carried::last_announced(&self.router.name, &reached)
            .into_iter()
            .filter(|route| self.session.families.contains(&Family::of(&route.dst)))
            .map(|route| (route.dst, route.via))
            .collect();
        // This session becomes the record only once it announced what the
        // last one did: a session lost half-way leaves the record whole.
        let take_over = |session: &Session| {
            carried::take_over(
                &self.router.name,
                reached.clone(),
                &session.ribs,
                session.watch_state(),
            );
        };
        if routes.is_empty() {
            take_over(&self.session);
            return Ok(());
        }
        let ibgp = self.router.is_ibgp();
        let community = self.session.community();
        let mut bytes = Vec::new();
        for (dst, via) in &routes {
            if let Some(update) =
                updates::announcement(*dst, *via, self.router.local_as, ibgp, community)
            {
                wire::encode(&Message::Update(update), &mut bytes);
            }
        }
        self.session
            .send(&bytes, |ribs| ribs.announced.extend(routes.iter().copied()))
            .await?;
        take_over(&self.session);
        tracing::info!(router = %self.router.name, routes = routes.len(), "announced again what the last session of this router announced");
        Ok(())
    }

    fn established(&self) -> Result<(), DriverError> {
        match self.session.state() {
            SessionState::Established => Ok(()),
            SessionState::Down(why) => Err(self.session.down(why)),
        }
    }

    /// Ends this session's initial announcements: the peer then forgets
    /// what an earlier session announced and this one did not.
    async fn send_end_of_rib(&mut self) -> Result<(), DriverError> {
        let mut bytes = Vec::new();
        for family in &self.session.families {
            wire::encode(
                &Message::Update(Update::end_of_rib_marker(*family)),
                &mut bytes,
            );
        }
        self.session.send(&bytes, |_| {}).await?;
        self.end_of_rib_sent = true;
        tracing::info!(router = %self.router.name, families = ?self.session.families, "End-of-RIB sent: the router now holds exactly what this session announced");
        Ok(())
    }

    /// Why `change` cannot be sent on this session, if it cannot.
    fn refusal(&self, route: &Route) -> Option<ChangeError> {
        let family = Family::of(&route.dst);
        if !self.session.families.contains(&family) {
            return Some(ChangeError::Refused {
                dst: route.dst,
                message: format!("the router did not accept {family} on this session"),
            });
        }
        if route.via.is_ipv4() != route.dst.addr().is_ipv4() {
            return Some(ChangeError::Refused {
                dst: route.dst,
                message: format!(
                    "next hop {} is of the other family; nativeroute announces each subnet via an address of its own family",
                    route.via
                ),
            });
        }
        None
    }
}

#[async_trait]
impl RouterDriver for BgpDriver {
    fn router(&self) -> &str {
        &self.router.name
    }

    async fn list(&mut self) -> Result<RouterRoutes, DriverError> {
        self.established()?;
        if !self.listed {
            self.listed = true;
            if !self
                .session
                .wait_for_router_end_of_rib(ROUTER_END_OF_RIB_WAIT)
                .await
            {
                tracing::info!(router = %self.router.name, waited = ?ROUTER_END_OF_RIB_WAIT, "the router sent no End-of-RIB; its routes in the pool are read as they come");
            }
            self.established()?;
        }
        let ribs = self
            .session
            .ribs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let owned = ribs
            .announced
            .iter()
            .map(|(dst, via)| Route::new(*dst, *via))
            .collect();
        let foreign = ribs
            .received
            .iter()
            .filter(|(dst, received)| !received.ours && self.router.ownership.in_pool(dst))
            .map(|(dst, received)| ForeignRoute {
                dst: *dst,
                via: Some(received.via),
                detail: "announced by the router over BGP".to_owned(),
            })
            .collect();
        Ok(RouterRoutes { owned, foreign })
    }

    async fn apply_fenced(
        &mut self,
        changes: &[Change],
        fence: &Fence,
    ) -> Result<Vec<ChangeOutcome>, DriverError> {
        self.established()?;
        let mut outcomes: Vec<Option<ChangeOutcome>> = changes
            .iter()
            .map(|change| self.refusal(&change.route()).map(Err))
            .collect();
        let ibgp = self.router.is_ibgp();
        let community = self.session.community();
        let pending: Vec<usize> = (0..changes.len())
            .filter(|i| outcomes[*i].is_none())
            .collect();
        for chunk in pending.chunks(CHANGES_PER_WRITE) {
            if fence.is_raised() {
                for &i in chunk {
                    outcomes[i] = Some(Err(ChangeError::Fenced {
                        dst: changes[i].route().dst,
                    }));
                }
                continue;
            }
            let mut bytes = Vec::new();
            let mut withdrawn = Vec::new();
            for &i in chunk {
                match changes[i] {
                    Change::Add(route) | Change::Replace { route, .. } => {
                        // An announcement replaces the last one for its
                        // destination: a replace never leaves it unrouted.
                        if let Some(update) = updates::announcement(
                            route.dst,
                            route.via,
                            self.router.local_as,
                            ibgp,
                            community,
                        ) {
                            wire::encode(&Message::Update(update), &mut bytes);
                        }
                    }
                    Change::Remove(route) => withdrawn.push(route.dst),
                }
            }
            for update in updates::withdrawals(&withdrawn) {
                wire::encode(&Message::Update(update), &mut bytes);
            }
            self.session
                .send(&bytes, |ribs| {
                    for &i in chunk {
                        match changes[i] {
                            Change::Add(route) | Change::Replace { route, .. } => {
                                ribs.announced.insert(route.dst, route.via);
                            }
                            Change::Remove(route) => {
                                ribs.announced.remove(&route.dst);
                            }
                        }
                    }
                })
                .await?;
            for &i in chunk {
                outcomes[i] = Some(Ok(()));
            }
        }
        // The first batch of a session is the worker's whole diff against
        // an empty router: everything it wants is announced now. A peer
        // that keeps stale routes (or, like FRR restarting, holds back its
        // best path until every peer's End-of-RIB) should not wait for an
        // idle moment to hear so.
        if !self.end_of_rib_sent && !fence.is_raised() {
            self.send_end_of_rib().await?;
        }
        Ok(outcomes
            .into_iter()
            .zip(changes)
            .map(|(outcome, change)| {
                outcome.unwrap_or_else(|| {
                    Err(ChangeError::NotAttempted {
                        dst: change.route().dst,
                        reason: "no outcome was recorded for it".to_owned(),
                    })
                })
            })
            .collect())
    }

    /// The router's own BGP address: a node whose next hop is the router
    /// would point it at itself.
    async fn own_addresses(&mut self) -> Result<Vec<IpAddr>, DriverError> {
        Ok(vec![self.router.address.ip()])
    }

    /// Sends End-of-RIB once per session, after the first sync, when that
    /// sync had nothing to change.
    async fn tidy(&mut self) -> Result<(), DriverError> {
        if self.end_of_rib_sent {
            return Ok(());
        }
        self.established()?;
        self.send_end_of_rib().await
    }

    async fn probe(&mut self) -> Result<Vec<ProbeStep>, DriverError> {
        self.established()?;
        let peer = &self.session.peer;
        let families: BTreeSet<String> = self
            .session
            .families
            .iter()
            .map(|f| f.to_string())
            .collect();
        let mut capabilities = String::new();
        let _ = write!(
            capabilities,
            "families {}; route refresh {}; graceful restart {}",
            families.into_iter().collect::<Vec<_>>().join(", "),
            if peer.has(|c| *c == wire::Capability::RouteRefresh) {
                "yes"
            } else {
                "no"
            },
            peer.graceful_restart_time().map_or_else(
                || "no (a controller restart withdraws our routes until the next session)"
                    .to_owned(),
                |time| format!("yes, restart time {time} s"),
            ),
        );
        Ok(vec![
            ProbeStep {
                what: "open a BGP session",
                result: Ok(format!(
                    "established from {} with AS {} (identifier {}), hold time {:?}",
                    self.session.local_address,
                    peer.peer_as(),
                    peer.identifier,
                    self.session.hold_time
                )),
            },
            ProbeStep {
                what: "capabilities the router offers",
                result: Ok(capabilities),
            },
        ])
    }

    fn changes_on_its_own(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.session.wake))
    }

    fn describe(&self) -> String {
        let community = self.router.ownership.bgp_community;
        format!(
            "bgp: {} session to {} (AS {} → AS {}), our identifier {}, routes marked with community {}:{}{}",
            if self.router.is_ibgp() {
                "iBGP"
            } else {
                "eBGP"
            },
            self.router.address,
            self.router.local_as,
            self.router.peer_as,
            self.session.identifier,
            community >> 16,
            community & 0xffff,
            self.router
                .netns
                .as_deref()
                .map(|netns| format!(", from network namespace {netns:?}"))
                .unwrap_or_default()
        )
    }
}
