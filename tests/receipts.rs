//! Read receipts at 5000 members: 200 members read over real QUIC connections, the other 4799
//! through the broker's shards in-process (the same commands a session would route). Counts are
//! checked exact at every step, the unread list is paged, and the sender gets a handful of
//! coalesced updates instead of one per reader.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{ORG, TestBroker};
use herald_broker::conversation::ConversationId;
use herald_broker::fanout::ReplyTo;
use herald_broker::shard::{Command, Origin, Request};
use herald_client::{Client, Event, ReceiptList};
use herald_protocol::{Body, DeviceId, OrgId, RequestId, SessionId, UserId};

const MEMBERS: usize = 5000;
const ONLINE: usize = 200;

fn name(n: usize) -> String {
    format!("m{n:04}")
}

/// Marks `users` as having read `seq` through the shards, as their sessions would, and waits
/// until every mark is answered.
async fn simulated_reads(broker: &TestBroker, conv: u64, users: &[String], seq: u64) -> Result<()> {
    let (reply, mut answers) = ReplyTo::channel();
    for (n, user) in users.iter().enumerate() {
        let origin = Origin {
            session: SessionId::new(1_000_000 + n as u64),
            org: OrgId::new(ORG)?,
            user: UserId::new(user.as_str())?,
            device: DeviceId::new("sim")?,
            org_admin: false,
            request_id: RequestId::new(1),
            reply: reply.clone(),
        };
        let mut command =
            Command { origin, request: Request::Mark { id: ConversationId::new(conv), delivered: 0, read: seq } };
        // A full shard inbox hands the command back: wait and retry, as a client would.
        while let Err(back) = broker.running().shards().route(command) {
            command = *back;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for _ in users {
        let frame = tokio::time::timeout(Duration::from_secs(30), answers.recv()).await?.context("answers")?;
        let Body::Cursors(cursors) = Body::decode(&frame)? else { bail!("MARK answered {frame:?}") };
        assert_eq!(cursors.read_seq, seq);
    }
    Ok(())
}

async fn read_count(owner: &Client, conv: u64, seq: u64) -> Result<u32> {
    let counts = owner.receipts(conv, seq).await?;
    assert_eq!(counts.members as usize, MEMBERS, "membership when the message was sent");
    Ok(counts.read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5000_member_read_storm_counts_exactly_and_coalesces_updates() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.receipts.window = Duration::from_millis(100)).await?;
    let names: Vec<String> = (0..MEMBERS - 1).map(name).collect();
    let owner = broker.client("owner").await?;
    let mut owner_events = owner.events().context("events")?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("everyone", &refs).await?;
    let conv = group.conversation_id;
    let seq = owner.send(conv, b"all hands at ten".to_vec()).await?.seq;
    assert_eq!(read_count(&owner, conv, seq).await?, 1, "the sender has read its own message");

    let mut tasks = Vec::new();
    for user in names.iter().take(ONLINE) {
        tasks.push(tokio::spawn(Client::connect(broker.client_config(broker.token(ORG, user)))));
    }
    let mut online = Vec::new();
    for task in tasks {
        online.push(task.await??);
    }

    // The simulated members read in steps; after each, the count is exact.
    let simulated = &names[ONLINE..];
    let mut read = 1;
    for chunk in simulated.chunks(600) {
        simulated_reads(&broker, conv, chunk, seq).await?;
        read += chunk.len() as u32;
        assert_eq!(read_count(&owner, conv, seq).await?, read);
    }

    // Exactly the online members are left, in id order, over two pages.
    let first = owner.receipt_list(conv, seq, ReceiptList::Unread, "", 150).await?;
    assert!(first.more);
    let last = first.users.last().context("a full page")?.clone();
    let second = owner.receipt_list(conv, seq, ReceiptList::Unread, &last, 150).await?;
    assert!(!second.more);
    let unread: Vec<String> = first.users.into_iter().chain(second.users).collect();
    assert_eq!(unread, names[..ONLINE].to_vec());
    let outsider = online.first().context("online")?;
    assert!(outsider.receipt_list(conv, seq, ReceiptList::Unread, "", 10).await.is_err(), "members may not list");

    // The online members read over QUIC, in steps of 50.
    for chunk in online.chunks(50) {
        for client in chunk {
            assert_eq!(client.mark_read(conv, seq).await?.read_seq, seq);
        }
        read += chunk.len() as u32;
        assert_eq!(read_count(&owner, conv, seq).await?, read);
    }
    assert_eq!(read as usize, MEMBERS);
    let unread = owner.receipt_list(conv, seq, ReceiptList::Unread, "", 10).await?;
    assert!(unread.users.is_empty());

    // The sender's updates: coalesced, ending at 5000 of 5000.
    let mut updates = 0;
    let mut latest = 0;
    let mut seen = BTreeSet::new();
    while latest < MEMBERS as u32 {
        let event = tokio::time::timeout(Duration::from_secs(10), owner_events.recv()).await?;
        let Some(event) = event else { bail!("event stream ended") };
        if let Event::Receipts(update) = event {
            updates += 1;
            for message in update.messages {
                assert_eq!(message.seq, seq);
                assert!(message.read >= latest, "counts only grow");
                latest = message.read;
                seen.insert(latest);
            }
        }
    }
    println!("{MEMBERS} reads reached the sender as {updates} RECEIPTS updates ({} distinct counts)", seen.len());
    assert!(updates < 100, "{updates} updates for {MEMBERS} reads: not coalesced");
    assert!(updates >= 2, "updates came while the storm went on, not only at the end");
    Ok(())
}
