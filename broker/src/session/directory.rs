//! Requests answered from the store's per-user index rather than by a shard: listing the
//! caller's conversations and comparing its cursors with them. They read only committed state,
//! so they never see a message before its sender's acknowledgement.

use std::collections::HashMap;

use herald_protocol::pb;

use crate::auth::Identity;
use crate::conversation::{ConvKey, ConversationId};
use crate::store::{LogStore, StoreError};

/// Most conversations SYNC examines for one caller.
const MAX_SYNC_CONVERSATIONS: usize = 100_000;

fn info(store: &dyn LogStore, identity: &Identity, id: ConversationId) -> Result<Option<pb::Conversation>, StoreError> {
    let conv = ConvKey { org: identity.org.clone(), id };
    let (Some(summary), Some(role)) = (store.conversation_summary(&conv)?, store.member_role(&conv, &identity.user)?)
    else {
        return Ok(None);
    };
    Ok(Some(pb::Conversation {
        conversation_id: id.get(),
        kind: summary.kind.to_pb().into(),
        name: summary.name,
        member_count: summary.member_count,
        last_seq: summary.last_seq,
        role: role.to_pb().into(),
        created_at_ms: summary.created_at_ms,
        settings: Some(summary.settings.to_pb()),
        end_to_end: summary.end_to_end || !summary.chain.is_empty(),
        membership_chain_length: summary.chain.length,
    }))
}

/// A page of the caller's conversations, by id.
///
/// # Errors
/// [`StoreError`] if reading fails.
pub(super) fn list_conversations(
    store: &dyn LogStore,
    identity: &Identity,
    after: ConversationId,
    limit: usize,
) -> Result<pb::ConversationList, StoreError> {
    let ids = store.user_conversations(&identity.org, &identity.user, after, limit + 1)?;
    let more = ids.len() > limit;
    let mut conversations = Vec::with_capacity(limit);
    for id in ids.into_iter().take(limit) {
        conversations.extend(info(store, identity, id)?);
    }
    Ok(pb::ConversationList { conversations, more })
}

/// The caller's conversations with entries past its cursors, and the cursors that name no
/// conversation of the caller (left, removed, or never one: indistinguishable on purpose).
///
/// # Errors
/// [`StoreError`] if reading fails.
pub(super) fn sync(
    store: &dyn LogStore,
    identity: &Identity,
    cursors: &[(ConversationId, u64)],
) -> Result<pb::SyncState, StoreError> {
    let mut seen: HashMap<ConversationId, u64> = cursors.iter().copied().collect();
    let mut changed = Vec::new();
    let mut after = ConversationId::new(0);
    let mut examined = 0;
    while examined < MAX_SYNC_CONVERSATIONS {
        let ids = store.user_conversations(&identity.org, &identity.user, after, 1000)?;
        let Some(last) = ids.last().copied() else { break };
        examined += ids.len();
        for id in ids {
            let cursor = seen.remove(&id).unwrap_or(0);
            if let Some(conversation) = info(store, identity, id)?
                && conversation.last_seq > cursor
            {
                changed.push(conversation);
            }
        }
        after = last;
    }
    let mut left: Vec<u64> = seen.into_keys().map(ConversationId::get).collect();
    left.sort_unstable();
    Ok(pb::SyncState { changed, left })
}
