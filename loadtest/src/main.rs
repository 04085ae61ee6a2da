//! `herald-load`: drives many real QUIC clients, through the public SDK, against a Herald broker
//! and reports throughput and latency percentiles.

mod connect;
mod ding;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use herald_broker::auth::{SigningKeyPair, TokenMinter};
use herald_client::{ClientConfig, Trust};

/// Load generator for the Herald broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Where the broker is and how to get in.
#[derive(Debug, Args)]
struct Target {
    /// Broker address (UDP).
    #[arg(long, default_value = "127.0.0.1:7443", global = true)]
    server: SocketAddr,
    /// The broker's certificate (or CA) to trust.
    #[arg(long, default_value = "herald-data/tls/cert.pem", global = true)]
    cert: PathBuf,
    /// Ed25519 private key (PKCS#8 PEM) to mint one token per simulated user.
    #[arg(long, default_value = "herald-data/token-signing-key.pem", global = true)]
    token_key: PathBuf,
    /// Organisation the simulated users belong to.
    #[arg(long, default_value = "demo", global = true)]
    org: String,
    /// Write the report as JSON to this file as well.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open many sessions at once, then measure PING round trips on all of them.
    Connect(connect::ConnectArgs),
    /// DING every member of a large group at once; recipients acknowledge over time.
    Ding(ding::DingArgs),
}

/// What every scenario needs to open sessions.
#[derive(Debug)]
struct Harness {
    server: SocketAddr,
    trust: Trust,
    minter: TokenMinter,
    org: String,
}

impl Harness {
    fn new(target: &Target) -> Result<Self> {
        let pem = std::fs::read_to_string(&target.token_key)
            .with_context(|| format!("reading token key {}", target.token_key.display()))?;
        let minter = TokenMinter::new(&SigningKeyPair::from_private_pem(&pem)?)?;
        let trust = Trust::pem_file(&target.cert)?;
        Ok(Self { server: target.server, trust, minter, org: target.org.clone() })
    }

    /// A session configuration for simulated user number `n`.
    fn client_config(&self, n: usize) -> Result<ClientConfig> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let user = format!("load-{n}");
        let token =
            self.minter.mint_for(&self.org, &user, None, &[], now, std::time::Duration::from_secs(24 * 3600))?;
        Ok(ClientConfig::new(self.server, token)
            .with_trust(self.trust.clone())
            .with_device_id(format!("load-device-{n}"))
            .with_client_info("herald-load", env!("CARGO_PKG_VERSION")))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let harness = Harness::new(&cli.target)?;
    let report = match cli.scenario {
        Scenario::Connect(args) => connect::run(&harness, &args).await?,
        Scenario::Ding(args) => ding::run(&harness, &args).await?,
    };
    println!("{}", report.to_text());
    if let Some(path) = &cli.target.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
