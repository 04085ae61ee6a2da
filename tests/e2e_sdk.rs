//! Transparent end-to-end encryption through the SDK and a real broker: clients configured
//! with a key store publish their keys on connect, `create_group` signs the group's membership,
//! `send` encrypts and the event stream decrypts; a removed member's engine cannot read what
//! is sent after its removal; a member added later cannot read what came before; an offline
//! member catches up from its mailbox and the log; a plaintext injected by a client without
//! encryption is reported as undecryptable rather than shown or dropped; and no plaintext ever
//! reaches the broker's disk.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use common::{ORG, TestBroker, files_containing, next_event};
use herald_client::e2e::{DecryptOutcome, E2eEngine, KeyStore, MemoryKeyStore};
use herald_client::{Client, E2eWarning, EntryKind, Event, MemoryCursors};
use herald_protocol::e2e::DeviceAddress;
use herald_protocol::{DeviceId, OrgId, UserId};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

/// One end-to-end device: its client, its events, and the key store that outlives the client.
struct Device {
    client: Client,
    events: Receiver<Event>,
    store: Arc<MemoryKeyStore>,
    cursors: Arc<MemoryCursors>,
    user: &'static str,
}

impl Device {
    async fn connect(broker: &TestBroker, user: &'static str) -> Result<Self> {
        Self::reconnect(broker, user, Arc::new(MemoryKeyStore::new()), Arc::new(MemoryCursors::default())).await
    }

    async fn reconnect(
        broker: &TestBroker,
        user: &'static str,
        store: Arc<MemoryKeyStore>,
        cursors: Arc<MemoryCursors>,
    ) -> Result<Self> {
        let config = broker
            .client_config(broker.token(ORG, user))
            .with_end_to_end(store.clone())
            .with_cursor_store(cursors.clone());
        let client = Client::connect(config).await.with_context(|| format!("{user} connects"))?;
        let events = client.events().context("events")?;
        Ok(Self { client, events, store, cursors, user })
    }

    /// The next message another device sent in `conversation`, as (plaintext, end_to_end).
    async fn next_message(&mut self, conversation: u64) -> Result<(String, bool)> {
        let user = self.user;
        let own = |sender_user: &str, sender_device: &str| sender_user == user && sender_device == "phone-1";
        next_event(WAIT, &mut self.events, |event| match event {
            Event::Delivery(entry)
                if entry.conversation_id == conversation && !own(&entry.sender_user, &entry.sender_device) =>
            {
                match entry.kind {
                    EntryKind::Message { payload, .. } => {
                        Some((String::from_utf8_lossy(&payload).into_owned(), entry.end_to_end))
                    }
                    _ => None,
                }
            }
            Event::Undecryptable { entry, reason } if entry.conversation_id == conversation => {
                Some((format!("UNDECRYPTABLE: {reason}"), false))
            }
            _ => None,
        })
        .await
        .with_context(|| format!("{user} waits for a message"))
    }

    /// This device's engine as its store keeps it: for checking what the device could read.
    fn engine(&self) -> Result<E2eEngine> {
        let address = DeviceAddress::new(OrgId::new(ORG)?, UserId::new(self.user)?, DeviceId::new("phone-1")?);
        Ok(E2eEngine::load_from(address, self.store.as_ref() as &dyn KeyStore, &mut |b: &mut [u8]| b.fill(7))?)
    }
}

/// Fails unless the next message another device sent in `conversation` reads `text`, decrypted.
async fn expect_message(device: &mut Device, conversation: u64, text: &str) -> Result<()> {
    let got = device.next_message(conversation).await?;
    ensure!(got == (text.to_owned(), true), "{} expected {text:?} end-to-end, got {got:?}", device.user);
    Ok(())
}

/// The ciphertext of the message at `seq`, as the broker stores it.
async fn stored_payload(client: &Client, conversation: u64, seq: u64) -> Result<Vec<u8>> {
    let page = client.history(conversation, seq, false, 1).await?;
    match page.entries.first().map(|e| &e.kind) {
        Some(EntryKind::Message { payload, .. }) => Ok(payload.to_vec()),
        other => bail!("no message at {seq}: {other:?}"),
    }
}

fn sender(user: &str) -> Result<DeviceAddress> {
    Ok(DeviceAddress::new(OrgId::new(ORG)?, UserId::new(user)?, DeviceId::new("phone-1")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_encrypts_and_decrypts_transparently_and_membership_decides_who_can_read() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut alice = Device::connect(&broker, "alice").await?;
    let mut bob = Device::connect(&broker, "bob").await?;
    let mut carol = Device::connect(&broker, "carol").await?;
    let dave = Device::connect(&broker, "dave").await?;
    let dave_store = dave.store.clone();
    dave.client.close().await;

    let group = alice.client.create_group("launch", &["bob", "carol"]).await?;
    let conv = group.conversation_id;
    let chain = alice.client.membership_chain(conv, 0, 100).await?;
    ensure!(chain.chain_length == 3, "genesis and two ADDs, got {}", chain.chain_length);

    // Sent as plaintext by the app, stored as ciphertext, read as plaintext by members.
    let first = alice.client.send(conv, "the launch is on friday").await?;
    expect_message(&mut bob, conv, "the launch is on friday").await?;
    expect_message(&mut carol, conv, "the launch is on friday").await?;
    let stored = stored_payload(&bob.client, conv, first.seq).await?;
    ensure!(!stored.windows(6).any(|w| w == b"launch"), "the broker stores ciphertext");

    // Carol goes offline. Bob's first message seals his sender key to her mailbox; she opens it
    // when she is back, then reads what she missed from the log, in order.
    let (carol_store, carol_cursors) = (carol.store.clone(), carol.cursors.clone());
    carol.client.close().await;
    bob.client.send(conv, "noted").await?;
    expect_message(&mut alice, conv, "noted").await?;
    alice.client.send(conv, "while you were away").await?;
    expect_message(&mut bob, conv, "while you were away").await?;
    let mut carol = Device::reconnect(&broker, "carol", carol_store, carol_cursors).await?;
    let carol_saw = [carol.next_message(conv).await?, carol.next_message(conv).await?];
    ensure!(
        carol_saw == [("noted".into(), true), ("while you were away".into(), true)],
        "carol catches up in order: {carol_saw:?}"
    );

    // Carol is removed: the next message is sealed to a new epoch she never receives a key for.
    alice.client.update_members(conv, &[], &["carol"]).await?;
    let after_removal = alice.client.send(conv, "carol must not read this").await?;
    expect_message(&mut bob, conv, "carol must not read this").await?;
    let sealed = stored_payload(&bob.client, conv, after_removal.seq).await?;
    carol.client.close().await;
    let mut carol_engine = carol.engine()?;
    let outcome = carol_engine.decrypt(conv, after_removal.seq, &sender("alice")?, &sealed, 0);
    ensure!(!matches!(outcome, DecryptOutcome::Plaintext(_)), "carol reads nothing after removal: {outcome:?}");

    // Dave joins later: he reads what is sent from now on, not what came before.
    alice.client.update_members(conv, &["dave"], &[]).await?;
    let mut dave = Device::reconnect(&broker, "dave", dave_store, Arc::new(MemoryCursors::default())).await?;
    alice.client.send(conv, "welcome dave").await?;
    expect_message(&mut dave, conv, "welcome dave").await?;
    let before = stored_payload(&dave.client, conv, first.seq).await?;
    let mut dave_engine = dave.engine()?;
    let outcome = dave_engine.decrypt(conv, first.seq, &sender("alice")?, &before, 0);
    ensure!(!matches!(outcome, DecryptOutcome::Plaintext(_)), "dave reads nothing from before: {outcome:?}");

    // Alice's new tablet reads nothing until her phone links it, once she has confirmed it.
    let tablet_config = broker
        .client_config(broker.token(ORG, "alice"))
        .with_device_id("tablet")
        .with_end_to_end(Arc::new(MemoryKeyStore::new()));
    let tablet = Client::connect(tablet_config).await?;
    let mut tablet_events = tablet.events().context("events")?;
    let noticed = next_event(WAIT, &mut alice.events, |event| match event {
        Event::E2eWarning(E2eWarning::NewOwnDevice { device }) => Some(device),
        _ => None,
    })
    .await?;
    ensure!(noticed.device.as_str() == "tablet", "the phone is told of the tablet: {noticed}");
    ensure!(alice.client.link_device("tablet").await? == 1, "linked into the one end-to-end group");
    // Bob seals to the devices his copy of the chain lists: he must have the link (from the log)
    // before his next message can reach the tablet. A message sent before is not for it.
    let linked_at = alice.client.history(conv, 0, true, 1).await?.last_seq;
    next_event(WAIT, &mut bob.events, |event| match event {
        Event::Delivery(entry) if entry.conversation_id == conv && entry.seq >= linked_at => Some(()),
        _ => None,
    })
    .await
    .context("bob learns of the link")?;
    bob.client.send(conv, "hello, tablet").await?;
    let on_tablet = next_event(WAIT, &mut tablet_events, |event| match event {
        Event::Delivery(entry) if entry.conversation_id == conv => match entry.kind {
            EntryKind::Message { payload, .. } => Some((payload, entry.end_to_end)),
            _ => None,
        },
        _ => None,
    })
    .await?;
    ensure!(on_tablet == (Bytes::from_static(b"hello, tablet"), true), "the linked tablet decrypts: {on_tablet:?}");
    expect_message(&mut alice, conv, "hello, tablet").await?;
    tablet.close().await;

    // Nobody joins the chain without published keys, and an unsigned change is refused.
    let keyless = alice.client.update_members(conv, &["mallory"], &[]).await;
    ensure!(keyless.is_err(), "mallory has published no keys: {keyless:?}");
    let alice_plain = Client::connect(broker.client_config(broker.token(ORG, "alice")).with_device_id("desk")).await?;
    let unsigned = alice_plain.update_members(conv, &["mallory"], &[]).await;
    ensure!(unsigned.is_err(), "an unsigned membership change is refused in an end-to-end group");
    alice_plain.close().await;

    // A device of bob's without encryption posts plaintext into the group: no member is shown it
    // as a message; it is reported in its place as undecryptable.
    let config = broker.client_config(broker.token(ORG, "bob")).with_device_id("old-tablet");
    let bob_plain = Client::connect(config).await?;
    bob_plain.send(conv, "injected in the clear").await?;
    bob_plain.close().await;
    let injected = alice.next_message(conv).await?.0;
    ensure!(injected.starts_with("UNDECRYPTABLE"), "an injected plaintext is reported: {injected}");

    for device in [alice, bob, dave] {
        device.client.close().await;
    }
    let (dir, _) = broker.stop().await?;
    for secret in ["the launch is on friday", "while you were away", "carol must not read this", "welcome dave"] {
        let leaks = files_containing(dir.path(), secret.as_bytes())?;
        ensure!(leaks.is_empty(), "plaintext {secret:?} found in {leaks:?}");
    }
    let control = files_containing(dir.path(), b"injected in the clear")?;
    ensure!(!control.is_empty(), "the scan finds the plaintext a client without encryption sent");
    Ok(())
}
