//! Where a session's call request goes: to the call loop, after (for a conversation's call) the
//! conversation's shard has confirmed the caller is a member and named whom to ring; and where
//! an ended call's record goes: to its conversation's shard, like any sequenced event.

use std::sync::{Arc, Weak};

use herald_protocol::{DeviceId, ErrorCode, Frame, RequestId, SessionId, UserId, pb};
use tokio::sync::mpsc;
use tracing::warn;

use super::participant::Endpoint;
use super::service::RecordPost;
use super::table::Caller;
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
    if let CallRequest::Start { conversation, invitees, .. } = &mut request
        && *conversation != 0
    {
        match members(services, &caller, *conversation, request_id).await {
            Ok(members) if invitees.is_empty() => *invitees = members,
            Ok(_) => {}
            Err(refusal) => return refusal,
        }
    }
    let who = Caller { org: caller.org.clone(), endpoint: Endpoint::new(caller.user, caller.device) };
    let Ok(answer) = services.calls.submit(who, request, request_id) else {
        return Frame::error(request_id, ErrorCode::OVERLOADED, "the call loop is busy");
    };
    answer.await.unwrap_or_else(|_| Frame::error(request_id, ErrorCode::UNAVAILABLE, "the call loop stopped"))
}

/// The conversation's members (the caller's membership checked by its shard), or the shard's
/// refusal as the answer.
async fn members(
    services: &Services,
    caller: &Identity,
    conversation: u64,
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
    let request = Request::ListMembers { id: ConversationId::new(conversation), after: None, limit: MAX_RING };
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
