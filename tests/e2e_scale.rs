//! End-to-end encryption for a 5000-member group through a real broker. Alice's client is the
//! SDK with a key store (transparent encryption); the other 4999 member devices are in-process
//! engines, each publishing its keys and fetching its envelope over a session of its own.
//!
//! - Every member device publishes a signed key bundle; `create_group` signs a membership chain
//!   of 5000 changes, which the broker stores and serves and each engine verifies.
//! - Alice's first message seals her sender key in 4999 envelopes: every member device finds
//!   its envelope in its mailbox, opens it and decrypts the message.
//! - After a member is removed, the next message is sealed to a new epoch: the removed device
//!   cannot read it, the others can.
//! - A member added after that reads what is sent from then on, and nothing sent before.
//!
//! `HERALD_E2E_MEMBERS` sets the group size (default 5000, the broker's default limit).

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use common::{ORG, TestBroker};
use herald_client::e2e::{DecryptOutcome, E2eEngine, MemoryKeyStore, VerifiedMembership};
use herald_client::{Client, Endpoint, EntryKind};
use herald_protocol::e2e::DeviceAddress;
use herald_protocol::{DeviceId, OrgId, UserId};

/// Sessions opened at once.
const WAVE: usize = 64;

fn members() -> usize {
    std::env::var("HERALD_E2E_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000)
}

fn address(user: &str) -> Result<DeviceAddress> {
    Ok(DeviceAddress::new(OrgId::new(ORG)?, UserId::new(user)?, DeviceId::new("phone-1")?))
}

/// A deterministic byte source per member: distinct keys, cheaply.
fn rng(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move |buf: &mut [u8]| {
        for byte in buf {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            *byte = (state >> 33) as u8;
        }
    }
}

/// Runs `job` for every item, `wave` at a time, and collects the results in order.
async fn run_in_waves<T, R, F, Fut>(items: Vec<T>, wave: usize, job: F) -> Result<Vec<R>>
where
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    let mut results = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let tasks: Vec<_> = items.by_ref().take(wave).map(|item| tokio::spawn(job(item))).collect();
        for task in tasks {
            results.push(task.await??);
        }
    }
    Ok(results)
}

struct Member {
    name: String,
    engine: E2eEngine,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5000_member_group_gets_one_senders_key_and_membership_decides_who_reads() -> Result<()> {
    let size = members();
    let broker = TestBroker::start_with(|c| {
        c.rate_limits.enabled = false;
        c.limits.max_connections_per_ip = 10_000;
    })
    .await?;
    let endpoint = Endpoint::for_server(broker.addr())?;
    let session = {
        let broker = &broker;
        let endpoint = endpoint.clone();
        move |user: &str| {
            let config = broker.client_config(broker.token(ORG, user)).with_endpoint(endpoint.clone());
            Client::connect(config)
        }
    };

    // Every member device publishes its keys over a session of its own.
    let started = Instant::now();
    let names: Vec<String> = (1..size).map(|n| format!("m{n:05}")).collect();
    let mut members = Vec::with_capacity(names.len());
    for (n, name) in names.iter().enumerate() {
        let engine = E2eEngine::generate(address(name)?, &mut rng(n as u64));
        members.push(Member { name: name.clone(), engine });
    }
    let bundles: Vec<(String, Vec<u8>)> =
        members.iter().map(|m| Ok((m.name.clone(), m.engine.key_bundle()?))).collect::<Result<_>>()?;
    let connect = |(name, bundle): (String, Vec<u8>)| {
        let client = session(&name);
        async move {
            let client = client.await?;
            client.publish_keys(bundle).await?;
            client.close().await;
            Ok(())
        }
    };
    run_in_waves(bundles, WAVE, connect).await?;
    eprintln!("{} devices published keys in {:?}", size - 1, started.elapsed());

    // Alice's SDK signs the 5000-change membership; her first message seals 4999 envelopes.
    let alice_config =
        broker.client_config(broker.token(ORG, "alice")).with_end_to_end(Arc::new(MemoryKeyStore::new()));
    let alice = Client::connect(alice_config).await?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let started = Instant::now();
    let group = alice.create_group("everyone", &refs).await?;
    let conv = group.conversation_id;
    eprintln!("signed and stored a membership of {size} in {:?}", started.elapsed());
    let started = Instant::now();
    let hello = alice.send(conv, "hello, all five thousand").await?;
    eprintln!("encrypted and sealed to {} devices in {:?}", size - 1, started.elapsed());

    // Each engine verifies the chain the broker serves (verified once here, adopted by all).
    let chain = fetch_chain(&alice, conv).await?;
    ensure!(chain.len() == size, "one change per member: {} for {size}", chain.len());
    let verified = VerifiedMembership::from_chain(chain.iter().map(Vec::as_slice))?;
    for member in &mut members {
        member.engine.adopt_membership(conv, verified.clone())?;
    }

    // Every member device opens its envelope and reads the message.
    let started = Instant::now();
    let ciphertext = payload_at(&alice, conv, hello.seq).await?;
    let alice_address = address("alice")?;
    let read = |member: Member| {
        let client = session(&member.name);
        let (ciphertext, from) = (ciphertext.clone(), alice_address.clone());
        async move { read_one(client.await?, member, conv, hello.seq, &ciphertext, &from).await }
    };
    let (members, plaintexts): (Vec<Member>, Vec<Vec<u8>>) =
        run_in_waves(members, WAVE, read).await?.into_iter().unzip();
    ensure!(plaintexts.iter().all(|p| p == b"hello, all five thousand"), "every member device decrypts");
    eprintln!("{} devices opened their envelope and decrypted in {:?}", members.len(), started.elapsed());

    removal_and_late_join(&broker, &alice, conv, members, hello.seq).await?;
    alice.close().await;
    Ok(())
}

/// Removes the first member, checks it cannot read the next message while others can, then
/// adds a new member who reads from then on only.
async fn removal_and_late_join(
    broker: &TestBroker,
    alice: &Client,
    conv: u64,
    mut members: Vec<Member>,
    hello_seq: u64,
) -> Result<()> {
    let removed = members.remove(0);
    alice.update_members(conv, &[], &[removed.name.as_str()]).await?;
    let after = alice.send(conv, "after the removal").await?;
    let sealed = payload_at(alice, conv, after.seq).await?;
    let alice_address = address("alice")?;
    let mut removed_engine = removed.engine;
    let chain = fetch_chain(alice, conv).await?;
    removed_engine.apply_membership_batch(conv, chain.iter().map(Vec::as_slice));
    let outcome = removed_engine.decrypt(conv, after.seq, &alice_address, &sealed, 0);
    ensure!(!matches!(outcome, DecryptOutcome::Plaintext(_)), "the removed device reads nothing: {outcome:?}");

    // A sample of the remaining members reads it (all of them did the first message).
    for member in members.into_iter().step_by(997) {
        let mut member = member;
        member.engine.apply_membership_batch(conv, chain.iter().map(Vec::as_slice));
        let client = Client::connect(broker.client_config(broker.token(ORG, &member.name))).await?;
        let plaintext = open_and_decrypt(&client, &mut member.engine, conv, after.seq, &sealed, &alice_address).await?;
        ensure!(plaintext == b"after the removal", "{} reads the new epoch", member.name);
        client.close().await;
    }

    // A late joiner reads from its join on, not before.
    let mut late = E2eEngine::generate(address("late")?, &mut rng(999_999));
    let late_client = Client::connect(broker.client_config(broker.token(ORG, "late"))).await?;
    late_client.publish_keys(late.key_bundle()?).await?;
    alice.update_members(conv, &["late"], &[]).await?;
    let welcome = alice.send(conv, "welcome, late").await?;
    let chain = fetch_chain(alice, conv).await?;
    late.adopt_membership(conv, VerifiedMembership::from_chain(chain.iter().map(Vec::as_slice))?)?;
    let sealed = payload_at(alice, conv, welcome.seq).await?;
    let plaintext = open_and_decrypt(&late_client, &mut late, conv, welcome.seq, &sealed, &alice_address).await?;
    ensure!(plaintext == b"welcome, late");
    let before = payload_at(alice, conv, hello_seq).await?;
    let outcome = late.decrypt(conv, hello_seq, &alice_address, &before, 0);
    ensure!(!matches!(outcome, DecryptOutcome::Plaintext(_)), "the late joiner reads nothing earlier: {outcome:?}");
    late_client.close().await;
    Ok(())
}

async fn read_one(
    client: Client,
    mut member: Member,
    conv: u64,
    seq: u64,
    ciphertext: &[u8],
    from: &DeviceAddress,
) -> Result<(Member, Vec<u8>)> {
    let plaintext = open_and_decrypt(&client, &mut member.engine, conv, seq, ciphertext, from).await;
    client.close().await;
    let plaintext = plaintext.with_context(|| member.name.clone())?;
    Ok((member, plaintext))
}

/// Opens the envelopes in the device's mailbox and decrypts the message at `seq` with them.
async fn open_and_decrypt(
    client: &Client,
    engine: &mut E2eEngine,
    conv: u64,
    seq: u64,
    ciphertext: &[u8],
    from: &DeviceAddress,
) -> Result<Vec<u8>> {
    let page = client.fetch_envelopes(0, 1000).await?;
    ensure!(!page.envelopes.is_empty(), "an envelope in the mailbox");
    for envelope in &page.envelopes {
        engine.open_envelope(from, &envelope.envelope)?;
    }
    client.ack_envelopes(page.envelopes.iter().map(|e| e.envelope_id).collect()).await?;
    match engine.decrypt(conv, seq, from, ciphertext, 0) {
        DecryptOutcome::Plaintext(p) => Ok(p),
        other => bail!("cannot decrypt: {other:?}"),
    }
}

async fn fetch_chain(client: &Client, conv: u64) -> Result<Vec<Vec<u8>>> {
    let mut changes = Vec::new();
    loop {
        let page = client.membership_chain(conv, changes.len() as u64, 1000).await?;
        let done = page.signed_changes.is_empty();
        changes.extend(page.signed_changes);
        if done || changes.len() as u64 >= page.chain_length {
            return Ok(changes);
        }
    }
}

async fn payload_at(client: &Client, conv: u64, seq: u64) -> Result<Vec<u8>> {
    let page = client.history(conv, seq, false, 1).await?;
    match page.entries.first().map(|e| &e.kind) {
        Some(EntryKind::Message { payload, .. }) => Ok(payload.to_vec()),
        other => bail!("no message at {seq}: {other:?}"),
    }
}
