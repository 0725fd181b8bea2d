//! EMQX's banned list: client identifiers, user names and peer addresses refused at
//! CONNECT (MQTT 5: 0x8A Banned; 3.1.1: 0x05 Not authorized) until an optional time.
//! Kept in memory and read by every shard's authenticator without a lock.

use arc_swap::ArcSwap;
use broker_core::mqtt_proto::ReasonCode;
use broker_core::policy::{AuthStep, Authenticator, ConnectRequest};
use broker_core::ConnId;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// `who` of a peer-host ban in canonical form (an IPv4-mapped IPv6 address is its IPv4
/// address), or `None` if it is not an address.
pub fn canonical_host(who: &str) -> Option<String> {
    who.parse::<IpAddr>()
        .ok()
        .map(|a| a.to_canonical().to_string())
}

fn same_host(a: IpAddr, who: &str) -> bool {
    a.to_canonical().to_string() == who
}

/// What a ban matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanKind {
    ClientId,
    Username,
    PeerHost,
}

impl BanKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "clientid" => Some(Self::ClientId),
            "username" => Some(Self::Username),
            "peerhost" => Some(Self::PeerHost),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ClientId => "clientid",
            Self::Username => "username",
            Self::PeerHost => "peerhost",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ban {
    pub kind: BanKind,
    pub who: String,
    pub by: String,
    pub reason: String,
    pub at: SystemTime,
    pub until: Option<SystemTime>,
}

impl Ban {
    fn active(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|u| now < u)
    }

    /// Whether it bans a client with this identifier, effective user name (after the
    /// authenticator: a certificate's identity replaces the CONNECT's) and address.
    pub fn matches(&self, client_id: &str, username: Option<&str>, peer: Option<IpAddr>) -> bool {
        match self.kind {
            BanKind::ClientId => client_id == self.who,
            BanKind::Username => username == Some(self.who.as_str()),
            BanKind::PeerHost => peer.is_some_and(|a| same_host(a, &self.who)),
        }
    }
}

/// The shared list.
#[derive(Debug, Clone, Default)]
pub struct Banned {
    list: Arc<ArcSwap<Vec<Ban>>>,
}

impl Banned {
    /// Active bans.
    pub fn list(&self) -> Vec<Ban> {
        let now = SystemTime::now();
        self.list
            .load()
            .iter()
            .filter(|b| b.active(now))
            .cloned()
            .collect()
    }

    /// Adds (or replaces) a ban.
    pub fn add(&self, ban: Ban) {
        self.list.rcu(|old| {
            let mut v: Vec<Ban> = old
                .iter()
                .filter(|b| !(b.kind == ban.kind && b.who == ban.who))
                .cloned()
                .collect();
            v.push(ban.clone());
            v
        });
    }

    /// Removes a ban; false if there was none.
    pub fn remove(&self, kind: BanKind, who: &str) -> bool {
        let before = self.list.load().len();
        self.list.rcu(|old| {
            old.iter()
                .filter(|b| !(b.kind == kind && b.who == who))
                .cloned()
                .collect::<Vec<_>>()
        });
        self.list.load().len() != before
    }

    fn refuses(&self, req: &ConnectRequest<'_>, username: Option<&str>) -> bool {
        let list = self.list.load();
        if list.is_empty() {
            return false;
        }
        let now = SystemTime::now();
        let peer = req.peer.addr.map(|a| a.ip());
        list.iter()
            .any(|b| b.active(now) && b.matches(req.client_id, username, peer))
    }

    /// `inner`, refusing banned clients first.
    pub fn guard<A: Authenticator>(&self, inner: A) -> BanGuard<A> {
        BanGuard {
            banned: self.clone(),
            inner,
        }
    }
}

/// An authenticator that refuses banned clients before asking the inner one.
pub struct BanGuard<A> {
    banned: Banned,
    inner: A,
}

impl<A: Authenticator> Authenticator for BanGuard<A> {
    fn authenticate(&mut self, req: &ConnectRequest<'_>) -> Result<Option<Box<str>>, ReasonCode> {
        if self.banned.refuses(req, req.username) {
            return Err(ReasonCode::Banned);
        }
        let name = self.inner.authenticate(req)?;
        // The user name the session will have (a certificate's identity, say).
        if name.is_some() && self.banned.refuses(req, name.as_deref()) {
            return Err(ReasonCode::Banned);
        }
        Ok(name)
    }

    fn auth_start(
        &mut self,
        req: &ConnectRequest<'_>,
        method: &str,
        data: Option<&[u8]>,
        reauth: bool,
    ) -> AuthStep {
        if self.banned.refuses(req, req.username) {
            return AuthStep::Fail(ReasonCode::Banned);
        }
        self.inner.auth_start(req, method, data, reauth)
    }

    fn auth_continue(&mut self, conn: ConnId, method: &str, data: Option<&[u8]>) -> AuthStep {
        self.inner.auth_continue(conn, method, data)
    }

    fn auth_abort(&mut self, conn: ConnId) {
        self.inner.auth_abort(conn)
    }
}
