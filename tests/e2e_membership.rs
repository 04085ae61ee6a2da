//! Signed membership changes through a real broker (docs/PROTOCOL.md §19.6): an end-to-end group's
//! chain is appended, carried on events in delivery order, fetched and verified by another member,
//! refused when stale, forged, not permitted or missing, hidden from outsiders, and kept (and
//! verified again) across a restart.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::TestBroker;
use herald_client::{Client, ClientError, EntryKind, ErrorCode, Event, pb};
use herald_protocol::e2e::{IdentityKeyPair, MemberDevice, MembershipAction, MembershipChange, MembershipState};
use herald_protocol::{DeviceId, OrgId, UserId};
use tokio::sync::mpsc::Receiver;

const ORG: &str = "acme";
const WAIT: Duration = Duration::from_secs(5);

/// One member device: its session and the keys it signs membership changes with.
struct Device {
    client: Client,
    user: UserId,
    device: DeviceId,
    keys: IdentityKeyPair,
}

impl Device {
    async fn connect(broker: &TestBroker, user: &str, seed: u8) -> Result<Self> {
        let client = Client::connect(broker.client_config(broker.token(ORG, user))).await?;
        let keys = IdentityKeyPair::from_secret_bytes([seed; 32], [seed.wrapping_add(100); 32]);
        Ok(Self { client, user: UserId::new(user)?, device: DeviceId::new("phone-1")?, keys })
    }

    fn as_member(&self) -> MemberDevice {
        MemberDevice { device: self.device.clone(), identity: *self.keys.public() }
    }

    /// The change this device signs next after `state` (the genesis when `state` is `None`).
    fn sign(
        &self,
        conversation: u64,
        state: Option<&MembershipState>,
        action: MembershipAction,
        subject: &UserId,
        devices: Vec<MemberDevice>,
    ) -> Result<Vec<u8>> {
        self.sign_as(&self.device, conversation, state, action, subject, devices)
    }

    /// As [`Self::sign`], claiming to be `actor_device`.
    fn sign_as(
        &self,
        actor_device: &DeviceId,
        conversation: u64,
        state: Option<&MembershipState>,
        action: MembershipAction,
        subject: &UserId,
        devices: Vec<MemberDevice>,
    ) -> Result<Vec<u8>> {
        let (seq, prev_hash, epoch) = match state {
            Some(s) => (s.next_seq(), s.head_hash(), s.epoch() + u64::from(action == MembershipAction::Remove)),
            None => (0, [0; 32], 0),
        };
        let change = MembershipChange {
            org: OrgId::new(ORG)?,
            conversation,
            seq,
            prev_hash,
            epoch,
            action,
            actor: self.user.clone(),
            actor_device: actor_device.clone(),
            subject: subject.clone(),
            devices,
        };
        Ok(change.sign(&self.keys)?)
    }
}

/// The whole stored chain, page by page.
async fn fetch_chain(client: &Client, conversation: u64) -> Result<Vec<Vec<u8>>> {
    let mut chain = Vec::new();
    loop {
        let page = client.membership_chain(conversation, chain.len() as u64, 2).await?;
        let done = page.signed_changes.is_empty()
            || chain.len() as u64 + page.signed_changes.len() as u64 >= page.chain_length;
        chain.extend(page.signed_changes);
        if done {
            return Ok(chain);
        }
    }
}

fn verify(chain: &[Vec<u8>]) -> Result<MembershipState> {
    Ok(MembershipState::from_chain(chain.iter().map(Vec::as_slice))?)
}

/// Signed changes carried by membership events, in delivery order, until `count` arrived.
async fn carried_changes(events: &mut Receiver<Event>, count: usize) -> Result<Vec<Vec<u8>>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut changes = Vec::new();
    while changes.len() < count {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("only {} of {count} signed changes arrived within {WAIT:?}", changes.len()),
            Ok(None) => bail!("event stream ended"),
            Ok(Some(Event::Delivery(entry))) => {
                if let EntryKind::Membership(event) = entry.kind {
                    changes.extend(event.signed_changes);
                }
            }
            Ok(Some(_)) => {}
        }
    }
    Ok(changes)
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Result<ErrorCode> {
    match result {
        Ok(value) => bail!("expected a refusal, got {value:?}"),
        Err(e) => e.code().with_context(|| format!("no error code in {e}")),
    }
}

fn message<T: std::fmt::Debug>(result: Result<T, ClientError>) -> String {
    match result {
        Ok(value) => format!("unexpectedly {value:?}"),
        Err(e) => e.to_string(),
    }
}

async fn conversation(client: &Client, id: u64) -> Result<pb::Conversation> {
    let all = client.list_conversations(0, 100).await?;
    all.into_iter().find(|c| c.conversation_id == id).context("listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_membership_is_ordered_stored_carried_and_served() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = Device::connect(&broker, "alice", 1).await?;
    let bob = Device::connect(&broker, "bob", 2).await?;
    let carol = Device::connect(&broker, "carol", 3).await?;
    let mallory = Device::connect(&broker, "mallory", 4).await?;
    let mut bob_events = bob.client.events().context("events")?;

    let group = alice.client.create_group_with("Secure", &["bob"], true).await?;
    let id = group.conversation_id;
    ensure!(group.end_to_end && group.membership_chain_length == 0, "end-to-end from birth: {group:?}");

    // Alice writes the genesis and bob's ADD in one append.
    let genesis = alice.sign(id, None, MembershipAction::Create, &alice.user, vec![alice.as_member()])?;
    let mut state = MembershipState::genesis(&genesis)?;
    let add_bob = alice.sign(id, Some(&state), MembershipAction::Add, &bob.user, vec![bob.as_member()])?;
    state.apply(&add_bob)?;
    alice.client.append_membership(id, vec![genesis.clone(), add_bob.clone()]).await?;

    // Bob fetches the chain and verifies it himself.
    let fetched = fetch_chain(&bob.client, id).await?;
    ensure!(fetched == [genesis.clone(), add_bob.clone()], "the chain as signed");
    let verified = verify(&fetched)?;
    ensure!(verified.member(&bob.user).is_some() && verified.head_hash() == state.head_hash(), "bob is in it");

    // Adding carol takes her signed ADD, carried on the members_added event.
    let add_carol = alice.sign(id, Some(&state), MembershipAction::Add, &carol.user, vec![carol.as_member()])?;
    let refused = alice.client.update_members(id, &["carol"], &[]).await;
    ensure!(code(refused)? == ErrorCode::INVALID_ARGUMENT, "an end-to-end UPDATE_MEMBERS without changes");
    alice.client.update_members_signed(id, &["carol"], &[], vec![add_carol.clone()]).await?;
    state.apply(&add_carol)?;
    let carried = carried_changes(&mut bob_events, 3).await?;
    ensure!(
        carried == [genesis.clone(), add_bob.clone(), add_carol.clone()],
        "events carry the chain in delivery order"
    );
    verify(&carried)?;
    let listed = conversation(&bob.client, id).await?;
    ensure!(listed.end_to_end && listed.membership_chain_length == 3, "{listed:?}");

    // Refusals: a stale seq, a change signed as another device, outsiders.
    let stale =
        alice.sign(id, Some(&MembershipState::genesis(&genesis)?), MembershipAction::Add, &carol.user, vec![])?;
    let stale = alice.client.append_membership(id, vec![stale]).await;
    let stale_message = message(alice.client.append_membership(id, vec![add_carol.clone()]).await);
    ensure!(code(stale)? == ErrorCode::CONFLICT, "a stale seq conflicts");
    ensure!(stale_message.contains("has 3 changes"), "the conflict names the chain's length: {stale_message}");
    let tablet = DeviceId::new("tablet-1")?;
    let forged = alice.sign_as(&tablet, id, Some(&state), MembershipAction::Add, &alice.user, vec![])?;
    ensure!(
        code(alice.client.append_membership(id, vec![forged]).await)? == ErrorCode::FORBIDDEN,
        "signed as another device"
    );
    let outsider = mallory.client.membership_chain(id, 0, 0).await;
    let unknown = mallory.client.membership_chain(id ^ 1, 0, 0).await;
    let (outsider_message, unknown_message) = (
        message(mallory.client.membership_chain(id, 0, 0).await),
        message(mallory.client.membership_chain(id ^ 1, 0, 0).await),
    );
    ensure!(code(outsider)? == ErrorCode::NOT_FOUND && code(unknown)? == ErrorCode::NOT_FOUND, "outsiders see nothing");
    ensure!(
        outsider_message == unknown_message,
        "a foreign chain looks like none: {outsider_message} / {unknown_message}"
    );
    ensure!(fetch_chain(&bob.client, id).await?.len() == 3, "refusals stored nothing");

    // A restart keeps the chain, and it continues where it stopped.
    for device in [alice, bob, carol, mallory] {
        device.client.close().await;
    }
    let (dir, config) = broker.stop().await?;
    let broker = TestBroker::start_in(dir, config).await?;
    let carol = Device::connect(&broker, "carol", 3).await?;
    let bob = Device::connect(&broker, "bob", 2).await?;
    let after = fetch_chain(&bob.client, id).await?;
    ensure!(after == [genesis, add_bob, add_carol], "the chain survives a restart");
    ensure!(conversation(&bob.client, id).await?.membership_chain_length == 3, "and its length");
    // The restarted broker replays the stored chain to check new changes as clients will: a
    // plain member's properly signed removal of another member would stall everyone's chain.
    let overreach = bob.sign(id, Some(&state), MembershipAction::Remove, &carol.user, vec![])?;
    let refused = bob.client.append_membership(id, vec![overreach]).await;
    ensure!(code(refused)? == ErrorCode::FORBIDDEN, "a change the chain's rules forbid is refused");
    let leave = carol.sign(id, Some(&state), MembershipAction::Remove, &carol.user, vec![])?;
    carol.client.leave_signed(id, vec![leave]).await?;
    let last = verify(&fetch_chain(&bob.client, id).await?)?;
    ensure!(
        last.member(&carol.user).is_none() && last.epoch() == 1,
        "carol's signed leave is the chain's fourth change"
    );
    Ok(())
}
