//! `herald send`, `group`, `history` and `conversations`: one request (or a few pages) each.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use herald_client::{Client, HistoryPage, new_client_msg_id, pb};

use crate::format;

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
}

/// Group management. Only owners and admins may add and remove members.
#[derive(Debug, Subcommand)]
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

pub(crate) async fn send(client: &Client, args: SendArgs) -> Result<()> {
    let conversation = match (&args.direct, args.conversation) {
        (Some(peer), _) => open_direct(client, peer).await?,
        (None, Some(conversation)) => conversation,
        (None, None) => anyhow::bail!("name a CONVERSATION_ID or --direct USER"),
    };
    let client_msg_id = args.client_msg_id.unwrap_or_else(new_client_msg_id);
    let ack = client
        .send_with_id(conversation, &client_msg_id, args.message.into_bytes())
        .await
        .with_context(|| format!("sending to conversation {conversation}"))?;
    println!("sent seq={}{}", ack.seq, if ack.duplicate { " (duplicate)" } else { "" });
    Ok(())
}

async fn open_direct(client: &Client, peer: &str) -> Result<u64> {
    let conversation =
        client.open_direct(peer).await.with_context(|| format!("opening the direct conversation with {peer}"))?;
    eprintln!("direct conversation with {peer}: {}", conversation.conversation_id);
    Ok(conversation.conversation_id)
}

pub(crate) async fn group(client: &Client, command: GroupCommand) -> Result<()> {
    match command {
        GroupCommand::Create { name, members } => create_group(client, &name, &members).await,
        GroupCommand::Add { conversation, users } => update_members(client, conversation, &users, &[]).await,
        GroupCommand::Remove { conversation, users } => update_members(client, conversation, &[], &users).await,
        GroupCommand::Members { conversation } => list_members(client, conversation).await,
    }
}

async fn create_group(client: &Client, name: &str, members: &[String]) -> Result<()> {
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let conversation =
        client.create_group(name, &members).await.with_context(|| format!("creating the group {name:?}"))?;
    println!("{}", conversation.conversation_id);
    Ok(())
}

async fn update_members(client: &Client, conversation: u64, add: &[String], remove: &[String]) -> Result<()> {
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
    let seq = client
        .update_members(conversation, &add, &remove)
        .await
        .with_context(|| format!("updating the members of conversation {conversation}"))?;
    println!("updated seq={seq}");
    Ok(())
}

async fn list_members(client: &Client, conversation: u64) -> Result<()> {
    let mut after = String::new();
    loop {
        let page = client
            .list_members(conversation, &after, PAGE)
            .await
            .with_context(|| format!("listing the members of conversation {conversation}"))?;
        for member in &page.members {
            println!("{} {}", member.user_id, format::role(member.role));
        }
        match page.members.last() {
            Some(last) if page.more => after.clone_from(&last.user_id),
            _ => return Ok(()),
        }
    }
}

pub(crate) async fn history(client: &Client, args: &HistoryArgs) -> Result<()> {
    let conversation = args.conversation;
    let (mut from_seq, mut remaining) = (args.from_seq, args.limit);
    while remaining > 0 {
        let page = client
            .history(conversation, from_seq, args.backward, remaining.min(PAGE))
            .await
            .with_context(|| format!("reading the history of conversation {conversation}"))?;
        for entry in &page.entries {
            println!("{}", format::entry(entry));
        }
        remaining = remaining.saturating_sub(u32::try_from(page.entries.len()).unwrap_or(u32::MAX));
        match next_from(&page, args.backward) {
            Some(next) => from_seq = next,
            None => break,
        }
    }
    Ok(())
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

pub(crate) async fn conversations(client: &Client) -> Result<()> {
    let mut after_conversation_id = 0;
    loop {
        let request = pb::ListConversations { after_conversation_id, limit: PAGE };
        let list: pb::ConversationList = client.call(request).await.context("listing conversations")?;
        for c in &list.conversations {
            let (kind, role) = (format::kind(c.kind), format::role(c.role));
            let (id, members, last_seq, name) = (c.conversation_id, c.member_count, c.last_seq, &c.name);
            println!("conv={id} kind={kind} members={members} last_seq={last_seq} role={role} name={name:?}");
        }
        match list.conversations.last() {
            Some(last) if list.more => after_conversation_id = last.conversation_id,
            _ => return Ok(()),
        }
    }
}
