//! What every scenario needs: tokens for simulated users, the broker's address and certificate,
//! shared client endpoints, and a way to open many sessions at once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use herald_broker::auth::{SigningKeyPair, TokenMinter};
use herald_client::{Client, ClientConfig, Endpoint, Trust};
use tokio::sync::Semaphore;

use crate::progress::Progress;
use crate::report::{Phase, latency_histogram, record};

/// How simulated users reach the broker.
#[derive(Debug)]
pub(crate) struct Harness {
    server: SocketAddr,
    trust: Trust,
    minter: TokenMinter,
    org: String,
    /// Sessions are spread over these round robin: one socket per core rather than per session,
    /// so the tool measures the broker, not thousands of its own endpoint drivers.
    endpoints: Vec<Endpoint>,
    /// Whether to draw progress bars.
    pub(crate) live: bool,
}

impl Harness {
    /// A harness for the broker at `server`, trusting `cert` and minting tokens with the
    /// private key in `token_key`, over `endpoints` shared sockets.
    pub(crate) fn new(
        server: SocketAddr,
        cert: &Path,
        token_key: &Path,
        org: &str,
        endpoints: usize,
        live: bool,
    ) -> Result<Self> {
        let pem = std::fs::read_to_string(token_key)
            .with_context(|| format!("reading token key {} (or pass --spawn-broker)", token_key.display()))?;
        let minter = TokenMinter::new(&SigningKeyPair::from_private_pem(&pem)?)?;
        let trust = Trust::pem_file(cert)?;
        let endpoints = (0..endpoints.max(1)).map(|_| Endpoint::for_server(server)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { server, trust, minter, org: org.to_owned(), endpoints, live })
    }

    /// The user id of simulated user number `n`.
    pub(crate) fn user(n: usize) -> String {
        format!("load-{n}")
    }

    /// A session configuration for simulated user number `n`, on its share of the endpoints.
    pub(crate) fn client_config(&self, n: usize) -> Result<ClientConfig> {
        self.client_config_with_roles(n, &[])
    }

    /// The same, with a token carrying `roles` (such as `admin`).
    pub(crate) fn client_config_with_roles(&self, n: usize, roles: &[&str]) -> Result<ClientConfig> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let token =
            self.minter.mint_for(&self.org, &Self::user(n), None, &roles, now, Duration::from_secs(24 * 3600))?;
        let endpoint = self.endpoints.get(n % self.endpoints.len()).context("no endpoint")?.clone();
        Ok(ClientConfig::new(self.server, token)
            .with_trust(self.trust.clone())
            .with_endpoint(endpoint)
            .with_device_id(format!("load-device-{n}"))
            .with_client_info("herald-load", env!("CARGO_PKG_VERSION"))
            .with_connect_timeout(Duration::from_secs(30))
            .with_request_timeout(Duration::from_secs(60)))
    }

    /// Opens one session per simulated user number in `users`, at most `concurrency`
    /// handshakes at once, in user order. A session that fails to open is reported and counted
    /// in the phase; the caller decides whether a partial set will do.
    pub(crate) async fn open(
        &self,
        users: std::ops::Range<usize>,
        concurrency: usize,
        label: &'static str,
    ) -> Result<(Vec<Client>, Phase)> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let progress = Progress::new(label, users.len() as u64, self.live);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(users.len());
        for n in users {
            let config = self.client_config(n)?;
            let (permits, progress) = (permits.clone(), progress.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let began = Instant::now();
                let client = Client::connect(config).await;
                progress.inc(1);
                client.map(|c| (c, began.elapsed()))
            }));
        }
        let mut latencies = latency_histogram();
        let (mut clients, mut failed) = (Vec::new(), 0);
        for task in tasks {
            match task.await? {
                Ok((client, took)) => {
                    record(&mut latencies, took);
                    clients.push(client);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("connect failed: {e}");
                }
            }
        }
        progress.finish();
        Ok((clients, Phase::new(label, failed, start.elapsed(), &latencies)))
    }

    /// Opens every session in `users` or fails: for scenarios whose checks need all members.
    pub(crate) async fn open_all(
        &self,
        users: std::ops::Range<usize>,
        concurrency: usize,
        label: &'static str,
    ) -> Result<(Vec<Client>, Phase)> {
        let wanted = users.len();
        let (clients, phase) = self.open(users, concurrency, label).await?;
        anyhow::ensure!(clients.len() == wanted, "{} of {wanted} sessions opened", clients.len());
        Ok((clients, phase))
    }
}

/// Closes sessions all at once (each close waits for its connection to drain), not in turn.
pub(crate) async fn close_all(clients: Vec<Client>) {
    let closing: Vec<_> = clients.into_iter().map(|c| tokio::spawn(async move { c.close().await })).collect();
    for close in closing {
        let _ = close.await;
    }
}
