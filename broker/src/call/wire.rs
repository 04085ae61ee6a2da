//! Call frames at the edge: wire requests parsed into [`CallRequest`]s, and the call's state
//! turned into the wire's messages. Nothing past this file sees a prost type for a request.

use bytes::Bytes;
use herald_protocol::{Body, DeviceId, ErrorCode, UserId, pb};

use super::machine::{CallId, CallInfo, CallState, EndReason, RelayTarget, ShareAction};
use super::participant::{Endpoint, ParticipantView, Role};
use super::ring::RingEnd;

/// A refusal while parsing: the code and the message the caller sees.
pub(crate) type Refusal = (ErrorCode, String);

/// One host control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Mute one device, or (`None`) all but the caller's.
    Mute(Option<Endpoint>),
    /// Remove a device.
    Remove(Endpoint),
    /// Lock or unlock.
    Lock(bool),
    /// Hand the host role on.
    TransferHost(UserId),
    /// Grant or take back the co-host role.
    CoHost(UserId, bool),
    /// The recording flag.
    Recording(bool),
}

/// A validated call request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRequest {
    /// Start a call (conversation 0: none).
    Start { conversation: u64, invitees: Vec<UserId>, audio_muted: bool, video_muted: bool },
    /// Join, accept or rejoin.
    Join { call: CallId, audio_muted: bool, video_muted: bool },
    /// Decline a ring.
    Decline { call: CallId },
    /// Leave.
    Leave { call: CallId },
    /// End for everyone.
    End { call: CallId },
    /// Own media and hand.
    SetSelf { call: CallId, audio_muted: Option<bool>, video_muted: Option<bool>, hand_raised: Option<bool> },
    /// A host control.
    Control { call: CallId, control: Control },
    /// The screen share.
    Share { call: CallId, action: ShareAction },
    /// Relay a blob (`to` `None`: the media server).
    Relay { call: CallId, to: Option<Endpoint>, kind: i32, blob: Bytes },
    /// A page of the list.
    Snapshot { call: CallId, after: Option<Endpoint>, limit: usize },
}

impl CallRequest {
    /// The call the request names (none for a start).
    pub fn call(&self) -> Option<CallId> {
        match self {
            CallRequest::Start { .. } => None,
            CallRequest::Join { call, .. }
            | CallRequest::Decline { call }
            | CallRequest::Leave { call }
            | CallRequest::End { call }
            | CallRequest::SetSelf { call, .. }
            | CallRequest::Control { call, .. }
            | CallRequest::Share { call, .. }
            | CallRequest::Relay { call, .. }
            | CallRequest::Snapshot { call, .. } => Some(*call),
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message.into())
}

fn call_id(raw: u64) -> Result<CallId, Refusal> {
    if raw == 0 { Err(invalid("call_id is required")) } else { Ok(CallId::new(raw)) }
}

fn user(raw: &str) -> Result<UserId, Refusal> {
    UserId::new(raw).map_err(|e| invalid(e.to_string()))
}

fn endpoint(raw: &pb::CallEndpoint) -> Result<Endpoint, Refusal> {
    let device = DeviceId::new(raw.device_id.as_str()).map_err(|e| invalid(e.to_string()))?;
    Ok(Endpoint::new(user(&raw.user_id)?, device))
}

/// Parses a call frame's body; `None` for a body that is not a call request.
pub(crate) fn parse(body: Body) -> Option<Result<CallRequest, Refusal>> {
    let parsed = match body {
        Body::CallStart(r) => {
            r.invitee_ids.iter().map(|u| user(u)).collect::<Result<Vec<_>, _>>().map(|invitees| CallRequest::Start {
                conversation: r.conversation_id,
                invitees,
                audio_muted: r.audio_muted,
                video_muted: r.video_muted,
            })
        }
        Body::CallJoin(r) => call_id(r.call_id).map(|call| CallRequest::Join {
            call,
            audio_muted: r.audio_muted,
            video_muted: r.video_muted,
        }),
        Body::CallDecline(r) => call_id(r.call_id).map(|call| CallRequest::Decline { call }),
        Body::CallLeave(r) => call_id(r.call_id).map(|call| CallRequest::Leave { call }),
        Body::CallEnd(r) => call_id(r.call_id).map(|call| CallRequest::End { call }),
        Body::CallSetSelf(r) => call_id(r.call_id).map(|call| CallRequest::SetSelf {
            call,
            audio_muted: r.audio_muted,
            video_muted: r.video_muted,
            hand_raised: r.hand_raised,
        }),
        Body::CallHostControl(r) => parse_control(r),
        Body::CallShare(r) => parse_share(&r),
        Body::CallRelay(r) => parse_relay(r),
        Body::CallSnapshotQuery(r) => (|| {
            let after = r.after.as_ref().map(endpoint).transpose()?;
            let limit = usize::try_from(r.limit).unwrap_or(usize::MAX);
            Ok(CallRequest::Snapshot {
                call: call_id(r.call_id)?,
                after,
                limit: if limit == 0 { usize::MAX } else { limit },
            })
        })(),
        _ => return None,
    };
    Some(parsed)
}

fn parse_control(r: pb::CallHostControl) -> Result<CallRequest, Refusal> {
    use pb::call_host_control::Action;
    let call = call_id(r.call_id)?;
    let control = match r.action.ok_or_else(|| invalid("action is required"))? {
        Action::Mute(e) => Control::Mute(Some(endpoint(&e)?)),
        Action::MuteAll(_) => Control::Mute(None),
        Action::Remove(e) => Control::Remove(endpoint(&e)?),
        Action::Lock(on) => Control::Lock(on),
        Action::TransferHostTo(u) => Control::TransferHost(user(&u)?),
        Action::AddCoHost(u) => Control::CoHost(user(&u)?, true),
        Action::RemoveCoHost(u) => Control::CoHost(user(&u)?, false),
        Action::Recording(on) => Control::Recording(on),
    };
    Ok(CallRequest::Control { call, control })
}

fn parse_share(r: &pb::CallShare) -> Result<CallRequest, Refusal> {
    let action = match pb::ShareAction::try_from(r.action) {
        Ok(pb::ShareAction::Start) => ShareAction::Start,
        Ok(pb::ShareAction::Stop) => ShareAction::Stop,
        Ok(pb::ShareAction::TakeOver) => ShareAction::TakeOver,
        _ => return Err(invalid("action is required")),
    };
    Ok(CallRequest::Share { call: call_id(r.call_id)?, action })
}

fn parse_relay(r: pb::CallRelay) -> Result<CallRequest, Refusal> {
    let call = call_id(r.call_id)?;
    let to = if r.to_user_id.is_empty() && r.to_device_id.is_empty() {
        None
    } else {
        Some(endpoint(&pb::CallEndpoint { user_id: r.to_user_id, device_id: r.to_device_id })?)
    };
    Ok(CallRequest::Relay { call, to, kind: r.kind, blob: Bytes::from(r.blob) })
}

/// A device on the wire.
pub(crate) fn endpoint_to_pb(e: &Endpoint) -> pb::CallEndpoint {
    pb::CallEndpoint { user_id: e.user.to_string(), device_id: e.device.to_string() }
}

/// A participant on the wire.
pub(crate) fn participant_to_pb(v: &ParticipantView) -> pb::CallParticipant {
    pb::CallParticipant {
        user_id: v.endpoint.user.to_string(),
        device_id: v.endpoint.device.to_string(),
        joined_at_ms: v.state.joined_at_ms,
        role: role_to_pb(v.role).into(),
        audio_muted: v.state.audio_muted,
        video_muted: v.state.video_muted,
        hand_raised: v.state.hand_raised,
        sharing: v.sharing,
        connected: v.state.connected(),
    }
}

fn role_to_pb(role: Role) -> pb::CallRole {
    match role {
        Role::Host => pb::CallRole::Host,
        Role::CoHost => pb::CallRole::CoHost,
        Role::Participant => pb::CallRole::Participant,
    }
}

/// The call's settings on the wire.
pub(crate) fn info_to_pb(info: &CallInfo, conversation: Option<u64>, started_at_ms: u64) -> pb::CallInfo {
    let state = match info.state {
        CallState::Ringing => pb::CallState::Ringing,
        CallState::Active => pb::CallState::Active,
        CallState::Ended(_) => pb::CallState::Ended,
    };
    pb::CallInfo {
        call_id: info.id.get(),
        conversation_id: conversation.unwrap_or(0),
        state: state.into(),
        host_id: info.host.to_string(),
        locked: info.locked,
        recording: info.recording,
        capacity: info.capacity,
        sharer: info.sharer.as_ref().map(endpoint_to_pb),
        started_at_ms,
    }
}

/// An end reason on the wire.
pub(crate) fn end_reason_to_pb(reason: EndReason) -> pb::CallEndReason {
    match reason {
        EndReason::HostEnded => pb::CallEndReason::HostEnded,
        EndReason::LastLeft => pb::CallEndReason::LastLeft,
        EndReason::Empty => pb::CallEndReason::Empty,
        EndReason::NoAnswer => pb::CallEndReason::NoAnswer,
    }
}

/// A ring's end on the wire.
pub(crate) fn ring_end_to_pb(reason: RingEnd) -> pb::RingEndReason {
    match reason {
        RingEnd::Accepted => pb::RingEndReason::Accepted,
        RingEnd::Declined => pb::RingEndReason::Declined,
        RingEnd::Missed => pb::RingEndReason::Missed,
        RingEnd::Cancelled => pb::RingEndReason::Cancelled,
    }
}

/// The relay target a request names.
pub(crate) fn relay_target(to: Option<Endpoint>) -> RelayTarget {
    to.map_or(RelayTarget::MediaServer, RelayTarget::Device)
}
