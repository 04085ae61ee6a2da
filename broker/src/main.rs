//! `herald-broker`: run the Herald broker, or mint a development token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
mod cli_admin;
mod cli_attendance;
mod cli_audit;

use clap::{Args, Parser, Subcommand};
use herald_broker::RunningBroker;
use herald_broker::auth::{HmacSecret, SigningKeyPair, TokenMinter};
use herald_broker::clock::Now;
use herald_broker::config::{Config, LogFormat};
use herald_protocol::{DeviceId, OrgId, UserId};
use tracing_subscriber::EnvFilter;

/// The Herald messaging broker.
///
/// With no arguments it starts on the embedded default: QUIC on 127.0.0.1:7443, data in
/// ./herald-data, a self-signed certificate and a development token key created there on first
/// start, and one organisation, `demo`. Settings come from the built-in defaults, then the TOML
/// file given by --config, then environment variables, then flags.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// TOML configuration file (see docs/OPERATIONS.md for every key).
    #[arg(long, short, env = "HERALD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Directory for the database, the generated certificate and the development token key.
    #[arg(long, env = "HERALD_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(ServeArgs),
    /// Mint a token (a standard JWT: EdDSA with the development key or --key, or HS256 with
    /// --hmac), and print it.
    Token(TokenArgs),
    /// Verify the audit log's hash chains, or export records (works beside a running broker).
    #[command(subcommand)]
    Audit(cli_audit::AuditCommand),
    /// Administer a running broker over the protocol: organisations, users, devices,
    /// conversations and the audit log.
    Admin(cli_admin::AdminArgs),
    /// Attendance over the protocol, like `admin`: the payroll CSV export, department
    /// summaries, rules from a JSON file, device rebinding.
    Attendance(cli_attendance::AttendanceArgs),
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// UDP address to listen on.
    #[arg(long, env = "HERALD_LISTEN")]
    listen: Option<SocketAddr>,
    /// An organisation to serve, in addition to those in the config file (repeatable).
    #[arg(long = "org")]
    orgs: Vec<OrgId>,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Log filter, such as `info` or `herald_broker=debug` (RUST_LOG overrides it).
    #[arg(long, env = "HERALD_LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// Organisation id (the `org` claim).
    #[arg(long)]
    org: OrgId,
    /// User id (the `sub` claim).
    #[arg(long)]
    user: UserId,
    /// Bind the token to one device id (the `device` claim); any device when omitted.
    #[arg(long)]
    device: Option<DeviceId>,
    /// Role name (repeatable), such as `admin`.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Lifetime, such as `1h`, `30m` or `7d`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Ed25519 private key (PKCS#8 PEM) to sign with; defaults to the data directory's
    /// development key, created if missing.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Sign HS256 with the configured shared secret (`auth.hmac_secret_file`) instead.
    #[arg(long)]
    hmac: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = match &cli.common.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(dir) = cli.common.data_dir {
        config.data_dir = dir;
    }
    match cli.command {
        Some(Command::Token(args)) => mint_token(&config, args),
        Some(Command::Audit(command)) => cli_audit::run(&config, command),
        Some(Command::Admin(args)) => cli_admin::run(&config, args).await,
        Some(Command::Attendance(args)) => cli_attendance::run(&config, args).await,
        Some(Command::Serve(args)) => serve(config, args).await,
        None => serve(config, ServeArgs::default()).await,
    }
}

fn mint_token(config: &Config, args: TokenArgs) -> Result<()> {
    let minter = match (&args.key, args.hmac) {
        (Some(_), true) => bail!("--key and --hmac exclude each other"),
        (Some(path), false) => {
            let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            TokenMinter::new(&SigningKeyPair::from_private_pem(&pem)?)?
        }
        (None, true) => {
            let path = config.auth.hmac_secret_file.as_deref().context("--hmac needs auth.hmac_secret_file set")?;
            TokenMinter::hmac(&HmacSecret::load(path)?)
        }
        (None, false) if config.uses_dev_signing_key() => {
            TokenMinter::new(&SigningKeyPair::load_or_generate(&config.dev_signing_key_path())?)?
        }
        (None, false) => bail!(
            "this broker trusts configured keys: pass the Ed25519 signing key with --key, or --hmac to sign with auth.hmac_secret_file"
        ),
    };
    let now_s = Now::system().unix_ms / 1000;
    let token = minter.mint_for(
        args.org.as_str(),
        args.user.as_str(),
        args.device.as_ref().map(DeviceId::as_str),
        &args.roles,
        now_s,
        args.ttl,
    )?;
    println!("{token}");
    Ok(())
}

async fn serve(mut config: Config, args: ServeArgs) -> Result<()> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.orgs.extend(args.orgs);
    if let Some(format) = args.log_format {
        config.log.format = format;
    }
    if let Some(level) = args.log_level {
        config.log.level = level;
    }
    init_logging(&config);
    let broker = RunningBroker::start(config.clone()).await.context("starting the broker")?;
    print_banner(&config, &broker);
    serve_until_stopped(&broker).await?;
    broker.shutdown().await.context("shutting down")?;
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// What a newcomer needs to connect: the address, the certificate to pin, and a token command.
fn print_banner(config: &Config, broker: &RunningBroker) {
    let org = config.orgs.first().map_or("demo", OrgId::as_str);
    println!("Herald broker {} listening on {} (QUIC, ALPN herald/1)", env!("CARGO_PKG_VERSION"), broker.local_addr());
    println!("  data directory: {}", config.data_dir.display());
    let kind = if broker.is_self_signed() { "self-signed for localhost and 127.0.0.1" } else { "configured" };
    println!("  certificate:    {} ({kind})", broker.cert_path().display());
    println!("  organisations:  {}", config.orgs.iter().map(OrgId::as_str).collect::<Vec<_>>().join(", "));
    if broker.dev_signing_key().is_some() {
        let data_dir = config.data_dir.display();
        println!(
            "  dev token:      cargo run --release -p herald-broker -- --data-dir {data_dir} token --org {org} --user alice"
        );
        println!(
            "  try it:         cargo run --release -p herald-client -- ping --cert {} --token <TOKEN>",
            broker.cert_path().display()
        );
    }
    println!("Press Ctrl-C to stop.");
}

/// Waits for SIGINT or SIGTERM, reloading the certificate and the revocation list on each SIGHUP
/// meanwhile (the outcome is logged part by part).
async fn serve_until_stopped(broker: &RunningBroker) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => return Ok(result?),
            _ = terminate.recv() => return Ok(()),
            _ = hangup.recv() => {
                let report = broker.reload();
                tracing::info!(ok = report.is_ok(), "SIGHUP: reload finished");
            }
        }
    }
}
