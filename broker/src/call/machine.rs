//! One call as a state machine: requests and timeouts in, effects out, time passed in.
//!
//! Calling contract: every request method takes `now_ms` and either returns the effects it
//! caused or a [`CallError`] with the call unchanged. The owner calls [`Call::handle_timeout`]
//! at or after [`Call::next_deadline`], and [`Call::poll_delta`] after each input to collect the
//! participant-list delta once its window has passed.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use herald_protocol::{DeviceId, OrgId, UserId};

use super::config::CallLimits;
use super::error::CallError;
use super::participant::{Endpoint, Participant, ParticipantView, Presence, Role};
use super::ring::{Invite, RingEnd};
use super::roster::{Delta, Roster, SnapshotPage};

/// A call's identity, unique within the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl CallId {
    /// The id with this wire value.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The wire value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// Where a call's life stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Started; invitees are ringing and nobody but the starter has joined.
    Ringing,
    /// Someone besides the starter joined (or there was nobody to ring).
    Active,
    /// Over for everyone.
    Ended(EndReason),
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The host ended it.
    HostEnded,
    /// The last participant left.
    LastLeft,
    /// Nobody was connected for the empty timeout.
    Empty,
    /// Every invitee declined or missed the ring and nobody else joined.
    NoAnswer,
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// They left.
    Left,
    /// A host removed them.
    Removed,
    /// Their rejoin grace ran out.
    GraceExpired,
    /// The call ended.
    CallEnded,
}

/// What a screen-share request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareAction {
    /// Start sharing; refused while someone else shares.
    Start,
    /// Stop one's own share.
    Stop,
    /// Host or co-host: start sharing, stopping whoever shares now.
    TakeOver,
}

/// Where a relayed blob goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayTarget {
    /// Another participant's device.
    Device(Endpoint),
    /// The deployment's media server.
    MediaServer,
}

/// The call's own settings, as deltas and snapshots report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The call.
    pub id: CallId,
    /// Its state.
    pub state: CallState,
    /// The host.
    pub host: UserId,
    /// No new participants.
    pub locked: bool,
    /// The recording flag.
    pub recording: bool,
    /// The capacity from the organisation's tier.
    pub capacity: u32,
    /// The device sharing its screen.
    pub sharer: Option<Endpoint>,
}

/// What the owner must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ring every device of `user` until `deadline_ms` (urgent stream).
    Ring {
        /// The invitee.
        user: UserId,
        /// When the ring times out.
        deadline_ms: u64,
    },
    /// Stop ringing `user`'s devices, except `answered_on` (the device that answered).
    StopRing {
        /// The invitee.
        user: UserId,
        /// The device that accepted, which needs no stop.
        answered_on: Option<DeviceId>,
        /// Why.
        reason: RingEnd,
    },
    /// A device joined (`rejoin`: within its grace, keeping its slot). Audited.
    Joined {
        /// Who.
        endpoint: Endpoint,
        /// Whether it came back within its grace.
        rejoin: bool,
    },
    /// A device left the call. Audited; a removed device is told.
    Left {
        /// Who.
        endpoint: Endpoint,
        /// Why.
        reason: LeaveReason,
    },
    /// A host muted this device: its client mutes the microphone.
    MutedBy {
        /// The muted device.
        endpoint: Endpoint,
        /// Who muted it.
        by: UserId,
    },
    /// The recording flag changed. Audited.
    Recording {
        /// On or off.
        on: bool,
        /// Who changed it.
        by: UserId,
    },
    /// Forward a blob (the owner adds the sender and sends it as is).
    Relay {
        /// The sender.
        from: Endpoint,
        /// The destination.
        to: RelayTarget,
        /// The opaque blob.
        blob: Bytes,
    },
    /// The call ended for everyone: tell the connected devices, record it. Audited.
    Ended {
        /// Why.
        reason: EndReason,
        /// From start to end.
        duration_ms: u64,
        /// Distinct users who joined at some point.
        participants: u32,
        /// The devices to tell.
        devices: Vec<Endpoint>,
    },
}

/// What starting a call needs besides the limits and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStart {
    /// The new call's id.
    pub id: CallId,
    /// The starter's organisation.
    pub org: OrgId,
    /// The conversation the call belongs to, if any.
    pub conversation: Option<u64>,
    /// The starter's device, which joins at once as host.
    pub host: Endpoint,
    /// Users to ring (the starter is skipped).
    pub invitees: Vec<UserId>,
    /// The organisation's call tier.
    pub capacity: u32,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    id: CallId,
    org: OrgId,
    conversation: Option<u64>,
    started_by: UserId,
    started_at_ms: u64,
    state: CallState,
    host: UserId,
    co_hosts: BTreeSet<UserId>,
    capacity: u32,
    locked: bool,
    recording: bool,
    sharer: Option<Endpoint>,
    invites: BTreeMap<UserId, Invite>,
    roster: Roster,
    ever_joined: BTreeSet<UserId>,
    empty_since_ms: Option<u64>,
    limits: CallLimits,
}

impl Call {
    /// Starts a call: `host` joins at once and every invitee (other than the host) rings.
    ///
    /// # Errors
    /// [`CallError::Invalid`] for more invitees than the limits allow or a zero capacity.
    pub fn start(start: CallStart, limits: CallLimits, now_ms: u64) -> Result<(Self, Vec<Effect>), CallError> {
        let CallStart { id, org, conversation, host, invitees, capacity } = start;
        if invitees.len() > limits.max_invitees {
            return Err(CallError::Invalid("too many invitees"));
        }
        if capacity == 0 {
            return Err(CallError::Invalid("the organisation's call tier is 0"));
        }
        let deadline_ms = now_ms.saturating_add(limits.ring_ms());
        let invites: BTreeMap<UserId, Invite> =
            invitees.iter().filter(|u| **u != host.user).map(|u| (u.clone(), Invite::ringing(deadline_ms))).collect();
        let state = if invites.is_empty() { CallState::Active } else { CallState::Ringing };
        let mut call = Self {
            id,
            org,
            conversation,
            started_by: host.user.clone(),
            started_at_ms: now_ms,
            state,
            host: host.user.clone(),
            co_hosts: BTreeSet::new(),
            capacity,
            locked: false,
            recording: false,
            sharer: None,
            invites,
            roster: Roster::default(),
            ever_joined: BTreeSet::from([host.user.clone()]),
            empty_since_ms: None,
            limits,
        };
        call.roster.upsert(now_ms, host.clone(), Participant::joining(now_ms, false, false));
        let mut effects: Vec<Effect> =
            call.invites.keys().map(|user| Effect::Ring { user: user.clone(), deadline_ms }).collect();
        effects.push(Effect::Joined { endpoint: host, rejoin: false });
        Ok((call, effects))
    }

    /// The call's id.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// The organisation it belongs to.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The conversation it belongs to, if any.
    pub fn conversation(&self) -> Option<u64> {
        self.conversation
    }

    /// Who started it.
    pub fn started_by(&self) -> &UserId {
        &self.started_by
    }

    /// When it started (the clock the owner passes in).
    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    /// The limits it runs under.
    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// Where it stands.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// The participant list.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The invites and how each stands.
    pub fn invites(&self) -> &BTreeMap<UserId, Invite> {
        &self.invites
    }

    /// A user's role.
    pub fn role(&self, user: &UserId) -> Role {
        if *user == self.host {
            Role::Host
        } else if self.co_hosts.contains(user) {
            Role::CoHost
        } else {
            Role::Participant
        }
    }

    /// The call's settings.
    pub fn info(&self) -> CallInfo {
        CallInfo {
            id: self.id,
            state: self.state,
            host: self.host.clone(),
            locked: self.locked,
            recording: self.recording,
            capacity: self.capacity,
            sharer: self.sharer.clone(),
        }
    }

    /// How `endpoint` shows in the list, if it is in.
    pub fn view(&self, endpoint: &Endpoint) -> Option<ParticipantView> {
        let state = self.roster.get(endpoint)?.clone();
        Some(ParticipantView {
            endpoint: endpoint.clone(),
            state,
            role: self.role(&endpoint.user),
            sharing: self.sharer.as_ref() == Some(endpoint),
        })
    }

    /// A page of the list for a device that joins or lost track of the version.
    pub fn snapshot(&self, after: Option<&Endpoint>, limit: usize) -> SnapshotPage {
        self.roster.page(after, limit.min(self.limits.snapshot_page))
    }

    /// Every connected device (to tell of the end, or to fan a delta out to).
    pub fn connected_devices(&self) -> Vec<Endpoint> {
        self.roster.iter().filter(|(_, p)| p.connected()).map(|(e, _)| e.clone()).collect()
    }

    fn ensure_live(&self) -> Result<(), CallError> {
        match self.state {
            CallState::Ended(_) => Err(CallError::Ended),
            _ => Ok(()),
        }
    }

    fn ensure_in(&self, endpoint: &Endpoint) -> Result<(), CallError> {
        self.ensure_live()?;
        if self.roster.connected(endpoint) { Ok(()) } else { Err(CallError::NotInCall) }
    }

    fn ensure_controls(&self, by: &Endpoint) -> Result<(), CallError> {
        self.ensure_in(by)?;
        if self.role(&by.user).controls() { Ok(()) } else { Err(CallError::NotHost) }
    }

    fn ensure_host(&self, by: &Endpoint) -> Result<(), CallError> {
        self.ensure_in(by)?;
        if by.user == self.host { Ok(()) } else { Err(CallError::NotHost) }
    }

    /// Joins (or, for an invitee, accepts) from `endpoint`. A device within its rejoin grace gets
    /// its slot back regardless of capacity and lock; a device already connected joins again
    /// harmlessly (a retried request).
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::Locked`] (the host's own devices still join),
    /// [`CallError::Full`].
    pub fn join(
        &mut self,
        now_ms: u64,
        endpoint: Endpoint,
        audio_muted: bool,
        video_muted: bool,
    ) -> Result<Vec<Effect>, CallError> {
        self.ensure_live()?;
        let rejoin = match self.roster.get(&endpoint) {
            Some(p) if p.connected() => return Ok(Vec::new()),
            Some(_) => true,
            None => false,
        };
        if !rejoin {
            if self.locked && endpoint.user != self.host {
                return Err(CallError::Locked);
            }
            if self.roster.len() >= usize::try_from(self.capacity).unwrap_or(usize::MAX) {
                return Err(CallError::Full { capacity: self.capacity });
            }
        }
        let mut effects = Vec::new();
        if let Some(invite) = self.invites.get_mut(&endpoint.user).filter(|i| i.is_ringing()) {
            invite.state = RingEnd::Accepted.final_state();
            effects.push(Effect::StopRing {
                user: endpoint.user.clone(),
                answered_on: Some(endpoint.device.clone()),
                reason: RingEnd::Accepted,
            });
        }
        if rejoin {
            self.roster.update(now_ms, &endpoint, |p| p.presence = Presence::Connected);
        } else {
            self.roster.upsert(now_ms, endpoint.clone(), Participant::joining(now_ms, audio_muted, video_muted));
        }
        self.ever_joined.insert(endpoint.user.clone());
        self.empty_since_ms = None;
        if self.state == CallState::Ringing && endpoint.user != self.started_by {
            self.state = CallState::Active;
            self.roster.touch_info(now_ms);
        }
        effects.push(Effect::Joined { endpoint, rejoin });
        Ok(effects)
    }

    /// Declines a ringing invite: the user's devices stop ringing.
    ///
    /// # Errors
    /// [`CallError::Ended`]; [`CallError::NotInvited`] when the user has no ringing invite.
    pub fn decline(&mut self, now_ms: u64, user: &UserId) -> Result<Vec<Effect>, CallError> {
        self.ensure_live()?;
        self.finish_ring(now_ms, user, RingEnd::Declined).ok_or(CallError::NotInvited)
    }

    fn finish_ring(&mut self, now_ms: u64, user: &UserId, reason: RingEnd) -> Option<Vec<Effect>> {
        let invite = self.invites.get_mut(user).filter(|i| i.is_ringing())?;
        invite.state = reason.final_state();
        let mut effects = vec![Effect::StopRing { user: user.clone(), answered_on: None, reason }];
        let unanswered = self.state == CallState::Ringing && !self.invites.values().any(Invite::is_ringing);
        if unanswered {
            effects.extend(self.end(now_ms, EndReason::NoAnswer));
        }
        Some(effects)
    }

    /// Leaves from `endpoint`. The host leaving hands the role on; the last one out ends the call.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`].
    pub fn leave(&mut self, now_ms: u64, endpoint: &Endpoint) -> Result<Vec<Effect>, CallError> {
        self.ensure_live()?;
        if self.roster.get(endpoint).is_none() {
            return Err(CallError::NotInCall);
        }
        Ok(self.depart(now_ms, endpoint, LeaveReason::Left))
    }

    /// The device's connection dropped: it keeps its slot for the rejoin grace.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`].
    pub fn disconnected(&mut self, now_ms: u64, endpoint: &Endpoint) -> Result<Vec<Effect>, CallError> {
        self.ensure_in(endpoint)?;
        let until_ms = now_ms.saturating_add(self.limits.grace_ms());
        self.roster.update(now_ms, endpoint, |p| p.presence = Presence::Dropped { until_ms });
        if self.sharer.as_ref() == Some(endpoint) {
            self.sharer = None;
            self.roster.touch_view(now_ms, endpoint);
            self.roster.touch_info(now_ms);
        }
        if self.empty_since_ms.is_none() && self.connected_devices().is_empty() {
            self.empty_since_ms = Some(now_ms);
        }
        Ok(Vec::new())
    }

    fn depart(&mut self, now_ms: u64, endpoint: &Endpoint, reason: LeaveReason) -> Vec<Effect> {
        if self.roster.remove(now_ms, endpoint).is_none() {
            return Vec::new();
        }
        if self.sharer.as_ref() == Some(endpoint) {
            self.sharer = None;
            self.roster.touch_info(now_ms);
        }
        let mut effects = vec![Effect::Left { endpoint: endpoint.clone(), reason }];
        if self.roster.is_empty() {
            effects.extend(self.end(now_ms, EndReason::LastLeft));
            return effects;
        }
        let user_still_in = self.roster.iter().any(|(e, _)| e.user == endpoint.user);
        if !user_still_in {
            self.co_hosts.remove(&endpoint.user);
            if endpoint.user == self.host {
                self.hand_on_host(now_ms);
            }
        }
        if self.empty_since_ms.is_none() && self.connected_devices().is_empty() {
            self.empty_since_ms = Some(now_ms);
        }
        effects
    }

    /// Gives the host role to a co-host, else to the earliest joined participant.
    fn hand_on_host(&mut self, now_ms: u64) {
        let successor = self
            .roster
            .iter()
            .min_by_key(|(e, p)| (!p.connected(), !self.co_hosts.contains(&e.user), p.joined_at_ms, (*e).clone()))
            .map(|(e, _)| e.user.clone());
        if let Some(user) = successor {
            self.set_host(now_ms, user);
        }
    }

    fn set_host(&mut self, now_ms: u64, user: UserId) {
        let old = std::mem::replace(&mut self.host, user.clone());
        self.co_hosts.remove(&user);
        self.touch_user(now_ms, &old);
        self.touch_user(now_ms, &user);
        self.roster.touch_info(now_ms);
    }

    fn touch_user(&mut self, now_ms: u64, user: &UserId) {
        let endpoints: Vec<Endpoint> =
            self.roster.iter().filter(|(e, _)| e.user == *user).map(|(e, _)| e.clone()).collect();
        for e in &endpoints {
            self.roster.touch_view(now_ms, e);
        }
    }

    /// The host ends the call for everyone.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::NotHost`].
    pub fn end_by(&mut self, now_ms: u64, by: &Endpoint) -> Result<Vec<Effect>, CallError> {
        self.ensure_host(by)?;
        Ok(self.end(now_ms, EndReason::HostEnded))
    }

    fn end(&mut self, now_ms: u64, reason: EndReason) -> Vec<Effect> {
        let mut effects = Vec::new();
        let ringing: Vec<UserId> =
            self.invites.iter().filter(|(_, i)| i.is_ringing()).map(|(u, _)| u.clone()).collect();
        for user in ringing {
            if let Some(invite) = self.invites.get_mut(&user) {
                invite.state = RingEnd::Cancelled.final_state();
            }
            effects.push(Effect::StopRing { user, answered_on: None, reason: RingEnd::Cancelled });
        }
        let devices = self.connected_devices();
        let everyone: Vec<Endpoint> = self.roster.iter().map(|(e, _)| e.clone()).collect();
        for e in &everyone {
            self.roster.remove(now_ms, e);
        }
        self.sharer = None;
        self.state = CallState::Ended(reason);
        self.roster.touch_info(now_ms);
        effects.push(Effect::Ended {
            reason,
            duration_ms: now_ms.saturating_sub(self.started_at_ms),
            participants: u32::try_from(self.ever_joined.len()).unwrap_or(u32::MAX),
            devices,
        });
        effects
    }

    /// Sets one's own media and hand state (`None` leaves a field as it is).
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`].
    pub fn set_own(
        &mut self,
        now_ms: u64,
        endpoint: &Endpoint,
        audio_muted: Option<bool>,
        video_muted: Option<bool>,
        hand_raised: Option<bool>,
    ) -> Result<Vec<Effect>, CallError> {
        self.ensure_in(endpoint)?;
        self.roster.update(now_ms, endpoint, |p| {
            p.audio_muted = audio_muted.unwrap_or(p.audio_muted);
            p.video_muted = video_muted.unwrap_or(p.video_muted);
            p.hand_raised = hand_raised.unwrap_or(p.hand_raised);
        });
        Ok(Vec::new())
    }

    /// Host or co-host mutes one device, or (`None`) every device but their own.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::NotHost`],
    /// [`CallError::UnknownTarget`].
    pub fn mute(&mut self, now_ms: u64, by: &Endpoint, target: Option<&Endpoint>) -> Result<Vec<Effect>, CallError> {
        self.ensure_controls(by)?;
        let targets: Vec<Endpoint> = match target {
            Some(t) if self.roster.get(t).is_some() => vec![t.clone()],
            Some(_) => return Err(CallError::UnknownTarget),
            None => self.roster.iter().filter(|(e, p)| *e != by && !p.audio_muted).map(|(e, _)| e.clone()).collect(),
        };
        let mut effects = Vec::new();
        for t in targets {
            self.roster.update(now_ms, &t, |p| p.audio_muted = true);
            effects.push(Effect::MutedBy { endpoint: t, by: by.user.clone() });
        }
        Ok(effects)
    }

    /// Host or co-host removes a device. The host cannot be removed (transfer first).
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::NotHost`],
    /// [`CallError::UnknownTarget`].
    pub fn remove(&mut self, now_ms: u64, by: &Endpoint, target: &Endpoint) -> Result<Vec<Effect>, CallError> {
        self.ensure_controls(by)?;
        if self.roster.get(target).is_none() {
            return Err(CallError::UnknownTarget);
        }
        if target.user == self.host {
            return Err(CallError::NotHost);
        }
        Ok(self.depart(now_ms, target, LeaveReason::Removed))
    }

    /// Host or co-host locks or unlocks the call.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::NotHost`].
    pub fn lock(&mut self, now_ms: u64, by: &Endpoint, locked: bool) -> Result<Vec<Effect>, CallError> {
        self.ensure_controls(by)?;
        if self.locked != locked {
            self.locked = locked;
            self.roster.touch_info(now_ms);
        }
        Ok(Vec::new())
    }

    /// The host hands the role to a user in the call; the old host becomes a participant.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::NotHost`],
    /// [`CallError::UnknownTarget`].
    pub fn transfer_host(&mut self, now_ms: u64, by: &Endpoint, to: &UserId) -> Result<Vec<Effect>, CallError> {
        self.ensure_host(by)?;
        if !self.roster.iter().any(|(e, p)| e.user == *to && p.connected()) {
            return Err(CallError::UnknownTarget);
        }
        if *to != self.host {
            self.set_host(now_ms, to.clone());
        }
        Ok(Vec::new())
    }

    /// The host makes a user in the call a co-host, or takes the role back.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::NotHost`],
    /// [`CallError::UnknownTarget`].
    pub fn set_co_host(
        &mut self,
        now_ms: u64,
        by: &Endpoint,
        user: &UserId,
        on: bool,
    ) -> Result<Vec<Effect>, CallError> {
        self.ensure_host(by)?;
        if *user == self.host || !self.roster.iter().any(|(e, _)| e.user == *user) {
            return Err(CallError::UnknownTarget);
        }
        let changed = if on { self.co_hosts.insert(user.clone()) } else { self.co_hosts.remove(user) };
        if changed {
            self.touch_user(now_ms, user);
        }
        Ok(Vec::new())
    }

    /// Host or co-host turns the recording flag on or off; everyone is told.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::NotHost`].
    pub fn set_recording(&mut self, now_ms: u64, by: &Endpoint, on: bool) -> Result<Vec<Effect>, CallError> {
        self.ensure_controls(by)?;
        if self.recording == on {
            return Ok(Vec::new());
        }
        self.recording = on;
        self.roster.touch_info(now_ms);
        Ok(vec![Effect::Recording { on, by: by.user.clone() }])
    }

    /// Starts, stops or takes over the screen share. One sharer at a time.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::ScreenBusy`] (someone else
    /// shares), [`CallError::NotHost`] (take-over by a participant).
    pub fn share(&mut self, now_ms: u64, by: &Endpoint, action: ShareAction) -> Result<Vec<Effect>, CallError> {
        self.ensure_in(by)?;
        match action {
            ShareAction::Start if self.sharer.as_ref().is_some_and(|s| s != by) => return Err(CallError::ScreenBusy),
            ShareAction::TakeOver if !self.role(&by.user).controls() => return Err(CallError::NotHost),
            ShareAction::Stop if self.sharer.as_ref() != Some(by) => return Ok(Vec::new()),
            _ => {}
        }
        let next = if action == ShareAction::Stop { None } else { Some(by.clone()) };
        if next != self.sharer {
            let old = std::mem::replace(&mut self.sharer, next);
            if let Some(old) = old {
                self.roster.touch_view(now_ms, &old);
            }
            self.roster.touch_view(now_ms, by);
            self.roster.touch_info(now_ms);
        }
        Ok(Vec::new())
    }

    /// Relays an opaque blob from a participant to another participant's device or to the
    /// media server. The blob is checked for size only.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::NotInCall`], [`CallError::BlobTooLarge`],
    /// [`CallError::UnknownTarget`] (the device is not connected to the call).
    pub fn relay(&self, by: &Endpoint, to: RelayTarget, blob: Bytes) -> Result<Vec<Effect>, CallError> {
        self.ensure_in(by)?;
        if blob.len() > self.limits.max_blob_bytes {
            return Err(CallError::BlobTooLarge { len: blob.len(), max: self.limits.max_blob_bytes });
        }
        if let RelayTarget::Device(target) = &to
            && !self.roster.connected(target)
        {
            return Err(CallError::UnknownTarget);
        }
        Ok(vec![Effect::Relay { from: by.clone(), to, blob }])
    }

    /// Checks a blob from the deployment's media server, which is not a participant, for a
    /// participant's device.
    ///
    /// # Errors
    /// [`CallError::Ended`], [`CallError::BlobTooLarge`], [`CallError::UnknownTarget`].
    pub fn relay_from_media_server(&self, to: &Endpoint, blob: &Bytes) -> Result<(), CallError> {
        self.ensure_live()?;
        if blob.len() > self.limits.max_blob_bytes {
            return Err(CallError::BlobTooLarge { len: blob.len(), max: self.limits.max_blob_bytes });
        }
        if self.roster.connected(to) { Ok(()) } else { Err(CallError::UnknownTarget) }
    }

    /// The earliest time [`Call::handle_timeout`] has work, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        if matches!(self.state, CallState::Ended(_)) {
            return self.roster.delta_due_ms(self.limits.window_ms());
        }
        let rings = self.invites.values().filter_map(Invite::deadline_ms);
        let graces = self.roster.iter().filter_map(|(_, p)| match p.presence {
            Presence::Dropped { until_ms } => Some(until_ms),
            Presence::Connected => None,
        });
        let empty = self.empty_since_ms.map(|t| t.saturating_add(self.limits.empty_ms()));
        rings.chain(graces).chain(empty).chain(self.roster.delta_due_ms(self.limits.window_ms())).min()
    }

    /// Fires what is due at `now_ms`: missed rings, expired graces, the empty timeout. Deltas
    /// are collected separately with [`Call::poll_delta`].
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let missed: Vec<UserId> = self
            .invites
            .iter()
            .filter(|(_, i)| i.deadline_ms().is_some_and(|d| d <= now_ms))
            .map(|(u, _)| u.clone())
            .collect();
        for user in missed {
            if self.ensure_live().is_ok() {
                effects.extend(self.finish_ring(now_ms, &user, RingEnd::Missed).unwrap_or_default());
            }
        }
        let expired: Vec<Endpoint> = self
            .roster
            .iter()
            .filter(|(_, p)| matches!(p.presence, Presence::Dropped { until_ms } if until_ms <= now_ms))
            .map(|(e, _)| e.clone())
            .collect();
        for endpoint in expired {
            if self.ensure_live().is_ok() {
                effects.extend(self.depart(now_ms, &endpoint, LeaveReason::GraceExpired));
            }
        }
        let empty_due = self.empty_since_ms.is_some_and(|t| t.saturating_add(self.limits.empty_ms()) <= now_ms);
        if empty_due && self.ensure_live().is_ok() && self.connected_devices().is_empty() {
            effects.extend(self.end(now_ms, EndReason::Empty));
        }
        effects
    }

    /// The participant-list delta, once its window has passed (at once after the call ended).
    pub fn poll_delta(&mut self, now_ms: u64) -> Option<Delta> {
        let force = matches!(self.state, CallState::Ended(_));
        self.roster.take_delta(now_ms, self.limits.window_ms(), force)
    }
}
