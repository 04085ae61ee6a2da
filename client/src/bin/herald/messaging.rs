//! `herald send`, `reschedule`, `group`, `history` and `conversations`: one request (or a few
//! pages) each.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use herald_client::{Client, HistoryPage, Scheduled, SendOptions, SendOutcome, new_client_msg_id, pb};
use serde::Serialize;

use crate::format::{self, EntryOut, Item, MemberOut, SettingsOut};
use crate::output::{Output, Printer};
use crate::when::{self, When};

/// Items asked for per page when paging members, conversations and history.
const PAGE: u32 = 1000;

#[derive(Debug, Args)]
#[command(allow_missing_positional = true)]
pub(crate) struct SendArgs {
    /// The conversation to send to (see `herald conversations`).
    #[arg(value_name = "CONVERSATION_ID", required_unless_present = "direct")]
    conversation: Option<u64>,
    /// The message text; its UTF-8 bytes are the payload.
    message: String,
    /// Send to the direct conversation with USER instead, opening it if it does not exist yet.
    #[arg(long, value_name = "USER", conflicts_with = "conversation")]
    direct: Option<String>,
    /// The message's idempotency key (1 to 64 bytes; random if not given). Sending again with
    /// the same id and text stores and delivers nothing new and prints `(duplicate)`; the same
    /// id with another text is refused with CONFLICT.
    #[arg(long = "id", value_name = "CLIENT_MSG_ID")]
    client_msg_id: Option<String>,
    /// Have the broker recall the message this long after it is delivered (10m, 1h 30m, ...):
    /// from now, or from --at.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    expire_in: Option<Duration>,
    /// Have the broker recall the message this long after every member it was sent to has read
    /// it (rounded up to whole seconds).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    expire_after_read: Option<Duration>,
    /// Hold the message and deliver it at TIME: RFC 3339 in UTC (2026-11-26T15:00:00Z) or
    /// +DURATION from now (+30s, +2h). Prints `scheduled id=CLIENT_MSG_ID deliver_at=TIME`
    /// instead of `sent seq=N`; the id names it for `herald reschedule`.
    #[arg(long = "at", value_name = "TIME", value_parser = when::parse)]
    deliver_at: Option<When>,
}

impl SendArgs {
    /// The options these flags ask for; relative times count from `now`, and --expire-in from
    /// the delivery time.
    fn options(&self, now: SystemTime) -> Result<SendOptions> {
        let mut options = SendOptions::new();
        let mut delivered = now;
        if let Some(at) = self.deliver_at {
            delivered = at.resolve(now)?;
            options = options.deliver_at(delivered);
        }
        if let Some(after) = self.expire_in {
            options = options.expire_at(delivered.checked_add(after).context("--expire-in is too far in the future")?);
        }
        if let Some(after) = self.expire_after_read {
            options = options.expire_after_read(after);
        }
        Ok(options)
    }
}

#[derive(Debug, Args)]
pub(crate) struct RescheduleArgs {
    /// The conversation the message was sent to.
    #[arg(value_name = "CONVERSATION_ID")]
    conversation: u64,
    /// The id `herald send --at` printed (or was given with --id).
    client_msg_id: String,
    /// The new delivery time, as for `send --at`.
    #[arg(value_name = "TIME", value_parser = when::parse, required_unless_present = "cancel")]
    time: Option<When>,
    /// Cancel the message instead: it is never delivered.
    #[arg(long, conflicts_with = "time")]
    cancel: bool,
}

/// Group management. Only owners and admins may add and remove members.
#[derive(Debug, Subcommand)]
#[command(after_help = crate::manual::GROUP)]
pub(crate) enum GroupCommand {
    /// Create a group owned by you with these other members; prints its conversation id.
    Create {
        /// The group's name, 1 to 256 bytes.
        name: String,
        /// Users to make plain members besides you.
        #[arg(value_name = "MEMBER")]
        members: Vec<String>,
    },
    /// Add users to a group as plain members; prints the event's `seq=N`.
    Add {
        /// The group.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// Users to add; those already members are ignored.
        #[arg(value_name = "USER", required = true)]
        users: Vec<String>,
    },
    /// Remove users from a group; prints the event's `seq=N`. Owners may remove anyone but
    /// themselves, admins only plain members.
    Remove {
        /// The group.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// Users to remove; those not members are ignored.
        #[arg(value_name = "USER", required = true)]
        users: Vec<String>,
    },
    /// List a conversation's members, one `user role` a line, by user id.
    Members {
        /// The conversation (a group or a direct conversation).
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The conversation.
    #[arg(value_name = "CONVERSATION_ID")]
    conversation: u64,
    /// Start at this seq, inclusive. Forward, 0 means the oldest; backward, the newest.
    #[arg(long = "from", value_name = "SEQ", default_value_t = 0)]
    from_seq: u64,
    /// Read newest first, down from --from.
    #[arg(long)]
    backward: bool,
    /// Print at most this many entries (read in pages as needed).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
}

/// What became of a send, a reschedule or a cancel, under its `status`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum SendOut {
    /// Sequenced now (or before, for a `duplicate` retry).
    Sent { conversation_id: u64, seq: u64, timestamp_ms: u64, duplicate: bool, client_msg_id: String },
    /// Held by the broker until `deliver_at`.
    Scheduled(ScheduledOut),
    /// A held message that will never be delivered.
    Cancelled { conversation_id: u64, client_msg_id: String },
}

/// A held message: its id, and when it will be delivered (RFC 3339 and Unix milliseconds).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScheduledOut {
    conversation_id: u64,
    client_msg_id: String,
    deliver_at: String,
    deliver_at_ms: u64,
}

impl From<&Scheduled> for ScheduledOut {
    fn from(s: &Scheduled) -> Self {
        let deliver_at_ms = s.deliver_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| {
            // Millisecond precision, as on the wire; u64 milliseconds outlast any real date.
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        });
        ScheduledOut {
            conversation_id: s.conversation_id,
            client_msg_id: s.client_msg_id.clone(),
            deliver_at: when::show(s.deliver_at),
            deliver_at_ms,
        }
    }
}

impl Output for SendOut {
    fn human(&self) -> String {
        match self {
            SendOut::Sent { seq, duplicate, .. } => {
                format!("sent seq={seq}{}", if *duplicate { " (duplicate)" } else { "" })
            }
            SendOut::Scheduled(s) => format!("scheduled id={} deliver_at={}", s.client_msg_id, s.deliver_at),
            SendOut::Cancelled { client_msg_id, .. } => format!("cancelled id={client_msg_id}"),
        }
    }
}

/// A new group's id.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CreatedOut {
    conversation_id: u64,
}

impl Output for CreatedOut {
    fn human(&self) -> String {
        self.conversation_id.to_string()
    }
}

/// A change sequenced into a conversation's log (members, settings): the event's seq.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct UpdatedOut {
    pub(crate) conversation_id: u64,
    pub(crate) seq: u64,
}

impl Output for UpdatedOut {
    fn human(&self) -> String {
        format!("updated seq={}", self.seq)
    }
}

/// A conversation's members, by user id.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MembersOut {
    conversation_id: u64,
    members: Vec<MemberOut>,
}

impl Output for MembersOut {
    fn human(&self) -> String {
        lines(self.members.iter().map(|m| format!("{} {}", m.user_id, m.role)))
    }
}

/// Entries of a conversation's log, in the order read; each as `listen` prints it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HistoryOut {
    conversation_id: u64,
    entries: Vec<Item>,
}

impl Output for HistoryOut {
    fn human(&self) -> String {
        lines(self.entries.iter().map(Output::human))
    }
}

/// The caller's conversations.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConversationsOut {
    conversations: Vec<ConversationOut>,
}

/// One conversation as the caller sees it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConversationOut {
    conversation_id: u64,
    /// `direct` or `group`.
    kind: String,
    name: String,
    member_count: u32,
    last_seq: u64,
    /// The caller's role.
    role: String,
    created_at_ms: u64,
    settings: SettingsOut,
}

impl From<&pb::Conversation> for ConversationOut {
    fn from(c: &pb::Conversation) -> Self {
        ConversationOut {
            conversation_id: c.conversation_id,
            kind: format::kind(c.kind),
            name: c.name.clone(),
            member_count: c.member_count,
            last_seq: c.last_seq,
            role: format::role(c.role),
            created_at_ms: c.created_at_ms,
            settings: c.settings.map_or_else(SettingsOut::defaults, SettingsOut::from),
        }
    }
}

impl Output for ConversationsOut {
    fn human(&self) -> String {
        lines(self.conversations.iter().map(|c| {
            let (id, kind, members, last_seq) = (c.conversation_id, &c.kind, c.member_count, c.last_seq);
            format!("conv={id} kind={kind} members={members} last_seq={last_seq} role={} name={:?}", c.role, c.name)
        }))
    }
}

/// Lines joined by newlines, without a final one.
pub(crate) fn lines(lines: impl Iterator<Item = String>) -> String {
    lines.collect::<Vec<_>>().join("\n")
}

pub(crate) async fn send(client: &Client, printer: Printer, args: SendArgs) -> Result<()> {
    let conversation = match (&args.direct, args.conversation) {
        (Some(peer), _) => open_direct(client, peer).await?,
        (None, Some(conversation)) => conversation,
        (None, None) => anyhow::bail!("name a CONVERSATION_ID or --direct USER"),
    };
    let options = args.options(SystemTime::now())?;
    let client_msg_id = args.client_msg_id.unwrap_or_else(new_client_msg_id);
    let outcome = client
        .send_with_options(conversation, Some(&client_msg_id), args.message.into_bytes(), &options)
        .await
        .with_context(|| format!("sending to conversation {conversation}"))?;
    let out = match outcome {
        SendOutcome::Sequenced(ack) => SendOut::Sent {
            conversation_id: conversation,
            seq: ack.seq,
            timestamp_ms: ack.timestamp_ms,
            duplicate: ack.duplicate,
            client_msg_id,
        },
        SendOutcome::Scheduled(scheduled) => SendOut::Scheduled(ScheduledOut::from(&scheduled)),
    };
    printer.print(&out)
}

pub(crate) async fn reschedule(client: &Client, printer: Printer, args: RescheduleArgs) -> Result<()> {
    let (conversation, id) = (args.conversation, &args.client_msg_id);
    let context = || format!("rescheduling {id} in conversation {conversation}");
    match args.time {
        Some(time) => {
            let scheduled =
                client.reschedule(conversation, id, time.resolve(SystemTime::now())?).await.with_context(context)?;
            printer.print(&SendOut::Scheduled(ScheduledOut::from(&scheduled)))
        }
        None => {
            client.cancel_scheduled(conversation, id).await.with_context(context)?;
            printer.print(&SendOut::Cancelled { conversation_id: conversation, client_msg_id: id.clone() })
        }
    }
}

async fn open_direct(client: &Client, peer: &str) -> Result<u64> {
    let conversation =
        client.open_direct(peer).await.with_context(|| format!("opening the direct conversation with {peer}"))?;
    eprintln!("direct conversation with {peer}: {}", conversation.conversation_id);
    Ok(conversation.conversation_id)
}

pub(crate) async fn group(client: &Client, printer: Printer, command: GroupCommand) -> Result<()> {
    match command {
        GroupCommand::Create { name, members } => printer.print(&create_group(client, &name, &members).await?),
        GroupCommand::Add { conversation, users } => {
            printer.print(&update_members(client, conversation, &users, &[]).await?)
        }
        GroupCommand::Remove { conversation, users } => {
            printer.print(&update_members(client, conversation, &[], &users).await?)
        }
        GroupCommand::Members { conversation } => printer.print(&list_members(client, conversation).await?),
    }
}

async fn create_group(client: &Client, name: &str, members: &[String]) -> Result<CreatedOut> {
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let conversation =
        client.create_group(name, &members).await.with_context(|| format!("creating the group {name:?}"))?;
    Ok(CreatedOut { conversation_id: conversation.conversation_id })
}

async fn update_members(client: &Client, conversation: u64, add: &[String], remove: &[String]) -> Result<UpdatedOut> {
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
    let seq = client
        .update_members(conversation, &add, &remove)
        .await
        .with_context(|| format!("updating the members of conversation {conversation}"))?;
    Ok(UpdatedOut { conversation_id: conversation, seq })
}

async fn list_members(client: &Client, conversation: u64) -> Result<MembersOut> {
    let mut out = MembersOut { conversation_id: conversation, members: Vec::new() };
    let mut after = String::new();
    loop {
        let page = client
            .list_members(conversation, &after, PAGE)
            .await
            .with_context(|| format!("listing the members of conversation {conversation}"))?;
        out.members.extend(page.members.iter().map(MemberOut::of));
        match page.members.last() {
            Some(last) if page.more => after.clone_from(&last.user_id),
            _ => return Ok(out),
        }
    }
}

pub(crate) async fn history(client: &Client, printer: Printer, args: &HistoryArgs) -> Result<()> {
    let conversation = args.conversation;
    let mut out = HistoryOut { conversation_id: conversation, entries: Vec::new() };
    let (mut from_seq, mut remaining) = (args.from_seq, args.limit);
    while remaining > 0 {
        let page = client
            .history(conversation, from_seq, args.backward, remaining.min(PAGE))
            .await
            .with_context(|| format!("reading the history of conversation {conversation}"))?;
        out.entries.extend(page.entries.iter().map(|e| Item::Entry(EntryOut::from(e))));
        remaining = remaining.saturating_sub(u32::try_from(page.entries.len()).unwrap_or(u32::MAX));
        match next_from(&page, args.backward) {
            Some(next) => from_seq = next,
            None => break,
        }
    }
    printer.print(&out)
}

/// Where the page after `page` starts, or `None` once the log is exhausted in that direction.
fn next_from(page: &HistoryPage, backward: bool) -> Option<u64> {
    let last = page.entries.last()?.seq;
    match backward {
        false if last < page.last_seq => Some(last + 1),
        true if last > 1 => Some(last - 1),
        _ => None,
    }
}

pub(crate) async fn conversations(client: &Client, printer: Printer) -> Result<()> {
    let mut out = ConversationsOut { conversations: Vec::new() };
    let mut after_conversation_id = 0;
    loop {
        let request = pb::ListConversations { after_conversation_id, limit: PAGE };
        let list: pb::ConversationList = client.call(request).await.context("listing conversations")?;
        out.conversations.extend(list.conversations.iter().map(ConversationOut::from));
        match list.conversations.last() {
            Some(last) if list.more => after_conversation_id = last.conversation_id,
            _ => return printer.print(&out),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Send {
        #[command(flatten)]
        args: SendArgs,
    }

    #[derive(Debug, Parser)]
    struct Reschedule {
        #[command(flatten)]
        args: RescheduleArgs,
    }

    fn send(args: &[&str]) -> Result<SendArgs, clap::Error> {
        Send::try_parse_from(std::iter::once("send").chain(args.iter().copied())).map(|s| s.args)
    }

    fn reschedule(args: &[&str]) -> Result<RescheduleArgs, clap::Error> {
        Reschedule::try_parse_from(std::iter::once("reschedule").chain(args.iter().copied())).map(|r| r.args)
    }

    const NOW: Duration = Duration::from_secs(1_000_000);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW
    }

    #[test]
    fn a_plain_send_has_default_options() -> Result<()> {
        assert_eq!(send(&["5", "hi"])?.options(now())?, SendOptions::new());
        Ok(())
    }

    #[test]
    fn expiry_counts_from_delivery() -> Result<()> {
        let args = send(&["5", "hi", "--at", "+1h", "--expire-in", "10m", "--expire-after-read", "30s"])?;
        let delivered = now() + Duration::from_secs(3_600);
        let expected = SendOptions::new()
            .deliver_at(delivered)
            .expire_at(delivered + Duration::from_secs(600))
            .expire_after_read(Duration::from_secs(30));
        assert_eq!(args.options(now())?, expected);

        let args = send(&["5", "hi", "--expire-in", "10m"])?;
        assert_eq!(args.options(now())?, SendOptions::new().expire_at(now() + Duration::from_secs(600)));
        Ok(())
    }

    #[test]
    fn an_absolute_time_is_taken_as_given() -> Result<()> {
        let args = send(&["--direct", "bob", "hi", "--at", "2026-12-26T15:00:00Z"])?;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_297_200);
        assert_eq!(args.options(now())?, SendOptions::new().deliver_at(at));
        Ok(())
    }

    #[test]
    fn bad_times_and_durations_are_refused_while_parsing() {
        assert!(send(&["5", "hi", "--at", "tomorrow"]).is_err());
        assert!(send(&["5", "hi", "--expire-in", "soon"]).is_err());
        assert!(send(&["5", "hi", "--expire-after-read", "+30s"]).is_err());
    }

    #[test]
    fn reschedule_takes_a_time_or_cancel_but_not_both() -> Result<()> {
        let moved = reschedule(&["5", "m-1", "+30s"])?;
        assert_eq!((moved.time, moved.cancel), (Some(When::In(Duration::from_secs(30))), false));
        let cancelled = reschedule(&["5", "m-1", "--cancel"])?;
        assert_eq!((cancelled.time, cancelled.cancel), (None, true));
        assert!(reschedule(&["5", "m-1"]).is_err());
        assert!(reschedule(&["5", "m-1", "+30s", "--cancel"]).is_err());
        Ok(())
    }

    #[test]
    fn scheduled_messages_print_their_id_and_time() {
        let scheduled = Scheduled {
            conversation_id: 5,
            client_msg_id: "m-1".into(),
            deliver_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_798_297_200_000),
        };
        let out = SendOut::Scheduled(ScheduledOut::from(&scheduled));
        assert_eq!(out.human(), "scheduled id=m-1 deliver_at=2026-12-26T15:00:00.000Z");
        let json = serde_json::to_value(&out).map_err(anyhow::Error::from);
        let expected = serde_json::json!({
            "status": "scheduled",
            "conversation_id": 5,
            "client_msg_id": "m-1",
            "deliver_at": "2026-12-26T15:00:00.000Z",
            "deliver_at_ms": 1_798_297_200_000_u64,
        });
        assert_eq!(json.ok(), Some(expected));
    }
}
