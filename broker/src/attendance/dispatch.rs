//! Where a session's attendance request goes: check-ins, rule changes and rebinds to the
//! attendance loop, reads to a blocking task, and a flagged check-in's HR post to the HR
//! conversation's shard once the check-in is durable.

use std::sync::Arc;

use herald_protocol::{DeviceId, ErrorCode, Frame, RequestId, SessionId, UserId};
use tokio::sync::oneshot;
use tracing::warn;

use super::reads::{self, ReportQuery};
use super::request::AttendanceRequest;
use super::service::{HR_POSTER, HR_POSTER_DEVICE, HrPost, Outcome};
use crate::audit::{AuditAction, AuditEvent};
use crate::auth::Identity;
use crate::clock::Now;
use crate::conversation::ConversationId;
use crate::fanout::ReplyTo;
use crate::session::Services;
use crate::shard::{Command, Origin, Request, SendOptions};

/// Serves an attendance request; exactly one answer goes to `reply`.
pub(crate) fn dispatch(
    services: &Arc<Services>,
    caller: Identity,
    request: AttendanceRequest,
    request_id: RequestId,
    reply: ReplyTo,
) {
    let attendance = &services.attendance;
    let queued = match request {
        AttendanceRequest::CheckIn(input) => attendance.check_in(caller, input, request_id),
        AttendanceRequest::RulesSet { org, rules } => attendance.set_rules(org, caller, rules, request_id),
        AttendanceRequest::Rebind { org, user, device } => attendance.rebind(org, caller, user, device, request_id),
        read => return spawn_read(services.clone(), caller, read, request_id, reply),
    };
    match queued {
        Ok(answer) => {
            tokio::spawn(deliver(services.clone(), answer, request_id, reply));
        }
        Err(_) => reply.send(Frame::error(request_id, ErrorCode::OVERLOADED, "the attendance queue is full")),
    }
}

async fn deliver(services: Arc<Services>, answer: oneshot::Receiver<Outcome>, request_id: RequestId, reply: ReplyTo) {
    let Ok(outcome) = answer.await else {
        return reply.send(Frame::error(request_id, ErrorCode::UNAVAILABLE, "the attendance loop stopped"));
    };
    reply.send(outcome.frame);
    if let Some(post) = outcome.post {
        post_to_hr(&services, post);
    }
}

/// Posts a flagged check-in to its HR conversation as `attendance-bot`, like any SEND: the
/// shard checks membership, sequences it, stores it and fans it out.
fn post_to_hr(services: &Services, post: HrPost) {
    let (Ok(user), Ok(device)) = (UserId::new(HR_POSTER), DeviceId::new(HR_POSTER_DEVICE)) else { return };
    // The shard answers SEND_ACK, or an error (the bot is not a member, the conversation is
    // archived or gone): that is the operator's to fix, so it is logged.
    let (reply, mut answers) = ReplyTo::channel();
    let (org, conversation) = (post.org.clone(), post.conversation_id);
    tokio::spawn(async move {
        if let Some(frame) = answers.recv().await
            && let Ok(error) = frame.decode_body::<herald_protocol::pb::Error>()
        {
            let code = herald_protocol::ErrorCode::from_u32(error.code);
            warn!(%org, conversation, %code, message = error.message, "an attendance flag could not be posted to HR");
        }
    });
    let origin = Origin {
        session: SessionId::new(0),
        org: post.org.clone(),
        user,
        device,
        org_admin: false,
        request_id: RequestId::new(1),
        reply,
    };
    let request = Request::Send {
        id: ConversationId::new(post.conversation_id),
        client_msg_id: post.client_msg_id,
        payload: post.payload,
        options: SendOptions::default(),
    };
    if services.shards.route(Command { origin, request }).is_err() {
        warn!(org = %post.org, conversation = post.conversation_id, "HR conversation's shard is busy; flag left in the audit log only");
    }
}

fn spawn_read(
    services: Arc<Services>,
    caller: Identity,
    request: AttendanceRequest,
    request_id: RequestId,
    reply: ReplyTo,
) {
    tokio::task::spawn_blocking(move || {
        let kv = services.attendance.kv().as_ref();
        let now_ms = Now::system().unix_ms;
        let answer = match request {
            AttendanceRequest::Day(date) => {
                reads::day(kv, &caller, date, now_ms).map(|b| Frame::from_body(request_id, &b))
            }
            AttendanceRequest::RulesGet { org } => {
                reads::rules_info(kv, &org).map(|b| Frame::from_body(request_id, &b))
            }
            AttendanceRequest::Report { org, from, to, department, after, limit } => {
                let query = ReportQuery { from, to, department, after, limit };
                let page = reads::report(kv, &org, &query);
                if page.is_ok() {
                    let details = vec![
                        ("from".to_owned(), from.to_string()),
                        ("to".to_owned(), to.to_string()),
                        ("department".to_owned(), query.department.clone().unwrap_or_default()),
                    ];
                    services.attendance.audit().record(AuditEvent {
                        org: org.clone(),
                        at_ms: now_ms,
                        actor: caller.user.to_string(),
                        device: caller.device.to_string(),
                        action: AuditAction::AttendanceExported,
                        target: org.to_string(),
                        details,
                    });
                }
                page.map(|b| Frame::from_body(request_id, &b))
            }
            // Writes never come here.
            AttendanceRequest::CheckIn(_) | AttendanceRequest::RulesSet { .. } | AttendanceRequest::Rebind { .. } => {
                Err((ErrorCode::INTERNAL, "not a read".into()))
            }
        };
        reply.send(answer.unwrap_or_else(|(code, message)| Frame::error(request_id, code, message)));
    });
}
