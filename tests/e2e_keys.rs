//! End-to-end encryption through a real broker: devices publish signed key bundles, a sender
//! distributes its sender key through the recipients' mailboxes (live to an online device,
//! kept for an offline one), messages decrypt on every member device, and afterwards no
//! plaintext is anywhere in the broker's data directory, while a control message sent in the
//! clear is found there (so the scan would have seen a leak).

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{TestBroker, files_containing, next_event};
use herald_client::{Client, EntryKind, ErrorCode, Event, pb};
use herald_protocol::e2e::{
    ChainId, DeviceAddress, DeviceKeyBundle, IdentityKeyPair, PublicIdentity, ReceiverChain, SenderChain,
    SenderKeyDistribution,
};
use herald_protocol::{DeviceId, OrgId, UserId};

const ORG: &str = "acme";
const WAIT: Duration = Duration::from_secs(5);

/// A deterministic byte source: the test needs distinct keys, not secret ones.
fn rng(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut state = seed;
    move |buf: &mut [u8]| {
        for byte in buf {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            *byte = (state >> 33) as u8;
        }
    }
}

/// One device: its session, its keys and its address.
struct Device {
    client: Client,
    keys: IdentityKeyPair,
    address: DeviceAddress,
}

impl Device {
    async fn connect(broker: &TestBroker, user: &str, device: &str, seed: u64) -> Result<Self> {
        let config = broker.client_config(broker.token(ORG, user)).with_device_id(device);
        let client = Client::connect(config).await?;
        let keys = IdentityKeyPair::generate(&mut rng(seed));
        let address = DeviceAddress::new(OrgId::new(ORG)?, UserId::new(user)?, DeviceId::new(device)?);
        Ok(Self { client, keys, address })
    }

    fn bundle(&self, version: u64) -> Result<Vec<u8>> {
        let bundle = DeviceKeyBundle {
            org: self.address.org.clone(),
            user: self.address.user.clone(),
            device: self.address.device.clone(),
            key_version: version,
            identity: *self.keys.public(),
        };
        Ok(bundle.sign(&self.keys)?)
    }

    /// Opens an envelope from `sender` and starts its receiving chain.
    fn receive_chain(&self, envelope: &pb::Envelope, sender: &PublicIdentity) -> Result<ReceiverChain> {
        let distribution = SenderKeyDistribution::open(&self.keys, &self.address, &envelope.envelope, sender)?;
        Ok(ReceiverChain::new(&distribution))
    }
}

fn payload(event: Event) -> Option<Vec<u8>> {
    match event {
        Event::Delivery(entry) => match entry.kind {
            EntryKind::Message { payload, .. } => Some(payload.to_vec()),
            _ => None,
        },
        _ => None,
    }
}

/// Verified bundles of `users`' devices, as a sender looks them up before distributing.
async fn verified_devices(client: &Client, users: &[&str]) -> Result<Vec<(DeviceAddress, PublicIdentity)>> {
    let mut devices = Vec::new();
    for keys in client.query_keys(users).await? {
        let bundle = DeviceKeyBundle::verify(&keys.bundle)?;
        ensure!(bundle.user.as_str() == keys.user_id && bundle.device.as_str() == keys.device_id, "mislabelled");
        devices.push((DeviceAddress::new(bundle.org, bundle.user, bundle.device), bundle.identity));
    }
    Ok(devices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_keys_reach_every_member_device_and_no_plaintext_reaches_the_brokers_disk() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = Device::connect(&broker, "alice", "phone", 1).await?;
    let bob = Device::connect(&broker, "bob", "phone", 2).await?;
    let mut bob_events = bob.client.events().context("events")?;
    let conv = alice.client.create_group("secret plans", &["bob", "carol"]).await?.conversation_id;

    for device in [&alice, &bob] {
        assert!(device.client.publish_keys(device.bundle(1)?).await?.changed);
    }
    // Carol publishes from her laptop, then goes offline; bob, who shares the group, is told.
    let carol = Device::connect(&broker, "carol", "laptop", 3).await?;
    carol.client.publish_keys(carol.bundle(1)?).await?;
    let changed = next_event(WAIT, &mut bob_events, |e| match e {
        Event::KeysChanged(k) if k.user_id == "carol" => Some(k),
        _ => None,
    })
    .await?;
    assert_eq!((changed.user_id.as_str(), changed.device_id.as_str(), changed.version), ("carol", "laptop", 1));
    carol.client.close().await;

    // A device may publish only its own keys.
    let refused = bob.client.publish_keys(alice.bundle(2)?).await.err().context("refused")?;
    assert_eq!(refused.code(), Some(ErrorCode::FORBIDDEN));

    // Alice's sender chain goes to every other member device, sealed for each.
    let chain_id = ChainId {
        org: OrgId::new(ORG)?,
        conversation: conv,
        sender: alice.address.user.clone(),
        sender_device: alice.address.device.clone(),
        epoch: 0,
    };
    let mut chain = SenderChain::generate(chain_id, &mut rng(10));
    let recipients = verified_devices(&alice.client, &["bob", "carol"]).await?;
    assert_eq!(recipients.len(), 2);
    let sealed = chain.distribution(&alice.keys).seal_batch(
        &alice.keys,
        recipients.iter().map(|(a, k)| (a, k)),
        &mut rng(11),
    )?;
    let envelopes = recipients
        .iter()
        .zip(sealed)
        .map(|((address, _), envelope)| {
            Ok(pb::EnvelopeTo {
                user_id: address.user.to_string(),
                device_id: address.device.to_string(),
                envelope: envelope?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    assert_eq!(alice.client.send_envelopes(conv, envelopes).await?, 2);

    let secrets =
        ["falcon-7f3a9c2e-launch-at-dawn", "osprey-41be07d9-budget-is-3.2M", "heron-c98d1f60-merger-with-globex"];
    for secret in secrets {
        alice.client.send(conv, chain.encrypt(&alice.keys, secret.as_bytes())?).await?;
    }
    let control = "control-5e0b2a7d-sent-in-the-clear";
    alice.client.send(conv, control.as_bytes().to_vec()).await?;

    // Bob, online: the envelope comes live; every message decrypts.
    let envelope =
        next_event(WAIT, &mut bob_events, |e| if let Event::Envelope(e) = e { Some(e) } else { None }).await?;
    assert_eq!((envelope.from_user_id.as_str(), envelope.conversation_id), ("alice", conv));
    let mut bob_chain = bob.receive_chain(&envelope, alice.keys.public())?;
    for secret in secrets {
        let ciphertext = next_event(WAIT, &mut bob_events, payload).await?;
        assert_eq!(&bob_chain.decrypt(&ciphertext)?[..], secret.as_bytes());
    }
    assert_eq!(bob.client.ack_envelopes(vec![envelope.envelope_id]).await?, 1);

    // Carol, back online: the envelope waited in her mailbox; the messages are in the log.
    let carol = Device::connect(&broker, "carol", "laptop", 3).await?;
    let page = carol.client.fetch_envelopes(0, 0).await?;
    let [waiting] = page.envelopes.as_slice() else { bail!("one envelope for carol, got {page:?}") };
    let mut carol_chain = carol.receive_chain(waiting, alice.keys.public())?;
    let history = carol.client.history(conv, 0, false, 100).await?;
    let mut decrypted = Vec::new();
    for entry in history.entries {
        if let EntryKind::Message { payload, .. } = entry.kind
            && payload.as_ref() != control.as_bytes()
        {
            decrypted.push(String::from_utf8(carol_chain.decrypt(&payload)?.to_vec())?);
        }
    }
    assert_eq!(decrypted, secrets);
    carol.client.ack_envelopes(vec![waiting.envelope_id]).await?;
    assert!(carol.client.fetch_envelopes(0, 0).await?.envelopes.is_empty(), "acknowledged envelopes leave");

    for device in [alice, bob, carol] {
        device.client.close().await;
    }
    let (dir, _) = broker.stop().await?;
    let found = |needle: &str| files_containing(dir.path(), needle.as_bytes());
    ensure!(!found(control)?.is_empty(), "the scan finds a message sent in the clear");
    for secret in secrets {
        let leaks = found(secret)?;
        ensure!(leaks.is_empty(), "plaintext {secret:?} found in {leaks:?}");
    }
    Ok(())
}
