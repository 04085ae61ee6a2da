//! The messaging core end to end: real broker, real QUIC, real RocksDB.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{ORG, TestBroker};
use herald_client::{Client, Entry, EntryKind, Event};
use herald_protocol::ErrorCode;
use tokio::sync::mpsc;

async fn next_entry(events: &mut mpsc::Receiver<Event>) -> Result<Entry> {
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
        Some(Event::Delivery(entry)) => Ok(entry),
        other => bail!("expected a delivery, got {other:?}"),
    }
}

fn payload_of(entry: &Entry) -> Option<&[u8]> {
    match &entry.kind {
        EntryKind::Message { payload, .. } => Some(payload),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_are_ordered_acknowledged_and_delivered_to_every_device() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let bob_phone = broker.client("bob").await?;
    let bob_laptop = Client::connect(broker.client_config(broker.token(ORG, "bob")).with_device_id("laptop")).await?;
    let mut alice_events = alice.events().context("events")?;
    let mut phone_events = bob_phone.events().context("events")?;
    let mut laptop_events = bob_laptop.events().context("events")?;

    let group = alice.create_group("ops", &["bob", "carol"]).await?;
    assert_eq!((group.member_count, group.last_seq), (3, 1));
    for events in [&mut alice_events, &mut phone_events, &mut laptop_events] {
        let created = next_entry(events).await?;
        assert_eq!(created.seq, 1);
        assert!(matches!(created.kind, EntryKind::Membership(_)));
    }
    for i in 0..20u8 {
        let ack = alice.send(group.conversation_id, vec![i]).await?;
        assert_eq!(ack.seq, u64::from(i) + 2);
        assert!(!ack.duplicate);
    }
    for events in [&mut alice_events, &mut phone_events, &mut laptop_events] {
        for i in 0..20u8 {
            let entry = next_entry(events).await?;
            assert_eq!((entry.seq, payload_of(&entry)), (u64::from(i) + 2, Some(&[i][..])));
            assert_eq!(entry.sender_user, "alice");
        }
    }
    // Carol was offline; she catches up exactly from the log.
    let carol = broker.client("carol").await?;
    let sync = carol.sync(&[]).await?;
    assert_eq!(sync.changed.len(), 1);
    assert_eq!(sync.changed[0].last_seq, 21);
    let entries = carol.catch_up(group.conversation_id, 0).await?;
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>());
    let synced = carol.sync(&[(group.conversation_id, 21)]).await?;
    assert!(synced.changed.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_gets_its_original_seq_and_a_reused_id_with_new_payload_conflicts() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let mut bob_events = bob.events().context("events")?;
    let direct = alice.open_direct("bob").await?;
    assert_eq!(bob.open_direct("alice").await?.conversation_id, direct.conversation_id, "one per pair");
    next_entry(&mut bob_events).await?; // created

    let first = alice.send_with_id(direct.conversation_id, "m-1", &b"hi"[..]).await?;
    let retry = alice.send_with_id(direct.conversation_id, "m-1", &b"hi"[..]).await?;
    assert_eq!((retry.seq, retry.duplicate), (first.seq, true));
    let err = alice.send_with_id(direct.conversation_id, "m-1", &b"other"[..]).await.expect_err("conflict");
    assert_eq!(err.code(), Some(ErrorCode::CONFLICT));
    alice.send_with_id(direct.conversation_id, "m-2", &b"next"[..]).await?;
    assert_eq!(next_entry(&mut bob_events).await?.seq, first.seq);
    assert_eq!(next_entry(&mut bob_events).await?.seq, first.seq + 1, "the retry delivered nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_and_other_orgs_learn_nothing_and_bad_requests_fail_alone() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let group = alice.create_group("private", &["bob"]).await?;
    let id = group.conversation_id;

    let mallory = broker.client("mallory").await?;
    let stranger = Client::connect(broker.client_config(broker.token("globex", "alice"))).await?;
    for outsider in [&mallory, &stranger] {
        for err in [
            outsider.send(id, &b"x"[..]).await.expect_err("not a member"),
            outsider.history(id, 0, false, 10).await.expect_err("not a member"),
            outsider.list_members(id, "", 10).await.expect_err("not a member"),
            outsider.update_members(id, &["mallory"], &[]).await.expect_err("not a member"),
        ] {
            assert_eq!(err.code(), Some(ErrorCode::NOT_FOUND), "{err}");
        }
        assert!(outsider.list_conversations(0, 100).await?.is_empty());
        let sync = outsider.sync(&[(id, 0)]).await?;
        assert_eq!((sync.changed.len(), sync.left.as_slice()), (0, &[id][..]));
    }
    // Same error for a conversation that does not exist at all.
    let err = mallory.send(id ^ 1, &b"x"[..]).await.expect_err("no such conversation");
    assert_eq!(err.code(), Some(ErrorCode::NOT_FOUND));

    let bob = broker.client("bob").await?;
    let err = bob.update_members(id, &["mallory"], &[]).await.expect_err("plain member");
    assert_eq!(err.code(), Some(ErrorCode::FORBIDDEN));
    let too_big = vec![0u8; broker.config.limits.max_payload_bytes as usize + 1];
    let err = alice.send(id, too_big).await.expect_err("payload limit");
    assert_eq!(err.code(), Some(ErrorCode::PAYLOAD_TOO_LARGE));
    // Nothing stored was touched, and the session goes on.
    let page = alice.history(id, 0, false, 100).await?;
    assert_eq!(page.last_seq, 1);
    alice.send(id, &b"still here"[..]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_limit_is_enforced_and_membership_changes_are_sequenced() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.limits.max_group_members = 5).await?;
    let alice = broker.client("alice").await?;
    let err = alice.create_group("big", &["a", "b", "c", "d", "e"]).await.expect_err("6 > 5");
    assert_eq!(err.code(), Some(ErrorCode::LIMIT_EXCEEDED));
    let group = alice.create_group("team", &["bob", "carol"]).await?;
    let id = group.conversation_id;
    assert_eq!(alice.update_members(id, &["dave", "erin"], &[]).await?, 2);
    let err = alice.update_members(id, &["frank"], &[]).await.expect_err("6 > 5");
    assert_eq!(err.code(), Some(ErrorCode::LIMIT_EXCEEDED));
    assert_eq!(alice.update_members(id, &[], &["dave"]).await?, 3);
    assert_eq!(alice.rename(id, "team-2").await?, 4);
    assert_eq!(alice.set_role(id, "bob", herald_client::Role::Owner).await?, 5);
    let err = alice.set_role(id, "carol", herald_client::Role::Admin).await.expect_err("no longer owner");
    assert_eq!(err.code(), Some(ErrorCode::FORBIDDEN));
    assert_eq!(alice.leave(id).await?, 6);
    let members = broker.client("bob").await?.list_members(id, "", 100).await?;
    let names: Vec<&str> = members.members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(names, ["bob", "carol", "erin"]);
    let err = alice.send(id, &b"gone"[..]).await.expect_err("left");
    assert_eq!(err.code(), Some(ErrorCode::NOT_FOUND));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_restart() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let group = alice.create_group("durable", &["bob"]).await?;
    for i in 0..10u8 {
        alice.send_with_id(group.conversation_id, &format!("m{i}"), vec![i]).await?;
    }
    let (dir, config) = broker.stop().await?;
    let broker = TestBroker::start_in(dir, config).await?;
    let bob = broker.client("bob").await?;
    let entries = bob.catch_up(group.conversation_id, 0).await?;
    assert_eq!(entries.len(), 11);
    // A retry after the restart is still recognised.
    let alice = broker.client("alice").await?;
    let retry = alice.send_with_id(group.conversation_id, "m3", vec![3]).await?;
    assert_eq!((retry.seq, retry.duplicate), (5, true));
    assert_eq!(alice.send(group.conversation_id, &b"new"[..]).await?.seq, 12);
    Ok(())
}
