//! DING escalation across `kill -9` (issue 11, item 2): every step of every ladder fires once,
//! never before its time, and none is lost, however often the broker dies.
//!
//! The real `herald-broker` binary runs a fast ladder (in-app now, SMS, voice, then the manager,
//! then expiry) against a real local HTTP gateway that outlives the broker. Each round the sender
//! connects, DINGs a few recipients who never acknowledge, and the broker is SIGKILLed at a seeded
//! random point, so kills land before, during and after steps fire and gateway calls are in
//! flight. After the last round the broker runs until every ladder has finished, and then:
//! - the broker's own record of each recipient holds each step exactly once, delivered, no
//!   earlier than the DING's creation plus the step's delay, and the recipient expired;
//! - the gateway saw every SMS and voice step, under the one idempotency key of that step, and
//!   none before its time. A kill between the gateway's answer and the commit recording it makes
//!   the broker call again with the same key after the restart (at least once, deduplicated by
//!   the key); such repeats are counted and reported, and a key never names two requests.
//!
//! `HERALD_CRASH_SEED` and `HERALD_DING_ROUNDS` (default 8) as for tests/crash.rs; the binary is
//! the one cargo built for `--test cli`.

#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use common::child_broker::{ChildBroker, Connector, broker_binary, env_or, mint_token, unused_udp_address};
use common::rng::SplitMix64;
use herald_client::{Client, DingRequest, pb};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const DEVICE: &str = "crash-test";
const SENDER: &str = "sender";
const MANAGER: &str = "boss";
/// Recipients of every DING; none ever acknowledges.
const RECIPIENTS: [&str; 3] = ["ann", "ben", "cat"];
/// The ladder: (channel, delay after the DING's creation, in ms), then expiry.
const LADDER: [(&str, u64); 4] = [("app", 0), ("sms", 400), ("voice", 800), ("manager", 1200)];
const EXPIRE_AFTER_MS: u64 = 1600;
const DEFAULT_SEED: u64 = 0x4449_4e47; // "DING"
const DEFAULT_ROUNDS: u32 = 8;
/// How long after the round's DING the broker is killed, in milliseconds.
const KILL_AFTER_MS: RangeInclusive<u64> = 30..=700;

/// One gateway request as it arrived: its idempotency key, its step's channel, when.
#[derive(Debug, Clone)]
struct GatewayCall {
    key: String,
    ding_id: String,
    recipient: String,
    channel: String,
    at_ms: u64,
}

type Calls = Arc<Mutex<Vec<GatewayCall>>>;

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A local SMS/voice gateway that accepts everything and records each request.
async fn gateway() -> Result<(String, Calls)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/ding", listener.local_addr()?);
    let calls: Calls = Arc::default();
    let log = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let log = log.clone();
                async move {
                    let at_ms = unix_ms();
                    let key = request.headers().get("idempotency-key").and_then(|v| v.to_str().ok());
                    let key = key.unwrap_or_default().to_owned();
                    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                    let call = GatewayCall {
                        key,
                        ding_id: field("ding_id"),
                        recipient: field("recipient"),
                        channel: field("channel"),
                        at_ms,
                    };
                    log.lock().expect("gateway log").push(call);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok((url, calls))
}

fn config_toml(gateway_url: &str) -> String {
    let steps: Vec<String> =
        LADDER.iter().map(|(channel, ms)| format!("{{ channel = \"{channel}\", after = \"{ms}ms\" }}")).collect();
    format!(
        "[ding]\ndefault_policy = \"fast\"\n\n[ding.policies.fast]\nsteps = [{}]\nexpire_after = \"{EXPIRE_AFTER_MS}ms\"\n\n\
         [ding.gateway]\nurl = \"{gateway_url}\"\nattempts = 5\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\n",
        steps.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ding_ladders_fire_every_step_once_and_on_time_across_sigkill() -> Result<()> {
    let seed = env_or("HERALD_CRASH_SEED", DEFAULT_SEED)?;
    let rounds = env_or("HERALD_DING_ROUNDS", DEFAULT_ROUNDS)?;
    ensure!(rounds > 0, "HERALD_DING_ROUNDS must be at least 1");
    println!("DING crash test: HERALD_CRASH_SEED={seed} HERALD_DING_ROUNDS={rounds}");
    ding_crash_test(seed, rounds).await.with_context(|| format!("DING crash test failed with HERALD_CRASH_SEED={seed}"))
}

async fn ding_crash_test(seed: u64, rounds: u32) -> Result<()> {
    let mut rng = SplitMix64(seed);
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("herald-data");
    let (url, calls) = gateway().await?;
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, config_toml(&url))?;
    let config = config.to_str().context("a UTF-8 temp path")?.to_owned();
    let extra = ["--config", config.as_str()];
    let binary = broker_binary()?;
    let listen = unused_udp_address()?;
    let mut broker = ChildBroker::start(&binary, &data_dir, listen, &extra).await?;
    let connector = Connector::new(listen, &data_dir)?;
    let sender_token = mint_token(&binary, &data_dir, SENDER, &[]).await?;
    let admin_token = mint_token(&binary, &data_dir, "root", &["admin"]).await?;
    let conv = set_up(&connector, &admin_token, &sender_token).await?;

    let mut dings: Vec<pb::DingCreated> = Vec::new();
    for round in 1..=rounds {
        let sender = connector.connect(&sender_token, DEVICE).await?;
        dings.push(ding(&sender, conv, round).await?);
        let kill_after = Duration::from_millis(rng.in_range(KILL_AFTER_MS));
        tokio::time::sleep(kill_after).await;
        broker.kill()?;
        drop(sender);
        println!("round {round:>2}/{rounds}: DING {} sent; killed {} ms later", dings.len(), kill_after.as_millis());
        broker = ChildBroker::start(&binary, &data_dir, listen, &extra).await?;
    }

    // The last broker runs undisturbed until every ladder has run out.
    let sender = connector.connect(&sender_token, DEVICE).await?;
    let mut states = Vec::new();
    for created in &dings {
        states.push(wait_until_finished(&sender, conv, created).await?);
    }
    sender.close().await;
    drop(broker);

    let steps = check_broker_records(&dings, &states)?;
    let repeats = check_gateway(&dings, &calls.lock().expect("gateway log"))?;
    println!(
        "DING crash test, HERALD_CRASH_SEED={seed}: {rounds} kills, {} DINGs x {} recipients: {steps} steps each once and \
         on time; gateway: {} SMS/voice steps, {repeats} repeated after a kill under the same key",
        dings.len(),
        RECIPIENTS.len(),
        dings.len() * RECIPIENTS.len() * 2
    );
    Ok(())
}

/// Imports the directory (recipients with phones, all managed by [`MANAGER`]) and creates the
/// group the DINGs are about.
async fn set_up(connector: &Connector, admin_token: &str, sender_token: &str) -> Result<u64> {
    let admin = connector.connect(admin_token, DEVICE).await?;
    let mut people = vec![pb::DirectoryUser { user_id: MANAGER.into(), ..Default::default() }];
    for (n, user) in RECIPIENTS.iter().enumerate() {
        people.push(pb::DirectoryUser {
            user_id: (*user).into(),
            manager_id: MANAGER.into(),
            phone: format!("+861380013800{n}"),
            ..Default::default()
        });
    }
    admin.admin().import_users(people).await?;
    admin.close().await;
    let sender = connector.connect(sender_token, DEVICE).await?;
    let conv = sender.create_group("on-call", &RECIPIENTS).await?.conversation_id;
    sender.close().await;
    Ok(conv)
}

async fn ding(sender: &Client, conv: u64, round: u32) -> Result<pb::DingCreated> {
    let seq = sender.send(conv, format!("incident {round}").into_bytes()).await?.seq;
    let request = DingRequest {
        conversation_id: conv,
        seq,
        recipients: RECIPIENTS.iter().map(|r| (*r).to_owned()).collect(),
        sms_text: Some(format!("Incident {round}: join the bridge")),
        ..DingRequest::default()
    };
    let created = sender.ding(request).await?;
    ensure!(created.steps.len() == LADDER.len(), "the fast ladder: {created:?}");
    Ok(created)
}

/// Polls the DING until no recipient is pending (expiry included), or fails after 20 s.
async fn wait_until_finished(sender: &Client, conv: u64, created: &pb::DingCreated) -> Result<pb::DingState> {
    let pending = pb::DingRecipientState::Pending as i32;
    for _ in 0..200 {
        let state = sender.ding_status(conv, created.ding_id, "", 100).await?;
        if state.recipients.iter().all(|r| r.state != pending) {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("DING {} still has pending recipients after 20 s", created.ding_id)
}

/// The broker's record: each recipient expired, with every step once, delivered, not early.
fn check_broker_records(dings: &[pb::DingCreated], states: &[pb::DingState]) -> Result<usize> {
    let mut checked = 0;
    for (created, state) in dings.iter().zip(states) {
        let id = created.ding_id;
        ensure!(state.recipients.len() == RECIPIENTS.len(), "DING {id}: recipients {:?}", state.recipients);
        for recipient in &state.recipients {
            let who = &recipient.user_id;
            ensure!(
                recipient.state == pb::DingRecipientState::Expired as i32,
                "DING {id}, {who}: expired after its ladder, not {:?}",
                recipient.state
            );
            let mut by_step: BTreeMap<u32, usize> = BTreeMap::new();
            for result in &recipient.steps {
                *by_step.entry(result.step).or_default() += 1;
                let due =
                    created.created_at_ms + created.steps.get(result.step as usize).context("a known step")?.after_ms;
                ensure!(
                    result.at_ms >= due,
                    "DING {id}, {who}: step {} at {} before it was due at {due}",
                    result.step,
                    result.at_ms
                );
                ensure!(result.delivered, "DING {id}, {who}: step {} not delivered: {}", result.step, result.detail);
            }
            let expected: BTreeMap<u32, usize> = (0..LADDER.len() as u32).map(|step| (step, 1)).collect();
            ensure!(by_step == expected, "DING {id}, {who}: steps fired {by_step:?}, each exactly once expected");
            checked += recipient.steps.len();
        }
    }
    Ok(checked)
}

/// The gateway: exactly the expected SMS and voice keys, each first called no earlier than due;
/// returns how many calls repeated a key.
fn check_gateway(dings: &[pb::DingCreated], calls: &[GatewayCall]) -> Result<usize> {
    let mut first_call: HashMap<&str, &GatewayCall> = HashMap::new();
    for call in calls {
        let first = first_call.entry(call.key.as_str()).or_insert(call);
        ensure!(
            (first.ding_id.as_str(), first.recipient.as_str(), first.channel.as_str())
                == (call.ding_id.as_str(), call.recipient.as_str(), call.channel.as_str()),
            "one idempotency key {} for two requests: {first:?} and {call:?}",
            call.key
        );
    }
    // The gateway names a DING by its conversation and its id.
    let created_at: HashMap<String, u64> =
        dings.iter().map(|d| (format!("{}-{}", d.conversation_id, d.ding_id), d.created_at_ms)).collect();
    let mut expected = 0;
    for call in first_call.values() {
        let created = created_at.get(&call.ding_id).with_context(|| format!("a call for an unknown DING: {call:?}"))?;
        let (_, after) = LADDER.iter().find(|(channel, _)| *channel == call.channel).context("an SMS or voice step")?;
        ensure!(call.at_ms >= created + after, "{call:?} arrived before it was due at {}", created + after);
        expected += 1;
    }
    ensure!(
        expected == dings.len() * RECIPIENTS.len() * 2,
        "the gateway saw {expected} distinct SMS/voice steps, not one for each of {} DINGs x {} recipients x 2",
        dings.len(),
        RECIPIENTS.len()
    );
    Ok(calls.len() - first_call.len())
}
