//! Connection limits over real QUIC: the connection over the per-address limit is closed with
//! OVERLOADED and the limit as its reason, those admitted keep working, and a closed one frees
//! its slot.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::TestBroker;
use herald_client::{Client, ClientError};
use herald_protocol::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_over_the_per_ip_limit_is_refused_with_overloaded() -> Result<()> {
    let broker = TestBroker::start_with(|config| config.limits.max_connections_per_ip = 3).await?;
    let mut clients = Vec::new();
    for user in ["alice", "bob", "carol"] {
        clients.push(broker.client(user).await?);
    }
    let dave = || Client::connect(broker.client_config(broker.token(common::ORG, "dave")));
    let err = dave().await.err().context("the fourth connection from 127.0.0.1 is refused")?;
    assert_eq!(err.code(), Some(ErrorCode::OVERLOADED), "{err}");
    let ClientError::Closed { reason, .. } = &err else { bail!("a close with a reason, got {err}") };
    assert!(reason.contains("127.0.0.1") && reason.contains('3'), "the reason names the limit: {reason}");
    for client in &clients {
        client.ping().await.context("admitted connections keep working")?;
    }

    clients.pop().context("carol")?.close().await;
    let mut admitted = None;
    for _ in 0..50 {
        match dave().await {
            Ok(client) => {
                admitted = Some(client);
                break;
            }
            Err(e) if e.code() == Some(ErrorCode::OVERLOADED) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e.into()),
        }
    }
    admitted.context("a closed connection frees its slot")?.ping().await?;
    Ok(())
}
