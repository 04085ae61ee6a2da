//! Receipts, recall, expiry and scheduled send through the shard machine, with time driven by
//! the test: no sockets, no disks, no sleeping.

use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{Body, DeviceId, ErrorCode, FrameCodec, FrameType, OrgId, RequestId, SessionId, UserId, pb};
use prost::Message;

use super::{Command, Effects, OrgPolicy, Origin, Policies, Request, SendOptions, ShardLimits, ShardMachine};
use crate::conversation::{ConvKey, ConversationId};
use crate::fanout::{Lane, ReplyTo};
use crate::receipts::ListKind;
use crate::store::WriteOp;

pub(super) const T0: u64 = 1_800_000_000_000;
const GROUP: ConversationId = ConversationId::new(42);

pub(super) fn user(u: &str) -> UserId {
    UserId::new(u).expect("valid")
}

fn conv() -> ConvKey {
    ConvKey { org: OrgId::new("acme").expect("valid"), id: GROUP }
}

fn origin(u: &str, device: &str) -> Origin {
    let (reply, _rx) = ReplyTo::channel();
    Origin {
        session: SessionId::new(1),
        org: OrgId::new("acme").expect("valid"),
        user: user(u),
        device: DeviceId::new(device).expect("valid"),
        org_admin: u == "root",
        request_id: RequestId::new(7),
        reply,
    }
}

pub(super) struct Shard {
    pub(super) machine: ShardMachine,
    pub(super) now: u64,
}

impl Shard {
    pub(super) fn new(members: &[&str]) -> Self {
        Self::with_policy(members, OrgPolicy::default())
    }

    fn with_policy(members: &[&str], policy: OrgPolicy) -> Self {
        let mut limits = ShardLimits::with_max_group_members(5000);
        limits.max_schedule_ms = 7 * 24 * 3600 * 1000;
        let policies = Arc::new(Policies { default: policy, orgs: Default::default() });
        let mut shard = Self { machine: ShardMachine::new(limits, policies), now: T0 };
        let members = members.iter().map(|m| user(m)).collect();
        shard.run("alice", Request::CreateGroup { id: GROUP, name: "g".into(), members, end_to_end: false });
        shard
    }

    fn run_on(&mut self, who: &str, device: &str, request: Request) -> Effects {
        self.machine.handle(Command { origin: origin(who, device), request }, None, self.now);
        self.machine.take_effects()
    }

    pub(super) fn run(&mut self, who: &str, request: Request) -> Effects {
        self.run_on(who, "d1", request)
    }

    fn advance(&mut self, ms: u64) -> Effects {
        self.now += ms;
        self.machine.tick(self.now);
        self.machine.take_effects()
    }

    fn send(&mut self, who: &str, id: &str, options: SendOptions) -> Effects {
        let payload = Bytes::from(format!("secret-{id}"));
        self.run(who, Request::Send { id: GROUP, client_msg_id: id.into(), payload, options })
    }

    fn send_seq(&mut self, who: &str, id: &str) -> u64 {
        let Body::SendAck(ack) = answer(&self.send(who, id, SendOptions::default())) else { panic!("SEND_ACK") };
        ack.seq
    }

    pub(super) fn read(&mut self, who: &str, seq: u64) -> Effects {
        self.run(who, Request::Mark { id: GROUP, delivered: 0, read: seq })
    }

    fn query(&mut self, who: &str, seq: u64, list: Option<ListKind>) -> Body {
        answer(&self.run(who, Request::ReceiptQuery { id: GROUP, seq, list, after: None, limit: 100 }))
    }
}

pub(super) fn answer(effects: &Effects) -> Body {
    let [(_, frame)] = effects.replies.as_slice() else { panic!("one reply expected: {:?}", effects.replies) };
    Body::decode(frame).expect("valid body")
}

pub(super) fn code(effects: &Effects) -> Option<ErrorCode> {
    match answer(effects) {
        Body::Error(e) => Some(ErrorCode::from_u32(e.code)),
        _ => None,
    }
}

fn counts(body: &Body) -> (u32, u32, u32) {
    let Body::ReceiptPage(page) = body else { panic!("RECEIPT_PAGE expected, got {body:?}") };
    let r = page.receipts.expect("counts");
    (r.read_count, r.delivered_count, r.member_count)
}

/// The frames of one type among the effects' deliveries, decoded, with their lane and recipients.
pub(super) fn pushed(effects: &Effects, frame_type: FrameType) -> Vec<(Body, Lane, Vec<UserId>)> {
    let codec = FrameCodec::default();
    effects
        .deliveries
        .iter()
        .filter_map(|d| {
            let frame = codec.decode(&mut bytes::BytesMut::from(&d.frame[..])).expect("valid").expect("whole");
            (frame.frame_type() == frame_type)
                .then(|| (Body::decode(&frame).expect("body"), d.lane, d.recipients.to_vec()))
        })
        .collect()
}

#[test]
fn counts_are_exact_and_senders_get_one_coalesced_update_per_window() {
    let members: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let mut shard = Shard::new(&refs);
    let seq = shard.send_seq("alice", "hello");
    assert_eq!(counts(&shard.query("m00", seq, None)), (1, 1, 51), "the sender has read its own message");
    let mut marks = 0;
    for (i, member) in members.iter().enumerate() {
        let effects = shard.read(member, seq);
        assert!(matches!(answer(&effects), Body::Cursors(c) if c.read_seq == seq && c.delivered_seq == seq));
        assert!(pushed(&effects, FrameType::RECEIPTS).is_empty(), "nothing is pushed per read");
        marks += 1;
        assert_eq!(counts(&shard.query("alice", seq, None)), (1 + marks, 1 + marks, 51));
        if i == 20 {
            let updates = pushed(&shard.advance(300), FrameType::RECEIPTS);
            let [(Body::Receipts(update), Lane::Push, to)] = updates.as_slice() else { panic!("{updates:?}") };
            assert_eq!(to, &[user("alice")]);
            assert_eq!((update.messages[0].seq, update.messages[0].read_count), (seq, 22));
        }
    }
    let updates = pushed(&shard.advance(300), FrameType::RECEIPTS);
    assert_eq!(updates.len(), 1, "50 reads made two updates in all");
    assert!(pushed(&shard.advance(300), FrameType::RECEIPTS).is_empty(), "nothing changed since");
}

#[test]
fn unread_lists_are_paged_and_only_the_sender_and_admins_may_list() {
    let mut shard = Shard::new(&["bob", "carol", "dave"]);
    let seq = shard.send_seq("alice", "m");
    shard.read("carol", seq);
    let Body::ReceiptPage(page) = shard.query("alice", seq, Some(ListKind::Unread)) else { panic!("page") };
    assert_eq!(page.user_ids, ["bob", "dave"]);
    let Body::ReceiptPage(page) = shard.query("alice", seq, Some(ListKind::Read)) else { panic!("page") };
    assert_eq!(page.user_ids, ["alice", "carol"]);
    let effects = shard
        .run("bob", Request::ReceiptQuery { id: GROUP, seq, list: Some(ListKind::Unread), after: None, limit: 10 });
    assert_eq!(code(&effects), Some(ErrorCode::FORBIDDEN));
    assert_eq!(counts(&shard.query("bob", seq, None)), (2, 2, 4), "counts are for every member");
    assert_eq!(
        code(&shard.run("mallory", Request::ReceiptQuery { id: GROUP, seq, list: None, after: None, limit: 1 })),
        Some(ErrorCode::NOT_FOUND)
    );
}

#[test]
fn bad_cursors_are_refused_and_change_nothing() {
    let mut shard = Shard::new(&["bob"]);
    let seq = shard.send_seq("alice", "m");
    assert_eq!(code(&shard.read("bob", seq + 1)), Some(ErrorCode::OUT_OF_RANGE));
    assert!(shard.read("bob", seq).writes.iter().any(|w| matches!(w, WriteOp::PutMemberCursor { .. })));
    let effects = shard.read("bob", seq - 1);
    assert_eq!(code(&effects), Some(ErrorCode::STALE_CURSOR));
    assert!(effects.writes.is_empty());
    assert!(shard.read("bob", seq).writes.is_empty(), "an equal cursor is an idempotent success");
    assert_eq!(counts(&shard.query("alice", seq, None)), (2, 2, 2));
}

#[test]
fn members_who_join_later_do_not_count_for_earlier_messages() {
    let mut shard = Shard::new(&["bob"]);
    let first = shard.send_seq("alice", "before");
    shard.run(
        "alice",
        Request::UpdateMembers { id: GROUP, add: vec![user("carol")], remove: vec![user("bob")], signed: vec![] },
    );
    let second = shard.send_seq("alice", "after");
    shard.read("carol", second);
    assert_eq!(counts(&shard.query("alice", first, None)), (1, 1, 2), "membership at the time of sending");
    assert_eq!(counts(&shard.query("alice", second, None)), (2, 2, 2));
}

#[test]
fn recall_tombstones_the_entry_sequences_an_event_and_notifies_on_the_urgent_lane() {
    let mut shard = Shard::new(&["bob"]);
    let seq = shard.send_seq("alice", "oops");
    let effects = shard.run("alice", Request::Recall { id: GROUP, seq });
    let Body::Sequenced(event) = answer(&effects) else { panic!("SEQUENCED") };
    assert_eq!(event.seq, seq + 1);
    let tombstone = effects
        .writes
        .iter()
        .find_map(|w| match w {
            WriteOp::PutEntry { seq: s, entry, .. } if *s == seq => {
                Some(pb::LogEntry::decode(entry.clone()).expect("entry"))
            }
            _ => None,
        })
        .expect("the entry is rewritten");
    assert!(!tombstone.encode_to_vec().windows(11).any(|w| w == b"secret-oops"), "no payload left");
    let Some(pb::log_entry::Body::Tombstone(t)) = tombstone.body else { panic!("a tombstone") };
    assert_eq!((t.recalled_by_user_id.as_str(), t.event_seq), ("alice", seq + 1));
    assert_eq!(effects.purges, [(conv(), seq)]);
    let notices = pushed(&effects, FrameType::RECALL_NOTICE);
    let [(Body::RecallNotice(n), Lane::Urgent, to)] = notices.as_slice() else { panic!("{notices:?}") };
    assert_eq!((n.seq, n.event_seq, to.len()), (seq, seq + 1, 2));
    assert_eq!(code(&shard.run("alice", Request::Recall { id: GROUP, seq })), Some(ErrorCode::ALREADY_RECALLED));
    assert_eq!(
        code(&shard.run("alice", Request::Recall { id: GROUP, seq: seq + 1 })),
        Some(ErrorCode::INVALID_ARGUMENT)
    );
    assert_eq!(code(&shard.run("alice", Request::Recall { id: GROUP, seq: 99 })), Some(ErrorCode::NOT_FOUND));
}

#[test]
fn the_recall_window_binds_senders_but_not_admins() {
    let policy = OrgPolicy { recall_window_ms: 60_000, ..OrgPolicy::default() };
    let mut shard = Shard::with_policy(&["bob", "carol"], policy);
    let by_bob = |shard: &mut Shard, id| {
        let Body::SendAck(ack) = answer(&shard.send("bob", id, SendOptions::default())) else { panic!("ack") };
        ack.seq
    };
    let (first, second, third) = (by_bob(&mut shard, "1"), by_bob(&mut shard, "2"), by_bob(&mut shard, "3"));
    assert_eq!(code(&shard.run("carol", Request::Recall { id: GROUP, seq: first })), Some(ErrorCode::FORBIDDEN));
    shard.now += 61_000;
    assert_eq!(
        code(&shard.run("bob", Request::Recall { id: GROUP, seq: first })),
        Some(ErrorCode::RECALL_WINDOW_CLOSED)
    );
    assert_eq!(code(&shard.run("alice", Request::Recall { id: GROUP, seq: first })), None, "the owner may, any time");
    assert_eq!(
        code(&shard.run("root", Request::Recall { id: GROUP, seq: second })),
        Some(ErrorCode::NOT_FOUND),
        "org admins must be members"
    );
    shard.run("alice", Request::UpdateMembers { id: GROUP, add: vec![user("root")], remove: vec![], signed: vec![] });
    assert_eq!(code(&shard.run("root", Request::Recall { id: GROUP, seq: third })), None, "an org admin may");
}

#[test]
fn recall_progress_counts_devices_that_applied_it() {
    let mut shard = Shard::new(&["bob"]);
    let seq = shard.send_seq("alice", "m");
    shard.run_on("bob", "phone", Request::Mark { id: GROUP, delivered: seq, read: 0 });
    shard.run_on("bob", "laptop", Request::Mark { id: GROUP, delivered: seq, read: 0 });
    let Body::Sequenced(event) = answer(&shard.run("alice", Request::Recall { id: GROUP, seq })) else { panic!() };
    shard.advance(300);
    shard.run_on("bob", "phone", Request::Mark { id: GROUP, delivered: event.seq, read: 0 });
    let updates = pushed(&shard.advance(300), FrameType::RECEIPTS);
    let [(Body::Receipts(update), _, to)] = updates.as_slice() else { panic!("{updates:?}") };
    assert_eq!(to, &[user("alice")]);
    let [progress] = update.recalls.as_slice() else { panic!("{update:?}") };
    assert_eq!(
        (progress.seq, progress.applied_devices, progress.device_count),
        (seq, 2, 3),
        "alice's d1 and bob's phone"
    );
}

#[test]
fn a_message_expires_at_its_time_as_a_recall_by_the_broker() {
    let mut shard = Shard::new(&["bob"]);
    let options = SendOptions { expire_at_ms: T0 + 10_000, ..SendOptions::default() };
    let effects = shard.send("alice", "short-lived", options);
    assert!(effects.writes.iter().any(|w| matches!(w, WriteOp::PutTimer { .. })));
    assert_eq!(shard.machine.timers.next_due(), Some(T0 + 10_000));
    assert!(shard.advance(9_999).writes.is_empty());
    let effects = shard.advance(1);
    assert!(effects.writes.iter().any(|w| matches!(w, WriteOp::DeleteTimer { .. })));
    let notices = pushed(&effects, FrameType::RECALL_NOTICE);
    let [(Body::RecallNotice(n), ..)] = notices.as_slice() else { panic!("{notices:?}") };
    assert_eq!((n.reason(), n.recalled_by_user_id.as_str()), (pb::RecallReason::Expired, ""));
    assert!(shard.advance(60_000).writes.is_empty(), "fires once");
}

#[test]
fn expire_after_read_waits_for_everyone_then_counts_down() {
    let mut shard = Shard::new(&["bob", "carol"]);
    let options = SendOptions { expire_after_read_secs: 5, ..SendOptions::default() };
    let Body::SendAck(ack) = answer(&shard.send("alice", "burn", options)) else { panic!() };
    shard.read("bob", ack.seq);
    assert_eq!(shard.machine.timers.next_due(), None, "carol has not read it");
    shard.now += 1_000;
    shard.read("carol", ack.seq);
    assert_eq!(shard.machine.timers.next_due(), Some(T0 + 1_000 + 5_000));
    shard.advance(250);
    assert_eq!(pushed(&shard.advance(4_750), FrameType::RECALL_NOTICE).len(), 1);
}

#[test]
fn retention_expires_messages_sent_while_it_is_set() {
    let mut shard = Shard::new(&["bob"]);
    let effects =
        shard.run("alice", Request::UpdateSettings { id: GROUP, read_receipts: None, retention_secs: Some(60) });
    assert!(matches!(answer(&effects), Body::Sequenced(_)));
    assert_eq!(
        code(
            &shard.run("bob", Request::UpdateSettings { id: GROUP, read_receipts: Some(false), retention_secs: None })
        ),
        Some(ErrorCode::FORBIDDEN)
    );
    shard.send_seq("alice", "m");
    assert_eq!(shard.machine.timers.next_due(), Some(T0 + 60_000));
}

#[test]
fn scheduled_messages_are_held_then_sequenced_from_their_sender() {
    let mut shard = Shard::new(&["bob"]);
    let at = T0 + 30_000;
    let effects = shard.send("bob", "later", SendOptions { deliver_at_ms: at, ..SendOptions::default() });
    let Body::Scheduled(s) = answer(&effects) else { panic!("SCHEDULED") };
    assert_eq!(s.deliver_at_ms, at);
    assert!(effects.deliveries.is_empty());
    let retry = shard.send("bob", "later", SendOptions { deliver_at_ms: at, ..SendOptions::default() });
    assert!(matches!(answer(&retry), Body::Scheduled(_)) && retry.writes.is_empty(), "a retry is idempotent");
    assert_eq!(code(&shard.send("bob", "later", SendOptions::default())), Some(ErrorCode::CONFLICT));
    let moved =
        shard.run("bob", Request::Reschedule { id: GROUP, client_msg_id: "later".into(), deliver_at_ms: at + 10_000 });
    assert!(matches!(answer(&moved), Body::Scheduled(s) if s.deliver_at_ms == at + 10_000));
    assert!(pushed(&shard.advance(30_000), FrameType::DELIVERY).is_empty());
    let deliveries = pushed(&shard.advance(10_000), FrameType::DELIVERY);
    let [(Body::Delivery(d), ..)] = deliveries.as_slice() else { panic!("{deliveries:?}") };
    let entry = d.entry.clone().expect("entry");
    assert_eq!(entry.sender_user_id, "bob");
    assert!(matches!(entry.body, Some(pb::log_entry::Body::Message(m)) if m.payload == b"secret-later"));
    let gone = shard.run("bob", Request::Reschedule { id: GROUP, client_msg_id: "later".into(), deliver_at_ms: 0 });
    assert_eq!(code(&gone), Some(ErrorCode::NOT_FOUND));
}

#[test]
fn schedules_in_the_past_or_beyond_the_horizon_are_refused() {
    let mut shard = Shard::new(&["bob"]);
    for at in [T0 - 1, T0 + 8 * 24 * 3600 * 1000] {
        let effects = shard.send("bob", "x", SendOptions { deliver_at_ms: at, ..SendOptions::default() });
        assert_eq!(code(&effects), Some(ErrorCode::OUT_OF_RANGE));
        assert!(effects.writes.is_empty());
    }
    let cancel = shard.run("bob", Request::Reschedule { id: GROUP, client_msg_id: "x".into(), deliver_at_ms: 0 });
    assert_eq!(code(&cancel), Some(ErrorCode::NOT_FOUND));
}

#[test]
fn a_failed_commit_puts_fired_timers_back_so_they_fire_once_later() {
    let mut shard = Shard::new(&["bob"]);
    shard.send("bob", "later", SendOptions { deliver_at_ms: T0 + 1_000, ..SendOptions::default() });
    shard.now += 1_000;
    shard.machine.tick(shard.now);
    let failed = shard.machine.take_effects();
    assert_eq!(pushed(&failed, FrameType::DELIVERY).len(), 1);
    shard.machine.forget(&failed.touched);
    shard.machine.restore_timers(failed.timers_before);
    assert_eq!(shard.machine.timers.next_due(), Some(T0 + 1_000), "the timer is pending again");
}

#[test]
fn receipts_off_in_the_organisation_refuse_queries_and_push_nothing() {
    let policy = OrgPolicy { read_receipts: false, ..OrgPolicy::default() };
    let mut shard = Shard::with_policy(&["bob"], policy);
    let seq = shard.send_seq("alice", "m");
    assert!(matches!(answer(&shard.read("bob", seq)), Body::Cursors(_)), "cursors still move");
    assert!(pushed(&shard.advance(1_000), FrameType::RECEIPTS).is_empty());
    let effects = shard.run("alice", Request::ReceiptQuery { id: GROUP, seq, list: None, after: None, limit: 1 });
    assert_eq!(code(&effects), Some(ErrorCode::RECEIPTS_DISABLED));
}

#[test]
fn a_retry_after_its_times_passed_is_answered_as_its_first_attempt_was() {
    let mut shard = Shard::new(&["bob"]);
    let expiring = SendOptions { expire_at_ms: T0 + 1_000, ..SendOptions::default() };
    let Body::SendAck(first) = answer(&shard.send("bob", "soon-gone", expiring)) else { panic!("SEND_ACK") };
    let held = SendOptions { deliver_at_ms: T0 + 1_000, ..SendOptions::default() };
    assert!(matches!(answer(&shard.send("bob", "held", held)), Body::Scheduled(_)));
    // Both times pass before the retries (their acknowledgements were lost) and before any tick.
    shard.now += 2_000;
    let prior = super::PriorSend {
        seq: first.seq,
        payload: Some(Bytes::from_static(b"secret-soon-gone")),
        timestamp_ms: first.timestamp_ms,
    };
    let request = Request::Send {
        id: GROUP,
        client_msg_id: "soon-gone".into(),
        payload: Bytes::from_static(b"secret-soon-gone"),
        options: expiring,
    };
    shard.machine.handle(Command { origin: origin("bob", "d1"), request }, Some(prior), shard.now);
    let retry = shard.machine.take_effects();
    assert!(matches!(answer(&retry), Body::SendAck(a) if a.duplicate && a.seq == first.seq), "not OUT_OF_RANGE");
    let retry = shard.send("bob", "held", held);
    assert!(matches!(answer(&retry), Body::Scheduled(s) if s.deliver_at_ms == T0 + 1_000), "still held, not refused");
    assert!(retry.writes.is_empty());
}
