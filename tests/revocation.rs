//! The token revocation list end to end: a reload closes the open sessions it names with
//! TOKEN_REVOKED and refuses their new logins, leaves everyone else alone, and an unusable new
//! list keeps the old one in force.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{ORG, TestBroker};
use herald_broker::reload::RevocationReload;
use herald_client::{Client, ClientError};
use herald_protocol::ErrorCode;

/// Pings until the session fails (the close travels asynchronously) and returns the error.
async fn closed_error(client: &Client) -> Result<ClientError> {
    for _ in 0..50 {
        match client.ping().await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Ok(e),
        }
    }
    bail!("the session is still open")
}

async fn refused_code(config: herald_client::ClientConfig) -> Result<Option<ErrorCode>> {
    Ok(Client::connect(config).await.err().context("the login is refused")?.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_closes_revoked_sessions_refuses_their_logins_and_spares_the_rest() -> Result<()> {
    let files = tempfile::tempdir()?;
    let list = files.path().join("revoked.txt");
    std::fs::write(&list, "# nobody yet\n")?;
    let path = list.clone();
    let broker = TestBroker::start_with(move |config| config.auth.revoked_file = Some(path)).await?;

    let alice_phone = broker.client("alice").await?;
    let laptop_config = broker.client_config(broker.token(ORG, "alice")).with_device_id("laptop");
    let alice_laptop = Client::connect(laptop_config.clone()).await?;
    let bob = broker.client("bob").await?;
    let carol_token = |jti: &str| {
        broker.token_with(|c| {
            c.sub = "carol".into();
            c.jti = Some(jti.into());
        })
    };
    let carol = Client::connect(broker.client_config(carol_token("t-42"))).await?;

    std::fs::write(&list, "device acme/alice/phone-1\njti t-42\n# bob stays\n")?;
    let report = broker.running().reload();
    assert!(report.is_ok(), "{report:?}");
    let reloaded = report.revocations.as_ref().ok().copied().flatten();
    assert_eq!(reloaded, Some(RevocationReload { entries: 2, sessions_closed: 2 }));

    for revoked in [&alice_phone, &carol] {
        let err = closed_error(revoked).await?;
        assert_eq!(err.code(), Some(ErrorCode::TOKEN_REVOKED), "{err}");
    }
    alice_laptop.ping().await.context("alice's other device stays")?;
    bob.ping().await.context("other users stay")?;

    let phone_again = broker.client_config(broker.token(ORG, "alice"));
    assert_eq!(refused_code(phone_again.clone()).await?, Some(ErrorCode::TOKEN_REVOKED));
    let carol_again = broker.client_config(carol_token("t-42"));
    assert_eq!(refused_code(carol_again).await?, Some(ErrorCode::TOKEN_REVOKED));
    Client::connect(broker.client_config(carol_token("t-43"))).await.context("carol's new token")?.ping().await?;
    Client::connect(laptop_config).await.context("alice on the laptop logs in again")?.ping().await?;

    std::fs::write(&list, "device acme/alice/phone-1\nsession 17\n")?;
    let report = broker.running().reload();
    assert!(report.revocations.is_err(), "a bad line refuses the whole file: {report:?}");
    assert_eq!(refused_code(phone_again).await?, Some(ErrorCode::TOKEN_REVOKED), "the old list stands");
    bob.ping().await?;
    Ok(())
}
