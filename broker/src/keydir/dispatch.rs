//! Serving a session's key-directory or mailbox request on the blocking pool (each is a few
//! store reads and at most one synced write), then pushing what the answer causes.

use std::sync::Arc;

use herald_protocol::{Frame, OrgId, RequestId};

use super::request::KeysRequest;
use super::serve::Answer;
use crate::auth::Identity;
use crate::clock::Now;
use crate::fanout::{Lane, ReplyTo, SessionRegistry, encode_push};
use crate::session::Services;

/// Serves a request; exactly one answer goes to `reply`, before any push it causes.
pub(crate) fn dispatch(
    services: &Arc<Services>,
    caller: Identity,
    request: KeysRequest,
    request_id: RequestId,
    reply: ReplyTo,
) {
    let services = services.clone();
    tokio::task::spawn_blocking(move || match services.keys.serve(&caller, request, Now::system().unix_ms) {
        Ok(answer) => {
            reply.send(answer.body.clone().into_frame(request_id));
            push(&services.registry, &caller.org, answer);
        }
        Err(e) => reply.send(Frame::error(request_id, e.code(), e.to_string())),
    });
}

/// Tells online devices: key changes to everyone announced to, envelopes to their recipients.
/// Offline devices lose nothing: envelopes wait in their mailboxes, and keys are fetched.
fn push(registry: &SessionRegistry, org: &OrgId, answer: Answer) {
    if let Some((notice, users)) = answer.announce {
        registry.fan_out(org, &users, &encode_push(notice), Lane::Push);
    }
    for (user, device, envelope) in answer.deliver {
        registry.send_to_devices(org, [(&user, &device)], &encode_push(envelope), Lane::Push);
    }
}
