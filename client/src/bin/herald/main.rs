//! `herald`: the Herald command-line client.
//!
//! Every subcommand opens one session with the connection options, does its work and closes the
//! session. Results go to stdout, as lines for people or, with `--json`, as JSON for scripts
//! ([`output`]); diagnostics go to stderr; failures exit non-zero with the broker's error code in
//! the message.

mod attendance;
mod call;
mod ding;
mod format;
mod listen;
mod manual;
mod messaging;
mod output;
mod ping;
mod receipts;
mod when;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use herald_client::{Client, ClientConfig, Trust};

use crate::listen::ListenArgs;
use crate::messaging::{GroupCommand, HistoryArgs, RescheduleArgs, SendArgs};
use crate::output::Printer;
use crate::receipts::{ReceiptsArgs, SettingsArgs};

/// Talk to a Herald broker from the command line.
///
/// herald is the command-line client of Herald, a messaging broker for workplace chat. Send and
/// read messages in one-to-one and group conversations, follow deliveries as they arrive, mark
/// conversations read and see who has read what, recall messages or have them expire, send
/// urgent DINGs that escalate until acknowledged, check in for attendance, and start or join
/// calls. It is built on the herald-client SDK alone: whatever it does, an app can do too.
///
/// Each command opens one session to the broker (QUIC over UDP, TLS 1.3), does its work and
/// closes it; `listen`, `call start` and `call join` stay connected and print events until they
/// end or Ctrl-C. Conversations are named by the numeric ids the broker chose (see `herald
/// conversations`), users by their ids in your organisation.
#[derive(Debug, Parser)]
#[command(name = "herald", version, verbatim_doc_comment, after_long_help = manual::TOP)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Print results as JSON for scripts: one object per command, one object per line for
    /// `listen` and followed calls. Failures print {"error":{"code","message"}} to stderr.
    #[arg(long, global = true)]
    json: bool,
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
    /// Encrypt end to end, keeping this device's keys in this directory (created on first use;
    /// keep it private). Messages are then sent encrypted, groups are created with signed
    /// membership, and `listen` shows decrypted messages. Use the same directory, and the same
    /// --device, on every run of the same device.
    #[arg(long, env = "HERALD_E2E_KEYS", global = true)]
    e2e_keys: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open a session and measure round trips with PING.
    #[command(after_help = manual::PING)]
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
    #[command(after_help = manual::SEND)]
    Send(SendArgs),
    /// Move or cancel a message sent with `send --at`; prints `scheduled id=ID deliver_at=TIME`
    /// or `cancelled id=ID`.
    #[command(after_help = manual::RESCHEDULE)]
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
    #[command(after_help = manual::LISTEN)]
    Listen(ListenArgs),
    /// Create groups and manage their members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Print entries of a conversation's log, in the format of `listen`.
    ///
    /// Forward (the default) prints oldest first from --from; --backward prints newest first.
    /// Any member may read the whole log, including entries from before they joined.
    #[command(after_help = manual::HISTORY)]
    History(HistoryArgs),
    /// List your conversations: id, kind, member count, newest seq, your role and name.
    #[command(after_help = manual::CONVERSATIONS)]
    Conversations,
    /// Mark a conversation read up to SEQ (and delivered to this device); prints
    /// `read conv=C read_seq=R delivered_seq=D`.
    ///
    /// Reading is a cursor: everything up to SEQ counts as read. A SEQ behind what you (on any
    /// device) already read fails with STALE_CURSOR and changes nothing.
    #[command(after_help = manual::READ)]
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
    #[command(after_help = manual::RECEIPTS)]
    Receipts(ReceiptsArgs),
    /// Recall a message: its text is deleted from the broker and every device is told to delete
    /// it; prints `recalled seq=N event_seq=E`.
    ///
    /// The sender may recall within the organisation's recall window; a group's owner and admins
    /// at any time.
    #[command(after_help = manual::RECALL)]
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
    #[command(after_help = manual::SETTINGS)]
    Settings(SettingsArgs),
    /// Send, acknowledge and follow DINGs: urgent notices that escalate until acknowledged.
    #[command(subcommand)]
    Ding(ding::DingCommand),
    /// Check in (arriving, leaving or a field visit) with your position; prints `accepted …`
    /// or `flagged …` and one `flag CODE: message` line per reason.
    #[command(after_help = manual::CHECKIN)]
    Checkin(attendance::CheckInArgs),
    /// Your attendance: `herald attendance today [--date YYYY-MM-DD]`.
    #[command(subcommand)]
    Attendance(attendance::AttendanceCommand),
    /// Calls: `herald call start|join|leave|end|mute|share`.
    #[command(subcommand)]
    Call(call::CallCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let printer = Printer::new(cli.json);
    let result = match connect(&cli.connection).await {
        Ok(client) => {
            let result = run(&client, printer, cli.command).await;
            client.close().await;
            result
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            printer.fail(&error);
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refused, or a request for help or the version. With `--json` anywhere
/// on the line a refusal is the JSON error object (code `USAGE`), so scripts parse one format.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !std::env::args_os().any(|arg| arg == "--json") {
        error.exit();
    }
    eprintln!("{}", output::error_json("USAGE", &usage_message(&error.to_string())));
    ExitCode::from(2)
}

/// Clap's message without its `error: ` prefix and the usage and tip after it, on one line.
fn usage_message(rendered: &str) -> String {
    let message = rendered.strip_prefix("error: ").unwrap_or(rendered);
    let lines = message.lines().map(str::trim).take_while(|l| !l.is_empty() && !l.starts_with("Usage:"));
    lines.collect::<Vec<_>>().join(" ")
}

async fn run(client: &Client, printer: Printer, command: Command) -> Result<()> {
    match command {
        Command::Ping { count, interval } => ping::ping(client, printer, count, interval).await,
        Command::Send(args) => messaging::send(client, printer, args).await,
        Command::Listen(args) => listen::listen(client, printer, &args).await,
        Command::Group(command) => messaging::group(client, printer, command).await,
        Command::History(args) => messaging::history(client, printer, &args).await,
        Command::Conversations => messaging::conversations(client, printer).await,
        Command::Reschedule(args) => messaging::reschedule(client, printer, args).await,
        Command::Read { conversation, seq } => receipts::read(client, printer, conversation, seq).await,
        Command::Receipts(args) => receipts::receipts(client, printer, &args).await,
        Command::Recall { conversation, seq } => receipts::recall(client, printer, conversation, seq).await,
        Command::Settings(args) => receipts::settings(client, printer, &args).await,
        Command::Ding(command) => ding::ding(client, printer, command).await,
        Command::Checkin(args) => attendance::check_in(client, printer, args).await,
        Command::Attendance(command) => attendance::attendance(client, printer, command).await,
        Command::Call(command) => call::call(client, printer, command).await,
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
    let config = match &args.e2e_keys {
        Some(dir) => config.with_end_to_end(std::sync::Arc::new(herald_client::e2e::FileKeyStore::new(dir))),
        None => config,
    };
    Client::connect(config).await.with_context(|| format!("connecting to {}", args.server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("herald").chain(args.iter().copied())).map(|cli| cli.command)
    }

    #[test]
    fn usage_errors_fit_on_one_line() -> Result<()> {
        let error = Cli::try_parse_from(["herald", "--json", "send"]).err().context("send without arguments")?;
        let message = usage_message(&error.to_string());
        assert!(message.starts_with("the following required arguments were not provided:"), "{message}");
        assert!(message.contains("<MESSAGE>") && !message.contains('\n') && !message.contains("Usage"), "{message}");
        Ok(())
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
