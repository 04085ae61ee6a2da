//! Broker lifecycle: graceful shutdown closes sessions with a code; state survives a restart.

mod common;

use anyhow::Result;
use common::TestBroker;
use herald_protocol::ErrorCode;

#[tokio::test]
async fn shutdown_closes_sessions_with_shutting_down() -> Result<()> {
    let broker = TestBroker::start().await?;
    // A client that reconnects would wait for the broker to come back; this one reports.
    let config = broker.client_config(broker.token(common::ORG, "alice")).without_reconnect();
    let client = herald_client::Client::connect(config).await?;
    client.ping().await?;
    let (_dir, _config) = broker.stop().await?;
    let err = client.ping().await.expect_err("broker is gone");
    assert_eq!(err.code(), Some(ErrorCode::SHUTTING_DOWN), "{err}");
    Ok(())
}

#[tokio::test]
async fn certificate_key_and_tokens_survive_a_restart() -> Result<()> {
    let broker = TestBroker::start().await?;
    let cert_before = broker.certificate();
    let token = broker.token(common::ORG, "alice");
    let (dir, mut config) = broker.stop().await?;
    // Serve only from the store this time: the orgs written on first start are still served.
    config.orgs = vec![herald_protocol::OrgId::new("other")?];
    let broker = TestBroker::start_in(dir, config).await?;
    assert_eq!(broker.certificate(), cert_before, "the generated certificate is reused");
    let client = herald_client::Client::connect(broker.client_config(token)).await?;
    client.ping().await?;
    Ok(())
}
