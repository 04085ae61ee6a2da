//! The history checker (tests/common/history.rs) on hand-made histories: a clean one is clean,
//! and each kind of problem is found and named. No broker here: these test the test.

mod common;

use std::time::Duration;

use common::history::{History, Log, SendRecord};
use herald_client::{Entry, EntryKind, RecallReason};

const CONV: u64 = 7;

fn message(seq: u64, sender: &str, id: &str, payload: &str) -> Entry {
    Entry {
        conversation_id: CONV,
        seq,
        timestamp_ms: 1_000 + seq,
        sender_user: sender.into(),
        sender_device: "phone".into(),
        kind: EntryKind::Message { client_msg_id: id.into(), payload: payload.to_owned().into() },
        expiry: None,
        end_to_end: false,
    }
}

fn created() -> Entry {
    Entry { kind: EntryKind::Membership(Default::default()), ..message(1, "owner", "", "") }
}

fn log(entries: Vec<Entry>) -> Log {
    let last_seq = entries.len() as u64;
    Log { conversation: CONV, entries, last_seq }
}

/// Two senders, three messages, one recipient that got everything from seq 1 on.
fn clean() -> (History, Vec<Entry>) {
    let entries = vec![
        created(),
        message(2, "ann", "a-0", "hello"),
        message(3, "bob", "b-0", "hi"),
        message(4, "ann", "a-1", "bye"),
    ];
    let mut history = History::new();
    history.sent(SendRecord::new("ann", CONV, "a-0", "hello").acked(2));
    history.sent(SendRecord::new("bob", CONV, "b-0", "hi").acked(3));
    history.sent(SendRecord::new("ann", CONV, "a-1", "bye").acked(4));
    history.received("cat", entries.clone());
    history.expect("cat", CONV, 0);
    (history, entries)
}

#[test]
fn a_clean_history_is_clean() {
    let (history, entries) = clean();
    let findings = history.check(&[log(entries)]);
    assert!(findings.is_clean(), "{findings}");
    assert_eq!((findings.counts.sends, findings.counts.acked, findings.counts.deliveries), (3, 3, 4));
    assert_eq!(findings.counts.log_entries, 4);
}

#[test]
fn an_acknowledged_message_missing_or_moved_is_acked_lost() {
    let (history, mut entries) = clean();
    entries.remove(3);
    let findings = history.check(&[log(entries.clone())]);
    assert_eq!(findings.acked_lost.len(), 1, "{findings}");
    assert!(findings.acked_lost[0].contains("ann/a-1"), "{findings}");

    // Stored, but at another seq than the ack said.
    let (mut history, _) = clean();
    history.sent(SendRecord::new("ann", CONV, "a-1", "bye").acked(9));
    let (_, entries) = clean();
    let findings = history.check(&[log(entries)]);
    assert_eq!(findings.acked_lost.len(), 1, "a retry's later ack wins: {findings}");
}

#[test]
fn a_message_stored_twice_or_delivered_twice_is_a_duplicate() {
    let (history, mut entries) = clean();
    entries.push(message(5, "bob", "b-0", "hi"));
    let findings = history.check(&[log(entries.clone())]);
    assert_eq!(findings.duplicates.len(), 1, "{findings}");
    assert!(findings.duplicates[0].contains("stored at seqs [3, 5]"), "{findings}");

    let (mut history, entries) = clean();
    history.received("cat", [entries[2].clone()]);
    let findings = history.check(&[log(entries)]);
    assert!(findings.duplicates.iter().any(|d| d.contains("cat: conv 7 seq 3 delivered twice")), "{findings}");
}

#[test]
fn a_stranger_or_an_altered_payload_is_unexpected() {
    let (history, mut entries) = clean();
    entries.push(message(5, "eve", "e-0", "boo"));
    let findings = history.check(&[log(entries)]);
    assert_eq!(findings.unexpected.len(), 1, "{findings}");
    assert!(findings.unexpected[0].contains("eve/e-0"));

    let (history, mut entries) = clean();
    entries[1] = message(2, "ann", "a-0", "HELLO");
    let findings = history.check(&[log(entries)]);
    assert!(findings.unexpected.iter().any(|u| u.contains("another payload")), "{findings}");
    assert!(findings.unexpected.iter().any(|u| u.contains("differs from the log")), "the delivery differs too");
    assert_eq!(findings.acked_lost.len(), 1, "the acked payload is gone");

    let (mut history, entries) = clean();
    history.received("cat", [message(9, "ann", "a-9", "ghost")]);
    let findings = history.check(&[log(entries)]);
    assert!(findings.unexpected.iter().any(|u| u.contains("seq 9 delivered, not in the log")), "{findings}");
}

#[test]
fn send_order_and_stream_order_violations_are_found() {
    // ann sent a-1 before a-0 this time, but the log has a-0 first.
    let mut reordered = History::new();
    reordered.sent(SendRecord::new("ann", CONV, "a-1", "bye").acked(4));
    reordered.sent(SendRecord::new("ann", CONV, "a-0", "hello").acked(2));
    reordered.sent(SendRecord::new("bob", CONV, "b-0", "hi").acked(3));
    let (_, entries) = clean();
    let findings = reordered.check(&[log(entries.clone())]);
    assert_eq!(findings.order_violations.len(), 1, "{findings}");
    assert!(findings.order_violations[0].contains("ann's a-1"), "{findings}");

    let mut history = History::new();
    history.received("cat", [entries[0].clone(), entries[2].clone(), entries[1].clone(), entries[3].clone()]);
    let findings = history.check(&[log(entries)]);
    assert!(findings.order_violations.iter().any(|o| o.contains("cat: conv 7 seq 2 delivered after seq 3")));
}

#[test]
fn an_entry_a_reading_member_never_got_is_missing_delivered() {
    let (mut history, entries) = clean();
    history.received("dan", [entries[0].clone(), entries[1].clone()]);
    history.expect("dan", CONV, 1);
    // eve joined late: she owes nothing before seq 3.
    history.received("eve", [entries[3].clone()]);
    history.expect("eve", CONV, 3);
    let findings = history.check(&[log(entries)]);
    assert_eq!(
        findings.missing_delivered,
        vec!["dan: conv 7 seq 3 never delivered", "dan: conv 7 seq 4 never delivered"]
    );
    assert_eq!(findings.problems().iter().map(|(_, p)| p.len()).sum::<usize>(), 2, "{findings}");
}

#[test]
fn unacknowledged_messages_are_recovered_when_stored_and_allowed_when_absent() {
    let (mut history, entries) = clean();
    history.sent(SendRecord::new("bob", CONV, "b-1", "maybe"));
    history.sent(SendRecord::new("bob", CONV, "b-2", "lost ack"));
    let mut entries = entries;
    entries.push(message(5, "bob", "b-2", "lost ack"));
    history.received("cat", [entries[4].clone()]);
    let findings = history.check(&[log(entries)]);
    assert!(findings.is_clean(), "{findings}");
    assert_eq!((findings.counts.recovered, findings.counts.unacked_absent), (1, 1));
    assert!(findings.recovered[0].contains("bob/b-2"));
}

#[test]
fn gaps_and_a_wrong_last_seq_break_the_sequence() {
    let (history, mut entries) = clean();
    entries.remove(2);
    let mut gappy = log(entries);
    gappy.last_seq = 4;
    let findings = history.check(&[gappy]);
    assert_eq!(findings.sequence.len(), 2, "{findings}");
    assert!(!findings.is_clean());
    let shown = findings.to_string();
    assert!(shown.contains("sequence: 2") && shown.contains("acked_lost: 1"), "{shown}");
}

#[test]
fn a_recalled_message_may_have_been_delivered_before_its_tombstone() {
    let (history, mut entries) = clean();
    entries[2].kind = EntryKind::Tombstone {
        recalled_at_ms: 5_000,
        recalled_by: Some("bob".into()),
        reason: RecallReason::Recalled,
        event_seq: 5,
    };
    entries[2].sender_user = "bob".into();
    let findings = history.check(&[log(entries.clone())]);
    assert!(findings.is_clean(), "a recall is not a loss: {findings}");
    assert_eq!(findings.counts.recalled, 1);
    // Someone else's tombstone at the acked seq is no excuse.
    entries[2].sender_user = "eve".into();
    assert_eq!(history.check(&[log(entries)]).acked_lost.len(), 1);
}

/// An overload run records a hundred thousand sends and more (tests/overload.rs with
/// `HERALD_OVERLOAD_SECS=10`: about 156 000), and other runs record retries: recording and
/// checking must cost time in proportion to the history. A scan of every earlier record per
/// record kept that check running for many minutes after the broker had stopped, which looked
/// like a hang.
#[test]
fn a_large_history_is_recorded_and_checked_in_time_proportional_to_it() {
    const SENDS: u64 = 200_000;
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let id = |n: u64| format!("a-{n}");
        let sent: Vec<Entry> = (0..SENDS).map(|n| message(n + 2, "ann", &id(n), "x")).collect();
        let entries: Vec<Entry> = std::iter::once(created()).chain(sent).collect();
        let mut history = History::new();
        history.sent_all((0..SENDS).map(|n| SendRecord::new("ann", CONV, &id(n), "x")));
        history.sent_all((0..SENDS).map(|n| SendRecord::new("ann", CONV, &id(n), "x").acked(n + 2)));
        history.received("cat", entries.clone());
        history.expect("cat", CONV, 0);
        let _ = done.send(history.check(&[log(entries)]));
    });
    let findings = finished.recv_timeout(Duration::from_secs(30)).expect("checking 200 000 sends took over 30 s");
    assert!(findings.is_clean(), "{findings}");
    let counts = findings.counts;
    assert_eq!((counts.sends, counts.acked, counts.deliveries), (SENDS as usize, SENDS as usize, SENDS as usize + 1));
}
