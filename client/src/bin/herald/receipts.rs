//! `herald read`, `receipts`, `recall` and `settings`: cursors, receipts, recall and per-conversation
//! settings, one request (or a few pages) each.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use herald_client::{Client, ReceiptList, pb};

use crate::{format, when};

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

pub(crate) async fn read(client: &Client, conversation: u64, seq: u64) -> Result<()> {
    let cursors = client
        .mark_read(conversation, seq)
        .await
        .with_context(|| format!("marking conversation {conversation} read up to seq {seq}"))?;
    println!(
        "read conv={} read_seq={} delivered_seq={}",
        cursors.conversation_id, cursors.read_seq, cursors.delivered_seq
    );
    Ok(())
}

pub(crate) async fn receipts(client: &Client, args: &ReceiptsArgs) -> Result<()> {
    let (conversation, seq) = (args.conversation, args.seq);
    let context = || format!("reading the receipts of seq {seq} in conversation {conversation}");
    let Some(list) = args.list() else {
        let counts = client.receipts(conversation, seq).await.with_context(context)?;
        println!("{}", format::receipts(conversation, &counts));
        return Ok(());
    };
    let word = if list == ReceiptList::Read { "read" } else { "unread" };
    let (mut after, mut remaining, mut first) = (String::new(), args.limit, true);
    loop {
        let page =
            client.receipt_list(conversation, seq, list, &after, remaining.min(PAGE)).await.with_context(context)?;
        if first {
            println!("{}", format::receipts(conversation, &page.receipts));
            first = false;
        }
        for user in page.users.iter().take(usize::try_from(remaining).unwrap_or(usize::MAX)) {
            println!("{word} {user}");
        }
        remaining = remaining.saturating_sub(u32::try_from(page.users.len()).unwrap_or(u32::MAX));
        match page.users.last() {
            Some(last) if page.more && remaining > 0 => after.clone_from(last),
            Some(_) if page.more => {
                eprintln!("more users not shown; raise --limit");
                return Ok(());
            }
            _ => return Ok(()),
        }
    }
}

pub(crate) async fn recall(client: &Client, conversation: u64, seq: u64) -> Result<()> {
    let event_seq = client
        .recall(conversation, seq)
        .await
        .with_context(|| format!("recalling seq {seq} in conversation {conversation}"))?;
    println!("recalled seq={seq} event_seq={event_seq}");
    Ok(())
}

pub(crate) async fn settings(client: &Client, args: &SettingsArgs) -> Result<()> {
    let conversation = args.conversation;
    if args.receipts.is_none() && args.retention.is_none() {
        return show_settings(client, conversation).await;
    }
    let seq = client
        .update_settings(conversation, args.receipts.map(|s| s == Switch::On), args.retention)
        .await
        .with_context(|| format!("changing the settings of conversation {conversation}"))?;
    println!("updated seq={seq}");
    Ok(())
}

/// `conv=<id> receipts=on|off retention=<duration>|off`, from the caller's conversation list
/// (there is no request for one conversation).
async fn show_settings(client: &Client, conversation: u64) -> Result<()> {
    let mut after_conversation_id = 0;
    loop {
        let request = pb::ListConversations { after_conversation_id, limit: PAGE };
        let list: pb::ConversationList = client.call(request).await.context("listing conversations")?;
        if let Some(c) = list.conversations.iter().find(|c| c.conversation_id == conversation) {
            // A broker that sends no settings has the defaults: receipts on, no retention.
            let defaults = pb::ConversationSettings { read_receipts: true, retention_secs: 0, archived: false };
            println!("{}", settings_line(conversation, c.settings.unwrap_or(defaults)));
            return Ok(());
        }
        match list.conversations.last() {
            Some(last) if list.more => after_conversation_id = last.conversation_id,
            _ => bail!("conversation {conversation} is not one of yours"),
        }
    }
}

fn settings_line(conversation: u64, settings: pb::ConversationSettings) -> String {
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
        let settings = pb::ConversationSettings { read_receipts: true, retention_secs: 0, archived: false };
        assert_eq!(settings_line(3, settings), "conv=3 receipts=on retention=off");
        let settings = pb::ConversationSettings { read_receipts: false, retention_secs: 93_600, archived: false };
        assert_eq!(settings_line(3, settings), "conv=3 receipts=off retention=1day 2h");
    }
}
