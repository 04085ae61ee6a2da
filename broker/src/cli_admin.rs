//! `herald-broker admin …` (part of the binary, not the library): administration of a running
//! broker over the protocol, as any client would, with a token that has the `operator` or `admin`
//! role. Without `--token` it mints a short-lived operator token with the data directory's
//! development key, so on the embedded default it works with no set-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use herald_broker::admin::OPERATOR_ROLE;
use herald_broker::auth::{SigningKeyPair, TokenMinter};
use herald_broker::clock::Now;
use herald_broker::config::Config;
use herald_client::{Admin, Client, ClientConfig, Trust, pb};

/// `herald-broker admin` arguments: where, as whom, and what.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: AdminCommand,
}

/// How to reach the broker and whom to act as.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The broker's address; defaults to the configured `listen`.
    #[arg(long, global = true)]
    server: Option<SocketAddr>,
    /// The broker's certificate (PEM) to trust; defaults to the configured or generated one.
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// A token with the `operator` or `admin` role; defaults to a five-minute operator token
    /// minted with the development key.
    #[arg(long, env = "HERALD_TOKEN", global = true)]
    token: Option<String>,
    /// The organisation to administer; defaults to the token's own.
    #[arg(long, global = true)]
    org: Option<String>,
}

/// What to administer.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Start serving a new organisation (operators).
    OrgCreate(SettingsArgs),
    /// Show an organisation's settings: its overrides and what applies.
    OrgShow,
    /// Change an organisation's settings; unset flags keep their value.
    OrgSet(SettingsArgs),
    /// Import users from a JSON file (an array of {user_id, display_name, department, manager_id,
    /// disabled, phone, roles}) or a CSV file (`.csv`, a header row naming those columns, roles
    /// separated by `;`); all or nothing.
    UsersImport {
        /// The JSON file.
        file: PathBuf,
    },
    /// List the directory.
    UsersList,
    /// List a user's devices, online or revoked.
    Devices {
        /// The user.
        user: String,
    },
    /// Revoke a device: its sessions close at once and it cannot log in again.
    Revoke {
        /// The user.
        user: String,
        /// The device.
        device: String,
    },
    /// Show a conversation's metadata (never its messages).
    Conversation {
        /// The conversation id.
        id: u64,
    },
    /// Archive a conversation (read-only), or with --undo make it writable again.
    Archive {
        /// The conversation id.
        id: u64,
        /// Unarchive instead.
        #[arg(long)]
        undo: bool,
    },
    /// Write a consistent copy of the whole database to PATH on the broker's host (operators;
    /// online). Restore by stopping the broker and putting the copy in place of `<data_dir>/db`.
    Backup {
        /// An absolute path that does not exist yet.
        path: PathBuf,
    },
    /// Print audit records as JSON lines, oldest first.
    Audit {
        /// Only this actor's records.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (see docs/OPERATIONS.md for the names).
        #[arg(long)]
        action: Option<String>,
    },
}

/// Organisation settings on the command line.
#[derive(Debug, Args)]
pub(crate) struct SettingsArgs {
    /// How long senders may recall a message, e.g. `2m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    recall_window: Option<Duration>,
    /// Read receipts on or off.
    #[arg(long)]
    read_receipts: Option<bool>,
    /// Most conversations a user may be in and still create a group.
    #[arg(long)]
    max_groups_per_user: Option<u32>,
    /// Largest group.
    #[arg(long)]
    max_group_members: Option<u32>,
    /// Retention of groups created from now on, e.g. `90d`; `0s` keeps messages.
    #[arg(long, value_parser = humantime::parse_duration)]
    retention: Option<Duration>,
    /// Most participants in one call.
    #[arg(long)]
    max_call_participants: Option<u32>,
}

impl SettingsArgs {
    fn to_pb(&self) -> pb::OrgSettings {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        pb::OrgSettings {
            recall_window_ms: self.recall_window.map(millis),
            read_receipts: self.read_receipts,
            max_groups_per_user: self.max_groups_per_user,
            max_group_members: self.max_group_members,
            retention_secs: self.retention.map(|d| d.as_secs()),
            max_call_participants: self.max_call_participants,
        }
    }
}

/// Runs an admin command against the broker `config` describes.
pub(crate) async fn run(config: &Config, args: AdminArgs) -> Result<()> {
    let client = connect(config, &args.target).await?;
    let admin = args.target.admin(&client);
    let outcome = execute(&admin, args.command).await;
    client.close().await;
    outcome
}

impl Target {
    /// Administration of the chosen organisation (the token's own without `--org`).
    pub(crate) fn admin<'a>(&self, client: &'a Client) -> Admin<'a> {
        match &self.org {
            Some(org) => client.admin_of(org),
            None => client.admin(),
        }
    }
}

async fn execute(admin: &Admin<'_>, command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::OrgCreate(settings) => print_org(&admin.create_org(settings.to_pb()).await?),
        AdminCommand::OrgShow => print_org(&admin.org().await?),
        AdminCommand::OrgSet(settings) => print_org(&admin.update_org(settings.to_pb()).await?),
        AdminCommand::UsersImport { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let users = if csv { parse_users_csv(&text) } else { parse_users(&text) };
            let users = users.with_context(|| format!("parsing {}", file.display()))?;
            let result = admin.import_users(users).await?;
            println!("created={} updated={} disabled={}", result.created, result.updated, result.disabled);
        }
        AdminCommand::UsersList => list_users(admin).await?,
        AdminCommand::Devices { user } => {
            for d in admin.devices(&user).await? {
                let revoked = if d.revoked_at_ms == 0 { "no".to_owned() } else { format_ms(d.revoked_at_ms) };
                println!("device={} sessions={} revoked={revoked}", d.device_id, d.sessions);
            }
        }
        AdminCommand::Revoke { user, device } => {
            let revoked = admin.revoke_device(&user, &device).await?;
            println!(
                "revoked {user}/{device} at {}; sessions closed: {}",
                format_ms(revoked.revoked_at_ms),
                revoked.sessions_closed
            );
        }
        AdminCommand::Conversation { id } => print_conversation(&admin.inspect_conversation(id).await?),
        AdminCommand::Archive { id, undo } => {
            let seq = admin.archive_conversation(id, !undo).await?;
            println!("conv={id} archived={} seq={seq}", !undo);
        }
        AdminCommand::Backup { path } => {
            let path = std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))?;
            let done = admin.backup(&path.display().to_string()).await?;
            println!("backup at {}: {} files, {} bytes", done.path, done.files, done.bytes);
        }
        AdminCommand::Audit { actor, action } => audit(admin, actor, action).await?,
    }
    Ok(())
}

/// Connects to the broker `config` describes, as `args` says.
pub(crate) async fn connect(config: &Config, args: &Target) -> Result<Client> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => operator_token(config)?,
    };
    let cert = args.cert.clone().or_else(|| config.tls.cert.clone()).unwrap_or_else(|| config.generated_cert_path());
    let trust = Trust::pem_file(&cert).with_context(|| format!("loading the broker certificate {}", cert.display()))?;
    let mut server = args.server.unwrap_or(config.listen);
    if server.ip().is_unspecified() {
        server.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let client_config = ClientConfig::new(server, token).with_trust(trust).with_device_id("herald-broker-admin");
    Client::connect(client_config).await.with_context(|| format!("connecting to {server}"))
}

/// A five-minute operator token from the development key, for the first configured organisation.
fn operator_token(config: &Config) -> Result<String> {
    if !config.auth.public_keys.is_empty() {
        bail!("this broker trusts configured keys (auth.public_keys); pass a token with the operator role: --token");
    }
    let key = SigningKeyPair::load_or_generate(&config.dev_signing_key_path())?;
    let org = config.orgs.first().context("no organisation configured")?;
    let roles = [OPERATOR_ROLE.to_owned()];
    let now_s = Now::system().unix_ms / 1000;
    let token =
        TokenMinter::new(&key)?.mint_for(org.as_str(), "operator", None, &roles, now_s, Duration::from_secs(300))?;
    Ok(token)
}

fn parse_users(text: &str) -> Result<Vec<pb::DirectoryUser>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(text)?;
    values
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let field = |name: &str| v.get(name).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
            let user_id = field("user_id");
            if user_id.is_empty() {
                bail!("entry {index} has no user_id");
            }
            Ok(pb::DirectoryUser {
                user_id,
                display_name: field("display_name"),
                department: field("department"),
                manager_id: field("manager_id"),
                disabled: v.get("disabled").and_then(serde_json::Value::as_bool).unwrap_or(false),
                phone: field("phone"),
                roles: v
                    .get("roles")
                    .and_then(serde_json::Value::as_array)
                    .map(|roles| roles.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A CSV directory: a header row naming the columns (any order, `user_id` required), then one
/// user per row. Fields are plain (no quoting): commas cannot appear in them; roles are split on `;`.
fn parse_users_csv(text: &str) -> Result<Vec<pb::DirectoryUser>> {
    let mut rows = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = rows.next().context("empty file")?.split(',').map(str::trim).collect();
    if !header.contains(&"user_id") {
        bail!("the header row has no user_id column");
    }
    rows.enumerate()
        .map(|(index, row)| {
            let cells: Vec<&str> = row.split(',').map(str::trim).collect();
            if cells.len() != header.len() {
                bail!("row {}: {} fields, the header has {}", index + 1, cells.len(), header.len());
            }
            let get = |name: &str| {
                header.iter().position(|h| *h == name).and_then(|i| cells.get(i).copied()).unwrap_or("").to_owned()
            };
            Ok(pb::DirectoryUser {
                user_id: get("user_id"),
                display_name: get("display_name"),
                department: get("department"),
                manager_id: get("manager_id"),
                disabled: matches!(get("disabled").as_str(), "true" | "yes" | "1"),
                phone: get("phone"),
                roles: get("roles").split(';').filter(|r| !r.is_empty()).map(str::to_owned).collect(),
            })
        })
        .collect()
}

async fn list_users(admin: &Admin<'_>) -> Result<()> {
    let mut after = String::new();
    loop {
        let page = admin.list_users(&after, 1000).await?;
        for u in &page.users {
            let line = serde_json::json!({
                "user_id": u.user_id, "display_name": u.display_name, "department": u.department,
                "manager_id": u.manager_id, "disabled": u.disabled, "phone": u.phone, "roles": u.roles,
            });
            println!("{line}");
        }
        match page.users.last() {
            Some(last) if page.more => after.clone_from(&last.user_id),
            _ => return Ok(()),
        }
    }
}

async fn audit(admin: &Admin<'_>, actor: Option<String>, action: Option<String>) -> Result<()> {
    let mut after_seq = 0;
    loop {
        let filter = pb::AuditQuery {
            actor: actor.clone().unwrap_or_default(),
            action: action.clone().unwrap_or_default(),
            after_seq,
            limit: 1000,
            ..Default::default()
        };
        let page = admin.audit(filter).await?;
        for e in &page.entries {
            println!("{}", serde_json::Value::Object(crate::cli_audit::entry_json(e)));
        }
        match page.entries.last() {
            Some(last) if page.more => after_seq = last.seq,
            _ => return Ok(()),
        }
    }
}

fn print_org(info: &pb::OrgInfo) {
    let e = info.effective.unwrap_or_default();
    println!("org={} directory_users={}", info.org_id, info.directory_users);
    println!(
        "  recall_window={} read_receipts={} max_groups_per_user={} max_group_members={} retention={} max_call_participants={}",
        humantime::format_duration(Duration::from_millis(e.recall_window_ms.unwrap_or_default())),
        e.read_receipts.unwrap_or_default(),
        e.max_groups_per_user.unwrap_or_default(),
        e.max_group_members.unwrap_or_default(),
        humantime::format_duration(Duration::from_secs(e.retention_secs.unwrap_or_default())),
        e.max_call_participants.unwrap_or_default(),
    );
}

fn print_conversation(report: &pb::ConversationReport) {
    let c = report.conversation.clone().unwrap_or_default();
    let s = c.settings.unwrap_or_default();
    println!(
        "conv={} name={:?} members={} last_seq={} created={} owner={} admins={} archived={} receipts={} retention_secs={}",
        c.conversation_id,
        c.name,
        c.member_count,
        c.last_seq,
        format_ms(c.created_at_ms),
        report.owner_id,
        report.admin_ids.join(","),
        s.archived,
        s.read_receipts,
        s.retention_secs,
    );
}

fn format_ms(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}
