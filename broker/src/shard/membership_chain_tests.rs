//! Signed membership on the wire (docs/PROTOCOL.md §19.6) through the shard machine: what is
//! stored and carried, and every refusal, each of which stores nothing.

use std::sync::Arc;

use herald_protocol::e2e::{IdentityKeyPair, MemberDevice, MembershipAction, MembershipChange};
use herald_protocol::{Body, DeviceId, ErrorCode, OrgId, RequestId, SessionId, UserId, pb};
use prost::Message;

use super::{Command, Effects, Origin, Request, ShardLimits, ShardMachine};
use crate::conversation::{ChainHead, ConvKey, ConversationId, Role, SignedChange};
use crate::fanout::ReplyTo;
use crate::store::WriteOp;

const NOW: u64 = 1_800_000_000_000;
const GROUP: ConversationId = ConversationId::new(42);
use MembershipAction::{Add, Create, Demote, Promote, Remove};

fn user(u: &str) -> UserId {
    UserId::new(u).expect("valid")
}

fn conv() -> ConvKey {
    ConvKey { org: OrgId::new("acme").expect("valid"), id: GROUP }
}

fn keys(u: &str) -> IdentityKeyPair {
    let seed = u.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    IdentityKeyPair::from_secret_bytes([seed; 32], [seed.wrapping_add(1); 32])
}

fn device(u: &str) -> MemberDevice {
    MemberDevice { device: DeviceId::new(format!("{u}-1")).expect("valid"), identity: *keys(u).public() }
}

/// A shard with alice's group (alice owner; bob, carol, dave members) and the chain as the
/// broker should have it, so tests sign the next change as a client would.
struct Fixture {
    machine: ShardMachine,
    head: ChainHead,
}

impl Fixture {
    fn new(end_to_end: bool) -> Self {
        let machine = ShardMachine::new(ShardLimits::with_max_group_members(100), Arc::default());
        let mut f = Self { machine, head: ChainHead::default() };
        let members = ["bob", "carol", "dave"].map(user).to_vec();
        let effects = f.run("alice", Request::CreateGroup { id: GROUP, name: "g".into(), members, end_to_end });
        assert_eq!(code(&effects), None);
        f
    }

    /// An end-to-end group whose chain holds alice's genesis and ADDs of bob and carol.
    fn with_chain() -> Self {
        let mut f = Self::new(true);
        let changes = f.batch("alice", &[(Create, "alice"), (Add, "bob"), (Add, "carol"), (Add, "dave")]);
        let effects = f.run("alice", Request::MembershipAppend { id: GROUP, signed: changes });
        assert_eq!(code(&effects), None);
        f
    }

    fn run_as(&mut self, who: &str, dev: &str, request: Request) -> Effects {
        let (reply, _rx) = ReplyTo::channel();
        let origin = Origin {
            session: SessionId::new(1),
            org: OrgId::new("acme").expect("valid"),
            user: user(who),
            device: DeviceId::new(dev).expect("valid"),
            org_admin: false,
            request_id: RequestId::new(7),
            reply,
        };
        self.machine.handle(Command { origin, request }, None, NOW);
        let effects = self.machine.take_effects();
        if let Some(state) = self.machine.conversation(&conv()) {
            self.head = state.chain;
        }
        effects
    }

    fn run(&mut self, who: &str, request: Request) -> Effects {
        self.run_as(who, &format!("{who}-1"), request)
    }

    /// The change `actor` signs at chain seq `seq` after the stored head.
    fn sign(&self, actor: &str, seq: u64, action: MembershipAction, subject: &str) -> SignedChange {
        self.sign_as(actor, &format!("{actor}-1"), seq, self.head.hash, action, subject)
    }

    fn sign_as(
        &self,
        actor: &str,
        dev: &str,
        seq: u64,
        prev_hash: [u8; 32],
        action: MembershipAction,
        subject: &str,
    ) -> SignedChange {
        let epoch = self.epoch() + u64::from(action == Remove);
        self.sign_full(actor, dev, (seq, prev_hash, epoch), action, subject)
    }

    /// The verified chain's epoch (0 before the genesis).
    fn epoch(&self) -> u64 {
        let state = self.machine.conversation(&conv());
        state.and_then(|s| s.verified_chain.as_ref()).map_or(0, |chain| chain.epoch())
    }

    /// A change at (`seq`, `prev_hash`, `epoch`). An ADD lists the subject's first device, or
    /// its second when the subject is already a member.
    fn sign_full(
        &self,
        actor: &str,
        dev: &str,
        (seq, prev_hash, epoch): (u64, [u8; 32], u64),
        action: MembershipAction,
        subject: &str,
    ) -> SignedChange {
        let member = self
            .machine
            .conversation(&conv())
            .and_then(|s| s.verified_chain.as_ref())
            .is_some_and(|c| c.member(&user(subject)).is_some());
        let devices = match action {
            Add if member => vec![MemberDevice {
                device: DeviceId::new(format!("{subject}-2")).expect("valid"),
                identity: *keys(&format!("{subject}2")).public(),
            }],
            Create | Add => vec![device(subject)],
            _ => vec![],
        };
        let change = MembershipChange {
            org: conv().org,
            conversation: GROUP.get(),
            seq,
            prev_hash,
            epoch,
            action,
            actor: user(actor),
            actor_device: DeviceId::new(dev).expect("valid"),
            subject: user(subject),
            devices,
        };
        SignedChange::parse(change.sign(&keys(actor)).expect("signs")).expect("parses")
    }

    /// Changes continuing the stored chain, each after the one before.
    fn batch(&self, actor: &str, changes: &[(MembershipAction, &str)]) -> Vec<SignedChange> {
        let mut head = self.head;
        let mut epoch = self.epoch();
        let mut out = Vec::new();
        for (action, subject) in changes {
            epoch += u64::from(*action == Remove);
            let at = (head.length, head.hash, epoch);
            let signed = self.sign_full(actor, &format!("{actor}-1"), at, *action, subject);
            head = ChainHead { length: head.length + 1, hash: signed.hash };
            out.push(signed);
        }
        out
    }

    fn role(&self, u: &str) -> Option<Role> {
        self.machine.conversation(&conv()).and_then(|s| s.role(&user(u)))
    }
}

fn reply(effects: &Effects) -> Body {
    let [(_, frame)] = effects.replies.as_slice() else { panic!("one reply expected: {effects:?}") };
    Body::decode(frame).expect("valid body")
}

fn code(effects: &Effects) -> Option<ErrorCode> {
    match reply(effects) {
        Body::Error(e) => Some(ErrorCode::from_u32(e.code)),
        _ => None,
    }
}

fn message(effects: &Effects) -> String {
    match reply(effects) {
        Body::Error(e) => e.message,
        other => panic!("an error expected, got {other:?}"),
    }
}

/// Refused with `expected`, and nothing written or sequenced.
fn refused(effects: &Effects, expected: ErrorCode) {
    assert_eq!(code(effects), Some(expected), "{effects:?}");
    assert!(effects.writes.is_empty() && effects.deliveries.is_empty(), "a refusal stores nothing: {effects:?}");
}

/// The events the batch sequenced.
fn events(effects: &Effects) -> Vec<pb::Event> {
    effects
        .writes
        .iter()
        .filter_map(|w| match w {
            WriteOp::PutEntry { entry, .. } => match pb::LogEntry::decode(entry.clone()).expect("entry").body {
                Some(pb::log_entry::Body::Event(e)) => Some(e),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn stored_chain(effects: &Effects) -> Vec<u64> {
    effects
        .writes
        .iter()
        .filter_map(|w| if let WriteOp::PutMembershipChange { seq, .. } = w { Some(*seq) } else { None })
        .collect()
}

fn bytes(changes: &[SignedChange]) -> Vec<Vec<u8>> {
    changes.iter().map(|c| c.bytes.to_vec()).collect()
}

fn update(add: &[&str], remove: &[&str], signed: Vec<SignedChange>) -> Request {
    Request::UpdateMembers {
        id: GROUP,
        add: add.iter().map(|u| user(u)).collect(),
        remove: remove.iter().map(|u| user(u)).collect(),
        signed,
    }
}

#[test]
fn an_append_stores_the_changes_with_one_event_that_carries_them() {
    let mut f = Fixture::new(true);
    let changes = f.batch("alice", &[(Create, "alice"), (Add, "bob")]);
    let effects = f.run("alice", Request::MembershipAppend { id: GROUP, signed: changes.clone() });
    let Body::Sequenced(ack) = reply(&effects) else { panic!("SEQUENCED expected") };
    assert_eq!(stored_chain(&effects), [0, 1]);
    let [event] = events(&effects).try_into().expect("one event");
    assert_eq!(event.kind, Some(pb::event::Kind::MembershipSigned(pb::MembershipSigned {})));
    assert_eq!(event.signed_changes, bytes(&changes), "in chain order, as signed");
    assert_eq!(ack.seq, 2, "after the created event");
    assert_eq!(f.head, ChainHead { length: 2, hash: changes[1].hash });
    let summary = effects.writes.iter().find_map(|w| match w {
        WriteOp::PutConversation { summary, .. } => Some(summary.clone()),
        _ => None,
    });
    assert_eq!(summary.map(|s| (s.end_to_end, s.chain)), Some((true, f.head)), "the head is stored with the entry");

    // Any member may append (here bob adds his own second device's worth of change).
    let more = f.batch("bob", &[(Add, "bob")]);
    assert_eq!(code(&f.run("bob", Request::MembershipAppend { id: GROUP, signed: more })), None);
    assert_eq!(f.head.length, 3);
}

#[test]
fn the_conversation_reports_end_to_end_and_the_chain_length() {
    let mut plain = Fixture::new(false);
    let opened =
        plain.run("alice", Request::CreateGroup { id: GROUP, name: "g".into(), members: vec![], end_to_end: false });
    assert_eq!(code(&opened), Some(ErrorCode::CONFLICT), "the id is taken");
    let state = plain.machine.conversation(&conv()).expect("loaded");
    assert!(!state.is_end_to_end());
    let genesis = plain.batch("alice", &[(Create, "alice")]);
    assert_eq!(code(&plain.run("alice", Request::MembershipAppend { id: GROUP, signed: genesis })), None);
    assert!(plain.machine.conversation(&conv()).expect("loaded").is_end_to_end(), "a genesis makes it end-to-end");

    let f = Fixture::with_chain();
    let state = f.machine.conversation(&conv()).expect("loaded");
    assert!(state.end_to_end && state.is_end_to_end());
    assert_eq!(state.chain.length, 4);
}

#[test]
fn appends_are_refused_unless_they_continue_the_chain_as_the_caller() {
    let mut f = Fixture::with_chain();
    let head = f.head;
    let append = |signed| Request::MembershipAppend { id: GROUP, signed };

    let stale = f.sign_as("alice", "alice-1", 2, head.hash, Add, "erin");
    let effects = f.run("alice", append(vec![stale]));
    refused(&effects, ErrorCode::CONFLICT);
    assert!(message(&effects).contains("has 4 changes"), "{}", message(&effects));
    let broken = f.sign_as("alice", "alice-1", 4, [9; 32], Add, "erin");
    refused(&f.run("alice", append(vec![broken])), ErrorCode::CONFLICT);

    let other_device = f.sign_as("alice", "alice-2", 4, head.hash, Add, "erin");
    refused(&f.run("alice", append(vec![other_device])), ErrorCode::FORBIDDEN);
    let as_alice = f.sign("alice", 4, Add, "erin");
    refused(&f.run_as("bob", "alice-1", append(vec![as_alice.clone()])), ErrorCode::FORBIDDEN);
    refused(&f.run_as("alice", "alice-2", append(vec![as_alice])), ErrorCode::FORBIDDEN);

    let mut elsewhere = f.sign("alice", 4, Add, "erin").change;
    elsewhere.conversation = 43;
    let elsewhere = SignedChange::parse(elsewhere.sign(&keys("alice")).expect("signs")).expect("parses");
    refused(&f.run("alice", append(vec![elsewhere])), ErrorCode::INVALID_ARGUMENT);
    refused(&f.run("alice", append(vec![f.sign("alice", 4, Create, "alice")])), ErrorCode::INVALID_ARGUMENT);

    // A batch with one bad change stores none of it.
    let mut batch = f.batch("alice", &[(Add, "erin"), (Add, "frank")]);
    batch[1] = f.sign_as("alice", "alice-1", 5, [1; 32], Add, "frank");
    refused(&f.run("alice", append(batch)), ErrorCode::CONFLICT);
    assert_eq!(f.head, head, "the chain did not move");

    refused(&f.run("mallory", append(f.batch("mallory", &[(Add, "mallory")]))), ErrorCode::NOT_FOUND);
    assert_eq!(
        message(&f.run("mallory", Request::MembershipChain { id: GROUP, from_seq: 0, limit: 10 })),
        super::machine::not_found().1
    );
}

#[test]
fn only_the_owner_writes_the_genesis_and_it_must_be_a_create() {
    let mut f = Fixture::new(true);
    let append = |signed| Request::MembershipAppend { id: GROUP, signed };
    refused(&f.run("bob", append(f.batch("bob", &[(Create, "bob")]))), ErrorCode::FORBIDDEN);
    refused(&f.run("alice", append(f.batch("alice", &[(Add, "alice")]))), ErrorCode::INVALID_ARGUMENT);
    assert_eq!(code(&f.run("alice", append(f.batch("alice", &[(Create, "alice")])))), None);
}

#[test]
fn with_a_chain_update_members_needs_one_signed_change_per_member_changed() {
    let mut f = Fixture::with_chain();
    refused(&f.run("alice", update(&["erin"], &[], vec![])), ErrorCode::INVALID_ARGUMENT);
    refused(&f.run("alice", update(&["erin"], &[], f.batch("alice", &[(Add, "frank")]))), ErrorCode::INVALID_ARGUMENT);
    let extra = f.batch("alice", &[(Add, "erin"), (Add, "frank")]);
    refused(&f.run("alice", update(&["erin"], &[], extra)), ErrorCode::INVALID_ARGUMENT);
    let wrong_action = f.batch("alice", &[(Remove, "erin")]);
    refused(&f.run("alice", update(&["erin"], &[], wrong_action)), ErrorCode::INVALID_ARGUMENT);
    let missing_remove = f.batch("alice", &[(Add, "erin")]);
    refused(&f.run("alice", update(&["erin"], &["bob"], missing_remove)), ErrorCode::INVALID_ARGUMENT);
    assert_eq!((f.role("erin"), f.role("bob")), (None, Some(Role::Member)), "nothing changed");

    // Any order within the chain numbering; all changes ride on the request's first event.
    let changes = f.batch("alice", &[(Remove, "bob"), (Add, "erin")]);
    let effects = f.run("alice", update(&["erin"], &["bob"], changes.clone()));
    assert!(matches!(reply(&effects), Body::Sequenced(_)));
    assert_eq!(stored_chain(&effects), [4, 5]);
    let [added, removed] = events(&effects).try_into().expect("two events");
    assert!(matches!(added.kind, Some(pb::event::Kind::MembersAdded(_))));
    assert_eq!(added.signed_changes, bytes(&changes));
    assert!(removed.signed_changes.is_empty());
    assert_eq!((f.role("erin"), f.role("bob")), (Some(Role::Member), None));

    let removal = f.batch("alice", &[(Remove, "carol")]);
    let effects = f.run("alice", update(&[], &["carol"], removal.clone()));
    let [event] = events(&effects).try_into().expect("one event");
    assert!(matches!(event.kind, Some(pb::event::Kind::MembersRemoved(_))));
    assert_eq!(event.signed_changes, bytes(&removal));
}

#[test]
fn with_a_chain_leave_needs_the_callers_own_removal() {
    let mut f = Fixture::with_chain();
    let leave = |signed| Request::Leave { id: GROUP, signed };
    refused(&f.run("bob", leave(vec![])), ErrorCode::INVALID_ARGUMENT);
    // Removing carol is not bob's to do: refused as the signed chain's rules refuse it.
    refused(&f.run("bob", leave(f.batch("bob", &[(Remove, "carol")]))), ErrorCode::FORBIDDEN);
    refused(&f.run("bob", leave(f.batch("alice", &[(Remove, "bob")]))), ErrorCode::FORBIDDEN);
    let own = f.batch("bob", &[(Remove, "bob")]);
    let effects = f.run("bob", leave(own.clone()));
    assert!(matches!(reply(&effects), Body::Sequenced(_)));
    let [event] = events(&effects).try_into().expect("one event");
    assert_eq!(event.signed_changes, bytes(&own));
    assert_eq!(f.role("bob"), None);
}

#[test]
fn with_a_chain_roles_need_promote_or_demote_and_ownership_stays() {
    let mut f = Fixture::with_chain();
    let set = |u: &str, role, signed| Request::SetRole { id: GROUP, user: user(u), role, signed };
    refused(&f.run("alice", set("bob", Role::Admin, vec![])), ErrorCode::INVALID_ARGUMENT);
    refused(
        &f.run("alice", set("bob", Role::Admin, f.batch("alice", &[(Demote, "bob")]))),
        ErrorCode::INVALID_ARGUMENT,
    );
    refused(
        &f.run("alice", set("bob", Role::Admin, f.batch("alice", &[(Promote, "carol")]))),
        ErrorCode::INVALID_ARGUMENT,
    );
    let effects = f.run("alice", set("bob", Role::Owner, vec![]));
    refused(&effects, ErrorCode::INVALID_ARGUMENT);
    assert_eq!(message(&effects), "ownership transfer is not part of end-to-end membership in v1");

    let promote = f.batch("alice", &[(Promote, "bob")]);
    let effects = f.run("alice", set("bob", Role::Admin, promote.clone()));
    let [event] = events(&effects).try_into().expect("one event");
    assert_eq!(event.signed_changes, bytes(&promote));
    assert_eq!(f.role("bob"), Some(Role::Admin));
    let demote = f.batch("alice", &[(Demote, "bob")]);
    assert_eq!(code(&f.run("alice", set("bob", Role::Member, demote))), None);
    assert_eq!((f.role("bob"), f.head.length), (Some(Role::Member), 6));
}

#[test]
fn without_a_chain_changes_are_optional_but_checked_when_given() {
    let mut f = Fixture::new(false);
    assert_eq!(code(&f.run("alice", update(&["erin"], &[], vec![]))), None);
    assert_eq!(
        code(&f.run("alice", Request::SetRole { id: GROUP, user: user("bob"), role: Role::Owner, signed: vec![] })),
        None
    );
    // A chain may start with the request that changes members: genesis first, then the ADD.
    let mut f = Fixture::new(true);
    refused(&f.run("alice", update(&["erin"], &[], f.batch("alice", &[(Add, "erin")]))), ErrorCode::INVALID_ARGUMENT);
    let started = f.batch("alice", &[(Create, "alice"), (Add, "erin")]);
    assert_eq!(code(&f.run("alice", update(&["erin"], &[], started))), None);
    assert_eq!(f.head.length, 2);
}

#[test]
fn the_chain_is_read_after_commit_with_its_length() {
    let mut f = Fixture::with_chain();
    let effects = f.run("carol", Request::MembershipChain { id: GROUP, from_seq: 1, limit: 2 });
    assert!(effects.replies.is_empty(), "the page is the answer");
    let [read] = effects.chain_reads.as_slice() else { panic!("one chain read") };
    assert_eq!((read.from_seq, read.limit, read.chain_length), (1, 2, 4));
}

/// The broker verifies each change as clients will, so that no member can store a change the
/// others refuse: every later change builds on its hash, and the chain would stall for good.
#[test]
fn changes_that_clients_would_refuse_are_refused_before_they_are_stored() {
    let mut f = Fixture::with_chain();
    let append = |signed| Request::MembershipAppend { id: GROUP, signed };

    // A plain member adding someone else: properly signed as bob, but not bob's to do.
    let not_permitted = f.batch("bob", &[(Add, "erin")]);
    let effects = f.run("bob", append(not_permitted));
    refused(&effects, ErrorCode::FORBIDDEN);
    assert!(message(&effects).contains("does not verify"), "{}", message(&effects));

    // A signature that does not verify under the key the chain records for the device.
    let mut forged = f.batch("alice", &[(Add, "erin")]);
    let mut bytes = forged[0].bytes.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    forged[0] = SignedChange::parse(bytes::Bytes::from(bytes)).expect("still parses");
    refused(&f.run("alice", append(forged)), ErrorCode::FORBIDDEN);

    // A removal that keeps the epoch: members would never rotate their keys away from bob.
    let head = f.head;
    let same_epoch = f.sign_full("alice", "alice-1", (head.length, head.hash, f.epoch()), Remove, "bob");
    refused(&f.run("alice", update(&[], &["bob"], vec![same_epoch])), ErrorCode::INVALID_ARGUMENT);

    assert_eq!(f.head, head, "nothing was stored");
    let valid = f.batch("alice", &[(Add, "erin")]);
    assert_eq!(code(&f.run("alice", update(&["erin"], &[], valid))), None, "the chain still moves");
    assert_eq!(f.head.length, head.length + 1);
}
