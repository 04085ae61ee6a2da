//! Which devices of which users are online, per organisation.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use herald_protocol::{DeviceId, OrgId, SessionId, UserId};
use tokio_util::sync::CancellationToken;

use super::{Lane, PushQueue};

/// One live device session as fan-out sees it.
#[derive(Debug, Clone)]
pub struct DeviceSession {
    /// The session.
    pub session: SessionId,
    /// Its device.
    pub device: DeviceId,
    /// Its push queue: log entries in order, and receipts.
    pub push: PushQueue,
    /// Its urgent queue: notices that must overtake the push stream.
    pub urgent: PushQueue,
    /// Its datagram queue, if the connection takes QUIC datagrams.
    pub datagrams: Option<PushQueue>,
    /// Cancelled when an admin revokes the device or disables its user: the session's loop
    /// closes the connection with REVOKED at once.
    pub revoked: CancellationToken,
    /// The `jti` of the token the session opened with, if it had one.
    pub token_id: Option<String>,
    /// Cancelled to make the session check its identity against the revocation list again
    /// (and close with TOKEN_REVOKED if it is now revoked).
    pub recheck: CancellationToken,
}

type UserSessions = DashMap<UserId, Vec<DeviceSession>>;

/// user → live device sessions, per organisation. Two levels so a fan-out looks up the
/// organisation once and each member by reference, without building a key per member.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    orgs: DashMap<OrgId, Arc<UserSessions>>,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a device session.
    pub fn register(&self, org: &OrgId, user: &UserId, session: DeviceSession) {
        let users = self.orgs.entry(org.clone()).or_default().clone();
        users.entry(user.clone()).or_default().push(session);
    }

    /// Removes a device session.
    ///
    /// Returns whether another live session of the same device remains (a reconnect that
    /// overtook the old connection's close, or a second process using the device's id), so
    /// the caller does not report the device gone while it is still here.
    pub fn unregister(&self, org: &OrgId, user: &UserId, session: SessionId) -> bool {
        let Some(users) = self.orgs.get(org).map(|u| u.clone()) else { return false };
        let mut device_remains = false;
        users.remove_if_mut(user, |_, sessions| {
            let device = sessions.iter().find(|s| s.session == session).map(|s| s.device.clone());
            sessions.retain(|s| s.session != session);
            device_remains =
                device.is_some_and(|d| sessions.iter().any(|s| s.device == d && !s.revoked.is_cancelled()));
            sessions.is_empty()
        });
        device_remains
    }

    /// Records the token id a session runs under now (after REAUTH), so that revoking that token
    /// id finds the session.
    pub fn set_token_id(&self, org: &OrgId, user: &UserId, session: SessionId, token_id: Option<String>) {
        let Some(users) = self.orgs.get(org).map(|u| u.clone()) else { return };
        if let Some(mut sessions) = users.get_mut(user)
            && let Some(entry) = sessions.iter_mut().find(|s| s.session == session)
        {
            entry.token_id = token_id;
        }
    }

    /// Signals every session for which `matches` holds (see [`DeviceSession::recheck`]) and
    /// returns how many. Visits every session: for rare operator actions, not the hot path.
    pub fn signal_where(&self, mut matches: impl FnMut(&OrgId, &UserId, &DeviceSession) -> bool) -> usize {
        let mut signalled = 0;
        for org in self.orgs.iter() {
            for user in org.value().iter() {
                for session in user.value().iter().filter(|s| matches(org.key(), user.key(), s)) {
                    session.recheck.cancel();
                    signalled += 1;
                }
            }
        }
        signalled
    }

    /// How many device sessions `user` has open.
    pub fn device_count(&self, org: &OrgId, user: &UserId) -> usize {
        self.orgs.get(org).and_then(|users| users.get(user).map(|s| s.len())).unwrap_or(0)
    }

    /// Ends the sessions of `user` (of one device, or all its devices): each closes with REVOKED.
    /// Returns how many were open and not already being closed.
    pub fn revoke(&self, org: &OrgId, user: &UserId, device: Option<&DeviceId>) -> usize {
        let Some(users) = self.orgs.get(org).map(|u| u.clone()) else { return 0 };
        let Some(sessions) = users.get(user) else { return 0 };
        let mut closed = 0;
        for session in sessions.iter().filter(|s| device.is_none_or(|d| *d == s.device)) {
            if !session.revoked.is_cancelled() {
                session.revoked.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// The devices `user` has online, each with its number of open sessions (not counting those
    /// revoked and still closing), by device id.
    pub fn devices(&self, org: &OrgId, user: &UserId) -> Vec<(DeviceId, usize)> {
        let Some(users) = self.orgs.get(org).map(|u| u.clone()) else { return Vec::new() };
        let mut devices = std::collections::BTreeMap::new();
        if let Some(sessions) = users.get(user) {
            for session in sessions.iter().filter(|s| !s.revoked.is_cancelled()) {
                *devices.entry(session.device.clone()).or_insert(0) += 1;
            }
        }
        devices.into_iter().collect()
    }

    /// Queues `frame` to the named devices (user, device) only. Returns (queued, dropped).
    pub fn send_to_devices<'a>(
        &self,
        org: &OrgId,
        devices: impl IntoIterator<Item = (&'a UserId, &'a DeviceId)>,
        frame: &Bytes,
        lane: Lane,
    ) -> (usize, usize) {
        let Some(users) = self.orgs.get(org).map(|u| u.clone()) else { return (0, 0) };
        let mut tally = (0, 0);
        for (user, device) in devices {
            if let Some(sessions) = users.get(user) {
                push_all(sessions.iter().filter(|s| s.device == *device), frame, lane, &mut tally);
            }
        }
        tally
    }

    /// Queues `frame` to every online device of `user` but `except`. Returns (queued, dropped).
    pub fn send_to_user_except(
        &self,
        org: &OrgId,
        user: &UserId,
        except: Option<&DeviceId>,
        frame: &Bytes,
        lane: Lane,
    ) -> (usize, usize) {
        let Some(users) = self.orgs.get(org).map(|u| u.clone()) else { return (0, 0) };
        let mut tally = (0, 0);
        if let Some(sessions) = users.get(user) {
            let live = sessions.iter().filter(|s| Some(&s.device) != except && !s.revoked.is_cancelled());
            push_all(live, frame, lane, &mut tally);
        }
        tally
    }

    /// Queues `frame` to every online device of every recipient. Returns (queued, dropped).
    pub fn fan_out(&self, org: &OrgId, recipients: &[UserId], frame: &Bytes, lane: Lane) -> (usize, usize) {
        let Some(users) = self.orgs.get(org).map(|u| u.clone()) else { return (0, 0) };
        let mut tally = (0, 0);
        for user in recipients {
            if let Some(sessions) = users.get(user) {
                push_all(sessions.iter(), frame, lane, &mut tally);
            }
        }
        tally
    }
}

impl DeviceSession {
    /// The queue of `lane`, if the session has one.
    fn queue(&self, lane: Lane) -> Option<&PushQueue> {
        match lane {
            Lane::Push => Some(&self.push),
            Lane::Urgent => Some(&self.urgent),
            Lane::Datagram => self.datagrams.as_ref(),
        }
    }
}

/// Queues one shared `frame` on `lane` of each session that has it, adding (queued, dropped) to
/// `tally`.
fn push_all<'s>(
    sessions: impl Iterator<Item = &'s DeviceSession>,
    frame: &Bytes,
    lane: Lane,
    tally: &mut (usize, usize),
) {
    for queue in sessions.filter_map(|s| s.queue(lane)) {
        if queue.push(frame) {
            tally.0 += 1;
        } else {
            tally.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::push_queue;

    fn id<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().expect("valid")
    }

    #[test]
    fn fan_out_reaches_every_device_of_every_recipient_in_the_org_only() {
        let registry = SessionRegistry::new();
        let (acme, globex): (OrgId, OrgId) = (id("acme"), id("globex"));
        let mut receivers = Vec::new();
        for (org, user, n) in [(&acme, "alice", 1), (&acme, "alice", 2), (&acme, "bob", 3), (&globex, "alice", 4)] {
            let (push, rx) = push_queue(1 << 20);
            let (urgent, urgent_rx) = push_queue(1 << 20);
            let session = DeviceSession {
                session: SessionId::new(n),
                device: id("d"),
                push,
                urgent,
                datagrams: None,
                token_id: None,
                recheck: CancellationToken::new(),
                revoked: CancellationToken::new(),
            };
            registry.register(org, &id(user), session);
            receivers.push((rx, urgent_rx));
        }
        let frame = Bytes::from_static(b"hello");
        assert_eq!(registry.fan_out(&acme, &[id("alice"), id("bob"), id("carol")], &frame, Lane::Push), (3, 0));
        assert!(registry.unregister(&acme, &id("alice"), SessionId::new(1)), "alice's other session is of device d");
        assert_eq!(registry.device_count(&acme, &id("alice")), 1);
        assert_eq!(registry.fan_out(&acme, &[id("alice")], &frame, Lane::Urgent), (1, 0));
        assert_eq!(registry.signal_where(|org, user, _| org == &acme && user.as_str() == "bob"), 1);
        assert!(!registry.unregister(&acme, &id("bob"), SessionId::new(3)), "bob's only session");
    }

    #[test]
    fn a_renewed_session_is_found_by_its_new_token_id() {
        let registry = SessionRegistry::new();
        let acme: OrgId = id("acme");
        let (push, _) = push_queue(1024);
        let (urgent, _) = push_queue(1024);
        let session = DeviceSession {
            session: SessionId::new(1),
            device: id("phone"),
            push,
            urgent,
            datagrams: None,
            revoked: CancellationToken::new(),
            token_id: Some("first".into()),
            recheck: CancellationToken::new(),
        };
        registry.register(&acme, &id("alice"), session);
        registry.set_token_id(&acme, &id("alice"), SessionId::new(1), Some("second".into()));
        let by_token =
            |jti: &'static str| move |_: &OrgId, _: &UserId, s: &DeviceSession| s.token_id.as_deref() == Some(jti);
        assert_eq!(registry.signal_where(by_token("first")), 0);
        assert_eq!(registry.signal_where(by_token("second")), 1);
    }

    #[test]
    fn revoking_cancels_only_the_named_device_sessions() {
        let registry = SessionRegistry::new();
        let acme: OrgId = id("acme");
        let mut tokens = Vec::new();
        for (n, device) in [(1, "phone"), (2, "phone"), (3, "laptop")] {
            let (push, _) = push_queue(1024);
            let (urgent, _) = push_queue(1024);
            let revoked = CancellationToken::new();
            tokens.push(revoked.clone());
            registry.register(
                &acme,
                &id("alice"),
                DeviceSession {
                    session: SessionId::new(n),
                    device: id(device),
                    push,
                    urgent,
                    datagrams: None,
                    revoked,
                    token_id: None,
                    recheck: CancellationToken::new(),
                },
            );
        }
        assert_eq!(registry.devices(&acme, &id("alice")), vec![(id("laptop"), 1), (id("phone"), 2)]);
        assert_eq!(registry.revoke(&acme, &id("alice"), Some(&id("phone"))), 2);
        assert_eq!(tokens.iter().map(CancellationToken::is_cancelled).collect::<Vec<_>>(), [true, true, false]);
        assert_eq!(registry.revoke(&acme, &id("bob"), None), 0);
        assert_eq!(registry.revoke(&acme, &id("alice"), None), 1, "the phone's sessions are already closing");
        assert_eq!(registry.devices(&acme, &id("alice")), vec![]);
        assert!(tokens[2].is_cancelled());
    }
}
