//! Certificate reload (what SIGHUP does) over real QUIC: new handshakes get the new certificate,
//! established sessions go on, and unusable new files leave the current certificate in place.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use common::{ORG, TestBroker};
use herald_broker::reload::CertificateReload;
use herald_client::{Client, ClientError, Trust};
use rustls::pki_types::CertificateDer;

/// A fresh self-signed certificate for the loopback names, written as PEM to `dir`.
struct TestCert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl TestCert {
    fn generate() -> Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        Ok(Self {
            der: certified.cert.der().clone(),
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        })
    }

    fn install(&self, paths: &(PathBuf, PathBuf)) -> Result<()> {
        std::fs::write(&paths.0, &self.cert_pem)?;
        std::fs::write(&paths.1, &self.key_pem)?;
        Ok(())
    }
}

fn tls_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("fullchain.pem"), dir.join("key.pem"))
}

async fn connect_pinned(
    broker: &TestBroker,
    user: &str,
    pinned: &CertificateDer<'static>,
) -> Result<Client, ClientError> {
    let config = broker.client_config(broker.token(ORG, user)).with_trust(Trust::Certificates(vec![pinned.clone()]));
    Client::connect(config).await
}

async fn broker_with(cert: &TestCert, paths: &(PathBuf, PathBuf)) -> Result<TestBroker> {
    cert.install(paths)?;
    let paths = paths.clone();
    TestBroker::start_with(move |config| {
        config.tls.cert = Some(paths.0);
        config.tls.key = Some(paths.1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_new_handshakes_to_the_new_certificate_and_keeps_sessions() -> Result<()> {
    let files = tempfile::tempdir()?;
    let paths = tls_paths(files.path());
    let (a, b) = (TestCert::generate()?, TestCert::generate()?);
    let broker = broker_with(&a, &paths).await?;
    assert!(!broker.running().is_self_signed());
    assert_eq!(broker.certificate(), a.der);

    let first = connect_pinned(&broker, "alice", &a.der).await?;
    first.ping().await?;

    b.install(&paths)?;
    let report = broker.running().reload();
    assert_eq!(report.certificate.as_ref().ok(), Some(&CertificateReload::Replaced), "{report:?}");
    assert_eq!(broker.certificate(), b.der, "the broker reports the certificate it now presents");

    first.ping().await.context("the session opened under A goes on")?;
    let second = connect_pinned(&broker, "bob", &b.der).await.context("a client pinned to B connects")?;
    second.ping().await?;
    let refused = connect_pinned(&broker, "carol", &a.der).await.err().context("a client pinned to A is refused")?;
    assert!(matches!(refused, ClientError::Connection(_)), "a TLS failure, not a Herald refusal: {refused}");
    first.ping().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_new_files_keep_the_current_certificate() -> Result<()> {
    let files = tempfile::tempdir()?;
    let paths = tls_paths(files.path());
    let (a, b) = (TestCert::generate()?, TestCert::generate()?);
    let broker = broker_with(&a, &paths).await?;
    let first = connect_pinned(&broker, "alice", &a.der).await?;

    std::fs::write(&paths.0, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")?;
    let report = broker.running().reload();
    assert!(report.certificate.is_err(), "a broken PEM is refused: {report:?}");
    assert!(!report.is_ok());

    // A valid certificate with another certificate's key: a pair rustls could never use.
    std::fs::write(&paths.0, &b.cert_pem)?;
    std::fs::write(&paths.1, &a.key_pem)?;
    let report = broker.running().reload();
    assert!(report.certificate.is_err(), "a key that is not the certificate's is refused: {report:?}");

    std::fs::remove_file(&paths.1)?;
    assert!(broker.running().reload().certificate.is_err(), "a missing key file is refused");

    assert_eq!(broker.certificate(), a.der, "A is still presented");
    first.ping().await?;
    let again = connect_pinned(&broker, "bob", &a.der).await.context("new clients still get A")?;
    again.ping().await?;
    Ok(())
}

#[tokio::test]
async fn reload_with_the_generated_certificate_changes_nothing() -> Result<()> {
    let broker = TestBroker::start().await?;
    let before = broker.certificate();
    let report = broker.running().reload();
    assert_eq!(report.certificate.as_ref().ok(), Some(&CertificateReload::SelfSigned), "{report:?}");
    assert_eq!(broker.certificate(), before);
    broker.client("alice").await?.ping().await?;
    Ok(())
}
