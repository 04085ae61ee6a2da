//! Recall that really deletes, and durable timers across a restart: a recalled payload is gone
//! from every file of the store, the recall window binds senders but not owners, and expiries
//! and scheduled sends fire at their time after the broker restarted in between.

mod common;

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use common::{TestBroker, files_containing};
use herald_client::{Client, EntryKind, ErrorCode, Event, RecallReason, SendOptions, SendOutcome};

async fn next_recall_notice(events: &mut tokio::sync::mpsc::Receiver<Event>) -> Result<herald_client::RecallNotice> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
            Some(Event::Recalled(notice)) => return Ok(notice),
            Some(_) => {}
            None => bail!("event stream ended"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_deletes_the_ciphertext_from_the_store_and_tells_members_at_once() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.limits.recall_window = Duration::from_secs(2)).await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let mut bob_events = bob.events().context("events")?;
    let group = alice.create_group("g", &["bob"]).await?;
    let conv = group.conversation_id;
    let secret = b"ciphertext-5f3a9c-must-vanish".to_vec();
    let recalled = bob.send(conv, secret.clone()).await?.seq;
    let late = bob.send(conv, b"a later message".to_vec()).await?.seq;

    let event_seq = bob.recall(conv, recalled).await?;
    let notice = next_recall_notice(&mut bob_events).await?;
    assert_eq!((notice.seq, notice.event_seq, notice.reason), (recalled, event_seq, RecallReason::Recalled));
    let page = alice.history(conv, recalled, false, 10).await?;
    let tombstone = page.entries.first().context("the entry is still there")?;
    assert!(
        matches!(&tombstone.kind, EntryKind::Tombstone { recalled_by: Some(by), event_seq: e, .. } if by == "bob" && *e == event_seq)
    );
    let again = bob.recall(conv, recalled).await.expect_err("recalled twice");
    assert_eq!(again.code(), Some(ErrorCode::ALREADY_RECALLED));

    // Past the window the sender may not; the owner still may.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let closed = bob.recall(conv, late).await.expect_err("window passed");
    assert_eq!(closed.code(), Some(ErrorCode::RECALL_WINDOW_CLOSED));
    alice.recall(conv, late).await?;

    alice.close().await;
    bob.close().await;
    let (dir, _) = broker.stop().await?;
    let holders = files_containing(dir.path(), &secret)?;
    assert!(holders.is_empty(), "the recalled ciphertext is still in {holders:?}");
    Ok(())
}

fn at(delay: Duration) -> SystemTime {
    SystemTime::now() + delay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_and_scheduled_sends_fire_on_time_after_a_restart() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let group = alice.create_group("g", &["bob"]).await?;
    let conv = group.conversation_id;
    let fire_in = Duration::from_secs(3);
    let due = at(fire_in);
    let expiring = alice
        .send_with_options(conv, Some("expiring"), b"gone soon".to_vec(), &SendOptions::new().expire_at(due))
        .await?;
    let SendOutcome::Sequenced(expiring) = expiring else { bail!("sequenced expected") };
    let scheduled = alice
        .send_with_options(conv, Some("scheduled"), b"see you at three".to_vec(), &SendOptions::new().deliver_at(due))
        .await?;
    assert!(matches!(scheduled, SendOutcome::Scheduled(_)));
    alice.close().await;

    let (dir, config) = broker.stop().await?;
    let broker = TestBroker::start_in(dir, config).await?;
    let bob = broker.client("bob").await?;
    let mut events = bob.events().context("events")?;
    let mut delivered_at = None;
    let mut expired_at = None;
    while delivered_at.is_none() || expired_at.is_none() {
        let event = tokio::time::timeout(Duration::from_secs(15), events.recv()).await?.context("stream ended")?;
        match event {
            Event::Delivery(entry) if matches!(&entry.kind, EntryKind::Message { client_msg_id, .. } if client_msg_id == "scheduled") =>
            {
                assert_eq!(entry.sender_user, "alice", "sequenced from its sender, who is offline");
                delivered_at = Some(SystemTime::now());
            }
            Event::Recalled(notice) if notice.seq == expiring.seq => {
                assert_eq!((notice.reason, notice.recalled_by), (RecallReason::Expired, None));
                expired_at = Some(SystemTime::now());
            }
            _ => {}
        }
    }
    for fired in [delivered_at, expired_at].into_iter().flatten() {
        let early = due.duration_since(fired).unwrap_or_default();
        let late = fired.duration_since(due).unwrap_or_default();
        assert!(early < Duration::from_millis(50), "fired {early:?} early");
        assert!(late < Duration::from_secs(2), "fired {late:?} late");
    }

    // Each fired once: one scheduled message, one expiry, in the log.
    let entries = bob.catch_up(conv, 0).await?;
    let scheduled_copies = entries
        .iter()
        .filter(|e| matches!(&e.kind, EntryKind::Message { client_msg_id, .. } if client_msg_id == "scheduled"))
        .count();
    let recalls = entries
        .iter()
        .filter(|e| matches!(&e.kind, EntryKind::Membership(ev) if matches!(ev.kind, Some(herald_client::pb::event::Kind::Recalled(_)))))
        .count();
    assert_eq!((scheduled_copies, recalls), (1, 1));
    let gone = entries.iter().find(|e| e.seq == expiring.seq).context("expired entry")?;
    assert!(matches!(gone.kind, EntryKind::Tombstone { reason: RecallReason::Expired, .. }));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_recalls_and_schedules_are_refused_with_their_codes() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let bob: Client = broker.client("bob").await?;
    let conv = alice.create_group("g", &["bob"]).await?.conversation_id;
    let seq = alice.send(conv, b"x".to_vec()).await?.seq;
    let code = |r: Result<u64, herald_client::ClientError>| r.err().and_then(|e| e.code());
    assert_eq!(code(alice.recall(conv, 99).await), Some(ErrorCode::NOT_FOUND));
    assert_eq!(code(alice.recall(conv, 1).await), Some(ErrorCode::INVALID_ARGUMENT), "seq 1 is the created event");
    assert_eq!(code(bob.recall(conv, seq).await), Some(ErrorCode::FORBIDDEN));
    let past = alice
        .send_with_options(
            conv,
            None,
            b"x".to_vec(),
            &SendOptions::new().deliver_at(SystemTime::now() - Duration::from_secs(5)),
        )
        .await;
    assert_eq!(past.err().and_then(|e| e.code()), Some(ErrorCode::OUT_OF_RANGE));
    let far = alice
        .send_with_options(
            conv,
            None,
            b"x".to_vec(),
            &SendOptions::new().deliver_at(at(Duration::from_secs(400 * 86_400))),
        )
        .await;
    assert_eq!(far.err().and_then(|e| e.code()), Some(ErrorCode::OUT_OF_RANGE));
    let beyond = bob.mark_read(conv, seq + 5).await;
    assert_eq!(beyond.err().and_then(|e| e.code()), Some(ErrorCode::OUT_OF_RANGE));
    bob.mark_read(conv, seq).await?;
    let stale = bob.mark_read(conv, seq - 1).await;
    assert_eq!(stale.err().and_then(|e| e.code()), Some(ErrorCode::STALE_CURSOR));
    Ok(())
}
