//! Every call of the broker, owned by the call loop: requests and disconnects in, pushes, audit
//! events and call records out (sans-IO: the loop performs them).

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
use herald_protocol::{Body, DeviceId, OrgId, UserId, pb};

use super::config::CallLimits;
use super::error::CallError;
use super::machine::{Call, CallId, CallStart, CallState, Effect, LeaveReason, RelayTarget};
use super::participant::Endpoint;
use super::roster::Change;
use super::wire::{self, CallRequest, Control};
use crate::audit::{AuditAction, AuditEvent};
use crate::fanout::{Lane, encode_push};

/// How long an ended call is remembered, so requests naming it get CALL_ENDED.
const ENDED_MEMORY_MS: u64 = 10 * 60 * 1000;

/// Who a push goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// These devices.
    Devices(Vec<Endpoint>),
    /// Every online device of a user, but one.
    User {
        /// The user.
        user: UserId,
        /// The device left out.
        except: Option<DeviceId>,
    },
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Queue an encoded frame.
    Push {
        /// The organisation of the call.
        org: OrgId,
        /// To whom.
        target: Target,
        /// Which stream.
        lane: Lane,
        /// The frame, encoded once.
        frame: Bytes,
    },
    /// Record an audit event (actor empty: the broker's own timers).
    Audit(AuditEvent),
    /// Sequence a call record into a conversation, authored by the starter.
    Record {
        /// The organisation.
        org: OrgId,
        /// The conversation.
        conversation: u64,
        /// Who started the call: the record's author.
        starter: UserId,
        /// The record.
        record: pb::CallRecord,
    },
}

/// Who may join a call besides its invitees and the users already in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Anyone in the organisation who knows the call (a meeting link), or the caller is
    /// invited or in already: the join goes straight to the call.
    Open,
    /// The call belongs to this conversation: only its members may join, which its shard checks.
    MembersOf(u64),
}

/// A request's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its organisation.
    pub org: OrgId,
    /// Its device.
    pub endpoint: Endpoint,
}

/// Every call, the calls each device is in, and what is to be done.
#[derive(Debug, Default)]
pub struct CallTable {
    calls: HashMap<CallId, Call>,
    by_device: HashMap<(OrgId, Endpoint), BTreeSet<CallId>>,
    ended: VecDeque<(u64, CallId)>,
    limits: CallLimits,
    media_server: Option<UserId>,
    outs: Vec<Out>,
}

impl CallTable {
    /// An empty table.
    pub fn new(limits: CallLimits, media_server: Option<UserId>) -> Self {
        Self { limits, media_server, ..Self::default() }
    }

    /// How many calls are live.
    pub fn live(&self) -> usize {
        self.calls.values().filter(|c| !matches!(c.state(), CallState::Ended(_))).count()
    }

    /// One call, for tests and metrics.
    pub fn get(&self, id: CallId) -> Option<&Call> {
        self.calls.get(&id)
    }

    /// Whether `caller` may join call `id` as it is, or must first prove membership of the
    /// call's conversation. An unknown call is [`Admission::Open`]: the join itself then
    /// answers that it does not exist.
    pub fn admission(&self, caller: &Caller, id: CallId) -> Admission {
        let Some(call) = self.calls.get(&id).filter(|c| *c.org() == caller.org) else { return Admission::Open };
        let user = &caller.endpoint.user;
        let known = call.invites().contains_key(user)
            || call.started_by() == user
            || self.media_server.as_ref() == Some(user)
            || call.roster().iter().any(|(endpoint, _)| endpoint.user == *user);
        match call.conversation() {
            Some(conversation) if !known => Admission::MembersOf(conversation),
            _ => Admission::Open,
        }
    }

    /// What is to be done, taken.
    pub fn take_outs(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.outs)
    }

    /// Serves one request; the answer's body, or why it was refused. `capacity` is the caller's
    /// organisation's call tier; `new_id` the id a started call takes.
    ///
    /// # Errors
    /// The [`CallError`] refusing it; nothing changed.
    pub fn serve(
        &mut self,
        now_ms: u64,
        caller: &Caller,
        request: CallRequest,
        capacity: u32,
        new_id: u64,
    ) -> Result<Body, CallError> {
        let Some(id) = request.call() else { return self.start(now_ms, caller, request, capacity, new_id) };
        let call = self.calls.get_mut(&id).filter(|c| *c.org() == caller.org).ok_or(CallError::UnknownCall)?;
        let me = &caller.endpoint;
        let is_join = matches!(request, CallRequest::Join { .. });
        let effects = match request {
            CallRequest::Start { .. } => return Err(CallError::Invalid("not a call request")),
            CallRequest::Join { audio_muted, video_muted, .. } => {
                call.join(now_ms, me.clone(), audio_muted, video_muted)?
            }
            CallRequest::Decline { .. } => call.decline(now_ms, &me.user)?,
            CallRequest::Leave { .. } => call.leave(now_ms, me)?,
            CallRequest::End { .. } => call.end_by(now_ms, me)?,
            CallRequest::SetSelf { audio_muted, video_muted, hand_raised, .. } => {
                call.set_own(now_ms, me, audio_muted, video_muted, hand_raised)?
            }
            CallRequest::Control { control, .. } => match control {
                Control::Mute(target) => call.mute(now_ms, me, target.as_ref())?,
                Control::Remove(target) => call.remove(now_ms, me, &target)?,
                Control::Lock(on) => call.lock(now_ms, me, on)?,
                Control::TransferHost(to) => call.transfer_host(now_ms, me, &to)?,
                Control::CoHost(user, on) => call.set_co_host(now_ms, me, &user, on)?,
                Control::Recording(on) => call.set_recording(now_ms, me, on)?,
            },
            CallRequest::Share { action, .. } => call.share(now_ms, me, action)?,
            CallRequest::Relay { to, kind, blob, .. } => {
                let frame = self.relay(id, caller, to, kind, blob)?;
                self.outs.push(frame);
                return Ok(self.ok(id));
            }
            CallRequest::Snapshot { after, limit, .. } => {
                let in_call = call.roster().get(me).is_some() || self.media_server.as_ref() == Some(&me.user);
                if !in_call {
                    return Err(if matches!(call.state(), CallState::Ended(_)) {
                        CallError::Ended
                    } else {
                        CallError::NotInCall
                    });
                }
                return Ok(Body::CallSnapshot(snapshot(call, after.as_ref(), limit)));
            }
        };
        self.apply(now_ms, id, Some(&caller.endpoint), effects);
        self.flush_delta(now_ms, id);
        let call = self.calls.get(&id).ok_or(CallError::UnknownCall)?;
        // A join, first or retried, is answered with the list as it is now.
        if is_join { Ok(Body::CallJoined(joined_answer(call))) } else { Ok(self.ok(id)) }
    }

    fn ok(&self, id: CallId) -> Body {
        let version = self.calls.get(&id).map_or(0, |c| c.roster().version());
        Body::CallOk(pb::CallOk { call_id: id.get(), version })
    }

    fn start(
        &mut self,
        now_ms: u64,
        caller: &Caller,
        request: CallRequest,
        capacity: u32,
        new_id: u64,
    ) -> Result<Body, CallError> {
        let CallRequest::Start { conversation, invitees, audio_muted, video_muted } = request else {
            return Err(CallError::Invalid("not a start"));
        };
        let id = CallId::new(new_id.max(1));
        if self.calls.contains_key(&id) {
            return Err(CallError::Invalid("call id collision; retry"));
        }
        let start = CallStart {
            id,
            org: caller.org.clone(),
            conversation: (conversation != 0).then_some(conversation),
            host: caller.endpoint.clone(),
            invitees,
            capacity,
        };
        let invited = start.invitees.len();
        let (mut call, effects) = Call::start(start, self.limits, now_ms)?;
        call.set_own(now_ms, &caller.endpoint, Some(audio_muted), Some(video_muted), None)?;
        self.calls.insert(id, call);
        self.audit(
            now_ms,
            &caller.org,
            Some(&caller.endpoint),
            AuditAction::CallStarted,
            id.to_string(),
            vec![("conversation".into(), conversation.to_string()), ("invitees".into(), invited.to_string())],
        );
        self.apply(now_ms, id, Some(&caller.endpoint), effects);
        let call = self.calls.get(&id).ok_or(CallError::UnknownCall)?;
        Ok(Body::CallJoined(joined_answer(call)))
    }

    fn relay(
        &self,
        id: CallId,
        caller: &Caller,
        to: Option<super::participant::Endpoint>,
        kind: i32,
        blob: Bytes,
    ) -> Result<Out, CallError> {
        let call = self.calls.get(&id).ok_or(CallError::UnknownCall)?;
        let from_server =
            self.media_server.as_ref() == Some(&caller.endpoint.user) && call.roster().get(&caller.endpoint).is_none();
        let target = match (to, from_server) {
            (Some(to), true) => {
                call.relay_from_media_server(&to, &blob)?;
                Target::Devices(vec![to])
            }
            (to, false) => {
                let target = wire::relay_target(to);
                if target == RelayTarget::MediaServer && self.media_server.is_none() {
                    call.relay(&caller.endpoint, RelayTarget::MediaServer, blob.clone())?;
                    return Err(CallError::Invalid("no media server is configured"));
                }
                call.relay(&caller.endpoint, target.clone(), blob.clone())?;
                match (target, &self.media_server) {
                    (RelayTarget::Device(e), _) => Target::Devices(vec![e]),
                    (RelayTarget::MediaServer, Some(user)) => Target::User { user: user.clone(), except: None },
                    (RelayTarget::MediaServer, None) => {
                        return Err(CallError::Invalid("no media server is configured"));
                    }
                }
            }
            (None, true) => return Err(CallError::Invalid("the media server relays to a device")),
        };
        let relayed = pb::CallRelayed {
            call_id: id.get(),
            from_user_id: caller.endpoint.user.to_string(),
            from_device_id: caller.endpoint.device.to_string(),
            kind,
            blob: blob.to_vec(),
        };
        Ok(Out::Push { org: caller.org.clone(), target, lane: Lane::Urgent, frame: encode_push(relayed) })
    }

    /// A device's connection closed: it drops out of every call it is in, keeping its slots
    /// for the rejoin grace.
    pub fn disconnected(&mut self, now_ms: u64, org: &OrgId, endpoint: &Endpoint) {
        let key = (org.clone(), endpoint.clone());
        let calls: Vec<CallId> = self.by_device.get(&key).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for id in calls {
            let effects = self.calls.get_mut(&id).map(|c| c.disconnected(now_ms, endpoint));
            if let Some(Ok(effects)) = effects {
                self.apply(now_ms, id, Some(endpoint), effects);
            }
        }
    }

    /// The earliest time [`CallTable::tick`] has work.
    pub fn next_deadline(&self) -> Option<u64> {
        let calls = self.calls.values().filter_map(Call::next_deadline);
        calls.chain(self.ended.front().map(|(at, _)| *at)).min()
    }

    /// Fires what is due: rings, graces, empty calls, deltas; forgets long-ended calls.
    pub fn tick(&mut self, now_ms: u64) {
        let due: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.next_deadline().is_some_and(|d| d <= now_ms))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let effects = self.calls.get_mut(&id).map(|c| c.handle_timeout(now_ms)).unwrap_or_default();
            self.apply(now_ms, id, None, effects);
            self.flush_delta(now_ms, id);
        }
        while let Some((at, id)) = self.ended.front().copied() {
            if at > now_ms {
                break;
            }
            self.ended.pop_front();
            self.calls.remove(&id);
        }
    }

    fn flush_delta(&mut self, now_ms: u64, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(delta) = call.poll_delta(now_ms) else { return };
        let devices = call.connected_devices();
        if devices.is_empty() {
            return;
        }
        let mut body = pb::CallDelta {
            call_id: id.get(),
            from_version: delta.from,
            to_version: delta.to,
            call: delta.info_changed.then(|| wire::info_to_pb(&call.info(), call.conversation(), call.started_at_ms())),
            ..Default::default()
        };
        for change in &delta.changes {
            match change {
                Change::Upsert(e) => body.participants.extend(call.view(e).as_ref().map(wire::participant_to_pb)),
                Change::Removed(e) => body.removed.push(wire::endpoint_to_pb(e)),
            }
        }
        let org = call.org().clone();
        self.outs.push(Out::Push { org, target: Target::Devices(devices), lane: Lane::Push, frame: encode_push(body) });
    }

    /// Turns a call's effects into pushes, audit events and records. `actor` is the device
    /// whose request caused them (`None`: the broker's own timers).
    fn apply(&mut self, now_ms: u64, id: CallId, actor: Option<&Endpoint>, effects: Vec<Effect>) {
        let Some(call) = self.calls.get(&id) else { return };
        let org = call.org().clone();
        let info = wire::info_to_pb(&call.info(), call.conversation(), call.started_at_ms());
        let (conversation, starter) = (call.conversation(), call.started_by().clone());
        for effect in effects {
            match effect {
                Effect::Ring { user, deadline_ms } => {
                    let ring =
                        pb::CallRing { call: Some(info.clone()), from_user_id: starter.to_string(), deadline_ms };
                    // Also as datagrams: on a lossy network the first copy to arrive rings.
                    let (target, frame) = (Target::User { user, except: None }, encode_push(ring));
                    self.push_on(Lane::Datagram, &org, target.clone(), frame.clone());
                    self.push(&org, target, frame);
                }
                Effect::StopRing { user, answered_on, reason } => {
                    let stop = pb::CallRingStop {
                        call_id: id.get(),
                        reason: wire::ring_end_to_pb(reason).into(),
                        answered_on_device_id: answered_on.as_ref().map(ToString::to_string).unwrap_or_default(),
                    };
                    self.push(&org, Target::User { user, except: answered_on }, encode_push(stop));
                }
                Effect::Joined { endpoint, rejoin } => {
                    self.by_device.entry((org.clone(), endpoint.clone())).or_default().insert(id);
                    let target = format!("{id}/{}/{}", endpoint.user, endpoint.device);
                    let details = vec![("rejoin".into(), rejoin.to_string())];
                    self.audit(now_ms, &org, Some(&endpoint), AuditAction::CallJoined, target, details);
                }
                Effect::Left { endpoint, reason } => self.left(now_ms, &org, id, actor, &endpoint, reason),
                Effect::MutedBy { endpoint, by } => {
                    let muted = pb::CallMuted { call_id: id.get(), by_user_id: by.to_string() };
                    self.push(&org, Target::Devices(vec![endpoint]), encode_push(muted));
                }
                Effect::Recording { on, .. } => {
                    let details = vec![("on".into(), on.to_string())];
                    self.audit(now_ms, &org, actor, AuditAction::CallRecording, id.to_string(), details);
                }
                Effect::Relay { .. } => {}
                Effect::Ended { reason, duration_ms, participants, devices } => {
                    let ended = pb::CallEnded {
                        call_id: id.get(),
                        reason: wire::end_reason_to_pb(reason).into(),
                        duration_ms,
                        participants,
                        removed: false,
                        by_user_id: actor.map(|a| a.user.to_string()).unwrap_or_default(),
                    };
                    self.push(&org, Target::Devices(devices.clone()), encode_push(ended));
                    for e in devices {
                        self.forget_device(&org, &e, id);
                    }
                    let reason_name = format!("{reason:?}");
                    let details = vec![
                        ("reason".into(), reason_name),
                        ("duration_ms".into(), duration_ms.to_string()),
                        ("participants".into(), participants.to_string()),
                    ];
                    self.audit(now_ms, &org, actor, AuditAction::CallEnded, id.to_string(), details);
                    if let Some(conversation) = conversation {
                        let record = pb::CallRecord {
                            call_id: id.get(),
                            started_by_user_id: starter.to_string(),
                            duration_ms,
                            participants,
                            reason: u32::try_from(i32::from(wire::end_reason_to_pb(reason))).unwrap_or(0),
                        };
                        let starter = starter.clone();
                        self.outs.push(Out::Record { org: org.clone(), conversation, starter, record });
                    }
                    self.ended.push_back((now_ms.saturating_add(ENDED_MEMORY_MS), id));
                }
            }
        }
    }

    fn left(
        &mut self,
        now_ms: u64,
        org: &OrgId,
        id: CallId,
        actor: Option<&Endpoint>,
        endpoint: &Endpoint,
        reason: LeaveReason,
    ) {
        self.forget_device(org, endpoint, id);
        if reason == LeaveReason::Removed {
            let by_user_id = actor.map(|a| a.user.to_string()).unwrap_or_default();
            let removed = pb::CallEnded { call_id: id.get(), removed: true, by_user_id, ..Default::default() };
            self.push(org, Target::Devices(vec![endpoint.clone()]), encode_push(removed));
        }
        let why = match reason {
            LeaveReason::Left => "left",
            LeaveReason::Removed => "removed",
            LeaveReason::GraceExpired => "grace_expired",
            LeaveReason::CallEnded => "call_ended",
        };
        let target = format!("{id}/{}/{}", endpoint.user, endpoint.device);
        self.audit(now_ms, org, Some(endpoint), AuditAction::CallLeft, target, vec![("reason".into(), why.into())]);
    }

    fn forget_device(&mut self, org: &OrgId, endpoint: &Endpoint, id: CallId) {
        let key = (org.clone(), endpoint.clone());
        if let Some(calls) = self.by_device.get_mut(&key) {
            calls.remove(&id);
            if calls.is_empty() {
                self.by_device.remove(&key);
            }
        }
    }

    /// Queues a call notice on the urgent stream, where every notice but deltas goes.
    fn push(&mut self, org: &OrgId, target: Target, frame: Bytes) {
        self.push_on(Lane::Urgent, org, target, frame);
    }

    fn push_on(&mut self, lane: Lane, org: &OrgId, target: Target, frame: Bytes) {
        self.outs.push(Out::Push { org: org.clone(), target, lane, frame });
    }

    fn audit(
        &mut self,
        now_ms: u64,
        org: &OrgId,
        who: Option<&Endpoint>,
        action: AuditAction,
        target: String,
        details: Vec<(String, String)>,
    ) {
        self.outs.push(Out::Audit(AuditEvent {
            org: org.clone(),
            at_ms: now_ms,
            actor: who.map(|w| w.user.to_string()).unwrap_or_default(),
            device: who.map(|w| w.device.to_string()).unwrap_or_default(),
            action,
            target,
            details,
        }));
    }
}

fn joined_answer(call: &Call) -> pb::CallJoined {
    let info = wire::info_to_pb(&call.info(), call.conversation(), call.started_at_ms());
    pb::CallJoined { call: Some(info), snapshot: Some(snapshot(call, None, usize::MAX)) }
}

fn snapshot(call: &Call, after: Option<&Endpoint>, limit: usize) -> pb::CallSnapshot {
    let page = call.snapshot(after, limit);
    pb::CallSnapshot {
        call_id: call.id().get(),
        version: page.version,
        total: page.total,
        participants: page.endpoints.iter().filter_map(|e| call.view(e)).map(|v| wire::participant_to_pb(&v)).collect(),
        next: page.next.as_ref().map(wire::endpoint_to_pb),
        call: Some(wire::info_to_pb(&call.info(), call.conversation(), call.started_at_ms())),
    }
}
