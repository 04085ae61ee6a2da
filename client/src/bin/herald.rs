//! `herald`: the Herald command-line client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use herald_client::{Client, ClientConfig, Trust};

/// Talk to a Herald broker from the command line.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConnectionArgs {
    /// Broker address (UDP).
    #[arg(long, short, env = "HERALD_SERVER", default_value = "127.0.0.1:7443", global = true)]
    server: SocketAddr,
    /// Name the broker's certificate must carry.
    #[arg(long, env = "HERALD_SERVER_NAME", default_value = "localhost", global = true)]
    server_name: String,
    /// PEM certificate(s) to trust: the broker's own (pinned) or a CA. The default is the
    /// certificate a broker on its embedded default generates.
    #[arg(long, env = "HERALD_CERT", global = true, default_value = "herald-data/tls/cert.pem")]
    cert: PathBuf,
    /// Trust the operating system's roots instead of --cert.
    #[arg(long, global = true, conflicts_with = "cert")]
    system_roots: bool,
    /// Token (a JWT); mint a development one with `herald-broker token`.
    #[arg(long, env = "HERALD_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// This device's id.
    #[arg(long, env = "HERALD_DEVICE", default_value = "cli", global = true)]
    device: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open a session and measure round trips with PING.
    Ping {
        /// How many pings to send.
        #[arg(long, short, default_value_t = 4)]
        count: u32,
        /// Pause between pings.
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ping { count, interval } => ping(&cli.connection, count, interval).await,
    }
}

async fn connect(args: &ConnectionArgs) -> Result<Client> {
    let token = args.token.clone().context(
        "no token: pass --token or set HERALD_TOKEN (mint one with `herald-broker token --org demo --user alice`)",
    )?;
    let trust = if args.system_roots {
        Trust::SystemRoots
    } else {
        Trust::pem_file(&args.cert)
            .with_context(|| format!("loading the broker certificate {}", args.cert.display()))?
    };
    let config = ClientConfig::new(args.server, token)
        .with_server_name(args.server_name.clone())
        .with_trust(trust)
        .with_device_id(args.device.clone())
        .with_client_info("herald-cli", env!("CARGO_PKG_VERSION"));
    let client = Client::connect(config).await.with_context(|| format!("connecting to {}", args.server))?;
    let s = client.session();
    println!("connected to {} as {}/{} (device {}), session {}", args.server, s.org, s.user, s.device, s.session_id);
    Ok(client)
}

async fn ping(args: &ConnectionArgs, count: u32, interval: Duration) -> Result<()> {
    let client = connect(args).await?;
    let mut rtts = Vec::new();
    for seq in 1..=count {
        let rtt = client.ping().await.context("ping")?;
        println!("pong from {}: seq={seq} time={:.3} ms", client.remote_address(), rtt.as_secs_f64() * 1e3);
        rtts.push(rtt);
        if seq < count {
            tokio::time::sleep(interval).await;
        }
    }
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / u32::try_from(rtts.len()).unwrap_or(1);
        println!(
            "{} pings: min/avg/max = {:.3}/{:.3}/{:.3} ms",
            rtts.len(),
            min.as_secs_f64() * 1e3,
            avg.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    client.close().await;
    Ok(())
}
