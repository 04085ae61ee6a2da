//! DING end to end: real broker, real QUIC clients, a real local HTTP server standing in for the
//! SMS/voice gateway. The ladder runs on short delays so the test takes seconds.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use common::TestBroker;
use herald_broker::ding::{Channel, PolicyConfig, StepConfig};
use herald_client::{Client, DingNotice, DingRequest, Event, pb};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What the gateway received: the Idempotency-Key header and the JSON body.
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A local HTTP gateway answering `statuses` in turn (then 200), recording every request.
async fn gateway(statuses: Vec<u16>) -> Result<(String, Received)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/ding", listener.local_addr()?);
    let received: Received = Arc::default();
    let script = Arc::new(Mutex::new(statuses.into_iter()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, script) = (log.clone(), script.clone());
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (log, script) = (log.clone(), script.clone());
                async move {
                    let key =
                        request.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    log.lock().expect("lock").push((key, json));
                    let status = script.lock().expect("lock").next().unwrap_or(200);
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok((url, received))
}

/// A ladder of in-app now, SMS after `sms_ms`, the manager after `manager_ms`.
fn fast_policy(sms_ms: u64, manager_ms: u64) -> PolicyConfig {
    let step = |channel, ms| StepConfig { channel, after: Duration::from_millis(ms) };
    PolicyConfig {
        steps: vec![step(Channel::App, 0), step(Channel::Sms, sms_ms), step(Channel::Manager, manager_ms)],
        ack_on_read: false,
        expire_after: None,
    }
}

async fn broker_with(url: &str, policy: PolicyConfig) -> Result<TestBroker> {
    let url = url.to_owned();
    TestBroker::start_with(move |c| {
        c.ding.policies.insert("fast".into(), policy);
        c.ding.default_policy = "fast".into();
        c.ding.gateway.url = Some(url);
        c.ding.gateway.attempts = 3;
        c.ding.gateway.initial_backoff = Duration::from_millis(50);
        c.ding.gateway.max_backoff = Duration::from_millis(200);
        c.receipts.window = Duration::from_millis(50);
    })
    .await
}

/// Imports bob (phone, manager carol) and carol into acme's directory.
async fn directory(broker: &TestBroker) -> Result<()> {
    let token = broker.token_with(|c| {
        c.sub = "root".into();
        c.roles = vec!["admin".into()];
    });
    let admin = Client::connect(broker.client_config(token)).await?;
    let person = |user: &str, manager: &str, phone: &str| pb::DirectoryUser {
        user_id: user.into(),
        manager_id: manager.into(),
        phone: phone.into(),
        ..Default::default()
    };
    admin.admin().import_users(vec![person("carol", "", ""), person("bob", "carol", "+8613800138000")]).await?;
    Ok(())
}

async fn next_ding(events: &mut tokio::sync::mpsc::Receiver<Event>, within: Duration) -> Result<Option<DingNotice>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Ok(None),
            Ok(None) => bail!("event stream ended"),
            Ok(Some(Event::Ding(notice))) => return Ok(Some(notice)),
            Ok(Some(_)) => {}
        }
    }
}

async fn wait_for_requests(received: &Received, n: usize) -> Result<Vec<(String, serde_json::Value)>> {
    for _ in 0..200 {
        let got = received.lock().expect("lock").clone();
        if got.len() >= n {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the gateway got {} requests, expected {n}", received.lock().expect("lock").len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ladder_reaches_the_app_then_sms_through_a_retried_gateway_then_the_manager() -> Result<()> {
    let (url, received) = gateway(vec![500]).await?;
    let broker = broker_with(&url, fast_policy(300, 900)).await?;
    directory(&broker).await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let carol = broker.client("carol").await?;
    let (mut bob_events, mut carol_events) = (bob.events().context("events")?, carol.events().context("events")?);
    let conv = alice.create_group("ops", &["bob", "carol"]).await?.conversation_id;
    let seq = alice.send(conv, b"sealed: the database is down".to_vec()).await?.seq;

    let request = DingRequest {
        conversation_id: conv,
        seq,
        recipients: vec!["bob".into()],
        sms_text: Some("Database down: join the bridge".into()),
        ..DingRequest::default()
    };
    let created = alice.ding(request).await?;
    assert_eq!((created.recipients, created.policy.as_str()), (1, "fast"));
    let notice = next_ding(&mut bob_events, Duration::from_secs(5)).await?.context("bob's in-app DING")?;
    assert_eq!(
        (notice.ding_id, notice.seq, notice.sender.as_str(), notice.escalated_for),
        (created.ding_id, seq, "alice", None)
    );

    // The gateway answers 500, then 200: two requests, one idempotency key, one body.
    let requests = wait_for_requests(&received, 2).await?;
    assert_eq!(requests[0], requests[1], "a retry repeats the key and the body");
    let (key, body) = &requests[0];
    assert!(!key.is_empty());
    assert_eq!((body["phone"].as_str(), body["channel"].as_str()), (Some("+8613800138000"), Some("sms")));
    assert_eq!(body["text"].as_str(), Some("Database down: join the bridge"));

    let escalation = next_ding(&mut carol_events, Duration::from_secs(5)).await?.context("carol, bob's manager")?;
    assert_eq!(escalation.escalated_for.as_deref(), Some("bob"));

    // The gateway's answer is recorded when it reaches the shard, just after the HTTP response.
    let mut steps = Vec::new();
    for _ in 0..100 {
        let status = alice.ding_status(conv, created.ding_id, "", 10).await?;
        let line = status.recipients.first().context("bob's line")?;
        steps = line.steps.iter().map(|s| (s.step, s.delivered)).collect::<Vec<_>>();
        if steps.len() == 3 && steps.iter().all(|(_, delivered)| *delivered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(steps, [(0, true), (1, true), (2, true)], "every step recorded, the SMS as accepted");
    assert_eq!(received.lock().expect("lock").len(), 2, "nothing sent twice");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_stops_the_remaining_steps() -> Result<()> {
    let (url, received) = gateway(vec![]).await?;
    // Long enough that the acknowledgement lands first even on a loaded machine.
    let broker = broker_with(&url, fast_policy(2000, 3000)).await?;
    directory(&broker).await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let carol = broker.client("carol").await?;
    let (mut bob_events, mut carol_events) = (bob.events().context("events")?, carol.events().context("events")?);
    let mut alice_events = alice.events().context("events")?;
    let conv = alice.create_group("ops", &["bob", "carol"]).await?.conversation_id;
    let request = DingRequest {
        conversation_id: conv,
        payload: b"sealed: call me".to_vec(),
        recipients: vec!["bob".into()],
        sms_text: Some("Call Alice".into()),
        ..DingRequest::default()
    };
    let created = alice.ding(request).await?;
    let notice = next_ding(&mut bob_events, Duration::from_secs(5)).await?.context("bob's DING")?;
    let acked = bob.ding_ack(conv, notice.ding_id).await?;
    assert_eq!(acked.counts.map(|c| c.acknowledged), Some(1));

    let update = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), alice_events.recv()).await?.context("events")?;
        if let Event::DingUpdate(update) = event {
            break update;
        }
    };
    assert_eq!((update.ding_id, update.counts.map(|c| c.acknowledged)), (created.ding_id, Some(1)));
    assert!(next_ding(&mut carol_events, Duration::from_millis(3500)).await?.is_none(), "no manager escalation");
    assert!(received.lock().expect("lock").is_empty(), "no SMS after the acknowledgement");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_steps_neither_loses_nor_repeats_a_step() -> Result<()> {
    let (url, received) = gateway(vec![]).await?;
    let broker = broker_with(&url, fast_policy(3000, 60_000)).await?;
    directory(&broker).await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let mut bob_events = bob.events().context("events")?;
    let conv = alice.create_group("ops", &["bob", "carol"]).await?.conversation_id;
    let request = DingRequest {
        conversation_id: conv,
        payload: b"sealed".to_vec(),
        recipients: vec!["bob".into()],
        sms_text: Some("Call Alice".into()),
        ..DingRequest::default()
    };
    let created = alice.ding(request).await?;
    next_ding(&mut bob_events, Duration::from_secs(5)).await?.context("the in-app step")?;

    let (dir, config) = broker.stop().await?;
    let broker = TestBroker::start_in(dir, config).await?;
    let bob = broker.client("bob").await?;
    let mut bob_events = bob.events().context("events")?;
    let requests = wait_for_requests(&received, 1).await.context("the SMS step after the restart")?;
    assert_eq!(requests[0].1["recipient"].as_str(), Some("bob"));
    assert!(next_ding(&mut bob_events, Duration::from_millis(800)).await?.is_none(), "the in-app step is not repeated");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.lock().expect("lock").len(), 1, "the SMS went out once");
    let alice = broker.client("alice").await?;
    let status = alice.ding_status(conv, created.ding_id, "", 10).await?;
    assert_eq!(status.recipients[0].steps.len(), 2, "both steps recorded once");
    Ok(())
}
