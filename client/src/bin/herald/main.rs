//! `herald`: the Herald command-line client.
//!
//! Every subcommand opens one session with the connection options, does its work and closes the
//! session. Results go to stdout, one item a line, so they can be piped; diagnostics go to stderr;
//! failures exit non-zero with the broker's error code in the message.

mod attendance;
mod call;
mod ding;
mod format;
mod listen;
mod messaging;
mod receipts;
mod when;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use herald_client::{Client, ClientConfig, Trust};

use crate::listen::ListenArgs;
use crate::messaging::{GroupCommand, HistoryArgs, RescheduleArgs, SendArgs};
use crate::receipts::{ReceiptsArgs, SettingsArgs};

/// Talk to a Herald broker from the command line.
///
/// Conversations are named by the numeric ids the broker chose (see `herald conversations`);
/// users by their ids in your organisation.
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
    /// Send a text message to a conversation; prints `sent seq=N`.
    ///
    /// With --at the broker holds the message and delivers it later (even if you are offline
    /// then); with --expire-in or --expire-after-read it recalls the message by itself.
    Send(SendArgs),
    /// Move or cancel a message sent with `send --at`; prints `scheduled id=ID deliver_at=TIME`
    /// or `cancelled id=ID`.
    Reschedule(RescheduleArgs),
    /// Print new entries of all your conversations as they arrive, one a line.
    ///
    /// Each entry reads `conv=<id> seq=<n> from=<user>/<device> <body>`. The body of a message is
    /// its text (invalid UTF-8 replaced, control characters escaped); a membership event is
    /// summarised in brackets: `[created alice(owner) bob(member)]`, `[added carol(member)]`,
    /// `[removed dave(member)]`, `[renamed "New name"]`, `[roles carol(admin)]`, `[recalled
    /// seq=N]` or `[settings ...]`; a recalled message reads `[tombstone reason=recalled|expired
    /// by=<user> event_seq=<n>]`. Other lines: `receipts conv= seq= read= delivered= members=`
    /// when the counts of a message you sent change, `recall-progress ...` for recalls you made,
    /// `recalled conv= seq= event_seq= reason= by=` the moment a message is recalled, and
    /// `resync` when the broker dropped deliveries because this client read too slowly.
    Listen(ListenArgs),
    /// Create groups and manage their members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Print entries of a conversation's log, in the format of `listen`.
    ///
    /// Forward (the default) prints oldest first from --from; --backward prints newest first.
    /// Any member may read the whole log, including entries from before they joined.
    History(HistoryArgs),
    /// List your conversations: id, kind, member count, newest seq, your role and name.
    Conversations,
    /// Mark a conversation read up to SEQ (and delivered to this device); prints
    /// `read conv=C read_seq=R delivered_seq=D`.
    ///
    /// Reading is a cursor: everything up to SEQ counts as read. A SEQ behind what you (on any
    /// device) already read fails with STALE_CURSOR and changes nothing.
    Read {
        /// The conversation.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// The newest entry read.
        seq: u64,
    },
    /// Show a message's receipt counts: `receipts conv= seq= read= delivered= members=`.
    ///
    /// Any member may see the counts; the lists (--read, --unread) are for the message's sender,
    /// the group's owner and admins.
    Receipts(ReceiptsArgs),
    /// Recall a message: its text is deleted from the broker and every device is told to delete
    /// it; prints `recalled seq=N event_seq=E`.
    ///
    /// The sender may recall within the organisation's recall window; a group's owner and admins
    /// at any time.
    Recall {
        /// The conversation.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// The message.
        seq: u64,
    },
    /// Show a conversation's settings, or change them (prints `updated seq=N`).
    ///
    /// Owners and admins change a group's settings; either member a direct conversation's.
    Settings(SettingsArgs),
    /// Send, acknowledge and follow DINGs: urgent notices that escalate until acknowledged.
    #[command(subcommand)]
    Ding(ding::DingCommand),
    /// Check in (arriving, leaving or a field visit) with your position; prints `accepted …`
    /// or `flagged …` and one `flag CODE: message` line per reason.
    Checkin(attendance::CheckInArgs),
    /// Your attendance: `herald attendance today [--date YYYY-MM-DD]`.
    #[command(subcommand)]
    Attendance(attendance::AttendanceCommand),
    /// Calls: `herald call start|join|leave|end|mute|share`.
    #[command(subcommand)]
    Call(call::CallCommand),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let client = connect(&cli.connection).await?;
    let result = run(&client, cli.command).await;
    client.close().await;
    result
}

async fn run(client: &Client, command: Command) -> Result<()> {
    match command {
        Command::Ping { count, interval } => ping(client, count, interval).await,
        Command::Send(args) => messaging::send(client, args).await,
        Command::Listen(args) => listen::listen(client, &args).await,
        Command::Group(command) => messaging::group(client, command).await,
        Command::History(args) => messaging::history(client, &args).await,
        Command::Conversations => messaging::conversations(client).await,
        Command::Reschedule(args) => messaging::reschedule(client, args).await,
        Command::Read { conversation, seq } => receipts::read(client, conversation, seq).await,
        Command::Receipts(args) => receipts::receipts(client, &args).await,
        Command::Recall { conversation, seq } => receipts::recall(client, conversation, seq).await,
        Command::Settings(args) => receipts::settings(client, &args).await,
        Command::Ding(command) => ding::ding(client, command).await,
        Command::Checkin(args) => attendance::check_in(client, args).await,
        Command::Attendance(command) => attendance::attendance(client, command).await,
        Command::Call(command) => call::call(client, command).await,
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
    Client::connect(config).await.with_context(|| format!("connecting to {}", args.server))
}

async fn ping(client: &Client, count: u32, interval: Duration) -> Result<()> {
    let s = client.session();
    let remote = client.remote_address();
    println!("connected to {remote} as {}/{} (device {}), session {}", s.org, s.user, s.device, s.session_id);
    let mut rtts = Vec::new();
    for seq in 1..=count {
        let rtt = client.ping().await.context("ping")?;
        println!("pong from {remote}: seq={seq} time={:.3} ms", rtt.as_secs_f64() * 1e3);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("herald").chain(args.iter().copied())).map(|cli| cli.command)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn read_and_recall_take_a_conversation_and_a_seq() -> Result<()> {
        assert!(matches!(parse(&["read", "5", "3"])?, Command::Read { conversation: 5, seq: 3 }));
        assert!(matches!(parse(&["recall", "5", "3"])?, Command::Recall { conversation: 5, seq: 3 }));
        assert!(parse(&["read", "5"]).is_err());
        assert!(parse(&["recall", "5", "-1"]).is_err());
        Ok(())
    }

    #[test]
    fn receipts_lists_read_or_unread_not_both() -> Result<()> {
        assert!(matches!(parse(&["receipts", "5", "3"])?, Command::Receipts(_)));
        assert!(matches!(parse(&["receipts", "5", "3", "--unread", "--limit", "10"])?, Command::Receipts(_)));
        assert!(parse(&["receipts", "5", "3", "--read", "--unread"]).is_err());
        assert!(parse(&["receipts", "5", "3", "--limit", "0"]).is_err());
        Ok(())
    }

    #[test]
    fn settings_take_on_off_and_durations() -> Result<()> {
        assert!(matches!(parse(&["settings", "5"])?, Command::Settings(_)));
        assert!(matches!(parse(&["settings", "5", "--receipts", "off", "--retention", "7d"])?, Command::Settings(_)));
        assert!(matches!(parse(&["settings", "5", "--retention", "off"])?, Command::Settings(_)));
        assert!(parse(&["settings", "5", "--receipts", "maybe"]).is_err());
        assert!(parse(&["settings", "5", "--retention", "forever"]).is_err());
        Ok(())
    }
}
