//! Token keys end to end: a broker trusting both an Ed25519 public key and an HS256 secret
//! accepts tokens signed by either, and nothing else.

mod common;

use anyhow::{Context, Result};
use common::TestBroker;
use herald_broker::auth::{HmacSecret, SigningKeyPair, TokenMinter};
use herald_client::Client;
use herald_protocol::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_and_ed25519_tokens_both_log_in_and_strangers_are_refused() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let secret_path = keys.path().join("hmac.secret");
    std::fs::write(&secret_path, "a-shared-secret-of-at-least-32-bytes!\n")?;
    let idp = SigningKeyPair::generate()?;
    let public_path = keys.path().join("idp.pub.pem");
    std::fs::write(&public_path, idp.public_pem())?;
    let (secret_file, public_file) = (secret_path.clone(), public_path.clone());
    let broker = TestBroker::start_with(move |config| {
        config.auth.hmac_secret_file = Some(secret_file);
        config.auth.public_keys = vec![public_file];
    })
    .await?;
    assert!(broker.running().dev_signing_key().is_none(), "no development key next to production keys");

    let hmac = TokenMinter::hmac(&HmacSecret::load(&secret_path)?);
    let by_hmac = Client::connect(broker.client_config(broker.token_by(&hmac, |c| c.sub = "alice".into()))).await?;
    assert_eq!(by_hmac.session().user.as_str(), "alice");
    by_hmac.ping().await?;
    let ed = TokenMinter::new(&idp)?;
    let by_ed = Client::connect(broker.client_config(broker.token_by(&ed, |c| c.sub = "bob".into()))).await?;
    by_ed.ping().await?;

    let wrong_secret = TokenMinter::hmac(&HmacSecret::new(b"another-secret-of-at-least-32-bytes".to_vec())?);
    let stranger = TokenMinter::new(&SigningKeyPair::generate()?)?;
    for minter in [&wrong_secret, &stranger] {
        let token = broker.token_by(minter, |c| c.sub = "mallory".into());
        let err = Client::connect(broker.client_config(token)).await.err().context("refused")?;
        assert_eq!(err.code(), Some(ErrorCode::TOKEN_INVALID), "{err}");
    }
    Ok(())
}
