//! Where a session's call request goes: to the call loop, after (for a conversation's call) the
//! conversation's shard has confirmed the caller is a member, named whom to ring on a start and
//! admitted a joiner who was not rung; and where
//! an ended call's record goes: to its conversation's shard, like any sequenced event.

use std::sync::{Arc, Weak};

use herald_protocol::{DeviceId, ErrorCode, Frame, RequestId, SessionId, UserId, pb};
use tokio::sync::mpsc;
use tracing::warn;

use super::error::CallError;
use super::machine::CallId;
use super::participant::Endpoint;
use super::service::RecordPost;
use super::table::{Admission, Caller};
use super::wire::CallRequest;
use crate::auth::Identity;
use crate::conversation::ConversationId;
use crate::fanout::ReplyTo;
use crate::session::Services;
use crate::shard::{Command, Origin, Request};

/// The most members one start rings (the largest call tier).
const MAX_RING: usize = 1000;

/// Serves a call request; exactly one answer goes to `reply`.
pub(crate) fn dispatch(
    services: &Arc<Services>,
    caller: Identity,
    request: CallRequest,
    request_id: RequestId,
    reply: ReplyTo,
) {
    let services = services.clone();
    tokio::spawn(async move {
        let answer = serve(&services, caller, request, request_id).await;
        reply.send(answer);
    });
}

async fn serve(services: &Services, caller: Identity, mut request: CallRequest, request_id: RequestId) -> Frame {
    let who = Caller { org: caller.org.clone(), endpoint: Endpoint::new(caller.user.clone(), caller.device.clone()) };
    match &mut request {
        CallRequest::Start { conversation, invitees, .. } if *conversation != 0 => {
            match members(services, &caller, *conversation, MAX_RING, request_id).await {
                Ok(members) if invitees.is_empty() => *invitees = members,
                Ok(_) => {}
                Err(refusal) => return refusal,
            }
        }
        CallRequest::Join { call, .. } => {
            if let Err(refusal) = admit(services, &caller, &who, *call, request_id).await {
                return refusal;
            }
        }
        _ => {}
    }
    let Ok(answer) = services.calls.submit(who, request, request_id) else { return busy(request_id) };
    answer.await.unwrap_or_else(|_| stopped(request_id))
}

/// Lets a join through, or answers why not: a conversation's call admits only the members of
/// the conversation (or those already invited or in it). A non-member is told the call does not
/// exist, exactly as for an unknown id, so call ids reveal nothing across conversations.
async fn admit(
    services: &Services,
    caller: &Identity,
    who: &Caller,
    call: CallId,
    request_id: RequestId,
) -> Result<(), Frame> {
    let Ok(admission) = services.calls.admission(who.clone(), call) else { return Err(busy(request_id)) };
    let Ok(admission) = admission.await else { return Err(stopped(request_id)) };
    let Admission::MembersOf(conversation) = admission else { return Ok(()) };
    match members(services, caller, conversation, 0, request_id).await {
        Ok(_) => Ok(()),
        Err(refusal) if is_transient(&refusal) => Err(refusal),
        Err(_) => {
            let unknown = CallError::UnknownCall;
            Err(Frame::error(request_id, unknown.code(), unknown.to_string()))
        }
    }
}

fn is_transient(refusal: &Frame) -> bool {
    refusal
        .decode_body::<pb::Error>()
        .is_ok_and(|e| matches!(ErrorCode::from_u32(e.code), ErrorCode::OVERLOADED | ErrorCode::UNAVAILABLE))
}

fn busy(request_id: RequestId) -> Frame {
    Frame::error(request_id, ErrorCode::OVERLOADED, "the call loop is busy")
}

fn stopped(request_id: RequestId) -> Frame {
    Frame::error(request_id, ErrorCode::UNAVAILABLE, "the call loop stopped")
}

/// Up to `limit` of the conversation's members (the caller's membership checked by its shard),
/// or the shard's refusal as the answer.
async fn members(
    services: &Services,
    caller: &Identity,
    conversation: u64,
    limit: usize,
    request_id: RequestId,
) -> Result<Vec<UserId>, Frame> {
    let (reply, mut answers) = ReplyTo::channel();
    let origin = Origin {
        session: SessionId::new(0),
        org: caller.org.clone(),
        user: caller.user.clone(),
        device: caller.device.clone(),
        org_admin: false,
        request_id,
        reply,
    };
    let request = Request::ListMembers { id: ConversationId::new(conversation), after: None, limit };
    if services.shards.route(Command { origin, request }).is_err() {
        return Err(Frame::error(request_id, ErrorCode::OVERLOADED, "the conversation's shard is busy"));
    }
    let Some(frame) = answers.recv().await else {
        return Err(Frame::error(request_id, ErrorCode::UNAVAILABLE, "the conversation's shard stopped"));
    };
    match frame.decode_body::<pb::MemberPage>() {
        Ok(page) => Ok(page.members.iter().filter_map(|m| UserId::new(m.user_id.as_str()).ok()).collect()),
        Err(_) => Err(frame),
    }
}

/// Sequences ended calls' records into their conversations until the call loop stops. Holds
/// the services weakly, so it never keeps a stopping broker alive.
pub(crate) async fn forward_records(services: Weak<Services>, mut records: mpsc::UnboundedReceiver<RecordPost>) {
    while let Some(post) = records.recv().await {
        let Some(services) = services.upgrade() else { return };
        let Ok(device) = DeviceId::new("broker") else { return };
        let (reply, mut answers) = ReplyTo::channel();
        let (org, conversation) = (post.org.clone(), post.conversation);
        tokio::spawn(async move {
            if let Some(frame) = answers.recv().await
                && let Ok(error) = frame.decode_body::<pb::Error>()
            {
                let code = ErrorCode::from_u32(error.code);
                warn!(%org, conversation, %code, message = error.message, "a call record could not be sequenced");
            }
        });
        let origin = Origin {
            session: SessionId::new(0),
            org: post.org,
            user: post.starter,
            device,
            org_admin: false,
            request_id: RequestId::new(1),
            reply,
        };
        let request = Request::CallRecord { id: ConversationId::new(post.conversation), record: post.record };
        if services.shards.route(Command { origin, request }).is_err() {
            warn!(conversation = post.conversation, "conversation's shard busy: a call record was dropped");
        }
    }
}
