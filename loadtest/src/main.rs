//! `herald-load`: drives many real QUIC clients, through the public SDK, against a Herald broker
//! (one it starts itself with `--spawn-broker`, or any other) and reports throughput, latency
//! percentiles, the broker's CPU and memory, and whether every delivery arrived exactly once and
//! in order. It exits non-zero when a check fails.

mod broker;
mod call_join;
mod checkin;
mod connect;
mod ding;
mod fanout;
mod groups;
mod harness;
mod member;
mod progress;
mod publisher;
mod read_storm;
mod recall;
mod reconnect;
mod report;
mod tally;

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::broker::{BrokerProbe, SpawnedBroker};
use crate::harness::Harness;
use crate::report::Report;

/// Load generator for the Herald broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Which broker, and how to get in.
#[derive(Debug, Args)]
struct Target {
    /// Start a broker on a fresh temporary data directory for this run (rate limits off,
    /// connection caps raised) and stop it afterwards; --server, --cert and --token-key are
    /// then ignored.
    #[arg(long, global = true)]
    spawn_broker: bool,
    /// The broker executable to spawn (default: `herald-broker` beside this one, else on PATH).
    #[arg(long, global = true)]
    broker_bin: Option<PathBuf>,
    /// Shard threads of the spawned broker (0: one per core).
    #[arg(long, default_value_t = 0, global = true)]
    broker_shards: usize,
    /// Process id of an external broker on this machine, to report its CPU time and memory.
    #[arg(long, global = true)]
    broker_pid: Option<u32>,
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
    /// Client UDP sockets the simulated sessions share (default: one per core).
    #[arg(long, global = true)]
    endpoints: Option<usize>,
    /// Write the report as JSON to this file as well.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// No live progress bars.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open many sessions at once, then measure PING round trips on all of them.
    Connect(connect::ConnectArgs),
    /// One group with every member online; one publisher sends as fast as acknowledged.
    Fanout(fanout::FanoutArgs),
    /// The same group at a fixed offered rate: latency at that load.
    Paced(fanout::PacedArgs),
    /// Many small groups, every member publishing.
    Groups(groups::GroupsArgs),
    /// One-to-one conversations, both sides sending.
    Direct(groups::DirectArgs),
    /// Every member of a large group reads the newest message at once.
    ReadStorm(read_storm::ReadStormArgs),
    /// Every member drops off, a backlog piles up, all reconnect at once and catch up.
    ReconnectStorm(reconnect::ReconnectArgs),
    /// A sender recalls its messages; every online member must be told of each.
    Recall(recall::RecallArgs),
    /// DING every member of a large group at once; recipients acknowledge over time.
    Ding(ding::DingArgs),
    /// A workforce checks in within one window; the ones outside the fence are flagged to HR.
    CheckinBurst(checkin::CheckinArgs),
    /// A join storm: N devices join one call within a window; every list must converge.
    CallJoin(call_join::CallJoinArgs),
}

impl Scenario {
    async fn run(&self, harness: &Harness) -> Result<Report> {
        match self {
            Scenario::Connect(args) => connect::run(harness, args).await,
            Scenario::Fanout(args) => fanout::run_fanout(harness, args).await,
            Scenario::Paced(args) => fanout::run_paced(harness, args).await,
            Scenario::Groups(args) => groups::run_groups(harness, args).await,
            Scenario::Direct(args) => groups::run_direct(harness, args).await,
            Scenario::ReadStorm(args) => read_storm::run(harness, args).await,
            Scenario::ReconnectStorm(args) => reconnect::run(harness, args).await,
            Scenario::Recall(args) => recall::run(harness, args).await,
            Scenario::Ding(args) => ding::run(harness, args).await,
            Scenario::CheckinBurst(args) => checkin::run(harness, args).await,
            Scenario::CallJoin(args) => call_join::run(harness, args).await,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let target = &cli.target;
    let spawned = target.spawn_broker.then(|| SpawnedBroker::start(target.broker_bin.as_deref(), target.broker_shards));
    let spawned = spawned.transpose()?;
    let (server, cert, token_key) = match &spawned {
        Some(broker) => (broker.server, broker.cert(), broker.token_key()),
        None => (target.server, target.cert.clone(), target.token_key.clone()),
    };
    let endpoints = target.endpoints.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, Into::into));
    let live = !target.quiet && std::io::stderr().is_terminal();
    let harness = Harness::new(server, &cert, &token_key, &target.org, endpoints, live)?;
    let probe = spawned.as_ref().map(SpawnedBroker::pid).or(target.broker_pid).map(BrokerProbe::start).transpose()?;

    let outcome = cli.scenario.run(&harness).await;
    let usage = match probe {
        Some(probe) => Some(probe.usage().await),
        None => None,
    }
    .transpose();
    let mut report = match outcome {
        Ok(report) => report,
        Err(e) => {
            if let Some(broker) = &spawned {
                eprintln!("broker log:\n{}", broker.log_tail());
            }
            return Err(e);
        }
    };
    report.broker = usage?;
    if let Some(broker) = spawned {
        broker.stop()?;
    }
    println!("{}", report.to_text());
    if let Some(path) = &target.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if !report.passed() {
        bail!("checks failed: see the table above");
    }
    Ok(())
}
