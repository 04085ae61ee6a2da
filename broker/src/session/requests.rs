//! Parsing messaging requests: wire messages in, validated domain requests out. Everything that
//! can be checked without a conversation's state is checked here, so shards see only
//! well-formed requests.

use bytes::Bytes;
use herald_protocol::{Body, ErrorCode, UserId, pb};

use crate::admin::AdminRequest;
use crate::auth::Identity;
use crate::conversation::{ConversationId, MAX_CHANGES_PER_REQUEST, Role, SignedChange};
use crate::ratelimit::{Class, Demand};
use crate::receipts::ListKind;
use crate::shard::{DingSpec, Request, SendOptions};

/// Longest group name, in bytes.
const MAX_NAME_LEN: usize = 256;
/// Longest client message id, in bytes.
const MAX_CLIENT_MSG_ID_LEN: usize = 64;
/// Largest page a client may ask for.
const MAX_PAGE: usize = 1000;
/// The page size when a client asks for 0.
const DEFAULT_PAGE: usize = 100;

/// Where a parsed request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// To the conversation's shard.
    Shard(Request),
    /// Read from the caller's conversation index.
    ListConversations { after: ConversationId, limit: usize },
    /// Compare the caller's cursors with its conversations.
    Sync { cursors: Vec<(ConversationId, u64)> },
    /// An administration request, already authorised.
    Admin(AdminRequest),
    /// An attendance request (check-ins, and attendance administration, already authorised).
    Attendance(crate::attendance::AttendanceRequest),
    /// A call request, for the call loop.
    Call(crate::call::CallRequest),
    /// A key-directory or mailbox request.
    Keys(crate::keydir::KeysRequest),
}

/// A refusal: the code and the message the caller sees.
pub(super) type Refusal = (ErrorCode, String);

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message.into())
}

fn user_id(raw: &str) -> Result<UserId, Refusal> {
    UserId::new(raw).map_err(|e| invalid(e.to_string()))
}

fn user_ids(raw: &[String]) -> Result<Vec<UserId>, Refusal> {
    raw.iter().map(|u| user_id(u)).collect()
}

fn conversation(raw: u64) -> Result<ConversationId, Refusal> {
    if raw == 0 {
        return Err(invalid("conversation_id is required"));
    }
    Ok(ConversationId::new(raw))
}

fn name(raw: String) -> Result<String, Refusal> {
    if raw.is_empty() || raw.len() > MAX_NAME_LEN {
        return Err(invalid(format!("a group name is 1 to {MAX_NAME_LEN} bytes")));
    }
    Ok(raw)
}

fn page(limit: u32) -> Result<usize, Refusal> {
    match usize::try_from(limit).unwrap_or(usize::MAX) {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        _ => Err(invalid(format!("limit is at most {MAX_PAGE}"))),
    }
}

/// Parses a messaging request. `None` if `body` is not one; `random` supplies new group ids.
///
/// # Errors
/// The refusal to send back, for a request that cannot be valid whatever the state.
pub(super) fn parse(
    body: Body,
    identity: &Identity,
    max_payload: usize,
    random: u64,
) -> Option<Result<Routed, Refusal>> {
    let routed = match body {
        Body::CreateGroup(r) => create_group(r, random),
        Body::OpenDirect(r) => open_direct(&r, identity),
        Body::UpdateMembers(r) => (|| {
            let request = Request::UpdateMembers {
                id: conversation(r.conversation_id)?,
                add: user_ids(&r.add)?,
                remove: user_ids(&r.remove)?,
                signed: signed_changes(r.signed_changes)?,
            };
            Ok(Routed::Shard(request))
        })(),
        Body::Leave(r) => (|| {
            let request =
                Request::Leave { id: conversation(r.conversation_id)?, signed: signed_changes(r.signed_changes)? };
            Ok(Routed::Shard(request))
        })(),
        Body::MembershipAppend(r) => (|| {
            if r.signed_changes.is_empty() {
                return Err(invalid("signed_changes is required"));
            }
            let id = conversation(r.conversation_id)?;
            Ok(Routed::Shard(Request::MembershipAppend { id, signed: signed_changes(r.signed_changes)? }))
        })(),
        Body::MembershipChain(r) => (|| {
            let request = Request::MembershipChain {
                id: conversation(r.conversation_id)?,
                from_seq: r.from_seq,
                limit: page(r.limit)?,
            };
            Ok(Routed::Shard(request))
        })(),
        Body::Rename(r) => {
            (|| Ok(Routed::Shard(Request::Rename { id: conversation(r.conversation_id)?, name: name(r.name)? })))()
        }
        Body::SetRole(r) => set_role(r),
        Body::Send(r) => send(r, max_payload),
        Body::Mark(r) => (|| {
            let request =
                Request::Mark { id: conversation(r.conversation_id)?, delivered: r.delivered_seq, read: r.read_seq };
            Ok(Routed::Shard(request))
        })(),
        Body::ReceiptQuery(r) => receipt_query(&r),
        Body::Recall(r) => (|| {
            let request = Request::Recall { id: conversation(r.conversation_id)?, seq: sequence(r.seq)? };
            Ok(Routed::Shard(request))
        })(),
        Body::Reschedule(r) => (|| {
            let request = Request::Reschedule {
                id: conversation(r.conversation_id)?,
                client_msg_id: client_msg_id(r.client_msg_id)?,
                deliver_at_ms: r.deliver_at_ms,
            };
            Ok(Routed::Shard(request))
        })(),
        Body::UpdateSettings(r) => (|| {
            let request = Request::UpdateSettings {
                id: conversation(r.conversation_id)?,
                read_receipts: r.read_receipts,
                retention_secs: r.retention_secs,
            };
            Ok(Routed::Shard(request))
        })(),
        Body::History(r) => (|| {
            let request = Request::History {
                id: conversation(r.conversation_id)?,
                from_seq: r.from_seq,
                backward: r.backward,
                limit: page(r.limit)?,
            };
            Ok(Routed::Shard(request))
        })(),
        Body::ListMembers(r) => (|| {
            let after = if r.after_user_id.is_empty() { None } else { Some(user_id(&r.after_user_id)?) };
            let request = Request::ListMembers { id: conversation(r.conversation_id)?, after, limit: page(r.limit)? };
            Ok(Routed::Shard(request))
        })(),
        Body::DingSend(r) => ding_send(r, random),
        Body::DingAck(r) => (|| {
            let request = Request::DingAck { id: conversation(r.conversation_id)?, ding_id: ding_id(r.ding_id)? };
            Ok(Routed::Shard(request))
        })(),
        Body::DingQuery(r) => (|| {
            let after = if r.after_user_id.is_empty() { None } else { Some(user_id(&r.after_user_id)?) };
            let id = conversation(r.conversation_id)?;
            Ok(Routed::Shard(Request::DingQuery { id, ding_id: ding_id(r.ding_id)?, after, limit: page(r.limit)? }))
        })(),
        Body::DingCancel(r) => (|| {
            let request = Request::DingCancel { id: conversation(r.conversation_id)?, ding_id: ding_id(r.ding_id)? };
            Ok(Routed::Shard(request))
        })(),
        Body::Reding(r) => (|| {
            let id = conversation(r.conversation_id)?;
            Ok(Routed::Shard(Request::Reding { id, ding_id: ding_id(r.ding_id)?, new_id: new_ding_id(random) }))
        })(),
        Body::ListConversations(r) => page(r.limit)
            .map(|limit| Routed::ListConversations { after: ConversationId::new(r.after_conversation_id), limit }),
        Body::Sync(r) => Ok(Routed::Sync {
            cursors: r.cursors.iter().map(|c| (ConversationId::new(c.conversation_id), c.seq)).collect(),
        }),
        body @ (Body::CallStart(_)
        | Body::CallJoin(_)
        | Body::CallDecline(_)
        | Body::CallLeave(_)
        | Body::CallEnd(_)
        | Body::CallSetSelf(_)
        | Body::CallHostControl(_)
        | Body::CallShare(_)
        | Body::CallRelay(_)
        | Body::CallSnapshotQuery(_)) => {
            return crate::call::parse(body).map(|parsed| parsed.map(Routed::Call));
        }
        body @ (Body::CheckIn(_)
        | Body::AttendanceDayQuery(_)
        | Body::AttendanceRulesSet(_)
        | Body::AttendanceRulesGet(_)
        | Body::AttendanceReport(_)
        | Body::DeviceRebind(_)) => {
            return crate::attendance::parse(body, identity, random).map(|parsed| parsed.map(Routed::Attendance));
        }
        body @ (Body::KeysPublish(_)
        | Body::KeysQuery(_)
        | Body::EnvelopesSend(_)
        | Body::EnvelopesFetch(_)
        | Body::EnvelopesAck(_)) => {
            return crate::keydir::parse(body)
                .map(|parsed| parsed.map(Routed::Keys).map_err(|e| (e.code(), e.to_string())));
        }
        body => return crate::admin::parse(body, identity).map(|parsed| parsed.map(Routed::Admin)),
    };
    Some(routed)
}

/// What a parsed request costs against the rate limits. A request refused while parsing costs
/// nothing: it reaches no shard.
pub(super) fn demand(routed: &Routed) -> Demand {
    match routed {
        Routed::Shard(Request::Send { payload, .. }) => Demand::send(u64::try_from(payload.len()).unwrap_or(u64::MAX)),
        Routed::Shard(Request::CreateGroup { .. }) => Demand::one(Class::GroupCreations),
        // A DING reaches people like a message does, and may cost SMS and calls: it is a send.
        Routed::Shard(Request::DingSend { spec, .. }) => {
            Demand::send(u64::try_from(spec.payload.len() + spec.sms_text.len()).unwrap_or(u64::MAX))
        }
        Routed::Shard(Request::Reding { .. }) => Demand::send(0),
        Routed::Shard(_)
        | Routed::ListConversations { .. }
        | Routed::Sync { .. }
        | Routed::Admin(_)
        | Routed::Attendance(_)
        | Routed::Call(_)
        | Routed::Keys(_) => Demand::one(Class::Requests),
    }
}

fn ding_id(raw: u64) -> Result<u64, Refusal> {
    if raw == 0 {
        return Err(invalid("ding_id is required"));
    }
    Ok(raw)
}

/// A new DING's id: 63 random bits, never 0.
fn new_ding_id(random: u64) -> u64 {
    (random >> 1).max(1)
}

fn ding_send(r: pb::DingSend, random: u64) -> Result<Routed, Refusal> {
    let spec = DingSpec {
        ding_id: new_ding_id(random),
        seq: r.seq,
        payload: Bytes::from(r.payload),
        recipients: user_ids(&r.recipient_ids)?,
        policy: r.policy,
        sms_text: r.sms_text,
    };
    Ok(Routed::Shard(Request::DingSend { id: conversation(r.conversation_id)?, spec }))
}

fn create_group(r: pb::CreateGroup, random: u64) -> Result<Routed, Refusal> {
    let request = Request::CreateGroup {
        id: ConversationId::group_from_random(random),
        name: name(r.name)?,
        members: user_ids(&r.member_ids)?,
        end_to_end: r.end_to_end,
    };
    Ok(Routed::Shard(request))
}

fn open_direct(r: &pb::OpenDirect, identity: &Identity) -> Result<Routed, Refusal> {
    let peer = user_id(&r.peer_user_id)?;
    if peer == identity.user {
        return Err(invalid("a direct conversation needs another user"));
    }
    let id = ConversationId::direct(&identity.org, &identity.user, &peer);
    Ok(Routed::Shard(Request::OpenDirect { id, peer }))
}

fn set_role(r: pb::SetRole) -> Result<Routed, Refusal> {
    let role = Role::from_pb(r.role).ok_or_else(|| invalid("role must be member, admin or owner"))?;
    let request = Request::SetRole {
        id: conversation(r.conversation_id)?,
        user: user_id(&r.user_id)?,
        role,
        signed: signed_changes(r.signed_changes)?,
    };
    Ok(Routed::Shard(request))
}

/// Decodes signed membership changes (docs/PROTOCOL.md §19.6) without verifying them; the
/// shard checks who signed them and that they continue the chain.
fn signed_changes(raw: Vec<Vec<u8>>) -> Result<Vec<SignedChange>, Refusal> {
    if raw.len() > MAX_CHANGES_PER_REQUEST {
        return Err(invalid(format!("at most {MAX_CHANGES_PER_REQUEST} signed changes per request")));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            SignedChange::parse(bytes)
                .map_err(|e| invalid(format!("signed_changes[{i}] is not a membership change: {e}")))
        })
        .collect()
}

fn client_msg_id(raw: String) -> Result<String, Refusal> {
    if raw.is_empty() || raw.len() > MAX_CLIENT_MSG_ID_LEN {
        return Err(invalid(format!("client_msg_id is 1 to {MAX_CLIENT_MSG_ID_LEN} bytes")));
    }
    Ok(raw)
}

fn sequence(raw: u64) -> Result<u64, Refusal> {
    if raw == 0 {
        return Err(invalid("seq is required"));
    }
    Ok(raw)
}

fn send(r: pb::Send, max_payload: usize) -> Result<Routed, Refusal> {
    let client_msg_id = client_msg_id(r.client_msg_id)?;
    if r.payload.len() > max_payload {
        let message = format!("payload of {} bytes exceeds the limit of {max_payload}", r.payload.len());
        return Err((ErrorCode::PAYLOAD_TOO_LARGE, message));
    }
    let options = SendOptions {
        expire_at_ms: r.expire_at_ms,
        expire_after_read_secs: r.expire_after_read_secs,
        deliver_at_ms: r.deliver_at_ms,
    };
    let request =
        Request::Send { id: conversation(r.conversation_id)?, client_msg_id, payload: Bytes::from(r.payload), options };
    Ok(Routed::Shard(request))
}

fn receipt_query(r: &pb::ReceiptQuery) -> Result<Routed, Refusal> {
    let list = match pb::receipt_query::List::try_from(r.list) {
        Ok(pb::receipt_query::List::None) => None,
        Ok(pb::receipt_query::List::Read) => Some(ListKind::Read),
        Ok(pb::receipt_query::List::Unread) => Some(ListKind::Unread),
        Err(_) => return Err(invalid("list must be NONE, READ or UNREAD")),
    };
    let after = if r.after_user_id.is_empty() { None } else { Some(user_id(&r.after_user_id)?) };
    let request = Request::ReceiptQuery {
        id: conversation(r.conversation_id)?,
        seq: sequence(r.seq)?,
        list,
        after,
        limit: page(r.limit)?,
    };
    Ok(Routed::Shard(request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_changes_must_decode_and_are_capped() {
        assert_eq!(signed_changes(Vec::new()), Ok(Vec::new()));
        let (code, message) = signed_changes(vec![vec![1, 2, 3]]).expect_err("not a change");
        assert_eq!(code, ErrorCode::INVALID_ARGUMENT);
        assert!(message.starts_with("signed_changes[0]"), "{message}");
        let too_many = vec![Vec::new(); MAX_CHANGES_PER_REQUEST + 1];
        assert_eq!(signed_changes(too_many).map_err(|(code, _)| code), Err(ErrorCode::INVALID_ARGUMENT));
    }
}
