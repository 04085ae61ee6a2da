//! The ordered key-value layer under [`LogStore`]: column families, point reads, prefix scans and
//! atomic batches. The log logic is written once against it; RocksDB and the in-memory twin each
//! implement only this.

use bytes::Bytes;
use herald_protocol::{DeviceId, OrgId, UserId};

use super::log::{ConversationSummary, CursorRecords, LogStore, WriteOp};
use super::{StoreError, keys, records};
use crate::conversation::{ConvKey, ConversationId, ConversationState, Role};
use crate::timer::{Timer, TimerId};

/// A column family: one kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Store-wide metadata (`format_version`).
    Meta,
    /// Served organisations.
    Orgs,
    /// Conversation summaries, by conversation.
    Conversations,
    /// Members and roles, by conversation then user.
    Members,
    /// Log entries, by conversation then sequence number.
    Entries,
    /// Client message ids, by conversation, sender and id.
    Idempotency,
    /// The per-user index of conversations, by organisation, user, conversation.
    UserConversations,
    /// Members' read and delivered cursors (and join and leave points), by conversation, user.
    Cursors,
    /// Devices' delivered cursors, by conversation, user, device.
    DeviceCursors,
    /// Durable timers, by conversation and what they are about.
    Timers,
    /// The audit log: one hash chain per organisation, by organisation and position.
    Audit,
    /// The organisations' directories of users, by organisation then user.
    Directory,
    /// Revoked devices, by organisation, user, device.
    Revocations,
    /// DINGs: a header and one line per recipient, by conversation and DING.
    Dings,
    /// Attendance: rules, device bindings and check-ins, by organisation (then user and time).
    Attendance,
    /// The end-to-end key directory: each device's signed key bundle, by organisation, user,
    /// device.
    DeviceKeys,
    /// Devices' mailboxes of sealed envelopes, by organisation, user, device, envelope id.
    Mailbox,
    /// Conversations' signed membership chains, by conversation then chain seq.
    MembershipChain,
}

impl Cf {
    /// Every column family.
    pub const ALL: [Cf; 18] = [
        Cf::Meta,
        Cf::Orgs,
        Cf::Conversations,
        Cf::Members,
        Cf::Entries,
        Cf::Idempotency,
        Cf::UserConversations,
        Cf::Cursors,
        Cf::DeviceCursors,
        Cf::Timers,
        Cf::Audit,
        Cf::Directory,
        Cf::Revocations,
        Cf::Dings,
        Cf::Attendance,
        Cf::DeviceKeys,
        Cf::Mailbox,
        Cf::MembershipChain,
    ];

    /// The column family's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Orgs => "orgs",
            Cf::Conversations => "conversations",
            Cf::Members => "members",
            Cf::Entries => "entries",
            Cf::Idempotency => "idempotency",
            Cf::UserConversations => "user_conversations",
            Cf::Cursors => "cursors",
            Cf::DeviceCursors => "device_cursors",
            Cf::Timers => "timers",
            Cf::Audit => "audit",
            Cf::Directory => "directory",
            Cf::Revocations => "revocations",
            Cf::Dings => "dings",
            Cf::Attendance => "attendance",
            Cf::DeviceKeys => "device_keys",
            Cf::Mailbox => "mailbox",
            Cf::MembershipChain => "membership_chain",
        }
    }
}

/// One key-value change; `None` deletes.
pub type KvWrite = (Cf, Vec<u8>, Option<Vec<u8>>);

/// A key and its value, as a scan returns them.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An ordered key-value store with column families.
pub trait KvBackend: Send + Sync + std::fmt::Debug + 'static {
    /// The value at `key`.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` pairs whose keys start with `prefix`, from `start` (inclusive) in key order,
    /// or downwards from `start` (inclusive) when `reverse`.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn scan(&self, cf: Cf, prefix: &[u8], start: &[u8], reverse: bool, limit: usize)
    -> Result<Vec<KvPair>, StoreError>;

    /// Applies every write or none; with `sync`, durable on return.
    ///
    /// # Errors
    /// [`StoreError`] if the write fails.
    fn write(&self, writes: Vec<KvWrite>, sync: bool) -> Result<(), StoreError>;

    /// Describes where corruption was found, for errors.
    fn corrupt(&self, cf: Cf, reason: String) -> StoreError;

    /// Writes a consistent copy of the whole store to `dir` (which must not exist), online:
    /// hard links to the immutable files where `dir` is on the same filesystem, copies otherwise.
    /// The copy opens as a store of its own.
    ///
    /// # Errors
    /// [`StoreError`] if the backend cannot, or writing fails.
    fn checkpoint(&self, _dir: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("checkpoint"))
    }

    /// Rewrites the files holding keys in `start..=end` so that overwritten and deleted values
    /// are physically gone. A backend without old versions has nothing to do.
    ///
    /// # Errors
    /// [`StoreError`] if the backend cannot.
    fn compact(&self, _cf: Cf, _start: &[u8], _end: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
}

impl<B: KvBackend> LogStore for B {
    fn load_conversation(&self, conv: &ConvKey) -> Result<Option<ConversationState>, StoreError> {
        let Some(summary) = self.conversation_summary(conv)? else { return Ok(None) };
        let prefix = keys::conversation(conv);
        let mut members = std::collections::BTreeMap::new();
        for (key, value) in self.scan(Cf::Members, &prefix, &prefix, false, usize::MAX)? {
            let user = keys::member_suffix(&key, prefix.len())
                .and_then(|u| UserId::new(u).ok())
                .ok_or_else(|| self.corrupt(Cf::Members, format!("bad member key {key:02x?}")))?;
            let role = records::decode_role(&value).map_err(|e| self.corrupt(Cf::Members, e))?;
            members.insert(user, role);
        }
        let mut state =
            ConversationState::new(summary.kind, summary.name, summary.created_at_ms, summary.last_seq, members);
        state.settings = summary.settings;
        state.end_to_end = summary.end_to_end;
        state.chain = summary.chain;
        Ok(Some(state))
    }

    fn conversation_summary(&self, conv: &ConvKey) -> Result<Option<ConversationSummary>, StoreError> {
        self.get(Cf::Conversations, &keys::conversation(conv))?
            .map(|bytes| records::decode_summary(&bytes).map_err(|e| self.corrupt(Cf::Conversations, e)))
            .transpose()
    }

    fn idempotent_seq(&self, conv: &ConvKey, sender: &UserId, client_msg_id: &str) -> Result<Option<u64>, StoreError> {
        self.get(Cf::Idempotency, &keys::idempotency(conv, sender, client_msg_id))?
            .map(|bytes| records::decode_seq(&bytes).map_err(|e| self.corrupt(Cf::Idempotency, e)))
            .transpose()
    }

    fn read_log(&self, conv: &ConvKey, from: u64, backward: bool, limit: usize) -> Result<Vec<Bytes>, StoreError> {
        let prefix = keys::conversation(conv);
        let start = keys::entry(conv, from);
        Ok(self.scan(Cf::Entries, &prefix, &start, backward, limit)?.into_iter().map(|(_, v)| Bytes::from(v)).collect())
    }

    fn read_membership_chain(&self, conv: &ConvKey, from: u64, limit: usize) -> Result<Vec<Bytes>, StoreError> {
        let prefix = keys::conversation(conv);
        let start = keys::entry(conv, from);
        let pairs = self.scan(Cf::MembershipChain, &prefix, &start, false, limit)?;
        Ok(pairs.into_iter().map(|(_, v)| Bytes::from(v)).collect())
    }

    fn user_conversations(
        &self,
        org: &OrgId,
        user: &UserId,
        after: ConversationId,
        limit: usize,
    ) -> Result<Vec<ConversationId>, StoreError> {
        let prefix = keys::user_prefix(org, user);
        let Some(first) = after.get().checked_add(1) else { return Ok(Vec::new()) };
        let start = keys::user_conversation(org, user, ConversationId::new(first));
        self.scan(Cf::UserConversations, &prefix, &start, false, limit)?
            .into_iter()
            .map(|(key, _)| {
                keys::conversation_id_suffix(&key)
                    .ok_or_else(|| self.corrupt(Cf::UserConversations, format!("bad key {key:02x?}")))
            })
            .collect()
    }

    fn member_role(&self, conv: &ConvKey, user: &UserId) -> Result<Option<Role>, StoreError> {
        self.get(Cf::Members, &keys::member(conv, user))?
            .map(|bytes| records::decode_role(&bytes).map_err(|e| self.corrupt(Cf::Members, e)))
            .transpose()
    }

    fn commit(&self, ops: &[WriteOp], sync: bool) -> Result<(), StoreError> {
        let writes = ops.iter().flat_map(kv_writes).collect();
        self.write(writes, sync)
    }

    fn load_dings(&self, conv: &ConvKey) -> Result<Vec<crate::ding::Ding>, StoreError> {
        let prefix = keys::conversation(conv);
        let mut headers = std::collections::BTreeMap::new();
        let mut lines: std::collections::BTreeMap<u64, Vec<(UserId, Vec<u8>)>> = std::collections::BTreeMap::new();
        for (key, value) in self.scan(Cf::Dings, &prefix, &prefix, false, usize::MAX)? {
            let corrupt = || self.corrupt(Cf::Dings, format!("bad DING key {key:02x?}"));
            match keys::ding_key(&key, prefix.len()).ok_or_else(corrupt)? {
                keys::DingKey::Header(id) => {
                    headers.insert(id, value);
                }
                keys::DingKey::Line(id, user) => {
                    let user = UserId::new(user).map_err(|_| corrupt())?;
                    lines.entry(id).or_default().push((user, value));
                }
            }
        }
        headers
            .into_iter()
            .map(|(id, header)| {
                let lines = lines.remove(&id).unwrap_or_default();
                crate::ding::decode(id, &header, lines).map_err(|e| self.corrupt(Cf::Dings, e))
            })
            .collect()
    }

    fn contact(&self, org: &OrgId, user: &UserId) -> Result<crate::ding::Contact, StoreError> {
        let entry = super::admin::directory_user(self, org, user)?.unwrap_or_default();
        Ok(crate::ding::Contact {
            phone: (!entry.phone.is_empty()).then_some(entry.phone),
            manager: UserId::new(entry.manager_id).ok(),
        })
    }

    fn load_cursors(&self, conv: &ConvKey) -> Result<CursorRecords, StoreError> {
        let prefix = keys::conversation(conv);
        let mut records = CursorRecords::default();
        for (key, value) in self.scan(Cf::Cursors, &prefix, &prefix, false, usize::MAX)? {
            let user = keys::member_suffix(&key, prefix.len())
                .and_then(|u| UserId::new(u).ok())
                .ok_or_else(|| self.corrupt(Cf::Cursors, format!("bad cursor key {key:02x?}")))?;
            let cursor = records::decode_member_cursor(&value).map_err(|e| self.corrupt(Cf::Cursors, e))?;
            records.members.push((user, cursor));
        }
        for (key, value) in self.scan(Cf::DeviceCursors, &prefix, &prefix, false, usize::MAX)? {
            let ids = keys::device_cursor_suffix(&key, prefix.len())
                .and_then(|(u, d)| Some((UserId::new(u).ok()?, DeviceId::new(d).ok()?)));
            let (user, device) = ids.ok_or_else(|| self.corrupt(Cf::DeviceCursors, format!("bad key {key:02x?}")))?;
            let delivered = records::decode_seq(&value).map_err(|e| self.corrupt(Cf::DeviceCursors, e))?;
            records.devices.push((user, device, delivered));
        }
        Ok(records)
    }

    fn load_timers(&self) -> Result<Vec<(TimerId, Timer)>, StoreError> {
        self.scan(Cf::Timers, &[], &[], false, usize::MAX)?
            .into_iter()
            .map(|(key, value)| {
                let id = keys::timer_id(&key).ok_or_else(|| self.corrupt(Cf::Timers, format!("bad key {key:02x?}")))?;
                let timer = records::decode_timer(&id.what, &value).map_err(|e| self.corrupt(Cf::Timers, e))?;
                Ok((id, timer))
            })
            .collect()
    }

    fn purge_entries(&self, conv: &ConvKey, first: u64, last: u64) -> Result<(), StoreError> {
        self.compact(Cf::Entries, &keys::entry(conv, first), &keys::entry(conv, last))
    }
}

/// The key-value writes of one log operation. Membership writes keep the per-user index in the
/// same batch, so the two can never disagree.
/// Most pairs one step of [`scan_each`] reads.
const SCAN_PAGE: usize = 1024;

/// Visits every pair whose key starts with `prefix`, from `start`, in key order, a page at a
/// time so memory stays bounded however many there are, until `visit` returns `false`.
///
/// # Errors
/// [`StoreError`] if reading fails, or whatever `visit` returns.
pub(crate) fn scan_each(
    store: &dyn KvBackend,
    cf: Cf,
    prefix: &[u8],
    start: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut next = start.to_vec();
    loop {
        let page = store.scan(cf, prefix, &next, false, SCAN_PAGE)?;
        let full = page.len() == SCAN_PAGE;
        for (key, value) in &page {
            if !visit(key, value)? {
                return Ok(());
            }
        }
        let Some((last, _)) = page.into_iter().last() else { return Ok(()) };
        if !full {
            return Ok(());
        }
        next = last;
        next.push(0);
    }
}

fn kv_writes(op: &WriteOp) -> Vec<KvWrite> {
    match op {
        WriteOp::PutConversation { conv, summary } => {
            vec![(Cf::Conversations, keys::conversation(conv), Some(records::encode_summary(summary)))]
        }
        WriteOp::PutMember { conv, user, role } => vec![
            (Cf::Members, keys::member(conv, user), Some(records::encode_role(*role).to_vec())),
            (Cf::UserConversations, keys::user_conversation(&conv.org, user, conv.id), Some(Vec::new())),
        ],
        WriteOp::DeleteMember { conv, user } => vec![
            (Cf::Members, keys::member(conv, user), None),
            (Cf::UserConversations, keys::user_conversation(&conv.org, user, conv.id), None),
        ],
        WriteOp::PutEntry { conv, seq, entry } => vec![(Cf::Entries, keys::entry(conv, *seq), Some(entry.to_vec()))],
        WriteOp::PutIdempotency { conv, sender, client_msg_id, seq } => {
            vec![(Cf::Idempotency, keys::idempotency(conv, sender, client_msg_id), Some(seq.to_be_bytes().to_vec()))]
        }
        WriteOp::PutMemberCursor { conv, user, cursor } => {
            vec![(Cf::Cursors, keys::member(conv, user), Some(records::encode_member_cursor(cursor)))]
        }
        WriteOp::PutDeviceCursor { conv, user, device, delivered } => {
            vec![(Cf::DeviceCursors, keys::device_cursor(conv, user, device), Some(delivered.to_be_bytes().to_vec()))]
        }
        WriteOp::DeleteDeviceCursor { conv, user, device } => {
            vec![(Cf::DeviceCursors, keys::device_cursor(conv, user, device), None)]
        }
        WriteOp::PutTimer { id, timer } => vec![(Cf::Timers, keys::timer(id), Some(records::encode_timer(timer)))],
        WriteOp::DeleteTimer { id } => vec![(Cf::Timers, keys::timer(id), None)],
        WriteOp::PutDing { conv, id, header } => vec![(Cf::Dings, keys::ding_header(conv, *id), Some(header.clone()))],
        WriteOp::PutDingLine { conv, id, user, line } => {
            vec![(Cf::Dings, keys::ding_line(conv, *id, user), Some(line.clone()))]
        }
        WriteOp::PutMembershipChange { conv, seq, signed } => {
            vec![(Cf::MembershipChain, keys::entry(conv, *seq), Some(signed.to_vec()))]
        }
    }
}

#[cfg(test)]
mod tests {
    //! One conformance suite, run against both backends, so the in-memory twin used by tests
    //! behaves exactly like RocksDB where the log logic can tell.

    use super::*;
    use crate::conversation::Kind;
    use crate::store::{MemoryStore, RocksStore};

    fn conv(org: &str, id: u64) -> ConvKey {
        ConvKey { org: OrgId::new(org).expect("valid"), id: ConversationId::new(id) }
    }

    fn user(u: &str) -> UserId {
        UserId::new(u).expect("valid")
    }

    fn summary(last_seq: u64) -> ConversationSummary {
        ConversationSummary {
            kind: Kind::Group,
            name: "g".into(),
            created_at_ms: 5,
            last_seq,
            member_count: 2,
            settings: crate::conversation::Settings::default(),
            end_to_end: true,
            chain: crate::conversation::ChainHead { length: 2, hash: [7; 32] },
        }
    }

    fn entries(c: &ConvKey, seqs: std::ops::RangeInclusive<u64>) -> Vec<WriteOp> {
        seqs.map(|seq| WriteOp::PutEntry { conv: c.clone(), seq, entry: Bytes::from(seq.to_be_bytes().to_vec()) })
            .collect()
    }

    fn seqs(read: Vec<Bytes>) -> Vec<u64> {
        read.iter().map(|b| u64::from_be_bytes(b.as_ref().try_into().expect("8 bytes"))).collect()
    }

    fn conformance(store: &dyn LogStore) {
        let (a, b, other_org) = (conv("acme", 1), conv("acme", 2), conv("acmex", 1));
        let mut ops = vec![
            WriteOp::PutConversation { conv: a.clone(), summary: summary(5) },
            WriteOp::PutMember { conv: a.clone(), user: user("alice"), role: Role::Owner },
            WriteOp::PutMember { conv: a.clone(), user: user("bob"), role: Role::Member },
            WriteOp::PutMember { conv: b.clone(), user: user("alice"), role: Role::Member },
            WriteOp::PutIdempotency { conv: a.clone(), sender: user("alice"), client_msg_id: "m1".into(), seq: 2 },
        ];
        ops.extend(entries(&a, 1..=5));
        ops.extend(entries(&b, 1..=3));
        ops.extend(entries(&other_org, 1..=3));
        store.commit(&ops, true).expect("commit");

        let state = store.load_conversation(&a).expect("read").expect("exists");
        assert_eq!((state.last_seq, state.member_count()), (5, 2));
        assert!(state.end_to_end);
        assert_eq!(state.chain, crate::conversation::ChainHead { length: 2, hash: [7; 32] });
        assert_eq!(state.role(&user("alice")), Some(Role::Owner));
        assert!(
            store.load_conversation(&other_org).expect("read").is_none(),
            "another org's id is another conversation"
        );
        assert_eq!(store.idempotent_seq(&a, &user("alice"), "m1").expect("read"), Some(2));
        assert_eq!(store.idempotent_seq(&a, &user("bob"), "m1").expect("read"), None);

        assert_eq!(seqs(store.read_log(&a, 2, false, 10).expect("read")), [2, 3, 4, 5], "stops at its prefix");
        assert_eq!(seqs(store.read_log(&a, 4, true, 10).expect("read")), [4, 3, 2, 1], "backward stops too");
        assert_eq!(seqs(store.read_log(&b, 1, false, 2).expect("read")), [1, 2]);
        assert!(store.read_log(&a, 6, false, 10).expect("read").is_empty());

        let alices = store.user_conversations(&a.org, &user("alice"), ConversationId::new(0), 10).expect("read");
        assert_eq!(alices, [a.id, b.id]);
        assert_eq!(store.user_conversations(&a.org, &user("alice"), a.id, 10).expect("read"), [b.id]);

        let change = |c: &ConvKey, seq: u64| WriteOp::PutMembershipChange {
            conv: c.clone(),
            seq,
            signed: Bytes::from(seq.to_be_bytes().to_vec()),
        };
        let chain = [change(&a, 0), change(&a, 1), change(&a, 2), change(&b, 0), change(&other_org, 3)];
        store.commit(&chain, true).expect("commit");
        assert_eq!(seqs(store.read_membership_chain(&a, 0, 10).expect("read")), [0, 1, 2], "stops at its prefix");
        assert_eq!(seqs(store.read_membership_chain(&a, 1, 1).expect("read")), [1]);
        assert!(store.read_membership_chain(&a, 3, 10).expect("read").is_empty());
        assert!(store.read_membership_chain(&conv("acme", 3), 0, 10).expect("read").is_empty());

        store.commit(&[WriteOp::DeleteMember { conv: a.clone(), user: user("bob") }], true).expect("commit");
        assert_eq!(store.member_role(&a, &user("bob")).expect("read"), None);
        assert!(store.user_conversations(&a.org, &user("bob"), ConversationId::new(0), 10).expect("read").is_empty());
    }

    #[test]
    fn memory_store_conforms() {
        conformance(&MemoryStore::new());
    }

    #[test]
    fn rocks_store_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance(&RocksStore::open(dir.path()).expect("open"));
    }

    #[test]
    fn a_failed_write_applies_nothing() {
        let store = MemoryStore::new();
        store.fail_writes();
        let c = conv("acme", 1);
        assert!(store.commit(&entries(&c, 1..=2), true).is_err());
        assert!(store.read_log(&c, 1, false, 10).expect("read").is_empty());
    }
}
