//! `herald read`, `receipts`, `recall` and `settings`: cursors, receipts, recall and per-conversation
//! settings, one request (or a few pages) each.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use herald_client::{Client, ReceiptList, pb};
use serde::Serialize;

use crate::format::{self, ReceiptsOut, SettingsOut};
use crate::messaging::{UpdatedOut, lines};
use crate::output::{Output, Printer};
use crate::when;

/// Items asked for per page.
const PAGE: u32 = 1000;

#[derive(Debug, Args)]
pub(crate) struct ReceiptsArgs {
    /// The conversation.
    #[arg(value_name = "CONVERSATION_ID")]
    conversation: u64,
    /// The message.
    seq: u64,
    /// Also list who has read it, one `read USER` a line.
    #[arg(long, conflicts_with = "unread")]
    read: bool,
    /// Also list who has not read it yet, one `unread USER` a line.
    #[arg(long)]
    unread: bool,
    /// List at most this many users (read in pages as needed).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
}

impl ReceiptsArgs {
    fn list(&self) -> Option<ReceiptList> {
        match (self.read, self.unread) {
            (true, _) => Some(ReceiptList::Read),
            (_, true) => Some(ReceiptList::Unread),
            _ => None,
        }
    }
}

/// A setting's on and off, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub(crate) struct SettingsArgs {
    /// The conversation.
    #[arg(value_name = "CONVERSATION_ID")]
    conversation: u64,
    /// Count and report read and delivered receipts (on by default). Off, senders see no
    /// counts and `herald receipts` is refused with RECEIPTS_DISABLED.
    #[arg(long, value_name = "on|off")]
    receipts: Option<Switch>,
    /// Recall messages sent from now on this long after they are sent (7d, 12h, ...); `off`
    /// keeps them until recalled.
    #[arg(long, value_name = "DURATION", value_parser = when::parse_retention)]
    retention: Option<Duration>,
}

/// This device's cursors after `read`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CursorsOut {
    conversation_id: u64,
    read_seq: u64,
    delivered_seq: u64,
}

impl Output for CursorsOut {
    fn human(&self) -> String {
        format!("read conv={} read_seq={} delivered_seq={}", self.conversation_id, self.read_seq, self.delivered_seq)
    }
}

/// A message's receipt counts and, with --read or --unread, who has (not) read it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReceiptsReport {
    #[serde(flatten)]
    counts: ReceiptsOut,
    /// `read`, `unread`, or `null` when no list was asked for.
    list: Option<&'static str>,
    /// The listed users; `null` when no list was asked for.
    users: Option<Vec<String>>,
    /// Whether more users are listed than --limit let through.
    more: bool,
}

impl Output for ReceiptsReport {
    fn human(&self) -> String {
        let counts = format::receipts(self.counts.conversation_id, &self.counts.counts());
        let word = self.list.unwrap_or_default();
        let users = self.users.iter().flatten().map(|user| format!("{word} {user}"));
        lines(std::iter::once(counts).chain(users))
    }
}

/// A recall's sequenced `recalled` event.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RecalledOut {
    conversation_id: u64,
    seq: u64,
    event_seq: u64,
}

impl Output for RecalledOut {
    fn human(&self) -> String {
        format!("recalled seq={} event_seq={}", self.seq, self.event_seq)
    }
}

/// A conversation's settings.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct SettingsReport {
    conversation_id: u64,
    #[serde(flatten)]
    settings: SettingsOut,
}

impl Output for SettingsReport {
    fn human(&self) -> String {
        settings_line(self.conversation_id, self.settings)
    }
}

pub(crate) async fn read(client: &Client, printer: Printer, conversation: u64, seq: u64) -> Result<()> {
    let cursors = client
        .mark_read(conversation, seq)
        .await
        .with_context(|| format!("marking conversation {conversation} read up to seq {seq}"))?;
    let (conversation_id, read_seq, delivered_seq) = (cursors.conversation_id, cursors.read_seq, cursors.delivered_seq);
    printer.print(&CursorsOut { conversation_id, read_seq, delivered_seq })
}

pub(crate) async fn receipts(client: &Client, printer: Printer, args: &ReceiptsArgs) -> Result<()> {
    let (conversation, seq) = (args.conversation, args.seq);
    let context = || format!("reading the receipts of seq {seq} in conversation {conversation}");
    let Some(list) = args.list() else {
        let counts = client.receipts(conversation, seq).await.with_context(context)?;
        let counts = ReceiptsOut::of(conversation, &counts);
        return printer.print(&ReceiptsReport { counts, list: None, users: None, more: false });
    };
    let word = if list == ReceiptList::Read { "read" } else { "unread" };
    let (mut after, mut remaining, mut report) = (String::new(), args.limit, None::<ReceiptsReport>);
    loop {
        let page =
            client.receipt_list(conversation, seq, list, &after, remaining.min(PAGE)).await.with_context(context)?;
        let counts = ReceiptsOut::of(conversation, &page.receipts);
        let report = report.get_or_insert_with(|| ReceiptsReport {
            counts,
            list: Some(word),
            users: Some(Vec::new()),
            more: false,
        });
        let shown = page.users.iter().take(usize::try_from(remaining).unwrap_or(usize::MAX)).cloned();
        report.users.get_or_insert_with(Vec::new).extend(shown);
        remaining = remaining.saturating_sub(u32::try_from(page.users.len()).unwrap_or(u32::MAX));
        match page.users.last() {
            Some(last) if page.more && remaining > 0 => after.clone_from(last),
            Some(_) if page.more => {
                eprintln!("more users not shown; raise --limit");
                report.more = true;
                return printer.print(report);
            }
            _ => return printer.print(report),
        }
    }
}

pub(crate) async fn recall(client: &Client, printer: Printer, conversation: u64, seq: u64) -> Result<()> {
    let event_seq = client
        .recall(conversation, seq)
        .await
        .with_context(|| format!("recalling seq {seq} in conversation {conversation}"))?;
    printer.print(&RecalledOut { conversation_id: conversation, seq, event_seq })
}

pub(crate) async fn settings(client: &Client, printer: Printer, args: &SettingsArgs) -> Result<()> {
    let conversation = args.conversation;
    if args.receipts.is_none() && args.retention.is_none() {
        return printer.print(&show_settings(client, conversation).await?);
    }
    let seq = client
        .update_settings(conversation, args.receipts.map(|s| s == Switch::On), args.retention)
        .await
        .with_context(|| format!("changing the settings of conversation {conversation}"))?;
    printer.print(&UpdatedOut { conversation_id: conversation, seq })
}

/// A conversation's settings, from the caller's conversation list (there is no request for one
/// conversation).
async fn show_settings(client: &Client, conversation: u64) -> Result<SettingsReport> {
    let mut after_conversation_id = 0;
    loop {
        let request = pb::ListConversations { after_conversation_id, limit: PAGE };
        let list: pb::ConversationList = client.call(request).await.context("listing conversations")?;
        if let Some(c) = list.conversations.iter().find(|c| c.conversation_id == conversation) {
            let settings = c.settings.map_or_else(SettingsOut::defaults, SettingsOut::from);
            return Ok(SettingsReport { conversation_id: conversation, settings });
        }
        match list.conversations.last() {
            Some(last) if list.more => after_conversation_id = last.conversation_id,
            _ => bail!("conversation {conversation} is not one of yours"),
        }
    }
}

/// `conv=<id> receipts=on|off retention=<duration>|off[ archived]`.
fn settings_line(conversation: u64, settings: SettingsOut) -> String {
    let retention = match settings.retention_secs {
        0 => "off".to_owned(),
        secs => humantime::format_duration(Duration::from_secs(secs)).to_string(),
    };
    let archived = if settings.archived { " archived" } else { "" };
    format!("conv={conversation} receipts={} retention={retention}{archived}", format::on_off(settings.read_receipts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_words() {
        let settings = SettingsOut { read_receipts: true, retention_secs: 0, archived: false };
        assert_eq!(settings_line(3, settings), "conv=3 receipts=on retention=off");
        let settings = SettingsOut { read_receipts: false, retention_secs: 93_600, archived: false };
        assert_eq!(settings_line(3, settings), "conv=3 receipts=off retention=1day 2h");
    }
}
