//! Key encodings. Every key starts with the organisation, so every scan is tenant-scoped by
//! construction. Strings end with a 0x00 terminator (ids cannot contain it) and numbers are
//! big-endian, so byte order equals logical order and no key is a prefix of another's field.

use herald_protocol::{DeviceId, OrgId, UserId};

use crate::conversation::{ConvKey, ConversationId};
use crate::timer::{TimerId, TimerWhat};

fn push_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(s.as_bytes());
    key.push(0);
}

/// `org \0 conversation_id`: the conversation's record, and the prefix of its members, log
/// entries and idempotency keys.
pub(crate) fn conversation(conv: &ConvKey) -> Vec<u8> {
    let mut key = Vec::with_capacity(conv.org.as_str().len() + 9 + 8 + 24);
    push_str(&mut key, conv.org.as_str());
    key.extend_from_slice(&conv.id.get().to_be_bytes());
    key
}

/// `conversation · user \0`: one member.
pub(crate) fn member(conv: &ConvKey, user: &UserId) -> Vec<u8> {
    let mut key = conversation(conv);
    push_str(&mut key, user.as_str());
    key
}

/// `conversation · seq`: one log entry.
pub(crate) fn entry(conv: &ConvKey, seq: u64) -> Vec<u8> {
    let mut key = conversation(conv);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `conversation · sender \0 client_msg_id`: the sequence number a client message id got.
pub(crate) fn idempotency(conv: &ConvKey, sender: &UserId, client_msg_id: &str) -> Vec<u8> {
    let mut key = conversation(conv);
    push_str(&mut key, sender.as_str());
    key.extend_from_slice(client_msg_id.as_bytes());
    key
}

/// `conversation · user \0 device \0`: one device's delivered cursor.
pub(crate) fn device_cursor(conv: &ConvKey, user: &UserId, device: &DeviceId) -> Vec<u8> {
    let mut key = member(conv, user);
    push_str(&mut key, device.as_str());
    key
}

/// The user and device at the end of a device-cursor key, given the conversation prefix's length.
pub(crate) fn device_cursor_suffix(key: &[u8], prefix_len: usize) -> Option<(&str, &str)> {
    let rest = key.get(prefix_len..)?.strip_suffix(&[0])?;
    let split = rest.iter().position(|b| *b == 0)?;
    let user = std::str::from_utf8(rest.get(..split)?).ok()?;
    let device = std::str::from_utf8(rest.get(split + 1..)?).ok()?;
    Some((user, device))
}

/// `conversation · kind · what`: one timer. Kind 1 is a message's expiry (then the sequence
/// number), kind 2 a scheduled message (then `sender \0 client_msg_id`).
pub(crate) fn timer(id: &TimerId) -> Vec<u8> {
    let mut key = conversation(&id.conv);
    match &id.what {
        TimerWhat::Expire(seq) => {
            key.push(1);
            key.extend_from_slice(&seq.to_be_bytes());
        }
        TimerWhat::Deliver { sender, client_msg_id } => {
            key.push(2);
            push_str(&mut key, sender.as_str());
            key.extend_from_slice(client_msg_id.as_bytes());
        }
        TimerWhat::Ding { ding_id, step } => {
            key.push(3);
            key.extend_from_slice(&ding_id.to_be_bytes());
            key.extend_from_slice(&step.to_be_bytes());
        }
    }
    key
}

/// `conversation · 1 · ding_id`: a DING's header.
pub(crate) fn ding_header(conv: &ConvKey, id: u64) -> Vec<u8> {
    let mut key = conversation(conv);
    key.push(1);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `conversation · 2 · ding_id · user \0`: one recipient's line.
pub(crate) fn ding_line(conv: &ConvKey, id: u64, user: &UserId) -> Vec<u8> {
    let mut key = conversation(conv);
    key.push(2);
    key.extend_from_slice(&id.to_be_bytes());
    push_str(&mut key, user.as_str());
    key
}

/// What a key of the DING column family holds, given the conversation prefix's length.
pub(crate) enum DingKey<'a> {
    Header(u64),
    Line(u64, &'a str),
}

/// Parses a key of the DING column family.
pub(crate) fn ding_key(key: &[u8], prefix_len: usize) -> Option<DingKey<'_>> {
    let (kind, rest) = key.get(prefix_len..)?.split_first()?;
    let id = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    match kind {
        1 if rest.len() == 8 => Some(DingKey::Header(id)),
        2 => Some(DingKey::Line(id, std::str::from_utf8(rest.get(8..)?.strip_suffix(&[0])?).ok()?)),
        _ => None,
    }
}

/// Decodes a timer key back into its id.
pub(crate) fn timer_id(key: &[u8]) -> Option<TimerId> {
    let org_end = key.iter().position(|b| *b == 0)?;
    let org = OrgId::new(std::str::from_utf8(key.get(..org_end)?).ok()?).ok()?;
    let id: [u8; 8] = key.get(org_end + 1..org_end + 9)?.try_into().ok()?;
    let conv = ConvKey { org, id: ConversationId::new(u64::from_be_bytes(id)) };
    let (kind, rest) = key.get(org_end + 9..)?.split_first()?;
    let what = match kind {
        1 => TimerWhat::Expire(u64::from_be_bytes(rest.try_into().ok()?)),
        2 => {
            let split = rest.iter().position(|b| *b == 0)?;
            let sender = UserId::new(std::str::from_utf8(rest.get(..split)?).ok()?).ok()?;
            let client_msg_id = std::str::from_utf8(rest.get(split + 1..)?).ok()?.to_owned();
            TimerWhat::Deliver { sender, client_msg_id }
        }
        3 => {
            let ding_id = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
            let step = u32::from_be_bytes(rest.get(8..)?.try_into().ok()?);
            TimerWhat::Ding { ding_id, step }
        }
        _ => return None,
    };
    Some(TimerId { conv, what })
}

/// `org \0`: the prefix of what is keyed by organisation alone: its audit chain, its
/// directory, its revoked devices.
pub(crate) fn org_prefix(org: &OrgId) -> Vec<u8> {
    let mut key = Vec::with_capacity(org.as_str().len() + 9);
    push_str(&mut key, org.as_str());
    key
}

/// `org \0 seq`: one audit record.
pub(crate) fn audit(org: &OrgId, seq: u64) -> Vec<u8> {
    let mut key = org_prefix(org);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `org \0 user \0`: a directory entry (and a user's revoked devices' prefix).
pub(crate) fn org_user(org: &OrgId, user: &UserId) -> Vec<u8> {
    let mut key = org_prefix(org);
    push_str(&mut key, user.as_str());
    key
}

/// `org \0 user \0 device \0`: one revoked device.
pub(crate) fn revocation(org: &OrgId, user: &UserId, device: &DeviceId) -> Vec<u8> {
    let mut key = org_user(org, user);
    push_str(&mut key, device.as_str());
    key
}

/// The user and device of a revocation key.
pub(crate) fn revocation_ids(key: &[u8]) -> Option<(&str, &str, &str)> {
    let mut parts = key.strip_suffix(&[0])?.split(|b| *b == 0);
    let org = std::str::from_utf8(parts.next()?).ok()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let device = std::str::from_utf8(parts.next()?).ok()?;
    parts.next().is_none().then_some((org, user, device))
}

/// `org \0 user \0`: the prefix of a user's conversation index.
pub(crate) fn user_prefix(org: &OrgId, user: &UserId) -> Vec<u8> {
    let mut key = Vec::with_capacity(org.as_str().len() + user.as_str().len() + 2 + 8);
    push_str(&mut key, org.as_str());
    push_str(&mut key, user.as_str());
    key
}

/// `org \0 user \0 conversation_id`: the user is a member of the conversation.
pub(crate) fn user_conversation(org: &OrgId, user: &UserId, id: ConversationId) -> Vec<u8> {
    let mut key = user_prefix(org, user);
    key.extend_from_slice(&id.get().to_be_bytes());
    key
}

/// The conversation id at the end of a user-index key.
pub(crate) fn conversation_id_suffix(key: &[u8]) -> Option<ConversationId> {
    let start = key.len().checked_sub(8)?;
    let bytes: [u8; 8] = key.get(start..)?.try_into().ok()?;
    Some(ConversationId::new(u64::from_be_bytes(bytes)))
}

/// The user id at the end of a member key, given the conversation prefix's length.
pub(crate) fn member_suffix(key: &[u8], prefix_len: usize) -> Option<&str> {
    let rest = key.get(prefix_len..)?;
    let (last, user) = rest.split_last()?;
    if *last != 0 {
        return None;
    }
    std::str::from_utf8(user).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:@-]{1,12}"
    }

    fn conv(org: &str, id: u64) -> ConvKey {
        ConvKey { org: OrgId::new(org).expect("valid"), id: ConversationId::new(id) }
    }

    proptest! {
        /// Entry keys sort exactly as (org, conversation, seq) do.
        #[test]
        fn entry_keys_preserve_order(a in (id(), any::<u64>(), any::<u64>()), b in (id(), any::<u64>(), any::<u64>())) {
            let ka = entry(&conv(&a.0, a.1), a.2);
            let kb = entry(&conv(&b.0, b.1), b.2);
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        /// Member keys sort as (org, conversation, user), so members page in user order.
        #[test]
        fn member_keys_preserve_order(a in (id(), any::<u64>(), id()), b in (id(), any::<u64>(), id())) {
            let ka = member(&conv(&a.0, a.1), &UserId::new(a.2.clone()).expect("valid"));
            let kb = member(&conv(&b.0, b.1), &UserId::new(b.2.clone()).expect("valid"));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        /// A conversation's keys all start with its prefix; another org's or conversation's never do.
        #[test]
        fn prefixes_scope_exactly(org in id(), other in id(), c in any::<u64>(), d in any::<u64>(), seq in any::<u64>()) {
            let mine = conv(&org, c);
            prop_assert!(entry(&mine, seq).starts_with(&conversation(&mine)));
            let theirs = conv(&other, d);
            if (org.as_str(), c) != (other.as_str(), d) {
                prop_assert!(!entry(&theirs, seq).starts_with(&conversation(&mine)));
            }
        }

        /// Timer keys decode back to their ids.
        #[test]
        fn timer_keys_round_trip(org in id(), c in any::<u64>(), seq in any::<u64>(), sender in id(), cmid in "[ -~]{1,64}") {
            let conv = conv(&org, c);
            for what in [TimerWhat::Expire(seq), TimerWhat::Deliver { sender: UserId::new(sender.clone()).expect("valid"), client_msg_id: cmid.clone() }] {
                let id = TimerId { conv: conv.clone(), what };
                prop_assert_eq!(timer_id(&timer(&id)), Some(id));
            }
        }

        /// Device-cursor keys decode back to their user and device.
        #[test]
        fn device_cursor_keys_round_trip(org in id(), c in any::<u64>(), user in id(), device in id()) {
            let conv = conv(&org, c);
            let key = device_cursor(&conv, &UserId::new(user.clone()).expect("valid"), &DeviceId::new(device.clone()).expect("valid"));
            prop_assert_eq!(device_cursor_suffix(&key, conversation(&conv).len()), Some((user.as_str(), device.as_str())));
        }

        /// Suffixes decode back to what was encoded.
        #[test]
        fn suffixes_round_trip(org in id(), user in id(), c in any::<u64>()) {
            let org = OrgId::new(org).expect("valid");
            let user = UserId::new(user).expect("valid");
            let key = user_conversation(&org, &user, ConversationId::new(c));
            prop_assert_eq!(conversation_id_suffix(&key), Some(ConversationId::new(c)));
            let conv = ConvKey { org, id: ConversationId::new(c) };
            let prefix = conversation(&conv);
            let key = member(&conv, &user);
            prop_assert_eq!(member_suffix(&key, prefix.len()), Some(user.as_str()));
        }
    }
}
