//! Rate limits end to end: a flood from one session or one organisation is refused with
//! RATE_LIMITED and a retry-after hint, within its budget, while another organisation's steady
//! traffic all succeeds. Measured in counts, not timings.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use common::TestBroker;
use herald_broker::config::RateLimit;
use herald_client::{Client, ClientError};
use herald_protocol::ErrorCode;

/// How long each flood lasts.
const FLOOD: Duration = Duration::from_secs(1);
/// Concurrent senders per flooding client: enough to keep its session's pipeline full.
const FLOOD_TASKS: usize = 16;
/// The steady sender's pace.
const STEADY_EVERY: Duration = Duration::from_millis(40);

/// What a flood achieved.
#[derive(Debug, Default)]
struct Flood {
    accepted: u64,
    refused: u64,
}

/// Sends from `FLOOD_TASKS` tasks as fast as answers come, until `until`, ignoring every hint.
/// Each refusal must be RATE_LIMITED with a positive retry-after and `message_has` in its text.
async fn flood(client: Client, conversation: u64, until: Instant, message_has: &'static str) -> Result<Flood> {
    let tasks: Vec<_> = (0..FLOOD_TASKS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut flood = Flood::default();
                while Instant::now() < until {
                    match client.send(conversation, &b"flood"[..]).await {
                        Ok(_) => flood.accepted += 1,
                        Err(e @ ClientError::Request { .. }) if e.code() == Some(ErrorCode::RATE_LIMITED) => {
                            let wait = e.retry_after().unwrap_or_default();
                            if wait.is_zero() || !e.to_string().contains(message_has) {
                                bail!("refusal without a wait or from the wrong limit: {e}");
                            }
                            flood.refused += 1;
                        }
                        Err(e) => bail!("flood send failed: {e}"),
                    }
                }
                Ok(flood)
            })
        })
        .collect();
    let mut total = Flood::default();
    for task in tasks {
        let flood = task.await??;
        total.accepted += flood.accepted;
        total.refused += flood.refused;
    }
    Ok(total)
}

/// Sends one message every [`STEADY_EVERY`] until `until`; every send must succeed. Returns how
/// many were sent.
async fn steady(client: Client, conversation: u64, until: Instant) -> Result<u64> {
    let mut sent = 0;
    let mut tick = tokio::time::interval(STEADY_EVERY);
    while Instant::now() < until {
        tick.tick().await;
        client.send(conversation, &b"steady"[..]).await?;
        sent += 1;
    }
    Ok(sent)
}

/// The most a limit may admit over `elapsed`: the burst, the refill, and one for rounding.
fn budget(limit: RateLimit, elapsed: Duration) -> u64 {
    limit.burst + (limit.per_second as f64 * elapsed.as_secs_f64()).ceil() as u64 + 1
}

async fn connect(broker: &TestBroker, org: &str, user: &str) -> Result<Client> {
    Ok(Client::connect(broker.client_config(broker.token(org, user))).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_session_is_held_to_its_budget_while_another_org_sends_unharmed() -> Result<()> {
    let limit = RateLimit { per_second: 100, burst: 100 };
    let broker = TestBroker::start_with(|c| {
        c.storage.sync_writes = false;
        c.rate_limits.session.sends = Some(limit);
    })
    .await?;
    let flooder = connect(&broker, "acme", "alice").await?;
    let flooded = flooder.open_direct("bob").await?.conversation_id;
    let calm = connect(&broker, "globex", "carol").await?;
    let calm_conversation = calm.open_direct("dave").await?.conversation_id;

    let start = Instant::now();
    let until = start + FLOOD;
    let steady = tokio::spawn(steady(calm, calm_conversation, until));
    let flood = flood(flooder.clone(), flooded, until, "session sends").await?;
    let elapsed = start.elapsed();
    let calm_sent = steady.await??;
    eprintln!("session flood: {flood:?} in {elapsed:?}, budget {}; globex sent {calm_sent}", budget(limit, elapsed));

    assert!(flood.refused > 0, "the flood was never refused: {flood:?}");
    assert!(flood.accepted >= limit.burst, "at least the burst gets through: {flood:?}");
    assert!(flood.accepted <= budget(limit, elapsed), "{flood:?} in {elapsed:?} exceeds the session budget");
    assert!(calm_sent >= FLOOD.as_millis() as u64 / STEADY_EVERY.as_millis() as u64, "globex sent {calm_sent}");
    // The refused flooder's session is still open and usable once it waits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    flooder.send(flooded, &b"after the wait"[..]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_organisation_over_its_limit_is_refused_while_another_organisation_is_not() -> Result<()> {
    let limit = RateLimit { per_second: 60, burst: 60 };
    let broker = TestBroker::start_with(|c| {
        c.storage.sync_writes = false;
        c.rate_limits.org.sends = Some(limit);
    })
    .await?;
    let mut flooders = Vec::new();
    for user in ["ann", "ben", "cid", "dee"] {
        let client = connect(&broker, "acme", user).await?;
        let conversation = client.open_direct("zed").await?.conversation_id;
        flooders.push((client, conversation));
    }
    let calm = connect(&broker, "globex", "carol").await?;
    let calm_conversation = calm.open_direct("dave").await?.conversation_id;

    let start = Instant::now();
    let until = start + FLOOD;
    let steady = tokio::spawn(steady(calm, calm_conversation, until));
    let floods: Vec<_> = flooders
        .iter()
        .map(|(client, conversation)| tokio::spawn(flood(client.clone(), *conversation, until, "org sends")))
        .collect();
    let mut total = Flood::default();
    for flood in floods {
        let flood = flood.await??;
        total.accepted += flood.accepted;
        total.refused += flood.refused;
    }
    let elapsed = start.elapsed();
    let calm_sent = steady.await??;
    eprintln!("org flood: {total:?} in {elapsed:?}, budget {}; globex sent {calm_sent}", budget(limit, elapsed));

    assert!(total.refused > 0, "the organisation was never refused: {total:?}");
    assert!(total.accepted >= limit.burst, "at least the burst gets through: {total:?}");
    assert!(total.accepted <= budget(limit, elapsed), "{total:?} in {elapsed:?} exceeds the org budget");
    assert!(calm_sent >= FLOOD.as_millis() as u64 / STEADY_EVERY.as_millis() as u64, "globex sent {calm_sent}");
    Ok(())
}
